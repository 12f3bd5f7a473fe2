//! Reading recordings: finding a run's files, their headers, and their event lines one at a
//! time from any position.
//!
//! Reading is lazy: opening reads the header line and the tail (for the last time), nothing
//! else, so a recording of any size opens at once. Lines are read whole, up to
//! `MAX_LINE_BYTES`. Blank lines and `#` lines are skipped; a malformed line in the middle is
//! reported and skipped; an incomplete last line (a run cut short mid-write) ends the reading
//! of that session, and the reader says where (line number and byte offset).

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::record::format::{self, Header, Record, RunManifest, parse_line};
use crate::record::gzip;

/// The longest line read; longer ones are skipped as malformed.
pub const MAX_LINE_BYTES: usize = 64 << 20;

/// Why a recording cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{path}: {error}")]
    Io { path: String, error: std::io::Error },
    #[error("{path} is not a relaytop recording: {reason}")]
    NotARecording { path: String, reason: String },
    #[error(
        "{path} is a recording of format version {version}, made by a newer relaytop (this one reads version {})",
        format::VERSION
    )]
    NewerVersion { path: String, version: u32 },
    #[error("no recording files found in {0}")]
    Empty(String),
}

fn io_error(path: &Path, error: std::io::Error) -> ReadError {
    ReadError::Io {
        path: path.display().to_string(),
        error,
    }
}

/// One session's recording: its header and its files in order (the first, then the ones it
/// rotated into).
#[derive(Clone, Debug)]
pub struct SessionRecording {
    pub header: Header,
    pub parts: Arc<[PathBuf]>,
}

/// The start of a line in a session's files.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Position {
    /// Which file of the session (0 = the first).
    pub part: usize,
    /// Byte offset in that file.
    pub offset: u64,
    /// Line number in that file, counting from 1.
    pub line: u64,
}

impl Position {
    /// The start of a session's first file.
    pub const START: Position = Position {
        part: 0,
        offset: 0,
        line: 1,
    };
}

/// What reading the next line found.
#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    /// An event line, and where it starts.
    Record { record: Record, at: Position },
    /// A line that is not an event line (skipped; reading goes on).
    Malformed { at: Position, reason: String },
    /// The last line is incomplete: the session's reading stops here.
    Torn { at: Position },
    /// Nothing more.
    End,
}

/// Reads one session's lines from a position on.
#[derive(Debug)]
pub struct LineReader {
    parts: Arc<[PathBuf]>,
    pos: Position,
    reader: Option<BufReader<File>>,
    /// The read buffer's size.
    buffer: usize,
    /// The current file's header line has been skipped.
    header_seen: bool,
    /// A torn line was found: nothing follows.
    stopped: bool,
    buf: Vec<u8>,
}

impl LineReader {
    /// A reader of `parts` starting at `pos` (a position this reader or another gave out).
    pub fn new(parts: Arc<[PathBuf]>, pos: Position) -> Self {
        Self {
            parts,
            pos,
            reader: None,
            buffer: 64 << 10,
            header_seen: pos.offset > 0,
            stopped: false,
            buf: Vec::new(),
        }
    }

    /// The same reader with a read buffer of `bytes` (64 KiB by default).
    #[must_use]
    pub fn with_buffer(mut self, bytes: usize) -> Self {
        self.buffer = bytes.max(1);
        self
    }

    /// Where the next line starts.
    pub fn position(&self) -> Position {
        self.pos
    }

    /// The file the next line is in.
    pub fn path(&self) -> Option<&Path> {
        self.parts.get(self.pos.part).map(PathBuf::as_path)
    }

