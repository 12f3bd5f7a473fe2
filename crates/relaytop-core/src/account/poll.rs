//! Polling a provider's account: one tokio task per provider with an account, reading the
//! endpoints of its kind (or detecting the kind: `auto`) at `poll_s`, never taking a send slot
//! a probe would need, and reporting each reading as an `EventKind::Account` on behalf of the
//! provider's first session (to the event stream and its recording). The schedule and the
//! detection are pure state machines taking `now`; the task only does the I/O.

use std::time::Duration;

use reqwest::header::HeaderMap;

use super::parse::{self, Balance, ParseError};
use super::{AccountKind, AccountReading};
use crate::config::file::Provider;
use crate::session::tap::TapHandle;
use crate::session::{EventKind, EventSender, RunClock, SessionEvent, SessionId};

/// The longest wait after failures in a row.
const MAX_BACKOFF: Duration = Duration::from_secs(30 * 60);
/// How long to wait when the provider's send window has no room to spare.
const BUSY_RETRY: Duration = Duration::from_secs(5);
/// A reading takes a send slot only while more than this share of the window is free (it
/// leaves that share to the probes).
const SPARE_SHARE: f64 = 0.25;
/// One account request's limit.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// When the next reading is due: `poll_s` after a reading, doubling after failures (up to
/// half an hour), soon again when the send window was busy.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    interval: Duration,
    next: Duration,
    failures: u32,
}

impl Schedule {
    /// The first reading is due at once.
    pub fn new(poll_s: f64) -> Self {
        Self {
            interval: Duration::from_secs_f64(poll_s.max(0.1)),
            next: Duration::ZERO,
            failures: 0,
        }
    }

    pub fn due(&self, now: Duration) -> bool {
        now >= self.next
    }

    /// When the next reading is due.
    pub fn next(&self) -> Duration {
        self.next
    }

    pub fn on_reading(&mut self, now: Duration) {
        self.failures = 0;
        self.next = now + self.interval;
    }

    pub fn on_failure(&mut self, now: Duration) {
        self.failures = self.failures.saturating_add(1);
        let factor = 2u32.saturating_pow(self.failures.min(16));
        self.next = now
            + self
                .interval
                .saturating_mul(factor)
                .min(MAX_BACKOFF)
                .max(self.interval);
    }

    /// No send slot to spare now: look again shortly (not a failure).
    pub fn on_busy(&mut self, now: Duration) {
        self.next = now + BUSY_RETRY.min(self.interval);
    }
}

/// Which kind to read next. A configured kind is the only candidate; `auto` tries
/// `AccountKind::READABLE` in order, and once a station has said `X-Oneapi-Request-Id` only
/// the one-api/new-api kinds. The first kind that answers is kept.
#[derive(Clone, Debug, PartialEq)]
pub struct Detect {
    configured: AccountKind,
    found: Option<AccountKind>,
    tried: usize,
    oneapi: bool,
}

impl Detect {
    pub fn new(configured: AccountKind) -> Self {
        Self {
            configured,
            found: (configured != AccountKind::Auto).then_some(configured),
            tried: 0,
            oneapi: false,
        }
    }

    fn candidates(&self) -> Vec<AccountKind> {
        AccountKind::READABLE
            .into_iter()
            .filter(|k| {
                !self.oneapi || matches!(k, AccountKind::NewApi | AccountKind::OpenaiBilling)
            })
            .collect()
    }

    /// The kind to read now; `None` when `auto` has tried everything (start over later).
    pub fn current(&self) -> Option<AccountKind> {
        self.found
            .or_else(|| self.candidates().get(self.tried).copied())
    }

    /// The kind answered with an account: it is the station's.
    pub fn on_answer(&mut self, kind: AccountKind) {
        self.found = Some(kind);
    }

