//! Hostname -> IPv4 addresses for the peer endpoint, through the system
//! resolver (getaddrinfo: honours /etc/hosts, nsswitch and, under
//! `ip netns exec`, the namespace's /etc/netns/NAME/hosts).

use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs};

/// Why a hostname gave no usable address. Every variant is transient: DNS
/// may answer on the next tick.
#[derive(Debug)]
#[non_exhaustive]
pub enum ResolveError {
    /// The lookup itself failed (NXDOMAIN, no server reachable, timeout).
    Lookup {
        /// The hostname asked for.
        host: String,
        /// What getaddrinfo said.
        source: std::io::Error,
    },
    /// The name exists but has no IPv4 address (only AAAA records).
    NoIpv4 {
        /// The hostname asked for.
        host: String,
    },
}

impl ResolveError {
    /// Whether the next tick may succeed (always: DNS changes).
    pub fn is_retryable(&self) -> bool {
        true
    }
}

impl std::fmt::Display for ResolveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResolveError::Lookup { host, source } => {
                write!(f, "cannot resolve endpoint hostname {host:?}: {source}")
            }
            ResolveError::NoIpv4 { host } => {
                write!(f, "endpoint hostname {host:?} has no IPv4 address")
            }
        }
    }
}

impl std::error::Error for ResolveError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ResolveError::Lookup { source, .. } => Some(source),
            ResolveError::NoIpv4 { .. } => None,
        }
    }
}

/// Resolves a hostname to IPv4 addresses. A trait so the runner can be
/// tested with a scripted DNS.
pub trait Resolve {
    /// All IPv4 addresses of `host`, sorted and without duplicates; never
    /// empty on `Ok`.
    fn resolve_ipv4(&mut self, host: &str) -> Result<Vec<Ipv4Addr>, ResolveError>;
}

/// The system resolver (getaddrinfo via `std::net::ToSocketAddrs`). It blocks
/// for as long as resolv.conf's timeouts allow; it runs on the resolver's own
/// thread, so the heartbeat never waits for it.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve_ipv4(&mut self, host: &str) -> Result<Vec<Ipv4Addr>, ResolveError> {
        let addrs = (host, 0u16)
            .to_socket_addrs()
            .map_err(|source| ResolveError::Lookup {
                host: host.to_string(),
                source,
            })?;
        ipv4_only(host, addrs)
    }
}

/// Keeps the IPv4 answers, sorted and deduplicated (getaddrinfo repeats an
/// address once per socket type).
pub fn ipv4_only(
    host: &str,
    addrs: impl IntoIterator<Item = SocketAddr>,
) -> Result<Vec<Ipv4Addr>, ResolveError> {
    let mut v4: Vec<Ipv4Addr> = addrs
        .into_iter()
        .filter_map(|a| match a {
            SocketAddr::V4(a) => Some(*a.ip()),
            SocketAddr::V6(_) => None,
        })
        .collect();
    v4.sort_unstable();
    v4.dedup();
    if v4.is_empty() {
        return Err(ResolveError::NoIpv4 {
            host: host.to_string(),
        });
    }
    Ok(v4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_ipv4_sorted_unique() {
        let addrs: Vec<SocketAddr> = ["[fd00::1]:0", "10.0.0.10:0", "10.0.0.9:0", "10.0.0.10:0"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(
            ipv4_only("h", addrs).unwrap(),
            vec![
                "10.0.0.9".parse::<Ipv4Addr>().unwrap(),
                "10.0.0.10".parse().unwrap()
            ]
        );
    }

    #[test]
    fn only_ipv6_is_an_error_naming_the_host() {
        let addrs = vec!["[fd00::1]:0".parse::<SocketAddr>().unwrap()];
        let err = ipv4_only("peer.example", addrs).unwrap_err();
        assert!(matches!(err, ResolveError::NoIpv4 { .. }));
        assert!(err.to_string().contains("peer.example"));
    }

    #[test]
    fn system_resolver_reads_literals() {
        // Literals only: a unit test sends no DNS queries. Real lookups
        // (hosts file, failures) are covered in tests/wireguard.rs.
        let mut r = SystemResolver;
        assert_eq!(
            r.resolve_ipv4("127.0.0.1").unwrap(),
            vec![Ipv4Addr::LOCALHOST]
        );
        assert!(matches!(
            r.resolve_ipv4("::1"),
            Err(ResolveError::NoIpv4 { .. })
        ));
    }
}
