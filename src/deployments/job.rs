//! The worker side of a deployment: wait for the resource's earlier deployments, render the
//! configuration, run Terraform against the state in Postgres, and write back what it did.
//!
//! Delivery is at least once. A deployment already finished is not run again; one found
//! `running` (its worker died) is run again from the start: plan and apply converge on the
//! saved state, so nothing is created twice.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use sqlx::pool::PoolConnection;
use sqlx::{PgConnection, Postgres};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::logs::LogWriter;
use crate::jobs::{JobContext, JobError};
use crate::terraform::init_cache::InitCache;
use crate::terraform::render;
use crate::terraform::run::{self, Limits, RunError, Stream};

/// The pg backend's schema for Terraform state (created by a migration): one workspace per
/// resource.
pub const STATE_SCHEMA: &str = "terraform_state";

/// The state workspace of a resource.
pub fn workspace(resource_id: Uuid) -> String {
    format!("res-{resource_id}")
}

/// A deployment with what its run needs of its resource and provider.
pub(crate) struct Loaded {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub resource_id: Uuid,
    pub provider_id: Uuid,
    pub operation: String,
    pub action: Option<String>,
    pub status: String,
    pub desired: Value,
    pub created_at: DateTime<Utc>,
    pub kind: String,
    pub name: String,
    pub region: Option<String>,
    pub provider_type: String,
    pub credential_id: Option<Uuid>,
    /// The cloud's id of the resource, once it exists.
    pub cloud_id: Option<String>,
    /// What the last successful run reported.
    pub attributes: Value,
}

pub async fn run(ctx: &JobContext) -> Result<Value, JobError> {
    let id = ctx.id_param("deployment_id")?;
    let db = &ctx.state.db;
    let d = sqlx::query_as!(
        Loaded,
        "SELECT d.id, d.tenant_id, d.resource_id, r.provider_id, d.operation, d.action, d.status, d.desired,
                d.created_at, r.kind, r.name, r.region, p.provider_type, p.credential_id, r.cloud_id,
                r.attributes
         FROM deployments d
         JOIN resources r ON r.id = d.resource_id
         JOIN providers p ON p.id = r.provider_id
         WHERE d.id = $1",
        id
    )
    .fetch_optional(db)
    .await?
    .ok_or_else(|| JobError::Fatal(format!("deployment {id} does not exist")))?;
    if matches!(d.status.as_str(), "succeeded" | "failed" | "cancelled") {
        return Ok(json!({ "deployment_id": id, "status": d.status }));
    }

    let turn = wait_for_turn(ctx, id, &d).await?;
    // What earlier deployments of the resource wrote, read now that they have finished.
    let current = sqlx::query!(
        "SELECT cloud_id, attributes FROM resources WHERE id = $1",
        d.resource_id
    )
    .fetch_one(db)
    .await?;
    let d = Loaded {
        cloud_id: current.cloud_id,
        attributes: current.attributes,
        ..d
    };
    let attempt = sqlx::query_scalar!(
        "UPDATE deployments SET status = 'running', waiting_reason = NULL, attempts = attempts + 1,
                started_at = COALESCE(started_at, now())
         WHERE id = $1 RETURNING attempts",
        id
    )
    .fetch_one(db)
    .await?;

    let secrets = match d.credential_id {
        Some(credential_id) => {
            crate::credentials::open_secrets(&ctx.state, d.tenant_id, credential_id)
                .await
                .map_err(|err| {
                    JobError::Fatal(format!("cannot open the provider's credential: {err}"))
                })?
        }
        None => Map::new(),
    };
    let secret_values: Vec<String> = secrets
        .values()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect();
    let log = LogWriter::start(db.clone(), id, secret_values).await?;
    log.line(
        "info",
        "system",
        format!(
            "attempt {attempt} on {}: {} {}",
            ctx.worker,
            d.operation,
            d.action.as_deref().unwrap_or("")
        )
        .trim_end()
        .to_string(),
    );

    let workdir = crate::terraform::runs_dir().join(format!("{id}-{attempt}"));
    let mut run = Run {
        ctx,
        log: &log,
        dir: workdir.clone(),
        env: terraform_env(ctx, &d, &workdir, &secrets),
        summary: None,
        progress: Map::new(),
        diagnostics: Vec::new(),
        stderr_tail: Vec::new(),
        outputs: Map::new(),
    };
    // DNS records are written through their host's API, not Terraform.
    let result = if d.kind == "dns_record" {
        crate::dns::deploy::execute(ctx, &log, &d).await
    } else {
        run.execute(id, &d).await
    };
    let Run {
        progress,
        diagnostics,
        summary,
        ..
    } = run;
    // A passing failure (a cloud API unavailable for a moment) is delivered again, unless this
    // was the last attempt: the deployment waits for it, queued, rather than ending failed.
    if let Err(JobError::Retryable(err)) = &result
        && ctx.attempt < crate::jobs::JobKind::ResourceApply.max_attempts()
        && !ctx.cancel.is_cancelled()
    {
        log.line("warn", "system", format!("{err}; trying again"));
        log.finish().await;
        sqlx::query!(
            "UPDATE deployments SET status = 'queued' WHERE id = $1 AND status = 'running'",
            id
        )
        .execute(db)
        .await?;
        turn.release().await;
        let _ = tokio::fs::remove_dir_all(&workdir).await;
        return result;
    }
    match &result {
        Ok(_) => log.line("info", "system", "deployment succeeded"),
        Err(JobError::Cancelled) => log.line("warn", "system", "deployment cancelled"),
        Err(err) => log.line("error", "system", format!("deployment failed: {err}")),
    }
    // Every line is stored before the final status, so a reader that sees the status has them all.
    log.finish().await;
    let finished = finish(ctx, id, &d, &result, progress, diagnostics, summary).await;
    turn.release().await;
    let _ = tokio::fs::remove_dir_all(&workdir).await;
    finished?;
    result
}

