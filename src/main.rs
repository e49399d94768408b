//! The `oracle-watchdog` binary: a thin shell over the library.

fn main() -> std::process::ExitCode {
    oracle_watchdog::cli::main()
}
