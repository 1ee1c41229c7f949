//! Tenants and their members. A tenant owns every other row; a caller sees only tenants they
//! belong to, and another tenant's id answers 404.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::{Principal, Role};
use crate::error::{AppError, AppResult};
use crate::http::{Json, Page, Pagination, Path, Query, Validator};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_tenants, create_tenant))
        .routes(routes!(get_tenant, update_tenant, delete_tenant))
        .routes(routes!(list_members, add_member))
        .routes(routes!(update_member, remove_member))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SubscriptionTier {
    Free,
    Basic,
    Premium,
}

impl SubscriptionTier {
    fn as_str(self) -> &'static str {
        match self {
            Self::Free => "free",
            Self::Basic => "basic",
            Self::Premium => "premium",
        }
    }
}

crate::db::text_enum!(SubscriptionTier);

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TenantSettings {
    /// ISO 4217 code reports are shown in.
    #[schema(example = "USD")]
    pub currency: String,
    /// IANA time zone for reports and schedules.
    #[schema(example = "UTC")]
    pub timezone: String,
    pub alerts_enabled: bool,
}

impl Default for TenantSettings {
    fn default() -> Self {
        Self {
            currency: "USD".into(),
            timezone: "UTC".into(),
            alerts_enabled: true,
        }
    }
}

/// A partial update of settings: fields left out keep their value.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsPatch {
    pub currency: Option<String>,
    pub timezone: Option<String>,
    pub alerts_enabled: Option<bool>,
}

impl SettingsPatch {
    fn apply(self, settings: &mut TenantSettings) {
        if let Some(currency) = self.currency {
            settings.currency = currency;
        }
        if let Some(timezone) = self.timezone {
            settings.timezone = timezone;
        }
        if let Some(alerts_enabled) = self.alerts_enabled {
            settings.alerts_enabled = alerts_enabled;
        }
    }
}

fn validate_settings(v: &mut Validator, settings: &TenantSettings) {
    v.check(
        settings.currency.len() == 3 && settings.currency.chars().all(|c| c.is_ascii_uppercase()),
        "settings.currency",
        "must be a three-letter ISO 4217 code such as USD",
    )
    .check(
        !settings.timezone.is_empty()
            && settings.timezone.len() <= 64
            && settings
                .timezone
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "/_+-".contains(c)),
        "settings.timezone",
        "must be an IANA time zone such as Europe/Paris",
    );
}

