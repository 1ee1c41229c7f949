//! Periodic work: every tenant gets each schedule of [`SCHEDULES`], fired at the interval its
//! setting says. Every worker process runs [`run`]; a schedule fires under its row lock in the
//! transaction that enqueues its task, so it fires once per interval however many workers
//! there are, and a changed interval counts from the next check (within a second).

use std::time::Duration;

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::TenantAuth;
use crate::error::AppResult;
use crate::http::Json;
use crate::jobs::{JobContext, JobError, JobKind};
use crate::settings;
use crate::state::AppState;
use crate::tasks::NewTask;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_schedules))
}

/// How often a schedule fires.
pub enum Every {
    /// The tenant's value of this setting, in seconds.
    Setting(&'static str),
    Seconds(i64),
}

pub struct ScheduleSpec {
    pub name: &'static str,
    pub kind: JobKind,
    pub every: Every,
}

pub const SCHEDULES: &[ScheduleSpec] = &[
    ScheduleSpec {
        name: "provider_health",
        kind: JobKind::ProvidersHealthCheck,
        every: Every::Setting(settings::HEALTH_CHECK_INTERVAL),
    },
    ScheduleSpec {
        name: "spending_sync",
        kind: JobKind::BillingAccrue,
        every: Every::Setting(settings::SPENDING_SYNC_INTERVAL),
    },
    ScheduleSpec {
        name: "drift_check",
        kind: JobKind::ProvidersSync,
        every: Every::Setting(settings::DRIFT_CHECK_INTERVAL),
    },
    ScheduleSpec {
        name: "task_retention",
        kind: JobKind::TasksRetention,
        every: Every::Seconds(3_600),
    },
];

/// Whether a schedule takes its interval from this setting.
pub fn uses_setting(key: &str) -> bool {
    SCHEDULES
        .iter()
        .any(|s| matches!(s.every, Every::Setting(k) if k == key))
}

impl ScheduleSpec {
    /// The setting that holds the interval (if any) and the interval when it is not set.
    fn interval(&self) -> (Option<&'static str>, i64) {
        match self.every {
            Every::Setting(key) => (Some(key), settings::spec(key).map_or(0, |s| s.default)),
            Every::Seconds(seconds) => (None, seconds),
        }
    }
}

/// How often the scheduler looks for due schedules.
const TICK: Duration = Duration::from_secs(1);

/// The scheduler of one worker process, until `shutdown`.
pub async fn run(state: AppState, shutdown: CancellationToken) {
    loop {
        if let Err(err) = fire_due(&state).await {
            tracing::warn!(error = %err, "scheduler check failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Enqueues a task for every due schedule, and returns how many.
pub async fn fire_due(state: &AppState) -> sqlx::Result<usize> {
    let names: Vec<&str> = SCHEDULES.iter().map(|s| s.name).collect();
    let (setting_keys, default_seconds): (Vec<Option<&str>>, Vec<i64>) =
        SCHEDULES.iter().map(ScheduleSpec::interval).unzip();
    // Every tenant has every schedule.
    sqlx::query!(
        "INSERT INTO schedules (tenant_id, name)
         SELECT t.id, n.name FROM tenants t CROSS JOIN unnest($1::text[]) AS n(name)
         WHERE NOT EXISTS (SELECT 1 FROM schedules s WHERE s.tenant_id = t.id AND s.name = n.name)
         ON CONFLICT DO NOTHING",
        &names as &[&str]
    )
    .execute(&state.db)
    .await?;

    let mut tx = state.db.begin().await?;
    // Due: never run, or its interval has passed and its last task is not still waiting or
    // running. Locked rows belong to another scheduler firing them now; a row it has just
    // fired is re-checked against its new last_run_at.
    let due = sqlx::query!(
        r#"SELECT s.tenant_id, s.name
           FROM schedules s
           JOIN unnest($1::text[], $2::text[], $3::bigint[]) AS k(name, setting, seconds) ON k.name = s.name
           LEFT JOIN tenant_settings st ON st.tenant_id = s.tenant_id AND st.key = k.setting
           LEFT JOIN tasks lt ON lt.id = s.last_task_id
           WHERE (s.last_run_at IS NULL
                  OR s.last_run_at + make_interval(secs => COALESCE((st.value #>> '{}')::float8, k.seconds)) <= now())
             AND (lt.status IS NULL OR lt.status NOT IN ('queued', 'running'))
           ORDER BY s.last_run_at NULLS FIRST
           LIMIT 500
           FOR UPDATE OF s SKIP LOCKED"#,
        &names as &[&str],
        &setting_keys as &[Option<&str>],
        &default_seconds
    )
    .fetch_all(&mut *tx)
    .await?;
    if due.is_empty() {
        return Ok(0);
    }
    let tasks = due
        .iter()
        .filter_map(|row| {
            let spec = SCHEDULES.iter().find(|s| s.name == row.name)?;
            Some(NewTask {
                tenant_id: row.tenant_id,
                kind: spec.kind,
                params: json!({ "schedule": spec.name }),
                created_by: None,
            })
        })
        .collect();
    let task_ids = crate::tasks::enqueue(&mut tx, tasks).await?;
    let tenant_ids: Vec<Uuid> = due.iter().map(|r| r.tenant_id).collect();
    let fired: Vec<String> = due.iter().map(|r| r.name.clone()).collect();
    sqlx::query!(
        "UPDATE schedules s SET last_run_at = now(), last_task_id = f.task_id, runs = s.runs + 1
         FROM unnest($1::uuid[], $2::text[], $3::uuid[]) AS f(tenant_id, name, task_id)
         WHERE s.tenant_id = f.tenant_id AND s.name = f.name",
        &tenant_ids,
        &fired,
        &task_ids
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(task_ids.len())
}

#[derive(Serialize, ToSchema)]
pub struct Schedule {
    pub name: String,
    /// The task kind it starts.
    pub kind: JobKind,
    pub interval_seconds: i64,
    /// The setting the interval comes from, if any.
    pub interval_setting: Option<String>,
    pub last_run_at: Option<DateTime<Utc>>,
    /// When it is due next (now, if it has never run).
    pub next_run_at: DateTime<Utc>,
    pub last_task_id: Option<Uuid>,
    pub runs: i64,
}

/// The tenant's periodic work: what runs, how often, when it last ran and its last task.
#[utoipa::path(get, path = "/schedules", tag = "settings",
    responses((status = 200, body = Vec<Schedule>)), security(("bearer" = []), ("api_key" = [])))]
async fn list_schedules(
    State(state): State<AppState>,
    auth: TenantAuth,
) -> AppResult<Json<Vec<Schedule>>> {
    let rows = sqlx::query!(
        "SELECT name, last_run_at, last_task_id, runs FROM schedules WHERE tenant_id = $1",
        auth.tenant_id
    )
    .fetch_all(&state.db)
    .await?;
    let mut schedules = Vec::with_capacity(SCHEDULES.len());
    for spec in SCHEDULES {
        let (setting, default) = spec.interval();
        let interval = match setting {
            Some(key) => settings::value(&state.db, auth.tenant_id, key).await?,
            None => default,
        };
        let row = rows.iter().find(|r| r.name == spec.name);
        let last_run_at = row.and_then(|r| r.last_run_at);
        schedules.push(Schedule {
            name: spec.name.to_string(),
            kind: spec.kind,
            interval_seconds: interval,
            interval_setting: setting.map(str::to_string),
            last_run_at,
            next_run_at: last_run_at
                .map_or_else(Utc::now, |at| at + chrono::Duration::seconds(interval)),
            last_task_id: row.and_then(|r| r.last_task_id),
            runs: row.map_or(0, |r| r.runs),
        });
    }
    Ok(Json(schedules))
}

/// `providers.health_check`: checks every provider of the tenant and records the outcomes.
pub async fn check_provider_health(ctx: &JobContext) -> Result<Value, JobError> {
    let checked = crate::providers::check_tenant(&ctx.state, ctx.tenant_id)
        .await
        .map_err(|err| JobError::Retryable(err.to_string()))?;
    let unhealthy: Vec<Uuid> = checked
        .iter()
        .filter(|h| h.status != crate::providers::HealthStatus::Healthy)
        .map(|h| h.provider_id)
        .collect();
    Ok(json!({ "checked": checked.len(), "not_healthy": unhealthy }))
}

/// `tasks.retention`: deletes the tenant's finished tasks older than `task_retention_days`.
/// Tasks of deployments stay: they are their resource's history.
pub async fn delete_old_tasks(ctx: &JobContext) -> Result<Value, JobError> {
    let days = settings::value(&ctx.state.db, ctx.tenant_id, settings::TASK_RETENTION_DAYS).await?;
    let deleted = sqlx::query!(
        "DELETE FROM tasks t
         WHERE t.tenant_id = $1 AND t.status IN ('succeeded', 'failed', 'cancelled')
           AND COALESCE(t.finished_at, t.updated_at) < now() - make_interval(days => $2)
           AND NOT EXISTS (SELECT 1 FROM deployments d WHERE d.task_id = t.id)
           AND NOT EXISTS (SELECT 1 FROM schedules s WHERE s.last_task_id = t.id)",
        ctx.tenant_id,
        days as i32
    )
    .execute(&ctx.state.db)
    .await?
    .rows_affected();
    Ok(json!({ "deleted": deleted, "retention_days": days }))
}
