//! Validators: what a candidate the automaton found must also satisfy to be reported (checksums,
//! issuer ranges, number plans). Each takes the candidate's text (ASCII: the built-in patterns
//! match ASCII only) and says yes or no; they never allocate on the common path.

use std::net::{Ipv4Addr, Ipv6Addr};

use sha2::{Digest, Sha256};

fn digits(text: &str) -> impl Iterator<Item = u8> + '_ {
    text.bytes().filter(u8::is_ascii_digit).map(|b| b - b'0')
}

/// The Luhn checksum (cards).
pub fn luhn(text: &str) -> bool {
    let mut sum = 0u32;
    let mut count = 0;
    let all: Vec<u8> = digits(text).collect();
    for (index, digit) in all.iter().rev().enumerate() {
        let mut value = u32::from(*digit);
        if index % 2 == 1 {
            value *= 2;
            if value > 9 {
                value -= 9;
            }
        }
        sum += value;
        count += 1;
    }
    count > 0 && sum.is_multiple_of(10)
}

/// Separators of a grouped number are all the same (or there are none).
fn consistent_separators(text: &str) -> bool {
    let mut separator = None;
    for byte in text.bytes().filter(|b| !b.is_ascii_digit()) {
        match separator {
            None => separator = Some(byte),
            Some(seen) if seen != byte => return false,
            Some(_) => {}
        }
    }
    true
}

/// A payment card: 13 to 19 digits, consistent separators, a known issuer's prefix and length,
/// and the Luhn checksum.
pub fn credit_card(text: &str) -> bool {
    if !consistent_separators(text) {
        return false;
    }
    let number: Vec<u8> = digits(text).collect();
    let length = number.len();
    if !(12..=19).contains(&length) || number.iter().all(|&d| d == number[0]) {
        return false;
    }
    let maestro = matches!(number[0], 5 | 6) && matches!(number[1], 0 | 6..=9);
    if length == 12 && !maestro {
        return false;
    }
    let prefix = |n: usize| {
        number[..n]
            .iter()
            .fold(0u32, |acc, &d| acc * 10 + u32::from(d))
    };
    let issuer = match number[0] {
        4 => matches!(length, 13 | 16 | 19), // Visa
        5 => (51..=55).contains(&prefix(2)) && length == 16 || matches!(prefix(2), 50 | 56..=59), // Mastercard, Maestro
        2 => (2221..=2720).contains(&prefix(4)) && length == 16, // Mastercard 2-series
        3 => {
            matches!(prefix(2), 34 | 37) && length == 15 // Amex
                || prefix(2) == 35 && (16..=19).contains(&length) // JCB
                || ((300..=305).contains(&prefix(3)) || matches!(prefix(2), 36 | 38 | 39))
                    && (14..=19).contains(&length) // Diners
        }
        6 => {
            prefix(4) == 6011
                || prefix(2) == 65
                || (644..=649).contains(&prefix(3))
                || prefix(2) == 62 // UnionPay
                || matches!(prefix(2), 60 | 63 | 67) // Maestro
        }
        _ => false,
    };
    issuer && luhn(text)
}

/// IBAN lengths by country (the SWIFT registry).
const IBAN_LENGTHS: &[(&str, usize)] = &[
    ("AD", 24),
    ("AE", 23),
    ("AL", 28),
    ("AT", 20),
    ("AZ", 28),
    ("BA", 20),
    ("BE", 16),
    ("BG", 22),
    ("BH", 22),
    ("BI", 27),
    ("BR", 29),
    ("BY", 28),
    ("CH", 21),
    ("CR", 22),
    ("CY", 28),
    ("CZ", 24),
    ("DE", 22),
    ("DJ", 27),
    ("DK", 18),
    ("DO", 28),
    ("EE", 20),
    ("EG", 29),
    ("ES", 24),
    ("FI", 18),
    ("FK", 18),
    ("FO", 18),
    ("FR", 27),
    ("GB", 22),
    ("GE", 22),
    ("GI", 23),
    ("GL", 18),
    ("GR", 27),
    ("GT", 28),
    ("HR", 21),
    ("HU", 28),
    ("IE", 22),
    ("IL", 23),
    ("IQ", 23),
    ("IS", 26),
    ("IT", 27),
    ("JO", 30),
    ("KW", 30),
    ("KZ", 20),
    ("LB", 28),
    ("LC", 32),
    ("LI", 21),
    ("LT", 20),
    ("LU", 20),
    ("LV", 21),
    ("LY", 25),
    ("MC", 27),
    ("MD", 24),
    ("ME", 22),
    ("MK", 19),
    ("MN", 20),
    ("MR", 27),
    ("MT", 31),
    ("MU", 30),
    ("NI", 28),
    ("NL", 18),
    ("NO", 15),
    ("OM", 23),
    ("PK", 24),
    ("PL", 28),
    ("PS", 29),
    ("PT", 25),
    ("QA", 29),
    ("RO", 24),
    ("RS", 22),
    ("RU", 33),
    ("SA", 24),
    ("SC", 31),
    ("SD", 18),
    ("SE", 24),
    ("SI", 19),
    ("SK", 24),
    ("SM", 27),
    ("SO", 23),
    ("ST", 25),
    ("SV", 28),
    ("TL", 23),
    ("TN", 24),
    ("TR", 26),
    ("UA", 29),
    ("VA", 22),
    ("VG", 24),
    ("XK", 20),
    ("YE", 30),
];

