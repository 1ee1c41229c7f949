//! An in-memory stand-in for Cloudflare's v4 API on 127.0.0.1. It serves only the zone and DNS
//! record endpoints that the `cloudflare` crate (0.14) calls. Responses use Cloudflare's
//! envelope, validation rules and error codes, so tests can point Strata (or the crate) at it.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{Method, StatusCode, header::AUTHORIZATION};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

/// The record types the stand-in accepts, which are also the ones the crate's `DnsContent` can
/// deserialize.
const TYPES: [&str; 7] = ["A", "AAAA", "CNAME", "TXT", "MX", "NS", "SRV"];
const ACCOUNT_ID: &str = "0123456789abcdef0123456789abcdef";

/// The stand-in. The server stops when this is dropped.
pub struct Cloudflare {
    /// The base URL, with a trailing slash: `http://127.0.0.1:PORT/client/v4/`.
    pub url: String,
    state: Arc<Mutex<Inner>>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct Inner {
    token: String,
    zones: Vec<Zone>,
    records: Vec<Record>,
    fail_writes: usize,
    requests: Vec<String>,
}

struct Zone {
    id: String,
    name: String,
    created_on: DateTime<Utc>,
}

#[derive(Clone)]
struct Record {
    id: String,
    zone_id: String,
    name: String,
    rtype: String,
    content: String,
    ttl: u32,
    proxied: bool,
    priority: Option<u16>,
    created_on: DateTime<Utc>,
    modified_on: DateTime<Utc>,
}

/// A failure, sent as Cloudflare's error envelope.
#[derive(Debug)]
struct CfError(StatusCode, u32, String);

impl IntoResponse for CfError {
    fn into_response(self) -> Response {
        let errors = json!([{"code": self.1, "message": self.2}]);
        let body = json!({"success": false, "errors": errors, "messages": [], "result": null});
        (self.0, Json(body)).into_response()
    }
}

fn fail(status: StatusCode, code: u32, message: impl Into<String>) -> CfError {
    CfError(status, code, message.into())
}

fn ok(result: Value) -> Response {
    Json(json!({"success": true, "errors": [], "messages": [], "result": result})).into_response()
}

fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// A page of a list, with Cloudflare's `result_info`. Pages count from 1.
fn paginate(items: Vec<Value>, q: &HashMap<String, String>, default_per_page: usize) -> Response {
    let param = |k: &str, default| q.get(k).and_then(|v| v.parse().ok()).unwrap_or(default);
    let (page, per_page) = (
        param("page", 1).max(1),
        param("per_page", default_per_page).max(1),
    );
    let total = items.len();
    let result: Vec<Value> = items
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .collect();
    let info = json!({"page": page, "per_page": per_page, "count": result.len(),
        "total_count": total, "total_pages": total.div_ceil(per_page)});
    let body = json!({"success": true, "errors": [], "messages": [], "result": result,
        "result_info": info});
    Json(body).into_response()
}

impl Zone {
    fn json(&self) -> Value {
        let t = ts(self.created_on);
        json!({
            "id": self.id, "name": self.name, "status": "active", "paused": false,
            "type": "full", "development_mode": 0,
            "name_servers": ["ada.ns.cloudflare.com", "bob.ns.cloudflare.com"],
            "original_name_servers": null, "original_registrar": null, "original_dnshost": null,
            "created_on": t, "modified_on": t, "activated_on": t,
            "meta": {"step": 2, "custom_certificate_quota": 0, "page_rule_quota": 3,
                "phishing_detected": false},
            "owner": {"type": "user", "id": "fedcba9876543210fedcba9876543210",
                "email": "owner@example.com"},
            "account": {"id": ACCOUNT_ID, "name": "Strata tests"},
            "permissions": ["#dns_records:edit", "#dns_records:read", "#zone:read"],
        })
    }
}

impl Record {
    fn json(&self) -> Value {
        let mut v = json!({
            "id": self.id, "zone_id": self.zone_id, "name": self.name, "type": self.rtype,
            "content": self.content, "ttl": self.ttl, "proxied": self.proxied,
            // Cloudflare can proxy only A, AAAA and CNAME records.
            "proxiable": matches!(self.rtype.as_str(), "A" | "AAAA" | "CNAME"),
            "locked": false, "meta": {}, "comment": null, "tags": [],
            "created_on": ts(self.created_on), "modified_on": ts(self.modified_on),
        });
        if let Some(p) = self.priority {
            v["priority"] = json!(p);
        }
        v
    }

