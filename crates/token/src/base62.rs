//! Base62 with the alphabet `0-9A-Za-z`.

/// The alphabet, in value order.
pub const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Encode `n` left-padded with `0` to `width` characters.
pub fn encode_u32(mut n: u32, width: usize) -> String {
    let mut out = vec![b'0'; width];
    let mut i = width;
    while n > 0 && i > 0 {
        i -= 1;
        out[i] = ALPHABET[(n % 62) as usize];
        n /= 62;
    }
    out.into_iter().map(char::from).collect()
}

/// Encode `n` left-padded with `0` to `width` characters (high digits beyond
/// `width` are dropped).
pub fn encode_u64(mut n: u64, width: usize) -> String {
    let mut out = vec![b'0'; width];
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(n % 62) as usize];
        n /= 62;
    }
    out.into_iter().map(char::from).collect()
}

/// Is `c` a base62 character?
pub fn is_base62(c: u8) -> bool {
    c.is_ascii_alphanumeric()
}

/// Map random bytes onto base62 characters without bias (rejection
/// sampling: bytes ≥ 248 are skipped). Returns None if `bytes` ran out.
pub fn from_random(bytes: &[u8], len: usize) -> Option<String> {
    let out: String = bytes
        .iter()
        .filter(|b| **b < 248)
        .take(len)
        .map(|b| char::from(ALPHABET[(*b % 62) as usize]))
        .collect();
    (out.len() == len).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_padded() {
        assert_eq!(encode_u32(0, 6), "000000");
        assert_eq!(encode_u32(61, 2), "0z");
        assert_eq!(encode_u32(62, 2), "10");
        assert_eq!(encode_u32(u32::MAX, 6), "4gfFC3");
    }
}
