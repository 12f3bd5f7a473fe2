//! Transcription of a WAV file through a relay (relay/v1 `audio.transcription`): the file
//! read and checked (`read_wav`), one session started for it, and the transcript waited for
//! (`transcribe`). `relaytop transcribe` and the chat pane's `/transcribe` both use it.

use std::io::Cursor;
use std::path::Path;
use std::time::Duration;

use crate::session::{
    self, EventKind, Protocol, RunClock, SessionCommand, SessionSpec, SessionState, Workload,
};

/// The model asked for when none is given.
pub const DEFAULT_MODEL: &str = "whisper-1";

/// The largest file sent (what common transcription APIs take).
pub const MAX_WAV_BYTES: u64 = 25 * 1024 * 1024;

/// A WAV file, read and checked.
#[derive(Clone, Debug, PartialEq)]
pub struct WavAudio {
    /// The whole file, as sent.
    pub bytes: Vec<u8>,
    pub sample_rate: u32,
    pub channels: u16,
    pub bits_per_sample: u16,
    pub duration: Duration,
}

impl WavAudio {
    /// `1.50 s of audio (16000 Hz, mono, 16-bit)`.
    pub fn describe(&self) -> String {
        let channels = match self.channels {
            1 => "mono".to_owned(),
            2 => "stereo".to_owned(),
            n => format!("{n} channels"),
        };
        format!(
            "{:.2} s of audio ({} Hz, {channels}, {}-bit)",
            self.duration.as_secs_f64(),
            self.sample_rate,
            self.bits_per_sample
        )
    }
}

/// What went wrong with a transcription, in words that say what to do.
#[derive(Debug, thiserror::Error)]
pub enum TranscribeError {
    #[error("{path}: no such file: give the path of a WAV file")]
    Missing { path: String },
    #[error("cannot read {path}: {reason}")]
    Unreadable { path: String, reason: String },
    #[error(
        "{path} is not a WAV file ({reason}): convert it first, e.g. `ffmpeg -i {path} -ar 16000 -ac 1 out.wav` or `sox {path} out.wav`"
    )]
    NotWav { path: String, reason: String },
    #[error("{path} is {size} bytes: a transcription takes at most 25 MiB; cut it into parts")]
    TooLarge { path: String, size: u64 },
    #[error(
        "provider {provider} speaks {protocol}: transcription needs a relay-v1 provider (relay/v1 `audio.transcription`); pick one with --provider"
    )]
    Protocol { provider: String, protocol: String },
    #[error("the relay did not transcribe: {0}")]
    Failed(String),
    #[error("no transcript within {seconds} s{last}")]
    Timeout { seconds: u64, last: String },
}

/// Reads `path` and checks that it is a WAV file (with `hound`).
pub fn read_wav(path: &Path) -> Result<WavAudio, TranscribeError> {
    let shown = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => TranscribeError::Missing {
            path: shown.clone(),
        },
        _ => TranscribeError::Unreadable {
            path: shown.clone(),
            reason: e.to_string(),
        },
    })?;
    if meta.is_dir() {
        return Err(TranscribeError::NotWav {
            path: shown,
            reason: "it is a directory".into(),
        });
    }
    if meta.len() > MAX_WAV_BYTES {
        return Err(TranscribeError::TooLarge {
            path: shown,
            size: meta.len(),
        });
    }
    let bytes = std::fs::read(path).map_err(|e| TranscribeError::Unreadable {
        path: shown.clone(),
        reason: e.to_string(),
    })?;
    parse_wav(bytes).map_err(|reason| TranscribeError::NotWav {
        path: shown,
        reason,
    })
}

/// Checks that `bytes` are a WAV file and reads its format.
pub fn parse_wav(bytes: Vec<u8>) -> Result<WavAudio, String> {
    let (spec, frames) = {
        let reader = hound::WavReader::new(Cursor::new(&bytes)).map_err(|e| e.to_string())?;
        (reader.spec(), reader.duration())
    };
    if spec.sample_rate == 0 {
        return Err("its sample rate is 0".into());
    }
    let duration = Duration::from_secs_f64(f64::from(frames) / f64::from(spec.sample_rate));
    Ok(WavAudio {
        bytes,
        sample_rate: spec.sample_rate,
        channels: spec.channels,
        bits_per_sample: spec.bits_per_sample,
        duration,
    })
}

