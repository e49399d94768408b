//! WAN IPv4 detection: ask HTTP providers in order, first usable answer wins.
//!
//! Two body formats are understood: a plain body holding just the address
//! (`https://api.ipify.org`) and Cloudflare's trace format, `key=value` lines
//! with an `ip=` line (`https://1.1.1.1/cdn-cgi/trace`). Only IPv4 counts:
//! an IPv6 answer, HTML (a captive portal or an error page), an empty or
//! oversized body, a non-200 status or a provider slower than the timeout
//! make that provider fail, and the next one is asked.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use crate::http::{self, Timeouts, TrustRoots};

/// Largest provider body read; real answers are a few hundred bytes.
pub const MAX_DETECT_BODY: u64 = 4096;

/// Timeouts of every provider request (connect 5 s, whole call 10 s).
pub const DETECT_TIMEOUTS: Timeouts =
    Timeouts::new(Duration::from_secs(5), Duration::from_secs(10));

/// Why a body holds no usable IPv4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyProblem {
    /// Nothing but whitespace.
    Empty,
    /// An HTML page (captive portal, proxy error page).
    Html,
    /// An IPv6 address: the A record needs IPv4.
    Ipv6,
    /// `0.0.0.0`, which is never a host's public address.
    Unspecified,
    /// Anything else.
    Unrecognised,
}

impl std::fmt::Display for BodyProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BodyProblem::Empty => "the body is empty",
            BodyProblem::Html => "the body is an HTML page, not an address",
            BodyProblem::Ipv6 => "the answer is an IPv6 address; an IPv4 address is needed",
            BodyProblem::Unspecified => "the answer is 0.0.0.0",
            BodyProblem::Unrecognised => {
                "the body is neither a bare IPv4 address nor a trace with an ip= line"
            }
        })
    }
}

/// Why one provider did not give an address. Every variant is retried at
/// the next check; the next provider is tried right away.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DetectError {
    /// No answer within the timeout.
    Timeout,
    /// Connection refused, DNS or TLS failure, broken connection.
    Unreachable(String),
    /// The provider answered with a status other than 200.
    Status(u16),
    /// The body exceeded [`MAX_DETECT_BODY`].
    TooLarge,
    /// The body holds no usable IPv4 address.
    Body(BodyProblem),
}

impl std::fmt::Display for DetectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DetectError::Timeout => write!(f, "no answer within {:?}", DETECT_TIMEOUTS.total),
            DetectError::Unreachable(e) => write!(f, "unreachable: {e}"),
            DetectError::Status(s) => write!(f, "answered HTTP {s}"),
            DetectError::TooLarge => write!(f, "body larger than {MAX_DETECT_BODY} bytes"),
            DetectError::Body(p) => write!(f, "{p}"),
        }
    }
}

impl std::error::Error for DetectError {}

/// Extracts the IPv4 address from a provider's body (plain or trace format).
pub fn parse_body(body: &str) -> Result<Ipv4Addr, BodyProblem> {
    let text = body.trim();
    if text.is_empty() {
        return Err(BodyProblem::Empty);
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return usable(ip);
    }
    if let Some(value) = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("ip="))
    {
        return match value.trim().parse::<IpAddr>() {
            Ok(ip) => usable(ip),
            Err(_) => Err(BodyProblem::Unrecognised),
        };
    }
    let lower = text
        .get(..text.len().min(512))
        .unwrap_or("")
        .to_ascii_lowercase();
    if lower.starts_with('<') || lower.contains("<html") || lower.contains("<!doctype") {
        return Err(BodyProblem::Html);
    }
    Err(BodyProblem::Unrecognised)
}

fn usable(ip: IpAddr) -> Result<Ipv4Addr, BodyProblem> {
    match ip {
        IpAddr::V4(v4) if v4.is_unspecified() => Err(BodyProblem::Unspecified),
        IpAddr::V4(v4) => Ok(v4),
        IpAddr::V6(_) => Err(BodyProblem::Ipv6),
    }
}

