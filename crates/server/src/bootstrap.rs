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
    let files = key_files(&keys_dir)?;
    let mut keys = Vec::new();
    let mut info = Vec::new();
    let mut replaced_at: Option<i64> = None;
    for (created, p) in files {
        let retires_at = replaced_at.map(|r| r.saturating_add(max_ttl.saturating_mul(1000)));
        replaced_at = Some(created);
        if retires_at.is_some_and(|r| r <= now_ms) {
            continue;
        }
        let bytes = fs::read(&p)
            .map_err(|e| ServerError::Setup(format!("cannot read {}: {e}", p.display())))?;
        let key = SigningKey::from_pkcs8(&bytes)
            .map_err(|e| ServerError::Setup(format!("{}: {e}", p.display())))?;
        info.push(KeyInfo {
            kid: key.kid().to_owned(),
            created: created / 1000,
            active: keys.is_empty(),
            retires_at: retires_at.map(|r| r / 1000),
        });
        keys.push(key);
    }
    Ok((
        KeyRing::new(keys).map_err(|e| ServerError::Setup(e.to_string()))?,
        info,
    ))
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
