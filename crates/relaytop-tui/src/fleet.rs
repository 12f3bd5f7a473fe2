//! The fleet view (`relaytop --prometheus URL`): the dashboard fed by PromQL instead of local
//! sessions. The Health pane has one row per location × relay (sessions up, requests a
//! second, TTFT p50/p99, E2E p99, output speed, error, drop and goodput rates over the
//! window), the Cost pane the spend, spend an hour and balance of each, the Alerts pane what
//! fires in the fleet (the generated rules' `ALERTS` and the agents' own engines); the status
//! bar says where the figures come from and how fresh they are.
//!
//! The same keys (the key map and its `[ui.keys]` overrides: move, window longer and
//! shorter, theme, help, quit), themes and terminal loop as the dashboard. A poller task asks
//! Prometheus every `REFRESH` (and at once when the window changes); drawing never awaits.

use std::time::Duration;

use crossterm::event::{KeyEvent, MouseEvent};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Row, Table};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use relaytop_core::config::UiConfig;
use relaytop_core::fleet::promql::{Client, Fleet, FleetRow};

use crate::dashboard::{Settings, UiOptions};
use crate::keys::Action;
use crate::keys::Key;
use crate::terminal_loop::{self, Flow, Screen};
use crate::theme::{Role, Theme};

/// How often Prometheus is asked.
pub const REFRESH: Duration = Duration::from_secs(5);
/// The windows the view steps through (the window keys, `-` and `+`), PromQL durations.
pub const WINDOWS: [&str; 4] = ["1m", "5m", "15m", "1h"];
/// The window the view opens with.
pub const DEFAULT_WINDOW: &str = "5m";

/// The fleet view's state.
pub struct FleetScreen {
    pub source: String,
    pub fleet: Option<Fleet>,
    /// The last answer's failure, shown until an answer comes.
    pub error: Option<String>,
    pub updated: Option<Instant>,
    pub window: usize,
    pub selected: usize,
    pub help: bool,
    settings: Settings,
    windows: Option<watch::Sender<usize>>,
    answers: Option<mpsc::Receiver<Result<Fleet, String>>>,
}

impl FleetScreen {
    /// A screen with nothing fetched yet (tests fill `fleet` themselves).
    pub fn new(source: &str, settings: Settings) -> FleetScreen {
        FleetScreen {
            source: source.to_owned(),
            fleet: None,
            error: None,
            updated: None,
            window: WINDOWS
                .iter()
                .position(|w| *w == DEFAULT_WINDOW)
                .unwrap_or(1),
            selected: 0,
            help: false,
            settings,
            windows: None,
            answers: None,
        }
    }

    fn theme(&self) -> &Theme {
        &self.settings.themes[self.settings.theme]
    }

    fn rows(&self) -> &[FleetRow] {
        self.fleet.as_ref().map_or(&[], |f| f.rows.as_slice())
    }

    /// Applies an action of the key map; what the fleet view has no use for is ignored.
    pub fn act(&mut self, action: Action) -> Flow {
        let last = self.rows().len().saturating_sub(1);
        match action {
            Action::Quit => return Flow::Quit,
            Action::Up => self.selected = self.selected.saturating_sub(1),
            Action::Down => self.selected = (self.selected + 1).min(last),
            Action::Top => self.selected = 0,
            Action::Bottom => self.selected = last,
            Action::WindowLonger | Action::WindowShorter => {
                self.window = if action == Action::WindowLonger {
                    (self.window + 1).min(WINDOWS.len() - 1)
                } else {
                    self.window.saturating_sub(1)
                };
                if let Some(tx) = &self.windows {
                    let _ = tx.send(self.window);
                }
            }
            Action::Theme => {
                self.settings.theme = (self.settings.theme + 1) % self.settings.themes.len();
            }
            Action::Help => self.help = !self.help,
            Action::Back if self.help => self.help = false,
            _ => return Flow::Ignored,
        }
        Flow::Stay
    }

    /// Draws the view into `area` (the whole screen).
    pub fn render(&self, frame: &mut Frame, area: Rect) {
        let theme = self.theme();
        frame.render_widget(Block::default().style(theme.base()), area);
        let rows = self.rows().len() as u16;
        let alerts = self.fleet.as_ref().map_or(0, |f| f.alerts.len()) as u16;
        // Health and Cost as tall as their rows (a half and a third of the screen at most);
        // the alerts take the rest.
        let [health, cost, alert_area, status] = Layout::vertical([
            Constraint::Length((rows + 3).min(area.height / 2).max(4)),
            Constraint::Length((rows + 3).min(area.height / 3).max(4)),
            Constraint::Min((alerts.max(1) + 2).min(10)),
            Constraint::Length(1),
        ])
        .areas(area);
        self.render_health(frame, health);
        self.render_cost(frame, cost);
        self.render_alerts(frame, alert_area);
        self.render_status(frame, status);
        if self.help {
            self.render_help(frame, area);
        }
    }

