//! Token-count estimate for models whose tokenizer is unknown.
//!
//! [`estimate_tokens`] makes one pass over the text's chars, without allocating. It imitates the
//! two stages of a modern BPE tokenizer such as `o200k_base`:
//!
//! 1. **Pre-tokenizer.** `o200k_base` first splits text into pieces with a regex:
//!    - letter runs, split where a lowercase letter is followed by an uppercase one, with one
//!      optional leading space or punctuation char;
//!    - groups of 1-3 digits;
//!    - punctuation runs, with an optional leading space and any trailing newlines;
//!    - whitespace runs, where the last space before a word joins the word.
//!
//!    A state machine here follows the same rules, so it sees every piece.
//! 2. **BPE inside a piece.** Most pieces are one token, and long or rare ones are split
//!    further. So a piece costs `max(1, sum of its chars' weights)` tokens, where the weight of a
//!    char depends on its class. Short English words get the 1-token floor. Longer words,
//!    non-Latin words, runs of CJK and emoji are charged per char.
//!
//! Weights are in units of 1/1024 token ([`UNIT`]). `scripts/calibrate_heuristic.py` fitted
//! the sixteen `W_*` weights other than `W_MARK`. It uses a coordinate search on the mean
//! squared relative error against the official `o200k_base` counts of
//! `tests/data/heuristic_corpus.jsonl`, and `tests/data/heuristic_errors.json` holds the
//! resulting error report. The script also checks that its Python mirror of this file gives the
//! same estimates. The other constants are set by hand or measured, not fitted:
//! - `ASCII_LONG_AFTER` and `RUN_MIN` are set by hand, because the loss is flat for 8-16 and
//!   2-4.
//! - `W_MARK`, the whitespace weights and [`RUN_LOG2`] are read off the `o200k_base`
//!   vocabulary, which has tokens for 128 spaces, 16 newlines, 64 dashes, 8 `a`s and so on.
//!
//! Known weak spots:
//! - Very common phrases that are one token, in languages that use no spaces. `こんにちは` is 1
//!   token but is estimated at 3.
//! - Scripts that `o200k_base` barely covers. Ethiopic, for example, costs several times the
//!   "other script" rate.
//! - Base64, which is underestimated by about a third.
//!
//! Ideographs that are not one token (most of the 20,992 in U+4E00..U+9FFF, and all others) are
//! told apart by a 2.6 KB bitmap read off the vocabulary, so a text of rare ideographs is no
//! longer estimated at a third of its count.

/// Fixed-point scale: 1024 units are one token.
const UNIT: u64 = 1024;

