//! Integration tests for the OCI stand-in over loopback HTTP, with a raw client and an independent signer.
//!
//! The signer here is written from OCI's documented rules, separately from
//! the production signer, so that a wrong verifier cannot hide behind a
//! matching wrong client. Each tamper case must be refused with its reason.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use rsa::pkcs8::{DecodePrivateKey as _, EncodePublicKey as _, LineEnding};
use rsa::{Pkcs1v15Sign, RsaPrivateKey};
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use watchdog_standins::oci::{Fault, LifecycleState, OciOptions, OciStandin};

const KEY_ID: &str = "ocid1.tenancy.oc1..t/ocid1.user.oc1..u/aa:bb";
const INSTANCE: &str = "ocid1.instance.oc1.phx.standintest";

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

fn private_key() -> RsaPrivateKey {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/oci/keys/pkcs8.pem");
    let pem = std::fs::read_to_string(path).expect("fixture key");
    RsaPrivateKey::from_pkcs8_pem(&pem).expect("parses")
}

/// How a test request deviates from a correctly signed one.
#[derive(Default, Clone)]
struct Tamper {
    skip_signed: Option<&'static str>,
    date: Option<String>,
    digest: Option<String>,
    content_length: Option<usize>,
    key_id: Option<&'static str>,
    flip_signature: bool,
    retry_token: Option<&'static str>,
    sign_body_with: Option<Vec<u8>>,
}

fn send(standin: &OciStandin, method: &str, target: &str, body: &[u8], t: &Tamper) -> Reply {
    let key = private_key();
    let host = standin.addr().to_string();
    let date = t
        .date
        .clone()
        .unwrap_or_else(|| httpdate::fmt_http_date(SystemTime::now()));
    let with_body = method == "POST" || method == "PUT";
    let signed_body = t.sign_body_with.clone().unwrap_or_else(|| body.to_vec());
    let digest = t.digest.clone().unwrap_or_else(|| {
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&signed_body))
    });
    let length = t.content_length.unwrap_or(body.len());
    let mut names = vec!["date", "(request-target)", "host"];
    if with_body {
        names.extend(["content-length", "content-type", "x-content-sha256"]);
    }
    names.retain(|n| Some(*n) != t.skip_signed);
    let lines: Vec<String> = names
        .iter()
        .map(|n| match *n {
            "date" => format!("date: {date}"),
            "(request-target)" => format!("(request-target): {} {target}", method.to_lowercase()),
            "host" => format!("host: {host}"),
            "content-length" => format!("content-length: {length}"),
            "content-type" => "content-type: application/json".to_string(),
            _ => format!("x-content-sha256: {digest}"),
        })
        .collect();
    let mut sig = key
        .sign(
            Pkcs1v15Sign::new::<Sha256>(),
            &Sha256::digest(lines.join("\n").as_bytes()),
        )
        .expect("sign");
    if t.flip_signature {
        sig[10] ^= 1;
    }
    let auth = format!(
        "Signature version=\"1\",keyId=\"{}\",algorithm=\"rsa-sha256\",headers=\"{}\",signature=\"{}\"",
        t.key_id.unwrap_or(KEY_ID),
        names.join(" "),
        base64::engine::general_purpose::STANDARD.encode(sig)
    );
    let mut req = format!(
        "{method} {target} HTTP/1.1\r\nHost: {host}\r\ndate: {date}\r\nauthorization: {auth}\r\nConnection: close\r\n"
    );
    if with_body {
        req.push_str(&format!(
            "Content-Length: {length}\r\ncontent-type: application/json\r\nx-content-sha256: {digest}\r\n"
        ));
    }
    if let Some(token) = t.retry_token {
        req.push_str(&format!("opc-retry-token: {token}\r\n"));
    }
    req.push_str("\r\n");
    raw(standin, req.as_bytes(), body)
}

fn raw(standin: &OciStandin, head: &[u8], body: &[u8]) -> Reply {
    let mut stream = TcpStream::connect(standin.addr()).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream.write_all(head).expect("write head");
    stream.write_all(body).expect("write body");
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_string(),
    }
}

