//! Gzip recordings: the writer's sink (a file, or a gzip stream over it with a sync flush at
//! every quarter-second write, so that a `kill -9` leaves a readable prefix) and the
//! reader's unpacking (a `.jsonl.gz` file cannot be read from a byte offset, so opening one
//! decompresses it once, sequentially, into a temporary file that lives as long as the
//! replay; a stream cut short gives what it holds, and the reader then sees a torn line or a
//! whole last line).

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use flate2::Compression;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;

/// The suffix of a gzip session file.
pub const SUFFIX: &str = ".gz";

/// Whether `path` is a gzip session file (`*.jsonl.gz`).
pub fn is_gzip(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(".jsonl.gz"))
}

/// Where a session's lines go.
#[derive(Debug)]
pub enum Sink {
    Plain(File),
    Gzip(GzEncoder<File>),
}

impl Sink {
    /// A sink over `file`, compressed or not.
    pub fn new(file: File, gzip: bool) -> Sink {
        if gzip {
            Sink::Gzip(GzEncoder::new(file, Compression::default()))
        } else {
            Sink::Plain(file)
        }
    }

    /// Writes `bytes` (whole lines) and pushes them to the file: a gzip stream is sync-flushed,
    /// so that everything written so far decompresses even if the process dies now.
    pub fn write_lines(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Plain(f) => f.write_all(bytes),
            Sink::Gzip(g) => {
                g.write_all(bytes)?;
                g.flush()
            }
        }
    }

    /// Ends the file (a gzip stream gets its trailer). Nothing may be written after.
    ///
    /// Everything is in the file for any reader the moment this returns, and survives
    /// relaytop itself crashing; the kernel writes it to disk on its own schedule (within
    /// 30 s by default on Linux). Waiting for the disk (`fsync`, or even starting the
    /// writeback with `sync_file_range`) made the end of every run wait: 33 ms (23 ms) for
    /// a 60 MB recording on this project's machine, seconds on a busy disk
    /// (docs/RECORDING-NOTES.md).
    pub fn finish(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Plain(f) => f.flush(),
            Sink::Gzip(g) => g.try_finish(),
        }
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
    fn a_sync_flushed_stream_cut_short_gives_its_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.jsonl.gz");
        let mut sink = Sink::new(File::create(&path).unwrap(), true);
        sink.write_lines(b"[1,\"=\",\"marker\",\"a\"]\n").unwrap();
        sink.write_lines(b"[2,\"=\",\"marker\",\"b\"]\n").unwrap();
        // A kill -9 now: no trailer.
        let bytes = std::fs::read(&path).unwrap();
        std::mem::forget(sink);
        let cut = dir.path().join("cut.jsonl.gz");
        std::fs::write(&cut, &bytes).unwrap();
        let mut files = vec![cut];
        let (held, notes) = unpack(&mut files).unwrap();
        assert!(held.is_some());
        assert_eq!(
            std::fs::read_to_string(&files[0]).unwrap(),
            "[1,\"=\",\"marker\",\"a\"]\n[2,\"=\",\"marker\",\"b\"]\n"
        );
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].contains("ends early"));
    }
}
