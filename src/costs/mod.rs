//! Cost views: seed 000's `/costs` (the records, filtered and paged), `/costs/summary` and
//! `/costs/by-date`, and seed 002's breakdown on `/costs` (`granularity`, `group_by`) with its
//! summary. Sums come from the daily rollup; amounts are brought into one currency by
//! [`Money`], which says what it converted and what it left out.

pub mod queries;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use chrono::{NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::TenantAuth;
use crate::billing::currency::{CurrencyNote, Money};
use crate::billing::records::{CostRecord, day_bounds, select_cost_records, with_usd};
use crate::billing::round;
use crate::error::AppResult;
use crate::http::{Json, Pagination, Params, Validator};
use crate::state::AppState;
use queries::{CostType, Filters, Granularity, Window};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_costs))
        .routes(routes!(cost_summary))
        .routes(routes!(costs_by_date))
}

/// How the per-period breakdown groups each period's cost besides by category.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CostGrouping {
    /// Also `resourceGroup` (camelCase).
    #[serde(alias = "resourceGroup")]
    ResourceGroup,
    Service,
    Location,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CostsQuery {
    /// First day (UTC), e.g. `2026-01-01`.
    pub start_date: Option<NaiveDate>,
    /// Last day (UTC), inclusive.
    pub end_date: Option<NaiveDate>,
    pub workspace_id: Option<String>,
    pub sku_name: Option<String>,
    pub user_email: Option<String>,
    /// Only charges of this sub-account (an Azure subscription, an AWS account, a Google Cloud
    /// project: FOCUS SubAccountId); also spelt `subscriptionId`.
    pub subscription_id: Option<String>,
    /// `daily`, `weekly` or `monthly`: with it or `group_by`, the answer adds the per-period
    /// breakdown (`costs`) and its `summary`.
    pub granularity: Option<Granularity>,
    pub group_by: Option<CostGrouping>,
    /// The currency of the breakdown (default: the base of the rate table, else the currency of
    /// most of the charges).
    pub currency: Option<String>,
    /// The cost the breakdown sums: `billed` (the default), `effective`, `list` or `contracted`.
    pub cost_type: Option<CostType>,
    /// Rows per page, 1 to 1000 (default 100).
    pub limit: Option<i64>,
    /// Rows to skip (default 0).
    pub offset: Option<i64>,
    /// Alias of `offset`.
    pub skip: Option<i64>,
}

/// One period of the per-period breakdown.
#[derive(Debug, Serialize, ToSchema)]
pub struct CostPeriod {
    /// The period's first day.
    pub date: NaiveDate,
    pub total_cost: f64,
    pub currency: String,
    /// By service category, lowercased (`compute`, `storage`, ...; `uncategorized`).
    pub breakdown: std::collections::BTreeMap<String, f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by_resource_group: Option<std::collections::BTreeMap<String, f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by_service: Option<std::collections::BTreeMap<String, f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by_location: Option<std::collections::BTreeMap<String, f64>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TrendSummary {
    pub total_cost: f64,
    pub avg_daily_cost: f64,
    /// `increasing`, `decreasing` or `stable` (within 5%) against the period before.
    pub trend: String,
    /// Change against the period of the same length just before; null when it cost nothing.
    pub change_percent: Option<f64>,
    pub previous_period_cost: f64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CostList {
    pub data: Vec<CostRecord>,
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub granularity: Option<Granularity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub costs: Option<Vec<CostPeriod>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<TrendSummary>,
    /// The breakdown's currency, with the rates used and the amounts left out.
    #[serde(flatten)]
    pub currency: Option<CurrencyNote>,
}

impl IntoResponse for CostList {
    fn into_response(self) -> Response {
        let total = self.total;
        crate::http::json_with_total(self, total)
    }
}

/// Cost records, newest first, with the Databricks and sub-account filters; with `granularity`
/// or `group_by`, also the per-period breakdown and summary over the same days and filters (the last 30
/// days when no dates are given).
#[utoipa::path(get, path = "/costs", tag = "costs", params(CostsQuery),
    responses((status = 200, body = CostList), (status = 422)),
    security(("bearer" = []), ("api_key" = [])))]
