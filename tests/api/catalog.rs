//! Catalogs: service categories, service mappings applied to imported cost records, unmapped
//! services, the instance catalog and utilisation samples.

use axum::http::StatusCode;
use chrono::{Duration, Utc};
use serde_json::{Value, json};

use crate::billing::{data_file, import};
use crate::helpers::{As, TestApp};

fn names(list: &Value, key: &str) -> Vec<String> {
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item[key].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn service_categories_are_focus_values_and_tenants_add_their_own() {
    let app = TestApp::spawn().await;
    let (admin, _) = app.user("admin@example.com").await;
    let (other, _) = app.user("other@example.com").await;

    let list = app.get("/api/v1/service-categories", &admin).await;
    list.assert_status(StatusCode::OK);
    assert_eq!(list.body["total"], 19, "{}", list.text);
    assert_eq!(list.headers["x-total-count"], "19");
    let builtin = names(&list.body, "category_name");
    for name in [
        "AI and Machine Learning",
        "Compute",
        "Databases",
        "Internet of Things",
        "Management and Governance",
        "Other",
    ] {
        assert!(builtin.contains(&name.to_string()), "{name} is built in");
    }
    assert!(
        list.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["built_in"] == true)
    );
    let compute = list.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["category_name"] == "Compute")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let got = app
        .get(&format!("/api/v1/service-categories/{compute}"), &other)
        .await;
    got.assert_status(StatusCode::OK);
    assert_eq!(got.body["category_name"], "Compute");

    let created = app
        .post(
            "/api/v1/service-categories",
            &admin,
            json!({"category_name": " FinOps Tools "}),
        )
        .await;
    created.assert_status(StatusCode::CREATED);
    assert_eq!(created.body["category_name"], "FinOps Tools");
    assert_eq!(created.body["built_in"], false);
    let id = created.body["id"].as_str().unwrap();
    let list = app.get("/api/v1/service-categories", &admin).await;
    assert_eq!(list.body["total"], 20);
    assert_eq!(
        app.get(&format!("/api/v1/service-categories/{id}"), &admin)
            .await
            .body["category_name"],
        "FinOps Tools"
    );

    // Duplicates, case-insensitively, of the tenant's own and of built-ins.
    for name in ["finops tools", "COMPUTE", "other"] {
        app.post(
            "/api/v1/service-categories",
            &admin,
            json!({"category_name": name}),
        )
        .await
        .assert_problem(StatusCode::CONFLICT, "DUPLICATE_RESOURCE");
    }
    app.post(
        "/api/v1/service-categories",
        &admin,
        json!({"category_name": "  "}),
    )
    .await
    .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_REQUEST");
    app.post("/api/v1/service-categories", &admin, json!({}))
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_REQUEST");

    // Another tenant neither sees nor collides with this one's categories.
    app.get(&format!("/api/v1/service-categories/{id}"), &other)
        .await
        .assert_problem(StatusCode::NOT_FOUND, "RESOURCE_NOT_FOUND");
    assert_eq!(
        app.get("/api/v1/service-categories", &other).await.body["total"],
        19
    );
    app.post(
        "/api/v1/service-categories",
        &other,
        json!({"category_name": "FinOps Tools"}),
    )
    .await
    .assert_status(StatusCode::CREATED);
    app.get(
        &format!("/api/v1/service-categories/{}", uuid::Uuid::new_v4()),
        &admin,
    )
    .await
    .assert_problem(StatusCode::NOT_FOUND, "RESOURCE_NOT_FOUND");
    app.get("/api/v1/service-categories", &As::Anonymous)
        .await
        .assert_status(StatusCode::UNAUTHORIZED);
}

