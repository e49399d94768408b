//! One OCI restart cycle as a pure state machine: from "heartbeat gone" to a
//! RUNNING instance (or a reasoned failure).
//!
//! The worker thread that owns a [`RestartCycle`] asks [`RestartCycle::next`]
//! what to do, performs that one OCI call (or sleeps), and feeds the result
//! back through [`RestartCycle::on_instance`], [`RestartCycle::on_action_ok`]
//! or [`RestartCycle::on_error`]. The machine does no I/O and reads no clock:
//! every input carries `now`, so a five-minute phase limit is tested in
//! microseconds.
//!
//! The instance is always read first (also after a resume), and the cycle
//! follows what OCI says rather than what it expects: a STOPPED instance is
//! started without stopping, a RUNNING instance seen once START has been
//! asked for is a recovery (never stopped again), and START failing for host
//! capacity is retried with backoff inside the phase. Each phase is limited
//! to `phase_timeout` from the moment it is entered. The phase is what the
//! worker stores in Consul KV ([`CycleNote::PhaseChanged`]), so another agent
//! can resume the cycle with [`RestartCycle::resume`].

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use crate::backoff::Backoff;
use crate::config::format_duration;

/// An instance's OCI lifecycle state, as the cycle sees it: the compute
/// client's own type (a plain enum with an `Unknown` fallback), so nothing
/// is translated between the adapter and the decision logic.
pub use crate::oci::LifecycleState as InstanceState;

/// Where a cycle stands. Stored in Consul KV (as [`Phase::as_str`]) so a
/// restarted agent or a standby can resume it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Reading the instance to decide the first step.
    Inspect,
    /// Asking OCI to STOP (the request may or may not have been accepted).
    Stopping,
    /// STOP accepted (or the instance was already STOPPING): waiting for STOPPED.
    WaitStopped,
    /// Asking OCI to START (retried on capacity errors).
    Starting,
    /// START accepted (or already STARTING): waiting for RUNNING.
    WaitRunning,
    /// The instance is RUNNING again.
    Done,
    /// The cycle gave up; see the [`Outcome`].
    Failed,
}

impl Phase {
    /// Every phase, in cycle order.
    pub const ALL: [Phase; 7] = [
        Phase::Inspect,
        Phase::Stopping,
        Phase::WaitStopped,
        Phase::Starting,
        Phase::WaitRunning,
        Phase::Done,
        Phase::Failed,
    ];

    /// The lower-case name stored in KV and shown in logs and `status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Inspect => "inspect",
            Phase::Stopping => "stopping",
            Phase::WaitStopped => "wait_stopped",
            Phase::Starting => "starting",
            Phase::WaitRunning => "wait_running",
            Phase::Done => "done",
            Phase::Failed => "failed",
        }
    }

    /// True for `Done` and `Failed`: the cycle is over.
    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::Done | Phase::Failed)
    }

    /// True once START has been asked for: from here on a RUNNING instance
    /// means success, never a reason to stop it.
    fn start_requested(self) -> bool {
        matches!(self, Phase::Starting | Phase::WaitRunning | Phase::Done)
    }

    /// What the phase waits for, for timeout reasons.
    fn waiting_for(self) -> &'static str {
        match self {
            Phase::Inspect => "waiting for an instance state to act on",
            Phase::Stopping => "trying to STOP",
            Phase::WaitStopped => "waiting for STOPPED",
            Phase::Starting => "trying to START",
            Phase::WaitRunning => "waiting for RUNNING",
            Phase::Done | Phase::Failed => "finishing",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored phase name that is not one of [`Phase::ALL`] (a corrupt or
/// foreign KV value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownPhase(pub String);

impl fmt::Display for UnknownPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown restart phase {:?}", self.0)
    }
}

impl std::error::Error for UnknownPhase {}

impl FromStr for Phase {
    type Err = UnknownPhase;

    fn from_str(s: &str) -> Result<Phase, UnknownPhase> {
        Phase::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownPhase(s.to_string()))
    }
}

/// An OCI call the cycle wants made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// `GET /instances/{id}`: report the result with [`RestartCycle::on_instance`].
    GetInstance,
    /// `POST /instances/{id}?action=STOP`.
    Stop,
    /// `POST /instances/{id}?action=START`.
    Start,
}

impl Action {
    /// Name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::GetInstance => "GetInstance",
            Action::Stop => "STOP",
            Action::Start => "START",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How an OCI call failed, as far as the cycle's decisions go. The worker
/// maps the adapter's typed error onto this (never by message text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ActionErrorKind {
    /// 500 "Out of host capacity" (usually on START): retry START with backoff.
    OutOfCapacity,
    /// 409 IncorrectState: re-read the instance and follow what it says.
    IncorrectState,
    /// 429 after the client's own retries: retry with backoff.
    Throttled,
    /// 5xx, timeouts, connection failures: retry.
    Transient,
    /// 401: the signature is rejected. Fixable by the operator, so the cycle
    /// fails without marking the node permanently failed.
    NotAuthenticated,
    /// 404: no such instance (or no permission to see it): permanent.
    NotFound,
    /// Anything else (a 4xx the request should never get, a bad answer).
    Other,
}

