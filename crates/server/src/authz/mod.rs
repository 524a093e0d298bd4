//! Request-time authorization: the decision behind the AuthZEN endpoints.
//!
//! A decision, in order (the first failing step answers):
//! 1. the token is one this Leash issued (opaque: checksum + registry hash;
//!    JWT: key id + Ed25519 signature), found through the verified-token
//!    [`cache::TokenCache`];
//! 2. it is active: not in the store's revocation set (current as of the
//!    last acknowledged commit, so never stale) and not expired;
//! 3. it is presented by the workload it is bound to (AuthZEN `subject.id`
//!    is that workload's identity or name), with a valid DPoP proof by its
//!    key when it is DPoP-bound;
//! 4. one of its scopes covers the action on the resource;
//! 5. the Cedar policies permit ([`leash_policy::PolicyEngine`]).
//!
//! Four ways of breaking a token's terms are *violations*
//! ([`leash_core::ViolationClass`]): each is denied and opens a finding, and
//! the classes configured to revoke (by default a workload mismatch and a
//! write outside scope) revoke the token and its descendants before the
//! answer is sent. Every decision about a known token becomes a usage
//! record ([`usage`]).

pub mod cache;
pub mod usage;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use leash_core::{Millis, RevocationTrigger, Token, TokenFormat, ViolationClass};
use leash_policy::{Decision, DecisionInput, PolicyEngine, Reason, ReasonKind, ResourceRef};
use leash_store::{NewViolation, StoreError};

use crate::App;
use crate::api::dto::ts;

/// Most verified tokens kept in memory.
pub const TOKEN_CACHE: usize = 200_000;
/// Most (token, class) violations remembered as already reported.
const REPORTED_CAP: usize = 100_000;

/// What a violation of one class does besides the denial and the finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViolationResponse {
    /// Deny and open a finding.
    Finding,
    /// Also revoke the token and its descendants at once.
    Revoke,
}

/// The response configured for each violation class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ViolationResponses([ViolationResponse; 4]);

impl Default for ViolationResponses {
    fn default() -> Self {
        Self(ViolationClass::ALL.map(|c| {
            if c.revokes_by_default() {
                ViolationResponse::Revoke
            } else {
                ViolationResponse::Finding
            }
        }))
    }
}

impl ViolationResponses {
    /// The response for `class`.
    pub fn get(&self, class: ViolationClass) -> ViolationResponse {
        self.0[index(class)]
    }

    /// Set one class from `CLASS=revoke|finding`.
    pub fn set_from(&mut self, spec: &str) -> Result<(), String> {
        let (class, response) = spec.split_once('=').ok_or_else(|| {
            format!("`{spec}`: write CLASS=revoke or CLASS=finding, e.g. after_run=revoke")
        })?;
        let class: ViolationClass = class.trim().parse().map_err(|e| format!("{e}"))?;
        self.0[index(class)] = match response.trim() {
            "revoke" => ViolationResponse::Revoke,
            "finding" => ViolationResponse::Finding,
            other => {
                return Err(format!(
                    "`{other}` is not a response for {class}; use revoke or finding"
                ));
            }
        };
        Ok(())
    }
}

fn index(class: ViolationClass) -> usize {
    ViolationClass::ALL
        .iter()
        .position(|c| *c == class)
        .unwrap_or_default()
}

/// The request-time decision point's state.
pub struct Authorizer {
    pub engine: PolicyEngine,
    /// Operator policies (`*.cedar`), overlaid on the shipped defaults.
    pub policy_dir: PathBuf,
    pub cache: cache::TokenCache,
    pub usage: usage::UsageRecorder,
    pub violations: ViolationResponses,
    /// (token, class) pairs already reported, so a loop of bad requests opens one finding.
    reported: Mutex<HashSet<(String, ViolationClass)>>,
}

impl std::fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorizer")
            .field("policy_dir", &self.policy_dir)
            .field("violations", &self.violations)
            .finish_non_exhaustive()
    }
}

impl Authorizer {
    pub fn new(
        engine: PolicyEngine,
        policy_dir: PathBuf,
        usage: usage::UsageRecorder,
        violations: ViolationResponses,
    ) -> Self {
        Self {
            engine,
            policy_dir,
            cache: cache::TokenCache::new(TOKEN_CACHE),
            usage,
            violations,
            reported: Mutex::new(HashSet::new()),
        }
    }

    /// True the first time (token, class) is seen.
    fn first_report(&self, token: &str, class: ViolationClass) -> bool {
        let mut seen = self.reported.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= REPORTED_CAP {
            seen.clear();
        }
        seen.insert((token.to_owned(), class))
    }
}