    /// Reads lines until an event line, a torn end or the end.
    pub fn next_item(&mut self) -> std::io::Result<Item> {
        if self.stopped {
            return Ok(Item::End);
        }
        loop {
            let reader = match &mut self.reader {
                Some(r) => r,
                None => {
                    let Some(path) = self.parts.get(self.pos.part) else {
                        return Ok(Item::End);
                    };
                    let mut file = File::open(path)?;
                    file.seek(SeekFrom::Start(self.pos.offset))?;
                    self.reader
                        .insert(BufReader::with_capacity(self.buffer, file))
                }
            };
            // Most lines are whole in the read buffer: parsed there, not copied out first.
            let chunk = reader.fill_buf()?;
            if let Some(end) = memchr::memchr(b'\n', chunk) {
                let at = self.pos;
                self.pos.offset += end as u64 + 1;
                self.pos.line += 1;
                let line = chunk[..end].trim_ascii();
                let blank = line.is_empty() || line[0] == b'#';
                // The first line that is not blank is the file's header, when it is one.
                let header =
                    !blank && !std::mem::replace(&mut self.header_seen, true) && line[0] == b'{';
                let item = if blank || header {
                    None
                } else {
                    // A line with its newline is whole: malformed if it does not parse,
                    // never torn.
                    Some(match parse_line(line) {
                        Ok(record) => Item::Record { record, at },
                        Err(e) => Item::Malformed {
                            at,
                            reason: e.to_string(),
                        },
                    })
                };
                reader.consume(end + 1);
                match item {
                    Some(item) => return Ok(item),
                    None => continue,
                }
            }
            let (n, complete, too_long) = read_line(reader, &mut self.buf)?;
            if n == 0 {
                if self.pos.part + 1 < self.parts.len() {
                    self.pos = Position {
                        part: self.pos.part + 1,
                        ..Position::START
                    };
                    self.reader = None;
                    self.header_seen = false;
                    continue;
                }
                return Ok(Item::End);
            }
            let at = self.pos;
            self.pos.offset += n as u64;
            self.pos.line += 1;
            let line = self.buf.trim_ascii();
            if !too_long && (line.is_empty() || line[0] == b'#') {
                continue;
            }
            if !self.header_seen {
                self.header_seen = true;
                if line.first() == Some(&b'{') {
                    continue;
                }
            }
            if too_long {
                return Ok(Item::Malformed {
                    at,
                    reason: format!("line longer than {} MiB", MAX_LINE_BYTES >> 20),
                });
            }
            match parse_line(line) {
                Ok(record) => return Ok(Item::Record { record, at }),
                Err(_) if !complete && self.pos.part + 1 >= self.parts.len() => {
                    self.pos = at;
                    self.stopped = true;
                    return Ok(Item::Torn { at });
                }
                Err(e) => {
                    return Ok(Item::Malformed {
                        at,
                        reason: e.to_string(),
                    });
                }
            }
        }
    }
}

/// Reads one line (without its newline) into `buf`, keeping at most `MAX_LINE_BYTES`.
/// Returns the bytes consumed, whether the line ended with a newline, and whether it was cut.
fn read_line(reader: &mut impl BufRead, buf: &mut Vec<u8>) -> std::io::Result<(usize, bool, bool)> {
    buf.clear();
    let mut consumed = 0;
    let mut too_long = false;
    loop {
        let chunk = reader.fill_buf()?;
        if chunk.is_empty() {
            return Ok((consumed, false, too_long));
        }
        let (take, newline) = match memchr::memchr(b'\n', chunk) {
            Some(i) => (i, true),
            None => (chunk.len(), false),
        };
        if !too_long {
            if buf.len() + take > MAX_LINE_BYTES {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(&chunk[..take]);
            }
        }
        let used = take + usize::from(newline);
        reader.consume(used);
        consumed += used;
        if newline {
            return Ok((consumed, true, too_long));
        }
    }
}

/// Reads a file's header: its first line that is not blank or a `#` comment.
pub fn read_header(path: &Path) -> Result<Header, ReadError> {
    let file = File::open(path).map_err(|e| io_error(path, e))?;
    let mut reader = BufReader::new(file);
    let mut buf = Vec::new();
    let not_ours = |reason: String| ReadError::NotARecording {
        path: path.display().to_string(),
        reason,
    };
    loop {
        let (n, _, too_long) = read_line(&mut reader, &mut buf).map_err(|e| io_error(path, e))?;
        if n == 0 {
            return Err(not_ours("it is empty".into()));
        }
        if too_long {
            return Err(not_ours("its first line is too long".into()));
        }
        let line = buf.trim_ascii();
        if line.is_empty() || line[0] == b'#' {
            continue;
        }
        let value: serde_json::Value = serde_json::from_slice(line)
            .map_err(|e| not_ours(format!("the first line is not a JSON header ({e})")))?;
        if value.get("format").and_then(|f| f.as_str()) != Some(format::FORMAT) {
            return Err(not_ours(format!(
                "the header's format is not \"{}\"",
                format::FORMAT
            )));
        }
        let version = value
            .get("version")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
        if version > u64::from(format::VERSION) {
            return Err(ReadError::NewerVersion {
                path: path.display().to_string(),
                version: u32::try_from(version).unwrap_or(u32::MAX),
            });
        }
        return serde_json::from_value(value).map_err(|e| not_ours(format!("bad header: {e}")));
    }
}

