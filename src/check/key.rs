//! The key as read from its variable, what was noticed about it (empty, padded), and the
//! fix when the relay refuses it.

use relaytop_core::config::secret::Secret;

use super::options::CheckOptions;

/// The key as read, and what was noticed about it.
pub(super) struct Key {
    pub(super) var: Option<String>,
    /// The trimmed key, when the variable is set.
    pub(super) secret: Option<Secret>,
    /// The variable was set but empty.
    pub(super) empty: bool,
    /// The raw value had white space around it.
    pub(super) padded: bool,
    /// The raw value's characters.
    pub(super) chars: usize,
}

pub(super) fn read_key(options: &CheckOptions) -> Key {
    let var = options.key_env.clone();
    let raw = var.as_deref().and_then(|v| (options.env)(v));
    let trimmed = raw.as_deref().map(str::trim);
    Key {
        padded: raw.as_deref() != trimmed,
        empty: trimmed.is_some_and(str::is_empty),
        chars: raw.as_deref().map_or(0, |r| r.chars().count()),
        secret: trimmed.filter(|t| !t.is_empty()).map(Secret::new),
        var,
    }
}

impl Key {
    /// The fix for a refused key.
    pub(super) fn hint(&self) -> String {
        let Some(var) = &self.var else {
            return "no key was sent: pass --key-env VAR, naming the variable that holds your key"
                .into();
        };
        if self.secret.is_none() {
            return if self.empty {
                format!("{var} is set but empty: put the key in it")
            } else {
                format!(
                    "{var} is not set: export {var}=<your key> (or name another variable with --key-env)"
                )
            };
        }
        let mut hint = format!(
            "the relay refused the key in {var} ({} characters{}): check it was issued for this relay and is still active",
            self.chars,
            if self.padded {
                ", white space trimmed"
            } else {
                ""
            }
        );
        if self.padded {
            hint.push_str(&format!(
                "; {var} has white space around the key (a trailing newline is the classic): relaytop trims it, other clients may not"
            ));
        }
        hint
    }

    /// A note on the key for steps that passed.
    pub(super) fn note(&self) -> Option<String> {
        let var = self.var.as_deref()?;
        self.padded.then(|| {
            format!("{var} has white space around the key (trimmed here): clients that do not trim get 401")
        })
    }
}
