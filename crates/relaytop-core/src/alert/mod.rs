//! Alerts: rules over relaytop's figures and SLO burn rates, evaluated at a tick, each alert a
//! pure state machine (pending → firing → resolved, hysteresis, reminders), delivered to
//! webhooks and chat apps from a background task, and shown (status bar, alerts pane,
//! headless JSON, Prometheus, recording markers). This file owns the runtime a run holds
//! (`Alerting`) and the view everything shows (`AlertsView`).
//!
//! `rule` reads the config, `figure` reads figures, `tally` counts good and bad requests for
//! burn rates, `state` is one alert's machine, `engine` evaluates the rules, `deliver` posts.

pub mod deliver;
pub mod engine;
pub mod figure;
pub mod rule;
pub mod state;
pub mod tally;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use serde::Serialize;

use crate::config::slo::Slos;
use crate::metrics::Metrics;
use crate::session::{SessionEvent, SessionId, SessionInfo};

pub use deliver::{Deliverer, DeliveryCounts};
pub use engine::{Active, Engine, Notice};
pub use figure::{Figure, ScopeKey, ScopeSpec};
pub use rule::{AlertConfig, AlertToml, Receiver, ReceiverKind, ReceiverToml, Rule, Severity};
pub use state::{Phase, Transition};

/// The error budget of one scope a burn-rate rule watches.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Budget {
    pub scope: ScopeKey,
    /// The share of requests that must be good.
    pub objective: f64,
    /// The share of the budget left over the run (1 untouched, below 0 overspent); `None`
    /// before any request.
    pub left: Option<f64>,
}

/// What the alerts show: firing, pending, recent notices, error budgets, deliveries.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct AlertsView {
    /// Rules configured.
    pub rules: usize,
    pub firing: Vec<Active>,
    pub pending: Vec<Active>,
    /// The last notices (fired, reminded, resolved), newest first.
    pub recent: Vec<Notice>,
    pub budgets: Vec<Budget>,
    pub deliveries: DeliveryCounts,
}

impl AlertsView {
    /// The status bar's words: "⚠ 2 firing" or "1 pending"; empty when quiet.
    pub fn indicator(&self) -> Option<String> {
        match (self.firing.len(), self.pending.len()) {
            (0, 0) => None,
            (0, p) => Some(format!(
                "{p} alert{} pending",
                if p == 1 { "" } else { "s" }
            )),
            (f, _) => Some(format!(
                "⚠ {f} alert{} firing",
                if f == 1 { "" } else { "s" }
            )),
        }
    }
}

impl AlertsView {
    /// The report's words: firing, pending, recent notices, budgets, deliveries.
    pub fn to_text(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "alerts: {} rules, {} firing, {} pending; deliveries {} sent, {} failed",
            self.rules,
            self.firing.len(),
            self.pending.len(),
            self.deliveries.sent,
            self.deliveries.failed
        );
        for a in self.firing.iter().chain(&self.pending) {
            let _ = writeln!(
                out,
                "  {} {} ({}) {}: {}",
                a.state,
                a.alert,
                a.severity.label(),
                a.scope,
                a.summary
            );
        }
        for b in &self.budgets {
            let left = match b.left {
                None => "untouched (no requests yet)".to_owned(),
                Some(l) if l < 0.0 => format!("overspent ({:.0} % left)", l * 100.0),
                Some(l) => format!("{:.0} % left", l * 100.0),
            };
            let _ = writeln!(
                out,
                "  error budget {} ({} % good): {left}",
                b.scope,
                b.objective * 100.0,
            );
        }
        for n in self.recent.iter().take(10) {
            let _ = writeln!(
                out,
                "  at {}: {}",
                crate::numbers::human_duration(n.at_us),
                n.text
            );
        }
        for f in &self.deliveries.failures {
            let _ = writeln!(
                out,
                "  delivery to {} failed ({}): {}",
                f.receiver,
                f.status.map_or("no answer".to_owned(), |s| s.to_string()),
                f.reason
            );
        }
        out
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A run's alerts: the engine, the sessions it knows, the deliverer.
pub struct Alerting {
    engine: Mutex<Engine>,
    infos: Mutex<HashMap<SessionId, SessionInfo>>,
    deliverer: Option<Deliverer>,
    /// Failed deliveries already reported by `new_failures`.
    failures_seen: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Alerting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Alerting")
            .field("rules", &lock(&self.engine).rules().len())
            .finish_non_exhaustive()
    }
}

