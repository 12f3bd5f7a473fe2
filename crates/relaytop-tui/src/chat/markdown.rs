//! Markdown of a reply as terminal lines: headings, paragraphs, lists (nested, numbered),
//! emphasis, inline code, code blocks (a gutter and their own colour, never reflowed), quotes
//! and rules, wrapped to a width. `pulldown-cmark` parses; this module only lays out.
//!
//! A reply still streaming is rendered as it stands: an unclosed code block shows as one.

use pulldown_cmark::{CodeBlockKind, Event, HeadingLevel, Options, Parser, Tag, TagEnd};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

use crate::theme::{Role, Theme};

/// The styles Markdown is drawn with, from the theme's roles.
#[derive(Clone, Copy, Debug)]
pub struct MarkdownStyle {
    pub text: Style,
    pub heading: Style,
    pub code: Style,
    pub gutter: Style,
    pub marker: Style,
}

impl MarkdownStyle {
    pub fn from_theme(theme: &Theme) -> MarkdownStyle {
        MarkdownStyle {
            text: theme.fg(Role::StreamText),
            heading: theme.fg(Role::Title).add_modifier(Modifier::BOLD),
            code: theme.fg(Role::Connected),
            gutter: theme.fg(Role::Muted),
            marker: theme.fg(Role::Header),
        }
    }
}

/// `text` as lines of at most `width` cells.
pub fn render(text: &str, width: usize, style: &MarkdownStyle) -> Vec<Line<'static>> {
    let mut b = Builder {
        width: width.max(8),
        style: *style,
        out: Vec::new(),
        spans: Vec::new(),
        emphasis: 0,
        strong: 0,
        heading: None,
        lists: Vec::new(),
        marker: None,
        quote: 0,
        code: None,
    };
    let options = Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TABLES;
    for event in Parser::new_ext(text, options) {
        b.event(event);
    }
    if let Some(code) = b.code.take() {
        b.code_block(&code);
    }
    b.flush();
    while b.out.last().is_some_and(|l| l.spans.is_empty()) {
        b.out.pop();
    }
    b.out
}

struct Builder {
    width: usize,
    style: MarkdownStyle,
    out: Vec<Line<'static>>,
    /// The inline content of the block being read.
    spans: Vec<(String, Style)>,
    emphasis: u32,
    strong: u32,
    heading: Option<HeadingLevel>,
    /// The lists we are in: the next number of an ordered one.
    lists: Vec<Option<u64>>,
    /// An item's marker, waiting for its first line.
    marker: Option<String>,
    quote: usize,
    /// The code block being read.
    code: Option<String>,
}

impl Builder {
    fn inline_style(&self) -> Style {
        let mut style = match self.heading {
            Some(_) => self.style.heading,
            None => self.style.text,
        };
        if self.emphasis > 0 {
            style = style.add_modifier(Modifier::ITALIC);
        }
        if self.strong > 0 {
            style = style.add_modifier(Modifier::BOLD);
        }
        style
    }

    /// The indent of the list items we are in (two cells a level, beyond the first).
    fn indent(&self) -> usize {
        self.lists.len().saturating_sub(1) * 2
    }

    fn blank(&mut self) {
        if self.out.last().is_some_and(|l| !l.spans.is_empty()) && self.lists.is_empty() {
            self.out.push(Line::default());
        }
    }

    fn event(&mut self, event: Event<'_>) {
        if let Some(code) = &mut self.code {
            match event {
                Event::Text(text) => code.push_str(&text),
                Event::End(TagEnd::CodeBlock) => {
                    let code = self.code.take().unwrap_or_default();
                    self.code_block(&code);
                    self.blank();
                }
                _ => {}
            }
            return;
        }
        match event {
            Event::Start(tag) => self.start(tag),
            Event::End(tag) => self.end(tag),
            Event::Text(text) => {
                let style = self.inline_style();
                self.spans.push((text.into_string(), style));
            }
            Event::Code(code) => {
                let style = self.style.code;
                self.spans.push((code.into_string(), style));
            }
            Event::SoftBreak => {
                let style = self.inline_style();
                self.spans.push((" ".into(), style));
            }
            Event::HardBreak => self.flush(),
            Event::Rule => {
                self.flush();
                let rule = "─".repeat(self.width.min(40));
                self.out
                    .push(Line::from(Span::styled(rule, self.style.gutter)));
                self.blank();
            }
            Event::Html(html) | Event::InlineHtml(html) => {
                let style = self.inline_style();
                self.spans.push((html.trim_end().to_owned(), style));
            }
            Event::TaskListMarker(done) => {
                let style = self.style.marker;
                self.spans
                    .push((if done { "[x] " } else { "[ ] " }.into(), style));
            }
            Event::FootnoteReference(_) | Event::InlineMath(_) | Event::DisplayMath(_) => {}
        }
    }

