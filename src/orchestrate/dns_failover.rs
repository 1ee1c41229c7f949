//! `POST /orchestrate/dns-failover`: points a DNS record at a standby (a resource's IP or a
//! given address), verifies it on the DNS host, and records where it pointed before so it can
//! be failed back (a failover to `previous_value`). A record Strata manages changes through its
//! resource's deployment, so its resource stays the truth; any other record is changed
//! directly on the host.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;
use uuid::Uuid;

use super::steps::{Steps, wait_for_task};
use crate::auth::{Role, TenantAuth};
use crate::dns::{DnsClient, RecordData, fqdn, valid_record_name};
use crate::error::{AppError, AppResult};
use crate::http::{Json, Page, Pagination, Query, Validator};
use crate::jobs::{JobContext, JobError, JobKind};
use crate::resources::{Requester, UpdateResource};
use crate::state::AppState;
use crate::tasks::NewTask;

const READ: &str = "read_current";
const UPDATE: &str = "update_record";
const VERIFY: &str = "verify";

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordRef {
    pub dns_provider_id: Uuid,
    pub zone: String,
    pub record_name: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FailoverRequest {
    /// The record by provider, zone and name; or `record_resource_id`.
    pub record: Option<RecordRef>,
    /// A `dns_record` resource.
    pub record_resource_id: Option<Uuid>,
    /// The standby: a resource whose IP the record gets; or `ip`.
    pub target_resource_id: Option<Uuid>,
    pub ip: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct FailoverStarted {
    pub failover_id: Uuid,
    pub task_id: Uuid,
    pub new_value: String,
    pub message: String,
}

/// Point a DNS record at a standby.
#[utoipa::path(post, path = "/orchestrate/dns-failover", tag = "orchestration", request_body = FailoverRequest,
    responses((status = 202, body = FailoverStarted), (status = 404), (status = 422)),
    security(("bearer" = []), ("api_key" = [])))]
pub async fn start(
    State(state): State<AppState>,
    auth: TenantAuth,
    Json(body): Json<FailoverRequest>,
) -> AppResult<(StatusCode, Json<FailoverStarted>)> {
    auth.require(Role::Member)?;
    let mut v = Validator::new();
    v.check(
        body.record.is_some() != body.record_resource_id.is_some(),
        "record",
        "give exactly one of record and record_resource_id",
    )
    .check(
        body.target_resource_id.is_some() != body.ip.is_some(),
        "ip",
        "give exactly one of target_resource_id and ip",
    )
    .check(
        body.ip
            .as_deref()
            .is_none_or(|ip| ip.parse::<std::net::Ipv4Addr>().is_ok()),
        "ip",
        "must be an IPv4 address",
    );
    if let Some(record) = &body.record {
        v.check(
            valid_record_name(&record.record_name),
            "record.record_name",
            "must be a DNS name",
        )
        .check(
            record.zone != "@" && valid_record_name(&record.zone),
            "record.zone",
            "must be a domain name",
        );
    }
    v.finish()?;

    // The record: a managed resource, or a name on a DNS provider.
    let (provider_id, zone, name, resource_id) = match (&body.record, body.record_resource_id) {
        (_, Some(id)) => {
            let resource = crate::resources::fetch(&state, auth.tenant_id, id).await?;
            if resource.kind != crate::resources::spec::Kind::DnsRecord {
                return Err(AppError::invalid(
                    "record_resource_id",
                    "is not a dns_record",
                ));
            }
            let zone = resource
                .spec
                .get("zone")
                .and_then(Value::as_str)
                .ok_or_else(|| AppError::invalid("record_resource_id", "names no zone"))?
                .to_string();
            (resource.provider_id, zone, resource.name, Some(id))
        }
        (Some(record), None) => {
            // Managed if a live record resource of the zone has the same fully qualified name
            // (`www`, `www.example.com` and `WWW` name one record).
            let wanted = fqdn(&record.record_name, &record.zone).to_ascii_lowercase();
            let candidates = sqlx::query!(
                "SELECT id, name, spec ->> 'zone' AS zone FROM resources
                 WHERE tenant_id = $1 AND provider_id = $2 AND kind = 'dns_record'
                   AND status NOT IN ('destroyed', 'destroying')",
                auth.tenant_id,
                record.dns_provider_id
            )
            .fetch_all(&state.db)
            .await?;
            let managed = candidates
                .into_iter()
                .find(|c| {
                    c.zone
                        .as_deref()
                        .is_some_and(|zone| fqdn(&c.name, zone).eq_ignore_ascii_case(&wanted))
                })
                .map(|c| c.id);
            (
                record.dns_provider_id,
                record.zone.clone(),
                record.record_name.clone(),
                managed,
            )
        }
        (None, None) => unreachable!("validated above"),
    };
    crate::dns::host_type(
        &state.db,
        auth.tenant_id,
        provider_id,
        "record.dns_provider_id",
    )
    .await?;
    // The standby's address, as it is now.
    let new_value = match (&body.ip, body.target_resource_id) {
        (Some(ip), _) => ip.clone(),
        (None, Some(target)) => {
            let target = crate::resources::fetch(&state, auth.tenant_id, target).await?;
            ["public_ip", "private_ip"]
                .iter()
                .find_map(|k| target.attributes.get(*k).and_then(Value::as_str))
                .map(str::to_string)
                .ok_or_else(|| {
                    AppError::invalid("target_resource_id", "the target has no IP address yet")
                })?
        }
        (None, None) => unreachable!("validated above"),
    };

    let id = Uuid::new_v4();
    let mut tx = state.db.begin().await?;
    let task_id = crate::tasks::enqueue_one(
        &mut tx,
        NewTask {
            tenant_id: auth.tenant_id,
            kind: JobKind::OrchestrateDnsFailover,
            params: json!({ "failover_id": id }),
            created_by: auth.user_id(),
        },
    )
    .await?;
    sqlx::query!(
        "INSERT INTO dns_failovers (id, tenant_id, task_id, dns_provider_id, zone, record_name,
                                    record_resource_id, target_resource_id, new_value, requested_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        id,
        auth.tenant_id,
        task_id,
        provider_id,
        zone,
        name,
        resource_id,
        body.target_resource_id,
        new_value,
        auth.user_id()
    )
    .execute(&mut *tx)
    .await?;
    Steps::pending(task_id, &[READ, UPDATE, VERIFY])
        .save(&mut tx)
        .await?;
    tx.commit().await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(FailoverStarted {
            failover_id: id,
            task_id,
            message: format!("Failing {} over to {new_value}", fqdn(&name, &zone)),
            new_value,
        }),
    ))
}