/// (records, records with this category) of a service in the cost records and the rollup.
async fn categorised(app: &TestApp, service: &str, category: &str) -> [(i64, i64); 2] {
    let records: (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE service_category = $2) FROM cost_records
         WHERE service_name = $1",
    )
    .bind(service)
    .bind(category)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    let daily: (i64, i64) = sqlx::query_as(
        "SELECT COALESCE(sum(records), 0)::bigint,
                COALESCE(sum(records) FILTER (WHERE service_category = $2), 0)::bigint
         FROM cost_daily WHERE service_name = $1",
    )
    .bind(service)
    .bind(category)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    [records, daily]
}

fn unmapped<'a>(list: &'a Value, service: &str) -> Option<&'a Value> {
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service_name"] == service)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_mapping_recategorises_imported_records_and_leaves_the_unmapped_services() {
    let app = TestApp::spawn_with_workers().await;
    let (admin, _) = app.user("admin@example.com").await;
    let (other, _) = app.user("other@example.com").await;
    let aws = std::fs::read(data_file(
        "exports/aws-cur/sample-anonymous-aws-export-dataset.csv",
    ))
    .unwrap();
    let first = import(&app, &admin, &aws).await;

    // The AWS sample has two product codes the category map does not know: 16 AWSCloudShell
    // records and 46 AWSMigrationHubRefactorSpaces ones, which the import gives `Other`.
    assert_eq!(
        categorised(&app, "AWSCloudShell", "Other").await,
        [(16, 16), (16, 16)]
    );
    let list = app.get("/api/v1/unmapped-services", &admin).await;
    list.assert_status(StatusCode::OK);
    assert_eq!(list.body["total"], 2, "{}", list.text);
    let shell = unmapped(&list.body, "AWSCloudShell").unwrap();
    assert_eq!(shell["provider_name"], "AWS");
    assert_eq!(shell["record_count"], 16);
    assert_eq!(shell["last_import_id"], first["id"]);
    let cost: f64 = shell["billed_cost"]["USD"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let want: f64 = sqlx::query_scalar(
        "SELECT sum(billed_cost)::float8 FROM cost_records WHERE service_name = 'AWSCloudShell'",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert!((cost - want).abs() < 1e-9, "{cost} vs {want}");
    assert_eq!(
        unmapped(&list.body, "AWSMigrationHubRefactorSpaces").unwrap()["record_count"],
        46
    );
    assert!(
        unmapped(&list.body, "AmazonS3").is_none(),
        "categorised services are not unmapped"
    );
    assert_eq!(
        app.get("/api/v1/unmapped-services", &other).await.body["total"],
        0,
        "another tenant sees none"
    );

    // Mapping a service (by code, provider compared case-insensitively) recategorises it.
    let mapping = app
        .post(
            "/api/v1/services",
            &admin,
            json!({"cloud_provider": "aws", "service_code": "AWSCloudShell",
                   "service_name": "CloudShell", "category": "developer tools"}),
        )
        .await;
    mapping.assert_status(StatusCode::CREATED);
    assert_eq!(mapping.body["category"], "Developer Tools");
    assert_eq!(mapping.body["records_recategorised"], 16);
    let id = mapping.body["id"].as_str().unwrap().to_string();
    assert_eq!(
        categorised(&app, "AWSCloudShell", "Developer Tools").await,
        [(16, 16), (16, 16)],
        "records and the daily rollup take the category"
    );
    let list = app.get("/api/v1/unmapped-services", &admin).await;
    assert_eq!(list.body["total"], 1);
    assert!(unmapped(&list.body, "AWSCloudShell").is_none());

    // A mapping by service name works too, and may override the import's category.
    let s3 = app
        .post(
            "/api/v1/services",
            &admin,
            json!({"cloud_provider": "AWS", "service_code": "S3", "service_name": "AmazonS3",
                   "category": "Databases"}),
        )
        .await;
    s3.assert_status(StatusCode::CREATED);
    assert_eq!(s3.body["records_recategorised"], 799);
    assert_eq!(
        categorised(&app, "AmazonS3", "Databases").await,
        [(799, 799), (799, 799)]
    );

    let got = app.get(&format!("/api/v1/services/{id}"), &admin).await;
    got.assert_status(StatusCode::OK);
    assert_eq!(got.body["service_code"], "AWSCloudShell");
    assert_eq!(got.body["cloud_provider"], "aws");
    assert!(got.body.get("records_recategorised").is_none());
    let services = app.get("/api/v1/services", &admin).await;
    services.assert_status(StatusCode::OK);
    assert_eq!(services.body["total"], 2);

    // Duplicates, unknown categories and bad fields.
    app.post(
        "/api/v1/services",
        &admin,
        json!({"cloud_provider": "AWS", "service_code": "AWSCloudShell",
               "service_name": "Shell", "category": "Compute"}),
    )
    .await
    .assert_problem(StatusCode::CONFLICT, "DUPLICATE_RESOURCE");
    let unknown = app
        .post(
            "/api/v1/services",
            &admin,
            json!({"cloud_provider": "AWS", "service_code": "AmazonEC2",
                   "service_name": "EC2", "category": "Quantum"}),
        )
        .await;
    unknown.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_REQUEST");
    assert_eq!(unknown.body["errors"][0]["field"], "category");
    let blank = app
        .post(
            "/api/v1/services",
            &admin,
            json!({"cloud_provider": "", "service_code": "AmazonEC2",
                   "service_name": "EC2", "category": "Compute"}),
        )
        .await;
    blank.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_REQUEST");
    assert_eq!(blank.body["errors"][0]["field"], "cloud_provider");
    app.post("/api/v1/services", &admin, json!({"cloud_provider": "AWS"}))
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_REQUEST");
    // A tenant's own category is one a service can be mapped to; another tenant's is not.
    app.post(
        "/api/v1/service-categories",
        &other,
        json!({"category_name": "Sandboxes"}),
    )
    .await
    .assert_status(StatusCode::CREATED);
    app.post(
        "/api/v1/services",
        &admin,
        json!({"cloud_provider": "AWS", "service_code": "AmazonEC2",
               "service_name": "EC2", "category": "Sandboxes"}),
    )
    .await
    .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_REQUEST");

    // Another tenant cannot see or delete the mapping, nor touch the unmapped service.
    app.get(&format!("/api/v1/services/{id}"), &other)
        .await
        .assert_problem(StatusCode::NOT_FOUND, "RESOURCE_NOT_FOUND");
    app.delete(&format!("/api/v1/services/{id}"), &other)
        .await
        .assert_problem(StatusCode::NOT_FOUND, "RESOURCE_NOT_FOUND");
    assert_eq!(app.get("/api/v1/services", &other).await.body["total"], 0);
    let refactor = unmapped(&list.body, "AWSMigrationHubRefactorSpaces").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.delete(&format!("/api/v1/unmapped-services/{refactor}"), &other)
        .await
        .assert_problem(StatusCode::NOT_FOUND, "RESOURCE_NOT_FOUND");

    // A dismissed unmapped service is gone until a later import sees it again.
    app.delete(&format!("/api/v1/unmapped-services/{refactor}"), &admin)
        .await
        .assert_status(StatusCode::NO_CONTENT);
    app.delete(&format!("/api/v1/unmapped-services/{refactor}"), &admin)
        .await
        .assert_problem(StatusCode::NOT_FOUND, "RESOURCE_NOT_FOUND");
    assert_eq!(
        app.get("/api/v1/unmapped-services", &admin).await.body["total"],
        0
    );
    let second = import(&app, &admin, &aws).await;
    let list = app.get("/api/v1/unmapped-services", &admin).await;
    assert_eq!(list.body["total"], 1, "{}", list.text);
    let back = unmapped(&list.body, "AWSMigrationHubRefactorSpaces").unwrap();
    assert_eq!(back["last_import_id"], second["id"]);
    assert_eq!(back["record_count"], 46);
    // The later import's records (which replaced the first's) took the mappings as they loaded.
    assert_eq!(
        categorised(&app, "AWSCloudShell", "Developer Tools").await,
        [(16, 16), (16, 16)]
    );
    assert_eq!(
        categorised(&app, "AmazonS3", "Databases").await,
        [(799, 799), (799, 799)]
    );

    // Deleting a mapping keeps the categories it gave.
    app.delete(&format!("/api/v1/services/{id}"), &admin)
        .await
        .assert_status(StatusCode::NO_CONTENT);
    app.get(&format!("/api/v1/services/{id}"), &admin)
        .await
        .assert_problem(StatusCode::NOT_FOUND, "RESOURCE_NOT_FOUND");
    assert_eq!(
        categorised(&app, "AWSCloudShell", "Developer Tools").await,
        [(16, 16), (16, 16)]
    );
}

fn pricing_file(path: &str) -> String {
    std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("data/pricing")
            .join(path),
    )
    .unwrap()
}

