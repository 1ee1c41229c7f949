use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine;
use clap::{Args, ValueEnum};

/// Settings every role shares. Each flag also reads an environment variable.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// PostgreSQL URL. `strata up` starts a private cluster when it is unset.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, global = true)]
    pub database_url: Option<String>,

    /// Where `strata up` keeps its PostgreSQL cluster and generated keys.
    #[arg(
        long,
        env = "STRATA_DATA_DIR",
        default_value = "./.strata",
        global = true
    )]
    pub data_dir: PathBuf,

    /// Where backups are written (default: `<data dir>/backups`).
    #[arg(long, env = "STRATA_BACKUP_DIR", global = true)]
    pub backup_dir: Option<PathBuf>,

    /// 32-byte key (base64 or 64 hex digits) that encrypts credentials at rest.
    #[arg(long, env = "STRATA_MASTER_KEY", hide_env_values = true, global = true)]
    pub master_key: Option<String>,

    /// Secret that signs access tokens (HS256).
    #[arg(long, env = "JWT_SECRET", hide_env_values = true, global = true)]
    pub jwt_secret: Option<String>,

    /// Lifetime of an access token, in seconds.
    #[arg(long, env = "JWT_TTL_SECONDS", default_value_t = 3600, global = true)]
    pub jwt_ttl_seconds: u64,

    /// When set, this value used as `X-API-Key` is an operator key with admin rights on every tenant.
    #[arg(long, env = "API_SECRET_KEY", hide_env_values = true, global = true)]
    pub api_secret_key: Option<String>,

    /// Log format.
    #[arg(long, env = "STRATA_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,

    /// The `terraform` executable.
    #[arg(
        long,
        env = "STRATA_TERRAFORM",
        default_value = "terraform",
        global = true
    )]
    pub terraform: String,

    /// A directory of provider plugins used as Terraform's filesystem mirror (offline installs).
    #[arg(long, env = "STRATA_TERRAFORM_PLUGIN_DIR", global = true)]
    pub terraform_plugin_dir: Option<PathBuf>,

    /// GOGC for Terraform and its providers: Go collects garbage when the heap grows by this
    /// percentage. Go's default, 100, makes a short run spend ~20% of its time collecting.
    #[arg(
        long,
        env = "STRATA_TERRAFORM_GOGC",
        default_value_t = 400,
        global = true
    )]
    pub terraform_gogc: u32,

    /// GOMEMLIMIT for Terraform and its providers: past this heap size Go collects garbage
    /// however GOGC is set (Go's syntax: 512MiB, 2GiB, or "off").
    #[arg(long, env = "STRATA_TERRAFORM_MEMORY_LIMIT", default_value = "1GiB", value_parser = parse_go_memory_limit, global = true)]
    pub terraform_memory_limit: String,

    /// Cloudflare's v4 API, with its trailing slash (another address for a proxy or a test
    /// stand-in). Set by the operator, not per provider, so a tenant cannot send its token
    /// (or the worker's requests) elsewhere.
    #[arg(
        long,
        env = "STRATA_CLOUDFLARE_API_URL",
        default_value = "https://api.cloudflare.com/client/v4/",
        global = true
    )]
    pub cloudflare_api_url: String,

    /// Special-use addresses (loopback, private, link-local, ...) that connections a tenant
    /// directs (imports by URL, provider health checks) may reach anyway, as CIDRs separated by
    /// commas (`10.20.0.0/16,fd00::/8`). Empty: public addresses only, so no tenant can make
    /// workers read internal services.
    #[arg(
        long,
        env = "STRATA_OUTBOUND_ALLOW_CIDRS",
        value_delimiter = ',',
        value_parser = crate::outbound::OutboundPolicy::parse_cidr,
        global = true
    )]
    pub outbound_allow_cidrs: Vec<ipnet::IpNet>,

    /// Largest billing export accepted as an upload, in bytes.
    #[arg(
        long,
        env = "STRATA_IMPORT_MAX_BYTES",
        default_value_t = 8 << 30,
        global = true
    )]
    pub import_max_bytes: u64,

    /// Largest number of database connections this process opens.
    #[arg(
        long,
        env = "STRATA_DB_MAX_CONNECTIONS",
        default_value_t = 20,
        global = true
    )]
    pub db_max_connections: u32,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address the HTTP API listens on.
    #[arg(long, env = "STRATA_BIND", default_value = "127.0.0.1:8000")]
    pub bind: SocketAddr,
}

#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    /// Jobs this process runs at once, per queue.
    #[arg(long, env = "STRATA_WORKER_CONCURRENCY", default_value_t = 8)]
    pub concurrency: usize,

    /// Seconds between worker heartbeats; a worker silent for three of them is dead and its
    /// jobs go to another worker.
    #[arg(long, env = "STRATA_WORKER_HEARTBEAT_SECONDS", default_value_t = 3)]
    pub heartbeat_seconds: u64,

    /// Days finished jobs stay in the queue's table (the tasks table keeps its own record).
    #[arg(long, env = "STRATA_JOB_RETENTION_DAYS", default_value_t = 7)]
    pub job_retention_days: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The settings a running process uses, resolved from the flags.
#[derive(Clone)]
pub struct Settings {
    pub master_key: [u8; 32],
    pub jwt_secret: Vec<u8>,
    pub jwt_ttl: Duration,
    pub api_secret_key: Option<String>,
    pub terraform: String,
    pub terraform_plugin_dir: Option<PathBuf>,
    pub terraform_gogc: u32,
    pub terraform_memory_limit: String,
    pub data_dir: PathBuf,
    pub backup_dir: PathBuf,
    pub cloudflare_api_url: String,
    pub outbound: crate::outbound::OutboundPolicy,
    pub import_max_bytes: u64,
}

