//! Leash token formats.
//!
//! * **JWT access tokens** (RFC 9068): `typ: at+jwt`, signed with Ed25519
//!   (`alg: EdDSA`) by the active key of a [`KeyRing`], `kid` = the key's
//!   RFC 7638 thumbprint; published as a JWKS.
//! * **Opaque tokens**: `lsh_` + 32 base62 characters + a 6-character base62
//!   CRC32 of those 32 (the GitHub token scheme), so a scanner can recognise
//!   one with certainty offline. Only the SHA-256 of the whole token is ever
//!   stored.
//!
//! The crate does no IO: key material comes in and goes out as PKCS#8 bytes.
//!
//! ```
//! use leash_token::opaque;
//!
//! let (token, hash) = opaque::generate().unwrap();
//! assert!(token.starts_with("lsh_") && token.len() == 42);
//! assert_eq!(opaque::parse(&token).unwrap().hash, hash);
//! assert!(opaque::parse("lsh_notavalidtoken").is_err());
//! ```

pub mod base62;
pub mod dpop;
pub mod jwt;
pub mod keys;
pub mod opaque;

pub use jwt::{AccessClaims, JwtError};
pub use keys::{KeyError, KeyRing};

/// What a presented credential string is, before any registry lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presented {
    /// A JWT whose signature verified against our key ring.
    Jwt(Box<AccessClaims>),
    /// A well-formed opaque token (checksum valid); its SHA-256.
    Opaque([u8; 32]),
}

/// Recognise a token string: verify a JWT's signature, or an opaque token's
/// checksum. Expiry is not judged here; the registry's status is the truth.
pub fn recognise(ring: &KeyRing, token: &str) -> Result<Presented, JwtError> {
    if token.starts_with(opaque::PREFIX) {
        let o = opaque::parse(token).map_err(|e| JwtError::Malformed(e.to_string()))?;
        return Ok(Presented::Opaque(o.hash));
    }
    jwt::verify(ring, token).map(|c| Presented::Jwt(Box::new(c)))
}

/// SHA-256 of bytes.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref());
    out
}

/// A fresh token id (`jti`): `tok_` + 8 base62 characters of the issue
/// time in milliseconds + 14 random base62 characters (≈83 bits).
///
/// Time first keeps ids roughly ordered, so inserting a token touches the
/// right-hand edge of the id index instead of a random page: that is most of
/// the difference between 8k and 20k+ durable mints a second at 1M tokens.
/// Ids are identifiers, not secrets; the random part makes them unguessable.
pub fn new_token_id(now_ms: i64) -> Result<String, opaque::OpaqueError> {
    let mut buf = [0u8; 32];
    let ms = u64::try_from(now_ms).unwrap_or_default();
    let mut out = String::with_capacity(26);
    out.push_str("tok_");
    out.push_str(&base62::encode_u64(ms, 8));
    loop {
        aws_lc_rs::rand::fill(&mut buf).map_err(|_| opaque::OpaqueError::Random)?;
        if let Some(r) = base62::from_random(&buf, 14) {
            out.push_str(&r);
            return Ok(out);
        }
    }
}
