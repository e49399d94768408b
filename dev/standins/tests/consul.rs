//! Integration tests for the Consul stand-in, over real loopback HTTP with a raw client.

use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use serde_json::{Value, json};
use watchdog_standins::consul::{ConsulOptions, ConsulStandin, Fault, SessionBehavior};

/// Generous bound for "promptly": only fails if something is stuck.
const PROMPT: Duration = Duration::from_secs(10);

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn index(&self) -> u64 {
        self.header("X-Consul-Index")
            .expect("X-Consul-Index header")
            .parse()
            .expect("numeric index")
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn write_request(
    stream: &mut TcpStream,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    close: bool,
) -> io::Result<()> {
    let mut req = format!(
        "{method} {target} HTTP/1.1\r\nHost: consul\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if close {
        req.push_str("Connection: close\r\n");
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()
}

fn read_reply(reader: &mut BufReader<TcpStream>) -> io::Result<Reply> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(io::Error::new(
            ErrorKind::UnexpectedEof,
            "closed before a status line",
        ));
    }
    let status: u16 = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            io::Error::new(ErrorKind::InvalidData, format!("bad status line {line:?}"))
        })?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':').expect("header with colon");
        headers.push((k.to_string(), v.trim().to_string()));
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.parse().expect("numeric content-length"))
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    Ok(Reply {
        status,
        headers,
        body,
    })
}

