//! The Rust compute client against the OCI stand-in, which verifies every signature.
//!
//! Covers each key format end to end (GET, STOP, START), the retry rules
//! (429 + Retry-After, 500, timeouts, the retry budget, one opc-retry-token
//! per action), and the typed errors a caller acts on.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use oracle_watchdog::http::Timeouts;
use oracle_watchdog::oci::{
    ApiKey, ComputeClient, EndpointResolver, InstanceAction, LifecycleState, OciErrorKind,
    RequestSigner, RetryPolicy,
};
use watchdog_standins::oci::{Fault, LifecycleState as StandinState, OciOptions, OciStandin};

const TENANCY: &str = "ocid1.tenancy.oc1..clienttest";
const USER: &str = "ocid1.user.oc1..clienttest";
const INSTANCE: &str = "ocid1.instance.oc1.iad.clienttestinstance";
const PASS_PHRASE: &str = "correct horse battery staple";

/// (file, pass phrase) of every accepted key format in the fixtures.
const KEYS: &[(&str, Option<&str>)] = &[
    ("pkcs8.pem", None),
    ("pkcs1.pem", None),
    ("pkcs8_encrypted.pem", Some(PASS_PHRASE)),
    ("console_oci_api_key.pem", None),
    ("pkcs1_crlf.pem", None),
];

fn key_path(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/oci/keys")
        .join(file)
}

fn load_key(file: &str, pass: Option<&str>) -> ApiKey {
    ApiKey::load(&key_path(file), pass).unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn key_id(key: &ApiKey) -> String {
    format!("{TENANCY}/{USER}/{}", key.fingerprint())
}

/// A client whose sleeps are recorded instead of slept.
struct Harness {
    standin: OciStandin,
    client: ComputeClient,
    sleeps: Arc<Mutex<Vec<Duration>>>,
}

fn harness_with(
    options: OciOptions,
    key_file: &str,
    pass: Option<&str>,
    retry: RetryPolicy,
) -> Harness {
    let standin = OciStandin::start_with(options).expect("stand-in starts");
    let key = load_key(key_file, pass);
    standin
        .register_key(&key_id(&key), &key.public_key_pem())
        .expect("register key");
    let client = client_for(&standin, key, retry);
    let sleeps = Arc::new(Mutex::new(Vec::new()));
    let recorded = Arc::clone(&sleeps);
    let client = client.with_sleeper(move |d| recorded.lock().expect("sleeps").push(d));
    Harness {
        standin,
        client,
        sleeps,
    }
}

fn client_for(standin: &OciStandin, key: ApiKey, retry: RetryPolicy) -> ComputeClient {
    let signer = RequestSigner::new(key_id(&key), key);
    let endpoints =
        EndpointResolver::new(Some(&standin.base_url()), "us-ashburn-1").expect("endpoint");
    ComputeClient::new(signer, endpoints)
        .with_retry_policy(retry)
        .with_timeouts(Timeouts::new(
            Duration::from_secs(2),
            Duration::from_secs(5),
        ))
}

fn harness() -> Harness {
    let options = OciOptions {
        transition_time: Duration::from_millis(30),
        ..OciOptions::default()
    };
    harness_with(options, "pkcs8.pem", None, RetryPolicy::default())
}

fn wait_for(client: &ComputeClient, want: LifecycleState) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let state = client
            .get_instance(INSTANCE, None)
            .expect("get instance")
            .lifecycle_state;
        if state == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "instance never reached {want}, last {state}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn every_key_format_gets_stops_and_starts_with_verified_signatures() {
    for (file, pass) in KEYS {
        let options = OciOptions {
            transition_time: Duration::from_millis(20),
            ..OciOptions::default()
        };
        let h = harness_with(options, file, *pass, RetryPolicy::default());
        h.standin.add_instance(INSTANCE, StandinState::Running);

        let got = h.client.get_instance(INSTANCE, None).expect("get instance");
        assert_eq!(got.id, INSTANCE);
        assert_eq!(got.lifecycle_state, LifecycleState::Running, "{file}");
        assert!(got.opc_request_id.is_some(), "opc-request-id is surfaced");

        let stopped = h
            .client
            .instance_action(INSTANCE, None, InstanceAction::Stop, "token-stop")
            .expect("stop");
        assert_eq!(stopped.lifecycle_state, LifecycleState::Stopping);
        wait_for(&h.client, LifecycleState::Stopped);
        let started = h
            .client
            .instance_action(INSTANCE, None, InstanceAction::Start, "token-start")
            .expect("start");
        assert_eq!(started.lifecycle_state, LifecycleState::Starting);
        wait_for(&h.client, LifecycleState::Running);

        let requests = h.standin.requests();
        assert!(requests.len() >= 5);
        for r in &requests {
            assert!(
                r.signature_ok,
                "{file}: {:?} rejected: {:?}",
                r.path, r.reason
            );
            assert_eq!(r.status, 200);
        }
        assert_eq!(
            h.standin.actions_performed(INSTANCE),
            ["STOP", "START"],
            "{file}"
        );
    }
}

