//! Metrics: the pure fold of session events into per-session, per-provider and run-wide
//! figures (counts, cost, latency quantiles over sliding windows, time series and rates).
//! This file owns the fold itself (`Metrics`); the figures it keeps are in `counts`,
//! `session` and `provider`.
//!
//! Nothing here reads a clock or does I/O: an event's `at_us` is its time, and every query
//! that depends on the present takes `now_us`. Live runs, replays and tests fold the same
//! events into the same figures. Everything that grows is bounded: histograms by their range,
//! windows and series by their length, messages by their length.
//!
//! Memory: a session keeps 2-significant-figure histograms (whole run and a 1-minute window),
//! allocated only once a sample of that metric arrives; a provider (and the run totals) keeps
//! 3-significant-figure histograms over 1 minute, 15 minutes and the run, and the time series.

use std::collections::BTreeMap;

use crate::config::slo::Slos;
use crate::cost::{Pricing, ProviderPricing};
use crate::session::{SessionEvent, SessionId, SessionInfo};

pub use super::latency::{
    LATENCY_METRICS, LatencyMetric, MAX_SAMPLE_US, Quantiles, Window, ms, tokens_per_second,
};
pub use super::series::{MINUTES_KEPT, SECONDS_KEPT, SeriesMetric, SeriesPoint};

use super::counts::*;
use super::model::ModelStats;
use super::provider::*;
use super::session::*;

/// The usage audit's tolerance unless the config sets one: a relay may report 10 % more
/// output tokens than relaytop counts in its text (tokenizers of other families differ).
pub const DEFAULT_USAGE_TOLERANCE: f64 = 0.10;

/// The fold: every session's, every provider's and the run's figures.
#[derive(Clone, Debug)]
pub struct Metrics {
    pricing: Pricing,
    slos: Slos,
    /// How much more output a relay may report than its text holds before it is flagged.
    usage_tolerance: f64,
    sessions: BTreeMap<SessionId, SessionStats>,
    providers: Vec<ProviderStats>,
    /// Every (provider, model) pair the sessions ask for, in the order first seen.
    models: Vec<ModelStats>,
    totals: ProviderStats,
    events: u64,
    unknown_session_events: u64,
    last_event_us: u64,
}

impl Metrics {
    /// Metrics for `sessions`, priced by `pricing`.
    pub fn new(sessions: Vec<SessionInfo>, pricing: Pricing) -> Self {
        let mut totals = ProviderStats::new(TOTALS_NAME, &ProviderPricing::default());
        totals.fee_per_1000_calls_usd = None;
        totals.billing_currency.clear();
        let mut m = Self {
            pricing,
            slos: Slos::default(),
            usage_tolerance: DEFAULT_USAGE_TOLERANCE,
            sessions: BTreeMap::new(),
            providers: Vec::new(),
            models: Vec::new(),
            totals,
            events: 0,
            unknown_session_events: 0,
            last_event_us: 0,
        };
        for info in sessions {
            m.add_session(info);
        }
        m
    }

    /// Judges requests against `slos` (goodput) from now on.
    pub fn with_slos(mut self, slos: Slos) -> Self {
        self.slos = slos;
        self
    }

    /// Flags a relay whose reported output exceeds its text's by more than `tolerance`.
    pub fn with_usage_tolerance(mut self, tolerance: f64) -> Self {
        self.usage_tolerance = tolerance;
        self
    }

    /// The service-level objectives requests are judged by.
    pub fn slos(&self) -> &Slos {
        &self.slos
    }

    /// The usage audit's tolerance (0.1: 10 %).
    pub fn usage_tolerance(&self) -> f64 {
        self.usage_tolerance
    }

    /// Whether `provider`'s relay reports more output than its text holds, beyond the
    /// tolerance (more for families counted by a ratio: `tokenize`).
    pub fn overbills(&self, provider: &ProviderStats) -> bool {
        provider.counts.usage_audit.overbills(self.usage_tolerance)
    }

    /// Adds a session that appeared at run time (a chat pane, say). Adding an id again
    /// relabels it and keeps its figures.
    pub fn add_session(&mut self, info: SessionInfo) {
        let provider = self.provider_index(&info.provider);
        let model = self.model_index(&info.provider, &info.model);
        let now = self.last_event_us;
        match self.sessions.get_mut(&info.id) {
            Some(s) => {
                if s.provider != provider {
                    let old = &mut self.providers[s.provider].sessions;
                    *old = old.saturating_sub(1);
                    self.providers[provider].sessions += 1;
                }
                if s.model != model {
                    if let Some(old) = self.models.get_mut(s.model) {
                        old.sessions = old.sessions.saturating_sub(1);
                    }
                    self.models[model].sessions += 1;
                }
                s.provider = provider;
                s.model = model;
                s.info = info;
            }
            None => {
                self.providers[provider].sessions += 1;
                self.models[model].sessions += 1;
                self.totals.sessions += 1;
                let mut stats = SessionStats::new(info, provider, now);
                stats.model = model;
                self.sessions.insert(stats.info.id, stats);
            }
        }
    }

