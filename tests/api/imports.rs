//! Billing imports as real exports arrive: large uploads over HTTP, a period in several files,
//! manifests, restatements, undoing an import, files that lack columns, progress, events and
//! failures that are final.

use std::io::Write;
use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::billing::{data_file, import, upload_named};
use crate::helpers::{As, TestApp, test_settings};

/// Every mandatory FOCUS column, in this order, for [`focus_rows`].
const FOCUS_HEADER: &str = "BilledCost,BillingAccountId,BillingAccountName,BillingCurrency,BillingPeriodEnd,\
BillingPeriodStart,ChargeCategory,ChargeClass,ChargeDescription,ChargePeriodEnd,ChargePeriodStart,\
ContractedCost,EffectiveCost,InvoiceIssuerName,ListCost,PricingQuantity,PricingUnit,ProviderName,\
PublisherName,ServiceCategory,ServiceName";

/// One FOCUS row of a day in January 2024 (`day` 1–31) on an account.
fn focus_row(account: &str, day: u32, service: &str, cost: &str) -> String {
    format!(
        "{cost},{account},Account {account},USD,2024-02-01T00:00:00Z,2024-01-01T00:00:00Z,Usage,,\
         {service} usage,2024-01-{day:02}T01:00:00Z,2024-01-{day:02}T00:00:00Z,{cost},{cost},AWS,{cost},1,Hours,\
         AWS,AWS,Compute,{service}\n"
    )
}

fn focus_rows(rows: &[(&str, u32, &str, &str)]) -> Vec<u8> {
    let mut file = format!("{FOCUS_HEADER}\n");
    for (account, day, service, cost) in rows {
        file.push_str(&focus_row(account, *day, service, cost));
    }
    file.into_bytes()
}

/// Uploads a file under a name and waits for its import; returns the import.
async fn import_named(
    app: &TestApp,
    who: &As,
    file: &[u8],
    name: &str,
    fields: &[(&str, &str)],
) -> Value {
    let accepted = upload_named(app, who, file, name, fields).await;
    accepted.assert_status(StatusCode::ACCEPTED);
    finished(app, who, &accepted.body).await
}

/// Waits for an accepted import's task to succeed; returns the import.
async fn finished(app: &TestApp, who: &As, accepted: &Value) -> Value {
    let task = app
        .wait_for_task(who, accepted["task_id"].as_str().unwrap())
        .await;
    assert_eq!(task["status"], "succeeded", "{task}");
    app.get(
        &format!(
            "/api/v1/billing/imports/{}",
            accepted["id"].as_str().unwrap()
        ),
        who,
    )
    .await
    .body
}

/// January 2024's billed cost, in cents, and the records the tenant has.
async fn january(app: &TestApp, who: &As) -> (i64, i64) {
    let costs = app
        .get(
            "/api/v1/billing/costs?start_date=2024-01-01&end_date=2024-01-31",
            who,
        )
        .await;
    costs.assert_status(StatusCode::OK);
    let records: i64 = sqlx::query_scalar("SELECT count(*) FROM cost_records")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    let total = costs.body["total_cost"].as_f64().unwrap();
    ((total * 100.0).round() as i64, records)
}

