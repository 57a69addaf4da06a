//! The `edge-gateway analytics` command and the `GET /admin/analytics` body share this:
//! parse the range and groups, read the local table or the global Redis counters, and
//! render as table, JSON or CSV.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use serde_json::{Value, json};

use super::global::{Counts, read_global};
use super::query::{self, Report};
use crate::cache::RedisTier;

/// A parsed request for figures.
#[derive(Debug, Clone)]
pub struct Request {
    pub since_ms: u64,
    pub until_ms: u64,
    pub group_by: Vec<query::Dimension>,
}

impl Request {
    /// `since` and `until` relative to `now` (Unix ms, the caller's clock).
    pub fn parse(
        since: &str,
        until: Option<&str>,
        group_by: &str,
        now: u64,
    ) -> Result<Self, String> {
        let since_ms = query::parse_time(since, now)?;
        let until_ms = match until {
            Some(u) => query::parse_time(u, now)?,
            None => now + 1,
        };
        if since_ms >= until_ms {
            return Err("--since must be before --until".into());
        }
        Ok(Self {
            since_ms,
            until_ms,
            group_by: query::parse_group_by(group_by)?,
        })
    }
}

/// Figures from the local SQLite table.
pub fn local_report(path: &Path, request: &Request) -> Result<Report, String> {
    let conn = crate::db::open_migrated(path).map_err(|e| e.to_string())?;
    query::report(&conn, request.since_ms, request.until_ms, &request.group_by)
        .map_err(|e| format!("analytics query failed: {e}"))
}

/// The semantic shadow-mode report from the local SQLite table.
pub fn shadow_report(
    path: &Path,
    since_ms: u64,
    until_ms: u64,
    agreement: super::shadow::Agreement,
) -> Result<super::shadow::ShadowReport, String> {
    if !(0.0..=1.0).contains(&agreement.max_disagreement)
        || !(0.0..=1.0).contains(&agreement.min_answer_similarity)
    {
        return Err("--max-disagreement and --answer-agreement are between 0 and 1".into());
    }
    let conn = crate::db::open_migrated(path).map_err(|e| e.to_string())?;
    super::shadow::report(&conn, since_ms, until_ms, agreement)
        .map_err(|e| format!("semantic report failed: {e}"))
}

#[derive(Debug, Serialize)]
pub struct GlobalRow {
    pub region: String,
    pub requests: i64,
    pub hits: i64,
    pub hit_rate: f64,
    pub tokens_saved: i64,
    pub usd_saved: f64,
    pub usd_spent: f64,
}

#[derive(Debug, Serialize)]
pub struct GlobalReport {
    pub since_ms: u64,
    pub until_ms: u64,
    /// Per-hour counters: the range is widened to whole hours.
    pub resolution: &'static str,
    pub rows: Vec<GlobalRow>,
    pub total: GlobalRow,
}

fn row(region: String, c: &Counts) -> GlobalRow {
    GlobalRow {
        region,
        requests: c.requests,
        hits: c.hits,
        hit_rate: if c.requests > 0 {
            (c.hits as f64 / c.requests as f64 * 1e4).round() / 1e4
        } else {
            0.0
        },
        tokens_saved: c.tokens_saved,
        usd_saved: c.saved_nano_usd as f64 / 1e9,
        usd_spent: c.spent_nano_usd as f64 / 1e9,
    }
}

/// Every region's figures from the shared Redis counters.
pub async fn global_report(redis: &RedisTier, request: &Request) -> Result<GlobalReport, String> {
    let by_region: BTreeMap<String, Counts> =
        read_global(redis, request.since_ms, request.until_ms).await?;
    let mut total = Counts::default();
    let rows = by_region
        .into_iter()
        .map(|(region, c)| {
            total.requests += c.requests;
            total.hits += c.hits;
            total.tokens_saved += c.tokens_saved;
            total.saved_nano_usd += c.saved_nano_usd;
            total.spent_nano_usd += c.spent_nano_usd;
            row(region, &c)
        })
        .collect();
    Ok(GlobalReport {
        since_ms: request.since_ms,
        until_ms: request.until_ms,
        resolution: "hour",
        rows,
        total: row("TOTAL".into(), &total),
    })
}

impl GlobalReport {
    pub fn to_json(&self) -> Value {
        json!(self)
    }

    pub fn to_csv(&self) -> String {
        let mut out =
            String::from("region,requests,hits,hit_rate,tokens_saved,usd_saved,usd_spent\n");
        for r in &self.rows {
            out.push_str(&format!(
                "{},{},{},{:.4},{},{:.6},{:.6}\n",
                r.region, r.requests, r.hits, r.hit_rate, r.tokens_saved, r.usd_saved, r.usd_spent
            ));
        }
        out
    }

    pub fn to_table(&self) -> String {
        let mut out = format!(
            "{:<12} {:>10} {:>10} {:>8} {:>14} {:>12} {:>12}\n",
            "region", "requests", "hits", "hit_rate", "tokens_saved", "usd_saved", "usd_spent"
        );
        for r in self.rows.iter().chain([&self.total]) {
            out.push_str(&format!(
                "{:<12} {:>10} {:>10} {:>8.4} {:>14} {:>12.6} {:>12.6}\n",
                r.region, r.requests, r.hits, r.hit_rate, r.tokens_saved, r.usd_saved, r.usd_spent
            ));
        }
        out
    }
}
