//! The monitor's heartbeat as a pure state machine: `disconnected ->
//! connecting -> active`.
//!
//! It decides which Consul request to make next and when, and turns each
//! request's outcome into a new state plus [`Note`]s (for metrics and logs).
//! It does no I/O and reads no clock: the caller passes `now`, so a day of
//! heartbeats is tested in microseconds.
//!
//! The cycle while healthy is: renew the session every `renew_interval`, then
//! read the key back to confirm our session still holds it (someone may have
//! deleted it, or Consul's state may have been restored from a snapshot). One
//! request is in flight at a time.

use std::time::{Duration, Instant};

use crate::backoff::Backoff;

/// The three states of the spec's monitor state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Consul could not be used; retrying with backoff.
    Disconnected,
    /// Consul answers; creating a session and acquiring the key.
    Connecting,
    /// The key is held by our live session: the heartbeat is published.
    Active,
}

impl Phase {
    /// Lower-case name used in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Disconnected => "disconnected",
            Phase::Connecting => "connecting",
            Phase::Active => "active",
        }
    }
}

/// A Consul call the machine wants made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Create a new TTL session.
    CreateSession,
    /// Acquire the node key with this session.
    Acquire {
        /// Session ID.
        session: String,
    },
    /// Renew this session.
    Renew {
        /// Session ID.
        session: String,
    },
    /// Read the node key to see which session holds it.
    Verify {
        /// Session ID we expect to hold it.
        session: String,
    },
}

/// How a failed request failed, as far as the heartbeat cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// No usable answer from Consul (refused, timeout, no leader).
    Unavailable,
    /// Consul answered and said no (ACL 403, 5xx, malformed answer).
    Rejected,
}

/// The result of a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `CreateSession` succeeded with this ID.
    SessionCreated(String),
    /// `Acquire` answered: `true` when we hold the key.
    Acquired(bool),
    /// `Renew` succeeded.
    Renewed,
    /// `Renew` answered 404: Consul invalidated the session.
    SessionGone,
    /// `Verify` answered: the session holding the key (`None`: missing/unlocked).
    KeyHolder(Option<String>),
    /// Any request failed.
    Failed {
        /// Which kind of failure.
        kind: FailureKind,
        /// Human-readable reason (no secrets).
        message: String,
    },
}

/// Something worth a metric or a log line, produced by a transition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// The phase changed.
    Transition {
        /// Previous phase.
        from: Phase,
        /// New phase.
        to: Phase,
        /// Why, in a few words.
        reason: String,
    },
    /// Whether Consul answered the last request at all.
    ConsulReachable(bool),
    /// A session was created.
    SessionCreated(String),
    /// A renewal succeeded.
    RenewalSucceeded,
    /// Session creation, renewal, acquisition or verification failed.
    SessionFailure(String),
    /// A request is being made from the disconnected phase.
    ReconnectAttempt,
    /// Another live session holds our key (two monitors with one node name?).
    LockConflict,
    /// The key is no longer held by our session although the session lives.
    KeyLost {
        /// Who holds it now, if anyone.
        holder: Option<String>,
    },
}

/// Timers of the heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Time between renewals while active (spec: 10 s).
    pub renew_interval: Duration,
    /// First retry delay after a failure.
    pub retry_initial: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            renew_interval: Duration::from_secs(10),
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(15),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Create,
    Acquire,
    Renew,
    Verify,
}

/// The heartbeat state machine. See the module docs.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    timing: Timing,
    phase: Phase,
    session: Option<String>,
    step: Step,
    due: Instant,
    in_flight: bool,
    backoff: Backoff,
    last_renewal: Instant,
}

impl Heartbeat {
    /// A machine that wants to create a session right away (the first
    /// heartbeat happens at start, not one interval later).
    pub fn new(timing: Timing, now: Instant) -> Self {
        Heartbeat {
            timing,
            phase: Phase::Disconnected,
            session: None,
            step: Step::Create,
            due: now,
            in_flight: false,
            backoff: Backoff::new(timing.retry_initial, timing.retry_max),
            last_renewal: now,
        }
    }