/// A resource's advisory lock, held on a connection of `run_locks` for a whole run. Released
/// by `release`; a guard dropped unreleased (a run abandoned mid-way) closes its connection,
/// which releases the lock too. If the worker dies, so does the connection.
struct ResourceTurn {
    conn: Option<PoolConnection<Postgres>>,
    resource_id: Uuid,
}

impl ResourceTurn {
    async fn release(mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        let unlocked = sqlx::query_scalar!(
            r#"SELECT pg_advisory_unlock(('x' || substr(md5($1::text), 1, 16))::bit(64)::bigint) AS "unlocked!""#,
            self.resource_id.to_string()
        )
        .fetch_one(&mut *conn)
        .await;
        if !matches!(unlocked, Ok(true)) {
            conn.close_on_drop();
        }
    }
}

impl Drop for ResourceTurn {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.as_mut() {
            conn.close_on_drop();
        }
    }
}

/// Waits until every earlier deployment of the resource has finished and no other worker runs
/// this resource, reporting why on the task and the deployment meanwhile. Returns the
/// resource's advisory lock.
async fn wait_for_turn(ctx: &JobContext, id: Uuid, d: &Loaded) -> Result<ResourceTurn, JobError> {
    let db = &ctx.state.db;
    let mut turn = ResourceTurn {
        conn: Some(ctx.state.run_locks.acquire().await?),
        resource_id: d.resource_id,
    };
    let mut reported: Option<String> = None;
    loop {
        let blocker = sqlx::query_scalar!(
            "SELECT d.id FROM deployments d JOIN tasks t ON t.id = d.task_id
             WHERE d.resource_id = $1 AND d.status IN ('queued', 'running')
               AND t.status IN ('queued', 'running')
               AND (d.created_at, d.id) < ($2, $3)
             ORDER BY d.created_at, d.id LIMIT 1",
            d.resource_id,
            d.created_at,
            id
        )
        .fetch_optional(db)
        .await?;
        let lock = turn.conn.as_mut().expect("held until released");
        let locked = blocker.is_none()
            && sqlx::query_scalar!(
                r#"SELECT pg_try_advisory_lock(('x' || substr(md5($1::text), 1, 16))::bit(64)::bigint) AS "locked!""#,
                d.resource_id.to_string()
            )
            .fetch_one(&mut **lock)
            .await?;
        if locked {
            if reported.is_some() {
                sqlx::query!(
                    "UPDATE tasks SET status = 'running', progress_message = NULL, updated_at = now()
                     WHERE id = $1 AND status = 'queued'",
                    ctx.task_id
                )
                .execute(db)
                .await?;
            }
            return Ok(turn);
        }
        let reason = match blocker {
            Some(other) => format!("waiting for deployment {other}"),
            None => "waiting for another run of this resource".to_string(),
        };
        if reported.as_deref() != Some(reason.as_str()) {
            sqlx::query!(
                "UPDATE deployments SET waiting_reason = $2 WHERE id = $1",
                id,
                reason
            )
            .execute(db)
            .await?;
            sqlx::query!(
                "UPDATE tasks SET status = 'queued', progress_message = $2, updated_at = now()
                 WHERE id = $1 AND status IN ('running', 'queued')",
                ctx.task_id,
                reason
            )
            .execute(db)
            .await?;
            reported = Some(reason);
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = ctx.cancel.cancelled() => return Err(JobError::Cancelled),
        }
    }
}

/// Creates the resource's state workspace, if it does not exist, holding an empty state
/// (statefile format 4, as `terraform workspace new` writes it).
async fn create_workspace(state: &crate::state::AppState, name: &str) -> Result<(), JobError> {
    // A state written by a newer Terraform is refused, so it names the version that runs.
    let version = state
        .terraform
        .version()
        .await
        .unwrap_or_else(|_| "1.0.0".into());
    let empty = json!({
        "version": 4,
        "terraform_version": version,
        "serial": 0,
        "lineage": Uuid::new_v4(),
        "outputs": {},
        "resources": [],
        "check_results": null,
    });
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {STATE_SCHEMA}.states (name, data) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING"
    )))
    .bind(name)
    .bind(empty.to_string())
    .execute(&state.db)
    .await?;
    Ok(())
}

