//! What the agent stores in Consul KV, and how to read it back.
//!
//! Everything lives under `oracle-watchdog/` so one recursive read sees the
//! heartbeats, maintenance flags, stored restart cycles and the leader lock.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::consul::{KvPair, NODES_PREFIX};

/// Prefix the agent watches: everything oracle-watchdog keeps in KV.
pub const WATCH_PREFIX: &str = "oracle-watchdog/";
/// `oracle-watchdog/maintenance/{node}`: the agent leaves that node alone.
pub const MAINTENANCE_PREFIX: &str = "oracle-watchdog/maintenance/";
/// `oracle-watchdog/agent/restarts/{node}`: a restart cycle in progress.
pub const RESTARTS_PREFIX: &str = "oracle-watchdog/agent/restarts/";
/// The agents' leader lock.
pub const LEADER_KEY: &str = "oracle-watchdog/agent/leader";
/// `oracle-watchdog/agent/missing/{node}`: since when the leader has seen the
/// node's heartbeat missing (Consul itself does not keep that).
pub const MISSING_PREFIX: &str = "oracle-watchdog/agent/missing/";

/// When a node's heartbeat went missing, as observed by the leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingRecord {
    /// RFC 3339 wall-clock time (display only).
    pub since: String,
    /// Unix seconds of the same instant, for "missing for 3m" displays.
    pub since_unix: u64,
}

/// A restart cycle as persisted after every phase change, so an agent that
/// restarts (or a standby taking over) resumes it instead of forgetting it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartRecord {
    /// Node name.
    pub node: String,
    /// Instance OCID.
    pub instance_id: String,
    /// Cycle phase (`inspect`, `stopping`, `wait_stopped`, ...).
    pub phase: String,
    /// Consecutive attempt number of this cycle.
    pub attempt: u32,
    /// Which agent wrote it.
    pub agent: String,
    /// When the cycle started (RFC 3339, display only).
    pub started_at: String,
    /// When the phase last changed (RFC 3339, display only).
    pub updated_at: String,
}

/// Why a node is in maintenance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaintenanceRecord {
    /// Free text from `-reason`.
    #[serde(default)]
    pub reason: String,
    /// Who set it (user@host).
    #[serde(default)]
    pub by: String,
    /// When (RFC 3339).
    #[serde(default)]
    pub since: String,
}

/// The leader lock's value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderRecord {
    /// Agent identity (host:pid).
    pub agent: String,
    /// Since when it leads (RFC 3339).
    #[serde(default)]
    pub since: String,
}

/// Everything the agent reads from one recursive listing of [`WATCH_PREFIX`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KvView {
    /// Nodes whose heartbeat key exists and is locked by a session.
    pub present: BTreeSet<String>,
    /// Nodes in maintenance, with the stored reason.
    pub maintenance: BTreeMap<String, MaintenanceRecord>,
    /// Stored restart cycles by node.
    pub restarts: BTreeMap<String, RestartRecord>,
    /// The current leader, if the lock is held.
    pub leader: Option<LeaderRecord>,
    /// Missing-since records published by the leader.
    pub missing: BTreeMap<String, MissingRecord>,
}

