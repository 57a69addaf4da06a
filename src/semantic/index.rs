//! The in-process nearest-neighbour index, one partition per "everything but the last
//! user message" hash, so a lookup only ever sees questions asked in the same context.
//!
//! A partition is searched exactly (a dot product per entry) while it is small, and
//! through an HNSW graph (`hnsw_rs`) once it holds [`GRAPH_FROM`] entries: measured in
//! `bench/semantic_index.rs`, brute force at 100k entries × 384 dims costs milliseconds
//! a lookup, the graph tens of microseconds at the same recall@1 (bench/RESULTS.md).
//!
//! HNSW graphs cannot delete, so removed and expired entries are tombstones the search
//! filters out; a partition whose tombstones outnumber its live entries is rebuilt by
//! [`Index::compact`] off the request path. The whole index is bounded by entry count
//! (oldest evicted first), like L1 is by bytes.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, RwLock};

use hnsw_rs::prelude::{Distance, Hnsw};

use crate::keying::CacheKey;

/// Partitions at least this large are searched through a graph.
pub const GRAPH_FROM: usize = 2_048;
const GRAPH_CONNECTIONS: usize = 16;
const GRAPH_LAYERS: usize = 16;
const GRAPH_EF_CONSTRUCTION: usize = 48;
const GRAPH_EF_SEARCH: usize = 128;

/// One remembered question: the answer stays in the exact tiers under `key`.
#[derive(Debug)]
pub struct Entry {
    pub key: CacheKey,
    pub namespace: Arc<str>,
    pub text: Arc<str>,
    /// Unit length.
    pub vector: Arc<[f32]>,
    pub created_ms: u64,
    pub expires_ms: u64,
}

#[derive(Clone, Debug)]
pub struct Candidate {
    pub entry: Arc<Entry>,
    pub similarity: f32,
}

#[derive(Default)]
struct Partition {
    slots: Vec<Option<Arc<Entry>>>,
    by_key: HashMap<CacheKey, usize>,
    live: usize,
    graph: Option<Hnsw<'static, f32, UnitDot>>,
    /// The most entries the graph will hold (sizes its layers).
    capacity: usize,
}

/// 1 − cosine for unit vectors. `hnsw_rs`'s own `DistDot` asserts the dot product is at
/// most 1, which rounding breaks for a vector and itself: a panic on a lookup. This one
/// clamps.
#[derive(Clone, Copy, Debug, Default)]
pub struct UnitDot;

impl Distance<f32> for UnitDot {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        (1.0 - dot(a, b)).max(0.0)
    }
}

fn new_graph(capacity: usize) -> Hnsw<'static, f32, UnitDot> {
    let mut graph = Hnsw::new(
        GRAPH_CONNECTIONS,
        capacity.max(GRAPH_FROM * 2),
        GRAPH_LAYERS,
        GRAPH_EF_CONSTRUCTION,
        UnitDot,
    );
    graph.set_searching_mode(true);
    graph
}

pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

impl Partition {
    fn insert(&mut self, entry: Arc<Entry>) -> usize {
        if let Some(&slot) = self.by_key.get(&entry.key) {
            // The same exact request again: its vector is the same; keep the new expiry.
            self.slots[slot] = Some(entry);
            return slot;
        }
        let slot = self.slots.len();
        if let Some(graph) = &self.graph {
            graph.insert_slice((&entry.vector, slot));
        }
        self.by_key.insert(entry.key, slot);
        self.slots.push(Some(entry));
        self.live += 1;
        if self.graph.is_none() && self.slots.len() >= GRAPH_FROM {
            self.build_graph();
        }
        slot
    }

