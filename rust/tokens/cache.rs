//! A bounded, thread-safe cache of exact counts for long texts, so a long system prompt that
//! every request repeats costs one hash instead of one BPE pass.
//!
//! Keys are (encoding, 128-bit xxh3 of the text, byte length): a collision would need two texts
//! of the same length with the same 128-bit hash, which we accept as impossible in practice.
//! Short texts bypass the cache: for them the BPE pass is about as cheap as the lookup.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use arc_swap::ArcSwap;
use xxhash_rust::xxh3::xxh3_128;

use crate::tokens::Encoding;

pub const DEFAULT_CAPACITY: usize = 4096;
pub const DEFAULT_MIN_TEXT_BYTES: usize = 1024;
const MAX_SHARDS: usize = 16;
/// Small shards make CLOCK eviction crude; keep at least this many entries in each.
const MIN_SHARD_ENTRIES: usize = 64;

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

/// One shard: a CLOCK cache (a hit sets a bit; eviction skips, and clears, set bits), so a
/// prompt that every request repeats survives a stream of one-off texts.
struct Shard {
    index: HashMap<Key, usize>,
    slots: Vec<Slot>,
    hand: usize,
    capacity: usize,
}

struct Slot {
    key: Key,
    tokens: u32,
    referenced: bool,
}

impl Shard {
    fn get(&mut self, key: &Key) -> Option<u32> {
        let slot = &mut self.slots[*self.index.get(key)?];
        slot.referenced = true;
        Some(slot.tokens)
    }

    fn insert(&mut self, key: Key, tokens: u32) {
        if self.capacity == 0 {
            return;
        }
        if let Some(&at) = self.index.get(&key) {
            self.slots[at].tokens = tokens;
            return;
        }
        if self.slots.len() < self.capacity {
            self.index.insert(key, self.slots.len());
            self.slots.push(Slot {
                key,
                tokens,
                referenced: false,
            });
            return;
        }
        loop {
            let slot = &mut self.slots[self.hand];
            if slot.referenced {
                slot.referenced = false;
                self.hand = (self.hand + 1) % self.capacity;
                continue;
            }
            self.index.remove(&slot.key);
            *slot = Slot {
                key,
                tokens,
                referenced: false,
            };
            self.index.insert(key, self.hand);
            self.hand = (self.hand + 1) % self.capacity;
            return;
        }
    }
}

/// Shards whose capacities add up to exactly the configured number of entries.
struct Shards(Vec<Mutex<Shard>>);

impl Shards {
    fn new(capacity: usize) -> Shards {
        let count = (capacity / MIN_SHARD_ENTRIES).clamp(1, MAX_SHARDS);
        Shards(
            (0..count)
                .map(|i| {
                    let capacity = capacity / count + usize::from(i < capacity % count);
                    Mutex::new(Shard {
                        index: HashMap::with_capacity(capacity.min(1024)),
                        slots: Vec::with_capacity(capacity.min(1024)),
                        hand: 0,
                        capacity,
                    })
                })
                .collect(),
        )
    }

    fn shard(&self, key: &Key) -> std::sync::MutexGuard<'_, Shard> {
        let at = (key.hash as usize) % self.0.len();
        self.0[at].lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn len(&self) -> usize {
        self.0
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).slots.len())
            .sum()
    }
}

struct CountCache {
    entries: ArcSwap<Shards>,
    capacity: AtomicUsize,
    min_text_bytes: AtomicUsize,
    hits: AtomicU64,
    misses: AtomicU64,
    tokenizer_faults: AtomicU64,
}

static CACHE: LazyLock<CountCache> = LazyLock::new(|| CountCache {
    entries: ArcSwap::from_pointee(Shards::new(DEFAULT_CAPACITY)),
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
    let found = cache.entries.load().shard(&key).get(&key);
    if let Some(tokens) = found {
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
        let cache = &*CACHE;
        if cache.capacity.load(Ordering::Relaxed) > 0 {
            cache.entries.load().shard(&key).insert(key, tokens);
        }
    }
}

pub fn note_tokenizer_fault() {
    CACHE.tokenizer_faults.fetch_add(1, Ordering::Relaxed);
}

/// Resizes the cache (which empties it; 0 disables it) and sets the size threshold.
pub fn configure(capacity: Option<usize>, min_text_bytes: Option<usize>) {
    let cache = &*CACHE;
    if let Some(capacity) = capacity {
        cache.capacity.store(capacity, Ordering::Relaxed);
        cache.entries.store(Arc::new(Shards::new(capacity)));
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
    let capacity = cache.capacity.load(Ordering::Relaxed);
    cache.entries.store(Arc::new(Shards::new(capacity)));
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
        entries: if cache.capacity.load(Ordering::Relaxed) == 0 {
            0
        } else {
            cache.entries.load().len()
        },
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
        assert_eq!(stats().entries, 16, "bounded exactly: {:?}", stats());

        // A text that keeps being hit survives a stream of one-off texts (CLOCK eviction).
        configure(Some(4), None);
        for i in 0..100 {
            count_exact(Encoding::Cl100kBase, &long).unwrap();
            count_exact(Encoding::Cl100kBase, &format!("{long}{i}")).unwrap();
        }
        let hot_hits = stats().hits;
        count_exact(Encoding::Cl100kBase, &long).unwrap();
        assert_eq!(stats().hits, hot_hits + 1, "the hot text is still cached");
        for capacity in [1, 5, 100] {
            configure(Some(capacity), None);
            for i in 0..(capacity * 3) {
                count_exact(Encoding::O200kBase, &format!("{long}{i}")).unwrap();
            }
            assert_eq!(stats().entries, capacity);
        }

        configure(Some(0), None);
        assert_eq!(stats().entries, 0);
        count_exact(Encoding::Cl100kBase, &long).unwrap();
        assert_eq!(stats().entries, 0);
        configure(Some(DEFAULT_CAPACITY), Some(DEFAULT_MIN_TEXT_BYTES));
    }
}
