//! `billing.import`: streams a billing export (the uploaded chunks, a URL, or every part a
//! manifest lists) through gzip and CSV, converts each row to FOCUS columns, and COPYs the good
//! rows into `cost_records`, all in one transaction: what the import replaces of earlier imports
//! (the same file, or whole billing periods) goes, and the daily rollup gains the import's rows.
//! A failed import leaves nothing behind; its task shows progress while it runs, and
//! `/ws/events` hears when it ends.
//!
//! Speed comes from reading the rows once: while they stream to COPY they are matched to
//! Strata's resources by their ResourceId, given the tenant's own service categories, and
//! summed into the rollup, the totals, the periods and the unmapped services, so nothing after
//! the COPY reads them back (unless a re-import removed rows, whose
//! days are then recomputed in SQL).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use axum::body::Bytes;
use chrono::{DateTime, Utc};
use futures::{Stream, TryStreamExt};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::io::{StreamReader, SyncIoBridge};
use uuid::Uuid;

use super::binary_copy::{self, Tuples};
use super::formats::{COLUMNS, Converter, Field, Format, Kind, kinds};
use super::rollup::{self, Amounts, CURRENCY, RESOURCE_ID, Rollup, column};
use crate::catalog::services::{ServiceMappings, UnmappedSeen};
use crate::jobs::{JobContext, JobError};
use crate::state::AppState;

/// Rejected rows kept as examples on the import.
const EXAMPLES: usize = 20;
/// Bytes of COPY data sent at once.
const BATCH_BYTES: usize = 256 * 1024;

// [`Times`] are the time columns in their order.
const _: () = assert!(
    column("charge_period_start") < column("charge_period_end")
        && column("charge_period_end") < column("billing_period_start")
        && column("billing_period_start") < column("billing_period_end")
);
const PROVIDER: usize = column("provider_name");
const SERVICE: usize = column("service_name");
const CATEGORY: usize = column("service_category");
const ACCOUNT: usize = column("billing_account_id");

struct Outcome {
    /// The first file's format (none when there was no file).
    format: Option<Format>,
    /// SHA-256 of the CSV text of every file, in hex.
    content_sha256: String,
    rows_read: u64,
    rows_rejected: u64,
    examples: Vec<Value>,
    tally: Tally,
}

/// What the loaded rows add up to, counted as they stream by, so that nothing has to read them
/// back: the rollup, the totals, the charge period covered and the billing periods held.
#[derive(Default)]
struct Tally {
    rollup: Rollup,
    /// Billed, effective, list and contracted cost per currency (`None` where every row left
    /// it empty).
    totals: BTreeMap<String, [Option<Decimal>; 4]>,
    exact: bool,
    first_charge: Option<DateTime<Utc>>,
    last_charge: Option<DateTime<Utc>>,
    period_end: Option<DateTime<Utc>>,
    /// (ProviderName, BillingAccountId, BillingPeriodStart), '' for a missing name.
    periods: HashSet<(String, String, Option<DateTime<Utc>>)>,
    last_period: Option<(String, String, Option<DateTime<Utc>>)>,
    /// Services loaded with no category and no mapping of the tenant's.
    unmapped: UnmappedSeen,
}

impl Tally {
    fn new() -> Self {
        Self {
            exact: true,
            ..Self::default()
        }
    }

