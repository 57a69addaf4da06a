//! What the relay charges, in USD per million tokens, for the cost and savings columns.
//! Built-in defaults cover common models; `[pricing]` in the config overrides or adds.
//! A dated model name (`gpt-4o-mini-2024-07-18`) is priced as its longest known prefix.
//! Unknown models cost 0 and are reported once in the log and in a metric.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

use crate::config::ModelPrice;

/// Published list prices (USD per 1M tokens) when this table was written; override in
/// `[pricing]` when your relay charges differently.
const DEFAULTS: &[(&str, f64, f64)] = &[
    ("gpt-4o", 2.50, 10.00),
    ("gpt-4o-mini", 0.15, 0.60),
    ("gpt-4.1", 2.00, 8.00),
    ("gpt-4.1-mini", 0.40, 1.60),
    ("gpt-4.1-nano", 0.10, 0.40),
    ("gpt-4-turbo", 10.00, 30.00),
    ("gpt-3.5-turbo", 0.50, 1.50),
    ("gpt-3.5-turbo-instruct", 1.50, 2.00),
    ("o1", 15.00, 60.00),
    ("o1-mini", 1.10, 4.40),
    ("o3-mini", 1.10, 4.40),
    ("text-embedding-3-small", 0.02, 0.0),
    ("text-embedding-3-large", 0.13, 0.0),
    ("text-embedding-ada-002", 0.10, 0.0),
];

/// Unknown model names remembered (and logged once each); past this, unknown models are
/// only counted. Clients choose model names, so the set must not grow with them.
pub const MAX_UNKNOWN_REPORTED: usize = 256;

pub struct Pricing {
    /// Hashed, not ordered: every analytics row of a hit looks its model up here, and a
    /// `BTreeMap` of the defaults took ~300 instructions for it (callgrind).
    prices: foldhash::HashMap<String, ModelPrice>,
    unknown_reported: Mutex<HashSet<String>>,
}

impl Pricing {
    pub fn new(overrides: &BTreeMap<String, ModelPrice>) -> Self {
        let mut prices: foldhash::HashMap<String, ModelPrice> = DEFAULTS
            .iter()
            .map(|&(m, input, output)| (m.to_owned(), ModelPrice { input, output }))
            .collect();
        prices.extend(overrides.iter().map(|(k, v)| (k.clone(), *v)));
        Self {
            prices,
            unknown_reported: Mutex::new(HashSet::new()),
        }
    }

    /// The price of `model`: exact name, else the longest known prefix followed by `-`.
    pub fn price(&self, model: &str) -> Option<ModelPrice> {
        if let Some(p) = self.prices.get(model) {
            return Some(*p);
        }
        self.prices
            .iter()
            .filter(|(name, _)| {
                model
                    .strip_prefix(name.as_str())
                    .is_some_and(|rest| rest.starts_with('-'))
            })
            .max_by_key(|(name, _)| name.len())
            .map(|(_, p)| *p)
    }

    /// USD for this usage; 0 for an unknown model. Returns whether the model was known,
    /// and whether this is the first time it was not (so the caller logs it once).
    pub fn cost(&self, model: &str, prompt_tokens: u64, completion_tokens: u64) -> (f64, Known) {
        match self.price(model) {
            Some(p) => (
                (prompt_tokens as f64 * p.input + completion_tokens as f64 * p.output) / 1e6,
                Known::Yes,
            ),
            None => {
                let mut reported = self
                    .unknown_reported
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let first = reported.len() < MAX_UNKNOWN_REPORTED
                    && !reported.contains(model)
                    && reported.insert(model.to_owned());
                (
                    0.0,
                    if first {
                        Known::FirstUnknown
                    } else {
                        Known::Unknown
                    },
                )
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Known {
    Yes,
    FirstUnknown,
    Unknown,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_names_remembered_are_bounded() {
        let pricing = Pricing::new(&BTreeMap::new());
        let firsts = (0..MAX_UNKNOWN_REPORTED + 100)
            .filter(|i| pricing.cost(&format!("made-up-{i}"), 1, 1).1 == Known::FirstUnknown)
            .count();
        assert_eq!(firsts, MAX_UNKNOWN_REPORTED);
        assert_eq!(
            pricing.unknown_reported.lock().unwrap().len(),
            MAX_UNKNOWN_REPORTED
        );
        assert_eq!(pricing.cost("made-up-0", 1, 1).1, Known::Unknown);
    }

    #[test]
    fn prices_by_exact_name_then_longest_prefix() {
        let p = Pricing::new(&BTreeMap::new());
        assert_eq!(p.price("gpt-4o").unwrap().input, 2.50);
        assert_eq!(p.price("gpt-4o-mini-2024-07-18").unwrap().input, 0.15);
        assert_eq!(p.price("gpt-4o-2024-08-06").unwrap().output, 10.0);
        assert!(p.price("gpt-4omni").is_none());
        let (usd, known) = p.cost("gpt-4o-mini", 1_000_000, 2_000_000);
        assert!((usd - (0.15 + 1.20)).abs() < 1e-9);
        assert_eq!(known, Known::Yes);
    }

    #[test]
    fn overrides_win_and_unknown_models_cost_nothing_reported_once() {
        let mut o = BTreeMap::new();
        o.insert(
            "gpt-4o".to_owned(),
            ModelPrice {
                input: 1.0,
                output: 2.0,
            },
        );
        o.insert(
            "my-local-llm".to_owned(),
            ModelPrice {
                input: 0.5,
                output: 0.5,
            },
        );
        let p = Pricing::new(&o);
        assert_eq!(p.price("gpt-4o").unwrap().input, 1.0);
        assert_eq!(p.price("my-local-llm").unwrap().output, 0.5);
        assert_eq!(p.cost("mystery", 10, 10), (0.0, Known::FirstUnknown));
        assert_eq!(p.cost("mystery", 10, 10), (0.0, Known::Unknown));
    }
}
