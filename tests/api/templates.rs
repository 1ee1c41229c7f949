//! Every template renders, for every shape of its structure, to HCL that `terraform fmt`
//! accepts, declares every variable it is given, and reports the outputs the inventory reads.

use serde_json::{Value, json};
use strata::resources::spec::{Kind, validate};
use strata::terraform::render;

fn cases() -> Vec<(&'static str, Kind, Option<&'static str>, Value)> {
    vec![
        ("sandbox", Kind::Vm, None, json!({})),
        (
            "sandbox",
            Kind::Vm,
            None,
            json!({"boot_seconds": 0, "fail_boot": true}),
        ),
        ("sandbox", Kind::Storage, None, json!({})),
        ("sandbox", Kind::Network, None, json!({})),
        ("sandbox", Kind::Cluster, None, json!({})),
        (
            "aws",
            Kind::Vm,
            Some("us-east-1"),
            json!({"ami": "ami-0123456789abcdef0", "key_name": "ops"}),
        ),
        (
            "aws",
            Kind::Storage,
            Some("us-east-1"),
            json!({"versioning": true}),
        ),
        (
            "aws",
            Kind::Network,
            Some("us-east-1"),
            json!({"cidr_block": "10.1.0.0/16"}),
        ),
        (
            "azure",
            Kind::Vm,
            Some("westeurope"),
            json!({"ssh_public_key": "ssh-ed25519 AAAAC3Nz ops"}),
        ),
        (
            "azure",
            Kind::Vm,
            Some("westeurope"),
            json!({"ssh_public_key": "ssh-ed25519 AAAAC3Nz ops", "public_ip": false}),
        ),
        (
            "azure",
            Kind::Storage,
            Some("westeurope"),
            json!({"account_name": "stratalogs1"}),
        ),
        ("azure", Kind::Network, Some("westeurope"), json!({})),
        (
            "gcp",
            Kind::Vm,
            Some("us-central1"),
            json!({"machine_type": "e2-medium"}),
        ),
        (
            "gcp",
            Kind::Vm,
            Some("us-central1"),
            json!({"public_ip": false}),
        ),
        (
            "gcp",
            Kind::Storage,
            Some("us-central1"),
            json!({"storage_class": "NEARLINE"}),
        ),
        (
            "gcp",
            Kind::Network,
            Some("us-central1"),
            json!({"subnet_count": 1}),
        ),
        (
            "oci",
            Kind::Vm,
            Some("us-ashburn-1"),
            json!({"compartment_id": "ocid1.compartment.oc1..aaa", "availability_domain": "Uocm:US-ASHBURN-AD-1",
                   "subnet_id": "ocid1.subnet.oc1..bbb", "image_id": "ocid1.image.oc1..ccc"}),
        ),
        (
            "proxmox",
            Kind::Vm,
            None,
            json!({"node_name": "pve1", "template_vm_id": 9000}),
        ),
    ]
}

