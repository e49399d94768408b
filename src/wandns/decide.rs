//! The DDNS updater's decisions as a pure state machine: when to check the
//! WAN IP, whether the Cloudflare record needs a PATCH, and the cooldown.
//!
//! It does no I/O and reads no clock. The runner asks [`Updater::poll`] whether
//! a check is due, performs each [`Request`] it is given and feeds the
//! [`Outcome`] back to [`Updater::on_outcome`], which answers with the next
//! request of the same check (or `None` when the check is over). Everything
//! worth a metric or a log line comes out as a [`Note`].
//!
//! Rules:
//! * a check runs at start and then every `poll_interval`;
//! * the record is patched only when its content differs from the detected IP;
//! * at most one update per `cooldown`: the first update after start is
//!   immediate; a different IP seen inside the cooldown is re-checked (and
//!   applied) at the instant the cooldown ends, by a scheduled wake-up;
//! * the record id is cached; a 404 on the cached id looks the record up by
//!   name again (once per check).

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// The two intervals the machine works with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Time between two regular checks.
    pub poll_interval: Duration,
    /// Minimum time between two record updates.
    pub cooldown: Duration,
}

/// An I/O step the machine wants performed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Ask the detection providers (in order) for the WAN IPv4.
    Detect,
    /// Read the A record: by id when one is cached, otherwise by name.
    ReadRecord {
        /// The cached record id, if any.
        cached_id: Option<String>,
    },
    /// PATCH the record's content to `ip` (ttl and proxied untouched).
    Update {
        /// Record id.
        record_id: String,
        /// New content.
        ip: Ipv4Addr,
    },
    /// Create the missing A record (only with `create_if_missing`).
    Create {
        /// Content of the new record.
        ip: Ipv4Addr,
    },
}

/// What the record looks like in Cloudflare, as far as the decision goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordView {
    /// Record id (for the PATCH).
    pub id: String,
    /// Current content (an IPv4 for an A record, kept as text as received).
    pub content: String,
}

/// The result of a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A provider answered with this IPv4.
    Detected(Ipv4Addr),
    /// Every provider failed.
    DetectionFailed,
    /// The record was read.
    RecordFound(RecordView),
    /// Looking up by name found no A record.
    RecordMissing,
    /// The cached record id answered 404 (record deleted or recreated).
    RecordGone,
    /// The PATCH succeeded.
    Updated,
    /// The POST created a record with this id.
    Created {
        /// Id of the new record.
        id: String,
    },
    /// A Cloudflare call failed otherwise; retried at the next check.
    Failed,
}

/// Something that happened, for metrics and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// A check began (detection is about to run).
    CheckStarted,
    /// Detection succeeded; `previous` is the last detected IP (`None` for
    /// the first detection since start).
    IpDetected {
        /// The detected IP.
        ip: Ipv4Addr,
        /// The previous detection's IP.
        previous: Option<Ipv4Addr>,
    },
    /// Every provider failed; retried at the next check.
    DetectionFailed,
    /// The record already holds the detected IP.
    Unchanged {
        /// The IP.
        ip: Ipv4Addr,
    },
    /// The record needs `ip` but the cooldown holds updates until `until`.
    Deferred {
        /// The IP waiting to be applied.
        ip: Ipv4Addr,
        /// When the cooldown ends (and the IP is re-checked).
        until: Instant,
    },
    /// The record now holds `to`.
    UpdateSucceeded {
        /// Previous content (`None` when the record was created).
        from: Option<String>,
        /// New content.
        to: Ipv4Addr,
    },
    /// The PATCH or POST failed.
    UpdateFailed {
        /// The IP that could not be written.
        ip: Ipv4Addr,
    },
    /// No A record exists and `create_if_missing` is off.
    RecordMissing {
        /// The IP that could not be written.
        ip: Ipv4Addr,
    },
    /// Reading the record failed; nothing is known about it.
    LookupFailed,
    /// The cooldown began; it lasts until `until`.
    CooldownStarted {
        /// End of the cooldown.
        until: Instant,
    },
    /// The cooldown is over.
    CooldownEnded,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Idle,
    Detecting,
    Reading {
        ip: Ipv4Addr,
        relooked: bool,
    },
    Updating {
        ip: Ipv4Addr,
        from: Option<String>,
        relooked: bool,
    },
}

