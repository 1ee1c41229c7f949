//! The daily rollup (`cost_daily`): sums per day, currency and every dimension the cost views
//! group or filter by. Imports and accrual keep it; dashboards and cost queries read it.
//!
//! Its rows are additive: a view sums whatever rows match, so an import adds the rows it
//! aggregated while streaming ([`Rollup`]), and anything that removes records (a re-import
//! replacing a period) recomputes the days touched from the records ([`recompute`]).

use std::collections::HashMap;
use std::ops::Deref;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use uuid::Uuid;

use super::formats::COLUMNS;

/// Recomputes the tenant's rollup for the UTC days from `start` to `end`, from the records.
pub async fn recompute(
    conn: &mut sqlx::PgConnection,
    tenant_id: Uuid,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> sqlx::Result<()> {
    let (first, last) = (start.date_naive(), end.date_naive());
    sqlx::query!(
        "DELETE FROM cost_daily WHERE tenant_id = $1 AND day BETWEEN $2 AND $3",
        tenant_id,
        first,
        last
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        r#"INSERT INTO cost_daily (tenant_id, day, billing_currency, provider_name, service_name,
                                  service_category, region_id, resource_group, workspace_id,
                                  sku_name, user_email, job_id, billed_cost, effective_cost,
                                  list_cost, contracted_cost, dbu_count, records)
           SELECT tenant_id, (charge_period_start AT TIME ZONE 'UTC')::date, billing_currency,
                  COALESCE(provider_name, ''), COALESCE(service_name, ''),
                  COALESCE(service_category, ''), COALESCE(region_id, ''),
                  resource_group_of(resource_group, resource_id), COALESCE(workspace_id, ''),
                  COALESCE(sku_name, ''), COALESCE(user_email, ''), COALESCE(job_id, ''),
                  sum(billed_cost), COALESCE(sum(effective_cost), 0), COALESCE(sum(list_cost), 0),
                  COALESCE(sum(contracted_cost), 0), COALESCE(sum(dbu_count), 0), count(*)
           FROM cost_records
           WHERE tenant_id = $1
             AND charge_period_start >= ($2::date)::timestamp AT TIME ZONE 'UTC'
             AND charge_period_start < (($3::date) + 1)::timestamp AT TIME ZONE 'UTC'
           GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12"#,
        tenant_id,
        first,
        last
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Merges the tenant's rollup rows of the same day and dimensions from `start` to `end` into
/// one: each import adds its own rows, and the files of one period would otherwise multiply
/// the rows every view sums. Only the rows it deleted are summed again, so rows another
/// transaction writes meanwhile are neither lost nor counted twice.
pub async fn compact(
    conn: &mut sqlx::PgConnection,
    tenant_id: Uuid,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query!(
        r#"WITH gone AS (
               DELETE FROM cost_daily WHERE tenant_id = $1 AND day BETWEEN $2 AND $3 RETURNING *
           )
           INSERT INTO cost_daily (tenant_id, day, billing_currency, provider_name, service_name,
                                   service_category, region_id, resource_group, workspace_id,
                                   sku_name, user_email, job_id, billed_cost, effective_cost,
                                   list_cost, contracted_cost, dbu_count, records)
           SELECT tenant_id, day, billing_currency, provider_name, service_name, service_category,
                  region_id, resource_group, workspace_id, sku_name, user_email, job_id,
                  sum(billed_cost), sum(effective_cost), sum(list_cost), sum(contracted_cost),
                  sum(dbu_count), sum(records)
           FROM gone GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12"#,
        tenant_id,
        start.date_naive(),
        end.date_naive()
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The position of a column in a converted row ([`COLUMNS`]).
pub(crate) const fn column(name: &str) -> usize {
    let mut i = 0;
    while i < COLUMNS.len() {
        if const_eq(COLUMNS[i], name) {
            return i;
        }
        i += 1;
    }
    panic!("no such column")
}

const fn const_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

pub(crate) const BILLED: usize = column("billed_cost");
pub(crate) const EFFECTIVE: usize = column("effective_cost");
pub(crate) const LIST: usize = column("list_cost");
pub(crate) const CONTRACTED: usize = column("contracted_cost");
pub(crate) const CURRENCY: usize = column("billing_currency");
pub(crate) const CHARGE_START: usize = column("charge_period_start");
pub(crate) const RESOURCE_ID: usize = column("resource_id");
const RESOURCE_GROUP: usize = column("resource_group");
const DBU: usize = column("dbu_count");

/// The dimensions of a rollup row, in `cost_daily`'s column order after `day` and the currency.
const DIMENSIONS: [usize; 8] = [
    column("provider_name"),
    column("service_name"),
    column("service_category"),
    column("region_id"),
    RESOURCE_GROUP,
    column("workspace_id"),
    column("sku_name"),
    column("user_email"),
];
const JOB: usize = column("job_id");

#[derive(Default)]
struct Sums {
    billed: Decimal,
    effective: Decimal,
    list: Decimal,
    contracted: Decimal,
    dbu: Decimal,
    records: i64,
}

/// Rollup rows summed in memory from converted rows, as [`recompute`] would sum them. Exact
/// decimals: a sum that would overflow (28 digits) makes the rollup unusable (`None` from
/// [`Rollup::finish`]) and the import recomputes it in SQL instead.
#[derive(Default)]
pub struct Rollup {
    /// Keyed by the day, the currency and the dimensions, joined by [`SEPARATOR`].
    rows: HashMap<String, Sums>,
    key: String,
    unusable: bool,
}

/// Joins a key's parts: a control character. A row whose text holds it makes the rollup
/// unusable, and the import recomputes it in SQL.
const SEPARATOR: char = '\u{1f}';

impl Rollup {
    /// Adds one converted row (values in [`COLUMNS`] order, already validated) with its
    /// [`amounts`].
    pub fn add<S: Deref<Target = str>>(&mut self, values: &[Option<S>], amounts: &Amounts) {
        if self.unusable {
            return;
        }
        let text = |i: usize| values[i].as_deref().unwrap_or("");
        if DIMENSIONS
            .iter()
            .chain(&[CURRENCY, JOB, RESOURCE_ID])
            .any(|&i| text(i).contains(SEPARATOR))
        {
            self.give_up();
            return;
        }
        let key = &mut self.key;
        key.clear();
        // The UTC day: a converted time starts with its UTC date.
        key.push_str(text(CHARGE_START).get(..10).unwrap_or_default());
        key.push(SEPARATOR);
        key.push_str(text(CURRENCY));
        for &i in &DIMENSIONS {
            key.push(SEPARATOR);
            if i == RESOURCE_GROUP {
                key.push_str(&resource_group_of(text(i), text(RESOURCE_ID)));
            } else {
                key.push_str(text(i));
            }
        }
        key.push(SEPARATOR);
        key.push_str(text(JOB));
        let sums = match self.rows.get_mut(key.as_str()) {
            Some(sums) => sums,
            None => self.rows.entry(key.clone()).or_default(),
        };
        let add = |sum: &mut Decimal, amount: &Result<Option<Decimal>, ()>| match amount {
            Ok(None) => true,
            Ok(Some(v)) => sum.checked_add(*v).map(|s| *sum = s).is_some(),
            Err(()) => false,
        };
        let [billed, effective, list, contracted, dbu] = amounts;
        let ok = add(&mut sums.billed, billed)
            & add(&mut sums.effective, effective)
            & add(&mut sums.list, list)
            & add(&mut sums.contracted, contracted)
            & add(&mut sums.dbu, dbu);
        sums.records += 1;
        if !ok {
            self.give_up();
        }
    }

    fn give_up(&mut self) {
        self.unusable = true;
        self.rows = HashMap::new();
    }

    /// The rows as COPY data for `cost_daily` ([`COPY_DAILY`]), or `None` when it is unusable.
    pub fn finish(self, tenant_id: Uuid) -> Option<Vec<u8>> {
        if self.unusable {
            return None;
        }
        let mut out = csv::WriterBuilder::new().from_writer(Vec::new());
        let tenant = tenant_id.to_string();
        for (key, sums) in self.rows {
            let amounts = [
                sums.billed,
                sums.effective,
                sums.list,
                sums.contracted,
                sums.dbu,
            ]
            .map(|d| d.to_string());
            let records = sums.records.to_string();
            let fields = std::iter::once(tenant.as_str())
                .chain(key.split(SEPARATOR))
                .chain(amounts.iter().map(String::as_str))
                .chain(std::iter::once(records.as_str()));
            out.write_record(fields).ok()?;
        }
        out.into_inner().ok()
    }
}

/// The COPY statement [`Rollup::finish`]'s data is for (an empty field is '', not null).
pub const COPY_DAILY: &str = "COPY cost_daily (tenant_id, day, billing_currency, provider_name, \
     service_name, service_category, region_id, resource_group, \
     workspace_id, sku_name, user_email, job_id, billed_cost, effective_cost, list_cost, \
     contracted_cost, dbu_count, records) FROM STDIN WITH (FORMAT csv, NULL '\\N')";

/// A row's billed, effective, list and contracted cost and DBUs, parsed once for everything that
/// sums them: `Ok(None)` where the row has none, `Err` where it is beyond exact decimals.
pub type Amounts = [Result<Option<Decimal>, ()>; 5];

pub fn amounts<S: Deref<Target = str>>(values: &[Option<S>]) -> Amounts {
    [BILLED, EFFECTIVE, LIST, CONTRACTED, DBU].map(|i| match values[i].as_deref() {
        None => Ok(None),
        Some(amount) => parse(amount).map(Some).ok_or(()),
    })
}

/// An amount as the converter wrote it (digits, a point, perhaps an exponent).
pub fn parse(amount: &str) -> Option<Decimal> {
    amount
        .parse::<Decimal>()
        .ok()
        .or_else(|| Decimal::from_scientific(amount).ok())
}

/// A charge's resource group, lowercased: as the export names it, else as its Azure resource id
/// does; '' for none. The same as the SQL function `resource_group_of`.
pub fn resource_group_of(resource_group: &str, resource_id: &str) -> String {
    const MARK: &str = "/resourcegroups/";
    if !resource_group.is_empty() {
        return resource_group.to_lowercase();
    }
    // Most ids are not paths: nothing to lowercase and search.
    if !resource_id.contains('/') {
        return String::new();
    }
    let lower = resource_id.to_lowercase();
    let mut rest = lower.as_str();
    while let Some(at) = rest.find(MARK) {
        rest = &rest[at + MARK.len()..];
        let group = rest.split('/').next().unwrap_or_default();
        if !group.is_empty() {
            return group.to_string();
        }
    }
    String::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_groups_come_from_azure_resource_ids() {
        assert_eq!(
            resource_group_of(
                "",
                "/subscriptions/1/resourceGroups/RG-Prod/providers/Microsoft.Compute/virtualMachines/vm1"
            ),
            "rg-prod"
        );
        assert_eq!(
            resource_group_of("", "/subscriptions/1/resourcegroups/web"),
            "web"
        );
        assert_eq!(resource_group_of("", "i-0abc"), "");
        assert_eq!(
            resource_group_of("", "/resourceGroups//resourceGroups/x/"),
            "x"
        );
        assert_eq!(
            resource_group_of("RG-Named", "/resourceGroups/other"),
            "rg-named"
        );
    }

    #[test]
    fn rows_of_the_same_day_and_dimensions_are_summed_exactly() {
        let row = |start: &str, cost: &str| {
            let mut values = vec![None; COLUMNS.len()];
            values[BILLED] = Some(cost.to_string());
            values[CURRENCY] = Some("USD".to_string());
            values[CHARGE_START] = Some(start.to_string());
            values[DBU] = Some("1.5e1".to_string());
            values[CONTRACTED] = Some("0.5".to_string());
            values
        };
        let mut rollup = Rollup::default();
        for (start, cost) in [
            ("2026-01-01T23:00:00+00:00", "0.1"),
            ("2026-01-01T01:00:00+00:00", "0.2"),
            ("2026-01-02T00:00:00+00:00", "1"),
        ] {
            let values = row(start, cost);
            rollup.add(&values, &amounts(&values));
        }
        let data = String::from_utf8(rollup.finish(Uuid::nil()).unwrap()).unwrap();
        let mut lines: Vec<&str> = data.lines().collect();
        lines.sort();
        assert_eq!(lines.len(), 2);
        assert!(
            lines[0].contains(",2026-01-01,USD,") && lines[0].ends_with(",0.3,0,0,1.0,30,2"),
            "{}",
            lines[0]
        );
        assert!(lines[1].ends_with(",1,0,0,0.5,15,1"), "{}", lines[1]);

        let mut huge = Rollup::default();
        for cost in ["79228162514264337593543950335", "1"] {
            let values = row("2026-01-01T00:00:00+00:00", cost);
            huge.add(&values, &amounts(&values));
        }
        assert!(huge.finish(Uuid::nil()).is_none());
    }
}
