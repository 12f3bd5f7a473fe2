//! The TLS step: the handshake with the certificate read, and the fix for each failure.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use tokio::net::TcpStream;

use super::options::CheckOptions;
use super::report::Verdict;
use super::target::Target;
use super::walk::Walk;

pub(super) fn tls_config() -> Result<rustls::ClientConfig, rustls::Error> {
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

pub(super) async fn check_tls(
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

pub(super) fn tls_failure(error: &std::io::Error, target: &Target) -> (String, String) {
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