/// Asks the configured providers for the WAN IPv4.
pub struct Detector {
    agent: ureq::Agent,
    providers: Vec<String>,
}

impl std::fmt::Debug for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detector")
            .field("providers", &self.providers)
            .finish_non_exhaustive()
    }
}

impl Detector {
    /// A detector over `providers` (URLs, tried in this order).
    pub fn new(providers: Vec<String>) -> Self {
        Self::with_timeouts(providers, DETECT_TIMEOUTS)
    }

    /// Like [`Detector::new`] with other timeouts (tests use short ones).
    pub fn with_timeouts(providers: Vec<String>, timeouts: Timeouts) -> Self {
        Detector {
            agent: http::agent(timeouts, &TrustRoots::Bundled),
            providers,
        }
    }

    /// The provider URLs in order.
    pub fn providers(&self) -> &[String] {
        &self.providers
    }

    /// Tries the providers in order; calls `failed` for each one that fails
    /// and returns the first address found with its provider, or `None`.
    pub fn detect(&self, mut failed: impl FnMut(&str, &DetectError)) -> Option<(Ipv4Addr, &str)> {
        for url in &self.providers {
            match self.ask(url) {
                Ok(ip) => return Some((ip, url.as_str())),
                Err(e) => failed(url, &e),
            }
        }
        None
    }

    /// Asks one provider.
    pub fn ask(&self, url: &str) -> Result<Ipv4Addr, DetectError> {
        let mut response = self
            .agent
            .get(url)
            .header("Accept", "text/plain")
            .call()
            .map_err(|e| transport(&e))?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(DetectError::Status(status));
        }
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_DETECT_BODY)
            .read_to_string()
            .map_err(|e| match e {
                ureq::Error::BodyExceedsLimit(_) => DetectError::TooLarge,
                ureq::Error::Io(ref io) if io.kind() == std::io::ErrorKind::InvalidData => {
                    DetectError::Body(BodyProblem::Unrecognised)
                }
                other => transport(&other),
            })?;
        parse_body(&body).map_err(DetectError::Body)
    }
}

