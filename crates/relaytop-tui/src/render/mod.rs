//! Drawing: where each pane goes on the screen, and one render function per pane.
//!
//! Everything here reads the `App` and writes to the frame; nothing changes state, awaits or
//! reads a clock. Only visible rows and lines are turned into widgets, so a thousand sessions
//! or a ten-thousand-line stream cost no more than a screenful.
//!
//! The screen, wide (at least 150 columns and 30 rows):
//!
//! ```text
//! ┌ Sessions ─────────────────────────────────────────┐┌ Health ──────────────────────┐
//! │ session  provider  state  reconn  drops  hb  ttft ││ legacy  15/16 up · err · drop│
//! │ probe-1  legacy    open        0      0  …  …     ││  ttft   ▂▃▅▂▇▃  p50 p90 p99  │
//! │ …                                                 ││  hb rtt ▁▁×▁▁▁  p50 p90 p99  │
//! │                                                   │└──────────────────────────────┘
//! │                                                   │┌ Cost ────────────────────────┐
//! │                                                   ││ provider model calls … /hour │
//! └───────────────────────────────────────────────────┘└──────────────────────────────┘
//! ┌ Stream · probe-1 ──────────────────┐┌ Events ─────────────────────────────────────┐
//! │ ▶ request #12 · gpt-4.1 ───────────││ 14:03:22.120 probe-3 drop  dropped 1006: …  │
//! │ Relay stations forward each …      ││ 14:03:22.121 probe-3 backoff attempt 1/10 … │
//! │ ✓ done #12 · 25 tokens out · …     ││                                             │
//! └────────────────────────────────────┘└─────────────────────────────────────────────┘
//!  14:03:22  run 1:35  cpu 0.8% mem 23 MiB  31/32 up  1 min       Tab pane / filter ? help
//! ```
//!
//! A run with a canary puts the Canary pane between the stream and the events:
//!
//! ```text
//! ┌ Stream · probe-1 ───────┐┌ Canary legacy → holysheep · running ─┐┌ Events ─────────────┐
//! │ ▶ request #12 · gpt-4.1 ││ stage 2 of 4 at 25 %  [5%] [25%] …  ││ 14:03:22.120 …      │
//! │ Relay stations forward …││ weights legacy 75 % · holysheep 25 % ││                     │
//! │                         ││ metric  now  threshold  samples  ok  ││                     │
//! │                         ││ last checks: ✓ passed ✗ failed …     ││                     │
//! └─────────────────────────┘└──────────────────────────────────────┘└─────────────────────┘
//! ```
//!
//! Narrower or shorter screens (80x24 and up) show the sessions on top and one of the other
//! panes below, chosen with `Tab` (its tabs are in that pane's title; the canary's tab comes
//! first and is shown first); `z` zooms the focused pane to the whole screen at any size.

mod alerts;
mod canary;
pub mod chat;
mod cost;
mod events;
mod health;
mod help;
mod sessions;
mod status;
mod stream;
pub mod timeline;

use ratatui::Frame;
use ratatui::layout::{Position, Rect};
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType};

use crate::app::{App, Pane};
use crate::theme::Role;

/// The smallest screen that gets every pane at once.
pub const WIDE_COLUMNS: u16 = 150;
pub const TALL_ROWS: u16 = 30;

/// Where everything goes on one screen.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Screen {
    panes: Vec<(Pane, Rect)>,
    /// The bottom line.
    pub status: Rect,
    /// The replay's timeline, above the status bar (replays only).
    pub timeline: Option<Rect>,
    /// In the compact layout: the tabs in the lower pane's title, and where each is.
    tabs: Vec<(Pane, Rect)>,
}

impl Screen {
    /// Where `pane` is, when it is on screen.
    pub fn pane(&self, pane: Pane) -> Option<Rect> {
        self.panes.iter().find(|(p, _)| *p == pane).map(|(_, r)| *r)
    }

    /// The panes on screen, in drawing order.
    pub fn panes(&self) -> &[(Pane, Rect)] {
        &self.panes
    }

    /// The pane under `at`.
    pub fn pane_at(&self, at: Position) -> Option<Pane> {
        self.panes
            .iter()
            .find(|(_, r)| r.contains(at))
            .map(|(p, _)| *p)
    }

