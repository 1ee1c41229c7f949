//! Service categories, a tenant's service → category mappings, and the services billing imports
//! saw with no category.
//!
//! A mapping `{cloud_provider, service_code, service_name, category}` applies to every cost
//! record of the tenant whose ProviderName equals `cloud_provider` (case-insensitively: map
//! `AWS` for the records of AWS exports, `Microsoft` for Azure's, `Google Cloud` for Google's;
//! the ProviderName of records is what `GET /billing/costs` shows) and whose ServiceName is the
//! `service_code` or the `service_name`. Creating one sets the ServiceCategory of the tenant's
//! existing records and recomputes the daily rollup of the days they fall on; later imports apply
//! it to their rows as they stream by ([`ServiceMappings`]). Deleting a mapping leaves the categories it set.

use std::collections::{BTreeMap, HashMap};

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::{Role, TenantAuth};
use crate::error::{AppError, AppResult};
use crate::http::{Json, Page, Pagination, Path, Query, Validator};
use crate::state::AppState;

/// A category of services: built in (the FOCUS 1.2 ServiceCategory values) or the tenant's own.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceCategory {
    pub id: Uuid,
    pub category_name: String,
    /// Built-in categories are shared by every tenant and cannot be changed.
    pub built_in: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateServiceCategory {
    pub category_name: String,
}

/// The service categories the tenant can map services to, built-in ones first.
#[utoipa::path(get, path = "/service-categories", tag = "catalog", params(Pagination),
    responses((status = 200, body = Page<ServiceCategory>)), security(("bearer" = []), ("api_key" = [])))]
pub(super) async fn list_categories(
    State(state): State<AppState>,
    auth: TenantAuth,
    Query(page): Query<Pagination>,
) -> AppResult<Page<ServiceCategory>> {
    let (limit, offset) = page.resolve()?;
    let data = sqlx::query_as!(
        ServiceCategory,
        r#"SELECT id, category_name, tenant_id IS NULL AS "built_in!" FROM service_categories
           WHERE tenant_id IS NULL OR tenant_id = $1
           ORDER BY tenant_id IS NOT NULL, lower(category_name), id LIMIT $2 OFFSET $3"#,
        auth.tenant_id,
        limit,
        offset
    )
    .fetch_all(&state.db)
    .await?;
    let total = sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM service_categories
           WHERE tenant_id IS NULL OR tenant_id = $1"#,
        auth.tenant_id
    )
    .fetch_one(&state.db)
    .await?;
    Ok(Page::new(data, total, (limit, offset)))
}

/// Add a category of the tenant's own. Names are unique case-insensitively, built-ins included.
#[utoipa::path(post, path = "/service-categories", tag = "catalog", request_body = CreateServiceCategory,
    responses((status = 201, body = ServiceCategory), (status = 409, description = "Name taken"), (status = 422)),
    security(("bearer" = []), ("api_key" = [])))]
pub(super) async fn create_category(
    State(state): State<AppState>,
    auth: TenantAuth,
    Json(body): Json<CreateServiceCategory>,
) -> AppResult<(StatusCode, Json<ServiceCategory>)> {
    auth.require(Role::Member)?;
    Validator::new()
        .text("category_name", &body.category_name, 1, 100)
        .finish()?;
    let name = body.category_name.trim();
    if find_category(&state.db, auth.tenant_id, name)
        .await?
        .is_some()
    {
        return Err(AppError::Conflict(format!(
            "a service category named {name:?} already exists"
        )));
    }
    let category = sqlx::query_as!(
        ServiceCategory,
        r#"INSERT INTO service_categories (tenant_id, category_name) VALUES ($1, $2)
           RETURNING id, category_name, false AS "built_in!""#,
        auth.tenant_id,
        name
    )
    .fetch_one(&state.db)
    .await?;
    Ok((StatusCode::CREATED, Json(category)))
}

