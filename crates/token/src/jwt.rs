//! RFC 9068 JWT access tokens signed with EdDSA.

use aws_lc_rs::signature::{ED25519, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::{Deserialize, Serialize};

use crate::keys::KeyRing;

/// Longest JWT we will look at.
pub const MAX_JWT_LEN: usize = 16 * 1024;

/// `aud` as one string or several.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    /// From a list: one entry serialises as a string (RFC 7519 §4.1.3).
    pub fn from_list(list: &[String]) -> Self {
        match list {
            [one] => Audience::One(one.clone()),
            many => Audience::Many(many.to_vec()),
        }
    }
    /// As a list.
    pub fn to_list(&self) -> Vec<String> {
        match self {
            Audience::One(a) => vec![a.clone()],
            Audience::Many(m) => m.clone(),
        }
    }
}

/// The claims of a Leash access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub aud: Audience,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    pub client_id: String,
    pub scope: String,
    /// The accountable owner's name.
    pub owner: String,
    /// The workload's name.
    pub workload: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub workflow: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub run: Option<i64>,
    /// RFC 8693 §4.1 actor chain, on delegated tokens.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub act: Option<leash_core::Actor>,
    /// RFC 8693 §4.4: who may act for this token.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub may_act: Option<leash_core::Actor>,
    /// RFC 9449 confirmation: `{"jkt": …}` on DPoP-bound tokens.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub cnf: Option<Confirmation>,
}

/// RFC 7800 / RFC 9449 `cnf` claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmation {
    pub jkt: String,
}

#[derive(Serialize, Deserialize)]
struct Header<'a> {
    alg: &'a str,
    typ: &'a str,
    kid: &'a str,
}

/// Why a JWT was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("token is malformed: {0}")]
    Malformed(String),
    #[error("token was not signed by a key of this Leash (unknown kid `{0}`)")]
    UnknownKey(String),
    #[error("token signature does not verify")]
    BadSignature,
    #[error("token header is not `alg: EdDSA, typ: at+jwt`")]
    WrongType,
    #[error("could not encode the token: {0}")]
    Encode(String),
}

/// Sign claims with the ring's active key.
pub fn sign(ring: &KeyRing, claims: &AccessClaims) -> Result<String, JwtError> {
    sign_typed(ring, "at+jwt", claims)
}

/// Sign any JSON claims as a JWS (`alg: EdDSA`, the active key's `kid`)
/// with header `typ` — e.g. `secevent+jwt` for RFC 8417 Security Event Tokens.
pub fn sign_typed(ring: &KeyRing, typ: &str, claims: &impl Serialize) -> Result<String, JwtError> {
    let key = ring.active();
    let header = serde_json::to_vec(&Header {
        alg: "EdDSA",
        typ,
        kid: key.kid(),
    })
    .map_err(|e| JwtError::Encode(e.to_string()))?;
    let payload = serde_json::to_vec(claims).map_err(|e| JwtError::Encode(e.to_string()))?;
    let mut out = String::with_capacity(header.len() * 2 + payload.len() * 2 + 90);
    B64.encode_string(&header, &mut out);
    out.push('.');
    B64.encode_string(&payload, &mut out);
    let sig = key.sign(out.as_bytes());
    out.push('.');
    B64.encode_string(&sig, &mut out);
    Ok(out)
}

