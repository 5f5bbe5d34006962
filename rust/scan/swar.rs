//! Eight bytes at a time in a `u64` (safe code, no SIMD intrinsics): per-byte tests whose
//! flags are the high bit of each byte, exact because no carry or borrow crosses a byte.

pub const ONES: u64 = 0x0101_0101_0101_0101;
pub const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The (up to) eight bytes at `at`, zeros past the end, as a little-endian word.
pub fn word_at(bytes: &[u8], at: usize) -> u64 {
    if let Some(eight) = bytes.get(at..at + 8) {
        return u64::from_le_bytes(eight.try_into().expect("8 bytes"));
    }
    let mut word = [0u8; 8];
    let rest = bytes.get(at..).unwrap_or_default();
    word[..rest.len()].copy_from_slice(rest);
    u64::from_le_bytes(word)
}

/// Flags the bytes of `x` that are `n` (<= 0x80) or more, ignoring each byte's high bit.
pub fn at_least(x: u64, n: u8) -> u64 {
    ((x | HIGHS) - ONES * u64::from(n)) & HIGHS
}

/// Flags the bytes of `x` in `low..=high` (ASCII bounds).
pub fn between(x: u64, low: u8, high: u8) -> u64 {
    at_least(x, low) & !at_least(x, high + 1) & !x & HIGHS
}

/// Flags the bytes of `x` equal to `byte`.
pub fn equal(x: u64, byte: u8) -> u64 {
    let differ = x ^ (ONES * u64::from(byte));
    !(((differ & !HIGHS) + !HIGHS) | differ) & HIGHS
}

/// Eight bytes with ASCII capitals lowercased (the rest unchanged).
pub fn lowercase(x: u64) -> u64 {
    x | (between(x, b'A', b'Z') >> 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_value() {
        let all: Vec<u8> = (0..=255).collect();
        for chunk in all.chunks(8) {
            let word = word_at(chunk, 0);
            let lowered = lowercase(word).to_le_bytes();
            assert_eq!(lowered.as_slice(), chunk.to_ascii_lowercase().as_slice());
            for (low, high) in [(0x30, 0x3A), (b'A', b'Z'), (0, 0x2A), (b'a', b'f')] {
                let flags = between(word, low, high).to_le_bytes();
                for (byte, flag) in chunk.iter().zip(flags) {
                    assert_eq!(
                        flag == 0x80,
                        (low..=high).contains(byte),
                        "{byte} {low} {high}"
                    );
                }
            }
            for target in [0, b' ', b'.', 0x80, 0xFF] {
                let flags = equal(word, target).to_le_bytes();
                for (byte, flag) in chunk.iter().zip(flags) {
                    assert_eq!(flag == 0x80, *byte == target, "{byte} == {target}");
                }
            }
        }
        assert_eq!(word_at(b"ab", 0), u64::from_le_bytes(*b"ab\0\0\0\0\0\0"));
        assert_eq!(word_at(b"ab", 2), 0);
        assert_eq!(word_at(b"ab", 9), 0);
        assert_eq!(word_at(b"abcdefghij", 3), u64::from_le_bytes(*b"defghij\0"));
    }
}
