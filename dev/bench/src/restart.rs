//! Figures: one restart cycle by `oracle-watchdog restart NODE`, and the same by the official OCI CLI.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use watchdog_standins::consul::ConsulStandin;
use watchdog_standins::oci::LifecycleState;

use crate::report::{Figure, Verdict, fmt_num, percentile};
use crate::world::{self, OciSide, Paths};

/// STOPPING -> STOPPED and STARTING -> RUNNING in the stand-in.
const TRANSITION: Duration = Duration::from_millis(2500);

/// What `/usr/bin/time -v` and the stand-in say about one cycle.
#[derive(Debug, Clone, Default)]
struct Cycle {
    wall_s: f64,
    cpu_s: f64,
    peak_rss_kib: u64,
    gets: usize,
    posts: usize,
}

/// Measures `reps` cycles of each tool against one OCI stand-in.
pub fn restart(paths: &Paths, oci_cli: &Path, reps: usize) -> Vec<Figure> {
    let ours_title = "Restart cycle: `oracle-watchdog restart NODE`";
    let cli_title = "Side by side: official OCI CLI doing the same cycle";
    let how_ours = format!(
        "OCI stand-in with STOPPING and STARTING lasting {} s each (so {} s of the cycle is the \
         stand-in's own transition time); {reps} cycles, one after the other, of \
         `/usr/bin/time -v oracle-watchdog restart rs-ours -config agent.yaml` (dist/ x86_64 musl \
         binary; agent.poll_interval 1s, the smallest allowed, so state reads happen once a second; \
         Consul stand-in for the cycle record). OCI requests counted from the stand-in's request log \
         (every one signature-verified); CPU = user+system, peak RSS = \"Maximum resident set size\" \
         from GNU time; wall time measured around the process.",
        fmt_num(TRANSITION.as_secs_f64()),
        fmt_num(2.0 * TRANSITION.as_secs_f64()),
    );
    let how_cli = format!(
        "The official OCI CLI (PyPI `oci-cli`, in .venv: `{}`) against the same stand-in and the \
         same fixture key, doing STOP-wait-START-wait on another instance: \
         `oci --config-file oci-config --endpoint http://127.0.0.1:PORT compute instance action \
         --instance-id ID --action STOP --wait-for-state STOPPED --wait-interval-seconds 1`, then \
         the same with `--action START --wait-for-state RUNNING`; each under `/usr/bin/time -v`. \
         Per cycle: wall and CPU summed over the two processes, peak RSS the larger of the two. \
         {reps} cycles. Ratios are CLI / oracle-watchdog, medians.",
        oci_cli.display()
    );
    let budget = "none stated (reported)";
    let run = || -> Result<(Vec<Cycle>, Vec<Cycle>), String> {
        let consul = ConsulStandin::start().map_err(|e| format!("Consul stand-in: {e}"))?;
        let oci = OciSide::start(paths, TRANSITION)?;
        let ours_node = "rs-ours".to_string();
        let cli_node = "rs-cli".to_string();
        oci.standin
            .add_instance(&world::instance_of(&ours_node), LifecycleState::Running);
        oci.standin
            .add_instance(&world::instance_of(&cli_node), LifecycleState::Running);
        let cfg = world::agent_config(
            paths,
            "restart.yaml",
            &consul,
            &oci,
            "30s",
            std::slice::from_ref(&ours_node),
            "agent:\n  poll_interval: 1s\n",
            false,
        )?;
        let mut ours = Vec::new();
        for i in 0..reps {
            let before = oci.standin.requests().len();
            let mut cmd = Command::new(&paths.binary);
            cmd.arg("restart").arg(&ours_node).arg("-config").arg(&cfg);
            let mut c = timed(paths, cmd, &format!("restart-ours-{i}"))?;
            count(&oci, before, &mut c);
            ours.push(c);
        }
        let mut cli = Vec::new();
        if oci_cli.exists() {
            for i in 0..reps {
                let before = oci.standin.requests().len();
                let mut total = Cycle::default();
                for (action, state) in [("STOP", "STOPPED"), ("START", "RUNNING")] {
                    let mut cmd = Command::new(oci_cli);
                    cmd.arg("--config-file")
                        .arg(&oci.config)
                        .arg("--endpoint")
                        .arg(oci.standin.base_url())
                        .args(["compute", "instance", "action", "--instance-id"])
                        .arg(world::instance_of(&cli_node))
                        .args([
                            "--action",
                            action,
                            "--wait-for-state",
                            state,
                            "--wait-interval-seconds",
                            "1",
                        ])
                        .env("OCI_CLI_SUPPRESS_FILE_PERMISSIONS_WARNING", "True")
                        .env("HOME", &paths.work);
                    let c = timed(paths, cmd, &format!("restart-cli-{i}-{action}"))?;
                    total.wall_s += c.wall_s;
                    total.cpu_s += c.cpu_s;
                    total.peak_rss_kib = total.peak_rss_kib.max(c.peak_rss_kib);
                }
                count(&oci, before, &mut total);
                cli.push(total);
            }
        }
        Ok((ours, cli))
    };
    let (ours, cli) = match run() {
        Ok(x) => x,
        Err(e) => {
            return vec![
                Figure::failed(ours_title, &how_ours, budget, e.clone()),
                Figure::failed(cli_title, &how_cli, budget, e),
            ];
        }
    };
    let med =
        |v: &[Cycle], f: fn(&Cycle) -> f64| percentile(&v.iter().map(f).collect::<Vec<_>>(), 50.0);
    let transitions = 2.0 * TRANSITION.as_secs_f64();
    let ours_fig = Figure {
        title: ours_title.into(),
        how: how_ours,
        budget: budget.into(),
        result: format!(
            "{}\n\nMedian: **{} OCI requests per cycle** ({} GET + {} POST), wall **{} s**, of which \
             **{} s beyond the stand-in's {} s of transitions** (state reads come once per \
             poll_interval, so up to 1 s per phase is waiting for the next read), CPU {} s, peak RSS {} MiB.",
            table(&ours),
            fmt_num(med(&ours, |c| (c.gets + c.posts) as f64)),
            fmt_num(med(&ours, |c| c.gets as f64)),
            fmt_num(med(&ours, |c| c.posts as f64)),
            fmt_num(med(&ours, |c| c.wall_s)),
            fmt_num(med(&ours, |c| c.wall_s) - transitions),
            fmt_num(transitions),
            fmt_num(med(&ours, |c| c.cpu_s)),
            fmt_num(med(&ours, |c| c.peak_rss_kib as f64 / 1024.0)),
        ),
        verdict: Verdict::Info,
    };
    let cli_fig = if cli.is_empty() {
        Figure::failed(
            cli_title,
            &how_cli,
            budget,
            format!("{} not found: `make bench` installs it", oci_cli.display()),
        )
    } else {
        let ratio = |f: fn(&Cycle) -> f64| {
            let (a, b) = (med(&cli, f), med(&ours, f));
            if b > 0.0 {
                format!("{}x", fmt_num(a / b))
            } else {
                "n/a (0 for oracle-watchdog)".into()
            }
        };
        Figure {
            title: cli_title.into(),
            how: how_cli,
            budget: budget.into(),
            result: format!(
                "{}\n\n| Median per cycle | oracle-watchdog | OCI CLI | CLI / oracle-watchdog |\n|---|---:|---:|---:|\n\
                 | Peak RSS (MiB) | {} | {} | {} |\n| CPU (s) | {} | {} | {} |\n| Wall (s) | {} | {} | {} |\n\
                 | Wall beyond transitions (s) | {} | {} | {} |\n| OCI requests | {} | {} | {} |",
                table(&cli),
                fmt_num(med(&ours, |c| c.peak_rss_kib as f64 / 1024.0)),
                fmt_num(med(&cli, |c| c.peak_rss_kib as f64 / 1024.0)),
                ratio(|c| c.peak_rss_kib as f64),
                fmt_num(med(&ours, |c| c.cpu_s)),
                fmt_num(med(&cli, |c| c.cpu_s)),
                ratio(|c| c.cpu_s),
                fmt_num(med(&ours, |c| c.wall_s)),
                fmt_num(med(&cli, |c| c.wall_s)),
                ratio(|c| c.wall_s),
                fmt_num(med(&ours, |c| c.wall_s) - transitions),
                fmt_num(med(&cli, |c| c.wall_s) - transitions),
                {
                    let (a, b) = (
                        med(&cli, |c| c.wall_s) - transitions,
                        med(&ours, |c| c.wall_s) - transitions,
                    );
                    if b > 0.0 {
                        format!("{}x", fmt_num(a / b))
                    } else {
                        "n/a".into()
                    }
                },
                fmt_num(med(&ours, |c| (c.gets + c.posts) as f64)),
                fmt_num(med(&cli, |c| (c.gets + c.posts) as f64)),
                ratio(|c| (c.gets + c.posts) as f64),
            ),
            verdict: Verdict::Info,
        }
    };
    vec![ours_fig, cli_fig]
}