/// The length in bytes of the IBAN `text` starts with (its country's length of characters,
/// spaces ignored, passing mod-97), if it starts with one: the automaton may have taken a
/// following word in (`NL91ABNA0417164300 Also`).
pub fn iban_prefix(text: &str) -> Option<usize> {
    let length = iban_length(text.as_bytes())?;
    let mut seen = 0;
    for (index, byte) in text.bytes().enumerate() {
        if byte != b' ' {
            seen += 1;
        }
        if seen == length {
            let end = index + 1;
            return iban(&text[..end]).then_some(end);
        }
    }
    None
}

/// The IBAN length of the country that `text` starts with (two capitals), byte by byte (a
/// string compare per country was a `memcmp` call each, on every IBAN-like candidate).
fn iban_length(text: &[u8]) -> Option<usize> {
    let country = text.get(..2)?;
    IBAN_LENGTHS
        .iter()
        .find(|(code, _)| code.as_bytes()[0] == country[0] && code.as_bytes()[1] == country[1])
        .map(|&(_, length)| length)
}

/// An IBAN: the country's length and the mod-97 check (ISO 13616), spaces ignored.
pub fn iban(text: &str) -> bool {
    let compact = || text.bytes().filter(|b| *b != b' ');
    if !compact().all(|b| b.is_ascii_alphanumeric()) {
        return false;
    }
    let count = compact().count();
    let mut country = [0u8; 2];
    for (slot, byte) in country.iter_mut().zip(compact()) {
        *slot = byte;
    }
    if count < 15 || iban_length(&country) != Some(count) {
        return false;
    }
    let mut remainder = 0u32;
    for byte in compact().skip(4).chain(compact().take(4)) {
        let value = match byte {
            b'0'..=b'9' => u32::from(byte - b'0'),
            b'A'..=b'Z' => u32::from(byte - b'A') + 10,
            b'a'..=b'z' => u32::from(byte - b'a') + 10,
            _ => return false,
        };
        remainder = if value >= 10 {
            (remainder * 100 + value) % 97
        } else {
            (remainder * 10 + value) % 97
        };
    }
    remainder == 1
}

/// A US social security number: area not 000, 666 or 900-999; group not 00; serial not 0000;
/// dashes or spaces used consistently; not a famous advertising number.
pub fn us_ssn(text: &str) -> bool {
    if !consistent_separators(text) {
        return false;
    }
    let number: Vec<u8> = digits(text).collect();
    if number.len() != 9 {
        return false;
    }
    let area = u32::from(number[0]) * 100 + u32::from(number[1]) * 10 + u32::from(number[2]);
    let group = number[3] * 10 + number[4];
    let serial = number[5..]
        .iter()
        .fold(0u32, |acc, &d| acc * 10 + u32::from(d));
    area != 0
        && area != 666
        && area < 900
        && group != 0
        && serial != 0
        && !number.iter().all(|&d| d == number[0])
        && text != "078-05-1120"
        && text != "123-45-6789"
}

/// An IPv4 address: four decimal octets of at most 255 with no leading zeros.
pub fn ipv4(text: &str) -> bool {
    text.parse::<Ipv4Addr>().is_ok()
}

/// An IPv6 address: parses, with at least three groups written out (or `::` and two), so that
/// `std::vector`-like code and clock times are not addresses.
pub fn ipv6(text: &str) -> bool {
    if text.parse::<Ipv6Addr>().is_err() {
        return false;
    }
    let groups = text.split(':').filter(|g| !g.is_empty()).count();
    let long_group = text.split(':').any(|g| g.len() >= 3);
    let hex_digits = text.bytes().filter(u8::is_ascii_hexdigit).count();
    groups >= 2 && long_group && hex_digits >= 5
}