/// A DPoP proof forwarded by the resource server, with the request it was made for.
#[derive(Debug, Clone, Copy)]
pub struct DpopInput<'a> {
    pub proof: &'a str,
    pub htm: &'a str,
    pub htu: &'a str,
}

/// One AuthZEN evaluation, already checked for shape.
#[derive(Debug, Clone, Copy)]
pub struct Evaluation<'a> {
    /// `subject.id`: the presenting workload's identity or name.
    pub subject: &'a str,
    /// `subject.properties.token`.
    pub token: Option<&'a str>,
    /// `subject.properties.dpop`.
    pub dpop: Option<DpopInput<'a>>,
    pub action: &'a str,
    pub resource: ResourceRef<'a>,
    /// `context.tool`.
    pub tool: Option<&'a str>,
}

/// The cache key of the token text last seen in one batch: the items of a
/// batch usually carry the same token, so it is hashed once, not per item.
/// (Both texts come from the same caller, so comparing them leaks nothing.)
#[derive(Debug, Default)]
pub struct KeyMemo {
    text: String,
    key: [u8; 32],
}

impl KeyMemo {
    fn key(&mut self, text: &str) -> [u8; 32] {
        if self.text != text {
            self.key = leash_token::sha256(text.as_bytes());
            text.clone_into(&mut self.text);
        }
        self.key
    }
}

/// Find the token a presented credential is: cache first, else verify it.
async fn find_token(
    app: &App,
    text: &str,
    now: Millis,
    memo: Option<&mut KeyMemo>,
) -> Result<Arc<Token>, Reason> {
    let unknown = |why: &str| {
        Reason::new(
            ReasonKind::TokenInactive,
            format!(
                "the presented token is not one this Leash issued ({why}); mint one with `leash mint` or through /oauth2/token"
            ),
        )
    };
    if text.len() > 16 * 1024 {
        return Err(unknown("it is larger than 16 KiB"));
    }
    let key = match memo {
        Some(m) => m.key(text),
        None => leash_token::sha256(text.as_bytes()),
    };
    if let Some(t) = app.authz.cache.get(&key) {
        return Ok(t);
    }
    let found = if text.starts_with(leash_token::opaque::PREFIX) {
        let o = leash_token::opaque::parse(text).map_err(|_| unknown("bad checksum"))?;
        app.store.find_token_by_secret_hash(o.hash).await
    } else if leash_token::jwt::looks_like_jwt(text) {
        let claims = leash_token::jwt::verify(&app.keys(), text)
            .map_err(|_| unknown("its signature does not verify with this Leash's keys"))?;
        app.store.get_token(&claims.jti).await
    } else {
        return Err(unknown("it is neither `lsh_…` nor a JWT"));
    };
    match found {
        Ok(t) => {
            // a JWT and an opaque token are never each other
            let expected = if text.starts_with(leash_token::opaque::PREFIX) {
                TokenFormat::Opaque
            } else {
                TokenFormat::Jwt
            };
            if t.format != expected {
                return Err(unknown("its format does not match its record"));
            }
            let t = Arc::new(t);
            app.authz.cache.insert(key, t.clone(), now);
            Ok(t)
        }
        Err(StoreError::NotFound { .. }) => Err(unknown("no record of it")),
        Err(e) => {
            tracing::error!(error = %e, "decision: token lookup failed");
            Err(Reason::new(
                ReasonKind::EvaluationError,
                "Leash could not look the token up just now, so it denies; retry",
            ))
        }
    }
}

/// Why a revoked token was revoked, as a person reads it.
fn revoked_reason(token: &Token, r: &leash_core::Revocation) -> Reason {
    Reason::new(
        ReasonKind::TokenInactive,
        format!(
            "token `{}` was revoked at {} because {} (trigger {}); mint a new token",
            token.id,
            ts(r.at),
            r.reason,
            r.trigger
        ),
    )
}

/// What one evaluation decided, and what it broke.
#[derive(Debug)]
pub struct Outcome {
    /// Shared with the policy set's memory of it when remembered.
    pub decision: Arc<Decision>,
    /// The token's id when the token was found.
    pub token: Option<Arc<Token>>,
    pub violation: Option<(ViolationClass, String)>,
}

