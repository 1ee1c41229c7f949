//! Tasks: the record of every piece of long work, and the one way to start it ([`enqueue`]):
//! the task row and its queue job are written in the caller's transaction.

use apalis::prelude::{TaskBuilder, TaskId};
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::PgConnection;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::{Role, TenantAuth};
use crate::error::{AppError, AppResult};
use crate::http::{Json, Page, Pagination, Path, Query};
use crate::jobs::{JobKind, JobRef};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_tasks, create_task))
        .routes(routes!(get_task))
        .routes(routes!(cancel_task))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn is_finished(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

crate::db::text_enum!(TaskStatus);

#[derive(Debug, Serialize, ToSchema)]
pub struct Progress {
    /// 0 to 100.
    pub percent: i16,
    pub message: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Task {
    pub id: Uuid,
    pub kind: String,
    pub status: TaskStatus,
    pub attempts: i32,
    pub max_attempts: i32,
    pub progress: Progress,
    pub params: Value,
    pub result: Option<Value>,
    pub error: Option<String>,
    /// For a task of several steps (an orchestration): each step's name, status, and the
    /// resources, tasks and deployments it made.
    pub steps: Value,
    pub cancel_requested: bool,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

struct TaskRow {
    id: Uuid,
    kind: String,
    status: String,
    attempts: i32,
    max_attempts: i32,
    progress: i16,
    progress_message: Option<String>,
    params: Value,
    result: Option<Value>,
    error: Option<String>,
    steps: Value,
    cancel_requested: bool,
    created_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<TaskRow> for Task {
    type Error = AppError;
    fn try_from(row: TaskRow) -> AppResult<Self> {
        Ok(Task {
            id: row.id,
            kind: row.kind,
            status: row.status.parse()?,
            attempts: row.attempts,
            max_attempts: row.max_attempts,
            progress: Progress {
                percent: row.progress,
                message: row.progress_message,
            },
            params: row.params,
            result: row.result,
            error: row.error,
            steps: row.steps,
            cancel_requested: row.cancel_requested,
            created_at: row.created_at,
            started_at: row.started_at,
            finished_at: row.finished_at,
            updated_at: row.updated_at,
        })
    }
}

/// A task to start.
pub struct NewTask {
    pub tenant_id: Uuid,
    pub kind: JobKind,
    pub params: Value,
    pub created_by: Option<Uuid>,
}

/// Writes one task and its queue job on `conn` (see [`enqueue`]); returns the task id.
pub async fn enqueue_one(conn: &mut PgConnection, task: NewTask) -> sqlx::Result<Uuid> {
    Ok(enqueue(conn, vec![task]).await?[0])
}

/// Writes tasks and their queue jobs on `conn`: call it inside the transaction of the change
/// the tasks belong to, so either both exist or neither does. Returns the task ids.
pub async fn enqueue(conn: &mut PgConnection, tasks: Vec<NewTask>) -> sqlx::Result<Vec<Uuid>> {
    let mut ids = Vec::with_capacity(tasks.len());
    // Jobs per queue, so each queue gets one multi-row push.
    let mut jobs: std::collections::BTreeMap<&'static str, Vec<_>> = Default::default();
    let (mut tenant_ids, mut kinds, mut params, mut queues) = (vec![], vec![], vec![], vec![]);
    let (mut job_ids, mut max_attempts, mut created_by) = (vec![], vec![], vec![]);
    for task in tasks {
        let id = Uuid::new_v4();
        // apalis's push returns nothing, so its job id is chosen here and kept on the task.
        let job_id = ulid::Ulid::new().to_string();
        let payload = serde_json::to_vec(&JobRef { task_id: id })
            .expect("a task reference always serialises");
        jobs.entry(task.kind.queue()).or_default().push(
            TaskBuilder::new(payload)
                .task_id(TaskId::from_string(job_id.clone()))
                .max_attempts(task.kind.max_attempts() as usize)
                .build(),
        );
        ids.push(id);
        tenant_ids.push(task.tenant_id);
        kinds.push(task.kind.as_str().to_string());
        params.push(task.params);
        queues.push(task.kind.queue().to_string());
        job_ids.push(job_id);
        max_attempts.push(task.kind.max_attempts());
        created_by.push(task.created_by);
    }
    sqlx::query!(
        "INSERT INTO tasks (id, tenant_id, kind, params, queue, job_id, max_attempts, created_by)
         SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::jsonb[], $5::text[],
                              $6::text[], $7::int[], $8::uuid[])",
        &ids,
        &tenant_ids,
        &kinds,
        &params,
        &queues,
        &job_ids,
        &max_attempts,
        &created_by as &[Option<Uuid>]
    )
    .execute(&mut *conn)
    .await?;
    for (queue, batch) in jobs {
        apalis_postgres::queries::push_tasks(&mut *conn, queue, batch)
            .await
            .map_err(|err| match err {
                apalis_postgres::Error::Database(err) => err,
                other => sqlx::Error::Protocol(other.to_string()),
            })?;
    }
    Ok(ids)
}

pub async fn fetch_task(state: &AppState, tenant_id: Uuid, id: Uuid) -> AppResult<Task> {
    sqlx::query_as!(
        TaskRow,
        "SELECT id, kind, status, attempts, max_attempts, progress, progress_message, params, result,
                error, steps, cancel_requested, created_at, started_at, finished_at, updated_at
         FROM tasks WHERE id = $1 AND tenant_id = $2",
        id,
        tenant_id
    )
    .fetch_optional(&state.db)
    .await?
    .ok_or(AppError::NotFound("task"))?
    .try_into()
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TaskFilter {
    pub status: Option<TaskStatus>,
    pub kind: Option<String>,
}

/// The tenant's tasks, newest first.
#[utoipa::path(get, path = "/tasks", tag = "tasks", params(TaskFilter, Pagination),
    responses((status = 200, body = Page<Task>)), security(("bearer" = []), ("api_key" = [])))]
async fn list_tasks(
    State(state): State<AppState>,
    auth: TenantAuth,
    Query(filter): Query<TaskFilter>,
    Query(page): Query<Pagination>,
) -> AppResult<Page<Task>> {
    let (limit, offset) = page.resolve()?;
    let status = filter.status.map(TaskStatus::as_str);
    let rows = sqlx::query_as!(
        TaskRow,
        "SELECT id, kind, status, attempts, max_attempts, progress, progress_message, params, result,
                error, steps, cancel_requested, created_at, started_at, finished_at, updated_at
         FROM tasks
         WHERE tenant_id = $1 AND ($2::text IS NULL OR status = $2) AND ($3::text IS NULL OR kind = $3)
         ORDER BY created_at DESC, id LIMIT $4 OFFSET $5",
        auth.tenant_id,
        status,
        filter.kind,
        limit,
        offset
    )
    .fetch_all(&state.db)
    .await?;
    let total = sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM tasks
           WHERE tenant_id = $1 AND ($2::text IS NULL OR status = $2) AND ($3::text IS NULL OR kind = $3)"#,
        auth.tenant_id,
        status,
        filter.kind
    )
    .fetch_one(&state.db)
    .await?;
    let data = rows
        .into_iter()
        .map(Task::try_from)
        .collect::<AppResult<_>>()?;
    Ok(Page::new(data, total, (limit, offset)))
}

/// The progress of a piece of long work.
#[utoipa::path(get, path = "/tasks/{task_id}", tag = "tasks", params(("task_id" = Uuid, Path)),
    responses((status = 200, body = Task), (status = 404)), security(("bearer" = []), ("api_key" = [])))]
