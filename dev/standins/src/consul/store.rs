//! The Consul stand-in's data: sessions, KV entries, tombstones, lock-delays and the Raft-like index.
//!
//! Pure data with `now: Instant` passed in; the server wraps it in a mutex.
//! Semantics follow Consul's state store (kvs/session tables): one global
//! index bumped by every write that changes something, per-table indexes for
//! blocking queries, and tombstones so a delete under a prefix moves that
//! prefix's index forward.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use super::SessionBehavior;

/// The index a fresh or wiped stand-in starts from.
pub(crate) const BASE_INDEX: u64 = 1;
/// Consul caps a session's lock-delay at one minute.
pub(crate) const MAX_LOCK_DELAY: Duration = Duration::from_secs(60);

/// A session as stored.
#[derive(Clone)]
pub(crate) struct Session {
    pub id: String,
    pub name: String,
    pub node: String,
    pub behavior: SessionBehavior,
    /// The TTL string as the client sent it ("" when none).
    pub ttl_text: String,
    pub ttl: Option<Duration>,
    pub lock_delay: Duration,
    pub checks: Vec<String>,
    pub create_index: u64,
    pub modify_index: u64,
    /// When the session is invalidated unless renewed (TTL x expiry factor).
    pub deadline: Option<Instant>,
}

/// What a client asked for in `PUT /v1/session/create`, already validated.
pub(crate) struct SessionSpec {
    pub name: String,
    pub node: String,
    pub behavior: SessionBehavior,
    pub ttl_text: String,
    pub ttl: Option<Duration>,
    pub lock_delay: Duration,
    pub checks: Vec<String>,
}

/// A KV entry as stored.
#[derive(Clone)]
pub(crate) struct Entry {
    pub key: String,
    pub value: Vec<u8>,
    pub flags: u64,
    pub session: Option<String>,
    pub lock_index: u64,
    pub create_index: u64,
    pub modify_index: u64,
}

/// Why a KV lock operation failed with a server error (Consul answers 500).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum LockError {
    /// `?acquire=` / `?release=` with an empty session id.
    MissingSession,
    /// `?acquire=` with a session that does not exist.
    InvalidSession(String),
}

impl std::fmt::Display for LockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockError::MissingSession => write!(f, "missing session"),
            LockError::InvalidSession(id) => write!(f, "invalid session \"{id}\""),
        }
    }
}

/// All state behind the HTTP API.
pub(crate) struct Store {
    index: u64,
    kv_index: u64,
    session_index: u64,
    sessions: BTreeMap<String, Session>,
    kv: BTreeMap<String, Entry>,
    tombstones: BTreeMap<String, u64>,
    lock_delays: HashMap<String, Instant>,
    expiry_factor: f64,
    rng: fastrand::Rng,
}

impl Store {
    /// An empty store; sessions expire after `expiry_factor` x TTL.
    pub fn new(expiry_factor: f64) -> Store {
        Store {
            index: BASE_INDEX,
            kv_index: 0,
            session_index: 0,
            sessions: BTreeMap::new(),
            kv: BTreeMap::new(),
            tombstones: BTreeMap::new(),
            lock_delays: HashMap::new(),
            expiry_factor,
            rng: fastrand::Rng::new(),
        }
    }

    /// The global (Raft) index.
    pub fn index(&self) -> u64 {
        self.index
    }

    fn bump(&mut self) -> u64 {
        self.index += 1;
        self.index
    }

    /// Drops everything and moves the index back, like a snapshot restore.
    pub fn wipe(&mut self) {
        *self = Store::new(self.expiry_factor);
    }

    fn new_id(&mut self) -> String {
        let hi = self.rng.u64(..);
        let lo = self.rng.u64(..);
        // Version 4, variant 10.
        let hi = (hi & 0xffff_ffff_ffff_0fff) | 0x0000_0000_0000_4000;
        let lo = (lo & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
        format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            hi >> 32,
            (hi >> 16) & 0xffff,
            hi & 0xffff,
            lo >> 48,
            lo & 0xffff_ffff_ffff
        )
    }

