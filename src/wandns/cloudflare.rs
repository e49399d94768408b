//! Cloudflare API v4 client for one zone's DNS A record: find, read, patch,
//! create. Typed errors carry the API's `errors[].code/message`.
//!
//! Every answer comes in the v4 envelope
//! `{"success":bool,"errors":[{"code","message"}],"messages":[],"result":...}`.
//! The bearer token is held as a [`Secret`]: it goes into the
//! `Authorization` header and nowhere else (not `Debug`, not errors).

use std::net::Ipv4Addr;
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::http::{self, Timeouts, TrustRoots};
use crate::secret::Secret;

/// Timeouts of every API call (connect 5 s, whole call 10 s).
pub const API_TIMEOUTS: Timeouts = Timeouts::new(Duration::from_secs(5), Duration::from_secs(10));

/// Most API error entries kept in an error (the rest are counted).
const MAX_API_ERRORS: usize = 5;
/// Longest API error message kept, in characters.
const MAX_MESSAGE_CHARS: usize = 200;

/// A DNS record as the API returns it (the fields the updater uses).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DnsRecord {
    /// Record id (used in the PATCH URL).
    pub id: String,
    /// Fully qualified name.
    #[serde(default)]
    pub name: String,
    /// `A`, `AAAA`, ...
    #[serde(rename = "type", default)]
    pub record_type: String,
    /// The address.
    #[serde(default)]
    pub content: String,
    /// TTL in seconds (1 = automatic); preserved by updates.
    #[serde(default)]
    pub ttl: Option<u64>,
    /// Whether traffic goes through Cloudflare's proxy; preserved by updates.
    #[serde(default)]
    pub proxied: Option<bool>,
}

/// One `errors[]` entry of the envelope.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ApiMessage {
    /// Cloudflare's numeric error code (e.g. 9109 invalid token, 81044 record not found).
    #[serde(default)]
    pub code: i64,
    /// Cloudflare's message.
    #[serde(default)]
    pub message: String,
}

/// The API's error entries, printed as `code N: message; ...`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ApiErrors(pub Vec<ApiMessage>);

impl std::fmt::Display for ApiErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            return f.write_str("no error details");
        }
        for (i, e) in self.0.iter().take(MAX_API_ERRORS).enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            // Cloudflare's text, kept to one line and a bounded length.
            let message: String = e
                .message
                .chars()
                .take(MAX_MESSAGE_CHARS)
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            write!(f, "code {}: {}", e.code, message)?;
        }
        if self.0.len() > MAX_API_ERRORS {
            write!(f, "; and {} more", self.0.len() - MAX_API_ERRORS)?;
        }
        Ok(())
    }
}

/// Why a Cloudflare call failed. [`CloudflareError::is_transient`] says
/// whether the same call may work later without anyone changing anything.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloudflareError {
    /// No answer within the timeout. Transient.
    Timeout,
    /// Connection refused, DNS or TLS failure. Transient.
    Unreachable(String),
    /// 401/403: the token is wrong, expired or lacks `DNS:Edit` on the zone.
    /// Permanent until the token is fixed.
    Unauthorized {
        /// HTTP status.
        status: u16,
        /// The API's explanation.
        errors: ApiErrors,
    },
    /// 404: the zone or record does not exist (a cached record id is stale).
    NotFound(ApiErrors),
    /// 429: rate limited. Transient.
    RateLimited {
        /// `Retry-After`, when given.
        retry_after: Option<Duration>,
    },
    /// 5xx. Transient.
    Server {
        /// HTTP status.
        status: u16,
        /// The API's explanation, if any.
        errors: ApiErrors,
    },
    /// Any other refusal, including `"success": false` with a 2xx status
    /// (e.g. an invalid record content). Permanent for this request.
    Rejected {
        /// HTTP status.
        status: u16,
        /// The API's explanation.
        errors: ApiErrors,
    },
    /// The answer is not the v4 envelope we expect. Transient (proxies).
    Malformed(String),
}

impl CloudflareError {
    /// True when retrying later, unchanged, may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            CloudflareError::Timeout
                | CloudflareError::Unreachable(_)
                | CloudflareError::RateLimited { .. }
                | CloudflareError::Server { .. }
                | CloudflareError::Malformed(_)
        )
    }
}

