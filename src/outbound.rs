//! The one outbound-address policy. Every connection a tenant can direct (billing imports by
//! URL, provider health checks, and later webhooks and on-premises APIs) asks this module for
//! its addresses: special-use ranges (loopback, private, link-local, cloud metadata, CGNAT,
//! documentation, multicast, ...) are refused unless the operator allows a CIDR that holds
//! them, and the caller connects to exactly the addresses that were checked, so a name that
//! resolves differently a moment later cannot slip past the check.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;

/// Why an outbound connection was not made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundError {
    /// Not a usable address (no host, an unknown scheme): the same request fails again.
    #[error("{0}")]
    BadAddress(String),
    /// The address is in a special-use range the operator has not allowed: permanent.
    #[error("{0}")]
    Refused(String),
    /// The name did not resolve, or nothing answered: may pass on another try.
    #[error("{0}")]
    Unreachable(String),
}

impl OutboundError {
    /// Whether trying again later could succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, OutboundError::Unreachable(_))
    }
}

/// Where a connection goes: a host (a name, or an IP address without brackets) and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    /// An endpoint written as a URL (`https://pve.local:8006/api2`, `http://[fd00::1]/`) or as
    /// `host[:port]` (`api.example.com:443`, `[2001:db8::1]:8443`); the port defaults to the
    /// scheme's, else 443.
    pub fn parse(text: &str) -> Result<Self, OutboundError> {
        let bad = || OutboundError::BadAddress(format!("{text:?} is not a host or URL"));
        let with_scheme = if text.contains("://") {
            text.to_string()
        } else {
            format!("https://{text}")
        };
        let url = reqwest::Url::parse(&with_scheme).map_err(|_| bad())?;
        Self::of_url(&url).map_err(|_| bad())
    }

    /// The host and port a URL connects to.
    pub fn of_url(url: &reqwest::Url) -> Result<Self, OutboundError> {
        // The URL parser normalises literals (`[::1]`, `2130706433` for 127.0.0.1); brackets
        // come off so that the host parses as an address.
        let host = match url.host_str() {
            Some(host) if !host.is_empty() => host.trim_start_matches('[').trim_end_matches(']'),
            _ => return Err(OutboundError::BadAddress(format!("{url} has no host"))),
        }
        .to_string();
        let port = url
            .port_or_known_default()
            .ok_or_else(|| OutboundError::BadAddress(format!("{url} has no port")))?;
        Ok(Self { host, port })
    }
}

/// The operator's outbound policy: which special-use addresses are allowed anyway.
#[derive(Debug, Clone, Default)]
pub struct OutboundPolicy {
    allowed: Vec<IpNet>,
}

impl OutboundPolicy {
    /// Public addresses only, plus the given CIDRs (`10.20.0.0/16`, `fd00::/8`, `127.0.0.1/32`).
    pub fn new(allowed: Vec<IpNet>) -> Self {
        Self { allowed }
    }

    /// Parses a CIDR as the operator writes it (a bare address is a single host).
    pub fn parse_cidr(text: &str) -> Result<IpNet, String> {
        let text = text.trim();
        text.parse::<IpNet>()
            .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
            .map_err(|_| format!("{text:?} is not a CIDR (like 10.0.0.0/8 or fd00::/8)"))
    }

    pub fn allowed(&self) -> &[IpNet] {
        &self.allowed
    }

