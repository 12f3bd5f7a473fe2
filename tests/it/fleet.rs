//! The fleet: `relaytop agent` (its labels, `/healthz`, a SIGHUP reload that keeps the
//! unchanged sessions, a summary on SIGTERM), `relaytop rules` (docs/fleet/rules.yml is what
//! it prints), and the fleet view's PromQL client against answers a real Prometheus gave
//! (tests/fixtures/prometheus/, recorded by tests/fleet_prometheus.sh). The test with a real
//! Prometheus server is `#[ignore]`d: `cargo test --test it fleet -- --ignored`.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use relaytop_core::fleet::promql::{self, Client};

use crate::support;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/prometheus");

/// A stand-in Prometheus on 127.0.0.1: answers `/api/v1/query` with the recorded answer of
/// the fleet view's query of the same text (`promql::queries("5m")`), 400 otherwise.
async fn recorded_prometheus() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let names: Vec<(&'static str, String)> = promql::queries("5m");
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let names = names.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                let mut n = 0;
                while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf[n..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => n += k,
                    }
                }
                let head = String::from_utf8_lossy(&buf[..n]).into_owned();
                let target = head.split_whitespace().nth(1).unwrap_or_default();
                let url = url::Url::parse(&format!("http://x{target}")).unwrap();
                let query = url
                    .query_pairs()
                    .find(|(k, _)| k == "query")
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default();
                let (status, body) = match names.iter().find(|(_, q)| *q == query) {
                    Some((name, _)) if url.path() == "/api/v1/query" => (
                        "200 OK",
                        std::fs::read_to_string(format!("{FIXTURES}/{name}.json")).unwrap(),
                    ),
                    _ => (
                        "400 Bad Request",
                        r#"{"status":"error","errorType":"bad_data","error":"unknown query"}"#
                            .to_owned(),
                    ),
                };
                let answer = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_view_reads_two_locations_from_recorded_prometheus_answers() {
    let base = recorded_prometheus().await;
    let client = Client::new(&base).unwrap();
    let fleet = client.fleet("5m").await.unwrap();
    assert_eq!(fleet.locations(), vec!["fra", "sg"], "{fleet:#?}");
    // Two relays at each location.
    assert_eq!(fleet.rows.len(), 4, "{fleet:#?}");
    for row in &fleet.rows {
        assert_eq!(row.sessions, 4, "{row:?}");
        assert!(row.requests_per_s.unwrap() > 0.5, "{row:?}");
        assert!(row.ttft_p99_ms.unwrap() > 50.0, "{row:?}");
        assert!(row.cost_usd.is_some(), "{row:?}");
    }
    // The legacy relay is the slow one, from both places.
    let legacy: Vec<_> = fleet
        .rows
        .iter()
        .filter(|r| r.provider == "legacy")
        .collect();
    let holysheep: Vec<_> = fleet
        .rows
        .iter()
        .filter(|r| r.provider == "holysheep")
        .collect();
    for (l, h) in legacy.iter().zip(&holysheep) {
        assert!(
            l.ttft_p50_ms.unwrap() > h.ttft_p50_ms.unwrap(),
            "{l:?} {h:?}"
        );
    }
    // "legacy slow" fires at both places, in Prometheus (the generated rule) and in each
    // agent's own engine: the same decision.
    assert_eq!(fleet.alerts.len(), 4, "{:#?}", fleet.alerts);
    for source in ["prometheus", "agent"] {
        let at: Vec<&str> = fleet
            .alerts
            .iter()
            .filter(|a| a.source == source && a.name == "legacy slow")
            .map(|a| a.location.as_str())
            .collect();
        assert_eq!(at, vec!["fra", "sg"], "{source}");
    }
    let text = fleet.to_text();
    assert!(
        text.lines().any(|l| l.starts_with("sg ")) && text.lines().any(|l| l.starts_with("fra ")),
        "{text}"
    );
    // A query Prometheus refuses is said with its words.
    let e = client.query("nope(").await.unwrap_err();
    assert!(e.to_string().contains("unknown query"), "{e}");
}

/// What `relaytop rules --config CONFIG` prints, with no variable of the machine's set.
fn rules_of(config: &str) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_relaytop"));
    let output = support::without_tool_variables(&mut command)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("ALERT_WEBHOOK_URL")
        .args(["rules", "--config", config])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn rules_print_for_a_config_whose_receivers_variables_are_not_set() {
    // The rules need no webhook: a config with receivers prints its rules on a machine that
    // has none of their variables.
    let printed = rules_of("docs/examples/alerts.toml");
    assert!(
        printed.contains("groups:") && printed.contains("alert:"),
        "{printed}"
    );
    assert!(
        !printed.contains("rules.invalid"),
        "the stand-in never shows"
    );
}

