//! A test world for agent-side tests: Consul and OCI stand-ins, an OCI
//! profile with the fixture key, real monitor processes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Daemon, temp_dir, write_file};
use oracle_watchdog::oci::ApiKey;
use watchdog_standins::consul::{ConsulOptions, ConsulStandin};
use watchdog_standins::oci::{LifecycleState, OciOptions, OciStandin};

pub const TENANCY: &str = "ocid1.tenancy.oc1..agenttest";
pub const USER: &str = "ocid1.user.oc1..agenttest";
pub const I1: &str = "ocid1.instance.oc1.iad.agentone";
pub const I2: &str = "ocid1.instance.oc1.iad.agenttwo";
pub const SEC: Duration = Duration::from_secs(1);

pub struct World {
    pub consul: ConsulStandin,
    pub oci: OciStandin,
    pub dir: PathBuf,
    pub monitors: Vec<(String, Daemon)>,
}

impl World {
    pub fn new() -> World {
        let consul = ConsulStandin::start_with(ConsulOptions {
            expiry_factor: 0.5,
            ..ConsulOptions::default()
        })
        .unwrap();
        let oci = OciStandin::start_with(OciOptions {
            transition_time: Duration::from_millis(300),
            ..OciOptions::default()
        })
        .unwrap();
        let key_file =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/oci/keys/pkcs8.pem");
        let key = ApiKey::load(&key_file, None).unwrap();
        oci.register_key(
            &format!("{TENANCY}/{USER}/{}", key.fingerprint()),
            &key.public_key_pem(),
        )
        .unwrap();
        oci.add_instance(I1, LifecycleState::Running);
        oci.add_instance(I2, LifecycleState::Running);
        let dir = temp_dir("agent");
        write_file(
            &dir,
            "oci-config",
            &format!(
                "[DEFAULT]\nuser={USER}\nfingerprint={}\ntenancy={TENANCY}\nregion=us-ashburn-1\nkey_file={}\n",
                key.fingerprint(),
                key_file.display()
            ),
        );
        write_file(
            &dir,
            "monitor.yaml",
            "monitor:\n  session_ttl: 10s\n  renew_interval: 1s\n",
        );
        World {
            consul,
            oci,
            dir,
            monitors: Vec::new(),
        }
    }

    pub fn agent_config(&self, extra: &str) -> PathBuf {
        let y = format!(
            "timeout: 2s\ncheck_interval: 5s\nconsul_address: \"{}\"\n\
             oci:\n  config_path: \"{}\"\n  endpoint: \"{}\"\n\
             agent:\n  poll_interval: 1s\n  phase_timeout: 20s\n  leader_ttl: 10s\n  shutdown_grace: 3s\n\
             nodes:\n  - name: n1\n    instance_id: \"{I1}\"\n    compartment_id: \"ocid1.compartment.oc1..c\"\n\
             \x20 - name: n2\n    instance_id: \"{I2}\"\n    compartment_id: \"ocid1.compartment.oc1..c\"\n{extra}",
            self.consul.http_addr(),
            self.dir.join("oci-config").display(),
            self.oci.base_url(),
        );
        write_file(&self.dir, &format!("agent-{}.yaml", fastrand::u32(..)), &y)
    }

    pub fn start_monitor(&mut self, node: &str) {
        let cfg = self.dir.join("monitor.yaml");
        let addr = self.consul.http_addr();
        let d = Daemon::spawn(
            &[
                "-mode",
                "monitor",
                "-node",
                node,
                "-config",
                cfg.to_str().unwrap(),
            ],
            &[("CONSUL_HTTP_ADDR", addr.as_str())],
        );
        let key = format!("oracle-watchdog/nodes/{node}");
        assert!(
            self.consul
                .wait_for_kv(&key, 5 * SEC, |kv| kv.is_some_and(|k| k.session.is_some()))
        );
        self.monitors.push((node.to_string(), d));
    }

    /// SIGKILL: the session is not destroyed, Consul expires it.
    pub fn kill_monitor(&mut self, node: &str) {
        let i = self.monitors.iter().position(|(n, _)| n == node).unwrap();
        let (_, d) = self.monitors.remove(i);
        d.signal("KILL");
    }

    pub fn agent(&self, config: &Path, extra_args: &[&str]) -> Daemon {
        let mut args = vec![
            "-mode",
            "agent",
            "-config",
            config.to_str().unwrap(),
            "-log-level",
            "debug",
        ];
        args.extend_from_slice(extra_args);
        Daemon::spawn(&args, &[])
    }

    pub fn posts(&self) -> Vec<(String, String)> {
        self.oci
            .requests()
            .into_iter()
            .filter(|r| r.method == "POST")
            .map(|r| (r.path.clone(), r.action.clone().unwrap_or_default()))
            .collect()
    }
}