/// The on-demand price of a Google Cloud machine type in a region, from the shipped file.
fn gcp_price(machine_type: &str, region: &str) -> f64 {
    let file = pricing_file("gcp_compute_hourly.csv");
    file.lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            (fields[0] == machine_type && fields[1] == region).then(|| fields[2].parse().unwrap())
        })
        .unwrap()
}

#[tokio::test]
async fn the_instance_catalog_has_real_shapes_and_prices() {
    let app = TestApp::spawn().await;
    let (admin, _) = app.user("admin@example.com").await;

    let e2 = app
        .get("/api/v1/instance-catalog/e2-standard-4", &admin)
        .await;
    e2.assert_status(StatusCode::OK);
    assert_eq!(e2.body["provider"], "gcp");
    assert_eq!(e2.body["family"], "e2");
    assert_eq!(e2.body["vcpu"], 4);
    assert_eq!(e2.body["memory_gib"], 16.0);
    let central = e2.body["prices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["region"] == "us-central1")
        .unwrap();
    assert_eq!(
        central["price_per_hour"].as_f64().unwrap(),
        gcp_price("e2-standard-4", "us-central1")
    );
    assert_eq!(central["currency"], "USD");

    let m5 = app.get("/api/v1/instance-catalog/m5.large", &admin).await;
    m5.assert_status(StatusCode::OK);
    assert_eq!(
        (
            &m5.body["provider"],
            &m5.body["family"],
            &m5.body["vcpu"],
            &m5.body["memory_gib"]
        ),
        (&json!("aws"), &json!("m5"), &json!(2), &json!(8.0))
    );
    assert_eq!(m5.body["prices"], json!([]), "no AWS prices but one type's");
    let x2 = app
        .get("/api/v1/instance-catalog/x2iedn.32xlarge", &admin)
        .await;
    x2.assert_status(StatusCode::OK);
    assert_eq!(x2.body["vcpu"], 128);
    assert_eq!(x2.body["prices"].as_array().unwrap().len(), 25);
    assert!(
        x2.body["prices"]
            .as_array()
            .unwrap()
            .contains(&json!({"region": "us-east-1", "price_per_hour": 26.676, "currency": "USD"}))
    );

    // family=m5 lists the m5 sizes of the AWS file.
    let csv = pricing_file("aws-vantage/instance-types.csv");
    let m5_sizes = csv.lines().filter(|l| l.contains(",m5.")).count();
    assert!(m5_sizes >= 8);
    let family = app
        .get("/api/v1/instance-catalog?family=M5&limit=1000", &admin)
        .await;
    family.assert_status(StatusCode::OK);
    assert_eq!(family.body["total"], m5_sizes);
    assert!(
        names(&family.body, "instance_type")
            .iter()
            .all(|t| t.starts_with("m5."))
    );

    // region= keeps the types priced there, with that region's price only.
    let priced = app
        .get(
            "/api/v1/instance-catalog?provider=gcp&family=e2&region=us-central1",
            &admin,
        )
        .await;
    priced.assert_status(StatusCode::OK);
    let data = priced.body["data"].as_array().unwrap();
    assert!(data.len() >= 10, "{}", priced.text);
    assert!(data.iter().all(|t| t["family"] == "e2"
        && t["prices"].as_array().unwrap().len() == 1
        && t["prices"][0]["region"] == "us-central1"));
    let aws_east = app
        .get(
            "/api/v1/instance-catalog?provider=aws&region=us-east-1",
            &admin,
        )
        .await;
    assert_eq!(aws_east.body["total"], 1);
    assert_eq!(aws_east.body["data"][0]["instance_type"], "x2iedn.32xlarge");

    // Pages of the whole catalog: 371 AWS types and 568 Google Cloud ones.
    let page = app
        .get("/api/v1/instance-catalog?limit=5&offset=10", &admin)
        .await;
    page.assert_status(StatusCode::OK);
    assert_eq!(page.body["total"], 371 + 568);
    assert_eq!(page.headers["x-total-count"], "939");
    assert_eq!(page.body["data"].as_array().unwrap().len(), 5);
    assert_eq!(page.body["offset"], 10);

    app.get("/api/v1/instance-catalog/nope.huge", &admin)
        .await
        .assert_problem(StatusCode::NOT_FOUND, "RESOURCE_NOT_FOUND");
    let bad = app
        .get("/api/v1/instance-catalog?provider=ibm", &admin)
        .await;
    bad.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_REQUEST");
    assert_eq!(bad.body["errors"][0]["field"], "provider");
    app.get("/api/v1/instance-catalog?limit=0", &admin)
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_REQUEST");
    app.get("/api/v1/instance-catalog", &As::Anonymous)
        .await
        .assert_status(StatusCode::UNAUTHORIZED);
}

/// A VM of the caller's tenant (its deployment stays queued: no workers run).
async fn resource(app: &TestApp, who: &As) -> String {
    let provider = app.sandbox(who).await;
    let created = app
        .post(
            "/api/v1/resources",
            who,
            json!({"provider_id": provider, "kind": "vm", "name": "web-1",
                   "spec": {"size": "small", "boot_seconds": 0}}),
        )
        .await;
    created.assert_status(StatusCode::ACCEPTED);
    created.body["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn usage_samples_are_recorded_and_summarised_over_a_window() {
    let app = TestApp::spawn().await;
    let (admin, _) = app.user("admin@example.com").await;
    let (other, _) = app.user("other@example.com").await;
    let vm = resource(&app, &admin).await;
    let theirs = resource(&app, &other).await;

    let one = app
        .post(
            "/api/v1/usage",
            &admin,
            json!({"resource_id": vm, "cpu_percent": 20.0, "memory_percent": 40.0}),
        )
        .await;
    one.assert_status(StatusCode::CREATED);
    assert_eq!(one.body["resource_id"], vm.as_str());
    assert_eq!(one.body["cpu_percent"], 20.0);
    let id = one.body["id"].as_str().unwrap().to_string();
    let ago = |days: i64| (Utc::now() - Duration::days(days)).to_rfc3339();
    let batch = app
        .post(
            "/api/v1/usage",
            &admin,
            json!({"samples": [
                {"resource_id": vm, "cpu_percent": 60.0, "memory_percent": 50.0, "sampled_at": ago(1)},
                {"resource_id": vm, "cpu_percent": 100.0, "memory_percent": 0.0, "sampled_at": ago(2)},
                {"resource_id": vm, "cpu_percent": 90.0, "memory_percent": 95.0, "sampled_at": ago(20)},
            ]}),
        )
        .await;
    batch.assert_status(StatusCode::CREATED);
    let data = batch.body["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    assert_eq!(data[2]["cpu_percent"], 90.0, "in the order sent");

    // The default window is 14 days: three samples.
    let window = app
        .get(&format!("/api/v1/usage?resource_id={vm}"), &admin)
        .await;
    window.assert_status(StatusCode::OK);
    assert_eq!(window.body["days"], 14);
    assert_eq!(window.body["total"], 3);
    assert_eq!(window.headers["x-total-count"], "3");
    let summary = &window.body["summary"];
    assert_eq!(summary["samples"], 3);
    assert_eq!(summary["avg_cpu_percent"], 60.0);
    assert_eq!(summary["max_cpu_percent"], 100.0);
    assert_eq!(summary["avg_memory_percent"], 30.0);
    assert_eq!(summary["max_memory_percent"], 50.0);
    assert_eq!(window.body["data"][0]["id"], id.as_str(), "newest first");
    let month = app
        .get(&format!("/api/v1/usage?resource_id={vm}&days=30"), &admin)
        .await;
    assert_eq!(month.body["summary"]["samples"], 4);
    assert_eq!(month.body["summary"]["max_memory_percent"], 95.0);
    let paged = app.get("/api/v1/usage?days=30&limit=2", &admin).await;
    assert_eq!(paged.body["total"], 4);
    assert_eq!(paged.body["data"].as_array().unwrap().len(), 2);

    let got = app.get(&format!("/api/v1/usage/{id}"), &admin).await;
    got.assert_status(StatusCode::OK);
    assert_eq!(got.body["memory_percent"], 40.0);

    // Bad samples, windows and resources.
    let future = (Utc::now() + Duration::hours(1)).to_rfc3339();
    for (body, field) in [
        (
            json!({"resource_id": vm, "cpu_percent": 101.0, "memory_percent": 1.0}),
            "cpu_percent",
        ),
        (
            json!({"resource_id": vm, "cpu_percent": 1.0, "memory_percent": -0.5}),
            "memory_percent",
        ),
        (
            json!({"resource_id": vm, "cpu_percent": 1.0, "memory_percent": 1.0, "sampled_at": future}),
            "sampled_at",
        ),
        (
            json!({"resource_id": theirs, "cpu_percent": 1.0, "memory_percent": 1.0}),
            "resource_id",
        ),
        (json!({"samples": []}), "samples"),
        (
            json!({"samples": [{"resource_id": vm, "cpu_percent": 1.0, "memory_percent": 1.0},
                               {"resource_id": uuid::Uuid::new_v4(), "cpu_percent": 1.0, "memory_percent": 1.0}]}),
            "samples[1].resource_id",
        ),
    ] {
        let answer = app.post("/api/v1/usage", &admin, body).await;
        answer.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_REQUEST");
        assert_eq!(answer.body["errors"][0]["field"], field, "{}", answer.text);
    }
    let too_many: Vec<Value> = (0..1001)
        .map(|_| json!({"resource_id": vm, "cpu_percent": 1.0, "memory_percent": 1.0}))
        .collect();
    app.post("/api/v1/usage", &admin, json!({"samples": too_many}))
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_REQUEST");
    app.post("/api/v1/usage", &admin, json!({"resource_id": vm}))
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_REQUEST");
    for days in [0, 366] {
        app.get(&format!("/api/v1/usage?days={days}"), &admin)
            .await
            .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_REQUEST");
    }
    // Nothing of the failed requests was stored.
    assert_eq!(
        app.get("/api/v1/usage?days=365", &admin).await.body["total"],
        4
    );

    // Another tenant's resource and samples are not there for this one, and the reverse.
    app.get(&format!("/api/v1/usage?resource_id={theirs}"), &admin)
        .await
        .assert_problem(StatusCode::NOT_FOUND, "RESOURCE_NOT_FOUND");
    app.get(&format!("/api/v1/usage/{id}"), &other)
        .await
        .assert_problem(StatusCode::NOT_FOUND, "RESOURCE_NOT_FOUND");
    let theirs_window = app.get("/api/v1/usage?days=365", &other).await;
    assert_eq!(theirs_window.body["total"], 0);
    assert_eq!(
        theirs_window.body["summary"]["avg_cpu_percent"],
        Value::Null
    );
}