    /// Adds a loaded row: its values, [`rollup::amounts`] and times (as [`write_tuple`] read
    /// them: charge period start and end, billing period start and end).
    fn add(&mut self, values: &[Field<'_>], amounts: &Amounts, times: &Times) {
        self.rollup.add(values, amounts);
        let text = |i: usize| values[i].as_deref();
        let [start, end, period, _] = *times;
        self.first_charge = match (self.first_charge, start) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last_charge = self.last_charge.max(start);
        self.period_end = self.period_end.max(end.or(start));
        // Rows of one period come together: the set is only asked when the period changes.
        let (provider, account) = (text(PROVIDER).unwrap_or(""), text(ACCOUNT).unwrap_or(""));
        let same = self
            .last_period
            .as_ref()
            .is_some_and(|(p, a, s)| p == provider && a == account && *s == period);
        if !same {
            let key = (provider.to_string(), account.to_string(), period);
            self.periods.insert(key.clone());
            self.last_period = Some(key);
        }
        if !self.exact {
            return;
        }
        let currency = text(CURRENCY).unwrap_or_default();
        let totals = match self.totals.get_mut(currency) {
            Some(totals) => totals,
            None => self.totals.entry(currency.to_string()).or_default(),
        };
        for (total, amount) in totals.iter_mut().zip(amounts) {
            match amount {
                Ok(None) => {}
                Ok(Some(v)) => match total.unwrap_or_default().checked_add(*v) {
                    Some(sum) => *total = Some(sum),
                    None => self.exact = false,
                },
                Err(()) => self.exact = false,
            }
        }
    }

    /// The totals as shown on the import, or `None` when a sum was beyond exact decimals.
    fn totals(&self) -> Option<serde_json::Map<String, Value>> {
        let shown = |d: &Option<Decimal>| d.map(|d| d.to_string());
        self.exact.then(|| {
            self.totals
                .iter()
                .map(|(currency, [billed, effective, list, contracted])| {
                    (
                        currency.clone(),
                        json!({"billed_cost": shown(billed).unwrap_or_else(|| "0".into()),
                               "effective_cost": shown(effective), "list_cost": shown(list),
                               "contracted_cost": shown(contracted)}),
                    )
                })
                .collect()
        })
    }
}

/// The import as its job reads it.
struct ImportJob {
    tenant_id: Uuid,
    provider_id: Option<Uuid>,
    source: String,
    url: Option<String>,
    parts: Option<Vec<String>>,
    format: String,
    defaults: Value,
    source_key: Option<String>,
    replace_mode: String,
    dataset: Option<String>,
    bytes: i64,
}

pub async fn run(ctx: &JobContext) -> Result<Value, JobError> {
    let id = ctx.id_param("import_id")?;
    let db = &ctx.state.db;
    let import = sqlx::query_as!(
        ImportJob,
        "UPDATE billing_imports SET status = 'running', parts_read = 0 WHERE id = $1
         RETURNING tenant_id, provider_id, source, url, parts, format, defaults, source_key,
                   replace_mode, dataset, bytes",
        id
    )
    .fetch_optional(db)
    .await?
    .ok_or_else(|| JobError::Fatal(format!("import {id} does not exist")))?;
    let tenant_id = import.tenant_id;
    let result = load(ctx, id, import).await;
    let err = match result {
        Ok(summary) => return Ok(summary),
        Err(err) => err,
    };
    let (status, message) = match &err {
        JobError::Cancelled => ("cancelled", "cancelled by request".to_string()),
        other => ("failed", other.to_string()),
    };
    // A passing failure is tried again; the import stays queued meanwhile.
    let retry = matches!(err, JobError::Retryable(_))
        && ctx.attempt < crate::jobs::JobKind::BillingImport.max_attempts();
    let status = if retry { "queued" } else { status };
    let mut tx = db.begin().await?;
    sqlx::query!(
        "UPDATE billing_imports SET status = $2, error = $3,
                finished_at = CASE WHEN $2 = 'queued' THEN NULL ELSE now() END
         WHERE id = $1",
        id,
        status,
        message
    )
    .execute(&mut *tx)
    .await?;
    if retry {
        tracing::info!(import_id = %id, task_id = %ctx.task_id, attempt = ctx.attempt, reason = %message,
                       "billing import failed; it will be tried again");
    } else {
        sqlx::query!("SELECT billing_upload_drop($1)", id)
            .execute(&mut *tx)
            .await?;
        if status == "failed" {
            tracing::warn!(import_id = %id, task_id = %ctx.task_id, attempt = ctx.attempt, reason = %message,
                           "billing import failed");
        }
        let event = json!({"type": format!("import.{status}"), "import_id": id,
                           "task_id": ctx.task_id, "error": message});
        crate::events::announce(&mut tx, tenant_id, event).await?;
    }
    tx.commit().await?;
    Err(err)
}

/// Where an import's bytes come from: the uploaded chunks, or one URL per file.
#[derive(Debug, Clone)]
enum Source {
    Upload { bytes: u64 },
    Url(String),
}

/// The files an import reads, in order, and whether they make up whole billing periods: a
/// manifest (or a list of parts) is every file of its periods.
async fn sources(
    state: &AppState,
    import: &ImportJob,
) -> Result<(Vec<Source>, bool, Option<&'static str>), JobError> {
    let url = match (import.source.as_str(), &import.url) {
        ("url", Some(url)) => url,
        _ => {
            let bytes = import.bytes.max(0) as u64;
            return Ok((vec![Source::Upload { bytes }], false, None));
        }
    };
    let looks_like_manifest =
        reqwest::Url::parse(url).is_ok_and(|u| u.path().to_ascii_lowercase().ends_with(".json"));
    let manifest = if looks_like_manifest {
        let body = fetch_small(url, &state.settings.outbound, MANIFEST_BYTES).await?;
        Some(super::manifest::parse(url, &body).map_err(JobError::Fatal)?)
    } else {
        None
    };
    let dataset = manifest.as_ref().and_then(|m| m.dataset);
    Ok(match (&import.parts, manifest) {
        (Some(parts), _) => (
            parts.iter().cloned().map(Source::Url).collect(),
            true,
            dataset,
        ),
        (None, Some(manifest)) => (
            manifest.parts.into_iter().map(Source::Url).collect(),
            true,
            dataset,
        ),
        (None, None) => (vec![Source::Url(url.clone())], false, None),
    })
}

/// Largest manifest read.
const MANIFEST_BYTES: usize = 16 << 20;

/// What the import has done so far, shared with the thread that reads the files.
#[derive(Default)]
struct Progress {
    rows: AtomicU64,
    /// Bytes of the current file read, and its length (0 when not known).
    bytes: AtomicU64,
    length: AtomicU64,
    /// Files read completely, of `files`.
    done: AtomicU64,
    files: AtomicU64,
    /// Bytes of every file read so far.
    total_bytes: AtomicU64,
}

impl Progress {
    /// Percent done: files read, plus the share of the current one when its length is known.
    fn percent(&self) -> i16 {
        let files = self.files.load(Relaxed).max(1);
        let done = self.done.load(Relaxed);
        let length = self.length.load(Relaxed);
        let current = match length {
            0 => 0,
            n => self.bytes.load(Relaxed).min(n) * 100 / n,
        };
        ((done * 100 + current) / files).min(99) as i16
    }

