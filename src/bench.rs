//! `strata bench queue`: enqueue no-op tasks through the public task path ([`tasks::enqueue`])
//! and measure throughput and enqueue-to-start latency with real worker processes.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::config::CommonArgs;
use crate::jobs::{JobKind, QUEUES};
use crate::tasks::{self, NewTask};

#[derive(Debug, Subcommand)]
pub enum Bench {
    /// Queue throughput and enqueue-to-start latency.
    Queue(QueueBench),
    /// A sandbox VM created through the API versus the same configuration run by hand, and
    /// the latency of log lines from Terraform to a WebSocket client.
    Provision(ProvisionBench),
    /// A billing import of synthetic FOCUS rows against `psql \copy` of the same file, and the
    /// cost queries over them.
    Costs(CostsBench),
}

#[derive(Debug, Clone, Args)]
pub struct CostsBench {
    /// Synthetic FOCUS rows.
    #[arg(long, default_value_t = 1_000_000)]
    pub rows: usize,
    /// Days the rows spread over.
    #[arg(long, default_value_t = 90)]
    pub days: u32,
    /// Times each query runs.
    #[arg(long, default_value_t = 50)]
    pub queries: usize,
    /// Size of the file also uploaded through the HTTP route to a `strata serve` process (and
    /// imported by a `strata worker`), in MiB; 0 skips it.
    #[arg(long, default_value_t = 1024)]
    pub upload_mib: u64,
}

#[derive(Debug, Clone, Args)]
pub struct ProvisionBench {
    /// Resources created through the API (and configurations applied by hand).
    #[arg(long, default_value_t = 10)]
    pub runs: usize,
    /// Print each run's log lines with their time since the POST, to see where time goes.
    #[arg(long)]
    pub timeline: bool,
}

#[derive(Debug, Clone, Args)]
pub struct QueueBench {
    /// No-op tasks for the throughput run.
    #[arg(long, default_value_t = 10_000)]
    pub tasks: usize,
    /// Tasks per enqueue transaction in the throughput run.
    #[arg(long, default_value_t = 500)]
    pub batch: usize,
    /// Tasks enqueued one at a time, 10 ms apart, for the latency run.
    #[arg(long, default_value_t = 300)]
    pub latency_tasks: usize,
    /// Worker processes.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Concurrency of each worker process.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
}

pub async fn run(common: &CommonArgs, bench: Bench) -> anyhow::Result<()> {
    match bench {
        Bench::Queue(args) => queue(common, args).await,
        Bench::Costs(args) => {
            in_scratch_database(common, |url| async move {
                crate::bench_costs::run(common, &url, &args).await
            })
            .await
        }
        Bench::Provision(args) => {
            in_scratch_database(common, |url| async move {
                crate::bench_provision::run(common, &url, &args).await
            })
            .await
        }
    }
}

/// Percentile (0–100) of sorted values.
pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p / 100.0 * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Runs `bench` against a scratch database created on the `DATABASE_URL` server and dropped
/// afterwards.
async fn in_scratch_database<F, Fut>(common: &CommonArgs, bench: F) -> anyhow::Result<()>
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let server_url = common.database_url.as_deref().context(
        "set DATABASE_URL to the server to benchmark on (a scratch database is created there)",
    )?;
    let scratch = format!("strata_bench_{}", Uuid::new_v4().simple());
    let admin = crate::db::connect(server_url, 2).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {scratch}")))
        .execute(&admin)
        .await?;
    let result = bench(replace_database(server_url, &scratch)?).await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {scratch} WITH (FORCE)"
    )))
    .execute(&admin)
    .await?;
    result
}

async fn queue(common: &CommonArgs, args: QueueBench) -> anyhow::Result<()> {
    in_scratch_database(
        common,
        |url| async move { run_queue_bench(&url, &args).await },
    )
    .await
}

/// The same server URL with another database name.
pub fn replace_database(url: &str, database: &str) -> anyhow::Result<String> {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let scheme_end = base.find("://").context("DATABASE_URL has no scheme")? + 3;
    let host_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{database}", &base[..host_end]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    Ok(out)
}

/// A `strata worker` process on `url`, as deployed.
pub(crate) fn spawn_worker(
    url: &str,
    concurrency: usize,
    master_key: &str,
    terraform: &str,
) -> anyhow::Result<tokio::process::Child> {
    tokio::process::Command::new(std::env::current_exe()?)
        .arg("worker")
        .arg("--concurrency")
        .arg(concurrency.to_string())
        .env("DATABASE_URL", url)
        .env("STRATA_MASTER_KEY", master_key)
        .env("JWT_SECRET", crate::config::generate_secret())
        .env("STRATA_TERRAFORM", terraform)
        .env("STRATA_LOG", "warn")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start a worker process")
}