async fn list_costs(
    State(state): State<AppState>,
    auth: TenantAuth,
    query: Params<CostsQuery>,
) -> AppResult<CostList> {
    let query = query.for_tenant(auth.tenant_id)?;
    let (limit, offset) = Pagination::of(query.limit, query.offset, query.skip)?;
    let (from, until) = day_bounds(query.start_date, query.end_date)?;
    let filters = Filters {
        workspace_id: query.workspace_id.clone(),
        sku_name: query.sku_name.clone(),
        user_email: query.user_email.clone(),
        sub_account_id: query.subscription_id.clone(),
        cost_type: query.cost_type.unwrap_or_default(),
    };
    let db = &state.db;
    let records = select_cost_records!(
        "WHERE tenant_id = $1 AND charge_period_start >= $2 AND charge_period_start < $3
           AND ($4::text IS NULL OR workspace_id = $4) AND ($5::text IS NULL OR sku_name = $5)
           AND ($6::text IS NULL OR user_email = $6) AND ($9::text IS NULL OR sub_account_id = $9)
         ORDER BY charge_period_start DESC, id DESC LIMIT $7 OFFSET $8",
        auth.tenant_id,
        from,
        until,
        filters.workspace_id,
        filters.sku_name,
        filters.user_email,
        limit,
        offset,
        filters.sub_account_id
    )
    .fetch_all(db)
    .await?;
    // Counted from the rollup (every filter but the sub-account is one of its dimensions).
    let total = queries::count(
        db,
        auth.tenant_id,
        query.start_date,
        query.end_date,
        &filters,
    )
    .await?;
    let mut usd = Money::load(db, auth.tenant_id, Some("USD")).await?;
    let data = with_usd(records, &mut usd);

    let mut list = CostList {
        data,
        total,
        limit,
        offset,
        granularity: None,
        costs: None,
        summary: None,
        currency: None,
    };
    if query.granularity.is_some() || query.group_by.is_some() {
        let today = Utc::now().date_naive();
        let end = query.end_date.unwrap_or(today);
        let start = query
            .start_date
            .unwrap_or_else(|| end - chrono::Days::new(29));
        let window = Window::new(start, end);
        let granularity = query.granularity.unwrap_or(Granularity::Daily);
        let mut money = Money::load(db, auth.tenant_id, query.currency.as_deref()).await?;
        let costs = breakdown(
            &state,
            &auth,
            &window,
            granularity,
            query.group_by,
            &filters,
            &mut money,
        )
        .await?;
        let total_cost: f64 = costs.iter().map(|c| c.total_cost).sum();
        let previous = queries::totals(db, auth.tenant_id, &window.previous(), &filters).await?;
        let previous_cost = previous.fold(&mut money).cost;
        list.granularity = Some(granularity);
        list.costs = Some(costs);
        list.summary = Some(trend_summary(total_cost, previous_cost, window.days()));
        list.currency = Some(money.note());
    }
    Ok(list)
}

