//! Per-mode rules over a loaded [`Config`]: required fields, ranges, formats,
//! cross-field checks. Each mode checks only what it uses.

use std::time::Duration;

use super::duration::format_duration;
use super::error::{ConfigError, ConfigErrorKind};
use super::{Config, Mode, WanDnsSettings, WireguardSettings};

/// Consul's session TTL bounds.
const SESSION_TTL_MIN: Duration = Duration::from_secs(10);
const SESSION_TTL_MAX: Duration = Duration::from_secs(24 * 3600);
/// Linux limits interface names to 15 bytes (IFNAMSIZ - 1).
const IFNAME_MAX: usize = 15;

type Check = Result<(), ConfigError>;

pub(crate) fn validate(c: &Config, mode: Mode) -> Check {
    match mode {
        Mode::Agent => agent(c)?,
        Mode::Monitor => monitor(c)?,
    }
    if let Some(addr) = &c.metrics_address
        && !is_listen_address(addr)
    {
        return invalid(
            "metrics_address",
            format!("expected [host]:port such as \":9105\" or \"127.0.0.1:9105\", got {addr:?}"),
        );
    }
    if let Some(ep) = &c.tracing.endpoint
        && !is_http_url(ep)
        && !is_host_port(ep)
    {
        return invalid(
            "tracing.endpoint",
            format!("expected an http(s) URL or host:port such as \"localhost:4318\", got {ep:?}"),
        );
    }
    Ok(())
}

fn agent(c: &Config) -> Check {
    if c.timeout.is_zero() {
        return invalid("timeout", "must be greater than 0 (e.g. \"5m\")");
    }
    at_least("check_interval", c.check_interval, Duration::from_secs(1))?;
    at_least(
        "agent.poll_interval",
        c.agent.poll_interval,
        Duration::from_secs(1),
    )?;
    if c.agent.phase_timeout < c.agent.poll_interval {
        return invalid(
            "agent.phase_timeout",
            "must be at least agent.poll_interval (a phase needs time for one state read)",
        );
    }
    at_least(
        "agent.leader_ttl",
        c.agent.leader_ttl,
        Duration::from_secs(10),
    )?;
    if c.agent.leader_ttl > Duration::from_secs(24 * 3600) {
        return invalid(
            "agent.leader_ttl",
            "must be at most 24h (Consul's session TTL limit)",
        );
    }
    if c.agent.max_missing_percent > 100 {
        return invalid(
            "agent.max_missing_percent",
            format!(
                "{} is not a percentage (0 to 100; 0 = off)",
                c.agent.max_missing_percent
            ),
        );
    }
    if c.oci.config_path.as_os_str().is_empty() {
        return missing("oci.config_path");
    }
    if c.oci.profile.trim().is_empty() {
        return missing("oci.profile");
    }
    if let Some(ep) = &c.oci.endpoint
        && !is_http_url(ep)
    {
        return invalid(
            "oci.endpoint",
            format!(
                "expected an http(s) URL such as \"https://iaas.us-ashburn-1.oraclecloud.com\", got {ep:?}"
            ),
        );
    }
    if c.nodes.is_empty() {
        return Err(ConfigError::at(
            "nodes",
            ConfigErrorKind::Missing,
            "at least one node is required in agent mode",
        ));
    }
    for (i, n) in c.nodes.iter().enumerate() {
        let p = |f: &str| format!("nodes[{i}].{f}");
        if n.name.is_empty() {
            return missing(&p("name"));
        }
        if !is_node_name(&n.name) {
            return invalid(
                &p("name"),
                format!(
                    "{:?} is not usable as a Consul key segment: use 1 to 128 of A-Z a-z 0-9 . _ -",
                    n.name
                ),
            );
        }
        if n.instance_id.is_empty() {
            return missing(&p("instance_id"));
        }
        if !n.instance_id.starts_with("ocid1.instance.") {
            return invalid(
                &p("instance_id"),
                format!(
                    "expected an instance OCID starting with \"ocid1.instance.\", got {:?}",
                    n.instance_id
                ),
            );
        }
        if n.compartment_id.is_empty() {
            return missing(&p("compartment_id"));
        }
        if n.region.as_deref().is_some_and(|r| r.trim().is_empty()) {
            return invalid(
                &p("region"),
                "must not be empty (leave it out to use the region from the OCID)",
            );
        }
        for (j, earlier) in c.nodes[..i].iter().enumerate() {
            if earlier.name == n.name {
                return invalid(
                    &p("name"),
                    format!("duplicate node name {:?} (also nodes[{j}].name)", n.name),
                );
            }
            if earlier.instance_id == n.instance_id {
                return invalid(
                    &p("instance_id"),
                    format!("same instance as nodes[{j}] (each instance may be listed once)"),
                );
            }
        }
    }
    if let Some(w) = c.wan_dns.as_ref().filter(|w| w.enabled) {
        wan_dns(w)?;
    }
    Ok(())
}

