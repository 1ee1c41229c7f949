//! Resources: what users ask Strata to create. Every change is a deployment run by a worker;
//! the API answers 202 with the task at once.

mod cloud_spec;
pub mod spec;

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::PgConnection;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::{Role, TenantAuth};
use crate::deployments::Deployment;
use crate::error::{AppError, AppResult};
use crate::http::{Json, Page, Pagination, Path, Query, Validator};
use crate::jobs::JobKind;
use crate::state::AppState;
use crate::tasks::{NewTask, enqueue_one};
use spec::Kind;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_resources, create_resource))
        .routes(routes!(get_resource, update_resource, delete_resource))
        .routes(routes!(act))
        .routes(routes!(history))
        .routes(routes!(list_deployments))
        .routes(routes!(drift))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Resource {
    pub id: Uuid,
    pub provider_id: Uuid,
    /// The provider's type (`sandbox`, `aws`, ...).
    pub provider: String,
    pub kind: Kind,
    pub name: String,
    pub region: Option<String>,
    pub spec: Value,
    pub tags: Value,
    /// `provisioning`, `active`, `stopped`, `updating`, `destroying`, `destroyed` or `failed`.
    pub status: String,
    pub power_state: String,
    /// Terraform's outputs: the cloud's own id, IPs, and so on.
    pub attributes: Value,
    /// The cloud's own id of the resource.
    pub cloud_id: Option<String>,
    pub cost_per_hour: Option<f64>,
    pub estimated_monthly_cost: Option<f64>,
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_synced: Option<DateTime<Utc>>,
    /// A sync found it changed outside Strata (see `/resources/{id}/drift`); the next apply
    /// clears it.
    pub drifted: bool,
    pub destroyed_at: Option<DateTime<Utc>>,
}

struct ResourceRow {
    id: Uuid,
    provider_id: Uuid,
    provider: String,
    kind: String,
    name: String,
    region: Option<String>,
    spec: Value,
    tags: Value,
    status: String,
    power_state: String,
    attributes: Value,
    cloud_id: Option<String>,
    cost_per_hour: Option<f64>,
    estimated_monthly_cost: Option<f64>,
    created_by: Option<Uuid>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    last_synced: Option<DateTime<Utc>>,
    drifted: bool,
    destroyed_at: Option<DateTime<Utc>>,
}

impl TryFrom<ResourceRow> for Resource {
    type Error = AppError;
    fn try_from(r: ResourceRow) -> AppResult<Self> {
        Ok(Resource {
            id: r.id,
            provider_id: r.provider_id,
            provider: r.provider,
            kind: r.kind.parse()?,
            name: r.name,
            region: r.region,
            spec: r.spec,
            tags: r.tags,
            status: r.status,
            power_state: r.power_state,
            attributes: r.attributes,
            cloud_id: r.cloud_id,
            cost_per_hour: r.cost_per_hour,
            estimated_monthly_cost: r.estimated_monthly_cost,
            created_by: r.created_by,
            created_at: r.created_at,
            updated_at: r.updated_at,
            last_synced: r.last_synced,
            drifted: r.drifted,
            destroyed_at: r.destroyed_at,
        })
    }
}

pub(crate) async fn fetch(state: &AppState, tenant_id: Uuid, id: Uuid) -> AppResult<Resource> {
    sqlx::query_as!(
        ResourceRow,
        "SELECT r.id, r.provider_id, p.provider_type AS provider, r.kind, r.name, r.region, r.spec, r.tags,
                r.status, r.power_state, r.attributes, r.cloud_id, r.cost_per_hour, r.estimated_monthly_cost,
                r.created_by, r.created_at, r.updated_at, r.last_synced, r.drifted, r.destroyed_at
         FROM resources r JOIN providers p ON p.id = r.provider_id
         WHERE r.id = $1 AND r.tenant_id = $2",
        id,
        tenant_id
    )
    .fetch_optional(&state.db)
    .await?
    .ok_or(AppError::NotFound("resource"))?
    .try_into()
}

