use axum::http::StatusCode;
use serde_json::json;

use crate::helpers::{As, TestApp};

#[tokio::test]
async fn an_api_key_is_shown_once_stored_hashed_and_works_like_a_token() {
    let app = TestApp::spawn().await;
    let (admin, tenant) = app.user("admin@example.com").await;
    let created = app
        .post(
            "/api/v1/api-keys",
            &admin,
            json!({"name": "ci", "role": "member", "expires_in_days": 30}),
        )
        .await;
    created.assert_status(StatusCode::CREATED);
    let key = created.body["key"].as_str().unwrap().to_string();
    assert!(key.starts_with("sk_live_") && key.len() > 40);
    assert!(key.starts_with(created.body["prefix"].as_str().unwrap()));
    assert_eq!(created.body["tenant_id"], tenant.to_string());
    assert!(created.body["expires_at"].is_string());

    let list = app.get("/api/v1/api-keys", &admin).await;
    list.assert_status(StatusCode::OK);
    assert_eq!(list.body["total"], 1);
    assert!(!list.text.contains(&key), "lists never show the key");

    let raw: Vec<u8> = sqlx::query_scalar("SELECT key_hash FROM api_keys")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(raw.len(), 32);
    let dump: String = sqlx::query_scalar("SELECT row_to_json(k)::text FROM api_keys k")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert!(!dump.contains(&key[8..]), "the key itself is not stored");

    let by_key = As::Key(key.clone());
    let me = app.get("/api/v1/auth/me", &by_key).await;
    me.assert_status(StatusCode::OK);
    assert_eq!(me.body["kind"], "api_key");
    assert_eq!(me.body["tenants"][0]["role"], "member");
    app.post(
        "/api/v1/providers",
        &by_key,
        json!({"provider_type": "sandbox", "display_name": "from key"}),
    )
    .await
    .assert_status(StatusCode::CREATED);
    let providers = app.get("/api/v1/providers", &admin).await;
    assert_eq!(
        providers.body["total"], 1,
        "the key wrote into its own tenant"
    );

    // A member key cannot manage keys.
    app.get("/api/v1/api-keys", &by_key)
        .await
        .assert_problem(StatusCode::FORBIDDEN, "FORBIDDEN");

    let id = created.body["id"].as_str().unwrap();
    app.delete(&format!("/api/v1/api-keys/{id}"), &admin)
        .await
        .assert_status(StatusCode::NO_CONTENT);
    app.get("/api/v1/auth/me", &by_key)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
}

#[tokio::test]
async fn viewer_keys_read_only_and_expired_keys_fail() {
    let app = TestApp::spawn().await;
    let (admin, _) = app.user("admin@example.com").await;
    let created = app
        .post(
            "/api/v1/api-keys",
            &admin,
            json!({"name": "dash", "role": "viewer"}),
        )
        .await;
    let viewer = As::Key(created.body["key"].as_str().unwrap().into());
    app.get("/api/v1/providers", &viewer)
        .await
        .assert_status(StatusCode::OK);
    app.post(
        "/api/v1/providers",
        &viewer,
        json!({"provider_type": "sandbox", "display_name": "x"}),
    )
    .await
    .assert_problem(StatusCode::FORBIDDEN, "FORBIDDEN");

    sqlx::query("UPDATE api_keys SET expires_at = now() - interval '1 minute'")
        .execute(&app.db.pool)
        .await
        .unwrap();
    app.get("/api/v1/providers", &viewer)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    app.get("/api/v1/providers", &As::Key("sk_live_made_up".into()))
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
}

#[tokio::test]
async fn a_key_cannot_reach_another_tenant_or_be_deleted_from_one() {
    let app = TestApp::spawn().await;
    let (alice, _) = app.user("alice@example.com").await;
    let (bob, bobs_tenant) = app.user("bob@example.com").await;
    let created = app
        .post(
            "/api/v1/api-keys",
            &alice,
            json!({"name": "k", "role": "admin"}),
        )
        .await;
    let key = As::Key(created.body["key"].as_str().unwrap().into());
    let header = bobs_tenant.to_string();
    app.call_with(
        axum::http::Method::GET,
        "/api/v1/providers",
        &key,
        None,
        &[("x-tenant-id", &header)],
    )
    .await
    .assert_problem(StatusCode::FORBIDDEN, "FORBIDDEN");
    let id = created.body["id"].as_str().unwrap();
    app.delete(&format!("/api/v1/api-keys/{id}"), &bob)
        .await
        .assert_problem(StatusCode::NOT_FOUND, "RESOURCE_NOT_FOUND");
    app.post("/api/v1/tenants", &key, json!({"name": "sneaky"}))
        .await
        .assert_problem(StatusCode::FORBIDDEN, "FORBIDDEN");
}
