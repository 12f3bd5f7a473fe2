//! Key bindings as data: every action the dashboard knows, its default keys and one line of
//! help, and the key map built from them and the `[ui.keys]` overrides.
//!
//! The help overlay, the status-bar hints and the README's key list are all generated from
//! [`ACTIONS`]; nothing else in the UI names a key. This module only maps keys to actions: what
//! an action does is `app.rs`'s business.

mod actions;
mod key;
mod map;

pub use actions::{ACTIONS, Action, ActionInfo, Group, info};
pub use key::Key;
pub use map::{KeyMap, KeyMapError, readme_key_list};

#[cfg(test)]
mod tests;
