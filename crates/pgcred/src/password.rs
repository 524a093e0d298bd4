//! Role passwords: random base62, and the SCRAM-SHA-256 verifier that is
//! what Leash sends to PostgreSQL (so the password itself never appears in
//! a `CREATE ROLE` statement, and so never in the database's logs).

use base64::Engine;

/// Characters in a role password (≈238 bits).
pub const PASSWORD_LEN: usize = 40;
/// PBKDF2 iterations of the SCRAM verifier (PostgreSQL's default).
pub const SCRAM_ITERATIONS: u32 = 4096;

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The system random generator failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the system random generator failed")]
pub struct RandomError;

/// A password that never prints.
#[derive(Clone)]
pub struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(…)")
    }
}

impl Password {
    /// A fresh random password of [`PASSWORD_LEN`] base62 characters.
    ///
    /// # Errors
    /// [`RandomError`] when the system random generator fails.
    pub fn generate() -> Result<Password, RandomError> {
        let mut out = String::with_capacity(PASSWORD_LEN);
        let mut buf = [0u8; 64];
        while out.len() < PASSWORD_LEN {
            aws_lc_rs::rand::fill(&mut buf).map_err(|_| RandomError)?;
            // rejection sampling: bytes ≥ 248 would bias the mapping
            out.extend(
                buf.iter()
                    .filter(|b| **b < 248)
                    .take(PASSWORD_LEN - out.len())
                    .map(|b| char::from(ALPHABET[usize::from(*b % 62)])),
            );
        }
        Ok(Password(out))
    }

    /// The password text (goes into the connection string, once).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// SHA-256 of the password: what the registry keeps.
    pub fn sha256(&self) -> [u8; 32] {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, self.0.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        out
    }

    /// The SCRAM-SHA-256 verifier PostgreSQL stores
    /// (`SCRAM-SHA-256$ITER:SALT$STOREDKEY:SERVERKEY`, RFC 5802 / RFC 7677).
    ///
    /// # Errors
    /// [`RandomError`] when no salt can be drawn.
    pub fn scram_verifier(&self) -> Result<String, RandomError> {
        let mut salt = [0u8; 16];
        aws_lc_rs::rand::fill(&mut salt).map_err(|_| RandomError)?;
        Ok(scram_verifier_with(
            self.0.as_bytes(),
            &salt,
            SCRAM_ITERATIONS,
        ))
    }
}

/// The SCRAM-SHA-256 verifier of `password` with `salt`. Base62 passwords
/// are already SASLprep-normalised (ASCII letters and digits).
fn scram_verifier_with(password: &[u8], salt: &[u8], iterations: u32) -> String {
    use aws_lc_rs::{digest, hmac, pbkdf2};
    let mut salted = [0u8; 32];
    let iters = std::num::NonZeroU32::new(iterations).unwrap_or(std::num::NonZeroU32::MIN);
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        iters,
        salt,
        password,
        &mut salted,
    );
    let key = hmac::Key::new(hmac::HMAC_SHA256, &salted);
    let client_key = hmac::sign(&key, b"Client Key");
    let stored_key = digest::digest(&digest::SHA256, client_key.as_ref());
    let server_key = hmac::sign(&key, b"Server Key");
    let b64 = base64::engine::general_purpose::STANDARD;
    format!(
        "SCRAM-SHA-256${iterations}:{}${}:{}",
        b64.encode(salt),
        b64.encode(stored_key.as_ref()),
        b64.encode(server_key.as_ref())
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn passwords_are_long_base62_and_fresh() {
        let a = Password::generate().unwrap();
        let b = Password::generate().unwrap();
        assert_eq!(a.expose().len(), PASSWORD_LEN);
        assert!(a.expose().bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a.expose(), b.expose());
        assert!(!format!("{a:?}").contains(a.expose()));
    }

    /// The expected verifier was computed independently (Python's hashlib
    /// and hmac, RFC 5802's definitions) for password `pencil` with the
    /// RFC 7677 example's salt and iteration count.
    #[test]
    fn the_scram_verifier_matches_an_independent_computation() {
        let b64 = base64::engine::general_purpose::STANDARD;
        let salt = b64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let v = scram_verifier_with(b"pencil", &salt, 4096);
        assert_eq!(
            v,
            "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
        );
    }
}