/// The updater's state: schedule, cooldown, cached record.
#[derive(Debug, Clone)]
pub struct Updater {
    timing: Timing,
    create_if_missing: bool,
    phase: Phase,
    next_check: Instant,
    cooldown_until: Option<Instant>,
    pending: bool,
    last_ip: Option<Ipv4Addr>,
    record_id: Option<String>,
    record_content: Option<String>,
}

impl Updater {
    /// A machine whose first check is due at `now`.
    pub fn new(timing: Timing, create_if_missing: bool, now: Instant) -> Self {
        Updater {
            timing,
            create_if_missing,
            phase: Phase::Idle,
            next_check: now,
            cooldown_until: None,
            pending: false,
            last_ip: None,
            record_id: None,
            record_content: None,
        }
    }

    /// Starts a check when one is due; also ends the cooldown when its time
    /// has come. Returns `None` while a check is in flight or none is due.
    pub fn poll(&mut self, now: Instant, notes: &mut Vec<Note>) -> Option<Request> {
        if let Some(until) = self.cooldown_until
            && now >= until
        {
            self.cooldown_until = None;
            notes.push(Note::CooldownEnded);
        }
        if self.phase != Phase::Idle {
            return None;
        }
        let tick_due = now >= self.next_check;
        let deferred_due = self.pending && self.cooldown_until.is_none();
        if !tick_due && !deferred_due {
            return None;
        }
        if tick_due {
            self.next_check = now + self.timing.poll_interval;
        }
        self.pending = false;
        self.phase = Phase::Detecting;
        notes.push(Note::CheckStarted);
        Some(Request::Detect)
    }

    /// When [`Updater::poll`] should be called next; `None` while a request
    /// is in flight (its outcome comes first).
    pub fn next_wakeup(&self) -> Option<Instant> {
        if self.phase != Phase::Idle {
            return None;
        }
        Some(match self.cooldown_until {
            Some(until) => until.min(self.next_check),
            None => self.next_check,
        })
    }

    /// True while updates are held back by the cooldown.
    pub fn in_cooldown(&self, now: Instant) -> bool {
        self.cooldown_until.is_some_and(|until| now < until)
    }

    /// The most recently detected IP.
    pub fn current_ip(&self) -> Option<Ipv4Addr> {
        self.last_ip
    }

    /// Takes the outcome of the request in flight and returns the next
    /// request of the same check, if any.
    pub fn on_outcome(
        &mut self,
        outcome: Outcome,
        now: Instant,
        notes: &mut Vec<Note>,
    ) -> Option<Request> {
        let phase = std::mem::replace(&mut self.phase, Phase::Idle);
        match (phase, outcome) {
            (Phase::Detecting, Outcome::Detected(ip)) => {
                notes.push(Note::IpDetected {
                    ip,
                    previous: self.last_ip,
                });
                self.last_ip = Some(ip);
                match self.cooldown_until.filter(|until| now < *until) {
                    Some(until) => {
                        if self.record_content.as_deref() == Some(ip.to_string().as_str()) {
                            notes.push(Note::Unchanged { ip });
                        } else {
                            self.pending = true;
                            notes.push(Note::Deferred { ip, until });
                        }
                        None
                    }
                    None => self.read(ip, false),
                }
            }
            (Phase::Detecting, _) => {
                notes.push(Note::DetectionFailed);
                None
            }
            (Phase::Reading { ip, relooked }, Outcome::RecordFound(record)) => {
                self.record_id = Some(record.id.clone());
                self.record_content = Some(record.content.clone());
                if record.content == ip.to_string() {
                    notes.push(Note::Unchanged { ip });
                    return None;
                }
                self.phase = Phase::Updating {
                    ip,
                    from: Some(record.content),
                    relooked,
                };
                Some(Request::Update {
                    record_id: record.id,
                    ip,
                })
            }
            (
                Phase::Reading {
                    ip,
                    relooked: false,
                },
                Outcome::RecordGone,
            ) => {
                self.forget_record();
                self.read(ip, true)
            }
            (Phase::Reading { ip, .. }, Outcome::RecordMissing) => {
                self.forget_record();
                if self.create_if_missing {
                    self.phase = Phase::Updating {
                        ip,
                        from: None,
                        relooked: true,
                    };
                    Some(Request::Create { ip })
                } else {
                    notes.push(Note::RecordMissing { ip });
                    None
                }
            }
            (Phase::Reading { .. }, _) => {
                notes.push(Note::LookupFailed);
                None
            }
            (Phase::Updating { ip, from, .. }, Outcome::Updated) => {
                self.updated(ip, from, now, notes);
                None
            }
            (Phase::Updating { ip, from: None, .. }, Outcome::Created { id }) => {
                self.record_id = Some(id);
                self.updated(ip, None, now, notes);
                None
            }
            (
                Phase::Updating {
                    ip,
                    from: Some(_),
                    relooked: false,
                },
                Outcome::RecordGone,
            ) => {
                self.forget_record();
                self.read(ip, true)
            }
            (Phase::Updating { ip, .. }, _) => {
                notes.push(Note::UpdateFailed { ip });
                None
            }
            (Phase::Idle, _) => None,
        }
    }

