//! Redaction: every loaded secret replaced by `[REDACTED]` in the lines written.

use crate::config::secret::Secret;
use crate::record::format::json_string;

/// Replaces every loaded secret, as written raw or JSON-escaped once or twice (a key inside a
/// chat message inside a frame), by `[REDACTED]`.
#[derive(Clone, Debug, Default)]
pub(super) struct Redactor {
    pub(super) needles: Vec<Secret>,
}

impl Redactor {
    pub(super) fn new(secrets: &[Secret]) -> Self {
        let mut needles: Vec<Secret> = Vec::new();
        for secret in secrets {
            let raw = secret.expose();
            if raw.is_empty() {
                continue;
            }
            let once = json_string(raw);
            let once = &once[1..once.len() - 1];
            let twice = json_string(once);
            let twice = &twice[1..twice.len() - 1];
            for variant in [raw, once, twice] {
                if !needles.iter().any(|n| n.expose() == variant) {
                    needles.push(Secret::new(variant));
                }
            }
        }
        // Longest first, so that a longer variant is not cut by a shorter one inside it.
        needles.sort_by_key(|n| std::cmp::Reverse(n.expose().len()));
        Self { needles }
    }

    /// A binary body with every raw secret replaced (before it is encoded).
    pub(super) fn redact_bytes<'a>(&self, bytes: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
        let mut out = std::borrow::Cow::Borrowed(bytes);
        for needle in &self.needles {
            let n = needle.expose().as_bytes();
            if memchr::memmem::find(&out, n).is_none() {
                continue;
            }
            let mut scrubbed = Vec::with_capacity(out.len());
            let mut rest: &[u8] = &out;
            while let Some(i) = memchr::memmem::find(rest, n) {
                scrubbed.extend_from_slice(&rest[..i]);
                scrubbed.extend_from_slice(crate::config::secret::REDACTED.as_bytes());
                rest = &rest[i + n.len()..];
            }
            scrubbed.extend_from_slice(rest);
            out = std::borrow::Cow::Owned(scrubbed);
        }
        out
    }

    pub(super) fn redact(&self, text: String) -> String {
        let mut text = text;
        for needle in &self.needles {
            if let std::borrow::Cow::Owned(scrubbed) = needle.redact(&text) {
                text = scrubbed;
            }
        }
        text
    }
}
