//! Backups: `pg_dump` by a task, listed with size and checksum, restored by `strata restore`.

use axum::http::{Method, StatusCode};
use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::{As, OPERATOR_KEY, TestApp, process_env};

/// An empty database next to the test's; returns its URL and an admin pool to drop it with.
async fn empty_database(app: &TestApp) -> (String, String, PgPool) {
    let (base, _) = app.db.url.rsplit_once('/').unwrap();
    let name = format!("strata_restore_{}", Uuid::new_v4().simple());
    let admin = PgPool::connect(&format!("{base}/postgres")).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .unwrap();
    (format!("{base}/{name}"), name, admin)
}

async fn restore(url: &str, file: &std::path::Path) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("restore")
        .arg(file)
        .envs(process_env(url))
        .output()
        .await
        .unwrap()
}

/// Rows that must survive a round trip, as text.
async fn snapshot(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT format('%s', t) FROM (
             SELECT 'user', email, password_hash FROM users
             UNION ALL SELECT 'tenant', name, id::text FROM tenants
             UNION ALL SELECT 'credential', name, encode(secret, 'hex') FROM credentials
             UNION ALL SELECT 'provider', display_name, provider_type FROM providers
         ) t ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_is_made_by_a_task_and_restored_into_an_empty_database() {
    let app = TestApp::spawn_with_workers().await;
    let (admin, tenant) = app.user("admin@example.com").await;
    app.post(
        "/api/v1/credentials",
        &admin,
        json!({"provider": "aws", "name": "aws", "access_key": "AKIABACKUP", "secret_key": "backup-secret-1234"}),
    )
    .await
    .assert_status(StatusCode::CREATED);
    app.sandbox(&admin).await;

    // A tenant admin cannot dump every tenant's data; the operator can.
    app.post("/api/v1/backups", &admin, json!({}))
        .await
        .assert_problem(StatusCode::FORBIDDEN, "FORBIDDEN");
    let operator = As::Key(OPERATOR_KEY.into());
    let tenant_header = tenant.to_string();
    let headers = [("x-tenant-id", tenant_header.as_str())];
    let started = app
        .call_with(Method::POST, "/api/v1/backups", &operator, None, &headers)
        .await;
    started.assert_status(StatusCode::ACCEPTED);
    let task = app
        .wait_for_task(&admin, started.body["task_id"].as_str().unwrap())
        .await;
    assert_eq!(task["status"], "succeeded", "{task}");

    let list = app
        .call_with(Method::GET, "/api/v1/backups", &operator, None, &headers)
        .await;
    list.assert_status(StatusCode::OK);
    assert_eq!(list.body["total"], 1);
    let backup = &list.body["data"][0];
    assert_eq!(backup["id"], started.body["id"]);
    assert_eq!(backup["status"], "succeeded");
    let file = app
        .state
        .settings
        .backup_dir
        .join(backup["file_name"].as_str().unwrap());
    let bytes = std::fs::read(&file).unwrap();
    assert_eq!(backup["size_bytes"], bytes.len());
    assert_eq!(
        backup["sha256"].as_str().unwrap(),
        format!("{:x}", Sha256::digest(&bytes))
    );
    assert!(bytes.starts_with(b"PGDMP"), "pg_dump's custom format");
    app.get("/api/v1/backups", &admin)
        .await
        .assert_problem(StatusCode::FORBIDDEN, "FORBIDDEN");

    // Round trip: the restored database holds the same rows.
    let (url, name, admin_pool) = empty_database(&app).await;
    let restored = restore(&url, &file).await;
    assert!(
        restored.status.success(),
        "{}",
        String::from_utf8_lossy(&restored.stderr)
    );
    let restored_pool = PgPool::connect(&url).await.unwrap();
    let original = snapshot(&app.db.pool).await;
    assert!(original.len() >= 4, "{original:?}");
    assert_eq!(snapshot(&restored_pool).await, original);
    restored_pool.close().await;

    // Not into a database that has data.
    let again = restore(&url, &file).await;
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("not empty"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    // Not from a damaged file.
    let damaged = file.with_extension("damaged.dump");
    let mut changed = bytes.clone();
    let middle = changed.len() / 2;
    changed[middle] ^= 0xff;
    std::fs::write(&damaged, &changed).unwrap();
    std::fs::copy(
        format!("{}.sha256", file.display()),
        format!("{}.sha256", damaged.display()),
    )
    .unwrap();
    let (url2, name2, _) = empty_database(&app).await;
    let refused = restore(&url2, &damaged).await;
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("does not match its checksum"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    for name in [name, name2] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE {name} WITH (FORCE)"
        )))
        .execute(&admin_pool)
        .await
        .unwrap();
    }
    let _ = std::fs::remove_dir_all(&app.state.settings.backup_dir);
}
