//! The PII scanner: one multi-pattern automaton over the whole text for the structured kinds
//! (email, phone, card, IBAN, SSN, IP, crypto), the secret rules behind their keyword prefilter
//! (`secrets.rs`), and the rules users add (`add_pii_pattern`). Candidates the automaton finds
//! are reported only once their validator agrees (`validate.rs`).

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use regex_automata::meta::{self, Regex};
use regex_automata::util::syntax;
use regex_automata::{Anchored, Input};

use super::secrets::SecretRules;
use super::validate;
use crate::error::Error;

/// Presidio's entity names (the ecosystem's vocabulary) for the built-in kinds.
pub const EMAIL_ADDRESS: &str = "EMAIL_ADDRESS";
pub const PHONE_NUMBER: &str = "PHONE_NUMBER";
pub const CREDIT_CARD: &str = "CREDIT_CARD";
pub const IBAN_CODE: &str = "IBAN_CODE";
pub const US_SSN: &str = "US_SSN";
pub const IP_ADDRESS: &str = "IP_ADDRESS";
pub const CRYPTO: &str = "CRYPTO";
pub const SECRET: &str = "SECRET";

/// The built-in kinds, in the order counts are listed.
pub const KINDS: [&str; 8] = [
    EMAIL_ADDRESS,
    PHONE_NUMBER,
    CREDIT_CARD,
    IBAN_CODE,
    US_SSN,
    IP_ADDRESS,
    CRYPTO,
    SECRET,
];

/// A validator a user supplies with a custom rule: `Ok(true)` keeps the candidate; `Err` is a
/// fault (the scan fails, and a span being cleaned is dropped: fail closed).
pub type CustomCheck = Arc<dyn Fn(&str) -> Result<bool, String> + Send + Sync>;

/// What a candidate must also satisfy.
#[derive(Clone)]
pub enum Check {
    Always,
    Email,
    Phone,
    CreditCard,
    Iban,
    UsSsn,
    Ipv4,
    Ipv6,
    Base58Check,
    Bech32,
    /// A bare run of digits: a phone number only after a word that announces one.
    PhoneContext,
    Custom(CustomCheck),
}

impl fmt::Debug for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Check::Custom(_) => f.write_str("Custom(..)"),
            other => write!(f, "{}", other.name()),
        }
    }
}

impl Check {
    fn name(&self) -> &'static str {
        match self {
            Check::Always => "Always",
            Check::Email => "Email",
            Check::Phone => "Phone",
            Check::CreditCard => "CreditCard",
            Check::Iban => "Iban",
            Check::UsSsn => "UsSsn",
            Check::Ipv4 => "Ipv4",
            Check::Ipv6 => "Ipv6",
            Check::Base58Check => "Base58Check",
            Check::Bech32 => "Bech32",
            Check::PhoneContext => "PhoneContext",
            Check::Custom(_) => "Custom",
        }
    }

    /// Whether `text[start..end]` is reported.
    fn accepts(&self, text: &str, start: usize, end: usize) -> Result<bool, Error> {
        let value = &text[start..end];
        Ok(match self {
            Check::PhoneContext => validate::phone(value) && phone_context(text, start),
            Check::Always => true,
            Check::Email => email(value),
            Check::Phone => validate::phone(value),
            Check::CreditCard => validate::credit_card(value),
            Check::Iban => validate::iban(value),
            Check::UsSsn => validate::us_ssn(value),
            Check::Ipv4 => validate::ipv4(value),
            Check::Ipv6 => validate::ipv6(value),
            Check::Base58Check => validate::base58check(value),
            Check::Bech32 => validate::bech32(value),
            Check::Custom(check) => check(value).map_err(Error::Scan)?,
        })
    }
}

/// Words that announce a phone number, in the languages of the supported number plans.
const PHONE_WORDS: &[&str] = &[
    "phone",
    "tel",
    "call",
    "mobile",
    "cell",
    "fax",
    "whatsapp",
    "sms",
    "text me",
    "contact",
    "number",
    "reach",
    "ring",
    "dial",
    "telefon",
    "handy",
    "rufnummer",
    "nummer",
    "téléphone",
    "portable",
    "numéro",
    "appel",
    "teléfono",
    "telefono",
    "móvil",
    "movil",
    "llama",
    "cellulare",
    "numero",
    "chiama",
    "telefoon",
    "bellen",
    "mobiel",
    "電話",
    "携帯",
    "番号",
];