    /// The kind did not answer with an account; `oneapi`: the answer said
    /// `X-Oneapi-Request-Id`. True when there is another candidate to try at once.
    pub fn on_miss(&mut self, kind: AccountKind, oneapi: bool) -> bool {
        if self.configured != AccountKind::Auto {
            return false;
        }
        if self.found == Some(kind) {
            // A kind that answered before and fails now: the station is down, not another kind.
            return false;
        }
        if oneapi && !self.oneapi {
            self.oneapi = true;
            self.tried = self
                .candidates()
                .iter()
                .position(|k| *k == kind)
                .map_or(0, |i| i + 1);
            return self.tried < self.candidates().len();
        }
        self.tried += 1;
        if self.tried >= self.candidates().len() {
            self.tried = 0;
            return false;
        }
        true
    }
}

/// The station's root for account routes: the provider URL with `ws`/`wss` made `http`/
/// `https`, cut before its `/v1` (or `/v1beta`) segment, else its origin.
pub fn account_root(url: &str) -> Option<String> {
    let mut parsed = url::Url::parse(url).ok()?;
    let scheme = match parsed.scheme() {
        "ws" | "http" => "http",
        "wss" | "https" => "https",
        _ => return None,
    };
    parsed.set_scheme(scheme).ok()?;
    parsed.set_query(None);
    parsed.set_fragment(None);
    let path = parsed.path().to_owned();
    let prefix = path
        .split('/')
        .take_while(|segment| !matches!(*segment, "v1" | "v1beta"))
        .collect::<Vec<_>>()
        .join("/");
    let origin = parsed.origin().ascii_serialization();
    Some(format!("{origin}{}", prefix.trim_end_matches('/')))
}

/// An answer to one GET: its status, whether it said `X-Oneapi-Request-Id`, its body.
struct Answer {
    status: u16,
    oneapi: bool,
    body: Vec<u8>,
}

/// What went wrong reading one kind.
struct Miss {
    oneapi: bool,
    why: String,
}

struct Reader {
    client: reqwest::Client,
    root: String,
    key: Option<crate::config::secret::Secret>,
    quota_per_unit: f64,
}

impl Reader {
    async fn get(&self, path: &str) -> Result<Answer, String> {
        let mut request = self.client.get(format!("{}{path}", self.root));
        if let Some(key) = &self.key {
            let mut value =
                reqwest::header::HeaderValue::from_str(&format!("Bearer {}", key.expose()))
                    .map_err(|_| "the key is not a valid header value".to_owned())?;
            value.set_sensitive(true);
            request = request.header(reqwest::header::AUTHORIZATION, value);
        }
        let response = request.send().await.map_err(|e| {
            format!(
                "GET {path}: {}",
                if e.is_timeout() {
                    "timed out".to_owned()
                } else {
                    e.without_url().to_string()
                }
            )
        })?;
        let status = response.status().as_u16();
        let oneapi = says_oneapi(response.headers());
        let body = response
            .bytes()
            .await
            .map_err(|e| format!("GET {path}: {}", e.without_url()))?;
        Ok(Answer {
            status,
            oneapi,
            body: body.to_vec(),
        })
    }

    /// GETs the first of `paths` that is not a 404, and parses it.
    async fn first<T>(
        &self,
        paths: &[&str],
        parse: impl Fn(&[u8]) -> Result<T, ParseError>,
    ) -> Result<(T, bool), Miss> {
        let mut oneapi = false;
        let mut last = String::new();
        for path in paths {
            let answer = self.get(path).await.map_err(|why| Miss { oneapi, why })?;
            oneapi |= answer.oneapi;
            if answer.status == 404 {
                last = format!("GET {path} answered 404");
                continue;
            }
            if !(200..300).contains(&answer.status) {
                let words = crate::session::connect::error_body_message(&answer.body);
                return Err(Miss {
                    oneapi,
                    why: format!("GET {path} answered {}: {words}", answer.status),
                });
            }
            return parse(&answer.body).map(|v| (v, oneapi)).map_err(|e| Miss {
                oneapi,
                why: format!("GET {path}: {e}"),
            });
        }
        Err(Miss { oneapi, why: last })
    }

