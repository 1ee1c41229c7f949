//! The dashboard's numbers come from the resources and providers the tenant has.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::helpers::TestApp;
use crate::resources::create;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_stats_add_up_the_tenants_resources_costs_and_provider_health() {
    let app = TestApp::spawn_with_workers().await;
    let (admin, _) = app.user("admin@example.com").await;
    let (other, _) = app.user("other@example.com").await;
    let provider = app.sandbox(&admin).await;

    let empty = app.get("/api/v1/dashboard/stats", &admin).await;
    empty.assert_status(StatusCode::OK);
    assert_eq!(empty.body["total_resources"], 0);
    assert_eq!(empty.body["estimated_monthly_cost"], 0.0);
    assert_eq!(empty.body["provider_health"].as_array().unwrap().len(), 1);

    let mut ids = vec![];
    for (kind, name, spec, region) in [
        (
            "vm",
            "web-1",
            json!({"size": "medium", "boot_seconds": 0}),
            Some("eu-west"),
        ),
        (
            "vm",
            "web-2",
            json!({"size": "small", "boot_seconds": 0}),
            Some("eu-west"),
        ),
        ("storage", "assets", json!({}), None),
        ("network", "core", json!({}), Some("us-east")),
    ] {
        let accepted = app
            .post(
                "/api/v1/resources",
                &admin,
                json!({"provider_id": provider, "kind": kind, "name": name, "spec": spec, "region": region}),
            )
            .await;
        accepted.assert_status(StatusCode::ACCEPTED);
        let task = app
            .wait_for_task(&admin, accepted.body["task_id"].as_str().unwrap())
            .await;
        assert_eq!(task["status"], "succeeded", "{task}");
        ids.push(accepted.body["id"].as_str().unwrap().to_string());
    }
    let stopped = app
        .post(
            &format!("/api/v1/resources/{}/action", ids[1]),
            &admin,
            json!({"action": "stop"}),
        )
        .await;
    stopped.assert_status(StatusCode::ACCEPTED);
    app.wait_for_task(&admin, stopped.body["task_id"].as_str().unwrap())
        .await;
    // A destroyed resource no longer counts.
    let extra = create(&app, &admin, &provider, "storage", "gone", json!({})).await;
    app.wait_for_task(&admin, extra["task_id"].as_str().unwrap())
        .await;
    let destroyed = app
        .delete(
            &format!("/api/v1/resources/{}", extra["id"].as_str().unwrap()),
            &admin,
        )
        .await;
    app.wait_for_task(&admin, destroyed.body["task_id"].as_str().unwrap())
        .await;
    app.get("/api/v1/providers/health", &admin)
        .await
        .assert_status(StatusCode::OK);

    // What the resources themselves say, summed here.
    let resources = app.get("/api/v1/resources", &admin).await.body;
    let resources = resources["data"].as_array().unwrap();
    assert_eq!(resources.len(), 4);
    let cost = |filter: &dyn Fn(&Value) -> bool| -> f64 {
        resources
            .iter()
            .filter(|r| filter(r))
            .map(|r| r["estimated_monthly_cost"].as_f64().unwrap_or(0.0))
            .sum()
    };
    let total = cost(&|_| true);
    let compute = cost(&|r| r["kind"] == "vm");
    assert!(compute > 0.0, "the running vm is priced");

    let stats = app.get("/api/v1/dashboard/stats", &admin).await.body;
    assert_eq!(stats["total_resources"], 4);
    assert_eq!(stats["total_vms"], 2);
    assert_eq!(stats["active_vms"], 1, "web-2 is stopped");
    assert_eq!(stats["total_storage"], 1);
    assert_eq!(stats["total_networks"], 1);
    assert_eq!(stats["currency"], "USD");
    let close = |a: &Value, b: f64| (a.as_f64().unwrap() - b).abs() < 0.006;
    assert!(
        close(&stats["estimated_monthly_cost"], total),
        "{stats} vs {total}"
    );
    assert_eq!(stats["cost_by_provider"][0]["provider"], "sandbox");
    assert!(close(&stats["cost_by_provider"][0]["cost"], total));
    let service = |name: &str| {
        stats["cost_by_service"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["service"] == name)
            .map(|s| s["cost"].clone())
            .unwrap()
    };
    assert!(close(&service("compute"), compute), "{stats}");
    assert_eq!(
        stats["provider_breakdown"],
        json!([{"provider": "sandbox", "count": 4, "vms": 2, "storage": 1, "networks": 1}])
    );
    assert_eq!(
        stats["region_distribution"],
        json!([{"region": "eu-west", "count": 2}, {"region": "unspecified", "count": 1}, {"region": "us-east", "count": 1}])
    );
    assert_eq!(stats["provider_health"][0]["status"], "healthy");
    assert!(stats["provider_health"][0]["last_check"].is_string());
    let recent = stats["recent_activity"].as_array().unwrap();
    assert_eq!(
        recent[0]["resource_name"], "gone",
        "the last change comes first"
    );
    let web2 = recent
        .iter()
        .find(|a| a["resource_name"] == "web-2")
        .unwrap();
    assert_eq!(web2["status"], "stopped");
    assert_eq!(web2["type"], "vm");

    // Another tenant sees none of it.
    let theirs = app.get("/api/v1/dashboard/stats", &other).await.body;
    assert_eq!(theirs["total_resources"], 0);
    assert_eq!(theirs["provider_health"], json!([]));
}