fn admin(standin: &OciStandin, method: &str, path: &str, body: &str) -> Reply {
    let head = format!(
        "{method} /_standin/{path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    raw(standin, head.as_bytes(), body.as_bytes())
}

fn standin() -> OciStandin {
    let s = OciStandin::start_with(OciOptions {
        transition_time: Duration::from_millis(20),
        ..OciOptions::default()
    })
    .expect("start");
    let public = private_key()
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .expect("pem");
    s.register_key(KEY_ID, &public).expect("register");
    s.add_instance(INSTANCE, LifecycleState::Running);
    s
}

fn get_target() -> String {
    format!("/20160918/instances/{INSTANCE}")
}

fn action_target(action: &str) -> String {
    format!("/20160918/instances/{INSTANCE}?action={action}")
}

#[test]
fn a_correctly_signed_get_returns_the_instance_with_a_request_id() {
    let s = standin();
    let r = send(&s, "GET", &get_target(), b"", &Tamper::default());
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["lifecycleState"], "RUNNING");
    assert_eq!(r.json()["id"], INSTANCE);
    assert!(r.header("opc-request-id").is_some());
    let rec = &s.requests()[0];
    assert!(rec.signature_ok);
    assert_eq!(rec.key_id.as_deref(), Some(KEY_ID));
}

#[test]
fn every_kind_of_bad_signature_is_refused_with_its_reason() {
    let s = standin();
    let old = httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(400));
    let cases: Vec<(&str, Tamper, &str)> = vec![
        (
            "GET",
            Tamper {
                skip_signed: Some("host"),
                ..Tamper::default()
            },
            "required header `host` is not signed",
        ),
        (
            "GET",
            Tamper {
                skip_signed: Some("(request-target)"),
                ..Tamper::default()
            },
            "`(request-target)` is not signed",
        ),
        (
            "POST",
            Tamper {
                skip_signed: Some("x-content-sha256"),
                ..Tamper::default()
            },
            "`x-content-sha256` is not signed",
        ),
        (
            "POST",
            Tamper {
                skip_signed: Some("content-length"),
                ..Tamper::default()
            },
            "`content-length` is not signed",
        ),
        (
            "GET",
            Tamper {
                date: Some(old),
                ..Tamper::default()
            },
            "from the server's clock",
        ),
        (
            "POST",
            Tamper {
                sign_body_with: Some(b"other".to_vec()),
                ..Tamper::default()
            },
            "x-content-sha256 does not match",
        ),
        (
            "GET",
            Tamper {
                key_id: Some("a/b/c"),
                ..Tamper::default()
            },
            "unknown keyId a/b/c",
        ),
        (
            "GET",
            Tamper {
                flip_signature: true,
                ..Tamper::default()
            },
            "signature does not verify",
        ),
    ];
    for (method, tamper, reason) in cases {
        let target = if method == "GET" {
            get_target()
        } else {
            action_target("STOP")
        };
        let r = send(&s, method, &target, b"{}", &tamper);
        assert_eq!(
            r.status, 401,
            "{method} expected refusal for {reason}: {}",
            r.body
        );
        assert_eq!(r.json()["code"], "NotAuthenticated");
        let message = r.json()["message"].as_str().unwrap_or_default().to_string();
        assert!(
            message.contains(reason),
            "{message:?} should contain {reason:?}"
        );
        assert!(r.header("opc-request-id").is_some());
    }
    assert_eq!(
        s.instance_state(INSTANCE),
        Some(LifecycleState::Running),
        "nothing acted"
    );
    // And the untampered request passes.
    let r = send(
        &s,
        "POST",
        &action_target("STOP"),
        b"{}",
        &Tamper::default(),
    );
    assert_eq!(r.status, 200, "{}", r.body);
}

#[test]
fn unsigned_requests_are_refused() {
    let s = standin();
    let head = format!(
        "GET {} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        get_target()
    );
    let r = raw(&s, head.as_bytes(), b"");
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["message"], "missing authorization header");
}

#[test]
fn lifecycle_stop_then_start_and_wrong_state_conflicts() {
    let s = standin();
    let ok = Tamper::default();
    let r = send(&s, "POST", &action_target("STOP"), b"", &ok);
    assert_eq!(
        (r.status, r.json()["lifecycleState"].as_str()),
        (200, Some("STOPPING"))
    );
    let r = send(&s, "POST", &action_target("STOP"), b"", &ok);
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (409, Some("IncorrectState"))
    );
    std::thread::sleep(Duration::from_millis(60));
    assert_eq!(s.instance_state(INSTANCE), Some(LifecycleState::Stopped));
    let r = send(&s, "POST", &action_target("START"), b"", &ok);
    assert_eq!(
        (r.status, r.json()["lifecycleState"].as_str()),
        (200, Some("STARTING"))
    );
    std::thread::sleep(Duration::from_millis(60));
    let r = send(&s, "GET", &get_target(), b"", &ok);
    assert_eq!(r.json()["lifecycleState"], "RUNNING");
    let r = send(
        &s,
        "GET",
        "/20160918/instances/ocid1.instance.oc1.phx.nosuch",
        b"",
        &ok,
    );
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (404, Some("NotAuthorizedOrNotFound"))
    );
}

