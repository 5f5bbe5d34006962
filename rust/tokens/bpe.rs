//! Count-only byte-pair merging over a piece, with the exact merge order of tiktoken.
//!
//! The two merge loops are ported from tiktoken (`src/lib.rs`, as vendored by tiktoken-rs 0.12.1
//! in `vendor_tiktoken.rs`: `_byte_pair_merge` and `_byte_pair_merge_large`),
//! Copyright (c) 2022 OpenAI, Shantanu Jain, MIT License. The changes, none of which changes a
//! merge: they return how many tokens the piece becomes instead of the tokens; the short-piece
//! loop works in a stack array instead of a fresh `Vec`; two-byte lookups read a direct table;
//! the heap holds one `u64` per candidate and is built with one heapify; the rank map is our own
//! compact table (`Ranks`).

use std::collections::BinaryHeap;
use std::hash::Hasher;

use tiktoken_rs::Rank;

/// Pieces shorter than this use the O(n·m) scan (cache-friendly for the short pieces that make up
/// nearly all text), longer ones the O(m log n) heap. The same threshold as tiktoken (both loops
/// perform the same merges, so the threshold only affects speed).
const LARGE_PIECE: usize = 100;

/// The longest piece (and so text) the merge loops take: `Merge` packs a start offset in 40 bits.
pub(crate) const MAX_PIECE_BYTES: usize = 1 << START_BITS;

/// The mergeable ranks of one encoding: token bytes -> rank.
///
/// Every token's bytes sit in one arena; an open-addressing table (linear probing, at most half
/// full) holds one `u64` per token: where its bytes are, its length, 8 bits of its hash and its
/// rank. A lookup touches one slot (usually) and, when length and hash bits agree, compares the
/// bytes. Two-byte tokens, the most frequent lookup (every merge starts with them), also have a
/// direct table. For o200k: 4 MiB of slots, 1.4 MiB of token bytes and 256 KiB of pairs.
pub(crate) struct Ranks {
    arena: Box<[u8]>,
    slots: Box<[u64]>,
    /// `pairs[a << 8 | b]`: the rank of the token `[a, b]`, or `Rank::MAX`.
    pairs: Box<[Rank]>,
    /// One bit per hash value (`filter_bit`), set for every token: most lookups
    /// are misses (a merge asks about pairs that are no token), and this 128 KB bitmap stays
    /// in cache where the 4 MB of slots do not. About 17% of misses still probe the slots.
    filter: Box<[u64]>,
}

const FILTER_BITS: u32 = 20;

#[inline]
fn filter_bit(hash: u64) -> (usize, u64) {
    let bit = (hash >> 32) as usize & ((1 << FILTER_BITS) - 1);
    (bit / 64, 1 << (bit % 64))
}

/// Slot layout, high to low: place (24 bits: the token's bytes if it has at most
/// `INLINE_BYTES`, else its arena offset), length (8), hash tag (8), rank (24). An empty slot is
/// 0 (a token is never empty).
const RANK_BITS: u32 = 24;
const TAG_SHIFT: u32 = RANK_BITS;
const LEN_SHIFT: u32 = TAG_SHIFT + 8;
const OFFSET_SHIFT: u32 = LEN_SHIFT + 8;
/// Ranks must stay below this (the largest vocabulary, o200k, ends at 199,997).
const MAX_RANK: Rank = 1 << RANK_BITS;
const MAX_ARENA: usize = 1 << (64 - OFFSET_SHIFT);
/// Tokens this short live in their slot (24 bits of place), not in the arena.
const INLINE_BYTES: usize = 3;

#[inline]
fn hash(bytes: &[u8]) -> u64 {
    let mut hasher = rustc_hash::FxHasher::default();
    hasher.write(bytes);
    hasher.finish()
}

#[inline]
fn tag(hash: u64) -> u64 {
    hash >> 56
}

