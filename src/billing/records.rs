//! Cost records one by one: `GET /billing` and `GET /billing/{id}` (seed 003's billing lines),
//! and the record shape `GET /costs` lists too (seed 000's fields beside FOCUS's).

use axum::extract::State;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::TenantAuth;
use crate::error::{AppError, AppResult};
use crate::http::{Json, Page, Pagination, Params, Path, Validator};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_billing))
        .routes(routes!(get_billing))
}

/// One charge, with FOCUS's columns (snake_case) and the Databricks cost views' names for the
/// same facts.
#[derive(Debug, Serialize, ToSchema)]
pub struct CostRecord {
    pub id: i64,
    /// When the charge began (FOCUS ChargePeriodStart, named `usage_date`).
    pub usage_date: DateTime<Utc>,
    pub charge_period_end: Option<DateTime<Utc>>,
    /// The provider (FOCUS ProviderName, named `cloud`).
    pub cloud: Option<String>,
    /// BilledCost, in `currency`.
    pub cost: f64,
    pub currency: String,
    /// The cost in USD: as billed, or converted with the tenant's rate table; null without a
    /// rate.
    pub cost_usd: Option<f64>,
    pub effective_cost: Option<f64>,
    pub list_cost: Option<f64>,
    pub charge_category: Option<String>,
    pub charge_description: Option<String>,
    pub billing_account_id: Option<String>,
    pub sub_account_id: Option<String>,
    pub billing_period_start: Option<DateTime<Utc>>,
    pub service_name: Option<String>,
    pub service_category: Option<String>,
    pub region_id: Option<String>,
    pub resource_id: Option<String>,
    pub resource_name: Option<String>,
    pub resource_type: Option<String>,
    pub resource_group: Option<String>,
    pub sku_id: Option<String>,
    pub pricing_quantity: Option<f64>,
    pub pricing_unit: Option<String>,
    pub tags: Option<Value>,
    pub workspace_id: Option<String>,
    pub sku_name: Option<String>,
    pub dbu_count: Option<f64>,
    pub dbu_rate: Option<f64>,
    pub cluster_id: Option<String>,
    pub job_id: Option<String>,
    pub user_email: Option<String>,
    // The rest of FOCUS 1.2, by its column names in snake_case.
    pub contracted_cost: Option<f64>,
    pub charge_class: Option<String>,
    pub charge_frequency: Option<String>,
    pub billing_account_name: Option<String>,
    pub billing_account_type: Option<String>,
    pub billing_period_end: Option<DateTime<Utc>>,
    pub sub_account_name: Option<String>,
    pub sub_account_type: Option<String>,
    pub publisher_name: Option<String>,
    pub invoice_issuer_name: Option<String>,
    pub invoice_id: Option<String>,
    pub region_name: Option<String>,
    pub availability_zone: Option<String>,
    pub service_subcategory: Option<String>,
    pub consumed_quantity: Option<f64>,
    pub consumed_unit: Option<String>,
    pub pricing_category: Option<String>,
    pub list_unit_price: Option<f64>,
    pub contracted_unit_price: Option<f64>,
    pub pricing_currency: Option<String>,
    pub pricing_currency_list_unit_price: Option<f64>,
    pub pricing_currency_contracted_unit_price: Option<f64>,
    pub pricing_currency_effective_cost: Option<f64>,
    pub sku_price_id: Option<String>,
    pub sku_meter: Option<String>,
    pub sku_price_details: Option<Value>,
    pub capacity_reservation_id: Option<String>,
    pub capacity_reservation_status: Option<String>,
    pub commitment_discount_category: Option<String>,
    pub commitment_discount_id: Option<String>,
    pub commitment_discount_name: Option<String>,
    pub commitment_discount_quantity: Option<f64>,
    pub commitment_discount_status: Option<String>,
    pub commitment_discount_type: Option<String>,
    pub commitment_discount_unit: Option<String>,
    /// The export's own `x_` columns, by name.
    pub extensions: Option<Value>,
    /// The Strata resource the charge belongs to.
    pub strata_resource_id: Option<Uuid>,
    pub provider_id: Option<Uuid>,
    /// The import that loaded it; null for cost accrued by Strata's own resources.
    pub import_id: Option<Uuid>,
}

