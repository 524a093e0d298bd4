//! First start and every start: signing keys and the operator credential
//! in the data directory.

use std::fs;
use std::io::Write;
use std::path::Path;

use leash_token::KeyRing;
use leash_token::keys::SigningKey;

use crate::ServerError;

/// File holding the operator credential (mode 0600).
pub const OPERATOR_TOKEN_FILE: &str = "operator.token";
/// Directory of PKCS#8 signing keys (mode 0700, files 0600).
pub const KEYS_DIR: &str = "keys";

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), ServerError> {
    let io =
        |e: std::io::Error| ServerError::Setup(format!("cannot write {}: {e}", path.display()));
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)
}

/// One signing key as the key directory and the JWKS see it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct KeyInfo {
    pub kid: String,
    /// Unix seconds.
    pub created: i64,
    /// Signs new tokens.
    pub active: bool,
    /// When it leaves the JWKS (Unix seconds): the longest token TTL after the
    /// key that replaced it became active. None for the active key.
    pub retires_at: Option<i64>,
}

fn keys_dir(dir: &Path) -> Result<std::path::PathBuf, ServerError> {
    let keys_dir = dir.join(KEYS_DIR);
    fs::create_dir_all(&keys_dir)
        .map_err(|e| ServerError::Setup(format!("cannot create {}: {e}", keys_dir.display())))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = fs::set_permissions(&keys_dir, fs::Permissions::from_mode(0o700));
    }
    Ok(keys_dir)
}

/// Key files, newest first, with their creation time (from the file name).
fn key_files(keys_dir: &Path) -> Result<Vec<(i64, std::path::PathBuf)>, ServerError> {
    let mut files: Vec<(i64, std::path::PathBuf)> = fs::read_dir(keys_dir)
        .map_err(|e| ServerError::Setup(format!("cannot read {}: {e}", keys_dir.display())))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "pk8"))
        .filter_map(|p| {
            let stamp = p
                .file_name()?
                .to_str()?
                .split('-')
                .next()?
                .parse::<i64>()
                .ok()?;
            // names carry milliseconds; accept older second-precision names too
            let ms = if stamp < 100_000_000_000 {
                stamp * 1000
            } else {
                stamp
            };
            Some((ms, p))
        })
        .collect();
    files.sort();
    files.reverse();
    Ok(files)
}

/// Write a new Ed25519 key, newer than every existing one; it becomes the
/// active key at the next load.
pub fn create_key(dir: &Path) -> Result<String, ServerError> {
    let keys_dir = keys_dir(dir)?;
    let newest = key_files(&keys_dir)?.first().map(|(t, _)| *t).unwrap_or(0);
    let stamp = leash_store::now_ms().max(newest + 1);
    let (key, pk8) = SigningKey::generate().map_err(|e| ServerError::Setup(e.to_string()))?;
    write_private(
        &keys_dir.join(format!("{stamp:015}-{}.pk8", key.kid())),
        &pk8,
    )?;
    tracing::info!(kid = key.kid(), "created Ed25519 signing key");
    Ok(key.kid().to_owned())
}

/// Load the key ring (creating the first key on first start). The newest key
/// signs; an older key stays published, verifying the tokens it signed, until
/// `max_ttl` seconds after the key that replaced it was created; then it is
/// retired (left out of the ring and the JWKS).
pub fn load_keys(
    dir: &Path,
    max_ttl: i64,
    now_ms: i64,
) -> Result<(KeyRing, Vec<KeyInfo>), ServerError> {
    let keys_dir = keys_dir(dir)?;
    if key_files(&keys_dir)?.is_empty() {
        create_key(dir)?;
    }
    ring_of(key_files(&keys_dir)?, max_ttl, now_ms, |p| {
        let bytes = fs::read(p)
            .map_err(|e| ServerError::Setup(format!("cannot read {}: {e}", p.display())))?;
        SigningKey::from_pkcs8(&bytes)
            .map_err(|e| ServerError::Setup(format!("{}: {e}", p.display())))
    })
}

