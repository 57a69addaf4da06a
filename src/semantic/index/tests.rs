use super::*;

fn unit(v: &[f32]) -> Arc<[f32]> {
    let n = dot(v, v).sqrt();
    v.iter().map(|x| x / n).collect()
}

fn entry(key: u8, v: &[f32], expires_ms: u64) -> Arc<Entry> {
    Arc::new(Entry {
        key: CacheKey([key; 32]),
        namespace: Arc::from("ns"),
        text: Arc::from(format!("q{key}")),
        vector: unit(v),
        created_ms: u64::from(key),
        expires_ms,
    })
}

const P: CacheKey = CacheKey([1; 32]);
const Q: CacheKey = CacheKey([2; 32]);

#[test]
fn nearest_first_and_only_within_the_partition() {
    let index = Index::new(100);
    index.insert(P, entry(1, &[1.0, 0.0, 0.0], u64::MAX));
    index.insert(P, entry(2, &[0.7, 0.7, 0.0], u64::MAX));
    index.insert(Q, entry(3, &[1.0, 0.0, 0.0], u64::MAX));
    let found = index.search(&P, &unit(&[1.0, 0.1, 0.0]), 4, 0);
    let keys: Vec<u8> = found.iter().map(|c| c.entry.key.0[0]).collect();
    assert_eq!(keys, vec![1, 2]);
    assert!(found[0].similarity > 0.99);
    assert!(
        index
            .search(&CacheKey([9; 32]), &unit(&[1.0, 0.0, 0.0]), 4, 0)
            .is_empty()
    );
}

#[test]
fn expired_entries_are_never_found_and_sweep_removes_them() {
    let index = Index::new(100);
    index.insert(P, entry(1, &[1.0, 0.0], 10));
    assert!(index.search(&P, &unit(&[1.0, 0.0]), 1, 10).is_empty());
    assert_eq!(index.search(&P, &unit(&[1.0, 0.0]), 1, 9).len(), 1);
    assert_eq!(index.sweep(10), 1);
    assert!(index.is_empty());
}

#[test]
fn bounded_oldest_out() {
    let index = Index::new(2);
    for k in 1..=3 {
        index.insert(P, entry(k, &[1.0, f32::from(k)], u64::MAX));
    }
    assert_eq!(index.len(), 2);
    assert!(!index.contains(&P, &CacheKey([1; 32])));
    assert!(index.contains(&P, &CacheKey([3; 32])));
}

#[test]
fn purge_by_namespace_spares_what_came_after() {
    let index = Index::new(100);
    index.insert(P, entry(1, &[1.0, 0.0], u64::MAX));
    index.insert(P, entry(5, &[0.0, 1.0], u64::MAX));
    assert_eq!(index.purge(Some("other"), u64::MAX), 0);
    assert_eq!(index.purge(Some("ns"), 3), 1);
    assert!(index.contains(&P, &CacheKey([5; 32])));
}

fn pseudo_random_vectors(n: usize, dim: usize) -> Vec<Arc<[f32]>> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    (0..n)
        .map(|_| {
            let v: Vec<f32> = (0..dim)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
                })
                .collect();
            unit(&v)
        })
        .collect()
}

/// Entry `i` of `vectors` under key `i`, created at `i` ms.
fn fill(index: &Index, vectors: &[Arc<[f32]>]) {
    for (i, v) in vectors.iter().enumerate() {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&(i as u64).to_le_bytes());
        index.insert(
            P,
            Arc::new(Entry {
                key: CacheKey(key),
                namespace: Arc::from("ns"),
                text: Arc::from(""),
                vector: v.clone(),
                created_ms: i as u64,
                expires_ms: u64::MAX,
            }),
        );
    }
}

#[test]
fn a_large_partition_uses_the_graph_and_still_finds_the_exact_entry() {
    let index = Index::new(10 * GRAPH_FROM);
    let vectors = pseudo_random_vectors(GRAPH_FROM + 100, 32);
    fill(&index, &vectors);
    assert!(index.read().partitions[&P].graph.is_some());
    let mut exact = 0;
    for (i, v) in vectors.iter().enumerate().step_by(97) {
        let found = index.search(&P, v, 1, 0);
        if found
            .first()
            .is_some_and(|c| c.entry.key.0[..8] == (i as u64).to_le_bytes())
        {
            exact += 1;
        }
    }
    let asked = vectors.len().div_ceil(97);
    assert!(
        exact * 100 >= asked * 95,
        "{exact} of {asked} found themselves"
    );
}

#[test]
fn compaction_keeps_live_entries_and_drops_tombstones() {
    let index = Index::new(1_000);
    let vectors = pseudo_random_vectors(300, 16);
    fill(&index, &vectors);
    index.purge(None, 199);
    assert_eq!(index.len(), 100);
    assert_eq!(index.compact(), 1);
    assert_eq!(index.read().partitions[&P].slots.len(), 100);
    let found = index.search(&P, &vectors[250], 1, 0);
    assert_eq!(found[0].entry.key.0[..8], 250u64.to_le_bytes());
    // Eviction still works on the renumbered slots.
    assert_eq!(index.purge(None, u64::MAX), 100);
    assert!(index.is_empty());
}
