use axum::http::StatusCode;
use serde_json::json;

use crate::helpers::{As, OPERATOR_KEY, TestApp};

#[tokio::test]
async fn tenant_crud_with_settings_merge() {
    let app = TestApp::spawn().await;
    let (admin, _) = app.user("admin@example.com").await;
    let created = app
        .post(
            "/api/v1/tenants",
            &admin,
            json!({"name": "Acme", "subscription_tier": "premium", "settings": {"currency": "EUR"}}),
        )
        .await;
    created.assert_status(StatusCode::CREATED);
    let id = created.body["id"].as_str().unwrap().to_string();
    assert_eq!(created.body["subscription_tier"], "premium");
    assert_eq!(
        created.body["settings"],
        json!({"currency": "EUR", "timezone": "UTC", "alerts_enabled": true})
    );
    assert_eq!(created.body["role"], "admin");

    let list = app.get("/api/v1/tenants", &admin).await;
    list.assert_status(StatusCode::OK);
    assert_eq!(list.body["total"], 2, "own workspace plus Acme");
    assert_eq!(list.headers["x-total-count"], "2");

    let updated = app
        .put(
            &format!("/api/v1/tenants/{id}"),
            &admin,
            json!({"name": "Acme Corp", "settings": {"alerts_enabled": false, "timezone": "Europe/Paris"}}),
        )
        .await;
    updated.assert_status(StatusCode::OK);
    assert_eq!(updated.body["name"], "Acme Corp");
    assert_eq!(
        updated.body["settings"],
        json!({"currency": "EUR", "timezone": "Europe/Paris", "alerts_enabled": false})
    );
    assert_eq!(updated.body["subscription_tier"], "premium");

    let detail = app.get(&format!("/api/v1/tenants/{id}"), &admin).await;
    detail.assert_status(StatusCode::OK);
    assert_eq!(detail.body["users"][0]["email"], "admin@example.com");
    assert_eq!(detail.body["users"][0]["role"], "admin");

    // Deleting a tenant deletes what it owns, including a provider that uses a credential.
    let header = id.clone();
    let in_acme = [("x-tenant-id", header.as_str())];
    let credential = app
        .call_with(
            axum::http::Method::POST,
            "/api/v1/credentials",
            &admin,
            Some(json!({"provider": "aws", "name": "k", "access_key": "a", "secret_key": "b"})),
            &in_acme,
        )
        .await;
    credential.assert_status(StatusCode::CREATED);
    app.call_with(
        axum::http::Method::POST,
        "/api/v1/providers",
        &admin,
        Some(json!({"provider_type": "aws", "display_name": "p", "credential_id": credential.body["id"]})),
        &in_acme,
    )
    .await
    .assert_status(StatusCode::CREATED);
    app.delete(&format!("/api/v1/tenants/{id}"), &admin)
        .await
        .assert_status(StatusCode::NO_CONTENT);
    let left: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM providers) + (SELECT count(*) FROM credentials)",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(left, 0);
    app.get(&format!("/api/v1/tenants/{id}"), &admin)
        .await
        .assert_problem(StatusCode::NOT_FOUND, "RESOURCE_NOT_FOUND");
}

#[tokio::test]
async fn unknown_tier_and_bad_settings_are_rejected() {
    let app = TestApp::spawn().await;
    let (admin, tenant) = app.user("admin@example.com").await;
    app.post(
        "/api/v1/tenants",
        &admin,
        json!({"name": "X", "subscription_tier": "platinum"}),
    )
    .await
    .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_REQUEST");
    app.put(
        &format!("/api/v1/tenants/{tenant}"),
        &admin,
        json!({"settings": {"currency": "euro"}}),
    )
    .await
    .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_REQUEST");
    app.put(
        &format!("/api/v1/tenants/{tenant}"),
        &admin,
        json!({"settings": {"colour": "red"}}),
    )
    .await
    .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_REQUEST");
}

#[tokio::test]
async fn another_tenants_id_is_404_for_every_verb() {
    let app = TestApp::spawn().await;
    let (alice, _) = app.user("alice@example.com").await;
    let (_, bobs_tenant) = app.user("bob@example.com").await;
    let path = format!("/api/v1/tenants/{bobs_tenant}");
    app.get(&path, &alice)
        .await
        .assert_problem(StatusCode::NOT_FOUND, "RESOURCE_NOT_FOUND");
    app.put(&path, &alice, json!({"name": "mine"}))
        .await
        .assert_problem(StatusCode::NOT_FOUND, "RESOURCE_NOT_FOUND");
    app.delete(&path, &alice)
        .await
        .assert_problem(StatusCode::NOT_FOUND, "RESOURCE_NOT_FOUND");
    app.get(&format!("{path}/members"), &alice)
        .await
        .assert_problem(StatusCode::NOT_FOUND, "RESOURCE_NOT_FOUND");
    let list = app.get("/api/v1/tenants", &alice).await;
    assert_eq!(list.body["total"], 1, "alice sees only her own tenant");
}