/// Sets a resource's status from the facts once no deployment of it is open: destroyed after
/// a successful destroy, active or stopped once it exists, failed if it never came to exist.
/// While a deployment is open the status its request set stands. Returns the status.
pub async fn settle_status(conn: &mut PgConnection, resource_id: Uuid) -> sqlx::Result<String> {
    sqlx::query_scalar!(
        r#"UPDATE resources r SET status = CASE
               WHEN EXISTS (SELECT 1 FROM deployments d JOIN tasks t ON t.id = d.task_id
                            WHERE d.resource_id = r.id AND d.status IN ('queued', 'running')
                              AND t.status IN ('queued', 'running')) THEN r.status
               WHEN (SELECT d.operation FROM deployments d
                     WHERE d.resource_id = r.id AND d.status = 'succeeded' AND d.operation IN ('apply', 'destroy')
                     ORDER BY d.finished_at DESC LIMIT 1) = 'destroy' THEN 'destroyed'
               WHEN r.cloud_id IS NOT NULL THEN
                   CASE WHEN r.power_state = 'stopped' THEN 'stopped' ELSE 'active' END
               ELSE 'failed' END,
               updated_at = now()
           WHERE r.id = $1 RETURNING status"#,
        resource_id
    )
    .fetch_one(conn)
    .await
}

/// Tags: string keys and values.
fn validate_tags(v: &mut Validator, tags: &Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Some(object) = tags.as_object() else {
        v.error("tags", "must be an object of strings");
        return out;
    };
    v.check(object.len() <= 50, "tags", "at most 50 tags");
    for (key, value) in object {
        let field = format!("tags.{key}");
        match value.as_str() {
            Some(text) => {
                v.check(
                    !key.is_empty() && key.len() <= 128,
                    &field,
                    "keys must be 1 to 128 characters",
                )
                .check(
                    text.len() <= 256,
                    &field,
                    "values must be at most 256 characters",
                );
                out.insert(key.clone(), text.to_string());
            }
            None => v.error(&field, "must be a string"),
        }
    }
    out
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateResource {
    pub provider_id: Uuid,
    pub kind: Kind,
    #[schema(example = "web-1")]
    pub name: String,
    pub region: Option<String>,
    /// Depends on the provider and kind; unknown fields are refused.
    #[serde(default = "empty_object")]
    pub spec: Value,
    #[serde(default = "empty_object")]
    pub tags: Value,
}

fn empty_object() -> Value {
    json!({})
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    pub id: Uuid,
    pub name: String,
    pub provider: String,
    pub provider_id: Uuid,
    pub kind: Kind,
    pub status: String,
    pub task_id: Uuid,
    pub deployment_id: Uuid,
    pub estimated_monthly_cost: Option<f64>,
    pub message: String,
}

/// The request that starts a deployment: its kind of task, operation and desired state.
struct DeploymentRequest<'a> {
    tenant_id: Uuid,
    resource_id: Uuid,
    job: JobKind,
    operation: &'a str,
    action: Option<&'a str>,
    desired: Value,
    requested_by: Option<Uuid>,
    /// What `/ws/events` calls the change (`create`, `update`, `delete`), when not the action.
    event: Option<&'a str>,
}

/// Writes a deployment and its task (in the caller's transaction), and announces the change
/// with the resource's status. Returns (task, deployment, resource status).
async fn start_deployment(
    conn: &mut PgConnection,
    request: DeploymentRequest<'_>,
) -> sqlx::Result<(Uuid, Uuid, String)> {
    let deployment_id = Uuid::new_v4();
    let task_id = enqueue_one(
        &mut *conn,
        NewTask {
            tenant_id: request.tenant_id,
            kind: request.job,
            params: json!({ "deployment_id": deployment_id, "resource_id": request.resource_id }),
            created_by: request.requested_by,
        },
    )
    .await?;
    sqlx::query!(
        "INSERT INTO deployments (id, tenant_id, resource_id, task_id, operation, action, desired, requested_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        deployment_id,
        request.tenant_id,
        request.resource_id,
        task_id,
        request.operation,
        request.action,
        request.desired,
        request.requested_by
    )
    .execute(&mut *conn)
    .await?;
    let resource = sqlx::query!(
        "SELECT status, provider_id FROM resources WHERE id = $1",
        request.resource_id
    )
    .fetch_one(&mut *conn)
    .await?;
    let event = request
        .action
        .or(request.event)
        .unwrap_or(request.operation);
    crate::events::resource_changed(
        conn,
        request.tenant_id,
        request.resource_id,
        resource.provider_id,
        event,
        &resource.status,
    )
    .await?;
    Ok((task_id, deployment_id, resource.status))
}

