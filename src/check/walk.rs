//! The walk from the URL to a streamed answer: the steps in order, each recorded as it
//! ends, the first failure ending the walk.

use std::time::Instant;

use relaytop_core::session::Protocol;

use super::completion::{check_completion_and_heartbeat, check_idle};
use super::first_request::{check_first_request, check_models};
use super::key::read_key;
use super::network::{check_dns, check_tcp};
use super::options::CheckOptions;
use super::report::{CheckReport, Step, Verdict};
use super::target::{Target, check_url};
use super::tls::check_tls;

/// The steps in order (the names a report shows for steps not run).
pub(super) fn step_names(protocol: Option<Protocol>) -> Vec<&'static str> {
    let first_request = match protocol {
        Some(p) if p.is_http_stream() => "request",
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

pub(super) struct Walk {
    pub(super) steps: Vec<Step>,
    pub(super) failed: bool,
    /// The protocol, once the URL told it.
    pub(super) protocol: Option<Protocol>,
}

impl Walk {
    pub(super) fn record(
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

    pub(super) fn pass(&mut self, name: &'static str, started: Instant, detail: String) {
        self.record(name, Some(started), Verdict::Pass, detail, None);
    }

    pub(super) fn fail(
        &mut self,
        name: &'static str,
        started: Instant,
        detail: String,
        hint: String,
    ) {
        self.record(name, Some(started), Verdict::Fail, detail, Some(hint));
    }

    pub(super) fn skip(&mut self, name: &'static str, why: &str) {
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
    let mut report = CheckReport {
        url: options.url.clone(),
        protocol,
        passed: !walk.failed,
        steps: walk.steps,
    };
    // A relay may echo the key (a 401 body quoting the `Authorization` header): no step's
    // words carry it to the text or JSON report.
    if let Some(secret) = read_key(options).secret {
        scrub_report(&mut report, &secret);
    }
    report
}

/// Replaces the key in every text of the report by `[REDACTED]`.
fn scrub_report(report: &mut CheckReport, secret: &relaytop_core::config::secret::Secret) {
    let scrub = |text: &mut String| {
        if let std::borrow::Cow::Owned(clean) = secret.redact(text) {
            *text = clean;
        }
    };
    scrub(&mut report.url);
    for step in &mut report.steps {
        scrub(&mut step.detail);
        if let Some(hint) = &mut step.hint {
            scrub(hint);
        }
    }
}

pub(super) async fn walk_network(options: &CheckOptions, target: &Target, walk: &mut Walk) {
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
