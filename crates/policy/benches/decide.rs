//! `PolicyEngine::decide` and `PolicyEngine::decide_issuance` with the
//! default policies and realistic records.
//!
//! Run: `cargo bench -p leash-policy --bench decide`. The target is a median
//! of at most 20 µs per decision.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use leash_core::scope::Scope;
use leash_core::{
    Environment, Owner, OwnerKind, OwnerStatus, Run, RunState, Token, TokenFormat, Workflow,
    Workload,
};
use leash_policy::{
    DecisionInput, IssuanceInput, IssuanceKind, PolicyEngine, PolicySet, PolicySource, ResourceRef,
    scope_covers, scopes_above_ceiling,
};

const READS_EVERYTHING: &str = r#"
@id("reads-everything")
@reason("reads every record")
forbid (
  principal,
  action in [Leash::Action::"read", Leash::Action::"write", Leash::Action::"admin"],
  resource
)
when {
  principal.owner.status == "offboarded" ||
  (principal has identity && principal.identity == "") ||
  resource.type == "" || resource.id == "" ||
  context.token.scopes.isEmpty() || context.token.break_glass ||
  context.token.expires_at < context.now || context.token_id == "" ||
  context.token.owner.kind == "" || context.token.workload != principal ||
  context.action == "" ||
  (context.token has run && context.token.run.state == "") ||
  (context has run && context.run.workflow.tools.isEmpty()) ||
  (context has workflow && context.workflow.owner.kind == "") ||
  context.token.has_write == false
};

@id("reads-every-issuance-attribute")
@reason("reads every issuance attribute")
forbid (principal, action == Leash::Action::"issue", resource)
when {
  principal.owner.status == "offboarded" || principal.owner.kind == "" ||
  (principal has identity && principal.identity == "") ||
  context.kind == "" || context.scopes.isEmpty() || !context.has_write ||
  context.ttl_secs > 86400 || context.above_ceiling.contains("x") ||
  context.owner_status == "" || context.run_state == "" ||
  (context has parent_environment && context.parent_environment == "") ||
  (context has actor_environment && context.actor_environment == "") ||
  !context.justified || context.now < 0
};
"#;

struct Records {
    owner: Owner,
    workload: Workload,
    workflow: Workflow,
    run: Run,
    token: Token,
    props: serde_json::Value,
}

fn records(env: Environment, resource_env: &str) -> Records {
    Records {
        owner: Owner {
            id: 1,
            name: "team-ai".into(),
            email: "ai@example.com".into(),
            kind: OwnerKind::Team,
            business_owner: true,
            status: OwnerStatus::Active,
            created_at: 0,
            offboarded_at: None,
        },
        workload: Workload {
            id: 2,
            name: "triage-bot".into(),
            owner_id: 1,
            identity: Some("spiffe://acme.example/ns/ai/sa/triage".into()),
            environment: env,
            scope_ceiling: vec!["repo:acme/*:write".parse().unwrap()],
            created_at: 0,
        },
        workflow: Workflow {
            id: 3,
            name: "triage".into(),
            owner_id: 1,
            digest: "ab".repeat(32),
            tools: vec![
                "git-clone".into(),
                "git-push".into(),
                "jira-comment".into(),
                "slack-post".into(),
            ],
            created_at: 0,
            updated_at: 0,
        },
        run: Run {
            id: 7,
            workflow_id: 3,
            workload_id: 2,
            digest: "ab".repeat(32),
            state: RunState::Running,
            started_at: 0,
            ended_at: None,
        },
        token: Token {
            id: "01JD9Z6Q7YV3R8K2M4N5P6T7W8".into(),
            format: TokenFormat::Jwt,
            owner_id: 1,
            workload_id: 2,
            run_id: Some(7),
            workflow_id: Some(3),
            scopes: vec![
                "repo:acme/*:write".parse().unwrap(),
                "repo:acme/*:read".parse().unwrap(),
                "tickets:read".parse().unwrap(),
                "tickets:comment".parse().unwrap(),
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
        },
        props: serde_json::json!({ "environment": resource_env }),
    }
}

fn input<'a>(r: &'a Records, action: &'a str, tool: &'a str) -> DecisionInput<'a> {
    DecisionInput {
        owner: &r.owner,
        workload: &r.workload,
        workflow: Some(&r.workflow),
        run: Some(&r.run),
        token: &r.token,
        break_glass: false,
        action,
        resource: ResourceRef::with_properties("repo", "acme/api", Some(&r.props)),
        tool: Some(tool),
        now: 1_000,
    }
}

