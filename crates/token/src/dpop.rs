//! RFC 9449 DPoP proofs, checked the same way wherever a proof is
//! presented: at Leash's own endpoints and in resource servers using
//! `leash-verify`. Also the asymmetric-only algorithm list and the replay
//! cache those checks share.
//!
//! A proof is a JWT with `typ: dpop+jwt`, signed (asymmetric algorithms
//! only) by the public key in its own `jwk` header, naming the request's
//! method (`htm`) and URL (`htu`, without query or fragment), made within
//! [`IAT_WINDOW_SECS`] of now, with a `jti`, and — when it comes with a
//! token — `ath` = base64url(SHA-256 of that token).

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::Deserialize;
use serde_json::Value;

/// JWS algorithms accepted on tokens Leash did not sign (client
/// assertions, external identity tokens, DPoP proofs) and by verifiers:
/// asymmetric only, so never `none` and never HS* (no HS/RS key confusion).
pub const ASYMMETRIC_ALGS: &[jsonwebtoken::Algorithm] = &[
    jsonwebtoken::Algorithm::RS256,
    jsonwebtoken::Algorithm::RS384,
    jsonwebtoken::Algorithm::RS512,
    jsonwebtoken::Algorithm::PS256,
    jsonwebtoken::Algorithm::PS384,
    jsonwebtoken::Algorithm::PS512,
    jsonwebtoken::Algorithm::ES256,
    jsonwebtoken::Algorithm::ES384,
    jsonwebtoken::Algorithm::EdDSA,
];

/// How far a proof's `iat` may be from now.
pub const IAT_WINDOW_SECS: i64 = 60;
/// Largest proof accepted.
const MAX_PROOF: usize = 8 * 1024;

#[derive(Debug, Deserialize)]
struct ProofClaims {
    jti: String,
    htm: String,
    htu: String,
    iat: i64,
    ath: Option<String>,
}

/// A proof that passed [`check_proof`]: whose key signed it, and what a
/// replay cache must remember of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedProof {
    /// RFC 7638 thumbprint of the signing key.
    pub jkt: String,
    jti: String,
    iat: i64,
}

impl CheckedProof {
    /// Record the proof in `seen`; false when it was used before.
    pub fn first_use(&self, seen: &ReplayCache, now_secs: i64) -> bool {
        seen.first_use(
            format!("{}\u{0}{}", self.jkt, self.jti),
            self.iat + IAT_WINDOW_SECS + 5,
            now_secs,
        )
    }
}

/// RFC 7638 SHA-256 thumbprint (base64url) of a public JWK.
pub fn thumbprint(jwk: &Value) -> Option<String> {
    let m = |k: &str| jwk.get(k).and_then(Value::as_str);
    let canonical = match m("kty")? {
        "EC" => format!(
            r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
            m("crv")?,
            m("x")?,
            m("y")?
        ),
        "RSA" => format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, m("e")?, m("n")?),
        "OKP" => format!(r#"{{"crv":"{}","kty":"OKP","x":"{}"}}"#, m("crv")?, m("x")?),
        _ => return None,
    };
    Some(B64.encode(crate::sha256(canonical.as_bytes())))
}

/// The URI a proof must name: scheme, host and path, no query or fragment.
pub fn normalise_htu(uri: &str) -> &str {
    uri.split(['?', '#']).next().unwrap_or(uri)
}

/// Check a DPoP proof for a request (`htm`, `htu`) and, when a token is
/// presented with it, its `ath`; everything but replay (see
/// [`CheckedProof::first_use`]). The error says what to fix.
pub fn check_proof(
    proof: &str,
    htm: &str,
    htu: &str,
    token: Option<&str>,
    now_secs: i64,
) -> Result<CheckedProof, String> {
    let proof = proof.trim();
    if proof.len() > MAX_PROOF {
        return Err("the DPoP proof is larger than 8 KiB".into());
    }
    let header = jsonwebtoken::decode_header(proof)
        .map_err(|e| format!("the DPoP header is not a JWT: {e}"))?;
    if !header
        .typ
        .as_deref()
        .is_some_and(|t| t.eq_ignore_ascii_case("dpop+jwt"))
    {
        return Err("a DPoP proof has `typ: dpop+jwt`".into());
    }
    if !ASYMMETRIC_ALGS.contains(&header.alg) {
        return Err(format!(
            "alg {:?} is not accepted for DPoP; use ES256, RS256, PS256 or EdDSA",
            header.alg
        ));
    }
    let jwk = header
        .jwk
        .as_ref()
        .ok_or("a DPoP proof carries its public key in the `jwk` header")?;
    let jwk_json = serde_json::to_value(jwk).map_err(|_| "the proof's jwk is unreadable")?;
    if ["d", "p", "q", "dp", "dq", "qi", "k"]
        .iter()
        .any(|k| jwk_json.get(k).is_some())
    {
        return Err("the proof's jwk must be a public key".into());
    }
    let jkt = thumbprint(&jwk_json).ok_or("the proof's jwk is not an EC, RSA or OKP public key")?;
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk)
        .map_err(|e| format!("the proof's jwk is unusable: {e}"))?;
    let mut v = jsonwebtoken::Validation::new(header.alg);
    v.validate_exp = false;
    v.validate_aud = false;
    v.set_required_spec_claims::<&str>(&[]);
    let claims = jsonwebtoken::decode::<ProofClaims>(proof, &key, &v)
        .map_err(|e| format!("the DPoP proof was rejected: {e}"))?
        .claims;
    if !claims.htm.eq_ignore_ascii_case(htm) {
        return Err(format!(
            "the proof is for {} but the request is {htm}",
            claims.htm.chars().take(16).collect::<String>()
        ));
    }
    if normalise_htu(&claims.htu) != normalise_htu(htu) {
        return Err(format!("the proof's htu is not {}", normalise_htu(htu)));
    }
    if (now_secs - claims.iat).abs() > IAT_WINDOW_SECS {
        return Err(format!(
            "the proof's iat is more than {IAT_WINDOW_SECS} s from now; make a fresh proof per request"
        ));
    }
    if let Some(t) = token {
        let expected = B64.encode(crate::sha256(t.as_bytes()));
        if claims.ath.as_deref() != Some(expected.as_str()) {
            return Err("the proof's ath is not the SHA-256 of the presented token".into());
        }
    }
    if claims.jti.is_empty() || claims.jti.len() > 256 {
        return Err("the proof needs a jti of 1-256 characters".into());
    }
    Ok(CheckedProof {
        jkt,
        jti: claims.jti,
        iat: claims.iat,
    })
}

/// Keys seen (a proof's or an assertion's `jti`), each until it expires.
#[derive(Debug, Default)]
pub struct ReplayCache {
    seen: Mutex<HashMap<String, i64>>,
}

impl ReplayCache {
    /// Record `key` until `exp` (Unix seconds); false if it was already seen.
    pub fn first_use(&self, key: String, exp: i64, now: i64) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() > 100_000 {
            seen.retain(|_, e| *e >= now);
        }
        match seen.get(&key) {
            Some(e) if *e >= now => false,
            _ => {
                seen.insert(key, exp);
                true
            }
        }
    }
}
