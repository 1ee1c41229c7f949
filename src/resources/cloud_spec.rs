//! Specs of the real clouds' templates (`terraform/<provider>/<kind>.tf.tera`).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::spec::{
    Kind, RecordType, Validated, check, check_record_value, decode, finish, to_value,
};
use crate::error::{AppError, FieldError};

fn text(errors: &mut Vec<FieldError>, field: &str, value: &str, max: usize) {
    check(
        errors,
        !value.trim().is_empty() && value.len() <= max,
        field,
        &format!("must be 1 to {max} characters"),
    );
}

fn optional_text(errors: &mut Vec<FieldError>, field: &str, value: Option<&str>, max: usize) {
    if let Some(value) = value {
        text(errors, field, value, max);
    }
}

fn range(errors: &mut Vec<FieldError>, field: &str, value: u32, min: u32, max: u32) {
    check(
        errors,
        (min..=max).contains(&value),
        field,
        &format!("must be {min} to {max}"),
    );
}

fn yes() -> bool {
    true
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AwsVm {
    #[serde(default = "AwsVm::default_type")]
    instance_type: String,
    ami: String,
    subnet_id: Option<String>,
    key_name: Option<String>,
    #[serde(default)]
    security_group_ids: Vec<String>,
    #[serde(default = "yes")]
    associate_public_ip: bool,
    #[serde(default = "AwsVm::default_volume")]
    root_volume_gb: u32,
}

impl AwsVm {
    fn default_type() -> String {
        "t3.micro".into()
    }
    fn default_volume() -> u32 {
        20
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BucketOptions {
    #[serde(default)]
    versioning: bool,
    #[serde(default)]
    force_destroy: bool,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AzureImage {
    publisher: String,
    offer: String,
    sku: String,
    version: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AzureVm {
    #[serde(default = "AzureVm::default_size")]
    vm_size: String,
    #[serde(default = "AzureVm::default_user")]
    admin_username: String,
    ssh_public_key: String,
    #[serde(default = "AzureVm::default_image")]
    image: AzureImage,
    #[serde(default = "AzureVm::default_disk")]
    disk_gb: u32,
    #[serde(default = "yes")]
    public_ip: bool,
}

impl AzureVm {
    fn default_size() -> String {
        "Standard_B1s".into()
    }
    fn default_user() -> String {
        "azureuser".into()
    }
    fn default_image() -> AzureImage {
        AzureImage {
            publisher: "Canonical".into(),
            offer: "ubuntu-24_04-lts".into(),
            sku: "server".into(),
            version: "latest".into(),
        }
    }
    fn default_disk() -> u32 {
        30
    }
}

#[derive(Debug, Serialize, Deserialize)]
enum AzureTier {
    Standard,
    Premium,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
enum AzureReplication {
    Lrs,
    Zrs,
    Grs,
    Ragrs,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AzureStorage {
    /// 3 to 24 lowercase letters and digits, unique in Azure.
    account_name: String,
    #[serde(default = "AzureStorage::default_tier")]
    account_tier: AzureTier,
    #[serde(default = "AzureStorage::default_replication")]
    replication: AzureReplication,
}

impl AzureStorage {
    fn default_tier() -> AzureTier {
        AzureTier::Standard
    }
    fn default_replication() -> AzureReplication {
        AzureReplication::Lrs
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct GcpVm {
    #[serde(default = "GcpVm::default_type")]
    machine_type: String,
    /// Defaults to the region's zone `a`.
    zone: Option<String>,
    #[serde(default = "GcpVm::default_image")]
    image: String,
    #[serde(default = "GcpVm::default_disk")]
    disk_gb: u32,
    #[serde(default = "GcpVm::default_network")]
    network: String,
    #[serde(default = "yes")]
    public_ip: bool,
}

impl GcpVm {
    fn default_type() -> String {
        "e2-small".into()
    }
    fn default_image() -> String {
        "debian-cloud/debian-12".into()
    }
    fn default_disk() -> u32 {
        20
    }
    fn default_network() -> String {
        "default".into()
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
enum GcsClass {
    Standard,
    Nearline,
    Coldline,
    Archive,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct GcpStorage {
    #[serde(default = "GcpStorage::default_class")]
    storage_class: GcsClass,
    #[serde(default)]
    versioning: bool,
    #[serde(default)]
    force_destroy: bool,
}

impl GcpStorage {
    fn default_class() -> GcsClass {
        GcsClass::Standard
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OciVm {
    compartment_id: String,
    availability_domain: String,
    subnet_id: String,
    image_id: String,
    #[serde(default = "OciVm::default_shape")]
    shape: String,
    #[serde(default = "OciVm::default_ocpus")]
    ocpus: u32,
    #[serde(default = "OciVm::default_memory")]
    memory_gb: u32,
}

impl OciVm {
    fn default_shape() -> String {
        "VM.Standard.E4.Flex".into()
    }
    fn default_ocpus() -> u32 {
        1
    }
    fn default_memory() -> u32 {
        8
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProxmoxVm {
    node_name: String,
    /// The template VM cloned for the new one.
    template_vm_id: u32,
    #[serde(default = "ProxmoxVm::default_cores")]
    cores: u32,
    #[serde(default = "ProxmoxVm::default_memory")]
    memory_mb: u32,
    #[serde(default = "ProxmoxVm::default_disk")]
    disk_gb: u32,
}

impl ProxmoxVm {
    fn default_cores() -> u32 {
        2
    }
    fn default_memory() -> u32 {
        2048
    }
    fn default_disk() -> u32 {
        20
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CloudflareRecord {
    /// The zone's name.
    zone: String,
    /// The zone's id, when known (saves looking it up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    zone_id: Option<String>,
    #[serde(default = "CloudflareRecord::default_type")]
    record_type: RecordType,
    value: String,
    #[serde(default = "CloudflareRecord::default_ttl")]
    ttl: u32,
    #[serde(default)]
    proxied: bool,
}

impl CloudflareRecord {
    fn default_type() -> RecordType {
        RecordType::A
    }
    fn default_ttl() -> u32 {
        300
    }
}

fn plain(spec: &impl Serialize) -> Validated {
    Validated {
        spec: to_value(spec),
        structure: Map::new(),
        priced_as: None,
        derived: Map::new(),
    }
}

fn flags(value: Value) -> Map<String, Value> {
    value.as_object().cloned().unwrap_or_default()
}

/// Validates a real cloud's spec. `region` is the resource's region (required by the clouds
/// whose APIs are regional).
pub(super) fn validate(
    provider: &str,
    kind: Kind,
    spec: &Value,
    region: Option<&str>,
) -> Result<Validated, AppError> {
    let mut errors = Vec::new();
    if matches!(provider, "aws" | "azure" | "gcp" | "oci") && region.is_none_or(str::is_empty) {
        errors.push(FieldError::new(
            "region",
            format!("a {provider} resource needs a region (on the resource or its provider)"),
        ));
    }
    let validated = match (provider, kind) {
        ("aws", Kind::Vm) => {
            let vm: AwsVm = decode(spec)?;
            check(
                &mut errors,
                vm.ami.starts_with("ami-"),
                "spec.ami",
                "must be an AMI id (ami-...)",
            );
            check(
                &mut errors,
                vm.instance_type.contains('.') && vm.instance_type.len() <= 32,
                "spec.instance_type",
                "must be an EC2 instance type such as t3.micro",
            );
            optional_text(&mut errors, "spec.subnet_id", vm.subnet_id.as_deref(), 64);
            optional_text(&mut errors, "spec.key_name", vm.key_name.as_deref(), 255);
            range(
                &mut errors,
                "spec.root_volume_gb",
                vm.root_volume_gb,
                8,
                16_384,
            );
            plain(&vm)
        }
        ("aws", Kind::Storage) => {
            let bucket: BucketOptions = decode(spec)?;
            plain(&bucket)
        }
        ("azure", Kind::Vm) => {
            let vm: AzureVm = decode(spec)?;
            check(
                &mut errors,
                vm.ssh_public_key.starts_with("ssh-"),
                "spec.ssh_public_key",
                "must be an OpenSSH public key",
            );
            text(&mut errors, "spec.vm_size", &vm.vm_size, 64);
            text(&mut errors, "spec.admin_username", &vm.admin_username, 64);
            range(&mut errors, "spec.disk_gb", vm.disk_gb, 30, 4_095);
            Validated {
                structure: flags(json!({ "public_ip": vm.public_ip })),
                ..plain(&vm)
            }
        }
        ("azure", Kind::Storage) => {
            let storage: AzureStorage = decode(spec)?;
            check(
                &mut errors,
                (3..=24).contains(&storage.account_name.len())
                    && storage
                        .account_name
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()),
                "spec.account_name",
                "must be 3 to 24 lowercase letters and digits",
            );
            plain(&storage)
        }
        ("gcp", Kind::Vm) => {
            let mut vm: GcpVm = decode(spec)?;
            if vm.zone.is_none() {
                vm.zone = region.map(|r| format!("{r}-a"));
            }
            text(&mut errors, "spec.machine_type", &vm.machine_type, 64);
            text(&mut errors, "spec.image", &vm.image, 255);
            range(&mut errors, "spec.disk_gb", vm.disk_gb, 10, 65_536);
            Validated {
                structure: flags(json!({ "public_ip": vm.public_ip })),
                priced_as: Some((vm.machine_type.clone(), 1)),
                derived: Map::new(),
                spec: to_value(&vm),
            }
        }
        ("gcp", Kind::Storage) => {
            let storage: GcpStorage = decode(spec)?;
            plain(&storage)
        }
        ("oci", Kind::Vm) => {
            let vm: OciVm = decode(spec)?;
            for (field, value) in [
                ("spec.compartment_id", &vm.compartment_id),
                ("spec.subnet_id", &vm.subnet_id),
                ("spec.image_id", &vm.image_id),
            ] {
                check(
                    &mut errors,
                    value.starts_with("ocid1."),
                    field,
                    "must be an OCID (ocid1....)",
                );
            }
            text(
                &mut errors,
                "spec.availability_domain",
                &vm.availability_domain,
                255,
            );
            range(&mut errors, "spec.ocpus", vm.ocpus, 1, 128);
            range(&mut errors, "spec.memory_gb", vm.memory_gb, 1, 2048);
            plain(&vm)
        }
        ("proxmox", Kind::Vm) => {
            let vm: ProxmoxVm = decode(spec)?;
            text(&mut errors, "spec.node_name", &vm.node_name, 64);
            range(
                &mut errors,
                "spec.template_vm_id",
                vm.template_vm_id,
                100,
                999_999_999,
            );
            range(&mut errors, "spec.cores", vm.cores, 1, 512);
            range(&mut errors, "spec.memory_mb", vm.memory_mb, 128, 4_194_304);
            range(&mut errors, "spec.disk_gb", vm.disk_gb, 1, 65_536);
            plain(&vm)
        }
        ("cloudflare", Kind::DnsRecord) => {
            let record: CloudflareRecord = decode(spec)?;
            check(
                &mut errors,
                record
                    .zone_id
                    .as_deref()
                    .is_none_or(|id| id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit())),
                "spec.zone_id",
                "must be a Cloudflare zone id (32 hex digits)",
            );
            check(
                &mut errors,
                record.zone != "@" && crate::dns::valid_record_name(&record.zone),
                "spec.zone",
                "must be a domain name",
            );
            check_record_value(&mut errors, record.record_type, &record.value);
            check(
                &mut errors,
                record.ttl == 1 || (60..=86_400).contains(&record.ttl),
                "spec.ttl",
                "must be 1 (automatic) or 60 to 86400",
            );
            plain(&record)
        }
        _ => {
            return Err(AppError::invalid(
                "kind",
                format!("the {provider} provider cannot create a {}", kind.as_str()),
            ));
        }
    };
    finish(errors, validated)
}
