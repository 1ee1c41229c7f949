//! Cloud credentials. Every field a provider needs is sealed with AES-256-GCM under the master
//! key (bound to the row's id); identifiers that are not secret (account, project, region) are
//! also kept in clear for display. No answer and no log line carries a secret.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
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
        .routes(routes!(list_credentials, create_credential))
        .routes(routes!(get_credential, delete_credential))
}

/// A secret string: readable by the code that needs it, never printed.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// What each provider needs to authenticate.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "provider", rename_all = "lowercase")]
pub enum ProviderSecrets {
    Aws {
        access_key: Secret,
        #[schema(value_type = String, format = Password)]
        secret_key: Secret,
    },
    Azure {
        tenant_id: String,
        client_id: String,
        #[schema(value_type = String, format = Password)]
        client_secret: Secret,
        subscription_id: String,
    },
    Gcp {
        /// The service account key file, as a JSON string.
        #[schema(value_type = String, format = Password)]
        service_account_json: Secret,
        project_id: String,
    },
    Cloudflare {
        #[schema(value_type = String, format = Password)]
        api_token: Secret,
        account_id: String,
    },
    Oci {
        tenancy_ocid: String,
        user_ocid: String,
        fingerprint: String,
        #[schema(value_type = String, format = Password)]
        private_key: Secret,
    },
    Proxmox {
        /// e.g. https://pve.example.com:8006
        endpoint: String,
        token_id: String,
        #[schema(value_type = String, format = Password)]
        token_secret: Secret,
    },
    Databricks {
        /// e.g. https://adb-123.azuredatabricks.net
        host: String,
        #[schema(value_type = String, format = Password)]
        token: Secret,
    },
}

// utoipa cannot see through `Secret`; it is a string on the wire.
impl utoipa::PartialSchema for Secret {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        String::schema()
    }
}
impl ToSchema for Secret {}

impl ProviderSecrets {
    pub fn provider(&self) -> &'static str {
        match self {
            Self::Aws { .. } => "aws",
            Self::Azure { .. } => "azure",
            Self::Gcp { .. } => "gcp",
            Self::Cloudflare { .. } => "cloudflare",
            Self::Oci { .. } => "oci",
            Self::Proxmox { .. } => "proxmox",
            Self::Databricks { .. } => "databricks",
        }
    }

    /// (fields shown in answers, every field to seal).
    fn split(&self) -> (Value, Value) {
        match self {
            Self::Aws {
                access_key,
                secret_key,
            } => (
                json!({}),
                json!({"access_key": access_key.expose(), "secret_key": secret_key.expose()}),
            ),
            Self::Azure {
                tenant_id,
                client_id,
                client_secret,
                subscription_id,
            } => (
                json!({"tenant_id": tenant_id, "client_id": client_id, "subscription_id": subscription_id}),
                json!({"tenant_id": tenant_id, "client_id": client_id,
                       "client_secret": client_secret.expose(), "subscription_id": subscription_id}),
            ),
            Self::Gcp {
                service_account_json,
                project_id,
            } => (
                json!({"project_id": project_id}),
                json!({"service_account_json": service_account_json.expose(), "project_id": project_id}),
            ),
            Self::Cloudflare {
                api_token,
                account_id,
            } => (
                json!({"account_id": account_id}),
                json!({"api_token": api_token.expose(), "account_id": account_id}),
            ),
            Self::Oci {
                tenancy_ocid,
                user_ocid,
                fingerprint,
                private_key,
            } => (
                json!({"tenancy_ocid": tenancy_ocid, "user_ocid": user_ocid, "fingerprint": fingerprint}),
                json!({"tenancy_ocid": tenancy_ocid, "user_ocid": user_ocid,
                       "fingerprint": fingerprint, "private_key": private_key.expose()}),
            ),
            Self::Proxmox {
                endpoint,
                token_id,
                token_secret,
            } => (
                json!({"endpoint": endpoint, "token_id": token_id}),
                json!({"endpoint": endpoint, "token_id": token_id, "token_secret": token_secret.expose()}),
            ),
            Self::Databricks { host, token } => (
                json!({"host": host}),
                json!({"host": host, "token": token.expose()}),
            ),
        }
    }

    fn validate(&self, v: &mut Validator) {
        let (_, all) = self.split();
        for (field, value) in all.as_object().into_iter().flatten() {
            let value = value.as_str().unwrap_or_default();
            let max = if matches!(field.as_str(), "service_account_json" | "private_key") {
                16 * 1024
            } else {
                1024
            };
            v.text(field, value, 1, max);
        }
        match self {
            Self::Gcp {
                service_account_json,
                ..
            } => {
                let parsed =
                    serde_json::from_str::<Map<String, Value>>(service_account_json.expose());
                v.check(
                    parsed.is_ok(),
                    "service_account_json",
                    "must be a JSON object (the key file)",
                );
            }
            Self::Proxmox { endpoint: url, .. } | Self::Databricks { host: url, .. } => {
                let field = if matches!(self, Self::Proxmox { .. }) {
                    "endpoint"
                } else {
                    "host"
                };
                v.check(
                    url.starts_with("https://") || url.starts_with("http://"),
                    field,
                    "must be an http(s) URL",
                );
            }
            _ => {}
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateCredential {
    pub name: String,
    pub region: Option<String>,
    #[serde(flatten)]
    pub secrets: ProviderSecrets,
}

#[derive(Serialize, ToSchema)]
pub struct Credential {
    pub id: Uuid,
    pub provider: String,
    pub name: String,
    pub region: Option<String>,
    /// Identifiers that are not secret, such as the account or project id.
    pub metadata: Value,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
}

/// The tenant's credentials, without their secrets.
#[utoipa::path(get, path = "/credentials", tag = "credentials", params(Pagination),
    responses((status = 200, body = Page<Credential>)), security(("bearer" = []), ("api_key" = [])))]
