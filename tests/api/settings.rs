//! Settings and the periodic work they schedule.

use std::time::Duration;

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::process::Child;
use uuid::Uuid;

use crate::helpers::{TestApp, spawn_worker};

#[tokio::test]
async fn settings_have_defaults_are_validated_per_tenant_and_changed_by_admins() {
    let app = TestApp::spawn().await;
    let (admin, tenant) = app.user("admin@example.com").await;
    let (other, _) = app.user("other@example.com").await;

    let list = app.get("/api/v1/settings", &admin).await;
    list.assert_status(StatusCode::OK);
    let defaults: Vec<(String, i64)> = list
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["key"].as_str().unwrap().to_string(),
                s["value"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        defaults,
        [
            ("spending_sync_interval".to_string(), 300),
            ("budget_enforce_interval".to_string(), 600),
            ("health_check_interval".to_string(), 120),
            ("drift_check_interval".to_string(), 3600),
            ("task_retention_days".to_string(), 30),
        ]
    );
    assert!(
        list.body
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["is_default"] == true)
    );
    let in_effect: Vec<&str> = list
        .body
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["in_effect"] == true)
        .map(|s| s["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        in_effect,
        [
            "spending_sync_interval",
            "health_check_interval",
            "drift_check_interval",
            "task_retention_days"
        ]
    );

    let key = "/api/v1/settings/health_check_interval";
    let changed = app.put(key, &admin, json!({"value": 45})).await;
    changed.assert_status(StatusCode::OK);
    assert_eq!(changed.body["value"], 45);
    assert_eq!(changed.body["default"], 120);
    assert_eq!(changed.body["is_default"], false);
    assert_eq!(changed.body["unit"], "seconds");
    assert!(changed.body["updated_by"].is_string());
    assert_eq!(app.get(key, &admin).await.body["value"], 45);
    // Another tenant keeps the default.
    assert_eq!(app.get(key, &other).await.body["value"], 120);

    for bad in [
        json!({"value": 5}),
        json!({"value": 90_000}),
        json!({"value": "60"}),
        json!({"value": 1.5}),
        json!({"value": null}),
    ] {
        let response = app.put(key, &admin, bad.clone()).await;
        response.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_REQUEST");
        assert_eq!(response.body["errors"][0]["field"], "value", "{bad}");
    }
    app.put(key, &admin, json!({"value": 60, "extra": 1}))
        .await
        .assert_status(StatusCode::UNPROCESSABLE_ENTITY);
    app.get("/api/v1/settings/no_such_setting", &admin)
        .await
        .assert_problem(StatusCode::NOT_FOUND, "RESOURCE_NOT_FOUND");
    app.put(
        "/api/v1/settings/no_such_setting",
        &admin,
        json!({"value": 1}),
    )
    .await
    .assert_problem(StatusCode::NOT_FOUND, "RESOURCE_NOT_FOUND");

    // A viewer of the tenant reads but does not write.
    let (viewer, _) = app.user("viewer@example.com").await;
    app.post(
        &format!("/api/v1/tenants/{tenant}/members"),
        &admin,
        json!({"email": "viewer@example.com", "role": "viewer"}),
    )
    .await
    .assert_status(StatusCode::CREATED);
    let tenant_header = tenant.to_string();
    let headers = [("x-tenant-id", tenant_header.as_str())];
    let read = app
        .call_with(Method::GET, key, &viewer, None, &headers)
        .await;
    assert_eq!(read.body["value"], 45);
    app.call_with(
        Method::PUT,
        key,
        &viewer,
        Some(json!({"value": 30})),
        &headers,
    )
    .await
    .assert_problem(StatusCode::FORBIDDEN, "FORBIDDEN");

    app.delete(key, &admin)
        .await
        .assert_status(StatusCode::NO_CONTENT);
    let reset = app.get(key, &admin).await;
    assert_eq!(reset.body["value"], 120);
    assert_eq!(reset.body["is_default"], true);
}

/// The tenant's tasks of a kind, oldest first.
async fn tasks_of(app: &TestApp, tenant: Uuid, kind: &str) -> Vec<(Uuid, String)> {
    sqlx::query_as(
        "SELECT id, status FROM tasks WHERE tenant_id = $1 AND kind = $2 ORDER BY created_at",
    )
    .bind(tenant)
    .bind(kind)
    .fetch_all(&app.db.pool)
    .await
    .unwrap()
}

