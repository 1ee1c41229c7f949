//! Terraform configuration from templates. Templates (tera) decide structure only: which blocks
//! exist. Every value a user gave reaches Terraform through `terraform.tfvars.json`, so a name
//! like `x"} resource "evil" {` stays a string.

use std::path::Path;
use std::sync::OnceLock;

use anyhow::Context;
use serde_json::Value;

macro_rules! templates {
    ($($name:literal),+ $(,)?) => {
        &[$(($name, include_str!(concat!("../../terraform/", $name)))),+]
    };
}

/// Every template, compiled into the binary.
const TEMPLATES: &[(&str, &str)] = templates![
    "_variables.tf.tera",
    "aws/_provider.tf.tera",
    "aws/vm.tf.tera",
    "aws/storage.tf.tera",
    "aws/network.tf.tera",
    "azure/_provider.tf.tera",
    "azure/vm.tf.tera",
    "azure/storage.tf.tera",
    "azure/network.tf.tera",
    "gcp/_provider.tf.tera",
    "gcp/vm.tf.tera",
    "gcp/storage.tf.tera",
    "gcp/network.tf.tera",
    "oci/vm.tf.tera",
    "proxmox/vm.tf.tera",
    "sandbox/_common.tf.tera",
    "sandbox/vm.tf.tera",
    "sandbox/storage.tf.tera",
    "sandbox/network.tf.tera",
    "sandbox/cluster.tf.tera",
];

fn tera() -> &'static tera::Tera {
    static TERA: OnceLock<tera::Tera> = OnceLock::new();
    TERA.get_or_init(|| {
        let mut tera = tera::Tera::default();
        // HCL is not HTML.
        tera.autoescape_on(vec![]);
        tera.add_raw_templates(TEMPLATES.iter().copied())
            .expect("the built-in templates parse");
        tera
    })
}

/// Whether a template exists for this provider and kind.
pub fn supports(provider: &str, kind: &str) -> bool {
    tera()
        .get_template_names()
        .any(|name| name == format!("{provider}/{kind}.tf.tera"))
}

/// The configuration for `provider`/`kind`. `structure` holds only booleans and numbers derived
/// from a validated spec (never a user's string).
pub fn render(
    provider: &str,
    kind: &str,
    structure: &serde_json::Map<String, Value>,
) -> anyhow::Result<String> {
    debug_assert!(
        structure.values().all(|v| !v.is_string()),
        "strings go to terraform.tfvars.json, not into templates"
    );
    let context = tera::Context::from_serialize(structure)?;
    tera()
        .render(&format!("{provider}/{kind}.tf.tera"), &context)
        .with_context(|| format!("cannot render the {provider} {kind} template"))
}

const BACKEND_TF: &str = "terraform {\n  backend \"pg\" {}\n}\n";

/// Writes a run's working directory: the configuration, the pg backend, the variables, and a
/// CLI configuration (offline provider installs use `plugin_dir` as a filesystem mirror).
pub fn write_workdir(
    dir: &Path,
    main_tf: &str,
    variables: &Value,
    plugin_dir: Option<&Path>,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join(MAIN_FILE), main_tf)?;
    std::fs::write(dir.join(BACKEND_FILE), BACKEND_TF)?;
    std::fs::write(
        dir.join("terraform.tfvars.json"),
        serde_json::to_vec_pretty(variables)?,
    )?;
    let cli_config = match plugin_dir {
        Some(path) => format!(
            "provider_installation {{\n  filesystem_mirror {{\n    path = {}\n  }}\n}}\n",
            serde_json::to_string(&path.display().to_string())?
        ),
        None => String::new(),
    };
    std::fs::write(dir.join(CLI_CONFIG), cli_config)?;
    write_observed(dir, &serde_json::Map::new())?;
    Ok(())
}

/// The sandbox cloud's report of a resource (see `terraform/sandbox/_common.tf.tera`): a state
/// file whose outputs are the values that differ from what was applied; empty when none do.
pub const OBSERVED_FILE: &str = "observed.tfstate";

pub fn write_observed(dir: &Path, outputs: &serde_json::Map<String, Value>) -> std::io::Result<()> {
    // Terraform wants each output's type; the sandbox reports only strings, numbers and bools.
    let outputs: serde_json::Map<String, Value> = outputs
        .iter()
        .filter_map(|(name, value)| {
            let type_ = match value {
                Value::String(_) => "string",
                Value::Number(_) => "number",
                Value::Bool(_) => "bool",
                _ => return None,
            };
            Some((
                name.clone(),
                serde_json::json!({ "value": value, "type": type_ }),
            ))
        })
        .collect();
    let state = serde_json::json!({
        "version": 4,
        "terraform_version": "1.0.0",
        "serial": 1,
        "lineage": "strata-sandbox-observed",
        "outputs": outputs,
        "resources": [],
    });
    std::fs::write(dir.join(OBSERVED_FILE), state.to_string())
}

/// The rendered configuration in each working directory.
pub const MAIN_FILE: &str = "main.tf";

/// The backend block in each working directory.
pub const BACKEND_FILE: &str = "backend.tf";

/// The CLI configuration file in each working directory (`TF_CLI_CONFIG_FILE`).
pub const CLI_CONFIG: &str = "terraformrc";