#[derive(Serialize, ToSchema)]
pub struct Tenant {
    pub id: Uuid,
    pub name: String,
    pub subscription_tier: SubscriptionTier,
    pub settings: TenantSettings,
    /// The caller's role in this tenant.
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct TenantDetail {
    #[serde(flatten)]
    pub tenant: Tenant,
    pub users: Vec<Member>,
}

#[derive(Serialize, ToSchema)]
pub struct Member {
    pub user_id: Option<Uuid>,
    pub email: String,
    pub full_name: Option<String>,
    pub role: Role,
    /// `active`, or `invited` for an email that has no account yet.
    pub status: &'static str,
    pub created_at: DateTime<Utc>,
}

struct TenantRow {
    id: Uuid,
    name: String,
    subscription_tier: String,
    settings: serde_json::Value,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TenantRow {
    fn into_tenant(self, role: Role) -> AppResult<Tenant> {
        Ok(Tenant {
            id: self.id,
            name: self.name,
            subscription_tier: self.subscription_tier.parse()?,
            settings: serde_json::from_value(self.settings)
                .map_err(|err| AppError::Internal(err.into()))?,
            role,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

/// The caller's role in a tenant; 404 when they have none, so ids of other tenants leak nothing.
async fn role_in(state: &AppState, principal: &Principal, tenant_id: Uuid) -> AppResult<Role> {
    let role = match principal {
        Principal::Operator => {
            sqlx::query_scalar!("SELECT id FROM tenants WHERE id = $1", tenant_id)
                .fetch_optional(&state.db)
                .await?
                .map(|_| Role::Admin)
        }
        Principal::ApiKey {
            tenant_id: key_tenant,
            role,
            ..
        } => (*key_tenant == tenant_id).then_some(*role),
        Principal::User { id } => sqlx::query_scalar!(
            "SELECT role FROM tenant_members WHERE tenant_id = $1 AND user_id = $2",
            tenant_id,
            id
        )
        .fetch_optional(&state.db)
        .await?
        .map(|role| role.parse())
        .transpose()?,
    };
    role.ok_or(AppError::NotFound("tenant"))
}

fn require_admin(role: Role) -> AppResult<()> {
    if role == Role::Admin {
        Ok(())
    } else {
        Err(AppError::Forbidden(
            "only a tenant admin can do this".into(),
        ))
    }
}

async fn fetch_tenant(state: &AppState, id: Uuid) -> AppResult<TenantRow> {
    sqlx::query_as!(
        TenantRow,
        "SELECT id, name, subscription_tier, settings, created_at, updated_at FROM tenants WHERE id = $1",
        id
    )
    .fetch_optional(&state.db)
    .await?
    .ok_or(AppError::NotFound("tenant"))
}

/// Tenants the caller belongs to (every tenant, for the operator key).
#[utoipa::path(get, path = "/tenants", tag = "tenants", params(Pagination),
    responses((status = 200, body = Page<Tenant>)), security(("bearer" = []), ("api_key" = [])))]
async fn list_tenants(
    State(state): State<AppState>,
    principal: Principal,
    Query(page): Query<Pagination>,
) -> AppResult<Page<Tenant>> {
    let (limit, offset) = page.resolve()?;
    // One query for every kind of caller: the operator sees all, a key its tenant, a user theirs.
    let (user_id, key_tenant, key_role, all) = match &principal {
        Principal::Operator => (None, None, None, true),
        Principal::ApiKey {
            tenant_id, role, ..
        } => (None, Some(*tenant_id), Some(role.as_str()), false),
        Principal::User { id } => (Some(*id), None, None, false),
    };
    let rows = sqlx::query!(
        r#"SELECT t.id, t.name, t.subscription_tier, t.settings, t.created_at, t.updated_at,
                  COALESCE(m.role, $3, 'admin') AS "role!"
           FROM tenants t
           LEFT JOIN tenant_members m ON m.tenant_id = t.id AND m.user_id = $1
           WHERE $4 OR m.user_id IS NOT NULL OR t.id = $2
           ORDER BY t.created_at, t.id LIMIT $5 OFFSET $6"#,
        user_id,
        key_tenant,
        key_role,
        all,
        limit,
        offset
    )
    .fetch_all(&state.db)
    .await?;
    let total = sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM tenants t
           WHERE $3 OR t.id = $2
              OR EXISTS (SELECT 1 FROM tenant_members m WHERE m.tenant_id = t.id AND m.user_id = $1)"#,
        user_id,
        key_tenant,
        all
    )
    .fetch_one(&state.db)
    .await?;
    let data = rows
        .into_iter()
        .map(|r| {
            TenantRow {
                id: r.id,
                name: r.name,
                subscription_tier: r.subscription_tier,
                settings: r.settings,
                created_at: r.created_at,
                updated_at: r.updated_at,
            }
            .into_tenant(r.role.parse()?)
        })
        .collect::<AppResult<_>>()?;
    Ok(Page::new(data, total, (limit, offset)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    pub name: String,
    pub subscription_tier: Option<SubscriptionTier>,
    pub settings: Option<SettingsPatch>,
}

/// Create a tenant; a user who creates one becomes its admin.
#[utoipa::path(post, path = "/tenants", tag = "tenants", request_body = CreateTenant,
    responses((status = 201, body = Tenant)), security(("bearer" = []), ("api_key" = [])))]
async fn create_tenant(
    State(state): State<AppState>,
    principal: Principal,
    Json(body): Json<CreateTenant>,
) -> AppResult<(StatusCode, Json<Tenant>)> {
    if matches!(principal, Principal::ApiKey { .. }) {
        return Err(AppError::Forbidden(
            "an API key acts within its own tenant and cannot create tenants".into(),
        ));
    }
    let mut settings = TenantSettings::default();
    body.settings.unwrap_or_default().apply(&mut settings);
    let mut v = Validator::new();
    v.text("name", &body.name, 1, 200);
    validate_settings(&mut v, &settings);
    v.finish()?;
    let tier = body.subscription_tier.unwrap_or(SubscriptionTier::Free);
    let mut tx = state.db.begin().await?;
    let row = sqlx::query_as!(
        TenantRow,
        "INSERT INTO tenants (id, name, subscription_tier, settings) VALUES ($1, $2, $3, $4)
         RETURNING id, name, subscription_tier, settings, created_at, updated_at",
        Uuid::new_v4(),
        body.name.trim(),
        tier.as_str(),
        serde_json::to_value(&settings).map_err(|e| AppError::Internal(e.into()))?
    )
    .fetch_one(&mut *tx)
    .await?;
    if let Some(user_id) = principal.user_id() {
        sqlx::query!(
            "INSERT INTO tenant_members (tenant_id, user_id, role) VALUES ($1, $2, 'admin')",
            row.id,
            user_id
        )
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(row.into_tenant(Role::Admin)?)))
}

/// A tenant with its users.
#[utoipa::path(get, path = "/tenants/{id}", tag = "tenants", params(("id" = Uuid, Path)),
    responses((status = 200, body = TenantDetail), (status = 404)), security(("bearer" = []), ("api_key" = [])))]
