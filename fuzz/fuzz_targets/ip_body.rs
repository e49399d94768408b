//! Fuzz target: extracting the WAN IPv4 from an IP provider's body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oracle_watchdog::wandns::detect::parse_body;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match parse_body(&text) {
        Ok(ip) => assert!(!ip.is_unspecified()),
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
