//! Real `strata worker` processes: crash recovery and graceful stop.

use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::json;
use strata::jobs::JobKind;
use strata::tasks::{NewTask, enqueue};
use tokio::process::{Child, Command};
use uuid::Uuid;

use crate::helpers::{TestDb, process_env};

fn spawn_worker(url: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["worker", "--concurrency", "8", "--heartbeat-seconds", "2"])
        .envs(process_env(url))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the strata binary starts")
}

/// Runs `strata healthcheck` with these arguments; true when it exits 0.
async fn healthcheck(url: &str, args: &[&str]) -> bool {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("healthcheck")
        .args(args)
        .envs(process_env(url))
        .output()
        .await
        .unwrap()
        .status
        .success()
}

async fn count(db: &TestDb, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_task_succeeds_exactly_once_when_a_worker_is_killed_mid_way() {
    let db = TestDb::new().await;
    let tenant = Uuid::new_v4();
    sqlx::query("INSERT INTO tenants (id, name) VALUES ($1, 'crash test')")
        .bind(tenant)
        .execute(&db.pool)
        .await
        .unwrap();
    let mut first = spawn_worker(&db.url);
    let mut second = spawn_worker(&db.url);

    // Each task writes its effect, then holds 20 ms: a kill in that window leaves an effect
    // behind an unfinished task, which the retry must not write again.
    let mut tx = db.pool.begin().await.unwrap();
    let tasks = (0..500)
        .map(|_| NewTask {
            tenant_id: tenant,
            kind: JobKind::DiagnosticRecord,
            params: json!({"hold_ms": 20}),
            created_by: None,
        })
        .collect();
    enqueue(&mut tx, tasks).await.unwrap();
    tx.commit().await.unwrap();

    let deadline = Instant::now() + Duration::from_secs(60);
    while count(&db, "SELECT count(*) FROM tasks WHERE status = 'succeeded'").await < 150 {
        assert!(Instant::now() < deadline, "workers made no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    kill(Pid::from_raw(first.id().unwrap() as i32), Signal::SIGKILL).unwrap();
    first.wait().await.unwrap();
    let killed_at = count(&db, "SELECT count(*) FROM tasks WHERE status = 'succeeded'").await;
    assert!(killed_at < 500, "the kill came mid-way");

    let deadline = Instant::now() + Duration::from_secs(90);
    while count(
        &db,
        "SELECT count(*) FROM tasks WHERE status <> 'succeeded'",
    )
    .await
        > 0
    {
        assert!(
            Instant::now() < deadline,
            "tasks left unfinished: {}",
            count(
                &db,
                "SELECT count(*) FROM tasks WHERE status <> 'succeeded'"
            )
            .await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        count(&db, "SELECT count(*) FROM tasks WHERE status = 'succeeded'").await,
        500
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM diagnostic_effects").await,
        500
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM (SELECT task_id FROM diagnostic_effects GROUP BY task_id HAVING count(*) <> 1) x").await,
        0,
        "every side effect happened exactly once"
    );
    assert!(
        count(&db, "SELECT count(DISTINCT worker) FROM diagnostic_effects").await >= 2,
        "both workers worked"
    );

    assert!(
        count(&db, "SELECT count(*) FROM tasks WHERE attempts > 1").await >= 1,
        "the killed worker's tasks were delivered again"
    );
    assert!(
        healthcheck(&db.url, &["--worker"]).await,
        "the live worker is reported healthy"
    );

    kill(Pid::from_raw(second.id().unwrap() as i32), Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(15), second.wait())
        .await
        .expect("stops on SIGTERM")
        .unwrap();
    assert!(status.success(), "a SIGTERM stop is clean: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_and_migrate_run_as_separate_roles() {
    let db = TestDb::new().await;
    let migrate = Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("migrate")
        .envs(process_env(&db.url))
        .output()
        .await
        .unwrap();
    assert!(
        migrate.status.success(),
        "{}",
        String::from_utf8_lossy(&migrate.stderr)
    );

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut serve = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
        .envs(process_env(&db.url))
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let body = loop {
        if let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            stream
                .write_all(b"GET /api/v1/health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                .await
                .unwrap();
            let mut response = String::new();
            stream.read_to_string(&mut response).await.unwrap();
            break response;
        }
        assert!(Instant::now() < deadline, "serve did not listen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(body.contains(r#""service":"strata""#));
    let url = format!("http://127.0.0.1:{port}/api/v1/health");
    assert!(healthcheck(&db.url, &["--url", &url]).await);
    let missing = format!("http://127.0.0.1:{port}/api/v1/nothing-here");
    assert!(
        !healthcheck(&db.url, &["--url", &missing]).await,
        "a 404 is unhealthy"
    );
    kill(Pid::from_raw(serve.id().unwrap() as i32), Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), serve.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_starts_a_private_postgres_reuses_it_and_stops_it_on_sigterm() {
    // /tmp, so the unprivileged postgres user can reach the cluster when tests run as root.
    let data_dir = std::env::temp_dir().join(format!("strata-up-test-{}", Uuid::new_v4().simple()));
    for round in 0..2 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut up = Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(["up", "--bind", &format!("127.0.0.1:{port}")])
            .env_remove("DATABASE_URL")
            .env_remove("STRATA_MASTER_KEY")
            .env_remove("JWT_SECRET")
            .env("STRATA_DATA_DIR", &data_dir)
            .env("STRATA_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}/api/v1/health/ready");
        let deadline = Instant::now() + Duration::from_secs(90);
        while !healthcheck("postgres://unused", &["--url", &url]).await {
            assert!(Instant::now() < deadline, "strata up did not become ready");
            assert!(up.try_wait().unwrap().is_none(), "strata up exited early");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let port_file = std::fs::read_to_string(data_dir.join("postgres.port")).unwrap();
        let pg_port: u16 = port_file.trim().parse().unwrap();
        assert!(data_dir.join("postgres/PG_VERSION").exists());
        assert!(data_dir.join("master.key").exists() && data_dir.join("jwt.secret").exists());
        assert!(
            tokio::net::TcpStream::connect(("127.0.0.1", pg_port))
                .await
                .is_ok(),
            "round {round}"
        );
        // Data written in the first round is there in the second: the cluster is reused.
        let pool =
            sqlx::PgPool::connect(&format!("postgres://postgres@127.0.0.1:{pg_port}/strata"))
                .await
                .unwrap();
        if round == 0 {
            sqlx::query("INSERT INTO tenants (id, name) VALUES ($1, 'kept')")
                .bind(Uuid::new_v4())
                .execute(&pool)
                .await
                .unwrap();
        } else {
            let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM tenants WHERE name = 'kept'")
                .fetch_one(&pool)
                .await
                .unwrap();
            assert_eq!(kept, 1);
        }
        pool.close().await;

        kill(Pid::from_raw(up.id().unwrap() as i32), Signal::SIGTERM).unwrap();
        let status = tokio::time::timeout(Duration::from_secs(30), up.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(status.success(), "round {round}: {status}");
        let mut stdout = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut up.stdout.take().unwrap(), &mut stdout)
            .await
            .unwrap();
        assert!(
            stdout.contains(&format!("http://127.0.0.1:{port}/docs")),
            "{stdout}"
        );
        assert!(stdout.contains("auth/signup"), "{stdout}");
        assert!(
            tokio::net::TcpStream::connect(("127.0.0.1", pg_port))
                .await
                .is_err(),
            "the private PostgreSQL stops with strata up"
        );
    }
    let _ = std::fs::remove_dir_all(&data_dir);
}
