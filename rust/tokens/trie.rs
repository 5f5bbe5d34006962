//! A double-array trie over byte strings: the longest key that is a prefix of a text, one memory
//! read per byte. The backtracking counter (`backtrack`) asks it for the longest token at each
//! position.
//!
//! Every node is one `u64` slot: the base of its children (a child with byte `c` sits in slot
//! `base + c`), its own byte, whether the slot is in use, and the value of the key ending there.
//! Two nodes never share a base, so a used slot whose byte is `c` at `base + c` can only be a
//! child of the node with that base: storing the byte instead of the parent keeps a slot at 8
//! bytes (the layout of daachorse, which GitHub's `bpe` crate uses). o200k's 200k tokens make
//! about 420k nodes, 3.5 MB.

/// Slot layout, low to high: base (24 bits; 0 = no children), the node's byte (8), in use (1),
/// value + 1 (24; 0 = no key ends here).
const BASE_BITS: u32 = 24;
const LABEL_SHIFT: u32 = BASE_BITS;
const USED: u64 = 1 << (LABEL_SHIFT + 8);
const VALUE_SHIFT: u32 = LABEL_SHIFT + 9;
const MAX_SLOTS: usize = 1 << BASE_BITS;
/// Values must stay below this.
pub(crate) const MAX_VALUE: u32 = (1 << 24) - 1;

pub(crate) struct Trie {
    slots: Box<[u64]>,
}

