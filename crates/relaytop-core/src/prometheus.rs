//! Prometheus metrics: a fold of the session events into `prometheus-client` metric families,
//! and a tiny HTTP server that serves them at `GET /metrics` (`--metrics-listen`).
//!
//! The exporter is fed the same events as every other consumer: the headless loop and the
//! dashboard call `World::observe` for each event they fold (it needs no lock shared with
//! them; the families are atomics behind `prometheus-client`'s own locks), and a scrape
//! encodes the families as they stand. It is a fold of its own rather than a view of
//! `Metrics` because `Metrics` belongs to its consumer's loop, and Prometheus wants
//! monotonic counters and cumulative histograms, not sliding windows.
//!
//! Naming follows Prometheus' conventions (`relaytop_` prefix, `_total` counters, base units:
//! seconds, US dollars). Every series is labelled by `provider`, `model` and `session`;
//! `relaytop_session_info` adds each session's `protocol`. The text is prometheus-client's
//! (OpenMetrics), never written by hand.
//!
//! An agent (`relaytop agent`) adds constant labels to every series (`Exporter::with_labels`:
//! its `location` and free-form labels) and a health endpoint (`GET /healthz`: 200 while the
//! agent's loop says it is alive within `HEALTH_STALE`, 503 after).

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::cost::{Pricing, Response};
use crate::session::{
    Completed, ErrorKind, EventKind, RateLimits, RequestId, SessionEvent, SessionInfo, SessionState,
};

/// The content type of the exposition prometheus-client writes.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The path metrics are served at.
pub const METRICS_PATH: &str = "/metrics";
/// The health endpoint's path.
pub const HEALTH_PATH: &str = "/healthz";
/// A health report older than this makes `/healthz` answer 503 (the loop is stuck).
pub const HEALTH_STALE: Duration = Duration::from_secs(30);
/// A scrape request head larger than this is refused.
const MAX_HEAD_BYTES: usize = 8 * 1024;
/// How long a scraper may take to send its request.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once; more wait in the kernel's queue.
const MAX_CONNECTIONS: usize = 16;

/// Every state a session can be in, as `relaytop_session_state` labels them.
const STATES: [&str; 6] = [
    "connecting",
    "open",
    "streaming",
    "backing_off",
    "stopped",
    "closed",
];