impl std::fmt::Display for CloudflareError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CloudflareError::Timeout => {
                write!(f, "no answer within {:?}", API_TIMEOUTS.total)
            }
            CloudflareError::Unreachable(e) => write!(f, "unreachable: {e}"),
            CloudflareError::Unauthorized { status, errors } => write!(
                f,
                "HTTP {status}, not authorised ({errors}); check the API token and that it has DNS:Edit on the zone"
            ),
            CloudflareError::NotFound(errors) => write!(f, "HTTP 404, not found ({errors})"),
            CloudflareError::RateLimited {
                retry_after: Some(d),
            } => write!(f, "HTTP 429, rate limited (retry after {}s)", d.as_secs()),
            CloudflareError::RateLimited { retry_after: None } => {
                f.write_str("HTTP 429, rate limited")
            }
            CloudflareError::Server { status, errors } => {
                write!(f, "HTTP {status}, server error ({errors})")
            }
            CloudflareError::Rejected { status, errors } => {
                write!(f, "HTTP {status}, request rejected ({errors})")
            }
            CloudflareError::Malformed(e) => write!(f, "unexpected answer: {e}"),
        }
    }
}

impl std::error::Error for CloudflareError {}

#[derive(Deserialize)]
struct Envelope<T> {
    #[serde(default)]
    success: bool,
    #[serde(default)]
    errors: Vec<ApiMessage>,
    result: Option<T>,
}

#[derive(Deserialize)]
struct ErrorsOnly {
    #[serde(default)]
    errors: Vec<ApiMessage>,
}

/// Client for the DNS records of one zone.
pub struct CloudflareClient {
    agent: ureq::Agent,
    base: String,
    zone: String,
    token: Secret,
}

impl std::fmt::Debug for CloudflareClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloudflareClient")
            .field("base", &self.base)
            .field("zone", &self.zone)
            .field("token", &self.token)
            .finish()
    }
}

impl CloudflareClient {
    /// A client for `zone` at `api_url` (e.g. `https://api.cloudflare.com/client/v4`).
    pub fn new(api_url: &str, zone: &str, token: Secret) -> Self {
        CloudflareClient {
            agent: http::agent(API_TIMEOUTS, &TrustRoots::Bundled),
            base: api_url.trim_end_matches('/').to_string(),
            zone: zone.to_string(),
            token,
        }
    }

    fn records_url(&self) -> String {
        format!("{}/zones/{}/dns_records", self.base, encode(&self.zone))
    }

    /// The A record named `name`, or `None` when there is none.
    pub fn find_a_record(&self, name: &str) -> Result<Option<DnsRecord>, CloudflareError> {
        let url = format!("{}?type=A&name={}", self.records_url(), encode(name));
        let records: Vec<DnsRecord> = self.call("GET", &url, None)?;
        Ok(records.into_iter().find(|r| r.record_type == "A"))
    }

    /// The record with this id (404 -> [`CloudflareError::NotFound`]).
    pub fn get_record(&self, id: &str) -> Result<DnsRecord, CloudflareError> {
        let url = format!("{}/{}", self.records_url(), encode(id));
        self.call("GET", &url, None)
    }

    /// Sets the record's content to `ip`. Only `content` is sent, so ttl,
    /// proxied, comment and tags stay as they are.
    pub fn set_content(&self, id: &str, ip: Ipv4Addr) -> Result<DnsRecord, CloudflareError> {
        let url = format!("{}/{}", self.records_url(), encode(id));
        let body = serde_json::json!({ "content": ip.to_string() });
        self.call("PATCH", &url, Some(body))
    }

    /// Creates an A record `name -> ip` with automatic TTL, not proxied.
    pub fn create_a_record(&self, name: &str, ip: Ipv4Addr) -> Result<DnsRecord, CloudflareError> {
        let body = serde_json::json!({
            "type": "A",
            "name": name,
            "content": ip.to_string(),
            "ttl": 1,
            "proxied": false,
        });
        self.call("POST", &self.records_url(), Some(body))
    }

    fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        url: &str,
        body: Option<serde_json::Value>,
    ) -> Result<T, CloudflareError> {
        let auth = format!("Bearer {}", self.token.expose());
        let sent = match (method, body) {
            ("PATCH", Some(b)) => self
                .agent
                .patch(url)
                .header("Authorization", &auth)
                .header("Content-Type", "application/json")
                .send(b.to_string()),
            ("POST", Some(b)) => self
                .agent
                .post(url)
                .header("Authorization", &auth)
                .header("Content-Type", "application/json")
                .send(b.to_string()),
            _ => self.agent.get(url).header("Authorization", &auth).call(),
        };
        let mut response = sent.map_err(|e| {
            if http::is_timeout(&e) {
                CloudflareError::Timeout
            } else {
                CloudflareError::Unreachable(e.to_string())
            }
        })?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = http::read_body(&mut response).map_err(|e| {
            if http::is_timeout(&e) {
                CloudflareError::Timeout
            } else {
                CloudflareError::Malformed(format!("cannot read the body: {e}"))
            }
        })?;
        classify(status, retry_after, &text)
    }
}

/// Turns a status and body into the result or a typed error.
fn classify<T: DeserializeOwned>(
    status: u16,
    retry_after: Option<Duration>,
    text: &str,
) -> Result<T, CloudflareError> {
    let errors = || {
        ApiErrors(
            serde_json::from_str::<ErrorsOnly>(text)
                .map(|e| e.errors)
                .unwrap_or_default(),
        )
    };
    match status {
        200..=299 => {}
        401 | 403 => {
            return Err(CloudflareError::Unauthorized {
                status,
                errors: errors(),
            });
        }
        404 => return Err(CloudflareError::NotFound(errors())),
        429 => return Err(CloudflareError::RateLimited { retry_after }),
        500..=599 => {
            return Err(CloudflareError::Server {
                status,
                errors: errors(),
            });
        }
        _ => {
            return Err(CloudflareError::Rejected {
                status,
                errors: errors(),
            });
        }
    }
    let envelope: Envelope<T> = serde_json::from_str(text).map_err(|e| {
        CloudflareError::Malformed(format!("HTTP {status} body is not the v4 envelope: {e}"))
    })?;
    if !envelope.success {
        return Err(CloudflareError::Rejected {
            status,
            errors: ApiErrors(envelope.errors),
        });
    }
    envelope
        .result
        .ok_or_else(|| CloudflareError::Malformed("success without a result".into()))
}

/// Decodes a one-record answer (get, patch, create) the way
/// [`CloudflareClient`] does. Public so fuzz targets and property tests
/// reach the client's own decoder.
pub fn decode_record(
    status: u16,
    retry_after: Option<Duration>,
    body: &str,
) -> Result<DnsRecord, CloudflareError> {
    classify(status, retry_after, body)
}

