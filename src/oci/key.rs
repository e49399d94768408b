//! The OCI API signing key: loading every format OCI users have, its
//! fingerprint, and a file-permission check.
//!
//! Accepted: PKCS#8 (`BEGIN PRIVATE KEY`), PKCS#1 (`BEGIN RSA PRIVATE KEY`)
//! and PBES2-encrypted PKCS#8 (`BEGIN ENCRYPTED PRIVATE KEY`), with anything
//! around the PEM block ignored: blank lines, CRLF, and the `OCI_API_KEY` line
//! the console download (and the OCI CLI's instructions) add after it.
//! Everything else is refused with an error saying what was found.

use std::fmt;
use std::path::{Path, PathBuf};

use md5::{Digest as _, Md5};
use pkcs8::der::Decode as _;
use pkcs8::{EncryptedPrivateKeyInfo, PrivateKeyInfo};
use rsa::pkcs1::DecodeRsaPrivateKey as _;
use rsa::pkcs8::{EncodePublicKey as _, LineEnding};
use rsa::{Pkcs1v15Sign, RsaPrivateKey};
use sha2::Sha256;

use super::error::KeyError;

/// OID of `rsaEncryption` in a PKCS#8 `AlgorithmIdentifier`.
const RSA_ENCRYPTION: pkcs8::ObjectIdentifier =
    pkcs8::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
/// OID of `id-ecPublicKey`, to name EC keys in the error.
const EC_PUBLIC_KEY: pkcs8::ObjectIdentifier =
    pkcs8::ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// OID of Ed25519.
const ED25519: pkcs8::ObjectIdentifier = pkcs8::ObjectIdentifier::new_unwrap("1.3.101.112");

/// An RSA private key ready to sign OCI requests, plus its fingerprint.
#[derive(Clone)]
pub struct ApiKey {
    key: RsaPrivateKey,
    fingerprint: String,
    path: PathBuf,
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey")
            .field("path", &self.path)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl ApiKey {
    /// Loads the key at `path`, decrypting it with `pass_phrase` if it is
    /// encrypted PKCS#8. A pass phrase given for an unencrypted key is
    /// ignored (like the OCI SDKs: it may be inherited from `[DEFAULT]`).
    pub fn load(path: &Path, pass_phrase: Option<&str>) -> Result<ApiKey, KeyError> {
        let bytes = std::fs::read(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => KeyError::NotFound {
                path: path.to_path_buf(),
            },
            _ => KeyError::Unreadable {
                path: path.to_path_buf(),
                detail: e.to_string(),
            },
        })?;
        Self::from_pem_bytes(&bytes, pass_phrase, path)
    }

    /// Parses key file contents as if read from `path` (used in errors).
    pub fn from_pem_bytes(
        bytes: &[u8],
        pass_phrase: Option<&str>,
        path: &Path,
    ) -> Result<ApiKey, KeyError> {
        let not_a_key = |detail: &str| KeyError::NotAKey {
            path: path.to_path_buf(),
            detail: detail.to_string(),
        };
        let text = std::str::from_utf8(bytes).map_err(|_| not_a_key("the file is not text"))?;
        let block = PemBlock::find(text)
            .ok_or_else(|| not_a_key("no `-----BEGIN ...-----` block found"))?;
        let key = match block.label.as_str() {
            "PRIVATE KEY" => {
                let der = block
                    .der()
                    .ok_or_else(|| not_a_key("the PEM block is not valid base64"))?;
                rsa_from_pkcs8(&der, path)?
            }
            "RSA PRIVATE KEY" => {
                if block.has_header("Proc-Type") {
                    return Err(KeyError::LegacyEncryption {
                        path: path.to_path_buf(),
                    });
                }
                let der = block
                    .der()
                    .ok_or_else(|| not_a_key("the PEM block is not valid base64"))?;
                RsaPrivateKey::from_pkcs1_der(&der)
                    .map_err(|_| not_a_key("the RSA PRIVATE KEY block does not parse as PKCS#1"))?
            }
            "ENCRYPTED PRIVATE KEY" => {
                let der = block
                    .der()
                    .ok_or_else(|| not_a_key("the PEM block is not valid base64"))?;
                let info = EncryptedPrivateKeyInfo::from_der(&der).map_err(|_| {
                    not_a_key("the ENCRYPTED PRIVATE KEY block does not parse as PKCS#8")
                })?;
                let Some(pass) = pass_phrase else {
                    return Err(KeyError::PassPhraseRequired {
                        path: path.to_path_buf(),
                    });
                };
                let plain = info.decrypt(pass.as_bytes()).map_err(|e| match e {
                    pkcs8::Error::EncryptedPrivateKey(
                        pkcs8::pkcs5::Error::UnsupportedAlgorithm { .. },
                    ) => KeyError::Unsupported {
                        path: path.to_path_buf(),
                        found: "PKCS#8 encrypted with an unsupported cipher (use PBES2 with AES)"
                            .into(),
                    },
                    _ => KeyError::WrongPassPhrase {
                        path: path.to_path_buf(),
                    },
                })?;
                // A wrong pass phrase can pass the padding check by chance and
                // then yield garbage: that is still a wrong pass phrase.
                if PrivateKeyInfo::from_der(plain.as_bytes()).is_err() {
                    return Err(KeyError::WrongPassPhrase {
                        path: path.to_path_buf(),
                    });
                }
                rsa_from_pkcs8(plain.as_bytes(), path)?
            }
            "PUBLIC KEY" | "RSA PUBLIC KEY" | "SSH2 PUBLIC KEY" => {
                return Err(KeyError::PublicKey {
                    path: path.to_path_buf(),
                });
            }
            "EC PRIVATE KEY" | "DSA PRIVATE KEY" | "OPENSSH PRIVATE KEY" => {
                return Err(KeyError::Unsupported {
                    path: path.to_path_buf(),
                    found: block.label.clone(),
                });
            }
            other => return Err(not_a_key(&format!("found a `{other}` block"))),
        };
        let fingerprint =
            fingerprint_of(&key).ok_or_else(|| not_a_key("cannot encode the public key"))?;
        Ok(ApiKey {
            key,
            fingerprint,
            path: path.to_path_buf(),
        })
    }

