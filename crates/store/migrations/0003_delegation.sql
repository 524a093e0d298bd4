-- Delegation (RFC 8693): hops below the root token, and the nested `act` claim.
ALTER TABLE tokens ADD COLUMN depth INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tokens ADD COLUMN act TEXT;