/// A transcript and how long it took.
#[derive(Clone, Debug, PartialEq)]
pub struct Transcript {
    pub text: String,
    /// From sending the audio to `done`.
    pub total: Duration,
    /// The model the relay was asked for.
    pub model: String,
}

/// Transcribes `audio` through a new session `spec` (its workload is replaced: the session
/// connects, sends the audio, and is closed once the transcript is in). Fails after `timeout`.
pub async fn transcribe(
    mut spec: SessionSpec,
    audio: Vec<u8>,
    model: String,
    timeout: Duration,
) -> Result<Transcript, TranscribeError> {
    if spec.info.protocol != Protocol::RelayV1 {
        return Err(TranscribeError::Protocol {
            provider: spec.info.provider.clone(),
            protocol: spec.info.protocol.label().into(),
        });
    }
    spec.workload = Workload::OnDemand;
    let (tx, mut events) = crate::session::stream::channel(256);
    let handle = session::spawn(spec, RunClock::new(), tx);
    let _ = handle
        .commands
        .send(SessionCommand::Transcribe {
            audio,
            model: model.clone(),
        })
        .await;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut text: Option<String> = None;
    let mut last_problem = String::new();
    let outcome = loop {
        let event = match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(event)) => event,
            Ok(None) => break Err(TranscribeError::Failed("the session ended".into())),
            Err(_) => {
                break Err(TranscribeError::Timeout {
                    seconds: timeout.as_secs(),
                    last: if last_problem.is_empty() {
                        String::new()
                    } else {
                        format!(" (last problem: {last_problem})")
                    },
                });
            }
        };
        match event.kind {
            EventKind::Transcript {
                text: piece,
                is_final,
                ..
            } => {
                // Partial transcripts are replaced by the next one; the final one wins.
                if is_final || text.is_none() {
                    text = Some(piece);
                } else if let Some(text) = &mut text {
                    *text = piece;
                }
            }
            EventKind::Done(done) => {
                break match text.take() {
                    Some(text) => Ok(Transcript {
                        text,
                        total: Duration::from_micros(done.total_us),
                        model: model.clone(),
                    }),
                    None => Err(TranscribeError::Failed(
                        "the relay ended the request without a transcript".into(),
                    )),
                };
            }
            EventKind::RequestFailed { reason, .. } => break Err(TranscribeError::Failed(reason)),
            EventKind::Error {
                message, retryable, ..
            } => {
                if !retryable {
                    break Err(TranscribeError::Failed(message));
                }
                last_problem = message;
            }
            EventKind::State(SessionState::Stopped { reason }) => {
                break Err(TranscribeError::Failed(reason));
            }
            _ => {}
        }
    };
    let _ = handle.commands.send(SessionCommand::Close).await;
    let abort = handle.task.abort_handle();
    // Drain so that the closing session is never blocked on a full channel.
    let drain = async { while events.recv().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(2), async {
        tokio::join!(handle.task, drain)
    })
    .await
    .is_err()
    {
        abort.abort();
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_bytes_are_not_a_wav() {
        let error = parse_wav(b"ID3\x03not a wav at all".to_vec()).unwrap_err();
        assert!(!error.is_empty());
    }

    #[test]
    fn missing_files_and_other_files_say_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.wav");
        let error = read_wav(&missing).unwrap_err().to_string();
        assert!(
            error.contains("nope.wav") && error.contains("no such file"),
            "{error}"
        );
        let mp3 = dir.path().join("song.mp3");
        std::fs::write(&mp3, b"ID3\x03\x00\x00\x00\x00\x00\x00").unwrap();
        let error = read_wav(&mp3).unwrap_err().to_string();
        assert!(error.contains("song.mp3 is not a WAV file"), "{error}");
        assert!(error.contains("convert it first"), "{error}");
    }
}
