//! A Redis Stream every instance appends to and tails: how the semantic cache's entries
//! (and purges) reach every region. One key, so one Cluster slot; trimmed to a bound.

use redis::Value;

use super::{RedisTier, RedisUnavailable};

/// One stream record: its id and its fields.
pub type StreamRecord = (String, Vec<(String, Vec<u8>)>);

impl RedisTier {
    /// `{prefix}:semantic:v1`.
    pub fn semantic_stream_key(&self) -> String {
        format!("{}:semantic:v1", self.inner.prefix)
    }

    /// Appends a record, keeping about `max_len` records.
    pub async fn stream_add(
        &self,
        key: &str,
        fields: &[(&str, &[u8])],
        max_len: usize,
    ) -> Result<String, RedisUnavailable> {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(key).arg("MAXLEN").arg("~").arg(max_len).arg("*");
        for (field, value) in fields {
            cmd.arg(*field).arg(*value);
        }
        self.call_keyed("stream", key, cmd).await
    }

    pub async fn stream_exists(&self, key: &str) -> Result<bool, RedisUnavailable> {
        let mut cmd = redis::cmd("EXISTS");
        cmd.arg(key);
        let n: i64 = self.call_keyed("stream", key, cmd).await?;
        Ok(n > 0)
    }

    /// Up to `count` records after `after` (exclusive; `None`: from the start).
    pub async fn stream_after(
        &self,
        key: &str,
        after: Option<&str>,
        count: usize,
    ) -> Result<Vec<StreamRecord>, RedisUnavailable> {
        let mut cmd = redis::cmd("XRANGE");
        let start = after.map_or_else(|| "-".to_owned(), |id| format!("({id}"));
        cmd.arg(key).arg(start).arg("+").arg("COUNT").arg(count);
        let raw: Value = self.call_keyed("stream", key, cmd).await?;
        Ok(parse_records(raw))
    }
}

fn bytes_of(value: &Value) -> Option<Vec<u8>> {
    match value {
        Value::BulkString(b) => Some(b.clone()),
        Value::SimpleString(s) => Some(s.as_bytes().to_vec()),
        _ => None,
    }
}

/// XRANGE's reply: `[[id, [field, value, ...]], ...]`; malformed records are skipped.
fn parse_records(raw: Value) -> Vec<StreamRecord> {
    let Value::Array(records) = raw else {
        return Vec::new();
    };
    records
        .into_iter()
        .filter_map(|record| {
            let Value::Array(parts) = record else {
                return None;
            };
            let [id, Value::Array(flat)] = parts.as_slice() else {
                return None;
            };
            let id = String::from_utf8(bytes_of(id)?).ok()?;
            let fields = flat
                .chunks_exact(2)
                .filter_map(|kv| {
                    Some((
                        String::from_utf8(bytes_of(&kv[0])?).ok()?,
                        bytes_of(&kv[1])?,
                    ))
                })
                .collect();
            Some((id, fields))
        })
        .collect()
}
