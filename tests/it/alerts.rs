//! Alerts end to end: a local HTTP receiver on 127.0.0.1 catching each of the seven kinds of
//! receiver's payload (shape and signature checked), and a slow simulated relay run headless
//! into a latency rule and an SLO burn-rate rule whose webhook arrives within seconds.

use crate::support;

use std::time::Duration;

use relaytop::headless::{self, HeadlessOptions, OutputFormat};
use relaytop_core::alert::deliver::{self, Deliverer};
use relaytop_core::alert::{Notice, ScopeKey, Severity, Transition};
use relaytop_core::config::file;
use relaytop_core::config::secret::{Secret, SecretError};
use relaytop_core::world::World;
use relaytop_sim::SimProfile;
use serde_json::Value;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// One request the receiver caught: the request target (path and query) and the JSON body.
#[derive(Debug)]
struct Caught {
    target: String,
    body: Value,
}

/// A receiver on 127.0.0.1 that answers each POST as the service would (a 200 with the
/// service's success body) and reports what it caught. Returns its base URL.
async fn receiver() -> (String, mpsc::UnboundedReceiver<Caught>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                let (target, body) = loop {
                    let n = socket.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    let Some(end) = text.find("\r\n\r\n") else {
                        continue;
                    };
                    let length = text[..end]
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + length {
                        let target = text
                            .lines()
                            .next()
                            .and_then(|l| l.split(' ').nth(1))
                            .unwrap_or("")
                            .to_owned();
                        break (target, text[end + 4..end + 4 + length].to_owned());
                    }
                };
                let refused = target.starts_with("/refuse");
                let answer = if refused {
                    "refused"
                } else if target.starts_with("/feishu") {
                    r#"{"code":0,"msg":"success","data":{}}"#
                } else if target.starts_with("/dingtalk") || target.starts_with("/wecom") {
                    r#"{"errcode":0,"errmsg":"ok"}"#
                } else if target.starts_with("/tg/") {
                    r#"{"ok":true,"result":{"message_id":1}}"#
                } else {
                    "ok"
                };
                let status = if refused { "403 Forbidden" } else { "200 OK" };
                let reply = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                    answer.len()
                );
                let _ = socket.write_all(reply.as_bytes()).await;
                let body = serde_json::from_str(&body).unwrap_or(Value::Null);
                let _ = tx.send(Caught { target, body });
            });
        }
    });
    (base, rx)
}

const FEISHU_SECRET: &str = "feishu-signing-secret";
const DING_SECRET: &str = "SECding-signing-secret";
const BOT_TOKEN: &str = "123456:telegram-bot-token";

/// The config's variables: each receiver's URL at the local receiver, and the secrets.
fn env_for(base: &str) -> impl Fn(&str) -> Result<Secret, SecretError> + '_ {
    move |var: &str| {
        let value = match var {
            "RELAYTOP_TEST_KEY" => TEST_KEY.to_owned(),
            "HOOK_URL" => format!("{base}/webhook/abc"),
            "SLACK_URL" => format!("{base}/slack/T000/B000/XXXX"),
            "DISCORD_URL" => format!("{base}/discord/api/webhooks/1/tok"),
            "FEISHU_URL" => format!("{base}/feishu/open-apis/bot/v2/hook/xyz"),
            "FEISHU_SECRET" => FEISHU_SECRET.to_owned(),
            "DING_URL" => format!("{base}/dingtalk/robot/send?access_token=dtok"),
            "DING_SECRET" => DING_SECRET.to_owned(),
            "WECOM_URL" => format!("{base}/wecom/cgi-bin/webhook/send?key=wkey"),
            "BOT_TOKEN" => BOT_TOKEN.to_owned(),
            "REFUSE_URL" => format!("{base}/refuse/hook"),
            other => return Err(SecretError::NotSet { var: other.into() }),
        };
        Ok(Secret::new(value))
    }
}

