//! The job queue. apalis-postgres delivers `{task_id}` (at least once); the `tasks` row is the
//! truth users see, and every job kind is registered here, in [`JobKind`], with its queue.

pub mod diagnostic;
pub mod runner;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::state::AppState;

/// Queues, named explicitly. Each gets its own consumers in every worker process.
pub const DEFAULT_QUEUE: &str = "strata.default";
/// Terraform runs: long, and few at a time per worker.
pub const PROVISIONING_QUEUE: &str = "strata.provisioning";
pub const QUEUES: &[&str] = &[DEFAULT_QUEUE, PROVISIONING_QUEUE];

/// Every kind of job Strata runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum JobKind {
    /// Does nothing; measures the queue.
    #[serde(rename = "diagnostic.noop")]
    DiagnosticNoop,
    /// Writes one `diagnostic_effects` row, exactly once however often it is delivered.
    #[serde(rename = "diagnostic.record")]
    DiagnosticRecord,
    /// Sleeps `params.ms` milliseconds, reporting progress; cancellable.
    #[serde(rename = "diagnostic.sleep")]
    DiagnosticSleep,
    /// Fails with `params.message`; retried up to `max_attempts`.
    #[serde(rename = "diagnostic.fail")]
    DiagnosticFail,
    /// Creates or changes a resource (`terraform plan` and `apply`).
    #[serde(rename = "resource.apply")]
    ResourceApply,
    /// Destroys a resource (`terraform destroy`).
    #[serde(rename = "resource.destroy")]
    ResourceDestroy,
    /// Stop, start, terminate or health-check a resource.
    #[serde(rename = "resource.action")]
    ResourceAction,
    /// Checks every provider of the tenant (scheduled by `health_check_interval`).
    #[serde(rename = "providers.health_check")]
    ProvidersHealthCheck,
    /// Deletes the tenant's old finished tasks (scheduled hourly, by `task_retention_days`).
    #[serde(rename = "tasks.retention")]
    TasksRetention,
    /// Dumps the database into the backup directory (`pg_dump`).
    #[serde(rename = "backup.create")]
    BackupCreate,
    /// Stops or terminates every running vm in a scope, and waits for each.
    #[serde(rename = "orchestrate.lockdown")]
    OrchestrateLockdown,
    /// Provisions a vm and points a DNS record at it, undoing the vm if the record fails.
    #[serde(rename = "orchestrate.vm_dns")]
    OrchestrateVmDns,
    /// Points a DNS record at a standby and verifies it.
    #[serde(rename = "orchestrate.dns_failover")]
    OrchestrateDnsFailover,
    /// Refreshes every managed resource of a provider (or of the tenant) and records drift
    /// (on request, and scheduled by `drift_check_interval`).
    #[serde(rename = "providers.sync")]
    ProvidersSync,
    /// Loads a billing export into cost records.
    #[serde(rename = "billing.import")]
    BillingImport,
    /// Running resources accrue hourly cost records (scheduled by `spending_sync_interval`).
    #[serde(rename = "billing.accrue")]
    BillingAccrue,
}

impl JobKind {
    /// Settles what a task of this kind left open when it is cancelled before it started.
    pub async fn cancelled_before_start(
        self,
        conn: &mut sqlx::PgConnection,
        task_id: Uuid,
    ) -> sqlx::Result<()> {
        match self {
            JobKind::ResourceApply | JobKind::ResourceDestroy | JobKind::ResourceAction => {
                crate::deployments::job::cancelled_before_start(conn, task_id).await
            }
            _ => Ok(()),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::DiagnosticNoop => "diagnostic.noop",
            JobKind::DiagnosticRecord => "diagnostic.record",
            JobKind::DiagnosticSleep => "diagnostic.sleep",
            JobKind::DiagnosticFail => "diagnostic.fail",
            JobKind::ResourceApply => "resource.apply",
            JobKind::ResourceDestroy => "resource.destroy",
            JobKind::ResourceAction => "resource.action",
            JobKind::ProvidersHealthCheck => "providers.health_check",
            JobKind::TasksRetention => "tasks.retention",
            JobKind::BackupCreate => "backup.create",
            JobKind::OrchestrateLockdown => "orchestrate.lockdown",
            JobKind::OrchestrateVmDns => "orchestrate.vm_dns",
            JobKind::OrchestrateDnsFailover => "orchestrate.dns_failover",
            JobKind::ProvidersSync => "providers.sync",
            JobKind::BillingImport => "billing.import",
            JobKind::BillingAccrue => "billing.accrue",
        }
    }

