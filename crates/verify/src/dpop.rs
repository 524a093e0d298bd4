//! RFC 9449 DPoP proofs for sender-constrained tokens, checked by the
//! resource server with the same rules Leash applies at its own endpoints
//! ([`leash_token::dpop::check_proof`]).
//!
//! A token with `cnf.jkt` is only accepted with a proof signed by the key
//! whose RFC 7638 thumbprint is `jkt`, naming this request's method and URL,
//! made within [`IAT_WINDOW_SECS`] of now, carrying `ath` = base64url(SHA-256
//! of the token), and with a `jti` not seen before.

pub use leash_token::dpop::{IAT_WINDOW_SECS, ReplayCache, thumbprint};

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

/// Check `ctx`'s proof for `token`, bound to thumbprint `jkt`, once only.
pub(crate) fn verify_proof(
    ctx: &DpopContext,
    token: &str,
    jkt: &str,
    replay: &ReplayCache,
    now_secs: i64,
) -> Result<(), String> {
    let checked =
        leash_token::dpop::check_proof(&ctx.proof, &ctx.method, &ctx.url, Some(token), now_secs)?;
    if checked.jkt != jkt {
        return Err(
            "the DPoP proof is signed by a key other than the one the token is bound to (cnf.jkt)"
                .into(),
        );
    }
    if !checked.first_use(replay, now_secs) {
        return Err(
            "this DPoP proof was already used (jti replay); make a fresh proof per request".into(),
        );
    }
    Ok(())
}
