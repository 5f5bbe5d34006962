//! Count-only BPE in linear time for long pieces: the "backtracking" encoder of GitHub's `bpe`
//! crate (github/rust-gems, `crates/bpe`, Copyright (c) 2024 GitHub, MIT License), ported to
//! tiktoken's merge rule and to counting.
//!
//! The idea (the crate's README proves it): BPE's output is the only way to cut a piece into
//! tokens such that every two neighbours `a b` are what BPE makes of the bytes of `a b`. So take
//! the longest token at each position; when it cannot follow the previous token, try its next
//! shorter prefix; when none can, pop the previous token and try its shorter prefixes. A bitset
//! of positions known to lead nowhere keeps this linear.
//!
//! What differs from the crate:
//! - tiktoken merges two neighbouring parts whenever their bytes together are a token (with
//!   that token's rank), not only along each token's own merge pair. So the neighbour test
//!   asks the rank table about the bytes across the boundary (a slice of the piece, no copy)
//!   instead of a table of merge pairs, and tokens that BPE never produces from their own bytes
//!   are left out of the trie.
//! - The neighbour test replays the two tokens' merge trees backwards in time. It relies on
//!   every token's own merges coming in non-decreasing rank order; the few tokens for which
//!   that is false (none in the vocabularies we ship, a test checks) are instead checked by
//!   running the merge on the two tokens' bytes (`simulate`).
//! - Only the count is kept, the token stack is a reused per-thread buffer, and the answers of
//!   the neighbour test are cached per thread.
//!
//! Memory for o200k: the trie (3.4 MB) and one `u64` per token (1.6 MB), built from the rank
//! table with it.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use tiktoken_rs::Rank;

use super::bpe::Ranks;
use super::trie::Trie;

/// Per-token facts, one `u64` each, low to high: length - 1 (7 bits) and the longest shorter
/// prefix that is a token, plus one (18 bits; 0 = none), both set by the build; then, worked out
/// on the token's first use (`facts`): the left and right part of its last merge (18 bits each),
/// whether its own merges ever go down in rank, whether BPE produces it from its own bytes (only
/// those are candidates), and whether these have been worked out.
const RANK_BITS: u32 = 18;
const RANK_MASK: u64 = (1 << RANK_BITS) - 1;
const LEN_MASK: u64 = 0x7F;
const PREFIX_SHIFT: u32 = 7;
const LEFT_SHIFT: u32 = PREFIX_SHIFT + RANK_BITS;
const RIGHT_SHIFT: u32 = LEFT_SHIFT + RANK_BITS;
const IRREGULAR: u64 = 1 << (RIGHT_SHIFT + RANK_BITS);
const PRODUCED: u64 = IRREGULAR << 1;
const KNOWN: u64 = PRODUCED << 1;

pub(crate) struct Backtrack {
    trie: Trie,
    info: Box<[AtomicU64]>,
    /// The longest token's length: no lookup across a boundary beyond it.
    longest: usize,
    /// Which vocabulary this is (a thread's pair cache serves all of them).
    id: u8,
}

