//! OCI regions and realms, and which API endpoint serves a given instance.
//!
//! Instance OCIDs carry their region (`ocid1.instance.oc1.iad.…` is in
//! `us-ashburn-1`), so one agent can restart nodes in several regions with a
//! single profile. The endpoint is `https://iaas.{region}.{realm domain}`.

use std::fmt;

/// A region identifier with the domain of its realm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    /// Region identifier, e.g. `us-ashburn-1`.
    pub id: String,
    /// Realm, e.g. `oc1`.
    pub realm: String,
    /// Second-level domain of the realm, e.g. `oraclecloud.com`.
    pub domain: String,
}

impl Region {
    /// The Core Services (iaas) endpoint of this region.
    pub fn iaas_endpoint(&self) -> String {
        format!("https://iaas.{}.{}", self.id, self.domain)
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)
    }
}

/// OCI region keys (the three letters in instance OCIDs) and region identifiers
/// with their realm, as listed by the official Python SDK 2.189.0
/// (`oci/regions_definitions.py`). Sorted by key for binary search.
const REGIONS: &[(&str, &str, &str)] = &[
    ("aga", "us-saltlake-2", "oc1"),
    ("ahu", "me-abudhabi-3", "oc26"),
    ("ams", "eu-amsterdam-1", "oc1"),
    ("arn", "eu-stockholm-1", "oc1"),
    ("auh", "me-abudhabi-1", "oc1"),
    ("avf", "eu-crissier-1", "oc24"),
    ("avz", "eu-dcc-zurich-1", "oc24"),
    ("beg", "eu-jovanovac-1", "oc20"),
    ("bgy", "eu-dcc-milan-1", "oc14"),
    ("bno", "ap-chuncheon-2", "oc35"),
    ("bog", "sa-bogota-1", "oc1"),
    ("bom", "ap-mumbai-1", "oc1"),
    ("brs", "uk-gov-cardiff-1", "oc4"),
    ("cdg", "eu-paris-1", "oc1"),
    ("cwl", "uk-cardiff-1", "oc1"),
    ("dac", "ap-dcc-gazipur-1", "oc15"),
    ("dln", "ap-suwon-1", "oc35"),
    ("doh", "me-dcc-doha-1", "oc21"),
    ("dtm", "eu-dcc-rating-2", "oc14"),
    ("dtz", "ap-seoul-2", "oc35"),
    ("dus", "eu-dcc-rating-1", "oc14"),
    ("dxb", "me-dubai-1", "oc1"),
    ("ebb", "us-somerset-1", "oc23"),
    ("ebl", "us-thames-1", "oc23"),
    ("fra", "eu-frankfurt-1", "oc1"),
    ("gru", "sa-saopaulo-1", "oc1"),
    ("hnw", "sa-riodejaneiro-1", "oc52"),
    ("hsg", "ap-batam-1", "oc1"),
    ("hyd", "ap-hyderabad-1", "oc1"),
    ("iad", "us-ashburn-1", "oc1"),
    ("ibr", "me-ibri-1", "oc9"),
    ("icn", "ap-seoul-1", "oc1"),
    ("jbp", "ap-kulai-2", "oc1"),
    ("jed", "me-jeddah-1", "oc1"),
    ("jnb", "af-johannesburg-1", "oc1"),
    ("jsk", "eu-budapest-1", "oc51"),
    ("kix", "ap-osaka-1", "oc1"),
    ("lej", "af-casablanca-1", "oc1"),
    ("lfi", "us-langley-1", "oc2"),
    ("lhr", "uk-london-1", "oc1"),
    ("lin", "eu-milan-1", "oc1"),
    ("ltn", "uk-gov-london-1", "oc4"),
    ("luf", "us-luke-1", "oc2"),
    ("mad", "eu-madrid-1", "oc1"),
    ("mct", "me-dcc-muscat-1", "oc9"),
    ("mel", "ap-melbourne-1", "oc1"),
    ("mrs", "eu-marseille-1", "oc1"),
    ("mty", "mx-monterrey-1", "oc1"),
    ("mtz", "il-jerusalem-1", "oc1"),
    ("mxp", "eu-dcc-milan-2", "oc14"),
    ("nja", "ap-chiyoda-1", "oc8"),
    ("nrq", "eu-turin-1", "oc1"),
    ("nrt", "ap-tokyo-1", "oc1"),
    ("onm", "ap-delhi-1", "oc1"),
    ("ord", "us-chicago-1", "oc1"),
    ("orf", "eu-madrid-3", "oc1"),
    ("ork", "eu-dcc-dublin-1", "oc14"),
    ("pgc", "us-newark-1", "oc42"),
    ("phx", "us-phoenix-1", "oc1"),
    ("pia", "us-gov-chicago-1", "oc3"),
    ("qro", "mx-queretaro-1", "oc1"),
    ("rba", "me-alain-1", "oc26"),
    ("ric", "us-gov-ashburn-1", "oc3"),
    ("rkt", "me-abudhabi-2", "oc29"),
    ("ruh", "me-riyadh-1", "oc1"),
    ("scl", "sa-santiago-1", "oc1"),
    ("shj", "me-abudhabi-4", "oc29"),
    ("sin", "ap-singapore-1", "oc1"),
    ("sjc", "us-sanjose-1", "oc1"),
    ("snn", "eu-dcc-dublin-2", "oc14"),
    ("str", "eu-frankfurt-2", "oc19"),
    ("syd", "ap-sydney-1", "oc1"),
    ("tus", "us-gov-phoenix-1", "oc3"),
    ("ukb", "ap-ibaraki-1", "oc8"),
    ("vap", "sa-valparaiso-1", "oc1"),
    ("vcp", "sa-vinhedo-1", "oc1"),
    ("vll", "eu-madrid-2", "oc19"),
    ("vve", "me-alrayyan-1", "oc21"),
    ("wga", "ap-dcc-canberra-1", "oc10"),
    ("xsp", "ap-singapore-2", "oc1"),
    ("yny", "ap-chuncheon-1", "oc1"),
    ("yul", "ca-montreal-1", "oc1"),
    ("yxj", "us-ashburn-2", "oc42"),
    ("yyz", "ca-toronto-1", "oc1"),
    ("zrh", "eu-zurich-1", "oc1"),
];