async fn get_task(
    State(state): State<AppState>,
    auth: TenantAuth,
    Path(task_id): Path<Uuid>,
) -> AppResult<Json<Task>> {
    Ok(Json(fetch_task(&state, auth.tenant_id, task_id).await?))
}

/// Cancel a task: a queued one is cancelled at once, a running one is stopped by its worker.
#[utoipa::path(post, path = "/tasks/{task_id}/cancel", tag = "tasks", params(("task_id" = Uuid, Path)),
    responses((status = 202, body = Task), (status = 404), (status = 409, description = "Already finished")),
    security(("bearer" = []), ("api_key" = [])))]
async fn cancel_task(
    State(state): State<AppState>,
    auth: TenantAuth,
    Path(task_id): Path<Uuid>,
) -> AppResult<(StatusCode, Json<Task>)> {
    auth.require(Role::Member)?;
    let mut tx = state.db.begin().await?;
    let cancelled = sqlx::query!(
        "UPDATE tasks SET cancel_requested = true, updated_at = now(),
                status = CASE WHEN status = 'queued' THEN 'cancelled' ELSE status END,
                finished_at = CASE WHEN status = 'queued' THEN now() ELSE finished_at END,
                error = CASE WHEN status = 'queued' THEN 'cancelled by request' ELSE error END
         WHERE id = $1 AND tenant_id = $2 AND status IN ('queued', 'running')
         RETURNING job_id, kind, status",
        task_id,
        auth.tenant_id
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(cancelled) = cancelled else {
        // Either no such task here, or it has finished.
        let task = fetch_task(&state, auth.tenant_id, task_id).await?;
        return Err(AppError::Conflict(format!(
            "the task has already {}",
            task.status.as_str()
        )));
    };
    // Work that never started is settled now (a deployment that waited its turn, say).
    if cancelled.status == "cancelled"
        && let Ok(kind) = cancelled.kind.parse::<JobKind>()
    {
        kind.cancelled_before_start(&mut tx, task_id).await?;
    }
    // A job not yet claimed need not be delivered at all.
    sqlx::query!(
        "UPDATE apalis.jobs SET status = 'Killed', done_at = now() WHERE id = $1 AND status = 'Pending'",
        cancelled.job_id
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!(
        "SELECT pg_notify($1, $2)",
        crate::jobs::runner::CANCEL_CHANNEL,
        task_id.to_string()
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(fetch_task(&state, auth.tenant_id, task_id).await?),
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTask {
    /// Only `diagnostic.*` kinds start this way; other work starts from its own resource.
    pub kind: JobKind,
    #[serde(default)]
    pub params: Option<Value>,
}

#[derive(Serialize, ToSchema)]
pub struct TaskAccepted {
    pub task_id: Uuid,
    pub status: TaskStatus,
}

/// Start a diagnostic task (admins only): exercises the queue and workers end to end.
#[utoipa::path(post, path = "/tasks", tag = "tasks", request_body = CreateTask,
    responses((status = 202, body = TaskAccepted)), security(("bearer" = []), ("api_key" = [])))]
async fn create_task(
    State(state): State<AppState>,
    auth: TenantAuth,
    Json(body): Json<CreateTask>,
) -> AppResult<(StatusCode, Json<TaskAccepted>)> {
    auth.require(Role::Admin)?;
    if !body.kind.is_diagnostic() {
        return Err(AppError::invalid(
            "kind",
            "only diagnostic tasks start here; other work starts from its resource",
        ));
    }
    let params = body.params.unwrap_or(Value::Object(Default::default()));
    if !params.is_object() {
        return Err(AppError::invalid("params", "must be a JSON object"));
    }
    let mut tx = state.db.begin().await?;
    let ids = enqueue(
        &mut tx,
        vec![NewTask {
            tenant_id: auth.tenant_id,
            kind: body.kind,
            params,
            created_by: auth.user_id(),
        }],
    )
    .await?;
    tx.commit().await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(TaskAccepted {
            task_id: ids[0],
            status: TaskStatus::Queued,
        }),
    ))
}
