//! Loading, validating, replacing and reloading policy sets.

use std::fs;

use leash_core::Environment;
use leash_policy::{PolicyEngine, PolicyError, PolicySet, PolicySource, ReasonKind};

use super::fixture::{Fixture, engine_with};

const NO_STAGE_DELETES: &str = r#"
// Operators' rule: stage workloads never delete.
@id("no-stage-deletes")
@reason("stage workloads may not {action}: workload `{workload}` is {workload.environment}")
forbid (principal, action == Leash::Action::"admin", resource)
when { principal.environment == "stage" };
"#;

#[test]
fn invalid_cedar_is_refused_with_diagnostics_and_the_old_set_stays_active() {
    let engine = PolicyEngine::with_defaults().unwrap();
    let before = engine.active();
    let bad = "@id(\"broken\")\nforbid (principal, action, resource)\nwhen { resource.environment == };\n";
    let err = engine
        .update(|s| s.with_source(PolicySource::new("ops.cedar", bad)))
        .unwrap_err();
    let PolicyError::Invalid { diagnostics } = &err else {
        panic!("expected Invalid, got {err:?}");
    };
    assert!(!diagnostics.is_empty());
    let d = &diagnostics[0];
    assert_eq!(d.source, "ops.cedar");
    assert_eq!(d.line, Some(3), "{d}");
    assert!(
        d.snippet
            .as_deref()
            .unwrap()
            .contains("resource.environment =="),
        "{d}"
    );
    let text = err.to_string();
    assert!(text.starts_with("policies refused (1 problem"), "{text}");
    assert!(text.contains("ops.cedar:3:"), "{text}");
    assert!(text.contains("nothing was activated"), "{text}");

    // The old set is still the active one and still decides.
    assert!(std::sync::Arc::ptr_eq(&before, &engine.active()));
    let f = Fixture::new(Environment::Dev).resource_env("prod");
    let d = engine.decide(&f.input("read", None));
    assert_eq!(d.reasons[0].policy.as_deref(), Some("prod-only-from-prod"));
}

#[test]
fn a_policy_using_an_unknown_attribute_is_refused_by_validation() {
    let text = "@id(\"typo\")\nforbid (principal, action, resource)\nwhen { resource.enviroment == \"prod\" };\n";
    let err = PolicySet::from_sources(
        PolicySource::defaults()
            .into_iter()
            .chain([PolicySource::new("typo.cedar", text)]),
    )
    .unwrap_err();
    let diags = err.diagnostics();
    assert_eq!(diags.len(), 1, "{err}");
    let d = &diags[0];
    assert_eq!(d.source, "typo.cedar");
    assert_eq!(d.policy_id.as_deref(), Some("typo"));
    assert_eq!(d.line, Some(3), "{d}");
    assert!(d.message.contains("enviroment"), "{d}");
    assert!(d.to_string().contains("typo.cedar:3:"), "{d}");
}

#[test]
fn validation_catches_type_errors_and_unknown_entity_types() {
    for (text, needle) in [
        (
            "forbid (principal, action, resource) when { principal.environment == 3 };",
            "principal.environment == 3",
        ),
        (
            "forbid (principal == Leash::Robot::\"x\", action, resource);",
            "Leash::Robot",
        ),
        (
            "forbid (principal, action, resource) when { context.tool == \"x\" };",
            "context.tool",
        ),
    ] {
        let err = PolicySet::from_text("t.cedar", text).unwrap_err();
        let d = &err.diagnostics()[0];
        assert!(d.snippet.as_deref().unwrap_or("").contains(needle), "{d}");
        assert!(d.line.is_some(), "{d}");
    }
}

#[test]
fn every_problem_in_every_source_is_reported() {
    let err = PolicySet::from_sources([
        PolicySource::new("a.cedar", "permit (principal, action, resource"),
        PolicySource::new(
            "b.cedar",
            "@reason(\"{nope}\") permit (principal, action, resource);",
        ),
    ])
    .unwrap_err();
    let sources: Vec<&str> = err
        .diagnostics()
        .iter()
        .map(|d| d.source.as_str())
        .collect();
    assert!(
        sources.contains(&"a.cedar") && sources.contains(&"b.cedar"),
        "{err}"
    );
}