    fn message(&self) -> String {
        let files = self.files.load(Relaxed);
        let mut message = format!(
            "{} rows read, {:.1} MiB",
            self.rows.load(Relaxed),
            (self.total_bytes.load(Relaxed) + self.bytes.load(Relaxed)) as f64 / 1048576.0
        );
        let length = self.length.load(Relaxed);
        if length > 0 && files == 1 {
            message += &format!(" of {:.1} MiB", length as f64 / 1048576.0);
        }
        if files > 1 {
            message += &format!(
                ", file {} of {files}",
                (self.done.load(Relaxed) + 1).min(files)
            );
        }
        message
    }
}

async fn load(ctx: &JobContext, id: Uuid, import: ImportJob) -> Result<Value, JobError> {
    let state = &ctx.state;
    let tenant_id = import.tenant_id;
    let asked = match import.format.as_str() {
        "auto" => None,
        other => Some(
            Format::parse(other)
                .ok_or_else(|| JobError::Fatal(format!("unknown format {other}")))?,
        ),
    };
    let (files, whole_periods, manifest_dataset) = sources(state, &import).await?;
    let replace_mode = if whole_periods {
        "period"
    } else {
        import.replace_mode.as_str()
    };
    let dataset = import
        .dataset
        .clone()
        .or(manifest_dataset.map(str::to_string));

    let mut tx = state.db.begin().await?;
    // Charges are matched to Strata's resources by their ResourceId as they stream by.
    let resources: HashMap<String, Uuid> = sqlx::query!(
        r#"SELECT cloud_id AS "cloud_id!", id FROM resources
           WHERE tenant_id = $1 AND cloud_id IS NOT NULL AND status <> 'destroyed'"#,
        tenant_id
    )
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .map(|r| (r.cloud_id, r.id))
    .collect();
    // So are the tenant's own service categories.
    let mappings = ServiceMappings::load(&mut tx, tenant_id).await?;
    // The rows go to a table of the import's own, made in this transaction (so FREEZE: no
    // later pass has to mark them visible) and indexed and attached once they are in.
    let table = sqlx::query_scalar!(
        r#"SELECT cost_records_import_table($1, $2) AS "table!""#,
        tenant_id,
        id
    )
    .fetch_one(&mut *tx)
    .await?;
    let mut copy = tx
        .copy_in_raw(&format!(
            "COPY {table} (tenant_id, import_id, provider_id, resource_ref, {}) FROM STDIN WITH (FORMAT binary, FREEZE)",
            COLUMNS.join(", ")
        ))
        .await?;

    // CSV is read and converted on a blocking thread; COPY data comes back in batches.
    let (batches, mut received) = mpsc::channel::<Vec<u8>>(4);
    let progress = Arc::new(Progress::default());
    progress.files.store(files.len() as u64, Relaxed);
    let reading = Reading {
        opener: Opener {
            handle: tokio::runtime::Handle::current(),
            state: state.clone(),
            import_id: id,
        },
        files,
        asked,
        defaults: import.defaults.clone(),
        prefix: Prefix {
            tenant_id,
            import_id: id,
            provider_id: import.provider_id,
        },
        progress: progress.clone(),
    };
    let parsing =
        tokio::task::spawn_blocking(move || reading.convert(&resources, &mappings, &batches));

    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            batch = received.recv() => match batch {
                Some(batch) => {
                    copy.send(batch).await?;
                }
                None => break,
            },
            _ = tick.tick() => {
                // Progress goes through the pool, outside the import's transaction; a lost
                // update only delays the next one.
                ctx.progress(progress.percent(), &progress.message()).await.ok();
            }
            _ = ctx.cancel.cancelled() => {
                copy.abort("cancelled").await.ok();
                return Err(JobError::Cancelled);
            }
        }
    }
    let outcome = match parsing.await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(err)) => {
            copy.abort(err.to_string()).await.ok();
            return Err(err);
        }
        Err(err) => {
            copy.abort("the reader stopped").await.ok();
            return Err(JobError::Fatal(format!("the reader stopped: {err}")));
        }
    };
    let rows_loaded = copy.finish().await?;
    let Outcome {
        format,
        rows_read,
        rows_rejected,
        examples,
        tally,
        content_sha256,
    } = outcome;

    // Attached before earlier imports' rows are deleted: two imports of one tenant then queue
    // here, before either holds a lock on the other's rows.
    sqlx::query!("SELECT cost_records_attach_import($1, $2)", tenant_id, id)
        .execute(&mut *tx)
        .await?;
    let identity = Identity {
        provider_id: import.provider_id,
        source_key: import.source_key.as_deref(),
        content_sha256: &content_sha256,
        replace_mode,
        dataset: dataset.as_deref(),
    };
    let replaced = replace_earlier(&mut tx, id, tenant_id, &tally, &identity).await?;
    let (start, end) = (tally.first_charge, tally.last_charge);
    let totals = match (
        replaced.rows,
        tally.totals(),
        tally.rollup.finish(tenant_id),
    ) {
        // The usual case: everything this import adds to the rollup was summed on the way.
        (0, Some(totals), Some(rollup)) => {
            let mut copy = tx.copy_in_raw(super::rollup::COPY_DAILY).await?;
            copy.send(rollup).await?;
            copy.finish().await?;
            if let (Some(first), Some(last)) = (start, end) {
                super::rollup::compact(&mut tx, tenant_id, first, last).await?;
            }
            totals
        }
        // Rows went, or a sum was beyond exact decimals: Postgres sums from the records.
        (_, totals, _) => {
            let days = [start, replaced.first, end, replaced.last];
            let first = days.iter().flatten().min();
            let last = days.iter().flatten().max();
            if let (Some(first), Some(last)) = (first, last) {
                super::rollup::recompute(&mut tx, tenant_id, *first, *last).await?;
            }
            match totals {
                Some(totals) => totals,
                None => totals_in_sql(&mut tx, tenant_id, id).await?,
            }
        }
    };
    sqlx::query!("SELECT billing_upload_drop($1)", id)
        .execute(&mut *tx)
        .await?;
    let parts_read = progress.done.load(Relaxed) as i32;
    // Bytes read, as they came (compressed or not).
    let bytes = progress.total_bytes.load(Relaxed);
    sqlx::query!(
        "UPDATE billing_imports SET status = 'succeeded', detected_format = $2, rows_read = $3,
                rows_loaded = $4, rows_rejected = $5, rows_replaced = $6, rejected_examples = $7,
                totals = $8, period_start = $9, period_end = $10, error = NULL, finished_at = now(),
                content_sha256 = $11, replace_mode = $12, dataset = $13, parts_read = $14,
                bytes = GREATEST(bytes, $15)
         WHERE id = $1",
        id,
        format.map(Format::as_str),
        rows_read as i64,
        rows_loaded as i64,
        rows_rejected as i64,
        replaced.rows as i64,
        Value::Array(examples),
        Value::Object(totals.clone()),
        start,
        tally.period_end,
        content_sha256,
        replace_mode,
        dataset,
        parts_read,
        bytes as i64
    )
    .execute(&mut *tx)
    .await?;
    crate::catalog::record_unmapped(&mut tx, tenant_id, id, &tally.unmapped).await?;
    // Last, as dropping a table locks the tenant's records until the commit: the tables of
    // earlier imports whose every billing period this one replaced.
    sqlx::query!(
        "WITH emptied AS (
             SELECT i FROM unnest($1::uuid[]) AS i
             WHERE NOT EXISTS (SELECT 1 FROM billing_import_periods p WHERE p.import_id = i)
         ), marked AS (
             UPDATE billing_imports SET replaced_by = $2 WHERE id IN (SELECT i FROM emptied)
         )
         SELECT cost_records_drop_import(i) FROM emptied",
        &replaced.imports,
        id
    )
    .execute(&mut *tx)
    .await?;
    let summary = json!({
        "import_id": id, "format": format.map(Format::as_str), "rows_read": rows_read,
        "rows_loaded": rows_loaded, "rows_rejected": rows_rejected,
        "rows_replaced": replaced.rows, "totals": totals, "files": parts_read,
    });
    let mut event = summary.clone();
    event["type"] = "import.completed".into();
    event["task_id"] = ctx.task_id.to_string().into();
    crate::events::announce(&mut tx, tenant_id, event).await?;
    tx.commit().await?;
    Ok(summary)
}

