//! Where Consul is and how to authenticate, resolved the way the consul CLI
//! resolves it, so users' existing `CONSUL_*` environment just works.

use std::path::PathBuf;

use super::error::ConsulSetupError;
use crate::http::TrustRoots;
use crate::secret::Secret;

/// Address used when neither the config file nor `CONSUL_HTTP_ADDR` gives one.
pub const DEFAULT_ADDRESS: &str = "consul.service.consul:8500";

/// Resolved connection settings for [`super::ConsulClient`].
#[derive(Debug, Clone)]
pub struct ConsulSettings {
    /// Base URL without trailing slash, e.g. `http://127.0.0.1:8500`.
    pub base_url: String,
    /// ACL token sent as `X-Consul-Token`, if any.
    pub token: Option<Secret>,
    /// Certificates trusted for `https` addresses.
    pub roots: TrustRoots,
}

impl ConsulSettings {
    /// Resolves settings from the config file's `consul_address` (wins when
    /// set) and the environment: `CONSUL_HTTP_ADDR` (`host:port` or URL),
    /// `CONSUL_HTTP_SSL`, `CONSUL_HTTP_TOKEN`, `CONSUL_HTTP_TOKEN_FILE` (wins
    /// over the token variable, as in the consul CLI) and `CONSUL_CACERT`.
    /// `env` is injected so tests need not touch the process environment.
    pub fn resolve(
        config_address: Option<&str>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConsulSetupError> {
        let non_empty = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        let (address, source) = match (config_address, non_empty("CONSUL_HTTP_ADDR")) {
            (Some(a), _) => (a.to_string(), "consul_address"),
            (None, Some(a)) => (a, "CONSUL_HTTP_ADDR"),
            (None, None) => (DEFAULT_ADDRESS.to_string(), "default"),
        };
        let ssl = match non_empty("CONSUL_HTTP_SSL") {
            Some(v) => parse_bool(&v).ok_or(ConsulSetupError::BadBool {
                variable: "CONSUL_HTTP_SSL",
                value: v,
            })?,
            None => false,
        };
        let base_url =
            base_url(address.trim(), ssl).map_err(|problem| ConsulSetupError::BadAddress {
                source,
                address: address.clone(),
                problem,
            })?;

        let token = match non_empty("CONSUL_HTTP_TOKEN_FILE") {
            Some(path) => {
                let path = PathBuf::from(path);
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    ConsulSetupError::UnreadableFile {
                        variable: "CONSUL_HTTP_TOKEN_FILE",
                        path: path.clone(),
                        detail: e.to_string(),
                    }
                })?;
                let t = text.trim();
                if t.is_empty() {
                    non_empty("CONSUL_HTTP_TOKEN").map(|t| Secret::new(t.trim()))
                } else {
                    Some(Secret::new(t))
                }
            }
            None => non_empty("CONSUL_HTTP_TOKEN").map(|t| Secret::new(t.trim())),
        };

        let roots = match non_empty("CONSUL_CACERT") {
            Some(path) => TrustRoots::Custom(load_ca(PathBuf::from(path))?),
            None => TrustRoots::Bundled,
        };
        Ok(ConsulSettings {
            base_url,
            token,
            roots,
        })
    }

    /// [`ConsulSettings::resolve`] with the process environment.
    pub fn from_env(config_address: Option<&str>) -> Result<Self, ConsulSetupError> {
        Self::resolve(config_address, |name| std::env::var(name).ok())
    }
}

