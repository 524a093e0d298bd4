//! Issuance guardrails: the rules every mint must pass.
//!
//! [`check_mint`] is pure. It names the rule that refused a request and what
//! to do about it, so an operator reading the error can act without a manual.

use serde::{Deserialize, Serialize};

use crate::duration::format_duration;
use crate::model::{
    Environment, Millis, Owner, OwnerStatus, Run, RunState, Token, TokenStatus, Workflow, Workload,
};
use crate::scope::{Scope, first_uncovered};

/// Most scopes one token may carry.
pub const MAX_SCOPES: usize = 64;
/// Most audiences one token may carry.
pub const MAX_AUDIENCES: usize = 16;
/// Longest justification accepted.
pub const MAX_JUSTIFICATION: usize = 1000;
/// Longest a break-glass grant may live, in seconds.
pub const MAX_BREAK_GLASS_SECS: u64 = 3600;

/// TTL caps per environment, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TtlCaps {
    pub dev: u64,
    pub stage: u64,
    pub prod: u64,
}

impl Default for TtlCaps {
    fn default() -> Self {
        TtlCaps {
            dev: 8 * 3600,
            stage: 4 * 3600,
            prod: 3600,
        }
    }
}

impl TtlCaps {
    /// The cap for one environment.
    pub fn cap(&self, env: Environment) -> u64 {
        match env {
            Environment::Dev => self.dev,
            Environment::Stage => self.stage,
            Environment::Prod => self.prod,
        }
    }
}

/// What a caller asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MintRequest {
    pub scopes: Vec<Scope>,
    pub ttl_secs: u64,
    pub audience: Vec<String>,
    pub justification: Option<String>,
}

/// The registry state a mint is judged against.
#[derive(Debug, Clone, Copy)]
pub struct MintContext<'a> {
    pub owner: &'a Owner,
    pub workload: &'a Workload,
    pub run: Option<(&'a Run, &'a Workflow)>,
}

/// Why a mint was refused. Each variant is one rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MintRefusal {
    #[error(
        "owner `{owner}` of workload `{workload}` is {status}, and no token may exist without an active owner; hand the workload to an active owner first"
    )]
    OwnerNotActive {
        owner: String,
        workload: String,
        status: OwnerStatus,
    },
    #[error(
        "workload `{workload}` may not hold `{scope}`: it is above its scope ceiling [{ceiling}]; ask for a narrower scope or have the owner raise the ceiling"
    )]
    ScopeAboveCeiling {
        workload: String,
        scope: String,
        ceiling: String,
    },
    #[error("ttl {ttl} is above the {env} cap of {cap}; ask for {cap} or less")]
    TtlAboveCap {
        ttl: String,
        cap: String,
        env: Environment,
    },
    #[error(
        "write scope `{scope}` needs a justification; pass --justification with the business reason for it"
    )]
    WriteWithoutJustification { scope: String },
    #[error("run {run} is {state}; tokens are minted only for running runs, so start a new run")]
    RunNotRunning { run: i64, state: RunState },
    #[error(
        "run {run} belongs to workload `{run_workload}`, not `{workload}`; mint for the run's own workload"
    )]
    RunOfOtherWorkload {
        run: i64,
        run_workload: String,
        workload: String,
    },
    #[error(
        "run {run} started on an older definition of workflow `{workflow}` that has since changed; start a new run"
    )]
    RunOnStaleDefinition { run: i64, workflow: String },
    #[error("a token needs at least one scope; pass --scope TYPE[:ID]:ACTION")]
    NoScopes,
    #[error("{what} has too many entries ({got}); at most {max}")]
    TooMany {
        what: &'static str,
        got: usize,
        max: usize,
    },
    #[error("audience `{0}` is not valid: use 1-256 printable characters without spaces")]
    BadAudience(String),
    #[error("the justification is longer than {MAX_JUSTIFICATION} characters")]
    JustificationTooLong,
    #[error("ttl must be at least 1 second")]
    ZeroTtl,
    #[error(
        "workload `{workload}` already holds {live} live write-capable token(s), its write budget; revoke one or wait for one to expire"
    )]
    WriteBudgetExceeded {
        workload: String,
        live: u64,
        budget: u32,
    },
    #[error("a break-glass grant lasts at most 1h; ask for --ttl 1h or less (asked for {ttl})")]
    BreakGlassTooLong { ttl: String },
    #[error("a break-glass grant needs a reason: pass --reason with what the emergency is")]
    BreakGlassWithoutReason,
    #[error("parent token {parent} is {status}; only an active token can delegate")]
    ParentNotActive {
        parent: String,
        status: crate::model::TokenStatus,
    },
    #[error(
        "a delegated token cannot hold `{scope}`: parent {parent} does not hold it; ask for a subset of [{parent_scopes}]"
    )]
    DelegationScope {
        scope: String,
        parent: String,
        parent_scopes: String,
    },
    #[error(
        "a delegated token cannot have audience `{audience}`: parent {parent} is limited to [{parent_audience}]"
    )]
    DelegationAudience {
        audience: String,
        parent: String,
        parent_audience: String,
    },
    #[error(
        "a delegated token cannot outlive its parent {parent}, which expires in {left}; ask for a ttl of {left} or less"
    )]
    DelegationLifetime { parent: String, left: String },
    #[error(
        "parent token {parent} is already {depth} delegation hop(s) deep and the limit is {max}; delegate from a token nearer the root"
    )]
    DelegationTooDeep {
        parent: String,
        depth: u32,
        max: u32,
    },
}

