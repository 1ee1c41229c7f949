//! Billing imports and the billing cost queries, checked against totals computed here from the
//! same files (tests/data, see its PROVENANCE.md: the FOCUS sample is CC-BY-4.0, from
//! FinOps-Open-Cost-and-Usage-Spec/FOCUS-Sample-Data).

use std::collections::BTreeMap;
use std::io::Write;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};

use crate::helpers::{As, TestApp};

pub fn data_file(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(path)
}

pub fn focus_sample() -> Vec<u8> {
    std::fs::read(data_file("focus/focus_sample.csv")).unwrap()
}

/// Uploads `file` as a multipart form with `fields`; returns the answer.
pub async fn upload(
    app: &TestApp,
    who: &As,
    file: &[u8],
    fields: &[(&str, &str)],
) -> crate::helpers::Response {
    upload_named(app, who, file, "export.csv", fields).await
}

/// The form [`upload`] sends, for a file of this name.
pub fn multipart_form(file: &[u8], filename: &str, fields: &[(&str, &str)]) -> (String, Vec<u8>) {
    let boundary = "strata-test-boundary-7d1e";
    let mut body = Vec::new();
    for (name, value) in fields {
        write!(
            body,
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
        )
        .unwrap();
    }
    write!(
        body,
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\nContent-Type: text/csv\r\n\r\n"
    )
    .unwrap();
    body.extend_from_slice(file);
    write!(body, "\r\n--{boundary}--\r\n").unwrap();
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// Uploads `file` under `filename` (its key for replacement) with `fields`; returns the answer.
pub async fn upload_named(
    app: &TestApp,
    who: &As,
    file: &[u8],
    filename: &str,
    fields: &[(&str, &str)],
) -> crate::helpers::Response {
    let (content_type, body) = multipart_form(file, filename, fields);
    let mut request = Request::post("/api/v1/billing/imports")
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body))
        .unwrap();
    crate::helpers::authorize(&mut request, who);
    app.raw(request).await
}

/// Neutral values for the mandatory FOCUS columns a test file's header leaves out (tests that
/// care about a column write it).
pub fn defaults_for(file: &[u8]) -> String {
    let header = String::from_utf8_lossy(file.split(|b| *b == b'\n').next().unwrap()).to_string();
    let present: Vec<&str> = header
        .trim()
        .split(',')
        .map(|c| c.trim_matches('"'))
        .collect();
    if !present.contains(&"BilledCost") {
        return "{}".into();
    }
    let missing: serde_json::Map<String, Value> = strata::billing::formats::FOCUS_MANDATORY
        .iter()
        .filter(|c| !present.contains(c))
        .map(|c| {
            let value = match *c {
                "EffectiveCost" | "ListCost" | "ContractedCost" | "PricingQuantity" => "0",
                "BillingPeriodStart" | "BillingPeriodEnd" | "ChargePeriodEnd" => "2000-01-01",
                _ => "test",
            };
            (c.to_string(), Value::String(value.into()))
        })
        .collect();
    Value::Object(missing).to_string()
}

/// Imports `file` (with [`defaults_for`] its header) and waits for it; returns the import.
pub async fn import(app: &TestApp, who: &As, file: &[u8]) -> Value {
    let defaults = defaults_for(file);
    let accepted = upload(app, who, file, &[("defaults", &defaults)]).await;
    accepted.assert_status(StatusCode::ACCEPTED);
    let task = app
        .wait_for_task(who, accepted.body["task_id"].as_str().unwrap())
        .await;
    assert_eq!(task["status"], "succeeded", "{task}");
    app.get(
        &format!(
            "/api/v1/billing/imports/{}",
            accepted.body["id"].as_str().unwrap()
        ),
        who,
    )
    .await
    .body
}

/// Sums of BilledCost computed straight from a FOCUS file: overall, by provider, service, day.
struct Expected {
    total: f64,
    by_provider: BTreeMap<String, f64>,
    by_service: BTreeMap<String, f64>,
    by_day: BTreeMap<String, f64>,
    rows: usize,
}

