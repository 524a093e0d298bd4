//! The signing key ring and its JWKS.

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Value, json};

/// Why key material was refused.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("signing key is not a valid Ed25519 PKCS#8 document: {0}")]
    Invalid(String),
    #[error("the system random generator failed while generating a key")]
    Random,
    #[error("the key ring has no keys")]
    Empty,
}

/// One Ed25519 key.
#[derive(Debug)]
pub struct SigningKey {
    kid: String,
    pair: Ed25519KeyPair,
}

impl SigningKey {
    /// Load from PKCS#8 bytes.
    pub fn from_pkcs8(bytes: &[u8]) -> Result<Self, KeyError> {
        let pair =
            Ed25519KeyPair::from_pkcs8(bytes).map_err(|e| KeyError::Invalid(e.to_string()))?;
        let kid = thumbprint(pair.public_key().as_ref());
        Ok(SigningKey { kid, pair })
    }

    /// Generate a key; returns it with the PKCS#8 bytes to persist.
    pub fn generate() -> Result<(Self, Vec<u8>), KeyError> {
        let doc = Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new())
            .map_err(|_| KeyError::Random)?;
        let bytes = doc.as_ref().to_vec();
        Ok((Self::from_pkcs8(&bytes)?, bytes))
    }

    /// RFC 7638 thumbprint, used as `kid`.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Raw 32-byte public key.
    pub fn public_key(&self) -> &[u8] {
        self.pair.public_key().as_ref()
    }

    /// Sign a message.
    pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
        self.pair.sign(msg).as_ref().to_vec()
    }

    /// This key as a public JWK.
    pub fn jwk(&self) -> Value {
        json!({"kty": "OKP", "crv": "Ed25519", "x": B64.encode(self.public_key()), "kid": self.kid, "use": "sig", "alg": "EdDSA"})
    }
}

/// RFC 7638 JWK thumbprint of an Ed25519 public key.
pub fn thumbprint(public: &[u8]) -> String {
    // members in lexicographic order, no whitespace
    let canonical = format!(
        r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
        B64.encode(public)
    );
    B64.encode(crate::sha256(canonical.as_bytes()))
}

/// Signing keys; the first is the active one, the rest verify only.
#[derive(Debug)]
pub struct KeyRing {
    keys: Vec<SigningKey>,
}

impl KeyRing {
    /// A ring whose first key signs.
    pub fn new(keys: Vec<SigningKey>) -> Result<Self, KeyError> {
        if keys.is_empty() {
            return Err(KeyError::Empty);
        }
        Ok(KeyRing { keys })
    }

    /// The key that signs new tokens.
    pub fn active(&self) -> &SigningKey {
        &self.keys[0]
    }

    /// Find a key by `kid`.
    pub fn get(&self, kid: &str) -> Option<&SigningKey> {
        self.keys.iter().find(|k| k.kid == kid)
    }

    /// The public JWKS document.
    pub fn jwks(&self) -> Value {
        json!({"keys": self.keys.iter().map(SigningKey::jwk).collect::<Vec<_>>()})
    }
}