/// The price of a validated spec, per hour.
fn price(provider: &str, validated: &spec::Validated, region: Option<&str>) -> Option<f64> {
    let (machine_type, count) = validated.priced_as.as_ref()?;
    crate::pricing::hourly_price(provider, machine_type, region).map(|p| p * f64::from(*count))
}

/// Create a resource: answers at once with the task that provisions it.
#[utoipa::path(post, path = "/resources", tag = "resources", request_body = CreateResource,
    params(("Idempotency-Key" = Option<String>, Header, description = "A repeat of a request with this key returns the first answer")),
    responses((status = 202, body = Accepted), (status = 409, description = "Name taken"), (status = 422)),
    security(("bearer" = []), ("api_key" = [])))]
async fn create_resource(
    State(state): State<AppState>,
    auth: TenantAuth,
    Json(body): Json<CreateResource>,
) -> AppResult<(StatusCode, Json<Accepted>)> {
    auth.require(Role::Member)?;
    let mut tx = state.db.begin().await?;
    let accepted = create(&mut tx, (&auth).into(), body).await?;
    tx.commit().await?;
    Ok((StatusCode::ACCEPTED, Json(accepted)))
}

/// Validates a new resource and writes it with its first deployment and task, in the caller's
/// transaction (the route above, and orchestrations that create resources).
pub async fn create(
    conn: &mut PgConnection,
    who: Requester,
    body: CreateResource,
) -> AppResult<Accepted> {
    let mut v = Validator::new();
    v.text("name", &body.name, 1, 255)
        .optional_text("region", body.region.as_deref(), 64);
    if body.kind == Kind::DnsRecord {
        v.check(
            crate::dns::valid_record_name(&body.name),
            "name",
            "must be a DNS name (letters, digits, -, _, * and dots) or @",
        );
    }
    let tags = validate_tags(&mut v, &body.tags);
    v.finish()?;
    let found = sqlx::query!(
        "SELECT provider_type, region FROM providers WHERE id = $1 AND tenant_id = $2",
        body.provider_id,
        who.tenant_id
    )
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| AppError::invalid("provider_id", "no such provider"))?;
    let provider = found.provider_type;
    // A resource lives in its own region, or else in its provider's.
    let region = body.region.clone().or(found.region);
    let validated = spec::validate(&provider, body.kind, &body.spec, region.as_deref())?;
    let cost_per_hour = price(&provider, &validated, region.as_deref());

    let id = Uuid::new_v4();
    sqlx::query!(
        "INSERT INTO resources (id, tenant_id, provider_id, kind, name, region, spec, tags, status,
                                cost_per_hour, estimated_monthly_cost, created_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'provisioning', $9, $10, $11)",
        id,
        who.tenant_id,
        body.provider_id,
        body.kind.as_str(),
        body.name,
        region,
        validated.spec,
        json!(tags),
        cost_per_hour,
        cost_per_hour.map(|p| p * crate::pricing::HOURS_PER_MONTH),
        who.user_id
    )
    .execute(&mut *conn)
    .await
    .map_err(|err| match AppError::from(err) {
        AppError::Conflict(_) => AppError::Conflict(format!(
            "a {} named {:?} already exists on this provider",
            body.kind.as_str(),
            body.name
        )),
        other => other,
    })?;
    let (task_id, deployment_id, _) = start_deployment(
        conn,
        DeploymentRequest {
            tenant_id: who.tenant_id,
            resource_id: id,
            job: JobKind::ResourceApply,
            operation: "apply",
            action: None,
            desired: validated.desired(&json!(tags), "running"),
            requested_by: who.user_id,
            event: Some("create"),
        },
    )
    .await?;
    Ok(Accepted {
        id,
        name: body.name,
        provider,
        provider_id: body.provider_id,
        kind: body.kind,
        status: "provisioning".into(),
        task_id,
        deployment_id,
        estimated_monthly_cost: cost_per_hour.map(|p| p * crate::pricing::HOURS_PER_MONTH),
        message: "Resource provisioning started".into(),
    })
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ResourceFilter {
    pub provider_id: Option<Uuid>,
    pub kind: Option<Kind>,
    pub status: Option<String>,
    pub region: Option<String>,
    /// `key:value`: only resources with this tag.
    pub tag: Option<String>,
    /// Also list destroyed resources (kept for history).
    #[serde(default)]
    pub include_destroyed: bool,
}

