//! The fast exact count: tiktoken's pieces from a lazy DFA (`pretokenize`), then per piece one
//! whole-piece lookup and, only when that misses, a count-only BPE merge (`bpe`). No token
//! vector is built. The ranks come from tiktoken-rs's own tables, copied once per vocabulary.
//!
//! `count` answers `None` when it cannot count (the DFA could not be built or its search failed,
//! the rank table could not be made, or something panicked); the caller then counts with
//! tiktoken-rs's `encode_ordinary`, so every count is exact either way.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;

use rustc_hash::FxHashSet;
use tiktoken_rs::Rank;

use super::backtrack::Backtrack;
use super::bpe::{Ranks, MAX_PIECE_BYTES};
use super::pretokenize::{Pretokenizer, Scheme};
use super::Encoding;

/// The vocabularies behind the encodings (two encodings share one when only their special
/// tokens differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Vocabulary {
    R50k,
    P50k,
    Cl100k,
    O200k,
}

impl Vocabulary {
    const fn of(encoding: Encoding) -> Vocabulary {
        match encoding {
            Encoding::Gpt2 | Encoding::R50kBase => Vocabulary::R50k,
            Encoding::P50kBase | Encoding::P50kEdit => Vocabulary::P50k,
            Encoding::Cl100kBase => Vocabulary::Cl100k,
            Encoding::O200kBase | Encoding::O200kHarmony => Vocabulary::O200k,
        }
    }

    /// One past the highest ordinary (mergeable) rank, as in tiktoken's rank files. Ranks below
    /// it that decode to a special token (p50k's `<|endoftext|>` = 50256) are skipped; a test
    /// checks that tiktoken-rs knows no ordinary rank at or above it.
    const fn rank_limit(self) -> Rank {
        match self {
            Vocabulary::R50k => 50_256,
            Vocabulary::P50k => 50_281,
            Vocabulary::Cl100k => 100_256,
            Vocabulary::O200k => 199_998,
        }
    }
}

pub(super) const fn scheme(encoding: Encoding) -> Scheme {
    match encoding {
        Encoding::Gpt2 | Encoding::R50kBase | Encoding::P50kBase | Encoding::P50kEdit => {
            Scheme::R50k
        }
        Encoding::Cl100kBase => Scheme::Cl100k,
        Encoding::O200kBase | Encoding::O200kHarmony => Scheme::O200k,
    }
}

static RANKS: [OnceLock<Option<Ranks>>; 4] = [const { OnceLock::new() }; 4];
static BACKTRACK: [OnceLock<Option<Backtrack>>; 4] = [const { OnceLock::new() }; 4];

/// The rank table of `encoding`'s vocabulary, built on first use (`build_ranks`).
/// `None` if it could not be built (then the slow path is used for good).
pub(super) fn ranks(encoding: Encoding) -> Option<&'static Ranks> {
    let vocabulary = Vocabulary::of(encoding);
    RANKS[vocabulary as usize]
        .get_or_init(|| {
            catch_unwind(AssertUnwindSafe(|| build_ranks(encoding, vocabulary)))
                .ok()
                .flatten()
        })
        .as_ref()
}

/// The backtracking counter's tables for `encoding`'s vocabulary, built from the rank table with
/// it. `None` if they could not be built (then long pieces merge as well).
pub(super) fn backtrack(encoding: Encoding) -> Option<&'static Backtrack> {
    let vocabulary = Vocabulary::of(encoding);
    BACKTRACK[vocabulary as usize]
        .get_or_init(|| {
            let ranks = ranks(encoding)?;
            let limit = vocabulary.rank_limit() as usize;
            catch_unwind(AssertUnwindSafe(|| {
                Backtrack::new(ranks, limit, vocabulary as u8)
            }))
            .ok()
            .flatten()
        })
        .as_ref()
}

/// Pieces at least this long that are not one token go to the backtracking counter; shorter
/// ones merge (`Ranks::merge_count`). Measured on the benchmark's shapes: 6 to 12 are equally
/// fast; from 16 CJK text is 20% slower; code and chat do not care.
const BACKTRACK_FROM: usize = 8;