/// Stops worker processes as an orchestrator would: SIGTERM, then a wait.
pub(crate) async fn stop_workers(workers: Vec<tokio::process::Child>) {
    for worker in &workers {
        if let Some(pid) = worker.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }
    for mut worker in workers {
        let _ = tokio::time::timeout(Duration::from_secs(10), worker.wait()).await;
    }
}

async fn run_queue_bench(url: &str, args: &QueueBench) -> anyhow::Result<()> {
    let db = crate::db::connect(url, 8).await?;
    crate::db::migrate(&db).await?;
    let tenant_id = Uuid::new_v4();
    sqlx::query!(
        "INSERT INTO tenants (id, name) VALUES ($1, 'bench')",
        tenant_id
    )
    .execute(&db)
    .await?;

    let master_key = crate::config::generate_secret();
    let workers = (0..args.workers)
        .map(|_| spawn_worker(url, args.concurrency, &master_key, "terraform"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let expected = (args.workers * QUEUES.len()) as i64;
    wait_for(Duration::from_secs(30), "workers to register", || async {
        let alive = sqlx::query_scalar!(
            r#"SELECT count(*) AS "n!" FROM apalis.workers WHERE last_seen > now() - interval '30 seconds'"#
        )
        .fetch_one(&db)
        .await?;
        Ok(alive >= expected)
    })
    .await?;

    // Latency: one task at a time, so no task waits behind another.
    for _ in 0..args.latency_tasks {
        enqueue_noops(&db, tenant_id, 1, "latency").await?;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    wait_for_drain(&db).await?;
    let mut latencies: Vec<f64> = sqlx::query_scalar!(
        r#"SELECT extract(epoch FROM started_at - created_at)::float8 * 1000 AS "ms!"
           FROM tasks WHERE params->>'run' = 'latency'"#
    )
    .fetch_all(&db)
    .await?;
    latencies.sort_by(f64::total_cmp);

    // Throughput: many tasks, enqueued in batches, drained by the workers.
    let started = Instant::now();
    let mut enqueued = 0;
    while enqueued < args.tasks {
        let n = args.batch.max(1).min(args.tasks - enqueued);
        enqueue_noops(&db, tenant_id, n, "throughput").await?;
        enqueued += n;
    }
    let enqueue_time = started.elapsed();
    wait_for_drain(&db).await?;
    let total_time = started.elapsed();
    let failed =
        sqlx::query_scalar!(r#"SELECT count(*) AS "n!" FROM tasks WHERE status <> 'succeeded'"#)
            .fetch_one(&db)
            .await?;

    stop_workers(workers).await;
    db.close().await;

    println!(
        "strata bench queue: {} worker processes × concurrency {}",
        args.workers, args.concurrency
    );
    println!(
        "  latency (enqueue → start), {} tasks one at a time: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        latencies.len(),
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        latencies.last().copied().unwrap_or(f64::NAN)
    );
    println!(
        "  throughput, {} no-op tasks in batches of {}: enqueued at {:.0}/s, all finished in {:.2} s = {:.0} tasks/s",
        args.tasks,
        args.batch,
        args.tasks as f64 / enqueue_time.as_secs_f64(),
        total_time.as_secs_f64(),
        args.tasks as f64 / total_time.as_secs_f64()
    );
    if failed > 0 {
        bail!("{failed} tasks did not succeed");
    }
    Ok(())
}

async fn enqueue_noops(db: &PgPool, tenant_id: Uuid, n: usize, run: &str) -> anyhow::Result<()> {
    let mut tx = db.begin().await?;
    let batch = (0..n)
        .map(|_| NewTask {
            tenant_id,
            kind: JobKind::DiagnosticNoop,
            params: json!({ "run": run }),
            created_by: None,
        })
        .collect();
    tasks::enqueue(&mut tx, batch).await?;
    tx.commit().await?;
    Ok(())
}

async fn wait_for_drain(db: &PgPool) -> anyhow::Result<()> {
    wait_for(Duration::from_secs(600), "tasks to finish", || async {
        let open = sqlx::query_scalar!(
            r#"SELECT count(*) AS "n!" FROM tasks WHERE status IN ('queued', 'running')"#
        )
        .fetch_one(db)
        .await?;
        Ok(open == 0)
    })
    .await
}

pub(crate) async fn wait_for<F, Fut>(limit: Duration, what: &str, mut done: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + limit;
    while !done().await? {
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_are_replaced_keeping_host_and_options() {
        assert_eq!(
            replace_database("postgres://u@h:5432/postgres?sslmode=disable", "x").unwrap(),
            "postgres://u@h:5432/x?sslmode=disable"
        );
        assert_eq!(
            replace_database("postgres://h", "x").unwrap(),
            "postgres://h/x"
        );
    }

    #[test]
    fn percentiles_pick_ranked_values() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 51.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert!(percentile(&[], 50.0).is_nan());
    }
}