#[test]
fn throttling_is_retried_after_the_servers_retry_after() {
    let h = harness();
    h.standin.add_instance(INSTANCE, StandinState::Running);
    h.standin.fail_next(
        2,
        Fault::Throttle {
            retry_after: Some(3),
        },
    );
    let got = h
        .client
        .get_instance(INSTANCE, None)
        .expect("succeeds after throttling");
    assert_eq!(got.lifecycle_state, LifecycleState::Running);
    assert_eq!(
        *h.sleeps.lock().expect("sleeps"),
        [Duration::from_secs(3), Duration::from_secs(3)]
    );
    let statuses: Vec<u16> = h.standin.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [429, 429, 200]);
}

#[test]
fn throttling_beyond_the_budget_is_a_throttled_error() {
    let retry = RetryPolicy {
        max_attempts: 3,
        ..RetryPolicy::default()
    };
    let h = harness_with(OciOptions::default(), "pkcs8.pem", None, retry);
    h.standin.add_instance(INSTANCE, StandinState::Running);
    h.standin
        .fail_next(10, Fault::Throttle { retry_after: None });
    let err = h
        .client
        .get_instance(INSTANCE, None)
        .expect_err("still throttled");
    assert_eq!(err.kind, OciErrorKind::Throttled);
    assert_eq!(err.attempts, 3);
    assert!(err.is_retryable());
    assert!(err.opc_request_id.is_some());
    assert_eq!(h.standin.requests().len(), 3);
    // Without Retry-After the client backs off exponentially (jittered).
    let sleeps = h.sleeps.lock().expect("sleeps").clone();
    assert_eq!(sleeps.len(), 2);
    assert!(
        sleeps[0] >= Duration::from_millis(500) && sleeps[0] <= Duration::from_secs(1),
        "{sleeps:?}"
    );
    assert!(
        sleeps[1] >= Duration::from_secs(1) && sleeps[1] <= Duration::from_secs(2),
        "{sleeps:?}"
    );
}

#[test]
fn server_errors_are_retried_with_the_same_retry_token() {
    let h = harness();
    h.standin.add_instance(INSTANCE, StandinState::Running);
    h.standin.fail_next(2, Fault::Status500);
    let got = h
        .client
        .instance_action(INSTANCE, None, InstanceAction::Stop, "cycle-42-stop")
        .expect("stop");
    assert_eq!(got.lifecycle_state, LifecycleState::Stopping);
    let requests = h.standin.requests();
    assert_eq!(
        requests.iter().map(|r| r.status).collect::<Vec<_>>(),
        [500, 500, 200]
    );
    for r in &requests {
        assert_eq!(r.method, "POST");
        assert_eq!(r.action.as_deref(), Some("STOP"));
        assert_eq!(r.retry_token.as_deref(), Some("cycle-42-stop"));
        assert!(r.signature_ok);
    }
    assert_eq!(h.sleeps.lock().expect("sleeps").len(), 2);
    assert_eq!(h.standin.actions_performed(INSTANCE), ["STOP"]);
}

#[test]
fn repeating_an_action_with_its_token_does_not_act_twice() {
    let h = harness();
    h.standin.add_instance(INSTANCE, StandinState::Running);
    let first = h
        .client
        .instance_action(INSTANCE, None, InstanceAction::Stop, "same-token")
        .expect("stop");
    let again = h
        .client
        .instance_action(INSTANCE, None, InstanceAction::Stop, "same-token")
        .expect("replayed");
    assert_eq!(first.lifecycle_state, again.lifecycle_state);
    assert_eq!(h.standin.actions_performed(INSTANCE), ["STOP"]);
}

