//! Fuzz target: the YAML config parser, then validation for both modes.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use oracle_watchdog::config::{Config, Mode};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::from_yaml_str(text, Path::new("fuzz.yaml")) {
        Ok(config) => {
            for mode in [Mode::Monitor, Mode::Agent] {
                if let Err(e) = config.validate(mode) {
                    let _ = e.to_string();
                }
            }
            let _ = format!("{config:?}");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
