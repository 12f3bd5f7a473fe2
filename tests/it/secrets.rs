//! No key is ever written: a recognizable key goes through config loading, sessions that
//! connect and sessions that are refused, every headless output format and the logs, and
//! none of them contains it (nor its first 12 characters).

use crate::support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use relaytop::headless::{self, HeadlessOptions, OutputFormat};
use relaytop_core::config::file;
use relaytop_core::config::secret::{Secret, SecretError};
use relaytop_core::world::World;
use relaytop_sim::SimProfile;
use support::{TEST_KEY, sim};

/// A writer the test can read back: what tracing wrote.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn assert_clean(what: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    assert!(!text.contains(TEST_KEY), "{what} contains the key:\n{text}");
    assert!(
        !text.contains(&TEST_KEY[..12]),
        "{what} contains the key's first 12 characters:\n{text}"
    );
}

fn config_text(good_url: &str, refusing_url: &str) -> String {
    format!(
        r#"
[defaults]
heartbeat_s = 0.2
dead_after_s = 2

[[providers]]
name = "good"
url = "{good_url}"
api_key_env = "RELAYTOP_TEST_KEY"
model = "gpt-4.1"

[[providers]]
name = "refusing"
url = "{refusing_url}"
api_key_env = "RELAYTOP_TEST_KEY"
model = "gpt-4.1"

[[sessions]]
name = "probe"
provider = "good"
count = 2
interval_s = 0.1

[[sessions]]
name = "refused"
provider = "refusing"
"#
    )
}

#[tokio::test(flavor = "current_thread")]
async fn the_key_appears_in_no_output_log_or_debug_print() {
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer({
            let logs = logs.clone();
            move || logs.clone()
        })
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let good = sim(SimProfile {
        accepted_keys: Some(vec![TEST_KEY.into()]),
        ..SimProfile::default()
    })
    .await;
    let refusing = sim(SimProfile {
        accepted_keys: Some(vec!["hs_live_someoneelse000000".into()]),
        ..SimProfile::default()
    })
    .await;
    let text = config_text(&good.url(), &refusing.url());
    // The key arrives the way users' keys do: with a trailing newline.
    let read_key = |var: &str| match var {
        "RELAYTOP_TEST_KEY" => Ok(Secret::new(format!("{TEST_KEY}\n"))),
        other => Err(SecretError::NotSet { var: other.into() }),
    };
    let config = file::parse(&text, "secrets.toml", &read_key).expect("config parses");
    assert_clean("Debug of the config", format!("{config:?}").as_bytes());
    assert_clean(
        "Debug of the session specs",
        format!("{:#?}", config.sessions).as_bytes(),
    );
    let world = World::start(config, &relaytop_sim::Embedded)
        .await
        .expect("world starts");

    for format in [OutputFormat::Ndjson, OutputFormat::Json, OutputFormat::Text] {
        let mut out = Vec::new();
        let options = HeadlessOptions {
            duration: Some(Duration::from_millis(1200)),
            requests: None,
            format,
        };
        let report = headless::run(&world, &options, &mut out)
            .await
            .expect("headless run");
        assert_clean(&format!("{format:?} output"), &out);
        let good_stats = report_provider(&report, "good");
        assert!(good_stats > 0, "the good provider answered ({format:?})");
    }
    world.stop().await;
    good.stop().await;
    refusing.stop().await;
    let logs = logs.0.lock().unwrap().clone();
    assert!(!logs.is_empty(), "something was logged");
    assert_clean("the logs", &logs);
}

fn report_provider(report: &relaytop_core::report::Report, name: &str) -> u64 {
    let json = serde_json::to_value(report).unwrap();
    json["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .and_then(|p| p["completed"].as_u64())
        .unwrap_or(0)
}
