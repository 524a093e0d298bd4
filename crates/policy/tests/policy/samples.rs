//! `leash policy test FILE`: sample requests with expected outcomes.

use leash_policy::samples::{Expect, SampleError, evaluate_samples};
use leash_policy::{PolicySet, ReasonKind};

const SAMPLES: &str = r#"[
  {
    "name": "dev bot may not push to a prod repo",
    "input": {
      "owner": {"name": "team-ai"},
      "workload": {"name": "triage-bot", "environment": "dev"},
      "workflow": {"name": "triage", "tools": ["git-push"]},
      "run": {"id": 7, "state": "running"},
      "token": {"id": "tok-1", "scopes": ["repo:acme/*:write"]},
      "action": "write",
      "resource": {"type": "repo", "id": "acme/api", "properties": {"environment": "prod"}},
      "tool": "git-push"
    },
    "expect": "deny",
    "expect_policy": "prod-only-from-prod"
  },
  {
    "name": "prod bot pushes to a prod repo",
    "input": {
      "workload": {"name": "deploy-bot", "environment": "prod"},
      "workflow": {"name": "deploy", "tools": ["git-push"]},
      "run": {"state": "running"},
      "token": {"scopes": ["repo:acme/*:write"]},
      "action": "write",
      "resource": {"type": "repo", "id": "acme/api", "properties": {"environment": "prod"}},
      "tool": "git-push"
    },
    "expect": "allow",
    "expect_policy": "base-permit"
  },
  {
    "name": "a read scope does not cover a write",
    "input": {
      "workload": {"name": "deploy-bot", "environment": "prod"},
      "token": {"scopes": ["repo:acme/*:read"]},
      "action": "write",
      "resource": {"type": "repo", "id": "acme/api"}
    },
    "expect": "deny"
  },
  {
    "name": "an expired token is refused before the policies",
    "input": {
      "workload": {"name": "deploy-bot", "environment": "prod"},
      "token": {"expires_at": 10},
      "action": "read",
      "resource": {"type": "repo", "id": "acme/api"},
      "now": 20
    },
    "expect": "deny"
  },
  {
    "name": "wrong expectation: writes after the run ended",
    "input": {
      "workload": {"name": "triage-bot", "environment": "dev"},
      "workflow": {"name": "triage"},
      "run": {"state": "succeeded"},
      "action": "push",
      "resource": {"type": "repo", "id": "acme/api"}
    },
    "expect": "allow"
  },
  {
    "name": "wrong policy expected",
    "input": {
      "workload": {"name": "triage-bot", "environment": "dev"},
      "workflow": {"name": "triage", "tools": []},
      "run": {"state": "running"},
      "action": "read",
      "resource": {"type": "tickets", "id": "42"},
      "tool": "shell"
    },
    "expect": "deny",
    "expect_policy": "no-writes-after-run"
  }
]"#;

#[test]
fn samples_are_evaluated_with_reasons() {
    let set = PolicySet::defaults().unwrap();
    let report = evaluate_samples(&set, SAMPLES).unwrap();
    assert_eq!(report.results.len(), 6);
    assert_eq!((report.passed(), report.failed()), (4, 2));

    let r = &report.results;
    assert!(
        r[0].passed && r[1].passed && r[2].passed && r[3].passed,
        "{r:#?}"
    );
    assert_eq!(r[2].decision.reasons[0].kind, ReasonKind::ScopeNotCovered);
    assert_eq!(
        r[2].decision.reasons[0].message,
        "no scope of token `sample-token` covers `write` on repo `acme/api` (it holds [repo:acme/*:read]); mint a token with scope `repo:acme/api:write`"
    );
    assert_eq!(r[3].decision.reasons[0].kind, ReasonKind::TokenInactive);

    assert!(!r[4].passed);
    assert_eq!(r[4].expect, Expect::Allow);
    assert_eq!(r[4].failure.as_deref(), Some("expected allow, got deny"));
    assert_eq!(
        r[4].decision.reasons[0].policy.as_deref(),
        Some("no-writes-after-run")
    );

    assert!(!r[5].passed);
    assert_eq!(
        r[5].failure.as_deref(),
        Some("expected policy `no-writes-after-run` among the reasons, got [declared-tools-only]")
    );

    // The report serializes for `--json`.
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["results"][0]["decision"]["allow"], false);
    assert_eq!(json["results"][0]["passed"], true);
}

#[test]
fn malformed_samples_say_where_and_what() {
    let set = PolicySet::defaults().unwrap();
    for (text, needle) in [
        ("{}", "expected a sequence"),
        (
            r#"[{"name": "x", "input": {"workload": {"name": "a", "environment": "production"}, "action": "read", "resource": {"type": "r", "id": "1"}}, "expect": "allow"}]"#,
            "expected one of `dev`, `stage`, `prod`",
        ),
        (
            r#"[{"name": "x", "input": {"workload": {"name": "a", "environment": "dev"}, "action": "read", "resource": {"type": "r", "id": "1"}}, "expect": "maybe"}]"#,
            "unknown variant `maybe`",
        ),
        (
            r#"[{"name": "x", "input": {"workload": {"name": "a", "environment": "dev"}, "acton": "read", "resource": {"type": "r", "id": "1"}}, "expect": "allow"}]"#,
            "unknown field `acton`",
        ),
        (
            r#"[{"name": "x", "input": {"workload": {"name": "a", "environment": "dev"}, "token": {"scopes": ["bad scope"]}, "action": "read", "resource": {"type": "r", "id": "1"}}, "expect": "allow"}]"#,
            "TYPE[:ID_PATTERN]:ACTION",
        ),
    ] {
        let err = evaluate_samples(&set, text).unwrap_err();
        let SampleError::Format(_) = &err;
        let msg = err.to_string();
        assert!(msg.contains(needle), "{needle}: {msg}");
        assert!(msg.contains("line 1 column"), "{msg}");
    }
}

/// The shipped example file (`crates/policy/samples/defaults.json`) passes
/// against the default policies.
#[test]
fn the_shipped_samples_pass_with_the_defaults() {
    let set = PolicySet::defaults().unwrap();
    let report = evaluate_samples(&set, include_str!("../../samples/defaults.json")).unwrap();
    let failed: Vec<_> = report.results.iter().filter(|r| !r.passed).collect();
    assert!(failed.is_empty(), "{failed:#?}");
    assert_eq!(report.passed(), 9);
}
