//! Per-tenant settings (seed 004): the intervals of periodic work and how long tasks are kept.
//! Every setting Strata knows is listed in [`SETTINGS`] with its default and range; a tenant
//! stores only the values it changed.

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
use crate::http::{Json, Path};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_settings))
        .routes(routes!(get_setting, put_setting, reset_setting))
}

/// A setting Strata knows: a whole number within a range.
pub struct SettingSpec {
    pub key: &'static str,
    pub description: &'static str,
    pub unit: &'static str,
    pub default: i64,
    pub min: i64,
    pub max: i64,
}

pub const SPENDING_SYNC_INTERVAL: &str = "spending_sync_interval";
pub const BUDGET_ENFORCE_INTERVAL: &str = "budget_enforce_interval";
pub const HEALTH_CHECK_INTERVAL: &str = "health_check_interval";
pub const DRIFT_CHECK_INTERVAL: &str = "drift_check_interval";
pub const TASK_RETENTION_DAYS: &str = "task_retention_days";

pub const SETTINGS: &[SettingSpec] = &[
    SettingSpec {
        key: SPENDING_SYNC_INTERVAL,
        description: "How often the cost of running resources is recorded.",
        unit: "seconds",
        default: 300,
        min: 60,
        max: 86_400,
    },
    SettingSpec {
        key: BUDGET_ENFORCE_INTERVAL,
        description: "How often budgets are checked and enforced.",
        unit: "seconds",
        default: 600,
        min: 60,
        max: 86_400,
    },
    SettingSpec {
        key: HEALTH_CHECK_INTERVAL,
        description: "How often every provider's health is checked.",
        unit: "seconds",
        default: 120,
        min: 10,
        max: 86_400,
    },
    SettingSpec {
        key: DRIFT_CHECK_INTERVAL,
        description: "How often managed resources are compared with the cloud (drift).",
        unit: "seconds",
        default: 3_600,
        min: 60,
        max: 7 * 86_400,
    },
    SettingSpec {
        key: TASK_RETENTION_DAYS,
        description: "Days a finished task is kept (tasks of deployments stay with their resource's history).",
        unit: "days",
        default: 30,
        min: 1,
        max: 3_650,
    },
];

pub fn spec(key: &str) -> Option<&'static SettingSpec> {
    SETTINGS.iter().find(|s| s.key == key)
}

/// A tenant's value of a setting, or its default.
pub async fn value(db: &sqlx::PgPool, tenant_id: Uuid, key: &str) -> sqlx::Result<i64> {
    let default = spec(key).map_or(0, |s| s.default);
    let stored = sqlx::query_scalar!(
        "SELECT value FROM tenant_settings WHERE tenant_id = $1 AND key = $2",
        tenant_id,
        key
    )
    .fetch_optional(db)
    .await?;
    Ok(stored.and_then(|v| v.as_i64()).unwrap_or(default))
}

#[derive(Serialize, ToSchema)]
pub struct Setting {
    pub key: String,
    pub value: i64,
    pub default: i64,
    /// True when the tenant has not changed it.
    pub is_default: bool,
    /// False for a setting whose periodic work does not exist yet (it is kept, and used once it
    /// does).
    pub in_effect: bool,
    pub unit: String,
    pub min: i64,
    pub max: i64,
    pub description: String,
    pub updated_at: Option<DateTime<Utc>>,
    pub updated_by: Option<Uuid>,
}

struct StoredSetting {
    key: String,
    value: Value,
    updated_at: DateTime<Utc>,
    updated_by: Option<Uuid>,
}

fn setting(spec: &SettingSpec, stored: Option<&StoredSetting>) -> Setting {
    let value = stored.and_then(|s| s.value.as_i64());
    Setting {
        key: spec.key.to_string(),
        value: value.unwrap_or(spec.default),
        default: spec.default,
        is_default: value.is_none(),
        in_effect: spec.key == TASK_RETENTION_DAYS || crate::schedules::uses_setting(spec.key),
        unit: spec.unit.to_string(),
        min: spec.min,
        max: spec.max,
        description: spec.description.to_string(),
        updated_at: stored.map(|s| s.updated_at),
        updated_by: stored.and_then(|s| s.updated_by),
    }
}

