//! Orchestrations: lockdown of running vms in a scope.

use axum::http::StatusCode;
use serde_json::{Value, json};

use sqlx::Connection;

use crate::helpers::{As, TestApp};

async fn vm(app: &TestApp, who: &As, provider: &str, name: &str, team: &str) -> String {
    let accepted = app
        .post(
            "/api/v1/resources",
            who,
            json!({"provider_id": provider, "kind": "vm", "name": name,
                   "spec": {"boot_seconds": 0}, "tags": {"team": team}}),
        )
        .await;
    accepted.assert_status(StatusCode::ACCEPTED);
    let task = app
        .wait_for_task(who, accepted.body["task_id"].as_str().unwrap())
        .await;
    assert_eq!(task["status"], "succeeded", "{task}");
    accepted.body["id"].as_str().unwrap().to_string()
}

async fn lockdown(app: &TestApp, who: &As, body: Value) -> Value {
    let started = app.post("/api/v1/orchestrate/lockdown", who, body).await;
    started.assert_status(StatusCode::ACCEPTED);
    app.wait_for_task(who, started.body["task_id"].as_str().unwrap())
        .await
}

/// (name, outcome) of each vm in a lockdown's results, by name.
fn outcomes(results: &Value) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = results
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    found.sort();
    found
}

async fn state_of(app: &TestApp, who: &As, id: &str) -> (String, String) {
    let r = app.get(&format!("/api/v1/resources/{id}"), who).await.body;
    (
        r["status"].as_str().unwrap().to_string(),
        r["power_state"].as_str().unwrap().to_string(),
    )
}