impl Backtrack {
    /// Builds the tables for the `limit` ranks of `ranks` (o200k: 0.1-0.2 s). `None` if the
    /// vocabulary does not fit the layout (a rank of 2^18 - 1 or more, a token over 128 bytes).
    ///
    /// Which two parts make each token is worked out on the token's first use instead (a merge
    /// over its bytes, about a microsecond): doing it for all 200k tokens up front would triple
    /// the build, and a text uses a few thousand.
    pub(crate) fn new(ranks: &Ranks, limit: usize, id: u8) -> Option<Backtrack> {
        if limit >= RANK_MASK as usize {
            return None;
        }
        // The tokens in rank order, in one arena (dropped at the end of the build).
        let mut lens = vec![0u8; limit];
        let mut fits = true;
        ranks.for_each(|bytes, rank| match lens.get_mut(rank as usize) {
            Some(len) if bytes.len() <= 128 => *len = bytes.len() as u8,
            _ => fits = false,
        });
        if !fits {
            return None;
        }
        let mut starts = Vec::with_capacity(limit + 1);
        starts.push(0u32);
        for &len in &lens {
            starts.push(starts.last().copied().unwrap_or(0) + u32::from(len));
        }
        drop(lens);
        let mut arena = vec![0u8; starts[limit] as usize];
        ranks.for_each(|bytes, rank| {
            let start = starts[rank as usize] as usize;
            arena[start..start + bytes.len()].copy_from_slice(bytes);
        });
        let token =
            |rank: u32| &arena[starts[rank as usize] as usize..starts[rank as usize + 1] as usize];

        let mut info: Vec<u64> = (0..limit as u32)
            .map(|rank| match token(rank).len() {
                0 => 0, // a rank with no ordinary token (p50k's <|endoftext|>)
                1 => KNOWN | PRODUCED,
                len => len as u64 - 1,
            })
            .collect();
        let mut tokens: Vec<u32> = (0..limit as u32)
            .filter(|&rank| !token(rank).is_empty())
            .collect();
        let trie = Trie::new(&mut tokens, token, |rank, prefix| {
            if let Some(prefix) = prefix {
                info[rank as usize] |= u64::from(prefix + 1) << PREFIX_SHIFT;
            }
        })?;
        let longest = starts.windows(2).map(|w| w[1] - w[0]).max()? as usize;
        Some(Backtrack {
            trie,
            info: info.into_iter().map(AtomicU64::new).collect(),
            longest,
            id,
        })
    }

    #[inline]
    fn len(&self, token: u32) -> usize {
        (self.info[token as usize].load(Relaxed) & LEN_MASK) as usize + 1
    }

    /// The facts about `token`, whose bytes are `bytes`, working out the merge facts on first use
    /// (by running BPE on the bytes: is the result the token, which two parts made it, did the
    /// merge ranks ever go down). Threads that race store the same bits.
    #[inline]
    fn facts(&self, ranks: &Ranks, token: u32, bytes: &[u8]) -> u64 {
        let entry = self.info[token as usize].load(Relaxed);
        if entry & KNOWN != 0 {
            return entry;
        }
        let learned = learn(ranks, bytes);
        self.info[token as usize].fetch_or(learned, Relaxed);
        entry | learned
    }

    /// How many tokens BPE makes of `piece` (no allocation once this thread's buffer is big
    /// enough).
    pub(crate) fn count(&self, ranks: &Ranks, piece: &[u8]) -> usize {
        SCRATCH.with(|scratch| {
            let Ok(mut scratch) = scratch.try_borrow_mut() else {
                // Only reentrancy (a panic unwinding through here) gets here.
                let mut spare = Scratch::default();
                return spare.count(self, ranks, piece);
            };
            scratch.count(self, ranks, piece)
        })
    }

    /// The search itself: `tokens` holds the tokens so far, `dead` the positions from which no
    /// encoding of the rest exists.
    fn encode(
        &self,
        ranks: &Ranks,
        text: &[u8],
        tokens: &mut [u32],
        dead: &mut [u64],
        known: &mut PairCache,
    ) -> usize {
        let mut len = 0usize;
        let mut pos = 0;
        let mut next = self.trie.longest_prefix(text).map(|(token, _)| token);
        while let Some(mut token) = next {
            let last = len.checked_sub(1).map(|i| tokens[i]);
            loop {
                let mut entry = self.info[token as usize].load(Relaxed);
                let end = pos + (entry & LEN_MASK) as usize + 1;
                if entry & KNOWN == 0 {
                    entry = self.facts(ranks, token, &text[pos..end]);
                }
                if entry & PRODUCED != 0
                    && dead[end / 64] >> (end % 64) & 1 == 0
                    && last.is_none_or(|last| {
                        known.get(self.id, last, token).unwrap_or_else(|| {
                            let fits = self.compatible(ranks, text, pos, last, token);
                            known.set(self.id, last, token, fits);
                            fits
                        })
                    })
                {
                    tokens[len] = token;
                    len += 1;
                    pos = end;
                    next = self
                        .trie
                        .longest_prefix(&text[end..])
                        .map(|(token, _)| token);
                    break;
                }
                let prefix = (entry >> PREFIX_SHIFT & RANK_MASK) as u32;
                if prefix != 0 {
                    token = prefix - 1;
                    continue;
                }
                // Nothing fits after `last`: `pos` leads nowhere (BPE's encoding of the text
                // before `pos` is unique, so this does not depend on the path), back up.
                dead[pos / 64] |= 1 << (pos % 64);
                let last = last.expect("every byte is a token, so the encoding exists");
                len -= 1;
                pos -= self.len(last);
                next = Some(last);
                break;
            }
        }
        len
    }

