//! API keys: read from the environment, trimmed, and never printed.
//!
//! `Secret` holds a key's value; its `Debug` and `Display` print a redaction, and serde
//! cannot serialize it, so a key cannot leak through a log line, a recording, an export or
//! a panic message by accident. The only way to the value is `expose`, used where the key is
//! put on the wire and where the recorder scrubs text.

use std::fmt;

/// A secret value (an API key). Prints as `[REDACTED]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value, trimming the white space around it (a trailing newline is the classic).
    /// The value is also scrubbed from relaytop's log files from now on (`telemetry`).
    pub fn new(value: impl AsRef<str>) -> Self {
        let value = value.as_ref().trim();
        crate::telemetry::scrub_from_logs(value);
        Secret(value.to_owned())
    }

    /// The value, for the wire. Do not format it anywhere else.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Reads the secret from the environment variable `var`.
    pub fn from_env(var: &str) -> Result<Self, SecretError> {
        match std::env::var(var) {
            Ok(raw) => {
                let had_whitespace = raw.trim().len() != raw.len();
                let secret = Secret::new(&raw);
                if secret.0.is_empty() {
                    return Err(SecretError::Empty { var: var.into() });
                }
                if had_whitespace {
                    tracing::info!(
                        "{var}: removed white space around the key (a trailing newline is the classic cause of 401s)"
                    );
                }
                Ok(secret)
            }
            Err(std::env::VarError::NotPresent) => Err(SecretError::NotSet { var: var.into() }),
            Err(std::env::VarError::NotUnicode(_)) => {
                Err(SecretError::NotUnicode { var: var.into() })
            }
        }
    }

    /// Replaces every occurrence of this secret in `text` by `[REDACTED]`.
    pub fn redact<'a>(&self, text: &'a str) -> std::borrow::Cow<'a, str> {
        if self.0.is_empty() || !text.contains(&self.0) {
            std::borrow::Cow::Borrowed(text)
        } else {
            std::borrow::Cow::Owned(text.replace(&self.0, REDACTED))
        }
    }
}

/// What a secret is replaced by wherever it would otherwise be written.
pub const REDACTED: &str = "[REDACTED]";

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// Why a key could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("{var} is not set: export it, or name another variable in `api_key_env`")]
    NotSet { var: String },
    #[error(
        "{var} is set but empty: export the key in it, or name another variable in `api_key_env`"
    )]
    Empty { var: String },
    #[error("{var} is not valid UTF-8: export the key again as plain text")]
    NotUnicode { var: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "hs_live_TESTKEY0123456789abcdef";

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = Secret::new(KEY);
        assert_eq!(format!("{s:?}"), "[REDACTED]");
        assert_eq!(format!("{s}"), "[REDACTED]");
        assert_eq!(format!("{:?}", Some(s.clone())), "Some([REDACTED])");
        assert_eq!(s.expose(), KEY);
    }

    #[test]
    fn white_space_is_trimmed() {
        assert_eq!(Secret::new(format!("  {KEY}\n")).expose(), KEY);
        assert_eq!(Secret::new(format!("{KEY}\r\n")).expose(), KEY);
    }

    #[test]
    fn redact_replaces_every_occurrence() {
        let s = Secret::new(KEY);
        let text = format!("my key is {KEY}, again {KEY}");
        assert_eq!(s.redact(&text), "my key is [REDACTED], again [REDACTED]");
        assert!(matches!(
            s.redact("nothing here"),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    #[test]
    fn missing_variable_names_it() {
        let err = Secret::from_env("RELAYTOP_TEST_SURELY_UNSET_VARIABLE").unwrap_err();
        assert_eq!(
            err.to_string(),
            "RELAYTOP_TEST_SURELY_UNSET_VARIABLE is not set: export it, or name another variable in `api_key_env`"
        );
    }
}
