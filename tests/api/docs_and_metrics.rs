use axum::http::StatusCode;
use serde_json::json;

use crate::helpers::{As, TestApp};

#[tokio::test]
async fn the_openapi_document_lists_every_route_with_schemas() {
    let app = TestApp::spawn().await;
    let doc = app.get("/openapi.json", &As::Anonymous).await;
    doc.assert_status(StatusCode::OK);
    let paths = doc.body["paths"].as_object().unwrap();
    let expected = [
        ("/api/v1/health", "get"),
        ("/api/v1/health/ready", "get"),
        ("/api/v1/auth/signup", "post"),
        ("/api/v1/auth/login", "post"),
        ("/api/v1/auth/me", "get"),
        ("/api/v1/api-keys", "get"),
        ("/api/v1/api-keys", "post"),
        ("/api/v1/api-keys/{id}", "delete"),
        ("/api/v1/tenants", "get"),
        ("/api/v1/tenants", "post"),
        ("/api/v1/tenants/{id}", "get"),
        ("/api/v1/tenants/{id}", "put"),
        ("/api/v1/tenants/{id}", "delete"),
        ("/api/v1/tenants/{id}/members", "get"),
        ("/api/v1/tenants/{id}/members", "post"),
        ("/api/v1/tenants/{id}/members/{user_id}", "put"),
        ("/api/v1/tenants/{id}/members/{user_id}", "delete"),
        ("/api/v1/credentials", "get"),
        ("/api/v1/credentials", "post"),
        ("/api/v1/credentials/{id}", "get"),
        ("/api/v1/credentials/{id}", "delete"),
        ("/api/v1/providers", "get"),
        ("/api/v1/providers", "post"),
        ("/api/v1/providers/health", "get"),
        ("/api/v1/providers/{id}", "get"),
        ("/api/v1/providers/{id}", "put"),
        ("/api/v1/providers/{id}", "delete"),
        ("/api/v1/providers/{id}/health", "get"),
        ("/api/v1/providers/{id}/sync", "post"),
        ("/api/v1/tasks", "get"),
        ("/api/v1/tasks", "post"),
        ("/api/v1/tasks/{task_id}", "get"),
        ("/api/v1/tasks/{task_id}/cancel", "post"),
        ("/api/v1/resources", "get"),
        ("/api/v1/resources", "post"),
        ("/api/v1/resources/{id}", "get"),
        ("/api/v1/resources/{id}", "patch"),
        ("/api/v1/resources/{id}", "delete"),
        ("/api/v1/resources/{id}/action", "post"),
        ("/api/v1/resources/{id}/logs", "get"),
        ("/api/v1/resources/{id}/deployments", "get"),
        ("/api/v1/resources/{id}/drift", "get"),
        ("/api/v1/deployments/{id}", "get"),
        ("/api/v1/deployments/{id}/logs", "get"),
        ("/api/v1/inventory/vms", "get"),
        ("/api/v1/inventory/storage", "get"),
        ("/api/v1/inventory/networks", "get"),
        ("/api/v1/inventory/{id}", "get"),
        ("/api/v1/settings", "get"),
        ("/api/v1/settings/{key}", "get"),
        ("/api/v1/settings/{key}", "put"),
        ("/api/v1/settings/{key}", "delete"),
        ("/api/v1/schedules", "get"),
        ("/api/v1/backups", "get"),
        ("/api/v1/backups", "post"),
        ("/api/v1/dashboard/stats", "get"),
        ("/api/v1/dashboard/sync/trigger", "post"),
        ("/api/v1/dashboard/overview", "get"),
        ("/api/v1/dashboard/cost-trend", "get"),
        ("/api/v1/dashboard/cost-by-workspace", "get"),
        ("/api/v1/dashboard/cost-by-sku", "get"),
        ("/api/v1/dashboard/cost-by-user", "get"),
        ("/api/v1/dashboard/cost-by-job", "get"),
        ("/api/v1/orchestrate/lockdown", "get"),
        ("/api/v1/orchestrate/lockdown", "post"),
        ("/api/v1/orchestrate/vm-dns", "post"),
        ("/api/v1/billing/imports", "get"),
        ("/api/v1/billing/imports", "post"),
        ("/api/v1/billing/imports/{id}", "get"),
        ("/api/v1/billing/imports/{id}", "delete"),
        ("/api/v1/billing/costs", "get"),
        ("/api/v1/billing/summary", "get"),
        ("/api/v1/billing/export", "get"),
        ("/api/v1/billing", "get"),
        ("/api/v1/billing/{id}", "get"),
        ("/api/v1/currency-rates", "get"),
        ("/api/v1/currency-rates", "put"),
        ("/api/v1/costs", "get"),
        ("/api/v1/costs/summary", "get"),
        ("/api/v1/costs/by-date", "get"),
        ("/api/v1/services", "get"),
        ("/api/v1/services", "post"),
        ("/api/v1/services/{id}", "get"),
        ("/api/v1/services/{id}", "delete"),
        ("/api/v1/service-categories", "get"),
        ("/api/v1/service-categories", "post"),
        ("/api/v1/service-categories/{id}", "get"),
        ("/api/v1/unmapped-services", "get"),
        ("/api/v1/unmapped-services/{id}", "delete"),
        ("/api/v1/instance-catalog", "get"),
        ("/api/v1/instance-catalog/{instance_type}", "get"),
        ("/api/v1/usage", "get"),
        ("/api/v1/usage", "post"),
        ("/api/v1/usage/{id}", "get"),
        ("/api/v1/workspaces", "get"),
        ("/api/v1/workspaces", "post"),
        ("/api/v1/workspaces/{workspace_id}", "get"),
        ("/api/v1/workspaces/{workspace_id}", "patch"),
        ("/api/v1/workspaces/{workspace_id}", "delete"),
        ("/api/v1/orchestrate/dns-failover", "get"),
        ("/api/v1/orchestrate/dns-failover", "post"),
        ("/ws/deployments/{id}/logs", "get"),
        ("/ws/events", "get"),
        ("/metrics", "get"),
    ];
    for (path, method) in expected {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} is missing"
        );
    }
    let operations: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(
        operations,
        expected.len(),
        "every documented route is expected here"
    );
    let schemas = doc.body["components"]["schemas"].as_object().unwrap();
    for schema in [
        "Provider",
        "Task",
        "Tenant",
        "Credential",
        "ProviderSecrets",
        "Page_Task",
    ] {
        assert!(
            schemas.contains_key(schema),
            "schema {schema} is missing: {:?}",
            schemas.keys()
        );
    }
    assert!(doc.body["components"]["securitySchemes"]["bearer"].is_object());

    let ui = app.get("/docs/", &As::Anonymous).await;
    ui.assert_status(StatusCode::OK);
    assert!(ui.text.contains("swagger"), "Swagger UI is served");
}

#[tokio::test]
async fn metrics_count_requests_tasks_and_queue_depth() {
    let app = TestApp::spawn().await;
    let (admin, _) = app.user("admin@example.com").await;
    app.post("/api/v1/tasks", &admin, json!({"kind": "diagnostic.noop"}))
        .await;
    app.get("/api/v1/providers/not-a-uuid", &admin).await;
    let metrics = app.get("/metrics", &As::Anonymous).await;
    metrics.assert_status(StatusCode::OK);
    let text = metrics.text;
    assert!(
        text.contains(
            r#"strata_http_requests_total{method="POST",route="/api/v1/tasks",status="202"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"route="/api/v1/providers/{id}",status="400"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"strata_tasks{kind="diagnostic.noop",status="queued"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"strata_queue_depth{queue="strata.default"} 1"#),
        "{text}"
    );
    assert!(text.contains("strata_http_request_duration_seconds_bucket"));
    assert!(text.trim_end().ends_with("# EOF"));
}
