//! Errors of the Consul client, classified by what the caller should do.

use std::path::PathBuf;

/// A Consul call that did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConsulError {
    /// No HTTP answer: connection refused, DNS failure, TLS failure, reset.
    Unreachable {
        /// What was being done, e.g. `renew session`.
        action: &'static str,
        /// The transport's explanation.
        detail: String,
    },
    /// Connected (or tried to) but no complete answer within the timeout.
    Timeout {
        /// What was being done.
        action: &'static str,
    },
    /// Consul answered that the cluster has no leader (500 `No cluster leader`).
    NoLeader {
        /// What was being done.
        action: &'static str,
    },
    /// 403: the ACL token is missing, unknown or lacks permission.
    AclDenied {
        /// What was being done.
        action: &'static str,
        /// Consul's message (never contains the token).
        detail: String,
    },
    /// 404 for an object that must exist (e.g. renewing an expired session).
    NotFound {
        /// What was being done.
        action: &'static str,
    },
    /// Any other non-success HTTP status.
    Status {
        /// What was being done.
        action: &'static str,
        /// The HTTP status code.
        status: u16,
        /// The start of the response body.
        detail: String,
    },
    /// A 2xx answer that does not parse as what Consul sends.
    BadResponse {
        /// What was being done.
        action: &'static str,
        /// What was wrong with it.
        detail: String,
    },
}

impl ConsulError {
    /// True when trying again later can succeed without anyone changing
    /// configuration: transport failures, timeouts, leader elections, 5xx.
    pub fn is_retryable(&self) -> bool {
        match self {
            ConsulError::Unreachable { .. }
            | ConsulError::Timeout { .. }
            | ConsulError::NoLeader { .. }
            | ConsulError::BadResponse { .. } => true,
            ConsulError::Status { status, .. } => *status >= 500 || *status == 429,
            ConsulError::AclDenied { .. } | ConsulError::NotFound { .. } => false,
        }
    }

    /// True when Consul could not be used at all (as opposed to answering
    /// "no" to a particular request): drives the `*_consul_connected` gauges.
    pub fn is_connectivity(&self) -> bool {
        matches!(
            self,
            ConsulError::Unreachable { .. }
                | ConsulError::Timeout { .. }
                | ConsulError::NoLeader { .. }
        )
    }

    /// The action that failed, for log fields.
    pub fn action(&self) -> &'static str {
        match self {
            ConsulError::Unreachable { action, .. }
            | ConsulError::Timeout { action }
            | ConsulError::NoLeader { action }
            | ConsulError::AclDenied { action, .. }
            | ConsulError::NotFound { action }
            | ConsulError::Status { action, .. }
            | ConsulError::BadResponse { action, .. } => action,
        }
    }
}

impl std::fmt::Display for ConsulError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConsulError::Unreachable { action, detail } => {
                write!(f, "{action}: Consul unreachable: {detail}")
            }
            ConsulError::Timeout { action } => write!(f, "{action}: Consul did not answer in time"),
            ConsulError::NoLeader { action } => write!(f, "{action}: Consul cluster has no leader"),
            ConsulError::AclDenied { action, detail } => write!(
                f,
                "{action}: permission denied by Consul ACLs (check CONSUL_HTTP_TOKEN / CONSUL_HTTP_TOKEN_FILE): {detail}"
            ),
            ConsulError::NotFound { action } => write!(f, "{action}: not found"),
            ConsulError::Status {
                action,
                status,
                detail,
            } => write!(f, "{action}: Consul answered HTTP {status}: {detail}"),
            ConsulError::BadResponse { action, detail } => {
                write!(f, "{action}: unexpected answer from Consul: {detail}")
            }
        }
    }
}

impl std::error::Error for ConsulError {}

/// The Consul connection settings cannot be used: a configuration problem
/// the user must fix (the process exits 2).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConsulSetupError {
    /// The address is neither `host:port` nor an http(s) URL.
    BadAddress {
        /// Where the address came from (`CONSUL_HTTP_ADDR`, `consul_address`).
        source: &'static str,
        /// The address as given.
        address: String,
        /// What is wrong with it.
        problem: String,
    },
    /// `CONSUL_HTTP_SSL` is not a boolean.
    BadBool {
        /// The variable name.
        variable: &'static str,
        /// Its value.
        value: String,
    },
    /// A file named by the environment cannot be read.
    UnreadableFile {
        /// The variable that names it.
        variable: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        detail: String,
    },
    /// `CONSUL_CACERT` holds no usable PEM certificate.
    BadCertificate {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
}

impl std::fmt::Display for ConsulSetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConsulSetupError::BadAddress {
                source,
                address,
                problem,
            } => write!(f, "{source}: invalid Consul address {address:?}: {problem}"),
            ConsulSetupError::BadBool { variable, value } => {
                write!(f, "{variable}: expected true or false, got {value:?}")
            }
            ConsulSetupError::UnreadableFile {
                variable,
                path,
                detail,
            } => write!(f, "{variable}: cannot read {}: {detail}", path.display()),
            ConsulSetupError::BadCertificate { path, detail } => {
                write!(f, "CONSUL_CACERT: {}: {detail}", path.display())
            }
        }
    }
}

impl std::error::Error for ConsulSetupError {}
