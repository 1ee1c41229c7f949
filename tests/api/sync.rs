//! Sync and drift: a change made in the cloud behind Strata's back is found by a sync, kept as
//! drift on the resource, and cleared by the next apply.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::dns::record;
use crate::helpers::{As, TestApp};
use crate::resources::create_quick_vm;

async fn resource(app: &TestApp, who: &As, id: &str) -> Value {
    app.get(&format!("/api/v1/resources/{id}"), who).await.body
}

async fn sync(app: &TestApp, who: &As, path: &str) -> Value {
    let started = app.post(path, who, json!({})).await;
    started.assert_status(StatusCode::ACCEPTED);
    assert!(started.body["message"].is_string());
    let task = app
        .wait_for_task(who, started.body["task_id"].as_str().unwrap())
        .await;
    assert_eq!(task["status"], "succeeded", "{task}");
    task
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_finds_a_vm_changed_behind_stratas_back_until_the_next_apply() {
    let app = TestApp::spawn_with_workers().await;
    let (admin, _) = app.user("admin@example.com").await;
    let provider = app.sandbox(&admin).await;
    let changed = create_quick_vm(&app, &admin, &provider, "changed").await;
    let untouched = create_quick_vm(&app, &admin, &provider, "untouched").await;
    let id = changed["id"].as_str().unwrap();

    // Nothing changed yet: a sync finds no drift.
    let task = sync(&app, &admin, &format!("/api/v1/providers/{provider}/sync")).await;
    assert_eq!(task["result"]["refreshed"], 2, "{task}");
    assert_eq!(task["result"]["drifted"], json!([]));

    // Someone stops the vm and moves its address in the sandbox cloud's console.
    sqlx::query("INSERT INTO sandbox_observed (resource_id, outputs) VALUES ($1, $2)")
        .bind(uuid::Uuid::parse_str(id).unwrap())
        .bind(json!({"power_state": "stopped", "public_ip": "198.18.0.99"}))
        .execute(&app.db.pool)
        .await
        .unwrap();
    let before = resource(&app, &admin, id).await;
    let task = sync(&app, &admin, &format!("/api/v1/providers/{provider}/sync")).await;
    assert_eq!(task["result"]["drifted"], json!([id]), "{task}");

    let after = resource(&app, &admin, id).await;
    assert_eq!(after["drifted"], true);
    assert_eq!(after["power_state"], "stopped");
    assert_eq!(after["status"], "stopped");
    assert_eq!(after["attributes"]["public_ip"], "198.18.0.99");
    assert!(after["last_synced"].as_str() > before["last_synced"].as_str());
    let drift = app
        .get(&format!("/api/v1/resources/{id}/drift"), &admin)
        .await;
    drift.assert_status(StatusCode::OK);
    let mut found: Vec<(String, Value, Value)> = drift.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["attribute"].as_str().unwrap().to_string(),
                d["expected"].clone(),
                d["actual"].clone(),
            )
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        found,
        [
            ("power_state".into(), json!("running"), json!("stopped")),
            (
                "public_ip".into(),
                before["attributes"]["public_ip"].clone(),
                json!("198.18.0.99")
            ),
        ]
    );
    let listed = app.get("/api/v1/resources?kind=vm", &admin).await.body;
    let drifted: Vec<(&str, bool)> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["name"].as_str().unwrap(), r["drifted"].as_bool().unwrap()))
        .collect();
    assert!(drifted.contains(&("changed", true)) && drifted.contains(&("untouched", false)));
    assert_eq!(
        resource(&app, &admin, untouched["id"].as_str().unwrap()).await["drifted"],
        false
    );

    // Starting it again is an apply: the cloud matches again and the flag clears; the drift
    // found stays as history.
    let start = app
        .post(
            &format!("/api/v1/resources/{id}/action"),
            &admin,
            json!({"action": "start"}),
        )
        .await;
    let task = app
        .wait_for_task(&admin, start.body["task_id"].as_str().unwrap())
        .await;
    assert_eq!(task["status"], "succeeded", "{task}");
    let restarted = resource(&app, &admin, id).await;
    assert_eq!(restarted["drifted"], false);
    assert_eq!(restarted["power_state"], "running");
    assert_eq!(
        restarted["attributes"]["public_ip"],
        before["attributes"]["public_ip"]
    );
    let drift = app
        .get(&format!("/api/v1/resources/{id}/drift"), &admin)
        .await;
    assert_eq!(drift.body["drifted"], false);
    assert_eq!(drift.body["total"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_sync_covers_every_provider_and_dns_records_too() {
    let app = TestApp::spawn_with_workers().await;
    let (admin, _) = app.user("admin@example.com").await;
    let provider = app.sandbox(&admin).await;
    let (task, record_id) = record(
        &app,
        &admin,
        &provider,
        "www",
        json!({"zone": "example.com", "value": "192.0.2.10"}),
    )
    .await;
    assert_eq!(task["status"], "succeeded");
    sqlx::query(
        "UPDATE sandbox_dns_records SET content = '192.0.2.66' WHERE name = 'www.example.com'",
    )
    .execute(&app.db.pool)
    .await
    .unwrap();

    let task = sync(&app, &admin, "/api/v1/dashboard/sync/trigger").await;
    assert_eq!(task["result"]["drifted"], json!([record_id]), "{task}");
    let drift = app
        .get(&format!("/api/v1/resources/{record_id}/drift"), &admin)
        .await
        .body;
    assert_eq!(drift["drifted"], true);
    assert_eq!(drift["data"][0]["attribute"], "value");
    assert_eq!(drift["data"][0]["expected"], "192.0.2.10");
    assert_eq!(drift["data"][0]["actual"], "192.0.2.66");
    assert_eq!(
        resource(&app, &admin, &record_id).await["attributes"]["value"],
        "192.0.2.66"
    );

    // Another tenant's provider is not found; its sync is refused.
    let (other, _) = app.user("other@example.com").await;
    app.post(
        &format!("/api/v1/providers/{provider}/sync"),
        &other,
        json!({}),
    )
    .await
    .assert_problem(StatusCode::NOT_FOUND, "RESOURCE_NOT_FOUND");
}
