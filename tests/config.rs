//! Integration tests of the config loader: real files in a temp dir, both modes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use oracle_watchdog::config::{Config, ConfigError, ConfigErrorKind, Mode, WireguardBackend};

/// The "Agent Config" example from the seed README, verbatim.
const SPEC_AGENT_EXAMPLE: &str = r#"timeout: 5m                              # How long node must be missing before restart (default: 5m)
check_interval: 30s                      # How often to scan for missing sessions (default: 30s)
consul_address: "consul.service.consul:8500"  # Consul HTTP address (default: consul.service.consul:8500)
max_restart_attempts: 0                  # Max consecutive restarts before giving up, 0 = unlimited

oci:
  config_path: "/etc/oracle-watchdog/oci-config"  # OCI SDK config file path
  profile: "DEFAULT"                              # OCI config profile name

nodes:
  - name: "oraclenode1"                           # Must match monitor's node name
    instance_id: "ocid1.instance.oc1.iad.xxx"     # OCI instance OCID
    compartment_id: "ocid1.compartment.oc1..xxx"  # OCI compartment OCID
  - name: "oraclenode2"
    instance_id: "ocid1.instance.oc1.phx.xxx"
    compartment_id: "ocid1.compartment.oc1..xxx"
"#;

/// A valid agent config to start mutations from.
const AGENT_BASE: &str = "nodes:\n  - name: n1\n    instance_id: ocid1.instance.oc1.iad.a\n    compartment_id: ocid1.compartment.oc1..c\n";

/// A private directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "oracle-watchdog-config-{}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    fn write(&self, file: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.0.join(file);
        std::fs::write(&path, contents).expect("write temp file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn load_text(dir: &TempDir, text: &str) -> (PathBuf, Result<Config, ConfigError>) {
    let path = dir.write("config.yaml", text);
    let result = Config::load(&path, true);
    (path, result)
}

/// Loads `text` and validates it for `mode`, returning the one-line error.
fn error_line(dir: &TempDir, text: &str, mode: Mode) -> String {
    let (path, result) = load_text(dir, text);
    let err = match result {
        Ok(cfg) => cfg.validate(mode).expect_err("expected a validation error"),
        Err(e) => e,
    };
    let line = err.to_string();
    assert!(!line.contains('\n'), "error spans lines: {line:?}");
    let prefix = format!("config error: {}: ", path.display());
    line.strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{line:?} does not start with {prefix:?}"))
        .to_string()
}

#[test]
fn spec_agent_example_loads_unchanged_and_validates() {
    let dir = TempDir::new("spec");
    let (path, result) = load_text(&dir, SPEC_AGENT_EXAMPLE);
    let cfg = result.expect("spec example loads");
    cfg.validate(Mode::Agent)
        .expect("spec example is a valid agent config");
    cfg.validate(Mode::Monitor)
        .expect("spec example is a valid monitor config");
    assert_eq!(cfg.source.as_deref(), Some(path.as_path()));
    assert_eq!(cfg.timeout, Duration::from_secs(300));
    assert_eq!(cfg.check_interval, Duration::from_secs(30));
    assert_eq!(
        cfg.consul_address.as_deref(),
        Some("consul.service.consul:8500")
    );
    assert_eq!(cfg.max_restart_attempts, 0);
    assert_eq!(
        cfg.oci.config_path,
        Path::new("/etc/oracle-watchdog/oci-config")
    );
    assert_eq!(cfg.oci.profile, "DEFAULT");
    let names: Vec<_> = cfg.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["oraclenode1", "oraclenode2"]);
    assert_eq!(cfg.nodes[1].instance_id, "ocid1.instance.oc1.phx.xxx");
    assert_eq!(cfg.nodes[0].compartment_id, "ocid1.compartment.oc1..xxx");
    assert!(cfg.wireguard.is_none() && cfg.wan_dns.is_none());
}

