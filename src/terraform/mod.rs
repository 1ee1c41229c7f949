//! The `terraform` executable: discovery, version, configuration rendering and runs.

pub mod init_cache;
pub mod render;
pub mod run;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;

use init_cache::InitCache;
use tokio::sync::Mutex;

/// The `terraform` executable. Its version is asked once a minute at most.
#[derive(Clone)]
pub struct Terraform {
    program: Arc<str>,
    /// A filesystem mirror of provider plugins, for machines that cannot download them.
    pub plugin_dir: Option<PathBuf>,
    /// Results of `terraform init`, reused by runs of an identical configuration.
    pub init_cache: InitCache,
    /// GOGC and GOMEMLIMIT for Terraform and its providers.
    pub go_runtime: [(&'static str, String); 2],
    version: Arc<Mutex<Option<CachedVersion>>>,
}

/// Where runs get their working directories.
pub fn runs_dir() -> PathBuf {
    std::env::temp_dir().join("strata-runs")
}

/// When the version was asked, and the answer.
type CachedVersion = (Instant, Result<String, String>);

#[derive(Deserialize)]
struct VersionOutput {
    terraform_version: String,
}

impl Terraform {
    pub fn new(program: &str) -> Self {
        Self {
            program: program.into(),
            plugin_dir: None,
            init_cache: InitCache::new(runs_dir().join("init-cache")),
            go_runtime: [("GOGC", "100".into()), ("GOMEMLIMIT", "off".into())],
            version: Arc::default(),
        }
    }

    pub fn with_plugin_dir(mut self, plugin_dir: Option<PathBuf>) -> Self {
        self.plugin_dir = plugin_dir;
        self
    }

    pub fn with_go_runtime(mut self, gogc: u32, memory_limit: &str) -> Self {
        self.go_runtime = [
            ("GOGC", gogc.to_string()),
            ("GOMEMLIMIT", memory_limit.to_string()),
        ];
        self
    }

    pub fn with_init_cache(mut self, dir: PathBuf) -> Self {
        self.init_cache = InitCache::new(dir);
        self
    }

    pub fn program(&self) -> &str {
        &self.program
    }

    /// The version `terraform version -json` reports, or why it could not be run.
    pub async fn version(&self) -> Result<String, String> {
        let mut cached = self.version.lock().await;
        if let Some((at, version)) = cached.as_ref()
            && at.elapsed() < Duration::from_secs(60)
        {
            return version.clone();
        }
        let version = self.check().await;
        *cached = Some((Instant::now(), version.clone()));
        version
    }

    /// Runs `terraform version` now, bypassing the cache.
    pub async fn check(&self) -> Result<String, String> {
        let output = tokio::time::timeout(
            Duration::from_secs(10),
            tokio::process::Command::new(&*self.program)
                .args(["version", "-json"])
                .env("CHECKPOINT_DISABLE", "1")
                .kill_on_drop(true)
                .output(),
        )
        .await
        .map_err(|_| format!("`{} version` timed out", self.program))?
        .map_err(|err| format!("cannot run `{}`: {err}", self.program))?;
        if !output.status.success() {
            return Err(format!(
                "`{} version` failed: {}",
                self.program,
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        serde_json::from_slice::<VersionOutput>(&output.stdout)
            .map(|v| v.terraform_version)
            .map_err(|err| format!("unexpected `terraform version -json` output: {err}"))
    }
}
