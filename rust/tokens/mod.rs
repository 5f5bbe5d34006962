//! Exact BPE token counting: the encodings we ship, the model table, and counting with the
//! count cache in front of the BPE pass.

mod backtrack;
mod bpe;
pub mod cache;
mod chat;
mod fast;
mod models;
mod pretokenize;
#[cfg(test)]
mod testing;
mod trie;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use tiktoken_rs::CoreBPE;

pub use chat::{count_messages, Message};
pub use models::{encoding_for_model, MODEL_PREFIX_TO_ENCODING, MODEL_TO_ENCODING};

use crate::error::{Error, Result};
use crate::heuristic;

/// The BPE encodings tiktoken-rs embeds, so every one works offline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// tiktoken's `gpt2`: the same ranks and pattern as `r50k_base`, kept under its own name so
    /// `encoding_for_model("gpt2")` answers what tiktoken answers.
    Gpt2,
    R50kBase,
    P50kBase,
    P50kEdit,
    Cl100kBase,
    O200kBase,
    O200kHarmony,
}

impl Encoding {
    pub const ALL: [Encoding; 7] = [
        Encoding::Gpt2,
        Encoding::R50kBase,
        Encoding::P50kBase,
        Encoding::P50kEdit,
        Encoding::Cl100kBase,
        Encoding::O200kBase,
        Encoding::O200kHarmony,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Encoding::Gpt2 => "gpt2",
            Encoding::R50kBase => "r50k_base",
            Encoding::P50kBase => "p50k_base",
            Encoding::P50kEdit => "p50k_edit",
            Encoding::Cl100kBase => "cl100k_base",
            Encoding::O200kBase => "o200k_base",
            Encoding::O200kHarmony => "o200k_harmony",
        }
    }

    pub fn from_name(name: &str) -> Result<Encoding> {
        Encoding::ALL
            .into_iter()
            .find(|e| e.name() == name)
            .ok_or_else(|| Error::UnknownEncoding(name.to_owned()))
    }

    /// A small stable number for cache keys.
    pub(crate) const fn id(self) -> u8 {
        self as u8
    }

    /// tiktoken-rs's tokenizer, built on first use and shared by every caller. Counting does not
    /// need it (the fast path has its own tables, see `fast`): only the fallback and the tests
    /// load it, since it holds about 50 MB for o200k.
    pub fn bpe(self) -> &'static CoreBPE {
        match self {
            Encoding::Gpt2 | Encoding::R50kBase => tiktoken_rs::r50k_base_singleton(),
            Encoding::P50kBase => tiktoken_rs::p50k_base_singleton(),
            Encoding::P50kEdit => tiktoken_rs::p50k_edit_singleton(),
            Encoding::Cl100kBase => tiktoken_rs::cl100k_base_singleton(),
            Encoding::O200kBase => tiktoken_rs::o200k_base_singleton(),
            Encoding::O200kHarmony => tiktoken_rs::o200k_harmony_singleton(),
        }
    }

    /// A tokenizer of our own, to copy the ranks out of and drop (`fast::ranks`).
    fn fresh_bpe(self) -> Option<CoreBPE> {
        match self {
            Encoding::Gpt2 | Encoding::R50kBase => tiktoken_rs::r50k_base(),
            Encoding::P50kBase => tiktoken_rs::p50k_base(),
            Encoding::P50kEdit => tiktoken_rs::p50k_edit(),
            Encoding::Cl100kBase => tiktoken_rs::cl100k_base(),
            Encoding::O200kBase => tiktoken_rs::o200k_base(),
            Encoding::O200kHarmony => tiktoken_rs::o200k_harmony(),
        }
        .ok()
    }

    /// Builds what counting needs now (the first count would otherwise) and returns how long
    /// this call spent (zero when it was already built, by a count or by another thread).
    pub fn warm(self) -> Duration {
        if fast::loaded(self) {
            return Duration::ZERO;
        }
        let started = Instant::now();
        fast::warm(self);
        started.elapsed()
    }
}

/// How a count was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    Tiktoken,
    Heuristic,
}

impl Method {
    pub const fn name(self) -> &'static str {
        match self {
            Method::Tiktoken => "tiktoken",
            Method::Heuristic => "heuristic",
        }
    }
}

