//! Issuance guardrails (`Leash::Action::"issue"`): the shipped policies,
//! operators tightening them, and policies that do not validate.

use leash_core::{Environment, OwnerStatus, RunState};
use leash_policy::{IssuanceKind, PolicyEngine, PolicyError, PolicySet, PolicySource, ReasonKind};

use super::fixture::{Ask, Fixture, assert_allowed, denied_by, engine_with};

fn engine() -> PolicyEngine {
    PolicyEngine::with_defaults().unwrap()
}

const KINDS: [IssuanceKind; 5] = [
    IssuanceKind::Mint,
    IssuanceKind::Exchange,
    IssuanceKind::ClientCredentials,
    IssuanceKind::Federated,
    IssuanceKind::BreakGlass,
];

#[test]
fn a_token_within_every_rule_is_issued_by_the_base_permit() {
    let e = engine();
    for env in [Environment::Dev, Environment::Stage, Environment::Prod] {
        for kind in KINDS {
            let ask = Ask::new(env).kind(kind);
            assert_allowed(&e.decide_issuance(&ask.input()));
        }
        // Same-environment exchange, and no run at all.
        assert_allowed(&e.decide_issuance(&Ask::new(env).exchange_from(env).input()));
        let mut ask = Ask::new(env);
        ask.fixture = ask.fixture.without_run();
        assert_allowed(&e.decide_issuance(&ask.input()));
    }
}

#[test]
fn no_token_without_an_active_owner() {
    let e = engine();
    let mut ask = Ask::new(Environment::Dev);
    ask.fixture.owner.status = OwnerStatus::Offboarded;
    let d = e.decide_issuance(&ask.input());
    assert_eq!(denied_by(&d), vec!["issue-owner-active"]);
    assert_eq!(d.reasons[0].kind, ReasonKind::Forbid);
    assert_eq!(
        d.reasons[0].message,
        "owner `team-ai` of workload `triage-bot` is offboarded, and no token may be issued without an active owner; hand the workload to an active owner first"
    );
    // Near miss: the same ask with the owner active.
    ask.fixture.owner.status = OwnerStatus::Active;
    assert_allowed(&e.decide_issuance(&ask.input()));
}

#[test]
fn no_scope_above_the_workload_ceiling() {
    let e = engine();
    // Ceiling: repo:acme/*:write.
    let ask = Ask::new(Environment::Prod).scopes(&[
        "repo:acme/api:write",
        "repo:evil/x:write",
        "tickets:read",
    ]);
    let d = e.decide_issuance(&ask.input());
    assert_eq!(denied_by(&d), vec!["issue-scope-ceiling"]);
    assert_eq!(
        d.reasons[0].message,
        "workload `triage-bot` may not hold [repo:evil/x:write, tickets:read]: above its scope ceiling [repo:acme/*:write]; ask for narrower scopes or have owner `team-ai` raise the ceiling"
    );
    // Near miss: every scope under the wildcard.
    let ask = Ask::new(Environment::Prod).scopes(&["repo:acme/api:write", "repo:acme/web:write"]);
    assert_allowed(&e.decide_issuance(&ask.input()));
}

#[test]
fn token_lifetimes_are_capped_per_environment() {
    let e = engine();
    for (env, cap, words) in [
        (Environment::Dev, 28_800, "8h"),
        (Environment::Stage, 14_400, "4h"),
        (Environment::Prod, 3_600, "1h"),
    ] {
        assert_allowed(&e.decide_issuance(&Ask::new(env).ttl(cap).input()));
        let d = e.decide_issuance(&Ask::new(env).ttl(cap + 1).input());
        assert_eq!(denied_by(&d), vec![format!("issue-ttl-caps-{env}")]);
        assert_eq!(
            d.reasons[0].message,
            format!(
                "tokens for {env} workloads live at most {words}: workload `triage-bot` asked for {words}1s; ask for {words} or less"
            )
        );
    }
    // The caps agree with the built-in floor.
    let caps = leash_core::issuance::TtlCaps::default();
    assert_eq!((caps.dev, caps.stage, caps.prod), (28_800, 14_400, 3_600));
    // A lifetime beyond what Cedar's Long holds is still refused.
    let d = e.decide_issuance(&Ask::new(Environment::Dev).ttl(u64::MAX).input());
    assert_eq!(denied_by(&d), vec!["issue-ttl-caps-dev"]);
}

