//! The rollup queries the cost views and dashboards share. Each sums in Postgres per currency
//! (exact decimals), and [`Money`] brings the sums into the answer's currency.

use std::collections::BTreeMap;

use chrono::{NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::CostGrouping;
use crate::billing::currency::Money;

/// Days from `start` to `end`, both included.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub start: NaiveDate,
    pub end: NaiveDate,
}

impl Window {
    pub fn new(start: NaiveDate, end: NaiveDate) -> Self {
        Self { start, end }
    }

    /// The last `days` days, today (UTC) included.
    pub fn last_days(days: i64) -> Self {
        let end = Utc::now().date_naive();
        Self::new(end - chrono::Days::new(days.max(1) as u64 - 1), end)
    }

    pub fn days(&self) -> i64 {
        (self.end - self.start).num_days() + 1
    }

    /// The window of the same length just before this one.
    pub fn previous(&self) -> Self {
        let days = chrono::Days::new(self.days() as u64);
        Self::new(self.start - days, self.end - days)
    }
}

/// Which of FOCUS's costs a view sums: what was invoiced (`billed`, the default), with
/// commitments amortized and discounts applied (`effective`), at public prices (`list`), or at
/// negotiated prices (`contracted`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CostType {
    #[default]
    Billed,
    Effective,
    List,
    Contracted,
}

impl CostType {
    /// As the rollup's `daily_cost` takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Billed => "billed",
            Self::Effective => "effective",
            Self::List => "list",
            Self::Contracted => "contracted",
        }
    }
}

/// The Databricks filters (workspace, SKU, user), every one a dimension of the rollup, the
/// sub-account, and the cost type summed.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    pub workspace_id: Option<String>,
    pub sku_name: Option<String>,
    pub user_email: Option<String>,
    /// Only charges of this sub-account: not a dimension of the rollup, so the sums come from
    /// the records when it is given.
    pub sub_account_id: Option<String>,
    pub cost_type: CostType,
}