    fn read(&mut self, ip: Ipv4Addr, relooked: bool) -> Option<Request> {
        self.phase = Phase::Reading { ip, relooked };
        Some(Request::ReadRecord {
            cached_id: self.record_id.clone(),
        })
    }

    fn forget_record(&mut self) {
        self.record_id = None;
        self.record_content = None;
    }

    fn updated(&mut self, ip: Ipv4Addr, from: Option<String>, now: Instant, notes: &mut Vec<Note>) {
        self.record_content = Some(ip.to_string());
        let until = now + self.timing.cooldown;
        self.cooldown_until = Some(until);
        self.pending = false;
        notes.push(Note::UpdateSucceeded { from, to: ip });
        notes.push(Note::CooldownStarted { until });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);
    const A: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
    const B: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
    const C: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 9);

    /// A fake world: the record in Cloudflare and the WAN IP, driven through
    /// the machine exactly as the runner does, in virtual time.
    struct Sim {
        m: Updater,
        t0: Instant,
        now: Instant,
        wan: Option<Ipv4Addr>,
        record: Option<(String, String)>,
        create: bool,
        patches: Vec<(Duration, Ipv4Addr)>,
        requests: Vec<Request>,
        notes: Vec<Note>,
        fail_next_patch: bool,
    }

    impl Sim {
        fn new(wan: Ipv4Addr, record: Option<Ipv4Addr>) -> Sim {
            let t0 = Instant::now();
            Sim {
                m: Updater::new(
                    Timing {
                        poll_interval: 5 * MIN,
                        cooldown: 15 * MIN,
                    },
                    false,
                    t0,
                ),
                t0,
                now: t0,
                wan: Some(wan),
                record: record.map(|ip| ("rec1".to_string(), ip.to_string())),
                create: false,
                patches: Vec::new(),
                requests: Vec::new(),
                notes: Vec::new(),
                fail_next_patch: false,
            }
        }

        fn perform(&mut self, r: &Request) -> Outcome {
            self.requests.push(r.clone());
            match r {
                Request::Detect => self.wan.map_or(Outcome::DetectionFailed, Outcome::Detected),
                Request::ReadRecord { cached_id } => match (&self.record, cached_id) {
                    (Some((id, content)), c) if c.as_ref().is_none_or(|c| c == id) => {
                        Outcome::RecordFound(RecordView {
                            id: id.clone(),
                            content: content.clone(),
                        })
                    }
                    (_, Some(_)) => Outcome::RecordGone,
                    _ => Outcome::RecordMissing,
                },
                Request::Update { record_id, ip } => {
                    if std::mem::take(&mut self.fail_next_patch) {
                        return Outcome::Failed;
                    }
                    match &mut self.record {
                        Some((id, content)) if id == record_id => {
                            *content = ip.to_string();
                            self.patches.push((self.now - self.t0, *ip));
                            Outcome::Updated
                        }
                        _ => Outcome::RecordGone,
                    }
                }
                Request::Create { ip } => {
                    assert!(self.create);
                    self.record = Some(("new1".into(), ip.to_string()));
                    self.patches.push((self.now - self.t0, *ip));
                    Outcome::Created { id: "new1".into() }
                }
            }
        }

        /// Runs every wake-up up to `t0 + until`, the way the runner does.
        fn run_until(&mut self, until: Duration) {
            let end = self.t0 + until;
            loop {
                let mut req = self.m.poll(self.now, &mut self.notes);
                while let Some(r) = req {
                    let out = self.perform(&r);
                    req = self.m.on_outcome(out, self.now, &mut self.notes);
                }
                let next = self.m.next_wakeup().expect("idle machine has a wake-up");
                assert!(
                    next > self.now,
                    "wake-up must be in the future (no busy loop)"
                );
                if next > end {
                    self.now = end;
                    return;
                }
                self.now = next;
            }
        }

        fn detects(&self) -> usize {
            self.requests
                .iter()
                .filter(|r| **r == Request::Detect)
                .count()
        }
    }

    #[test]
    fn first_update_is_immediate_and_unchanged_ip_is_never_patched_again() {
        let mut s = Sim::new(B, Some(A));
        s.run_until(Duration::ZERO);
        assert_eq!(s.patches, vec![(Duration::ZERO, B)]);
        s.run_until(60 * MIN);
        assert_eq!(s.patches.len(), 1, "IP unchanged: no further PATCH");
        assert_eq!(s.detects(), 13, "checks at 0, 5, ..., 60 minutes");
    }

    #[test]
    fn record_already_right_means_no_patch_and_no_cooldown() {
        let mut s = Sim::new(A, Some(A));
        s.run_until(30 * MIN);
        assert!(s.patches.is_empty());
        assert!(!s.m.in_cooldown(s.now));
        assert!(s.notes.contains(&Note::Unchanged { ip: A }));
        // A change now is applied at the next tick, not held back.
        s.wan = Some(B);
        s.run_until(35 * MIN);
        assert_eq!(s.patches, vec![(35 * MIN, B)]);
    }

    #[test]
    fn a_change_after_the_cooldown_is_one_patch_at_the_next_tick() {
        let mut s = Sim::new(A, Some(A));
        s.run_until(17 * MIN);
        s.wan = Some(B);
        s.run_until(40 * MIN);
        assert_eq!(s.patches, vec![(20 * MIN, B)]);
    }

    #[test]
    fn a_change_inside_the_cooldown_is_applied_exactly_when_it_ends() {
        let mut s = Sim::new(B, Some(A));
        s.run_until(Duration::ZERO);
        assert!(s.m.in_cooldown(s.now));
        s.wan = Some(C);
        // Ticks at 5 and 10 minutes see C but must not patch.
        s.run_until(14 * MIN);
        assert_eq!(s.patches, vec![(Duration::ZERO, B)]);
        assert!(
            s.notes
                .iter()
                .any(|n| matches!(n, Note::Deferred { ip, .. } if *ip == C))
        );
        s.run_until(15 * MIN);
        assert_eq!(s.patches, vec![(Duration::ZERO, B), (15 * MIN, C)]);
        // ...and that update starts a new cooldown.
        s.wan = Some(A);
        s.run_until(29 * MIN);
        assert_eq!(s.patches.len(), 2);
        s.run_until(31 * MIN);
        assert_eq!(s.patches[2], (30 * MIN, A));
    }

    #[test]
    fn a_change_that_reverts_inside_the_cooldown_needs_no_patch() {
        let mut s = Sim::new(B, Some(A));
        s.run_until(Duration::ZERO);
        s.wan = Some(C);
        s.run_until(6 * MIN); // tick at 5 sees C: deferred
        s.wan = Some(B);
        s.run_until(60 * MIN);
        assert_eq!(s.patches, vec![(Duration::ZERO, B)]);
    }

    #[test]
    fn cooldown_end_is_a_wakeup_even_without_a_pending_change() {
        let mut s = Sim::new(B, Some(A));
        s.m.timing.cooldown = 12 * MIN;
        s.run_until(Duration::ZERO);
        assert_eq!(s.m.next_wakeup(), Some(s.t0 + 5 * MIN));
        s.run_until(11 * MIN);
        assert_eq!(s.m.next_wakeup(), Some(s.t0 + 12 * MIN));
        s.run_until(12 * MIN);
        assert_eq!(s.notes.last(), Some(&Note::CooldownEnded));
        assert!(!s.m.in_cooldown(s.now));
    }

    #[test]
    fn detection_failure_waits_for_the_next_tick() {
        let mut s = Sim::new(A, Some(A));
        s.wan = None;
        s.run_until(Duration::ZERO);
        assert_eq!(s.requests, vec![Request::Detect]);
        assert!(s.notes.contains(&Note::DetectionFailed));
        s.wan = Some(B);
        s.run_until(5 * MIN);
        assert_eq!(s.patches, vec![(5 * MIN, B)]);
    }

    #[test]
    fn failed_patch_is_retried_next_tick_without_starting_a_cooldown() {
        let mut s = Sim::new(B, Some(A));
        s.fail_next_patch = true;
        s.run_until(Duration::ZERO);
        assert!(s.patches.is_empty());
        assert!(s.notes.contains(&Note::UpdateFailed { ip: B }));
        assert!(!s.m.in_cooldown(s.now));
        s.run_until(5 * MIN);
        assert_eq!(s.patches, vec![(5 * MIN, B)]);
    }

    #[test]
    fn record_id_is_cached_and_looked_up_again_after_a_404() {
        let mut s = Sim::new(A, Some(A));
        s.run_until(Duration::ZERO);
        assert_eq!(s.requests[1], Request::ReadRecord { cached_id: None });
        s.run_until(5 * MIN);
        assert_eq!(
            s.requests[3],
            Request::ReadRecord {
                cached_id: Some("rec1".into())
            }
        );
        // The record is deleted and recreated with another id.
        s.record = Some(("rec2".into(), A.to_string()));
        s.wan = Some(B);
        s.run_until(10 * MIN);
        assert_eq!(
            s.requests[5..],
            [
                Request::ReadRecord {
                    cached_id: Some("rec1".into())
                },
                Request::ReadRecord { cached_id: None },
                Request::Update {
                    record_id: "rec2".into(),
                    ip: B
                },
            ]
        );
        assert_eq!(s.patches, vec![(10 * MIN, B)]);
    }

    #[test]
    fn patch_404_looks_the_record_up_again_once() {
        let mut m = Updater::new(
            Timing {
                poll_interval: 5 * MIN,
                cooldown: 15 * MIN,
            },
            false,
            Instant::now(),
        );
        let now = Instant::now();
        let mut notes = Vec::new();
        assert_eq!(m.poll(now, &mut notes), Some(Request::Detect));
        let found = |id: &str| {
            Outcome::RecordFound(RecordView {
                id: id.into(),
                content: A.to_string(),
            })
        };
        m.on_outcome(Outcome::Detected(B), now, &mut notes);
        let r = m.on_outcome(found("x"), now, &mut notes);
        assert!(matches!(r, Some(Request::Update { .. })));
        let r = m.on_outcome(Outcome::RecordGone, now, &mut notes);
        assert_eq!(r, Some(Request::ReadRecord { cached_id: None }));
        let r = m.on_outcome(found("y"), now, &mut notes);
        assert!(matches!(r, Some(Request::Update { ref record_id, .. }) if record_id == "y"));
        // A second 404 in the same check is a failure, not a loop.
        assert_eq!(m.on_outcome(Outcome::RecordGone, now, &mut notes), None);
        assert_eq!(notes.last(), Some(&Note::UpdateFailed { ip: B }));
    }

    #[test]
    fn missing_record_is_reported_or_created() {
        let mut s = Sim::new(A, None);
        s.run_until(6 * MIN);
        assert!(s.patches.is_empty());
        assert_eq!(
            s.notes
                .iter()
                .filter(|n| **n == Note::RecordMissing { ip: A })
                .count(),
            2
        );

        let mut s = Sim::new(A, None);
        s.create = true;
        s.m.create_if_missing = true;
        s.run_until(6 * MIN);
        assert_eq!(s.patches, vec![(Duration::ZERO, A)]);
        assert!(
            s.notes
                .contains(&Note::UpdateSucceeded { from: None, to: A })
        );
        assert!(s.m.in_cooldown(s.now));
    }

    #[test]
    fn ip_detected_notes_carry_the_previous_ip() {
        let mut s = Sim::new(A, Some(A));
        s.run_until(Duration::ZERO);
        s.wan = Some(B);
        s.run_until(5 * MIN);
        let seen: Vec<_> = s
            .notes
            .iter()
            .filter_map(|n| match n {
                Note::IpDetected { ip, previous } => Some((*ip, *previous)),
                _ => None,
            })
            .collect();
        assert_eq!(seen, vec![(A, None), (B, Some(A))]);
    }

    #[test]
    fn nothing_is_requested_while_a_request_is_in_flight() {
        let t0 = Instant::now();
        let mut m = Updater::new(
            Timing {
                poll_interval: MIN,
                cooldown: MIN,
            },
            false,
            t0,
        );
        let mut notes = Vec::new();
        assert_eq!(m.poll(t0, &mut notes), Some(Request::Detect));
        assert_eq!(m.next_wakeup(), None);
        assert_eq!(m.poll(t0 + 10 * MIN, &mut notes), None);
    }
}
