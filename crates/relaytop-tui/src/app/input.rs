//! Keys, pastes and the mouse: the filter prompt, actions, canary commands, focus, paging
//! and scrolling.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};
use ratatui::layout::{Position, Rect};

use crate::keys::{Action, Key};
use crate::render::{self};
use relaytop_core::canary::Phase;
use relaytop_core::metrics::Window;

use super::state::*;
use super::view::*;

impl App {
    // ---- keys and mouse ------------------------------------------------------------------

    /// Handles a key press.
    pub fn handle_key(&mut self, event: KeyEvent) -> Option<Effect> {
        let key = Key::from_event(&event)?;
        if let Some(command) = self.confirm.take() {
            if key.code == KeyCode::Char('y') && key.modifiers.is_empty() {
                return Some(Effect::Canary(command));
            }
            self.say("cancelled: the canary is as it was".into());
            return None;
        }
        if let Some(target) = self.input {
            return self.edit_filter(target, key);
        }
        if self.replay.is_some()
            && self.help.is_none()
            && let Some(action) = self.keys.replay_action(key)
        {
            return Some(Effect::Replay(action));
        }
        let action = self.keys.action(key)?;
        self.act(action)
    }

    /// Handles pasted text (only the filter prompt takes it).
    pub fn handle_paste(&mut self, text: &str) {
        if let Some(target) = self.input {
            let clean: String = text.chars().filter(|c| !c.is_control()).collect();
            self.filter_mut(target).push_str(&clean);
            self.filter_changed(target);
        }
    }

    pub(super) fn filter_mut(&mut self, target: FilterTarget) -> &mut String {
        match target {
            FilterTarget::Sessions => &mut self.session_filter,
            FilterTarget::Events => &mut self.event_filter,
        }
    }

    pub(super) fn filter_changed(&mut self, target: FilterTarget) {
        match target {
            FilterTarget::Sessions => {
                self.refresh_rows();
                self.table_offset = 0;
            }
            FilterTarget::Events => self.events_scroll = Scroll::default(),
        }
    }

    pub(super) fn edit_filter(&mut self, target: FilterTarget, key: Key) -> Option<Effect> {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        match key.code {
            KeyCode::Enter => self.input = None,
            KeyCode::Esc => {
                self.filter_mut(target).clear();
                self.input = None;
                self.filter_changed(target);
            }
            KeyCode::Backspace => {
                self.filter_mut(target).pop();
                self.filter_changed(target);
            }
            KeyCode::Char('u') if ctrl => {
                self.filter_mut(target).clear();
                self.filter_changed(target);
            }
            KeyCode::Char(c) if !ctrl && !key.modifiers.contains(KeyModifiers::ALT) => {
                self.filter_mut(target).push(c);
                self.filter_changed(target);
            }
            KeyCode::Up | KeyCode::Down | KeyCode::PageUp | KeyCode::PageDown => {
                if let Some(action) = self.keys.action(key) {
                    return self.act(action);
                }
            }
            _ => {
                // Quit still works while typing (Ctrl-c).
                if ctrl && self.keys.action(key) == Some(Action::Quit) {
                    return Some(Effect::Quit);
                }
            }
        }
        None
    }

