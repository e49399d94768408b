//! Property tests of every parser that reads outside input (the same ones
//! `make fuzz` fuzzes): thousands of deterministic pseudo-random inputs each,
//! built from a fixed seed by mutating real examples. They must never panic,
//! their errors must be one line, and round trips must hold. Any input a fuzz
//! run crashed on is pinned at the bottom as a regression test.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use oracle_watchdog::config::{Config, Mode, format_duration, parse_duration};
use oracle_watchdog::consul::decode_kv_listing;
use oracle_watchdog::oci::{
    ApiKey, Decoded, LifecycleState, OciError, OciErrorKind, OciProfile, Operation, decode_response,
};
use oracle_watchdog::secret::Secret;
use oracle_watchdog::wandns::cloudflare::{CloudflareError, decode_record, decode_record_list};
use oracle_watchdog::wandns::detect::parse_body;

/// Inputs per parser (fewer for RSA keys, which are slow to check in debug builds).
const CASES: usize = 10_000;
const KEY_CASES: usize = 600;

fn rng(seed: u64) -> fastrand::Rng {
    fastrand::Rng::with_seed(seed)
}

/// Characters that matter to the parsers under test.
const NOISE: &[char] = &[
    ' ', '\n', '\r', '\t', ':', '-', '#', ';', '=', '[', ']', '{', '}', '"', '\'', ',', '.', '0',
    '1', '9', 'a', 'Z', '~', '&', '*', '!', '|', '>', '%', '@', '\\', '\u{0}', 'µ', 'é', '😀',
];

/// `base` with a few random edits: deletions, insertions of `NOISE` or of
/// fragments of `base` itself, truncation.
fn mutate(r: &mut fastrand::Rng, base: &str) -> String {
    let mut chars: Vec<char> = base.chars().collect();
    for _ in 0..r.usize(1..=6) {
        let at = r.usize(..=chars.len());
        match r.u8(..5) {
            0 if !chars.is_empty() => {
                let end = (at + r.usize(1..=8)).min(chars.len());
                chars.drain(at.min(end)..end);
            }
            1 => chars.insert(at, NOISE[r.usize(..NOISE.len())]),
            2 if !chars.is_empty() => {
                let from = r.usize(..chars.len());
                let end = (from + r.usize(1..=16)).min(chars.len());
                let piece: Vec<char> = chars[from..end].to_vec();
                for (i, c) in piece.into_iter().enumerate() {
                    chars.insert(at + i, c);
                }
            }
            3 => chars.truncate(at),
            _ if at < chars.len() => chars[at] = NOISE[r.usize(..NOISE.len())],
            _ => {}
        }
    }
    chars.into_iter().collect()
}

fn one_line(what: &str, input: &str, message: &str) {
    assert!(
        !message.contains('\n') && !message.contains('\r'),
        "{what}: error for {input:?} spans lines: {message:?}"
    );
    assert!(
        !message.trim().is_empty(),
        "{what}: empty error for {input:?}"
    );
}

// --- durations --------------------------------------------------------------

#[test]
fn durations_never_panic_and_what_parses_round_trips() {
    let pieces = [
        "0",
        "1",
        "15",
        "1.5",
        ".5",
        "5.",
        "9223372036854775807",
        "99999999999999999999999",
        "h",
        "m",
        "s",
        "ms",
        "us",
        "µs",
        "μs",
        "ns",
        "x",
        "d",
        " ",
        "+",
        "-",
        ".",
        "e3",
    ];
    let mut r = rng(1);
    for _ in 0..CASES {
        let text: String = (0..r.usize(1..6))
            .map(|_| pieces[r.usize(..pieces.len())])
            .collect();
        match parse_duration(&text) {
            Ok(d) => {
                let shown = format_duration(d);
                assert_eq!(parse_duration(&shown), Ok(d), "{text:?} -> {shown:?}");
            }
            Err(e) => {
                one_line("duration", &text, &e.to_string());
                assert_eq!(e.input(), text);
            }
        }
    }
}