#[test]
fn policies_through_the_api_add_forbids_and_can_be_removed() {
    let engine = PolicyEngine::with_defaults().unwrap();
    let f = Fixture::new(Environment::Stage);
    assert!(engine.decide(&f.input("delete", None)).allow);

    engine
        .update(|s| s.with_source(PolicySource::new("api/no-stage-deletes", NO_STAGE_DELETES)))
        .unwrap();
    let d = engine.decide(&f.input("delete", None));
    assert!(!d.allow);
    assert_eq!(d.reasons[0].policy.as_deref(), Some("no-stage-deletes"));
    assert_eq!(
        d.reasons[0].message,
        "stage workloads may not delete: workload `triage-bot` is stage"
    );
    assert!(engine.decide(&f.input("write", None)).allow);

    engine
        .update(|s| s.without_source("api/no-stage-deletes"))
        .unwrap();
    assert!(engine.decide(&f.input("delete", None)).allow);
    assert_eq!(engine.active().len(), defaults_len());
}

/// How many policies the shipped defaults hold.
fn defaults_len() -> usize {
    PolicySet::defaults().unwrap().len()
}

#[test]
fn reload_from_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let engine = PolicyEngine::new(PolicySet::from_dir(dir.path()).unwrap());
    assert_eq!(
        engine.active().len(),
        defaults_len(),
        "an empty directory means the defaults"
    );

    let stage = Fixture::new(Environment::Stage);
    assert!(engine.decide(&stage.input("delete", None)).allow);

    // An operator adds a forbid; files that are not *.cedar are ignored.
    fs::write(dir.path().join("ops.cedar"), NO_STAGE_DELETES).unwrap();
    fs::write(dir.path().join("notes.txt"), "not a policy").unwrap();
    let set = engine.reload_from_dir(dir.path()).unwrap();
    assert_eq!(set.len(), defaults_len() + 1);
    assert!(!engine.decide(&stage.input("delete", None)).allow);

    // A broken edit is refused; the previous set keeps deciding.
    fs::write(
        dir.path().join("ops.cedar"),
        "forbid (principal, action, resource) when { principal.nope };",
    )
    .unwrap();
    let err = engine.reload_from_dir(dir.path()).unwrap_err();
    assert!(err.to_string().contains("ops.cedar:1:"), "{err}");
    assert!(!engine.decide(&stage.input("delete", None)).allow);

    // A file named like a default replaces it: empty switches it off.
    fs::remove_file(dir.path().join("ops.cedar")).unwrap();
    fs::write(dir.path().join("prod-isolation.cedar"), "").unwrap();
    engine.reload_from_dir(dir.path()).unwrap();
    let dev_to_prod = Fixture::new(Environment::Dev).resource_env("prod");
    assert!(engine.decide(&dev_to_prod.input("write", None)).allow);
    assert!(
        !engine
            .active()
            .policy_ids()
            .contains(&"prod-only-from-prod")
    );
}

#[test]
fn an_unreadable_directory_is_a_read_error_and_changes_nothing() {
    let engine = PolicyEngine::with_defaults().unwrap();
    let err = engine
        .reload_from_dir(std::path::Path::new("/nonexistent/leash-policies"))
        .unwrap_err();
    assert!(matches!(err, PolicyError::Read { .. }), "{err:?}");
    assert!(
        err.to_string().contains("/nonexistent/leash-policies"),
        "{err}"
    );
    assert_eq!(engine.active().len(), defaults_len());
}

#[test]
fn without_a_permit_everything_is_denied_with_a_reason() {
    let engine = PolicyEngine::new(
        PolicySet::from_sources(
            PolicySource::defaults()
                .into_iter()
                .filter(|s| s.name != "base.cedar"),
        )
        .unwrap(),
    );
    let f = Fixture::new(Environment::Prod);
    let d = engine.decide(&f.input("read", None));
    assert!(!d.allow);
    assert_eq!(d.reasons[0].kind, ReasonKind::NoPermit);
    assert_eq!(
        d.reasons[0].message,
        "no policy permits `read` on repo `acme/api` for workload `triage-bot`; add a permit policy for it"
    );
}