fn expected(file: &[u8]) -> Expected {
    let mut reader = csv::Reader::from_reader(file);
    let header = reader.headers().unwrap().clone();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let (cost, provider, service, start) = (
        col("BilledCost"),
        col("ProviderName"),
        col("ServiceName"),
        col("ChargePeriodStart"),
    );
    let mut e = Expected {
        total: 0.0,
        by_provider: BTreeMap::new(),
        by_service: BTreeMap::new(),
        by_day: BTreeMap::new(),
        rows: 0,
    };
    for record in reader.records() {
        let record = record.unwrap();
        let amount: f64 = record[cost].parse().unwrap();
        e.rows += 1;
        e.total += amount;
        *e.by_provider
            .entry(record[provider].to_string())
            .or_default() += amount;
        *e.by_service.entry(record[service].to_string()).or_default() += amount;
        *e.by_day.entry(record[start][..10].to_string()).or_default() += amount;
    }
    e
}

fn cents(amount: f64) -> i64 {
    (amount * 100.0).round() as i64
}

fn by(breakdown: &Value, key: &str) -> BTreeMap<String, i64> {
    breakdown
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g[key].as_str().unwrap().to_string(),
                cents(g["cost"].as_f64().unwrap()),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_focus_sample_imports_and_every_total_matches_the_file_to_the_cent() {
    let app = TestApp::spawn_with_workers().await;
    let (admin, _) = app.user("admin@example.com").await;
    let file = focus_sample();
    let want = expected(&file);

    let imported = import(&app, &admin, &file).await;
    assert_eq!(imported["detected_format"], "focus");
    assert_eq!(imported["rows_read"], want.rows as u64);
    assert_eq!(imported["rows_loaded"], want.rows as u64);
    assert_eq!(imported["rows_rejected"], 0);
    assert_eq!(imported["bytes"], file.len() as u64);
    // The import's own total is exact: the file's amounts summed as decimals.
    let exact: String = sqlx::query_scalar("SELECT sum(billed_cost)::text FROM cost_records")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(imported["totals"]["USD"]["billed_cost"], exact.as_str());
    assert_eq!(exact, "20.52022672899", "the sum of BilledCost in the file");

    let range = "start_date=2024-01-01&end_date=2024-12-31";
    let costs = |group: &str| {
        let path = format!("/api/v1/billing/costs?{range}&group_by={group}");
        let app = &app;
        let admin = admin.clone();
        async move {
            let response = app.get(&path, &admin).await;
            response.assert_status(StatusCode::OK);
            response.body
        }
    };
    let by_provider = costs("provider").await;
    assert_eq!(
        cents(by_provider["total_cost"].as_f64().unwrap()),
        cents(want.total)
    );
    assert_eq!(by_provider["currency"], "USD");
    assert_eq!(
        by(&by_provider["breakdown"], "provider"),
        want.by_provider
            .iter()
            .map(|(k, v)| (k.clone(), cents(*v)))
            .collect()
    );
    let aws = by_provider["breakdown"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["provider"] == "AWS")
        .unwrap();
    let services: f64 = aws["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["cost"].as_f64().unwrap())
        .sum();
    assert_eq!(cents(services), cents(want.by_provider["AWS"]));
    assert_eq!(
        by(&costs("service").await["breakdown"], "service"),
        want.by_service
            .iter()
            .map(|(k, v)| (k.clone(), cents(*v)))
            .collect()
    );
    assert_eq!(
        by(&costs("day").await["breakdown"], "date"),
        want.by_day
            .iter()
            .map(|(k, v)| (k.clone(), cents(*v)))
            .collect()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reimport_replaces_its_period_and_gzip_and_urls_are_read_too() {
    let app = TestApp::spawn_with_workers().await;
    let (admin, _) = app.user("admin@example.com").await;
    let file = focus_sample();
    let first = import(&app, &admin, &file).await;

    // The same file gzipped, served by a local HTTP server, imported by URL.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&file).unwrap();
    let gzipped = gz.finish().unwrap();
    let served = axum::Router::new().route(
        "/exports/focus.csv.gz",
        axum::routing::get(move || {
            let body = gzipped.clone();
            async move { body }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, served).await });
    let url = format!("http://{address}/exports/focus.csv.gz?X-Amz-Signature=secret");
    let accepted = app
        .post("/api/v1/billing/imports", &admin, json!({"url": url}))
        .await;
    accepted.assert_status(StatusCode::ACCEPTED);
    let task = app
        .wait_for_task(&admin, accepted.body["task_id"].as_str().unwrap())
        .await;
    assert_eq!(task["status"], "succeeded", "{task}");
    let second = app
        .get(
            &format!(
                "/api/v1/billing/imports/{}",
                accepted.body["id"].as_str().unwrap()
            ),
            &admin,
        )
        .await
        .body;
    assert_eq!(second["rows_loaded"], 1000);
    assert_eq!(second["rows_replaced"], 1000, "the first import's rows");
    assert!(
        !second["url"].as_str().unwrap().contains("secret"),
        "{second}"
    );
    assert_eq!(second["totals"], first["totals"]);
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM cost_records")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(rows, 1000, "replaced, not doubled");
    // Each import loads a table of its own; the one whose every period was replaced is gone.
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT relname::text FROM pg_class WHERE relname LIKE 'cost_records_import_%' AND relkind = 'r'",
    )
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    let second_id = accepted.body["id"].as_str().unwrap().replace('-', "");
    assert_eq!(tables, vec![format!("cost_records_import_{second_id}")]);
    let costs = app
        .get(
            "/api/v1/billing/costs?start_date=2024-01-01&end_date=2024-12-31",
            &admin,
        )
        .await
        .body;
    assert_eq!(cents(costs["total_cost"].as_f64().unwrap()), 2052);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amounts_and_times_are_stored_exactly_as_postgres_reads_their_text() {
    let app = TestApp::spawn_with_workers().await;
    let (admin, _) = app.user("admin@example.com").await;
    // The import writes numerics and times in Postgres's binary form: each must be what
    // Postgres makes of the same text (ChargeDescription and BillingPeriodEnd carry the text).
    let amounts = [
        "0",
        "-0.00",
        "1",
        "0010",
        "12345",
        "10000",
        "1.50",
        "-.5",
        "0.0015",
        "1.5e-7",
        "1.5E3",
        "+2e4",
        "100.001",
        "123456789.123456789",
        "0.000000000001",
        "-98765.4321000",
        "79228162514264337593543950335.123",
        "1e-1000",
        "7e1000",
    ];
    // (as exports write them, as Postgres reads them in UTC)
    let times = [
        ("2024-09-01 00:00:00", "2024-09-01 00:00:00.000000"),
        ("2024-09-01T23:59:59Z", "2024-09-01 23:59:59.000000"),
        ("2024-02-29T12:00:00+00:00", "2024-02-29 12:00:00.000000"),
        ("2024-09-02T01:30:00+02:00", "2024-09-01 23:30:00.000000"),
        ("2024-09-01T10:00:00.123456Z", "2024-09-01 10:00:00.123456"),
        ("2024-09-01T10:00:00.1234567Z", "2024-09-01 10:00:00.123457"),
        ("1999-12-31 23:59:59", "1999-12-31 23:59:59.000000"),
        ("9/2/2023", "2023-09-02 00:00:00.000000"),
    ];
    let mut file = String::from(
        "BilledCost,BillingCurrency,ChargePeriodStart,ChargeDescription,ChargeClass\n",
    );
    for (i, amount) in amounts.iter().enumerate() {
        let (time, utc) = times[i % times.len()];
        file.push_str(&format!("{amount},USD,{time},{amount},{utc}\n"));
    }
    let imported = import(&app, &admin, file.as_bytes()).await;
    assert_eq!(imported["rows_loaded"], amounts.len(), "{imported}");
    let mismatched: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT charge_description, billed_cost::text,
                to_char(charge_period_start AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')
         FROM cost_records
         WHERE billed_cost::text <> charge_description::numeric::text
            OR to_char(charge_period_start AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')
               <> charge_class",
    )
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    assert!(mismatched.is_empty(), "{mismatched:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_rows_are_reported_by_line_and_a_bad_file_leaves_nothing_behind() {
    let app = TestApp::spawn_with_workers().await;
    let (admin, _) = app.user("admin@example.com").await;
    let file = b"BilledCost,BillingCurrency,ChargePeriodStart,ServiceName\n\
1.50,USD,2024-09-01 00:00:00,Compute\n\
abc,USD,2024-09-01 00:00:00,Compute\n\
2.25,USD,not a time,Storage\n\
,USD,2024-09-02,Storage\n\
0.25,EUR,2024-09-02T10:00:00Z,NULL\n";
    let imported = import(&app, &admin, file).await;
    assert_eq!(imported["rows_read"], 5);
    assert_eq!(imported["rows_loaded"], 2);
    assert_eq!(imported["rows_rejected"], 3);
    let examples: Vec<(u64, String)> = imported["rejected_examples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["line"].as_u64().unwrap(),
                e["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        examples[0],
        (3, "BilledCost is not a number: \"abc\"".to_string())
    );
    assert_eq!(examples[1].0, 4);
    assert!(examples[1].1.contains("ChargePeriodStart"), "{examples:?}");
    assert_eq!(examples[2], (5, "BilledCost is empty".to_string()));
    // Two currencies are not added up.
    let costs = app
        .get(
            "/api/v1/billing/costs?start_date=2024-09-01&end_date=2024-09-30",
            &admin,
        )
        .await
        .body;
    assert_eq!(costs["total_cost"], Value::Null);
    assert_eq!(
        costs["totals_by_currency"],
        json!({"EUR": 0.25, "USD": 1.5})
    );

    // A file that is no billing export fails, and loads nothing.
    let accepted = upload(&app, &admin, b"name,amount\nx,1\n", &[]).await;
    let task = app
        .wait_for_task(&admin, accepted.body["task_id"].as_str().unwrap())
        .await;
    assert_eq!(task["status"], "failed");
    assert!(
        task["error"]
            .as_str()
            .unwrap()
            .contains("not one of a known"),
        "{task}"
    );
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM cost_records")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(rows, 2, "only the first import's rows");
    let chunks: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_class WHERE relname LIKE 'billing\\_upload\\_%' AND relkind = 'r'",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(chunks, 0, "uploads are not kept once imported");

    // Bad options are refused before anything is stored.
    upload(&app, &admin, b"x", &[("format", "parquet")])
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_REQUEST");
    app.post(
        "/api/v1/billing/imports",
        &admin,
        json!({"url": "file:///etc/passwd"}),
    )
    .await
    .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_REQUEST");
    let listed = app.get("/api/v1/billing/imports", &admin).await.body;
    assert_eq!(listed["total"], 2);
}

/// Sums from a native export, by the conversion rules documented in `billing::formats`.
fn native_expected(
    file: &[u8],
    (cost, service, date): (&str, &str, &str),
    day: impl Fn(&str) -> String,
    service_name: impl Fn(&str) -> String,
) -> (f64, BTreeMap<String, f64>, BTreeMap<String, f64>, usize) {
    let mut reader = csv::Reader::from_reader(file);
    let header = reader.headers().unwrap().clone();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let (cost, service, date) = (col(cost), col(service), col(date));
    let (mut total, mut by_service, mut by_day, mut rows) =
        (0.0, BTreeMap::new(), BTreeMap::new(), 0);
    for record in reader.records() {
        let record = record.unwrap();
        let amount: f64 = record[cost].parse().unwrap();
        rows += 1;
        total += amount;
        *by_service
            .entry(service_name(&record[service]))
            .or_insert(0.0) += amount;
        *by_day.entry(day(&record[date])).or_insert(0.0) += amount;
    }
    (total, by_service, by_day, rows)
}

async fn check_native(
    app: &TestApp,
    who: &As,
    file: &[u8],
    format: &str,
    currency: &str,
    provider: &str,
    want: (f64, BTreeMap<String, f64>, BTreeMap<String, f64>, usize),
) {
    let (total, by_service, by_day, rows) = want;
    let imported = import(app, who, file).await;
    assert_eq!(imported["detected_format"], format);
    assert_eq!(imported["rows_loaded"], rows as u64, "{imported}");
    assert_eq!(imported["rows_rejected"], 0, "{imported}");
    let costs = |group: &'static str| async move {
        app.get(
            &format!("/api/v1/billing/costs?start_date=2023-01-01&end_date=2023-12-31&currency={currency}&group_by={group}"),
            who,
        )
        .await
        .body
    };
    let by_provider = costs("provider").await;
    assert_eq!(
        cents(by_provider["total_cost"].as_f64().unwrap()),
        cents(total)
    );
    assert_eq!(by_provider["breakdown"][0]["provider"], provider);
    assert_eq!(
        by(&costs("service").await["breakdown"], "service"),
        by_service
            .iter()
            .map(|(k, v)| (k.clone(), cents(*v)))
            .collect()
    );
    assert_eq!(
        by(&costs("day").await["breakdown"], "date"),
        by_day.iter().map(|(k, v)| (k.clone(), cents(*v))).collect()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_cur_and_azure_exports_become_focus_records_with_the_same_totals() {
    let app = TestApp::spawn_with_workers().await;
    let (admin, _) = app.user("admin@example.com").await;

    let aws = std::fs::read(data_file(
        "exports/aws-cur/sample-anonymous-aws-export-dataset.csv",
    ))
    .unwrap();
    let want = native_expected(
        &aws,
        (
            "lineItem/UnblendedCost",
            "lineItem/ProductCode",
            "lineItem/UsageStartDate",
        ),
        |d| d[..10].to_string(),
        str::to_string,
    );
    check_native(&app, &admin, &aws, "aws_cur", "USD", "AWS", want).await;

    let azure = std::fs::read(data_file(
        "exports/azure-ea/sample-anonymous-ea-export-dataset.csv",
    ))
    .unwrap();
    let want = native_expected(
        &azure,
        ("CostInBillingCurrency", "ConsumedService", "Date"),
        |d| {
            chrono::NaiveDate::parse_from_str(d, "%m/%d/%Y")
                .unwrap()
                .to_string()
        },
        |s| s.to_ascii_lowercase(),
    );
    check_native(&app, &admin, &azure, "azure", "CAD", "Microsoft", want).await;

    // The FOCUS columns the rules give, on a few rows.
    let row: (String, String, Option<String>, String) = sqlx::query_as(
        "SELECT service_category, charge_category, region_id, tags::text FROM cost_records
         WHERE provider_name = 'Microsoft' AND service_name = 'microsoft.compute' LIMIT 1",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(row.0, "Compute");
    assert_eq!(row.1, "Usage");
    assert_eq!(
        row.3,
        r#"{"tagA": "valueA", "tagB": "valueB", "tagC": "valueC"}"#
    );
    let taxes: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM cost_records WHERE provider_name = 'AWS' AND charge_category = 'Tax'",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(taxes, 12);
    let listed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM cost_records WHERE provider_name = 'AWS' AND list_cost IS NOT NULL",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert!(listed > 0, "ListCost from the public on-demand rate");
}

/// Makes the tenant's `spending_sync` schedule due now and waits until it has run once more.
async fn run_spending_sync(app: &TestApp) {
    let runs = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT COALESCE(max(runs), 0) FROM schedules WHERE name = 'spending_sync'",
        )
        .fetch_one(&app.db.pool)
        .await
        .unwrap()
    };
    // The schedule fires as soon as its tenant exists; let that first run end.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let wait_idle = || async {
        loop {
            let busy: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM tasks WHERE kind = 'billing.accrue' AND status IN ('queued', 'running')",
            )
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
            if busy == 0 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the spending sync did not finish"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };
    wait_idle().await;
    let before = runs().await;
    sqlx::query("UPDATE schedules SET last_run_at = NULL WHERE name = 'spending_sync'")
        .execute(&app.db.pool)
        .await
        .unwrap();
    while runs().await == before {
        assert!(
            std::time::Instant::now() < deadline,
            "the spending sync did not fire"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    wait_idle().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_vms_accrue_hourly_cost_records_at_each_spending_sync() {
    let app = TestApp::spawn_with_workers().await;
    let (admin, _) = app.user("admin@example.com").await;
    let provider = app.sandbox(&admin).await;
    let vm = crate::resources::create_quick_vm(&app, &admin, &provider, "billed").await;
    let id = vm["id"].as_str().unwrap();
    let price = app
        .get(&format!("/api/v1/resources/{id}"), &admin)
        .await
        .body["cost_per_hour"]
        .as_f64()
        .unwrap();
    assert!(price > 0.0);
    // As if the vm had been running for two and a half hours.
    sqlx::query(
        "UPDATE resources SET created_at = now() - interval '150 minutes', cost_accrued_until = NULL WHERE id = $1",
    )
    .bind(uuid::Uuid::parse_str(id).unwrap())
    .execute(&app.db.pool)
    .await
    .unwrap();
    run_spending_sync(&app).await;

    let accrued = || async {
        sqlx::query_as::<_, (i64, f64)>(
            "SELECT count(*), COALESCE(sum(billed_cost), 0)::float8 FROM cost_records WHERE resource_ref = $1",
        )
        .bind(uuid::Uuid::parse_str(id).unwrap())
        .fetch_one(&app.db.pool)
        .await
        .unwrap()
    };
    let (hours, cost) = accrued().await;
    assert!(
        (3..=4).contains(&hours),
        "one record per hour touched: {hours}"
    );
    assert!(
        (cost / (price * 2.5) - 1.0).abs() < 0.01,
        "{cost} for 2.5 h at {price}"
    );
    let today = chrono::Utc::now().date_naive();
    let costs = app
        .get(
            &format!(
                "/api/v1/billing/costs?start_date={}&end_date={today}&group_by=provider",
                today - chrono::Days::new(1)
            ),
            &admin,
        )
        .await
        .body;
    let sandbox = costs["breakdown"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["provider"] == "sandbox")
        .unwrap_or_else(|| panic!("{costs}"));
    assert!(
        (sandbox["cost"].as_f64().unwrap() / cost - 1.0).abs() < 1e-6,
        "{costs}"
    );
    assert_eq!(sandbox["services"][0]["service"], "Virtual Machines");

    // The next sync adds only the time since the last one.
    run_spending_sync(&app).await;
    let (again, more) = accrued().await;
    assert!(
        again == hours || again == hours + 1,
        "an hour may have begun: {again}"
    );
    assert!(
        more >= cost && more < cost + price * 0.01,
        "{more} after {cost}"
    );

    // A stopped vm accrues nothing.
    let stop = app
        .post(
            &format!("/api/v1/resources/{id}/action"),
            &admin,
            json!({"action": "stop"}),
        )
        .await;
    app.wait_for_task(&admin, stop.body["task_id"].as_str().unwrap())
        .await;
    sqlx::query(
        "UPDATE resources SET cost_accrued_until = now() - interval '1 hour' WHERE id = $1",
    )
    .bind(uuid::Uuid::parse_str(id).unwrap())
    .execute(&app.db.pool)
    .await
    .unwrap();
    run_spending_sync(&app).await;
    let (_, after_stop) = accrued().await;
    assert!(
        after_stop < more + price * 0.01,
        "{after_stop} after {more}"
    );
}