fn receivers_toml(base: &str) -> String {
    format!(
        r#"
[alert_receivers.hook]
kind = "webhook"
url_env = "HOOK_URL"

[alert_receivers.slack]
kind = "slack"
url_env = "SLACK_URL"

[alert_receivers.discord]
kind = "discord"
url_env = "DISCORD_URL"

[alert_receivers.telegram]
kind = "telegram"
token_env = "BOT_TOKEN"
chat_id = "-100200300"
api_base = "{base}/tg"

[alert_receivers.feishu]
kind = "feishu"
url_env = "FEISHU_URL"
secret_env = "FEISHU_SECRET"

[alert_receivers.dingtalk]
kind = "dingtalk"
url_env = "DING_URL"
secret_env = "DING_SECRET"

[alert_receivers.wecom]
kind = "wecom"
url_env = "WECOM_URL"
"#
    )
}

fn config(base: &str, relay_url: &str, rules: &str) -> relaytop_core::config::Config {
    let text = format!(
        r#"
[[providers]]
name = "legacy"
url = "{relay_url}"
api_key_env = "RELAYTOP_TEST_KEY"
model = "gpt-4.1"
requests_per_minute = 6000

[[sessions]]
name = "probe-legacy"
provider = "legacy"
count = 4
interval_s = 0.2
max_tokens = 5

[slo]
ttft_ms = 800
objective = 0.99

{rules}
{}
"#,
        receivers_toml(base)
    );
    file::parse(&text, "alerts.toml", &env_for(base)).unwrap_or_else(|e| panic!("{e}"))
}

fn notice() -> Notice {
    Notice {
        alert: "legacy slow".into(),
        severity: Severity::Critical,
        scope: ScopeKey::Provider("legacy".into()),
        transition: Transition::Fired,
        value: Some(1234.0),
        threshold: 800.0,
        text:
            "[FIRING] legacy slow (critical) · provider:legacy · TTFT p99 over 1m 1234 ms > 800 ms"
                .into(),
        at_us: 12_000_000,
        receivers: Vec::new(),
    }
}

#[tokio::test]
async fn each_receiver_gets_its_own_payload_signed_where_the_service_signs() {
    let (base, mut caught) = receiver().await;
    let config = config(&base, "ws://127.0.0.1:9/v1/stream", "");
    assert_eq!(config.alerts.receivers.len(), 7);
    let deliverer = Deliverer::spawn(config.alerts.receivers.clone());
    let before_ms = deliver::now_ms();
    deliverer.deliver(&notice());
    deliverer.flush(Duration::from_secs(10)).await;
    let counts = deliverer.counts();
    assert_eq!((counts.sent, counts.failed), (7, 0), "{counts:?}");

    let mut by_kind = std::collections::BTreeMap::new();
    for _ in 0..7 {
        let c = tokio::time::timeout(Duration::from_secs(5), caught.recv())
            .await
            .unwrap()
            .unwrap();
        let kind = c.target.split('/').nth(1).unwrap().to_owned();
        by_kind.insert(kind, c);
    }
    let text = notice().text;

    let hook = &by_kind["webhook"].body;
    assert_eq!(hook["status"], "firing");
    assert_eq!(hook["alert"], "legacy slow");
    assert_eq!(hook["severity"], "critical");
    assert_eq!(hook["scope"], "provider:legacy");
    assert_eq!(hook["value"], 1234.0);
    assert_eq!(hook["threshold"], 800.0);
    assert_eq!(hook["text"], text.as_str());

    assert_eq!(by_kind["slack"].body, serde_json::json!({ "text": text }));
    assert_eq!(
        by_kind["discord"].body,
        serde_json::json!({ "content": text })
    );

    let tg = &by_kind["tg"];
    assert_eq!(tg.target, format!("/tg/bot{BOT_TOKEN}/sendMessage"));
    assert_eq!(
        tg.body,
        serde_json::json!({ "chat_id": "-100200300", "text": text })
    );

    let wecom = &by_kind["wecom"];
    assert_eq!(wecom.target, "/wecom/cgi-bin/webhook/send?key=wkey");
    assert_eq!(
        wecom.body,
        serde_json::json!({ "msgtype": "text", "text": { "content": text } })
    );

    // Feishu: the signature is in the body, keyed with "timestamp\nsecret".
    let feishu = &by_kind["feishu"].body;
    assert_eq!(feishu["msg_type"], "text");
    assert_eq!(feishu["content"]["text"], text.as_str());
    let ts: u64 = feishu["timestamp"].as_str().unwrap().parse().unwrap();
    assert!(ts >= before_ms / 1000 && ts <= deliver::now_ms() / 1000 + 1);
    assert_eq!(
        feishu["sign"].as_str().unwrap(),
        deliver::feishu_sign(ts, FEISHU_SECRET)
    );

    // DingTalk: timestamp (ms) and the URL-encoded signature appended to the URL.
    let ding = &by_kind["dingtalk"];
    assert_eq!(
        ding.body,
        serde_json::json!({ "msgtype": "text", "text": { "content": text } })
    );
    let query = ding.target.split_once('?').unwrap().1;
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .unwrap()
            .to_owned()
    };
    assert_eq!(param("access_token"), "dtok");
    let ts: u64 = param("timestamp").parse().unwrap();
    assert!(ts >= before_ms && ts <= deliver::now_ms());
    assert_eq!(param("sign"), deliver::dingtalk_sign(ts, DING_SECRET));
}

