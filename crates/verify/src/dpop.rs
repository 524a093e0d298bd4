//! RFC 9449 DPoP proofs for sender-constrained tokens, checked by the
//! resource server: the same rules Leash applies at its own endpoints.
//!
//! A token with `cnf.jkt` is only accepted with a proof that is a JWT with
//! `typ: dpop+jwt`, signed (asymmetric algorithms only) by the public key in
//! its own `jwk` header whose RFC 7638 thumbprint is `jkt`, naming this
//! request's method (`htm`) and URL (`htu`, without query or fragment), made
//! within [`IAT_WINDOW_SECS`] of now, carrying `ath` = base64url(SHA-256 of
//! the token), and with a `jti` not seen before.

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::Deserialize;
use serde_json::Value;

use crate::ASYMMETRIC_ALGS;

/// How far a proof's `iat` may be from now.
pub const IAT_WINDOW_SECS: i64 = 60;
/// Largest proof accepted.
const MAX_PROOF: usize = 8 * 1024;

/// The DPoP proof that came with a request, and the request it must name.
#[derive(Debug, Clone)]
pub struct DpopContext {
    /// The `DPoP` header value.
    pub proof: String,
    /// The request method, e.g. `GET`.
    pub method: String,
    /// The request URL as the client addressed it, e.g.
    /// `https://api.example.com/reports` (query and fragment are ignored).
    pub url: String,
}

#[derive(Debug, Deserialize)]
struct ProofClaims {
    jti: String,
    htm: String,
    htu: String,
    iat: i64,
    ath: Option<String>,
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
    Some(B64.encode(leash_token::sha256(canonical.as_bytes())))
}

fn normalise(uri: &str) -> &str {
    uri.split(['?', '#']).next().unwrap_or(uri)
}

/// Proof `jti`s already used, per key, until their window closes.
#[derive(Debug, Default)]
pub(crate) struct ProofReplay {
    seen: Mutex<HashMap<String, i64>>,
}

impl ProofReplay {
    fn first_use(&self, key: String, until: i64, now: i64) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() > 100_000 {
            seen.retain(|_, e| *e >= now);
        }
        match seen.get(&key) {
            Some(e) if *e >= now => false,
            _ => {
                seen.insert(key, until);
                true
            }
        }
    }
}

/// Check `ctx`'s proof for `token`, bound to thumbprint `jkt`.
pub(crate) fn verify_proof(
    ctx: &DpopContext,
    token: &str,
    jkt: &str,
    replay: &ProofReplay,
    now_secs: i64,
) -> Result<(), String> {
    let proof = ctx.proof.trim();
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
    let proof_jkt =
        thumbprint(&jwk_json).ok_or("the proof's jwk is not an EC, RSA or OKP public key")?;
    if proof_jkt != jkt {
        return Err(
            "the DPoP proof is signed by a key other than the one the token is bound to (cnf.jkt)"
                .into(),
        );
    }
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk)
        .map_err(|e| format!("the proof's jwk is unusable: {e}"))?;
    let mut v = jsonwebtoken::Validation::new(header.alg);
    v.validate_exp = false;
    v.validate_aud = false;
    v.set_required_spec_claims::<&str>(&[]);
    let claims = jsonwebtoken::decode::<ProofClaims>(proof, &key, &v)
        .map_err(|e| format!("the DPoP proof was rejected: {e}"))?
        .claims;
    if !claims.htm.eq_ignore_ascii_case(&ctx.method) {
        return Err(format!(
            "the proof is for {} but the request is {}",
            claims.htm.chars().take(16).collect::<String>(),
            ctx.method
        ));
    }
    if normalise(&claims.htu) != normalise(&ctx.url) {
        return Err(format!("the proof's htu is not {}", normalise(&ctx.url)));
    }
    if (now_secs - claims.iat).abs() > IAT_WINDOW_SECS {
        return Err(format!(
            "the proof's iat is more than {IAT_WINDOW_SECS} s from now; make a fresh proof per request"
        ));
    }
    let expected = B64.encode(leash_token::sha256(token.as_bytes()));
    if claims.ath.as_deref() != Some(expected.as_str()) {
        return Err("the proof's ath is not the SHA-256 of the presented token".into());
    }
    if claims.jti.is_empty() || claims.jti.len() > 256 {
        return Err("the proof needs a jti of 1-256 characters".into());
    }
    if !replay.first_use(
        format!("{jkt}\u{0}{}", claims.jti),
        claims.iat + IAT_WINDOW_SECS + 5,
        now_secs,
    ) {
        return Err(
            "this DPoP proof was already used (jti replay); make a fresh proof per request".into(),
        );
    }
    Ok(())
}