/// Fills in `cost_usd` from the tenant's rate table.
pub fn with_usd(mut records: Vec<CostRecord>, usd: &mut super::currency::Money) -> Vec<CostRecord> {
    for record in &mut records {
        record.cost_usd = usd.convert(&record.currency, record.cost).map(super::round);
    }
    records
}

/// `sqlx::query_as!` of [`CostRecord`]s (with `cost_usd` filled in later): `FROM cost_records`
/// and then the rest of the statement, with its arguments.
macro_rules! select_cost_records {
    ($rest:tt, $($arg:expr),* $(,)?) => {
        sqlx::query_as!(
            $crate::billing::records::CostRecord,
            r#"SELECT id, charge_period_start AS usage_date, charge_period_end,
                      provider_name AS cloud, billed_cost::float8 AS "cost!",
                      billing_currency AS currency, NULL::float8 AS cost_usd,
                      effective_cost::float8 AS effective_cost, list_cost::float8 AS list_cost,
                      charge_category, charge_description, billing_account_id, sub_account_id,
                      billing_period_start, service_name, service_category, region_id,
                      resource_id, resource_name, resource_type, resource_group, sku_id,
                      pricing_quantity::float8 AS pricing_quantity, pricing_unit, tags,
                      workspace_id, sku_name, dbu_count::float8 AS dbu_count,
                      dbu_rate::float8 AS dbu_rate, cluster_id, job_id, user_email,
                      contracted_cost::float8 AS contracted_cost, charge_class, charge_frequency,
                      billing_account_name, billing_account_type, billing_period_end,
                      sub_account_name, sub_account_type, publisher_name, invoice_issuer_name,
                      invoice_id, region_name, availability_zone, service_subcategory,
                      consumed_quantity::float8 AS consumed_quantity, consumed_unit,
                      pricing_category, list_unit_price::float8 AS list_unit_price,
                      contracted_unit_price::float8 AS contracted_unit_price, pricing_currency,
                      pricing_currency_list_unit_price::float8 AS pricing_currency_list_unit_price,
                      pricing_currency_contracted_unit_price::float8 AS pricing_currency_contracted_unit_price,
                      pricing_currency_effective_cost::float8 AS pricing_currency_effective_cost,
                      sku_price_id, sku_meter, sku_price_details, capacity_reservation_id,
                      capacity_reservation_status, commitment_discount_category,
                      commitment_discount_id, commitment_discount_name,
                      commitment_discount_quantity::float8 AS commitment_discount_quantity,
                      commitment_discount_status, commitment_discount_type,
                      commitment_discount_unit, extensions,
                      resource_ref AS strata_resource_id, provider_id, import_id
               FROM cost_records "# + $rest,
            $($arg),*
        )
    };
}
pub(crate) use select_cost_records;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BillingQuery {
    /// A provider's id, or a billing or sub-account id as the export names it.
    pub account_id: Option<String>,
    /// First day (UTC) of the charges.
    pub start_date: Option<NaiveDate>,
    /// Last day (UTC), inclusive.
    pub end_date: Option<NaiveDate>,
    /// Rows per page, 1 to 1000 (default 100).
    pub limit: Option<i64>,
    /// Rows to skip (default 0).
    pub offset: Option<i64>,
    /// Alias of `offset`.
    pub skip: Option<i64>,
}

/// Billing lines: cost records, newest first, by account and date.
#[utoipa::path(get, path = "/billing", tag = "billing", params(BillingQuery),
    responses((status = 200, body = Page<CostRecord>), (status = 422)),
    security(("bearer" = []), ("api_key" = [])))]