/// Realms and their second-level domains (same source).
const REALMS: &[(&str, &str)] = &[
    ("oc1", "oraclecloud.com"),
    ("oc2", "oraclegovcloud.com"),
    ("oc3", "oraclegovcloud.com"),
    ("oc4", "oraclegovcloud.uk"),
    ("oc8", "oraclecloud8.com"),
    ("oc9", "oraclecloud9.com"),
    ("oc10", "oraclecloud10.com"),
    ("oc14", "oraclecloud14.com"),
    ("oc15", "oraclecloud15.com"),
    ("oc19", "oraclecloud.eu"),
    ("oc20", "oraclecloud20.com"),
    ("oc21", "oraclecloud21.com"),
    ("oc23", "oraclecloud23.com"),
    ("oc24", "oraclecloud24.com"),
    ("oc26", "oraclecloud26.com"),
    ("oc29", "oraclecloud29.com"),
    ("oc35", "oraclecloud35.com"),
    ("oc42", "oraclecloud42.com"),
    ("oc51", "oraclecloud51.com"),
    ("oc52", "oraclecloud52.com"),
];

fn realm_domain(realm: &str) -> Option<&'static str> {
    REALMS.iter().find(|(r, _)| *r == realm).map(|(_, d)| *d)
}

fn make(id: &str, realm: &str) -> Option<Region> {
    Some(Region {
        id: id.to_string(),
        realm: realm.to_string(),
        domain: realm_domain(realm)?.to_string(),
    })
}

