//! Turns the YAML tree into a typed [`Config`]: known keys per section, types,
//! defaults for what is absent. Mode rules live in `validate.rs`.

use super::error::{ConfigError, ConfigErrorKind};
use super::suggest::suggest;
use super::yaml::{Node, Table, list_string, wrong_type};
use super::{
    AgentSettings, CloudflareSettings, Config, MonitorSettings, NodeConfig, OciSettings,
    TracingSettings, WanDnsSettings, WireguardBackend, WireguardSettings,
};

const TOP_KEYS: &[&str] = &[
    "timeout",
    "check_interval",
    "consul_address",
    "max_restart_attempts",
    "metrics_address",
    "monitor",
    "agent",
    "oci",
    "nodes",
    "wireguard",
    "wan_dns",
    "tracing",
];
const MONITOR_KEYS: &[&str] = &["session_ttl", "renew_interval"];
const AGENT_KEYS: &[&str] = &[
    "poll_interval",
    "phase_timeout",
    "max_concurrent_restarts",
    "max_missing_percent",
    "leader_ttl",
    "shutdown_grace",
];
const OCI_KEYS: &[&str] = &["config_path", "profile", "endpoint"];
const NODE_KEYS: &[&str] = &["name", "instance_id", "compartment_id", "region"];
const WIREGUARD_KEYS: &[&str] = &[
    "enabled",
    "interface",
    "peer_pubkey",
    "endpoint_hostname",
    "endpoint_port",
    "resolve_interval",
    "stale_handshake_threshold",
    "backend",
];
const WAN_DNS_KEYS: &[&str] = &[
    "enabled",
    "hostname",
    "cloudflare",
    "detection_providers",
    "poll_interval",
    "cooldown",
];
const CLOUDFLARE_KEYS: &[&str] = &["api_token_env", "zone_id", "api_url", "create_if_missing"];
const TRACING_KEYS: &[&str] = &["enabled", "endpoint"];

/// Builds a [`Config`] from a parsed document (`null` = empty file = defaults).
pub(crate) fn config(root: &Node) -> Result<Config, ConfigError> {
    let mut c = Config::defaults();
    let Some(top) = Table::open(root, "", TOP_KEYS).map_err(misplaced)? else {
        return Ok(c);
    };
    set(&mut c.timeout, top.duration("timeout")?);
    set(&mut c.check_interval, top.duration("check_interval")?);
    c.consul_address = top.string("consul_address")?;
    set(
        &mut c.max_restart_attempts,
        top.uint("max_restart_attempts", u32::MAX)?,
    );
    c.metrics_address = top.string("metrics_address")?;
    if let Some(t) = top.table("monitor", MONITOR_KEYS)? {
        c.monitor = monitor(&t)?;
    }
    if let Some(t) = top.table("agent", AGENT_KEYS)? {
        c.agent = agent(&t)?;
    }
    if let Some(t) = top.table("oci", OCI_KEYS)? {
        c.oci = oci(&t)?;
    }
    if let Some(items) = top.list("nodes")? {
        c.nodes = items
            .iter()
            .map(|(path, node)| node_config(path, node))
            .collect::<Result<_, _>>()?;
    }
    if let Some(t) = top.table("wireguard", WIREGUARD_KEYS)? {
        c.wireguard = Some(wireguard(&t)?);
    }
    if let Some(t) = top.table("wan_dns", WAN_DNS_KEYS)? {
        c.wan_dns = Some(wan_dns(&t)?);
    }
    if let Some(t) = top.table("tracing", TRACING_KEYS)? {
        c.tracing = TracingSettings {
            enabled: t.boolean("enabled")?.unwrap_or(false),
            endpoint: t.string("endpoint")?,
        };
    }
    Ok(c)
}

