//! The first step, the URL: its scheme (which protocol) and where it points (`Target`).

use std::net::IpAddr;
use std::time::Instant;

use relaytop_core::protocol::openai_realtime::REALTIME_PATH;
use relaytop_core::protocol::relay_v1::STREAM_PATH;
use relaytop_core::session::Protocol;

use super::options::CheckOptions;
use super::report::Verdict;
use super::walk::Walk;

/// Where the URL points.
pub(super) struct Target {
    pub(super) protocol: Protocol,
    pub(super) url: String,
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) tls: bool,
}

pub(super) fn check_url(options: &CheckOptions, walk: &mut Walk) -> Option<Target> {
    let started = Instant::now();
    let raw = options.url.trim();
    let parsed = match url::Url::parse(raw) {
        Ok(parsed) => parsed,
        Err(e) => {
            walk.fail(
                "url",
                started,
                format!("`{raw}` is not a URL: {e}"),
                "write it whole, e.g. wss://relay.example/v1/stream, https://relay.example/v1 or wss://relay.example/v1/realtime".into(),
            );
            return None;
        }
    };
    let scheme = parsed.scheme().to_owned();
    let path = parsed.path().trim_end_matches('/').to_owned();
    let websocket = matches!(scheme.as_str(), "ws" | "wss");
    let http = matches!(scheme.as_str(), "http" | "https");
    if !websocket && !http {
        walk.fail(
            "url",
            started,
            format!("scheme `{scheme}` is not one relaytop speaks"),
            "use wss:// (relay-v1, openai-realtime) or https:// (openai-sse, anthropic-messages, openai-responses, gemini)".into(),
        );
        return None;
    }
    let looks_like = if path.ends_with(REALTIME_PATH) || path.ends_with("/realtime") {
        Some(Protocol::OpenaiRealtime)
    } else if path.ends_with(STREAM_PATH) {
        Some(Protocol::RelayV1)
    } else if http {
        relaytop_core::config::station::protocol_of(raw)
    } else {
        None
    };
    let protocol = options.protocol.or(looks_like).unwrap_or(if websocket {
        Protocol::RelayV1
    } else {
        Protocol::OpenaiSse
    });
    walk.protocol = Some(protocol);
    let wants_websocket = !protocol.is_http_stream();
    if wants_websocket != websocket {
        let fixed_scheme = match (wants_websocket, scheme.as_str()) {
            (true, "https") => "wss",
            (true, _) => "ws",
            (false, "wss") => "https",
            (false, _) => "http",
        };
        let mut fixed = format!("{fixed_scheme}{}", &raw[scheme.len()..]);
        match protocol {
            Protocol::RelayV1 if !path.ends_with(STREAM_PATH) => {
                fixed.push_str(&format!(" (relay/v1 streams at {STREAM_PATH})"));
            }
            Protocol::OpenaiRealtime if !path.ends_with("/realtime") => {
                fixed.push_str(&format!(" (the Realtime API is at {REALTIME_PATH})"));
            }
            _ => {}
        }
        let why = if wants_websocket {
            format!(
                "{} is a WebSocket protocol: `{scheme}://` cannot reach it (the classic mistake)",
                protocol.label()
            )
        } else {
            format!(
                "{} talks HTTP: `{scheme}://` is for WebSocket protocols (relay-v1, openai-realtime)",
                protocol.label()
            )
        };
        walk.fail("url", started, why, format!("use {fixed}"));
        return None;
    }
    let Some(host) = parsed.host_str().filter(|h| !h.is_empty()) else {
        walk.fail(
            "url",
            started,
            format!("`{raw}` has no host"),
            "write the relay's host name after the scheme".into(),
        );
        return None;
    };
    let tls = matches!(scheme.as_str(), "wss" | "https");
    let port = parsed.port().unwrap_or(if tls { 443 } else { 80 });
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let how = if options.protocol.is_some() {
        "as asked"
    } else if looks_like.is_some() {
        "from the path"
    } else {
        "from the scheme"
    };
    let mut detail = format!(
        "{} ({how}), host {host}, port {port}, {}",
        protocol.label(),
        if tls { "TLS" } else { "no TLS" }
    );
    let mut verdict = Verdict::Pass;
    let mut hint = None;
    if !tls && !is_loopback(&host) {
        verdict = Verdict::Warn;
        detail.push_str(": plain text to a remote host");
        hint = Some(format!(
            "relays serve {} on the public internet; keys sent in plain text can be read",
            if websocket { "wss://" } else { "https://" }
        ));
    }
    walk.record("url", Some(started), verdict, detail, hint);
    Some(Target {
        protocol,
        url: raw.to_owned(),
        host,
        port,
        tls,
    })
}

pub(super) fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}
