//! Synthetic recordings for the replay benchmarks: a run directory of probe sessions shaped
//! like the live ones (a request a second, 25 chunks each, heartbeats, a drop and reconnect
//! every 600 requests), one session file of any size or many sessions on one timeline.

use std::io::{BufWriter, Write};
use std::path::Path;

/// What was written.
#[derive(Clone, Copy, Debug, Default)]
pub struct Written {
    /// Bytes of the session files.
    pub bytes: u64,
    /// Lines of the session files (headers left out): the lines a replay reads.
    pub lines: u64,
    /// Requests sent, all sessions together.
    pub requests: u64,
    /// The last line's time, on the run's clock (µs).
    pub end_us: u64,
}

/// When each session stops writing.
#[derive(Clone, Copy, Debug)]
pub enum Until {
    /// Bytes of its file.
    Bytes(u64),
    /// Requests it sent.
    Requests(u64),
}

const STARTED: &str = "2026-11-25T03:00:00.000000Z";

/// Writes a run of `sessions` probe sessions into `run` (a new directory): its `run.json` and
/// one file a session, each until `until`. Session `k` starts `k * 997` µs after the run so
/// that every second of the timeline interleaves all of them.
pub fn generate(run: &Path, sessions: usize, until: Until) -> std::io::Result<Written> {
    std::fs::create_dir_all(run)?;
    let mut files = Vec::with_capacity(sessions);
    let mut total = Written::default();
    for k in 0..sessions {
        let name = if sessions == 1 {
            "probe".to_owned()
        } else {
            format!("probe-{k}")
        };
        let path = run.join(format!("{name}.jsonl"));
        let written = write_session(&path, &name, k, until)?;
        total.bytes += written.bytes;
        total.lines += written.lines;
        total.requests += written.requests;
        total.end_us = total.end_us.max(written.end_us);
        files.push(format!(
            r#"{{"path":"{name}.jsonl","session":"{name}","id":{k},"provider":"legacy","model":"gpt-4.1","part":0}}"#
        ));
    }
    std::fs::write(
        run.join("run.json"),
        format!(
            r#"{{"format":"relaytop-run","version":1,"app":"relaytop bench","run_id":"bench",
"started_at":"{STARTED}","source":"bench","files":[{}],"pricing":{{}}}}"#,
            files.join(",\n")
        ),
    )?;
    Ok(total)
}

/// The words of each response: the simulator's default reply, a token a chunk.
const WORDS: &[&str] = relaytop_core::config::sim_profile::DEFAULT_CHUNK_WORDS;

