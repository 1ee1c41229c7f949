//! Backups of the whole database (seed 004): `pg_dump` in custom format into the backup
//! directory, with its size and SHA-256 (also written beside it as `<file>.sha256`), made by a
//! task; `strata restore FILE` loads one into an empty database.
//!
//! A dump holds every tenant's data, so only the operator (`API_SECRET_KEY`) may make or list
//! them.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::{Principal, TenantAuth};
use crate::error::{AppError, AppResult};
use crate::http::{Json, Page, Pagination, Query};
use crate::jobs::{JobContext, JobError, JobKind};
use crate::state::AppState;
use crate::tasks::NewTask;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_backups, create_backup))
}

fn require_operator(auth: &TenantAuth) -> AppResult<()> {
    match auth.principal {
        Principal::Operator => Ok(()),
        _ => Err(AppError::Forbidden(
            "backups hold every tenant's data: only the operator key (API_SECRET_KEY) may use them"
                .into(),
        )),
    }
}

#[derive(Serialize, ToSchema)]
pub struct Backup {
    pub id: Uuid,
    pub task_id: Option<Uuid>,
    /// queued, running, succeeded or failed.
    pub status: String,
    /// The file in the backup directory.
    pub file_name: Option<String>,
    pub size_bytes: Option<i64>,
    pub sha256: Option<String>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

#[derive(Serialize, ToSchema)]
pub struct BackupStarted {
    pub id: Uuid,
    pub task_id: Uuid,
    pub message: String,
}

/// Start a backup of the whole database (operator only).
#[utoipa::path(post, path = "/backups", tag = "backups",
    responses((status = 202, body = BackupStarted), (status = 403)), security(("api_key" = [])))]
async fn create_backup(
    State(state): State<AppState>,
    auth: TenantAuth,
) -> AppResult<(StatusCode, Json<BackupStarted>)> {
    require_operator(&auth)?;
    let id = Uuid::new_v4();
    let mut tx = state.db.begin().await?;
    let task_id = crate::tasks::enqueue_one(
        &mut tx,
        NewTask {
            tenant_id: auth.tenant_id,
            kind: JobKind::BackupCreate,
            params: json!({ "backup_id": id }),
            created_by: auth.principal.user_id(),
        },
    )
    .await?;
    sqlx::query!(
        "INSERT INTO backups (id, tenant_id, task_id) VALUES ($1, $2, $3)",
        id,
        auth.tenant_id,
        task_id
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(BackupStarted {
            id,
            task_id,
            message: "Backup started".into(),
        }),
    ))
}

/// Backups, newest first (operator only).
#[utoipa::path(get, path = "/backups", tag = "backups", params(Pagination),
    responses((status = 200, body = Page<Backup>)), security(("api_key" = [])))]
async fn list_backups(
    State(state): State<AppState>,
    auth: TenantAuth,
    Query(page): Query<Pagination>,
) -> AppResult<Page<Backup>> {
    require_operator(&auth)?;
    let (limit, offset) = page.resolve()?;
    let data = sqlx::query_as!(
        Backup,
        "SELECT id, task_id, status, file_name, size_bytes, sha256, error, created_at, finished_at
         FROM backups ORDER BY created_at DESC, id LIMIT $1 OFFSET $2",
        limit,
        offset
    )
    .fetch_all(&state.db)
    .await?;
    let total = sqlx::query_scalar!(r#"SELECT count(*) AS "n!" FROM backups"#)
        .fetch_one(&state.db)
        .await?;
    Ok(Page::new(data, total, (limit, offset)))
}

/// The environment that points `pg_dump`/`pg_restore` at the database: libpq's variables, so
/// the password never shows in a process list.
fn libpq_env(options: &sqlx::postgres::PgConnectOptions) -> Vec<(&'static str, String)> {
    use sqlx::ConnectOptions;
    let url = options.to_url_lossy();
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .to_string()
    };
    let mut env = vec![
        ("PGHOST", options.get_host().to_string()),
        ("PGPORT", options.get_port().to_string()),
        ("PGUSER", options.get_username().to_string()),
        (
            "PGDATABASE",
            options.get_database().unwrap_or("postgres").to_string(),
        ),
        (
            "PGSSLMODE",
            match options.get_ssl_mode() {
                sqlx::postgres::PgSslMode::Disable => "disable",
                sqlx::postgres::PgSslMode::Allow => "allow",
                sqlx::postgres::PgSslMode::Prefer => "prefer",
                sqlx::postgres::PgSslMode::Require => "require",
                sqlx::postgres::PgSslMode::VerifyCa => "verify-ca",
                sqlx::postgres::PgSslMode::VerifyFull => "verify-full",
            }
            .to_string(),
        ),
    ];
    if let Some(socket) = options.get_socket() {
        env[0].1 = socket.display().to_string();
    }
    if let Some(password) = url.password() {
        env.push(("PGPASSWORD", decode(password)));
    }
    env
}

/// The SHA-256 of a file, read in chunks, and its size.
async fn sha256_of(path: &Path) -> std::io::Result<(String, u64)> {
    let mut file = tokio::fs::File::open(path).await?;
    let mut hash = Sha256::new();
    let mut buffer = vec![0; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buffer).await?;
        if n == 0 {
            break;
        }
        hash.update(&buffer[..n]);
        size += n as u64;
    }
    Ok((format!("{:x}", hash.finalize()), size))
}