impl Filters {
    pub fn workspace(workspace_id: Option<String>, cost_type: Option<CostType>) -> Self {
        Self {
            workspace_id,
            cost_type: cost_type.unwrap_or_default(),
            ..Self::default()
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Granularity {
    Daily,
    Weekly,
    Monthly,
}

impl Granularity {
    /// The `date_trunc` field: weeks start on Monday (ISO).
    fn field(self) -> &'static str {
        match self {
            Self::Daily => "day",
            Self::Weekly => "week",
            Self::Monthly => "month",
        }
    }
}

/// Cost (in the answer's currency), DBUs and records.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sum {
    pub cost: f64,
    pub dbu: f64,
    pub records: i64,
}

/// Sums per currency, as Postgres returned them.
pub struct CurrencySums(Vec<(String, Sum)>);

impl CurrencySums {
    /// Everything that converts into the answer's currency; a charge that does not is left out
    /// whole (cost, DBUs and records), and the note says so.
    fn add_into(&self, total: &mut Sum, money: &mut Money) {
        money.default_to(self.0.iter().map(|(c, s)| (c.as_str(), s.records)));
        for (currency, sum) in &self.0 {
            if let Some(cost) = money.convert(currency, sum.cost) {
                total.cost += cost;
                total.dbu += sum.dbu;
                total.records += sum.records;
            }
        }
    }
}

/// A period's sums with the first and last days that had charges.
pub struct Totals {
    sums: CurrencySums,
    pub earliest: Option<NaiveDate>,
    pub latest: Option<NaiveDate>,
}

impl Totals {
    pub fn fold(&self, money: &mut Money) -> Sum {
        let mut total = Sum::default();
        self.sums.add_into(&mut total, money);
        total
    }
}

pub async fn totals(
    db: &sqlx::PgPool,
    tenant_id: Uuid,
    window: &Window,
    filters: &Filters,
) -> sqlx::Result<Totals> {
    if let Some(sub_account) = &filters.sub_account_id {
        return totals_of_records(db, tenant_id, window, filters, sub_account).await;
    }
    let rows = sqlx::query!(
        r#"SELECT billing_currency AS "currency!", sum(daily_cost(cost_daily, $7))::float8 AS "cost!",
                  sum(dbu_count)::float8 AS "dbu!", sum(records)::int8 AS "records!",
                  min(day) AS "earliest!", max(day) AS "latest!"
           FROM cost_daily
           WHERE tenant_id = $1 AND day BETWEEN $2 AND $3
             AND ($4::text IS NULL OR workspace_id = $4) AND ($5::text IS NULL OR sku_name = $5)
             AND ($6::text IS NULL OR user_email = $6)
           GROUP BY billing_currency"#,
        tenant_id,
        window.start,
        window.end,
        filters.workspace_id,
        filters.sku_name,
        filters.user_email,
        filters.cost_type.as_str()
    )
    .fetch_all(db)
    .await?;
    Ok(Totals {
        earliest: rows.iter().map(|r| r.earliest).min(),
        latest: rows.iter().map(|r| r.latest).max(),
        sums: CurrencySums(
            rows.into_iter()
                .map(|r| {
                    (
                        r.currency,
                        Sum {
                            cost: r.cost,
                            dbu: r.dbu,
                            records: r.records,
                        },
                    )
                })
                .collect(),
        ),
    })
}

/// [`totals`] summed from the records (for a filter the rollup does not keep).
async fn totals_of_records(
    db: &sqlx::PgPool,
    tenant_id: Uuid,
    window: &Window,
    filters: &Filters,
    sub_account: &str,
) -> sqlx::Result<Totals> {
    let rows = sqlx::query!(
        r#"SELECT billing_currency AS "currency!",
                  sum(record_cost($7, billed_cost, effective_cost, list_cost, contracted_cost))::float8 AS "cost!",
                  COALESCE(sum(dbu_count), 0)::float8 AS "dbu!", count(*) AS "records!",
                  min(charge_period_start AT TIME ZONE 'UTC')::date AS "earliest!",
                  max(charge_period_start AT TIME ZONE 'UTC')::date AS "latest!"
           FROM cost_records
           WHERE tenant_id = $1 AND sub_account_id = $8
             AND charge_period_start >= ($2::date)::timestamp AT TIME ZONE 'UTC'
             AND charge_period_start < (($3::date) + 1)::timestamp AT TIME ZONE 'UTC'
             AND ($4::text IS NULL OR workspace_id = $4) AND ($5::text IS NULL OR sku_name = $5)
             AND ($6::text IS NULL OR user_email = $6)
           GROUP BY billing_currency"#,
        tenant_id,
        window.start,
        window.end,
        filters.workspace_id,
        filters.sku_name,
        filters.user_email,
        filters.cost_type.as_str(),
        sub_account
    )
    .fetch_all(db)
    .await?;
    Ok(Totals {
        earliest: rows.iter().map(|r| r.earliest).min(),
        latest: rows.iter().map(|r| r.latest).max(),
        sums: CurrencySums(
            rows.into_iter()
                .map(|r| {
                    let sum = Sum {
                        cost: r.cost,
                        dbu: r.dbu,
                        records: r.records,
                    };
                    (r.currency, sum)
                })
                .collect(),
        ),
    })
}

/// How many records match (from the rollup), over days that may be open-ended.
pub async fn count(
    db: &sqlx::PgPool,
    tenant_id: Uuid,
    start: Option<NaiveDate>,
    end: Option<NaiveDate>,
    filters: &Filters,
) -> sqlx::Result<i64> {
    if let Some(sub_account) = &filters.sub_account_id {
        return sqlx::query_scalar!(
            r#"SELECT count(*) AS "n!" FROM cost_records
               WHERE tenant_id = $1 AND sub_account_id = $7
                 AND ($2::date IS NULL OR charge_period_start >= ($2::date)::timestamp AT TIME ZONE 'UTC')
                 AND ($3::date IS NULL OR charge_period_start < (($3::date) + 1)::timestamp AT TIME ZONE 'UTC')
                 AND ($4::text IS NULL OR workspace_id = $4) AND ($5::text IS NULL OR sku_name = $5)
                 AND ($6::text IS NULL OR user_email = $6)"#,
            tenant_id,
            start,
            end,
            filters.workspace_id,
            filters.sku_name,
            filters.user_email,
            sub_account
        )
        .fetch_one(db)
        .await;
    }
    sqlx::query_scalar!(
        r#"SELECT COALESCE(sum(records), 0)::int8 AS "n!" FROM cost_daily
           WHERE tenant_id = $1 AND ($2::date IS NULL OR day >= $2) AND ($3::date IS NULL OR day <= $3)
             AND ($4::text IS NULL OR workspace_id = $4) AND ($5::text IS NULL OR sku_name = $5)
             AND ($6::text IS NULL OR user_email = $6)"#,
        tenant_id,
        start,
        end,
        filters.workspace_id,
        filters.sku_name,
        filters.user_email
    )
    .fetch_one(db)
    .await
}

/// Sums per period (its first day) and currency.
pub struct Series(Vec<(NaiveDate, String, Sum)>);

impl Series {
    /// Per period, oldest first, in the answer's currency.
    pub fn fold(&self, money: &mut Money) -> BTreeMap<NaiveDate, Sum> {
        money.default_to(self.0.iter().map(|(_, c, s)| (c.as_str(), s.records)));
        let mut periods = BTreeMap::<NaiveDate, Sum>::new();
        for (period, currency, sum) in &self.0 {
            if let Some(cost) = money.convert(currency, sum.cost) {
                let total = periods.entry(*period).or_default();
                total.cost += cost;
                total.dbu += sum.dbu;
                total.records += sum.records;
            }
        }
        periods
    }
}

pub async fn series(
    db: &sqlx::PgPool,
    tenant_id: Uuid,
    window: &Window,
    granularity: Granularity,
    filters: &Filters,
) -> sqlx::Result<Series> {
    let rows = sqlx::query!(
        r#"SELECT date_trunc($4, day::timestamp)::date AS "period!", billing_currency AS "currency!",
                  sum(daily_cost(cost_daily, $6))::float8 AS "cost!", sum(dbu_count)::float8 AS "dbu!",
                  sum(records)::int8 AS "records!"
           FROM cost_daily
           WHERE tenant_id = $1 AND day BETWEEN $2 AND $3
             AND ($5::text IS NULL OR workspace_id = $5)
           GROUP BY 1, 2 ORDER BY 1, 2"#,
        tenant_id,
        window.start,
        window.end,
        granularity.field(),
        filters.workspace_id,
        filters.cost_type.as_str()
    )
    .fetch_all(db)
    .await?;
    Ok(Series(
        rows.into_iter()
            .map(|r| {
                (
                    r.period,
                    r.currency,
                    Sum {
                        cost: r.cost,
                        dbu: r.dbu,
                        records: r.records,
                    },
                )
            })
            .collect(),
    ))
}

pub struct PeriodCategoryGroup {
    pub period: NaiveDate,
    pub currency: String,
    pub category: String,
    pub group: String,
    pub cost: f64,
    pub records: i64,
}

/// Cost per period, currency, service category and (optionally) a grouping.
pub async fn by_period_category_and_group(
    db: &sqlx::PgPool,
    tenant_id: Uuid,
    window: &Window,
    granularity: Granularity,
    group_by: Option<CostGrouping>,
    filters: &Filters,
) -> sqlx::Result<Vec<PeriodCategoryGroup>> {
    let group = match group_by {
        Some(CostGrouping::ResourceGroup) => "resource_group",
        Some(CostGrouping::Service) => "service",
        Some(CostGrouping::Location) => "location",
        None => "",
    };
    if let Some(sub_account) = &filters.sub_account_id {
        return sqlx::query_as!(
            PeriodCategoryGroup,
            r#"SELECT date_trunc($4, (charge_period_start AT TIME ZONE 'UTC')::date::timestamp)::date AS "period!",
                      billing_currency AS "currency!",
                      COALESCE(service_category, '') AS "category!",
                      CASE $5 WHEN 'resource_group' THEN resource_group_of(resource_group, resource_id)
                              WHEN 'service' THEN COALESCE(service_name, '')
                              WHEN 'location' THEN COALESCE(region_id, '') ELSE '' END AS "group!",
                      sum(record_cost($9, billed_cost, effective_cost, list_cost, contracted_cost))::float8 AS "cost!",
                      count(*) AS "records!"
               FROM cost_records
               WHERE tenant_id = $1 AND sub_account_id = $10
                 AND charge_period_start >= ($2::date)::timestamp AT TIME ZONE 'UTC'
                 AND charge_period_start < (($3::date) + 1)::timestamp AT TIME ZONE 'UTC'
                 AND ($6::text IS NULL OR workspace_id = $6) AND ($7::text IS NULL OR sku_name = $7)
                 AND ($8::text IS NULL OR user_email = $8)
               GROUP BY 1, 2, 3, 4 ORDER BY 1"#,
            tenant_id,
            window.start,
            window.end,
            granularity.field(),
            group,
            filters.workspace_id,
            filters.sku_name,
            filters.user_email,
            filters.cost_type.as_str(),
            sub_account
        )
        .fetch_all(db)
        .await;
    }
    sqlx::query_as!(
        PeriodCategoryGroup,
        r#"SELECT date_trunc($4, day::timestamp)::date AS "period!", billing_currency AS "currency!",
                  service_category AS "category!",
                  CASE $5 WHEN 'resource_group' THEN resource_group WHEN 'service' THEN service_name
                          WHEN 'location' THEN region_id ELSE '' END AS "group!",
                  sum(daily_cost(cost_daily, $9))::float8 AS "cost!", sum(records)::int8 AS "records!"
           FROM cost_daily
           WHERE tenant_id = $1 AND day BETWEEN $2 AND $3
             AND ($6::text IS NULL OR workspace_id = $6) AND ($7::text IS NULL OR sku_name = $7)
             AND ($8::text IS NULL OR user_email = $8)
           GROUP BY 1, 2, 3, 4 ORDER BY 1"#,
        tenant_id,
        window.start,
        window.end,
        granularity.field(),
        group,
        filters.workspace_id,
        filters.sku_name,
        filters.user_email,
        filters.cost_type.as_str()
    )
    .fetch_all(db)
    .await
}

/// The Databricks dimensions the cost rankings rank by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dimension {
    Workspace,
    Sku,
    User,
    Job,
}

