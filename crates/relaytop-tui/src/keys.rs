//! Key bindings as data: every action the dashboard knows, its default keys and one line of
//! help, and the key map built from them and the `[ui.keys]` overrides.
//!
//! The help overlay, the status-bar hints and the README's key list are all generated from
//! [`ACTIONS`]; nothing else in the UI names a key. This module only maps keys to actions: what
//! an action does is `app.rs`'s business.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

/// Something a person can ask the dashboard to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    Up,
    Down,
    PageUp,
    PageDown,
    Top,
    Bottom,
    NextPane,
    PreviousPane,
    Focus,
    Back,
    Zoom,
    Filter,
    SortNext,
    SortPrevious,
    SortReverse,
    WindowLonger,
    WindowShorter,
    Freeze,
    Reconnect,
    Mark,
    Chat,
    ChatNext,
    CanaryPause,
    CanaryPromote,
    CanaryRollBack,
    Theme,
    Help,
    Quit,
    ReplayPause,
    ReplayStep,
    ReplaySlower,
    ReplayFaster,
    ReplayBack,
    ReplayForward,
    ReplayPreviousMarker,
    ReplayNextMarker,
    ReplayStart,
    ReplayEnd,
}

impl Action {
    /// Whether the action drives a replay (`relaytop replay`): its keys are looked up first
    /// while replaying, and may be keys the live dashboard uses for something else.
    pub fn is_replay(self) -> bool {
        info(self).group == Group::Replay
    }
}

/// Where an action is listed in the help.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    Move,
    Panes,
    View,
    Sessions,
    Canary,
    App,
    /// Only while replaying a recording; shown in help only then.
    Replay,
}

impl Group {
    /// Every group, in help order.
    pub const ALL: [Group; 7] = [
        Group::Replay,
        Group::Move,
        Group::Panes,
        Group::View,
        Group::Sessions,
        Group::Canary,
        Group::App,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Group::Move => "Move",
            Group::Panes => "Panes",
            Group::View => "View",
            Group::Sessions => "Sessions",
            Group::Canary => "Canary",
            Group::App => "relaytop",
            Group::Replay => "Replay (these keys come first while replaying)",
        }
    }
}

/// One row of the key table.
#[derive(Clone, Copy, Debug)]
pub struct ActionInfo {
    pub action: Action,
    /// The name used in `[ui.keys]`.
    pub name: &'static str,
    pub group: Group,
    /// The keys bound when the configuration says nothing.
    pub defaults: &'static [&'static str],
    /// One line of help.
    pub help: &'static str,
    /// A one-word label for the status bar, for the few actions shown there.
    pub hint: Option<&'static str>,
}

