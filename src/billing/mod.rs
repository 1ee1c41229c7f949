//! Billing: imports of cloud billing exports into cost records (FOCUS columns), and the cost
//! queries of seed 001 (`/billing/costs`, `/billing/summary`), read from the daily rollup.

pub mod accrue;
pub mod binary_copy;
pub mod currency;
pub mod export;
pub mod formats;
pub mod import;
pub mod manifest;
pub mod records;
pub mod rollup;

use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{StatusCode, header};
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::{Role, TenantAuth};
use crate::costs::queries::CostType;
use crate::error::{AppError, AppResult};
use crate::http::{Json, Page, Pagination, Params, Path, Query, Validator};
use crate::jobs::JobKind;
use crate::state::AppState;
use crate::tasks::NewTask;
use formats::Format;

/// Uploaded files are kept in pieces of this size until imported.
const CHUNK_BYTES: usize = 1 << 20;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_imports))
        .routes(routes!(get_import, delete_import))
        .routes(routes!(costs))
        .routes(routes!(summary))
        .routes(routes!(export::export))
        .merge(records::router())
        .merge(currency::router())
}

/// The upload route: outside the 1 MiB body limit (and the idempotency buffer); its own limit
/// is `STRATA_IMPORT_MAX_BYTES`.
pub fn upload_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_import))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UrlImport {
    /// An HTTP(S) URL of the export, such as a presigned bucket link, or of a manifest listing
    /// its parts (an AWS Cost and Usage Report `-Manifest.json`, a Data Exports manifest, an
    /// Azure export `manifest.json`): every part is imported as one import.
    pub url: String,
    /// The parts' URLs, when the manifest's own link does not authorise its parts (presigned
    /// links are per object). Imported in order as one import.
    pub parts: Option<Vec<String>>,
    pub provider_id: Option<Uuid>,
    /// `auto` (the default: told by the header), `focus`, `aws_cur`, `azure`, `oci`, `gcp` or
    /// `databricks`.
    pub format: Option<String>,
    /// The file's name for replacement: a later import with the same key, provider and billing
    /// period replaces this one's rows. Default: the uploaded file's name, or the URL without
    /// its query string.
    pub source_key: Option<String>,
    /// `file` (the default): replace only an earlier import of the same file, so the files of
    /// one period add up; `period`: this import is the whole truth for its billing periods.
    pub replace: Option<String>,
    /// `actual` or `amortized`, for exports that come as both (Azure): the later of the two
    /// replaces the earlier for the same provider, billing account and period. Manifests say
    /// it themselves.
    pub dataset: Option<String>,
    /// Values for columns the file lacks or leaves empty, by FOCUS column name
    /// (`{"BillingCurrency": "USD"}`).
    #[schema(value_type = Object)]
    pub defaults: Option<Value>,
}

/// What an import request may say besides its file (see [`UrlImport`] for each).
#[derive(Debug, Default)]
struct ImportOptions {
    provider_id: Option<Uuid>,
    format: Option<String>,
    source_key: Option<String>,
    replace: Option<String>,
    dataset: Option<String>,
    defaults: Option<Value>,
}

/// A multipart upload: the export (`file`, CSV or gzipped CSV) and the same options, each a
/// form field (`defaults` as a JSON object).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ImportUpload {
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    provider_id: Option<Uuid>,
    format: Option<String>,
    source_key: Option<String>,
    replace: Option<String>,
    dataset: Option<String>,
    defaults: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ImportAccepted {
    pub id: Uuid,
    pub task_id: Uuid,
    pub status: String,
    pub bytes: i64,
    pub message: String,
}

/// Room for a multipart form's boundaries and small fields around the file.
const FORM_OVERHEAD: u64 = 64 << 10;
/// Parts a URL import may list.
const MAX_PARTS: usize = 1000;