/// The tenant's resources, newest first (destroyed ones only when asked).
#[utoipa::path(get, path = "/resources", tag = "resources", params(ResourceFilter, Pagination),
    responses((status = 200, body = Page<Resource>)), security(("bearer" = []), ("api_key" = [])))]
async fn list_resources(
    State(state): State<AppState>,
    auth: TenantAuth,
    Query(filter): Query<ResourceFilter>,
    Query(page): Query<Pagination>,
) -> AppResult<Page<Resource>> {
    let (limit, offset) = page.resolve()?;
    let tag = match &filter.tag {
        Some(tag) => {
            let (key, value) = tag
                .split_once(':')
                .ok_or_else(|| AppError::invalid("tag", "must be key:value"))?;
            Some(json!({ key: value }))
        }
        None => None,
    };
    let kind = filter.kind.map(Kind::as_str);
    let rows = sqlx::query_as!(
        ResourceRow,
        r#"SELECT r.id, r.provider_id, p.provider_type AS provider, r.kind, r.name, r.region, r.spec, r.tags,
                  r.status, r.power_state, r.attributes, r.cloud_id, r.cost_per_hour, r.estimated_monthly_cost,
                  r.created_by, r.created_at, r.updated_at, r.last_synced, r.drifted, r.destroyed_at
           FROM resources r JOIN providers p ON p.id = r.provider_id
           WHERE r.tenant_id = $1
             AND ($2::uuid IS NULL OR r.provider_id = $2) AND ($3::text IS NULL OR r.kind = $3)
             AND ($4::text IS NULL OR r.status = $4) AND ($5::text IS NULL OR r.region = $5)
             AND ($6::jsonb IS NULL OR r.tags @> $6)
             AND ($7 OR $4::text = 'destroyed' OR r.status <> 'destroyed')
           ORDER BY r.created_at DESC, r.id LIMIT $8 OFFSET $9"#,
        auth.tenant_id,
        filter.provider_id,
        kind,
        filter.status,
        filter.region,
        tag,
        filter.include_destroyed,
        limit,
        offset
    )
    .fetch_all(&state.db)
    .await?;
    let total = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM resources r
           WHERE r.tenant_id = $1
             AND ($2::uuid IS NULL OR r.provider_id = $2) AND ($3::text IS NULL OR r.kind = $3)
             AND ($4::text IS NULL OR r.status = $4) AND ($5::text IS NULL OR r.region = $5)
             AND ($6::jsonb IS NULL OR r.tags @> $6)
             AND ($7 OR $4::text = 'destroyed' OR r.status <> 'destroyed')"#,
        auth.tenant_id,
        filter.provider_id,
        kind,
        filter.status,
        filter.region,
        tag,
        filter.include_destroyed
    )
    .fetch_one(&state.db)
    .await?;
    let data = rows
        .into_iter()
        .map(Resource::try_from)
        .collect::<AppResult<_>>()?;
    Ok(Page::new(data, total, (limit, offset)))
}

/// One resource, with its Terraform outputs.
#[utoipa::path(get, path = "/resources/{id}", tag = "resources", params(("id" = Uuid, Path)),
    responses((status = 200, body = Resource), (status = 404)), security(("bearer" = []), ("api_key" = [])))]
async fn get_resource(
    State(state): State<AppState>,
    auth: TenantAuth,
    Path(id): Path<Uuid>,
) -> AppResult<Json<Resource>> {
    Ok(Json(fetch(&state, auth.tenant_id, id).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateResource {
    /// Fields to change; the others keep their value.
    pub spec: Option<Value>,
    /// The new tags (replacing the old ones).
    pub tags: Option<Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeploymentAccepted {
    pub id: Uuid,
    pub status: String,
    pub task_id: Uuid,
    pub deployment_id: Uuid,
    pub message: String,
}

fn ensure_live(resource: &Resource) -> AppResult<()> {
    if matches!(resource.status.as_str(), "destroyed" | "destroying") {
        return Err(AppError::Conflict(format!(
            "the resource is {}",
            resource.status
        )));
    }
    Ok(())
}

/// Change a resource's spec or tags: an apply task.
#[utoipa::path(patch, path = "/resources/{id}", tag = "resources", params(("id" = Uuid, Path)),
    request_body = UpdateResource, responses((status = 202, body = DeploymentAccepted), (status = 404), (status = 409), (status = 422)),
    security(("bearer" = []), ("api_key" = [])))]
async fn update_resource(
    State(state): State<AppState>,
    auth: TenantAuth,
    Path(id): Path<Uuid>,
    Json(body): Json<UpdateResource>,
) -> AppResult<(StatusCode, Json<DeploymentAccepted>)> {
    auth.require(Role::Member)?;
    let resource = fetch(&state, auth.tenant_id, id).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(start_update(&state, (&auth).into(), &resource, body).await?),
    ))
}

