//! Databricks workspaces (seed 000): registered by the tenant under their own workspace id,
//! which is unique per tenant and names them in the API.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::{Role, TenantAuth};
use crate::error::{AppError, AppResult};
use crate::http::{Json, Page, Pagination, Path, Query, Validator};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_workspaces, create_workspace))
        .routes(routes!(get_workspace, update_workspace, delete_workspace))
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Cloud {
    Aws,
    Azure,
    Gcp,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Plan {
    Standard,
    Premium,
    Enterprise,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum WorkspaceStatus {
    Active,
    Inactive,
}

impl Cloud {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Aws => "aws",
            Self::Azure => "azure",
            Self::Gcp => "gcp",
        }
    }
}

impl Plan {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Standard => "standard",
            Self::Premium => "premium",
            Self::Enterprise => "enterprise",
        }
    }
}

impl WorkspaceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Inactive => "inactive",
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Workspace {
    pub id: Uuid,
    /// The Databricks workspace id.
    pub workspace_id: String,
    pub name: String,
    /// e.g. https://adb-123.azuredatabricks.net
    pub host: String,
    /// `aws`, `azure` or `gcp`.
    pub cloud: String,
    pub region: String,
    /// `standard`, `premium` or `enterprise`.
    pub plan: String,
    /// `active` or `inactive`.
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateWorkspace {
    pub workspace_id: String,
    pub name: String,
    pub host: String,
    pub cloud: Cloud,
    pub region: String,
    pub plan: Plan,
    /// Default `active`.
    pub status: Option<WorkspaceStatus>,
}

/// The fields to change; the others stay.
#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateWorkspace {
    pub name: Option<String>,
    pub host: Option<String>,
    pub cloud: Option<Cloud>,
    pub region: Option<String>,
    pub plan: Option<Plan>,
    pub status: Option<WorkspaceStatus>,
}

fn check_host(v: &mut Validator, host: &str) {
    let valid = host
        .strip_prefix("https://")
        .and_then(|rest| rest.split(['/', '?', '#']).next())
        .is_some_and(|authority| {
            !authority.is_empty()
                && !authority.contains('@')
                && authority
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_'))
        });
    v.text("host", host, 1, 500)
        .check(valid, "host", "must be an https URL");
}

/// The tenant's workspaces.
#[utoipa::path(get, path = "/workspaces", tag = "workspaces", params(Pagination),
    responses((status = 200, body = Page<Workspace>)), security(("bearer" = []), ("api_key" = [])))]
async fn list_workspaces(
    State(state): State<AppState>,
    auth: TenantAuth,
    Query(page): Query<Pagination>,
) -> AppResult<Page<Workspace>> {
    let (limit, offset) = page.resolve()?;
    let data = sqlx::query_as!(
        Workspace,
        "SELECT id, workspace_id, name, host, cloud, region, plan, status, created_at, updated_at
         FROM workspaces WHERE tenant_id = $1 ORDER BY created_at, id LIMIT $2 OFFSET $3",
        auth.tenant_id,
        limit,
        offset
    )
    .fetch_all(&state.db)
    .await?;
    let total = sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM workspaces WHERE tenant_id = $1"#,
        auth.tenant_id
    )
    .fetch_one(&state.db)
    .await?;
    Ok(Page::new(data, total, (limit, offset)))
}

/// Register a workspace.
#[utoipa::path(post, path = "/workspaces", tag = "workspaces", request_body = CreateWorkspace,
    responses((status = 201, body = Workspace), (status = 409, description = "workspace_id taken"), (status = 422)),
    security(("bearer" = []), ("api_key" = [])))]