/// How far before a bare number its announcing word may be.
const PHONE_CONTEXT_BYTES: usize = 48;

fn phone_context(text: &str, start: usize) -> bool {
    let mut from = start.saturating_sub(PHONE_CONTEXT_BYTES);
    while !text.is_char_boundary(from) {
        from += 1;
    }
    let before = text[from..start].to_lowercase();
    PHONE_WORDS.iter().any(|word| before.contains(word))
}

fn email(text: &str) -> bool {
    let Some((local, domain)) = text.rsplit_once('@') else {
        return false;
    };
    !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && !domain.contains("..")
        && !domain.starts_with(['.', '-'])
        && domain.rsplit('.').next().is_some_and(|tld| tld.len() <= 24)
}

/// One detection rule: a pattern, the kind and rule name it reports, and its validator.
#[derive(Debug, Clone)]
pub struct Rule {
    pub kind: Cow<'static, str>,
    pub detail: Cow<'static, str>,
    pub pattern: Cow<'static, str>,
    pub check: Check,
    pub score: f64,
}

const fn rule(
    kind: &'static str,
    detail: &'static str,
    pattern: &'static str,
    check: Check,
    score: f64,
) -> Rule {
    Rule {
        kind: Cow::Borrowed(kind),
        detail: Cow::Borrowed(detail),
        pattern: Cow::Borrowed(pattern),
        check,
        score,
    }
}

/// The structured kinds, in priority order (at one start position the first rule wins).
/// ASCII only, no `\b` (the scanner checks the neighbours of each candidate itself), so the
/// automaton stays a small lazy DFA.
fn pii_rules() -> Vec<Rule> {
    vec![
        rule(
            EMAIL_ADDRESS,
            "email",
            r"[A-Za-z0-9_%+-][A-Za-z0-9._%+-]*@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[A-Za-z][A-Za-z]+",
            Check::Email,
            1.0,
        ),
        rule(
            IBAN_CODE,
            "iban",
            r"[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9])+",
            Check::Iban,
            1.0,
        ),
        rule(
            CREDIT_CARD,
            "credit_card",
            r"[2-6][0-9](?:[ -]?[0-9]){10,17}",
            Check::CreditCard,
            1.0,
        ),
        rule(
            US_SSN,
            "us_ssn",
            r"[0-8][0-9]{2}-[0-9]{2}-[0-9]{4}|[0-8][0-9]{2} [0-9]{2} [0-9]{4}",
            Check::UsSsn,
            0.85,
        ),
        rule(
            IP_ADDRESS,
            "ipv4",
            r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}",
            Check::Ipv4,
            0.95,
        ),
        rule(
            IP_ADDRESS,
            "ipv6",
            r"[0-9A-Fa-f]*:[0-9A-Fa-f]*:[0-9A-Fa-f:.]*[0-9A-Fa-f]",
            Check::Ipv6,
            0.95,
        ),
        rule(
            CRYPTO,
            "btc_base58",
            r"[13][1-9A-HJ-NP-Za-km-z]{25,}",
            Check::Base58Check,
            1.0,
        ),
        rule(
            CRYPTO,
            "btc_bech32",
            r"(?:bc1|BC1)[02-9ac-hj-np-zAC-HJ-NP-Z]+",
            Check::Bech32,
            1.0,
        ),
        // International (+CC or 00CC), then national formats: a trunk 0 (UK, DE, FR, IT, NL,
        // JP, ES...), North American (area code in parentheses or 3-3-4), Spanish and Italian
        // mobile groupings, and bare digits after a word such as "phone". Extensions (x123)
        // are part of the number. The patterns are loose (a small automaton); the validator
        // checks digit counts and grouping.
        rule(
            PHONE_NUMBER,
            "phone_international",
            r"(?:\+|00)[1-9][0-9 ./()-]*[0-9](?: ?(?:x|ext\.?) ?[0-9]{1,5})?",
            Check::Phone,
            0.8,
        ),
        rule(
            PHONE_NUMBER,
            "phone_national",
            r"\(?0[0-9][0-9 ./()-]*[0-9](?: ?(?:x|ext\.?) ?[0-9]{1,5})?",
            Check::Phone,
            0.7,
        ),
        rule(
            PHONE_NUMBER,
            "phone_nanp",
            r"(?:(?:\+?1|001)[ .-]?)?(?:\([2-9][0-9]{2}\) ?|[2-9][0-9]{2}[ .-])[2-9][0-9]{2}[ .-]?[0-9]{4}(?: ?(?:x|ext\.?) ?[0-9]{1,5})?",
            Check::Phone,
            0.75,
        ),
        rule(
            PHONE_NUMBER,
            "phone_grouped",
            r"[6-9][0-9]{2}(?: [0-9]{2,3}){2,3}|3[0-9]{2} [0-9]{3,4} ?[0-9]{3,4}",
            Check::Phone,
            0.6,
        ),
        rule(
            PHONE_NUMBER,
            "phone_dashed",
            r"[0-9]{2,4}-[0-9]{3,4}-[0-9]{4}",
            Check::Phone,
            0.6,
        ),
        rule(
            PHONE_NUMBER,
            "phone_bare",
            r"\+?[0-9]{9,}",
            Check::PhoneContext,
            0.6,
        ),
    ]
}

