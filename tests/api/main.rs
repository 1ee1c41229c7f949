//! API tests: every endpoint through the router against a fresh PostgreSQL database, plus
//! worker processes for crash recovery.

mod api_keys;
mod auth;
mod backups;
mod bad_input;
mod billing;
mod catalog;
mod cloudflare;
mod costs;
mod credentials;
mod dashboard;
mod dns;
mod docs_and_metrics;
mod health;
mod helpers;
mod imports;
mod orchestrate;
mod orchestrate_dns;
mod providers;
mod resources;
mod settings;
mod sync;
mod tasks;
mod templates;
mod tenants;
mod workers;
mod workspaces;
