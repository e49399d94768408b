//! Errors of the OCI adapter: config file, API key, and compute calls.
//!
//! Each enum says what went wrong precisely enough for a user to fix it
//! (file, profile, key, fingerprints) and, for API calls, whether retrying can
//! help. None of them ever carries key material or a pass phrase.

use std::fmt;
use std::path::PathBuf;

/// A problem with the OCI config file (`~/.oci/config` style INI).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OciConfigError {
    /// The file does not exist.
    NotFound {
        /// The config file.
        path: PathBuf,
    },
    /// The file exists but could not be read (permissions, not a file, ...).
    Unreadable {
        /// The config file.
        path: PathBuf,
        /// The operating system's explanation.
        detail: String,
    },
    /// A line that is not a section header, `key = value`, comment or blank.
    Syntax {
        /// The config file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        detail: String,
    },
    /// The requested profile has no `[section]`.
    MissingProfile {
        /// The config file.
        path: PathBuf,
        /// The profile asked for.
        profile: String,
        /// Profiles that do exist, to spot typos.
        available: Vec<String>,
    },
    /// A required key is in neither the profile nor `[DEFAULT]`.
    MissingKey {
        /// The config file.
        path: PathBuf,
        /// The profile.
        profile: String,
        /// The missing key, e.g. `fingerprint`.
        key: &'static str,
    },
    /// A key is present but its value cannot be right.
    InvalidValue {
        /// The config file.
        path: PathBuf,
        /// The profile.
        profile: String,
        /// The key.
        key: &'static str,
        /// Why the value is refused (never the value of a secret).
        detail: String,
    },
}

impl fmt::Display for OciConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OciConfigError::NotFound { path } => {
                write!(f, "OCI config file {}: file not found", path.display())
            }
            OciConfigError::Unreadable { path, detail } => {
                write!(
                    f,
                    "OCI config file {}: cannot read: {detail}",
                    path.display()
                )
            }
            OciConfigError::Syntax { path, line, detail } => {
                write!(
                    f,
                    "OCI config file {} line {line}: {detail}",
                    path.display()
                )
            }
            OciConfigError::MissingProfile {
                path,
                profile,
                available,
            } => {
                // Names come from the file: escaped so the message stays one line.
                write!(
                    f,
                    "OCI config file {}: no profile [{}]",
                    path.display(),
                    profile.escape_debug()
                )?;
                if available.is_empty() {
                    f.write_str(" (the file defines no profiles)")
                } else {
                    let names: Vec<String> = available
                        .iter()
                        .map(|n| n.escape_debug().to_string())
                        .collect();
                    write!(f, " (profiles: {})", names.join(", "))
                }
            }
            OciConfigError::MissingKey { path, profile, key } => write!(
                f,
                "OCI config file {} profile [{}]: missing key `{key}`",
                path.display(),
                profile.escape_debug()
            ),
            OciConfigError::InvalidValue {
                path,
                profile,
                key,
                detail,
            } => write!(
                f,
                "OCI config file {} profile [{}]: key `{key}`: {detail}",
                path.display(),
                profile.escape_debug()
            ),
        }
    }
}

impl std::error::Error for OciConfigError {}

/// A problem with the API signing key or its fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    /// The key file does not exist.
    NotFound {
        /// The key file.
        path: PathBuf,
    },
    /// The key file exists but could not be read.
    Unreadable {
        /// The key file.
        path: PathBuf,
        /// The operating system's explanation.
        detail: String,
    },
    /// The key is encrypted and no `pass_phrase` was configured.
    PassPhraseRequired {
        /// The key file.
        path: PathBuf,
    },
    /// The configured `pass_phrase` does not decrypt the key.
    WrongPassPhrase {
        /// The key file.
        path: PathBuf,
    },
    /// Encrypted with OpenSSL's legacy PEM encryption (`Proc-Type: 4,ENCRYPTED`).
    LegacyEncryption {
        /// The key file.
        path: PathBuf,
    },
    /// A private key, but not an RSA one (OCI API keys are RSA).
    Unsupported {
        /// The key file.
        path: PathBuf,
        /// What kind of key or PEM block was found.
        found: String,
    },
    /// A public key where the private key was expected.
    PublicKey {
        /// The key file.
        path: PathBuf,
    },
    /// No PEM private key block, or one whose contents do not parse.
    NotAKey {
        /// The key file.
        path: PathBuf,
        /// What the parser said (never key bytes).
        detail: String,
    },
    /// The key is fine but its fingerprint differs from the configured one.
    FingerprintMismatch {
        /// The key file.
        path: PathBuf,
        /// `fingerprint` from the config file.
        configured: String,
        /// The fingerprint of the key in the file.
        actual: String,
    },
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::NotFound { path } => {
                write!(f, "OCI API key {}: file not found", path.display())
            }
            KeyError::Unreadable { path, detail } => {
                write!(f, "OCI API key {}: cannot read: {detail}", path.display())
            }
            KeyError::PassPhraseRequired { path } => write!(
                f,
                "OCI API key {}: the key is encrypted; set `pass_phrase` in the OCI config profile",
                path.display()
            ),
            KeyError::WrongPassPhrase { path } => write!(
                f,
                "OCI API key {}: the configured `pass_phrase` does not decrypt the key",
                path.display()
            ),
            KeyError::LegacyEncryption { path } => {
                let p = path.display();
                write!(
                    f,
                    "OCI API key {p}: legacy OpenSSL encryption (`Proc-Type: 4,ENCRYPTED`) is not supported; \
                     convert it to encrypted PKCS#8 with \
                     `openssl pkcs8 -topk8 -v2 aes-256-cbc -in {p} -out {p}.pk8` \
                     (asks for the old and a new pass phrase) and point `key_file` at the new file"
                )
            }
            KeyError::Unsupported { path, found } => write!(
                f,
                "OCI API key {}: unsupported key type ({found}); OCI API keys are RSA keys",
                path.display()
            ),
            KeyError::PublicKey { path } => write!(
                f,
                "OCI API key {}: this is a public key; `key_file` must point at the private key",
                path.display()
            ),
            KeyError::NotAKey { path, detail } => {
                write!(
                    f,
                    "OCI API key {}: not a PEM private key: {detail}",
                    path.display()
                )
            }
            KeyError::FingerprintMismatch {
                path,
                configured,
                actual,
            } => write!(
                f,
                "OCI API key {}: fingerprint {actual} does not match the configured fingerprint {configured}",
                path.display()
            ),
        }
    }
}