/// ASCII letter in the first [`ASCII_LONG_AFTER`] letters of a word (0.146 tokens).
/// So English words of up to about 7 letters cost the 1-token floor.
const W_ASCII: u64 = 150;
/// ASCII letter after the first [`ASCII_LONG_AFTER`] letters of a word (0.27): long
/// identifiers, URLs and random strings split into many short tokens.
const W_ASCII_LONG: u64 = 276;
/// Position in a word after which ASCII letters use [`W_ASCII_LONG`].
const ASCII_LONG_AFTER: usize = 12;
/// Accented Latin letter, such as é, ß, ł or ư (0.80). It usually breaks a word into more tokens.
const W_LATIN: u64 = 816;
/// Combining diacritic, as in NFD text (1 token, measured and not fitted).
const W_MARK: u64 = UNIT;
/// Russian-alphabet Cyrillic letter (0.27). o200k has many Russian words.
const W_CYRILLIC: u64 = 274;
/// Arabic-script letter (0.39).
const W_ARABIC: u64 = 356;
/// Indic letter or vowel sign, for Devanagari, Bengali, Tamil and other scripts (0.35).
const W_INDIC: u64 = 356;
/// Letters of alphabets with less vocabulary (0.40). These include Greek, Hebrew, Thai, Lao,
/// Khmer, Myanmar, Armenian, Georgian and unknown scripts. Cyrillic also uses this weight once a
/// non-Russian letter (such as Ukrainian і/ї/є/ґ or Serbian ј/љ/њ) has appeared in the text.
const W_OTHER_SCRIPT: u64 = 410;
/// Hangul syllable or jamo (0.70). Most Korean syllables are a token of their own.
const W_HANGUL: u64 = 716;
/// Hiragana or katakana (0.43). Kana particles and endings merge well.
const W_KANA: u64 = 444;
/// Han ideograph in Chinese text (0.68). Common two-char words are one token.
const W_HAN: u64 = 692;
/// Han ideograph of U+4E00..U+9FFF that is not one o200k token: only 2,515 of those 20,992 are
/// (`HAN_SINGLE_TOKEN`), the others cost 2.05 tokens on average. Read off the vocabulary, not
/// fitted, as are the next two.
const W_HAN_RARE: u64 = 2096;
/// Han ideograph of Extension A or the compatibility block, none of them a token (2.98).
const W_HAN_EXT: u64 = 3052;
/// Han ideograph outside the BMP, four UTF-8 bytes and none of them a token (3.96).
const W_HAN_SUPPLEMENTARY: u64 = 4058;
/// Bit `c - 0x4E00` (little-endian bit order) is set when the ideograph `c` is one o200k token.
/// 2.6 KB, written by `scripts/calibrate_heuristic.py --han-table`.
static HAN_SINGLE_TOKEN: &[u8; 2624] = include_bytes!("heuristic_han.bin");

fn han_single_token(c: char) -> bool {
    let i = (u32::from(c) - 0x4E00) as usize;
    HAN_SINGLE_TOKEN[i / 8] >> (i % 8) & 1 == 1
}

/// Han ideograph once kana has appeared, meaning Japanese text (1.07). Kanji compounds
/// split more than Chinese words do.
const W_HAN_JA: u64 = 1096;
/// ASCII punctuation (0.375). Runs of up to about 3 (`");`, `::`, `*/`) are one token.
const W_PUNCT: u64 = 384;
/// Non-ASCII punctuation or symbol in the BMP, such as `，。—“”→★©`, and ASCII control
/// chars (1.02).
const W_SYMBOL: u64 = 1048;
/// Emoji or other symbol outside the BMP (1.49). Common emoji are one token, and newer ones
/// are 2-3 byte-level tokens.
const W_EMOJI: u64 = 1524;
/// Regional indicator (half of a flag), skin-tone modifier or tag char (2.06). These are
/// byte-level tokens.
const W_EMOJI_MOD: u64 = 2112;
/// A newline that ends a punctuation piece, as in `):\n` or `{\n` (0.71).
const W_NL_AFTER_PUNCT: u64 = 724;

/// Whitespace weights are measured and not fitted. o200k has single tokens for runs of up to
/// 128 spaces, and up to 16 tabs or newlines. A CR counts for half of a CRLF, and CRLF runs
/// are 4 pairs per token.
const WS_SPACE: u64 = UNIT / 128;
const WS_TAB: u64 = UNIT / 16;
const WS_LF: u64 = UNIT / 16;
const WS_CR: u64 = UNIT / 8;
const WS_OTHER: u64 = UNIT;

/// A run of more than this many copies of one char counts as a repeated run.
const RUN_MIN: usize = 3;
/// For each ASCII char from `!` (33) to `~` (126), the log2 of how many copies one o200k token
/// holds in a long run. The values are read off the vocabulary: `=`, `-`, `*` and `_` have
/// tokens of 64 copies, `a` has 8 and `z` has 2. In a repeated run, each copy of such a char
/// weighs `UNIT >> RUN_LOG2`. Each copy of any other char, such as 中, ж or 😀, weighs
/// one token, because o200k has almost no merges for those runs.
const RUN_LOG2: &[u8; 94] =
    b"4262512226526662222222222443633332212311211221211111111421121361322223122123213112211213211215";