    /// Whether BPE turns the bytes of `a b` (`a` ends at `pos` in `text`, `b` starts there) into
    /// exactly `a`, `b`.
    ///
    /// Without a merge across the boundary, BPE on `a b` interleaves the merges of `a` and of
    /// `b` alone by (rank, position); with every token's merges in non-decreasing rank order
    /// the interleaving is too. Between two merges that change a boundary part, the pair
    /// across the boundary, `x y`, is a candidate; it wins if it is lower than the merge that
    /// ends that stretch (the latest of the stretch), comparing ranks and then positions (`x`
    /// is left of `y`'s merge, right of `x`'s). Walk those stretches backwards from the end,
    /// undoing the later of the two boundary parts' merges each time.
    #[inline]
    fn compatible(&self, ranks: &Ranks, text: &[u8], pos: usize, a: u32, b: u32) -> bool {
        let (mut x, mut y) = (a, b);
        let (mut x_len, mut y_len) = (self.len(x), self.len(y));
        // Both were candidates, so their facts are known.
        let both = self.info[a as usize].load(Relaxed) | self.info[b as usize].load(Relaxed);
        if both & IRREGULAR != 0 {
            return simulate(ranks, &text[pos - x_len..pos + y_len], x_len);
        }
        let across = |x_len: usize, y_len: usize| {
            if x_len + y_len > self.longest {
                return None;
            }
            ranks.get(&text[pos - x_len..pos + y_len])
        };
        // After all merges of `a` and `b`, any token across the boundary merges.
        if across(x_len, y_len).is_some() {
            return false;
        }
        loop {
            let (x_merged, y_merged) = (x_len > 1, y_len > 1);
            if y_merged && (!x_merged || y >= x) {
                // `y` was made last (on equal ranks, the right one is made later).
                let made = y;
                let facts = self.facts(ranks, y, &text[pos..pos + y_len]);
                y = (facts >> LEFT_SHIFT & RANK_MASK) as u32;
                y_len = self.len(y);
                if across(x_len, y_len).is_some_and(|rank| rank <= made) {
                    return false;
                }
            } else if x_merged {
                let made = x;
                let facts = self.facts(ranks, x, &text[pos - x_len..pos]);
                x = (facts >> RIGHT_SHIFT & RANK_MASK) as u32;
                x_len = self.len(x);
                // A tie loses to the merge that made `x` (it is further left), and no merge of
                // that rank on the right can come first: `x`'s parts are made by then (their
                // ranks are lower), so its merge is a candidate and is further left.
                if across(x_len, y_len).is_some_and(|rank| rank < made) {
                    return false;
                }
            } else {
                return true;
            }
        }
    }
}

/// The merge facts of a token of 2+ bytes (see `facts`).
#[cold]
fn learn(ranks: &Ranks, bytes: &[u8]) -> u64 {
    let (mut mid, mut highest, mut irregular) = (0, 0, false);
    let parts = merge(ranks, bytes, |_, at, _, merged| {
        irregular |= merged < highest;
        highest = highest.max(merged);
        mid = at;
    });
    let parts_of = (parts == 1)
        .then(|| Some((ranks.get(&bytes[..mid])?, ranks.get(&bytes[mid..])?)))
        .flatten();
    match parts_of {
        Some((left, right)) => {
            KNOWN
                | PRODUCED
                | u64::from(left) << LEFT_SHIFT
                | u64::from(right) << RIGHT_SHIFT
                | if irregular { IRREGULAR } else { 0 }
        }
        None => KNOWN, // BPE never produces this token: not a candidate
    }
}