/// What a re-import removed: rows of earlier imports and the charge times they spanned.
struct Replaced {
    /// The earlier imports some of whose billing periods this one replaced.
    imports: Vec<Uuid>,
    rows: u64,
    first: Option<DateTime<Utc>>,
    last: Option<DateTime<Utc>>,
}

/// Which earlier imports this one replaces.
struct Identity<'a> {
    /// The Strata provider the import was for: the same key under another provider (another
    /// payer account's `cur.csv`) is another file.
    provider_id: Option<Uuid>,
    source_key: Option<&'a str>,
    content_sha256: &'a str,
    /// `file` or `period`.
    replace_mode: &'a str,
    dataset: Option<&'a str>,
}

/// Records the billing periods (provider, billing account, period) this import holds, and
/// deletes what it replaces of earlier imports, period by period:
/// - the same file (the same key for the same Strata provider, or identical content), in the
///   same provider's (ProviderName) billing periods;
/// - with `replace_mode = 'period'`, every import's rows of the same provider, billing account
///   and period;
/// - the other dataset (actual or amortized cost) of the same provider, account and period.
async fn replace_earlier(
    tx: &mut sqlx::PgConnection,
    id: Uuid,
    tenant_id: Uuid,
    tally: &Tally,
    identity: &Identity<'_>,
) -> Result<Replaced, JobError> {
    let (mut providers, mut accounts, mut periods) = (Vec::new(), Vec::new(), Vec::new());
    for (provider, account, period) in &tally.periods {
        providers.push(provider.clone());
        accounts.push(account.clone());
        periods.push(*period);
    }
    sqlx::query!(
        "INSERT INTO billing_import_periods (import_id, tenant_id, provider_name, billing_account_id,
                                             billing_period_start)
         SELECT $1, $2, * FROM UNNEST($3::text[], $4::text[], $5::timestamptz[])",
        id,
        tenant_id,
        &providers,
        &accounts,
        &periods as &[Option<DateTime<Utc>>]
    )
    .execute(&mut *tx)
    .await?;
    let gone = sqlx::query!(
        r#"WITH mine AS (
               SELECT provider_name, billing_account_id, billing_period_start
               FROM billing_import_periods WHERE import_id = $1
           ), targets AS (
               SELECT DISTINCT p.import_id, p.provider_name, p.billing_account_id, p.billing_period_start
               FROM billing_import_periods p
               JOIN billing_imports e ON e.id = p.import_id
               JOIN mine m ON m.provider_name = p.provider_name
                          AND m.billing_period_start IS NOT DISTINCT FROM p.billing_period_start
               WHERE p.tenant_id = $2 AND p.import_id <> $1
                 AND ((e.source_key = $3 AND e.provider_id IS NOT DISTINCT FROM $7)
                      OR e.content_sha256 = $4
                      OR (m.billing_account_id = p.billing_account_id
                          AND ($5 = 'period' OR e.dataset <> $6)))
           ), earlier AS (
               DELETE FROM billing_import_periods p USING targets t
               WHERE p.import_id = t.import_id AND p.provider_name = t.provider_name
                 AND p.billing_account_id = t.billing_account_id
                 AND p.billing_period_start IS NOT DISTINCT FROM t.billing_period_start
               RETURNING p.import_id
           ), gone AS (
               DELETE FROM cost_records c USING targets t
               WHERE c.tenant_id = $2 AND c.import_id = t.import_id
                 AND COALESCE(c.provider_name, '') = t.provider_name
                 AND COALESCE(c.billing_account_id, '') = t.billing_account_id
                 AND c.billing_period_start IS NOT DISTINCT FROM t.billing_period_start
               RETURNING c.charge_period_start
           )
           SELECT count(*) AS "n!", min(charge_period_start) AS first, max(charge_period_start) AS last,
                  (SELECT array_agg(DISTINCT import_id) FROM earlier) AS imports
           FROM gone"#,
        id,
        tenant_id,
        identity.source_key,
        identity.content_sha256,
        identity.replace_mode,
        identity.dataset,
        identity.provider_id
    )
    .fetch_one(&mut *tx)
    .await?;
    Ok(Replaced {
        imports: gone.imports.unwrap_or_default(),
        rows: gone.n as u64,
        first: gone.first,
        last: gone.last,
    })
}

