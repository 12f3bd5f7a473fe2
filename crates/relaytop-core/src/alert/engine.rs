//! The evaluator: every rule over every scope it covers, at a tick, against `Metrics` and the
//! alerts' own tallies; each alert's `Tracker` decides what is said. Pure: it takes `now`,
//! does no I/O and returns the notices; the runtime (`runtime.rs`) delivers and records them.
//!
//! Burn rate (Google SRE workbook, "Alerting on SLOs", multiwindow multi-burn-rate): the SLI
//! is the share of bad requests (failed, or outside `[slo]`'s thresholds) over a window; the
//! burn rate is that share over the error budget (1 − objective). A rule fires when both its
//! long and its short window burn at `factor` or more (1 h and 5 min at 14.4×: 2 % of a
//! 30-day budget in an hour; 6 h and 30 min at 6×: 5 % in six hours) and resolves as soon as
//! either drops below it (the short window makes that quick).

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;

use crate::config::slo::Slos;
use crate::metrics::Metrics;
use crate::session::{SessionEvent, SessionInfo};

use super::figure::{self, Reading, ScopeKey, ScopeKind};
use super::rule::{Condition, Direction, Rule, Severity};
use super::state::{Check, Phase, Timing, Tracker, Transition};
use super::tally::Tallies;

/// Notices kept for "recent".
pub const RECENT: usize = 50;

/// Something to tell people about one alert.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Notice {
    pub alert: String,
    pub severity: Severity,
    pub scope: ScopeKey,
    pub transition: Transition,
    /// The value that made it (the long window's burn rate for a burn-rate rule).
    pub value: Option<f64>,
    pub threshold: f64,
    /// The message, for people: "[FIRING] legacy slow · provider:legacy · TTFT p99 1234 ms > 800 ms".
    pub text: String,
    /// When, microseconds since the run started.
    pub at_us: u64,
    /// The receivers told (empty: every receiver).
    #[serde(skip)]
    pub receivers: Vec<String>,
}

/// An alert pending or firing, as shown.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Active {
    pub alert: String,
    pub severity: Severity,
    pub scope: ScopeKey,
    /// `pending` or `firing`.
    pub state: &'static str,
    /// Since when, microseconds since the run started.
    pub since_us: u64,
    pub value: Option<f64>,
    pub threshold: f64,
    /// What the value is and how it compares.
    pub summary: String,
    /// Error budget left over the run (burn-rate rules), 1 = untouched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget_left: Option<f64>,
}

/// One alert's tracker and what it last read.
#[derive(Clone, Debug, Default)]
struct Alert {
    tracker: Tracker,
    value: Option<f64>,
    summary: String,
    budget_left: Option<f64>,
}

/// The evaluator.
#[derive(Clone, Debug)]
pub struct Engine {
    rules: Vec<Rule>,
    tallies: Tallies,
    alerts: BTreeMap<(usize, ScopeKey), Alert>,
    recent: VecDeque<Notice>,
}

fn fmt_value(v: f64, unit: &str) -> String {
    let n = if v.abs() >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    };
    match unit {
        "" => n,
        "%" => format!("{n} %"),
        u => format!("{n} {u}"),
    }
}

impl Engine {
    pub fn new(rules: Vec<Rule>, slos: Slos) -> Self {
        let kinds: Vec<ScopeKind> = rules.iter().map(|r| r.scope.kind()).collect();
        Self {
            rules,
            tallies: Tallies::new(slos, kinds),
            alerts: BTreeMap::new(),
            recent: VecDeque::new(),
        }
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Counts one event of session `info` (the tallies behind burn rates, goodput and missed
    /// heartbeats).
    pub fn observe(&mut self, event: &SessionEvent, info: &SessionInfo) {
        self.tallies.observe(event, info);
    }

    /// Evaluates every rule at `now_us`; returns what is to be said, in rule order.
    pub fn evaluate(&mut self, metrics: &Metrics, now_us: u64) -> Vec<Notice> {
        let mut notices = Vec::new();
        for (index, rule) in self.rules.iter().enumerate() {
            for scope in rule.scope.expand(metrics) {
                let (check, value, threshold, summary, budget_left) =
                    judge(rule, metrics, &self.tallies, &scope, now_us);
                let alert = self.alerts.entry((index, scope.clone())).or_default();
                alert.value = value;
                alert.summary = summary.clone();
                alert.budget_left = budget_left;
                let timing = Timing {
                    for_us: rule.for_us,
                    renotify_us: rule.renotify_us,
                };
                if let Some(transition) = alert.tracker.step(check, timing, now_us) {
                    let tag = match transition {
                        Transition::Fired => "FIRING",
                        Transition::Renotified => "STILL FIRING",
                        Transition::Resolved => "RESOLVED",
                    };
                    notices.push(Notice {
                        alert: rule.name.clone(),
                        severity: rule.severity,
                        scope: scope.clone(),
                        transition,
                        value,
                        threshold,
                        text: format!(
                            "[{tag}] {} ({}) · {scope} · {summary}",
                            rule.name,
                            rule.severity.label()
                        ),
                        at_us: now_us,
                        receivers: rule.receivers.clone(),
                    });
                }
            }
        }
        for n in &notices {
            if self.recent.len() == RECENT {
                self.recent.pop_front();
            }
            self.recent.push_back(n.clone());
        }
        notices
    }

    /// Every alert pending or firing, firing first, the most severe first.
    pub fn active(&self) -> Vec<Active> {
        let mut out: Vec<Active> = self
            .alerts
            .iter()
            .filter_map(|((index, scope), a)| {
                let rule = &self.rules[*index];
                let since_us = match a.tracker.phase {
                    Phase::Inactive => return None,
                    Phase::Pending { since_us } | Phase::Firing { since_us, .. } => since_us,
                };
                Some(Active {
                    alert: rule.name.clone(),
                    severity: rule.severity,
                    scope: scope.clone(),
                    state: a.tracker.phase.label(),
                    since_us,
                    value: a.value,
                    threshold: threshold_of(rule),
                    summary: a.summary.clone(),
                    budget_left: a.budget_left,
                })
            })
            .collect();
        out.sort_by(|a, b| {
            (b.state == "firing", b.severity, a.since_us).cmp(&(
                a.state == "firing",
                a.severity,
                b.since_us,
            ))
        });
        out
    }

    /// Every alert's state, for Prometheus: (rule, severity, scope, phase).
    pub fn states(&self) -> impl Iterator<Item = (&Rule, &ScopeKey, Phase)> + '_ {
        self.alerts
            .iter()
            .map(|((index, scope), a)| (&self.rules[*index], scope, a.tracker.phase))
    }

    /// The last notices, oldest first.
    pub fn recent(&self) -> impl DoubleEndedIterator<Item = &Notice> + '_ {
        self.recent.iter()
    }

