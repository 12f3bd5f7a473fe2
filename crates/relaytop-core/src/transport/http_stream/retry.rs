//! The reference client's retry schedule (spec/ADAPTERS.md), shared by every protocol on the
//! HTTP streaming half: up to two retries, honouring the server's `retry-after-ms` or
//! `Retry-After` up to 120 s, else 0.5 s × 2^n up to 8 s with jitter. Pure.

use std::time::Duration;

/// Retries of one request after a retryable status (the reference client's default).
pub const MAX_RETRIES: u32 = 2;
/// A server's `retry-after-ms`/`Retry-After` is honoured up to this long.
pub const MAX_SERVER_RETRY_AFTER: Duration = Duration::from_secs(120);

/// The wait before retry number `retries_done + 1` of a request: the server's word when it is
/// at most 120 s, else 0.5 s × 2^retries_done, at most 8 s, less up to 25 % jitter
/// (`jitter` in `[0, 1)`).
pub fn retry_delay(retries_done: u32, server_says: Option<Duration>, jitter: f64) -> Duration {
    if let Some(wait) = server_says
        && wait <= MAX_SERVER_RETRY_AFTER
    {
        return wait;
    }
    let seconds = (0.5 * 2f64.powi(retries_done.min(16) as i32)).min(8.0);
    let jitter = if jitter.is_finite() {
        jitter.clamp(0.0, 1.0)
    } else {
        0.0
    };
    Duration::from_secs_f64(seconds * (1.0 - 0.25 * jitter))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn retry_delays() {
        assert_eq!(retry_delay(0, None, 0.0), ms(500));
        assert_eq!(retry_delay(1, None, 0.0), ms(1000));
        assert_eq!(retry_delay(5, None, 0.0), ms(8000), "capped at 8 s");
        assert_eq!(retry_delay(0, None, 1.0), ms(375), "up to 25 % jitter");
        assert_eq!(retry_delay(0, Some(ms(1500)), 0.5), ms(1500));
        assert_eq!(
            retry_delay(0, Some(Duration::from_secs(600)), 0.0),
            ms(500),
            "over 120 s: the server's word is not taken"
        );
    }
}