    /// Reads the account as `kind` serves it.
    async fn read(&self, kind: AccountKind) -> Result<(Balance, bool), Miss> {
        match kind {
            AccountKind::NewApi => {
                let per = self.quota_per_unit;
                self.first(&["/api/usage/token", "/api/usage/token/"], |b| {
                    parse::new_api_token(b, per)
                })
                .await
            }
            AccountKind::OpenaiBilling => {
                let (limit, oneapi) = self
                    .first(
                        &[
                            "/v1/dashboard/billing/subscription",
                            "/dashboard/billing/subscription",
                        ],
                        parse::openai_subscription,
                    )
                    .await?;
                let today = chrono::Utc::now().date_naive();
                let start = today - chrono::Days::new(99);
                let end = today + chrono::Days::new(1);
                let query = format!("?start_date={start}&end_date={end}");
                let v1 = format!("/v1/dashboard/billing/usage{query}");
                let bare = format!("/dashboard/billing/usage{query}");
                let (used, more) = self.first(&[&v1, &bare], parse::openai_usage_usd).await?;
                Ok((parse::openai_billing(limit, Some(used)), oneapi || more))
            }
            AccountKind::Openrouter => {
                let (key, oneapi) = self.first(&["/api/v1/key"], parse::openrouter_key).await?;
                if !key.unlimited {
                    return Ok((key, oneapi));
                }
                // A key without a limit spends the account's credits.
                match self
                    .first(&["/api/v1/credits"], parse::openrouter_credits)
                    .await
                {
                    Ok(credits) => Ok(credits),
                    Err(_) => Ok((key, oneapi)),
                }
            }
            AccountKind::Litellm => self.first(&["/key/info"], parse::litellm_key_info).await,
            AccountKind::Deepseek => {
                self.first(&["/user/balance"], parse::deepseek_balance)
                    .await
            }
            AccountKind::Auto | AccountKind::None => Err(Miss {
                oneapi: false,
                why: "no account kind".to_owned(),
            }),
        }
    }
}

/// Whether an answer came from one-api or new-api (`X-Oneapi-Request-Id`).
pub fn says_oneapi(headers: &HeaderMap) -> bool {
    headers.contains_key("x-oneapi-request-id")
}

