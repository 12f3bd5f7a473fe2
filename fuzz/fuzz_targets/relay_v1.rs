//! Fuzzes `properties::relay_v1` (tests/support/parser_properties.rs).
#![no_main]

#[path = "../../tests/support/parser_properties.rs"]
mod properties;

libfuzzer_sys::fuzz_target!(|data: &[u8]| properties::relay_v1(data));
