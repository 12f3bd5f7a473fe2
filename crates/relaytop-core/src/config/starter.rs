//! Configurations relaytop writes itself: a relay to watch from a URL (`relaytop URL`), the
//! relays the environment already names for other tools (`OPENAI_BASE_URL` + `OPENAI_API_KEY`,
//! `ANTHROPIC_BASE_URL` + `ANTHROPIC_AUTH_TOKEN` or `ANTHROPIC_API_KEY`, `GEMINI_API_KEY` /
//! `GOOGLE_API_KEY` with a Gemini base URL), and the commented file `relaytop init` writes.
//! Each is relaytop TOML, checked by the same loader as a user's file: no second path.
//! Keys are named by their variable, never written.

use std::fmt::Write as _;

use crate::session::{AuthStyle, Protocol};

/// `Watch::found_in` of a relay named on the command line.
pub const COMMAND_LINE: &str = "the command line";

/// One relay to watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Watch {
    /// The provider's name (`relay.example`, `openai-base-url`).
    pub name: String,
    pub url: String,
    pub protocol: Protocol,
    /// How the key travels, when not the protocol's own way.
    pub auth: AuthStyle,
    /// The environment variable holding the key.
    pub key_env: Option<String>,
    pub model: String,
    /// Where it was found, for the screen (`OPENAI_BASE_URL`, `the command line`).
    pub found_in: String,
}

/// A cheap model to probe each protocol with, when none is given.
pub fn probe_model(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::RelayV1 => "gpt-4.1",
        Protocol::OpenaiSse => "gpt-4o-mini",
        Protocol::OpenaiRealtime => "gpt-realtime",
        Protocol::AnthropicMessages => "claude-haiku-4-5",
        Protocol::OpenaiResponses => "gpt-5-mini",
        Protocol::Gemini => "gemini-2.5-flash",
    }
}

/// A provider name from a URL: its host (`relay.example`), else `relay`.
pub fn name_from_url(url: &str) -> String {
    url::Url::parse(url.trim())
        .ok()
        .and_then(|u| {
            let host = u.host_str()?.to_owned();
            Some(match u.port() {
                Some(port) => format!("{host}-{port}"),
                None => host,
            })
        })
        .unwrap_or_else(|| "relay".to_owned())
}

/// The relays the environment names for other tools, and notes on variables that name no
/// relay (a key without a base URL: relaytop does not spend on an official API unasked).
pub fn from_environment(env: &dyn Fn(&str) -> Option<String>) -> (Vec<Watch>, Vec<String>) {
    let set = |var: &str| env(var).filter(|v| !v.trim().is_empty());
    let mut watches = Vec::new();
    let mut notes = Vec::new();
    let add = |base_var: &str,
               base: Option<String>,
               key_var: Option<&str>,
               protocol: Protocol,
               auth: AuthStyle,
               watches: &mut Vec<Watch>,
               notes: &mut Vec<String>| {
        match (base, key_var) {
            (Some(base), key_var) => watches.push(Watch {
                name: name_from_url(&base),
                url: crate::config::station::url_for(&base, protocol),
                protocol,
                auth,
                key_env: key_var.map(str::to_owned),
                model: probe_model(protocol).to_owned(),
                found_in: base_var.to_owned(),
            }),
            (None, Some(key_var)) => notes.push(format!(
                "{key_var} is set but {base_var} is not: relaytop watches relays, not the \
                 official API, unless asked (`relaytop URL --key-env {key_var}`)"
            )),
            (None, None) => {}
        }
    };
    let openai_key = set("OPENAI_API_KEY").map(|_| "OPENAI_API_KEY");
    add(
        "OPENAI_BASE_URL",
        set("OPENAI_BASE_URL").or_else(|| set("OPENAI_API_BASE")),
        openai_key,
        Protocol::OpenaiSse,
        AuthStyle::Native,
        &mut watches,
        &mut notes,
    );
    // Claude Code sends ANTHROPIC_AUTH_TOKEN as a Bearer token, ANTHROPIC_API_KEY as x-api-key.
    let (anthropic_key, anthropic_auth) =
        match (set("ANTHROPIC_AUTH_TOKEN"), set("ANTHROPIC_API_KEY")) {
            (Some(_), _) => (Some("ANTHROPIC_AUTH_TOKEN"), AuthStyle::Bearer),
            (None, Some(_)) => (Some("ANTHROPIC_API_KEY"), AuthStyle::Native),
            (None, None) => (None, AuthStyle::Native),
        };
    add(
        "ANTHROPIC_BASE_URL",
        set("ANTHROPIC_BASE_URL"),
        anthropic_key,
        Protocol::AnthropicMessages,
        anthropic_auth,
        &mut watches,
        &mut notes,
    );
    let gemini_key = if set("GEMINI_API_KEY").is_some() {
        Some("GEMINI_API_KEY")
    } else if set("GOOGLE_API_KEY").is_some() {
        Some("GOOGLE_API_KEY")
    } else {
        None
    };
    add(
        "GOOGLE_GEMINI_BASE_URL",
        set("GOOGLE_GEMINI_BASE_URL").or_else(|| set("GEMINI_BASE_URL")),
        gemini_key,
        Protocol::Gemini,
        AuthStyle::Native,
        &mut watches,
        &mut notes,
    );
    // Two variables naming one station get one name each.
    let mut seen: Vec<String> = Vec::new();
    for w in &mut watches {
        if seen.contains(&w.name) {
            w.name = format!("{}-{}", w.name, w.protocol.label());
        }
        seen.push(w.name.clone());
    }
    (watches, notes)
}

