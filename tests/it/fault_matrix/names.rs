//! Names: resolved through the injected resolver, or not at all.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::support::{chat, fast_timing, sim, spec};
use relaytop_core::session::connect::{Resolver, ResolverHandle};
use relaytop_core::session::{ErrorKind, EventKind, SessionState};
use relaytop_sim::SimProfile;

use super::case::{backing_off, connected, error, error_messages, is_end, quick, start};

/// Resolves `relay.test` to `to` and fails every other name, counting the lookups; nothing
/// reaches a real resolver.
pub(super) fn test_resolver(to: std::net::SocketAddr, lookups: Arc<AtomicU64>) -> ResolverHandle {
    let resolver: Resolver = Arc::new(move |host, port| {
        lookups.fetch_add(1, Ordering::Relaxed);
        Box::pin(async move {
            if host == "relay.test" {
                Ok(vec![std::net::SocketAddr::new(to.ip(), port)])
            } else {
                Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("no such host: {host}"),
                ))
            }
        })
    });
    ResolverHandle(resolver)
}

#[tokio::test]
async fn a_name_that_does_not_resolve_is_named_retried_then_given_up() {
    let lookups = Arc::new(AtomicU64::new(0));
    let mut timing = quick(20);
    timing.backoff.max_attempts = 3;
    let mut s = spec("ws://relay.invalid/v1/stream", chat(), timing);
    s.resolver = Some(test_resolver(([127, 0, 0, 1], 9).into(), lookups.clone()));
    let mut c = start(s);
    c.expect("the stop", is_end).await;
    let message = "cannot resolve relay.invalid: no such host: relay.invalid";
    assert_eq!(
        error_messages(&c),
        vec![(ErrorKind::Network, message.to_owned()); 4]
    );
    assert_eq!(c.count(backing_off), 3);
    assert_eq!(lookups.load(Ordering::Relaxed), 4);
    assert_eq!(c.count(connected), 0);
    assert_eq!(
        c.finish().await,
        SessionState::Stopped {
            reason: format!("gave up after 3 retries: {message}")
        }
    );
}

#[tokio::test]
async fn a_resolved_name_connects_through_the_injected_resolver() {
    let server = sim(SimProfile::default()).await;
    let lookups = Arc::new(AtomicU64::new(0));
    let url = format!("ws://relay.test:{}/v1/stream", server.addr().port());
    let mut s = spec(&url, chat(), fast_timing());
    s.resolver = Some(test_resolver(server.addr(), lookups.clone()));
    let mut c = start(s);
    c.expect("a connection", connected).await;
    c.expect("a pong", |k| matches!(k, EventKind::Pong { .. }))
        .await;
    assert_eq!(lookups.load(Ordering::Relaxed), 1);
    assert_eq!(c.count(error), 0);
    assert_eq!(c.finish().await, SessionState::Closed);
    server.stop().await;
}
