use tower_http::limit::RequestBodyLimitLayer;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Strata API",
        description = "Infrastructure provisioning with the cost loop closed. Long work answers \
                       202 with a task_id; errors are RFC 9457 problem details; lists are \
                       {data,total,limit,offset} with X-Total-Count.",
    ),
    modifiers(&Security),
    tags(
        (name = "health", description = "Liveness and readiness"),
        (name = "auth", description = "Accounts and access tokens"),
        (name = "api-keys", description = "Tenant API keys"),
        (name = "tenants", description = "Tenants and members"),
        (name = "credentials", description = "Cloud credentials, encrypted at rest"),
        (name = "providers", description = "Cloud providers and accounts"),
        (name = "tasks", description = "Long work and its progress"),
        (name = "resources", description = "Resources created, changed and destroyed by Terraform"),
        (name = "deployments", description = "Terraform runs and their live logs"),
        (name = "inventory", description = "What exists in the clouds"),
        (name = "settings", description = "Per-tenant settings and the periodic work they schedule"),
        (name = "backups", description = "Database backups (operator only)"),
        (name = "dashboard", description = "Totals, costs and health at a glance"),
        (name = "orchestration", description = "Work over many resources as one task"),
        (name = "billing", description = "Billing imports, cost records, cost queries and currency rates"),
        (name = "costs", description = "Cost records and their sums, by day, period and group"),
        (name = "catalog", description = "Service categories and mappings, unmapped services, instance types and utilisation"),
        (name = "workspaces", description = "Databricks workspaces"),
        (name = "metrics", description = "Prometheus metrics"),
    )
)]
struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
    }
}

/// Every API route, collected with its OpenAPI description.
pub fn api_router(state: &AppState) -> OpenApiRouter<AppState> {
    let v1 = OpenApiRouter::new()
        .merge(crate::health::router())
        .merge(crate::auth::routes::router())
        .merge(crate::auth::api_keys::router())
        .merge(crate::tenants::router())
        .merge(crate::credentials::router())
        .merge(crate::providers::router())
        .merge(crate::tasks::router())
        .merge(crate::resources::router())
        .merge(crate::deployments::router())
        .merge(crate::inventory::router())
        .merge(crate::settings::router())
        .merge(crate::schedules::router())
        .merge(crate::backups::router())
        .merge(crate::dashboard::router())
        .merge(crate::orchestrate::router())
        .merge(crate::billing::router())
        .merge(crate::costs::router())
        .merge(crate::catalog::router())
        .merge(crate::workspaces::router())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::idempotency::middleware,
        ))
        .layer(RequestBodyLimitLayer::new(crate::http::MAX_BODY_BYTES))
        // Billing exports are large: their upload streams into the database, and the handler
        // enforces the operator's limit (STRATA_IMPORT_MAX_BYTES) itself, naming it.
        .merge(crate::billing::upload_router().layer(axum::extract::DefaultBodyLimit::disable()));
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .nest("/api/v1", v1)
        .routes(utoipa_axum::routes!(
            crate::deployments::ws::deployment_logs
        ))
        .routes(utoipa_axum::routes!(crate::events::ws_events))
        .routes(utoipa_axum::routes!(crate::metrics::render))
}

/// Swagger UI at `/docs`, the document at `/openapi.json`.
pub fn docs_router(openapi: utoipa::openapi::OpenApi) -> axum::Router<AppState> {
    SwaggerUi::new("/docs").url("/openapi.json", openapi).into()
}
