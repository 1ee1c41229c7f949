//! Seed 000's cost dashboard: the period against the one before, the cost trend, and the
//! rankings by Databricks workspace, SKU, user and job. All from the daily rollup.

use axum::extract::State;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::TenantAuth;
use crate::billing::currency::{CurrencyNote, Money};
use crate::billing::round;
use crate::costs::queries::{self, CostType, Dimension, Filters, Granularity};
use crate::costs::{change_percent, period_window};
use crate::error::AppResult;
use crate::http::{Json, Params, Validator};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(overview))
        .routes(routes!(cost_trend))
        .routes(routes!(cost_by_workspace))
        .routes(routes!(cost_by_sku))
        .routes(routes!(cost_by_user))
        .routes(routes!(cost_by_job))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OverviewQuery {
    /// The last `days` days, today included (1 to 365, default 30).
    pub days: Option<i64>,
    /// Instead of `days`: the first day (UTC, `YYYY-MM-DD`; default 30 days before `end_date`).
    pub start_date: Option<NaiveDate>,
    /// Instead of `days`: the last day, included (default today).
    pub end_date: Option<NaiveDate>,
    /// The cost summed: `billed` (the default), `effective`, `list` or `contracted`.
    pub cost_type: Option<CostType>,
    /// The currency of the answer (default: the base of the rate table, else the currency of
    /// most of the charges).
    pub currency: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Overview {
    pub period_days: i64,
    pub total_cost: f64,
    pub total_dbu: f64,
    pub record_count: i64,
    /// Against the period of the same length just before; null when that cost nothing.
    pub cost_change_pct: Option<f64>,
    pub prev_period_cost: f64,
    /// Resources Strata manages that exist now, and the vms among them that are running.
    pub active_resources: i64,
    pub running_vms: i64,
    pub providers: i64,
    pub billing_imports: i64,
    /// Databricks workspaces registered.
    pub workspaces: i64,
    #[serde(flatten)]
    pub currency: CurrencyNote,
}

/// The period's cost against the one before, with what the tenant runs.
#[utoipa::path(get, path = "/dashboard/overview", tag = "dashboard", params(OverviewQuery),
    responses((status = 200, body = Overview), (status = 422)),
    security(("bearer" = []), ("api_key" = [])))]
