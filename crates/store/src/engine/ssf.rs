//! OpenID Shared Signals (SSF 1.0) transmitter state: receivers' event
//! streams and the durable outbox of signed Security Event Tokens.
//!
//! The server signs SETs (the store holds no keys) and queues them here
//! with [`SsfAdvance`]: the stream's cursor — the audit sequence number up
//! to which its share of the revocation feed is queued — moves in the same
//! transaction as the rows it produced, and only from the value the caller
//! read (compare-and-set), so a restart resumes exactly where the last
//! commit left off and two processes sharing one database never queue a
//! revocation twice; `(stream_id, seq, event_type)` is unique besides.
//!
//! Push delivery claims due rows by moving their `next_attempt_ms` forward
//! by a lease inside a write transaction (on PostgreSQL under the writer
//! lock every process takes), so only one process pushes a given SET at a
//! time; a process that dies mid-push leaves the row due again when the
//! lease runs out.
//!
//! Audited: stream creation, change, status change, deletion, verification
//! requests and SETs given up on. Queuing, delivery attempts and
//! acknowledgements are delivery bookkeeping of an already audited
//! revocation and are not (like usage records and credential drop retries).

use leash_core::{InvalidInput, Millis, validate_len};
use serde::Serialize;
use serde_json::json;

use super::Writer;
use crate::StoreError;
use crate::sql::{Backend, Pool, RowRead, Sql};

/// Most streams one client may hold.
pub const MAX_STREAMS_PER_CLIENT: u32 = 100;
/// Most event types a stream may request.
pub const MAX_EVENTS_REQUESTED: usize = 32;
/// Longest event type URI, endpoint URL, description, reason.
const MAX_URI: usize = 512;
const MAX_URL: usize = 2048;
const MAX_DESCRIPTION: usize = 1000;
const MAX_REASON: usize = 500;
/// Longest authorization header value for a push receiver.
pub const MAX_AUTHORIZATION: usize = 4096;
/// Longest delivery error kept.
const MAX_ERROR: usize = 1000;
/// Most SETs acknowledged or reported in one poll.
pub const MAX_ACKS: usize = 1000;

/// How a stream's SETs reach its receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SsfMethod {
    /// RFC 8935: Leash POSTs each SET to the receiver's endpoint.
    Push,
    /// RFC 8936: the receiver polls Leash.
    Poll,
}

impl SsfMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            SsfMethod::Push => "push",
            SsfMethod::Poll => "poll",
        }
    }
    /// The delivery method URI SSF uses.
    pub fn urn(self) -> &'static str {
        match self {
            SsfMethod::Push => "urn:ietf:rfc:8935",
            SsfMethod::Poll => "urn:ietf:rfc:8936",
        }
    }
    /// From a delivery method URI.
    pub fn from_urn(s: &str) -> Option<Self> {
        match s {
            "urn:ietf:rfc:8935" => Some(SsfMethod::Push),
            "urn:ietf:rfc:8936" => Some(SsfMethod::Poll),
            _ => None,
        }
    }
    fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "push" => Ok(SsfMethod::Push),
            "poll" => Ok(SsfMethod::Poll),
            other => Err(StoreError::Corrupt(format!(
                "unknown SSF delivery method `{other}`"
            ))),
        }
    }
}

/// SSF stream status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SsfStatus {
    /// SETs are delivered.
    Enabled,
    /// SETs are held, and delivered once enabled again.
    Paused,
    /// SETs are neither delivered nor held.
    Disabled,
}

impl SsfStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SsfStatus::Enabled => "enabled",
            SsfStatus::Paused => "paused",
            SsfStatus::Disabled => "disabled",
        }
    }
    /// Parse `enabled`, `paused` or `disabled`.
    pub fn parse(s: &str) -> Result<Self, InvalidInput> {
        match s {
            "enabled" => Ok(SsfStatus::Enabled),
            "paused" => Ok(SsfStatus::Paused),
            "disabled" => Ok(SsfStatus::Disabled),
            other => Err(InvalidInput::new(format!(
                "stream status `{}` is not one of enabled, paused, disabled",
                other.chars().take(40).collect::<String>()
            ))),
        }
    }
}