impl MintRefusal {
    /// The RFC 6749 §5.2 / RFC 8693 error code for this refusal at an OAuth endpoint.
    pub fn oauth_error(&self) -> &'static str {
        match self {
            MintRefusal::ScopeAboveCeiling { .. }
            | MintRefusal::WriteWithoutJustification { .. }
            | MintRefusal::NoScopes
            | MintRefusal::DelegationScope { .. } => "invalid_scope",
            MintRefusal::DelegationAudience { .. } | MintRefusal::BadAudience(_) => {
                "invalid_target"
            }
            MintRefusal::TtlAboveCap { .. }
            | MintRefusal::BreakGlassTooLong { .. }
            | MintRefusal::BreakGlassWithoutReason
            | MintRefusal::WriteBudgetExceeded { .. }
            | MintRefusal::ZeroTtl
            | MintRefusal::JustificationTooLong
            | MintRefusal::TooMany { .. } => "invalid_request",
            MintRefusal::OwnerNotActive { .. }
            | MintRefusal::RunNotRunning { .. }
            | MintRefusal::RunOfOtherWorkload { .. }
            | MintRefusal::RunOnStaleDefinition { .. }
            | MintRefusal::ParentNotActive { .. }
            | MintRefusal::DelegationLifetime { .. }
            | MintRefusal::DelegationTooDeep { .. } => "invalid_grant",
        }
    }

    /// Short stable rule name (metrics label, API error detail).
    pub fn rule(&self) -> &'static str {
        match self {
            MintRefusal::OwnerNotActive { .. } => "owner_active",
            MintRefusal::ScopeAboveCeiling { .. } => "scope_ceiling",
            MintRefusal::TtlAboveCap { .. } => "ttl_cap",
            MintRefusal::WriteWithoutJustification { .. } => "write_justification",
            MintRefusal::WriteBudgetExceeded { .. } => "write_budget",
            MintRefusal::BreakGlassTooLong { .. } | MintRefusal::BreakGlassWithoutReason => {
                "break_glass"
            }
            MintRefusal::RunNotRunning { .. } => "run_running",
            MintRefusal::RunOfOtherWorkload { .. } => "run_workload",
            MintRefusal::RunOnStaleDefinition { .. } => "run_definition",
            MintRefusal::NoScopes
            | MintRefusal::TooMany { .. }
            | MintRefusal::BadAudience(_)
            | MintRefusal::JustificationTooLong
            | MintRefusal::ZeroTtl => "request_shape",
            MintRefusal::ParentNotActive { .. }
            | MintRefusal::DelegationScope { .. }
            | MintRefusal::DelegationAudience { .. }
            | MintRefusal::DelegationLifetime { .. }
            | MintRefusal::DelegationTooDeep { .. } => "delegation",
        }
    }
}