/// One session's file.
fn write_session(path: &Path, name: &str, k: usize, until: Until) -> std::io::Result<Written> {
    let file = std::fs::File::create(path)?;
    let mut w = Counting {
        inner: BufWriter::with_capacity(1 << 20, file),
        bytes: 0,
        lines: 0,
    };
    writeln!(
        w,
        r#"{{"format":"relaytop-recording","version":1,"app":"relaytop bench","started_at":"{STARTED}","session":{{"name":"{name}","provider":"legacy","protocol":"relay-v1","url":"ws://127.0.0.1:1/v1/stream","model":"gpt-4.1","id":{k},"workload":"probe"}},"config":{{"heartbeat_s":30,"dead_after_s":55,"backoff":{{"base_ms":1000,"cap_ms":30000,"max_attempts":10}}}}}}"#
    )?;
    // The header is not a line a replay plays.
    w.lines = 0;
    let offset = k as u64 * 997;
    let mut t: u64 = offset;
    let mut request: u64 = 0;
    let mut attempt = 1;
    writeln!(w, r#"[{t},"=","state",{{"to":"connecting","attempt":1}}]"#)?;
    t += 40_000;
    connect(&mut w, t, attempt)?;
    let more = |w: &Counting<_>, request: u64| match until {
        Until::Bytes(b) => w.bytes < b,
        Until::Requests(r) => request < r,
    };
    while more(&w, request) {
        let second = t / 1_000_000 + 1;
        t = second * 1_000_000 + offset;
        request += 1;
        writeln!(
            w,
            r#"[{t},">","text","{{\"type\":\"chat.completion\",\"model\":\"gpt-4.1\",\"messages\":[{{\"role\":\"user\",\"content\":\"Reply with a short greeting.\"}}],\"stream\":true,\"max_tokens\":25}}"]"#
        )?;
        writeln!(
            w,
            r#"[{t},"=","event",{{"type":"request_sent","request":{request},"model":"gpt-4.1","prompt_tokens_estimate":7}}]"#
        )?;
        writeln!(
            w,
            r#"[{t},"=","state",{{"to":"streaming","request":{request}}}]"#
        )?;
        let mut at = t + 420_000 + ((request + k as u64) * 7919 % 300_000);
        let dropped = request.is_multiple_of(600);
        for (i, word) in WORDS.iter().enumerate() {
            if dropped && i == 12 {
                break;
            }
            writeln!(
                w,
                r#"[{at},"<","text","{{\"type\":\"chunk\",\"content\":\"{word}\"}}"]"#
            )?;
            at += 4_000;
        }
        if dropped {
            // A drop, a backoff and a reconnect.
            writeln!(
                w,
                r#"[{at},"<","close",{{"code":1012,"reason":"restart","requested":false}}]"#
            )?;
            writeln!(
                w,
                r#"[{at},"=","event",{{"type":"request_failed","request":{request},"kind":"network","reason":"close 1012 (service restart): restart"}}]"#
            )?;
            writeln!(
                w,
                r#"[{at},"=","event",{{"type":"closed","code":1012,"reason":"restart","requested":false}}]"#
            )?;
            writeln!(
                w,
                r#"[{at},"=","backoff",{{"attempt":1,"max_attempts":10,"delay_ms":734,"cause":"close 1012"}}]"#
            )?;
            writeln!(w, r#"[{at},"=","marker","reconnect 1"]"#)?;
            let until = at + 734_000;
            writeln!(
                w,
                r#"[{at},"=","state",{{"to":"backing_off","attempt":1,"max_attempts":10,"until_us":{until}}}]"#
            )?;
            attempt += 1;
            writeln!(
                w,
                r#"[{until},"=","state",{{"to":"connecting","attempt":{attempt}}}]"#
            )?;
            t = until + 40_000;
            connect(&mut w, t, attempt)?;
            continue;
        }
        writeln!(
            w,
            r#"[{at},"<","text","{{\"type\":\"done\",\"usage\":{{\"prompt_tokens\":7,\"completion_tokens\":25}},\"finish_reason\":\"stop\"}}"]"#
        )?;
        writeln!(w, r#"[{at},"=","state",{{"to":"open"}}]"#)?;
        t = at;
        if second.is_multiple_of(30) {
            let ping = second * 1_000_000 + 900_000 + offset;
            writeln!(w, r#"[{ping},">","text","{{\"type\":\"ping\"}}"]"#)?;
            writeln!(
                w,
                r#"[{},"<","text","{{\"type\":\"pong\"}}"]"#,
                ping + 46_000
            )?;
            writeln!(
                w,
                r#"[{},"=","event",{{"type":"pong","rtt_us":46000}}]"#,
                ping + 46_000
            )?;
            t = ping + 46_000;
        }
    }
    writeln!(w, r#"[{t},"=","end",{{"reason":"quit"}}]"#)?;
    w.inner.flush()?;
    // On disk before measuring, so that writing it back does not run beside the replay.
    w.inner.get_ref().sync_all()?;
    Ok(Written {
        bytes: w.bytes,
        lines: w.lines,
        requests: request,
        end_us: t,
    })
}

fn connect(w: &mut impl Write, t: u64, attempt: u32) -> std::io::Result<()> {
    writeln!(w, r#"[{t},"<","upgrade",{{"status":101}}]"#)?;
    writeln!(
        w,
        r#"[{t},"=","event",{{"type":"connected","attempt":{attempt},"handshake_us":40000}}]"#
    )?;
    writeln!(w, r#"[{t},"=","state",{{"to":"open"}}]"#)
}

/// Counts the bytes and lines written through it (`writeln!` writes a line in one or more
/// pieces; the newline ends it).
struct Counting<W: Write> {
    inner: W,
    bytes: u64,
    lines: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        self.lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