    /// Current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The session we believe is ours (to destroy at shutdown).
    pub fn session(&self) -> Option<&str> {
        self.session.as_deref()
    }

    /// When [`Heartbeat::poll`] will next have something to do; `None` while
    /// a request is in flight (its outcome is what happens next).
    pub fn next_wakeup(&self) -> Option<Instant> {
        (!self.in_flight).then_some(self.due)
    }

    /// The request to make now, if one is due and none is in flight.
    pub fn poll(&mut self, now: Instant, notes: &mut Vec<Note>) -> Option<Request> {
        if self.in_flight || now < self.due {
            return None;
        }
        let request = match (self.step, self.session.clone()) {
            (Step::Create, _) | (_, None) => {
                self.step = Step::Create;
                Request::CreateSession
            }
            (Step::Acquire, Some(session)) => Request::Acquire { session },
            (Step::Renew, Some(session)) => Request::Renew { session },
            (Step::Verify, Some(session)) => Request::Verify { session },
        };
        if self.phase == Phase::Disconnected {
            notes.push(Note::ReconnectAttempt);
        }
        self.in_flight = true;
        Some(request)
    }

    /// Feeds the outcome of the request returned by the last `poll`.
    pub fn on_outcome(&mut self, outcome: Outcome, now: Instant, notes: &mut Vec<Note>) {
        self.in_flight = false;
        match (self.step, outcome) {
            (_, Outcome::Failed { kind, message }) => self.failed(kind, message, now, notes),
            (Step::Create, Outcome::SessionCreated(id)) => {
                notes.push(Note::ConsulReachable(true));
                notes.push(Note::SessionCreated(id.clone()));
                self.session = Some(id);
                self.enter(Phase::Connecting, "session created", notes);
                self.schedule(Step::Acquire, now);
            }
            (Step::Acquire, Outcome::Acquired(true)) => {
                notes.push(Note::ConsulReachable(true));
                self.backoff.reset();
                self.last_renewal = now;
                self.enter(Phase::Active, "heartbeat key acquired", notes);
                self.schedule(Step::Renew, now + self.timing.renew_interval);
            }
            (Step::Acquire, Outcome::Acquired(false)) => {
                notes.push(Note::ConsulReachable(true));
                notes.push(Note::LockConflict);
                self.enter(
                    Phase::Connecting,
                    "heartbeat key held by another session",
                    notes,
                );
                // Keep our session alive (renew first), then try again.
                let delay = self.backoff.next_delay().min(self.timing.renew_interval);
                self.schedule(Step::Renew, now + delay);
            }
            (Step::Renew, Outcome::Renewed) => {
                notes.push(Note::ConsulReachable(true));
                notes.push(Note::RenewalSucceeded);
                self.last_renewal = now;
                if self.phase == Phase::Active {
                    self.schedule(Step::Verify, now);
                } else {
                    self.enter(Phase::Connecting, "session still valid", notes);
                    self.schedule(Step::Acquire, now);
                }
            }
            (Step::Renew, Outcome::SessionGone) => {
                notes.push(Note::ConsulReachable(true));
                notes.push(Note::SessionFailure("session invalidated by Consul".into()));
                self.session = None;
                self.enter(Phase::Connecting, "session invalidated", notes);
                self.schedule(Step::Create, now);
            }
            (Step::Verify, Outcome::KeyHolder(holder)) => {
                notes.push(Note::ConsulReachable(true));
                if holder.is_some() && holder == self.session {
                    self.schedule(Step::Renew, self.last_renewal + self.timing.renew_interval);
                } else {
                    notes.push(Note::KeyLost { holder });
                    self.enter(Phase::Connecting, "heartbeat key no longer held", notes);
                    self.schedule(Step::Acquire, now);
                }
            }
            (step, other) => {
                let message = format!("unexpected outcome {other:?} for step {step:?}");
                self.failed(FailureKind::Rejected, message, now, notes);
            }
        }
    }

