//! Catalogs (seed 003): service categories, a tenant's service → category mappings and the
//! services billing imports saw with no category (`services.rs`); the machine types of the
//! clouds with their prices (`instances.rs`); utilisation samples of resources (`usage.rs`).

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

pub mod instances;
pub mod services;
pub mod usage;

pub use services::record_unmapped;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(services::list_services, services::create_service))
        .routes(routes!(services::get_service, services::delete_service))
        .routes(routes!(
            services::list_categories,
            services::create_category
        ))
        .routes(routes!(services::get_category))
        .routes(routes!(services::list_unmapped))
        .routes(routes!(services::delete_unmapped))
        .routes(routes!(instances::list_instances))
        .routes(routes!(instances::get_instance))
        .routes(routes!(usage::list_usage, usage::create_usage))
        .routes(routes!(usage::get_usage))
}
