//! The resolver loop: one named thread that reads the device, resolves the
//! hostname when due, applies the endpoint when needed, and stops when told.
//! It shares nothing with the heartbeat: every error and every panic of a
//! tick is logged, counted and followed by the next tick.

use std::net::SocketAddrV4;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, after, bounded, select};

use super::decide::{self, Action, CheckPlan, Handshake, Reason, Schedule, Timing};
use super::device::{PeerKey, WgBackend, WgError};
use super::metrics::WgMetrics;
use super::resolve::{Resolve, ResolveError};
use crate::wallclock;

/// What the loop works on (from the `wireguard:` config block).
#[derive(Debug, Clone)]
pub struct ResolverSettings {
    /// WireGuard interface, e.g. `wg0`.
    pub interface: String,
    /// The peer whose endpoint is maintained.
    pub peer: PeerKey,
    /// Hostname the endpoint comes from.
    pub hostname: String,
    /// UDP port of the endpoint.
    pub port: u16,
    /// Timers.
    pub timing: Timing,
}

/// Why a tick failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum TickError {
    /// Reading or updating the device failed.
    Device(WgError),
    /// The hostname gave no IPv4 address.
    Resolve(ResolveError),
}

impl TickError {
    /// Short kind for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            TickError::Device(e) => e.kind(),
            TickError::Resolve(ResolveError::NoIpv4 { .. }) => "no_ipv4",
            TickError::Resolve(_) => "dns",
        }
    }
}

impl std::fmt::Display for TickError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TickError::Device(e) => e.fmt(f),
            TickError::Resolve(e) => e.fmt(f),
        }
    }
}

/// What one tick did.
#[derive(Debug)]
pub enum TickOutcome {
    /// Device read; no resolve was due.
    Checked,
    /// Resolved; the endpoint was already right.
    Kept(SocketAddrV4),
    /// The endpoint was set.
    Applied {
        /// The new endpoint.
        to: SocketAddrV4,
        /// Why.
        reason: Reason,
    },
    /// Something failed (counted).
    Failed(TickError),
}

/// The resolver's state between ticks: schedule, metrics and the adapters.
pub struct Resolver<B, R> {
    settings: ResolverSettings,
    schedule: Schedule,
    metrics: WgMetrics,
    backend: B,
    dns: R,
    peer_label: String,
    last_failure: Option<&'static str>,
}

impl<B: WgBackend, R: Resolve> Resolver<B, R> {
    /// A resolver whose first resolve is due at `now`.
    pub fn new(
        settings: ResolverSettings,
        backend: B,
        dns: R,
        metrics: WgMetrics,
        now: Instant,
    ) -> Self {
        Resolver {
            schedule: Schedule::new(settings.timing, now),
            peer_label: settings.peer.to_base64(),
            settings,
            metrics,
            backend,
            dns,
            last_failure: None,
        }
    }

    /// When the next tick should run, given one ran at `now`.
    pub fn next_tick(&self, now: Instant) -> Instant {
        self.schedule.next_check(now)
    }

    /// One tick at monotonic `now` and wall-clock `wall` (for handshake
    /// ages and the last-update timestamp).
    pub fn tick(&mut self, now: Instant, wall: SystemTime) -> TickOutcome {
        let span = tracing::info_span!(
            parent: None,
            "wg_resolve_tick",
            interface = %self.settings.interface,
            peer = %self.peer_label,
            outcome = tracing::field::Empty,
            endpoint = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
            otel.status_description = tracing::field::Empty,
        );
        let _entered = span.enter();
        let outcome = self.run_tick(now, wall);
        match &outcome {
            TickOutcome::Checked => span.record("outcome", "checked"),
            TickOutcome::Kept(ep) => span
                .record("outcome", "kept")
                .record("endpoint", ep.to_string()),
            TickOutcome::Applied { to, .. } => span
                .record("outcome", "applied")
                .record("endpoint", to.to_string()),
            TickOutcome::Failed(e) => {
                crate::telemetry::record_error(&span, &e.to_string());
                span.record("outcome", "failed")
            }
        };
        self.report(&outcome);
        outcome
    }

    /// Counts a tick that panicked (the thread goes on with the next one).
    pub fn count_panic(&mut self) {
        self.metrics.failures.inc();
        self.schedule.on_failure();
        self.last_failure = Some("panic");
    }

