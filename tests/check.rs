//! `oracle-watchdog check` end to end: the real binary against the Consul and
//! OCI stand-ins, with the fixture keys.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{binary, temp_dir, write_file};
use oracle_watchdog::oci::ApiKey;
use watchdog_standins::consul::{ConsulStandin, Fault};
use watchdog_standins::oci::{LifecycleState, OciStandin};

const TENANCY: &str = "ocid1.tenancy.oc1..checktest";
const USER: &str = "ocid1.user.oc1..checktest";
const PASS: &str = "correct horse battery staple";
const N1: &str = "ocid1.instance.oc1.iad.checkone";
const N2: &str = "ocid1.instance.oc1.phx.checktwo";

fn key_path(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/oci/keys")
        .join(file)
}

struct Setup {
    consul: ConsulStandin,
    oci: OciStandin,
    dir: PathBuf,
}

impl Setup {
    fn new(key_file: &str, pass: Option<&str>) -> Setup {
        let consul = ConsulStandin::start().unwrap();
        let oci = OciStandin::start().unwrap();
        let key = ApiKey::load(&key_path(key_file), pass).unwrap();
        oci.register_key(
            &format!("{TENANCY}/{USER}/{}", key.fingerprint()),
            &key.public_key_pem(),
        )
        .unwrap();
        oci.add_instance(N1, LifecycleState::Running);
        oci.add_instance(N2, LifecycleState::Stopped);
        let dir = temp_dir("check");
        let s = Setup { consul, oci, dir };
        s.write_oci_config(key_file, pass, key.fingerprint(), "DEFAULT");
        s
    }

    fn write_oci_config(
        &self,
        key_file: &str,
        pass: Option<&str>,
        fingerprint: &str,
        section: &str,
    ) {
        let mut ini = format!(
            "[{section}]\nuser={USER}\nfingerprint={fingerprint}\ntenancy={TENANCY}\nregion=us-ashburn-1\nkey_file={}\n",
            key_path(key_file).display()
        );
        if let Some(p) = pass {
            ini.push_str(&format!("pass_phrase={p}\n"));
        }
        write_file(&self.dir, "oci-config", &ini);
    }

    fn config(&self, nodes: &[(&str, &str)]) -> PathBuf {
        let mut y = format!(
            "consul_address: \"{}\"\noci:\n  config_path: \"{}\"\n  profile: DEFAULT\n  endpoint: \"{}\"\n",
            self.consul.http_addr(),
            self.dir.join("oci-config").display(),
            self.oci.base_url()
        );
        if !nodes.is_empty() {
            y.push_str("nodes:\n");
            for (name, id) in nodes {
                y.push_str(&format!("  - name: {name}\n    instance_id: \"{id}\"\n    compartment_id: \"ocid1.compartment.oc1..c\"\n"));
            }
        }
        write_file(&self.dir, "config.yaml", &y)
    }
}

fn check(config: &Path) -> (Option<i32>, String) {
    let o: Output = Command::new(binary())
        .args(["check", "-config", config.to_str().unwrap()])
        .env_remove("CONSUL_HTTP_TOKEN")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.code(), text)
}

#[test]
fn healthy_setup_prints_every_node_state_and_exits_zero() {
    for (key, pass) in [
        ("pkcs8.pem", None),
        ("pkcs1.pem", None),
        ("pkcs8_encrypted.pem", Some(PASS)),
    ] {
        let s = Setup::new(key, pass);
        let (code, out) = check(&s.config(&[("node1", N1), ("node2", N2)]));
        assert_eq!(code, Some(0), "{key}: {out}");
        assert!(
            out.contains("consul  http://") && out.contains("ok: leader"),
            "{out}"
        );
        let row1 = out.lines().find(|l| l.starts_with("node1")).unwrap();
        assert!(
            row1.contains(N1) && row1.contains("us-ashburn-1") && row1.ends_with("RUNNING"),
            "{row1}"
        );
        let row2 = out.lines().find(|l| l.starts_with("node2")).unwrap();
        assert!(
            row2.contains("us-phoenix-1") && row2.ends_with("STOPPED"),
            "{row2}"
        );
        assert!(!out.contains(PASS), "pass phrase leaked: {out}");
        // check only reads: no state-changing request reached OCI.
        assert!(s.oci.requests().iter().all(|r| r.method == "GET"));
    }
}

#[test]
fn wrong_fingerprint_is_a_config_error_naming_both() {
    let s = Setup::new("pkcs8.pem", None);
    s.write_oci_config(
        "pkcs8.pem",
        None,
        "00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff",
        "DEFAULT",
    );
    let (code, out) = check(&s.config(&[("node1", N1)]));
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("fingerprint") && out.contains("00:11:22:33"),
        "{out}"
    );
}

#[test]
fn missing_profile_and_wrong_pass_phrase_exit_two() {
    let s = Setup::new("pkcs8.pem", None);
    s.write_oci_config("pkcs8.pem", None, "aa", "OTHER");
    let (code, out) = check(&s.config(&[("node1", N1)]));
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("DEFAULT"), "{out}");

    let s = Setup::new("pkcs8_encrypted.pem", Some(PASS));
    let key = ApiKey::load(&key_path("pkcs8_encrypted.pem"), Some(PASS)).unwrap();
    s.write_oci_config(
        "pkcs8_encrypted.pem",
        Some("not the phrase"),
        key.fingerprint(),
        "DEFAULT",
    );
    let (code, out) = check(&s.config(&[("node1", N1)]));
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("pass_phrase"), "{out}");
    assert!(!out.contains("not the phrase"), "pass phrase leaked: {out}");
}

#[test]
fn unknown_instance_and_dead_consul_exit_one_with_reasons() {
    let s = Setup::new("pkcs8.pem", None);
    let config = s.config(&[("node1", N1), ("ghost", "ocid1.instance.oc1.iad.ghost")]);
    let (code, out) = check(&config);
    assert_eq!(code, Some(1), "{out}");
    let ghost = out.lines().find(|l| l.starts_with("ghost")).unwrap();
    assert!(ghost.contains("ERROR"), "{ghost}");
    s.consul.set_fault(Fault::NoLeader).unwrap();
    let (code, out) = check(&s.config(&[("node1", N1)]));
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("consul") && out.contains("FAILED"), "{out}");
}

#[test]
fn monitor_only_config_skips_oci() {
    let s = Setup::new("pkcs8.pem", None);
    let (code, out) = check(&s.config(&[]));
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("OCI not checked"), "{out}");
}
