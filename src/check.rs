//! `relaytop check URL`: the error playbook as a command. It walks the way from a URL to a
//! streamed answer one step at a time (the URL and its scheme, DNS, TCP, TLS with the
//! certificate, the upgrade or first request, `GET /v1/models` for the key, one short
//! completion with its time to first token, a heartbeat round trip, and with `--idle` how
//! long an idle connection survives), times each step, gives it a verdict and, when it fails,
//! the fix. The first failure ends the walk: later steps are shown as not run.
//!
//! The network steps reuse the session engine (`session::connect` for upgrades, a session
//! task for the completion, the heartbeat and the idle test), so `check` sees what a session
//! would. DNS goes through an injectable resolver and the key through an injectable
//! environment, so tests stay on loopback and never change the process environment.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures_util::StreamExt as _;
use serde::Serialize;
use tokio::net::TcpStream;

use relaytop_core::config::secret::Secret;
use relaytop_core::protocol::openai_chat::{models_url, parse_error_body};
use relaytop_core::protocol::openai_realtime::{
    CLOSE_BETA_SHAPE_DISABLED, CLOSE_INVALID_API_KEY, REALTIME_PATH, ServerEvent, url_with_model,
};
use relaytop_core::protocol::relay_v1::STREAM_PATH;
use relaytop_core::session::connect::{self, ConnectError, ConnectRequest, Flavor};
use relaytop_core::session::{
    self, BackoffPolicy, EventKind, Protocol, RunClock, SessionCommand, SessionInfo, SessionSpec,
    SessionState, Timing, Workload,
};

/// Resolves a host name to addresses (tests inject their own); the sessions `check` runs use
/// it too.
pub use relaytop_core::session::connect::{Resolver, system_resolver};

/// Reads an environment variable (tests inject their own).
pub type Env = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// The process environment.
pub fn process_env() -> Env {
    Arc::new(|var| std::env::var(var).ok())
}

/// What to check.
#[derive(Clone)]
pub struct CheckOptions {
    pub url: String,
    /// `None`: inferred from the URL.
    pub protocol: Option<Protocol>,
    /// The variable holding the key.
    pub key_env: Option<String>,
    /// The model for the completion; `None`: the protocol's usual one.
    pub model: Option<String>,
    /// Limit on each network step (the completion gets three times as long).
    pub timeout: Duration,
    /// Also find out whether an idle connection survives this long.
    pub idle: Option<Duration>,
    pub resolver: Resolver,
    pub env: Env,
}

impl CheckOptions {
    /// Options with the system resolver and environment and a 10 s step limit.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            protocol: None,
            key_env: None,
            model: None,
            timeout: Duration::from_secs(10),
            idle: None,
            resolver: system_resolver(),
            env: process_env(),
        }
    }
}

/// A step's outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    /// Passed, with something worth knowing.
    Warn,
    Fail,
    /// Does not apply (TLS on ws://, a heartbeat on SSE), or not run after a failure.
    Skip,
}

impl Verdict {
    fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "ok",
            Verdict::Warn => "warn",
            Verdict::Fail => "FAIL",
            Verdict::Skip => "skip",
        }
    }
}

/// One step of the walk.
#[derive(Clone, Debug, Serialize)]
pub struct Step {
    /// `url`, `dns`, `tcp`, `tls`, `upgrade`/`request`, `models`, `completion`, `heartbeat`, `idle`.
    pub name: &'static str,
    pub verdict: Verdict,
    /// How long the step took, in milliseconds (absent when it did not run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ms: Option<f64>,
    /// What was seen.
    pub detail: String,
    /// What to do about it (failures and warnings).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// The whole walk.
#[derive(Clone, Debug, Serialize)]
pub struct CheckReport {
    pub url: String,
    /// The protocol checked (absent when the URL could not tell).
    pub protocol: Option<Protocol>,
    pub steps: Vec<Step>,
    /// True only when no step failed.
    pub passed: bool,
}

impl CheckReport {
    /// The report for people.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let protocol = self.protocol.map_or("unknown protocol", |p| p.label());
        let _ = writeln!(out, "relaytop check {} ({protocol})", self.url);
        for step in &self.steps {
            let time = step
                .ms
                .map_or_else(|| "-".to_owned(), |ms| format!("{ms:.1} ms"));
            let _ = writeln!(
                out,
                "  {:<10} {:>10}  {:<4}  {}",
                step.name,
                time,
                step.verdict.label(),
                step.detail
            );
            if let Some(hint) = &step.hint {
                let _ = writeln!(out, "  {:<10} {:>10}  {:<4}  fix: {hint}", "", "", "");
            }
        }
        let failed = self
            .steps
            .iter()
            .filter(|s| s.verdict == Verdict::Fail)
            .count();
        let passed = self
            .steps
            .iter()
            .filter(|s| matches!(s.verdict, Verdict::Pass | Verdict::Warn))
            .count();
        let _ = if failed == 0 {
            writeln!(out, "all {passed} steps that apply passed")
        } else {
            writeln!(out, "{passed} passed, {failed} failed")
        };
        out
    }

    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// The step named `name`.
    pub fn step(&self, name: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.name == name)
    }
}