fn declared(hcl: &str, block: &str) -> Vec<String> {
    hcl.lines()
        .filter_map(|line| line.strip_prefix(&format!("{block} \"")))
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn every_template_renders_formatted_hcl_that_declares_its_variables_and_outputs() {
    let dir = tempfile_dir();
    for (provider, kind, region, spec) in cases() {
        let what = format!("{provider}/{} {spec}", kind.as_str());
        let validated =
            validate(provider, kind, &spec, region).unwrap_or_else(|e| panic!("{what}: {e:?}"));
        let hcl = render::render(provider, kind.as_str(), &validated.structure).unwrap();
        let desired = validated.desired(&json!({"team": "platform"}), "running");
        let variables =
            strata::deployments::job::variables(uuid::Uuid::new_v4(), "web-1", region, &desired);

        let declared_variables = declared(&hcl, "variable");
        for name in variables.as_object().unwrap().keys() {
            assert!(
                declared_variables.contains(name),
                "{what}: {name} is given but not declared"
            );
        }
        let outputs = declared(&hcl, "output");
        let expected: &[&str] = match kind {
            Kind::Vm => &["instance_id", "private_ip", "instance_type"],
            Kind::Storage => &["bucket_id"],
            Kind::Network => &["network_id", "cidr_block"],
            Kind::DnsRecord => unreachable!("DNS records are written through their host's API"),
            Kind::Cluster => &["cluster_id", "instance_type"],
        };
        for output in expected {
            assert!(
                outputs.iter().any(|o| o == output),
                "{what}: no output {output}"
            );
        }

        let path = dir.join("main.tf");
        std::fs::write(&path, &hcl).unwrap();
        let fmt = std::process::Command::new("terraform")
            .args(["fmt", "-check", "-diff", "-no-color"])
            .arg(&path)
            .env("CHECKPOINT_DISABLE", "1")
            .output()
            .unwrap();
        assert!(
            fmt.status.success(),
            "{what} is not formatted:\n{}",
            String::from_utf8_lossy(&fmt.stdout)
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn real_clouds_need_a_region_and_their_own_fields() {
    let field = |result: Result<strata::resources::spec::Validated, strata::error::AppError>| {
        match result {
            Err(strata::error::AppError::Validation(errors)) => {
                errors.iter().map(|e| e.field.clone()).collect::<Vec<_>>()
            }
            other => panic!("expected a validation error, got {other:?}"),
        }
    };
    assert_eq!(
        field(validate("aws", Kind::Vm, &json!({"ami": "ami-1"}), None)),
        ["region"]
    );
    assert_eq!(
        field(validate(
            "aws",
            Kind::Vm,
            &json!({"ami": "img-1"}),
            Some("us-east-1")
        )),
        ["spec.ami"]
    );
    assert_eq!(
        field(validate(
            "azure",
            Kind::Storage,
            &json!({"account_name": "Bad_Name"}),
            Some("westeurope")
        )),
        ["spec.account_name"]
    );
    assert_eq!(
        field(validate(
            "cloudflare",
            Kind::DnsRecord,
            &json!({"zone": "example.org", "zone_id": "z", "value": "192.0.2.1"}),
            None
        )),
        ["spec.zone_id"]
    );
    assert_eq!(
        field(validate(
            "cloudflare",
            Kind::DnsRecord,
            &json!({"value": "192.0.2.1"}),
            None
        )),
        ["spec"],
        "a record names its zone"
    );
    assert_eq!(
        field(validate(
            "sandbox",
            Kind::DnsRecord,
            &json!({"zone": "example.com", "record_type": "AAAA", "value": "192.0.2.1"}),
            None
        )),
        ["spec.value"],
        "a value fits its record type"
    );
    assert_eq!(
        field(validate("cloudflare", Kind::Vm, &json!({}), None)),
        ["kind"]
    );
    let gcp = validate("gcp", Kind::Vm, &json!({}), Some("europe-west1")).unwrap();
    assert_eq!(gcp.spec["zone"], "europe-west1-a");
    assert_eq!(gcp.priced_as, Some(("e2-small".to_string(), 1)));
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "strata-templates-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The providers a configuration requires: (source, lowest version its constraint allows).
fn required_providers(hcl: &str) -> Vec<(String, String)> {
    let quoted = |line: &str, key: &str| {
        let rest = line
            .trim()
            .strip_prefix(key)?
            .trim_start()
            .strip_prefix('=')?;
        Some(rest.trim().trim_matches('"').to_string())
    };
    let lines: Vec<&str> = hcl.lines().collect();
    lines
        .windows(2)
        .filter_map(|pair| {
            let source = quoted(pair[0], "source")?;
            let constraint = quoted(pair[1], "version")?;
            let version = constraint.trim_start_matches("~>").trim();
            Some((source, format!("{version}.0")))
        })
        .collect()
}

/// Terraform's name for this machine's platform.
pub fn terraform_platform() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    format!("{}_{arch}", std::env::consts::OS)
}

/// Puts a stand-in provider binary (`script`) into a filesystem mirror, in the unpacked
/// layout Terraform reads.
pub fn mirror_provider(mirror: &std::path::Path, source: &str, version: &str, script: &str) {
    let name = source.rsplit('/').next().unwrap();
    let dir = mirror
        .join("registry.terraform.io")
        .join(source)
        .join(version)
        .join(terraform_platform());
    std::fs::create_dir_all(&dir).unwrap();
    let binary = dir.join(format!("terraform-provider-{name}_v{version}"));
    std::fs::write(&binary, script).unwrap();
    std::fs::set_permissions(&binary, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}

#[tokio::test]
async fn real_cloud_providers_install_offline_from_the_plugin_mirror() {
    let root = tempfile_dir();
    let mirror = root.join("mirror");
    let mut seen = std::collections::BTreeSet::new();
    for (case, (provider, kind, region, spec)) in cases().into_iter().enumerate() {
        if provider == "sandbox" {
            continue;
        }
        let validated = validate(provider, kind, &spec, region).unwrap();
        let hcl = render::render(provider, kind.as_str(), &validated.structure).unwrap();
        let required = required_providers(&hcl);
        assert_eq!(
            required.len(),
            1,
            "{provider}/{}: {required:?}",
            kind.as_str()
        );
        let (source, version) = &required[0];
        if seen.insert(source.clone()) {
            mirror_provider(&mirror, source, version, "#!/bin/sh\nexit 1\n");
        }
        let dir = root.join(format!("{case}-{provider}-{}", kind.as_str()));
        render::write_workdir(&dir, &hcl, &json!({}), Some(&mirror)).unwrap();
        // The mirror is the only installation method: nothing is downloaded.
        let init = std::process::Command::new(
            std::env::var("STRATA_TERRAFORM").unwrap_or_else(|_| "terraform".into()),
        )
        .args(["init", "-backend=false", "-input=false", "-no-color"])
        .current_dir(&dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", &dir)
        .env("CHECKPOINT_DISABLE", "1")
        .env("TF_CLI_CONFIG_FILE", dir.join(render::CLI_CONFIG))
        .output()
        .unwrap();
        let stdout = String::from_utf8_lossy(&init.stdout);
        assert!(
            init.status.success(),
            "{provider}/{}: {stdout}{}",
            kind.as_str(),
            String::from_utf8_lossy(&init.stderr)
        );
        assert!(
            stdout.contains(&format!("Installed {source} v{version}")),
            "{stdout}"
        );
        let lock = std::fs::read_to_string(dir.join(".terraform.lock.hcl")).unwrap();
        assert!(
            lock.contains(&format!("provider \"registry.terraform.io/{source}\"")),
            "{lock}"
        );
    }
    assert_eq!(
        seen.len(),
        5,
        "aws, azurerm, google, oci, proxmox: {seen:?}"
    );
    std::fs::remove_dir_all(&root).unwrap();
}
