//! Removability: would the workflow break if these scopes (or this token)
//! went away? A dry run reads the usage of the workflow's last runs; a
//! canary denies them to the next run and records how it ended.

use leash_core::scope::Scope;
use leash_store::{RunUsage, scope_allows};
use serde_json::json;

/// The three answers.
pub const REMOVABLE: &str = "removable";
pub const NEEDED: &str = "needed";
pub const UNKNOWN: &str = "unknown";

/// The verdict from usage history: `needed` when some use in the last runs
/// is covered by a tested scope and by no scope the token keeps (that step
/// would break); `removable` when at least `min_runs` ended runs held the
/// scopes and none used them; `unknown` with fewer such runs to go on.
pub fn dry_run(
    tested: &[Scope],
    runs: &[RunUsage],
    min_runs: usize,
) -> (&'static str, serde_json::Value) {
    let mut breaks = Vec::new();
    let mut holding_runs = 0usize;
    for run in runs {
        let mut held = false;
        for (token, scopes) in &run.tokens {
            let scopes: Vec<Scope> = scopes.iter().filter_map(|s| s.parse().ok()).collect();
            if !scopes.iter().any(|s| tested.contains(s)) {
                continue;
            }
            held = true;
            let kept: Vec<&Scope> = scopes.iter().filter(|s| !tested.contains(s)).collect();
            for u in run.uses.iter().filter(|u| &u.token_id == token) {
                let needs = tested
                    .iter()
                    .find(|s| scope_allows(s, &u.resource, &u.action));
                let still = kept.iter().any(|s| scope_allows(s, &u.resource, &u.action));
                if let Some(scope) = needs
                    && !still
                {
                    breaks.push(json!({
                        "run": run.run, "run_state": run.state, "step": u.step,
                        "action": u.action, "resource": u.resource, "uses": u.count,
                        "token": token, "scope": scope.to_string(),
                    }));
                }
            }
        }
        if held {
            holding_runs += 1;
        }
    }
    let runs_seen: Vec<serde_json::Value> = runs
        .iter()
        .map(
            |r| json!({"run": r.run, "state": r.state, "digest": r.digest, "ended_at": r.ended_at}),
        )
        .collect();
    let tested_s: Vec<String> = tested.iter().map(ToString::to_string).collect();
    if !breaks.is_empty() {
        let steps: std::collections::BTreeSet<String> = breaks
            .iter()
            .map(|b| {
                format!(
                    "run {} step `{}` ({} on {})",
                    b["run"],
                    b["step"].as_str().unwrap_or_default(),
                    b["action"].as_str().unwrap_or_default(),
                    b["resource"].as_str().unwrap_or_default()
                )
            })
            .collect();
        let summary = format!(
            "needed: removing {} would break {}",
            tested_s.join(" "),
            steps.into_iter().take(10).collect::<Vec<_>>().join(", ")
        );
        return (
            NEEDED,
            json!({"summary": summary, "tested": tested_s, "would_break": breaks, "runs": runs_seen, "runs_holding": holding_runs}),
        );
    }
    if holding_runs >= min_runs {
        let summary = format!(
            "removable: {} of the last {} ended runs held {} and none used it",
            holding_runs,
            runs.len(),
            tested_s.join(" ")
        );
        (
            REMOVABLE,
            json!({"summary": summary, "tested": tested_s, "would_break": [], "runs": runs_seen, "runs_holding": holding_runs}),
        )
    } else {
        let summary = format!(
            "unknown: only {} ended run(s) held {}, {} needed; none used it so far",
            holding_runs,
            tested_s.join(" "),
            min_runs
        );
        (
            UNKNOWN,
            json!({"summary": summary, "tested": tested_s, "would_break": [], "runs": runs_seen, "runs_holding": holding_runs}),
        )
    }
}