#[test]
fn every_representable_duration_formats_to_something_that_parses_back() {
    let mut r = rng(2);
    for i in 0..CASES {
        // Mix whole units, sub-second values and arbitrary nanosecond counts.
        let nanos: u64 = match i % 4 {
            0 => r.u64(..=i64::MAX as u64),
            1 => r.u64(..1_000_000_000),
            2 => r.u64(..100_000) * 1_000_000_000,
            _ => r.u64(..10_000) * 60_000_000_000 + r.u64(..1000) * 1_000_000,
        };
        let d = Duration::from_nanos(nanos);
        let shown = format_duration(d);
        assert_eq!(parse_duration(&shown), Ok(d), "{d:?} -> {shown:?}");
    }
}

// --- YAML config --------------------------------------------------------------

fn example_config() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.yaml"))
        .expect("config.example.yaml is part of the repository")
}

#[test]
fn yaml_config_never_panics_and_errors_are_one_line() {
    let bases = [
        example_config(),
        "monitor:\n  session_ttl: 10s\n  renew_interval: 1s\n".to_string(),
        "timeout: 2s\ncheck_interval: 5s\nnodes:\n  - name: n1\n    instance_id: \"i\"\n    compartment_id: \"c\"\n".to_string(),
        "wan_dns:\n  enabled: true\n  hostname: h.example.com\n  cloudflare:\n    api_token_env: CF\n    zone_id: \"z\"\n  poll_interval: 5m\n".to_string(),
        "a: &x [1, *x]\n? [1]\n: {}\n!!binary aGVsbG8=\n".to_string(),
    ];
    let mut r = rng(3);
    let mut parsed = 0;
    for i in 0..CASES {
        let text = mutate(&mut r, &bases[i % bases.len()]);
        match Config::from_yaml_str(&text, Path::new("prop.yaml")) {
            Ok(config) => {
                parsed += 1;
                for mode in [Mode::Monitor, Mode::Agent] {
                    if let Err(e) = config.validate(mode) {
                        one_line("validate", &text, &e.to_string());
                    }
                }
            }
            Err(e) => one_line("yaml", &text, &e.to_string()),
        }
    }
    // The generator must reach the code behind the parser, not only its errors.
    assert!(parsed > CASES / 20, "only {parsed} inputs parsed");
}

// --- OCI config INI -----------------------------------------------------------

const INI: &str = "[DEFAULT]\nuser=ocid1.user.oc1..u\nfingerprint=aa:bb:cc\ntenancy=ocid1.tenancy.oc1..t\nregion=us-ashburn-1\nkey_file=keys/key.pem\npass_phrase=SENTINEL-pass-7c1e\n\n[OTHER]\nregion = eu-frankfurt-1\n  continued\n# comment\n; comment\n";

#[test]
fn oci_ini_never_panics_errors_are_one_line_and_debug_hides_the_pass_phrase() {
    let mut r = rng(4);
    let mut parsed = 0;
    for _ in 0..CASES {
        let text = mutate(&mut r, INI);
        for profile in ["DEFAULT", "OTHER"] {
            match OciProfile::parse(&text, Path::new("/etc/ow/oci-config"), profile) {
                Ok(p) => {
                    parsed += 1;
                    // Debug must not depend on the pass phrase at all.
                    if p.pass_phrase.is_some() {
                        let mut other = p.clone();
                        other.pass_phrase = Some(Secret::new("something else"));
                        assert_eq!(
                            format!("{p:?}"),
                            format!("{other:?}"),
                            "Debug shows the pass phrase"
                        );
                    }
                    assert_eq!(
                        p.key_id(),
                        format!("{}/{}/{}", p.tenancy, p.user, p.fingerprint)
                    );
                }
                Err(e) => {
                    let message = e.to_string();
                    one_line("oci ini", &text, &message);
                    assert!(
                        !message.contains("SENTINEL-pass"),
                        "pass phrase in {message:?}"
                    );
                }
            }
        }
    }
    assert!(parsed > CASES / 20, "only {parsed} inputs parsed");
    // Found by this test: a carriage return inside a profile name.
    for text in [
        "[DEF\rULT]\nuser=u\n",
        "[A\rB]\n[A\rB]\n",
        "[A]\nk\rk=1\nk\rk=2\n",
    ] {
        let e = OciProfile::parse(text, Path::new("/c"), "DEFAULT").unwrap_err();
        one_line("oci ini", text, &e.to_string());
    }
}