fn pair(a: &str, b: &str) -> (String, String) {
    (a.to_string(), b.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lockdown_dry_runs_then_stops_and_terminates_the_running_vms_in_scope() {
    let app = TestApp::spawn_with_workers().await;
    let (admin, tenant) = app.user("admin@example.com").await;
    let provider_a = app.sandbox(&admin).await;
    let provider_b = app.sandbox(&admin).await;
    let a1 = vm(&app, &admin, &provider_a, "a1", "web").await;
    let a2 = vm(&app, &admin, &provider_a, "a2", "db").await;
    let b1 = vm(&app, &admin, &provider_b, "b1", "web").await;
    let a3 = vm(&app, &admin, &provider_a, "a3", "web").await;
    let stop = app
        .post(
            &format!("/api/v1/resources/{a3}/action"),
            &admin,
            json!({"action": "stop"}),
        )
        .await;
    app.wait_for_task(&admin, stop.body["task_id"].as_str().unwrap())
        .await;
    crate::resources::create(&app, &admin, &provider_a, "storage", "s1", json!({})).await;

    // Bad requests name the field; only admins lock down.
    for (body, field) in [
        (
            json!({"scope": {}, "action": "stop", "reason": "x"}),
            "scope",
        ),
        (
            json!({"scope": {"tenant": true, "tag": "team:web"}, "action": "stop", "reason": "x"}),
            "scope",
        ),
        (
            json!({"scope": {"tag": "team"}, "action": "stop", "reason": "x"}),
            "scope.tag",
        ),
        (
            json!({"scope": {"tenant": true}, "action": "stop", "reason": " "}),
            "reason",
        ),
        (
            json!({"scope": {"provider_id": uuid::Uuid::new_v4()}, "action": "stop", "reason": "x"}),
            "scope.provider_id",
        ),
    ] {
        let response = app
            .post("/api/v1/orchestrate/lockdown", &admin, body.clone())
            .await;
        response.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_REQUEST");
        assert_eq!(response.body["errors"][0]["field"], field, "{body}");
    }
    app.post(
        "/api/v1/orchestrate/lockdown",
        &admin,
        json!({"scope": {"tenant": true}, "action": "halt", "reason": "x"}),
    )
    .await
    .assert_status(StatusCode::UNPROCESSABLE_ENTITY);
    let (member, _) = app.user("member@example.com").await;
    app.post(
        &format!("/api/v1/tenants/{tenant}/members"),
        &admin,
        json!({"email": "member@example.com", "role": "member"}),
    )
    .await
    .assert_status(StatusCode::CREATED);
    let header = tenant.to_string();
    app.call_with(
        axum::http::Method::POST,
        "/api/v1/orchestrate/lockdown",
        &member,
        Some(json!({"scope": {"tenant": true}, "action": "stop", "reason": "x"})),
        &[("x-tenant-id", header.as_str())],
    )
    .await
    .assert_problem(StatusCode::FORBIDDEN, "FORBIDDEN");

    // A dry run lists the running vms of the tenant and changes nothing.
    let dry = lockdown(
        &app,
        &admin,
        json!({"scope": {"tenant": true}, "action": "stop", "reason": "budget exceeded", "dry_run": true}),
    )
    .await;
    assert_eq!(dry["status"], "succeeded", "{dry}");
    assert_eq!(
        outcomes(&dry["result"]["resources"]),
        [
            pair("a1", "would_stop"),
            pair("a2", "would_stop"),
            pair("b1", "would_stop")
        ]
    );
    for id in [&a1, &a2, &b1] {
        assert_eq!(state_of(&app, &admin, id).await, pair("active", "running"));
    }

    // For real, by tag: both web vms stop, each through its own deployment.
    let stopped = lockdown(
        &app,
        &admin,
        json!({"scope": {"tag": "team:web"}, "action": "stop", "reason": "web budget exceeded"}),
    )
    .await;
    assert_eq!(stopped["status"], "succeeded", "{stopped}");
    assert_eq!(
        outcomes(&stopped["result"]["resources"]),
        [pair("a1", "stopped"), pair("b1", "stopped")]
    );
    for entry in stopped["result"]["resources"].as_array().unwrap() {
        assert!(entry["deployment_id"].is_string(), "{entry}");
    }
    assert_eq!(
        state_of(&app, &admin, &a1).await,
        pair("stopped", "stopped")
    );
    assert_eq!(
        state_of(&app, &admin, &b1).await,
        pair("stopped", "stopped")
    );
    assert_eq!(state_of(&app, &admin, &a2).await, pair("active", "running"));
    let history = app
        .get(&format!("/api/v1/resources/{a1}/logs"), &admin)
        .await
        .body;
    assert_eq!(history["data"][0]["operation"], "stop");
    assert!(history["data"][0]["requested_by_email"].as_str() == Some("admin@example.com"));

    // Terminate by provider: only a2 still runs there.
    let terminated = lockdown(
        &app,
        &admin,
        json!({"scope": {"provider_id": provider_a}, "action": "terminate", "reason": "account compromised"}),
    )
    .await;
    assert_eq!(
        outcomes(&terminated["result"]["resources"]),
        [pair("a2", "terminated")]
    );
    assert_eq!(state_of(&app, &admin, &a2).await.0, "destroyed");

    // Each lockdown is kept with who asked and why.
    let list = app.get("/api/v1/orchestrate/lockdown", &admin).await.body;
    assert_eq!(list["total"], 3);
    let latest = &list["data"][0];
    assert_eq!(latest["reason"], "account compromised");
    assert_eq!(latest["action"], "terminate");
    assert_eq!(latest["status"], "succeeded");
    assert!(latest["requested_by"].is_string());
    assert_eq!(list["data"][2]["dry_run"], true);
    let _ = (a3, b1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lockdown_reports_a_vm_it_could_not_stop_and_a_cancelled_one_keeps_what_it_did() {
    let app = TestApp::spawn_with_workers().await;
    let (admin, _) = app.user("admin@example.com").await;
    let provider = app.sandbox(&admin).await;
    let ok = vm(&app, &admin, &provider, "ok", "web").await;
    let broken = vm(&app, &admin, &provider, "broken", "web").await;
    // The broken vm's Terraform state is unreadable, so its stop fails.
    sqlx::query("UPDATE terraform_state.states SET data = 'not a state' WHERE name = $1")
        .bind(format!("res-{broken}"))
        .execute(&app.db.pool)
        .await
        .unwrap();
    let task = lockdown(
        &app,
        &admin,
        json!({"scope": {"tag": "team:web"}, "action": "stop", "reason": "budget"}),
    )
    .await;
    assert_eq!(task["status"], "failed", "{task}");
    assert!(
        task["error"].as_str().unwrap().contains("1 of 2 vms"),
        "{task}"
    );
    let list = app.get("/api/v1/orchestrate/lockdown", &admin).await.body;
    let recorded = &list["data"][0];
    assert_eq!(recorded["status"], "failed");
    assert_eq!(
        outcomes(&recorded["results"]),
        [pair("broken", "failed"), pair("ok", "stopped")]
    );
    assert_eq!(
        state_of(&app, &admin, &ok).await,
        pair("stopped", "stopped")
    );

    // A lockdown cancelled while a vm's stop waits (another holds the vm's lock) ends
    // `cancelled` and keeps the outcomes it has.
    let waiting = vm(&app, &admin, &provider, "waiting", "db").await;
    let mut holder = sqlx::PgConnection::connect(&app.db.url).await.unwrap();
    sqlx::query("SELECT pg_advisory_lock(('x' || substr(md5($1::text), 1, 16))::bit(64)::bigint)")
        .bind(&waiting)
        .execute(&mut holder)
        .await
        .unwrap();
    let started = app
        .post(
            "/api/v1/orchestrate/lockdown",
            &admin,
            json!({"scope": {"tag": "team:db"}, "action": "stop", "reason": "budget"}),
        )
        .await;
    started.assert_status(StatusCode::ACCEPTED);
    let task_id = started.body["task_id"].as_str().unwrap();
    // Wait until the vm's stop is waiting for its turn.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let history = app
            .get(&format!("/api/v1/resources/{waiting}/logs"), &admin)
            .await
            .body;
        if history["data"][0]["operation"] == "stop" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{history}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    app.post(
        &format!("/api/v1/tasks/{task_id}/cancel"),
        &admin,
        json!({}),
    )
    .await
    .assert_status(StatusCode::ACCEPTED);
    let task = app.wait_for_task(&admin, task_id).await;
    assert_eq!(task["status"], "cancelled", "{task}");
    let list = app.get("/api/v1/orchestrate/lockdown", &admin).await.body;
    assert_eq!(list["data"][0]["status"], "cancelled", "{list}");
    // The vm's stop had started: it is reported, with its task, as not waited for.
    let results = list["data"][0]["results"].as_array().unwrap();
    assert!(
        results.is_empty()
            || (results.len() == 1
                && results[0]["outcome"] == "cancelled"
                && results[0]["task_id"].is_string()),
        "{list}"
    );
    drop(holder);
}
