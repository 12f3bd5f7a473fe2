//! The simulator's Anthropic Messages shape. SKELETON: serves nothing yet.

use super::http::RequestHead;
use super::stream::{Asked, Refusal, Reply, Shape};

/// Anthropic Messages.
pub(crate) struct Messages;

impl Shape for Messages {
    fn serves(&self, _head: &RequestHead) -> bool {
        false
    }

    fn read(&self, _head: &RequestHead, _body: &[u8]) -> Result<Asked, String> {
        Err("not served".into())
    }

    fn refusal_body(&self, refusal: &Refusal) -> String {
        super::http::error_body(&refusal.message)
    }

    fn stream_headers(&self, _reply: &Reply, _n: u64, _tokens: u64) -> String {
        String::new()
    }

    fn opening(&self, _reply: &mut Reply, _out: &mut Vec<String>) {}

    fn thinking(&self, _reply: &mut Reply, _word: &str, _out: &mut Vec<String>) {}

    fn answer(&self, _reply: &mut Reply, _word: &str, _out: &mut Vec<String>) {}

    fn failure(&self, _reply: &mut Reply, _out: &mut Vec<String>) {}

    fn closing(&self, _reply: &mut Reply, _out: &mut Vec<String>) {}
}