fn wan_dns(w: &WanDnsSettings) -> Check {
    if w.hostname.trim().is_empty() {
        return missing("wan_dns.hostname");
    }
    let token_env = &w.cloudflare.api_token_env;
    if token_env.is_empty() {
        return missing("wan_dns.cloudflare.api_token_env");
    }
    if !is_env_name(token_env) {
        // Do not echo the value: people paste the token itself here.
        return invalid(
            "wan_dns.cloudflare.api_token_env",
            "expected the NAME of an environment variable holding the token (e.g. CLOUDFLARE_API_TOKEN), not the token",
        );
    }
    if w.cloudflare.zone_id.trim().is_empty() {
        return missing("wan_dns.cloudflare.zone_id");
    }
    if !is_http_url(&w.cloudflare.api_url) {
        return invalid(
            "wan_dns.cloudflare.api_url",
            format!("expected an http(s) URL, got {:?}", w.cloudflare.api_url),
        );
    }
    if w.detection_providers.is_empty() {
        return Err(ConfigError::at(
            "wan_dns.detection_providers",
            ConfigErrorKind::Missing,
            "at least one provider URL is required",
        ));
    }
    for (i, url) in w.detection_providers.iter().enumerate() {
        if !is_http_url(url) {
            return invalid(
                &format!("wan_dns.detection_providers[{i}]"),
                format!("expected an http(s) URL, got {url:?}"),
            );
        }
    }
    at_least(
        "wan_dns.poll_interval",
        w.poll_interval,
        Duration::from_secs(30),
    )?;
    at_least("wan_dns.cooldown", w.cooldown, Duration::from_secs(60))
}

fn monitor(c: &Config) -> Check {
    let m = &c.monitor;
    if m.session_ttl < SESSION_TTL_MIN || m.session_ttl > SESSION_TTL_MAX {
        return invalid(
            "monitor.session_ttl",
            format!(
                "must be between 10s and 24h (Consul's limits), got {}",
                format_duration(m.session_ttl)
            ),
        );
    }
    at_least(
        "monitor.renew_interval",
        m.renew_interval,
        Duration::from_secs(1),
    )?;
    if m.renew_interval > m.session_ttl / 2 {
        return invalid(
            "monitor.renew_interval",
            format!(
                "must be at most half of monitor.session_ttl ({}), got {}",
                format_duration(m.session_ttl / 2),
                format_duration(m.renew_interval)
            ),
        );
    }
    if let Some(w) = c.wireguard.as_ref().filter(|w| w.enabled) {
        wireguard(w)?;
    }
    Ok(())
}

fn wireguard(w: &WireguardSettings) -> Check {
    if w.interface.is_empty() {
        return missing("wireguard.interface");
    }
    if w.interface.len() > IFNAME_MAX
        || w.interface
            .contains(|c: char| c == '/' || c.is_whitespace())
    {
        return invalid(
            "wireguard.interface",
            format!(
                "{:?} is not an interface name (at most 15 characters, no '/' or spaces)",
                w.interface
            ),
        );
    }
    if w.peer_pubkey.is_empty() {
        return missing("wireguard.peer_pubkey");
    }
    if !is_wg_key(&w.peer_pubkey) {
        return invalid(
            "wireguard.peer_pubkey",
            "expected a WireGuard public key: base64 of 32 bytes (44 characters ending in '=')",
        );
    }
    if w.endpoint_hostname.trim().is_empty() {
        return missing("wireguard.endpoint_hostname");
    }
    if w.endpoint_port == 0 {
        return invalid("wireguard.endpoint_port", "must be between 1 and 65535");
    }
    at_least(
        "wireguard.resolve_interval",
        w.resolve_interval,
        Duration::from_secs(10),
    )?;
    at_least(
        "wireguard.stale_handshake_threshold",
        w.stale_handshake_threshold,
        Duration::from_secs(30),
    )
}

fn invalid(field: &str, problem: impl Into<String>) -> Check {
    Err(ConfigError::at(field, ConfigErrorKind::Invalid, problem))
}

fn missing(field: &str) -> Check {
    Err(ConfigError::at(field, ConfigErrorKind::Missing, "missing"))
}

fn at_least(field: &str, value: Duration, min: Duration) -> Check {
    if value < min {
        return invalid(
            field,
            format!(
                "must be at least {}, got {}",
                format_duration(min),
                format_duration(value)
            ),
        );
    }
    Ok(())
}

