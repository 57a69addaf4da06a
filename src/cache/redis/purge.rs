//! Purging entries on every master (SCAN + UNLINK per node).

use std::time::Duration;

use redis::{AsyncConnectionConfig, RedisResult};

use super::{RedisTier, Target};

impl RedisTier {
    /// Deletes every entry (or a namespace's) on every master. Returns keys deleted.
    pub async fn purge(&self, namespace: Option<&str>) -> RedisResult<u64> {
        let patterns: Vec<String> = match namespace {
            None => vec![format!("{}:v1:*", self.inner.prefix)],
            Some(ns) => {
                let ns = glob_escape(ns);
                vec![
                    format!("{}:v1:{ns}:*", self.inner.prefix),
                    format!("{}:v1:{ns}/*", self.inner.prefix),
                ]
            }
        };
        let nodes = match &self.inner.target {
            Target::Single(url) => vec![url.clone()],
            Target::Cluster(seeds) => cluster_masters(seeds, self.inner.connect_timeout).await?,
        };
        let mut deleted = 0;
        for node in nodes {
            let client = redis::Client::open(node.as_str())?;
            let config = AsyncConnectionConfig::new()
                .set_connection_timeout(Some(self.inner.connect_timeout))
                .set_response_timeout(Some(Duration::from_secs(5)));
            let mut conn = client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            for pattern in &patterns {
                let mut cursor: u64 = 0;
                loop {
                    let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(pattern)
                        .arg("COUNT")
                        .arg(1000)
                        .query_async(&mut conn)
                        .await?;
                    if !keys.is_empty() {
                        // One key per command: keys on a cluster node may span slots.
                        let mut pipe = redis::pipe();
                        for key in &keys {
                            pipe.cmd("UNLINK").arg(key).ignore();
                        }
                        pipe.query_async::<()>(&mut conn).await?;
                        deleted += keys.len() as u64;
                    }
                    if next == 0 {
                        break;
                    }
                    cursor = next;
                }
            }
        }
        Ok(deleted)
    }
}

fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// URLs of the cluster's masters, built from the first seed that answers `CLUSTER NODES`
/// (credentials and scheme are taken from that seed).
async fn cluster_masters(seeds: &[String], timeout: Duration) -> RedisResult<Vec<String>> {
    let mut last_error = None;
    for seed in seeds {
        let attempt = async {
            let client = redis::Client::open(seed.as_str())?;
            let config = AsyncConnectionConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(timeout));
            let mut conn = client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            let nodes: String = redis::cmd("CLUSTER")
                .arg("NODES")
                .query_async(&mut conn)
                .await?;
            RedisResult::Ok(nodes)
        };
        match attempt.await {
            Ok(nodes) => {
                let Ok(seed_url) = reqwest::Url::parse(seed) else {
                    continue;
                };
                let masters = nodes
                    .lines()
                    .filter_map(|line| {
                        let fields: Vec<&str> = line.split_whitespace().collect();
                        let flags = fields.get(2)?;
                        if !flags.contains("master") || flags.contains("fail") {
                            return None;
                        }
                        let addr = fields.get(1)?.split('@').next()?;
                        let (host, port) = addr.rsplit_once(':')?;
                        let mut url = seed_url.clone();
                        if !host.is_empty() {
                            url.set_host(Some(host)).ok()?;
                        }
                        url.set_port(port.parse().ok()).ok()?;
                        Some(url.to_string())
                    })
                    .collect();
                return Ok(masters);
            }
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error.unwrap_or_else(|| {
        redis::RedisError::from((redis::ErrorKind::Io, "no cluster seed answered"))
    }))
}
