//! Test helpers: a deterministic string generator over the characters tiktoken's patterns treat
//! differently.

/// A small deterministic generator (SplitMix64), so failures reproduce.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub(crate) fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// Building blocks for generated strings, one or a few characters each: every kind of character
/// the patterns treat differently, and the multi-character sequences they single out.
#[rustfmt::skip]
pub(crate) const ALPHABET: &[&str] = &[
    // ASCII letters, digits, punctuation, the contractions in both cases.
    "a", "b", "s", "t", "Z", "Q", "k", "0", "7", "9", "12", "12345", ".", ",", "!", "?", "-",
    "_", "/", "\\", "(", ")", "{", "}", "\"", "#", "@", "+", "=", "*", "'", "'s", "'S", "'t",
    "'T", "'d", "'D", "'m", "'M", "'ll", "'LL", "'Ll", "'ve", "'VE", "'re", "'Re", "'rE",
    "'x", "''", "`", "\u{2019}s",
    // Characters that case-fold onto the contractions' letters (long s, Kelvin sign).
    "\u{17F}", "\u{212A}", "'\u{17F}",
    // Whitespace: ASCII, \r\n mixes, and every Unicode White_Space character.
    " ", " ", " ", "  ", "\t", "\n", "\n", "\r", "\r\n", "\n\n", " \n", "\n ", "\r\r\n",
    "\u{0B}", "\u{0C}", "\u{85}", "\u{A0}", "\u{1680}", "\u{2000}", "\u{2001}",
    "\u{2002}", "\u{2003}", "\u{2004}", "\u{2005}", "\u{2006}", "\u{2007}", "\u{2008}",
    "\u{2009}", "\u{200A}", "\u{2028}", "\u{2029}", "\u{202F}", "\u{205F}", "\u{3000}",
    // Not White_Space although space-like: zero-width space/joiners, BOM, Mongolian vowel sep.
    "\u{200B}", "\u{200C}", "\u{200D}", "\u{FEFF}", "\u{180E}",
    // Numbers: non-ASCII digits (Nd), letter numbers (Nl) and other numbers (No).
    "\u{660}", "\u{661}\u{662}\u{663}\u{664}", "\u{FF10}", "\u{FF11}\u{FF12}", "\u{966}",
    "\u{2160}", "\u{2167}", "\u{BD}", "\u{B2}", "\u{2460}", "\u{1D7CE}",
    // Letters: lower/upper/title case, modifier letters (Lm), other letters (Lo).
    "\u{E9}", "\u{C9}", "\u{DF}", "\u{1E9E}", "\u{1C5}", "\u{1C8}", "\u{1F88}", "\u{2B0}",
    "\u{2C6}", "\u{3005}", "\u{30FC}", "\u{5D0}", "\u{627}", "\u{E01}", "\u{4E2D}",
    "\u{6587}", "\u{3042}", "\u{AC00}", "\u{3C9}", "\u{3A9}", "\u{416}", "\u{436}",
    "\u{10428}", "\u{10400}", "\u{1D400}",
    // Combining marks (Mn, Mc, Me) after letters, digits, spaces, or alone.
    "\u{301}", "\u{308}", "e\u{301}", "\u{93F}", "\u{20DD}", "\u{94D}", "\u{E31}",
    // Emoji, ZWJ sequences, variation selectors, skin tones, flags, keycaps.
    "\u{1F600}", "\u{1F44D}\u{1F3FD}", "\u{1F468}\u{200D}\u{1F469}\u{200D}\u{1F467}",
    "\u{2764}\u{FE0F}", "\u{FE0F}", "\u{1F1EB}\u{1F1F7}", "1\u{FE0F}\u{20E3}", "\u{E0067}",
    // Symbols and punctuation beyond ASCII.
    "\u{2014}", "\u{2026}", "\u{AB}", "\u{BB}", "\u{3002}", "\u{FF01}", "\u{20AC}",
    "\u{2211}", "\u{A9}", "\u{B7}",
    // Control and format characters, private use, noncharacters.
    "\u{0}", "\u{1}", "\u{7}", "\u{1B}", "\u{7F}", "\u{80}", "\u{9F}", "\u{AD}",
    "\u{200E}", "\u{E000}", "\u{FFFD}", "\u{FFFF}", "\u{10FFFF}",
    // Special-token text, which is ordinary text here.
    "<|endoftext|>", "<|fim_prefix|>", "<|endofprompt|>", "<|", "|>",
];

pub(crate) fn generate(rng: &mut Rng, max_items: usize) -> String {
    let items = rng.below(max_items + 1);
    let mut text = String::new();
    for _ in 0..items {
        text.push_str(rng.pick(ALPHABET));
    }
    text
}