    fn start(&mut self, tag: Tag<'_>) {
        match tag {
            Tag::Heading { level, .. } => {
                self.flush();
                self.heading = Some(level);
                let hashes = "#".repeat(level as usize);
                let style = self.style.heading;
                self.spans.push((format!("{hashes} "), style));
            }
            Tag::List(first) => {
                self.flush();
                self.lists.push(first);
            }
            Tag::Item => {
                self.flush();
                let marker = match self.lists.last_mut() {
                    Some(Some(n)) => {
                        let marker = format!("{n}. ");
                        *n += 1;
                        marker
                    }
                    _ => "• ".to_owned(),
                };
                self.marker = Some(marker);
            }
            Tag::Emphasis => self.emphasis += 1,
            Tag::Strong => self.strong += 1,
            Tag::CodeBlock(kind) => {
                self.flush();
                if let CodeBlockKind::Fenced(lang) = &kind
                    && !lang.is_empty()
                {
                    let style = self.style.gutter;
                    let prefix = self.prefix(false);
                    let mut spans = prefix;
                    spans.push(Span::styled(format!("┌ {lang}"), style));
                    self.out.push(Line::from(spans));
                }
                self.code = Some(String::new());
            }
            Tag::BlockQuote(_) => {
                self.flush();
                self.quote += 1;
            }
            _ => {}
        }
    }

    fn end(&mut self, tag: TagEnd) {
        match tag {
            TagEnd::Heading(_) => {
                self.flush();
                self.heading = None;
                self.blank();
            }
            TagEnd::Paragraph => {
                self.flush();
                self.blank();
            }
            TagEnd::Item => self.flush(),
            TagEnd::List(_) => {
                self.flush();
                self.lists.pop();
                self.blank();
            }
            TagEnd::Emphasis => self.emphasis = self.emphasis.saturating_sub(1),
            TagEnd::Strong => self.strong = self.strong.saturating_sub(1),
            TagEnd::BlockQuote(_) => {
                self.flush();
                self.quote = self.quote.saturating_sub(1);
                self.blank();
            }
            TagEnd::TableRow | TagEnd::TableHead => self.flush(),
            _ => {}
        }
    }

