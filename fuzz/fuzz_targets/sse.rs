//! Fuzzes `properties::sse` (tests/support/parser_properties.rs): the first byte says how many
//! cut points follow (two bytes each, at most 8); the rest is the stream.
#![no_main]

#[path = "../../tests/support/parser_properties.rs"]
mod properties;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = usize::from(n % 9).min(rest.len() / 2);
    let (cut_bytes, stream) = rest.split_at(n * 2);
    let cuts: Vec<usize> = cut_bytes
        .chunks_exact(2)
        .map(|c| usize::from(u16::from_le_bytes([c[0], c[1]])))
        .collect();
    properties::sse(stream, &cuts);
});
