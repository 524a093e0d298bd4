//! The per-use review rules: each use of a token is compared with what the
//! token is for (its declared workloads, tools, scopes and run) and with its
//! usual set (what its first uses showed).
//!
//! - **unexpected path**: used from a workload other than the one it is bound
//!   to or declared for; from a tool its workflow does not declare; on a
//!   resource no scope of it covers; after its run ended; or — for a token
//!   with nothing declared — from a tool or on a resource outside the set its
//!   first [`RuleSettings::learn_events`] uses showed.
//! - **shared credential**: one secret used by two or more workloads or apps.
//! - **human use**: a workload's token used from an interactive client.
//!
//! Each (kind, what, value) is reported once per token while the server
//! runs; the store keeps one open finding per token and kind and adds new
//! evidence items to it.

use std::collections::HashSet;

use leash_core::Severity;
use leash_core::scope::Scope;
use leash_review::logs::UsageEvent;
use leash_store::{NewFinding, UsageSubject, scope_allows};
use serde_json::json;

/// Thresholds of the per-use rules.
#[derive(Debug, Clone, Copy)]
pub struct RuleSettings {
    /// Uses that make a token's usual set (for tokens with nothing declared).
    pub learn_events: u64,
}

impl Default for RuleSettings {
    fn default() -> Self {
        Self { learn_events: 20 }
    }
}

