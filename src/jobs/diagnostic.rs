//! Diagnostic job kinds: they exercise the queue itself (throughput, crash recovery,
//! cancellation, retries) without touching any cloud.

use std::time::Duration;

use serde_json::{Value, json};

use super::{JobContext, JobError};

fn param_ms(ctx: &JobContext, name: &str) -> Result<u64, JobError> {
    match ctx.params.get(name) {
        None | Some(Value::Null) => Ok(0),
        Some(value) => value
            .as_u64()
            .filter(|ms| *ms <= 3_600_000)
            .ok_or_else(|| JobError::Fatal(format!("params.{name} must be 0 to 3600000 ms"))),
    }
}

/// Writes one effect row. The check and the write happen under a lock on the task row, so a
/// second delivery of the same task (after a crash) finds the row and writes nothing.
/// `params.hold_ms` keeps the job running after the write, to widen the window in which a
/// crash leaves a written effect behind an unfinished task.
pub async fn record(ctx: &JobContext) -> Result<Value, JobError> {
    let hold = param_ms(ctx, "hold_ms")?;
    let mut tx = ctx.state.db.begin().await?;
    sqlx::query!("SELECT id FROM tasks WHERE id = $1 FOR UPDATE", ctx.task_id)
        .fetch_one(&mut *tx)
        .await?;
    let already = sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM diagnostic_effects WHERE task_id = $1) AS "e!""#,
        ctx.task_id
    )
    .fetch_one(&mut *tx)
    .await?;
    if !already {
        sqlx::query!(
            "INSERT INTO diagnostic_effects (task_id, worker) VALUES ($1, $2)",
            ctx.task_id,
            ctx.worker
        )
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    tokio::time::sleep(Duration::from_millis(hold)).await;
    Ok(json!({ "recorded": !already }))
}

/// Sleeps `params.ms`, reporting progress in tenths.
pub async fn sleep(ctx: &JobContext) -> Result<Value, JobError> {
    let ms = param_ms(ctx, "ms")?;
    for step in 1..=10u8 {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(ms / 10)) => {}
            _ = ctx.cancel.cancelled() => return Err(JobError::Cancelled),
        }
        ctx.progress(
            i16::from(step) * 10,
            &format!("slept {} ms", ms * u64::from(step) / 10),
        )
        .await?;
    }
    Ok(json!({ "slept_ms": ms }))
}

/// Fails on purpose; `params.retryable` decides whether another attempt is made.
pub async fn fail(ctx: &JobContext) -> Result<Value, JobError> {
    let message = ctx
        .params
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("diagnostic failure")
        .to_string();
    if ctx.params.get("retryable").and_then(Value::as_bool) == Some(true) {
        Err(JobError::Retryable(message))
    } else {
        Err(JobError::Fatal(message))
    }
}
