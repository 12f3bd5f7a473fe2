//! Gemini's format on the shared stream decoder. SKELETON: to be written.

use crate::protocol::stream_decoder::{SseFormat, Step, StreamDecoder};

/// Decodes Gemini response bodies into session events (see `StreamDecoder`).
pub type GeminiDecoder = StreamDecoder<GeminiFormat>;

/// What Gemini events mean.
#[derive(Clone, Debug, Default)]
pub struct GeminiFormat {}

impl SseFormat for GeminiFormat {
    fn reset(&mut self) {
        *self = Self::default();
    }

    fn on_event<'a>(
        &mut self,
        event: Option<&str>,
        _data: &'a str,
        step: &mut impl FnMut(Step<'a>),
    ) {
        step(Step::Unknown(event.unwrap_or("data").to_owned()));
    }

    fn on_body_end(&mut self) -> Option<Step<'static>> {
        None
    }
}