impl std::error::Error for KeyError {}

/// Which OCI API operation failed, for error messages and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `GET /20160918/instances/{id}`.
    GetInstance,
    /// `POST /20160918/instances/{id}?action=...`.
    InstanceAction(super::InstanceAction),
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Operation::GetInstance => f.write_str("GetInstance"),
            Operation::InstanceAction(a) => write!(f, "InstanceAction {}", a.as_str()),
        }
    }
}

/// A compute API call that did not succeed (after any retries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciError {
    /// What was being done.
    pub operation: Operation,
    /// The instance OCID it was done to.
    pub instance: String,
    /// `opc-request-id` of the last response, for Oracle support and logs.
    pub opc_request_id: Option<String>,
    /// How many HTTP attempts were made.
    pub attempts: u32,
    /// What went wrong.
    pub kind: OciErrorKind,
}

/// The classification of an [`OciError`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OciErrorKind {
    /// 401: the signature was rejected (wrong key, fingerprint, user, clock).
    NotAuthenticated {
        /// OCI's message.
        message: String,
    },
    /// 404 `NotAuthorizedOrNotFound`: no such instance, or no permission to see it.
    NotAuthorizedOrNotFound {
        /// OCI's message.
        message: String,
    },
    /// 409 `IncorrectState`: the action does not fit the instance's state.
    IncorrectState {
        /// OCI's message.
        message: String,
    },
    /// 500 "Out of host capacity": common on START of free-tier shapes.
    OutOfCapacity {
        /// OCI's message.
        message: String,
    },
    /// 429 still answered after the retry budget was spent.
    Throttled,
    /// 5xx, timeouts or connection failures after the retry budget was spent.
    Transient {
        /// The last failure.
        detail: String,
    },
    /// Any other 4xx: the request itself is wrong (a bug or a bad OCID).
    Rejected {
        /// HTTP status.
        status: u16,
        /// OCI's error code, e.g. `InvalidParameter`.
        code: String,
        /// OCI's message.
        message: String,
    },
    /// A 2xx answer that does not parse as an instance.
    BadResponse {
        /// What was wrong with it.
        detail: String,
    },
    /// No endpoint could be derived (unknown region) or the URL is invalid.
    Endpoint {
        /// What was wrong.
        detail: String,
    },
}

impl OciError {
    /// True when the same call may succeed later without anyone changing
    /// configuration. Out of capacity counts as retryable (OCI frees
    /// capacity over time) but the caller decides how patiently.
    pub fn is_retryable(&self) -> bool {
        match &self.kind {
            OciErrorKind::Throttled
            | OciErrorKind::Transient { .. }
            | OciErrorKind::OutOfCapacity { .. }
            | OciErrorKind::BadResponse { .. } => true,
            OciErrorKind::NotAuthenticated { .. }
            | OciErrorKind::NotAuthorizedOrNotFound { .. }
            | OciErrorKind::IncorrectState { .. }
            | OciErrorKind::Rejected { .. }
            | OciErrorKind::Endpoint { .. } => false,
        }
    }

    /// True when OCI could not be used at all (drives the
    /// `oracle_watchdog_agent_oci_connected` gauge), as opposed to answering
    /// "no" to this particular request.
    pub fn is_connectivity(&self) -> bool {
        matches!(
            self.kind,
            OciErrorKind::Transient { .. }
                | OciErrorKind::NotAuthenticated { .. }
                | OciErrorKind::Endpoint { .. }
        )
    }
}

impl fmt::Display for OciError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OCI {} {}: ", self.operation, self.instance)?;
        match &self.kind {
            OciErrorKind::NotAuthenticated { message } => {
                write!(
                    f,
                    "not authenticated (401): {message}; check user, tenancy, fingerprint and key_file"
                )
            }
            OciErrorKind::NotAuthorizedOrNotFound { message } => {
                write!(f, "instance not found or not authorized (404): {message}")
            }
            OciErrorKind::IncorrectState { message } => {
                write!(f, "incorrect state (409): {message}")
            }
            OciErrorKind::OutOfCapacity { message } => write!(f, "out of host capacity: {message}"),
            OciErrorKind::Throttled => {
                write!(f, "throttled (429) after {} attempts", self.attempts)
            }
            OciErrorKind::Transient { detail } => {
                write!(f, "{detail} (after {} attempts)", self.attempts)
            }
            OciErrorKind::Rejected {
                status,
                code,
                message,
            } => {
                write!(f, "rejected ({status} {code}): {message}")
            }
            OciErrorKind::BadResponse { detail } => write!(f, "unexpected response: {detail}"),
            OciErrorKind::Endpoint { detail } => write!(f, "no endpoint: {detail}"),
        }?;
        if let Some(id) = &self.opc_request_id {
            write!(f, " (opc-request-id {id})")?;
        }
        Ok(())
    }
}

impl std::error::Error for OciError {}
