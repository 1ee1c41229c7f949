use axum::http::StatusCode;

use crate::helpers::{As, TestApp, TestDb, test_settings};

#[tokio::test]
async fn health_answers_without_a_database_call() {
    let app = TestApp::spawn().await;
    let health = app.get("/api/v1/health", &As::Anonymous).await;
    health.assert_status(StatusCode::OK);
    assert_eq!(
        health.body,
        serde_json::json!({"status": "healthy", "service": "strata"})
    );
}

#[tokio::test]
async fn readiness_reports_database_queue_and_terraform() {
    let mut app = TestApp::spawn().await;
    let ready = app.get("/api/v1/health/ready", &As::Anonymous).await;
    ready.assert_status(StatusCode::OK);
    assert_eq!(
        ready.body["status"], "degraded",
        "no workers yet: {}",
        ready.text
    );
    assert_eq!(ready.body["services"]["queue"]["workers_alive"], 0);
    assert_eq!(ready.body["services"]["database"]["status"], "healthy");
    assert!(ready.body["services"]["database"]["response_time_ms"].is_u64());
    assert!(
        ready.body["services"]["terraform"]["version"]
            .as_str()
            .unwrap()
            .starts_with("1.")
    );

    app.start_workers();
    let mut body = serde_json::Value::Null;
    for _ in 0..100 {
        body = app.get("/api/v1/health/ready", &As::Anonymous).await.body;
        if body["status"] == "ready" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(body["status"], "ready", "{body}");
    assert!(body["services"]["queue"]["workers_alive"].as_i64().unwrap() >= 1);
    assert_eq!(body["services"]["queue"]["queued"], 0);
    assert_eq!(body["services"]["queue"]["running"], 0);
}

#[tokio::test]
async fn readiness_is_503_while_the_database_is_away_and_recovers_by_itself() {
    // A pool to a database that does not exist yet stands for a database that is down.
    let db = TestDb::new().await;
    let missing = format!("{}_later", db.name);
    let url = strata::bench::replace_database(&db.url, &missing).unwrap();
    let pool = strata::db::connect_lazy(&url, 2).unwrap();
    let state = strata::state::AppState::new(pool, test_settings());
    let router = strata::http::router(state);
    let call = || async {
        use tower::ServiceExt;
        let response = router
            .clone()
            .oneshot(
                axum::http::Request::get("/api/v1/health/ready")
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = response.status();
        let bytes = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        (
            status,
            serde_json::from_slice::<serde_json::Value>(&bytes).unwrap(),
        )
    };
    let (status, body) = call().await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["status"], "unavailable");
    assert_eq!(body["services"]["database"]["status"], "unavailable");
    assert!(body["services"]["database"]["error"].is_string());

    // The database comes back: the same process answers ready without a restart.
    let admin =
        sqlx::PgPool::connect(&strata::bench::replace_database(&db.url, "postgres").unwrap())
            .await
            .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {missing}")))
        .execute(&admin)
        .await
        .unwrap();
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    strata::db::migrate(&pool).await.unwrap();
    pool.close().await;
    let (status, body) = call().await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["services"]["database"]["status"], "healthy");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE {missing} WITH (FORCE)"
    )))
    .execute(&admin)
    .await
    .unwrap();
}