async fn get_tenant(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<Uuid>,
) -> AppResult<Json<TenantDetail>> {
    let role = role_in(&state, &principal, id).await?;
    let tenant = fetch_tenant(&state, id).await?.into_tenant(role)?;
    let users = members_of(&state, id, (MAX_MEMBERS, 0)).await?.0;
    Ok(Json(TenantDetail { tenant, users }))
}

const MAX_MEMBERS: i64 = 1000;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTenant {
    pub name: Option<String>,
    pub subscription_tier: Option<SubscriptionTier>,
    pub settings: Option<SettingsPatch>,
}

/// Change a tenant's name, tier or settings (admins only). Settings merge.
#[utoipa::path(put, path = "/tenants/{id}", tag = "tenants", params(("id" = Uuid, Path)),
    request_body = UpdateTenant, responses((status = 200, body = Tenant)), security(("bearer" = []), ("api_key" = [])))]
async fn update_tenant(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<Uuid>,
    Json(body): Json<UpdateTenant>,
) -> AppResult<Json<Tenant>> {
    let role = role_in(&state, &principal, id).await?;
    require_admin(role)?;
    let current = fetch_tenant(&state, id).await?.into_tenant(role)?;
    let mut settings = current.settings;
    if let Some(patch) = body.settings {
        patch.apply(&mut settings);
    }
    let name = body.name.unwrap_or(current.name);
    let mut v = Validator::new();
    v.text("name", &name, 1, 200);
    validate_settings(&mut v, &settings);
    v.finish()?;
    let tier = body.subscription_tier.unwrap_or(current.subscription_tier);
    let row = sqlx::query_as!(
        TenantRow,
        "UPDATE tenants SET name = $2, subscription_tier = $3, settings = $4, updated_at = now()
         WHERE id = $1
         RETURNING id, name, subscription_tier, settings, created_at, updated_at",
        id,
        name.trim(),
        tier.as_str(),
        serde_json::to_value(&settings).map_err(|e| AppError::Internal(e.into()))?
    )
    .fetch_one(&state.db)
    .await?;
    Ok(Json(row.into_tenant(role)?))
}

