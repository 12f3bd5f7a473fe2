//! Rate limits a relay imposes (spec/PROTOCOL.md): a sliding one-minute window of sends, a cap
//! on concurrent connections, and the 429 backoff schedule.
//!
//! `SlidingWindow` and `RateLimitBackoff` are pure state machines that take `now`;
//! `ProviderLimits` is the handle every session of one provider shares (the relay limits per
//! key, not per connection), with its own monotonic clock, so that sessions, the canary driver
//! and the dashboard see one window, one connection count and one count of waiting requests.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::session::ErrorKind;

/// Sends a relay allows per minute unless the configuration says otherwise.
pub const DEFAULT_REQUESTS_PER_MINUTE: u32 = 60;
/// Concurrent connections a relay allows unless the configuration says otherwise.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 10;
/// Retries after a 429 (or a `rate_limited` error) before giving up.
pub const RATE_LIMIT_RETRIES: u32 = 5;
/// The first wait after a 429 without `Retry-After`; each further one doubles (1, 2, 4, 8, 16 s).
pub const RATE_LIMIT_BASE: Duration = Duration::from_secs(1);

/// A sliding window of sends: at most `limit` in any `window` (one minute for a relay).
#[derive(Clone, Debug)]
pub struct SlidingWindow {
    limit: u32,
    window: Duration,
    /// Times of the sends still inside the window, oldest first.
    sends: VecDeque<Duration>,
}

impl SlidingWindow {
    /// `limit` sends in any `window`; a limit of 0 is taken as 1.
    pub fn new(limit: u32, window: Duration) -> Self {
        let limit = limit.max(1);
        Self {
            limit,
            window,
            sends: VecDeque::with_capacity(limit.min(4096) as usize),
        }
    }

    pub fn limit(&self) -> u32 {
        self.limit
    }

    pub fn window(&self) -> Duration {
        self.window
    }

    fn expire(&mut self, now: Duration) {
        while let Some(&oldest) = self.sends.front() {
            if now.saturating_sub(oldest) >= self.window {
                self.sends.pop_front();
            } else {
                break;
            }
        }
    }

    /// Takes a slot at `now`, or says when the next one frees (`Err(at)`).
    pub fn try_acquire(&mut self, now: Duration) -> Result<(), Duration> {
        self.expire(now);
        if (self.sends.len() as u64) < u64::from(self.limit) {
            // Times never go backwards in the window, even if a caller's clock is late.
            let at = self.sends.back().map_or(now, |&last| last.max(now));
            self.sends.push_back(at);
            Ok(())
        } else {
            Err(self.free_at())
        }
    }

    /// When a slot frees: `None` when one is free at `now`.
    pub fn next_slot(&mut self, now: Duration) -> Option<Duration> {
        self.expire(now);
        ((self.sends.len() as u64) >= u64::from(self.limit)).then(|| self.free_at())
    }

    /// Sends inside the window ending at `now`.
    pub fn in_window(&mut self, now: Duration) -> u32 {
        self.expire(now);
        u32::try_from(self.sends.len()).unwrap_or(u32::MAX)
    }

    fn free_at(&self) -> Duration {
        self.sends
            .front()
            .map_or(Duration::ZERO, |&oldest| oldest + self.window)
    }
}

/// What to do after a 429 or a `rate_limited` error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateLimitRetry {
    /// Wait `delay` before retry number `retry` (counting from 1).
    After { retry: u32, delay: Duration },
    /// `retries` retries were rate limited too: give up.
    GiveUp { retries: u32 },
}

/// The 429 schedule of spec/PROTOCOL.md: 1, 2, 4, 8, 16 s, or the relay's `Retry-After`
/// (`retry_after_ms`) when it gives one, up to 5 retries; any success resets it.
#[derive(Clone, Debug)]
pub struct RateLimitBackoff {
    base: Duration,
    max_retries: u32,
    /// Rate-limited answers in a row, minus the first (the retries made so far).
    retries: u32,
    /// Whether the last answer was rate limited.
    limited: bool,
}

impl Default for RateLimitBackoff {
    fn default() -> Self {
        Self::new(RATE_LIMIT_BASE, RATE_LIMIT_RETRIES)
    }
}

impl RateLimitBackoff {
    pub fn new(base: Duration, max_retries: u32) -> Self {
        Self {
            base,
            max_retries,
            retries: 0,
            limited: false,
        }
    }

    /// Retries made since the last success.
    pub fn retries(&self) -> u32 {
        self.retries
    }

