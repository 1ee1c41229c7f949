//! The dashboard (seed 001): what a tenant runs, where, what it costs and how its providers
//! are, in one answer; and seed 000's cost dashboard ([`costs`]).

pub mod costs;

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::TenantAuth;
use crate::error::AppResult;
use crate::http::Json;
use crate::inventory::inventory_status;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(stats))
        .routes(routes!(trigger_sync))
        .merge(costs::router())
}

/// Refresh every managed resource of every provider of the tenant and record drift (the
/// dashboard's sync trigger).
#[utoipa::path(post, path = "/dashboard/sync/trigger", tag = "dashboard",
    responses((status = 202, body = crate::providers::sync::SyncStarted)),
    security(("bearer" = []), ("api_key" = [])))]
async fn trigger_sync(
    State(state): State<AppState>,
    auth: TenantAuth,
) -> AppResult<(
    axum::http::StatusCode,
    Json<crate::providers::sync::SyncStarted>,
)> {
    Ok((
        axum::http::StatusCode::ACCEPTED,
        Json(crate::providers::sync::start(&state, &auth, None).await?),
    ))
}

#[derive(Serialize, ToSchema)]
pub struct ProviderCount {
    /// The provider type (aws, azure, gcp, sandbox ...).
    pub provider: String,
    pub count: i64,
    pub vms: i64,
    pub storage: i64,
    pub networks: i64,
}

#[derive(Serialize, ToSchema)]
pub struct ProviderCost {
    pub provider: String,
    pub cost: f64,
}

#[derive(Serialize, ToSchema)]
pub struct ServiceCost {
    /// compute (vms, clusters), storage, or network (networks, DNS records).
    pub service: String,
    pub cost: f64,
}

#[derive(Serialize, ToSchema)]
pub struct RegionCount {
    /// The resource's region; `unspecified` for resources that have none.
    pub region: String,
    pub count: i64,
}

#[derive(Serialize, ToSchema)]
pub struct ProviderHealthEntry {
    pub provider: String,
    pub provider_id: Uuid,
    pub display_name: String,
    /// healthy, degraded, unreachable, or unknown before the first check.
    pub status: String,
    pub response_time_ms: Option<i32>,
    pub last_check: Option<DateTime<Utc>>,
    pub error_message: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Activity {
    pub resource_id: Uuid,
    pub resource_name: String,
    pub provider: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// In the inventory's vocabulary (running, stopped, pending, active ...).
    pub status: String,
    pub region: Option<String>,
    pub last_synced: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct DashboardStats {
    /// Resources that exist (not destroyed).
    pub total_resources: i64,
    /// VMs that are up and powered on.
    pub active_vms: i64,
    pub total_vms: i64,
    pub total_storage: i64,
    pub total_networks: i64,
    pub total_dns_records: i64,
    pub total_clusters: i64,
    /// The sum of the resources' estimated monthly costs (catalog prices, 730.5 hours).
    pub estimated_monthly_cost: f64,
    /// The currency of every cost in this answer (the price catalog's).
    pub currency: String,
    pub provider_breakdown: Vec<ProviderCount>,
    pub cost_by_provider: Vec<ProviderCost>,
    pub cost_by_service: Vec<ServiceCost>,
    pub region_distribution: Vec<RegionCount>,
    pub provider_health: Vec<ProviderHealthEntry>,
    /// The ten resources changed last.
    pub recent_activity: Vec<Activity>,
    pub last_updated: DateTime<Utc>,
}

/// Totals, costs, regions, provider health and recent activity of the caller's tenant.
#[utoipa::path(get, path = "/dashboard/stats", tag = "dashboard",
    responses((status = 200, body = DashboardStats)), security(("bearer" = []), ("api_key" = [])))]