#[test]
fn shipped_example_loads_and_validates_in_both_modes() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.yaml");
    let cfg = Config::load(&path, true).expect("config.example.yaml loads");
    cfg.validate(Mode::Agent).expect("valid for agent mode");
    cfg.validate(Mode::Monitor).expect("valid for monitor mode");
    // Optional features are shown but off.
    assert!(
        !cfg.wireguard
            .as_ref()
            .expect("wireguard block shown")
            .enabled
    );
    assert!(!cfg.wan_dns.as_ref().expect("wan_dns block shown").enabled);
    assert!(!cfg.tracing.enabled);
    // The values it shows are the defaults, so copying it changes nothing by surprise.
    let d = Config::defaults();
    assert_eq!(
        (cfg.timeout, cfg.check_interval, cfg.monitor.clone()),
        (d.timeout, d.check_interval, d.monitor.clone())
    );
    assert_eq!(cfg.oci, d.oci);
    assert_eq!(
        cfg.wan_dns.as_ref().map(|w| &w.detection_providers),
        Some(&oracle_watchdog::config::WanDnsSettings::default().detection_providers)
    );
    assert_eq!(
        cfg.wireguard.as_ref().map(|w| w.backend),
        Some(WireguardBackend::Kernel)
    );
}

#[test]
fn defaults_match_the_spec() {
    let d = Config::defaults();
    assert_eq!(d.source, None);
    assert_eq!(d.timeout, Duration::from_secs(300));
    assert_eq!(d.check_interval, Duration::from_secs(30));
    assert_eq!(d.max_restart_attempts, 0);
    assert_eq!(d.consul_address, None);
    assert_eq!(d.metrics_address_or_default(Mode::Monitor), ":9104");
    assert_eq!(d.metrics_address_or_default(Mode::Agent), ":9105");
    assert_eq!(d.monitor.session_ttl, Duration::from_secs(30));
    assert_eq!(d.monitor.renew_interval, Duration::from_secs(10));
    assert_eq!(
        d.oci.config_path,
        Path::new("/etc/oracle-watchdog/oci-config")
    );
    assert_eq!(d.oci.profile, "DEFAULT");
    assert!(
        d.nodes.is_empty() && d.wireguard.is_none() && d.wan_dns.is_none() && !d.tracing.enabled
    );
}

#[test]
fn monitor_runs_without_a_file_but_agent_needs_one() {
    let dir = TempDir::new("missing");
    let missing = dir.0.join("nope.yaml");
    let cfg = Config::load(&missing, false).expect("a missing optional file means defaults");
    assert_eq!(cfg, Config::defaults());
    assert_eq!(cfg.source, None);
    cfg.validate(Mode::Monitor)
        .expect("defaults are a valid monitor config");

    let err = Config::load(&missing, true).expect_err("a required file must exist");
    assert_eq!(
        err.kind(),
        &ConfigErrorKind::Read(std::io::ErrorKind::NotFound)
    );
    assert_eq!(
        err.to_string(),
        format!(
            "config error: {}: cannot read file: file does not exist",
            missing.display()
        )
    );
    assert!(!err.is_retryable());
}

#[test]
fn an_existing_broken_file_is_an_error_even_when_optional() {
    let dir = TempDir::new("broken");
    let path = dir.write("config.yaml", "timeout: [5m\n");
    let err = Config::load(&path, false).expect_err("broken YAML");
    let ConfigErrorKind::Syntax { line, column } = err.kind().clone() else {
        panic!("not a syntax error: {err:?}")
    };
    assert_eq!(line, Some(2), "{err}");
    assert!(column.is_some());
    assert_eq!(err.field(), None);
    let line_text = err.to_string();
    assert!(
        line_text.starts_with(&format!("config error: {}: invalid YAML: ", path.display())),
        "{line_text}"
    );
    assert!(line_text.contains("line 2"), "{line_text}");
    assert!(!line_text.contains('\n'));
}

