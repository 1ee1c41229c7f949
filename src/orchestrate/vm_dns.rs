//! `POST /orchestrate/vm-dns`: a vm and the A record that names it, as one task of four steps
//! (provision the vm, wait for its IP, create the record, verify it on the DNS host). If the
//! record cannot be made, what was made is destroyed again (compensation) unless the caller
//! asked to keep it; the task says what was undone.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;
use uuid::Uuid;

use super::steps::{Steps, wait_for_task};
use crate::auth::{Role, TenantAuth};
use crate::dns::{DnsClient, fqdn, valid_record_name};
use crate::error::{AppError, AppResult};
use crate::http::{Json, Validator};
use crate::jobs::{JobContext, JobError, JobKind};
use crate::resources::spec::Kind;
use crate::resources::{CreateResource, Requester};
use crate::state::AppState;
use crate::tasks::NewTask;

const PROVISION: &str = "provision_vm";
const WAIT_FOR_IP: &str = "wait_for_ip";
const CREATE_RECORD: &str = "create_dns_record";
const VERIFY: &str = "verify";
const COMPENSATE: &str = "compensate";

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VmDnsVm {
    pub name: String,
    pub region: Option<String>,
    #[serde(default = "empty_object")]
    pub spec: Value,
    #[serde(default = "empty_object")]
    pub tags: Value,
}

fn empty_object() -> Value {
    json!({})
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VmDnsRequest {
    /// Where the vm is created.
    pub provider_id: Uuid,
    /// The `cloudflare` or `sandbox` provider that hosts the zone.
    pub dns_provider_id: Uuid,
    #[schema(example = "example.com")]
    pub zone: String,
    #[schema(example = "web")]
    pub record_name: String,
    pub ttl: Option<u32>,
    pub proxied: Option<bool>,
    pub vm: VmDnsVm,
    /// Keep the vm when the DNS step fails (default: destroy it).
    #[serde(default)]
    pub keep_on_failure: bool,
}

#[derive(Serialize, ToSchema)]
pub struct VmDnsStarted {
    pub task_id: Uuid,
    pub vm_resource_id: Uuid,
    pub fqdn: String,
    pub message: String,
}

/// Provision a vm and an A record for it, as one task.
#[utoipa::path(post, path = "/orchestrate/vm-dns", tag = "orchestration", request_body = VmDnsRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "A repeat of a request with this key returns the first answer")),
    responses((status = 202, body = VmDnsStarted), (status = 409), (status = 422)),
    security(("bearer" = []), ("api_key" = [])))]
