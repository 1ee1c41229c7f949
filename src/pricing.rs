//! Instance prices from the catalog shipped in `data/pricing` (see its PROVENANCE.md).

use std::collections::HashMap;
use std::sync::OnceLock;

const GCP_COMPUTE_HOURLY: &str = include_str!("../data/pricing/gcp_compute_hourly.csv");

/// Hours in an average month (365.25 × 24 / 12), as cloud price lists count them.
pub const HOURS_PER_MONTH: f64 = 730.5;

/// The region sandbox prices are quoted in when the sandbox region is not a real one.
const DEFAULT_GCP_REGION: &str = "us-central1";

fn gcp_prices() -> &'static HashMap<(&'static str, &'static str), f64> {
    static PRICES: OnceLock<HashMap<(&'static str, &'static str), f64>> = OnceLock::new();
    PRICES.get_or_init(|| {
        GCP_COMPUTE_HOURLY
            .lines()
            .skip(1)
            .filter_map(|line| {
                let mut fields = line.split(',');
                let machine_type = fields.next()?;
                let region = fields.next()?;
                let price = fields.next()?.parse().ok()?;
                Some(((machine_type, region), price))
            })
            .collect()
    })
}

/// The on-demand price per hour of a machine type on Google Cloud, in USD.
pub fn gcp_hourly(machine_type: &str, region: &str) -> Option<f64> {
    gcp_prices().get(&(machine_type, region)).copied()
}

/// The price per hour of `instance_type` on `provider` in `region`, where the catalog knows it.
/// Sandbox sizes are priced as the real machine types they stand for.
pub fn hourly_price(provider: &str, instance_type: &str, region: Option<&str>) -> Option<f64> {
    match provider {
        "gcp" => gcp_hourly(instance_type, region?),
        "sandbox" => region
            .and_then(|r| gcp_hourly(instance_type, r))
            .or_else(|| gcp_hourly(instance_type, DEFAULT_GCP_REGION)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalog_prices_real_machine_types() {
        assert!(gcp_prices().len() > 10_000);
        let small = gcp_hourly("e2-small", "us-central1").unwrap();
        assert!((0.01..0.03).contains(&small), "{small}");
        assert!(gcp_hourly("e2-standard-4", "europe-west1").unwrap() > small);
        assert_eq!(gcp_hourly("no-such-type", "us-central1"), None);
        assert_eq!(
            hourly_price("sandbox", "e2-small", Some("moon-1")),
            Some(small)
        );
        assert_eq!(hourly_price("aws", "t3.micro", Some("us-east-1")), None);
    }
}
