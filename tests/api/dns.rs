//! DNS records: on the sandbox's DNS host (Postgres) and on Cloudflare (the `cloudflare` crate
//! against the local stand-in), with conflicts, missing zones and records changed behind
//! Strata's back.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::cloudflare::Cloudflare;
use crate::helpers::{As, TestApp, process_env, test_settings};

pub const CF_TOKEN: &str = "cf-test-token-0123456789";

/// An app with in-process workers whose Cloudflare is the stand-in.
pub async fn app_with_cloudflare() -> (TestApp, Cloudflare) {
    let cloudflare = Cloudflare::start(CF_TOKEN).await;
    let mut settings = test_settings();
    settings.cloudflare_api_url = cloudflare.url.clone();
    // The key `strata worker` processes of the tests use, so they can open credentials too.
    let key = process_env("")
        .into_iter()
        .find(|(k, _)| *k == "STRATA_MASTER_KEY")
        .unwrap()
        .1;
    settings.master_key = strata::config::parse_master_key(&key).unwrap();
    let mut app = TestApp::spawn_with(settings).await;
    app.start_workers();
    (app, cloudflare)
}

/// A cloudflare provider with a credential holding `token`; returns its id.
pub async fn cloudflare_provider(app: &TestApp, who: &As, token: &str) -> String {
    let credential = app
        .post(
            "/api/v1/credentials",
            who,
            json!({"provider": "cloudflare", "name": format!("cf-{}", uuid::Uuid::new_v4()),
                   "api_token": token, "account_id": "0123456789abcdef0123456789abcdef"}),
        )
        .await;
    credential.assert_status(StatusCode::CREATED);
    let provider = app
        .post(
            "/api/v1/providers",
            who,
            json!({"provider_type": "cloudflare", "display_name": format!("cf-{}", uuid::Uuid::new_v4()),
                   "credential_id": credential.body["id"]}),
        )
        .await;
    provider.assert_status(StatusCode::CREATED);
    provider.body["id"].as_str().unwrap().to_string()
}

/// Creates a dns_record and waits for its task; returns (task, resource id).
pub async fn record(
    app: &TestApp,
    who: &As,
    provider: &str,
    name: &str,
    spec: Value,
) -> (Value, String) {
    let accepted = app
        .post(
            "/api/v1/resources",
            who,
            json!({"provider_id": provider, "kind": "dns_record", "name": name, "spec": spec}),
        )
        .await;
    accepted.assert_status(StatusCode::ACCEPTED);
    let task = app
        .wait_for_task(who, accepted.body["task_id"].as_str().unwrap())
        .await;
    (task, accepted.body["id"].as_str().unwrap().to_string())
}

/// The task failed, and its error says `needle`.
pub fn assert_failed_with(task: &Value, needle: &str) {
    assert_eq!(task["status"], "failed", "{task}");
    assert!(
        task["error"].as_str().unwrap_or_default().contains(needle),
        "{task}"
    );
}

