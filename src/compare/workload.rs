//! The workload of `relaytop compare`: the load levels (a closed-loop concurrency sweep or
//! open-loop Poisson rates), the prompt sets sized by input tokens with the model's tokenizer,
//! a fresh random prefix on every request (no prompt cache flatters a relay), and the Poisson
//! arrival schedule, seeded so every relay gets the very same one.

use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use relaytop_core::protocol::relay_v1::{ChatMessage, Role};
use relaytop_core::tokenize::Counter;

/// How load is put on the relays.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "mode", content = "levels", rename_all = "snake_case")]
pub enum Load {
    /// Closed loop: this many requests in flight at once, each sent when the last ended.
    Concurrency(Vec<u32>),
    /// Open loop: Poisson arrivals at this many requests a second, whatever the relay does.
    Rate(Vec<f64>),
}

impl Load {
    /// The levels as numbers (for tables, charts and the knee).
    pub fn levels(&self) -> Vec<f64> {
        match self {
            Load::Concurrency(c) => c.iter().map(|&c| f64::from(c)).collect(),
            Load::Rate(r) => r.clone(),
        }
    }

    /// "concurrency" or "requests/s".
    pub fn unit(&self) -> &'static str {
        match self {
            Load::Concurrency(_) => "concurrency",
            Load::Rate(_) => "requests/s",
        }
    }

    /// One level in words: "concurrency 4", "2 requests/s".
    pub fn describe_level(&self, level: f64) -> String {
        match self {
            Load::Concurrency(_) => format!("concurrency {level}"),
            Load::Rate(_) => format!("{level} requests/s"),
        }
    }
}

/// Words a prompt is made of (plain English; the tokenizer sizes the result).
const FILLER: &str = "The relay forwards each request to an upstream model and streams the \
answer back token by token; measure how long the first token takes, how fast the rest come, \
and whether the stream ends cleanly. ";

/// Prompts of the sizes asked, one base text a size, each about that many tokens for `model`.
#[derive(Clone, Debug)]
pub struct Prompts {
    bases: Vec<(u32, String)>,
}

impl Prompts {
    /// Base texts of about `sizes` tokens each, counted with `model`'s tokenizer.
    pub fn sized(sizes: &[u32], model: &str) -> Prompts {
        let counter = Counter::for_model(model);
        let unit = counter.count(FILLER).tokens.max(1);
        let bases = sizes
            .iter()
            .map(|&size| {
                let instruction = "Summarise the text below in one sentence.\n\n";
                let fixed = counter.count(instruction).tokens + 8; // the prefix's tokens
                let want = u64::from(size).saturating_sub(fixed).max(1);
                let mut text = String::from(instruction);
                let whole = want / unit;
                for _ in 0..whole {
                    text.push_str(FILLER);
                }
                // The rest word by word, counted.
                let mut words = FILLER.split(' ').cycle();
                let mut guard = 0;
                while counter.count(&text).tokens + 8 < u64::from(size) && guard < 200 {
                    text.push_str(words.next().unwrap_or("relay"));
                    text.push(' ');
                    guard += 1;
                }
                (size, text)
            })
            .collect();
        Prompts { bases }
    }

    /// The sizes, in order.
    pub fn sizes(&self) -> Vec<u32> {
        self.bases.iter().map(|(s, _)| *s).collect()
    }

    /// Request number `k`'s messages: sizes in turn, behind a fresh prefix drawn from `rng`.
    pub fn request(&self, k: u64, rng: &mut SmallRng) -> (u32, Vec<ChatMessage>) {
        let i = usize::try_from(k).unwrap_or(0) % self.bases.len().max(1);
        let Some((size, base)) = self.bases.get(i) else {
            return (0, vec![ChatMessage::new(Role::User, "ping")]);
        };
        let nonce: u64 = rng.random();
        let text = format!("[request {nonce:016x}] {base}");
        (*size, vec![ChatMessage::new(Role::User, text)])
    }
}

/// Poisson arrival offsets at `rate` a second over `span`, from a generator seeded with `seed`
/// (exponential gaps): the same seed gives every relay the same schedule.
pub fn poisson(rate: f64, span: Duration, seed: u64) -> Vec<Duration> {
    let mut out = Vec::new();
    if !(rate.is_finite() && rate > 0.0) {
        return out;
    }
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut t = 0.0;
    let end = span.as_secs_f64();
    loop {
        let u: f64 = rng.random::<f64>();
        t += -(1.0 - u).ln() / rate;
        if t >= end || out.len() > 1_000_000 {
            return out;
        }
        out.push(Duration::from_secs_f64(t));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_poisson_is_seeded_and_near_its_rate() {
        let a = poisson(10.0, Duration::from_secs(100), 3);
        assert_eq!(a, poisson(10.0, Duration::from_secs(100), 3));
        assert!((900..1100).contains(&a.len()), "{}", a.len());
        assert!(a.windows(2).all(|w| w[0] <= w[1]));
        assert!(poisson(0.0, Duration::from_secs(1), 1).is_empty());
    }

    #[test]
    fn compare_prompts_have_about_the_asked_size_and_fresh_prefixes() {
        let p = Prompts::sized(&[100, 1000], "gpt-4.1");
        let counter = Counter::for_model("gpt-4.1");
        let mut rng = SmallRng::seed_from_u64(1);
        let (size, m1) = p.request(0, &mut rng);
        assert_eq!(size, 100);
        let n = counter.count(&m1[0].content).tokens;
        assert!((80..=130).contains(&n), "{n}");
        let (size, m2) = p.request(1, &mut rng);
        assert_eq!(size, 1000);
        let n = counter.count(&m2[0].content).tokens;
        assert!((900..=1100).contains(&n), "{n}");
        let (_, m3) = p.request(2, &mut rng);
        assert_ne!(m1[0].content, m3[0].content, "a fresh prefix each request");
    }
}
