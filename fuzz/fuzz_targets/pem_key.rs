//! Fuzz target: API key loading (PKCS#8, PKCS#1, encrypted PKCS#8, junk),
//! with and without a pass phrase.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use oracle_watchdog::oci::ApiKey;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("/etc/oracle-watchdog/key.pem");
    for pass in [None, Some("correct horse battery staple")] {
        match ApiKey::from_pem_bytes(data, pass, path) {
            Ok(key) => {
                let _ = key.fingerprint();
                let _ = key.public_key_pem();
                let _ = format!("{key:?}");
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
});
