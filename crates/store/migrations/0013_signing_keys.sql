-- Signing keys shared by replicas: each PKCS#8 key sealed (AES-256-GCM)
-- under the operator's key-encryption key, never stored in the clear.
CREATE TABLE signing_keys (
    kid        TEXT PRIMARY KEY,
    created_ms INTEGER NOT NULL,
    sealed     BLOB NOT NULL
);
