//! No key anywhere, in every mode of the binary: a recognizable key (plain, and with a trailing
//! newline as `echo` leaves it) is given to providers of all three protocols, some accepted and
//! some refused (401), with RUST_LOG=trace; then every byte relaytop wrote to stdout, stderr,
//! the terminal and the disk (logs, recordings, run.json, exports) is searched for the key and
//! for its first 12 characters.
//!
//! The modes are a table (`modes`): a new mode (e.g. `relaytop chat`) is one more row.

use crate::pty;
use crate::support;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use relaytop_sim::{SimProfile, SimServer};
use support::{TEST_KEY, sim};

const KEY_VAR: &str = "RELAYTOP_TEST_KEY";
const KEY_VAR_NEWLINE: &str = "RELAYTOP_TEST_KEY_NL";

/// relaytop with everything it writes inside `tmp`, tracing everything, both keys set.
fn relaytop(tmp: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_relaytop"));
    crate::support::without_tool_variables(&mut command)
        .env("HOME", tmp)
        .env("XDG_CONFIG_HOME", tmp.join("config"))
        .env("XDG_STATE_HOME", tmp.join("state"))
        .env("RUST_LOG", "trace")
        .env(KEY_VAR, TEST_KEY)
        .env(KEY_VAR_NEWLINE, format!("{TEST_KEY}\n"))
        .arg("--log-dir")
        .arg(tmp.join("logs"))
        .arg("--record-dir")
        .arg(tmp.join("rec"));
    command
}

fn config(good: &SimServer, refusing: &SimServer) -> String {
    let provider = |name: &str, protocol: &str, url: String, var: &str, model: &str| {
        format!(
            "[[providers]]\nname = \"{name}\"\nprotocol = \"{protocol}\"\nurl = \"{url}\"\n\
             api_key_env = \"{var}\"\nmodel = \"{model}\"\n\n\
             [[sessions]]\nname = \"probe-{name}\"\nprovider = \"{name}\"\ncount = 2\n\
             interval_s = 0.2\nmax_tokens = 8\n\n"
        )
    };
    [
        "[defaults]\nheartbeat_s = 0.3\ndead_after_s = 2\nbackoff = { base_ms = 50, cap_ms = 200 }\n\n"
            .to_owned(),
        provider("relay", "relay-v1", good.url(), KEY_VAR, "gpt-4.1"),
        provider("sse", "openai-sse", good.sse_base_url(), KEY_VAR_NEWLINE, "gpt-4.1"),
        provider("voice", "openai-realtime", good.realtime_url(), KEY_VAR, "gpt-realtime"),
        provider("refused", "relay-v1", refusing.url(), KEY_VAR_NEWLINE, "gpt-4.1"),
        provider("refused-sse", "openai-sse", refusing.sse_base_url(), KEY_VAR, "gpt-4.1"),
    ]
    .concat()
}

/// What one mode wrote.
struct Written {
    mode: String,
    bytes: Vec<u8>,
}

/// Runs `command` to its end (at most `limit`); stdout and stderr together.
fn run(mode: &str, mut command: Command, limit: Duration) -> Written {
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().expect("relaytop starts");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = out.read_to_end(&mut bytes);
        bytes
    });
    let mut bytes = Vec::new();
    let _ = err.read_to_end(&mut bytes);
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "{mode} did not end");
        std::thread::sleep(Duration::from_millis(50));
    }
    bytes.extend(reader.join().unwrap());
    Written {
        mode: mode.to_owned(),
        bytes,
    }
}

/// A headless run serving Prometheus metrics, scraped twice while it runs.
async fn prometheus(tmp: &Path, config: &Path) -> Written {
    let mut command = relaytop(tmp);
    command
        .args(["--metrics-listen", "127.0.0.1:0", "--config"])
        .arg(config)
        .args(["headless", "--duration", "3s", "--format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut bytes = Vec::new();
    let url = loop {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "no metrics URL: {}",
            String::from_utf8_lossy(&bytes)
        );
        bytes.extend_from_slice(line.as_bytes());
        if let Some(i) = line.find("http://") {
            break line[i..].trim().to_owned();
        }
    };
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let body = reqwest::get(&url).await.unwrap().bytes().await.unwrap();
        assert!(body.starts_with(b"# "), "an exposition");
        bytes.extend_from_slice(&body);
    }
    let output = tokio::task::spawn_blocking(move || {
        let mut rest = Vec::new();
        stderr.read_to_end(&mut rest).unwrap();
        let out = child.wait_with_output().unwrap();
        // The refusing relay stops its sessions for their key: exit status 3 (src/exit.rs).
        assert_eq!(out.status.code(), Some(3), "{out:?}");
        [rest, out.stdout].concat()
    })
    .await
    .unwrap();
    bytes.extend(output);
    Written {
        mode: "headless with --metrics-listen (and the scraped metrics)".into(),
        bytes,
    }
}

