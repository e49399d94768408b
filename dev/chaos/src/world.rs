//! One scenario's world: its own Consul and OCI stand-ins, an OCI profile
//! with the fixture key, real monitor processes, agent configs with short
//! timers, and the invariants every scenario ends with.

use std::path::{Path, PathBuf};
use std::time::Duration;

use oracle_watchdog::oci::ApiKey;
use watchdog_standins::consul::{ConsulOptions, ConsulStandin};
use watchdog_standins::oci::{LifecycleState, OciOptions, OciStandin};

use crate::ensure;
use crate::harness::{
    Context, Daemon, LogBook, Outcome, SEC, Spawn, free_port, temp_dir, wait_until, write_file,
};

/// Tenancy OCID in the generated OCI profile.
pub const TENANCY: &str = "ocid1.tenancy.oc1..chaos";
/// User OCID in the generated OCI profile.
pub const USER: &str = "ocid1.user.oc1..chaos";
/// Instance of node `n1`.
pub const I1: &str = "ocid1.instance.oc1.iad.chaosone";
/// Instance of node `n2`.
pub const I2: &str = "ocid1.instance.oc1.iad.chaostwo";
/// Prefix of the agent's resumable cycle records.
pub const RESTARTS: &str = "oracle-watchdog/agent/restarts/";

/// Knobs for [`World::new`].
pub struct WorldOpts {
    /// ACL token Consul requires (and every daemon gets), if any.
    pub consul_token: Option<String>,
    /// How long OCI's STOPPING/STARTING last.
    pub transition: Duration,
    /// How long a hung OCI request is held.
    pub oci_hang: Duration,
    /// Accepted skew of a request's `date` (a jumped clock needs more).
    pub oci_max_skew: Duration,
    /// Extra environment for every daemon (e.g. libfaketime).
    pub env: Vec<(String, String)>,
}

impl Default for WorldOpts {
    fn default() -> Self {
        WorldOpts {
            consul_token: None,
            transition: Duration::from_millis(300),
            oci_hang: Duration::from_secs(60),
            oci_max_skew: Duration::from_secs(300),
            env: Vec::new(),
        }
    }
}

/// An agent config's timers and extra YAML.
pub struct AgentCfg {
    /// How long a key must be missing before a restart.
    pub timeout: &'static str,
    /// Longest phase of a cycle.
    pub phase_timeout: &'static str,
    /// `(name, instance_id)` of the configured nodes.
    pub nodes: Vec<(&'static str, &'static str)>,
    /// YAML appended at the end (top-level blocks such as `wan_dns:`).
    pub extra: String,
}

impl Default for AgentCfg {
    fn default() -> Self {
        AgentCfg {
            timeout: "2s",
            phase_timeout: "20s",
            nodes: vec![("n1", I1), ("n2", I2)],
            extra: String::new(),
        }
    }
}

impl AgentCfg {
    /// For Consul faults: the monitors' reconnect backoff tops out at 15 s,
    /// so the agent's timeout must be longer (in production 5 m vs 15 s).
    pub fn consul_faults() -> AgentCfg {
        AgentCfg {
            timeout: "20s",
            ..AgentCfg::default()
        }
    }
}

/// Stand-ins plus the processes of one scenario.
pub struct World {
    /// The binary under test.
    pub bin: PathBuf,
    /// Logs of every process started here.
    pub book: LogBook,
    /// Consul stand-in (sessions expire after 0.5 x TTL).
    pub consul: ConsulStandin,
    /// OCI stand-in with `I1`, `I2` RUNNING.
    pub oci: OciStandin,
    /// Scratch directory for configs.
    pub dir: PathBuf,
    /// Running monitors by node name.
    pub monitors: Vec<(String, Daemon)>,
    env: Vec<(String, String)>,
}

