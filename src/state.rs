use std::sync::Arc;

use sqlx::PgPool;

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
                .with_plugin_dir(settings.terraform_plugin_dir.clone()),
            events: EventHub::new(db.clone()),
            settings: Arc::new(settings),
            db,
        }
    }
}
