//! Supervised loop threads: a panic is caught, logged, counted and the loop
//! started again (after a short backoff), so one bug in a rarely used path
//! cannot silently stop the heartbeat, the watcher or the metrics server.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;
use std::time::Duration;

use prometheus::{IntCounterVec, Opts, Registry};

use crate::backoff::Backoff;

static PANICS: OnceLock<Option<IntCounterVec>> = OnceLock::new();

fn panics() -> Option<&'static IntCounterVec> {
    PANICS
        .get_or_init(|| {
            IntCounterVec::new(
                Opts::new(
                    "oracle_watchdog_thread_panics_total",
                    "Panics caught in loop and worker threads (the loop was restarted)",
                ),
                &["thread"],
            )
            .ok()
        })
        .as_ref()
}

/// Registers `oracle_watchdog_thread_panics_total{thread}` (extra metric) on
/// the mode's registry. Panics before this are still caught and logged.
pub fn register_metrics(registry: &Registry) -> Result<(), prometheus::Error> {
    match panics() {
        Some(c) => registry.register(Box::new(c.clone())),
        None => Ok(()),
    }
}

/// Counts one caught panic in `thread`.
pub fn count_panic(thread: &str) {
    if let Some(c) = panics() {
        c.with_label_values(&[thread]).inc();
    }
}

/// Runs `body` on a named thread; if it panics, logs and counts it and runs
/// it again after a backoff (1 s doubling to 30 s). When `body` returns
/// normally the thread ends.
pub fn spawn<F>(name: &str, body: F) -> std::io::Result<std::thread::JoinHandle<()>>
where
    F: Fn() + Send + 'static,
{
    let thread = name.to_string();
    std::thread::Builder::new()
        .name(thread.clone())
        .spawn(move || {
            let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
            loop {
                match catch_unwind(AssertUnwindSafe(&body)) {
                    Ok(()) => return,
                    Err(payload) => {
                        count_panic(&thread);
                        let delay = backoff.next_delay();
                        tracing::error!(
                            thread = %thread,
                            panic = panic_message(payload.as_ref()),
                            restart_in_ms = delay.as_millis() as u64,
                            "loop thread panicked; restarting it"
                        );
                        std::thread::sleep(delay);
                    }
                }
            }
        })
}

/// The text of a panic payload, when it has one.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-text panic payload)".to_string()
    }
}

/// Sends panic reports through the log (JSON when configured) instead of
/// raw stderr text, with the thread name and location.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current()
            .name()
            .unwrap_or("unnamed")
            .to_string();
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        tracing::error!(
            thread,
            location,
            panic = panic_message(info.payload()),
            "panic"
        );
    }));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn a_panicking_loop_is_counted_and_restarted() {
        let registry = Registry::new();
        let _ = register_metrics(&registry);
        let runs = Arc::new(AtomicU32::new(0));
        let r = runs.clone();
        let handle = spawn("test-loop", move || {
            // First run panics (an injected bug), the restarted run finishes.
            if r.fetch_add(1, Ordering::SeqCst) == 0 {
                panic!("injected");
            }
        })
        .unwrap();
        handle.join().unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        let text = crate::metrics::render(&registry);
        assert!(
            text.contains("oracle_watchdog_thread_panics_total{thread=\"test-loop\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn panic_messages_are_extracted() {
        let p: Box<dyn std::any::Any + Send> = Box::new("static text");
        assert_eq!(panic_message(p.as_ref()), "static text");
        let p: Box<dyn std::any::Any + Send> = Box::new(String::from("owned"));
        assert_eq!(panic_message(p.as_ref()), "owned");
        let p: Box<dyn std::any::Any + Send> = Box::new(42);
        assert!(panic_message(p.as_ref()).contains("non-text"));
    }
}