/// The ring of `keys` (creation time in Unix ms, newest first), each opened
/// by `open` unless already retired (see [`load_keys`]).
fn ring_of<K>(
    keys: Vec<(i64, K)>,
    max_ttl: i64,
    now_ms: i64,
    open: impl Fn(&K) -> Result<SigningKey, ServerError>,
) -> Result<(KeyRing, Vec<KeyInfo>), ServerError> {
    let mut ring = Vec::new();
    let mut info = Vec::new();
    let mut replaced_at: Option<i64> = None;
    for (created, k) in keys {
        let retires_at = replaced_at.map(|r| r.saturating_add(max_ttl.saturating_mul(1000)));
        replaced_at = Some(created);
        if retires_at.is_some_and(|r| r <= now_ms) {
            continue;
        }
        let key = open(&k)?;
        info.push(KeyInfo {
            kid: key.kid().to_owned(),
            created: created / 1000,
            active: ring.is_empty(),
            retires_at: retires_at.map(|r| r / 1000),
        });
        ring.push(key);
    }
    Ok((
        KeyRing::new(ring).map_err(|e| ServerError::Setup(e.to_string()))?,
        info,
    ))
}

/// The key-encryption key that seals the signing keys replicas share
/// through the database (AES-256-GCM; 32 bytes). Never logged.
pub struct Kek(aws_lc_rs::aead::LessSafeKey);

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kek(…)")
    }
}

/// What a sealed key starts with: the format version.
const SEALED_V1: u8 = 1;

impl Kek {
    /// A key-encryption key from 32 raw bytes, or their base64 or hex
    /// text (surrounding whitespace ignored).
    pub fn parse(given: &[u8]) -> Result<Kek, ServerError> {
        use base64::Engine as _;
        let text = std::str::from_utf8(given).ok().map(str::trim);
        let bytes = match text {
            Some(t) if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) => {
                hex::decode(t).ok()
            }
            Some(t) if t.len() == 44 || t.len() == 43 => base64::engine::general_purpose::STANDARD
                .decode(t)
                .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(t))
                .ok(),
            _ => None,
        }
        // raw bytes, but not a 32-character passphrase typed into a file
        .or_else(|| {
            let typed = given.iter().all(|b| b.is_ascii_graphic() || *b == b' ');
            (given.len() == 32 && !typed).then(|| given.to_vec())
        })
        .filter(|b| b.len() == 32)
        .ok_or_else(|| {
            ServerError::Setup(
                "the key-encryption key must be 32 random bytes: raw, or as 64 hex digits or base64 (e.g. `openssl rand -base64 32`); a passphrase is not a key".into(),
            )
        })?;
        let key = aws_lc_rs::aead::UnboundKey::new(&aws_lc_rs::aead::AES_256_GCM, &bytes)
            .map_err(|_| ServerError::Setup("the key-encryption key was refused".into()))?;
        Ok(Kek(aws_lc_rs::aead::LessSafeKey::new(key)))
    }

    /// Seal a PKCS#8 key, bound to its `kid` (the associated data).
    pub fn seal(&self, kid: &str, pk8: &[u8]) -> Result<Vec<u8>, ServerError> {
        use aws_lc_rs::aead::{Aad, NONCE_LEN, Nonce};
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce)
            .map_err(|_| ServerError::Setup("no randomness for sealing a key".into()))?;
        let mut body = pk8.to_vec();
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(kid.as_bytes()),
                &mut body,
            )
            .map_err(|_| ServerError::Setup("could not seal a signing key".into()))?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + body.len());
        out.push(SEALED_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Open a key sealed by [`Kek::seal`] under this key for `kid`.
    pub fn open(&self, kid: &str, sealed: &[u8]) -> Result<SigningKey, ServerError> {
        use aws_lc_rs::aead::{Aad, NONCE_LEN, Nonce};
        let refused = || {
            ServerError::Setup(format!(
                "signing key {kid} in the database cannot be opened with this key-encryption key: give every replica the key-encryption key the keys were sealed under"
            ))
        };
        let (version, rest) = sealed.split_first().ok_or_else(refused)?;
        if *version != SEALED_V1 || rest.len() < NONCE_LEN {
            return Err(refused());
        }
        let (nonce, body) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| refused())?;
        let mut body = body.to_vec();
        let pk8 = self
            .0
            .open_in_place(nonce, Aad::from(kid.as_bytes()), &mut body)
            .map_err(|_| refused())?;
        let key = SigningKey::from_pkcs8(pk8)
            .map_err(|e| ServerError::Setup(format!("signing key {kid}: {e}")))?;
        if key.kid() != kid {
            return Err(refused());
        }
        Ok(key)
    }
}

