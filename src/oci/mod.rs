//! OCI adapter: config file profiles, API keys, request signing, regions and
//! the compute client the agent uses to stop and start instances.
//!
//! Typical use:
//! ```no_run
//! # use oracle_watchdog::oci::*;
//! # fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let profile = OciProfile::load(std::path::Path::new("/etc/oracle-watchdog/oci-config"), "DEFAULT")?;
//! let key = ApiKey::load(&profile.key_file, profile.pass_phrase.as_ref().map(|p| p.expose()))?;
//! key.verify_fingerprint(&profile.fingerprint)?;
//! if let Some(warning) = permission_warning(&profile.key_file) { eprintln!("{warning}"); }
//! let signer = RequestSigner::new(profile.key_id(), key);
//! let client = ComputeClient::new(signer, EndpointResolver::new(None, &profile.region)?);
//! let instance = client.get_instance("ocid1.instance.oc1.iad.example", None)?;
//! println!("{}", instance.lifecycle_state);
//! # Ok(()) }
//! ```

mod compute;
mod error;
mod key;
mod profile;
mod region;
mod setup;
mod signer;

pub use compute::{
    CONNECT_TIMEOUT, ComputeClient, Decoded, Instance, InstanceAction, LifecycleState, RetryPolicy,
    TOTAL_TIMEOUT, decode_response,
};
pub use error::{KeyError, OciConfigError, OciError, OciErrorKind, Operation};
pub use key::{ApiKey, permission_warning};
pub use profile::OciProfile;
pub use region::{EndpointError, EndpointResolver, Region, region_by_name, region_for_instance};
pub use setup::{OciSetup, OciSetupError, connect};
pub use signer::{RequestSigner, SignError, SignedRequest};