#[test]
fn a_directory_is_not_readable_as_config() {
    let dir = TempDir::new("dir");
    let err = Config::load(&dir.0, false).expect_err("a directory is no config file");
    assert_eq!(
        err.kind(),
        &ConfigErrorKind::Read(std::io::ErrorKind::IsADirectory)
    );
    assert_eq!(
        err.to_string(),
        format!(
            "config error: {}: cannot read file: is a directory",
            dir.0.display()
        )
    );
}

#[test]
fn permission_denied_is_reported_plainly() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("perm");
    let path = dir.write("config.yaml", "timeout: 5m\n");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000)).expect("chmod");
    if std::fs::read(&path).is_ok() {
        println!(
            "skipped: this process can read mode-000 files (root or CAP_DAC_OVERRIDE); see a_directory_is_not_readable_as_config"
        );
        return;
    }
    let err = Config::load(&path, false).expect_err("unreadable");
    assert_eq!(
        err.to_string(),
        format!(
            "config error: {}: cannot read file: permission denied",
            path.display()
        )
    );
}

#[test]
fn oversized_and_binary_files_are_refused() {
    let dir = TempDir::new("big");
    let big = dir.write("big.yaml", format!("# {}\n", "x".repeat(2 * 1024 * 1024)));
    let err = Config::load(&big, true).expect_err("too large");
    assert_eq!(
        err.kind(),
        &ConfigErrorKind::Read(std::io::ErrorKind::FileTooLarge)
    );
    let bin = dir.write("bin.yaml", [0xff, 0xfe, 0x00, 0x41]);
    let err = Config::load(&bin, true).expect_err("not UTF-8");
    assert!(
        err.to_string()
            .ends_with("cannot read file: not UTF-8 text"),
        "{err}"
    );
}

#[test]
fn an_empty_file_is_all_defaults() {
    let dir = TempDir::new("empty");
    let (path, result) = load_text(&dir, "");
    let cfg = result.expect("empty file loads");
    assert_eq!(cfg.source.as_deref(), Some(path.as_path()));
    assert_eq!(
        Config {
            source: None,
            ..cfg
        },
        Config::defaults()
    );
}

#[test]
fn error_lines_name_file_field_and_problem() {
    let dir = TempDir::new("forms");
    let missing_id = "nodes:\n  - name: a\n    instance_id: ocid1.instance.oc1.iad.a\n    compartment_id: c\n  - name: b\n    compartment_id: c\n";
    assert_eq!(
        error_line(&dir, missing_id, Mode::Agent),
        "nodes[1].instance_id: missing"
    );
    assert_eq!(
        error_line(&dir, "chek_interval: 30s\n", Mode::Agent),
        "chek_interval: unknown key (did you mean `check_interval`?)"
    );
    assert_eq!(
        error_line(&dir, "timeout: 5x\n", Mode::Agent),
        r#"timeout: invalid duration "5x": unknown unit "x" (use ns, us, ms, s, m, h)"#
    );
    assert_eq!(
        error_line(&dir, "check_interval: 30\n", Mode::Monitor),
        r#"check_interval: invalid duration "30": missing unit (e.g. "30s")"#
    );
    assert_eq!(
        error_line(&dir, "max_restart_attempts: three\n", Mode::Agent),
        r#"max_restart_attempts: expected a non-negative integer, got "three""#
    );
    assert_eq!(
        error_line(
            &dir,
            "wan_dns:\n  cloudflare:\n    zoneid: abc\n",
            Mode::Agent
        ),
        "wan_dns.cloudflare.zoneid: unknown key (did you mean `zone_id`?)"
    );
    assert_eq!(
        error_line(&dir, "timeout: 1m\ntimeout: 2m\n", Mode::Agent),
        "timeout: duplicate key (it appears more than once)"
    );
    assert_eq!(
        error_line(&dir, "- timeout\n", Mode::Agent),
        "expected a mapping of settings at the top level, got a list"
    );
}