/// What a run of these watches is called on screen and in reports.
pub fn source_of(watches: &[Watch]) -> String {
    let parts: Vec<String> = watches
        .iter()
        .map(|w| {
            if w.found_in == COMMAND_LINE {
                format!("{} ({})", w.url, w.protocol.label())
            } else {
                format!("{} ({}, from {})", w.url, w.protocol.label(), w.found_in)
            }
        })
        .collect();
    format!("watching {}", parts.join(", "))
}

/// relaytop TOML for `watches`: one provider and `probes` probe sessions each, a prompt
/// every `interval_s`; with `commented`, every line explained (what `relaytop init` writes).
pub fn to_toml(watches: &[Watch], probes: u32, interval_s: f64, commented: bool) -> String {
    let mut out = String::new();
    let c = |out: &mut String, text: &str| {
        if commented {
            for line in text.lines() {
                let _ = writeln!(out, "# {line}");
            }
        }
    };
    c(
        &mut out,
        "relaytop configuration, written by `relaytop init`.\n\
         Every relay below is watched by probe sessions: a short prompt every few seconds,\n\
         its time to first token, speed, errors, tokens and cost on the dashboard.\n\
         Keys come from environment variables (api_key_env); they are never written here.\n\
         Protocols: openai-sse (chat completions), anthropic-messages, openai-responses,\n\
         gemini, openai-realtime, relay-v1. A station serves one key in several: add\n\
         [[sessions]] with `protocol = \"…\"` to probe another format on the same provider.",
    );
    if commented {
        out.push('\n');
    }
    for w in watches {
        c(&mut out, &format!("Found in {}.", w.found_in));
        let _ = writeln!(out, "[[providers]]");
        let _ = writeln!(out, "name = {}", quote(&w.name));
        let _ = writeln!(out, "url = {}", quote(&w.url));
        let _ = writeln!(out, "protocol = {}", quote(w.protocol.label()));
        if w.auth != AuthStyle::Native {
            c(
                &mut out,
                "How the key travels (bearer, x-api-key, x-goog-api-key, query).",
            );
            let auth = match w.auth {
                AuthStyle::Native => "native",
                AuthStyle::Bearer => "bearer",
                AuthStyle::XApiKey => "x-api-key",
                AuthStyle::XGoogApiKey => "x-goog-api-key",
                AuthStyle::Query => "query",
            };
            let _ = writeln!(out, "auth = {}", quote(auth));
        }
        if let Some(var) = &w.key_env {
            let _ = writeln!(out, "api_key_env = {}", quote(var));
        }
        let _ = writeln!(out, "model = {}", quote(&w.model));
        c(
            &mut out,
            "Sends the relay allows a minute and connections at once, over all sessions.",
        );
        let _ = writeln!(out, "requests_per_minute = 60\nmax_connections = 10\n");
        c(
            &mut out,
            "The relay account: balance, burn rate, run-out time and the bill check\n\
             (docs/ACCOUNTS.md). Uncomment to read it (kind: auto, new-api, openai-billing,\n\
             openrouter, litellm, deepseek; low_balance in the balance's own unit).\n\
             [providers.account]\n\
             kind = \"auto\"\n\
             poll_s = 60\n\
             low_balance = 5.0\n\
             run_out_warning_h = 24\n",
        );
        c(
            &mut out,
            "Probes: how many sessions, seconds between prompts, reply length.",
        );
        let _ = writeln!(out, "[[sessions]]");
        let _ = writeln!(out, "name = {}", quote(&format!("probe-{}", w.name)));
        let _ = writeln!(out, "provider = {}", quote(&w.name));
        let _ = writeln!(out, "count = {probes}");
        let _ = writeln!(out, "interval_s = {interval_s}");
        let _ = writeln!(out, "max_tokens = 16\n");
    }
    if watches.is_empty() {
        c(
            &mut out,
            "No relay found: set OPENAI_BASE_URL and OPENAI_API_KEY (or ANTHROPIC_BASE_URL and\n\
             ANTHROPIC_AUTH_TOKEN, or GOOGLE_GEMINI_BASE_URL and GEMINI_API_KEY) and run\n\
             `relaytop init` again, or fill in this example.",
        );
        out.push_str(
            "[[providers]]\nname = \"my-relay\"\nurl = \"https://relay.example/v1\"\n\
             protocol = \"openai-sse\"\napi_key_env = \"RELAY_API_KEY\"\nmodel = \"gpt-4o-mini\"\n\n\
             [[sessions]]\nname = \"probe\"\nprovider = \"my-relay\"\ncount = 1\ninterval_s = 10\n\
             max_tokens = 16\n",
        );
    }
    out
}