/// Where each nested key lives, for top-level keys written one level too high.
const NESTED: &[(&str, &[&str])] = &[
    ("monitor", MONITOR_KEYS),
    ("agent", AGENT_KEYS),
    ("oci", OCI_KEYS),
    ("nodes[]", NODE_KEYS),
    ("wireguard", WIREGUARD_KEYS),
    ("wan_dns", WAN_DNS_KEYS),
    ("wan_dns.cloudflare", CLOUDFLARE_KEYS),
    ("tracing", TRACING_KEYS),
];

/// Turns "unknown key" at the top level into "belongs under `monitor:`" when
/// the key is a nested one (`session_ttl` written without its block).
fn misplaced(e: ConfigError) -> ConfigError {
    let Some(key) = e
        .field()
        .filter(|f| *e.kind() == ConfigErrorKind::UnknownKey && !f.contains('.'))
    else {
        return e;
    };
    if suggest(key, TOP_KEYS).is_some() {
        return e;
    }
    let homes: Vec<String> = NESTED
        .iter()
        .filter(|(_, keys)| keys.contains(&key))
        .map(|(section, _)| format!("`{section}`"))
        .collect();
    if homes.is_empty() {
        return e;
    }
    let problem = format!(
        "unknown key at the top level (it belongs in {})",
        homes.join(" or ")
    );
    ConfigError::at(key, ConfigErrorKind::UnknownKey, problem)
}

/// Overwrites a default only when the file gave a value.
fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

fn monitor(t: &Table) -> Result<MonitorSettings, ConfigError> {
    let mut m = MonitorSettings::default();
    set(&mut m.session_ttl, t.duration("session_ttl")?);
    set(&mut m.renew_interval, t.duration("renew_interval")?);
    Ok(m)
}

fn agent(t: &Table) -> Result<AgentSettings, ConfigError> {
    let mut a = AgentSettings::default();
    set(&mut a.poll_interval, t.duration("poll_interval")?);
    set(&mut a.phase_timeout, t.duration("phase_timeout")?);
    set(
        &mut a.max_concurrent_restarts,
        t.uint("max_concurrent_restarts", u32::MAX)?,
    );
    set(
        &mut a.max_missing_percent,
        t.uint("max_missing_percent", 100)?,
    );
    set(&mut a.leader_ttl, t.duration("leader_ttl")?);
    set(&mut a.shutdown_grace, t.duration("shutdown_grace")?);
    Ok(a)
}

fn oci(t: &Table) -> Result<OciSettings, ConfigError> {
    let mut o = OciSettings::default();
    set(&mut o.config_path, t.string("config_path")?.map(Into::into));
    set(&mut o.profile, t.string("profile")?);
    o.endpoint = t.string("endpoint")?;
    Ok(o)
}

fn node_config(path: &str, node: &Node) -> Result<NodeConfig, ConfigError> {
    let Some(t) = Table::open(node, path, NODE_KEYS)? else {
        return Err(ConfigError::at(
            path,
            ConfigErrorKind::Missing,
            "empty list item (expected name, instance_id, compartment_id)",
        ));
    };
    Ok(NodeConfig {
        name: t.string("name")?.unwrap_or_default(),
        instance_id: t.string("instance_id")?.unwrap_or_default(),
        compartment_id: t.string("compartment_id")?.unwrap_or_default(),
        region: t.string("region")?,
    })
}

fn wireguard(t: &Table) -> Result<WireguardSettings, ConfigError> {
    let mut w = WireguardSettings::default();
    set(&mut w.enabled, t.boolean("enabled")?);
    set(&mut w.interface, t.string("interface")?);
    set(&mut w.peer_pubkey, t.string("peer_pubkey")?);
    set(&mut w.endpoint_hostname, t.string("endpoint_hostname")?);
    set(&mut w.endpoint_port, t.uint("endpoint_port", u16::MAX)?);
    set(&mut w.resolve_interval, t.duration("resolve_interval")?);
    set(
        &mut w.stale_handshake_threshold,
        t.duration("stale_handshake_threshold")?,
    );
    if let Some(node) = t.get("backend") {
        w.backend = match node {
            Node::Str(s) if s == "kernel" => WireguardBackend::Kernel,
            Node::Str(s) if s == "userspace" => WireguardBackend::Userspace,
            Node::Str(s) if s == "auto" => WireguardBackend::Auto,
            other => {
                return Err(wrong_type(
                    &t.path_of("backend"),
                    "one of kernel, userspace, auto",
                    other,
                ));
            }
        };
    }
    Ok(w)
}

