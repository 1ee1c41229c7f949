//! `Idempotency-Key`: a POST repeated with the same key (by the same caller) gets the first
//! answer again and changes nothing; the same key with a different request is refused.
//! Answers are kept for a day; a 5xx is not kept, so the client may simply retry.

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use sha2::{Digest, Sha256};

use crate::error::AppError;
use crate::state::AppState;

pub const HEADER: &str = "idempotency-key";
/// How long first answers are kept.
pub const RETENTION_HOURS: i32 = 24;

fn header_text(request: &Request, name: &str) -> String {
    request
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

pub async fn middleware(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(key) = request.headers().get(HEADER).cloned() else {
        return next.run(request).await;
    };
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    match handle(state, key, request, next).await {
        Ok(response) => response,
        Err(err) => err.into_response(),
    }
}

async fn handle(
    state: AppState,
    key: HeaderValue,
    request: Request,
    next: Next,
) -> Result<Response, AppError> {
    let key = key
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= 255)
        .ok_or_else(|| {
            AppError::BadRequest("Idempotency-Key must be 1 to 255 characters of text".into())
        })?
        .to_string();
    // The caller's credential (never stored as such) and tenant scope the key.
    let credential = format!(
        "{}|{}",
        header_text(&request, "authorization"),
        header_text(&request, "x-api-key")
    );
    let scope = hex(&Sha256::digest(format!(
        "{credential}|{}",
        header_text(&request, "x-tenant-id")
    )));
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|_| {
            AppError::PayloadTooLarge("the request body is too large (limit 1 MiB)".into())
        })?
        .to_bytes();
    let request_hash = Sha256::new()
        .chain_update(parts.method.as_str())
        .chain_update(b" ")
        .chain_update(parts.uri.path())
        .chain_update(b"\n")
        .chain_update(&body)
        .finalize()
        .to_vec();

    let claimed = sqlx::query!(
        "INSERT INTO idempotency_keys (scope, key, request_hash) VALUES ($1, $2, $3)
         ON CONFLICT (scope, key) DO NOTHING",
        scope,
        key,
        request_hash
    )
    .execute(&state.db)
    .await?
    .rows_affected()
        == 1;
    if !claimed {
        return replay(&state, &scope, &key, &request_hash).await;
    }

    let response = next.run(Request::from_parts(parts, Body::from(body))).await;
    if response.status().is_server_error() {
        sqlx::query!(
            "DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2",
            scope,
            key
        )
        .execute(&state.db)
        .await?;
        return Ok(response);
    }
    let (parts, body) = response.into_parts();
    let bytes: Bytes = body
        .collect()
        .await
        .map_err(|err| AppError::Internal(anyhow::anyhow!("reading a response: {err}")))?
        .to_bytes();
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    sqlx::query!(
        "UPDATE idempotency_keys SET status = $3, content_type = $4, body = $5 WHERE scope = $1 AND key = $2",
        scope,
        key,
        parts.status.as_u16() as i16,
        content_type,
        bytes.as_ref()
    )
    .execute(&state.db)
    .await?;
    Ok(Response::from_parts(parts, Body::from(bytes)))
}

async fn replay(
    state: &AppState,
    scope: &str,
    key: &str,
    request_hash: &[u8],
) -> Result<Response, AppError> {
    let first = sqlx::query!(
        "SELECT request_hash, status, content_type, body FROM idempotency_keys WHERE scope = $1 AND key = $2",
        scope,
        key
    )
    .fetch_one(&state.db)
    .await?;
    if first.request_hash != request_hash {
        return Err(AppError::Unprocessable(
            "this Idempotency-Key was already used with a different request".into(),
        ));
    }
    let Some(status) = first.status else {
        return Err(AppError::Conflict(
            "a request with this Idempotency-Key is still being answered; retry shortly".into(),
        ));
    };
    let mut response = Response::new(Body::from(first.body.unwrap_or_default()));
    *response.status_mut() = StatusCode::from_u16(status as u16).unwrap_or(StatusCode::OK);
    if let Some(content_type) = first
        .content_type
        .and_then(|c| HeaderValue::from_str(&c).ok())
    {
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, content_type);
    }
    response
        .headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    Ok(response)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Forgets first answers older than the retention.
pub async fn delete_expired(db: &sqlx::PgPool) -> sqlx::Result<u64> {
    Ok(sqlx::query!(
        "DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(hours => $1)",
        RETENTION_HOURS
    )
    .execute(db)
    .await?
    .rows_affected())
}
