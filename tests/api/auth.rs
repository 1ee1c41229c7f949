use axum::body::Body;
use axum::http::{Request, StatusCode};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use crate::helpers::{As, PASSWORD, TestApp};

#[tokio::test]
async fn signup_creates_a_user_with_their_own_tenant_as_admin() {
    let app = TestApp::spawn().await;
    let response = app
        .post(
            "/api/v1/auth/signup",
            &As::Anonymous,
            json!({"email": "Ada@Example.com", "password": PASSWORD, "full_name": "Ada Lovelace"}),
        )
        .await;
    response.assert_status(StatusCode::CREATED);
    assert_eq!(response.body["email"], "Ada@Example.com");
    assert_eq!(response.body["full_name"], "Ada Lovelace");
    assert!(
        response.body.get("password").is_none() && response.body.get("password_hash").is_none()
    );
    assert_eq!(response.body["tenants"].as_array().unwrap().len(), 1);
    assert_eq!(response.body["tenants"][0]["role"], "admin");

    let stored: String = sqlx::query_scalar("SELECT password_hash FROM users")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert!(
        stored.starts_with("$argon2id$"),
        "passwords are hashed with argon2id"
    );
}

#[tokio::test]
async fn duplicate_email_is_409_whatever_its_case() {
    let app = TestApp::spawn().await;
    app.user("ada@example.com").await;
    app.post(
        "/api/v1/auth/signup",
        &As::Anonymous,
        json!({"email": "ADA@example.com", "password": PASSWORD, "full_name": "Ada"}),
    )
    .await
    .assert_problem(StatusCode::CONFLICT, "DUPLICATE_RESOURCE");
}

#[tokio::test]
async fn signup_validates_every_field() {
    let app = TestApp::spawn().await;
    let response = app
        .post(
            "/api/v1/auth/signup",
            &As::Anonymous,
            json!({"email": "not-an-email", "password": "short", "full_name": ""}),
        )
        .await;
    response.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_REQUEST");
    let fields: Vec<&str> = response.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["email", "password", "full_name"]);
}

#[tokio::test]
async fn login_accepts_a_form_and_json_and_me_answers_with_the_token() {
    let app = TestApp::spawn().await;
    app.user("grace@example.com").await;

    let form = app
        .raw(
            Request::post("/api/v1/auth/login")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from(format!(
                    "username=grace%40example.com&password={}",
                    PASSWORD.replace(' ', "+")
                )))
                .unwrap(),
        )
        .await;
    form.assert_status(StatusCode::OK);
    assert_eq!(form.body["token_type"], "bearer");
    assert_eq!(form.body["expires_in"], 3600);
    let token = form.body["access_token"].as_str().unwrap().to_string();

    let json_login = app
        .post(
            "/api/v1/auth/login",
            &As::Anonymous,
            json!({"email": "grace@example.com", "password": PASSWORD}),
        )
        .await;
    json_login.assert_status(StatusCode::OK);

    let me = app.get("/api/v1/auth/me", &As::Token(token)).await;
    me.assert_status(StatusCode::OK);
    assert_eq!(me.body["kind"], "user");
    assert_eq!(me.body["email"], "grace@example.com");
    assert_eq!(me.body["tenants"][0]["role"], "admin");
}

#[tokio::test]
async fn wrong_password_and_unknown_email_are_401() {
    let app = TestApp::spawn().await;
    app.user("grace@example.com").await;
    for (email, password) in [
        ("grace@example.com", "wrong password"),
        ("nobody@example.com", PASSWORD),
    ] {
        app.post(
            "/api/v1/auth/login",
            &As::Anonymous,
            json!({"username": email, "password": password}),
        )
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    }
}

fn token_with(secret: &[u8], alg: Algorithm, sub: &str, exp: i64) -> String {
    jsonwebtoken::encode(
        &Header::new(alg),
        &json!({"sub": sub, "iat": 0, "exp": exp}),
        &EncodingKey::from_secret(secret),
    )
    .unwrap()
}

#[tokio::test]
async fn expired_tampered_unsigned_and_foreign_tokens_are_401() {
    let app = TestApp::spawn().await;
    let (As::Token(good), _) = app.user("eve@example.com").await else {
        unreachable!()
    };
    let me = app.get("/api/v1/auth/me", &As::Token(good.clone())).await;
    let user_id = me.body["id"].as_str().unwrap().to_string();
    let secret = b"test-jwt-secret-0123456789";
    let now = chrono::Utc::now().timestamp();

    let expired = token_with(secret, Algorithm::HS256, &user_id, now - 120);
    let wrong_key = token_with(
        b"some-other-secret-value",
        Algorithm::HS256,
        &user_id,
        now + 600,
    );
    let wrong_alg = token_with(secret, Algorithm::HS384, &user_id, now + 600);
    // alg "none": a header and claims with no signature.
    let b64 = |v: serde_json::Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let unsigned = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "typ": "JWT"})),
        b64(json!({"sub": user_id, "iat": now, "exp": now + 600}))
    );
    // Tampered: the claims of another user under the original signature.
    let mut parts: Vec<String> = good.split('.').map(str::to_string).collect();
    parts[1] = b64(json!({"sub": uuid::Uuid::new_v4(), "iat": now, "exp": now + 600}));
    let tampered = parts.join(".");

    for token in [
        expired,
        wrong_key,
        wrong_alg,
        unsigned,
        tampered,
        "garbage".to_string(),
    ] {
        app.get("/api/v1/auth/me", &As::Token(token.clone()))
            .await
            .assert_problem(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    }
    app.get("/api/v1/auth/me", &As::Anonymous)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    app.get("/api/v1/auth/me", &As::Token(good))
        .await
        .assert_status(StatusCode::OK);
}

#[tokio::test]
async fn signup_of_an_invited_email_joins_the_inviting_tenant_instead() {
    let app = TestApp::spawn().await;
    let (admin, tenant) = app.user("owner@example.com").await;
    app.post(
        &format!("/api/v1/tenants/{tenant}/members"),
        &admin,
        json!({"email": "new@example.com", "role": "viewer"}),
    )
    .await
    .assert_status(StatusCode::CREATED);
    let signup = app
        .post(
            "/api/v1/auth/signup",
            &As::Anonymous,
            json!({"email": "new@example.com", "password": PASSWORD, "full_name": "New"}),
        )
        .await;
    signup.assert_status(StatusCode::CREATED);
    let tenants = signup.body["tenants"].as_array().unwrap();
    assert_eq!(tenants.len(), 1);
    assert_eq!(tenants[0]["tenant_id"], tenant.to_string());
    assert_eq!(tenants[0]["role"], "viewer");
}
