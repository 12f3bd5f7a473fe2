//! The `[ui]` table of the configuration file: dashboard settings as plain data.
//!
//! Owns only what a person writes under `[ui]` (theme, frame rate, mouse, key overrides). It
//! knows no terminal types: the dashboard (`crate::ui`) checks the names and keys when it
//! starts, and says what is wrong and where.
//!
//! ```toml
//! [ui]
//! theme = "light"          # a built-in theme (dark, light, high-contrast, solarized) or a file
//! fps = 30                 # most frames drawn a second (1 to 120)
//! mouse = true             # click to select, wheel to scroll
//! cost_warning_per_hour_usd = 5.0   # colour a provider's cost per hour above this
//!
//! [ui.keys]                # action name = the keys that trigger it (replaces the defaults)
//! reconnect = ["R"]
//! quit = ["q", "ctrl-c"]
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;

/// Dashboard settings; every field is optional.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UiConfig {
    /// `theme`: a built-in theme name, or the path of a theme TOML file.
    pub theme: Option<String>,
    /// `fps`: the most frames drawn in a second (default 30).
    pub fps: Option<u32>,
    /// `mouse`: whether clicks and the wheel are used (default true).
    pub mouse: Option<bool>,
    /// `cost_warning_per_hour_usd`: a provider spending more than this per hour (US $, at the
    /// current rate) is shown in the theme's `cost_warning` colour.
    pub cost_warning_per_hour_usd: Option<f64>,
    /// `[ui.keys]`: action name → keys, replacing that action's default keys.
    pub keys: BTreeMap<String, Vec<String>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_field_and_rejects_unknown_ones() {
        let ui: UiConfig = toml::from_str(
            "theme = \"light\"\nfps = 20\nmouse = false\ncost_warning_per_hour_usd = 2.5\n[keys]\nquit = [\"x\"]\n",
        )
        .unwrap();
        assert_eq!(ui.theme.as_deref(), Some("light"));
        assert_eq!((ui.fps, ui.mouse), (Some(20), Some(false)));
        assert_eq!(ui.keys["quit"], vec!["x".to_string()]);
        assert_eq!(toml::from_str::<UiConfig>("").unwrap(), UiConfig::default());
        assert!(toml::from_str::<UiConfig>("colour = \"red\"").is_err());
    }
}