fn join(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Judge a mint. `run_workload_name` resolves a run's workload for the error
/// message when it differs from the requesting workload.
pub fn check_mint(
    ctx: MintContext<'_>,
    req: &MintRequest,
    caps: &TtlCaps,
    run_workload_name: impl Fn(i64) -> String,
) -> Result<(), MintRefusal> {
    // shape first: these are the caller's typos
    check_shape(req)?;
    check_owner_active(ctx.owner, ctx.workload)?;
    check_rules(ctx, req, caps, run_workload_name)
}

/// The request's own shape: these are the caller's typos.
fn check_shape(req: &MintRequest) -> Result<(), MintRefusal> {
    if req.scopes.is_empty() {
        return Err(MintRefusal::NoScopes);
    }
    if req.scopes.len() > MAX_SCOPES {
        return Err(MintRefusal::TooMany {
            what: "scopes",
            got: req.scopes.len(),
            max: MAX_SCOPES,
        });
    }
    if req.audience.len() > MAX_AUDIENCES {
        return Err(MintRefusal::TooMany {
            what: "audience",
            got: req.audience.len(),
            max: MAX_AUDIENCES,
        });
    }
    if let Some(a) = req.audience.iter().find(|a| {
        a.is_empty() || a.len() > 256 || a.chars().any(|c| c.is_whitespace() || c.is_control())
    }) {
        return Err(MintRefusal::BadAudience(a.chars().take(80).collect()));
    }
    if req
        .justification
        .as_ref()
        .is_some_and(|j| j.chars().count() > MAX_JUSTIFICATION)
    {
        return Err(MintRefusal::JustificationTooLong);
    }
    if req.ttl_secs == 0 {
        return Err(MintRefusal::ZeroTtl);
    }
    Ok(())
}

fn check_owner_active(owner: &Owner, workload: &Workload) -> Result<(), MintRefusal> {
    if owner.status != OwnerStatus::Active {
        return Err(MintRefusal::OwnerNotActive {
            owner: owner.name.clone(),
            workload: workload.name.clone(),
            status: owner.status,
        });
    }
    Ok(())
}

/// Judge a break-glass grant: outside normal policy (no scope ceiling, no
/// run, no approval unless configured), but still well-formed, for a
/// workload with an active owner, with a reason, and at most an hour long.
pub fn check_break_glass(
    owner: &Owner,
    workload: &Workload,
    req: &MintRequest,
) -> Result<(), MintRefusal> {
    check_shape(req)?;
    check_owner_active(owner, workload)?;
    if req.ttl_secs > MAX_BREAK_GLASS_SECS {
        return Err(MintRefusal::BreakGlassTooLong {
            ttl: format_duration(req.ttl_secs),
        });
    }
    if req
        .justification
        .as_ref()
        .is_none_or(|j| j.trim().is_empty())
    {
        return Err(MintRefusal::BreakGlassWithoutReason);
    }
    Ok(())
}

/// Judge a mint's rules after its shape and owner were checked.
fn check_rules(
    ctx: MintContext<'_>,
    req: &MintRequest,
    caps: &TtlCaps,
    run_workload_name: impl Fn(i64) -> String,
) -> Result<(), MintRefusal> {
    if let Some((run, workflow)) = ctx.run {
        if run.state != RunState::Running {
            return Err(MintRefusal::RunNotRunning {
                run: run.id,
                state: run.state,
            });
        }
        if run.workload_id != ctx.workload.id {
            return Err(MintRefusal::RunOfOtherWorkload {
                run: run.id,
                run_workload: run_workload_name(run.workload_id),
                workload: ctx.workload.name.clone(),
            });
        }
        if run.digest != workflow.digest {
            return Err(MintRefusal::RunOnStaleDefinition {
                run: run.id,
                workflow: workflow.name.clone(),
            });
        }
    }
    if let Some(scope) = first_uncovered(&ctx.workload.scope_ceiling, &req.scopes) {
        return Err(MintRefusal::ScopeAboveCeiling {
            workload: ctx.workload.name.clone(),
            scope: scope.to_string(),
            ceiling: join(&ctx.workload.scope_ceiling),
        });
    }
    let cap = caps.cap(ctx.workload.environment);
    if req.ttl_secs > cap {
        return Err(MintRefusal::TtlAboveCap {
            ttl: format_duration(req.ttl_secs),
            cap: format_duration(cap),
            env: ctx.workload.environment,
        });
    }
    let justified = req
        .justification
        .as_ref()
        .is_some_and(|j| !j.trim().is_empty());
    if !justified && let Some(w) = req.scopes.iter().find(|s| s.is_write()) {
        return Err(MintRefusal::WriteWithoutJustification {
            scope: w.to_string(),
        });
    }
    Ok(())
}

/// Default limit on delegation hops below a root token.
pub const DEFAULT_MAX_DELEGATION_DEPTH: u32 = 4;

/// A delegated token never has more scope, audience or lifetime than its
/// parent, and only an active parent can delegate.
pub fn check_delegation(
    parent: &Token,
    req: &MintRequest,
    child_expires_at: Millis,
    now: Millis,
    max_depth: u32,
) -> Result<(), MintRefusal> {
    let status = parent.status(now);
    if status != TokenStatus::Active {
        return Err(MintRefusal::ParentNotActive {
            parent: parent.id.clone(),
            status,
        });
    }
    if parent.depth >= max_depth {
        return Err(MintRefusal::DelegationTooDeep {
            parent: parent.id.clone(),
            depth: parent.depth,
            max: max_depth,
        });
    }
    if let Some(scope) = first_uncovered(&parent.scopes, &req.scopes) {
        return Err(MintRefusal::DelegationScope {
            scope: scope.to_string(),
            parent: parent.id.clone(),
            parent_scopes: join(&parent.scopes),
        });
    }
    if let Some(a) = req.audience.iter().find(|a| !parent.audience.contains(a)) {
        return Err(MintRefusal::DelegationAudience {
            audience: a.clone(),
            parent: parent.id.clone(),
            parent_audience: parent.audience.join(", "),
        });
    }
    if child_expires_at > parent.expires_at {
        let left = ((parent.expires_at - now).max(0) / 1000) as u64;
        return Err(MintRefusal::DelegationLifetime {
            parent: parent.id.clone(),
            left: format_duration(left),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{OwnerKind, Run};

    fn owner(status: OwnerStatus) -> Owner {
        Owner {
            id: 1,
            name: "alice".into(),
            email: "a@x.io".into(),
            kind: OwnerKind::Person,
            business_owner: true,
            status,
            created_at: 0,
            offboarded_at: None,
        }
    }
    fn workload(env: Environment) -> Workload {
        Workload {
            id: 7,
            name: "triage-bot".into(),
            owner_id: 1,
            identity: None,
            environment: env,
            scope_ceiling: vec![
                "tickets:read".parse().unwrap(),
                "repo:acme/*:write".parse().unwrap(),
            ],
            created_at: 0,
        }
    }
    fn req(scopes: &[&str], ttl: u64, just: Option<&str>) -> MintRequest {
        MintRequest {
            scopes: scopes.iter().map(|s| s.parse().unwrap()).collect(),
            ttl_secs: ttl,
            audience: vec![],
            justification: just.map(Into::into),
        }
    }
    fn check(o: &Owner, w: &Workload, r: &MintRequest) -> Result<(), MintRefusal> {
        check_mint(
            MintContext {
                owner: o,
                workload: w,
                run: None,
            },
            r,
            &TtlCaps::default(),
            |_| "x".into(),
        )
    }

    #[test]
    fn each_rule_refuses_and_names_itself() {
        let (o, w) = (owner(OwnerStatus::Active), workload(Environment::Prod));
        assert!(check(&o, &w, &req(&["tickets:read"], 600, None)).is_ok());
        let e = check(
            &owner(OwnerStatus::Offboarded),
            &w,
            &req(&["tickets:read"], 600, None),
        )
        .unwrap_err();
        assert_eq!(e.rule(), "owner_active");
        let e = check(&o, &w, &req(&["repo:evil/x:write"], 600, Some("j"))).unwrap_err();
        assert_eq!(e.rule(), "scope_ceiling");
        assert!(e.to_string().contains("above its scope ceiling"), "{e}");
        let e = check(&o, &w, &req(&["tickets:read"], 7200, None)).unwrap_err();
        assert_eq!(e.rule(), "ttl_cap");
        assert!(e.to_string().contains("prod cap of 1h"), "{e}");
        assert!(
            check(
                &o,
                &workload(Environment::Dev),
                &req(&["tickets:read"], 7200, None)
            )
            .is_ok()
        );
        let e = check(&o, &w, &req(&["repo:acme/api:write"], 600, None)).unwrap_err();
        assert_eq!(e.rule(), "write_justification");
        assert!(
            check(
                &o,
                &w,
                &req(&["repo:acme/api:write"], 600, Some("release fix"))
            )
            .is_ok()
        );
        assert_eq!(
            check(&o, &w, &req(&[], 600, None)).unwrap_err(),
            MintRefusal::NoScopes
        );
    }

    #[test]
    fn delegation_narrows_only() {
        let parent = Token {
            id: "tok_p".into(),
            format: crate::model::TokenFormat::Jwt,
            owner_id: 1,
            workload_id: 7,
            run_id: None,
            workflow_id: None,
            scopes: vec![
                "repo:acme/*:write".parse().unwrap(),
                "tickets:read".parse().unwrap(),
            ],
            audience: vec!["api".into()],
            issued_at: 0,
            expires_at: 100_000,
            parent_id: None,
            justification: Some("j".into()),
            revocation: None,
            depth: 0,
            act: None,
            may_act: None,
            cnf_jkt: None,
            break_glass: false,
        };
        let ok = MintRequest {
            scopes: vec!["repo:acme/api:write".parse().unwrap()],
            ttl_secs: 10,
            audience: vec!["api".into()],
            justification: Some("j".into()),
        };
        assert!(check_delegation(&parent, &ok, 50_000, 1_000, 4).is_ok());
        let deep = Token {
            depth: 4,
            ..parent.clone()
        };
        assert!(matches!(
            check_delegation(&deep, &ok, 50_000, 1_000, 4),
            Err(MintRefusal::DelegationTooDeep { .. })
        ));
        let wider = MintRequest {
            scopes: vec!["repo:write".parse().unwrap()],
            ..ok.clone()
        };
        assert!(matches!(
            check_delegation(&parent, &wider, 50_000, 1_000, 4),
            Err(MintRefusal::DelegationScope { .. })
        ));
        let aud = MintRequest {
            audience: vec!["other".into()],
            ..ok.clone()
        };
        assert!(matches!(
            check_delegation(&parent, &aud, 50_000, 1_000, 4),
            Err(MintRefusal::DelegationAudience { .. })
        ));
        assert!(matches!(
            check_delegation(&parent, &ok, 200_000, 1_000, 4),
            Err(MintRefusal::DelegationLifetime { .. })
        ));
        assert!(matches!(
            check_delegation(&parent, &ok, 50_000, 100_000, 4),
            Err(MintRefusal::ParentNotActive { .. })
        ));
        assert_eq!(
            check_delegation(&parent, &ok, 200_000, 1_000, 4)
                .unwrap_err()
                .rule(),
            "delegation"
        );
    }

    #[test]
    fn run_rules() {
        let (o, w) = (owner(OwnerStatus::Active), workload(Environment::Prod));
        let wf = Workflow {
            id: 3,
            name: "triage".into(),
            owner_id: 1,
            digest: "aa".into(),
            tools: vec![],
            created_at: 0,
            updated_at: 0,
        };
        let mut run = Run {
            id: 42,
            workflow_id: 3,
            workload_id: 7,
            digest: "aa".into(),
            state: RunState::Running,
            started_at: 0,
            ended_at: None,
        };
        let r = req(&["tickets:read"], 60, None);
        let go = |run: &Run| {
            check_mint(
                MintContext {
                    owner: &o,
                    workload: &w,
                    run: Some((run, &wf)),
                },
                &r,
                &TtlCaps::default(),
                |_| "other".into(),
            )
        };
        assert!(go(&run).is_ok());
        run.digest = "bb".into();
        assert_eq!(go(&run).unwrap_err().rule(), "run_definition");
        run.digest = "aa".into();
        run.workload_id = 8;
        assert_eq!(go(&run).unwrap_err().rule(), "run_workload");
        run.state = RunState::Succeeded;
        assert_eq!(go(&run).unwrap_err().rule(), "run_running");
    }
}