/// Where the URL points.
struct Target {
    protocol: Protocol,
    url: String,
    host: String,
    port: u16,
    tls: bool,
}

/// The steps in order (the names a report shows for steps not run).
fn step_names(protocol: Option<Protocol>) -> Vec<&'static str> {
    let first_request = match protocol {
        Some(Protocol::OpenaiSse) => "request",
        _ => "upgrade",
    };
    vec![
        "url",
        "dns",
        "tcp",
        "tls",
        first_request,
        "models",
        "completion",
        "heartbeat",
        "idle",
    ]
}

struct Walk {
    steps: Vec<Step>,
    failed: bool,
    /// The protocol, once the URL told it.
    protocol: Option<Protocol>,
}

impl Walk {
    fn record(
        &mut self,
        name: &'static str,
        started: Option<Instant>,
        verdict: Verdict,
        detail: String,
        hint: Option<String>,
    ) {
        self.failed |= verdict == Verdict::Fail;
        self.steps.push(Step {
            name,
            verdict,
            ms: started.map(|s| s.elapsed().as_secs_f64() * 1000.0),
            detail,
            hint,
        });
    }

    fn pass(&mut self, name: &'static str, started: Instant, detail: String) {
        self.record(name, Some(started), Verdict::Pass, detail, None);
    }

    fn fail(&mut self, name: &'static str, started: Instant, detail: String, hint: String) {
        self.record(name, Some(started), Verdict::Fail, detail, Some(hint));
    }

    fn skip(&mut self, name: &'static str, why: &str) {
        self.record(name, None, Verdict::Skip, why.to_owned(), None);
    }
}

/// Runs the whole walk.
pub async fn run(options: &CheckOptions) -> CheckReport {
    let mut walk = Walk {
        steps: Vec::new(),
        failed: false,
        protocol: None,
    };
    let target = check_url(options, &mut walk);
    let protocol = walk.protocol;
    if let Some(target) = target {
        walk_network(options, &target, &mut walk).await;
    }
    // Every step appears, the ones not run included.
    for name in step_names(protocol) {
        if walk.steps.iter().all(|s| s.name != name) {
            walk.skip(name, "not run: an earlier step failed");
        }
    }
    CheckReport {
        url: options.url.clone(),
        protocol,
        passed: !walk.failed,
        steps: walk.steps,
    }
}

async fn walk_network(options: &CheckOptions, target: &Target, walk: &mut Walk) {
    let Some(addrs) = check_dns(options, target, walk).await else {
        return;
    };
    let Some(addr) = check_tcp(options, target, &addrs, walk).await else {
        return;
    };
    if !check_tls(options, target, addr, walk).await {
        return;
    }
    let key = read_key(options);
    if !check_first_request(options, target, &key, walk).await {
        return;
    }
    if !check_models(options, target, &key, walk).await {
        return;
    }
    if !check_completion_and_heartbeat(options, target, &key, walk).await {
        return;
    }
    check_idle(options, target, &key, walk).await;
}

// ------------------------------------------------------------------------------------------
// url
// ------------------------------------------------------------------------------------------

fn check_url(options: &CheckOptions, walk: &mut Walk) -> Option<Target> {
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
            "use wss:// (relay-v1, openai-realtime) or https:// (openai-sse)".into(),
        );
        return None;
    }
    let looks_like = if path.ends_with(REALTIME_PATH) || path.ends_with("/realtime") {
        Some(Protocol::OpenaiRealtime)
    } else if path.ends_with(STREAM_PATH) {
        Some(Protocol::RelayV1)
    } else if path.ends_with("/chat/completions") {
        Some(Protocol::OpenaiSse)
    } else {
        None
    };
    let protocol = options.protocol.or(looks_like).unwrap_or(if websocket {
        Protocol::RelayV1
    } else {
        Protocol::OpenaiSse
    });
    walk.protocol = Some(protocol);
    let wants_websocket = protocol != Protocol::OpenaiSse;
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
                "openai-sse talks HTTP: `{scheme}://` is for WebSocket protocols (relay-v1, openai-realtime)"
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

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

// ------------------------------------------------------------------------------------------
// dns, tcp, tls
// ------------------------------------------------------------------------------------------