#[test]
fn exchange_does_not_cross_environments() {
    let e = engine();
    let d = e.decide_issuance(
        &Ask::new(Environment::Prod)
            .exchange_from(Environment::Dev)
            .input(),
    );
    assert_eq!(denied_by(&d), vec!["issue-environment-isolation"]);
    assert_eq!(
        d.reasons[0].message,
        "tokens do not cross environments: workload `triage-bot` is prod but the parent token belongs to a dev workload (exchange); start from a token of a prod workload"
    );
    // Downwards is crossing too.
    let d = e.decide_issuance(
        &Ask::new(Environment::Dev)
            .exchange_from(Environment::Prod)
            .input(),
    );
    assert_eq!(denied_by(&d), vec!["issue-environment-isolation"]);
    // Near misses: same environment, no parent, or only the actor elsewhere
    // (the default rule is about the parent token).
    let same = Ask::new(Environment::Prod).exchange_from(Environment::Prod);
    assert_allowed(&e.decide_issuance(&same.input()));
    assert_allowed(&e.decide_issuance(&Ask::new(Environment::Prod).input()));
    let mut actor = Ask::new(Environment::Prod).exchange_from(Environment::Prod);
    actor.actor_environment = Some(Environment::Dev);
    assert_allowed(&e.decide_issuance(&actor.input()));
}

#[test]
fn every_issuance_forbid_that_applies_is_a_reason_in_load_order() {
    let e = engine();
    let mut ask = Ask::new(Environment::Prod)
        .scopes(&["db:drop"])
        .ttl(7_200)
        .exchange_from(Environment::Stage);
    ask.fixture.owner.status = OwnerStatus::Offboarded;
    let d = e.decide_issuance(&ask.input());
    assert_eq!(
        denied_by(&d),
        vec![
            "issue-owner-active",
            "issue-scope-ceiling",
            "issue-ttl-caps-prod",
            "issue-environment-isolation"
        ]
    );
    assert!(d.reasons.iter().all(|r| r.kind == ReasonKind::Forbid));
}

#[test]
fn request_and_issuance_policies_do_not_mix() {
    let e = engine();
    // Request-time forbids do not apply to issuance: an ended run and a
    // dev workload are for the built-in rules and the issuance policies.
    let ask = Ask {
        fixture: Fixture::new(Environment::Dev).run_state(RunState::Succeeded),
        ..Ask::new(Environment::Dev)
    };
    assert_allowed(&e.decide_issuance(&ask.input()));
    // Issuance forbids do not apply to requests: a token minted before its
    // owner was offboarded is handled by revocation, not by these rules.
    let mut f = Fixture::new(Environment::Dev);
    f.owner.status = OwnerStatus::Offboarded;
    assert_allowed(&e.decide(&f.input("write", None)));
}

const OPERATOR: &str = r#"
// Client credentials are for read-only service accounts.
@id("cc-read-only")
@reason("client credentials may not carry write scopes: workload `{workload}` asked for {scopes}; use a minted token with a justification")
forbid (principal, action == Leash::Action::"issue", resource)
when { context.kind == "client_credentials" && context.has_write };

// Production tokens live 15 minutes at most.
@id("prod-15-minutes")
@reason("prod tokens live at most 15m here: workload `{workload}` asked for {ttl}")
forbid (principal, action == Leash::Action::"issue", resource)
when { principal.environment == "prod" && context.ttl_secs > 900 };

// No tokens for a run that has ended.
@id("issue-for-running-runs")
@reason("run {run} is {run.state}; start a new run")
forbid (principal, action == Leash::Action::"issue", resource)
when { context.run_state == "ended" };
"#;

