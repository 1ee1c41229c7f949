//! Cloud providers and accounts: where resources are created and costs come from.

mod health;
pub mod sync;

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::{Role, TenantAuth};
use crate::error::{AppError, AppResult};
use crate::http::{Json, Page, Pagination, Path, Query, Validator};
use crate::state::AppState;

pub use health::{HealthStatus, ProviderHealth, check_tenant};

/// Whether the tenant has provider `id`.
pub async fn exists(db: &sqlx::PgPool, tenant_id: Uuid, id: Uuid) -> sqlx::Result<bool> {
    sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM providers WHERE id = $1 AND tenant_id = $2) AS "e!""#,
        id,
        tenant_id
    )
    .fetch_one(db)
    .await
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_providers, create_provider))
        .routes(routes!(health::check_all))
        .routes(routes!(get_provider, update_provider, delete_provider))
        .routes(routes!(health::check_one))
        .routes(routes!(sync::sync_provider))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProviderType {
    Sandbox,
    Aws,
    Azure,
    Gcp,
    Oci,
    Proxmox,
    Cloudflare,
    Databricks,
}

impl ProviderType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sandbox => "sandbox",
            Self::Aws => "aws",
            Self::Azure => "azure",
            Self::Gcp => "gcp",
            Self::Oci => "oci",
            Self::Proxmox => "proxmox",
            Self::Cloudflare => "cloudflare",
            Self::Databricks => "databricks",
        }
    }
}

crate::db::text_enum!(ProviderType);

#[derive(Serialize, ToSchema)]
pub struct Provider {
    pub id: Uuid,
    pub provider_type: ProviderType,
    pub display_name: String,
    pub region: Option<String>,
    pub credential_id: Option<Uuid>,
    pub account_number: Option<String>,
    pub owner_email: Option<String>,
    pub settings: Value,
    /// The last health check, if any.
    pub health: Option<ProviderHealth>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub(crate) struct ProviderRow {
    pub id: Uuid,
    pub provider_type: String,
    pub display_name: String,
    pub region: Option<String>,
    pub credential_id: Option<Uuid>,
    pub account_number: Option<String>,
    pub owner_email: Option<String>,
    pub settings: Value,
    pub health_status: Option<String>,
    pub health_response_time_ms: Option<i32>,
    pub health_error: Option<String>,
    pub health_checked_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl ProviderRow {
    fn into_provider(self) -> AppResult<Provider> {
        let health = match (self.health_status, self.health_checked_at) {
            (Some(status), Some(last_check)) => Some(ProviderHealth {
                provider_id: self.id,
                provider_type: self.provider_type.parse()?,
                status: status.parse()?,
                response_time_ms: self.health_response_time_ms.map(i64::from),
                last_check,
                error_message: self.health_error,
            }),
            _ => None,
        };
        Ok(Provider {
            id: self.id,
            provider_type: self.provider_type.parse()?,
            display_name: self.display_name,
            region: self.region,
            credential_id: self.credential_id,
            account_number: self.account_number,
            owner_email: self.owner_email,
            settings: self.settings,
            health,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

pub(crate) async fn fetch_provider(
    state: &AppState,
    tenant_id: Uuid,
    id: Uuid,
) -> AppResult<ProviderRow> {
    sqlx::query_as!(
        ProviderRow,
        "SELECT id, provider_type, display_name, region, credential_id, account_number, owner_email,
                settings, health_status, health_response_time_ms, health_error, health_checked_at,
                created_at, updated_at
         FROM providers WHERE id = $1 AND tenant_id = $2",
        id,
        tenant_id
    )
    .fetch_optional(&state.db)
    .await?
    .ok_or(AppError::NotFound("provider"))
}

/// The provider fields a create or update sets.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderInput {
    pub provider_type: ProviderType,
    #[schema(example = "Production AWS")]
    pub display_name: String,
    #[schema(example = "us-east-1")]
    pub region: Option<String>,
    pub credential_id: Option<Uuid>,
    /// The cloud account, subscription or project number.
    #[schema(example = "123456789012")]
    pub account_number: Option<String>,
    pub owner_email: Option<String>,
    /// Free-form provider settings; `endpoint` overrides the API endpoint health checks reach.
    #[serde(default)]
    pub settings: Option<Value>,
}

async fn validate_input(
    state: &AppState,
    auth: &TenantAuth,
    input: &ProviderInput,
) -> AppResult<()> {
    let mut v = Validator::new();
    v.text("display_name", &input.display_name, 1, 200)
        .optional_text("region", input.region.as_deref(), 64)
        .optional_text("account_number", input.account_number.as_deref(), 64);
    if let Some(email) = &input.owner_email {
        v.email("owner_email", email);
    }
    if let Some(settings) = &input.settings {
        v.check(settings.is_object(), "settings", "must be a JSON object")
            .check(
                settings.to_string().len() <= 16 * 1024,
                "settings",
                "must be at most 16 KiB",
            );
    }
    if let Some(credential_id) = input.credential_id {
        let provider = sqlx::query_scalar!(
            "SELECT provider FROM credentials WHERE id = $1 AND tenant_id = $2",
            credential_id,
            auth.tenant_id
        )
        .fetch_optional(&state.db)
        .await?;
        match provider {
            None => v.error("credential_id", "no such credential"),
            Some(p) if p != input.provider_type.as_str() => v.error(
                "credential_id",
                format!("is a {p} credential, not {}", input.provider_type.as_str()),
            ),
            Some(_) => {}
        }
    }
    v.finish()
}

/// The tenant's providers.
#[utoipa::path(get, path = "/providers", tag = "providers", params(Pagination),
    responses((status = 200, body = Page<Provider>)), security(("bearer" = []), ("api_key" = [])))]
async fn list_providers(
    State(state): State<AppState>,
    auth: TenantAuth,
    Query(page): Query<Pagination>,
) -> AppResult<Page<Provider>> {
    let (limit, offset) = page.resolve()?;
    let rows = sqlx::query_as!(
        ProviderRow,
        "SELECT id, provider_type, display_name, region, credential_id, account_number, owner_email,
                settings, health_status, health_response_time_ms, health_error, health_checked_at,
                created_at, updated_at
         FROM providers WHERE tenant_id = $1 ORDER BY created_at, id LIMIT $2 OFFSET $3",
        auth.tenant_id,
        limit,
        offset
    )
    .fetch_all(&state.db)
    .await?;
    let total = sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM providers WHERE tenant_id = $1"#,
        auth.tenant_id
    )
    .fetch_one(&state.db)
    .await?;
    let data = rows
        .into_iter()
        .map(ProviderRow::into_provider)
        .collect::<AppResult<_>>()?;
    Ok(Page::new(data, total, (limit, offset)))
}

/// Register a provider.
#[utoipa::path(post, path = "/providers", tag = "providers", request_body = ProviderInput,
    responses((status = 201, body = Provider), (status = 409, description = "display_name taken")),
    security(("bearer" = []), ("api_key" = [])))]