/// Where the signing keys live.
#[derive(Debug)]
pub enum KeySource {
    /// PKCS#8 files in the data directory (one server).
    Dir(std::path::PathBuf),
    /// Sealed in the database, shared by every replica on it.
    Database(Kek),
}

impl KeySource {
    /// The key ring in force now (see [`load_keys`]).
    pub async fn load(
        &self,
        store: &dyn leash_store::Store,
        max_ttl: i64,
        now_ms: i64,
    ) -> Result<(KeyRing, Vec<KeyInfo>), ServerError> {
        match self {
            KeySource::Dir(dir) => load_keys(dir, max_ttl, now_ms),
            KeySource::Database(kek) => load_database_keys(store, kek, max_ttl, now_ms).await,
        }
    }
}

/// A fresh sealed key, newer than `newest` (Unix ms).
fn sealed_key(kek: &Kek, newest: i64) -> Result<leash_store::SealedKey, ServerError> {
    let (key, pk8) = SigningKey::generate().map_err(|e| ServerError::Setup(e.to_string()))?;
    Ok(leash_store::SealedKey {
        kid: key.kid().to_owned(),
        created_ms: leash_store::now_ms().max(newest + 1),
        sealed: kek.seal(key.kid(), &pk8)?,
    })
}

/// On first start against a database with no keys: move the data
/// directory's keys there (a server that ran alone before becomes the
/// first replica and its tokens keep verifying), or create the first key.
/// Replicas starting together agree on one first key.
pub async fn seed_database_keys(
    store: &dyn leash_store::Store,
    kek: &Kek,
    dir: &Path,
) -> Result<(), ServerError> {
    if !store.signing_keys().await?.is_empty() {
        return Ok(());
    }
    let keys_dir = dir.join(KEYS_DIR);
    let mut local = if keys_dir.is_dir() {
        key_files(&keys_dir)?
    } else {
        Vec::new()
    };
    // oldest first, so the newest is added last and signs
    local.reverse();
    let mut first = true;
    for (created_ms, path) in local {
        let pk8 = fs::read(&path)
            .map_err(|e| ServerError::Setup(format!("cannot read {}: {e}", path.display())))?;
        let key = SigningKey::from_pkcs8(&pk8)
            .map_err(|e| ServerError::Setup(format!("{}: {e}", path.display())))?;
        let sealed = leash_store::SealedKey {
            kid: key.kid().to_owned(),
            created_ms,
            sealed: kek.seal(key.kid(), &pk8)?,
        };
        if !store.add_signing_key(sealed, first, "leash").await? {
            return Ok(()); // another replica seeded the database first
        }
        tracing::info!(
            kid = key.kid(),
            "moved a signing key into the database (sealed)"
        );
        first = false;
    }
    if first {
        store
            .add_signing_key(sealed_key(kek, 0)?, true, "leash")
            .await?;
    }
    Ok(())
}

