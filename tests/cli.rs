//! The binary's command line: help, version, usage errors and config errors,
//! with the exit codes users script against (0 ok, 2 usage/config).

mod common;

use std::process::{Command, Output};

use common::{binary, temp_dir, write_file};

fn run(args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .env_remove("CONSUL_HTTP_ADDR")
        .output()
        .expect("run binary")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn help_and_version_exit_zero() {
    for flag in ["-h", "--help", "-help"] {
        let o = run(&[flag]);
        assert_eq!(o.status.code(), Some(0), "{flag}");
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            out.contains("-mode MODE") && out.contains("CONSUL_HTTP_TOKEN_FILE"),
            "{out}"
        );
    }
    for flag in ["-V", "--version", "-version"] {
        let o = run(&[flag]);
        assert_eq!(o.status.code(), Some(0));
        assert!(
            String::from_utf8_lossy(&o.stdout)
                .starts_with(&format!("oracle-watchdog {}", env!("CARGO_PKG_VERSION")))
        );
    }
}

#[test]
fn usage_errors_exit_two_with_short_usage() {
    for args in [
        &[][..],
        &["-mode", "sideways"][..],
        &["monitor", "--frobnicate"][..],
        &["-mode"][..],
    ] {
        let o = run(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let e = stderr(&o);
        assert!(e.contains("usage: oracle-watchdog"), "{args:?}: {e}");
        assert!(e.lines().count() <= 10, "usage should be short: {e}");
    }
}

#[test]
fn agent_requires_its_config_file() {
    let dir = temp_dir("cli-agent");
    let missing = dir.join("nope.yaml");
    let o = run(&["-mode", "agent", "-config", missing.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(e.starts_with("config error: "), "{e}");
    assert!(e.contains("nope.yaml"), "{e}");
    assert_eq!(e.trim_end().lines().count(), 1, "one line: {e}");
}

#[test]
fn config_errors_name_file_field_and_problem() {
    let dir = temp_dir("cli-config");
    let bad = write_file(&dir, "bad.yaml", "monitor:\n  renew_interval: soon\n");
    let o = run(&[
        "-mode",
        "monitor",
        "-node",
        "n1",
        "-config",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(e.starts_with("config error: "), "{e}");
    assert!(
        e.contains("bad.yaml") && e.contains("monitor.renew_interval"),
        "{e}"
    );
    assert_eq!(e.trim_end().lines().count(), 1, "{e}");

    let typo = write_file(&dir, "typo.yaml", "chek_interval: 30s\n");
    let e = stderr(&run(&[
        "-mode",
        "monitor",
        "-node",
        "n1",
        "-config",
        typo.to_str().unwrap(),
    ]));
    assert!(
        e.contains("chek_interval") && e.contains("check_interval"),
        "{e}"
    );
}

#[test]
fn bad_consul_address_is_a_config_error() {
    let o = Command::new(binary())
        .args(["-mode", "monitor", "-node", "n1", "-config", "/dev/null"])
        .env("CONSUL_HTTP_ADDR", "ftp://nope")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("CONSUL_HTTP_ADDR"), "{}", stderr(&o));
}
