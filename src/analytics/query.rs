//! The figures operators ask for: requests, hits, hit rate, tokens and dollars saved,
//! dollars spent and p50/p95 latency, per group of tier / model / region / endpoint /
//! namespace / day, over a time range. One SQL pass: percentiles come from window
//! functions, so nothing but the result rows leaves SQLite. Shared by the `analytics`
//! command and `GET /admin/analytics`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use rusqlite::Connection;
use serde::Serialize;

/// A column to group by. Only these names reach the SQL text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dimension {
    Tier,
    Model,
    Region,
    Endpoint,
    Namespace,
    Day,
    /// Semantic hits' similarity to two decimals (empty for every other row).
    Similarity,
}

impl Dimension {
    pub fn parse(name: &str) -> Result<Self, String> {
        Ok(match name.trim() {
            "tier" => Self::Tier,
            "model" => Self::Model,
            "region" => Self::Region,
            "endpoint" => Self::Endpoint,
            "namespace" => Self::Namespace,
            "day" => Self::Day,
            "similarity" => Self::Similarity,
            other => {
                return Err(format!(
                    "unknown group {other:?}: use tier, model, region, endpoint, namespace, day or similarity"
                ));
            }
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Tier => "tier",
            Self::Model => "model",
            Self::Region => "region",
            Self::Endpoint => "endpoint",
            Self::Namespace => "namespace",
            Self::Day => "day",
            Self::Similarity => "similarity",
        }
    }

    fn sql(self) -> &'static str {
        match self {
            Self::Day => "date(ts / 1000, 'unixepoch')",
            Self::Similarity => {
                "CASE WHEN similarity IS NULL THEN NULL ELSE printf('%.2f', similarity) END"
            }
            other => other.name(),
        }
    }
}

pub fn parse_group_by(list: &str) -> Result<Vec<Dimension>, String> {
    let mut dims = Vec::new();
    for name in list.split(',').filter(|s| !s.trim().is_empty()) {
        let d = Dimension::parse(name)?;
        if !dims.contains(&d) {
            dims.push(d);
        }
    }
    Ok(dims)
}

