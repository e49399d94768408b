//! OCI request signing and key loading, proven against the official Python SDK.
//!
//! * Fixtures (`tests/fixtures/oci/signatures.json`, made by
//!   `tests/python/gen_oci_fixtures.py` with the `oci` SDK): for every key
//!   format and request shape, the Rust signer must produce byte-identical
//!   headers and `authorization`.
//! * Live cross-check: when `.venv/bin/python` can import `oci`, random
//!   requests are signed by both and must match exactly.
//! * Key loading: every accepted format, and a precise error for each refused one.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, UNIX_EPOCH};

use base64::Engine as _;
use oracle_watchdog::oci::{ApiKey, KeyError, RequestSigner, permission_warning};
use serde::Deserialize;

const PASS_PHRASE: &str = "correct horse battery staple";

#[derive(Deserialize)]
struct Fixtures {
    tenancy: String,
    user: String,
    keys: Vec<FixtureKey>,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct FixtureKey {
    name: String,
    file: String,
    pass_phrase: Option<String>,
    fingerprint: String,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    key: String,
    method: String,
    url: String,
    date: String,
    content_type: String,
    body_b64: Option<String>,
    expected_headers: BTreeMap<String, String>,
    expected_authorization: String,
}

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/oci")
}

fn key_path(file: &str) -> PathBuf {
    fixture_dir().join("keys").join(file)
}

fn fixtures() -> Fixtures {
    let text =
        std::fs::read_to_string(fixture_dir().join("signatures.json")).expect("fixtures present");
    serde_json::from_str(&text).expect("fixtures parse")
}

fn load(k: &FixtureKey) -> ApiKey {
    ApiKey::load(&key_path(&k.file), k.pass_phrase.as_deref())
        .unwrap_or_else(|e| panic!("{}: {e}", k.name))
}

fn b64(s: &Option<String>) -> Vec<u8> {
    s.as_ref()
        .map(|s| {
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .expect("fixture base64")
        })
        .unwrap_or_default()
}

#[test]
fn every_key_format_loads_with_the_sdk_fingerprint() {
    let f = fixtures();
    assert!(
        f.keys.len() >= 5,
        "fixtures cover PKCS#8, PKCS#1, encrypted, console, CRLF"
    );
    for k in &f.keys {
        let key = load(k);
        assert_eq!(key.fingerprint(), k.fingerprint, "{}", k.name);
        key.verify_fingerprint(&k.fingerprint)
            .expect("matching fingerprint accepted");
        key.verify_fingerprint(&k.fingerprint.to_uppercase())
            .expect("case does not matter");
    }
}

#[test]
fn signatures_match_the_sdk_fixtures_byte_for_byte() {
    let f = fixtures();
    let signers: BTreeMap<&str, RequestSigner> = f
        .keys
        .iter()
        .map(|k| {
            (
                k.name.as_str(),
                RequestSigner::new(
                    format!("{}/{}/{}", f.tenancy, f.user, k.fingerprint),
                    load(k),
                ),
            )
        })
        .collect();
    assert!(f.cases.len() >= 40);
    let mut methods = std::collections::BTreeSet::new();
    for case in &f.cases {
        let signer = &signers[case.key.as_str()];
        let body = b64(&case.body_b64);
        let signed = signer
            .sign(
                &case.method,
                &case.url,
                &case.date,
                &body,
                &case.content_type,
            )
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let got: BTreeMap<String, String> = signed
            .headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.clone()))
            .collect();
        assert_eq!(got, case.expected_headers, "{}: headers", case.name);
        assert_eq!(
            signed.authorization, case.expected_authorization,
            "{}: authorization",
            case.name
        );
        methods.insert(case.method.clone());
    }
    assert_eq!(
        methods.into_iter().collect::<Vec<_>>(),
        ["DELETE", "GET", "POST", "PUT"]
    );
}

#[test]
fn a_different_date_or_body_changes_the_signature() {
    let f = fixtures();
    let case = f
        .cases
        .iter()
        .find(|c| c.method == "POST" && c.body_b64.is_some())
        .expect("a POST case");
    let k = f.keys.iter().find(|k| k.name == case.key).expect("its key");
    let signer = RequestSigner::new(
        format!("{}/{}/{}", f.tenancy, f.user, k.fingerprint),
        load(k),
    );
    let body = b64(&case.body_b64);
    let other_date = signer.sign(
        "POST",
        &case.url,
        "Fri, 06 Jan 2014 21:31:40 GMT",
        &body,
        &case.content_type,
    );
    assert_ne!(
        other_date.expect("signs").authorization,
        case.expected_authorization
    );
    let other_body = signer
        .sign("POST", &case.url, &case.date, b"{}", &case.content_type)
        .expect("signs");
    assert_ne!(other_body.authorization, case.expected_authorization);
}