#[tokio::test]
async fn a_refusal_is_recorded_with_its_answer_and_no_secret() {
    // A receiver that refuses everything with a 403 naming the URL it was given.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut chunk = [0u8; 8192];
            let _ = socket.read(&mut chunk).await;
            let answer = "bad token for /slack/T000/B000/XXXX";
            let reply = format!(
                "HTTP/1.1 403 Forbidden\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                answer.len()
            );
            let _ = socket.write_all(reply.as_bytes()).await;
        }
    });
    let config = config(&base, "ws://127.0.0.1:9/v1/stream", "");
    let slack: Vec<_> = config
        .alerts
        .receivers
        .iter()
        .filter(|r| r.name == "slack")
        .cloned()
        .collect();
    let client = deliver::client();
    let answer = deliver::send_once(&client, &slack[0], &notice(), "test").await;
    assert_eq!(answer.status, Some(403));
    assert!(!answer.accepted());
    let deliverer = Deliverer::spawn(slack);
    deliverer.deliver(&notice());
    deliverer.flush(Duration::from_secs(10)).await;
    let counts = deliverer.counts();
    assert_eq!((counts.sent, counts.failed), (0, 1));
    let failure = &counts.failures[0];
    assert_eq!(failure.status, Some(403), "a 403 is not retried");
    assert!(!failure.reason.contains("XXXX"), "{failure:?}");
}

const SLOW_RULES: &str = r#"
[[alerts]]
name = "legacy slow"
figure = "ttft_p99_ms"
above = 800
resolve_at = 600
scope = "provider:legacy"
for_s = 1
severity = "critical"
receivers = ["hook"]

[[alerts]]
name = "legacy burning its error budget"
kind = "burn_rate"
speed = "fast"
min_requests = 5
scope = "provider:legacy"
severity = "critical"
receivers = ["hook"]

