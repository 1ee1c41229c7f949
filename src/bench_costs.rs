//! `strata bench costs`: generates synthetic FOCUS rows, imports them through the import job
//! (gzip and CSV reading, conversion, COPY, replacement, rollup) and times it against `psql
//! \copy` of the same file into a table of the same columns (and into an unlogged one); then
//! times the cost queries through the router (p50/p95).

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::body::Body;
use axum::http::Request;
use futures::StreamExt;
use rand::Rng;
use serde_json::json;
use tower::ServiceExt;
use uuid::Uuid;

use crate::bench::{CostsBench, percentile};
use crate::config::{CommonArgs, Settings};
use crate::jobs::JobContext;
use crate::state::AppState;

const HEADER: &[&str] = &[
    "BilledCost",
    "EffectiveCost",
    "ListCost",
    "ContractedCost",
    "BillingCurrency",
    "ChargePeriodStart",
    "ChargePeriodEnd",
    "BillingPeriodStart",
    "BillingPeriodEnd",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "BillingAccountId",
    "BillingAccountName",
    "SubAccountId",
    "ProviderName",
    "PublisherName",
    "InvoiceIssuerName",
    "ServiceName",
    "ServiceCategory",
    "RegionId",
    "ResourceId",
    "PricingQuantity",
    "PricingUnit",
    "Tags",
];

/// The reference table: the file's columns with the types the records use.
const RAW_TABLE: &str = "CREATE {kind} bench_focus_raw (
    billed_cost numeric, effective_cost numeric, list_cost numeric, contracted_cost numeric,
    billing_currency text, charge_period_start timestamptz, charge_period_end timestamptz,
    billing_period_start timestamptz, billing_period_end timestamptz, charge_category text,
    charge_class text, charge_description text, billing_account_id text,
    billing_account_name text, sub_account_id text, provider_name text, publisher_name text,
    invoice_issuer_name text, service_name text,
    service_category text, region_id text, resource_id text, pricing_quantity numeric,
    pricing_unit text, tags jsonb)";

