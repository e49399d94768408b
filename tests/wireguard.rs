//! WireGuard endpoint re-resolver end to end: the real binary in monitor mode
//! inside a network namespace, against real userspace WireGuard
//! (Debian's `wireguard-go`) with a real peer in a second namespace, read
//! back with `wg`. The peer's hostname is resolved through the namespace's
//! /etc/netns/NAME/hosts, edited in place.
//!
//! Needs root, /dev/net/tun, `ip`, `wg` and `wireguard-go` (`make test`
//! installs them); otherwise each test prints why it skips and passes.
//! Every run uses its own namespace and interface names, only 10.200.x.y
//! addresses inside those namespaces, and removes everything on drop.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{metric_value, temp_dir, wait_until};

const HOST: &str = "wgpeer.test";
const PORT_B: u16 = 51820;
const CONSUL: &str = "127.0.0.1:8500";
const METRICS: &str = "127.0.0.1:9104";
const SEC: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------------
// Skips and small process helpers

fn skip_reason() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().nth(1))
        == Some("0");
    if !root {
        return Some("not running as root (network namespaces need it)".into());
    }
    if !Path::new("/dev/net/tun").exists() {
        return Some("no /dev/net/tun (wireguard-go needs a TUN device)".into());
    }
    for tool in ["ip", "wg", "wireguard-go"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            return Some(format!(
                "{tool} not installed (Debian: iproute2, wireguard-tools, wireguard-go)"
            ));
        }
    }
    None
}

macro_rules! skip_unless_possible {
    () => {
        if let Some(why) = skip_reason() {
            eprintln!("SKIP: {why}");
            return;
        }
    };
}

/// Runs a command; panics with its output unless it succeeds; returns stdout.
fn run(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The watchdog-standins binary: $STANDINS_BIN, else next to this test's
/// target dir, built on demand.
fn standins_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("STANDINS_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf();
    let bin = dir.join("watchdog-standins");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        run(&[
            &cargo,
            "build",
            "-p",
            "watchdog-standins",
            "--bin",
            "watchdog-standins",
        ]);
    }
    bin
}