const BASE58: &[u8; 58] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/// A Bitcoin legacy address (P2PKH `1...`, P2SH `3...`): base58check with version 0 or 5.
pub fn base58check(text: &str) -> bool {
    if !(26..=35).contains(&text.len()) {
        return false;
    }
    let mut bytes: Vec<u8> = Vec::with_capacity(25);
    for ch in text.bytes() {
        let Some(mut carry) = BASE58.iter().position(|&c| c == ch).map(|v| v as u32) else {
            return false;
        };
        for byte in bytes.iter_mut().rev() {
            carry += u32::from(*byte) * 58;
            *byte = (carry & 0xff) as u8;
            carry >>= 8;
        }
        while carry > 0 {
            bytes.insert(0, (carry & 0xff) as u8);
            carry >>= 8;
        }
    }
    let zeros = text.bytes().take_while(|&b| b == b'1').count();
    let mut decoded = vec![0u8; zeros];
    decoded.extend(bytes);
    if decoded.len() != 25 || !matches!(decoded[0], 0 | 5) {
        return false;
    }
    let checksum = Sha256::digest(Sha256::digest(&decoded[..21]));
    checksum[..4] == decoded[21..]
}

const BECH32: &[u8; 32] = b"qpzry9x8gf2tvdw0s3jn54khce6mua7l";

/// The bech32 checksum's generator (BIP 173).
const GENERATOR: [u32; 5] = [
    0x3b6a_57b2,
    0x2650_8e6d,
    0x1ea1_19fa,
    0x3d42_33dd,
    0x2a14_62b3,
];

/// A Bitcoin segwit address (`bc1...`): the bech32 (v0) or bech32m (v1+) checksum.
pub fn bech32(text: &str) -> bool {
    if text.len() < 14 {
        return false;
    }
    let lower = text.to_ascii_lowercase();
    if lower != text && text.to_ascii_uppercase() != text {
        return false; // mixed case is invalid
    }
    let Some(separator) = lower.rfind('1') else {
        return false;
    };
    let (hrp, data) = (&lower[..separator], &lower[separator + 1..]);
    if hrp != "bc" || data.len() < 6 || text.len() > 90 {
        return false;
    }
    let mut values = Vec::with_capacity(hrp.len() * 2 + 1 + data.len());
    values.extend(hrp.bytes().map(|b| u32::from(b >> 5)));
    values.push(0);
    values.extend(hrp.bytes().map(|b| u32::from(b & 31)));
    for ch in data.bytes() {
        let Some(value) = BECH32.iter().position(|&c| c == ch) else {
            return false;
        };
        values.push(value as u32);
    }
    let mut checksum = 1u32;
    for value in values {
        let top = checksum >> 25;
        checksum = (checksum & 0x01ff_ffff) << 5 ^ value;
        for (bit, generator) in GENERATOR.iter().enumerate() {
            if (top >> bit) & 1 == 1 {
                checksum ^= generator;
            }
        }
    }
    let witness_version = BECH32.iter().position(|&c| c == data.as_bytes()[0]);
    match witness_version {
        Some(0) => checksum == 1,
        Some(1..=16) => checksum == 0x2bc8_30a3,
        _ => false,
    }
}

/// Shannon entropy of the text, in bits per character.
pub fn entropy(text: &str) -> f64 {
    let mut counts = [0u32; 256];
    for byte in text.bytes() {
        counts[usize::from(byte)] += 1;
    }
    let total = text.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / total;
            -p * p.log2()
        })
        .sum()
}

/// A phone number: 7 to 15 digits (E.164 allows 15), separators that group digits the way
/// numbering plans do, and not a date, a clock time or a version.
/// The grouping of a phone number: digits in groups of at most 5 (a bare number aside),
/// separated by one character (a space, dot, dash or slash, or parentheses around a group).
fn phone_grouping(core: &str) -> bool {
    let bytes = core.trim_start_matches('+').as_bytes();
    let mut run = 0;
    let mut groups = 0;
    let mut longest = 0;
    let mut separators = 0;
    let mut opened = false;
    for (index, &byte) in bytes.iter().enumerate() {
        match byte {
            b'0'..=b'9' => {
                if run == 0 {
                    groups += 1;
                }
                run += 1;
                longest = longest.max(run);
                separators = 0;
            }
            b'(' => {
                if opened {
                    return false;
                }
                opened = true;
                run = 0;
            }
            b')' => {
                if !opened || index == 0 || !bytes[index - 1].is_ascii_digit() {
                    return false;
                }
                opened = false;
                run = 0;
            }
            _ => {
                separators += 1;
                run = 0;
                if separators > 1 && !(bytes[index - 1] == b')' || byte == b'(') {
                    return false;
                }
            }
        }
    }
    !opened && (groups == 1 || longest <= 12)
}

