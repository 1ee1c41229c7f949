use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::helpers::TestApp;

fn bodies() -> Vec<(Value, Vec<&'static str>)> {
    vec![
        (
            json!({"provider": "aws", "name": "aws-prod", "region": "us-east-1",
                   "access_key": "AKIAEXAMPLEACCESS", "secret_key": "aws-secret-value-123"}),
            vec!["AKIAEXAMPLEACCESS", "aws-secret-value-123"],
        ),
        (
            json!({"provider": "azure", "name": "azure-prod", "tenant_id": "tid-1", "client_id": "cid-1",
                   "client_secret": "azure-secret-value-123", "subscription_id": "sub-1"}),
            vec!["azure-secret-value-123"],
        ),
        (
            json!({"provider": "gcp", "name": "gcp-prod", "project_id": "proj-1",
                   "service_account_json": "{\"type\":\"service_account\",\"private_key\":\"gcp-secret-value-123\"}"}),
            vec!["gcp-secret-value-123"],
        ),
        (
            json!({"provider": "cloudflare", "name": "cf", "api_token": "cf-secret-value-123", "account_id": "acc-1"}),
            vec!["cf-secret-value-123"],
        ),
        (
            json!({"provider": "oci", "name": "oci", "region": "us-ashburn-1", "tenancy_ocid": "ocid1.tenancy",
                   "user_ocid": "ocid1.user", "fingerprint": "aa:bb", "private_key": "oci-secret-value-123"}),
            vec!["oci-secret-value-123"],
        ),
        (
            json!({"provider": "proxmox", "name": "pve", "endpoint": "https://pve.local:8006",
                   "token_id": "root@pam!strata", "token_secret": "pve-secret-value-123"}),
            vec!["pve-secret-value-123"],
        ),
    ]
}

#[tokio::test]
async fn credentials_of_every_provider_are_stored_encrypted_and_never_returned() {
    let app = TestApp::spawn().await;
    let (admin, tenant) = app.user("admin@example.com").await;
    let mut ids = vec![];
    for (body, secrets) in bodies() {
        let created = app.post("/api/v1/credentials", &admin, body.clone()).await;
        created.assert_status(StatusCode::CREATED);
        assert_eq!(created.body["provider"], body["provider"]);
        assert_eq!(created.body["is_active"], true);
        for secret in &secrets {
            assert!(
                !created.text.contains(secret),
                "{} leaked in {}",
                secret,
                created.text
            );
        }
        ids.push((
            created.body["id"]
                .as_str()
                .unwrap()
                .parse::<uuid::Uuid>()
                .unwrap(),
            body,
            secrets,
        ));
    }
    let list = app.get("/api/v1/credentials", &admin).await;
    list.assert_status(StatusCode::OK);
    assert_eq!(list.body["total"], 6);
    assert_eq!(
        list.body["data"][2]["metadata"],
        json!({"project_id": "proj-1"})
    );

    // The raw table holds no plaintext secret, in any column.
    let dump: Vec<String> = sqlx::query_scalar("SELECT row_to_json(c)::text FROM credentials c")
        .fetch_all(&app.db.pool)
        .await
        .unwrap();
    let dump = dump.join("\n");
    let raw: Vec<Vec<u8>> = sqlx::query_scalar("SELECT secret FROM credentials")
        .fetch_all(&app.db.pool)
        .await
        .unwrap();
    for (id, _, secrets) in &ids {
        for secret in secrets {
            assert!(!dump.contains(secret), "plaintext {secret} in the table");
            assert!(
                !raw.iter()
                    .any(|r| r.windows(secret.len()).any(|w| w == secret.as_bytes()))
            );
        }
        let opened = strata::credentials::open_secrets(&app.state, tenant, *id)
            .await
            .unwrap();
        let sealed_text = serde_json::to_string(&opened).unwrap();
        for secret in secrets {
            assert!(sealed_text.contains(secret), "the worker can open {secret}");
        }
    }
    let get = app
        .get(&format!("/api/v1/credentials/{}", ids[0].0), &admin)
        .await;
    get.assert_status(StatusCode::OK);
    assert!(!get.text.contains("aws-secret-value-123"));

    app.delete(&format!("/api/v1/credentials/{}", ids[0].0), &admin)
        .await
        .assert_status(StatusCode::NO_CONTENT);
    app.delete(&format!("/api/v1/credentials/{}", ids[0].0), &admin)
        .await
        .assert_problem(StatusCode::NOT_FOUND, "RESOURCE_NOT_FOUND");
}