/// An event stream as stored.
#[derive(Debug, Clone, Serialize)]
pub struct SsfStream {
    pub stream_id: String,
    /// The OAuth client that owns it (None: created by the operator).
    pub client_id: Option<String>,
    pub aud: String,
    pub events_requested: Vec<String>,
    pub method: SsfMethod,
    /// Push: the receiver's URL.
    pub endpoint_url: Option<String>,
    /// Push: the `Authorization` header value to send (a secret: never
    /// serialized, logged or audited).
    #[serde(skip)]
    pub authorization_header: Option<String>,
    pub description: Option<String>,
    pub status: SsfStatus,
    pub reason: Option<String>,
    /// Audit sequence number up to which revocations are queued.
    pub cursor: i64,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// The receiver-supplied part of a stream's configuration.
#[derive(Debug, Clone)]
pub struct SsfConfig {
    pub events_requested: Vec<String>,
    pub method: SsfMethod,
    pub endpoint_url: Option<String>,
    pub authorization_header: Option<String>,
    pub description: Option<String>,
}

/// A stream to create.
#[derive(Debug, Clone)]
pub struct NewSsfStream {
    pub stream_id: String,
    pub client_id: Option<String>,
    pub aud: String,
    pub config: SsfConfig,
}

/// One signed SET to queue.
#[derive(Debug, Clone)]
pub struct NewSet {
    /// Audit sequence number of what it is about (a `token.revoked` event).
    pub seq: i64,
    pub event_type: String,
    pub jti: String,
    /// The compact JWS.
    pub set: String,
}

/// A stream's share of the revocation feed, queued at once: the SETs built
/// for revocations in `(from, to]`, and the cursor moving from `from` to
/// `to`. Nothing is queued when the cursor is no longer `from` (another
/// process or an earlier attempt got there first), and a stream disabled
/// meanwhile only moves its cursor.
#[derive(Debug, Clone)]
pub struct SsfAdvance {
    pub stream_id: String,
    pub from: i64,
    pub to: i64,
    pub sets: Vec<NewSet>,
}

/// A SET claimed for one push attempt.
#[derive(Debug, Clone)]
pub struct SsfPush {
    pub jti: String,
    pub stream_id: String,
    pub set: String,
    /// Failed attempts so far.
    pub attempts: u32,
    pub endpoint_url: String,
    pub authorization_header: Option<String>,
}

/// What one push attempt found.
#[derive(Debug, Clone)]
pub enum SsfOutcome {
    /// The receiver accepted it (HTTP 202): it leaves the outbox.
    Delivered,
    /// Try again at `next_attempt_ms`, or, when `give_up`, record it failed.
    Retry {
        error: String,
        next_attempt_ms: Millis,
        give_up: bool,
    },
    /// The receiver refused it for good (HTTP 400 with `err`): recorded failed.
    Failed { error: String },
}

/// A receiver's report that it could not process a SET (RFC 8936 `setErrs`).
#[derive(Debug, Clone)]
pub struct SetError {
    pub jti: String,
    pub err: String,
    pub description: String,
}

/// What is queued for a stream.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SsfQueue {
    pub pending: u64,
    pub failed: u64,
    /// The most recent delivery error (of a pending or failed SET).
    pub last_error: Option<String>,
}

fn stream(row: &impl RowRead) -> Result<SsfStream, StoreError> {
    Ok(SsfStream {
        stream_id: row.text("stream_id")?,
        client_id: row.opt_text("client_id")?,
        aud: row.text("aud")?,
        events_requested: row
            .text("events_requested")?
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        method: SsfMethod::parse(&row.text("delivery_method")?)?,
        endpoint_url: row.opt_text("endpoint_url")?,
        authorization_header: row.opt_text("authorization_header")?,
        description: row.opt_text("description")?,
        status: SsfStatus::parse(&row.text("status")?)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        reason: row.opt_text("reason")?,
        cursor: row.int("cursor")?,
        created_at: row.int("created_at")?,
        updated_at: row.int("updated_at")?,
    })
}

/// `scheme://host/…` of a URL: what the audit log keeps of an endpoint
/// (paths and queries of webhook URLs often carry credentials).
fn origin(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
            let host = host.rsplit('@').next().unwrap_or_default();
            format!("{scheme}://{host}/…")
        }
        None => "(endpoint)".into(),
    }
}

