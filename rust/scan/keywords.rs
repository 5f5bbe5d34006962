//! The scanners' keyword prefilters: each rule names keywords, one pass over the text finds
//! them, and a rule's automaton runs only on windows around its keywords' hits.
//!
//! Two searches over the same kind of table (keywords, each owned by some rules):
//! - `Substrings`: an Aho-Corasick DFA, keywords anywhere (secrets: `key` inside `api_key`);
//! - `WordStarts`: keywords where a word starts (injection rules, whose matches begin their
//!   words with `\b`): a table of the keywords' first two bytes, looked up at word starts
//!   only. It is a few times faster than the DFA on prose (an Aho-Corasick DFA of 430
//!   case-insensitive keywords is 2.5 MB: a cache miss every few bytes), and common keywords
//!   no longer hit inside other words (`dan` in `abundant`).

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};

use super::swar::{between, equal, lowercase, word_at, HIGHS, ONES};

/// The distinct keywords of a rule table and the rules (by index) that own each.
fn gather<'a>(rules: impl Iterator<Item = &'a [&'a str]>) -> (Vec<&'a str>, Vec<Vec<usize>>) {
    let mut words: Vec<&str> = Vec::new();
    let mut owners: Vec<Vec<usize>> = Vec::new();
    for (index, own) in rules.enumerate() {
        for word in own {
            match words.iter().position(|w| w == word) {
                Some(at) => owners[at].push(index),
                None => {
                    words.push(word);
                    owners.push(vec![index]);
                }
            }
        }
    }
    (words, owners)
}

/// Keywords anywhere in the text, ignoring ASCII case.
#[derive(Debug)]
pub struct Substrings {
    automaton: AhoCorasick,
    /// The rules each keyword (by pattern id) stands for: its own and those of the keywords it
    /// contains (one leftmost-longest pass, much faster than reporting every keyword at every
    /// position, reports the longer keyword only).
    rules: Vec<Vec<usize>>,
}

impl Substrings {
    /// `rules` yields each rule's keywords, in rule order.
    pub fn new<'a>(rules: impl Iterator<Item = &'a [&'a str]>) -> Result<Substrings, String> {
        let (words, owners) = gather(rules);
        let lower: Vec<String> = words.iter().map(|w| w.to_ascii_lowercase()).collect();
        let closure = lower
            .iter()
            .map(|outer| {
                let mut rules: Vec<usize> = lower
                    .iter()
                    .enumerate()
                    .filter(|(_, inner)| outer.contains(inner.as_str()))
                    .flat_map(|(at, _)| owners[at].iter().copied())
                    .collect();
                rules.sort_unstable();
                rules.dedup();
                rules
            })
            .collect();
        let automaton = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::LeftmostLongest)
            .kind(Some(AhoCorasickKind::DFA))
            .build(&words)
            .map_err(|e| e.to_string())?;
        Ok(Substrings {
            automaton,
            rules: closure,
        })
    }

    /// Each hit, in order: its start, its end and the rules it stands for.
    pub fn hits<'s>(&'s self, text: &'s str) -> impl Iterator<Item = (usize, usize, &'s [usize])> {
        self.automaton.find_iter(text).map(|hit| {
            (
                hit.start(),
                hit.end(),
                self.rules[hit.pattern().as_usize()].as_slice(),
            )
        })
    }
}

/// Keywords (at least two bytes each) where a word starts: at a letter or digit with no ASCII
/// word character (letter, digit, `_`) before it, as `\b` sees one. A keyword that starts with
/// anything else (punctuation, a non-ASCII character) is found wherever it occurs. ASCII case
/// is ignored.
///
/// Candidates come eight bytes at a time (word starts, and bytes that are neither word
/// characters, blanks nor UTF-8 continuation bytes); each is looked up by its first two to
/// four bytes (a keyword's "key": four bytes, or the whole keyword when shorter) in a bit
/// filter, so most words of prose cost one probe.
#[derive(Debug)]
pub struct WordStarts {
    /// Per byte, the key lengths (bit `n` for `n` bytes) of the keywords that start with it
    /// (either case): zero for most bytes.
    key_lengths: [u8; 256],
    /// One bit per key (hashed to 16 bits): 8 KB, so rejecting a word stays in L1.
    filter: Box<[u64; 1024]>,
    /// The keywords (indices into `words`) with each key.
    by_key: rustc_hash::FxHashMap<u32, Vec<usize>>,
    words: Vec<Keyword>,
    /// The rules each keyword stands for.
    rules: Vec<Vec<usize>>,
}