#[test]
fn a_policy_that_fails_to_evaluate_denies() {
    // Strict validation cannot rule out overflow, or a reference to an
    // entity Leash did not load (the workflow's owner when it is not the
    // token's owner).
    let overflow = r#"@id("overflow") forbid (principal, action, resource)
        when { context.now + 9223372036854775807 < 0 };"#;
    let engine = engine_with("o.cedar", overflow);
    let f = Fixture::new(Environment::Prod);
    let d = engine.decide(&f.input("read", None));
    assert!(!d.allow, "{d:?}");
    assert_eq!(d.reasons.len(), 1, "{d:?}");
    assert_eq!(d.reasons[0].kind, ReasonKind::EvaluationError);
    assert_eq!(d.reasons[0].policy.as_deref(), Some("overflow"));
    assert!(
        d.reasons[0].message.contains("could not be evaluated"),
        "{d:?}"
    );

    let owner_status = r#"@id("workflow-owner-active") forbid (principal, action, resource)
        when { context has workflow && context.workflow.owner.status != "active" };"#;
    let engine = engine_with("w.cedar", owner_status);
    let mut f = Fixture::new(Environment::Prod);
    assert!(engine.decide(&f.input("read", None)).allow);
    f.workflow.as_mut().unwrap().owner_id = 99;
    let d = engine.decide(&f.input("read", None));
    assert!(!d.allow);
    assert_eq!(d.reasons[0].kind, ReasonKind::EvaluationError);
}

#[test]
fn policies_can_use_owners_tokens_and_time() {
    let text = r#"
@id("team-ai-no-admin")
@reason("owner `{owner}` may not administer {resource}")
forbid (principal in Leash::Owner::"team-ai", action == Leash::Action::"admin", resource);

@id("short-lived-writes")
@reason("token `{token}` lives too long for writes")
forbid (principal, action == Leash::Action::"write", resource)
when { context.token.expires_at - context.now > 86400000 && !context.token.break_glass };

@id("readers-only-read")
forbid (principal, action in [Leash::Action::"read", Leash::Action::"write", Leash::Action::"admin"], resource)
unless { context.token.has_write || action == Leash::Action::"read" };
"#;
    let engine = engine_with("ops.cedar", text);
    let mut f = Fixture::new(Environment::Prod);
    let d = engine.decide(&f.input("delete", None));
    assert_eq!(
        d.reasons[0].message,
        "owner `team-ai` may not administer repo acme/api"
    );
    assert!(engine.decide(&f.input("push", None)).allow);
    f.token.expires_at = 10 * 86_400_000;
    let d = engine.decide(&f.input("push", None));
    assert_eq!(
        d.reasons[0].message,
        "token `tok-1` lives too long for writes"
    );
    let input = leash_policy::DecisionInput {
        break_glass: true,
        ..f.input("push", None)
    };
    assert!(engine.decide(&input).allow);
}

#[test]
fn policies_can_read_every_record() {
    use leash_core::{OwnerStatus, RunState};
    let text = r#"
@id("owner-offboarded") @reason("owner `{owner}` is offboarded")
forbid (principal, action, resource) when { principal.owner.status == "offboarded" };

@id("run-cancelled") @reason("run {run} was cancelled")
forbid (principal, action, resource)
when { context has run && context has workflow && context.run.state == "cancelled" && context.run.workflow == context.workflow };

@id("token-run") @reason("token run is {run.state}")
forbid (principal, action in [Leash::Action::"read", Leash::Action::"write", Leash::Action::"admin"], resource)
when { context.token has run && context.token.run.state == "failed" };

@id("git-tools-only") @reason("workflow `{workflow}` declares non-git tools")
forbid (principal, action, resource)
when { context has workflow && context.workflow.tools.contains("shell") };

@id("scoped-reads") @reason("token `{token}` holds an admin scope")
forbid (principal, action in [Leash::Action::"read", Leash::Action::"write", Leash::Action::"admin"], resource)
when { context.token.scopes.contains("repo:*") && context.token.workload == principal };
"#;
    let engine = engine_with("ops.cedar", text);
    let denied_by = |f: &Fixture| {
        let d = engine.decide(&f.input("read", None));
        assert!(!d.allow, "{d:?}");
        d.reasons[0].policy.clone().unwrap()
    };
    let f = Fixture::new(Environment::Prod);
    assert!(engine.decide(&f.input("read", None)).allow);

    let mut o = Fixture::new(Environment::Prod);
    o.owner.status = OwnerStatus::Offboarded;
    assert_eq!(denied_by(&o), "owner-offboarded");
    assert_eq!(
        denied_by(&Fixture::new(Environment::Prod).run_state(RunState::Cancelled)),
        "run-cancelled"
    );
    assert_eq!(
        denied_by(&Fixture::new(Environment::Prod).run_state(RunState::Failed)),
        "token-run"
    );
    let mut w = Fixture::new(Environment::Prod);
    w.workflow.as_mut().unwrap().tools.push("shell".into());
    assert_eq!(denied_by(&w), "git-tools-only");
    let mut t = Fixture::new(Environment::Prod);
    t.token.scopes.push("repo:*".parse().unwrap());
    assert_eq!(denied_by(&t), "scoped-reads");
}