fn state_label(state: &SessionState) -> &'static str {
    match state {
        SessionState::Connecting { .. } => "connecting",
        SessionState::Open => "open",
        SessionState::Streaming { .. } => "streaming",
        SessionState::BackingOff { .. } => "backing_off",
        SessionState::Stopped { .. } => "stopped",
        SessionState::Closed => "closed",
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SessionLabels {
    provider: String,
    model: String,
    session: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InfoLabels {
    provider: String,
    model: String,
    session: String,
    protocol: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    provider: String,
    model: String,
    session: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabels {
    provider: String,
    model: String,
    session: String,
    /// `input`, `output`, `cached_input` and `cache_write_input` (parts of `input`) or
    /// `reasoning_output` (a part of `output`).
    direction: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    provider: String,
    model: String,
    session: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabels {
    provider: String,
    model: String,
    session: String,
    /// `requests` or `tokens`.
    limit: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AlertLabels {
    alert: String,
    severity: String,
    /// `all`, `provider:NAME`, `model:NAME` or `session:NAME`.
    scope: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AccountLabels {
    provider: String,
    /// The station's unit: `USD`, `CNY`…
    currency: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClassLabels {
    provider: String,
    /// `crate::account::ErrorClass::slug`.
    class: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// The account families (`crate::account`), fed by `Account`, `Done` and `RelayError`.
struct AccountFamilies {
    fold: Mutex<crate::account::Accounts>,
    balance: Family<AccountLabels, FloatGauge>,
    balance_usd: Family<AccountLabels, FloatGauge>,
    spend_per_hour: Family<AccountLabels, FloatGauge>,
    run_out: Family<AccountLabels, FloatGauge>,
    bill_ratio: Family<AccountLabels, FloatGauge>,
    low_balance: Family<AccountLabels, Gauge>,
    run_out_warning: Family<AccountLabels, Gauge>,
    relay_errors: Family<ClassLabels, Counter>,
}

impl AccountFamilies {
    fn new(sessions: &[SessionInfo], pricing: Pricing, r: &mut Registry) -> Self {
        let a = Self {
            fold: Mutex::new(crate::account::Accounts::new(sessions.to_vec(), pricing)),
            balance: Family::default(),
            balance_usd: Family::default(),
            spend_per_hour: Family::default(),
            run_out: Family::default(),
            bill_ratio: Family::default(),
            low_balance: Family::default(),
            run_out_warning: Family::default(),
            relay_errors: Family::default(),
        };
        r.register(
            "account_balance",
            "The relay account's balance, in the station's unit (label currency)",
            a.balance.clone(),
        );
        r.register(
            "account_balance_usd",
            "The relay account's balance in list-price US dollars (the provider's billing settings)",
            a.balance_usd.clone(),
        );
        r.register(
            "account_spend_per_hour",
            "The balance's decrease per hour over the window, in the station's unit",
            a.spend_per_hour.clone(),
        );
        r.register_with_unit(
            "account_run_out",
            "Projected time until the balance runs out at the spend rate (absent when nothing is spent)",
            Unit::Seconds,
            a.run_out.clone(),
        );
        r.register(
            "account_bill_ratio",
            "The balance's decrease over relaytop's own traffic at list price (1 = list price)",
            a.bill_ratio.clone(),
        );
        r.register(
            "account_low_balance",
            "1 while the balance is below the configured low_balance",
            a.low_balance.clone(),
        );
        r.register(
            "account_run_out_warning",
            "1 while the balance runs out within run_out_warning_h",
            a.run_out_warning.clone(),
        );
        r.register(
            "relay_errors",
            "Failed requests by the relay's error class",
            a.relay_errors.clone(),
        );
        a
    }

    fn observe(&self, event: &SessionEvent) {
        if !matches!(
            event.kind,
            EventKind::Account(_) | EventKind::RelayError(_) | EventKind::Done(_)
        ) {
            return;
        }
        let mut fold = self.fold.lock().unwrap_or_else(PoisonError::into_inner);
        fold.apply(event);
        let provider = match &event.kind {
            EventKind::Account(_) => match fold.provider_of(event.session) {
                Some(provider) => provider.to_owned(),
                None => return,
            },
            EventKind::RelayError(error) => {
                if let Some(provider) = fold.provider_of(event.session) {
                    self.relay_errors
                        .get_or_create(&ClassLabels {
                            provider: provider.to_owned(),
                            class: error.class.slug().to_owned(),
                        })
                        .inc();
                }
                return;
            }
            _ => return,
        };
        let Some(book) = fold.get(&provider) else {
            return;
        };
        let s = book.summary();
        let labels = AccountLabels {
            provider: s.provider.clone(),
            currency: s.currency.clone(),
        };
        let set = |family: &Family<AccountLabels, FloatGauge>, value: Option<f64>| match value {
            Some(v) if v.is_finite() => {
                family.get_or_create(&labels).set(v);
            }
            _ => {
                family.remove(&labels);
            }
        };
        set(&self.balance, s.balance);
        set(&self.balance_usd, s.balance_usd);
        set(&self.spend_per_hour, s.spend_per_hour);
        set(&self.run_out, s.run_out_s.map(|s| s as f64));
        let ratio = s.bill.as_ref().and_then(|b| match b.verdict {
            crate::account::BillVerdict::Charged { ratio }
            | crate::account::BillVerdict::OtherTraffic { ratio } => Some(ratio),
            crate::account::BillVerdict::Waiting => None,
        });
        set(&self.bill_ratio, ratio);
        self.low_balance
            .get_or_create(&labels)
            .set(i64::from(s.low_balance_warning));
        self.run_out_warning
            .get_or_create(&labels)
            .set(i64::from(s.run_out_warning));
    }
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// The ratio between neighbouring bucket bounds: `histogram_quantile` interpolates inside one
/// bucket, so its answer is within 5 % of the true quantile (relaytop's own, from HDR
/// histograms at 0.1 %) wherever the quantile falls between the first and last bound.
pub const BUCKET_RATIO: f64 = 1.05;

fn latency_histogram() -> Histogram {
    // 5 ms to about 125 s in 5 % steps (208 buckets): time to first token, response time,
    // stalls, heartbeats.
    Histogram::new(exponential_buckets(0.005, BUCKET_RATIO, 208))
}

fn token_histogram() -> Histogram {
    // 0.1 ms to about 10 s in 5 % steps (237 buckets): time per output token and
    // inter-token latency.
    Histogram::new(exponential_buckets(0.0001, BUCKET_RATIO, 237))
}

/// What the fold remembers of one session.
#[derive(Debug)]
struct Known {
    labels: SessionLabels,
    connected_before: bool,
    /// The request whose time to first token was counted last (each counts once).
    ttft_request: Option<RequestId>,
    /// The response under way, chunk by chunk (for output speed, gaps and stalls).
    streaming: crate::metrics::Streaming,
    /// Whether the session is connecting (an error then is a refused connect).
    connecting: bool,
}

fn error_kind(kind: &EventKind) -> ErrorKind {
    match kind {
        EventKind::Error { kind, .. } => *kind,
        _ => ErrorKind::Other,
    }
}

/// The metric families, fed by session events.
pub struct Exporter {
    registry: Registry,
    pricing: Pricing,
    sessions: Mutex<Vec<Option<Known>>>,
    info: Family<InfoLabels, Gauge>,
    requests: Family<SessionLabels, Counter>,
    responses: Family<SessionLabels, Counter>,
    failures: Family<KindLabels, Counter>,
    errors: Family<KindLabels, Counter>,
    connects: Family<SessionLabels, Counter>,
    reconnects: Family<SessionLabels, Counter>,
    drops: Family<SessionLabels, Counter>,
    heartbeats_missed: Family<SessionLabels, Counter>,
    malformed: Family<SessionLabels, Counter>,
    tokens: Family<DirectionLabels, Counter>,
    estimated_responses: Family<SessionLabels, Counter>,
    cost: Family<SessionLabels, Counter<f64, AtomicU64>>,
    ttft: HistogramFamily<SessionLabels>,
    response_time: HistogramFamily<SessionLabels>,
    heartbeat_rtt: HistogramFamily<SessionLabels>,
    answer: HistogramFamily<SessionLabels>,
    tpot: HistogramFamily<SessionLabels>,
    itl: HistogramFamily<SessionLabels>,
    stall: HistogramFamily<SessionLabels>,
    cut: Family<SessionLabels, Counter>,
    good: Family<SessionLabels, Counter>,
    refused: Family<SessionLabels, Counter>,
    audit_reported: Family<SessionLabels, Counter>,
    audit_counted: Family<SessionLabels, Counter>,
    slos: crate::config::slo::Slos,
    state: Family<StateLabels, Gauge>,
    ratelimit_remaining: Family<LimitLabels, Gauge>,
    ratelimit_limit: Family<LimitLabels, Gauge>,
    alert_state: Family<AlertLabels, Gauge>,
    accounts: AccountFamilies,
    /// The last health report (`set_health`): when, and what `/healthz` says.
    health: Mutex<Option<(std::time::Instant, String)>>,
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter").finish_non_exhaustive()
    }
}

impl Exporter {
    /// An exporter for `sessions` (by id), priced by `pricing`.
    pub fn new(sessions: &[SessionInfo], pricing: Pricing) -> Self {
        Self::with_labels(sessions, pricing, &[])
    }

    /// `new`, with constant `labels` on every series (an agent's `location`, `--label k=v`).
    pub fn with_labels(
        sessions: &[SessionInfo],
        pricing: Pricing,
        labels: &[(String, String)],
    ) -> Self {
        let mut registry = Registry::with_prefix_and_labels(
            "relaytop",
            labels
                .iter()
                .map(|(k, v)| (k.clone().into(), v.clone().into())),
        );
        let hist = || HistogramFamily::new_with_constructor(latency_histogram as fn() -> _);
        let fine = || HistogramFamily::new_with_constructor(token_histogram as fn() -> _);
        let accounts = AccountFamilies::new(sessions, pricing.clone(), &mut registry);
        let e = Self {
            registry: Registry::default(),
            pricing,
            sessions: Mutex::new(Vec::new()),
            info: Family::default(),
            requests: Family::default(),
            responses: Family::default(),
            failures: Family::default(),
            errors: Family::default(),
            connects: Family::default(),
            reconnects: Family::default(),
            drops: Family::default(),
            heartbeats_missed: Family::default(),
            malformed: Family::default(),
            tokens: Family::default(),
            estimated_responses: Family::default(),
            cost: Family::default(),
            ttft: hist(),
            response_time: hist(),
            heartbeat_rtt: hist(),
            answer: hist(),
            tpot: fine(),
            itl: fine(),
            stall: hist(),
            cut: Family::default(),
            good: Family::default(),
            refused: Family::default(),
            audit_reported: Family::default(),
            audit_counted: Family::default(),
            slos: Default::default(),
            state: Family::default(),
            ratelimit_remaining: Family::default(),
            ratelimit_limit: Family::default(),
            alert_state: Family::default(),
            accounts,
            health: Mutex::new(None),
        };
        let r = &mut registry;
        r.register(
            "session_info",
            "A session: its provider, model and wire protocol (always 1)",
            e.info.clone(),
        );
        r.register("requests", "Requests sent", e.requests.clone());
        r.register(
            "responses",
            "Responses completed (done)",
            e.responses.clone(),
        );
        r.register(
            "request_failures",
            "Requests that ended without done, by kind",
            e.failures.clone(),
        );
        r.register(
            "errors",
            "Errors reported by the relay or the connection, by kind",
            e.errors.clone(),
        );
        r.register("connects", "Connections established", e.connects.clone());
        r.register(
            "reconnects",
            "Connections after a session's first",
            e.reconnects.clone(),
        );
        r.register(
            "drops",
            "Connections (or streams) that ended without this client asking",
            e.drops.clone(),
        );
        r.register(
            "heartbeats_missed",
            "Heartbeats unanswered for a whole interval",
            e.heartbeats_missed.clone(),
        );
        r.register(
            "malformed_frames",
            "Frames or events that could not be parsed",
            e.malformed.clone(),
        );
        r.register(
            "tokens",
            "Tokens of completed responses, by direction (cached_input and cache_write_input are part of input, reasoning_output of output)",
            e.tokens.clone(),
        );
        r.register(
            "estimated_responses",
            "Responses whose tokens were estimated (the relay sent no usage)",
            e.estimated_responses.clone(),
        );
        r.register(
            "cost_usd",
            "Spend on completed responses in US dollars (tokens at list price or as reported, plus per-call fees)",
            e.cost.clone(),
        );
        r.register_with_unit("ttft", "Time to first token", Unit::Seconds, e.ttft.clone());
        r.register_with_unit(
            "response",
            "Time from sending a request to its done",
            Unit::Seconds,
            e.response_time.clone(),
        );
        r.register_with_unit(
            "heartbeat_rtt",
            "Heartbeat round trip (relay/v1 ping-pong, Realtime WebSocket Ping-Pong; SSE has none)",
            Unit::Seconds,
            e.heartbeat_rtt.clone(),
        );
        r.register_with_unit(
            "answer",
            "Time to the first answer token, after any thinking",
            Unit::Seconds,
            e.answer.clone(),
        );
        r.register_with_unit(
            "tpot",
            "Time per output token: (E2E - TTFT) / (output tokens - 1); output speed is 1 / TPOT",
            Unit::Seconds,
            e.tpot.clone(),
        );
        r.register_with_unit(
            "itl",
            "Inter-token latency: gaps between streamed tokens (a chunk of k tokens is k gaps of gap/k)",
            Unit::Seconds,
            e.itl.clone(),
        );
        r.register_with_unit(
            "stall",
            "Each response's longest stall: its largest gap between chunks or before its end",
            Unit::Seconds,
            e.stall.clone(),
        );
        r.register(
            "responses_cut",
            "Responses cut short: no terminal mark, no finish reason, incomplete, events lost, empty",
            e.cut.clone(),
        );
        r.register(
            "responses_good",
            "Completed responses that met the service-level objective ([slo]): goodput",
            e.good.clone(),
        );
        r.register(
            "connects_refused",
            "Connection attempts refused or failed (upgrade 401/429/503, connect refused)",
            e.refused.clone(),
        );
        r.register(
            "usage_reported_output_tokens",
            "Output tokens the relay reported for responses relaytop audited",
            e.audit_reported.clone(),
        );
        r.register(
            "usage_counted_output_tokens",
            "Output tokens relaytop counted in the text of the responses it audited",
            e.audit_counted.clone(),
        );
        r.register(
            "session_state",
            "1 for the state each session is in, 0 for the others",
            e.state.clone(),
        );
        r.register(
            "ratelimit_remaining",
            "What the relay says is left of its rate limits (x-ratelimit-*, rate_limits.updated)",
            e.ratelimit_remaining.clone(),
        );
        r.register(
            "ratelimit_limit",
            "The relay's rate limits, as it states them",
            e.ratelimit_limit.clone(),
        );
        r.register(
            "alert_state",
            "Each alert's state: 0 inactive or resolved, 1 pending, 2 firing",
            e.alert_state.clone(),
        );
        let mut e = e;
        e.registry = registry;
        for info in sessions {
            e.add_session(info);
        }
        e
    }

    /// Judges responses against `slos` (the `relaytop_responses_good_total` counter).
    pub fn with_slos(mut self, slos: crate::config::slo::Slos) -> Self {
        self.slos = slos;
        self
    }

    /// Says the agent is alive now, with `text` for `/healthz`.
    pub fn set_health(&self, text: String) {
        *self.health.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((std::time::Instant::now(), text));
    }

    /// What `/healthz` answers: (healthy, text). Healthy until a report is older than
    /// `HEALTH_STALE`; without reports, always.
    pub fn health(&self) -> (bool, String) {
        match &*self.health.lock().unwrap_or_else(PoisonError::into_inner) {
            None => (true, "ok\n".to_owned()),
            Some((at, text)) if at.elapsed() <= HEALTH_STALE => (true, format!("ok: {text}\n")),
            Some((at, text)) => (
                false,
                format!(
                    "stalled: no report for {} s (last: {text})\n",
                    at.elapsed().as_secs()
                ),
            ),
        }
    }

    /// Sets an alert's state (`relaytop_alert_state`): 0 inactive, 1 pending, 2 firing.
    pub fn set_alert_state(&self, alert: &str, severity: &str, scope: &str, state: i64) {
        self.alert_state
            .get_or_create(&AlertLabels {
                alert: alert.to_owned(),
                severity: severity.to_owned(),
                scope: scope.to_owned(),
            })
            .set(state);
    }

    /// Adds (or relabels) a session, e.g. a chat pane opened at run time.
    pub fn add_session(&self, info: &SessionInfo) {
        let labels = SessionLabels {
            provider: info.provider.clone(),
            model: info.model.clone(),
            session: info.name.clone(),
        };
        self.info
            .get_or_create(&InfoLabels {
                provider: info.provider.clone(),
                model: info.model.clone(),
                session: info.name.clone(),
                protocol: info.protocol.label().to_owned(),
            })
            .set(1);
        // Every series of the session exists from the start, at 0.
        for family in [
            &self.requests,
            &self.responses,
            &self.connects,
            &self.reconnects,
            &self.drops,
        ] {
            let _ = family.get_or_create(&labels);
        }
        let _ = self.cost.get_or_create(&labels);
        for direction in [
            "input",
            "output",
            "cached_input",
            "cache_write_input",
            "reasoning_output",
        ] {
            let _ = self
                .tokens
                .get_or_create(&direction_labels(&labels, direction));
        }
        self.set_state(&labels, "connecting");
        self.accounts
            .fold
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .add_session(info.clone());
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = info.id as usize;
        if sessions.len() <= slot {
            sessions.resize_with(slot + 1, || None);
        }
        sessions[slot] = Some(Known {
            labels,
            connected_before: false,
            ttft_request: None,
            streaming: Default::default(),
            connecting: false,
        });
    }

    fn set_state(&self, labels: &SessionLabels, current: &str) {
        for state in STATES {
            self.state
                .get_or_create(&StateLabels {
                    provider: labels.provider.clone(),
                    model: labels.model.clone(),
                    session: labels.session.clone(),
                    state: state.to_owned(),
                })
                .set(i64::from(state == current));
        }
    }

    /// Folds one event. Events of sessions it does not know are ignored.
    pub fn observe(&self, event: &SessionEvent) {
        self.accounts.observe(event);
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(Some(known)) = sessions.get_mut(event.session as usize) else {
            return;
        };
        let labels = &known.labels;
        let kind_labels = |kind: ErrorKind| KindLabels {
            provider: labels.provider.clone(),
            model: labels.model.clone(),
            session: labels.session.clone(),
            kind: kind.label().to_owned(),
        };
        match &event.kind {
            EventKind::Error { .. } if known.connecting => {
                self.refused.get_or_create(labels).inc();
                self.errors
                    .get_or_create(&kind_labels(error_kind(&event.kind)))
                    .inc();
            }
            EventKind::State(state) => {
                known.connecting = matches!(state, SessionState::Connecting { .. });
                self.set_state(labels, state_label(state));
            }
            EventKind::Connected { .. } => {
                self.connects.get_or_create(labels).inc();
                if known.connected_before {
                    self.reconnects.get_or_create(labels).inc();
                }
                known.connected_before = true;
            }
            EventKind::RequestSent { request, .. } => {
                known.streaming.start(*request);
                self.requests.get_or_create(labels).inc();
            }
            EventKind::Chunk { request, text } => {
                known
                    .streaming
                    .chunk(*request, event.at_us, text.len() as u64);
            }
            EventKind::FirstToken { request, ttft_us } => {
                if known.ttft_request != Some(*request) {
                    known.ttft_request = Some(*request);
                    self.ttft.get_or_create(labels).observe(seconds(*ttft_us));
                }
            }
            EventKind::Done(done) => {
                let Completed {
                    request,
                    ttft_us,
                    answer_us,
                    total_us,
                    tokens,
                    bytes,
                    cut,
                    text_tokens,
                    ..
                } = &**done;
                if cut.is_some() {
                    self.cut.get_or_create(labels).inc();
                } else {
                    self.responses.get_or_create(labels).inc();
                }
                let f = known.streaming.figures(
                    *request,
                    event.at_us,
                    *ttft_us,
                    *answer_us,
                    *total_us,
                    tokens,
                    *bytes,
                );
                let good = self
                    .slos
                    .of(&labels.provider)
                    .is_good(&crate::config::slo::Measured {
                        completed: cut.is_none(),
                        ttft_us: *ttft_us,
                        tpot_us: f.tpot_us,
                        e2e_us: *total_us,
                    });
                if good {
                    self.good.get_or_create(labels).inc();
                }
                if let Some(v) = f.ttfa_us {
                    self.answer.get_or_create(labels).observe(seconds(v));
                }
                if let Some(v) = f.tpot_us {
                    self.tpot.get_or_create(labels).observe(seconds(v));
                }
                if !f.itl.is_empty() {
                    let itl = self.itl.get_or_create(labels);
                    for &(v, n) in &f.itl {
                        for _ in 0..n.min(1024) {
                            itl.observe(seconds(v));
                        }
                    }
                }
                if let Some(v) = f.stall_us {
                    self.stall.get_or_create(labels).observe(seconds(v));
                }
                if let Some(counted) = text_tokens
                    && !tokens.estimated
                {
                    self.audit_reported
                        .get_or_create(labels)
                        .inc_by(tokens.output.saturating_sub(tokens.reasoning_output));
                    self.audit_counted.get_or_create(labels).inc_by(*counted);
                }
                if let Some(ttft) = ttft_us
                    && known.ttft_request != Some(*request)
                {
                    known.ttft_request = Some(*request);
                    self.ttft.get_or_create(labels).observe(seconds(*ttft));
                }
                self.response_time
                    .get_or_create(labels)
                    .observe(seconds(*total_us));
                let directions = [
                    ("input", tokens.input),
                    ("output", tokens.output),
                    ("cached_input", tokens.cached_input),
                    ("cache_write_input", tokens.cache_write_input),
                    ("reasoning_output", tokens.reasoning_output),
                ];
                for (direction, n) in directions {
                    self.tokens
                        .get_or_create(&direction_labels(labels, direction))
                        .inc_by(n);
                }
                if tokens.estimated {
                    self.estimated_responses.get_or_create(labels).inc();
                }
                if let Some(response) = Response::of_session(&event.kind, &labels.model) {
                    let cost = self.pricing.provider(&labels.provider).cost(&response);
                    if cost.total_usd.is_finite() && cost.total_usd > 0.0 {
                        self.cost.get_or_create(labels).inc_by(cost.total_usd);
                    }
                }
            }
            EventKind::RequestFailed { kind, .. } => {
                if *kind == ErrorKind::Cut {
                    self.cut.get_or_create(labels).inc();
                }
                self.failures.get_or_create(&kind_labels(*kind)).inc();
            }
            EventKind::Error { kind, .. } => {
                self.errors.get_or_create(&kind_labels(*kind)).inc();
            }
            EventKind::Pong { rtt_us } => {
                self.heartbeat_rtt
                    .get_or_create(labels)
                    .observe(seconds(*rtt_us));
            }
            EventKind::HeartbeatMissed { .. } => {
                self.heartbeats_missed.get_or_create(labels).inc();
            }
            EventKind::Closed { requested, .. } => {
                if !requested {
                    self.drops.get_or_create(labels).inc();
                }
            }
            EventKind::Malformed { .. } => {
                self.malformed.get_or_create(labels).inc();
            }
            EventKind::RateLimitStatus(status) => {
                let RateLimits {
                    requests_limit,
                    requests_remaining,
                    tokens_limit,
                    tokens_remaining,
                    ..
                } = &**status;
                let limits = [
                    ("requests", requests_limit, requests_remaining),
                    ("tokens", tokens_limit, tokens_remaining),
                ];
                for (name, limit, remaining) in limits {
                    let limit_labels = LimitLabels {
                        provider: labels.provider.clone(),
                        model: labels.model.clone(),
                        session: labels.session.clone(),
                        limit: name.to_owned(),
                    };
                    if let Some(limit) = limit {
                        self.ratelimit_limit
                            .get_or_create(&limit_labels)
                            .set(i64::try_from(*limit).unwrap_or(i64::MAX));
                    }
                    if let Some(remaining) = remaining {
                        self.ratelimit_remaining
                            .get_or_create(&limit_labels)
                            .set(i64::try_from(*remaining).unwrap_or(i64::MAX));
                    }
                }
            }
            EventKind::BackingOff { .. }
            | EventKind::RateLimited { .. }
            | EventKind::UnknownFrame { .. }
            | EventKind::Transcript { .. }
            | EventKind::Marker { .. }
            | EventKind::Account(_)
            | EventKind::RelayError(_) => {}
        }
    }

    /// The exposition, as a scrape gets it.
    pub fn encode(&self) -> String {
        let mut text = String::with_capacity(16 * 1024);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

fn direction_labels(labels: &SessionLabels, direction: &str) -> DirectionLabels {
    DirectionLabels {
        provider: labels.provider.clone(),
        model: labels.model.clone(),
        session: labels.session.clone(),
        direction: direction.to_owned(),
    }
}

fn seconds(us: u64) -> f64 {
    us as f64 / 1e6
}

/// The running `/metrics` server. Dropping it stops it.
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl MetricsServer {
    /// Where it listens (the real port when asked for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The scrape URL.
    pub fn url(&self) -> String {
        format!("http://{}{METRICS_PATH}", self.addr)
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `exporter` at `GET /metrics` on `listen`. Fails at once when the address is taken.
pub async fn serve(listen: SocketAddr, exporter: Arc<Exporter>) -> std::io::Result<MetricsServer> {
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(accept_loop(listener, exporter));
    tracing::info!(%addr, "Prometheus metrics served");
    Ok(MetricsServer { addr, task })
}

async fn accept_loop(listener: TcpListener, exporter: Arc<Exporter>) {
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        match listener.accept().await {
            Ok((stream, _)) => {
                let exporter = exporter.clone();
                tokio::spawn(async move {
                    let _ =
                        tokio::time::timeout(Duration::from_secs(10), answer(stream, &exporter))
                            .await;
                    drop(permit);
                });
            }
            Err(e) => {
                tracing::warn!("metrics server cannot accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Answers one request and closes the connection.
async fn answer(mut stream: TcpStream, exporter: &Exporter) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let head = tokio::time::timeout(HEAD_TIMEOUT, async {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut request = httparse::Request::new(&mut headers);
            match request.parse(&buf) {
                Ok(httparse::Status::Complete(_)) => {
                    let method = request.method.unwrap_or_default().to_owned();
                    let path = request.path.unwrap_or_default();
                    let path = path.split('?').next().unwrap_or_default().to_owned();
                    return Some((method, path));
                }
                Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD_BYTES => {}
                _ => return None,
            }
            let mut chunk = [0u8; 1024];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await
    .ok()
    .flatten();
    let (status, content_type, body) = match head {
        Some((method, path)) if path == METRICS_PATH && (method == "GET" || method == "HEAD") => {
            let body = if method == "GET" {
                exporter.encode()
            } else {
                String::new()
            };
            ("200 OK", CONTENT_TYPE, body)
        }
        Some((_, path)) if path == HEALTH_PATH => {
            let (ok, text) = exporter.health();
            (
                if ok {
                    "200 OK"
                } else {
                    "503 Service Unavailable"
                },
                "text/plain; charset=utf-8",
                text,
            )
        }
        Some((_, path)) if path == "/" => (
            "200 OK",
            "text/plain; charset=utf-8",
            format!("relaytop: Prometheus metrics are at {METRICS_PATH}\n"),
        ),
        Some(_) => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            format!("not found: metrics are at {METRICS_PATH}\n"),
        ),
        None => (
            "400 Bad Request",
            "text/plain; charset=utf-8",
            "bad request\n".to_owned(),
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::LatencyMetric;
    use crate::session::{Protocol, Tokens};

    fn info(id: u32, protocol: Protocol) -> SessionInfo {
        SessionInfo {
            id,
            name: format!("s{id}"),
            provider: "p".into(),
            model: "gpt-4.1".into(),
            protocol,
            url: String::new(),
            workload: "probe".into(),
        }
    }

    fn ev(session: u32, kind: EventKind) -> SessionEvent {
        SessionEvent {
            session,
            at_us: 0,
            kind,
        }
    }

    #[test]
    fn counters_names_and_labels() {
        let e = Exporter::new(&[info(0, Protocol::OpenaiSse)], Pricing::new());
        e.observe(&ev(
            0,
            EventKind::Connected {
                attempt: 1,
                handshake_us: 5,
            },
        ));
        e.observe(&ev(
            0,
            EventKind::Connected {
                attempt: 1,
                handshake_us: 5,
            },
        ));
        e.observe(&ev(
            0,
            EventKind::FirstToken {
                request: 1,
                ttft_us: 250_000,
            },
        ));
        e.observe(&ev(
            0,
            EventKind::Done(Box::new(Completed {
                request: 1,
                model: "gpt-4.1".into(),
                ttft_us: Some(250_000),
                answer_us: None,
                total_us: 400_000,
                tokens: Tokens {
                    input: 1_000_000,
                    output: 0,
                    cached_input: 0,
                    cache_write_input: 0,
                    reasoning_output: 0,
                    estimated: false,
                },
                reported_cost_usd: None,
                finish_reason: None,
                chunks: 1,
                bytes: 1,
                cut: None,
                text_tokens: None,
            })),
        ));
        e.observe(&ev(
            7,
            EventKind::Malformed {
                reason: "unknown session".into(),
            },
        ));
        let text = e.encode();
        let has = |line: &str| assert!(text.contains(line), "no `{line}` in\n{text}");
        has(
            r#"relaytop_session_info{provider="p",model="gpt-4.1",session="s0",protocol="openai-sse"} 1"#,
        );
        has(r#"relaytop_reconnects_total{provider="p",model="gpt-4.1",session="s0"} 1"#);
        has(r#"relaytop_ttft_seconds_count{provider="p",model="gpt-4.1",session="s0"} 1"#);
        has(r#"relaytop_cost_usd_total{provider="p",model="gpt-4.1",session="s0"} 2.0"#);
        has(
            r#"relaytop_tokens_total{provider="p",model="gpt-4.1",session="s0",direction="input"} 1000000"#,
        );
        has(
            r#"relaytop_session_state{provider="p",model="gpt-4.1",session="s0",state="connecting"} 1"#,
        );
        has("# TYPE relaytop_ttft_seconds histogram");
    }

    #[test]
    fn alert_states_are_a_gauge_by_alert_severity_and_scope() {
        let e = Exporter::new(&[info(0, Protocol::RelayV1)], Pricing::new());
        e.set_alert_state("legacy slow", "critical", "provider:legacy", 2);
        e.set_alert_state("errors", "warning", "all", 1);
        e.set_alert_state("errors", "warning", "all", 0);
        let text = e.encode();
        assert!(
            text.contains(
                "relaytop_alert_state{alert=\"legacy slow\",severity=\"critical\",scope=\"provider:legacy\"} 2"
            ),
            "{text}"
        );
        assert!(text.contains(
            "relaytop_alert_state{alert=\"errors\",severity=\"warning\",scope=\"all\"} 0"
        ));
    }

    #[test]
    fn the_grafana_dashboard_queries_metrics_that_exist() {
        let e = Exporter::new(&[info(0, Protocol::RelayV1)], Pricing::new());
        let done = |request: RequestId, cut: Option<&str>| {
            EventKind::Done(Box::new(Completed {
                request,
                model: "gpt-4.1".into(),
                ttft_us: Some(100),
                answer_us: None,
                total_us: 900,
                tokens: Tokens {
                    input: 3,
                    output: 4,
                    ..Tokens::default()
                },
                reported_cost_usd: None,
                finish_reason: Some("stop".into()),
                chunks: 2,
                bytes: 8,
                cut: cut.map(str::to_owned),
                text_tokens: Some(4),
            }))
        };
        for kind in [
            EventKind::State(SessionState::Connecting { attempt: 1 }),
            EventKind::Error {
                kind: ErrorKind::Auth,
                message: "upgrade answered 401".into(),
                retryable: false,
                retry_after_ms: None,
            },
            EventKind::State(SessionState::Open),
            EventKind::Pong { rtt_us: 900 },
            EventKind::RequestSent {
                request: 2,
                model: "gpt-4.1".into(),
                prompt_tokens_estimate: 3,
            },
            EventKind::Chunk {
                request: 2,
                text: "Hell".into(),
            },
            EventKind::Chunk {
                request: 2,
                text: "o!!!".into(),
            },
            done(2, None),
            done(3, Some("no finish_reason")),
            EventKind::FirstToken {
                request: 1,
                ttft_us: 1,
            },
            EventKind::Error {
                kind: ErrorKind::Network,
                message: "x".into(),
                retryable: true,
                retry_after_ms: None,
            },
            EventKind::RequestFailed {
                request: 1,
                kind: ErrorKind::Network,
                reason: "x".into(),
            },
            EventKind::RateLimitStatus(Box::new(RateLimits {
                requests_limit: Some(10),
                requests_remaining: Some(9),
                requests_reset_ms: None,
                tokens_limit: None,
                tokens_remaining: None,
                tokens_reset_ms: None,
            })),
            EventKind::Account(Box::new(crate::account::AccountReading::new(
                crate::account::AccountKind::NewApi,
                crate::account::parse::Balance {
                    currency: "USD".into(),
                    remaining: Some(3.0),
                    ..Default::default()
                },
                1.0,
                &crate::account::AccountConfig::default(),
            ))),
        ] {
            e.observe(&ev(0, kind));
        }
        let text = e.encode();
        let dashboard = include_str!("../../../docs/grafana-dashboard.json");
        let mut names: Vec<&str> = dashboard
            .match_indices("relaytop_")
            .map(|(at, _)| {
                let rest = &dashboard[at..];
                let end = rest
                    .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
                    .unwrap_or(rest.len());
                &rest[..end]
            })
            .collect();
        names.sort_unstable();
        names.dedup();
        assert!(names.len() >= 10, "{names:?}");
        for name in names {
            assert!(
                text.lines().any(|l| l.starts_with(name)),
                "the dashboard queries {name}, which is not exposed:\n{text}"
            );
        }
    }

    /// `histogram_quantile(q, sum by (le) (rate(NAME_bucket[..])))` as Prometheus computes it
    /// (over cumulative counts, which a rate over a whole run is proportional to): the bucket
    /// holding rank `q * total`, interpolated linearly between its bounds.
    fn histogram_quantile(text: &str, name: &str, q: f64) -> f64 {
        let mut buckets: std::collections::BTreeMap<u64, (f64, f64)> = Default::default();
        let prefix = format!("{name}_bucket{{");
        for line in text.lines().filter(|l| l.starts_with(&prefix)) {
            let le = line
                .split("le=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap();
            let count: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap()
            };
            let key = if bound.is_infinite() {
                u64::MAX
            } else {
                (bound * 1e9) as u64
            };
            buckets.entry(key).or_insert((bound, 0.0)).1 += count;
        }
        let all: Vec<(f64, f64)> = buckets.into_values().collect();
        let total = all.last().unwrap().1;
        let rank = q * total;
        let i = all.iter().position(|(_, c)| *c >= rank).unwrap();
        if all[i].0.is_infinite() {
            return all[i - 1].0;
        }
        let (lower, below) = if i == 0 { (0.0, 0.0) } else { all[i - 1] };
        let (upper, count) = all[i];
        lower + (upper - lower) * (rank - below) / (count - below)
    }

    #[test]
    fn promql_quantiles_agree_with_relaytops_own_within_five_percent() {
        use rand::SeedableRng;
        use rand_distr::{Distribution, LogNormal};
        let infos: Vec<SessionInfo> = (0..3).map(|i| info(i, Protocol::OpenaiSse)).collect();
        let e = Exporter::new(&infos, Pricing::new());
        let mut m = crate::metrics::Metrics::new(infos.clone(), Pricing::new());
        let mut rng = rand::rngs::SmallRng::seed_from_u64(16);
        // TTFTs as a relay at peak gives them: median 600 ms, a long tail.
        let ttft = LogNormal::new((0.6f64).ln(), 0.5).unwrap();
        let gap = LogNormal::new((0.025f64).ln(), 0.4).unwrap();
        let mut at = 0u64;
        for request in 1..=3000u64 {
            let session = (request % 3) as u32;
            let first = (ttft.sample(&mut rng) * 1e6) as u64;
            let mut events = vec![EventKind::RequestSent {
                request,
                model: "gpt-4.1".into(),
                prompt_tokens_estimate: 5,
            }];
            let start = at;
            at += first;
            let mut timed = vec![(start, events.remove(0))];
            timed.push((
                at,
                EventKind::FirstToken {
                    request,
                    ttft_us: first,
                },
            ));
            for _ in 0..20 {
                timed.push((
                    at,
                    EventKind::Chunk {
                        request,
                        text: " tok".into(),
                    },
                ));
                at += (gap.sample(&mut rng) * 1e6) as u64;
            }
            timed.push((
                at,
                EventKind::Done(Box::new(Completed {
                    request,
                    model: "gpt-4.1".into(),
                    ttft_us: Some(first),
                    answer_us: None,
                    total_us: at - start,
                    tokens: Tokens {
                        input: 5,
                        output: 20,
                        ..Tokens::default()
                    },
                    reported_cost_usd: None,
                    finish_reason: Some("stop".into()),
                    chunks: 20,
                    bytes: 80,
                    cut: None,
                    text_tokens: None,
                })),
            ));
            for (t, kind) in timed {
                let event = SessionEvent {
                    session,
                    at_us: t,
                    kind,
                };
                e.observe(&event);
                m.apply(&event);
            }
        }
        let text = e.encode();
        let own = m.totals();
        for (name, metric) in [
            ("relaytop_ttft_seconds", LatencyMetric::TimeToFirstToken),
            ("relaytop_response_seconds", LatencyMetric::ResponseTime),
            ("relaytop_tpot_seconds", LatencyMetric::TimePerOutputToken),
            ("relaytop_itl_seconds", LatencyMetric::InterTokenLatency),
            ("relaytop_stall_seconds", LatencyMetric::LongestStall),
        ] {
            let q = own.latency(metric, crate::metrics::Window::Run, at);
            for (quantile, ours) in [(0.5, q.p50), (0.9, q.p90), (0.99, q.p99)] {
                let promql = histogram_quantile(&text, name, quantile);
                let ours = ours as f64 / 1e6;
                let off = (promql - ours).abs() / ours;
                assert!(
                    off <= 0.05,
                    "{name} p{}: PromQL {promql:.4} s, relaytop {ours:.4} s ({:.1} % off)",
                    quantile * 100.0,
                    off * 100.0
                );
            }
        }
    }
}