async fn sandbox_records(app: &TestApp, name: &str) -> Vec<(String, String)> {
    sqlx::query_as("SELECT id, content FROM sandbox_dns_records WHERE name = $1 ORDER BY content")
        .bind(name)
        .fetch_all(&app.db.pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_records_are_kept_like_a_dns_host_keeps_them() {
    let app = TestApp::spawn_with_workers().await;
    let (admin, _) = app.user("admin@example.com").await;
    let provider = app.sandbox(&admin).await;

    let (task, www) = record(
        &app,
        &admin,
        &provider,
        "www",
        json!({"zone": "example.com", "value": "192.0.2.10"}),
    )
    .await;
    assert_eq!(task["status"], "succeeded", "{task}");
    let resource = app
        .get(&format!("/api/v1/resources/{www}"), &admin)
        .await
        .body;
    assert_eq!(resource["attributes"]["fqdn"], "www.example.com");
    assert_eq!(resource["attributes"]["value"], "192.0.2.10");
    let rows = sandbox_records(&app, "www.example.com").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(resource["cloud_id"], rows[0].0.as_str());

    // A record of the same name made outside Strata is a conflict, not overwritten.
    let zone_id = resource["attributes"]["zone_id"].as_str().unwrap();
    sqlx::query(
        "INSERT INTO sandbox_dns_records (id, zone_id, name, record_type, content, ttl)
         VALUES ('foreign0000000000000000000000001', $1, 'api.example.com', 'A', '192.0.2.20', 300)",
    )
    .bind(zone_id)
    .execute(&app.db.pool)
    .await
    .unwrap();
    let (task, _) = record(
        &app,
        &admin,
        &provider,
        "api",
        json!({"zone": "example.com", "value": "192.0.2.21"}),
    )
    .await;
    assert_failed_with(&task, "conflict");
    assert_eq!(
        sandbox_records(&app, "api.example.com").await,
        [(
            "foreign0000000000000000000000001".to_string(),
            "192.0.2.20".to_string()
        )]
    );

    // A zone the provider does not host.
    let (task, _) = record(
        &app,
        &admin,
        &provider,
        "ghost",
        json!({"zone": "nope.org", "value": "192.0.2.30"}),
    )
    .await;
    assert_failed_with(&task, "zone nope.org not found");

    // An update changes the record in place.
    let updated = app
        .call(
            axum::http::Method::PATCH,
            &format!("/api/v1/resources/{www}"),
            &admin,
            Some(json!({"spec": {"value": "192.0.2.11"}})),
        )
        .await;
    updated.assert_status(StatusCode::ACCEPTED);
    let task = app
        .wait_for_task(&admin, updated.body["task_id"].as_str().unwrap())
        .await;
    assert_eq!(task["status"], "succeeded", "{task}");
    let after = sandbox_records(&app, "www.example.com").await;
    assert_eq!(after, [(rows[0].0.clone(), "192.0.2.11".to_string())]);

    // A record deleted behind Strata's back is simply gone when its resource is destroyed.
    sqlx::query("DELETE FROM sandbox_dns_records WHERE name = 'www.example.com'")
        .execute(&app.db.pool)
        .await
        .unwrap();
    let deleted = app
        .delete(&format!("/api/v1/resources/{www}"), &admin)
        .await;
    let task = app
        .wait_for_task(&admin, deleted.body["task_id"].as_str().unwrap())
        .await;
    assert_eq!(task["status"], "succeeded", "{task}");
    let resource = app
        .get(&format!("/api/v1/resources/{www}"), &admin)
        .await
        .body;
    assert_eq!(resource["status"], "destroyed");
}

#[tokio::test]
async fn record_names_and_values_are_checked_before_anything_runs() {
    let app = TestApp::spawn().await;
    let (admin, _) = app.user("admin@example.com").await;
    let provider = app.sandbox(&admin).await;
    for (name, spec, field) in [
        (
            "bad name!",
            json!({"zone": "example.com", "value": "192.0.2.1"}),
            "name",
        ),
        (
            "www",
            json!({"zone": "example.com", "value": "not-an-ip"}),
            "spec.value",
        ),
        (
            "www",
            json!({"zone": "example.com", "record_type": "CNAME", "value": "bad host!"}),
            "spec.value",
        ),
    ] {
        let response = app
            .post(
                "/api/v1/resources",
                &admin,
                json!({"provider_id": provider, "kind": "dns_record", "name": name, "spec": spec}),
            )
            .await;
        response.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_REQUEST");
        assert_eq!(
            response.body["errors"][0]["field"], field,
            "{}",
            response.text
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudflare_records_are_written_through_its_api() {
    let (app, cloudflare) = app_with_cloudflare().await;
    let (admin, _) = app.user("admin@example.com").await;
    let provider = cloudflare_provider(&app, &admin, CF_TOKEN).await;
    let zone = cloudflare.add_zone("example.org");
    // The health check reaches the configured API address.
    let health = app
        .get(&format!("/api/v1/providers/{provider}/health"), &admin)
        .await;
    assert_eq!(health.body["status"], "healthy", "{}", health.text);

    let (task, id) = record(
        &app,
        &admin,
        &provider,
        "app",
        json!({"zone": "example.org", "value": "192.0.2.5", "proxied": true}),
    )
    .await;
    assert_eq!(task["status"], "succeeded", "{task}");
    let records = cloudflare.records(&zone);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["name"], "app.example.org");
    assert_eq!(records[0]["content"], "192.0.2.5");
    assert_eq!(records[0]["proxied"], true);
    let resource = app
        .get(&format!("/api/v1/resources/{id}"), &admin)
        .await
        .body;
    assert_eq!(resource["cloud_id"], records[0]["id"]);
    assert_eq!(resource["attributes"]["zone_id"], zone.as_str());

    // Update in place, by the record's id.
    let updated = app
        .call(
            axum::http::Method::PATCH,
            &format!("/api/v1/resources/{id}"),
            &admin,
            Some(json!({"spec": {"value": "192.0.2.6"}})),
        )
        .await;
    let task = app
        .wait_for_task(&admin, updated.body["task_id"].as_str().unwrap())
        .await;
    assert_eq!(task["status"], "succeeded", "{task}");
    let records = cloudflare.records(&zone);
    assert_eq!(
        (records.len(), records[0]["content"].as_str()),
        (1, Some("192.0.2.6"))
    );

    // A record that is not ours, of the same name and type, is a conflict.
    cloudflare.add_record(&zone, "taken", "A", "192.0.2.9");
    let (task, _) = record(
        &app,
        &admin,
        &provider,
        "taken",
        json!({"zone": "example.org", "value": "192.0.2.10"}),
    )
    .await;
    assert_failed_with(&task, "conflict");

    // A zone Cloudflare does not have.
    let (task, _) = record(
        &app,
        &admin,
        &provider,
        "www",
        json!({"zone": "missing.org", "value": "192.0.2.10"}),
    )
    .await;
    assert_failed_with(&task, "not found");

    // Cloudflare failing for a moment is retried; the record is then deleted.
    cloudflare.fail_writes(1);
    let deleted = app.delete(&format!("/api/v1/resources/{id}"), &admin).await;
    let task = app
        .wait_for_task(&admin, deleted.body["task_id"].as_str().unwrap())
        .await;
    assert_eq!(task["status"], "succeeded", "{task}");
    assert!(
        cloudflare
            .records(&zone)
            .iter()
            .all(|r| r["name"] != "app.example.org")
    );

    // A wrong token is refused by Cloudflare and reported.
    let wrong = cloudflare_provider(&app, &admin, "wrong-token").await;
    let (task, _) = record(
        &app,
        &admin,
        &wrong,
        "www",
        json!({"zone": "example.org", "value": "192.0.2.10"}),
    )
    .await;
    assert_eq!(task["status"], "failed");
    assert!(
        cloudflare.requests().iter().any(|r| r.starts_with("POST ")),
        "the crate talked to the stand-in"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_queued_behind_the_create_sees_the_record_the_create_made() {
    let app = TestApp::spawn_with_workers().await;
    let (admin, _) = app.user("admin@example.com").await;
    let provider = app.sandbox(&admin).await;
    // Update and delete are asked for at once, before the create has run.
    let created = app
        .post(
            "/api/v1/resources",
            &admin,
            json!({"provider_id": provider, "kind": "dns_record", "name": "soon",
                   "spec": {"zone": "example.com", "value": "192.0.2.1"}}),
        )
        .await;
    let id = created.body["id"].as_str().unwrap();
    let updated = app
        .call(
            axum::http::Method::PATCH,
            &format!("/api/v1/resources/{id}"),
            &admin,
            Some(json!({"spec": {"value": "192.0.2.2"}})),
        )
        .await;
    let task = app
        .wait_for_task(&admin, updated.body["task_id"].as_str().unwrap())
        .await;
    assert_eq!(task["status"], "succeeded", "{task}");
    assert_eq!(
        sandbox_records(&app, "soon.example.com").await.len(),
        1,
        "updated in place, not created twice"
    );
    let deleted = app.delete(&format!("/api/v1/resources/{id}"), &admin).await;
    let task = app
        .wait_for_task(&admin, deleted.body["task_id"].as_str().unwrap())
        .await;
    assert_eq!(task["status"], "succeeded", "{task}");
    assert!(
        sandbox_records(&app, "soon.example.com").await.is_empty(),
        "no record left behind"
    );
}
