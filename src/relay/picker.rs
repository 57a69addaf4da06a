//! Smooth weighted round-robin (nginx's algorithm): every pick, each eligible region
//! gains its weight, the highest is chosen and loses the total. Weights 3:1 give
//! A A B A, A A B A, ... : proportional and interleaved, never bursts. Pure: the caller
//! says which regions are eligible.

#[derive(Debug, Default)]
pub struct SmoothWeighted {
    current: Vec<i64>,
}

impl SmoothWeighted {
    pub fn new(regions: usize) -> Self {
        Self {
            current: vec![0; regions],
        }
    }

    /// The next region among those `eligible`, or `None` when none is.
    pub fn pick(&mut self, weights: &[u32], eligible: impl Fn(usize) -> bool) -> Option<usize> {
        if self.current.len() != weights.len() {
            self.current = vec![0; weights.len()];
        }
        let mut total = 0i64;
        let mut best: Option<usize> = None;
        for (i, &weight) in weights.iter().enumerate() {
            if !eligible(i) {
                continue;
            }
            self.current[i] += i64::from(weight);
            total += i64::from(weight);
            if best.is_none_or(|b| self.current[i] > self.current[b]) {
                best = Some(i);
            }
        }
        if let Some(b) = best {
            self.current[b] -= total;
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sequence(weights: &[u32], n: usize) -> String {
        let mut p = SmoothWeighted::new(weights.len());
        (0..n)
            .map(|_| (b'A' + p.pick(weights, |_| true).unwrap() as u8) as char)
            .collect()
    }

    #[test]
    fn exact_sequences() {
        assert_eq!(sequence(&[3, 1], 8), "AABAAABA");
        assert_eq!(sequence(&[5, 1, 1], 7), "AABACAA");
        assert_eq!(sequence(&[1, 1], 4), "ABAB");
        assert_eq!(sequence(&[1], 3), "AAA");
    }

    #[test]
    fn three_to_one_over_400_is_exactly_300_100() {
        let mut p = SmoothWeighted::new(2);
        let mut counts = [0; 2];
        for _ in 0..400 {
            counts[p.pick(&[3, 1], |_| true).unwrap()] += 1;
        }
        assert_eq!(counts, [300, 100]);
    }

    #[test]
    fn ineligible_regions_are_skipped_and_none_means_none() {
        let mut p = SmoothWeighted::new(3);
        for _ in 0..10 {
            assert_eq!(p.pick(&[3, 1, 1], |i| i != 0).map(|i| i > 0), Some(true));
        }
        assert_eq!(p.pick(&[3, 1, 1], |_| false), None);
    }
}