#[test]
fn encrypted_key_needs_the_right_pass_phrase() {
    let path = key_path("pkcs8_encrypted.pem");
    assert_eq!(
        ApiKey::load(&path, None).expect_err("no pass phrase"),
        KeyError::PassPhraseRequired { path: path.clone() }
    );
    assert_eq!(
        ApiKey::load(&path, Some("wrong pass phrase")).expect_err("wrong pass phrase"),
        KeyError::WrongPassPhrase { path: path.clone() }
    );
    // A pass phrase inherited from [DEFAULT] for an unencrypted key is ignored, as in the SDK.
    ApiKey::load(&key_path("pkcs8.pem"), Some(PASS_PHRASE))
        .expect("unencrypted key with a pass phrase");
}

#[test]
fn refused_formats_say_what_is_wrong() {
    let legacy = key_path("legacy_encrypted.pem");
    let err = ApiKey::load(&legacy, Some(PASS_PHRASE)).expect_err("legacy encryption refused");
    assert_eq!(
        err,
        KeyError::LegacyEncryption {
            path: legacy.clone()
        }
    );
    let msg = err.to_string();
    assert!(
        msg.contains(&format!(
            "openssl pkcs8 -topk8 -v2 aes-256-cbc -in {}",
            legacy.display()
        )),
        "{msg}"
    );

    let ec = ApiKey::load(&key_path("ec_p256.pem"), None).expect_err("EC refused");
    assert!(
        matches!(&ec, KeyError::Unsupported { found, .. } if found == "EC private key"),
        "{ec:?}"
    );
    assert!(ec.to_string().contains("RSA"), "{ec}");

    let public = ApiKey::load(&key_path("public.pem"), None).expect_err("public key refused");
    assert!(matches!(public, KeyError::PublicKey { .. }), "{public:?}");

    let garbage = ApiKey::load(&key_path("garbage.pem"), None).expect_err("garbage refused");
    assert!(matches!(garbage, KeyError::NotAKey { .. }), "{garbage:?}");

    let missing = key_path("does-not-exist.pem");
    assert_eq!(
        ApiKey::load(&missing, None).expect_err("missing"),
        KeyError::NotFound { path: missing }
    );
}

#[test]
fn fingerprint_mismatch_shows_both_fingerprints() {
    let key = ApiKey::load(&key_path("pkcs1.pem"), None).expect("loads");
    let configured = "00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff";
    let err = key.verify_fingerprint(configured).expect_err("mismatch");
    let msg = err.to_string();
    assert!(
        msg.contains(configured) && msg.contains(key.fingerprint()),
        "{msg}"
    );
}

#[test]
fn debug_output_never_contains_key_material() {
    let path = key_path("pkcs8_encrypted.pem");
    let key = ApiKey::load(&path, Some(PASS_PHRASE)).expect("loads");
    let signer = RequestSigner::new("t/u/f".into(), key.clone());
    let shown = format!("{key:?} {signer:?}");
    let pem = std::fs::read_to_string(&path).expect("read key");
    for line in pem.lines().filter(|l| !l.starts_with("-----")) {
        assert!(!shown.contains(line), "Debug shows key material");
    }
    assert!(!shown.contains(PASS_PHRASE));
    assert!(shown.contains(key.fingerprint()));
}

