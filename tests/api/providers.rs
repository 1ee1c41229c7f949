use axum::http::StatusCode;
use serde_json::json;

use crate::helpers::TestApp;

#[tokio::test]
async fn provider_crud_with_a_matching_credential() {
    let app = TestApp::spawn().await;
    let (admin, _) = app.user("admin@example.com").await;
    let credential = app
        .post(
            "/api/v1/credentials",
            &admin,
            json!({"provider": "aws", "name": "aws", "access_key": "a", "secret_key": "b"}),
        )
        .await;
    let credential_id = credential.body["id"].as_str().unwrap();
    let created = app
        .post(
            "/api/v1/providers",
            &admin,
            json!({"provider_type": "aws", "display_name": "Production", "region": "eu-west-1",
                   "credential_id": credential_id, "account_number": "123456789012",
                   "owner_email": "finops@example.com", "settings": {"tags": {"env": "prod"}}}),
        )
        .await;
    created.assert_status(StatusCode::CREATED);
    let id = created.body["id"].as_str().unwrap().to_string();
    assert_eq!(created.body["account_number"], "123456789012");
    assert_eq!(created.body["settings"]["tags"]["env"], "prod");
    assert!(created.body["health"].is_null());

    let updated = app
        .put(
            &format!("/api/v1/providers/{id}"),
            &admin,
            json!({"provider_type": "aws", "display_name": "Prod", "region": "eu-west-3"}),
        )
        .await;
    updated.assert_status(StatusCode::OK);
    assert_eq!(updated.body["region"], "eu-west-3");
    assert!(updated.body["credential_id"].is_null());

    let list = app.get("/api/v1/providers?limit=1", &admin).await;
    assert_eq!(list.body["total"], 1);
    assert_eq!(list.body["limit"], 1);

    // A credential in use cannot be deleted.
    app.put(
        &format!("/api/v1/providers/{id}"),
        &admin,
        json!({"provider_type": "aws", "display_name": "Prod", "credential_id": credential_id}),
    )
    .await
    .assert_status(StatusCode::OK);
    app.delete(&format!("/api/v1/credentials/{credential_id}"), &admin)
        .await
        .assert_problem(StatusCode::CONFLICT, "DUPLICATE_RESOURCE");

    app.delete(&format!("/api/v1/providers/{id}"), &admin)
        .await
        .assert_status(StatusCode::NO_CONTENT);
    app.get(&format!("/api/v1/providers/{id}"), &admin)
        .await
        .assert_problem(StatusCode::NOT_FOUND, "RESOURCE_NOT_FOUND");
}

#[tokio::test]
async fn provider_input_is_validated() {
    let app = TestApp::spawn().await;
    let (admin, _) = app.user("admin@example.com").await;
    let gcp = app
        .post(
            "/api/v1/credentials",
            &admin,
            json!({"provider": "gcp", "name": "g", "project_id": "p", "service_account_json": "{}"}),
        )
        .await;
    for body in [
        json!({"provider_type": "digitalocean", "display_name": "x"}),
        json!({"provider_type": "aws"}),
        json!({"provider_type": "aws", "display_name": "x", "owner_email": "nope"}),
        json!({"provider_type": "aws", "display_name": "x", "settings": [1, 2]}),
        json!({"provider_type": "aws", "display_name": "x", "credential_id": gcp.body["id"]}),
        json!({"provider_type": "aws", "display_name": "x", "credential_id": uuid::Uuid::new_v4()}),
        json!({"provider_type": "aws", "display_name": "x", "surprise": true}),
    ] {
        app.post("/api/v1/providers", &admin, body)
            .await
            .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_REQUEST");
    }
    let body = json!({"provider_type": "sandbox", "display_name": "Sandbox"});
    app.post("/api/v1/providers", &admin, body.clone())
        .await
        .assert_status(StatusCode::CREATED);
    app.post("/api/v1/providers", &admin, body)
        .await
        .assert_problem(StatusCode::CONFLICT, "DUPLICATE_RESOURCE");
}

