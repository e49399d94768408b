//! The process's own surroundings: a metrics port someone else holds, a
//! config file it cannot read.

use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::Env;
use crate::ensure;
use crate::harness::{Context, Daemon, Outcome, SEC, Spawn, temp_dir, wait_until, write_file};
use crate::world::{AgentCfg, World, WorldOpts, strings};

/// Another process holds the metrics ports of a monitor and an agent: both
/// do their real job anyway, say so in the log, and serve metrics once the
/// ports are free.
pub fn metrics_port_taken(env: &Env) -> Outcome {
    let mut w = World::new(&env.bin, &env.book, WorldOpts::default())?;
    w.start_monitor("n2")?;
    let held_m = std::net::TcpListener::bind("127.0.0.1:0").ctx("bind")?;
    let held_a = std::net::TcpListener::bind("127.0.0.1:0").ctx("bind")?;
    let port_m = held_m.local_addr().ctx("addr")?.port();
    let port_a = held_a.local_addr().ctx("addr")?.port();
    let mut monitor = Daemon::spawn(
        &w.bin,
        &w.book,
        Spawn {
            label: "monitor n1 (port taken)",
            args: strings(&[
                "-mode",
                "monitor",
                "-node",
                "n1",
                "-config",
                &w.dir.join("monitor.yaml").display().to_string(),
            ]),
            env: w.env(),
            metrics_port: port_m,
        },
    )?;
    let cfg = w.agent_config(&AgentCfg::default())?;
    let mut agent = Daemon::spawn(
        &w.bin,
        &w.book,
        Spawn {
            label: "agent (port taken)",
            args: strings(&["-mode", "agent", "-config", &cfg.display().to_string()]),
            env: w.env(),
            metrics_port: port_a,
        },
    )?;
    ensure!(
        wait_until(10 * SEC, || w.heartbeat_held("n1")),
        "monitor does not heartbeat while its metrics port is taken"
    );
    ensure!(
        wait_until(15 * SEC, || w
            .consul
            .kv_get("oracle-watchdog/agent/leader")
            .is_some_and(|k| k.session.is_some())),
        "agent does not lead while its metrics port is taken"
    );
    ensure!(
        monitor.logged("cannot bind metrics port") && agent.logged("cannot bind metrics port"),
        "the busy port is not logged"
    );
    std::thread::sleep(2 * SEC);
    monitor.ensure_alive("monitor")?;
    agent.ensure_alive("agent")?;
    drop(held_m);
    drop(held_a);
    ensure!(
        wait_until(20 * SEC, || monitor
            .metric("oracle_watchdog_session_active")
            == Some(1.0)
            && agent.metric("oracle_watchdog_agent_leader") == Some(1.0)),
        "metrics not served after the ports were freed"
    );
    w.no_posts()?;
    w.monitors.push(("n1".into(), monitor));
    w.finish(&mut [&mut agent])
}

/// Runs the binary to completion (at most 10 s) and returns exit code and stderr.
fn run_to_exit(
    bin: &Path,
    args: &[&str],
    as_nobody: bool,
) -> Result<(Option<i32>, String), String> {
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .arg("-metrics-address")
        .arg("127.0.0.1:0")
        .env("CONSUL_HTTP_ADDR", "127.0.0.1:1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if as_nobody {
        cmd.uid(65534).gid(65534);
    }
    let mut child = cmd.spawn().ctx("spawn")?;
    let deadline = Instant::now() + 10 * SEC;
    loop {
        if let Some(status) = child.try_wait().ctx("wait")? {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                std::io::Read::read_to_string(&mut e, &mut err).ctx("read stderr")?;
            }
            return Ok((status.code(), err));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{args:?} still running after 10 s"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().nth(1))
        == Some("0")
}

/// A config file that cannot be read (no permission; a directory) makes
/// either mode exit 2 with one line naming the file.
pub fn config_unreadable(env: &Env) -> Outcome {
    let dir = temp_dir("unreadable")?;
    // Root reads anything: run as nobody then, which needs a path it may traverse.
    let root = is_root();
    if root {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).ctx("chmod dir")?;
    }
    let locked = write_file(&dir, "locked.yaml", "timeout: 5m\n")?;
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).ctx("chmod 000")?;
    let sub = dir.join("a-directory.yaml");
    std::fs::create_dir_all(&sub).ctx("mkdir")?;
    let cases = [
        (locked.as_path(), root, "agent"),
        (locked.as_path(), root, "monitor"),
        (sub.as_path(), false, "agent"),
        (sub.as_path(), false, "monitor"),
    ];
    let result = cases.iter().try_for_each(|&(path, nobody, mode)| {
        let p = path.display().to_string();
        let (code, err) = run_to_exit(
            &env.bin,
            &["-mode", mode, "-node", "n1", "-config", &p],
            nobody,
        )?;
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        ensure!(
            code == Some(2),
            "{mode} with {p}: exit {code:?}, expected 2; stderr: {err}"
        );
        ensure!(
            lines.len() == 1 && lines[0].contains(&p),
            "{mode} with {p}: expected one line naming the file, got {lines:?}"
        );
        Ok(())
    });
    let _ = std::fs::remove_dir_all(&dir);
    result
}