fn try_call(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> io::Result<Reply> {
    let mut stream = TcpStream::connect_timeout(&addr, PROMPT)?;
    stream.set_read_timeout(Some(timeout))?;
    write_request(&mut stream, method, target, headers, body, true)?;
    read_reply(&mut BufReader::new(stream))
}

fn call(addr: SocketAddr, method: &str, target: &str, body: &[u8]) -> Reply {
    try_call(addr, method, target, &[], body, Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{method} {target}: {e}"))
}

fn start_factor(expiry_factor: f64) -> ConsulStandin {
    ConsulStandin::start_with(ConsulOptions {
        expiry_factor,
        ..ConsulOptions::default()
    })
    .expect("start stand-in")
}

fn create_session(addr: SocketAddr, body: Value) -> String {
    let reply = call(
        addr,
        "PUT",
        "/v1/session/create",
        body.to_string().as_bytes(),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()["ID"].as_str().expect("ID").to_string()
}

fn acquire(addr: SocketAddr, key: &str, session: &str, value: &str) -> Reply {
    call(
        addr,
        "PUT",
        &format!("/v1/kv/{key}?acquire={session}"),
        value.as_bytes(),
    )
}

#[test]
fn session_create_renew_destroy() {
    let consul = ConsulStandin::start().expect("start");
    let addr = consul.addr();
    let id = create_session(
        addr,
        json!({"Name": "oracle-watchdog-n1", "TTL": "30s", "Behavior": "delete", "LockDelay": "0s"}),
    );

    let info = call(addr, "GET", &format!("/v1/session/info/{id}"), b"");
    let info = info.json();
    assert_eq!(info[0]["Name"], "oracle-watchdog-n1");
    assert_eq!(info[0]["Behavior"], "delete");
    assert_eq!(info[0]["TTL"], "30s");
    assert_eq!(info[0]["LockDelay"], 0);

    let renewed = call(addr, "PUT", &format!("/v1/session/renew/{id}"), b"");
    assert_eq!(renewed.status, 200);
    assert_eq!(renewed.json()[0]["ID"], id.as_str());

    let listed = call(addr, "GET", "/v1/session/list", b"").json();
    assert_eq!(listed.as_array().map(Vec::len), Some(1));

    let destroyed = call(addr, "PUT", &format!("/v1/session/destroy/{id}"), b"");
    assert_eq!((destroyed.status, destroyed.json()), (200, json!(true)));
    let gone = call(addr, "PUT", &format!("/v1/session/renew/{id}"), b"");
    assert_eq!(gone.status, 404);
    assert_eq!(gone.text(), format!("Session id '{id}' not found"));
    assert_eq!(
        call(addr, "GET", &format!("/v1/session/info/{id}"), b"").json(),
        json!([])
    );
    assert!(consul.sessions().is_empty());
}

#[test]
fn session_create_validates_like_consul() {
    let consul = ConsulStandin::start().expect("start");
    let addr = consul.addr();
    for body in [
        json!({"TTL": "5s"}),
        json!({"TTL": "25h"}),
        json!({"TTL": "soon"}),
        json!({"Behavior": "explode"}),
    ] {
        let reply = call(
            addr,
            "PUT",
            "/v1/session/create",
            body.to_string().as_bytes(),
        );
        assert_eq!(reply.status, 400, "{body} -> {}", reply.text());
    }
    let reply = call(addr, "PUT", "/v1/session/create", b"{not json");
    assert_eq!(reply.status, 400);

    // Omitted LockDelay defaults to 15 s; lower-case keys (as py-consul sends) work.
    let id = create_session(
        addr,
        json!({"name": "n", "ttl": "10s", "behavior": "delete"}),
    );
    let view = consul
        .sessions()
        .into_iter()
        .find(|s| s.id == id)
        .expect("session");
    assert_eq!(view.lock_delay, Duration::from_secs(15));
    assert_eq!(view.behavior, SessionBehavior::Delete);
    assert_eq!(view.ttl, Some(Duration::from_secs(10)));
    assert_eq!(view.checks, vec!["serfHealth".to_string()]);
    // A bare number below 1000 is seconds, as in Consul.
    let id = create_session(addr, json!({"LockDelay": 5}));
    let view = consul
        .sessions()
        .into_iter()
        .find(|s| s.id == id)
        .expect("session");
    assert_eq!(view.lock_delay, Duration::from_secs(5));
    assert_eq!(view.behavior, SessionBehavior::Release);
}

#[test]
fn ttl_expiry_deletes_keys_with_delete_behavior_and_wakes_blocking_queries() {
    let consul = start_factor(0.1); // 10 s TTL expires after 1 s
    let addr = consul.addr();
    let id = create_session(
        addr,
        json!({"TTL": "10s", "Behavior": "delete", "LockDelay": "0s"}),
    );
    assert_eq!(
        acquire(addr, "oracle-watchdog/nodes/n1", &id, "alive").json(),
        json!(true)
    );
    let first = call(addr, "GET", "/v1/kv/oracle-watchdog/nodes/?recurse", b"");
    assert_eq!(first.json()[0]["Session"], id.as_str());

    let target = format!(
        "/v1/kv/oracle-watchdog/nodes/?recurse&index={}&wait=60s",
        first.index()
    );
    let blocked =
        try_call(addr, "GET", &target, &[], b"", Duration::from_secs(90)).expect("blocking query");
    assert_eq!(blocked.status, 404, "session expiry must delete the key");
    assert!(blocked.index() > first.index());
    assert!(consul.sessions().is_empty());
    assert_eq!(consul.kv_get("oracle-watchdog/nodes/n1"), None);
}

#[test]
fn ttl_expiry_releases_keys_with_release_behavior() {
    let consul = start_factor(0.1);
    let addr = consul.addr();
    let id = create_session(addr, json!({"TTL": "10s", "LockDelay": "0s"}));
    assert_eq!(acquire(addr, "lock/a", &id, "v1").json(), json!(true));
    assert!(consul.wait_for_kv("lock/a", PROMPT, |e| e.is_some_and(|e| e.session.is_none())));
    let entry = consul.kv_get("lock/a").expect("released key stays");
    assert_eq!(entry.value, b"v1");
    assert_eq!(entry.lock_index, 1);
    let renew = call(addr, "PUT", &format!("/v1/session/renew/{id}"), b"");
    assert_eq!(renew.status, 404, "an expired session cannot be renewed");
}

#[test]
fn lock_delay_blocks_reacquire_until_it_passes() {
    let consul = ConsulStandin::start().expect("start");
    let addr = consul.addr();
    let a = create_session(addr, json!({"LockDelay": "2s"}));
    assert_eq!(acquire(addr, "k", &a, "a").json(), json!(true));
    call(addr, "PUT", &format!("/v1/session/destroy/{a}"), b"");
    let b = create_session(addr, json!({"LockDelay": "0s"}));
    assert_eq!(
        acquire(addr, "k", &b, "b").json(),
        json!(false),
        "within lock-delay"
    );
    let mut acquired = false;
    for _ in 0..100 {
        if acquire(addr, "k", &b, "b").json() == json!(true) {
            acquired = true;
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    assert!(acquired, "acquire must succeed once the lock-delay passed");
    assert_eq!(consul.kv_get("k").and_then(|e| e.session), Some(b.clone()));

    // With LockDelay 0s a lost session's key is free at once.
    call(addr, "PUT", &format!("/v1/session/destroy/{b}"), b"");
    let c = create_session(addr, json!({}));
    assert_eq!(acquire(addr, "k", &c, "c").json(), json!(true));
}

#[test]
fn acquire_release_conflicts_and_cas() {
    let consul = ConsulStandin::start().expect("start");
    let addr = consul.addr();
    let a = create_session(addr, json!({"LockDelay": "0s"}));
    let b = create_session(addr, json!({"LockDelay": "0s"}));
    assert_eq!(acquire(addr, "k", &a, "one").json(), json!(true));
    assert_eq!(acquire(addr, "k", &b, "stolen").json(), json!(false));
    assert_eq!(
        acquire(addr, "k", &a, "two").json(),
        json!(true),
        "re-acquire by the holder"
    );
    let held = consul.kv_get("k").expect("k");
    assert_eq!((held.value.as_slice(), held.lock_index), (&b"two"[..], 1));

    // A plain PUT keeps the lock.
    assert_eq!(call(addr, "PUT", "/v1/kv/k", b"three").json(), json!(true));
    assert_eq!(consul.kv_get("k").and_then(|e| e.session), Some(a.clone()));

    assert_eq!(
        call(addr, "PUT", &format!("/v1/kv/k?release={b}"), b"").json(),
        json!(false)
    );
    assert_eq!(
        call(addr, "PUT", &format!("/v1/kv/k?release={a}"), b"four").json(),
        json!(true)
    );
    assert_eq!(acquire(addr, "k", &b, "five").json(), json!(true));
    assert_eq!(consul.kv_get("k").map(|e| e.lock_index), Some(2));

    let unknown = acquire(addr, "k2", "00000000-0000-4000-8000-000000000000", "x");
    assert_eq!(unknown.status, 500);
    assert!(
        unknown.text().contains("invalid session"),
        "{}",
        unknown.text()
    );

    // cas=0 only creates; cas=N needs the current ModifyIndex.
    assert_eq!(
        call(addr, "PUT", "/v1/kv/c?cas=0", b"1").json(),
        json!(true)
    );
    assert_eq!(
        call(addr, "PUT", "/v1/kv/c?cas=0", b"2").json(),
        json!(false)
    );
    let m = consul.kv_get("c").expect("c").modify_index;
    assert_eq!(
        call(addr, "PUT", &format!("/v1/kv/c?cas={}", m + 100), b"3").json(),
        json!(false)
    );
    assert_eq!(
        call(addr, "PUT", &format!("/v1/kv/c?cas={m}"), b"4").json(),
        json!(true)
    );
    assert_eq!(consul.kv_get("c").map(|e| e.value), Some(b"4".to_vec()));
}

#[test]
fn recurse_keys_and_delete() {
    let consul = ConsulStandin::start().expect("start");
    let addr = consul.addr();
    for key in ["a/1", "a/2", "a/b/3", "b/1"] {
        call(addr, "PUT", &format!("/v1/kv/{key}"), key.as_bytes());
    }
    let all = call(addr, "GET", "/v1/kv/a/?recurse", b"").json();
    let keys: Vec<&str> = all
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|e| e["Key"].as_str())
        .collect();
    assert_eq!(keys, ["a/1", "a/2", "a/b/3"]);
    assert_eq!(all[0]["Value"], "YS8x"); // base64("a/1")
    assert_eq!(
        call(addr, "GET", "/v1/kv/a/?keys&separator=/", b"").json(),
        json!(["a/1", "a/2", "a/b/"])
    );
    assert_eq!(
        call(addr, "GET", "/v1/kv/?keys", b"").json(),
        json!(["a/1", "a/2", "a/b/3", "b/1"])
    );
    assert_eq!(call(addr, "GET", "/v1/kv/zzz/?keys", b"").status, 404);
    assert_eq!(call(addr, "GET", "/v1/kv/zzz/?recurse", b"").status, 404);
    let missing = call(addr, "GET", "/v1/kv/nope", b"");
    assert_eq!((missing.status, missing.body.len()), (404, 0));
    assert_eq!(call(addr, "GET", "/v1/kv/b/1?raw", b"").body, b"b/1");

    assert_eq!(
        call(addr, "DELETE", "/v1/kv/a/?recurse", b"").json(),
        json!(true)
    );
    assert_eq!(
        call(addr, "GET", "/v1/kv/?keys", b"").json(),
        json!(["b/1"])
    );
}

#[test]
fn blocking_query_returns_promptly_on_delete_and_waits_otherwise() {
    let consul = ConsulStandin::start().expect("start");
    let addr = consul.addr();
    call(addr, "PUT", "/v1/kv/nodes/n1", b"x");
    let first = call(addr, "GET", "/v1/kv/nodes/?recurse", b"");
    let index = first.index();

    // No change under the prefix: the query waits out `wait` and reports the same index,
    // even though an unrelated key changes meanwhile.
    let (tx, rx) = mpsc::channel();
    let target = format!("/v1/kv/nodes/?recurse&index={index}&wait=1s");
    thread::spawn(move || {
        let _ = tx.send(try_call(
            addr,
            "GET",
            &target,
            &[],
            b"",
            Duration::from_secs(60),
        ));
    });
    assert!(
        consul.wait_for_parked_queries(1, PROMPT),
        "the query must be parked"
    );
    call(addr, "PUT", "/v1/kv/elsewhere", b"y");
    let quiet = rx
        .recv_timeout(PROMPT)
        .expect("query ended")
        .expect("reply");
    assert_eq!((quiet.status, quiet.index()), (200, index));

    // A delete under the prefix wakes it long before its 5 minute wait.
    let (tx, rx) = mpsc::channel();
    let target = format!("/v1/kv/nodes/?recurse&index={index}&wait=5m");
    thread::spawn(move || {
        let _ = tx.send(try_call(
            addr,
            "GET",
            &target,
            &[],
            b"",
            Duration::from_secs(400),
        ));
    });
    assert!(
        consul.wait_for_parked_queries(1, PROMPT),
        "the query must be parked"
    );
    assert_eq!(
        call(addr, "DELETE", "/v1/kv/nodes/n1", b"").json(),
        json!(true)
    );
    let woke = rx
        .recv_timeout(PROMPT)
        .expect("blocking query must return after the delete")
        .expect("reply");
    assert_eq!(woke.status, 404);
    assert!(woke.index() > index);
}

#[test]
fn acl_token_required_and_recorded() {
    let consul = ConsulStandin::start_with(ConsulOptions {
        token: Some("s3cret".into()),
        ..ConsulOptions::default()
    })
    .expect("start");
    let addr = consul.addr();
    let denied = call(addr, "GET", "/v1/kv/x", b"");
    assert_eq!(
        (denied.status, denied.text().as_str()),
        (403, "Permission denied")
    );
    let wrong = try_call(
        addr,
        "GET",
        "/v1/kv/x",
        &[("X-Consul-Token", "nope")],
        b"",
        PROMPT,
    )
    .expect("reply");
    assert_eq!(wrong.status, 403);
    let ok = try_call(
        addr,
        "PUT",
        "/v1/kv/x",
        &[("X-Consul-Token", "s3cret")],
        b"v",
        PROMPT,
    )
    .expect("reply");
    assert_eq!(ok.status, 200);
    assert_eq!(call(addr, "GET", "/v1/kv/x?token=s3cret", b"").status, 200);
    assert_eq!(
        call(addr, "GET", "/v1/status/leader", b"").status,
        200,
        "status needs no token in Consul"
    );

    let tokens: Vec<Option<String>> = consul.requests().into_iter().map(|r| r.token).collect();
    assert_eq!(
        tokens[..4],
        [
            None,
            Some("nope".into()),
            Some("s3cret".into()),
            Some("s3cret".into())
        ]
    );
    assert!(
        !format!("{:?}", consul.requests()).contains("s3cret"),
        "Debug must not print tokens"
    );

    consul.require_token(None);
    assert_eq!(call(addr, "GET", "/v1/kv/x", b"").status, 200);
}

#[test]
fn refuse_closes_connections_then_recovers_on_the_same_port() {
    let consul = ConsulStandin::start().expect("start");
    let addr = consul.addr();
    // An idle keep-alive connection from before the outage.
    let mut idle = TcpStream::connect(addr).expect("connect");
    write_request(&mut idle, "GET", "/v1/status/leader", &[], b"", false).expect("send");
    idle.set_read_timeout(Some(PROMPT)).expect("timeout");
    let mut idle = BufReader::new(idle);
    assert_eq!(read_reply(&mut idle).expect("first reply").status, 200);

    consul.set_fault(Fault::Refuse).expect("refuse");
    let err = TcpStream::connect(addr).expect_err("nothing listens");
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
    let mut rest = Vec::new();
    let closed = idle.read_to_end(&mut rest);
    assert!(
        matches!(closed, Ok(0)) || closed.is_err(),
        "open connections are closed"
    );

    consul.clear_faults().expect("listen again");
    assert_eq!(consul.addr(), addr);
    assert_eq!(
        call(addr, "GET", "/v1/status/leader", b"").json(),
        json!("127.0.0.1:8300")
    );
}

#[test]
fn refuse_with_a_timer_over_the_admin_api_comes_back() {
    let consul = ConsulStandin::start().expect("start");
    let addr = consul.addr();
    let reply = call(
        addr,
        "POST",
        "/_standin/fault",
        br#"{"fault":"refuse","for_ms":300}"#,
    );
    assert_eq!(reply.status, 200);
    assert!(
        consul.wait_for_request(Duration::ZERO, |_| true).is_none(),
        "admin calls are not recorded"
    );
    let mut back = false;
    for _ in 0..200 {
        if try_call(addr, "GET", "/v1/status/leader", &[], b"", PROMPT)
            .is_ok_and(|r| r.status == 200)
        {
            back = true;
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    assert!(back, "the stand-in must listen again after for_ms");
}

#[test]
fn hang_times_out_clients_and_later_requests_work_after_clear() {
    let consul = ConsulStandin::start().expect("start");
    let addr = consul.addr();
    consul.set_fault(Fault::Hang).expect("hang");
    let err = try_call(
        addr,
        "GET",
        "/v1/status/leader",
        &[],
        b"",
        Duration::from_millis(300),
    )
    .err()
    .expect("a hung request gets no answer");
    assert!(
        matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{err:?}"
    );

    // A request stuck in the hang is closed unanswered once the fault clears;
    // the admin API still answers meanwhile.
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(try_call(
            addr,
            "GET",
            "/v1/kv/held",
            &[],
            b"",
            Duration::from_secs(60),
        ));
    });
    assert!(
        consul
            .wait_for_request(PROMPT, |r| r.path == "/v1/kv/held")
            .is_some()
    );
    let state = call(addr, "GET", "/_standin/state", b"").json();
    assert_eq!(state["fault"], "hang");
    assert_eq!(call(addr, "POST", "/_standin/clear", b"").status, 200);
    let held = rx.recv_timeout(PROMPT).expect("hung request released");
    assert!(held.is_err(), "a hung request is closed, never answered");
    assert_eq!(call(addr, "GET", "/v1/status/leader", b"").status, 200);
}

#[test]
fn no_leader_status_code_and_latency_faults() {
    let consul = ConsulStandin::start().expect("start");
    let addr = consul.addr();
    consul.set_fault(Fault::NoLeader).expect("no leader");
    let leader = call(addr, "GET", "/v1/status/leader", b"");
    assert_eq!((leader.status, leader.json()), (200, json!("")));
    assert_eq!(leader.header("X-Consul-KnownLeader"), Some("false"));
    let kv = call(addr, "GET", "/v1/kv/x", b"");
    assert_eq!((kv.status, kv.text().as_str()), (500, "No cluster leader"));
    let create = call(addr, "PUT", "/v1/session/create", b"{}");
    assert_eq!(create.status, 500);

    consul.set_fault(Fault::Status(503)).expect("status");
    assert_eq!(call(addr, "GET", "/v1/status/leader", b"").status, 503);
    assert_eq!(call(addr, "PUT", "/v1/kv/x", b"v").status, 503);
    assert_eq!(
        consul.kv_get("x"),
        None,
        "a faulted request changes nothing"
    );

    consul.clear_faults().expect("clear");
    consul
        .set_fault(Fault::Latency(Duration::from_secs(3)))
        .expect("latency");
    let slow = try_call(
        addr,
        "GET",
        "/v1/status/leader",
        &[],
        b"",
        Duration::from_millis(200),
    );
    assert!(
        slow.is_err(),
        "a client with a shorter read timeout than the latency gives up"
    );
    consul.clear_faults().expect("clear");
    assert_eq!(call(addr, "GET", "/v1/status/leader", b"").status, 200);
}

#[test]
fn wipe_drops_state_moves_index_back_and_wakes_blocking_queries() {
    let consul = ConsulStandin::start().expect("start");
    let addr = consul.addr();
    let id = create_session(addr, json!({"TTL": "30s"}));
    assert_eq!(acquire(addr, "nodes/n1", &id, "x").json(), json!(true));
    for i in 0..5 {
        call(addr, "PUT", &format!("/v1/kv/other/{i}"), b"");
    }
    let before = call(addr, "GET", "/v1/kv/nodes/?recurse", b"");
    let (tx, rx) = mpsc::channel();
    let target = format!("/v1/kv/nodes/?recurse&index={}&wait=5m", before.index());
    thread::spawn(move || {
        let _ = tx.send(try_call(
            addr,
            "GET",
            &target,
            &[],
            b"",
            Duration::from_secs(400),
        ));
    });
    assert!(
        consul.wait_for_parked_queries(1, PROMPT),
        "the query must be parked"
    );
    let index_before = consul.index();

    consul.set_fault(Fault::Wipe).expect("wipe");
    let woke = rx
        .recv_timeout(PROMPT)
        .expect("wipe wakes blocking queries")
        .expect("reply");
    assert_eq!(woke.status, 404);
    assert!(
        woke.index() < before.index(),
        "index goes backwards after a wipe"
    );
    assert!(consul.index() < index_before);
    assert!(consul.sessions().is_empty());
    assert_eq!(consul.kv_get("nodes/n1"), None);
    let renew = call(addr, "PUT", &format!("/v1/session/renew/{id}"), b"");
    assert_eq!(renew.status, 404);
}

#[test]
fn keep_alive_connections_serve_several_requests() {
    let consul = ConsulStandin::start().expect("start");
    let stream = TcpStream::connect(consul.addr()).expect("connect");
    stream.set_read_timeout(Some(PROMPT)).expect("timeout");
    let mut writer = stream.try_clone().expect("clone");
    let mut reader = BufReader::new(stream);
    write_request(&mut writer, "PUT", "/v1/kv/k", &[], b"v", false).expect("send");
    assert_eq!(read_reply(&mut reader).expect("reply").json(), json!(true));
    write_request(&mut writer, "GET", "/v1/kv/k", &[], b"", false).expect("send");
    assert_eq!(
        read_reply(&mut reader).expect("reply").json()[0]["Value"],
        "dg=="
    );
}

#[test]
fn shutdown_with_a_hung_request_returns_and_stops_listening() {
    let consul = ConsulStandin::start().expect("start");
    let addr = consul.addr();
    consul.set_fault(Fault::Hang).expect("hang");
    let mut hung = TcpStream::connect(addr).expect("connect");
    write_request(&mut hung, "GET", "/v1/kv/x", &[], b"", false).expect("send");
    assert!(
        consul
            .wait_for_request(PROMPT, |r| r.path == "/v1/kv/x")
            .is_some()
    );
    consul.shutdown();
    assert_eq!(
        TcpStream::connect(addr).expect_err("stopped").kind(),
        ErrorKind::ConnectionRefused
    );
}

#[test]
fn no_blocking_answers_at_once_without_an_index() {
    let consul = ConsulStandin::start_with(ConsulOptions {
        no_blocking: true,
        ..ConsulOptions::default()
    })
    .expect("start");
    let addr = consul.addr();
    call(addr, "PUT", "/v1/kv/nodes/n1", b"x");
    let current = consul.index();
    // A blocking query on the current index would park for 5 minutes; here it
    // answers at once, with the data and no X-Consul-Index to block on.
    let target = format!("/v1/kv/nodes/?recurse&index={current}&wait=5m");
    let reply = try_call(addr, "GET", &target, &[], b"", PROMPT).expect("immediate answer");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()[0]["Key"], json!("nodes/n1"));
    assert_eq!(reply.header("X-Consul-Index"), None);
    assert_eq!(consul.parked_queries(), 0);
}
