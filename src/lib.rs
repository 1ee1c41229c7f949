//! Strata: infrastructure provisioning with the cost loop closed.
//!
//! Reading this list is the tour. Cross-cutting pieces come first, then one module per API area.

// Cross-cutting
/// Command-line interface and the four process roles (`up`, `serve`, `worker`, `migrate`).
pub mod cli;
/// Settings from flags and environment variables.
pub mod config;
/// Encryption of secrets at rest (AES-256-GCM under the master key).
pub mod crypto;
/// Connection pool and migrations (ours and the queue's).
pub mod db;
/// A private PostgreSQL cluster for `strata up` and for tests when none is configured.
pub mod embedded_pg;
/// The one error type, rendered as RFC 9457 problem details.
pub mod error;
/// Live events across processes (LISTEN/NOTIFY fanned out to WebSocket clients).
pub mod events;
/// The router, middleware, request extractors and list conventions.
pub mod http;
/// `Idempotency-Key`: a repeated POST gets the first answer.
pub mod idempotency;
/// The job queue: queues, job kinds registered in one place, the worker runtime.
pub mod jobs;
/// Prometheus metrics.
pub mod metrics;
/// The OpenAPI document and Swagger UI.
pub mod openapi;
/// The one outbound-address policy: where connections a tenant directs may go.
pub mod outbound;
/// Instance prices from the shipped catalog.
pub mod pricing;
/// Shared application state handed to handlers and jobs.
pub mod state;
/// The `terraform` binary: discovery and version.
pub mod terraform;

// API areas
/// Sign-up, login, tokens, API keys, and who the caller is.
pub mod auth;
/// Backups of the database (`pg_dump`) and `strata restore`.
pub mod backups;
/// Billing imports (FOCUS and cloud exports) into cost records, and the billing cost queries.
pub mod billing;
/// Catalogs: service categories and mappings, unmapped services, instance types, utilisation.
pub mod catalog;
/// Cost views: records with their filters, summaries, cost by date, the per-period breakdown.
pub mod costs;
/// Cloud credentials, encrypted at rest.
pub mod credentials;
/// The dashboard: totals, costs, regions, provider health and recent activity.
pub mod dashboard;
/// Deployments: Terraform runs, their logs (HTTP and WebSocket) and the job that runs them.
pub mod deployments;
/// DNS records on Cloudflare (through the `cloudflare` crate) and the sandbox's DNS host.
pub mod dns;
/// Liveness and readiness.
pub mod health;
/// The inventory: what exists in the clouds, by kind.
pub mod inventory;
/// Orchestrations over many resources: lockdown.
pub mod orchestrate;
/// Cloud providers and accounts, with health checks.
pub mod providers;
/// Resources: created, changed, acted on and destroyed through deployments.
pub mod resources;
/// Periodic work (provider health, retention) at the intervals the settings say.
pub mod schedules;
/// Per-tenant settings: intervals of periodic work, retention.
pub mod settings;
/// Tasks: the user-visible record of every piece of long work.
pub mod tasks;
/// Tenants and their members.
pub mod tenants;
/// Databricks workspaces.
pub mod workspaces;

/// Benchmarks run by `strata bench`.
pub mod bench;
/// `strata bench costs`: billing import speed against `psql \copy`, and cost query latency.
pub mod bench_costs;
/// `strata bench provision`: the API's overhead over Terraform by hand, and log latency.
pub mod bench_provision;