    fn block<'a>(&self, title: &str, details: String, focused: bool) -> Block<'a> {
        let theme = self.theme();
        Block::default()
            .borders(Borders::ALL)
            .border_style(theme.border(focused))
            .title(Line::from(vec![
                Span::styled(
                    format!(" {title} "),
                    theme.fg(Role::Title).add_modifier(Modifier::BOLD),
                ),
                Span::styled(details, theme.fg(Role::Muted)),
            ]))
    }

    fn table<'a>(&self, header: &[&'a str], rows: Vec<Row<'a>>, widths: &[u16]) -> Table<'a> {
        let theme = self.theme();
        Table::new(
            rows,
            widths
                .iter()
                .map(|w| Constraint::Length(*w))
                .collect::<Vec<_>>(),
        )
        .header(
            Row::new(header.to_vec()).style(theme.fg(Role::Header).add_modifier(Modifier::BOLD)),
        )
        .column_spacing(1)
    }

    fn row_style(&self, i: usize) -> Style {
        if i == self.selected {
            self.theme().selection()
        } else {
            self.theme().base()
        }
    }

    fn render_health(&self, frame: &mut Frame, area: Rect) {
        let theme = self.theme();
        let locations = self.fleet.as_ref().map_or(0, |f| f.locations().len());
        let block = self.block(
            "Health",
            format!(
                "fleet · {locations} locations · {} relays · window {} ",
                self.rows().len(),
                WINDOWS[self.window]
            ),
            true,
        );
        let bad = |v: Option<f64>, limit: f64| {
            if v.is_some_and(|v| v > limit) {
                theme.fg(Role::Error)
            } else {
                theme.fg(Role::Foreground)
            }
        };
        let rows: Vec<Row> = self
            .rows()
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let up = r.sessions.saturating_sub(r.sessions_down);
                let sessions_style = if r.sessions_down > 0 {
                    theme.fg(Role::BackingOff)
                } else {
                    theme.fg(Role::Connected)
                };
                Row::new(vec![
                    Span::raw(r.location.clone()),
                    Span::raw(r.provider.clone()),
                    Span::styled(format!("{up}/{}", r.sessions), sessions_style),
                    Span::raw(num(r.requests_per_s, 2, "")),
                    Span::raw(num(r.ttft_p50_ms, 0, " ms")),
                    Span::styled(num(r.ttft_p99_ms, 0, " ms"), theme.fg(Role::TtftLine)),
                    Span::raw(num(r.e2e_p99_ms, 0, " ms")),
                    Span::raw(num(r.output_speed_tps, 1, "")),
                    Span::styled(num(r.error_rate_pct, 1, " %"), bad(r.error_rate_pct, 1.0)),
                    Span::styled(num(r.drop_rate_pct, 1, " %"), bad(r.drop_rate_pct, 5.0)),
                    Span::raw(num(r.goodput_pct, 1, " %")),
                ])
                .style(self.row_style(i))
            })
            .collect();
        let table = self
            .table(
                &[
                    "location", "relay", "up", "req/s", "ttft p50", "ttft p99", "e2e p99", "tok/s",
                    "errors", "drops", "goodput",
                ],
                rows,
                &[14, 14, 6, 7, 9, 9, 9, 7, 8, 8, 8],
            )
            .block(block);
        frame.render_widget(table, area);
        if self.rows().is_empty() {
            let text = match (&self.error, &self.fleet) {
                (Some(_), _) => "no answer from Prometheus yet (the status bar says why)",
                (None, None) => "asking Prometheus…",
                (None, Some(_)) => {
                    "no relaytop series: is Prometheus scraping `relaytop agent`s? (docs/fleet)"
                }
            };
            frame.render_widget(
                Paragraph::new(Span::styled(format!(" {text}"), theme.fg(Role::Muted))),
                inner(area, 2),
            );
        }
    }

    fn render_cost(&self, frame: &mut Frame, area: Rect) {
        let theme = self.theme();
        let total: f64 = self.rows().iter().filter_map(|r| r.cost_usd).sum();
        let hourly: f64 = self.rows().iter().filter_map(|r| r.cost_usd_per_hour).sum();
        let block = self.block(
            "Cost",
            format!("fleet ${total:.4} · ${hourly:.4}/h "),
            false,
        );
        let rows: Vec<Row> = self
            .rows()
            .iter()
            .enumerate()
            .map(|(i, r)| {
                Row::new(vec![
                    Span::raw(r.location.clone()),
                    Span::raw(r.provider.clone()),
                    Span::styled(money(r.cost_usd), theme.fg(Role::Cost)),
                    Span::styled(money(r.cost_usd_per_hour), theme.fg(Role::Cost)),
                    Span::raw(money(r.balance_usd)),
                ])
                .style(self.row_style(i))
            })
            .collect();
        let table = self
            .table(
                &["location", "relay", "spend", "spend/h", "balance"],
                rows,
                &[14, 14, 12, 12, 12],
            )
            .block(block);
        frame.render_widget(table, area);
    }

    fn render_alerts(&self, frame: &mut Frame, area: Rect) {
        let theme = self.theme();
        let alerts = self
            .fleet
            .as_ref()
            .map(|f| f.alerts.as_slice())
            .unwrap_or(&[]);
        let block = self.block(
            "Alerts",
            format!("{} firing in the fleet ", alerts.len()),
            false,
        );
        let lines: Vec<Line> = if alerts.is_empty() {
            vec![Line::from(Span::styled(
                " nothing firing",
                theme.fg(Role::HeartbeatOk),
            ))]
        } else {
            alerts
                .iter()
                .map(|a| {
                    let role = if a.severity == "critical" {
                        Role::Error
                    } else {
                        Role::Warning
                    };
                    Line::from(vec![
                        Span::styled(
                            format!(" ● {:<9}", a.severity),
                            theme.fg(role).add_modifier(Modifier::BOLD),
                        ),
                        Span::styled(format!("{:<24}", a.name), theme.fg(Role::Foreground)),
                        Span::raw(format!("{:<14}", a.location)),
                        Span::raw(format!("{:<24}", a.scope)),
                        Span::styled(format!("({})", a.source), theme.fg(Role::Muted)),
                    ])
                })
                .collect()
        };
        frame.render_widget(Paragraph::new(lines).block(block), area);
    }

    fn render_status(&self, frame: &mut Frame, area: Rect) {
        let theme = self.theme();
        let bar = theme.status_bar();
        let fresh = match (&self.error, self.updated) {
            (Some(e), _) => Span::styled(format!(" {e} "), bar.fg(theme.color(Role::Error))),
            (None, Some(at)) => {
                Span::styled(format!(" updated {} s ago ", at.elapsed().as_secs()), bar)
            }
            (None, None) => Span::styled(" waiting for Prometheus ", bar),
        };
        let keys = &self.settings.keys;
        let hints = format!(
            " {} {} window · {} theme · {} help · {} quit ",
            keys.keys_label(Action::WindowShorter),
            keys.keys_label(Action::WindowLonger),
            keys.keys_label(Action::Theme),
            keys.keys_label(Action::Help),
            keys.keys_label(Action::Quit)
        );
        let line = Line::from(vec![
            Span::styled(
                format!(" fleet · {} ", self.source),
                bar.fg(theme.color(Role::Title))
                    .add_modifier(Modifier::BOLD),
            ),
            fresh,
            Span::styled(hints, bar.fg(theme.color(Role::KeyHint))),
        ]);
        frame.render_widget(Paragraph::new(line).style(bar), area);
    }

    fn render_help(&self, frame: &mut Frame, area: Rect) {
        let theme = self.theme();
        let keys = &self.settings.keys;
        let lines: Vec<Line> = [
            (Action::Up, "previous row"),
            (Action::Down, "next row"),
            (Action::WindowLonger, "longer window"),
            (Action::WindowShorter, "shorter window"),
            (Action::Theme, "next theme"),
            (Action::Help, "this help"),
            (Action::Quit, "quit"),
        ]
        .iter()
        .map(|(a, what)| {
            Line::from(vec![
                Span::styled(
                    format!(" {:<12}", keys.keys_label(*a)),
                    theme.fg(Role::KeyHint),
                ),
                Span::raw(*what),
            ])
        })
        .collect();
        let w = 40.min(area.width);
        let h = (lines.len() as u16 + 2).min(area.height);
        let at = Rect::new(
            area.width.saturating_sub(w) / 2,
            area.height.saturating_sub(h) / 2,
            w,
            h,
        );
        frame.render_widget(ratatui::widgets::Clear, at);
        frame.render_widget(
            Paragraph::new(lines).style(theme.base()).block(self.block(
                "Help",
                "fleet view ".into(),
                true,
            )),
            at,
        );
    }
}