impl KvView {
    /// Sorts a listing into its parts. Malformed values are ignored with a
    /// warning (maintenance keys count even with a malformed value: the
    /// operator's intent is the key, not its text).
    pub fn from_pairs(pairs: &[KvPair]) -> KvView {
        let mut view = KvView::default();
        for p in pairs {
            if let Some(node) = p.key.strip_prefix(NODES_PREFIX) {
                // A heartbeat only counts while a session holds it: a key
                // left behind unlocked (e.g. written by hand) is no heartbeat.
                if is_segment(node) && p.session.is_some() {
                    view.present.insert(node.to_string());
                }
            } else if let Some(node) = p.key.strip_prefix(MAINTENANCE_PREFIX) {
                if is_segment(node) {
                    let record = p
                        .value
                        .as_deref()
                        .and_then(|v| serde_json::from_slice(v).ok())
                        .unwrap_or_else(|| MaintenanceRecord {
                            reason: p
                                .value
                                .as_deref()
                                .map(|v| String::from_utf8_lossy(v).into_owned())
                                .unwrap_or_default(),
                            by: String::new(),
                            since: String::new(),
                        });
                    view.maintenance.insert(node.to_string(), record);
                }
            } else if let Some(node) = p.key.strip_prefix(RESTARTS_PREFIX) {
                match p
                    .value
                    .as_deref()
                    .map(serde_json::from_slice::<RestartRecord>)
                {
                    Some(Ok(r)) if is_segment(node) => {
                        view.restarts.insert(node.to_string(), r);
                    }
                    _ => tracing::warn!(key = %p.key, "ignoring malformed restart record"),
                }
            } else if let Some(node) = p.key.strip_prefix(MISSING_PREFIX) {
                if let Some(Ok(r)) = p
                    .value
                    .as_deref()
                    .map(serde_json::from_slice::<MissingRecord>)
                    && is_segment(node)
                {
                    view.missing.insert(node.to_string(), r);
                }
            } else if p.key == LEADER_KEY && p.session.is_some() {
                view.leader = p
                    .value
                    .as_deref()
                    .and_then(|v| serde_json::from_slice(v).ok());
            }
        }
        view
    }
}

/// A direct child name (no further `/`), non-empty.
fn is_segment(s: &str) -> bool {
    !s.is_empty() && !s.contains('/')
}

/// Key of a node's stored restart cycle.
pub fn restart_key(node: &str) -> String {
    format!("{RESTARTS_PREFIX}{node}")
}

/// Key of a node's missing-since record.
pub fn missing_key(node: &str) -> String {
    format!("{MISSING_PREFIX}{node}")
}

/// Key of a node's maintenance flag.
pub fn maintenance_key(node: &str) -> String {
    format!("{MAINTENANCE_PREFIX}{node}")
}

/// This agent's identity for records and the leader lock: `host:pid`.
pub fn agent_identity() -> String {
    let host = crate::cli::hostname().unwrap_or_else(|_| "unknown".into());
    format!("{host}:{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(key: &str, value: Option<&str>, session: Option<&str>) -> KvPair {
        KvPair {
            key: key.into(),
            value: value.map(|v| v.as_bytes().to_vec()),
            session: session.map(Into::into),
            modify_index: 1,
            lock_index: 1,
        }
    }

    #[test]
    fn sorts_a_listing_into_its_parts() {
        let rec = serde_json::to_string(&RestartRecord {
            node: "b".into(),
            instance_id: "ocid1.instance.oc1.iad.b".into(),
            phase: "wait_stopped".into(),
            attempt: 2,
            agent: "h:1".into(),
            started_at: String::new(),
            updated_at: String::new(),
        })
        .unwrap();
        let view = KvView::from_pairs(&[
            pair("oracle-watchdog/nodes/a", Some("{}"), Some("s1")),
            pair("oracle-watchdog/nodes/stale", Some("{}"), None),
            pair("oracle-watchdog/nodes/x/y", Some("{}"), Some("s2")),
            pair(
                "oracle-watchdog/maintenance/c",
                Some(r#"{"reason":"kernel upgrade","by":"me@h","since":"t"}"#),
                None,
            ),
            pair("oracle-watchdog/maintenance/d", Some("plain words"), None),
            pair("oracle-watchdog/agent/restarts/b", Some(&rec), None),
            pair(
                "oracle-watchdog/agent/restarts/junk",
                Some("not json"),
                None,
            ),
            pair(
                "oracle-watchdog/agent/leader",
                Some(r#"{"agent":"h:1","since":"t"}"#),
                Some("s9"),
            ),
        ]);
        assert_eq!(view.present.iter().collect::<Vec<_>>(), vec!["a"]);
        assert_eq!(view.maintenance["c"].reason, "kernel upgrade");
        assert_eq!(view.maintenance["d"].reason, "plain words");
        assert_eq!(view.restarts["b"].attempt, 2);
        assert!(!view.restarts.contains_key("junk"));
        assert_eq!(view.leader.unwrap().agent, "h:1");
    }
}
