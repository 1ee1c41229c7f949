//! `billing.accrue` (the `spending_sync` schedule, every `spending_sync_interval`): running
//! resources with a price accrue cost records, one per resource and hour, priced from the
//! catalog (`resources.cost_per_hour`, USD). Each run adds the time since the last one, so the
//! current hour's record grows until the hour is over and a new vm shows up in every cost view
//! within one interval. Time a resource spent stopped (as seen at each run) accrues nothing.

use chrono::Utc;
use serde_json::{Value, json};

use crate::jobs::{JobContext, JobError};

pub async fn run(ctx: &JobContext) -> Result<Value, JobError> {
    let now = Utc::now();
    let mut tx = ctx.state.db.begin().await?;
    // The resources are locked, so two runs never accrue the same time twice.
    let running = sqlx::query!(
        r#"SELECT r.id, COALESCE(r.cost_accrued_until, r.created_at) AS "since!"
           FROM resources r
           WHERE r.tenant_id = $1 AND r.status IN ('active', 'updating') AND r.power_state = 'running'
             AND r.cost_per_hour > 0 AND r.cloud_id IS NOT NULL
           FOR UPDATE OF r"#,
        ctx.tenant_id
    )
    .fetch_all(&mut *tx)
    .await?;
    let ids: Vec<uuid::Uuid> = running.iter().map(|r| r.id).collect();
    // The current hour's record of a resource grows; the resources' locks above keep two runs
    // from making the same hour's record twice.
    let accrued = sqlx::query_scalar!(
        r#"WITH hours AS (
               SELECT r.id, r.tenant_id, r.provider_id, p.provider_type, r.kind, r.name, r.region,
                      r.cloud_id, h AS hour_start, hours, r.cost_per_hour::numeric * hours AS cost
               FROM resources r
               JOIN providers p ON p.id = r.provider_id
               CROSS JOIN LATERAL generate_series(
                   date_trunc('hour', COALESCE(r.cost_accrued_until, r.created_at)),
                   $2::timestamptz, interval '1 hour') AS h
               CROSS JOIN LATERAL (SELECT extract(epoch FROM LEAST(h + interval '1 hour', $2) - GREATEST(h, COALESCE(r.cost_accrued_until, r.created_at)))::numeric / 3600 AS hours) AS part
               WHERE r.id = ANY($1) AND h < $2
           ), grown AS (
               UPDATE cost_records c
               SET billed_cost = c.billed_cost + h.cost,
                   effective_cost = c.effective_cost + h.cost,
                   list_cost = c.list_cost + h.cost,
                   pricing_quantity = c.pricing_quantity + h.hours,
                   consumed_quantity = c.consumed_quantity + h.hours
               FROM hours h
               WHERE c.tenant_id = $3 AND c.import_id IS NULL AND h.hours > 0
                 AND c.resource_ref = h.id AND c.charge_period_start = h.hour_start
               RETURNING c.resource_ref, c.charge_period_start
           ), added AS (
               INSERT INTO cost_records (tenant_id, provider_id, resource_ref, billed_cost, effective_cost,
                                         list_cost, billing_currency, charge_period_start, charge_period_end,
                                         billing_period_start, billing_period_end, charge_category,
                                         charge_description, provider_name, service_name, service_category,
                                         region_id, resource_id, resource_name, resource_type,
                                         pricing_quantity, pricing_unit, consumed_quantity, consumed_unit)
               SELECT tenant_id, provider_id, id, cost, cost, cost, 'USD',
                      hour_start, hour_start + interval '1 hour',
                      date_trunc('month', hour_start), date_trunc('month', hour_start) + interval '1 month',
                      'Usage', 'Strata ' || kind || ' ' || name, provider_type,
                      CASE kind WHEN 'cluster' THEN 'Kubernetes' WHEN 'storage' THEN 'Storage'
                                WHEN 'network' THEN 'Networking' ELSE 'Virtual Machines' END,
                      CASE kind WHEN 'storage' THEN 'Storage' WHEN 'network' THEN 'Networking'
                                ELSE 'Compute' END,
                      region, cloud_id, name, kind, hours, 'Hours', hours, 'Hours'
               FROM hours h
               WHERE hours > 0 AND NOT EXISTS (
                   SELECT 1 FROM grown g
                   WHERE g.resource_ref = h.id AND g.charge_period_start = h.hour_start)
               RETURNING 1
           )
           SELECT (SELECT count(*) FROM grown) + (SELECT count(*) FROM added) AS "n!""#,
        &ids,
        now,
        ctx.tenant_id
    )
    .fetch_one(&mut *tx)
    .await?;
    // Every live resource is accounted to now: a stopped one's time costs nothing.
    sqlx::query!(
        "UPDATE resources SET cost_accrued_until = $2
         WHERE tenant_id = $1 AND status NOT IN ('destroyed', 'failed')",
        ctx.tenant_id,
        now
    )
    .execute(&mut *tx)
    .await?;
    if let Some(since) = running.iter().map(|r| r.since).min() {
        super::rollup::recompute(&mut tx, ctx.tenant_id, since, now).await?;
    }
    tx.commit().await?;
    Ok(json!({ "resources": ids.len(), "hour_records": accrued, "until": now }))
}