/// Whether BPE on `bytes` ends with exactly two parts split at `at`.
fn simulate(ranks: &Ranks, bytes: &[u8], at: usize) -> bool {
    let mut crossed = false;
    let parts = merge(ranks, bytes, |start, _, end, _| {
        crossed |= start < at && at < end;
    });
    !crossed && parts == 2
}

/// `Ranks::merge_small` with a parts array sized to `bytes` (at most 510 of them, two tokens):
/// the build runs it on every token, and clearing a big array each time would dominate.
fn merge(ranks: &Ranks, bytes: &[u8], merged: impl FnMut(usize, usize, usize, Rank)) -> usize {
    match bytes.len() {
        0..16 => ranks.merge_small::<16>(bytes, merged),
        16..64 => ranks.merge_small::<64>(bytes, merged),
        _ => ranks.merge_small::<512>(bytes, merged),
    }
}

/// A thread's token stack, dead-position bitset and pair cache, reused across pieces.
#[derive(Default)]
struct Scratch {
    tokens: Vec<u32>,
    dead: Vec<u64>,
    known: PairCache,
}

/// Buffers above this are freed after the piece (a one-off huge piece keeps no memory).
const KEEP_BYTES: usize = 1 << 20;

impl Scratch {
    fn count(&mut self, backtrack: &Backtrack, ranks: &Ranks, piece: &[u8]) -> usize {
        let words = piece.len() / 64 + 1;
        if self.tokens.len() < piece.len() {
            self.tokens.resize(piece.len(), 0);
        }
        if self.dead.len() < words {
            self.dead.resize(words, 0);
        }
        self.dead[..words].fill(0);
        let tokens = backtrack.encode(
            ranks,
            piece,
            &mut self.tokens,
            &mut self.dead[..words],
            &mut self.known,
        );
        if self.tokens.len() * 4 > KEEP_BYTES {
            self.tokens = Vec::new();
            self.dead = Vec::new();
        }
        tokens
    }
}

/// The answers of `compatible` for recently seen token pairs, direct-mapped (32 KB a thread):
/// text repeats its token pairs far more than its tokens' bytes repeat cheaply, and the answer
/// is a fixed property of the pair. Entry: vocabulary, the two ranks, a used bit, the answer.
struct PairCache(Box<[u64]>);

const PAIR_CACHE_BITS: u32 = 12;

impl Default for PairCache {
    fn default() -> PairCache {
        PairCache(vec![0; 1 << PAIR_CACHE_BITS].into_boxed_slice())
    }
}

