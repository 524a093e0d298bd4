//! The shipped policies allow and deny the right requests.

use leash_core::{Environment, RunState};
use leash_policy::{PolicyEngine, ReasonKind};

use super::fixture::{Fixture, assert_allowed, denied_by};

fn engine() -> PolicyEngine {
    PolicyEngine::with_defaults().unwrap()
}

#[test]
fn production_resources_only_from_production_workloads() {
    let e = engine();
    for env in [Environment::Dev, Environment::Stage] {
        let f = Fixture::new(env).resource_env("prod");
        for action in ["read", "write", "delete"] {
            let d = e.decide(&f.input(action, Some("git-push")));
            assert_eq!(denied_by(&d), vec!["prod-only-from-prod"], "{env} {action}");
            assert_eq!(d.reasons[0].kind, ReasonKind::Forbid);
            assert_eq!(
                d.reasons[0].message,
                format!(
                    "production resources only from production workloads: workload `triage-bot` is {env}; use a prod workload for repo acme/api"
                )
            );
        }
    }
    let prod = Fixture::new(Environment::Prod).resource_env("prod");
    assert_allowed(&e.decide(&prod.input("write", Some("git-push"))));
    // Long and upper-case names are production too.
    let f = Fixture::new(Environment::Dev).resource_env("Production");
    assert_eq!(
        denied_by(&e.decide(&f.input("read", None))),
        vec!["prod-only-from-prod"]
    );
    // Non-production or unlabelled resources are open to every environment.
    for env in ["dev", "stage", "qa"] {
        let f = Fixture::new(Environment::Dev).resource_env(env);
        assert_allowed(&e.decide(&f.input("write", None)));
    }
    assert_allowed(&e.decide(&Fixture::new(Environment::Dev).input("write", None)));
}

#[test]
fn no_writes_after_a_run_ends() {
    let e = engine();
    let running = Fixture::new(Environment::Dev);
    for action in ["read", "list", "write", "push", "delete"] {
        assert_allowed(&e.decide(&running.input(action, None)));
    }
    for state in [RunState::Succeeded, RunState::Failed, RunState::Cancelled] {
        let ended = Fixture::new(Environment::Dev).run_state(state);
        for action in ["read", "get", "search"] {
            assert_allowed(&e.decide(&ended.input(action, None)));
        }
        for action in ["write", "push", "comment", "delete", "admin"] {
            let d = e.decide(&ended.input(action, None));
            assert_eq!(
                denied_by(&d),
                vec!["no-writes-after-run"],
                "{state} {action}"
            );
            assert_eq!(
                d.reasons[0].message,
                format!(
                    "no writes after a run ends: run 7 of workflow `triage` is {state}; start a new run to {action} repo acme/api"
                )
            );
        }
    }
}

#[test]
fn a_run_the_server_could_not_find_counts_as_ended() {
    let e = engine();
    let mut f = Fixture::new(Environment::Dev);
    f.run = None;
    assert_allowed(&e.decide(&f.input("read", None)));
    let d = e.decide(&f.input("write", None));
    assert_eq!(denied_by(&d), vec!["no-writes-after-run"]);
    assert!(
        d.reasons[0]
            .message
            .contains("run 7 of workflow `triage` is unknown"),
        "{d:?}"
    );
}

#[test]
fn tokens_without_a_run_are_not_limited_by_run_state() {
    let e = engine();
    let f = Fixture::new(Environment::Dev).without_run();
    assert_allowed(&e.decide(&f.input("write", None)));
    // No workflow: nothing is declared, so the tool rule does not apply.
    assert_allowed(&e.decide(&f.input("write", Some("rm-rf"))));
}

#[test]
fn no_tools_the_workflow_did_not_declare() {
    let e = engine();
    let f = Fixture::new(Environment::Dev);
    assert_allowed(&e.decide(&f.input("write", Some("git-push"))));
    assert_allowed(&e.decide(&f.input("read", Some("git-clone"))));
    assert_allowed(&e.decide(&f.input("write", None)));
    for action in ["read", "write"] {
        let d = e.decide(&f.input(action, Some("shell")));
        assert_eq!(denied_by(&d), vec!["declared-tools-only"]);
        assert_eq!(
            d.reasons[0].message,
            "no tools the workflow did not declare: workflow `triage` does not declare tool `shell` (it declares [git-clone, git-push]); add it to the workflow definition"
        );
    }
    // Tool names are exact.
    assert!(!e.decide(&f.input("write", Some("Git-Push"))).allow);
}

#[test]
fn every_forbid_that_applies_is_a_reason_in_load_order() {
    let e = engine();
    let f = Fixture::new(Environment::Dev)
        .run_state(RunState::Succeeded)
        .resource_env("prod");
    let d = e.decide(&f.input("push", Some("shell")));
    assert_eq!(
        denied_by(&d),
        vec![
            "prod-only-from-prod",
            "no-writes-after-run",
            "declared-tools-only"
        ]
    );
    let json = d.to_authzen();
    assert_eq!(json["decision"], false);
    assert_eq!(json["context"]["reasons"].as_array().unwrap().len(), 3);
    assert!(
        json["context"]["reason"]
            .as_str()
            .unwrap()
            .starts_with("production resources only from production workloads")
    );
}