/// Waits (at most 30 s) until the tenant has `n` tasks of `kind`, all finished.
async fn wait_for_tasks(app: &TestApp, tenant: Uuid, kind: &str, n: usize) -> Vec<(Uuid, String)> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let tasks = tasks_of(app, tenant, kind).await;
        if tasks.len() >= n && tasks.iter().all(|(_, s)| s == "succeeded" || s == "failed") {
            return tasks;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "waited for {n} finished {kind} tasks: {tasks:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Moves the schedule's last run back by `seconds`, as if that much time had passed.
async fn rewind(app: &TestApp, tenant: Uuid, name: &str, seconds: f64) {
    sqlx::query(
        "UPDATE schedules SET last_run_at = last_run_at - make_interval(secs => $3)
         WHERE tenant_id = $1 AND name = $2",
    )
    .bind(tenant)
    .bind(name)
    .bind(seconds)
    .execute(&app.db.pool)
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_worker_processes_run_each_periodic_task_once_per_interval() {
    let app = TestApp::spawn().await;
    let (admin, tenant) = app.user("admin@example.com").await;
    let provider = app.sandbox(&admin).await;
    let mut workers: Vec<Child> = (0..3).map(|_| spawn_worker(&app.db.url)).collect();

    // The first run comes at once; then one per elapsed interval (here: rewound), never three.
    let kind = "providers.health_check";
    wait_for_tasks(&app, tenant, kind, 1).await;
    for n in 2..=5 {
        rewind(&app, tenant, "provider_health", 120.0).await;
        wait_for_tasks(&app, tenant, kind, n).await;
        // Three schedulers tick every second: give the other two their chances.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let tasks = tasks_of(&app, tenant, kind).await;
        assert_eq!(tasks.len(), n, "one task per interval: {tasks:?}");
    }
    let tasks = tasks_of(&app, tenant, kind).await;
    assert!(tasks.iter().all(|(_, s)| s == "succeeded"), "{tasks:?}");

    // The task did its work: the provider's health is recorded.
    let provider = app
        .get(&format!("/api/v1/providers/{provider}"), &admin)
        .await
        .body;
    assert_eq!(provider["health"]["status"], "healthy", "{provider}");
    let task = app
        .get(&format!("/api/v1/tasks/{}", tasks[4].0), &admin)
        .await
        .body;
    assert_eq!(task["result"]["checked"], 1, "{task}");

    let schedules = app.get("/api/v1/schedules", &admin).await;
    schedules.assert_status(StatusCode::OK);
    let health: &Value = schedules
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "provider_health")
        .unwrap();
    assert_eq!(health["runs"], 5);
    assert_eq!(health["interval_seconds"], 120);
    assert_eq!(health["interval_setting"], "health_check_interval");
    assert_eq!(health["last_task_id"], tasks[4].0.to_string());
    // Retention ran once too, in the first tick.
    assert_eq!(tasks_of(&app, tenant, "tasks.retention").await.len(), 1);

    for worker in &mut workers {
        let _ = worker.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_interval_is_used_without_a_restart() {
    let app = TestApp::spawn_with_workers().await;
    let (admin, tenant) = app.user("admin@example.com").await;
    let kind = "providers.health_check";
    wait_for_tasks(&app, tenant, kind, 1).await;
    app.put(
        "/api/v1/settings/health_check_interval",
        &admin,
        json!({"value": 600}),
    )
    .await
    .assert_status(StatusCode::OK);
    // 300 s after the last run: not due at 600 s...
    rewind(&app, tenant, "provider_health", 300.0).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(tasks_of(&app, tenant, kind).await.len(), 1);
    // ...due at once at 200 s.
    app.put(
        "/api/v1/settings/health_check_interval",
        &admin,
        json!({"value": 200}),
    )
    .await
    .assert_status(StatusCode::OK);
    wait_for_tasks(&app, tenant, kind, 2).await;
    let schedules = app.get("/api/v1/schedules", &admin).await.body;
    let health = schedules
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "provider_health")
        .unwrap()
        .clone();
    assert_eq!(health["interval_seconds"], 200);
    let last: chrono::DateTime<chrono::Utc> =
        health["last_run_at"].as_str().unwrap().parse().unwrap();
    let next: chrono::DateTime<chrono::Utc> =
        health["next_run_at"].as_str().unwrap().parse().unwrap();
    assert_eq!((next - last).num_seconds(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_old_finished_tasks_but_keeps_resource_history() {
    let app = TestApp::spawn().await;
    let (admin, tenant) = app.user("admin@example.com").await;
    let provider = app.sandbox(&admin).await;
    let (_, other_tenant) = app.user("other@example.com").await;
    // A resource whose deployment task is old: history, kept.
    let accepted =
        crate::resources::create(&app, &admin, &provider, "storage", "kept", json!({})).await;
    let mut app = app;
    app.start_workers();
    let task = app
        .wait_for_task(&admin, accepted["task_id"].as_str().unwrap())
        .await;
    assert_eq!(task["status"], "succeeded");
    app.put(
        "/api/v1/settings/task_retention_days",
        &admin,
        json!({"value": 10}),
    )
    .await
    .assert_status(StatusCode::OK);
    let old = |days: i32, tenant: Uuid, status: &'static str| {
        let pool = app.db.pool.clone();
        async move {
            let id = Uuid::new_v4();
            sqlx::query(
                "INSERT INTO tasks (id, tenant_id, kind, status, queue, job_id, created_at, finished_at)
                 VALUES ($1, $2, 'diagnostic.noop', $3, 'strata.default', $1::text,
                         now() - make_interval(days => $4), now() - make_interval(days => $4))",
            )
            .bind(id)
            .bind(tenant)
            .bind(status)
            .bind(days)
            .execute(&pool)
            .await
            .unwrap();
            id
        }
    };
    let expired = old(11, tenant, "succeeded").await;
    let expired_failed = old(40, tenant, "failed").await;
    let recent = old(9, tenant, "succeeded").await;
    let other_tenants = old(11, other_tenant, "succeeded").await; // its retention is 30 days
    sqlx::query("UPDATE tasks SET finished_at = now() - interval '20 days' WHERE id = $1")
        .bind(
            accepted["task_id"]
                .as_str()
                .unwrap()
                .parse::<Uuid>()
                .unwrap(),
        )
        .execute(&app.db.pool)
        .await
        .unwrap();

    // Run the tenant's retention now.
    wait_for_tasks(&app, tenant, "tasks.retention", 1).await;
    rewind(&app, tenant, "task_retention", 3600.0).await;
    let runs = wait_for_tasks(&app, tenant, "tasks.retention", 2).await;
    let result = app
        .get(&format!("/api/v1/tasks/{}", runs[1].0), &admin)
        .await
        .body;
    assert_eq!(result["status"], "succeeded", "{result}");
    assert_eq!(result["result"]["retention_days"], 10);

    let exists = |id: Uuid| {
        let pool = app.db.pool.clone();
        async move {
            sqlx::query_scalar::<_, bool>("SELECT EXISTS (SELECT 1 FROM tasks WHERE id = $1)")
                .bind(id)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    assert!(!exists(expired).await);
    assert!(!exists(expired_failed).await);
    assert!(exists(recent).await);
    assert!(exists(other_tenants).await);
    assert!(exists(accepted["task_id"].as_str().unwrap().parse().unwrap()).await);
    let history = app
        .get(
            &format!(
                "/api/v1/resources/{}/deployments",
                accepted["id"].as_str().unwrap()
            ),
            &admin,
        )
        .await;
    assert_eq!(history.body["total"], 1, "{}", history.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_schedulers_fire_a_due_schedule_once() {
    let app = TestApp::spawn().await;
    let (_, tenant) = app.user("admin@example.com").await;
    let schedules = strata::schedules::SCHEDULES.len();
    for round in 1..=5 {
        let fired =
            futures::future::join_all((0..16).map(|_| strata::schedules::fire_due(&app.state)))
                .await;
        let fired: usize = fired.into_iter().map(Result::unwrap).sum();
        assert_eq!(fired, schedules, "round {round}");
        let tasks: i64 = sqlx::query_scalar("SELECT count(*) FROM tasks WHERE tenant_id = $1")
            .bind(tenant)
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
        assert_eq!(tasks, (round * schedules) as i64);
        // No worker runs them here: finish them, and let a day pass.
        sqlx::query(
            "UPDATE tasks SET status = 'succeeded', finished_at = now() WHERE tenant_id = $1",
        )
        .bind(tenant)
        .execute(&app.db.pool)
        .await
        .unwrap();
        sqlx::query("UPDATE schedules SET last_run_at = last_run_at - interval '1 day' WHERE tenant_id = $1")
            .bind(tenant)
            .execute(&app.db.pool)
            .await
            .unwrap();
    }
    // A schedule whose last task still waits is not fired again.
    sqlx::query("UPDATE tasks SET status = 'queued' WHERE tenant_id = $1")
        .bind(tenant)
        .execute(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(strata::schedules::fire_due(&app.state).await.unwrap(), 0);
}
