use axum::extract::{FromRequest, Request, State};
use axum::http::{StatusCode, header};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{Principal, Role, hash_password, verify_password};
use crate::error::{AppError, AppResult};
use crate::http::{Json, Validator};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(signup))
        .routes(routes!(login))
        .routes(routes!(me))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignupRequest {
    #[schema(example = "ada@example.com")]
    pub email: String,
    /// At least 8 characters.
    pub password: String,
    #[schema(example = "Ada Lovelace")]
    pub full_name: String,
}

/// A tenant the user belongs to, with their role in it.
#[derive(Serialize, ToSchema)]
pub struct Membership {
    pub tenant_id: Uuid,
    pub name: String,
    pub role: Role,
}

#[derive(Serialize, ToSchema)]
pub struct UserResponse {
    pub id: Uuid,
    pub email: String,
    pub full_name: String,
    pub created_at: DateTime<Utc>,
    pub tenants: Vec<Membership>,
}

/// Create an account. Unless the email was invited into tenants, a tenant is created with the
/// new user as its admin.
#[utoipa::path(post, path = "/auth/signup", tag = "auth", request_body = SignupRequest,
    responses((status = 201, body = UserResponse), (status = 409, description = "Email taken"),
              (status = 422, description = "Invalid fields")))]
async fn signup(
    State(state): State<AppState>,
    Json(body): Json<SignupRequest>,
) -> AppResult<(StatusCode, Json<UserResponse>)> {
    let email = body.email.trim().to_string();
    Validator::new()
        .email("email", &email)
        .check(
            body.password.chars().count() >= 8,
            "password",
            "must be at least 8 characters",
        )
        .check(
            body.password.len() <= 1024,
            "password",
            "must be at most 1024 bytes",
        )
        .text("full_name", &body.full_name, 1, 200)
        .finish()?;
    let password_hash = hash_password(body.password).await?;
    let full_name = body.full_name.trim().to_string();

    let mut tx = state.db.begin().await?;
    let user = sqlx::query!(
        "INSERT INTO users (id, email, password_hash, full_name) VALUES ($1, $2, $3, $4)
         RETURNING id, email, full_name, created_at",
        Uuid::new_v4(),
        email,
        password_hash,
        full_name
    )
    .fetch_one(&mut *tx)
    .await?;
    let invited = sqlx::query!(
        "WITH accepted AS (
             DELETE FROM tenant_invitations WHERE lower(email) = lower($1) RETURNING tenant_id, role
         )
         INSERT INTO tenant_members (tenant_id, user_id, role)
         SELECT tenant_id, $2, role FROM accepted",
        email,
        user.id
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if invited == 0 {
        let tenant_id = Uuid::new_v4();
        sqlx::query!(
            "INSERT INTO tenants (id, name) VALUES ($1, $2)",
            tenant_id,
            format!("{full_name}'s workspace")
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query!(
            "INSERT INTO tenant_members (tenant_id, user_id, role) VALUES ($1, $2, 'admin')",
            tenant_id,
            user.id
        )
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    let tenants = memberships(&state, user.id).await?;
    Ok((
        StatusCode::CREATED,
        Json(UserResponse {
            id: user.id,
            email: user.email,
            full_name: user.full_name,
            created_at: user.created_at,
            tenants,
        }),
    ))
}

async fn memberships(state: &AppState, user_id: Uuid) -> AppResult<Vec<Membership>> {
    sqlx::query!(
        "SELECT t.id, t.name, m.role FROM tenant_members m JOIN tenants t ON t.id = m.tenant_id
         WHERE m.user_id = $1 ORDER BY m.created_at, t.id",
        user_id
    )
    .fetch_all(&state.db)
    .await?
    .into_iter()
    .map(|row| {
        Ok(Membership {
            tenant_id: row.id,
            name: row.name,
            role: row.role.parse()?,
        })
    })
    .collect()
}

/// Login credentials, as an OAuth2 password form (`username`, `password`) or as JSON
/// (`username` or `email`, `password`).
#[derive(Deserialize, ToSchema)]
pub struct LoginRequest {
    #[serde(alias = "email")]
    pub username: String,
    pub password: String,
}

impl<S: Send + Sync> FromRequest<S> for LoginRequest {
    type Rejection = AppError;

    async fn from_request(request: Request, state: &S) -> AppResult<Self> {
        let is_form = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if is_form {
            let axum::Form(login) = axum::Form::<LoginRequest>::from_request(request, state)
                .await
                .map_err(|err| AppError::Unprocessable(err.body_text()))?;
            Ok(login)
        } else {
            let Json(login) = Json::<LoginRequest>::from_request(request, state).await?;
            Ok(login)
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    #[schema(example = "bearer")]
    pub token_type: &'static str,
    /// Seconds until the token expires.
    pub expires_in: u64,
}

/// Exchange email and password for an access token.
#[utoipa::path(post, path = "/auth/login", tag = "auth",
    request_body(content = LoginRequest, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, body = TokenResponse), (status = 401, description = "Wrong email or password")))]
async fn login(
    State(state): State<AppState>,
    body: LoginRequest,
) -> AppResult<Json<TokenResponse>> {
    let user = sqlx::query!(
        "SELECT id, password_hash FROM users WHERE lower(email) = lower($1)",
        body.username.trim()
    )
    .fetch_optional(&state.db)
    .await?;
    let (id, hash) = match user {
        Some(user) => (Some(user.id), Some(user.password_hash)),
        None => (None, None),
    };
    let verified = verify_password(body.password, hash).await?;
    let Some(id) = id.filter(|_| verified) else {
        return Err(AppError::Unauthorized("wrong email or password".into()));
    };
    Ok(Json(TokenResponse {
        access_token: state.jwt.issue(id)?,
        token_type: "bearer",
        expires_in: state.jwt.ttl.as_secs(),
    }))
}

/// The caller: a user with their tenants, or an API key with its tenant and role.
#[derive(Serialize, ToSchema)]
pub struct MeResponse {
    /// `user`, `api_key` or `operator`.
    pub kind: &'static str,
    pub id: Option<Uuid>,
    pub email: Option<String>,
    pub full_name: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
    pub tenants: Vec<Membership>,
}

/// Who am I?
#[utoipa::path(get, path = "/auth/me", tag = "auth",
    responses((status = 200, body = MeResponse), (status = 401, description = "Not signed in")),
    security(("bearer" = []), ("api_key" = [])))]
