//! The instance catalog: the machine types of AWS and Google Cloud with their vCPUs, memory and
//! on-demand prices per region, from the files shipped in `data/pricing` (see its PROVENANCE.md),
//! parsed once.
//!
//! - AWS: the `Amazon Web Services` rows of `aws-vantage/instance-types.csv`, which carry no
//!   prices, and the one instance type of `aws-vantage/ec2_single_instance.json`, priced (Linux,
//!   on demand) in 25 regions. Every other AWS type answers `prices: []`: the catalog does not
//!   know them.
//! - Google Cloud: `gcp/machinetypes.csv`, priced per region from `gcp_compute_hourly.csv`.
//!
//! The family of an AWS type is what precedes the `.` (`m5` for `m5.large`); of a Google Cloud
//! type, its machine series, what precedes the first `-` (`e2` for `e2-standard-4`).

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::TenantAuth;
use crate::error::{AppError, AppResult};
use crate::http::{Json, Page, Pagination, Path, Query, Validator};

const AWS_INSTANCE_TYPES: &str = include_str!("../../data/pricing/aws-vantage/instance-types.csv");
const AWS_PRICED_INSTANCE: &str =
    include_str!("../../data/pricing/aws-vantage/ec2_single_instance.json");
const GCP_MACHINE_TYPES: &str = include_str!("../../data/pricing/gcp/machinetypes.csv");
const GCP_COMPUTE_HOURLY: &str = include_str!("../../data/pricing/gcp_compute_hourly.csv");

/// The on-demand price of an instance type in one region.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
pub struct InstancePrice {
    pub region: String,
    pub price_per_hour: f64,
    /// Always `USD`.
    pub currency: &'static str,
}

/// A machine type of a cloud.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InstanceType {
    /// `aws` or `gcp`.
    pub provider: &'static str,
    pub instance_type: String,
    /// `m5` for `m5.large`, `e2` for `e2-standard-4`.
    pub family: String,
    pub vcpu: u32,
    pub memory_gib: f64,
    /// On-demand (Linux) prices per hour by region; empty where the catalog has none.
    pub prices: Vec<InstancePrice>,
}

struct Catalog {
    /// Sorted by provider, family, vCPUs, memory and name.
    types: Vec<InstanceType>,
    by_name: HashMap<String, usize>,
}

fn catalog() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(|| {
        let mut types = aws_types();
        types.extend(gcp_types());
        types.sort_by(|a, b| {
            (a.provider, &a.family, a.vcpu)
                .cmp(&(b.provider, &b.family, b.vcpu))
                .then(a.memory_gib.total_cmp(&b.memory_gib))
                .then_with(|| a.instance_type.cmp(&b.instance_type))
        });
        let by_name = types
            .iter()
            .enumerate()
            .map(|(i, t)| (t.instance_type.clone(), i))
            .collect();
        Catalog { types, by_name }
    })
}

fn aws_types() -> Vec<InstanceType> {
    let mut reader = csv::Reader::from_reader(AWS_INSTANCE_TYPES.as_bytes());
    let header = reader
        .headers()
        .expect("the AWS catalog has a header")
        .clone();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("the AWS catalog has no {name} column"))
    };
    let (cloud, size, cpu, memory) = (col("cloud"), col("size"), col("cpu"), col("memory"));
    let mut types: Vec<InstanceType> = reader
        .records()
        .map(|r| r.expect("the AWS catalog is valid CSV"))
        .filter(|r| &r[cloud] == "Amazon Web Services")
        .map(|r| InstanceType {
            provider: "aws",
            family: aws_family(&r[size]),
            instance_type: r[size].to_string(),
            vcpu: r[cpu].parse().expect("vCPUs are a whole number"),
            memory_gib: r[memory].parse().expect("memory is a number"),
            prices: Vec::new(),
        })
        .collect();

    #[derive(Deserialize)]
    struct Priced {
        instance_type: String,
        #[serde(rename = "vCPU")]
        vcpu: u32,
        memory: f64,
        pricing: HashMap<String, HashMap<String, serde_json::Value>>,
    }
    let priced: Priced =
        serde_json::from_str(AWS_PRICED_INSTANCE).expect("the AWS price file is valid JSON");
    let mut prices: Vec<InstancePrice> = priced
        .pricing
        .iter()
        .filter_map(|(region, systems)| {
            let hourly = systems
                .get("linux")?
                .get("ondemand")?
                .as_str()?
                .parse()
                .ok()?;
            Some(InstancePrice {
                region: region.clone(),
                price_per_hour: hourly,
                currency: "USD",
            })
        })
        .collect();
    prices.sort_by(|a, b| a.region.cmp(&b.region));
    match types
        .iter_mut()
        .find(|t| t.instance_type == priced.instance_type)
    {
        Some(known) => known.prices = prices,
        None => types.push(InstanceType {
            provider: "aws",
            family: aws_family(&priced.instance_type),
            instance_type: priced.instance_type,
            vcpu: priced.vcpu,
            memory_gib: priced.memory,
            prices,
        }),
    }
    types
}

fn aws_family(instance_type: &str) -> String {
    instance_type
        .split('.')
        .next()
        .unwrap_or(instance_type)
        .to_ascii_lowercase()
}

