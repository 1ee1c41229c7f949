//! Billing: imports of cloud billing exports into cost records (FOCUS columns), and the cost
//! queries of seed 001 (`/billing/costs`, `/billing/summary`), read from the daily rollup.

pub mod accrue;
pub mod binary_copy;
pub mod currency;
pub mod formats;
pub mod import;
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
use crate::error::{AppError, AppResult};
use crate::http::{Json, Page, Pagination, Path, Query, Validator};
use crate::jobs::JobKind;
use crate::state::AppState;
use crate::tasks::NewTask;
use formats::Format;

/// Largest billing export accepted as an upload.
pub const MAX_UPLOAD_BYTES: usize = 8 << 30;
/// Uploaded files are kept in pieces of this size until imported.
const CHUNK_BYTES: usize = 1 << 20;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_imports))
        .routes(routes!(get_import))
        .routes(routes!(costs))
        .routes(routes!(summary))
        .merge(records::router())
        .merge(currency::router())
}

/// The upload route: outside the 1 MiB body limit (and the idempotency buffer).
pub fn upload_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_import))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UrlImport {
    /// An HTTP(S) URL of the export, such as a presigned bucket link.
    pub url: String,
    pub provider_id: Option<Uuid>,
    /// `auto` (the default: told by the header), `focus`, `aws_cur`, `azure`, `oci`, `gcp` or
    /// `databricks`.
    pub format: Option<String>,
}

/// A multipart upload: the export (`file`, CSV or gzipped CSV) and the same options.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ImportUpload {
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    provider_id: Option<Uuid>,
    format: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ImportAccepted {
    pub id: Uuid,
    pub task_id: Uuid,
    pub status: String,
    pub bytes: i64,
    pub message: String,
}

/// What `format` may say.
fn check_format(v: &mut Validator, format: Option<&str>) {
    v.check(
        format.is_none_or(|f| f == "auto" || Format::parse(f).is_some()),
        "format",
        "must be auto, focus, aws_cur, azure, oci, gcp or databricks",
    );
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

/// Import a billing export: upload it (multipart, field `file`) or give its URL (JSON).
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
    let (provider_id, format, bytes) = if multipart {
        let mut form = Multipart::from_request(request, &state)
            .await
            .map_err(|err| AppError::BadRequest(err.body_text()))?;
        sqlx::query!(
            "INSERT INTO billing_imports (id, tenant_id, source, created_by) VALUES ($1, $2, 'upload', $3)",
            id,
            auth.tenant_id,
            auth.user_id()
        )
        .execute(&mut *tx)
        .await?;
        let (mut provider_id, mut format, mut bytes, mut seen_file) = (None, None, 0i64, false);
        let bad = |err: axum::extract::multipart::MultipartError| {
            if err.status() == StatusCode::PAYLOAD_TOO_LARGE {
                AppError::PayloadTooLarge(format!(
                    "the file is too large (limit {} GiB)",
                    MAX_UPLOAD_BYTES >> 30
                ))
            } else {
                AppError::BadRequest(err.body_text())
            }
        };
        while let Some(mut field) = form.next_field().await.map_err(bad)? {
            match field.name().unwrap_or_default() {
                "file" => {
                    seen_file = true;
                    let filename = field.file_name().map(str::to_string);
                    sqlx::query!(
                        "UPDATE billing_imports SET filename = $2 WHERE id = $1",
                        id,
                        filename
                    )
                    .execute(&mut *tx)
                    .await?;
                    // Written as it arrives, a piece at a time: never the whole file in memory.
                    let (mut piece, mut seq) = (Vec::with_capacity(CHUNK_BYTES), 0);
                    while let Some(chunk) = field.chunk().await.map_err(bad)? {
                        bytes += chunk.len() as i64;
                        piece.extend_from_slice(&chunk);
                        if piece.len() >= CHUNK_BYTES {
                            store_chunk(&mut tx, id, seq, &std::mem::take(&mut piece)).await?;
                            seq += 1;
                        }
                    }
                    if !piece.is_empty() {
                        store_chunk(&mut tx, id, seq, &piece).await?;
                    }
                }
                "provider_id" => {
                    let text = field.text().await.map_err(bad)?;
                    provider_id = Some(
                        text.trim()
                            .parse::<Uuid>()
                            .map_err(|_| AppError::invalid("provider_id", "must be a UUID"))?,
                    );
                }
                "format" => format = Some(field.text().await.map_err(bad)?.trim().to_string()),
                other => {
                    return Err(AppError::invalid(
                        other,
                        "unknown field (expected file, provider_id, format)",
                    ));
                }
            }
        }
        if !seen_file {
            return Err(AppError::invalid("file", "the form has no file"));
        }
        (provider_id, format, bytes)
    } else {
        let Json(body) = Json::<UrlImport>::from_request(request, &state).await?;
        let mut v = Validator::new();
        v.check(
            reqwest::Url::parse(&body.url)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some()),
            "url",
            "must be an http or https URL",
        );
        v.finish()?;
        sqlx::query!(
            "INSERT INTO billing_imports (id, tenant_id, source, url, created_by)
             VALUES ($1, $2, 'url', $3, $4)",
            id,
            auth.tenant_id,
            body.url,
            auth.user_id()
        )
        .execute(&mut *tx)
        .await?;
        (body.provider_id, body.format, 0)
    };
    let mut v = Validator::new();
    check_format(&mut v, format.as_deref());
    v.finish()?;
    check_provider(&state, auth.tenant_id, provider_id).await?;
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
        "UPDATE billing_imports SET provider_id = $2, format = $3, bytes = $4, task_id = $5 WHERE id = $1",
        id,
        provider_id,
        format.unwrap_or_else(|| "auto".into()),
        bytes,
        task_id
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

