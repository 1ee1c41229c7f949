//! DNS records: one client over two hosts. Cloudflare is reached through the `cloudflare`
//! crate (at the operator's configured API address); the sandbox keeps its zones and records
//! in Postgres and answers the same way, conflicts and missing records included. Deployments
//! of `dns_record` resources ([`deploy`]) and the DNS orchestrations use it.

pub mod deploy;
mod sandbox;

use std::net::{Ipv4Addr, Ipv6Addr};

use cloudflare::endpoints::{dns::dns, zones::zone};
use cloudflare::framework::Environment;
use cloudflare::framework::auth::Credentials;
use cloudflare::framework::client::ClientConfig;
use cloudflare::framework::client::async_api::Client;
use cloudflare::framework::response::ApiFailure;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sqlx::PgPool;
use uuid::Uuid;

use crate::state::AppState;

/// The provider types that host DNS records.
pub const HOSTS: &[&str] = &["sandbox", "cloudflare"];

/// The type of the tenant's provider `id` when it hosts DNS records; otherwise a 422 on `field`.
pub async fn host_type(
    db: &PgPool,
    tenant_id: Uuid,
    id: Uuid,
    field: &str,
) -> crate::error::AppResult<String> {
    let provider_type = sqlx::query_scalar!(
        "SELECT provider_type FROM providers WHERE id = $1 AND tenant_id = $2",
        id,
        tenant_id
    )
    .fetch_optional(db)
    .await?
    .ok_or_else(|| crate::error::AppError::invalid(field, "no such provider"))?;
    if !HOSTS.contains(&provider_type.as_str()) {
        return Err(crate::error::AppError::invalid(
            field,
            format!("a {provider_type} provider does not host DNS records"),
        ));
    }
    Ok(provider_type)
}

/// A record as the host holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    /// Fully qualified.
    pub name: String,
    pub record_type: String,
    pub content: String,
    pub ttl: u32,
    pub proxied: bool,
}

/// What a record should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordData {
    /// Fully qualified.
    pub name: String,
    pub record_type: String,
    pub content: String,
    pub ttl: u32,
    pub proxied: bool,
}

impl RecordData {
    /// Whether `record` already is this (the host may adjust a proxied record's ttl).
    pub fn matches(&self, record: &Record) -> bool {
        self.name.eq_ignore_ascii_case(&record.name)
            && self.record_type == record.record_type
            && self.content == record.content
            && self.proxied == record.proxied
            && (self.proxied || self.ttl == record.ttl)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("zone {0} not found")]
    ZoneNotFound(String),
    #[error("record {0} does not exist")]
    RecordNotFound(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("refused: {0}")]
    Rejected(String),
    #[error("DNS host unavailable: {0}")]
    Unavailable(String),
}

/// The fully qualified name of `name` in `zone` (`@` is the zone's apex).
pub fn fqdn(name: &str, zone: &str) -> String {
    let (name, zone) = (name.trim_end_matches('.'), zone.trim_end_matches('.'));
    let lower = name.to_ascii_lowercase();
    let zone_lower = zone.to_ascii_lowercase();
    if name == "@" || lower == zone_lower {
        zone.to_string()
    } else if lower.ends_with(&format!(".{zone_lower}")) {
        name.to_string()
    } else {
        format!("{name}.{zone}")
    }
}

/// Whether `name` can name a record: letters, digits, `-`, `_`, `*`, dots between labels of
/// at most 63 characters, or `@`.
pub fn valid_record_name(name: &str) -> bool {
    name == "@"
        || (!name.is_empty()
            && name.len() <= 253
            && name.trim_end_matches('.').split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'*'))
            }))
}

/// The DNS host of one provider.
pub enum DnsClient {
    Cloudflare(Box<Client>),
    Sandbox(sandbox::SandboxDns),
}