    /// The tab under `at` (compact layout).
    pub fn tab_at(&self, at: Position) -> Option<Pane> {
        self.tabs
            .iter()
            .find(|(_, r)| r.contains(at))
            .map(|(p, _)| *p)
    }

    /// Whether the lower pane has tabs (the compact layout).
    pub fn has_tabs(&self) -> bool {
        !self.tabs.is_empty()
    }
}

/// The panes a compact screen shows below the sessions, in tab order (the canary's only in
/// runs with one).
const DETAIL_TABS: [Pane; 5] = [
    Pane::Canary,
    Pane::Stream,
    Pane::Health,
    Pane::Cost,
    Pane::Events,
];

pub use canary::summary as canary_summary;

/// The label of a tab, as drawn: ` Stream `.
fn tab_label(pane: Pane) -> String {
    format!(" {} ", pane.title())
}

/// Lays out a screen of size `area` for `app`.
pub fn layout(area: Rect, app: &App) -> Screen {
    let status = Rect::new(
        area.x,
        area.bottom().saturating_sub(1),
        area.width,
        area.height.min(1),
    );
    let mut body = Rect::new(area.x, area.y, area.width, area.height.saturating_sub(1));
    let mut timeline = None;
    if app.replay().is_some() && body.height > 1 {
        body.height -= 1;
        timeline = Some(Rect::new(area.x, body.bottom(), area.width, 1));
    }
    let mut screen = Screen {
        panes: Vec::new(),
        status,
        timeline,
        tabs: Vec::new(),
    };
    if body.height == 0 || body.width == 0 {
        return screen;
    }
    if app.zoomed {
        screen.panes.push((app.focus, body));
        return screen;
    }
    if body.width >= WIDE_COLUMNS && body.height >= TALL_ROWS - 1 {
        let top_height = body.height * 11 / 20;
        let right_width = (body.width * 33 / 100).clamp(56, 96);
        let providers = app.shown().metrics.providers().len() as u16;
        let models = app.shown().model_costs.len().max(providers as usize) as u16;
        let cost_height = (models + 6).clamp(6, top_height / 2);
        let sessions = Rect::new(body.x, body.y, body.width - right_width, top_height);
        let right_x = body.x + body.width - right_width;
        let health = Rect::new(right_x, body.y, right_width, top_height - cost_height);
        let cost = Rect::new(right_x, body.y + health.height, right_width, cost_height);
        let bottom = Rect::new(
            body.x,
            body.y + top_height,
            body.width,
            body.height - top_height,
        );
        screen.panes = vec![
            (Pane::Sessions, sessions),
            (Pane::Health, health),
            (Pane::Cost, cost),
        ];
        if app.canary().is_some() {
            let stream_width = bottom.width * 30 / 100;
            let canary_width = (bottom.width * 40 / 100).max(60.min(bottom.width - stream_width));
            let stream = Rect::new(bottom.x, bottom.y, stream_width, bottom.height);
            let canary = Rect::new(
                bottom.x + stream_width,
                bottom.y,
                canary_width,
                bottom.height,
            );
            let events_x = canary.right();
            let events = Rect::new(
                events_x,
                bottom.y,
                bottom.right().saturating_sub(events_x),
                bottom.height,
            );
            screen.panes.push((Pane::Stream, stream));
            screen.panes.push((Pane::Canary, canary));
            screen.panes.push((Pane::Events, events));
            return screen;
        }
        let stream_width = bottom.width * 55 / 100;
        let stream = Rect::new(bottom.x, bottom.y, stream_width, bottom.height);
        let events = Rect::new(
            bottom.x + stream_width,
            bottom.y,
            bottom.width - stream_width,
            bottom.height,
        );
        screen.panes.push((Pane::Stream, stream));
        screen.panes.push((Pane::Events, events));
        return screen;
    }
    // Compact: the sessions on top, one other pane below, with tabs.
    let wanted = app.rows.len() as u16 + 3;
    let most = (body.height * 45 / 100).max(5);
    let sessions_height = wanted.clamp(5.min(body.height), most.min(body.height));
    let sessions = Rect::new(body.x, body.y, body.width, sessions_height);
    let lower = Rect::new(
        body.x,
        body.y + sessions_height,
        body.width,
        body.height - sessions_height,
    );
    screen.panes.push((Pane::Sessions, sessions));
    if lower.height >= 3 {
        screen.panes.push((app.detail, lower));
        let mut x = lower.x + 1;
        for pane in DETAIL_TABS {
            if pane == Pane::Canary && app.canary().is_none() {
                continue;
            }
            let width = tab_label(pane).chars().count() as u16;
            if x + width >= lower.right() {
                break;
            }
            screen.tabs.push((pane, Rect::new(x, lower.y, width, 1)));
            x += width + 1;
        }
    }
    screen
}

