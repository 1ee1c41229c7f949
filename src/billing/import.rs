//! `billing.import`: streams a billing export (the uploaded chunks, or a URL) through gzip and
//! CSV, converts each row to FOCUS columns, and COPYs the good rows into `cost_records`, all in
//! one transaction: rows of the same provider, billing account and billing period from earlier
//! imports are replaced, and the daily rollup gains the import's rows. A failed import leaves
//! nothing behind.
//!
//! Speed comes from reading the rows once: while they stream to COPY they are matched to
//! Strata's resources by their ResourceId, given the tenant's own service categories, and
//! summed into the rollup, the totals, the periods and the unmapped services, so nothing after
//! the COPY reads them back (unless a re-import removed rows, whose
//! days are then recomputed in SQL).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader, Read};

use axum::body::Bytes;
use chrono::{DateTime, Utc};
use futures::{Stream, TryStreamExt};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use tokio::io::AsyncRead;
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
    format: Format,
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
    /// Billed, effective and list cost per currency (`None` where every row left it empty).
    totals: BTreeMap<String, [Option<Decimal>; 3]>,
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
                .map(|(currency, [billed, effective, list])| {
                    (
                        currency.clone(),
                        json!({"billed_cost": shown(billed).unwrap_or_else(|| "0".into()),
                               "effective_cost": shown(effective), "list_cost": shown(list)}),
                    )
                })
                .collect()
        })
    }
}

pub async fn run(ctx: &JobContext) -> Result<Value, JobError> {
    let id = ctx.id_param("import_id")?;
    let db = &ctx.state.db;
    let import = sqlx::query!(
        "UPDATE billing_imports SET status = 'running' WHERE id = $1
         RETURNING tenant_id, provider_id, source, url, format, status",
        id
    )
    .fetch_optional(db)
    .await?
    .ok_or_else(|| JobError::Fatal(format!("import {id} does not exist")))?;
    let asked = match import.format.as_str() {
        "auto" => None,
        other => Some(
            Format::parse(other)
                .ok_or_else(|| JobError::Fatal(format!("unknown format {other}")))?,
        ),
    };
    let result = load(
        ctx,
        id,
        import.tenant_id,
        import.provider_id,
        &import.source,
        import.url.as_deref(),
        asked,
    )
    .await;
    match result {
        Ok(summary) => Ok(summary),
        Err(err) => {
            let (status, message) = match &err {
                JobError::Cancelled => ("cancelled", "cancelled by request".to_string()),
                other => ("failed", other.to_string()),
            };
            // A passing failure is tried again; the import stays queued meanwhile.
            let retry = matches!(err, JobError::Retryable(_))
                && ctx.attempt < crate::jobs::JobKind::BillingImport.max_attempts();
            let status = if retry { "queued" } else { status };
            sqlx::query!(
                "UPDATE billing_imports SET status = $2, error = $3,
                        finished_at = CASE WHEN $2 = 'queued' THEN NULL ELSE now() END
                 WHERE id = $1",
                id,
                status,
                message
            )
            .execute(db)
            .await?;
            if !retry {
                sqlx::query!("DELETE FROM billing_import_chunks WHERE import_id = $1", id)
                    .execute(db)
                    .await?;
            }
            Err(err)
        }
    }
}

