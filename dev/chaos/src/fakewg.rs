//! A fake userspace WireGuard device: answers the UAPI protocol (`get=1`,
//! `set=1`) on `/var/run/wireguard/{iface}.sock` like wireguard-go would,
//! without creating any network interface. Records every `set=1` so a
//! scenario can check exactly what the daemon changed.

use std::io::{BufRead, BufReader, Write as _};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::harness::Context;

/// Where wireguard-go puts its sockets (and where the daemon looks first).
pub const SOCKET_DIR: &str = "/var/run/wireguard";

/// One peer of the fake device.
#[derive(Debug, Clone)]
pub struct FakePeer {
    /// Public key, hex (as UAPI spells it).
    pub key_hex: String,
    /// Current endpoint, `ip:port`.
    pub endpoint: Option<String>,
}

#[derive(Default)]
struct State {
    peers: Vec<FakePeer>,
    sets: Vec<Vec<String>>,
}

/// A running fake device; dropping it removes the socket.
pub struct FakeWg {
    /// The socket path.
    pub path: PathBuf,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl FakeWg {
    /// Listens on `SOCKET_DIR/{iface}.sock` with the given peers.
    pub fn start(iface: &str, peers: Vec<FakePeer>) -> Result<FakeWg, String> {
        std::fs::create_dir_all(SOCKET_DIR).ctx(&format!("create {SOCKET_DIR}"))?;
        let path = PathBuf::from(SOCKET_DIR).join(format!("{iface}.sock"));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).ctx(&format!("bind {}", path.display()))?;
        listener.set_nonblocking(true).ctx("nonblocking")?;
        let state = Arc::new(Mutex::new(State {
            peers,
            sets: Vec::new(),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("fake-wg".into())
            .spawn(move || {
                while !sp.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((conn, _)) => serve(conn, &st),
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            })
            .ctx("spawn fake-wg thread")?;
        Ok(FakeWg {
            path,
            state,
            stop,
            thread: Some(thread),
        })
    }

    /// The peers as they are now.
    pub fn peers(&self) -> Vec<FakePeer> {
        lock(&self.state).peers.clone()
    }

    /// Adds a peer (an operator fixing the config).
    pub fn add_peer(&self, peer: FakePeer) {
        lock(&self.state).peers.push(peer);
    }

    /// Every `set=1` request received, as its lines.
    pub fn sets(&self) -> Vec<Vec<String>> {
        lock(&self.state).sets.clone()
    }
}

impl Drop for FakeWg {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn serve(conn: UnixStream, state: &Mutex<State>) {
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let Ok(mut out) = conn.try_clone() else {
        return;
    };
    let mut lines = Vec::new();
    let mut reader = BufReader::new(conn);
    loop {
        let mut l = String::new();
        match reader.read_line(&mut l) {
            Ok(0) | Err(_) => break,
            Ok(_) if l == "\n" => break,
            Ok(_) => lines.push(l.trim_end().to_string()),
        }
    }
    let answer = match lines.first().map(String::as_str) {
        Some("get=1") => {
            let mut s = String::from(
                "private_key=a8dac1d8a70a751f0f699fb14ba1cff7b79cf4fbd8f09f44c6e4ba2ed6f2f861\nlisten_port=51820\n",
            );
            for p in &lock(state).peers {
                s.push_str(&format!("public_key={}\n", p.key_hex));
                if let Some(e) = &p.endpoint {
                    s.push_str(&format!("endpoint={e}\n"));
                }
                s.push_str("last_handshake_time_sec=0\nlast_handshake_time_nsec=0\ntx_bytes=0\nrx_bytes=0\npersistent_keepalive_interval=0\nprotocol_version=1\nallowed_ip=10.201.0.2/32\n");
            }
            s.push_str("errno=0\n\n");
            s
        }
        Some("set=1") => {
            let mut st = lock(state);
            let mut current: Option<usize> = None;
            for l in &lines[1..] {
                if let Some(k) = l.strip_prefix("public_key=") {
                    current = st.peers.iter().position(|p| p.key_hex == k);
                    if current.is_none() {
                        // wireguard-go adds unknown peers: so does the fake.
                        st.peers.push(FakePeer {
                            key_hex: k.to_string(),
                            endpoint: None,
                        });
                        current = Some(st.peers.len() - 1);
                    }
                } else if let (Some(e), Some(i)) = (l.strip_prefix("endpoint="), current) {
                    st.peers[i].endpoint = Some(e.to_string());
                }
            }
            st.sets.push(lines.clone());
            "errno=0\n\n".to_string()
        }
        _ => "errno=22\n\n".to_string(),
    };
    let _ = out.write_all(answer.as_bytes());
}