impl PairCache {
    #[inline]
    fn key(id: u8, a: u32, b: u32) -> (usize, u64) {
        let key = u64::from(id) << (2 * RANK_BITS) | u64::from(a) << RANK_BITS | u64::from(b);
        let slot = key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - PAIR_CACHE_BITS);
        (slot as usize, key << 2 | 2)
    }

    #[inline]
    fn get(&self, id: u8, a: u32, b: u32) -> Option<bool> {
        let (slot, key) = PairCache::key(id, a, b);
        let entry = self.0[slot];
        (entry & !1 == key).then_some(entry & 1 == 1)
    }

    #[inline]
    fn set(&mut self, id: u8, a: u32, b: u32, fits: bool) {
        let (slot, key) = PairCache::key(id, a, b);
        self.0[slot] = key | u64::from(fits);
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::fast::{backtrack, ranks};
    use crate::tokens::testing::Rng;
    use crate::tokens::Encoding;

    const ENCODINGS: [Encoding; 3] = [
        Encoding::O200kBase,
        Encoding::Cl100kBase,
        Encoding::R50kBase,
    ];

    /// The tokens BPE produces from their own bytes, by rank.
    /// Every token's bytes, by rank (empty for a rank without an ordinary token).
    fn by_rank(encoding: Encoding) -> Vec<Vec<u8>> {
        let table = backtrack(encoding).unwrap();
        let mut tokens = vec![Vec::new(); table.info.len()];
        ranks(encoding)
            .unwrap()
            .for_each(|bytes, rank| tokens[rank as usize] = bytes.to_vec());
        tokens
    }

    /// Every token's facts, worked out now.
    fn all_facts(encoding: Encoding, tokens: &[Vec<u8>]) -> Vec<u64> {
        let table = backtrack(encoding).unwrap();
        let ranks = ranks(encoding).unwrap();
        (0..)
            .zip(tokens)
            .map(|(t, bytes)| match bytes.len() {
                0 => 0,
                _ => table.facts(ranks, t, bytes),
            })
            .collect()
    }

    fn candidates(facts: &[u64]) -> Vec<u32> {
        (0..)
            .zip(facts)
            .filter(|&(_, &entry)| entry & PRODUCED != 0)
            .map(|(t, _)| t)
            .collect()
    }

    /// The neighbour test (the backwards walk) agrees with running BPE on the two tokens, on
    /// random pairs and on pairs of tokens that share bytes (where merges cross most).
    #[test]
    fn compatible_equals_running_bpe() {
        let scale = if cfg!(debug_assertions) { 1 } else { 10 };
        let mut rng = Rng(0x5EED_BAC7);
        for encoding in ENCODINGS {
            let ranks = ranks(encoding).unwrap();
            let table = backtrack(encoding).unwrap();
            let by_rank = by_rank(encoding);
            let tokens = candidates(&all_facts(encoding, &by_rank));
            let bytes_of = |t: u32| by_rank[t as usize].clone();
            let mut sample: Vec<(u32, Vec<u8>)> = (0..300)
                .map(|_| {
                    let t = tokens[rng.below(tokens.len())];
                    (t, bytes_of(t))
                })
                .collect();
            // Tokens of one repeated byte and their neighbours.
            for t in tokens
                .iter()
                .copied()
                .filter(|&t| table.len(t) > 1)
                .take(5_000)
            {
                let bytes = bytes_of(t);
                if bytes.iter().all(|&b| b == bytes[0]) || rng.below(50) == 0 {
                    sample.push((t, bytes));
                }
            }
            let (mut pairs, mut valid) = (0, 0);
            for _ in 0..20 * scale {
                for (a, a_bytes) in &sample {
                    let (b, b_bytes) = &sample[rng.below(sample.len())];
                    let text = [&a_bytes[..], &b_bytes[..]].concat();
                    let expected = simulate(ranks, &text, a_bytes.len());
                    let got = table.compatible(ranks, &text, a_bytes.len(), *a, *b);
                    assert_eq!(got, expected, "{encoding:?} {a_bytes:?} {b_bytes:?}");
                    pairs += 1;
                    valid += usize::from(got);
                }
            }
            assert!(valid > pairs / 10 && valid < pairs, "{valid} of {pairs}");
        }
    }

    /// In every vocabulary we ship, BPE produces every token from its own bytes, with merges in
    /// non-decreasing rank order: so the neighbour test never needs `simulate` (which would
    /// still be exact, only slower).
    #[test]
    fn shipped_vocabularies_are_regular() {
        for encoding in [
            Encoding::O200kBase,
            Encoding::Cl100kBase,
            Encoding::P50kBase,
            Encoding::R50kBase,
        ] {
            let tokens = by_rank(encoding);
            let facts = all_facts(encoding, &tokens);
            let ordinary = tokens.iter().filter(|bytes| !bytes.is_empty()).count();
            assert_eq!(candidates(&facts).len(), ordinary, "{encoding:?}");
            assert!(
                facts.iter().all(|&entry| entry & IRREGULAR == 0),
                "{encoding:?}"
            );
        }
    }

    /// The memory the issue budgets: o200k's tables stay under 6 MB.
    #[test]
    fn o200k_tables_stay_small() {
        let table = backtrack(Encoding::O200kBase).unwrap();
        let bytes = table.trie.heap_bytes() + size_of_val(&*table.info);
        assert!(bytes < 6 << 20, "{bytes} bytes");
    }

    fn assert_equals_tiktoken(encoding: Encoding, piece: &[u8]) {
        let ranks = ranks(encoding).unwrap();
        let expected = tiktoken_rs::byte_pair_split(piece, ranks_map(encoding)).len();
        let table = backtrack(encoding).unwrap();
        assert_eq!(
            table.count(ranks, piece),
            expected,
            "{encoding:?} {:?}",
            String::from_utf8_lossy(piece)
        );
    }

    fn ranks_map(encoding: Encoding) -> &'static rustc_hash::FxHashMap<Vec<u8>, Rank> {
        use std::sync::OnceLock;
        static MAPS: [OnceLock<rustc_hash::FxHashMap<Vec<u8>, Rank>>; 3] =
            [const { OnceLock::new() }; 3];
        let i = ENCODINGS.iter().position(|&e| e == encoding).unwrap();
        MAPS[i].get_or_init(|| {
            let mut map = rustc_hash::FxHashMap::default();
            ranks(encoding).unwrap().for_each(|bytes, rank| {
                map.insert(bytes.to_vec(), rank);
            });
            map
        })
    }

    /// Pieces from small alphabets (many merges, many ties), CJK, random bytes and long runs,
    /// against tiktoken-rs's merge.
    #[test]
    fn counts_equal_tiktoken_merge() {
        let scale = if cfg!(debug_assertions) { 1 } else { 10 };
        let mut rng = Rng(0x5EED_BAC8);
        for encoding in ENCODINGS {
            let ranks = ranks(encoding).unwrap();
            let map = ranks_map(encoding);
            let table = backtrack(encoding).unwrap();
            for round in 0..300 * scale {
                let alphabet: &[&str] = match round % 6 {
                    0 => &["a", "b"],
                    1 => &["a", "aa", "b", "ab", "th", "e", "in"],
                    2 => &[
                        "x", "\u{4E2D}", "\u{6587}", "\u{E9}", "\u{9F98}", "\u{3042}",
                    ],
                    3 => &["0", "1", " ", "-", "=", "ing", "tion"],
                    4 => &[
                        "\u{D55C}", "\u{AD6D}", "\u{C5B4}", "\u{4E00}", "\u{30AB}", "\u{FF01}",
                    ],
                    _ => &[" ", "  ", "\n", "\t", "=", "/", "+"],
                };
                let len = 2 + rng.below(if round % 8 == 0 { 2_000 } else { 200 });
                let mut piece = Vec::new();
                if round % 10 == 9 {
                    piece.extend((0..len).map(|_| rng.next() as u8));
                } else {
                    while piece.len() < len {
                        piece.extend_from_slice(rng.pick(alphabet).as_bytes());
                    }
                }
                let expected = tiktoken_rs::byte_pair_split(&piece, map).len();
                assert_eq!(
                    table.count(ranks, &piece),
                    expected,
                    "{encoding:?} {piece:?}"
                );
            }
        }
    }

    #[test]
    fn long_runs_equal_tiktoken_merge() {
        for encoding in ENCODINGS {
            for unit in [
                "a",
                " ",
                "\n",
                "\u{4E2D}",
                "0",
                "ab",
                " \n",
                "=",
                "\u{1F600}",
                "\u{9F98}",
            ] {
                for size in [2usize, 3, 17, 255, 256, 257, 5_000] {
                    let piece = unit.repeat(size.div_ceil(unit.len()));
                    assert_equals_tiktoken(encoding, piece.as_bytes());
                }
            }
        }
    }
}