#[derive(Serialize, ToSchema)]
pub struct Failover {
    pub id: Uuid,
    pub task_id: Option<Uuid>,
    pub dns_provider_id: Uuid,
    pub zone: String,
    pub record_name: String,
    pub record_resource_id: Option<Uuid>,
    pub target_resource_id: Option<Uuid>,
    /// Where the record pointed before: fail back by failing over to it.
    pub previous_value: Option<String>,
    pub new_value: String,
    pub status: String,
    pub error: Option<String>,
    pub requested_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// The tenant's failovers, newest first.
#[utoipa::path(get, path = "/orchestrate/dns-failover", tag = "orchestration", params(Pagination),
    responses((status = 200, body = Page<Failover>)), security(("bearer" = []), ("api_key" = [])))]
pub async fn list(
    State(state): State<AppState>,
    auth: TenantAuth,
    Query(page): Query<Pagination>,
) -> AppResult<Page<Failover>> {
    let (limit, offset) = page.resolve()?;
    let data = sqlx::query_as!(
        Failover,
        "SELECT id, task_id, dns_provider_id, zone, record_name, record_resource_id, target_resource_id,
                previous_value, new_value, status, error, requested_by, created_at, finished_at
         FROM dns_failovers WHERE tenant_id = $1 ORDER BY created_at DESC, id LIMIT $2 OFFSET $3",
        auth.tenant_id,
        limit,
        offset
    )
    .fetch_all(&state.db)
    .await?;
    let total = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM dns_failovers WHERE tenant_id = $1"#,
        auth.tenant_id
    )
    .fetch_one(&state.db)
    .await?;
    Ok(Page::new(data, total, (limit, offset)))
}

/// `orchestrate.dns_failover`.
pub async fn run(ctx: &JobContext) -> Result<Value, JobError> {
    let id = ctx.id_param("failover_id")?;
    let f = sqlx::query!(
        "UPDATE dns_failovers SET status = 'running' WHERE id = $1
         RETURNING dns_provider_id, zone, record_name, record_resource_id, previous_value, new_value",
        id
    )
    .fetch_optional(&ctx.state.db)
    .await?
    .ok_or_else(|| JobError::Fatal(format!("failover {id} does not exist")))?;
    let mut steps = Steps::load(ctx).await?;
    let target = Target {
        dns_provider_id: f.dns_provider_id,
        zone: &f.zone,
        record_name: &f.record_name,
        record_resource_id: f.record_resource_id,
        previous_value: f.previous_value.as_deref(),
        new_value: &f.new_value,
    };
    let outcome = fail_over(ctx, &mut steps, id, &target).await;
    let (status, error) = match &outcome {
        Ok(_) => ("succeeded", None),
        Err(JobError::Cancelled) => ("cancelled", None),
        // Tried again: the failover is still running.
        Err(JobError::Retryable(_))
            if ctx.attempt < JobKind::OrchestrateDnsFailover.max_attempts() =>
        {
            return outcome;
        }
        Err(err) => ("failed", Some(err.to_string())),
    };
    sqlx::query!(
        "UPDATE dns_failovers SET status = $2, error = $3, finished_at = now() WHERE id = $1",
        id,
        status,
        error
    )
    .execute(&ctx.state.db)
    .await?;
    outcome
}

struct Target<'a> {
    dns_provider_id: Uuid,
    zone: &'a str,
    record_name: &'a str,
    record_resource_id: Option<Uuid>,
    previous_value: Option<&'a str>,
    new_value: &'a str,
}