async fn store_chunk(
    tx: &mut sqlx::PgConnection,
    id: Uuid,
    seq: i32,
    data: &[u8],
) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO billing_import_chunks (import_id, seq, data) VALUES ($1, $2, $3)",
        id,
        seq,
        data
    )
    .execute(tx)
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
    /// Rows of earlier imports (same provider, billing account and period) this one replaced.
    pub rows_replaced: i64,
    /// Up to 20 rejected rows: `{line, reason}`.
    pub rejected_examples: Value,
    /// Per currency: billed, effective and list cost (exact decimals, as text).
    pub totals: Value,
    pub period_start: Option<DateTime<Utc>>,
    pub period_end: Option<DateTime<Utc>>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl BillingImport {
    fn shown(mut self) -> Self {
        self.url = self.url.map(|url| match reqwest::Url::parse(&url) {
            Ok(mut parsed) => {
                parsed.set_query(None);
                let _ = parsed.set_password(None);
                parsed.to_string()
            }
            Err(_) => String::new(),
        });
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
                rows_read, rows_loaded, rows_rejected, rows_replaced, rejected_examples, totals,
                period_start, period_end, error, created_at, finished_at
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
                rows_read, rows_loaded, rows_rejected, rows_replaced, rejected_examples, totals,
                period_start, period_end, error, created_at, finished_at
         FROM billing_imports WHERE id = $1 AND tenant_id = $2",
        id,
        auth.tenant_id
    )
    .fetch_optional(&state.db)
    .await?
    .ok_or(AppError::NotFound("billing import"))?;
    Ok(Json(found.shown()))
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

/// Billed cost over a period, by provider (with services), service or day (seed 001).
#[utoipa::path(get, path = "/billing/costs", tag = "billing", params(CostQuery),
    responses((status = 200, body = CostReport), (status = 422)), security(("bearer" = []), ("api_key" = [])))]
async fn costs(
    State(state): State<AppState>,
    auth: TenantAuth,
    Query(query): Query<CostQuery>,
) -> AppResult<Json<CostReport>> {
    let today = Utc::now().date_naive();
    let end = query.end_date.unwrap_or(today);
    let start = query.start_date.unwrap_or_else(|| month_start(end));
    let mut v = Validator::new();
    v.check(start <= end, "start_date", "must not be after end_date");
    v.finish()?;
    let rows = sqlx::query!(
        r#"SELECT day AS "day!", billing_currency AS "currency!", provider_name AS "provider!",
                  service_name AS "service!", sum(billed_cost)::float8 AS "cost!"
           FROM cost_daily
           WHERE tenant_id = $1 AND day BETWEEN $2 AND $3 AND ($4::text IS NULL OR billing_currency = $4)
           GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4"#,
        auth.tenant_id,
        start,
        end,
        query.currency
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
}

/// This month so far (with its projection) against last month (seed 001).
#[utoipa::path(get, path = "/billing/summary", tag = "billing", params(SummaryQuery),
    responses((status = 200, body = BillingSummary)), security(("bearer" = []), ("api_key" = [])))]
async fn summary(
    State(state): State<AppState>,
    auth: TenantAuth,
    Query(query): Query<SummaryQuery>,
) -> AppResult<Json<BillingSummary>> {
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
        r#"SELECT COALESCE(sum(billed_cost) FILTER (WHERE day >= $2 AND day <= $3), 0)::float8 AS "current!",
                  COALESCE(sum(billed_cost) FILTER (WHERE day >= $4 AND day < $2), 0)::float8 AS "last!"
           FROM cost_daily WHERE tenant_id = $1 AND billing_currency = $5 AND day >= $4"#,
        auth.tenant_id,
        this_month,
        today,
        last_month,
        currency.clone().unwrap_or_default()
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