/// A TOML basic string.
fn quote(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn the_tools_variables_name_the_relays() {
        let vars = [
            ("OPENAI_BASE_URL", "https://relay.example/v1"),
            ("OPENAI_API_KEY", "sk-x"),
            ("ANTHROPIC_BASE_URL", "https://relay.example"),
            ("ANTHROPIC_AUTH_TOKEN", "sk-y"),
            ("GEMINI_API_KEY", "AIza"),
        ];
        let (watches, notes) = from_environment(&env(&vars));
        assert_eq!(watches.len(), 2, "{watches:?}");
        assert_eq!(watches[0].protocol, Protocol::OpenaiSse);
        assert_eq!(watches[0].url, "https://relay.example/v1");
        assert_eq!(watches[0].key_env.as_deref(), Some("OPENAI_API_KEY"));
        assert_eq!(watches[1].protocol, Protocol::AnthropicMessages);
        assert_eq!(watches[1].auth, AuthStyle::Bearer);
        assert_eq!(watches[1].name, "relay.example-anthropic-messages");
        assert_eq!(notes.len(), 1);
        assert!(notes[0].contains("GEMINI_API_KEY is set"), "{notes:?}");
    }

    #[test]
    fn nothing_set_names_nothing() {
        let (watches, notes) = from_environment(&env(&[]));
        assert!(watches.is_empty() && notes.is_empty());
    }

    #[test]
    fn written_configs_load() {
        let vars = [
            ("GOOGLE_GEMINI_BASE_URL", "http://127.0.0.1:9/v1beta"),
            ("GEMINI_API_KEY", "AIzaSyTEST"),
            ("ANTHROPIC_BASE_URL", "http://127.0.0.1:9"),
            ("ANTHROPIC_API_KEY", "sk-ant-test"),
        ];
        let (watches, _) = from_environment(&env(&vars));
        for commented in [false, true] {
            let text = to_toml(&watches, 1, 5.0, commented);
            let read_key = |_: &str| Ok(crate::config::secret::Secret::new("k"));
            let config = crate::config::file::parse(&text, "test", &read_key)
                .unwrap_or_else(|e| panic!("{e}\n{text}"));
            assert_eq!(config.providers.len(), 2);
            assert_eq!(config.sessions.len(), 2);
            assert_eq!(config.providers[1].protocol, Protocol::Gemini);
            assert_eq!(config.providers[1].url, "http://127.0.0.1:9");
        }
        let empty = to_toml(&[], 1, 5.0, true);
        let read_key = |_: &str| Ok(crate::config::secret::Secret::new("k"));
        assert!(crate::config::file::parse(&empty, "test", &read_key).is_ok());
    }
}