#[test]
fn agent_rules() {
    let dir = TempDir::new("agent");
    let with = |extra: &str| format!("{AGENT_BASE}{extra}");
    let cases: &[(String, &str)] = &[
        ("timeout: 5m\n".into(), "nodes: at least one node is required in agent mode"),
        (with("timeout: 0s\n"), "timeout: must be greater than 0 (e.g. \"5m\")"),
        (with("check_interval: 0\n"), "check_interval: must be at least 1s, got 0s"),
        (with("check_interval: 500ms\n"), "check_interval: must be at least 1s, got 500ms"),
        (with("oci:\n  profile: \"\"\n"), "oci.profile: missing"),
        (with("oci:\n  endpoint: iaas.example.com\n"), "oci.endpoint: expected an http(s) URL such as \"https://iaas.us-ashburn-1.oraclecloud.com\", got \"iaas.example.com\""),
        (with("metrics_address: \"9105\"\n"), "metrics_address: expected [host]:port such as \":9105\" or \"127.0.0.1:9105\", got \"9105\""),
        (
            "nodes:\n  - name: a\n    instance_id: ocid1.compartment.oc1..x\n    compartment_id: c\n".into(),
            "nodes[0].instance_id: expected an instance OCID starting with \"ocid1.instance.\", got \"ocid1.compartment.oc1..x\"",
        ),
        ("nodes:\n  - instance_id: ocid1.instance.x\n    compartment_id: c\n".into(), "nodes[0].name: missing"),
        ("nodes:\n  - name: n\n    instance_id: ocid1.instance.x\n".into(), "nodes[0].compartment_id: missing"),
        (
            "nodes:\n  - name: a/b\n    instance_id: ocid1.instance.x\n    compartment_id: c\n".into(),
            "nodes[0].name: \"a/b\" is not usable as a Consul key segment: use 1 to 128 of A-Z a-z 0-9 . _ -",
        ),
        (
            with("  - name: n1\n    instance_id: ocid1.instance.oc1.iad.b\n    compartment_id: c\n"),
            "nodes[1].name: duplicate node name \"n1\" (also nodes[0].name)",
        ),
        (
            with("  - name: n2\n    instance_id: ocid1.instance.oc1.iad.a\n    compartment_id: c\n"),
            "nodes[1].instance_id: same instance as nodes[0] (each instance may be listed once)",
        ),
        (
            "nodes:\n  - name: n\n    instance_id: ocid1.instance.x\n    compartment_id: c\n    region: \"\"\n".into(),
            "nodes[0].region: must not be empty (leave it out to use the region from the OCID)",
        ),
        (with("wan_dns:\n  enabled: true\n  cloudflare:\n    zone_id: z\n"), "wan_dns.hostname: missing"),
        (with("wan_dns:\n  enabled: true\n  hostname: h.example.com\n"), "wan_dns.cloudflare.zone_id: missing"),
        (
            with("wan_dns:\n  enabled: true\n  hostname: h\n  cloudflare:\n    zone_id: z\n    api_token_env: \"abc def-secret\"\n"),
            "wan_dns.cloudflare.api_token_env: expected the NAME of an environment variable holding the token (e.g. CLOUDFLARE_API_TOKEN), not the token",
        ),
        (
            with("wan_dns:\n  enabled: true\n  hostname: h\n  cloudflare:\n    zone_id: z\n  detection_providers: []\n"),
            "wan_dns.detection_providers: at least one provider URL is required",
        ),
        (
            with("wan_dns:\n  enabled: true\n  hostname: h\n  cloudflare:\n    zone_id: z\n  detection_providers: [\"https://ok\", \"api.ipify.org\"]\n"),
            "wan_dns.detection_providers[1]: expected an http(s) URL, got \"api.ipify.org\"",
        ),
        (
            with("wan_dns:\n  enabled: true\n  hostname: h\n  cloudflare:\n    zone_id: z\n  poll_interval: 10s\n"),
            "wan_dns.poll_interval: must be at least 30s, got 10s",
        ),
        (
            with("wan_dns:\n  enabled: true\n  hostname: h\n  cloudflare:\n    zone_id: z\n  cooldown: 59s\n"),
            "wan_dns.cooldown: must be at least 1m, got 59s",
        ),
        (with("tracing:\n  endpoint: \"not a url\"\n"), "tracing.endpoint: expected an http(s) URL or host:port such as \"localhost:4318\", got \"not a url\""),
    ];
    for (text, want) in cases {
        assert_eq!(
            error_line(&dir, text, Mode::Agent),
            *want,
            "config:\n{text}"
        );
    }
    // A token pasted where the env var name belongs is not echoed back.
    let leaked = error_line(
        &dir,
        &with(
            "wan_dns:\n  enabled: true\n  hostname: h\n  cloudflare:\n    zone_id: z\n    api_token_env: \"v1.0-abcdef0123456789secret\"\n",
        ),
        Mode::Agent,
    );
    assert!(!leaked.contains("secret"), "{leaked}");
}