    /// The fields a client sends, so that PATCH can merge its changes into them.
    fn input(&self) -> Value {
        json!({"type": self.rtype, "name": self.name, "content": self.content, "ttl": self.ttl,
            "proxied": self.proxied, "priority": self.priority})
    }
}

/// Builds a new record from a request body, validating it as Cloudflare does. The body's `name`
/// may be relative to the zone, a fully qualified name, or "@" (the apex). It is stored as the
/// FQDN.
fn build(fields: &Value, zone_id: &str, zone: &str) -> Result<Record, CfError> {
    let invalid = || fail(StatusCode::BAD_REQUEST, 9004, "DNS Validation Error");
    let field = |k: &str| fields.get(k).and_then(Value::as_str);
    let rtype = field("type")
        .filter(|t| TYPES.contains(t))
        .ok_or_else(invalid)?;
    let name = field("name")
        .ok_or_else(invalid)?
        .trim_end_matches('.')
        .to_lowercase();
    let name = if name == "@" || name.is_empty() || name == zone {
        zone.to_string()
    } else if name.ends_with(&format!(".{zone}")) {
        name
    } else {
        format!("{name}.{zone}")
    };
    let mut content = field("content").ok_or_else(invalid)?.to_string();
    if rtype == "A" && content.parse::<Ipv4Addr>().is_err() {
        let msg = "Content for A record must be a valid IPv4 address.";
        return Err(fail(StatusCode::BAD_REQUEST, 9005, msg));
    }
    if rtype == "AAAA" {
        // Cloudflare stores IPv6 addresses in their canonical (compressed, lowercase) form.
        let msg = "Content for AAAA record must be a valid IPv6 address.";
        let ip = content.parse::<Ipv6Addr>();
        content = ip
            .map_err(|_| fail(StatusCode::BAD_REQUEST, 9006, msg))?
            .to_string();
    }
    // TTL 1 means "automatic"; otherwise 60 s to one day.
    let ttl = fields.get("ttl").and_then(Value::as_u64).unwrap_or(1);
    if ttl != 1 && !(60..=86400).contains(&ttl) {
        let msg = "Invalid TTL. Must be between 60 and 86400 seconds, or 1 for Automatic.";
        return Err(fail(StatusCode::BAD_REQUEST, 9021, msg));
    }
    // MX records without a priority get 0.
    let priority = fields.get("priority").and_then(Value::as_u64).unwrap_or(0) as u16;
    let now = Utc::now();
    Ok(Record {
        id: new_id(),
        zone_id: zone_id.to_string(),
        name,
        rtype: rtype.to_string(),
        content,
        ttl: ttl as u32,
        proxied: fields
            .get("proxied")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        priority: (rtype == "MX").then_some(priority),
        created_on: now,
        modified_on: now,
    })
}

impl Inner {
    /// The zone's name. Cloudflare answers an unknown zone id with 7003.
    fn zone_name(&self, id: &str, rest: &str) -> Result<String, CfError> {
        let zone = self.zones.iter().find(|z| z.id == id);
        let msg = format!(
            "Could not route to /zones/{id}{rest}, perhaps your object identifier is invalid?"
        );
        zone.map(|z| z.name.clone())
            .ok_or_else(|| fail(StatusCode::NOT_FOUND, 7003, msg))
    }

    fn record(&self, zone_id: &str, id: &str) -> Result<&Record, CfError> {
        let found = self
            .records
            .iter()
            .find(|r| r.zone_id == zone_id && r.id == id);
        found.ok_or_else(|| fail(StatusCode::NOT_FOUND, 81044, "Record does not exist."))
    }