/// Decide one evaluation (no side effects: see [`evaluate`]).
pub async fn judge(
    app: &App,
    e: &Evaluation<'_>,
    now: Millis,
    memo: Option<&mut KeyMemo>,
) -> Outcome {
    let deny = |reason: Reason| Outcome {
        decision: Arc::new(Decision::deny(reason)),
        token: None,
        violation: None,
    };
    // fail closed: a replica that cannot vouch for its revocation set
    // answers nothing but a deny that says why
    if let Err(why) = app.vouch() {
        app.metrics.decisions_unvouched.inc();
        return deny(Reason::new(
            ReasonKind::EvaluationError,
            format!("{why}; Leash refuses what it cannot vouch for: retry on another replica"),
        ));
    }
    let Some(text) = e.token else {
        return deny(Reason::new(
            ReasonKind::TokenInactive,
            "no token: send the workload's token in `subject.properties.token`",
        ));
    };
    let token = match find_token(app, text.trim(), now, memo).await {
        Ok(t) => t,
        Err(r) => {
            app.metrics.decisions_unknown_token.inc();
            return deny(r);
        }
    };
    let with_token = |reason: Reason, violation: Option<(ViolationClass, String)>| Outcome {
        decision: Arc::new(Decision::deny(reason)),
        token: Some(token.clone()),
        violation,
    };
    // 2. active
    let revocation = app
        .store
        .revocations()
        .get(&token.id)
        .or_else(|| token.revocation.clone());
    if let Some(r) = &revocation {
        let after_run = matches!(r.trigger, RevocationTrigger::RunEnded);
        let violation = after_run.then(|| {
            (
                ViolationClass::AfterRun,
                format!(
                    "token {} was used after its run ended ({})",
                    token.id, r.reason
                ),
            )
        });
        return with_token(revoked_reason(&token, r), violation);
    }
    if now >= token.expires_at {
        return with_token(
            Reason::new(
                ReasonKind::TokenInactive,
                format!(
                    "token `{}` expired at {}; mint a new token",
                    token.id,
                    ts(token.expires_at)
                ),
            ),
            None,
        );
    }
    // 3. bound to the presenting workload
    let reg = app.store.registry().read();
    let (Some(workload), Some(owner)) =
        (reg.workload(token.workload_id), reg.owner(token.owner_id))
    else {
        return with_token(
            Reason::new(
                ReasonKind::EvaluationError,
                "the token's workload or owner is missing from the registry; Leash denies",
            ),
            None,
        );
    };
    let bound = workload.identity.as_deref() == Some(e.subject) || workload.name == e.subject;
    if !bound {
        let reason = Reason::workload_mismatch(&token.id, &workload.name, e.subject);
        let detail = format!(
            "token {} of workload `{}` was presented by `{}`",
            token.id, workload.name, e.subject
        );
        return with_token(reason, Some((ViolationClass::WorkloadMismatch, detail)));
    }
    if let Some(jkt) = &token.cnf_jkt {
        let refusal = match e.dpop {
            None => Some(format!(
                "token `{}` is DPoP-bound: forward the request's DPoP proof, method and URL in `subject.properties.dpop` ({{proof, htm, htu}})",
                token.id
            )),
            Some(d) => match crate::api::dpop::verify_proof(app, d.proof, d.htm, d.htu, Some(text))
            {
                Err(err) => Some(format!("the DPoP proof is not valid: {}", err.description)),
                Ok(proof_jkt) if &proof_jkt != jkt => Some(format!(
                    "the DPoP proof is signed by another key than the one token `{}` is bound to; the token may be stolen",
                    token.id
                )),
                Ok(_) => None,
            },
        };
        if let Some(msg) = refusal {
            return with_token(Reason::new(ReasonKind::WorkloadMismatch, msg), None);
        }
    }
    // 4. scope
    if leash_policy::scope_covers(
        &token.scopes,
        e.action,
        e.resource.resource_type,
        Some(e.resource.id),
    )
    .is_none()
    {
        let reason = Reason::scope_not_covered(
            &token.id,
            &token.scopes,
            e.action,
            e.resource.resource_type,
            Some(e.resource.id),
        );
        let writes = !matches!(
            leash_policy::action_class(e.action),
            leash_core::scope::ActionClass::Read
        );
        let violation = writes.then(|| {
            (
                ViolationClass::WriteOutsideScope,
                format!(
                    "token {} tried `{}` on {} `{}` outside its scopes",
                    token.id, e.action, e.resource.resource_type, e.resource.id
                ),
            )
        });
        return with_token(reason, violation);
    }
    // 4b. a removability canary withholds scopes from this run
    if let Some(canary) = token.run_id.and_then(|run| app.review.canary(run)) {
        let kept: Vec<leash_core::scope::Scope> = token
            .scopes
            .iter()
            .filter(|s| !canary.scopes.contains(s))
            .cloned()
            .collect();
        let withheld = leash_policy::scope_covers(
            &canary.scopes,
            e.action,
            e.resource.resource_type,
            Some(e.resource.id),
        )
        .is_some();
        let still = leash_policy::scope_covers(
            &kept,
            e.action,
            e.resource.resource_type,
            Some(e.resource.id),
        )
        .is_some();
        if withheld && !still {
            canary
                .denied
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return with_token(
                Reason::new(
                    ReasonKind::Canary,
                    format!(
                        "canary: removability test {} withholds {} from run {} to see whether the workflow needs it; the run's outcome decides",
                        canary.test,
                        canary
                            .scopes
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(" "),
                        token.run_id.unwrap_or_default()
                    ),
                ),
                None,
            );
        }
    }
    // 5. policy
    let run = token.run_id.and_then(|id| reg.running_run(id));
    let workflow = token.workflow_id.and_then(|id| reg.workflow(id));
    // the registry's generation stands for the records read above, and the
    // revocation was checked: the same request may reuse a decision
    let decision = app.authz.engine.decide_in_epoch(
        &DecisionInput {
            owner,
            workload,
            workflow,
            run,
            token: &token,
            break_glass: token.break_glass,
            action: e.action,
            resource: e.resource,
            tool: e.tool,
            now,
        },
        reg.generation(),
    );
    drop(reg);
    let violation = if decision.allow {
        None
    } else {
        decision
            .reasons
            .iter()
            .find_map(|r| match r.policy.as_deref() {
                Some("declared-tools-only") => Some((
                    ViolationClass::UndeclaredTool,
                    format!(
                        "token {} was used from tool `{}`, which its workflow does not declare",
                        token.id,
                        e.tool.unwrap_or_default()
                    ),
                )),
                Some("no-writes-after-run") => Some((
                    ViolationClass::AfterRun,
                    format!("token {} tried to write after its run ended", token.id),
                )),
                _ => None,
            })
    };
    Outcome {
        decision,
        token: Some(token),
        violation,
    }
}

