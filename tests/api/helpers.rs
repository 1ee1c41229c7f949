//! The test harness: a fresh database per test (copied from a migrated template), the router
//! in-process, and helpers to call it.

use std::sync::OnceLock;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use sqlx::PgPool;
use strata::config::Settings;
use strata::state::AppState;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use uuid::Uuid;

pub const OPERATOR_KEY: &str = "test-operator-key-0123456789";
pub const PASSWORD: &str = "correct horse battery";

/// The server tests run against: `STRATA_TEST_DATABASE_URL`, else `DATABASE_URL`, else the
/// local PostgreSQL on 127.0.0.1:5432; when none answers, a private cluster under `target/`.
async fn server_url() -> String {
    static URL: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    URL.get_or_init(|| async {
        let configured = std::env::var("STRATA_TEST_DATABASE_URL")
            .or_else(|_| std::env::var("DATABASE_URL"))
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        if sqlx::PgPool::connect(&configured).await.is_ok() {
            return configured;
        }
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/strata-test-pg");
        let pg = strata::embedded_pg::EmbeddedPostgres::start(&root, "postgres")
            .await
            .expect("no PostgreSQL configured or reachable, and a private one did not start");
        let url = pg.url("postgres");
        // The private cluster outlives this test process; the next run reuses it.
        std::mem::forget(pg);
        url
    })
    .await
    .clone()
}

/// A migrated template database, built once per schema version, copied for every test.
async fn template(admin: &PgPool) -> String {
    static NAME: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    NAME.get_or_init(|| async {
        let migrations: String =
            std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
                .unwrap()
                .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
                .collect();
        let fingerprint = {
            use sha2::Digest;
            let digest = sha2::Sha256::digest(format!("{migrations}apalis-postgres-1.0"));
            digest[..6]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        let name = format!("strata_test_template_{fingerprint}");
        let mut conn = admin.acquire().await.unwrap();
        sqlx::query("SELECT pg_advisory_lock(727274)")
            .execute(&mut *conn)
            .await
            .unwrap();
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(&name)
                .fetch_one(&mut *conn)
                .await
                .unwrap();
        if !exists {
            // Built under a temporary name and renamed, so a half-built template is never used.
            let building = format!("{name}_building");
            exec(
                &mut conn,
                &format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)"),
            )
            .await;
            exec(&mut conn, &format!("CREATE DATABASE {building}")).await;
            let pool = PgPool::connect(
                &strata::bench::replace_database(&server_url().await, &building).unwrap(),
            )
            .await
            .unwrap();
            strata::db::migrate(&pool).await.unwrap();
            pool.close().await;
            exec(
                &mut conn,
                &format!("ALTER DATABASE {building} RENAME TO {name}"),
            )
            .await;
            // Templates of older schemas are of no further use; one in use stays (no FORCE).
            let stale: Vec<String> = sqlx::query_scalar(
                r"SELECT datname FROM pg_database
                  WHERE datname LIKE 'strata\_test\_template\_%' AND datname <> $1",
            )
            .bind(&name)
            .fetch_all(&mut *conn)
            .await
            .unwrap();
            for old in stale {
                let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {old}"
                )))
                .execute(&mut *conn)
                .await;
            }
        }
        sqlx::query("SELECT pg_advisory_unlock(727274)")
            .execute(&mut *conn)
            .await
            .unwrap();
        name
    })
    .await
    .clone()
}

async fn exec(conn: &mut sqlx::PgConnection, sql: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// A fresh, migrated database that is dropped when the value is.
pub struct TestDb {
    pub name: String,
    pub url: String,
    pub pool: PgPool,
    admin_url: String,
}

impl TestDb {
    pub async fn new() -> Self {
        let admin_url = server_url().await;
        let admin = PgPool::connect(&admin_url).await.unwrap();
        let template = template(&admin).await;
        let name = format!("strata_test_{}", Uuid::new_v4().simple());
        let mut attempts = 0;
        // Copies of one template can collide ("source database is being accessed"): retry.
        while let Err(err) = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE {name} TEMPLATE {template}"
        )))
        .execute(&admin)
        .await
        {
            attempts += 1;
            assert!(attempts < 50, "cannot create the test database: {err}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        admin.close().await;
        let url = strata::bench::replace_database(&admin_url, &name).unwrap();
        let pool = strata::db::connect(&url, 10).await.unwrap();
        Self {
            name,
            url,
            pool,
            admin_url,
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (name, admin_url) = (self.name.clone(), self.admin_url.clone());
        // Drop runs outside async: a short-lived runtime on its own thread does the cleanup.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if let Ok(admin) = PgPool::connect(&admin_url).await {
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&admin)
                    .await;
                }
            });
        })
        .join();
    }
}

