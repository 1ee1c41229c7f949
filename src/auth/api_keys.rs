//! API keys: long random secrets scoped to a tenant and a role. The key is shown once, at
//! creation; only its SHA-256 is stored.

use axum::extract::State;
use axum::http::StatusCode;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{Role, TenantAuth, hash_api_key};
use crate::error::AppResult;
use crate::http::{Json, Page, Pagination, Path, Query, Validator};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_api_key, list_api_keys))
        .routes(routes!(delete_api_key))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    pub name: String,
    /// The key's role; at most the caller's own. Default `member`.
    pub role: Option<Role>,
    /// Days until the key stops working (1 to 3650); none means it does not expire.
    pub expires_in_days: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct ApiKey {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub name: String,
    /// The start of the key, to tell keys apart.
    pub prefix: String,
    pub role: Role,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

struct ApiKeyRow {
    id: Uuid,
    tenant_id: Uuid,
    name: String,
    prefix: String,
    role: String,
    expires_at: Option<DateTime<Utc>>,
    last_used_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
}

impl TryFrom<ApiKeyRow> for ApiKey {
    type Error = anyhow::Error;
    fn try_from(row: ApiKeyRow) -> anyhow::Result<Self> {
        Ok(ApiKey {
            id: row.id,
            tenant_id: row.tenant_id,
            name: row.name,
            prefix: row.prefix,
            role: row.role.parse()?,
            expires_at: row.expires_at,
            last_used_at: row.last_used_at,
            created_at: row.created_at,
        })
    }
}

#[derive(Serialize, ToSchema)]
pub struct CreatedApiKey {
    #[serde(flatten)]
    pub api_key: ApiKey,
    /// The secret key. It is shown only now: store it safely.
    pub key: String,
}

fn generate_key() -> String {
    let bytes: [u8; 32] = rand::random();
    format!(
        "sk_live_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// Create an API key for the current tenant (admins only).
#[utoipa::path(post, path = "/api-keys", tag = "api-keys", request_body = CreateApiKey,
    responses((status = 201, body = CreatedApiKey)), security(("bearer" = []), ("api_key" = [])))]
async fn create_api_key(
    State(state): State<AppState>,
    auth: TenantAuth,
    Json(body): Json<CreateApiKey>,
) -> AppResult<(StatusCode, Json<CreatedApiKey>)> {
    auth.require(Role::Admin)?;
    let role = body.role.unwrap_or(Role::Member);
    Validator::new()
        .text("name", &body.name, 1, 100)
        .check(role <= auth.role, "role", "cannot exceed your own role")
        .check(
            body.expires_in_days.is_none_or(|d| (1..=3650).contains(&d)),
            "expires_in_days",
            "must be between 1 and 3650",
        )
        .finish()?;
    let key = generate_key();
    let expires_at = body
        .expires_in_days
        .map(|days| Utc::now() + chrono::Duration::days(days));
    let row = sqlx::query_as!(
        ApiKeyRow,
        "INSERT INTO api_keys (id, tenant_id, name, prefix, key_hash, role, created_by, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         RETURNING id, tenant_id, name, prefix, role, expires_at, last_used_at, created_at",
        Uuid::new_v4(),
        auth.tenant_id,
        body.name.trim(),
        &key[..16],
        hash_api_key(&key),
        role.as_str(),
        auth.user_id(),
        expires_at
    )
    .fetch_one(&state.db)
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedApiKey {
            api_key: row.try_into()?,
            key,
        }),
    ))
}

/// The current tenant's API keys (without the secrets).
#[utoipa::path(get, path = "/api-keys", tag = "api-keys", params(Pagination),
    responses((status = 200, body = Page<ApiKey>)), security(("bearer" = []), ("api_key" = [])))]
async fn list_api_keys(
    State(state): State<AppState>,
    auth: TenantAuth,
    Query(page): Query<Pagination>,
) -> AppResult<Page<ApiKey>> {
    auth.require(Role::Admin)?;
    let (limit, offset) = page.resolve()?;
    let rows = sqlx::query_as!(
        ApiKeyRow,
        "SELECT id, tenant_id, name, prefix, role, expires_at, last_used_at, created_at
         FROM api_keys WHERE tenant_id = $1 ORDER BY created_at, id LIMIT $2 OFFSET $3",
        auth.tenant_id,
        limit,
        offset
    )
    .fetch_all(&state.db)
    .await?;
    let total = sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM api_keys WHERE tenant_id = $1"#,
        auth.tenant_id
    )
    .fetch_one(&state.db)
    .await?;
    let data = rows
        .into_iter()
        .map(ApiKey::try_from)
        .collect::<anyhow::Result<_>>()?;
    Ok(Page::new(data, total, (limit, offset)))
}

/// Revoke an API key.
#[utoipa::path(delete, path = "/api-keys/{id}", tag = "api-keys", params(("id" = Uuid, Path)),
    responses((status = 204), (status = 404)), security(("bearer" = []), ("api_key" = [])))]
async fn delete_api_key(
    State(state): State<AppState>,
    auth: TenantAuth,
    Path(id): Path<Uuid>,
) -> AppResult<StatusCode> {
    auth.require(Role::Admin)?;
    let deleted = sqlx::query!(
        "DELETE FROM api_keys WHERE id = $1 AND tenant_id = $2",
        id,
        auth.tenant_id
    )
    .execute(&state.db)
    .await?
    .rows_affected();
    crate::http::deleted(deleted, "API key")
}