/// The import's totals per currency, summed by Postgres (when they are beyond exact decimals).
async fn totals_in_sql(
    tx: &mut sqlx::PgConnection,
    tenant_id: Uuid,
    id: Uuid,
) -> Result<serde_json::Map<String, Value>, JobError> {
    let totals = sqlx::query!(
        r#"SELECT billing_currency AS "currency!", sum(billed_cost)::text AS "billed!",
                  sum(effective_cost)::text AS effective, sum(list_cost)::text AS list,
                  sum(contracted_cost)::text AS contracted
           FROM cost_records WHERE tenant_id = $1 AND import_id = $2
           GROUP BY billing_currency ORDER BY 1"#,
        tenant_id,
        id
    )
    .fetch_all(&mut *tx)
    .await?;
    Ok(totals
        .into_iter()
        .map(|t| {
            (
                t.currency,
                json!({"billed_cost": t.billed, "effective_cost": t.effective, "list_cost": t.list,
                       "contracted_cost": t.contracted}),
            )
        })
        .collect())
}

/// The uploaded chunks, in order, read one at a time.
fn chunks(state: AppState, id: Uuid) -> impl Stream<Item = std::io::Result<Bytes>> + Send + Unpin {
    Box::pin(futures::stream::try_unfold(0i32, move |seq| {
        let db = state.db.clone();
        async move {
            let data = sqlx::query_scalar!("SELECT billing_upload_piece($1, $2)", id, seq)
                .fetch_one(&db)
                .await
                .map_err(std::io::Error::other)?;
            Ok(data.map(|d| (Bytes::from(d), seq + 1)))
        }
    }))
}

