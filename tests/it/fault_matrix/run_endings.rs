//! Rows of the run's endings, met through the `relaytop` binary: a recording that fails
//! (disk full), the exit statuses of a headless run, and bad input (sizes, durations,
//! directories, offsets, limits). Each asserts the exact words the user sees.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use crate::support;

/// relaytop with its config, state, logs and recordings inside `tmp` (never the user's own).
fn relaytop(tmp: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_relaytop"));
    support::without_tool_variables(&mut command)
        .env("HOME", tmp)
        .env("XDG_CONFIG_HOME", tmp.join("config"))
        .env("XDG_STATE_HOME", tmp.join("state"))
        .env("RELAYTOP_TEST_KEY", support::TEST_KEY)
        .env_remove("RUST_LOG")
        .arg("--log-dir")
        .arg(tmp.join("logs"))
        .arg("--record-dir")
        .arg(tmp.join("rec"));
    command
}

fn run(command: &mut Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = command.output().expect("relaytop runs");
    (
        status.code().expect("an exit status, not a signal"),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

/// A relay on 127.0.0.1 answering every request with `status` and an invalid-key body.
fn answering(status: &'static str) -> String {
    answering_with(
        status,
        r#"{"error":{"message":"invalid api key","type":"invalid_request_error","code":"invalid_api_key"}}"#,
    )
}

/// A relay on 127.0.0.1 answering every request with `status` and the JSON `body`.
fn answering_with(status: &'static str, body: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
                let mut buf = [0u8; 8192];
                let _ = stream.read(&mut buf);
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    format!("http://127.0.0.1:{port}/v1")
}

fn config(tmp: &Path, url: &str, extra: &str) -> std::path::PathBuf {
    let path = tmp.join("relaytop.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[[providers]]
name = "relay"
url = "{url}"
protocol = "openai-sse"
api_key_env = "RELAYTOP_TEST_KEY"
model = "gpt-4o-mini"
{extra}

[[sessions]]
name = "probe"
provider = "relay"
count = 2
interval_s = 1

[sessions.timing.backoff]
base_ms = 50
cap_ms = 50
max_attempts = 2
"#
        ),
    )
    .unwrap();
    path
}

#[test]
fn a_full_disk_stops_the_recording_not_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = run(relaytop(tmp.path())
        .env("RELAYTOP_TEST_DISK_FULL_AFTER_MS", "700")
        .args(["headless", "--duration", "2s", "--format", "json"]));
    assert_eq!(code, 5, "exit status 5: recording failed\n{stderr}");
    let summary: serde_json::Value = serde_json::from_str(&stdout).expect("the summary, whole");
    assert!(
        summary["totals"]["requests"].as_u64().unwrap() > 0,
        "{stdout}"
    );
    assert!(
        stderr.contains("relaytop: warning: recording stopped: cannot write ")
            && stderr.contains("No space left on device")
            && stderr.contains("the run goes on unrecorded and its summary is unaffected"),
        "{stderr}"
    );
    assert!(
        stderr.contains("relaytop: warning: the recording failed (")
            && stderr.contains("); the partial recording is in ")
            && stderr.contains("(it replays up to the failure)"),
        "{stderr}"
    );
    assert!(!stderr.contains("recorded to"), "{stderr}");
    // What was written before the failure replays.
    let rec = tmp.path().join("rec");
    let dir = std::fs::read_dir(&rec)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.is_dir())
        .expect("the run directory");
    let mut replay =
        relaytop_core::record::Replay::open(&[dir]).expect("the partial recording opens");
    assert!(replay.next_event().is_some(), "events before the failure");
}

#[test]
fn sessions_refused_for_their_key_exit_3() {
    let tmp = tempfile::tempdir().unwrap();
    let url = answering("401 Unauthorized");
    let config = config(tmp.path(), &url, "");
    // A refused key is re-checked, not given up on: the run goes to its end.
    let (code, stdout, stderr) = run(relaytop(tmp.path()).arg("--config").arg(&config).args([
        "headless",
        "--duration",
        "2s",
        "--format",
        "json",
    ]));
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stdout.contains("\"ended_by\": \"duration 2s elapsed\""),
        "{stdout}"
    );
    assert!(
        stderr
            .contains("relaytop: session probe-1 was refused for its key or quota (exit status 3)"),
        "{stderr}"
    );
}

#[test]
fn every_session_down_at_the_end_exits_4() {
    let tmp = tempfile::tempdir().unwrap();
    // A port nothing listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = config(tmp.path(), &format!("http://127.0.0.1:{port}/v1"), "");
    // The sessions keep looking (they never give up): the run goes to its end, all down.
    let (code, stdout, stderr) = run(relaytop(tmp.path()).arg("--config").arg(&config).args([
        "headless",
        "--duration",
        "2s",
        "--format",
        "json",
    ]));
    assert_eq!(code, 4, "{stderr}");
    assert!(stdout.contains("\"totals\""), "{stdout}");
    assert!(
        stderr.contains("relaytop: every session was down at the end (exit status 4)"),
        "{stderr}"
    );
}

