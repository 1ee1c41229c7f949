//! Liveness (`/health`) and readiness (`/health/ready`, per dependency).

use std::time::Instant;

use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::{DEPENDENCY_TIMEOUT, Json};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(ready))
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "healthy")]
    pub status: &'static str,
    #[schema(example = "strata")]
    pub service: &'static str,
}

/// The process is up.
#[utoipa::path(get, path = "/health", tag = "health", responses((status = 200, body = Health)))]
async fn health() -> Json<Health> {
    Json(Health {
        status: "healthy",
        service: "strata",
    })
}

#[derive(Serialize, ToSchema)]
pub struct ServiceStatus {
    /// `healthy`, `degraded` or `unavailable`.
    pub status: &'static str,
    pub response_time_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct QueueStatus {
    #[serde(flatten)]
    pub service: ServiceStatus,
    /// Workers that sent a heartbeat in the last 30 seconds.
    pub workers_alive: i64,
    pub queued: i64,
    pub running: i64,
}

#[derive(Serialize, ToSchema)]
pub struct TerraformStatus {
    #[serde(flatten)]
    pub service: ServiceStatus,
    pub version: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Services {
    pub database: ServiceStatus,
    pub queue: QueueStatus,
    pub terraform: TerraformStatus,
}

#[derive(Serialize, ToSchema)]
pub struct Readiness {
    /// `ready`, `degraded` (serving, but work may wait) or `unavailable`.
    pub status: &'static str,
    pub service: &'static str,
    pub version: &'static str,
    pub services: Services,
}

fn unavailable(started: Instant, error: String) -> ServiceStatus {
    ServiceStatus {
        status: "unavailable",
        response_time_ms: started.elapsed().as_millis() as u64,
        error: Some(error),
    }
}

/// Whether this replica can serve: the database must answer; workers and Terraform are reported.
#[utoipa::path(get, path = "/health/ready", tag = "health",
    responses((status = 200, body = Readiness), (status = 503, body = Readiness)))]
async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let started = Instant::now();
    let database = match tokio::time::timeout(
        DEPENDENCY_TIMEOUT,
        sqlx::query_scalar!("SELECT 1 AS \"one!\"").fetch_one(&state.db),
    )
    .await
    {
        Ok(Ok(_)) => ServiceStatus {
            status: "healthy",
            response_time_ms: started.elapsed().as_millis() as u64,
            error: None,
        },
        Ok(Err(err)) => unavailable(started, err.to_string()),
        Err(_) => unavailable(started, "no answer within 3 s".into()),
    };

    let started = Instant::now();
    let queue = if database.status == "healthy" {
        let counts = sqlx::query!(
            r#"SELECT
                 (SELECT count(*) FROM apalis.workers WHERE last_seen > now() - interval '30 seconds') AS "workers!",
                 (SELECT count(*) FROM tasks WHERE status = 'queued') AS "queued!",
                 (SELECT count(*) FROM tasks WHERE status = 'running') AS "running!""#
        )
        .fetch_one(&state.db)
        .await;
        match counts {
            Ok(c) => QueueStatus {
                service: ServiceStatus {
                    status: if c.workers > 0 { "healthy" } else { "degraded" },
                    response_time_ms: started.elapsed().as_millis() as u64,
                    error: (c.workers == 0).then(|| "no live workers: tasks wait".to_string()),
                },
                workers_alive: c.workers,
                queued: c.queued,
                running: c.running,
            },
            Err(err) => QueueStatus {
                service: unavailable(started, err.to_string()),
                workers_alive: 0,
                queued: 0,
                running: 0,
            },
        }
    } else {
        QueueStatus {
            service: unavailable(started, "the database is unavailable".into()),
            workers_alive: 0,
            queued: 0,
            running: 0,
        }
    };

    let started = Instant::now();
    let terraform = match state.terraform.version().await {
        Ok(version) => TerraformStatus {
            service: ServiceStatus {
                status: "healthy",
                response_time_ms: started.elapsed().as_millis() as u64,
                error: None,
            },
            version: Some(version),
        },
        Err(err) => TerraformStatus {
            service: unavailable(started, err),
            version: None,
        },
    };

    let (code, status) = if database.status != "healthy" {
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    } else if queue.service.status != "healthy" || terraform.service.status != "healthy" {
        (StatusCode::OK, "degraded")
    } else {
        (StatusCode::OK, "ready")
    };
    (
        code,
        Json(Readiness {
            status,
            service: "strata",
            version: env!("CARGO_PKG_VERSION"),
            services: Services {
                database,
                queue,
                terraform,
            },
        }),
    )
}