    pub fn max_retries(&self) -> u32 {
        self.max_retries
    }

    /// The schedule's wait before retry `retry` (from 1): base × 2^(retry-1).
    pub fn schedule(&self, retry: u32) -> Duration {
        let exponent = retry.saturating_sub(1).min(20);
        self.base.saturating_mul(1 << exponent)
    }

    /// The relay said "rate limited", with `retry_after` when it said how long to wait.
    pub fn on_rate_limited(&mut self, retry_after: Option<Duration>) -> RateLimitRetry {
        if self.limited && self.retries >= self.max_retries {
            let retries = self.retries;
            self.reset();
            return RateLimitRetry::GiveUp { retries };
        }
        self.limited = true;
        self.retries += 1;
        let delay = retry_after.unwrap_or_else(|| self.schedule(self.retries));
        RateLimitRetry::After {
            retry: self.retries,
            delay,
        }
    }

    /// A request (or a connection) went through: the count starts again.
    pub fn on_success(&mut self) {
        self.reset();
    }

    fn reset(&mut self) {
        self.retries = 0;
        self.limited = false;
    }
}

/// One count of a waiting counter, given back when dropped (however the wait ends).
struct Waiting<'a>(&'a AtomicU64);

impl<'a> Waiting<'a> {
    fn start(counter: &'a AtomicU64) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Self(counter)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }
}

/// The relay (or the server) asked the client to slow down: a `rate_limited` or `overloaded`
/// error. A decoder reads it from the frames and returns it; the session decides the wait
/// (its `RateLimitBackoff` for a rate limit) and reports `RateLimited` itself, once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlowDown {
    /// `RateLimited` or `Overloaded`.
    pub kind: ErrorKind,
    /// How long the relay said to wait (`retry_after_ms`), if it said.
    pub retry_after: Option<Duration>,
    /// The error's message: the cause of the wait.
    pub cause: String,
}

impl SlowDown {
    /// The relay's word, else one second (`RATE_LIMIT_BASE`).
    pub fn wait(&self) -> Duration {
        self.retry_after.unwrap_or(RATE_LIMIT_BASE)
    }
}

/// What a provider's limits look like now, for the dashboard and the canary view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitsView {
    pub provider: String,
    /// Sends allowed per window.
    pub requests_per_window: u32,
    /// The window (one minute, or one minute of canary time under `--time-scale`).
    pub window: Duration,
    /// Sends inside the window now.
    pub sends_in_window: u32,
    /// Time until the next slot frees; zero when one is free.
    pub next_slot_in: Duration,
    /// Requests waiting for a slot (sessions held back by the window).
    pub waiting: u64,
    pub connections_open: u32,
    pub max_connections: u32,
    /// Sessions waiting for a connection slot.
    pub waiting_for_connection: u64,
}

struct LimitsInner {
    provider: String,
    origin: Instant,
    window: Mutex<SlidingWindow>,
    connections: Arc<Semaphore>,
    max_connections: u32,
    waiting: AtomicU64,
    waiting_for_connection: AtomicU64,
}

/// The limits one provider's sessions share: clone it into each of them.
#[derive(Clone)]
pub struct ProviderLimits(Arc<LimitsInner>);

impl std::fmt::Debug for ProviderLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderLimits")
            .field("provider", &self.0.provider)
            .field("max_connections", &self.0.max_connections)
            .finish_non_exhaustive()
    }
}

impl ProviderLimits {
    /// `requests` sends in any `window`, and at most `max_connections` open at once.
    pub fn new(
        provider: impl Into<String>,
        requests: u32,
        window: Duration,
        max_connections: u32,
    ) -> Self {
        let max_connections = max_connections.clamp(1, Semaphore::MAX_PERMITS as u32);
        Self(Arc::new(LimitsInner {
            provider: provider.into(),
            origin: Instant::now(),
            window: Mutex::new(SlidingWindow::new(requests, window)),
            connections: Arc::new(Semaphore::new(max_connections as usize)),
            max_connections,
            waiting: AtomicU64::new(0),
            waiting_for_connection: AtomicU64::new(0),
        }))
    }

    pub fn provider(&self) -> &str {
        &self.0.provider
    }

    fn now(&self) -> Duration {
        self.0.origin.elapsed()
    }

