//! Masking what the scanner found: `redact` (`<EMAIL_ADDRESS>`), `partial` (cards and phones
//! keep their last 4 digits, Datadog-style), `hash` (a keyed HMAC-SHA256 token: the same value
//! gives the same token across spans and processes sharing the key, and is not readable).

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::pii::{Finding, CREDIT_CARD, PHONE_NUMBER};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Redact,
    Partial,
    Hash,
}

impl Mode {
    pub fn parse(name: &str) -> Option<Mode> {
        match name {
            "redact" => Some(Mode::Redact),
            "partial" => Some(Mode::Partial),
            "hash" => Some(Mode::Hash),
            _ => None,
        }
    }
}

/// Hex digits of the HMAC kept in a hash token: 64 bits, no collisions in practice among the
/// values of one deployment, and short enough to read in a trace.
const HASH_HEX_DIGITS: usize = 16;

/// `text` with each finding (sorted, non-overlapping, byte offsets) replaced.
pub fn mask(text: &str, findings: &[Finding], mode: Mode, key: &[u8]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for finding in findings {
        out.push_str(&text[last..finding.start]);
        let value = &text[finding.start..finding.end];
        replace(&mut out, &finding.kind, value, mode, key);
        last = finding.end;
    }
    out.push_str(&text[last..]);
    out
}

fn replace(out: &mut String, kind: &str, value: &str, mode: Mode, key: &[u8]) {
    match mode {
        Mode::Partial if kind == CREDIT_CARD || kind == PHONE_NUMBER => {
            let digits = value.bytes().filter(u8::is_ascii_digit).count();
            let mut seen = 0;
            for ch in value.chars() {
                if ch.is_ascii_digit() {
                    seen += 1;
                    out.push(if seen + 4 > digits { ch } else { '*' });
                } else {
                    out.push(ch);
                }
            }
        }
        Mode::Redact | Mode::Partial => {
            out.push('<');
            out.push_str(kind);
            out.push('>');
        }
        Mode::Hash => {
            out.push('<');
            out.push_str(kind);
            out.push(':');
            out.push_str(&keyed_hash(key, value)[..HASH_HEX_DIGITS]);
            out.push('>');
        }
    }
}

/// HMAC-SHA256 of `value` under `key`, in hex.
pub fn keyed_hash(key: &[u8], value: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any size");
    mac.update(value.as_bytes());
    let digest = mac.finalize().into_bytes();
    let mut hex = String::with_capacity(64);
    for byte in digest {
        use std::fmt::Write as _;
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

#[cfg(test)]
mod tests {
    use super::super::pii::Scanner;
    use super::*;

    #[test]
    fn modes() {
        let text = "card 4111-1111-1111-1111 mail a.b@example.com";
        let found = Scanner::new().scan(text).unwrap();
        assert_eq!(
            mask(text, &found, Mode::Redact, b""),
            "card <CREDIT_CARD> mail <EMAIL_ADDRESS>"
        );
        assert_eq!(
            mask(text, &found, Mode::Partial, b""),
            "card ****-****-****-1111 mail <EMAIL_ADDRESS>"
        );
        let hashed = mask(text, &found, Mode::Hash, b"k");
        assert!(hashed.starts_with("card <CREDIT_CARD:"), "{hashed}");
        assert_eq!(hashed, mask(text, &found, Mode::Hash, b"k"), "stable");
        assert_ne!(hashed, mask(text, &found, Mode::Hash, b"other key"));
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        // RFC 4231, test case 2.
        assert_eq!(
            keyed_hash(b"Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
