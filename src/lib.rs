//! oracle-watchdog keeps Oracle Cloud free-tier instances alive.
//!
//! * **monitor mode** ([`monitor`]) runs on each Oracle node and holds a Consul
//!   session with a TTL plus a KV key locked by it: the node's heartbeat.
//! * **agent mode** runs elsewhere, notices a heartbeat that has been gone for
//!   too long and drives an OCI stop/start cycle ([`oci`]).
//!
//! The binary is a thin shell over this library ([`cli::main`]). Everything is
//! synchronous: one coordinator thread per mode owns the state, loop threads do
//! blocking I/O and talk to it over crossbeam channels. Decisions are pure
//! state machines with an injected `now` (see `monitor::heartbeat`), so they are
//! tested in virtual time. See ARCHITECTURE.md for the thread and data-flow map.

#![warn(missing_docs)]

pub mod agent;
pub mod backoff;
pub mod check;
pub mod cli;
pub mod config;
pub mod consul;
pub mod daemon;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod monitor;
pub mod oci;
pub mod ops;
pub mod secret;
pub mod shutdown;
pub mod supervise;
pub mod table;
pub mod telemetry;
pub mod wallclock;
pub mod wandns;
pub mod wireguard;