/// The key table: every action, in help order.
pub const ACTIONS: &[ActionInfo] = &[
    ActionInfo {
        action: Action::Up,
        name: "up",
        group: Group::Move,
        defaults: &["up", "k"],
        help: "select the session above, or scroll up",
        hint: None,
    },
    ActionInfo {
        action: Action::Down,
        name: "down",
        group: Group::Move,
        defaults: &["down", "j"],
        help: "select the session below, or scroll down",
        hint: None,
    },
    ActionInfo {
        action: Action::PageUp,
        name: "page_up",
        group: Group::Move,
        defaults: &["pageup", "ctrl-u"],
        help: "one page up",
        hint: None,
    },
    ActionInfo {
        action: Action::PageDown,
        name: "page_down",
        group: Group::Move,
        defaults: &["pagedown", "ctrl-d"],
        help: "one page down",
        hint: None,
    },
    ActionInfo {
        action: Action::Top,
        name: "top",
        group: Group::Move,
        defaults: &["home", "g"],
        help: "go to the top (the oldest line)",
        hint: None,
    },
    ActionInfo {
        action: Action::Bottom,
        name: "bottom",
        group: Group::Move,
        defaults: &["end", "G"],
        help: "go to the bottom and follow new lines",
        hint: None,
    },
    ActionInfo {
        action: Action::NextPane,
        name: "next_pane",
        group: Group::Panes,
        defaults: &["tab"],
        help: "focus the next pane",
        hint: Some("pane"),
    },
    ActionInfo {
        action: Action::PreviousPane,
        name: "previous_pane",
        group: Group::Panes,
        defaults: &["backtab"],
        help: "focus the previous pane",
        hint: None,
    },
    ActionInfo {
        action: Action::Focus,
        name: "focus",
        group: Group::Panes,
        defaults: &["enter"],
        help: "open the selected session's stream",
        hint: None,
    },
    ActionInfo {
        action: Action::Back,
        name: "back",
        group: Group::Panes,
        defaults: &["esc"],
        help: "close help, clear the filter, unzoom, back to sessions",
        hint: None,
    },
    ActionInfo {
        action: Action::Zoom,
        name: "zoom",
        group: Group::Panes,
        defaults: &["z"],
        help: "zoom the focused pane to the whole screen",
        hint: None,
    },
    ActionInfo {
        action: Action::Filter,
        name: "filter",
        group: Group::View,
        defaults: &["/"],
        help: "filter the sessions (or the event log, when focused)",
        hint: Some("filter"),
    },
    ActionInfo {
        action: Action::SortNext,
        name: "sort_next",
        group: Group::View,
        defaults: &["right", "l"],
        help: "sort the sessions by the next column",
        hint: None,
    },
    ActionInfo {
        action: Action::SortPrevious,
        name: "sort_previous",
        group: Group::View,
        defaults: &["left", "h"],
        help: "sort the sessions by the previous column",
        hint: None,
    },
    ActionInfo {
        action: Action::SortReverse,
        name: "sort_reverse",
        group: Group::View,
        defaults: &["I"],
        help: "reverse the sort order",
        hint: None,
    },
    ActionInfo {
        action: Action::WindowLonger,
        name: "window_longer",
        group: Group::View,
        defaults: &["+", "="],
        help: "longer time window: 1 min → 15 min → run",
        hint: None,
    },
    ActionInfo {
        action: Action::WindowShorter,
        name: "window_shorter",
        group: Group::View,
        defaults: &["-"],
        help: "shorter time window: run → 15 min → 1 min",
        hint: None,
    },
    ActionInfo {
        action: Action::Freeze,
        name: "freeze",
        group: Group::View,
        defaults: &["f"],
        help: "freeze the view (data keeps flowing); again to resume",
        hint: Some("freeze"),
    },
    ActionInfo {
        action: Action::Reconnect,
        name: "reconnect",
        group: Group::Sessions,
        defaults: &["r"],
        help: "reconnect the selected session now",
        hint: None,
    },
    ActionInfo {
        action: Action::Mark,
        name: "mark",
        group: Group::Sessions,
        defaults: &["m"],
        help: "write a marker to the recording (and the event log)",
        hint: None,
    },
    ActionInfo {
        action: Action::Chat,
        name: "chat",
        group: Group::Sessions,
        defaults: &["c"],
        help: "open a chat pane on the selected session's provider",
        hint: None,
    },
    ActionInfo {
        action: Action::ChatNext,
        name: "chat_next",
        group: Group::Sessions,
        defaults: &["C"],
        help: "show the open chat panes again, one after the other",
        hint: None,
    },
    ActionInfo {
        action: Action::CanaryPause,
        name: "canary_pause",
        group: Group::Canary,
        defaults: &["P"],
        help: "pause the canary rollout; again to resume",
        hint: None,
    },
    ActionInfo {
        action: Action::CanaryPromote,
        name: "canary_promote",
        group: Group::Canary,
        defaults: &["ctrl-p"],
        help: "promote the canary to 100 % now (asks for y)",
        hint: None,
    },
    ActionInfo {
        action: Action::CanaryRollBack,
        name: "canary_roll_back",
        group: Group::Canary,
        defaults: &["ctrl-b"],
        help: "roll the canary back to 0 % now (asks for y)",
        hint: None,
    },
    ActionInfo {
        action: Action::Theme,
        name: "theme",
        group: Group::App,
        defaults: &["t"],
        help: "next colour theme",
        hint: Some("theme"),
    },
    ActionInfo {
        action: Action::Help,
        name: "help",
        group: Group::App,
        defaults: &["?", "f1"],
        help: "show or hide this help",
        hint: Some("help"),
    },
    ActionInfo {
        action: Action::Quit,
        name: "quit",
        group: Group::App,
        defaults: &["q", "ctrl-c"],
        help: "quit (the terminal is restored)",
        hint: Some("quit"),
    },
    ActionInfo {
        action: Action::ReplayPause,
        name: "replay_pause",
        group: Group::Replay,
        defaults: &["space"],
        help: "pause the replay; again to play on",
        hint: None,
    },
    ActionInfo {
        action: Action::ReplayStep,
        name: "replay_step",
        group: Group::Replay,
        defaults: &["."],
        help: "one event on (pauses)",
        hint: None,
    },
    ActionInfo {
        action: Action::ReplaySlower,
        name: "replay_slower",
        group: Group::Replay,
        defaults: &["<"],
        help: "slower: max → 64x … 1x … 0.25x",
        hint: None,
    },
    ActionInfo {
        action: Action::ReplayFaster,
        name: "replay_faster",
        group: Group::Replay,
        defaults: &[">"],
        help: "faster: 0.25x … 1x … 64x → as fast as possible",
        hint: None,
    },
    ActionInfo {
        action: Action::ReplayBack,
        name: "replay_back",
        group: Group::Replay,
        defaults: &["left"],
        help: "10 seconds back",
        hint: None,
    },
    ActionInfo {
        action: Action::ReplayForward,
        name: "replay_forward",
        group: Group::Replay,
        defaults: &["right"],
        help: "10 seconds on",
        hint: None,
    },
    ActionInfo {
        action: Action::ReplayPreviousMarker,
        name: "replay_previous_marker",
        group: Group::Replay,
        defaults: &["["],
        help: "back to the previous marker",
        hint: None,
    },
    ActionInfo {
        action: Action::ReplayNextMarker,
        name: "replay_next_marker",
        group: Group::Replay,
        defaults: &["]"],
        help: "on to the next marker",
        hint: None,
    },
    ActionInfo {
        action: Action::ReplayStart,
        name: "replay_start",
        group: Group::Replay,
        defaults: &["g"],
        help: "to the start of the recording",
        hint: None,
    },
    ActionInfo {
        action: Action::ReplayEnd,
        name: "replay_end",
        group: Group::Replay,
        defaults: &["G"],
        help: "to the end of the recording",
        hint: None,
    },
];