// --- API keys -------------------------------------------------------------------

fn fixture_keys() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/oci/keys");
    let mut keys: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .expect("fixture keys")
        .map(|e| std::fs::read(e.expect("entry").path()).expect("read fixture key"))
        .collect();
    keys.sort();
    keys
}

#[test]
fn key_loading_never_panics_and_errors_are_one_line() {
    let keys = fixture_keys();
    let mut r = rng(5);
    for i in 0..KEY_CASES {
        let base = &keys[i % keys.len()];
        let mut bytes = base.clone();
        match r.u8(..4) {
            // Flip bytes inside the body (base64 and DER damage).
            0 => {
                for _ in 0..r.usize(1..4) {
                    let at = r.usize(..bytes.len());
                    bytes[at] ^= 1 << r.u8(..8);
                }
            }
            1 => bytes.truncate(r.usize(..bytes.len())),
            2 => bytes = mutate(&mut r, &String::from_utf8_lossy(base)).into_bytes(),
            _ => bytes.extend((0..r.usize(..64)).map(|_| r.u8(..))),
        }
        for pass in [None, Some("correct horse battery staple"), Some("wrong")] {
            if let Err(e) = ApiKey::from_pem_bytes(&bytes, pass, Path::new("/k.pem")) {
                let message = e.to_string();
                one_line("key", &String::from_utf8_lossy(&bytes), &message);
                if let Some(p) = pass {
                    assert!(!message.contains(p), "pass phrase in {message:?}");
                }
            }
        }
    }
}

// --- Consul KV answers ----------------------------------------------------------

fn random_json(r: &mut fastrand::Rng, depth: u32) -> String {
    let scalars = [
        "null",
        "true",
        "0",
        "-1",
        "18446744073709551616",
        "1.5",
        "\"\"",
        "\"eyJ4IjoxfQ==\"",
        "\"not base64!\"",
        "\"a\\nb\"",
        "\"\\u0000\"",
        "\"Key\"",
    ];
    if depth == 0 || r.u8(..3) == 0 {
        return scalars[r.usize(..scalars.len())].to_string();
    }
    let keys = [
        "Key",
        "Value",
        "Session",
        "ModifyIndex",
        "LockIndex",
        "id",
        "lifecycleState",
        "displayName",
        "region",
        "code",
        "message",
        "success",
        "errors",
        "result",
        "content",
        "type",
        "ttl",
        "proxied",
        "name",
    ];
    if r.bool() {
        let items: Vec<String> = (0..r.usize(..4))
            .map(|_| random_json(r, depth - 1))
            .collect();
        format!("[{}]", items.join(","))
    } else {
        let items: Vec<String> = (0..r.usize(..6))
            .map(|_| {
                format!(
                    "\"{}\":{}",
                    keys[r.usize(..keys.len())],
                    random_json(r, depth - 1)
                )
            })
            .collect();
        format!("{{{}}}", items.join(","))
    }
}

const KV: &str = r#"[{"Key":"oracle-watchdog/nodes/n1","Value":"eyJ4IjoxfQ==","Session":"adf4238a-882b","ModifyIndex":7,"LockIndex":1,"Flags":0},{"Key":"k2","Value":null,"Session":""}]"#;