async fn check_dns(
    options: &CheckOptions,
    target: &Target,
    walk: &mut Walk,
) -> Option<Vec<SocketAddr>> {
    let started = Instant::now();
    if let Ok(ip) = target.host.parse::<IpAddr>() {
        walk.pass(
            "dns",
            started,
            format!("{ip} is an address: nothing to look up"),
        );
        return Some(vec![SocketAddr::new(ip, target.port)]);
    }
    let lookup = (options.resolver)(target.host.clone(), target.port);
    match tokio::time::timeout(options.timeout, lookup).await {
        Ok(Ok(addrs)) if !addrs.is_empty() => {
            let shown: Vec<String> = addrs.iter().take(4).map(|a| a.ip().to_string()).collect();
            walk.pass(
                "dns",
                started,
                format!("{} → {}", target.host, shown.join(", ")),
            );
            Some(addrs)
        }
        Ok(Ok(_)) => {
            walk.fail(
                "dns",
                started,
                format!("{} resolves to no address", target.host),
                "check the host name; the relay's DNS record may be missing".into(),
            );
            None
        }
        Ok(Err(e)) => {
            walk.fail(
                "dns",
                started,
                format!("cannot resolve {}: {e}", target.host),
                format!(
                    "check the host name for typos (`getent hosts {}`), and that this machine has DNS",
                    target.host
                ),
            );
            None
        }
        Err(_) => {
            walk.fail(
                "dns",
                started,
                format!(
                    "no DNS answer for {} within {:.0} s",
                    target.host,
                    options.timeout.as_secs_f64()
                ),
                "this machine's resolver is not answering: check /etc/resolv.conf or the network"
                    .into(),
            );
            None
        }
    }
}

async fn check_tcp(
    options: &CheckOptions,
    target: &Target,
    addrs: &[SocketAddr],
    walk: &mut Walk,
) -> Option<SocketAddr> {
    let started = Instant::now();
    let mut failures = Vec::new();
    let mut refused = false;
    for addr in addrs {
        match tokio::time::timeout(options.timeout, TcpStream::connect(addr)).await {
            Ok(Ok(_stream)) => {
                walk.pass("tcp", started, format!("connected to {addr}"));
                return Some(*addr);
            }
            Ok(Err(e)) => {
                refused |= e.kind() == std::io::ErrorKind::ConnectionRefused;
                failures.push(format!("{addr}: {e}"));
            }
            Err(_) => failures.push(format!(
                "{addr}: no answer within {:.0} s",
                options.timeout.as_secs_f64()
            )),
        }
    }
    let hint = if refused {
        format!(
            "nothing listens on port {} of {}: check the port ({} defaults to {}) and that the relay is running",
            target.port,
            target.host,
            if target.tls { "wss/https" } else { "ws/http" },
            if target.tls { 443 } else { 80 }
        )
    } else {
        "the connection attempt went unanswered: a firewall dropping packets, a wrong address, or the relay is down".into()
    };
    walk.fail("tcp", started, failures.join("; "), hint);
    None
}

fn tls_config() -> Result<rustls::ClientConfig, rustls::Error> {
    let roots = rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

async fn check_tls(
    options: &CheckOptions,
    target: &Target,
    addr: SocketAddr,
    walk: &mut Walk,
) -> bool {
    if !target.tls {
        walk.skip("tls", "plain ws:// or http://: no TLS");
        return true;
    }
    let started = Instant::now();
    let config = match tls_config() {
        Ok(config) => config,
        Err(e) => {
            walk.fail(
                "tls",
                started,
                format!("cannot set up TLS: {e}"),
                "a relaytop bug: please report it".into(),
            );
            return false;
        }
    };
    let Ok(name) = rustls::pki_types::ServerName::try_from(target.host.clone()) else {
        walk.fail(
            "tls",
            started,
            format!("`{}` cannot be a TLS server name", target.host),
            "use the relay's host name as its certificate names it".into(),
        );
        return false;
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let handshake = async {
        let tcp = TcpStream::connect(addr).await?;
        connector.connect(name, tcp).await
    };
    let stream = match tokio::time::timeout(options.timeout, handshake).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            let (detail, hint) = tls_failure(&e, target);
            walk.fail("tls", started, detail, hint);
            return false;
        }
        Err(_) => {
            walk.fail(
                "tls",
                started,
                format!("no TLS answer within {:.0} s: the server accepted the connection and said nothing", options.timeout.as_secs_f64()),
                "a stalled relay or proxy; or the port does not speak TLS (try ws:// or http://)".into(),
            );
            return false;
        }
    };
    let (_, connection) = stream.get_ref();
    let version = connection
        .protocol_version()
        .map_or_else(|| "TLS".to_owned(), |v| format!("{v:?}").replace('_', "."));
    let Some(cert) = connection.peer_certificates().and_then(|c| c.first()) else {
        walk.pass("tls", started, format!("{version}, no certificate shown"));
        return true;
    };
    match x509_parser::parse_x509_certificate(cert.as_ref()) {
        Ok((_, parsed)) => {
            let subject = parsed.subject().to_string();
            let expires = parsed.validity().not_after.timestamp();
            let now = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            let days = (expires - now) / 86_400;
            let when = chrono::DateTime::from_timestamp(expires, 0)
                .map_or_else(|| expires.to_string(), |t| t.format("%Y-%m-%d").to_string());
            let detail =
                format!("{version}, certificate {subject}, expires {when} (in {days} days)");
            if days < 14 {
                walk.record(
                    "tls",
                    Some(started),
                    Verdict::Warn,
                    detail,
                    Some(
                        "the certificate expires within two weeks: tell the relay's operator"
                            .into(),
                    ),
                );
            } else {
                walk.pass("tls", started, detail);
            }
        }
        Err(e) => walk.pass(
            "tls",
            started,
            format!("{version}, certificate not readable here ({e})"),
        ),
    }
    true
}

