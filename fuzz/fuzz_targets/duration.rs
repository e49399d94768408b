//! Fuzz target: Go-style durations. Whatever parses must format and parse
//! back to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oracle_watchdog::config::{format_duration, parse_duration};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_duration(text) {
        Ok(d) => {
            let shown = format_duration(d);
            assert_eq!(parse_duration(&shown), Ok(d), "{text:?} -> {shown:?}");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
