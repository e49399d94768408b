//! `make chaos`: named fault scenarios against the real oracle-watchdog binary
//! and the dev stand-ins, two at a time, one result line each.
//!
//! Usage: `watchdog-chaos [-j N] [--list] [NAME-SUBSTRING...]`. The binary
//! under test comes from `OW_BIN` (default `target/debug/oracle-watchdog`).
//! Prints `PASS name (12.3s)` or `FAIL name: reason` per scenario and a final
//! `N passed, M failed`; exits 1 when anything failed. The logs of every
//! process of a failed scenario go to `target/chaos-logs/NAME.log`.

mod fakewg;
mod harness;
mod scenarios;
mod world;

use std::io::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use harness::LogBook;

/// What every scenario gets: the binary under test and a log book.
pub struct Env {
    /// Absolute path of the oracle-watchdog binary.
    pub bin: PathBuf,
    /// Where the scenario's processes register their logs.
    pub book: LogBook,
}

/// One named scenario.
pub struct Scenario {
    /// Printed name; also what the command-line filter matches.
    pub name: &'static str,
    /// The scenario; `Err` is the failure reason.
    pub run: fn(&Env) -> harness::Outcome,
}

struct Args {
    jobs: usize,
    list: bool,
    filters: Vec<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        jobs: 2,
        list: false,
        filters: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "-j" | "--jobs" => {
                let n = it.next().ok_or("-j needs a number")?;
                args.jobs = n
                    .parse::<usize>()
                    .map_err(|e| format!("-j {n}: {e}"))?
                    .max(1);
            }
            "--list" => args.list = true,
            "-h" | "--help" => {
                return Err("usage: watchdog-chaos [-j N] [--list] [NAME-SUBSTRING...]".into());
            }
            _ => args.filters.push(a),
        }
    }
    Ok(args)
}

fn binary() -> Result<PathBuf, String> {
    let raw = std::env::var_os("OW_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/debug/oracle-watchdog"));
    let abs = if raw.is_absolute() {
        raw
    } else {
        std::env::current_dir()
            .map_err(|e| format!("current directory: {e}"))?
            .join(raw)
    };
    if !abs.is_file() {
        return Err(format!(
            "{}: no such binary (build it, or set OW_BIN)",
            abs.display()
        ));
    }
    Ok(abs)
}

fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic".to_string()
    }
}

fn save_logs(name: &str, book: &LogBook) -> Option<PathBuf> {
    let dir = PathBuf::from("target/chaos-logs");
    std::fs::create_dir_all(&dir).ok()?;
    let path = dir.join(format!("{name}.log"));
    std::fs::write(&path, book.dump()).ok()?;
    Some(path)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let all = scenarios::all();
    let chosen: Vec<&Scenario> = all
        .iter()
        .filter(|s| args.filters.is_empty() || args.filters.iter().any(|f| s.name.contains(f)))
        .collect();
    if args.list {
        for s in &chosen {
            println!("{}", s.name);
        }
        return ExitCode::SUCCESS;
    }
    let bin = match binary() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("watchdog-chaos: {e}");
            return ExitCode::from(2);
        }
    };
    // A scenario's panic is its failure: keep the default hook quiet.
    std::panic::set_hook(Box::new(|_| {}));
    let started = Instant::now();
    let next = AtomicUsize::new(0);
    let results = Mutex::new((0usize, 0usize));
    std::thread::scope(|scope| {
        for _ in 0..args.jobs.min(chosen.len().max(1)) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(s) = chosen.get(i) else { break };
                    let env = Env {
                        bin: bin.clone(),
                        book: LogBook::default(),
                    };
                    let t0 = Instant::now();
                    let outcome = catch_unwind(AssertUnwindSafe(|| (s.run)(&env)))
                        .unwrap_or_else(|p| Err(format!("panicked: {}", panic_text(p))));
                    let secs = t0.elapsed().as_secs_f64();
                    let line = match &outcome {
                        Ok(()) => format!("PASS {} ({secs:.1}s)", s.name),
                        Err(reason) => {
                            let logs = save_logs(s.name, &env.book)
                                .map(|p| format!(" [logs: {}]", p.display()))
                                .unwrap_or_default();
                            format!("FAIL {}: {reason} ({secs:.1}s){logs}", s.name)
                        }
                    };
                    let mut r = results.lock().unwrap_or_else(PoisonError::into_inner);
                    if outcome.is_ok() {
                        r.0 += 1;
                    } else {
                        r.1 += 1;
                    }
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "{line}");
                    let _ = out.flush();
                }
            });
        }
    });
    let (passed, failed) = *results.lock().unwrap_or_else(PoisonError::into_inner);
    eprintln!("chaos suite took {:.0}s", started.elapsed().as_secs_f64());
    println!("{passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
