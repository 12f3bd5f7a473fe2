//! A relay station's addresses: the one base URL a station serves every format on, each
//! protocol's URL derived from it (`url_for`), and the protocol a URL names by its path
//! (`protocol_of`), so that `relaytop URL`, the environment's `OPENAI_BASE_URL` and friends,
//! and sessions that speak another format than their provider all find the right endpoint.
//! Pure string work: no I/O.

use crate::session::Protocol;

/// Endpoint tails a user may paste with the base, longest first; stripping them leaves the
/// station's root.
const ENDPOINT_TAILS: [&str; 8] = [
    "/v1/chat/completions",
    "/chat/completions",
    "/v1/messages",
    "/v1/responses",
    "/v1/realtime",
    "/v1/stream",
    "/v1beta",
    "/v1",
];

/// The station's root: `https://relay.example` from `https://relay.example/v1`,
/// `…/v1/chat/completions`, `…/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse`
/// and the like (a query is dropped; a path prefix such as `/openai` before them is kept).
pub fn station_root(url: &str) -> String {
    let url = url.trim();
    let without_query = url.split(['?', '#']).next().unwrap_or_default();
    let mut root = without_query.trim_end_matches('/');
    if let Some(at) = root.find("/v1beta/") {
        root = &root[..at];
    }
    for tail in ENDPOINT_TAILS {
        if let Some(stripped) = root.strip_suffix(tail) {
            root = stripped;
            break;
        }
    }
    root.trim_end_matches('/').to_owned()
}

/// `protocol`'s URL at the station whose base (or any endpoint) is `url`: WebSocket
/// protocols get `ws`/`wss`, HTTP ones `http`/`https`; chat, Messages and Responses the
/// `/v1` base their codecs add their path to, Gemini the root, relay/v1 and Realtime their
/// endpoints.
pub fn url_for(url: &str, protocol: Protocol) -> String {
    let root = station_root(url);
    let (scheme, rest) = root.split_once("://").unwrap_or(("https", root.as_str()));
    let secure = matches!(scheme, "https" | "wss");
    let websocket = !protocol.is_http_stream();
    let scheme = match (websocket, secure) {
        (true, true) => "wss",
        (true, false) => "ws",
        (false, true) => "https",
        (false, false) => "http",
    };
    let path = match protocol {
        Protocol::RelayV1 => "/v1/stream",
        Protocol::OpenaiRealtime => "/v1/realtime",
        Protocol::OpenaiSse | Protocol::AnthropicMessages | Protocol::OpenaiResponses => "/v1",
        Protocol::Gemini => "",
    };
    format!("{scheme}://{rest}{path}")
}

/// The protocol a URL names by its scheme and path, if it names one: `…/chat/completions`,
/// `…/v1/messages`, `…/v1/responses`, `…/v1beta/…`, `ws…/v1/realtime`, `ws…/v1/stream`.
/// A bare base (`https://relay.example/v1`) names none: ask the relay.
pub fn protocol_of(url: &str) -> Option<Protocol> {
    let url = url.trim();
    let websocket = url.starts_with("ws://") || url.starts_with("wss://");
    let path = url.split(['?', '#']).next().unwrap_or_default();
    let path = path.trim_end_matches('/');
    if websocket {
        if path.ends_with("/realtime") {
            return Some(Protocol::OpenaiRealtime);
        }
        return Some(Protocol::RelayV1);
    }
    if path.ends_with("/chat/completions") {
        Some(Protocol::OpenaiSse)
    } else if path.ends_with("/messages") {
        Some(Protocol::AnthropicMessages)
    } else if path.ends_with("/responses") {
        Some(Protocol::OpenaiResponses)
    } else if path.contains("/v1beta") || path.contains(":streamGenerateContent") {
        Some(Protocol::Gemini)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_from_every_endpoint() {
        for url in [
            "https://relay.example",
            "https://relay.example/",
            "https://relay.example/v1",
            "https://relay.example/v1/chat/completions",
            "https://relay.example/v1/messages",
            "https://relay.example/v1/responses",
            "https://relay.example/v1beta",
            "https://relay.example/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
            " https://relay.example/v1/ ",
        ] {
            assert_eq!(station_root(url), "https://relay.example", "{url}");
        }
        assert_eq!(
            station_root("https://gw.example/openai/v1"),
            "https://gw.example/openai"
        );
    }

    #[test]
    fn each_protocol_at_one_station() {
        let base = "https://relay.example/v1";
        assert_eq!(
            url_for(base, Protocol::OpenaiSse),
            "https://relay.example/v1"
        );
        assert_eq!(
            url_for(base, Protocol::AnthropicMessages),
            "https://relay.example/v1"
        );
        assert_eq!(url_for(base, Protocol::Gemini), "https://relay.example");
        assert_eq!(
            url_for(base, Protocol::OpenaiRealtime),
            "wss://relay.example/v1/realtime"
        );
        assert_eq!(
            url_for("http://127.0.0.1:8765/v1", Protocol::RelayV1),
            "ws://127.0.0.1:8765/v1/stream"
        );
        assert_eq!(
            url_for("ws://127.0.0.1:8765/v1/stream", Protocol::OpenaiResponses),
            "http://127.0.0.1:8765/v1"
        );
    }

    #[test]
    fn protocols_named_by_paths() {
        let cases = [
            (
                "https://r.example/v1/chat/completions",
                Some(Protocol::OpenaiSse),
            ),
            (
                "https://r.example/v1/messages",
                Some(Protocol::AnthropicMessages),
            ),
            (
                "https://r.example/v1/responses/",
                Some(Protocol::OpenaiResponses),
            ),
            ("https://r.example/v1beta", Some(Protocol::Gemini)),
            (
                "https://r.example/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse",
                Some(Protocol::Gemini),
            ),
            (
                "wss://r.example/v1/realtime?model=gpt-realtime",
                Some(Protocol::OpenaiRealtime),
            ),
            ("wss://r.example/v1/stream", Some(Protocol::RelayV1)),
            ("https://r.example/v1", None),
            ("https://r.example", None),
        ];
        for (url, want) in cases {
            assert_eq!(protocol_of(url), want, "{url}");
        }
    }
}
