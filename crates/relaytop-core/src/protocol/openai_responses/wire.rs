//! OpenAI Responses's wire shapes: requests, events, errors. SKELETON: to be written.

use crate::protocol::relay_v1::ChatMessage;

/// A request body this codec sent, read back: its conversation (system prompt first, as a
/// `system` message) and its output limit. `replay --against` re-sends recorded requests so.
pub fn read_request(_text: &str) -> Option<(Vec<ChatMessage>, Option<u32>)> {
    None
}