/// A keyword's first eight bytes (ASCII-lowercased, little-endian) and which of them count:
/// one masked compare against the text's next eight bytes.
#[derive(Debug)]
struct Keyword {
    head: u64,
    mask: u64,
    /// The bytes after the first eight, ASCII-lowercased.
    tail: Box<[u8]>,
}

const KEY_BYTES: usize = 4;

/// The first `length` bytes of a little-endian word.
fn key(word: u64, length: usize) -> u32 {
    (word & (u64::MAX >> (64 - 8 * length))) as u32
}

fn filter_bit(key: u32) -> (usize, u64) {
    let hash = key.wrapping_mul(0x9E37_79B1) >> 16;
    ((hash >> 6) as usize, 1 << (hash & 63))
}

impl WordStarts {
    /// `rules` yields each rule's keywords, in rule order.
    pub fn new<'a>(rules: impl Iterator<Item = &'a [&'a str]>) -> Result<WordStarts, String> {
        let (words, rules) = gather(rules);
        let mut key_lengths = [0u8; 256];
        let mut filter = Box::new([0u64; 1024]);
        let mut by_key: rustc_hash::FxHashMap<u32, Vec<usize>> = rustc_hash::FxHashMap::default();
        let mut lowered = Vec::with_capacity(words.len());
        for (index, word) in words.iter().enumerate() {
            let lower = word.as_bytes().to_ascii_lowercase();
            if lower.len() < 2 || lower[0].is_ascii_whitespace() || lower.contains(&0) {
                return Err(format!(
                    "keyword {word:?}: a keyword has two bytes or more and starts with no blank"
                ));
            }
            let length = lower.len().min(KEY_BYTES);
            for first in [lower[0], lower[0].to_ascii_uppercase()] {
                key_lengths[usize::from(first)] |= 1 << length;
            }
            let head = word_at(&lower, 0);
            let (slot, bit) = filter_bit(key(head, length));
            filter[slot] |= bit;
            by_key.entry(key(head, length)).or_default().push(index);
            let head_length = lower.len().min(8);
            lowered.push(Keyword {
                head,
                mask: u64::MAX >> (64 - 8 * head_length),
                tail: lower[head_length..].into(),
            });
        }
        Ok(WordStarts {
            key_lengths,
            filter,
            by_key,
            words: lowered,
            rules,
        })
    }

    /// Calls `hit(start, end, rules)` for each keyword found, in order of start.
    pub fn for_each_hit(&self, text: &str, mut hit: impl FnMut(usize, usize, &[usize])) {
        let bytes = text.as_bytes();
        let mut word_before = 0;
        let mut lowered = lowercase(word_at(bytes, 0));
        for chunk_start in (0..bytes.len()).step_by(8) {
            let chunk = word_at(bytes, chunk_start);
            let lowered_next = lowercase(word_at(bytes, chunk_start + 8));
            // `| 0x20` folds capitals onto small letters and nothing else onto them.
            let alphanumeric =
                between(chunk, b'0', b'9') | between(chunk | (ONES * 0x20), b'a', b'z');
            let word = alphanumeric | equal(chunk, b'_');
            let word_start = alphanumeric & !(word << 8 | word_before);
            word_before = word >> 56;
            let continuation = chunk & HIGHS & !(chunk << 1);
            let other = !alphanumeric & !between(chunk, 0, b' ') & !continuation & HIGHS;
            let mut candidates = word_start | other;
            while candidates != 0 {
                let shift = candidates.trailing_zeros() & !7;
                candidates &= candidates - 1;
                let lengths = self.key_lengths[(chunk >> shift) as u8 as usize];
                if lengths != 0 {
                    // The eight bytes from the candidate on, lowercased.
                    let next = if shift == 0 {
                        lowered
                    } else {
                        lowered >> shift | lowered_next << (64 - shift)
                    };
                    let at = chunk_start + shift as usize / 8;
                    self.hits_at(bytes, at, next, lengths, &mut hit);
                }
            }
            lowered = lowered_next;
        }
    }

