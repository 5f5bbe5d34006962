//! Count-only byte-pair merging over a piece, with the exact merge order of tiktoken.
//!
//! The two merge loops are ported from tiktoken (`src/lib.rs`, as vendored by tiktoken-rs 0.12.1
//! in `vendor_tiktoken.rs`: `_byte_pair_merge` and `_byte_pair_merge_large`),
//! Copyright (c) 2022 OpenAI, Shantanu Jain, MIT License. The changes: they return how many
//! tokens the piece becomes instead of the tokens, and the short-piece loop works in a stack
//! array instead of a fresh `Vec`.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use rustc_hash::FxHashMap;
use tiktoken_rs::Rank;

/// Pieces shorter than this use the O(n·m) scan (cache-friendly for the short pieces that make up
/// nearly all text), longer ones the O(m log n) heap. The same threshold as tiktoken (both loops
/// perform the same merges, so the threshold only affects speed).
const LARGE_PIECE: usize = 100;

/// The mergeable ranks of one encoding: token bytes -> rank, every token's bytes stored in one
/// leaked arena (the table lives as long as the process, like tiktoken-rs's singletons).
pub(crate) struct Ranks {
    map: FxHashMap<&'static [u8], Rank>,
}

impl Ranks {
    /// Builds the table from `(bytes, rank)` pairs.
    pub(crate) fn new(tokens: impl IntoIterator<Item = (Vec<u8>, Rank)>) -> Ranks {
        let mut arena = Vec::new();
        let mut spans = Vec::new();
        for (bytes, rank) in tokens {
            spans.push((arena.len(), bytes.len(), rank));
            arena.extend_from_slice(&bytes);
        }
        let arena: &'static [u8] = Box::leak(arena.into_boxed_slice());
        let mut map = FxHashMap::with_capacity_and_hasher(spans.len(), rustc_hash::FxBuildHasher);
        for (start, len, rank) in spans {
            if let Some(bytes) = arena.get(start..start + len) {
                map.insert(bytes, rank);
            }
        }
        Ranks { map }
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
        self.map.get(bytes).copied()
    }

    /// How many tokens `piece` encodes to: tiktoken's `encode_ordinary` looks the whole piece up
    /// first and runs BPE only when that fails; so do we.
    #[inline]
    pub(crate) fn count_piece(&self, piece: &[u8]) -> usize {
        if piece.len() <= 1 || self.map.contains_key(piece) {
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
            let rank = self.get(&piece[i..i + 2]).unwrap_or(Rank::MAX);
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

    /// `_byte_pair_merge_large(ranks, piece).len()`, for `piece.len() >= 2`: a heap of candidate
    /// merges and a linked list of parts, O(m log n) for m merges.
    pub(crate) fn merge_count_large(&self, piece: &[u8]) -> usize {
        let n = piece.len();
        let mut state = Vec::with_capacity(n);
        state.push(State {
            prev: usize::MAX,
            end: 1,
            next_end: 2,
            next_rank: Rank::MAX,
        });
        let mut heap = BinaryHeap::with_capacity(n);
        for i in 0..n - 1 {
            if let Some(rank) = self.get(&piece[i..i + 2]) {
                heap.push(Merge { start: i, rank });
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

        // Records the candidate merge of the part at `start` with the part that ends at
        // `next_end` (invalidating the old candidate at `start` in any case).
        let potential_merge =
            |state: &mut [State], heap: &mut BinaryHeap<Merge>, start: usize, next_end: usize| {
                state[start].next_end = next_end;
                state[start].next_rank = Rank::MAX;
                if next_end <= n {
                    if let Some(rank) = self.get(&piece[start..next_end]) {
                        heap.push(Merge { start, rank });
                        state[start].next_rank = rank;
                    }
                }
            };

        while let Some(left) = heap.pop() {
            if left.rank == Rank::MAX {
                break;
            }
            if left.rank != state[left.start].next_rank {
                continue; // This merge was invalidated: ignore it.
            }
            let left_start = left.start;
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

#[derive(Eq, PartialEq, Clone, Copy)]
struct Merge {
    start: usize,
    rank: Rank,
}

impl Ord for Merge {
    /// The lowest rank first, then the leftmost (`BinaryHeap` pops the greatest).
    #[inline]
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .rank
            .cmp(&self.rank)
            .then_with(|| other.start.cmp(&self.start))
    }
}

impl PartialOrd for Merge {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

struct State {
    prev: usize,
    end: usize,
    next_end: usize,
    next_rank: Rank,
}