pub async fn start(
    State(state): State<AppState>,
    auth: TenantAuth,
    Json(body): Json<VmDnsRequest>,
) -> AppResult<(StatusCode, Json<VmDnsStarted>)> {
    auth.require(Role::Member)?;
    let mut v = Validator::new();
    v.check(
        valid_record_name(&body.record_name),
        "record_name",
        "must be a DNS name (letters, digits, -, _, * and dots) or @",
    )
    .check(
        body.zone != "@" && valid_record_name(&body.zone),
        "zone",
        "must be a domain name",
    )
    .check(
        body.ttl
            .is_none_or(|ttl| ttl == 1 || (60..=86_400).contains(&ttl)),
        "ttl",
        "must be 1 (automatic) or 60 to 86400",
    );
    v.finish()?;
    let dns_type = crate::dns::host_type(
        &state.db,
        auth.tenant_id,
        body.dns_provider_id,
        "dns_provider_id",
    )
    .await?;
    // The record is checked now, not after the vm is built: its spec (with a stand-in
    // address), its name, and its zone.
    let mut record_spec = json!({"zone": body.zone, "value": "192.0.2.1"});
    if let Some(ttl) = body.ttl {
        record_spec["ttl"] = json!(ttl);
    }
    if let Some(proxied) = body.proxied {
        record_spec["proxied"] = json!(proxied);
    }
    crate::resources::spec::validate(&dns_type, Kind::DnsRecord, &record_spec, None).map_err(
        |err| match err {
            AppError::Validation(errors) => AppError::Validation(
                errors
                    .into_iter()
                    .map(|mut e| {
                        e.field = e.field.trim_start_matches("spec.").to_string();
                        e
                    })
                    .collect(),
            ),
            other => other,
        },
    )?;
    let taken = sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM resources WHERE tenant_id = $1 AND provider_id = $2
                          AND kind = 'dns_record' AND name = $3 AND status <> 'destroyed') AS "taken!""#,
        auth.tenant_id,
        body.dns_provider_id,
        body.record_name
    )
    .fetch_one(&state.db)
    .await?;
    if taken {
        return Err(AppError::Conflict(format!(
            "a dns_record named {:?} already exists on this provider",
            body.record_name
        )));
    }
    let client = DnsClient::for_provider(&state, auth.tenant_id, body.dns_provider_id).await;
    if let Ok(client) = client
        && let Err(crate::dns::DnsError::ZoneNotFound(zone)) = client.zone_id(&body.zone).await
    {
        return Err(AppError::invalid(
            "zone",
            format!("the DNS provider does not host {zone}"),
        ));
    }

    let who = Requester::from(&auth);
    let mut tx = state.db.begin().await?;
    let vm = crate::resources::create(
        &mut tx,
        who,
        CreateResource {
            provider_id: body.provider_id,
            kind: Kind::Vm,
            name: body.vm.name.clone(),
            region: body.vm.region.clone(),
            spec: body.vm.spec.clone(),
            tags: body.vm.tags.clone(),
        },
    )
    .await
    .map_err(|err| match err {
        // The vm's fields are under `vm` in this request.
        AppError::Validation(errors) => AppError::Validation(
            errors
                .into_iter()
                .map(|mut e| {
                    e.field = match e.field.as_str() {
                        "provider_id" => e.field,
                        field => format!("vm.{field}"),
                    };
                    e
                })
                .collect(),
        ),
        other => other,
    })?;
    let task_id = crate::tasks::enqueue_one(
        &mut tx,
        NewTask {
            tenant_id: auth.tenant_id,
            kind: JobKind::OrchestrateVmDns,
            params: serde_json::to_value(&body).map_err(anyhow::Error::from)?,
            created_by: auth.user_id(),
        },
    )
    .await?;
    let mut steps = Steps::pending(task_id, &[PROVISION, WAIT_FOR_IP, CREATE_RECORD, VERIFY]);
    steps.set(
        PROVISION,
        json!({"resource_id": vm.id, "task_id": vm.task_id, "deployment_id": vm.deployment_id}),
    );
    steps.save(&mut tx).await?;
    tx.commit().await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(VmDnsStarted {
            task_id,
            vm_resource_id: vm.id,
            fqdn: fqdn(&body.record_name, &body.zone),
            message: "VM and DNS provisioning started".into(),
        }),
    ))
}

/// `orchestrate.vm_dns`: runs the steps not yet done.
pub async fn run(ctx: &JobContext) -> Result<Value, JobError> {
    let request: VmDnsRequest = serde_json::from_value(ctx.params.clone())
        .map_err(|err| JobError::Fatal(format!("bad params: {err}")))?;
    let mut steps = Steps::load(ctx).await?;
    let state = &ctx.state;
    let vm_id = steps
        .id(PROVISION, "resource_id")
        .ok_or_else(|| JobError::Fatal("the vm step has no resource".into()))?;
    // A run that had begun undoing (its worker died) finishes undoing.
    if matches!(steps.status(COMPENSATE), "running" | "succeeded" | "failed") {
        let reason = steps
            .get(COMPENSATE)
            .and_then(|s| s.get("reason"))
            .and_then(Value::as_str)
            .unwrap_or("an earlier step failed")
            .to_string();
        let undone = compensate(ctx, &request, &mut steps, vm_id, &reason).await?;
        return Err(JobError::Fatal(format!("{reason}{undone}")));
    }

    // 1. The vm, through its own deployment.
    if steps.status(PROVISION) != "succeeded" {
        steps
            .update(state, PROVISION, json!({"status": "running"}))
            .await?;
        ctx.progress(10, "provisioning the vm").await?;
        let vm_task = steps
            .id(PROVISION, "task_id")
            .ok_or_else(|| JobError::Fatal("the vm step has no task".into()))?;
        let (status, error) = wait_for_task(ctx, vm_task).await?;
        if status != "succeeded" {
            let error = error.unwrap_or_else(|| format!("the vm's task {status}"));
            steps
                .update(
                    state,
                    PROVISION,
                    json!({"status": "failed", "error": error}),
                )
                .await?;
            return Err(JobError::Fatal(format!(
                "provisioning the vm failed: {error}"
            )));
        }
        steps
            .update(state, PROVISION, json!({"status": "succeeded"}))
            .await?;
    }

    // 2. Its address.
    ctx.progress(40, "reading the vm's IP").await?;
    let attributes = sqlx::query_scalar!("SELECT attributes FROM resources WHERE id = $1", vm_id)
        .fetch_one(&state.db)
        .await?;
    let ip = ["public_ip", "private_ip"]
        .iter()
        .find_map(|k| attributes.get(*k).and_then(Value::as_str))
        .map(str::to_string);
    let Some(ip) = ip else {
        steps
            .update(
                state,
                WAIT_FOR_IP,
                json!({"status": "failed", "error": "the vm reports no IP address"}),
            )
            .await?;
        let reason = "the vm reports no IP address";
        let undone = compensate(ctx, &request, &mut steps, vm_id, reason).await?;
        return Err(JobError::Fatal(format!("{reason}{undone}")));
    };
    steps
        .update(state, WAIT_FOR_IP, json!({"status": "succeeded", "ip": ip}))
        .await?;

    // 3. The record, as a dns_record resource with its own deployment.
    let record = match create_record(ctx, &request, &mut steps, &ip).await? {
        Ok(record) => record,
        Err(error) => {
            let reason = format!("the DNS record failed: {error}");
            let undone = compensate(ctx, &request, &mut steps, vm_id, &reason).await?;
            return Err(JobError::Fatal(format!("{reason}{undone}")));
        }
    };

    // 4. The DNS host answers with the vm's address.
    ctx.progress(90, "verifying the record").await?;
    steps
        .update(state, VERIFY, json!({"status": "running"}))
        .await?;
    let name = fqdn(&request.record_name, &request.zone);
    if let Err(error) = verify(state, ctx.tenant_id, &request, &name, &ip).await? {
        steps
            .update(state, VERIFY, json!({"status": "failed", "error": error}))
            .await?;
        let reason = format!("verifying the DNS record failed: {error}");
        let undone = compensate(ctx, &request, &mut steps, vm_id, &reason).await?;
        return Err(JobError::Fatal(format!("{reason}{undone}")));
    }
    steps
        .update(
            state,
            VERIFY,
            json!({"status": "succeeded", "fqdn": name, "value": ip}),
        )
        .await?;
    Ok(json!({
        "vm_resource_id": vm_id, "dns_resource_id": record, "ip": ip, "fqdn": name,
        "steps": steps.into_value(),
    }))
}