/// One thing found: its kind, the rule that found it, where (byte offsets) and how sure.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub kind: Cow<'static, str>,
    pub detail: Cow<'static, str>,
    pub start: usize,
    pub end: usize,
    pub score: f64,
}

/// The lazy DFA's state cache per search thread: room for the states digit-heavy text visits,
/// so the cache is not cleared (and the DFA not abandoned for the slow NFA engine) mid-text.
pub(crate) const LAZY_DFA_CACHE_BYTES: usize = 8 << 20;

/// A set of rules compiled into one automaton.
#[derive(Debug)]
struct RuleSet {
    regex: Regex,
    rules: Vec<Rule>,
}

impl RuleSet {
    fn new(rules: Vec<Rule>, ascii: bool) -> Result<RuleSet, String> {
        let patterns: Vec<&str> = rules.iter().map(|r| r.pattern.as_ref()).collect();
        let mut builder = Regex::builder();
        if ascii {
            // The built-in patterns are ASCII: byte classes keep the DFA small, and every match
            // starts and ends at an ASCII byte, hence at a character boundary.
            builder.syntax(syntax::Config::new().unicode(false).utf8(false));
        }
        let regex = builder
            .configure(
                meta::Config::new()
                    .utf8_empty(false)
                    .hybrid_cache_capacity(LAZY_DFA_CACHE_BYTES),
            )
            .build_many(&patterns)
            .map_err(|e| e.to_string())?;
        Ok(RuleSet { regex, rules })
    }
}

/// The scanner: built-in rules plus the custom ones, compiled once, shared by every thread.
#[derive(Debug)]
pub struct Scanner {
    /// The email rule alone (searched from each `@`'s local part).
    email: RuleSet,
    /// The other structured kinds (searched anchored at candidate starts).
    pii: RuleSet,
    secrets: SecretRules,
    custom: Option<RuleSet>,
    custom_rules: Vec<Rule>,
}

fn is_word(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_'
}

/// The candidate is a whole token: no letter or digit glued to either side (a dot or a dash
/// followed by a digit continues a number too).
fn standalone(text: &[u8], start: usize, end: usize) -> bool {
    let before = start.checked_sub(1).map(|i| text[i]);
    let after = text.get(end).copied();
    let continues_number = |b: u8, next: Option<u8>| {
        matches!(b, b'.' | b'-' | b'/') && next.is_some_and(|n| n.is_ascii_digit())
    };
    if before.is_some_and(is_word) || after.is_some_and(is_word) {
        return false;
    }
    if let Some(b) = before {
        let prior = start.checked_sub(2).map(|i| text[i]);
        if continues_number(b, prior) && text[start].is_ascii_digit() {
            return false;
        }
    }
    if let Some(b) = after {
        if continues_number(b, text.get(end + 1).copied()) && text[end - 1].is_ascii_digit() {
            return false;
        }
    }
    true
}

/// The characters of an email's local part (ASCII; `unicode_local_part` extends it).
fn is_local_part(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'%' | b'+' | b'-')
}

/// The first digit or colon (bytes 0x30..=0x3A) at or after `from`, eight bytes at a time
/// (the "has a byte between" bit trick: no carry crosses a byte, so the lowest flag is exact).
fn next_digit_or_colon(bytes: &[u8], from: usize) -> Option<usize> {
    const ONES: u64 = u64::MAX / 255;
    const LOW7: u64 = ONES * 127;
    const HIGH: u64 = ONES * 128;
    let mut at = from;
    while let Some(chunk) = bytes.get(at..at + 8) {
        let word = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        let low = word & LOW7;
        // High bit of each byte > 0x2F and < 0x3B (and below 0x80).
        let flags = (ONES * (127 + 0x3B) - low) & !word & (low + ONES * (127 - 0x2F)) & HIGH;
        if flags != 0 {
            return Some(at + flags.trailing_zeros() as usize / 8);
        }
        at += 8;
    }
    bytes
        .get(at..)?
        .iter()
        .position(|b| (b'0'..=b':').contains(b))
        .map(|offset| at + offset)
}

