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
pub const QUEUES: &[&str] = &[DEFAULT_QUEUE];

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
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::DiagnosticNoop => "diagnostic.noop",
            JobKind::DiagnosticRecord => "diagnostic.record",
            JobKind::DiagnosticSleep => "diagnostic.sleep",
            JobKind::DiagnosticFail => "diagnostic.fail",
        }
    }

    pub fn queue(self) -> &'static str {
        DEFAULT_QUEUE
    }

    /// Deliveries before the task is failed for good.
    pub fn max_attempts(self) -> i32 {
        3
    }

    /// Longest a single run may take.
    pub fn timeout(self) -> Duration {
        Duration::from_secs(15 * 60)
    }

    /// Runs the job. Handlers must be idempotent: a job may be delivered again after a crash.
    pub async fn run(self, ctx: &JobContext) -> Result<Value, JobError> {
        match self {
            JobKind::DiagnosticNoop => Ok(Value::Null),
            JobKind::DiagnosticRecord => diagnostic::record(ctx).await,
            JobKind::DiagnosticSleep => diagnostic::sleep(ctx).await,
            JobKind::DiagnosticFail => diagnostic::fail(ctx).await,
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
}

impl JobContext {
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
}

impl From<sqlx::Error> for JobError {
    fn from(err: sqlx::Error) -> Self {
        JobError::Retryable(format!("database error: {err}"))
    }
}