/// A byte count as people write limits: `8 GiB`, `512 MiB`, `1000 bytes`.
pub fn human_bytes(n: u64) -> String {
    for (unit, shift) in [("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)] {
        if n >= 1 << shift && n.is_multiple_of(1 << shift) {
            return format!("{} {unit}", n >> shift);
        }
    }
    format!("{n} bytes")
}

/// Whether a URL is one an import may fetch (the outbound policy checks its address later).
fn is_http_url(url: &str) -> bool {
    reqwest::Url::parse(url)
        .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
}

/// The options as stored: checked, with `defaults` normalised to FOCUS names and text values.
struct CheckedOptions {
    provider_id: Option<Uuid>,
    format: String,
    source_key: Option<String>,
    replace: &'static str,
    dataset: Option<String>,
    defaults: Value,
}

impl ImportOptions {
    async fn check(self, state: &AppState, tenant_id: Uuid) -> AppResult<CheckedOptions> {
        let mut v = Validator::new();
        let format = self.format.unwrap_or_else(|| "auto".into());
        v.check(
            format == "auto" || Format::parse(&format).is_some(),
            "format",
            "must be auto, focus, aws_cur, azure, oci, gcp or databricks",
        );
        let replace = match self.replace.as_deref() {
            None | Some("file") => "file",
            Some("period") => "period",
            Some(_) => {
                v.error("replace", "must be file or period");
                "file"
            }
        };
        v.check(
            self.dataset
                .as_deref()
                .is_none_or(|d| matches!(d, "actual" | "amortized")),
            "dataset",
            "must be actual or amortized",
        );
        if let Some(key) = &self.source_key {
            v.text("source_key", key, 1, 1024);
            v.check(
                !key.contains(|c: char| c.is_control()),
                "source_key",
                "must not hold control characters",
            );
        }
        let defaults = match self.defaults {
            None | Some(Value::Null) => Value::Object(Default::default()),
            Some(given) => match formats::check_defaults(&given) {
                Ok(defaults) => defaults,
                Err(message) => {
                    v.error("defaults", message);
                    Value::Null
                }
            },
        };
        v.finish()?;
        check_provider(state, tenant_id, self.provider_id).await?;
        Ok(CheckedOptions {
            provider_id: self.provider_id,
            format,
            source_key: self.source_key,
            replace,
            dataset: self.dataset,
            defaults,
        })
    }
}

async fn check_provider(state: &AppState, tenant_id: Uuid, id: Option<Uuid>) -> AppResult<()> {
    if let Some(id) = id {
        let exists = crate::providers::exists(&state.db, tenant_id, id).await?;
        if !exists {
            return Err(AppError::invalid("provider_id", "no such provider"));
        }
    }
    Ok(())
}

/// Import a billing export: upload it (multipart, field `file`) or give its URL or its
/// manifest's (JSON). A file of the same key, provider and billing period replaces its earlier
/// import; other files of the period add to it (`replace: "period"` makes this one the whole
/// period).
#[utoipa::path(post, path = "/billing/imports", tag = "billing",
    request_body(content(
        (UrlImport = "application/json"),
        (ImportUpload = "multipart/form-data"),
    )),
    responses((status = 202, body = ImportAccepted), (status = 413), (status = 422)),
    security(("bearer" = []), ("api_key" = [])))]
async fn create_import(
    State(state): State<AppState>,
    auth: TenantAuth,
    request: Request,
) -> AppResult<(StatusCode, Json<ImportAccepted>)> {
    auth.require(Role::Member)?;
    let multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    let id = Uuid::new_v4();
    let mut tx = state.db.begin().await?;
    let (options, bytes) = if multipart {
        let (options, bytes) =
            receive_upload(&state, &mut tx, id, auth.tenant_id, auth.user_id(), request).await?;
        (options.check(&state, auth.tenant_id).await?, bytes)
    } else {
        let Json(body) = Json::<UrlImport>::from_request(request, &state).await?;
        let mut v = Validator::new();
        v.check(
            is_http_url(&body.url),
            "url",
            "must be an http or https URL",
        );
        if let Some(parts) = &body.parts {
            v.check(
                (1..=MAX_PARTS).contains(&parts.len()),
                "parts",
                format!("must list 1 to {MAX_PARTS} URLs"),
            );
            v.check(
                parts.iter().all(|p| is_http_url(p)),
                "parts",
                "must be http or https URLs",
            );
        }
        v.finish()?;
        let options = ImportOptions {
            provider_id: body.provider_id,
            format: body.format,
            source_key: body.source_key,
            replace: body.replace,
            dataset: body.dataset,
            defaults: body.defaults,
        };
        let mut options = options.check(&state, auth.tenant_id).await?;
        options.source_key = options
            .source_key
            .or_else(|| Some(without_query(&body.url)));
        sqlx::query!(
            "INSERT INTO billing_imports (id, tenant_id, source, url, parts, created_by)
             VALUES ($1, $2, 'url', $3, $4, $5)",
            id,
            auth.tenant_id,
            body.url,
            body.parts.as_deref(),
            auth.user_id()
        )
        .execute(&mut *tx)
        .await?;
        (options, 0)
    };
    let task_id = crate::tasks::enqueue_one(
        &mut tx,
        NewTask {
            tenant_id: auth.tenant_id,
            kind: JobKind::BillingImport,
            params: json!({ "import_id": id }),
            created_by: auth.user_id(),
        },
    )
    .await?;
    sqlx::query!(
        "UPDATE billing_imports SET provider_id = $2, format = $3, bytes = $4, task_id = $5,
                source_key = COALESCE($6, source_key), replace_mode = $7, dataset = $8, defaults = $9
         WHERE id = $1",
        id,
        options.provider_id,
        options.format,
        bytes,
        task_id,
        options.source_key,
        options.replace,
        options.dataset,
        options.defaults
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(ImportAccepted {
            id,
            task_id,
            status: "queued".into(),
            bytes,
            message: "Billing import started".into(),
        }),
    ))
}