#[test]
fn a_stuck_instance_stays_stopping() {
    let s = standin();
    s.stick_in_stopping(INSTANCE);
    send(&s, "POST", &action_target("STOP"), b"", &Tamper::default());
    std::thread::sleep(Duration::from_millis(80));
    assert_eq!(s.instance_state(INSTANCE), Some(LifecycleState::Stopping));
}

#[test]
fn retry_tokens_replay_the_first_answer() {
    let s = standin();
    let t = Tamper {
        retry_token: Some("tok-1"),
        ..Tamper::default()
    };
    let first = send(&s, "POST", &action_target("STOP"), b"", &t);
    std::thread::sleep(Duration::from_millis(60));
    let second = send(&s, "POST", &action_target("STOP"), b"", &t);
    assert_eq!((first.status, second.status), (200, 200));
    assert_eq!(first.body, second.body, "the original answer is replayed");
    assert_eq!(s.actions_performed(INSTANCE), ["STOP"]);
    let conflict = send(&s, "POST", &action_target("START"), b"", &t);
    assert_eq!(
        conflict.status, 409,
        "a token reused for another action conflicts"
    );
}

#[test]
fn faults_apply_in_order_and_only_where_they_fit() {
    let s = standin();
    s.fail_next(
        1,
        Fault::Throttle {
            retry_after: Some(7),
        },
    );
    s.fail_next(1, Fault::OutOfCapacityOnStart);
    s.fail_next(1, Fault::Status500);
    let ok = Tamper::default();
    let r = send(&s, "GET", &get_target(), b"", &ok);
    assert_eq!((r.status, r.header("Retry-After")), (429, Some("7")));
    // The capacity fault waits for a START; the 500 takes this GET.
    let r = send(&s, "GET", &get_target(), b"", &ok);
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (500, Some("InternalError"))
    );
    assert_eq!(
        send(&s, "POST", &action_target("STOP"), b"", &ok).status,
        200
    );
    std::thread::sleep(Duration::from_millis(60));
    let r = send(&s, "POST", &action_target("START"), b"", &ok);
    assert_eq!(
        (r.status, r.json()["message"].as_str()),
        (500, Some("Out of host capacity."))
    );
    assert_eq!(s.instance_state(INSTANCE), Some(LifecycleState::Stopped));
    assert_eq!(
        send(&s, "POST", &action_target("START"), b"", &ok).status,
        200
    );
}

#[test]
fn admin_api_controls_faults_instances_and_shows_requests() {
    let s = standin();
    assert_eq!(
        admin(
            &s,
            "PUT",
            "instances/ocid1.instance.oc1.iad.x?state=STOPPED",
            ""
        )
        .status,
        200
    );
    let states = admin(&s, "GET", "instances", "").json();
    assert_eq!(states["ocid1.instance.oc1.iad.x"], "STOPPED");
    assert_eq!(
        admin(
            &s,
            "POST",
            "faults",
            r#"{"fault":"unauthorized","count":1}"#
        )
        .status,
        200
    );
    let r = send(&s, "GET", &get_target(), b"", &Tamper::default());
    assert_eq!(r.status, 401);
    assert_eq!(
        admin(&s, "POST", "faults", r#"{"fault":"nonsense"}"#).status,
        400
    );
    let requests = admin(&s, "GET", "requests", "").json();
    assert_eq!(
        requests.as_array().map(Vec::len),
        Some(1),
        "admin calls are not recorded"
    );
    assert_eq!(requests[0]["signature_ok"], true);
    assert_eq!(requests[0]["status"], 401);
}

#[test]
fn a_hung_request_gets_no_answer() {
    let s = OciStandin::start_with(OciOptions {
        hang_time: Duration::from_secs(30),
        ..OciOptions::default()
    })
    .expect("start");
    let public = private_key()
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .expect("pem");
    s.register_key(KEY_ID, &public).expect("register");
    s.add_instance(INSTANCE, LifecycleState::Running);
    s.fail_next(1, Fault::Hang);
    let (tx, rx) = std::sync::mpsc::channel();
    let addr = s.addr();
    let s = std::sync::Arc::new(s);
    let s2 = std::sync::Arc::clone(&s);
    std::thread::spawn(move || {
        let r = send(&s2, "GET", &get_target(), b"", &Tamper::default());
        let _ = tx.send(r.status);
    });
    assert!(
        rx.recv_timeout(Duration::from_millis(500)).is_err(),
        "hung request must not be answered ({addr})"
    );
    assert_eq!(s.requests().last().map(|r| r.status), Some(0));
    // Faults are consumed: the next request is answered.
    assert_eq!(
        send(&s, "GET", &get_target(), b"", &Tamper::default()).status,
        200
    );
}
