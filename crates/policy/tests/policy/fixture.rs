//! Realistic registry records and a builder for decision inputs.

use leash_core::scope::Scope;
use leash_core::{
    Environment, Owner, OwnerKind, OwnerStatus, Run, RunState, Token, TokenFormat, Workflow,
    Workload,
};
use leash_policy::{
    Decision, DecisionInput, IssuanceInput, IssuanceKind, PolicyEngine, PolicySet, PolicySource,
    ReasonKind, ResourceRef, scopes_above_ceiling,
};

/// An engine with the defaults and one more source.
pub fn engine_with(name: &str, text: &str) -> PolicyEngine {
    PolicyEngine::new(
        PolicySet::defaults()
            .unwrap()
            .with_source(PolicySource::new(name, text))
            .unwrap(),
    )
}

/// The ids of the policies that denied `d` (which must be a denial).
pub fn denied_by(d: &Decision) -> Vec<&str> {
    assert!(!d.allow, "expected a denial, got {d:?}");
    d.reasons
        .iter()
        .filter_map(|r| r.policy.as_deref())
        .collect()
}

/// `d` is allowed by the base permit alone.
pub fn assert_allowed(d: &Decision) {
    assert!(d.allow, "expected allow, got {d:?}");
    assert_eq!(d.reasons.len(), 1, "{d:?}");
    assert_eq!(d.reasons[0].kind, ReasonKind::Permit);
    assert_eq!(d.reasons[0].policy.as_deref(), Some("base-permit"));
}

pub struct Fixture {
    pub owner: Owner,
    pub workload: Workload,
    pub workflow: Option<Workflow>,
    pub run: Option<Run>,
    pub token: Token,
    pub props: Option<serde_json::Value>,
}

impl Fixture {
    /// A `dev` workload `triage-bot` with a running run of workflow
    /// `triage` (tools git-clone, git-push) and a token for it.
    pub fn new(env: Environment) -> Self {
        let owner = Owner {
            id: 1,
            name: "team-ai".into(),
            email: "ai@example.com".into(),
            kind: OwnerKind::Team,
            business_owner: true,
            status: OwnerStatus::Active,
            created_at: 0,
            offboarded_at: None,
        };
        let workload = Workload {
            id: 2,
            name: "triage-bot".into(),
            owner_id: 1,
            identity: Some("spiffe://acme.example/ns/ai/sa/triage".into()),
            environment: env,
            scope_ceiling: vec!["repo:acme/*:write".parse().unwrap()],
            created_at: 0,
        };
        let workflow = Workflow {
            id: 3,
            name: "triage".into(),
            owner_id: 1,
            digest: "ab".repeat(32),
            tools: vec!["git-clone".into(), "git-push".into()],
            created_at: 0,
            updated_at: 0,
        };
        let run = Run {
            id: 7,
            workflow_id: 3,
            workload_id: 2,
            digest: "ab".repeat(32),
            state: RunState::Running,
            started_at: 0,
            ended_at: None,
        };
        let token = Token {
            id: "tok-1".into(),
            format: TokenFormat::Jwt,
            owner_id: 1,
            workload_id: 2,
            run_id: Some(7),
            workflow_id: Some(3),
            scopes: vec![
                "repo:acme/*:write".parse().unwrap(),
                "repo:acme/*:read".parse().unwrap(),
                "tickets:read".parse().unwrap(),
            ],
            audience: vec!["https://git.acme.example".into()],
            issued_at: 0,
            expires_at: 3_600_000,
            parent_id: None,
            justification: Some("pushes triage fixes".into()),
            revocation: None,
            depth: 0,
            act: None,
            may_act: None,
            cnf_jkt: None,
            break_glass: false,
        };
        Self {
            owner,
            workload,
            workflow: Some(workflow),
            run: Some(run),
            token,
            props: None,
        }
    }

    /// No run and no workflow: a token not bound to a task.
    pub fn without_run(mut self) -> Self {
        self.run = None;
        self.workflow = None;
        self.token.run_id = None;
        self.token.workflow_id = None;
        self
    }

    pub fn run_state(mut self, state: RunState) -> Self {
        if let Some(r) = &mut self.run {
            r.state = state;
        }
        self
    }

    pub fn resource_env(mut self, env: &str) -> Self {
        self.props = Some(serde_json::json!({ "environment": env }));
        self
    }

    pub fn input<'a>(&'a self, action: &'a str, tool: Option<&'a str>) -> DecisionInput<'a> {
        DecisionInput {
            owner: &self.owner,
            workload: &self.workload,
            workflow: self.workflow.as_ref(),
            run: self.run.as_ref(),
            token: &self.token,
            break_glass: false,
            action,
            resource: ResourceRef::with_properties("repo", "acme/api", self.props.as_ref()),
            tool,
            now: 1_000,
        }
    }
}

/// A token asked for `workload` of a [`Fixture`]: by default a mint of
/// `repo:acme/api:write` for 10 minutes, for the fixture's run, justified.
pub struct Ask {
    pub fixture: Fixture,
    pub kind: IssuanceKind,
    pub scopes: Vec<Scope>,
    pub above_ceiling: Vec<Scope>,
    pub ttl_secs: u64,
    pub parent_environment: Option<Environment>,
    pub actor_environment: Option<Environment>,
    pub justified: bool,
}

impl Ask {
    pub fn new(env: Environment) -> Self {
        Self {
            fixture: Fixture::new(env),
            kind: IssuanceKind::Mint,
            scopes: Vec::new(),
            above_ceiling: Vec::new(),
            ttl_secs: 600,
            parent_environment: None,
            actor_environment: None,
            justified: true,
        }
        .scopes(&["repo:acme/api:write"])
    }

    /// Ask for `scopes`; what the workload's ceiling does not cover is
    /// computed the way the server does.
    pub fn scopes(mut self, scopes: &[&str]) -> Self {
        self.scopes = scopes.iter().map(|s| s.parse().unwrap()).collect();
        self.above_ceiling =
            scopes_above_ceiling(&self.fixture.workload.scope_ceiling, &self.scopes);
        self
    }

    pub fn ttl(mut self, ttl_secs: u64) -> Self {
        self.ttl_secs = ttl_secs;
        self
    }

    /// An exchange of a token held by a workload of `parent`.
    pub fn exchange_from(mut self, parent: Environment) -> Self {
        self.kind = IssuanceKind::Exchange;
        self.parent_environment = Some(parent);
        self
    }

    pub fn kind(mut self, kind: IssuanceKind) -> Self {
        self.kind = kind;
        self
    }

    pub fn input(&self) -> IssuanceInput<'_> {
        let f = &self.fixture;
        IssuanceInput {
            owner: &f.owner,
            workload: &f.workload,
            kind: self.kind,
            scopes: &self.scopes,
            ttl_secs: self.ttl_secs,
            above_ceiling: &self.above_ceiling,
            run: f.run.as_ref(),
            run_id: f.token.run_id,
            parent_environment: self.parent_environment,
            actor_environment: self.actor_environment,
            justified: self.justified,
            now: 1_000,
        }
    }
}