/// Reads a multipart upload: the file goes into the database a piece at a time as it arrives
/// (never whole in memory); the other fields become the options.
async fn receive_upload(
    state: &AppState,
    tx: &mut sqlx::PgConnection,
    id: Uuid,
    tenant_id: Uuid,
    user_id: Option<Uuid>,
    request: Request,
) -> AppResult<(ImportOptions, i64)> {
    let limit = state.settings.import_max_bytes;
    let too_large = || {
        AppError::PayloadTooLarge(format!(
            "the file is too large (limit {})",
            human_bytes(limit)
        ))
    };
    // A declared length past the limit (and the form's few header lines) is refused unread.
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit.saturating_add(FORM_OVERHEAD)) {
        return Err(too_large());
    }
    let mut form = Multipart::from_request(request, state)
        .await
        .map_err(|err| AppError::BadRequest(err.body_text()))?;
    sqlx::query!(
        "INSERT INTO billing_imports (id, tenant_id, source, created_by) VALUES ($1, $2, 'upload', $3)",
        id,
        tenant_id,
        user_id
    )
    .execute(&mut *tx)
    .await?;
    let bad = |err: axum::extract::multipart::MultipartError| {
        if err.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large()
        } else {
            AppError::BadRequest(err.body_text())
        }
    };
    let mut options = ImportOptions::default();
    let (mut bytes, mut seen_file) = (0u64, false);
    while let Some(mut field) = form.next_field().await.map_err(bad)? {
        let name = field.name().unwrap_or_default().to_string();
        if name == "file" {
            if seen_file {
                return Err(AppError::invalid("file", "give one file per import"));
            }
            seen_file = true;
            let filename = field.file_name().map(str::to_string);
            create_upload(&mut *tx, id).await?;
            let (mut piece, mut seq) = (Vec::with_capacity(CHUNK_BYTES), 0);
            while let Some(chunk) = field.chunk().await.map_err(bad)? {
                bytes += chunk.len() as u64;
                if bytes > limit {
                    return Err(too_large());
                }
                piece.extend_from_slice(&chunk);
                if piece.len() >= CHUNK_BYTES {
                    store_chunk(&mut *tx, id, seq, &piece).await?;
                    piece.clear();
                    seq += 1;
                }
            }
            if !piece.is_empty() {
                store_chunk(&mut *tx, id, seq, &piece).await?;
            }
            sqlx::query!(
                "UPDATE billing_imports SET filename = $2, source_key = $2 WHERE id = $1",
                id,
                filename.filter(|f| !f.is_empty() && !f.contains(|c: char| c.is_control()))
            )
            .execute(&mut *tx)
            .await?;
            continue;
        }
        let text = field.text().await.map_err(bad)?;
        let text = text.trim().to_string();
        match name.as_str() {
            "provider_id" => {
                options.provider_id = Some(
                    text.parse::<Uuid>()
                        .map_err(|_| AppError::invalid("provider_id", "must be a UUID"))?,
                )
            }
            "format" => options.format = Some(text),
            "source_key" => options.source_key = Some(text),
            "replace" => options.replace = Some(text),
            "dataset" => options.dataset = Some(text),
            "defaults" => {
                options.defaults = Some(serde_json::from_str(&text).map_err(|_| {
                    AppError::invalid("defaults", "must be a JSON object of column values")
                })?)
            }
            other => {
                return Err(AppError::invalid(
                    other,
                    "unknown field (expected file, provider_id, format, source_key, replace, dataset, defaults)",
                ));
            }
        }
    }
    if !seen_file {
        return Err(AppError::invalid("file", "the form has no file"));
    }
    Ok((options, bytes as i64))
}