/// The key ring from the database's sealed keys (see [`load_keys`]).
async fn load_database_keys(
    store: &dyn leash_store::Store,
    kek: &Kek,
    max_ttl: i64,
    now_ms: i64,
) -> Result<(KeyRing, Vec<KeyInfo>), ServerError> {
    let keys = store.signing_keys().await?;
    if keys.is_empty() {
        return Err(ServerError::Setup(
            "the database holds no signing key".into(),
        ));
    }
    ring_of(
        keys.into_iter().map(|k| (k.created_ms, k)).collect(),
        max_ttl,
        now_ms,
        |k| kek.open(&k.kid, &k.sealed),
    )
}

/// Add a new sealed signing key to the database (audited `key.rotated` by
/// the store); returns its kid.
pub async fn rotate_database_key(
    store: &dyn leash_store::Store,
    kek: &Kek,
    actor: &str,
) -> Result<String, ServerError> {
    let newest = store
        .signing_keys()
        .await?
        .first()
        .map_or(0, |k| k.created_ms);
    let key = sealed_key(kek, newest)?;
    let kid = key.kid.clone();
    store.add_signing_key(key, false, actor).await?;
    Ok(kid)
}

/// Load the operator credential's SHA-256, creating the credential on
/// first start. The server keeps only the hash in memory.
pub fn load_or_create_operator(dir: &Path) -> Result<[u8; 32], ServerError> {
    let path = dir.join(OPERATOR_TOKEN_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => {
            let t = text.trim();
            if t.len() < 32 {
                return Err(ServerError::Setup(format!(
                    "{} is too short to be an operator credential; delete it and restart to create a new one",
                    path.display()
                )));
            }
            Ok(leash_token::sha256(t.as_bytes()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let (secret, _) =
                leash_token::opaque::generate().map_err(|e| ServerError::Setup(e.to_string()))?;
            let cred = format!("lshop_{}", &secret[4..]);
            write_private(&path, format!("{cred}\n").as_bytes())?;
            tracing::info!(path = %path.display(), "created operator credential (mode 0600)");
            Ok(leash_token::sha256(cred.as_bytes()))
        }
        Err(e) => Err(ServerError::Setup(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    // Test code: an unexpected error should fail the test loudly.
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    const HEX: &str = "8d35852995fdaad85ef128801543b3318799319f668bc7a6727b9ab768fe2b00";

    #[test]
    fn a_kek_is_32_random_bytes_in_hex_base64_or_raw_and_never_a_passphrase() {
        let raw = hex::decode(HEX).unwrap();
        let b64 = "jTWFKZX9qthe8SiAFUOzMYeZMZ9mi8emcnuat2j+KwA=";
        for given in [
            HEX.as_bytes(),
            format!("{HEX}\n").as_bytes(),
            b64.as_bytes(),
            &raw,
        ] {
            Kek::parse(given).unwrap();
        }
        for bad in [
            &b"correct horse battery staple 123"[..], // 32 typed characters
            b"short",
            &raw[..31],
            b"zz35852995fdaad85ef128801543b3318799319f668bc7a6727b9ab768fe2b00",
        ] {
            let e = Kek::parse(bad).unwrap_err().to_string();
            assert!(e.contains("32 random bytes"), "{e}");
        }
    }

    #[test]
    fn a_sealed_key_opens_only_under_its_kek_and_its_kid() {
        let kek = Kek::parse(HEX.as_bytes()).unwrap();
        let other = Kek::parse(&[7u8; 32]).unwrap();
        let (key, pk8) = SigningKey::generate().unwrap();
        let sealed = kek.seal(key.kid(), &pk8).unwrap();
        assert!(
            !sealed.windows(pk8.len()).any(|w| w == pk8),
            "sealed in the clear"
        );
        assert_eq!(kek.open(key.kid(), &sealed).unwrap().kid(), key.kid());
        for refused in [
            other.open(key.kid(), &sealed),
            kek.open("another-kid", &sealed),
            kek.open(key.kid(), &sealed[..sealed.len() - 1]),
            kek.open(key.kid(), &[]),
        ] {
            let e = refused.map(|_| ()).unwrap_err().to_string();
            assert!(e.contains("cannot be opened"), "{e}");
        }
    }
}