fn unique_suffix() -> String {
    format!(
        "{:x}{:03x}",
        std::process::id() & 0xfff,
        fastrand::u32(..) & 0xfff
    )
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

// ---------------------------------------------------------------------------
// The lab: namespaces, veths, WireGuard devices, hosts file

struct Lab {
    /// Namespace of peer A, where the watchdog runs.
    a: String,
    /// Namespace of peer B (the peer whose address moves), if any.
    b: Option<String>,
    /// WireGuard interface names (globally unique: the UAPI sockets in
    /// /var/run/wireguard are shared by all namespaces).
    if_a: String,
    if_b: String,
    dir: PathBuf,
    pub_a: String,
    pub_b: String,
    children: Vec<(String, Child)>,
}

impl Lab {
    /// Namespace A with two veth links to namespace B (when `with_peer`),
    /// wireguard-go in each, A's peer entry for B at 10.200.1.2.
    fn new(tag: &str, with_peer: bool) -> Lab {
        let sfx = unique_suffix();
        let mut lab = Lab {
            a: format!("ow-{tag}-a-{sfx}"),
            b: with_peer.then(|| format!("ow-{tag}-b-{sfx}")),
            if_a: format!("owa{sfx}"),
            if_b: format!("owb{sfx}"),
            dir: temp_dir(&format!("wg-{tag}")),
            pub_a: String::new(),
            pub_b: String::new(),
            children: Vec::new(),
        };
        // /etc/netns/NAME/* is bind-mounted over /etc/* by `ip netns exec`;
        // it must exist before the first exec.
        let etc = lab.etc_dir();
        std::fs::create_dir_all(&etc).expect("/etc/netns dir");
        // DNS falls back to a nameserver on the namespace's own loopback
        // where nothing listens: lookups not in hosts fail fast, locally.
        std::fs::write(
            etc.join("resolv.conf"),
            "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n",
        )
        .expect("resolv.conf");
        lab.set_hosts(&["10.200.1.2"]);
        run(&["ip", "netns", "add", &lab.a]);
        run(&["ip", "-n", &lab.a, "link", "set", "lo", "up"]);
        if let Some(b) = lab.b.clone() {
            run(&["ip", "netns", "add", &b]);
            run(&["ip", "-n", &b, "link", "set", "lo", "up"]);
            for (n, a_addr) in [("1", "10.200.1.1/24"), ("2", "10.200.2.1/24")] {
                let (va, vb) = (format!("va{n}"), format!("vb{n}"));
                run(&[
                    "ip", "-n", &lab.a, "link", "add", &va, "type", "veth", "peer", "name", &vb,
                    "netns", &b,
                ]);
                run(&["ip", "-n", &lab.a, "addr", "add", a_addr, "dev", &va]);
                run(&["ip", "-n", &lab.a, "link", "set", &va, "up"]);
                run(&["ip", "-n", &b, "link", "set", &vb, "up"]);
            }
            run(&["ip", "-n", &b, "addr", "add", "10.200.1.2/24", "dev", "vb1"]);
        } else {
            // A veth pair inside A with nothing behind it: packets go nowhere.
            run(&[
                "ip", "-n", &lab.a, "link", "add", "va1", "type", "veth", "peer", "name", "va1x",
            ]);
            run(&[
                "ip",
                "-n",
                &lab.a,
                "addr",
                "add",
                "10.200.1.1/24",
                "dev",
                "va1",
            ]);
            run(&["ip", "-n", &lab.a, "link", "set", "va1", "up"]);
        }

        let key_a = lab.write_key("a.key", &run(&["wg", "genkey"]));
        let key_b = lab.write_key("b.key", &run(&["wg", "genkey"]));
        let psk = lab.write_key("psk", &run(&["wg", "genpsk"]));
        lab.pub_a = pubkey(&key_a);
        lab.pub_b = pubkey(&key_b);

        let (a, if_a) = (lab.a.clone(), lab.if_a.clone());
        lab.start_wireguard_go(&a, &if_a);
        let (pub_b, endpoint) = (lab.pub_b.clone(), format!("10.200.1.2:{PORT_B}"));
        lab.wg(&[
            "set",
            &if_a,
            "private-key",
            path(&key_a),
            "listen-port",
            "51821",
            "peer",
            &pub_b,
            "preshared-key",
            path(&psk),
            "endpoint",
            &endpoint,
            "allowed-ips",
            "10.200.9.2/32,10.200.10.0/24",
            "persistent-keepalive",
            "5",
        ]);
        run(&["ip", "-n", &a, "addr", "add", "10.200.9.1/24", "dev", &if_a]);
        run(&["ip", "-n", &a, "link", "set", &if_a, "up"]);
        if let Some(b) = lab.b.clone() {
            let (if_b, pub_a) = (lab.if_b.clone(), lab.pub_a.clone());
            lab.start_wireguard_go(&b, &if_b);
            run(&[
                "ip",
                "netns",
                "exec",
                &b,
                "wg",
                "set",
                &if_b,
                "private-key",
                path(&key_b),
                "listen-port",
                "51820",
                "peer",
                &pub_a,
                "preshared-key",
                path(&psk),
                "allowed-ips",
                "10.200.9.1/32",
            ]);
            run(&["ip", "-n", &b, "addr", "add", "10.200.9.2/24", "dev", &if_b]);
            run(&["ip", "-n", &b, "link", "set", &if_b, "up"]);
        }
        lab
    }

    fn etc_dir(&self) -> PathBuf {
        Path::new("/etc/netns").join(&self.a)
    }

    /// Rewrites A's hosts file in place (it is bind-mounted: same inode).
    fn set_hosts(&self, ips: &[&str]) {
        let mut text = String::from("127.0.0.1 localhost\n");
        for ip in ips {
            text.push_str(&format!("{ip} {HOST}\n"));
        }
        std::fs::write(self.etc_dir().join("hosts"), text).expect("hosts");
    }

    fn write_key(&self, name: &str, key: &str) -> PathBuf {
        let p = self.dir.join(name);
        std::fs::write(&p, key.trim()).expect("key file");
        p
    }

    fn start_wireguard_go(&mut self, ns: &str, iface: &str) {
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "wireguard-go", "-f", iface])
            .env("LOG_LEVEL", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn wireguard-go");
        self.children.push((format!("wireguard-go {iface}"), child));
        let sock = socket_path(iface);
        assert!(
            wait_until(10 * SEC, || sock.exists()),
            "wireguard-go did not create {}",
            sock.display()
        );
    }

    fn wg(&self, args: &[&str]) -> String {
        let mut all = vec!["ip", "netns", "exec", &self.a, "wg"];
        all.extend_from_slice(args);
        run(&all)
    }

    /// `wg show IF_A FIELD` for the one peer, e.g. "endpoints".
    fn show(&self, field: &str) -> String {
        let out = self.wg(&["show", &self.if_a, field]);
        out.lines()
            .find(|l| l.starts_with(&self.pub_b))
            .map(|l| l[self.pub_b.len()..].trim().to_string())
            .unwrap_or_default()
    }

    fn links_in_a(&self) -> Vec<String> {
        run(&["ip", "-n", &self.a, "-o", "link", "show"])
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n).to_string())
            .collect()
    }

    /// Starts the Consul stand-in and then the watchdog in namespace A.
    fn start_watchdog(&mut self, backend: &str) -> Watchdog {
        let standin = Command::new("ip")
            .args(["netns", "exec", &self.a])
            .arg(standins_bin())
            .args(["consul", "--listen", CONSUL])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn();
        let mut standin = standin.expect("spawn consul stand-in");
        let mut first = String::new();
        if let Some(out) = standin.stdout.take() {
            let _ = BufReader::new(out).read_line(&mut first);
        }
        assert!(first.contains("listening"), "stand-in said {first:?}");
        self.children.push(("consul stand-in".into(), standin));

        let config = self.dir.join("config.yaml");
        std::fs::write(
            &config,
            format!(
                "monitor:\n  session_ttl: 10s\n  renew_interval: 1s\n\
                 wireguard:\n  enabled: true\n  interface: {}\n  peer_pubkey: \"{}\"\n  \
                 endpoint_hostname: {HOST}\n  endpoint_port: {PORT_B}\n  resolve_interval: 10s\n  \
                 stale_handshake_threshold: 30s\n  backend: {backend}\n",
                self.if_a, self.pub_b
            ),
        )
        .expect("config");
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.a])
            .arg(common::binary())
            .args(["-mode", "monitor", "-node", "n1", "-log-format", "text"])
            .args(["-log-level", "debug", "-metrics-address", METRICS])
            .arg("-config")
            .arg(&config)
            .env("CONSUL_HTTP_ADDR", CONSUL)
            .env_remove("CONSUL_HTTP_TOKEN")
            .env_remove("CONSUL_HTTP_TOKEN_FILE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn oracle-watchdog");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr");
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if std::env::var_os("OW_TEST_ECHO").is_some() {
                    eprintln!("[daemon] {line}");
                }
                sink.lock().expect("logs").push(line);
            }
        });
        let pid = child.id();
        self.children.push(("oracle-watchdog".into(), child));
        Watchdog {
            ns: self.a.clone(),
            logs,
            pid,
        }
    }

    fn kill(&mut self, name: &str) {
        for (n, c) in &mut self.children {
            if n == name {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for (_, c) in self.children.iter_mut().rev() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in std::iter::once(&self.a).chain(self.b.as_ref()) {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
        let _ = std::fs::remove_dir_all(self.etc_dir());
        for iface in [&self.if_a, &self.if_b] {
            let _ = std::fs::remove_file(socket_path(iface));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn socket_path(iface: &str) -> PathBuf {
    Path::new("/var/run/wireguard").join(format!("{iface}.sock"))
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

fn pubkey(private: &Path) -> String {
    let mut child = Command::new("wg")
        .arg("pubkey")
        .stdin(std::fs::File::open(private).expect("key"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("wg pubkey");
    let mut out = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("read");
    assert!(child.wait().expect("wait").success());
    out.trim().to_string()
}

/// The daemon running in namespace A.
struct Watchdog {
    ns: String,
    logs: Arc<Mutex<Vec<String>>>,
    pid: u32,
}

impl Watchdog {
    /// `/metrics` fetched from inside the namespace (bash's /dev/tcp).
    fn scrape(&self) -> Option<String> {
        let (host, port) = METRICS.split_once(':')?;
        let script = format!(
            "exec 3<>/dev/tcp/{host}/{port} && printf 'GET /metrics HTTP/1.0\\r\\nConnection: close\\r\\n\\r\\n' >&3 && cat <&3"
        );
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns, "bash", "-c", &script])
            .stderr(Stdio::null())
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (_, body) = text.split_once("\r\n\r\n")?;
        Some(body.to_string())
    }

    fn metric(&self, name: &str) -> Option<f64> {
        metric_value(&self.scrape()?, name)
    }

    fn logs(&self) -> String {
        self.logs.lock().expect("logs").join("\n")
    }

    fn alive(&self) -> bool {
        Path::new(&format!("/proc/{}", self.pid)).exists()
    }
}

const FAILURES: &str = "oracle_watchdog_wg_endpoint_resolution_failures_total";
const CHANGES: &str = "oracle_watchdog_wg_endpoint_changes_total";
const RENEWALS: &str = "oracle_watchdog_session_renewals_total";

fn current_ip(lab: &Lab, ip: &str) -> String {
    format!(
        "oracle_watchdog_wg_endpoint_current_ip{{interface=\"{}\",ip=\"{ip}\",peer=\"{}\"}}",
        lab.if_a, lab.pub_b
    )
}

fn handshake_age(lab: &Lab) -> String {
    format!(
        "oracle_watchdog_wg_peer_handshake_age_seconds{{peer=\"{}\"}}",
        lab.pub_b
    )
}

// ---------------------------------------------------------------------------
// Tests

#[test]
fn endpoint_follows_the_peer_and_a_stale_handshake_reapplies() {
    skip_unless_possible!();
    let mut lab = Lab::new("mv", true);
    let b = lab.b.clone().expect("peer namespace");
    let wd = lab.start_watchdog("userspace");

    // Tunnel up through the first path; the daemon sees it.
    assert!(
        wait_until(20 * SEC, || {
            lab.show("latest-handshakes")
                .parse::<u64>()
                .is_ok_and(|t| t > 0)
        }),
        "no handshake between the two wireguard-go peers"
    );
    assert!(
        wait_until(20 * SEC, || {
            wd.metric(&current_ip(&lab, "10.200.1.2")) == Some(1.0)
                && wd.metric(&handshake_age(&lab)).is_some_and(|a| a >= 0.0)
                && wd.metric("oracle_watchdog_session_active") == Some(1.0)
        }),
        "metrics never showed the tunnel: {:?}\n{}",
        wd.scrape(),
        wd.logs()
    );
    assert_eq!(wd.metric(CHANGES), Some(0.0), "nothing to change yet");
    let before: Vec<String> = ["allowed-ips", "persistent-keepalive", "preshared-keys"]
        .iter()
        .map(|f| lab.show(f))
        .collect();
    assert_eq!(before[1], "5");

    // The peer really moves: its old address goes away, the new one is on
    // the other link, and DNS (the hosts file) follows.
    run(&["ip", "-n", &b, "addr", "del", "10.200.1.2/24", "dev", "vb1"]);
    run(&["ip", "-n", &b, "addr", "add", "10.200.2.2/24", "dev", "vb2"]);
    let moved_at = unix_now();
    lab.set_hosts(&["10.200.2.2"]);
    let new_endpoint = format!("10.200.2.2:{PORT_B}");
    assert!(
        wait_until(25 * SEC, || lab.show("endpoints") == new_endpoint),
        "endpoint did not follow DNS within a resolve interval: {:?}\n{}",
        lab.show("endpoints"),
        wd.logs()
    );
    let after: Vec<String> = ["allowed-ips", "persistent-keepalive", "preshared-keys"]
        .iter()
        .map(|f| lab.show(f))
        .collect();
    assert_eq!(before, after, "other peer settings must be untouched");
    assert_eq!(lab.wg(&["show", &lab.if_a, "peers"]).lines().count(), 1);
    // Traffic authenticated by B arrives over the new path: B now sees A at
    // its address on the second link.
    let b_view = || {
        run(&[
            "ip",
            "netns",
            "exec",
            &b,
            "wg",
            "show",
            &lab.if_b,
            "endpoints",
        ])
    };
    assert!(
        wait_until(15 * SEC, || b_view().contains("10.200.2.1:51821")),
        "tunnel not working over the new path: {}",
        b_view()
    );
    let text = wd.scrape().expect("metrics");
    assert!(
        metric_value(&text, CHANGES).is_some_and(|c| c >= 1.0),
        "{text}"
    );
    assert_eq!(
        metric_value(&text, &current_ip(&lab, "10.200.2.2")),
        Some(1.0)
    );
    assert!(
        !text.contains("ip=\"10.200.1.2\""),
        "old ip series left: {text}"
    );
    let stamp = metric_value(
        &text,
        "oracle_watchdog_wg_endpoint_last_update_timestamp_seconds",
    )
    .expect("timestamp");
    assert!(
        stamp >= moved_at - 1.0 && stamp <= unix_now() + 1.0,
        "{stamp}"
    );
    assert!(wd.logs().contains("reason=\"changed\"") || wd.logs().contains("reason=changed"));

    // Dead peer: no more handshakes; once the last one is older than 30 s
    // the same endpoint is applied again.
    run(&["ip", "-n", &b, "link", "set", "vb2", "down"]);
    let changes = wd.metric(CHANGES).unwrap_or(0.0);
    assert!(
        wait_until(70 * SEC, || {
            wd.logs().contains("stale_handshake") && wd.metric(CHANGES).is_some_and(|c| c > changes)
        }),
        "no stale-handshake re-apply: {:?}\n{}",
        wd.scrape(),
        wd.logs()
    );
    assert_eq!(lab.show("endpoints"), new_endpoint);
    assert!(wd.metric(&handshake_age(&lab)).is_some_and(|a| a > 30.0));
    assert_eq!(wd.metric(FAILURES), Some(0.0), "{}", wd.logs());
    assert!(wd.alive());
}

#[test]
fn failures_are_counted_nothing_is_created_and_the_heartbeat_goes_on() {
    skip_unless_possible!();
    // No peer namespace: B's key is configured but never answers.
    let mut lab = Lab::new("fail", false);
    let wd = lab.start_watchdog("auto");
    assert!(
        wait_until(20 * SEC, || {
            wd.metric(&current_ip(&lab, "10.200.1.2")) == Some(1.0)
                && wd.metric("oracle_watchdog_session_active") == Some(1.0)
        }),
        "{:?}\n{}",
        wd.scrape(),
        wd.logs()
    );
    assert_eq!(
        wd.metric(&handshake_age(&lab)),
        Some(-1.0),
        "never handshaken"
    );
    assert_eq!(wd.metric(FAILURES), Some(0.0));
    let links = lab.links_in_a();
    let failures = || wd.metric(FAILURES).unwrap_or(-1.0);
    let renewals = || wd.metric(RENEWALS).unwrap_or(-1.0);

    // DNS failure: the name is gone from hosts and no server answers.
    lab.set_hosts(&[]);
    let r0 = renewals();
    assert!(
        wait_until(30 * SEC, || failures() >= 1.0),
        "DNS failure not counted\n{}",
        wd.logs()
    );
    assert!(renewals() > r0, "heartbeat must go on during DNS failures");
    assert_eq!(lab.show("endpoints"), "10.200.1.2:51820");

    // DNS back with a new address: applied.
    lab.set_hosts(&["10.200.1.7"]);
    assert!(
        wait_until(25 * SEC, || lab.show("endpoints") == "10.200.1.7:51820"),
        "no update after DNS recovered\n{}",
        wd.logs()
    );

    // Peer removed: counted, not re-added.
    let pub_b = lab.pub_b.clone();
    lab.wg(&["set", &lab.if_a, "peer", &pub_b, "remove"]);
    lab.set_hosts(&["10.200.1.8"]);
    let f0 = failures();
    assert!(
        wait_until(25 * SEC, || failures() > f0),
        "missing peer not counted\n{}",
        wd.logs()
    );
    assert_eq!(
        lab.wg(&["show", &lab.if_a, "peers"]).trim(),
        "",
        "peer re-added"
    );
    assert!(wd.logs().contains("peer_missing"), "{}", wd.logs());

    // Interface gone (wireguard-go killed: its socket file stays behind).
    let if_a = lab.if_a.clone();
    lab.kill(&format!("wireguard-go {if_a}"));
    assert!(wait_until(10 * SEC, || !lab.links_in_a().contains(&if_a)));
    let f1 = failures();
    let r1 = renewals();
    assert!(
        wait_until(25 * SEC, || failures() > f1),
        "missing interface not counted\n{}",
        wd.logs()
    );
    assert!(wd.logs().contains("interface_missing"), "{}", wd.logs());
    std::thread::sleep(2 * SEC);
    let now_links = lab.links_in_a();
    assert!(
        !now_links.contains(&if_a),
        "interface was re-created: {now_links:?}"
    );
    assert_eq!(
        now_links.len(),
        links.len() - 1,
        "links before {links:?}, now {now_links:?}"
    );
    assert!(renewals() > r1, "heartbeat must go on");
    assert_eq!(wd.metric("oracle_watchdog_session_active"), Some(1.0));
    assert!(wd.alive());
    assert!(!wd.logs().contains("panicked"), "{}", wd.logs());
}
