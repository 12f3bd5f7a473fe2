//! The dashboard's data: a pure fold of session events into the metrics, every session's
//! stream text and rate limits, the event log and the cost by model (`Data`); what a session
//! is at the start (`SessionSetup`) and relaytop's own use of the machine (`SelfUsage`).

use std::time::Duration;

use crate::log::EventLog;
use crate::stream::StreamRing;
use relaytop_core::cost::{Pricing, Response};
use relaytop_core::metrics::Metrics;
use relaytop_core::session::event::micros;
use relaytop_core::session::{EventKind, SessionEvent, SessionId, SessionInfo};

use super::state::*;
use super::view::*;

/// What a session is, as the dashboard needs it at the start.
#[derive(Clone, Debug)]
pub struct SessionSetup {
    pub info: SessionInfo,
    /// How often it sends heartbeats (`None`: it does not), to tell when one is late.
    pub heartbeat_every: Option<Duration>,
}

/// The dashboard's own view of one session, beside its metrics.
#[derive(Clone, Debug)]
pub struct SessionView {
    pub id: SessionId,
    pub stream: StreamRing,
    /// When a heartbeat was last missed.
    pub last_missed_heartbeat_us: Option<u64>,
    /// When the current (or last) connection came up.
    pub connected_at_us: Option<u64>,
    /// The relay's last word on its rate limits, if it says.
    pub rate_limits: Option<RateLimits>,
    /// The heartbeat interval, microseconds.
    pub heartbeat_every_us: Option<u64>,
    /// Lower-case name, provider and model: what the filter searches (with the state).
    pub(super) search: String,
    /// Where the session's name, provider and model come in natural order among all sessions'
    /// (fixed for the run, so sorting compares numbers, not text).
    pub(super) ranks: [u32; 3],
}

/// The relay's own account of its rate limits (`RateLimitStatus`): what is left of each
/// limit, and when it resets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateLimits {
    /// When the relay said so, microseconds since the run started.
    pub at_us: u64,
    pub requests_limit: Option<u64>,
    pub requests_remaining: Option<u64>,
    pub requests_reset_ms: Option<u64>,
    pub tokens_limit: Option<u64>,
    pub tokens_remaining: Option<u64>,
    pub tokens_reset_ms: Option<u64>,
}

/// Spend on one model at one provider.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ModelCost {
    pub provider: String,
    pub model: String,
    /// The provider's billing currency.
    pub currency: String,
    pub calls: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// In the billing currency, nano-units (exact sums).
    pub billed_nano: u64,
    /// Responses priced from estimated tokens.
    pub estimated_responses: u64,
    /// Whether the model has no price (counted at 0).
    pub unpriced: bool,
}

impl ModelCost {
    /// What it cost, in the billing currency.
    pub fn billed(&self) -> f64 {
        self.billed_nano as f64 / 1e9
    }
}

/// Everything folded from events: what a frozen view keeps a copy of.
#[derive(Clone, Debug)]
pub struct Data {
    pub metrics: Metrics,
    /// By session id (ids are dense from 0).
    pub sessions: Vec<SessionView>,
    pub log: EventLog,
    /// Spend by provider and model, in the order first seen.
    pub model_costs: Vec<ModelCost>,
    /// The relay accounts (balance, run-out, warnings, bill check), by provider.
    pub accounts: relaytop_core::account::Accounts,
}

impl Data {
    /// Judges requests against `slos` (goodput), as the run did.
    pub fn with_slos(mut self, slos: relaytop_core::config::slo::Slos) -> Data {
        let metrics = std::mem::replace(
            &mut self.metrics,
            Metrics::new(Vec::new(), Default::default()),
        );
        self.metrics = metrics.with_slos(slos);
        self
    }