/// Creates the record's resource (once: a retry finds it in the step) and waits for it.
/// `Ok(Err(..))` is the record failing (to be undone); `Err(..)` is the job's own failure
/// (cancelled, or a passing one to retry).
async fn create_record(
    ctx: &JobContext,
    request: &VmDnsRequest,
    steps: &mut Steps,
    ip: &str,
) -> Result<Result<Uuid, String>, JobError> {
    let state = &ctx.state;
    let step = async {
        let (record_id, record_task) = match (
            steps.id(CREATE_RECORD, "resource_id"),
            steps.id(CREATE_RECORD, "task_id"),
        ) {
            (Some(id), Some(task)) => (id, task),
            _ => {
                let mut spec = json!({"zone": request.zone, "record_type": "A", "value": ip});
                if let Some(ttl) = request.ttl {
                    spec["ttl"] = json!(ttl);
                }
                if let Some(proxied) = request.proxied {
                    spec["proxied"] = json!(proxied);
                }
                let mut tx = state.db.begin().await?;
                let who = Requester {
                    tenant_id: ctx.tenant_id,
                    user_id: None,
                };
                let accepted = crate::resources::create(
                    &mut tx,
                    who,
                    CreateResource {
                        provider_id: request.dns_provider_id,
                        kind: Kind::DnsRecord,
                        name: request.record_name.clone(),
                        region: None,
                        spec,
                        tags: request.vm.tags.clone(),
                    },
                )
                .await;
                let accepted = match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => return Ok(Err(err.to_string())),
                };
                // The record's ids are kept with the step in the transaction that makes it.
                steps.set(
                    CREATE_RECORD,
                    json!({"status": "running", "resource_id": accepted.id,
                           "task_id": accepted.task_id, "deployment_id": accepted.deployment_id}),
                );
                steps.save(&mut tx).await?;
                tx.commit().await?;
                (accepted.id, accepted.task_id)
            }
        };
        ctx.progress(60, "creating the DNS record").await?;
        let (status, error) = wait_for_task(ctx, record_task).await?;
        Ok::<_, JobError>(if status == "succeeded" {
            Ok(record_id)
        } else {
            Err(error.unwrap_or_else(|| format!("the record's task {status}")))
        })
    };
    let outcome = step.await?;
    let fields = match &outcome {
        Ok(_) => json!({"status": "succeeded"}),
        Err(error) => json!({"status": "failed", "error": error}),
    };
    steps.update(state, CREATE_RECORD, fields).await?;
    Ok(outcome)
}