/// Decodes a record-listing answer (the lookup by name) the way
/// [`CloudflareClient`] does; public for the same reason as [`decode_record`].
pub fn decode_record_list(
    status: u16,
    retry_after: Option<Duration>,
    body: &str,
) -> Result<Vec<DnsRecord>, CloudflareError> {
    classify(status, retry_after, body)
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use watchdog_standins::cloudflare::{CfFault, CloudflareStandin};

    const TOKEN: &str = "cf-test-token-4f9a2b";
    const ZONE: &str = "023e105f4ecef8ad9ca31a8372d0c353";

    fn client(cf: &CloudflareStandin, token: &str) -> CloudflareClient {
        CloudflareClient::new(&cf.api_url(), ZONE, Secret::new(token))
    }

    fn standin() -> CloudflareStandin {
        let cf = CloudflareStandin::start(TOKEN).unwrap();
        cf.add_zone(ZONE);
        cf
    }

    #[test]
    fn finds_reads_patches_and_preserves_ttl_and_proxied() {
        let cf = standin();
        let id = cf.add_record(ZONE, "A", "home.example.com", "198.51.100.1", 300, true);
        cf.add_record(ZONE, "AAAA", "home.example.com", "2001:db8::1", 300, true);
        let c = client(&cf, TOKEN);
        let r = c.find_a_record("home.example.com").unwrap().unwrap();
        assert_eq!(
            (r.id.as_str(), r.content.as_str()),
            (id.as_str(), "198.51.100.1")
        );
        assert_eq!(c.find_a_record("other.example.com").unwrap(), None);
        let patched = c.set_content(&id, Ipv4Addr::new(203, 0, 113, 5)).unwrap();
        assert_eq!(patched.content, "203.0.113.5");
        let now = c.get_record(&id).unwrap();
        assert_eq!((now.ttl, now.proxied), (Some(300), Some(true)));
        assert_eq!(now.content, "203.0.113.5");
    }

    #[test]
    fn creates_a_record() {
        let cf = standin();
        let c = client(&cf, TOKEN);
        let r = c
            .create_a_record("new.example.com", Ipv4Addr::new(203, 0, 113, 6))
            .unwrap();
        let found = c.find_a_record("new.example.com").unwrap().unwrap();
        assert_eq!(found.id, r.id);
        assert_eq!(found.content, "203.0.113.6");
    }

    #[test]
    fn errors_are_typed_and_carry_api_codes_but_never_the_token() {
        let cf = standin();
        let id = cf.add_record(ZONE, "A", "home.example.com", "198.51.100.1", 1, false);
        let wrong = client(&cf, "not-the-token");
        let e = wrong.find_a_record("home.example.com").unwrap_err();
        assert!(matches!(e, CloudflareError::Unauthorized { .. }), "{e:?}");
        assert!(!e.is_transient());
        assert!(e.to_string().contains("code "), "{e}");

        let c = client(&cf, TOKEN);
        let e = c.get_record("0000ffff").unwrap_err();
        assert!(matches!(e, CloudflareError::NotFound(_)), "{e:?}");

        cf.fail_next(1, CfFault::RateLimited { retry_after: 7 });
        let e = c.get_record(&id).unwrap_err();
        assert_eq!(
            e,
            CloudflareError::RateLimited {
                retry_after: Some(Duration::from_secs(7))
            }
        );
        assert!(e.is_transient());

        cf.fail_next(1, CfFault::Status(502));
        let e = c.get_record(&id).unwrap_err();
        assert!(
            matches!(e, CloudflareError::Server { status: 502, .. }),
            "{e:?}"
        );
        assert!(e.is_transient());

        cf.fail_next(
            1,
            CfFault::Unsuccessful {
                code: 9005,
                message: "Content for A record is invalid".into(),
            },
        );
        let e = c
            .set_content(&id, Ipv4Addr::new(203, 0, 113, 7))
            .unwrap_err();
        assert!(
            matches!(e, CloudflareError::Rejected { status: 200, .. }),
            "{e:?}"
        );
        assert!(
            e.to_string()
                .contains("code 9005: Content for A record is invalid"),
            "{e}"
        );
        assert_eq!(c.get_record(&id).unwrap().content, "198.51.100.1");

        let debug = format!("{c:?}");
        assert!(!debug.contains(TOKEN), "{debug}");
    }

    #[test]
    fn unreachable_and_malformed() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = CloudflareClient::new(
            &format!("http://127.0.0.1:{port}"),
            ZONE,
            Secret::new(TOKEN),
        );
        let e = c.get_record("x").unwrap_err();
        assert!(matches!(e, CloudflareError::Unreachable(_)), "{e:?}");
        assert!(!e.to_string().contains(TOKEN));
        let r: Result<DnsRecord, _> = classify(200, None, "<html>proxy</html>");
        assert!(matches!(r, Err(CloudflareError::Malformed(_))));
        let r: Result<DnsRecord, _> = classify(
            400,
            None,
            "{\"success\":false,\"errors\":[{\"code\":1004,\"message\":\"DNS Validation Error\"}]}",
        );
        assert_eq!(
            r.unwrap_err().to_string(),
            "HTTP 400, request rejected (code 1004: DNS Validation Error)"
        );
    }

    #[test]
    fn encodes_query_values() {
        assert_eq!(encode("home.example.com"), "home.example.com");
        assert_eq!(encode("a b&c=d"), "a%20b%26c%3Dd");
    }
}
