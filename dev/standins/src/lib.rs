//! Test servers that behave like the real services oracle-watchdog talks to.
//!
//! Dev-only: used by the integration tests, the benchmarks and `make demo`.
//! Each stand-in binds `127.0.0.1:0` (or a given address), runs on its own
//! threads, and exposes a Rust control API plus an HTTP admin API under
//! `/_standin/` so that scripts can inject faults too.

pub mod cloudflare;
pub mod consul;
pub mod ipprovider;
pub mod oci;
pub mod otlp;
