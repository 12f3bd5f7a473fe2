//! Every action the dashboard knows, grouped for the help overlay, with its default keys and
//! one line of help (`ACTIONS`, the table everything else is generated from).

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
    Alerts,
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
        action: Action::Alerts,
        name: "alerts",
        group: Group::Panes,
        defaults: &["a"],
        help: "show the alerts (again to go back)",
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
