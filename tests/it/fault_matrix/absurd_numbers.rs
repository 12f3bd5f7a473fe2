//! Absurd numbers from a relay: retry-after values capped, not a panic.

use std::time::Duration;

use crate::support::rogue::{self, Act, Rogue};
use crate::support::{chat, probe, spec};
use relaytop_core::session::{ErrorKind, EventKind, SessionState};

use super::case::{Case, closed, quick, start};

/// The waits the session reported (`RateLimited`).
fn waits(case: &Case) -> Vec<u64> {
    case.s
        .seen
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::RateLimited { wait_ms, .. } => Some(*wait_ms),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn an_absurd_retry_after_at_the_upgrade_is_capped_not_a_panic() {
    let cap_ms = relaytop_core::session::connect::MAX_RETRY_AFTER.as_millis() as u64;
    for (name, value) in [
        ("Retry-After", "18446744073709551615"),
        ("Retry-After", "1e300"),
        ("retry-after-ms", "1e300"),
    ] {
        let relay = Rogue::start(vec![vec![Act::Respond(rogue::http_error(
            429,
            "Too Many Requests",
            &[(name, value.to_owned())],
            "slow down",
        ))]])
        .await;
        let mut c = start(spec(&relay.url(), chat(), quick(50)));
        c.expect("the wait", |k| matches!(k, EventKind::BackingOff { .. }))
            .await;
        assert_eq!(waits(&c), vec![cap_ms], "{name}: {value}:\n{}", c.story());
        assert_eq!(
            c.count(|k| matches!(k, EventKind::Error { kind: ErrorKind::RateLimited, retry_after_ms: Some(ms), .. } if *ms == cap_ms)),
            1
        );
        assert_eq!(c.finish().await, SessionState::Closed, "{name}: {value}");
        assert_eq!(relay.connections(), 1);
    }
}

#[tokio::test]
async fn an_absurd_retry_after_ms_in_an_error_frame_is_capped_not_a_panic() {
    let cap_ms = relaytop_core::session::connect::MAX_RETRY_AFTER.as_millis() as u64;
    let relay = Rogue::start(vec![vec![
        Act::Upgrade,
        Act::AwaitText("chat.completion"),
        Act::Send(rogue::text_frame(
            r#"{"type":"error","code":"rate_limited","details":"slow down","retry_after_ms":18446744073709551615}"#,
        )),
        Act::Hold,
    ]])
    .await;
    let mut c = start(spec(&relay.url(), probe(100), quick(50)));
    c.expect("the wait", |k| matches!(k, EventKind::RateLimited { .. }))
        .await;
    c.s.collect_for(Duration::from_millis(300)).await;
    assert_eq!(waits(&c), vec![cap_ms], "{}", c.story());
    assert_eq!(
        c.count(|k| matches!(k, EventKind::RequestSent { .. })),
        1,
        "no request while held back"
    );
    assert_eq!(c.count(closed), 0);
    assert_eq!(c.finish().await, SessionState::Closed);
}