/// A token count and how it was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Count {
    pub tokens: usize,
    pub method: Method,
    pub encoding: Option<Encoding>,
}

impl Count {
    pub const fn heuristic(tokens: usize) -> Count {
        Count {
            tokens,
            method: Method::Heuristic,
            encoding: None,
        }
    }
}

/// `len(encoding.encode_ordinary(text))` without ever panicking: special-token text counts as
/// ordinary text, exactly as tiktoken's `encode_ordinary` does.
pub fn count_exact_uncached(encoding: Encoding, text: &str) -> Result<usize> {
    if text.is_empty() {
        return Ok(0);
    }
    // The vendored tokenizer unwraps regex results; a panic must never cross into Python
    // (PyO3 would raise PanicException, which `except Exception` does not catch).
    catch_unwind(AssertUnwindSafe(|| {
        fast::count(encoding, text).unwrap_or_else(|| encoding.bpe().encode_ordinary(text).len())
    }))
    .map_err(|panic| {
        let why = panic
            .downcast_ref::<&str>()
            .map(ToString::to_string)
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic in the BPE engine".to_owned());
        Error::Tokenizer(why)
    })
}

/// The exact count through the count cache (long texts only; see `cache`).
pub fn count_exact(encoding: Encoding, text: &str) -> Result<usize> {
    match cache::lookup(encoding, text) {
        cache::Lookup::Hit(tokens) => Ok(tokens),
        cache::Lookup::Miss(key) => {
            let tokens = count_exact_uncached(encoding, text)?;
            cache::store(key, tokens);
            Ok(tokens)
        }
        cache::Lookup::Bypass => count_exact_uncached(encoding, text),
    }
}

/// Counts `text` with `encoding` when there is one, else with the heuristic. A tokenizer fault
/// degrades to the heuristic (and is counted) instead of failing the caller.
pub fn count_text(encoding: Option<Encoding>, text: &str) -> Count {
    let Some(encoding) = encoding else {
        return Count::heuristic(heuristic::estimate_tokens(text));
    };
    if let Ok(tokens) = count_exact(encoding, text) {
        Count {
            tokens,
            method: Method::Tiktoken,
            encoding: Some(encoding),
        }
    } else {
        cache::note_tokenizer_fault();
        Count::heuristic(heuristic::estimate_tokens(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for encoding in Encoding::ALL {
            assert_eq!(Encoding::from_name(encoding.name()), Ok(encoding));
        }
        assert!(matches!(
            Encoding::from_name("cl200k"),
            Err(Error::UnknownEncoding(_))
        ));
    }

    #[test]
    fn known_counts() {
        // Values from official tiktoken 0.14 (`encode_ordinary`).
        assert_eq!(
            count_exact_uncached(Encoding::O200kBase, "Hello world!"),
            Ok(3)
        );
        assert_eq!(
            count_exact_uncached(Encoding::Cl100kBase, "Hello world!"),
            Ok(3)
        );
        assert_eq!(count_exact_uncached(Encoding::Cl100kBase, ""), Ok(0));
        // Special-token text is ordinary text: several tokens, not one.
        assert!(count_exact_uncached(Encoding::Cl100kBase, "<|endoftext|>").unwrap() > 1);
    }

    #[test]
    fn every_encoding_counts_offline() {
        for encoding in Encoding::ALL {
            let tokens = count_exact_uncached(encoding, "offline works, 123 ÷ 4 = 30.75").unwrap();
            assert!(tokens > 5, "{encoding:?}: {tokens}");
        }
    }

    #[test]
    fn unknown_model_uses_heuristic() {
        let count = count_text(None, "some text for an unknown model");
        assert_eq!(count.method, Method::Heuristic);
        assert_eq!(count.encoding, None);
        assert!(count.tokens > 0);
    }

    #[test]
    fn long_repeated_character_is_not_quadratic() {
        let text = "a".repeat(1_000_000);
        let started = Instant::now();
        let tokens = count_exact_uncached(Encoding::O200kBase, &text).unwrap();
        assert!(tokens > 0);
        assert!(started.elapsed() < Duration::from_secs(20));
    }
}
