//! Orchestrations (seed 004): work over many resources as one task.
//!
//! vm-dns ([`vm_dns`]) and DNS failover ([`dns_failover`]) run as steps kept on their task.
//!
//! Lockdown: every running vm in a scope (the tenant, a provider, or a tag) is stopped or
//! terminated, five at a time (a sliding window), each through its own deployment; the task lists each vm and
//! its outcome. A dry run lists what would happen and changes nothing. Every lockdown is kept
//! with who asked and why.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::{Role, TenantAuth};
use crate::error::{AppError, AppResult};
use crate::http::{Json, Page, Pagination, Query, Validator};
use crate::jobs::{JobContext, JobError, JobKind};
use crate::resources::{Action, Requester};
use crate::state::AppState;
use crate::tasks::NewTask;

pub mod dns_failover;
mod steps;
pub mod vm_dns;

pub use steps::wait_for_task;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_lockdowns, start_lockdown))
        .routes(routes!(vm_dns::start))
        .routes(routes!(dns_failover::list, dns_failover::start))
}

/// Vms acted on at once.
const LOCKDOWN_PARALLELISM: usize = 5;

/// Which vms a lockdown covers: exactly one of the three.
#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LockdownScope {
    /// `true`: every vm of the tenant.
    pub tenant: Option<bool>,
    /// Every vm of this provider.
    pub provider_id: Option<Uuid>,
    /// `key:value`: every vm with this tag.
    pub tag: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LockdownAction {
    Stop,
    Terminate,
}

impl LockdownAction {
    fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Terminate => "terminate",
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LockdownRequest {
    pub scope: LockdownScope,
    pub action: LockdownAction,
    /// Why (kept with the lockdown).
    pub reason: String,
    /// List what would happen, change nothing.
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Serialize, ToSchema)]
pub struct LockdownStarted {
    pub lockdown_id: Uuid,
    pub task_id: Uuid,
    pub dry_run: bool,
    pub message: String,
}

/// Stop or terminate every running vm in a scope (admins).
#[utoipa::path(post, path = "/orchestrate/lockdown", tag = "orchestration", request_body = LockdownRequest,
    responses((status = 202, body = LockdownStarted), (status = 403), (status = 422)),
    security(("bearer" = []), ("api_key" = [])))]
async fn start_lockdown(
    State(state): State<AppState>,
    auth: TenantAuth,
    Json(body): Json<LockdownRequest>,
) -> AppResult<(StatusCode, Json<LockdownStarted>)> {
    auth.require(Role::Admin)?;
    let scope = &body.scope;
    let chosen = [
        scope.tenant == Some(true),
        scope.provider_id.is_some(),
        scope.tag.is_some(),
    ];
    let mut v = Validator::new();
    v.check(
        chosen.iter().filter(|c| **c).count() == 1 && scope.tenant != Some(false),
        "scope",
        "give exactly one of tenant: true, provider_id, tag",
    )
    .check(
        scope
            .tag
            .as_deref()
            .is_none_or(|t| t.split_once(':').is_some_and(|(k, _)| !k.is_empty())),
        "scope.tag",
        "must be key:value",
    )
    .text("reason", &body.reason, 1, 500);
    v.finish()?;
    if let Some(provider_id) = scope.provider_id {
        let exists = crate::providers::exists(&state.db, auth.tenant_id, provider_id).await?;
        if !exists {
            return Err(AppError::invalid("scope.provider_id", "no such provider"));
        }
    }

    let id = Uuid::new_v4();
    let mut tx = state.db.begin().await?;
    let task_id = crate::tasks::enqueue_one(
        &mut tx,
        NewTask {
            tenant_id: auth.tenant_id,
            kind: JobKind::OrchestrateLockdown,
            params: json!({ "lockdown_id": id }),
            created_by: auth.user_id(),
        },
    )
    .await?;
    sqlx::query!(
        "INSERT INTO lockdowns (id, tenant_id, task_id, scope, action, reason, dry_run, requested_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        id,
        auth.tenant_id,
        task_id,
        serde_json::to_value(scope).map_err(anyhow::Error::from)?,
        body.action.as_str(),
        body.reason.trim(),
        body.dry_run,
        auth.user_id()
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(LockdownStarted {
            lockdown_id: id,
            task_id,
            dry_run: body.dry_run,
            message: if body.dry_run {
                "Lockdown dry run started".into()
            } else {
                "Lockdown started".into()
            },
        }),
    ))
}

