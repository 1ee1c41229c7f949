//! Utilisation samples of resources: CPU and memory in percent at a moment, posted one at a
//! time or in batches, read back over a window of days with their averages and peaks.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::{Role, TenantAuth};
use crate::error::{AppError, AppResult};
use crate::http::{Json, Pagination, Path, Query, Validator};
use crate::state::AppState;

/// Most samples in one request.
pub const MAX_BATCH: usize = 1000;
/// How far in the future a sample's time may lie (clocks differ).
const CLOCK_SKEW: Duration = Duration::minutes(5);

#[derive(Debug, Serialize, ToSchema)]
pub struct UsageSample {
    pub id: Uuid,
    pub resource_id: Uuid,
    pub cpu_percent: f64,
    pub memory_percent: f64,
    pub sampled_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct SampleInput {
    /// A resource of the tenant.
    pub resource_id: Uuid,
    /// 0 to 100.
    pub cpu_percent: f64,
    /// 0 to 100.
    pub memory_percent: f64,
    /// When it was measured (default now); at most 5 minutes in the future.
    pub sampled_at: Option<DateTime<Utc>>,
}

/// One sample, or `{samples: [...]}` with up to 1000.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum UsageInput {
    Batch { samples: Vec<SampleInput> },
    One(SampleInput),
}

/// The answer to a POST: the sample, or `{data: [...]}` for a batch.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum UsageCreated {
    Batch { data: Vec<UsageSample> },
    One(UsageSample),
}

/// Record utilisation samples of the tenant's resources.
#[utoipa::path(post, path = "/usage", tag = "catalog", request_body = UsageInput,
    responses((status = 201, body = UsageCreated), (status = 422, description = "Invalid sample or unknown resource")),
    security(("bearer" = []), ("api_key" = [])))]
pub(super) async fn create_usage(
    State(state): State<AppState>,
    auth: TenantAuth,
    Json(body): Json<UsageInput>,
) -> AppResult<(StatusCode, Json<UsageCreated>)> {
    auth.require(Role::Member)?;
    let (samples, batch) = match body {
        UsageInput::Batch { samples } => (samples, true),
        UsageInput::One(sample) => (vec![sample], false),
    };
    let now = Utc::now();
    let mut v = Validator::new();
    v.check(
        (1..=MAX_BATCH).contains(&samples.len()),
        "samples",
        format!("must hold 1 to {MAX_BATCH} samples"),
    );
    let field = |i: usize, name: &str| {
        if batch {
            format!("samples[{i}].{name}")
        } else {
            name.to_string()
        }
    };
    for (i, s) in samples.iter().enumerate() {
        for (name, value) in [
            ("cpu_percent", s.cpu_percent),
            ("memory_percent", s.memory_percent),
        ] {
            v.check(
                value.is_finite() && (0.0..=100.0).contains(&value),
                &field(i, name),
                "must be between 0 and 100",
            );
        }
        if let Some(at) = s.sampled_at {
            v.check(
                at <= now + CLOCK_SKEW,
                &field(i, "sampled_at"),
                "must not be more than 5 minutes in the future",
            );
        }
    }
    v.finish()?;

    let resource_ids: Vec<Uuid> = samples.iter().map(|s| s.resource_id).collect();
    let known = sqlx::query_scalar!(
        "SELECT id FROM resources WHERE tenant_id = $1 AND id = ANY($2)",
        auth.tenant_id,
        &resource_ids
    )
    .fetch_all(&state.db)
    .await?;
    for (i, id) in resource_ids.iter().enumerate() {
        v.check(
            known.contains(id),
            &field(i, "resource_id"),
            "no such resource",
        );
    }
    v.finish()?;

    let ids: Vec<Uuid> = samples.iter().map(|_| Uuid::new_v4()).collect();
    let cpu: Vec<f64> = samples.iter().map(|s| s.cpu_percent).collect();
    let memory: Vec<f64> = samples.iter().map(|s| s.memory_percent).collect();
    let at: Vec<DateTime<Utc>> = samples
        .iter()
        .map(|s| s.sampled_at.unwrap_or(now))
        .collect();
    let mut data = sqlx::query_as!(
        UsageSample,
        r#"INSERT INTO usage_samples (id, tenant_id, resource_id, cpu_percent, memory_percent, sampled_at)
           SELECT u.id, $1, u.resource_id, u.cpu, u.memory, u.at
           FROM UNNEST($2::uuid[], $3::uuid[], $4::float8[], $5::float8[], $6::timestamptz[])
                AS u(id, resource_id, cpu, memory, at)
           RETURNING id, resource_id, cpu_percent, memory_percent, sampled_at, created_at"#,
        auth.tenant_id,
        &ids,
        &resource_ids,
        &cpu,
        &memory,
        &at
    )
    .fetch_all(&state.db)
    .await?;
    // RETURNING has no guaranteed order: answer in the order asked.
    data.sort_by_key(|s| ids.iter().position(|id| *id == s.id));
    let created =
        if batch {
            UsageCreated::Batch { data }
        } else {
            UsageCreated::One(data.pop().ok_or_else(|| {
                AppError::Internal(anyhow::anyhow!("the sample was not inserted"))
            })?)
        };
    Ok((StatusCode::CREATED, Json(created)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageFilter {
    /// Only this resource's samples (default: every resource of the tenant).
    pub resource_id: Option<Uuid>,
    /// The window, in days back from now: 1 to 365 (default 14).
    pub days: Option<i64>,
}

/// Averages and peaks over the window (null when there is no sample).
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageSummary {
    pub samples: i64,
    pub avg_cpu_percent: Option<f64>,
    pub max_cpu_percent: Option<f64>,
    pub avg_memory_percent: Option<f64>,
    pub max_memory_percent: Option<f64>,
}

/// Samples of a window, newest first, one page of them, and the summary of all of them.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageReport {
    pub resource_id: Option<Uuid>,
    pub days: i64,
    pub since: DateTime<Utc>,
    pub summary: UsageSummary,
    pub data: Vec<UsageSample>,
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
}

impl IntoResponse for UsageReport {
    fn into_response(self) -> Response {
        let total = self.total;
        crate::http::json_with_total(self, total)
    }
}

/// Utilisation samples of the last `days` days, with averages and peaks.
#[utoipa::path(get, path = "/usage", tag = "catalog", params(UsageFilter, Pagination),
    responses((status = 200, body = UsageReport), (status = 404, description = "No such resource"), (status = 422)),
    security(("bearer" = []), ("api_key" = [])))]
