//! The cost views (seed 000's costs and dashboard, seed 002's breakdown, seed 003's billing
//! lines) and currency conversion, each checked against sums computed here from the file the
//! test imported.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use chrono::{Datelike, NaiveDate, Utc};
use serde_json::{Value, json};

use crate::billing::{data_file, focus_sample, import};
use crate::helpers::{As, TestApp};

fn cents(amount: f64) -> i64 {
    (amount * 100.0).round() as i64
}

/// One row of a Databricks usage export, as the test wrote it.
struct Usage {
    day: NaiveDate,
    workspace: &'static str,
    sku: &'static str,
    user: &'static str,
    job: Option<&'static str>,
    dbu: f64,
    price: f64,
}

impl Usage {
    fn cost(&self) -> f64 {
        // Whole cents: DBUs in tenths, prices in tenths of a dollar.
        (self.dbu * self.price * 100.0).round() / 100.0
    }
}

/// A Databricks `system.billing.usage` export (with list prices joined) over the last 60 days.
fn databricks_usage(today: NaiveDate) -> (Vec<u8>, Vec<Usage>) {
    let workspaces = ["ws-prod-001", "ws-dev-002"];
    let skus = ["JOBS_COMPUTE", "ALL_PURPOSE_COMPUTE", "SQL_COMPUTE"];
    let users = ["alice@example.com", "bob@example.com", "carol@example.com"];
    let mut rows = Vec::new();
    for offset in 0..60u64 {
        for i in 0..3usize {
            let n = offset as usize * 3 + i;
            rows.push(Usage {
                day: today - chrono::Days::new(offset),
                workspace: workspaces[n % 2],
                sku: skus[n % 3],
                user: users[(n / 2) % 3],
                job: (!n.is_multiple_of(4)).then_some(["job-1", "job-2"][n % 2]),
                dbu: ((n * 7) % 50 + 1) as f64 / 10.0,
                price: [0.2, 0.5, 0.7][n % 3],
            });
        }
    }
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record([
        "account_id",
        "workspace_id",
        "sku_name",
        "cloud",
        "usage_start_time",
        "usage_end_time",
        "usage_date",
        "usage_quantity",
        "usage_unit",
        "list_price",
        "usage_metadata.cluster_id",
        "usage_metadata.job_id",
        "identity_metadata.run_as",
        "custom_tags",
    ])
    .unwrap();
    for (i, row) in rows.iter().enumerate() {
        let start = row.day.and_hms_opt((i % 20) as u32, 0, 0).unwrap();
        out.write_record([
            "acct-1",
            row.workspace,
            row.sku,
            "AWS",
            &start.format("%Y-%m-%d %H:%M:%S").to_string(),
            &(start + chrono::Duration::hours(1))
                .format("%Y-%m-%d %H:%M:%S")
                .to_string(),
            &row.day.to_string(),
            &format!("{:.1}", row.dbu),
            "DBU",
            &format!("{:.1}", row.price),
            "cl-1",
            row.job.unwrap_or(""),
            row.user,
            r#"{"team": "data"}"#,
        ])
        .unwrap();
    }
    (out.into_inner().unwrap(), rows)
}

/// Sums of `rows` whose day is within the last `days` days (today included) before `today`.
fn within(rows: &[Usage], today: NaiveDate, days: u64, ago: u64) -> Vec<&Usage> {
    let end = today - chrono::Days::new(ago);
    let start = end - chrono::Days::new(days - 1);
    rows.iter()
        .filter(|r| r.day >= start && r.day <= end)
        .collect()
}

fn total(rows: &[&Usage]) -> (i64, i64) {
    let cost: f64 = rows.iter().map(|r| r.cost()).sum();
    let dbu: f64 = rows.iter().map(|r| r.dbu).sum();
    (cents(cost), (dbu * 10.0).round() as i64)
}