impl Trie {
    /// Builds the trie of the keys `key(value)` of `values` (distinct, non-empty keys; values
    /// below `MAX_VALUE`) and calls `on_key(value, prefix)` for each, with the value of its
    /// longest proper prefix among the keys; `None` if they do not fit the slot layout. Sorts
    /// `values` by key.
    pub(crate) fn new<'k>(
        values: &mut [u32],
        key: impl Fn(u32) -> &'k [u8],
        mut on_key: impl FnMut(u32, Option<u32>),
    ) -> Option<Trie> {
        // Sort by the first 8 bytes as a number (one compare instead of a `memcmp` call),
        // comparing whole keys only on a tie.
        let head = |value: u32| {
            let key = key(value);
            let mut bytes = [0u8; 8];
            let n = key.len().min(8);
            bytes[..n].copy_from_slice(&key[..n]);
            u64::from_be_bytes(bytes)
        };
        let mut sorted: Vec<(u64, u32)> = values.iter().map(|&v| (head(v), v)).collect();
        sorted.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| key(a.1).cmp(key(b.1))));
        for (value, (_, sorted)) in values.iter_mut().zip(sorted) {
            *value = sorted;
        }
        if values.iter().any(|&value| value >= MAX_VALUE) {
            return None;
        }
        // The keys again, in sorted order in one buffer: the build reads them byte by byte, and
        // in key order `key` would jump around memory.
        let mut flat = Vec::with_capacity(values.iter().map(|&v| key(v).len()).sum());
        let mut ends = Vec::with_capacity(values.len() + 1);
        ends.push(0);
        for &value in values.iter() {
            flat.extend_from_slice(key(value));
            ends.push(flat.len());
        }
        let key = |i: usize| &flat[ends[i]..ends[i + 1]];
        let n = values.len();
        if (0..n).any(|i| key(i).is_empty()) || (1..n).any(|i| key(i - 1) == key(i)) {
            return None;
        }
        // One node per distinct prefix: reserve them all at once (the build's memory peak).
        let nodes = 1
            + (0..n)
                .map(|i| {
                    key(i).len()
                        - if i + 1 < n {
                            common(key(i), key(i + 1))
                        } else {
                            0
                        }
                })
                .sum::<usize>();
        let mut slots = Vec::with_capacity(nodes + nodes / 8 + 512);
        slots.resize(512, 0);
        let mut builder = Builder {
            slots,
            used: vec![0; 8],
            bases: vec![0; 8],
            free_from: 1,
        };
        builder.slots[0] = USED;
        builder.mark_used(0);
        // Depth-first: (slot, keys under it, depth, the deepest key above it).
        let mut stack = Vec::new();
        if !values.is_empty() {
            stack.push((0usize, 0usize, n, 0usize, None));
        }
        let mut children: Vec<(u8, usize, usize)> = Vec::new();
        while let Some((slot, mut lo, hi, depth, mut above)) = stack.pop() {
            if key(lo).len() == depth {
                // Sorted: the key that ends here comes first.
                builder.slots[slot] |= u64::from(values[lo] + 1) << VALUE_SHIFT;
                on_key(values[lo], above);
                above = Some(values[lo]);
                lo += 1;
            }
            if lo == hi {
                continue;
            }
            children.clear();
            let mut start = lo;
            for i in lo + 1..=hi {
                if i == hi || key(i)[depth] != key(start)[depth] {
                    children.push((key(start)[depth], start, i));
                    start = i;
                }
            }
            let base = builder.place(&children)?;
            builder.slots[slot] |= base as u64;
            for &(byte, lo, hi) in &children {
                let child = base + usize::from(byte);
                builder.slots[child] = USED | u64::from(byte) << LABEL_SHIFT;
                stack.push((child, lo, hi, depth + 1, above));
            }
        }
        let mut slots = builder.slots;
        // Every base + byte stays in bounds.
        let end = slots.iter().rposition(|&s| s != 0).unwrap_or(0) + 257;
        slots.resize(end, 0);
        Some(Trie {
            slots: slots.into_boxed_slice(),
        })
    }

    /// The longest key that is a prefix of `text`: `(value, key length)`.
    #[inline]
    pub(crate) fn longest_prefix(&self, text: &[u8]) -> Option<(u32, usize)> {
        let mut node = self.slots[0];
        let mut found = None;
        for (i, &byte) in text.iter().enumerate() {
            let base = (node & (MAX_SLOTS as u64 - 1)) as usize;
            if base == 0 {
                break;
            }
            let Some(&child) = self.slots.get(base + usize::from(byte)) else {
                break;
            };
            if child & USED == 0 || (child >> LABEL_SHIFT) as u8 != byte {
                break;
            }
            let value = (child >> VALUE_SHIFT) as u32;
            if value != 0 {
                found = Some((value - 1, i + 1));
            }
            node = child;
        }
        found
    }

    /// Heap bytes held.
    #[cfg(test)]
    pub(crate) fn heap_bytes(&self) -> usize {
        self.slots.len() * 8
    }
}

