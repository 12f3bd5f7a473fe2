//! Starting with no configuration file: `relaytop URL` (as `oha URL` and `trip HOST` do), the
//! relays the environment names for other tools, and `relaytop init`. Finds what a URL's path
//! does not say by asking the relay (its model lists answer in one format or another), then
//! writes relaytop TOML (`relaytop_core::config::starter`) that the ordinary loader checks.

use std::time::Duration;

use anyhow::Context as _;

use relaytop_core::config::secret::Secret;
use relaytop_core::config::starter::{self, Watch};
use relaytop_core::config::station;
use relaytop_core::session::{AuthStyle, Protocol};

/// How long each question to the relay may take.
const ASK_TIMEOUT: Duration = Duration::from_secs(4);

/// What the command line says of a relay to watch.
#[derive(Clone, Debug, Default)]
pub struct WatchRequest {
    pub url: String,
    pub key_env: Option<String>,
    pub protocol: Option<Protocol>,
    pub model: Option<String>,
    pub auth: Option<AuthStyle>,
}

/// The relay to watch: the protocol from `--protocol`, else the URL's path, else the relay's
/// answers; the model from `--model`, else a small one of the family. `notes` says what was
/// found how.
pub async fn resolve(request: &WatchRequest, notes: &mut Vec<String>) -> anyhow::Result<Watch> {
    let url = request.url.trim();
    let parsed = url::Url::parse(url)
        .with_context(|| format!("`{url}` is not a URL: give one like https://relay.example/v1"))?;
    if !matches!(parsed.scheme(), "http" | "https" | "ws" | "wss") {
        anyhow::bail!(
            "`{url}` has scheme `{}`: use https:// (or http:// on loopback), or wss:// for \
             relay/v1 and Realtime",
            parsed.scheme()
        );
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        anyhow::bail!("`{url}` has no host");
    }
    let key = match &request.key_env {
        Some(var) => Some(Secret::from_env(var.trim()).map_err(|e| {
            anyhow::anyhow!(
                "{e} (relaytop reads keys from the environment, never the command line)"
            )
        })?),
        None => None,
    };
    let protocol = match request.protocol.or_else(|| station::protocol_of(url)) {
        Some(protocol) => protocol,
        None => {
            let found = ask(url, key.as_ref()).await;
            match found {
                Some(protocol) => {
                    notes.push(format!(
                        "{url}: the relay answers {} (pass --protocol to choose another)",
                        protocol.label()
                    ));
                    protocol
                }
                None => {
                    notes.push(format!(
                        "{url}: the relay did not say which formats it serves; watching \
                         openai-sse (pass --protocol to choose)"
                    ));
                    Protocol::OpenaiSse
                }
            }
        }
    };
    let model = request
        .model
        .clone()
        .unwrap_or_else(|| starter::probe_model(protocol).to_owned());
    Ok(Watch {
        name: starter::name_from_url(url),
        url: station::url_for(url, protocol),
        protocol,
        auth: request.auth.unwrap_or_default(),
        key_env: request.key_env.as_ref().map(|v| v.trim().to_owned()),
        model,
        found_in: starter::COMMAND_LINE.into(),
    })
}

/// Asks the station which format it serves by its model lists: OpenAI's `/v1/models` with
/// Bearer, Gemini's `/v1beta/models` with `x-goog-api-key`, Anthropic's `/v1/models` with
/// `x-api-key` and `anthropic-version`. The first that answers 2xx names the protocol; a
/// WebSocket URL is relay/v1 (or Realtime by its path) without asking.
async fn ask(url: &str, key: Option<&Secret>) -> Option<Protocol> {
    let root = station::station_root(url);
    if root.starts_with("ws://") || root.starts_with("wss://") {
        return Some(Protocol::RelayV1);
    }
    let client = reqwest::Client::builder()
        .timeout(ASK_TIMEOUT)
        .build()
        .ok()?;
    let key = key.map(Secret::expose).unwrap_or_default();
    let candidates = [
        (
            Protocol::OpenaiSse,
            format!("{root}/v1/models"),
            "authorization",
        ),
        (
            Protocol::Gemini,
            format!("{root}/v1beta/models"),
            "x-goog-api-key",
        ),
        (
            Protocol::AnthropicMessages,
            format!("{root}/v1/models"),
            "x-api-key",
        ),
    ];
    // A key shaped for one provider asks that one first.
    let order: [usize; 3] = if key.starts_with("sk-ant-") {
        [2, 0, 1]
    } else if key.starts_with("AIza") {
        [1, 0, 2]
    } else {
        [0, 1, 2]
    };
    for i in order {
        let (protocol, models, header) = &candidates[i];
        let mut request = client.get(models);
        request = match *header {
            "authorization" => request.bearer_auth(key),
            "x-api-key" => request
                .header("x-api-key", key)
                .header("anthropic-version", "2023-06-01"),
            _ => request.header(*header, key),
        };
        if let Ok(answer) = request.send().await
            && answer.status().is_success()
        {
            return Some(*protocol);
        }
    }
    None
}

/// `relaytop init`: writes `text` to `output` (`-`: standard output), refusing to replace a
/// file unless `force`. Returns where it went.
pub fn write_init(text: &str, output: Option<&str>, force: bool) -> anyhow::Result<String> {
    let path = match output {
        Some("-") => {
            print!("{text}");
            return Ok("standard output".into());
        }
        Some(path) => std::path::PathBuf::from(path),
        None => dirs::config_dir()
            .map(|dir| dir.join("relaytop").join("config.toml"))
            .context("no configuration directory on this system: give --output PATH")?,
    };
    if path.exists() && !force {
        anyhow::bail!(
            "{} exists: pass --force to replace it, or --output PATH to write elsewhere",
            path.display()
        );
    }
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path.display().to_string())
}
