//! The WireGuard device adapter: read one peer, set one peer's endpoint,
//! over `wireguard-control` (kernel netlink or the userspace UAPI socket).
//!
//! `wireguard-control`'s `apply()` creates what is missing: the kernel
//! backend sends a create-link request first, the userspace backend starts
//! `wireguard-go` when the socket is absent, and a peer update for an unknown
//! key adds a new peer. This adapter therefore checks that the interface and
//! the peer exist before every apply and sends only the peer's public key and
//! endpoint (no allowed IPs, keepalive or preshared key), so it never creates
//! an interface or a peer and never touches other peer settings. A device
//! that disappears in the instant between the check and the apply is the one
//! case this cannot rule out.
//!
//! The library's `Debug` of `Device` and `Key` prints the private key: no
//! `Device` leaves this file and nothing here formats one.

use std::io;
use std::net::{SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use base64::Engine as _;
use wireguard_control::{Backend, Device, DeviceUpdate, InterfaceName, Key, PeerConfigBuilder};

use crate::config::WireguardBackend;

/// Directories where userspace implementations put `{iface}.sock` (the
/// order `wireguard-control` and `wg` look in).
pub const SOCKET_DIRS: [&str; 2] = ["/var/run/wireguard", "/run/wireguard"];

/// A peer's public key (32 bytes). Public, so printing it is fine; it is the
/// `peer` label of the metrics.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerKey([u8; 32]);

/// A `peer_pubkey` that is not base64 of 32 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidPeerKey;

impl std::fmt::Display for InvalidPeerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("peer public key is not base64 of 32 bytes")
    }
}

impl std::error::Error for InvalidPeerKey {}

impl PeerKey {
    /// Parses the `wg`-style base64 spelling.
    pub fn parse(base64_key: &str) -> Result<PeerKey, InvalidPeerKey> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(base64_key.trim())
            .map_err(|_| InvalidPeerKey)?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| InvalidPeerKey)?;
        Ok(PeerKey(key))
    }

    /// The `wg`-style base64 spelling.
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }

    fn to_wg(self) -> Key {
        Key(self.0)
    }
}

impl std::fmt::Display for PeerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_base64())
    }
}

impl std::fmt::Debug for PeerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PeerKey({})", self.to_base64())
    }
}

/// What the resolver needs to know about the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerState {
    /// The peer's current endpoint (as configured or roamed to).
    pub endpoint: Option<SocketAddr>,
    /// When the last handshake happened; `None` if never.
    pub last_handshake: Option<SystemTime>,
    /// Which implementation answered: `kernel` or `userspace`.
    pub backend: &'static str,
}

/// Why the device could not be read or updated.
#[derive(Debug)]
#[non_exhaustive]
pub enum WgError {
    /// The configured interface name cannot be an interface (permanent).
    InvalidInterfaceName {
        /// The configured name.
        interface: String,
    },
    /// No WireGuard interface of that name (nothing is created: retried).
    InterfaceMissing {
        /// The configured name.
        interface: String,
        /// Where it was looked for.
        backend: &'static str,
    },
    /// The interface has no peer with the configured key (not added: retried).
    PeerMissing {
        /// The interface.
        interface: String,
        /// The configured peer key.
        peer: PeerKey,
    },
    /// Netlink or the UAPI socket failed.
    Io {
        /// What was being done, e.g. "read device".
        action: &'static str,
        /// The interface.
        interface: String,
        /// `kernel` or `userspace`.
        backend: &'static str,
        /// The library's error.
        source: io::Error,
    },
}

impl WgError {
    /// Whether the next tick may succeed (everything but a bad name).
    pub fn is_retryable(&self) -> bool {
        !matches!(self, WgError::InvalidInterfaceName { .. })
    }

    /// Short machine-readable kind for log fields.
    pub fn kind(&self) -> &'static str {
        match self {
            WgError::InvalidInterfaceName { .. } => "invalid_interface_name",
            WgError::InterfaceMissing { .. } => "interface_missing",
            WgError::PeerMissing { .. } => "peer_missing",
            WgError::Io { .. } => "device_io",
        }
    }
}