/// Starts an apply of a changed spec or tags (the route above, and DNS failover).
pub async fn start_update(
    state: &AppState,
    who: Requester,
    resource: &Resource,
    body: UpdateResource,
) -> AppResult<DeploymentAccepted> {
    let id = resource.id;
    ensure_live(resource)?;
    let mut spec = resource.spec.clone();
    if let Some(patch) = &body.spec {
        let (Some(target), Some(patch)) = (spec.as_object_mut(), patch.as_object()) else {
            return Err(AppError::invalid("spec", "must be a JSON object"));
        };
        target.extend(patch.clone());
    }
    let mut v = Validator::new();
    let tags = validate_tags(&mut v, body.tags.as_ref().unwrap_or(&resource.tags));
    v.finish()?;
    let validated = spec::validate(
        &resource.provider,
        resource.kind,
        &spec,
        resource.region.as_deref(),
    )?;
    let cost_per_hour = price(&resource.provider, &validated, resource.region.as_deref());
    let mut tx = state.db.begin().await?;
    sqlx::query!(
        "UPDATE resources SET status = CASE WHEN status IN ('active', 'stopped', 'failed') THEN 'updating' ELSE status END,
                cost_per_hour = $2, updated_at = now()
         WHERE id = $1",
        id,
        cost_per_hour
    )
    .execute(&mut *tx)
    .await?;
    let (task_id, deployment_id, _) = start_deployment(
        &mut tx,
        DeploymentRequest {
            tenant_id: who.tenant_id,
            resource_id: id,
            job: JobKind::ResourceApply,
            operation: "apply",
            action: None,
            desired: validated.desired(&json!(tags), &resource.power_state),
            requested_by: who.user_id,
            event: Some("update"),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(DeploymentAccepted {
        id,
        status: "updating".into(),
        task_id,
        deployment_id,
        message: "Resource update started".into(),
    })
}

/// Starts a destroy deployment (for DELETE and the `terminate` action).
/// Who starts a deployment: the tenant it runs in and the user who asked (none for the
/// operator key or an API key).
#[derive(Debug, Clone, Copy)]
pub struct Requester {
    pub tenant_id: Uuid,
    pub user_id: Option<Uuid>,
}

impl From<&TenantAuth> for Requester {
    fn from(auth: &TenantAuth) -> Self {
        Self {
            tenant_id: auth.tenant_id,
            user_id: auth.user_id(),
        }
    }
}

pub(crate) async fn start_destroy(
    state: &AppState,
    who: Requester,
    resource: &Resource,
    action: Option<&str>,
) -> AppResult<DeploymentAccepted> {
    ensure_live(resource)?;
    let mut tx = state.db.begin().await?;
    sqlx::query!(
        "UPDATE resources SET status = 'destroying', updated_at = now() WHERE id = $1",
        resource.id
    )
    .execute(&mut *tx)
    .await?;
    let job = match action {
        Some(_) => JobKind::ResourceAction,
        None => JobKind::ResourceDestroy,
    };
    let (task_id, deployment_id, _) = start_deployment(
        &mut tx,
        DeploymentRequest {
            tenant_id: who.tenant_id,
            resource_id: resource.id,
            job,
            // A terminate is a destroy, recorded as the action it was asked as.
            operation: "destroy",
            action,
            desired: current_desired(resource),
            requested_by: who.user_id,
            event: Some("delete"),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(DeploymentAccepted {
        id: resource.id,
        status: "destroying".into(),
        task_id,
        deployment_id,
        message: "Resource destruction started".into(),
    })
}

/// The desired state that reproduces the resource as it is.
fn current_desired(resource: &Resource) -> Value {
    match spec::validate(
        &resource.provider,
        resource.kind,
        &resource.spec,
        resource.region.as_deref(),
    ) {
        Ok(validated) => validated.desired(&resource.tags, &resource.power_state),
        // A stored spec always validated once; should the rules have tightened since, the
        // stored spec is applied as it is.
        Err(_) => {
            json!({"spec": resource.spec, "tags": resource.tags, "power_state": resource.power_state})
        }
    }
}

/// Destroy a resource; it stays listed as `destroyed` for history.
#[utoipa::path(delete, path = "/resources/{id}", tag = "resources", params(("id" = Uuid, Path)),
    responses((status = 202, body = DeploymentAccepted), (status = 404), (status = 409)),
    security(("bearer" = []), ("api_key" = [])))]
async fn delete_resource(
    State(state): State<AppState>,
    auth: TenantAuth,
    Path(id): Path<Uuid>,
) -> AppResult<(StatusCode, Json<DeploymentAccepted>)> {
    auth.require(Role::Member)?;
    let resource = fetch(&state, auth.tenant_id, id).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(start_destroy(&state, (&auth).into(), &resource, None).await?),
    ))
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Stop,
    Start,
    Terminate,
    HealthCheck,
    /// Read the resource's real state, record drift, and update its attributes.
    Refresh,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionRequest {
    pub action: Action,
}

/// Stop, start, terminate or health-check a resource: an action task.
#[utoipa::path(post, path = "/resources/{id}/action", tag = "resources", params(("id" = Uuid, Path)),
    request_body = ActionRequest, responses((status = 202, body = DeploymentAccepted), (status = 404), (status = 409)),
    security(("bearer" = []), ("api_key" = [])))]