async fn breakdown(
    state: &AppState,
    auth: &TenantAuth,
    window: &Window,
    granularity: Granularity,
    group_by: Option<CostGrouping>,
    filters: &Filters,
    money: &mut Money,
) -> AppResult<Vec<CostPeriod>> {
    let rows = queries::by_period_category_and_group(
        &state.db,
        auth.tenant_id,
        window,
        granularity,
        group_by,
        filters,
    )
    .await?;
    money.default_to(rows.iter().map(|r| (r.currency.as_str(), r.records)));
    let mut periods = std::collections::BTreeMap::<NaiveDate, CostPeriod>::new();
    for row in rows {
        let Some(cost) = money.convert(&row.currency, row.cost) else {
            continue;
        };
        let period = periods.entry(row.period).or_insert_with(|| CostPeriod {
            date: row.period,
            total_cost: 0.0,
            currency: money.currency().to_string(),
            breakdown: Default::default(),
            by_resource_group: None,
            by_service: None,
            by_location: None,
        });
        period.total_cost += cost;
        let category = match row.category.as_str() {
            "" => "uncategorized".to_string(),
            other => other.to_lowercase(),
        };
        *period.breakdown.entry(category).or_default() += cost;
        if let Some(grouping) = group_by {
            let groups = match grouping {
                CostGrouping::ResourceGroup => &mut period.by_resource_group,
                CostGrouping::Service => &mut period.by_service,
                CostGrouping::Location => &mut period.by_location,
            };
            let key = if row.group.is_empty() {
                "unassigned".to_string()
            } else {
                row.group
            };
            *groups
                .get_or_insert_with(Default::default)
                .entry(key)
                .or_default() += cost;
        }
    }
    Ok(periods
        .into_values()
        .map(|mut p| {
            p.total_cost = round(p.total_cost);
            for map in [
                Some(&mut p.breakdown),
                p.by_resource_group.as_mut(),
                p.by_service.as_mut(),
                p.by_location.as_mut(),
            ]
            .into_iter()
            .flatten()
            {
                map.values_mut().for_each(|v| *v = round(*v));
            }
            p
        })
        .collect())
}

/// The change against the period before, and its direction (5% either way is stable).
pub fn trend_summary(total: f64, previous: f64, days: i64) -> TrendSummary {
    let change = change_percent(total, previous);
    let trend = match change {
        Some(c) if c > 5.0 => "increasing",
        Some(c) if c < -5.0 => "decreasing",
        None if total > 0.0 => "increasing",
        _ => "stable",
    };
    TrendSummary {
        total_cost: round(total),
        avg_daily_cost: round(total / days.max(1) as f64),
        trend: trend.to_string(),
        change_percent: change,
        previous_period_cost: round(previous),
    }
}

/// `total` against `previous`, in percent to two places; `None` when `previous` is nothing.
pub fn change_percent(total: f64, previous: f64) -> Option<f64> {
    (previous != 0.0).then(|| ((total - previous) / previous * 10_000.0).round() / 100.0)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PeriodQuery {
    /// The last `days` days, today included (1 to 365, default 30).
    pub days: Option<i64>,
    /// Instead of `days`: the first day (UTC, `YYYY-MM-DD`; default 30 days before `end_date`).
    pub start_date: Option<NaiveDate>,
    /// Instead of `days`: the last day, included (default today).
    pub end_date: Option<NaiveDate>,
    pub workspace_id: Option<String>,
    /// The currency of the answer (default: the base of the rate table, else the currency of
    /// most of the charges).
    pub currency: Option<String>,
    /// The cost summed: `billed` (the default), `effective`, `list` or `contracted`.
    pub cost_type: Option<CostType>,
}

/// The days a view covers: the last `days` days (1 to 365, default 30), or `start_date` to
/// `end_date` (either may be left out: a 30-day period ending today or at `end_date`). Giving
/// both is a 422, rather than one of them silently winning.
pub fn period_window(
    days: Option<i64>,
    start: Option<NaiveDate>,
    end: Option<NaiveDate>,
) -> AppResult<Window> {
    let mut v = Validator::new();
    if start.is_none() && end.is_none() {
        return Ok(Window::last_days(period_days(days)?));
    }
    if days.is_some() {
        v.error(
            "days",
            "give either days or start_date and end_date, not both",
        );
        return Err(v.finish().unwrap_err());
    }
    let end = end.unwrap_or_else(|| Utc::now().date_naive());
    let start = start.unwrap_or_else(|| end - chrono::Days::new(29));
    v.check(start <= end, "start_date", "must not be after end_date");
    v.check(
        (end - start).num_days() < MAX_PERIOD_DAYS,
        "start_date",
        format!("a period is at most {MAX_PERIOD_DAYS} days"),
    );
    v.finish()?;
    Ok(Window::new(start, end))
}

/// Longest period a view sums over.
const MAX_PERIOD_DAYS: i64 = 3660;

/// `days`, checked: 1 to 365, default 30.
pub fn period_days(days: Option<i64>) -> AppResult<i64> {
    let days = days.unwrap_or(30);
    let mut v = Validator::new();
    v.check(
        (1..=365).contains(&days),
        "days",
        "must be between 1 and 365",
    );
    v.finish()?;
    Ok(days)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CostSummary {
    pub period_days: i64,
    pub total_cost: f64,
    pub total_dbu: f64,
    pub avg_daily_cost: f64,
    pub avg_cost_per_record: f64,
    pub total_records: i64,
    /// The first and last days with charges in the period.
    pub earliest_date: Option<NaiveDate>,
    pub latest_date: Option<NaiveDate>,
    #[serde(flatten)]
    pub currency: CurrencyNote,
}

/// The period's cost, DBUs and records.
#[utoipa::path(get, path = "/costs/summary", tag = "costs", params(PeriodQuery),
    responses((status = 200, body = CostSummary), (status = 422)),
    security(("bearer" = []), ("api_key" = [])))]
