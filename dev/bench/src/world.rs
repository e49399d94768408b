//! The bench's world: stand-ins, an OCI profile with the fixture key, generated configs, daemon processes.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use watchdog_standins::consul::ConsulStandin;
use watchdog_standins::oci::{OciOptions, OciStandin};

use crate::net;

/// Tenancy and user OCIDs of the bench's OCI profile.
pub const TENANCY: &str = "ocid1.tenancy.oc1..bench";
/// See [`TENANCY`].
pub const USER: &str = "ocid1.user.oc1..bench";
/// Key prefix the agent watches heartbeats under.
pub const NODES_PREFIX: &str = "oracle-watchdog/nodes/";

/// Paths shared by every measurement.
#[derive(Debug, Clone)]
pub struct Paths {
    /// Repository root.
    pub root: PathBuf,
    /// The oracle-watchdog binary under test.
    pub binary: PathBuf,
    /// Scratch directory for configs and logs.
    pub work: PathBuf,
}

/// A spawned daemon (monitor, agent) with its metrics port; killed on drop.
pub struct Daemon {
    child: Child,
    /// Where its metrics server listens.
    pub metrics_port: u16,
}

impl Daemon {
    /// Spawns `binary args... -metrics-address 127.0.0.1:PORT`, logs to `log`.
    pub fn spawn(
        paths: &Paths,
        args: &[&str],
        env: &[(&str, &str)],
        log: &str,
    ) -> io::Result<Daemon> {
        let metrics_port = net::free_port()?;
        let log = fs::File::create(paths.work.join(log))?;
        let mut cmd = Command::new(&paths.binary);
        cmd.args(args)
            .arg("-metrics-address")
            .arg(format!("127.0.0.1:{metrics_port}"))
            .env_remove("CONSUL_HTTP_TOKEN")
            .env_remove("CONSUL_HTTP_TOKEN_FILE")
            .env_remove("CONSUL_HTTP_SSL")
            .env_remove("CONSUL_CACERT")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Ok(Daemon {
            child: cmd.spawn()?,
            metrics_port,
        })
    }

    /// The process id (for /proc).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A metric of this daemon, if it answers.
    pub fn metric(&self, name: &str) -> Option<f64> {
        net::metric(self.metrics_port, name)
    }

    /// SIGTERM (a clean stop: monitors destroy their session), then waits up to 5 s.
    pub fn terminate(mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
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

/// Polls `cond` every `every` until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, every: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(every);
    }
}

/// An OCI stand-in that accepts the fixture key, and an OCI config file for it.
pub struct OciSide {
    /// The stand-in.
    pub standin: OciStandin,
    /// OCI SDK-style config file (profile DEFAULT) pointing at a 0600 copy of the key.
    pub config: PathBuf,
}

impl OciSide {
    /// Starts the stand-in with the given STOPPING/STARTING duration.
    pub fn start(paths: &Paths, transition: Duration) -> Result<OciSide, String> {
        let standin = OciStandin::start_with(OciOptions {
            transition_time: transition,
            ..OciOptions::default()
        })
        .map_err(|e| format!("OCI stand-in: {e}"))?;
        let fixture = paths.root.join("tests/fixtures/oci/keys/pkcs8.pem");
        let pem =
            fs::read_to_string(&fixture).map_err(|e| format!("{}: {e}", fixture.display()))?;
        let fingerprint = fixture_fingerprint(&paths.root)?;
        standin.register_key(&format!("{TENANCY}/{USER}/{fingerprint}"), &pem)?;
        // A private copy: the OCI CLI and the daemon warn about keys others can read.
        let key_file = paths.work.join("oci-key.pem");
        fs::write(&key_file, &pem).map_err(|e| e.to_string())?;
        chmod_600(&key_file)?;
        let config = paths.work.join("oci-config");
        fs::write(
            &config,
            format!(
                "[DEFAULT]\nuser={USER}\nfingerprint={fingerprint}\ntenancy={TENANCY}\nregion=us-ashburn-1\nkey_file={}\n",
                key_file.display()
            ),
        )
        .map_err(|e| e.to_string())?;
        chmod_600(&config)?;
        Ok(OciSide { standin, config })
    }
}

