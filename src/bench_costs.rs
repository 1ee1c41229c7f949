//! `strata bench costs`: generates synthetic FOCUS rows, imports them through the import job
//! (gzip and CSV reading, conversion, COPY, replacement, rollup) and times it against `psql
//! \copy` of the same file into a table of the same columns (and into an unlogged one); then
//! times the cost queries through the router (p50/p95).

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::body::Body;
use axum::http::Request;
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
    "BillingCurrency",
    "ChargePeriodStart",
    "ChargePeriodEnd",
    "BillingPeriodStart",
    "BillingPeriodEnd",
    "ChargeCategory",
    "BillingAccountId",
    "SubAccountId",
    "ProviderName",
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
    billed_cost numeric, effective_cost numeric, list_cost numeric, billing_currency text,
    charge_period_start timestamptz, charge_period_end timestamptz,
    billing_period_start timestamptz, billing_period_end timestamptz, charge_category text,
    billing_account_id text, sub_account_id text, provider_name text, service_name text,
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
    let mut references = Vec::new();
    for kind in ["TABLE", "UNLOGGED TABLE"] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(RAW_TABLE.replace("{kind}", kind)))
            .execute(&db)
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
        references.push(started.elapsed());
        sqlx::raw_sql("DROP TABLE bench_focus_raw")
            .execute(&db)
            .await?;
    }
    let (reference, unlogged) = (references[0], references[1]);

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
        loop {
            let n = reader.read(&mut piece)?;
            if n == 0 {
                break;
            }
            sqlx::query!(
                "INSERT INTO billing_import_chunks (import_id, seq, data) VALUES ($1, $2, $3)",
                import_id,
                seq,
                &piece[..n]
            )
            .execute(&db)
            .await?;
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

fn settings(common: &CommonArgs) -> anyhow::Result<Settings> {
    Ok(Settings {
        master_key: crate::config::parse_master_key(&crate::config::generate_secret())?,
        jwt_secret: crate::config::generate_secret().into_bytes(),
        jwt_ttl: Duration::from_secs(3600),
        api_secret_key: Some(OPERATOR_KEY.into()),
        terraform: common.terraform.clone(),
        terraform_plugin_dir: None,
        terraform_gogc: common.terraform_gogc,
        terraform_memory_limit: common.terraform_memory_limit.clone(),
        data_dir: std::env::temp_dir(),
        backup_dir: std::env::temp_dir().join("strata-bench-backups"),
        cloudflare_api_url: common.cloudflare_api_url.clone(),
        import_allow_private_urls: false,
    })
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
            "USD",
            &charge_start.format("%Y-%m-%d %H:%M:%S").to_string(),
            &(charge_start + chrono::Duration::hours(1))
                .format("%Y-%m-%d %H:%M:%S")
                .to_string(),
            &month.format("%Y-%m-%d 00:00:00").to_string(),
            &next_month.format("%Y-%m-%d 00:00:00").to_string(),
            "Usage",
            &format!("acct-{}", i % 3),
            &format!("sub-{}", i % 40),
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
