//! Sample requests with expected outcomes, for `leash policy test FILE`.
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
//! prod), `input.action`, `input.resource` (`type`, `id`), and `expect`
//! (`"allow"` or `"deny"`). Everything else is optional:
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
//! Unknown fields are refused, so a typo cannot silently change a sample.
//! `crates/policy/samples/defaults.json` is a complete example that passes
//! against the default policies.

use leash_core::scope::Scope;
use leash_core::{
    Environment, Millis, Owner, OwnerKind, OwnerStatus, Revocation, RevocationTrigger, Run,
    RunState, Token, TokenFormat, Workflow, Workload,
};
use serde::{Deserialize, Serialize};

use crate::decision::{Decision, Reason};
use crate::input::{DecisionInput, ResourceRef};
use crate::policies::PolicySet;
use crate::scope_covers;

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
    pub action: String,
    pub resource: SampleResource,
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
}

/// Parse a samples file.
///
/// # Errors
/// [`SampleError::Format`] with the line and column of the problem.
pub fn parse_samples(json: &str) -> Result<Vec<Sample>, SampleError> {
    Ok(serde_json::from_str(json)?)
}

/// Parse `json` and decide every sample with `set`.
///
/// # Errors
/// [`SampleError::Format`] when the file is not in the format above.
pub fn evaluate_samples(set: &PolicySet, json: &str) -> Result<SampleReport, SampleError> {
    let samples = parse_samples(json)?;
    Ok(SampleReport {
        results: samples.iter().map(|s| evaluate_sample(set, s)).collect(),
    })
}

/// Decide one sample the way the server decides a request: token liveness,
/// then scope coverage (when the sample lists scopes), then the policies.
pub fn evaluate_sample(set: &PolicySet, sample: &Sample) -> SampleResult {
    let records = Records::from(&sample.input);
    let decision = records.decide(set, &sample.input);
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
            scope_ceiling: Vec::new(),
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
    fn decide(&self, set: &PolicySet, i: &SampleInput) -> Decision {
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
                &i.action,
                &i.resource.resource_type,
                Some(&i.resource.id),
            )
            .is_none()
        {
            return Decision::deny(Reason::scope_not_covered(
                &self.token.id,
                &self.token.scopes,
                &i.action,
                &i.resource.resource_type,
                Some(&i.resource.id),
            ));
        }
        set.decide(&DecisionInput {
            owner: &self.owner,
            workload: &self.workload,
            workflow: self.workflow.as_ref(),
            run: self.run.as_ref(),
            token: &self.token,
            break_glass: self.break_glass,
            action: &i.action,
            resource: ResourceRef::with_properties(
                &i.resource.resource_type,
                &i.resource.id,
                i.resource.properties.as_ref(),
            ),
            tool: i.tool.as_deref(),
            now: i.now,
        })
    }
}