    /// Does what `action` asks.
    pub fn act(&mut self, action: Action) -> Option<Effect> {
        if let Some(offset) = self.help {
            match action {
                Action::Help | Action::Back | Action::Quit => self.help = None,
                Action::Up => self.help = Some(offset.saturating_sub(1)),
                Action::Down => self.help = Some(offset + 1),
                Action::PageUp => self.help = Some(offset.saturating_sub(10)),
                Action::PageDown => self.help = Some(offset + 10),
                Action::Top => self.help = Some(0),
                _ => {}
            }
            return None;
        }
        match action {
            Action::Up => self.scroll(self.focus, -1),
            Action::Down => self.scroll(self.focus, 1),
            Action::PageUp => self.scroll(self.focus, -self.page(self.focus)),
            Action::PageDown => self.scroll(self.focus, self.page(self.focus)),
            Action::Top => self.scroll_to_top(self.focus),
            Action::Bottom => self.scroll_to_bottom(self.focus),
            Action::NextPane => self.set_focus(self.focus.step(true, self.canary.is_some())),
            Action::PreviousPane => {
                self.set_focus(self.focus.step(false, self.canary.is_some()));
            }
            Action::Focus => {
                if self.focus == Pane::Sessions
                    && let Some(id) = self.selected
                {
                    self.select(id);
                    self.set_focus(Pane::Stream);
                }
            }
            Action::Back => self.back(),
            Action::Zoom => self.zoomed = !self.zoomed,
            Action::Alerts => {
                if self.focus == Pane::Alerts {
                    self.zoomed = false;
                    self.set_focus(Pane::Sessions);
                } else {
                    self.set_focus(Pane::Alerts);
                    self.zoomed = true;
                }
            }
            Action::Filter => {
                self.input = Some(if self.focus == Pane::Events {
                    FilterTarget::Events
                } else {
                    FilterTarget::Sessions
                });
            }
            Action::SortNext | Action::SortPrevious => {
                self.sort = self.sort.step(action == Action::SortNext);
                self.refresh_rows();
                self.say(format!("sorted by {}", self.sort.label()));
            }
            Action::SortReverse => {
                self.sort_reverse = !self.sort_reverse;
                self.refresh_rows();
            }
            Action::WindowLonger | Action::WindowShorter => {
                let i = Window::ALL
                    .iter()
                    .position(|w| *w == self.window)
                    .unwrap_or(0);
                let i = if action == Action::WindowLonger {
                    (i + 1).min(Window::ALL.len() - 1)
                } else {
                    i.saturating_sub(1)
                };
                self.window = Window::ALL[i];
                self.refresh_rows();
                self.say(format!("time window: {}", window_name(self.window)));
            }
            Action::Freeze => {
                if self.frozen.take().is_some() {
                    self.refresh_rows();
                    self.say("resumed: showing live data".into());
                } else {
                    self.frozen = Some(Box::new(Frozen {
                        data: self.live.clone(),
                        now_us: self.now_us,
                        events_since: 0,
                    }));
                }
            }
            Action::Reconnect => return self.selected.map(Effect::Reconnect),
            Action::Chat => match self.selected {
                Some(id) => return Some(Effect::OpenChat(id)),
                None => {
                    self.say("select a session first: its provider is the one chatted with".into())
                }
            },
            Action::ChatNext => return Some(Effect::ShowChat),
            Action::Mark => {
                if self.recording.is_none() {
                    self.say("not recording (--no-record): no marker written".into());
                } else {
                    self.markers += 1;
                    return Some(Effect::Mark(self.markers));
                }
            }
            Action::CanaryPause | Action::CanaryPromote | Action::CanaryRollBack => {
                return self.canary_action(action);
            }
            Action::Theme => {
                self.theme = (self.theme + 1) % self.themes.len().max(1);
                let name = self.theme().name().to_string();
                self.say(format!("theme: {name}"));
            }
            Action::Help => self.help = Some(0),
            Action::Quit => return Some(Effect::Quit),
            Action::ReplayPause
            | Action::ReplayStep
            | Action::ReplaySlower
            | Action::ReplayFaster
            | Action::ReplayBack
            | Action::ReplayForward
            | Action::ReplayPreviousMarker
            | Action::ReplayNextMarker
            | Action::ReplayStart
            | Action::ReplayEnd => return self.replay.is_some().then_some(Effect::Replay(action)),
        }
        None
    }

    /// Pause or resume at once; promote and roll back after `y`.
    pub(super) fn canary_action(&mut self, action: Action) -> Option<Effect> {
        let Some(view) = self.canary.as_deref() else {
            self.say("no canary in this run".into());
            return None;
        };
        if view.phase.is_final() {
            let label = view.phase.label();
            self.say(format!("the canary is {label}: nothing more to do"));
            return None;
        }
        match action {
            Action::CanaryPause => {
                let command = if matches!(view.phase, Phase::Paused { .. }) {
                    CanaryCommand::Resume
                } else {
                    CanaryCommand::Pause
                };
                return Some(Effect::Canary(command));
            }
            Action::CanaryPromote => self.confirm = Some(CanaryCommand::Promote),
            Action::CanaryRollBack => self.confirm = Some(CanaryCommand::RollBack),
            _ => {}
        }
        None
    }

    /// Notes a canary command sent to the driver.
    pub fn canary_sent(&mut self, command: CanaryCommand) {
        self.say(command.done().into());
    }

    pub(super) fn back(&mut self) {
        let filter = match self.focus {
            Pane::Events => &mut self.event_filter,
            _ => &mut self.session_filter,
        };
        if !filter.is_empty() {
            filter.clear();
            let target = if self.focus == Pane::Events {
                FilterTarget::Events
            } else {
                FilterTarget::Sessions
            };
            self.filter_changed(target);
        } else if self.zoomed {
            self.zoomed = false;
        } else {
            self.focus = Pane::Sessions;
        }
    }

    pub(super) fn set_focus(&mut self, pane: Pane) {
        self.focus = pane;
        if pane != Pane::Sessions {
            self.detail = pane;
        }
    }

    pub(super) fn page(&self, pane: Pane) -> isize {
        let rows = match pane {
            Pane::Sessions => self.viewports.table_rows,
            Pane::Stream => self.viewports.stream_rows,
            Pane::Events => self.viewports.events_rows,
            Pane::Health | Pane::Cost | Pane::Canary | Pane::Alerts => 3,
        };
        isize::try_from(rows.saturating_sub(1).max(1)).unwrap_or(1)
    }

