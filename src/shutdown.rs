//! SIGTERM/SIGINT -> a shutdown event on a channel.
//!
//! Signals are turned into a message instead of handled in place so that the
//! coordinator decides how to stop (destroy the session, let a restart cycle
//! finish) on its own thread.

use crossbeam_channel::{Receiver, bounded};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// A termination request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownRequested {
    /// The signal number that asked for it.
    pub signal: i32,
}

/// Installs handlers for SIGTERM and SIGINT and returns the channel their
/// deliveries arrive on. A third signal exits at once (exit code 130) for the
/// case where a clean stop is itself stuck.
pub fn install() -> std::io::Result<Receiver<ShutdownRequested>> {
    let mut signals = Signals::new([SIGTERM, SIGINT])?;
    // Room for every signal before the third one exits the process.
    let (tx, rx) = bounded(4);
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut received = 0;
            for signal in signals.forever() {
                received += 1;
                if received >= 3 {
                    eprintln!("oracle-watchdog: third termination signal, exiting immediately");
                    std::process::exit(130);
                }
                if tx.send(ShutdownRequested { signal }).is_err() {
                    return;
                }
            }
        })?;
    Ok(rx)
}