/// A URL without its query string and fragment (which may hold a signature).
pub(crate) fn without_query(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) => {
            parsed.set_query(None);
            parsed.set_fragment(None);
            let _ = parsed.set_password(None);
            let _ = parsed.set_username("");
            parsed.to_string()
        }
        Err(_) => String::new(),
    }
}

/// Makes the table an upload's pieces wait in until its import (in the upload's transaction,
/// so a failed upload leaves none); the import drops it.
pub(crate) async fn create_upload(conn: &mut sqlx::PgConnection, id: Uuid) -> sqlx::Result<()> {
    sqlx::query!("SELECT billing_upload_create($1)", id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Stores piece `seq` of an upload.
pub(crate) async fn store_chunk(
    conn: &mut sqlx::PgConnection,
    id: Uuid,
    seq: i32,
    data: &[u8],
) -> sqlx::Result<()> {
    sqlx::query!("SELECT billing_upload_put($1, $2, $3)", id, seq, data)
        .execute(conn)
        .await?;
    Ok(())
}

#[derive(Serialize, ToSchema)]
pub struct BillingImport {
    pub id: Uuid,
    pub task_id: Option<Uuid>,
    pub provider_id: Option<Uuid>,
    /// `upload` or `url`.
    pub source: String,
    /// The URL without its query string (which may hold a signature).
    pub url: Option<String>,
    pub filename: Option<String>,
    pub format: String,
    pub detected_format: Option<String>,
    pub status: String,
    pub bytes: i64,
    pub rows_read: i64,
    pub rows_loaded: i64,
    pub rows_rejected: i64,
    /// Rows of earlier imports this one replaced (the same file, or the same billing periods
    /// with `replace: "period"`).
    pub rows_replaced: i64,
    /// What a later import of the same file replaces: by default the file's name or the URL
    /// without its query string.
    pub source_key: Option<String>,
    /// SHA-256 of the file's CSV content (after gzip): identical content is the same file.
    pub content_sha256: Option<String>,
    /// `file` or `period`.
    pub replace_mode: String,
    /// `actual` or `amortized`, when the export said (or the request did).
    pub dataset: Option<String>,
    /// Values given for columns the file lacks or leaves empty.
    pub defaults: Value,
    /// Part URLs given with the request (without their query strings).
    pub parts: Option<Vec<String>>,
    /// Files read so far (1 for a single file; each part of a manifest).
    pub parts_read: i32,
    /// The later import that replaced every billing period this one held.
    pub replaced_by: Option<Uuid>,
    /// Up to 20 rejected rows: `{line, reason}`.
    pub rejected_examples: Value,
    /// Per currency: billed, effective, list and contracted cost (exact decimals, as text).
    pub totals: Value,
    pub period_start: Option<DateTime<Utc>>,
    pub period_end: Option<DateTime<Utc>>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl BillingImport {
    fn shown(mut self) -> Self {
        self.url = self.url.as_deref().map(without_query);
        self.parts = self
            .parts
            .map(|parts| parts.iter().map(|p| without_query(p)).collect());
        self
    }
}

/// The tenant's billing imports, newest first.
#[utoipa::path(get, path = "/billing/imports", tag = "billing", params(Pagination),
    responses((status = 200, body = Page<BillingImport>)), security(("bearer" = []), ("api_key" = [])))]
async fn list_imports(
    State(state): State<AppState>,
    auth: TenantAuth,
    Query(page): Query<Pagination>,
) -> AppResult<Page<BillingImport>> {
    let (limit, offset) = page.resolve()?;
    let data = sqlx::query_as!(
        BillingImport,
        "SELECT id, task_id, provider_id, source, url, filename, format, detected_format, status, bytes,
                rows_read, rows_loaded, rows_rejected, rows_replaced, source_key, content_sha256,
                replace_mode, dataset, defaults, parts, parts_read, replaced_by, rejected_examples,
                totals, period_start, period_end, error, created_at, finished_at
         FROM billing_imports WHERE tenant_id = $1 ORDER BY created_at DESC, id LIMIT $2 OFFSET $3",
        auth.tenant_id,
        limit,
        offset
    )
    .fetch_all(&state.db)
    .await?;
    let total = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM billing_imports WHERE tenant_id = $1"#,
        auth.tenant_id
    )
    .fetch_one(&state.db)
    .await?;
    Ok(Page::new(
        data.into_iter().map(BillingImport::shown).collect(),
        total,
        (limit, offset),
    ))
}