    /// Cloudflare's conflict rules, checked against every other record of the same name.
    fn check_conflicts(&self, new: &Record) -> Result<(), CfError> {
        let same_name = || {
            let others = self.records.iter().filter(|r| r.id != new.id);
            others.filter(|r| r.zone_id == new.zone_id && r.name == new.name)
        };
        if same_name().any(|r| r.rtype == new.rtype && r.content == new.content) {
            let msg = "An identical record already exists.";
            return Err(fail(StatusCode::BAD_REQUEST, 81058, msg));
        }
        // A CNAME cannot share its name with any other record.
        if same_name().any(|r| r.rtype == "CNAME" || new.rtype == "CNAME") {
            let msg = "An A, AAAA, or CNAME record with that host already exists.";
            return Err(fail(StatusCode::BAD_REQUEST, 81053, msg));
        }
        Ok(())
    }
}

type Shared = State<Arc<Mutex<Inner>>>;

fn parse_body(body: &Bytes) -> Result<Value, CfError> {
    let invalid = || fail(StatusCode::BAD_REQUEST, 9207, "Request body is invalid.");
    serde_json::from_slice::<Value>(body)
        .ok()
        .filter(Value::is_object)
        .ok_or_else(invalid)
}

async fn list_zones(State(s): Shared, Query(q): Query<HashMap<String, String>>) -> Response {
    let s = s.lock().unwrap();
    let matches = |z: &&Zone| {
        q.get("name")
            .is_none_or(|n| n.eq_ignore_ascii_case(&z.name))
            && q.get("status").is_none_or(|st| st == "active")
    };
    paginate(
        s.zones.iter().filter(matches).map(Zone::json).collect(),
        &q,
        20,
    )
}

async fn zone_details(State(s): Shared, Path(zone_id): Path<String>) -> Result<Response, CfError> {
    let s = s.lock().unwrap();
    s.zone_name(&zone_id, "")?;
    Ok(ok(s.zones.iter().find(|z| z.id == zone_id).unwrap().json()))
}

async fn list_records(
    State(s): Shared,
    Path(zone_id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, CfError> {
    let s = s.lock().unwrap();
    s.zone_name(&zone_id, "/dns_records")?;
    let records = s.records.iter().filter(|r| {
        r.zone_id == zone_id
            && q.get("name")
                .is_none_or(|n| n.trim_end_matches('.').eq_ignore_ascii_case(&r.name))
            && q.get("type").is_none_or(|t| *t == r.rtype)
            && q.get("content").is_none_or(|c| *c == r.content)
    });
    Ok(paginate(records.map(Record::json).collect(), &q, 100))
}

async fn create_record(
    State(s): Shared,
    Path(zone_id): Path<String>,
    body: Bytes,
) -> Result<Response, CfError> {
    let mut s = s.lock().unwrap();
    let zone = s.zone_name(&zone_id, "/dns_records")?;
    let record = build(&parse_body(&body)?, &zone_id, &zone)?;
    s.check_conflicts(&record)?;
    s.records.push(record.clone());
    Ok(ok(record.json()))
}

async fn get_record(
    State(s): Shared,
    Path((zone_id, id)): Path<(String, String)>,
) -> Result<Response, CfError> {
    let s = s.lock().unwrap();
    s.zone_name(&zone_id, &format!("/dns_records/{id}"))?;
    Ok(ok(s.record(&zone_id, &id)?.json()))
}

/// PUT replaces the record (omitted fields take their defaults); PATCH changes only the fields given.
fn update(
    s: &Mutex<Inner>,
    zone_id: &str,
    id: &str,
    body: &Bytes,
    merge: bool,
) -> Result<Response, CfError> {
    let mut s = s.lock().unwrap();
    let zone = s.zone_name(zone_id, &format!("/dns_records/{id}"))?;
    let old = s.record(zone_id, id)?.clone();
    let mut fields = parse_body(body)?;
    if merge {
        let mut base = old.input();
        for (k, v) in fields.as_object().unwrap() {
            base[k] = v.clone();
        }
        fields = base;
    }
    let record = Record {
        id: old.id,
        created_on: old.created_on,
        ..build(&fields, zone_id, &zone)?
    };
    s.check_conflicts(&record)?;
    *s.records.iter_mut().find(|r| r.id == id).unwrap() = record.clone();
    Ok(ok(record.json()))
}

async fn put_record(
    State(s): Shared,
    Path((z, id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, CfError> {
    update(&s, &z, &id, &body, false)
}

async fn patch_record(
    State(s): Shared,
    Path((z, id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, CfError> {
    update(&s, &z, &id, &body, true)
}

async fn delete_record(
    State(s): Shared,
    Path((zone_id, id)): Path<(String, String)>,
) -> Result<Response, CfError> {
    let mut s = s.lock().unwrap();
    s.zone_name(&zone_id, &format!("/dns_records/{id}"))?;
    s.record(&zone_id, &id)?;
    s.records.retain(|r| r.id != id);
    Ok(ok(json!({"id": id})))
}

/// Runs before every handler: records the request, checks the bearer token and injects the
/// write failures that `fail_writes` asked for.
async fn gate(State(s): Shared, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path();
    let path = path.strip_prefix("/client/v4").unwrap_or(path).to_string();
    {
        let mut s = s.lock().unwrap();
        s.requests.push(format!("{method} {path}"));
        let auth = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        match auth.and_then(|a| a.strip_prefix("Bearer ")) {
            None => {
                return fail(StatusCode::FORBIDDEN, 10000, "Authentication error").into_response();
            }
            Some(t) if t != s.token => {
                return fail(StatusCode::FORBIDDEN, 9109, "Invalid access token").into_response();
            }
            Some(_) => {}
        }
        if method != Method::GET && path.contains("/dns_records") && s.fail_writes > 0 {
            s.fail_writes -= 1;
            return fail(
                StatusCode::INTERNAL_SERVER_ERROR,
                10001,
                "Internal server error",
            )
            .into_response();
        }
    }
    next.run(req).await
}

impl Cloudflare {
    /// Starts the stand-in. Requests must carry `Authorization: Bearer <token>`. Without it the
    /// answer is 403 with code 10000; a wrong token gets 403 with code 9109.
    pub async fn start(token: &str) -> Self {
        let state = Arc::new(Mutex::new(Inner {
            token: token.to_string(),
            ..Inner::default()
        }));
        let records = "/client/v4/zones/{zone_id}/dns_records";
        let router = Router::new()
            .route("/client/v4/zones", get(list_zones))
            .route("/client/v4/zones/{zone_id}", get(zone_details))
            .route(records, get(list_records).post(create_record))
            .route(
                &format!("{records}/{{record_id}}"),
                get(get_record)
                    .put(put_record)
                    .patch(patch_record)
                    .delete(delete_record),
            )
            .fallback(|| async { fail(StatusCode::NOT_FOUND, 7000, "No route for that URI") })
            .layer(middleware::from_fn_with_state(state.clone(), gate))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/client/v4/", listener.local_addr().unwrap());
        let task = tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        Cloudflare { url, state, task }
    }

    /// Adds a zone and returns its id (32 lowercase hex digits, like Cloudflare's).
    pub fn add_zone(&self, name: &str) -> String {
        let id = new_id();
        let name = name.trim_end_matches('.').to_lowercase();
        let zone = Zone {
            id: id.clone(),
            name,
            created_on: Utc::now(),
        };
        self.state.lock().unwrap().zones.push(zone);
        id
    }

    /// Adds a record behind Strata's back and returns its id. `name` may be relative, "@" or the
    /// FQDN. Panics if Cloudflare would reject the record.
    pub fn add_record(
        &self,
        zone_id: &str,
        name: &str,
        record_type: &str,
        content: &str,
    ) -> String {
        let mut s = self.state.lock().unwrap();
        let zone = s.zone_name(zone_id, "").expect("unknown zone");
        let fields = json!({"type": record_type, "name": name, "content": content});
        let record = build(&fields, zone_id, &zone).expect("invalid record");
        s.check_conflicts(&record).expect("conflicting record");
        let id = record.id.clone();
        s.records.push(record);
        id
    }

    /// The zone's records, as `{id, name (FQDN), type, content, ttl, proxied}`.
    pub fn records(&self, zone_id: &str) -> Vec<Value> {
        let s = self.state.lock().unwrap();
        let records = s.records.iter().filter(|r| r.zone_id == zone_id);
        records
            .map(|r| {
                json!({"id": r.id, "name": r.name, "type": r.rtype, "content": r.content,
                "ttl": r.ttl, "proxied": r.proxied})
            })
            .collect()
    }

    /// Changes a record's content behind Strata's back.
    pub fn set_content(&self, record_id: &str, content: &str) {
        let mut s = self.state.lock().unwrap();
        let record = s
            .records
            .iter_mut()
            .find(|r| r.id == record_id)
            .expect("unknown record");
        record.content = content.to_string();
        record.modified_on = Utc::now();
    }

    /// The next `n` writes to DNS records (POST, PUT, PATCH, DELETE) fail with 500 and code
    /// 10001.
    pub fn fail_writes(&self, n: usize) {
        self.state.lock().unwrap().fail_writes = n;
    }

    /// Every request received so far, in order, as "METHOD path". The path is relative to
    /// `/client/v4`, holds the actual ids and has no query string, for example
    /// "POST /zones/<zone id>/dns_records".
    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }
}

impl Drop for Cloudflare {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudflare::endpoints::dns::dns;
    use cloudflare::endpoints::zones::zone;
    use cloudflare::framework::Environment;
    use cloudflare::framework::auth::Credentials;
    use cloudflare::framework::client::{ClientConfig, async_api::Client};
    use cloudflare::framework::response::ApiFailure;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const TOKEN: &str = "test-cloudflare-token";

    fn client(cf: &Cloudflare, token: &str) -> Client {
        let credentials = Credentials::UserAuthToken {
            token: token.into(),
        };
        let env = Environment::Custom(cf.url.clone());
        Client::new(credentials, ClientConfig::default(), env).unwrap()
    }

    /// The HTTP status and Cloudflare error codes of a failed request.
    fn failure<T: std::fmt::Debug>(result: Result<T, ApiFailure>) -> (u16, Vec<u16>) {
        match result {
            Err(ApiFailure::Error(status, e)) => {
                (status.as_u16(), e.errors.iter().map(|e| e.code).collect())
            }
            other => panic!("expected an API error, got {other:?}"),
        }
    }

    /// One request sent over raw HTTP/1.1, so that we can read error codes the crate cannot
    /// parse.
    async fn raw(cf: &Cloudflare, method: &str, path: &str, body: Value) -> (u16, Value) {
        let addr = cf
            .url
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap();
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let body = body.to_string();
        let request = format!(
            "{method} /client/v4/{path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        (
            head.split(' ').nth(1).unwrap().parse().unwrap(),
            serde_json::from_str(body).unwrap(),
        )
    }

    #[tokio::test]
    async fn zones_are_listed_by_name_and_tokens_are_checked() {
        let cf = Cloudflare::start(TOKEN).await;
        cf.add_zone("other.org");
        let id = cf.add_zone("example.com");
        let api = client(&cf, TOKEN);

        let params = zone::ListZonesParams {
            name: Some("example.com".into()),
            ..Default::default()
        };
        let zones = api.request(&zone::ListZones { params }).await.unwrap();
        assert_eq!(zones.result.len(), 1);
        assert_eq!(
            (zones.result[0].id.as_str(), zones.result[0].name.as_str()),
            (id.as_str(), "example.com")
        );
        assert_eq!(zones.result_info.unwrap()["total_count"], 1);
        let all = api
            .request(&zone::ListZones {
                params: Default::default(),
            })
            .await
            .unwrap();
        assert_eq!(all.result.len(), 2);

        let details = api
            .request(&zone::ZoneDetails { identifier: &id })
            .await
            .unwrap();
        assert_eq!(details.result.name, "example.com");
        let unknown = api
            .request(&zone::ZoneDetails {
                identifier: &new_id(),
            })
            .await;
        assert_eq!(failure(unknown), (404, vec![7003]));

        let wrong = client(&cf, "not-the-token")
            .request(&zone::ZoneDetails { identifier: &id })
            .await;
        assert_eq!(failure(wrong), (403, vec![9109]));
        assert_eq!(cf.requests().len(), 5);
        assert_eq!(cf.requests()[2], format!("GET /zones/{id}"));
    }

    #[tokio::test]
    async fn records_round_trip_and_conflict_as_on_cloudflare() {
        let cf = Cloudflare::start(TOKEN).await;
        let zone_id = cf.add_zone("example.com");
        let api = client(&cf, TOKEN);
        let a = |ip: [u8; 4]| dns::DnsContent::A {
            content: Ipv4Addr::from(ip),
        };
        let params = |name, content| dns::CreateDnsRecordParams {
            ttl: Some(300),
            priority: None,
            proxied: None,
            name,
            content,
        };

        let create = dns::CreateDnsRecord {
            zone_identifier: &zone_id,
            params: params("www", a([192, 0, 2, 1])),
        };
        let created = api.request(&create).await.unwrap().result;
        assert_eq!(
            (created.name.as_str(), created.ttl, created.proxied),
            ("www.example.com", 300, false)
        );
        assert_eq!(cf.records(&zone_id)[0]["content"], "192.0.2.1");

        let list = dns::ListDnsRecords {
            zone_identifier: &zone_id,
            params: dns::ListDnsRecordsParams {
                name: Some("www.example.com".into()),
                ..Default::default()
            },
        };
        assert_eq!(api.request(&list).await.unwrap().result.len(), 1);

        let update = dns::UpdateDnsRecord {
            zone_identifier: &zone_id,
            identifier: &created.id,
            params: dns::UpdateDnsRecordParams {
                ttl: Some(1),
                proxied: Some(true),
                name: "www.example.com",
                content: a([192, 0, 2, 2]),
            },
        };
        let updated = api.request(&update).await.unwrap().result;
        assert!(
            matches!(updated.content, dns::DnsContent::A { content } if content == Ipv4Addr::new(192, 0, 2, 2))
        );
        assert_eq!(
            (updated.id.as_str(), updated.ttl, updated.proxied),
            (created.id.as_str(), 1, true)
        );

        // The crate parses error codes as u16 (cloudflare-rs#218), so for 81xxx codes it drops
        // the errors. The status survives, and the raw answer shows the code.
        let identical = dns::CreateDnsRecord {
            zone_identifier: &zone_id,
            params: params("www", a([192, 0, 2, 2])),
        };
        assert_eq!(failure(api.request(&identical).await), (400, vec![]));
        let body = json!({"type": "A", "name": "www", "content": "192.0.2.2"});
        let (status, answer) =
            raw(&cf, "POST", &format!("zones/{zone_id}/dns_records"), body).await;
        assert_eq!((status, &answer["errors"][0]["code"]), (400, &json!(81058)));
        assert_eq!(answer["success"], false);
        let cname = json!({"type": "CNAME", "name": "www.example.com", "content": "example.net"});
        let (status, answer) =
            raw(&cf, "POST", &format!("zones/{zone_id}/dns_records"), cname).await;
        assert_eq!((status, &answer["errors"][0]["code"]), (400, &json!(81053)));

        let unknown = dns::DeleteDnsRecord {
            zone_identifier: &zone_id,
            identifier: "0123456789abcdef0123456789abcdef",
        };
        assert_eq!(failure(api.request(&unknown).await), (404, vec![]));
        let path = format!("zones/{zone_id}/dns_records/0123456789abcdef0123456789abcdef");
        let (status, answer) = raw(&cf, "GET", &path, Value::Null).await;
        assert_eq!((status, &answer["errors"][0]["code"]), (404, &json!(81044)));

        let delete = dns::DeleteDnsRecord {
            zone_identifier: &zone_id,
            identifier: &created.id,
        };
        assert_eq!(api.request(&delete).await.unwrap().result.id, created.id);
        assert!(api.request(&list).await.unwrap().result.is_empty());
        let deleted = format!("DELETE /zones/{zone_id}/dns_records/{}", created.id);
        assert_eq!(cf.requests().iter().filter(|r| **r == deleted).count(), 1);
    }

    #[tokio::test]
    async fn changes_behind_the_back_validation_and_injected_failures() {
        let cf = Cloudflare::start(TOKEN).await;
        let zone_id = cf.add_zone("example.com");
        let api = client(&cf, TOKEN);
        let id = cf.add_record(&zone_id, "@", "TXT", "v=spf1 -all");
        cf.set_content(&id, "v=spf1 mx -all");
        let list = dns::ListDnsRecords {
            zone_identifier: &zone_id,
            params: Default::default(),
        };
        let records = api.request(&list).await.unwrap().result;
        assert_eq!(records[0].name, "example.com");
        assert!(
            matches!(&records[0].content, dns::DnsContent::TXT { content } if content == "v=spf1 mx -all")
        );

        let mx = |ttl| dns::CreateDnsRecord {
            zone_identifier: &zone_id,
            params: dns::CreateDnsRecordParams {
                ttl: Some(ttl),
                priority: Some(10),
                proxied: None,
                name: "@",
                content: dns::DnsContent::MX {
                    content: "mail.example.com".into(),
                    priority: 10,
                },
            },
        };
        assert_eq!(failure(api.request(&mx(30)).await), (400, vec![9021]));
        cf.fail_writes(1);
        assert_eq!(failure(api.request(&mx(3600)).await), (500, vec![10001]));
        let created = api.request(&mx(3600)).await.unwrap().result;
        assert!(matches!(
            created.content,
            dns::DnsContent::MX { priority: 10, .. }
        ));
        assert_eq!(cf.records(&zone_id).len(), 2);

        let path = format!("zones/{zone_id}/dns_records/{id}");
        let (status, answer) = raw(&cf, "PATCH", &path, json!({"content": "v=spf1 -all"})).await;
        assert_eq!(
            (
                status,
                &answer["result"]["content"],
                &answer["result"]["ttl"]
            ),
            (200, &json!("v=spf1 -all"), &json!(1))
        );
        let (status, answer) = raw(
            &cf,
            "PUT",
            &path,
            json!({"type": "A", "name": "@", "content": "nope"}),
        )
        .await;
        assert_eq!((status, &answer["errors"][0]["code"]), (400, &json!(9005)));
    }
}
