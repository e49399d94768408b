//! `watchdog-bench`: measures oracle-watchdog against the issue-10 budgets and writes bench/REPORT.md.
//!
//! ```text
//! watchdog-bench --x86 dist/...-x86_64 --aarch64 dist/...-aarch64 [--oci-cli .venv/bin/oci]
//!                [--out bench/REPORT.md] [--quick] [--only size,idle,start,detect,scale,restart]
//! ```
//! Runs every measurement against the dev stand-ins on loopback, prints the
//! markdown report and writes it to `--out`. `--quick` shortens windows and
//! repetitions for trying the harness out; its numbers are not the report's.
//! `--only` runs a subset (the report then holds only those figures).
//! Never part of `make test`: timings are reported, not asserted.

mod idle;
mod latency;
mod net;
mod report;
mod restart;
mod scale;
mod size;
mod sys;
mod world;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use report::{Figure, Header, Verdict};

/// Command-line settings.
struct Args {
    x86: PathBuf,
    aarch64: PathBuf,
    oci_cli: PathBuf,
    out: PathBuf,
    quick: bool,
    only: Option<String>,
}

fn parse_args(root: &Path) -> Result<Args, String> {
    let mut args = Args {
        x86: PathBuf::new(),
        aarch64: PathBuf::new(),
        oci_cli: root.join(".venv/bin/oci"),
        out: root.join("bench/REPORT.md"),
        quick: false,
        only: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .map(PathBuf::from)
                .ok_or(format!("{a} needs a value"))
        };
        match a.as_str() {
            "--x86" => args.x86 = value()?,
            "--aarch64" => args.aarch64 = value()?,
            "--oci-cli" => args.oci_cli = value()?,
            "--out" => args.out = value()?,
            "--quick" => args.quick = true,
            "--only" => args.only = Some(value()?.to_string_lossy().into_owned()),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if args.x86.as_os_str().is_empty() || args.aarch64.as_os_str().is_empty() {
        return Err(
            "--x86 and --aarch64 are required (the binaries `make static` puts in dist/)".into(),
        );
    }
    Ok(args)
}

fn main() -> ExitCode {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let root = root.canonicalize().unwrap_or(root);
    let args = match parse_args(&root) {
        Ok(a) => a,
        Err(e) => {
            eprintln!(
                "{e}\nusage: watchdog-bench --x86 BIN --aarch64 BIN [--oci-cli PATH] [--out FILE] [--quick] [--only size,idle,start,detect,scale,restart]"
            );
            return ExitCode::from(2);
        }
    };
    let work = std::env::temp_dir().join(format!("watchdog-bench-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&work) {
        eprintln!("cannot create {}: {e}", work.display());
        return ExitCode::FAILURE;
    }
    let binary = args.x86.canonicalize().unwrap_or(args.x86.clone());
    let paths = world::Paths {
        root: root.clone(),
        binary: binary.clone(),
        work: work.clone(),
    };
    let machine = sys::machine();
    let clk_tck = sys::clk_tck();
    let started = Instant::now();
    let started_at = cmd_out("date", &["-u", "+%Y-%m-%d %H:%M:%S UTC"]);
    eprintln!("watchdog-bench: load average at start {}", machine.loadavg);

    let (idle_s, start_runs, det_runs, poll_runs, scale_s, reps) = if args.quick {
        (10, 5, 5, 3, 5, 1)
    } else {
        (60, 25, 20, 10, 30, 5)
    };
    let mut figures: Vec<Figure> = Vec::new();
    let step = |name: &str| {
        eprintln!(
            "watchdog-bench: [{:>4.0} s] {name}",
            started.elapsed().as_secs_f64()
        )
    };

    let want = |part: &str| {
        args.only
            .as_ref()
            .is_none_or(|o| o.split(',').any(|p| p == part))
    };
    if want("size") {
        step("binary sizes");
        figures.push(size::sizes(&args.x86, &args.aarch64));
    }
    if want("idle") {
        step(&format!("idle monitor and 10-node agent, {idle_s} s"));
        figures.extend(idle::idle(&paths, idle_s, clk_tck));
    }
    if want("start") {
        step(&format!("start to first heartbeat, {start_runs} runs"));
        figures.push(latency::start_to_heartbeat(&paths, start_runs));
    }
    if want("detect") {
        step(&format!(
            "detection latency with blocking queries, {det_runs} runs"
        ));
        figures.push(latency::detection(&paths, true, det_runs, 30));
        step(&format!(
            "detection latency with plain polling, {poll_runs} runs"
        ));
        figures.push(latency::detection(&paths, false, poll_runs, 2));
    }
    match world::OciSide::start(&paths, Duration::from_millis(200)) {
        _ if !want("scale") => {}
        Ok(oci) => {
            for n in [1_000, 10_000] {
                step(&format!("scale: {n} nodes, {scale_s} s of forced passes"));
                figures.push(scale::scale(&paths, &oci, n, scale_s, clk_tck));
            }
        }
        Err(e) => figures.push(Figure::failed(
            "Scale",
            "see the source",
            "one request per pass; 20 MiB",
            e,
        )),
    }
    if want("restart") {
        step(&format!("restart cycles, {reps} per tool"));
        figures.extend(restart::restart(&paths, &args.oci_cli, reps));
    }

    let header = Header {
        machine,
        loadavg_end: sys::loadavg(),
        revision: format!(
            "{} ({})",
            cmd_out(
                "git",
                &[
                    "-C",
                    &root.to_string_lossy(),
                    "rev-parse",
                    "--short=12",
                    "HEAD"
                ]
            ),
            if cmd_out(
                "git",
                &[
                    "-C",
                    &root.to_string_lossy(),
                    "status",
                    "--porcelain",
                    "--untracked-files=no"
                ]
            )
            .is_empty()
            {
                "clean"
            } else {
                "with uncommitted changes"
            }
        ),
        started: started_at,
        duration_s: started.elapsed().as_secs_f64(),
        binary: binary
            .strip_prefix(&root)
            .unwrap_or(&binary)
            .display()
            .to_string(),
        clk_tck,
    };
    let text = report::render(&header, &figures);
    print!("{text}");
    if let Some(dir) = args.out.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Err(e) = std::fs::write(&args.out, &text) {
        eprintln!("cannot write {}: {e}", args.out.display());
        return ExitCode::FAILURE;
    }
    let failed = figures
        .iter()
        .any(|f| matches!(f.verdict, Verdict::Failed(_)));
    if failed {
        eprintln!(
            "watchdog-bench: some figures were not measured; logs kept in {}",
            work.display()
        );
    } else {
        let _ = std::fs::remove_dir_all(&work);
    }
    eprintln!("watchdog-bench: report written to {}", args.out.display());
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn cmd_out(prog: &str, args: &[&str]) -> String {
    Command::new(prog)
        .args(args)
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}