impl World {
    /// Starts the stand-ins and writes the OCI profile and monitor config.
    pub fn new(bin: &Path, book: &LogBook, opts: WorldOpts) -> Result<World, String> {
        let consul = ConsulStandin::start_with(ConsulOptions {
            expiry_factor: 0.5,
            token: opts.consul_token.clone(),
            ..ConsulOptions::default()
        })
        .ctx("start the Consul stand-in")?;
        let oci = OciStandin::start_with(OciOptions {
            transition_time: opts.transition,
            hang_time: opts.oci_hang,
            max_skew: opts.oci_max_skew,
            ..OciOptions::default()
        })
        .ctx("start the OCI stand-in")?;
        let key_file = fixture_key();
        let key = ApiKey::load(&key_file, None).ctx("load the fixture OCI key")?;
        oci.register_key(
            &format!("{TENANCY}/{USER}/{}", key.fingerprint()),
            &key.public_key_pem(),
        )?;
        oci.add_instance(I1, LifecycleState::Running);
        oci.add_instance(I2, LifecycleState::Running);
        let dir = temp_dir("world")?;
        write_file(
            &dir,
            "oci-config",
            &format!(
                "[DEFAULT]\nuser={USER}\nfingerprint={}\ntenancy={TENANCY}\nregion=us-ashburn-1\nkey_file={}\n",
                key.fingerprint(),
                key_file.display()
            ),
        )?;
        write_file(
            &dir,
            "monitor.yaml",
            "monitor:\n  session_ttl: 10s\n  renew_interval: 1s\n",
        )?;
        let mut env = opts.env;
        env.push(("CONSUL_HTTP_ADDR".into(), consul.http_addr()));
        if let Some(t) = &opts.consul_token {
            env.push(("CONSUL_HTTP_TOKEN".into(), t.clone()));
        }
        Ok(World {
            bin: bin.to_path_buf(),
            book: book.clone(),
            consul,
            oci,
            dir,
            monitors: Vec::new(),
            env,
        })
    }

    /// The environment every daemon gets.
    pub fn env(&self) -> Vec<(String, String)> {
        self.env.clone()
    }

    /// Starts a monitor for `node` with `config` (default: fast timers) and
    /// waits for its heartbeat key.
    pub fn start_monitor_with(&mut self, node: &str, config: Option<&Path>) -> Outcome {
        let default = self.dir.join("monitor.yaml");
        let cfg = config.unwrap_or(&default);
        let d = Daemon::spawn(
            &self.bin,
            &self.book,
            Spawn {
                label: &format!("monitor {node}"),
                args: strings(&[
                    "-mode",
                    "monitor",
                    "-node",
                    node,
                    "-config",
                    &cfg.display().to_string(),
                    "-log-level",
                    "debug",
                ]),
                env: self.env(),
                metrics_port: free_port()?,
            },
        )?;
        self.monitors.push((node.to_string(), d));
        ensure!(
            wait_until(10 * SEC, || self.heartbeat_held(node)),
            "monitor {node} never published its heartbeat key"
        );
        Ok(())
    }

    /// [`World::start_monitor_with`] the default config.
    pub fn start_monitor(&mut self, node: &str) -> Outcome {
        self.start_monitor_with(node, None)
    }

    /// The running monitor of `node`.
    pub fn monitor(&self, node: &str) -> Result<&Daemon, String> {
        self.monitors
            .iter()
            .find(|(n, _)| n == node)
            .map(|(_, d)| d)
            .ctx(&format!("no monitor for {node}"))
    }

    /// SIGKILL (the node dies): its session is left to expire.
    pub fn kill_monitor(&mut self, node: &str) -> Outcome {
        let i = self
            .monitors
            .iter()
            .position(|(n, _)| n == node)
            .ctx(&format!("no monitor for {node}"))?;
        let (_, mut d) = self.monitors.remove(i);
        d.kill();
        Ok(())
    }

    /// Whether `oracle-watchdog/nodes/{node}` is held by a live session.
    pub fn heartbeat_held(&self, node: &str) -> bool {
        let Some(kv) = self.consul.kv_get(&format!("oracle-watchdog/nodes/{node}")) else {
            return false;
        };
        let Some(s) = kv.session else { return false };
        self.consul.sessions().iter().any(|v| v.id == s)
    }

    /// Every monitor holds its key and says `session_active 1`.
    pub fn monitors_healthy(&self) -> bool {
        self.monitors.iter().all(|(n, d)| {
            self.heartbeat_held(n) && d.metric("oracle_watchdog_session_active") == Some(1.0)
        })
    }

    /// Writes an agent config and returns its path.
    pub fn agent_config(&self, c: &AgentCfg) -> Result<PathBuf, String> {
        let mut nodes = String::new();
        for (name, id) in &c.nodes {
            nodes.push_str(&format!(
                "  - name: {name}\n    instance_id: \"{id}\"\n    compartment_id: \"ocid1.compartment.oc1..c\"\n"
            ));
        }
        let y = format!(
            "timeout: {}\ncheck_interval: 5s\nconsul_address: \"{}\"\n\
             oci:\n  config_path: \"{}\"\n  endpoint: \"{}\"\n\
             agent:\n  poll_interval: 1s\n  phase_timeout: {}\n  leader_ttl: 10s\n  shutdown_grace: 3s\n\
             nodes:\n{nodes}{}",
            c.timeout,
            self.consul.http_addr(),
            self.dir.join("oci-config").display(),
            self.oci.base_url(),
            c.phase_timeout,
            c.extra,
        );
        write_file(
            &self.dir,
            &format!("agent-{:08x}.yaml", fastrand::u32(..)),
            &y,
        )
    }

