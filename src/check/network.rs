//! DNS and TCP: the host's addresses, and a connection to one of them.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use tokio::net::TcpStream;

use super::options::CheckOptions;
use super::target::Target;
use super::walk::Walk;

pub(super) async fn check_dns(
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

pub(super) async fn check_tcp(
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