/// Serves `files` (path, body) on a loopback port; returns its base URL.
async fn serve_files(files: Vec<(&'static str, Vec<u8>)>) -> String {
    let mut router = axum::Router::new();
    for (path, body) in files {
        router = router.route(
            path,
            axum::routing::get(move || {
                let body = body.clone();
                async move { body }
            }),
        );
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{address}")
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

fn token(who: &As) -> &str {
    match who {
        As::Token(token) => token,
        _ => panic!("a token"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_upload_streams_over_http_and_the_limit_is_the_configured_one() {
    let app = TestApp::spawn_with_workers().await;
    let (admin, _) = app.user("admin@example.com").await;
    let address = app.serve().await;
    // ≥ 50 MB of FOCUS rows, sent over a real socket without a length (chunked), as a client
    // streaming a file does.
    let mut file = format!("{FOCUS_HEADER}\n").into_bytes();
    let mut rows = 0u64;
    while file.len() < 52 << 20 {
        let day = (rows % 28) as u32 + 1;
        file.extend_from_slice(
            focus_row(&format!("acct-{}", rows % 7), day, "AmazonEC2", "0.25").as_bytes(),
        );
        rows += 1;
    }
    let (content_type, body) = crate::billing::multipart_form(&file, "big.csv", &[]);
    let pieces: Vec<Result<Vec<u8>, std::io::Error>> =
        body.chunks(1 << 20).map(|c| Ok(c.to_vec())).collect();
    let response = reqwest::Client::new()
        .post(format!("http://{address}/api/v1/billing/imports"))
        .bearer_auth(token(&admin))
        .header("content-type", content_type)
        .body(reqwest::Body::wrap_stream(futures::stream::iter(pieces)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let accepted: Value = response.json().await.unwrap();
    assert_eq!(accepted["bytes"], file.len());
    let imported = finished(&app, &admin, &accepted).await;
    assert_eq!(imported["rows_loaded"], rows, "{imported}");
    assert_eq!(imported["rows_rejected"], 0);
    assert_eq!(january(&app, &admin).await, (rows as i64 * 25, rows as i64));
    let waiting: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_class WHERE relname LIKE 'billing\\_upload\\_%' AND relkind = 'r'",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(waiting, 0, "an imported upload's table is dropped");

    // A server whose limit is 1 MiB refuses 2 MiB, naming its limit, whether the length is
    // declared or not.
    let mut settings = test_settings();
    settings.import_max_bytes = 1 << 20;
    let small = TestApp::spawn_with(settings).await;
    let (user, _) = small.user("admin@example.com").await;
    let address = small.serve().await;
    let (content_type, body) = crate::billing::multipart_form(&file[..2 << 20], "x.csv", &[]);
    for declared in [true, false] {
        let request = reqwest::Client::new()
            .post(format!("http://{address}/api/v1/billing/imports"))
            .bearer_auth(token(&user))
            .header("content-type", &content_type);
        let request = match declared {
            true => request.body(body.clone()),
            false => request.body(reqwest::Body::wrap_stream(futures::stream::iter(
                body.chunks(64 << 10)
                    .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
                    .collect::<Vec<_>>(),
            ))),
        };
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 413, "declared: {declared}");
        let problem: Value = response.json().await.unwrap();
        assert_eq!(
            problem["detail"], "the file is too large (limit 1 MiB)",
            "{problem}"
        );
    }
    let imports: i64 = sqlx::query_scalar("SELECT count(*) FROM billing_imports")
        .fetch_one(&small.db.pool)
        .await
        .unwrap();
    assert_eq!(imports, 0, "a refused upload leaves nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_files_of_a_period_add_up_the_same_file_replaces_itself_and_a_restatement_replaces_the_period()
 {
    let app = TestApp::spawn_with_workers().await;
    let (admin, _) = app.user("admin@example.com").await;
    let part1 = focus_rows(&[
        ("111", 1, "AmazonEC2", "10.00"),
        ("111", 2, "AmazonEC2", "5.00"),
    ]);
    let part2 = focus_rows(&[("111", 3, "AmazonS3", "1.00")]);
    import_named(&app, &admin, &part1, "cur-00001.csv", &[]).await;
    let second = import_named(&app, &admin, &part2, "cur-00002.csv", &[]).await;
    assert_eq!(second["rows_replaced"], 0);
    assert_eq!(
        january(&app, &admin).await,
        (1600, 3),
        "two files of one period add up"
    );

    // The same file again (a newer version of part 1) replaces part 1 only.
    let part1_again = focus_rows(&[
        ("111", 1, "AmazonEC2", "12.00"),
        ("111", 2, "AmazonEC2", "5.00"),
    ]);
    let again = import_named(&app, &admin, &part1_again, "cur-00001.csv", &[]).await;
    assert_eq!(again["rows_replaced"], 2);
    assert_eq!(january(&app, &admin).await, (1800, 3));

    // Identical content under another name, gzipped, is the same file.
    let renamed = import_named(&app, &admin, &gzip(&part2), "copy-of-part2.csv.gz", &[]).await;
    assert_eq!(renamed["rows_replaced"], 1);
    assert_eq!(renamed["content_sha256"], second["content_sha256"]);
    assert_eq!(january(&app, &admin).await, (1800, 3));

    // A source_key names the file whatever the upload is called.
    let keyed = focus_rows(&[("222", 5, "AmazonRDS", "3.00")]);
    import_named(
        &app,
        &admin,
        &keyed,
        "a.csv",
        &[("source_key", "rds-export")],
    )
    .await;
    let keyed = focus_rows(&[("222", 5, "AmazonRDS", "4.00")]);
    let rekeyed = import_named(
        &app,
        &admin,
        &keyed,
        "b.csv",
        &[("source_key", "rds-export")],
    )
    .await;
    assert_eq!(rekeyed["rows_replaced"], 1);
    assert_eq!(january(&app, &admin).await, (2200, 4));

    // The same name in another billing period is another file.
    let february = String::from_utf8(focus_rows(&[("111", 1, "AmazonEC2", "7.00")]))
        .unwrap()
        .replace(
            "2024-02-01T00:00:00Z,2024-01-01T00:00:00Z",
            "2024-03-01T00:00:00Z,2024-02-01T00:00:00Z",
        )
        .replace("2024-01-01T", "2024-02-01T");
    let other_period = import_named(&app, &admin, february.as_bytes(), "cur-00001.csv", &[]).await;
    assert_eq!(other_period["rows_replaced"], 0);
    assert_eq!(january(&app, &admin).await, (2200, 5));

    // A restatement is the whole truth for its period: account 111's January is this file now.
    let restated = focus_rows(&[("111", 9, "AmazonEC2", "20.00")]);
    let restatement = import_named(
        &app,
        &admin,
        &restated,
        "restated.csv",
        &[("replace", "period")],
    )
    .await;
    assert_eq!(restatement["replace_mode"], "period");
    assert_eq!(
        restatement["rows_replaced"], 3,
        "parts 1 and 2 of account 111"
    );
    assert_eq!(
        january(&app, &admin).await,
        (2400, 3),
        "20.00 + account 222's 4.00"
    );
    let part1_import = app
        .get(
            &format!("/api/v1/billing/imports/{}", again["id"].as_str().unwrap()),
            &admin,
        )
        .await
        .body;
    assert_eq!(part1_import["replaced_by"], restatement["id"]);

    // Undoing the restatement takes its records, its rollup days and its totals away.
    let path = format!(
        "/api/v1/billing/imports/{}",
        restatement["id"].as_str().unwrap()
    );
    app.delete(&path, &admin)
        .await
        .assert_status(StatusCode::NO_CONTENT);
    app.get(&path, &admin)
        .await
        .assert_status(StatusCode::NOT_FOUND);
    assert_eq!(january(&app, &admin).await, (400, 2));
    let daily: Option<String> = sqlx::query_scalar(
        "SELECT sum(billed_cost)::text FROM cost_daily WHERE day BETWEEN '2024-01-01' AND '2024-01-31'",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(daily.as_deref(), Some("4.00"));

    // Another tenant can neither see nor undo an import.
    let (stranger, _) = app.user("stranger@example.com").await;
    let rds = format!(
        "/api/v1/billing/imports/{}",
        rekeyed["id"].as_str().unwrap()
    );
    app.delete(&rds, &stranger)
        .await
        .assert_problem(StatusCode::NOT_FOUND, "RESOURCE_NOT_FOUND");
    assert_eq!(january(&app, &admin).await, (400, 2));

    // Options are checked before anything is stored.
    let bad = upload_named(&app, &admin, &part1, "x.csv", &[("replace", "everything")]).await;
    bad.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_REQUEST");
    let bad = upload_named(
        &app,
        &admin,
        &part1,
        "x.csv",
        &[("defaults", "{\"Nope\": 1}")],
    )
    .await;
    bad.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_REQUEST");
    let bad = upload_named(&app, &admin, &part1, "x.csv", &[("dataset", "both")]).await;
    bad.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_REQUEST");
    let bad = upload_named(&app, &admin, &part1, "x.csv", &[("source_key", "a\u{0}b")]).await;
    bad.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_REQUEST");
    let bad = app
        .post(
            "/api/v1/billing/imports",
            &admin,
            json!({"url": "https://example.com/x.csv", "replace_all": true}),
        )
        .await;
    bad.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_REQUEST");
    let bad = app
        .post(
            "/api/v1/billing/imports",
            &admin,
            json!({"url": "https://example.com/m.json", "parts": ["file:///etc/passwd"]}),
        )
        .await;
    bad.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_REQUEST");
    let imports: i64 =
        sqlx::query_scalar("SELECT count(*) FROM billing_imports WHERE status = 'queued'")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(imports, 0, "refused requests store nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_imports_every_part_as_one_import_of_whole_periods() {
    let app = TestApp::spawn_with_workers().await;
    let (admin, _) = app.user("admin@example.com").await;
    // An earlier import of the period, which the manifest's parts replace whole.
    import_named(
        &app,
        &admin,
        &focus_rows(&[("111", 1, "AmazonEC2", "99.00")]),
        "old.csv",
        &[],
    )
    .await;

    let part1 = gzip(&focus_rows(&[
        ("111", 1, "AmazonEC2", "1.00"),
        ("111", 2, "AmazonEC2", "2.00"),
    ]));
    let part2 = gzip(&focus_rows(&[("111", 3, "AmazonS3", "3.00")]));
    let manifest = json!({
        "assemblyId": "a1", "bucket": "bucket",
        "billingPeriod": {"start": "20240101T000000.000Z", "end": "20240201T000000.000Z"},
        "reportKeys": ["cur/daily/20240101-20240201/a1/daily-00001.csv.gz",
                       "cur/daily/20240101-20240201/a1/daily-00002.csv.gz"]
    });
    let base = serve_files(vec![
        (
            "/bucket/cur/daily/20240101-20240201/daily-Manifest.json",
            manifest.to_string().into_bytes(),
        ),
        (
            "/bucket/cur/daily/20240101-20240201/a1/daily-00001.csv.gz",
            part1.clone(),
        ),
        (
            "/bucket/cur/daily/20240101-20240201/a1/daily-00002.csv.gz",
            part2.clone(),
        ),
    ])
    .await;
    let url = format!("{base}/bucket/cur/daily/20240101-20240201/daily-Manifest.json?sig=s3cr3t");
    let accepted = app
        .post("/api/v1/billing/imports", &admin, json!({"url": url}))
        .await;
    accepted.assert_status(StatusCode::ACCEPTED);
    let imported = finished(&app, &admin, &accepted.body).await;
    assert_eq!(imported["parts_read"], 2, "{imported}");
    assert_eq!(imported["rows_loaded"], 3);
    assert_eq!(imported["rows_replaced"], 1);
    assert_eq!(imported["replace_mode"], "period");
    assert!(!imported.to_string().contains("s3cr3t"), "{imported}");
    assert_eq!(january(&app, &admin).await, (600, 3));

    // Parts given with the request (a presigned manifest does not authorise its parts); an
    // Azure manifest says which dataset it is.
    let azure_manifest = json!({
        "manifestVersion": "2024-04-01",
        "exportConfig": {"exportName": "amortized", "type": "AmortizedCost"},
        "blobs": [{"blobName": "costs/amortized/run/part_0.csv"}]
    });
    let base = serve_files(vec![
        (
            "/exports/costs/amortized/run/manifest.json",
            azure_manifest.to_string().into_bytes(),
        ),
        ("/signed/p1", part1),
        ("/signed/p2", part2),
    ])
    .await;
    let accepted = app
        .post(
            "/api/v1/billing/imports",
            &admin,
            json!({"url": format!("{base}/exports/costs/amortized/run/manifest.json"),
                   "parts": [format!("{base}/signed/p1?sig=1"), format!("{base}/signed/p2?sig=2")]}),
        )
        .await;
    accepted.assert_status(StatusCode::ACCEPTED);
    let imported = finished(&app, &admin, &accepted.body).await;
    assert_eq!(imported["parts_read"], 2);
    assert_eq!(imported["dataset"], "amortized");
    assert_eq!(imported["rows_replaced"], 3);
    assert_eq!(january(&app, &admin).await, (600, 3));

    // A part that is not there fails the whole import, which leaves nothing behind.
    let accepted = app
        .post(
            "/api/v1/billing/imports",
            &admin,
            json!({"url": format!("{base}/exports/costs/amortized/run/manifest.json"),
                   "parts": [format!("{base}/signed/p1"), format!("{base}/signed/missing")]}),
        )
        .await;
    let task = app
        .wait_for_task(&admin, accepted.body["task_id"].as_str().unwrap())
        .await;
    assert_eq!(task["status"], "failed");
    assert_eq!(task["attempts"], 1, "a 404 is final: {task}");
    assert!(task["error"].as_str().unwrap().contains("404"), "{task}");
    assert_eq!(january(&app, &admin).await, (600, 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actual_and_amortized_exports_of_a_period_never_count_twice() {
    let app = TestApp::spawn_with_workers().await;
    let (admin, _) = app.user("admin@example.com").await;
    let actual = std::fs::read(data_file(
        "exports/azure-ea/sample-anonymous-ea-export-dataset.csv",
    ))
    .unwrap();
    let first = import_named(
        &app,
        &admin,
        &actual,
        "actual.csv",
        &[("dataset", "actual")],
    )
    .await;
    let loaded = first["rows_loaded"].as_i64().unwrap();
    assert!(loaded > 0, "{first}");
    let (cost, records) = {
        let records: i64 = sqlx::query_scalar("SELECT count(*) FROM cost_records")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
        (first["totals"].clone(), records)
    };
    // The amortized view of the same charges (here the same rows, written with other line
    // endings, so it is not the same file) replaces the actual one.
    let text = String::from_utf8(actual.clone()).unwrap();
    let amortized_file = match text.contains("\r\n") {
        true => text.replace("\r\n", "\n"),
        false => text.replace('\n', "\r\n"),
    };
    let amortized = import_named(
        &app,
        &admin,
        amortized_file.as_bytes(),
        "amortized.csv",
        &[("dataset", "amortized")],
    )
    .await;
    assert_ne!(amortized["content_sha256"], first["content_sha256"]);
    assert_eq!(amortized["rows_replaced"], loaded, "{amortized}");
    assert_eq!(amortized["totals"], cost);
    let after: i64 = sqlx::query_scalar("SELECT count(*) FROM cost_records")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(after, records);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_missing_mandatory_columns_names_them_all_and_defaults_fill_them() {
    let app = TestApp::spawn_with_workers().await;
    let (admin, _) = app.user("admin@example.com").await;
    let file = b"BilledCost,ChargePeriodStart,ServiceName\n1.50,2024-01-05T00:00:00Z,AmazonEC2\n";
    let accepted = upload_named(&app, &admin, file, "thin.csv", &[("format", "focus")]).await;
    let task = app
        .wait_for_task(&admin, accepted.body["task_id"].as_str().unwrap())
        .await;
    assert_eq!(task["status"], "failed");
    assert_eq!(task["attempts"], 1, "a missing column is final");
    let error = task["error"].as_str().unwrap();
    for column in [
        "BillingCurrency",
        "BillingAccountId",
        "ChargeClass",
        "ProviderName",
        "EffectiveCost",
    ] {
        assert!(error.contains(column), "{column} in {error}");
    }
    assert!(!error.contains("BilledCost"), "{error}");
    let failed = app
        .get(
            &format!(
                "/api/v1/billing/imports/{}",
                accepted.body["id"].as_str().unwrap()
            ),
            &admin,
        )
        .await
        .body;
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["error"], error);

    // Defaults supply them, and are kept on the import.
    let defaults = json!({
        "BillingCurrency": "EUR", "BillingAccountId": "acct", "BillingAccountName": "Acct",
        "BillingPeriodStart": "2024-01-01", "BillingPeriodEnd": "2024-02-01",
        "ChargeCategory": "Usage", "ChargeClass": "Regular", "ChargeDescription": "-",
        "ChargePeriodEnd": "2024-01-06", "ContractedCost": 0, "EffectiveCost": 0,
        "InvoiceIssuerName": "AWS", "ListCost": 0, "PricingQuantity": 1, "PricingUnit": "Hours",
        "ProviderName": "AWS", "PublisherName": "AWS", "ServiceCategory": "Compute"
    });
    // A short row is refused with its line (the header is line 1), not loaded with nulls.
    let file = b"BilledCost,ChargePeriodStart,ServiceName\n1.50,2024-01-05T00:00:00Z,AmazonEC2\n2.00,2024-01-05T00:00:00Z\n";
    let imported = import_named(
        &app,
        &admin,
        file,
        "thin.csv",
        &[("defaults", &defaults.to_string())],
    )
    .await;
    assert_eq!(imported["rows_loaded"], 1, "{imported}");
    assert_eq!(imported["rows_rejected"], 1);
    assert_eq!(imported["rejected_examples"][0]["line"], 3);
    assert_eq!(
        imported["rejected_examples"][0]["reason"],
        "the row has 2 fields where the header has 3"
    );
    assert_eq!(imported["defaults"]["BillingCurrency"], "EUR");
    assert_eq!(imported["defaults"]["PricingQuantity"], "1");
    assert!(imported["totals"].get("EUR").is_some(), "{imported}");
    let stored: (String, String) =
        sqlx::query_as("SELECT billing_currency, charge_class FROM cost_records")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(stored, ("EUR".into(), "Regular".into()));
}

/// The next message of a `/ws/events` socket, as JSON.
async fn next_event(
    events: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> Value {
    use futures::StreamExt;
    let message = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    serde_json::from_str(message.to_text().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_import_shows_progress_and_announces_its_end_and_final_failures_fail_at_once() {
    use futures::StreamExt;
    let app = TestApp::spawn_with_workers().await;
    let (admin, _) = app.user("admin@example.com").await;
    let address = app.serve().await;
    let (mut events, _) = tokio_tungstenite::connect_async(format!(
        "ws://{address}/ws/events?token={}",
        token(&admin)
    ))
    .await
    .unwrap();

    // A slow server: the file comes in ten pieces, 300 ms apart, with its length declared.
    let mut file = format!("{FOCUS_HEADER}\n").into_bytes();
    for i in 0..20_000u32 {
        file.extend_from_slice(focus_row("111", i % 28 + 1, "AmazonEC2", "0.01").as_bytes());
    }
    let length = file.len();
    let slow = axum::Router::new().route(
        "/slow.csv",
        axum::routing::get(move || {
            let file = file.clone();
            async move {
                let pieces: Vec<Vec<u8>> = file
                    .chunks(file.len() / 10 + 1)
                    .map(<[u8]>::to_vec)
                    .collect();
                let stream = futures::stream::iter(pieces).then(|piece| async move {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    Ok::<_, std::io::Error>(piece)
                });
                (
                    [("content-length", length.to_string())],
                    axum::body::Body::from_stream(stream),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, slow).await });
    let accepted = app
        .post(
            "/api/v1/billing/imports",
            &admin,
            json!({"url": format!("http://{server}/slow.csv")}),
        )
        .await;
    let task_id = accepted.body["task_id"].as_str().unwrap().to_string();
    let mut seen = Vec::new();
    loop {
        let task = app
            .get(&format!("/api/v1/tasks/{task_id}"), &admin)
            .await
            .body;
        if task["status"] == "running" && task["progress"]["percent"].as_i64() > Some(0) {
            seen.push(task["progress"].clone());
        }
        if task["status"] == "succeeded" {
            break;
        }
        assert!(
            ["queued", "running"].contains(&task["status"].as_str().unwrap()),
            "{task}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen.len() >= 2, "progress while running: {seen:?}");
    let last = seen.last().unwrap();
    assert!(last["percent"].as_i64().unwrap() < 100, "{last}");
    assert!(
        last["message"].as_str().unwrap().contains("rows read"),
        "{last}"
    );
    assert!(last["message"].as_str().unwrap().contains(" of "), "{last}");

    let event = next_event(&mut events).await;
    assert_eq!(event["type"], "import.completed", "{event}");
    assert_eq!(event["import_id"], accepted.body["id"]);
    assert_eq!(event["rows_loaded"], 20_000);
    assert!(event.get("tenant_id").is_none());

    // Final failures are not retried: a private address (an IPv6 literal too), a 4xx, a file
    // that is no known export.
    let base = serve_files(vec![("/notes.csv", b"name,amount\nx,1\n".to_vec())]).await;
    for (url, reason) in [
        ("http://[fd00::1]/export.csv".to_string(), "private"),
        (
            "http://169.254.169.254/latest/meta-data/".to_string(),
            "private",
        ),
        (format!("{base}/missing.csv"), "404"),
        (
            format!("{base}/notes.csv"),
            "not one of a known billing export",
        ),
    ] {
        let accepted = app
            .post("/api/v1/billing/imports", &admin, json!({"url": url}))
            .await;
        accepted.assert_status(StatusCode::ACCEPTED);
        let task = app
            .wait_for_task(&admin, accepted.body["task_id"].as_str().unwrap())
            .await;
        assert_eq!(task["status"], "failed", "{url}: {task}");
        assert_eq!(task["attempts"], 1, "{url}: {task}");
        assert!(
            task["error"].as_str().unwrap().contains(reason),
            "{url}: {task}"
        );
        let event = next_event(&mut events).await;
        assert_eq!(event["type"], "import.failed", "{event}");
        assert_eq!(event["import_id"], accepted.body["id"]);
        assert_eq!(event["error"], task["error"]);
    }
    events.close(None).await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_existing_import_helper_still_imports_the_sample() {
    // The sample carries every mandatory column itself: nothing needs a default.
    let app = TestApp::spawn_with_workers().await;
    let (admin, _) = app.user("admin@example.com").await;
    let imported = import(&app, &admin, &crate::billing::focus_sample()).await;
    assert_eq!(imported["defaults"], json!({}));
    assert_eq!(imported["rows_loaded"], 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_focus_1_2_column_and_the_x_columns_are_kept_and_returned() {
    let app = TestApp::spawn_with_workers().await;
    let (admin, _) = app.user("admin@example.com").await;
    // (column, value as written, value as the API returns it)
    let columns: &[(&str, &str, Value)] = &[
        ("AvailabilityZone", "us-east-1a", json!("us-east-1a")),
        ("BilledCost", "0", json!(0.0)),
        ("BillingAccountId", "123", json!("123")),
        ("BillingAccountName", "Payer", json!("Payer")),
        (
            "BillingAccountType",
            "Billing Account",
            json!("Billing Account"),
        ),
        ("BillingCurrency", "USD", json!("USD")),
        (
            "BillingPeriodEnd",
            "2024-02-01T00:00:00Z",
            json!("2024-02-01T00:00:00Z"),
        ),
        (
            "BillingPeriodStart",
            "2024-01-01T00:00:00Z",
            json!("2024-01-01T00:00:00Z"),
        ),
        ("CapacityReservationId", "cr-1", json!("cr-1")),
        ("CapacityReservationStatus", "Used", json!("Used")),
        ("ChargeCategory", "Usage", json!("Usage")),
        ("ChargeClass", "", Value::Null),
        (
            "ChargeDescription",
            "m5.large covered by a savings plan",
            json!("m5.large covered by a savings plan"),
        ),
        ("ChargeFrequency", "Usage-Based", json!("Usage-Based")),
        (
            "ChargePeriodEnd",
            "2024-01-05T01:00:00Z",
            json!("2024-01-05T01:00:00Z"),
        ),
        (
            "ChargePeriodStart",
            "2024-01-05T00:00:00Z",
            json!("2024-01-05T00:00:00Z"),
        ),
        ("CommitmentDiscountCategory", "Spend", json!("Spend")),
        (
            "CommitmentDiscountId",
            "arn:aws:savingsplans::123:savingsplan/sp-1",
            json!("arn:aws:savingsplans::123:savingsplan/sp-1"),
        ),
        ("CommitmentDiscountName", "sp-1", json!("sp-1")),
        ("CommitmentDiscountQuantity", "0.062", json!(0.062)),
        ("CommitmentDiscountStatus", "Used", json!("Used")),
        (
            "CommitmentDiscountType",
            "Compute Savings Plan",
            json!("Compute Savings Plan"),
        ),
        ("CommitmentDiscountUnit", "USD", json!("USD")),
        ("ConsumedQuantity", "1", json!(1.0)),
        ("ConsumedUnit", "Hours", json!("Hours")),
        ("ContractedCost", "0.062", json!(0.062)),
        ("ContractedUnitPrice", "0.062", json!(0.062)),
        ("EffectiveCost", "0.062", json!(0.062)),
        ("InvoiceId", "INV-7", json!("INV-7")),
        ("InvoiceIssuerName", "AWS", json!("AWS")),
        ("ListCost", "0.096", json!(0.096)),
        ("ListUnitPrice", "0.096", json!(0.096)),
        ("PricingCategory", "Committed", json!("Committed")),
        ("PricingCurrency", "USD", json!("USD")),
        ("PricingCurrencyContractedUnitPrice", "0.062", json!(0.062)),
        ("PricingCurrencyEffectiveCost", "0.062", json!(0.062)),
        ("PricingCurrencyListUnitPrice", "0.096", json!(0.096)),
        ("PricingQuantity", "1", json!(1.0)),
        ("PricingUnit", "Hours", json!("Hours")),
        ("ProviderName", "AWS", json!("AWS")),
        ("PublisherName", "AWS", json!("AWS")),
        ("RegionId", "us-east-1", json!("us-east-1")),
        (
            "RegionName",
            "US East (N. Virginia)",
            json!("US East (N. Virginia)"),
        ),
        ("ResourceId", "i-0abc", json!("i-0abc")),
        ("ResourceName", "web-1", json!("web-1")),
        ("ResourceType", "Virtual Machine", json!("Virtual Machine")),
        ("ServiceCategory", "Compute", json!("Compute")),
        ("ServiceName", "Amazon EC2", json!("Amazon EC2")),
        (
            "ServiceSubcategory",
            "Virtual Machines",
            json!("Virtual Machines"),
        ),
        ("SkuId", "SKU1", json!("SKU1")),
        ("SkuMeter", "Compute Usage", json!("Compute Usage")),
        (
            "SkuPriceDetails",
            r#"{"CoreCount": 2, "InstanceType": "m5.large"}"#,
            json!({"CoreCount": 2, "InstanceType": "m5.large"}),
        ),
        ("SkuPriceId", "SKU1.PRICE", json!("SKU1.PRICE")),
        ("SubAccountId", "456", json!("456")),
        ("SubAccountName", "Prod", json!("Prod")),
        ("SubAccountType", "Account", json!("Account")),
        ("Tags", r#"{"team": "web"}"#, json!({"team": "web"})),
        ("x_UsageType", "BoxUsage:m5.large", Value::Null),
        ("x_Operation", "RunInstances", Value::Null),
    ];
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(columns.iter().map(|c| c.0)).unwrap();
    writer.write_record(columns.iter().map(|c| c.1)).unwrap();
    let file = writer.into_inner().unwrap();
    let imported = import_named(&app, &admin, &file, "focus-1.2.csv", &[]).await;
    assert_eq!(imported["rows_loaded"], 1, "{imported}");
    let page = app
        .get(
            "/api/v1/billing?start_date=2024-01-01&end_date=2024-01-31",
            &admin,
        )
        .await
        .body;
    let record = &page["data"][0];
    let snake = |name: &str| {
        let mut out = String::new();
        for (i, c) in name.chars().enumerate() {
            if c.is_ascii_uppercase() && i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        }
        out
    };
    // The API names a few columns as seed 000 does.
    let shown = |column: &str| match column {
        "ChargePeriodStart" => "usage_date".to_string(),
        "ProviderName" => "cloud".to_string(),
        "BilledCost" => "cost".to_string(),
        "BillingCurrency" => "currency".to_string(),
        other => snake(other),
    };
    for (column, _, expected) in columns.iter().filter(|c| !c.0.starts_with("x_")) {
        let field = shown(column);
        let got = &record[&field];
        let same = match (got, expected) {
            (Value::String(a), Value::String(b)) if b.ends_with('Z') => {
                chrono::DateTime::parse_from_rfc3339(a).unwrap()
                    == chrono::DateTime::parse_from_rfc3339(b).unwrap()
            }
            _ => got == expected,
        };
        assert!(same, "{column} ({field}): {got} != {expected}; {record}");
    }
    assert_eq!(
        record["extensions"],
        json!({"x_UsageType": "BoxUsage:m5.large", "x_Operation": "RunInstances"})
    );
}

/// Every dimension a view can group by, with every cost type, summed exactly per tenant.
async fn sums_by_every_dimension(app: &TestApp, tenant: uuid::Uuid) -> Vec<Vec<Option<String>>> {
    let rows: Vec<(Vec<Option<String>>,)> = sqlx::query_as(
        "SELECT ARRAY[day, currency, provider, service, category, region, resource_group,
                      workspace, sku, usr, job, account, sub_account, charge_category,
                      billed, effective, list, contracted, quantity, dbu, n] FROM (
             SELECT (charge_period_start AT TIME ZONE 'UTC')::date::text AS day,
                    billing_currency AS currency, provider_name AS provider,
                    service_name AS service, service_category AS category, region_id AS region,
                    resource_group_of(resource_group, resource_id) AS resource_group,
                    workspace_id AS workspace, sku_name AS sku, user_email AS usr, job_id AS job,
                    billing_account_id AS account, sub_account_id AS sub_account, charge_category,
                    sum(billed_cost)::text AS billed, sum(effective_cost)::text AS effective,
                    sum(list_cost)::text AS list, sum(contracted_cost)::text AS contracted,
                    sum(pricing_quantity)::text AS quantity, sum(dbu_count)::text AS dbu,
                    count(*)::text AS n
             FROM cost_records WHERE tenant_id = $1
             GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14
         ) sums ORDER BY 1",
    )
    .bind(tenant)
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    rows.into_iter().map(|(r,)| r).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_focus_export_imported_into_another_tenant_gives_identical_totals() {
    let app = TestApp::spawn_with_workers().await;
    let (admin, tenant) = app.user("admin@example.com").await;
    import(&app, &admin, &crate::billing::focus_sample()).await;
    let azure = std::fs::read(data_file(
        "exports/azure-ea/sample-anonymous-ea-export-dataset.csv",
    ))
    .unwrap();
    import_named(&app, &admin, &azure, "azure.csv", &[]).await;
    let aws = std::fs::read(data_file(
        "exports/aws-cur/sample-anonymous-aws-export-dataset.csv",
    ))
    .unwrap();
    import_named(&app, &admin, &aws, "cur.csv", &[]).await;
    let databricks = b"account_id,workspace_id,sku_name,usage_start_time,usage_end_time,usage_quantity,usage_unit,usage_metadata,identity_metadata,list_price\n\
        acc,123,PREMIUM_JOBS_COMPUTE,2024-03-05T10:00:00Z,2024-03-05T11:00:00Z,4,DBU,\"{\"\"job_id\"\":\"\"77\"\",\"\"cluster_id\"\":\"\"c-1\"\"}\",\"{\"\"run_as\"\":\"\"ana@example.com\"\"}\",0.15\n";
    import_named(&app, &admin, databricks, "usage.csv", &[]).await;
    let mut with_extensions = format!("{FOCUS_HEADER},x_Custom\n");
    with_extensions.push_str(&focus_row("777", 3, "AmazonEC2", "1.25").replace('\n', ",keep me\n"));
    import_named(&app, &admin, with_extensions.as_bytes(), "x.csv", &[]).await;
    let original = sums_by_every_dimension(&app, tenant).await;
    assert!(original.len() > 50, "{}", original.len());

    // The export, plain and gzipped: the same CSV.
    let plain = app.get("/api/v1/billing/export", &admin).await;
    plain.assert_status(StatusCode::OK);
    assert!(
        plain.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let gzipped = app
        .call_raw_bytes("/api/v1/billing/export?gzip=true", &admin)
        .await;
    let mut unzipped = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(&gzipped[..]),
        &mut unzipped,
    )
    .unwrap();
    assert_eq!(unzipped, plain.text);
    let header = plain.text.lines().next().unwrap();
    for column in strata::billing::formats::FOCUS_MANDATORY {
        assert!(
            header.split(',').any(|c| c == *column),
            "{column} in {header}"
        );
    }
    assert!(header.ends_with(",x_Custom"), "{header}");
    let records: i64 = sqlx::query_scalar("SELECT count(*) FROM cost_records WHERE tenant_id = $1")
        .bind(tenant)
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(plain.text.lines().count() as i64, records + 1);

    // Another tenant imports it and has the same sums, to the last digit.
    let (other, other_tenant) = app.user("other@example.com").await;
    let imported = import_named(&app, &other, &gzipped, "focus-export.csv.gz", &[]).await;
    assert_eq!(imported["rows_rejected"], 0, "{imported}");
    assert_eq!(imported["detected_format"], "focus");
    assert_eq!(sums_by_every_dimension(&app, other_tenant).await, original);
    let extensions: Value = sqlx::query_scalar(
        "SELECT extensions FROM cost_records WHERE tenant_id = $1 AND billing_account_id = '777'",
    )
    .bind(other_tenant)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(extensions["x_Custom"], "keep me");

    // A window exports only its days; bad windows are refused.
    let january = app
        .get(
            "/api/v1/billing/export?start_date=2024-01-01&end_date=2024-01-31",
            &admin,
        )
        .await;
    january.assert_status(StatusCode::OK);
    assert!(january.text.lines().count() < plain.text.lines().count());
    app.get(
        "/api/v1/billing/export?start_date=2024-02-01&end_date=2024-01-01",
        &admin,
    )
    .await
    .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_REQUEST");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cost_view_sums_any_cost_type_over_any_period_and_refuses_what_it_does_not_take() {
    let app = TestApp::spawn_with_workers().await;
    let (admin, tenant) = app.user("admin@example.com").await;
    // Two charges of January 2024 whose four costs differ: a usage row, and one a commitment
    // covers (billed 0).
    let row = |day: u32, billed: &str, effective: &str, list: &str, contracted: &str| {
        format!(
            "{billed},111,Payer,USD,2024-02-01T00:00:00Z,2024-01-01T00:00:00Z,Usage,,x,\
             2024-01-{day:02}T01:00:00Z,2024-01-{day:02}T00:00:00Z,{contracted},{effective},AWS,\
             {list},1,Hours,AWS,AWS,Compute,AmazonEC2\n"
        )
    };
    let file = format!(
        "{FOCUS_HEADER}\n{}{}",
        row(10, "10", "8", "12", "9"),
        row(11, "0", "5", "6", "5.5")
    );
    import_named(&app, &admin, file.as_bytes(), "types.csv", &[]).await;
    let window = "start_date=2024-01-01&end_date=2024-01-31";
    let expected = [
        ("billed", 10.0),
        ("effective", 13.0),
        ("list", 18.0),
        ("contracted", 14.5),
    ];
    for (cost_type, total) in expected {
        let get = |path: String| {
            let app = &app;
            let admin = &admin;
            async move {
                let answer = app.get(&path, admin).await;
                answer.assert_status(StatusCode::OK);
                answer.body
            }
        };
        let q = format!("{window}&cost_type={cost_type}");
        assert_eq!(
            get(format!("/api/v1/billing/costs?{q}")).await["total_cost"],
            total,
            "{cost_type}"
        );
        assert_eq!(
            get(format!("/api/v1/costs/summary?{q}")).await["total_cost"],
            total,
            "{cost_type}"
        );
        let by_date = get(format!("/api/v1/costs/by-date?{q}")).await;
        let days: f64 = by_date["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["cost"].as_f64().unwrap())
            .sum();
        assert_eq!(days, total, "{cost_type}: {by_date}");
        assert_eq!(by_date["period_days"], 31);
        let breakdown = get(format!("/api/v1/costs?{q}&granularity=monthly")).await;
        assert_eq!(
            breakdown["summary"]["total_cost"], total,
            "{cost_type}: {breakdown}"
        );
        let overview = get(format!("/api/v1/dashboard/overview?{q}")).await;
        assert_eq!(overview["total_cost"], total, "{cost_type}");
        let trend = get(format!(
            "/api/v1/dashboard/cost-trend?{q}&granularity=monthly"
        ))
        .await;
        assert_eq!(trend["data"][0]["cost"], total, "{cost_type}: {trend}");
        let ranking = get(format!("/api/v1/dashboard/cost-by-sku?{q}")).await;
        assert_eq!(
            ranking["unattributed_cost"], total,
            "{cost_type}: {ranking}"
        );
        // The seeds' camelCase spellings name the same parameters.
        let camel = format!(
            "startDate=2024-01-01&endDate=2024-01-31&costType={cost_type}&tenantId={tenant}"
        );
        assert_eq!(
            get(format!("/api/v1/costs/summary?{camel}")).await["total_cost"],
            total
        );
    }
    // The default is billed cost; a period outside the charges sums nothing.
    assert_eq!(
        app.get(&format!("/api/v1/costs/summary?{window}"), &admin)
            .await
            .body["total_cost"],
        10.0
    );
    assert_eq!(
        app.get(
            "/api/v1/costs/summary?start_date=2023-01-01&end_date=2023-01-31",
            &admin
        )
        .await
        .body["total_cost"],
        0.0
    );

    // What a view does not take is named, never ignored.
    let refused = app
        .get(
            &format!("/api/v1/costs/summary?{window}&start=2024-01-01&sort=cost"),
            &admin,
        )
        .await;
    refused.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_REQUEST");
    assert!(
        refused.text.contains("start") && refused.text.contains("sort"),
        "{}",
        refused.text
    );
    for path in [
        format!("/api/v1/costs/by-date?days=30&{window}"),
        "/api/v1/dashboard/overview?days=7&startDate=2024-01-01".to_string(),
        "/api/v1/costs/summary?start_date=2024-02-01&end_date=2024-01-01".to_string(),
        "/api/v1/billing/costs?group=service".to_string(),
        "/api/v1/billing?accountId=1&page=2".to_string(),
        "/api/v1/costs?workspace=1".to_string(),
    ] {
        app.get(&path, &admin)
            .await
            .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_REQUEST");
    }
    app.get("/api/v1/costs/summary?cost_type=amortized", &admin)
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "INVALID_REQUEST");
    // Another tenant's id is not found, as its rows would not be.
    let (_, other_tenant) = app.user("other@example.com").await;
    for path in [
        format!("/api/v1/costs/summary?tenantId={other_tenant}"),
        format!("/api/v1/billing/costs?tenant_id={other_tenant}"),
        "/api/v1/costs?tenantId=not-a-uuid".to_string(),
    ] {
        app.get(&path, &admin)
            .await
            .assert_problem(StatusCode::NOT_FOUND, "RESOURCE_NOT_FOUND");
    }
    // Paged lists still take limit, offset and skip.
    let page = app
        .get(&format!("/api/v1/billing?{window}&limit=1&skip=1"), &admin)
        .await;
    page.assert_status(StatusCode::OK);
    assert_eq!(page.body["data"].as_array().unwrap().len(), 1);
    assert_eq!(page.body["offset"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_exports_of_every_schema_import_and_amortized_commitments_are_split_by_cost_type() {
    let app = TestApp::spawn_with_workers().await;
    let (admin, _) = app.user("admin@example.com").await;
    // The older EA export, with a byte-order mark, told by its header and also when named.
    let legacy = "\u{feff}AccountName,SubscriptionId,SubscriptionName,ResourceGroup,ResourceLocation,Date,\
        ProductName,MeterCategory,MeterId,Quantity,UnitPrice,Cost,BillingCurrency,ConsumedService,ResourceId,Tags\r\n\
        Ops,sub-1,Prod,RG-Web,West Europe,01/05/2024,VM D2s v3,Virtual Machines,m1,24,0.1,2.40,EUR,Microsoft.Compute,\
        /subscriptions/sub-1/resourceGroups/RG-Web/providers/Microsoft.Compute/virtualMachines/web-1,\"\"\"env\"\": \"\"prod\"\"\"\r\n";
    for format in [None, Some("azure")] {
        let fields: Vec<(&str, &str)> = format.iter().map(|f| ("format", *f)).collect();
        let imported =
            import_named(&app, &admin, legacy.as_bytes(), "ea-legacy.csv", &fields).await;
        assert_eq!(imported["detected_format"], "azure", "{imported}");
        assert_eq!(imported["rows_loaded"], 1, "{imported}");
        assert_eq!(imported["totals"]["EUR"]["billed_cost"], "2.40");
    }
    let record = &app
        .get(
            "/api/v1/billing?start_date=2024-01-05&end_date=2024-01-05",
            &admin,
        )
        .await
        .body["data"][0];
    assert_eq!(record["resource_group"], "RG-Web");
    assert_eq!(record["resource_name"], "web-1");
    assert_eq!(record["tags"], json!({"env": "prod"}));
    assert_eq!(record["contracted_cost"], 2.4);

    // Amortized EA rows of a reservation: what the invoice says and what it cost differ.
    let amortized = "Date,CostInBillingCurrency,BillingCurrencyCode,ConsumedService,MeterCategory,ChargeType,PricingModel,benefitId,BillingPeriodStartDate,BillingPeriodEndDate\n\
        2024-01-06,3.00,USD,Microsoft.Compute,Virtual Machines,Usage,Reservation,/providers/Microsoft.Capacity/reservationOrders/o,2024-01-01,2024-01-31\n\
        2024-01-06,1.00,USD,Microsoft.Compute,Virtual Machines,UnusedReservation,Reservation,/providers/Microsoft.Capacity/reservationOrders/o,2024-01-01,2024-01-31\n\
        2024-01-06,2.00,USD,Microsoft.Compute,Virtual Machines,Usage,OnDemand,,2024-01-01,2024-01-31\n";
    import_named(
        &app,
        &admin,
        amortized.as_bytes(),
        "amortized.csv",
        &[("dataset", "amortized")],
    )
    .await;
    let day = "start_date=2024-01-06&end_date=2024-01-06&currency=USD";
    let total = |cost_type: &'static str| {
        let path = format!("/api/v1/costs/summary?{day}&cost_type={cost_type}");
        let app = &app;
        let admin = &admin;
        async move {
            app.get(&path, admin).await.body["total_cost"]
                .as_f64()
                .unwrap()
        }
    };
    assert_eq!(
        total("billed").await,
        2.0,
        "only on-demand usage is on the invoice"
    );
    assert_eq!(
        total("effective").await,
        6.0,
        "covered, unused and on-demand usage"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn costs_filter_by_subscription_as_seed_002_asks() {
    let app = TestApp::spawn_with_workers().await;
    let (admin, tenant) = app.user("admin@example.com").await;
    let mut file = format!("{FOCUS_HEADER},SubAccountId\n");
    for (sub, cost) in [("sub-a", "3.00"), ("sub-b", "4.00"), ("sub-a", "0.50")] {
        file.push_str(&focus_row("111", 7, "AmazonEC2", cost).replace('\n', &format!(",{sub}\n")));
    }
    import_named(&app, &admin, file.as_bytes(), "subs.csv", &[]).await;
    let base = format!(
        "/api/v1/costs?tenantId={tenant}&startDate=2024-01-01&endDate=2024-01-31&granularity=daily"
    );
    let all = app.get(&base, &admin).await;
    all.assert_status(StatusCode::OK);
    assert_eq!(all.body["summary"]["total_cost"], 7.5);
    assert_eq!(all.body["total"], 3);
    for cost_type in ["billed", "effective"] {
        let one = app
            .get(
                &format!("{base}&subscriptionId=sub-a&groupBy=service&costType={cost_type}"),
                &admin,
            )
            .await;
        one.assert_status(StatusCode::OK);
        assert_eq!(one.body["summary"]["total_cost"], 3.5, "{}", one.text);
        assert_eq!(one.body["total"], 2);
        assert_eq!(one.body["data"].as_array().unwrap().len(), 2);
        assert_eq!(
            one.body["costs"][0]["by_service"]["AmazonEC2"], 3.5,
            "{}",
            one.text
        );
    }
    let none = app
        .get(&format!("{base}&subscriptionId=sub-z"), &admin)
        .await;
    assert_eq!(none.body["summary"]["total_cost"], 0.0);
    assert_eq!(none.body["total"], 0);
}
