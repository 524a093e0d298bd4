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

/// Load the key ring, generating the first key on first start. The newest
/// key (by file name, which starts with its creation time) signs.
pub fn load_or_create_keys(dir: &Path) -> Result<KeyRing, ServerError> {
    let keys_dir = dir.join(KEYS_DIR);
    fs::create_dir_all(&keys_dir)
        .map_err(|e| ServerError::Setup(format!("cannot create {}: {e}", keys_dir.display())))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = fs::set_permissions(&keys_dir, fs::Permissions::from_mode(0o700));
    }
    let mut names: Vec<_> = fs::read_dir(&keys_dir)
        .map_err(|e| ServerError::Setup(format!("cannot read {}: {e}", keys_dir.display())))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "pk8"))
        .collect();
    names.sort();
    names.reverse();
    let mut keys = Vec::new();
    for p in names {
        let bytes = fs::read(&p)
            .map_err(|e| ServerError::Setup(format!("cannot read {}: {e}", p.display())))?;
        keys.push(
            SigningKey::from_pkcs8(&bytes)
                .map_err(|e| ServerError::Setup(format!("{}: {e}", p.display())))?,
        );
    }
    if keys.is_empty() {
        let (key, pk8) = SigningKey::generate().map_err(|e| ServerError::Setup(e.to_string()))?;
        let stamp = time::OffsetDateTime::now_utc().unix_timestamp();
        write_private(
            &keys_dir.join(format!("{stamp:012}-{}.pk8", key.kid())),
            &pk8,
        )?;
        tracing::info!(kid = key.kid(), "created Ed25519 signing key");
        keys.push(key);
    }
    KeyRing::new(keys).map_err(|e| ServerError::Setup(e.to_string()))
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