/// The dashboard in a pseudo-terminal: a few keys (help, the details of a session, the
/// events pane, a marker), then `q`.
fn dashboard(tmp: &Path, config: &Path) -> Written {
    let mut command = relaytop(tmp);
    command.arg("--config").arg(config);
    let mut child = pty::PtyChild::spawn(command, 100, 30);
    assert!(
        child.wait_for(b"Sessions", Duration::from_secs(30)),
        "no dashboard"
    );
    for key in [&b"?"[..], b"\x1b", b"j", b"\r", b"\x1b", b"3", b"1", b"m"] {
        std::thread::sleep(Duration::from_millis(300));
        child.send(key);
    }
    std::thread::sleep(Duration::from_millis(1000));
    child.send(b"q");
    let status = child
        .wait(Duration::from_secs(20))
        .expect("the dashboard quits on q");
    assert!(status.success(), "{status:?}");
    Written {
        mode: "dashboard (pty)".into(),
        bytes: child.output(),
    }
}

/// `relaytop chat` in a pseudo-terminal: a question sent, its reply streamed, the pane left.
fn chat(tmp: &Path, config: &Path) -> Written {
    let mut command = relaytop(tmp);
    command.arg("--config").arg(config).args([
        "chat",
        "--provider",
        "relay",
        "--system",
        "Be brief.",
    ]);
    let mut child = pty::PtyChild::spawn(command, 100, 30);
    assert!(
        child.wait_for(b"chat", Duration::from_secs(30)),
        "no chat pane"
    );
    std::thread::sleep(Duration::from_millis(300));
    child.send(b"hello there");
    child.send(b"\r");
    assert!(
        child.wait_for(b"ttft", Duration::from_secs(30)),
        "no reply with its latency"
    );
    for key in [&b"/model gpt-4.1\r"[..], b"\x1b", b"\x1b"] {
        std::thread::sleep(Duration::from_millis(300));
        child.send(key);
    }
    let status = child
        .wait(Duration::from_secs(20))
        .expect("the chat pane quits on a second Esc");
    assert!(status.success(), "{status:?}");
    Written {
        mode: "chat (pty)".into(),
        bytes: child.output(),
    }
}

/// Every file under `dir`, with its bytes.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().filter_map(Result::ok) {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                out.push((path, bytes));
            }
        }
    }
    out
}