/// Terraform's whole environment: nothing of the worker's own but PATH.
fn terraform_env(
    ctx: &JobContext,
    d: &Loaded,
    dir: &std::path::Path,
    secrets: &Map<String, Value>,
) -> Vec<(String, String)> {
    let options = ctx.state.db.connect_options();
    let mut env = vec![
        (
            "PATH".to_string(),
            std::env::var("PATH").unwrap_or_default(),
        ),
        ("HOME".to_string(), dir.display().to_string()),
        ("TF_IN_AUTOMATION".to_string(), "1".to_string()),
        ("CHECKPOINT_DISABLE".to_string(), "1".to_string()),
        (
            "TF_CLI_CONFIG_FILE".to_string(),
            dir.join(render::CLI_CONFIG).display().to_string(),
        ),
        (
            "PG_CONN_STR".to_string(),
            backend_connection_string(&options),
        ),
        ("PG_SCHEMA_NAME".to_string(), STATE_SCHEMA.to_string()),
        // The schema and table come from our migrations.
        ("PG_SKIP_SCHEMA_CREATION".to_string(), "true".to_string()),
        ("PG_SKIP_TABLE_CREATION".to_string(), "true".to_string()),
        ("PG_SKIP_INDEX_CREATION".to_string(), "true".to_string()),
    ];
    env.extend(
        ctx.state
            .terraform
            .go_runtime
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone())),
    );
    let get = |key: &str| {
        secrets
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let region = d.region.clone().unwrap_or_default();
    let pairs: Vec<(&str, String)> = match d.provider_type.as_str() {
        "aws" => vec![
            ("AWS_ACCESS_KEY_ID", get("access_key")),
            ("AWS_SECRET_ACCESS_KEY", get("secret_key")),
            ("AWS_REGION", region),
        ],
        "azure" => vec![
            ("ARM_CLIENT_ID", get("client_id")),
            ("ARM_CLIENT_SECRET", get("client_secret")),
            ("ARM_TENANT_ID", get("tenant_id")),
            ("ARM_SUBSCRIPTION_ID", get("subscription_id")),
        ],
        "gcp" => vec![
            ("GOOGLE_CREDENTIALS", get("service_account_json")),
            ("GOOGLE_PROJECT", get("project_id")),
        ],
        "cloudflare" => vec![("CLOUDFLARE_API_TOKEN", get("api_token"))],
        "oci" => vec![
            ("TF_VAR_oci_tenancy_ocid", get("tenancy_ocid")),
            ("TF_VAR_oci_user_ocid", get("user_ocid")),
            ("TF_VAR_oci_fingerprint", get("fingerprint")),
            ("TF_VAR_oci_private_key", get("private_key")),
        ],
        "proxmox" => vec![
            ("PROXMOX_VE_ENDPOINT", get("endpoint")),
            (
                "PROXMOX_VE_API_TOKEN",
                format!("{}={}", get("token_id"), get("token_secret")),
            ),
        ],
        "databricks" => vec![
            ("DATABRICKS_HOST", get("host")),
            ("DATABRICKS_TOKEN", get("token")),
        ],
        _ => vec![],
    };
    env.extend(
        pairs
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.to_string(), v)),
    );
    env
}

/// The database as Terraform's pg backend (lib/pq) wants it: a URL, TLS as the pool has it
/// (lib/pq would otherwise insist on TLS).
pub fn backend_connection_string(options: &sqlx::postgres::PgConnectOptions) -> String {
    use sqlx::ConnectOptions;
    let mode = match options.get_ssl_mode() {
        sqlx::postgres::PgSslMode::Require => "require",
        sqlx::postgres::PgSslMode::VerifyCa => "verify-ca",
        sqlx::postgres::PgSslMode::VerifyFull => "verify-full",
        _ => "disable",
    };
    let mut url = options.to_url_lossy();
    url.set_query(Some(&format!("sslmode={mode}")));
    url.to_string()
}

struct Run<'a> {
    ctx: &'a JobContext,
    log: &'a LogWriter,
    dir: PathBuf,
    env: Vec<(String, String)>,
    summary: Option<Value>,
    progress: Map<String, Value>,
    diagnostics: Vec<Value>,
    /// The last lines Terraform wrote to stderr, for the error of a failed command.
    stderr_tail: Vec<String>,
    /// Output values, as `apply -json` reports them (sensitive ones left out).
    outputs: Map<String, Value>,
}