    pub fn queue(self) -> &'static str {
        match self {
            JobKind::ResourceApply | JobKind::ResourceDestroy | JobKind::ResourceAction => {
                PROVISIONING_QUEUE
            }
            _ => DEFAULT_QUEUE,
        }
    }

    /// Whether users may start this kind directly through `POST /tasks`.
    pub fn is_diagnostic(self) -> bool {
        self.as_str().starts_with("diagnostic.")
    }

    /// Deliveries before the task is failed for good.
    pub fn max_attempts(self) -> i32 {
        3
    }

    /// Longest a single run may take.
    pub fn timeout(self) -> Duration {
        match (self, self.queue()) {
            (
                JobKind::BackupCreate
                | JobKind::OrchestrateLockdown
                | JobKind::OrchestrateVmDns
                | JobKind::OrchestrateDnsFailover
                | JobKind::ProvidersSync
                | JobKind::BillingImport,
                _,
            )
            | (_, PROVISIONING_QUEUE) => Duration::from_secs(3 * 3600),
            _ => Duration::from_secs(15 * 60),
        }
    }

    /// Runs the job. Handlers must be idempotent: a job may be delivered again after a crash.
    pub async fn run(self, ctx: &JobContext) -> Result<Value, JobError> {
        match self {
            JobKind::DiagnosticNoop => Ok(Value::Null),
            JobKind::DiagnosticRecord => diagnostic::record(ctx).await,
            JobKind::DiagnosticSleep => diagnostic::sleep(ctx).await,
            JobKind::DiagnosticFail => diagnostic::fail(ctx).await,
            JobKind::ResourceApply | JobKind::ResourceDestroy | JobKind::ResourceAction => {
                crate::deployments::job::run(ctx).await
            }
            JobKind::ProvidersHealthCheck => crate::schedules::check_provider_health(ctx).await,
            JobKind::TasksRetention => crate::schedules::delete_old_tasks(ctx).await,
            JobKind::BackupCreate => crate::backups::create(ctx).await,
            JobKind::OrchestrateLockdown => crate::orchestrate::lockdown(ctx).await,
            JobKind::OrchestrateVmDns => crate::orchestrate::vm_dns::run(ctx).await,
            JobKind::OrchestrateDnsFailover => crate::orchestrate::dns_failover::run(ctx).await,
            JobKind::ProvidersSync => crate::providers::sync::run(ctx).await,
            JobKind::BillingImport => crate::billing::import::run(ctx).await,
            JobKind::BillingAccrue => crate::billing::accrue::run(ctx).await,
        }
    }
}

crate::db::text_enum!(JobKind);

/// What the queue carries: ids, never data.
#[derive(Debug, Serialize, Deserialize)]
pub struct JobRef {
    pub task_id: Uuid,
}

/// What a running job sees.
pub struct JobContext {
    pub state: AppState,
    pub task_id: Uuid,
    pub tenant_id: Uuid,
    pub params: Value,
    pub attempt: i32,
    pub worker: String,
    /// Cancelled when the task is cancelled: a job stops its work and returns
    /// [`JobError::Cancelled`]; one that does not is abandoned after a grace period.
    pub cancel: tokio_util::sync::CancellationToken,
}

impl JobContext {
    /// The id in `params[name]`; a task without it fails for good.
    pub fn id_param(&self, name: &str) -> Result<Uuid, JobError> {
        self.params
            .get(name)
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| JobError::Fatal(format!("params.{name} is missing")))
    }

    /// Records progress (0–100) and a message on the task.
    pub async fn progress(&self, percent: i16, message: &str) -> Result<(), JobError> {
        sqlx::query!(
            "UPDATE tasks SET progress = $2, progress_message = $3, updated_at = now()
             WHERE id = $1 AND status = 'running'",
            self.task_id,
            percent.clamp(0, 100),
            message
        )
        .execute(&self.state.db)
        .await?;
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Worth another attempt (a dependency was down, a lock was held).
    #[error("{0}")]
    Retryable(String),
    /// Will fail again however often it is tried (bad parameters, a rejected plan).
    #[error("{0}")]
    Fatal(String),
    /// Stopped because the task was cancelled.
    #[error("cancelled")]
    Cancelled,
}

impl From<sqlx::Error> for JobError {
    fn from(err: sqlx::Error) -> Self {
        JobError::Retryable(format!("database error: {err}"))
    }
}