/// Copies the ordinary ranks out of a tokenizer of tiktoken-rs (whose rank map is private),
/// made for this and dropped after: the tables here are all counting needs.
///
/// `_decode_native_and_split` hands out every rank's bytes with one clone each, about twice as
/// fast as `decode_bytes` per rank (which allocates twice); o200k takes ~45 ms in all. It
/// panics on a rank that tiktoken-rs does not know; every rank below `rank_limit` is known
/// (`tests::rank_tables_equal_tiktoken_rs_ranks`), and a panic would only make `ranks` answer
/// `None`.
fn build_ranks(encoding: Encoding, vocabulary: Vocabulary) -> Option<Ranks> {
    let bpe = encoding.fresh_bpe()?;
    let specials: FxHashSet<&[u8]> = bpe
        .special_tokens()
        .into_iter()
        .map(str::as_bytes)
        .collect();
    let limit = vocabulary.rank_limit();
    let tokens = bpe
        ._decode_native_and_split((0..limit).collect())
        .zip(0..limit)
        .filter(|(bytes, _)| !specials.contains(&bytes[..]));
    Ranks::new(limit as usize, tokens)
}

/// Whether `encoding`'s tables have been built (by `warm` or a count).
pub(super) fn loaded(encoding: Encoding) -> bool {
    let vocabulary = Vocabulary::of(encoding) as usize;
    RANKS[vocabulary].get().is_some() && BACKTRACK[vocabulary].get().is_some()
}

/// Builds what `count` needs for `encoding` (the rank table, the backtracking tables and the
/// DFA) and warms this thread's DFA cache.
pub(super) fn warm(encoding: Encoding) {
    let _ = count(
        encoding,
        "Warm up: the quick brown fox's 12345 jumps.\n\tÜber  ",
    );
}

/// `len(encode_ordinary(text))`, or `None` when the fast path cannot count `text`, including when
/// it panics (a bug; this thread's DFA caches are then dropped, and the caller's tiktoken-rs
/// count stands in).
pub(super) fn count(encoding: Encoding, text: &str) -> Option<usize> {
    catch_unwind(AssertUnwindSafe(|| count_unguarded(encoding, text))).unwrap_or_else(|_| {
        Pretokenizer::forget_thread_caches();
        None
    })
}

