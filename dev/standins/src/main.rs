//! `watchdog-standins`: runs a stand-in as its own process for scripts, the Python cross-checks and the demo.
//!
//! ```text
//! watchdog-standins consul --listen 127.0.0.1:8500 [--token T] [--expiry-factor F] [--node NAME]
//! ```
//! Prints one line `consul listening on 127.0.0.1:PORT` (port 0 picks one)
//! and serves until killed. Control it over HTTP under `/_standin/`.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

use watchdog_standins::consul::{ConsulOptions, ConsulStandin};

const USAGE: &str = "\
usage: watchdog-standins <stand-in> [options]

stand-ins:
  consul  --listen ADDR (default 127.0.0.1:8500) [--token T] [--expiry-factor F] [--node NAME]
          [--no-blocking]   (ignore index/wait, omit X-Consul-Index: clients must poll)
  oci     [--listen ADDR (default 127.0.0.1:0)] [--instance OCID=STATE]... [--key KEYID=PEMFILE]...
          [--transition-ms N] [--hang-ms N]
  cloudflare [--listen ADDR] --token T --zone Z [--record NAME=IP]...
  ipprovider [--listen ADDR] [--ip A.B.C.D]
  otlp    [--listen ADDR (default 127.0.0.1:4318)]   prints one JSON line per received span
";

fn main() -> ExitCode {
    let mut args = pico_args::Arguments::from_env();
    let subcommand = match args.subcommand() {
        Ok(sub) => sub,
        Err(err) => return usage_error(&err.to_string()),
    };
    match subcommand.as_deref() {
        Some("consul") => run_consul(args),
        Some("oci") => match watchdog_standins::oci::serve_from_args(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => usage_error(&format!("oci: {err}")),
        },
        Some("cloudflare") => match watchdog_standins::cloudflare::serve_from_args(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => usage_error(&format!("cloudflare: {err}")),
        },
        Some("ipprovider") => match watchdog_standins::ipprovider::serve_from_args(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => usage_error(&format!("ipprovider: {err}")),
        },
        Some("otlp") => match watchdog_standins::otlp::serve_from_args(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => usage_error(&format!("otlp: {err}")),
        },
        None if args.contains(["-h", "--help"]) => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some(other) => usage_error(&format!("unknown stand-in {other:?}")),
        None => usage_error("missing stand-in name"),
    }
}

fn usage_error(problem: &str) -> ExitCode {
    eprintln!("watchdog-standins: {problem}\n{USAGE}");
    ExitCode::from(2)
}

fn run_consul(mut args: pico_args::Arguments) -> ExitCode {
    if args.contains(["-h", "--help"]) {
        print!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let defaults = ConsulOptions::default();
    let parsed = (|| -> Result<ConsulOptions, pico_args::Error> {
        let options = ConsulOptions {
            bind: args
                .opt_value_from_str::<_, SocketAddr>("--listen")?
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8500))),
            token: args.opt_value_from_str("--token")?,
            expiry_factor: args
                .opt_value_from_str("--expiry-factor")?
                .unwrap_or(defaults.expiry_factor),
            node_name: args
                .opt_value_from_str("--node")?
                .unwrap_or(defaults.node_name.clone()),
            leader_addr: defaults.leader_addr.clone(),
            no_blocking: args.contains("--no-blocking"),
        };
        let rest = args.finish();
        if let Some(extra) = rest.first() {
            return Err(pico_args::Error::ArgumentParsingFailed {
                cause: format!("unexpected argument {extra:?}"),
            });
        }
        Ok(options)
    })();
    let options = match parsed {
        Ok(options) => options,
        Err(err) => return usage_error(&err.to_string()),
    };
    let bind = options.bind;
    let standin = match ConsulStandin::start_with(options) {
        Ok(standin) => standin,
        Err(err) => {
            eprintln!("watchdog-standins: consul stand-in cannot listen on {bind}: {err}");
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout();
    if writeln!(stdout, "consul listening on {}", standin.http_addr())
        .and_then(|()| stdout.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    // Serve until the process is killed (SIGTERM/SIGINT end it).
    loop {
        std::thread::park();
    }
}