/// Decide one evaluation, record it as usage, and act on a violation
/// (finding; revocation first when the class is configured to revoke).
pub async fn evaluate(app: &App, e: &Evaluation<'_>, memo: Option<&mut KeyMemo>) -> Arc<Decision> {
    let now = leash_store::now_ms();
    let outcome = judge(app, e, now, memo).await;
    if outcome.decision.allow {
        app.metrics.decisions_allowed.inc();
    } else {
        app.metrics.decisions_denied.inc();
    }
    if let Some(token) = &outcome.token {
        let reason = match outcome.decision.reasons.first() {
            Some(r) => (kind_name(r.kind), r.policy.as_deref()),
            None => ("", None),
        };
        app.authz.usage.record(usage::Use {
            at: now,
            token_id: &token.id,
            workload: e.subject,
            action: e.action,
            resource_type: e.resource.resource_type,
            resource_id: e.resource.id,
            tool: e.tool.unwrap_or_default(),
            allowed: outcome.decision.allow,
            reason,
            break_glass: token.break_glass,
        });
        if let Some((class, detail)) = outcome.violation {
            act_on_violation(app, token, class, detail, e).await;
        }
    }
    outcome.decision
}

fn kind_name(k: ReasonKind) -> &'static str {
    match k {
        ReasonKind::Permit => "permit",
        ReasonKind::Forbid => "forbid",
        ReasonKind::NoPermit => "no_permit",
        ReasonKind::EvaluationError => "evaluation_error",
        ReasonKind::TokenInactive => "token_inactive",
        ReasonKind::WorkloadMismatch => "workload_mismatch",
        ReasonKind::ScopeNotCovered => "scope_not_covered",
        ReasonKind::Canary => "canary",
    }
}

async fn act_on_violation(
    app: &App,
    token: &Token,
    class: ViolationClass,
    detail: String,
    e: &Evaluation<'_>,
) {
    let revoke = app.authz.violations.get(class) == ViolationResponse::Revoke;
    // a class that only opens a finding reports once per token; a revoking
    // class acts at once (the token is revoked after the first, so repeats
    // stop at the revocation check)
    if !app.authz.first_report(&token.id, class) && !revoke {
        return;
    }
    app.metrics.violations.inc();
    let evidence = serde_json::json!({
        "subject": e.subject,
        "action": e.action,
        "resource": {"type": e.resource.resource_type, "id": e.resource.id},
        "tool": e.tool,
    });
    let result = app
        .store
        .record_violation_and_revoke(
            NewViolation {
                token_id: token.id.clone(),
                class,
                detail,
                evidence,
                revoke,
            },
            "leash:authzen",
        )
        .await;
    match result {
        Ok(rec) => app.metrics.revoked(&rec.revoked),
        Err(err) => {
            tracing::error!(error = %err, token = %token.id, class = %class, "could not record a violation")
        }
    }
}