async fn list_credentials(
    State(state): State<AppState>,
    auth: TenantAuth,
    Query(page): Query<Pagination>,
) -> AppResult<Page<Credential>> {
    let (limit, offset) = page.resolve()?;
    let data = sqlx::query_as!(
        Credential,
        "SELECT id, provider, name, region, metadata, is_active, created_at FROM credentials
         WHERE tenant_id = $1 ORDER BY created_at, id LIMIT $2 OFFSET $3",
        auth.tenant_id,
        limit,
        offset
    )
    .fetch_all(&state.db)
    .await?;
    let total = sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM credentials WHERE tenant_id = $1"#,
        auth.tenant_id
    )
    .fetch_one(&state.db)
    .await?;
    Ok(Page::new(data, total, (limit, offset)))
}

/// Store a credential. The body's fields depend on `provider`.
#[utoipa::path(post, path = "/credentials", tag = "credentials", request_body = CreateCredential,
    responses((status = 201, body = Credential), (status = 409, description = "Name taken")),
    security(("bearer" = []), ("api_key" = [])))]
async fn create_credential(
    State(state): State<AppState>,
    auth: TenantAuth,
    Json(body): Json<CreateCredential>,
) -> AppResult<(StatusCode, Json<Credential>)> {
    auth.require(Role::Member)?;
    let mut v = Validator::new();
    v.text("name", &body.name, 1, 200)
        .optional_text("region", body.region.as_deref(), 64);
    body.secrets.validate(&mut v);
    v.finish()?;
    let id = Uuid::new_v4();
    let (metadata, secret) = body.secrets.split();
    let sealed = state
        .secrets
        .seal(secret.to_string().as_bytes(), id.as_bytes())?;
    let credential = sqlx::query_as!(
        Credential,
        "INSERT INTO credentials (id, tenant_id, provider, name, region, metadata, secret, created_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         RETURNING id, provider, name, region, metadata, is_active, created_at",
        id,
        auth.tenant_id,
        body.secrets.provider(),
        body.name.trim(),
        body.region.as_deref().map(str::trim),
        metadata,
        sealed,
        auth.user_id()
    )
    .fetch_one(&state.db)
    .await?;
    Ok((StatusCode::CREATED, Json(credential)))
}

/// One credential, without its secrets.
#[utoipa::path(get, path = "/credentials/{id}", tag = "credentials", params(("id" = Uuid, Path)),
    responses((status = 200, body = Credential), (status = 404)), security(("bearer" = []), ("api_key" = [])))]
async fn get_credential(
    State(state): State<AppState>,
    auth: TenantAuth,
    Path(id): Path<Uuid>,
) -> AppResult<Json<Credential>> {
    sqlx::query_as!(
        Credential,
        "SELECT id, provider, name, region, metadata, is_active, created_at FROM credentials
         WHERE id = $1 AND tenant_id = $2",
        id,
        auth.tenant_id
    )
    .fetch_optional(&state.db)
    .await?
    .map(Json)
    .ok_or(AppError::NotFound("credential"))
}

/// Delete a credential that no provider uses.
#[utoipa::path(delete, path = "/credentials/{id}", tag = "credentials", params(("id" = Uuid, Path)),
    responses((status = 204), (status = 404), (status = 409, description = "Used by a provider")),
    security(("bearer" = []), ("api_key" = [])))]
async fn delete_credential(
    State(state): State<AppState>,
    auth: TenantAuth,
    Path(id): Path<Uuid>,
) -> AppResult<StatusCode> {
    auth.require(Role::Member)?;
    let deleted = sqlx::query!(
        "DELETE FROM credentials WHERE id = $1 AND tenant_id = $2",
        id,
        auth.tenant_id
    )
    .execute(&state.db)
    .await
    .map_err(|err| match AppError::from(err) {
        AppError::Unprocessable(_) => AppError::Conflict(
            "the credential is used by a provider; delete or change it first".into(),
        ),
        other => other,
    })?
    .rows_affected();
    crate::http::deleted(deleted, "credential")
}

/// The decrypted fields of a credential, for a worker that hands them to Terraform.
pub async fn open_secrets(
    state: &AppState,
    tenant_id: Uuid,
    id: Uuid,
) -> anyhow::Result<Map<String, Value>> {
    let row = sqlx::query!(
        "SELECT secret FROM credentials WHERE id = $1 AND tenant_id = $2",
        id,
        tenant_id
    )
    .fetch_one(&state.db)
    .await?;
    let plaintext = state.secrets.open(&row.secret, id.as_bytes())?;
    Ok(serde_json::from_slice(&plaintext)?)
}
