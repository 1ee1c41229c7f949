//! The worker runtime: one supervised apalis worker per queue, task execution keyed on the
//! `tasks` row, cancellation, retention of finished queue rows, and the scheduler of periodic
//! work (`schedules`).
//!
//! apalis-postgres 1.0 traps this module handles (found by running it):
//! - new jobs wait for a poll unless the worker listens: `with_pubsub()` plus an interval poll;
//! - a dead worker's jobs wait for an orphan timeout of heartbeat × missed beats: 3 s × 3;
//! - a worker restarted under its old name leaves its jobs "Running": names are unique per start;
//! - a worker whose poll fails (database down, undecodable payload) stops and strands its
//!   batch: the supervisor releases the batch (failing only undecodable jobs) and restarts;
//! - finished jobs are never deleted: the retention loop deletes them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use apalis::prelude::*;
use apalis_postgres::{Config, PostgresStorage};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{JobContext, JobError, JobKind, JobRef, QUEUES};
use crate::state::AppState;

/// How long a cancelled job may take to stop by itself before it is abandoned.
const CANCEL_GRACE: Duration = Duration::from_secs(60);

/// The channel `POST /tasks/{id}/cancel` notifies with the task id.
pub const CANCEL_CHANNEL: &str = "strata_task_cancel";

