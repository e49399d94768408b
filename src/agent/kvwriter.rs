//! Fire-and-forget KV writes for the coordinator, on a thread of its own so
//! the coordinator never blocks on Consul. Used for informational records
//! (missing-since) whose loss only makes `status` less precise.

use crossbeam_channel::{Sender, TrySendError, bounded};

use crate::consul::ConsulClient;

/// One write.
#[derive(Debug, Clone)]
pub enum KvWrite {
    /// Store `value` at `key`.
    Put {
        /// Key.
        key: String,
        /// Value.
        value: Vec<u8>,
    },
    /// Delete `key`.
    Delete {
        /// Key.
        key: String,
    },
}

/// Sender side; dropping it ends the thread after the queued writes.
#[derive(Clone)]
pub struct KvWriter {
    tx: Sender<KvWrite>,
}

impl KvWriter {
    /// Starts the `kv-writer` thread with a bounded queue.
    pub fn spawn(client: ConsulClient) -> std::io::Result<KvWriter> {
        let (tx, rx) = bounded::<KvWrite>(256);
        std::thread::Builder::new()
            .name("kv-writer".into())
            .spawn(move || {
                for w in rx.iter() {
                    let result = match &w {
                        KvWrite::Put { key, value } => client.put(key, value),
                        KvWrite::Delete { key } => client.delete(key),
                    };
                    if let Err(e) = result {
                        tracing::debug!(write = ?w, error = %e, "informational KV write failed");
                    }
                }
            })?;
        Ok(KvWriter { tx })
    }

    /// Queues a write; drops it (with a debug line) when the queue is full.
    pub fn send(&self, w: KvWrite) {
        if let Err(TrySendError::Full(w) | TrySendError::Disconnected(w)) = self.tx.try_send(w) {
            tracing::debug!(write = ?w, "KV write queue unavailable; dropping informational write");
        }
    }
}
