//! Colour themes: semantic colour roles (connected, backing_off, heartbeat_late, ...), the
//! TOML theme files that set them, the built-in themes and the `NO_COLOR` fallback.
//!
//! A theme file sets any subset of the roles; the rest come from its `base` theme (the dark
//! default unless it names another built-in). Built-ins are compiled in from `themes/*.toml`,
//! so the binary needs no files at run time. Render code asks for a role's style and never
//! names a colour itself.

use std::path::Path;
use std::str::FromStr;

use ratatui::style::{Color, Modifier, Style};

/// What a colour means.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Background,
    Foreground,
    Muted,
    Border,
    BorderFocused,
    Title,
    Header,
    Selection,
    SelectionText,
    Connecting,
    Connected,
    Streaming,
    BackingOff,
    Stopped,
    Closed,
    HeartbeatOk,
    HeartbeatLate,
    Error,
    Warning,
    TtftLine,
    RttLine,
    Cost,
    CostWarning,
    Estimated,
    RequestMarker,
    StreamText,
    StatusBar,
    StatusText,
    KeyHint,
    Frozen,
    Filter,
}

impl Role {
    /// Every role, in file order.
    pub const ALL: [Role; 31] = [
        Role::Background,
        Role::Foreground,
        Role::Muted,
        Role::Border,
        Role::BorderFocused,
        Role::Title,
        Role::Header,
        Role::Selection,
        Role::SelectionText,
        Role::Connecting,
        Role::Connected,
        Role::Streaming,
        Role::BackingOff,
        Role::Stopped,
        Role::Closed,
        Role::HeartbeatOk,
        Role::HeartbeatLate,
        Role::Error,
        Role::Warning,
        Role::TtftLine,
        Role::RttLine,
        Role::Cost,
        Role::CostWarning,
        Role::Estimated,
        Role::RequestMarker,
        Role::StreamText,
        Role::StatusBar,
        Role::StatusText,
        Role::KeyHint,
        Role::Frozen,
        Role::Filter,
    ];

    /// The role's name in a theme file.
    pub fn name(self) -> &'static str {
        match self {
            Role::Background => "background",
            Role::Foreground => "foreground",
            Role::Muted => "muted",
            Role::Border => "border",
            Role::BorderFocused => "border_focused",
            Role::Title => "title",
            Role::Header => "header",
            Role::Selection => "selection",
            Role::SelectionText => "selection_text",
            Role::Connecting => "connecting",
            Role::Connected => "connected",
            Role::Streaming => "streaming",
            Role::BackingOff => "backing_off",
            Role::Stopped => "stopped",
            Role::Closed => "closed",
            Role::HeartbeatOk => "heartbeat_ok",
            Role::HeartbeatLate => "heartbeat_late",
            Role::Error => "error",
            Role::Warning => "warning",
            Role::TtftLine => "ttft_line",
            Role::RttLine => "rtt_line",
            Role::Cost => "cost",
            Role::CostWarning => "cost_warning",
            Role::Estimated => "estimated",
            Role::RequestMarker => "request_marker",
            Role::StreamText => "stream_text",
            Role::StatusBar => "status_bar",
            Role::StatusText => "status_text",
            Role::KeyHint => "key_hint",
            Role::Frozen => "frozen",
            Role::Filter => "filter",
        }
    }

    fn index(self) -> usize {
        // ALL lists every role once, in declaration order (checked by a test).
        self as usize
    }

    /// What stands in for the colour when colours are off (`NO_COLOR`).
    fn mono_modifier(self) -> Modifier {
        match self {
            Role::Title | Role::Header | Role::BorderFocused | Role::Frozen => Modifier::BOLD,
            Role::Error | Role::Stopped | Role::HeartbeatLate | Role::CostWarning => {
                Modifier::BOLD | Modifier::UNDERLINED
            }
            Role::BackingOff | Role::Warning | Role::Connecting => Modifier::ITALIC,
            Role::Muted | Role::Closed | Role::Border | Role::RequestMarker => Modifier::DIM,
            Role::Selection | Role::StatusBar => Modifier::REVERSED,
            _ => Modifier::empty(),
        }
    }
}

