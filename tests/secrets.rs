//! Secret hygiene: the real binary run with SENTINEL secrets (Consul token
//! from the environment and from a token file, OCI key pass phrase,
//! Cloudflare API token), in working and failing situations, at debug log
//! level. No sentinel may show up in logs, `/metrics`, exported trace spans,
//! `--help`, `check` or `status` output, error output, or the `Debug` of the
//! structs that hold them.
//!
//! Every sentinel ends in a unique hex tail; the tests look for that tail, so
//! a secret that leaks truncated or quoted is caught too.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::world::{SEC, TENANCY, USER, World};
use common::{Daemon, binary, temp_dir, wait_until, write_file};
use oracle_watchdog::config::{Config, Mode};
use oracle_watchdog::consul::{ConsulClient, ConsulSettings};
use oracle_watchdog::oci::{ApiKey, KeyError, OciProfile};
use oracle_watchdog::secret::Secret;
use oracle_watchdog::wandns::cloudflare::CloudflareClient;
use watchdog_standins::cloudflare::CloudflareStandin;
use watchdog_standins::consul::{ConsulOptions, ConsulStandin};
use watchdog_standins::ipprovider::IpProvider;
use watchdog_standins::otlp::OtlpReceiver;

const CONSUL_TOKEN: &str = "SENTINEL-consul-env-token-c0ffee01a7";
const CONSUL_FILE_TOKEN: &str = "SENTINEL-consul-file-token-d15ea5e8b3";
const WRONG_CONSUL_TOKEN: &str = "SENTINEL-wrong-consul-token-bad0c0de42";
const PASS: &str = "SENTINEL oci pass phrase 5eed1e55f0";
const WRONG_PASS: &str = "SENTINEL wrong pass phrase 0b5e55ed77";
const CF_TOKEN: &str = "SENTINEL-cloudflare-token-cafef00d19";
const WRONG_CF_TOKEN: &str = "SENTINEL-wrong-cloudflare-token-feedface2c";
const CF_VAR: &str = "OW_SECRETS_TEST_CF_TOKEN";
/// The pass phrase of the checked-in encrypted fixture key.
const FIXTURE_PASS: &str = "correct horse battery staple";
const ZONE: &str = "5ec2e7500000000000000000000000aa";
const HOST: &str = "secrets.example.com";

/// Every sentinel, by the unique tail that is searched for.
const SENTINELS: &[(&str, &str)] = &[
    ("Consul token (env)", CONSUL_TOKEN),
    ("Consul token (file)", CONSUL_FILE_TOKEN),
    ("wrong Consul token", WRONG_CONSUL_TOKEN),
    ("OCI pass phrase", PASS),
    ("wrong OCI pass phrase", WRONG_PASS),
    ("Cloudflare token", CF_TOKEN),
    ("wrong Cloudflare token", WRONG_CF_TOKEN),
    ("fixture pass phrase", FIXTURE_PASS),
];