fn tls_failure(error: &std::io::Error, target: &Target) -> (String, String) {
    let text = error.to_string();
    let lower = text.to_ascii_lowercase();
    let hint = if lower.contains("expired") {
        "the relay's certificate has expired: tell its operator (a client cannot fix this)"
            .to_owned()
    } else if lower.contains("unknownissuer") || lower.contains("unknown issuer") {
        "the certificate is signed by an authority relaytop does not trust (self-signed, or a corporate proxy re-signing traffic)".to_owned()
    } else if lower.contains("notvalidforname") || lower.contains("not valid for name") {
        format!(
            "the certificate does not name {}: check the host name",
            target.host
        )
    } else if lower.contains("corrupt message")
        || lower.contains("invalidcontenttype")
        || lower.contains("invalid content type")
        || lower.contains("received corrupt")
    {
        "the port answered in plain text: use ws:// or http://, or the relay's TLS port".to_owned()
    } else {
        "the TLS handshake failed: check the port is the relay's TLS port".to_owned()
    };
    (format!("TLS handshake failed: {text}"), hint)
}

// ------------------------------------------------------------------------------------------
// The key
// ------------------------------------------------------------------------------------------

/// The key as read, and what was noticed about it.
struct Key {
    var: Option<String>,
    /// The trimmed key, when the variable is set.
    secret: Option<Secret>,
    /// The variable was set but empty.
    empty: bool,
    /// The raw value had white space around it.
    padded: bool,
    /// The raw value's characters.
    chars: usize,
}

fn read_key(options: &CheckOptions) -> Key {
    let var = options.key_env.clone();
    let raw = var.as_deref().and_then(|v| (options.env)(v));
    let trimmed = raw.as_deref().map(str::trim);
    Key {
        padded: raw.as_deref() != trimmed,
        empty: trimmed.is_some_and(str::is_empty),
        chars: raw.as_deref().map_or(0, |r| r.chars().count()),
        secret: trimmed.filter(|t| !t.is_empty()).map(Secret::new),
        var,
    }
}

impl Key {
    /// The fix for a refused key.
    fn hint(&self) -> String {
        let Some(var) = &self.var else {
            return "no key was sent: pass --key-env VAR, naming the variable that holds your key"
                .into();
        };
        if self.secret.is_none() {
            return if self.empty {
                format!("{var} is set but empty: put the key in it")
            } else {
                format!(
                    "{var} is not set: export {var}=<your key> (or name another variable with --key-env)"
                )
            };
        }
        let mut hint = format!(
            "the relay refused the key in {var} ({} characters{}): check it was issued for this relay and is still active",
            self.chars,
            if self.padded {
                ", white space trimmed"
            } else {
                ""
            }
        );
        if self.padded {
            hint.push_str(&format!(
                "; {var} has white space around the key (a trailing newline is the classic): relaytop trims it, other clients may not"
            ));
        }
        hint
    }

    /// A note on the key for steps that passed.
    fn note(&self) -> Option<String> {
        let var = self.var.as_deref()?;
        self.padded.then(|| {
            format!("{var} has white space around the key (trimmed here): clients that do not trim get 401")
        })
    }
}

// ------------------------------------------------------------------------------------------
// The first request, models
// ------------------------------------------------------------------------------------------