    fn run_tick(&mut self, now: Instant, wall: SystemTime) -> TickOutcome {
        let s = &self.settings;
        let state = match self.backend.read_peer(&s.interface, &s.peer) {
            Ok(st) => st,
            Err(e) => return TickOutcome::Failed(TickError::Device(e)),
        };
        let handshake = match state.last_handshake {
            None => Handshake::Never,
            Some(t) => Handshake::Age(wall.duration_since(t).unwrap_or(Duration::ZERO)),
        };
        self.metrics.set_handshake_age(
            &self.peer_label,
            match handshake {
                Handshake::Never => None,
                Handshake::Age(a) => Some(a.as_secs_f64()),
            },
        );
        self.metrics.set_current_ip(
            &s.interface,
            &self.peer_label,
            state.endpoint.map(|e| e.ip().to_string()),
        );
        let plan = self.schedule.on_check(now, handshake);
        if !plan.resolve {
            return TickOutcome::Checked;
        }
        match self.resolve_and_apply(state.endpoint, plan, wall) {
            Ok(o) => {
                self.schedule.on_success(now, plan);
                o
            }
            Err(e) => {
                self.schedule.on_failure();
                TickOutcome::Failed(e)
            }
        }
    }

    fn resolve_and_apply(
        &mut self,
        current: Option<std::net::SocketAddr>,
        plan: CheckPlan,
        wall: SystemTime,
    ) -> Result<TickOutcome, TickError> {
        let s = &self.settings;
        let answers = self
            .dns
            .resolve_ipv4(&s.hostname)
            .map_err(TickError::Resolve)?;
        let ip = decide::choose(current, &answers).ok_or_else(|| {
            TickError::Resolve(ResolveError::NoIpv4 {
                host: s.hostname.clone(),
            })
        })?;
        let chosen = SocketAddrV4::new(ip, s.port);
        match decide::decide(current, chosen, plan.stale) {
            Action::Keep => Ok(TickOutcome::Kept(chosen)),
            Action::Apply { to, reason } => {
                self.backend
                    .set_endpoint(&s.interface, &s.peer, to)
                    .map_err(TickError::Device)?;
                self.metrics.changes.inc();
                self.metrics.last_update.set(wallclock::unix_seconds(wall));
                self.metrics.set_current_ip(
                    &s.interface,
                    &self.peer_label,
                    Some(to.ip().to_string()),
                );
                tracing::info!(
                    interface = %s.interface,
                    peer = %self.peer_label,
                    hostname = %s.hostname,
                    previous = %current.map_or_else(|| "none".to_string(), |c| c.to_string()),
                    endpoint = %to,
                    reason = reason.as_str(),
                    answers = answers.len(),
                    "WireGuard peer endpoint updated"
                );
                Ok(TickOutcome::Applied { to, reason })
            }
        }
    }

    fn report(&mut self, outcome: &TickOutcome) {
        let s = &self.settings;
        match outcome {
            TickOutcome::Failed(e) => {
                self.metrics.failures.inc();
                // Warn when the kind of failure changes; repeats go to debug
                // so a long outage does not flood the journal.
                if self.last_failure != Some(e.kind()) {
                    tracing::warn!(
                        interface = %s.interface,
                        hostname = %s.hostname,
                        kind = e.kind(),
                        error = %e,
                        "WireGuard endpoint resolver tick failed; retrying"
                    );
                } else {
                    tracing::debug!(kind = e.kind(), error = %e, "WireGuard resolver still failing");
                }
                self.last_failure = Some(e.kind());
            }
            _ => {
                if let Some(kind) = self.last_failure.take() {
                    tracing::info!(interface = %s.interface, after = kind, "WireGuard endpoint resolver recovered");
                }
                if let TickOutcome::Kept(ep) = outcome {
                    tracing::debug!(interface = %s.interface, endpoint = %ep, "WireGuard endpoint unchanged");
                }
            }
        }
    }
}

/// A running resolver thread.
pub struct ResolverHandle {
    stop: Sender<()>,
    done: Receiver<()>,
    thread: JoinHandle<()>,
}