/// The built-in theme files, compiled in.
pub const BUILT_IN: [(&str, &str); 4] = [
    ("dark", include_str!("../../../themes/dark.toml")),
    ("light", include_str!("../../../themes/light.toml")),
    (
        "high-contrast",
        include_str!("../../../themes/high-contrast.toml"),
    ),
    ("solarized", include_str!("../../../themes/solarized.toml")),
];

/// The name of the theme used when `NO_COLOR` is set.
pub const NO_COLOR_NAME: &str = "no-color";

/// A complete theme: a colour for every role.
#[derive(Clone, Debug, PartialEq)]
pub struct Theme {
    name: String,
    colors: [Color; Role::ALL.len()],
    /// Colours off: roles are shown with bold, dim, italic, underline and reverse instead.
    no_color: bool,
}

/// Why a theme could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ThemeError {
    #[error("theme {source_name}: {message}")]
    Invalid {
        source_name: String,
        message: String,
    },
    #[error(
        "no theme `{0}`: use one of dark, light, high-contrast, solarized, or the path of a theme file"
    )]
    Unknown(String),
    #[error("cannot read theme file {path}: {reason}")]
    Read { path: String, reason: String },
}

impl Theme {
    /// The theme's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether colours are off.
    pub fn is_no_color(&self) -> bool {
        self.no_color
    }

    /// The colour of `role`.
    pub fn color(&self, role: Role) -> Color {
        self.colors[role.index()]
    }

    /// Text in `role`'s colour (or its stand-in modifier without colours).
    pub fn fg(&self, role: Role) -> Style {
        if self.no_color {
            Style::new().add_modifier(role.mono_modifier())
        } else {
            Style::new().fg(self.color(role))
        }
    }

    /// The whole screen's base style: foreground on background.
    pub fn base(&self) -> Style {
        if self.no_color {
            Style::reset()
        } else {
            Style::new()
                .fg(self.color(Role::Foreground))
                .bg(self.color(Role::Background))
        }
    }

    /// The selected row.
    pub fn selection(&self) -> Style {
        if self.no_color {
            Style::new().add_modifier(Modifier::REVERSED)
        } else {
            Style::new()
                .bg(self.color(Role::Selection))
                .fg(self.color(Role::SelectionText))
        }
    }

    /// The status bar.
    pub fn status_bar(&self) -> Style {
        if self.no_color {
            Style::new().add_modifier(Modifier::REVERSED)
        } else {
            Style::new()
                .bg(self.color(Role::StatusBar))
                .fg(self.color(Role::StatusText))
        }
    }

    /// A pane border, brighter when the pane has the focus.
    pub fn border(&self, focused: bool) -> Style {
        self.fg(if focused {
            Role::BorderFocused
        } else {
            Role::Border
        })
    }

    /// The default theme (dark).
    pub fn dark() -> Theme {
        // The built-in files are checked by `built_ins_parse_completely`; should one ever fail,
        // the plain terminal colours keep the dashboard usable.
        parse_theme(BUILT_IN[0].1, "dark", None).unwrap_or_else(|_| Theme {
            name: "dark".into(),
            colors: [Color::Reset; Role::ALL.len()],
            no_color: false,
        })
    }

    /// No colours at all (`NO_COLOR`): modifiers mark the roles.
    pub fn no_color() -> Theme {
        Theme {
            name: NO_COLOR_NAME.into(),
            colors: [Color::Reset; Role::ALL.len()],
            no_color: true,
        }
    }

    /// A built-in theme by name.
    pub fn built_in(name: &str) -> Option<Theme> {
        if name == NO_COLOR_NAME {
            return Some(Theme::no_color());
        }
        let (_, text) = BUILT_IN.iter().find(|(n, _)| *n == name)?;
        parse_theme(text, name, None).ok()
    }