[[alerts]]
name = "legacy balance low"
figure = "balance"
below = 5
scope = "provider:legacy"
receivers = ["hook"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_relay_fires_its_alerts_and_the_webhook_arrives() {
    // The legacy relay in trouble: time to first token p50 900 ms, p99 1.5 s.
    let relay = sim(SimProfile {
        ttft_p50_ms: 900.0,
        ttft_p99_ms: 1500.0,
        tokens_per_second: 500.0,
        tokens_per_response: 5,
        drop_rate: 0.0,
        ..SimProfile::default()
    })
    .await;
    let (base, mut caught) = receiver().await;
    let config = config(&base, &relay.url(), SLOW_RULES);
    let world = World::start(config, &relaytop_sim::Embedded)
        .await
        .expect("world");
    let options = HeadlessOptions {
        duration: Some(Duration::from_secs(5)),
        requests: None,
        format: OutputFormat::Json,
    };
    let mut out = Vec::new();
    let report = headless::run(&world, &options, &mut out)
        .await
        .expect("the run completes");
    world.stop().await;

    let mut fired = Vec::new();
    while let Ok(c) = caught.try_recv() {
        assert!(c.target.starts_with("/webhook/"), "only the webhook: {c:?}");
        fired.push((
            c.body["status"].as_str().unwrap().to_owned(),
            c.body["alert"].as_str().unwrap().to_owned(),
        ));
    }
    fired.sort();
    assert_eq!(
        fired,
        vec![
            (
                "firing".to_owned(),
                "legacy burning its error budget".to_owned()
            ),
            ("firing".to_owned(), "legacy slow".to_owned()),
        ],
        "each fired once; the balance rule has no data yet"
    );

    let alerts = report.alerts.as_ref().expect("an alerts section");
    let firing: Vec<&str> = alerts.firing.iter().map(|a| a.alert.as_str()).collect();
    assert!(firing.contains(&"legacy slow"), "{alerts:?}");
    let slow = alerts
        .firing
        .iter()
        .find(|a| a.alert == "legacy slow")
        .unwrap();
    assert!(slow.value.unwrap() > 800.0);
    assert_eq!(alerts.deliveries.sent, 2);
    let budget = &alerts.budgets[0];
    assert!(budget.left.unwrap() < 0.0, "{budget:?}");

    // The report, alerts included, matches the published schema.
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/docs/headless-schema.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let validator = jsonschema::draft202012::new(&schema).unwrap();
    let doc = serde_json::to_value(&report).unwrap();
    let errors: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?}");
}

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/examples/alerts.toml");