    /// Error budget left over the run for each scope a burn-rate rule watches.
    pub fn budgets(&self, metrics: &Metrics) -> Vec<(ScopeKey, f64, Option<f64>)> {
        let mut out: Vec<(ScopeKey, f64, Option<f64>)> = Vec::new();
        for rule in &self.rules {
            if matches!(rule.condition, Condition::BurnRate { .. }) {
                for scope in rule.scope.expand(metrics) {
                    if out.iter().all(|(s, ..)| s != &scope) {
                        let objective = self.tallies.objective(&scope);
                        let left = self.tallies.budget_left(&scope);
                        out.push((scope, objective, left));
                    }
                }
            }
        }
        out
    }
}

fn threshold_of(rule: &Rule) -> f64 {
    match rule.condition {
        Condition::Threshold { value, .. } => value,
        Condition::BurnRate { factor, .. } => factor,
    }
}

type Judgement = (Check, Option<f64>, f64, String, Option<f64>);

/// Evaluates `rule` over `scope`: the check, the value, the threshold, a summary and (burn
/// rates) the budget left.
fn judge(
    rule: &Rule,
    metrics: &Metrics,
    tallies: &Tallies,
    scope: &ScopeKey,
    now_us: u64,
) -> Judgement {
    match &rule.condition {
        Condition::Threshold {
            figure,
            window,
            direction,
            value,
            resolve_at,
        } => {
            let reading = figure::read(*figure, metrics, tallies, scope, *window, now_us);
            let unit = figure.unit();
            let (check, summary) = match reading {
                Reading::NoData(note) => (
                    Check::NoData,
                    format!(
                        "{} over {}: no data ({note})",
                        figure.label(),
                        window.label()
                    ),
                ),
                Reading::Value(v) => {
                    let (breach, clear, op) = match direction {
                        Direction::Above => (v > *value, v <= *resolve_at, ">"),
                        Direction::Below => (v < *value, v >= *resolve_at, "<"),
                    };
                    let check = if breach {
                        Check::Breach
                    } else if clear {
                        Check::Clear
                    } else {
                        Check::Hold
                    };
                    let op = if breach {
                        op
                    } else if op == ">" {
                        "≤"
                    } else {
                        "≥"
                    };
                    (
                        check,
                        format!(
                            "{} over {} {} {op} {}",
                            figure.label(),
                            window.label(),
                            fmt_value(v, unit),
                            fmt_value(*value, unit)
                        ),
                    )
                }
            };
            (check, reading.value(), *value, summary, None)
        }
        Condition::BurnRate {
            long_us,
            short_us,
            factor,
            min_requests,
        } => {
            let budget = 1.0 - tallies.objective(scope);
            let long = tallies.over(scope, Some(*long_us), now_us);
            let short = tallies.over(scope, Some(*short_us), now_us);
            let burn = |t: &super::tally::Tally| t.bad_share().map(|s| s / budget);
            let budget_left = tallies.budget_left(scope);
            let window =
                |us: u64| crate::numbers::duration_words(std::time::Duration::from_micros(us));
            let (check, summary, value) = match (burn(&long), burn(&short)) {
                (Some(l), Some(s)) if long.requests() >= *min_requests => {
                    let breach = l >= *factor && s >= *factor;
                    (
                        if breach { Check::Breach } else { Check::Clear },
                        format!(
                            "error budget burning {l:.1}× over {} and {s:.1}× over {} \
                             (alert at {factor}×); budget left {}",
                            window(*long_us),
                            window(*short_us),
                            budget_left
                                .map(|b| format!("{:.0} %", b * 100.0))
                                .unwrap_or_else(|| "unknown".into())
                        ),
                        Some(l),
                    )
                }
                _ => (
                    Check::NoData,
                    format!(
                        "error budget burn: {} requests over {} (needs {min_requests})",
                        long.requests(),
                        window(*long_us)
                    ),
                    None,
                ),
            };
            (check, value, *factor, summary, budget_left)
        }
    }
}