    /// A built-in theme's name, or the path of a theme file.
    pub fn load(name_or_path: &str) -> Result<Theme, ThemeError> {
        if let Some(theme) = Theme::built_in(name_or_path) {
            return Ok(theme);
        }
        let path = Path::new(name_or_path);
        let looks_like_a_path =
            name_or_path.contains(['/', '\\']) || name_or_path.ends_with(".toml");
        if !looks_like_a_path && !path.exists() {
            return Err(ThemeError::Unknown(name_or_path.to_string()));
        }
        let text = std::fs::read_to_string(path).map_err(|e| ThemeError::Read {
            path: name_or_path.to_string(),
            reason: e.to_string(),
        })?;
        let fallback_name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("custom")
            .to_string();
        parse_theme(&text, name_or_path, Some(&fallback_name))
    }
}

/// Parses a theme file. `source_name` names it in errors; the theme is called by its `name`,
/// else `fallback_name`, else `source_name`.
pub fn parse_theme(
    text: &str,
    source_name: &str,
    fallback_name: Option<&str>,
) -> Result<Theme, ThemeError> {
    let invalid = |message: String| ThemeError::Invalid {
        source_name: source_name.to_string(),
        message,
    };
    let table: toml::Table =
        toml::from_str(text).map_err(|e| invalid(e.to_string().trim_end().to_string()))?;
    let text_field = |key: &str| -> Result<Option<String>, ThemeError> {
        match table.get(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(invalid(format!(
                "`{key}` must be a string, not {}",
                other.type_str()
            ))),
        }
    };
    let name = text_field("name")?
        .or_else(|| fallback_name.map(str::to_string))
        .unwrap_or_else(|| source_name.to_string());
    let base = match text_field("base")? {
        None if name == "dark" => None,
        None => Some(Theme::dark()),
        Some(base) => Some(
            BUILT_IN
                .iter()
                .find(|(n, _)| *n == base && *n != name)
                .and_then(|(n, text)| parse_theme(text, n, None).ok())
                .ok_or_else(|| {
                    invalid(format!(
                        "base `{base}` is not a built-in theme: use dark, light, high-contrast or solarized"
                    ))
                })?,
        ),
    };
    let mut colors: [Option<Color>; Role::ALL.len()] = base
        .as_ref()
        .map_or([None; Role::ALL.len()], |b| b.colors.map(Some));
    for (key, value) in &table {
        if matches!(key.as_str(), "name" | "base" | "description") {
            continue;
        }
        let Some(role) = Role::ALL.iter().find(|r| r.name() == key) else {
            let known: Vec<&str> = Role::ALL.iter().map(|r| r.name()).collect();
            return Err(invalid(format!(
                "unknown colour `{key}`: the colours are {}",
                known.join(", ")
            )));
        };
        let toml::Value::String(value) = value else {
            return Err(invalid(format!(
                "`{key}` must be a colour string such as \"#ff8700\", \"lightred\" or \"208\""
            )));
        };
        let color = Color::from_str(value.trim()).map_err(|_| {
            invalid(format!(
                "`{key} = \"{value}\"` is not a colour: use a name (red, lightblue, darkgray, reset), \"#rrggbb\" or a 256-colour index"
            ))
        })?;
        colors[role.index()] = Some(color);
    }
    let missing: Vec<&str> = Role::ALL
        .iter()
        .filter(|r| colors[r.index()].is_none())
        .map(|r| r.name())
        .collect();
    if !missing.is_empty() {
        return Err(invalid(format!("missing colours: {}", missing.join(", "))));
    }
    Ok(Theme {
        name,
        colors: colors.map(|c| c.unwrap_or(Color::Reset)),
        no_color: false,
    })
}

/// Whether `NO_COLOR` asks for no colours (set and not empty, as no-color.org says).
pub fn no_color_requested() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