/// One billing import: status, rows read, loaded and rejected, totals and period.
#[utoipa::path(get, path = "/billing/imports/{id}", tag = "billing", params(("id" = Uuid, Path)),
    responses((status = 200, body = BillingImport), (status = 404)), security(("bearer" = []), ("api_key" = [])))]
async fn get_import(
    State(state): State<AppState>,
    auth: TenantAuth,
    Path(id): Path<Uuid>,
) -> AppResult<Json<BillingImport>> {
    let found = sqlx::query_as!(
        BillingImport,
        "SELECT id, task_id, provider_id, source, url, filename, format, detected_format, status, bytes,
                rows_read, rows_loaded, rows_rejected, rows_replaced, source_key, content_sha256,
                replace_mode, dataset, defaults, parts, parts_read, replaced_by, rejected_examples,
                totals, period_start, period_end, error, created_at, finished_at
         FROM billing_imports WHERE id = $1 AND tenant_id = $2",
        id,
        auth.tenant_id
    )
    .fetch_optional(&state.db)
    .await?
    .ok_or(AppError::NotFound("billing import"))?;
    Ok(Json(found.shown()))
}

/// Undo an import: its records, their days in the rollup and its totals go. Rows it replaced
/// when it ran do not come back (import their file again).
#[utoipa::path(delete, path = "/billing/imports/{id}", tag = "billing", params(("id" = Uuid, Path)),
    responses((status = 204), (status = 404), (status = 409, description = "The import is still running")),
    security(("bearer" = []), ("api_key" = [])))]