fn http_client(options: &CheckOptions) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .dns_resolver(Arc::new(connect::ResolverHandle(options.resolver.clone())))
        .connect_timeout(options.timeout)
        .timeout(options.timeout)
        .user_agent(concat!("relaytop-check/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| e.to_string())
}

/// `GET url` with the key: status, the body, or a failure message.
async fn get_with_key(
    options: &CheckOptions,
    url: &str,
    key: &Key,
) -> Result<(u16, Vec<u8>), reqwest::Error> {
    let client = match http_client(options) {
        Ok(client) => client,
        Err(_) => reqwest::Client::new(),
    };
    let mut request = client.get(url);
    if let Some(secret) = &key.secret {
        request = request.bearer_auth(secret.expose());
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    let body = response.bytes().await?;
    Ok((status, body.iter().take(256 * 1024).copied().collect()))
}

fn stalled_hint(target: &Target) -> String {
    if target.tls {
        "the server accepted the connection and sent nothing back: a stalled relay or a proxy holding the connection; try again later or ask its operator".into()
    } else {
        "the server accepted the connection and sent nothing back: a stalled relay, a proxy holding the connection, or a TLS port (try wss:// or https://)".into()
    }
}

async fn check_first_request(
    options: &CheckOptions,
    target: &Target,
    key: &Key,
    walk: &mut Walk,
) -> bool {
    match target.protocol {
        Protocol::OpenaiSse => check_sse_request(options, target, key, walk).await,
        Protocol::RelayV1 | Protocol::OpenaiRealtime => {
            check_upgrade(options, target, key, walk).await
        }
    }
}

async fn check_upgrade(
    options: &CheckOptions,
    target: &Target,
    key: &Key,
    walk: &mut Walk,
) -> bool {
    let started = Instant::now();
    let model = model_of(options, target.protocol);
    let (url, flavor) = match target.protocol {
        Protocol::OpenaiRealtime => (url_with_model(&target.url, &model), Flavor::Realtime),
        _ => (target.url.clone(), Flavor::RelayV1),
    };
    let request = ConnectRequest {
        url: &url,
        api_key: key.secret.as_ref(),
        model: &model,
        timeout: options.timeout,
        resolver: Some(&options.resolver),
    };
    let (mut socket, response) = match connect::connect_as(&request, flavor).await {
        Ok(ok) => ok,
        Err(error) => {
            let (detail, hint) = upgrade_failure(&error, target, key, options.timeout);
            walk.fail("upgrade", started, detail, hint);
            return false;
        }
    };
    let status = response.status().as_u16();
    if target.protocol == Protocol::RelayV1 {
        let _ = socket.close(None).await;
        walk.record(
            "upgrade",
            Some(started),
            pass_or_warn(key),
            format!("{status} Switching Protocols"),
            key.note(),
        );
        return true;
    }
    // Realtime: a key is refused only after the upgrade, by an error and a close.
    let first = tokio::time::timeout(options.timeout, async {
        let mut error_text = None;
        while let Some(message) = socket.next().await {
            match message {
                Ok(tokio_tungstenite::tungstenite::Message::Text(text)) => {
                    match ServerEvent::parse(text.as_str()) {
                        Ok(ServerEvent::SessionCreated) => return Ok(()),
                        Ok(ServerEvent::Error(error)) => error_text = Some(error.summary()),
                        _ => {}
                    }
                }
                Ok(tokio_tungstenite::tungstenite::Message::Close(frame)) => {
                    let code = frame.as_ref().map_or(1005, |f| u16::from(f.code));
                    return Err((Some(code), error_text));
                }
                Ok(_) => {}
                Err(_) => return Err((None, error_text)),
            }
        }
        Err((None, error_text))
    })
    .await;
    let _ = socket.close(None).await;
    match first {
        Ok(Ok(())) => {
            walk.record(
                "upgrade",
                Some(started),
                pass_or_warn(key),
                format!("{status} Switching Protocols, session.created"),
                key.note(),
            );
            true
        }
        Ok(Err((code, error))) => {
            let said = error.map(|e| format!(": {e}")).unwrap_or_default();
            let (detail, hint) = match code {
                Some(CLOSE_INVALID_API_KEY) => (
                    format!("101, then an error and close 3000 (invalid_api_key){said}"),
                    key.hint(),
                ),
                Some(CLOSE_BETA_SHAPE_DISABLED) => (
                    format!("101, then close 4000 (beta_api_shape_disabled){said}"),
                    "this endpoint speaks the GA Realtime shape only: send no OpenAI-Beta header (relaytop does not)".into(),
                ),
                Some(code) => (
                    format!("101, then close {code}{said}"),
                    "the endpoint closed before session.created: check the model in ?model= and the key".into(),
                ),
                None => (
                    format!("101, then the connection ended{said}"),
                    "the endpoint dropped the connection before session.created".into(),
                ),
            };
            walk.fail("upgrade", started, detail, hint);
            false
        }
        Err(_) => {
            walk.fail(
                "upgrade",
                started,
                format!(
                    "101, but no session.created within {:.0} s",
                    options.timeout.as_secs_f64()
                ),
                stalled_hint(target),
            );
            false
        }
    }
}

fn pass_or_warn(key: &Key) -> Verdict {
    if key.padded {
        Verdict::Warn
    } else {
        Verdict::Pass
    }
}

fn upgrade_failure(
    error: &ConnectError,
    target: &Target,
    key: &Key,
    timeout: Duration,
) -> (String, String) {
    match error {
        ConnectError::Upgrade {
            status: 401 | 403,
            message,
            ..
        } => (
            format!("the upgrade was answered {}: {message}", status_of(error)),
            key.hint(),
        ),
        ConnectError::Upgrade {
            status: 429,
            retry_after,
            message,
        } => (
            format!("429: {message}"),
            match retry_after {
                Some(wait) => format!(
                    "rate limited: the relay asks to wait {:.0} s; too many connections from this key?",
                    wait.as_secs_f64()
                ),
                None => "rate limited: too many connections or requests from this key".into(),
            },
        ),
        ConnectError::Upgrade {
            status: 404 | 426 | 400 | 405,
            message,
            ..
        } => (
            format!("the upgrade was answered {}: {message}", status_of(error)),
            match target.protocol {
                Protocol::OpenaiRealtime => {
                    format!("wrong path? the Realtime API is at {REALTIME_PATH}")
                }
                _ => format!("wrong path? relay/v1 streams at {STREAM_PATH}"),
            },
        ),
        ConnectError::Upgrade { message, .. } => (
            format!("the upgrade was answered {}: {message}", status_of(error)),
            "the relay is failing: retry later, or ask its operator".into(),
        ),
        ConnectError::Timeout(_) => (
            format!(
                "TCP connected, but no answer to the upgrade within {:.0} s",
                timeout.as_secs_f64()
            ),
            stalled_hint(target),
        ),
        ConnectError::Handshake(e) => (
            format!("the upgrade failed: {e}"),
            if target.tls {
                "the server does not speak WebSocket here: check the path and the port".into()
            } else {
                "the server does not speak WebSocket here (is it a TLS port? try wss://)".into()
            },
        ),
        other => (other.to_string(), "see the steps above".into()),
    }
}

fn status_of(error: &ConnectError) -> u16 {
    match error {
        ConnectError::Upgrade { status, .. } => *status,
        _ => 0,
    }
}

async fn check_sse_request(
    options: &CheckOptions,
    target: &Target,
    key: &Key,
    walk: &mut Walk,
) -> bool {
    let started = Instant::now();
    let url = models_url(&target.url);
    match get_with_key(options, &url, key).await {
        Ok((status, body)) => {
            let error = parse_error_body(&body);
            let bad_key = status == 401 || error.as_ref().is_some_and(|e| e.is_bad_key());
            if bad_key {
                let said = error.map(|e| e.summary()).unwrap_or_default();
                walk.fail(
                    "request",
                    started,
                    format!("GET {url} answered {status}: {said}"),
                    key.hint(),
                );
                return false;
            }
            if status >= 500 {
                walk.fail(
                    "request",
                    started,
                    format!("GET {url} answered {status}"),
                    "the relay is failing: retry later, or ask its operator".into(),
                );
                return false;
            }
            walk.record(
                "request",
                Some(started),
                pass_or_warn(key),
                format!("GET {url} answered {status}"),
                key.note(),
            );
            true
        }
        Err(e) => {
            let (detail, hint) = if e.is_timeout() {
                (
                    format!(
                        "TCP connected, but no answer to GET {url} within {:.0} s",
                        options.timeout.as_secs_f64()
                    ),
                    stalled_hint(target),
                )
            } else {
                (
                    format!("GET {url} failed: {}", chain(&e)),
                    "the server does not speak HTTP here: check the port and the scheme".into(),
                )
            };
            walk.fail("request", started, detail, hint);
            false
        }
    }
}

fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(error);
    while let Some(e) = current {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    parts.join(": ")
}

/// The REST URL of `/v1/models` beside a WebSocket URL (ws→http, wss→https).
fn websocket_models_url(target: &Target) -> String {
    let scheme = if target.tls { "https" } else { "http" };
    let host = if target.host.contains(':') {
        format!("[{}]", target.host)
    } else {
        target.host.clone()
    };
    format!("{scheme}://{host}:{}/v1/models", target.port)
}

async fn check_models(options: &CheckOptions, target: &Target, key: &Key, walk: &mut Walk) -> bool {
    let started = Instant::now();
    let url = match target.protocol {
        Protocol::OpenaiSse => models_url(&target.url),
        _ => websocket_models_url(target),
    };
    let model = model_of(options, target.protocol);
    match get_with_key(options, &url, key).await {
        Ok((200, body)) => {
            #[derive(serde::Deserialize)]
            struct List {
                #[serde(default)]
                data: Vec<Entry>,
            }
            #[derive(serde::Deserialize)]
            struct Entry {
                id: String,
            }
            let list: Option<List> = serde_json::from_slice(&body).ok();
            match list {
                Some(list) => {
                    let listed = list.data.iter().any(|m| m.id == model);
                    let detail = format!(
                        "{} models for this key; {model} {}",
                        list.data.len(),
                        if listed { "is listed" } else { "is not listed" }
                    );
                    if listed {
                        walk.pass("models", started, detail);
                    } else {
                        walk.record(
                            "models",
                            Some(started),
                            Verdict::Warn,
                            detail,
                            Some("pass --model with one of the listed models if the completion fails".into()),
                        );
                    }
                }
                None => walk.record(
                    "models",
                    Some(started),
                    Verdict::Warn,
                    "200, but not a model list".into(),
                    Some(
                        "the relay's /v1/models is not OpenAI-shaped; the key may still be good"
                            .into(),
                    ),
                ),
            }
            true
        }
        Ok((401 | 403, body)) => {
            let said = parse_error_body(&body)
                .map(|e| e.summary())
                .unwrap_or_default();
            walk.fail(
                "models",
                started,
                format!("GET {url}: 401 {said}"),
                key.hint(),
            );
            false
        }
        Ok((status, _)) => {
            walk.record(
                "models",
                Some(started),
                Verdict::Warn,
                format!("GET {url} answered {status}"),
                Some("this relay does not list models; the key is tested by the completion".into()),
            );
            true
        }
        Err(e) => {
            walk.record(
                "models",
                Some(started),
                Verdict::Warn,
                format!("GET {url} failed: {}", chain(&e)),
                Some("this relay serves no REST beside the stream; the key is tested by the completion".into()),
            );
            true
        }
    }
}

// ------------------------------------------------------------------------------------------
// completion, heartbeat, idle (through a real session)
// ------------------------------------------------------------------------------------------

fn model_of(options: &CheckOptions, protocol: Protocol) -> String {
    options.model.clone().unwrap_or_else(|| {
        match protocol {
            Protocol::RelayV1 => "gpt-4.1",
            Protocol::OpenaiSse => "gpt-4o-mini",
            Protocol::OpenaiRealtime => "gpt-realtime",
        }
        .to_owned()
    })
}

fn session_spec(
    options: &CheckOptions,
    target: &Target,
    key: &Key,
    heartbeat: Option<Duration>,
) -> SessionSpec {
    SessionSpec {
        info: SessionInfo {
            id: 0,
            name: "check".into(),
            provider: target.host.clone(),
            model: model_of(options, target.protocol),
            protocol: target.protocol,
            url: target.url.clone(),
            workload: "chat".into(),
        },
        api_key: key.secret.clone(),
        resolver: Some(connect::ResolverHandle(options.resolver.clone())),
        workload: Workload::Chat { system: None },
        timing: Timing {
            heartbeat,
            ws_ping: heartbeat.is_some(),
            dead_after: Duration::from_secs(3600),
            handshake_timeout: options.timeout,
            response_timeout: options.timeout * 3,
            stable_after: Duration::from_secs(30),
            backoff: BackoffPolicy {
                base: Duration::from_millis(100),
                cap: Duration::from_millis(100),
                max_attempts: 0,
            },
        },
        seed: Some(1),
        tap: None,
        limits: None,
    }
}

async fn check_completion_and_heartbeat(
    options: &CheckOptions,
    target: &Target,
    key: &Key,
    walk: &mut Walk,
) -> bool {
    let heartbeat = (target.protocol != Protocol::OpenaiSse).then_some(Duration::from_millis(200));
    let spec = session_spec(options, target, key, heartbeat);
    let (tx, mut rx) = relaytop_core::session::stream::channel(1024);
    let handle = session::spawn(spec, RunClock::new(), tx);
    let started = Instant::now();
    let _ = handle
        .commands
        .send(SessionCommand::Chat {
            text: "Reply with one short sentence.".into(),
        })
        .await;
    let limit = options.timeout * 3 + options.timeout;
    let deadline = tokio::time::Instant::now() + limit;
    let mut completed = false;
    let mut last_problem: Option<String> = None;
    let mut pong: Option<u64> = None;
    while !completed || (heartbeat.is_some() && pong.is_none()) {
        let event = match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(event)) => event,
            _ => break,
        };
        match event.kind {
            EventKind::Done {
                ttft_us,
                total_us,
                tokens,
                ..
            } if !completed => {
                completed = true;
                let ttft = ttft_us.map_or_else(
                    || "no text".to_owned(),
                    |t| format!("{:.1} ms", t as f64 / 1000.0),
                );
                walk.pass(
                    "completion",
                    started,
                    format!(
                        "time to first token {ttft}, done in {:.1} ms, {} tokens out{}",
                        total_us as f64 / 1000.0,
                        tokens.output,
                        if tokens.estimated {
                            " (estimated: no usage sent)"
                        } else {
                            ""
                        }
                    ),
                );
            }
            EventKind::Pong { rtt_us } if pong.is_none() => pong = Some(rtt_us),
            EventKind::HeartbeatMissed { waited_us } if pong.is_none() => {
                last_problem = Some(format!(
                    "a heartbeat went unanswered for {:.1} s",
                    waited_us as f64 / 1e6
                ));
                if completed {
                    break;
                }
            }
            EventKind::RequestFailed { reason, .. } if !completed => {
                walk.fail(
                    "completion",
                    started,
                    format!("the request failed: {reason}"),
                    "see the reason; with a 4xx, check --model against the models step".into(),
                );
                break;
            }
            EventKind::Error { message, .. } => last_problem = Some(message),
            EventKind::Closed {
                requested: false,
                code,
                reason,
            } => {
                last_problem = Some(format!(
                    "the connection dropped after {:.1} s (close {code}{}), before a heartbeat was answered",
                    started.elapsed().as_secs_f64(),
                    if reason.is_empty() {
                        String::new()
                    } else {
                        format!(": {reason}")
                    }
                ));
            }
            EventKind::State(SessionState::Stopped { reason }) => {
                if !completed {
                    walk.fail(
                        "completion",
                        started,
                        format!("the session stopped: {reason}"),
                        "see the reason".into(),
                    );
                }
                break;
            }
            _ => {}
        }
    }
    let _ = handle.commands.send(SessionCommand::Close).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), handle.task).await;
    if !walk.steps.iter().any(|s| s.name == "completion") {
        walk.fail(
            "completion",
            started,
            format!(
                "no answer within {:.0} s{}",
                limit.as_secs_f64(),
                last_problem
                    .as_ref()
                    .map(|p| format!(" ({p})"))
                    .unwrap_or_default()
            ),
            stalled_hint(target),
        );
    }
    if walk.failed {
        return false;
    }
    match (heartbeat, pong) {
        (None, _) => {
            walk.skip(
                "heartbeat",
                "openai-sse has no heartbeat: a silent stream is cut by the idle timeout instead",
            );
            true
        }
        (Some(_), Some(rtt)) => {
            let what = if target.protocol == Protocol::RelayV1 {
                "ping→pong"
            } else {
                "WebSocket Ping→Pong"
            };
            walk.record(
                "heartbeat",
                None,
                Verdict::Pass,
                format!("{what} round trip {:.1} ms", rtt as f64 / 1000.0),
                None,
            );
            if let Some(step) = walk.steps.last_mut() {
                step.ms = Some(rtt as f64 / 1000.0);
            }
            true
        }
        (Some(_), None) => {
            walk.record(
                "heartbeat",
                None,
                Verdict::Fail,
                last_problem.unwrap_or_else(|| "no heartbeat answered".into()),
                Some("the relay does not answer heartbeats: a proxy in between may cut idle connections after 60-90 s; ask the operator".into()),
            );
            false
        }
    }
}

