//! Fuzz target: decoding OCI compute answers (instance JSON, error bodies).
//! The first two bytes pick the HTTP status, the rest is the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oracle_watchdog::oci::{Decoded, decode_response};

fuzz_target!(|data: &[u8]| {
    let (status, body) = match data {
        [a, b, rest @ ..] => (100 + u16::from_be_bytes([*a, *b]) % 500, rest),
        _ => return,
    };
    let Ok(text) = std::str::from_utf8(body) else {
        return;
    };
    match decode_response(status, text, Some("fuzz-request".into()), None) {
        Decoded::Instance(i) => {
            let _ = i.lifecycle_state.to_string();
        }
        Decoded::Failed(kind) | Decoded::Retry { kind, .. } => {
            let _ = format!("{kind:?}");
        }
    }
});