/// Whether the DNS host has an A record of `name` with `ip`. A host unavailable for a moment
/// is the job's to retry, not a reason to undo.
async fn verify(
    state: &AppState,
    tenant_id: Uuid,
    request: &VmDnsRequest,
    name: &str,
    ip: &str,
) -> Result<Result<(), String>, JobError> {
    let lookup = async {
        let client = DnsClient::for_provider(state, tenant_id, request.dns_provider_id).await?;
        let zone_id = client.zone_id(&request.zone).await?;
        client.find(&zone_id, name, "A").await
    };
    let records = match lookup.await {
        Ok(records) => records,
        Err(err @ crate::dns::DnsError::Unavailable(_)) => {
            return Err(JobError::Retryable(err.to_string()));
        }
        Err(err) => return Ok(Err(err.to_string())),
    };
    Ok(if records.iter().any(|r| r.content == ip) {
        Ok(())
    } else {
        Err(format!(
            "{name} resolves to {:?}, not {ip}",
            records.iter().map(|r| &r.content).collect::<Vec<_>>()
        ))
    })
}

/// Undoes what the orchestration made (the record, then the vm), unless the caller keeps it.
/// Returns what to add to the task's error.
async fn compensate(
    ctx: &JobContext,
    request: &VmDnsRequest,
    steps: &mut Steps,
    vm_id: Uuid,
    reason: &str,
) -> Result<String, JobError> {
    let state = &ctx.state;
    if request.keep_on_failure {
        steps
            .update(
                state,
                COMPENSATE,
                json!({"status": "skipped", "reason": reason, "kept": "keep_on_failure"}),
            )
            .await?;
        return Ok(format!("; the vm {vm_id} was kept (keep_on_failure)"));
    }
    ctx.progress(95, "undoing: destroying what was made")
        .await?;
    steps
        .update(
            state,
            COMPENSATE,
            json!({"status": "running", "reason": reason}),
        )
        .await?;
    let who = Requester {
        tenant_id: ctx.tenant_id,
        user_id: None,
    };
    let mut undone = Vec::new();
    let mut failures = Vec::new();
    let made = [
        (steps.id(CREATE_RECORD, "resource_id"), "dns record"),
        (Some(vm_id), "vm"),
    ];
    for (resource_id, what) in made {
        let Some(resource_id) = resource_id else {
            continue;
        };
        let resource = match crate::resources::fetch(state, ctx.tenant_id, resource_id).await {
            Ok(resource) => resource,
            Err(err) => {
                failures.push(format!("{what} {resource_id}: {err}"));
                continue;
            }
        };
        if resource.status == "destroyed" {
            undone.push(json!({"resource_id": resource_id, "kind": what, "outcome": "destroyed"}));
            continue;
        }
        // A destroy already under way (started before a crash) is waited for, not repeated.
        let open = sqlx::query!(
            "SELECT d.id, d.task_id FROM deployments d JOIN tasks t ON t.id = d.task_id
             WHERE d.resource_id = $1 AND d.operation = 'destroy' AND t.status IN ('queued', 'running')
             ORDER BY d.created_at DESC LIMIT 1",
            resource_id
        )
        .fetch_optional(&state.db)
        .await?;
        let started = match open {
            Some(open) => Ok((open.task_id, open.id)),
            None => crate::resources::start_destroy(state, who, &resource, None)
                .await
                .map(|s| (s.task_id, s.deployment_id))
                .map_err(|err| err.to_string()),
        };
        let destroyed = match started {
            Ok((task_id, deployment_id)) => {
                let (status, error) = wait_for_task(ctx, task_id).await?;
                if status == "succeeded" {
                    Ok(deployment_id)
                } else {
                    Err(error.unwrap_or(status))
                }
            }
            Err(err) => Err(err),
        };
        match destroyed {
            Ok(deployment_id) => undone.push(json!({
                "resource_id": resource_id, "kind": what, "outcome": "destroyed",
                "deployment_id": deployment_id,
            })),
            Err(error) => failures.push(format!("{what} {resource_id}: {error}")),
        }
    }
    let status = if failures.is_empty() {
        "succeeded"
    } else {
        "failed"
    };
    steps
        .update(
            state,
            COMPENSATE,
            json!({"status": status, "undone": undone, "errors": failures}),
        )
        .await?;
    let names: Vec<String> = undone
        .iter()
        .map(|u| {
            format!(
                "{} {}",
                u["kind"].as_str().unwrap_or(""),
                u["resource_id"].as_str().unwrap_or("")
            )
        })
        .collect();
    let mut text = format!("; undone: destroyed {}", names.join(" and "));
    if !failures.is_empty() {
        text.push_str(&format!("; could not undo: {}", failures.join("; ")));
    }
    Ok(text)
}
