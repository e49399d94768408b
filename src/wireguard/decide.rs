//! The resolver's pure decisions: when to resolve, which A record to use and
//! whether the peer's endpoint must be (re)applied. No I/O, no clocks: every
//! function takes `now`, so the timing is tested in virtual time.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

/// Longest pause between two reads of the device. The device read is a local
/// netlink/socket call, so checking the handshake more often than DNS is
/// cheap and makes "stale handshake forces a re-resolve" prompt.
pub const MAX_CHECK_INTERVAL: Duration = Duration::from_secs(10);

/// The resolver's timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How often DNS is consulted when nothing is wrong (`resolve_interval`).
    pub resolve_interval: Duration,
    /// A handshake older than this is stale (`stale_handshake_threshold`).
    pub stale_threshold: Duration,
    /// How often the device is read (handshake age, endpoint, failures).
    pub check_interval: Duration,
}

impl Timing {
    /// Timing for the configured intervals; the device is read at least
    /// every [`MAX_CHECK_INTERVAL`].
    pub fn new(resolve_interval: Duration, stale_threshold: Duration) -> Timing {
        Timing {
            resolve_interval,
            stale_threshold,
            check_interval: resolve_interval.min(MAX_CHECK_INTERVAL),
        }
    }
}

/// What the device says about the peer's last handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    /// No handshake since the interface came up (metric value -1).
    Never,
    /// The most recent handshake was this long ago.
    Age(Duration),
}

impl Handshake {
    /// Whether the handshake is older than `threshold`. "Never" is not stale:
    /// right after `wg-quick up` nothing has happened yet, and re-applying
    /// the same endpoint would not change that.
    pub fn is_stale(self, threshold: Duration) -> bool {
        matches!(self, Handshake::Age(age) if age > threshold)
    }
}

/// Result of one device read: whether to resolve now, and whether the
/// handshake counts as stale for this tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckPlan {
    /// Resolve the hostname (and maybe apply) in this tick.
    pub resolve: bool,
    /// The handshake is stale: apply even if the endpoint is unchanged.
    pub stale: bool,
}

/// When to resolve. Resolves right away at start, then every
/// `resolve_interval` after a successful tick; a failed tick is retried at
/// the next check. A handshake that turns stale forces one resolve at once;
/// while it stays stale, every regular resolve re-applies the endpoint.
#[derive(Debug, Clone)]
pub struct Schedule {
    timing: Timing,
    next_resolve: Instant,
    stale_forced: bool,
}

impl Schedule {
    /// A schedule whose first resolve is due at `now`.
    pub fn new(timing: Timing, now: Instant) -> Schedule {
        Schedule {
            timing,
            next_resolve: now,
            stale_forced: false,
        }
    }

    /// The timers in use.
    pub fn timing(&self) -> Timing {
        self.timing
    }

    /// When the device should be read next, given a check happened at `now`.
    pub fn next_check(&self, now: Instant) -> Instant {
        now + self.timing.check_interval
    }

    /// Called after a successful device read at `now`.
    pub fn on_check(&mut self, now: Instant, handshake: Handshake) -> CheckPlan {
        let stale = handshake.is_stale(self.timing.stale_threshold);
        if !stale {
            self.stale_forced = false;
        }
        let forced = stale && !self.stale_forced;
        CheckPlan {
            resolve: forced || now >= self.next_resolve,
            stale,
        }
    }

    /// Called when a tick that resolved finished without error (applied or
    /// nothing to do): the next regular resolve is one interval away.
    pub fn on_success(&mut self, now: Instant, plan: CheckPlan) {
        self.next_resolve = now + self.timing.resolve_interval;
        if plan.stale {
            self.stale_forced = true;
        }
    }

    /// Called when the tick failed after deciding to resolve (DNS, apply):
    /// the resolve stays due, so the next check retries it.
    pub fn on_failure(&mut self) {}
}

/// Picks the endpoint IP from a set of A records, deterministically: the
/// current endpoint's IP if it is still among the answers (round-robin DNS
/// must not make the tunnel flap), else the numerically smallest address.
/// `None` when there are no answers.
pub fn choose(current: Option<SocketAddr>, answers: &[Ipv4Addr]) -> Option<Ipv4Addr> {
    if let Some(SocketAddr::V4(cur)) = current
        && answers.contains(cur.ip())
    {
        return Some(*cur.ip());
    }
    answers.iter().min().copied()
}

