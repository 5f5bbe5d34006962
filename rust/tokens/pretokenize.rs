//! tiktoken's pre-tokenizer (the `pat_str` regex that splits text into pieces before BPE), run by
//! a lazy DFA (`regex_automata::hybrid`) instead of `fancy_regex`'s backtracking VM.
//!
//! # Why the pieces are identical to `fancy_regex::Regex::find_iter(pat_str)`
//!
//! tiktoken's patterns use two things a DFA cannot run: possessive quantifiers (`?+`, `++`,
//! `*+`, `{1,3}+`) and the look-ahead `\s+(?!\S)`. Both are rewritten:
//!
//! * Possessive quantifiers become greedy ones. Wherever they occur, giving back what the
//!   quantifier took can never let the rest of its alternative match, so a backtracking engine
//!   finds the same match either way. `\p{L}++`, `\p{N}++`, `\p{N}{1,3}+` and
//!   `[^\s\p{L}\p{N}]++` (r50k) end their alternative: a shorter run matches nothing more.
//!   In cl100k's `[^\s\p{L}\p{N}]++[\r\n]*+`, `[\r\n]` (whitespace) cannot take what the class
//!   before it gives back, and `[\r\n]*+` ends the alternative. In `[^\r\n\p{L}\p{N}]?+\p{L}++`
//!   the optional character is not a letter, so without it `\p{L}` would have to match that same
//!   non-letter. In `\s++$` a shorter whitespace run ends before another whitespace character,
//!   never at `$` (the end of the text, as in fancy_regex: no multi-line mode).
//! * `\s+(?!\S)` and the alternative after it (`\s` in r50k/p50k/cl100k, `\s+` in o200k) become
//!   one pattern `\s+`, reported as its own pattern id. The DFA's leftmost-first match of `\s+`
//!   from position `p` is the maximal whitespace run `[p, e)`. A backtracking engine tries
//!   `\s+(?!\S)` at every length from the longest down: at `e == len` the longest succeeds; else
//!   the character at `e` is `\S`, the longest fails and the next one, `[p, e - last char)`,
//!   succeeds when it is not empty. When the run is one character followed by `\S`, `\s+(?!\S)`
//!   fails and the next alternative (`\s` or `\s+`) matches that one character: `[p, e)` again.
//!   So: drop the last character iff `e < len` and the run has at least two characters.
//!   Alternatives before it keep their priority: the multi-pattern DFA is leftmost-first, like an
//!   alternation `main|\s+` in a backtracking engine.
//!
//! The match is searched anchored at the end of the previous one: every character starts a match
//! of these patterns (letters, numbers, whitespace and "anything else" each have an alternative),
//! so `find_iter` never skips text. Should an anchored search ever find nothing, or fail (a lazy
//! DFA can report `MatchError`s: it never gives up with this configuration and has no quit
//! bytes, but the contract is to not rely on that), the caller falls back to tiktoken-rs's own
//! `encode_ordinary`, so the count stays exact either way.
//!
//! `tests::pieces_equal_fancy_regex*` check all of this against `fancy_regex` (the engine of
//! tiktoken-rs and of official tiktoken) on a corpus and on hundreds of thousands of generated
//! strings.
//!
//! # Unicode tables
//!
//! `regex_automata` takes `\p{..}`, `\s` and case folding from `regex-syntax`, the very crate (one
//! version in Cargo.lock, 0.8.12 = Unicode 16.0.0) from which `fancy_regex` and `regex` in
//! tiktoken-rs take theirs, so both engines classify every character identically, and move
//! together when Cargo.lock does. Official tiktoken's wheel carries its own copy of those tables;
//! `tests/test_pretokenize_oracle.py` counts every code point of planes 0-3 and 14 in context
//! against it (they agree for tiktoken 0.14).

use std::cell::RefCell;
use std::sync::OnceLock;

use regex_automata::hybrid::dfa::{Cache, DFA};
use regex_automata::nfa::thompson;
use regex_automata::util::syntax;
use regex_automata::{Anchored, Input, MatchKind};

/// Which of tiktoken's pre-tokenizer patterns an encoding uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Scheme {
    /// gpt2, r50k_base, p50k_base, p50k_edit.
    R50k,
    Cl100k,
    /// o200k_base, o200k_harmony.
    O200k,
}

/// tiktoken's `pat_str`s, verbatim (the reference the tests compare against).
#[cfg(test)]
const R50K_PAT: &str =
    r"'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s";
#[cfg(test)]
const CL100K_PAT: &str = r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s";
#[cfg(test)]
const O200K_PAT: &str = concat!(
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"|\p{N}{1,3}",
    r"| ?[^\s\p{L}\p{N}]+[\r\n/]*",
    r"|\s*[\r\n]+",
    r"|\s+(?!\S)",
    r"|\s+",
);