#[test]
fn operators_tighten_issuance_with_their_own_policies() {
    let engine = engine();
    let cc = Ask::new(Environment::Dev).kind(IssuanceKind::ClientCredentials);
    let prod_30m = Ask::new(Environment::Prod).ttl(1_800);
    assert_allowed(&engine.decide_issuance(&cc.input()));
    assert_allowed(&engine.decide_issuance(&prod_30m.input()));

    engine
        .update(|s| s.with_source(PolicySource::new("ops.cedar", OPERATOR)))
        .unwrap();

    let d = engine.decide_issuance(&cc.input());
    assert_eq!(denied_by(&d), vec!["cc-read-only"]);
    assert_eq!(
        d.reasons[0].message,
        "client credentials may not carry write scopes: workload `triage-bot` asked for [repo:acme/api:write]; use a minted token with a justification"
    );
    // Near misses: read scopes by client credentials, write scopes minted.
    let cc_read = Ask::new(Environment::Dev)
        .kind(IssuanceKind::ClientCredentials)
        .scopes(&["repo:acme/api:read"]);
    // (repo:acme/*:write does not cover a read scope: above the ceiling.)
    assert_eq!(
        denied_by(&engine.decide_issuance(&cc_read.input())),
        vec!["issue-scope-ceiling"]
    );
    let mut cc_read = cc_read;
    cc_read
        .fixture
        .workload
        .scope_ceiling
        .push("repo:acme/*:read".parse().unwrap());
    let cc_read = cc_read.scopes(&["repo:acme/api:read"]);
    assert_allowed(&engine.decide_issuance(&cc_read.input()));
    assert_allowed(&engine.decide_issuance(&Ask::new(Environment::Dev).input()));

    let d = engine.decide_issuance(&prod_30m.input());
    assert_eq!(denied_by(&d), vec!["prod-15-minutes"]);
    assert_eq!(
        d.reasons[0].message,
        "prod tokens live at most 15m here: workload `triage-bot` asked for 30m"
    );
    assert_allowed(&engine.decide_issuance(&Ask::new(Environment::Prod).ttl(900).input()));
    assert_allowed(&engine.decide_issuance(&Ask::new(Environment::Dev).ttl(1_800).input()));

    let ended = Ask {
        fixture: Fixture::new(Environment::Dev).run_state(RunState::Cancelled),
        ..Ask::new(Environment::Dev)
    };
    let d = engine.decide_issuance(&ended.input());
    assert_eq!(denied_by(&d), vec!["issue-for-running-runs"]);
    assert_eq!(d.reasons[0].message, "run 7 is cancelled; start a new run");

    // The operator's rules do not touch requests.
    let f = Fixture::new(Environment::Prod);
    assert_allowed(&engine.decide(&f.input("write", None)));
}

#[test]
fn an_issuance_policy_reading_an_unknown_attribute_is_refused() {
    let engine = engine();
    let before = engine.active();
    let text = "@id(\"short-ttl\")\nforbid (principal, action == Leash::Action::\"issue\", resource)\nwhen { context.ttl > 60 };\n";
    let err = engine
        .update(|s| s.with_source(PolicySource::new("ttl.cedar", text)))
        .unwrap_err();
    let PolicyError::Invalid { diagnostics } = &err else {
        panic!("expected Invalid, got {err:?}");
    };
    assert_eq!(diagnostics.len(), 1, "{err}");
    let d = &diagnostics[0];
    assert_eq!(d.source, "ttl.cedar");
    assert_eq!(d.policy_id.as_deref(), Some("short-ttl"));
    assert_eq!(d.line, Some(3), "{d}");
    assert!(d.message.contains("`ttl`"), "{d}");
    assert!(d.snippet.as_deref().unwrap().contains("context.ttl"), "{d}");
    assert!(err.to_string().contains("nothing was activated"), "{err}");
    assert!(std::sync::Arc::ptr_eq(&before, &engine.active()));

    // Request attributes are not in the issuance context either.
    let text = "forbid (principal, action == Leash::Action::\"issue\", resource) when { context.token_id == \"x\" };";
    let err = PolicySet::from_text("t.cedar", text).unwrap_err();
    assert!(err.diagnostics()[0].message.contains("token_id"), "{err}");
}