/// Delete a tenant and everything it owns (admins only).
#[utoipa::path(delete, path = "/tenants/{id}", tag = "tenants", params(("id" = Uuid, Path)),
    responses((status = 204), (status = 404)), security(("bearer" = []), ("api_key" = [])))]
async fn delete_tenant(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<Uuid>,
) -> AppResult<StatusCode> {
    require_admin(role_in(&state, &principal, id).await?)?;
    sqlx::query!("DELETE FROM tenants WHERE id = $1", id)
        .execute(&state.db)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn members_of(
    state: &AppState,
    tenant_id: Uuid,
    (limit, offset): (i64, i64),
) -> AppResult<(Vec<Member>, i64)> {
    // Members and pending invitations in one list: both are people the admin added.
    let rows = sqlx::query!(
        r#"WITH everyone AS (
               SELECT u.id AS user_id, u.email, u.full_name, m.role, 'active' AS status, m.created_at
               FROM tenant_members m JOIN users u ON u.id = m.user_id WHERE m.tenant_id = $1
               UNION ALL
               SELECT NULL, i.email, NULL, i.role, 'invited', i.created_at
               FROM tenant_invitations i WHERE i.tenant_id = $1
           )
           SELECT user_id, email AS "email!", full_name, role AS "role!", status AS "status!",
                  created_at AS "created_at!", count(*) OVER () AS "total!"
           FROM everyone ORDER BY created_at, email LIMIT $2 OFFSET $3"#,
        tenant_id,
        limit,
        offset
    )
    .fetch_all(&state.db)
    .await?;
    let total = rows.first().map_or(0, |r| r.total);
    let members = rows
        .into_iter()
        .map(|r| {
            Ok(Member {
                user_id: r.user_id,
                email: r.email,
                full_name: r.full_name,
                role: r.role.parse()?,
                status: if r.status == "active" {
                    "active"
                } else {
                    "invited"
                },
                created_at: r.created_at,
            })
        })
        .collect::<AppResult<_>>()?;
    Ok((members, total))
}

/// A tenant's members and pending invitations.
#[utoipa::path(get, path = "/tenants/{id}/members", tag = "tenants", params(("id" = Uuid, Path), Pagination),
    responses((status = 200, body = Page<Member>)), security(("bearer" = []), ("api_key" = [])))]
async fn list_members(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<Uuid>,
    Query(page): Query<Pagination>,
) -> AppResult<Page<Member>> {
    role_in(&state, &principal, id).await?;
    let page = page.resolve()?;
    let (members, mut total) = members_of(&state, id, page).await?;
    if members.is_empty() && page.1 > 0 {
        total = members_of(&state, id, (1, 0)).await?.1;
    }
    Ok(Page::new(members, total, page))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMember {
    pub email: String,
    pub role: Role,
}

/// Add a member by email (admins only). An email with no account yet becomes an invitation,
/// and the person joins this tenant when they sign up.
#[utoipa::path(post, path = "/tenants/{id}/members", tag = "tenants", params(("id" = Uuid, Path)),
    request_body = AddMember, responses((status = 201, body = Member), (status = 409)),
    security(("bearer" = []), ("api_key" = [])))]