#[test]
fn readable_key_file_gets_a_warning() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = std::env::temp_dir().join(format!("ow-oci-perm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("key.pem");
    std::fs::copy(key_path("pkcs8.pem"), &path).expect("copy key");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    assert_eq!(permission_warning(&path), None);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let warning = permission_warning(&path).expect("group-readable warns");
    assert!(
        warning.contains("chmod 600") && warning.contains("0640"),
        "{warning}"
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    assert!(
        permission_warning(&path)
            .expect("world-readable warns")
            .contains("everyone")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

// ---- live cross-check against the SDK ------------------------------------

fn venv_python() -> Option<PathBuf> {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    let ok = Command::new(&python)
        .args(["-c", "import oci"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(python)
}

const UNRESERVED: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~";

fn random_segment(rng: &mut fastrand::Rng) -> String {
    loop {
        let s = random_chars(rng);
        // URL normalisation removes `.` and `..` path segments.
        if s != "." && s != ".." {
            return s;
        }
    }
}

fn random_chars(rng: &mut fastrand::Rng) -> String {
    (0..rng.usize(1..16))
        .map(|_| {
            if rng.u8(0..10) == 0 {
                // requests re-quotes URLs: escapes of unreserved characters
                // are decoded, so only escape the others.
                let c = loop {
                    let c = rng.u8(0x21..0x7f);
                    if !UNRESERVED.contains(&c) {
                        break c;
                    }
                };
                format!("%{c:02X}")
            } else {
                (UNRESERVED[rng.usize(0..UNRESERVED.len())] as char).to_string()
            }
        })
        .collect()
}

fn random_request(rng: &mut fastrand::Rng) -> serde_json::Value {
    let method = ["GET", "POST", "PUT", "DELETE", "POST"][rng.usize(0..5)];
    let scheme = if rng.bool() { "https" } else { "http" };
    let host = [
        "iaas.us-ashburn-1.oraclecloud.com",
        "127.0.0.1",
        "localhost",
        "iaas.eu-frankfurt-1.oraclecloud.com",
    ][rng.usize(0..4)];
    let port = if rng.bool() {
        format!(":{}", rng.u16(1024..65535))
    } else {
        String::new()
    };
    let path: Vec<String> = (0..rng.usize(1..5)).map(|_| random_segment(rng)).collect();
    let mut url = format!("{scheme}://{host}{port}/{}", path.join("/"));
    if rng.bool() {
        let query: Vec<String> = (0..rng.usize(1..4))
            .map(|_| format!("{}={}", random_segment(rng), random_segment(rng)))
            .collect();
        url = format!("{url}?{}", query.join("&"));
    }
    let body: Vec<u8> = (0..rng.usize(0..300)).map(|_| rng.u8(..)).collect();
    let date = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(rng.u64(0..4_000_000_000)));
    let content_type = [
        "application/json",
        "application/octet-stream",
        "text/plain; charset=utf-8",
    ][rng.usize(0..3)];
    serde_json::json!({
        "method": method,
        "url": url,
        "date": date,
        "content_type": content_type,
        "body_b64": if method == "POST" || method == "PUT" {
            Some(base64::engine::general_purpose::STANDARD.encode(&body))
        } else {
            None
        },
    })
}

#[test]
fn live_cross_check_with_the_python_sdk() {
    let Some(python) = venv_python() else {
        eprintln!(
            "SKIP live_cross_check_with_the_python_sdk: .venv/bin/python with the `oci` package not found (make test installs it)"
        );
        return;
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/oci_sign.py");
    let f = fixtures();
    let seed = std::env::var("OCI_CROSSCHECK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!("live cross-check seed {seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut total = 0;
    for k in &f.keys {
        let requests: Vec<serde_json::Value> = (0..25).map(|_| random_request(&mut rng)).collect();
        let spec = serde_json::json!({
            "tenancy": f.tenancy, "user": f.user, "fingerprint": k.fingerprint,
            "key_file": key_path(&k.file), "pass_phrase": k.pass_phrase, "requests": requests,
        });
        let mut child = Command::new(&python)
            .arg(&script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start python");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(spec.to_string().as_bytes())
            .expect("write spec");
        let out = child.wait_with_output().expect("python finishes");
        assert!(
            out.status.success(),
            "oci_sign.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let results: Vec<serde_json::Value> =
            serde_json::from_slice(&out.stdout).expect("python output is JSON");
        assert_eq!(results.len(), requests.len());
        let signer = RequestSigner::new(
            format!("{}/{}/{}", f.tenancy, f.user, k.fingerprint),
            load(k),
        );
        for (req, sdk) in requests.iter().zip(&results) {
            let url = req["url"].as_str().expect("url");
            assert_eq!(
                sdk["url"].as_str(),
                Some(url),
                "the SDK sent a different URL (seed {seed})"
            );
            let body = req["body_b64"]
                .as_str()
                .map(|b| {
                    base64::engine::general_purpose::STANDARD
                        .decode(b)
                        .expect("b64")
                })
                .unwrap_or_default();
            let method = req["method"].as_str().expect("method");
            let ours = signer
                .sign(
                    method,
                    url,
                    req["date"].as_str().expect("date"),
                    &body,
                    req["content_type"].as_str().expect("ct"),
                )
                .expect("signs");
            let sdk_headers: BTreeMap<String, String> =
                serde_json::from_value(sdk["headers"].clone()).expect("headers map");
            let our_headers: BTreeMap<String, String> = ours
                .headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.clone()))
                .collect();
            assert_eq!(
                our_headers, sdk_headers,
                "{method} {url} (key {}, seed {seed})",
                k.name
            );
            assert_eq!(
                Some(ours.authorization.as_str()),
                sdk["authorization"].as_str(),
                "{method} {url} (seed {seed})"
            );
            total += 1;
        }
    }
    eprintln!("live cross-check: {total} requests signed identically by Rust and the oci SDK");
}