/// Looks up a region by its three-letter key (`iad`) or its identifier
/// (`us-ashburn-1`), case-insensitively. An identifier that is not in the
/// table but looks like one (`xx-name-1`) is taken to be in realm `oc1`,
/// as the SDKs do, so regions newer than this table still work.
pub fn region_by_name(name: &str) -> Option<Region> {
    let name = name.trim().to_ascii_lowercase();
    if let Ok(i) = REGIONS.binary_search_by(|(k, _, _)| (*k).cmp(name.as_str())) {
        let (_, id, realm) = REGIONS[i];
        return make(id, realm);
    }
    if let Some((_, id, realm)) = REGIONS.iter().find(|(_, id, _)| *id == name) {
        return make(id, realm);
    }
    looks_like_region_id(&name)
        .then(|| make(&name, "oc1"))
        .flatten()
}

/// `letters-letters(-letters)*-digits`, e.g. `us-ashburn-1`, `us-gov-phoenix-1`.
fn looks_like_region_id(name: &str) -> bool {
    let parts: Vec<&str> = name.split('-').collect();
    parts.len() >= 3
        && parts
            .last()
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
}

/// The region an instance lives in, read from its OCID
/// (`ocid1.instance.{realm}.{region key or id}.{unique}`). `None` for OCIDs
/// without a known region part.
pub fn region_for_instance(ocid: &str) -> Option<Region> {
    let mut parts = ocid.split('.');
    let (Some(version), Some(_kind), Some(realm), Some(region)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    if !version.starts_with("ocid") || region.is_empty() {
        return None;
    }
    let found = region_by_name(region)?;
    if found.realm != realm && realm_domain(realm).is_some() {
        // A region id unknown to the table but in a known non-oc1 realm.
        return make(&found.id, realm);
    }
    Some(found)
}

/// Why no endpoint could be chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndpointError {
    /// `oci.endpoint` is not an `http://` or `https://` URL.
    InvalidOverride {
        /// The configured value.
        url: String,
    },
    /// A region name that is neither a key nor an identifier.
    UnknownRegion {
        /// The name, and where it came from.
        region: String,
        /// `profile`, `node`, ...
        source: &'static str,
    },
}

impl fmt::Display for EndpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndpointError::InvalidOverride { url } => {
                write!(f, "oci.endpoint `{url}` must be an http:// or https:// URL")
            }
            EndpointError::UnknownRegion { region, source } => {
                write!(f, "unknown OCI region `{region}` (from the {source})")
            }
        }
    }
}

impl std::error::Error for EndpointError {}

/// Chooses the API base URL for each call.
///
/// Precedence: the `oci.endpoint` override (used verbatim; the only way to
/// get plain `http`) > the node's `region` override > the region in the
/// instance OCID > the profile's region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointResolver {
    endpoint_override: Option<String>,
    profile_region: Option<Region>,
    profile_region_name: String,
}

impl EndpointResolver {
    /// A resolver with an optional override URL and the profile's region.
    /// An unknown profile region is only an error when it is actually
    /// needed (an OCID without a region and no node override).
    pub fn new(
        endpoint_override: Option<&str>,
        profile_region: &str,
    ) -> Result<Self, EndpointError> {
        let endpoint_override = match endpoint_override.map(str::trim).filter(|s| !s.is_empty()) {
            None => None,
            Some(url) => {
                let ok = (url.starts_with("http://") || url.starts_with("https://"))
                    && super::signer::split_url(url).is_some();
                if !ok {
                    return Err(EndpointError::InvalidOverride {
                        url: url.to_string(),
                    });
                }
                Some(url.trim_end_matches('/').to_string())
            }
        };
        Ok(EndpointResolver {
            endpoint_override,
            profile_region: region_by_name(profile_region),
            profile_region_name: profile_region.to_string(),
        })
    }

    /// Base URL (no trailing slash) for calls about `instance_id`, with the
    /// node's optional `region` override.
    pub fn base_url(
        &self,
        instance_id: &str,
        node_region: Option<&str>,
    ) -> Result<String, EndpointError> {
        if let Some(url) = &self.endpoint_override {
            return Ok(url.clone());
        }
        Ok(self.region(instance_id, node_region)?.iaas_endpoint())
    }