/// One service category.
#[utoipa::path(get, path = "/service-categories/{id}", tag = "catalog", params(("id" = Uuid, Path)),
    responses((status = 200, body = ServiceCategory), (status = 404)), security(("bearer" = []), ("api_key" = [])))]
pub(super) async fn get_category(
    State(state): State<AppState>,
    auth: TenantAuth,
    Path(id): Path<Uuid>,
) -> AppResult<Json<ServiceCategory>> {
    sqlx::query_as!(
        ServiceCategory,
        r#"SELECT id, category_name, tenant_id IS NULL AS "built_in!" FROM service_categories
           WHERE id = $1 AND (tenant_id IS NULL OR tenant_id = $2)"#,
        id,
        auth.tenant_id
    )
    .fetch_optional(&state.db)
    .await?
    .map(Json)
    .ok_or(AppError::NotFound("service category"))
}

/// The category the tenant sees under this name (case-insensitively): `(id, exact name)`.
async fn find_category(
    db: impl sqlx::PgExecutor<'_>,
    tenant_id: Uuid,
    name: &str,
) -> sqlx::Result<Option<(Uuid, String)>> {
    let row = sqlx::query!(
        "SELECT id, category_name FROM service_categories
         WHERE lower(category_name) = lower($2) AND (tenant_id IS NULL OR tenant_id = $1)
         ORDER BY tenant_id NULLS FIRST LIMIT 1",
        tenant_id,
        name
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| (r.id, r.category_name)))
}

/// A service of a cloud mapped to a category.
#[derive(Debug, Serialize, ToSchema)]
pub struct Service {
    pub id: Uuid,
    /// Compared case-insensitively with the ProviderName of cost records (`AWS`, `Microsoft` ...).
    pub cloud_provider: String,
    /// Matched against the ServiceName of cost records, as is `service_name`.
    pub service_code: String,
    pub service_name: String,
    /// The category's name.
    pub category: String,
    pub category_id: Uuid,
    pub created_at: DateTime<Utc>,
    /// On creation: how many of the tenant's cost records it recategorised.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub records_recategorised: Option<i64>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateService {
    /// e.g. `AWS`
    pub cloud_provider: String,
    /// e.g. `AmazonEC2`
    pub service_code: String,
    /// e.g. `EC2`
    pub service_name: String,
    /// One of the service categories, e.g. `Compute` (case-insensitive).
    pub category: String,
}

/// The tenant's service mappings.
#[utoipa::path(get, path = "/services", tag = "catalog", params(Pagination),
    responses((status = 200, body = Page<Service>)), security(("bearer" = []), ("api_key" = [])))]
pub(super) async fn list_services(
    State(state): State<AppState>,
    auth: TenantAuth,
    Query(page): Query<Pagination>,
) -> AppResult<Page<Service>> {
    let (limit, offset) = page.resolve()?;
    let data = sqlx::query_as!(
        Service,
        r#"SELECT s.id, s.cloud_provider, s.service_code, s.service_name, c.category_name AS category,
                  s.category_id, s.created_at, NULL::bigint AS records_recategorised
           FROM services s JOIN service_categories c ON c.id = s.category_id
           WHERE s.tenant_id = $1
           ORDER BY lower(s.cloud_provider), s.service_code, s.id LIMIT $2 OFFSET $3"#,
        auth.tenant_id,
        limit,
        offset
    )
    .fetch_all(&state.db)
    .await?;
    let total = sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM services WHERE tenant_id = $1"#,
        auth.tenant_id
    )
    .fetch_one(&state.db)
    .await?;
    Ok(Page::new(data, total, (limit, offset)))
}

/// Map a service to a category: the tenant's cost records of the service take the category,
/// now and in later imports, and the service leaves the unmapped services.
#[utoipa::path(post, path = "/services", tag = "catalog", request_body = CreateService,
    responses((status = 201, body = Service), (status = 409, description = "The service is mapped already"),
              (status = 422, description = "Invalid field or unknown category")),
    security(("bearer" = []), ("api_key" = [])))]