async fn delete_import(
    State(state): State<AppState>,
    auth: TenantAuth,
    Path(id): Path<Uuid>,
) -> AppResult<StatusCode> {
    auth.require(Role::Member)?;
    let mut tx = state.db.begin().await?;
    let found = sqlx::query!(
        "SELECT status FROM billing_imports WHERE id = $1 AND tenant_id = $2 FOR UPDATE",
        id,
        auth.tenant_id
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(AppError::NotFound("billing import"))?;
    if matches!(found.status.as_str(), "queued" | "running") {
        return Err(AppError::Conflict(format!(
            "the import is {}: cancel its task first",
            found.status
        )));
    }
    let span = sqlx::query!(
        "SELECT min(charge_period_start) AS first, max(charge_period_start) AS last
         FROM cost_records WHERE tenant_id = $1 AND import_id = $2",
        auth.tenant_id,
        id
    )
    .fetch_one(&mut *tx)
    .await?;
    // Its table is dropped by the delete's trigger, before the rollup is recomputed: the drop
    // locks the tenant's records, so an import that attaches meanwhile waits for this one.
    sqlx::query!("DELETE FROM billing_imports WHERE id = $1", id)
        .execute(&mut *tx)
        .await?;
    if let (Some(first), Some(last)) = (span.first, span.last) {
        rollup::recompute(&mut tx, auth.tenant_id, first, last).await?;
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CostGroup {
    Provider,
    Service,
    Day,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CostQuery {
    /// First day (YYYY-MM-DD); default the first of this month.
    pub start_date: Option<NaiveDate>,
    /// Last day, included (YYYY-MM-DD); default today.
    pub end_date: Option<NaiveDate>,
    pub group_by: Option<CostGroup>,
    /// Only charges in this currency (needed to sum when there are several).
    pub currency: Option<String>,
    /// The cost summed: `billed` (the default), `effective`, `list` or `contracted`.
    pub cost_type: Option<CostType>,
}

#[derive(Serialize, ToSchema)]
pub struct Period {
    pub start: NaiveDate,
    pub end: NaiveDate,
}

#[derive(Serialize, ToSchema)]
pub struct ServiceCost {
    pub service: String,
    pub cost: f64,
}

#[derive(Serialize, ToSchema)]
pub struct CostGroupEntry {
    /// The provider (group_by=provider).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// The service (group_by=service).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The day (group_by=day).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date: Option<NaiveDate>,
    pub currency: String,
    pub cost: f64,
    /// Per service, for group_by=provider.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub services: Option<Vec<ServiceCost>>,
}

#[derive(Serialize, ToSchema)]
pub struct CostReport {
    /// The sum, when the charges are in one currency; null when they are in several (see
    /// `totals_by_currency`): amounts in different currencies are never added up.
    pub total_cost: Option<f64>,
    pub currency: Option<String>,
    pub totals_by_currency: std::collections::BTreeMap<String, f64>,
    pub period: Period,
    pub breakdown: Vec<CostGroupEntry>,
}

/// The first day of `day`'s month.
fn month_start(day: NaiveDate) -> NaiveDate {
    day.with_day(1).unwrap_or(day)
}

/// Billed cost over a period, by provider (with services), service or day.
#[utoipa::path(get, path = "/billing/costs", tag = "billing", params(CostQuery),
    responses((status = 200, body = CostReport), (status = 422)), security(("bearer" = []), ("api_key" = [])))]
async fn costs(
    State(state): State<AppState>,
    auth: TenantAuth,
    query: Params<CostQuery>,
) -> AppResult<Json<CostReport>> {
    let query = query.for_tenant(auth.tenant_id)?;
    let today = Utc::now().date_naive();
    let end = query.end_date.unwrap_or(today);
    let start = query.start_date.unwrap_or_else(|| month_start(end));
    let mut v = Validator::new();
    v.check(start <= end, "start_date", "must not be after end_date");
    v.finish()?;
    let rows = sqlx::query!(
        r#"SELECT day AS "day!", billing_currency AS "currency!", provider_name AS "provider!",
                  service_name AS "service!", sum(daily_cost(cost_daily, $5))::float8 AS "cost!"
           FROM cost_daily
           WHERE tenant_id = $1 AND day BETWEEN $2 AND $3 AND ($4::text IS NULL OR billing_currency = $4)
           GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4"#,
        auth.tenant_id,
        start,
        end,
        query.currency,
        query.cost_type.unwrap_or_default().as_str()
    )
    .fetch_all(&state.db)
    .await?;
    let mut totals = std::collections::BTreeMap::<String, f64>::new();
    // Summed here from the per-day rows, which Postgres summed exactly.
    let mut groups = std::collections::BTreeMap::<
        (String, String),
        (
            f64,
            Option<NaiveDate>,
            std::collections::BTreeMap<String, f64>,
        ),
    >::new();
    for row in &rows {
        *totals.entry(row.currency.clone()).or_default() += row.cost;
        let key = match query.group_by.unwrap_or(CostGroup::Provider) {
            CostGroup::Provider => row.provider.clone(),
            CostGroup::Service => row.service.clone(),
            CostGroup::Day => row.day.to_string(),
        };
        let entry = groups.entry((key, row.currency.clone())).or_insert((
            0.0,
            Some(row.day),
            Default::default(),
        ));
        entry.0 += row.cost;
        *entry.2.entry(row.service.clone()).or_default() += row.cost;
    }
    let group_by = query.group_by.unwrap_or(CostGroup::Provider);
    let mut breakdown: Vec<CostGroupEntry> = groups
        .into_iter()
        .map(|((key, currency), (cost, day, services))| {
            let mut services: Vec<ServiceCost> = services
                .into_iter()
                .map(|(service, cost)| ServiceCost {
                    service,
                    cost: round(cost),
                })
                .collect();
            services.sort_by(|a, b| b.cost.total_cmp(&a.cost));
            CostGroupEntry {
                provider: (group_by == CostGroup::Provider).then(|| key.clone()),
                service: (group_by == CostGroup::Service).then(|| key.clone()),
                date: if group_by == CostGroup::Day {
                    day
                } else {
                    None
                },
                currency,
                cost: round(cost),
                services: (group_by == CostGroup::Provider).then_some(services),
            }
        })
        .collect();
    if group_by != CostGroup::Day {
        breakdown.sort_by(|a, b| b.cost.total_cmp(&a.cost));
    }
    let single = (totals.len() == 1).then(|| totals.iter().next()).flatten();
    Ok(Json(CostReport {
        total_cost: match totals.len() {
            0 => Some(0.0),
            _ => single.map(|(_, t)| round(*t)),
        },
        currency: single.map(|(c, _)| c.clone()),
        totals_by_currency: totals.into_iter().map(|(c, t)| (c, round(t))).collect(),
        period: Period { start, end },
        breakdown,
    }))
}

/// Amounts in answers: to the hundred-millionth (the records keep every digit).
pub(crate) fn round(amount: f64) -> f64 {
    (amount * 1e8).round() / 1e8
}

#[derive(Serialize, ToSchema)]
pub struct MonthCost {
    /// `YYYY-MM`.
    pub period: String,
    pub total_cost: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub days_elapsed: Option<u32>,
    /// This month's cost so far, extended to the whole month at the same daily rate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub projected_cost: Option<f64>,
}

#[derive(Serialize, ToSchema)]
pub struct CostChange {
    pub absolute: f64,
    /// Null when last month cost nothing.
    pub percentage: Option<f64>,
}

#[derive(Serialize, ToSchema)]
pub struct BillingSummary {
    pub currency: Option<String>,
    pub current_month: MonthCost,
    pub last_month: MonthCost,
    pub change: CostChange,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SummaryQuery {
    /// The currency to sum (default: the tenant's most used one).
    pub currency: Option<String>,
    /// The cost summed: `billed` (the default), `effective`, `list` or `contracted`.
    pub cost_type: Option<CostType>,
}

/// This month so far (with its projection) against last month.
#[utoipa::path(get, path = "/billing/summary", tag = "billing", params(SummaryQuery),
    responses((status = 200, body = BillingSummary)), security(("bearer" = []), ("api_key" = [])))]
async fn summary(
    State(state): State<AppState>,
    auth: TenantAuth,
    query: Params<SummaryQuery>,
) -> AppResult<Json<BillingSummary>> {
    let query = query.for_tenant(auth.tenant_id)?;
    let today = Utc::now().date_naive();
    let this_month = month_start(today);
    let last_month = month_start(this_month.pred_opt().unwrap_or(this_month));
    let currency = match query.currency {
        Some(currency) => Some(currency),
        None => {
            sqlx::query_scalar!(
                "SELECT billing_currency FROM cost_daily WHERE tenant_id = $1
             GROUP BY billing_currency ORDER BY count(*) DESC, billing_currency LIMIT 1",
                auth.tenant_id
            )
            .fetch_optional(&state.db)
            .await?
        }
    };
    let sums = sqlx::query!(
        r#"SELECT COALESCE(sum(daily_cost(cost_daily, $6)) FILTER (WHERE day >= $2 AND day <= $3), 0)::float8 AS "current!",
                  COALESCE(sum(daily_cost(cost_daily, $6)) FILTER (WHERE day >= $4 AND day < $2), 0)::float8 AS "last!"
           FROM cost_daily WHERE tenant_id = $1 AND billing_currency = $5 AND day >= $4"#,
        auth.tenant_id,
        this_month,
        today,
        last_month,
        currency.clone().unwrap_or_default(),
        query.cost_type.unwrap_or_default().as_str()
    )
    .fetch_one(&state.db)
    .await?;
    let days_elapsed = today.day();
    let days_in_month = (month_start(this_month + chrono::Days::new(32)) - this_month).num_days();
    let projected = sums.current / f64::from(days_elapsed) * days_in_month as f64;
    let absolute = sums.current - sums.last;
    Ok(Json(BillingSummary {
        currency,
        current_month: MonthCost {
            period: this_month.format("%Y-%m").to_string(),
            total_cost: round(sums.current),
            days_elapsed: Some(days_elapsed),
            projected_cost: Some(round(projected)),
        },
        last_month: MonthCost {
            period: last_month.format("%Y-%m").to_string(),
            total_cost: round(sums.last),
            days_elapsed: None,
            projected_cost: None,
        },
        change: CostChange {
            absolute: round(absolute),
            percentage: (sums.last != 0.0)
                .then(|| (absolute / sums.last * 10_000.0).round() / 100.0),
        },
    }))
}
