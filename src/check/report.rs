//! The report: each step with its verdict, time, detail and fix.

use std::fmt::Write as _;

use serde::Serialize;

use relaytop_core::session::Protocol;

/// A step's outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    /// Passed, with something worth knowing.
    Warn,
    Fail,
    /// Does not apply (TLS on ws://, a heartbeat on SSE), or not run after a failure.
    Skip,
}

impl Verdict {
    pub(super) fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "ok",
            Verdict::Warn => "warn",
            Verdict::Fail => "FAIL",
            Verdict::Skip => "skip",
        }
    }
}

/// One step of the walk.
#[derive(Clone, Debug, Serialize)]
pub struct Step {
    /// `url`, `dns`, `tcp`, `tls`, `upgrade`/`request`, `models`, `completion`, `heartbeat`, `idle`.
    pub name: &'static str,
    pub verdict: Verdict,
    /// How long the step took, in milliseconds (absent when it did not run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ms: Option<f64>,
    /// What was seen.
    pub detail: String,
    /// What to do about it (failures and warnings).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// The whole walk.
#[derive(Clone, Debug, Serialize)]
pub struct CheckReport {
    pub url: String,
    /// The protocol checked (absent when the URL could not tell).
    pub protocol: Option<Protocol>,
    pub steps: Vec<Step>,
    /// True only when no step failed.
    pub passed: bool,
}

impl CheckReport {
    /// The report for people.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let protocol = self.protocol.map_or("unknown protocol", |p| p.label());
        let _ = writeln!(out, "relaytop check {} ({protocol})", self.url);
        for step in &self.steps {
            let time = step
                .ms
                .map_or_else(|| "-".to_owned(), |ms| format!("{ms:.1} ms"));
            let _ = writeln!(
                out,
                "  {:<10} {:>10}  {:<4}  {}",
                step.name,
                time,
                step.verdict.label(),
                step.detail
            );
            if let Some(hint) = &step.hint {
                let _ = writeln!(out, "  {:<10} {:>10}  {:<4}  fix: {hint}", "", "", "");
            }
        }
        let failed = self
            .steps
            .iter()
            .filter(|s| s.verdict == Verdict::Fail)
            .count();
        let passed = self
            .steps
            .iter()
            .filter(|s| matches!(s.verdict, Verdict::Pass | Verdict::Warn))
            .count();
        let _ = if failed == 0 {
            writeln!(out, "all {passed} steps that apply passed")
        } else {
            writeln!(out, "{passed} passed, {failed} failed")
        };
        out
    }

    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// The step named `name`.
    pub fn step(&self, name: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.name == name)
    }
}