    /// Whether a connection to `ip` is allowed: a public address, or one the operator allowed.
    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        !is_special_use(ip) || self.allowed.iter().any(|net| net.contains(&ip))
    }

    /// Resolves an endpoint and checks every address it has: one refused address refuses the
    /// whole name (a name that mixes public and private answers is not to be trusted).
    pub async fn resolve(&self, endpoint: &Endpoint) -> Result<Vec<SocketAddr>, OutboundError> {
        let addresses: Vec<SocketAddr> = match endpoint.host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, endpoint.port)],
            Err(_) => tokio::net::lookup_host((endpoint.host.as_str(), endpoint.port))
                .await
                .map_err(|err| {
                    OutboundError::Unreachable(format!("cannot resolve {}: {err}", endpoint.host))
                })?
                .collect(),
        };
        if addresses.is_empty() {
            return Err(OutboundError::Unreachable(format!(
                "{} resolved to no address",
                endpoint.host
            )));
        }
        if let Some(refused) = addresses.iter().find(|a| !self.permits(a.ip())) {
            return Err(OutboundError::Refused(format!(
                "{} is a private or special-use address ({}); the operator has not allowed it",
                endpoint.host,
                refused.ip()
            )));
        }
        Ok(addresses)
    }

    /// An HTTP client for `url` that connects only to the addresses checked here and follows no
    /// redirect (a redirect could lead anywhere).
    pub async fn http_client(
        &self,
        url: &reqwest::Url,
        timeout: Duration,
    ) -> Result<reqwest::Client, OutboundError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(OutboundError::BadAddress(format!(
                "{} is not an http or https URL",
                url.scheme()
            )));
        }
        let endpoint = Endpoint::of_url(url)?;
        let addresses = self.resolve(&endpoint).await?;
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(30))
            .timeout(timeout);
        if endpoint.host.parse::<IpAddr>().is_err() {
            builder = builder.resolve_to_addrs(&endpoint.host, &addresses);
        }
        builder
            .build()
            .map_err(|err| OutboundError::BadAddress(err.to_string()))
    }

    /// Opens a TCP connection to the first checked address of `endpoint` that answers.
    pub async fn connect(
        &self,
        endpoint: &Endpoint,
        timeout: Duration,
    ) -> Result<tokio::net::TcpStream, OutboundError> {
        let attempt = async {
            let mut last_error = String::new();
            for address in self.resolve(endpoint).await? {
                match tokio::net::TcpStream::connect(address).await {
                    Ok(stream) => return Ok(stream),
                    Err(err) => {
                        last_error = format!(
                            "cannot connect to {}:{} ({address}): {err}",
                            endpoint.host, endpoint.port
                        )
                    }
                }
            }
            Err(OutboundError::Unreachable(last_error))
        };
        tokio::time::timeout(timeout, attempt)
            .await
            .unwrap_or_else(|_| {
                Err(OutboundError::Unreachable(format!(
                    "no answer from {}:{} within {} s",
                    endpoint.host,
                    endpoint.port,
                    timeout.as_secs()
                )))
            })
    }
}

/// An IPv4 address carried in IPv6 (`::ffff:10.0.0.1`, NAT64 `64:ff9b::a00:1`, 6to4
/// `2002:a00:1::`) is judged as the IPv4 address it reaches.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        v4 => v4,
    }
}

fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let v4 = |hi: u16, lo: u16| Ipv4Addr::from(((hi as u32) << 16) | lo as u32);
    if let Some(v4) = v6.to_ipv4_mapped() {
        Some(v4)
    } else if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        Some(v4(s[6], s[7]))
    } else if s[0] == 0x2002 {
        Some(v4(s[1], s[2]))
    } else {
        None
    }
}

/// Ranges of the IANA special-purpose address registries (and multicast): never the public
/// internet, so a tenant may not point Strata's workers at them.
const SPECIAL_USE: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.31.196.0/24",
    "192.52.193.0/24",
    "192.88.99.0/24",
    "192.168.0.0/16",
    "192.175.48.0/24",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
    // IPv6: unspecified, loopback and the old IPv4-compatible block.
    "::/96",
    "64:ff9b:1::/48",
    "100::/64",
    "2001::/23",
    "2001:db8::/32",
    "3fff::/20",
    "5f00::/16",
    "fc00::/7",
    "fe80::/10",
    "fec0::/10",
    "ff00::/8",
];

