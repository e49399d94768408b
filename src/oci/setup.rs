//! From the `oci:` config block to a ready [`ComputeClient`]: load the
//! profile and key, verify the fingerprint, resolve endpoints. Shared by the
//! agent and `oracle-watchdog check`, so both fail the same way.

use super::{ApiKey, ComputeClient, EndpointError, EndpointResolver, KeyError, OciConfigError};
use super::{OciProfile, RequestSigner, permission_warning};
use crate::config::OciSettings;

/// A compute client plus what was learned while building it.
pub struct OciSetup {
    /// The client, signing as the profile's user.
    pub client: ComputeClient,
    /// The profile that was loaded.
    pub profile: OciProfile,
    /// The key's fingerprint (public; shown by `check`).
    pub fingerprint: String,
    /// Non-fatal problems to log, e.g. a key file readable by others.
    pub warnings: Vec<String>,
}

impl std::fmt::Debug for OciSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OciSetup")
            .field("profile", &self.profile.name)
            .field("fingerprint", &self.fingerprint)
            .field("warnings", &self.warnings)
            .finish_non_exhaustive()
    }
}

/// Why the OCI client could not be built: always a configuration problem
/// (the process exits 2).
#[derive(Debug)]
#[non_exhaustive]
pub enum OciSetupError {
    /// The OCI config file or profile is unusable.
    Config(OciConfigError),
    /// The API key cannot be loaded or does not match the fingerprint.
    Key(KeyError),
    /// `oci.endpoint` or the profile's region is unusable.
    Endpoint(EndpointError),
}

impl std::fmt::Display for OciSetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OciSetupError::Config(e) => write!(f, "{e}"),
            OciSetupError::Key(e) => write!(f, "{e}"),
            OciSetupError::Endpoint(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for OciSetupError {}

/// Loads profile and key as configured and builds the client.
pub fn connect(settings: &OciSettings) -> Result<OciSetup, OciSetupError> {
    let profile = OciProfile::load(&settings.config_path, &settings.profile)
        .map_err(OciSetupError::Config)?;
    let pass = profile.pass_phrase.as_ref().map(|p| p.expose());
    let key = ApiKey::load(&profile.key_file, pass).map_err(OciSetupError::Key)?;
    key.verify_fingerprint(&profile.fingerprint)
        .map_err(OciSetupError::Key)?;
    let warnings: Vec<String> = permission_warning(&profile.key_file).into_iter().collect();
    let fingerprint = key.fingerprint().to_string();
    let resolver = EndpointResolver::new(settings.endpoint.as_deref(), &profile.region)
        .map_err(OciSetupError::Endpoint)?;
    let client = ComputeClient::new(RequestSigner::new(profile.key_id(), key), resolver);
    Ok(OciSetup {
        client,
        profile,
        fingerprint,
        warnings,
    })
}