/// A response from a URL the outbound policy allows, checked for its status.
async fn get(
    url: &str,
    policy: &crate::outbound::OutboundPolicy,
) -> Result<reqwest::Response, JobError> {
    let parsed =
        reqwest::Url::parse(url).map_err(|err| JobError::Fatal(format!("bad URL: {err}")))?;
    let shown = super::without_query(url);
    let client = policy
        .http_client(&parsed, std::time::Duration::from_secs(3600))
        .await
        .map_err(|err| match err.is_transient() {
            true => JobError::Retryable(err.to_string()),
            false => JobError::Fatal(err.to_string()),
        })?;
    let response = client
        .get(parsed)
        .send()
        .await
        .map_err(|err| JobError::Retryable(format!("cannot fetch {shown}: {err}")))?;
    let status = response.status();
    if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        return Err(JobError::Retryable(format!(
            "fetching {shown}: HTTP {status}"
        )));
    }
    if !status.is_success() {
        return Err(JobError::Fatal(format!("fetching {shown}: HTTP {status}")));
    }
    Ok(response)
}

/// The body of a URL, streamed, and its length when the server says.
async fn fetch(
    url: &str,
    policy: &crate::outbound::OutboundPolicy,
) -> Result<(ByteStream, Option<u64>), JobError> {
    let response = get(url, policy).await?;
    let length = response.content_length();
    Ok((
        Box::pin(response.bytes_stream().map_err(std::io::Error::other)),
        length,
    ))
}

/// A small body (a manifest), whole.
async fn fetch_small(
    url: &str,
    policy: &crate::outbound::OutboundPolicy,
    limit: usize,
) -> Result<Vec<u8>, JobError> {
    let mut response = get(url, policy).await?;
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|err| JobError::Retryable(format!("reading the manifest: {err}")))?
    {
        body.extend_from_slice(&chunk);
        if body.len() > limit {
            return Err(JobError::Fatal(format!(
                "the manifest is larger than {}",
                super::human_bytes(limit as u64)
            )));
        }
    }
    Ok(body)
}

type ByteStream = std::pin::Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// Opens an import's files from the thread that reads them.
struct Opener {
    handle: tokio::runtime::Handle,
    state: AppState,
    import_id: Uuid,
}

impl Opener {
    /// The file's bytes as a blocking reader, and its length when known.
    fn open(&self, source: &Source) -> Result<(Box<dyn Read>, Option<u64>), JobError> {
        let (stream, length): (ByteStream, Option<u64>) = match source {
            Source::Upload { bytes } => (
                Box::pin(chunks(self.state.clone(), self.import_id)),
                Some(*bytes),
            ),
            Source::Url(url) => self
                .handle
                .block_on(fetch(url, &self.state.settings.outbound))?,
        };
        Ok((
            Box::new(SyncIoBridge::new_with_handle(
                StreamReader::new(stream),
                self.handle.clone(),
            )),
            length,
        ))
    }
}

