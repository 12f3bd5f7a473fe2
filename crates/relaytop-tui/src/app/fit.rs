//! Fitting the view to the screen before each frame: which session rows are visible, where
//! the stream and the event log stand, the selection kept in view.

use ratatui::layout::Rect;

use crate::render::{self, Screen};
use relaytop_core::session::SessionId;

use super::state::*;
use super::view::*;

impl App {
    // ---- fitting the view to the screen --------------------------------------------------

    /// Brings the view up to date before a frame of size `area`: session order, selection,
    /// and scroll positions. Drawing then only reads.
    pub fn prepare(&mut self, area: Rect) {
        let every = if self.sort == SortColumn::Ttft {
            LATENCY_ROW_REFRESH_US
        } else {
            ROW_REFRESH_US
        };
        let due = self
            .rows_at_us
            .is_none_or(|at| self.now_us.saturating_sub(at) >= every || at > self.now_us);
        if self.rows_stale && due {
            self.refresh_rows();
        }
        if let Some(selected) = self.selected
            && !self.rows.contains(&selected)
        {
            self.selected = None;
        }
        if self.selected.is_none()
            && let Some(first) = self.rows.first().copied()
        {
            self.select(first);
        }
        let screen = render::layout(area, self);
        self.fit_table(&screen);
        self.fit_stream(&screen);
        self.fit_events(&screen);
    }

    pub(super) fn fit_table(&mut self, screen: &Screen) {
        let rows = screen
            .pane(Pane::Sessions)
            .map_or(0, |r| usize::from(r.height.saturating_sub(3)));
        self.viewports.table_rows = rows;
        let len = self.rows.len();
        if rows == 0 || len == 0 {
            self.table_offset = 0;
            return;
        }
        if let Some(i) = self.selected_index() {
            if i < self.table_offset {
                self.table_offset = i;
            } else if i >= self.table_offset + rows {
                self.table_offset = i + 1 - rows;
            }
        }
        self.table_offset = self.table_offset.min(len.saturating_sub(rows));
    }

    pub(super) fn fit_stream(&mut self, screen: &Screen) {
        let Some(area) = screen.pane(Pane::Stream) else {
            return;
        };
        let rows = usize::from(area.height.saturating_sub(2));
        let width = usize::from(area.width.saturating_sub(2));
        self.viewports.stream_rows = rows;
        if self.stream_scroll.follow {
            return;
        }
        let Some(view) = self.selected.and_then(|id| self.shown().view(id)) else {
            return;
        };
        let ring = &view.stream;
        if ring.is_empty() {
            self.stream_scroll = Scroll::default();
            return;
        }
        let last = ring.end_seq() - 1;
        let mut bottom = self.stream_scroll.bottom.clamp(ring.first_seq(), last);
        // Not enough lines above to fill the pane: show more below instead.
        let mut used: usize = (ring.first_seq()..=bottom)
            .rev()
            .map(|s| ring.get(s).map_or(1, |l| line_height(l, width)))
            .scan(0usize, |acc, h| {
                if *acc >= rows {
                    return None;
                }
                *acc += h;
                Some(h)
            })
            .sum();
        while used < rows && bottom < last {
            bottom += 1;
            used += ring.get(bottom).map_or(1, |l| line_height(l, width));
        }
        self.stream_scroll.bottom = bottom;
        if bottom >= last && used <= rows {
            self.stream_scroll.follow = true;
        }
    }

    pub(super) fn fit_events(&mut self, screen: &Screen) {
        let rows = screen
            .pane(Pane::Events)
            .map_or(0, |r| usize::from(r.height.saturating_sub(2)));
        self.viewports.events_rows = rows;
        if self.events_scroll.follow {
            return;
        }
        let words = App::filter_words(&self.event_filter);
        let log = match &self.frozen {
            Some(f) => &f.data.log,
            None => &self.live.log,
        };
        if log.is_empty() {
            self.events_scroll = Scroll::default();
            return;
        }
        let last = log.end_seq() - 1;
        let mut bottom = self.events_scroll.bottom.clamp(log.first_seq(), last);
        let above = (log.first_seq()..=bottom)
            .rev()
            .filter(|s| log.get(*s).is_some_and(|e| e.matches(&words)))
            .take(rows)
            .count();
        let mut missing = rows.saturating_sub(above);
        while missing > 0 && bottom < last {
            bottom += 1;
            if log.get(bottom).is_some_and(|e| e.matches(&words)) {
                missing -= 1;
            }
        }
        self.events_scroll.bottom = bottom;
        let below = (bottom + 1..=last).any(|s| log.get(s).is_some_and(|e| e.matches(&words)));
        if !below {
            self.events_scroll.follow = true;
        }
    }

    /// Recomputes which sessions pass the filter, in sort order.
    pub(super) fn refresh_rows(&mut self) {
        self.rows_stale = false;
        self.rows_at_us = Some(self.now_us);
        let words = App::filter_words(&self.session_filter);
        let window = self.session_window();
        let now = self.now_us();
        let data = self.shown();
        let mut keyed: Vec<(u64, u32, SessionId)> = data
            .metrics
            .sessions()
            .filter_map(|s| {
                let id = s.info().id;
                let view = data.view(id)?;
                let passes = words.is_empty() || {
                    let state = s.state().label();
                    words
                        .iter()
                        .all(|w| view.search.contains(w.as_str()) || state.contains(w.as_str()))
                };
                passes.then(|| (sort_key(self.sort, s, view, window, now), view.ranks[0], id))
            })
            .collect();
        keyed.sort_unstable();
        if self.sort_reverse {
            keyed.reverse();
        }
        self.rows = keyed.into_iter().map(|(_, _, id)| id).collect();
    }

    /// Where the selected session is in `rows`.
    pub fn selected_index(&self) -> Option<usize> {
        let id = self.selected?;
        self.rows.iter().position(|r| *r == id)
    }

    pub(super) fn select(&mut self, id: SessionId) {
        if self.selected != Some(id) {
            self.stream_scroll = Scroll::default();
        }
        self.selected = Some(id);
        // Keep long stream rings for the few sessions looked at most recently.
        self.viewed.retain(|v| *v != id);
        self.viewed.push_back(id);
        if let Some(view) = self.live.view_mut(id)
            && view.stream.capacity() < VIEWED_STREAM_LINES
        {
            view.stream.set_capacity(VIEWED_STREAM_LINES);
        }
        while self.viewed.len() > MAX_VIEWED_SESSIONS {
            if let Some(old) = self.viewed.pop_front()
                && let Some(view) = self.live.view_mut(old)
            {
                view.stream.set_capacity(BACKGROUND_STREAM_LINES);
            }
        }
    }
}