#[test]
fn headless_help_lists_the_exit_statuses() {
    let tmp = tempfile::tempdir().unwrap();
    let (code, stdout, _) = run(relaytop(tmp.path()).args(["headless", "--help"]));
    assert_eq!(code, 0);
    assert!(stdout.contains(relaytop::exit::TABLE), "{stdout}");
}

#[test]
fn an_asciicast_too_big_is_refused_with_its_limits() {
    let tmp = tempfile::tempdir().unwrap();
    let (code, _, stderr) = run(relaytop(tmp.path()).args([
        "export",
        "nowhere",
        "--format",
        "asciicast",
        "--width",
        "65535",
        "--height",
        "65535",
    ]));
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("invalid value '65535' for '--width <WIDTH>': 65535 is not in 20..=500"),
        "{stderr}"
    );
    let (code, _, stderr) = run(relaytop(tmp.path()).args([
        "export",
        "nowhere",
        "--format",
        "asciicast",
        "--height",
        "4000",
    ]));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("4000 is not in 8..=200"), "{stderr}");
}

#[test]
fn a_negative_duration_is_said_to_be_one() {
    let tmp = tempfile::tempdir().unwrap();
    let (code, _, stderr) = run(relaytop(tmp.path()).args(["headless", "--duration", "-5s"]));
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(
            "invalid value '-5s' for '--duration <DURATION>': durations are positive (e.g. 30s, 5m, 1h), not -5s"
        ),
        "{stderr}"
    );
}

#[test]
fn an_unusable_log_dir_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("a-file");
    std::fs::write(&file, "not a directory").unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_relaytop"));
    support::without_tool_variables(&mut command)
        .env("HOME", tmp.path())
        .env("XDG_CONFIG_HOME", tmp.path().join("config"))
        .env("XDG_STATE_HOME", tmp.path().join("state"))
        .arg("--log-dir")
        .arg(&file)
        .args(["headless", "--duration", "1s"]);
    let (code, _, stderr) = run(&mut command);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "relaytop: cannot use --log-dir {}: ",
            file.display()
        )) && stderr.contains(
            "give a directory relaytop can write to, or leave --log-dir out for the default"
        ),
        "{stderr}"
    );
}

#[test]
fn replay_start_at_past_the_end_is_warned_of() {
    let tmp = tempfile::tempdir().unwrap();
    let (code, _, stderr) =
        run(relaytop(tmp.path()).args(["headless", "--duration", "1s", "--format", "json"]));
    assert_eq!(code, 0, "{stderr}");
    let dir = std::fs::read_dir(tmp.path().join("rec"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.is_dir())
        .expect("the run directory");
    let (code, _, stderr) = run(relaytop(tmp.path()).arg("replay").arg(&dir).args([
        "--headless",
        "--format",
        "json",
        "--start-at",
        "9999",
    ]));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("relaytop: warning: --start-at 9999 is past the end of the recording (")
            && stderr.contains("nothing is replayed; give a smaller --start-at"),
        "{stderr}"
    );
}

#[test]
fn probes_past_the_provider_limits_are_warned_of_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    // Nothing listens: the warning comes at start, whatever the relay does.
    let config = config(
        tmp.path(),
        "http://127.0.0.1:9/v1",
        "requests_per_minute = 60\nmax_connections = 1",
    );
    let (_, _, stderr) = run(relaytop(tmp.path()).arg("--config").arg(&config).args([
        "headless",
        "--duration",
        "1s",
        "--format",
        "json",
    ]));
    assert!(
        stderr.contains(
            "relaytop: warning: provider `relay`: 2 sessions but max_connections = 1: only 1 connect at once, the others wait for a connection; raise max_connections under its [[providers]] to run them all"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "relaytop: warning: provider `relay`: its probes ask for 120 requests a minute but requests_per_minute = 60: probes wait for the limit (rate-limit waits in the summary); raise requests_per_minute under its [[providers]], or probe less often (interval_s)"
        ),
        "{stderr}"
    );
}

#[tokio::test]
async fn check_fails_the_request_step_on_a_400_that_says_why() {
    let url = answering_with(
        "400 Bad Request",
        r#"{"error":{"message":"model gpt-4o-mini is not available on this channel","type":"invalid_request_error","code":"model_not_found"}}"#,
    );
    let mut options = relaytop::check::CheckOptions::new(&url);
    options.key_env = Some("RELAY_KEY".into());
    options.env =
        std::sync::Arc::new(|var| (var == "RELAY_KEY").then(|| support::TEST_KEY.to_owned()));
    options.timeout = Duration::from_secs(3);
    let report = relaytop::check::run(&options).await;
    let step = report.step("request").expect("a request step");
    assert_eq!(
        step.verdict,
        relaytop::check::Verdict::Fail,
        "{}",
        report.to_text()
    );
    assert!(
        step.detail.contains("answered 400: ")
            && step
                .detail
                .contains("model gpt-4o-mini is not available on this channel"),
        "{}",
        report.to_text()
    );
    assert!(!report.passed);
}