    /// Moves the selection or scrolls `pane` by `delta` lines (negative: up).
    pub(super) fn scroll(&mut self, pane: Pane, delta: isize) {
        match pane {
            Pane::Sessions => {
                if self.rows.is_empty() {
                    return;
                }
                let i = self.selected_index().unwrap_or(0);
                let last = self.rows.len() - 1;
                let to = i.saturating_add_signed(delta).min(last);
                self.select(self.rows[to]);
            }
            Pane::Stream => {
                let Some(view) = self.selected.and_then(|id| self.shown().view(id)) else {
                    return;
                };
                let (first, end) = (view.stream.first_seq(), view.stream.end_seq());
                self.stream_scroll = scroll_seq(self.stream_scroll, first, end, delta, |_| true);
            }
            Pane::Events => {
                let words = App::filter_words(&self.event_filter);
                let log = &self.shown().log;
                let (first, end) = (log.first_seq(), log.end_seq());
                self.events_scroll = scroll_seq(self.events_scroll, first, end, delta, |s| {
                    log.get(s).is_some_and(|e| e.matches(&words))
                });
            }
            Pane::Health => {
                let n = self.shown().metrics.providers().len();
                self.health_offset = self
                    .health_offset
                    .saturating_add_signed(delta)
                    .min(n.saturating_sub(1));
            }
            Pane::Cost => {
                let n = self.shown().model_costs.len();
                self.cost_offset = self
                    .cost_offset
                    .saturating_add_signed(delta)
                    .min(n.saturating_sub(1));
            }
            Pane::Canary | Pane::Alerts => {}
        }
    }

    pub(super) fn scroll_to_top(&mut self, pane: Pane) {
        match pane {
            Pane::Sessions => {
                if let Some(first) = self.rows.first().copied() {
                    self.select(first);
                }
            }
            Pane::Stream => {
                let first = self
                    .selected
                    .and_then(|id| self.shown().view(id))
                    .map_or(0, |v| v.stream.first_seq());
                // `prepare` moves the bottom down until the pane is full.
                self.stream_scroll = Scroll {
                    follow: false,
                    bottom: first,
                };
            }
            Pane::Events => {
                self.events_scroll = Scroll {
                    follow: false,
                    bottom: self.shown().log.first_seq(),
                };
            }
            Pane::Health => self.health_offset = 0,
            Pane::Cost => self.cost_offset = 0,
            Pane::Canary | Pane::Alerts => {}
        }
    }

    pub(super) fn scroll_to_bottom(&mut self, pane: Pane) {
        match pane {
            Pane::Sessions => {
                if let Some(last) = self.rows.last().copied() {
                    self.select(last);
                }
            }
            Pane::Stream => self.stream_scroll = Scroll::default(),
            Pane::Events => self.events_scroll = Scroll::default(),
            Pane::Health => {
                self.health_offset = self.shown().metrics.providers().len().saturating_sub(1);
            }
            Pane::Cost => self.cost_offset = self.shown().model_costs.len().saturating_sub(1),
            Pane::Canary | Pane::Alerts => {}
        }
    }

    /// Handles a mouse event on a screen of size `area`.
    pub fn handle_mouse(&mut self, event: MouseEvent, area: Rect) -> Option<Effect> {
        let screen = render::layout(area, self);
        let at = Position::new(event.column, event.row);
        let pane = screen.pane_at(at);
        match event.kind {
            MouseEventKind::Down(MouseButton::Left) => {
                if self.help.is_some() {
                    self.help = None;
                    return None;
                }
                if let Some(tab) = screen.tab_at(at) {
                    self.set_focus(tab);
                    return None;
                }
                let pane = pane?;
                self.set_focus(pane);
                if pane == Pane::Sessions
                    && let Some(rect) = screen.pane(Pane::Sessions)
                {
                    // Two rows above the first session: the border and the header.
                    let first_row = rect.y + 2;
                    if event.row >= first_row && event.row < rect.bottom().saturating_sub(1) {
                        let index = self.table_offset + usize::from(event.row - first_row);
                        if let Some(id) = self.rows.get(index).copied() {
                            self.select(id);
                        }
                    }
                }
            }
            MouseEventKind::ScrollUp | MouseEventKind::ScrollDown => {
                let up = event.kind == MouseEventKind::ScrollUp;
                if self.help.is_some() {
                    return self.act(if up { Action::Up } else { Action::Down });
                }
                let pane = pane?;
                let lines = if pane == Pane::Sessions { 1 } else { 3 };
                self.scroll(pane, if up { -lines } else { lines });
            }
            _ => {}
        }
        None
    }
}