    fn window(&self) -> std::sync::MutexGuard<'_, SlidingWindow> {
        // The window holds no invariant a panicking holder could break half-way.
        self.0.window.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a send slot now, or says how long until the next one (`Err(wait)`).
    pub fn try_send(&self) -> Result<(), Duration> {
        let now = self.now();
        self.window()
            .try_acquire(now)
            .map_err(|at| at.saturating_sub(now))
    }

    /// `try_send`, unless another session is at the window this very moment (`None`): a
    /// session's worker never waits for the lock, since a holder the OS has paused would
    /// hold up every task on that worker (`relaytop bench accuracy`: docs/PERFORMANCE.md).
    pub fn try_send_now(&self) -> Option<Result<(), Duration>> {
        let now = self.now();
        let mut window = match self.0.window.try_lock() {
            Ok(window) => window,
            Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return None,
        };
        Some(window.try_acquire(now).map_err(|at| at.saturating_sub(now)))
    }

    /// How long until a send slot frees; zero when one is free now.
    pub fn next_slot_in(&self) -> Duration {
        let now = self.now();
        self.window()
            .next_slot(now)
            .map_or(Duration::ZERO, |at| at.saturating_sub(now))
    }

    /// A request started (`true`) or stopped (`false`) waiting for a send slot.
    pub fn set_waiting(&self, waiting: bool) {
        if waiting {
            self.0.waiting.fetch_add(1, Ordering::Relaxed);
        } else {
            let _ = self
                .0
                .waiting
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        }
    }

    /// A connection slot, if one is free now.
    pub fn try_connection(&self) -> Option<OwnedSemaphorePermit> {
        self.0.connections.clone().try_acquire_owned().ok()
    }

    /// Waits for a connection slot (counted as waiting meanwhile, also when the wait is
    /// dropped half-way: a session closed while it waits is no longer counted).
    pub async fn connection(&self) -> Option<OwnedSemaphorePermit> {
        let _waiting = Waiting::start(&self.0.waiting_for_connection);
        self.0.connections.clone().acquire_owned().await.ok()
    }

    pub fn max_connections(&self) -> u32 {
        self.0.max_connections
    }