fn check_config(c: &SsfConfig) -> Result<(), StoreError> {
    if c.events_requested.len() > MAX_EVENTS_REQUESTED {
        return Err(InvalidInput::new(format!(
            "events_requested lists {} event types; at most {MAX_EVENTS_REQUESTED} are accepted",
            c.events_requested.len()
        ))
        .into());
    }
    for e in &c.events_requested {
        validate_len("event type", e, MAX_URI)?;
        if e.is_empty() || e.contains(char::is_whitespace) {
            return Err(InvalidInput::new(
                "an event type in events_requested is empty or contains whitespace; send event type URIs",
            )
            .into());
        }
    }
    if let Some(d) = &c.description {
        validate_len("description", d, MAX_DESCRIPTION)?;
    }
    match c.method {
        SsfMethod::Push => {
            let url = c.endpoint_url.as_deref().unwrap_or_default();
            validate_len("endpoint_url", url, MAX_URL)?;
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(InvalidInput::new(
                    "push delivery needs delivery.endpoint_url, an http:// or https:// URL of the receiver",
                )
                .into());
            }
        }
        SsfMethod::Poll => {
            if c.authorization_header.is_some() {
                return Err(InvalidInput::new(
                    "delivery.authorization_header is for push delivery only; poll requests authenticate as the client",
                )
                .into());
            }
        }
    }
    if let Some(h) = &c.authorization_header {
        validate_len("authorization_header", h, MAX_AUTHORIZATION)?;
        if h.is_empty() || h.bytes().any(|b| b.is_ascii_control()) {
            return Err(InvalidInput::new(
                "delivery.authorization_header must be a non-empty header value without control characters",
            )
            .into());
        }
    }
    Ok(())
}

fn subject(stream_id: &str) -> String {
    format!("ssf:{stream_id}")
}

impl<B: Backend> Writer<B> {
    async fn stored_stream(&mut self, stream_id: &str) -> Result<SsfStream, StoreError> {
        Sql::new("SELECT * FROM ssf_streams WHERE stream_id = $1")
            .bind(stream_id)
            .optional(&mut self.conn)
            .await?
            .map(|r| stream(&r))
            .transpose()?
            .ok_or_else(|| StoreError::NotFound {
                what: "stream",
                key: stream_id.to_owned(),
            })
    }

    pub(super) async fn create_ssf_stream(
        &mut self,
        new: NewSsfStream,
        actor: &str,
        now: Millis,
    ) -> Result<SsfStream, StoreError> {
        check_config(&new.config)?;
        validate_len("stream_id", &new.stream_id, 64)?;
        validate_len("aud", &new.aud, MAX_URI)?;
        let held = Sql::new(
            "SELECT COUNT(*) AS n FROM ssf_streams WHERE client_id = $1 OR ($1 IS NULL AND client_id IS NULL)",
        )
        .bind(new.client_id.as_deref())
        .one(&mut self.conn)
        .await?
        .int("n")?;
        if held >= i64::from(MAX_STREAMS_PER_CLIENT) {
            return Err(StoreError::Conflict(format!(
                "this receiver already has {held} streams, the most allowed ({MAX_STREAMS_PER_CLIENT}); delete one it no longer uses"
            )));
        }
        let c = &new.config;
        let event = self.append(
            now,
            "ssf.stream_created",
            actor,
            subject(&new.stream_id),
            json!({
                "client": new.client_id, "aud": new.aud, "method": c.method.as_str(),
                "endpoint": c.endpoint_url.as_deref().map(origin),
                "authorization_header": c.authorization_header.is_some(),
                "events_requested": c.events_requested,
            }),
        );
        let row = Sql::new(
            "INSERT INTO ssf_streams (stream_id, client_id, aud, events_requested, delivery_method, endpoint_url, authorization_header, description, status, reason, cursor, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'enabled', NULL, $9, $10, $10) RETURNING *",
        )
        .bind(&new.stream_id)
        .bind(new.client_id.as_deref())
        .bind(&new.aud)
        .bind(c.events_requested.join(" "))
        .bind(c.method.as_str())
        .bind(c.endpoint_url.as_deref())
        .bind(c.authorization_header.as_deref())
        .bind(c.description.as_deref())
        // revocations from this stream's creation on are its business
        .bind(event)
        .bind(now)
        .one(&mut self.conn)
        .await?;
        stream(&row)
    }

