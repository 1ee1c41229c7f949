use std::sync::Arc;

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::auth::JwtKeys;
use crate::config::Settings;
use crate::crypto::SecretBox;
use crate::events::EventHub;
use crate::metrics::Metrics;
use crate::terraform::Terraform;

/// What every handler and job can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub db: PgPool,
    /// Connections that hold a resource's advisory lock for a whole Terraform run: apart from
    /// `db` so that long runs cannot starve it, and pooled because a connection costs ~5–10 ms
    /// to open.
    pub run_locks: PgPool,
    pub settings: Arc<Settings>,
    pub secrets: SecretBox,
    pub jwt: Arc<JwtKeys>,
    pub metrics: Arc<Metrics>,
    pub terraform: Terraform,
    pub events: EventHub,
}

impl AppState {
    pub fn new(db: PgPool, settings: Settings) -> Self {
        Self {
            secrets: SecretBox::new(&settings.master_key),
            jwt: Arc::new(JwtKeys::new(&settings.jwt_secret, settings.jwt_ttl)),
            metrics: Arc::new(Metrics::default()),
            terraform: Terraform::new(&settings.terraform)
                .with_plugin_dir(settings.terraform_plugin_dir.clone())
                .with_go_runtime(settings.terraform_gogc, &settings.terraform_memory_limit),
            events: EventHub::new(db.clone()),
            run_locks: PgPoolOptions::new()
                .max_connections(64)
                .min_connections(0)
                .idle_timeout(Duration::from_secs(300))
                .connect_lazy_with((*db.connect_options()).clone()),
            settings: Arc::new(settings),
            db,
        }
    }
}