    /// The start of a line: quote bars, the list indent, and the item's marker on its first
    /// line (spaces as wide on the next ones).
    fn prefix(&mut self, first: bool) -> Vec<Span<'static>> {
        let mut spans = Vec::new();
        for _ in 0..self.quote {
            spans.push(Span::styled("▌ ", self.style.gutter));
        }
        if !self.lists.is_empty() {
            let indent = " ".repeat(self.indent());
            match (&self.marker, first) {
                (Some(marker), true) => {
                    spans.push(Span::raw(indent));
                    spans.push(Span::styled(marker.clone(), self.style.marker));
                }
                _ => {
                    // Continuation: as wide as an item marker.
                    spans.push(Span::raw(format!("{indent}  ")));
                }
            }
        }
        spans
    }

    /// Lays out the inline content read so far, wrapped.
    fn flush(&mut self) {
        if self.spans.is_empty() {
            return;
        }
        let spans = std::mem::take(&mut self.spans);
        let mut first = true;
        let mut line = self.prefix(true);
        self.marker = None;
        let mut used: usize = line.iter().map(|s| s.content.width()).sum();
        let start = used;
        let room = self.width.saturating_sub(start).max(4);
        for (text, style) in spans {
            for piece in text.split_inclusive(' ') {
                let width = piece.trim_end().width();
                if used > start && used + width > start + room {
                    trim_end(&mut line);
                    self.out.push(Line::from(std::mem::take(&mut line)));
                    line = self.prefix(false);
                    used = start;
                    first = false;
                }
                let piece = if used == start && !first {
                    piece.trim_start()
                } else {
                    piece
                };
                if piece.width() > room {
                    // A word longer than the line: cut it.
                    for c in piece.chars() {
                        let w = c.width().unwrap_or(0);
                        if used + w > start + room {
                            self.out.push(Line::from(std::mem::take(&mut line)));
                            line = self.prefix(false);
                            used = start;
                        }
                        push(&mut line, c.to_string(), style);
                        used += w;
                    }
                    continue;
                }
                used += piece.width();
                push(&mut line, piece.to_owned(), style);
            }
            first = false;
        }
        trim_end(&mut line);
        self.out.push(Line::from(line));
    }

    /// A code block: each line as it is, behind a gutter, cut (not reflowed) at the width.
    fn code_block(&mut self, code: &str) {
        let room = self.width.saturating_sub(2 + self.indent()).max(4);
        let code = code.strip_suffix('\n').unwrap_or(code);
        for text in code.split('\n') {
            let mut rest = text;
            loop {
                let mut cut = rest.len();
                let mut cells = 0;
                for (i, c) in rest.char_indices() {
                    let w = c.width().unwrap_or(0);
                    if cells + w > room {
                        cut = i;
                        break;
                    }
                    cells += w;
                }
                let mut spans = self.prefix(false);
                spans.push(Span::styled("│ ", self.style.gutter));
                spans.push(Span::styled(rest[..cut].to_owned(), self.style.code));
                self.out.push(Line::from(spans));
                rest = &rest[cut..];
                if rest.is_empty() {
                    break;
                }
            }
        }
    }
}

/// Drops the spaces a line ends with (where it was wrapped).
fn trim_end(line: &mut Vec<Span<'static>>) {
    while let Some(last) = line.last_mut() {
        let trimmed = last.content.trim_end().len();
        if trimmed > 0 {
            last.content.to_mut().truncate(trimmed);
            return;
        }
        if line.len() == 1 {
            return;
        }
        line.pop();
    }
}

/// Appends text to a line, joined to the last span when it has the same style.
fn push(line: &mut Vec<Span<'static>>, text: String, style: Style) {
    if let Some(last) = line.last_mut()
        && last.style == style
    {
        last.content.to_mut().push_str(&text);
        return;
    }
    line.push(Span::styled(text, style));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(lines: &[Line<'_>]) -> Vec<String> {
        lines
            .iter()
            .map(|l| l.spans.iter().map(|s| s.content.as_ref()).collect())
            .collect()
    }

    fn style() -> MarkdownStyle {
        MarkdownStyle::from_theme(&Theme::dark())
    }

    #[test]
    fn headings_lists_and_code_are_laid_out() {
        let text = "# Title\n\nSome *em* and **strong** text.\n\n- one\n- two\n  1. a\n  2. b\n\n```rust\nfn main() {}\n```\n";
        let lines = render(text, 40, &style());
        assert_eq!(
            plain(&lines),
            [
                "# Title",
                "",
                "Some em and strong text.",
                "",
                "• one",
                "• two",
                "  1. a",
                "  2. b",
                "",
                "┌ rust",
                "│ fn main() {}",
            ]
        );
        let em = &lines[2].spans[1];
        assert!(em.style.add_modifier.contains(Modifier::ITALIC), "{em:?}");
        let code = lines[10].spans.last().unwrap();
        assert_eq!(code.style, style().code);
    }

    #[test]
    fn paragraphs_wrap_and_list_items_hang() {
        let lines = render("- a long item that wraps here", 14, &style());
        assert_eq!(plain(&lines), ["• a long item", "  that wraps", "  here"]);
        let lines = render("abcdefghijklmnop", 8, &style());
        assert_eq!(plain(&lines), ["abcdefgh", "ijklmnop"]);
    }

    #[test]
    fn an_unclosed_code_block_still_shows_as_code() {
        let lines = render("text\n\n```\nlet x = 1;", 30, &style());
        assert_eq!(plain(&lines), ["text", "", "│ let x = 1;"]);
    }
}