/// Usable as one segment of `oracle-watchdog/nodes/{node}`.
pub(crate) fn is_node_name(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn is_env_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Canonical base64 of exactly 32 bytes: 43 alphabet characters, the last one
/// carrying no stray bits, then one `=`.
fn is_wg_key(s: &str) -> bool {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    if b.len() != 44 || b[43] != b'=' {
        return false;
    }
    let Some(last) = ALPHABET.iter().position(|&c| c == b[42]) else {
        return false;
    };
    b[..43].iter().all(|c| ALPHABET.contains(c)) && last & 0b11 == 0
}

/// `http://` or `https://` (any case) followed by a non-empty authority with a
/// numeric port if one is given, and no whitespace anywhere.
fn is_http_url(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    let Some(rest) = lower
        .strip_prefix("http://")
        .or_else(|| lower.strip_prefix("https://"))
    else {
        return false;
    };
    if s.contains(char::is_whitespace) {
        return false;
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit('@').next().unwrap_or("");
    if let Some(v6) = host_port.strip_prefix('[') {
        return match v6.split_once(']') {
            Some((host, "")) => !host.is_empty(),
            Some((host, port)) => {
                !host.is_empty() && port.strip_prefix(':').is_some_and(|p| valid_port(p, false))
            }
            None => false,
        };
    }
    if host_port.contains(':') {
        is_host_port(host_port)
    } else {
        !host_port.is_empty()
    }
}

/// `host:port` or `[v6]:port` with a non-empty host and a port 1..=65535.
fn is_host_port(s: &str) -> bool {
    match s.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty()
                && !host.contains(char::is_whitespace)
                && !host.contains('/')
                && valid_port(port, false)
        }
        None => false,
    }
}

/// `[host]:port` for a listener: an empty host means all interfaces (`:9105`).
fn is_listen_address(s: &str) -> bool {
    match s.rsplit_once(':') {
        Some((host, port)) => {
            !host.contains(char::is_whitespace) && !host.contains('/') && valid_port(port, true)
        }
        None => false,
    }
}

fn valid_port(port: &str, allow_zero: bool) -> bool {
    !port.is_empty()
        && port.bytes().all(|b| b.is_ascii_digit())
        && port.parse::<u16>().is_ok_and(|p| allow_zero || p > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wireguard_keys_must_be_32_bytes_of_base64() {
        assert!(is_wg_key("xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="));
        assert!(is_wg_key("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="));
        assert!(!is_wg_key("xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg")); // no padding
        assert!(!is_wg_key("xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dh=")); // stray bits
        assert!(!is_wg_key("xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8D==")); // 31 bytes
        assert!(!is_wg_key("xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZq-8Dg=")); // url-safe alphabet
        assert!(!is_wg_key(""));
    }

    #[test]
    fn urls_and_addresses() {
        for ok in [
            "https://api.ipify.org",
            "http://127.0.0.1:8080/x?y",
            "HTTPS://Host",
            "https://[::1]:4318",
            "https://u@h:1/",
        ] {
            assert!(is_http_url(ok), "{ok}");
        }
        for bad in [
            "api.ipify.org",
            "ftp://h",
            "https://",
            "https:///path",
            "https://h:port",
            "https://h:0",
            "https://h /",
            "https://:80",
        ] {
            assert!(!is_http_url(bad), "{bad}");
        }
        assert!(is_host_port("localhost:4318"));
        assert!(is_host_port("[::1]:4318"));
        assert!(!is_host_port(":4318"));
        assert!(!is_host_port("localhost"));
        assert!(is_listen_address(":9105"));
        assert!(is_listen_address("127.0.0.1:9105"));
        assert!(is_listen_address("[::]:9105"));
        assert!(!is_listen_address("9105"));
        assert!(!is_listen_address(":99999"));
        assert!(!is_listen_address(":"));
    }

    #[test]
    fn node_names_fit_consul_keys() {
        assert!(is_node_name("oracle-arm-1"));
        assert!(is_node_name("node_2.example"));
        assert!(is_node_name(&"a".repeat(128)));
        assert!(!is_node_name(&"a".repeat(129)));
        assert!(!is_node_name("a/b"));
        assert!(!is_node_name("a b"));
        assert!(!is_node_name(""));
    }

    #[test]
    fn env_names() {
        assert!(is_env_name("CLOUDFLARE_API_TOKEN"));
        assert!(is_env_name("_x1"));
        assert!(!is_env_name("1X"));
        assert!(!is_env_name("abc-def"));
        assert!(!is_env_name(""));
    }
}