#[test]
fn agent_accepts_good_optional_settings() {
    let dir = TempDir::new("agent-ok");
    let text = format!(
        "{AGENT_BASE}metrics_address: \":9105\"\noci:\n  endpoint: \"http://127.0.0.1:8080\"\n\
         wan_dns:\n  enabled: true\n  hostname: home.example.com\n  cloudflare:\n    zone_id: z\n    api_url: \"http://127.0.0.1:9\"\n\
         tracing:\n  enabled: true\n  endpoint: \"http://127.0.0.1:4318\"\n\
         wireguard:\n  enabled: true\n"
    );
    let (_, result) = load_text(&dir, &text);
    let cfg = result.expect("loads");
    // The wireguard block is incomplete, but that is monitor mode's business.
    cfg.validate(Mode::Agent).expect("valid agent config");
}

#[test]
fn monitor_rules() {
    let dir = TempDir::new("monitor");
    const KEY: &str = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";
    let wg = |extra: &str| {
        format!(
            "wireguard:\n  enabled: true\n  peer_pubkey: \"{KEY}\"\n  endpoint_hostname: wg.example.com\n{extra}"
        )
    };
    let cases: &[(String, &str)] = &[
        ("monitor:\n  session_ttl: 5s\n  renew_interval: 1s\n".into(), "monitor.session_ttl: must be between 10s and 24h (Consul's limits), got 5s"),
        ("monitor:\n  session_ttl: 25h\n".into(), "monitor.session_ttl: must be between 10s and 24h (Consul's limits), got 25h"),
        ("monitor:\n  renew_interval: 16s\n".into(), "monitor.renew_interval: must be at most half of monitor.session_ttl (15s), got 16s"),
        ("monitor:\n  renew_interval: 0s\n".into(), "monitor.renew_interval: must be at least 1s, got 0s"),
        ("wireguard:\n  enabled: true\n  endpoint_hostname: h\n".into(), "wireguard.peer_pubkey: missing"),
        (wg("  interface: \"\"\n"), "wireguard.interface: missing"),
        (wg("  interface: wireguard-tunnel0\n"), "wireguard.interface: \"wireguard-tunnel0\" is not an interface name (at most 15 characters, no '/' or spaces)"),
        (
            "wireguard:\n  enabled: true\n  peer_pubkey: \"not-a-key\"\n  endpoint_hostname: h\n".into(),
            "wireguard.peer_pubkey: expected a WireGuard public key: base64 of 32 bytes (44 characters ending in '=')",
        ),
        ("wireguard:\n  enabled: true\n  peer_pubkey: \"xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=\"\n".into(), "wireguard.endpoint_hostname: missing"),
        (wg("  endpoint_port: 0\n"), "wireguard.endpoint_port: must be between 1 and 65535"),
        (wg("  resolve_interval: 9s\n"), "wireguard.resolve_interval: must be at least 10s, got 9s"),
        (wg("  stale_handshake_threshold: 29s\n"), "wireguard.stale_handshake_threshold: must be at least 30s, got 29s"),
        ("tracing:\n  endpoint: \"localhost\"\n".into(), "tracing.endpoint: expected an http(s) URL or host:port such as \"localhost:4318\", got \"localhost\""),
        ("metrics_address: \"localhost\"\n".into(), "metrics_address: expected [host]:port such as \":9105\" or \"127.0.0.1:9105\", got \"localhost\""),
    ];
    for (text, want) in cases {
        assert_eq!(
            error_line(&dir, text, Mode::Monitor),
            *want,
            "config:\n{text}"
        );
    }
    let (_, ok) = load_text(
        &dir,
        &wg("  backend: userspace\nmonitor:\n  session_ttl: 10s\n  renew_interval: 5s\n"),
    );
    ok.expect("loads")
        .validate(Mode::Monitor)
        .expect("a complete wireguard block is valid");
}

