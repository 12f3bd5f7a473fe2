//! Starting with no configuration file, as a new user does: `relaytop URL --key-env VAR` for
//! a station of each format (the protocol from the path, or from asking the relay), the
//! variables other tools already use (`OPENAI_BASE_URL` + `OPENAI_API_KEY`,
//! `ANTHROPIC_BASE_URL` + `ANTHROPIC_AUTH_TOKEN`, `GOOGLE_GEMINI_BASE_URL` + `GEMINI_API_KEY`),
//! and `relaytop init` writing a configuration that loads. Every relay is a simulator on
//! 127.0.0.1; the machine's own variables are removed.

use std::path::Path;
use std::process::{Command, Output};

use relaytop_sim::SimProfile;

use crate::support;

/// Ordinary keys, as people have them.
const OPENAI_KEY: &str = "sk-proj-relaytopStartFromUrl0001";
const ANTHROPIC_KEY: &str = "sk-ant-api03-relaytopStartFromUrl01";
const GEMINI_KEY: &str = "AIzaSyRelaytopStartFromUrl00001";

fn relaytop(tmp: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_relaytop"));
    support::without_tool_variables(&mut command)
        .env("HOME", tmp)
        .env("XDG_CONFIG_HOME", tmp.join("config"))
        .env("XDG_STATE_HOME", tmp.join("state"))
        .env_remove("RUST_LOG")
        .arg("--no-record")
        .arg("--log-dir")
        .arg(tmp.join("logs"));
    command
}

fn report(output: &Output) -> serde_json::Value {
    assert!(
        output.status.success(),
        "{:?}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\nstderr: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn quick() -> SimProfile {
    SimProfile {
        ttft_p50_ms: 30.0,
        ttft_p99_ms: 30.0,
        tokens_per_second: 2000.0,
        ..SimProfile::default()
    }
}

/// Completed responses over every provider of a headless JSON report.
fn completed(report: &serde_json::Value) -> u64 {
    report["providers"]
        .as_array()
        .expect("providers")
        .iter()
        .map(|p| p["completed"].as_u64().unwrap_or(0))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_and_a_key_variable_are_all_it_takes() {
    let server = support::sim(quick()).await;
    let root = server.root_url();
    let cases = [
        (format!("{root}/v1"), "KEY", OPENAI_KEY, "openai-sse"),
        (
            format!("{root}/v1/chat/completions"),
            "KEY",
            OPENAI_KEY,
            "openai-sse",
        ),
        (
            format!("{root}/v1/messages"),
            "ANTHROPIC_KEY",
            ANTHROPIC_KEY,
            "anthropic-messages",
        ),
        (
            format!("{root}/v1/responses"),
            "KEY",
            OPENAI_KEY,
            "openai-responses",
        ),
        (format!("{root}/v1beta"), "GEMINI_KEY", GEMINI_KEY, "gemini"),
    ];
    for (url, var, key, protocol) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let url_arg = url.clone();
        let tmp_path = tmp.path().to_owned();
        let output = tokio::task::spawn_blocking(move || {
            relaytop(&tmp_path)
                .arg(&url_arg)
                .args(["--key-env", var, "--interval", "0.3"])
                .args(["headless", "--duration", "2s", "--format", "json"])
                .env(var, format!("{key}\n"))
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        let report = report(&output);
        let source = report["run"]["source"].as_str().unwrap_or_default();
        assert!(
            source.starts_with("watching ") && source.contains(protocol),
            "{url}: {source}"
        );
        assert!(completed(&report) >= 2, "{url}: {report:#}");
        let everything = [&output.stdout[..], &output.stderr[..]].concat();
        assert!(
            !String::from_utf8_lossy(&everything).contains(key),
            "{url}: the key is in the output"
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bare_base_is_asked_which_format_it_serves() {
    let server = support::sim(quick()).await;
    let root = server.root_url();
    let tmp = tempfile::tempdir().unwrap();
    let tmp_path = tmp.path().to_owned();
    let output = tokio::task::spawn_blocking(move || {
        relaytop(&tmp_path)
            .arg(&root)
            .args(["--key-env", "KEY", "--interval", "0.3"])
            .args(["headless", "--duration", "1500ms", "--format", "json"])
            .env("KEY", OPENAI_KEY)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let report = report(&output);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("the relay answers openai-sse"), "{stderr}");
    assert!(completed(&report) >= 1, "{report:#}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_variables_other_tools_use_name_the_relays() {
    let server = support::sim(quick()).await;
    let root = server.root_url();
    let tmp = tempfile::tempdir().unwrap();
    let tmp_path = tmp.path().to_owned();
    let output = tokio::task::spawn_blocking(move || {
        relaytop(&tmp_path)
            .args(["--interval", "0.3"])
            .args(["headless", "--duration", "2s", "--format", "json"])
            .env("OPENAI_BASE_URL", format!("{root}/v1"))
            .env("OPENAI_API_KEY", OPENAI_KEY)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let report = report(&output);
    let source = report["run"]["source"].as_str().unwrap_or_default();
    assert!(
        source.contains("from OPENAI_BASE_URL"),
        "the run says what it watches: {source}"
    );
    assert!(completed(&report) >= 1, "{report:#}");
    server.stop().await;
}

#[test]
fn init_writes_a_commented_configuration_that_loads() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("relaytop.toml");
    let output = relaytop(tmp.path())
        .args(["init", "--output"])
        .arg(&path)
        .env("ANTHROPIC_BASE_URL", "http://127.0.0.1:9")
        .env("ANTHROPIC_AUTH_TOKEN", ANTHROPIC_KEY)
        .env("GOOGLE_GEMINI_BASE_URL", "http://127.0.0.1:9/v1beta")
        .env("GEMINI_API_KEY", GEMINI_KEY)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let text = std::fs::read_to_string(&path).unwrap();
    for needle in [
        "protocol = \"anthropic-messages\"",
        "auth = \"bearer\"",
        "api_key_env = \"ANTHROPIC_AUTH_TOKEN\"",
        "protocol = \"gemini\"",
        "api_key_env = \"GEMINI_API_KEY\"",
        "# ",
    ] {
        assert!(text.contains(needle), "{needle} not in:\n{text}");
    }
    assert!(!text.contains(ANTHROPIC_KEY) && !text.contains(GEMINI_KEY));
    let read_key = |_: &str| Ok(relaytop_core::config::secret::Secret::new("k"));
    let config = relaytop_core::config::file::parse(&text, "init", &read_key)
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(config.providers.len(), 2);
    // A second init does not overwrite without --force.
    let again = relaytop(tmp.path())
        .args(["init", "--output"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("--force"),
        "{again:?}"
    );
}