fn gcp_types() -> Vec<InstanceType> {
    let mut prices: HashMap<&str, Vec<InstancePrice>> = HashMap::new();
    for line in GCP_COMPUTE_HOURLY.lines().skip(1) {
        let mut fields = line.split(',');
        let (Some(machine_type), Some(region), Some(Ok(hourly))) = (
            fields.next(),
            fields.next(),
            fields.next().map(str::parse::<f64>),
        ) else {
            continue;
        };
        prices.entry(machine_type).or_default().push(InstancePrice {
            region: region.to_string(),
            price_per_hour: hourly,
            currency: "USD",
        });
    }
    // NAME;CPUS;SHARED_CPU;MEMORY_GB;DEPRECATED;ZONE
    GCP_MACHINE_TYPES
        .lines()
        .skip(1)
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split(';').collect();
            let name = fields[0];
            let mut prices = prices.remove(name).unwrap_or_default();
            prices.sort_by(|a, b| a.region.cmp(&b.region));
            InstanceType {
                provider: "gcp",
                instance_type: name.to_string(),
                family: name.split('-').next().unwrap_or(name).to_string(),
                vcpu: fields[1].parse().expect("vCPUs are a whole number"),
                memory_gib: fields[3].parse().expect("memory is a number"),
                prices,
            }
        })
        .collect()
}

/// Filters of the instance catalog.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InstanceFilter {
    /// `m5`, `e2` ... (case-insensitive).
    pub family: Option<String>,
    /// `aws` or `gcp`.
    pub provider: Option<String>,
    /// Only types priced in this region, with only this region's price.
    pub region: Option<String>,
}

/// Machine types of AWS and Google Cloud, with their prices per region.
#[utoipa::path(get, path = "/instance-catalog", tag = "catalog", params(InstanceFilter, Pagination),
    responses((status = 200, body = Page<InstanceType>), (status = 422)),
    security(("bearer" = []), ("api_key" = [])))]
pub(super) async fn list_instances(
    _auth: TenantAuth,
    Query(filter): Query<InstanceFilter>,
    Query(page): Query<Pagination>,
) -> AppResult<Page<InstanceType>> {
    let (limit, offset) = page.resolve()?;
    let mut v = Validator::new();
    if let Some(provider) = &filter.provider {
        v.check(
            matches!(provider.as_str(), "aws" | "gcp"),
            "provider",
            "must be aws or gcp",
        );
    }
    v.optional_text("family", filter.family.as_deref(), 64)
        .optional_text("region", filter.region.as_deref(), 64)
        .finish()?;
    let family = filter.family.as_deref().map(str::to_ascii_lowercase);
    let matching: Vec<InstanceType> = catalog()
        .types
        .iter()
        .filter(|t| filter.provider.as_deref().is_none_or(|p| t.provider == p))
        .filter(|t| family.as_deref().is_none_or(|f| t.family == f))
        .filter_map(|t| match filter.region.as_deref() {
            None => Some(t.clone()),
            Some(region) => {
                let price = t.prices.iter().find(|p| p.region == region)?;
                Some(InstanceType {
                    prices: vec![price.clone()],
                    ..t.clone()
                })
            }
        })
        .collect();
    let total = matching.len() as i64;
    let data = matching
        .into_iter()
        .skip(offset as usize)
        .take(limit as usize)
        .collect();
    Ok(Page::new(data, total, (limit, offset)))
}

/// One machine type, by its name (`m5.large`, `e2-standard-4`).
#[utoipa::path(get, path = "/instance-catalog/{instance_type}", tag = "catalog",
    params(("instance_type" = String, Path)),
    responses((status = 200, body = InstanceType), (status = 404)),
    security(("bearer" = []), ("api_key" = [])))]
pub(super) async fn get_instance(
    _auth: TenantAuth,
    Path(instance_type): Path<String>,
) -> AppResult<Json<InstanceType>> {
    lookup(&instance_type)
        .cloned()
        .map(Json)
        .ok_or(AppError::NotFound("instance type"))
}

/// A machine type of the catalog, by name.
pub fn lookup(instance_type: &str) -> Option<&'static InstanceType> {
    let catalog = catalog();
    catalog
        .by_name
        .get(instance_type)
        .map(|&i| &catalog.types[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalog_holds_every_type_of_the_source_files() {
        let types = &catalog().types;
        let aws = types.iter().filter(|t| t.provider == "aws").count();
        let gcp = types.iter().filter(|t| t.provider == "gcp").count();
        // 370 AWS rows in the CSV, plus the priced type of the JSON file.
        assert_eq!(aws, 371);
        assert_eq!(gcp, 568);
        assert_eq!(catalog().by_name.len(), aws + gcp, "names are unique");
    }

    #[test]
    fn types_carry_their_shape_and_prices() {
        let m5 = lookup("m5.large").unwrap();
        assert_eq!((m5.provider, m5.family.as_str()), ("aws", "m5"));
        assert_eq!((m5.vcpu, m5.memory_gib), (2, 8.0));
        assert!(m5.prices.is_empty());

        let x2 = lookup("x2iedn.32xlarge").unwrap();
        assert_eq!((x2.vcpu, x2.memory_gib), (128, 4096.0));
        assert_eq!(x2.prices.len(), 25);
        let us_east = x2.prices.iter().find(|p| p.region == "us-east-1").unwrap();
        assert_eq!(us_east.price_per_hour, 26.676);

        let e2 = lookup("e2-standard-4").unwrap();
        assert_eq!((e2.provider, e2.family.as_str()), ("gcp", "e2"));
        assert_eq!((e2.vcpu, e2.memory_gib), (4, 16.0));
        let central = e2
            .prices
            .iter()
            .find(|p| p.region == "us-central1")
            .unwrap();
        assert_eq!(
            Some(central.price_per_hour),
            crate::pricing::gcp_hourly("e2-standard-4", "us-central1")
        );
        assert!(lookup("m5.nonexistent").is_none());
    }
}
