use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::config::{CommonArgs, LogFormat, ServeArgs, Settings, WorkerArgs};
use crate::embedded_pg::EmbeddedPostgres;
use crate::jobs::runner::{self, WorkerOptions};
use crate::state::AppState;

#[derive(Debug, Parser)]
#[command(
    name = "strata",
    version,
    about = "Infrastructure provisioning with the cost loop closed"
)]
pub struct Cli {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Everything in one process: a private PostgreSQL when DATABASE_URL is unset, migrations,
    /// the API and workers.
    Up {
        #[command(flatten)]
        serve: ServeArgs,
        #[command(flatten)]
        worker: WorkerArgs,
    },
    /// The HTTP API and WebSockets (stateless; run any number).
    Serve(ServeArgs),
    /// Job consumers (run any number).
    Worker(WorkerArgs),
    /// Apply database migrations (ours and the queue's), then exit.
    Migrate,
    /// Load a backup (a `pg_dump` file made by `POST /backups`) into the empty database at
    /// DATABASE_URL, checking it against its `.sha256` file when there is one.
    Restore {
        /// The backup file.
        file: std::path::PathBuf,
    },
    /// Exit 0 if this container's role is healthy (for Docker health checks, which have no curl).
    Healthcheck {
        /// Check the API at this readiness URL.
        #[arg(
            long,
            default_value = "http://127.0.0.1:8000/api/v1/health/ready",
            conflicts_with = "worker"
        )]
        url: String,
        /// Check instead that this host's workers sent a heartbeat recently (needs DATABASE_URL).
        #[arg(long)]
        worker: bool,
    },
    /// Measure Strata on this machine.
    Bench {
        #[command(subcommand)]
        bench: crate::bench::Bench,
    },
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    init_tracing(cli.common.log_format);
    let common = cli.common;
    match cli.command {
        Command::Up { serve, worker } => up(&common, serve, worker).await,
        Command::Serve(serve) => {
            let settings = Settings::from_args(&common)?;
            let db = crate::db::connect_lazy(database_url(&common)?, common.db_max_connections)?;
            let shutdown = shutdown_on_signal();
            serve_http(AppState::new(db, settings), serve, shutdown).await
        }
        Command::Worker(worker) => {
            let settings = Settings::from_args(&common)?;
            let db = crate::db::connect_lazy(database_url(&common)?, common.db_max_connections)?;
            let shutdown = shutdown_on_signal();
            runner::run(
                AppState::new(db, settings),
                worker_options(&worker),
                shutdown,
            )
            .await;
            Ok(())
        }
        Command::Migrate => {
            let db = crate::db::connect(database_url(&common)?, 2).await?;
            crate::db::migrate(&db).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::Restore { file } => {
            crate::backups::restore(database_url(&common)?, &file).await?;
            println!("restored {}", file.display());
            Ok(())
        }
        Command::Healthcheck { url, worker } => {
            if worker {
                worker_healthcheck(&common).await
            } else {
                http_healthcheck(&url).await
            }
        }
        Command::Bench { bench } => crate::bench::run(&common, bench).await,
    }
}

fn database_url(common: &CommonArgs) -> anyhow::Result<&str> {
    common
        .database_url
        .as_deref()
        .context("DATABASE_URL is not set")
}

fn worker_options(args: &WorkerArgs) -> WorkerOptions {
    WorkerOptions {
        concurrency: args.concurrency.max(1),
        heartbeat: Duration::from_secs(args.heartbeat_seconds.max(1)),
        retention: Duration::from_secs(u64::from(args.job_retention_days) * 86_400),
    }
}