async fn overview(
    State(state): State<AppState>,
    auth: TenantAuth,
    query: Params<OverviewQuery>,
) -> AppResult<Json<Overview>> {
    let query = query.for_tenant(auth.tenant_id)?;
    let window = period_window(query.days, query.start_date, query.end_date)?;
    let days = window.days();
    let db = &state.db;
    let mut money = Money::load(db, auth.tenant_id, query.currency.as_deref()).await?;
    let none = Filters::workspace(None, query.cost_type);
    let now = queries::totals(db, auth.tenant_id, &window, &none)
        .await?
        .fold(&mut money);
    let before = queries::totals(db, auth.tenant_id, &window.previous(), &none)
        .await?
        .fold(&mut money);
    let counts = sqlx::query!(
        r#"SELECT (SELECT count(*) FROM resources WHERE tenant_id = $1 AND status <> 'destroyed') AS "resources!",
                  (SELECT count(*) FROM resources WHERE tenant_id = $1 AND kind = 'vm'
                      AND status = 'active' AND power_state = 'running') AS "running_vms!",
                  (SELECT count(*) FROM providers WHERE tenant_id = $1) AS "providers!",
                  (SELECT count(*) FROM billing_imports WHERE tenant_id = $1) AS "imports!",
                  (SELECT count(*) FROM workspaces WHERE tenant_id = $1) AS "workspaces!""#,
        auth.tenant_id
    )
    .fetch_one(db)
    .await?;
    Ok(Json(Overview {
        period_days: days,
        total_cost: round(now.cost),
        total_dbu: round(now.dbu),
        record_count: now.records,
        cost_change_pct: change_percent(now.cost, before.cost),
        prev_period_cost: round(before.cost),
        active_resources: counts.resources,
        running_vms: counts.running_vms,
        providers: counts.providers,
        billing_imports: counts.imports,
        workspaces: counts.workspaces,
        currency: money.note(),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TrendQuery {
    /// The last `days` days, today included (1 to 365, default 30).
    pub days: Option<i64>,
    /// Instead of `days`: the first day (UTC, `YYYY-MM-DD`; default 30 days before `end_date`).
    pub start_date: Option<NaiveDate>,
    /// Instead of `days`: the last day, included (default today).
    pub end_date: Option<NaiveDate>,
    /// The cost summed: `billed` (the default), `effective`, `list` or `contracted`.
    pub cost_type: Option<CostType>,
    /// `daily` (default), `weekly` (weeks from Monday) or `monthly`.
    pub granularity: Option<Granularity>,
    pub currency: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TrendPoint {
    /// The period's first day.
    pub period: NaiveDate,
    pub cost: f64,
    pub dbu: f64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CostTrend {
    pub granularity: Granularity,
    pub data: Vec<TrendPoint>,
    #[serde(flatten)]
    pub currency: CurrencyNote,
}

/// Cost and DBUs per day, week or month, for charts.
#[utoipa::path(get, path = "/dashboard/cost-trend", tag = "dashboard", params(TrendQuery),
    responses((status = 200, body = CostTrend), (status = 422)),
    security(("bearer" = []), ("api_key" = [])))]
async fn cost_trend(
    State(state): State<AppState>,
    auth: TenantAuth,
    query: Params<TrendQuery>,
) -> AppResult<Json<CostTrend>> {
    let query = query.for_tenant(auth.tenant_id)?;
    let window = period_window(query.days, query.start_date, query.end_date)?;
    let granularity = query.granularity.unwrap_or(Granularity::Daily);
    let mut money = Money::load(&state.db, auth.tenant_id, query.currency.as_deref()).await?;
    let series = queries::series(
        &state.db,
        auth.tenant_id,
        &window,
        granularity,
        &Filters::workspace(None, query.cost_type),
    )
    .await?;
    let data = series
        .fold(&mut money)
        .into_iter()
        .map(|(period, sum)| TrendPoint {
            period,
            cost: round(sum.cost),
            dbu: round(sum.dbu),
        })
        .collect();
    Ok(Json(CostTrend {
        granularity,
        data,
        currency: money.note(),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RankingQuery {
    /// The last `days` days, today included (1 to 365, default 30).
    pub days: Option<i64>,
    /// Instead of `days`: the first day (UTC, `YYYY-MM-DD`; default 30 days before `end_date`).
    pub start_date: Option<NaiveDate>,
    /// Instead of `days`: the last day, included (default today).
    pub end_date: Option<NaiveDate>,
    /// The cost summed: `billed` (the default), `effective`, `list` or `contracted`.
    pub cost_type: Option<CostType>,
    /// How many to show (1 to 100, default 20).
    pub limit: Option<i64>,
    pub currency: Option<String>,
}

/// One workspace, SKU, user or job and what it cost.
#[derive(Debug, Serialize, ToSchema)]
pub struct Ranked {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workspace_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sku_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    pub cost: f64,
    pub dbu: f64,
    pub records: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RankedCosts {
    pub period_days: i64,
    /// Highest cost first.
    pub data: Vec<Ranked>,
    /// The cost of charges with no value for this dimension (not Databricks usage, say).
    pub unattributed_cost: f64,
    #[serde(flatten)]
    pub currency: CurrencyNote,
}

async fn ranked(
    state: &AppState,
    auth: &TenantAuth,
    query: Params<RankingQuery>,
    dimension: Dimension,
) -> AppResult<Json<RankedCosts>> {
    let query = query.for_tenant(auth.tenant_id)?;
    let window = period_window(query.days, query.start_date, query.end_date)?;
    let days = window.days();
    let limit = query.limit.unwrap_or(20);
    let mut v = Validator::new();
    v.check(
        (1..=100).contains(&limit),
        "limit",
        "must be between 1 and 100",
    );
    v.finish()?;
    let mut money = Money::load(&state.db, auth.tenant_id, query.currency.as_deref()).await?;
    let ranking = queries::ranking(
        &state.db,
        auth.tenant_id,
        &window,
        dimension,
        query.cost_type.unwrap_or_default(),
    )
    .await?;
    let (ranked, unattributed) = ranking.fold(&mut money);
    let data = ranked
        .into_iter()
        .take(limit as usize)
        .map(|(value, sum)| {
            let is = |d: Dimension| (dimension == d).then(|| value.clone());
            Ranked {
                workspace_id: is(Dimension::Workspace),
                sku_name: is(Dimension::Sku),
                user_email: is(Dimension::User),
                job_id: is(Dimension::Job),
                cost: round(sum.cost),
                dbu: round(sum.dbu),
                records: sum.records,
            }
        })
        .collect();
    Ok(Json(RankedCosts {
        period_days: days,
        data,
        unattributed_cost: round(unattributed),
        currency: money.note(),
    }))
}

/// Cost by Databricks workspace.
#[utoipa::path(get, path = "/dashboard/cost-by-workspace", tag = "dashboard", params(RankingQuery),
    responses((status = 200, body = RankedCosts), (status = 422)),
    security(("bearer" = []), ("api_key" = [])))]
async fn cost_by_workspace(
    State(state): State<AppState>,
    auth: TenantAuth,
    query: Params<RankingQuery>,
) -> AppResult<Json<RankedCosts>> {
    ranked(&state, &auth, query, Dimension::Workspace).await
}

/// Cost by SKU (Jobs Compute, All-Purpose, SQL ...).
#[utoipa::path(get, path = "/dashboard/cost-by-sku", tag = "dashboard", params(RankingQuery),
    responses((status = 200, body = RankedCosts), (status = 422)),
    security(("bearer" = []), ("api_key" = [])))]
async fn cost_by_sku(
    State(state): State<AppState>,
    auth: TenantAuth,
    query: Params<RankingQuery>,
) -> AppResult<Json<RankedCosts>> {
    ranked(&state, &auth, query, Dimension::Sku).await
}

/// The users who cost most.
#[utoipa::path(get, path = "/dashboard/cost-by-user", tag = "dashboard", params(RankingQuery),
    responses((status = 200, body = RankedCosts), (status = 422)),
    security(("bearer" = []), ("api_key" = [])))]
async fn cost_by_user(
    State(state): State<AppState>,
    auth: TenantAuth,
    query: Params<RankingQuery>,
) -> AppResult<Json<RankedCosts>> {
    ranked(&state, &auth, query, Dimension::User).await
}

/// The jobs that cost most.
#[utoipa::path(get, path = "/dashboard/cost-by-job", tag = "dashboard", params(RankingQuery),
    responses((status = 200, body = RankedCosts), (status = 422)),
    security(("bearer" = []), ("api_key" = [])))]
async fn cost_by_job(
    State(state): State<AppState>,
    auth: TenantAuth,
    query: Params<RankingQuery>,
) -> AppResult<Json<RankedCosts>> {
    ranked(&state, &auth, query, Dimension::Job).await
}
