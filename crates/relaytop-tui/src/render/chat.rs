//! Draws a chat pane: the conversation (laid out by `ChatPane::layout`, only the visible
//! lines drawn), a title with the provider, model and connection state, and the input with
//! its cursor and key hints.

use ratatui::Frame;
use ratatui::layout::{Position, Rect};
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};

use crate::chat::ChatPane;
use crate::theme::{Role, Theme};

/// Most rows the input grows to.
const INPUT_ROWS: usize = 8;

/// Lays the pane out for `area` (call before `render`, with the same area).
pub fn prepare(pane: &mut ChatPane, area: Rect, theme: &Theme) {
    let inner_width = usize::from(area.width.saturating_sub(2));
    pane.layout(inner_width, theme);
    let (rows, _) = pane.editor.visual_rows(inner_width.saturating_sub(2));
    let input = rows.len().clamp(1, INPUT_ROWS) as u16;
    pane.page = usize::from(area.height.saturating_sub(input + 3)).max(1);
    // (the borders, the rule above the input, the input)
}

pub fn render(frame: &mut Frame, area: Rect, pane: &ChatPane, theme: &Theme) {
    frame.render_widget(Clear, area);
    let state = pane.state.as_ref().map_or("starting", |s| s.label());
    let state_role = match &pane.state {
        Some(s) if s.is_up() => Role::Connected,
        Some(relaytop_core::session::SessionState::BackingOff { .. }) => Role::BackingOff,
        Some(relaytop_core::session::SessionState::Stopped { .. }) => Role::Stopped,
        _ => Role::Connecting,
    };
    let title = Line::from(vec![
        Span::styled(
            " chat · ",
            theme.fg(Role::BorderFocused).add_modifier(Modifier::BOLD),
        ),
        Span::styled(pane.provider.clone(), theme.fg(Role::Title)),
        Span::styled(
            format!(" · {} · {} · ", pane.model, pane.protocol.label()),
            theme.fg(Role::Muted),
        ),
        Span::styled(state, theme.fg(state_role)),
        Span::raw(" "),
    ]);
    let right = if pane.scroll.follow() {
        Line::from(Span::styled(" following ", theme.fg(Role::Muted)))
    } else {
        Line::from(vec![
            Span::styled(
                format!(" {} lines below · ", pane.scroll.back),
                theme.fg(Role::Warning),
            ),
            Span::styled("pagedown ", theme.fg(Role::KeyHint)),
        ])
    };
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.border(true))
        .style(theme.base())
        .title(title)
        .title(right.right_aligned());
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if inner.height < 4 || inner.width < 10 {
        return;
    }

    let (rows, cursor) = pane
        .editor
        .visual_rows(usize::from(inner.width.saturating_sub(2)));
    let input_rows = rows.len().clamp(1, INPUT_ROWS);
    let input_height = input_rows as u16 + 1;
    let talk_height = inner.height.saturating_sub(input_height);

    // The conversation, bottom-aligned while it is shorter than the pane.
    let visible = pane.visible(usize::from(talk_height));
    let pad = usize::from(talk_height).saturating_sub(visible.len());
    let mut lines: Vec<Line<'_>> = Vec::with_capacity(usize::from(talk_height));
    if pane.turns().len() == 0 {
        lines.push(Line::from(Span::styled(
            format!(
                "Type a message and press Enter: it goes to {} ({}) and the reply streams in here.",
                pane.provider, pane.model
            ),
            theme.fg(Role::Muted),
        )));
        lines.push(Line::from(Span::styled(
            "/help lists the commands: /model, /system, /clear, /save, /transcribe.",
            theme.fg(Role::Muted),
        )));
    } else {
        lines.extend(std::iter::repeat_n(Line::default(), pad));
        lines.extend(visible.into_iter().cloned());
    }
    let talk = Paragraph::new(lines);
    let talk = if pane.turns().len() == 0 {
        talk.wrap(Wrap { trim: false })
    } else {
        talk
    };
    frame.render_widget(talk, Rect::new(inner.x, inner.y, inner.width, talk_height));

    // The input: a rule with the hints, then the text.
    let hint = if pane.busy() {
        " Esc cancels the reply · Esc again leaves "
    } else {
        " Enter sends · Alt-Enter new line · ↑↓ history · Esc leaves · /help "
    };
    let rule_area = Rect::new(inner.x, inner.y + talk_height, inner.width, 1);
    frame.render_widget(
        Block::default()
            .borders(Borders::TOP)
            .border_style(theme.border(false))
            .title(Span::styled(hint, theme.fg(Role::KeyHint))),
        rule_area,
    );
    let first = cursor.0.saturating_sub(input_rows - 1);
    let input_area = Rect::new(
        inner.x,
        inner.y + talk_height + 1,
        inner.width,
        input_rows as u16,
    );
    let input: Vec<Line<'_>> = rows
        .iter()
        .enumerate()
        .skip(first)
        .take(input_rows)
        .map(|(i, row)| {
            let lead = if i == 0 { "› " } else { "  " };
            Line::from(vec![
                Span::styled(lead, theme.fg(Role::Header)),
                Span::styled(row.clone(), theme.fg(Role::Foreground)),
            ])
        })
        .collect();
    frame.render_widget(Paragraph::new(input), input_area);
    let x = input_area.x + 2 + u16::try_from(cursor.1).unwrap_or(u16::MAX);
    let y = input_area.y + u16::try_from(cursor.0 - first).unwrap_or(0);
    if x < input_area.right() && y < input_area.bottom() {
        frame.set_cursor_position(Position::new(x, y));
    }
}
