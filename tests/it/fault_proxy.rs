//! The fault-injection proxy of tests/support/proxy.rs, checked on its own against a loopback
//! echo server: every toxic does what it says, and toxics switch on open connections. Waits
//! are bounded; the only time assertions are lower bounds the toxics impose.

use crate::support;

use std::net::SocketAddr;
use std::time::Duration;

use support::proxy::{Latency, Proxy, Slicer, Timeout};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, timeout};

const LIMIT: Duration = Duration::from_secs(5);

/// An echo server on 127.0.0.1 port 0.
async fn echo() -> SocketAddr {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

async fn read_exactly(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    timeout(LIMIT, s.read_exact(&mut buf))
        .await
        .expect("in time")
        .expect("read");
    buf
}

#[tokio::test]
async fn bytes_pass_untouched_without_toxics() {
    let proxy = Proxy::start(echo().await).await;
    let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let (mut r, mut w) = s.split();
    let (_, got) = tokio::join!(w.write_all(&data), async {
        let mut got = vec![0u8; data.len()];
        timeout(LIMIT, r.read_exact(&mut got))
            .await
            .unwrap()
            .unwrap();
        got
    });
    assert_eq!(got, data);
    let stats = proxy.stats();
    assert_eq!(stats.accepted, 1);
    assert_eq!(stats.upstream_bytes, 100_000);
    assert_eq!(stats.downstream_bytes, 100_000);
}

#[tokio::test]
async fn latency_switched_on_an_open_connection_delays_each_way() {
    let proxy = Proxy::start(echo().await).await;
    let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
    s.write_all(b"a").await.unwrap();
    assert_eq!(read_exactly(&mut s, 1).await, b"a");
    proxy.set(|t| {
        t.downstream.latency = Some(Latency {
            base: Duration::from_millis(150),
            jitter: Duration::from_millis(50),
        })
    });
    let sent = Instant::now();
    s.write_all(b"b").await.unwrap();
    assert_eq!(read_exactly(&mut s, 1).await, b"b");
    assert!(
        sent.elapsed() >= Duration::from_millis(100),
        "{:?}",
        sent.elapsed()
    );
    proxy.clear();
    s.write_all(b"c").await.unwrap();
    assert_eq!(read_exactly(&mut s, 1).await, b"c");
}

#[tokio::test]
async fn bandwidth_paces_the_bytes() {
    let proxy = Proxy::start(echo().await).await;
    proxy.set(|t| t.downstream.bandwidth = Some(20_000));
    let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
    let started = Instant::now();
    s.write_all(&[7u8; 4000]).await.unwrap();
    assert_eq!(read_exactly(&mut s, 4000).await, vec![7u8; 4000]);
    // 4,000 bytes at 20,000 B/s: at least 150 ms (the first 20th of a second goes at once).
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn the_slicer_keeps_the_bytes_in_order() {
    let proxy = Proxy::start(echo().await).await;
    proxy.set(|t| {
        t.downstream.slicer = Some(Slicer {
            size: 1,
            delay: Duration::from_millis(1),
        })
    });
    let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
    s.write_all(b"hello, sliced world").await.unwrap();
    let mut got = Vec::new();
    let mut reads = 0;
    while got.len() < 19 {
        let mut buf = [0u8; 64];
        let n = timeout(LIMIT, s.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
        reads += 1;
    }
    assert_eq!(got, b"hello, sliced world");
    assert!(reads > 1, "arrived in pieces");
}

#[tokio::test]
async fn a_timeout_stalls_and_keeps_the_connection_open() {
    let proxy = Proxy::start(echo().await).await;
    let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
    proxy.set(|t| t.downstream.timeout = Some(Timeout::default()));
    s.write_all(b"held").await.unwrap();
    let mut buf = [0u8; 4];
    assert!(
        timeout(Duration::from_millis(300), s.read(&mut buf))
            .await
            .is_err(),
        "nothing comes back while stalled, and the connection is not closed"
    );
    proxy.clear();
    assert_eq!(read_exactly(&mut s, 4).await, b"held");

    proxy.set(|t| {
        t.downstream.timeout = Some(Timeout {
            close_after: Some(Duration::from_millis(100)),
        })
    });
    let n = timeout(LIMIT, s.read(&mut buf)).await.unwrap().unwrap();
    assert_eq!(n, 0, "closed after the timeout");
}

#[tokio::test]
async fn reset_peer_sends_an_rst() {
    let proxy = Proxy::start(echo().await).await;
    let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
    s.write_all(b"x").await.unwrap();
    read_exactly(&mut s, 1).await;
    proxy.set(|t| t.reset_peer = true);
    let mut buf = [0u8; 8];
    let err = timeout(LIMIT, s.read(&mut buf))
        .await
        .unwrap()
        .expect_err("a reset, not an end of stream");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
    assert_eq!(proxy.stats().reset, 1);
}

#[tokio::test]
async fn limit_data_cuts_after_n_bytes() {
    let proxy = Proxy::start(echo().await).await;
    let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
    proxy.set(|t| t.downstream.limit_data = Some(5));
    s.write_all(b"0123456789").await.unwrap();
    let mut got = Vec::new();
    timeout(LIMIT, s.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, b"01234");
}

#[tokio::test]
async fn slow_close_holds_the_fin_back() {
    let upstream = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let proxy = Proxy::start(upstream.local_addr().unwrap()).await;
    proxy.set(|t| t.downstream.slow_close = Some(Duration::from_millis(300)));
    let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
    let (mut server, _) = upstream.accept().await.unwrap();
    server.write_all(b"bye").await.unwrap();
    let closed = Instant::now();
    drop(server);
    assert_eq!(read_exactly(&mut s, 3).await, b"bye");
    let mut rest = Vec::new();
    timeout(LIMIT, s.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert!(rest.is_empty());
    assert!(
        closed.elapsed() >= Duration::from_millis(250),
        "{:?}",
        closed.elapsed()
    );
}

#[tokio::test]
async fn down_refuses_then_comes_back_on_the_same_port() {
    let proxy = Proxy::start(echo().await).await;
    let mut open = TcpStream::connect(proxy.addr()).await.unwrap();
    proxy.set(|t| t.down = true);
    let mut buf = [0u8; 1];
    let n = timeout(LIMIT, open.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "open connections are closed");
    // The listener goes away with the accept loop's next turn.
    let refused = timeout(LIMIT, async {
        loop {
            match TcpStream::connect(proxy.addr()).await {
                Err(e) => return e,
                Ok(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    proxy.set(|t| t.down = false);
    let mut s = timeout(LIMIT, async {
        loop {
            if let Ok(s) = TcpStream::connect(proxy.addr()).await {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    s.write_all(b"up").await.unwrap();
    assert_eq!(read_exactly(&mut s, 2).await, b"up");
}