fn inner(area: Rect, skip: u16) -> Rect {
    Rect::new(
        area.x + 1,
        area.y + skip,
        area.width.saturating_sub(2),
        area.height.saturating_sub(skip + 1).min(1),
    )
}

fn num(v: Option<f64>, decimals: usize, unit: &str) -> String {
    v.map_or_else(|| "–".to_owned(), |v| format!("{v:.decimals$}{unit}"))
}

fn money(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_owned(), |v| format!("${v:.4}"))
}

impl Screen for FleetScreen {
    fn prepare(&mut self, _now: Instant) -> bool {
        false
    }

    fn wake(&mut self, now: Instant, next_frame: Instant) -> Instant {
        // The status bar's "updated N s ago" moves once a second.
        (now + Duration::from_secs(1)).max(next_frame)
    }

    fn draw(&mut self, frame: &mut Frame) {
        self.render(frame, frame.area());
    }

    fn key(&mut self, key: KeyEvent) -> Flow {
        match Key::from_event(&key).and_then(|k| self.settings.keys.action(k)) {
            Some(action) => self.act(action),
            None => Flow::Ignored,
        }
    }

    fn mouse(&mut self, _mouse: MouseEvent, _area: Rect) -> Flow {
        Flow::Ignored
    }

    fn paste(&mut self, _text: &str) {}

