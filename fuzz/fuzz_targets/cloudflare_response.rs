//! Fuzz target: decoding Cloudflare v4 answers, one record and listings.
//! The first two bytes pick the HTTP status, the rest is the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oracle_watchdog::wandns::cloudflare::{decode_record, decode_record_list};

fuzz_target!(|data: &[u8]| {
    let (status, body) = match data {
        [a, b, rest @ ..] => (100 + u16::from_be_bytes([*a, *b]) % 500, rest),
        _ => return,
    };
    let Ok(text) = std::str::from_utf8(body) else {
        return;
    };
    if let Err(e) = decode_record(status, None, text) {
        let _ = (e.to_string(), e.is_transient());
    }
    if let Err(e) = decode_record_list(status, None, text) {
        let _ = (e.to_string(), e.is_transient());
    }
});