/// The time of a file's last whole event line, read from its tail only.
pub fn last_time(path: &Path) -> std::io::Result<Option<u64>> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut window: u64 = 64 << 10;
    loop {
        let start = len.saturating_sub(window);
        file.seek(SeekFrom::Start(start))?;
        let mut tail = Vec::with_capacity(usize::try_from(len - start).unwrap_or(0));
        (&mut file).take(len - start).read_to_end(&mut tail)?;
        // Only lines followed by a newline are whole (the first one may be cut, unless the
        // window starts the file). Read from the last one back, until one has a time.
        let whole_end = memchr::memrchr(b'\n', &tail).unwrap_or(0);
        let mut rest = &tail[..whole_end];
        loop {
            let (line, first) = match memchr::memrchr(b'\n', rest) {
                Some(i) => (&rest[i + 1..], false),
                None => (rest, true),
            };
            if first && start > 0 {
                break;
            }
            let l = line.trim_ascii();
            if l.first() == Some(&b'[')
                && let Ok(record) = parse_line(l)
            {
                return Ok(Some(record.t_us));
            }
            if first {
                break;
            }
            rest = &rest[..rest.len() - line.len() - 1];
        }
        if start == 0 || window >= 16 << 20 {
            return Ok(None);
        }
        window *= 4;
    }
}

/// A run's (or a set of files') recordings, ready to replay on one timeline.
#[derive(Clone, Debug)]
pub struct Recordings {
    /// `run.json`, when the files came from one run directory that has it.
    pub manifest: Option<RunManifest>,
    /// The sessions, in id order.
    pub sessions: Vec<SessionRecording>,
    /// The earliest start: time 0 of the merged timeline.
    pub started_at: DateTime<Utc>,
    /// Per session: microseconds its own clock started after `started_at`.
    pub offsets_us: Vec<u64>,
    /// Where gzip files were unpacked (`sessions` point there); keep while reading.
    pub unpacked: crate::record::gzip::Unpacked,
    /// Gzip streams cut short (what was read of them).
    pub notes: Vec<String>,
}

