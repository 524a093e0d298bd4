//! Signing keys kept in the database, sealed, so that replicas sharing it
//! sign and verify with the same keys. The store never sees a key in the
//! clear: sealing and opening are the server's (it holds the
//! key-encryption key).

use leash_core::Millis;
use serde_json::json;

use super::Writer;
use crate::sql::{Backend, Pool, RowRead, Sql};
use crate::{SealedKey, StoreError};

impl<B: Backend> Writer<B> {
    /// Add `key`; with `first`, only when there is no key yet (replicas
    /// starting together create one first key between them). Returns
    /// whether it was added. Audited as `key.created` or `key.rotated`.
    pub(super) async fn add_signing_key(
        &mut self,
        key: SealedKey,
        first: bool,
        actor: &str,
        now: Millis,
    ) -> Result<bool, StoreError> {
        let newest = Sql::new("SELECT kid FROM signing_keys ORDER BY created_ms DESC LIMIT 1")
            .optional(&mut self.conn)
            .await?
            .map(|r| r.text("kid"))
            .transpose()?;
        if first && newest.is_some() {
            return Ok(false);
        }
        Sql::new("INSERT INTO signing_keys (kid, created_ms, sealed) VALUES ($1, $2, $3)")
            .bind(&key.kid)
            .bind(key.created_ms)
            .bind(key.sealed)
            .run(&mut self.conn)
            .await?;
        let kind = if newest.is_some() {
            "key.rotated"
        } else {
            "key.created"
        };
        self.append(
            now,
            kind,
            actor,
            format!("key:{}", key.kid),
            json!({"previous": newest}),
        );
        Ok(true)
    }
}

/// Every sealed key, newest first.
pub(super) async fn signing_keys<B: Backend>(pool: &Pool<B>) -> Result<Vec<SealedKey>, StoreError> {
    Sql::new("SELECT kid, created_ms, sealed FROM signing_keys ORDER BY created_ms DESC")
        .all(pool)
        .await?
        .iter()
        .map(|r| {
            Ok(SealedKey {
                kid: r.text("kid")?,
                created_ms: r.int("created_ms")?,
                sealed: r.opt_bytes("sealed")?.unwrap_or_default(),
            })
        })
        .collect()
}