#[test]
fn wrong_state_is_incorrect_state_and_not_retried() {
    let h = harness();
    h.standin.add_instance(INSTANCE, StandinState::Stopped);
    let err = h
        .client
        .instance_action(INSTANCE, None, InstanceAction::Stop, "t1")
        .expect_err("409");
    assert!(
        matches!(err.kind, OciErrorKind::IncorrectState { .. }),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    assert_eq!(h.standin.requests().len(), 1);
    let shown = err.to_string();
    assert!(
        shown.contains("InstanceAction STOP") && shown.contains(INSTANCE),
        "{shown}"
    );
}

#[test]
fn out_of_capacity_on_start_is_its_own_error_and_not_retried() {
    let h = harness();
    h.standin.add_instance(INSTANCE, StandinState::Stopped);
    h.standin.fail_next(1, Fault::OutOfCapacityOnStart);
    let err = h
        .client
        .instance_action(INSTANCE, None, InstanceAction::Start, "t-start")
        .expect_err("capacity");
    assert!(
        matches!(&err.kind, OciErrorKind::OutOfCapacity { message } if message == "Out of host capacity."),
        "{err:?}"
    );
    assert_eq!(
        h.standin.requests().len(),
        1,
        "the caller decides when to retry START"
    );
    assert_eq!(
        h.standin.instance_state(INSTANCE),
        Some(StandinState::Stopped)
    );
    // The next START (capacity back) works.
    h.client
        .instance_action(INSTANCE, None, InstanceAction::Start, "t-start-2")
        .expect("start");
}

#[test]
fn a_key_the_server_does_not_know_is_not_authenticated_with_the_reason() {
    let h = harness();
    h.standin.add_instance(INSTANCE, StandinState::Running);
    // Right keyId, wrong private key: the signature does not verify.
    let registered = load_key("pkcs8.pem", None);
    let other = load_key("pkcs1.pem", None);
    let signer = RequestSigner::new(key_id(&registered), other);
    let endpoints =
        EndpointResolver::new(Some(&h.standin.base_url()), "us-ashburn-1").expect("endpoint");
    let impostor = ComputeClient::new(signer, endpoints).with_sleeper(|_| {});
    let err = impostor.get_instance(INSTANCE, None).expect_err("401");
    assert_eq!(
        err.kind,
        OciErrorKind::NotAuthenticated {
            message: "signature does not verify".into()
        }
    );
    assert!(!err.is_retryable());
    assert_eq!(err.attempts, 1);

    // An unregistered keyId.
    let unknown = client_for(
        &h.standin,
        load_key("pkcs1_crlf.pem", None),
        RetryPolicy::default(),
    );
    let err = unknown.get_instance(INSTANCE, None).expect_err("401");
    assert!(
        matches!(&err.kind, OciErrorKind::NotAuthenticated { message } if message.starts_with("unknown keyId")),
        "{err:?}"
    );
    assert!(h.standin.requests().iter().all(|r| !r.signature_ok));
}

#[test]
fn a_clock_far_off_is_rejected_by_the_date_check() {
    let h = harness();
    h.standin.add_instance(INSTANCE, StandinState::Running);
    let skewed = h
        .client
        .clone()
        .with_clock(|| SystemTime::now() - Duration::from_secs(600));
    let err = skewed.get_instance(INSTANCE, None).expect_err("401");
    assert!(
        matches!(&err.kind, OciErrorKind::NotAuthenticated { message } if message.contains("date")),
        "{err:?}"
    );
    h.client
        .get_instance(INSTANCE, None)
        .expect("the right clock works");
}

#[test]
fn an_unknown_instance_is_not_authorized_or_not_found() {
    let h = harness();
    let err = h
        .client
        .get_instance("ocid1.instance.oc1.iad.nosuch", None)
        .expect_err("404");
    assert!(
        matches!(err.kind, OciErrorKind::NotAuthorizedOrNotFound { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("GetInstance ocid1.instance.oc1.iad.nosuch")
    );
    assert!(err.opc_request_id.is_some());
}

#[test]
fn a_hanging_server_becomes_transient_after_the_timeout_and_retries() {
    let options = OciOptions {
        hang_time: Duration::from_secs(5),
        ..OciOptions::default()
    };
    let retry = RetryPolicy {
        max_attempts: 2,
        ..RetryPolicy::default()
    };
    let h = harness_with(options, "pkcs8.pem", None, retry);
    let client = h.client.clone().with_timeouts(Timeouts::new(
        Duration::from_millis(500),
        Duration::from_millis(300),
    ));
    h.standin.add_instance(INSTANCE, StandinState::Running);
    h.standin.fail_next(2, Fault::Hang);
    let err = client.get_instance(INSTANCE, None).expect_err("hangs");
    assert!(
        matches!(&err.kind, OciErrorKind::Transient { detail } if detail.contains("timed out")),
        "{err:?}"
    );
    assert_eq!(err.attempts, 2);
    assert!(err.is_retryable());
    assert_eq!(h.standin.requests().len(), 2);
    // Once the fault is gone the same client works.
    client.get_instance(INSTANCE, None).expect("recovers");
}

#[test]
fn a_refused_connection_is_transient() {
    let standin = OciStandin::start().expect("start");
    let url = standin.base_url();
    drop(standin);
    let key = load_key("pkcs8.pem", None);
    let endpoints = EndpointResolver::new(Some(&url), "us-ashburn-1").expect("endpoint");
    let client = ComputeClient::new(RequestSigner::new(key_id(&key), key), endpoints)
        .with_retry_policy(RetryPolicy {
            max_attempts: 2,
            ..RetryPolicy::default()
        })
        .with_sleeper(|_| {});
    let err = client
        .get_instance(INSTANCE, None)
        .expect_err("nothing listens");
    assert!(
        matches!(err.kind, OciErrorKind::Transient { .. }),
        "{err:?}"
    );
    assert!(err.is_connectivity());
}
