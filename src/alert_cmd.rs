//! `relaytop alert test NAME`: sends a test message through the named rule's receivers and
//! prints what each answered (status and body, its secrets redacted), so a webhook, a bot
//! token or a signing secret can be proved before 3 a.m. needs it.

use std::io::Write;

use relaytop_core::alert::deliver;
use relaytop_core::alert::{Notice, ScopeKey, Transition};
use relaytop_core::config::Config;

/// Sends the test; true when every receiver took it.
pub async fn test(config: &Config, name: &str, out: &mut dyn Write) -> anyhow::Result<bool> {
    let alerts = &config.alerts;
    let Some(rule) = alerts.rules.iter().find(|r| r.name == name) else {
        let known: Vec<&str> = alerts.rules.iter().map(|r| r.name.as_str()).collect();
        anyhow::bail!(
            "{}: no alert `{name}` (known: {})",
            config.source,
            if known.is_empty() {
                "none; add [[alerts]] to the configuration (docs/ALERTS.md)".to_owned()
            } else {
                known.join(", ")
            }
        );
    };
    let receivers: Vec<_> = alerts.receivers_of(rule).collect();
    if receivers.is_empty() {
        anyhow::bail!(
            "{}: alert `{name}` has no receiver: add [alert_receivers.NAME] (docs/ALERTS.md)",
            config.source
        );
    }
    let scope = match &rule.scope {
        relaytop_core::alert::ScopeSpec::All => ScopeKey::All,
        relaytop_core::alert::ScopeSpec::Provider(p) => {
            ScopeKey::Provider(p.clone().unwrap_or_else(|| "each provider".into()))
        }
        relaytop_core::alert::ScopeSpec::Model(m) => {
            ScopeKey::Model(m.clone().unwrap_or_else(|| "each model".into()))
        }
        relaytop_core::alert::ScopeSpec::Session(s) => {
            ScopeKey::Session(s.clone().unwrap_or_else(|| "each session".into()))
        }
    };
    let notice = Notice {
        alert: rule.name.clone(),
        severity: rule.severity,
        text: format!(
            "[TEST] {} ({}) · {scope} · a test from `relaytop alert test`: this is how the alert \
             will arrive",
            rule.name,
            rule.severity.label()
        ),
        scope,
        transition: Transition::Fired,
        value: None,
        threshold: 0.0,
        at_us: 0,
        receivers: rule.receivers.clone(),
    };
    let client = deliver::client();
    let mut all = true;
    for r in receivers {
        let answer = deliver::send_once(&client, r, &notice, "test").await;
        let ok = answer.accepted();
        all &= ok;
        writeln!(
            out,
            "{} ({}): {} {}",
            r.name,
            r.kind.label(),
            answer
                .status
                .map_or_else(|| "no answer".to_owned(), |s| format!("HTTP {s}")),
            if ok { "accepted" } else { "REFUSED" }
        )?;
        if !answer.body.is_empty() {
            writeln!(out, "  {}", answer.body.trim())?;
        }
    }
    Ok(all)
}