async fn add_member(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<Uuid>,
    Json(body): Json<AddMember>,
) -> AppResult<(StatusCode, Json<Member>)> {
    require_admin(role_in(&state, &principal, id).await?)?;
    let email = body.email.trim().to_string();
    Validator::new().email("email", &email).finish()?;
    let user = sqlx::query!(
        "SELECT id, email, full_name FROM users WHERE lower(email) = lower($1)",
        email
    )
    .fetch_optional(&state.db)
    .await?;
    let member = match user {
        Some(user) => {
            let created_at = sqlx::query_scalar!(
                "INSERT INTO tenant_members (tenant_id, user_id, role) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING RETURNING created_at",
                id,
                user.id,
                body.role.as_str()
            )
            .fetch_optional(&state.db)
            .await?
            .ok_or_else(|| AppError::Conflict("this user is already a member".into()))?;
            Member {
                user_id: Some(user.id),
                email: user.email,
                full_name: Some(user.full_name),
                role: body.role,
                status: "active",
                created_at,
            }
        }
        None => {
            let created_at = sqlx::query_scalar!(
                "INSERT INTO tenant_invitations (tenant_id, email, role, invited_by)
                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING created_at",
                id,
                email,
                body.role.as_str(),
                principal.user_id()
            )
            .fetch_optional(&state.db)
            .await?
            .ok_or_else(|| AppError::Conflict("this email is already invited".into()))?;
            Member {
                user_id: None,
                email,
                full_name: None,
                role: body.role,
                status: "invited",
                created_at,
            }
        }
    };
    Ok((StatusCode::CREATED, Json(member)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMember {
    pub role: Role,
}

/// Fails with 409 when the change would leave the tenant without an admin.
async fn ensure_other_admin(
    tx: &mut sqlx::PgConnection,
    tenant_id: Uuid,
    user_id: Uuid,
) -> AppResult<()> {
    // Lock the tenant's admins so two concurrent demotions cannot both pass.
    let others = sqlx::query_scalar!(
        "SELECT user_id FROM tenant_members WHERE tenant_id = $1 AND role = 'admin' FOR UPDATE",
        tenant_id
    )
    .fetch_all(&mut *tx)
    .await?;
    if others.iter().all(|id| *id == user_id) && others.contains(&user_id) {
        return Err(AppError::Conflict(
            "a tenant must keep at least one admin".into(),
        ));
    }
    Ok(())
}

/// Change a member's role (admins only).
#[utoipa::path(put, path = "/tenants/{id}/members/{user_id}", tag = "tenants",
    params(("id" = Uuid, Path), ("user_id" = Uuid, Path)), request_body = UpdateMember,
    responses((status = 200, body = Member), (status = 404), (status = 409)),
    security(("bearer" = []), ("api_key" = [])))]
async fn update_member(
    State(state): State<AppState>,
    principal: Principal,
    Path((id, user_id)): Path<(Uuid, Uuid)>,
    Json(body): Json<UpdateMember>,
) -> AppResult<Json<Member>> {
    require_admin(role_in(&state, &principal, id).await?)?;
    let mut tx = state.db.begin().await?;
    if body.role != Role::Admin {
        ensure_other_admin(&mut tx, id, user_id).await?;
    }
    let row = sqlx::query!(
        "UPDATE tenant_members m SET role = $3 FROM users u
         WHERE m.tenant_id = $1 AND m.user_id = $2 AND u.id = m.user_id
         RETURNING u.email, u.full_name, m.created_at",
        id,
        user_id,
        body.role.as_str()
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(AppError::NotFound("member"))?;
    tx.commit().await?;
    Ok(Json(Member {
        user_id: Some(user_id),
        email: row.email,
        full_name: Some(row.full_name),
        role: body.role,
        status: "active",
        created_at: row.created_at,
    }))
}

/// Remove a member (admins only; anyone may remove themselves).
#[utoipa::path(delete, path = "/tenants/{id}/members/{user_id}", tag = "tenants",
    params(("id" = Uuid, Path), ("user_id" = Uuid, Path)),
    responses((status = 204), (status = 404), (status = 409)), security(("bearer" = []), ("api_key" = [])))]
async fn remove_member(
    State(state): State<AppState>,
    principal: Principal,
    Path((id, user_id)): Path<(Uuid, Uuid)>,
) -> AppResult<StatusCode> {
    let role = role_in(&state, &principal, id).await?;
    if principal.user_id() != Some(user_id) {
        require_admin(role)?;
    }
    let mut tx = state.db.begin().await?;
    ensure_other_admin(&mut tx, id, user_id).await?;
    let removed = sqlx::query!(
        "DELETE FROM tenant_members WHERE tenant_id = $1 AND user_id = $2",
        id,
        user_id
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if removed == 0 {
        return Err(AppError::NotFound("member"));
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
