//! The semantic cache's shadow mode, on the operator's own traffic: one
//! `semantic_shadow` row per miss that had a candidate (what would have been served, and
//! how it compared with the relay's fresh answer), and the report that reads a threshold
//! off them: per threshold, would-be hits, dollars and disagreements, and the lowest
//! threshold whose disagreement rate stays under a chosen bound.

use std::fmt::Write as _;
use std::sync::Arc;

use rusqlite::{Connection, params};
use serde::Serialize;

use crate::endpoint::Endpoint;
use crate::keying::CacheKey;

/// One would-be semantic hit, with the fresh answer it is judged against.
#[derive(Clone, Debug)]
pub struct ShadowRow {
    pub ts_ms: u64,
    pub endpoint: Endpoint,
    pub namespace: Arc<str>,
    pub model: Arc<str>,
    pub key: CacheKey,
    pub candidate_key: CacheKey,
    pub similarity: f32,
    /// `pass`, or the verifier's reason for refusing.
    pub verdict: &'static str,
    pub deterministic: bool,
    pub answers_equal: bool,
    pub answer_similarity: Option<f32>,
    pub fresh_chars: u64,
    pub candidate_chars: u64,
    pub would_save_usd: f64,
}

pub(super) fn insert(
    conn: &mut Connection,
    region: &str,
    rows: &[ShadowRow],
) -> rusqlite::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let tx = conn.transaction()?;
    {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO semantic_shadow (ts, region, endpoint, namespace, model, key_hash,
                 candidate_key, similarity, verdict, deterministic, answers_equal,
                 answer_similarity, fresh_chars, candidate_chars, would_save_usd)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
        )?;
        for r in rows {
            stmt.execute(params![
                r.ts_ms as i64,
                region,
                r.endpoint.as_str(),
                r.namespace.as_ref(),
                r.model.as_ref(),
                r.key.to_hex(),
                r.candidate_key.to_hex(),
                f64::from(r.similarity),
                r.verdict,
                i64::from(r.deterministic),
                i64::from(r.answers_equal),
                r.answer_similarity.map(f64::from),
                r.fresh_chars as i64,
                r.candidate_chars as i64,
                r.would_save_usd,
            ])?;
        }
    }
    tx.commit()
}

/// What counts as the would-be answer disagreeing with the fresh one.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Agreement {
    /// Non-deterministic requests: answers whose embeddings are at least this similar
    /// agree (deterministic ones must be equal).
    pub min_answer_similarity: f32,
    /// The suggested threshold keeps disagreements at or under this share of would-be hits.
    pub max_disagreement: f64,
}