/// A justified exchange of `scopes` for the records' workload, from a
/// parent token of the same environment.
fn issuance<'a>(r: &'a Records, scopes: &'a [Scope], above: &'a [Scope]) -> IssuanceInput<'a> {
    IssuanceInput {
        owner: &r.owner,
        workload: &r.workload,
        kind: IssuanceKind::Exchange,
        scopes,
        ttl_secs: 900,
        above_ceiling: above,
        run: Some(&r.run),
        run_id: Some(r.run.id),
        parent_environment: Some(r.workload.environment),
        actor_environment: None,
        justified: true,
        now: 1_000,
    }
}

fn bench(c: &mut Criterion) {
    let engine = PolicyEngine::with_defaults().unwrap();
    let prod = records(Environment::Prod, "prod");
    let dev = records(Environment::Dev, "prod");

    let allow = input(&prod, "write", "git-push");
    assert!(engine.decide(&allow).allow);
    let deny = input(&dev, "write", "shell");
    assert!(!engine.decide(&deny).allow);

    let mut g = c.benchmark_group("decide");
    g.bench_function("allow", |b| b.iter(|| engine.decide(black_box(&allow))));
    g.bench_function("deny_two_forbids", |b| {
        b.iter(|| engine.decide(black_box(&deny)))
    });
    g.bench_function("scope_covers", |b| {
        b.iter(|| {
            scope_covers(
                black_box(&prod.token.scopes),
                black_box("write"),
                black_box("repo"),
                black_box(Some("acme/api")),
            )
        })
    });
    // Worst case: an operator policy reads every record, so every entity
    // and attribute is built.
    let wide = PolicyEngine::new(
        PolicySet::defaults()
            .unwrap()
            .with_source(PolicySource::new("ops.cedar", READS_EVERYTHING))
            .unwrap(),
    );
    assert!(wide.decide(&allow).allow);
    g.bench_function("allow_reading_every_record", |b| {
        b.iter(|| wide.decide(black_box(&allow)))
    });

    // Issuance: the server computes what is above the ceiling, then asks.
    let scopes = prod.token.scopes.clone();
    let above = scopes_above_ceiling(&prod.workload.scope_ceiling, &scopes);
    let issue = issuance(&prod, &scopes, &above);
    let issue_deny = IssuanceInput {
        ttl_secs: 7_200,
        ..issue
    };
    let d = engine.decide_issuance(&issue);
    assert!(!d.allow, "read and comment scopes are above the ceiling");
    let within: Vec<Scope> = vec!["repo:acme/api:write".parse().unwrap()];
    let none_above = scopes_above_ceiling(&prod.workload.scope_ceiling, &within);
    let issue_allow = issuance(&prod, &within, &none_above);
    assert!(engine.decide_issuance(&issue_allow).allow);
    assert!(!engine.decide_issuance(&issue_deny).allow);
    g.bench_function("issue_allow", |b| {
        b.iter(|| engine.decide_issuance(black_box(&issue_allow)))
    });
    g.bench_function("issue_deny_two_forbids", |b| {
        b.iter(|| engine.decide_issuance(black_box(&issue_deny)))
    });
    assert!(wide.decide_issuance(&issue_allow).allow);
    g.bench_function("issue_allow_reading_every_attribute", |b| {
        b.iter(|| wide.decide_issuance(black_box(&issue_allow)))
    });
    g.bench_function("issue_with_above_ceiling", |b| {
        b.iter(|| {
            let above =
                scopes_above_ceiling(black_box(&prod.workload.scope_ceiling), black_box(&within));
            engine.decide_issuance(&issuance(&prod, &within, &above))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