    /// The limits as they stand now.
    pub fn view(&self) -> LimitsView {
        let now = self.now();
        let (limit, window, in_window, next) = {
            let mut w = self.window();
            let next = w.next_slot(now);
            (w.limit(), w.window(), w.in_window(now), next)
        };
        let available = u32::try_from(self.0.connections.available_permits()).unwrap_or(0);
        LimitsView {
            provider: self.0.provider.clone(),
            requests_per_window: limit,
            window,
            sends_in_window: in_window,
            next_slot_in: next.map_or(Duration::ZERO, |at| at.saturating_sub(now)),
            waiting: self.0.waiting.load(Ordering::Relaxed),
            connections_open: self.0.max_connections.saturating_sub(available),
            max_connections: self.0.max_connections,
            waiting_for_connection: self.0.waiting_for_connection.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    #[test]
    fn sixty_a_minute_then_wait_for_the_oldest() {
        let mut w = SlidingWindow::new(60, s(60));
        for i in 0..60 {
            assert_eq!(w.try_acquire(Duration::from_millis(i * 100)), Ok(()));
        }
        assert_eq!(
            w.try_acquire(s(10)),
            Err(s(60)),
            "the first send frees at 60 s"
        );
        assert_eq!(w.next_slot(s(59)), Some(s(60)));
        assert_eq!(w.next_slot(s(60)), None);
        assert_eq!(w.try_acquire(s(60)), Ok(()));
        assert_eq!(w.in_window(s(60)), 60);
        assert_eq!(w.in_window(s(200)), 0);
    }

    #[test]
    fn backoff_doubles_from_one_second_and_gives_up_after_five_retries() {
        let mut b = RateLimitBackoff::default();
        let delays: Vec<RateLimitRetry> = (0..6).map(|_| b.on_rate_limited(None)).collect();
        assert_eq!(
            delays,
            [
                RateLimitRetry::After {
                    retry: 1,
                    delay: s(1)
                },
                RateLimitRetry::After {
                    retry: 2,
                    delay: s(2)
                },
                RateLimitRetry::After {
                    retry: 3,
                    delay: s(4)
                },
                RateLimitRetry::After {
                    retry: 4,
                    delay: s(8)
                },
                RateLimitRetry::After {
                    retry: 5,
                    delay: s(16)
                },
                RateLimitRetry::GiveUp { retries: 5 },
            ]
        );
        assert_eq!(b.retries(), 0, "giving up starts the count again");
    }

    #[test]
    fn retry_after_wins_and_success_resets() {
        let mut b = RateLimitBackoff::default();
        assert_eq!(
            b.on_rate_limited(Some(Duration::from_millis(250))),
            RateLimitRetry::After {
                retry: 1,
                delay: Duration::from_millis(250)
            }
        );
        assert_eq!(
            b.on_rate_limited(Some(s(30))),
            RateLimitRetry::After {
                retry: 2,
                delay: s(30)
            }
        );
        b.on_success();
        assert_eq!(
            b.on_rate_limited(None),
            RateLimitRetry::After {
                retry: 1,
                delay: s(1)
            }
        );
    }

    #[tokio::test]
    async fn the_shared_handle_counts_sends_connections_and_waiters() {
        let limits = ProviderLimits::new("legacy", 2, s(60), 1);
        assert_eq!(limits.try_send(), Ok(()));
        assert_eq!(limits.try_send_now(), Some(Ok(())));
        {
            // While another holds the window, nobody waits for it.
            let _held = limits.window();
            assert_eq!(limits.try_send_now(), None);
        }
        let wait = limits.try_send().unwrap_err();
        assert!(wait > s(59) && wait <= s(60), "{wait:?}");
        assert!(limits.next_slot_in() > s(59));
        limits.set_waiting(true);
        let permit = limits.try_connection();
        assert!(permit.is_some());
        assert!(limits.try_connection().is_none(), "one connection at most");
        let view = limits.view();
        assert_eq!(view.sends_in_window, 2);
        assert_eq!(view.waiting, 1);
        assert_eq!(view.connections_open, 1);
        assert!(view.next_slot_in > s(59));
        drop(permit);
        limits.set_waiting(false);
        limits.set_waiting(false);
        let view = limits.view();
        assert_eq!((view.waiting, view.connections_open), (0, 0));
    }

    #[tokio::test]
    async fn a_wait_for_a_connection_dropped_half_way_is_no_longer_counted() {
        use std::future::Future;
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let limits = ProviderLimits::new("legacy", 60, s(60), 1);
        let permit = limits.try_connection().expect("the one slot");
        let mut waiting = Box::pin(limits.connection());
        assert!(waiting.as_mut().poll(&mut cx).is_pending());
        assert_eq!(limits.view().waiting_for_connection, 1);
        // The session is closed while it waits: its wait is dropped.
        drop(waiting);
        assert_eq!(limits.view().waiting_for_connection, 0);
        // A wait that ends with a slot is counted down too.
        let mut waiting = Box::pin(limits.connection());
        assert!(waiting.as_mut().poll(&mut cx).is_pending());
        drop(permit);
        let slot = waiting.await;
        assert!(slot.is_some());
        assert_eq!(limits.view().waiting_for_connection, 0);
    }

    proptest! {
        /// Whatever the pattern of attempts, no 60 s window ever holds more than 60 sends.
        #[test]
        fn never_more_than_sixty_sends_in_any_sixty_seconds(
            gaps_ms in proptest::collection::vec(0u64..3_000, 1..600),
            limit in 1u32..80,
        ) {
            let window = s(60);
            let mut w = SlidingWindow::new(limit, window);
            let mut now = Duration::ZERO;
            let mut sent: Vec<Duration> = Vec::new();
            for gap in gaps_ms {
                now += Duration::from_millis(gap);
                match w.try_acquire(now) {
                    Ok(()) => sent.push(now),
                    Err(at) => prop_assert!(at > now, "a wait ends in the future"),
                }
            }
            // Every window [t, t + 60 s) starting at a send holds at most `limit` sends.
            for (i, &start) in sent.iter().enumerate() {
                let inside = sent[i..].iter().take_while(|&&t| t < start + window).count();
                prop_assert!(inside as u32 <= limit, "{inside} sends within 60 s of {start:?}");
            }
        }

        /// Whenever a send is refused, the window really is full, and the slot it names is free.
        #[test]
        fn a_refusal_names_the_first_free_slot(
            gaps_ms in proptest::collection::vec(0u64..2_000, 1..300),
        ) {
            let mut w = SlidingWindow::new(60, s(60));
            let mut now = Duration::ZERO;
            for gap in gaps_ms {
                now += Duration::from_millis(gap);
                if let Err(at) = w.try_acquire(now) {
                    prop_assert_eq!(w.in_window(now), 60);
                    let mut probe = w.clone();
                    prop_assert!(probe.try_acquire(at).is_ok());
                }
            }
        }
    }
}