fn table(cycles: &[Cycle]) -> String {
    let mut t = String::from(
        "| Cycle | Wall (s) | CPU (s) | Peak RSS (MiB) | OCI GET | OCI POST |\n|---:|---:|---:|---:|---:|---:|\n",
    );
    for (i, c) in cycles.iter().enumerate() {
        t.push_str(&format!(
            "| {} | {:.2} | {:.2} | {:.1} | {} | {} |\n",
            i + 1,
            c.wall_s,
            c.cpu_s,
            c.peak_rss_kib as f64 / 1024.0,
            c.gets,
            c.posts
        ));
    }
    t
}

fn count(oci: &OciSide, before: usize, c: &mut Cycle) {
    let reqs = oci.standin.requests();
    let new = reqs.get(before..).unwrap_or(&[]);
    c.gets = new.iter().filter(|r| r.method == "GET").count();
    c.posts = new.iter().filter(|r| r.method == "POST").count();
}

/// Runs `cmd` under `/usr/bin/time -v -o FILE`; fails unless it exits 0.
fn timed(paths: &Paths, cmd: Command, name: &str) -> Result<Cycle, String> {
    let time_out: PathBuf = paths.work.join(format!("{name}.time"));
    let log =
        fs::File::create(paths.work.join(format!("{name}.log"))).map_err(|e| e.to_string())?;
    let log2 = log.try_clone().map_err(|e| e.to_string())?;
    let mut wrapped = Command::new("/usr/bin/time");
    wrapped
        .arg("-v")
        .arg("-o")
        .arg(&time_out)
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => wrapped.env(k, v),
            None => wrapped.env_remove(k),
        };
    }
    let t0 = Instant::now();
    let status = wrapped
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .status()
        .map_err(|e| format!("/usr/bin/time: {e} (Debian package `time`)"))?;
    let wall_s = t0.elapsed().as_secs_f64();
    if !status.success() {
        return Err(format!(
            "{name} failed ({status}); see {}",
            paths.work.join(format!("{name}.log")).display()
        ));
    }
    let text = fs::read_to_string(&time_out).map_err(|e| e.to_string())?;
    let field = |label: &str| -> f64 {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(f64::NAN)
    };
    Ok(Cycle {
        wall_s,
        cpu_s: field("User time (seconds):") + field("System time (seconds):"),
        peak_rss_kib: field("Maximum resident set size (kbytes):") as u64,
        gets: 0,
        posts: 0,
    })
}