/// Starts the resolver thread (`wg-resolver`); the first tick runs at once.
pub fn spawn<B, R>(
    settings: ResolverSettings,
    backend: B,
    dns: R,
    metrics: WgMetrics,
) -> std::io::Result<ResolverHandle>
where
    B: WgBackend + Send + 'static,
    R: Resolve + Send + 'static,
{
    let (stop_tx, stop_rx) = bounded::<()>(1);
    let (done_tx, done_rx) = bounded::<()>(0);
    let thread = std::thread::Builder::new()
        .name("wg-resolver".into())
        .spawn(move || {
            // Dropped when the thread ends, however it ends: stop() sees it.
            let _done = done_tx;
            tracing::info!(
                interface = %settings.interface,
                peer = %settings.peer,
                hostname = %settings.hostname,
                port = settings.port,
                resolve_interval_s = settings.timing.resolve_interval.as_secs(),
                stale_threshold_s = settings.timing.stale_threshold.as_secs(),
                "WireGuard endpoint resolver started"
            );
            let mut resolver = Resolver::new(settings, backend, dns, metrics, Instant::now());
            run_loop(&mut resolver, &stop_rx);
            tracing::info!("WireGuard endpoint resolver stopped");
        })?;
    Ok(ResolverHandle {
        stop: stop_tx,
        done: done_rx,
        thread,
    })
}

fn run_loop<B: WgBackend, R: Resolve>(resolver: &mut Resolver<B, R>, stop: &Receiver<()>) {
    loop {
        let now = Instant::now();
        let ticked = catch_unwind(AssertUnwindSafe(|| {
            resolver.tick(now, SystemTime::now());
        }));
        if ticked.is_err() {
            resolver.count_panic();
            tracing::error!(
                "WireGuard endpoint resolver tick panicked; continuing with the next tick"
            );
        }
        let wait = resolver
            .next_tick(now)
            .saturating_duration_since(Instant::now());
        select! {
            recv(stop) -> _ => return,
            recv(after(wait)) -> _ => {}
        }
    }
}