async fn me(State(state): State<AppState>, principal: Principal) -> AppResult<Json<MeResponse>> {
    let response = match principal {
        Principal::User { id } => {
            let user = sqlx::query!(
                "SELECT email, full_name, created_at FROM users WHERE id = $1",
                id
            )
            .fetch_one(&state.db)
            .await?;
            MeResponse {
                kind: "user",
                id: Some(id),
                email: Some(user.email),
                full_name: Some(user.full_name),
                created_at: Some(user.created_at),
                tenants: memberships(&state, id).await?,
            }
        }
        Principal::ApiKey {
            id,
            tenant_id,
            role,
        } => {
            let key = sqlx::query!(
                "SELECT k.created_at, t.name FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
                 WHERE k.id = $1",
                id
            )
            .fetch_one(&state.db)
            .await?;
            MeResponse {
                kind: "api_key",
                id: Some(id),
                email: None,
                full_name: None,
                created_at: Some(key.created_at),
                tenants: vec![Membership {
                    tenant_id,
                    name: key.name,
                    role,
                }],
            }
        }
        Principal::Operator => MeResponse {
            kind: "operator",
            id: None,
            email: None,
            full_name: None,
            created_at: None,
            tenants: Vec::new(),
        },
    };
    Ok(Json(response))
}
