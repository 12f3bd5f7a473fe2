//! Upgrades that go wrong in other ways: stalled, refused, not HTTP.

use std::time::Duration;

use crate::support::proxy::{Proxy, Timeout};
use crate::support::rogue::{Act, Rogue};
use crate::support::{chat, sim, spec};
use relaytop_core::session::{ErrorKind, SessionState};
use relaytop_sim::SimProfile;

use super::case::{backing_off, connected, error, error_messages, is_end, quick, start};

#[tokio::test]
async fn a_stalled_upgrade_times_out_and_is_retried() {
    let server = sim(SimProfile::default()).await;
    let proxy = Proxy::start(server.addr()).await;
    // TCP connects; the upgrade's answer never comes.
    proxy.set(|t| t.downstream.timeout = Some(Timeout::default()));
    let mut timing = quick(50);
    timing.handshake_timeout = Duration::from_millis(300);
    let mut c = start(spec(&proxy.ws_url("/v1/stream"), chat(), timing));
    c.expect("a timeout", error).await;
    proxy.clear();
    c.expect("a connection", connected).await;
    let errors = error_messages(&c);
    assert!(!errors.is_empty());
    for (kind, message) in &errors {
        assert_eq!(*kind, ErrorKind::Timeout);
        assert_eq!(message, "no answer to the upgrade within 300ms");
    }
    assert_eq!(c.count(backing_off), errors.len());
    assert_eq!(c.count(connected), 1);
    assert_eq!(c.finish().await, SessionState::Closed);
    server.stop().await;
}

#[tokio::test]
async fn a_server_that_does_not_upgrade_stops_the_session_with_a_hint() {
    for (head, status) in [("HTTP/1.1 200 OK", 200u16), ("HTTP/1.1 404 Not Found", 404)] {
        let relay = Rogue::start(vec![vec![Act::Respond(format!(
            "{head}\r\nContent-Type: text/html\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"
        ))]])
        .await;
        let mut c = start(spec(&relay.url(), chat(), quick(50)));
        c.expect("the stop", is_end).await;
        let errors = error_messages(&c);
        assert_eq!(errors.len(), 1, "{}", c.story());
        let (kind, message) = &errors[0];
        assert_eq!(*kind, ErrorKind::InvalidRequest);
        assert!(
            message.starts_with(&format!("upgrade answered {status}: hello"))
                && message.contains("not a WebSocket endpoint"),
            "{message}"
        );
        assert_eq!(c.count(backing_off), 0);
        assert!(matches!(c.finish().await, SessionState::Stopped { .. }));
        assert_eq!(relay.connections(), 1);
    }
}

#[tokio::test]
async fn a_server_that_does_not_speak_http_is_retried_then_given_up() {
    let relay = Rogue::start(vec![vec![Act::Respond("SSH-2.0-OpenSSH_9.6\r\n".into())]]).await;
    let mut timing = quick(20);
    timing.backoff.max_attempts = 2;
    let mut c = start(spec(&relay.url(), chat(), timing));
    c.expect("the stop", is_end).await;
    let errors = error_messages(&c);
    assert_eq!(errors.len(), 3, "{}", c.story());
    for (kind, message) in &errors {
        assert_eq!(*kind, ErrorKind::Network);
        assert!(message.starts_with("handshake failed:"), "{message}");
    }
    let state = c.finish().await;
    let SessionState::Stopped { reason } = state else {
        panic!("{state:?}")
    };
    assert!(
        reason.starts_with("gave up after 2 retries: handshake failed:"),
        "{reason}"
    );
    assert_eq!(relay.connections(), 3);
}
