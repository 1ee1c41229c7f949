//! Resources end to end: the real `terraform`, state in Postgres, live logs over WebSocket.

use std::collections::BTreeSet;
use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{Value, json};
use tokio_tungstenite::connect_async;

use crate::helpers::{As, TestApp, read_ws};

pub fn token(who: &As) -> String {
    match who {
        As::Token(token) | As::Key(token) => token.clone(),
        As::Anonymous => String::new(),
    }
}

pub async fn create(
    app: &TestApp,
    who: &As,
    provider: &str,
    kind: &str,
    name: &str,
    spec: Value,
) -> Value {
    let accepted = app
        .post(
            "/api/v1/resources",
            who,
            json!({"provider_id": provider, "kind": kind, "name": name, "spec": spec, "tags": {"team": "platform"}}),
        )
        .await;
    accepted.assert_status(StatusCode::ACCEPTED);
    accepted.body
}

/// Creates a sandbox vm with no boot time and waits until its task has succeeded; returns the
/// `POST` answer.
pub async fn create_quick_vm(app: &TestApp, who: &As, provider: &str, name: &str) -> Value {
    let accepted = create(app, who, provider, "vm", name, json!({"boot_seconds": 0})).await;
    let task = app
        .wait_for_task(who, accepted["task_id"].as_str().unwrap())
        .await;
    assert_eq!(task["status"], "succeeded", "{task}");
    accepted
}

/// The resource a `POST /resources` answer is about, as `GET /resources/{id}` shows it.
pub async fn resource_of(app: &TestApp, who: &As, accepted: &Value) -> Value {
    app.get(
        &format!("/api/v1/resources/{}", accepted["id"].as_str().unwrap()),
        who,
    )
    .await
    .body
}