pub fn test_settings() -> Settings {
    Settings {
        master_key: rand::random(),
        jwt_secret: b"test-jwt-secret-0123456789".to_vec(),
        jwt_ttl: Duration::from_secs(3600),
        api_secret_key: Some(OPERATOR_KEY.into()),
        terraform: std::env::var("STRATA_TERRAFORM").unwrap_or_else(|_| "terraform".into()),
        terraform_plugin_dir: None,
        terraform_gogc: 400,
        terraform_memory_limit: "1GiB".into(),
        data_dir: std::env::temp_dir(),
        backup_dir: std::env::temp_dir().join(format!("strata-backups-{}", Uuid::new_v4())),
        // Nothing answers here: a test that uses Cloudflare starts its stand-in and sets this.
        cloudflare_api_url: "http://127.0.0.1:9/client/v4/".into(),
        // The tests serve exports (and stand-ins) on loopback only.
        outbound: strata::outbound::OutboundPolicy::new(vec![
            "127.0.0.0/8".parse().unwrap(),
            "::1/128".parse().unwrap(),
        ]),
        import_max_bytes: 8 << 30,
    }
}

/// The application on a fresh database, called in-process.
pub struct TestApp {
    pub db: TestDb,
    pub state: AppState,
    router: axum::Router,
    workers: Option<(CancellationToken, tokio::task::JoinHandle<()>)>,
}

pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Response {
    #[track_caller]
    pub fn assert_status(&self, status: StatusCode) -> &Self {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.text
        );
        self
    }

    /// Asserts a problem+json answer with this status and code.
    #[track_caller]
    pub fn assert_problem(&self, status: StatusCode, code: &str) {
        self.assert_status(status);
        assert_eq!(
            self.headers.get("content-type").unwrap(),
            "application/problem+json",
            "{}",
            self.text
        );
        assert_eq!(self.body["code"], code, "{}", self.text);
        assert_eq!(self.body["status"], status.as_u16());
        assert!(self.body["detail"].as_str().is_some_and(|d| !d.is_empty()));
        assert!(
            self.body["trace_id"]
                .as_str()
                .is_some_and(|t| !t.is_empty())
        );
    }
}