/// Nothing word-like glued before `at` (what `standalone` asks of a candidate's start).
fn token_start(bytes: &[u8], at: usize) -> bool {
    let Some(&before) = at.checked_sub(1).map(|i| &bytes[i]) else {
        return true;
    };
    if is_word(before) {
        return false;
    }
    let continues_number = matches!(before, b'.' | b'-' | b'/')
        && at >= 2
        && bytes[at - 2].is_ascii_digit()
        && bytes[at].is_ascii_digit();
    !continues_number
}

/// Whether a built-in rule can match from `at` (cheap checks of the first bytes): digits start
/// numbers and base58 addresses, `+`/`(` a phone, two capitals and two digits an IBAN, hex
/// digits then a colon (or `::`) an IPv6 address, `bc1` a bech32 address.
fn may_start_here(bytes: &[u8], at: usize) -> bool {
    let byte = bytes[at];
    let next = bytes.get(at + 1).copied().unwrap_or(0);
    if byte.is_ascii_digit() {
        return true;
    }
    match byte {
        b'+' => next.is_ascii_digit(),
        b'(' => next.is_ascii_digit(),
        b':' => next == b':' || next.is_ascii_hexdigit(),
        _ => {
            let rest = &bytes[at..];
            let iban = byte.is_ascii_uppercase()
                && next.is_ascii_uppercase()
                && rest.len() >= 4
                && rest[2].is_ascii_digit()
                && rest[3].is_ascii_digit();
            let bech32 = rest.len() >= 3 && (rest[..3] == *b"bc1" || rest[..3] == *b"BC1");
            let ipv6 = byte.is_ascii_hexdigit()
                && rest
                    .iter()
                    .take(5)
                    .position(|b| !b.is_ascii_hexdigit())
                    .is_some_and(|end| rest[end] == b':');
            iban || bech32 || ipv6
        }
    }
}

/// Where an email's local part starts when it has non-ASCII letters (`josé.x@...`): the
/// automaton matched its ASCII tail only. Stops at CJK scripts (no spaces between words there).
fn unicode_local_part(text: &str, start: usize) -> usize {
    let mut begin = start;
    for (index, ch) in text[..start].char_indices().rev() {
        let latin_like = ch.is_alphanumeric() && (ch as u32) < 0x2E80;
        if latin_like || matches!(ch, '.' | '_' | '%' | '+' | '-') {
            begin = index;
        } else {
            break;
        }
    }
    // Not a dot or dash first.
    while begin < start && matches!(text.as_bytes()[begin], b'.' | b'-') {
        begin += 1;
    }
    if text[begin..start].is_ascii() {
        start
    } else {
        begin
    }
}

impl Scanner {
    /// The built-in rules only.
    pub fn new() -> Scanner {
        Scanner::with_custom(Vec::new()).expect("the built-in rules compile")
    }

    /// The built-in rules and `custom` (users' patterns, full regex syntax).
    pub fn with_custom(custom_rules: Vec<Rule>) -> Result<Scanner, String> {
        let custom = if custom_rules.is_empty() {
            None
        } else {
            Some(RuleSet::new(custom_rules.clone(), false)?)
        };
        let (email, others): (Vec<Rule>, Vec<Rule>) = pii_rules()
            .into_iter()
            .partition(|r| r.kind == EMAIL_ADDRESS);
        Ok(Scanner {
            email: RuleSet::new(email, true)?,
            pii: RuleSet::new(others, true)?,
            secrets: SecretRules::new()?,
            custom,
            custom_rules,
        })
    }

    /// The custom rules (to rebuild with one more).
    pub fn custom_rules(&self) -> &[Rule] {
        &self.custom_rules
    }

