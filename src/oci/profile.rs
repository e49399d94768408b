//! The OCI config file (`~/.oci/config` INI) and the profile the agent uses.
//!
//! Parsed like the official SDKs (Python `configparser` without
//! interpolation): `[DEFAULT]` values are inherited by every profile; keys are
//! case-insensitive; `key = value` or `key: value` with surrounding whitespace
//! stripped; whole-line comments start with `#` or `;` (no inline comments,
//! so `#` inside a value is kept); indented lines continue the previous value;
//! a profile or key defined twice is an error.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use super::error::OciConfigError;
use crate::secret::Secret;

/// One profile of an OCI config file, with everything needed to sign requests.
#[derive(Clone)]
pub struct OciProfile {
    /// The config file it came from (for error messages).
    pub config_path: PathBuf,
    /// Profile name, e.g. `DEFAULT`.
    pub name: String,
    /// User OCID.
    pub user: String,
    /// Fingerprint of the API key as configured (checked against the key).
    pub fingerprint: String,
    /// Tenancy OCID.
    pub tenancy: String,
    /// Home region of the profile, e.g. `us-ashburn-1` (endpoint fallback).
    pub region: String,
    /// Path of the private key.
    ///
    /// `~` and `~/...` expand to `$HOME`. A relative path is resolved against
    /// the directory that contains the config file (not the working
    /// directory, which for a daemon is usually `/`), so a config and its key
    /// can be moved together.
    pub key_file: PathBuf,
    /// Pass phrase of an encrypted key; never shown.
    pub pass_phrase: Option<Secret>,
}

impl fmt::Debug for OciProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OciProfile")
            .field("config_path", &self.config_path)
            .field("name", &self.name)
            .field("user", &self.user)
            .field("fingerprint", &self.fingerprint)
            .field("tenancy", &self.tenancy)
            .field("region", &self.region)
            .field("key_file", &self.key_file)
            .field(
                "pass_phrase",
                &self.pass_phrase.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl OciProfile {
    /// Reads `path` and returns profile `profile` (merged over `[DEFAULT]`).
    pub fn load(path: &Path, profile: &str) -> Result<OciProfile, OciConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => OciConfigError::NotFound {
                path: path.to_path_buf(),
            },
            _ => OciConfigError::Unreadable {
                path: path.to_path_buf(),
                detail: e.to_string(),
            },
        })?;
        Self::parse(&text, path, profile)
    }

    /// Parses config text as if read from `path` (which anchors relative
    /// `key_file` paths and names the file in errors).
    pub fn parse(text: &str, path: &Path, profile: &str) -> Result<OciProfile, OciConfigError> {
        let ini = Ini::parse(text, path)?;
        let defaults = ini.sections.get("DEFAULT");
        let section = match ini.sections.get(profile) {
            Some(s) => Some(s),
            None if profile == "DEFAULT" && defaults.is_some() => defaults,
            None => {
                return Err(OciConfigError::MissingProfile {
                    path: path.to_path_buf(),
                    profile: profile.to_string(),
                    available: ini.order.clone(),
                });
            }
        };
        let get = |key: &'static str| -> Option<&str> {
            section
                .and_then(|s| s.get(key))
                .or_else(|| defaults.and_then(|d| d.get(key)))
                .map(String::as_str)
        };
        let required = |key: &'static str| -> Result<String, OciConfigError> {
            match get(key) {
                Some(v) if !v.is_empty() => Ok(v.to_string()),
                _ => Err(OciConfigError::MissingKey {
                    path: path.to_path_buf(),
                    profile: profile.to_string(),
                    key,
                }),
            }
        };
        let user = required("user")?;
        let fingerprint = required("fingerprint")?;
        let tenancy = required("tenancy")?;
        let region = required("region")?;
        let key_file_raw = required("key_file")?;
        let key_file =
            resolve_key_file(&key_file_raw, path).ok_or_else(|| OciConfigError::InvalidValue {
                path: path.to_path_buf(),
                profile: profile.to_string(),
                key: "key_file",
                detail: "starts with `~` but HOME is not set".to_string(),
            })?;
        let pass_phrase = get("pass_phrase")
            .filter(|p| !p.is_empty())
            .map(Secret::new);
        Ok(OciProfile {
            config_path: path.to_path_buf(),
            name: profile.to_string(),
            user,
            fingerprint,
            tenancy,
            region,
            key_file,
            pass_phrase,
        })
    }

    /// The `keyId` OCI expects: `{tenancy}/{user}/{fingerprint}`.
    pub fn key_id(&self) -> String {
        format!("{}/{}/{}", self.tenancy, self.user, self.fingerprint)
    }
}

