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
    /// Builds the trie of `keys` (distinct, non-empty, each with a value below `MAX_VALUE`);
    /// `None` if they do not fit the slot layout. Sorts `keys`.
    pub(crate) fn new(keys: &mut [(&[u8], u32)]) -> Option<Trie> {
        keys.sort_unstable_by(|a, b| a.0.cmp(b.0));
        if keys
            .iter()
            .any(|&(key, value)| key.is_empty() || value >= MAX_VALUE)
            || keys.windows(2).any(|w| w[0].0 == w[1].0)
        {
            return None;
        }
        let mut builder = Builder {
            slots: vec![0; 512],
            used: vec![0; 8],
            bases: vec![0; 8],
            free_from: 1,
        };
        builder.slots[0] = USED;
        builder.mark_used(0);
        // Depth-first: (slot, keys under it, depth).
        let mut stack = Vec::new();
        if !keys.is_empty() {
            stack.push((0usize, 0usize, keys.len(), 0usize));
        }
        let mut children: Vec<(u8, usize, usize)> = Vec::new();
        while let Some((slot, mut lo, hi, depth)) = stack.pop() {
            if keys[lo].0.len() == depth {
                // Sorted: the key that ends here comes first.
                builder.slots[slot] |= u64::from(keys[lo].1 + 1) << VALUE_SHIFT;
                lo += 1;
            }
            if lo == hi {
                continue;
            }
            children.clear();
            let mut start = lo;
            for i in lo + 1..=hi {
                if i == hi || keys[i].0[depth] != keys[start].0[depth] {
                    children.push((keys[start].0[depth], start, i));
                    start = i;
                }
            }
            let base = builder.place(&children)?;
            builder.slots[slot] |= base as u64;
            for &(byte, lo, hi) in &children {
                let child = base + usize::from(byte);
                builder.slots[child] = USED | u64::from(byte) << LABEL_SHIFT;
                stack.push((child, lo, hi, depth + 1));
            }
        }
        let mut slots = builder.slots;
        // Every base + byte stays in bounds, so a walk needs no length check beyond `get`.
        let end = slots.iter().rposition(|&s| s != 0).unwrap_or(0) + 257;
        slots.truncate(end);
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
            self.slots.resize((base + 256).next_power_of_two(), 0);
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
        let mut keys: Vec<(&[u8], u32)> = words.iter().zip(0..).map(|(w, v)| (*w, v)).collect();
        let trie = Trie::new(&mut keys).unwrap();
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
        assert!(Trie::new(&mut [(b"a".as_slice(), 0), (b"a".as_slice(), 1)]).is_none());
        assert!(Trie::new(&mut [(b"".as_slice(), 0)]).is_none());
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
        let mut keys: Vec<(&[u8], u32)> = words.iter().zip(0..).map(|(w, v)| (&w[..], v)).collect();
        let trie = Trie::new(&mut keys).unwrap();
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