pub(super) async fn list_usage(
    State(state): State<AppState>,
    auth: TenantAuth,
    Query(filter): Query<UsageFilter>,
    Query(page): Query<Pagination>,
) -> AppResult<UsageReport> {
    let (limit, offset) = page.resolve()?;
    let days = filter.days.unwrap_or(14);
    Validator::new()
        .check(
            (1..=365).contains(&days),
            "days",
            "must be between 1 and 365",
        )
        .finish()?;
    if let Some(resource_id) = filter.resource_id {
        sqlx::query_scalar!(
            "SELECT id FROM resources WHERE id = $1 AND tenant_id = $2",
            resource_id,
            auth.tenant_id
        )
        .fetch_optional(&state.db)
        .await?
        .ok_or(AppError::NotFound("resource"))?;
    }
    let since = Utc::now() - Duration::days(days);
    let summary = sqlx::query_as!(
        UsageSummary,
        r#"SELECT count(*) AS "samples!", avg(cpu_percent) AS avg_cpu_percent,
                  max(cpu_percent) AS max_cpu_percent, avg(memory_percent) AS avg_memory_percent,
                  max(memory_percent) AS max_memory_percent
           FROM usage_samples
           WHERE tenant_id = $1 AND ($2::uuid IS NULL OR resource_id = $2) AND sampled_at >= $3"#,
        auth.tenant_id,
        filter.resource_id,
        since
    )
    .fetch_one(&state.db)
    .await?;
    let data = sqlx::query_as!(
        UsageSample,
        "SELECT id, resource_id, cpu_percent, memory_percent, sampled_at, created_at
         FROM usage_samples
         WHERE tenant_id = $1 AND ($2::uuid IS NULL OR resource_id = $2) AND sampled_at >= $3
         ORDER BY sampled_at DESC, id LIMIT $4 OFFSET $5",
        auth.tenant_id,
        filter.resource_id,
        since,
        limit,
        offset
    )
    .fetch_all(&state.db)
    .await?;
    Ok(UsageReport {
        resource_id: filter.resource_id,
        days,
        since,
        total: summary.samples,
        summary,
        data,
        limit,
        offset,
    })
}

/// One utilisation sample.
#[utoipa::path(get, path = "/usage/{id}", tag = "catalog", params(("id" = Uuid, Path)),
    responses((status = 200, body = UsageSample), (status = 404)), security(("bearer" = []), ("api_key" = [])))]
pub(super) async fn get_usage(
    State(state): State<AppState>,
    auth: TenantAuth,
    Path(id): Path<Uuid>,
) -> AppResult<Json<UsageSample>> {
    sqlx::query_as!(
        UsageSample,
        "SELECT id, resource_id, cpu_percent, memory_percent, sampled_at, created_at
         FROM usage_samples WHERE id = $1 AND tenant_id = $2",
        id,
        auth.tenant_id
    )
    .fetch_optional(&state.db)
    .await?
    .map(Json)
    .ok_or(AppError::NotFound("usage sample"))
}
