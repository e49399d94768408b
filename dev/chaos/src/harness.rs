//! Process and metrics helpers for chaos scenarios: spawn the real binary,
//! capture its logs, scrape `/metrics`, wait for conditions, fail with a reason.

use std::fmt::Display;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// One second, the unit most scenario timers are written in.
pub const SEC: Duration = Duration::from_secs(1);

/// What a scenario returns: `Err` carries the reason printed after `FAIL name:`.
pub type Outcome = Result<(), String>;

/// Fails the scenario with a formatted reason unless the condition holds.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        let holds: bool = $cond;
        if !holds {
            return Err(format!($($fmt)+));
        }
    };
}

/// Turns any failure (a `Result` error or a `None`) into a scenario reason.
pub trait Context<T> {
    /// The value, or `Err("{what}: {error}")`.
    fn ctx(self, what: &str) -> Result<T, String>;
}

impl<T, E: Display> Context<T> for Result<T, E> {
    fn ctx(self, what: &str) -> Result<T, String> {
        self.map_err(|e| format!("{what}: {e}"))
    }
}

impl<T> Context<T> for Option<T> {
    fn ctx(self, what: &str) -> Result<T, String> {
        self.ok_or_else(|| what.to_string())
    }
}

/// A free loopback TCP port (bound, then released).
pub fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").ctx("bind a loopback port")?;
    Ok(l.local_addr().ctx("local address")?.port())
}

/// A fresh directory of its own under the system temp dir.
pub fn temp_dir(name: &str) -> Result<PathBuf, String> {
    let d = std::env::temp_dir().join(format!(
        "ow-chaos-{name}-{}-{:08x}",
        std::process::id(),
        fastrand::u32(..)
    ));
    std::fs::create_dir_all(&d).ctx("create temp dir")?;
    Ok(d)
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write_file(dir: &Path, name: &str, text: &str) -> Result<PathBuf, String> {
    let p = dir.join(name);
    std::fs::write(&p, text).ctx(&format!("write {}", p.display()))?;
    Ok(p)
}

/// Polls `cond` every 50 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Checks `cond` every 200 ms for `duration`; the first time it fails,
/// returns `Err(what)`. Used for "stays true during the fault".
pub fn holds_for(duration: Duration, what: &str, mut cond: impl FnMut() -> bool) -> Outcome {
    let deadline = Instant::now() + duration;
    while Instant::now() < deadline {
        if !cond() {
            return Err(what.to_string());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

/// One process's captured log lines, shared with its reader thread.
type Lines = Arc<Mutex<Vec<String>>>;

/// Log lines of every process a scenario started, for the failure report.
#[derive(Clone, Default)]
pub struct LogBook {
    entries: Arc<Mutex<Vec<(String, Lines)>>>,
}

impl LogBook {
    fn add(&self, label: &str, lines: Lines) {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((label.to_string(), lines));
    }

    /// Every process's log, labelled, oldest process first.
    pub fn dump(&self) -> String {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = String::new();
        for (label, lines) in entries.iter() {
            out.push_str(&format!("===== {label} =====\n"));
            for l in lines.lock().unwrap_or_else(PoisonError::into_inner).iter() {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }
}

/// How to start one daemon process.
pub struct Spawn<'a> {
    /// Label in the log dump (e.g. `monitor n1`).
    pub label: &'a str,
    /// Arguments (without `-metrics-address`, which is added).
    pub args: Vec<String>,
    /// Extra environment (Consul variables are cleared first).
    pub env: Vec<(String, String)>,
    /// Metrics port to pass.
    pub metrics_port: u16,
}

/// A running oracle-watchdog process whose stderr (logs) is captured.
/// Dropping it kills the process.
pub struct Daemon {
    child: Child,
    /// The metrics port it was given.
    pub metrics_port: u16,
    logs: Lines,
}

impl Daemon {
    /// Starts the binary at `bin`.
    pub fn spawn(bin: &Path, book: &LogBook, s: Spawn<'_>) -> Result<Daemon, String> {
        let mut cmd = Command::new(bin);
        cmd.args(&s.args)
            .arg("-metrics-address")
            .arg(format!("127.0.0.1:{}", s.metrics_port))
            .env_remove("CONSUL_HTTP_TOKEN")
            .env_remove("CONSUL_HTTP_TOKEN_FILE")
            .env_remove("CONSUL_HTTP_SSL")
            .env_remove("CONSUL_CACERT")
            .env_remove("CONSUL_HTTP_ADDR")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in &s.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().ctx(&format!("spawn {}", bin.display()))?;
        let logs = Arc::new(Mutex::new(Vec::new()));
        book.add(s.label, logs.clone());
        if let Some(stderr) = child.stderr.take() {
            let sink = logs.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    sink.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(line);
                }
            });
        }
        Ok(Daemon {
            child,
            metrics_port: s.metrics_port,
            logs,
        })
    }

    /// All log lines so far.
    pub fn logs(&self) -> Vec<String> {
        self.logs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Whether any log line contains `needle`.
    pub fn logged(&self, needle: &str) -> bool {
        self.logs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .any(|l| l.contains(needle))
    }

    /// The `/metrics` text, or `None` while the server is not up.
    pub fn scrape(&self) -> Option<String> {
        scrape(self.metrics_port)
    }

    /// A sample's value (`name` or `name{label="v"}`), if present.
    pub fn metric(&self, name: &str) -> Option<f64> {
        metric_value(&self.scrape()?, name)
    }

    /// A sample's value, NaN when absent (so every comparison is false).
    pub fn val(&self, name: &str) -> f64 {
        self.metric(name).unwrap_or(f64::NAN)
    }

    /// `Err` naming the process when it has exited.
    pub fn ensure_alive(&mut self, label: &str) -> Outcome {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!("{label} exited ({status})")),
            Err(e) => Err(format!("{label}: cannot query process: {e}")),
        }
    }

    /// SIGKILL, and reap it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// GET `http://127.0.0.1:{port}/metrics`.
pub fn scrape(port: u16) -> Option<String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(2)))
        .build()
        .into();
    let mut r = agent
        .get(&format!("http://127.0.0.1:{port}/metrics"))
        .call()
        .ok()?;
    r.body_mut().read_to_string().ok()
}

/// Finds `name value` in Prometheus exposition text.
pub fn metric_value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// A plain HTTP client for poking the stand-ins like a third party would.
pub fn http() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .http_status_as_error(false)
        .build()
        .into()
}
