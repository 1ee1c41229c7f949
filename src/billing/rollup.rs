//! The daily rollup (`cost_daily`): sums per day, currency, provider, service, category,
//! region and sub-account. Imports keep it; dashboards and cost queries read it.

use chrono::{DateTime, Utc};
use uuid::Uuid;

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
                                  service_category, region_id, sub_account_id, billed_cost,
                                  effective_cost, list_cost, records)
           SELECT tenant_id, (charge_period_start AT TIME ZONE 'UTC')::date, billing_currency,
                  COALESCE(provider_name, ''), COALESCE(service_name, ''),
                  COALESCE(service_category, ''), COALESCE(region_id, ''), COALESCE(sub_account_id, ''),
                  sum(billed_cost), COALESCE(sum(effective_cost), 0), COALESCE(sum(list_cost), 0), count(*)
           FROM cost_records
           WHERE tenant_id = $1
             AND charge_period_start >= ($2::date)::timestamp AT TIME ZONE 'UTC'
             AND charge_period_start < (($3::date) + 1)::timestamp AT TIME ZONE 'UTC'
           GROUP BY 1, 2, 3, 4, 5, 6, 7, 8"#,
        tenant_id,
        first,
        last
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}