pub(super) async fn create_service(
    State(state): State<AppState>,
    auth: TenantAuth,
    Json(body): Json<CreateService>,
) -> AppResult<(StatusCode, Json<Service>)> {
    auth.require(Role::Member)?;
    Validator::new()
        .text("cloud_provider", &body.cloud_provider, 1, 100)
        .text("service_code", &body.service_code, 1, 200)
        .text("service_name", &body.service_name, 1, 200)
        .text("category", &body.category, 1, 100)
        .finish()?;
    let (provider, code, name) = (
        body.cloud_provider.trim(),
        body.service_code.trim(),
        body.service_name.trim(),
    );
    let mut tx = state.db.begin().await?;
    let (category_id, category) = find_category(&mut *tx, auth.tenant_id, body.category.trim())
        .await?
        .ok_or_else(|| {
            AppError::invalid(
                "category",
                "must be one of the service categories (GET /api/v1/service-categories)",
            )
        })?;
    let row = sqlx::query!(
        "INSERT INTO services (id, tenant_id, cloud_provider, service_code, service_name, category_id)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id, created_at",
        Uuid::new_v4(),
        auth.tenant_id,
        provider,
        code,
        name,
        category_id
    )
    .fetch_one(&mut *tx)
    .await
    .map_err(|err| match AppError::from(err) {
        AppError::Conflict(_) => AppError::Conflict(format!(
            "service {code:?} of {provider:?} is mapped already; delete that mapping first"
        )),
        other => other,
    })?;
    let recategorised =
        recategorise(&mut tx, auth.tenant_id, provider, &[code, name], &category).await?;
    sqlx::query!(
        "DELETE FROM unmapped_services
         WHERE tenant_id = $1 AND lower(provider_name) = lower($2) AND service_name IN ($3, $4)",
        auth.tenant_id,
        provider,
        code,
        name
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(Service {
            id: row.id,
            cloud_provider: provider.to_string(),
            service_code: code.to_string(),
            service_name: name.to_string(),
            category,
            category_id,
            created_at: row.created_at,
            records_recategorised: Some(recategorised),
        }),
    ))
}

/// Sets the category of the tenant's cost records of a service, and recomputes the daily rollup
/// of the days they fall on. Returns how many records changed.
async fn recategorise(
    tx: &mut sqlx::PgConnection,
    tenant_id: Uuid,
    provider: &str,
    service_names: &[&str],
    category: &str,
) -> sqlx::Result<i64> {
    let names: Vec<String> = service_names.iter().map(|s| s.to_string()).collect();
    let changed = sqlx::query!(
        r#"WITH changed AS (
               UPDATE cost_records SET service_category = $4
               WHERE tenant_id = $1 AND lower(provider_name) = lower($2)
                 AND service_name = ANY($3) AND service_category IS DISTINCT FROM $4
               RETURNING charge_period_start
           )
           SELECT count(*) AS "n!", min(charge_period_start) AS start, max(charge_period_start) AS "end"
           FROM changed"#,
        tenant_id,
        provider,
        &names,
        category
    )
    .fetch_one(&mut *tx)
    .await?;
    if let (Some(start), Some(end)) = (changed.start, changed.end) {
        crate::billing::rollup::recompute(&mut *tx, tenant_id, start, end).await?;
    }
    Ok(changed.n)
}

/// One service mapping.
#[utoipa::path(get, path = "/services/{id}", tag = "catalog", params(("id" = Uuid, Path)),
    responses((status = 200, body = Service), (status = 404)), security(("bearer" = []), ("api_key" = [])))]