impl Ranks {
    /// Builds the table from at most `max_tokens` `(bytes, rank)` pairs; `None` if there are
    /// more, if the vocabulary does not fit the slot layout (a rank >= 2^24, a token longer than
    /// 255 bytes or 16 MiB of token bytes), or if it holds a token twice.
    pub(crate) fn new(
        max_tokens: usize,
        tokens: impl IntoIterator<Item = (Vec<u8>, Rank)>,
    ) -> Option<Ranks> {
        let capacity = (max_tokens * 2).next_power_of_two().max(16);
        let mask = capacity - 1;
        let mut slots = vec![0u64; capacity].into_boxed_slice();
        let mut arena = Vec::with_capacity(max_tokens * 8);
        let mut pairs = vec![Rank::MAX; 1 << 16].into_boxed_slice();
        let mut filter = vec![0u64; 1 << (FILTER_BITS - 6)].into_boxed_slice();
        let mut count = 0;
        for (bytes, rank) in tokens {
            let (offset, len) = (arena.len(), bytes.len());
            if rank >= MAX_RANK || len == 0 || len > 255 || offset + len > MAX_ARENA {
                return None;
            }
            count += 1;
            if count > capacity / 2 {
                return None; // more than `max_tokens`
            }
            let hash = hash(&bytes);
            let (word, bit) = filter_bit(hash);
            filter[word] |= bit;
            let key = (len as u64) << LEN_SHIFT | tag(hash) << TAG_SHIFT;
            let mut i = hash as usize & mask;
            while slots[i] != 0 {
                if slots[i] & KEY_MASK == key && slot_holds(&arena, slots[i], &bytes) {
                    return None;
                }
                i = (i + 1) & mask;
            }
            let place = if len <= INLINE_BYTES {
                inline(&bytes)
            } else {
                arena.extend_from_slice(&bytes);
                offset as u64
            };
            slots[i] = place << OFFSET_SHIFT | key | u64::from(rank);
            if let [a, b] = bytes[..] {
                pairs[pair_index(a, b)] = rank;
            }
        }
        Some(Ranks {
            arena: arena.into_boxed_slice(),
            slots,
            pairs,
            filter,
        })
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.slots.iter().filter(|&&slot| slot != 0).count()
    }