impl Alerting {
    /// The alerts of `config` over `sessions`; `None` without rules. Starts the deliverer
    /// when there are receivers (call within a tokio runtime).
    pub fn start(config: &AlertConfig, slos: &Slos, sessions: &[SessionInfo]) -> Option<Self> {
        if config.is_empty() {
            return None;
        }
        Some(Self {
            engine: Mutex::new(Engine::new(config.rules.clone(), slos.clone())),
            infos: Mutex::new(sessions.iter().map(|i| (i.id, i.clone())).collect()),
            deliverer: (!config.receivers.is_empty())
                .then(|| Deliverer::spawn(config.receivers.clone())),
            failures_seen: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// A session that started later (a chat pane).
    pub fn add_session(&self, info: &SessionInfo) {
        lock(&self.infos).insert(info.id, info.clone());
    }

    /// Counts one event.
    pub fn observe(&self, event: &SessionEvent) {
        // Only these are counted: the rest (chunks, most of all) costs no lock.
        if !matches!(
            event.kind,
            crate::session::EventKind::Done(_)
                | crate::session::EventKind::RequestFailed { .. }
                | crate::session::EventKind::HeartbeatMissed { .. }
                | crate::session::EventKind::Account(_)
        ) {
            return;
        }
        let infos = lock(&self.infos);
        if let Some(info) = infos.get(&event.session) {
            lock(&self.engine).observe(event, info);
        }
    }

    /// Evaluates the rules at `now_us` and queues what is to be said for delivery; returns it.
    pub fn evaluate(&self, metrics: &Metrics, now_us: u64) -> Vec<Notice> {
        let notices = lock(&self.engine).evaluate(metrics, now_us);
        if let Some(d) = &self.deliverer {
            for n in &notices {
                d.deliver(n);
            }
        }
        notices
    }

    /// Deliveries that failed since the last call (the last ten kept at most), for the
    /// recording.
    pub fn new_failures(&self) -> Vec<deliver::Failure> {
        let Some(d) = &self.deliverer else {
            return Vec::new();
        };
        let counts = d.counts();
        let seen = self
            .failures_seen
            .swap(counts.failed, std::sync::atomic::Ordering::Relaxed);
        let new = counts.failed.saturating_sub(seen) as usize;
        let kept = counts.failures.len();
        counts.failures[kept.saturating_sub(new)..].to_vec()
    }

    /// Every alert's state, for Prometheus: (alert, severity, scope, phase).
    pub fn states(&self) -> Vec<(String, Severity, String, Phase)> {
        lock(&self.engine)
            .states()
            .map(|(rule, scope, phase)| {
                (rule.name.clone(), rule.severity, scope.to_string(), phase)
            })
            .collect()
    }

    /// What the alerts show now.
    pub fn view(&self, metrics: &Metrics) -> AlertsView {
        let engine = lock(&self.engine);
        let (firing, pending) = engine
            .active()
            .into_iter()
            .partition(|a| a.state == "firing");
        AlertsView {
            rules: engine.rules().len(),
            firing,
            pending,
            recent: engine.recent().rev().cloned().collect(),
            budgets: engine
                .budgets(metrics)
                .into_iter()
                .map(|(scope, objective, left)| Budget {
                    scope,
                    objective,
                    left,
                })
                .collect(),
            deliveries: self
                .deliverer
                .as_ref()
                .map(Deliverer::counts)
                .unwrap_or_default(),
        }
    }

    /// Waits up to `limit` for queued deliveries.
    pub async fn flush(&self, limit: std::time::Duration) {
        if let Some(d) = &self.deliverer {
            d.flush(limit).await;
        }
    }
}