/// The DFA form: every alternative before `\s+(?!\S)` (possessive quantifiers made greedy).
const R50K_MAIN: &str = r"'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+$";
const CL100K_MAIN: &str = r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s+$|\s*[\r\n]";
const O200K_MAIN: &str = concat!(
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"|\p{N}{1,3}",
    r"| ?[^\s\p{L}\p{N}]+[\r\n/]*",
    r"|\s*[\r\n]+",
);
/// Pattern 1 of every scheme: `\s+(?!\S)` and the whitespace alternative after it.
const WHITESPACE: &str = r"\s+";

impl Scheme {
    #[cfg(test)]
    const ALL: [Scheme; 3] = [Scheme::R50k, Scheme::Cl100k, Scheme::O200k];

    const fn index(self) -> usize {
        self as usize
    }

    /// tiktoken's pattern for this scheme.
    #[cfg(test)]
    const fn tiktoken_pattern(self) -> &'static str {
        match self {
            Scheme::R50k => R50K_PAT,
            Scheme::Cl100k => CL100K_PAT,
            Scheme::O200k => O200K_PAT,
        }
    }

    const fn main_pattern(self) -> &'static str {
        match self {
            Scheme::R50k => R50K_MAIN,
            Scheme::Cl100k => CL100K_MAIN,
            Scheme::O200k => O200K_MAIN,
        }
    }

    /// The shared pre-tokenizer, built on first use (a lazy DFA builds in well under a
    /// millisecond: its states are made while searching). `None` if it could not be built,
    /// which the callers treat as "use tiktoken-rs".
    pub(crate) fn pretokenizer(self) -> Option<&'static Pretokenizer> {
        static BUILT: [OnceLock<Option<Pretokenizer>>; 3] = [const { OnceLock::new() }; 3];
        BUILT[self.index()]
            .get_or_init(|| Pretokenizer::build(self))
            .as_ref()
    }
}

/// The DFA search failed or found no match where one must start: count another way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SplitFailed;

pub(crate) struct Pretokenizer {
    scheme: Scheme,
    dfa: DFA,
}

thread_local! {
    /// One lazy-DFA cache per scheme and thread, for the scheme's shared `Pretokenizer`: searches
    /// need a mutable cache, and a per-thread one is never contended (a shared pool would make
    /// threads of a free-threaded CPython wait on each other). It grows up to the DFA's cache
    /// capacity (2 MiB; a few hundred KiB for typical text) and lives as long as the thread.
    static CACHES: RefCell<[Option<Cache>; 3]> = const { RefCell::new([None, None, None]) };
}

impl Pretokenizer {
    fn build(scheme: Scheme) -> Option<Pretokenizer> {
        Self::build_with(scheme, DFA::config())
    }

    /// Only `Scheme::pretokenizer` may build the one `Pretokenizer` of each scheme that `split`
    /// uses: the thread-local caches are per scheme and belong to that DFA.
    fn build_with(
        scheme: Scheme,
        config: regex_automata::hybrid::dfa::Config,
    ) -> Option<Pretokenizer> {
        let dfa = DFA::builder()
            .configure(config.match_kind(MatchKind::LeftmostFirst))
            .syntax(syntax::Config::new().unicode(true).utf8(true))
            .thompson(thompson::Config::new().utf8(true))
            .build_many(&[scheme.main_pattern(), WHITESPACE])
            .ok()?;
        Some(Pretokenizer { scheme, dfa })
    }

    /// Drops this thread's caches (after a panic mid-search, which would be a bug, a cache may not
    /// be worth trusting).
    pub(crate) fn forget_thread_caches() {
        let _ = CACHES.try_with(|caches| {
            if let Ok(mut caches) = caches.try_borrow_mut() {
                *caches = [None, None, None];
            }
        });
    }

    /// Calls `piece` with each piece of `text`, in order, exactly as tiktoken's regex splits it.
    /// Stops at the first `Err` (and then `piece` may have seen a prefix of the pieces).
    pub(crate) fn split(&self, text: &str, mut piece: impl FnMut(&str)) -> Result<(), SplitFailed> {
        let mut run = |cache: &mut Cache| self.split_with(cache, text, &mut piece);
        let index = self.scheme.index();
        let done = CACHES.try_with(|caches| {
            let mut caches = caches.try_borrow_mut().ok()?;
            Some(run(
                caches[index].get_or_insert_with(|| self.dfa.create_cache())
            ))
        });
        match done {
            Ok(Some(result)) => result,
            // This thread's cache is in use (re-entered) or already torn down: a fresh one.
            _ => run(&mut self.dfa.create_cache()),
        }
    }