async fn create_workspace(
    State(state): State<AppState>,
    auth: TenantAuth,
    Json(body): Json<CreateWorkspace>,
) -> AppResult<(StatusCode, Json<Workspace>)> {
    auth.require(Role::Member)?;
    let mut v = Validator::new();
    v.text("workspace_id", &body.workspace_id, 1, 200)
        .check(
            !body.workspace_id.contains('/'),
            "workspace_id",
            "must not contain '/'",
        )
        .text("name", &body.name, 1, 200)
        .text("region", &body.region, 1, 64);
    check_host(&mut v, &body.host);
    v.finish()?;
    let workspace = sqlx::query_as!(
        Workspace,
        "INSERT INTO workspaces (id, tenant_id, workspace_id, name, host, cloud, region, plan, status)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         RETURNING id, workspace_id, name, host, cloud, region, plan, status, created_at, updated_at",
        Uuid::new_v4(),
        auth.tenant_id,
        body.workspace_id.trim(),
        body.name.trim(),
        body.host.trim(),
        body.cloud.as_str(),
        body.region.trim(),
        body.plan.as_str(),
        body.status.unwrap_or(WorkspaceStatus::Active).as_str()
    )
    .fetch_one(&state.db)
    .await
    .map_err(|err| match AppError::from(err) {
        AppError::Conflict(_) => AppError::Conflict(format!(
            "a workspace with workspace_id {:?} is registered already",
            body.workspace_id.trim()
        )),
        other => other,
    })?;
    Ok((StatusCode::CREATED, Json(workspace)))
}

/// One workspace, by its Databricks workspace id.
#[utoipa::path(get, path = "/workspaces/{workspace_id}", tag = "workspaces",
    params(("workspace_id" = String, Path)),
    responses((status = 200, body = Workspace), (status = 404)), security(("bearer" = []), ("api_key" = [])))]
async fn get_workspace(
    State(state): State<AppState>,
    auth: TenantAuth,
    Path(workspace_id): Path<String>,
) -> AppResult<Json<Workspace>> {
    sqlx::query_as!(
        Workspace,
        "SELECT id, workspace_id, name, host, cloud, region, plan, status, created_at, updated_at
         FROM workspaces WHERE tenant_id = $1 AND workspace_id = $2",
        auth.tenant_id,
        workspace_id
    )
    .fetch_optional(&state.db)
    .await?
    .map(Json)
    .ok_or(AppError::NotFound("workspace"))
}

/// Change some of a workspace's fields.
#[utoipa::path(patch, path = "/workspaces/{workspace_id}", tag = "workspaces",
    params(("workspace_id" = String, Path)), request_body = UpdateWorkspace,
    responses((status = 200, body = Workspace), (status = 404), (status = 422)),
    security(("bearer" = []), ("api_key" = [])))]
async fn update_workspace(
    State(state): State<AppState>,
    auth: TenantAuth,
    Path(workspace_id): Path<String>,
    Json(body): Json<UpdateWorkspace>,
) -> AppResult<Json<Workspace>> {
    auth.require(Role::Member)?;
    let mut v = Validator::new();
    if let Some(name) = &body.name {
        v.text("name", name, 1, 200);
    }
    if let Some(region) = &body.region {
        v.text("region", region, 1, 64);
    }
    if let Some(host) = &body.host {
        check_host(&mut v, host);
    }
    v.finish()?;
    sqlx::query_as!(
        Workspace,
        "UPDATE workspaces SET name = COALESCE($3, name), host = COALESCE($4, host),
                cloud = COALESCE($5, cloud), region = COALESCE($6, region),
                plan = COALESCE($7, plan), status = COALESCE($8, status), updated_at = now()
         WHERE tenant_id = $1 AND workspace_id = $2
         RETURNING id, workspace_id, name, host, cloud, region, plan, status, created_at, updated_at",
        auth.tenant_id,
        workspace_id,
        body.name.as_deref().map(str::trim),
        body.host.as_deref().map(str::trim),
        body.cloud.map(Cloud::as_str),
        body.region.as_deref().map(str::trim),
        body.plan.map(Plan::as_str),
        body.status.map(WorkspaceStatus::as_str)
    )
    .fetch_optional(&state.db)
    .await?
    .map(Json)
    .ok_or(AppError::NotFound("workspace"))
}

/// Remove a workspace registration.
#[utoipa::path(delete, path = "/workspaces/{workspace_id}", tag = "workspaces",
    params(("workspace_id" = String, Path)),
    responses((status = 204), (status = 404)), security(("bearer" = []), ("api_key" = [])))]
async fn delete_workspace(
    State(state): State<AppState>,
    auth: TenantAuth,
    Path(workspace_id): Path<String>,
) -> AppResult<StatusCode> {
    auth.require(Role::Member)?;
    let deleted = sqlx::query!(
        "DELETE FROM workspaces WHERE tenant_id = $1 AND workspace_id = $2",
        auth.tenant_id,
        workspace_id
    )
    .execute(&state.db)
    .await?
    .rows_affected();
    crate::http::deleted(deleted, "workspace")
}