    /// Calls `f(bytes, rank)` for every token, in table order (not rank order).
    pub(crate) fn for_each(&self, mut f: impl FnMut(&[u8], Rank)) {
        for &slot in self.slots.iter().filter(|&&slot| slot != 0) {
            let len = (slot >> LEN_SHIFT & 0xFF) as usize;
            let place = (slot >> OFFSET_SHIFT) as usize;
            let rank = (slot & u64::from(MAX_RANK - 1)) as Rank;
            if len <= INLINE_BYTES {
                f(&place.to_le_bytes()[..len], rank);
            } else {
                f(&self.arena[place..place + len], rank);
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn iter(&self) -> impl Iterator<Item = (Vec<u8>, Rank)> + '_ {
        self.slots.iter().filter(|&&slot| slot != 0).map(|&slot| {
            let len = (slot >> LEN_SHIFT & 0xFF) as usize;
            let place = (slot >> OFFSET_SHIFT) as usize;
            let bytes = if len <= INLINE_BYTES {
                place.to_le_bytes()[..len].to_vec()
            } else {
                self.arena[place..place + len].to_vec()
            };
            (bytes, (slot & u64::from(MAX_RANK - 1)) as Rank)
        })
    }

    #[inline]
    pub(crate) fn get(&self, bytes: &[u8]) -> Option<Rank> {
        if let [a, b] = bytes {
            let rank = self.pair(*a, *b);
            return (rank != Rank::MAX).then_some(rank);
        }
        let hash = hash(bytes);
        let (word, bit) = filter_bit(hash);
        if self.filter[word] & bit == 0 {
            return None;
        }
        let mask = self.slots.len() - 1;
        let key = (bytes.len() as u64) << LEN_SHIFT | tag(hash) << TAG_SHIFT;
        let mut i = hash as usize & mask;
        loop {
            let slot = *self.slots.get(i)?;
            if slot == 0 {
                return None;
            }
            if slot & KEY_MASK == key && slot_holds(&self.arena, slot, bytes) {
                return Some((slot & u64::from(MAX_RANK - 1)) as Rank);
            }
            i = (i + 1) & mask;
        }
    }

    /// The rank of the two-byte token `[a, b]`, or `Rank::MAX` if there is none.
    #[inline]
    pub(crate) fn pair(&self, a: u8, b: u8) -> Rank {
        self.pairs[pair_index(a, b)]
    }

    /// How many tokens `piece` encodes to: tiktoken's `encode_ordinary` looks the whole piece up
    /// first and runs BPE only when that fails; so do we.
    #[inline]
    pub(crate) fn count_piece(&self, piece: &[u8]) -> usize {
        if piece.len() <= 1 || self.get(piece).is_some() {
            return usize::from(!piece.is_empty());
        }
        self.merge_count(piece)
    }

    /// How many tokens BPE merges `piece` (at least 2 bytes) into.
    pub(crate) fn merge_count(&self, piece: &[u8]) -> usize {
        if piece.len() < LARGE_PIECE {
            self.merge_count_small(piece)
        } else {
            self.merge_count_large(piece)
        }
    }

    /// `_byte_pair_merge(ranks, piece).len() - 1`, for `2 <= piece.len() < LARGE_PIECE`.
    fn merge_count_small(&self, piece: &[u8]) -> usize {
        self.merge_small::<LARGE_PIECE>(piece, |_, _, _, _| {})
    }

    /// tiktoken's `_byte_pair_merge` on `piece` (`2 <= piece.len() < N`): calls
    /// `merged(start, mid, end, rank)` for every merge, in merge order, and returns how many
    /// parts are left. The merge tables of `backtrack` are read off these callbacks.
    #[inline]
    pub(crate) fn merge_small<const N: usize>(
        &self,
        piece: &[u8],
        mut merged: impl FnMut(usize, usize, usize, Rank),
    ) -> usize {
        // parts[i] = (start of part i, rank of the pair starting at part i); parts[len - 1] is the
        // end sentinel. At most `N` parts: the piece's bytes plus the end.
        let mut parts = [(0u16, Rank::MAX); N];
        let n = piece.len();
        debug_assert!((2..N).contains(&n) && N <= 1 << 16);
        let mut len = n + 1;
        let mut min_rank = (Rank::MAX, usize::MAX);
        for i in 0..n - 1 {
            let rank = self.pair(piece[i], piece[i + 1]);
            if rank < min_rank.0 {
                min_rank = (rank, i);
            }
            parts[i] = (i as u16, rank);
        }
        parts[n - 1] = ((n - 1) as u16, Rank::MAX);
        parts[n] = (n as u16, Rank::MAX);

        // The rank of the pair parts[i] + parts[i + 1] once parts[i + 1] and parts[i + 2] have
        // been merged (parts[i + 1] is still in the array when this is called).
        let rank_after_merge = |parts: &[(u16, Rank)], len: usize, i: usize| -> Rank {
            if i + 3 < len {
                let (start, end) = (parts[i].0 as usize, parts[i + 3].0 as usize);
                self.get(&piece[start..end]).unwrap_or(Rank::MAX)
            } else {
                Rank::MAX
            }
        };

        while min_rank.0 != Rank::MAX {
            let i = min_rank.1;
            merged(
                parts[i].0 as usize,
                parts[i + 1].0 as usize,
                parts[i + 2].0 as usize,
                min_rank.0,
            );
            if i > 0 {
                parts[i - 1].1 = rank_after_merge(&parts, len, i - 1);
            }
            parts[i].1 = rank_after_merge(&parts, len, i);
            parts.copy_within(i + 2..len, i + 1);
            len -= 1;

            min_rank = (Rank::MAX, usize::MAX);
            for (i, &(_, rank)) in parts[..len - 1].iter().enumerate() {
                if rank < min_rank.0 {
                    min_rank = (rank, i);
                }
            }
        }
        len - 1
    }

    /// `_byte_pair_merge_large(ranks, piece).len()`, for `2 <= piece.len() < MAX_PIECE_BYTES`:
    /// a heap of candidate merges and a linked list of parts, O(m log n) for m merges.
    pub(crate) fn merge_count_large(&self, piece: &[u8]) -> usize {
        let n = piece.len();
        debug_assert!(n < MAX_PIECE_BYTES);
        let mut state = Vec::with_capacity(n);
        state.push(State {
            prev: usize::MAX,
            end: 1,
            next_end: 2,
            next_rank: Rank::MAX,
        });
        let mut candidates = Vec::with_capacity(n);
        for i in 0..n - 1 {
            let rank = self.pair(piece[i], piece[i + 1]);
            if rank != Rank::MAX {
                candidates.push(Merge::new(rank, i));
                state[i].next_rank = rank;
            }
            // Note this happens offset by one.
            state.push(State {
                prev: i,
                end: i + 2,
                next_end: i + 3,
                next_rank: Rank::MAX,
            });
        }
        // Heapify at once: no two candidates compare equal (see `Merge`), so the pop order is
        // the same as after tiktoken's one-by-one pushes.
        let mut heap = BinaryHeap::from(candidates);

        // Records the candidate merge of the part at `start` with the part that ends at
        // `next_end` (invalidating the old candidate at `start` in any case).
        let potential_merge =
            |state: &mut [State], heap: &mut BinaryHeap<Merge>, start: usize, next_end: usize| {
                state[start].next_end = next_end;
                state[start].next_rank = Rank::MAX;
                if next_end <= n {
                    if let Some(rank) = self.get(&piece[start..next_end]) {
                        heap.push(Merge::new(rank, start));
                        state[start].next_rank = rank;
                    }
                }
            };

        while let Some(left) = heap.pop() {
            let (rank, left_start) = (left.rank(), left.start());
            if rank != state[left_start].next_rank {
                continue; // This merge was invalidated: ignore it.
            }
            let right_start = state[left_start].end;
            let right_end = state[left_start].next_end;
            let right_next_end = state[right_start].next_end;

            // Merge left and right into one part.
            state[left_start].end = right_end;
            potential_merge(&mut state, &mut heap, left_start, right_next_end);
            if right_end < state.len() {
                state[right_end].prev = left_start;
            }
            // Update the merge that ends at left_start.
            if left_start > 0 {
                let prev_start = state[left_start].prev;
                potential_merge(&mut state, &mut heap, prev_start, right_end);
            }
            // Invalidate the merge starting at right_start.
            state[right_start].next_rank = Rank::MAX;
        }

        let mut tokens = 0;
        let mut i = 0;
        while i < state.len() {
            tokens += 1;
            i = state[i].end;
        }
        tokens
    }
}

/// A candidate merge in one `u64`: `BinaryHeap` pops the greatest, so the key is the complement
/// of `rank << 40 | start`, and the lowest rank comes first, then the leftmost start (tiktoken's
/// order). Ranks below 2^24 (`Ranks::new` checks) and pieces below 2^40 bytes keep it exact.
/// Two candidates are never equal: a part's next candidate always spans more bytes, so a
/// different token and rank.
#[derive(Eq, PartialEq, Ord, PartialOrd, Clone, Copy)]
struct Merge(u64);

impl Merge {
    #[inline]
    fn new(rank: Rank, start: usize) -> Merge {
        Merge(!((u64::from(rank) << START_BITS) | start as u64))
    }

    #[inline]
    fn rank(self) -> Rank {
        (!self.0 >> START_BITS) as Rank
    }

    #[inline]
    fn start(self) -> usize {
        (!self.0 & ((1 << START_BITS) - 1)) as usize
    }
}

const START_BITS: u32 = 40;
const _: () = assert!(
    u64::BITS - START_BITS >= RANK_BITS,
    "a rank must fit `Merge`"
);
/// The length and tag bits of a slot.
const KEY_MASK: u64 = (1 << OFFSET_SHIFT) - (1 << TAG_SHIFT);

/// Whether `slot` (whose length and tag match) holds `bytes`: tokens of up to `INLINE_BYTES`
/// bytes sit in the slot itself, longer ones in the arena.
#[inline]
fn slot_holds(arena: &[u8], slot: u64, bytes: &[u8]) -> bool {
    let place = slot >> OFFSET_SHIFT;
    if bytes.len() <= INLINE_BYTES {
        return place == inline(bytes);
    }
    let start = place as usize;
    arena
        .get(start..start + bytes.len())
        .is_some_and(|token| same_bytes(token, bytes))
}

/// A token of up to `INLINE_BYTES` bytes as the slot's place field (little-endian).
#[inline]
fn inline(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .rev()
        .fold(0, |packed, &byte| packed << 8 | u64::from(byte))
}

/// `a == b` for slices of equal length, without a `memcmp` call for the short ones: two
/// overlapping words cover 4 to 16 bytes.
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    fn word4(s: &[u8], last: bool) -> Option<u32> {
        let chunk = if last {
            s.last_chunk::<4>()
        } else {
            s.first_chunk::<4>()
        };
        chunk.map(|c| u32::from_le_bytes(*c))
    }
    fn word8(s: &[u8], last: bool) -> Option<u64> {
        let chunk = if last {
            s.last_chunk::<8>()
        } else {
            s.first_chunk::<8>()
        };
        chunk.map(|c| u64::from_le_bytes(*c))
    }
    match a.len() {
        4..=8 => word4(a, false) == word4(b, false) && word4(a, true) == word4(b, true),
        9..=16 => word8(a, false) == word8(b, false) && word8(a, true) == word8(b, true),
        _ => a == b,
    }
}

#[inline]
fn pair_index(a: u8, b: u8) -> usize {
    usize::from(a) << 8 | usize::from(b)
}

struct State {
    prev: usize,
    end: usize,
    next_end: usize,
    next_rank: Rank,
}
