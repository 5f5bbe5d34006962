//! A bounded, thread-safe cache of exact counts for long texts, so a long system prompt that
//! every request repeats costs one hash instead of one BPE pass.
//!
//! Keys are (encoding, 128-bit xxh3 of the text, byte length): a collision would need two texts
//! of the same length with the same 128-bit hash, which we accept as impossible in practice.
//! Short texts bypass the cache: for them the BPE pass is about as cheap as the lookup.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::LazyLock;

use quick_cache::sync::Cache;
use xxhash_rust::xxh3::xxh3_128;

use crate::tokens::Encoding;

pub const DEFAULT_CAPACITY: usize = 4096;
pub const DEFAULT_MIN_TEXT_BYTES: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    encoding: u8,
    hash: u128,
    len: usize,
}

pub enum Lookup {
    Hit(usize),
    Miss(Key),
    /// The text is below the size threshold or the cache is disabled.
    Bypass,
}

struct CountCache {
    entries: Cache<Key, u32>,
    capacity: AtomicUsize,
    min_text_bytes: AtomicUsize,
    hits: AtomicU64,
    misses: AtomicU64,
    tokenizer_faults: AtomicU64,
}

static CACHE: LazyLock<CountCache> = LazyLock::new(|| CountCache {
    entries: Cache::new(DEFAULT_CAPACITY),
    capacity: AtomicUsize::new(DEFAULT_CAPACITY),
    min_text_bytes: AtomicUsize::new(DEFAULT_MIN_TEXT_BYTES),
    hits: AtomicU64::new(0),
    misses: AtomicU64::new(0),
    tokenizer_faults: AtomicU64::new(0),
});

pub fn lookup(encoding: Encoding, text: &str) -> Lookup {
    let cache = &*CACHE;
    if text.len() < cache.min_text_bytes.load(Ordering::Relaxed)
        || cache.capacity.load(Ordering::Relaxed) == 0
    {
        return Lookup::Bypass;
    }
    let key = Key {
        encoding: encoding.id(),
        hash: xxh3_128(text.as_bytes()),
        len: text.len(),
    };
    if let Some(tokens) = cache.entries.get(&key) {
        cache.hits.fetch_add(1, Ordering::Relaxed);
        Lookup::Hit(tokens as usize)
    } else {
        cache.misses.fetch_add(1, Ordering::Relaxed);
        Lookup::Miss(key)
    }
}

pub fn store(key: Key, tokens: usize) {
    // Counts above u32::MAX tokens (16+ GiB of text) are simply not cached.
    if let Ok(tokens) = u32::try_from(tokens) {
        CACHE.entries.insert(key, tokens);
    }
}

pub fn note_tokenizer_fault() {
    CACHE.tokenizer_faults.fetch_add(1, Ordering::Relaxed);
}

/// Resizes the cache (0 disables it and drops every entry) and sets the size threshold.
pub fn configure(capacity: Option<usize>, min_text_bytes: Option<usize>) {
    let cache = &*CACHE;
    if let Some(capacity) = capacity {
        cache.capacity.store(capacity, Ordering::Relaxed);
        if capacity == 0 {
            cache.entries.clear();
        } else {
            cache.entries.set_capacity(capacity as u64);
        }
    }
    if let Some(min_text_bytes) = min_text_bytes {
        cache
            .min_text_bytes
            .store(min_text_bytes, Ordering::Relaxed);
    }
}

/// Drops every entry and zeroes the counters.
pub fn clear() {
    let cache = &*CACHE;
    cache.entries.clear();
    cache.hits.store(0, Ordering::Relaxed);
    cache.misses.store(0, Ordering::Relaxed);
    cache.tokenizer_faults.store(0, Ordering::Relaxed);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub hits: u64,
    pub misses: u64,
    pub entries: usize,
    pub capacity: usize,
    pub min_text_bytes: usize,
    pub tokenizer_faults: u64,
}

pub fn stats() -> Stats {
    let cache = &*CACHE;
    Stats {
        hits: cache.hits.load(Ordering::Relaxed),
        misses: cache.misses.load(Ordering::Relaxed),
        entries: cache.entries.len(),
        capacity: cache.capacity.load(Ordering::Relaxed),
        min_text_bytes: cache.min_text_bytes.load(Ordering::Relaxed),
        tokenizer_faults: cache.tokenizer_faults.load(Ordering::Relaxed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::count_exact;

    // The cache is process-global; one test exercises it end to end so tests don't race.
    #[test]
    fn caches_long_texts_only_and_stays_bounded() {
        clear();
        configure(Some(16), Some(64));
        let long = "The same long system prompt, repeated by every request. ".repeat(4);
        let first = count_exact(Encoding::Cl100kBase, &long).unwrap();
        let second = count_exact(Encoding::Cl100kBase, &long).unwrap();
        assert_eq!(first, second);
        let after = stats();
        assert_eq!((after.hits, after.misses), (1, 1));

        // Another encoding is another key.
        count_exact(Encoding::O200kBase, &long).unwrap();
        assert_eq!(stats().misses, 2);

        // Short texts bypass it.
        count_exact(Encoding::Cl100kBase, "short").unwrap();
        assert_eq!(stats().misses, 2);

        for i in 0..200 {
            count_exact(Encoding::Cl100kBase, &format!("{long}{i}")).unwrap();
        }
        assert!(stats().entries <= 16 + 16, "bounded: {:?}", stats());

        configure(Some(0), None);
        assert_eq!(stats().entries, 0);
        count_exact(Encoding::Cl100kBase, &long).unwrap();
        assert_eq!(stats().entries, 0);
        configure(Some(DEFAULT_CAPACITY), Some(DEFAULT_MIN_TEXT_BYTES));
    }
}