/// Why an endpoint is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The peer has no endpoint yet.
    Unset,
    /// The resolved address (or the configured port) differs from the current one.
    Changed,
    /// Same address, but the handshake is stale: re-apply it.
    StaleHandshake,
}

impl Reason {
    /// Short name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Unset => "unset",
            Reason::Changed => "changed",
            Reason::StaleHandshake => "stale_handshake",
        }
    }
}

/// What to do with the peer this tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The endpoint is right and the handshake fresh.
    Keep,
    /// Set the peer's endpoint to `to`.
    Apply {
        /// The new endpoint.
        to: SocketAddrV4,
        /// Why.
        reason: Reason,
    },
}

/// Compares the peer's current endpoint with the chosen one.
pub fn decide(current: Option<SocketAddr>, chosen: SocketAddrV4, stale: bool) -> Action {
    let reason = match current {
        None => Reason::Unset,
        Some(cur) if cur != SocketAddr::V4(chosen) => Reason::Changed,
        Some(_) if stale => Reason::StaleHandshake,
        Some(_) => return Action::Keep,
    };
    Action::Apply { to: chosen, reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn ep(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn v4(s: &str) -> SocketAddrV4 {
        s.parse().unwrap()
    }

    #[test]
    fn same_answers_in_any_order_give_the_same_endpoint() {
        let a = [ip("10.0.0.9"), ip("10.0.0.10"), ip("9.255.0.1")];
        let b = [ip("10.0.0.10"), ip("9.255.0.1"), ip("10.0.0.9")];
        assert_eq!(choose(None, &a), Some(ip("9.255.0.1")));
        assert_eq!(choose(None, &b), Some(ip("9.255.0.1")));
        // Numeric, not lexical: 10.0.0.9 < 10.0.0.10.
        assert_eq!(
            choose(None, &[ip("10.0.0.10"), ip("10.0.0.9")]),
            Some(ip("10.0.0.9"))
        );
        assert_eq!(choose(None, &[]), None);
    }

    #[test]
    fn current_endpoint_is_kept_while_it_is_among_the_answers() {
        let current = Some(ep("10.0.0.20:51820"));
        let answers = [ip("10.0.0.5"), ip("10.0.0.20")];
        assert_eq!(choose(current, &answers), Some(ip("10.0.0.20")));
        // Round-robin rotation does not move it.
        let rotated = [ip("10.0.0.20"), ip("10.0.0.5")];
        assert_eq!(choose(current, &rotated), Some(ip("10.0.0.20")));
        // Gone from DNS: fall back to the smallest.
        assert_eq!(
            choose(current, &[ip("10.0.0.7"), ip("10.0.0.6")]),
            Some(ip("10.0.0.6"))
        );
        // An IPv6 current endpoint never matches.
        assert_eq!(
            choose(Some(ep("[fd00::1]:51820")), &answers),
            Some(ip("10.0.0.5"))
        );
    }

    #[test]
    fn decide_applies_on_change_unset_or_stale_only() {
        let to = v4("10.0.0.2:51820");
        assert_eq!(
            decide(None, to, false),
            Action::Apply {
                to,
                reason: Reason::Unset
            }
        );
        assert_eq!(
            decide(Some(ep("10.0.0.1:51820")), to, false),
            Action::Apply {
                to,
                reason: Reason::Changed
            }
        );
        // Same IP, other port: the configured port wins.
        assert_eq!(
            decide(Some(ep("10.0.0.2:4000")), to, true),
            Action::Apply {
                to,
                reason: Reason::Changed
            }
        );
        assert_eq!(decide(Some(ep("10.0.0.2:51820")), to, false), Action::Keep);
        assert_eq!(
            decide(Some(ep("10.0.0.2:51820")), to, true),
            Action::Apply {
                to,
                reason: Reason::StaleHandshake
            }
        );
    }

    #[test]
    fn never_is_not_stale_and_the_threshold_is_exclusive() {
        let t = 180 * SEC;
        assert!(!Handshake::Never.is_stale(t));
        assert!(!Handshake::Age(t).is_stale(t));
        assert!(Handshake::Age(t + SEC).is_stale(t));
    }

    #[test]
    fn check_interval_is_capped() {
        assert_eq!(Timing::new(60 * SEC, 180 * SEC).check_interval, 10 * SEC);
        assert_eq!(Timing::new(10 * SEC, 30 * SEC).check_interval, 10 * SEC);
        assert_eq!(Timing::new(3 * SEC, 30 * SEC).check_interval, 3 * SEC);
    }

    /// Drives a schedule through virtual time: one check per check interval,
    /// each resolve succeeding; returns the offsets (s) at which it resolved.
    fn resolve_times(
        schedule: &mut Schedule,
        start: Instant,
        until: Duration,
        handshake: impl Fn(Duration) -> Handshake,
    ) -> Vec<u64> {
        let mut out = Vec::new();
        let mut now = start;
        while now - start <= until {
            let plan = schedule.on_check(now, handshake(now - start));
            if plan.resolve {
                out.push((now - start).as_secs());
                schedule.on_success(now, plan);
            }
            now = schedule.next_check(now);
        }
        out
    }

    #[test]
    fn resolves_at_start_then_every_interval_while_healthy() {
        let t0 = Instant::now();
        let mut s = Schedule::new(Timing::new(60 * SEC, 180 * SEC), t0);
        let times = resolve_times(&mut s, t0, 300 * SEC, |_| Handshake::Age(5 * SEC));
        assert_eq!(times, vec![0, 60, 120, 180, 240, 300]);
    }

    #[test]
    fn a_handshake_turning_stale_forces_one_resolve_at_once() {
        let t0 = Instant::now();
        let mut s = Schedule::new(Timing::new(60 * SEC, 180 * SEC), t0);
        // Last handshake at t=-100 s: stale from t=81 s on (age > 180 s).
        let times = resolve_times(&mut s, t0, 200 * SEC, |el| Handshake::Age(el + 100 * SEC));
        // 0 and 60 regular; 90 is the first check with a stale handshake
        // (forced, resets the interval); then 150 regular (still stale,
        // re-applied, no second forced resolve in between).
        assert_eq!(times, vec![0, 60, 90, 150]);
    }

    #[test]
    fn stale_again_after_recovery_forces_again() {
        let t0 = Instant::now();
        let mut s = Schedule::new(Timing::new(60 * SEC, 30 * SEC), t0);
        let mut plans = Vec::new();
        for (at, hs) in [
            (0, 40), // stale at start: forced (it is also due)
            (10, 50),
            (20, 5),  // fresh again
            (30, 40), // stale again: forced
            (40, 50),
        ] {
            let now = t0 + at * SEC;
            let plan = s.on_check(now, Handshake::Age(hs * SEC));
            if plan.resolve {
                s.on_success(now, plan);
            }
            plans.push((at, plan));
        }
        let resolved: Vec<u32> = plans
            .iter()
            .filter(|(_, p)| p.resolve)
            .map(|(at, _)| *at)
            .collect();
        assert_eq!(resolved, vec![0, 30]);
        assert!(plans.iter().all(|(at, p)| p.stale == (*at != 20)));
    }

    #[test]
    fn a_failed_resolve_is_retried_at_the_next_check() {
        let t0 = Instant::now();
        let mut s = Schedule::new(Timing::new(60 * SEC, 180 * SEC), t0);
        let fresh = Handshake::Age(SEC);
        assert!(s.on_check(t0, fresh).resolve);
        s.on_failure();
        let t1 = s.next_check(t0);
        assert_eq!(t1 - t0, 10 * SEC);
        let plan = s.on_check(t1, fresh);
        assert!(plan.resolve, "retry after failure");
        s.on_success(t1, plan);
        assert!(!s.on_check(s.next_check(t1), fresh).resolve);
        assert!(s.on_check(t1 + 60 * SEC, fresh).resolve);
    }

    #[test]
    fn a_failed_stale_apply_keeps_forcing() {
        let t0 = Instant::now();
        let mut s = Schedule::new(Timing::new(60 * SEC, 30 * SEC), t0);
        let plan = s.on_check(t0, Handshake::Age(SEC));
        s.on_success(t0, plan);
        let stale = Handshake::Age(40 * SEC);
        let t1 = t0 + 10 * SEC;
        assert_eq!(
            s.on_check(t1, stale),
            CheckPlan {
                resolve: true,
                stale: true
            }
        );
        s.on_failure();
        let t2 = t0 + 20 * SEC;
        assert!(s.on_check(t2, stale).resolve, "stale apply failed: retry");
    }
}