fn wan_dns(t: &Table) -> Result<WanDnsSettings, ConfigError> {
    let mut w = WanDnsSettings::default();
    set(&mut w.enabled, t.boolean("enabled")?);
    set(&mut w.hostname, t.string("hostname")?);
    if let Some(cf) = t.table("cloudflare", CLOUDFLARE_KEYS)? {
        let c: &mut CloudflareSettings = &mut w.cloudflare;
        set(&mut c.api_token_env, cf.string("api_token_env")?);
        set(&mut c.zone_id, cf.string("zone_id")?);
        set(&mut c.api_url, cf.string("api_url")?);
        set(&mut c.create_if_missing, cf.boolean("create_if_missing")?);
    }
    if let Some(items) = t.list("detection_providers")? {
        w.detection_providers = items
            .iter()
            .map(|(p, n)| list_string(p, n))
            .collect::<Result<_, _>>()?;
    }
    set(&mut w.poll_interval, t.duration("poll_interval")?);
    set(&mut w.cooldown, t.duration("cooldown")?);
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::yaml::parse;
    use std::time::Duration;

    fn load(text: &str) -> Result<Config, ConfigError> {
        config(&parse(text)?)
    }

    fn err(text: &str) -> (String, String) {
        let e = load(text).expect_err(text);
        (e.field().unwrap_or("").to_string(), e.problem().to_string())
    }

    #[test]
    fn empty_document_is_all_defaults() {
        assert_eq!(load("").unwrap(), Config::defaults());
        assert_eq!(load("# only a comment\n").unwrap(), Config::defaults());
        assert_eq!(load("{}").unwrap(), Config::defaults());
    }

    #[test]
    fn null_blocks_and_values_mean_absent() {
        let c = load("wireguard:\nwan_dns: ~\ntimeout:\nmonitor: null\n").unwrap();
        assert_eq!(c, Config::defaults());
    }

    #[test]
    fn present_blocks_get_their_defaults() {
        let c = load("wireguard:\n  enabled: true\nwan_dns:\n  hostname: h.example.com\n").unwrap();
        let w = c.wireguard.unwrap();
        assert!(w.enabled);
        assert_eq!((w.interface.as_str(), w.endpoint_port), ("wg0", 51820));
        assert_eq!(w.resolve_interval, Duration::from_secs(60));
        let d = c.wan_dns.unwrap();
        assert!(!d.enabled);
        assert_eq!(d.cloudflare.api_token_env, "CLOUDFLARE_API_TOKEN");
        assert_eq!(d.detection_providers.len(), 2);
        assert_eq!(d.cooldown, Duration::from_secs(900));
    }

    #[test]
    fn every_key_is_read() {
        let c = load(
            "timeout: 2m\ncheck_interval: 5s\nconsul_address: c:8500\nmax_restart_attempts: 3\nmetrics_address: \"127.0.0.1:9999\"\n\
             monitor: {session_ttl: 20s, renew_interval: 5s}\n\
             oci: {config_path: /o, profile: P, endpoint: \"http://127.0.0.1:1\"}\n\
             nodes: [{name: n, instance_id: i, compartment_id: c, region: r}]\n\
             wireguard: {enabled: true, interface: wg1, peer_pubkey: k, endpoint_hostname: e, endpoint_port: 1, resolve_interval: 11s, stale_handshake_threshold: 31s, backend: userspace}\n\
             wan_dns: {enabled: true, hostname: h, cloudflare: {api_token_env: T, zone_id: z, api_url: \"http://127.0.0.1:2\", create_if_missing: true}, detection_providers: [\"http://127.0.0.1:3\"], poll_interval: 1m, cooldown: 2m}\n\
             tracing: {enabled: true, endpoint: \"127.0.0.1:4318\"}\n",
        )
        .unwrap();
        assert_eq!(c.timeout, Duration::from_secs(120));
        assert_eq!(c.check_interval, Duration::from_secs(5));
        assert_eq!(c.consul_address.as_deref(), Some("c:8500"));
        assert_eq!(c.max_restart_attempts, 3);
        assert_eq!(c.metrics_address.as_deref(), Some("127.0.0.1:9999"));
        assert_eq!(c.monitor.session_ttl, Duration::from_secs(20));
        assert_eq!(c.oci.endpoint.as_deref(), Some("http://127.0.0.1:1"));
        assert_eq!(c.nodes[0].region.as_deref(), Some("r"));
        let w = c.wireguard.unwrap();
        assert_eq!(
            (w.interface.as_str(), w.backend),
            ("wg1", WireguardBackend::Userspace)
        );
        let d = c.wan_dns.unwrap();
        assert!(d.cloudflare.create_if_missing);
        assert_eq!(
            d.detection_providers,
            vec!["http://127.0.0.1:3".to_string()]
        );
        assert_eq!(c.tracing.endpoint.as_deref(), Some("127.0.0.1:4318"));
    }

    #[test]
    fn wrong_types_say_what_was_expected() {
        assert_eq!(
            err("max_restart_attempts: three\n"),
            (
                "max_restart_attempts".into(),
                "expected a non-negative integer, got \"three\"".into()
            )
        );
        assert_eq!(
            err("max_restart_attempts: 5000000000\n"),
            (
                "max_restart_attempts".into(),
                "5000000000 is too large (at most 4294967295)".into()
            )
        );
        assert_eq!(
            err("nodes:\n  name: x\n"),
            ("nodes".into(), "expected a list, got a mapping".into())
        );
        assert_eq!(
            err("nodes:\n  - name: 12\n"),
            (
                "nodes[0].name".into(),
                "expected a string, got 12 (put it in quotes)".into()
            )
        );
        assert_eq!(
            err("oci: DEFAULT\n"),
            (
                "oci".into(),
                "expected a mapping of settings, got \"DEFAULT\"".into()
            )
        );
        assert_eq!(
            err("wireguard:\n  endpoint_port: 70000\n"),
            (
                "wireguard.endpoint_port".into(),
                "70000 is too large (at most 65535)".into()
            )
        );
        assert_eq!(
            err("wireguard:\n  backend: netlink\n"),
            (
                "wireguard.backend".into(),
                "expected one of kernel, userspace, auto, got \"netlink\"".into()
            )
        );
        assert_eq!(
            err("wan_dns:\n  detection_providers: [\"https://a\", [1]]\n"),
            (
                "wan_dns.detection_providers[1]".into(),
                "expected a string, got a list".into()
            )
        );
        assert_eq!(
            err("tracing:\n  enabled: yes\n"),
            (
                "tracing.enabled".into(),
                "expected true or false, got \"yes\"".into()
            )
        );
        assert_eq!(
            err("nodes:\n  -\n"),
            (
                "nodes[0]".into(),
                "empty list item (expected name, instance_id, compartment_id)".into()
            )
        );
    }

    #[test]
    fn durations_are_strict() {
        assert_eq!(
            err("check_interval: 30\n"),
            (
                "check_interval".into(),
                "invalid duration \"30\": missing unit (e.g. \"30s\")".into()
            )
        );
        assert_eq!(
            err("timeout: 5x\n"),
            (
                "timeout".into(),
                "invalid duration \"5x\": unknown unit \"x\" (use ns, us, ms, s, m, h)".into()
            )
        );
        assert_eq!(
            err("monitor:\n  session_ttl: [30s]\n"),
            (
                "monitor.session_ttl".into(),
                "expected a duration such as \"30s\", got a list".into()
            )
        );
        // Zero parses (Go accepts "0"); validation decides whether it is allowed.
        assert_eq!(
            load("check_interval: 0\n").unwrap().check_interval,
            Duration::ZERO
        );
    }

    #[test]
    fn unknown_keys_get_suggestions_at_every_level() {
        assert_eq!(
            err("chek_interval: 1s\n"),
            (
                "chek_interval".into(),
                "unknown key (did you mean `check_interval`?)".into()
            )
        );
        assert_eq!(
            err("wan_dns:\n  cloudflare:\n    zoneid: x\n"),
            (
                "wan_dns.cloudflare.zoneid".into(),
                "unknown key (did you mean `zone_id`?)".into()
            )
        );
        assert_eq!(
            err("nodes:\n  - name: a\n  - Instance-ID: b\n"),
            (
                "nodes[1].Instance-ID".into(),
                "unknown key (did you mean `instance_id`?)".into()
            )
        );
        assert_eq!(
            err("tracing:\n  sampler: x\n"),
            (
                "tracing.sampler".into(),
                "unknown key (known keys here: enabled, endpoint)".into()
            )
        );
    }

    #[test]
    fn nested_keys_at_the_top_level_say_where_they_belong() {
        assert_eq!(
            err("session_ttl: 30s\n"),
            (
                "session_ttl".into(),
                "unknown key at the top level (it belongs in `monitor`)".into()
            )
        );
        assert_eq!(
            err("zone_id: z\n"),
            (
                "zone_id".into(),
                "unknown key at the top level (it belongs in `wan_dns.cloudflare`)".into()
            )
        );
        assert_eq!(
            err("instance_id: i\n"),
            (
                "instance_id".into(),
                "unknown key at the top level (it belongs in `nodes[]`)".into()
            )
        );
        assert_eq!(
            err("enabled: true\n"),
            ("enabled".into(), "unknown key at the top level (it belongs in `wireguard` or `wan_dns` or `tracing`)".into())
        );
        // A close top-level key still wins.
        assert_eq!(
            err("node: []\n"),
            ("node".into(), "unknown key (did you mean `nodes`?)".into())
        );
    }

    #[test]
    fn structural_problems_are_errors() {
        assert_eq!(
            err("timeout: 1m\ntimeout: 2m\n"),
            (
                "timeout".into(),
                "duplicate key (it appears more than once)".into()
            )
        );
        assert_eq!(
            err("nodes:\n  - name: a\n    name: b\n"),
            (
                "nodes[0].name".into(),
                "duplicate key (it appears more than once)".into()
            )
        );
        assert_eq!(
            err("oci:\n  1: x\n"),
            (
                "oci".into(),
                "keys must be strings, found 1 as a key".into()
            )
        );
        assert_eq!(
            err("- a\n- b\n"),
            (
                "".into(),
                "expected a mapping of settings at the top level, got a list".into()
            )
        );
        assert_eq!(
            err("just text\n"),
            (
                "".into(),
                "expected a mapping of settings at the top level, got \"just text\"".into()
            )
        );
        assert_eq!(
            err("oci:\n  profile: !env PROFILE\n"),
            (
                "oci.profile".into(),
                "expected a string, got a value tagged !env".into()
            )
        );
    }
}

#[cfg(test)]
mod example_tests {
    use super::*;

    /// The shipped example must mention every key, so it cannot drift from the loader.
    #[test]
    fn example_file_mentions_every_key() {
        let text = include_str!("../../config.example.yaml");
        let sections: &[&[&str]] = &[
            TOP_KEYS,
            MONITOR_KEYS,
            OCI_KEYS,
            NODE_KEYS,
            WIREGUARD_KEYS,
            WAN_DNS_KEYS,
            CLOUDFLARE_KEYS,
            TRACING_KEYS,
        ];
        for key in sections.iter().flat_map(|s| s.iter()) {
            let written = format!("{key}:");
            assert!(
                text.lines()
                    .any(|l| l.trim_start_matches([' ', '#', '-']).starts_with(&written)),
                "config.example.yaml does not show `{key}`"
            );
        }
    }
}