/// Draws the whole dashboard.
pub fn draw(frame: &mut Frame, app: &App) {
    let area = frame.area();
    let theme = app.theme();
    frame.buffer_mut().set_style(area, theme.base());
    let screen = layout(area, app);
    for (pane, rect) in screen.panes() {
        let chrome = pane_chrome(app, &screen, *pane);
        match pane {
            Pane::Sessions => sessions::render(frame, *rect, chrome, app),
            Pane::Stream => stream::render(frame, *rect, chrome, app),
            Pane::Health => health::render(frame, *rect, chrome, app),
            Pane::Cost => cost::render(frame, *rect, chrome, app),
            Pane::Events => events::render(frame, *rect, chrome, app),
            Pane::Canary => canary::render(frame, *rect, chrome, app),
            Pane::Alerts => alerts::render(frame, *rect, chrome, app),
        }
    }
    if let (Some(rect), Some(view)) = (screen.timeline, app.replay()) {
        timeline::render(frame, rect, app, view);
    }
    status::render(frame, screen.status, app);
    if let Some(offset) = app.help {
        help::render(frame, area, app, offset);
    }
}

/// A pane's frame before its titles: borders, and tabs in the compact layout's lower pane.
pub struct Chrome<'a> {
    pane: Pane,
    block: Block<'a>,
    tabbed: bool,
}

impl<'a> Chrome<'a> {
    /// The finished block: the pane's name and `details` top left (top right, after the tabs,
    /// when tabbed), and `right` top right (bottom right when tabbed).
    pub fn block(self, app: &App, details: Vec<Span<'a>>, right: Option<Line<'a>>) -> Block<'a> {
        let theme = app.theme();
        let mut style = theme.fg(Role::Title).add_modifier(Modifier::BOLD);
        if app.focus == self.pane {
            style = theme.fg(Role::BorderFocused).add_modifier(Modifier::BOLD);
        }
        let mut spans = Vec::new();
        if !self.tabbed {
            spans.push(Span::styled(format!(" {} ", self.pane.title()), style));
        } else {
            spans.push(Span::raw(" "));
        }
        spans.extend(details);
        spans.push(Span::raw(" "));
        let details = Line::from(spans);
        match (self.tabbed, right) {
            (false, right) => {
                let block = self.block.title(details);
                match right {
                    Some(r) => block.title(r.right_aligned()),
                    None => block,
                }
            }
            (true, right) => {
                let block = self.block.title(details.right_aligned());
                match right {
                    Some(r) => block.title_bottom(r.right_aligned()),
                    None => block,
                }
            }
        }
    }
}

/// A pane's frame: rounded borders, brighter when focused; in the compact layout the lower
/// pane's title is its tabs.
fn pane_chrome<'a>(app: &App, screen: &Screen, pane: Pane) -> Chrome<'a> {
    let theme = app.theme();
    let focused = app.focus == pane;
    let mut block = Block::bordered()
        .border_type(BorderType::Rounded)
        .border_style(theme.border(focused));
    let tabbed = pane != Pane::Sessions && screen.has_tabs();
    if tabbed {
        let mut spans = Vec::new();
        for (i, (tab, _)) in screen.tabs.iter().enumerate() {
            if i > 0 {
                spans.push(Span::styled("│", theme.border(false)));
            }
            let style = if *tab == pane {
                theme
                    .fg(Role::Title)
                    .add_modifier(Modifier::BOLD | Modifier::REVERSED)
            } else {
                theme.fg(Role::Muted)
            };
            spans.push(Span::styled(tab_label(*tab), style));
        }
        block = block.title(Line::from(spans));
    }
    Chrome {
        pane,
        block,
        tabbed,
    }
}

/// Muted text.
fn muted<'a>(app: &App, text: impl Into<std::borrow::Cow<'a, str>>) -> Span<'a> {
    Span::styled(text, app.theme().fg(Role::Muted))
}