impl Default for Agreement {
    fn default() -> Self {
        Self {
            min_answer_similarity: 0.85,
            max_disagreement: 0.02,
        }
    }
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ShadowStep {
    pub threshold: f64,
    /// Misses that would have been semantic hits at this threshold.
    pub would_hits: u64,
    /// Their share of the range's misses.
    pub would_hit_rate: f64,
    pub would_save_usd: f64,
    pub disagreements: u64,
    pub disagreement_rate: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ShadowReport {
    pub since_ms: u64,
    pub until_ms: u64,
    /// Misses in the range (`cache_events` rows with tier `miss`).
    pub misses: u64,
    /// Shadow rows in the range (misses that had a candidate).
    pub candidates: u64,
    /// Candidates the verifier refused (never served at any threshold).
    pub refused: u64,
    pub agreement: Agreement,
    pub steps: Vec<ShadowStep>,
    /// The lowest threshold (0.01 steps) with would-be hits whose disagreement rate is at
    /// most `agreement.max_disagreement`; `None` when no threshold qualifies.
    pub suggested_threshold: Option<f64>,
}

/// Thresholds shown in the report.
const STEPS: &[f64] = &[
    0.50, 0.55, 0.60, 0.65, 0.70, 0.75, 0.80, 0.82, 0.84, 0.86, 0.88, 0.90, 0.92, 0.94, 0.96, 0.98,
];

struct Sample {
    similarity: f64,
    pass: bool,
    disagrees: bool,
    save: f64,
}

fn step(samples: &[Sample], threshold: f64, misses: u64) -> ShadowStep {
    let (mut hits, mut disagreements, mut save) = (0u64, 0u64, 0.0);
    for s in samples {
        // Stored similarities are f32: compare with the same rounding the gateway uses.
        if s.pass && s.similarity + 1e-6 >= threshold {
            hits += 1;
            disagreements += u64::from(s.disagrees);
            save += s.save;
        }
    }
    let rate = |n: u64, d: u64| {
        if d == 0 {
            0.0
        } else {
            (n as f64 / d as f64 * 1e4).round() / 1e4
        }
    };
    ShadowStep {
        threshold,
        would_hits: hits,
        would_hit_rate: rate(hits, misses),
        would_save_usd: (save * 1e6).round() / 1e6,
        disagreements,
        disagreement_rate: rate(disagreements, hits),
    }
}

pub fn report(
    conn: &Connection,
    since_ms: u64,
    until_ms: u64,
    agreement: Agreement,
) -> rusqlite::Result<ShadowReport> {
    let range = [since_ms as i64, until_ms as i64];
    let misses: i64 = conn.query_row(
        "SELECT count(*) FROM cache_events WHERE tier = 'miss' AND ts >= ?1 AND ts < ?2",
        range,
        |r| r.get(0),
    )?;
    let mut stmt = conn.prepare(
        "SELECT similarity, verdict, deterministic, answers_equal, answer_similarity,
                would_save_usd
         FROM semantic_shadow WHERE ts >= ?1 AND ts < ?2",
    )?;
    let samples: Vec<Sample> = stmt
        .query_map(range, |r| {
            let deterministic: bool = r.get(2)?;
            let equal: bool = r.get(3)?;
            let answer_similarity: Option<f64> = r.get(4)?;
            let agrees = if deterministic {
                equal
            } else {
                equal
                    || answer_similarity
                        .is_some_and(|s| s + 1e-6 >= f64::from(agreement.min_answer_similarity))
            };
            Ok(Sample {
                similarity: r.get(0)?,
                pass: r.get::<_, String>(1)? == "pass",
                disagrees: !agrees,
                save: r.get(5)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let misses = misses as u64;
    let steps = STEPS.iter().map(|&t| step(&samples, t, misses)).collect();
    let suggested_threshold = (50..=99).map(|p| f64::from(p) / 100.0).find(|&t| {
        let s = step(&samples, t, misses);
        s.would_hits > 0 && s.disagreement_rate <= agreement.max_disagreement
    });
    Ok(ShadowReport {
        since_ms,
        until_ms,
        misses,
        candidates: samples.len() as u64,
        refused: samples.iter().filter(|s| !s.pass).count() as u64,
        agreement,
        steps,
        suggested_threshold,
    })
}

impl ShadowReport {
    pub fn to_csv(&self) -> String {
        let mut out = String::from(
            "threshold,would_hits,would_hit_rate,would_save_usd,disagreements,disagreement_rate\n",
        );
        for s in &self.steps {
            let _ = writeln!(
                out,
                "{:.2},{},{:.4},{:.6},{},{:.4}",
                s.threshold,
                s.would_hits,
                s.would_hit_rate,
                s.would_save_usd,
                s.disagreements,
                s.disagreement_rate
            );
        }
        out
    }

    pub fn to_table(&self) -> String {
        let mut out = format!(
            "misses {}, with a semantic candidate {}, refused by the verifier {}\n\n",
            self.misses, self.candidates, self.refused
        );
        let _ = writeln!(
            out,
            "{:>9}  {:>10}  {:>14}  {:>14}  {:>13}  {:>17}",
            "threshold",
            "would_hits",
            "would_hit_rate",
            "would_save_usd",
            "disagreements",
            "disagreement_rate"
        );
        for s in &self.steps {
            let _ = writeln!(
                out,
                "{:>9.2}  {:>10}  {:>14.4}  {:>14.6}  {:>13}  {:>17.4}",
                s.threshold,
                s.would_hits,
                s.would_hit_rate,
                s.would_save_usd,
                s.disagreements,
                s.disagreement_rate
            );
        }
        let _ = match self.suggested_threshold {
            Some(t) => writeln!(
                out,
                "\nsuggested threshold: {t:.2} (lowest with disagreements at or under {:.2}%)",
                self.agreement.max_disagreement * 100.0
            ),
            None => writeln!(
                out,
                "\nsuggested threshold: none (no threshold keeps disagreements at or under {:.2}%)",
                self.agreement.max_disagreement * 100.0
            ),
        };
        out
    }
}

/// Deletes rows older than `days`; returns how many.
pub fn prune(conn: &Connection, cutoff_ms: u64) -> rusqlite::Result<usize> {
    conn.execute(
        "DELETE FROM semantic_shadow WHERE ts < ?1",
        [cutoff_ms as i64],
    )
}