fn is_special_use(ip: IpAddr) -> bool {
    static RANGES: std::sync::OnceLock<Vec<IpNet>> = std::sync::OnceLock::new();
    RANGES
        .get_or_init(|| {
            SPECIAL_USE
                .iter()
                .map(|r| r.parse().expect("a valid range"))
                .collect()
        })
        .iter()
        .any(|net| net.contains(&ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn special_use_addresses_are_refused_and_public_ones_permitted() {
        let policy = OutboundPolicy::default();
        for refused in [
            "127.0.0.1",
            "10.1.2.3",
            "172.31.255.255",
            "192.168.0.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.251",
            "198.18.0.1",
            "192.0.2.10",
            "::",
            "::1",
            "fd00::1",
            "fe80::1",
            "ff02::1",
            "2001:db8::1",
            "2001::1",
            "::ffff:10.0.0.1",
            "::ffff:127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:a9fe:a9fe::1",
            "::127.0.0.1",
        ] {
            assert!(!policy.permits(ip(refused)), "{refused} must be refused");
        }
        for permitted in [
            "52.95.110.1",
            "8.8.8.8",
            "1.1.1.1",
            "2600:1f18::1",
            "2a00:1450:4001::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert!(
                policy.permits(ip(permitted)),
                "{permitted} must be permitted"
            );
        }
    }

    #[test]
    fn the_operator_allows_ranges_by_cidr() {
        let policy = OutboundPolicy::new(vec![
            OutboundPolicy::parse_cidr("10.20.0.0/16").unwrap(),
            OutboundPolicy::parse_cidr("fd12::/16").unwrap(),
            OutboundPolicy::parse_cidr("127.0.0.1").unwrap(),
        ]);
        assert!(policy.permits(ip("10.20.3.4")));
        assert!(policy.permits(ip("::ffff:10.20.3.4")));
        assert!(!policy.permits(ip("10.21.0.1")));
        assert!(policy.permits(ip("fd12::9")));
        assert!(!policy.permits(ip("fd13::9")));
        assert!(policy.permits(ip("127.0.0.1")));
        assert!(!policy.permits(ip("127.0.0.2")));
        assert!(!policy.permits(ip("::1")));
        assert!(OutboundPolicy::parse_cidr("10.0.0.0/33").is_err());
        assert!(OutboundPolicy::parse_cidr("intranet").is_err());
    }

    #[test]
    fn endpoints_parse_from_urls_and_host_port_including_ipv6_literals() {
        let parsed = |text: &str| Endpoint::parse(text).map(|e| (e.host, e.port));
        assert_eq!(
            parsed("https://pve.local:8006/api2"),
            Ok(("pve.local".into(), 8006))
        );
        assert_eq!(parsed("http://x.io"), Ok(("x.io".into(), 80)));
        assert_eq!(
            parsed("api.cloudflare.com:443"),
            Ok(("api.cloudflare.com".into(), 443))
        );
        assert_eq!(parsed("example.com"), Ok(("example.com".into(), 443)));
        assert_eq!(parsed("http://[fd00::1]/x"), Ok(("fd00::1".into(), 80)));
        assert_eq!(
            parsed("[2001:db8::1]:8443"),
            Ok(("2001:db8::1".into(), 8443))
        );
        assert_eq!(
            parsed("http://[::ffff:169.254.169.254]:81/"),
            Ok(("::ffff:a9fe:a9fe".into(), 81))
        );
        assert!(parsed("http://").is_err());
    }

    /// Literal addresses are judged without a lookup; no connection is made.
    #[tokio::test]
    async fn literal_addresses_are_checked_without_connecting() {
        let policy = OutboundPolicy::default();
        for url in [
            "http://[::1]:8080/export.csv",
            "http://[fd00::5]/x",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::ffff:a9fe:a9fe]/",
            "http://2130706433/",
        ] {
            let url = reqwest::Url::parse(url).unwrap();
            let refused = policy.http_client(&url, Duration::from_secs(1)).await;
            assert!(
                matches!(refused, Err(OutboundError::Refused(_))),
                "{url}: {refused:?}"
            );
        }
        let ftp = reqwest::Url::parse("ftp://example.com/x").unwrap();
        assert!(matches!(
            policy.http_client(&ftp, Duration::from_secs(1)).await,
            Err(OutboundError::BadAddress(_))
        ));
        let public = reqwest::Url::parse("http://[2600:1f18::1]:8080/x").unwrap();
        assert!(
            policy
                .http_client(&public, Duration::from_secs(1))
                .await
                .is_ok()
        );
    }
}