impl Run<'_> {
    async fn execute(&mut self, id: Uuid, d: &Loaded) -> Result<Value, JobError> {
        let structure = d
            .desired
            .get("structure")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let main_tf = render::render(&d.provider_type, &d.kind, &structure)
            .map_err(|err| JobError::Fatal(format!("{err:#}")))?;
        let variables = variables(d.resource_id, &d.name, d.region.as_deref(), &d.desired);
        render::write_workdir(
            &self.dir,
            &main_tf,
            &variables,
            self.ctx.state.terraform.plugin_dir.as_deref(),
        )
        .map_err(|err| JobError::Retryable(format!("cannot write the working directory: {err}")))?;

        // The workspace is created here, not by Terraform: its pg backend creates workspaces
        // under a global lock it does not wait for, so concurrent first runs would fail.
        let name = workspace(d.resource_id);
        create_workspace(&self.ctx.state, &name).await?;
        self.env.push(("TF_WORKSPACE".to_string(), name));
        let lock = "-lock-timeout=120s";
        let refreshing = matches!(d.action.as_deref(), Some("health_check" | "refresh"));
        if refreshing && d.provider_type == "sandbox" {
            // What the sandbox cloud reports, for the refresh to compare.
            let observed = sqlx::query_scalar!(
                "SELECT outputs FROM sandbox_observed WHERE resource_id = $1",
                d.resource_id
            )
            .fetch_optional(&self.ctx.state.db)
            .await?;
            if let Some(Value::Object(observed)) = observed {
                render::write_observed(&self.dir, &observed).map_err(|err| {
                    JobError::Retryable(format!("cannot write the observed state: {err}"))
                })?;
            }
        }
        match (d.operation.as_str(), d.action.as_deref()) {
            ("action", Some("refresh")) => {
                let plan = self
                    .first_command(&[REFRESH_PLAN, &[lock, "-out=refresh.tfplan"]].concat())
                    .await?;
                match plan {
                    0 => {
                        self.log
                            .line("info", "system", "no drift: the cloud matches the state");
                        return Ok(
                            json!({"deployment_id": id, "outputs": d.attributes, "drift": []}),
                        );
                    }
                    2 => {}
                    _ => return Err(self.failure("terraform plan -refresh-only")),
                }
                let drift = self.drift_in("refresh.tfplan").await?;
                self.log.drift(&drift);
                // The refreshed values become the state (nothing in the cloud changes).
                let apply = self
                    .command(
                        &[
                            "apply",
                            "-json",
                            "-input=false",
                            "-no-color",
                            lock,
                            "refresh.tfplan",
                        ],
                        true,
                    )
                    .await?;
                self.check(apply, "terraform apply -refresh-only")?;
                let mut outputs = d.attributes.as_object().cloned().unwrap_or_default();
                outputs.extend(std::mem::take(&mut self.outputs));
                return Ok(json!({"deployment_id": id, "outputs": outputs, "drift": drift}));
            }
            ("action", Some("health_check")) => {
                let plan = self
                    .first_command(&[REFRESH_PLAN, &[lock]].concat())
                    .await?;
                return match plan {
                    0 => Ok(json!({"deployment_id": id, "healthy": true, "drift": false})),
                    2 => Ok(json!({"deployment_id": id, "healthy": false, "drift": true})),
                    _ => Err(self.failure("terraform plan -refresh-only")),
                };
            }
            ("destroy", _) => {
                let destroy = self
                    .first_command(&[
                        "destroy",
                        "-auto-approve",
                        "-json",
                        "-input=false",
                        "-no-color",
                        lock,
                    ])
                    .await?;
                self.check(destroy, "terraform destroy")?;
            }
            _ => {
                let plan = self
                    .first_command(&[
                        "plan",
                        "-json",
                        "-input=false",
                        "-no-color",
                        lock,
                        "-out=plan.tfplan",
                    ])
                    .await?;
                self.check(plan, "terraform plan")?;
                // The plan's summary is stored while the apply starts.
                let saved = self.save_progress(id);
                let args = [
                    "apply",
                    "-json",
                    "-input=false",
                    "-no-color",
                    lock,
                    "plan.tfplan",
                ];
                let apply = self.command(&args, true);
                let (saved, apply) = tokio::join!(saved, apply);
                // Progress is informative: failing to store it must not fail an apply that ran.
                if let Err(err) = saved {
                    tracing::warn!(deployment_id = %id, error = %err, "cannot store the plan summary");
                }
                self.check(apply?, "terraform apply")?;
            }
        }
        Ok(json!({"deployment_id": id, "outputs": self.outputs}))
    }

    /// `terraform init`, or the kept result of an identical configuration's (see
    /// `terraform::init_cache`). Returns the key of the entry it reused, if it did.
    async fn init(&mut self) -> Result<Option<String>, JobError> {
        let terraform = &self.ctx.state.terraform;
        let key = match terraform.version().await {
            Ok(version) => InitCache::key(&version, &self.dir).ok(),
            Err(_) => None,
        };
        if let Some(key) = &key {
            let (cache, dir, lookup) =
                (terraform.init_cache.clone(), self.dir.clone(), key.clone());
            let restored = tokio::task::spawn_blocking(move || cache.restore(&lookup, &dir)).await;
            if let Ok(Ok(true)) = restored {
                self.log.line(
                    "info",
                    "system",
                    "terraform init: reused the initialized directory of an identical configuration",
                );
                return Ok(key.clone().into());
            }
        }
        self.fresh_init(key).await?;
        Ok(None)
    }

    /// Runs `terraform init` and keeps its result under `key`.
    async fn fresh_init(&mut self, key: Option<String>) -> Result<(), JobError> {
        let init = self
            .command(&["init", "-input=false", "-no-color"], false)
            .await?;
        self.check(init, "terraform init")?;
        if let Some(key) = key {
            let (cache, dir) = (
                self.ctx.state.terraform.init_cache.clone(),
                self.dir.clone(),
            );
            if let Ok(Err(err)) = tokio::task::spawn_blocking(move || cache.store(&key, &dir)).await
            {
                tracing::warn!(error = %err, "cannot keep the result of terraform init");
            }
        }
        Ok(())
    }

    /// The command after `init`. When `init` was reused and Terraform says the directory needs
    /// one (the kept entry was damaged), it forgets the entry, initializes and runs it again.
    async fn first_command(&mut self, args: &[&str]) -> Result<i32, JobError> {
        let reused = self.init().await?;
        let code = self.command(args, true).await?;
        let Some(key) = reused else {
            return Ok(code);
        };
        let asks_for_init = self.diagnostics.iter().any(|d| {
            d.get("severity").and_then(Value::as_str) == Some("error")
                && ["summary", "detail"].iter().any(|k| {
                    d.get(*k)
                        .and_then(Value::as_str)
                        .is_some_and(|text| text.contains("terraform init"))
                })
        });
        if code != 1 || !asks_for_init {
            return Ok(code);
        }
        self.log.line(
            "warn",
            "system",
            "the reused init does not fit this directory; running terraform init",
        );
        self.ctx.state.terraform.init_cache.forget(&key);
        self.diagnostics.clear();
        self.stderr_tail.clear();
        self.fresh_init(Some(key)).await?;
        self.command(args, true).await
    }

    fn check(&self, code: i32, what: &str) -> Result<(), JobError> {
        if code == 0 {
            Ok(())
        } else {
            Err(self.failure(what))
        }
    }

    /// The error for a failed command: Terraform's first error diagnostic, or its last
    /// lines on stderr.
    fn failure(&self, what: &str) -> JobError {
        let detail = self
            .diagnostics
            .iter()
            .find(|d| d.get("severity").and_then(Value::as_str) == Some("error"))
            .map(|d| {
                let summary = d.get("summary").and_then(Value::as_str).unwrap_or_default();
                let detail = d.get("detail").and_then(Value::as_str).unwrap_or_default();
                if detail.is_empty() {
                    summary.to_string()
                } else {
                    format!("{summary}: {detail}")
                }
            });
        let detail =
            detail.or_else(|| (!self.stderr_tail.is_empty()).then(|| self.stderr_tail.join(" ")));
        JobError::Fatal(match detail {
            Some(detail) => format!("{what} failed: {detail}"),
            None => format!("{what} failed"),
        })
    }

    /// Stores the plan summary, progress and diagnostics so far. The future owns what it
    /// writes, so it can run while Terraform does.
    fn save_progress(&self, id: Uuid) -> impl Future<Output = Result<(), JobError>> + 'static {
        let db = self.ctx.state.db.clone();
        let summary = self.summary.clone();
        let progress = Value::Object(self.progress.clone());
        let diagnostics = Value::Array(self.diagnostics.clone());
        async move {
            sqlx::query!(
                "UPDATE deployments SET plan_summary = COALESCE($2, plan_summary), progress = $3, diagnostics = $4
                 WHERE id = $1",
                id,
                summary,
                progress,
                diagnostics
            )
            .execute(&db)
            .await?;
            Ok(())
        }
    }

    /// What a saved refresh-only plan says changed outside Terraform: each changed output, and
    /// each changed top-level attribute of a resource, with the value expected and found.
    async fn drift_in(&self, plan_file: &str) -> Result<Vec<Value>, JobError> {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let program = self.ctx.state.terraform.program().to_string();
        let args = vec![
            "show".to_string(),
            "-json".to_string(),
            "-no-color".to_string(),
            plan_file.to_string(),
        ];
        let (dir, env, cancel) = (self.dir.clone(), self.env.clone(), self.ctx.cancel.clone());
        let running = async move {
            let result =
                run::run(&program, &args, &dir, &env, Limits::default(), &cancel, &tx).await;
            drop(tx);
            result
        };
        let collect = async {
            let mut stdout = String::new();
            while let Some((stream, line)) = rx.recv().await {
                if stream == Stream::Stdout {
                    stdout.push_str(&line);
                }
            }
            stdout
        };
        let (code, stdout) = tokio::join!(running, collect);
        match code {
            Ok(0) => {}
            Ok(_) => {
                return Err(JobError::Fatal(
                    "terraform show of the refresh plan failed".into(),
                ));
            }
            Err(RunError::Cancelled) => return Err(JobError::Cancelled),
            Err(err) => return Err(JobError::Fatal(err.to_string())),
        }
        let plan: Value = serde_json::from_str(&stdout)
            .map_err(|err| JobError::Fatal(format!("cannot read the refresh plan: {err}")))?;
        Ok(plan_drift(&plan))
    }

    /// Runs one Terraform command, logging its output (parsed when `json`).
    /// Returns the exit code.
    async fn command(&mut self, args: &[&str], json: bool) -> Result<i32, JobError> {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let program = self.ctx.state.terraform.program().to_string();
        let (dir, env, cancel) = (self.dir.clone(), self.env.clone(), self.ctx.cancel.clone());
        let running = async move {
            let result =
                run::run(&program, &args, &dir, &env, Limits::default(), &cancel, &tx).await;
            drop(tx);
            result
        };
        let consume = async {
            while let Some((stream, line)) = rx.recv().await {
                if json && stream == Stream::Stdout {
                    self.event(&line);
                } else if !line.trim().is_empty() {
                    if stream == Stream::Stderr {
                        if self.stderr_tail.len() == 5 {
                            self.stderr_tail.remove(0);
                        }
                        self.stderr_tail.push(line.trim().to_string());
                    }
                    let level = if stream == Stream::Stderr {
                        "error"
                    } else {
                        "info"
                    };
                    let type_ = if stream == Stream::Stderr {
                        "stderr"
                    } else {
                        "stdout"
                    };
                    self.log.line(level, type_, line);
                }
            }
        };
        let (result, ()) = tokio::join!(running, consume);
        match result {
            Ok(code) => Ok(code),
            Err(RunError::Cancelled) => Err(JobError::Cancelled),
            Err(RunError::Spawn(err)) => Err(JobError::Retryable(format!(
                "cannot start terraform: {err}"
            ))),
            Err(err) => Err(JobError::Fatal(err.to_string())),
        }
    }

    /// One line of Terraform's `-json` stream: logged as its human message, and read for the
    /// plan summary, per-resource progress and diagnostics.
    fn event(&mut self, line: &str) {
        let Ok(event) = serde_json::from_str::<Value>(line) else {
            self.log.line("info", "stdout", line);
            return;
        };
        let text = |key: &str| event.get(key).and_then(Value::as_str).unwrap_or_default();
        let type_ = text("type").to_string();
        let level = match text("@level") {
            "" => "info",
            level => level,
        };
        let ts = text("@timestamp")
            .parse::<DateTime<Utc>>()
            .unwrap_or_else(|_| Utc::now());
        let mut message = text("@message").to_string();
        match type_.as_str() {
            "change_summary" => {
                if let Some(changes) = event.get("changes") {
                    let count = |k: &str| changes.get(k).cloned().unwrap_or(Value::from(0));
                    let summary = json!({"add": count("add"), "change": count("change"), "remove": count("remove")});
                    if changes.get("operation").and_then(Value::as_str) == Some("plan")
                        || self.summary.is_none()
                    {
                        self.summary = Some(summary);
                    }
                }
            }
            "apply_start" | "apply_progress" | "apply_complete" | "apply_errored" => {
                let hook = event.get("hook");
                let address = hook
                    .and_then(|h| h.pointer("/resource/addr"))
                    .and_then(Value::as_str)
                    .unwrap_or("unknown")
                    .to_string();
                let status = match type_.as_str() {
                    "apply_start" | "apply_progress" => "running",
                    "apply_complete" => "complete",
                    _ => "errored",
                };
                self.progress.insert(
                    address,
                    json!({
                        "action": hook.and_then(|h| h.get("action")).cloned().unwrap_or(Value::Null),
                        "status": status,
                        "elapsed_seconds": hook.and_then(|h| h.get("elapsed_seconds")).cloned().unwrap_or(Value::from(0)),
                    }),
                );
            }
            "outputs" => {
                // The plan announces outputs without values; the apply reports the values.
                let outputs = event.get("outputs").and_then(Value::as_object);
                for (name, output) in outputs.into_iter().flatten() {
                    if let Some(value) = output.get("value")
                        && output.get("sensitive") != Some(&Value::Bool(true))
                    {
                        self.outputs.insert(name.clone(), value.clone());
                    }
                }
            }
            "diagnostic" => {
                if let Some(diagnostic) = event.get("diagnostic") {
                    self.diagnostics.push(diagnostic.clone());
                    let detail = diagnostic
                        .get("detail")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    if !detail.is_empty() {
                        message = format!("{message}: {detail}");
                    }
                }
            }
            _ => {}
        }
        self.log.line_at(ts, level, &type_, message);
    }
}