async fn list_billing(
    State(state): State<AppState>,
    auth: TenantAuth,
    query: Params<BillingQuery>,
) -> AppResult<Page<CostRecord>> {
    let query = query.for_tenant(auth.tenant_id)?;
    let (limit, offset) = Pagination::of(query.limit, query.offset, query.skip)?;
    let (from, until) = day_bounds(query.start_date, query.end_date)?;
    let account = query.account_id.as_deref();
    let provider = account.and_then(|a| a.parse::<Uuid>().ok());
    let records = select_cost_records!(
        "WHERE tenant_id = $1 AND charge_period_start >= $2 AND charge_period_start < $3
           AND ($4::text IS NULL OR provider_id = $5 OR billing_account_id = $4 OR sub_account_id = $4)
         ORDER BY charge_period_start DESC, id DESC LIMIT $6 OFFSET $7",
        auth.tenant_id,
        from,
        until,
        account,
        provider,
        limit,
        offset
    )
    .fetch_all(&state.db)
    .await?;
    let total = match account {
        // The rollup counts by day; an account filter needs the records.
        None => {
            crate::costs::queries::count(
                &state.db,
                auth.tenant_id,
                query.start_date,
                query.end_date,
                &Default::default(),
            )
            .await?
        }
        Some(_) => {
            sqlx::query_scalar!(
                r#"SELECT count(*) AS "n!" FROM cost_records
                   WHERE tenant_id = $1 AND charge_period_start >= $2 AND charge_period_start < $3
                     AND (provider_id = $5 OR billing_account_id = $4 OR sub_account_id = $4)"#,
                auth.tenant_id,
                from,
                until,
                account,
                provider
            )
            .fetch_one(&state.db)
            .await?
        }
    };
    let mut usd = super::currency::Money::load(&state.db, auth.tenant_id, Some("USD")).await?;
    Ok(Page::new(
        with_usd(records, &mut usd),
        total,
        (limit, offset),
    ))
}

/// One billing line (cost record).
#[utoipa::path(get, path = "/billing/{id}", tag = "billing",
    params(("id" = i64, Path, description = "The record's id")),
    responses((status = 200, body = CostRecord), (status = 404)),
    security(("bearer" = []), ("api_key" = [])))]
async fn get_billing(
    State(state): State<AppState>,
    auth: TenantAuth,
    Path(id): Path<i64>,
) -> AppResult<Json<CostRecord>> {
    let record = select_cost_records!("WHERE tenant_id = $1 AND id = $2", auth.tenant_id, id)
        .fetch_optional(&state.db)
        .await?
        .ok_or(AppError::NotFound("cost record"))?;
    let mut usd = super::currency::Money::load(&state.db, auth.tenant_id, Some("USD")).await?;
    let mut records = with_usd(vec![record], &mut usd);
    Ok(Json(records.remove(0)))
}

/// The times of `start`'s first instant and the instant after `end` (UTC), for half-open
/// ranges over charge times; unbounded where not given.
pub fn day_bounds(
    start: Option<NaiveDate>,
    end: Option<NaiveDate>,
) -> AppResult<(DateTime<Utc>, DateTime<Utc>)> {
    let mut v = Validator::new();
    if let (Some(start), Some(end)) = (start, end) {
        v.check(start <= end, "start_date", "must not be after end_date");
    }
    v.finish()?;
    let midnight = |d: NaiveDate| d.and_hms_opt(0, 0, 0).map(|t| t.and_utc());
    // Postgres' range ends (4713 BC, 294276 AD) sit well outside these.
    let far_past = DateTime::from_timestamp(-62_135_596_800, 0).unwrap_or_default();
    let far_future = DateTime::from_timestamp(253_402_300_799, 0).unwrap_or_default();
    Ok((
        start.and_then(midnight).unwrap_or(far_past),
        end.and_then(|e| e.succ_opt())
            .and_then(midnight)
            .unwrap_or(far_future),
    ))
}