    /// The region calls about `instance_id` go to (ignores the override URL).
    pub fn region(
        &self,
        instance_id: &str,
        node_region: Option<&str>,
    ) -> Result<Region, EndpointError> {
        if let Some(name) = node_region.map(str::trim).filter(|s| !s.is_empty()) {
            return region_by_name(name).ok_or_else(|| EndpointError::UnknownRegion {
                region: name.to_string(),
                source: "node's region",
            });
        }
        if let Some(region) = region_for_instance(instance_id) {
            return Ok(region);
        }
        self.profile_region
            .clone()
            .ok_or_else(|| EndpointError::UnknownRegion {
                region: self.profile_region_name.clone(),
                source: "OCI profile",
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_for_binary_search() {
        assert!(REGIONS.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(
            REGIONS
                .iter()
                .all(|(_, _, realm)| realm_domain(realm).is_some())
        );
    }

    #[test]
    fn keys_and_ids_resolve() {
        assert_eq!(
            region_by_name("iad").map(|r| r.id),
            Some("us-ashburn-1".into())
        );
        assert_eq!(
            region_by_name("PHX").map(|r| r.id),
            Some("us-phoenix-1".into())
        );
        assert_eq!(
            region_by_name("eu-frankfurt-1").map(|r| r.iaas_endpoint()),
            Some("https://iaas.eu-frankfurt-1.oraclecloud.com".into())
        );
        let gov = region_by_name("us-gov-ashburn-1").expect("gov region");
        assert_eq!(
            (gov.realm.as_str(), gov.domain.as_str()),
            ("oc3", "oraclegovcloud.com")
        );
        assert_eq!(
            region_by_name("uk-gov-london-1").map(|r| r.domain),
            Some("oraclegovcloud.uk".into())
        );
        assert_eq!(
            region_by_name("xx-newplace-1").map(|r| r.domain),
            Some("oraclecloud.com".into())
        );
        assert_eq!(region_by_name("zzz"), None);
        assert_eq!(region_by_name("not a region"), None);
    }

    #[test]
    fn instance_ocids_carry_their_region() {
        let r = region_for_instance("ocid1.instance.oc1.iad.anuwcljt").expect("iad");
        assert_eq!(r.id, "us-ashburn-1");
        let r = region_for_instance("ocid1.instance.oc1.eu-frankfurt-1.antheljt").expect("full id");
        assert_eq!(r.id, "eu-frankfurt-1");
        assert_eq!(region_for_instance("ocid1.instance.oc1..aaaa"), None);
        assert_eq!(region_for_instance("garbage"), None);
    }

    #[test]
    fn endpoint_precedence() {
        let id = "ocid1.instance.oc1.iad.x";
        let plain = EndpointResolver::new(None, "eu-frankfurt-1").expect("valid");
        assert_eq!(
            plain.base_url(id, None).as_deref(),
            Ok("https://iaas.us-ashburn-1.oraclecloud.com")
        );
        assert_eq!(
            plain.base_url(id, Some("phx")).as_deref(),
            Ok("https://iaas.us-phoenix-1.oraclecloud.com")
        );
        assert_eq!(
            plain
                .base_url("ocid1.instance.oc1..noregion", None)
                .as_deref(),
            Ok("https://iaas.eu-frankfurt-1.oraclecloud.com")
        );
        let over =
            EndpointResolver::new(Some("http://127.0.0.1:9999/"), "eu-frankfurt-1").expect("valid");
        assert_eq!(
            over.base_url(id, Some("phx")).as_deref(),
            Ok("http://127.0.0.1:9999")
        );
        assert!(EndpointResolver::new(Some("ftp://x"), "iad").is_err());
        let bad = EndpointResolver::new(None, "nowhere").expect("checked lazily");
        assert!(matches!(
            bad.base_url("ocid1.instance.oc1..x", None),
            Err(EndpointError::UnknownRegion { .. })
        ));
        assert!(bad.base_url(id, None).is_ok());
        assert!(matches!(
            plain.base_url(id, Some("zzz")),
            Err(EndpointError::UnknownRegion { .. })
        ));
    }
}