/// The drift in a plan's JSON (`terraform show -json`): outputs whose value changed, and the
/// changed top-level attributes of resources changed outside Terraform.
pub fn plan_drift(plan: &Value) -> Vec<Value> {
    let mut drift = Vec::new();
    for (name, change) in plan
        .get("output_changes")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let (before, after) = (&change["before"], &change["after"]);
        // An output new to the configuration (an upgrade added it) is not a change in the cloud.
        if before.is_null() || before == after {
            continue;
        }
        let sensitive = change["before_sensitive"] == true || change["after_sensitive"] == true;
        let (before, after) = if sensitive {
            (&json!("(sensitive)"), &json!("(sensitive)"))
        } else {
            (before, after)
        };
        drift.push(json!({"attribute": name, "expected": before, "actual": after}));
    }
    for resource in plan
        .get("resource_drift")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let address = resource["address"].as_str().unwrap_or("unknown");
        let change = &resource["change"];
        let (before, after) = (&change["before"], &change["after"]);
        // Values Terraform marks sensitive are named, never shown.
        let sensitive = |key: &str| {
            ["before_sensitive", "after_sensitive"]
                .iter()
                .any(|k| change[*k] == true || change[*k].get(key).is_some_and(|v| v != false))
        };
        match (before.as_object(), after.as_object()) {
            (Some(b), Some(a)) => {
                for key in b.keys().chain(a.keys().filter(|k| !b.contains_key(*k))) {
                    if sensitive(key) && b.get(key) != a.get(key) {
                        drift.push(json!({"attribute": format!("{address}.{key}"),
                                          "expected": "(sensitive)", "actual": "(sensitive)"}));
                    } else if b.get(key) != a.get(key) {
                        drift.push(json!({"attribute": format!("{address}.{key}"),
                                          "expected": b.get(key), "actual": a.get(key)}));
                    }
                }
            }
            // Deleted outside Terraform (after is null), or some other whole change; its
            // values are not repeated (they may hold secrets).
            _ => drift.push(json!({"attribute": address, "expected": "present",
                                   "actual": if after.is_null() { "deleted" } else { "changed" }})),
        }
    }
    drift
}