fn leaks(bytes: &[u8]) -> Option<&'static str> {
    [TEST_KEY, &TEST_KEY[..12]]
        .into_iter()
        .find(|needle| pty::contains(bytes, needle.as_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_mode_writes_the_key_anywhere() {
    let good = sim(SimProfile {
        accepted_keys: Some(vec![TEST_KEY.into()]),
        drop_rate: 0.1,
        malformed_rate: 0.05,
        tokens_per_second: 0.0,
        ..SimProfile::default()
    })
    .await;
    let refusing = sim(SimProfile {
        accepted_keys: Some(vec!["hs_live_someoneelse000000".into()]),
        ..SimProfile::default()
    })
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let tmp_path = tmp.path().to_owned();
    let config = tmp_path.join("relaytop.toml");
    std::fs::write(&config, config_text_checked(&good, &refusing)).unwrap();

    let mut written = Vec::new();
    // The live modes first: they make the recordings the others read.
    for format in ["text", "json", "ndjson"] {
        let mut c = relaytop(&tmp_path);
        c.arg("--config")
            .arg(&config)
            .args(["headless", "--duration", "2s", "--format", format]);
        written.push(run(
            &format!("headless {format}"),
            c,
            Duration::from_secs(30),
        ));
    }
    written.push(prometheus(&tmp_path, &config).await);
    {
        let (tmp_path, config) = (tmp_path.clone(), config.clone());
        written.push(
            tokio::task::spawn_blocking(move || dashboard(&tmp_path, &config))
                .await
                .unwrap(),
        );
    }
    {
        let (tmp_path, config) = (tmp_path.clone(), config.clone());
        written.push(
            tokio::task::spawn_blocking(move || chat(&tmp_path, &config))
                .await
                .unwrap(),
        );
    }
    let runs: Vec<PathBuf> = std::fs::read_dir(tmp_path.join("rec"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(runs.len(), 6, "one recording per live run: {runs:?}");

    // The modes that read what was recorded, and `check` on every protocol, accepted and
    // refused.
    let mut modes: Vec<(String, Vec<String>)> = Vec::new();
    for run_dir in &runs {
        let dir = run_dir.display().to_string();
        for format in ["text", "json", "ndjson"] {
            modes.push((
                format!("replay --headless --format {format}"),
                vec![
                    "replay".into(),
                    "--headless".into(),
                    "--format".into(),
                    format.into(),
                    dir.clone(),
                ],
            ));
        }
        for format in ["csv", "json"] {
            modes.push((
                format!("export --format {format}"),
                vec![
                    "export".into(),
                    "--format".into(),
                    format.into(),
                    dir.clone(),
                ],
            ));
        }
    }
    for (server, what) in [(&good, "accepted"), (&refusing, "refused")] {
        for url in [server.url(), server.sse_base_url(), server.realtime_url()] {
            for (var, format) in [(KEY_VAR, "text"), (KEY_VAR_NEWLINE, "json")] {
                modes.push((
                    format!("check {url} ({what}, {var}, {format})"),
                    vec![
                        "check".into(),
                        url.clone(),
                        "--key-env".into(),
                        var.into(),
                        "--format".into(),
                        format.into(),
                        "--timeout".into(),
                        "3s".into(),
                    ],
                ));
            }
        }
    }
    // The dashboard as an asciicast, and one run re-sent to another provider.
    let first = runs[0].display().to_string();
    modes.push((
        "export --format asciicast".into(),
        vec![
            "export".into(),
            "--format".into(),
            "asciicast".into(),
            first.clone(),
        ],
    ));
    let config_arg = config.display().to_string();
    modes.push((
        "replay --against".into(),
        vec![
            "--config".into(),
            config_arg.clone(),
            "replay".into(),
            first,
            "--against".into(),
            "relay".into(),
            "--as-fast-as-allowed".into(),
            "--format".into(),
            "json".into(),
        ],
    ));
    // A transcription through the relay-v1 provider (whose key has no newline).
    let wav = tmp_path.join("tone.wav");
    std::fs::write(&wav, relaytop_sim::tone_wav(16_000, 1, 300)).unwrap();
    modes.push((
        "transcribe".into(),
        vec![
            "--config".into(),
            config_arg,
            "transcribe".into(),
            wav.display().to_string(),
            "--provider".into(),
            "relay".into(),
        ],
    ));
    let limit = Duration::from_secs(60);
    let ran = tokio::task::spawn_blocking({
        let tmp_path = tmp_path.clone();
        move || {
            modes
                .into_iter()
                .map(|(mode, args)| {
                    let mut c = relaytop(&tmp_path);
                    c.args(&args);
                    run(&mode, c, limit)
                })
                .collect::<Vec<_>>()
        }
    })
    .await
    .unwrap();
    written.extend(ran);

    // Every byte written: the outputs, and every file under the temporary directory (logs,
    // recordings, run.json, the configuration itself names only the variables).
    let mut problems = Vec::new();
    for w in &written {
        assert!(!w.bytes.is_empty(), "{} wrote nothing", w.mode);
        if let Some(needle) = leaks(&w.bytes) {
            problems.push(format!("{}: {needle}", w.mode));
        }
    }
    let on_disk = files(&tmp_path);
    let logs: usize = on_disk
        .iter()
        .filter(|(p, _)| p.starts_with(tmp_path.join("logs")))
        .map(|(_, b)| b.len())
        .sum();
    assert!(logs > 10_000, "trace logs were written ({logs} bytes)");
    for (path, bytes) in &on_disk {
        if let Some(needle) = leaks(bytes) {
            problems.push(format!("{}: {needle}", path.display()));
        }
    }
    eprintln!(
        "searched {} outputs ({} bytes) and {} files ({} bytes)",
        written.len(),
        written.iter().map(|w| w.bytes.len()).sum::<usize>(),
        on_disk.len(),
        on_disk.iter().map(|(_, b)| b.len()).sum::<usize>()
    );
    if !problems.is_empty() && std::env::var_os("KEEP_SECRETS_TMP").is_some() {
        eprintln!("kept {}", tmp.keep().display());
        panic!("the key was written:\n{}", problems.join("\n"));
    }
    assert!(
        problems.is_empty(),
        "the key was written:\n{}",
        problems.join("\n")
    );
    good.stop().await;
    refusing.stop().await;
}

/// The configuration, checked to name the variables only.
fn config_text_checked(good: &SimServer, refusing: &SimServer) -> String {
    let text = config(good, refusing);
    assert!(leaks(text.as_bytes()).is_none());
    text
}

/// Relays that echo the key back: a relay/v1 upgrade refused with a 401 body quoting the
/// `Authorization` header, an openai-sse models check refused the same way, and an openai-sse
/// stream whose text repeats the key. Headless text, JSON and ndjson, the recordings, their
/// exports, `check` in text and JSON and the logs hold no byte of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_echoes_the_key_gets_it_nowhere() {
    use crate::support::rogue::{self, Act, Rogue, http, http_relay};
    let echo_401 = Rogue::start(vec![vec![Act::Respond(rogue::http_error(
        401,
        "Unauthorized",
        &[],
        &format!("invalid key: Bearer {TEST_KEY}"),
    ))]])
    .await;
    let refused_body =
        format!(r#"{{"error":{{"message":"Incorrect API key provided: Bearer {TEST_KEY}"}}}}"#);
    let (refusing_sse, refusing_task) = http_relay(
        http("401 Unauthorized", "application/json", "", &refused_body),
        String::new(),
    )
    .await;
    let stream = format!(
        "data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"your key is {TEST_KEY}\"}}}}]}}\n\n\
         data: {{\"choices\":[{{\"index\":0,\"delta\":{{}},\"finish_reason\":\"stop\"}}]}}\n\n\
         data: [DONE]\n\n"
    );
    let (echo_sse, echo_task) = http_relay(
        http("200 OK", "application/json", "", r#"{"data":[]}"#),
        http("200 OK", "text/event-stream", "", &stream),
    )
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let tmp_path = tmp.path().to_owned();
    let config = tmp_path.join("relaytop.toml");
    let provider = |name: &str, protocol: &str, url: &str| {
        format!(
            "[[providers]]\nname = \"{name}\"\nprotocol = \"{protocol}\"\nurl = \"{url}\"\n\
             api_key_env = \"{KEY_VAR}\"\nmodel = \"gpt-4o-mini\"\n\n\
             [[sessions]]\nname = \"probe-{name}\"\nprovider = \"{name}\"\ncount = 1\n\
             interval_s = 0.3\nmax_tokens = 8\n\n"
        )
    };
    let text = [
        "[defaults]\nheartbeat_s = 0.3\ndead_after_s = 2\nbackoff = { base_ms = 50, cap_ms = 200 }\n\n"
            .to_owned(),
        provider("echo-401", "relay-v1", &echo_401.url()),
        provider("echo-401-sse", "openai-sse", &refusing_sse),
        provider("echo-stream", "openai-sse", &echo_sse),
    ]
    .concat();
    std::fs::write(&config, text).unwrap();
    let mut written = Vec::new();
    for format in ["text", "json", "ndjson"] {
        let mut c = relaytop(&tmp_path);
        c.arg("--config")
            .arg(&config)
            .args(["headless", "--duration", "2s", "--format", format]);
        written.push(run(
            &format!("headless {format}"),
            c,
            Duration::from_secs(30),
        ));
    }
    let runs: Vec<PathBuf> = std::fs::read_dir(tmp_path.join("rec"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(runs.len(), 3, "one recording per run: {runs:?}");
    for run_dir in &runs {
        for format in ["csv", "json"] {
            let mut c = relaytop(&tmp_path);
            c.args(["export", "--format", format]).arg(run_dir);
            written.push(run(
                &format!("export --format {format}"),
                c,
                Duration::from_secs(30),
            ));
        }
    }
    for url in [echo_401.url(), refusing_sse.clone(), echo_sse.clone()] {
        for format in ["text", "json"] {
            let mut c = relaytop(&tmp_path);
            c.args(["check", &url, "--key-env", KEY_VAR, "--format", format])
                .args(["--timeout", "3s"]);
            written.push(run(
                &format!("check {url} ({format})"),
                c,
                Duration::from_secs(30),
            ));
        }
    }
    // The echo went through and was scrubbed, rather than never seen.
    let all: Vec<u8> = written.iter().flat_map(|w| w.bytes.clone()).collect();
    assert!(
        pty::contains(&all, b"[REDACTED]"),
        "{}",
        String::from_utf8_lossy(&all)
    );
    for w in &written {
        if let Some(needle) = leaks(&w.bytes) {
            panic!(
                "{} wrote {needle}:\n{}",
                w.mode,
                String::from_utf8_lossy(&w.bytes)
            );
        }
    }
    for (path, bytes) in files(&tmp_path) {
        if path == config {
            continue;
        }
        if let Some(needle) = leaks(&bytes) {
            panic!("{} holds {needle}", path.display());
        }
    }
    refusing_task.abort();
    echo_task.abort();
}