/// The length of the longest common prefix of `a` and `b`.
fn common(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

struct Builder {
    slots: Vec<u64>,
    /// Bitsets: which slots are in use, which bases are taken.
    used: Vec<u64>,
    bases: Vec<u64>,
    /// No slot below this is free.
    free_from: usize,
}

impl Builder {
    fn is_used(&self, slot: usize) -> bool {
        self.used
            .get(slot / 64)
            .is_some_and(|w| w >> (slot % 64) & 1 == 1)
    }

    fn mark_used(&mut self, slot: usize) {
        if slot / 64 >= self.used.len() {
            self.used.resize(slot / 64 + 1, 0);
        }
        self.used[slot / 64] |= 1 << (slot % 64);
    }

    fn base_taken(&self, base: usize) -> bool {
        self.bases
            .get(base / 64)
            .is_some_and(|w| w >> (base % 64) & 1 == 1)
    }

    /// The first free slot at or after `slot`.
    fn next_free(&self, mut slot: usize) -> usize {
        loop {
            let Some(&word) = self.used.get(slot / 64) else {
                return slot;
            };
            let free = !word >> (slot % 64);
            if free != 0 {
                return slot + free.trailing_zeros() as usize;
            }
            slot = (slot / 64 + 1) * 64;
        }
    }

    /// Finds a base for `children` (sorted by byte), claims it and their slots.
    fn place(&mut self, children: &[(u8, usize, usize)]) -> Option<usize> {
        self.free_from = self.next_free(self.free_from);
        let first = usize::from(children[0].0);
        let mut slot = self.next_free(self.free_from.max(first + 1));
        let base = loop {
            let base = slot - first;
            if !self.base_taken(base)
                && children
                    .iter()
                    .all(|&(byte, _, _)| !self.is_used(base + usize::from(byte)))
            {
                break base;
            }
            slot = self.next_free(slot + 1);
        };
        if base + 256 >= MAX_SLOTS {
            return None;
        }
        if base / 64 >= self.bases.len() {
            self.bases.resize(base / 64 + 1, 0);
        }
        self.bases[base / 64] |= 1 << (base % 64);
        for &(byte, _, _) in children {
            self.mark_used(base + usize::from(byte));
        }
        if self.slots.len() < base + 256 {
            self.slots.resize(base + 256, 0);
        }
        Some(base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_finds_the_longest_key() {
        let words: Vec<&[u8]> = vec![b"a", b"ab", b"abcd", b"b", b"bcd", b"\xff\x00", b"\x00"];
        let mut values: Vec<u32> = (0..words.len() as u32).collect();
        let mut prefixes = vec![None; words.len()];
        let trie = Trie::new(
            &mut values,
            |v| words[v as usize],
            |v, p| {
                prefixes[v as usize] = p;
            },
        )
        .unwrap();
        assert_eq!(
            prefixes,
            [None, Some(0), Some(1), None, Some(3), None, None]
        );
        assert_eq!(trie.longest_prefix(b"abcde"), Some((2, 4)));
        assert_eq!(trie.longest_prefix(b"abc"), Some((1, 2)));
        assert_eq!(trie.longest_prefix(b"ax"), Some((0, 1)));
        assert_eq!(trie.longest_prefix(b"bc"), Some((3, 1)));
        assert_eq!(trie.longest_prefix(b"c"), None);
        assert_eq!(trie.longest_prefix(b""), None);
        assert_eq!(trie.longest_prefix(b"\xff\x00\x00"), Some((5, 2)));
        assert_eq!(trie.longest_prefix(b"\xff"), None);
        assert_eq!(trie.longest_prefix(b"\x00\xff"), Some((6, 1)));
    }

    #[test]
    fn rejects_duplicates_and_empty_keys() {
        let words: [&[u8]; 3] = [b"a", b"a", b""];
        assert!(Trie::new(&mut [0, 1], |v| words[v as usize], |_, _| {}).is_none());
        assert!(Trie::new(&mut [2], |v| words[v as usize], |_, _| {}).is_none());
    }

    /// Against a brute-force scan over random keys from a small alphabet (deep, dense tries).
    #[test]
    fn longest_prefix_equals_brute_force() {
        let mut rng = crate::tokens::testing::Rng(0x5EED_7E1E);
        let mut words: Vec<Vec<u8>> = (0..3_000)
            .map(|_| {
                let len = 1 + rng.below(12);
                (0..len).map(|_| b"abc\x00\xff"[rng.below(5)]).collect()
            })
            .collect();
        words.sort();
        words.dedup();
        let mut values: Vec<u32> = (0..words.len() as u32).collect();
        let trie = Trie::new(&mut values, |v| &words[v as usize][..], |_, _| {}).unwrap();
        for _ in 0..20_000 {
            let len = rng.below(16);
            let text: Vec<u8> = (0..len).map(|_| b"abc\x00\xff"[rng.below(5)]).collect();
            let expected = words
                .iter()
                .zip(0..)
                .filter(|(w, _)| text.starts_with(w))
                .max_by_key(|(w, _)| w.len())
                .map(|(w, v)| (v, w.len()));
            assert_eq!(trie.longest_prefix(&text), expected, "{text:?}");
        }
    }
}