/// A plan that only reads the cloud; exit code 2 says something differs from the state.
const REFRESH_PLAN: &[&str] = &[
    "plan",
    "-refresh-only",
    "-detailed-exitcode",
    "-json",
    "-input=false",
    "-no-color",
];

/// The Terraform variables: the resource's identity and the desired spec, tags and power state.
pub fn variables(resource_id: Uuid, name: &str, region: Option<&str>, desired: &Value) -> Value {
    let mut variables = Map::new();
    variables.insert("resource_id".into(), json!(resource_id));
    variables.insert("name".into(), json!(name));
    variables.insert("region".into(), json!(region.unwrap_or_default()));
    variables.insert(
        "tags".into(),
        desired.get("tags").cloned().unwrap_or(json!({})),
    );
    variables.insert(
        "power_state".into(),
        desired
            .get("power_state")
            .cloned()
            .unwrap_or(json!("running")),
    );
    for part in ["spec", "derived"] {
        if let Some(values) = desired.get(part).and_then(Value::as_object) {
            variables.extend(values.clone());
        }
    }
    Value::Object(variables)
}

/// A deployment whose task was cancelled before it ran: cancelled, its resource's status
/// settled, and its log followers told.
pub async fn cancelled_before_start(conn: &mut PgConnection, task_id: Uuid) -> sqlx::Result<()> {
    let Some(d) = sqlx::query!(
        "UPDATE deployments d SET status = 'cancelled', error = 'cancelled by request',
                waiting_reason = NULL, finished_at = now()
         FROM resources r
         WHERE d.task_id = $1 AND d.status = 'queued' AND r.id = d.resource_id
         RETURNING d.id, d.tenant_id, d.resource_id, r.provider_id",
        task_id
    )
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(());
    };
    settle_and_announce(
        conn,
        d.id,
        d.tenant_id,
        d.resource_id,
        d.provider_id,
        "cancel",
    )
    .await
}

