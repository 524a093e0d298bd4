//! Revocation fan-out over NATS JetStream: every replica publishes the
//! revocations its own writer commits to the durable stream
//! [`STREAM`] (subject [`SUBJECT`]), and consumes that stream to add the
//! other replicas' revocations to its revocation set the moment they are
//! published, then wakes its store to read the rest of those commits
//! (registry changes, the ordered feed) from PostgreSQL.
//!
//! PostgreSQL stays the record: a replica that misses a message still
//! catches up from the database (LISTEN/NOTIFY and its tick). What NATS
//! adds is speed and the subject in-cluster consumers read. A replica
//! whose NATS connection is down, or whose consumer has not yet replayed
//! the stream up to where it stood when the consumer (re)started, cannot
//! vouch for its revocation set ([`Fanout::vouch`]) and refuses decisions
//! until it has.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream;
use futures_util::StreamExt;
use leash_store::{RevocationRecord, Store};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::ServerError;

/// The JetStream stream of committed revocations.
pub const STREAM: &str = "LEASH_REVOCATIONS";
/// The subject revocation messages are published on.
pub const SUBJECT: &str = "leash.revocations";
/// Most revocations one message carries.
pub const MAX_PER_MESSAGE: usize = 1000;
/// How long the stream keeps a message (longer than any token lives is
/// not needed: a consumer that was away longer reads the database).
const RETENTION: Duration = Duration::from_secs(24 * 3600);
/// Most revocations waiting for NATS to come back before the oldest are
/// dropped (the database still has them).
const MAX_PENDING: usize = 200_000;

/// Where NATS is.
#[derive(Debug, Clone)]
pub struct NatsSettings {
    /// `nats://host:port` (credentials in the URL are supported and never logged).
    pub url: String,
}

/// One message on [`SUBJECT`]: revocations in audit order, all committed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RevocationMessage {
    /// Which Leash deployment (audit chain) the revocations belong to: the
    /// first 16 hex digits of its first event's hash. Consumers ignore
    /// other deployments' messages on a shared NATS.
    pub cluster: String,
    /// The audit sequence number of the last revocation in it.
    pub head: i64,
    pub revocations: Vec<RevocationRecord>,
}

/// The NATS side of a replica.
pub struct Fanout {
    cluster: String,
    client: async_nats::Client,
    js: jetstream::Context,
    /// Whether the client is connected (from its connection events).
    connected: Arc<AtomicBool>,
    /// Whether the consumer has replayed the stream up to where it stood
    /// when the consumer last (re)started.
    replayed: Arc<AtomicBool>,
    /// The last stream sequence the consumer applied.
    applied: Arc<AtomicU64>,
    /// Rebuild the consumer (after a reconnect).
    restart: Arc<Notify>,
}

