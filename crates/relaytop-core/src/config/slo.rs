//! Service-level objectives (`[slo]`): what makes one request good (time to first token, time
//! per output token or output speed, end-to-end time), per provider when wanted, and the share
//! of requests that must be good (the objective whose complement is the error budget).
//!
//! A request is good, as vLLM's `--goodput` defines it, when it completed (not failed, not
//! cut) and met every threshold that is set at once. With no threshold set, every completed
//! request is good: goodput is then the rate of completed requests.
//!
//! ```toml
//! [slo]
//! ttft_ms = 800          # time to first token at most 800 ms
//! tpot_ms = 50           # or output_speed = 20 (tokens/s at least); the stricter wins
//! e2e_ms = 30000         # the whole response within 30 s
//! objective = 0.99       # 99 % of requests good (error budget 1 %)
//!
//! [slo.providers.legacy] # a provider's own thresholds, over the ones above
//! ttft_ms = 1500
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `[slo]` as written; every field is optional.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SloConfig {
    /// Time to first token at most this, milliseconds.
    pub ttft_ms: Option<f64>,
    /// Time per output token at most this, milliseconds.
    pub tpot_ms: Option<f64>,
    /// Output speed at least this, tokens per second (the same as `tpot_ms = 1000 / speed`).
    pub output_speed: Option<f64>,
    /// The whole response within this, milliseconds.
    pub e2e_ms: Option<f64>,
    /// The share of requests that must be good, between 0 and 1 (default 0.99).
    pub objective: Option<f64>,
    /// A provider's own settings, over the ones above (`[slo.providers.NAME]`).
    #[serde(default)]
    pub providers: BTreeMap<String, SloConfig>,
}

/// The objective of one provider (or of the run), resolved: thresholds in microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Slo {
    /// Time to first token at most this, microseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttft_us: Option<u64>,
    /// Time per output token at most this, microseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tpot_us: Option<u64>,
    /// The whole response within this, microseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub e2e_us: Option<u64>,
    /// The share of requests that must be good.
    pub objective: f64,
}

/// The default objective: 99 % of requests good.
pub const DEFAULT_OBJECTIVE: f64 = 0.99;

impl Default for Slo {
    fn default() -> Self {
        Self {
            ttft_us: None,
            tpot_us: None,
            e2e_us: None,
            objective: DEFAULT_OBJECTIVE,
        }
    }
}

/// What one finished request measured, for `Slo::is_good`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Measured {
    /// Whether it completed (not failed, not cut).
    pub completed: bool,
    pub ttft_us: Option<u64>,
    /// Time per output token; `None` when the response had fewer than two output tokens.
    pub tpot_us: Option<u64>,
    pub e2e_us: u64,
}

impl Slo {
    /// Whether any threshold is set.
    pub fn has_thresholds(&self) -> bool {
        self.ttft_us.is_some() || self.tpot_us.is_some() || self.e2e_us.is_some()
    }

    /// Whether a request is good: completed and within every threshold that is set. A
    /// threshold on a figure the request does not have (no first token, one output token)
    /// is met only for time per output token, which a one-token answer cannot have.
    pub fn is_good(&self, m: &Measured) -> bool {
        if !m.completed {
            return false;
        }
        let within = |limit: Option<u64>, value: Option<u64>, missing_ok: bool| match (limit, value)
        {
            (None, _) => true,
            (Some(limit), Some(v)) => v <= limit,
            (Some(_), None) => missing_ok,
        };
        within(self.ttft_us, m.ttft_us, false)
            && within(self.tpot_us, m.tpot_us, true)
            && within(self.e2e_us, Some(m.e2e_us), false)
    }

    /// The error budget: the share of requests allowed to be bad.
    pub fn error_budget(&self) -> f64 {
        1.0 - self.objective
    }

    /// A short description: "TTFT ≤ 800 ms, TPOT ≤ 50 ms, 99 % good".
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(t) = self.ttft_us {
            parts.push(format!("TTFT ≤ {} ms", fmt_ms(t)));
        }
        if let Some(t) = self.tpot_us {
            parts.push(format!("TPOT ≤ {} ms", fmt_ms(t)));
        }
        if let Some(t) = self.e2e_us {
            parts.push(format!("E2E ≤ {} ms", fmt_ms(t)));
        }
        if parts.is_empty() {
            parts.push("completed".into());
        }
        format!("{}, {} % good", parts.join(", "), self.objective * 100.0)
    }
}

fn fmt_ms(us: u64) -> String {
    let ms = us as f64 / 1000.0;
    if ms.fract() == 0.0 {
        format!("{ms:.0}")
    } else {
        format!("{ms}")
    }
}

/// Every provider's objective, resolved.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Slos {
    /// The run's objective, and every provider's unless it has its own.
    pub default: Slo,
    /// Providers with their own settings.
    pub providers: BTreeMap<String, Slo>,
}

impl Slos {
    /// The objective of `provider`.
    pub fn of(&self, provider: &str) -> &Slo {
        self.providers.get(provider).unwrap_or(&self.default)
    }
}

