//! Who is calling, and with which rights.
//!
//! A caller proves who they are with `Authorization: Bearer <JWT>` (a user) or `X-API-Key`
//! (a tenant's API key, or the operator key from `API_SECRET_KEY`). Tenant-scoped routes then
//! resolve the tenant: the API key's own, the one named by `X-Tenant-Id`, or the user's first.

pub mod api_keys;
mod password;
pub mod routes;

use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{AppError, AppResult};
use crate::state::AppState;

pub use password::{hash_password, verify_password};

/// A role within a tenant. Ordered: a viewer reads, a member also writes, an admin also
/// manages the tenant, its members and its keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Member,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Member => "member",
            Role::Admin => "admin",
        }
    }
}

crate::db::text_enum!(Role);

/// An authenticated caller, before any tenant is chosen.
#[derive(Debug, Clone)]
pub enum Principal {
    User {
        id: Uuid,
    },
    ApiKey {
        id: Uuid,
        tenant_id: Uuid,
        role: Role,
    },
    /// The holder of `API_SECRET_KEY`: admin of every tenant.
    Operator,
}

impl Principal {
    pub fn user_id(&self) -> Option<Uuid> {
        match self {
            Principal::User { id } => Some(*id),
            _ => None,
        }
    }
}

/// A caller acting within one tenant, with their role there.
#[derive(Debug, Clone)]
pub struct TenantAuth {
    pub principal: Principal,
    pub tenant_id: Uuid,
    pub role: Role,
}

impl TenantAuth {
    /// Fails with 403 unless the caller's role is at least `role`.
    pub fn require(&self, role: Role) -> AppResult<()> {
        if self.role >= role {
            Ok(())
        } else {
            Err(AppError::Forbidden(format!(
                "this needs the {} role; you are {}",
                role.as_str(),
                self.role.as_str()
            )))
        }
    }

    pub fn user_id(&self) -> Option<Uuid> {
        self.principal.user_id()
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: Uuid,
    pub iat: i64,
    pub exp: i64,
}

/// Signs and checks access tokens: HS256 only, with an expiry.
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    pub ttl: Duration,
}

impl JwtKeys {
    pub fn new(secret: &[u8], ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl,
        }
    }

    pub fn issue(&self, user_id: Uuid) -> AppResult<String> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: user_id,
            iat: now,
            exp: now + self.ttl.as_secs() as i64,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|err| AppError::Internal(err.into()))
    }

    /// The user a token names, if its signature, algorithm and expiry hold.
    pub fn verify(&self, token: &str) -> AppResult<Uuid> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims.sub)
            .map_err(|err| {
                use jsonwebtoken::errors::ErrorKind;
                let reason = match err.kind() {
                    ErrorKind::ExpiredSignature => "the access token has expired",
                    _ => "the access token is invalid",
                };
                AppError::Unauthorized(reason.into())
            })
    }
}

/// SHA-256 of an API key, as stored.
pub fn hash_api_key(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

fn header<'a>(parts: &'a Parts, name: &str) -> AppResult<Option<&'a str>> {
    parts
        .headers
        .get(name)
        .map(|v| {
            v.to_str()
                .map_err(|_| AppError::BadRequest(format!("the {name} header is not valid text")))
        })
        .transpose()
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> AppResult<Self> {
        if let Some(key) = header(parts, "x-api-key")? {
            return principal_from_api_key(state, key.trim()).await;
        }
        let Some(authorization) = header(parts, "authorization")? else {
            return Err(AppError::Unauthorized(
                "sign in: send `Authorization: Bearer <token>` or `X-API-Key`".into(),
            ));
        };
        let token = authorization
            .strip_prefix("Bearer ")
            .or_else(|| authorization.strip_prefix("bearer "))
            .ok_or_else(|| AppError::Unauthorized("expected a Bearer token".into()))?;
        let id = state.jwt.verify(token.trim())?;
        user_principal(state, id).await
    }
}

async fn principal_from_api_key(state: &AppState, key: &str) -> AppResult<Principal> {
    if let Some(operator_key) = &state.settings.api_secret_key
        && constant_time_eq(operator_key.as_bytes(), key.as_bytes())
    {
        return Ok(Principal::Operator);
    }
    let row = sqlx::query!(
        r#"UPDATE api_keys SET last_used_at = now()
           WHERE key_hash = $1 AND (expires_at IS NULL OR expires_at > now())
           RETURNING id, tenant_id, role"#,
        hash_api_key(key)
    )
    .fetch_optional(&state.db)
    .await?
    .ok_or_else(|| AppError::Unauthorized("the API key is invalid or expired".into()))?;
    Ok(Principal::ApiKey {
        id: row.id,
        tenant_id: row.tenant_id,
        role: row.role.parse()?,
    })
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl FromRequestParts<AppState> for TenantAuth {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> AppResult<Self> {
        let principal = Principal::from_request_parts(parts, state).await?;
        let requested = requested_tenant(parts)?;
        TenantAuth::resolve(state, principal, requested).await
    }
}

/// [`TenantAuth`] from the usual headers, or from `?token=` (and `?tenant_id=`) for clients
/// that cannot set headers, such as a browser opening a WebSocket.
pub struct QueryOrHeaderAuth(pub TenantAuth);

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
    tenant_id: Option<Uuid>,
}

