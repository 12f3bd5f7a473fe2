//! Recordings written without a relay: one relay/v1 request tapped as a session reports it, for
//! the replay tests that need a recording of an exact shape (`#[path]`-included).
#![allow(dead_code)]

use std::time::Duration;

use relaytop_core::session::tap::{Direction, TapHandle, Wire};
use relaytop_core::session::{EventKind, SessionState};

/// Taps request `request` at `t_ms`: its frame (`body`), `RequestSent`, streaming, five chunk
/// frames of `word` (the first `first_chunk_ms` after the request, then 10 ms apart), `done`
/// 200 ms after the request with 3 prompt and 5 completion tokens, and open again.
pub fn tap_request(
    tap: &TapHandle,
    request: u64,
    t_ms: u64,
    body: &str,
    word: &str,
    first_chunk_ms: u64,
) {
    let ms = Duration::from_millis;
    tap.0.wire(ms(t_ms), Direction::ToRelay, Wire::Text(body));
    tap.0.event(
        ms(t_ms),
        &EventKind::RequestSent {
            request,
            model: "gpt-4.1".into(),
            prompt_tokens_estimate: 3,
        },
    );
    tap.0.event(
        ms(t_ms),
        &EventKind::State(SessionState::Streaming { request }),
    );
    let chunk = format!(r#"{{"type":"chunk","content":"{word}"}}"#);
    for c in 0..5 {
        tap.0.wire(
            ms(t_ms + first_chunk_ms + c * 10),
            Direction::FromRelay,
            Wire::Text(&chunk),
        );
    }
    tap.0.wire(
        ms(t_ms + 200),
        Direction::FromRelay,
        Wire::Text(r#"{"type":"done","usage":{"prompt_tokens":3,"completion_tokens":5}}"#),
    );
    tap.0
        .event(ms(t_ms + 200), &EventKind::State(SessionState::Open));
}