/// Who a request is from.
#[derive(Clone, Debug)]
pub enum As {
    Anonymous,
    Token(String),
    Key(String),
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(test_settings()).await
    }

    pub async fn spawn_with(settings: Settings) -> Self {
        let db = TestDb::new().await;
        let state = AppState::new(db.pool.clone(), settings);
        let router = strata::http::router(state.clone());
        Self {
            db,
            state,
            router,
            workers: None,
        }
    }

    /// Also runs workers in this process.
    pub async fn spawn_with_workers() -> Self {
        let mut app = Self::spawn().await;
        app.start_workers();
        app
    }

    pub fn start_workers(&mut self) {
        let shutdown = CancellationToken::new();
        let options = strata::jobs::runner::WorkerOptions {
            concurrency: 4,
            heartbeat: Duration::from_secs(1),
            ..Default::default()
        };
        let handle = tokio::spawn(strata::jobs::runner::run(
            self.state.clone(),
            options,
            shutdown.clone(),
        ));
        self.workers = Some((shutdown, handle));
    }

    pub async fn stop_workers(&mut self) {
        if let Some((shutdown, handle)) = self.workers.take() {
            shutdown.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(10), handle).await;
        }
    }

    /// Serves the application on a real socket (for WebSocket clients); returns its address.
    pub async fn serve(&self) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let router = self.router.clone();
        tokio::spawn(strata::http::serve(
            listener,
            router,
            std::future::pending(),
        ));
        address
    }

    /// A sandbox provider in the caller's tenant; returns its id.
    pub async fn sandbox(&self, who: &As) -> String {
        let provider = self
            .post("/api/v1/providers", who, json!({"provider_type": "sandbox", "display_name": format!("sandbox-{}", Uuid::new_v4())}))
            .await;
        provider.assert_status(StatusCode::CREATED);
        provider.body["id"].as_str().unwrap().to_string()
    }

    /// A GET's body as bytes (for answers that are not text), asserting 200.
    pub async fn call_raw_bytes(&self, path: &str, who: &As) -> Vec<u8> {
        let mut request = Request::get(path).body(Body::empty()).unwrap();
        authorize(&mut request, who);
        let response = self.router.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec()
    }

    pub async fn raw(&self, request: Request<Body>) -> Response {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&bytes).to_string();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Response {
            status,
            headers,
            body,
            text,
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        who: &As,
        body: Option<Value>,
    ) -> Response {
        self.call_with(method, path, who, body, &[]).await
    }

    pub async fn call_with(
        &self,
        method: Method,
        path: &str,
        who: &As,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Response {
        let mut request = Request::builder().method(method).uri(path);
        for (name, value) in credentials(who) {
            request = request.header(name, value);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = match body {
            Some(body) => request
                .header("content-type", "application/json")
                .body(Body::from(body.to_string())),
            None => request.body(Body::empty()),
        };
        self.raw(request.unwrap()).await
    }

    pub async fn get(&self, path: &str, who: &As) -> Response {
        self.call(Method::GET, path, who, None).await
    }

    pub async fn post(&self, path: &str, who: &As, body: Value) -> Response {
        self.call(Method::POST, path, who, Some(body)).await
    }

    pub async fn put(&self, path: &str, who: &As, body: Value) -> Response {
        self.call(Method::PUT, path, who, Some(body)).await
    }

    pub async fn delete(&self, path: &str, who: &As) -> Response {
        self.call(Method::DELETE, path, who, None).await
    }

    /// Signs up and logs in; returns the token and the user's own tenant id.
    pub async fn user(&self, email: &str) -> (As, Uuid) {
        let signup = self
            .post(
                "/api/v1/auth/signup",
                &As::Anonymous,
                json!({"email": email, "password": PASSWORD, "full_name": "Test User"}),
            )
            .await;
        signup.assert_status(StatusCode::CREATED);
        let tenant_id = signup.body["tenants"][0]["tenant_id"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        (self.login(email).await, tenant_id)
    }

    pub async fn login(&self, email: &str) -> As {
        let login = self
            .post(
                "/api/v1/auth/login",
                &As::Anonymous,
                json!({"username": email, "password": PASSWORD}),
            )
            .await;
        login.assert_status(StatusCode::OK);
        As::Token(login.body["access_token"].as_str().unwrap().to_string())
    }

    /// Waits (at most 30 s) until the deployment's log has a line containing `needle`.
    pub async fn wait_for_log_line(&self, who: &As, deployment: &str, needle: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let logs = self
                .get(&format!("/api/v1/deployments/{deployment}/logs"), who)
                .await
                .body;
            let found = logs["data"].as_array().is_some_and(|lines| {
                lines
                    .iter()
                    .any(|l| l["message"].as_str().is_some_and(|m| m.contains(needle)))
            });
            if found {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no log line with {needle:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the task has finished, and returns it.
    pub async fn wait_for_task(&self, who: &As, task_id: &str) -> Value {
        for _ in 0..1200 {
            let task = self.get(&format!("/api/v1/tasks/{task_id}"), who).await;
            task.assert_status(StatusCode::OK);
            if ["succeeded", "failed", "cancelled"].contains(&task.body["status"].as_str().unwrap())
            {
                return task.body;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("task {task_id} did not finish");
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some((shutdown, _)) = &self.workers {
            shutdown.cancel();
        }
    }
}

/// A `strata worker` process on this database, killed when dropped.
pub fn spawn_worker(url: &str) -> tokio::process::Child {
    spawn_worker_with(url, &[])
}

/// A `strata worker` process with more settings in its environment.
pub fn spawn_worker_with(url: &str, env: &[(&str, String)]) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["worker", "--concurrency", "8", "--heartbeat-seconds", "2"])
        .envs(process_env(url))
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the strata binary starts")
}

/// Settings of `strata` processes started by tests.
pub fn process_env(url: &str) -> Vec<(&'static str, String)> {
    static KEY: OnceLock<String> = OnceLock::new();
    vec![
        ("DATABASE_URL", url.to_string()),
        (
            "STRATA_MASTER_KEY",
            KEY.get_or_init(strata::config::generate_secret).clone(),
        ),
        ("JWT_SECRET", "test-jwt-secret-0123456789".into()),
        ("STRATA_LOG", "warn".into()),
    ]
}

/// Reads WebSocket text messages as JSON until `end` (or `stop_after` messages); returns them.
pub async fn read_ws(
    socket: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    stop_after: Option<usize>,
) -> Vec<Value> {
    use futures::StreamExt;
    let mut messages = Vec::new();
    while let Ok(Some(message)) = tokio::time::timeout(Duration::from_secs(60), socket.next()).await
    {
        match message.unwrap() {
            tokio_tungstenite::tungstenite::Message::Text(text) => {
                let value: Value = serde_json::from_str(&text).unwrap();
                let end = value["type"] == "end";
                messages.push(value);
                if end || stop_after.is_some_and(|n| messages.len() >= n) {
                    break;
                }
            }
            tokio_tungstenite::tungstenite::Message::Close(_) => break,
            _ => {}
        }
    }
    messages
}

/// The headers that authenticate `who`.
fn credentials(who: &As) -> Vec<(&'static str, String)> {
    match who {
        As::Anonymous => vec![],
        As::Token(token) => vec![("authorization", format!("Bearer {token}"))],
        As::Key(key) => vec![("x-api-key", key.clone())],
    }
}

/// Authenticates a request built by hand as `who`.
pub fn authorize(request: &mut Request<Body>, who: &As) {
    for (name, value) in credentials(who) {
        request
            .headers_mut()
            .insert(name, value.parse().expect("a header value"));
    }
}
