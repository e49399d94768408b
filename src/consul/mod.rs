//! Consul HTTP API v1 client: sessions, KV locks and blocking queries.
//!
//! Both modes talk to Consul: the monitor holds its heartbeat (a TTL session
//! and a key locked by it), the agent lists every node's key in one request.
//! Connection settings follow the consul CLI's environment variables
//! ([`ConsulSettings::from_env`]); every call has connect and total timeouts
//! and fails with a typed [`ConsulError`] that says whether to retry.

mod client;
mod error;
mod settings;

pub use client::{
    BlockingQuery, ConsulClient, KvPair, SessionBehavior, SessionSpec, decode_kv_listing,
};
pub use error::{ConsulError, ConsulSetupError};
pub use settings::{ConsulSettings, DEFAULT_ADDRESS};

/// KV prefix under which every monitor publishes its heartbeat key.
pub const NODES_PREFIX: &str = "oracle-watchdog/nodes/";

/// The heartbeat key of one node: `oracle-watchdog/nodes/{node}`.
pub fn node_key(node: &str) -> String {
    format!("{NODES_PREFIX}{node}")
}