/// A failed OCI call: its kind plus a human-readable message (no secrets)
/// that ends up in logs and failure reasons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionError {
    /// What kind of failure, which decides the reaction.
    pub kind: ActionErrorKind,
    /// What OCI or the transport said.
    pub message: String,
}

impl ActionError {
    /// An error of `kind` with `message`.
    pub fn new(kind: ActionErrorKind, message: impl Into<String>) -> Self {
        ActionError {
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for ActionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Timers of a cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CycleSettings {
    /// Time between instance reads while waiting (spec: 10 s).
    pub poll_interval: Duration,
    /// Longest time one phase may last, from entering it (spec: 5 m).
    pub phase_timeout: Duration,
    /// First delay before retrying a failed STOP or START.
    pub start_retry_initial: Duration,
    /// Longest delay between STOP or START retries.
    pub start_retry_max: Duration,
}

impl Default for CycleSettings {
    fn default() -> Self {
        CycleSettings {
            poll_interval: Duration::from_secs(10),
            phase_timeout: Duration::from_secs(300),
            start_retry_initial: Duration::from_secs(10),
            start_retry_max: Duration::from_secs(60),
        }
    }
}

/// What the worker should do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Make this call now, then report its result.
    Do(Action),
    /// Nothing to do before this instant; call `next` again then.
    WaitUntil(Instant),
    /// The cycle is over.
    Finished(Outcome),
}

/// How a cycle ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The instance is RUNNING again.
    Recovered,
    /// The cycle gave up.
    Failed {
        /// True when retrying cannot help (TERMINATED, instance not found):
        /// the tracker stops trying until the node reappears.
        permanent: bool,
        /// Why, for the log line and `status`.
        reason: String,
    },
}

/// Something the worker should log, count or persist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CycleNote {
    /// The phase changed: persist `to` in KV (Done and Failed included).
    PhaseChanged {
        /// Previous phase.
        from: Phase,
        /// New phase.
        to: Phase,
    },
    /// An instance read returned this state.
    Observed {
        /// The instance's lifecycle state.
        state: InstanceState,
    },
    /// A call failed and will be retried after `delay`.
    Retrying {
        /// The call being retried.
        action: Action,
        /// How long until the retry.
        delay: Duration,
        /// Why the call failed, or why it is being made again.
        reason: String,
    },
    /// OCI refused a STOP or START as not fitting the instance's state
    /// (409): the instance is read again and the cycle follows what it says.
    Refused {
        /// The refused call.
        action: Action,
        /// OCI's message.
        reason: String,
    },
}

/// RUNNING reads tolerated while waiting for STOPPED before STOP is sent again.
const RUNNING_READS_BEFORE_RESTOP: u32 = 3;

/// What the machine is waiting to do.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pending {
    /// Make this call as soon as asked.
    Now(Action),
    /// Make this call at this instant.
    At(Instant, Action),
    /// Nothing more: the cycle ended like this.
    Over(Outcome),
}

/// One restart cycle. See the module docs.
#[derive(Debug, Clone)]
pub struct RestartCycle {
    settings: CycleSettings,
    phase: Phase,
    deadline: Instant,
    pending: Pending,
    last_seen: Option<InstanceState>,
    last_error: Option<String>,
    /// Set when OCI answered 409 to this call; cleared by the next read.
    refused: Option<Action>,
    /// Consecutive RUNNING reads while waiting for STOPPED.
    running_while_stopping: u32,
    stop_backoff: Backoff,
    start_backoff: Backoff,
}

impl RestartCycle {
    /// A fresh cycle: phase `Inspect`, reading the instance first.
    pub fn new(settings: CycleSettings, now: Instant) -> Self {
        Self::resume(settings, Phase::Inspect, now)
    }

