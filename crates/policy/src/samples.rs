//! Sample requests and issuances with expected outcomes, for
//! `leash policy test FILE`.
//!
//! # Format
//!
//! A JSON array; each sample names a request and the outcome it must get:
//!
//! ```json
//! [
//!   {
//!     "name": "dev bot may not push to a prod repo",
//!     "input": {
//!       "owner":    {"name": "team-ai", "kind": "team", "status": "active"},
//!       "workload": {"name": "triage-bot", "environment": "dev", "identity": "spiffe://acme/triage"},
//!       "workflow": {"name": "triage", "tools": ["git-clone", "git-push"]},
//!       "run":      {"id": 7, "state": "running"},
//!       "token":    {"id": "tok-1", "scopes": ["repo:acme/*:write"], "expires_at": 4102444800000,
//!                    "revoked": false, "break_glass": false},
//!       "action":   "write",
//!       "resource": {"type": "repo", "id": "acme/api", "properties": {"environment": "prod"}},
//!       "tool":     "git-push",
//!       "now":      1767225600000
//!     },
//!     "expect": "deny",
//!     "expect_policy": "prod-only-from-prod"
//!   }
//! ]
//! ```
//!
//! Required: `name`, `input.workload` (`name`, `environment`: dev, stage or
//! prod), `input.action`, `input.resource` (`type`, `id`) — or instead of
//! those two `input.issue` (see [Issuance samples](#issuance-samples)) —
//! and `expect` (`"allow"` or `"deny"`). Everything else is optional:
//!
//! * `owner` defaults to an active team named `owner`; `identity` to none.
//! * `workflow` and `run` default to none (a token not bound to a run).
//!   `run.state` is running, succeeded, failed or cancelled.
//! * `token.id` defaults to `sample-token`, `expires_at` (Unix ms) to never,
//!   `revoked` and `break_glass` to false. `token.scopes`, when given, are
//!   checked like the server does ([`crate::scope_covers`]); when absent,
//!   only the policies are tested. A revoked or expired token is denied
//!   before the policies run, like on the server.
//! * `resource.properties` is the AuthZEN object (its `environment` counts).
//! * `tool` is AuthZEN `context.tool`; `now` (Unix ms) defaults to 0.
//! * `expect_policy`: the sample passes only if this policy id is among the
//!   decision's reasons (a forbid that denied, or a permit that allowed).
//!
//! ## Issuance samples
//!
//! A sample with `input.issue` instead of `action` and `resource` asks
//! whether a token may be issued to the workload
//! ([`PolicySet::decide_issuance`]):
//!
//! ```json
//! {
//!   "name": "no 2h token for a prod workload",
//!   "input": {
//!     "owner":    {"name": "team-ai", "status": "active"},
//!     "workload": {"name": "deploy-bot", "environment": "prod",
//!                  "scope_ceiling": ["repo:acme/*:write"]},
//!     "run":      {"id": 41, "state": "running"},
//!     "issue":    {"kind": "mint", "scopes": ["repo:acme/api:write"], "ttl_secs": 7200,
//!                  "justified": true, "parent_environment": "prod"},
//!     "now":      1767225600000
//!   },
//!   "expect": "deny",
//!   "expect_policy": "issue-ttl-caps-prod"
//! }
//! ```
//!
//! * `issue.scopes` and `issue.ttl_secs` are required. `kind` (mint,
//!   exchange, client_credentials, federated, break_glass) defaults to
//!   mint, `justified` to false; `parent_environment` and
//!   `actor_environment` (dev, stage, prod) to none.
//! * `workload.scope_ceiling`, when given, gives `context.above_ceiling`
//!   ([`crate::scopes_above_ceiling`]); when absent, nothing is above it.
//! * `run`, when given, is the run the token is for (`context.run_state`).
//! * `action`, `resource`, `token`, `tool` and `workflow` belong to request
//!   samples and are refused next to `issue`.
//! * Only the policies are tested: the server's built-in issuance rules
//!   ([`leash_core::issuance::check_mint`]) run before them and are not
//!   repeated here.
//!
//! Unknown fields are refused, so a typo cannot silently change a sample.
//! `crates/policy/samples/defaults.json` is a complete example that passes
//! against the default policies.

use leash_core::scope::Scope;
use leash_core::{
    Environment, Millis, Owner, OwnerKind, OwnerStatus, Revocation, RevocationTrigger, Run,
    RunState, Token, TokenFormat, Workflow, Workload,
};
use serde::{Deserialize, Serialize};