    fn build_graph(&mut self) {
        let graph = new_graph(self.capacity.max(self.slots.len() * 2));
        let points: Vec<(&[f32], usize)> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, e)| e.as_ref().map(|e| (&e.vector[..], i)))
            .collect();
        graph.parallel_insert_slice(&points);
        self.graph = Some(graph);
    }

    fn remove_slot(&mut self, slot: usize) -> bool {
        match self.slots.get_mut(slot).and_then(Option::take) {
            Some(entry) => {
                self.by_key.remove(&entry.key);
                self.live -= 1;
                true
            }
            None => false,
        }
    }

    fn needs_compaction(&self) -> bool {
        let dead = self.slots.len() - self.live;
        dead > 64 && dead > self.live
    }

    fn search(&self, query: &[f32], k: usize, now_ms: u64) -> Vec<Candidate> {
        let live = |slot: usize| -> Option<&Arc<Entry>> {
            self.slots
                .get(slot)
                .and_then(Option::as_ref)
                .filter(|e| e.expires_ms > now_ms)
        };
        let mut found: Vec<Candidate> = match &self.graph {
            Some(graph) => {
                // Tombstones are few between compactions: over-fetch and drop them (a
                // filtered search is slower: it keeps walking past filtered nodes).
                graph
                    .search(query, k * 2, GRAPH_EF_SEARCH.max(k * 4))
                    .into_iter()
                    .filter_map(|n| live(n.d_id))
                    .map(|e| Candidate {
                        similarity: dot(query, &e.vector),
                        entry: e.clone(),
                    })
                    .collect()
            }
            None => {
                let mut all: Vec<Candidate> = (0..self.slots.len())
                    .filter_map(live)
                    .map(|e| Candidate {
                        similarity: dot(query, &e.vector),
                        entry: e.clone(),
                    })
                    .collect();
                if all.len() > k {
                    all.select_nth_unstable_by(k - 1, |a, b| b.similarity.total_cmp(&a.similarity));
                    all.truncate(k);
                }
                all
            }
        };
        found.sort_by(|a, b| b.similarity.total_cmp(&a.similarity));
        found
    }
}

#[derive(Default)]
struct Inner {
    partitions: HashMap<CacheKey, Partition>,
    /// Insertion order for eviction: (partition, slot, key).
    order: VecDeque<(CacheKey, usize, CacheKey)>,
    live: usize,
}

impl Inner {
    fn remove(&mut self, partition: &CacheKey, slot: usize) {
        if let Some(p) = self.partitions.get_mut(partition)
            && p.remove_slot(slot)
        {
            self.live -= 1;
            if p.live == 0 {
                self.partitions.remove(partition);
            }
        }
    }
}

/// Bounded, partitioned vector index.
pub struct Index {
    inner: RwLock<Inner>,
    max_entries: usize,
}