async fn act(
    State(state): State<AppState>,
    auth: TenantAuth,
    Path(id): Path<Uuid>,
    Json(body): Json<ActionRequest>,
) -> AppResult<(StatusCode, Json<DeploymentAccepted>)> {
    auth.require(Role::Member)?;
    let resource = fetch(&state, auth.tenant_id, id).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(start_action(&state, (&auth).into(), &resource, body.action).await?),
    ))
}

/// Starts an action on a resource (the route above, and orchestrations such as lockdown).
pub async fn start_action(
    state: &AppState,
    who: Requester,
    resource: &Resource,
    action: Action,
) -> AppResult<DeploymentAccepted> {
    let (name, power_state) = match action {
        Action::Terminate => return start_destroy(state, who, resource, Some("terminate")).await,
        Action::Stop => ("stop", Some("stopped")),
        Action::Start => ("start", Some("running")),
        Action::HealthCheck => ("health_check", None),
        Action::Refresh => ("refresh", None),
    };
    ensure_live(resource)?;
    let mut desired = current_desired(resource);
    if let Some(power_state) = power_state {
        desired["power_state"] = json!(power_state);
    }
    let mut tx = state.db.begin().await?;
    if power_state.is_some() {
        sqlx::query!(
            "UPDATE resources SET status = CASE WHEN status IN ('active', 'stopped') THEN 'updating' ELSE status END,
                    updated_at = now()
             WHERE id = $1",
            resource.id
        )
        .execute(&mut *tx)
        .await?;
    }
    let (task_id, deployment_id, status) = start_deployment(
        &mut tx,
        DeploymentRequest {
            tenant_id: who.tenant_id,
            resource_id: resource.id,
            job: JobKind::ResourceAction,
            operation: "action",
            action: Some(name),
            desired,
            requested_by: who.user_id,
            event: None,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(DeploymentAccepted {
        id: resource.id,
        status,
        task_id,
        deployment_id,
        message: format!("Resource {} started", name.replace('_', " ")),
    })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryEntry {
    pub deployment_id: Uuid,
    pub task_id: Uuid,
    /// `create`, `update`, `destroy`, or the action (`stop`, `start`, `terminate`, `health_check`).
    pub operation: String,
    pub status: String,
    pub requested_by: Option<Uuid>,
    pub requested_by_email: Option<String>,
    pub requested_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    pub result: Option<Value>,
}

/// What was done to a resource: every operation and action, who asked, when, and the outcome.
#[utoipa::path(get, path = "/resources/{id}/logs", tag = "resources", params(("id" = Uuid, Path), Pagination),
    responses((status = 200, body = Page<HistoryEntry>), (status = 404)), security(("bearer" = []), ("api_key" = [])))]
async fn history(
    State(state): State<AppState>,
    auth: TenantAuth,
    Path(id): Path<Uuid>,
    Query(page): Query<Pagination>,
) -> AppResult<Page<HistoryEntry>> {
    fetch(&state, auth.tenant_id, id).await?;
    let (limit, offset) = page.resolve()?;
    let data = sqlx::query_as!(
        HistoryEntry,
        r#"SELECT d.id AS deployment_id, d.task_id,
                  CASE WHEN d.action IS NOT NULL THEN d.action
                       WHEN d.operation = 'apply' AND d.created_at = (SELECT min(created_at) FROM deployments f WHERE f.resource_id = d.resource_id) THEN 'create'
                       WHEN d.operation = 'apply' THEN 'update'
                       ELSE d.operation END AS "operation!",
                  d.status, d.requested_by, u.email AS "requested_by_email?", d.created_at AS requested_at,
                  d.finished_at, d.error, t.result
           FROM deployments d JOIN tasks t ON t.id = d.task_id LEFT JOIN users u ON u.id = d.requested_by
           WHERE d.resource_id = $1 AND d.tenant_id = $2
           ORDER BY d.created_at DESC, d.id LIMIT $3 OFFSET $4"#,
        id,
        auth.tenant_id,
        limit,
        offset
    )
    .fetch_all(&state.db)
    .await?;
    let total = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM deployments WHERE resource_id = $1 AND tenant_id = $2"#,
        id,
        auth.tenant_id
    )
    .fetch_one(&state.db)
    .await?;
    Ok(Page::new(data, total, (limit, offset)))
}

