//! Fuzz target: decoding Consul KV answers (`GET /v1/kv/...`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use oracle_watchdog::consul::decode_kv_listing;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match decode_kv_listing(text) {
        Ok(pairs) => {
            let _ = format!("{pairs:?}");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
