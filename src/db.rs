use std::time::Duration;

use anyhow::Context;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

/// Opens the pool. Connections are checked lazily, so a process started while the database is
/// down comes up, answers readiness with 503, and recovers by itself when the database returns.
pub fn connect_lazy(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    let options: PgConnectOptions = url.parse().context("DATABASE_URL is not a valid URL")?;
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .min_connections(max_connections.min(4))
        .acquire_timeout(Duration::from_secs(3))
        .connect_lazy_with(options.application_name("strata")))
}

/// Opens the pool and waits until the database answers.
pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    let pool = connect_lazy(url, max_connections)?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match sqlx::query("SELECT 1").execute(&pool).await {
            Ok(_) => return Ok(pool),
            Err(err) if tokio::time::Instant::now() < deadline => {
                tracing::warn!(error = %err, "waiting for the database");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(err) => return Err(err).context("cannot reach the database"),
        }
    }
}

/// Runs the queue's migrations, then ours. Both share sqlx's migration table, so each migrator
/// ignores the other's entries. Only one process migrates at a time (sqlx takes an advisory lock).
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    let mut queue = apalis_postgres::PostgresStorage::migrations();
    queue.set_ignore_missing(true);
    queue.run(pool).await.context("queue migrations failed")?;
    let mut ours = sqlx::migrate!("./migrations");
    ours.set_ignore_missing(true);
    ours.run(pool).await.context("migrations failed")?;
    Ok(())
}

/// Parses a value stored as text into an enum, by the enum's serde names, so the API and the
/// database spell values alike.
pub fn parse_text<T: serde::de::DeserializeOwned>(value: &str) -> anyhow::Result<T> {
    serde_json::from_value(serde_json::Value::String(value.to_string())).map_err(|_| {
        let type_name = std::any::type_name::<T>()
            .rsplit("::")
            .next()
            .unwrap_or("value");
        anyhow::anyhow!("unknown {type_name} {value:?}")
    })
}

/// Implements `FromStr` with [`parse_text`] for enums stored as text.
macro_rules! text_enum {
    ($($ty:ty),+ $(,)?) => {$(
        impl ::std::str::FromStr for $ty {
            type Err = ::anyhow::Error;
            fn from_str(value: &str) -> Result<Self, Self::Err> {
                $crate::db::parse_text(value)
            }
        }
    )+};
}
pub(crate) use text_enum;