async fn load(
    ctx: &JobContext,
    id: Uuid,
    tenant_id: Uuid,
    provider_id: Option<Uuid>,
    source: &str,
    url: Option<&str>,
    asked: Option<Format>,
) -> Result<Value, JobError> {
    let state = &ctx.state;
    let input: Box<dyn AsyncRead + Send + Unpin> = match (source, url) {
        ("url", Some(url)) => Box::new(StreamReader::new(
            fetch(url, state.settings.import_allow_private_urls).await?,
        )),
        _ => Box::new(StreamReader::new(chunks(state.clone(), id))),
    };

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
    let prefix = Prefix {
        tenant_id,
        import_id: id,
        provider_id,
    };
    let reader = SyncIoBridge::new(input);
    let parsing = tokio::task::spawn_blocking(move || {
        convert(reader, asked, &prefix, &resources, &mappings, &batches)
    });

    loop {
        tokio::select! {
            batch = received.recv() => match batch {
                Some(batch) => {
                    copy.send(batch).await?;
                }
                None => break,
            },
            _ = ctx.cancel.cancelled() => {
                copy.abort("cancelled").await.ok();
                return Err(JobError::Cancelled);
            }
        }
    }
    let outcome = match parsing.await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(message)) => {
            copy.abort(message.clone()).await.ok();
            return Err(JobError::Fatal(message));
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
    } = outcome;

    // Attached before earlier imports' rows are deleted: two imports of one tenant then queue
    // here, before either holds a lock on the other's rows.
    sqlx::query!("SELECT cost_records_attach_import($1, $2)", tenant_id, id)
        .execute(&mut *tx)
        .await?;
    let replaced = replace_earlier(&mut tx, id, tenant_id, &tally).await?;
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
    sqlx::query!("DELETE FROM billing_import_chunks WHERE import_id = $1", id)
        .execute(&mut *tx)
        .await?;
    sqlx::query!(
        "UPDATE billing_imports SET status = 'succeeded', detected_format = $2, rows_read = $3,
                rows_loaded = $4, rows_rejected = $5, rows_replaced = $6, rejected_examples = $7,
                totals = $8, period_start = $9, period_end = $10, error = NULL, finished_at = now()
         WHERE id = $1",
        id,
        format.as_str(),
        rows_read as i64,
        rows_loaded as i64,
        rows_rejected as i64,
        replaced.rows as i64,
        Value::Array(examples),
        Value::Object(totals.clone()),
        start,
        tally.period_end
    )
    .execute(&mut *tx)
    .await?;
    crate::catalog::record_unmapped(&mut tx, tenant_id, id, &tally.unmapped).await?;
    // Last, as dropping a table locks the tenant's records until the commit: the tables of
    // earlier imports whose every billing period this one replaced.
    sqlx::query!(
        "SELECT cost_records_drop_import(i) FROM unnest($1::uuid[]) AS i
         WHERE NOT EXISTS (SELECT 1 FROM billing_import_periods p WHERE p.import_id = i)",
        &replaced.imports
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(json!({
        "import_id": id, "format": format.as_str(), "rows_read": rows_read,
        "rows_loaded": rows_loaded, "rows_rejected": rows_rejected,
        "rows_replaced": replaced.rows, "totals": totals,
    }))
}

/// What a re-import removed: rows of earlier imports and the charge times they spanned.
struct Replaced {
    /// The earlier imports some of whose billing periods this one replaced.
    imports: Vec<Uuid>,
    rows: u64,
    first: Option<DateTime<Utc>>,
    last: Option<DateTime<Utc>>,
}

/// Records the billing periods this import holds and deletes the rows earlier imports loaded
/// for the same provider, billing account and billing period.
async fn replace_earlier(
    tx: &mut sqlx::PgConnection,
    id: Uuid,
    tenant_id: Uuid,
    tally: &Tally,
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
           ), earlier AS (
               DELETE FROM billing_import_periods p USING mine m
               WHERE p.tenant_id = $2 AND p.import_id <> $1
                 AND p.provider_name = m.provider_name
                 AND p.billing_account_id = m.billing_account_id
                 AND p.billing_period_start IS NOT DISTINCT FROM m.billing_period_start
               RETURNING p.import_id
           ), gone AS (
               DELETE FROM cost_records c USING mine m
               WHERE c.tenant_id = $2 AND c.import_id IN (SELECT import_id FROM earlier)
                 AND COALESCE(c.provider_name, '') = m.provider_name
                 AND COALESCE(c.billing_account_id, '') = m.billing_account_id
                 AND c.billing_period_start IS NOT DISTINCT FROM m.billing_period_start
               RETURNING c.charge_period_start
           )
           SELECT count(*) AS "n!", min(charge_period_start) AS first, max(charge_period_start) AS last,
                  (SELECT array_agg(DISTINCT import_id) FROM earlier) AS imports
           FROM gone"#,
        id,
        tenant_id
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
                  sum(effective_cost)::text AS effective, sum(list_cost)::text AS list
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
                json!({"billed_cost": t.billed, "effective_cost": t.effective, "list_cost": t.list}),
            )
        })
        .collect())
}

/// The uploaded chunks, in order, read one at a time.
fn chunks(state: AppState, id: Uuid) -> impl Stream<Item = std::io::Result<Bytes>> + Send + Unpin {
    Box::pin(futures::stream::try_unfold(0i32, move |seq| {
        let db = state.db.clone();
        async move {
            let data = sqlx::query_scalar!(
                "SELECT data FROM billing_import_chunks WHERE import_id = $1 AND seq = $2",
                id,
                seq
            )
            .fetch_optional(&db)
            .await
            .map_err(std::io::Error::other)?;
            Ok(data.map(|d| (Bytes::from(d), seq + 1)))
        }
    }))
}