    fn hits_at(
        &self,
        bytes: &[u8],
        at: usize,
        next: u64,
        lengths: u8,
        hit: &mut impl FnMut(usize, usize, &[usize]),
    ) {
        let mut lengths = lengths;
        while lengths != 0 {
            let length = lengths.trailing_zeros() as usize;
            lengths &= lengths - 1;
            let key = key(next, length);
            let (slot, bit) = filter_bit(key);
            if self.filter[slot] & bit == 0 {
                continue;
            }
            for &keyword in self.by_key.get(&key).into_iter().flatten() {
                let word = &self.words[keyword];
                if next & word.mask != word.head {
                    continue;
                }
                // Zeros past the text's end never match a keyword's bytes: the head is in it.
                let head_end = at + (64 - word.mask.leading_zeros() as usize) / 8;
                let end = head_end + word.tail.len();
                if word.tail.is_empty()
                    || bytes
                        .get(head_end..end)
                        .is_some_and(|found| found.eq_ignore_ascii_case(&word.tail))
                {
                    hit(at, end, &self.rules[keyword]);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(keywords: &[&'static str], text: &str) -> Vec<(usize, usize, Vec<usize>)> {
        let index = WordStarts::new(std::iter::once(keywords)).unwrap();
        let mut hits = Vec::new();
        index.for_each_hit(text, |start, end, rules| {
            hits.push((start, end, rules.to_vec()));
        });
        hits
    }

    #[test]
    fn word_starts_only_unless_the_keyword_opens_with_punctuation() {
        let keywords = &["dan", "ignor", "ignore", "<|", "_of_turn>", "忽略"];
        let text = "Abundant DAN, ignore x_dan <|im_start|> <end_of_turn> 请忽略";
        let starts: Vec<(usize, usize)> = found(keywords, text)
            .into_iter()
            .map(|(start, end, _)| (start, end))
            .collect();
        let dan = text.find("DAN").unwrap();
        let ignore = text.find("ignore").unwrap();
        let template = text.find("<|").unwrap();
        let turn = text.find("_of_turn").unwrap();
        let chinese = text.find("忽略").unwrap();
        assert_eq!(
            starts,
            vec![
                (dan, dan + 3),
                (ignore, ignore + 5),
                (ignore, ignore + 6),
                (template, template + 2),
                (turn, turn + 9),
                (chinese, chinese + 6),
            ]
        );
    }

    /// The definition, one position at a time.
    fn naive(keywords: &[&str], text: &str) -> Vec<(usize, usize)> {
        let bytes = text.as_bytes();
        let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
        let mut hits = Vec::new();
        for at in 0..bytes.len() {
            for keyword in keywords {
                let k = keyword.as_bytes();
                let opens = !k[0].is_ascii_alphanumeric() || at == 0 || !word(bytes[at - 1]);
                let found = bytes
                    .get(at..at + k.len())
                    .is_some_and(|b| b.eq_ignore_ascii_case(k));
                if opens && found && !hits.contains(&(at, at + k.len())) {
                    hits.push((at, at + k.len()));
                }
            }
        }
        hits
    }

    #[test]
    fn same_hits_as_the_definition_at_every_offset_and_edge() {
        let keywords = &[
            "you are",
            "your instructions",
            "dan",
            "ai:",
            "<|",
            "](",
            "system_prompt",
            "ignor",
            "忽略",
            "übergehe",
            "🔒",
        ];
        let index = WordStarts::new(std::iter::once(&keywords[..])).unwrap();
        for filler in ["", "x", "ab ", "éé", "_", "q.", "\u{2014}"] {
            for keyword in keywords {
                for pad in 0..17 {
                    let mut text = filler.repeat(pad % 5);
                    text.push_str(&" ".repeat(pad));
                    text.push_str(&keyword.to_ascii_uppercase());
                    text.push_str(filler);
                    text.push(' ');
                    text.push_str(keyword);
                    let mut hits = Vec::new();
                    index.for_each_hit(&text, |start, end, _| {
                        if !hits.contains(&(start, end)) {
                            hits.push((start, end));
                        }
                    });
                    assert_eq!(hits, naive(keywords, &text), "{text:?}");
                }
            }
        }
    }

    #[test]
    fn keywords_name_their_rules_and_must_not_open_with_a_blank() {
        let index = WordStarts::new([&["mode", "dan"][..], &["dan"][..]].into_iter()).unwrap();
        let mut rules = Vec::new();
        index.for_each_hit("Dan mode", |_, _, owners| rules.push(owners.to_vec()));
        assert_eq!(rules, vec![vec![0, 1], vec![0]]);
        assert!(WordStarts::new(std::iter::once(&[" mode"][..])).is_err());
        assert!(WordStarts::new(std::iter::once(&["x"][..])).is_err());
    }
}
