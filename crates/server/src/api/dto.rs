//! Request and response bodies of the `/v1` API.

use leash_core::{Millis, Owner, Run, Token, Workflow, Workload};
use leash_store::{Registry, Revoked};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// RFC 3339 UTC time from Unix milliseconds.
pub fn ts(ms: Millis) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOwner {
    pub name: String,
    pub email: String,
    /// `person` (default) or `team`.
    #[serde(default)]
    pub kind: Option<String>,
    /// Has a business reason to own tokens (not just a platform team).
    #[serde(default)]
    pub business_owner: bool,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OwnerView {
    pub name: String,
    pub email: String,
    pub kind: String,
    pub business_owner: bool,
    /// `active` or `offboarded`.
    pub status: String,
    pub created_at: String,
    pub offboarded_at: Option<String>,
}

impl From<&Owner> for OwnerView {
    fn from(o: &Owner) -> Self {
        OwnerView {
            name: o.name.clone(),
            email: o.email.clone(),
            kind: o.kind.to_string(),
            business_owner: o.business_owner,
            status: o.status.to_string(),
            created_at: ts(o.created_at),
            offboarded_at: o.offboarded_at.map(ts),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWorkload {
    pub name: String,
    /// Owner name.
    pub owner: String,
    /// Identity matcher: a SPIFFE ID (`spiffe://acme.org/agents/triage`) or OIDC subject.
    #[serde(default)]
    pub identity: Option<String>,
    /// `dev`, `stage` or `prod`.
    pub environment: String,
    /// The most this workload may ever hold, as scopes.
    pub scope_ceiling: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WorkloadView {
    pub name: String,
    pub owner: String,
    pub identity: Option<String>,
    pub environment: String,
    pub scope_ceiling: Vec<String>,
    pub created_at: String,
}

impl WorkloadView {
    pub fn new(w: &Workload, reg: &Registry) -> Self {
        WorkloadView {
            name: w.name.clone(),
            owner: reg
                .owner(w.owner_id)
                .map(|o| o.name.clone())
                .unwrap_or_default(),
            identity: w.identity.clone(),
            environment: w.environment.to_string(),
            scope_ceiling: w.scope_ceiling.iter().map(ToString::to_string).collect(),
            created_at: ts(w.created_at),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWorkflow {
    pub name: String,
    pub owner: String,
    /// The definition text; Leash stores its SHA-256. Give this or `digest`.
    #[serde(default)]
    pub definition: Option<String>,
    /// Hex SHA-256 of the definition, if you hashed it yourself.
    #[serde(default)]
    pub digest: Option<String>,
    /// Tools the workflow declares.
    #[serde(default)]
    pub tools: Vec<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWorkflow {
    #[serde(default)]
    pub definition: Option<String>,
    #[serde(default)]
    pub digest: Option<String>,
    /// Replaces the declared tools when given.
    #[serde(default)]
    pub tools: Option<Vec<String>>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WorkflowView {
    pub name: String,
    pub owner: String,
    /// Hex SHA-256 of the current definition.
    pub digest: String,
    pub tools: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl WorkflowView {
    pub fn new(w: &Workflow, reg: &Registry) -> Self {
        WorkflowView {
            name: w.name.clone(),
            owner: reg
                .owner(w.owner_id)
                .map(|o| o.name.clone())
                .unwrap_or_default(),
            digest: w.digest.clone(),
            tools: w.tools.clone(),
            created_at: ts(w.created_at),
            updated_at: ts(w.updated_at),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RevokedView {
    /// Audit sequence number of the causing event; null when nothing was live.
    pub event: Option<i64>,
    /// Trigger recorded on the directly revoked tokens.
    pub trigger: Option<String>,
    /// Tokens revoked, descendants included.
    pub count: usize,
    /// Of those, descendants revoked because an ancestor was.
    pub cascaded: usize,
    /// The first (at most 100) ids revoked.
    pub tokens: Vec<String>,
}

impl From<Revoked> for RevokedView {
    fn from(r: Revoked) -> Self {
        RevokedView {
            event: r.event,
            trigger: r.trigger.map(|t| t.to_string()),
            count: r.count,
            cascaded: r.cascaded,
            tokens: r.tokens,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WorkflowUpdated {
    pub workflow: WorkflowView,
    pub revoked: RevokedView,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OwnerOffboarded {
    pub owner: OwnerView,
    pub revoked: RevokedView,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRun {
    pub workflow: String,
    pub workload: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndRun {
    /// `succeeded`, `failed` or `cancelled`.
    pub status: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RunView {
    pub id: i64,
    pub workflow: String,
    pub workload: String,
    /// Workflow digest when the run started.
    pub digest: String,
    /// `running`, `succeeded`, `failed` or `cancelled`.
    pub state: String,
    pub started_at: String,
    pub ended_at: Option<String>,
}

impl RunView {
    pub fn new(r: &Run, reg: &Registry) -> Self {
        RunView {
            id: r.id,
            workflow: reg
                .workflow(r.workflow_id)
                .map(|w| w.name.clone())
                .unwrap_or_default(),
            workload: reg
                .workload(r.workload_id)
                .map(|w| w.name.clone())
                .unwrap_or_default(),
            digest: r.digest.clone(),
            state: r.state.to_string(),
            started_at: ts(r.started_at),
            ended_at: r.ended_at.map(ts),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RunEnded {
    pub run: RunView,
    pub revoked: RevokedView,
}

/// A TTL: seconds as a number, or text such as `15m`, `1h30m`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(untagged)]
pub enum Ttl {
    Seconds(u64),
    Text(String),
}

impl<'de> Deserialize<'de> for Ttl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Ttl;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("seconds as a number, or a duration such as \"15m\"")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Ttl, E> {
                Ok(Ttl::Seconds(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Ttl, E> {
                u64::try_from(v)
                    .map(Ttl::Seconds)
                    .map_err(|_| E::custom("ttl must be positive"))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Ttl, E> {
                Ok(Ttl::Text(v.to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MintBody {
    /// Workload name.
    pub workload: String,
    /// Run id; the token dies when the run ends.
    #[serde(default)]
    pub run: Option<i64>,
    /// Scopes, each `TYPE[:ID_PATTERN]:ACTION`.
    pub scopes: Vec<String>,
    #[schema(value_type = String, example = "15m")]
    pub ttl: Ttl,
    #[serde(default)]
    pub audience: Vec<String>,
    /// Required for any write scope: the business reason.
    #[serde(default)]
    pub justification: Option<String>,
    /// `jwt` (default) or `opaque`.
    #[serde(default)]
    pub format: Option<String>,
    /// Delegate from this token (id, or the token itself): the new token may
    /// only narrow its scopes, audience and lifetime, and dies with it.
    #[serde(default)]
    pub parent: Option<String>,
    /// RFC 8693 `may_act`: the only workload (by name) that may act for this
    /// token in a token exchange.
    #[serde(default)]
    pub may_act: Option<String>,
}

/// A mint that waits for the owner's approval (HTTP 202).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ApprovalView {
    pub id: i64,
    /// `mint` or `break_glass`.
    pub kind: String,
    /// `pending`, `approved`, `denied` or `issued`.
    pub status: String,
    pub workload: String,
    /// Who must approve: the workload's owner, or one of `delegates`.
    pub owner: String,
    pub delegates: Vec<String>,
    pub justification: String,
    #[schema(value_type = Object)]
    pub request: serde_json::Value,
    pub requested_by: String,
    pub requested_at: String,
    pub decided_by: Option<String>,
    pub decided_at: Option<String>,
    pub decision_note: Option<String>,
    /// The token issued under it.
    pub token_id: Option<String>,
    /// What to do next.
    pub next: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Minted {
    pub id: String,
    /// The credential. Shown once; Leash keeps only its hash (opaque) or id (JWT).
    pub token: String,
    pub token_type: String,
    pub format: String,
    pub expires_at: String,
    pub expires_in: i64,
    pub scopes: Vec<String>,
    pub audience: Vec<String>,
    pub owner: String,
    pub workload: String,
    pub run: Option<i64>,
    /// For format `postgres`: the role created for this token (the
    /// connection string in `token` is shown once; Leash keeps only the
    /// SHA-256 of its password).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<CredentialBrief>,
}

/// The PostgreSQL role behind a `postgres` token (never its password).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CredentialBrief {
    /// `leash_…`.
    pub role: String,
    /// The database its grants are in.
    pub database: String,
    /// Where connection strings point (null when this server has no
    /// credential database configured).
    pub host: Option<String>,
    pub port: Option<u16>,
    /// `active`, `dropped` or `drop_failed`.
    pub status: String,
    /// Failed drop attempts.
    pub attempts: u32,
    /// Why the last drop attempt failed.
    pub last_error: Option<String>,
    pub dropped_at: Option<String>,
    /// The finding opened when dropping kept failing.
    pub finding: Option<i64>,
}

impl CredentialBrief {
    /// The brief of a stored credential; `at` is where connection strings point.
    pub fn new(c: &leash_core::DatabaseCredential, at: Option<(&str, u16)>) -> Self {
        CredentialBrief {
            role: c.role.clone(),
            database: c.database.clone(),
            host: at.map(|(h, _)| h.to_owned()),
            port: at.map(|(_, p)| p),
            status: c.status.to_string(),
            attempts: c.attempts,
            last_error: c.last_error.clone(),
            dropped_at: c.dropped_at.map(ts),
            finding: c.finding_id,
        }
    }
}

impl CredentialView {
    pub fn new(c: &leash_core::DatabaseCredential, token_status: leash_core::TokenStatus) -> Self {
        let ended = token_status != leash_core::TokenStatus::Active;
        CredentialView {
            token_id: c.token_id.clone(),
            role: c.role.clone(),
            database: c.database.clone(),
            status: c.status.to_string(),
            token_status: token_status.to_string(),
            attempts: c.attempts,
            last_error: c.last_error.clone(),
            created_at: ts(c.created_at),
            expires_at: ts(c.expires_at),
            next_attempt_at: (ended && c.status != leash_core::CredentialStatus::Dropped)
                .then(|| ts(c.next_attempt_at)),
            dropped_at: c.dropped_at.map(ts),
            finding: c.finding_id,
        }
    }
}

/// A downstream database credential, as `leash credentials list` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CredentialView {
    /// The `postgres` token it belongs to.
    pub token_id: String,
    pub role: String,
    pub database: String,
    /// `active`, `dropped` or `drop_failed`.
    pub status: String,
    /// The token's status: `active`, `revoked` or `expired`.
    pub token_status: String,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub created_at: String,
    /// The token's expiry (the role's `VALID UNTIL`).
    pub expires_at: String,
    /// When the next drop attempt is due, for an ended token not yet dropped.
    pub next_attempt_at: Option<String>,
    pub dropped_at: Option<String>,
    pub finding: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RevocationView {
    pub at: String,
    /// `run_ended`, `workflow_changed`, `owner_offboarded`, `parent_revoked`, `manual`, …
    pub trigger: String,
    pub reason: String,
    /// The audit event that caused it.
    pub event: EventRef,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EventRef {
    pub seq: i64,
    pub kind: Option<String>,
    pub subject: Option<String>,
    pub actor: Option<String>,
    pub time: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenView {
    pub id: String,
    /// `active`, `revoked` or `expired`.
    pub status: String,
    pub format: String,
    pub owner: String,
    pub workload: String,
    pub run: Option<i64>,
    pub workflow: Option<String>,
    pub scopes: Vec<String>,
    pub audience: Vec<String>,
    pub issued_at: String,
    pub expires_at: String,
    pub parent: Option<String>,
    pub justification: Option<String>,
    pub revoked_at: Option<String>,
    pub revoked_trigger: Option<String>,
}

impl TokenView {
    pub fn new(t: &Token, reg: &Registry, now: Millis) -> Self {
        TokenView {
            id: t.id.clone(),
            status: t.status(now).to_string(),
            format: t.format.to_string(),
            owner: reg
                .owner(t.owner_id)
                .map(|o| o.name.clone())
                .unwrap_or_default(),
            workload: reg
                .workload(t.workload_id)
                .map(|w| w.name.clone())
                .unwrap_or_default(),
            run: t.run_id,
            workflow: t
                .workflow_id
                .and_then(|id| reg.workflow(id))
                .map(|w| w.name.clone()),
            scopes: t.scopes.iter().map(ToString::to_string).collect(),
            audience: t.audience.clone(),
            issued_at: ts(t.issued_at),
            expires_at: ts(t.expires_at),
            parent: t.parent_id.clone(),
            justification: t.justification.clone(),
            revoked_at: t.revocation.as_ref().map(|r| ts(r.at)),
            revoked_trigger: t.revocation.as_ref().map(|r| r.trigger.to_string()),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExplainBody {
    /// A token (`lsh_…` or a JWT) or a token id (`tok_…`).
    pub token_or_id: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeBody {
    /// A token (`lsh_…` or a JWT) or a token id (`tok_…`).
    pub token_or_id: String,
    /// Why; recorded in the audit log and shown by explain.
    pub reason: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OwnerBrief {
    pub name: String,
    pub email: String,
    pub kind: String,
    pub status: String,
    pub business_owner: bool,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WorkloadBrief {
    pub name: String,
    pub identity: Option<String>,
    pub environment: String,
    pub scope_ceiling: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WorkflowBrief {
    pub name: String,
    pub digest: String,
    pub tools: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RunBrief {
    pub id: i64,
    pub state: String,
    /// The digest the run started on; differs from the workflow's when it changed.
    pub digest: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Privileges {
    pub scopes: Vec<String>,
    /// The scopes that can change something (write or admin).
    pub write_scopes: Vec<String>,
    pub audience: Vec<String>,
    pub issued_at: String,
    pub expires_at: String,
    /// Seconds left; 0 once expired.
    pub expires_in: i64,
    pub justification: Option<String>,
}

/// The four questions about one token.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Explanation {
    pub id: String,
    /// `active`, `revoked` or `expired`.
    pub status: String,
    pub format: String,
    /// 1. Who owns it?
    pub owner: OwnerBrief,
    /// 2. What workload does it serve?
    pub workload: WorkloadBrief,
    pub workflow: Option<WorkflowBrief>,
    pub run: Option<RunBrief>,
    /// 3. What privileges does it have?
    pub privileges: Privileges,
    /// 4. What events revoke it?
    pub revocation_triggers: Vec<String>,
    /// Once revoked: when, why and which event.
    pub revoked: Option<RevocationView>,
    /// The token it was delegated from.
    pub parent: Option<String>,
    /// Delegation hops from the root token (0 for a root).
    pub depth: u32,
    /// RFC 8693 actor chain: who acts with this token, every earlier hop nested.
    #[schema(value_type = Option<Object>)]
    pub act: Option<leash_core::Actor>,
    /// Ancestors, nearest first, up to the root.
    pub lineage: Vec<LineageHop>,
    /// RFC 8693 `may_act`: the only party (its `sub`) that may act for it.
    pub may_act: Option<String>,
    /// RFC 9449: thumbprint of the key it is bound to (DPoP); null for bearer tokens.
    pub cnf_jkt: Option<String>,
    /// A break-glass grant: minted outside normal policy for an emergency,
    /// at most an hour, revoked at its TTL; `justification` is its reason.
    pub break_glass: bool,
    /// Why it was granted (the justification or break-glass reason).
    pub justification: Option<String>,
    /// For format `postgres`: the role, its database and whether it was dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<CredentialBrief>,
}

/// The four questions about a third-party credential (`external:NAME`).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ExternalExplanation {
    pub id: String,
    /// `active`, `expired`, `revoked` or `revocation_failed`.
    pub status: String,
    /// Always `external`.
    pub format: String,
    /// 1. Who owns it? (null: nobody can be named — a finding)
    pub owner: Option<OwnerBrief>,
    /// 2. What workloads use it?
    pub workload: Vec<String>,
    /// 3. What privileges does it have?
    pub privileges: ExternalPrivileges,
    /// 4. What events revoke it?
    pub revocation_triggers: Vec<String>,
    pub revoked: Option<String>,
    pub external: super::exposures::ExternalView,
}

/// What a third-party credential may do, as its inventory says.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ExternalPrivileges {
    pub scopes: Vec<String>,
    pub issued_at: Option<String>,
    pub expires_at: Option<String>,
    pub last_used_at: Option<String>,
}

/// One ancestor in a delegation chain.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LineageHop {
    pub id: String,
    pub workload: String,
    pub status: String,
    pub depth: u32,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EventView {
    pub seq: i64,
    pub time: String,
    pub kind: String,
    pub actor: String,
    pub subject: String,
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    pub prev_hash: String,
    pub hash: String,
}

impl From<&leash_core::audit::Event> for EventView {
    fn from(e: &leash_core::audit::Event) -> Self {
        EventView {
            seq: e.seq,
            time: ts(e.time),
            kind: e.kind.clone(),
            actor: e.actor.clone(),
            subject: e.subject.clone(),
            data: serde_json::from_str(&e.data)
                .unwrap_or(serde_json::Value::String(e.data.clone())),
            prev_hash: hex::encode(e.prev_hash),
            hash: hex::encode(e.hash),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChainProblem {
    /// `edited`, `deleted`, `reordered` or `unlinked`.
    pub problem: String,
    /// The row it concerns.
    pub seq: i64,
    pub message: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditVerification {
    pub ok: bool,
    pub events: u64,
    pub head_seq: i64,
    pub head_hash: String,
    pub problems: Vec<ChainProblem>,
}

impl AuditVerification {
    /// From a verifier's verdict.
    pub fn from_result(
        r: Result<leash_core::audit::ChainSummary, Vec<leash_core::audit::ChainBreak>>,
    ) -> Self {
        use leash_core::audit::ChainBreak as B;
        match r {
            Ok(s) => AuditVerification {
                ok: true,
                events: s.events,
                head_seq: s.head_seq,
                head_hash: hex::encode(s.head_hash),
                problems: vec![],
            },
            Err(breaks) => AuditVerification {
                ok: false,
                events: 0,
                head_seq: 0,
                head_hash: String::new(),
                problems: breaks
                    .iter()
                    .map(|b| {
                        let (problem, seq) = match b {
                            B::Edited { seq } => ("edited", *seq),
                            B::Deleted { from, .. } => ("deleted", *from),
                            B::Reordered { seq, .. } => ("reordered", *seq),
                            B::Unlinked { seq } => ("unlinked", *seq),
                        };
                        ChainProblem {
                            problem: problem.into(),
                            seq,
                            message: b.to_string(),
                        }
                    })
                    .collect(),
            },
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok`, or `unavailable` when this replica cannot vouch for its view
    /// of revocations (it then refuses decisions; HTTP 503).
    pub status: String,
    pub version: String,
    pub active_kid: String,
    /// Why this replica cannot vouch for its view, when it cannot.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reason: Option<String>,
    /// `sqlite` or `postgresql`.
    pub store: String,
    /// The audit sequence number applied here.
    pub head: i64,
    /// On a shared database: when this replica last caught up (Unix ms).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub synced_at: Option<i64>,
    /// With NATS: the last stream sequence this replica applied.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub nats_applied: Option<u64>,
}