/// What a token's use has shown so far.
#[derive(Debug, Default)]
pub struct SeenState {
    pub workloads: HashSet<String>,
    pub tools: HashSet<String>,
    pub resources: HashSet<String>,
    pub events: u64,
    reported: HashSet<(&'static str, String)>,
    scopes: Vec<Scope>,
}

impl SeenState {
    pub fn from_subject(s: &UsageSubject) -> Self {
        Self {
            workloads: s.seen_workloads.iter().cloned().collect(),
            tools: s.seen_tools.iter().cloned().collect(),
            resources: s.seen_resources.iter().cloned().collect(),
            events: s.seen_events,
            reported: HashSet::new(),
            scopes: s.scopes.iter().filter_map(|x| x.parse().ok()).collect(),
        }
    }
}

/// A logged workload as the registry names it (an identity maps to its workload's name).
pub fn canonical_workload(s: &UsageSubject, observed: &str) -> String {
    s.identities
        .iter()
        .find(|(id, _)| id == observed)
        .map(|(_, name)| name.clone())
        .unwrap_or_else(|| observed.to_owned())
}

fn item(ev: &UsageEvent, what: &str, value: &str) -> serde_json::Value {
    json!({"what": what, "value": value, "at": ev.at, "line": ev.line,
           "workload": ev.workload, "tool": ev.tool, "resource": ev.resource, "run": ev.run, "step": ev.step})
}

/// Findings this use raises (new facts only).
pub fn check(
    settings: &RuleSettings,
    s: &UsageSubject,
    st: &mut SeenState,
    ev: &UsageEvent,
) -> Vec<NewFinding> {
    let mut out = Vec::new();
    let mut unexpected: Vec<(serde_json::Value, Severity)> = Vec::new();
    let learned = st.events >= settings.learn_events;
    let first = |st: &mut SeenState, kind: &'static str, value: &str| {
        st.reported.insert((kind, value.to_owned()))
    };
    // workload
    if let Some(observed) = ev.workload.as_deref() {
        // most uses name the workload as it is registered: no allocation then
        let known = st.workloads.contains(observed);
        let w = if known {
            observed.to_owned()
        } else {
            canonical_workload(s, observed)
        };
        if !s.workloads.is_empty() && !s.workloads.contains(&w) && first(st, "workload", &w) {
            unexpected.push((item(ev, "workload", &w), Severity::High));
        }
        let new_workload = !known && st.workloads.insert(w.clone());
        if new_workload && st.workloads.len() >= 2 {
            let mut ws: Vec<&String> = st.workloads.iter().collect();
            ws.sort();
            out.push(NewFinding {
                kind: "shared_credential".into(),
                severity: Severity::High,
                subject: s.subject.clone(),
                owner_id: s.owner_id,
                summary: format!(
                    "{} is used by {} workloads or apps ({}): one leak exposes all of them. Give each its own credential.",
                    s.subject,
                    ws.len(),
                    ws.iter().map(|w| format!("`{w}`")).collect::<Vec<_>>().join(", ")
                ),
                evidence: json!({
                    "workloads": ws,
                    "declared_workloads": s.workloads,
                    "blast_radius": {"workloads": ws, "scopes": s.scopes},
                    "items": [item(ev, "workload", &w)],
                }),
            });
        }
    }
    // tool
    if let Some(t) = ev.tool.as_deref() {
        if !s.tools.is_empty() {
            if !s.tools.iter().any(|d| d == t) && first(st, "tool", t) {
                unexpected.push((item(ev, "undeclared tool", t), Severity::High));
            }
        } else if learned && !st.tools.contains(t) && first(st, "tool", t) {
            unexpected.push((item(ev, "tool outside its usual set", t), Severity::Medium));
        }
        if st.tools.len() < 256 && !st.tools.contains(t) {
            st.tools.insert(t.to_owned());
        }
    }
    // resource
    if let Some(r) = ev.resource.as_deref() {
        let leash_scopes = !st.scopes.is_empty() && s.external_id.is_none();
        if leash_scopes {
            let covered = st.scopes.iter().any(|sc| match ev.action.as_deref() {
                Some(a) => scope_allows(sc, r, a),
                None => scope_allows(sc, r, sc.action()),
            });
            if !covered && first(st, "resource", r) {
                unexpected.push((item(ev, "resource outside its scopes", r), Severity::High));
            }
        } else if learned && !st.resources.contains(r) && first(st, "resource", r) {
            unexpected.push((
                item(ev, "resource outside its usual set", r),
                Severity::Medium,
            ));
        }
        if st.resources.len() < 256 && !st.resources.contains(r) {
            st.resources.insert(r.to_owned());
        }
    }
    // after the run
    if let Some(end) = s.run_ended_at
        && ev.at > end
        && first(st, "after_run", "")
    {
        unexpected.push((
            item(ev, "after its run ended", &end.to_string()),
            Severity::High,
        ));
    }
    if !unexpected.is_empty() {
        let severity = unexpected
            .iter()
            .map(|(_, s)| *s)
            .max_by_key(|s| s.rank())
            .unwrap_or(Severity::Medium);
        let whats: Vec<String> = unexpected
            .iter()
            .map(|(i, _)| {
                format!(
                    "{} `{}`",
                    i["what"].as_str().unwrap_or_default(),
                    i["value"].as_str().unwrap_or_default()
                )
            })
            .collect();
        out.push(NewFinding {
            kind: "unexpected_path".into(),
            severity,
            subject: s.subject.clone(),
            owner_id: s.owner_id,
            summary: format!(
                "{} was used on an unexpected path: {}. Check who used it and why.",
                s.subject,
                whats.join("; ")
            ),
            evidence: json!({
                "declared": {"workloads": s.workloads, "tools": s.tools, "scopes": s.scopes, "run": s.run},
                "items": unexpected.into_iter().map(|(i, _)| i).collect::<Vec<_>>(),
            }),
        });
    }
    // a person using a workload's token
    if ev.interactive
        && s.workload_token
        && first(st, "human", ev.client.as_deref().unwrap_or_default())
    {
        out.push(NewFinding {
            kind: "human_use".into(),
            severity: Severity::High,
            subject: s.subject.clone(),
            owner_id: s.owner_id,
            summary: format!(
                "{}, a workload's token, was used from an interactive client ({}): a person holds it. Revoke it and give the person their own access.",
                s.subject,
                ev.client.as_deref().unwrap_or("marked interactive")
            ),
            evidence: json!({"items": [item(ev, "interactive client", ev.client.as_deref().unwrap_or("interactive"))]}),
        });
    }
    st.events += 1;
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use leash_review::logs::TokenRef;

    fn leash_token() -> UsageSubject {
        UsageSubject {
            subject: "tok_a".into(),
            owner_id: Some(1),
            workloads: vec!["triage-bot".into()],
            identities: vec![("spiffe://acme/triage".into(), "triage-bot".into())],
            tools: vec!["github".into()],
            scopes: vec!["repo:acme/api:read".into(), "tickets:write".into()],
            run: Some(7),
            run_ended_at: Some(10_000),
            workload_token: true,
            ..Default::default()
        }
    }

    fn ev(at: i64) -> UsageEvent {
        UsageEvent {
            line: 1,
            token: TokenRef::Id("tok_a".into()),
            at,
            workload: Some("triage-bot".into()),
            tool: Some("github".into()),
            resource: Some("repo:acme/api".into()),
            action: Some("read".into()),
            run: None,
            step: None,
            client: None,
            interactive: false,
            allowed: None,
        }
    }

