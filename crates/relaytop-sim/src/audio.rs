//! Simulated transcription: a deterministic transcript derived from the audio bytes (the WAV
//! header when there is one), and a small WAV maker for tests and the demo world. No I/O.

/// What a WAV (RIFF) header says about its audio.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WavInfo {
    pub channels: u16,
    pub sample_rate: u32,
    pub bits_per_sample: u16,
    /// Bytes of sample data (those present, when the header claims more).
    pub data_bytes: u64,
}

impl WavInfo {
    /// The duration of the sample data, in seconds.
    pub fn duration_secs(&self) -> f64 {
        let bytes_per_second = u64::from(self.sample_rate)
            * u64::from(self.channels)
            * u64::from(self.bits_per_sample).div_ceil(8);
        if bytes_per_second == 0 {
            0.0
        } else {
            self.data_bytes as f64 / bytes_per_second as f64
        }
    }
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

/// Reads the `fmt ` and `data` chunks of a RIFF/WAVE file; `None` when it is not one.
pub fn parse_wav(bytes: &[u8]) -> Option<WavInfo> {
    if bytes.get(0..4)? != b"RIFF" || bytes.get(8..12)? != b"WAVE" {
        return None;
    }
    let mut format: Option<(u16, u32, u16)> = None;
    let mut at = 12;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let size = u32_at(bytes, at + 4)? as usize;
        let body = at + 8;
        match id {
            b"fmt " => {
                format = Some((
                    u16_at(bytes, body + 2)?,
                    u32_at(bytes, body + 4)?,
                    u16_at(bytes, body + 14)?,
                ));
            }
            b"data" => {
                let (channels, sample_rate, bits_per_sample) = format?;
                let present = bytes.len() - body;
                return Some(WavInfo {
                    channels,
                    sample_rate,
                    bits_per_sample,
                    data_bytes: size.min(present) as u64,
                });
            }
            _ => {}
        }
        // Chunks are padded to an even size.
        at = body.checked_add(size)?.checked_add(size & 1)?;
    }
    None
}

/// The simulated transcript of some audio: its duration, sample rate and channels when it is a
/// WAV, otherwise its size. The same bytes always give the same text.
pub fn transcript_text(audio: &[u8]) -> String {
    match parse_wav(audio) {
        Some(wav) => format!(
            "Simulated transcript of {:.2} s of audio ({} Hz, {} channel{}, {}-bit).",
            wav.duration_secs(),
            wav.sample_rate,
            wav.channels,
            if wav.channels == 1 { "" } else { "s" },
            wav.bits_per_sample,
        ),
        None => format!("Simulated transcript of {} bytes of audio.", audio.len()),
    }
}

/// A 16-bit PCM WAV of a 440 Hz tone: something real to send to a transcription.
pub fn tone_wav(sample_rate: u32, channels: u16, duration_ms: u32) -> Vec<u8> {
    let frames = u64::from(sample_rate) * u64::from(duration_ms) / 1_000;
    let data_bytes = frames * u64::from(channels) * 2;
    let data_len = u32::try_from(data_bytes).unwrap_or(u32::MAX);
    let mut wav = Vec::with_capacity(44 + data_bytes as usize);
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36u32.saturating_add(data_len)).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&channels.to_le_bytes());
    wav.extend_from_slice(&sample_rate.to_le_bytes());
    let block_align = channels.saturating_mul(2);
    wav.extend_from_slice(&(sample_rate.saturating_mul(u32::from(block_align))).to_le_bytes());
    wav.extend_from_slice(&block_align.to_le_bytes());
    wav.extend_from_slice(&16u16.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&data_len.to_le_bytes());
    for frame in 0..frames {
        let t = frame as f64 / f64::from(sample_rate);
        let sample = ((t * 440.0 * std::f64::consts::TAU).sin() * 8_000.0) as i16;
        for _ in 0..channels {
            wav.extend_from_slice(&sample.to_le_bytes());
        }
    }
    wav
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wav_is_described_by_its_header() {
        let wav = tone_wav(16_000, 1, 1_500);
        assert_eq!(wav.len(), 44 + 16_000 * 3);
        let info = parse_wav(&wav).unwrap();
        assert_eq!(
            info,
            WavInfo {
                channels: 1,
                sample_rate: 16_000,
                bits_per_sample: 16,
                data_bytes: 48_000
            }
        );
        assert_eq!(
            transcript_text(&wav),
            "Simulated transcript of 1.50 s of audio (16000 Hz, 1 channel, 16-bit)."
        );
        let stereo = tone_wav(8_000, 2, 250);
        assert_eq!(
            transcript_text(&stereo),
            "Simulated transcript of 0.25 s of audio (8000 Hz, 2 channels, 16-bit)."
        );
    }

    #[test]
    fn other_bytes_are_described_by_their_size() {
        assert_eq!(
            transcript_text(&[0u8; 1234]),
            "Simulated transcript of 1234 bytes of audio."
        );
        assert_eq!(
            transcript_text(b"RIFF"),
            "Simulated transcript of 4 bytes of audio."
        );
        // A truncated WAV counts the data that is there.
        let wav = tone_wav(16_000, 1, 1_000);
        let info = parse_wav(&wav[..44 + 16_000]).unwrap();
        assert_eq!(info.data_bytes, 16_000);
        // A header that lies about chunk sizes does not panic.
        let mut bad = wav.clone();
        bad[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(parse_wav(&bad), None);
    }

    #[test]
    fn a_generated_wav_is_read_and_described_by_transcribe() {
        let wav = relaytop_core::transcribe::parse_wav(tone_wav(16_000, 1, 1500)).unwrap();
        assert_eq!((wav.sample_rate, wav.channels), (16_000, 1));
        assert_eq!(wav.describe(), "1.50 s of audio (16000 Hz, mono, 16-bit)");
    }
}
