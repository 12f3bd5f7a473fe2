//! Gzip recordings: the writer's compression (every write of a session's lines is one whole
//! gzip member appended to its file, so that a `kill -9` leaves whole members and the file
//! needs no open encoder between writes) and the reader's unpacking (a `.jsonl.gz` file
//! cannot be read from a byte offset, so opening one decompresses it once, sequentially, into
//! a temporary file that lives as long as the replay; a stream cut short gives what it holds,
//! and the reader then sees a torn line or a whole last line).

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use flate2::Compression;
use flate2::read::MultiGzDecoder;
use flate2::write::DeflateEncoder;

/// The suffix of a gzip session file.
pub const SUFFIX: &str = ".gz";

/// Whether `path` is a gzip session file (`*.jsonl.gz`).
pub fn is_gzip(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(".jsonl.gz"))
}

/// A gzip member's header (RFC 1952): deflate, no flags, no time, unknown OS.
const MEMBER_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// Makes whole gzip members, one a write: a file of them is a multi-member gzip file, which
/// `gzip -d`, `zcat` and the reader (`MultiGzDecoder`) read as one stream.
///
/// One compressor serves every session (the recorder's writer thread owns it): its state is
/// hundreds of KiB, which one encoder kept open per session would cost each of 10,000
/// sessions. Each member starts with a fresh dictionary; a member holds a quarter second of a
/// session's lines (or 1 MiB of a fast stream), so that costs little.
pub struct Members {
    encoder: DeflateEncoder<Vec<u8>>,
}

impl std::fmt::Debug for Members {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Members").finish_non_exhaustive()
    }
}

impl Default for Members {
    fn default() -> Self {
        Self {
            encoder: DeflateEncoder::new(Vec::new(), Compression::default()),
        }
    }
}

impl Members {
    /// `bytes` compressed as one whole gzip member, in `out` (replacing what it held; its
    /// allocation is reused).
    pub fn member(&mut self, bytes: &[u8], out: &mut Vec<u8>) -> std::io::Result<()> {
        let mut body = std::mem::take(out);
        body.clear();
        body.extend_from_slice(&MEMBER_HEADER);
        // What the encoder held (nothing: it is reset after every member) is dropped.
        self.encoder.reset(body)?;
        self.encoder.write_all(bytes)?;
        // Ends the deflate stream into `body` and resets the compressor for the next member.
        let mut body = self.encoder.reset(Vec::new())?;
        let mut crc = flate2::Crc::new();
        crc.update(bytes);
        body.extend_from_slice(&crc.sum().to_le_bytes());
        // ISIZE: the input's length modulo 2^32.
        body.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        *out = body;
        Ok(())
    }
}

/// Gzip files unpacked for reading; the directory goes when the last holder drops it.
pub type Unpacked = Option<Arc<tempfile::TempDir>>;

/// Replaces every gzip file in `files` with a decompressed copy in a temporary directory.
/// Returns the directory (to keep while reading) and a note for each stream cut short.
pub fn unpack(files: &mut [PathBuf]) -> std::io::Result<(Unpacked, Vec<String>)> {
    if !files.iter().any(|f| is_gzip(f)) {
        return Ok((None, Vec::new()));
    }
    let dir = tempfile::Builder::new()
        .prefix("relaytop-unpacked-")
        .tempdir()?;
    let mut notes = Vec::new();
    for file in files.iter_mut() {
        if !is_gzip(file) {
            continue;
        }
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(SUFFIX))
            .unwrap_or("session.jsonl")
            .to_owned();
        // One directory per file, so that two runs' same-named files do not meet; the
        // first file's siblings (rotated parts) are in the same one.
        let sub = dir.path().join(
            file.parent()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
                .replace(['/', '\\', ':'], "_"),
        );
        std::fs::create_dir_all(&sub)?;
        let target = sub.join(&name);
        if let Some(note) = decompress(file, &target)? {
            notes.push(note);
        }
        *file = target;
    }
    // A killed run cuts every file: one line says so, with the first.
    if notes.len() > 2 {
        let first = notes.remove(0);
        notes = vec![format!(
            "{} gzip files end early (the run was cut short?), each read as far as it goes; \
             the first: {first}",
            notes.len() + 1
        )];
    }
    Ok((Some(Arc::new(dir)), notes))
}

/// Decompresses `from` into `to`, as far as the stream goes; says so when it is cut short.
fn decompress(from: &Path, to: &Path) -> std::io::Result<Option<String>> {
    let input = File::open(from)?;
    let mut decoder = MultiGzDecoder::new(std::io::BufReader::new(input));
    let mut out = std::io::BufWriter::new(File::create(to)?);
    let mut buf = vec![0u8; 64 << 10];
    let mut total = 0u64;
    let note = loop {
        match decoder.read(&mut buf) {
            Ok(0) => break None,
            Ok(n) => {
                out.write_all(&buf[..n])?;
                total += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                break Some(format!(
                    "{}: the compressed stream ends early ({e}; the run was cut short?): read \
                     what it holds, {total} bytes",
                    from.display()
                ));
            }
        }
    };
    out.flush()?;
    Ok(note)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_appended_read_as_one_stream_and_a_cut_one_gives_its_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.jsonl.gz");
        let mut members = Members::default();
        let mut file = Vec::new();
        let mut out = Vec::new();
        let lines = [
            "[1,\"=\",\"marker\",\"a\"]\n",
            "[2,\"=\",\"marker\",\"b\"]\n",
            "",
            "[3,\"=\",\"marker\",\"c\"]\n",
        ];
        for line in lines {
            members.member(line.as_bytes(), &mut out).unwrap();
            file.extend_from_slice(&out);
        }
        std::fs::write(&path, &file).unwrap();
        let mut files = vec![path];
        let (held, notes) = unpack(&mut files).unwrap();
        assert!(held.is_some());
        assert!(notes.is_empty(), "{notes:?}");
        assert_eq!(std::fs::read_to_string(&files[0]).unwrap(), lines.concat());
        // The system's gzip reads it as one file too.
        if let Ok(unzipped) = std::process::Command::new("gzip")
            .arg("-dc")
            .arg(dir.path().join("s.jsonl.gz"))
            .output()
        {
            assert_eq!(String::from_utf8(unzipped.stdout).unwrap(), lines.concat());
        }

        // A kill -9 in the middle of the last write: its member is cut.
        let cut = dir.path().join("cut.jsonl.gz");
        std::fs::write(&cut, &file[..file.len() - out.len() / 2]).unwrap();
        let mut files = vec![cut];
        let (_held, notes) = unpack(&mut files).unwrap();
        // Everything before the cut member, and at most a part of its line (a torn line).
        let read = std::fs::read_to_string(&files[0]).unwrap();
        assert!(read.starts_with(&lines[..3].concat()), "{read:?}");
        assert!(lines.concat().starts_with(&read), "{read:?}");
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].contains("ends early"));
    }
}