#[test]
fn the_example_checks_and_has_a_rule_of_each_kind() {
    let text = std::fs::read_to_string(EXAMPLE).unwrap();
    let config = file::parse(&text, EXAMPLE, &|var: &str| match var {
        "ALERT_WEBHOOK_URL" => Ok(Secret::new("http://127.0.0.1:9/hook")),
        other => Err(SecretError::NotSet { var: other.into() }),
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = config
        .alerts
        .rules
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    for wanted in [
        "legacy slow",
        "errors",
        "drops",
        "goodput",
        "error budget burn",
        "balance low",
    ] {
        assert!(names.contains(&wanted), "{names:?}");
    }
    assert_eq!(config.alerts.receivers[0].kind.label(), "webhook");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_test_sends_through_the_rules_receivers_and_prints_the_answer() {
    let (base, mut caught) = receiver().await;
    let hook = format!("{base}/webhook/secret-hook-token");
    let output = tokio::task::spawn_blocking(move || {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_relaytop"));
        support::without_tool_variables(&mut command)
            .args(["alert", "test", "legacy slow", "--config", EXAMPLE])
            .env("ALERT_WEBHOOK_URL", &hook)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("webhook (webhook): HTTP 200 accepted"),
        "{stdout}"
    );
    assert!(!stdout.contains("secret-hook-token"));
    let c = tokio::time::timeout(Duration::from_secs(5), caught.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.body["status"], "test");
    assert_eq!(c.body["alert"], "legacy slow");

    // A rule that is not there is said, with the ones that are.
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_relaytop"));
    let output = support::without_tool_variables(&mut command)
        .args(["alert", "test", "nope", "--config", EXAMPLE])
        .env("ALERT_WEBHOOK_URL", "http://127.0.0.1:9/")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no alert `nope`") && stderr.contains("legacy slow"),
        "{stderr}"
    );
}

#[test]
fn the_readme_example_checks() {
    let readme = include_str!("../../README.md");
    let section = &readme[readme.find("## Alerts").unwrap()..];
    let start = section.find("```toml\n").unwrap() + 8;
    let end = start + section[start..].find("```").unwrap();
    let text = format!(
        "[[providers]]\nname = \"legacy\"\nsimulate = \"legacy\"\nmodel = \"gpt-4.1\"\n{}",
        &section[start..end]
    );
    let config = file::parse(&text, "README.md", &|var: &str| match var {
        "DINGTALK_WEBHOOK_URL" => Ok(Secret::new(
            "https://oapi.dingtalk.com/robot/send?access_token=x",
        )),
        "DINGTALK_SECRET" => Ok(Secret::new("SECx")),
        other => Err(SecretError::NotSet { var: other.into() }),
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.alerts.rules.len(), 2);
}

/// A relay behind a proxy that goes down for three seconds and comes back: the "relay down"
/// alert fires once and resolves once (webhook, Prometheus, recording markers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_goes_down_and_comes_back_fires_once_and_resolves_once() {
    let relay = sim(SimProfile {
        ttft_p50_ms: 20.0,
        ttft_p99_ms: 40.0,
        tokens_per_second: 500.0,
        tokens_per_response: 5,
        drop_rate: 0.0,
        ..SimProfile::default()
    })
    .await;
    let proxy = support::proxy::Proxy::start(relay.addr()).await;
    let (base, mut caught) = receiver().await;
    let text = format!(
        r#"
[defaults]
heartbeat_s = 0.2
dead_after_s = 1
backoff = {{ base_ms = 40, cap_ms = 150, max_attempts = 1000 }}

[[providers]]
name = "legacy"
url = "{}"
api_key_env = "RELAYTOP_TEST_KEY"
model = "gpt-4.1"
requests_per_minute = 6000

[[sessions]]
name = "probe-legacy"
provider = "legacy"
count = 2
interval_s = 0.2
max_tokens = 5

[[alerts]]
name = "relay down"
figure = "sessions_down"
above = 0
scope = "provider:legacy"
severity = "critical"
renotify_s = 0
receivers = ["hook", "refusing"]

[alert_receivers.refusing]
kind = "slack"
url_env = "REFUSE_URL"
{}
"#,
        proxy.ws_url("/v1/stream"),
        receivers_toml(&base)
    );
    let config = file::parse(&text, "down.toml", &env_for(&base)).unwrap_or_else(|e| panic!("{e}"));
    let root = tempfile::tempdir().unwrap();
    let mut world = World::start(config, &relaytop_sim::Embedded)
        .await
        .expect("world");
    world.recording = Some(relaytop_core::record::RecordOptions::new(root.path()));
    let metrics_url = world
        .serve_metrics(([127, 0, 0, 1], 0).into())
        .await
        .unwrap();
    let outage = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        proxy.set(|t| t.down = true);
        tokio::time::sleep(Duration::from_millis(3000)).await;
        proxy.clear();
        proxy
    });
    let options = HeadlessOptions {
        duration: Some(Duration::from_secs(8)),
        requests: None,
        format: OutputFormat::Json,
    };
    let mut out = Vec::new();
    let report = headless::run(&world, &options, &mut out)
        .await
        .expect("the run completes");
    let _proxy = outage.await.unwrap();
    let exposition = reqwest::get(&metrics_url)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let dir = world.recording_dir().expect("recorded");
    world.stop().await;

    let mut said = Vec::new();
    while let Ok(c) = caught.try_recv() {
        if c.target.starts_with("/webhook/") {
            said.push(c.body["status"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(said, vec!["firing", "resolved"], "{report:?}");

    let alerts = report.alerts.as_ref().unwrap();
    assert!(alerts.firing.is_empty() && alerts.pending.is_empty());
    let transitions: Vec<Transition> = alerts.recent.iter().map(|n| n.transition).collect();
    assert_eq!(transitions, vec![Transition::Resolved, Transition::Fired]);
    assert!(alerts.recent[1].value.unwrap() >= 1.0);

    assert!(
        exposition.contains(
            "relaytop_alert_state{alert=\"relay down\",severity=\"critical\",scope=\"provider:legacy\"} 0"
        ),
        "{exposition}"
    );

    let mut recorded = String::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "jsonl") {
            recorded.push_str(&std::fs::read_to_string(path).unwrap());
        }
    }
    assert!(recorded.contains("alert firing: relay down · provider:legacy"));
    assert!(recorded.contains("alert resolved: relay down · provider:legacy"));
    // The refusing receiver's failures are recorded and counted.
    // Both (firing and resolved), each in both sessions' files.
    assert_eq!(
        recorded
            .matches("alert not delivered: relay down to refusing (HTTP 403)")
            .count(),
        4
    );
    assert_eq!(
        (alerts.deliveries.sent, alerts.deliveries.failed),
        (2, 2),
        "{:?}",
        alerts.deliveries
    );
}