/// Counts the bytes read from a file as they come (for progress).
struct Counting<R> {
    inner: R,
    progress: Arc<Progress>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.bytes.fetch_add(n as u64, Relaxed);
        Ok(n)
    }
}

/// Hashes the CSV text as the reader takes it (after gzip), so identical content is known as
/// the same file however it was compressed or named.
struct Hashing<R> {
    inner: R,
    hasher: std::rc::Rc<std::cell::RefCell<sha2::Sha256>>,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use sha2::Digest;
        let n = self.inner.read(buf)?;
        self.hasher.borrow_mut().update(&buf[..n]);
        Ok(n)
    }
}

/// The columns every record of an import starts with, ahead of [`COLUMNS`].
struct Prefix {
    tenant_id: Uuid,
    import_id: Uuid,
    provider_id: Option<Uuid>,
}

/// A row's times, in [`COLUMNS`] order.
type Times = [Option<DateTime<Utc>>; 4];

/// Appends a converted row as a binary COPY tuple and returns its times; `None` (with nothing
/// appended) if an amount or a time is beyond what Postgres stores.
fn write_tuple(
    out: &mut Tuples,
    prefix: &Prefix,
    resource_ref: Option<&Uuid>,
    kinds: &[Kind],
    values: &[Field<'_>],
) -> Option<Times> {
    let start = out.buf.len();
    let mut times = Times::default();
    let mut next_time = times.iter_mut();
    out.start((4 + COLUMNS.len()) as i16);
    out.uuid(&prefix.tenant_id);
    out.uuid(&prefix.import_id);
    for id in [prefix.provider_id.as_ref(), resource_ref] {
        match id {
            Some(id) => out.uuid(id),
            None => out.null(),
        }
    }
    for (kind, value) in kinds.iter().zip(values) {
        let Some(value) = value else {
            if *kind == Kind::Time {
                next_time.next();
            }
            out.null();
            continue;
        };
        let written = match kind {
            Kind::Text => {
                out.text(value);
                true
            }
            Kind::Amount => out.numeric(value),
            Kind::Time => match (super::formats::time(value), next_time.next()) {
                (Some(time), Some(slot)) => {
                    out.timestamptz(&time);
                    *slot = Some(time);
                    true
                }
                _ => false,
            },
            Kind::Tags | Kind::Json => {
                out.jsonb(value);
                true
            }
        };
        if !written {
            out.buf.truncate(start);
            return None;
        }
    }
    Some(times)
}

/// Everything the reading thread needs.
struct Reading {
    opener: Opener,
    files: Vec<Source>,
    asked: Option<Format>,
    defaults: Value,
    prefix: Prefix,
    progress: Arc<Progress>,
}

impl Reading {
    /// Reads each file's CSV (gzipped or not) in turn, converts each row and sends COPY batches
    /// (binary COPY data, its header first and trailer last). Returns what it read.
    fn convert(
        self,
        resources: &HashMap<String, Uuid>,
        mappings: &ServiceMappings,
        batches: &mpsc::Sender<Vec<u8>>,
    ) -> Result<Outcome, JobError> {
        use sha2::Digest;
        let stopped = || JobError::Fatal("the import stopped".into());
        let mut out = Tuples::with_capacity(BATCH_BYTES * 2);
        out.buf.extend_from_slice(binary_copy::HEADER);
        let mut outcome = Outcome {
            format: None,
            rows_read: 0,
            rows_rejected: 0,
            examples: Vec::new(),
            tally: Tally::new(),
            content_sha256: String::new(),
        };
        let hasher = std::rc::Rc::new(std::cell::RefCell::new(sha2::Sha256::new()));
        let several = self.files.len() > 1;
        for (number, file) in self.files.iter().enumerate() {
            let (raw, length) = self.opener.open(file)?;
            let progress = &self.progress;
            progress.bytes.store(0, Relaxed);
            progress.length.store(length.unwrap_or(0), Relaxed);
            let counted = Counting {
                inner: raw,
                progress: progress.clone(),
            };
            let mut buffered = BufReader::with_capacity(1 << 16, counted);
            let fatal =
                |err: std::io::Error| JobError::Fatal(format!("cannot read the file: {err}"));
            let gzipped = buffered
                .fill_buf()
                .map_err(fatal)?
                .starts_with(&[0x1f, 0x8b]);
            let input: Box<dyn Read> = if gzipped {
                Box::new(flate2::bufread::MultiGzDecoder::new(buffered))
            } else {
                Box::new(buffered)
            };
            let input = Hashing {
                inner: input,
                hasher: hasher.clone(),
            };
            let mut csv = csv::ReaderBuilder::new()
                .flexible(true)
                .has_headers(true)
                .buffer_capacity(1 << 16)
                .from_reader(input);
            let in_file = |message: String| match several {
                true => format!("file {} of {}: {message}", number + 1, self.files.len()),
                false => message,
            };
            let header = csv
                .headers()
                .map_err(|err| JobError::Fatal(in_file(format!("cannot read the header: {err}"))))?
                .clone();
            let format = match self.asked {
                Some(format) => format,
                None => Format::detect(&header).ok_or_else(|| {
                    JobError::Fatal(in_file("the header is not one of a known billing export (FOCUS, AWS CUR, Azure, OCI, Google Cloud, Databricks)".to_string()))
                })?,
            };
            outcome.format.get_or_insert(format);
            let converter = Converter::new(format, &header, &self.defaults)
                .map_err(|message| JobError::Fatal(in_file(message)))?;
            let mut record = csv::StringRecord::new();
            loop {
                // Where the next row starts (the header is line 1).
                let line = csv.position().line();
                let part = several.then_some(number + 1);
                match csv.read_record(&mut record) {
                    Ok(false) => break,
                    Ok(true) => {
                        outcome.rows_read += 1;
                        match converter.convert(&record) {
                            Ok(values) => self.load_row(
                                &mut out,
                                &mut outcome,
                                values,
                                resources,
                                mappings,
                                (part, line),
                            ),
                            Err(reason) => reject(&mut outcome, part, line, reason),
                        }
                    }
                    // The file itself could not be read (or un-gzipped): the import fails.
                    Err(err) if matches!(err.kind(), csv::ErrorKind::Io(_)) => {
                        return Err(JobError::Fatal(in_file(format!(
                            "cannot read the file: {err}"
                        ))));
                    }
                    Err(err) => {
                        outcome.rows_read += 1;
                        reject(&mut outcome, part, line, format!("unreadable CSV: {err}"));
                    }
                }
                if out.buf.len() >= BATCH_BYTES {
                    progress.rows.store(outcome.rows_read, Relaxed);
                    let batch =
                        std::mem::replace(&mut out.buf, Vec::with_capacity(BATCH_BYTES * 2));
                    batches.blocking_send(batch).map_err(|_| stopped())?;
                }
            }
            let read = progress.bytes.swap(0, Relaxed);
            progress.total_bytes.fetch_add(read, Relaxed);
            progress.done.fetch_add(1, Relaxed);
        }
        self.progress.rows.store(outcome.rows_read, Relaxed);
        out.buf.extend_from_slice(binary_copy::TRAILER);
        batches.blocking_send(out.buf).map_err(|_| stopped())?;
        outcome.content_sha256 = format!("{:x}", hasher.borrow_mut().clone().finalize());
        Ok(outcome)
    }

    /// Loads one converted row: its category, its resource, its COPY tuple and its sums.
    fn load_row(
        &self,
        out: &mut Tuples,
        outcome: &mut Outcome,
        mut values: Vec<Field<'_>>,
        resources: &HashMap<String, Uuid>,
        mappings: &ServiceMappings,
        (part, line): (Option<usize>, u64),
    ) {
        // Parsed once: the rollup, the totals and the unmapped services sum them.
        let amounts = rollup::amounts(&values);
        let service = values[SERVICE].as_deref().unwrap_or("");
        let provider = values[PROVIDER].as_deref().unwrap_or("");
        if let Some(category) = mappings.category(provider, service) {
            values[CATEGORY] = Some(category.to_string().into());
        } else if !service.is_empty()
            && matches!(values[CATEGORY].as_deref(), None | Some("" | "Other"))
        {
            let billed = amounts[0].ok().flatten();
            outcome.tally.unmapped.add(
                provider,
                service,
                values[CURRENCY].as_deref().unwrap_or(""),
                billed.unwrap_or_default(),
            );
        }
        let resource_ref = values[RESOURCE_ID]
            .as_deref()
            .and_then(|r| resources.get(r));
        if let Some(times) = write_tuple(out, &self.prefix, resource_ref, kinds(), &values) {
            outcome.tally.add(&values, &amounts, &times);
        } else {
            reject(
                outcome,
                part,
                line,
                "an amount or a time is beyond what Postgres stores".into(),
            );
        }
    }
}

fn reject(outcome: &mut Outcome, part: Option<usize>, line: u64, reason: String) {
    outcome.rows_rejected += 1;
    if outcome.examples.len() < EXAMPLES {
        let mut example = json!({"line": line, "reason": reason});
        if let Some(part) = part {
            example["file"] = part.into();
        }
        outcome.examples.push(example);
    }
}
