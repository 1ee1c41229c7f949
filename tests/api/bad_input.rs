//! Bad input gets a clear 4xx problem+json: never a 500, never a panic.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::json;

use crate::helpers::{As, TestApp};

fn raw(
    method: Method,
    path: &str,
    token: &As,
    content_type: Option<&str>,
    body: impl Into<Body>,
) -> Request<Body> {
    let mut request = Request::builder().method(method).uri(path);
    if let As::Token(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    request.body(body.into()).unwrap()
}

#[tokio::test]
async fn malformed_bodies_are_400_415_413_or_422() {
    let app = TestApp::spawn().await;
    let (admin, _) = app.user("admin@example.com").await;
    let json = Some("application/json");
    let cases: Vec<(Request<Body>, StatusCode)> = vec![
        (
            raw(Method::POST, "/api/v1/providers", &admin, json, "{not json"),
            StatusCode::BAD_REQUEST,
        ),
        (
            raw(Method::POST, "/api/v1/providers", &admin, json, ""),
            StatusCode::BAD_REQUEST,
        ),
        (
            raw(
                Method::POST,
                "/api/v1/providers",
                &admin,
                None,
                r#"{"provider_type":"sandbox","display_name":"x"}"#,
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            raw(
                Method::POST,
                "/api/v1/providers",
                &admin,
                json,
                r#"{"provider_type":"sandbox","display_name":7}"#,
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            raw(
                Method::POST,
                "/api/v1/providers",
                &admin,
                json,
                r#"["a list"]"#,
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            raw(
                Method::POST,
                "/api/v1/tenants",
                &admin,
                json,
                r#"{"name":null}"#,
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            raw(
                Method::POST,
                "/api/v1/auth/signup",
                &As::Anonymous,
                json,
                r#"{"email":["x"],"password":"p","full_name":"f"}"#,
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            raw(
                Method::POST,
                "/api/v1/auth/login",
                &As::Anonymous,
                Some("application/x-www-form-urlencoded"),
                "username=only",
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            raw(
                Method::POST,
                "/api/v1/tenants",
                &admin,
                json,
                format!(r#"{{"name":"{}"}}"#, "x".repeat(2 * 1024 * 1024)),
            ),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ];
    for (request, status) in cases {
        let path = request.uri().to_string();
        let response = app.raw(request).await;
        assert_eq!(response.status, status, "{path}: {}", response.text);
        response.assert_problem(status, "INVALID_REQUEST");
    }
}

#[tokio::test]
async fn over_long_strings_and_unknown_enum_values_are_422_with_the_field() {
    let app = TestApp::spawn().await;
    let (admin, tenant) = app.user("admin@example.com").await;
    let long = "x".repeat(300);
    let cases = [
        ("/api/v1/tenants", json!({"name": long})),
        (
            "/api/v1/providers",
            json!({"provider_type": "sandbox", "display_name": long}),
        ),
        (
            "/api/v1/providers",
            json!({"provider_type": "sandbox", "display_name": "x", "region": long}),
        ),
        ("/api/v1/api-keys", json!({"name": long})),
        (
            "/api/v1/api-keys",
            json!({"name": "k", "role": "superuser"}),
        ),
        (
            "/api/v1/api-keys",
            json!({"name": "k", "expires_in_days": 0}),
        ),
        (
            "/api/v1/auth/signup",
            json!({"email": format!("{long}@example.com"), "password": "long enough", "full_name": "x"}),
        ),
    ];
    for (path, body) in cases {
        let response = app.post(path, &admin, body).await;
        response.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_REQUEST");
    }
    let members = format!("/api/v1/tenants/{tenant}/members");
    app.post(
        &members,
        &admin,
        json!({"email": "x@example.com", "role": "owner"}),
    )
    .await
    .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_REQUEST");
}

#[tokio::test]
async fn bad_paths_queries_routes_and_methods_are_problems_too() {
    let app = TestApp::spawn().await;
    let (admin, _) = app.user("admin@example.com").await;
    app.get("/api/v1/providers/not-a-uuid", &admin)
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "INVALID_REQUEST");
    app.get("/api/v1/providers?limit=abc", &admin)
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "INVALID_REQUEST");
    app.get("/api/v1/providers?limit=0", &admin)
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_REQUEST");
    app.get("/api/v1/providers?offset=-5", &admin)
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_REQUEST");
    app.get("/api/v1/no-such-thing", &admin)
        .await
        .assert_problem(StatusCode::NOT_FOUND, "RESOURCE_NOT_FOUND");
    app.call(Method::PATCH, "/api/v1/health", &admin, None)
        .await
        .assert_problem(StatusCode::METHOD_NOT_ALLOWED, "INVALID_REQUEST");
    app.call_with(
        Method::GET,
        "/api/v1/providers",
        &admin,
        None,
        &[("x-tenant-id", "nope")],
    )
    .await
    .assert_problem(StatusCode::BAD_REQUEST, "INVALID_REQUEST");
    app.call_with(
        Method::GET,
        "/api/v1/providers",
        &As::Anonymous,
        None,
        &[("authorization", "Basic abc")],
    )
    .await
    .assert_problem(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
}

#[tokio::test]
async fn lists_page_with_limit_offset_and_skip() {
    let app = TestApp::spawn().await;
    let (admin, _) = app.user("admin@example.com").await;
    for i in 0..5 {
        app.post(
            "/api/v1/providers",
            &admin,
            json!({"provider_type": "sandbox", "display_name": format!("p{i}")}),
        )
        .await
        .assert_status(StatusCode::CREATED);
    }
    let page = app.get("/api/v1/providers?limit=2&offset=1", &admin).await;
    assert_eq!(page.body["total"], 5);
    assert_eq!(page.body["limit"], 2);
    assert_eq!(page.body["offset"], 1);
    assert_eq!(page.headers["x-total-count"], "5");
    let names: Vec<&str> = page.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["display_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["p1", "p2"]);
    let skipped = app.get("/api/v1/providers?limit=2&skip=4", &admin).await;
    assert_eq!(skipped.body["data"].as_array().unwrap().len(), 1);
    let past = app.get("/api/v1/providers?offset=50", &admin).await;
    assert_eq!(past.body["total"], 5);
    assert_eq!(past.body["data"], json!([]));
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let app = TestApp::spawn().await;
    let response = app
        .call_with(
            Method::GET,
            "/api/v1/health",
            &As::Anonymous,
            None,
            &[("x-request-id", "my-trace-1")],
        )
        .await;
    assert_eq!(response.headers["x-request-id"], "my-trace-1");
    let problem = app
        .call_with(
            Method::GET,
            "/api/v1/tasks",
            &As::Anonymous,
            None,
            &[("x-request-id", "my-trace-2")],
        )
        .await;
    assert_eq!(problem.body["trace_id"], "my-trace-2");
}