impl SloConfig {
    /// Checks and resolves `[slo]`; `providers` are the names defined, so a misspelt one is
    /// caught. Errors say which key is wrong and why.
    pub fn resolve(&self, providers: &[&str]) -> Result<Slos, String> {
        let default = self.resolve_over(&Slo::default(), "[slo]")?;
        let mut out = Slos {
            default,
            providers: BTreeMap::new(),
        };
        for (name, p) in &self.providers {
            if !providers.contains(&name.as_str()) {
                return Err(format!(
                    "[slo.providers.{name}]: no provider `{name}` (known: {})",
                    providers.join(", ")
                ));
            }
            if !p.providers.is_empty() {
                return Err(format!(
                    "[slo.providers.{name}]: providers cannot be nested"
                ));
            }
            let slo = p.resolve_over(&default, &format!("[slo.providers.{name}]"))?;
            out.providers.insert(name.clone(), slo);
        }
        Ok(out)
    }

    fn resolve_over(&self, base: &Slo, at: &str) -> Result<Slo, String> {
        let ms = |key: &str, v: Option<f64>| -> Result<Option<u64>, String> {
            match v {
                None => Ok(None),
                Some(v) if v.is_finite() && v > 0.0 && v <= 3_600_000.0 => {
                    Ok(Some((v * 1000.0).round() as u64))
                }
                Some(v) => Err(format!(
                    "{at} {key} = {v}: give milliseconds above 0 and at most an hour"
                )),
            }
        };
        let mut slo = *base;
        if let Some(t) = ms("ttft_ms", self.ttft_ms)? {
            slo.ttft_us = Some(t);
        }
        if let Some(t) = ms("e2e_ms", self.e2e_ms)? {
            slo.e2e_us = Some(t);
        }
        let tpot = ms("tpot_ms", self.tpot_ms)?;
        let speed = match self.output_speed {
            None => None,
            Some(s) if s.is_finite() && s > 0.0 && s <= 1_000_000.0 => {
                Some((1e6 / s).round() as u64)
            }
            Some(s) => {
                return Err(format!(
                    "{at} output_speed = {s}: give tokens per second above 0"
                ));
            }
        };
        // The stricter of the two says the same thing twice.
        if let Some(t) = match (tpot, speed) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        } {
            slo.tpot_us = Some(t);
        }
        if let Some(o) = self.objective {
            if !(o > 0.0 && o < 1.0) {
                return Err(format!(
                    "{at} objective = {o}: give the share of requests that must be good, \
                     between 0 and 1 (0.99 for 99 %)"
                ));
            }
            slo.objective = o;
        }
        Ok(slo)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> SloConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn thresholds_resolve_and_providers_override() {
        let c = parse(
            "ttft_ms = 800\noutput_speed = 20\ntpot_ms = 60\n\
             [providers.legacy]\nttft_ms = 1500\nobjective = 0.95\n",
        );
        let s = c.resolve(&["legacy", "holysheep"]).unwrap();
        assert_eq!(s.default.ttft_us, Some(800_000));
        assert_eq!(
            s.default.tpot_us,
            Some(50_000),
            "20 tokens/s is stricter than 60 ms"
        );
        assert_eq!(s.of("holysheep"), &s.default);
        let l = s.of("legacy");
        assert_eq!(l.ttft_us, Some(1_500_000));
        assert_eq!(l.tpot_us, Some(50_000), "inherited");
        assert_eq!(l.objective, 0.95);
        assert!((l.error_budget() - 0.05).abs() < 1e-12);
    }

    #[test]
    fn good_means_completed_and_every_threshold_met() {
        let slo = Slo {
            ttft_us: Some(500_000),
            tpot_us: Some(40_000),
            e2e_us: None,
            objective: 0.99,
        };
        let ok = Measured {
            completed: true,
            ttft_us: Some(400_000),
            tpot_us: Some(30_000),
            e2e_us: 9_000_000,
        };
        assert!(slo.is_good(&ok));
        assert!(!slo.is_good(&Measured {
            completed: false,
            ..ok
        }));
        assert!(!slo.is_good(&Measured {
            ttft_us: Some(500_001),
            ..ok
        }));
        assert!(!slo.is_good(&Measured {
            tpot_us: Some(40_001),
            ..ok
        }));
        assert!(
            slo.is_good(&Measured {
                tpot_us: None,
                ..ok
            }),
            "a one-token answer"
        );
        assert!(
            !slo.is_good(&Measured {
                ttft_us: None,
                ..ok
            }),
            "no token at all"
        );
        assert!(
            Slo::default().is_good(&ok),
            "no thresholds: completed is good"
        );
    }

    #[test]
    fn bad_settings_say_what_to_write() {
        let e = parse("objective = 99").resolve(&[]).unwrap_err();
        assert!(e.contains("0.99 for 99 %"), "{e}");
        let e = parse("ttft_ms = -1").resolve(&[]).unwrap_err();
        assert!(e.contains("ttft_ms"), "{e}");
        let e = parse("[providers.nope]\nttft_ms = 1")
            .resolve(&["a"])
            .unwrap_err();
        assert!(e.contains("no provider `nope`"), "{e}");
        assert_eq!(
            parse("ttft_ms = 800\ne2e_ms = 1500.5")
                .resolve(&[])
                .unwrap()
                .default
                .describe(),
            "TTFT ≤ 800 ms, E2E ≤ 1500.5 ms, 99 % good"
        );
    }
}