    fn failed(&mut self, kind: FailureKind, message: String, now: Instant, notes: &mut Vec<Note>) {
        notes.push(Note::ConsulReachable(kind == FailureKind::Rejected));
        notes.push(Note::SessionFailure(message));
        if kind == FailureKind::Rejected && self.step == Step::Acquire {
            // Consul refuses acquiring with this session (typically "invalid
            // session"): start over with a fresh one.
            self.session = None;
        }
        self.enter(Phase::Disconnected, "Consul request failed", notes);
        let next = if self.session.is_some() {
            Step::Renew
        } else {
            Step::Create
        };
        let delay = self.backoff.next_delay();
        self.schedule(next, now + delay);
    }

    fn schedule(&mut self, step: Step, at: Instant) {
        self.step = step;
        self.due = at;
    }

    fn enter(&mut self, to: Phase, reason: &str, notes: &mut Vec<Note>) {
        if self.phase != to {
            notes.push(Note::Transition {
                from: self.phase,
                to,
                reason: reason.to_string(),
            });
            self.phase = to;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    struct Clock {
        t0: Instant,
        now: Instant,
    }

    impl Clock {
        fn new() -> Self {
            let t0 = Instant::now();
            Clock { t0, now: t0 }
        }
        fn at(&mut self, secs_f: f64) -> Instant {
            self.now = self.t0 + Duration::from_secs_f64(secs_f);
            self.now
        }
    }

    fn up(hb: &mut Heartbeat, now: Instant) -> Vec<Note> {
        let mut notes = Vec::new();
        assert_eq!(hb.poll(now, &mut notes), Some(Request::CreateSession));
        hb.on_outcome(Outcome::SessionCreated("s1".into()), now, &mut notes);
        assert_eq!(
            hb.poll(now, &mut notes),
            Some(Request::Acquire {
                session: "s1".into()
            })
        );
        hb.on_outcome(Outcome::Acquired(true), now, &mut notes);
        notes
    }

    fn down() -> Outcome {
        Outcome::Failed {
            kind: FailureKind::Unavailable,
            message: "connection refused".into(),
        }
    }

    #[test]
    fn first_heartbeat_is_immediate() {
        let mut c = Clock::new();
        let mut hb = Heartbeat::new(Timing::default(), c.at(0.0));
        let notes = up(&mut hb, c.now);
        assert_eq!(hb.phase(), Phase::Active);
        let phases: Vec<_> = notes
            .iter()
            .filter_map(|n| match n {
                Note::Transition { to, .. } => Some(*to),
                _ => None,
            })
            .collect();
        assert_eq!(phases, vec![Phase::Connecting, Phase::Active]);
    }

    #[test]
    fn renews_every_interval_and_verifies_the_key() {
        let mut c = Clock::new();
        let mut hb = Heartbeat::new(Timing::default(), c.at(0.0));
        up(&mut hb, c.now);
        let mut notes = Vec::new();
        let mut renewals = 0;
        for cycle in 1..=360 {
            // One hour of heartbeats, 10 s apart.
            let t = cycle as f64 * 10.0;
            assert_eq!(
                hb.poll(c.at(t - 0.001), &mut notes),
                None,
                "renewed early at {t}"
            );
            assert_eq!(hb.next_wakeup(), Some(c.t0 + Duration::from_secs_f64(t)));
            assert_eq!(
                hb.poll(c.at(t), &mut notes),
                Some(Request::Renew {
                    session: "s1".into()
                })
            );
            hb.on_outcome(Outcome::Renewed, c.now, &mut notes);
            assert_eq!(
                hb.poll(c.now, &mut notes),
                Some(Request::Verify {
                    session: "s1".into()
                })
            );
            hb.on_outcome(
                Outcome::KeyHolder(Some("s1".into())),
                c.at(t + 0.2),
                &mut notes,
            );
            renewals += 1;
        }
        assert_eq!(renewals, 360);
        assert_eq!(
            notes
                .iter()
                .filter(|n| **n == Note::RenewalSucceeded)
                .count(),
            360
        );
        assert!(!notes.iter().any(|n| matches!(n, Note::Transition { .. })));
        assert_eq!(hb.phase(), Phase::Active);
    }

    #[test]
    fn expired_session_is_replaced_at_once() {
        let mut c = Clock::new();
        let mut hb = Heartbeat::new(Timing::default(), c.at(0.0));
        up(&mut hb, c.now);
        let mut notes = Vec::new();
        assert!(hb.poll(c.at(10.0), &mut notes).is_some());
        hb.on_outcome(Outcome::SessionGone, c.now, &mut notes);
        assert_eq!(hb.phase(), Phase::Connecting);
        assert!(notes.iter().any(|n| matches!(n, Note::SessionFailure(_))));
        assert_eq!(hb.poll(c.now, &mut notes), Some(Request::CreateSession));
        hb.on_outcome(Outcome::SessionCreated("s2".into()), c.now, &mut notes);
        assert_eq!(
            hb.poll(c.now, &mut notes),
            Some(Request::Acquire {
                session: "s2".into()
            })
        );
        hb.on_outcome(Outcome::Acquired(true), c.now, &mut notes);
        assert_eq!(hb.phase(), Phase::Active);
        assert_eq!(hb.session(), Some("s2"));
    }

    #[test]
    fn outage_backs_off_with_a_cap_and_keeps_the_session() {
        let mut c = Clock::new();
        let timing = Timing::default();
        let mut hb = Heartbeat::new(timing, c.at(0.0));
        up(&mut hb, c.now);
        let mut notes = Vec::new();
        let mut t = 10.0;
        let mut delays = Vec::new();
        for _ in 0..12 {
            let req = hb.poll(c.at(t), &mut notes).expect("request due");
            assert_eq!(
                req,
                Request::Renew {
                    session: "s1".into()
                }
            );
            hb.on_outcome(down(), c.now, &mut notes);
            assert_eq!(hb.phase(), Phase::Disconnected);
            let next = hb.next_wakeup().unwrap();
            let delay = next - c.now;
            assert!(
                delay <= timing.retry_max && delay >= timing.retry_initial / 2,
                "{delay:?}"
            );
            delays.push(delay);
            t = (next - c.t0).as_secs_f64();
        }
        // Backoff grows then stays at the cap's range.
        assert!(delays.last().unwrap() >= &(timing.retry_max / 2));
        assert_eq!(
            notes
                .iter()
                .filter(|n| **n == Note::ReconnectAttempt)
                .count(),
            11
        );
        assert!(notes.contains(&Note::ConsulReachable(false)));
        // Consul comes back: the old session is still valid, so renew + acquire.
        let req = hb.poll(c.at(t), &mut notes).unwrap();
        assert_eq!(
            req,
            Request::Renew {
                session: "s1".into()
            }
        );
        hb.on_outcome(Outcome::Renewed, c.now, &mut notes);
        assert_eq!(hb.phase(), Phase::Connecting);
        assert_eq!(
            hb.poll(c.now, &mut notes),
            Some(Request::Acquire {
                session: "s1".into()
            })
        );
        hb.on_outcome(Outcome::Acquired(true), c.now, &mut notes);
        assert_eq!(hb.phase(), Phase::Active);
        // After recovery the backoff starts from the beginning again.
        assert!(hb.poll(c.at(t + 10.0), &mut notes).is_some());
        hb.on_outcome(down(), c.now, &mut notes);
        assert!(hb.next_wakeup().unwrap() - c.now <= timing.retry_initial);
    }

    #[test]
    fn recovery_after_outage_is_bounded_by_backoff_cap() {
        // Whatever the outage length, once Consul is back the next attempt
        // comes within retry_max.
        let mut c = Clock::new();
        let timing = Timing::default();
        let mut hb = Heartbeat::new(timing, c.at(0.0));
        let mut notes = Vec::new();
        let mut t = 0.0;
        while t < 3600.0 {
            assert!(hb.poll(c.at(t), &mut notes).is_some());
            hb.on_outcome(down(), c.now, &mut notes);
            let next = hb.next_wakeup().unwrap();
            assert!(next - c.now <= timing.retry_max);
            t = (next - c.t0).as_secs_f64();
        }
        assert_eq!(hb.poll(c.at(t), &mut notes), Some(Request::CreateSession));
    }

    #[test]
    fn lock_conflict_does_not_fight_and_keeps_session_alive() {
        let mut c = Clock::new();
        let timing = Timing::default();
        let mut hb = Heartbeat::new(timing, c.at(0.0));
        let mut notes = Vec::new();
        hb.poll(c.now, &mut notes);
        hb.on_outcome(Outcome::SessionCreated("mine".into()), c.now, &mut notes);
        for round in 0..20 {
            let req = hb.poll(c.now, &mut notes).unwrap();
            if round > 0 {
                assert_eq!(
                    req,
                    Request::Renew {
                        session: "mine".into()
                    }
                );
                hb.on_outcome(Outcome::Renewed, c.now, &mut notes);
                hb.poll(c.now, &mut notes).unwrap();
            }
            hb.on_outcome(Outcome::Acquired(false), c.now, &mut notes);
            assert_eq!(hb.phase(), Phase::Connecting);
            let wait = hb.next_wakeup().unwrap() - c.now;
            // Never longer than a renew interval, so our TTL session survives.
            assert!(wait <= timing.renew_interval && wait > Duration::ZERO);
            c.now = hb.next_wakeup().unwrap();
        }
        assert_eq!(
            notes.iter().filter(|n| **n == Note::LockConflict).count(),
            20
        );
    }

    #[test]
    fn key_deleted_under_live_session_is_reacquired() {
        let mut c = Clock::new();
        let mut hb = Heartbeat::new(Timing::default(), c.at(0.0));
        up(&mut hb, c.now);
        let mut notes = Vec::new();
        hb.poll(c.at(10.0), &mut notes).unwrap();
        hb.on_outcome(Outcome::Renewed, c.now, &mut notes);
        hb.poll(c.now, &mut notes).unwrap();
        hb.on_outcome(Outcome::KeyHolder(None), c.now, &mut notes);
        assert!(notes.contains(&Note::KeyLost { holder: None }));
        assert_eq!(hb.phase(), Phase::Connecting);
        assert_eq!(
            hb.poll(c.now, &mut notes),
            Some(Request::Acquire {
                session: "s1".into()
            })
        );
    }

    #[test]
    fn acquire_rejected_starts_over_with_new_session() {
        let mut c = Clock::new();
        let mut hb = Heartbeat::new(Timing::default(), c.at(0.0));
        let mut notes = Vec::new();
        hb.poll(c.now, &mut notes);
        hb.on_outcome(Outcome::SessionCreated("s1".into()), c.now, &mut notes);
        hb.poll(c.now, &mut notes);
        hb.on_outcome(
            Outcome::Failed {
                kind: FailureKind::Rejected,
                message: "invalid session".into(),
            },
            c.now,
            &mut notes,
        );
        assert_eq!(hb.session(), None);
        assert!(notes.contains(&Note::ConsulReachable(true)));
        let t = hb.next_wakeup().unwrap();
        assert!(t - c.now <= 2 * S);
        assert_eq!(hb.poll(t, &mut notes), Some(Request::CreateSession));
    }

    #[test]
    fn nothing_is_requested_while_a_request_is_in_flight() {
        let mut c = Clock::new();
        let mut hb = Heartbeat::new(Timing::default(), c.at(0.0));
        let mut notes = Vec::new();
        assert!(hb.poll(c.now, &mut notes).is_some());
        assert_eq!(hb.next_wakeup(), None);
        assert_eq!(hb.poll(c.at(1000.0), &mut notes), None);
    }
}