impl DnsClient {
    /// The client for a provider of the tenant (a `cloudflare` or `sandbox` provider).
    pub async fn for_provider(
        state: &AppState,
        tenant_id: Uuid,
        provider_id: Uuid,
    ) -> Result<Self, DnsError> {
        let provider = sqlx::query!(
            "SELECT provider_type, credential_id, settings FROM providers WHERE id = $1 AND tenant_id = $2",
            provider_id,
            tenant_id
        )
        .fetch_optional(&state.db)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| DnsError::Rejected(format!("provider {provider_id} does not exist")))?;
        match provider.provider_type.as_str() {
            "sandbox" => Ok(Self::sandbox(
                state.db.clone(),
                provider_id,
                &provider.settings,
            )),
            "cloudflare" => {
                let secrets = match provider.credential_id {
                    Some(id) => crate::credentials::open_secrets(state, tenant_id, id)
                        .await
                        .map_err(|err| DnsError::Rejected(format!("credential: {err}")))?,
                    None => Map::new(),
                };
                Self::cloudflare(&state.settings.cloudflare_api_url, &secrets)
            }
            other => Err(DnsError::Rejected(format!(
                "a {other} provider does not host DNS records"
            ))),
        }
    }

    pub fn sandbox(db: PgPool, provider_id: Uuid, settings: &Value) -> Self {
        Self::Sandbox(sandbox::SandboxDns::new(db, provider_id, settings))
    }

    /// A Cloudflare client with the credential's `api_token` (or `email` and `api_key`).
    pub fn cloudflare(base_url: &str, secrets: &Map<String, Value>) -> Result<Self, DnsError> {
        let get = |k: &str| secrets.get(k).and_then(Value::as_str).unwrap_or_default();
        let credentials = match (get("api_token"), get("email"), get("api_key")) {
            (token, _, _) if !token.is_empty() => Credentials::UserAuthToken {
                token: token.into(),
            },
            (_, email, key) if !email.is_empty() && !key.is_empty() => Credentials::UserAuthKey {
                email: email.into(),
                key: key.into(),
            },
            _ => {
                return Err(DnsError::Rejected(
                    "the provider's credential has no api_token".into(),
                ));
            }
        };
        let config = ClientConfig {
            http_timeout: std::time::Duration::from_secs(20),
            ..ClientConfig::default()
        };
        Client::new(
            credentials,
            config,
            Environment::Custom(base_url.to_string()),
        )
        .map(|client| Self::Cloudflare(Box::new(client)))
        .map_err(|err| DnsError::Unavailable(err.to_string()))
    }

    /// The id of the zone named `name`.
    pub async fn zone_id(&self, name: &str) -> Result<String, DnsError> {
        match self {
            Self::Sandbox(s) => s.zone_id(name).await,
            Self::Cloudflare(c) => {
                let zones = c
                    .request(&zone::ListZones {
                        params: zone::ListZonesParams {
                            name: Some(name.trim_end_matches('.').to_string()),
                            ..Default::default()
                        },
                    })
                    .await
                    .map_err(|err| cloudflare_error(err, name))?;
                zones
                    .result
                    .into_iter()
                    .next()
                    .map(|z| z.id)
                    .ok_or_else(|| DnsError::ZoneNotFound(name.to_string()))
            }
        }
    }

    /// The zone's records of this name and type.
    pub async fn find(
        &self,
        zone_id: &str,
        name: &str,
        record_type: &str,
    ) -> Result<Vec<Record>, DnsError> {
        match self {
            Self::Sandbox(s) => s.find(zone_id, name, record_type).await,
            Self::Cloudflare(c) => {
                let records = c
                    .request(&dns::ListDnsRecords {
                        zone_identifier: zone_id,
                        params: dns::ListDnsRecordsParams {
                            name: Some(name.to_string()),
                            per_page: Some(100),
                            ..Default::default()
                        },
                    })
                    .await
                    .map_err(|err| cloudflare_error(err, zone_id))?;
                Ok(records
                    .result
                    .into_iter()
                    .map(from_cloudflare)
                    .filter(|r| r.record_type == record_type)
                    .collect())
            }
        }
    }

    pub async fn get(&self, zone_id: &str, id: &str) -> Result<Record, DnsError> {
        match self {
            Self::Sandbox(s) => s.get(zone_id, id).await,
            Self::Cloudflare(c) => {
                // The crate has no single-record endpoint; the record is found by listing.
                let mut page = 1;
                loop {
                    let records = c
                        .request(&dns::ListDnsRecords {
                            zone_identifier: zone_id,
                            params: dns::ListDnsRecordsParams {
                                page: Some(page),
                                per_page: Some(100),
                                ..Default::default()
                            },
                        })
                        .await
                        .map_err(|err| cloudflare_error(err, zone_id))?;
                    let count = records.result.len();
                    if let Some(found) = records.result.into_iter().find(|r| r.id == id) {
                        return Ok(from_cloudflare(found));
                    }
                    if count < 100 {
                        return Err(DnsError::RecordNotFound(id.to_string()));
                    }
                    page += 1;
                }
            }
        }
    }

    pub async fn create(&self, zone_id: &str, data: &RecordData) -> Result<Record, DnsError> {
        match self {
            Self::Sandbox(s) => s.create(zone_id, data).await,
            Self::Cloudflare(c) => {
                let record = c
                    .request(&dns::CreateDnsRecord {
                        zone_identifier: zone_id,
                        params: dns::CreateDnsRecordParams {
                            ttl: Some(data.ttl),
                            priority: None,
                            proxied: Some(data.proxied),
                            name: &data.name,
                            content: content(data)?,
                        },
                    })
                    .await
                    .map_err(|err| cloudflare_error(err, zone_id))?;
                Ok(from_cloudflare(record.result))
            }
        }
    }

    pub async fn update(
        &self,
        zone_id: &str,
        id: &str,
        data: &RecordData,
    ) -> Result<Record, DnsError> {
        match self {
            Self::Sandbox(s) => s.update(zone_id, id, data).await,
            Self::Cloudflare(c) => {
                let record = c
                    .request(&dns::UpdateDnsRecord {
                        zone_identifier: zone_id,
                        identifier: id,
                        params: dns::UpdateDnsRecordParams {
                            ttl: Some(data.ttl),
                            proxied: Some(data.proxied),
                            name: &data.name,
                            content: content(data)?,
                        },
                    })
                    .await
                    .map_err(|err| cloudflare_error(err, id))?;
                Ok(from_cloudflare(record.result))
            }
        }
    }

    pub async fn delete(&self, zone_id: &str, id: &str) -> Result<(), DnsError> {
        match self {
            Self::Sandbox(s) => s.delete(zone_id, id).await,
            Self::Cloudflare(c) => {
                c.request(&dns::DeleteDnsRecord {
                    zone_identifier: zone_id,
                    identifier: id,
                })
                .await
                .map_err(|err| cloudflare_error(err, id))?;
                Ok(())
            }
        }
    }
}

