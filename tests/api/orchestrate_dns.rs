//! vm-dns and DNS failover, end to end: real Terraform for the vms, the Cloudflare stand-in or
//! the sandbox's DNS host for the records, and worker processes of their own.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::dns::{CF_TOKEN, app_with_cloudflare, cloudflare_provider, record};
use crate::helpers::{As, TestApp, spawn_worker_with};
use crate::resources::create_quick_vm;

fn step<'a>(task: &'a Value, name: &str) -> &'a Value {
    task["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no step {name}: {task}"))
}

async fn resource(app: &TestApp, who: &As, id: &str) -> Value {
    app.get(&format!("/api/v1/resources/{id}"), who).await.body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vm_dns_provisions_a_vm_and_its_record_on_cloudflare_with_worker_processes() {
    let (mut app, cloudflare) = app_with_cloudflare().await;
    // The work is done by two `strata worker` processes, which reach the stand-in too.
    app.stop_workers().await;
    let mut workers: Vec<_> = (0..2)
        .map(|_| {
            spawn_worker_with(
                &app.db.url,
                &[("STRATA_CLOUDFLARE_API_URL", cloudflare.url.clone())],
            )
        })
        .collect();
    let (admin, _) = app.user("admin@example.com").await;
    let vms = app.sandbox(&admin).await;
    let dns = cloudflare_provider(&app, &admin, CF_TOKEN).await;
    let zone = cloudflare.add_zone("example.org");

    let body = json!({
        "provider_id": vms, "dns_provider_id": dns, "zone": "example.org", "record_name": "web",
        "ttl": 120, "vm": {"name": "web-1", "spec": {"boot_seconds": 0}, "tags": {"team": "web"}},
    });
    let started = app
        .call_with(
            axum::http::Method::POST,
            "/api/v1/orchestrate/vm-dns",
            &admin,
            Some(body.clone()),
            &[("Idempotency-Key", "vm-dns-1")],
        )
        .await;
    started.assert_status(StatusCode::ACCEPTED);
    assert_eq!(started.body["fqdn"], "web.example.org");
    // A retried call returns the same task and makes nothing new.
    let again = app
        .call_with(
            axum::http::Method::POST,
            "/api/v1/orchestrate/vm-dns",
            &admin,
            Some(body),
            &[("Idempotency-Key", "vm-dns-1")],
        )
        .await;
    assert_eq!(again.body["task_id"], started.body["task_id"]);

    let task = app
        .wait_for_task(&admin, started.body["task_id"].as_str().unwrap())
        .await;
    assert_eq!(task["status"], "succeeded", "{task}");
    for name in ["provision_vm", "wait_for_ip", "create_dns_record", "verify"] {
        assert_eq!(step(&task, name)["status"], "succeeded", "{name}: {task}");
    }
    assert!(step(&task, "provision_vm")["deployment_id"].is_string());
    assert!(step(&task, "create_dns_record")["deployment_id"].is_string());
    let vm = resource(
        &app,
        &admin,
        started.body["vm_resource_id"].as_str().unwrap(),
    )
    .await;
    let ip = vm["attributes"]["public_ip"].as_str().unwrap();
    assert_eq!(step(&task, "wait_for_ip")["ip"], ip);
    let records = cloudflare.records(&zone);
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(
        (
            records[0]["name"].as_str(),
            records[0]["content"].as_str(),
            records[0]["ttl"].as_u64()
        ),
        (Some("web.example.org"), Some(ip), Some(120))
    );
    let listed = app.get("/api/v1/resources?kind=vm", &admin).await.body;
    assert_eq!(
        listed["total"], 1,
        "one vm, however often the call was sent"
    );
    for worker in &mut workers {
        worker.kill().await.ok();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_dns_step_destroys_the_vm_unless_asked_to_keep_it() {
    let app = TestApp::spawn_with_workers().await;
    let (admin, _) = app.user("admin@example.com").await;
    let provider = app.sandbox(&admin).await;
    // The name is taken in the zone by a record Strata does not manage.
    let (task, _) = record(
        &app,
        &admin,
        &provider,
        "taken",
        json!({"zone": "example.com", "value": "192.0.2.99"}),
    )
    .await;
    assert_eq!(task["status"], "succeeded");
    sqlx::query("UPDATE resources SET cloud_id = NULL, status = 'destroyed' WHERE name = 'taken'")
        .execute(&app.db.pool)
        .await
        .unwrap();

    for keep in [false, true] {
        let name = format!("vm-keep-{keep}");
        let started = app
            .post(
                "/api/v1/orchestrate/vm-dns",
                &admin,
                json!({"provider_id": provider, "dns_provider_id": provider, "zone": "example.com",
                       "record_name": "taken", "keep_on_failure": keep,
                       "vm": {"name": name, "spec": {"boot_seconds": 0}}}),
            )
            .await;
        started.assert_status(StatusCode::ACCEPTED);
        let task = app
            .wait_for_task(&admin, started.body["task_id"].as_str().unwrap())
            .await;
        assert_eq!(task["status"], "failed", "{task}");
        assert_eq!(step(&task, "provision_vm")["status"], "succeeded");
        assert_eq!(step(&task, "create_dns_record")["status"], "failed");
        assert_eq!(step(&task, "verify")["status"], "pending");
        let error = task["error"].as_str().unwrap();
        assert!(error.contains("conflict"), "{error}");
        let vm = resource(
            &app,
            &admin,
            started.body["vm_resource_id"].as_str().unwrap(),
        )
        .await;
        if keep {
            assert_eq!(step(&task, "compensate")["status"], "skipped");
            assert!(error.contains("kept"), "{error}");
            assert_eq!(vm["status"], "active");
        } else {
            let compensate = step(&task, "compensate");
            assert_eq!(compensate["status"], "succeeded", "{task}");
            let undone: Vec<&str> = compensate["undone"]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| u["kind"].as_str().unwrap())
                .collect();
            assert_eq!(undone, ["dns record", "vm"]);
            assert!(error.contains("undone: destroyed"), "{error}");
            assert_eq!(vm["status"], "destroyed");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_points_a_managed_record_at_the_standby_and_can_fail_back() {
    let app = TestApp::spawn_with_workers().await;
    let (admin, _) = app.user("admin@example.com").await;
    let provider = app.sandbox(&admin).await;
    let primary = create_quick_vm(&app, &admin, &provider, "primary").await;
    let standby = create_quick_vm(&app, &admin, &provider, "standby").await;
    let primary_ip =
        resource(&app, &admin, primary["id"].as_str().unwrap()).await["attributes"]["public_ip"]
            .as_str()
            .unwrap()
            .to_string();
    let standby_ip =
        resource(&app, &admin, standby["id"].as_str().unwrap()).await["attributes"]["public_ip"]
            .as_str()
            .unwrap()
            .to_string();
    let (task, record_id) = record(
        &app,
        &admin,
        &provider,
        "app",
        json!({"zone": "example.com", "value": primary_ip}),
    )
    .await;
    assert_eq!(task["status"], "succeeded");

    let started = app
        .post(
            "/api/v1/orchestrate/dns-failover",
            &admin,
            json!({"record": {"dns_provider_id": provider, "zone": "example.com", "record_name": "app"},
                   "target_resource_id": standby["id"]}),
        )
        .await;
    started.assert_status(StatusCode::ACCEPTED);
    assert_eq!(started.body["new_value"], standby_ip.as_str());
    let task = app
        .wait_for_task(&admin, started.body["task_id"].as_str().unwrap())
        .await;
    assert_eq!(task["status"], "succeeded", "{task}");
    assert_eq!(task["result"]["previous_value"], primary_ip.as_str());
    assert!(step(&task, "update_record")["deployment_id"].is_string());
    let managed = resource(&app, &admin, &record_id).await;
    assert_eq!(managed["attributes"]["value"], standby_ip.as_str());
    let content: String = sqlx::query_scalar(
        "SELECT content FROM sandbox_dns_records WHERE name = 'app.example.com'",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(content, standby_ip);

    // Fail back to the value the failover recorded.
    let history = app.get("/api/v1/orchestrate/dns-failover", &admin).await;
    assert_eq!(history.body["total"], 1);
    let previous = history.body["data"][0]["previous_value"].clone();
    assert_eq!(previous, primary_ip.as_str());
    let back = app
        .post(
            "/api/v1/orchestrate/dns-failover",
            &admin,
            json!({"record_resource_id": record_id, "ip": previous}),
        )
        .await;
    let task = app
        .wait_for_task(&admin, back.body["task_id"].as_str().unwrap())
        .await;
    assert_eq!(task["status"], "succeeded", "{task}");
    assert_eq!(
        resource(&app, &admin, &record_id).await["attributes"]["value"],
        primary_ip.as_str()
    );

    // Bad requests are refused before anything runs.
    let bad = app
        .post(
            "/api/v1/orchestrate/dns-failover",
            &admin,
            json!({"record_resource_id": record_id, "ip": "not-an-ip"}),
        )
        .await;
    bad.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_REQUEST");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_changes_a_record_strata_does_not_manage_on_cloudflare() {
    let (app, cloudflare) = app_with_cloudflare().await;
    let (admin, _) = app.user("admin@example.com").await;
    let dns = cloudflare_provider(&app, &admin, CF_TOKEN).await;
    let zone = cloudflare.add_zone("example.org");
    let id = cloudflare.add_record(&zone, "api", "A", "192.0.2.1");

    let started = app
        .post(
            "/api/v1/orchestrate/dns-failover",
            &admin,
            json!({"record": {"dns_provider_id": dns, "zone": "example.org", "record_name": "api"},
                   "ip": "192.0.2.2"}),
        )
        .await;
    started.assert_status(StatusCode::ACCEPTED);
    let task = app
        .wait_for_task(&admin, started.body["task_id"].as_str().unwrap())
        .await;
    assert_eq!(task["status"], "succeeded", "{task}");
    assert_eq!(task["result"]["previous_value"], "192.0.2.1");
    let records = cloudflare.records(&zone);
    assert_eq!(records.len(), 1);
    assert_eq!(
        (records[0]["id"].as_str(), records[0]["content"].as_str()),
        (Some(id.as_str()), Some("192.0.2.2"))
    );
}

#[tokio::test]
async fn vm_dns_checks_the_record_before_building_the_vm() {
    let app = TestApp::spawn().await;
    let (admin, _) = app.user("admin@example.com").await;
    let provider = app.sandbox(&admin).await;
    let request = |extra: Value| {
        let mut body = json!({"provider_id": provider, "dns_provider_id": provider,
                              "zone": "example.com", "record_name": "web",
                              "vm": {"name": "web-1", "spec": {"boot_seconds": 0}}});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    for (extra, field) in [
        (json!({"ttl": 1}), "ttl"),
        (json!({"zone": "not-hosted.org"}), "zone"),
        (json!({"record_name": "bad name"}), "record_name"),
        (
            json!({"vm": {"name": "web-1", "spec": {"size": "huge"}}}),
            "vm.spec.size",
        ),
    ] {
        let response = app
            .post("/api/v1/orchestrate/vm-dns", &admin, request(extra))
            .await;
        response.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_REQUEST");
        assert_eq!(
            response.body["errors"][0]["field"], field,
            "{}",
            response.text
        );
    }
    let vms = app.get("/api/v1/resources", &admin).await.body;
    assert_eq!(vms["total"], 0, "nothing was made");
}