/// The managed resources the Terraform state of a resource holds (data sources left out).
pub async fn state_resources(app: &TestApp, resource_id: &str) -> Vec<String> {
    let state: Option<String> =
        sqlx::query_scalar("SELECT data FROM terraform_state.states WHERE name = $1")
            .bind(format!("res-{resource_id}"))
            .fetch_optional(&app.db.pool)
            .await
            .unwrap();
    let Some(state) = state else { return vec![] };
    let state: Value = serde_json::from_str(&state).unwrap();
    state["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["mode"] == "managed")
        .flat_map(|r| {
            let address = format!(
                "{}.{}",
                r["type"].as_str().unwrap(),
                r["name"].as_str().unwrap()
            );
            r["instances"]
                .as_array()
                .unwrap()
                .iter()
                .map(move |_| address.clone())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vm_is_created_watched_live_found_in_the_inventory_stopped_started_and_destroyed() {
    let app = TestApp::spawn_with_workers().await;
    let (admin, _) = app.user("admin@example.com").await;
    let provider = app.sandbox(&admin).await;
    let address = app.serve().await;

    let accepted = create(
        &app,
        &admin,
        &provider,
        "vm",
        "web-1",
        json!({"size": "medium", "boot_seconds": 1}),
    )
    .await;
    assert_eq!(accepted["status"], "provisioning");
    assert_eq!(accepted["message"], "Resource provisioning started");
    assert!(
        accepted["estimated_monthly_cost"].as_f64().unwrap() > 10.0,
        "priced as e2-medium"
    );
    let (id, task, deployment) = (
        accepted["id"].as_str().unwrap().to_string(),
        accepted["task_id"].as_str().unwrap().to_string(),
        accepted["deployment_id"].as_str().unwrap().to_string(),
    );

    // The log, live, from the first line to the end.
    let url = format!(
        "ws://{address}/ws/deployments/{deployment}/logs?token={}",
        token(&admin)
    );
    let (mut socket, _) = connect_async(url).await.unwrap();
    let messages = read_ws(&mut socket, None).await;
    let end = messages.last().unwrap();
    assert_eq!(end["type"], "end", "{messages:?}");
    assert_eq!(end["status"], "succeeded");
    let lines = &messages[..messages.len() - 1];
    let seqs: Vec<i64> = lines.iter().map(|l| l["seq"].as_i64().unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=lines.len() as i64).collect::<Vec<_>>(),
        "every line once, in order"
    );
    let text: Vec<&str> = lines
        .iter()
        .map(|l| l["message"].as_str().unwrap())
        .collect();
    assert!(text.iter().any(|m| m.contains("booting: 20%")), "{text:?}");
    assert!(
        text.iter().any(|m| m.contains("Apply complete!")),
        "{text:?}"
    );
    assert!(
        lines
            .iter()
            .all(|l| l["ts"].is_string() && l["level"].is_string() && l["type"].is_string())
    );

    let task = app.wait_for_task(&admin, &task).await;
    assert_eq!(task["status"], "succeeded");
    let resource = app.get(&format!("/api/v1/resources/{id}"), &admin).await;
    assert_eq!(resource.body["status"], "active");
    let private_ip = resource.body["attributes"]["private_ip"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(private_ip.starts_with("10."));
    assert!(
        resource.body["cloud_id"]
            .as_str()
            .unwrap()
            .starts_with("sbx-i-")
    );
    assert_eq!(resource.body["attributes"]["instance_type"], "e2-medium");
    assert!(resource.body["cost_per_hour"].as_f64().unwrap() > 0.0);

    let deployment_body = app
        .get(&format!("/api/v1/deployments/{deployment}"), &admin)
        .await
        .body;
    assert_eq!(
        deployment_body["plan_summary"],
        json!({"add": 2, "change": 0, "remove": 0})
    );
    assert_eq!(
        deployment_body["progress"]["terraform_data.vm"]["status"],
        "complete"
    );
    assert!(deployment_body["duration_ms"].as_i64().unwrap() > 0);

    let inventory = app
        .get("/api/v1/inventory/vms?provider=sandbox", &admin)
        .await;
    assert_eq!(inventory.body["total"], 1);
    let item = &inventory.body["data"][0];
    assert_eq!(item["resource_name"], "web-1");
    assert_eq!(item["status"], "running");
    assert_eq!(item["metadata"]["private_ip"], private_ip);
    assert_eq!(item["metadata"]["instance_type"], "e2-medium");
    assert_eq!(item["metadata"]["tags"]["team"], "platform");
    assert!(item["metadata"]["cost_per_hour"].as_f64().unwrap() > 0.0);
    app.get(&format!("/api/v1/inventory/{id}"), &admin)
        .await
        .assert_status(StatusCode::OK);

    // Stop and start: the power state changes, and so does the monthly estimate.
    for (action, status, power) in [
        ("stop", "stopped", "stopped"),
        ("start", "active", "running"),
    ] {
        let accepted = app
            .post(
                &format!("/api/v1/resources/{id}/action"),
                &admin,
                json!({"action": action}),
            )
            .await;
        accepted.assert_status(StatusCode::ACCEPTED);
        let task = app
            .wait_for_task(&admin, accepted.body["task_id"].as_str().unwrap())
            .await;
        assert_eq!(task["status"], "succeeded", "{task}");
        let resource = app
            .get(&format!("/api/v1/resources/{id}"), &admin)
            .await
            .body;
        assert_eq!(resource["status"], status);
        assert_eq!(resource["power_state"], power);
        assert_eq!(
            resource["attributes"]["private_ip"],
            private_ip.as_str(),
            "the same machine"
        );
    }
    let stopped_cost = app
        .get("/api/v1/inventory/vms?status=running", &admin)
        .await
        .body["total"]
        .clone();
    assert_eq!(stopped_cost, 1);

    let check = app
        .post(
            &format!("/api/v1/resources/{id}/action"),
            &admin,
            json!({"action": "health_check"}),
        )
        .await;
    let task = app
        .wait_for_task(&admin, check.body["task_id"].as_str().unwrap())
        .await;
    assert_eq!(task["result"]["healthy"], true, "{task}");

    let destroy = app.delete(&format!("/api/v1/resources/{id}"), &admin).await;
    destroy.assert_status(StatusCode::ACCEPTED);
    assert_eq!(destroy.body["message"], "Resource destruction started");
    let task = app
        .wait_for_task(&admin, destroy.body["task_id"].as_str().unwrap())
        .await;
    assert_eq!(task["status"], "succeeded", "{task}");
    let resource = app
        .get(&format!("/api/v1/resources/{id}"), &admin)
        .await
        .body;
    assert_eq!(resource["status"], "destroyed");
    assert!(
        state_resources(&app, &id).await.is_empty(),
        "the state is empty after destroy"
    );
    assert_eq!(
        app.get("/api/v1/resources", &admin).await.body["total"],
        0,
        "destroyed ones are hidden"
    );
    assert_eq!(
        app.get("/api/v1/resources?include_destroyed=true", &admin)
            .await
            .body["total"],
        1
    );
    assert_eq!(
        app.get("/api/v1/inventory/vms", &admin).await.body["total"],
        0
    );

    let history = app
        .get(&format!("/api/v1/resources/{id}/logs"), &admin)
        .await
        .body;
    let operations: Vec<&str> = history["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["operation"].as_str().unwrap())
        .collect();
    assert_eq!(
        operations,
        ["destroy", "health_check", "start", "stop", "create"]
    );
    assert!(
        history["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["requested_by_email"] == "admin@example.com")
    );
    let deployments = app
        .get(&format!("/api/v1/resources/{id}/deployments"), &admin)
        .await
        .body;
    assert_eq!(deployments["total"], 5);
    app.delete(&format!("/api/v1/resources/{id}"), &admin)
        .await
        .assert_problem(StatusCode::CONFLICT, "DUPLICATE_RESOURCE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_reconnects_with_its_last_seq_gets_the_rest_exactly_once() {
    let app = TestApp::spawn_with_workers().await;
    let (admin, _) = app.user("admin@example.com").await;
    let provider = app.sandbox(&admin).await;
    let address = app.serve().await;
    let accepted = create(
        &app,
        &admin,
        &provider,
        "vm",
        "web-2",
        json!({"boot_seconds": 2}),
    )
    .await;
    let deployment = accepted["deployment_id"].as_str().unwrap();

    let url = |from: i64| {
        format!(
            "ws://{address}/ws/deployments/{deployment}/logs?from_seq={from}&token={}",
            token(&admin)
        )
    };
    let (mut first, _) = connect_async(url(0)).await.unwrap();
    let head = read_ws(&mut first, Some(5)).await;
    drop(first);
    let last = head.last().unwrap()["seq"].as_i64().unwrap();
    assert_eq!(last, 5);
    let (mut second, _) = connect_async(url(last)).await.unwrap();
    let tail = read_ws(&mut second, None).await;
    assert_eq!(tail.last().unwrap()["type"], "end");
    let seqs: Vec<i64> = head
        .iter()
        .chain(&tail[..tail.len() - 1])
        .map(|l| l["seq"].as_i64().unwrap())
        .collect();
    let unique: BTreeSet<i64> = seqs.iter().copied().collect();
    assert_eq!(unique.len(), seqs.len(), "no line twice: {seqs:?}");
    assert_eq!(
        seqs,
        (1..=seqs.len() as i64).collect::<Vec<_>>(),
        "no line missed"
    );

    // The plain-HTTP fallback gives the same lines.
    let page = app
        .get(
            &format!("/api/v1/deployments/{deployment}/logs?from_seq=3&limit=2"),
            &admin,
        )
        .await
        .body;
    let seqs: Vec<i64> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, [4, 5]);
    assert_eq!(page["next_seq"], 5);
    assert_eq!(page["complete"], false);
    let all = app
        .get(&format!("/api/v1/deployments/{deployment}/logs"), &admin)
        .await
        .body;
    assert_eq!(all["complete"], true);
    assert_eq!(all["data"].as_array().unwrap().len(), unique.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_network_dns_records_and_clusters_are_created_with_their_outputs() {
    let app = TestApp::spawn_with_workers().await;
    let (admin, _) = app.user("admin@example.com").await;
    let provider = app.sandbox(&admin).await;
    let cases = [
        (
            "storage",
            json!({"size_gb": 500, "storage_class": "archive"}),
            "bucket_id",
            "sbx-bucket-",
        ),
        (
            "network",
            json!({"cidr_block": "10.20.0.0/16", "subnet_count": 3}),
            "network_id",
            "sbx-vpc-",
        ),
        (
            "dns_record",
            json!({"zone": "example.com", "value": "198.51.100.7"}),
            "record_id",
            // The sandbox DNS host's ids look like Cloudflare's: 32 hex digits.
            "",
        ),
        (
            "cluster",
            json!({"node_count": 2, "node_size": "large"}),
            "cluster_id",
            "sbx-k8s-",
        ),
    ];
    let mut started = vec![];
    for (kind, spec, _, _) in &cases {
        started.push(
            create(
                &app,
                &admin,
                &provider,
                kind,
                &format!("{kind}-1"),
                spec.clone(),
            )
            .await,
        );
    }
    for ((kind, _, output, prefix), accepted) in cases.iter().zip(&started) {
        let task = app
            .wait_for_task(&admin, accepted["task_id"].as_str().unwrap())
            .await;
        assert_eq!(task["status"], "succeeded", "{kind}: {task}");
        let resource = resource_of(&app, &admin, accepted).await;
        assert_eq!(resource["status"], "active", "{kind}");
        assert!(
            resource["attributes"][output]
                .as_str()
                .unwrap()
                .starts_with(prefix),
            "{kind}: {resource}"
        );
        assert_eq!(resource["cloud_id"], resource["attributes"][output]);
    }
    let network = app
        .get(
            &format!("/api/v1/resources/{}", started[1]["id"].as_str().unwrap()),
            &admin,
        )
        .await
        .body;
    assert_eq!(
        network["attributes"]["subnets"],
        json!(["10.20.0.0/24", "10.20.1.0/24", "10.20.2.0/24"])
    );
    let dns = app
        .get(
            &format!("/api/v1/resources/{}", started[2]["id"].as_str().unwrap()),
            &admin,
        )
        .await
        .body;
    assert_eq!(dns["attributes"]["fqdn"], "dns_record-1.example.com");
    let cluster = app
        .get(
            &format!("/api/v1/resources/{}", started[3]["id"].as_str().unwrap()),
            &admin,
        )
        .await
        .body;
    assert_eq!(cluster["attributes"]["node_count"], 2);
    assert_eq!(
        state_resources(&app, cluster["id"].as_str().unwrap())
            .await
            .len(),
        4,
        "power, control plane, 2 nodes"
    );
    let expected = 2.0 * strata::pricing::hourly_price("sandbox", "e2-standard-4", None).unwrap();
    assert!((cluster["cost_per_hour"].as_f64().unwrap() - expected).abs() < 1e-9);
    assert_eq!(
        app.get("/api/v1/inventory/storage", &admin).await.body["total"],
        1
    );
    assert_eq!(
        app.get("/api/v1/inventory/networks", &admin).await.body["total"],
        1
    );

    // Filters: by tag, kind and status.
    let tagged = app
        .get("/api/v1/resources?tag=team:platform", &admin)
        .await
        .body;
    assert_eq!(tagged["total"], 4);
    assert_eq!(
        app.get("/api/v1/resources?tag=team:data", &admin)
            .await
            .body["total"],
        0
    );
    assert_eq!(
        app.get("/api/v1/resources?kind=cluster", &admin).await.body["total"],
        1
    );
    app.get("/api/v1/resources?tag=nocolon", &admin)
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_REQUEST");

    // terminate is a destroy, recorded as the action it was asked as.
    let storage_id = started[0]["id"].as_str().unwrap();
    let terminate = app
        .post(
            &format!("/api/v1/resources/{storage_id}/action"),
            &admin,
            json!({"action": "terminate"}),
        )
        .await;
    terminate.assert_status(StatusCode::ACCEPTED);
    let task = app
        .wait_for_task(&admin, terminate.body["task_id"].as_str().unwrap())
        .await;
    assert_eq!(task["status"], "succeeded", "{task}");
    let storage = app
        .get(&format!("/api/v1/resources/{storage_id}"), &admin)
        .await
        .body;
    assert_eq!(storage["status"], "destroyed");
    assert!(state_resources(&app, storage_id).await.is_empty());
    let history = app
        .get(&format!("/api/v1/resources/{storage_id}/logs"), &admin)
        .await
        .body;
    assert_eq!(history["data"][0]["operation"], "terminate");
    assert_eq!(
        app.get("/api/v1/resources?status=destroyed", &admin)
            .await
            .body["total"],
        1
    );
    assert_eq!(
        app.get("/api/v1/inventory/storage?status=deleted", &admin)
            .await
            .body["total"],
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_values_never_become_configuration() {
    let app = TestApp::spawn_with_workers().await;
    let (admin, _) = app.user("admin@example.com").await;
    let provider = app.sandbox(&admin).await;
    let evil = "x\"} resource \"terraform_data\" \"evil\" { input = \"${file(\"/etc/passwd\")}\" } %{ if true }y%{ endif }\n# \\\" '";
    let accepted = app
        .post(
            "/api/v1/resources",
            &admin,
            json!({"provider_id": provider, "kind": "vm", "name": evil,
                   "spec": {"image": "%{ for x in [1] }${x}%{ endfor }", "boot_seconds": 0},
                   "tags": {"k\"ey": "v${1+1}", "newline": "a\nb"}}),
        )
        .await;
    accepted.assert_status(StatusCode::ACCEPTED);
    let task = app
        .wait_for_task(&admin, accepted.body["task_id"].as_str().unwrap())
        .await;
    assert_eq!(task["status"], "succeeded", "{task}");
    let id = accepted.body["id"].as_str().unwrap();
    let resource = app
        .get(&format!("/api/v1/resources/{id}"), &admin)
        .await
        .body;
    assert_eq!(resource["name"], evil);
    assert_eq!(resource["attributes"]["name"], evil, "strings stay strings");
    assert_eq!(
        resource["attributes"]["image"],
        "%{ for x in [1] }${x}%{ endfor }"
    );
    let mut addresses = state_resources(&app, id).await;
    addresses.sort();
    assert_eq!(
        addresses,
        ["terraform_data.power", "terraform_data.vm"],
        "no resource was injected"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_provisioner_fails_the_task_with_terraforms_diagnostic() {
    let app = TestApp::spawn_with_workers().await;
    let (admin, _) = app.user("admin@example.com").await;
    let provider = app.sandbox(&admin).await;
    let accepted = create(
        &app,
        &admin,
        &provider,
        "vm",
        "broken",
        json!({"boot_seconds": 0, "fail_boot": true}),
    )
    .await;
    let task = app
        .wait_for_task(&admin, accepted["task_id"].as_str().unwrap())
        .await;
    assert_eq!(task["status"], "failed");
    assert_eq!(task["attempts"], 1, "a failed apply is not retried blindly");
    let error = task["error"].as_str().unwrap();
    assert!(error.contains("terraform apply failed"), "{error}");
    assert!(error.contains("local-exec provisioner error"), "{error}");
    let deployment = app
        .get(
            &format!(
                "/api/v1/deployments/{}",
                accepted["deployment_id"].as_str().unwrap()
            ),
            &admin,
        )
        .await
        .body;
    assert_eq!(deployment["status"], "failed");
    let diagnostics = deployment["diagnostics"].as_array().unwrap();
    assert!(
        diagnostics.iter().all(|d| d["severity"] == "error"),
        "no warnings: {deployment}"
    );
    assert!(
        diagnostics[0]["detail"]
            .as_str()
            .unwrap()
            .contains("exit status 3"),
        "{deployment}"
    );
    let logs = log_messages(&app, &admin, &accepted["deployment_id"]).await;
    assert!(
        logs.iter().any(|m| m.contains("no bootable disk")),
        "{logs:?}"
    );
    let resource = resource_of(&app, &admin, &accepted).await;
    assert_eq!(resource["status"], "failed");
}

/// Processes whose working directory is inside this deployment's run directories.
fn processes_in_runs_of(deployment: &str) -> Vec<String> {
    let mut found = vec![];
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cwd) = std::fs::read_link(entry.path().join("cwd"))
            && cwd.to_string_lossy().contains(deployment)
        {
            found.push(format!(
                "{} {}",
                entry.file_name().to_string_lossy(),
                cwd.display()
            ));
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_apply_ends_cancelled_and_leaves_no_process() {
    let app = TestApp::spawn_with_workers().await;
    let (admin, _) = app.user("admin@example.com").await;
    let provider = app.sandbox(&admin).await;
    let accepted = create(
        &app,
        &admin,
        &provider,
        "vm",
        "slow",
        json!({"boot_seconds": 120}),
    )
    .await;
    let (task_id, deployment) = (
        accepted["task_id"].as_str().unwrap(),
        accepted["deployment_id"].as_str().unwrap(),
    );
    app.wait_for_log_line(&admin, deployment, "booting").await;
    assert!(
        !processes_in_runs_of(deployment).is_empty(),
        "terraform is running"
    );
    app.post(
        &format!("/api/v1/tasks/{task_id}/cancel"),
        &admin,
        json!({}),
    )
    .await
    .assert_status(StatusCode::ACCEPTED);
    let task = app.wait_for_task(&admin, task_id).await;
    assert_eq!(task["status"], "cancelled", "{task}");
    let deployment_body = app
        .get(&format!("/api/v1/deployments/{deployment}"), &admin)
        .await
        .body;
    assert_eq!(deployment_body["status"], "cancelled");
    assert!(
        processes_in_runs_of(deployment).is_empty(),
        "left behind: {:?}",
        processes_in_runs_of(deployment)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_on_one_resource_wait_their_turn() {
    let app = TestApp::spawn_with_workers().await;
    let (admin, _) = app.user("admin@example.com").await;
    let provider = app.sandbox(&admin).await;
    let accepted = create(
        &app,
        &admin,
        &provider,
        "vm",
        "busy",
        json!({"boot_seconds": 3}),
    )
    .await;
    let id = accepted["id"].as_str().unwrap();
    let update = app
        .call(
            axum::http::Method::PATCH,
            &format!("/api/v1/resources/{id}"),
            &admin,
            Some(json!({"tags": {"team": "data"}})),
        )
        .await;
    update.assert_status(StatusCode::ACCEPTED);
    let second = update.body["task_id"].as_str().unwrap();
    let mut saw_wait = false;
    for _ in 0..100 {
        let task = app
            .get(&format!("/api/v1/tasks/{second}"), &admin)
            .await
            .body;
        if task["status"] == "queued"
            && task["progress"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(accepted["deployment_id"].as_str().unwrap()))
        {
            saw_wait = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        saw_wait,
        "the second operation waits, queued, naming the first"
    );
    let first = app
        .wait_for_task(&admin, accepted["task_id"].as_str().unwrap())
        .await;
    let second = app.wait_for_task(&admin, second).await;
    assert_eq!(
        (first["status"].as_str(), second["status"].as_str()),
        (Some("succeeded"), Some("succeeded"))
    );
    let deployment = |task: &Value| {
        task["params"]["deployment_id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let first_run = app
        .get(
            &format!("/api/v1/deployments/{}", deployment(&first)),
            &admin,
        )
        .await
        .body;
    let second_run = app
        .get(
            &format!("/api/v1/deployments/{}", deployment(&second)),
            &admin,
        )
        .await
        .body;
    assert!(
        second_run["started_at"].as_str() >= first_run["finished_at"].as_str(),
        "{first_run} {second_run}"
    );
    let resource = app
        .get(&format!("/api/v1/resources/{id}"), &admin)
        .await
        .body;
    assert_eq!(resource["tags"], json!({"team": "data"}));
    assert_eq!(resource["status"], "active");
}

#[tokio::test]
async fn an_idempotency_key_returns_the_first_answer_and_creates_nothing_new() {
    let app = TestApp::spawn().await;
    let (admin, _) = app.user("admin@example.com").await;
    let provider = app.sandbox(&admin).await;
    let body = json!({"provider_id": provider, "kind": "vm", "name": "once"});
    let post = |body: Value, key: &'static str| {
        let app = &app;
        let admin = admin.clone();
        async move {
            app.call_with(
                axum::http::Method::POST,
                "/api/v1/resources",
                &admin,
                Some(body),
                &[("idempotency-key", key)],
            )
            .await
        }
    };
    let first = post(body.clone(), "key-1").await;
    first.assert_status(StatusCode::ACCEPTED);
    let again = post(body.clone(), "key-1").await;
    again.assert_status(StatusCode::ACCEPTED);
    assert_eq!(again.body, first.body);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM resources")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(count, 1);
    let tasks: i64 = sqlx::query_scalar("SELECT count(*) FROM tasks")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(tasks, 1);
    post(
        json!({"provider_id": provider, "kind": "vm", "name": "other"}),
        "key-1",
    )
    .await
    .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_REQUEST");
    // Another caller's key of the same name is theirs alone.
    let (other, _) = app.user("other@example.com").await;
    let theirs = app
        .call_with(
            axum::http::Method::POST,
            "/api/v1/tenants",
            &other,
            Some(json!({"name": "t"})),
            &[("idempotency-key", "key-1")],
        )
        .await;
    theirs.assert_status(StatusCode::CREATED);
}

#[tokio::test]
async fn specs_that_do_not_fit_are_422_naming_the_field() {
    let app = TestApp::spawn().await;
    let (admin, _) = app.user("admin@example.com").await;
    let provider = app.sandbox(&admin).await;
    let cases = [
        (
            json!({"kind": "vm", "spec": {"size": "gigantic"}}),
            "spec.size",
        ),
        (
            json!({"kind": "vm", "spec": {"disk_gb": "big"}}),
            "spec.disk_gb",
        ),
        (json!({"kind": "vm", "spec": {"cpus": 4}}), "spec.cpus"),
        (
            json!({"kind": "dns_record", "spec": {"zone": "example.com"}}),
            "spec",
        ),
        (
            json!({"kind": "network", "spec": {"cidr_block": "300.0.0.0/16"}}),
            "spec.cidr_block",
        ),
        (json!({"kind": "vm", "tags": {"n": 1}}), "tags.n"),
    ];
    for (extra, field) in cases {
        let mut body = json!({"provider_id": provider, "name": "x"});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let response = app.post("/api/v1/resources", &admin, body).await;
        response.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_REQUEST");
        assert_eq!(
            response.body["errors"][0]["field"], field,
            "{}",
            response.text
        );
    }
    app.post(
        "/api/v1/resources",
        &admin,
        json!({"provider_id": provider, "kind": "database", "name": "x"}),
    )
    .await
    .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_REQUEST");
    app.post(
        "/api/v1/resources",
        &admin,
        json!({"provider_id": uuid::Uuid::new_v4(), "kind": "vm", "name": "x"}),
    )
    .await
    .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_REQUEST");
    let body = json!({"provider_id": provider, "kind": "vm", "name": "dup"});
    app.post("/api/v1/resources", &admin, body.clone())
        .await
        .assert_status(StatusCode::ACCEPTED);
    app.post("/api/v1/resources", &admin, body)
        .await
        .assert_problem(StatusCode::CONFLICT, "DUPLICATE_RESOURCE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_announce_resource_changes_to_the_tenant_and_answer_ping() {
    use futures::SinkExt;
    let app = TestApp::spawn_with_workers().await;
    let (admin, _) = app.user("admin@example.com").await;
    let (stranger, _) = app.user("stranger@example.com").await;
    let provider = app.sandbox(&admin).await;
    let address = app.serve().await;
    let (mut mine, _) = connect_async(format!("ws://{address}/ws/events?token={}", token(&admin)))
        .await
        .unwrap();
    let (mut theirs, _) = connect_async(format!(
        "ws://{address}/ws/events?token={}",
        token(&stranger)
    ))
    .await
    .unwrap();
    mine.send(tokio_tungstenite::tungstenite::Message::Text("ping".into()))
        .await
        .unwrap();
    let pong = read_ws(&mut mine, Some(1)).await;
    assert_eq!(pong[0], json!({"type": "pong"}));

    let accepted = create(&app, &admin, &provider, "storage", "bucket", json!({})).await;
    let events = read_ws(&mut mine, Some(2)).await;
    let id = accepted["id"].as_str().unwrap();
    assert_eq!(
        events[0],
        json!({"type": "resource_change", "action": "create", "resource_id": id, "provider_id": provider, "status": "provisioning"})
    );
    assert_eq!(events[1]["status"], "active");
    assert_eq!(events[1]["action"], "apply");
    theirs
        .send(tokio_tungstenite::tungstenite::Message::Text("ping".into()))
        .await
        .unwrap();
    assert_eq!(
        read_ws(&mut theirs, Some(1)).await[0],
        json!({"type": "pong"}),
        "the other tenant heard nothing before its pong"
    );
}

#[tokio::test]
async fn resources_and_deployments_of_another_tenant_are_404() {
    let app = TestApp::spawn().await;
    let (alice, _) = app.user("alice@example.com").await;
    let (bob, _) = app.user("bob@example.com").await;
    let provider = app.sandbox(&alice).await;
    let accepted = create(&app, &alice, &provider, "vm", "mine", json!({})).await;
    let (id, deployment) = (
        accepted["id"].as_str().unwrap(),
        accepted["deployment_id"].as_str().unwrap(),
    );
    for path in [
        format!("/api/v1/resources/{id}"),
        format!("/api/v1/resources/{id}/logs"),
        format!("/api/v1/resources/{id}/deployments"),
        format!("/api/v1/deployments/{deployment}"),
        format!("/api/v1/deployments/{deployment}/logs"),
        format!("/api/v1/inventory/{id}"),
    ] {
        app.get(&path, &bob)
            .await
            .assert_problem(StatusCode::NOT_FOUND, "RESOURCE_NOT_FOUND");
    }
    app.delete(&format!("/api/v1/resources/{id}"), &bob)
        .await
        .assert_problem(StatusCode::NOT_FOUND, "RESOURCE_NOT_FOUND");
    app.post(
        &format!("/api/v1/resources/{id}/action"),
        &bob,
        json!({"action": "stop"}),
    )
    .await
    .assert_problem(StatusCode::NOT_FOUND, "RESOURCE_NOT_FOUND");
    // Nor can bob create on alice's provider.
    app.post(
        "/api/v1/resources",
        &bob,
        json!({"provider_id": provider, "kind": "vm", "name": "x"}),
    )
    .await
    .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_REQUEST");
    let address = app.serve().await;
    let refused = connect_async(format!(
        "ws://{address}/ws/deployments/{deployment}/logs?token={}",
        token(&bob)
    ))
    .await;
    assert!(refused.is_err(), "the WebSocket upgrade is refused");
}

#[tokio::test]
async fn credentials_are_redacted_from_every_stored_log_line() {
    let app = TestApp::spawn().await;
    let (admin, _) = app.user("admin@example.com").await;
    let provider = app.sandbox(&admin).await;
    let accepted = create(&app, &admin, &provider, "storage", "logs", json!({})).await;
    let deployment: uuid::Uuid = accepted["deployment_id"].as_str().unwrap().parse().unwrap();
    let secrets = vec![
        "AKIA-secret-key-id".to_string(),
        "wJalrXUtnFEMI/K7MDENG".to_string(),
    ];
    let log = strata::deployments::logs::LogWriter::start(app.db.pool.clone(), deployment, secrets)
        .await
        .unwrap();
    log.line(
        "error",
        "stderr",
        "auth failed for AKIA-secret-key-id with wJalrXUtnFEMI/K7MDENG",
    );
    log.line("info", "stdout", "nothing secret here");
    log.finish().await;
    let page = app
        .get(&format!("/api/v1/deployments/{deployment}/logs"), &admin)
        .await
        .body;
    let messages: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        messages,
        ["auth failed for *** with ***", "nothing secret here"]
    );
    let stored: Vec<String> = sqlx::query_scalar("SELECT message FROM deployment_logs")
        .fetch_all(&app.db.pool)
        .await
        .unwrap();
    assert!(
        stored
            .iter()
            .all(|m| !m.contains("AKIA-secret") && !m.contains("wJalrXUtnFEMI"))
    );
}

#[tokio::test]
async fn a_deployment_cancelled_before_it_ran_is_settled() {
    let app = TestApp::spawn().await;
    let (admin, _) = app.user("admin@example.com").await;
    let provider = app.sandbox(&admin).await;
    let accepted = create(&app, &admin, &provider, "vm", "never", json!({})).await;
    let (id, task, deployment) = (
        accepted["id"].as_str().unwrap(),
        accepted["task_id"].as_str().unwrap(),
        accepted["deployment_id"].as_str().unwrap(),
    );
    app.post(&format!("/api/v1/tasks/{task}/cancel"), &admin, json!({}))
        .await
        .assert_status(StatusCode::ACCEPTED);
    let deployment = app
        .get(&format!("/api/v1/deployments/{deployment}"), &admin)
        .await
        .body;
    assert_eq!(deployment["status"], "cancelled");
    let resource = app
        .get(&format!("/api/v1/resources/{id}"), &admin)
        .await
        .body;
    assert_eq!(resource["status"], "failed", "it never came to exist");
    // The WebSocket of a cancelled deployment ends at once.
    let address = app.serve().await;
    let url = format!(
        "ws://{address}/ws/deployments/{}/logs?token={}",
        deployment["id"].as_str().unwrap(),
        token(&admin)
    );
    let (mut socket, _) = connect_async(url).await.unwrap();
    let messages = read_ws(&mut socket, None).await;
    assert_eq!(messages.last().unwrap()["status"], "cancelled");
}

/// The messages of a deployment's stored log.
async fn log_messages(app: &TestApp, who: &As, deployment: &Value) -> Vec<String> {
    let logs = app
        .get(
            &format!(
                "/api/v1/deployments/{}/logs?limit=1000",
                deployment.as_str().unwrap()
            ),
            who,
        )
        .await
        .body;
    logs["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["message"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terraform_init_is_reused_for_an_identical_configuration_and_redone_when_damaged() {
    let mut app = TestApp::spawn().await;
    let cache = std::env::temp_dir().join(format!("strata-init-cache-{}", uuid::Uuid::new_v4()));
    app.state.terraform = app.state.terraform.clone().with_init_cache(cache.clone());
    app.start_workers();
    let (admin, _) = app.user("admin@example.com").await;
    let provider = app.sandbox(&admin).await;
    let mut logs = vec![];
    for name in ["first", "second", "third"] {
        if name == "third" {
            // Damage every kept entry the way a cleaner of temporary files would.
            for entry in std::fs::read_dir(&cache).unwrap().flatten() {
                std::fs::remove_file(entry.path().join(".terraform/terraform.tfstate")).unwrap();
            }
        }
        let accepted = create_quick_vm(&app, &admin, &provider, name).await;
        logs.push(log_messages(&app, &admin, &accepted["deployment_id"]).await);
        let resource = resource_of(&app, &admin, &accepted).await;
        assert_eq!(resource["status"], "active", "{resource}");
        assert_eq!(
            state_resources(&app, accepted["id"].as_str().unwrap())
                .await
                .len(),
            2,
            "the vm and its power state"
        );
    }
    let has = |log: &[String], needle: &str| log.iter().any(|m| m.contains(needle));
    let reused = "reused the initialized directory";
    assert!(has(&logs[0], "Initializing the backend"), "{:?}", logs[0]);
    assert!(!has(&logs[0], reused), "{:?}", logs[0]);
    assert!(has(&logs[1], reused), "{:?}", logs[1]);
    assert!(!has(&logs[1], "Initializing the backend"), "{:?}", logs[1]);
    assert!(has(&logs[2], "running terraform init"), "{:?}", logs[2]);
    assert!(has(&logs[2], "Initializing the backend"), "{:?}", logs[2]);
    // The repaired entry is kept again, whole.
    let entries: Vec<_> = std::fs::read_dir(&cache).unwrap().flatten().collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert!(
        entries[0]
            .path()
            .join(".terraform/terraform.tfstate")
            .is_file()
    );
    let _ = std::fs::remove_dir_all(&cache);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terraform_gets_only_its_own_environment() {
    // A `terraform` that writes down its environment, then runs the real one.
    let dir = std::env::temp_dir().join(format!("strata-env-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let real = std::env::var("STRATA_TERRAFORM").unwrap_or_else(|_| "terraform".into());
    let wrapper = dir.join("terraform");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\n[ \"$1\" = version ] || env > \"{}/env-$1-$$\"\nexec {real} \"$@\"\n",
            dir.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let mut settings = crate::helpers::test_settings();
    settings.terraform = wrapper.display().to_string();
    settings.terraform_gogc = 250;
    settings.terraform_memory_limit = "768MiB".into();
    let mut app = TestApp::spawn_with(settings).await;
    app.start_workers();
    let (admin, _) = app.user("admin@example.com").await;
    let provider = app.sandbox(&admin).await;
    let accepted = create_quick_vm(&app, &admin, &provider, "env").await;

    let mut commands = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let Some(command) = name.strip_prefix("env-") else {
            continue;
        };
        commands.insert(command.split('-').next().unwrap().to_string());
        let env: std::collections::BTreeMap<String, String> = std::fs::read_to_string(entry.path())
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let names: BTreeSet<&str> = env.keys().map(String::as_str).collect();
        // `sh` adds PWD (and may add SHLVL and _); everything else is Strata's choice.
        let expected = BTreeSet::from([
            "PATH",
            "HOME",
            "TF_IN_AUTOMATION",
            "CHECKPOINT_DISABLE",
            "TF_CLI_CONFIG_FILE",
            "PG_CONN_STR",
            "PG_SCHEMA_NAME",
            "PG_SKIP_SCHEMA_CREATION",
            "PG_SKIP_TABLE_CREATION",
            "PG_SKIP_INDEX_CREATION",
            "TF_WORKSPACE",
            "GOGC",
            "GOMEMLIMIT",
        ]);
        let extra: Vec<_> = names
            .difference(&expected)
            .filter(|n| !["PWD", "SHLVL", "_"].contains(n))
            .collect();
        assert!(extra.is_empty(), "{name}: unexpected variables {extra:?}");
        assert!(names.is_superset(&expected), "{name}: {names:?}");
        assert_eq!(env["GOGC"], "250");
        assert_eq!(env["GOMEMLIMIT"], "768MiB");
        assert_eq!(env["CHECKPOINT_DISABLE"], "1");
        assert_eq!(env["PG_SCHEMA_NAME"], "terraform_state");
        assert_eq!(
            env["TF_WORKSPACE"],
            format!("res-{}", accepted["id"].as_str().unwrap())
        );
        assert!(
            env["TF_CLI_CONFIG_FILE"].starts_with(&env["HOME"]),
            "the CLI configuration is the run's own"
        );
    }
    // This test's cache directory is the shared one, so init may have been reused.
    assert!(
        commands.is_superset(&BTreeSet::from(["plan".to_string(), "apply".to_string()])),
        "{commands:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_cloud_run_installs_its_provider_from_the_mirror_and_hands_it_the_credentials() {
    let root = std::env::temp_dir().join(format!("strata-mirror-{}", uuid::Uuid::new_v4()));
    let (mirror, seen) = (root.join("mirror"), root.join("seen"));
    std::fs::create_dir_all(&seen).unwrap();
    // A stand-in for the AWS provider: it writes down the environment it was started with and
    // fails, as a provider that cannot start would.
    crate::templates::mirror_provider(
        &mirror,
        "hashicorp/aws",
        "5.0.0",
        &format!(
            "#!/bin/sh\nenv > \"{}/env-$$\"\necho 'stand-in provider' >&2\nexit 1\n",
            seen.display()
        ),
    );
    let mut settings = crate::helpers::test_settings();
    settings.terraform_plugin_dir = Some(mirror.clone());
    let mut app = TestApp::spawn_with(settings).await;
    app.state.terraform = app
        .state
        .terraform
        .clone()
        .with_init_cache(root.join("init-cache"));
    app.start_workers();
    let (admin, _) = app.user("admin@example.com").await;
    let (access_key, secret_key) = ("AKIAMIRRORTEST0001", "mirror-secret-value-0123456789");
    let credential = app
        .post(
            "/api/v1/credentials",
            &admin,
            json!({"provider": "aws", "name": "aws", "access_key": access_key, "secret_key": secret_key}),
        )
        .await;
    credential.assert_status(StatusCode::CREATED);
    let provider = app
        .post(
            "/api/v1/providers",
            &admin,
            json!({"provider_type": "aws", "display_name": "aws", "region": "us-east-1",
                   "credential_id": credential.body["id"]}),
        )
        .await;
    provider.assert_status(StatusCode::CREATED);

    let mut logs = vec![];
    for name in ["web-1", "web-2"] {
        let accepted = app
            .post(
                "/api/v1/resources",
                &admin,
                json!({"provider_id": provider.body["id"], "kind": "vm", "name": name,
                       "region": "us-east-1", "spec": {"ami": "ami-0123456789abcdef0"}}),
            )
            .await;
        accepted.assert_status(StatusCode::ACCEPTED);
        let task = app
            .wait_for_task(&admin, accepted.body["task_id"].as_str().unwrap())
            .await;
        assert_eq!(task["status"], "failed", "{task}");
        let error = task["error"].as_str().unwrap();
        assert!(error.starts_with("terraform plan failed"), "{error}");
        assert!(
            error.contains("registry.terraform.io/hashicorp/aws"),
            "{error}"
        );
        logs.push(log_messages(&app, &admin, &accepted.body["deployment_id"]).await);
    }
    let joined = |log: &[String]| log.join("\n");
    assert!(
        joined(&logs[0]).contains("Installed hashicorp/aws v5.0.0"),
        "{}",
        joined(&logs[0])
    );
    // The second run reuses the first one's init, the provider's link to the mirror included.
    assert!(
        joined(&logs[1]).contains("reused the initialized directory"),
        "{}",
        joined(&logs[1])
    );

    let started: Vec<String> = std::fs::read_dir(&seen)
        .unwrap()
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    assert!(started.len() >= 2, "the provider ran in both runs");
    for env in &started {
        assert!(
            env.lines()
                .any(|l| l == format!("AWS_ACCESS_KEY_ID={access_key}")),
            "{env}"
        );
        assert!(
            env.lines()
                .any(|l| l == format!("AWS_SECRET_ACCESS_KEY={secret_key}")),
            "{env}"
        );
        assert!(env.lines().any(|l| l == "AWS_REGION=us-east-1"), "{env}");
    }
    for log in &logs {
        assert!(!joined(log).contains(secret_key) && !joined(log).contains(access_key));
    }
    let _ = std::fs::remove_dir_all(&root);
}