/// Finds the recordings in `paths`: run directories (with or without `run.json`), session
/// files (rotated parts found beside them), or `run.json` files.
pub fn discover(paths: &[PathBuf]) -> Result<Recordings, ReadError> {
    let mut files: Vec<PathBuf> = Vec::new();
    // What `files` holds, to look up: a run of 10,000 sessions has as many files.
    let mut known: HashSet<PathBuf> = HashSet::new();
    let mut manifests: Vec<RunManifest> = Vec::new();
    for path in paths {
        let (dir, explicit) = if path.is_dir() {
            (path.clone(), None)
        } else if path.file_name().is_some_and(|n| n == format::RUN_FILE) {
            (
                path.parent().map(Path::to_path_buf).unwrap_or_default(),
                None,
            )
        } else {
            (PathBuf::new(), Some(path.clone()))
        };
        if let Some(file) = explicit {
            if !file.exists() {
                return Err(io_error(
                    &file,
                    std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or directory"),
                ));
            }
            // A gzip file's rotated parts, beside it (plain ones are found below).
            if let (Some(dir), Some(stem)) = (
                file.parent(),
                file.file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_suffix(".jsonl.gz")),
            ) {
                let mut part = 1;
                loop {
                    let sibling = dir.join(format::part_file_name(stem, part) + ".gz");
                    if !sibling.exists() {
                        break;
                    }
                    if known.insert(sibling.clone()) {
                        files.push(sibling);
                    }
                    part += 1;
                }
            }
            if known.insert(file.clone()) {
                files.push(file);
            }
            continue;
        }
        let manifest_path = dir.join(format::RUN_FILE);
        if manifest_path.exists() {
            let text =
                std::fs::read_to_string(&manifest_path).map_err(|e| io_error(&manifest_path, e))?;
            let manifest: RunManifest =
                serde_json::from_str(&text).map_err(|e| ReadError::NotARecording {
                    path: manifest_path.display().to_string(),
                    reason: e.to_string(),
                })?;
            for f in &manifest.files {
                let p = dir.join(&f.path);
                if p.exists() && known.insert(p.clone()) {
                    files.push(p);
                }
            }
            manifests.push(manifest);
        }
        // Files the manifest does not list (a rotation it did not live to record).
        let mut listed: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|e| io_error(&dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "jsonl") || gzip::is_gzip(p))
            .collect();
        listed.sort();
        for p in listed {
            if known.insert(p.clone()) {
                files.push(p);
            }
        }
    }
    if files.is_empty() {
        let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        return Err(ReadError::Empty(shown.join(", ")));
    }

    // Gzip files are read from decompressed copies.
    let (unpacked, notes) = gzip::unpack(&mut files).map_err(|e| ReadError::Io {
        path: "the gzip recording files".into(),
        error: e,
    })?;

    // Group files by session (run id, session id and name), parts in order.
    let mut groups: Vec<(Header, Vec<(u32, PathBuf)>)> = Vec::new();
    // Each group's place in `groups`, by its key.
    type GroupKey = (Option<String>, u32, String, String);
    let mut group_of: HashMap<GroupKey, usize> = HashMap::new();
    let mut seen: HashSet<PathBuf> = HashSet::new();
    let mut queued: HashSet<PathBuf> = files.iter().cloned().collect();
    let mut queue: Vec<PathBuf> = files;
    let mut i = 0;
    while i < queue.len() {
        let path = queue[i].clone();
        i += 1;
        if !seen.insert(path.clone()) {
            continue;
        }
        let header = read_header(&path)?;
        // Rotated parts beside a session's first file.
        if header.part == 0
            && let (Some(dir), Some(stem)) = (
                path.parent(),
                path.file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_suffix(".jsonl")),
            )
        {
            let mut part = 1;
            loop {
                let sibling = dir.join(format::part_file_name(stem, part));
                if !sibling.exists() {
                    break;
                }
                if queued.insert(sibling.clone()) {
                    queue.push(sibling);
                }
                part += 1;
            }
        }
        let key: GroupKey = (
            header.run.as_ref().map(|r| r.id.clone()),
            header.session.id,
            header.session.name.clone(),
            header.started_at.clone(),
        );
        match group_of.get(&key).and_then(|&g| groups.get_mut(g)) {
            Some((first, parts)) => {
                if header.part < first.part {
                    *first = header.clone();
                }
                parts.push((header.part, path));
            }
            None => {
                group_of.insert(key, groups.len());
                groups.push((header.clone(), vec![(header.part, path)]));
            }
        }
    }

    let mut sessions: Vec<(DateTime<Utc>, SessionRecording)> = Vec::new();
    for (header, mut parts) in groups {
        parts.sort_by_key(|(part, _)| *part);
        let started = header
            .started_at()
            .ok_or_else(|| ReadError::NotARecording {
                path: parts
                    .first()
                    .map(|(_, p)| p.display().to_string())
                    .unwrap_or_default(),
                reason: format!("bad started_at {:?}", header.started_at),
            })?;
        sessions.push((
            started,
            SessionRecording {
                header,
                parts: parts.into_iter().map(|(_, p)| p).collect(),
            },
        ));
    }
    sessions.sort_by(|(a, ra), (b, rb)| {
        a.cmp(b)
            .then(ra.header.session.id.cmp(&rb.header.session.id))
            .then(ra.header.session.name.cmp(&rb.header.session.name))
    });
    let started_at = sessions
        .iter()
        .map(|(t, _)| *t)
        .min()
        .unwrap_or_else(Utc::now);
    let offsets_us = sessions
        .iter()
        .map(|(t, _)| u64::try_from((*t - started_at).num_microseconds().unwrap_or(0)).unwrap_or(0))
        .collect();
    Ok(Recordings {
        manifest: (manifests.len() == 1).then(|| manifests.remove(0)),
        sessions: sessions.into_iter().map(|(_, s)| s).collect(),
        started_at,
        offsets_us,
        unpacked,
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(text: &str) -> Vec<Item> {
        read_all_with_buffer(text, 64 << 10, "")
    }

    /// Every item of `text` read through a read buffer of `buffer` bytes.
    fn read_all_with_buffer(text: &str, buffer: usize, name: &str) -> Vec<Item> {
        let dir = std::env::temp_dir().join(format!(
            "relaytop-reader-{}-{}{name}",
            std::process::id(),
            text.len()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.jsonl");
        std::fs::write(&path, text).unwrap();
        let mut r = LineReader::new(Arc::from(vec![path]), Position::START).with_buffer(buffer);
        let mut items = Vec::new();
        loop {
            let item = r.next_item().unwrap();
            let end = matches!(item, Item::End);
            items.push(item);
            if end {
                break;
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
        items
    }

    #[test]
    fn blank_comment_malformed_and_torn_lines() {
        let text = "{\"format\":\"relaytop-recording\"}\n\n# a comment\n[1,\"=\",\"marker\",\"a\"]\nnot json\n[2,\"=\",\"marker\",\"b\"]\r\n[3,\"=\",\"mar";
        let items = read_all(text);
        assert!(
            matches!(&items[0], Item::Record { record, at } if record.t_us == 1 && at.line == 4)
        );
        assert!(matches!(
            &items[1],
            Item::Malformed { at, .. } if at.line == 5 && at.offset == 66
        ));
        assert!(matches!(&items[2], Item::Record { record, .. } if record.t_us == 2));
        assert!(matches!(&items[3], Item::Torn { at } if at.line == 7));
        assert_eq!(items[4], Item::End);
    }

    #[test]
    fn lines_whole_in_the_buffer_read_as_lines_across_it() {
        // Lines whole in the read buffer are parsed where they are; lines across its end are
        // copied out first: both give the same items at the same positions.
        let text = "\n# c\n{\"format\":\"relaytop-recording\"}\n[1,\"=\",\"state\",{\"to\":\"open\"}]\n  \nnot json\n[2,\"<\",\"text\",\"{\\\"type\\\":1}\"]\r\n# x\n[3,\"=\",\"marker\",\"a\"]\n[4,\"=\",\"mar";
        let whole = read_all(text);
        assert_eq!(whole.len(), 6, "{whole:?}");
        for buffer in [1, 2, 3, 5, 8, 13, 21, 34] {
            let items = read_all_with_buffer(text, buffer, &format!("-b{buffer}"));
            assert_eq!(items, whole, "a read buffer of {buffer} bytes");
        }
    }

    #[test]
    fn the_last_time_is_the_last_whole_line_with_one() {
        let dir = std::env::temp_dir().join(format!("relaytop-last-time-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.jsonl");
        let last = |text: &str| {
            std::fs::write(&path, text).unwrap();
            last_time(&path).unwrap()
        };
        let header = "{\"format\":\"relaytop-recording\"}\n";
        assert_eq!(last(header), None);
        assert_eq!(last(""), None);
        assert_eq!(last("[5,\"=\",\"marker\",\"a\"]\n"), Some(5));
        let lines = format!(
            "{header}[1,\"=\",\"marker\",\"a\"]\n[2,\"=\",\"marker\",\"b\"]\n# c\n\n[3,\"=\",\"mar\n"
        );
        // A malformed, blank or comment line is passed over; a torn last one too.
        assert_eq!(last(&lines), Some(2));
        assert_eq!(last(&format!("{lines}[4,\"=\",\"mar")), Some(2));
        // A tail longer than the first window: only whole lines inside it count.
        let filler = "[9,\"=\",\"marker\",\"x\"]\n".repeat(4_000);
        assert_eq!(
            last(&format!("{header}{filler}[10,\"=\",\"marker\",\"y\"]\n")),
            Some(10)
        );
        let malformed = "not json\n".repeat(10_000);
        assert_eq!(
            last(&format!("{header}[1,\"=\",\"marker\",\"a\"]\n{malformed}")),
            Some(1)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_whole_last_line_without_newline_is_played() {
        let items = read_all("{}\n[1,\"=\",\"marker\",\"a\"]");
        assert!(matches!(&items[0], Item::Record { record, .. } if record.t_us == 1));
        assert_eq!(items[1], Item::End);
    }
}