    /// Everything found in `text`, ordered by start, never overlapping (secrets win over the
    /// structured kinds they contain, e.g. an email inside a URL's credentials).
    pub fn scan(&self, text: &str) -> Result<Vec<Finding>, Error> {
        let mut found = self.secrets.scan(text);
        let emails = self.emails(text)?;
        self.structured(text, &emails, &mut found)?;
        found.extend(emails);
        if let Some(custom) = &self.custom {
            for candidate in custom.regex.find_iter(Input::new(text)) {
                let rule = &custom.rules[candidate.pattern().as_usize()];
                if candidate.is_empty() {
                    continue;
                }
                if rule
                    .check
                    .accepts(text, candidate.start(), candidate.end())?
                {
                    found.push(finding(rule, candidate.start(), candidate.end()));
                }
            }
        }
        Ok(resolve_overlaps(found))
    }

    /// The emails: each `@` (memchr), its local part found by walking back, then the email
    /// rule anchored there. Prose is full of words that could begin a local part; only an `@`
    /// makes one worth a search.
    fn emails(&self, text: &str) -> Result<Vec<Finding>, Error> {
        let bytes = text.as_bytes();
        let mut found = Vec::new();
        let mut resume = 0;
        for at in memchr::memchr_iter(b'@', bytes) {
            if at < resume {
                continue;
            }
            let mut start = at;
            while start > resume && is_local_part(bytes[start - 1]) {
                start -= 1;
            }
            // The rule's first character is not a dot.
            while start < at && bytes[start] == b'.' {
                start += 1;
            }
            if start == at {
                continue;
            }
            let input = Input::new(text).range(start..).anchored(Anchored::Yes);
            let Some(candidate) = self.email.regex.search(&input) else {
                continue;
            };
            let (start, end) = (candidate.start(), candidate.end());
            resume = end;
            let rule = &self.email.rules[0];
            if standalone(bytes, start, end) && rule.check.accepts(text, start, end)? {
                found.push(finding(rule, unicode_local_part(text, start), end));
            }
        }
        Ok(found)
    }

    /// The structured kinds other than email: the automaton runs anchored at each position
    /// where a candidate can start (a digit, `+` or `(` before one, two capitals and two digits,
    /// a hex group and a colon, `bc1`) and that begins a token (nothing word-like glued before
    /// it): one forward pass per candidate, no reverse search, and text without such positions
    /// costs one pass over its bytes. `emails` are skipped (an email wins where it starts).
    fn structured(
        &self,
        text: &str,
        emails: &[Finding],
        found: &mut Vec<Finding>,
    ) -> Result<(), Error> {
        let bytes = text.as_bytes();
        let mut emails = emails.iter().peekable();
        // Nothing starts before `next`: the end of the last candidate (accepted or not), or
        // past the positions already tried.
        let mut next = 0;
        while let Some(mark) = next_digit_or_colon(bytes, next) {
            // Every candidate has a digit or a colon among its first five bytes.
            let mut at = mark.saturating_sub(4).max(next);
            while at <= mark {
                if !(token_start(bytes, at) && may_start_here(bytes, at)) {
                    at += 1;
                    continue;
                }
                while emails.peek().is_some_and(|email| email.end <= at) {
                    emails.next();
                }
                if let Some(email) = emails.peek().filter(|email| email.start <= at) {
                    at = email.end;
                    continue;
                }
                let input = Input::new(text).range(at..).anchored(Anchored::Yes);
                let Some(candidate) = self.pii.regex.search(&input) else {
                    at += 1;
                    continue;
                };
                let (start, end) = (candidate.start(), candidate.end());
                at = end.max(at + 1);
                let rule = &self.pii.rules[candidate.pattern().as_usize()];
                // An IBAN ends at its country's length, whatever the automaton took in after.
                let end = if rule.kind == IBAN_CODE {
                    match validate::iban_prefix(&text[start..end]) {
                        Some(length) => start + length,
                        None => continue,
                    }
                } else {
                    end
                };
                if standalone(bytes, start, end) && rule.check.accepts(text, start, end)? {
                    found.push(finding(rule, start, end));
                }
            }
            // No token starts inside a word (the rest of a number, say).
            while bytes.get(at).copied().is_some_and(is_word) {
                at += 1;
            }
            next = at;
        }
        Ok(())
    }
}

impl Default for Scanner {
    fn default() -> Self {
        Scanner::new()
    }
}

pub(crate) fn finding(rule: &Rule, start: usize, end: usize) -> Finding {
    Finding {
        kind: rule.kind.clone(),
        detail: rule.detail.clone(),
        start,
        end,
        score: rule.score,
    }
}

