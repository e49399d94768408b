//! OCI HTTP request signing (draft-cavage-08 signatures as the OCI SDKs do it).
//!
//! A pure function of (method, URL, date, body, content type): the same inputs
//! give byte-identical output to the official Python SDK, which
//! `tests/oci_signer.rs` checks against committed fixtures and, when the SDK
//! is installed, live.

use std::fmt;

use base64::Engine as _;
use sha2::{Digest as _, Sha256};

use super::key::ApiKey;

/// Headers signed on every request, in signing order.
const GENERIC_HEADERS: &str = "date (request-target) host";
/// Headers signed on requests with a body (POST/PUT/PATCH), in signing order.
const BODY_HEADERS: &str =
    "date (request-target) host content-length content-type x-content-sha256";

/// Signs OCI API requests with one API key.
#[derive(Clone)]
pub struct RequestSigner {
    key_id: String,
    key: ApiKey,
}

impl fmt::Debug for RequestSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestSigner")
            .field("key_id", &self.key_id)
            .field("key", &self.key)
            .finish()
    }
}

/// What to put on the wire for one signed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRequest {
    /// Headers that were signed, lowercase names, in signing order
    /// (`date`, `host`, and for bodies `content-length`, `content-type`,
    /// `x-content-sha256`). Send them exactly as given.
    pub headers: Vec<(&'static str, String)>,
    /// The `authorization` header value.
    pub authorization: String,
}

impl SignedRequest {
    /// The value of one signed header, if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Why a request could not be signed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignError {
    /// The URL has no `scheme://host` part.
    InvalidUrl {
        /// The URL.
        url: String,
    },
    /// A method OCI signing does not define.
    UnsupportedMethod {
        /// The method.
        method: String,
    },
    /// The RSA operation failed (should not happen with a loaded key).
    Rsa {
        /// The library's explanation.
        detail: String,
    },
}

impl fmt::Display for SignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignError::InvalidUrl { url } => write!(f, "cannot sign request: invalid URL `{url}`"),
            SignError::UnsupportedMethod { method } => {
                write!(f, "cannot sign request: method {method}")
            }
            SignError::Rsa { detail } => {
                write!(f, "cannot sign request: RSA signing failed: {detail}")
            }
        }
    }
}

impl std::error::Error for SignError {}

impl RequestSigner {
    /// A signer for `key_id` = `{tenancy}/{user}/{fingerprint}`.
    pub fn new(key_id: String, key: ApiKey) -> Self {
        RequestSigner { key_id, key }
    }

    /// The `keyId` this signer puts in signatures.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Signs one request. `url` must be exactly what is sent (scheme, host
    /// with any port, path, query); `date` is the `date` header value
    /// (RFC 7231 IMF-fixdate). Body headers are signed for POST, PUT and
    /// PATCH, including for an empty body.
    pub fn sign(
        &self,
        method: &str,
        url: &str,
        date: &str,
        body: &[u8],
        content_type: &str,
    ) -> Result<SignedRequest, SignError> {
        let (host, path) = split_url(url).ok_or_else(|| SignError::InvalidUrl {
            url: url.to_string(),
        })?;
        let lower = method.to_ascii_lowercase();
        let with_body = match lower.as_str() {
            "get" | "head" | "delete" => false,
            "post" | "put" | "patch" => true,
            _ => {
                return Err(SignError::UnsupportedMethod {
                    method: method.to_string(),
                });
            }
        };
        let mut headers = vec![("date", date.to_string()), ("host", host.to_string())];
        let mut signing = format!("date: {date}\n(request-target): {lower} {path}\nhost: {host}");
        if with_body {
            let digest = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(body));
            let length = body.len().to_string();
            signing.push_str(&format!(
                "\ncontent-length: {length}\ncontent-type: {content_type}\nx-content-sha256: {digest}"
            ));
            headers.push(("content-length", length));
            headers.push(("content-type", content_type.to_string()));
            headers.push(("x-content-sha256", digest));
        }
        let signature = self
            .key
            .sign_sha256(signing.as_bytes())
            .map_err(|e| SignError::Rsa {
                detail: e.to_string(),
            })?;
        let authorization = format!(
            "Signature algorithm=\"rsa-sha256\",headers=\"{}\",keyId=\"{}\",signature=\"{}\",version=\"1\"",
            if with_body {
                BODY_HEADERS
            } else {
                GENERIC_HEADERS
            },
            self.key_id,
            base64::engine::general_purpose::STANDARD.encode(signature),
        );
        Ok(SignedRequest {
            headers,
            authorization,
        })
    }
}

/// Splits `scheme://authority/path?query#frag` into the authority (as the
/// `host` header, port included when present) and `/path?query` (the
/// request target). `None` without `scheme://` or with an empty host.
pub(crate) fn split_url(url: &str) -> Option<(&str, String)> {
    let (_, rest) = url.split_once("://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let host = &rest[..end];
    if host.is_empty() || host.contains('@') {
        return None;
    }
    let target = &rest[end..];
    let target = target.split('#').next().unwrap_or("");
    let path = if target.starts_with('/') {
        target.to_string()
    } else {
        format!("/{target}")
    };
    Some((host, path))
}

#[cfg(test)]
mod tests {
    use super::split_url;

    #[test]
    fn url_splitting_keeps_port_and_query() {
        assert_eq!(
            split_url("http://127.0.0.1:8443/20160918/instances/x?action=STOP"),
            Some((
                "127.0.0.1:8443",
                "/20160918/instances/x?action=STOP".to_string()
            ))
        );
        assert_eq!(split_url("https://h?x=1"), Some(("h", "/?x=1".to_string())));
        assert_eq!(split_url("https://h"), Some(("h", "/".to_string())));
        assert_eq!(split_url("https://h/p#frag"), Some(("h", "/p".to_string())));
        assert_eq!(split_url("no-scheme/path"), None);
        assert_eq!(split_url("https:///path"), None);
    }
}