async fn up(common: &CommonArgs, serve: ServeArgs, worker: WorkerArgs) -> anyhow::Result<()> {
    let settings = Settings::from_args_or_generate(common)?;
    let (db_url, embedded) = match &common.database_url {
        Some(url) => (url.clone(), None),
        None => {
            let pg = EmbeddedPostgres::start(&common.data_dir, "strata").await?;
            (pg.url("strata"), Some(pg))
        }
    };
    let result = async {
        let db = crate::db::connect(&db_url, common.db_max_connections).await?;
        crate::db::migrate(&db).await?;
        let state = AppState::new(db, settings);
        let shutdown = shutdown_on_signal();
        let workers = tokio::spawn(runner::run(
            state.clone(),
            worker_options(&worker),
            shutdown.clone(),
        ));
        let base = format!("http://{}", serve.bind);
        let database = match &embedded {
            Some(pg) => format!(
                "private PostgreSQL on 127.0.0.1:{} (data in {})",
                pg.port(),
                common.data_dir.join("postgres").display()
            ),
            None => "DATABASE_URL".to_string(),
        };
        let served = serve_http_announced(state, serve, shutdown.clone(), move || {
            println!(
                "\nStrata is running.\n  API:      {base}/api/v1\n  Docs:     {base}/docs\n  \
                 Database: {database}\n\nSign in: create an account, then log in for a token:\n  \
                 curl -X POST {base}/api/v1/auth/signup -H 'content-type: application/json' \
                 -d '{{\"email\":\"you@example.com\",\"password\":\"change-me-please\",\"full_name\":\"You\"}}'\n  \
                 curl -X POST {base}/api/v1/auth/login -d 'username=you@example.com&password=change-me-please'\n\
                 Press Ctrl-C to stop.\n"
            );
        })
        .await;
        shutdown.cancel();
        let _ = workers.await;
        served
    }
    .await;
    if let Some(pg) = embedded
        && let Err(err) = pg.stop().await
    {
        tracing::warn!(error = %err, "could not stop the private PostgreSQL");
    }
    result
}

async fn serve_http(
    state: AppState,
    args: ServeArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let bind = args.bind;
    serve_http_announced(state, args, shutdown, move || {
        tracing::info!(%bind, "API listening");
    })
    .await
}

async fn serve_http_announced(
    state: AppState,
    args: ServeArgs,
    shutdown: CancellationToken,
    announce: impl FnOnce(),
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(args.bind)
        .await
        .with_context(|| format!("cannot listen on {}", args.bind))?;
    announce();
    crate::http::serve(
        listener,
        crate::http::router(state),
        shutdown.cancelled_owned(),
    )
    .await?;
    Ok(())
}

/// A plain HTTP/1.1 GET: healthy when the status is 2xx.
async fn http_healthcheck(url: &str) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url
        .strip_prefix("http://")
        .context("the health check URL must start with http://")?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let check = async {
        let mut stream = tokio::net::TcpStream::connect(authority).await?;
        stream
            .write_all(
                format!("GET /{path} HTTP/1.1\r\nhost: {authority}\r\nconnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await?;
        Ok::<_, std::io::Error>(head)
    };
    let head = tokio::time::timeout(Duration::from_secs(5), check)
        .await
        .context("no answer within 5 s")??;
    // "HTTP/1.1 200"
    anyhow::ensure!(
        head[9] == b'2',
        "unhealthy: {}",
        String::from_utf8_lossy(&head)
    );
    Ok(())
}

/// Healthy when a worker of this host sent a heartbeat in the last 30 seconds.
async fn worker_healthcheck(common: &CommonArgs) -> anyhow::Result<()> {
    let host = nix::unistd::gethostname()?
        .into_string()
        .map_err(|_| anyhow::anyhow!("the host name is not UTF-8"))?;
    let db = crate::db::connect(database_url(common)?, 1).await?;
    let alive: i64 = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM apalis.workers
           WHERE split_part(split_part(id, '@', 2), '/', 1) = $1
             AND last_seen > now() - interval '30 seconds'"#,
        host
    )
    .fetch_one(&db)
    .await?;
    anyhow::ensure!(
        alive > 0,
        "no worker of host {host} sent a heartbeat in 30 s"
    );
    Ok(())
}

/// A token cancelled on Ctrl-C or SIGTERM.
pub fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate => {}
        }
        tracing::info!("shutting down");
        cancel.cancel();
    });
    token
}

fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("STRATA_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| {
            EnvFilter::new("info,sqlx=warn,apalis=warn,apalis_core=warn,apalis_postgres=warn")
        });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
