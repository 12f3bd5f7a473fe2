//! The chat input: a small multi-line editor (the usual line-editing keys, paste, newlines)
//! with a history of what was sent, walked with Up and Down.
//!
//! Pure: it holds the text and the cursor and is told what to do; the chat pane maps keys to
//! these calls. Positions are in characters; drawing (wrapping, the cursor's cell) is
//! `visual_rows`'s.

use std::collections::VecDeque;

use unicode_width::UnicodeWidthChar;

/// Most entries the input history keeps (the oldest go).
pub const HISTORY_LIMIT: usize = 200;
/// Most characters the input takes (a paste beyond it is cut).
pub const INPUT_LIMIT: usize = 256 * 1024;

/// A multi-line text being typed.
#[derive(Clone, Debug, Default)]
pub struct Editor {
    lines: Vec<Vec<char>>,
    row: usize,
    col: usize,
    history: VecDeque<String>,
    /// Where Up/Down is in the history; `None` = the draft.
    browsing: Option<usize>,
    /// What was being typed before browsing the history.
    draft: String,
}

impl Editor {
    pub fn new() -> Editor {
        Editor {
            lines: vec![Vec::new()],
            ..Editor::default()
        }
    }

    /// The text, lines joined with `\n`.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for (i, line) in self.lines.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            out.extend(line.iter());
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.lines.len() == 1 && self.lines[0].is_empty()
    }

    /// The cursor: (line, character).
    pub fn cursor(&self) -> (usize, usize) {
        (self.row, self.col)
    }

    pub fn line_count(&self) -> usize {
        self.lines.len()
    }

    fn chars(&self) -> usize {
        self.lines.iter().map(Vec::len).sum::<usize>() + self.lines.len() - 1
    }

    /// Replaces the text, the cursor at its end.
    pub fn set_text(&mut self, text: &str) {
        self.lines = text
            .split('\n')
            .map(|l| l.chars().filter(|c| *c != '\r').collect())
            .collect();
        if self.lines.is_empty() {
            self.lines.push(Vec::new());
        }
        self.row = self.lines.len() - 1;
        self.col = self.lines[self.row].len();
    }

    /// Takes the text out (for sending), remembers it in the history, and empties the input.
    pub fn take(&mut self) -> String {
        let text = self.text();
        if !text.trim().is_empty() && self.history.back() != Some(&text) {
            if self.history.len() >= HISTORY_LIMIT {
                self.history.pop_front();
            }
            self.history.push_back(text.clone());
        }
        self.browsing = None;
        self.draft.clear();
        self.set_text("");
        text
    }

    pub fn insert_char(&mut self, c: char) {
        if c == '\n' {
            self.newline();
            return;
        }
        if c.is_control() || self.chars() >= INPUT_LIMIT {
            return;
        }
        self.lines[self.row].insert(self.col, c);
        self.col += 1;
    }

    /// Inserts pasted text as it is (newlines included; `\r\n` and tabs made plain).
    pub fn insert_str(&mut self, text: &str) {
        for c in text.chars() {
            match c {
                '\r' => {}
                '\t' => {
                    for _ in 0..4 {
                        self.insert_char(' ');
                    }
                }
                c => self.insert_char(c),
            }
        }
    }

    pub fn newline(&mut self) {
        if self.chars() >= INPUT_LIMIT {
            return;
        }
        let rest = self.lines[self.row].split_off(self.col);
        self.lines.insert(self.row + 1, rest);
        self.row += 1;
        self.col = 0;
    }

    pub fn backspace(&mut self) {
        if self.col > 0 {
            self.col -= 1;
            self.lines[self.row].remove(self.col);
        } else if self.row > 0 {
            let line = self.lines.remove(self.row);
            self.row -= 1;
            self.col = self.lines[self.row].len();
            self.lines[self.row].extend(line);
        }
    }

    pub fn delete(&mut self) {
        if self.col < self.lines[self.row].len() {
            self.lines[self.row].remove(self.col);
        } else if self.row + 1 < self.lines.len() {
            let next = self.lines.remove(self.row + 1);
            self.lines[self.row].extend(next);
        }
    }

    pub fn left(&mut self) {
        if self.col > 0 {
            self.col -= 1;
        } else if self.row > 0 {
            self.row -= 1;
            self.col = self.lines[self.row].len();
        }
    }

    pub fn right(&mut self) {
        if self.col < self.lines[self.row].len() {
            self.col += 1;
        } else if self.row + 1 < self.lines.len() {
            self.row += 1;
            self.col = 0;
        }
    }

    /// One word left (Ctrl-Left, Alt-b).
    pub fn word_left(&mut self) {
        if self.col == 0 {
            self.left();
            return;
        }
        let line = &self.lines[self.row];
        while self.col > 0 && line[self.col - 1].is_whitespace() {
            self.col -= 1;
        }
        while self.col > 0 && !line[self.col - 1].is_whitespace() {
            self.col -= 1;
        }
    }

    /// One word right (Ctrl-Right, Alt-f).
    pub fn word_right(&mut self) {
        let len = self.lines[self.row].len();
        if self.col == len {
            self.right();
            return;
        }
        let line = &self.lines[self.row];
        while self.col < len && line[self.col].is_whitespace() {
            self.col += 1;
        }
        while self.col < len && !line[self.col].is_whitespace() {
            self.col += 1;
        }
    }

    pub fn home(&mut self) {
        self.col = 0;
    }

    pub fn end(&mut self) {
        self.col = self.lines[self.row].len();
    }

    /// Deletes the word before the cursor (Ctrl-W).
    pub fn delete_word(&mut self) {
        let end = self.col;
        self.word_left();
        if self.row < self.lines.len() && self.col < end {
            self.lines[self.row].drain(self.col..end);
        }
    }

    /// Deletes from the start of the line to the cursor (Ctrl-U).
    pub fn kill_to_start(&mut self) {
        self.lines[self.row].drain(..self.col);
        self.col = 0;
    }

    /// Deletes from the cursor to the end of the line (Ctrl-K).
    pub fn kill_to_end(&mut self) {
        self.lines[self.row].truncate(self.col);
    }

    /// Up: the line above, or on the first line the previous history entry. False when there
    /// is nowhere to go.
    pub fn up(&mut self) -> bool {
        if self.row > 0 {
            self.row -= 1;
            self.col = self.col.min(self.lines[self.row].len());
            return true;
        }
        self.history_back()
    }

    /// Down: the line below, or on the last line the next history entry (then the draft).
    pub fn down(&mut self) -> bool {
        if self.row + 1 < self.lines.len() {
            self.row += 1;
            self.col = self.col.min(self.lines[self.row].len());
            return true;
        }
        self.history_forward()
    }

    fn history_back(&mut self) -> bool {
        let index = match self.browsing {
            None if self.history.is_empty() => return false,
            None => {
                self.draft = self.text();
                self.history.len() - 1
            }
            Some(0) => return false,
            Some(i) => i - 1,
        };
        self.browsing = Some(index);
        let entry = self.history[index].clone();
        self.set_text(&entry);
        true
    }

    fn history_forward(&mut self) -> bool {
        let Some(index) = self.browsing else {
            return false;
        };
        if index + 1 < self.history.len() {
            self.browsing = Some(index + 1);
            let entry = self.history[index + 1].clone();
            self.set_text(&entry);
        } else {
            self.browsing = None;
            let draft = std::mem::take(&mut self.draft);
            self.set_text(&draft);
        }
        true
    }

    /// The text cut into rows of at most `width` cells (each line at least one row), and the
    /// cursor's (row, column) among them.
    pub fn visual_rows(&self, width: usize) -> (Vec<String>, (usize, usize)) {
        let width = width.max(2);
        let mut rows = Vec::new();
        let mut cursor = (0, 0);
        for (r, line) in self.lines.iter().enumerate() {
            let mut row = String::new();
            let mut cells = 0;
            for (c, ch) in line.iter().enumerate() {
                let w = ch.width().unwrap_or(0);
                if cells + w > width {
                    rows.push(std::mem::take(&mut row));
                    cells = 0;
                }
                if r == self.row && c == self.col {
                    cursor = (rows.len(), cells);
                }
                row.push(*ch);
                cells += w;
            }
            if r == self.row && self.col >= line.len() {
                if cells >= width {
                    rows.push(std::mem::take(&mut row));
                    cells = 0;
                }
                cursor = (rows.len(), cells);
            }
            rows.push(row);
        }
        (rows, cursor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(text: &str) -> Editor {
        let mut e = Editor::new();
        e.insert_str(text);
        e
    }

    #[test]
    fn typing_editing_and_newlines() {
        let mut e = typed("hello world");
        e.delete_word();
        assert_eq!(e.text(), "hello ");
        e.newline();
        e.insert_str("second");
        assert_eq!(e.text(), "hello \nsecond");
        e.home();
        e.backspace();
        assert_eq!(e.text(), "hello second");
        e.end();
        e.left();
        e.left();
        e.kill_to_end();
        assert_eq!(e.text(), "hello seco");
        e.kill_to_start();
        assert!(e.is_empty());
        e.insert_str("a\r\nb\tc");
        assert_eq!(e.text(), "a\nb    c");
        assert_eq!(e.cursor(), (1, 6));
    }

    #[test]
    fn up_and_down_walk_the_history_and_come_back_to_the_draft() {
        let mut e = typed("first");
        assert_eq!(e.take(), "first");
        e.insert_str("second");
        e.take();
        e.insert_str("draft");
        assert!(e.up());
        assert_eq!(e.text(), "second");
        assert!(e.up());
        assert_eq!(e.text(), "first");
        assert!(!e.up(), "the oldest entry");
        assert!(e.down());
        assert!(e.down());
        assert_eq!(e.text(), "draft");
        assert!(!e.down());
    }

    #[test]
    fn up_moves_between_lines_before_the_history() {
        let mut e = typed("old");
        e.take();
        e.insert_str("one\ntwo");
        assert!(e.up());
        assert_eq!(e.cursor(), (0, 3));
        assert_eq!(e.text(), "one\ntwo", "a line up, not the history");
        assert!(e.up());
        assert_eq!(e.text(), "old");
    }

    #[test]
    fn rows_wrap_and_the_cursor_follows() {
        let e = typed("abcdef\ngh");
        let (rows, cursor) = e.visual_rows(4);
        assert_eq!(rows, ["abcd", "ef", "gh"]);
        assert_eq!(cursor, (2, 2));
        let e = typed("abcd");
        assert_eq!(
            e.visual_rows(4),
            (vec!["abcd".into(), String::new()], (1, 0))
        );
    }

    #[test]
    fn the_history_and_the_input_are_bounded() {
        let mut e = Editor::new();
        for n in 0..HISTORY_LIMIT + 10 {
            e.insert_str(&n.to_string());
            e.take();
        }
        assert_eq!(e.history.len(), HISTORY_LIMIT);
        e.insert_str(&"x".repeat(INPUT_LIMIT + 5));
        assert_eq!(e.text().len(), INPUT_LIMIT);
    }
}