fn count_unguarded(encoding: Encoding, text: &str) -> Option<usize> {
    if text.len() >= MAX_PIECE_BYTES {
        return None;
    }
    let pretokenizer = scheme(encoding).pretokenizer()?;
    let ranks = ranks(encoding)?;
    let backtrack = backtrack(encoding);
    let mut tokens = 0;
    pretokenizer
        .split(text, |piece| {
            let piece = piece.as_bytes();
            tokens += if piece.len() < BACKTRACK_FROM {
                ranks.count_piece(piece)
            } else if ranks.get(piece).is_some() {
                1
            } else if let Some(backtrack) = backtrack {
                backtrack.count(ranks, piece)
            } else {
                ranks.merge_count(piece)
            };
        })
        .ok()?;
    Some(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::testing::{generate, Rng};

    /// The counts of official tiktoken's `mergeable_ranks`.
    const ORDINARY_TOKENS: [(Encoding, usize); 7] = [
        (Encoding::Gpt2, 50_256),
        (Encoding::R50kBase, 50_256),
        (Encoding::P50kBase, 50_280),
        (Encoding::P50kEdit, 50_280),
        (Encoding::Cl100kBase, 100_256),
        (Encoding::O200kBase, 199_998),
        (Encoding::O200kHarmony, 199_998),
    ];

    /// The table is exactly tiktoken-rs's rank map: every ordinary rank maps back to itself,
    /// nothing else is in it, and tiktoken-rs knows no ordinary rank past `rank_limit`.
    #[test]
    fn rank_tables_equal_tiktoken_rs_ranks() {
        for (encoding, expected) in ORDINARY_TOKENS {
            let bpe = encoding.bpe();
            let table = ranks(encoding).expect("the rank table builds");
            assert_eq!(table.len(), expected, "{encoding:?}");
            let limit = Vocabulary::of(encoding).rank_limit();
            let specials = bpe.special_tokens();
            let mut ordinary = 0;
            for rank in 0..limit + 5_000 {
                let Ok(bytes) = bpe.decode_bytes(&[rank]) else {
                    continue;
                };
                if std::str::from_utf8(&bytes).is_ok_and(|s| specials.contains(s)) {
                    assert_eq!(table.get(&bytes), None, "{encoding:?}: special {rank}");
                    continue;
                }
                assert!(
                    rank < limit,
                    "{encoding:?}: ordinary rank {rank} past the limit"
                );
                assert_eq!(table.get(&bytes), Some(rank), "{encoding:?}: rank {rank}");
                ordinary += 1;
            }
            assert_eq!(ordinary, expected, "{encoding:?}");
        }
    }

    fn assert_counts_match(encoding: Encoding, text: &str) {
        let expected = encoding.bpe().encode_ordinary(text).len();
        assert_eq!(
            count(encoding, text),
            Some(expected),
            "{encoding:?} counts {text:?}"
        );
    }

    #[test]
    fn counts_equal_tiktoken_rs_on_corpus() {
        let texts = [
            "",
            "Hello world!",
            "  leading and trailing spaces   ",
            "tabs\tand\r\nnewlines\n\n\n  \n",
            "it's I'LL we'Re they've he'd",
            "1234567890 \u{661}\u{662}\u{663}\u{664}\u{665}",
            "<|endoftext|><|fim_prefix|><|endofprompt|><|start|>",
            "日本語のテキスト、中文文本。한국어 텍스트입니다.",
            "Ωμέγα καὶ ἄλφα — naïve café, Zürich, São Paulo.",
            "مرحبا بالعالم، שלום עולם. नमस्ते दुनिया।",
            "😀👍🏽 👨\u{200d}👩\u{200d}👧\u{200d}👦 🇫🇷 ❤️",
            "supercalifragilisticexpialidocious antidisestablishmentarianism",
            include_str!("mod.rs"),
            include_str!("bpe.rs"),
            include_str!("../../tests/data/token_golden.jsonl"),
        ];
        for encoding in Encoding::ALL {
            for text in texts {
                assert_counts_match(encoding, text);
            }
        }
    }

    /// 3,000 generated strings per encoding (30,000 in an optimized build).
    #[test]
    fn counts_equal_tiktoken_rs_on_generated_texts() {
        let scale = if cfg!(debug_assertions) { 1 } else { 10 };
        let mut rng = Rng(0x5EED_0002);
        for _ in 0..3_000 * scale {
            let text = generate(&mut rng, 40);
            for encoding in Encoding::ALL {
                assert_counts_match(encoding, &text);
            }
        }
    }

    /// Long pieces take the heap merge: letters from small alphabets (many merges, many ties),
    /// up to 3,000 bytes, against tiktoken-rs (whose `byte_pair_split` always runs the scan).
    #[test]
    fn both_merge_loops_equal_tiktoken_rs() {
        let mut rng = Rng(0x5EED_0003);
        for encoding in [
            Encoding::Cl100kBase,
            Encoding::O200kBase,
            Encoding::R50kBase,
        ] {
            let table = ranks(encoding).expect("the rank table builds");
            let map: rustc_hash::FxHashMap<Vec<u8>, Rank> = table.iter().collect();
            for round in 0..400 {
                let alphabet: &[&str] = match round % 4 {
                    0 => &["a", "b"],
                    1 => &["a", "aa", "b", "ab", "th", "e", "in"],
                    2 => &["x", "\u{4E2D}", "\u{6587}", "\u{E9}"],
                    _ => &["0", "1", " ", "-", "=", "ing", "tion"],
                };
                let len = 2 + rng.below(if round % 8 == 0 { 3_000 } else { 250 });
                let mut piece = Vec::new();
                while piece.len() < len {
                    piece.extend_from_slice(rng.pick(alphabet).as_bytes());
                }
                let expected = tiktoken_rs::byte_pair_split(&piece, &map).len();
                let small = piece.len() < 100;
                assert_eq!(
                    table.merge_count(&piece),
                    expected,
                    "{encoding:?} {piece:?}"
                );
                if small {
                    assert_eq!(table.merge_count_large(&piece), expected, "{piece:?}");
                }
            }
        }
    }

    #[test]
    fn long_runs_count_exactly() {
        for encoding in [
            Encoding::Cl100kBase,
            Encoding::O200kBase,
            Encoding::R50kBase,
        ] {
            for unit in ["a", " ", "\n", "\u{4E2D}", "0", "ab ", " \n"] {
                let text = unit.repeat(20_000 / unit.len());
                assert_counts_match(encoding, &text);
            }
        }
    }
}