/// `backup.create`: dumps the database into the backup directory. A retry starts over.
pub async fn create(ctx: &JobContext) -> Result<Value, JobError> {
    let id = ctx.id_param("backup_id")?;
    let db = &ctx.state.db;
    sqlx::query!("UPDATE backups SET status = 'running' WHERE id = $1", id)
        .execute(db)
        .await?;
    let result = dump(ctx, id).await;
    match &result {
        Ok((file_name, sha256, size)) => {
            sqlx::query!(
                "UPDATE backups SET status = 'succeeded', file_name = $2, sha256 = $3, size_bytes = $4,
                        error = NULL, finished_at = now()
                 WHERE id = $1",
                id,
                file_name,
                sha256,
                *size as i64
            )
            .execute(db)
            .await?;
        }
        Err(err) => {
            sqlx::query!(
                "UPDATE backups SET status = 'failed', error = $2, finished_at = now() WHERE id = $1",
                id,
                err.to_string()
            )
            .execute(db)
            .await?;
        }
    }
    let (file_name, sha256, size) = result?;
    Ok(json!({ "backup_id": id, "file_name": file_name, "sha256": sha256, "size_bytes": size }))
}

async fn dump(ctx: &JobContext, id: Uuid) -> Result<(String, String, u64), JobError> {
    let dir = &ctx.state.settings.backup_dir;
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|err| JobError::Fatal(format!("cannot create {}: {err}", dir.display())))?;
    let file_name = format!(
        "strata-{}-{}.dump",
        Utc::now().format("%Y%m%dT%H%M%SZ"),
        id.simple()
    );
    let path = dir.join(&file_name);
    let partial = dir.join(format!("{file_name}.partial"));
    let output = tokio::process::Command::new("pg_dump")
        .args(["--format=custom", "--no-owner", "--no-privileges", "--file"])
        .arg(&partial)
        .envs(libpq_env(&ctx.state.db.connect_options()))
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|err| JobError::Fatal(format!("cannot run pg_dump: {err}")))?;
    if !output.status.success() {
        let _ = tokio::fs::remove_file(&partial).await;
        return Err(JobError::Retryable(format!(
            "pg_dump failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    let (sha256, size) = sha256_of(&partial)
        .await
        .map_err(|err| JobError::Retryable(format!("cannot read the dump: {err}")))?;
    // Complete or absent: the checksum first, then the dump under its final name.
    let store = |err: std::io::Error| JobError::Retryable(format!("cannot store the dump: {err}"));
    tokio::fs::write(
        dir.join(format!("{file_name}.sha256")),
        format!("{sha256}  {file_name}\n"),
    )
    .await
    .map_err(store)?;
    tokio::fs::rename(&partial, &path).await.map_err(store)?;
    Ok((file_name, sha256, size))
}

/// `strata restore FILE`: checks the file against its `.sha256` (when there is one), loads it
/// into the database at `url`, which must be empty, then brings its schema up to date.
pub async fn restore(url: &str, file: &Path) -> anyhow::Result<()> {
    let checksum_file = PathBuf::from(format!("{}.sha256", file.display()));
    if let Ok(expected) = tokio::fs::read_to_string(&checksum_file).await {
        let expected = expected.split_whitespace().next().unwrap_or_default();
        let (actual, _) = sha256_of(file)
            .await
            .with_context(|| format!("cannot read {}", file.display()))?;
        if actual != expected {
            bail!(
                "{} does not match its checksum in {} (damaged or changed)",
                file.display(),
                checksum_file.display()
            );
        }
    } else if !file.is_file() {
        bail!("{} does not exist", file.display());
    }
    let db = crate::db::connect(url, 2).await?;
    let tables = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"#
    )
    .fetch_one(&db)
    .await?;
    if tables > 0 {
        bail!("the database is not empty ({tables} tables): restore into an empty database");
    }
    let output = tokio::process::Command::new("pg_restore")
        .args([
            "--no-owner",
            "--no-privileges",
            "--exit-on-error",
            "--single-transaction",
            "--dbname",
        ])
        // libpq reads the rest from the environment; the name is repeated for clarity.
        .arg(db.connect_options().get_database().unwrap_or("postgres"))
        .arg(file)
        .envs(libpq_env(&db.connect_options()))
        .output()
        .await
        .context("cannot run pg_restore")?;
    if !output.status.success() {
        bail!(
            "pg_restore failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    crate::db::migrate(&db).await?;
    db.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpq_gets_the_connection_from_the_environment_with_the_password_decoded() {
        let options: sqlx::postgres::PgConnectOptions =
            "postgres://strata:p%40ss%20word@db.example:6543/prod?sslmode=require"
                .parse()
                .unwrap();
        let env: std::collections::BTreeMap<_, _> = libpq_env(&options).into_iter().collect();
        assert_eq!(env["PGHOST"], "db.example");
        assert_eq!(env["PGPORT"], "6543");
        assert_eq!(env["PGUSER"], "strata");
        assert_eq!(env["PGDATABASE"], "prod");
        assert_eq!(env["PGSSLMODE"], "require");
        assert_eq!(env["PGPASSWORD"], "p@ss word");
    }
}
