//! The inventory (seed 001): what exists in the clouds, one shape for every kind, with the
//! cloud's own id as `resource_id` and the details in `metadata`.

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::TenantAuth;
use crate::error::{AppError, AppResult};
use crate::http::{Json, Page, Pagination, Path, Query};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(vms))
        .routes(routes!(storage))
        .routes(routes!(networks))
        .routes(routes!(item))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InventoryItem {
    /// Strata's id of the resource.
    pub id: Uuid,
    /// The cloud's own id (instance id, bucket name, VPC id ...).
    pub resource_id: Option<String>,
    pub resource_name: String,
    /// `vm`, `storage`, `network`, `dns_record` or `cluster`.
    pub resource_type: String,
    pub provider: String,
    pub provider_id: Uuid,
    pub region: Option<String>,
    /// VMs: `pending`, `running`, `stopped`, `terminated` or `error`; others: `pending`,
    /// `active`, `deleted` or `error`.
    pub status: String,
    /// instance_type, IPs, tags, cost_per_hour and the rest of what is known.
    pub metadata: Value,
    pub created_at: DateTime<Utc>,
    pub last_synced: Option<DateTime<Utc>>,
    /// A sync found it changed outside Strata (see `/resources/{id}/drift`); the next apply
    /// clears it.
    pub drifted: bool,
}

struct Row {
    id: Uuid,
    cloud_id: Option<String>,
    name: String,
    kind: String,
    provider: String,
    provider_id: Uuid,
    region: Option<String>,
    status: String,
    power_state: String,
    spec: Value,
    attributes: Value,
    tags: Value,
    cost_per_hour: Option<f64>,
    estimated_monthly_cost: Option<f64>,
    created_at: DateTime<Utc>,
    last_synced: Option<DateTime<Utc>>,
    drifted: bool,
}

/// The inventory status of a resource (the inventory's own vocabulary).
pub fn inventory_status(kind: &str, status: &str, power_state: &str) -> &'static str {
    match (kind, status) {
        (_, "provisioning") => "pending",
        (_, "failed") => "error",
        ("vm", "destroyed") => "terminated",
        (_, "destroyed") => "deleted",
        ("vm", _) if status == "stopped" || power_state == "stopped" => "stopped",
        ("vm", _) => "running",
        _ => "active",
    }
}

