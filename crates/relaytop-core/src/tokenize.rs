//! Counting tokens in text a relay sent: the model family's own tokenizer where relaytop has
//! it (OpenAI's o200k_base and cl100k_base, through the `tiktoken` crate), a documented ratio
//! over o200k_base for families it does not have. Used for the estimate when a relay sends no
//! usage, and for the usage audit (what a relay reports against what its text holds).
//!
//! | family (model name) | counted with | exact |
//! |---|---|---|
//! | gpt-4o, gpt-4.1, gpt-5, o1/o3/o4, chatgpt-4o, gpt-oss | o200k_base | yes |
//! | gpt-4, gpt-3.5, text-embedding-3 | cl100k_base | yes |
//! | claude | o200k_base × 1.15 (Anthropic's tokenizer splits English finer) | no |
//! | anything else (gemini, deepseek, qwen, …) | o200k_base × 1.0 | no |
//!
//! A provider prefix (`openai/gpt-4o`, `anthropic/claude-…` as OpenRouter names them) is
//! looked through. The tables load once (about 60 ms for o200k_base); `warm_up_for` loads the
//! ones a run's models need off the sessions' threads as it starts.
//!
//! Why `tiktoken` and not `tiktoken-rs` (docs/PERFORMANCE.md, issue #22): the same counts
//! (a test compares both over this repository's text and random Unicode), but its tables are
//! zstd-compressed (1.2 MB for both, against 5.3 MB of base64) and load in about half the
//! time with a tenth of the allocations, and it counts 2 to 5 times faster without building
//! the token list. Building o200k_base was a fifth of a short run's CPU.

use tiktoken::CoreBpe;

/// How text of one model is counted.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Counter {
    encoding: Encoding,
    /// Multiplies the count for families counted with another family's tokenizer.
    ratio: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Encoding {
    O200k,
    Cl100k,
}

impl Encoding {
    /// The table, built on first use (once per process).
    fn table(self) -> &'static CoreBpe {
        let name = match self {
            Encoding::O200k => "o200k_base",
            Encoding::Cl100k => "cl100k_base",
        };
        // Both vocabularies are compiled in (Cargo features `vocab-o200k_base` and
        // `vocab-cl100k_base`), so the lookup cannot miss.
        tiktoken::get_encoding(name)
            .expect("the o200k_base and cl100k_base vocabularies are compiled in")
    }
}

/// Tokens counted in a text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counted {
    pub tokens: u64,
    /// Whether the model's own tokenizer counted them (else a documented ratio did).
    pub exact: bool,
}

/// The ratio for Claude models, counted with o200k_base.
pub const CLAUDE_RATIO: f64 = 1.15;

impl Counter {
    /// The counter for `model`.
    pub fn for_model(model: &str) -> Counter {
        let name = model.trim().to_ascii_lowercase();
        let bare = name.rsplit('/').next().unwrap_or(&name);
        match tiktoken::model_to_encoding(bare) {
            // o200k_harmony is o200k_base with chat-format special tokens, which text a relay
            // streams never holds as such.
            Some("o200k_base" | "o200k_harmony") => Counter {
                encoding: Encoding::O200k,
                ratio: 1.0,
            },
            Some("cl100k_base") => Counter {
                encoding: Encoding::Cl100k,
                ratio: 1.0,
            },
            _ if bare.starts_with("gpt-5") || bare.starts_with("gpt-oss") => Counter {
                encoding: Encoding::O200k,
                ratio: 1.0,
            },
            _ if bare.contains("claude") => Counter {
                encoding: Encoding::O200k,
                ratio: CLAUDE_RATIO,
            },
            _ => Counter {
                encoding: Encoding::O200k,
                ratio: 0.0,
            },
        }
    }

    /// Whether this family's own tokenizer counts (not a ratio over another's).
    pub fn is_exact(&self) -> bool {
        self.ratio == 1.0
    }

    fn bpe(&self) -> &'static CoreBpe {
        self.encoding.table()
    }

    /// Tokens in `text`.
    pub fn count(&self, text: &str) -> Counted {
        if text.is_empty() {
            return Counted {
                tokens: 0,
                exact: self.is_exact(),
            };
        }
        // Ordinary text: a special token's spelling in a reply is counted as the text it is.
        let raw = self.bpe().count(text) as f64;
        // Families without a table of their own: o200k_base as it counts (ratio 1.0), but
        // never marked exact.
        let ratio = if self.ratio == 0.0 { 1.0 } else { self.ratio };
        Counted {
            tokens: (raw * ratio).round().max(1.0) as u64,
            exact: self.is_exact(),
        }
    }
}

/// Loads the tokenizer tables the `models` count with, each on a thread of its own (once per
/// process), so the first response counted does not hold up a session: o200k_base takes
/// about 60 ms of a core to build, cl100k_base about 30 ms,
/// which on a session's thread would delay every session sharing it. A run calls it with its
/// sessions' models as it starts; a table nobody's model needs is never built (a process
/// that counts nothing pays nothing: `relaytop bench ingest`, docs/PERFORMANCE.md). A count
/// that comes before its table is ready waits for it (so live runs and replays count alike).
pub fn warm_up_for<'a>(models: impl IntoIterator<Item = &'a str>) {
    static O200K: std::sync::Once = std::sync::Once::new();
    static CL100K: std::sync::Once = std::sync::Once::new();
    let (mut o200k, mut cl100k) = (false, false);
    for model in models {
        match Counter::for_model(model).encoding {
            Encoding::O200k => o200k = true,
            Encoding::Cl100k => cl100k = true,
        }
    }
    let load = |once: &'static std::sync::Once, name: &str, build: fn()| {
        once.call_once(|| {
            let spawned = std::thread::Builder::new()
                .name(format!("relaytop-{name}"))
                .spawn(move || {
                    yield_to_sessions();
                    build();
                });
            if spawned.is_err() {
                // No thread to spare: the first count loads it.
                tracing::debug!(table = name, "a tokenizer table loads on first use");
            }
        });
    };
    if o200k {
        load(&O200K, "o200k", || {
            Encoding::O200k.table();
        });
    }
    if cl100k {
        load(&CL100K, "cl100k", || {
            Encoding::Cl100k.table();
        });
    }
}