impl Index {
    pub fn new(max_entries: usize) -> Self {
        Self {
            inner: RwLock::new(Inner::default()),
            max_entries: max_entries.max(1),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn len(&self) -> usize {
        self.read().live
    }

    #[cfg(any(test, feature = "testing"))]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `key` is already remembered in `partition` (entries shared by other
    /// instances arrive more than once).
    pub fn contains(&self, partition: &CacheKey, key: &CacheKey) -> bool {
        self.read()
            .partitions
            .get(partition)
            .is_some_and(|p| p.by_key.contains_key(key))
    }

    /// Remembers an entry; past `max_entries` the oldest go.
    pub fn insert(&self, partition: CacheKey, entry: Arc<Entry>) {
        let mut inner = self.write();
        let key = entry.key;
        let p = inner
            .partitions
            .entry(partition)
            .or_insert_with(|| Partition {
                capacity: self.max_entries,
                ..Partition::default()
            });
        let before = p.live;
        let slot = p.insert(entry);
        let added = p.live > before;
        if added {
            inner.live += 1;
            inner.order.push_back((partition, slot, key));
        }
        while inner.live > self.max_entries {
            let Some((partition, slot, _)) = inner.order.pop_front() else {
                break;
            };
            inner.remove(&partition, slot);
        }
    }

    /// The `k` nearest live entries of `partition`, most similar first.
    pub fn search(
        &self,
        partition: &CacheKey,
        query: &[f32],
        k: usize,
        now_ms: u64,
    ) -> Vec<Candidate> {
        match self.read().partitions.get(partition) {
            Some(p) => p.search(query, k.max(1), now_ms),
            None => Vec::new(),
        }
    }

    /// Forgets one entry (its answer is gone from the exact tiers).
    pub fn forget(&self, partition: &CacheKey, key: &CacheKey) {
        let mut inner = self.write();
        let slot = inner
            .partitions
            .get(partition)
            .and_then(|p| p.by_key.get(key).copied());
        if let Some(slot) = slot {
            inner.remove(partition, slot);
        }
    }

    /// Forgets every entry (or a namespace's, with its `/` partitions) created before
    /// `before_ms`; returns how many.
    pub fn purge(&self, namespace: Option<&str>, before_ms: u64) -> usize {
        self.remove_where(|e| {
            e.created_ms <= before_ms
                && namespace.is_none_or(|ns| crate::cache::in_namespace(&e.namespace, ns))
        })
    }

    /// Forgets expired entries; returns how many.
    pub fn sweep(&self, now_ms: u64) -> usize {
        self.remove_where(|e| e.expires_ms <= now_ms)
    }

    fn remove_where(&self, doomed: impl Fn(&Entry) -> bool) -> usize {
        let mut inner = self.write();
        let mut gone = Vec::new();
        for (partition, p) in &inner.partitions {
            for (slot, e) in p.slots.iter().enumerate() {
                if e.as_ref().is_some_and(|e| doomed(e)) {
                    gone.push((*partition, slot));
                }
            }
        }
        for (partition, slot) in &gone {
            inner.remove(partition, *slot);
        }
        let live: std::collections::HashSet<CacheKey> = inner.partitions.keys().copied().collect();
        inner.order.retain(|(p, _, _)| live.contains(p));
        gone.len()
    }

    /// Rebuilds partitions whose tombstones outnumber their live entries: the graph is
    /// built from a snapshot without holding the lock, then swapped in with whatever
    /// changed meanwhile applied. Call from a blocking thread.
    pub fn compact(&self) -> usize {
        let due: Vec<(CacheKey, Vec<Arc<Entry>>, usize)> = {
            let inner = self.read();
            inner
                .partitions
                .iter()
                .filter(|(_, p)| p.needs_compaction())
                .map(|(k, p)| {
                    (
                        *k,
                        p.slots.iter().flatten().cloned().collect(),
                        p.slots.len(),
                    )
                })
                .collect()
        };
        let mut rebuilt = 0;
        for (partition, snapshot, seen_slots) in due {
            let mut fresh = Partition {
                capacity: self.max_entries,
                ..Partition::default()
            };
            for entry in &snapshot {
                fresh.insert(entry.clone());
            }
            let mut inner = self.write();
            let Some(old) = inner.partitions.get(&partition) else {
                continue;
            };
            // Entries added since the snapshot join; entries removed since go.
            for entry in old.slots[seen_slots.min(old.slots.len())..]
                .iter()
                .flatten()
            {
                fresh.insert(entry.clone());
            }
            let gone: Vec<CacheKey> = snapshot
                .iter()
                .filter(|e| !old.by_key.contains_key(&e.key))
                .map(|e| e.key)
                .collect();
            for key in gone {
                if let Some(slot) = fresh.by_key.get(&key).copied() {
                    fresh.remove_slot(slot);
                }
            }
            let slots: Vec<(usize, CacheKey)> = fresh
                .slots
                .iter()
                .enumerate()
                .filter_map(|(i, e)| e.as_ref().map(|e| (i, e.key)))
                .collect();
            let before = inner.partitions.get(&partition).map_or(0, |p| p.live);
            inner.live = inner.live - before + fresh.live;
            inner.partitions.insert(partition, fresh);
            // Eviction order refers to slots: renumber this partition's.
            let by_key: HashMap<CacheKey, usize> = slots.into_iter().map(|(i, k)| (k, i)).collect();
            for (p, slot, key) in inner.order.iter_mut() {
                if *p == partition
                    && let Some(&s) = by_key.get(key)
                {
                    *slot = s;
                }
            }
            rebuilt += 1;
        }
        rebuilt
    }
}

#[cfg(test)]
mod tests;