impl From<Row> for InventoryItem {
    fn from(r: Row) -> Self {
        let mut metadata = Map::new();
        if let Some(spec) = r.spec.as_object() {
            metadata.extend(spec.clone());
        }
        if let Some(attributes) = r.attributes.as_object() {
            metadata.extend(attributes.clone());
        }
        // Before the first apply reports the machine type, the size stands in for it.
        if r.kind == "vm"
            && !metadata.contains_key("instance_type")
            && let Some(size) = r.spec.get("size")
        {
            metadata.insert("instance_type".into(), size.clone());
        }
        metadata.insert("tags".into(), r.tags);
        metadata.insert("cost_per_hour".into(), json!(r.cost_per_hour));
        metadata.insert(
            "estimated_monthly_cost".into(),
            json!(r.estimated_monthly_cost),
        );
        InventoryItem {
            id: r.id,
            resource_id: r.cloud_id,
            resource_name: r.name,
            status: inventory_status(&r.kind, &r.status, &r.power_state).to_string(),
            resource_type: r.kind,
            provider: r.provider,
            provider_id: r.provider_id,
            region: r.region,
            metadata: Value::Object(metadata),
            created_at: r.created_at,
            last_synced: r.last_synced,
            drifted: r.drifted,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InventoryFilter {
    /// The provider type (`aws`, `sandbox`, ...).
    pub provider: Option<String>,
    pub region: Option<String>,
    /// In the inventory's vocabulary (`running`, `stopped`, `terminated`, `active` ...).
    pub status: Option<String>,
}

async fn list(
    state: &AppState,
    tenant_id: Uuid,
    kind: &str,
    filter: &InventoryFilter,
    page: Pagination,
) -> AppResult<Page<InventoryItem>> {
    let (limit, offset) = page.resolve()?;
    // The status vocabulary is the inventory's own, so filtering happens on mapped rows; a
    // tenant's inventory of one kind is small enough to map whole.
    let rows = sqlx::query_as!(
        Row,
        "SELECT r.id, r.cloud_id, r.name, r.kind, p.provider_type AS provider, r.provider_id, r.region,
                r.status, r.power_state, r.spec, r.attributes, r.tags, r.cost_per_hour,
                r.estimated_monthly_cost, r.created_at, r.last_synced, r.drifted
         FROM resources r JOIN providers p ON p.id = r.provider_id
         WHERE r.tenant_id = $1 AND r.kind = $2
           AND ($3::text IS NULL OR p.provider_type = $3) AND ($4::text IS NULL OR r.region = $4)
         ORDER BY r.created_at, r.id",
        tenant_id,
        kind,
        filter.provider,
        filter.region
    )
    .fetch_all(&state.db)
    .await?;
    let items: Vec<InventoryItem> = rows
        .into_iter()
        .map(InventoryItem::from)
        .filter(|item| match &filter.status {
            Some(status) => &item.status == status,
            // Gone resources are history: shown only when asked for by status.
            None => !matches!(item.status.as_str(), "terminated" | "deleted"),
        })
        .collect();
    let total = items.len() as i64;
    let data = items
        .into_iter()
        .skip(offset as usize)
        .take(limit as usize)
        .collect();
    Ok(Page::new(data, total, (limit, offset)))
}

/// Virtual machines.
#[utoipa::path(get, path = "/inventory/vms", tag = "inventory", params(InventoryFilter, Pagination),
    responses((status = 200, body = Page<InventoryItem>)), security(("bearer" = []), ("api_key" = [])))]
async fn vms(
    State(state): State<AppState>,
    auth: TenantAuth,
    Query(filter): Query<InventoryFilter>,
    Query(page): Query<Pagination>,
) -> AppResult<Page<InventoryItem>> {
    list(&state, auth.tenant_id, "vm", &filter, page).await
}

/// Storage (buckets and volumes).
#[utoipa::path(get, path = "/inventory/storage", tag = "inventory", params(InventoryFilter, Pagination),
    responses((status = 200, body = Page<InventoryItem>)), security(("bearer" = []), ("api_key" = [])))]
async fn storage(
    State(state): State<AppState>,
    auth: TenantAuth,
    Query(filter): Query<InventoryFilter>,
    Query(page): Query<Pagination>,
) -> AppResult<Page<InventoryItem>> {
    list(&state, auth.tenant_id, "storage", &filter, page).await
}

/// Networks.
#[utoipa::path(get, path = "/inventory/networks", tag = "inventory", params(InventoryFilter, Pagination),
    responses((status = 200, body = Page<InventoryItem>)), security(("bearer" = []), ("api_key" = [])))]
async fn networks(
    State(state): State<AppState>,
    auth: TenantAuth,
    Query(filter): Query<InventoryFilter>,
    Query(page): Query<Pagination>,
) -> AppResult<Page<InventoryItem>> {
    list(&state, auth.tenant_id, "network", &filter, page).await
}

/// One inventory item, of any kind.
#[utoipa::path(get, path = "/inventory/{id}", tag = "inventory", params(("id" = Uuid, Path)),
    responses((status = 200, body = InventoryItem), (status = 404)), security(("bearer" = []), ("api_key" = [])))]
async fn item(
    State(state): State<AppState>,
    auth: TenantAuth,
    Path(id): Path<Uuid>,
) -> AppResult<Json<InventoryItem>> {
    let row = sqlx::query_as!(
        Row,
        "SELECT r.id, r.cloud_id, r.name, r.kind, p.provider_type AS provider, r.provider_id, r.region,
                r.status, r.power_state, r.spec, r.attributes, r.tags, r.cost_per_hour,
                r.estimated_monthly_cost, r.created_at, r.last_synced, r.drifted
         FROM resources r JOIN providers p ON p.id = r.provider_id
         WHERE r.id = $1 AND r.tenant_id = $2",
        id,
        auth.tenant_id
    )
    .fetch_optional(&state.db)
    .await?
    .ok_or(AppError::NotFound("inventory item"))?;
    Ok(Json(row.into()))
}
