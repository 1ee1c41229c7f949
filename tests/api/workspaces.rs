//! Databricks workspaces: registered, read, changed and removed by their workspace id.

use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::helpers::TestApp;

#[tokio::test]
async fn workspaces_are_registered_changed_and_removed_by_their_workspace_id() {
    let app = TestApp::spawn().await;
    let (admin, _) = app.user("admin@example.com").await;
    let (other, _) = app.user("other@example.com").await;
    let body = json!({
        "workspace_id": "ws-prod-001",
        "name": "Production Workspace",
        "host": "https://adb-123.azuredatabricks.net",
        "cloud": "azure",
        "region": "eastus",
        "plan": "premium"
    });

    let created = app.post("/api/v1/workspaces", &admin, body.clone()).await;
    created.assert_status(StatusCode::CREATED);
    assert_eq!(created.body["workspace_id"], "ws-prod-001");
    assert_eq!(created.body["name"], "Production Workspace");
    assert_eq!(created.body["cloud"], "azure");
    assert_eq!(created.body["plan"], "premium");
    assert_eq!(created.body["status"], "active", "active by default");
    assert!(
        created.body["id"]
            .as_str()
            .unwrap()
            .parse::<uuid::Uuid>()
            .is_ok()
    );
    assert!(created.body["created_at"].is_string() && created.body["updated_at"].is_string());

    app.post("/api/v1/workspaces", &admin, body.clone())
        .await
        .assert_problem(StatusCode::CONFLICT, "DUPLICATE_RESOURCE");

    // Bad fields: each a 422 naming the field (or the value serde refused).
    for (change, field) in [
        (
            json!({"host": "http://adb-123.azuredatabricks.net"}),
            Some("host"),
        ),
        (json!({"host": "https://"}), Some("host")),
        (json!({"name": " "}), Some("name")),
        (json!({"workspace_id": ""}), Some("workspace_id")),
        (json!({"region": ""}), Some("region")),
        (json!({"cloud": "ibm"}), None),
        (json!({"plan": "gold"}), None),
        (json!({"status": "paused"}), None),
    ] {
        let mut bad = body.clone();
        bad["workspace_id"] = json!("ws-other");
        for (k, v) in change.as_object().unwrap() {
            bad[k] = v.clone();
        }
        let answer = app.post("/api/v1/workspaces", &admin, bad).await;
        answer.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_REQUEST");
        if let Some(field) = field {
            assert_eq!(answer.body["errors"][0]["field"], field, "{}", answer.text);
        }
    }
    let mut missing = body.clone();
    missing.as_object_mut().unwrap().remove("name");
    app.post("/api/v1/workspaces", &admin, missing)
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_REQUEST");

    let list = app.get("/api/v1/workspaces", &admin).await;
    list.assert_status(StatusCode::OK);
    assert_eq!(list.body["total"], 1, "the refused ones were not stored");
    assert_eq!(list.body["data"][0]["workspace_id"], "ws-prod-001");
    let got = app.get("/api/v1/workspaces/ws-prod-001", &admin).await;
    got.assert_status(StatusCode::OK);
    assert_eq!(got.body["host"], "https://adb-123.azuredatabricks.net");

    let patch = |who, change| {
        app.call(
            Method::PATCH,
            "/api/v1/workspaces/ws-prod-001",
            who,
            Some(change),
        )
    };
    let changed = patch(&admin, json!({"status": "inactive", "plan": "enterprise"})).await;
    changed.assert_status(StatusCode::OK);
    assert_eq!(changed.body["status"], "inactive");
    assert_eq!(changed.body["plan"], "enterprise");
    assert_eq!(changed.body["name"], "Production Workspace", "others stay");
    assert_eq!(changed.body["region"], "eastus");
    let at = |body: &serde_json::Value| {
        chrono::DateTime::parse_from_rfc3339(body["updated_at"].as_str().unwrap()).unwrap()
    };
    assert!(at(&changed.body) > at(&created.body));
    patch(&admin, json!({"status": "paused"}))
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_REQUEST");
    patch(&admin, json!({"host": "ftp://x"}))
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_REQUEST");
    assert_eq!(
        app.get("/api/v1/workspaces/ws-prod-001", &admin).await.body["status"],
        "inactive"
    );

    // Another tenant sees none of it, and may register the same workspace id for itself.
    app.get("/api/v1/workspaces/ws-prod-001", &other)
        .await
        .assert_problem(StatusCode::NOT_FOUND, "RESOURCE_NOT_FOUND");
    patch(&other, json!({"status": "active"}))
        .await
        .assert_problem(StatusCode::NOT_FOUND, "RESOURCE_NOT_FOUND");
    app.delete("/api/v1/workspaces/ws-prod-001", &other)
        .await
        .assert_problem(StatusCode::NOT_FOUND, "RESOURCE_NOT_FOUND");
    assert_eq!(app.get("/api/v1/workspaces", &other).await.body["total"], 0);
    app.post("/api/v1/workspaces", &other, body.clone())
        .await
        .assert_status(StatusCode::CREATED);

    app.delete("/api/v1/workspaces/ws-prod-001", &admin)
        .await
        .assert_status(StatusCode::NO_CONTENT);
    app.get("/api/v1/workspaces/ws-prod-001", &admin)
        .await
        .assert_problem(StatusCode::NOT_FOUND, "RESOURCE_NOT_FOUND");
    app.delete("/api/v1/workspaces/ws-prod-001", &admin)
        .await
        .assert_problem(StatusCode::NOT_FOUND, "RESOURCE_NOT_FOUND");
    assert_eq!(
        app.get("/api/v1/workspaces/ws-prod-001", &other)
            .await
            .status,
        StatusCode::OK,
        "the other tenant's registration stays"
    );
}