/// The verdict once a canary run ended: it succeeded without the scopes
/// (removable), or it failed after being denied them (needed); a failure
/// that never asked for them says nothing (unknown).
pub fn canary_verdict(
    run: i64,
    state: &str,
    denied: u64,
    tested: &[String],
) -> (&'static str, String) {
    let scopes = tested.join(" ");
    match (state, denied) {
        ("succeeded", 0) => (
            REMOVABLE,
            format!(
                "removable: canary run {run} succeeded without {scopes} and never asked for it"
            ),
        ),
        ("succeeded", n) => (
            REMOVABLE,
            format!(
                "removable: canary run {run} succeeded although {n} request(s) for {scopes} were denied"
            ),
        ),
        (s, 0) => (
            UNKNOWN,
            format!("unknown: canary run {run} ended {s} without asking for {scopes}"),
        ),
        (s, n) => (
            NEEDED,
            format!(
                "needed: canary run {run} ended {s} after {n} request(s) for {scopes} were denied"
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leash_store::UsageRunTotal;

    fn run(id: i64, tokens: &[(&str, &[&str])], uses: &[(&str, &str, &str, &str)]) -> RunUsage {
        RunUsage {
            run: id,
            state: "succeeded".into(),
            started_at: 0,
            ended_at: Some(1),
            digest: "d".into(),
            tokens: tokens
                .iter()
                .map(|(t, s)| (t.to_string(), s.iter().map(|x| x.to_string()).collect()))
                .collect(),
            uses: uses
                .iter()
                .map(|(t, step, action, resource)| UsageRunTotal {
                    token_id: t.to_string(),
                    run: id.to_string(),
                    step: step.to_string(),
                    action: action.to_string(),
                    resource: resource.to_string(),
                    count: 2,
                    first_at: 0,
                    last_at: 1,
                })
                .collect(),
        }
    }

    fn scopes(s: &[&str]) -> Vec<Scope> {
        s.iter().filter_map(|x| x.parse().ok()).collect()
    }

    #[test]
    fn a_scope_used_in_one_run_is_needed_with_its_step() {
        let runs = vec![
            run(
                3,
                &[("tok_3", &["repo:read", "repo:write"])],
                &[("tok_3", "push", "write", "repo:acme/api")],
            ),
            run(
                2,
                &[("tok_2", &["repo:read", "repo:write"])],
                &[("tok_2", "clone", "read", "repo:acme/api")],
            ),
        ];
        let (v, e) = dry_run(&scopes(&["repo:write"]), &runs, 2);
        assert_eq!(v, NEEDED);
        assert_eq!(e["would_break"][0]["run"], 3);
        assert_eq!(e["would_break"][0]["step"], "push");
        // the read scope: used in both runs
        assert_eq!(dry_run(&scopes(&["repo:read"]), &runs, 2).0, NEEDED);
    }

    #[test]
    fn a_scope_never_used_is_removable_only_with_enough_runs() {
        let runs = vec![
            run(
                3,
                &[("tok_3", &["repo:read", "repo:write"])],
                &[("tok_3", "clone", "read", "repo:acme/api")],
            ),
            run(2, &[("tok_2", &["repo:read", "repo:write"])], &[]),
        ];
        assert_eq!(dry_run(&scopes(&["repo:write"]), &runs, 2).0, REMOVABLE);
        assert_eq!(dry_run(&scopes(&["repo:write"]), &runs, 3).0, UNKNOWN);
        assert_eq!(dry_run(&scopes(&["repo:write"]), &[], 1).0, UNKNOWN);
    }

    #[test]
    fn a_use_another_kept_scope_covers_does_not_break() {
        // repo:acme/api:write is tested; repo:write stays and covers the push
        let runs = vec![run(
            1,
            &[("tok_1", &["repo:write", "repo:acme/api:write"])],
            &[("tok_1", "push", "write", "repo:acme/api")],
        )];
        assert_eq!(
            dry_run(&scopes(&["repo:acme/api:write"]), &runs, 1).0,
            REMOVABLE
        );
    }

    #[test]
    fn canary_outcomes() {
        let t = vec!["repo:write".to_string()];
        assert_eq!(canary_verdict(1, "succeeded", 0, &t).0, REMOVABLE);
        assert_eq!(canary_verdict(1, "succeeded", 3, &t).0, REMOVABLE);
        assert_eq!(canary_verdict(1, "failed", 2, &t).0, NEEDED);
        assert_eq!(canary_verdict(1, "failed", 0, &t).0, UNKNOWN);
    }
}