impl FromRequestParts<AppState> for QueryOrHeaderAuth {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> AppResult<Self> {
        let has_header =
            parts.headers.contains_key("authorization") || parts.headers.contains_key("x-api-key");
        let query = axum::extract::Query::<TokenQuery>::try_from_uri(&parts.uri)
            .map_err(|err| AppError::BadRequest(err.body_text()))?
            .0;
        match query.token {
            Some(token) if !has_header => {
                let principal = Principal::from_token(state, &token).await?;
                let requested = requested_tenant(parts)?.or(query.tenant_id);
                Ok(Self(
                    TenantAuth::resolve(state, principal, requested).await?,
                ))
            }
            _ => Ok(Self(TenantAuth::from_request_parts(parts, state).await?)),
        }
    }
}

/// The tenant named by `X-Tenant-Id`, if any.
pub fn requested_tenant(parts: &Parts) -> AppResult<Option<Uuid>> {
    header(parts, "x-tenant-id")?
        .map(|v| {
            Uuid::parse_str(v.trim())
                .map_err(|_| AppError::BadRequest("X-Tenant-Id must be a UUID".into()))
        })
        .transpose()
}

impl Principal {
    /// The caller a bare token names: an access token (JWT) or an API key. For clients that
    /// cannot set headers, such as browsers opening a WebSocket (`?token=`).
    pub async fn from_token(state: &AppState, token: &str) -> AppResult<Self> {
        let token = token.trim();
        if token.starts_with("sk_") || state.settings.api_secret_key.as_deref() == Some(token) {
            return principal_from_api_key(state, token).await;
        }
        let id = state.jwt.verify(token)?;
        user_principal(state, id).await
    }
}

async fn user_principal(state: &AppState, id: Uuid) -> AppResult<Principal> {
    // A deleted user's tokens stop working at once.
    let exists = sqlx::query_scalar!(
        "SELECT EXISTS (SELECT 1 FROM users WHERE id = $1) AS \"e!\"",
        id
    )
    .fetch_one(&state.db)
    .await?;
    if !exists {
        return Err(AppError::Unauthorized(
            "the account no longer exists".into(),
        ));
    }
    Ok(Principal::User { id })
}

impl TenantAuth {
    /// The tenant a principal acts in: an API key's own, the one requested, or a user's first.
    pub async fn resolve(
        state: &AppState,
        principal: Principal,
        requested: Option<Uuid>,
    ) -> AppResult<Self> {
        let (tenant_id, role) = match &principal {
            Principal::ApiKey {
                tenant_id, role, ..
            } => {
                if requested.is_some_and(|t| t != *tenant_id) {
                    return Err(AppError::Forbidden(
                        "this API key belongs to another tenant".into(),
                    ));
                }
                (*tenant_id, *role)
            }
            Principal::Operator => {
                let tenant_id = requested.ok_or_else(|| {
                    AppError::BadRequest("the operator key needs an X-Tenant-Id header".into())
                })?;
                sqlx::query_scalar!("SELECT id FROM tenants WHERE id = $1", tenant_id)
                    .fetch_optional(&state.db)
                    .await?
                    .ok_or(AppError::NotFound("tenant"))?;
                (tenant_id, Role::Admin)
            }
            Principal::User { id } => {
                let membership = sqlx::query!(
                    r#"SELECT tenant_id, role FROM tenant_members
                       WHERE user_id = $1 AND ($2::uuid IS NULL OR tenant_id = $2)
                       ORDER BY created_at, tenant_id LIMIT 1"#,
                    id,
                    requested
                )
                .fetch_optional(&state.db)
                .await?
                .ok_or_else(|| match requested {
                    Some(_) => AppError::Forbidden("you are not a member of this tenant".into()),
                    None => AppError::Forbidden("you are not a member of any tenant".into()),
                })?;
                (membership.tenant_id, membership.role.parse()?)
            }
        };
        Ok(TenantAuth {
            principal,
            tenant_id,
            role,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_by_rights() {
        assert!(Role::Admin > Role::Member && Role::Member > Role::Viewer);
        for role in [Role::Viewer, Role::Member, Role::Admin] {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
        }
    }

    #[test]
    fn tokens_verify_only_with_their_key_and_before_expiry() {
        let keys = JwtKeys::new(b"0123456789abcdef0123", Duration::from_secs(60));
        let user = Uuid::new_v4();
        let token = keys.issue(user).unwrap();
        assert_eq!(keys.verify(&token).unwrap(), user);
        let other = JwtKeys::new(b"another-secret-of-20", Duration::from_secs(60));
        assert!(other.verify(&token).is_err());
        let expired = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &Claims {
                sub: user,
                iat: 0,
                exp: chrono::Utc::now().timestamp() - 60,
            },
            &EncodingKey::from_secret(b"0123456789abcdef0123"),
        )
        .unwrap();
        assert!(keys.verify(&expired).is_err());
    }

    #[test]
    fn constant_time_eq_compares_whole_values() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