    /// Starts an agent with `config`, extra args and extra environment.
    pub fn agent_with(
        &self,
        label: &str,
        config: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Daemon, String> {
        let mut all = strings(&[
            "-mode",
            "agent",
            "-config",
            &config.display().to_string(),
            "-log-level",
            "debug",
        ]);
        all.extend(args.iter().map(|a| a.to_string()));
        let mut e = self.env();
        e.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Daemon::spawn(
            &self.bin,
            &self.book,
            Spawn {
                label,
                args: all,
                env: e,
                metrics_port: free_port()?,
            },
        )
    }

    /// Starts an agent and waits until it leads.
    pub fn leading_agent(&self, config: &Path) -> Result<Daemon, String> {
        let a = self.agent_with("agent", config, &[], &[])?;
        ensure!(
            wait_until(15 * SEC, || is_leader(&a)),
            "the agent never became leader"
        );
        Ok(a)
    }

    /// Waits for the agent's one-shot startup probe (a GET of the first
    /// node's instance) so that faults injected afterwards hit the cycle.
    pub fn wait_probe(&self) -> Outcome {
        ensure!(
            wait_until(10 * SEC, || self
                .oci
                .requests()
                .iter()
                .any(|r| r.method == "GET")),
            "the agent's startup OCI probe never came"
        );
        Ok(())
    }

    /// State-changing requests OCI received, as `(path, action)`.
    pub fn posts(&self) -> Vec<(String, String)> {
        self.oci
            .requests()
            .into_iter()
            .filter(|r| r.method == "POST")
            .map(|r| (r.path.clone(), r.action.clone().unwrap_or_default()))
            .collect()
    }

    /// `Err` when OCI received any state-changing request.
    pub fn no_posts(&self) -> Outcome {
        let p = self.posts();
        ensure!(p.is_empty(), "false restart: OCI received {p:?}");
        Ok(())
    }

    /// Actions OCI performed on `instance`.
    pub fn actions(&self, instance: &str) -> Vec<String> {
        self.oci.actions_performed(instance)
    }

    /// `Err` unless exactly one STOP then one START were performed on `instance`.
    pub fn one_stop_one_start(&self, instance: &str) -> Outcome {
        let a = self.actions(instance);
        ensure!(
            a == ["STOP", "START"],
            "expected exactly STOP then START on {instance}, OCI performed {a:?}"
        );
        Ok(())
    }

    /// Node names with a cycle record still in KV.
    pub fn leftover_cycles(&self) -> Vec<String> {
        self.consul
            .kv_list(RESTARTS)
            .into_iter()
            .map(|k| k.key)
            .collect()
    }

    /// The stored phase of `node`'s cycle, if one is stored.
    pub fn stored_phase(&self, node: &str) -> Option<String> {
        let kv = self.consul.kv_get(&format!("{RESTARTS}{node}"))?;
        let v: serde_json::Value = serde_json::from_slice(&kv.value).ok()?;
        Some(v["phase"].as_str()?.to_string())
    }

    /// Kills `node`'s monitor, waits until a START was performed on
    /// `instance`, then brings the monitor back (the instance "booted").
    pub fn outage_until_started(
        &mut self,
        node: &str,
        instance: &str,
        within: Duration,
    ) -> Outcome {
        self.kill_monitor(node)?;
        ensure!(
            wait_until(within, || self
                .actions(instance)
                .iter()
                .any(|a| a == "START")),
            "no START on {instance} within {within:?}; OCI performed {:?}",
            self.actions(instance)
        );
        self.start_monitor(node)
    }

    /// The end-of-scenario invariants: every daemon alive, every monitor
    /// heartbeating, no cycle record left in KV.
    pub fn finish(&mut self, agents: &mut [&mut Daemon]) -> Outcome {
        for (n, d) in self.monitors.iter_mut() {
            d.ensure_alive(&format!("monitor {n}"))?;
        }
        for a in agents.iter_mut() {
            a.ensure_alive("agent")?;
        }
        ensure!(
            wait_until(20 * SEC, || self.monitors_healthy()),
            "not every monitor is heartbeating at the end"
        );
        ensure!(
            wait_until(10 * SEC, || self.leftover_cycles().is_empty()),
            "half-finished cycle left in KV: {:?}",
            self.leftover_cycles()
        );
        Ok(())
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.monitors.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether the agent says it holds the leader lock.
pub fn is_leader(agent: &Daemon) -> bool {
    agent.metric("oracle_watchdog_agent_leader") == Some(1.0)
}

/// `name{node="node"}`.
pub fn per_node(name: &str, node: &str) -> String {
    format!("{name}{{node=\"{node}\"}}")
}

/// The repository's fixture API key (PKCS#8).
pub fn fixture_key() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/oci/keys/pkcs8.pem")
}

/// `&[&str]` to owned strings.
pub fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}
