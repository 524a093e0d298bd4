-- OpenID Shared Signals (SSF 1.0) transmitter: event streams registered by
-- receivers, and the durable outbox of Security Event Tokens (RFC 8417)
-- waiting for delivery.
--
-- `cursor` is the audit sequence number up to which the stream's share of
-- the revocation feed has been queued; it advances in the same transaction
-- as the outbox rows it produced, so a restart resumes exactly there.
-- `authorization_header` is what Leash must send to a push receiver, so it
-- is kept as given (it cannot be hashed); it is never logged or audited.
-- `events_requested` is space-separated event type URIs.
CREATE TABLE ssf_streams (
    stream_id TEXT PRIMARY KEY,
    client_id TEXT,
    aud TEXT NOT NULL,
    events_requested TEXT NOT NULL,
    delivery_method TEXT NOT NULL,
    endpoint_url TEXT,
    authorization_header TEXT,
    description TEXT,
    status TEXT NOT NULL,
    reason TEXT,
    cursor INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX ssf_streams_client ON ssf_streams(client_id);

-- One row per SET for one stream. `state` is pending (to deliver; for push
-- due at `next_attempt_ms`, which a delivering process moves forward as
-- its lease) or failed (given up; kept for the stream's status). A
-- delivered (pushed, or acknowledged by a poller) SET is deleted.
-- (stream_id, seq, event_type) makes queuing idempotent.
CREATE TABLE ssf_outbox (
    jti TEXT PRIMARY KEY,
    stream_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    event_type TEXT NOT NULL,
    set_jwt TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    last_error TEXT,
    created_at INTEGER NOT NULL,
    UNIQUE (stream_id, seq, event_type)
) WITHOUT ROWID;
CREATE INDEX ssf_outbox_due ON ssf_outbox(next_attempt_ms) WHERE state = 'pending';
CREATE INDEX ssf_outbox_stream ON ssf_outbox(stream_id, seq);
