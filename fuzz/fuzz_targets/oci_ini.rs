//! Fuzz target: the OCI config file (INI) parser, for a fixed and an
//! input-chosen profile name.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use oracle_watchdog::oci::OciProfile;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The first line names a profile to ask for besides DEFAULT.
    let other = text.lines().next().unwrap_or("").trim_matches(['[', ']']);
    for profile in ["DEFAULT", other] {
        match OciProfile::parse(text, Path::new("/etc/oracle-watchdog/oci-config"), profile) {
            Ok(p) => {
                let _ = format!("{p:?}");
                let _ = p.key_id();
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
});