/// `24h`, `30m`, `7d`, `2w`, `90s` before `now_ms`; a `YYYY-MM-DD` date (UTC
/// midnight) or an RFC 3339 time, both read by `jiff` (so `2024-02-31` is refused); or
/// unix milliseconds.
pub fn parse_time(text: &str, now_ms: u64) -> Result<u64, String> {
    let text = text.trim();
    let bad = || {
        format!("invalid time {text:?}: use 24h, 7d, 30m, YYYY-MM-DD, an RFC 3339 time or unix ms")
    };
    if let Ok(ms) = text.parse::<u64>() {
        return Ok(ms);
    }
    if text.contains('-') && text.len() >= 10 {
        let millis = if let Ok(ts) = text.parse::<jiff::Timestamp>() {
            ts.as_millisecond()
        } else {
            let date: jiff::civil::Date = text.parse().map_err(|_| bad())?;
            jiff::tz::Offset::UTC
                .to_timestamp(date.to_datetime(jiff::civil::Time::midnight()))
                .map_err(|_| bad())?
                .as_millisecond()
        };
        return Ok(millis.max(0) as u64);
    }
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (amount, unit) = text.split_at(split);
    let amount: u64 = amount.parse().map_err(|_| bad())?;
    let unit_ms = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 7 * 86_400_000,
        _ => return Err(bad()),
    };
    Ok(now_ms.saturating_sub(amount.saturating_mul(unit_ms)))
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Figures {
    pub requests: u64,
    pub hits: u64,
    pub hit_rate: f64,
    pub tokens_saved: u64,
    pub usd_saved: f64,
    pub usd_spent: f64,
    pub p50_latency_ms: f64,
    pub p95_latency_ms: f64,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Row {
    pub group: BTreeMap<&'static str, String>,
    #[serde(flatten)]
    pub figures: Figures,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub since_ms: u64,
    pub until_ms: u64,
    pub group_by: Vec<&'static str>,
    pub rows: Vec<Row>,
    pub total: Figures,
}

const HIT: &str = "tier IN ('l1', 'redis', 'sqlite', 'semantic', 'coalesced')";

fn aggregate(
    conn: &Connection,
    since_ms: u64,
    until_ms: u64,
    dims: &[Dimension],
) -> rusqlite::Result<Vec<Row>> {
    let group_cols: Vec<String> = dims
        .iter()
        .enumerate()
        .map(|(i, d)| format!("{} AS g{i}", d.sql()))
        .collect();
    let group_refs: Vec<String> = (0..dims.len()).map(|i| format!("g{i}")).collect();
    let partition = if dims.is_empty() {
        String::new()
    } else {
        format!("PARTITION BY {}", group_refs.join(", "))
    };
    let select_groups = if dims.is_empty() {
        String::new()
    } else {
        format!("{}, ", group_refs.join(", "))
    };
    let group_by = if dims.is_empty() {
        String::new()
    } else {
        format!(
            "GROUP BY {} ORDER BY {}",
            group_refs.join(", "),
            group_refs.join(", ")
        )
    };
    let sql = format!(
        "WITH base AS (
             SELECT {cols}{sep} tier, prompt_tokens, completion_tokens, saved_usd, cost_usd, latency_ms
             FROM cache_events WHERE ts >= ?1 AND ts < ?2
         ), ranked AS (
             SELECT *, row_number() OVER ({partition} ORDER BY latency_ms) AS rn,
                       count(*) OVER ({partition}) AS n
             FROM base
         )
         SELECT {select_groups}
                count(*),
                coalesce(sum({HIT}), 0),
                coalesce(sum(CASE WHEN {HIT} THEN prompt_tokens + completion_tokens ELSE 0 END), 0),
                coalesce(sum(saved_usd), 0),
                coalesce(sum(cost_usd), 0),
                min(CASE WHEN rn >= (n * 50 + 99) / 100 THEN latency_ms END),
                min(CASE WHEN rn >= (n * 95 + 99) / 100 THEN latency_ms END)
         FROM ranked {group_by}",
        cols = group_cols.join(", "),
        sep = if dims.is_empty() { "" } else { "," },
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([since_ms as i64, until_ms as i64], |row| {
        let mut group = BTreeMap::new();
        for (i, d) in dims.iter().enumerate() {
            let value: Option<String> = row.get(i)?;
            group.insert(d.name(), value.unwrap_or_default());
        }
        let k = dims.len();
        let requests: i64 = row.get(k)?;
        let hits: i64 = row.get(k + 1)?;
        Ok(Row {
            group,
            figures: Figures {
                requests: requests as u64,
                hits: hits as u64,
                hit_rate: if requests > 0 {
                    round(hits as f64 / requests as f64, 4)
                } else {
                    0.0
                },
                tokens_saved: row.get::<_, i64>(k + 2)? as u64,
                usd_saved: round(row.get(k + 3)?, 6),
                usd_spent: round(row.get(k + 4)?, 6),
                p50_latency_ms: round(row.get::<_, Option<f64>>(k + 5)?.unwrap_or(0.0), 3),
                p95_latency_ms: round(row.get::<_, Option<f64>>(k + 6)?.unwrap_or(0.0), 3),
            },
        })
    })?;
    rows.collect()
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

pub fn report(
    conn: &Connection,
    since_ms: u64,
    until_ms: u64,
    dims: &[Dimension],
) -> rusqlite::Result<Report> {
    let rows = aggregate(conn, since_ms, until_ms, dims)?;
    let total = aggregate(conn, since_ms, until_ms, &[])?
        .pop()
        .map(|r| r.figures)
        .unwrap_or(Figures {
            requests: 0,
            hits: 0,
            hit_rate: 0.0,
            tokens_saved: 0,
            usd_saved: 0.0,
            usd_spent: 0.0,
            p50_latency_ms: 0.0,
            p95_latency_ms: 0.0,
        });
    Ok(Report {
        since_ms,
        until_ms,
        group_by: dims.iter().map(|d| d.name()).collect(),
        rows,
        total,
    })
}

const FIGURE_COLUMNS: [&str; 8] = [
    "requests",
    "hits",
    "hit_rate",
    "tokens_saved",
    "usd_saved",
    "usd_spent",
    "p50_ms",
    "p95_ms",
];

fn figure_cells(f: &Figures) -> Vec<String> {
    vec![
        f.requests.to_string(),
        f.hits.to_string(),
        format!("{:.4}", f.hit_rate),
        f.tokens_saved.to_string(),
        format!("{:.6}", f.usd_saved),
        format!("{:.6}", f.usd_spent),
        format!("{:.3}", f.p50_latency_ms),
        format!("{:.3}", f.p95_latency_ms),
    ]
}

impl Report {
    fn header(&self) -> Vec<String> {
        self.group_by
            .iter()
            .map(|s| (*s).to_owned())
            .chain(FIGURE_COLUMNS.iter().map(|s| (*s).to_owned()))
            .collect()
    }

    fn cells(&self) -> Vec<Vec<String>> {
        self.rows
            .iter()
            .map(|r| {
                self.group_by
                    .iter()
                    .map(|d| r.group.get(d).cloned().unwrap_or_default())
                    .chain(figure_cells(&r.figures))
                    .collect()
            })
            .collect()
    }

    pub fn to_csv(&self) -> String {
        let escape = |s: &str| {
            if s.contains([',', '"', '\n']) {
                format!("\"{}\"", s.replace('"', "\"\""))
            } else {
                s.to_owned()
            }
        };
        let mut out = self.header().join(",");
        out.push('\n');
        for row in self.cells() {
            out.push_str(&row.iter().map(|c| escape(c)).collect::<Vec<_>>().join(","));
            out.push('\n');
        }
        out
    }

    pub fn to_table(&self) -> String {
        let header = self.header();
        let mut rows = self.cells();
        let mut total: Vec<String> = self.group_by.iter().map(|_| String::new()).collect();
        if let Some(first) = total.first_mut() {
            *first = "TOTAL".into();
        }
        total.extend(figure_cells(&self.total));
        rows.push(total);
        let widths: Vec<usize> = (0..header.len())
            .map(|i| {
                rows.iter()
                    .map(|r| r[i].len())
                    .chain([header[i].len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: &[String]| {
            let mut s = String::new();
            for (i, c) in cells.iter().enumerate() {
                if i < self.group_by.len() {
                    let _ = write!(s, "{c:<w$}  ", w = widths[i]);
                } else {
                    let _ = write!(s, "{c:>w$}  ", w = widths[i]);
                }
            }
            s.trim_end().to_owned()
        };
        let mut out = line(&header);
        out.push('\n');
        for row in &rows {
            out.push_str(&line(row));
            out.push('\n');
        }
        out
    }
}

/// One of the cached answers that saved the most in a range.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct TopEntry {
    pub key_hash: String,
    pub model: String,
    pub hits: u64,
    pub usd_saved: f64,
}

/// The `limit` keys whose hits saved the most dollars between `since_ms` and `until_ms`.
pub fn top_entries(
    conn: &Connection,
    since_ms: u64,
    until_ms: u64,
    limit: u32,
) -> rusqlite::Result<Vec<TopEntry>> {
    let sql = format!(
        "SELECT key_hash, min(model), sum({HIT}) AS hits, round(sum(saved_usd), 6) AS saved
         FROM cache_events WHERE ts >= ?1 AND ts < ?2 AND key_hash != ''
         GROUP BY key_hash HAVING hits > 0 ORDER BY saved DESC, hits DESC LIMIT ?3"
    );
    let mut stmt = conn.prepare(&sql)?;
    stmt.query_map(
        rusqlite::params![since_ms as i64, until_ms as i64, limit],
        |r| {
            Ok(TopEntry {
                key_hash: r.get(0)?,
                model: r.get(1)?,
                hits: r.get::<_, i64>(2)? as u64,
                usd_saved: r.get(3)?,
            })
        },
    )?
    .collect()
}

#[cfg(test)]
mod tests;
