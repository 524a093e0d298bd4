//! RFC 9449 DPoP: proofs of possession for sender-constrained tokens.
//!
//! A proof is a JWT with `typ: dpop+jwt`, signed by the key in its own `jwk`
//! header, carrying `htm`, `htu`, `iat`, a fresh `jti` and — when it comes
//! with a token — `ath`, the SHA-256 of that token. A token minted with a
//! proof is bound to the key's RFC 7638 thumbprint (`cnf.jkt`), and Leash asks
//! for a matching proof wherever that token is presented to it.

use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::Deserialize;
use serde_json::Value;

use super::oauth::OAuthError;
use crate::App;

/// How far a proof's `iat` may be from now.
pub const IAT_WINDOW_SECS: i64 = 60;
/// Largest proof accepted.
const MAX_PROOF: usize = 8 * 1024;

fn invalid(why: impl Into<String>) -> OAuthError {
    OAuthError {
        status: StatusCode::BAD_REQUEST,
        error: "invalid_dpop_proof",
        description: why.into(),
    }
}

#[derive(Debug, Deserialize)]
struct ProofClaims {
    jti: String,
    htm: String,
    htu: String,
    iat: i64,
    ath: Option<String>,
}

/// RFC 7638 JWK SHA-256 thumbprint (base64url) of a public JWK.
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
    Some(B64.encode(leash_token::sha256(canonical.as_bytes())))
}

/// The URI a proof must name: scheme, host and path, no query or fragment.
fn normalise(uri: &str) -> &str {
    uri.split(['?', '#']).next().unwrap_or(uri)
}

/// Verify a DPoP proof for a request (`htm`, `htu`) and, when a token is
/// presented with it, its `ath`. Returns the key's thumbprint.
pub fn verify_proof(
    app: &App,
    proof: &str,
    htm: &str,
    htu: &str,
    token: Option<&str>,
) -> Result<String, OAuthError> {
    if proof.len() > MAX_PROOF {
        return Err(invalid("the DPoP proof is larger than 8 KiB"));
    }
    let header = jsonwebtoken::decode_header(proof)
        .map_err(|e| invalid(format!("the DPoP header is not a JWT: {e}")))?;
    if !header
        .typ
        .as_deref()
        .is_some_and(|t| t.eq_ignore_ascii_case("dpop+jwt"))
    {
        return Err(invalid("a DPoP proof has `typ: dpop+jwt`"));
    }
    if !super::ASYMMETRIC_ALGS.contains(&header.alg) {
        return Err(invalid(format!(
            "alg {:?} is not accepted for DPoP; use ES256, RS256, PS256 or EdDSA",
            header.alg
        )));
    }
    let jwk = header
        .jwk
        .as_ref()
        .ok_or_else(|| invalid("a DPoP proof carries its public key in the `jwk` header"))?;
    let jwk_json =
        serde_json::to_value(jwk).map_err(|_| invalid("the proof's jwk is unreadable"))?;
    if ["d", "p", "q", "dp", "dq", "qi", "k"]
        .iter()
        .any(|k| jwk_json.get(k).is_some())
    {
        return Err(invalid("the proof's jwk must be a public key"));
    }
    let jkt = thumbprint(&jwk_json)
        .ok_or_else(|| invalid("the proof's jwk is not an EC, RSA or OKP public key"))?;
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk)
        .map_err(|e| invalid(format!("the proof's jwk is unusable: {e}")))?;
    let mut v = jsonwebtoken::Validation::new(header.alg);
    v.validate_exp = false;
    v.validate_aud = false;
    v.set_required_spec_claims::<&str>(&[]);
    let claims = jsonwebtoken::decode::<ProofClaims>(proof, &key, &v)
        .map_err(|e| invalid(format!("the DPoP proof was rejected: {e}")))?
        .claims;
    if !claims.htm.eq_ignore_ascii_case(htm) {
        return Err(invalid(format!(
            "the proof is for {} but the request is {htm}",
            claims.htm.chars().take(16).collect::<String>()
        )));
    }
    if normalise(&claims.htu) != normalise(htu) {
        return Err(invalid(format!("the proof's htu is not {htu}")));
    }
    let now = leash_store::now_ms() / 1000;
    if (now - claims.iat).abs() > IAT_WINDOW_SECS {
        return Err(invalid(
            "the proof's iat is more than 60 s from now; make a fresh proof per request",
        ));
    }
    if let Some(t) = token {
        let expected = B64.encode(leash_token::sha256(t.as_bytes()));
        if claims.ath.as_deref() != Some(expected.as_str()) {
            return Err(invalid(
                "the proof's ath does not match the presented token",
            ));
        }
    }
    if claims.jti.is_empty() || claims.jti.len() > 256 {
        return Err(invalid("the proof needs a jti of 1-256 characters"));
    }
    if !app.dpop_jtis.first_use(
        format!("{jkt}\u{0}{}", claims.jti),
        claims.iat + IAT_WINDOW_SECS + 5,
        now,
    ) {
        return Err(invalid(
            "this DPoP proof was already used (jti replay); make a fresh proof per request",
        ));
    }
    Ok(jkt)
}
