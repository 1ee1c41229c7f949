//! Provider health: the sandbox is checked by running its engine (Terraform); a cloud provider
//! by opening a connection to its API endpoint with a short timeout.

use std::time::{Duration, Instant};

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{ProviderRow, ProviderType, fetch_provider};
use crate::auth::TenantAuth;
use crate::error::AppResult;
use crate::http::{Json, Path};
use crate::state::AppState;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Slower than this and the provider is `degraded`.
const DEGRADED_AFTER: Duration = Duration::from_millis(1000);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Healthy,
    Degraded,
    Unreachable,
}

impl HealthStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Degraded => "degraded",
            Self::Unreachable => "unreachable",
        }
    }
}

crate::db::text_enum!(HealthStatus);

#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderHealth {
    pub provider_id: Uuid,
    pub provider_type: ProviderType,
    pub status: HealthStatus,
    pub response_time_ms: Option<i64>,
    pub last_check: DateTime<Utc>,
    pub error_message: Option<String>,
}

/// Check one provider now.
#[utoipa::path(get, path = "/providers/{id}/health", tag = "providers", params(("id" = Uuid, Path)),
    responses((status = 200, body = ProviderHealth), (status = 404)), security(("bearer" = []), ("api_key" = [])))]
pub(super) async fn check_one(
    State(state): State<AppState>,
    auth: TenantAuth,
    Path(id): Path<Uuid>,
) -> AppResult<Json<ProviderHealth>> {
    let provider = fetch_provider(&state, auth.tenant_id, id).await?;
    Ok(Json(check_and_record(&state, &provider).await?))
}

/// Check every provider of the tenant now, concurrently.
#[utoipa::path(get, path = "/providers/health", tag = "providers",
    responses((status = 200, body = Vec<ProviderHealth>)), security(("bearer" = []), ("api_key" = [])))]
pub(super) async fn check_all(
    State(state): State<AppState>,
    auth: TenantAuth,
) -> AppResult<Json<Vec<ProviderHealth>>> {
    Ok(Json(check_tenant(&state, auth.tenant_id).await?))
}

/// Checks every provider of a tenant, concurrently, and records the outcomes (the route above
/// and the periodic `providers.health_check` task).
pub async fn check_tenant(state: &AppState, tenant_id: Uuid) -> AppResult<Vec<ProviderHealth>> {
    let ids = sqlx::query_scalar!(
        "SELECT id FROM providers WHERE tenant_id = $1 ORDER BY created_at, id",
        tenant_id
    )
    .fetch_all(&state.db)
    .await?;
    let checks = ids.into_iter().map(|id| async move {
        let provider = fetch_provider(state, tenant_id, id).await?;
        check_and_record(state, &provider).await
    });
    futures::future::try_join_all(checks).await
}

async fn check_and_record(state: &AppState, provider: &ProviderRow) -> AppResult<ProviderHealth> {
    let provider_type: ProviderType = provider.provider_type.parse()?;
    let started = Instant::now();
    let outcome = match provider_type {
        ProviderType::Sandbox => state.terraform.check().await.map(|_| ()),
        _ => match endpoint_of(state, provider, provider_type).await? {
            Some(endpoint) => connect(state, &endpoint).await,
            None => Err("no API endpoint is configured (set settings.endpoint)".to_string()),
        },
    };
    let elapsed = started.elapsed();
    let (status, response_time_ms, error_message) = match outcome {
        Ok(()) if elapsed > DEGRADED_AFTER => (
            HealthStatus::Degraded,
            Some(elapsed.as_millis() as i64),
            Some(format!("slow response ({} ms)", elapsed.as_millis())),
        ),
        Ok(()) => (
            HealthStatus::Healthy,
            Some(elapsed.as_millis() as i64),
            None,
        ),
        Err(reason) => (HealthStatus::Unreachable, None, Some(reason)),
    };
    let last_check = sqlx::query_scalar!(
        "UPDATE providers SET health_status = $2, health_response_time_ms = $3, health_error = $4,
                health_checked_at = now()
         WHERE id = $1 RETURNING health_checked_at AS \"checked!\"",
        provider.id,
        status.as_str(),
        response_time_ms.map(|ms| ms.min(i32::MAX as i64) as i32),
        error_message
    )
    .fetch_one(&state.db)
    .await?;
    Ok(ProviderHealth {
        provider_id: provider.id,
        provider_type,
        status,
        response_time_ms,
        last_check,
        error_message,
    })
}

/// Where the provider's API lives: `settings.endpoint`, the credential's endpoint or host, or
/// the provider's public endpoint for the region.
async fn endpoint_of(
    state: &AppState,
    provider: &ProviderRow,
    provider_type: ProviderType,
) -> AppResult<Option<String>> {
    if let Some(endpoint) = provider.settings.get("endpoint").and_then(Value::as_str) {
        return Ok(Some(endpoint.to_string()));
    }
    let region = provider.region.as_deref();
    Ok(match provider_type {
        ProviderType::Aws => Some(format!(
            "ec2.{}.amazonaws.com:443",
            region.unwrap_or("us-east-1")
        )),
        ProviderType::Azure => Some("management.azure.com:443".into()),
        ProviderType::Gcp => Some("compute.googleapis.com:443".into()),
        ProviderType::Oci => Some(format!(
            "iaas.{}.oraclecloud.com:443",
            region.unwrap_or("us-ashburn-1")
        )),
        // The API address the operator configured (Cloudflare's own unless changed).
        ProviderType::Cloudflare => Some(state.settings.cloudflare_api_url.clone()),
        ProviderType::Proxmox | ProviderType::Databricks => match provider.credential_id {
            Some(credential_id) => {
                let metadata = sqlx::query_scalar!(
                    "SELECT metadata FROM credentials WHERE id = $1",
                    credential_id
                )
                .fetch_optional(&state.db)
                .await?;
                metadata.and_then(|m| {
                    ["endpoint", "host"]
                        .iter()
                        .find_map(|k| m.get(k).and_then(Value::as_str).map(str::to_string))
                })
            }
            None => None,
        },
        ProviderType::Sandbox => None,
    })
}

/// A TCP connection to the endpoint, through the outbound-address policy (a tenant sets most
/// endpoints).
async fn connect(state: &AppState, endpoint: &str) -> Result<(), String> {
    let endpoint = crate::outbound::Endpoint::parse(endpoint).map_err(|err| err.to_string())?;
    state
        .settings
        .outbound
        .connect(&endpoint, CONNECT_TIMEOUT)
        .await
        .map(drop)
        .map_err(|err| err.to_string())
}
