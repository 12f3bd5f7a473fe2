#!/usr/bin/env python3
"""Turns a `tmux capture-pane -e -p` capture (text with ANSI SGR colour codes) into an HTML
page that looks like the terminal: one <div> a row, one <span> a run of cells with the same
colours and attributes, in a monospace font. Used by screenshots/make.sh.

Usage: ansi2html.py CAPTURE.ansi OUT.html [--cols N] [--rows N] [--bg #RRGGBB] [--fg #RRGGBB]
"""

import argparse
import html
import re
import unicodedata

# xterm's 16 colours (as most terminal themes set them).
BASIC = [
    "#000000", "#cd3131", "#0dbc79", "#e5e510", "#2472c8", "#bc3fbc", "#11a8cd", "#e5e5e5",
    "#666666", "#f14c4c", "#23d18b", "#f5f543", "#3b8eea", "#d670d6", "#29b8db", "#ffffff",
]


def xterm256(n):
    """The RGB colour of xterm colour index n."""
    if n < 16:
        return BASIC[n]
    if n < 232:
        n -= 16
        steps = [0, 95, 135, 175, 215, 255]
        return "#%02x%02x%02x" % (steps[n // 36], steps[n // 6 % 6], steps[n % 6])
    level = 8 + (n - 232) * 10
    return "#%02x%02x%02x" % (level, level, level)


class Style:
    def __init__(self):
        self.reset()

    def reset(self):
        self.fg = None
        self.bg = None
        self.bold = self.dim = self.italic = self.underline = self.reverse = False

    def key(self):
        return (self.fg, self.bg, self.bold, self.dim, self.italic, self.underline, self.reverse)

    def apply(self, params):
        codes = [int(p) if p else 0 for p in params.split(";")] if params else [0]
        i = 0
        while i < len(codes):
            c = codes[i]
            if c == 0:
                self.reset()
            elif c == 1:
                self.bold = True
            elif c == 2:
                self.dim = True
            elif c == 3:
                self.italic = True
            elif c == 4:
                self.underline = True
            elif c == 7:
                self.reverse = True
            elif c == 22:
                self.bold = self.dim = False
            elif c == 23:
                self.italic = False
            elif c == 24:
                self.underline = False
            elif c == 27:
                self.reverse = False
            elif 30 <= c <= 37:
                self.fg = BASIC[c - 30]
            elif 90 <= c <= 97:
                self.fg = BASIC[c - 90 + 8]
            elif 40 <= c <= 47:
                self.bg = BASIC[c - 40]
            elif 100 <= c <= 107:
                self.bg = BASIC[c - 100 + 8]
            elif c == 39:
                self.fg = None
            elif c == 49:
                self.bg = None
            elif c in (38, 48) and i + 1 < len(codes):
                if codes[i + 1] == 5 and i + 2 < len(codes):
                    colour = xterm256(codes[i + 2])
                    i += 2
                elif codes[i + 1] == 2 and i + 4 < len(codes):
                    colour = "#%02x%02x%02x" % tuple(codes[i + 2:i + 5])
                    i += 4
                else:
                    colour = None
                if c == 38:
                    self.fg = colour
                else:
                    self.bg = colour
            i += 1

    def css(self, default_fg, default_bg):
        fg, bg = self.fg or default_fg, self.bg or default_bg
        if self.reverse:
            fg, bg = bg, fg
        parts = ["color:" + fg]
        if bg != default_bg or self.reverse:
            parts.append("background:" + bg)
        if self.bold:
            parts.append("font-weight:bold")
        if self.dim:
            parts.append("opacity:0.6")
        if self.italic:
            parts.append("font-style:italic")
        if self.underline:
            parts.append("text-decoration:underline")
        return ";".join(parts)


SGR = re.compile(r"\x1b\[([0-9;]*)m")
OTHER_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def cell_width(ch):
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def convert(text, cols, rows, fg, bg):
    style = Style()
    out_rows = []
    for line in text.split("\n")[:rows]:
        spans = []  # (css, text)
        pos = 0
        width = 0
        for m in SGR.finditer(line):
            chunk = OTHER_ESCAPE.sub("", line[pos:m.start()])
            if chunk:
                spans.append((style.css(fg, bg), chunk))
                width += sum(cell_width(c) for c in chunk)
            style.apply(m.group(1))
            pos = m.end()
        chunk = OTHER_ESCAPE.sub("", line[pos:])
        if chunk:
            spans.append((style.css(fg, bg), chunk))
            width += sum(cell_width(c) for c in chunk)
        # tmux trims trailing blanks: pad with the current background.
        if width < cols:
            spans.append((style.css(fg, bg), " " * (cols - width)))
        merged = []
        for css, chunk in spans:
            if merged and merged[-1][0] == css:
                merged[-1] = (css, merged[-1][1] + chunk)
            else:
                merged.append((css, chunk))
        out_rows.append(
            "<div>" + "".join('<span style="%s">%s</span>' % (css, html.escape(t)) for css, t in merged) + "</div>"
        )
    while len(out_rows) < rows:
        out_rows.append("<div>%s</div>" % (" " * cols))
    # No white space between rows: the container keeps white space (`pre`), so a newline here
    # would be an empty row.
    return "".join(out_rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("capture")
    parser.add_argument("out")
    parser.add_argument("--cols", type=int, default=200)
    parser.add_argument("--rows", type=int, default=50)
    parser.add_argument("--fg", default="#d0d0d0")
    parser.add_argument("--bg", default="#1c1c1c")
    parser.add_argument("--font-px", type=int, default=14)
    args = parser.parse_args()
    with open(args.capture, encoding="utf-8", errors="replace") as f:
        text = f.read().rstrip("\n")
    body = convert(text, args.cols, args.rows, args.fg, args.bg)
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><style>
html, body {{ margin: 0; padding: 0; background: {args.bg}; }}
.term {{ font-family: "DejaVu Sans Mono", monospace; font-size: {args.font_px}px;
  line-height: {round(args.font_px * 1.2)}px; color: {args.fg}; background: {args.bg};
  white-space: pre; padding: 10px; display: inline-block; font-variant-ligatures: none; }}
.term div {{ height: {round(args.font_px * 1.2)}px; }}
</style></head><body><div class="term">{body}</div></body></html>
"""
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(page)


if __name__ == "__main__":
    main()
