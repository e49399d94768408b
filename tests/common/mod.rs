//! Shared helpers for integration tests that run the real binary.
#![allow(dead_code)] // each test file uses a different subset

pub mod world;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Path of the binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_oracle-watchdog")
}

/// A free loopback TCP port (bound then released).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// A fresh directory under the system temp dir.
pub fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "ow-test-{name}-{}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos() ^ fastrand::u64(..) as u128
    ));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running daemon process whose stderr (logs) is captured.
pub struct Daemon {
    pub child: Child,
    pub metrics_port: u16,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Daemon {
    /// Spawns the binary with `args`, `env`, and a metrics port of its own.
    pub fn spawn(args: &[&str], env: &[(&str, &str)]) -> Daemon {
        Self::spawn_on_port(args, env, free_port())
    }

    /// Like [`Daemon::spawn`] with a given metrics port.
    pub fn spawn_on_port(args: &[&str], env: &[(&str, &str)], metrics_port: u16) -> Daemon {
        let mut cmd = Command::new(binary());
        cmd.args(args)
            .arg("-metrics-address")
            .arg(format!("127.0.0.1:{metrics_port}"))
            .env_remove("CONSUL_HTTP_TOKEN")
            .env_remove("CONSUL_HTTP_TOKEN_FILE")
            .env_remove("CONSUL_HTTP_SSL")
            .env_remove("CONSUL_CACERT")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn oracle-watchdog");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr");
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if std::env::var_os("OW_TEST_ECHO").is_some() {
                    eprintln!("[daemon] {line}");
                }
                sink.lock().expect("logs").push(line);
            }
        });
        Daemon {
            child,
            metrics_port,
            logs,
        }
    }

    /// All log lines so far.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().expect("logs").clone()
    }

    /// The `/metrics` text, or `None` while the server is not up.
    pub fn scrape(&self) -> Option<String> {
        scrape(self.metrics_port)
    }

    /// The value of an unlabelled sample (or a fully labelled one, e.g.
    /// `name{node="a"}`), if present.
    pub fn metric(&self, name: &str) -> Option<f64> {
        metric_value(&self.scrape()?, name)
    }

    /// Still running?
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends a signal by name (TERM, INT, KILL) with kill(1).
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{sig} failed");
    }

    /// Waits for exit up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET http://127.0.0.1:port/metrics.
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

/// Finds `name value` in exposition text.
pub fn metric_value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write file");
    p
}