/// Keeps the first of overlapping findings, secrets first, then the structured kinds, then
/// custom rules (each group is already free of overlaps within itself).
fn resolve_overlaps(found: Vec<Finding>) -> Vec<Finding> {
    if found.len() < 2 {
        return found;
    }
    let mut kept: std::collections::BTreeMap<usize, Finding> = std::collections::BTreeMap::new();
    for finding in found {
        let clashes_before = kept
            .range(..=finding.start)
            .next_back()
            .is_some_and(|(_, k)| k.end > finding.start);
        let clashes_after = kept
            .range(finding.start..)
            .next()
            .is_some_and(|(&start, _)| start < finding.end);
        if !clashes_before && !clashes_after {
            kept.insert(finding.start, finding);
        }
    }
    kept.into_values().collect()
}

/// A user's rule, checked to compile on its own (so the error names it).
pub fn custom_rule(kind: &str, pattern: &str, check: Option<CustomCheck>) -> Result<Rule, String> {
    if kind.is_empty()
        || !kind
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(format!(
            "kind must be UPPER_SNAKE_CASE like Presidio's entity names, got {kind:?}"
        ));
    }
    let regex =
        Regex::new(pattern).map_err(|e| format!("regex {pattern:?} does not compile: {e}"))?;
    if regex.is_match("") {
        return Err(format!("regex {pattern:?} matches the empty string"));
    }
    Ok(Rule {
        kind: Cow::Owned(kind.to_owned()),
        detail: Cow::Owned(format!("custom:{}", kind.to_ascii_lowercase())),
        pattern: Cow::Owned(pattern.to_owned()),
        check: check.map_or(Check::Always, Check::Custom),
        score: 1.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<(String, String)> {
        Scanner::new()
            .scan(text)
            .unwrap()
            .into_iter()
            .map(|f| (f.kind.into_owned(), text[f.start..f.end].to_owned()))
            .collect()
    }

    #[test]
    fn finds_each_kind_in_context() {
        let text =
            "Mail jane.doe@example.co.uk or call +44 20 7946 0958; card 4111 1111 1111 1111, \
                    IBAN DE89 3704 0044 0532 0130 00, SSN 536-90-4399, host 10.1.2.3 and \
                    2001:db8::8a2e:370:7334, BTC 1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2.";
        let found = kinds(text);
        let expect = [
            (EMAIL_ADDRESS, "jane.doe@example.co.uk"),
            (PHONE_NUMBER, "+44 20 7946 0958"),
            (CREDIT_CARD, "4111 1111 1111 1111"),
            (IBAN_CODE, "DE89 3704 0044 0532 0130 00"),
            (US_SSN, "536-90-4399"),
            (IP_ADDRESS, "10.1.2.3"),
            (IP_ADDRESS, "2001:db8::8a2e:370:7334"),
            (CRYPTO, "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2"),
        ];
        let expect: Vec<(String, String)> = expect
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        assert_eq!(found, expect);
    }

    #[test]
    fn benign_numbers_are_not_pii() {
        for text in [
            "version 1.2.3, build 2024-01-05 14:30:00, order #100234561",
            "uuid 123e4567-e89b-12d3-a456-426614174000 sha 9fceb02d0ae598e95dc970b74767f19372d61af8",
            "std::vector<int> v; a::b::c; 12:30:45",
            "card 4111 1111 1111 1112 fails Luhn",
            "timestamp 1700000000123 and 05.01.2024 14:30",
        ] {
            assert_eq!(kinds(text), vec![], "{text}");
        }
    }

    #[test]
    fn custom_rules_and_their_faults() {
        let rule = custom_rule("EMPLOYEE_ID", r"EMP-\d{6}", None).unwrap();
        let scanner = Scanner::with_custom(vec![rule]).unwrap();
        let found = scanner.scan("badge EMP-123456 ok").unwrap();
        assert_eq!(found[0].kind, "EMPLOYEE_ID");
        let failing: CustomCheck = Arc::new(|_| Err("validator broke".to_owned()));
        let rule = custom_rule("EMPLOYEE_ID", r"EMP-\d{6}", Some(failing)).unwrap();
        let scanner = Scanner::with_custom(vec![rule]).unwrap();
        assert!(scanner.scan("badge EMP-123456").is_err());
        assert!(custom_rule("lower", "x", None).is_err());
        assert!(custom_rule("X", "(", None).is_err());
        assert!(custom_rule("X", "a*", None).is_err());
    }
}