async fn stats(State(state): State<AppState>, auth: TenantAuth) -> AppResult<Json<DashboardStats>> {
    let tenant = auth.tenant_id;
    let db = &state.db;
    let totals = sqlx::query!(
        r#"SELECT count(*) AS "total!",
                  count(*) FILTER (WHERE kind = 'vm' AND status = 'active' AND power_state = 'running') AS "active_vms!",
                  count(*) FILTER (WHERE kind = 'vm') AS "vms!",
                  count(*) FILTER (WHERE kind = 'storage') AS "storage!",
                  count(*) FILTER (WHERE kind = 'network') AS "networks!",
                  count(*) FILTER (WHERE kind = 'dns_record') AS "dns_records!",
                  count(*) FILTER (WHERE kind = 'cluster') AS "clusters!",
                  COALESCE(sum(estimated_monthly_cost), 0) AS "cost!"
           FROM resources WHERE tenant_id = $1 AND status <> 'destroyed'"#,
        tenant
    )
    .fetch_one(db)
    .await?;
    let provider_breakdown = sqlx::query_as!(
        ProviderCount,
        r#"SELECT p.provider_type AS provider, count(*) AS "count!",
                  count(*) FILTER (WHERE r.kind = 'vm') AS "vms!",
                  count(*) FILTER (WHERE r.kind = 'storage') AS "storage!",
                  count(*) FILTER (WHERE r.kind = 'network') AS "networks!"
           FROM resources r JOIN providers p ON p.id = r.provider_id
           WHERE r.tenant_id = $1 AND r.status <> 'destroyed'
           GROUP BY p.provider_type ORDER BY 2 DESC, 1"#,
        tenant
    )
    .fetch_all(db)
    .await?;
    let cost_by_provider = sqlx::query_as!(
        ProviderCost,
        r#"SELECT p.provider_type AS provider, COALESCE(sum(r.estimated_monthly_cost), 0) AS "cost!"
           FROM resources r JOIN providers p ON p.id = r.provider_id
           WHERE r.tenant_id = $1 AND r.status <> 'destroyed'
           GROUP BY p.provider_type ORDER BY 2 DESC, 1"#,
        tenant
    )
    .fetch_all(db)
    .await?;
    let cost_by_service = sqlx::query_as!(
        ServiceCost,
        r#"SELECT CASE WHEN kind IN ('vm', 'cluster') THEN 'compute'
                       WHEN kind = 'storage' THEN 'storage'
                       ELSE 'network' END AS "service!",
                  COALESCE(sum(estimated_monthly_cost), 0) AS "cost!"
           FROM resources WHERE tenant_id = $1 AND status <> 'destroyed'
           GROUP BY 1 ORDER BY 2 DESC, 1"#,
        tenant
    )
    .fetch_all(db)
    .await?;
    let region_distribution = sqlx::query_as!(
        RegionCount,
        r#"SELECT COALESCE(NULLIF(region, ''), 'unspecified') AS "region!", count(*) AS "count!"
           FROM resources WHERE tenant_id = $1 AND status <> 'destroyed'
           GROUP BY 1 ORDER BY 2 DESC, 1"#,
        tenant
    )
    .fetch_all(db)
    .await?;
    let provider_health = sqlx::query_as!(
        ProviderHealthEntry,
        r#"SELECT provider_type AS provider, id AS provider_id, display_name,
                  COALESCE(health_status, 'unknown') AS "status!", health_response_time_ms AS response_time_ms,
                  health_checked_at AS last_check, health_error AS error_message
           FROM providers WHERE tenant_id = $1 ORDER BY created_at, id"#,
        tenant
    )
    .fetch_all(db)
    .await?;
    let recent = sqlx::query!(
        "SELECT r.id, r.name, p.provider_type, r.kind, r.status, r.power_state, r.region,
                r.last_synced, r.updated_at
         FROM resources r JOIN providers p ON p.id = r.provider_id
         WHERE r.tenant_id = $1
         ORDER BY r.updated_at DESC, r.id LIMIT 10",
        tenant
    )
    .fetch_all(db)
    .await?;
    let recent_activity = recent
        .into_iter()
        .map(|r| Activity {
            status: inventory_status(&r.kind, &r.status, &r.power_state).to_string(),
            resource_id: r.id,
            resource_name: r.name,
            provider: r.provider_type,
            kind: r.kind,
            region: r.region,
            last_synced: r.last_synced,
            updated_at: r.updated_at,
        })
        .collect();
    Ok(Json(DashboardStats {
        total_resources: totals.total,
        active_vms: totals.active_vms,
        total_vms: totals.vms,
        total_storage: totals.storage,
        total_networks: totals.networks,
        total_dns_records: totals.dns_records,
        total_clusters: totals.clusters,
        estimated_monthly_cost: round_cents(totals.cost),
        currency: "USD".into(),
        provider_breakdown,
        cost_by_provider: cost_by_provider
            .into_iter()
            .map(|c| ProviderCost {
                cost: round_cents(c.cost),
                ..c
            })
            .collect(),
        cost_by_service: cost_by_service
            .into_iter()
            .map(|c| ServiceCost {
                cost: round_cents(c.cost),
                ..c
            })
            .collect(),
        region_distribution,
        provider_health,
        recent_activity,
        last_updated: Utc::now(),
    }))
}

fn round_cents(amount: f64) -> f64 {
    (amount * 100.0).round() / 100.0
}