fn transport(e: &ureq::Error) -> DetectError {
    if http::is_timeout(e) {
        DetectError::Timeout
    } else {
        DetectError::Unreachable(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_parsing_table() {
        let ok = |s: &str| Ok::<_, BodyProblem>(s.parse::<Ipv4Addr>().unwrap());
        let cases: &[(&str, Result<Ipv4Addr, BodyProblem>)] = &[
            ("203.0.113.7", ok("203.0.113.7")),
            ("203.0.113.7\n", ok("203.0.113.7")),
            ("  \t203.0.113.7 \r\n\r\n", ok("203.0.113.7")),
            (
                "fl=466f30\nh=1.1.1.1\nip=198.51.100.23\nts=1732420000.123\nvisit_scheme=https\nuag=x\ncolo=FRA\nhttp=http/2\nloc=DE\ntls=TLSv1.3\nsni=off\nwarp=off\ngateway=off\n",
                ok("198.51.100.23"),
            ),
            ("fl=1\r\nip=198.51.100.24\r\nts=1\r\n", ok("198.51.100.24")),
            // Private and CGNAT ranges are still IPv4 addresses: accepted.
            ("192.168.1.20", ok("192.168.1.20")),
            ("10.0.0.1", ok("10.0.0.1")),
            ("100.64.0.1", ok("100.64.0.1")),
            ("2001:db8::1", Err(BodyProblem::Ipv6)),
            ("fl=1\nip=2001:db8::5\nts=2\n", Err(BodyProblem::Ipv6)),
            ("::ffff:203.0.113.7", Err(BodyProblem::Ipv6)),
            ("", Err(BodyProblem::Empty)),
            (" \n\t ", Err(BodyProblem::Empty)),
            (
                "<!DOCTYPE html><html><body>Sign in to the hotel Wi-Fi</body></html>",
                Err(BodyProblem::Html),
            ),
            ("<html>203.0.113.7</html>", Err(BodyProblem::Html)),
            ("0.0.0.0", Err(BodyProblem::Unspecified)),
            ("203.0.113", Err(BodyProblem::Unrecognised)),
            ("203.0.113.256", Err(BodyProblem::Unrecognised)),
            ("203.000.113.7", Err(BodyProblem::Unrecognised)),
            ("your ip is 203.0.113.7", Err(BodyProblem::Unrecognised)),
            ("203.0.113.7 198.51.100.1", Err(BodyProblem::Unrecognised)),
            ("fl=1\nip=garbage\n", Err(BodyProblem::Unrecognised)),
            ("{\"ip\":\"203.0.113.7\"}", Err(BodyProblem::Unrecognised)),
        ];
        for (body, want) in cases {
            assert_eq!(parse_body(body), *want, "body {body:?}");
        }
    }

    use watchdog_standins::ipprovider::{IpAnswer, IpFault, IpProvider};

    fn short() -> Timeouts {
        Timeouts::new(Duration::from_millis(500), Duration::from_millis(700))
    }

    #[test]
    fn both_formats_from_a_real_server() {
        let p = IpProvider::start("203.0.113.40").unwrap();
        let d = Detector::with_timeouts(vec![p.trace_url(), p.plain_url()], short());
        assert_eq!(d.ask(&p.trace_url()), Ok(Ipv4Addr::new(203, 0, 113, 40)));
        assert_eq!(d.ask(&p.plain_url()), Ok(Ipv4Addr::new(203, 0, 113, 40)));
    }

    #[test]
    fn providers_in_order_first_success_wins_and_failures_are_reported() {
        let bad = IpProvider::start("203.0.113.1").unwrap();
        let good = IpProvider::start("203.0.113.2").unwrap();
        let spare = IpProvider::start("203.0.113.3").unwrap();
        let d = Detector::with_timeouts(
            vec![bad.plain_url(), good.trace_url(), spare.plain_url()],
            short(),
        );
        let faults = [
            (IpFault::Html, DetectError::Body(BodyProblem::Html)),
            (IpFault::Ipv6, DetectError::Body(BodyProblem::Ipv6)),
            (IpFault::Empty, DetectError::Body(BodyProblem::Empty)),
            (
                IpFault::Garbage,
                DetectError::Body(BodyProblem::Unrecognised),
            ),
            (IpFault::Oversized, DetectError::TooLarge),
            (IpFault::Status(503), DetectError::Status(503)),
            (IpFault::Hang, DetectError::Timeout),
        ];
        for (fault, want) in faults {
            bad.push([IpAnswer::Fault(fault.clone())]);
            let mut failures = Vec::new();
            let got = d.detect(|p, e| failures.push((p.to_string(), e.clone())));
            assert_eq!(
                got,
                Some((Ipv4Addr::new(203, 0, 113, 2), good.trace_url().as_str())),
                "{fault:?}"
            );
            assert_eq!(failures, vec![(bad.plain_url(), want)], "{fault:?}");
        }
        assert_eq!(spare.request_count(), 0, "never asked once one answered");
        // All fail: None, and every provider reported once.
        bad.set_fault(IpFault::Html);
        good.set_fault(IpFault::Empty);
        spare.set_fault(IpFault::Ipv6);
        let mut n = 0;
        assert_eq!(d.detect(|_, _| n += 1), None);
        assert_eq!(n, 3);
    }

    #[test]
    fn a_refused_connection_is_unreachable() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let d = Detector::with_timeouts(vec![], short());
        let e = d.ask(&format!("http://127.0.0.1:{port}/")).unwrap_err();
        assert!(matches!(e, DetectError::Unreachable(_)), "{e:?}");
    }

    #[test]
    fn problems_read_as_sentences() {
        assert!(
            DetectError::Body(BodyProblem::Ipv6)
                .to_string()
                .contains("IPv6")
        );
        assert_eq!(DetectError::Status(503).to_string(), "answered HTTP 503");
    }
}
