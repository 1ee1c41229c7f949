//! Prometheus metrics at `/metrics`: HTTP requests counted in process; tasks and queue depth
//! read from the database at scrape time, so every replica reports the same truth.

use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::error::{AppError, AppResult};
use crate::state::AppState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskLabels {
    kind: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    queue: String,
}

pub struct Metrics {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: Family<RouteLabels, Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("strata");
        let http_requests = Family::<HttpLabels, Counter>::default();
        let http_duration = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 14))
        });
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            http_requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            http_duration.clone(),
        );
        Self {
            registry,
            http_requests,
            http_duration,
        }
    }
}

impl Metrics {
    pub fn observe_http(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        self.http_requests
            .get_or_create(&HttpLabels {
                method: method.to_string(),
                route: route.to_string(),
                status,
            })
            .inc();
        self.http_duration
            .get_or_create(&RouteLabels {
                method: method.to_string(),
                route: route.to_string(),
            })
            .observe(elapsed.as_secs_f64());
    }
}

/// Metrics in the Prometheus (OpenMetrics) text format.
#[utoipa::path(get, path = "/metrics", tag = "metrics",
    responses((status = 200, content_type = "application/openmetrics-text", body = String)))]
pub async fn render(State(state): State<AppState>) -> AppResult<Response> {
    let mut scrape = Registry::with_prefix("strata");
    let tasks = Family::<TaskLabels, Gauge>::default();
    for row in sqlx::query!(
        r#"SELECT kind, status, count(*) AS "count!" FROM tasks GROUP BY kind, status"#
    )
    .fetch_all(&state.db)
    .await?
    {
        tasks
            .get_or_create(&TaskLabels {
                kind: row.kind,
                status: row.status,
            })
            .set(row.count);
    }
    scrape.register("tasks", "Tasks by kind and status", tasks);

    let depth = Family::<QueueLabels, Gauge>::default();
    for row in sqlx::query!(
        r#"SELECT job_type AS "queue!", count(*) AS "count!" FROM apalis.jobs
           WHERE status = 'Pending' GROUP BY job_type"#
    )
    .fetch_all(&state.db)
    .await?
    {
        depth
            .get_or_create(&QueueLabels { queue: row.queue })
            .set(row.count);
    }
    scrape.register("queue_depth", "Jobs waiting in each queue", depth);

    let mut body = String::new();
    let encode = |body: &mut String, registry: &Registry| {
        prometheus_client::encoding::text::encode_registry(body, registry)
            .map_err(|err| AppError::Internal(anyhow::anyhow!("metrics encoding: {err}")))
    };
    encode(&mut body, &state.metrics.registry)?;
    encode(&mut body, &scrape)?;
    prometheus_client::encoding::text::encode_eof(&mut body)
        .map_err(|err| AppError::Internal(anyhow::anyhow!("metrics encoding: {err}")))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response())
}