async fn fail_over(
    ctx: &JobContext,
    steps: &mut Steps,
    id: Uuid,
    f: &Target<'_>,
) -> Result<Value, JobError> {
    let state = &ctx.state;
    // A DNS host unavailable for a moment is retried; anything else ends the failover.
    let dns = |err: crate::dns::DnsError| match err {
        crate::dns::DnsError::Unavailable(_) => JobError::Retryable(err.to_string()),
        _ => JobError::Fatal(err.to_string()),
    };
    let client = DnsClient::for_provider(state, ctx.tenant_id, f.dns_provider_id)
        .await
        .map_err(dns)?;
    let zone_id = client.zone_id(f.zone).await.map_err(dns)?;
    let name = fqdn(f.record_name, f.zone);

    // 1. Where it points now (kept once: a retry does not overwrite it with the new value).
    let current = client.find(&zone_id, &name, "A").await.map_err(dns)?;
    let record = match current.as_slice() {
        [record] => record.clone(),
        [] => {
            steps
                .update(
                    state,
                    READ,
                    json!({"status": "failed", "error": "no A record"}),
                )
                .await?;
            return Err(JobError::Fatal(format!("{name} has no A record")));
        }
        _ => {
            return Err(JobError::Fatal(format!(
                "{name} has {} A records; fail over one record at a time",
                current.len()
            )));
        }
    };
    let previous = match f.previous_value {
        Some(previous) => previous.to_string(),
        None => {
            sqlx::query!(
                "UPDATE dns_failovers SET previous_value = $2 WHERE id = $1",
                id,
                record.content
            )
            .execute(&state.db)
            .await?;
            record.content.clone()
        }
    };
    steps
        .update(
            state,
            READ,
            json!({"status": "succeeded", "record_id": record.id, "previous_value": previous}),
        )
        .await?;

    // 2. The change: through the record's resource when Strata manages it.
    ctx.progress(40, "updating the record").await?;
    steps
        .update(state, UPDATE, json!({"status": "running"}))
        .await?;
    let updated = match f.record_resource_id {
        Some(resource_id) => {
            let started = match steps.id(UPDATE, "task_id") {
                Some(task) => Ok((task, steps.id(UPDATE, "deployment_id"))),
                None => {
                    let resource = crate::resources::fetch(state, ctx.tenant_id, resource_id).await;
                    match resource {
                        Ok(resource) => crate::resources::start_update(
                            state,
                            Requester {
                                tenant_id: ctx.tenant_id,
                                user_id: None,
                            },
                            &resource,
                            UpdateResource {
                                spec: Some(json!({"value": f.new_value})),
                                tags: None,
                            },
                        )
                        .await
                        .map(|s| (s.task_id, Some(s.deployment_id)))
                        .map_err(|err| err.to_string()),
                        Err(err) => Err(err.to_string()),
                    }
                }
            };
            match started {
                Ok((task, deployment)) => {
                    steps
                        .update(
                            state,
                            UPDATE,
                            json!({"resource_id": resource_id, "task_id": task, "deployment_id": deployment}),
                        )
                        .await?;
                    let (status, error) = wait_for_task(ctx, task).await?;
                    if status == "succeeded" {
                        Ok(())
                    } else {
                        Err(error.unwrap_or(status))
                    }
                }
                Err(err) => Err(err),
            }
        }
        None => {
            let data = RecordData {
                name: record.name.clone(),
                record_type: "A".into(),
                content: f.new_value.to_string(),
                ttl: record.ttl,
                proxied: record.proxied,
            };
            client
                .update(&zone_id, &record.id, &data)
                .await
                .map(|_| ())
                .map_err(|err| err.to_string())
        }
    };
    if let Err(error) = updated {
        steps
            .update(state, UPDATE, json!({"status": "failed", "error": error}))
            .await?;
        return Err(JobError::Fatal(format!("updating {name} failed: {error}")));
    }
    steps
        .update(state, UPDATE, json!({"status": "succeeded"}))
        .await?;

    // 3. The host answers with the standby's address.
    ctx.progress(80, "verifying the record").await?;
    let now = client.find(&zone_id, &name, "A").await.map_err(dns)?;
    if !now.iter().any(|r| r.content == f.new_value) {
        let error = format!(
            "{name} resolves to {:?}, not {}",
            now.iter().map(|r| &r.content).collect::<Vec<_>>(),
            f.new_value
        );
        steps
            .update(state, VERIFY, json!({"status": "failed", "error": error}))
            .await?;
        return Err(JobError::Fatal(error));
    }
    steps
        .update(
            state,
            VERIFY,
            json!({"status": "succeeded", "value": f.new_value}),
        )
        .await?;
    Ok(json!({
        "failover_id": id, "fqdn": name, "previous_value": previous, "new_value": f.new_value,
        "steps": std::mem::replace(steps, Steps::pending(ctx.task_id, &[])).into_value(),
    }))
}
