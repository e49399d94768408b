//! The agent's eyes: a loop thread reading everything under
//! `oracle-watchdog/` with Consul blocking queries.
//!
//! One request per pass sees every node. A blocking query returns as soon as
//! anything under the prefix changes (a heartbeat key deleted by session
//! expiry included), so a vanished node is noticed within a second; it also
//! returns after `check_interval` when nothing changes, which doubles as the
//! plain polling fallback. Failures are reported, never interpreted: an
//! unreachable, hanging or leaderless Consul produces `Failed`, not a view
//! with nodes missing.

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded};

use super::records::{KvView, WATCH_PREFIX};
use crate::backoff::Backoff;
use crate::consul::{BlockingQuery, ConsulClient, ConsulError};

/// Shortest time between two requests, so a prefix that changes constantly
/// cannot turn the loop into a busy loop.
const MIN_SPACING: Duration = Duration::from_millis(100);

/// What the watcher reports to the coordinator.
#[derive(Debug, Clone)]
pub enum WatchEvent {
    /// Consul answered: this is the state of the prefix.
    View(KvView),
    /// Consul could not be read; nothing is known about the nodes.
    Failed(ConsulError),
}

/// Handle of the watcher thread; it ends when told to or when the
/// coordinator's receiver is gone.
pub struct Watcher {
    stop: Sender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watcher {
    /// Starts the `consul-watch` thread.
    pub fn spawn(
        client: ConsulClient,
        check_interval: Duration,
        events: Sender<WatchEvent>,
    ) -> std::io::Result<Watcher> {
        let (stop_tx, stop_rx) = bounded(1);
        let thread = crate::supervise::spawn("consul-watch", move || {
            watch(
                client.clone(),
                check_interval,
                events.clone(),
                stop_rx.clone(),
            )
        })?;
        Ok(Watcher {
            stop: stop_tx,
            thread: Some(thread),
        })
    }

    /// Asks the thread to stop. It may be inside a blocking query for up to
    /// `check_interval`; it is not waited for (the process is exiting).
    pub fn stop(mut self) {
        let _ = self.stop.try_send(());
        drop(self.thread.take());
    }
}

fn watch(
    client: ConsulClient,
    check_interval: Duration,
    events: Sender<WatchEvent>,
    stop: Receiver<()>,
) {
    let mut index = 0u64;
    let mut backoff = Backoff::new(
        Duration::from_secs(1),
        check_interval.max(Duration::from_secs(1)),
    );
    loop {
        if stop.try_recv().is_ok() {
            return;
        }
        let started = Instant::now();
        let query = BlockingQuery {
            index,
            wait: check_interval,
        };
        // One root span per pass; the Consul call is its child.
        let span = tracing::info_span!(
            parent: None,
            "watch_pass",
            index,
            new_index = tracing::field::Empty,
            keys = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
            otel.status_description = tracing::field::Empty,
        );
        let result = span.in_scope(|| client.list(WATCH_PREFIX, Some(query)));
        match &result {
            Ok((pairs, new_index)) => {
                span.record("new_index", new_index);
                span.record("keys", pairs.len());
            }
            Err(e) => crate::telemetry::record_error(&span, &e.to_string()),
        }
        drop(span);
        let pause = match result {
            Ok((pairs, new_index)) => {
                backoff.reset();
                let polling = new_index == 0;
                // An index that goes backwards (snapshot restore, wipe) must
                // be reset or the next query would block for the full wait.
                index = if new_index < index { 0 } else { new_index };
                if events
                    .send(WatchEvent::View(KvView::from_pairs(&pairs)))
                    .is_err()
                {
                    return;
                }
                if polling {
                    // No X-Consul-Index: blocking is not available, poll.
                    check_interval
                } else {
                    MIN_SPACING.saturating_sub(started.elapsed())
                }
            }
            Err(e) => {
                if events.send(WatchEvent::Failed(e)).is_err() {
                    return;
                }
                backoff.next_delay()
            }
        };
        if !pause.is_zero() && stop.recv_timeout(pause).is_ok() {
            return;
        }
    }
}