/// The account pollers of a run; dropping it stops them.
#[derive(Debug, Default)]
pub struct Pollers {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Pollers {
    /// How many providers are polled.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Stops every poller now.
    pub fn stop(&mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
    }
}

impl Drop for Pollers {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Where a provider's readings go: the session they are reported for, and its tap.
#[derive(Clone, Debug)]
pub struct Target {
    pub session: SessionId,
    pub tap: Option<TapHandle>,
}

/// Starts a poller for every provider with an account and a session to report for.
pub fn spawn_all(
    providers: &[Provider],
    targets: impl Fn(&str) -> Option<Target>,
    clock: RunClock,
    events: &EventSender,
) -> Pollers {
    let mut tasks = Vec::new();
    for provider in providers {
        if provider.account.kind == AccountKind::None {
            continue;
        }
        let Some(target) = targets(&provider.name) else {
            continue;
        };
        let Some(root) = account_root(&provider.url) else {
            tracing::warn!(provider = %provider.name, "no account root for this URL");
            continue;
        };
        tasks.push(tokio::spawn(poll(
            provider.clone(),
            root,
            target,
            clock,
            events.clone(),
        )));
    }
    Pollers { tasks }
}

/// Reads the account once, detecting its kind as `detect` says (trying the next candidate
/// at once when one does not answer): the kind that answered and its balance, or the kind
/// last tried and why nothing answered.
async fn read_detecting(
    reader: &Reader,
    detect: &mut Detect,
) -> Result<(AccountKind, Balance), (AccountKind, String)> {
    // The most telling miss: a refusal (401, a body in the station's words) says more than
    // the 404 of a route the station does not serve.
    let mut telling: Option<(AccountKind, String)> = None;
    loop {
        let Some(kind) = detect.current() else {
            return Err((AccountKind::Auto, "no account API answered".to_owned()));
        };
        match reader.read(kind).await {
            Ok((balance, _)) => {
                detect.on_answer(kind);
                return Ok((kind, balance));
            }
            Err(miss) => {
                let more = detect.on_miss(kind, miss.oneapi);
                if telling.is_none() && !miss.why.contains("answered 404") {
                    telling = Some((kind, miss.why.clone()));
                }
                if !more {
                    return Err(telling.unwrap_or((kind, miss.why)));
                }
            }
        }
    }
}

fn reader(provider: &Provider, root: String) -> Result<Reader, String> {
    let client = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(REQUEST_TIMEOUT)
        .user_agent(concat!("relaytop/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("no HTTP client for the account: {e}"))?;
    Ok(Reader {
        client,
        root,
        key: provider.api_key.clone(),
        quota_per_unit: provider.account.quota_per_unit,
    })
}

/// The reading of `balance` (or of the failure) as the event carries it, scrubbed of the key.
fn reading_of(
    provider: &Provider,
    read: Result<(AccountKind, Balance), (AccountKind, String)>,
) -> AccountReading {
    let config = &provider.account;
    let mut reading = match read {
        Ok((kind, balance)) => {
            let per = super::usd_per_unit(&balance.currency, &provider.billing);
            AccountReading::new(kind, balance, per, config)
        }
        Err((kind, why)) => AccountReading::failed(kind, why, config),
    };
    if let (Some(error), Some(scrub)) = (
        &mut reading.error,
        provider
            .api_key
            .as_ref()
            .and_then(crate::session::event::Scrub::new),
    ) {
        *error = scrub.replace(error);
    }
    reading
}

/// One reading of `provider`'s account now, as the poller takes it (its kind detected when
/// `auto`): what `relaytop` tests and one-off checks use.
pub async fn read_once(provider: &Provider) -> AccountReading {
    let Some(root) = account_root(&provider.url) else {
        let why = format!("no account root for {}", provider.url);
        return reading_of(provider, Err((provider.account.kind, why)));
    };
    let read = match reader(provider, root) {
        Ok(reader) => read_detecting(&reader, &mut Detect::new(provider.account.kind)).await,
        Err(why) => Err((provider.account.kind, why)),
    };
    reading_of(provider, read)
}

/// One provider's poller, until aborted or the event stream closes.
async fn poll(
    provider: Provider,
    root: String,
    target: Target,
    clock: RunClock,
    events: EventSender,
) {
    let reader = match reader(&provider, root) {
        Ok(reader) => reader,
        Err(why) => {
            tracing::warn!(provider = %provider.name, "{why}");
            return;
        }
    };
    let mut schedule = Schedule::new(provider.account.poll_s);
    let mut detect = Detect::new(provider.account.kind);
    loop {
        tokio::time::sleep_until(clock.instant_at(schedule.next())).await;
        let now = clock.now();
        if !spare_send_slot(provider.limits.as_ref()) {
            schedule.on_busy(now);
            continue;
        }
        let read = read_detecting(&reader, &mut detect).await;
        match &read {
            Ok(_) => schedule.on_reading(clock.now()),
            Err(_) => schedule.on_failure(clock.now()),
        }
        let kind = EventKind::Account(Box::new(reading_of(&provider, read)));
        let at = clock.now();
        match events.try_send(SessionEvent::new(target.session, at, kind.clone())) {
            Ok(()) => {
                if let Some(tap) = &target.tap {
                    tap.0.event(at, &kind);
                }
            }
            Err(crate::session::stream::TrySendError::Closed) => return,
            // A reading lost to a full queue: the next one comes at `poll_s`.
            Err(_) => {}
        }
    }
}

/// Takes a send slot of the provider's window only while a good share of it is free, so a
/// reading never holds a probe back.
fn spare_send_slot(limits: Option<&crate::session::ratelimit::ProviderLimits>) -> bool {
    let Some(limits) = limits else {
        return true;
    };
    let view = limits.view();
    let spare = f64::from(view.requests_per_window) * SPARE_SHARE;
    if view.waiting > 0
        || f64::from(
            view.requests_per_window
                .saturating_sub(view.sends_in_window),
        ) <= spare.max(1.0)
    {
        return false;
    }
    limits.try_send().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn the_schedule_polls_at_the_interval_and_backs_off() {
        let mut s = Schedule::new(60.0);
        assert!(s.due(Duration::ZERO));
        s.on_reading(Duration::ZERO);
        assert!(!s.due(59 * S));
        assert!(s.due(60 * S));
        s.on_failure(60 * S);
        assert_eq!(s.next(), 180 * S);
        s.on_failure(180 * S);
        assert_eq!(s.next(), 420 * S);
        for _ in 0..20 {
            s.on_failure(420 * S);
        }
        assert_eq!(s.next(), 420 * S + MAX_BACKOFF);
        s.on_busy(1000 * S);
        assert_eq!(s.next(), 1005 * S);
        s.on_reading(1005 * S);
        assert_eq!(s.next(), 1065 * S);
    }

    #[test]
    fn auto_tries_each_kind_and_narrows_to_oneapi() {
        let mut d = Detect::new(AccountKind::Auto);
        assert_eq!(d.current(), Some(AccountKind::NewApi));
        // The station is one-api: its header narrows the candidates.
        assert!(d.on_miss(AccountKind::NewApi, true));
        assert_eq!(d.current(), Some(AccountKind::OpenaiBilling));
        d.on_answer(AccountKind::OpenaiBilling);
        assert!(!d.on_miss(AccountKind::OpenaiBilling, true));
        assert_eq!(d.current(), Some(AccountKind::OpenaiBilling));

        let mut d = Detect::new(AccountKind::Auto);
        let mut seen = Vec::new();
        while let Some(kind) = d.current() {
            seen.push(kind);
            if !d.on_miss(kind, false) {
                break;
            }
        }
        assert_eq!(seen, AccountKind::READABLE.to_vec());
        let mut fixed = Detect::new(AccountKind::Litellm);
        assert!(!fixed.on_miss(AccountKind::Litellm, true));
        assert_eq!(fixed.current(), Some(AccountKind::Litellm));
    }

    #[test]
    fn a_reading_takes_a_send_slot_only_while_a_quarter_of_the_window_is_free() {
        use crate::session::ratelimit::ProviderLimits;
        assert!(spare_send_slot(None));
        let limits = ProviderLimits::new("p", 8, Duration::from_secs(60), 4);
        // 8 a minute: a reading may take slots while at least 2 stay free.
        for _ in 0..5 {
            assert!(limits.try_send().is_ok());
        }
        assert!(
            spare_send_slot(Some(&limits)),
            "3 free: one for the reading"
        );
        assert!(
            !spare_send_slot(Some(&limits)),
            "2 free: left to the probes"
        );
        assert_eq!(limits.view().sends_in_window, 6);
        let waiting = ProviderLimits::new("q", 100, Duration::from_secs(60), 4);
        waiting.set_waiting(true);
        assert!(!spare_send_slot(Some(&waiting)), "a probe waits for a slot");
    }

    #[test]
    fn a_reading_never_holds_the_key() {
        let key = "sk-SCRUBTHISaccountKEY0123456789";
        let provider = Provider {
            name: "station".into(),
            url: "http://127.0.0.1:9/v1".into(),
            protocol: Default::default(),
            auth: Default::default(),
            api_key: Some(crate::config::secret::Secret::new(key)),
            api_key_env: Some("STATION_KEY".into()),
            model: "gpt-4o-mini".into(),
            simulate: None,
            billing: Default::default(),
            requests_per_minute: 60,
            max_connections: 10,
            limits: None,
            account: super::super::AccountConfig::default(),
        };
        let echoed = format!("GET /api/usage/token answered 401: invalid token {key}");
        let reading = reading_of(&provider, Err((AccountKind::NewApi, echoed)));
        let error = reading.error.expect("an error");
        assert!(!error.contains(key), "{error}");
        assert!(error.contains("[REDACTED]"), "{error}");
    }

    #[test]
    fn the_account_root_drops_the_api_path() {
        assert_eq!(
            account_root("ws://127.0.0.1:9/v1/stream").unwrap(),
            "http://127.0.0.1:9"
        );
        assert_eq!(
            account_root("https://relay.example/v1").unwrap(),
            "https://relay.example"
        );
        assert_eq!(
            account_root("https://proxy.example/openai/v1?x=1").unwrap(),
            "https://proxy.example/openai"
        );
        assert_eq!(
            account_root("http://127.0.0.1:9").unwrap(),
            "http://127.0.0.1:9"
        );
        assert_eq!(
            account_root("wss://h.example/v1beta/models").unwrap(),
            "https://h.example"
        );
        assert!(account_root("not a url").is_none());
    }
}