#[derive(Serialize, ToSchema)]
pub struct Lockdown {
    pub id: Uuid,
    pub task_id: Option<Uuid>,
    pub scope: Value,
    pub action: String,
    pub reason: String,
    pub dry_run: bool,
    pub requested_by: Option<Uuid>,
    pub status: String,
    /// Each vm in scope: resource_id, name, provider_id, action, outcome (and its task,
    /// deployment and error when it was acted on).
    pub results: Value,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// The tenant's lockdowns, newest first.
#[utoipa::path(get, path = "/orchestrate/lockdown", tag = "orchestration", params(Pagination),
    responses((status = 200, body = Page<Lockdown>)), security(("bearer" = []), ("api_key" = [])))]
async fn list_lockdowns(
    State(state): State<AppState>,
    auth: TenantAuth,
    Query(page): Query<Pagination>,
) -> AppResult<Page<Lockdown>> {
    let (limit, offset) = page.resolve()?;
    let data = sqlx::query_as!(
        Lockdown,
        "SELECT id, task_id, scope, action, reason, dry_run, requested_by, status, results, created_at, finished_at
         FROM lockdowns WHERE tenant_id = $1 ORDER BY created_at DESC, id LIMIT $2 OFFSET $3",
        auth.tenant_id,
        limit,
        offset
    )
    .fetch_all(&state.db)
    .await?;
    let total = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM lockdowns WHERE tenant_id = $1"#,
        auth.tenant_id
    )
    .fetch_one(&state.db)
    .await?;
    Ok(Page::new(data, total, (limit, offset)))
}

