use std::time::Duration;

use axum::http::StatusCode;
use serde_json::json;
use strata::jobs::JobKind;
use strata::tasks::{NewTask, enqueue};

use crate::helpers::{As, TestApp};

async fn start(app: &TestApp, who: &As, kind: &str, params: serde_json::Value) -> String {
    let accepted = app
        .post(
            "/api/v1/tasks",
            who,
            json!({"kind": kind, "params": params}),
        )
        .await;
    accepted.assert_status(StatusCode::ACCEPTED);
    assert_eq!(accepted.body["status"], "queued");
    accepted.body["task_id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_task_runs_and_reports_progress_and_result() {
    let app = TestApp::spawn_with_workers().await;
    let (admin, _) = app.user("admin@example.com").await;
    let id = start(&app, &admin, "diagnostic.sleep", json!({"ms": 200})).await;
    let task = app.wait_for_task(&admin, &id).await;
    assert_eq!(task["status"], "succeeded");
    assert_eq!(task["kind"], "diagnostic.sleep");
    assert_eq!(task["attempts"], 1);
    assert_eq!(task["progress"]["percent"], 100);
    assert_eq!(task["result"], json!({"slept_ms": 200}));
    assert!(task["started_at"].is_string() && task["finished_at"].is_string());

    let id2 = start(&app, &admin, "diagnostic.noop", json!({})).await;
    app.wait_for_task(&admin, &id2).await;
    let list = app.get("/api/v1/tasks?kind=diagnostic.noop", &admin).await;
    assert_eq!(list.body["total"], 1);
    assert_eq!(list.body["data"][0]["id"], id2);
    // (The scheduler adds the tenant's periodic tasks too.)
    let list = app.get("/api/v1/tasks?status=succeeded", &admin).await;
    let succeeded = list.body["data"].as_array().unwrap();
    assert!(succeeded.iter().all(|t| t["status"] == "succeeded"));
    for wanted in [&id, &id2] {
        assert!(
            succeeded.iter().any(|t| &t["id"] == wanted),
            "{}",
            list.text
        );
    }
    app.get("/api/v1/tasks?status=sleeping", &admin)
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "INVALID_REQUEST");
}

#[tokio::test]
async fn fatal_failures_fail_at_once_and_retryable_ones_are_retried() {
    let app = TestApp::spawn_with_workers().await;
    let (admin, _) = app.user("admin@example.com").await;
    let fatal = start(
        &app,
        &admin,
        "diagnostic.fail",
        json!({"message": "bad plan"}),
    )
    .await;
    let task = app.wait_for_task(&admin, &fatal).await;
    assert_eq!(task["status"], "failed");
    assert_eq!(task["error"], "bad plan");
    assert_eq!(task["attempts"], 1);

    let retryable = start(
        &app,
        &admin,
        "diagnostic.fail",
        json!({"message": "flaky", "retryable": true}),
    )
    .await;
    let mut task = app.wait_for_task(&admin, &retryable).await;
    for _ in 0..3 {
        if task["status"] == "failed" {
            break;
        }
        task = app.wait_for_task(&admin, &retryable).await;
    }
    assert_eq!(task["status"], "failed", "{task}");
    assert_eq!(task["attempts"], 3, "retried up to max_attempts");
    assert_eq!(task["error"], "flaky");
}