impl std::fmt::Debug for Fanout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fanout")
            .field("connected", &self.connected.load(Ordering::Relaxed))
            .field("replayed", &self.replayed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

fn setup(what: &str, e: impl std::fmt::Display) -> ServerError {
    ServerError::Setup(format!("NATS: {what}: {e}"))
}

impl Fanout {
    /// Connect and make sure the stream exists. A NATS that cannot be
    /// reached at start is an error (fail closed rather than start blind).
    pub async fn connect(
        settings: NatsSettings,
        store: Arc<dyn Store>,
    ) -> Result<Self, ServerError> {
        let cluster = cluster_id(&*store).await?;
        let connected = Arc::new(AtomicBool::new(false));
        let restart = Arc::new(Notify::new());
        let (c, r) = (connected.clone(), restart.clone());
        let client = async_nats::ConnectOptions::new()
            .name("leash")
            .connection_timeout(Duration::from_secs(3))
            .retry_on_initial_connect()
            .event_callback(move |event| {
                let (c, r) = (c.clone(), r.clone());
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            c.store(true, Ordering::Release);
                            r.notify_one();
                        }
                        async_nats::Event::Disconnected => {
                            c.store(false, Ordering::Release);
                            tracing::warn!("NATS disconnected: decisions are refused until it is back and replayed");
                        }
                        other => tracing::debug!(event = %other, "NATS event"),
                    }
                }
            })
            .connect(settings.url.as_str());
        let client = tokio::time::timeout(Duration::from_secs(10), client)
            .await
            .map_err(|_| {
                setup(
                    "cannot connect",
                    "no answer within 10 s; is nats-server running with -js?",
                )
            })?
            .map_err(|e| setup("cannot connect", e))?;
        connected.store(
            client.connection_state() == async_nats::connection::State::Connected,
            Ordering::Release,
        );
        let js = jetstream::new(client.clone());
        js.get_or_create_stream(jetstream::stream::Config {
            name: STREAM.into(),
            subjects: vec![SUBJECT.into()],
            max_age: RETENTION,
            duplicate_window: Duration::from_secs(120),
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(|e| {
            setup(
                "cannot create the stream (is JetStream enabled: nats-server -js?)",
                e,
            )
        })?;
        Ok(Fanout {
            cluster,
            client,
            js,
            connected,
            replayed: Arc::new(AtomicBool::new(false)),
            applied: Arc::new(AtomicU64::new(0)),
            restart,
        })
    }

    /// Whether the NATS side can vouch for the revocation set now.
    pub fn vouch(&self) -> Result<(), String> {
        if !self.connected.load(Ordering::Acquire)
            || self.client.connection_state() != async_nats::connection::State::Connected
        {
            return Err("this replica has lost NATS, its revocation feed".into());
        }
        if !self.replayed.load(Ordering::Acquire) {
            return Err("this replica is still replaying the NATS revocation stream".into());
        }
        Ok(())
    }

    /// The last stream sequence this replica applied.
    pub fn applied(&self) -> u64 {
        self.applied.load(Ordering::Acquire)
    }

    /// Start the publisher and the consumer.
    pub fn spawn(self: &Arc<Self>, store: Arc<dyn Store>) {
        tokio::spawn(self.clone().publish(store.clone()));
        tokio::spawn(self.clone().consume(store));
    }

    /// Publish this replica's committed revocations, in chunks, each with a
    /// `Nats-Msg-Id` naming its sequence range (JetStream drops a repeat).
    /// While NATS is away they wait (bounded) and go out when it is back.
    async fn publish(self: Arc<Self>, store: Arc<dyn Store>) {
        let mut local = store.commits().subscribe_local_revocations();
        let mut pending: VecDeque<RevocationRecord> = VecDeque::new();
        let mut last_sent = store.commits().head_seq();
        loop {
            if pending.is_empty() {
                match local.recv().await {
                    Ok(batch) => pending.extend(batch.iter().cloned()),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        // read what was missed back from the database
                        match store
                            .revocations_after(last_sent, MAX_PER_MESSAGE as u32 * 10)
                            .await
                        {
                            Ok(records) => pending.extend(records),
                            Err(e) => {
                                tracing::warn!(error = %e, "NATS publisher: could not reread revocations")
                            }
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
            while let Ok(batch) = local.try_recv() {
                pending.extend(batch.iter().cloned());
            }
            if pending.len() > MAX_PENDING {
                let dropped = pending.len() - MAX_PENDING;
                pending.drain(..dropped);
                tracing::warn!(
                    dropped,
                    "NATS publisher: dropped the oldest unsent revocations (replicas read them from the database)"
                );
            }
            let n = pending.len().min(MAX_PER_MESSAGE);
            let chunk: Vec<RevocationRecord> = pending.iter().take(n).cloned().collect();
            let (Some(first), Some(last)) =
                (chunk.first().map(|r| r.seq), chunk.last().map(|r| r.seq))
            else {
                continue;
            };
            match self.send(first, last, chunk).await {
                Ok(()) => {
                    pending.drain(..n);
                    last_sent = last;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "NATS publisher: publish failed; retrying");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        }
    }

    async fn send(
        &self,
        first: i64,
        last: i64,
        revocations: Vec<RevocationRecord>,
    ) -> Result<(), String> {
        let body = serde_json::to_vec(&RevocationMessage {
            cluster: self.cluster.clone(),
            head: last,
            revocations,
        })
        .map_err(|e| e.to_string())?;
        let mut headers = async_nats::HeaderMap::new();
        let id = format!("leash-{}-{first}-{last}", self.cluster);
        headers.insert("Nats-Msg-Id", id.as_str());
        let ack = self
            .js
            .publish_with_headers(SUBJECT, headers, body.into())
            .await
            .map_err(|e| e.to_string())?;
        tokio::time::timeout(Duration::from_secs(5), ack)
            .await
            .map_err(|_| "no acknowledgement from JetStream within 5 s".to_owned())?
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Apply every message on the stream to the revocation set (and wake
    /// the store to read those commits). After each (re)start the consumer
    /// resumes after the last message it applied (at first: after the
    /// stream's end, since the store has just loaded the database) and
    /// counts as replayed once it reaches where the stream stood then.
    async fn consume(self: Arc<Self>, store: Arc<dyn Store>) {
        let mut first = true;
        loop {
            self.replayed.store(false, Ordering::Release);
            match self.consume_once(&store, first).await {
                Ok(()) => {}
                Err(e) => tracing::warn!(error = %e, "NATS consumer stopped; restarting"),
            }
            first = false;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn consume_once(&self, store: &Arc<dyn Store>, first: bool) -> Result<(), String> {
        let mut stream = self
            .js
            .get_stream(STREAM)
            .await
            .map_err(|e| e.to_string())?;
        let end = stream
            .info()
            .await
            .map_err(|e| e.to_string())?
            .state
            .last_sequence;
        let start = if first { end + 1 } else { self.applied() + 1 };
        if first {
            self.applied.store(end, Ordering::Release);
        }
        let consumer = stream
            .create_consumer(jetstream::consumer::push::OrderedConfig {
                deliver_subject: self.client.new_inbox(),
                filter_subject: SUBJECT.into(),
                deliver_policy: jetstream::consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: start.max(1),
                },
                ..Default::default()
            })
            .await
            .map_err(|e| e.to_string())?;
        let mut messages = consumer.messages().await.map_err(|e| e.to_string())?;
        if self.applied() >= end {
            self.replayed.store(true, Ordering::Release);
        }
        loop {
            let next = tokio::select! {
                m = messages.next() => m,
                () = self.restart.notified() => {
                    // reconnected: messages may have been published while away
                    return Ok(());
                }
            };
            let Some(msg) = next else {
                return Err("the consumer's message stream ended".into());
            };
            let msg = msg.map_err(|e| e.to_string())?;
            let seq = msg.info().map(|i| i.stream_sequence).unwrap_or(0);
            match serde_json::from_slice::<RevocationMessage>(&msg.payload) {
                Ok(m) if m.cluster == self.cluster => {
                    store.revocations().insert_records(&m.revocations);
                    store.commits().wake();
                }
                Ok(_) => {} // another deployment sharing this NATS
                Err(e) => {
                    tracing::warn!(error = %e, seq, "NATS consumer: skipped a message that is not a revocation message")
                }
            }
            self.applied.fetch_max(seq, Ordering::AcqRel);
            if seq >= end {
                self.replayed.store(true, Ordering::Release);
            }
        }
    }
}

/// The deployment's identity on NATS: its audit chain's first event
/// (recorded now, as `fanout.started`, if the chain is still empty).
async fn cluster_id(store: &dyn Store) -> Result<String, ServerError> {
    let first = match store.get_event(1).await {
        Ok(e) => e,
        Err(leash_store::StoreError::NotFound { .. }) => {
            store
                .record_event(
                    "fanout.started",
                    SUBJECT,
                    serde_json::json!({"stream": STREAM}),
                    "leash",
                )
                .await?;
            store.get_event(1).await?
        }
        Err(e) => return Err(e.into()),
    };
    Ok(hex::encode(&first.hash[..8]))
}