#[derive(Debug, Clone)]
pub struct WorkerOptions {
    pub concurrency: usize,
    pub heartbeat: Duration,
    pub retention: Duration,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self {
            concurrency: 8,
            heartbeat: Duration::from_secs(3),
            retention: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// Tokens of the tasks running in this process, so a cancel notification can stop one.
#[derive(Clone, Default)]
struct RunningTasks(Arc<Mutex<HashMap<Uuid, CancellationToken>>>);

impl RunningTasks {
    fn register(&self, task_id: Uuid) -> CancellationToken {
        let token = CancellationToken::new();
        self.lock().insert(task_id, token.clone());
        token
    }

    fn remove(&self, task_id: Uuid) {
        self.lock().remove(&task_id);
    }

    fn cancel(&self, task_id: Uuid) {
        if let Some(token) = self.lock().get(&task_id) {
            token.cancel();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, CancellationToken>> {
        // A panic while holding this lock cannot leave the map inconsistent.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Runs workers for every queue until `shutdown` is cancelled, then lets running jobs finish.
pub async fn run(state: AppState, options: WorkerOptions, shutdown: CancellationToken) {
    let running = RunningTasks::default();
    let mut handles = vec![
        tokio::spawn(listen_for_cancels(
            state.clone(),
            running.clone(),
            shutdown.clone(),
        )),
        tokio::spawn(retention_loop(
            state.clone(),
            options.retention,
            shutdown.clone(),
        )),
        tokio::spawn(crate::schedules::run(state.clone(), shutdown.clone())),
    ];
    for queue in QUEUES {
        handles.push(tokio::spawn(supervise(
            state.clone(),
            queue,
            options.clone(),
            running.clone(),
            shutdown.clone(),
        )));
    }
    for handle in handles {
        if let Err(err) = handle.await {
            tracing::error!(error = %err, "a worker task panicked");
        }
    }
}

/// A name no other worker has ever had: apalis keys job ownership on it.
fn unique_worker_name(queue: &str) -> String {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "host".into());
    format!(
        "{queue}@{host}/{}/{}",
        std::process::id(),
        ulid::Ulid::new()
    )
}

/// Keeps one apalis worker running for `queue`, restarting it under a new name if it stops.
async fn supervise(
    state: AppState,
    queue: &'static str,
    options: WorkerOptions,
    running: RunningTasks,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(250);
    while !shutdown.is_cancelled() {
        let name = unique_worker_name(queue);
        let config = Config::default()
            .queue(queue)
            .batch_size(options.concurrency.max(1))
            .heartbeat_interval(options.heartbeat)
            .missed_heartbeats(3);
        let backend = PostgresStorage::<Value>::new(&state.db)
            .with_config(config)
            .with_pubsub()
            .poll_with_strategy(Strategy::new().interval(Duration::from_secs(1)));
        let executor = Executor {
            state: state.clone(),
            running: running.clone(),
            worker: name.clone(),
        };
        let worker = WorkerBuilder::new(name.as_str())
            .backend(backend)
            .data(executor)
            .concurrency(options.concurrency.max(1))
            .build(handle_job);
        tracing::info!(worker = %name, "worker started");
        let started = Instant::now();
        let stop = shutdown.clone();
        let result = worker
            .run_until(async move {
                stop.cancelled().await;
                Ok::<(), std::io::Error>(())
            })
            .await;
        match result {
            Ok(()) if shutdown.is_cancelled() => {
                tracing::info!(worker = %name, "worker stopped");
                break;
            }
            Ok(()) => tracing::warn!(worker = %name, "worker stopped by itself; restarting"),
            Err(err) => tracing::error!(worker = %name, error = %err, "worker failed; restarting"),
        }
        if let Err(err) = release_stranded_jobs(&state, &name).await {
            tracing::warn!(worker = %name, error = %err, "cannot release the worker's jobs yet");
        }
        if started.elapsed() > Duration::from_secs(30) {
            backoff = Duration::from_millis(250);
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.cancelled() => break,
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

/// Gives the jobs a stopped worker had claimed back to the queue at once, instead of after the
/// orphan timeout. A job whose payload is not a task reference is failed, alone, with a clear
/// error, so it cannot stop the next worker too.
pub async fn release_stranded_jobs(state: &AppState, worker: &str) -> anyhow::Result<()> {
    let stranded = sqlx::query!(
        "SELECT id, job FROM apalis.jobs WHERE lock_by = $1 AND status IN ('Queued', 'Running')",
        worker
    )
    .fetch_all(&state.db)
    .await?;
    for job in stranded {
        match serde_json::from_slice::<JobRef>(&job.job) {
            Ok(_) => {
                sqlx::query!(
                    "UPDATE apalis.jobs SET status = 'Pending', lock_by = NULL, lock_at = NULL
                     WHERE id = $1 AND lock_by = $2",
                    job.id,
                    worker
                )
                .execute(&state.db)
                .await?;
            }
            Err(err) => {
                tracing::error!(job_id = %job.id, error = %err, "failing a job whose payload is not a task reference");
                sqlx::query!(
                    "UPDATE apalis.jobs SET status = 'Killed', done_at = now(), lock_by = NULL,
                            last_result = jsonb_build_object('Err', $2::text)
                     WHERE id = $1 AND lock_by = $3",
                    job.id,
                    format!("undecodable job payload: {err}"),
                    worker
                )
                .execute(&state.db)
                .await?;
            }
        }
    }
    Ok(())
}

#[derive(Clone)]
struct Executor {
    state: AppState,
    running: RunningTasks,
    worker: String,
}

/// The apalis handler. The payload is taken as any JSON value and decoded here, so a bad
/// payload fails its own job instead of the worker's poll.
async fn handle_job(payload: Value, executor: Data<Executor>) -> Result<(), BoxDynError> {
    let job = match serde_json::from_value::<JobRef>(payload) {
        Ok(job) => job,
        Err(err) => {
            tracing::error!(error = %err, "job payload is not a task reference");
            return Err(AbortError::new(format!("undecodable job payload: {err}")).into());
        }
    };
    executor.execute(job.task_id).await
}

/// What the claim of a task found.
struct Claimed {
    tenant_id: Uuid,
    kind: String,
    params: Value,
    attempts: i32,
    max_attempts: i32,
    job_id: String,
    cancel_requested: bool,
}

enum Outcome {
    Succeeded(Value),
    Failed(JobError),
    Cancelled,
    TimedOut(Duration),
}

impl Executor {
    async fn execute(&self, task_id: Uuid) -> Result<(), BoxDynError> {
        let db = &self.state.db;
        // A task already finished or cancelled is acknowledged and skipped: delivery is
        // at-least-once, and this row decides.
        let Some(task) = sqlx::query_as!(
            Claimed,
            "UPDATE tasks SET status = 'running', attempts = attempts + 1, worker = $2,
                    started_at = COALESCE(started_at, now()), updated_at = now()
             WHERE id = $1 AND status IN ('queued', 'running')
             RETURNING tenant_id, kind, params, attempts, max_attempts, job_id, cancel_requested",
            task_id,
            self.worker
        )
        .fetch_optional(db)
        .await?
        else {
            return Ok(());
        };
        let outcome = if task.cancel_requested {
            Outcome::Cancelled
        } else {
            match task.kind.parse::<JobKind>() {
                Ok(kind) => self.run_kind(kind, task_id, &task).await,
                Err(err) => Outcome::Failed(JobError::Fatal(err.to_string())),
            }
        };
        self.finish(task_id, &task, outcome).await
    }

    async fn run_kind(&self, kind: JobKind, task_id: Uuid, task: &Claimed) -> Outcome {
        let cancel = self.running.register(task_id);
        let ctx = JobContext {
            state: self.state.clone(),
            task_id,
            tenant_id: task.tenant_id,
            params: task.params.clone(),
            attempt: task.attempts,
            worker: self.worker.clone(),
            cancel: cancel.clone(),
        };
        let timeout = kind.timeout();
        let job = kind.run(&ctx);
        tokio::pin!(job);
        let result = tokio::select! {
            result = &mut job => Some(result),
            _ = cancel.cancelled() => None,
            _ = tokio::time::sleep(timeout) => {
                // Past its time: ask the job to stop as if cancelled, then report the timeout.
                cancel.cancel();
                let _ = tokio::time::timeout(CANCEL_GRACE, &mut job).await;
                self.running.remove(task_id);
                return Outcome::TimedOut(timeout);
            }
        };
        // A cancelled job gets time to stop its work cleanly (Terraform releases its lock).
        let result = match result {
            Some(result) => result,
            None => tokio::time::timeout(CANCEL_GRACE, &mut job)
                .await
                .unwrap_or(Err(JobError::Cancelled)),
        };
        self.running.remove(task_id);
        match result {
            Ok(value) => Outcome::Succeeded(value),
            Err(JobError::Cancelled) => Outcome::Cancelled,
            Err(_) if cancel.is_cancelled() => Outcome::Cancelled,
            Err(err) => Outcome::Failed(err),
        }
    }

    async fn finish(
        &self,
        task_id: Uuid,
        task: &Claimed,
        outcome: Outcome,
    ) -> Result<(), BoxDynError> {
        let db = &self.state.db;
        match outcome {
            Outcome::Succeeded(result) => {
                sqlx::query!(
                    "UPDATE tasks SET status = 'succeeded', result = $2, error = NULL, progress = 100,
                            finished_at = now(), updated_at = now()
                     WHERE id = $1 AND status = 'running'",
                    task_id,
                    result
                )
                .execute(db)
                .await?;
                Ok(())
            }
            Outcome::Cancelled => {
                let mut tx = db.begin().await?;
                sqlx::query!(
                    "UPDATE tasks SET status = 'cancelled', error = 'cancelled by request',
                            finished_at = now(), updated_at = now()
                     WHERE id = $1 AND status = 'running'",
                    task_id
                )
                .execute(&mut *tx)
                .await?;
                // Work the job left waiting for its next attempt is settled too.
                if let Ok(kind) = task.kind.parse::<JobKind>() {
                    kind.cancelled_before_start(&mut tx, task_id).await?;
                }
                tx.commit().await?;
                Ok(())
            }
            Outcome::Failed(JobError::Retryable(message)) if task.attempts < task.max_attempts => {
                // Back off 2, 4, 8 ... seconds (at most a minute) before the next delivery.
                let delay = 2f64.powi(task.attempts).min(60.0);
                sqlx::query!(
                    "UPDATE tasks SET status = 'queued', error = $2, updated_at = now()
                     WHERE id = $1 AND status = 'running'",
                    task_id,
                    message
                )
                .execute(db)
                .await?;
                sqlx::query!(
                    "UPDATE apalis.jobs SET run_at = now() + make_interval(secs => $2) WHERE id = $1",
                    task.job_id,
                    delay
                )
                .execute(db)
                .await?;
                // An error makes apalis deliver the job again.
                Err(message.into())
            }
            Outcome::Failed(err) => self.fail(task_id, &err.to_string()).await,
            Outcome::TimedOut(limit) => {
                self.fail(task_id, &format!("timed out after {} s", limit.as_secs()))
                    .await
            }
        }
    }

    async fn fail(&self, task_id: Uuid, message: &str) -> Result<(), BoxDynError> {
        sqlx::query!(
            "UPDATE tasks SET status = 'failed', error = $2, finished_at = now(), updated_at = now()
             WHERE id = $1 AND status = 'running'",
            task_id,
            message
        )
        .execute(&self.state.db)
        .await?;
        Ok(())
    }
}

/// Listens for cancel requests and stops the matching running task, if it runs here.
async fn listen_for_cancels(state: AppState, running: RunningTasks, shutdown: CancellationToken) {
    while !shutdown.is_cancelled() {
        let listener = async {
            let mut listener = sqlx::postgres::PgListener::connect_with(&state.db).await?;
            listener.listen(CANCEL_CHANNEL).await?;
            loop {
                let notification = listener.recv().await?;
                if let Ok(task_id) = notification.payload().parse::<Uuid>() {
                    running.cancel(task_id);
                }
            }
            #[allow(unreachable_code)]
            Ok::<(), sqlx::Error>(())
        };
        tokio::select! {
            result = listener => {
                if let Err(err) = result {
                    tracing::warn!(error = %err, "cancel listener lost its connection; reconnecting");
                }
            }
            _ = shutdown.cancelled() => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Deletes finished queue rows older than the retention, and long-dead workers. The tasks
/// table keeps its own record of every task.
async fn retention_loop(state: AppState, retention: Duration, shutdown: CancellationToken) {
    loop {
        match delete_finished_jobs(&state, retention).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "deleted finished queue rows"),
            Err(err) => tracing::warn!(error = %err, "queue retention failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(600)) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

pub async fn delete_finished_jobs(state: &AppState, retention: Duration) -> anyhow::Result<u64> {
    crate::idempotency::delete_expired(&state.db).await?;
    let seconds = retention.as_secs_f64();
    let jobs = sqlx::query!(
        "DELETE FROM apalis.jobs
         WHERE (status IN ('Done', 'Killed') OR (status = 'Failed' AND attempts >= max_attempts))
           AND done_at < now() - make_interval(secs => $1)",
        seconds
    )
    .execute(&state.db)
    .await?
    .rows_affected();
    sqlx::query!(
        "DELETE FROM apalis.workers w WHERE last_seen < now() - make_interval(secs => $1)
           AND NOT EXISTS (SELECT 1 FROM apalis.jobs j WHERE j.lock_by = w.id)",
        seconds.max(86_400.0)
    )
    .execute(&state.db)
    .await?;
    Ok(jobs)
}