    fn model_index(&mut self, provider: &str, model: &str) -> usize {
        if let Some(i) = self
            .models
            .iter()
            .position(|m| m.provider == provider && m.model == model)
        {
            return i;
        }
        self.models.push(ModelStats::new(provider, model));
        self.models.len() - 1
    }

    fn provider_index(&mut self, name: &str) -> usize {
        if let Some(i) = self.providers.iter().position(|p| p.name == name) {
            return i;
        }
        let pricing = self.pricing.provider(name);
        self.providers.push(ProviderStats::new(name, pricing));
        // The totals bill in a currency, and charge a fee, only while all providers agree.
        let first = &self.providers[0];
        let same_currency = self
            .providers
            .iter()
            .all(|p| p.billing_currency == first.billing_currency);
        let same_fee = self
            .providers
            .iter()
            .all(|p| p.fee_per_1000_calls_usd == first.fee_per_1000_calls_usd);
        self.totals.billing_currency = if same_currency {
            first.billing_currency.clone()
        } else {
            "mixed".to_string()
        };
        self.totals.fee_per_1000_calls_usd = if same_fee {
            first.fee_per_1000_calls_usd
        } else {
            None
        };
        self.providers.len() - 1
    }

    /// Folds one event. Events of unknown sessions are counted and otherwise ignored.
    pub fn apply(&mut self, ev: &SessionEvent) {
        self.events += 1;
        self.last_event_us = self.last_event_us.max(ev.at_us);
        let Some(session) = self.sessions.get_mut(&ev.session) else {
            self.unknown_session_events += 1;
            return;
        };
        let provider = &mut self.providers[session.provider];
        let pricing = self.pricing.provider(&provider.name);
        let slo = self.slos.of(&provider.name);
        let seen = session.fold(ev, pricing, slo);
        provider.absorb(ev, &seen);
        if let Some(model) = self.models.get_mut(session.model) {
            model.absorb(ev, &seen);
        }
        self.totals.absorb(ev, &seen);
    }

    /// A copy whose latency histograms keep only the buckets that hold samples (what replay
    /// checkpoints keep): tens of KiB instead of megabytes. It reads the same, and folds the
    /// same: recording into a histogram unpacks that one (copies of it stay packed).
    pub fn packed(&self) -> Metrics {
        Metrics {
            pricing: self.pricing.clone(),
            slos: self.slos.clone(),
            usage_tolerance: self.usage_tolerance,
            sessions: self
                .sessions
                .iter()
                .map(|(id, s)| (*id, s.packed()))
                .collect(),
            providers: self.providers.iter().map(ProviderStats::packed).collect(),
            models: self.models.iter().map(ModelStats::packed).collect(),
            totals: self.totals.packed(),
            events: self.events,
            unknown_session_events: self.unknown_session_events,
            last_event_us: self.last_event_us,
        }
    }

    /// One session's figures.
    pub fn session(&self, id: SessionId) -> Option<&SessionStats> {
        self.sessions.get(&id)
    }

    /// Every session, by id.
    pub fn sessions(&self) -> impl Iterator<Item = &SessionStats> + '_ {
        self.sessions.values()
    }

    /// One provider's figures.
    pub fn provider(&self, name: &str) -> Option<&ProviderStats> {
        self.providers.iter().find(|p| p.name == name)
    }

    /// Every provider, in the order they were first seen.
    pub fn providers(&self) -> &[ProviderStats] {
        &self.providers
    }

    /// Every model at every provider, in the order first seen.
    pub fn models(&self) -> &[ModelStats] {
        &self.models
    }

    /// The provider a session belongs to.
    pub fn provider_of(&self, session: &SessionStats) -> &ProviderStats {
        &self.providers[session.provider]
    }

    /// The whole run's figures, over every provider.
    pub fn totals(&self) -> &ProviderStats {
        &self.totals
    }

    /// The price table.
    pub fn pricing(&self) -> &Pricing {
        &self.pricing
    }

    /// Events folded so far.
    pub fn events_applied(&self) -> u64 {
        self.events
    }

    /// Events that named a session not in the table.
    pub fn unknown_session_events(&self) -> u64 {
        self.unknown_session_events
    }

    /// The latest event time seen, microseconds since the run started.
    pub fn last_event_us(&self) -> u64 {
        self.last_event_us
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;

#[cfg(test)]
#[path = "serving_tests.rs"]
mod serving_tests;