/// Estimates how many tokens `text` uses.
///
/// The estimate is for a BPE tokenizer like `o200k_base`. It returns 0 for empty text and at
/// least 1 for other text. It is O(n), makes one pass over the chars, never allocates and
/// never panics.
pub fn estimate_tokens(text: &str) -> usize {
    if text.is_empty() {
        return 0;
    }
    let mut est = Estimator::default();
    for c in text.chars() {
        est.feed(c);
    }
    est.finish()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Case {
    Caseless,
    Upper,
    Lower,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Script {
    Ascii,
    Latin,
    Mark,
    /// Variation selectors. They join an emoji's piece and cost nothing.
    ZeroWidth,
    Cyrillic,
    CyrillicExt,
    Arabic,
    Indic,
    Other,
    Hangul,
    Kana,
    Han,
    /// An ideograph that is several o200k tokens.
    HanRare,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Any letter or mark (regex `\p{L}\p{M}`).
    Letter(Script, Case),
    /// Regex `\p{N}`. ASCII digits and the common non-ASCII ones.
    Digit,
    /// Neither letter, digit nor whitespace, with its weight.
    Punct(u64),
    /// Horizontal whitespace, with its weight.
    Space(u64),
    /// `\r` or `\n`, with its weight.
    Newline(u64),
}

fn classify(c: char) -> Class {
    use Class::{Digit, Letter, Newline, Punct, Space};
    if c.is_ascii() {
        return match c {
            'a'..='z' => Letter(Script::Ascii, Case::Lower),
            'A'..='Z' => Letter(Script::Ascii, Case::Upper),
            '0'..='9' => Digit,
            '\n' => Newline(WS_LF),
            '\r' => Newline(WS_CR),
            ' ' => Space(WS_SPACE),
            '\t' => Space(WS_TAB),
            '\x0b' | '\x0c' => Space(WS_OTHER),
            '\0'..='\x1f' | '\x7f' => Punct(W_SYMBOL),
            _ => Punct(W_PUNCT),
        };
    }
    let o = u32::from(c);
    let letter = |s| Letter(s, Case::Caseless);
    match o {
        0x85 | 0xA0 | 0x1680 | 0x2000..=0x200A | 0x2028 | 0x2029 | 0x202F | 0x205F | 0x3000 => {
            Space(WS_OTHER)
        }
        0x660..=0x669
        | 0x6F0..=0x6F9
        | 0x966..=0x96F
        | 0xFF10..=0xFF19
        | 0xB2
        | 0xB3
        | 0xB9
        | 0xBC..=0xBE => Digit,
        // Latin-1 symbols, and the punctuation of Armenian, Hebrew, Arabic, Devanagari and Thai.
        0x80..=0xBF
        | 0xD7
        | 0xF7
        | 0x589
        | 0x5BE
        | 0x5C0
        | 0x5C3
        | 0x5C6
        | 0x5F3
        | 0x5F4
        | 0x60C
        | 0x61B
        | 0x61F
        | 0x66A..=0x66D
        | 0x6D4
        | 0x964
        | 0x965
        | 0xE4F
        | 0xE5A
        | 0xE5B => Punct(W_SYMBOL),
        0xC0..=0xDE => Letter(Script::Latin, Case::Upper),
        0xDF..=0xFF => Letter(Script::Latin, Case::Lower),
        0x100..=0x2FF | 0x1E00..=0x1EFF => letter(Script::Latin),
        0x300..=0x36F | 0x1AB0..=0x1AFF | 0x1DC0..=0x1DFF | 0x20D0..=0x20FF | 0xFE20..=0xFE2F => {
            letter(Script::Mark)
        }
        0x391..=0x3A9 => Letter(Script::Other, Case::Upper),
        0x3AC..=0x3CE => Letter(Script::Other, Case::Lower),
        0x410..=0x42F | 0x401 => Letter(Script::Cyrillic, Case::Upper),
        0x430..=0x44F | 0x451 => Letter(Script::Cyrillic, Case::Lower),
        0x400..=0x40F => Letter(Script::CyrillicExt, Case::Upper),
        0x450..=0x45F => Letter(Script::CyrillicExt, Case::Lower),
        0x460..=0x52F => letter(Script::CyrillicExt),
        0x1C80..=0x1C8F => letter(Script::Cyrillic),
        0x600..=0x8FF | 0xFB50..=0xFDFF | 0xFE70..=0xFEFE => letter(Script::Arabic),
        0x900..=0xDFF => letter(Script::Indic),
        0x1100..=0x11FF | 0x3130..=0x318F | 0xAC00..=0xD7AF => letter(Script::Hangul),
        0x3040..=0x30FF | 0x31F0..=0x31FF | 0xFF66..=0xFF9F => letter(Script::Kana),
        0x4E00..=0x9FFF if han_single_token(c) => letter(Script::Han),
        0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0x20000..=0x3FFFF => {
            letter(Script::HanRare)
        }
        0xFE00..=0xFE0F | 0xE0100..=0xE01EF => letter(Script::ZeroWidth),
        0x2000..=0x2BFF
        | 0x2E00..=0x2E7F
        | 0x3000..=0x303F
        | 0xFE10..=0xFE6F
        | 0xFEFF
        | 0xFF00..=0xFF65
        | 0xFFF0..=0xFFFF => Punct(W_SYMBOL),
        0x1F1E6..=0x1F1FF | 0x1F3FB..=0x1F3FF | 0xE0000..=0xE007F => Punct(W_EMOJI_MOD),
        0x1F000..=0x1FAFF => Punct(W_EMOJI),
        // Greek and Coptic, Armenian, Hebrew, Thai, Lao, Tibetan, Myanmar, Georgian, Khmer, Greek
        // Extended, and any other script.
        _ => letter(Script::Other),
    }
}

/// What follows a whitespace run. This decides whether its last char joins the next piece.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Next {
    Letter,
    Digit,
    Punct,
    End,
}

/// The open piece.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
enum Piece {
    #[default]
    Nothing,
    /// A letter run. `lower` is set once the run is in its lowercase part, so an uppercase
    /// letter starts a new piece.
    Word {
        lower: bool,
    },
    Digits,
    /// A punctuation run. `spaced` is set if it took over the space in front of it, and
    /// `newline` once it has taken trailing newlines.
    Punct {
        spaced: bool,
        newline: bool,
    },
    Space,
}

/// The open whitespace run.
#[derive(Clone, Copy, Default)]
struct Whitespace {
    has_newline: bool,
    /// Weight of the whitespace up to and including the last newline.
    newline_weight: u64,
    /// Count and weight of the horizontal whitespace after the last newline.
    tail_len: usize,
    tail_weight: u64,
    last_weight: u64,
    last_is_space: bool,
}

/// Script hints that hold for the rest of the text.
#[derive(Clone, Copy, Default)]
struct Seen {
    /// A non-Russian Cyrillic letter has been seen.
    cyrillic_ext: bool,
    /// Kana has been seen, so the text is Japanese.
    kana: bool,
}

#[derive(Default)]
struct Estimator {
    /// Cost of the pieces closed so far, in units.
    total: u64,
    piece: Piece,
    /// Weight of the open word or punctuation piece.
    weight: u64,
    /// Letters in the open word, chars in the open punctuation run, or digits in the open
    /// digit run.
    len: usize,
    ws: Whitespace,
    seen: Seen,
    prev: char,
    /// Copies of `prev` in a row.
    run: usize,
    /// Weight that the current run added before it reached `RUN_MIN + 1` copies.
    run_weight: u64,
}

impl Estimator {
    fn feed(&mut self, c: char) {
        if c == self.prev {
            self.run += 1;
        } else {
            self.prev = c;
            self.run = 1;
            self.run_weight = 0;
        }
        match classify(c) {
            Class::Letter(script, case) => self.letter(c, script, case),
            Class::Digit => self.digit(),
            Class::Punct(w) => self.punct(c, w),
            Class::Space(w) => self.space(c == ' ', w, false),
            Class::Newline(w) => self.space(false, w, true),
        }
    }

    /// Adds a char's weight to the open piece. In a long run of one char, the copies weigh
    /// the run weight instead, and the first `RUN_MIN` copies are charged again at that weight.
    fn add(&mut self, c: char, w: u64, may_run: bool) {
        if may_run && self.run > RUN_MIN {
            let per_copy = run_weight(c);
            self.weight += per_copy;
            if self.run == RUN_MIN + 1 {
                self.weight =
                    (self.weight + RUN_MIN as u64 * per_copy).saturating_sub(self.run_weight);
            }
        } else {
            self.weight += w;
            self.run_weight += w;
        }
    }

    fn close_piece(&mut self) {
        self.total += self.weight.max(UNIT);
        self.weight = 0;
    }

    /// Closes the open whitespace run and returns whether its last char joins the next piece.
    fn close_space(&mut self, next: Next) -> bool {
        let ws = self.ws;
        if ws.has_newline {
            self.total += ws.newline_weight.max(UNIT);
        }
        if ws.tail_len == 0 {
            return false;
        }
        let joins = next == Next::Letter || (next == Next::Punct && ws.last_is_space);
        if joins {
            if ws.tail_len >= 2 {
                self.total += (ws.tail_weight - ws.last_weight).max(UNIT);
            }
        } else {
            self.total += ws.tail_weight.max(UNIT);
            if next == Next::Digit && ws.tail_len >= 2 {
                self.total += UNIT;
            }
        }
        joins
    }

    fn letter(&mut self, c: char, script: Script, case: Case) {
        let lower = match self.piece {
            Piece::Word { lower } if !(lower && case == Case::Upper) => lower,
            piece => {
                // A lone punctuation char, or the last space of a whitespace run, joins the word.
                let mut prefix = false;
                match piece {
                    Piece::Punct {
                        spaced: false,
                        newline: false,
                    } if self.len == 1 => prefix = true,
                    Piece::Word { .. } | Piece::Punct { .. } => self.close_piece(),
                    Piece::Space => {
                        self.close_space(Next::Letter);
                    }
                    Piece::Digits | Piece::Nothing => {}
                }
                if !prefix {
                    self.weight = 0;
                }
                self.len = 0;
                false
            }
        };
        self.len += 1;
        let w = match script {
            Script::Ascii if self.len > ASCII_LONG_AFTER => W_ASCII_LONG,
            Script::Ascii => W_ASCII,
            Script::Latin => W_LATIN,
            Script::Mark => W_MARK,
            Script::ZeroWidth => 0,
            Script::Cyrillic if self.seen.cyrillic_ext => W_OTHER_SCRIPT,
            Script::Cyrillic => W_CYRILLIC,
            Script::CyrillicExt => {
                self.seen.cyrillic_ext = true;
                W_OTHER_SCRIPT
            }
            Script::Arabic => W_ARABIC,
            Script::Indic => W_INDIC,
            Script::Other => W_OTHER_SCRIPT,
            Script::Hangul => W_HANGUL,
            Script::Kana => {
                self.seen.kana = true;
                W_KANA
            }
            Script::Han if self.seen.kana => W_HAN_JA,
            Script::Han => W_HAN,
            Script::HanRare => match u32::from(c) {
                0x4E00..=0x9FFF => W_HAN_RARE,
                0x10000.. => W_HAN_SUPPLEMENTARY,
                _ => W_HAN_EXT,
            },
        };
        self.add(c, w, script != Script::ZeroWidth);
        let lower = match case {
            Case::Lower => true,
            Case::Upper => false,
            Case::Caseless => lower,
        };
        self.piece = Piece::Word { lower };
    }

    fn digit(&mut self) {
        match self.piece {
            Piece::Digits => {}
            piece => {
                match piece {
                    Piece::Word { .. } | Piece::Punct { .. } => self.close_piece(),
                    Piece::Space => {
                        self.close_space(Next::Digit);
                    }
                    Piece::Digits | Piece::Nothing => {}
                }
                self.piece = Piece::Digits;
                self.len = 0;
            }
        }
        // One token per group of up to 3 digits.
        if self.len.is_multiple_of(3) {
            self.total += UNIT;
        }
        self.len += 1;
    }

    fn punct(&mut self, c: char, w: u64) {
        let mut spaced = false;
        match self.piece {
            Piece::Punct { newline: false, .. } => {
                self.len += 1;
                self.add(c, w, true);
                return;
            }
            Piece::Word { .. } | Piece::Punct { .. } => self.close_piece(),
            Piece::Space => spaced = self.close_space(Next::Punct),
            Piece::Digits | Piece::Nothing => {}
        }
        self.piece = Piece::Punct {
            spaced,
            newline: false,
        };
        self.weight = 0;
        self.len = 1;
        self.add(c, w, true);
    }

    fn space(&mut self, is_space: bool, w: u64, newline: bool) {
        match self.piece {
            Piece::Punct { spaced, .. } if newline => {
                self.piece = Piece::Punct {
                    spaced,
                    newline: true,
                };
                self.weight += W_NL_AFTER_PUNCT;
                return;
            }
            Piece::Space => {}
            piece => {
                if matches!(piece, Piece::Word { .. } | Piece::Punct { .. }) {
                    self.close_piece();
                }
                self.piece = Piece::Space;
                self.ws = Whitespace::default();
            }
        }
        let ws = &mut self.ws;
        if newline {
            ws.has_newline = true;
            ws.newline_weight += ws.tail_weight + w;
            ws.tail_len = 0;
            ws.tail_weight = 0;
        } else {
            ws.tail_len += 1;
            ws.tail_weight += w;
            ws.last_weight = w;
            ws.last_is_space = is_space;
        }
    }

    fn finish(mut self) -> usize {
        match self.piece {
            Piece::Word { .. } | Piece::Punct { .. } => self.close_piece(),
            Piece::Space => {
                self.close_space(Next::End);
            }
            Piece::Digits | Piece::Nothing => {}
        }
        let tokens = ((self.total + UNIT / 2) / UNIT).max(1);
        usize::try_from(tokens).unwrap_or(usize::MAX)
    }
}

/// Weight of one copy of `c` in a long run of that char.
fn run_weight(c: char) -> u64 {
    let log2 = match u32::from(c) {
        o @ 33..=126 => RUN_LOG2[(o - 33) as usize] - b'0',
        _ => 0,
    };
    UNIT >> log2
}

#[cfg(test)]
mod tests {
    use super::{estimate_tokens, han_single_token, HAN_SINGLE_TOKEN};

    #[test]
    fn empty_is_zero() {
        assert_eq!(estimate_tokens(""), 0);
    }

    #[test]
    fn non_empty_is_at_least_one() {
        for text in [
            " ",
            "\n",
            "\r\n",
            "\t",
            "a",
            "1",
            ".",
            "\u{301}",
            "\u{FE0F}",
            "\u{200D}",
            "😀",
            "中",
            "\u{3000}",
            "\0",
            "é",
            "\u{E0100}",
        ] {
            assert!(estimate_tokens(text) >= 1, "{text:?}");
        }
    }

    #[test]
    fn close_to_o200k_on_spot_checks() {
        // (text, official o200k_base count): within 20% or 1 token.
        let long_equals = "=".repeat(8000);
        let emoji = "😀".repeat(2000);
        let spaces = " ".repeat(5000);
        let checks = [
            ("Hello world!", 3),
            ("The quick brown fox jumps over the lazy dog.", 10),
            ("你好，世界！今天天气很好。", 9),
            ("Привет, как дела? Сегодня хорошая погода.", 12),
            ("fn main() {\n    println!(\"{}\", 1 + 2);\n}\n", 14),
            ("{\"id\": 42, \"tags\": [\"a\", \"b\"]}", 16),
            (long_equals.as_str(), 125),
            (emoji.as_str(), 2000),
            (spaces.as_str(), 40),
        ];
        for (text, truth) in checks {
            let estimate = estimate_tokens(text);
            assert!(
                estimate.abs_diff(truth) <= (truth / 5).max(1),
                "{:?}: estimated {estimate}, o200k {truth}",
                text.chars().take(20).collect::<String>()
            );
        }
    }

    #[test]
    fn no_panic_on_odd_input() {
        let control: String = (0u8..0x20)
            .map(char::from)
            .chain(['\x7f', '\u{85}'])
            .collect();
        let marks = "\u{301}\u{301}\u{301}\u{301}\u{301} \u{FE0F}\u{FE0F}\u{FE0F}\u{FE0F}\u{20E3}";
        let mixed = "a\u{301}B\u{0308}\u{200D}\u{200D}\u{200D}\u{200D}1\u{FE0F}\u{20E3}🇺🇸👍🏽";
        for text in [
            control.as_str(),
            marks,
            mixed,
            "\u{10FFFF}\u{E0001}\u{E007F}",
            "\r\r\r\r\r",
        ] {
            let n = estimate_tokens(text);
            assert!(n >= 1 && n <= 4 * text.chars().count(), "{text:?} -> {n}");
        }
    }

    #[test]
    fn no_panic_on_huge_input() {
        for unit in [
            "a", " ", "\n", "=", "😀", "中", "ab", "9", "\u{301}", "x1-", " \n",
        ] {
            let text = unit.repeat(2_000_000);
            let n = estimate_tokens(&text);
            assert!(n >= 1 && n <= 2 * text.chars().count(), "{unit:?} -> {n}");
        }
        // Pseudo-random chars from all planes.
        let mut state = 0x2545_F491_4F6C_DD1D_u64;
        let text: String = (0..1_000_000)
            .filter_map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                char::from_u32((state % 0x11_0000) as u32 >> (state >> 62))
            })
            .collect();
        assert!(estimate_tokens(&text) >= 1);
    }

    /// The bitmap is the vocabulary's: 2,515 single-token ideographs, common ones among them.
    #[test]
    fn han_table_marks_single_token_ideographs() {
        let ones: u32 = HAN_SINGLE_TOKEN.iter().map(|b| b.count_ones()).sum();
        assert_eq!(ones, 2_515);
        for c in ['的', '中', '国', '人', '日'] {
            assert!(han_single_token(c), "{c}");
        }
        // Two o200k tokens each, eight in all.
        assert!(!han_single_token('龘'));
        assert!(estimate_tokens("龘靐齉爩") >= 6);
    }

    #[test]
    fn corpus_error_is_small() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/heuristic_corpus.jsonl"
        );
        let corpus = std::fs::read_to_string(path).expect("read heuristic corpus");
        let mut errors: Vec<f64> = corpus
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| {
                let sample: serde_json::Value =
                    serde_json::from_str(line).expect("valid JSON line");
                let text = sample["text"].as_str().expect("text");
                let truth = sample["o200k_tokens"].as_u64().expect("o200k_tokens") as f64;
                (estimate_tokens(text) as f64 - truth).abs() / truth
            })
            .collect();
        assert!(errors.len() >= 150, "corpus has {} samples", errors.len());
        errors.sort_by(f64::total_cmp);
        let mid = errors.len() / 2;
        let median = if errors.len().is_multiple_of(2) {
            f64::midpoint(errors[mid - 1], errors[mid])
        } else {
            errors[mid]
        };
        let max = errors[errors.len() - 1];
        assert!(median < 0.15, "median relative error {median:.3}");
        assert!(max < 0.60, "max relative error {max:.3}");
    }
}
