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
        assert!(matches!(err, SampleError::Format(_)), "{err:?}");
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
    assert_eq!(report.passed(), 18);
    // Every shipped forbid, request-time and issuance, has a sample that
    // it denies, and the base permit one that it allows.
    let set_ids = set.policy_ids();
    for id in set_ids {
        assert!(
            report.results.iter().any(|r| r
                .decision
                .reasons
                .iter()
                .any(|x| x.policy.as_deref() == Some(id))),
            "no shipped sample exercises `{id}`"
        );
    }
}

const ISSUANCE_SAMPLES: &str = r#"[
  {
    "name": "a 2h prod token",
    "input": {
      "owner": {"name": "team-ai"},
      "workload": {"name": "deploy-bot", "environment": "prod", "scope_ceiling": ["repo:acme/*:write"]},
      "run": {"id": 41, "state": "running"},
      "issue": {"kind": "mint", "scopes": ["repo:acme/api:write"], "ttl_secs": 7200, "justified": true},
      "now": 1767225600000
    },
    "expect": "deny",
    "expect_policy": "issue-ttl-caps-prod"
  },
  {
    "name": "wrong expectation: above the ceiling",
    "input": {
      "workload": {"name": "deploy-bot", "environment": "prod", "scope_ceiling": ["tickets:read"]},
      "issue": {"scopes": ["tickets:write"], "ttl_secs": 60}
    },
    "expect": "allow"
  },
  {
    "name": "no ceiling given: not checked",
    "input": {
      "workload": {"name": "deploy-bot", "environment": "prod"},
      "issue": {"scopes": ["tickets:write"], "ttl_secs": 60}
    },
    "expect": "allow",
    "expect_policy": "base-permit"
  }
]"#;

#[test]
fn issuance_samples_are_decided_by_the_issuance_policies() {
    let set = PolicySet::defaults().unwrap();
    let report = evaluate_samples(&set, ISSUANCE_SAMPLES).unwrap();
    let r = &report.results;
    assert_eq!((report.passed(), report.failed()), (2, 1), "{r:#?}");
    assert_eq!(
        r[0].decision.reasons[0].message,
        "tokens for prod workloads live at most 1h: workload `deploy-bot` asked for 2h; ask for 1h or less"
    );
    assert_eq!(r[1].failure.as_deref(), Some("expected allow, got deny"));
    assert_eq!(
        r[1].decision.reasons[0].message,
        "workload `deploy-bot` may not hold [tickets:write]: above its scope ceiling [tickets:read]; ask for narrower scopes or have owner `owner` raise the ceiling"
    );
    assert!(r[2].passed, "{r:#?}");
}

#[test]
fn a_sample_is_a_request_or_an_issuance_never_both() {
    let set = PolicySet::defaults().unwrap();
    let sample = |input: &str| format!(r#"[{{"name": "s", "input": {input}, "expect": "allow"}}]"#);
    for (input, needle) in [
        (
            r#"{"workload": {"name": "a", "environment": "dev"}}"#,
            "sample `s`: a sample needs `action` and `resource` (a request) or `issue` (a token issuance)",
        ),
        (
            r#"{"workload": {"name": "a", "environment": "dev"}, "action": "read"}"#,
            "needs `action` and `resource`",
        ),
        (
            r#"{"workload": {"name": "a", "environment": "dev"}, "action": "read", "issue": {"scopes": [], "ttl_secs": 1}}"#,
            "`action` belongs to request samples, not to an issuance sample (`issue`); remove it",
        ),
        (
            r#"{"workload": {"name": "a", "environment": "dev"}, "token": {}, "issue": {"scopes": [], "ttl_secs": 1}}"#,
            "`token` belongs to request samples",
        ),
    ] {
        let err = evaluate_samples(&set, &sample(input)).unwrap_err();
        assert!(matches!(err, SampleError::Shape { .. }), "{err:?}");
        assert!(err.to_string().contains(needle), "{needle}: {err}");
    }
    // Typos inside `issue` are refused like anywhere else.
    let err = evaluate_samples(
        &set,
        &sample(r#"{"workload": {"name": "a", "environment": "dev"}, "issue": {"scopes": [], "ttl": 1}}"#),
    )
    .unwrap_err();
    assert!(err.to_string().contains("unknown field `ttl`"), "{err}");
    let err = evaluate_samples(
        &set,
        &sample(r#"{"workload": {"name": "a", "environment": "dev"}, "issue": {"kind": "password", "scopes": [], "ttl_secs": 1}}"#),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("unknown variant `password`"),
        "{err}"
    );
}