#[test]
fn the_fleet_docs_rules_are_what_relaytop_rules_prints() {
    let printed = rules_of("docs/fleet/agent.toml");
    let checked_in = include_str!("../../docs/fleet/rules.yml");
    assert_eq!(
        printed, checked_in,
        "regenerate: relaytop rules --config docs/fleet/agent.toml > docs/fleet/rules.yml"
    );
    for alert in [
        "legacy slow",
        "errors",
        "drops",
        "sessions down",
        "error budget burn",
    ] {
        assert!(
            printed.contains(&format!("- alert: \"{alert}\"")),
            "{alert}"
        );
    }
}

const AGENT_CONFIG: &str = r#"
[[providers]]
name = "legacy"
simulate = "legacy"
model = "gpt-4.1"

[[sessions]]
name = "a"
provider = "legacy"
interval_s = 0.5
max_tokens = 10
"#;

/// Lines of the agent's stderr, as they come.
fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

fn wait_for(lines: &mpsc::Receiver<String>, wanted: &str, seen: &mut Vec<String>) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(line) => {
                seen.push(line.clone());
                if line.contains(wanted) {
                    return line;
                }
            }
            Err(_) => break,
        }
    }
    panic!("no `{wanted}` on the agent's stderr: {seen:#?}");
}

async fn get(url: &str) -> (u16, String) {
    let response = reqwest::get(url).await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_labels_its_series_reloads_on_sighup_and_stops_with_a_summary() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!("{AGENT_CONFIG}\n[[sessions]]\nname = \"b\"\nprovider = \"legacy\"\ninterval_s = 0.5\nmax_tokens = 10\n"),
    )
    .unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_relaytop"));
    let mut child = support::without_tool_variables(&mut command)
        .args(["--no-record", "agent", "--config"])
        .arg(&config)
        .args([
            "--location",
            "test-loc",
            "--label",
            "team=qa",
            "--listen",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = Pid::from_raw(i32::try_from(child.id()).unwrap());
    let lines = lines_of(&mut child);
    let mut seen = Vec::new();
    let line = wait_for(&lines, "Prometheus metrics at ", &mut seen);
    let url = line
        .split("Prometheus metrics at ")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .to_owned();
    let base = url.trim_end_matches("/metrics").to_owned();

    // Every series has the location and the label; /healthz says the agent is alive.
    let (status, text) = get(&url).await;
    assert_eq!(status, 200);
    let samples: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("relaytop_"))
        .collect();
    assert!(!samples.is_empty(), "{text}");
    for sample in &samples {
        assert!(
            sample.contains("location=\"test-loc\"") && sample.contains("team=\"qa\""),
            "{sample}"
        );
    }
    let (status, health) = get(&format!("{base}/healthz")).await;
    assert_eq!(status, 200, "{health}");
    assert!(health.starts_with("ok"), "{health}");

    // A reload that keeps a, removes b and adds c.
    std::fs::write(
        &config,
        format!("{AGENT_CONFIG}\n[[sessions]]\nname = \"c\"\nprovider = \"legacy\"\ninterval_s = 0.5\nmax_tokens = 10\n"),
    )
    .unwrap();
    kill(pid, Signal::SIGHUP).unwrap();
    wait_for(&lines, "reloaded: 1 kept, 1 started, 1 stopped", &mut seen);
    let (_, text) = get(&url).await;
    assert!(text.contains("session=\"c\""), "{text}");
    // The same file again changes nothing.
    kill(pid, Signal::SIGHUP).unwrap();
    wait_for(&lines, "reloaded: 2 kept, 0 started, 0 stopped", &mut seen);
    // A file that does not parse is refused, and the sessions run on.
    std::fs::write(&config, "[[providers]\n").unwrap();
    kill(pid, Signal::SIGHUP).unwrap();
    wait_for(&lines, "reload refused", &mut seen);

    // SIGTERM: the summary, and a clean exit.
    tokio::time::sleep(Duration::from_millis(500)).await;
    kill(pid, Signal::SIGTERM).unwrap();
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("terminated (SIGTERM)"), "{stdout}");
}

/// Two agents with different locations, a real Prometheus scraping them with the generated
/// rules, and the fleet view showing both (tests/fleet_prometheus.sh; needs Debian's
/// `prometheus` package: promtool and prometheus on the PATH).
#[test]
#[ignore = "needs a Prometheus server (apt-get install prometheus); about 90 s"]
fn two_agents_and_a_real_prometheus_show_two_locations() {
    let output = Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fleet_prometheus.sh"
        ))
        .env("RELAYTOP_BIN", env!("CARGO_BIN_EXE_relaytop"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("PASS"), "{stdout}");
}
