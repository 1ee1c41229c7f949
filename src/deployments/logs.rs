//! A deployment's log: lines appended in order with a gapless `seq`, secrets redacted, each
//! batch announced with `pg_notify` so every API replica can forward it at once.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use tokio::sync::mpsc;
use utoipa::ToSchema;
use uuid::Uuid;

/// The channel a batch of new lines is announced on, with the deployment id as payload.
pub const LOG_CHANNEL: &str = "strata_deployment_log";

/// One stored line, as the API and the WebSocket send it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LogLine {
    pub seq: i64,
    pub ts: DateTime<Utc>,
    /// `info`, `warn`, `error` (Terraform's `@level`), or `debug`.
    pub level: String,
    /// Terraform's message type (`apply_start`, `diagnostic`, ...), or `stdout`, `stderr`,
    /// `system` for lines that are not Terraform JSON.
    #[serde(rename = "type")]
    pub type_: String,
    pub message: String,
}

/// A line before it is stored.
#[derive(Debug)]
pub struct NewLine {
    pub ts: DateTime<Utc>,
    pub level: String,
    pub type_: String,
    pub message: String,
}

/// Appends lines from a running deployment. Lines are queued without waiting; a task writes
/// them in batches (whatever has arrived since the last write) to keep latency low.
pub struct LogWriter {
    tx: mpsc::UnboundedSender<NewLine>,
    task: tokio::task::JoinHandle<()>,
}

impl LogWriter {
    pub async fn start(
        db: PgPool,
        deployment_id: Uuid,
        secrets: Vec<String>,
    ) -> sqlx::Result<Self> {
        let last = sqlx::query_scalar!(
            r#"SELECT COALESCE(max(seq), 0) AS "seq!" FROM deployment_logs WHERE deployment_id = $1"#,
            deployment_id
        )
        .fetch_one(&db)
        .await?;
        // Longest first, so a secret containing another is replaced whole.
        let mut secrets: Vec<String> = secrets.into_iter().filter(|s| s.len() >= 4).collect();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(write_loop(db, deployment_id, last, secrets, rx));
        Ok(Self { tx, task })
    }

    pub fn line(&self, level: &str, type_: &str, message: impl Into<String>) {
        self.line_at(Utc::now(), level, type_, message);
    }

    /// One warning per drifted attribute (`{attribute, expected, actual}`, as a refresh reports).
    pub fn drift(&self, drift: &[serde_json::Value]) {
        for change in drift {
            self.line(
                "warn",
                "drift",
                format!(
                    "{}: expected {}, found {}",
                    change["attribute"].as_str().unwrap_or_default(),
                    change["expected"],
                    change["actual"]
                ),
            );
        }
    }

    pub fn line_at(&self, ts: DateTime<Utc>, level: &str, type_: &str, message: impl Into<String>) {
        let _ = self.tx.send(NewLine {
            ts,
            level: level.to_string(),
            type_: type_.to_string(),
            message: message.into(),
        });
    }

    /// Waits until every queued line is stored.
    pub async fn finish(self) {
        drop(self.tx);
        let _ = self.task.await;
    }
}

pub fn redact(message: &str, secrets: &[String]) -> String {
    let mut out = message.to_string();
    for secret in secrets {
        if out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), "***");
        }
    }
    out
}

async fn write_loop(
    db: PgPool,
    deployment_id: Uuid,
    mut last: i64,
    secrets: Vec<String>,
    mut rx: mpsc::UnboundedReceiver<NewLine>,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < 500 {
            match rx.try_recv() {
                Ok(line) => batch.push(line),
                Err(_) => break,
            }
        }
        let seqs: Vec<i64> = (1..=batch.len() as i64).map(|i| last + i).collect();
        let ts: Vec<DateTime<Utc>> = batch.iter().map(|l| l.ts).collect();
        let levels: Vec<String> = batch.iter().map(|l| l.level.clone()).collect();
        let types: Vec<String> = batch.iter().map(|l| l.type_.clone()).collect();
        let messages: Vec<String> = batch.iter().map(|l| redact(&l.message, &secrets)).collect();
        // Log lines commit without waiting for the disk (a WAL flush can take 100 ms here):
        // the deployment's final status commits synchronously, which flushes every line
        // before it, so only a database crash mid-run can lose its last lines.
        // A database hiccup must not lose lines: retry for a while before giving up.
        let mut delay = std::time::Duration::from_millis(100);
        loop {
            let result = sqlx::query!(
                "WITH stored AS (
                     INSERT INTO deployment_logs (deployment_id, seq, ts, level, type, message)
                     SELECT $1, * FROM UNNEST($2::bigint[], $3::timestamptz[], $4::text[], $5::text[], $6::text[])
                     RETURNING seq
                 )
                 SELECT pg_notify($7, $1::text), set_config('synchronous_commit', 'off', true)
                 FROM (SELECT 1 FROM stored LIMIT 1) s",
                deployment_id,
                &seqs,
                &ts,
                &levels,
                &types,
                &messages,
                LOG_CHANNEL
            )
            .fetch_all(&db)
            .await;
            match result {
                Ok(_) => break,
                Err(err) if delay < std::time::Duration::from_secs(30) => {
                    tracing::warn!(%deployment_id, error = %err, "cannot store log lines yet; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(err) => {
                    tracing::error!(%deployment_id, error = %err, lines = batch.len(), "log lines lost");
                    break;
                }
            }
        }
        last += batch.len() as i64;
    }
}

/// Stored lines after `from_seq`, oldest first.
pub async fn lines_after(
    db: &PgPool,
    deployment_id: Uuid,
    from_seq: i64,
    limit: i64,
) -> sqlx::Result<Vec<LogLine>> {
    sqlx::query_as!(
        LogLine,
        r#"SELECT seq, ts, level, type AS "type_", message FROM deployment_logs
           WHERE deployment_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"#,
        deployment_id,
        from_seq,
        limit
    )
    .fetch_all(db)
    .await
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn secrets_are_replaced_longest_first() {
        let secrets = vec!["hunter2-long".to_string(), "hunter2".to_string()];
        assert_eq!(
            redact("key=hunter2-long and hunter2", &secrets),
            "key=*** and ***"
        );
        assert_eq!(redact("nothing here", &secrets), "nothing here");
    }
}
