//! `strata bench provision`: how much Strata adds to Terraform, and how fast log lines reach a
//! WebSocket client.
//!
//! Through the API: `POST /resources` (a sandbox VM with no boot time) on the router, a worker
//! process runs it, and a WebSocket client follows the log to `end`. By hand: the same rendered
//! configuration, `terraform init && terraform apply -auto-approve`, and also with the steps a
//! run takes (`init`, `plan -out`, `apply` of the plan). Log latency: for each line, the time
//! the client received it minus the time Terraform wrote it (its `@timestamp`).

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::body::Body;
use futures::StreamExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use uuid::Uuid;

use crate::bench::{ProvisionBench, percentile, spawn_worker, stop_workers, wait_for};
use crate::config::{CommonArgs, Settings};
use crate::resources::spec::{Kind, validate};
use crate::state::AppState;
use crate::terraform::render;

pub async fn run(common: &CommonArgs, url: &str, args: &ProvisionBench) -> anyhow::Result<()> {
    let db = crate::db::connect(url, 8).await?;
    crate::db::migrate(&db).await?;
    let master_key = crate::config::generate_secret();
    let mut settings = Settings::ephemeral(common)?;
    // The workers started below open credentials with the same key.
    settings.master_key = crate::config::parse_master_key(&master_key)?;
    let state = AppState::new(db.clone(), settings);
    let router = crate::http::router(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let served = router.clone();
    tokio::spawn(crate::http::serve(listener, served, std::future::pending()));

    // The worker runs as it is deployed: its own process.
    let worker = spawn_worker(url, 4, &master_key, &common.terraform)?;
    wait_for(
        Duration::from_secs(30),
        "the worker to register",
        || async {
            let alive = sqlx::query_scalar!(
                r#"SELECT count(*) AS "n!" FROM apalis.workers
               WHERE worker_type = $1 AND last_seen > now() - interval '30 seconds'"#,
                crate::jobs::PROVISIONING_QUEUE
            )
            .fetch_one(&db)
            .await?;
            Ok(alive > 0)
        },
    )
    .await?;

    let (user, tenant, provider) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    sqlx::query!(
        "INSERT INTO tenants (id, name) VALUES ($1, 'bench')",
        tenant
    )
    .execute(&db)
    .await?;
    sqlx::query!(
        "INSERT INTO users (id, email, password_hash, full_name) VALUES ($1, 'bench@strata.local', '-', 'Bench')",
        user
    )
    .execute(&db)
    .await?;
    sqlx::query!(
        "INSERT INTO tenant_members (tenant_id, user_id, role) VALUES ($1, $2, 'admin')",
        tenant,
        user
    )
    .execute(&db)
    .await?;
    sqlx::query!(
        "INSERT INTO providers (id, tenant_id, provider_type, display_name) VALUES ($1, $2, 'sandbox', 'bench')",
        provider,
        tenant
    )
    .execute(&db)
    .await?;
    let token = state.jwt.issue(user).map_err(|e| anyhow::anyhow!("{e}"))?;

    let mut through_api = Vec::new();
    let mut latencies_ms = Vec::new();
    let (mut by_hand, mut by_hand_planned) = (Vec::new(), Vec::new());
    // Interleaved, so a machine that slows down or speeds up meanwhile weighs on both alike.
    for run in 0..args.runs {
        let started = Instant::now();
        let posted = chrono::Utc::now();
        let request = axum::http::Request::post("/api/v1/resources")
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(Body::from(
                json!({"provider_id": provider, "kind": "vm", "name": format!("bench-{run}"), "spec": {"boot_seconds": 0}})
                    .to_string(),
            ))?;
        let response = router.clone().oneshot(request).await?;
        if response.status() != axum::http::StatusCode::ACCEPTED {
            bail!("POST /resources answered {}", response.status());
        }
        let since_post = |at: chrono::DateTime<chrono::Utc>| {
            (at - posted).num_microseconds().unwrap_or(0) as f64 / 1000.0
        };
        if args.timeline {
            eprintln!(
                "run {run} +{:.1} ms: POST answered",
                since_post(chrono::Utc::now())
            );
        }
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await?
            .to_bytes();
        let accepted: Value = serde_json::from_slice(&body)?;
        let deployment = accepted["deployment_id"]
            .as_str()
            .context("no deployment_id")?;
        let (mut socket, _) = tokio_tungstenite::connect_async(format!(
            "ws://{address}/ws/deployments/{deployment}/logs?token={token}"
        ))
        .await?;
        loop {
            let message = tokio::time::timeout(Duration::from_secs(120), socket.next())
                .await
                .context("the log went silent")?
                .context("the log closed before its end")??;
            let received = chrono::Utc::now();
            let tokio_tungstenite::tungstenite::Message::Text(text) = message else {
                continue;
            };
            let line: Value = serde_json::from_str(&text)?;
            if line["type"] == "end" {
                if args.timeline {
                    eprintln!("run {run} +{:.1} ms: end received", since_post(received));
                }
                if line["status"] != "succeeded" {
                    bail!("run {run} ended {}", line["status"]);
                }
                break;
            }
            if let Some(ts) = line["ts"]
                .as_str()
                .and_then(|t| t.parse::<chrono::DateTime<chrono::Utc>>().ok())
            {
                let ms = (received - ts).num_microseconds().unwrap_or(0) as f64 / 1000.0;
                if args.timeline {
                    eprintln!(
                        "run {run} +{:.1} ms: {} {} (received {ms:.1} ms later)",
                        since_post(ts),
                        line["type"],
                        line["message"]
                    );
                }
                latencies_ms.push(ms);
            }
        }
        through_api.push(started.elapsed().as_secs_f64());
        by_hand.push(apply_by_hand(&state, run, false).await?);
        by_hand_planned.push(apply_by_hand(&state, run, true).await?);
    }

    stop_workers(vec![worker]).await;
    db.close().await;

    let median = |values: &mut Vec<f64>| {
        values.sort_by(f64::total_cmp);
        percentile(values, 50.0)
    };
    let (api, hand, planned) = (
        median(&mut through_api),
        median(&mut by_hand),
        median(&mut by_hand_planned),
    );
    latencies_ms.sort_by(f64::total_cmp);
    println!(
        "strata bench provision: {} runs of a sandbox vm (boot time 0)",
        args.runs
    );
    println!(
        "  through the API (POST to the log's end): median {:.0} ms",
        api * 1000.0
    );
    println!(
        "  by hand, terraform init && terraform apply: median {:.0} ms; ratio {:.2}x, overhead {:.0} ms per run",
        hand * 1000.0,
        api / hand,
        (api - hand) * 1000.0
    );
    println!(
        "  by hand, the same steps as a run (init && plan -out && apply of the plan): median {:.0} ms; ratio {:.2}x, overhead {:.0} ms per run",
        planned * 1000.0,
        api / planned,
        (api - planned) * 1000.0
    );
    println!(
        "  log latency (Terraform writes a line -> WebSocket client has it), {} lines: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        latencies_ms.len(),
        percentile(&latencies_ms, 50.0),
        percentile(&latencies_ms, 99.0),
        latencies_ms.last().copied().unwrap_or(f64::NAN)
    );
    Ok(())
}

/// The configuration a sandbox VM gets, applied by hand (with a separate saved plan when
/// `planned`); returns the seconds it took.
async fn apply_by_hand(state: &AppState, run: usize, planned: bool) -> anyhow::Result<f64> {
    let validated = validate("sandbox", Kind::Vm, &json!({"boot_seconds": 0}), None)?;
    let main_tf = render::render("sandbox", "vm", &validated.structure)?;
    let desired = validated.desired(&json!({}), "running");
    let variables =
        crate::deployments::job::variables(Uuid::new_v4(), &format!("hand-{run}"), None, &desired);
    let dir = std::env::temp_dir().join(format!("strata-bench-hand-{}", Uuid::new_v4().simple()));
    render::write_workdir(&dir, &main_tf, &variables, None)?;
    let env = [
        ("PATH", std::env::var("PATH").unwrap_or_default()),
        ("HOME", dir.display().to_string()),
        ("CHECKPOINT_DISABLE", "1".to_string()),
        ("TF_IN_AUTOMATION", "1".to_string()),
        (
            "TF_CLI_CONFIG_FILE",
            dir.join(render::CLI_CONFIG).display().to_string(),
        ),
        (
            "PG_CONN_STR",
            crate::deployments::job::backend_connection_string(&state.db.connect_options()),
        ),
        // A fresh schema: the default workspace of an empty state, as a first apply by hand.
        ("PG_SCHEMA_NAME", format!("bench_by_hand_{run}_{planned}")),
    ];
    let steps: &[&[&str]] = if planned {
        &[
            &["init", "-input=false", "-no-color"],
            &["plan", "-input=false", "-no-color", "-out=plan.tfplan"],
            &["apply", "-input=false", "-no-color", "plan.tfplan"],
        ]
    } else {
        &[
            &["init", "-input=false", "-no-color"],
            &["apply", "-auto-approve", "-input=false", "-no-color"],
        ]
    };
    let started = Instant::now();
    for args in steps {
        let status = tokio::process::Command::new(state.terraform.program())
            .args(*args)
            .current_dir(&dir)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::null())
            .status()
            .await?;
        if !status.success() {
            bail!("terraform {} failed by hand", args[0]);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(elapsed)
}
