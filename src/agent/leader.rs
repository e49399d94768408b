//! Leader election among agents: whoever holds `oracle-watchdog/agent/leader`
//! with a live session may restart instances; the others stand by.
//!
//! The lock session uses `Behavior=release` and `LockDelay=0s`, so when the
//! leader dies (its session expires after TTL..2xTTL) or stops (it destroys
//! its session) a standby acquires the lock on its next attempt. The leader
//! gives up acting on its own once it has not renewed for half the TTL:
//! Consul may invalidate the session as early as one TTL after the last
//! renewal, and the leader must stop before a standby can start.

use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender, bounded};

use super::records::{LEADER_KEY, LeaderRecord};
use crate::consul::{ConsulClient, ConsulError, SessionBehavior, SessionSpec};

/// Election timing.
#[derive(Debug, Clone)]
pub struct LeaderSettings {
    /// Lock session TTL; a dead leader is replaced within about 1-2 TTL.
    pub ttl: Duration,
    /// This agent's identity (host:pid), stored in the lock's value.
    pub identity: String,
}

/// Leadership changes, sent to the coordinator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaderEvent {
    /// This agent now holds the lock.
    Acquired,
    /// This agent no longer may act.
    Lost {
        /// Why, for the log.
        reason: String,
    },
}

/// Handle of the `leader` thread.
pub struct Elector {
    stop: Sender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Elector {
    /// Starts campaigning on a thread of its own.
    pub fn spawn(
        client: ConsulClient,
        settings: LeaderSettings,
        events: Sender<LeaderEvent>,
    ) -> std::io::Result<Elector> {
        let (stop_tx, stop_rx) = bounded(1);
        let restarted = std::sync::atomic::AtomicBool::new(false);
        let thread = crate::supervise::spawn("leader", move || {
            if restarted.swap(true, std::sync::atomic::Ordering::SeqCst) {
                // The previous run panicked: whatever it held is unknown now,
                // so this agent must not act until it wins the lock again.
                let _ = events.send(LeaderEvent::Lost {
                    reason: "leader election thread restarted after a panic".into(),
                });
            }
            campaign(
                client.clone(),
                settings.clone(),
                events.clone(),
                stop_rx.clone(),
            )
        })?;
        Ok(Elector {
            stop: stop_tx,
            thread: Some(thread),
        })
    }

    /// Stops campaigning and releases the lock (by destroying the session)
    /// so a standby can take over at once; waits at most `timeout`.
    pub fn stop(mut self, timeout: Duration) {
        let _ = self.stop.try_send(());
        if let Some(t) = self.thread.take() {
            let deadline = Instant::now() + timeout;
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if t.is_finished() && t.join().is_err() {
                tracing::error!("leader thread panicked");
            }
        }
    }
}

struct Campaign {
    client: ConsulClient,
    settings: LeaderSettings,
    events: Sender<LeaderEvent>,
    session: Option<String>,
    leading: bool,
    last_renewal: Instant,
    /// Consecutive failed rounds, so a persistent problem (e.g. an ACL token
    /// without `session:write`) is reported loudly but not every round.
    failures: u32,
}

fn campaign(
    client: ConsulClient,
    settings: LeaderSettings,
    events: Sender<LeaderEvent>,
    stop: Receiver<()>,
) {
    let every = settings.ttl / 3;
    let mut c = Campaign {
        client,
        settings,
        events,
        session: None,
        leading: false,
        last_renewal: Instant::now(),
        failures: 0,
    };
    loop {
        c.round();
        if stop.recv_timeout(every).is_ok() {
            break;
        }
    }
    if let Some(session) = c.session.take() {
        match c.client.destroy_session(&session) {
            Ok(()) => tracing::info!("leader lock released"),
            Err(e) => {
                tracing::warn!(error = %e, "could not release the leader lock; it expires with its session")
            }
        }
    }
}

impl Campaign {
    /// One election round: keep the session alive, then hold or try the lock.
    fn round(&mut self) {
        match self.try_round() {
            Ok(()) => {
                if self.failures > 0 {
                    tracing::info!(failed_rounds = self.failures, "leader election works again");
                }
                self.failures = 0;
            }
            Err(e) => {
                self.failures += 1;
                // First failure and then every 10th: without an election this
                // agent never restarts anything, which must not go unnoticed.
                if self.failures == 1 || self.failures.is_multiple_of(10) {
                    tracing::warn!(
                        error = %e,
                        failed_rounds = self.failures,
                        "leader election failing; this agent cannot restart instances until it succeeds"
                    );
                } else {
                    tracing::debug!(error = %e, "leader election round failed");
                }
                if self.leading && self.last_renewal.elapsed() >= self.settings.ttl / 2 {
                    self.lose(format!("cannot renew the leader session: {e}"));
                }
            }
        }
    }

    fn try_round(&mut self) -> Result<(), ConsulError> {
        let session = match &self.session {
            Some(s) => s.clone(),
            None => {
                let s = self.client.create_session(&SessionSpec {
                    name: format!("oracle-watchdog-agent/{}", self.settings.identity),
                    ttl: self.settings.ttl,
                    behavior: SessionBehavior::Release,
                    lock_delay: Duration::ZERO,
                })?;
                self.last_renewal = Instant::now();
                self.session = Some(s.clone());
                s
            }
        };
        match self.client.renew_session(&session) {
            Ok(()) => self.last_renewal = Instant::now(),
            Err(ConsulError::NotFound { .. }) => {
                self.session = None;
                if self.leading {
                    self.lose("leader session invalidated by Consul".into());
                }
                return Ok(());
            }
            Err(e) => return Err(e),
        }
        if self.leading {
            // Still ours? Someone may have deleted the key or restored state.
            let holder = self.client.get(LEADER_KEY)?.and_then(|p| p.session);
            if holder.as_deref() != Some(session.as_str()) {
                self.lose("leader key no longer held by this agent".into());
            }
            return Ok(());
        }
        let record = LeaderRecord {
            agent: self.settings.identity.clone(),
            since: crate::wallclock::rfc3339(SystemTime::now()),
        };
        let value = serde_json::to_vec(&record).unwrap_or_default();
        if self.client.acquire(LEADER_KEY, &session, &value)? {
            self.leading = true;
            tracing::info!(agent = %self.settings.identity, "this agent is now the leader");
            let _ = self.events.send(LeaderEvent::Acquired);
        }
        Ok(())
    }

    fn lose(&mut self, reason: String) {
        self.leading = false;
        tracing::warn!(reason, "leadership lost; standing by");
        let _ = self.events.send(LeaderEvent::Lost { reason });
    }
}