pub fn phone(text: &str) -> bool {
    // The number without its extension (x123, ext. 123).
    let core = text.split(['x', 'X', 'e']).next().unwrap_or(text);
    let count = digits(core).count();
    let international = text.starts_with('+') || text.starts_with("00");
    let (low, high) = if international { (8, 15) } else { (9, 13) };
    if !(low..=high).contains(&count) {
        return false;
    }
    // 0.123456789 is a decimal, not a trunk prefix.
    if core.starts_with("0.") || core.starts_with("0,") || !phone_grouping(core.trim_end()) {
        return false;
    }
    let groups: Vec<&str> = core
        .split(|c: char| !c.is_ascii_digit())
        .filter(|g| !g.is_empty())
        .collect();
    if groups.len() >= 3 {
        let (a, b, c) = (groups[0].len(), groups[1].len(), groups[2].len());
        // 2024-01-05, 05.01.2024, 05/01/2024 and the like, even with more after them.
        let date = a == 4 && b <= 2 && c <= 2 || a <= 2 && b <= 2 && c == 4;
        if date && !international {
            return false;
        }
    }
    let first = core.trim_start_matches(['+', '(']).as_bytes();
    let all_same = {
        let mut ds = digits(core);
        let head = ds.next();
        ds.all(|d| Some(d) == head)
    };
    !all_same && (international || first.first() != Some(&b'1') || text.starts_with("1-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cards() {
        assert!(credit_card("4111 1111 1111 1111"));
        assert!(credit_card("4111-1111-1111-1111"));
        assert!(credit_card("5555555555554444"));
        assert!(credit_card("378282246310005"));
        assert!(credit_card("6011111111111117"));
        assert!(credit_card("3530111333300000"));
        assert!(!credit_card("4111 1111 1111 1112"), "Luhn");
        assert!(!credit_card("4111-1111 1111-1111"), "mixed separators");
        assert!(!credit_card("9111111111111111"), "no issuer");
    }

    #[test]
    fn ibans() {
        assert!(iban("DE89370400440532013000"));
        assert!(iban("GB82 WEST 1234 5698 7654 32"));
        assert!(iban("FR1420041010050500013M02606"));
        assert!(!iban("DE89370400440532013001"), "mod 97");
        assert!(!iban("DE8937040044053201300"), "length");
        assert!(!iban("ZZ89370400440532013000"), "country");
    }

    #[test]
    fn ssns() {
        assert!(us_ssn("536-90-4399"));
        assert!(!us_ssn("666-12-3456"));
        assert!(!us_ssn("912-12-3456"));
        assert!(!us_ssn("536-00-4399"));
        assert!(!us_ssn("536-90 4399"));
    }

    #[test]
    fn ips() {
        assert!(ipv4("192.168.1.20"));
        assert!(!ipv4("256.1.1.1"));
        assert!(!ipv4("01.2.3.4"));
        assert!(ipv6("2001:db8:85a3::8a2e:370:7334"));
        assert!(ipv6("fe80::1ff:fe23:4567:890a"));
        assert!(!ipv6("d::"));
        assert!(!ipv6("12:30:45"));
    }

    #[test]
    fn bitcoin() {
        assert!(base58check("1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2"));
        assert!(base58check("3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy"));
        assert!(!base58check("1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN3"));
        assert!(bech32("bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"));
        assert!(bech32(
            "bc1p5d7rjq7g6rdk2yhzks9smlaqtedr4dekq08ge8ztwac72sfr9rusxg3297"
        ));
        assert!(!bech32("bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdp"));
    }

    #[test]
    fn phones() {
        assert!(phone("+44 20 7946 0958"));
        assert!(phone("030 12345678"));
        assert!(phone("(415) 555-0132"));
        assert!(phone("+81 3-1234-5678"));
        assert!(!phone("05.01.2024 14"));
        assert!(!phone("2024-01-05 1430"));
        assert!(!phone("1234"));
    }

    #[test]
    fn entropy_of_random_and_repeated() {
        assert!(entropy("aaaaaaaa") < 0.01);
        assert!(entropy("q8Zr2LmX0vT7kPw4") > 3.5);
    }
}