/// Expands `~` and anchors relative paths at the config file's directory.
/// `None` when `~` is used without `HOME`.
fn resolve_key_file(raw: &str, config_path: &Path) -> Option<PathBuf> {
    let expanded = if raw == "~" {
        PathBuf::from(std::env::var_os("HOME")?)
    } else if let Some(rest) = raw.strip_prefix("~/") {
        PathBuf::from(std::env::var_os("HOME")?).join(rest)
    } else {
        PathBuf::from(raw)
    };
    if expanded.is_absolute() {
        return Some(expanded);
    }
    let base = config_path.parent().unwrap_or_else(|| Path::new(""));
    Some(base.join(expanded))
}

/// A parsed INI file: section name -> (lowercased key -> value).
struct Ini {
    sections: BTreeMap<String, BTreeMap<String, String>>,
    /// Section names in file order (DEFAULT excluded), for error messages.
    order: Vec<String>,
}

impl Ini {
    fn parse(text: &str, path: &Path) -> Result<Ini, OciConfigError> {
        let syntax = |line: usize, detail: String| OciConfigError::Syntax {
            path: path.to_path_buf(),
            line,
            detail,
        };
        let mut sections: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        let mut order = Vec::new();
        let mut current: Option<String> = None;
        let mut last_key: Option<String> = None;
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        for (idx, raw) in text.lines().enumerate() {
            let lineno = idx + 1;
            let line = raw.trim_end_matches('\r');
            let trimmed = line.trim();
            if trimmed.is_empty() {
                last_key = None;
                continue;
            }
            if trimmed.starts_with('#') || trimmed.starts_with(';') {
                continue;
            }
            let indented = line.starts_with(' ') || line.starts_with('\t');
            if indented && let (Some(sec), Some(key)) = (&current, &last_key) {
                if let Some(value) = sections.get_mut(sec).and_then(|s| s.get_mut(key)) {
                    value.push('\n');
                    value.push_str(trimmed);
                }
                continue;
            }
            if let Some(rest) = trimmed.strip_prefix('[') {
                let Some(name) = rest.strip_suffix(']') else {
                    return Err(syntax(lineno, "section header without closing `]`".into()));
                };
                let name = name.to_string();
                if sections.contains_key(&name) {
                    return Err(syntax(
                        lineno,
                        format!("profile [{}] is defined twice", name.escape_debug()),
                    ));
                }
                if name != "DEFAULT" {
                    order.push(name.clone());
                }
                sections.insert(name.clone(), BTreeMap::new());
                current = Some(name);
                last_key = None;
                continue;
            }
            let Some(sec) = &current else {
                return Err(syntax(
                    lineno,
                    "key outside of any [profile] section".into(),
                ));
            };
            let split = trimmed.find(['=', ':']);
            let Some(pos) = split else {
                return Err(syntax(lineno, "expected `key = value`".into()));
            };
            let key = trimmed[..pos].trim().to_ascii_lowercase();
            let value = trimmed[pos + 1..].trim().to_string();
            if key.is_empty() {
                return Err(syntax(lineno, "empty key before `=`".into()));
            }
            let entries = sections.entry(sec.clone()).or_default();
            if entries.contains_key(&key) {
                return Err(syntax(
                    lineno,
                    format!(
                        "key `{}` is set twice in [{}]",
                        key.escape_debug(),
                        sec.escape_debug()
                    ),
                ));
            }
            entries.insert(key.clone(), value);
            last_key = Some(key);
        }
        Ok(Ini { sections, order })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "\
# comment
[DEFAULT]
user = ocid1.user.oc1..default
fingerprint=aa:bb
tenancy : ocid1.tenancy.oc1..t
region = us-ashburn-1
key_file = keys/api.pem
; another comment

[PROD]
User = ocid1.user.oc1..prod
region = eu-frankfurt-1
pass_phrase = s3cret#not-a-comment
key_file = /abs/prod.pem

[BROKEN]
fingerprint =
";

    fn load(profile: &str) -> Result<OciProfile, OciConfigError> {
        OciProfile::parse(CONFIG, Path::new("/etc/ow/oci-config"), profile)
    }

    #[test]
    fn default_profile_and_relative_key_file() {
        let p = load("DEFAULT").expect("DEFAULT loads");
        assert_eq!(p.user, "ocid1.user.oc1..default");
        assert_eq!(p.fingerprint, "aa:bb");
        assert_eq!(p.tenancy, "ocid1.tenancy.oc1..t");
        assert_eq!(p.key_file, PathBuf::from("/etc/ow/keys/api.pem"));
        assert!(p.pass_phrase.is_none());
        assert_eq!(
            p.key_id(),
            "ocid1.tenancy.oc1..t/ocid1.user.oc1..default/aa:bb"
        );
    }

    #[test]
    fn named_profile_inherits_and_overrides_case_insensitive_keys() {
        let p = load("PROD").expect("PROD loads");
        assert_eq!(p.user, "ocid1.user.oc1..prod");
        assert_eq!(p.region, "eu-frankfurt-1");
        assert_eq!(p.fingerprint, "aa:bb");
        assert_eq!(p.key_file, PathBuf::from("/abs/prod.pem"));
        assert_eq!(
            p.pass_phrase.as_ref().map(Secret::expose),
            Some("s3cret#not-a-comment")
        );
    }

    #[test]
    fn debug_hides_the_pass_phrase() {
        let p = load("PROD").expect("PROD loads");
        let shown = format!("{p:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn empty_required_value_names_file_profile_and_key() {
        let err = load("BROKEN").expect_err("empty fingerprint");
        assert_eq!(
            err.to_string(),
            "OCI config file /etc/ow/oci-config profile [BROKEN]: missing key `fingerprint`"
        );
    }

    #[test]
    fn missing_profile_lists_the_available_ones() {
        let err = load("prod").expect_err("profile names are case-sensitive");
        assert_eq!(
            err.to_string(),
            "OCI config file /etc/ow/oci-config: no profile [prod] (profiles: PROD, BROKEN)"
        );
    }

    #[test]
    fn missing_key_without_default() {
        let text = "[PROD]\nuser=u\ntenancy=t\nregion=r\nkey_file=k\n";
        let err = OciProfile::parse(text, Path::new("c"), "PROD").expect_err("no fingerprint");
        assert!(
            matches!(
                err,
                OciConfigError::MissingKey {
                    key: "fingerprint",
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn duplicates_and_garbage_are_syntax_errors_with_line_numbers() {
        let dup = "[A]\nuser=1\nuser=2\n";
        let err = OciProfile::parse(dup, Path::new("c"), "A").expect_err("duplicate key");
        assert!(
            matches!(err, OciConfigError::Syntax { line: 3, .. }),
            "{err:?}"
        );
        let garbage = "[A]\nthis line has no equals sign\n";
        let err = OciProfile::parse(garbage, Path::new("c"), "A").expect_err("garbage");
        assert!(
            matches!(err, OciConfigError::Syntax { line: 2, .. }),
            "{err:?}"
        );
        let orphan = "user = x\n[A]\n";
        assert!(OciProfile::parse(orphan, Path::new("c"), "A").is_err());
    }

    #[test]
    fn crlf_bom_and_tilde() {
        let text = "\u{feff}[DEFAULT]\r\nuser=u\r\nfingerprint=f\r\ntenancy=t\r\nregion=r\r\nkey_file=~/.oci/key.pem\r\n";
        let p = OciProfile::parse(text, Path::new("/x/config"), "DEFAULT").expect("loads");
        assert_eq!(p.user, "u");
        if let Some(home) = std::env::var_os("HOME") {
            assert_eq!(p.key_file, PathBuf::from(home).join(".oci/key.pem"));
        }
    }

    #[test]
    fn missing_file_is_not_found() {
        let err =
            OciProfile::load(Path::new("/nonexistent/oci/config"), "DEFAULT").expect_err("missing");
        assert_eq!(
            err.to_string(),
            "OCI config file /nonexistent/oci/config: file not found"
        );
    }
}