pub(super) async fn get_service(
    State(state): State<AppState>,
    auth: TenantAuth,
    Path(id): Path<Uuid>,
) -> AppResult<Json<Service>> {
    sqlx::query_as!(
        Service,
        r#"SELECT s.id, s.cloud_provider, s.service_code, s.service_name, c.category_name AS category,
                  s.category_id, s.created_at, NULL::bigint AS records_recategorised
           FROM services s JOIN service_categories c ON c.id = s.category_id
           WHERE s.id = $1 AND s.tenant_id = $2"#,
        id,
        auth.tenant_id
    )
    .fetch_optional(&state.db)
    .await?
    .map(Json)
    .ok_or(AppError::NotFound("service"))
}

/// Delete a service mapping. The categories it gave to cost records stay.
#[utoipa::path(delete, path = "/services/{id}", tag = "catalog", params(("id" = Uuid, Path)),
    responses((status = 204), (status = 404)), security(("bearer" = []), ("api_key" = [])))]
pub(super) async fn delete_service(
    State(state): State<AppState>,
    auth: TenantAuth,
    Path(id): Path<Uuid>,
) -> AppResult<StatusCode> {
    auth.require(Role::Member)?;
    let deleted = sqlx::query!(
        "DELETE FROM services WHERE id = $1 AND tenant_id = $2",
        id,
        auth.tenant_id
    )
    .execute(&state.db)
    .await?
    .rows_affected();
    crate::http::deleted(deleted, "service")
}

/// A service a billing import saw whose charges have no category (none, empty or `Other`) and
/// that the tenant has not mapped.
#[derive(Debug, Serialize, ToSchema)]
pub struct UnmappedService {
    pub id: Uuid,
    pub provider_name: String,
    pub service_name: String,
    /// When an import first saw it (since it was last deleted).
    pub first_seen: DateTime<Utc>,
    /// When an import last saw it.
    pub last_seen: DateTime<Utc>,
    pub last_import_id: Option<Uuid>,
    /// Its records without a category in the last import that saw it.
    pub record_count: i64,
    /// Their billed cost by currency, as decimal strings: `{"USD": "12.34"}`.
    pub billed_cost: Value,
}

/// Services seen in billing imports with no category, most recently seen first.
#[utoipa::path(get, path = "/unmapped-services", tag = "catalog", params(Pagination),
    responses((status = 200, body = Page<UnmappedService>)), security(("bearer" = []), ("api_key" = [])))]
pub(super) async fn list_unmapped(
    State(state): State<AppState>,
    auth: TenantAuth,
    Query(page): Query<Pagination>,
) -> AppResult<Page<UnmappedService>> {
    let (limit, offset) = page.resolve()?;
    let data = sqlx::query_as!(
        UnmappedService,
        "SELECT id, provider_name, service_name, first_seen, last_seen, last_import_id,
                record_count, billed_cost
         FROM unmapped_services WHERE tenant_id = $1
         ORDER BY last_seen DESC, provider_name, service_name, id LIMIT $2 OFFSET $3",
        auth.tenant_id,
        limit,
        offset
    )
    .fetch_all(&state.db)
    .await?;
    let total = sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM unmapped_services WHERE tenant_id = $1"#,
        auth.tenant_id
    )
    .fetch_one(&state.db)
    .await?;
    Ok(Page::new(data, total, (limit, offset)))
}

/// Dismiss an unmapped service. It comes back if a later import sees it again.
#[utoipa::path(delete, path = "/unmapped-services/{id}", tag = "catalog", params(("id" = Uuid, Path)),
    responses((status = 204), (status = 404)), security(("bearer" = []), ("api_key" = [])))]
pub(super) async fn delete_unmapped(
    State(state): State<AppState>,
    auth: TenantAuth,
    Path(id): Path<Uuid>,
) -> AppResult<StatusCode> {
    auth.require(Role::Member)?;
    let deleted = sqlx::query!(
        "DELETE FROM unmapped_services WHERE id = $1 AND tenant_id = $2",
        id,
        auth.tenant_id
    )
    .execute(&state.db)
    .await?
    .rows_affected();
    crate::http::deleted(deleted, "unmapped service")
}