async fn create_provider(
    State(state): State<AppState>,
    auth: TenantAuth,
    Json(input): Json<ProviderInput>,
) -> AppResult<(StatusCode, Json<Provider>)> {
    auth.require(Role::Member)?;
    validate_input(&state, &auth, &input).await?;
    let row = sqlx::query_as!(
        ProviderRow,
        "INSERT INTO providers (id, tenant_id, provider_type, display_name, region, credential_id,
                                account_number, owner_email, settings)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         RETURNING id, provider_type, display_name, region, credential_id, account_number, owner_email,
                   settings, health_status, health_response_time_ms, health_error, health_checked_at,
                   created_at, updated_at",
        Uuid::new_v4(),
        auth.tenant_id,
        input.provider_type.as_str(),
        input.display_name.trim(),
        input.region.as_deref().map(str::trim),
        input.credential_id,
        input.account_number,
        input.owner_email,
        input.settings.unwrap_or_else(|| Value::Object(Default::default()))
    )
    .fetch_one(&state.db)
    .await?;
    Ok((StatusCode::CREATED, Json(row.into_provider()?)))
}

/// One provider.
#[utoipa::path(get, path = "/providers/{id}", tag = "providers", params(("id" = Uuid, Path)),
    responses((status = 200, body = Provider), (status = 404)), security(("bearer" = []), ("api_key" = [])))]
async fn get_provider(
    State(state): State<AppState>,
    auth: TenantAuth,
    Path(id): Path<Uuid>,
) -> AppResult<Json<Provider>> {
    Ok(Json(
        fetch_provider(&state, auth.tenant_id, id)
            .await?
            .into_provider()?,
    ))
}

/// Replace a provider's configuration.
#[utoipa::path(put, path = "/providers/{id}", tag = "providers", params(("id" = Uuid, Path)),
    request_body = ProviderInput, responses((status = 200, body = Provider), (status = 404)),
    security(("bearer" = []), ("api_key" = [])))]
async fn update_provider(
    State(state): State<AppState>,
    auth: TenantAuth,
    Path(id): Path<Uuid>,
    Json(input): Json<ProviderInput>,
) -> AppResult<Json<Provider>> {
    auth.require(Role::Member)?;
    validate_input(&state, &auth, &input).await?;
    let row = sqlx::query_as!(
        ProviderRow,
        "UPDATE providers SET provider_type = $3, display_name = $4, region = $5, credential_id = $6,
                account_number = $7, owner_email = $8, settings = $9, updated_at = now()
         WHERE id = $1 AND tenant_id = $2
         RETURNING id, provider_type, display_name, region, credential_id, account_number, owner_email,
                   settings, health_status, health_response_time_ms, health_error, health_checked_at,
                   created_at, updated_at",
        id,
        auth.tenant_id,
        input.provider_type.as_str(),
        input.display_name.trim(),
        input.region.as_deref().map(str::trim),
        input.credential_id,
        input.account_number,
        input.owner_email,
        input.settings.unwrap_or_else(|| Value::Object(Default::default()))
    )
    .fetch_optional(&state.db)
    .await?
    .ok_or(AppError::NotFound("provider"))?;
    Ok(Json(row.into_provider()?))
}

/// Remove a provider.
#[utoipa::path(delete, path = "/providers/{id}", tag = "providers", params(("id" = Uuid, Path)),
    responses((status = 204), (status = 404)), security(("bearer" = []), ("api_key" = [])))]
async fn delete_provider(
    State(state): State<AppState>,
    auth: TenantAuth,
    Path(id): Path<Uuid>,
) -> AppResult<StatusCode> {
    auth.require(Role::Member)?;
    let deleted = sqlx::query!(
        "DELETE FROM providers WHERE id = $1 AND tenant_id = $2",
        id,
        auth.tenant_id
    )
    .execute(&state.db)
    .await?
    .rows_affected();
    crate::http::deleted(deleted, "provider")
}
