//! Count-only byte-pair merging over a piece, with the exact merge order of tiktoken.
//!
//! The two merge loops are ported from tiktoken (`src/lib.rs`, as vendored by tiktoken-rs 0.12.1
//! in `vendor_tiktoken.rs`: `_byte_pair_merge` and `_byte_pair_merge_large`),
//! Copyright (c) 2022 OpenAI, Shantanu Jain, MIT License. The changes, none of which changes a
//! merge: they return how many tokens the piece becomes instead of the tokens; the short-piece
//! loop works in a stack array instead of a fresh `Vec`; two-byte lookups read a direct table;
//! the heap holds one `u64` per candidate and is built with one heapify.

use std::collections::BinaryHeap;

use rustc_hash::FxHashMap;
use tiktoken_rs::Rank;

/// Pieces shorter than this use the O(n·m) scan (cache-friendly for the short pieces that make up
/// nearly all text), longer ones the O(m log n) heap. The same threshold as tiktoken (both loops
/// perform the same merges, so the threshold only affects speed).
const LARGE_PIECE: usize = 100;

/// The longest piece (and so text) the merge loops take: `Merge` packs a start offset in 40 bits.
pub(crate) const MAX_PIECE_BYTES: usize = 1 << START_BITS;

/// The mergeable ranks of one encoding: token bytes -> rank, every token's bytes stored in one
/// leaked arena (the table lives as long as the process, like tiktoken-rs's singletons), plus a
/// direct table of the two-byte tokens, the most frequent lookup (every merge starts with them).
pub(crate) struct Ranks {
    map: FxHashMap<&'static [u8], Rank>,
    /// `pairs[a << 8 | b]`: the rank of the token `[a, b]`, or `Rank::MAX`.
    pairs: Box<[Rank]>,
}

impl Ranks {
    /// Builds the table from `(bytes, rank)` pairs; `None` if a rank does not fit `Merge`.
    pub(crate) fn new(tokens: impl IntoIterator<Item = (Vec<u8>, Rank)>) -> Option<Ranks> {
        let mut arena = Vec::new();
        let mut spans = Vec::new();
        for (bytes, rank) in tokens {
            if rank >= MAX_RANK {
                return None;
            }
            spans.push((arena.len(), bytes.len(), rank));
            arena.extend_from_slice(&bytes);
        }
        let arena: &'static [u8] = Box::leak(arena.into_boxed_slice());
        let mut map = FxHashMap::with_capacity_and_hasher(spans.len(), rustc_hash::FxBuildHasher);
        let mut pairs = vec![Rank::MAX; 1 << 16].into_boxed_slice();
        for (start, len, rank) in spans {
            let bytes = arena.get(start..start + len)?;
            if let [a, b] = bytes {
                pairs[pair_index(*a, *b)] = rank;
            }
            map.insert(bytes, rank);
        }
        Some(Ranks { map, pairs })
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    #[cfg(test)]
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&[u8], Rank)> + '_ {
        self.map.iter().map(|(bytes, rank)| (*bytes, *rank))
    }

    #[inline]
    pub(crate) fn get(&self, bytes: &[u8]) -> Option<Rank> {
        if let [a, b] = bytes {
            let rank = self.pair(*a, *b);
            return (rank != Rank::MAX).then_some(rank);
        }
        self.map.get(bytes).copied()
    }

    /// The rank of the two-byte token `[a, b]`, or `Rank::MAX` if there is none.
    #[inline]
    fn pair(&self, a: u8, b: u8) -> Rank {
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
        // parts[i] = (start of part i, rank of the pair starting at part i); parts[len - 1] is the
        // end sentinel. At most `LARGE_PIECE` parts: the piece's bytes plus the end.
        let mut parts = [(0u8, Rank::MAX); LARGE_PIECE];
        let n = piece.len();
        let mut len = n + 1;
        let mut min_rank = (Rank::MAX, usize::MAX);
        for i in 0..n - 1 {
            let rank = self.pair(piece[i], piece[i + 1]);
            if rank < min_rank.0 {
                min_rank = (rank, i);
            }
            parts[i] = (i as u8, rank);
        }
        parts[n - 1] = ((n - 1) as u8, Rank::MAX);
        parts[n] = (n as u8, Rank::MAX);

        // The rank of the pair parts[i] + parts[i + 1] once parts[i + 1] and parts[i + 2] have
        // been merged (parts[i + 1] is still in the array when this is called).
        let rank_after_merge = |parts: &[(u8, Rank)], len: usize, i: usize| -> Rank {
            if i + 3 < len {
                let (start, end) = (parts[i].0 as usize, parts[i + 3].0 as usize);
                self.get(&piece[start..end]).unwrap_or(Rank::MAX)
            } else {
                Rank::MAX
            }
        };

        while min_rank.0 != Rank::MAX {
            let i = min_rank.1;
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
/// Ranks must stay below this to fit `Merge` (the largest vocabulary, o200k, ends at 199,997).
const MAX_RANK: Rank = 1 << (64 - START_BITS);

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
