//! RFC 9449 DPoP: proofs of possession for sender-constrained tokens.
//!
//! A proof is a JWT with `typ: dpop+jwt`, signed by the key in its own `jwk`
//! header, carrying `htm`, `htu`, `iat`, a fresh `jti` and — when it comes
//! with a token — `ath`, the SHA-256 of that token. A token minted with a
//! proof is bound to the key's RFC 7638 thumbprint (`cnf.jkt`), and Leash asks
//! for a matching proof wherever that token is presented to it.

use axum::http::StatusCode;

use super::oauth::OAuthError;
use crate::App;

pub use leash_token::dpop::{IAT_WINDOW_SECS, thumbprint};

fn invalid(why: impl Into<String>) -> OAuthError {
    OAuthError {
        status: StatusCode::BAD_REQUEST,
        error: "invalid_dpop_proof",
        description: why.into(),
    }
}

/// Verify a DPoP proof for a request (`htm`, `htu`) and, when a token is
/// presented with it, its `ath`; once only (replay). Returns the key's
/// thumbprint.
pub fn verify_proof(
    app: &App,
    proof: &str,
    htm: &str,
    htu: &str,
    token: Option<&str>,
) -> Result<String, OAuthError> {
    let now = leash_store::now_ms() / 1000;
    let checked = leash_token::dpop::check_proof(proof, htm, htu, token, now).map_err(invalid)?;
    if !checked.first_use(&app.dpop_jtis, now) {
        return Err(invalid(
            "this DPoP proof was already used (jti replay); make a fresh proof per request",
        ));
    }
    Ok(checked.jkt)
}