/// `orchestrate.lockdown`: acts on every running vm in scope, a few at a time, and waits for
/// each. A retried run acts on the vms still running.
pub async fn lockdown(ctx: &JobContext) -> Result<Value, JobError> {
    let id = ctx.id_param("lockdown_id")?;
    let db = &ctx.state.db;
    let row = sqlx::query!(
        "UPDATE lockdowns SET status = 'running' WHERE id = $1
         RETURNING tenant_id, scope, action, dry_run, requested_by",
        id
    )
    .fetch_optional(db)
    .await?
    .ok_or_else(|| JobError::Fatal(format!("lockdown {id} does not exist")))?;
    let scope: LockdownScope = serde_json::from_value(row.scope)
        .map_err(|err| JobError::Fatal(format!("bad scope: {err}")))?;
    let (tag_key, tag_value) = match scope.tag.as_deref().and_then(|t| t.split_once(':')) {
        Some((k, v)) => (Some(k.to_string()), Some(v.to_string())),
        None => (None, None),
    };
    let vms = sqlx::query!(
        "SELECT id, name, provider_id FROM resources
         WHERE tenant_id = $1 AND kind = 'vm' AND status = 'active' AND power_state = 'running'
           AND ($2::uuid IS NULL OR provider_id = $2)
           AND ($3::text IS NULL OR tags ->> $3 = $4)
         ORDER BY name, id",
        row.tenant_id,
        scope.provider_id,
        tag_key,
        tag_value
    )
    .fetch_all(db)
    .await?;
    let action = match row.action.as_str() {
        "terminate" => Action::Terminate,
        _ => Action::Stop,
    };
    let who = Requester {
        tenant_id: row.tenant_id,
        user_id: row.requested_by,
    };

    let (action_name, dry_run) = (row.action.clone(), row.dry_run);
    let total = vms.len();
    // A sliding window: a vm whose action waits behind a long run holds one slot, not a batch.
    // The futures own what they use (a stream of borrowing futures is not `Send`).
    let mut acting = futures::stream::iter(vms)
        .map(|vm| {
            let (state, cancel, action_name) =
                (ctx.state.clone(), ctx.cancel.clone(), action_name.clone());
            async move {
                let base = json!({
                    "resource_id": vm.id, "name": vm.name, "provider_id": vm.provider_id,
                    "action": action_name,
                });
                if dry_run {
                    return merge(base, json!({"outcome": format!("would_{action_name}")}));
                }
                match act_and_wait(&state, &cancel, who, vm.id, action).await {
                    Ok(outcome) => merge(base, outcome),
                    Err(err) => merge(base, json!({"outcome": "failed", "error": err})),
                }
            }
        })
        .buffer_unordered(LOCKDOWN_PARALLELISM);
    let mut results = Vec::with_capacity(total);
    let mut cancelled = false;
    loop {
        tokio::select! {
            next = acting.next() => match next {
                Some(result) => {
                    results.push(result);
                    let message = format!("{} of {total} vms", results.len());
                    // Progress is informative; a failed update does not stop a lockdown.
                    let _ = ctx
                        .progress((results.len() * 100 / total.max(1)) as i16, &message)
                        .await;
                }
                None => break,
            },
            _ = ctx.cancel.cancelled() => {
                cancelled = true;
                break;
            }
        }
    }
    drop(acting);
    // The vms' own waits also stop at a cancel, so the stream can end before the select sees it.
    let cancelled = cancelled || ctx.cancel.is_cancelled();

    // Every exit records what was done.
    let failed = results.iter().filter(|r| r["outcome"] == "failed").count();
    let status = match (cancelled, failed) {
        (true, _) => "cancelled",
        (false, 0) => "succeeded",
        _ => "failed",
    };
    sqlx::query!(
        "UPDATE lockdowns SET status = $2, results = $3, finished_at = now() WHERE id = $1",
        id,
        status,
        Value::Array(results.clone())
    )
    .execute(db)
    .await?;
    if cancelled {
        return Err(JobError::Cancelled);
    }
    if failed > 0 {
        // The lockdown row keeps every outcome; the task says how many failed.
        return Err(JobError::Fatal(format!(
            "{failed} of {} vms could not be locked down",
            results.len()
        )));
    }
    Ok(json!({
        "lockdown_id": id, "dry_run": dry_run, "action": row.action,
        "resources": results, "failed": failed,
    }))
}

fn merge(mut base: Value, extra: Value) -> Value {
    if let (Some(base), Some(extra)) = (base.as_object_mut(), extra.as_object()) {
        base.extend(extra.clone());
    }
    base
}

/// Starts the action on one vm and waits for its task to finish.
async fn act_and_wait(
    state: &AppState,
    cancel: &tokio_util::sync::CancellationToken,
    who: Requester,
    resource_id: Uuid,
    action: Action,
) -> Result<Value, String> {
    let resource = crate::resources::fetch(state, who.tenant_id, resource_id)
        .await
        .map_err(|err| err.to_string())?;
    let started = crate::resources::start_action(state, who, &resource, action)
        .await
        .map_err(|err| err.to_string())?;
    loop {
        let task = sqlx::query!(
            "SELECT status, error FROM tasks WHERE id = $1",
            started.task_id
        )
        .fetch_one(&state.db)
        .await
        .map_err(|err| err.to_string())?;
        if matches!(task.status.as_str(), "succeeded" | "failed" | "cancelled") {
            let outcome = if task.status == "succeeded" {
                match action {
                    Action::Terminate => "terminated",
                    _ => "stopped",
                }
            } else {
                "failed"
            };
            return Ok(json!({
                "outcome": outcome, "task_id": started.task_id,
                "deployment_id": started.deployment_id, "error": task.error,
            }));
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = cancel.cancelled() => {
                return Ok(json!({
                    "outcome": "cancelled", "task_id": started.task_id,
                    "deployment_id": started.deployment_id,
                    "error": "the lockdown was cancelled before this action finished; its task goes on",
                }));
            }
        }
    }
}
