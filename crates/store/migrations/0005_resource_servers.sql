-- Resource-server clients may call /oauth2/introspect (RFC 7662 §2.1).
ALTER TABLE clients ADD COLUMN can_introspect INTEGER NOT NULL DEFAULT 0;