#[test]
fn a_request_policy_that_names_no_action_is_told_to_limit_itself() {
    // Written before the issue action existed: reads a request-only
    // attribute for every action.
    let text = "@id(\"no-breakglass-writes\")\nforbid (principal, action, resource)\nwhen { context.token.break_glass && context.token.has_write };\n";
    let err = PolicySet::from_text("old.cedar", text).unwrap_err();
    let diags = err.diagnostics();
    assert_eq!(diags.len(), 2, "{err}");
    // Said in full once; the next problem in the policy points back.
    assert_eq!(
        diags[1].help.as_deref(),
        Some("limit the policy to the request actions (see the first problem in it)")
    );
    let d = &diags[0];
    assert_eq!(d.policy_id.as_deref(), Some("no-breakglass-writes"));
    let help = d.help.as_deref().unwrap_or_default();
    assert!(
        help.contains(
            r#"action in [Leash::Action::"read", Leash::Action::"write", Leash::Action::"admin"]"#
        ),
        "{d}"
    );
    let limited = text.replace(
        "action,",
        r#"action in [Leash::Action::"read", Leash::Action::"write", Leash::Action::"admin"],"#,
    );
    PolicySet::from_text("old.cedar", &limited).unwrap();
    // A policy wrong for requests too keeps Cedar's own help.
    let typo = "forbid (principal, action, resource) when { context.tokn.has_write };";
    let err = PolicySet::from_text("typo.cedar", typo).unwrap_err();
    assert!(
        !err.diagnostics().iter().any(|d| d
            .help
            .as_deref()
            .unwrap_or_default()
            .contains("applies to every action")),
        "{err}"
    );
}

#[test]
fn an_issuance_policy_that_fails_to_evaluate_denies() {
    let overflow = r#"@id("overflow") forbid (principal, action == Leash::Action::"issue", resource)
        when { context.ttl_secs + 9223372036854775807 < 0 };"#;
    let engine = engine_with("o.cedar", overflow);
    let d = engine.decide_issuance(&Ask::new(Environment::Dev).input());
    assert!(!d.allow, "{d:?}");
    assert_eq!(d.reasons.len(), 1, "{d:?}");
    assert_eq!(d.reasons[0].kind, ReasonKind::EvaluationError);
    assert_eq!(d.reasons[0].policy.as_deref(), Some("overflow"));
    assert!(
        d.reasons[0]
            .message
            .contains("could not be evaluated, so the issuance is denied"),
        "{d:?}"
    );
}

#[test]
fn without_a_permit_no_token_is_issued() {
    let engine = PolicyEngine::new(
        PolicySet::from_sources(
            leash_policy::PolicySource::defaults()
                .into_iter()
                .filter(|s| s.name != "base.cedar"),
        )
        .unwrap(),
    );
    let d = engine.decide_issuance(&Ask::new(Environment::Dev).input());
    assert!(!d.allow);
    assert_eq!(d.reasons[0].kind, ReasonKind::NoPermit);
    assert_eq!(
        d.reasons[0].message,
        "no policy permits issuing a token (mint) to workload `triage-bot`; add a permit policy for `Leash::Action::\"issue\"`"
    );
}

#[test]
fn a_policy_can_govern_requests_and_issuance_together() {
    let text = r#"@id("stage-frozen")
@reason("stage is frozen: no {action} for `{workload}`")
forbid (principal, action in [Leash::Action::"write", Leash::Action::"issue"], resource)
when { principal.environment == "stage" };"#;
    let engine = engine_with("freeze.cedar", text);
    let f = Fixture::new(Environment::Stage);
    let d = engine.decide(&f.input("push", None));
    assert_eq!(denied_by(&d), vec!["stage-frozen"]);
    assert_eq!(
        d.reasons[0].message,
        "stage is frozen: no push for `triage-bot`"
    );
    assert_allowed(&engine.decide(&f.input("read", None)));
    let d = engine.decide_issuance(&Ask::new(Environment::Stage).input());
    assert_eq!(denied_by(&d), vec!["stage-frozen"]);
    assert_eq!(
        d.reasons[0].message,
        "stage is frozen: no issue for `triage-bot`"
    );
    assert_allowed(&engine.decide_issuance(&Ask::new(Environment::Dev).input()));
}
