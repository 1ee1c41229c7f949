//! A private PostgreSQL cluster run from the machine's own PostgreSQL binaries.
//!
//! `strata up` uses it when `DATABASE_URL` is unset, so a newcomer needs nothing but the binary
//! and PostgreSQL's server package. The cluster lives in `<data_dir>/postgres`, listens on
//! 127.0.0.1 only, on a free port remembered in `<data_dir>/postgres.port`, and is reused by the
//! next start. PostgreSQL refuses to run as root, so as root the cluster is owned and run by
//! the unprivileged `postgres` user.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, bail};
use nix::unistd::{Gid, Uid, User};
use tokio::process::Command;

pub struct EmbeddedPostgres {
    bin_dir: PathBuf,
    cluster_dir: PathBuf,
    log_file: PathBuf,
    port: u16,
    run_as: Option<(Uid, Gid)>,
    /// Whether this process started the server (and so stops it).
    started_here: bool,
}

impl EmbeddedPostgres {
    /// Starts (or reuses) the cluster under `root` and makes sure database `database` exists.
    pub async fn start(root: &Path, database: &str) -> anyhow::Result<Self> {
        std::fs::create_dir_all(root)
            .with_context(|| format!("cannot create {}", root.display()))?;
        let root = root.canonicalize()?;
        let bin_dir = find_bin_dir()?;
        let run_as = unprivileged_user()?;
        let mut pg = Self {
            bin_dir,
            cluster_dir: root.join("postgres"),
            log_file: root.join("postgres.log"),
            port: 0,
            run_as,
            started_here: false,
        };
        pg.init_cluster().await?;
        let port_file = root.join("postgres.port");
        let remembered = std::fs::read_to_string(&port_file)
            .ok()
            .and_then(|s| s.trim().parse::<u16>().ok());
        if let (Some(port), true) = (remembered, pg.is_running().await) {
            pg.port = port;
        } else {
            pg.port = match remembered {
                Some(port) if port_is_free(port) => port,
                _ => free_port()?,
            };
            std::fs::write(&port_file, pg.port.to_string())?;
            pg.start_server().await?;
            pg.started_here = true;
        }
        pg.create_database(database).await?;
        Ok(pg)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of a database in this cluster.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Stops the server if this process started it.
    pub async fn stop(&self) -> anyhow::Result<()> {
        if !self.started_here {
            return Ok(());
        }
        let status = self
            .pg_command("pg_ctl")
            .arg("-D")
            .arg(&self.cluster_dir)
            .args(["-m", "fast", "-w", "stop"])
            .stdout(Stdio::null())
            .status()
            .await?;
        if !status.success() {
            bail!("pg_ctl stop failed ({status})");
        }
        Ok(())
    }

    fn pg_command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin_dir.join(program));
        // The unprivileged user may not be able to enter our working directory.
        command
            .current_dir(self.cluster_dir.parent().unwrap_or(Path::new("/")))
            .env_remove("PGDATA")
            .env_remove("PGPORT")
            .env("LC_ALL", "C");
        if let Some((uid, gid)) = self.run_as {
            command.uid(uid.as_raw()).gid(gid.as_raw());
        }
        command
    }

    async fn init_cluster(&self) -> anyhow::Result<()> {
        if self.cluster_dir.join("PG_VERSION").exists() {
            return Ok(());
        }
        std::fs::create_dir_all(&self.cluster_dir)?;
        set_mode(&self.cluster_dir, 0o700)?;
        if let Some((uid, gid)) = self.run_as {
            nix::unistd::chown(&self.cluster_dir, Some(uid), Some(gid))
                .context("cannot hand the cluster directory to the postgres user")?;
            // The log file is written by the server, so it belongs to the same user.
            std::fs::write(&self.log_file, b"")?;
            nix::unistd::chown(&self.log_file, Some(uid), Some(gid))?;
        }
        let output = self
            .pg_command("initdb")
            .arg("-D")
            .arg(&self.cluster_dir)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C"])
            .output()
            .await
            .context("cannot run initdb")?;
        if !output.status.success() {
            bail!(
                "initdb failed: {}{}",
                String::from_utf8_lossy(&output.stderr),
                if self.run_as.is_some() {
                    " (the postgres user must be able to enter every parent directory of the data directory; set STRATA_DATA_DIR elsewhere if it cannot)"
                } else {
                    ""
                }
            );
        }
        Ok(())
    }

    async fn is_running(&self) -> bool {
        self.pg_command("pg_ctl")
            .arg("-D")
            .arg(&self.cluster_dir)
            .arg("status")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await
            .is_ok_and(|s| s.success())
    }

    async fn start_server(&self) -> anyhow::Result<()> {
        if !self.log_file.exists() {
            std::fs::write(&self.log_file, b"")?;
            if let Some((uid, gid)) = self.run_as {
                nix::unistd::chown(&self.log_file, Some(uid), Some(gid))?;
            }
        }
        let options = format!(
            "-c port={} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c max_connections=200",
            self.port
        );
        let status = self
            .pg_command("pg_ctl")
            .arg("-D")
            .arg(&self.cluster_dir)
            .arg("-l")
            .arg(&self.log_file)
            .args(["-w", "-t", "60", "-o", &options, "start"])
            .stdout(Stdio::null())
            .status()
            .await
            .context("cannot run pg_ctl")?;
        if !status.success() {
            let log = std::fs::read_to_string(&self.log_file).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(10).collect();
            bail!(
                "PostgreSQL did not start; the end of {}:\n{}",
                self.log_file.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        Ok(())
    }

    async fn create_database(&self, database: &str) -> anyhow::Result<()> {
        let admin = crate::db::connect(&self.url("postgres"), 1).await?;
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(database)
                .fetch_one(&admin)
                .await?;
        if !exists {
            let quoted = format!("\"{}\"", database.replace('"', "\"\""));
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {quoted}")))
                .execute(&admin)
                .await?;
        }
        admin.close().await;
        Ok(())
    }
}

/// The directory holding `initdb` and `pg_ctl`: on PATH, from `pg_config --bindir`, or the
/// newest `/usr/lib/postgresql/*/bin`.
pub fn find_bin_dir() -> anyhow::Result<PathBuf> {
    let has_tools = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(path) = std::env::var_os("PATH")
        && let Some(dir) = std::env::split_paths(&path).find(|d| has_tools(d))
    {
        return Ok(dir);
    }
    if let Ok(output) = std::process::Command::new("pg_config")
        .arg("--bindir")
        .output()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        if output.status.success() && has_tools(&dir) {
            return Ok(dir);
        }
    }
    let mut candidates: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            has_tools(&bin).then_some((version, bin))
        })
        .collect();
    candidates.sort();
    candidates.pop().map(|(_, dir)| dir).context(
        "PostgreSQL's server binaries (initdb, pg_ctl) were not found on PATH, via pg_config, \
         or under /usr/lib/postgresql; install PostgreSQL or set DATABASE_URL",
    )
}

/// As root, the user the cluster runs as; otherwise none (we run it ourselves).
fn unprivileged_user() -> anyhow::Result<Option<(Uid, Gid)>> {
    if !Uid::effective().is_root() {
        return Ok(None);
    }
    let user = User::from_name("postgres")?.context(
        "running as root, and PostgreSQL refuses to run as root: create a `postgres` user \
         (PostgreSQL's packages do) or set DATABASE_URL",
    )?;
    Ok(Some((user.uid, user.gid)))
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

fn port_is_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind(("127.0.0.1", 0))?
        .local_addr()?
        .port())
}