impl std::fmt::Display for WgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WgError::InvalidInterfaceName { interface } => {
                write!(f, "{interface:?} is not a valid interface name")
            }
            WgError::InterfaceMissing { interface, backend } => write!(
                f,
                "WireGuard interface {interface} not found ({backend}); not creating it"
            ),
            WgError::PeerMissing { interface, peer } => {
                write!(f, "interface {interface} has no peer {peer}; not adding it")
            }
            WgError::Io {
                action,
                interface,
                backend,
                source,
            } => {
                write!(f, "cannot {action} of {interface} ({backend}): {source}")?;
                if source.kind() == io::ErrorKind::PermissionDenied {
                    f.write_str(
                        "; run as root or grant CAP_NET_ADMIN \
                         (e.g. setcap cap_net_admin+ep /usr/bin/oracle-watchdog)",
                    )?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for WgError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WgError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// The resolver's view of WireGuard; the real one is [`WgControl`], tests
/// plug in fakes.
pub trait WgBackend {
    /// Reads the peer `peer` of `interface`.
    fn read_peer(&mut self, interface: &str, peer: &PeerKey) -> Result<PeerState, WgError>;

    /// Sets the endpoint of the existing peer `peer` of `interface`, and
    /// nothing else. Must fail, not create, when either is missing.
    fn set_endpoint(
        &mut self,
        interface: &str,
        peer: &PeerKey,
        endpoint: SocketAddrV4,
    ) -> Result<(), WgError>;
}

/// [`WgBackend`] over `wireguard-control`, with the configured
/// kernel/userspace/auto choice.
#[derive(Debug, Clone)]
pub struct WgControl {
    selection: WireguardBackend,
    socket_dirs: Vec<PathBuf>,
}

impl WgControl {
    /// An adapter for the configured backend.
    pub fn new(selection: WireguardBackend) -> WgControl {
        WgControl {
            selection,
            socket_dirs: SOCKET_DIRS.iter().map(PathBuf::from).collect(),
        }
    }

    /// The userspace UAPI socket of `interface`, if one exists.
    fn socket_of(&self, interface: &str) -> Option<PathBuf> {
        self.socket_dirs
            .iter()
            .map(|d| d.join(format!("{interface}.sock")))
            .find(|p| is_socket(p))
    }

    /// Reads the device after checking it exists, on the selected backend.
    fn device(&self, interface: &str) -> Result<Device, WgError> {
        let name: InterfaceName = interface
            .parse()
            .map_err(|_| WgError::InvalidInterfaceName {
                interface: interface.to_string(),
            })?;
        match self.selection {
            WireguardBackend::Kernel => kernel_device(interface, &name),
            WireguardBackend::Userspace => self.userspace_device(interface, &name),
            WireguardBackend::Auto => match self.userspace_device(interface, &name) {
                Err(WgError::InterfaceMissing { .. }) => kernel_device(interface, &name),
                other => other,
            },
        }
    }

    fn userspace_device(&self, interface: &str, name: &InterfaceName) -> Result<Device, WgError> {
        let missing = || WgError::InterfaceMissing {
            interface: interface.to_string(),
            backend: "userspace",
        };
        if self.socket_of(interface).is_none() {
            return Err(missing());
        }
        Device::get(name, Backend::Userspace).map_err(|source| match source.kind() {
            // A socket file left behind by a dead wireguard-go.
            io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => missing(),
            _ => WgError::Io {
                action: "read device",
                interface: interface.to_string(),
                backend: "userspace",
                source,
            },
        })
    }
}

/// Lists kernel WireGuard links first (rtnetlink, works without the module)
/// so a missing interface is told apart from a netlink failure.
fn kernel_device(interface: &str, name: &InterfaceName) -> Result<Device, WgError> {
    let io_err = |action, source| WgError::Io {
        action,
        interface: interface.to_string(),
        backend: "kernel",
        source,
    };
    let links = Device::list(Backend::Kernel).map_err(|e| io_err("list interfaces", e))?;
    if !links.contains(name) {
        return Err(WgError::InterfaceMissing {
            interface: interface.to_string(),
            backend: "kernel",
        });
    }
    Device::get(name, Backend::Kernel).map_err(|source| {
        if source.raw_os_error() == Some(libc_enodev()) {
            WgError::InterfaceMissing {
                interface: interface.to_string(),
                backend: "kernel",
            }
        } else {
            io_err("read device", source)
        }
    })
}

/// `ENODEV` on Linux (the kernel's answer for a vanished link).
const fn libc_enodev() -> i32 {
    19
}

fn is_socket(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

fn backend_name(b: Backend) -> &'static str {
    match b {
        Backend::Kernel => "kernel",
        Backend::Userspace => "userspace",
    }
}

fn find_peer<'a>(
    device: &'a Device,
    interface: &str,
    peer: &PeerKey,
) -> Result<&'a wireguard_control::PeerInfo, WgError> {
    let key = peer.to_wg();
    device
        .peers
        .iter()
        .find(|p| p.config.public_key == key)
        .ok_or_else(|| WgError::PeerMissing {
            interface: interface.to_string(),
            peer: *peer,
        })
}