impl std::fmt::Debug for Settings {
    // Never print the keys.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("jwt_ttl", &self.jwt_ttl)
            .field(
                "api_secret_key",
                &self.api_secret_key.as_ref().map(|_| "***"),
            )
            .field("terraform", &self.terraform)
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

impl Settings {
    /// Settings for `serve` and `worker`: the keys must be given.
    pub fn from_args(args: &CommonArgs) -> anyhow::Result<Self> {
        let master_key = args
            .master_key
            .as_deref()
            .context("STRATA_MASTER_KEY is not set (32 bytes, base64 or hex)")?;
        let jwt_secret = args
            .jwt_secret
            .as_deref()
            .context("JWT_SECRET is not set")?;
        Self::build(args, master_key, jwt_secret)
    }

    /// Settings for `up`: keys that are not given are generated once into the data directory.
    pub fn from_args_or_generate(args: &CommonArgs) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&args.data_dir)
            .with_context(|| format!("cannot create {}", args.data_dir.display()))?;
        let master_key = match &args.master_key {
            Some(key) => key.clone(),
            None => read_or_generate_secret(&args.data_dir.join("master.key"))?,
        };
        let jwt_secret = match &args.jwt_secret {
            Some(secret) => secret.clone(),
            None => read_or_generate_secret(&args.data_dir.join("jwt.secret"))?,
        };
        Self::build(args, &master_key, &jwt_secret)
    }

    /// Settings with fresh random keys, for benchmarks that run their own server in-process.
    pub fn ephemeral(args: &CommonArgs) -> anyhow::Result<Self> {
        let mut settings = Self::build(args, &generate_secret(), &generate_secret())?;
        settings.data_dir = std::env::temp_dir();
        settings.backup_dir = std::env::temp_dir().join("strata-bench-backups");
        settings.api_secret_key = None;
        Ok(settings)
    }

    fn build(args: &CommonArgs, master_key: &str, jwt_secret: &str) -> anyhow::Result<Self> {
        if jwt_secret.len() < 16 {
            bail!("JWT_SECRET must be at least 16 characters");
        }
        Ok(Self {
            master_key: parse_master_key(master_key)?,
            jwt_secret: jwt_secret.as_bytes().to_vec(),
            jwt_ttl: Duration::from_secs(args.jwt_ttl_seconds.max(1)),
            api_secret_key: args.api_secret_key.clone().filter(|k| !k.is_empty()),
            terraform: args.terraform.clone(),
            terraform_plugin_dir: args.terraform_plugin_dir.clone(),
            terraform_gogc: args.terraform_gogc,
            terraform_memory_limit: args.terraform_memory_limit.clone(),
            data_dir: args.data_dir.clone(),
            backup_dir: args
                .backup_dir
                .clone()
                .unwrap_or_else(|| args.data_dir.join("backups")),
            // The client joins endpoint paths onto the base: without the slash it would drop
            // the base's last segment.
            cloudflare_api_url: format!("{}/", args.cloudflare_api_url.trim_end_matches('/')),
            outbound: crate::outbound::OutboundPolicy::new(args.outbound_allow_cidrs.clone()),
            import_max_bytes: args.import_max_bytes,
        })
    }
}

/// A GOMEMLIMIT value: "off", or a whole number of bytes with an optional unit.
fn parse_go_memory_limit(text: &str) -> Result<String, String> {
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &text[digits.len()..];
    let valid = text == "off"
        || (!digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit())
            && ["", "B", "KiB", "MiB", "GiB", "TiB"].contains(&unit));
    if valid {
        Ok(text.to_string())
    } else {
        Err(format!(
            "{text:?} is not a Go memory limit (like 512MiB, 2GiB or off)"
        ))
    }
}

/// Accepts 32 bytes as standard base64 or as 64 hex digits.
pub fn parse_master_key(text: &str) -> anyhow::Result<[u8; 32]> {
    let text = text.trim();
    let bytes = if text.len() == 64 && text.chars().all(|c| c.is_ascii_hexdigit()) {
        (0..32)
            .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16))
            .collect::<Result<Vec<u8>, _>>()?
    } else {
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .context("STRATA_MASTER_KEY is neither base64 nor 64 hex digits")?
    };
    bytes.try_into().map_err(|b: Vec<u8>| {
        anyhow::anyhow!("STRATA_MASTER_KEY must be 32 bytes, got {}", b.len())
    })
}

/// A random 32-byte value in base64, suitable for both the master key and the JWT secret.
pub fn generate_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn read_or_generate_secret(path: &std::path::Path) -> anyhow::Result<String> {
    if let Ok(existing) = std::fs::read_to_string(path) {
        return Ok(existing.trim().to_string());
    }
    let secret = generate_secret();
    write_private_file(path, &secret)?;
    Ok(secret)
}

/// Writes a file only its owner can read.
pub fn write_private_file(path: &std::path::Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_memory_limits_take_gos_syntax() {
        for ok in ["off", "2GiB", "512MiB", "1073741824", "100B"] {
            assert_eq!(parse_go_memory_limit(ok).as_deref(), Ok(ok));
        }
        for bad in ["", "2GB", "two", "-1GiB", "1.5GiB", "GiB"] {
            assert!(parse_go_memory_limit(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn master_key_accepts_hex_and_base64_of_32_bytes() {
        let hex = "00".repeat(31) + "ff";
        assert_eq!(parse_master_key(&hex).unwrap()[31], 0xff);
        let b64 = generate_secret();
        assert!(parse_master_key(&b64).is_ok());
        assert!(parse_master_key("c2hvcnQ=").is_err());
        assert!(parse_master_key("not a key!").is_err());
    }
}