async fn ok(app: &TestApp, who: &As, path: &str) -> Value {
    let response = app.get(path, who).await;
    response.assert_status(StatusCode::OK);
    response.body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn databricks_usage_fills_every_seed_000_cost_view() {
    let app = TestApp::spawn_with_workers().await;
    let (admin, _) = app.user("admin@example.com").await;
    let today = Utc::now().date_naive();
    let (file, rows) = databricks_usage(today);
    let imported = import(&app, &admin, &file).await;
    assert_eq!(imported["detected_format"], "databricks");
    assert_eq!(imported["rows_loaded"], rows.len() as u64);

    // /costs: records newest first, filtered, counted.
    let prod: Vec<&Usage> = rows
        .iter()
        .filter(|r| r.workspace == "ws-prod-001")
        .collect();
    let page = app
        .get(
            "/api/v1/costs?workspace_id=ws-prod-001&limit=5&offset=1",
            &admin,
        )
        .await;
    page.assert_status(StatusCode::OK);
    assert_eq!(page.body["total"], prod.len() as u64);
    assert_eq!(page.headers["x-total-count"], prod.len().to_string());
    let data = page.body["data"].as_array().unwrap();
    assert_eq!(data.len(), 5);
    assert!(
        data.iter()
            .all(|r| r["workspace_id"] == "ws-prod-001" && r["cloud"] == "Databricks")
    );
    let dates: Vec<&str> = data
        .iter()
        .map(|r| r["usage_date"].as_str().unwrap())
        .collect();
    assert!(
        dates.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {dates:?}"
    );
    assert_eq!(data[0]["currency"], "USD");
    assert_eq!(data[0]["cost_usd"], data[0]["cost"]);
    // The seeds' trailing slash names the same list.
    let slashed = ok(
        &app,
        &admin,
        "/api/v1/costs/?workspace_id=ws-prod-001&limit=5&offset=1",
    )
    .await;
    assert_eq!(slashed["data"], page.body["data"]);
    let since = today - chrono::Days::new(9);
    let filtered = ok(
        &app,
        &admin,
        &format!(
            "/api/v1/costs?start_date={since}&sku_name=SQL_COMPUTE&user_email=bob@example.com"
        ),
    )
    .await;
    let want = rows
        .iter()
        .filter(|r| r.day >= since && r.sku == "SQL_COMPUTE" && r.user == "bob@example.com")
        .count();
    assert!(want > 0);
    assert_eq!(filtered["total"], want as u64);
    assert_eq!(filtered["data"].as_array().unwrap().len(), want);

    // /costs/summary and /costs/by-date over the last 30 days.
    let last30 = within(&rows, today, 30, 0);
    let summary = ok(&app, &admin, "/api/v1/costs/summary?days=30").await;
    let (cost, dbu) = total(&last30);
    assert_eq!(cents(summary["total_cost"].as_f64().unwrap()), cost);
    assert_eq!(
        (summary["total_dbu"].as_f64().unwrap() * 10.0).round() as i64,
        dbu
    );
    assert_eq!(summary["total_records"], last30.len() as u64);
    assert_eq!(summary["period_days"], 30);
    assert_eq!(summary["currency"], "USD");
    assert_eq!(summary["latest_date"], today.to_string());
    assert_eq!(
        summary["earliest_date"],
        (today - chrono::Days::new(29)).to_string()
    );
    let dev = ok(
        &app,
        &admin,
        "/api/v1/costs/summary?days=7&workspace_id=ws-dev-002",
    )
    .await;
    let dev_rows: Vec<&Usage> = within(&rows, today, 7, 0)
        .into_iter()
        .filter(|r| r.workspace == "ws-dev-002")
        .collect();
    assert_eq!(
        cents(dev["total_cost"].as_f64().unwrap()),
        total(&dev_rows).0
    );

    let by_date = ok(&app, &admin, "/api/v1/costs/by-date?days=14").await;
    let mut want_days = BTreeMap::<String, i64>::new();
    for r in within(&rows, today, 14, 0) {
        *want_days.entry(r.day.to_string()).or_default() += cents(r.cost());
    }
    let got_days: BTreeMap<String, i64> = by_date["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["date"].as_str().unwrap().to_string(),
                cents(d["cost"].as_f64().unwrap()),
            )
        })
        .collect();
    assert_eq!(got_days, want_days);

    // /dashboard/overview: this period against the one before.
    let overview = ok(&app, &admin, "/api/v1/dashboard/overview?days=30").await;
    let before = within(&rows, today, 30, 30);
    assert_eq!(cents(overview["total_cost"].as_f64().unwrap()), cost);
    assert_eq!(overview["record_count"], last30.len() as u64);
    let prev = total(&before).0;
    assert_eq!(cents(overview["prev_period_cost"].as_f64().unwrap()), prev);
    let change = (cost - prev) as f64 / prev as f64 * 100.0;
    assert!((overview["cost_change_pct"].as_f64().unwrap() - change).abs() < 0.01);
    assert_eq!(overview["billing_imports"], 1);
    assert_eq!(overview["workspaces"], 0);

    // /dashboard/cost-trend: weekly and monthly points add up to the period.
    for granularity in ["daily", "weekly", "monthly"] {
        let trend = ok(
            &app,
            &admin,
            &format!("/api/v1/dashboard/cost-trend?days=30&granularity={granularity}"),
        )
        .await;
        assert_eq!(trend["granularity"], granularity);
        let points = trend["data"].as_array().unwrap();
        let sum: f64 = points.iter().map(|p| p["cost"].as_f64().unwrap()).sum();
        assert_eq!(cents(sum), cost, "{granularity}");
        let first =
            NaiveDate::parse_from_str(points[0]["period"].as_str().unwrap(), "%Y-%m-%d").unwrap();
        match granularity {
            "weekly" => assert_eq!(first.weekday(), chrono::Weekday::Mon),
            "monthly" => assert_eq!(first.day(), 1),
            _ => assert_eq!(points.len(), 30),
        }
    }

    // The rankings.
    let rank = |key: fn(&Usage) -> Option<&'static str>| {
        let mut sums = BTreeMap::<&'static str, i64>::new();
        for r in &last30 {
            if let Some(k) = key(r) {
                *sums.entry(k).or_default() += cents(r.cost());
            }
        }
        let mut ranked: Vec<(&str, i64)> = sums.into_iter().collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        ranked
    };
    for (path, field, key) in [
        (
            "cost-by-workspace",
            "workspace_id",
            (|r: &Usage| Some(r.workspace)) as fn(&Usage) -> Option<&'static str>,
        ),
        ("cost-by-sku", "sku_name", |r: &Usage| Some(r.sku)),
        ("cost-by-user", "user_email", |r: &Usage| Some(r.user)),
        ("cost-by-job", "job_id", |r: &Usage| r.job),
    ] {
        let got = ok(
            &app,
            &admin,
            &format!("/api/v1/dashboard/{path}?days=30&limit=2"),
        )
        .await;
        let want = rank(key);
        let data = got["data"].as_array().unwrap();
        assert_eq!(data.len(), want.len().min(2), "{path}");
        for (entry, (name, cost)) in data.iter().zip(&want) {
            assert_eq!(entry[field], *name, "{path}");
            assert_eq!(cents(entry["cost"].as_f64().unwrap()), *cost, "{path}");
        }
        let unattributed: i64 = last30
            .iter()
            .filter(|r| key(r).is_none())
            .map(|r| cents(r.cost()))
            .sum();
        assert_eq!(
            cents(got["unattributed_cost"].as_f64().unwrap()),
            unattributed,
            "{path}"
        );
    }

    // days and limit are checked.
    for bad in [
        "/api/v1/costs/summary?days=0",
        "/api/v1/costs/by-date?days=366",
        "/api/v1/dashboard/overview?days=400",
        "/api/v1/dashboard/cost-by-user?limit=101",
        "/api/v1/dashboard/cost-by-job?limit=0",
        "/api/v1/costs?limit=1001",
        "/api/v1/costs?start_date=2026-02-01&end_date=2026-01-01",
        "/api/v1/costs/summary?currency=dollars",
    ] {
        app.get(bad, &admin)
            .await
            .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_REQUEST");
    }
    let bad_granularity = app
        .get("/api/v1/dashboard/cost-trend?granularity=hourly", &admin)
        .await;
    bad_granularity.assert_problem(StatusCode::BAD_REQUEST, "INVALID_REQUEST");

    // Another tenant sees none of it.
    let (other, _) = app.user("other@example.com").await;
    let theirs = ok(&app, &other, "/api/v1/costs/summary?days=30").await;
    assert_eq!(theirs["total_records"], 0);
    assert_eq!(ok(&app, &other, "/api/v1/costs").await["total"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_002_breakdown_groups_azure_costs_by_category_resource_group_and_location() {
    let app = TestApp::spawn_with_workers().await;
    let (admin, _) = app.user("admin@example.com").await;
    let file = std::fs::read(data_file(
        "exports/azure-ea/sample-anonymous-ea-export-dataset.csv",
    ))
    .unwrap();
    import(&app, &admin, &file).await;

    // Sums straight from the export: cost by resource group, location and day.
    let mut reader = csv::Reader::from_reader(file.as_slice());
    let header = reader.headers().unwrap().clone();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let (cost, group, location, date) = (
        col("CostInBillingCurrency"),
        col("ResourceGroup"),
        col("ResourceLocation"),
        col("Date"),
    );
    let (mut by_group, mut by_day) = (
        BTreeMap::<String, f64>::new(),
        BTreeMap::<String, f64>::new(),
    );
    let mut total_cost = 0.0;
    let mut locations = std::collections::BTreeSet::new();
    for record in reader.records() {
        let record = record.unwrap();
        let amount: f64 = record[cost].parse().unwrap();
        total_cost += amount;
        *by_group.entry(record[group].to_lowercase()).or_default() += amount;
        let day = NaiveDate::parse_from_str(&record[date], "%m/%d/%Y").unwrap();
        *by_day.entry(day.to_string()).or_default() += amount;
        locations.insert(record[location].to_string());
    }
    let first = by_day.keys().next().unwrap().clone();
    let last = by_day.keys().last().unwrap().clone();
    let range = format!("start_date={first}&end_date={last}");

    let daily = ok(
        &app,
        &admin,
        &format!("/api/v1/costs?{range}&group_by=resource_group"),
    )
    .await;
    assert_eq!(daily["granularity"], "daily");
    assert_eq!(daily["currency"], "CAD", "the export's billing currency");
    let costs = daily["costs"].as_array().unwrap();
    let got_days: BTreeMap<String, i64> = costs
        .iter()
        .map(|c| {
            (
                c["date"].as_str().unwrap().to_string(),
                cents(c["total_cost"].as_f64().unwrap()),
            )
        })
        .collect();
    assert_eq!(
        got_days,
        by_day.iter().map(|(k, v)| (k.clone(), cents(*v))).collect()
    );
    let mut got_groups = BTreeMap::<String, f64>::new();
    for period in costs {
        let categories: f64 = period["breakdown"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_f64().unwrap())
            .sum();
        assert_eq!(
            cents(categories),
            cents(period["total_cost"].as_f64().unwrap())
        );
        for (group, cost) in period["by_resource_group"].as_object().unwrap() {
            *got_groups.entry(group.clone()).or_default() += cost.as_f64().unwrap();
        }
    }
    assert_eq!(
        got_groups
            .iter()
            .map(|(k, v)| (k.clone(), cents(*v)))
            .collect::<BTreeMap<_, _>>(),
        by_group
            .iter()
            .map(|(k, v)| (k.clone(), cents(*v)))
            .collect::<BTreeMap<_, _>>()
    );
    assert_eq!(
        cents(daily["summary"]["total_cost"].as_f64().unwrap()),
        cents(total_cost)
    );
    let days = by_day.len().max(1) as f64;
    let span = (NaiveDate::parse_from_str(&last, "%Y-%m-%d").unwrap()
        - NaiveDate::parse_from_str(&first, "%Y-%m-%d").unwrap())
    .num_days() as f64
        + 1.0;
    assert!(days <= span);
    assert_eq!(
        cents(daily["summary"]["avg_daily_cost"].as_f64().unwrap()),
        cents(total_cost / span)
    );
    // Nothing in the period before: the change is unknown, the trend rising.
    assert_eq!(daily["summary"]["change_percent"], Value::Null);
    assert_eq!(daily["summary"]["trend"], "increasing");

    let monthly = ok(
        &app,
        &admin,
        &format!("/api/v1/costs?{range}&granularity=monthly&group_by=location"),
    )
    .await;
    let months = monthly["costs"].as_array().unwrap();
    assert!(
        months
            .iter()
            .all(|m| m["date"].as_str().unwrap().ends_with("-01"))
    );
    let mut got_locations = std::collections::BTreeSet::new();
    let mut sum = 0.0;
    for month in months {
        sum += month["total_cost"].as_f64().unwrap();
        got_locations.extend(month["by_location"].as_object().unwrap().keys().cloned());
    }
    assert_eq!(cents(sum), cents(total_cost));
    assert!(!got_locations.is_empty() && got_locations.iter().all(|l| !l.is_empty()));
    let by_service = ok(
        &app,
        &admin,
        &format!("/api/v1/costs?{range}&group_by=service"),
    )
    .await;
    assert!(by_service["costs"][0]["by_service"].is_object());
    app.get("/api/v1/costs?group_by=subscription", &admin)
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "INVALID_REQUEST");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn currencies_are_converted_with_the_rate_table_and_never_mixed_silently() {
    let app = TestApp::spawn_with_workers().await;
    let (admin, _) = app.user("admin@example.com").await;
    let today = Utc::now().date_naive();
    let file = format!(
        "BilledCost,BillingCurrency,ChargePeriodStart,ServiceName,ProviderName\n\
         10.00,USD,{today} 01:00:00,Compute,AWS\n\
         5.00,USD,{today} 02:00:00,Storage,AWS\n\
         20.00,EUR,{today} 03:00:00,Compute,Microsoft\n\
         1000,JPY,{today} 04:00:00,Compute,Other\n"
    );
    import(&app, &admin, file.as_bytes()).await;

    // No rates: the most used currency, and the rest said to be left out.
    let bare = ok(&app, &admin, "/api/v1/costs/summary?days=1").await;
    assert_eq!(bare["currency"], "USD");
    assert_eq!(bare["total_cost"], 15.0);
    assert_eq!(bare["total_records"], 2);
    assert_eq!(bare["not_converted"], json!({"EUR": 20.0, "JPY": 1000.0}));
    assert_eq!(bare["converted"], json!({}));

    // Only sensible rates.
    for bad in [
        json!({"base_currency": "dollar", "rates": {}}),
        json!({"base_currency": "USD", "rates": {"EUR": -1.0}}),
        json!({"base_currency": "USD", "rates": {"euro": 1.1}}),
    ] {
        app.put("/api/v1/currency-rates", &admin, bad)
            .await
            .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_REQUEST");
    }
    let table = app
        .put(
            "/api/v1/currency-rates",
            &admin,
            json!({"base_currency": "USD", "rates": {"EUR": 1.1}}),
        )
        .await;
    table.assert_status(StatusCode::OK);
    assert_eq!(table.body["rates"], json!({"EUR": 1.1}));
    assert_eq!(
        ok(&app, &admin, "/api/v1/currency-rates").await["base_currency"],
        "USD"
    );

    let converted = ok(&app, &admin, "/api/v1/dashboard/overview?days=1").await;
    assert_eq!(converted["currency"], "USD");
    assert_eq!(cents(converted["total_cost"].as_f64().unwrap()), 3700);
    assert_eq!(converted["converted"], json!({"EUR": 1.1}));
    assert_eq!(converted["not_converted"], json!({"JPY": 1000.0}));
    assert_eq!(converted["record_count"], 3);

    // Into euros, through the base.
    let euros = ok(&app, &admin, "/api/v1/costs/summary?days=1&currency=EUR").await;
    assert_eq!(euros["currency"], "EUR");
    assert_eq!(
        cents(euros["total_cost"].as_f64().unwrap()),
        cents(20.0 + 15.0 / 1.1)
    );
    // The records keep their own currency, with USD beside where a rate allows.
    let records = ok(&app, &admin, "/api/v1/costs?limit=10").await;
    let eur = records["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["currency"] == "EUR")
        .unwrap();
    assert_eq!(eur["cost"], 20.0);
    assert_eq!(cents(eur["cost_usd"].as_f64().unwrap()), 2200);
    let jpy = records["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["currency"] == "JPY")
        .unwrap();
    assert_eq!(jpy["cost_usd"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn billing_lines_are_listed_by_account_and_date_and_read_one_by_one() {
    let app = TestApp::spawn_with_workers().await;
    let (admin, tenant) = app.user("admin@example.com").await;
    import(&app, &admin, &focus_sample()).await;

    // Counted straight from the file.
    let file = focus_sample();
    let mut reader = csv::Reader::from_reader(file.as_slice());
    let header = reader.headers().unwrap().clone();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let (account, start) = (col("SubAccountId"), col("ChargePeriodStart"));
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let some_account = records[0][account].to_string();
    let day = records[0][start][..10].to_string();
    let want = records
        .iter()
        .filter(|r| r[account] == *some_account && r[start].starts_with(&day))
        .count();

    let all = ok(&app, &admin, "/api/v1/billing?limit=3").await;
    assert_eq!(all["total"], records.len() as u64);
    let lines = ok(
        &app,
        &admin,
        &format!(
            "/api/v1/billing?account_id={some_account}&start_date={day}&end_date={day}&limit=1000"
        ),
    )
    .await;
    assert_eq!(lines["total"], want as u64);
    assert_eq!(lines["data"].as_array().unwrap().len(), want);
    let line = &lines["data"][0];
    assert_eq!(line["sub_account_id"], some_account.as_str());
    let id = line["id"].as_i64().unwrap();
    let one = ok(&app, &admin, &format!("/api/v1/billing/{id}")).await;
    assert_eq!(one["id"], id);
    assert_eq!(one["cost"], line["cost"]);
    assert!(one["service_name"].is_string());

    let (other, _) = app.user("other@example.com").await;
    app.get(&format!("/api/v1/billing/{id}"), &other)
        .await
        .assert_problem(StatusCode::NOT_FOUND, "RESOURCE_NOT_FOUND");
    app.get("/api/v1/billing/not-a-number", &admin)
        .await
        .assert_status(StatusCode::BAD_REQUEST);

    // A tenant deleted takes its records along (no foreign key does it: triggers do), and
    // nobody else's.
    let theirs = format!(
        "BilledCost,BillingCurrency,ChargePeriodStart\n1.00,USD,{}\n",
        Utc::now().date_naive()
    );
    import(&app, &other, theirs.as_bytes()).await;
    app.delete(&format!("/api/v1/tenants/{tenant}"), &admin)
        .await
        .assert_status(StatusCode::NO_CONTENT);
    let left: Vec<(uuid::Uuid, i64)> =
        sqlx::query_as("SELECT tenant_id, count(*) FROM cost_records GROUP BY 1")
            .fetch_all(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_ne!(left[0].0, tenant);
    assert_eq!(left[0].1, 1);
}

/// The rollup an import builds while streaming is the one Postgres computes from the records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_streamed_rollup_is_what_postgres_sums_from_the_records() {
    let app = TestApp::spawn_with_workers().await;
    let (admin, _) = app.user("admin@example.com").await;
    import(&app, &admin, &focus_sample()).await;
    import(
        &app,
        &admin,
        &std::fs::read(data_file(
            "exports/aws-cur/sample-anonymous-aws-export-dataset.csv",
        ))
        .unwrap(),
    )
    .await;
    import(
        &app,
        &admin,
        &std::fs::read(data_file(
            "exports/azure-ea/sample-anonymous-ea-export-dataset.csv",
        ))
        .unwrap(),
    )
    .await;
    import(&app, &admin, &databricks_usage(Utc::now().date_naive()).0).await;

    let snapshot = || async {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT concat_ws('|', day, billing_currency, provider_name, service_name,
                    service_category, region_id, resource_group,
                    workspace_id, sku_name, user_email, job_id, sum(billed_cost), sum(effective_cost),
                    sum(list_cost), sum(dbu_count), sum(records))
             FROM cost_daily
             GROUP BY day, billing_currency, provider_name, service_name, service_category, region_id,
                      resource_group, workspace_id, sku_name,
                      user_email, job_id
             ORDER BY 1",
        )
        .fetch_all(&app.db.pool)
        .await
        .unwrap();
        rows
    };
    let streamed = snapshot().await;
    assert!(streamed.len() > 100, "{}", streamed.len());
    assert!(
        streamed.iter().any(|(r,)| r.contains("|rg-example|")),
        "Azure's resource group"
    );
    let tenant: uuid::Uuid = sqlx::query_scalar("SELECT DISTINCT tenant_id FROM cost_daily")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    let mut conn = app.db.pool.acquire().await.unwrap();
    let far = |y| {
        chrono::NaiveDate::from_ymd_opt(y, 1, 1)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap()
            .and_utc()
    };
    strata::billing::rollup::recompute(&mut conn, tenant, far(2000), far(2100))
        .await
        .unwrap();
    drop(conn);
    let recomputed = snapshot().await;
    assert_eq!(streamed, recomputed);
}
