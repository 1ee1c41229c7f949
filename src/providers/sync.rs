//! Sync: every managed resource of a provider (or of the whole tenant) is refreshed from the
//! cloud through its own `refresh` deployment (`terraform plan -refresh-only`, or the DNS
//! host's API for records): attributes, status and `last_synced` are updated, and what changed
//! outside Strata is recorded as drift.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::{Role, TenantAuth};
use crate::error::{AppError, AppResult};
use crate::http::{Json, Path};
use crate::jobs::{JobContext, JobError, JobKind};
use crate::resources::{Action, Requester};
use crate::state::AppState;
use crate::tasks::NewTask;

#[derive(Serialize, ToSchema)]
pub struct SyncStarted {
    pub message: String,
    pub task_id: Uuid,
}

/// Starts a sync task of one provider, or of all the tenant's providers.
pub async fn start(
    state: &AppState,
    auth: &TenantAuth,
    provider_id: Option<Uuid>,
) -> AppResult<SyncStarted> {
    auth.require(Role::Member)?;
    if let Some(provider_id) = provider_id {
        let exists = super::exists(&state.db, auth.tenant_id, provider_id).await?;
        if !exists {
            return Err(AppError::NotFound("provider"));
        }
    }
    let mut tx = state.db.begin().await?;
    let task_id = crate::tasks::enqueue_one(
        &mut tx,
        NewTask {
            tenant_id: auth.tenant_id,
            kind: JobKind::ProvidersSync,
            params: json!({ "provider_id": provider_id }),
            created_by: auth.user_id(),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(SyncStarted {
        message: match provider_id {
            Some(_) => "Provider sync started".into(),
            None => "Sync of all providers started".into(),
        },
        task_id,
    })
}

/// Refresh every managed resource of the provider from the cloud and record drift.
#[utoipa::path(post, path = "/providers/{id}/sync", tag = "providers", params(("id" = Uuid, Path)),
    responses((status = 202, body = SyncStarted), (status = 404)),
    security(("bearer" = []), ("api_key" = [])))]
pub async fn sync_provider(
    State(state): State<AppState>,
    auth: TenantAuth,
    Path(id): Path<Uuid>,
) -> AppResult<(StatusCode, Json<SyncStarted>)> {
    Ok((
        StatusCode::ACCEPTED,
        Json(start(&state, &auth, Some(id)).await?),
    ))
}

/// `providers.sync`: a refresh deployment per live resource in scope, all waited for.
pub async fn run(ctx: &JobContext) -> Result<Value, JobError> {
    let provider_id: Option<Uuid> = ctx
        .params
        .get("provider_id")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok());
    let state = &ctx.state;
    // The scheduled drift check skips what was applied or synced within the interval: it has
    // just been compared with the cloud.
    let fresh_for = if ctx.params.get("schedule").is_some() {
        crate::settings::value(
            &state.db,
            ctx.tenant_id,
            crate::settings::DRIFT_CHECK_INTERVAL,
        )
        .await?
    } else {
        0
    };
    let resources = sqlx::query!(
        "SELECT id FROM resources
         WHERE tenant_id = $1 AND ($2::uuid IS NULL OR provider_id = $2)
           AND status IN ('active', 'stopped') AND cloud_id IS NOT NULL
           AND (last_synced IS NULL OR last_synced <= now() - make_interval(secs => $3))
         ORDER BY created_at, id",
        ctx.tenant_id,
        provider_id,
        fresh_for as f64
    )
    .fetch_all(&state.db)
    .await?;
    let who = Requester {
        tenant_id: ctx.tenant_id,
        user_id: None,
    };
    // A retried sync starts refreshes again: a refresh changes nothing in the cloud.
    let mut started = Vec::new();
    let mut failed = Vec::new();
    for r in &resources {
        let outcome = match crate::resources::fetch(state, ctx.tenant_id, r.id).await {
            Ok(resource) => crate::resources::start_action(state, who, &resource, Action::Refresh)
                .await
                .map_err(|err| err.to_string()),
            Err(err) => Err(err.to_string()),
        };
        match outcome {
            Ok(accepted) => started.push((r.id, accepted.task_id, accepted.deployment_id)),
            Err(error) => failed.push(json!({"resource_id": r.id, "error": error})),
        }
    }
    let total = started.len();
    let mut refreshed = Vec::new();
    for (done, (resource_id, task_id, deployment_id)) in started.into_iter().enumerate() {
        let (status, error) = crate::orchestrate::wait_for_task(ctx, task_id).await?;
        if status == "succeeded" {
            refreshed.push(json!({"resource_id": resource_id, "deployment_id": deployment_id}));
        } else {
            failed.push(
                json!({"resource_id": resource_id, "deployment_id": deployment_id,
                               "error": error.unwrap_or(status)}),
            );
        }
        let _ = ctx
            .progress(
                ((done + 1) * 100 / total.max(1)) as i16,
                &format!("{} of {total} resources refreshed", done + 1),
            )
            .await;
    }
    let ids: Vec<Uuid> = resources.iter().map(|r| r.id).collect();
    let drifted = sqlx::query_scalar!(
        "SELECT id FROM resources WHERE id = ANY($1) AND drifted ORDER BY id",
        &ids
    )
    .fetch_all(&state.db)
    .await?;
    Ok(json!({
        "provider_id": provider_id, "resources": resources.len(), "refreshed": refreshed.len(),
        "drifted": drifted, "failed": failed,
    }))
}