/// Sums per value of a dimension (records without one are under `""`), per currency.
pub struct Ranking(Vec<(String, String, Sum)>);

impl Ranking {
    /// The values by cost, highest first, in the answer's currency; and the cost of records
    /// with no value.
    pub fn fold(&self, money: &mut Money) -> (Vec<(String, Sum)>, f64) {
        money.default_to(self.0.iter().map(|(_, c, s)| (c.as_str(), s.records)));
        let mut values = BTreeMap::<&str, Sum>::new();
        for (value, currency, sum) in &self.0 {
            if let Some(cost) = money.convert(currency, sum.cost) {
                let total = values.entry(value).or_default();
                total.cost += cost;
                total.dbu += sum.dbu;
                total.records += sum.records;
            }
        }
        let unattributed = values.remove("").map_or(0.0, |s| s.cost);
        let mut ranked: Vec<(String, Sum)> = values
            .into_iter()
            .map(|(v, s)| (v.to_string(), s))
            .collect();
        ranked.sort_by(|a, b| b.1.cost.total_cmp(&a.1.cost).then_with(|| a.0.cmp(&b.0)));
        (ranked, unattributed)
    }
}

pub async fn ranking(
    db: &sqlx::PgPool,
    tenant_id: Uuid,
    window: &Window,
    dimension: Dimension,
    cost_type: CostType,
) -> sqlx::Result<Ranking> {
    let dimension = match dimension {
        Dimension::Workspace => "workspace",
        Dimension::Sku => "sku",
        Dimension::User => "user",
        Dimension::Job => "job",
    };
    let rows = sqlx::query!(
        r#"SELECT CASE $4 WHEN 'workspace' THEN workspace_id WHEN 'sku' THEN sku_name
                          WHEN 'user' THEN user_email ELSE job_id END AS "value!",
                  billing_currency AS "currency!", sum(daily_cost(cost_daily, $5))::float8 AS "cost!",
                  sum(dbu_count)::float8 AS "dbu!", sum(records)::int8 AS "records!"
           FROM cost_daily
           WHERE tenant_id = $1 AND day BETWEEN $2 AND $3
           GROUP BY 1, 2"#,
        tenant_id,
        window.start,
        window.end,
        dimension,
        cost_type.as_str()
    )
    .fetch_all(db)
    .await?;
    Ok(Ranking(
        rows.into_iter()
            .map(|r| {
                (
                    r.value,
                    r.currency,
                    Sum {
                        cost: r.cost,
                        dbu: r.dbu,
                        records: r.records,
                    },
                )
            })
            .collect(),
    ))
}