impl ResolverHandle {
    /// Asks the thread to stop and waits up to `grace` for it. A tick stuck
    /// in a blocking call (a DNS lookup, a wedged UAPI socket) is left
    /// behind rather than holding up shutdown; returns whether it stopped.
    pub fn stop(self, grace: Duration) -> bool {
        let _ = self.stop.try_send(());
        match self.done.recv_timeout(grace) {
            Err(RecvTimeoutError::Disconnected) | Ok(()) => {
                if self.thread.join().is_err() {
                    tracing::error!("WireGuard endpoint resolver thread panicked");
                }
                true
            }
            Err(RecvTimeoutError::Timeout) => {
                tracing::warn!("WireGuard endpoint resolver did not stop in time; leaving it");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wireguard::device::PeerState;
    use prometheus::{Encoder, Registry, TextEncoder};
    use std::cell::RefCell;
    use std::net::{Ipv4Addr, SocketAddr};
    use std::rc::Rc;

    const SEC: Duration = Duration::from_secs(1);
    const KEY: &str = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";

    /// A WireGuard device in memory; `applies` records every set_endpoint.
    #[derive(Default)]
    struct Dev {
        interface_up: bool,
        peer_present: bool,
        endpoint: Option<SocketAddr>,
        handshake: Option<SystemTime>,
        applies: Vec<SocketAddrV4>,
        panic_on_read: bool,
    }

    #[derive(Clone)]
    struct FakeWg(Rc<RefCell<Dev>>);

    impl FakeWg {
        fn check(&self, interface: &str, peer: &PeerKey) -> Result<(), WgError> {
            let d = self.0.borrow();
            if !d.interface_up {
                return Err(WgError::InterfaceMissing {
                    interface: interface.into(),
                    backend: "fake",
                });
            }
            if !d.peer_present {
                return Err(WgError::PeerMissing {
                    interface: interface.into(),
                    peer: *peer,
                });
            }
            Ok(())
        }
    }

    impl WgBackend for FakeWg {
        fn read_peer(&mut self, interface: &str, peer: &PeerKey) -> Result<PeerState, WgError> {
            if self.0.borrow().panic_on_read {
                panic!("library bug");
            }
            self.check(interface, peer)?;
            let d = self.0.borrow();
            Ok(PeerState {
                endpoint: d.endpoint,
                last_handshake: d.handshake,
                backend: "fake",
            })
        }

        fn set_endpoint(
            &mut self,
            interface: &str,
            peer: &PeerKey,
            endpoint: SocketAddrV4,
        ) -> Result<(), WgError> {
            self.check(interface, peer)?;
            let mut d = self.0.borrow_mut();
            d.endpoint = Some(SocketAddr::V4(endpoint));
            d.applies.push(endpoint);
            Ok(())
        }
    }

    /// DNS answers set by the test; `None` = lookup failure.
    #[derive(Clone)]
    struct FakeDns(Rc<RefCell<Option<Vec<Ipv4Addr>>>>, Rc<RefCell<u32>>);

    impl Resolve for FakeDns {
        fn resolve_ipv4(&mut self, host: &str) -> Result<Vec<Ipv4Addr>, ResolveError> {
            *self.1.borrow_mut() += 1;
            match self.0.borrow().clone() {
                Some(v) if !v.is_empty() => Ok(v),
                Some(_) => Err(ResolveError::NoIpv4 { host: host.into() }),
                None => Err(ResolveError::Lookup {
                    host: host.into(),
                    source: std::io::Error::other("NXDOMAIN"),
                }),
            }
        }
    }

    struct World {
        dev: Rc<RefCell<Dev>>,
        dns: Rc<RefCell<Option<Vec<Ipv4Addr>>>>,
        lookups: Rc<RefCell<u32>>,
        registry: Registry,
        resolver: Resolver<FakeWg, FakeDns>,
        t0: Instant,
        wall0: SystemTime,
    }

    impl World {
        fn new(resolve: u64, stale: u64) -> World {
            let dev = Rc::new(RefCell::new(Dev {
                interface_up: true,
                peer_present: true,
                endpoint: Some("10.0.0.1:51820".parse().unwrap()),
                ..Dev::default()
            }));
            let dns = Rc::new(RefCell::new(Some(vec![ip("10.0.0.1")])));
            let lookups = Rc::new(RefCell::new(0));
            let registry = Registry::new();
            let metrics = WgMetrics::register(&registry).unwrap();
            let t0 = Instant::now();
            let settings = ResolverSettings {
                interface: "wg0".into(),
                peer: PeerKey::parse(KEY).unwrap(),
                hostname: "peer.example".into(),
                port: 51820,
                timing: Timing::new(Duration::from_secs(resolve), Duration::from_secs(stale)),
            };
            let resolver = Resolver::new(
                settings,
                FakeWg(dev.clone()),
                FakeDns(dns.clone(), lookups.clone()),
                metrics,
                t0,
            );
            World {
                dev,
                dns,
                lookups,
                registry,
                resolver,
                t0,
                wall0: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
            }
        }

        fn tick_at(&mut self, secs: u64) -> TickOutcome {
            self.resolver.tick(
                self.t0 + Duration::from_secs(secs),
                self.wall0 + Duration::from_secs(secs),
            )
        }

        fn metrics(&self) -> String {
            let mut buf = Vec::new();
            TextEncoder::new()
                .encode(&self.registry.gather(), &mut buf)
                .unwrap();
            String::from_utf8(buf).unwrap()
        }

        fn metric(&self, name: &str) -> f64 {
            let text = self.metrics();
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
                .unwrap_or_else(|| panic!("{name} not in\n{text}"))
        }

        fn set_dns(&self, ips: &[&str]) {
            *self.dns.borrow_mut() = Some(ips.iter().map(|s| ip(s)).collect());
        }
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    const FAILURES: &str = "oracle_watchdog_wg_endpoint_resolution_failures_total";
    const CHANGES: &str = "oracle_watchdog_wg_endpoint_changes_total";

    #[test]
    fn dns_change_moves_the_endpoint_within_one_interval() {
        let mut w = World::new(60, 180);
        w.dev.borrow_mut().handshake = Some(w.wall0 - 5 * SEC);
        assert!(matches!(w.tick_at(0), TickOutcome::Kept(_)));
        w.set_dns(&["10.0.0.2"]);
        // Between resolves only the device is read.
        for t in [10, 20, 30, 40, 50] {
            assert!(matches!(w.tick_at(t), TickOutcome::Checked));
        }
        assert!(w.dev.borrow().applies.is_empty());
        match w.tick_at(60) {
            TickOutcome::Applied { to, reason } => {
                assert_eq!(to, "10.0.0.2:51820".parse().unwrap());
                assert_eq!(reason, Reason::Changed);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(w.metric(CHANGES), 1.0);
        assert_eq!(
            w.metric("oracle_watchdog_wg_endpoint_last_update_timestamp_seconds"),
            1_800_000_060.0
        );
        let text = w.metrics();
        assert!(text.contains(&format!(
            "oracle_watchdog_wg_endpoint_current_ip{{interface=\"wg0\",ip=\"10.0.0.2\",peer=\"{KEY}\"}} 1"
        )));
        assert!(
            !text.contains("ip=\"10.0.0.1\""),
            "old series removed:\n{text}"
        );
        assert_eq!(*w.lookups.borrow(), 2, "DNS asked at 0 and 60 only");
    }

    #[test]
    fn round_robin_answers_do_not_flap() {
        let mut w = World::new(10, 180);
        w.set_dns(&["10.0.0.9", "10.0.0.1"]);
        assert!(matches!(w.tick_at(0), TickOutcome::Kept(_)));
        w.set_dns(&["10.0.0.1", "10.0.0.9"]);
        assert!(matches!(w.tick_at(10), TickOutcome::Kept(_)));
        // Current IP gone: smallest of the rest.
        w.set_dns(&["10.0.0.9", "10.0.0.3"]);
        assert!(matches!(w.tick_at(20), TickOutcome::Applied { .. }));
        assert_eq!(
            w.dev.borrow().applies,
            vec!["10.0.0.3:51820".parse().unwrap()]
        );
    }

    #[test]
    fn stale_handshake_reapplies_the_same_endpoint_at_once() {
        let mut w = World::new(60, 180);
        w.dev.borrow_mut().handshake = Some(w.wall0);
        assert!(matches!(w.tick_at(0), TickOutcome::Kept(_)));
        // Handshake at wall0 becomes stale after 180 s: first check past it.
        let mut applied_at = None;
        for t in (10..=200).step_by(10) {
            if let TickOutcome::Applied { reason, to } = w.tick_at(t) {
                assert_eq!(reason, Reason::StaleHandshake);
                assert_eq!(to, "10.0.0.1:51820".parse().unwrap());
                applied_at = Some(t);
                break;
            }
        }
        assert_eq!(applied_at, Some(190));
        assert_eq!(w.metric(CHANGES), 1.0);
        assert_eq!(
            w.metric(&format!(
                "oracle_watchdog_wg_peer_handshake_age_seconds{{peer=\"{KEY}\"}}"
            )),
            190.0
        );
    }

    #[test]
    fn never_handshaken_reports_minus_one_and_is_not_stale() {
        let mut w = World::new(10, 30);
        for t in (0..=100).step_by(10) {
            assert!(matches!(w.tick_at(t), TickOutcome::Kept(_)));
        }
        assert_eq!(
            w.metric(&format!(
                "oracle_watchdog_wg_peer_handshake_age_seconds{{peer=\"{KEY}\"}}"
            )),
            -1.0
        );
        assert!(w.dev.borrow().applies.is_empty());
    }

    #[test]
    fn every_failure_is_counted_and_retried_without_creating_anything() {
        let mut w = World::new(60, 180);
        *w.dns.borrow_mut() = None;
        assert!(matches!(
            w.tick_at(0),
            TickOutcome::Failed(TickError::Resolve(_))
        ));
        w.set_dns(&[]);
        // Retried at the next check, not a full interval later.
        assert!(matches!(
            w.tick_at(10),
            TickOutcome::Failed(TickError::Resolve(ResolveError::NoIpv4 { .. }))
        ));
        w.set_dns(&["10.0.0.5"]);
        w.dev.borrow_mut().peer_present = false;
        assert!(matches!(
            w.tick_at(20),
            TickOutcome::Failed(TickError::Device(WgError::PeerMissing { .. }))
        ));
        w.dev.borrow_mut().interface_up = false;
        assert!(matches!(
            w.tick_at(30),
            TickOutcome::Failed(TickError::Device(WgError::InterfaceMissing { .. }))
        ));
        assert_eq!(w.metric(FAILURES), 4.0);
        assert_eq!(w.metric(CHANGES), 0.0);
        assert!(w.dev.borrow().applies.is_empty());
        // Back: the pending resolve happens at the next check.
        {
            let mut d = w.dev.borrow_mut();
            d.interface_up = true;
            d.peer_present = true;
        }
        assert!(matches!(w.tick_at(40), TickOutcome::Applied { .. }));
        assert_eq!(w.metric(FAILURES), 4.0);
    }

    #[test]
    fn panics_are_counted_and_the_loop_goes_on() {
        let mut w = World::new(10, 30);
        w.dev.borrow_mut().panic_on_read = true;
        let (stop_tx, stop_rx) = bounded::<()>(1);
        // Run the real loop body on this thread: one panicking tick, then stop.
        stop_tx.send(()).unwrap();
        run_loop(&mut w.resolver, &stop_rx);
        assert_eq!(w.metric(FAILURES), 1.0);
        w.dev.borrow_mut().panic_on_read = false;
        assert!(matches!(w.tick_at(10), TickOutcome::Kept(_)));
    }
}