    pub(super) async fn replace_ssf_stream(
        &mut self,
        stream_id: &str,
        config: SsfConfig,
        actor: &str,
        now: Millis,
    ) -> Result<SsfStream, StoreError> {
        check_config(&config)?;
        let old = self.stored_stream(stream_id).await?;
        self.append(
            now,
            "ssf.stream_updated",
            actor,
            subject(stream_id),
            json!({
                "method": config.method.as_str(),
                "endpoint": config.endpoint_url.as_deref().map(origin),
                "authorization_header": config.authorization_header.is_some(),
                "events_requested": config.events_requested,
                "previous_method": old.method.as_str(),
            }),
        );
        if old.method != config.method {
            // SETs queued for one method are not redelivered by the other
            // (a poller may have read them already): start clean
            Sql::new("DELETE FROM ssf_outbox WHERE stream_id = $1 AND state = 'pending'")
                .bind(stream_id)
                .run(&mut self.conn)
                .await?;
        }
        let row = Sql::new(
            "UPDATE ssf_streams SET events_requested = $1, delivery_method = $2, endpoint_url = $3, authorization_header = $4, description = $5, updated_at = $6 \
             WHERE stream_id = $7 RETURNING *",
        )
        .bind(config.events_requested.join(" "))
        .bind(config.method.as_str())
        .bind(config.endpoint_url.as_deref())
        .bind(config.authorization_header.as_deref())
        .bind(config.description.as_deref())
        .bind(now)
        .bind(stream_id)
        .one(&mut self.conn)
        .await?;
        stream(&row)
    }

    pub(super) async fn delete_ssf_stream(
        &mut self,
        stream_id: &str,
        actor: &str,
        now: Millis,
    ) -> Result<(), StoreError> {
        let old = self.stored_stream(stream_id).await?;
        let dropped = Sql::new("DELETE FROM ssf_outbox WHERE stream_id = $1")
            .bind(stream_id)
            .run(&mut self.conn)
            .await?;
        Sql::new("DELETE FROM ssf_streams WHERE stream_id = $1")
            .bind(stream_id)
            .run(&mut self.conn)
            .await?;
        self.append(
            now,
            "ssf.stream_deleted",
            actor,
            subject(stream_id),
            json!({"client": old.client_id, "undelivered_sets_dropped": dropped}),
        );
        Ok(())
    }

    pub(super) async fn set_ssf_status(
        &mut self,
        stream_id: &str,
        status: SsfStatus,
        reason: Option<String>,
        actor: &str,
        now: Millis,
    ) -> Result<SsfStream, StoreError> {
        if let Some(r) = &reason {
            validate_len("reason", r, MAX_REASON)?;
        }
        let old = self.stored_stream(stream_id).await?;
        let mut dropped = 0;
        if status == SsfStatus::Disabled {
            // a disabled stream holds nothing
            dropped = Sql::new("DELETE FROM ssf_outbox WHERE stream_id = $1 AND state = 'pending'")
                .bind(stream_id)
                .run(&mut self.conn)
                .await?;
        }
        self.append(
            now,
            "ssf.status_changed",
            actor,
            subject(stream_id),
            json!({"from": old.status.as_str(), "to": status.as_str(), "reason": reason, "held_sets_dropped": dropped}),
        );
        let row = Sql::new(
            "UPDATE ssf_streams SET status = $1, reason = $2, updated_at = $3 WHERE stream_id = $4 RETURNING *",
        )
        .bind(status.as_str())
        .bind(reason)
        .bind(now)
        .bind(stream_id)
        .one(&mut self.conn)
        .await?;
        stream(&row)
    }

    async fn insert_set(
        &mut self,
        stream_id: &str,
        s: &NewSet,
        now: Millis,
    ) -> Result<u64, StoreError> {
        Sql::new(
            "INSERT INTO ssf_outbox (jti, stream_id, seq, event_type, set_jwt, state, attempts, next_attempt_ms, created_at) \
             VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $6) ON CONFLICT DO NOTHING",
        )
        .bind(&s.jti)
        .bind(stream_id)
        .bind(s.seq)
        .bind(&s.event_type)
        .bind(&s.set)
        .bind(now)
        .run(&mut self.conn)
        .await
    }

    pub(super) async fn queue_ssf_sets(
        &mut self,
        advances: Vec<SsfAdvance>,
        now: Millis,
    ) -> Result<u64, StoreError> {
        let mut queued = 0;
        for a in advances {
            if a.to < a.from || a.sets.iter().any(|s| s.seq <= a.from || s.seq > a.to) {
                return Err(InvalidInput::new(
                    "queued SETs must be about revocations after the stream's cursor and up to its new one",
                )
                .into());
            }
            let status = Sql::new(
                "UPDATE ssf_streams SET cursor = $1 WHERE stream_id = $2 AND cursor = $3 RETURNING status",
            )
            .bind(a.to)
            .bind(&a.stream_id)
            .bind(a.from)
            .optional(&mut self.conn)
            .await?
            .map(|row| row.text("status"))
            .transpose()?;
            match status {
                // deleted, or already advanced by someone else
                None => continue,
                Some(s) if s == SsfStatus::Disabled.as_str() => continue,
                Some(_) => {}
            }
            for s in &a.sets {
                queued += self.insert_set(&a.stream_id, s, now).await?;
            }
        }
        Ok(queued)
    }