pub async fn run(common: &CommonArgs, url: &str, args: &CostsBench) -> anyhow::Result<()> {
    let db = crate::db::connect(url, 8).await?;
    crate::db::migrate(&db).await?;
    let tenant_id = Uuid::new_v4();
    sqlx::query!(
        "INSERT INTO tenants (id, name) VALUES ($1, 'bench')",
        tenant_id
    )
    .execute(&db)
    .await?;

    let file = std::env::temp_dir().join(format!("strata-bench-focus-{}.csv", Uuid::new_v4()));
    let started = Instant::now();
    let bytes = generate(&file, args.rows, args.days)?;
    println!(
        "generated {} rows over {} days ({:.1} MiB) in {:.1} s",
        args.rows,
        args.days,
        bytes as f64 / 1048576.0,
        started.elapsed().as_secs_f64()
    );

    // The references: psql's \copy of the same file into a plain table (what \copy is used
    // for), and into an unlogged one (no WAL: the speed of parsing alone).
    let reference = psql_copy(&db, url, &file, "TABLE").await?;
    let unlogged = psql_copy(&db, url, &file, "UNLOGGED TABLE").await?;

    // Strata: the file as an upload, then the import job.
    let import_id = Uuid::new_v4();
    sqlx::query!(
        "INSERT INTO billing_imports (id, tenant_id, source) VALUES ($1, $2, 'upload')",
        import_id,
        tenant_id
    )
    .execute(&db)
    .await?;
    {
        use std::io::Read;
        let mut reader = std::fs::File::open(&file)?;
        let mut piece = vec![0u8; 1 << 20];
        let mut seq = 0i32;
        let mut conn = db.acquire().await?;
        crate::billing::create_upload(&mut conn, import_id).await?;
        loop {
            let n = reader.read(&mut piece)?;
            if n == 0 {
                break;
            }
            crate::billing::store_chunk(&mut conn, import_id, seq, &piece[..n]).await?;
            seq += 1;
        }
    }
    let state = AppState::new(db.clone(), settings(common)?);
    let ctx = JobContext {
        state: state.clone(),
        task_id: Uuid::new_v4(),
        tenant_id,
        params: json!({ "import_id": import_id }),
        attempt: 1,
        worker: "bench".into(),
        cancel: tokio_util::sync::CancellationToken::new(),
    };
    let started = Instant::now();
    let result = crate::billing::import::run(&ctx)
        .await
        .map_err(|err| anyhow::anyhow!("the import failed: {err}"))?;
    let strata = started.elapsed();
    let _ = std::fs::remove_file(&file);
    let rate = |d: Duration| args.rows as f64 / d.as_secs_f64();
    println!(
        "import: strata {:.1} s ({:.0} rows/s, {} loaded) vs psql \\copy {:.1} s ({:.0} rows/s): {:.2}x of \\copy's speed",
        strata.as_secs_f64(),
        rate(strata),
        result["rows_loaded"],
        reference.as_secs_f64(),
        rate(reference),
        reference.as_secs_f64() / strata.as_secs_f64()
    );
    println!(
        "        (psql \\copy into an unlogged table {:.1} s ({:.0} rows/s): {:.2}x of that)",
        unlogged.as_secs_f64(),
        rate(unlogged),
        unlogged.as_secs_f64() / strata.as_secs_f64()
    );

    if args.upload_mib > 0 {
        let per_row = bytes as f64 / args.rows.max(1) as f64;
        let rows = ((args.upload_mib << 20) as f64 / per_row).ceil() as usize;
        http_upload(common, url, tenant_id, rows, args.days).await?;
    }

    // The queries, through the router.
    let router = crate::http::router(state);
    let end = chrono::Utc::now().date_naive();
    let day = |days: u64| end - chrono::Days::new(days - 1);
    let queries = [
        format!(
            "/api/v1/billing/costs?start_date={}&end_date={end}&group_by=provider",
            day(30)
        ),
        format!(
            "/api/v1/billing/costs?start_date={}&end_date={end}&group_by=service",
            day(90)
        ),
        format!(
            "/api/v1/billing/costs?start_date={}&end_date={end}&group_by=day",
            day(90)
        ),
        "/api/v1/billing/summary".to_string(),
        "/api/v1/billing?limit=100".to_string(),
        "/api/v1/costs?limit=100".to_string(),
        format!(
            "/api/v1/costs?start_date={}&end_date={end}&group_by=service&limit=10",
            day(90)
        ),
        format!(
            "/api/v1/costs?start_date={}&end_date={end}&granularity=monthly&group_by=location&limit=10",
            day(90)
        ),
        "/api/v1/costs/summary?days=90".to_string(),
        "/api/v1/costs/by-date?days=90".to_string(),
        "/api/v1/dashboard/overview?days=90".to_string(),
        "/api/v1/dashboard/cost-trend?days=90&granularity=weekly".to_string(),
        "/api/v1/dashboard/cost-by-workspace?days=90".to_string(),
        "/api/v1/dashboard/cost-by-sku?days=90".to_string(),
        "/api/v1/dashboard/cost-by-user?days=90".to_string(),
        "/api/v1/dashboard/cost-by-job?days=90".to_string(),
    ];
    for query in &queries {
        let mut times = Vec::with_capacity(args.queries);
        for _ in 0..args.queries {
            let request = Request::get(query.as_str())
                .header("x-api-key", OPERATOR_KEY)
                .header("x-tenant-id", tenant_id.to_string())
                .body(Body::empty())?;
            let started = Instant::now();
            let response = router.clone().oneshot(request).await?;
            anyhow::ensure!(
                response.status().is_success(),
                "{query}: {}",
                response.status()
            );
            let _ = axum::body::to_bytes(response.into_body(), usize::MAX).await?;
            times.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        println!(
            "{query}: p50 {:.1} ms, p95 {:.1} ms",
            percentile(&times, 50.0),
            percentile(&times, 95.0)
        );
    }
    Ok(())
}

const OPERATOR_KEY: &str = "bench-operator-key";

/// How long `psql \\copy` of the file into a new table of its columns (`kind`: `TABLE` or
/// `UNLOGGED TABLE`) takes: the reference an import is measured against.
async fn psql_copy(
    db: &sqlx::PgPool,
    url: &str,
    file: &std::path::Path,
    kind: &str,
) -> anyhow::Result<Duration> {
    sqlx::raw_sql(sqlx::AssertSqlSafe(RAW_TABLE.replace("{kind}", kind)))
        .execute(db)
        .await?;
    let started = Instant::now();
    let psql = tokio::process::Command::new("psql")
        .arg(url)
        .args(["-v", "ON_ERROR_STOP=1", "-q", "-c"])
        .arg(format!(
            "\\copy bench_focus_raw FROM '{}' WITH (FORMAT csv, HEADER, NULL 'NULL')",
            file.display()
        ))
        .status()
        .await
        .context("psql must be on PATH")?;
    anyhow::ensure!(psql.success(), "psql \\copy failed");
    let elapsed = started.elapsed();
    sqlx::raw_sql("DROP TABLE bench_focus_raw")
        .execute(db)
        .await?;
    Ok(elapsed)
}

/// A process's resident set now and at its peak, in bytes (Linux's /proc).
fn memory_of(pid: u32) -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> anyhow::Result<u64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .with_context(|| format!("no {name} in /proc/{pid}/status"))?;
        let kib: u64 = line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()?;
        Ok(kib * 1024)
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

/// Forgets a process's peak resident set (so VmHWM measures from now), where Linux lets us.
fn reset_peak(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// Uploads a generated file of `rows` rows through `POST /billing/imports` to a `strata serve`
/// process, streamed as a client would send it, and waits for a `strata worker` to import it:
/// the upload's speed and the server's peak memory growth while it streams, and the import
/// after it against `psql \copy` of the same file.
async fn http_upload(
    common: &CommonArgs,
    url: &str,
    tenant_id: Uuid,
    rows: usize,
    days: u32,
) -> anyhow::Result<()> {
    let file = std::env::temp_dir().join(format!("strata-bench-upload-{}.csv", Uuid::new_v4()));
    let bytes = generate(&file, rows, days)?;
    let reference = {
        let db = crate::db::connect(url, 2).await?;
        psql_copy(&db, url, &file, "TABLE").await?
    };

    let master_key = crate::config::generate_secret();
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut server = tokio::process::Command::new(std::env::current_exe()?)
        .arg("serve")
        .env("DATABASE_URL", url)
        .env("STRATA_MASTER_KEY", &master_key)
        .env("JWT_SECRET", crate::config::generate_secret())
        .env("API_SECRET_KEY", OPERATOR_KEY)
        .env("STRATA_BIND", format!("127.0.0.1:{port}"))
        .env("STRATA_IMPORT_MAX_BYTES", (bytes + (1 << 30)).to_string())
        .env("STRATA_LOG", "error")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start strata serve")?;
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    crate::bench::wait_for(Duration::from_secs(30), "strata serve", || {
        let client = client.clone();
        let health = format!("{base}/api/v1/health");
        async move {
            Ok(client
                .get(health)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success()))
        }
    })
    .await?;
    let pid = server.id().context("strata serve exited")?;
    let (idle, _) = memory_of(pid)?;
    let peak_was_reset = reset_peak(pid);

    let boundary = "strata-bench-boundary";
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"bench.csv\"\r\nContent-Type: text/csv\r\n\r\n"
    );
    let tail = format!("\r\n--{boundary}--\r\n");
    let body = futures::stream::once(async move { Ok(axum::body::Bytes::from(head)) })
        .chain(tokio_util::io::ReaderStream::with_capacity(
            tokio::fs::File::open(&file).await?,
            1 << 20,
        ))
        .chain(futures::stream::once(async move {
            Ok(axum::body::Bytes::from(tail))
        }));
    let started = Instant::now();
    let response = client
        .post(format!("{base}/api/v1/billing/imports"))
        .header("x-api-key", OPERATOR_KEY)
        .header("x-tenant-id", tenant_id.to_string())
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await?;
    let upload = started.elapsed();
    anyhow::ensure!(response.status() == 202, "upload: {}", response.status());
    let accepted: serde_json::Value = response.json().await?;
    let (_, peak) = memory_of(pid)?;

    let mut worker = crate::bench::spawn_worker(url, 2, &master_key, &common.terraform)?;
    let task = format!(
        "{base}/api/v1/tasks/{}",
        accepted["task_id"].as_str().unwrap_or_default()
    );
    let started = Instant::now();
    let mut worker_peak = 0;
    let status = loop {
        if let Some(pid) = worker.id() {
            worker_peak = worker_peak.max(memory_of(pid).map(|(_, hwm)| hwm).unwrap_or(0));
        }
        let body: serde_json::Value = client
            .get(&task)
            .header("x-api-key", OPERATOR_KEY)
            .header("x-tenant-id", tenant_id.to_string())
            .send()
            .await?
            .json()
            .await?;
        let status = body["status"].as_str().unwrap_or_default().to_string();
        if !matches!(status.as_str(), "queued" | "running") {
            break status;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(3600),
            "the uploaded import took over an hour"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let import = started.elapsed();
    anyhow::ensure!(status == "succeeded", "the uploaded import {status}");
    let _ = worker.kill().await;
    let _ = server.kill().await;
    let _ = std::fs::remove_file(&file);
    let mib = bytes as f64 / 1048576.0;
    println!(
        "http upload: {mib:.0} MiB ({rows} rows) in {:.1} s ({:.0} MiB/s); strata serve's peak RSS grew {:.1} MiB over its idle {:.1} MiB{}",
        upload.as_secs_f64(),
        mib / upload.as_secs_f64(),
        peak.saturating_sub(idle) as f64 / 1048576.0,
        idle as f64 / 1048576.0,
        if peak_was_reset {
            ""
        } else {
            " (peak since start: /proc/PID/clear_refs was not writable)"
        }
    );
    println!(
        "        then the worker's import {:.1} s (worker peak RSS {:.0} MiB): {:.2}x of psql \\copy's {:.1} s for the same file; upload + import {:.2}x",
        import.as_secs_f64(),
        worker_peak as f64 / 1048576.0,
        reference.as_secs_f64() / import.as_secs_f64(),
        reference.as_secs_f64(),
        reference.as_secs_f64() / (upload + import).as_secs_f64()
    );
    Ok(())
}

fn settings(common: &CommonArgs) -> anyhow::Result<Settings> {
    let mut settings = Settings::ephemeral(common)?;
    settings.api_secret_key = Some(OPERATOR_KEY.into());
    Ok(settings)
}

/// Writes `rows` FOCUS rows spread over the `days` up to today; returns the file's size.
fn generate(path: &std::path::Path, rows: usize, days: u32) -> anyhow::Result<u64> {
    let providers = [
        (
            "AWS",
            ["Amazon EC2", "Amazon S3", "Amazon RDS", "AWS Lambda"],
        ),
        (
            "Microsoft",
            ["Virtual Machines", "Storage", "SQL Database", "Functions"],
        ),
        (
            "Google Cloud",
            ["Compute Engine", "Cloud Storage", "BigQuery", "Cloud Run"],
        ),
    ];
    let categories = ["Compute", "Storage", "Databases", "Compute"];
    let regions = [
        "us-east-1",
        "eu-west-1",
        "westeurope",
        "europe-west1",
        "asia-east1",
    ];
    let start = chrono::Utc::now().date_naive() - chrono::Days::new(u64::from(days.max(1)) - 1);
    let mut rng = rand::rng();
    let file = std::fs::File::create(path)?;
    let mut out = csv::Writer::from_writer(std::io::BufWriter::with_capacity(1 << 20, file));
    out.write_record(HEADER)?;
    for i in 0..rows {
        let (provider, services) = providers[i % providers.len()];
        let s = rng.random_range(0..services.len());
        let day = start + chrono::Days::new(rng.random_range(0..u64::from(days.max(1))));
        let hour = rng.random_range(0..24);
        let charge_start = day.and_hms_opt(hour, 0, 0).unwrap_or_default();
        let month = chrono::Datelike::with_day(&day, 1).unwrap_or(day);
        let next_month = month + chrono::Months::new(1);
        let cost = format!("{:.10}", rng.random_range(0.0..5.0f64));
        out.write_record([
            cost.as_str(),
            cost.as_str(),
            cost.as_str(),
            cost.as_str(),
            "USD",
            &charge_start.format("%Y-%m-%d %H:%M:%S").to_string(),
            &(charge_start + chrono::Duration::hours(1))
                .format("%Y-%m-%d %H:%M:%S")
                .to_string(),
            &month.format("%Y-%m-%d 00:00:00").to_string(),
            &next_month.format("%Y-%m-%d 00:00:00").to_string(),
            "Usage",
            "NULL",
            services[s],
            &format!("acct-{}", i % 3),
            &format!("Account {}", i % 3),
            &format!("sub-{}", i % 40),
            provider,
            provider,
            provider,
            services[s],
            categories[s],
            regions[i % regions.len()],
            &format!("res-{}", rng.random_range(0..20_000)),
            "1",
            "Hours",
            if i % 4 == 0 {
                r#"{"team": "web"}"#
            } else {
                "NULL"
            },
        ])?;
    }
    let mut inner = out.into_inner().map_err(|err| anyhow::anyhow!("{err}"))?;
    inner.flush()?;
    Ok(std::fs::metadata(path)?.len())
}
