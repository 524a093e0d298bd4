//! Integration tests for leash-scan, one binary grouped by theme.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

mod corpus;
mod properties;
mod robustness;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The test key ring: a JWT is "Leash" when its header names our test kid.
pub fn test_leash_jwt(token: &str) -> bool {
    let header = token.split('.').next().unwrap_or_default();
    URL_SAFE_NO_PAD
        .decode(header)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| {
            v.get("kid")
                .and_then(|k| k.as_str())
                .map(|k| k == "leash-test-kid")
        })
        .unwrap_or(false)
}

/// `prefix` + 30 base62 + the GitHub-scheme checksum (valid or off by one).
pub fn checksummed(prefix: &str, body: &str, valid: bool) -> String {
    let mut sum = leash_token::base62::encode_u32(crc32fast::hash(body.as_bytes()), 6);
    if !valid {
        let last = sum.pop().unwrap();
        sum.push(if last == '0' { '1' } else { '0' });
    }
    format!("{prefix}{body}{sum}")
}
