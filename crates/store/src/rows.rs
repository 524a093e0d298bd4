//! Stored rows to domain types, the same for every backend: columns are read
//! by name through [`RowRead`], so a row from SQLite and one from PostgreSQL
//! become the same value.

use std::str::FromStr;

use leash_core::audit::Event;
use leash_core::scope::Scope;
use leash_core::{
    Approval, Client, Exposure, ExternalToken, Finding, IdentityRule, Issuer, Owner, Revocation,
    Run, Token, Workflow, Workload,
};

use crate::sql::RowRead;
use crate::{RemovalTest, StoreError, UsageRecord, UsageTotal};

pub fn hash32(v: Vec<u8>) -> Result<[u8; 32], StoreError> {
    v.try_into()
        .map_err(|_| StoreError::Corrupt("an audit hash is not 32 bytes".into()))
}

pub fn parse<T: FromStr>(what: &str, s: &str) -> Result<T, StoreError> {
    s.parse()
        .map_err(|_| StoreError::Corrupt(format!("bad {what} `{s}`")))
}

pub fn scopes_from(text: &str) -> Result<Vec<Scope>, StoreError> {
    text.split_whitespace().map(|s| parse("scope", s)).collect()
}

pub fn join_scopes(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Space-separated words as a list.
pub fn words(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_owned).collect()
}

/// Space-separated ids.
pub fn ids(text: &str) -> Vec<i64> {
    text.split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect()
}

pub fn join_ids(ids: &[i64]) -> String {
    ids.iter().map(i64::to_string).collect::<Vec<_>>().join(" ")
}

/// A stored count (never negative) as `u64`.
pub fn count(v: i64) -> u64 {
    u64::try_from(v).unwrap_or_default()
}

/// A count to store.
pub fn stored_count(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn json<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|_| StoreError::Corrupt(format!("{what} not JSON")))
}

pub fn owner(row: &impl RowRead) -> Result<Owner, StoreError> {
    Ok(Owner {
        id: row.int("id")?,
        name: row.text("name")?,
        email: row.text("email")?,
        kind: parse("owner kind", &row.text("kind")?)?,
        business_owner: row.flag("business_owner")?,
        status: parse("owner status", &row.text("status")?)?,
        created_at: row.int("created_at")?,
        offboarded_at: row.opt_int("offboarded_at")?,
    })
}

pub fn workload(row: &impl RowRead) -> Result<Workload, StoreError> {
    Ok(Workload {
        id: row.int("id")?,
        name: row.text("name")?,
        owner_id: row.int("owner_id")?,
        identity: row.opt_text("identity")?,
        environment: parse("environment", &row.text("environment")?)?,
        scope_ceiling: scopes_from(&row.text("scope_ceiling")?)?,
        created_at: row.int("created_at")?,
    })
}

pub fn workflow(row: &impl RowRead) -> Result<Workflow, StoreError> {
    Ok(Workflow {
        id: row.int("id")?,
        name: row.text("name")?,
        owner_id: row.int("owner_id")?,
        digest: row.text("digest")?,
        tools: words(&row.text("tools")?),
        created_at: row.int("created_at")?,
        updated_at: row.int("updated_at")?,
    })
}

pub fn client(row: &impl RowRead) -> Result<Client, StoreError> {
    Ok(Client {
        id: row.text("id")?,
        workload_id: row.int("workload_id")?,
        secret_hash: row.opt_bytes("secret_hash")?.map(hash32).transpose()?,
        jwks: row.opt_text("jwks")?,
        can_introspect: row.flag("can_introspect")?,
        created_at: row.int("created_at")?,
    })
}

pub fn issuer(row: &impl RowRead) -> Result<Issuer, StoreError> {
    Ok(Issuer {
        id: row.int("id")?,
        name: row.text("name")?,
        issuer: row.text("issuer")?,
        jwks_url: row.opt_text("jwks_url")?,
        jwks: row.opt_text("jwks")?,
        audience: row.text("audience")?,
        created_at: row.int("created_at")?,
    })
}

pub fn identity_rule(row: &impl RowRead) -> Result<IdentityRule, StoreError> {
    Ok(IdentityRule {
        id: row.int("id")?,
        workload_id: row.int("workload_id")?,
        issuer_id: row.int("issuer_id")?,
        claims: json(&row.text("claims")?, "an identity rule's claims are")?,
        created_at: row.int("created_at")?,
    })
}

