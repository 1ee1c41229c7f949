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

use crate::helpers::{TestDb, process_env, spawn_worker};

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
    let mut workers = vec![spawn_worker(&db.url), spawn_worker(&db.url)];

    // Each task writes its effect, then holds 250 ms: a kill in that window leaves an effect
    // behind an unfinished task, which the retry must not write again.
    let mut tx = db.pool.begin().await.unwrap();
    let tasks = (0..500)
        .map(|_| NewTask {
            tenant_id: tenant,
            kind: JobKind::DiagnosticRecord,
            // Long enough that the task seen running is still running when the kill lands,
            // however busy the machine (20 ms was not, under a loaded CI).
            params: json!({"hold_ms": 250}),
            created_by: None,
        })
        .collect();
    enqueue(&mut tx, tasks).await.unwrap();
    tx.commit().await.unwrap();

    let deadline = Instant::now() + Duration::from_secs(60);
    while count(
        &db,
        "SELECT count(*) FROM tasks WHERE kind = 'diagnostic.record' AND status = 'succeeded'",
    )
    .await
        < 150
    {
        assert!(Instant::now() < deadline, "workers made no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Kill the worker that is running a task right now (names are queue@host/pid/ulid), so
    // the crash leaves work in flight.
    let pid: i32 = loop {
        let running: Option<String> =
            sqlx::query_scalar("SELECT worker FROM tasks WHERE kind = 'diagnostic.record' AND status = 'running' LIMIT 1")
                .fetch_optional(&db.pool)
                .await
                .unwrap();
        if let Some(worker) = running {
            break worker.split('/').nth(1).unwrap().parse().unwrap();
        }
    };
    let victim = workers
        .iter()
        .position(|w| w.id() == Some(pid as u32))
        .expect("one of ours");
    let mut victim = workers.remove(victim);
    kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    victim.wait().await.unwrap();
    let mut second = workers.pop().unwrap();
    let killed_at = count(
        &db,
        "SELECT count(*) FROM tasks WHERE kind = 'diagnostic.record' AND status = 'succeeded'",
    )
    .await;
    assert!(killed_at < 500, "the kill came mid-way");

    let deadline = Instant::now() + Duration::from_secs(90);
    while count(
        &db,
        "SELECT count(*) FROM tasks WHERE kind = 'diagnostic.record' AND status <> 'succeeded'",
    )
    .await
        > 0
    {
        assert!(
            Instant::now() < deadline,
            "tasks left unfinished: {}",
            count(
                &db,
                "SELECT count(*) FROM tasks WHERE kind = 'diagnostic.record' AND status <> 'succeeded'"
            )
            .await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM tasks WHERE kind = 'diagnostic.record' AND status = 'succeeded'"
        )
        .await,
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
        count(
            &db,
            "SELECT count(*) FROM tasks WHERE kind = 'diagnostic.record' AND attempts > 1"
        )
        .await
            >= 1,
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

fn spawn_serve(url: &str, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
        .envs(process_env(url))
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vm_apply_killed_with_its_worker_is_finished_by_another_exactly_once() {
    use crate::helpers::TestApp;
    use crate::resources::{create, state_resources};
    let app = TestApp::spawn().await;
    let (admin, _) = app.user("admin@example.com").await;
    let provider = app.sandbox(&admin).await;
    let mut workers = [spawn_worker(&app.db.url), spawn_worker(&app.db.url)];
    let accepted = create(
        &app,
        &admin,
        &provider,
        "vm",
        "survivor",
        json!({"boot_seconds": 8}),
    )
    .await;
    let (task_id, deployment, id) = (
        accepted["task_id"].as_str().unwrap(),
        accepted["deployment_id"].as_str().unwrap(),
        accepted["id"].as_str().unwrap(),
    );

    // Wait until the boot is under way, then kill the worker that runs it.
    app.wait_for_log_line(&admin, deployment, "booting: 20%")
        .await;
    let worker: String = sqlx::query_scalar("SELECT worker FROM tasks WHERE id = $1::uuid")
        .bind(task_id)
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    // Worker names are queue@host/pid/ulid.
    let pid: i32 = worker.split('/').nth(1).unwrap().parse().unwrap();
    let victim = workers
        .iter()
        .position(|w| w.id() == Some(pid as u32))
        .expect("one of ours");
    kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    workers[victim].wait().await.unwrap();
    let killed_at = Instant::now();

    let task = app.wait_for_task(&admin, task_id).await;
    assert_eq!(task["status"], "succeeded", "{task}");
    assert!(
        killed_at.elapsed() < Duration::from_secs(30),
        "finished {:?} after the kill",
        killed_at.elapsed()
    );
    let deployment_body = app
        .get(&format!("/api/v1/deployments/{deployment}"), &admin)
        .await
        .body;
    assert_eq!(
        deployment_body["attempts"], 2,
        "run again by the other worker"
    );
    let resource = app
        .get(&format!("/api/v1/resources/{id}"), &admin)
        .await
        .body;
    assert_eq!(resource["status"], "active");
    let mut addresses = state_resources(&app, id).await;
    addresses.sort();
    assert_eq!(
        addresses,
        ["terraform_data.power", "terraform_data.vm"],
        "the state holds exactly its resources"
    );
    assert_eq!(count(&app.db, "SELECT count(*) FROM resources").await, 1);
    let logs = app
        .get(&format!("/api/v1/deployments/{deployment}/logs"), &admin)
        .await
        .body;
    let attempts = logs["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["message"].as_str().unwrap().starts_with("attempt "))
        .count();
    assert_eq!(attempts, 2, "both attempts are in one log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_api_processes_stream_the_log_of_a_third_processs_run() {
    use crate::helpers::{TestApp, read_ws};
    use crate::resources::{create, token};
    let app = TestApp::spawn().await;
    let (admin, _) = app.user("admin@example.com").await;
    let provider = app.sandbox(&admin).await;
    let ports = [free_port(), free_port()];
    let _servers: Vec<Child> = ports
        .iter()
        .map(|port| spawn_serve(&app.db.url, *port))
        .collect();
    for port in ports {
        wait_listening(port).await;
    }
    let _worker = spawn_worker(&app.db.url);
    let accepted = create(
        &app,
        &admin,
        &provider,
        "vm",
        "watched",
        json!({"boot_seconds": 2}),
    )
    .await;
    let deployment = accepted["deployment_id"].as_str().unwrap();
    let mut streams = Vec::new();
    for port in ports {
        let url = format!(
            "ws://127.0.0.1:{port}/ws/deployments/{deployment}/logs?token={}",
            token(&admin)
        );
        let (socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        streams.push(socket);
    }
    let mut received = Vec::new();
    for socket in &mut streams {
        received.push(read_ws(socket, None).await);
    }
    assert_eq!(received[0].last().unwrap()["type"], "end");
    assert_eq!(received[0].last().unwrap()["status"], "succeeded");
    assert_eq!(
        received[0], received[1],
        "both replicas send the same lines"
    );
    let seqs: Vec<i64> = received[0]
        .iter()
        .filter_map(|m| m["seq"].as_i64())
        .collect();
    assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>());
    assert!(received[0].iter().any(|m| {
        m["message"]
            .as_str()
            .is_some_and(|t| t.contains("booting: 100%"))
    }));
}