fn chmod_600(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// The fixture key's fingerprint, from the signature fixtures the OCI SDK produced.
fn fixture_fingerprint(root: &Path) -> Result<String, String> {
    let path = root.join("tests/fixtures/oci/signatures.json");
    let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    json["cases"][0]["expected_authorization"]
        .as_str()
        .and_then(|a| a.split("keyId=\"").nth(1))
        .and_then(|k| k.split('"').next())
        .and_then(|k| k.rsplit('/').next())
        .map(str::to_string)
        .ok_or_else(|| format!("{}: no keyId in the first case", path.display()))
}

/// Creates one session (TTL 24h, delete behaviour) over the HTTP API and
/// acquires `oracle-watchdog/nodes/{name}` for every name with it.
/// Returns the session id.
pub fn hold_heartbeats(consul: &ConsulStandin, names: &[String]) -> Result<String, String> {
    let body = br#"{"Name":"watchdog-bench","TTL":"24h","Behavior":"delete","LockDelay":"0s"}"#;
    let reply =
        net::call(consul.addr(), "PUT", "/v1/session/create", body).map_err(|e| e.to_string())?;
    let json: serde_json::Value = serde_json::from_slice(&reply.body).map_err(|e| e.to_string())?;
    let id = json["ID"]
        .as_str()
        .ok_or("session create: no ID")?
        .to_string();
    for name in names {
        acquire(consul, &id, name)?;
    }
    Ok(id)
}

/// `PUT /v1/kv/oracle-watchdog/nodes/{name}?acquire={session}`.
pub fn acquire(consul: &ConsulStandin, session: &str, name: &str) -> Result<(), String> {
    let path = format!("/v1/kv/{NODES_PREFIX}{name}?acquire={session}");
    let reply = net::call(consul.addr(), "PUT", &path, b"bench")
        .map_err(|e| format!("acquire {name}: {e}"))?;
    if reply.status == 200 && reply.body.starts_with(b"true") {
        Ok(())
    } else {
        Err(format!(
            "acquire {name}: HTTP {} {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        ))
    }
}

/// The instance OCID the bench gives node `name`.
pub fn instance_of(name: &str) -> String {
    format!("ocid1.instance.oc1.iad.{name}")
}

/// Writes an agent config watching `nodes`; `extra` is inserted verbatim
/// before `nodes:`. `compact` writes one flow-style line per node with a
/// placeholder compartment (nobody calls OCI for them), so that 10,000 nodes
/// fit the daemon's 1 MiB config-file limit.
#[allow(clippy::too_many_arguments)] // one call site per figure; a struct would only rename them
pub fn agent_config(
    paths: &Paths,
    file: &str,
    consul: &ConsulStandin,
    oci: &OciSide,
    check_interval: &str,
    nodes: &[String],
    extra: &str,
    compact: bool,
) -> Result<PathBuf, String> {
    let mut y = format!(
        "timeout: 5m\ncheck_interval: {check_interval}\nconsul_address: \"{}\"\n\
         oci:\n  config_path: \"{}\"\n  endpoint: \"{}\"\n{extra}nodes:\n",
        consul.http_addr(),
        oci.config.display(),
        oci.standin.base_url(),
    );
    for n in nodes {
        if compact {
            y.push_str(&format!(
                "- {{name: {n}, instance_id: {}, compartment_id: c}}\n",
                instance_of(n)
            ));
        } else {
            y.push_str(&format!(
                "  - name: {n}\n    instance_id: \"{}\"\n    compartment_id: \"ocid1.compartment.oc1..bench\"\n",
                instance_of(n)
            ));
        }
    }
    let path = paths.work.join(file);
    if y.len() > 1024 * 1024 {
        return Err(format!(
            "{}: {} bytes is over the daemon's 1 MiB config-file limit",
            path.display(),
            y.len()
        ));
    }
    fs::write(&path, y).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

/// Writes the monitor config (the defaults, spelled out).
pub fn monitor_config(paths: &Paths) -> Result<PathBuf, String> {
    let path = paths.work.join("monitor.yaml");
    fs::write(
        &path,
        "monitor:\n  session_ttl: 30s\n  renew_interval: 10s\n",
    )
    .map_err(|e| e.to_string())?;
    Ok(path)
}

/// Size in bytes of the `nodes:` list for `n` nodes written the way a user
/// would (block style, real-length OCIDs: 83 characters each).
pub fn realistic_nodes_bytes(n: usize) -> usize {
    (0..n)
        .map(|i| {
            format!(
                "  - name: \"oraclenode{i}\"\n    instance_id: \"ocid1.instance.oc1.iad.{0}\"\n    compartment_id: \"ocid1.compartment.oc1..{0}\"\n",
                "a".repeat(60)
            )
            .len()
        })
        .sum()
}

/// Node names `prefix-0 .. prefix-(n-1)`.
pub fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}