pub fn run(row: &impl RowRead) -> Result<Run, StoreError> {
    Ok(Run {
        id: row.int("id")?,
        workflow_id: row.int("workflow_id")?,
        workload_id: row.int("workload_id")?,
        digest: row.text("digest")?,
        state: parse("run state", &row.text("state")?)?,
        started_at: row.int("started_at")?,
        ended_at: row.opt_int("ended_at")?,
    })
}

/// The revocation columns of a token row, when it is revoked.
pub fn revocation(row: &impl RowRead) -> Result<Option<Revocation>, StoreError> {
    let Some(at) = row.opt_int("revoked_at")? else {
        return Ok(None);
    };
    Ok(Some(Revocation {
        at,
        trigger: parse(
            "revocation trigger",
            &row.opt_text("revoked_trigger")?.unwrap_or_default(),
        )?,
        reason: row.opt_text("revoked_reason")?.unwrap_or_default(),
        event: row.opt_int("revoked_event")?.unwrap_or_default(),
    }))
}

pub fn token(row: &impl RowRead) -> Result<Token, StoreError> {
    Ok(Token {
        id: row.text("id")?,
        format: parse("token format", &row.text("format")?)?,
        owner_id: row.int("owner_id")?,
        workload_id: row.int("workload_id")?,
        run_id: row.opt_int("run_id")?,
        workflow_id: row.opt_int("workflow_id")?,
        scopes: scopes_from(&row.text("scopes")?)?,
        audience: words(&row.text("audience")?),
        issued_at: row.int("issued_at")?,
        expires_at: row.int("expires_at")?,
        parent_id: row.opt_text("parent_id")?,
        justification: row.opt_text("justification")?,
        revocation: revocation(row)?,
        depth: u32::try_from(row.int("depth")?).unwrap_or_default(),
        act: row
            .opt_text("act")?
            .map(|a| json(&a, "a token's act claim is"))
            .transpose()?,
        may_act: row.opt_text("may_act")?,
        cnf_jkt: row.opt_text("cnf_jkt")?,
        break_glass: row.flag("break_glass")?,
    })
}

pub fn event(row: &impl RowRead) -> Result<Event, StoreError> {
    Ok(Event {
        seq: row.int("seq")?,
        time: row.int("time")?,
        kind: row.text("kind")?,
        actor: row.text("actor")?,
        subject: row.text("subject")?,
        data: row.text("data")?,
        prev_hash: hash32(row.opt_bytes("prev_hash")?.unwrap_or_default())?,
        hash: hash32(row.opt_bytes("hash")?.unwrap_or_default())?,
    })
}

pub fn approval(row: &impl RowRead) -> Result<Approval, StoreError> {
    Ok(Approval {
        id: row.int("id")?,
        kind: parse("approval kind", &row.text("kind")?)?,
        workload_id: row.int("workload_id")?,
        owner_id: row.int("owner_id")?,
        request: json(&row.text("request")?, "an approval's request is")?,
        justification: row.text("justification")?,
        requested_by: row.text("requested_by")?,
        requested_at: row.int("requested_at")?,
        status: parse("approval status", &row.text("status")?)?,
        decided_by: row.opt_text("decided_by")?,
        decided_at: row.opt_int("decided_at")?,
        decision_note: row.opt_text("decision_note")?,
        token_id: row.opt_text("token_id")?,
    })
}

pub fn external(row: &impl RowRead) -> Result<ExternalToken, StoreError> {
    Ok(ExternalToken {
        id: row.int("id")?,
        name: row.text("name")?,
        kind: row.text("kind")?,
        owner_id: row.opt_int("owner_id")?,
        fingerprint: row.text("fingerprint")?,
        workloads: ids(&row.text("workloads")?),
        workflows: ids(&row.text("workflows")?),
        scopes: words(&row.text("scopes")?),
        stored_in: row.opt_text("stored_in")?,
        connector: row.opt_text("connector")?,
        status: parse("external token status", &row.text("status")?)?,
        created_at: row.int("created_at")?,
        revoked_at: row.opt_int("revoked_at")?,
        imported: match row.opt_text("credential_kind")? {
            None => None,
            Some(credential_kind) => Some(leash_core::ImportedFacts {
                provider: row.opt_text("provider")?.unwrap_or_default(),
                credential_kind,
                key_id: row.opt_text("key_id")?,
                issued_at: row.opt_int("issued_at")?,
                expires_at: row.opt_int("expires_at")?,
                source: row.opt_text("imported_from")?,
            }),
        },
        last_used_at: row.opt_int("last_used_at")?,
    })
}