/// The body of a URL, streamed.
async fn fetch(
    url: &str,
    allow_private: bool,
) -> Result<impl Stream<Item = std::io::Result<Bytes>> + Send + Unpin + use<>, JobError> {
    let parsed =
        reqwest::Url::parse(url).map_err(|err| JobError::Fatal(format!("bad URL: {err}")))?;
    if !allow_private {
        let host = parsed.host_str().unwrap_or_default().to_string();
        let port = parsed.port_or_known_default().unwrap_or(443);
        let addresses = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|err| JobError::Retryable(format!("cannot resolve {host}: {err}")))?;
        for address in addresses {
            if !is_public(address.ip()) {
                return Err(JobError::Fatal(format!(
                    "{host} is a private address; imports fetch public URLs only"
                )));
            }
        }
    }
    let response = reqwest::Client::builder()
        // Redirects could lead to a private address the check above did not see.
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(3600))
        .build()
        .map_err(|err| JobError::Fatal(err.to_string()))?
        .get(url)
        .send()
        .await
        .map_err(|err| JobError::Retryable(format!("cannot fetch the file: {err}")))?;
    let status = response.status();
    if status.is_server_error() {
        return Err(JobError::Retryable(format!(
            "fetching the file: HTTP {status}"
        )));
    }
    if !status.is_success() {
        return Err(JobError::Fatal(format!("fetching the file: HTTP {status}")));
    }
    Ok(Box::pin(
        response.bytes_stream().map_err(std::io::Error::other),
    ))
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
            Kind::Tags => {
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

/// Reads CSV (gzipped or not), converts each row and sends COPY batches (binary COPY data, its
/// header first and trailer last). Returns what it read.
fn convert(
    reader: impl Read,
    asked: Option<Format>,
    prefix: &Prefix,
    resources: &HashMap<String, Uuid>,
    mappings: &ServiceMappings,
    batches: &mpsc::Sender<Vec<u8>>,
) -> Result<Outcome, String> {
    let mut buffered = BufReader::with_capacity(1 << 16, reader);
    let gzipped = buffered
        .fill_buf()
        .map_err(|err| format!("cannot read the file: {err}"))?
        .starts_with(&[0x1f, 0x8b]);
    let input: Box<dyn Read> = if gzipped {
        Box::new(flate2::bufread::MultiGzDecoder::new(buffered))
    } else {
        Box::new(buffered)
    };
    let mut csv = csv::ReaderBuilder::new()
        .flexible(true)
        .has_headers(true)
        .from_reader(input);
    let header = csv
        .headers()
        .map_err(|err| format!("cannot read the header: {err}"))?
        .clone();
    let format = match asked {
        Some(format) => format,
        None => Format::detect(&header).ok_or_else(|| {
            "the header is not one of a known billing export (FOCUS, AWS CUR, Azure, OCI, Google Cloud, Databricks)".to_string()
        })?,
    };
    let converter = Converter::new(format, &header)?;

    let mut out = Tuples::with_capacity(BATCH_BYTES * 2);
    out.buf.extend_from_slice(binary_copy::HEADER);
    let mut outcome = Outcome {
        format,
        rows_read: 0,
        rows_rejected: 0,
        examples: Vec::new(),
        tally: Tally::new(),
    };
    let mut record = csv::StringRecord::new();
    loop {
        // Where the next row starts (the header is line 1).
        let line = csv.position().line();
        match csv.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                outcome.rows_read += 1;
                match converter.convert(&record) {
                    Ok(mut values) => {
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
                        if let Some(times) =
                            write_tuple(&mut out, prefix, resource_ref, kinds(), &values)
                        {
                            outcome.tally.add(&values, &amounts, &times);
                        } else {
                            reject(
                                &mut outcome,
                                line,
                                "an amount or a time is beyond what Postgres stores".into(),
                            );
                        }
                    }
                    Err(reason) => reject(&mut outcome, line, reason),
                }
            }
            // The file itself could not be read (or un-gzipped): the import fails.
            Err(err) if matches!(err.kind(), csv::ErrorKind::Io(_)) => {
                return Err(format!("cannot read the file: {err}"));
            }
            Err(err) => {
                outcome.rows_read += 1;
                reject(&mut outcome, line, format!("unreadable CSV: {err}"));
            }
        }
        if out.buf.len() >= BATCH_BYTES {
            let batch = std::mem::replace(&mut out.buf, Vec::with_capacity(BATCH_BYTES * 2));
            if batches.blocking_send(batch).is_err() {
                return Err("the import stopped".into());
            }
        }
    }
    out.buf.extend_from_slice(binary_copy::TRAILER);
    if batches.blocking_send(out.buf).is_err() {
        return Err("the import stopped".into());
    }
    Ok(outcome)
}

fn reject(outcome: &mut Outcome, line: u64, reason: String) {
    outcome.rows_rejected += 1;
    if outcome.examples.len() < EXAMPLES {
        outcome
            .examples
            .push(json!({"line": line, "reason": reason}));
    }
}

/// Whether an address is on the public internet (not loopback, private, link-local, ...).
fn is_public(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => {
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64)
        }
        std::net::IpAddr::V6(v6) => {
            let segment = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || (segment & 0xfe00) == 0xfc00
                || (segment & 0xffc0) == 0xfe80
                || v6.to_ipv4_mapped().is_some_and(|v4| !is_public(v4.into())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_public;

    #[test]
    fn private_addresses_are_not_fetched() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.1",
            "169.254.169.254",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["52.95.110.1", "2600:1f18::1"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }
}