    async fn receive(&mut self) -> bool {
        let Some(answers) = &mut self.answers else {
            return std::future::pending().await;
        };
        match answers.recv().await {
            Some(Ok(fleet)) => {
                let last = fleet.rows.len().saturating_sub(1);
                self.selected = self.selected.min(last);
                self.fleet = Some(fleet);
                self.error = None;
                self.updated = Some(Instant::now());
                true
            }
            Some(Err(e)) => {
                self.error = Some(e);
                true
            }
            None => false,
        }
    }
}

/// Runs the fleet view on the terminal until the person quits (or a signal).
pub async fn run(client: Client, options: UiOptions, config: UiConfig) -> anyhow::Result<()> {
    let settings = Settings::resolve(&options, &config, "[ui]")?;
    let (fps, mouse) = (settings.fps, settings.mouse);
    let mut screen = FleetScreen::new(client.base(), settings);
    let (window_tx, mut window_rx) = watch::channel(screen.window);
    let (tx, rx) = mpsc::channel(4);
    screen.windows = Some(window_tx);
    screen.answers = Some(rx);
    let poller = tokio::spawn(async move {
        loop {
            let window = WINDOWS[*window_rx.borrow_and_update()];
            let answer = client.fleet(window).await.map_err(|e| e.to_string());
            if tx.send(answer).await.is_err() {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(REFRESH) => {}
                changed = window_rx.changed() => if changed.is_err() { return },
            }
        }
    });
    let ended = terminal_loop::run(&mut screen, mouse, fps).await;
    poller.abort();
    ended.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    use relaytop_core::fleet::promql::FleetAlert;

    fn screen() -> FleetScreen {
        let settings =
            Settings::resolve(&UiOptions::default(), &UiConfig::default(), "test").expect("ok");
        let mut s = FleetScreen::new("http://127.0.0.1:9090", settings);
        let row = |location: &str, ttft: f64| FleetRow {
            location: location.into(),
            provider: "legacy".into(),
            sessions: 2,
            ttft_p99_ms: Some(ttft),
            cost_usd: Some(0.25),
            ..FleetRow::default()
        };
        s.fleet = Some(Fleet {
            rows: vec![row("fra", 1200.0), row("sg", 640.0)],
            alerts: vec![FleetAlert {
                name: "slow-ttft".into(),
                severity: "critical".into(),
                location: "fra".into(),
                scope: "provider:legacy".into(),
                source: "prometheus",
            }],
        });
        s
    }

    fn text(s: &FleetScreen) -> String {
        let mut terminal = Terminal::new(TestBackend::new(120, 24)).expect("terminal");
        terminal.draw(|f| s.render(f, f.area())).expect("draw");
        let buffer = terminal.backend().buffer().clone();
        (0..buffer.area.height)
            .map(|y| {
                (0..buffer.area.width)
                    .map(|x| buffer[(x, y)].symbol().to_owned())
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn every_location_and_relay_is_a_row_of_health_and_cost_and_alerts_show() {
        let t = text(&screen());
        assert!(t.contains("2 locations"), "{t}");
        assert_eq!(t.matches("fra").count(), 3, "{t}");
        assert!(t.contains("1200 ms") && t.contains("640 ms"), "{t}");
        assert!(t.contains("$0.2500"), "{t}");
        assert!(t.contains("slow-ttft"), "{t}");
    }

    #[test]
    fn the_keys_move_change_the_window_and_quit() {
        let mut s = screen();
        assert_eq!(s.act(Action::Down), Flow::Stay);
        assert_eq!(s.selected, 1);
        s.act(Action::WindowLonger);
        assert_eq!(WINDOWS[s.window], "15m");
        assert!(text(&s).contains("window 15m"));
        assert_eq!(s.act(Action::Quit), Flow::Quit);
    }
}