    /// The key's fingerprint as OCI shows it: MD5 of the DER
    /// SubjectPublicKeyInfo, lowercase hex pairs joined by `:`.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The file the key came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Refuses a key whose fingerprint is not the configured one: otherwise
    /// the only symptom would be a 401 on every request.
    pub fn verify_fingerprint(&self, configured: &str) -> Result<(), KeyError> {
        if configured.trim().eq_ignore_ascii_case(&self.fingerprint) {
            Ok(())
        } else {
            Err(KeyError::FingerprintMismatch {
                path: self.path.clone(),
                configured: configured.trim().to_string(),
                actual: self.fingerprint.clone(),
            })
        }
    }

    /// The public half as a PEM `PUBLIC KEY` block (what gets uploaded to
    /// OCI; also what the stand-in is given to verify signatures).
    pub fn public_key_pem(&self) -> String {
        self.key
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap_or_default()
    }

    /// RSA PKCS#1 v1.5 signature with SHA-256 over `message` (blinded).
    pub(crate) fn sign_sha256(&self, message: &[u8]) -> Result<Vec<u8>, rsa::Error> {
        let digest = Sha256::digest(message);
        self.key.sign_with_rng(
            &mut rsa::rand_core::OsRng,
            Pkcs1v15Sign::new::<Sha256>(),
            &digest,
        )
    }
}

/// Returns a warning when the key file may be read by group or others
/// (`None` when it is private, or when the mode cannot be read). The caller
/// logs it; the key is still used, like OpenSSH does not for its keys but OCI
/// tooling does.
pub fn permission_warning(path: &Path) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
        if mode & 0o044 != 0 {
            return Some(format!(
                "OCI API key {} is readable by {} (mode {mode:04o}); run `chmod 600 {}`",
                path.display(),
                if mode & 0o004 != 0 {
                    "everyone"
                } else {
                    "its group"
                },
                path.display()
            ));
        }
        None
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

fn rsa_from_pkcs8(der: &[u8], path: &Path) -> Result<RsaPrivateKey, KeyError> {
    let info = PrivateKeyInfo::from_der(der).map_err(|_| KeyError::NotAKey {
        path: path.to_path_buf(),
        detail: "the PRIVATE KEY block does not parse as PKCS#8".into(),
    })?;
    let oid = info.algorithm.oid;
    if oid != RSA_ENCRYPTION {
        let found = if oid == EC_PUBLIC_KEY {
            "EC private key".to_string()
        } else if oid == ED25519 {
            "Ed25519 private key".to_string()
        } else {
            format!("private key with algorithm {oid}")
        };
        return Err(KeyError::Unsupported {
            path: path.to_path_buf(),
            found,
        });
    }
    RsaPrivateKey::try_from(info).map_err(|_| KeyError::NotAKey {
        path: path.to_path_buf(),
        detail: "the RSA key inside the PKCS#8 block is malformed".into(),
    })
}

fn fingerprint_of(key: &RsaPrivateKey) -> Option<String> {
    let der = key.to_public_key().to_public_key_der().ok()?;
    let digest = Md5::digest(der.as_bytes());
    Some(
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":"),
    )
}

/// The first PEM block of a file: label, RFC 1421 headers, base64 body.
struct PemBlock {
    label: String,
    headers: Vec<String>,
    body: String,
}

impl PemBlock {
    fn find(text: &str) -> Option<PemBlock> {
        let mut lines = text.lines().map(|l| l.trim());
        let label = loop {
            let line = lines.next()?;
            if let Some(rest) = line.strip_prefix("-----BEGIN ")
                && let Some(label) = rest.strip_suffix("-----")
            {
                break label.to_string();
            }
        };
        let end = format!("-----END {label}-----");
        let mut headers = Vec::new();
        let mut body = String::new();
        for line in lines {
            if line == end {
                return Some(PemBlock {
                    label,
                    headers,
                    body,
                });
            }
            if line.contains(':') {
                headers.push(line.to_string());
            } else {
                body.push_str(line);
            }
        }
        None
    }

    fn has_header(&self, name: &str) -> bool {
        self.headers.iter().any(|h| {
            h.split(':')
                .next()
                .is_some_and(|n| n.trim().eq_ignore_ascii_case(name))
        })
    }

    fn der(&self) -> Option<Vec<u8>> {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(&self.body)
            .ok()
    }
}