    fn kinds(f: &[NewFinding]) -> Vec<&str> {
        f.iter().map(|f| f.kind.as_str()).collect()
    }

    #[test]
    fn a_use_on_its_declared_path_raises_nothing() {
        let s = leash_token();
        let mut st = SeenState::from_subject(&s);
        let set = RuleSettings::default();
        assert!(check(&set, &s, &mut st, &ev(5_000)).is_empty());
        // its identity is the same workload
        let mut e = ev(5_001);
        e.workload = Some("spiffe://acme/triage".into());
        assert!(check(&set, &s, &mut st, &e).is_empty());
    }

    #[test]
    fn each_unexpected_path_is_reported_once() {
        let s = leash_token();
        let mut st = SeenState::from_subject(&s);
        let set = RuleSettings::default();
        let mut e = ev(5_000);
        e.tool = Some("shell".into());
        let f = check(&set, &s, &mut st, &e);
        assert_eq!(kinds(&f), ["unexpected_path"]);
        assert!(f[0].summary.contains("undeclared tool `shell`"));
        assert!(check(&set, &s, &mut st, &e).is_empty(), "reported once");
        let mut e = ev(5_000);
        e.resource = Some("repo:acme/secrets".into());
        assert!(
            check(&set, &s, &mut st, &e)[0]
                .summary
                .contains("outside its scopes")
        );
        // write on tickets is covered by tickets:write
        let mut e = ev(5_000);
        e.resource = Some("tickets:42".into());
        e.action = Some("write".into());
        assert!(check(&set, &s, &mut st, &e).is_empty());
        // after the run: 10_000 is the end, 10_000 itself is not after
        assert!(check(&set, &s, &mut st, &ev(10_000)).is_empty());
        assert!(
            check(&set, &s, &mut st, &ev(10_001))[0]
                .summary
                .contains("after its run ended")
        );
    }

    #[test]
    fn a_second_workload_is_shared_use_and_an_unexpected_path() {
        let s = leash_token();
        let mut st = SeenState::from_subject(&s);
        let set = RuleSettings::default();
        check(&set, &s, &mut st, &ev(1));
        let mut e = ev(2);
        e.workload = Some("deploy-bot".into());
        let f = check(&set, &s, &mut st, &e);
        let mut k = kinds(&f);
        k.sort();
        assert_eq!(k, ["shared_credential", "unexpected_path"]);
    }

    #[test]
    fn usual_sets_apply_after_the_learning_uses_only() {
        let s = UsageSubject {
            subject: "external:ci-key".into(),
            external_id: Some(3),
            workload_token: true,
            ..Default::default()
        };
        let mut st = SeenState::from_subject(&s);
        let set = RuleSettings { learn_events: 3 };
        for (i, r) in ["s3:a", "s3:b", "s3:a"].iter().enumerate() {
            let mut e = ev(i as i64);
            e.workload = None;
            e.tool = None;
            e.resource = Some((*r).into());
            assert!(check(&set, &s, &mut st, &e).is_empty(), "still learning");
        }
        let mut e = ev(9);
        e.workload = None;
        e.tool = None;
        e.resource = Some("s3:b".into());
        assert!(
            check(&set, &s, &mut st, &e).is_empty(),
            "near miss: seen while learning"
        );
        e.resource = Some("s3:payroll".into());
        let f = check(&set, &s, &mut st, &e);
        assert!(f[0].summary.contains("outside its usual set"));
    }

    #[test]
    fn interactive_use_of_a_workload_token_is_human_use() {
        let s = leash_token();
        let mut st = SeenState::from_subject(&s);
        let set = RuleSettings::default();
        let mut e = ev(1);
        e.client = Some("curl/8.5".into());
        assert!(
            check(&set, &s, &mut st, &e).is_empty(),
            "curl is automation"
        );
        e.client = Some("Mozilla/5.0".into());
        e.interactive = true;
        assert_eq!(kinds(&check(&set, &s, &mut st, &e)), ["human_use"]);
        // a person's own key is not a workload's token
        let person = UsageSubject {
            subject: "external:alice-pat".into(),
            external_id: Some(1),
            workload_token: false,
            ..Default::default()
        };
        let mut st = SeenState::from_subject(&person);
        assert!(check(&set, &person, &mut st, &e).is_empty());
    }
}