impl WgBackend for WgControl {
    fn read_peer(&mut self, interface: &str, peer: &PeerKey) -> Result<PeerState, WgError> {
        let device = self.device(interface)?;
        let info = find_peer(&device, interface, peer)?;
        Ok(PeerState {
            endpoint: info.config.endpoint,
            last_handshake: info.stats.last_handshake_time,
            backend: backend_name(device.backend),
        })
    }

    fn set_endpoint(
        &mut self,
        interface: &str,
        peer: &PeerKey,
        endpoint: SocketAddrV4,
    ) -> Result<(), WgError> {
        // Re-check right before applying: apply() would create what is gone.
        let device = self.device(interface)?;
        find_peer(&device, interface, peer)?;
        let backend = device.backend;
        let name = device.name;
        drop(device);
        DeviceUpdate::new()
            .add_peer(PeerConfigBuilder::new(&peer.to_wg()).set_endpoint(SocketAddr::V4(endpoint)))
            .apply(&name, backend)
            .map_err(|source| WgError::Io {
                action: "set the peer endpoint",
                interface: interface.to_string(),
                backend: backend_name(backend),
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";

    #[test]
    fn peer_keys_round_trip_and_reject_garbage() {
        let k = PeerKey::parse(KEY).unwrap();
        assert_eq!(k.to_base64(), KEY);
        assert_eq!(k.to_string(), KEY);
        assert!(PeerKey::parse("abc").is_err());
        assert!(PeerKey::parse("AAAA").is_err(), "3 bytes");
        assert!(PeerKey::parse("not base64 at all!!").is_err());
    }

    fn control_with_dir(selection: WireguardBackend, dir: &Path) -> WgControl {
        WgControl {
            selection,
            socket_dirs: vec![dir.to_path_buf()],
        }
    }

    #[test]
    fn userspace_without_a_socket_is_missing_not_created() {
        let dir = std::env::temp_dir().join(format!("ow-wg-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // A plain file named like the socket is not a socket.
        std::fs::write(dir.join("owzz0.sock"), b"").unwrap();
        let mut wg = control_with_dir(WireguardBackend::Userspace, &dir);
        let key = PeerKey::parse(KEY).unwrap();
        let err = wg.read_peer("owzz0", &key).unwrap_err();
        assert!(matches!(err, WgError::InterfaceMissing { .. }), "{err}");
        assert!(err.is_retryable());
        let err = wg
            .set_endpoint("owzz0", &key, "10.0.0.1:51820".parse().unwrap())
            .unwrap_err();
        assert!(matches!(err, WgError::InterfaceMissing { .. }), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bad_interface_names_are_permanent() {
        let mut wg = WgControl::new(WireguardBackend::Auto);
        let key = PeerKey::parse(KEY).unwrap();
        let err = wg.read_peer("has space", &key).unwrap_err();
        assert!(matches!(err, WgError::InvalidInterfaceName { .. }));
        assert!(!err.is_retryable());
    }

    #[test]
    fn permission_errors_say_what_to_do() {
        let err = WgError::Io {
            action: "read device",
            interface: "wg0".into(),
            backend: "kernel",
            source: io::Error::from(io::ErrorKind::PermissionDenied),
        };
        let text = err.to_string();
        assert!(
            text.contains("wg0") && text.contains("CAP_NET_ADMIN"),
            "{text}"
        );
    }
}