/// Lowers the calling thread's scheduling priority to the least (nice 19), so that building a
/// table as a run starts takes the cores the sessions leave: on two cores a busy session, the
/// run's consumer and its recorder already want both, and the table is not needed before the
/// first response ends (a count that comes before it waits for it, and the build then has the
/// cores to itself). Linux only: there a thread's nice value is its own; elsewhere it would be
/// the whole process's, so this does nothing.
fn yield_to_sessions() {
    #[cfg(target_os = "linux")]
    #[allow(unsafe_code)]
    // SAFETY: setpriority only reads its arguments; `gettid` names this thread.
    unsafe {
        let tid = libc::gettid();
        if libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 19) != 0 {
            tracing::debug!("the tokenizer's thread keeps its priority");
        }
    }
}

/// Loads every tokenizer table now, on this thread (benchmarks call it before their clocks
/// start).
pub fn load_now() {
    Encoding::O200k.table();
    Encoding::Cl100k.table();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_pick_their_tokenizer() {
        assert!(Counter::for_model("gpt-4o-mini").is_exact());
        assert!(Counter::for_model("openai/gpt-4.1").is_exact());
        assert!(Counter::for_model("gpt-5-mini").is_exact());
        assert!(Counter::for_model("gpt-3.5-turbo").is_exact());
        assert!(!Counter::for_model("claude-sonnet-4-5").is_exact());
        assert!(!Counter::for_model("gemini-2.5-flash").is_exact());
        assert!(!Counter::for_model("deepseek-chat").is_exact());
    }

    #[test]
    fn counts_are_the_tokenizers_not_a_character_ratio() {
        let c = Counter::for_model("gpt-4o");
        // o200k_base: "Hello" "," " world" "!"
        assert_eq!(c.count("Hello, world!").tokens, 4);
        assert_eq!(c.count("").tokens, 0);
        // A long word of one repeated letter is few characters per token in no ratio's terms.
        let text = "relay ".repeat(100);
        let n = c.count(&text).tokens;
        assert!((95..=105).contains(&n), "{n}");
        let claude = Counter::for_model("claude-3-5-haiku").count(&text);
        assert_eq!(claude.tokens, (n as f64 * CLAUDE_RATIO).round() as u64);
        assert!(!claude.exact);
        // Chinese text: far more than one token per four characters.
        let zh = c.count("中转站的余额快用完了，请及时充值。").tokens;
        assert!(zh > 17 / 4 + 2, "{zh}");
    }

    /// The text the differential test counts: this repository's docs and this crate's
    /// sources, line by line and whole, and random strings of ASCII, CJK, Cyrillic, emoji,
    /// combining marks and odd whitespace.
    fn corpus() -> Vec<String> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = Vec::new();
        let mut dirs = vec![root.join("src"), root.join("../../docs")];
        while let Some(dir) = dirs.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs" || e == "md") {
                    files.push(path);
                }
            }
        }
        files.sort();
        let mut texts = Vec::new();
        for file in files {
            if let Ok(text) = std::fs::read_to_string(&file) {
                texts.extend(text.lines().map(str::to_owned));
                texts.push(text);
            }
        }
        let alphabet: Vec<char> = "abcXYZ 019 \t\n\r  .,;:!?'\"-_/\\()[]{}<>中转站的余额快用完了请及时充值日本語のテキストカタカナ한국어Привет мир🙂🚀👍🏽éüßñ\u{00a0}\u{3000}\u{200b}\u{0301}'s'S'll'VE<|endoftext|>"
            .chars()
            .collect();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..3_000 {
            let n = (next() % 120) as usize + 1;
            texts.push(
                (0..n)
                    .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                    .collect(),
            );
        }
        texts
    }

    /// relaytop counts with the `tiktoken` crate for its load time and speed; this pins its
    /// counts to tiktoken-rs's (itself OpenAI's tiktoken ported), text by text.
    #[test]
    fn counts_what_tiktoken_rs_counts() {
        let texts = corpus();
        assert!(texts.len() > 5_000, "{}", texts.len());
        for (counter, reference) in [
            (
                Counter::for_model("gpt-4o"),
                tiktoken_rs::o200k_base().unwrap(),
            ),
            (
                Counter::for_model("gpt-4"),
                tiktoken_rs::cl100k_base().unwrap(),
            ),
        ] {
            let mut differ = Vec::new();
            for text in &texts {
                let ours = counter.count(text).tokens;
                let theirs = reference.encode_ordinary(text).len().max(1) as u64;
                if !text.is_empty() && ours != theirs {
                    differ.push((ours, theirs, text.chars().take(60).collect::<String>()));
                }
            }
            assert!(
                differ.is_empty(),
                "{:?}: {} of {} texts differ, first {:?}",
                counter.encoding,
                differ.len(),
                texts.len(),
                &differ[..differ.len().min(5)]
            );
        }
    }
}