async fn cost_summary(
    State(state): State<AppState>,
    auth: TenantAuth,
    query: Params<PeriodQuery>,
) -> AppResult<Json<CostSummary>> {
    let query = query.for_tenant(auth.tenant_id)?;
    let window = period_window(query.days, query.start_date, query.end_date)?;
    let days = window.days();
    let filters = Filters::workspace(query.workspace_id, query.cost_type);
    let mut money = Money::load(&state.db, auth.tenant_id, query.currency.as_deref()).await?;
    let totals = queries::totals(&state.db, auth.tenant_id, &window, &filters).await?;
    let (earliest, latest) = (totals.earliest, totals.latest);
    let sum = totals.fold(&mut money);
    Ok(Json(CostSummary {
        period_days: days,
        total_cost: round(sum.cost),
        total_dbu: round(sum.dbu),
        avg_daily_cost: round(sum.cost / days as f64),
        avg_cost_per_record: if sum.records > 0 {
            round(sum.cost / sum.records as f64)
        } else {
            0.0
        },
        total_records: sum.records,
        earliest_date: earliest,
        latest_date: latest,
        currency: money.note(),
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DayCost {
    pub date: NaiveDate,
    pub cost: f64,
    pub dbu: f64,
    pub records: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CostsByDate {
    pub period_days: i64,
    /// Days with charges, oldest first.
    pub data: Vec<DayCost>,
    #[serde(flatten)]
    pub currency: CurrencyNote,
}

/// Cost and DBUs per day.
#[utoipa::path(get, path = "/costs/by-date", tag = "costs", params(PeriodQuery),
    responses((status = 200, body = CostsByDate), (status = 422)),
    security(("bearer" = []), ("api_key" = [])))]
async fn costs_by_date(
    State(state): State<AppState>,
    auth: TenantAuth,
    query: Params<PeriodQuery>,
) -> AppResult<Json<CostsByDate>> {
    let query = query.for_tenant(auth.tenant_id)?;
    let window = period_window(query.days, query.start_date, query.end_date)?;
    let days = window.days();
    let filters = Filters::workspace(query.workspace_id, query.cost_type);
    let mut money = Money::load(&state.db, auth.tenant_id, query.currency.as_deref()).await?;
    let series = queries::series(
        &state.db,
        auth.tenant_id,
        &window,
        Granularity::Daily,
        &filters,
    )
    .await?;
    let data = series
        .fold(&mut money)
        .into_iter()
        .map(|(date, sum)| DayCost {
            date,
            cost: round(sum.cost),
            dbu: round(sum.dbu),
            records: sum.records,
        })
        .collect();
    Ok(Json(CostsByDate {
        period_days: days,
        data,
        currency: money.note(),
    }))
}