#[test]
fn monitor_ignores_agent_only_settings() {
    let dir = TempDir::new("monitor-agent-keys");
    // Empty nodes, a bad instance id, a zero check interval and a broken
    // enabled wan_dns block are all agent business.
    let text = "check_interval: 0s\ntimeout: 0s\nnodes:\n  - name: x\n    instance_id: bad\n\
                wan_dns:\n  enabled: true\nwireguard:\n  enabled: false\n  peer_pubkey: junk\n";
    let (_, result) = load_text(&dir, text);
    let cfg = result.expect("loads");
    cfg.validate(Mode::Monitor)
        .expect("monitor does not check agent settings");
    assert!(cfg.validate(Mode::Agent).is_err());
}

#[test]
fn errors_expose_their_parts() {
    let dir = TempDir::new("parts");
    let (path, result) = load_text(&dir, "nodes:\n  - name: a\n    instanceid: x\n");
    let err = result.expect_err("typo");
    assert_eq!(err.file(), Some(path.as_path()));
    assert_eq!(err.field(), Some("nodes[0].instanceid"));
    assert_eq!(err.problem(), "unknown key (did you mean `instance_id`?)");
    assert_eq!(err.kind(), &ConfigErrorKind::UnknownKey);
    let as_std: &dyn std::error::Error = &err;
    assert_eq!(as_std.to_string(), err.to_string());
}

#[test]
fn mangled_files_give_errors_not_panics() {
    // Truncate the shipped example at every character and splice in hostile
    // fragments: every outcome must be Ok or a one-line error, never a panic.
    let text = include_str!("../config.example.yaml");
    let origin = Path::new("mangled.yaml");
    let fragments = [
        "",
        ": [",
        "\t",
        "*a",
        "&a x",
        "!!binary x",
        "0x",
        "- ",
        "{",
        "'",
        "\"\\u",
        "~",
        "5µs",
        "\u{0}",
    ];
    let mut errors = 0;
    for (i, _) in text.char_indices().step_by(23) {
        for frag in fragments {
            let candidate = format!(
                "{}{frag}{}",
                &text[..i],
                &text[i..].chars().skip(1).collect::<String>()
            );
            let outcomes = match Config::from_yaml_str(&candidate, origin) {
                Ok(c) => vec![c.validate(Mode::Agent), c.validate(Mode::Monitor)],
                Err(e) => vec![Err(e)],
            };
            for e in outcomes.into_iter().filter_map(Result::err) {
                errors += 1;
                assert!(!e.to_string().contains('\n'), "multi-line error: {e}");
            }
        }
    }
    assert!(
        errors > 0,
        "mutations never produced an error: the test is not exercising anything"
    );
}