    /// A cycle continued from a phase stored in KV (after an agent restart
    /// or a standby's takeover). It reads the instance first and follows
    /// what it sees; the stored phase decides whether RUNNING means "stop
    /// it" (before START was asked for) or "recovered" (after). A stored
    /// `Done`/`Failed` entry is a finished cycle, so it starts over at
    /// `Inspect`. The phase timer starts at `now`.
    pub fn resume(settings: CycleSettings, stored: Phase, now: Instant) -> Self {
        let phase = if stored.is_terminal() {
            Phase::Inspect
        } else {
            stored
        };
        RestartCycle {
            settings,
            phase,
            deadline: now + settings.phase_timeout,
            pending: Pending::Now(Action::GetInstance),
            last_seen: None,
            last_error: None,
            refused: None,
            running_while_stopping: 0,
            stop_backoff: Backoff::new(settings.start_retry_initial, settings.start_retry_max),
            start_backoff: Backoff::new(settings.start_retry_initial, settings.start_retry_max),
        }
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The last instance state read, if any (for logs and `status`).
    pub fn last_seen(&self) -> Option<&InstanceState> {
        self.last_seen.as_ref()
    }

    /// What to do now. Asking again before reporting a result returns the
    /// same step. When the current phase has lasted `phase_timeout`, the
    /// cycle fails here (pushing the final `PhaseChanged`); a result that
    /// arrives late is still applied first, so a slow call never hides
    /// progress.
    pub fn next(&mut self, now: Instant, notes: &mut Vec<CycleNote>) -> Step {
        if let Pending::Over(outcome) = &self.pending {
            return Step::Finished(outcome.clone());
        }
        if now >= self.deadline {
            let outcome = Outcome::Failed {
                permanent: false,
                reason: self.timeout_reason(),
            };
            self.finish(outcome.clone(), now, notes);
            return Step::Finished(outcome);
        }
        match self.pending {
            Pending::Now(action) => Step::Do(action),
            Pending::At(at, action) if now >= at => Step::Do(action),
            Pending::At(at, _) => Step::WaitUntil(at.min(self.deadline)),
            Pending::Over(ref outcome) => Step::Finished(outcome.clone()),
        }
    }

    /// Reports a successful instance read (from `GetInstance`, or the
    /// instance returned by an action). Decides the next step from it.
    pub fn on_instance(&mut self, state: InstanceState, now: Instant, notes: &mut Vec<CycleNote>) {
        if self.phase.is_terminal() {
            return;
        }
        notes.push(CycleNote::Observed {
            state: state.clone(),
        });
        self.last_seen = Some(state.clone());
        self.last_error = None;
        let refused = self.refused.take();
        self.follow(&state, refused, now, notes);
    }

    /// Reports that OCI accepted a STOP or START (reads go to
    /// [`RestartCycle::on_instance`]; a result for a call the cycle is not
    /// waiting for is ignored).
    pub fn on_action_ok(&mut self, action: Action, now: Instant, notes: &mut Vec<CycleNote>) {
        if !self.awaits(action) {
            return;
        }
        match action {
            Action::Stop => {
                self.stop_backoff.reset();
                self.last_error = None;
                self.enter(Phase::WaitStopped, now, notes);
                self.poll(now);
            }
            Action::Start => {
                self.start_backoff.reset();
                self.last_error = None;
                self.enter(Phase::WaitRunning, now, notes);
                self.poll(now);
            }
            Action::GetInstance => {}
        }
    }

    /// Reports a failed call. Transient failures are retried inside the
    /// phase (reads every `poll_interval`, STOP/START with backoff); 409
    /// leads to a fresh read; 401 and unexpected errors fail the cycle,
    /// 404 fails it permanently.
    pub fn on_error(
        &mut self,
        action: Action,
        err: ActionError,
        now: Instant,
        notes: &mut Vec<CycleNote>,
    ) {
        if !self.awaits(action) {
            return;
        }
        self.last_error = Some(format!("{action}: {}", err.message));
        match err.kind {
            ActionErrorKind::NotAuthenticated => {
                let reason = format!("{action} not authenticated by OCI: {}", err.message);
                self.fail(false, reason, now, notes);
            }
            ActionErrorKind::NotFound => {
                let reason = format!("{action}: instance not found: {}", err.message);
                self.fail(true, reason, now, notes);
            }
            ActionErrorKind::Other => {
                let reason = format!("{action} failed: {}", err.message);
                self.fail(false, reason, now, notes);
            }
            ActionErrorKind::IncorrectState if action != Action::GetInstance => {
                notes.push(CycleNote::Refused {
                    action,
                    reason: err.message,
                });
                self.refused = Some(action);
                self.pending = Pending::Now(Action::GetInstance);
            }
            _ if action == Action::GetInstance => {
                let delay = self.settings.poll_interval;
                notes.push(CycleNote::Retrying {
                    action,
                    delay,
                    reason: err.message,
                });
                self.pending = Pending::At(now + delay, action);
            }
            _ => self.retry_action(action, err.message, now, notes),
        }
    }

    /// Decides the next step from an observed instance state.
    fn follow(
        &mut self,
        state: &InstanceState,
        refused: Option<Action>,
        now: Instant,
        notes: &mut Vec<CycleNote>,
    ) {
        let after_start = self.phase.start_requested();
        match state {
            InstanceState::Terminated | InstanceState::Terminating => {
                self.fail(true, format!("instance is {state}"), now, notes);
            }
            InstanceState::Running if after_start => self.finish(Outcome::Recovered, now, notes),
            // STOP was accepted; OCI may still show RUNNING for a moment.
            // Still RUNNING after a few reads (e.g. a resumed cycle whose
            // STOP never took effect): ask again rather than wait out the
            // whole phase.
            InstanceState::Running
                if self.phase == Phase::WaitStopped
                    && self.running_while_stopping < RUNNING_READS_BEFORE_RESTOP =>
            {
                self.running_while_stopping += 1;
                self.poll(now)
            }
            InstanceState::Running => {
                self.running_while_stopping = 0;
                self.act(Phase::Stopping, Action::Stop, refused, state, now, notes)
            }
            InstanceState::Stopping if after_start => {
                // Someone stopped it after our START: start once STOPPED.
                self.enter(Phase::Starting, now, notes);
                self.poll(now);
            }
            InstanceState::Stopping => {
                self.enter(Phase::WaitStopped, now, notes);
                self.poll(now);
            }
            InstanceState::Stopped => {
                self.act(Phase::Starting, Action::Start, refused, state, now, notes)
            }
            InstanceState::Starting | InstanceState::Provisioning => {
                self.enter(Phase::WaitRunning, now, notes);
                self.poll(now);
            }
            InstanceState::Moving | InstanceState::CreatingImage | InstanceState::Unknown(_) => {
                self.poll(now)
            }
        }
    }

    /// Enters `phase` and makes `action` now, or after backoff when OCI has
    /// just refused that very action (so a confused API is not hammered).
    fn act(
        &mut self,
        phase: Phase,
        action: Action,
        refused: Option<Action>,
        state: &InstanceState,
        now: Instant,
        notes: &mut Vec<CycleNote>,
    ) {
        self.enter(phase, now, notes);
        if refused == Some(action) {
            let reason = format!("OCI refused {action} but the instance is {state}");
            self.retry_action(action, reason, now, notes);
        } else {
            self.pending = Pending::Now(action);
        }
    }

    fn retry_action(
        &mut self,
        action: Action,
        reason: String,
        now: Instant,
        notes: &mut Vec<CycleNote>,
    ) {
        let delay = match action {
            Action::Start => self.start_backoff.next_delay(),
            Action::Stop => self.stop_backoff.next_delay(),
            Action::GetInstance => self.settings.poll_interval,
        };
        notes.push(CycleNote::Retrying {
            action,
            delay,
            reason,
        });
        self.pending = Pending::At(now + delay, action);
    }

    fn awaits(&self, action: Action) -> bool {
        match self.pending {
            Pending::Now(a) | Pending::At(_, a) => a == action,
            Pending::Over(_) => false,
        }
    }

    fn poll(&mut self, now: Instant) {
        self.pending = Pending::At(now + self.settings.poll_interval, Action::GetInstance);
    }

    fn fail(&mut self, permanent: bool, reason: String, now: Instant, notes: &mut Vec<CycleNote>) {
        self.finish(Outcome::Failed { permanent, reason }, now, notes);
    }

    fn finish(&mut self, outcome: Outcome, now: Instant, notes: &mut Vec<CycleNote>) {
        let to = match outcome {
            Outcome::Recovered => Phase::Done,
            Outcome::Failed { .. } => Phase::Failed,
        };
        self.enter(to, now, notes);
        self.pending = Pending::Over(outcome);
    }

    fn enter(&mut self, to: Phase, now: Instant, notes: &mut Vec<CycleNote>) {
        if self.phase != to {
            notes.push(CycleNote::PhaseChanged {
                from: self.phase,
                to,
            });
            self.phase = to;
            self.deadline = now + self.settings.phase_timeout;
            self.running_while_stopping = 0;
        }
    }

    fn timeout_reason(&self) -> String {
        let seen = match &self.last_seen {
            Some(state) => format!("last seen {state}"),
            None => "instance not read yet".to_string(),
        };
        let error = match &self.last_error {
            Some(e) => format!("; last error: {e}"),
            None => String::new(),
        };
        format!(
            "timed out after {} {} ({seen}{error})",
            format_duration(self.settings.phase_timeout),
            self.phase.waiting_for()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    /// A simulated OCI instance in virtual time: STOP takes `stop_takes`
    /// to reach STOPPED, START takes `start_takes` to reach RUNNING.
    /// Scripted errors are returned (and consumed) before the real effect.
    struct Sim {
        t0: Instant,
        state: InstanceState,
        until: Option<(Instant, InstanceState)>,
        stop_takes: Duration,
        start_takes: Duration,
        start_errors: Vec<ActionError>,
        stop_errors: Vec<ActionError>,
        get_errors: Vec<ActionError>,
        log: Vec<(Duration, Action)>,
    }

    impl Sim {
        fn new(state: InstanceState) -> Self {
            Sim {
                t0: Instant::now(),
                state,
                until: None,
                stop_takes: secs(25),
                start_takes: secs(35),
                start_errors: Vec::new(),
                stop_errors: Vec::new(),
                get_errors: Vec::new(),
                log: Vec::new(),
            }
        }

        fn at(&self, secs: u64) -> Instant {
            self.t0 + Duration::from_secs(secs)
        }

        fn state(&mut self, now: Instant) -> InstanceState {
            if let Some((at, next)) = &self.until
                && now >= *at
            {
                self.state = next.clone();
                self.until = None;
            }
            self.state.clone()
        }

        fn actions(&self) -> Vec<(u64, Action)> {
            self.log.iter().map(|(d, a)| (d.as_secs(), *a)).collect()
        }

        fn count(&self, action: Action) -> usize {
            self.log.iter().filter(|(_, a)| *a == action).count()
        }

        /// Performs one call and feeds its result to the cycle.
        fn serve(&mut self, c: &mut RestartCycle, a: Action, now: Instant, n: &mut Vec<CycleNote>) {
            self.log.push((now - self.t0, a));
            let scripted = match a {
                Action::GetInstance => &mut self.get_errors,
                Action::Stop => &mut self.stop_errors,
                Action::Start => &mut self.start_errors,
            };
            if !scripted.is_empty() {
                let err = scripted.remove(0);
                c.on_error(a, err, now, n);
                return;
            }
            let state = self.state(now);
            match a {
                Action::GetInstance => c.on_instance(state, now, n),
                Action::Stop if state == InstanceState::Running => {
                    self.state = InstanceState::Stopping;
                    self.until = Some((now + self.stop_takes, InstanceState::Stopped));
                    c.on_action_ok(a, now, n);
                }
                Action::Start if state == InstanceState::Stopped => {
                    self.state = InstanceState::Starting;
                    self.until = Some((now + self.start_takes, InstanceState::Running));
                    c.on_action_ok(a, now, n);
                }
                _ => c.on_error(
                    a,
                    ActionError::new(ActionErrorKind::IncorrectState, format!("{a} in {state}")),
                    now,
                    n,
                ),
            }
        }

        /// Runs the cycle to its end (bounded), returning the outcome and
        /// the instant it finished.
        fn run(&mut self, c: &mut RestartCycle, n: &mut Vec<CycleNote>) -> (Outcome, Instant) {
            self.run_from(c, self.t0, n)
        }

        fn run_from(
            &mut self,
            c: &mut RestartCycle,
            mut now: Instant,
            n: &mut Vec<CycleNote>,
        ) -> (Outcome, Instant) {
            for _ in 0..10_000 {
                match c.next(now, n) {
                    Step::Do(a) => self.serve(c, a, now, n),
                    Step::WaitUntil(t) => {
                        assert!(t > now, "WaitUntil in the past would busy-loop");
                        now = t;
                    }
                    Step::Finished(o) => return (o, now),
                }
            }
            panic!("cycle did not finish");
        }
    }

    fn phases(notes: &[CycleNote]) -> Vec<Phase> {
        notes
            .iter()
            .filter_map(|n| match n {
                CycleNote::PhaseChanged { to, .. } => Some(*to),
                _ => None,
            })
            .collect()
    }

    use Action::{GetInstance as G, Start, Stop};

    #[test]
    fn happy_path_stops_polls_starts_polls_recovers() {
        let mut sim = Sim::new(InstanceState::Running);
        let mut c = RestartCycle::new(CycleSettings::default(), sim.t0);
        let mut n = Vec::new();
        let (outcome, _) = sim.run(&mut c, &mut n);
        assert_eq!(outcome, Outcome::Recovered);
        // STOPPED at 25 s (seen at the 30 s poll), RUNNING at 65 s (seen at 70 s).
        assert_eq!(
            sim.actions(),
            vec![
                (0, G),
                (0, Stop),
                (10, G),
                (20, G),
                (30, G),
                (30, Start),
                (40, G),
                (50, G),
                (60, G),
                (70, G),
            ]
        );
        assert_eq!(
            phases(&n),
            vec![
                Phase::Stopping,
                Phase::WaitStopped,
                Phase::Starting,
                Phase::WaitRunning,
                Phase::Done
            ]
        );
        assert_eq!(c.phase(), Phase::Done);
        // Finished stays finished and emits nothing more.
        let before = n.len();
        assert_eq!(
            c.next(sim.at(10_000), &mut n),
            Step::Finished(Outcome::Recovered)
        );
        assert_eq!(n.len(), before);
    }

    #[test]
    fn stopped_at_inspect_starts_without_stopping() {
        let mut sim = Sim::new(InstanceState::Stopped);
        let mut c = RestartCycle::new(CycleSettings::default(), sim.t0);
        let mut n = Vec::new();
        let (outcome, _) = sim.run(&mut c, &mut n);
        assert_eq!(outcome, Outcome::Recovered);
        assert_eq!(sim.count(Stop), 0);
        assert_eq!(&sim.actions()[..2], &[(0, G), (0, Start)]);
        assert_eq!(
            phases(&n),
            vec![Phase::Starting, Phase::WaitRunning, Phase::Done]
        );
    }

    #[test]
    fn stopping_at_inspect_waits_then_starts() {
        let mut sim = Sim::new(InstanceState::Stopping);
        sim.until = Some((sim.at(15), InstanceState::Stopped));
        let mut c = RestartCycle::new(CycleSettings::default(), sim.t0);
        let mut n = Vec::new();
        let (outcome, _) = sim.run(&mut c, &mut n);
        assert_eq!(outcome, Outcome::Recovered);
        assert_eq!(sim.count(Stop), 0);
        assert_eq!(
            &sim.actions()[..4],
            &[(0, G), (10, G), (20, G), (20, Start)]
        );
    }

    #[test]
    fn starting_at_inspect_just_waits_for_running() {
        for state in [InstanceState::Starting, InstanceState::Provisioning] {
            let mut sim = Sim::new(state);
            sim.until = Some((sim.at(12), InstanceState::Running));
            let mut c = RestartCycle::new(CycleSettings::default(), sim.t0);
            let mut n = Vec::new();
            let (outcome, end) = sim.run(&mut c, &mut n);
            assert_eq!(outcome, Outcome::Recovered);
            assert_eq!(sim.actions(), vec![(0, G), (10, G), (20, G)]);
            assert_eq!(end, sim.at(20));
        }
    }

    #[test]
    fn stuck_in_stopping_fails_after_exactly_the_phase_timeout() {
        let mut sim = Sim::new(InstanceState::Running);
        sim.stop_takes = secs(100_000);
        let settings = CycleSettings::default();
        let mut c = RestartCycle::new(settings, sim.t0);
        let mut n = Vec::new();
        let (outcome, end) = sim.run(&mut c, &mut n);
        assert_eq!(
            outcome,
            Outcome::Failed {
                permanent: false,
                reason: "timed out after 5m waiting for STOPPED (last seen STOPPING)".into()
            }
        );
        // WaitStopped entered at 0 s: the cycle ends exactly 5 minutes later.
        assert_eq!(end, sim.at(300));
        assert_eq!(sim.count(Start), 0);
        assert_eq!(sim.count(G), 1 + 29); // inspect + polls at 10..290 s
        assert_eq!(phases(&n).last(), Some(&Phase::Failed));
        assert_eq!(c.phase(), Phase::Failed);
    }

    #[test]
    fn phase_timeout_edge_one_nanosecond_before_is_still_waiting() {
        let mut sim = Sim::new(InstanceState::Moving);
        let settings = CycleSettings {
            poll_interval: secs(1000), // longer than the phase: one read only
            ..CycleSettings::default()
        };
        let mut c = RestartCycle::new(settings, sim.t0);
        let mut n = Vec::new();
        assert_eq!(c.next(sim.t0, &mut n), Step::Do(G));
        sim.serve(&mut c, G, sim.t0, &mut n);
        let deadline = sim.at(300);
        // The wait is clamped to the phase deadline.
        assert_eq!(c.next(sim.t0, &mut n), Step::WaitUntil(deadline));
        let just_before = deadline - Duration::from_nanos(1);
        assert_eq!(c.next(just_before, &mut n), Step::WaitUntil(deadline));
        match c.next(deadline, &mut n) {
            Step::Finished(Outcome::Failed { permanent, reason }) => {
                assert!(!permanent);
                assert!(reason.contains("(last seen MOVING)"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn out_of_capacity_retries_start_with_growing_delays_and_never_stops_again() {
        let mut sim = Sim::new(InstanceState::Running);
        let capacity = || ActionError::new(ActionErrorKind::OutOfCapacity, "Out of host capacity.");
        sim.start_errors = (0..6).map(|_| capacity()).collect();
        let settings = CycleSettings {
            phase_timeout: secs(3600),
            ..CycleSettings::default()
        };
        let mut c = RestartCycle::new(settings, sim.t0);
        let mut n = Vec::new();
        let (outcome, _) = sim.run(&mut c, &mut n);
        assert_eq!(outcome, Outcome::Recovered);
        assert_eq!(sim.count(Stop), 1);
        assert_eq!(sim.count(Start), 7);
        let delays: Vec<Duration> = n
            .iter()
            .filter_map(|x| match x {
                CycleNote::Retrying {
                    action: Start,
                    delay,
                    ..
                } => Some(*delay),
                _ => None,
            })
            .collect();
        assert_eq!(delays.len(), 6);
        // Nominal 10, 20, 40, 60, 60, 60 s, jittered into [nominal/2, nominal].
        for (i, (d, nominal)) in delays.iter().zip([10, 20, 40, 60, 60, 60]).enumerate() {
            let nominal = secs(nominal);
            assert!(*d >= nominal / 2 && *d <= nominal, "retry {i}: {d:?}");
        }
        // Every START after the first came after its announced delay; no
        // instance reads in between (the instance is STOPPED, nothing to see).
        let log = sim.actions();
        let first_start = log.iter().position(|(_, a)| *a == Start).unwrap();
        assert!(
            log[first_start..7 + first_start]
                .iter()
                .all(|(_, a)| *a == Start)
        );
        assert_eq!(c.phase(), Phase::Done);
    }

    #[test]
    fn capacity_errors_until_the_phase_limit_fail_with_the_error_in_the_reason() {
        let mut sim = Sim::new(InstanceState::Stopped);
        sim.start_errors = (0..100)
            .map(|_| ActionError::new(ActionErrorKind::OutOfCapacity, "Out of host capacity."))
            .collect();
        let mut c = RestartCycle::new(CycleSettings::default(), sim.t0);
        let mut n = Vec::new();
        let (outcome, end) = sim.run(&mut c, &mut n);
        assert_eq!(end, sim.at(300));
        match outcome {
            Outcome::Failed { permanent, reason } => {
                assert!(!permanent);
                assert_eq!(
                    reason,
                    "timed out after 5m trying to START (last seen STOPPED; \
                     last error: START: Out of host capacity.)"
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(sim.count(Stop), 0);
    }

    #[test]
    fn transient_stop_failures_are_retried_with_backoff() {
        let mut sim = Sim::new(InstanceState::Running);
        sim.stop_errors = vec![
            ActionError::new(ActionErrorKind::Transient, "connection reset"),
            ActionError::new(ActionErrorKind::Throttled, "429"),
        ];
        let mut c = RestartCycle::new(CycleSettings::default(), sim.t0);
        let mut n = Vec::new();
        let (outcome, _) = sim.run(&mut c, &mut n);
        assert_eq!(outcome, Outcome::Recovered);
        assert_eq!(sim.count(Stop), 3);
        assert_eq!(sim.count(Start), 1);
        let stops: Vec<Duration> = sim
            .log
            .iter()
            .filter(|(_, a)| *a == Stop)
            .map(|(d, _)| *d)
            .collect();
        assert_eq!(stops[0], Duration::ZERO);
        let gap1 = stops[1] - stops[0];
        let gap2 = stops[2] - stops[1];
        assert!(gap1 >= secs(5) && gap1 <= secs(10), "{gap1:?}");
        assert!(gap2 >= secs(10) && gap2 <= secs(20), "{gap2:?}");
        // All within the Stopping phase: no read between the attempts.
        assert_eq!(
            &sim.actions()[..4],
            &[
                (0, G),
                (0, Stop),
                (gap1.as_secs(), Stop),
                ((gap1 + gap2).as_secs(), Stop)
            ]
        );
    }

    #[test]
    fn transient_read_failures_are_retried_every_poll_interval() {
        let mut sim = Sim::new(InstanceState::Stopped);
        sim.get_errors = vec![
            ActionError::new(ActionErrorKind::Transient, "timeout"),
            ActionError::new(ActionErrorKind::Throttled, "429"),
        ];
        let mut c = RestartCycle::new(CycleSettings::default(), sim.t0);
        let mut n = Vec::new();
        let (outcome, _) = sim.run(&mut c, &mut n);
        assert_eq!(outcome, Outcome::Recovered);
        assert_eq!(
            &sim.actions()[..4],
            &[(0, G), (10, G), (20, G), (20, Start)]
        );
        assert_eq!(phases(&n)[0], Phase::Starting);
    }

    #[test]
    fn resume_from_wait_stopped_with_stopped_instance_starts_it() {
        let mut sim = Sim::new(InstanceState::Stopped);
        let mut c = RestartCycle::resume(CycleSettings::default(), Phase::WaitStopped, sim.t0);
        assert_eq!(c.phase(), Phase::WaitStopped);
        let mut n = Vec::new();
        let (outcome, _) = sim.run(&mut c, &mut n);
        assert_eq!(outcome, Outcome::Recovered);
        assert_eq!(&sim.actions()[..2], &[(0, G), (0, Start)]);
        assert_eq!(sim.count(Stop), 0);
        assert_eq!(
            n[1],
            CycleNote::PhaseChanged {
                from: Phase::WaitStopped,
                to: Phase::Starting
            }
        );
    }

    #[test]
    fn resume_after_start_with_running_instance_is_recovered_without_stop() {
        for stored in [Phase::Starting, Phase::WaitRunning] {
            let mut sim = Sim::new(InstanceState::Running);
            let mut c = RestartCycle::resume(CycleSettings::default(), stored, sim.t0);
            let mut n = Vec::new();
            let (outcome, end) = sim.run(&mut c, &mut n);
            assert_eq!(outcome, Outcome::Recovered, "{stored}");
            assert_eq!(sim.actions(), vec![(0, G)]);
            assert_eq!(end, sim.t0);
            assert_eq!(phases(&n), vec![Phase::Done]);
        }
    }

    #[test]
    fn resume_before_start_with_running_instance_stops_it() {
        // Stored "stopping": STOP may never have reached OCI.
        let mut sim = Sim::new(InstanceState::Running);
        let mut c = RestartCycle::resume(CycleSettings::default(), Phase::Stopping, sim.t0);
        let mut n = Vec::new();
        let (outcome, _) = sim.run(&mut c, &mut n);
        assert_eq!(outcome, Outcome::Recovered);
        assert_eq!(&sim.actions()[..2], &[(0, G), (0, Stop)]);
        assert_eq!(sim.count(Stop), 1);
    }

    #[test]
    fn resume_waiting_for_stopped_with_running_instance_stops_again_after_a_few_reads() {
        // Stored "wait_stopped" but the instance runs: the STOP never took
        // effect. A few reads of grace (OCI can lag), then STOP again,
        // rather than waiting out the whole phase.
        let mut sim = Sim::new(InstanceState::Running);
        let mut c = RestartCycle::resume(CycleSettings::default(), Phase::WaitStopped, sim.t0);
        let mut n = Vec::new();
        let (outcome, end) = sim.run(&mut c, &mut n);
        assert_eq!(outcome, Outcome::Recovered);
        assert_eq!(
            &sim.actions()[..5],
            &[(0, G), (10, G), (20, G), (30, G), (30, Stop)]
        );
        assert_eq!(sim.count(Stop), 1);
        assert_eq!(sim.count(Start), 1);
        assert!(
            end - sim.t0 < Duration::from_secs(300),
            "well inside one phase timeout"
        );
    }

    #[test]
    fn resume_of_a_finished_cycle_starts_over_at_inspect() {
        let t0 = Instant::now();
        for stored in [Phase::Done, Phase::Failed] {
            let c = RestartCycle::resume(CycleSettings::default(), stored, t0);
            assert_eq!(c.phase(), Phase::Inspect);
        }
    }

    #[test]
    fn wait_running_seeing_stopped_starts_again() {
        // START accepted, but OCI left the instance STOPPED (capacity).
        let mut sim = Sim::new(InstanceState::Stopped);
        let mut c = RestartCycle::resume(CycleSettings::default(), Phase::WaitRunning, sim.t0);
        let mut n = Vec::new();
        let (outcome, _) = sim.run(&mut c, &mut n);
        assert_eq!(outcome, Outcome::Recovered);
        assert_eq!(&sim.actions()[..2], &[(0, G), (0, Start)]);
        assert_eq!(sim.count(Stop), 0);
    }

    #[test]
    fn terminated_or_terminating_is_a_permanent_failure() {
        for state in [InstanceState::Terminated, InstanceState::Terminating] {
            let mut sim = Sim::new(state.clone());
            let mut c = RestartCycle::new(CycleSettings::default(), sim.t0);
            let mut n = Vec::new();
            let (outcome, _) = sim.run(&mut c, &mut n);
            assert_eq!(
                outcome,
                Outcome::Failed {
                    permanent: true,
                    reason: format!("instance is {state}")
                }
            );
            assert_eq!(sim.actions(), vec![(0, G)]);
            assert_eq!(
                n.last(),
                Some(&CycleNote::PhaseChanged {
                    from: Phase::Inspect,
                    to: Phase::Failed
                })
            );
        }
    }

    #[test]
    fn incorrect_state_on_stop_with_stopped_instance_goes_to_start() {
        let t0 = Instant::now();
        let mut c = RestartCycle::new(CycleSettings::default(), t0);
        let mut n = Vec::new();
        assert_eq!(c.next(t0, &mut n), Step::Do(G));
        c.on_instance(InstanceState::Running, t0, &mut n);
        assert_eq!(c.next(t0, &mut n), Step::Do(Stop));
        // Meanwhile the instance stopped on its own: OCI answers 409.
        c.on_error(
            Stop,
            ActionError::new(ActionErrorKind::IncorrectState, "instance is STOPPED"),
            t0 + S,
            &mut n,
        );
        assert!(
            n.iter()
                .any(|x| matches!(x, CycleNote::Refused { action: Stop, .. }))
        );
        assert_eq!(c.next(t0 + S, &mut n), Step::Do(G));
        c.on_instance(InstanceState::Stopped, t0 + S, &mut n);
        assert_eq!(c.next(t0 + S, &mut n), Step::Do(Start));
        assert_eq!(c.phase(), Phase::Starting);
    }

    #[test]
    fn incorrect_state_on_stop_with_running_instance_retries_stop_after_backoff() {
        let t0 = Instant::now();
        let mut c = RestartCycle::new(CycleSettings::default(), t0);
        let mut n = Vec::new();
        c.on_instance(InstanceState::Running, t0, &mut n);
        assert_eq!(c.next(t0, &mut n), Step::Do(Stop));
        let refused = ActionError::new(ActionErrorKind::IncorrectState, "conflict");
        c.on_error(Stop, refused, t0, &mut n);
        assert_eq!(c.next(t0, &mut n), Step::Do(G));
        c.on_instance(InstanceState::Running, t0, &mut n);
        match c.next(t0, &mut n) {
            Step::WaitUntil(t) => assert!(t - t0 >= 5 * S && t - t0 <= 10 * S),
            other => panic!("expected a backoff wait, got {other:?}"),
        }
    }

    #[test]
    fn authentication_and_not_found_errors_end_the_cycle() {
        let t0 = Instant::now();
        let cases = [
            (ActionErrorKind::NotAuthenticated, false),
            (ActionErrorKind::NotFound, true),
            (ActionErrorKind::Other, false),
        ];
        for (kind, permanent) in cases {
            let mut c = RestartCycle::new(CycleSettings::default(), t0);
            let mut n = Vec::new();
            c.on_error(G, ActionError::new(kind, "nope"), t0, &mut n);
            match c.next(t0, &mut n) {
                Step::Finished(Outcome::Failed { permanent: p, .. }) => {
                    assert_eq!(p, permanent, "{kind:?}")
                }
                other => panic!("{kind:?}: {other:?}"),
            }
            assert_eq!(phases(&n), vec![Phase::Failed]);
        }
    }

    #[test]
    fn results_for_calls_not_asked_for_are_ignored() {
        let t0 = Instant::now();
        let mut c = RestartCycle::new(CycleSettings::default(), t0);
        let mut n = Vec::new();
        c.on_action_ok(Start, t0, &mut n);
        c.on_error(
            Stop,
            ActionError::new(ActionErrorKind::NotFound, "x"),
            t0,
            &mut n,
        );
        assert!(n.is_empty());
        assert_eq!(c.next(t0, &mut n), Step::Do(G));
    }

    #[test]
    fn phase_names_round_trip_and_unknown_names_are_errors() {
        for p in Phase::ALL {
            assert_eq!(p.as_str().parse::<Phase>(), Ok(p));
            assert_eq!(p.as_str(), p.as_str().to_lowercase());
        }
        assert_eq!(
            "STOPPING".parse::<Phase>(),
            Err(UnknownPhase("STOPPING".into()))
        );
    }

    #[test]
    fn instance_states_parse_oci_spelling() {
        for s in [
            "MOVING",
            "RUNNING",
            "STOPPED",
            "CREATING_IMAGE",
            "TERMINATED",
        ] {
            assert_eq!(InstanceState::parse(s).as_str(), s);
        }
        assert_eq!(
            InstanceState::parse("HIBERNATING"),
            InstanceState::Unknown("HIBERNATING".into())
        );
    }
}
