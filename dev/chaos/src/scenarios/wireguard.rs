//! The monitor's WireGuard endpoint re-resolver under faults: the interface
//! missing, the peer missing, DNS failing. The heartbeat must go on, the
//! failures must be counted, nothing may be created, and once the device
//! and peer exist the endpoint is set on that peer and nothing else.
//!
//! No network namespaces: the device is a fake userspace one (a UAPI
//! socket, see `fakewg.rs`), so no interface is ever created on the host.

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;

use crate::Env;
use crate::ensure;
use crate::fakewg::{FakePeer, FakeWg, SOCKET_DIR};
use crate::harness::{Outcome, SEC, holds_for, wait_until, write_file};
use crate::world::{World, WorldOpts};

const FAILURES: &str = "oracle_watchdog_wg_endpoint_resolution_failures_total";
const CHANGES: &str = "oracle_watchdog_wg_endpoint_changes_total";
const RENEWALS: &str = "oracle_watchdog_session_renewals_total";

struct Lab {
    w: World,
    iface: String,
    key_hex: String,
}

fn lab(env: &Env, hostname: &str) -> Result<Lab, String> {
    let mut w = World::new(&env.bin, &env.book, WorldOpts::default())?;
    let iface = format!("owc{:08x}", fastrand::u32(..));
    let key: [u8; 32] = std::array::from_fn(|_| fastrand::u8(..));
    let b64 = base64::engine::general_purpose::STANDARD.encode(key);
    let key_hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let cfg = write_file(
        &w.dir,
        "monitor-wg.yaml",
        &format!(
            "monitor:\n  session_ttl: 10s\n  renew_interval: 1s\n\
             wireguard:\n  enabled: true\n  interface: {iface}\n  peer_pubkey: \"{b64}\"\n\
             \x20 endpoint_hostname: \"{hostname}\"\n  endpoint_port: 51820\n\
             \x20 resolve_interval: 10s\n  stale_handshake_threshold: 30s\n  backend: auto\n"
        ),
    )?;
    w.start_monitor_with("n1", Some(&cfg))?;
    Ok(Lab { w, iface, key_hex })
}

impl Lab {
    fn peer(&self) -> FakePeer {
        FakePeer {
            key_hex: self.key_hex.clone(),
            endpoint: Some("10.201.0.9:51820".into()),
        }
    }

    /// Failures rise by at least two ticks while the heartbeat goes on.
    fn failing(&mut self, why: &str) -> Outcome {
        let m = self.w.monitor("n1")?;
        ensure!(
            wait_until(25 * SEC, || m.val(FAILURES) >= 2.0),
            "{why}: failures not counted ({})",
            m.val(FAILURES)
        );
        let r0 = m.val(RENEWALS);
        holds_for(
            3 * SEC,
            "heartbeat dropped during WireGuard failures",
            || m.metric("oracle_watchdog_session_active") == Some(1.0),
        )?;
        ensure!(m.val(RENEWALS) > r0, "renewals stalled during {why}");
        ensure!(
            m.val(CHANGES) == 0.0,
            "an endpoint change counted during {why}"
        );
        ensure!(
            !Path::new(&format!("/sys/class/net/{}", self.iface)).exists(),
            "interface {} was created",
            self.iface
        );
        Ok(())
    }

    /// The endpoint was set on our peer and nothing else was touched.
    fn applied(&mut self, dev: &FakeWg) -> Outcome {
        let m = self.w.monitor("n1")?;
        ensure!(
            wait_until(25 * SEC, || !dev.sets().is_empty()),
            "endpoint never applied once the device was usable"
        );
        let sets = dev.sets();
        let want = vec![
            "set=1".to_string(),
            format!("public_key={}", self.key_hex),
            "endpoint=127.0.0.1:51820".to_string(),
        ];
        ensure!(
            sets[0] == want,
            "unexpected device update {:?} (expected only the endpoint of our peer)",
            sets[0]
        );
        ensure!(
            dev.peers().len() == 1,
            "peers after the update: {:?}",
            dev.peers()
        );
        ensure!(
            wait_until(5 * SEC, || m.val(CHANGES) >= 1.0),
            "endpoint change not counted"
        );
        let text = m.scrape().unwrap_or_default();
        ensure!(
            text.contains("ip=\"127.0.0.1\"")
                && text.contains("oracle_watchdog_wg_endpoint_current_ip{"),
            "current endpoint metric missing"
        );
        self.w.no_posts()?;
        self.w.finish(&mut [])
    }
}

/// No such interface (no kernel link, no UAPI socket): counted, not
/// created, no wireguard-go started; then the device appears and the
/// endpoint is applied.
pub fn interface_missing(env: &Env) -> Outcome {
    let mut l = lab(env, "localhost")?;
    l.failing("a missing interface")?;
    ensure!(
        l.w.monitor("n1")?.logged("interface_missing"),
        "missing interface not named in the log"
    );
    let sock = format!("{SOCKET_DIR}/{}.sock", l.iface);
    ensure!(
        !Path::new(&sock).exists(),
        "a userspace WireGuard was started ({sock} exists)"
    );
    let dev = FakeWg::start(&l.iface, vec![l.peer()])?;
    l.applied(&dev)
}

/// The interface exists without the peer: counted, the peer is not added;
/// then the operator adds it and the endpoint is applied.
pub fn peer_missing(env: &Env) -> Outcome {
    let mut l = lab(env, "localhost")?;
    let dev = FakeWg::start(&l.iface, Vec::new())?;
    l.failing("a missing peer")?;
    ensure!(
        l.w.monitor("n1")?.logged("peer_missing"),
        "missing peer not named in the log"
    );
    ensure!(
        dev.sets().is_empty() && dev.peers().is_empty(),
        "the daemon changed the device without the peer: {:?}",
        dev.sets()
    );
    dev.add_peer(l.peer());
    l.applied(&dev)
}

/// The peer's hostname does not resolve: counted on every tick, the
/// endpoint left alone, the heartbeat unaffected.
pub fn dns_failing(env: &Env) -> Outcome {
    let mut l = lab(env, "chaos-wg-peer.invalid")?;
    let dev = FakeWg::start(&l.iface, vec![l.peer()])?;
    l.failing("DNS failures")?;
    std::thread::sleep(Duration::from_secs(11)); // one more tick
    let m = l.w.monitor("n1")?;
    ensure!(
        m.val(FAILURES) >= 3.0,
        "later ticks not counted ({})",
        m.val(FAILURES)
    );
    ensure!(
        dev.sets().is_empty(),
        "endpoint changed although DNS failed"
    );
    ensure!(
        dev.peers()[0].endpoint.as_deref() == Some("10.201.0.9:51820"),
        "endpoint lost"
    );
    l.w.no_posts()?;
    l.w.finish(&mut [])
}