/// Verify signature and header; return the claims. Does not judge expiry.
pub fn verify(ring: &KeyRing, token: &str) -> Result<AccessClaims, JwtError> {
    let bad = |why: &str| JwtError::Malformed(why.to_owned());
    if token.len() > MAX_JWT_LEN {
        return Err(bad("longer than 16 KiB"));
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("a JWT has three dot-separated parts"));
    };
    let header_bytes = B64.decode(h).map_err(|_| bad("header is not base64url"))?;
    let header: Header<'_> = serde_json::from_slice(&header_bytes)
        .map_err(|_| bad("header is not a JSON object with alg, typ and kid"))?;
    if header.alg != "EdDSA" || !header.typ.eq_ignore_ascii_case("at+jwt") {
        return Err(JwtError::WrongType);
    }
    let key = ring
        .get(header.kid)
        .ok_or_else(|| JwtError::UnknownKey(header.kid.chars().take(64).collect()))?;
    let sig = B64
        .decode(s)
        .map_err(|_| bad("signature is not base64url"))?;
    let signed = &token[..h.len() + 1 + p.len()];
    UnparsedPublicKey::new(&ED25519, key.public_key())
        .verify(signed.as_bytes(), &sig)
        .map_err(|_| JwtError::BadSignature)?;
    let payload = B64.decode(p).map_err(|_| bad("payload is not base64url"))?;
    serde_json::from_slice(&payload)
        .map_err(|e| bad(&format!("claims are not Leash access-token claims: {e}")))
}

/// Does this look like a JWT (three base64url parts)? Cheap, no crypto.
pub fn looks_like_jwt(s: &str) -> bool {
    s.len() > 20 && s.starts_with("eyJ") && s.bytes().filter(|b| *b == b'.').count() == 2
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SigningKey;

    fn claims() -> AccessClaims {
        AccessClaims {
            iss: "http://127.0.0.1:8420".into(),
            sub: "spiffe://acme/bot".into(),
            aud: Audience::One("api".into()),
            exp: 2_000_000_000,
            iat: 1_900_000_000,
            nbf: 1_900_000_000,
            jti: "tok_1".into(),
            client_id: "bot".into(),
            scope: "tickets:read".into(),
            owner: "alice".into(),
            workload: "bot".into(),
            workflow: Some("triage".into()),
            run: Some(42),
            act: None,
            may_act: None,
            cnf: None,
        }
    }

    #[test]
    fn sign_then_verify_and_reject_tampering() {
        let (k, pk8) = SigningKey::generate().unwrap();
        let kid = k.kid().to_owned();
        let ring = KeyRing::new(vec![k]).unwrap();
        let t = sign(&ring, &claims()).unwrap();
        assert_eq!(verify(&ring, &t).unwrap(), claims());
        // reload from pkcs8: same kid
        assert_eq!(SigningKey::from_pkcs8(&pk8).unwrap().kid(), kid);

        let mut parts: Vec<&str> = t.split('.').collect();
        let forged = B64.encode(
            serde_json::to_vec(&AccessClaims {
                scope: "repo:admin".into(),
                ..claims()
            })
            .unwrap(),
        );
        parts[1] = &forged;
        assert_eq!(verify(&ring, &parts.join(".")), Err(JwtError::BadSignature));

        let (other, _) = SigningKey::generate().unwrap();
        let other_ring = KeyRing::new(vec![other]).unwrap();
        assert!(matches!(
            verify(&other_ring, &t),
            Err(JwtError::UnknownKey(_))
        ));
        assert!(matches!(verify(&ring, "a.b"), Err(JwtError::Malformed(_))));
    }

    proptest::proptest! {
        #[test]
        fn verify_never_panics_on_garbage(s in "[A-Za-z0-9_.\\-]{0,400}") {
            let (k, _) = SigningKey::generate().unwrap();
            let ring = KeyRing::new(vec![k]).unwrap();
            let _ = verify(&ring, &s);
            let _ = verify(&ring, &format!("eyJ{s}"));
        }
    }

    #[test]
    fn header_says_at_jwt() {
        let (k, _) = SigningKey::generate().unwrap();
        let ring = KeyRing::new(vec![k]).unwrap();
        let t = sign(&ring, &claims()).unwrap();
        let h: serde_json::Value =
            serde_json::from_slice(&B64.decode(t.split('.').next().unwrap()).unwrap()).unwrap();
        assert_eq!(h["typ"], "at+jwt");
        assert_eq!(h["alg"], "EdDSA");
        assert_eq!(h["kid"], ring.active().kid());
    }
}