    fn deadline(&self, ttl: Option<Duration>, now: Instant) -> Option<Instant> {
        ttl.map(|ttl| now + ttl.mul_f64(self.expiry_factor))
    }

    // ---- sessions ----

    /// Creates a session and returns its id.
    pub fn create_session(&mut self, spec: SessionSpec, now: Instant) -> String {
        let id = loop {
            let id = self.new_id();
            if !self.sessions.contains_key(&id) {
                break id;
            }
        };
        let idx = self.bump();
        let deadline = self.deadline(spec.ttl, now);
        self.sessions.insert(
            id.clone(),
            Session {
                id: id.clone(),
                name: spec.name,
                node: spec.node,
                behavior: spec.behavior,
                ttl_text: spec.ttl_text,
                ttl: spec.ttl,
                lock_delay: spec.lock_delay.min(MAX_LOCK_DELAY),
                checks: spec.checks,
                create_index: idx,
                modify_index: idx,
                deadline,
            },
        );
        self.session_index = idx;
        id
    }

    /// Resets a session's TTL timer. Not a Raft write in Consul: no index change.
    pub fn renew_session(&mut self, id: &str, now: Instant) -> Option<Session> {
        let ttl = self.sessions.get(id)?.ttl;
        let deadline = self.deadline(ttl, now);
        let session = self.sessions.get_mut(id)?;
        session.deadline = deadline;
        Some(session.clone())
    }

    /// Destroys or invalidates a session: its keys are released or deleted
    /// (per its behaviour) and get its lock-delay. Returns whether it existed.
    pub fn invalidate_session(&mut self, id: &str, now: Instant) -> bool {
        let Some(session) = self.sessions.remove(id) else {
            return false;
        };
        let idx = self.bump();
        self.session_index = idx;
        let held: Vec<String> = self
            .kv
            .values()
            .filter(|e| e.session.as_deref() == Some(id))
            .map(|e| e.key.clone())
            .collect();
        for key in held {
            match session.behavior {
                SessionBehavior::Release => {
                    if let Some(entry) = self.kv.get_mut(&key) {
                        entry.session = None;
                        entry.modify_index = idx;
                    }
                }
                SessionBehavior::Delete => {
                    self.kv.remove(&key);
                    self.tombstones.insert(key.clone(), idx);
                }
            }
            self.kv_index = idx;
            if !session.lock_delay.is_zero() {
                self.lock_delays.insert(key, now + session.lock_delay);
            }
        }
        true
    }

    /// Invalidates every session whose deadline has passed; returns how many.
    pub fn expire_sessions(&mut self, now: Instant) -> usize {
        let expired: Vec<String> = self
            .sessions
            .values()
            .filter(|s| s.deadline.is_some_and(|d| d <= now))
            .map(|s| s.id.clone())
            .collect();
        for id in &expired {
            self.invalidate_session(id, now);
        }
        expired.len()
    }

