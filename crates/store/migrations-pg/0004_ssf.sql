-- OpenID Shared Signals (SSF 1.0) transmitter (SQLite migration 0014):
-- receivers' event streams, with the audit sequence number up to which
-- revocations are queued (`cursor`), and the durable outbox of SETs.
-- `authorization_header` is kept as given (Leash must send it); it is
-- never logged or audited.
CREATE TABLE ssf_streams (
    stream_id TEXT COLLATE "C" PRIMARY KEY,
    client_id TEXT,
    aud TEXT NOT NULL,
    events_requested TEXT NOT NULL,
    delivery_method TEXT NOT NULL,
    endpoint_url TEXT,
    authorization_header TEXT,
    description TEXT,
    status TEXT NOT NULL,
    reason TEXT,
    cursor BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX ssf_streams_client ON ssf_streams(client_id);

CREATE TABLE ssf_outbox (
    jti TEXT COLLATE "C" PRIMARY KEY,
    stream_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    event_type TEXT NOT NULL,
    set_jwt TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_ms BIGINT NOT NULL,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    UNIQUE (stream_id, seq, event_type)
);
CREATE INDEX ssf_outbox_due ON ssf_outbox(next_attempt_ms) WHERE state = 'pending';
CREATE INDEX ssf_outbox_stream ON ssf_outbox(stream_id, seq);