async fn stored(state: &AppState, tenant_id: Uuid) -> AppResult<Vec<StoredSetting>> {
    Ok(sqlx::query_as!(
        StoredSetting,
        "SELECT key, value, updated_at, updated_by FROM tenant_settings WHERE tenant_id = $1",
        tenant_id
    )
    .fetch_all(&state.db)
    .await?)
}

fn known(key: &str) -> AppResult<&'static SettingSpec> {
    spec(key).ok_or(AppError::NotFound("setting"))
}

/// Every setting with its value for this tenant and its default.
#[utoipa::path(get, path = "/settings", tag = "settings",
    responses((status = 200, body = Vec<Setting>)), security(("bearer" = []), ("api_key" = [])))]
async fn list_settings(
    State(state): State<AppState>,
    auth: TenantAuth,
) -> AppResult<Json<Vec<Setting>>> {
    let stored = stored(&state, auth.tenant_id).await?;
    Ok(Json(
        SETTINGS
            .iter()
            .map(|spec| setting(spec, stored.iter().find(|s| s.key == spec.key)))
            .collect(),
    ))
}

/// One setting.
#[utoipa::path(get, path = "/settings/{key}", tag = "settings", params(("key" = String, Path)),
    responses((status = 200, body = Setting), (status = 404)), security(("bearer" = []), ("api_key" = [])))]
async fn get_setting(
    State(state): State<AppState>,
    auth: TenantAuth,
    Path(key): Path<String>,
) -> AppResult<Json<Setting>> {
    let spec = known(&key)?;
    let stored = stored(&state, auth.tenant_id).await?;
    Ok(Json(setting(
        spec,
        stored.iter().find(|s| s.key == spec.key),
    )))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingInput {
    /// A whole number within the setting's range.
    pub value: Value,
}

/// Change a setting (admins). Periodic work picks a new interval up without a restart.
#[utoipa::path(put, path = "/settings/{key}", tag = "settings", params(("key" = String, Path)),
    request_body = SettingInput,
    responses((status = 200, body = Setting), (status = 404), (status = 422)), security(("bearer" = []), ("api_key" = [])))]
async fn put_setting(
    State(state): State<AppState>,
    auth: TenantAuth,
    Path(key): Path<String>,
    Json(input): Json<SettingInput>,
) -> AppResult<Json<Setting>> {
    auth.require(Role::Admin)?;
    let spec = known(&key)?;
    let value = match input.value.as_i64() {
        Some(v) if (spec.min..=spec.max).contains(&v) => v,
        Some(_) => {
            return Err(AppError::invalid(
                "value",
                format!(
                    "must be between {} and {} {}",
                    spec.min, spec.max, spec.unit
                ),
            ));
        }
        None => {
            return Err(AppError::invalid(
                "value",
                format!("must be a whole number of {}", spec.unit),
            ));
        }
    };
    let row = sqlx::query_as!(
        StoredSetting,
        "INSERT INTO tenant_settings (tenant_id, key, value, updated_by) VALUES ($1, $2, $3, $4)
         ON CONFLICT (tenant_id, key) DO UPDATE
             SET value = EXCLUDED.value, updated_by = EXCLUDED.updated_by, updated_at = now()
         RETURNING key, value, updated_at, updated_by",
        auth.tenant_id,
        spec.key,
        Value::from(value),
        auth.principal.user_id()
    )
    .fetch_one(&state.db)
    .await?;
    Ok(Json(setting(spec, Some(&row))))
}

/// Put a setting back to its default (admins).
#[utoipa::path(delete, path = "/settings/{key}", tag = "settings", params(("key" = String, Path)),
    responses((status = 204), (status = 404)), security(("bearer" = []), ("api_key" = [])))]
async fn reset_setting(
    State(state): State<AppState>,
    auth: TenantAuth,
    Path(key): Path<String>,
) -> AppResult<StatusCode> {
    auth.require(Role::Admin)?;
    let spec = known(&key)?;
    sqlx::query!(
        "DELETE FROM tenant_settings WHERE tenant_id = $1 AND key = $2",
        auth.tenant_id,
        spec.key
    )
    .execute(&state.db)
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