    /// The earliest session deadline, for the expiry thread.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.sessions.values().filter_map(|s| s.deadline).min()
    }

    /// One session and the sessions table index.
    pub fn session_info(&self, id: &str) -> (u64, Option<Session>) {
        (self.session_index.max(1), self.sessions.get(id).cloned())
    }

    /// All sessions (optionally only one node's) and the sessions table index.
    pub fn session_list(&self, node: Option<&str>) -> (u64, Vec<Session>) {
        let list = self
            .sessions
            .values()
            .filter(|s| node.is_none_or(|n| s.node == n))
            .cloned()
            .collect();
        (self.session_index.max(1), list)
    }

    // ---- KV ----

    /// Plain `PUT`: sets value and flags, keeps an existing lock.
    pub fn kv_set(&mut self, key: &str, value: Vec<u8>, flags: u64) -> bool {
        let idx = self.bump();
        match self.kv.get_mut(key) {
            Some(entry) => {
                entry.value = value;
                entry.flags = flags;
                entry.modify_index = idx;
            }
            None => {
                self.tombstones.remove(key);
                self.kv.insert(
                    key.to_string(),
                    Entry {
                        key: key.to_string(),
                        value,
                        flags,
                        session: None,
                        lock_index: 0,
                        create_index: idx,
                        modify_index: idx,
                    },
                );
            }
        }
        self.kv_index = idx;
        true
    }

    /// `PUT ?cas=N`: 0 means "only if absent", otherwise "only if ModifyIndex is N".
    pub fn kv_cas(&mut self, key: &str, value: Vec<u8>, flags: u64, cas: u64) -> bool {
        let current = self.kv.get(key).map(|e| e.modify_index);
        let allowed = match (cas, current) {
            (0, None) => true,
            (0, Some(_)) | (_, None) => false,
            (n, Some(m)) => n == m,
        };
        allowed && self.kv_set(key, value, flags)
    }

    /// `PUT ?acquire=session`: lock the key for the session (and set its value).
    pub fn kv_acquire(
        &mut self,
        key: &str,
        value: Vec<u8>,
        flags: u64,
        session: &str,
        now: Instant,
    ) -> Result<bool, LockError> {
        // Consul checks the lock-delay first, then the session.
        if let Some(until) = self.lock_delays.get(key) {
            if *until > now {
                return Ok(false);
            }
            self.lock_delays.remove(key);
        }
        if session.is_empty() {
            return Err(LockError::MissingSession);
        }
        if !self.sessions.contains_key(session) {
            return Err(LockError::InvalidSession(session.to_string()));
        }
        let (create_index, lock_index) = match self.kv.get(key) {
            Some(e) if e.session.as_deref() == Some(session) => {
                (Some(e.create_index), e.lock_index)
            }
            Some(e) if e.session.is_some() => return Ok(false),
            Some(e) => (Some(e.create_index), e.lock_index + 1),
            None => (None, 1),
        };
        let idx = self.bump();
        self.tombstones.remove(key);
        self.kv.insert(
            key.to_string(),
            Entry {
                key: key.to_string(),
                value,
                flags,
                session: Some(session.to_string()),
                lock_index,
                create_index: create_index.unwrap_or(idx),
                modify_index: idx,
            },
        );
        self.kv_index = idx;
        Ok(true)
    }

    /// `PUT ?release=session`: unlock the key if this session holds it.
    pub fn kv_release(
        &mut self,
        key: &str,
        value: Vec<u8>,
        flags: u64,
        session: &str,
    ) -> Result<bool, LockError> {
        if session.is_empty() {
            return Err(LockError::MissingSession);
        }
        let holds = self
            .kv
            .get(key)
            .is_some_and(|e| e.session.as_deref() == Some(session));
        if !holds {
            return Ok(false);
        }
        let idx = self.bump();
        if let Some(entry) = self.kv.get_mut(key) {
            entry.value = value;
            entry.flags = flags;
            entry.session = None;
            entry.modify_index = idx;
        }
        self.kv_index = idx;
        Ok(true)
    }

    /// `DELETE` of one key; `cas` as in Consul (0 never deletes, a missing key is "done").
    pub fn kv_delete(&mut self, key: &str, cas: Option<u64>) -> bool {
        let current = self.kv.get(key).map(|e| e.modify_index);
        match (cas, current) {
            (Some(_), None) => return true,
            (Some(n), Some(m)) if n != m => return false,
            (_, None) => return true,
            _ => {}
        }
        let idx = self.bump();
        self.kv.remove(key);
        self.tombstones.insert(key.to_string(), idx);
        self.kv_index = idx;
        true
    }

    /// `DELETE ?recurse`: every key under the prefix.
    pub fn kv_delete_tree(&mut self, prefix: &str) -> bool {
        let keys: Vec<String> = self
            .kv
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k.clone())
            .collect();
        if keys.is_empty() {
            return true;
        }
        let idx = self.bump();
        for key in keys {
            self.kv.remove(&key);
            self.tombstones.insert(key, idx);
        }
        self.kv_index = idx;
        true
    }

    /// One key, and the index a `GET` of it reports.
    pub fn kv_get(&self, key: &str) -> (u64, Option<Entry>) {
        match self.kv.get(key) {
            Some(e) => (e.modify_index, Some(e.clone())),
            None => (self.kv_index.max(1), None),
        }
    }

    /// Index of a prefix query: newest entry or tombstone under it,
    /// falling back to the table index (as Consul's `kvsListTxn`).
    fn prefix_index(&self, prefix: &str) -> u64 {
        if prefix.is_empty() {
            return self.kv_index.max(1);
        }
        let live = self
            .kv
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, e)| e.modify_index)
            .max()
            .unwrap_or(0);
        let dead = self
            .tombstones
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, i)| *i)
            .max()
            .unwrap_or(0);
        match live.max(dead) {
            0 => self.kv_index.max(1),
            n => n,
        }
    }

    /// `GET ?recurse`: all entries under the prefix.
    pub fn kv_list(&self, prefix: &str) -> (u64, Vec<Entry>) {
        let entries = self
            .kv
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, e)| e.clone())
            .collect();
        (self.prefix_index(prefix), entries)
    }

    /// `GET ?keys[&separator=S]`: key names under the prefix, cut after the
    /// first separator past the prefix.
    pub fn kv_keys(&self, prefix: &str, separator: Option<&str>) -> (u64, Vec<String>) {
        let mut keys: Vec<String> = Vec::new();
        for key in self
            .kv
            .range(prefix.to_string()..)
            .map(|(k, _)| k)
            .take_while(|k| k.starts_with(prefix))
        {
            let shown = match separator.filter(|s| !s.is_empty()) {
                Some(sep) => match key[prefix.len()..].find(sep) {
                    Some(pos) => &key[..prefix.len() + pos + sep.len()],
                    None => key.as_str(),
                },
                None => key.as_str(),
            };
            if keys.last().map(String::as_str) != Some(shown) {
                keys.push(shown.to_string());
            }
        }
        (self.prefix_index(prefix), keys)
    }

    /// Every entry (for the control API and `/_standin/state`).
    pub fn all_entries(&self) -> Vec<Entry> {
        self.kv.values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(behavior: SessionBehavior, lock_delay: Duration) -> SessionSpec {
        SessionSpec {
            name: "t".into(),
            node: "n".into(),
            behavior,
            ttl_text: "10s".into(),
            ttl: Some(Duration::from_secs(10)),
            lock_delay,
            checks: vec![],
        }
    }

    #[test]
    fn session_ids_look_like_uuid_v4() {
        let mut store = Store::new(2.0);
        let id = store.create_session(
            spec(SessionBehavior::Release, Duration::ZERO),
            Instant::now(),
        );
        let parts: Vec<&str> = id.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            vec![8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('4'));
    }

    #[test]
    fn expiry_happens_at_factor_times_ttl_in_virtual_time() {
        let t0 = Instant::now();
        let mut store = Store::new(2.0);
        let id = store.create_session(spec(SessionBehavior::Delete, Duration::ZERO), t0);
        assert_eq!(store.kv_acquire("k", b"v".to_vec(), 0, &id, t0), Ok(true));
        assert_eq!(store.expire_sessions(t0 + Duration::from_secs(19)), 0);
        assert!(store.kv_get("k").1.is_some());
        assert_eq!(store.expire_sessions(t0 + Duration::from_secs(20)), 1);
        assert!(store.kv_get("k").1.is_none());
    }

    #[test]
    fn prefix_index_moves_forward_on_delete() {
        let mut store = Store::new(2.0);
        store.kv_set("p/a", vec![], 0);
        store.kv_set("other", vec![], 0);
        let (before, _) = store.kv_list("p/");
        store.kv_set("other2", vec![], 0);
        assert_eq!(
            store.kv_list("p/").0,
            before,
            "unrelated write must not move the prefix index"
        );
        store.kv_delete("p/a", None);
        let (after, entries) = store.kv_list("p/");
        assert!(entries.is_empty());
        assert!(after > before);
    }
}
