-- The revocation feed (`revocations_after`: replicas catching up, SSE
-- replay and snapshot, the SSF outbox) reads only `token.revoked` events in
-- sequence order: this index holds just those, so a read costs what it
-- returns, not a scan of the whole audit log.
CREATE INDEX events_revoked ON events (seq) WHERE kind = 'token.revoked';