    fn split_with(
        &self,
        cache: &mut Cache,
        text: &str,
        piece: &mut impl FnMut(&str),
    ) -> Result<(), SplitFailed> {
        let mut start = 0;
        while start < text.len() {
            let input = Input::new(text).range(start..).anchored(Anchored::Yes);
            let Ok(Some(found)) = self.dfa.try_search_fwd(cache, &input) else {
                return Err(SplitFailed);
            };
            let mut end = found.offset();
            if found.pattern().as_usize() == 1 && end < text.len() {
                // `\s+(?!\S)`: give back the last whitespace character unless it is the only one
                // (see the module docs).
                let mut run = text.get(start..end).ok_or(SplitFailed)?.chars();
                if let Some(last) = run.next_back() {
                    if !run.as_str().is_empty() {
                        end -= last.len_utf8();
                    }
                }
            }
            if end <= start {
                return Err(SplitFailed);
            }
            piece(text.get(start..end).ok_or(SplitFailed)?);
            start = end;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::testing::{generate, Rng};

    /// The pieces of `text` by `fancy_regex` over tiktoken's own pattern (what tiktoken-rs and
    /// official tiktoken run), as `(start, end)` byte offsets; `None` if fancy_regex errors
    /// (e.g. its backtracking limit), which the generated strings are too short to hit.
    fn reference_pieces(regex: &fancy_regex::Regex, text: &str) -> Option<Vec<(usize, usize)>> {
        regex
            .find_iter(text)
            .map(|m| m.ok().map(|m| (m.start(), m.end())))
            .collect()
    }

    fn our_pieces(scheme: Scheme, text: &str) -> Vec<(usize, usize)> {
        let pretokenizer = scheme.pretokenizer().expect("the DFA builds");
        let mut pieces = Vec::new();
        let base = text.as_ptr() as usize;
        pretokenizer
            .split(text, |piece| {
                let start = piece.as_ptr() as usize - base;
                pieces.push((start, start + piece.len()));
            })
            .expect("the DFA search succeeds");
        pieces
    }

    struct Oracle {
        regexes: Vec<(Scheme, fancy_regex::Regex)>,
    }

    impl Oracle {
        fn new() -> Oracle {
            let regexes = Scheme::ALL
                .into_iter()
                .map(|scheme| {
                    let regex = fancy_regex::Regex::new(scheme.tiktoken_pattern()).expect("valid");
                    (scheme, regex)
                })
                .collect();
            Oracle { regexes }
        }

        /// Panics with a readable report when any scheme splits `text` differently.
        fn check(&self, text: &str) {
            for (scheme, regex) in &self.regexes {
                let Some(expected) = reference_pieces(regex, text) else {
                    continue;
                };
                let ours = our_pieces(*scheme, text);
                if ours != expected {
                    let show = |pieces: &[(usize, usize)]| -> Vec<String> {
                        pieces
                            .iter()
                            .map(|&(a, b)| format!("{:?}", &text[a..b]))
                            .collect()
                    };
                    panic!(
                        "{scheme:?} splits {text:?} differently:\n  fancy_regex {:?}\n  ours        {:?}",
                        show(&expected),
                        show(&ours)
                    );
                }
            }
        }
    }

    #[test]
    fn patterns_build() {
        for scheme in Scheme::ALL {
            assert!(scheme.pretokenizer().is_some(), "{scheme:?}");
        }
    }

    #[test]
    fn pieces_equal_fancy_regex_on_handpicked_texts() {
        let oracle = Oracle::new();
        let texts = [
            "",
            " ",
            "  ",
            "a",
            "Hello world!",
            "Hello  world",
            "Hello   world  ",
            "x  \n  y",
            "  \n\n  \r\n\t z",
            "\n",
            "\r\n\r\n",
            " \u{A0}\u{3000}x",
            "\u{3000}\u{3000}",
            "it's I'LL we'Re they've he'd 'S ' s",
            "don\u{2019}t",
            "HTTPServer parseJSON camelCase ALLCAPS'S DŽungla Džungla",
            "1234567 12 1 \u{661}\u{662}\u{663}\u{664} \u{FF11}\u{FF12}\u{FF13}\u{FF14}",
            "a/b//c/\n/ ///x",
            "<|endoftext|>hi<|fim_prefix|>",
            "\u{1F468}\u{200D}\u{1F469}\u{200D}\u{1F467} \u{2764}\u{FE0F}  \u{1F600}",
            "e\u{301}\u{301} \u{301}x \u{301}",
            "\u{0}\u{1}  \u{1B}[0m",
            "def f(x):\n    return x  # comment\n\n\n    \n",
            "trailing spaces   ",
            "trailing newline and spaces \n   ",
            "\u{17F}\u{212A} '\u{17F} '\u{212A}",
        ];
        for text in texts {
            oracle.check(text);
        }
        for (name, text) in [
            ("mod.rs", include_str!("mod.rs")),
            ("models.rs", include_str!("models.rs")),
            (
                "golden",
                include_str!("../../tests/data/token_golden.jsonl"),
            ),
        ] {
            oracle.check(text);
            for line in text.lines() {
                oracle.check(line);
            }
            assert!(!text.is_empty(), "{name}");
        }
    }

    /// Generated strings over `testing::ALPHABET`, each split by all three schemes: 70,000 of up
    /// to 24 items and 7,000 of up to 200 (231,000 splits compared, about 15 s unoptimized); ten
    /// times as many in an optimized build (`cargo test --release`).
    #[test]
    fn pieces_equal_fancy_regex_on_generated_texts() {
        let scale = if cfg!(debug_assertions) { 1 } else { 10 };
        let oracle = Oracle::new();
        let mut rng = Rng(0x5EED_0001);
        for _ in 0..70_000 * scale {
            oracle.check(&generate(&mut rng, 24));
        }
        for _ in 0..7_000 * scale {
            oracle.check(&generate(&mut rng, 200));
        }
    }

    /// Whitespace runs are where the look-ahead rewrite lives: every string of up to 5 items (7
    /// in an optimized build) over a whitespace-heavy alphabet, exhaustively.
    #[test]
    fn pieces_equal_fancy_regex_on_all_short_whitespace_mixes() {
        const SMALL: &[&str] = &["a", " ", "\n", "\r", "\t", "\u{3000}", ".", "'s"];
        let oracle = Oracle::new();
        let mut text = String::new();
        let max_len = if cfg!(debug_assertions) { 5 } else { 7 };
        let mut counter = [0usize; 7];
        for len in 0..=max_len {
            counter.fill(0);
            loop {
                text.clear();
                for &i in &counter[..len] {
                    text.push_str(SMALL[i]);
                }
                oracle.check(&text);
                // Next combination (odometer).
                let mut k = 0;
                while k < len {
                    counter[k] += 1;
                    if counter[k] < SMALL.len() {
                        break;
                    }
                    counter[k] = 0;
                    k += 1;
                }
                if k == len {
                    break;
                }
            }
        }
    }

    /// A search that fails (here a lazy DFA made to give up at once) makes `split` fail instead
    /// of inventing pieces, so the caller falls back.
    #[test]
    fn a_failing_search_is_an_error() {
        let config = DFA::config()
            .cache_capacity(0)
            .skip_cache_capacity_check(true)
            .minimum_cache_clear_count(Some(0));
        let pretokenizer = Pretokenizer::build_with(Scheme::O200k, config).expect("builds");
        let mut cache = pretokenizer.dfa.create_cache();
        // Many distinct characters need many DFA states: more than the smallest cache holds.
        let text: String = (0x100..0x3000).filter_map(char::from_u32).collect();
        let result = pretokenizer.split_with(&mut cache, &text, &mut |_| {});
        assert_eq!(result, Err(SplitFailed));
    }

    /// `split` inside `split` (the thread's cache is then in use) and on many threads at once.
    #[test]
    fn split_is_reentrant_and_thread_safe() {
        let text = "Hello,  world!\n\tnested  splits  \u{3000}x";
        let expected = our_pieces(Scheme::Cl100k, text);
        let pretokenizer = Scheme::Cl100k.pretokenizer().expect("builds");
        let mut inner = Vec::new();
        pretokenizer
            .split(text, |_| inner.push(our_pieces(Scheme::Cl100k, text)))
            .expect("splits");
        assert!(inner.iter().all(|pieces| *pieces == expected));
        Pretokenizer::forget_thread_caches();
        assert_eq!(our_pieces(Scheme::Cl100k, text), expected);
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..8)
                .map(|_| {
                    scope.spawn(|| (0..200).all(|_| our_pieces(Scheme::Cl100k, text) == expected))
                })
                .collect();
            for worker in workers {
                assert!(worker.join().expect("no panic"));
            }
        });
    }

    #[test]
    fn long_runs_split_in_linear_time() {
        for scheme in Scheme::ALL {
            for unit in ["a", " ", "\n", " \n", "\u{4E2D}", "\u{1F600}", "0", "  x"] {
                let text = unit.repeat(1_000_000 / unit.len());
                let started = std::time::Instant::now();
                let pieces = our_pieces(scheme, &text);
                assert!(!pieces.is_empty());
                assert_eq!(pieces.last().map(|p| p.1), Some(text.len()));
                assert!(
                    started.elapsed() < std::time::Duration::from_secs(10),
                    "{scheme:?} {unit:?}: {:?}",
                    started.elapsed()
                );
            }
        }
    }
}
