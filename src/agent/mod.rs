//! Agent mode: notice nodes whose heartbeat key has been gone too long and
//! drive OCI stop/start cycles to bring them back.
//!
//! This module holds the agent's pure decision logic, tested in virtual time:
//!
//! * [`tracker::NodeTracker`] (owned by the coordinator) follows every
//!   configured node through Consul snapshots and decides when to restart
//!   which, honouring the timeout, attempt limits, maintenance, leadership,
//!   the concurrency limit and the mass-disappearance guard.
//! * [`cycle::RestartCycle`] (one per worker thread) drives one instance from
//!   "heartbeat gone" to RUNNING, one OCI call at a time, with a resumable
//!   phase that is stored in Consul KV.
//!
//! Neither does I/O or reads a clock: callers pass `now` and act on the
//! returned values.

pub mod core;
pub mod cycle;
pub mod tracker;

// I/O around the pure logic: threads and adapters.
pub mod coordinator;
pub mod cycle_trace;
pub mod kvwriter;
pub mod leader;
pub mod records;
pub mod watcher;
pub mod worker;

pub use coordinator::{AgentOptions, run};