/// A tenant's service mappings, as an import applies them to its rows while they stream by:
/// by lowercased provider, then by service code and by service name.
#[derive(Default)]
pub struct ServiceMappings(HashMap<String, HashMap<String, String>>);

impl ServiceMappings {
    pub async fn load(conn: &mut sqlx::PgConnection, tenant_id: Uuid) -> sqlx::Result<Self> {
        let rows = sqlx::query!(
            "SELECT s.cloud_provider, s.service_code, s.service_name, c.category_name
             FROM services s JOIN service_categories c ON c.id = s.category_id
             WHERE s.tenant_id = $1",
            tenant_id
        )
        .fetch_all(&mut *conn)
        .await?;
        let mut mappings = Self::default();
        for row in rows {
            let services = mappings
                .0
                .entry(row.cloud_provider.to_lowercase())
                .or_default();
            services.insert(row.service_code, row.category_name.clone());
            services.insert(row.service_name, row.category_name);
        }
        Ok(mappings)
    }

    /// The category the tenant maps this provider's service to.
    pub fn category(&self, provider: &str, service: &str) -> Option<&str> {
        if self.0.is_empty() {
            return None;
        }
        self.0
            .get(&provider.to_lowercase())?
            .get(service)
            .map(String::as_str)
    }
}

/// The services an import loaded with no category (none, empty or `Other`) and no mapping:
/// per provider and service, records and billed cost per currency. Counted while rows stream.
#[derive(Default)]
pub struct UnmappedSeen(HashMap<String, HashMap<String, PerCurrency>>);

/// Records and billed cost, by currency.
type PerCurrency = BTreeMap<String, (i64, Decimal)>;

impl UnmappedSeen {
    pub fn add(&mut self, provider: &str, service: &str, currency: &str, billed: Decimal) {
        if !self.0.contains_key(provider) {
            self.0.insert(provider.to_string(), HashMap::new());
        }
        let services = self.0.get_mut(provider).expect("inserted above");
        if !services.contains_key(service) {
            services.insert(service.to_string(), BTreeMap::new());
        }
        let currencies = services.get_mut(service).expect("inserted above");
        let (records, cost) = currencies.entry(currency.to_string()).or_default();
        *records += 1;
        // A cost beyond exact decimals keeps the largest sum it had.
        *cost = cost.checked_add(billed).unwrap_or(*cost);
    }
}

/// Run by a billing import in its transaction: records what [`UnmappedSeen`] counted, with
/// the record count and billed cost per currency in this import.
pub async fn record_unmapped(
    conn: &mut sqlx::PgConnection,
    tenant_id: Uuid,
    import_id: Uuid,
    seen: &UnmappedSeen,
) -> sqlx::Result<()> {
    let (mut providers, mut services, mut counts, mut costs) = (vec![], vec![], vec![], vec![]);
    for (provider, by_service) in &seen.0 {
        for (service, currencies) in by_service {
            providers.push(provider.clone());
            services.push(service.clone());
            counts.push(currencies.values().map(|(n, _)| n).sum::<i64>());
            costs.push(Value::Object(
                currencies
                    .iter()
                    .map(|(currency, (_, cost))| {
                        (currency.clone(), Value::String(cost.to_string()))
                    })
                    .collect(),
            ));
        }
    }
    sqlx::query!(
        r#"INSERT INTO unmapped_services (tenant_id, provider_name, service_name, last_import_id,
                                          record_count, billed_cost)
           SELECT $1, p, s, $2, n, c FROM UNNEST($3::text[], $4::text[], $5::int8[], $6::jsonb[]) AS t (p, s, n, c)
           ON CONFLICT (tenant_id, provider_name, service_name) DO UPDATE
           SET last_seen = now(), last_import_id = EXCLUDED.last_import_id,
               record_count = EXCLUDED.record_count, billed_cost = EXCLUDED.billed_cost"#,
        tenant_id,
        import_id,
        &providers,
        &services,
        &counts,
        &costs
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}