use crate::decision::{Decision, Reason, ReasonKind};
use crate::input::{DecisionInput, IssuanceInput, IssuanceKind, ResourceRef};
use crate::policies::PolicySet;
use crate::{scope_covers, scopes_above_ceiling};

/// The outcome a sample expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    Allow,
    Deny,
}

/// One sample from the file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sample {
    pub name: String,
    pub input: SampleInput,
    pub expect: Expect,
    #[serde(default)]
    pub expect_policy: Option<String>,
}

/// The request of a sample, with the registry records it involves.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleInput {
    #[serde(default)]
    pub owner: Option<SampleOwner>,
    pub workload: SampleWorkload,
    #[serde(default)]
    pub workflow: Option<SampleWorkflow>,
    #[serde(default)]
    pub run: Option<SampleRun>,
    #[serde(default)]
    pub token: Option<SampleToken>,
    /// The AuthZEN action name (request samples).
    #[serde(default)]
    pub action: Option<String>,
    /// The AuthZEN resource (request samples).
    #[serde(default)]
    pub resource: Option<SampleResource>,
    /// The token asked for (issuance samples).
    #[serde(default)]
    pub issue: Option<SampleIssue>,
    #[serde(default)]
    pub tool: Option<String>,
    #[serde(default)]
    pub now: Millis,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleOwner {
    pub name: String,
    #[serde(default = "team")]
    pub kind: OwnerKind,
    #[serde(default = "active")]
    pub status: OwnerStatus,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleWorkload {
    pub name: String,
    pub environment: Environment,
    #[serde(default)]
    pub identity: Option<String>,
    /// The workload's scope ceiling (issuance samples).
    #[serde(default)]
    pub scope_ceiling: Option<Vec<Scope>>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleWorkflow {
    pub name: String,
    #[serde(default)]
    pub tools: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleRun {
    #[serde(default = "one")]
    pub id: i64,
    pub state: RunState,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleToken {
    #[serde(default = "sample_token_id")]
    pub id: String,
    #[serde(default)]
    pub scopes: Option<Vec<Scope>>,
    #[serde(default = "never")]
    pub expires_at: Millis,
    #[serde(default)]
    pub revoked: bool,
    #[serde(default)]
    pub break_glass: bool,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleResource {
    #[serde(rename = "type")]
    pub resource_type: String,
    pub id: String,
    #[serde(default)]
    pub properties: Option<serde_json::Value>,
}

/// The token an issuance sample asks for.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleIssue {
    /// How the token is asked for; mint when absent.
    #[serde(default = "mint")]
    pub kind: IssuanceKind,
    /// The requested scopes.
    pub scopes: Vec<Scope>,
    /// The requested lifetime, in seconds.
    pub ttl_secs: u64,
    /// The environment of the parent token's workload (exchange).
    #[serde(default)]
    pub parent_environment: Option<Environment>,
    /// The environment of the actor token's workload (delegation).
    #[serde(default)]
    pub actor_environment: Option<Environment>,
    /// Whether the request carries a justification; false when absent.
    #[serde(default)]
    pub justified: bool,
}

/// What a sample asks, once its shape is checked.
enum Asks<'a> {
    Request {
        action: &'a str,
        resource: &'a SampleResource,
    },
    Issue(&'a SampleIssue),
}

impl SampleInput {
    /// A request (`action` and `resource`) or an issuance (`issue`), never
    /// both; the message says what to change.
    fn asks(&self) -> Result<Asks<'_>, String> {
        match (&self.issue, &self.action, &self.resource) {
            (Some(issue), _, _) => {
                let request_only = [
                    ("action", self.action.is_some()),
                    ("resource", self.resource.is_some()),
                    ("token", self.token.is_some()),
                    ("tool", self.tool.is_some()),
                    ("workflow", self.workflow.is_some()),
                ];
                match request_only.iter().find(|(_, present)| *present) {
                    Some((field, _)) => Err(format!(
                        "`{field}` belongs to request samples, not to an issuance sample (`issue`); remove it"
                    )),
                    None => Ok(Asks::Issue(issue)),
                }
            }
            (None, Some(action), Some(resource)) => Ok(Asks::Request { action, resource }),
            (None, _, _) => Err(
                "a sample needs `action` and `resource` (a request) or `issue` (a token issuance)"
                    .to_owned(),
            ),
        }
    }
}

fn mint() -> IssuanceKind {
    IssuanceKind::Mint
}
fn team() -> OwnerKind {
    OwnerKind::Team
}
fn active() -> OwnerStatus {
    OwnerStatus::Active
}
fn one() -> i64 {
    1
}
fn never() -> Millis {
    Millis::MAX
}
fn sample_token_id() -> String {
    "sample-token".to_owned()
}

/// What one sample got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SampleResult {
    pub name: String,
    pub expect: Expect,
    pub decision: Decision,
    pub passed: bool,
    /// Why it failed, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

/// Every sample's result, in file order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SampleReport {
    pub results: Vec<SampleResult>,
}

impl SampleReport {
    /// Samples that got what they expected.
    pub fn passed(&self) -> usize {
        self.results.iter().filter(|r| r.passed).count()
    }
    /// Samples that did not.
    pub fn failed(&self) -> usize {
        self.results.len() - self.passed()
    }
}

/// A samples file that could not be read as samples.
#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    #[error(
        "the samples are not valid JSON in the expected shape: {0}; expected an array of {{\"name\", \"input\", \"expect\": \"allow\"|\"deny\"}} (see leash_policy::samples for the format)"
    )]
    Format(#[from] serde_json::Error),
    /// A sample is neither a request nor an issuance, or mixes the two.
    #[error("sample `{sample}`: {message} (see leash_policy::samples for the format)")]
    Shape {
        /// The sample's name.
        sample: String,
        /// What is wrong and what to change.
        message: String,
    },
}