#[tokio::test]
async fn credential_bodies_are_validated_per_provider() {
    let app = TestApp::spawn().await;
    let (admin, _) = app.user("admin@example.com").await;
    for body in [
        json!({"provider": "aws", "name": "x", "access_key": "a"}),
        json!({"provider": "martian", "name": "x"}),
        json!({"provider": "gcp", "name": "x", "project_id": "p", "service_account_json": "not json"}),
        json!({"provider": "aws", "name": "", "access_key": "a", "secret_key": "b"}),
        json!({"provider": "aws", "name": "x".repeat(500), "access_key": "a", "secret_key": "b"}),
        json!({"provider": "proxmox", "name": "x", "endpoint": "pve.local", "token_id": "t", "token_secret": "s"}),
    ] {
        app.post("/api/v1/credentials", &admin, body)
            .await
            .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_REQUEST");
    }
    let body = json!({"provider": "aws", "name": "dup", "access_key": "a", "secret_key": "b"});
    app.post("/api/v1/credentials", &admin, body.clone())
        .await
        .assert_status(StatusCode::CREATED);
    app.post("/api/v1/credentials", &admin, body)
        .await
        .assert_problem(StatusCode::CONFLICT, "DUPLICATE_RESOURCE");
}

#[tokio::test]
async fn credentials_are_invisible_to_other_tenants() {
    let app = TestApp::spawn().await;
    let (alice, _) = app.user("alice@example.com").await;
    let (bob, _) = app.user("bob@example.com").await;
    let created = app
        .post(
            "/api/v1/credentials",
            &alice,
            json!({"provider": "cloudflare", "name": "cf", "api_token": "t", "account_id": "a"}),
        )
        .await;
    let id = created.body["id"].as_str().unwrap();
    app.get(&format!("/api/v1/credentials/{id}"), &bob)
        .await
        .assert_problem(StatusCode::NOT_FOUND, "RESOURCE_NOT_FOUND");
    app.delete(&format!("/api/v1/credentials/{id}"), &bob)
        .await
        .assert_problem(StatusCode::NOT_FOUND, "RESOURCE_NOT_FOUND");
    assert_eq!(app.get("/api/v1/credentials", &bob).await.body["total"], 0);
    // Nor can bob point his provider at alice's credential.
    app.post(
        "/api/v1/providers",
        &bob,
        json!({"provider_type": "cloudflare", "display_name": "cf", "credential_id": id}),
    )
    .await
    .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_REQUEST");
}

#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn captured_logs() -> Captured {
    static CAPTURED: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();
    CAPTURED
        .get_or_init(|| {
            let captured = Captured::default();
            let writer = captured.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::TRACE)
                .with_writer(move || writer.clone())
                .finish();
            tracing::subscriber::set_global_default(subscriber)
                .expect("no other global subscriber");
            captured
        })
        .clone()
}

#[tokio::test]
async fn no_log_line_carries_a_secret() {
    let app = TestApp::spawn().await;
    let (admin, _) = app.user("admin@example.com").await;
    // One global subscriber for the whole test binary (a thread-local one misses events
    // whose callsites other tests' threads have already cached as uninteresting).
    let captured = captured_logs();
    for (body, _) in bodies() {
        app.post("/api/v1/credentials", &admin, body)
            .await
            .assert_status(StatusCode::CREATED);
    }
    app.post(
        "/api/v1/credentials",
        &admin,
        json!({"provider": "aws", "name": 5, "secret_key": "bad-body-secret-123"}),
    )
    .await
    .assert_status(StatusCode::UNPROCESSABLE_ENTITY);
    app.get("/api/v1/credentials", &admin)
        .await
        .assert_status(StatusCode::OK);
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("/api/v1/credentials"),
        "requests are logged: {logs}"
    );
    for (_, secrets) in bodies() {
        for secret in secrets {
            assert!(!logs.contains(secret), "{secret} is in the log");
        }
    }
    assert!(!logs.contains("bad-body-secret-123"));
}