#[tokio::test]
async fn health_checks_the_sandbox_for_real_and_clouds_by_their_endpoint() {
    let app = TestApp::spawn().await;
    let (admin, _) = app.user("admin@example.com").await;
    let sandbox = app
        .post(
            "/api/v1/providers",
            &admin,
            json!({"provider_type": "sandbox", "display_name": "Sandbox"}),
        )
        .await;
    let sandbox_id = sandbox.body["id"].as_str().unwrap().to_string();

    // A local stand-in for a cloud API endpoint.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("https://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let _ = listener.accept().await;
        }
    });
    let reachable = app
        .post(
            "/api/v1/providers",
            &admin,
            json!({"provider_type": "cloudflare", "display_name": "CF", "settings": {"endpoint": endpoint}}),
        )
        .await;
    let reachable_id = reachable.body["id"].as_str().unwrap().to_string();
    // No network here: the public endpoint cannot be reached.
    let offline = app
        .post(
            "/api/v1/providers",
            &admin,
            json!({"provider_type": "aws", "display_name": "AWS", "region": "us-east-1"}),
        )
        .await;
    let offline_id = offline.body["id"].as_str().unwrap().to_string();
    // Nothing listens on this port.
    let closed_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let refused = app
        .post(
            "/api/v1/providers",
            &admin,
            json!({"provider_type": "proxmox", "display_name": "PVE", "settings": {"endpoint": format!("127.0.0.1:{closed_port}")}}),
        )
        .await;
    let refused_id = refused.body["id"].as_str().unwrap().to_string();

    let health = app
        .get(&format!("/api/v1/providers/{sandbox_id}/health"), &admin)
        .await;
    health.assert_status(StatusCode::OK);
    assert_eq!(health.body["status"], "healthy", "{}", health.text);
    assert!(health.body["response_time_ms"].as_i64().is_some());
    assert!(health.body["last_check"].is_string());
    assert!(health.body["error_message"].is_null());

    let health = app
        .get(&format!("/api/v1/providers/{reachable_id}/health"), &admin)
        .await;
    assert_eq!(health.body["status"], "healthy", "{}", health.text);

    let health = app
        .get(&format!("/api/v1/providers/{refused_id}/health"), &admin)
        .await;
    assert_eq!(health.body["status"], "unreachable");
    assert!(
        health.body["error_message"]
            .as_str()
            .unwrap()
            .contains("cannot connect"),
        "{}",
        health.text
    );

    let health = app
        .get(&format!("/api/v1/providers/{offline_id}/health"), &admin)
        .await;
    assert_eq!(health.body["status"], "unreachable", "{}", health.text);
    assert!(
        health.body["error_message"]
            .as_str()
            .unwrap()
            .contains("ec2.us-east-1.amazonaws.com")
    );

    let all = app.get("/api/v1/providers/health", &admin).await;
    all.assert_status(StatusCode::OK);
    let statuses: Vec<&str> = all
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["healthy", "healthy", "unreachable", "unreachable"]
    );

    // The last check is kept on the provider.
    let provider = app
        .get(&format!("/api/v1/providers/{sandbox_id}"), &admin)
        .await;
    assert_eq!(provider.body["health"]["status"], "healthy");
}

#[tokio::test]
async fn a_sandbox_without_terraform_is_unreachable_with_the_reason() {
    let mut settings = crate::helpers::test_settings();
    settings.terraform = "/nonexistent/terraform".into();
    let app = TestApp::spawn_with(settings).await;
    let (admin, _) = app.user("admin@example.com").await;
    let sandbox = app
        .post(
            "/api/v1/providers",
            &admin,
            json!({"provider_type": "sandbox", "display_name": "Sandbox"}),
        )
        .await;
    let id = sandbox.body["id"].as_str().unwrap();
    let health = app
        .get(&format!("/api/v1/providers/{id}/health"), &admin)
        .await;
    assert_eq!(health.body["status"], "unreachable");
    assert!(
        health.body["error_message"]
            .as_str()
            .unwrap()
            .contains("cannot run"),
        "{}",
        health.text
    );
}

#[tokio::test]
async fn providers_of_another_tenant_are_404() {
    let app = TestApp::spawn().await;
    let (alice, _) = app.user("alice@example.com").await;
    let (bob, _) = app.user("bob@example.com").await;
    let created = app
        .post(
            "/api/v1/providers",
            &alice,
            json!({"provider_type": "sandbox", "display_name": "S"}),
        )
        .await;
    let id = created.body["id"].as_str().unwrap();
    for path in [
        format!("/api/v1/providers/{id}"),
        format!("/api/v1/providers/{id}/health"),
    ] {
        app.get(&path, &bob)
            .await
            .assert_problem(StatusCode::NOT_FOUND, "RESOURCE_NOT_FOUND");
    }
    app.put(
        &format!("/api/v1/providers/{id}"),
        &bob,
        json!({"provider_type": "sandbox", "display_name": "mine"}),
    )
    .await
    .assert_problem(StatusCode::NOT_FOUND, "RESOURCE_NOT_FOUND");
    app.delete(&format!("/api/v1/providers/{id}"), &bob)
        .await
        .assert_problem(StatusCode::NOT_FOUND, "RESOURCE_NOT_FOUND");
}
