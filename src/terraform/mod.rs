//! The `terraform` executable: discovery, version, configuration rendering and runs.

pub mod render;
pub mod run;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::Mutex;

/// The `terraform` executable. Its version is asked once a minute at most.
#[derive(Clone)]
pub struct Terraform {
    program: Arc<str>,
    /// A filesystem mirror of provider plugins, for machines that cannot download them.
    pub plugin_dir: Option<PathBuf>,
    version: Arc<Mutex<Option<CachedVersion>>>,
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
            version: Arc::default(),
        }
    }

    pub fn with_plugin_dir(mut self, plugin_dir: Option<PathBuf>) -> Self {
        self.plugin_dir = plugin_dir;
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