    pub fn new(sessions: &[SessionSetup], pricing: Pricing) -> Data {
        let infos: Vec<SessionInfo> = sessions.iter().map(|s| s.info.clone()).collect();
        let mut accounts = relaytop_core::account::Accounts::new(Vec::new(), pricing.clone());
        for info in &infos {
            accounts.add_session(info.clone());
        }
        let metrics = Metrics::new(infos, pricing);
        let mut views: Vec<SessionView> = sessions
            .iter()
            .map(|s| SessionView {
                id: s.info.id,
                stream: StreamRing::new(BACKGROUND_STREAM_LINES),
                last_missed_heartbeat_us: None,
                connected_at_us: None,
                rate_limits: None,
                heartbeat_every_us: s.heartbeat_every.map(micros),
                search: format!("{} {} {}", s.info.name, s.info.provider, s.info.model)
                    .to_lowercase(),
                ranks: [0; 3],
            })
            .collect();
        views.sort_by_key(|v| v.id);
        for field in 0..3 {
            let label = |s: &SessionSetup| -> String {
                match field {
                    0 => s.info.name.clone(),
                    1 => s.info.provider.clone(),
                    _ => s.info.model.clone(),
                }
            };
            let mut order: Vec<(String, SessionId)> =
                sessions.iter().map(|s| (label(s), s.info.id)).collect();
            order.sort_by(|a, b| natural_cmp(&a.0, &b.0).then(a.1.cmp(&b.1)));
            let mut rank = 0u32;
            for (i, (text, id)) in order.iter().enumerate() {
                if i > 0 && natural_cmp(&order[i - 1].0, text) != std::cmp::Ordering::Equal {
                    rank += 1;
                }
                if let Ok(at) = views.binary_search_by_key(id, |v| v.id) {
                    views[at].ranks[field] = rank;
                }
            }
        }
        Data {
            metrics,
            sessions: views,
            log: EventLog::default(),
            model_costs: Vec::new(),
            accounts,
        }
    }

    /// The view of session `id`.
    pub fn view(&self, id: SessionId) -> Option<&SessionView> {
        match self.sessions.get(id as usize) {
            Some(v) if v.id == id => Some(v),
            _ => self.sessions.iter().find(|v| v.id == id),
        }
    }

    pub(super) fn view_mut(&mut self, id: SessionId) -> Option<&mut SessionView> {
        let index = match self.sessions.get(id as usize) {
            Some(v) if v.id == id => id as usize,
            _ => self.sessions.iter().position(|v| v.id == id)?,
        };
        self.sessions.get_mut(index)
    }

    pub fn apply(&mut self, event: &SessionEvent) {
        self.metrics.apply(event);
        // Warnings are the cost pane's marks, and a line in the log when they fire or clear.
        for (provider, alert) in self.accounts.apply(event) {
            let currency = match &event.kind {
                EventKind::Account(reading) => reading.currency.as_str(),
                _ => "",
            };
            let name = self
                .metrics
                .session(event.session)
                .map(|s| s.info().name.clone())
                .unwrap_or_default();
            self.log.push(
                event.at_us,
                event.session,
                &name,
                crate::log::Category::Note,
                alert.describe(&provider, currency),
            );
        }
        let Some(stats) = self.metrics.session(event.session) else {
            return;
        };
        let name = stats.info().name.clone();
        let info = stats.info();
        if let Some(response) = Response::of_session(&event.kind, &info.model) {
            let (model, tokens) = (response.model, response.tokens);
            let pricing = self.metrics.pricing().provider(&info.provider);
            let cost = pricing.cost(&response);
            let index = match self
                .model_costs
                .iter()
                .position(|m| m.provider == info.provider && m.model == *model)
            {
                Some(i) => i,
                None => {
                    self.model_costs.push(ModelCost {
                        provider: info.provider.clone(),
                        model: model.to_owned(),
                        currency: pricing.billing_currency.clone(),
                        ..ModelCost::default()
                    });
                    self.model_costs.len() - 1
                }
            };
            let entry = &mut self.model_costs[index];
            entry.calls += 1;
            entry.input_tokens = entry.input_tokens.saturating_add(tokens.input);
            entry.output_tokens = entry.output_tokens.saturating_add(tokens.output);
            // Costs are finite and not negative (cost.rs); `as` saturates anything else.
            entry.billed_nano = entry
                .billed_nano
                .saturating_add((cost.billed * 1e9).round() as u64);
            entry.estimated_responses += u64::from(cost.estimated);
            entry.unpriced |= !cost.priced;
        }
        self.log.fold(event, &name);
        if let Some(view) = self.view_mut(event.session) {
            view.stream.fold(event);
            match &event.kind {
                EventKind::HeartbeatMissed { .. } => {
                    view.last_missed_heartbeat_us = Some(event.at_us);
                }
                EventKind::Connected { .. } => view.connected_at_us = Some(event.at_us),
                EventKind::RateLimitStatus(status) => {
                    view.rate_limits = Some(RateLimits {
                        at_us: event.at_us,
                        requests_limit: status.requests_limit,
                        requests_remaining: status.requests_remaining,
                        requests_reset_ms: status.requests_reset_ms,
                        tokens_limit: status.tokens_limit,
                        tokens_remaining: status.tokens_remaining,
                        tokens_reset_ms: status.tokens_reset_ms,
                    });
                }
                _ => {}
            }
        }
    }
}

/// relaytop's own use of the machine, measured by the loop.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SelfUsage {
    /// Percent of one core.
    pub cpu_percent: f32,
    /// Resident memory.
    pub memory_bytes: u64,
}