/// After a deployment ends: settles its resource's status, announces the change on
/// `/ws/events`, and wakes the deployment's log followers so they send `end`.
async fn settle_and_announce(
    conn: &mut PgConnection,
    deployment_id: Uuid,
    tenant_id: Uuid,
    resource_id: Uuid,
    provider_id: Uuid,
    action: &str,
) -> sqlx::Result<()> {
    let status = crate::resources::settle_status(&mut *conn, resource_id).await?;
    crate::events::resource_changed(
        &mut *conn,
        tenant_id,
        resource_id,
        provider_id,
        action,
        &status,
    )
    .await?;
    sqlx::query!(
        "SELECT pg_notify($1, $2)",
        super::logs::LOG_CHANNEL,
        deployment_id.to_string()
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Records the outcome on the deployment and the resource, and announces it.
async fn finish(
    ctx: &JobContext,
    id: Uuid,
    d: &Loaded,
    result: &Result<Value, JobError>,
    progress: Map<String, Value>,
    diagnostics: Vec<Value>,
    summary: Option<Value>,
) -> Result<(), JobError> {
    let (status, error) = match result {
        Ok(_) => ("succeeded", None),
        Err(JobError::Cancelled) => ("cancelled", Some("cancelled by request".to_string())),
        Err(err) => ("failed", Some(err.to_string())),
    };
    let outputs = result.as_ref().ok().and_then(|r| r.get("outputs")).cloned();
    let mut tx = ctx.state.db.begin().await?;
    sqlx::query!(
        "UPDATE deployments SET status = $2, error = $3, outputs = $4, progress = $5, diagnostics = $6,
                plan_summary = COALESCE($7, plan_summary), finished_at = now(), waiting_reason = NULL
         WHERE id = $1",
        id,
        status,
        error,
        outputs,
        Value::Object(progress),
        Value::Array(diagnostics),
        summary
    )
    .execute(&mut *tx)
    .await?;
    if status == "succeeded" {
        apply_outcome(&mut tx, d, outputs.as_ref(), result.as_ref().ok()).await?;
    }
    let action = d.action.as_deref().unwrap_or(&d.operation);
    settle_and_announce(
        &mut tx,
        id,
        d.tenant_id,
        d.resource_id,
        d.provider_id,
        action,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// What a successful run changes on the resource.
async fn apply_outcome(
    tx: &mut PgConnection,
    d: &Loaded,
    outputs: Option<&Value>,
    result: Option<&Value>,
) -> Result<(), JobError> {
    match (d.operation.as_str(), d.action.as_deref()) {
        ("action", Some("health_check")) => {
            sqlx::query!(
                "UPDATE resources SET last_synced = now() WHERE id = $1",
                d.resource_id
            )
            .execute(&mut *tx)
            .await?;
        }
        ("action", Some("refresh")) => {
            let drift = result
                .and_then(|r| r.get("drift"))
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let outputs = outputs.cloned().unwrap_or_else(|| d.attributes.clone());
            // A vm found stopped (or running) outside Strata is reported as it is.
            let power_state = outputs
                .get("power_state")
                .and_then(Value::as_str)
                .filter(|p| matches!(*p, "running" | "stopped"));
            sqlx::query!(
                "UPDATE resources SET attributes = $2, power_state = COALESCE($3, power_state),
                        estimated_monthly_cost = CASE WHEN COALESCE($3, power_state) = 'stopped' THEN 0
                                                      ELSE cost_per_hour * $5 END,
                        drifted = drifted OR $4, last_synced = now(), updated_at = now()
                 WHERE id = $1",
                d.resource_id,
                outputs,
                power_state,
                !drift.is_empty(),
                crate::pricing::HOURS_PER_MONTH
            )
            .execute(&mut *tx)
            .await?;
            for change in drift {
                sqlx::query!(
                    "INSERT INTO resource_drift (tenant_id, resource_id, deployment_id, attribute, expected, actual)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                    d.tenant_id,
                    d.resource_id,
                    d.id,
                    change["attribute"].as_str().unwrap_or("unknown"),
                    change.get("expected").cloned(),
                    change.get("actual").cloned()
                )
                .execute(&mut *tx)
                .await?;
            }
        }
        ("destroy", _) => {
            sqlx::query!(
                "UPDATE resources SET destroyed_at = now(), power_state = 'stopped', estimated_monthly_cost = 0,
                        updated_at = now(), last_synced = now()
                 WHERE id = $1",
                d.resource_id
            )
            .execute(&mut *tx)
            .await?;
        }
        _ => {
            let outputs = outputs.cloned().unwrap_or(json!({}));
            let cloud_id = [
                "instance_id",
                "bucket_id",
                "network_id",
                "record_id",
                "cluster_id",
                "id",
            ]
            .iter()
            .find_map(|k| outputs.get(*k).and_then(Value::as_str))
            .map(str::to_string);
            let power_state = d
                .desired
                .get("power_state")
                .and_then(Value::as_str)
                .unwrap_or("running");
            // The cloud now is what was applied: nothing differs behind Strata's back.
            sqlx::query!(
                "DELETE FROM sandbox_observed WHERE resource_id = $1",
                d.resource_id
            )
            .execute(&mut *tx)
            .await?;
            sqlx::query!(
                "UPDATE resources SET attributes = $2, cloud_id = COALESCE($3, cloud_id), spec = $4, tags = $5,
                        power_state = $6,
                        estimated_monthly_cost = CASE WHEN $6 = 'stopped' THEN 0 ELSE cost_per_hour * $7 END,
                        drifted = false, updated_at = now(), last_synced = now()
                 WHERE id = $1",
                d.resource_id,
                outputs,
                cloud_id,
                d.desired.get("spec").cloned().unwrap_or(json!({})),
                d.desired.get("tags").cloned().unwrap_or(json!({})),
                power_state,
                crate::pricing::HOURS_PER_MONTH
            )
            .execute(&mut *tx)
            .await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_names_changed_outputs_and_attributes_but_not_secrets_or_new_outputs() {
        let plan = json!({
            "output_changes": {
                "power_state": {"before": "running", "after": "stopped"},
                "name": {"before": null, "after": "web-1"},
                "image": {"before": "a", "after": "a"},
                "password": {"before": "x", "after": "y", "after_sensitive": true},
            },
            "resource_drift": [
                {"address": "aws_instance.vm", "change": {
                    "before": {"instance_type": "t3.micro", "user_data": "s1"},
                    "after": {"instance_type": "t3.large", "user_data": "s2"},
                    "before_sensitive": {"user_data": true}, "after_sensitive": {"user_data": true}}},
                {"address": "aws_eip.ip", "change": {"before": {"secret": "s"}, "after": null}},
            ],
        });
        let mut drift = plan_drift(&plan);
        drift.sort_by_key(|d| d["attribute"].as_str().unwrap_or_default().to_string());
        assert_eq!(
            drift,
            [
                json!({"attribute": "aws_eip.ip", "expected": "present", "actual": "deleted"}),
                json!({"attribute": "aws_instance.vm.instance_type", "expected": "t3.micro", "actual": "t3.large"}),
                json!({"attribute": "aws_instance.vm.user_data", "expected": "(sensitive)", "actual": "(sensitive)"}),
                json!({"attribute": "password", "expected": "(sensitive)", "actual": "(sensitive)"}),
                json!({"attribute": "power_state", "expected": "running", "actual": "stopped"}),
            ]
        );
    }

    #[test]
    fn the_backend_connection_string_keeps_credentials_and_sets_tls() {
        let options: sqlx::postgres::PgConnectOptions =
            "postgres://u%27ser:pa%20ss@db.local:6543/strata"
                .parse()
                .unwrap();
        let conn = backend_connection_string(&options);
        assert_eq!(
            conn,
            "postgres://u'ser:pa%20ss@db.local:6543/strata?sslmode=disable"
        );
    }
}