#[tokio::test]
async fn a_running_task_is_cancelled_by_its_worker() {
    let app = TestApp::spawn_with_workers().await;
    let (admin, _) = app.user("admin@example.com").await;
    let id = start(&app, &admin, "diagnostic.sleep", json!({"ms": 30000})).await;
    for _ in 0..100 {
        if app.get(&format!("/api/v1/tasks/{id}"), &admin).await.body["status"] == "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cancel = app
        .post(&format!("/api/v1/tasks/{id}/cancel"), &admin, json!({}))
        .await;
    cancel.assert_status(StatusCode::ACCEPTED);
    assert_eq!(cancel.body["cancel_requested"], true);
    let task = app.wait_for_task(&admin, &id).await;
    assert_eq!(task["status"], "cancelled");
    app.post(&format!("/api/v1/tasks/{id}/cancel"), &admin, json!({}))
        .await
        .assert_problem(StatusCode::CONFLICT, "DUPLICATE_RESOURCE");
}

#[tokio::test]
async fn a_queued_task_is_cancelled_at_once_and_never_runs() {
    let mut app = TestApp::spawn().await;
    let (admin, _) = app.user("admin@example.com").await;
    let id = start(&app, &admin, "diagnostic.record", json!({})).await;
    let cancel = app
        .post(&format!("/api/v1/tasks/{id}/cancel"), &admin, json!({}))
        .await;
    cancel.assert_status(StatusCode::ACCEPTED);
    assert_eq!(cancel.body["status"], "cancelled");
    let other = start(&app, &admin, "diagnostic.record", json!({})).await;
    // Workers start only now, and must skip the cancelled task.
    app.start_workers();
    assert_eq!(
        app.wait_for_task(&admin, &other).await["status"],
        "succeeded"
    );
    app.stop_workers().await;
    let effects: i64 =
        sqlx::query_scalar("SELECT count(*) FROM diagnostic_effects WHERE task_id = $1::uuid")
            .bind(&id)
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(effects, 0, "the cancelled task never ran");
}

#[tokio::test]
async fn tasks_are_tenant_scoped_and_only_admins_start_diagnostics() {
    let app = TestApp::spawn().await;
    let (alice, _) = app.user("alice@example.com").await;
    let (bob, _) = app.user("bob@example.com").await;
    let id = start(&app, &alice, "diagnostic.noop", json!({})).await;
    app.get(&format!("/api/v1/tasks/{id}"), &bob)
        .await
        .assert_problem(StatusCode::NOT_FOUND, "RESOURCE_NOT_FOUND");
    app.post(&format!("/api/v1/tasks/{id}/cancel"), &bob, json!({}))
        .await
        .assert_problem(StatusCode::NOT_FOUND, "RESOURCE_NOT_FOUND");
    assert_eq!(app.get("/api/v1/tasks", &bob).await.body["total"], 0);
    let key = app
        .post(
            "/api/v1/api-keys",
            &alice,
            json!({"name": "m", "role": "member"}),
        )
        .await;
    let member = As::Key(key.body["key"].as_str().unwrap().into());
    app.post("/api/v1/tasks", &member, json!({"kind": "diagnostic.noop"}))
        .await
        .assert_problem(StatusCode::FORBIDDEN, "FORBIDDEN");
    app.post(
        "/api/v1/tasks",
        &alice,
        json!({"kind": "diagnostic.noop", "params": [1]}),
    )
    .await
    .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_REQUEST");
}

#[tokio::test]
async fn a_task_and_its_job_are_written_together_or_not_at_all() {
    let app = TestApp::spawn().await;
    let (_, tenant) = app.user("admin@example.com").await;
    let mut tx = app.db.pool.begin().await.unwrap();
    let ids = enqueue(
        &mut tx,
        vec![NewTask {
            tenant_id: tenant,
            kind: JobKind::DiagnosticNoop,
            params: json!({}),
            created_by: None,
        }],
    )
    .await
    .unwrap();
    tx.rollback().await.unwrap();
    let (tasks, jobs): (i64, i64) =
        sqlx::query_as("SELECT (SELECT count(*) FROM tasks), (SELECT count(*) FROM apalis.jobs)")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!((tasks, jobs), (0, 0));

    let mut tx = app.db.pool.begin().await.unwrap();
    let ids2 = enqueue(
        &mut tx,
        vec![NewTask {
            tenant_id: tenant,
            kind: JobKind::DiagnosticNoop,
            params: json!({}),
            created_by: None,
        }],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_ne!(ids, ids2);
    let job: (String, String, i32) = sqlx::query_as(
        "SELECT j.job_type, convert_from(j.job, 'UTF8'), j.max_attempts FROM apalis.jobs j
         JOIN tasks t ON t.job_id = j.id WHERE t.id = $1",
    )
    .bind(ids2[0])
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(job.0, "strata.default");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&job.1).unwrap(),
        json!({"task_id": ids2[0]})
    );
    assert_eq!(job.2, 3);
}

#[tokio::test]
async fn an_undecodable_job_fails_alone_and_the_worker_goes_on() {
    let app = TestApp::spawn_with_workers().await;
    let (admin, _) = app.user("admin@example.com").await;
    // Garbage pushed straight into the queue, as a foreign producer might.
    for payload in [&b"\xff\xfenot json"[..], br#"{"unexpected": true}"#] {
        let mut tx = app.db.pool.begin().await.unwrap();
        apalis_postgres::queries::push_tasks(
            &mut *tx,
            "strata.default",
            vec![apalis::prelude::TaskBuilder::new(payload.to_vec()).build()],
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }
    let id = start(&app, &admin, "diagnostic.record", json!({})).await;
    let task = app.wait_for_task(&admin, &id).await;
    assert_eq!(task["status"], "succeeded");
    let mut killed = 0;
    for _ in 0..100 {
        killed = sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM apalis.jobs WHERE status IN ('Killed', 'Failed') AND last_result::text LIKE '%undecodable%'",
        )
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
        if killed == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(killed, 2, "both bad jobs failed with a clear error");
    let later = start(&app, &admin, "diagnostic.noop", json!({})).await;
    assert_eq!(
        app.wait_for_task(&admin, &later).await["status"],
        "succeeded"
    );
}

#[tokio::test]
async fn finished_queue_rows_are_deleted_after_the_retention() {
    let app = TestApp::spawn_with_workers().await;
    let (admin, _) = app.user("admin@example.com").await;
    let id = start(&app, &admin, "diagnostic.noop", json!({})).await;
    app.wait_for_task(&admin, &id).await;
    let job_left = || async {
        sqlx::query_scalar::<_, bool>(
            "SELECT EXISTS (SELECT 1 FROM apalis.jobs j JOIN tasks t ON t.job_id = j.id WHERE t.id = $1::uuid)",
        )
        .bind(&id)
        .fetch_one(&app.db.pool)
        .await
        .unwrap()
    };
    assert!(job_left().await);
    for _ in 0..50 {
        // The job row is marked done just after the task row. (The scheduler's periodic
        // tasks for the tenant may be deleted too.)
        strata::jobs::runner::delete_finished_jobs(&app.state, Duration::ZERO)
            .await
            .unwrap();
        if !job_left().await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!job_left().await, "the finished job row is deleted");
    assert_eq!(
        strata::jobs::runner::delete_finished_jobs(&app.state, Duration::from_secs(3600))
            .await
            .unwrap(),
        0
    );
    // The task's own record stays.
    app.get(&format!("/api/v1/tasks/{id}"), &admin)
        .await
        .assert_status(StatusCode::OK);
}
