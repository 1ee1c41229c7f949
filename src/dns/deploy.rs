//! A deployment of a `dns_record` resource: the record is written through the provider's DNS
//! host's API (no Terraform), with the same log, statuses and outcome as any deployment.
//!
//! A record belongs to its resource by id (`cloud_id`). A retried create that finds an
//! identical record adopts it (a worker that died after creating it left it there); any other
//! record of the same name and type is a conflict, never overwritten.

use serde_json::{Value, json};

use super::{DnsClient, DnsError, Record, RecordData, fqdn};
use crate::deployments::job::Loaded;
use crate::deployments::logs::LogWriter;
use crate::jobs::{JobContext, JobError};

fn job_error(err: DnsError) -> JobError {
    match err {
        DnsError::Unavailable(_) => JobError::Retryable(err.to_string()),
        _ => JobError::Fatal(err.to_string()),
    }
}

/// What a record's resource reports as its attributes.
pub fn outputs(zone_id: &str, record: &Record) -> Value {
    json!({
        "record_id": record.id,
        "zone_id": zone_id,
        "fqdn": record.name,
        "record_type": record.record_type,
        "value": record.content,
        "ttl": record.ttl,
        "proxied": record.proxied,
    })
}

/// The attributes a sync compares with what the host has.
const COMPARED: &[&str] = &["fqdn", "record_type", "value", "ttl", "proxied"];

pub(crate) async fn execute(
    ctx: &JobContext,
    log: &LogWriter,
    d: &Loaded,
) -> Result<Value, JobError> {
    if d.operation == "destroy" && d.cloud_id.is_none() {
        log.line(
            "info",
            "dns",
            "the record was never created; nothing to delete",
        );
        return Ok(json!({"deployment_id": d.id, "outputs": {}}));
    }
    let client = DnsClient::for_provider(&ctx.state, d.tenant_id, d.provider_id)
        .await
        .map_err(job_error)?;
    let spec = d.desired.get("spec").cloned().unwrap_or(json!({}));
    let text = |key: &str| spec.get(key).and_then(Value::as_str).map(str::to_string);
    let zone = text("zone");
    let zone_id = match (text("zone_id"), &zone) {
        (Some(id), _) => id,
        (None, Some(zone)) => client.zone_id(zone).await.map_err(job_error)?,
        (None, None) => return Err(JobError::Fatal("the spec names no zone".into())),
    };
    let data = RecordData {
        // Without the zone's name the host qualifies the name itself.
        name: zone
            .as_deref()
            .map_or_else(|| d.name.clone(), |zone| fqdn(&d.name, zone)),
        record_type: text("record_type").unwrap_or_else(|| "A".into()),
        content: text("value").unwrap_or_default(),
        ttl: spec.get("ttl").and_then(Value::as_u64).unwrap_or(300) as u32,
        proxied: spec
            .get("proxied")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    };
    let say = |message: String| log.line("info", "dns", message);
    let id = d.id;

    match (d.operation.as_str(), d.action.as_deref()) {
        ("destroy", _) => {
            if let Some(record_id) = &d.cloud_id {
                match client.delete(&zone_id, record_id).await {
                    Ok(()) => say(format!("deleted {} record {}", data.record_type, data.name)),
                    Err(DnsError::RecordNotFound(_)) => say(format!(
                        "record {record_id} was already gone from zone {zone_id}"
                    )),
                    Err(err) => return Err(job_error(err)),
                }
            }
            Ok(json!({"deployment_id": id, "outputs": {}}))
        }
        ("action", Some(action @ ("refresh" | "health_check"))) => {
            let Some(record_id) = &d.cloud_id else {
                return Err(JobError::Fatal("the record was never created".into()));
            };
            let (actual, drift) = match client.get(&zone_id, record_id).await {
                Ok(record) => {
                    let actual = outputs(&zone_id, &record);
                    let drift: Vec<Value> = COMPARED
                        .iter()
                        .filter(|key| d.attributes.get(**key) != actual.get(**key))
                        .map(|key| json!({"attribute": key, "expected": d.attributes.get(*key), "actual": actual.get(*key)}))
                        .collect();
                    (actual, drift)
                }
                Err(DnsError::RecordNotFound(_)) => (
                    d.attributes.clone(),
                    vec![json!({"attribute": "record_id", "expected": record_id, "actual": null})],
                ),
                Err(err) => return Err(job_error(err)),
            };
            for change in &drift {
                log.line(
                    "warn",
                    "drift",
                    format!(
                        "{}: expected {}, found {}",
                        change["attribute"].as_str().unwrap_or_default(),
                        change["expected"],
                        change["actual"]
                    ),
                );
            }
            if drift.is_empty() {
                say(format!("{} matches the DNS host", data.name));
            }
            if action == "health_check" {
                return Ok(
                    json!({"deployment_id": id, "healthy": drift.is_empty(), "drift": !drift.is_empty()}),
                );
            }
            Ok(json!({"deployment_id": id, "outputs": actual, "drift": drift}))
        }
        _ => {
            if let Some(record_id) = &d.cloud_id {
                match client.update(&zone_id, record_id, &data).await {
                    Ok(record) => {
                        say(format!(
                            "updated {} {} -> {}",
                            record.record_type, record.name, record.content
                        ));
                        return Ok(
                            json!({"deployment_id": id, "outputs": outputs(&zone_id, &record)}),
                        );
                    }
                    Err(DnsError::RecordNotFound(_)) => say(format!(
                        "record {record_id} was deleted outside Strata; creating it again"
                    )),
                    Err(err) => return Err(job_error(err)),
                }
            }
            let existing = client
                .find(&zone_id, &data.name, &data.record_type)
                .await
                .map_err(job_error)?;
            let record = if let Some(same) = existing.iter().find(|r| r.content == data.content) {
                say(format!(
                    "adopting the identical record {} already in the zone",
                    same.id
                ));
                if data.matches(same) {
                    same.clone()
                } else {
                    client
                        .update(&zone_id, &same.id, &data)
                        .await
                        .map_err(job_error)?
                }
            } else if let Some(other) = existing.first() {
                return Err(JobError::Fatal(format!(
                    "conflict: zone already has a {} record {} -> {} (id {}) that this resource does not manage",
                    other.record_type, other.name, other.content, other.id
                )));
            } else {
                client.create(&zone_id, &data).await.map_err(job_error)?
            };
            say(format!(
                "record {} {} -> {} (ttl {}{})",
                record.record_type,
                record.name,
                record.content,
                record.ttl,
                if record.proxied { ", proxied" } else { "" }
            ));
            Ok(json!({"deployment_id": id, "outputs": outputs(&zone_id, &record)}))
        }
    }
}
