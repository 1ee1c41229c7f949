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
    let Some(zone) = text("zone") else {
        return Err(JobError::Fatal("the spec names no zone".into()));
    };
    // The zone the record was made in, for a record that exists.
    let made_in = d
        .attributes
        .get("zone_id")
        .and_then(Value::as_str)
        .map(str::to_string);
    let zone_id = match (d.operation.as_str(), &made_in, text("zone_id")) {
        ("destroy", Some(made_in), _) => made_in.clone(),
        (_, _, Some(id)) => id,
        _ => match client.zone_id(&zone).await {
            Ok(id) => id,
            Err(DnsError::ZoneNotFound(_)) if d.operation == "destroy" => {
                log.line(
                    "info",
                    "dns",
                    format!("zone {zone} is gone, and its records with it"),
                );
                return Ok(json!({"deployment_id": d.id, "outputs": {}}));
            }
            Err(err) => return Err(job_error(err)),
        },
    };
    let data = RecordData {
        name: fqdn(&d.name, &zone),
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
                    // Only what the last run recorded is compared (older runs recorded less).
                    let drift: Vec<Value> = COMPARED
                        .iter()
                        .filter(|key| {
                            d.attributes.get(**key).is_some()
                                && d.attributes.get(**key) != actual.get(**key)
                        })
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
            log.drift(&drift);
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
            // A record moved to another zone: the old one goes, a new one is made.
            let mut cloud_id = d.cloud_id.clone();
            if let (Some(record_id), Some(old_zone)) = (&cloud_id, &made_in)
                && *old_zone != zone_id
            {
                match client.delete(old_zone, record_id).await {
                    Ok(()) | Err(DnsError::RecordNotFound(_)) | Err(DnsError::ZoneNotFound(_)) => {
                        say(format!(
                            "removed record {record_id} from its old zone {old_zone}"
                        ));
                    }
                    Err(err) => return Err(job_error(err)),
                }
                cloud_id = None;
            }
            if let Some(record_id) = &cloud_id {
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
            // An identical record is adopted (a worker that died after creating it left it),
            // unless another live resource holds it.
            let mut identical = None;
            for record in existing.iter().filter(|r| r.content == data.content) {
                let held = sqlx::query_scalar!(
                    r#"SELECT EXISTS (SELECT 1 FROM resources WHERE provider_id = $1 AND cloud_id = $2
                                      AND id <> $3 AND status <> 'destroyed') AS "held!""#,
                    d.provider_id,
                    record.id,
                    d.resource_id
                )
                .fetch_one(&ctx.state.db)
                .await?;
                if !held {
                    identical = Some(record);
                    break;
                }
            }
            let record = if let Some(same) = identical {
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
                // Another resource's, or made outside Strata: never overwritten.
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