#[tokio::test]
async fn members_are_added_changed_and_removed_and_viewers_cannot_write() {
    let app = TestApp::spawn().await;
    let (admin, tenant) = app.user("admin@example.com").await;
    let (viewer, _) = app.user("viewer@example.com").await;
    let members = format!("/api/v1/tenants/{tenant}/members");

    let added = app
        .post(
            &members,
            &admin,
            json!({"email": "viewer@example.com", "role": "viewer"}),
        )
        .await;
    added.assert_status(StatusCode::CREATED);
    assert_eq!(added.body["status"], "active");
    let viewer_id = added.body["user_id"].as_str().unwrap().to_string();
    app.post(
        &members,
        &admin,
        json!({"email": "viewer@example.com", "role": "member"}),
    )
    .await
    .assert_problem(StatusCode::CONFLICT, "DUPLICATE_RESOURCE");

    // The viewer acts in the admin's tenant by naming it.
    let header = tenant.to_string();
    let headers = [("x-tenant-id", header.as_str())];
    let list = app
        .call_with(
            axum::http::Method::GET,
            "/api/v1/credentials",
            &viewer,
            None,
            &headers,
        )
        .await;
    list.assert_status(StatusCode::OK);
    let write = app
        .call_with(
            axum::http::Method::POST,
            "/api/v1/providers",
            &viewer,
            Some(json!({"provider_type": "sandbox", "display_name": "x"})),
            &headers,
        )
        .await;
    write.assert_problem(StatusCode::FORBIDDEN, "FORBIDDEN");
    app.put(
        &format!("/api/v1/tenants/{tenant}"),
        &viewer,
        json!({"name": "taken over"}),
    )
    .await
    .assert_problem(StatusCode::FORBIDDEN, "FORBIDDEN");
    app.post(
        &members,
        &viewer,
        json!({"email": "x@example.com", "role": "admin"}),
    )
    .await
    .assert_problem(StatusCode::FORBIDDEN, "FORBIDDEN");

    let promoted = app
        .put(
            &format!("{members}/{viewer_id}"),
            &admin,
            json!({"role": "member"}),
        )
        .await;
    promoted.assert_status(StatusCode::OK);
    assert_eq!(promoted.body["role"], "member");
    let write = app
        .call_with(
            axum::http::Method::POST,
            "/api/v1/providers",
            &viewer,
            Some(json!({"provider_type": "sandbox", "display_name": "x"})),
            &headers,
        )
        .await;
    write.assert_status(StatusCode::CREATED);

    let list = app.get(&members, &admin).await;
    assert_eq!(list.body["total"], 2);
    app.delete(&format!("{members}/{viewer_id}"), &admin)
        .await
        .assert_status(StatusCode::NO_CONTENT);
    app.call_with(
        axum::http::Method::GET,
        "/api/v1/credentials",
        &viewer,
        None,
        &headers,
    )
    .await
    .assert_problem(StatusCode::FORBIDDEN, "FORBIDDEN");
}

#[tokio::test]
async fn the_last_admin_cannot_be_demoted_or_removed() {
    let app = TestApp::spawn().await;
    let (admin, tenant) = app.user("admin@example.com").await;
    let me = app.get("/api/v1/auth/me", &admin).await;
    let admin_id = me.body["id"].as_str().unwrap();
    let path = format!("/api/v1/tenants/{tenant}/members/{admin_id}");
    app.put(&path, &admin, json!({"role": "member"}))
        .await
        .assert_problem(StatusCode::CONFLICT, "DUPLICATE_RESOURCE");
    app.delete(&path, &admin)
        .await
        .assert_problem(StatusCode::CONFLICT, "DUPLICATE_RESOURCE");
}

#[tokio::test]
async fn the_operator_key_sees_every_tenant_and_acts_in_the_one_named() {
    let app = TestApp::spawn().await;
    let operator = As::Key(OPERATOR_KEY.into());
    app.user("a@example.com").await;
    let (_, tenant_b) = app.user("b@example.com").await;
    let list = app.get("/api/v1/tenants", &operator).await;
    list.assert_status(StatusCode::OK);
    assert_eq!(list.body["total"], 2);
    let created = app
        .post("/api/v1/tenants", &operator, json!({"name": "Ops"}))
        .await;
    created.assert_status(StatusCode::CREATED);

    app.get("/api/v1/providers", &operator)
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "INVALID_REQUEST");
    let header = tenant_b.to_string();
    app.call_with(
        axum::http::Method::GET,
        "/api/v1/providers",
        &operator,
        None,
        &[("x-tenant-id", &header)],
    )
    .await
    .assert_status(StatusCode::OK);
    let me = app.get("/api/v1/auth/me", &operator).await;
    assert_eq!(me.body["kind"], "operator");
}