fn unavailable(err: impl std::fmt::Display) -> DnsError {
    DnsError::Unavailable(err.to_string())
}

/// The record's value in the crate's typed form.
fn content(data: &RecordData) -> Result<dns::DnsContent, DnsError> {
    let invalid = |what: &str| DnsError::Rejected(format!("{:?} is not {what}", data.content));
    Ok(match data.record_type.as_str() {
        "A" => dns::DnsContent::A {
            content: data
                .content
                .parse::<Ipv4Addr>()
                .map_err(|_| invalid("an IPv4 address"))?,
        },
        "AAAA" => dns::DnsContent::AAAA {
            content: data
                .content
                .parse::<Ipv6Addr>()
                .map_err(|_| invalid("an IPv6 address"))?,
        },
        "CNAME" => dns::DnsContent::CNAME {
            content: data.content.clone(),
        },
        "MX" => dns::DnsContent::MX {
            content: data.content.clone(),
            priority: MX_PRIORITY,
        },
        "TXT" => dns::DnsContent::TXT {
            content: data.content.clone(),
        },
        other => return Err(DnsError::Rejected(format!("record type {other}"))),
    })
}

/// The priority given to MX records (one mail host per record).
pub const MX_PRIORITY: u16 = 10;

fn from_cloudflare(record: dns::DnsRecord) -> Record {
    let (record_type, content) = match record.content {
        dns::DnsContent::A { content } => ("A", content.to_string()),
        dns::DnsContent::AAAA { content } => ("AAAA", content.to_string()),
        dns::DnsContent::CNAME { content } => ("CNAME", content),
        dns::DnsContent::NS { content } => ("NS", content),
        dns::DnsContent::MX { content, .. } => ("MX", content),
        dns::DnsContent::TXT { content } => ("TXT", content),
        dns::DnsContent::SRV { content } => ("SRV", content),
    };
    Record {
        id: record.id,
        name: record.name,
        record_type: record_type.into(),
        content,
        ttl: record.ttl,
        proxied: record.proxied,
    }
}

/// Cloudflare's error envelope as one of ours. The crate reads error codes as `u16`, so the
/// DNS codes (81044 no such record, 81053/81057/81058 a clashing record) arrive as an empty
/// list: a 404 without a zone code is a missing record, and clashes are found before writing
/// (see `deploy`).
fn cloudflare_error(failure: ApiFailure, subject: &str) -> DnsError {
    match failure {
        ApiFailure::Error(status, errors) => {
            let codes: Vec<u16> = errors.errors.iter().map(|e| e.code).collect();
            let message = errors
                .errors
                .iter()
                .map(|e| format!("{} (code {})", e.message, e.code))
                .collect::<Vec<_>>()
                .join("; ");
            let message = if message.is_empty() {
                format!("Cloudflare answered HTTP {status}")
            } else {
                message
            };
            if codes.iter().any(|c| matches!(c, 7003 | 1001)) {
                DnsError::ZoneNotFound(subject.to_string())
            } else if status.as_u16() == 404 {
                DnsError::RecordNotFound(subject.to_string())
            } else if status.is_server_error() || status.as_u16() == 429 {
                DnsError::Unavailable(message)
            } else {
                DnsError::Rejected(message)
            }
        }
        ApiFailure::Invalid(err) => DnsError::Unavailable(err.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_qualified_once() {
        assert_eq!(fqdn("www", "example.com"), "www.example.com");
        assert_eq!(fqdn("@", "example.com"), "example.com");
        assert_eq!(fqdn("www.example.com", "example.com"), "www.example.com");
        assert_eq!(fqdn("example.com.", "example.com"), "example.com");
        assert!(valid_record_name("_acme-challenge.www"));
        assert!(valid_record_name("*.apps"));
        assert!(!valid_record_name("a..b"));
        assert!(!valid_record_name("x\"} resource"));
        assert!(!valid_record_name(&"a".repeat(64)));
    }
}
