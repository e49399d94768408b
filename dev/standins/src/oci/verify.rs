//! Checks an OCI request signature the way OCI's front door does, and says why one fails.
//!
//! Independent of the client's signer: it parses the `authorization` header,
//! rebuilds the signing string from the headers the client claims to have
//! signed, insists on the set OCI requires for the method, and verifies the
//! RSA PKCS#1 v1.5 SHA-256 signature with the registered public key.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use rsa::pkcs1::DecodeRsaPublicKey as _;
use rsa::pkcs8::{DecodePrivateKey as _, DecodePublicKey as _};
use rsa::{Pkcs1v15Sign, RsaPrivateKey, RsaPublicKey};
use sha2::{Digest as _, Sha256};

/// Headers OCI requires to be signed on every request.
const REQUIRED_ALWAYS: &[&str] = &["date", "(request-target)", "host"];
/// Additionally required on requests with a body.
const REQUIRED_BODY: &[&str] = &["content-length", "content-type", "x-content-sha256"];

/// The parts of a request that the signature covers.
pub struct SignedParts<'a> {
    /// HTTP method as received.
    pub method: &'a str,
    /// Request target as received (path and query, undecoded).
    pub target: &'a str,
    /// Looks up a header (case-insensitive name) as received.
    pub header: &'a dyn Fn(&str) -> Option<String>,
    /// The body as received.
    pub body: &'a [u8],
}

/// Parses a public key PEM (`PUBLIC KEY` or `RSA PUBLIC KEY`) or derives it
/// from an unencrypted private key PEM (PKCS#8 or PKCS#1).
pub fn parse_public_key(pem: &str) -> Result<RsaPublicKey, String> {
    let pem = pem.trim();
    if let Ok(k) = RsaPublicKey::from_public_key_pem(pem) {
        return Ok(k);
    }
    if let Ok(k) = RsaPublicKey::from_pkcs1_pem(pem) {
        return Ok(k);
    }
    // Private keys: take only the PEM block (console keys end with OCI_API_KEY).
    let normalized = pem.replace("\r\n", "\n");
    let block = pem_block(&normalized).unwrap_or(&normalized);
    if let Ok(k) = RsaPrivateKey::from_pkcs8_pem(block) {
        return Ok(k.to_public_key());
    }
    if let Ok(k) = rsa::pkcs1::DecodeRsaPrivateKey::from_pkcs1_pem(block) {
        let k: RsaPrivateKey = k;
        return Ok(k.to_public_key());
    }
    Err("not an RSA public key or unencrypted RSA private key in PEM form".into())
}

fn pem_block(text: &str) -> Option<&str> {
    let start = text.find("-----BEGIN ")?;
    let end_marker = text[start..].find("-----END ")? + start;
    let end = text[end_marker + 9..].find("-----")? + end_marker + 9 + 5;
    Some(&text[start..end])
}

/// Verifies one request; `Err` carries the reason OCI-style clients see in
/// the 401 message.
pub fn verify(
    parts: &SignedParts<'_>,
    keys: &HashMap<String, RsaPublicKey>,
    now: SystemTime,
    max_skew: Duration,
) -> Result<String, String> {
    let auth = (parts.header)("authorization").ok_or("missing authorization header")?;
    let params = parse_authorization(&auth)?;
    let get = |name: &str| params.get(name).map(String::as_str);
    if get("version").is_some_and(|v| v != "1") {
        return Err(format!(
            "unsupported signature version {:?}",
            get("version")
        ));
    }
    if get("algorithm") != Some("rsa-sha256") {
        return Err("signature algorithm must be rsa-sha256".into());
    }
    let key_id = get("keyId").ok_or("authorization has no keyId")?;
    let signature = get("signature").ok_or("authorization has no signature")?;
    let signed: Vec<&str> = get("headers")
        .unwrap_or("date")
        .split(' ')
        .filter(|s| !s.is_empty())
        .collect();
    let method = parts.method.to_ascii_lowercase();
    let has_body = matches!(method.as_str(), "post" | "put" | "patch");
    let mut required: Vec<&str> = REQUIRED_ALWAYS.to_vec();
    if has_body {
        required.extend_from_slice(REQUIRED_BODY);
    }
    for r in &required {
        if !signed.iter().any(|s| s.eq_ignore_ascii_case(r)) {
            return Err(format!("required header `{r}` is not signed"));
        }
    }
    let date = (parts.header)("date").ok_or("missing date header")?;
    let when = httpdate::parse_http_date(&date)
        .map_err(|_| format!("date header {date:?} is not an HTTP date"))?;
    let skew = now.duration_since(when).unwrap_or_else(|e| e.duration());
    if skew > max_skew {
        return Err(format!(
            "date {date} is more than {} s from the server's clock",
            max_skew.as_secs()
        ));
    }
    if has_body {
        let digest = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(parts.body));
        let sent = (parts.header)("x-content-sha256").ok_or("missing x-content-sha256 header")?;
        if sent != digest {
            return Err("x-content-sha256 does not match the body".into());
        }
        let length = (parts.header)("content-length").ok_or("missing content-length header")?;
        if length.trim() != parts.body.len().to_string() {
            return Err(format!(
                "content-length {length} does not match the body ({} bytes)",
                parts.body.len()
            ));
        }
    }
    let key = keys
        .get(key_id)
        .ok_or_else(|| format!("unknown keyId {key_id}"))?;
    let mut lines = Vec::with_capacity(signed.len());
    for name in &signed {
        let name = name.to_ascii_lowercase();
        if name == "(request-target)" {
            lines.push(format!("(request-target): {method} {}", parts.target));
        } else {
            let value = (parts.header)(&name)
                .ok_or_else(|| format!("signed header `{name}` is missing"))?;
            lines.push(format!("{name}: {value}"));
        }
    }
    let signing_string = lines.join("\n");
    let raw = base64::engine::general_purpose::STANDARD
        .decode(signature)
        .map_err(|_| "signature is not base64".to_string())?;
    let digest = Sha256::digest(signing_string.as_bytes());
    key.verify(Pkcs1v15Sign::new::<Sha256>(), &digest, &raw)
        .map_err(|_| "signature does not verify".to_string())?;
    Ok(key_id.to_string())
}

/// Parses `Signature k="v",k="v",...` into a map.
fn parse_authorization(value: &str) -> Result<HashMap<String, String>, String> {
    let rest = value
        .trim()
        .strip_prefix("Signature ")
        .ok_or("authorization is not a `Signature` header")?;
    let mut map = HashMap::new();
    let mut s = rest.trim();
    while !s.is_empty() {
        let eq = s.find('=').ok_or("malformed authorization parameters")?;
        let name = s[..eq].trim().to_string();
        let after = s[eq + 1..].trim_start();
        let after = after
            .strip_prefix('"')
            .ok_or("authorization parameter values must be quoted")?;
        let close = after
            .find('"')
            .ok_or("unterminated authorization parameter")?;
        map.insert(name, after[..close].to_string());
        s = after[close + 1..].trim_start();
        s = s.strip_prefix(',').unwrap_or(s).trim_start();
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization_parameters_parse_in_any_order() {
        let m = parse_authorization(r#"Signature version="1",keyId="a/b/c",algorithm="rsa-sha256",headers="date host",signature="x==""#)
            .expect("parses");
        assert_eq!(m["keyId"], "a/b/c");
        assert_eq!(m["headers"], "date host");
        assert_eq!(m["signature"], "x==");
        assert!(parse_authorization("Basic abc").is_err());
        assert!(parse_authorization(r#"Signature keyId=unquoted"#).is_err());
    }
}
