//! Smooth weighted round-robin: which provider the next canary request goes to.
//!
//! Each pick adds every weight to its running score, picks the highest score, and takes the
//! total off the winner (nginx's algorithm). Over any run of `total` picks each provider gets
//! exactly its weight, spread out rather than in bursts: 10 % is one request in ten.

/// The split between providers.
#[derive(Clone, Debug, Default)]
pub struct Router {
    entries: Vec<Entry>,
}

#[derive(Clone, Debug)]
struct Entry {
    name: String,
    weight: i64,
    score: i64,
}

impl Router {
    /// A router over `(provider, weight)`; weights of 0 are never picked.
    pub fn new(weights: &[(&str, u32)]) -> Self {
        let mut router = Router::default();
        router.set_weights(weights);
        router
    }

    /// Changes the split at once (scores start again, so the new split is exact from here).
    pub fn set_weights(&mut self, weights: &[(&str, u32)]) {
        self.entries = weights
            .iter()
            .map(|(name, weight)| Entry {
                name: (*name).to_owned(),
                weight: i64::from(*weight),
                score: 0,
            })
            .collect();
    }

    /// The current weights.
    pub fn weights(&self) -> Vec<(String, u32)> {
        self.entries
            .iter()
            .map(|e| (e.name.clone(), u32::try_from(e.weight).unwrap_or(0)))
            .collect()
    }

    /// The provider of the next request; `None` when every weight is 0.
    pub fn pick(&mut self) -> Option<&str> {
        let total: i64 = self.entries.iter().map(|e| e.weight).sum();
        if total <= 0 {
            return None;
        }
        let mut winner: Option<usize> = None;
        for i in 0..self.entries.len() {
            let entry = &mut self.entries[i];
            entry.score += entry.weight;
            let score = entry.score;
            // The highest score wins; the first among equals.
            if entry.weight > 0 && winner.is_none_or(|w| score > self.entries[w].score) {
                winner = Some(i);
            }
        }
        let entry = &mut self.entries[winner?];
        entry.score -= total;
        Some(entry.name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn picks(router: &mut Router, n: usize) -> Vec<String> {
        (0..n)
            .map(|_| router.pick().unwrap_or("none").to_owned())
            .collect()
    }

    #[test]
    fn ten_percent_is_exactly_one_in_ten() {
        let mut r = Router::new(&[("legacy", 90), ("holysheep", 10)]);
        for round in 0..50 {
            let ten = picks(&mut r, 10);
            let canary = ten.iter().filter(|p| *p == "holysheep").count();
            assert_eq!(canary, 1, "round {round}: {ten:?}");
        }
    }

    #[test]
    fn thirty_percent_is_spread_out() {
        let mut r = Router::new(&[("legacy", 70), ("holysheep", 30)]);
        let ten = picks(&mut r, 10);
        assert_eq!(ten.iter().filter(|p| *p == "holysheep").count(), 3);
        // Never two canary requests in a row at 30 %.
        assert!(
            ten.windows(2)
                .all(|w| !(w[0] == "holysheep" && w[1] == "holysheep")),
            "{ten:?}"
        );
        let hundred = picks(&mut r, 100);
        assert_eq!(hundred.iter().filter(|p| *p == "holysheep").count(), 30);
    }

    #[test]
    fn zero_weights_are_never_picked_and_changes_apply_at_once() {
        let mut r = Router::new(&[("legacy", 90), ("holysheep", 10)]);
        picks(&mut r, 3);
        r.set_weights(&[("legacy", 100), ("holysheep", 0)]);
        assert!(picks(&mut r, 1000).iter().all(|p| p == "legacy"));
        r.set_weights(&[("legacy", 0), ("holysheep", 0)]);
        assert_eq!(r.pick(), None);
        r.set_weights(&[("legacy", 50), ("holysheep", 50)]);
        assert_eq!(
            picks(&mut r, 4),
            ["legacy", "holysheep", "legacy", "holysheep"]
        );
        assert_eq!(r.weights()[1], ("holysheep".to_owned(), 50));
    }
}
