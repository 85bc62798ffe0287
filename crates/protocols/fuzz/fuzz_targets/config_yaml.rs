//! Any text as a configuration file: parsing and validation never panic; a configuration
//! they accept reloads onto itself as no change; every refusal names the file first
//! (`FILE:LINE:COL: …` or `FILE: …`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match causeway_config::parse(text, "fuzz.yaml") {
        Ok(config) => assert!(causeway_config::diff(&config, &config).is_empty()),
        Err(error) => assert!(error.to_string().starts_with("fuzz.yaml")),
    }
});