    pub(super) async fn queue_ssf_verification(
        &mut self,
        stream_id: &str,
        jti: String,
        set: String,
        event_type: String,
        actor: &str,
        now: Millis,
    ) -> Result<(), StoreError> {
        let s = self.stored_stream(stream_id).await?;
        if s.status == SsfStatus::Disabled {
            return Err(StoreError::Conflict(format!(
                "stream `{stream_id}` is disabled, so it carries no events; enable it (POST its status) and ask again"
            )));
        }
        let seq = self.append(
            now,
            "ssf.verification_requested",
            actor,
            subject(stream_id),
            json!({"jti": jti}),
        );
        let set = NewSet {
            seq,
            event_type,
            jti,
            set,
        };
        self.insert_set(stream_id, &set, now).await?;
        Ok(())
    }

    pub(super) async fn claim_ssf_push(
        &mut self,
        now: Millis,
        lease_ms: Millis,
        limit: u32,
    ) -> Result<Vec<SsfPush>, StoreError> {
        let due = Sql::new(
            "SELECT o.jti, o.stream_id, o.set_jwt, o.attempts, s.endpoint_url, s.authorization_header \
             FROM ssf_outbox o JOIN ssf_streams s ON s.stream_id = o.stream_id \
             WHERE o.state = 'pending' AND o.next_attempt_ms <= $1 AND s.status = 'enabled' AND s.delivery_method = 'push' \
             ORDER BY o.next_attempt_ms, o.seq LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .all(&mut self.conn)
        .await?;
        let out = due
            .iter()
            .map(|row| {
                Ok(SsfPush {
                    jti: row.text("jti")?,
                    stream_id: row.text("stream_id")?,
                    set: row.text("set_jwt")?,
                    attempts: u32::try_from(row.int("attempts")?).unwrap_or(u32::MAX),
                    endpoint_url: row.opt_text("endpoint_url")?.unwrap_or_default(),
                    authorization_header: row.opt_text("authorization_header")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        drop(due);
        for p in &out {
            // the lease: nobody else claims it until it runs out
            Sql::new("UPDATE ssf_outbox SET next_attempt_ms = $1 WHERE jti = $2")
                .bind(now + lease_ms)
                .bind(&p.jti)
                .run(&mut self.conn)
                .await?;
        }
        Ok(out)
    }

    pub(super) async fn record_ssf_push(
        &mut self,
        jti: &str,
        outcome: SsfOutcome,
        actor: &str,
        now: Millis,
    ) -> Result<(), StoreError> {
        let found = Sql::new(
            "SELECT stream_id, attempts FROM ssf_outbox WHERE jti = $1 AND state = 'pending'",
        )
        .bind(jti)
        .optional(&mut self.conn)
        .await?
        .map(|row| Ok::<_, StoreError>((row.text("stream_id")?, row.int("attempts")?)))
        .transpose()?;
        let Some((stream_id, attempts)) = found else {
            // acknowledged, dropped with its stream, or recorded already
            return Ok(());
        };
        let attempts = attempts.saturating_add(1);
        let (error, next, give_up) = match outcome {
            SsfOutcome::Delivered => {
                Sql::new("DELETE FROM ssf_outbox WHERE jti = $1")
                    .bind(jti)
                    .run(&mut self.conn)
                    .await?;
                return Ok(());
            }
            SsfOutcome::Retry {
                error,
                next_attempt_ms,
                give_up,
            } => (error, next_attempt_ms, give_up),
            SsfOutcome::Failed { error } => (error, now, true),
        };
        let error: String = error.chars().take(MAX_ERROR).collect();
        if give_up {
            self.append(
                now,
                "ssf.delivery_failed",
                actor,
                subject(&stream_id),
                json!({"jti": jti, "attempts": attempts, "error": error}),
            );
        }
        Sql::new(
            "UPDATE ssf_outbox SET attempts = $1, last_error = $2, next_attempt_ms = $3, state = $4 WHERE jti = $5",
        )
        .bind(attempts)
        .bind(error)
        .bind(next)
        .bind(if give_up { "failed" } else { "pending" })
        .bind(jti)
        .run(&mut self.conn)
        .await?;
        Ok(())
    }

    pub(super) async fn ack_ssf(
        &mut self,
        stream_id: &str,
        acks: Vec<String>,
        errors: Vec<SetError>,
        actor: &str,
        now: Millis,
    ) -> Result<(), StoreError> {
        if acks.len() + errors.len() > MAX_ACKS {
            return Err(InvalidInput::new(format!(
                "a poll may acknowledge or report at most {MAX_ACKS} SETs; send the rest in the next poll"
            ))
            .into());
        }
        for jti in acks {
            Sql::new("DELETE FROM ssf_outbox WHERE jti = $1 AND stream_id = $2")
                .bind(jti)
                .bind(stream_id)
                .run(&mut self.conn)
                .await?;
        }
        for e in errors {
            let error: String = format!("{}: {}", e.err, e.description)
                .chars()
                .take(MAX_ERROR)
                .collect();
            let n = Sql::new(
                "UPDATE ssf_outbox SET state = 'failed', last_error = $1 WHERE jti = $2 AND stream_id = $3 AND state = 'pending'",
            )
            .bind(&error)
            .bind(&e.jti)
            .bind(stream_id)
            .run(&mut self.conn)
            .await?;
            if n > 0 {
                self.append(
                    now,
                    "ssf.delivery_failed",
                    actor,
                    subject(stream_id),
                    json!({"jti": e.jti, "error": error, "reported_by_receiver": true}),
                );
            }
        }
        Ok(())
    }
}

pub(super) async fn get_stream<B: Backend>(
    pool: &Pool<B>,
    stream_id: &str,
) -> Result<SsfStream, StoreError> {
    Sql::new("SELECT * FROM ssf_streams WHERE stream_id = $1")
        .bind(stream_id)
        .optional(pool)
        .await?
        .map(|r| stream(&r))
        .transpose()?
        .ok_or_else(|| StoreError::NotFound {
            what: "stream",
            key: stream_id.to_owned(),
        })
}

pub(super) async fn list_streams<B: Backend>(
    pool: &Pool<B>,
    client_id: Option<String>,
    after: String,
    limit: u32,
) -> Result<Vec<SsfStream>, StoreError> {
    Sql::new(
        "SELECT * FROM ssf_streams WHERE ($1 IS NULL OR client_id = $1) AND stream_id > $2 ORDER BY stream_id LIMIT $3",
    )
    .bind(client_id)
    .bind(after)
    .bind(limit)
    .all(pool)
    .await?
    .iter()
    .map(stream)
    .collect()
}

pub(super) async fn pending_sets<B: Backend>(
    pool: &Pool<B>,
    stream_id: &str,
    limit: u32,
) -> Result<Vec<(String, String)>, StoreError> {
    let rows = Sql::new(
        "SELECT jti, set_jwt FROM ssf_outbox WHERE stream_id = $1 AND state = 'pending' ORDER BY seq, event_type LIMIT $2",
    )
    .bind(stream_id)
    .bind(limit)
    .all(pool)
    .await?;
    rows.iter()
        .map(|r| Ok((r.text("jti")?, r.text("set_jwt")?)))
        .collect()
}

pub(super) async fn queue_summary<B: Backend>(
    pool: &Pool<B>,
    stream_id: &str,
) -> Result<SsfQueue, StoreError> {
    let row = Sql::new(
        "SELECT COALESCE(SUM(CASE WHEN state = 'pending' THEN 1 ELSE 0 END), 0) AS pending, \
                COALESCE(SUM(CASE WHEN state = 'failed' THEN 1 ELSE 0 END), 0) AS failed \
         FROM ssf_outbox WHERE stream_id = $1",
    )
    .bind(stream_id)
    .one(pool)
    .await?;
    let last = Sql::new(
        "SELECT last_error FROM ssf_outbox WHERE stream_id = $1 AND last_error IS NOT NULL ORDER BY seq DESC LIMIT 1",
    )
    .bind(stream_id)
    .optional(pool)
    .await?;
    Ok(SsfQueue {
        pending: u64::try_from(row.int("pending")?).unwrap_or(0),
        failed: u64::try_from(row.int("failed")?).unwrap_or(0),
        last_error: last
            .map(|r| r.opt_text("last_error"))
            .transpose()?
            .flatten(),
    })
}