#[test]
fn consul_kv_answers_never_panic_and_errors_are_one_line() {
    let mut r = rng(6);
    let mut decoded = 0;
    for i in 0..CASES {
        let body = if i % 2 == 0 {
            mutate(&mut r, KV)
        } else {
            random_json(&mut r, 3)
        };
        match decode_kv_listing(&body) {
            Ok(pairs) => {
                decoded += 1;
                // An empty session is no session.
                assert!(pairs.iter().all(|p| p.session.as_deref() != Some("")));
            }
            Err(e) => one_line("consul kv", &body, &e.to_string()),
        }
    }
    assert!(decoded > 0);
    let pairs = decode_kv_listing(KV).expect("the reference listing decodes");
    assert_eq!(pairs[0].value.as_deref(), Some(&b"{\"x\":1}"[..]));
    assert_eq!(pairs[1].session, None);
    // Keys come from the server: a control character in one keeps the error one line.
    let err = decode_kv_listing(r#"[{"Key":"a\nb\r","Value":"!!"}]"#).unwrap_err();
    one_line("consul kv", "control characters in a key", &err.to_string());
}

// --- OCI answers ------------------------------------------------------------------

const STATES: &[&str] = &[
    "MOVING",
    "PROVISIONING",
    "RUNNING",
    "STARTING",
    "STOPPING",
    "STOPPED",
    "CREATING_IMAGE",
    "TERMINATING",
    "TERMINATED",
    "SOMETHING_NEW",
    "",
];

#[test]
fn oci_answers_never_panic_and_classify_by_status() {
    let mut r = rng(7);
    let statuses = [
        200, 204, 400, 401, 404, 409, 412, 429, 500, 502, 503, 599, 302,
    ];
    for i in 0..CASES {
        let status = statuses[r.usize(..statuses.len())];
        let id = format!("ocid1.instance.oc1.iad.{}", r.u32(..));
        let state = STATES[r.usize(..STATES.len())];
        let body = match i % 3 {
            0 => format!(
                r#"{{"id":"{id}","lifecycleState":"{state}","displayName":"n","region":"iad"}}"#
            ),
            1 => mutate(
                &mut r,
                r#"{"code":"InternalError","message":"Out of host capacity."}"#,
            ),
            _ => random_json(&mut r, 3),
        };
        let decoded = decode_response(status, &body, None, Some(Duration::from_secs(3)));
        if let Decoded::Failed(kind) | Decoded::Retry { kind, .. } = &decoded {
            let error = OciError {
                operation: Operation::GetInstance,
                instance: id.clone(),
                opc_request_id: None,
                attempts: 1,
                kind: kind.clone(),
            };
            one_line("oci answer", &body, &error.to_string());
        }
        match (&decoded, status) {
            (Decoded::Instance(inst), 200..=299) => {
                if i % 3 == 0 {
                    assert_eq!(inst.id, id);
                    assert_eq!(inst.lifecycle_state.as_str(), state);
                    assert_eq!(LifecycleState::parse(state), inst.lifecycle_state);
                }
            }
            (Decoded::Failed(OciErrorKind::BadResponse { .. }), 200..=299) => {
                assert!(
                    i % 3 != 0,
                    "a well-formed instance body was refused: {body}"
                )
            }
            (Decoded::Failed(OciErrorKind::NotAuthenticated { .. }), 401)
            | (Decoded::Failed(OciErrorKind::NotAuthorizedOrNotFound { .. }), 404)
            | (Decoded::Failed(OciErrorKind::IncorrectState { .. }), 409)
            | (Decoded::Failed(OciErrorKind::OutOfCapacity { .. }), 500..=599)
            | (
                Decoded::Retry {
                    kind: OciErrorKind::Transient { .. },
                    ..
                },
                500..=599,
            )
            | (Decoded::Failed(OciErrorKind::Rejected { .. }), _) => {}
            (
                Decoded::Retry {
                    kind: OciErrorKind::Throttled,
                    retry_after,
                },
                429,
            ) => {
                assert_eq!(*retry_after, Some(Duration::from_secs(3)))
            }
            (other, _) => panic!("HTTP {status} {body:?} decoded as {other:?}"),
        }
    }
    // OCI's own message text with line breaks still gives a one-line error.
    let body = r#"{"code":"NotAuthenticated","message":"bad\nsignature\r"}"#;
    let Decoded::Failed(kind) = decode_response(401, body, None, None) else {
        panic!("401 is a final failure");
    };
    let error = OciError {
        operation: Operation::GetInstance,
        instance: "i".into(),
        opc_request_id: None,
        attempts: 1,
        kind,
    };
    one_line("oci answer", body, &error.to_string());
}

// --- Cloudflare answers -------------------------------------------------------------

const CF_ONE: &str = r#"{"success":true,"errors":[],"messages":[],"result":{"id":"r1","name":"h.example.com","type":"A","content":"198.51.100.4","ttl":1,"proxied":false}}"#;

#[test]
fn cloudflare_answers_never_panic_and_classify_by_status() {
    let mut r = rng(8);
    let statuses = [200, 201, 400, 401, 403, 404, 409, 429, 500, 503];
    for i in 0..CASES {
        let status = statuses[r.usize(..statuses.len())];
        let body = match i % 3 {
            0 => mutate(&mut r, CF_ONE),
            1 => mutate(
                &mut r,
                r#"{"success":false,"errors":[{"code":9109,"message":"Invalid access token"}],"result":null}"#,
            ),
            _ => random_json(&mut r, 3),
        };
        for result in [
            decode_record(status, None, &body).map(|_| ()),
            decode_record_list(status, None, &body).map(|_| ()),
        ] {
            match (result, status) {
                (Ok(()), 200..=299) => {}
                (Ok(()), _) => panic!("HTTP {status} accepted: {body}"),
                (Err(e), _) => {
                    let expected_transient = match &e {
                        CloudflareError::Unauthorized { .. } => {
                            assert!(status == 401 || status == 403);
                            false
                        }
                        CloudflareError::NotFound(_) => false,
                        CloudflareError::RateLimited { .. } | CloudflareError::Server { .. } => {
                            true
                        }
                        CloudflareError::Malformed(_) => true,
                        _ => e.is_transient(),
                    };
                    assert_eq!(e.is_transient(), expected_transient, "{e}");
                    one_line("cloudflare", &body, &e.to_string());
                }
            }
        }
    }
    let record = decode_record(200, None, CF_ONE).expect("reference record decodes");
    assert_eq!(record.content, "198.51.100.4");
    // Regression: Cloudflare's own message text with a newline in it.
    let body = r#"{"success":false,"errors":[{"code":1000,"message":"Invalid\nAPI\r\nToken"}],"result":null}"#;
    let e = decode_record(400, None, body).expect_err("an error answer");
    one_line("cloudflare", body, &e.to_string());
}

// --- IP provider bodies -----------------------------------------------------------

#[test]
fn ip_bodies_never_panic_and_plain_or_trace_addresses_round_trip() {
    let mut r = rng(9);
    let bases = [
        "203.0.113.7\n",
        "fl=1\nh=1.1.1.1\nip=203.0.113.7\nts=1\nvisit_scheme=https\n",
        "<!DOCTYPE html><html><body>Captive portal</body></html>",
        "2001:db8::1",
    ];
    for i in 0..CASES {
        let ip = Ipv4Addr::from(r.u32(..));
        let expected = if ip.is_unspecified() { None } else { Some(ip) };
        let plain = format!("{}{ip}\r\n", [" ", "", "\n"][i % 3]);
        assert_eq!(parse_body(&plain).ok(), expected, "{plain:?}");
        let trace = format!("fl=1\nh=x\nip={ip}\nts=2\n");
        assert_eq!(parse_body(&trace).ok(), expected, "{trace:?}");
        let body = mutate(&mut r, bases[i % bases.len()]);
        match parse_body(&body) {
            Ok(found) => assert!(!found.is_unspecified()),
            Err(e) => one_line("ip body", &body, &e.to_string()),
        }
    }
}

// --- regressions from fuzzing ------------------------------------------------------
// A crash found by `make fuzz` (fuzz/artifacts/TARGET/crash-*) becomes a test
// here that feeds the crashing bytes to the same parser. None so far: the
// regressions above (`\r` in INI names, control characters in Consul keys)
// were found by these property tests and are pinned in them.