/// Parse a samples file.
///
/// # Errors
/// [`SampleError::Format`] with the line and column of the problem;
/// [`SampleError::Shape`] naming a sample that is neither a request nor an
/// issuance.
pub fn parse_samples(json: &str) -> Result<Vec<Sample>, SampleError> {
    let samples: Vec<Sample> = serde_json::from_str(json)?;
    for sample in &samples {
        sample.input.asks().map_err(|message| SampleError::Shape {
            sample: sample.name.clone(),
            message,
        })?;
    }
    Ok(samples)
}

/// Parse `json` and decide every sample with `set`.
///
/// # Errors
/// [`SampleError::Format`] or [`SampleError::Shape`] when the file is not
/// in the format above.
pub fn evaluate_samples(set: &PolicySet, json: &str) -> Result<SampleReport, SampleError> {
    let samples = parse_samples(json)?;
    Ok(SampleReport {
        results: samples.iter().map(|s| evaluate_sample(set, s)).collect(),
    })
}

/// Decide one sample the way the server decides a request: token liveness,
/// then scope coverage (when the sample lists scopes), then the policies.
/// An issuance sample goes to the policies alone. A sample that is neither
/// (not from [`parse_samples`]) is denied with the reason.
pub fn evaluate_sample(set: &PolicySet, sample: &Sample) -> SampleResult {
    let records = Records::from(&sample.input);
    let decision = match sample.input.asks() {
        Ok(Asks::Request { action, resource }) => {
            records.decide(set, &sample.input, action, resource)
        }
        Ok(Asks::Issue(issue)) => records.decide_issuance(set, &sample.input, issue),
        Err(message) => Decision::deny(Reason::new(
            ReasonKind::EvaluationError,
            format!("the sample cannot be evaluated: {message}"),
        )),
    };
    let got = if decision.allow {
        Expect::Allow
    } else {
        Expect::Deny
    };
    let policy_ok = sample.expect_policy.as_deref().is_none_or(|p| {
        decision
            .reasons
            .iter()
            .any(|r| r.policy.as_deref() == Some(p))
    });
    let failure = if got != sample.expect {
        Some(format!(
            "expected {}, got {}",
            expect_word(sample.expect),
            expect_word(got)
        ))
    } else if !policy_ok {
        let ids: Vec<&str> = decision
            .reasons
            .iter()
            .filter_map(|r| r.policy.as_deref())
            .collect();
        Some(format!(
            "expected policy `{}` among the reasons, got [{}]",
            sample.expect_policy.as_deref().unwrap_or_default(),
            ids.join(", ")
        ))
    } else {
        None
    };
    SampleResult {
        name: sample.name.clone(),
        expect: sample.expect,
        passed: failure.is_none(),
        failure,
        decision,
    }
}

fn expect_word(e: Expect) -> &'static str {
    match e {
        Expect::Allow => "allow",
        Expect::Deny => "deny",
    }
}

/// The leash-core records a sample stands for.
struct Records {
    owner: Owner,
    workload: Workload,
    workflow: Option<Workflow>,
    run: Option<Run>,
    token: Token,
    break_glass: bool,
    check_scopes: bool,
}