/// A resource's deployments, oldest first.
#[utoipa::path(get, path = "/resources/{id}/deployments", tag = "resources", params(("id" = Uuid, Path), Pagination),
    responses((status = 200, body = Page<Deployment>), (status = 404)), security(("bearer" = []), ("api_key" = [])))]
async fn list_deployments(
    State(state): State<AppState>,
    auth: TenantAuth,
    Path(id): Path<Uuid>,
    Query(page): Query<Pagination>,
) -> AppResult<Page<Deployment>> {
    fetch(&state, auth.tenant_id, id).await?;
    let page = page.resolve()?;
    let (data, total) = crate::deployments::for_resource(&state, auth.tenant_id, id, page).await?;
    Ok(Page::new(data, total, page))
}

/// One attribute a sync found changed outside Strata.
#[derive(Debug, Serialize, ToSchema)]
pub struct DriftEntry {
    pub id: i64,
    /// An output (`power_state`, `value`) or a resource attribute (`address.attribute`).
    pub attribute: String,
    /// What Strata last applied.
    pub expected: Option<Value>,
    /// What the cloud reported.
    pub actual: Option<Value>,
    /// The refresh that found it.
    pub deployment_id: Option<Uuid>,
    pub detected_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DriftReport {
    pub resource_id: Uuid,
    /// Whether the resource differs from what Strata last applied (until the next apply).
    pub drifted: bool,
    pub last_synced: Option<DateTime<Utc>>,
    /// Drift found, newest first.
    pub data: Vec<DriftEntry>,
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
}

/// What syncs found changed outside Strata, newest first.
#[utoipa::path(get, path = "/resources/{id}/drift", tag = "resources", params(("id" = Uuid, Path), Pagination),
    responses((status = 200, body = DriftReport), (status = 404)), security(("bearer" = []), ("api_key" = [])))]
async fn drift(
    State(state): State<AppState>,
    auth: TenantAuth,
    Path(id): Path<Uuid>,
    Query(page): Query<Pagination>,
) -> AppResult<Json<DriftReport>> {
    let resource = fetch(&state, auth.tenant_id, id).await?;
    let (limit, offset) = page.resolve()?;
    let data = sqlx::query_as!(
        DriftEntry,
        "SELECT id, attribute, expected, actual, deployment_id, detected_at FROM resource_drift
         WHERE resource_id = $1 AND tenant_id = $2 ORDER BY detected_at DESC, id DESC LIMIT $3 OFFSET $4",
        id,
        auth.tenant_id,
        limit,
        offset
    )
    .fetch_all(&state.db)
    .await?;
    let total = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM resource_drift WHERE resource_id = $1 AND tenant_id = $2"#,
        id,
        auth.tenant_id
    )
    .fetch_one(&state.db)
    .await?;
    Ok(Json(DriftReport {
        resource_id: id,
        drifted: resource.drifted,
        last_synced: resource.last_synced,
        data,
        total,
        limit,
        offset,
    }))
}