pub fn exposure(row: &impl RowRead) -> Result<Exposure, StoreError> {
    Ok(Exposure {
        id: row.int("id")?,
        source: parse("exposure source", &row.text("source")?)?,
        location: row.text("location")?,
        detector: row.text("detector")?,
        excerpt: row.text("excerpt")?,
        fingerprint: row.text("fingerprint")?,
        token_id: row.opt_text("token_id")?,
        external_id: row.opt_int("external_id")?,
        action: parse("exposure action", &row.text("action")?)?,
        detected_at: row.int("detected_at")?,
        revoked_at: row.opt_int("revoked_at")?,
        revoked_count: count(row.int("revoked_count")?),
        event: row.int("event")?,
    })
}

pub fn finding(row: &impl RowRead) -> Result<Finding, StoreError> {
    Ok(Finding {
        id: row.int("id")?,
        kind: row.text("kind")?,
        severity: parse("severity", &row.text("severity")?)?,
        subject: row.text("subject")?,
        owner_id: row.opt_int("owner_id")?,
        summary: row.text("summary")?,
        evidence: json(&row.text("evidence")?, "a finding's evidence is")?,
        status: parse("finding status", &row.text("status")?)?,
        created_at: row.int("created_at")?,
    })
}

pub fn removal_test(row: &impl RowRead) -> Result<RemovalTest, StoreError> {
    Ok(RemovalTest {
        id: row.int("id")?,
        target_kind: row.text("target_kind")?,
        target: row.text("target")?,
        workflow_id: row.opt_int("workflow_id")?,
        workload_id: row.opt_int("workload_id")?,
        scopes: words(&row.text("scopes")?),
        verdict: row.text("verdict")?,
        evidence: json(&row.text("evidence")?, "a removal test's evidence is")?,
        canary: row.text("canary")?,
        canary_run: row.opt_int("canary_run")?,
        canary_denied: count(row.int("canary_denied")?),
        digest: row.opt_text("digest")?,
        created_at: row.int("created_at")?,
        updated_at: row.int("updated_at")?,
    })
}

pub fn usage_total(row: &impl RowRead) -> Result<UsageTotal, StoreError> {
    Ok(UsageTotal {
        token_id: row.text("token_id")?,
        workload: row.text("workload")?,
        action: row.text("action")?,
        resource: row.text("resource")?,
        tool: row.text("tool")?,
        allowed: row.flag("allowed")?,
        count: count(row.int("count")?),
        first_at: row.int("first_at")?,
        last_at: row.int("last_at")?,
    })
}

pub fn usage_record(row: &impl RowRead) -> Result<UsageRecord, StoreError> {
    Ok(UsageRecord {
        at: row.int("at")?,
        token_id: row.text("token_id")?,
        workload: row.text("workload")?,
        action: row.text("action")?,
        resource: row.text("resource")?,
        tool: row.text("tool")?,
        allowed: row.flag("allowed")?,
        reason: row.text("reason")?,
    })
}

pub fn usage_run_total(row: &impl RowRead) -> Result<crate::UsageRunTotal, StoreError> {
    Ok(crate::UsageRunTotal {
        token_id: row.text("token_id")?,
        run: row.text("run")?,
        step: row.text("step")?,
        action: row.text("action")?,
        resource: row.text("resource")?,
        count: count(row.int("count")?),
        first_at: row.int("first_at")?,
        last_at: row.int("last_at")?,
    })
}

pub fn credential(row: &impl RowRead) -> Result<leash_core::DatabaseCredential, StoreError> {
    Ok(leash_core::DatabaseCredential {
        token_id: row.text("token_id")?,
        role: row.text("role")?,
        database: row.text("database")?,
        password_hash: row
            .opt_bytes("password_hash")?
            .ok_or_else(|| StoreError::Corrupt("a credential has no password hash".into()))
            .and_then(|h| {
                h.try_into().map_err(|_| {
                    StoreError::Corrupt("a credential's password hash is not 32 bytes".into())
                })
            })?,
        status: parse("credential status", &row.text("status")?)?,
        attempts: u32::try_from(row.int("attempts")?).unwrap_or(u32::MAX),
        last_error: row.opt_text("last_error")?,
        created_at: row.int("created_at")?,
        expires_at: row.int("expires_at")?,
        next_attempt_at: row.int("next_attempt_at")?,
        dropped_at: row.opt_int("dropped_at")?,
        finding_id: row.opt_int("finding_id")?,
    })
}