async fn check_idle(options: &CheckOptions, target: &Target, key: &Key, walk: &mut Walk) {
    let Some(idle) = options.idle else {
        walk.skip("idle", "not asked (--idle SECONDS finds an idle cut-off)");
        return;
    };
    if target.protocol == Protocol::OpenaiSse {
        walk.skip("idle", "openai-sse holds no connection between requests");
        return;
    }
    let started = Instant::now();
    let spec = session_spec(options, target, key, None);
    let (tx, mut rx) = relaytop_core::session::stream::channel(1024);
    let handle = session::spawn(spec, RunClock::new(), tx);
    let mut connected_at: Option<u64> = None;
    let deadline = tokio::time::Instant::now() + options.timeout + idle;
    let mut cut: Option<(u64, u16)> = None;
    loop {
        let event = match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(event)) => event,
            _ => break,
        };
        match event.kind {
            EventKind::Connected { .. } if connected_at.is_none() => {
                connected_at = Some(event.at_us)
            }
            EventKind::Closed {
                requested: false,
                code,
                ..
            } => {
                cut = Some((event.at_us, code));
                break;
            }
            EventKind::State(SessionState::Stopped { .. }) => break,
            _ => {}
        }
        if connected_at.is_some_and(|c| event.at_us.saturating_sub(c) >= idle.as_micros() as u64) {
            break;
        }
    }
    let _ = handle.commands.send(SessionCommand::Close).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), handle.task).await;
    match (connected_at, cut) {
        (Some(up), Some((at, code))) => {
            let after = at.saturating_sub(up) as f64 / 1e6;
            walk.fail(
                "idle",
                started,
                format!("an idle connection was cut after {after:.1} s (close {code})"),
                format!(
                    "send heartbeats more often than every {:.0} s (heartbeat_s in the config)",
                    (after * 0.5).floor().max(1.0)
                ),
            );
        }
        (Some(_), None) => walk.pass(
            "idle",
            started,
            format!("an idle connection stayed open {:.0} s", idle.as_secs_f64()),
        ),
        (None, _) => walk.fail(
            "idle",
            started,
            "could not open a connection to leave idle".into(),
            "see the upgrade step".into(),
        ),
    }
}