/// The table row of `action`.
pub fn info(action: Action) -> &'static ActionInfo {
    // Every action has a row: `every_action_has_one_row` checks it.
    ACTIONS
        .iter()
        .find(|a| a.action == action)
        .unwrap_or(&ACTIONS[0])
}

/// A key with the modifiers that matter (Shift is folded into characters).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    pub code: KeyCode,
    pub modifiers: KeyModifiers,
}

impl Key {
    /// A key from a terminal event; `None` for releases.
    pub fn from_event(event: &KeyEvent) -> Option<Key> {
        if event.kind == KeyEventKind::Release {
            return None;
        }
        Some(Key::new(event.code, event.modifiers))
    }

    /// A key, with Shift dropped from characters and Shift-Tab (the character already says it).
    pub fn new(code: KeyCode, modifiers: KeyModifiers) -> Key {
        let mut modifiers =
            modifiers & (KeyModifiers::CONTROL | KeyModifiers::ALT | KeyModifiers::SHIFT);
        if matches!(code, KeyCode::Char(_) | KeyCode::BackTab) {
            modifiers.remove(KeyModifiers::SHIFT);
        }
        Key { code, modifiers }
    }

    /// Parses a key as written in `[ui.keys]`: a character (`q`, `G`, `?`), a name (`up`,
    /// `pageup`, `enter`, `esc`, `tab`, `backtab`, `space`, `f1`), optionally after `ctrl-`,
    /// `alt-` or `shift-`.
    pub fn parse(text: &str) -> Result<Key, String> {
        let mut modifiers = KeyModifiers::NONE;
        let mut rest = text;
        loop {
            let lower = rest.to_ascii_lowercase();
            let (prefix, flag) = if lower.starts_with("ctrl-") {
                ("ctrl-", KeyModifiers::CONTROL)
            } else if lower.starts_with("alt-") {
                ("alt-", KeyModifiers::ALT)
            } else if lower.starts_with("shift-") {
                ("shift-", KeyModifiers::SHIFT)
            } else {
                break;
            };
            if rest.len() == prefix.len() {
                break;
            }
            modifiers |= flag;
            rest = &rest[prefix.len()..];
        }
        let mut chars = rest.chars();
        let code = match (chars.next(), chars.next()) {
            (Some(c), None) => KeyCode::Char(c),
            _ => match rest.to_ascii_lowercase().as_str() {
                "up" => KeyCode::Up,
                "down" => KeyCode::Down,
                "left" => KeyCode::Left,
                "right" => KeyCode::Right,
                "pageup" | "pgup" => KeyCode::PageUp,
                "pagedown" | "pgdn" => KeyCode::PageDown,
                "home" => KeyCode::Home,
                "end" => KeyCode::End,
                "tab" if modifiers.contains(KeyModifiers::SHIFT) => KeyCode::BackTab,
                "tab" => KeyCode::Tab,
                "backtab" => KeyCode::BackTab,
                "enter" | "return" => KeyCode::Enter,
                "esc" | "escape" => KeyCode::Esc,
                "backspace" => KeyCode::Backspace,
                "delete" | "del" => KeyCode::Delete,
                "insert" | "ins" => KeyCode::Insert,
                "space" => KeyCode::Char(' '),
                name => match name.strip_prefix('f').and_then(|n| n.parse::<u8>().ok()) {
                    Some(n @ 1..=12) => KeyCode::F(n),
                    _ => {
                        return Err(format!(
                            "`{text}` is not a key: use a character (q, G, ?), a name (up, down, \
                             left, right, pageup, pagedown, home, end, tab, backtab, enter, esc, \
                             space, f1 to f12), optionally after ctrl-, alt- or shift-"
                        ));
                    }
                },
            },
        };
        // Characters carry their own case: `shift-g` is `G`.
        let code = match code {
            KeyCode::Char(c) if modifiers.contains(KeyModifiers::SHIFT) => {
                KeyCode::Char(c.to_ascii_uppercase())
            }
            other => other,
        };
        Ok(Key::new(code, modifiers))
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.modifiers.contains(KeyModifiers::CONTROL) {
            f.write_str("Ctrl-")?;
        }
        if self.modifiers.contains(KeyModifiers::ALT) {
            f.write_str("Alt-")?;
        }
        if self.modifiers.contains(KeyModifiers::SHIFT) {
            f.write_str("Shift-")?;
        }
        match self.code {
            KeyCode::Char(' ') => f.write_str("Space"),
            KeyCode::Char(c) => write!(f, "{c}"),
            KeyCode::Up => f.write_str("Up"),
            KeyCode::Down => f.write_str("Down"),
            KeyCode::Left => f.write_str("Left"),
            KeyCode::Right => f.write_str("Right"),
            KeyCode::PageUp => f.write_str("PgUp"),
            KeyCode::PageDown => f.write_str("PgDn"),
            KeyCode::Home => f.write_str("Home"),
            KeyCode::End => f.write_str("End"),
            KeyCode::Tab => f.write_str("Tab"),
            KeyCode::BackTab => f.write_str("Shift-Tab"),
            KeyCode::Enter => f.write_str("Enter"),
            KeyCode::Esc => f.write_str("Esc"),
            KeyCode::Backspace => f.write_str("Backspace"),
            KeyCode::Delete => f.write_str("Delete"),
            KeyCode::Insert => f.write_str("Insert"),
            KeyCode::F(n) => write!(f, "F{n}"),
            other => write!(f, "{other:?}"),
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode) -> Key {
        Key::new(code, KeyModifiers::NONE)
    }

    #[test]
    fn every_action_has_one_row_and_a_unique_name() {
        let all = [
            Action::Up,
            Action::Down,
            Action::PageUp,
            Action::PageDown,
            Action::Top,
            Action::Bottom,
            Action::NextPane,
            Action::PreviousPane,
            Action::Focus,
            Action::Back,
            Action::Zoom,
            Action::Filter,
            Action::SortNext,
            Action::SortPrevious,
            Action::SortReverse,
            Action::WindowLonger,
            Action::WindowShorter,
            Action::Freeze,
            Action::Reconnect,
            Action::Mark,
            Action::Chat,
            Action::ChatNext,
            Action::CanaryPause,
            Action::CanaryPromote,
            Action::CanaryRollBack,
            Action::Theme,
            Action::Help,
            Action::Quit,
            Action::ReplayPause,
            Action::ReplayStep,
            Action::ReplaySlower,
            Action::ReplayFaster,
            Action::ReplayBack,
            Action::ReplayForward,
            Action::ReplayPreviousMarker,
            Action::ReplayNextMarker,
            Action::ReplayStart,
            Action::ReplayEnd,
        ];
        assert_eq!(ACTIONS.len(), all.len());
        for action in all {
            assert_eq!(ACTIONS.iter().filter(|a| a.action == action).count(), 1);
            assert_eq!(info(action).action, action);
        }
        let mut names: Vec<_> = ACTIONS.iter().map(|a| a.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ACTIONS.len());
    }

    #[test]
    fn defaults_parse_without_conflicts() {
        for row in ACTIONS {
            for k in row.defaults {
                Key::parse(k).unwrap_or_else(|e| panic!("{}: {e}", row.name));
            }
        }
        let map = KeyMap::new(&BTreeMap::new()).expect("defaults are consistent");
        assert_eq!(map.action(key(KeyCode::Char('q'))), Some(Action::Quit));
        assert_eq!(
            map.action(Key::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Some(Action::Quit)
        );
        assert_eq!(map.action(key(KeyCode::Char('k'))), Some(Action::Up));
        assert_eq!(map.action(key(KeyCode::Up)), Some(Action::Up));
        assert_eq!(map.action(key(KeyCode::Char('/'))), Some(Action::Filter));
        assert_eq!(map.action(key(KeyCode::End)), Some(Action::Bottom));
        assert_eq!(map.action(key(KeyCode::Char('x'))), None);
    }

    #[test]
    fn the_brief_keys_are_bound() {
        let map = KeyMap::default();
        let expect = [
            (KeyCode::Char('j'), Action::Down),
            (KeyCode::Char('h'), Action::SortPrevious),
            (KeyCode::Char('l'), Action::SortNext),
            (KeyCode::Tab, Action::NextPane),
            (KeyCode::Enter, Action::Focus),
            (KeyCode::Char('f'), Action::Freeze),
            (KeyCode::Char('r'), Action::Reconnect),
            (KeyCode::Char('m'), Action::Mark),
            (KeyCode::Char('+'), Action::WindowLonger),
            (KeyCode::Char('-'), Action::WindowShorter),
            (KeyCode::Char('t'), Action::Theme),
            (KeyCode::Char('?'), Action::Help),
        ];
        for (code, action) in expect {
            assert_eq!(map.action(key(code)), Some(action), "{code:?}");
        }
    }

    #[test]
    fn shift_is_folded_into_characters() {
        let map = KeyMap::default();
        // Terminals report `G` with Shift held, `?` sometimes with it too.
        assert_eq!(
            map.action(Key::new(KeyCode::Char('G'), KeyModifiers::SHIFT)),
            Some(Action::Bottom)
        );
        assert_eq!(
            map.action(Key::new(KeyCode::Char('?'), KeyModifiers::SHIFT)),
            Some(Action::Help)
        );
        assert_eq!(
            map.action(Key::new(KeyCode::BackTab, KeyModifiers::SHIFT)),
            Some(Action::PreviousPane)
        );
        assert_eq!(Key::parse("shift-g"), Ok(key(KeyCode::Char('G'))));
        assert_eq!(Key::parse("shift-tab"), Ok(key(KeyCode::BackTab)));
    }

    #[test]
    fn parses_and_prints_keys() {
        for (text, shown) in [
            ("q", "q"),
            ("G", "G"),
            ("ctrl-c", "Ctrl-c"),
            ("Ctrl-Alt-x", "Ctrl-Alt-x"),
            ("pageup", "PgUp"),
            ("PgDn", "PgDn"),
            ("space", "Space"),
            ("f5", "F5"),
            ("-", "-"),
            ("ctrl--", "Ctrl--"),
            ("backtab", "Shift-Tab"),
        ] {
            assert_eq!(
                Key::parse(text).map(|k| k.to_string()),
                Ok(shown.into()),
                "{text}"
            );
        }
        assert!(Key::parse("f13").is_err());
        assert!(
            Key::parse("enterr")
                .unwrap_err()
                .contains("`enterr` is not a key")
        );
        assert!(Key::parse("").is_err());
    }

    #[test]
    fn overrides_replace_defaults_and_take_keys_from_defaults() {
        let overrides = BTreeMap::from([
            ("reconnect".to_string(), vec!["R".to_string()]),
            (
                "freeze".to_string(),
                vec!["r".to_string(), "space".to_string()],
            ),
        ]);
        let map = KeyMap::new(&overrides).unwrap();
        assert_eq!(map.action(key(KeyCode::Char('R'))), Some(Action::Reconnect));
        assert_eq!(map.action(key(KeyCode::Char('r'))), Some(Action::Freeze));
        assert_eq!(
            map.action(key(KeyCode::Char('f'))),
            None,
            "freeze lost its default"
        );
        assert_eq!(map.keys_label(Action::Freeze), "r Space");
        assert_eq!(map.keys_label(Action::Reconnect), "R");
    }

    #[test]
    fn bad_overrides_say_what_to_do() {
        let err = KeyMap::new(&BTreeMap::from([(
            "quitt".to_string(),
            vec!["q".to_string()],
        )]))
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("[ui.keys]: no action `quitt`: the actions are up, down"),
            "{err}"
        );
        let err = KeyMap::new(&BTreeMap::from([(
            "quit".to_string(),
            vec!["ctrl-".to_string()],
        )]))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("[ui.keys] quit: `ctrl-` is not a key"),
            "{err}"
        );
        let err = KeyMap::new(&BTreeMap::from([
            ("quit".to_string(), vec!["x".to_string()]),
            ("theme".to_string(), vec!["x".to_string()]),
        ]))
        .unwrap_err();
        assert_eq!(
            err,
            KeyMapError::Conflict {
                key: "x".into(),
                first: "quit",
                second: "theme"
            }
        );
    }

    #[test]
    fn an_action_can_be_unbound() {
        let map = KeyMap::new(&BTreeMap::from([("reconnect".to_string(), vec![])])).unwrap();
        assert_eq!(map.action(key(KeyCode::Char('r'))), None);
        assert_eq!(map.keys_label(Action::Reconnect), "(unbound)");
    }

    #[test]
    fn hints_follow_the_table() {
        let hints = KeyMap::default().hints();
        let shown: Vec<String> = hints.iter().map(|(k, l)| format!("{k} {l}")).collect();
        assert_eq!(
            shown,
            [
                "Tab pane", "/ filter", "f freeze", "t theme", "? help", "q quit"
            ]
        );
    }

    #[test]
    fn releases_are_not_keys() {
        let mut ev = KeyEvent::new(KeyCode::Char('q'), KeyModifiers::NONE);
        assert!(Key::from_event(&ev).is_some());
        ev.kind = KeyEventKind::Release;
        assert!(Key::from_event(&ev).is_none());
    }
}
