//! Fuzzes `properties::recording` (tests/support/parser_properties.rs): the input is a
//! session's recording file.
#![no_main]

use std::sync::OnceLock;

#[path = "../../tests/support/parser_properties.rs"]
mod properties;

static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let dir = DIR.get_or_init(|| tempfile::tempdir().expect("a temporary directory"));
    properties::recording(data, dir.path());
});
