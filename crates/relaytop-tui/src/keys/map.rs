//! The key map: keys to actions and each action's keys, built from the defaults and the
//! `[ui.keys]` overrides; the README's key list.

use std::collections::{BTreeMap, HashMap};

use super::actions::{ACTIONS, Action, Group, info};
use super::key::Key;

/// Why `[ui.keys]` could not be used.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyMapError {
    #[error("[ui.keys]: no action `{0}`: the actions are {list}", list = action_names())]
    UnknownAction(String),
    #[error("[ui.keys] {action}: {message}")]
    BadKey { action: String, message: String },
    #[error(
        "[ui.keys]: `{key}` is bound to both `{first}` and `{second}`: give one of them another key"
    )]
    Conflict {
        key: String,
        first: &'static str,
        second: &'static str,
    },
}

fn action_names() -> String {
    ACTIONS
        .iter()
        .map(|a| a.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Keys to actions, and each action's keys (for help), after the configuration's overrides.
#[derive(Clone, Debug)]
pub struct KeyMap {
    by_key: HashMap<Key, Action>,
    /// The replay group's keys: a layer of its own, looked up first while replaying.
    replay_by_key: HashMap<Key, Action>,
    by_action: BTreeMap<Action, Vec<Key>>,
}

impl Default for KeyMap {
    fn default() -> Self {
        // The defaults parse and do not conflict: `defaults_parse_without_conflicts` checks it.
        KeyMap::new(&BTreeMap::new()).unwrap_or_else(|_| KeyMap {
            by_key: HashMap::new(),
            replay_by_key: HashMap::new(),
            by_action: BTreeMap::new(),
        })
    }
}

impl KeyMap {
    /// The default keys with `overrides` (action name → keys) applied. An overridden action
    /// loses its default keys; a key given to an action is taken from any action that had it
    /// by default; two actions given the same key is an error. The replay keys are a layer of
    /// their own: they may share keys with the others, not among themselves.
    pub fn new(overrides: &BTreeMap<String, Vec<String>>) -> Result<KeyMap, KeyMapError> {
        let mut given: BTreeMap<Action, Vec<Key>> = BTreeMap::new();
        let mut given_by_key: HashMap<(bool, Key), Action> = HashMap::new();
        for (name, keys) in overrides {
            let row = ACTIONS
                .iter()
                .find(|a| a.name == name)
                .ok_or_else(|| KeyMapError::UnknownAction(name.clone()))?;
            let mut parsed = Vec::new();
            for text in keys {
                let key = Key::parse(text).map_err(|message| KeyMapError::BadKey {
                    action: name.clone(),
                    message,
                })?;
                let layer = row.group == Group::Replay;
                if let Some(other) = given_by_key.insert((layer, key), row.action)
                    && other != row.action
                {
                    return Err(KeyMapError::Conflict {
                        key: key.to_string(),
                        first: info(other).name,
                        second: row.name,
                    });
                }
                if !parsed.contains(&key) {
                    parsed.push(key);
                }
            }
            given.insert(row.action, parsed);
        }
        let mut by_key = HashMap::new();
        let mut replay_by_key = HashMap::new();
        let mut by_action = BTreeMap::new();
        for row in ACTIONS {
            let layer = row.group == Group::Replay;
            let keys: Vec<Key> = match given.get(&row.action) {
                Some(keys) => keys.clone(),
                None => row
                    .defaults
                    .iter()
                    .filter_map(|k| Key::parse(k).ok())
                    .filter(|k| !given_by_key.contains_key(&(layer, *k)))
                    .collect(),
            };
            let map = if layer {
                &mut replay_by_key
            } else {
                &mut by_key
            };
            for key in &keys {
                if let Some(other) = map.insert(*key, row.action)
                    && other != row.action
                {
                    return Err(KeyMapError::Conflict {
                        key: key.to_string(),
                        first: info(other).name,
                        second: row.name,
                    });
                }
            }
            by_action.insert(row.action, keys);
        }
        Ok(KeyMap {
            by_key,
            replay_by_key,
            by_action,
        })
    }

    /// The action bound to `key` (outside the replay layer).
    pub fn action(&self, key: Key) -> Option<Action> {
        self.by_key.get(&key).copied()
    }

    /// The replay action bound to `key` (looked up first while replaying).
    pub fn replay_action(&self, key: Key) -> Option<Action> {
        self.replay_by_key.get(&key).copied()
    }

    /// The keys of `action`, first the one shown in hints.
    pub fn keys(&self, action: Action) -> &[Key] {
        self.by_action.get(&action).map_or(&[], Vec::as_slice)
    }

    /// The keys of `action` as help shows them: `Up k`, or `(unbound)`.
    pub fn keys_label(&self, action: Action) -> String {
        let keys = self.keys(action);
        if keys.is_empty() {
            return "(unbound)".to_string();
        }
        keys.iter()
            .map(Key::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The status-bar hints: (first key, label) of every action that has a hint, in table order.
    pub fn hints(&self) -> Vec<(String, &'static str)> {
        ACTIONS
            .iter()
            .filter_map(|row| {
                let label = row.hint?;
                let key = self.keys(row.action).first()?;
                Some((key.to_string(), label))
            })
            .collect()
    }
}

/// The README's key list: a Markdown table generated from the default key table.
pub fn readme_key_list() -> String {
    let map = KeyMap::default();
    let mut out = String::from("| Keys | Action | Name in `[ui.keys]` |\n|---|---|---|\n");
    let rows = ACTIONS.iter().filter(|row| row.group != Group::Replay);
    let replay = ACTIONS.iter().filter(|row| row.group == Group::Replay);
    let mut headed = false;
    for row in rows.chain(replay) {
        if row.group == Group::Replay && !std::mem::replace(&mut headed, true) {
            out.push_str("| **While replaying** (`relaytop replay`; these come first) | | |\n");
        }
        let keys = map
            .keys(row.action)
            .iter()
            .map(|k| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(" ");
        out.push_str(&format!("| {keys} | {} | `{}` |\n", row.help, row.name));
    }
    out.push_str(
        "\nIn the filter prompt: type to filter (every word must match), `Enter` keeps the filter, \
         `Esc` clears it, `Backspace` deletes.\nMouse: click a pane to focus it, click a session to \
         select it, the wheel scrolls (`--no-mouse` turns it off).\n",
    );
    out
}