/// Fails naming the secret and the place when any sentinel is in `text`.
fn assert_clean(place: &str, text: &str) {
    for (name, secret) in SENTINELS {
        let tail = &secret[secret.len() - 10..];
        assert!(
            !text.contains(tail),
            "{name} leaked into {place}:\n{}",
            text.lines()
                .filter(|l| l.contains(tail))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

/// Logs (stderr) and, if the server is up, `/metrics` of a daemon.
fn assert_daemon_clean(what: &str, d: &Daemon) {
    assert_clean(&format!("{what} logs"), &d.logs().join("\n"));
    if let Some(m) = d.scrape() {
        assert_clean(&format!("{what} /metrics"), &m);
    }
}

fn has_log(d: &Daemon, needle: &str) -> bool {
    d.logs().iter().any(|l| l.contains(needle))
}

/// Runs the binary to completion with `env`; returns exit code and stdout+stderr.
fn run(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = Command::new(binary());
    cmd.args(args)
        .env_remove("CONSUL_HTTP_TOKEN")
        .env_remove("CONSUL_HTTP_TOKEN_FILE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let o: Output = cmd.output().expect("run oracle-watchdog");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.code(), text)
}

/// A copy of the encrypted fixture key re-encrypted under [`PASS`] (openssl).
fn sentinel_key(dir: &Path) -> PathBuf {
    let src =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/oci/keys/pkcs8_encrypted.pem");
    let out = dir.join("sentinel_key.pem");
    let status = Command::new("openssl")
        .args([
            "pkcs8",
            "-topk8",
            "-v2",
            "aes-256-cbc",
            "-passin",
            "env:OW_IN",
            "-passout",
            "env:OW_OUT",
            "-in",
        ])
        .arg(&src)
        .arg("-out")
        .arg(&out)
        .env("OW_IN", FIXTURE_PASS)
        .env("OW_OUT", PASS)
        .status()
        .expect("openssl(1) is installed by `make test` (scripts/ensure.sh apt openssl)");
    assert!(status.success(), "openssl re-encryption failed");
    out
}

/// An OCI config for `key` with pass phrase `pass`, registered with the world's OCI stand-in.
fn write_oci_config(world: &World, key: &Path, pass: &str) {
    let api_key = ApiKey::load(key, Some(PASS)).expect("sentinel key decrypts");
    world
        .oci
        .register_key(
            &format!("{TENANCY}/{USER}/{}", api_key.fingerprint()),
            &api_key.public_key_pem(),
        )
        .expect("register key");
    write_file(
        &world.dir,
        "oci-config",
        &format!(
            "[DEFAULT]\nuser={USER}\nfingerprint={}\ntenancy={TENANCY}\nregion=us-ashburn-1\nkey_file={}\npass_phrase={pass}\n",
            api_key.fingerprint(),
            key.display()
        ),
    );
}

fn monitor(consul: &ConsulStandin, node: &str, dir: &Path, env: &[(&str, &str)]) -> Daemon {
    let cfg = write_file(
        dir,
        "monitor.yaml",
        "monitor:\n  session_ttl: 10s\n  renew_interval: 1s\n",
    );
    let addr = consul.http_addr();
    let mut all = vec![("CONSUL_HTTP_ADDR", addr.as_str())];
    all.extend_from_slice(env);
    Daemon::spawn(
        &[
            "-mode",
            "monitor",
            "-node",
            node,
            "-config",
            cfg.to_str().unwrap(),
            "-log-level",
            "debug",
            "-log-format",
            "text",
        ],
        &all,
    )
}

fn heartbeat_held(consul: &ConsulStandin, node: &str) -> bool {
    consul.wait_for_kv(&format!("oracle-watchdog/nodes/{node}"), 10 * SEC, |kv| {
        kv.is_some_and(|k| k.session.is_some())
    })
}

fn stop(mut d: Daemon, what: &str) {
    d.signal("TERM");
    assert!(
        d.wait_exit(15 * SEC).is_some(),
        "{what} exits after SIGTERM"
    );
    // Let the reader thread drain the last lines (the shutdown logs) first.
    let mut seen = d.logs().len();
    wait_until(2 * SEC, || {
        std::thread::sleep(Duration::from_millis(200));
        let now = d.logs().len();
        std::mem::replace(&mut seen, now) == now
    });
    assert_daemon_clean(what, &d);
}

#[test]
fn help_version_and_usage_errors_show_no_secrets() {
    let dir = temp_dir("secrets-help");
    let token_file = write_file(&dir, "token", CONSUL_FILE_TOKEN);
    let env = [
        ("CONSUL_HTTP_TOKEN", CONSUL_TOKEN),
        ("CONSUL_HTTP_TOKEN_FILE", token_file.to_str().unwrap()),
        (CF_VAR, CF_TOKEN),
    ];
    for args in [
        &["--help"][..],
        &["-h"],
        &["--version"],
        &["-mode", "banana"],
        &["check", "--help"],
        &["restart"],
    ] {
        let (_, out) = run(args, &env);
        assert!(!out.trim().is_empty(), "{args:?} printed nothing");
        assert_clean(&format!("`{}` output", args.join(" ")), &out);
    }
}

#[test]
fn monitor_hides_the_consul_token_from_env_file_and_when_it_is_wrong() {
    let consul = ConsulStandin::start_with(ConsulOptions {
        token: Some(CONSUL_TOKEN.into()),
        ..ConsulOptions::default()
    })
    .unwrap();
    let dir = temp_dir("secrets-monitor");

    // Token from CONSUL_HTTP_TOKEN: works, nothing shows it.
    let m = monitor(
        &consul,
        "envnode",
        &dir,
        &[("CONSUL_HTTP_TOKEN", CONSUL_TOKEN)],
    );
    assert!(
        heartbeat_held(&consul, "envnode"),
        "monitor with the right token holds its key"
    );
    assert!(wait_until(5 * SEC, || m.scrape().is_some()));
    stop(m, "monitor (env token)");

    // Token from CONSUL_HTTP_TOKEN_FILE (wins over the variable).
    consul.require_token(Some(CONSUL_FILE_TOKEN.into()));
    let file = write_file(&dir, "consul-token", &format!("{CONSUL_FILE_TOKEN}\n"));
    let m = monitor(
        &consul,
        "filenode",
        &dir,
        &[
            ("CONSUL_HTTP_TOKEN_FILE", file.to_str().unwrap()),
            ("CONSUL_HTTP_TOKEN", WRONG_CONSUL_TOKEN),
        ],
    );
    assert!(
        heartbeat_held(&consul, "filenode"),
        "monitor with the token file holds its key"
    );
    stop(m, "monitor (token file)");

    // A wrong token: 403s are logged (and retried), the token is not.
    let m = monitor(
        &consul,
        "wrongnode",
        &dir,
        &[("CONSUL_HTTP_TOKEN", WRONG_CONSUL_TOKEN)],
    );
    assert!(
        wait_until(15 * SEC, || has_log(&m, "permission denied by Consul ACLs")),
        "403 logged: {:?}",
        m.logs()
    );
    assert_daemon_clean("monitor (wrong token)", &m);
    stop(m, "monitor (wrong token)");
}

#[test]
fn agent_with_every_secret_runs_a_cycle_and_a_dns_update_without_showing_them() {
    let world = World::new();
    world.consul.require_token(Some(CONSUL_TOKEN.into()));
    let key = sentinel_key(&world.dir);
    write_oci_config(&world, &key, PASS);
    let token_env = [("CONSUL_HTTP_TOKEN", CONSUL_TOKEN)];
    let m1 = monitor(&world.consul, "n1", &world.dir, &token_env);
    let m2 = monitor(&world.consul, "n2", &world.dir, &token_env);
    assert!(heartbeat_held(&world.consul, "n1") && heartbeat_held(&world.consul, "n2"));

    let cf = CloudflareStandin::start(CF_TOKEN).unwrap();
    cf.add_zone(ZONE);
    cf.add_record(ZONE, "A", HOST, "198.51.100.1", 300, false);
    let ip = IpProvider::start("203.0.113.9").unwrap();
    let wan = format!(
        "wan_dns:\n  enabled: true\n  hostname: {HOST}\n  cloudflare:\n    api_token_env: {CF_VAR}\n    zone_id: \"{ZONE}\"\n    api_url: \"{}\"\n  detection_providers: [\"{}\"]\n  poll_interval: 5m\n  cooldown: 15m\n",
        cf.api_url(),
        ip.plain_url()
    );
    let receiver = OtlpReceiver::start().unwrap();
    let traces = format!(
        "tracing:\n  enabled: true\n  endpoint: \"{}\"\n",
        receiver.endpoint()
    );
    let cfg = world.agent_config(&format!("{wan}{traces}"));

    // `check` with every secret in play: succeeds, shows none.
    let addr = world.consul.http_addr();
    let check_env = [
        ("CONSUL_HTTP_TOKEN", CONSUL_TOKEN),
        (CF_VAR, CF_TOKEN),
        ("CONSUL_HTTP_ADDR", addr.as_str()),
    ];
    let (code, out) = run(&["check", "-config", cfg.to_str().unwrap()], &check_env);
    assert_eq!(code, Some(0), "check passes: {out}");
    assert_clean("`check` output", &out);

    let agent = Daemon::spawn(
        &[
            "-mode",
            "agent",
            "-config",
            cfg.to_str().unwrap(),
            "-log-level",
            "debug",
        ],
        &[("CONSUL_HTTP_TOKEN", CONSUL_TOKEN), (CF_VAR, CF_TOKEN)],
    );
    assert!(
        wait_until(30 * SEC, || cf.successful_patches().len() == 1),
        "DNS update with the Cloudflare token: {:?}",
        agent.logs()
    );
    // A lost heartbeat drives a signed OCI stop/start cycle.
    m1.signal("KILL");
    assert!(
        wait_until(60 * SEC, || world.posts().iter().any(|(_, a)| a == "START")),
        "restart cycle with the decrypted key: {:?}",
        world.posts()
    );
    assert_daemon_clean("agent", &agent);
    // The cycle's trace reached the collector, without secrets in it.
    assert!(
        receiver.wait_for_spans(20 * SEC, |spans| !spans.is_empty()),
        "spans exported"
    );
    let exported: Vec<String> = receiver
        .spans()
        .iter()
        .map(|s| {
            format!(
                "{} {:?} {:?} {} {:?}",
                s.name, s.attributes, s.events, s.status_message, s.resource
            )
        })
        .collect();
    assert_clean("exported trace spans", &exported.join("\n"));

    // Operator command reading Consul with the token.
    let (code, out) = run(&["status", "-config", cfg.to_str().unwrap()], &check_env);
    assert!(code.is_some(), "status ran: {out}");
    assert_clean("`status` output", &out);

    stop(agent, "agent");
    stop(m2, "monitor n2");
}

#[test]
fn wrong_cloudflare_token_and_wrong_pass_phrase_fail_without_showing_them() {
    let mut world = World::new();
    let key = sentinel_key(&world.dir);
    world.start_monitor("n1");
    world.start_monitor("n2");
    let cf = CloudflareStandin::start(CF_TOKEN).unwrap();
    cf.add_zone(ZONE);
    cf.add_record(ZONE, "A", HOST, "198.51.100.1", 300, false);
    let ip = IpProvider::start("203.0.113.9").unwrap();
    let wan = format!(
        "wan_dns:\n  enabled: true\n  hostname: {HOST}\n  cloudflare:\n    api_token_env: {CF_VAR}\n    zone_id: \"{ZONE}\"\n    api_url: \"{}\"\n  detection_providers: [\"{}\"]\n  poll_interval: 5m\n  cooldown: 15m\n",
        cf.api_url(),
        ip.plain_url()
    );

    // Wrong Cloudflare token: 401 logged, the agent keeps running.
    write_oci_config(&world, &key, PASS);
    let cfg = world.agent_config(&wan);
    let mut agent = Daemon::spawn(
        &[
            "-mode",
            "agent",
            "-config",
            cfg.to_str().unwrap(),
            "-log-level",
            "debug",
        ],
        &[(CF_VAR, WRONG_CF_TOKEN)],
    );
    assert!(
        wait_until(30 * SEC, || has_log(&agent, "401")),
        "Cloudflare 401 logged: {:?}",
        agent.logs()
    );
    assert!(
        agent.alive(),
        "a wrong Cloudflare token does not stop the agent"
    );
    assert_eq!(cf.successful_patches().len(), 0);
    assert_daemon_clean("agent (wrong Cloudflare token)", &agent);
    stop(agent, "agent (wrong Cloudflare token)");

    // Wrong pass phrase: `check` and the agent exit 2 naming the problem, not the phrase.
    write_oci_config(&world, &key, WRONG_PASS);
    let (code, out) = run(
        &["check", "-config", cfg.to_str().unwrap()],
        &[(CF_VAR, CF_TOKEN)],
    );
    assert_eq!(code, Some(2), "check with a wrong pass phrase: {out}");
    assert!(
        out.contains("pass_phrase"),
        "the message names the setting: {out}"
    );
    assert_clean("`check` output (wrong pass phrase)", &out);
    let mut agent = Daemon::spawn(
        &[
            "-mode",
            "agent",
            "-config",
            cfg.to_str().unwrap(),
            "-log-level",
            "debug",
        ],
        &[(CF_VAR, CF_TOKEN)],
    );
    let status = agent
        .wait_exit(20 * SEC)
        .expect("agent with a wrong pass phrase exits");
    assert_eq!(status.code(), Some(2), "logs: {:?}", agent.logs());
    // The reader thread may still be draining stderr after the exit.
    assert!(
        wait_until(5 * SEC, || has_log(&agent, "pass_phrase")),
        "logs: {:?}",
        agent.logs()
    );
    assert_daemon_clean("agent (wrong pass phrase)", &agent);
}

#[test]
fn debug_output_of_settings_clients_and_keys_hides_secrets() {
    let dir = temp_dir("secrets-debug");
    let token_file = write_file(&dir, "token", CONSUL_FILE_TOKEN);
    let file = token_file.to_str().unwrap().to_string();
    for env in [
        vec![("CONSUL_HTTP_TOKEN", CONSUL_TOKEN.to_string())],
        vec![
            ("CONSUL_HTTP_TOKEN_FILE", file.clone()),
            ("CONSUL_HTTP_TOKEN", CONSUL_TOKEN.to_string()),
        ],
    ] {
        let settings = ConsulSettings::resolve(Some("127.0.0.1:8500"), |name| {
            env.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone())
        })
        .expect("settings resolve");
        assert!(settings.token.is_some(), "the token was read");
        assert_clean(
            "ConsulSettings Debug",
            &format!("{settings:?} {settings:#?}"),
        );
        let client = ConsulClient::new(&settings);
        assert_clean("ConsulClient Debug", &format!("{client:?}"));
    }

    let ini = format!(
        "[DEFAULT]\nuser={USER}\nfingerprint=aa\ntenancy={TENANCY}\nregion=us-ashburn-1\nkey_file=k.pem\npass_phrase={PASS}\n"
    );
    let profile = OciProfile::parse(&ini, Path::new("/etc/ow/oci-config"), "DEFAULT").unwrap();
    assert_clean("OciProfile Debug", &format!("{profile:?} {profile:#?}"));
    assert_clean("Secret Debug", &format!("{:?}", Secret::new(PASS)));

    let key = sentinel_key(&dir);
    let api_key = ApiKey::load(&key, Some(PASS)).unwrap();
    assert_clean("ApiKey Debug", &format!("{api_key:?}"));
    let err: KeyError = ApiKey::load(&key, Some(WRONG_PASS)).unwrap_err();
    assert_clean("KeyError", &format!("{err} {err:?}"));

    let cf = CloudflareClient::new("http://127.0.0.1:1", ZONE, Secret::new(CF_TOKEN));
    assert_clean("CloudflareClient Debug", &format!("{cf:?}"));

    let yaml = format!(
        "consul_address: \"127.0.0.1:8500\"\nwan_dns:\n  enabled: true\n  hostname: {HOST}\n  cloudflare:\n    api_token_env: {CF_VAR}\n    zone_id: \"{ZONE}\"\n"
    );
    let config = Config::from_yaml_str(&yaml, Path::new("c.yaml")).unwrap();
    let _ = config.validate(Mode::Agent);
    assert_clean("Config Debug", &format!("{config:?}"));
}
