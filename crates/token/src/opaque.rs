//! Opaque `lsh_` tokens with a CRC32 checksum.

use crate::base62;

/// Every opaque Leash token starts with this.
pub const PREFIX: &str = "lsh_";
/// Random characters after the prefix.
pub const RANDOM_LEN: usize = 32;
/// Checksum characters at the end.
pub const CHECKSUM_LEN: usize = 6;
/// Total length of a token.
pub const TOKEN_LEN: usize = PREFIX.len() + RANDOM_LEN + CHECKSUM_LEN;

/// Why a string is not an opaque Leash token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpaqueError {
    #[error("not a Leash opaque token: expected `lsh_` followed by 38 base62 characters")]
    Shape,
    #[error("not a Leash opaque token: its checksum does not match (mistyped or truncated)")]
    Checksum,
    #[error("the system random generator failed")]
    Random,
}

/// A parsed, checksum-valid token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpaqueToken {
    /// SHA-256 of the whole token string: the only thing stored.
    pub hash: [u8; 32],
}

fn checksum(random: &str) -> String {
    base62::encode_u32(crc32fast::hash(random.as_bytes()), CHECKSUM_LEN)
}

/// Make a new token; returns it with its SHA-256.
pub fn generate() -> Result<(String, [u8; 32]), OpaqueError> {
    let mut buf = [0u8; 64];
    loop {
        aws_lc_rs::rand::fill(&mut buf).map_err(|_| OpaqueError::Random)?;
        if let Some(random) = base62::from_random(&buf, RANDOM_LEN) {
            let token = format!("{PREFIX}{random}{}", checksum(&random));
            let hash = crate::sha256(token.as_bytes());
            return Ok((token, hash));
        }
    }
}

/// Check shape and checksum.
pub fn parse(token: &str) -> Result<OpaqueToken, OpaqueError> {
    let body = token.strip_prefix(PREFIX).ok_or(OpaqueError::Shape)?;
    if body.len() != RANDOM_LEN + CHECKSUM_LEN || !body.bytes().all(base62::is_base62) {
        return Err(OpaqueError::Shape);
    }
    let (random, sum) = body.split_at(RANDOM_LEN);
    if checksum(random) != sum {
        return Err(OpaqueError::Checksum);
    }
    Ok(OpaqueToken {
        hash: crate::sha256(token.as_bytes()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn generated_tokens_parse_and_differ() {
        let (a, ha) = generate().unwrap();
        let (b, _) = generate().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), TOKEN_LEN);
        assert_eq!(parse(&a).unwrap().hash, ha);
    }

    #[test]
    fn a_single_changed_character_fails_the_checksum() {
        let (a, _) = generate().unwrap();
        let mut bytes = a.into_bytes();
        bytes[10] = if bytes[10] == b'a' { b'b' } else { b'a' };
        let changed = String::from_utf8(bytes).unwrap();
        assert_eq!(parse(&changed), Err(OpaqueError::Checksum));
        assert_eq!(parse("lsh_short"), Err(OpaqueError::Shape));
        assert_eq!(
            parse("ghp_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
            Err(OpaqueError::Shape)
        );
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "lsh_[0-9A-Za-z_!]{0,50}") {
            let _ = parse(&s);
        }
    }
}