/// The themes `t` cycles through, the chosen one first in its place: the built-ins, then a
/// theme loaded from a file, then the colourless one when `NO_COLOR` chose it.
pub fn theme_cycle(chosen: Theme) -> (Vec<Theme>, usize) {
    let mut themes: Vec<Theme> = BUILT_IN
        .iter()
        .filter_map(|(name, _)| Theme::built_in(name))
        .collect();
    let index = match themes.iter().position(|t| *t == chosen) {
        Some(i) => i,
        None => {
            themes.push(chosen);
            themes.len() - 1
        }
    };
    (themes, index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_listed_in_declaration_order() {
        for (i, role) in Role::ALL.iter().enumerate() {
            assert_eq!(role.index(), i, "{role:?}");
        }
    }

    #[test]
    fn built_ins_parse_completely() {
        for (name, text) in BUILT_IN {
            let theme = parse_theme(text, name, None).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(theme.name(), name);
        }
    }

    /// Every file in themes/ parses into a complete theme, and is a built-in.
    #[test]
    fn every_file_in_themes_parses() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../themes");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).expect("themes/ exists") {
            let path = entry.expect("readable").path();
            if path.extension().and_then(|e| e.to_str()) != Some("toml") {
                continue;
            }
            let theme = Theme::load(path.to_str().expect("utf-8 path"))
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let stem = path.file_stem().and_then(|s| s.to_str()).expect("stem");
            assert_eq!(
                theme.name(),
                stem,
                "{}: name matches the file",
                path.display()
            );
            assert!(
                BUILT_IN.iter().any(|(n, _)| *n == stem),
                "{stem} is compiled in (theme.rs BUILT_IN)"
            );
            seen += 1;
        }
        assert!(seen >= 4, "dark, light, high-contrast and one more");
    }

    #[test]
    fn a_theme_may_override_part_of_the_default() {
        let theme =
            parse_theme("name = \"mine\"\nerror = \"#010203\"\n", "mine.toml", None).unwrap();
        assert_eq!(theme.color(Role::Error), Color::Rgb(1, 2, 3));
        assert_eq!(
            theme.color(Role::Connected),
            Theme::dark().color(Role::Connected)
        );
        let on_light =
            parse_theme("base = \"light\"\nerror = \"red\"\n", "x.toml", Some("x")).unwrap();
        assert_eq!(on_light.name(), "x");
        assert_eq!(
            on_light.color(Role::Background),
            Theme::built_in("light").unwrap().color(Role::Background)
        );
    }

    #[test]
    fn mistakes_are_named() {
        let err = parse_theme("eror = \"red\"", "t.toml", None)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("theme t.toml: unknown colour `eror`: the colours are background"),
            "{err}"
        );
        let err = parse_theme("error = \"redd\"", "t.toml", None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("`error = \"redd\"` is not a colour"), "{err}");
        let err = parse_theme("error = 3", "t.toml", None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("`error` must be a colour string"), "{err}");
        let err = parse_theme("base = \"neon\"", "t.toml", None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("base `neon` is not a built-in theme"), "{err}");
        let err = Theme::load("neon").unwrap_err().to_string();
        assert!(err.starts_with("no theme `neon`: use one of dark"), "{err}");
        let err = Theme::load("/no/such/theme.toml").unwrap_err().to_string();
        assert!(
            err.starts_with("cannot read theme file /no/such/theme.toml"),
            "{err}"
        );
    }

    #[test]
    fn no_color_uses_modifiers_only() {
        let theme = Theme::no_color();
        assert_eq!(theme.fg(Role::Error).fg, None);
        assert!(theme.fg(Role::Error).add_modifier.contains(Modifier::BOLD));
        assert!(theme.selection().add_modifier.contains(Modifier::REVERSED));
        assert_eq!(Theme::load("no-color").unwrap(), theme);
    }

    #[test]
    fn the_cycle_holds_every_built_in_and_a_custom_theme() {
        let (themes, i) = theme_cycle(Theme::dark());
        assert_eq!((themes.len(), i), (4, 0));
        let (themes, i) = theme_cycle(Theme::no_color());
        assert_eq!((themes.len(), i), (5, 4));
    }
}