impl From<&SampleInput> for Records {
    fn from(i: &SampleInput) -> Self {
        let owner = match &i.owner {
            Some(o) => Owner {
                id: 1,
                name: o.name.clone(),
                email: format!("{}@example.invalid", o.name),
                kind: o.kind,
                business_owner: true,
                status: o.status,
                created_at: 0,
                offboarded_at: None,
            },
            None => Owner {
                id: 1,
                name: "owner".to_owned(),
                email: "owner@example.invalid".to_owned(),
                kind: OwnerKind::Team,
                business_owner: true,
                status: OwnerStatus::Active,
                created_at: 0,
                offboarded_at: None,
            },
        };
        let workload = Workload {
            id: 1,
            name: i.workload.name.clone(),
            owner_id: 1,
            identity: i.workload.identity.clone(),
            environment: i.workload.environment,
            scope_ceiling: i.workload.scope_ceiling.clone().unwrap_or_default(),
            created_at: 0,
        };
        let workflow = i.workflow.as_ref().map(|w| Workflow {
            id: 1,
            name: w.name.clone(),
            owner_id: 1,
            digest: String::new(),
            tools: w.tools.clone(),
            created_at: 0,
            updated_at: 0,
        });
        let run = i.run.as_ref().map(|r| Run {
            id: r.id,
            workflow_id: 1,
            workload_id: 1,
            digest: String::new(),
            state: r.state,
            started_at: 0,
            ended_at: None,
        });
        let t = i.token.clone().unwrap_or(SampleToken {
            id: sample_token_id(),
            scopes: None,
            expires_at: never(),
            revoked: false,
            break_glass: false,
        });
        let check_scopes = t.scopes.is_some();
        let token = Token {
            id: t.id.clone(),
            format: TokenFormat::Jwt,
            owner_id: 1,
            workload_id: 1,
            run_id: run.as_ref().map(|r| r.id),
            workflow_id: workflow.as_ref().map(|w| w.id),
            scopes: t.scopes.clone().unwrap_or_default(),
            audience: Vec::new(),
            issued_at: 0,
            expires_at: t.expires_at,
            parent_id: None,
            justification: None,
            revocation: t.revoked.then(|| Revocation {
                at: 0,
                trigger: RevocationTrigger::Manual,
                reason: "revoked in the sample".to_owned(),
                event: 0,
            }),
            depth: 0,
            act: None,
            may_act: None,
            cnf_jkt: None,
            break_glass: t.break_glass,
        };
        Records {
            owner,
            workload,
            workflow,
            run,
            token,
            break_glass: t.break_glass,
            check_scopes,
        }
    }
}

impl Records {
    fn decide(
        &self,
        set: &PolicySet,
        i: &SampleInput,
        action: &str,
        resource: &SampleResource,
    ) -> Decision {
        let status = self.token.status(i.now);
        if status != leash_core::TokenStatus::Active {
            return Decision::deny(Reason::token_inactive(
                &self.token.id,
                status,
                self.token.revocation.as_ref(),
            ));
        }
        if self.check_scopes
            && scope_covers(
                &self.token.scopes,
                action,
                &resource.resource_type,
                Some(&resource.id),
            )
            .is_none()
        {
            return Decision::deny(Reason::scope_not_covered(
                &self.token.id,
                &self.token.scopes,
                action,
                &resource.resource_type,
                Some(&resource.id),
            ));
        }
        set.decide(&DecisionInput {
            owner: &self.owner,
            workload: &self.workload,
            workflow: self.workflow.as_ref(),
            run: self.run.as_ref(),
            token: &self.token,
            break_glass: self.break_glass,
            action,
            resource: ResourceRef::with_properties(
                &resource.resource_type,
                &resource.id,
                resource.properties.as_ref(),
            ),
            tool: i.tool.as_deref(),
            now: i.now,
        })
    }

    fn decide_issuance(&self, set: &PolicySet, i: &SampleInput, issue: &SampleIssue) -> Decision {
        let above_ceiling = match &i.workload.scope_ceiling {
            Some(ceiling) => scopes_above_ceiling(ceiling, &issue.scopes),
            None => Vec::new(),
        };
        set.decide_issuance(&IssuanceInput {
            owner: &self.owner,
            workload: &self.workload,
            kind: issue.kind,
            scopes: &issue.scopes,
            ttl_secs: issue.ttl_secs,
            above_ceiling: &above_ceiling,
            run: self.run.as_ref(),
            run_id: self.run.as_ref().map(|r| r.id),
            parent_environment: issue.parent_environment,
            actor_environment: issue.actor_environment,
            justified: issue.justified,
            now: i.now,
        })
    }
}
