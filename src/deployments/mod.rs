//! Deployments: each Terraform run against a resource (apply, destroy, or an action), with its
//! plan summary, progress, outputs, diagnostics and log.

pub mod job;
pub mod logs;
pub mod ws;

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::TenantAuth;
use crate::error::{AppError, AppResult};
use crate::http::{Json, Path, Query, Validator};
use crate::state::AppState;
use logs::LogLine;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_deployment))
        .routes(routes!(get_logs))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Deployment {
    pub id: Uuid,
    pub resource_id: Uuid,
    pub task_id: Uuid,
    /// `apply`, `destroy` or `action`.
    pub operation: String,
    /// For `action`: `stop`, `start`, `terminate` or `health_check`.
    pub action: Option<String>,
    /// `queued`, `running`, `succeeded`, `failed` or `cancelled`.
    pub status: String,
    pub waiting_reason: Option<String>,
    /// What the plan would do: `{add, change, remove}`.
    pub plan_summary: Option<Value>,
    /// Per Terraform resource address: action, status and seconds elapsed.
    pub progress: Value,
    pub outputs: Option<Value>,
    /// Terraform's diagnostics (errors and warnings) from this run.
    pub diagnostics: Value,
    pub error: Option<String>,
    pub attempts: i32,
    pub requested_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<i64>,
}

pub(crate) async fn fetch(state: &AppState, tenant_id: Uuid, id: Uuid) -> AppResult<Deployment> {
    sqlx::query_as!(
        Deployment,
        r#"SELECT id, resource_id, task_id, operation, action, status, waiting_reason, plan_summary,
                  progress, outputs, diagnostics, error, attempts, requested_by, created_at,
                  started_at, finished_at,
                  (extract(epoch FROM finished_at - started_at) * 1000)::bigint AS duration_ms
           FROM deployments WHERE id = $1 AND tenant_id = $2"#,
        id,
        tenant_id
    )
    .fetch_optional(&state.db)
    .await?
    .ok_or(AppError::NotFound("deployment"))
}

/// A resource's deployments, oldest first.
pub(crate) async fn for_resource(
    state: &AppState,
    tenant_id: Uuid,
    resource_id: Uuid,
    (limit, offset): (i64, i64),
) -> AppResult<(Vec<Deployment>, i64)> {
    let rows = sqlx::query_as!(
        Deployment,
        r#"SELECT id, resource_id, task_id, operation, action, status, waiting_reason, plan_summary,
                  progress, outputs, diagnostics, error, attempts, requested_by, created_at,
                  started_at, finished_at,
                  (extract(epoch FROM finished_at - started_at) * 1000)::bigint AS duration_ms
           FROM deployments WHERE resource_id = $1 AND tenant_id = $2
           ORDER BY created_at, id LIMIT $3 OFFSET $4"#,
        resource_id,
        tenant_id,
        limit,
        offset
    )
    .fetch_all(&state.db)
    .await?;
    let total = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM deployments WHERE resource_id = $1 AND tenant_id = $2"#,
        resource_id,
        tenant_id
    )
    .fetch_one(&state.db)
    .await?;
    Ok((rows, total))
}

/// A deployment: what it does, how far it got, and how it ended.
#[utoipa::path(get, path = "/deployments/{id}", tag = "deployments", params(("id" = Uuid, Path)),
    responses((status = 200, body = Deployment), (status = 404)), security(("bearer" = []), ("api_key" = [])))]
async fn get_deployment(
    State(state): State<AppState>,
    auth: TenantAuth,
    Path(id): Path<Uuid>,
) -> AppResult<Json<Deployment>> {
    Ok(Json(fetch(&state, auth.tenant_id, id).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogQuery {
    /// Lines after this sequence number (default 0: from the start).
    pub from_seq: Option<i64>,
    /// At most this many lines, 1 to 5000 (default 1000).
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LogPage {
    pub data: Vec<LogLine>,
    /// Ask for lines after this to continue.
    pub next_seq: i64,
    pub status: String,
    /// True once the deployment has finished and every line is in.
    pub complete: bool,
}

/// A deployment's log over plain HTTP (the WebSocket's fallback): poll with `from_seq`.
#[utoipa::path(get, path = "/deployments/{id}/logs", tag = "deployments",
    params(("id" = Uuid, Path), LogQuery),
    responses((status = 200, body = LogPage), (status = 404)), security(("bearer" = []), ("api_key" = [])))]
async fn get_logs(
    State(state): State<AppState>,
    auth: TenantAuth,
    Path(id): Path<Uuid>,
    Query(query): Query<LogQuery>,
) -> AppResult<Json<LogPage>> {
    let from_seq = query.from_seq.unwrap_or(0);
    let limit = query.limit.unwrap_or(1000);
    Validator::new()
        .check(from_seq >= 0, "from_seq", "must not be negative")
        .check((1..=5000).contains(&limit), "limit", "must be 1 to 5000")
        .finish()?;
    // Status first: lines read after a finished status are all the lines there are.
    let deployment = fetch(&state, auth.tenant_id, id).await?;
    let data = logs::lines_after(&state.db, id, from_seq, limit).await?;
    let next_seq = data.last().map_or(from_seq, |line| line.seq);
    let finished = matches!(
        deployment.status.as_str(),
        "succeeded" | "failed" | "cancelled"
    );
    Ok(Json(LogPage {
        complete: finished && (data.len() as i64) < limit,
        data,
        next_seq,
        status: deployment.status,
    }))
}
