//! What each provider and kind accepts in `spec`: typed, with defaults, unknown fields refused.
//! A validated spec yields the Terraform variables, the template's structure flags, and the
//! instance type the price comes from.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::error::{AppError, FieldError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Vm,
    Storage,
    Network,
    DnsRecord,
    Cluster,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Vm => "vm",
            Kind::Storage => "storage",
            Kind::Network => "network",
            Kind::DnsRecord => "dns_record",
            Kind::Cluster => "cluster",
        }
    }
}

crate::db::text_enum!(Kind);

/// A spec that fits its provider and kind.
#[derive(Debug, Clone)]
pub struct Validated {
    /// The spec with every default filled in (stored on the resource).
    pub spec: Value,
    /// Booleans and numbers that shape the template.
    pub structure: Map<String, Value>,
    /// The priced machine type, where the kind has one, and how many of it.
    pub priced_as: Option<(String, u32)>,
    /// Variables derived from the spec, not given by the user (a sandbox size's real machine
    /// type, for prices and the inventory).
    pub derived: Map<String, Value>,
}

impl Validated {
    /// What a deployment applies: this spec with these tags and power state, and the
    /// template structure and derived variables that go with it.
    pub fn desired(&self, tags: &Value, power_state: &str) -> Value {
        json!({
            "spec": self.spec,
            "tags": tags,
            "power_state": power_state,
            "structure": self.structure,
            "derived": self.derived,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SandboxSize {
    Small,
    Medium,
    Large,
    Xlarge,
}

impl SandboxSize {
    /// The real machine type a sandbox size stands for, for pricing.
    fn machine_type(self) -> &'static str {
        match self {
            SandboxSize::Small => "e2-small",
            SandboxSize::Medium => "e2-medium",
            SandboxSize::Large => "e2-standard-4",
            SandboxSize::Xlarge => "e2-standard-8",
        }
    }
}

fn default_image() -> String {
    "ubuntu-24.04".into()
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SandboxVm {
    #[serde(default = "SandboxVm::default_size")]
    size: SandboxSize,
    #[serde(default = "default_image")]
    image: String,
    #[serde(default = "SandboxVm::default_disk")]
    disk_gb: u32,
    /// How long the simulated boot takes; its progress is printed over that time.
    #[serde(default = "SandboxVm::default_boot")]
    boot_seconds: f64,
    /// Makes the boot fail (a provisioner exits non-zero), to see how failures look.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    fail_boot: bool,
}

impl SandboxVm {
    fn default_size() -> SandboxSize {
        SandboxSize::Small
    }
    fn default_disk() -> u32 {
        20
    }
    fn default_boot() -> f64 {
        3.0
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum StorageClass {
    Standard,
    Infrequent,
    Archive,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SandboxStorage {
    #[serde(default = "SandboxStorage::default_size")]
    size_gb: u32,
    #[serde(default = "SandboxStorage::default_class")]
    storage_class: StorageClass,
    #[serde(default)]
    versioning: bool,
}

impl SandboxStorage {
    fn default_size() -> u32 {
        100
    }
    fn default_class() -> StorageClass {
        StorageClass::Standard
    }
}

/// A network: the same shape on every provider.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NetworkSpec {
    #[serde(default = "NetworkSpec::default_cidr")]
    pub(super) cidr_block: String,
    #[serde(default = "NetworkSpec::default_subnets")]
    pub(super) subnet_count: u32,
}

impl NetworkSpec {
    fn default_cidr() -> String {
        "10.0.0.0/16".into()
    }
    fn default_subnets() -> u32 {
        2
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub(super) enum RecordType {
    A,
    Aaaa,
    Cname,
    Txt,
    Mx,
}

/// A record's value must fit its type: an address for A and AAAA, a host name for CNAME and MX.
pub(super) fn check_record_value(
    errors: &mut Vec<FieldError>,
    record_type: RecordType,
    value: &str,
) {
    let (ok, message) = match record_type {
        RecordType::A => (
            value.parse::<std::net::Ipv4Addr>().is_ok(),
            "must be an IPv4 address for an A record",
        ),
        RecordType::Aaaa => (
            value.parse::<std::net::Ipv6Addr>().is_ok(),
            "must be an IPv6 address for an AAAA record",
        ),
        RecordType::Cname | RecordType::Mx => (
            crate::dns::valid_record_name(value) && value != "@",
            "must be a host name",
        ),
        RecordType::Txt => (
            !value.is_empty() && value.len() <= 2048,
            "must be 1 to 2048 characters",
        ),
    };
    check(errors, ok, "spec.value", message);
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SandboxDnsRecord {
    zone: String,
    #[serde(default = "SandboxDnsRecord::default_type")]
    record_type: RecordType,
    value: String,
    #[serde(default = "SandboxDnsRecord::default_ttl")]
    ttl: u32,
    /// Kept as Cloudflare keeps it; the sandbox proxies nothing.
    #[serde(default)]
    proxied: bool,
}

impl SandboxDnsRecord {
    fn default_type() -> RecordType {
        RecordType::A
    }
    fn default_ttl() -> u32 {
        300
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SandboxCluster {
    #[serde(default = "SandboxCluster::default_nodes")]
    node_count: u32,
    #[serde(default = "SandboxCluster::default_size")]
    node_size: SandboxSize,
    #[serde(default = "SandboxCluster::default_version")]
    kubernetes_version: String,
}

impl SandboxCluster {
    fn default_nodes() -> u32 {
        3
    }
    fn default_size() -> SandboxSize {
        SandboxSize::Medium
    }
    fn default_version() -> String {
        "1.31".into()
    }
}

fn machine_type_variable(size: SandboxSize) -> Map<String, Value> {
    let mut variables = Map::new();
    variables.insert("instance_type".into(), json!(size.machine_type()));
    variables
}

/// Decodes `spec` as `T`; a mismatch names the field (`spec.size`).
pub(super) fn decode<T: DeserializeOwned>(spec: &Value) -> Result<T, AppError> {
    serde_path_to_error::deserialize(spec.clone()).map_err(|err| {
        let path = err.path().to_string();
        let field = if path == "." {
            "spec".to_string()
        } else {
            format!("spec.{path}")
        };
        AppError::invalid(&field, err.into_inner().to_string())
    })
}

pub(super) fn check(errors: &mut Vec<FieldError>, ok: bool, field: &str, message: &str) {
    if !ok {
        errors.push(FieldError::new(field, message));
    }
}

pub(super) fn finish(errors: Vec<FieldError>, validated: Validated) -> Result<Validated, AppError> {
    if errors.is_empty() {
        Ok(validated)
    } else {
        Err(AppError::Validation(errors))
    }
}

pub(super) fn to_value(value: &impl Serialize) -> Value {
    serde_json::to_value(value).expect("specs serialise")
}

pub(super) fn is_ipv4_cidr(text: &str) -> bool {
    let Some((address, prefix)) = text.split_once('/') else {
        return false;
    };
    address.parse::<std::net::Ipv4Addr>().is_ok()
        && prefix.parse::<u8>().is_ok_and(|p| (8..=28).contains(&p))
}

/// Validates `spec` for `provider`/`kind` in `region`. An unsupported combination answers 422
/// on `kind`.
pub fn validate(
    provider: &str,
    kind: Kind,
    spec: &Value,
    region: Option<&str>,
) -> Result<Validated, AppError> {
    if !spec.is_object() {
        return Err(AppError::invalid("spec", "must be a JSON object"));
    }
    let supported = match kind {
        Kind::DnsRecord => crate::dns::HOSTS.contains(&provider),
        _ => crate::terraform::render::supports(provider, kind.as_str()),
    };
    if !supported {
        return Err(AppError::invalid(
            "kind",
            format!("the {provider} provider cannot create a {}", kind.as_str()),
        ));
    }
    let mut errors = Vec::new();
    match (provider, kind) {
        ("sandbox", Kind::Vm) => {
            let vm: SandboxVm = decode(spec)?;
            check(
                &mut errors,
                (0.0..=600.0).contains(&vm.boot_seconds),
                "spec.boot_seconds",
                "must be 0 to 600",
            );
            check(
                &mut errors,
                (1..=16_384).contains(&vm.disk_gb),
                "spec.disk_gb",
                "must be 1 to 16384",
            );
            check(
                &mut errors,
                !vm.image.is_empty() && vm.image.len() <= 128,
                "spec.image",
                "must be 1 to 128 characters",
            );
            finish(
                errors,
                Validated {
                    spec: to_value(&vm),
                    structure: json!({ "boots": vm.boot_seconds > 0.0, "fails": vm.fail_boot })
                        .as_object()
                        .cloned()
                        .unwrap_or_default(),
                    priced_as: Some((vm.size.machine_type().into(), 1)),
                    derived: machine_type_variable(vm.size),
                },
            )
        }
        ("sandbox", Kind::Storage) => {
            let storage: SandboxStorage = decode(spec)?;
            check(
                &mut errors,
                (1..=1_000_000).contains(&storage.size_gb),
                "spec.size_gb",
                "must be 1 to 1000000",
            );
            finish(
                errors,
                Validated {
                    spec: to_value(&storage),
                    structure: Map::new(),
                    priced_as: None,
                    derived: Map::new(),
                },
            )
        }
        (_, Kind::Network) => {
            let network: NetworkSpec = decode(spec)?;
            check(
                &mut errors,
                is_ipv4_cidr(&network.cidr_block),
                "spec.cidr_block",
                "must be an IPv4 CIDR block from /8 to /28",
            );
            check(
                &mut errors,
                network.subnet_count <= 16,
                "spec.subnet_count",
                "must be 0 to 16",
            );
            finish(
                errors,
                Validated {
                    spec: to_value(&network),
                    structure: Map::new(),
                    priced_as: None,
                    derived: Map::new(),
                },
            )
        }
        ("sandbox", Kind::DnsRecord) => {
            let record: SandboxDnsRecord = decode(spec)?;
            check(
                &mut errors,
                !record.zone.is_empty() && record.zone.len() <= 253,
                "spec.zone",
                "must be 1 to 253 characters",
            );
            check_record_value(&mut errors, record.record_type, &record.value);
            check(
                &mut errors,
                (60..=86_400).contains(&record.ttl),
                "spec.ttl",
                "must be 60 to 86400",
            );
            finish(
                errors,
                Validated {
                    spec: to_value(&record),
                    structure: Map::new(),
                    priced_as: None,
                    derived: Map::new(),
                },
            )
        }
        ("sandbox", Kind::Cluster) => {
            let cluster: SandboxCluster = decode(spec)?;
            check(
                &mut errors,
                (1..=100).contains(&cluster.node_count),
                "spec.node_count",
                "must be 1 to 100",
            );
            check(
                &mut errors,
                !cluster.kubernetes_version.is_empty() && cluster.kubernetes_version.len() <= 32,
                "spec.kubernetes_version",
                "must be 1 to 32 characters",
            );
            finish(
                errors,
                Validated {
                    spec: to_value(&cluster),
                    structure: Map::new(),
                    priced_as: Some((cluster.node_size.machine_type().into(), cluster.node_count)),
                    derived: machine_type_variable(cluster.node_size),
                },
            )
        }
        _ => super::cloud_spec::validate(provider, kind, spec, region),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_filled_and_unknown_or_mistyped_fields_are_named() {
        let vm = validate("sandbox", Kind::Vm, &json!({}), None).unwrap();
        assert_eq!(
            vm.spec,
            json!({"size": "small", "image": "ubuntu-24.04", "disk_gb": 20, "boot_seconds": 3.0})
        );
        assert_eq!(vm.priced_as, Some(("e2-small".into(), 1)));

        let field = |result: Result<Validated, AppError>| match result {
            Err(AppError::Validation(errors)) => errors[0].field.clone(),
            other => panic!("expected a validation error, got {other:?}"),
        };
        assert_eq!(
            field(validate(
                "sandbox",
                Kind::Vm,
                &json!({"size": "huge"}),
                None
            )),
            "spec.size"
        );
        assert_eq!(
            field(validate(
                "sandbox",
                Kind::Vm,
                &json!({"disk_gb": "20"}),
                None
            )),
            "spec.disk_gb"
        );
        assert_eq!(
            field(validate(
                "sandbox",
                Kind::Vm,
                &json!({"colour": "red"}),
                None
            )),
            "spec.colour"
        );
        assert_eq!(
            field(validate(
                "sandbox",
                Kind::Vm,
                &json!({"boot_seconds": 9999}),
                None
            )),
            "spec.boot_seconds"
        );
        assert_eq!(
            field(validate(
                "sandbox",
                Kind::DnsRecord,
                &json!({"zone": "example.com"}),
                None
            )),
            "spec"
        );
        assert_eq!(
            field(validate(
                "sandbox",
                Kind::Network,
                &json!({"cidr_block": "10.0.0.0"}),
                None
            )),
            "spec.cidr_block"
        );
        assert_eq!(
            field(validate("sandbox", Kind::Vm, &json!([1]), None)),
            "spec"
        );
        assert_eq!(
            field(validate("cloudflare", Kind::Vm, &json!({}), None)),
            "kind"
        );
    }
}
