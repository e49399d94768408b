//! Integration tests for the Cloudflare and IP-provider stand-ins over
//! loopback HTTP with a raw HTTP/1.1 client (no shared code with the
//! production clients).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::{Value, json};
use watchdog_standins::cloudflare::{CfFault, CloudflareStandin};
use watchdog_standins::ipprovider::{IpAnswer, IpFault, IpProvider};

const TOKEN: &str = "standin-token-9c1e";
const ZONE: &str = "0123456789abcdef0123456789abcdef";

struct Reply {
    status: u16,
    head: String,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
    fn error_code(&self) -> i64 {
        let v = self.json();
        assert_eq!(v["success"], json!(false), "{}", self.body);
        v["errors"][0]["code"].as_i64().expect("errors[0].code")
    }
}

fn send(
    addr: SocketAddr,
    method: &str,
    target: &str,
    auth: Option<&str>,
    body: Option<&str>,
) -> Reply {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(token) = auth {
        req.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() || method != "GET" {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Reply {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}

fn records_path(rest: &str) -> String {
    format!("/client/v4/zones/{ZONE}/dns_records{rest}")
}

fn standin() -> (CloudflareStandin, String) {
    let cf = CloudflareStandin::start(TOKEN).unwrap();
    cf.add_zone(ZONE);
    let id = cf.add_record(ZONE, "A", "home.example.com", "198.51.100.1", 120, true);
    cf.add_record(ZONE, "AAAA", "home.example.com", "2001:db8::1", 120, true);
    cf.add_record(ZONE, "A", "other.example.com", "198.51.100.9", 1, false);
    (cf, id)
}

#[test]
fn auth_is_by_bearer_token() {
    let (cf, _) = standin();
    let r = send(cf.addr(), "GET", &records_path(""), None, None);
    assert_eq!((r.status, r.error_code()), (401, 9106));
    let r = send(cf.addr(), "GET", &records_path(""), Some("wrong"), None);
    assert_eq!((r.status, r.error_code()), (401, 1000));
    let r = send(
        cf.addr(),
        "GET",
        "/client/v4/zones/ffffffffffffffffffffffffffffffff/dns_records",
        Some(TOKEN),
        None,
    );
    assert_eq!((r.status, r.error_code()), (403, 10000));
    let r = send(cf.addr(), "GET", &records_path(""), Some(TOKEN), None);
    assert_eq!(r.status, 200);
    let reqs = cf.requests();
    assert_eq!(
        reqs.iter().map(|r| r.authorized).collect::<Vec<_>>(),
        vec![false, false, true, true]
    );
    assert!(
        !format!("{reqs:?}").contains(TOKEN),
        "the token is never recorded"
    );
}

#[test]
fn list_filters_by_type_and_name() {
    let (cf, id) = standin();
    let r = send(cf.addr(), "GET", &records_path(""), Some(TOKEN), None);
    assert_eq!(r.json()["result"].as_array().unwrap().len(), 3);
    let r = send(
        cf.addr(),
        "GET",
        &records_path("?type=A&name=home.example.com"),
        Some(TOKEN),
        None,
    );
    let v = r.json();
    assert_eq!(v["success"], json!(true));
    assert_eq!(v["errors"], json!([]));
    let list = v["result"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["id"], json!(id));
    assert_eq!(list[0]["content"], json!("198.51.100.1"));
    assert_eq!(
        (list[0]["ttl"].clone(), list[0]["proxied"].clone()),
        (json!(120), json!(true))
    );
    assert_eq!(v["result_info"]["count"], json!(1));
    let r = send(
        cf.addr(),
        "GET",
        &records_path("?type=AAAA&name=HOME.example.com"),
        Some(TOKEN),
        None,
    );
    assert_eq!(r.json()["result"][0]["content"], json!("2001:db8::1"));
    let r = send(
        cf.addr(),
        "GET",
        &records_path("?type=A&name=none.example.com"),
        Some(TOKEN),
        None,
    );
    assert_eq!(r.json()["result"], json!([]));
}

#[test]
fn patch_merges_and_unknown_records_are_404() {
    let (cf, id) = standin();
    let r = send(
        cf.addr(),
        "PATCH",
        &records_path(&format!("/{id}")),
        Some(TOKEN),
        Some("{\"content\":\"203.0.113.8\"}"),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["result"]["content"], json!("203.0.113.8"));
    let stored = cf.record(&id).unwrap();
    assert_eq!(
        (stored.content.as_str(), stored.ttl, stored.proxied),
        ("203.0.113.8", 120, true)
    );
    let r = send(
        cf.addr(),
        "PATCH",
        &records_path(&format!("/{id}")),
        Some(TOKEN),
        Some("{\"content\":\"not-an-ip\"}"),
    );
    assert_eq!((r.status, r.error_code()), (400, 9005));
    assert_eq!(cf.record(&id).unwrap().content, "203.0.113.8");
    let r = send(
        cf.addr(),
        "GET",
        &records_path("/00000000000000000000000000000000"),
        Some(TOKEN),
        None,
    );
    assert_eq!((r.status, r.error_code()), (404, 81044));
    let r = send(
        cf.addr(),
        "PATCH",
        &records_path("/00000000000000000000000000000000"),
        Some(TOKEN),
        Some("{\"content\":\"203.0.113.8\"}"),
    );
    assert_eq!((r.status, r.error_code()), (404, 81044));
    cf.delete_record(&id);
    let r = send(
        cf.addr(),
        "GET",
        &records_path(&format!("/{id}")),
        Some(TOKEN),
        None,
    );
    assert_eq!(r.status, 404);
    assert_eq!(cf.successful_patches().len(), 1);
}

#[test]
fn post_creates_and_refuses_duplicates() {
    let (cf, _) = standin();
    let body = "{\"type\":\"A\",\"name\":\"new.example.com\",\"content\":\"203.0.113.9\",\"ttl\":1,\"proxied\":false}";
    let r = send(
        cf.addr(),
        "POST",
        &records_path(""),
        Some(TOKEN),
        Some(body),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let id = r.json()["result"]["id"].as_str().unwrap().to_string();
    assert_eq!(cf.record(&id).unwrap().name, "new.example.com");
    let r = send(
        cf.addr(),
        "POST",
        &records_path(""),
        Some(TOKEN),
        Some(body),
    );
    assert_eq!((r.status, r.error_code()), (400, 81057));
    let r = send(
        cf.addr(),
        "POST",
        &records_path(""),
        Some(TOKEN),
        Some("{\"type\":\"A\"}"),
    );
    assert_eq!(r.status, 400);
}

#[test]
fn faults_throttle_fail_and_report_unsuccessful() {
    let (cf, id) = standin();
    let path = records_path(&format!("/{id}"));
    cf.fail_next(2, CfFault::RateLimited { retry_after: 3 });
    cf.fail_next(1, CfFault::Status(503));
    cf.fail_next(
        1,
        CfFault::Unsuccessful {
            code: 1004,
            message: "DNS Validation Error".into(),
        },
    );
    // Unauthorised requests do not consume faults.
    assert_eq!(send(cf.addr(), "GET", &path, Some("x"), None).status, 401);
    for _ in 0..2 {
        let r = send(cf.addr(), "GET", &path, Some(TOKEN), None);
        assert_eq!((r.status, r.error_code()), (429, 971));
        assert_eq!(r.header("retry-after").as_deref(), Some("3"));
    }
    let r = send(cf.addr(), "GET", &path, Some(TOKEN), None);
    assert_eq!(r.status, 503);
    let r = send(cf.addr(), "GET", &path, Some(TOKEN), None);
    assert_eq!((r.status, r.error_code()), (200, 1004));
    assert_eq!(
        r.json()["errors"][0]["message"],
        json!("DNS Validation Error")
    );
    let r = send(cf.addr(), "GET", &path, Some(TOKEN), None);
    assert_eq!((r.status, r.json()["success"].clone()), (200, json!(true)));
}

#[test]
fn hang_fault_holds_the_request() {
    let cf = CloudflareStandin::start_with(
        "127.0.0.1:0".parse().unwrap(),
        TOKEN,
        Duration::from_millis(1500),
    )
    .unwrap();
    cf.add_zone(ZONE);
    cf.fail_next(1, CfFault::Hang);
    let mut s = TcpStream::connect(cf.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    write!(
        s,
        "GET {} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n",
        records_path("")
    )
    .unwrap();
    let mut buf = [0u8; 64];
    let e = s.read(&mut buf).unwrap_err();
    assert!(matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    ));
    // The next request is served normally meanwhile.
    assert_eq!(
        send(cf.addr(), "GET", &records_path(""), Some(TOKEN), None).status,
        200
    );
}

#[test]
fn admin_api_injects_faults() {
    let (cf, _) = standin();
    let r = send(
        cf.addr(),
        "POST",
        "/_standin/faults",
        None,
        Some("{\"fault\":\"429\",\"count\":1,\"retry_after\":2}"),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        send(cf.addr(), "GET", &records_path(""), Some(TOKEN), None).status,
        429
    );
    let r = send(cf.addr(), "GET", "/_standin/requests", None, None);
    assert_eq!(r.json().as_array().unwrap().len(), 1);
    let r = send(cf.addr(), "GET", "/_standin/records", None, None);
    assert_eq!(r.json().as_array().unwrap().len(), 3);
}

#[test]
fn ip_provider_formats_programmed_answers_and_faults() {
    let p = IpProvider::start("203.0.113.50").unwrap();
    let plain = send(p.addr(), "GET", "/", None, None);
    assert_eq!((plain.status, plain.body.as_str()), (200, "203.0.113.50"));
    let trace = send(p.addr(), "GET", "/cdn-cgi/trace", None, None);
    assert!(
        trace.body.lines().any(|l| l == "ip=203.0.113.50"),
        "{}",
        trace.body
    );
    assert!(trace.body.lines().all(|l| l.contains('=')));

    p.push([
        IpAnswer::Ip("203.0.113.51".into()),
        IpAnswer::Fault(IpFault::Html),
        IpAnswer::Fault(IpFault::Ipv6),
        IpAnswer::Fault(IpFault::Empty),
        IpAnswer::Fault(IpFault::Status(500)),
        IpAnswer::Fault(IpFault::Oversized),
    ]);
    assert_eq!(send(p.addr(), "GET", "/", None, None).body, "203.0.113.51");
    let html = send(p.addr(), "GET", "/", None, None);
    assert!(html.body.contains("<html>"));
    assert_eq!(html.header("content-type").as_deref(), Some("text/html"));
    let v6 = send(p.addr(), "GET", "/cdn-cgi/trace", None, None);
    assert!(v6.body.contains("ip=2001:db8::17"), "{}", v6.body);
    assert_eq!(send(p.addr(), "GET", "/", None, None).body, "");
    assert_eq!(send(p.addr(), "GET", "/", None, None).status, 500);
    assert!(send(p.addr(), "GET", "/", None, None).body.len() >= 64 * 1024);
    // Queue drained: the standing answer again.
    assert_eq!(send(p.addr(), "GET", "/", None, None).body, "203.0.113.50");
    p.set_ip("203.0.113.52");
    assert_eq!(send(p.addr(), "GET", "/", None, None).body, "203.0.113.52");
    assert_eq!(p.request_count(), 10);

    // Admin API.
    assert_eq!(
        send(p.addr(), "PUT", "/_standin/fault?kind=ipv6", None, None).status,
        200
    );
    assert_eq!(send(p.addr(), "GET", "/", None, None).body, "2001:db8::17");
    assert_eq!(
        send(
            p.addr(),
            "PUT",
            "/_standin/ip?value=203.0.113.53",
            None,
            None
        )
        .status,
        200
    );
    assert_eq!(send(p.addr(), "GET", "/", None, None).body, "203.0.113.53");
    assert_eq!(
        send(p.addr(), "GET", "/_standin/requests", None, None)
            .body
            .trim(),
        "12"
    );
}

#[test]
fn ip_provider_hang_never_answers_within_the_hang_time() {
    let p = IpProvider::start_with(
        "127.0.0.1:0".parse().unwrap(),
        "203.0.113.60",
        Duration::from_secs(2),
    )
    .unwrap();
    p.set_fault(IpFault::Hang);
    let mut s = TcpStream::connect(p.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 64];
    assert!(s.read(&mut buf).is_err(), "no answer while hung");
    drop(s);
    drop(p); // shutdown releases the hung request instead of waiting it out
}