/// Go's `strconv.ParseBool`, which the consul CLI uses for `CONSUL_HTTP_SSL`.
fn parse_bool(v: &str) -> Option<bool> {
    match v.trim() {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// `host:port` -> `http(s)://host:port`; URLs are kept (minus a trailing `/`).
fn base_url(address: &str, ssl: bool) -> Result<String, String> {
    if address.is_empty() {
        return Err("empty".into());
    }
    let (scheme, rest) = match address.split_once("://") {
        Some(("http", rest)) => (if ssl { "https" } else { "http" }, rest),
        Some(("https", rest)) => ("https", rest),
        Some((other, _)) => {
            return Err(format!(
                "unsupported scheme {other:?} (use http:// or https://)"
            ));
        }
        None => (if ssl { "https" } else { "http" }, address),
    };
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() || rest.contains(char::is_whitespace) {
        return Err("expected host:port".into());
    }
    if rest.contains('/') {
        return Err("a path is not supported, give only scheme://host:port".into());
    }
    Ok(format!("{scheme}://{rest}"))
}

/// Reads every certificate from a PEM file.
fn load_ca(path: PathBuf) -> Result<Vec<ureq::tls::Certificate<'static>>, ConsulSetupError> {
    let pem = std::fs::read(&path).map_err(|e| ConsulSetupError::UnreadableFile {
        variable: "CONSUL_CACERT",
        path: path.clone(),
        detail: e.to_string(),
    })?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => certs.push(c),
            Ok(_) => {}
            Err(e) => {
                return Err(ConsulSetupError::BadCertificate {
                    path,
                    detail: e.to_string(),
                });
            }
        }
    }
    if certs.is_empty() {
        return Err(ConsulSetupError::BadCertificate {
            path,
            detail: "no PEM certificate found".into(),
        });
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn resolve(
        config: Option<&str>,
        vars: &[(&str, &str)],
    ) -> Result<ConsulSettings, ConsulSetupError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ConsulSettings::resolve(config, |k| map.get(k).cloned())
    }

    #[test]
    fn default_address_when_nothing_is_set() {
        let s = resolve(None, &[]).unwrap();
        assert_eq!(s.base_url, "http://consul.service.consul:8500");
        assert!(s.token.is_none());
    }

    #[test]
    fn env_address_forms() {
        let cases = [
            ("127.0.0.1:8500", &[][..], "http://127.0.0.1:8500"),
            ("http://10.0.0.1:8500/", &[][..], "http://10.0.0.1:8500"),
            ("https://c.example:8501", &[][..], "https://c.example:8501"),
            (
                "c.example:8501",
                &[("CONSUL_HTTP_SSL", "true")][..],
                "https://c.example:8501",
            ),
            (
                "c.example:8500",
                &[("CONSUL_HTTP_SSL", "0")][..],
                "http://c.example:8500",
            ),
        ];
        for (addr, extra, want) in cases {
            let mut vars = vec![("CONSUL_HTTP_ADDR", addr)];
            vars.extend_from_slice(extra);
            assert_eq!(resolve(None, &vars).unwrap().base_url, want, "{addr}");
        }
    }

    #[test]
    fn config_address_wins_over_env() {
        let s = resolve(Some("cfg:8500"), &[("CONSUL_HTTP_ADDR", "env:8500")]).unwrap();
        assert_eq!(s.base_url, "http://cfg:8500");
    }

    #[test]
    fn bad_values_are_setup_errors_naming_the_source() {
        let e = resolve(None, &[("CONSUL_HTTP_ADDR", "unix:///tmp/c.sock")]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("CONSUL_HTTP_ADDR: invalid Consul address"),
            "{e}"
        );
        let e = resolve(None, &[("CONSUL_HTTP_SSL", "yes please")]).unwrap_err();
        assert!(matches!(e, ConsulSetupError::BadBool { .. }));
        let e = resolve(Some("h:1/path"), &[]).unwrap_err();
        assert!(e.to_string().starts_with("consul_address:"), "{e}");
    }

    #[test]
    fn token_file_wins_and_is_trimmed() {
        let dir = std::env::temp_dir().join(format!("ow-consul-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token");
        std::fs::write(&file, "file-token\n").unwrap();
        let s = resolve(
            None,
            &[
                ("CONSUL_HTTP_TOKEN", "env-token"),
                ("CONSUL_HTTP_TOKEN_FILE", file.to_str().unwrap()),
            ],
        )
        .unwrap();
        assert_eq!(s.token.unwrap().expose(), "file-token");
        let s = resolve(None, &[("CONSUL_HTTP_TOKEN", " env-token ")]).unwrap();
        assert_eq!(s.token.unwrap().expose(), "env-token");
        let missing = dir.join("nope");
        let e = resolve(
            None,
            &[("CONSUL_HTTP_TOKEN_FILE", missing.to_str().unwrap())],
        )
        .unwrap_err();
        assert!(matches!(e, ConsulSetupError::UnreadableFile { .. }));
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn cacert_must_hold_a_certificate() {
        let dir = std::env::temp_dir().join(format!("ow-consul-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("ca.pem");
        std::fs::write(&file, "not a pem").unwrap();
        let e = resolve(None, &[("CONSUL_CACERT", file.to_str().unwrap())]).unwrap_err();
        assert!(matches!(e, ConsulSetupError::BadCertificate { .. }), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn debug_does_not_show_the_token() {
        let s = resolve(None, &[("CONSUL_HTTP_TOKEN", "s3cr3t-token")]).unwrap();
        assert!(!format!("{s:?}").contains("s3cr3t"));
    }
}
