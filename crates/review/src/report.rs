//! The controls-evidence report behind `leash report --format json|md|html`.
//!
//! The server counts (tokens, owners, exposures, findings, usage); this module
//! holds the numbers as plain data ([`Report`]), decides whether each control
//! of the design's standards table holds ([`evaluate`]) and renders the whole
//! report as Markdown ([`render_markdown`]) or as one self-contained HTML page
//! with inline SVG charts ([`render_html`]).
//!
//! The key design choice: the JSON form of [`Report`] (serde defaults, snake
//! case, `status` as `"pass"`/`"fail"`) is the documented, stable output of
//! `leash report --format json`; Markdown and HTML are views of that same
//! value, so the three formats cannot disagree. Every verdict carries an
//! evidence sentence with the numbers behind it, so an auditor can check the
//! rule instead of trusting a green tick.
//!
//! ```
//! use leash_review::report::{evaluate, render_html, render_markdown, ControlStatus, Report};
//!
//! let json = r#"{
//!   "generated_at": "2026-11-02T09:00:00Z",
//!   "tokens": {"leash_live": 400, "leash_total": 1200, "external_active": 0,
//!              "external_total": 3, "run_bound_live": 400, "over_ttl_cap_live": 0,
//!              "workload_bound_live": 400},
//!   "signals": {
//!     "owner_coverage": {"numerator": 390, "denominator": 400},
//!     "write_ratio": {"numerator": 48, "denominator": 400},
//!     "write_max_ratio": 0.2,
//!     "write_justified": {"numerator": 48, "denominator": 48},
//!     "write_approved": {"numerator": 48, "denominator": 48},
//!     "exposures": {"revocable": 5, "revoked_automatically": 5,
//!                   "median_ms": 120, "p95_ms": 800, "target_ms": 1000}
//!   },
//!   "questions": {
//!     "owner": {"numerator": 390, "denominator": 400},
//!     "workload": {"numerator": 400, "denominator": 400},
//!     "privileges": {"numerator": 400, "denominator": 400},
//!     "revocation": {"numerator": 400, "denominator": 400}
//!   },
//!   "churn": {"threshold_hours": 24.0, "chains_over_threshold": 0, "longest": []},
//!   "findings": [{"kind": "shadow_ownership", "open": 0, "acknowledged": 1, "resolved": 4}],
//!   "removal_tests": [{"id": 1, "target": "tok_1", "verdict": "removable",
//!                      "summary": "no call failed", "at": "2026-11-01T12:00:00Z"}],
//!   "usage": {"decisions": 1234, "denied": 56, "log_events": 1000, "unknown_refs": 3},
//!   "break_glass": {"total": 2, "live": 0, "overdue": 0},
//!   "controls": []
//! }"#;
//! let mut report: Report = serde_json::from_str(json)?;
//! report.controls = evaluate(&report);
//!
//! // 390 of 400 live tokens have an owner: the first control fails.
//! assert_eq!(report.controls[0].id, "named-owner");
//! assert_eq!(report.controls[0].status, ControlStatus::Fail);
//! assert!(report.controls[0].evidence.contains("97.5 % (390 / 400)"));
//!
//! assert!(render_markdown(&report).contains("| named owner for every token | FAIL |"));
//! assert!(render_html(&report).starts_with("<!doctype html>"));
//! # Ok::<(), serde_json::Error>(())
//! ```

use std::borrow::Cow;
use std::fmt::{self, Write};

use serde::{Deserialize, Serialize};

/// A count out of a population, e.g. 390 tokens with an owner out of 400.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ratio {
    /// How many members of the population satisfy the property.
    pub numerator: u64,
    /// The size of the population.
    pub denominator: u64,
}

impl Ratio {
    /// The share as a number from 0 to 1, or `None` for an empty population.
    pub fn share(&self) -> Option<f64> {
        if self.denominator == 0 {
            None
        } else {
            Some(self.numerator as f64 / self.denominator as f64)
        }
    }

    /// Whether every member satisfies the property (true for 0 / 0: nothing
    /// falls short).
    pub fn is_complete(&self) -> bool {
        self.numerator == self.denominator
    }
}

/// The whole report: the numbers the server computed, and the verdicts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// When the report was computed (RFC 3339), as given by the caller.
    pub generated_at: String,
    /// Token counts.
    pub tokens: TokenTotals,
    /// The three signals of the whole estate.
    pub signals: Signals,
    /// Coverage of the four questions over live tokens (Leash live + active
    /// external).
    pub questions: Questions,
    /// Reissue churn: chains of tokens reissued to stretch a short TTL.
    pub churn: Churn,
    /// Findings by kind, sorted by kind.
    pub findings: Vec<FindingCount>,
    /// The latest verdict of each removal test.
    pub removal_tests: Vec<RemovalRow>,
    /// Request-time decisions and correlated workload logs.
    pub usage: UsageTotals,
    /// Break-glass grants.
    pub break_glass: BreakGlass,
    /// The controls' verdicts, filled by [`evaluate`].
    pub controls: Vec<ControlResult>,
}

/// Token counts. "Live" means neither revoked nor expired.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenTotals {
    /// Live tokens Leash minted.
    pub leash_live: u64,
    /// Every token Leash minted.
    pub leash_total: u64,
    /// Imported third-party credentials still active.
    pub external_active: u64,
    /// Every imported third-party credential.
    pub external_total: u64,
    /// Live Leash tokens bound to a run (a task).
    pub run_bound_live: u64,
    /// Live Leash tokens whose TTL is above their environment's cap.
    pub over_ttl_cap_live: u64,
    /// Live Leash tokens bound to a workload identity.
    pub workload_bound_live: u64,
}

/// The three signals: every token has a named owner; write scopes are rare and
/// justified; exposure triggers automated revocation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signals {
    /// Live tokens with an active named owner / live tokens.
    pub owner_coverage: Ratio,
    /// Write-capable live tokens / live Leash tokens.
    pub write_ratio: Ratio,
    /// The highest write ratio the operator accepts (e.g. 0.2).
    pub write_max_ratio: f64,
    /// Write-capable live tokens with a justification / write-capable live
    /// tokens.
    pub write_justified: Ratio,
    /// Write-capable live tokens approved by an owner (or break-glass
    /// approved) / write-capable live tokens.
    pub write_approved: Ratio,
    /// Exposures and how they were revoked.
    pub exposures: ExposureSignal,
}

/// Exposures of revocable secrets and the detection-to-revocation latency.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExposureSignal {
    /// Exposures of a secret Leash can revoke.
    pub revocable: u64,
    /// Of those, how many Leash revoked by itself.
    pub revoked_automatically: u64,
    /// Median detection-to-revocation latency, when any was measured.
    pub median_ms: Option<u64>,
    /// 95th percentile detection-to-revocation latency, when any was measured.
    pub p95_ms: Option<u64>,
    /// The latency target (e.g. 1000 ms).
    pub target_ms: u64,
}

/// Coverage of the four questions over live tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Questions {
    /// Who owns it?
    pub owner: Ratio,
    /// What workload does it serve?
    pub workload: Ratio,
    /// What privileges does it have?
    pub privileges: Ratio,
    /// What event revokes it?
    pub revocation: Ratio,
}

/// Reissue churn: short-lived tokens reissued back to back so that, together,
/// they live as long as a long-lived one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Churn {
    /// The effective lifetime above which a chain counts as churn.
    pub threshold_hours: f64,
    /// Chains whose effective lifetime is above the threshold.
    pub chains_over_threshold: u64,
    /// The longest chains (up to 10), longest first.
    pub longest: Vec<ChurnChain>,
}

/// One chain of reissued tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChurnChain {
    /// The workload the chain serves.
    pub workload: String,
    /// The chain's scopes.
    pub scopes: Vec<String>,
    /// How many tokens the chain holds.
    pub tokens: u64,
    /// From the first issue to the last expiry, in hours.
    pub effective_hours: f64,
    /// When the first token was issued (RFC 3339).
    pub first_issued: String,
    /// When the last token expires (RFC 3339).
    pub last_expires: String,
}

/// Findings of one kind, by status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FindingCount {
    /// The finding kind, e.g. `shared_credential`.
    pub kind: String,
    /// Not yet looked at.
    pub open: u64,
    /// Looked at and accepted, not fixed.
    pub acknowledged: u64,
    /// Fixed.
    pub resolved: u64,
}

/// The latest verdict of one removal test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemovalRow {
    /// The test's id.
    pub id: i64,
    /// What was tested (a token or a scope).
    pub target: String,
    /// `removable`, `needed` or `unknown`.
    pub verdict: String,
    /// What the test saw.
    pub summary: String,
    /// When the verdict was reached (RFC 3339).
    pub at: String,
}

/// Request-time decisions and workload logs correlated with them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageTotals {
    /// Authorization decisions made at request time.
    pub decisions: u64,
    /// Of those, how many were denials.
    pub denied: u64,
    /// Workload log events correlated with usage.
    pub log_events: u64,
    /// Log events that referenced a token Leash does not know.
    pub unknown_refs: u64,
}

/// Break-glass grants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BreakGlass {
    /// Every break-glass grant.
    pub total: u64,
    /// Grants still live.
    pub live: u64,
    /// Live grants past their TTL.
    pub overdue: u64,
}

/// The verdict on one control, with its evidence and the standards it maps to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlResult {
    /// A stable slug, e.g. `named-owner`.
    pub id: String,
    /// The control's name as in the design's standards table.
    pub control: String,
    /// Whether the control holds.
    pub status: ControlStatus,
    /// One or two sentences with the numbers behind the verdict.
    pub evidence: String,
    /// OWASP Non-Human Identities Top 10 (2025).
    pub owasp_nhi: Vec<StandardRef>,
    /// OWASP Top 10 for Agentic Applications (2026).
    pub owasp_agentic: Vec<StandardRef>,
    /// NIST Cybersecurity Framework 2.0.
    pub nist_csf: Vec<StandardRef>,
    /// NIST SP 800-53 revision 5.
    pub nist_800_53: Vec<StandardRef>,
}

/// An item of a standard, with the legacy labels it is also cited by.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StandardRef {
    /// The current, official identifier, e.g. `NHI7`.
    pub id: String,
    /// Legacy labels for the same item, e.g. `NHI-03`.
    pub aliases: Vec<String>,
}

/// Whether a control holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ControlStatus {
    /// The control holds.
    Pass,
    /// The control does not hold.
    Fail,
}

impl ControlStatus {
    fn from_pass(pass: bool) -> Self {
        if pass { Self::Pass } else { Self::Fail }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Pass => "PASS",
            Self::Fail => "FAIL",
        }
    }

    fn class(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Fail => "fail",
        }
    }
}

// ---------------------------------------------------------------------------
// Controls
// ---------------------------------------------------------------------------

/// Finding kinds some controls look at.
const SHARED_CREDENTIAL: &str = "shared_credential";
const SHADOW_OWNERSHIP: &str = "shadow_ownership";
const REISSUE_CHURN: &str = "reissue_churn";

/// A reference to a standard's item in the static table below.
struct Ref {
    id: &'static str,
    alias: Option<&'static str>,
}

const fn r(id: &'static str) -> Ref {
    Ref { id, alias: None }
}

const fn aliased(id: &'static str, alias: &'static str) -> Ref {
    Ref {
        id,
        alias: Some(alias),
    }
}

/// What a check concludes.
struct Verdict {
    pass: bool,
    evidence: String,
}

/// One row of the design's standards table, with the check that decides it.
struct ControlDef {
    id: &'static str,
    control: &'static str,
    check: fn(&Report) -> Verdict,
    owasp_nhi: &'static [Ref],
    owasp_agentic: &'static [Ref],
    nist_csf: &'static [Ref],
    nist_800_53: &'static [Ref],
}

/// The design's "Standards the evidence report maps to" table, in its order.
const CONTROLS: [ControlDef; 12] = [
    ControlDef {
        id: "named-owner",
        control: "named owner for every token",
        check: check_named_owner,
        owasp_nhi: &[r("NHI1"), r("NHI10")],
        owasp_agentic: &[r("ASI03")],
        nist_csf: &[r("GV.RR-02"), r("PR.AA-01"), r("ID.AM-02")],
        nist_800_53: &[r("AC-2b"), r("AC-2e")],
    },
    ControlDef {
        id: "write-scopes",
        control: "write scopes rare and justified",
        check: check_write_scopes,
        owasp_nhi: &[r("NHI5")],
        owasp_agentic: &[r("ASI02"), r("ASI03")],
        nist_csf: &[r("PR.AA-05")],
        nist_800_53: &[r("AC-6"), r("AC-2e")],
    },
    ControlDef {
        id: "exposure-revocation",
        control: "automated revocation on exposure",
        check: check_exposure_revocation,
        owasp_nhi: &[r("NHI2")],
        owasp_agentic: &[r("ASI03")],
        nist_csf: &[r("RS.MI-01"), r("PR.AA-01"), r("DE.CM-09")],
        nist_800_53: &[r("IA-5d"), r("IA-5f"), r("AC-2(3)")],
    },
    ControlDef {
        id: "short-ttl",
        control: "short TTL, per-task issuance",
        check: check_short_ttl,
        owasp_nhi: &[aliased("NHI7", "NHI-03")],
        owasp_agentic: &[r("ASI03")],
        nist_csf: &[r("PR.AA-01"), r("PR.AA-05")],
        nist_800_53: &[r("IA-5f"), r("AC-2(2)")],
    },
    ControlDef {
        id: "workload-binding",
        control: "workload identity binding",
        check: check_workload_binding,
        owasp_nhi: &[r("NHI4"), r("NHI6"), r("NHI9")],
        owasp_agentic: &[r("ASI03"), r("ASI07")],
        nist_csf: &[r("PR.AA-02"), r("PR.AA-03"), r("PR.AA-04")],
        nist_800_53: &[r("IA-9"), r("IA-13")],
    },
    ControlDef {
        id: "request-time-policy",
        control: "request-time policy evaluation",
        check: check_request_time_policy,
        owasp_nhi: &[r("NHI5"), r("NHI6")],
        owasp_agentic: &[aliased("ASI03", "AGENT-04"), r("ASI02")],
        nist_csf: &[aliased("PR.AA-05", "PR.AC-4")],
        nist_800_53: &[r("AC-3"), r("AC-2(6)"), r("AC-2(11)")],
    },
    ControlDef {
        id: "usage-log-correlation",
        control: "usage correlated with workload logs",
        check: check_usage_log_correlation,
        owasp_nhi: &[r("NHI10"), r("NHI1")],
        owasp_agentic: &[r("ASI10"), r("ASI03")],
        nist_csf: &[r("DE.CM-03"), r("DE.CM-09"), r("DE.AE-03"), r("PR.PS-04")],
        nist_800_53: &[r("AC-2g"), r("AC-2(12)"), r("AU-6(3)")],
    },
    ControlDef {
        id: "removability-test",
        control: "removability test",
        check: check_removability_test,
        owasp_nhi: &[r("NHI1")],
        owasp_agentic: &[r("ASI08")],
        nist_csf: &[r("ID.AM-08"), r("PR.AA-05")],
        nist_800_53: &[r("AC-2(3)"), r("AC-2j")],
    },
    ControlDef {
        id: "break-glass",
        control: "break-glass time-boxed and logged",
        check: check_break_glass,
        owasp_nhi: &[r("NHI10"), r("NHI5")],
        owasp_agentic: &[r("ASI03")],
        nist_csf: &[r("PR.AA-03"), r("PR.PS-04")],
        nist_800_53: &[r("AC-2(2)"), r("AC-6(9)")],
    },
    ControlDef {
        id: "shadow-ownership",
        control: "shadow ownership detection",
        check: check_shadow_ownership,
        owasp_nhi: &[r("NHI1"), r("NHI10")],
        owasp_agentic: &[r("ASI03"), r("ASI10")],
        nist_csf: &[r("ID.AM-02"), r("GV.RR-02")],
        nist_800_53: &[r("AC-2(3)"), r("AC-2g")],
    },
    ControlDef {
        id: "reissue-churn",
        control: "reissue-churn detection",
        check: check_reissue_churn,
        owasp_nhi: &[r("NHI7"), r("NHI2")],
        owasp_agentic: &[r("ASI03")],
        nist_csf: &[r("DE.CM-09"), r("DE.AE-03")],
        nist_800_53: &[r("AC-2(12)"), r("IA-5f")],
    },
    ControlDef {
        id: "shared-token-blast-radius",
        control: "shared-token blast radius",
        check: check_shared_token_blast_radius,
        owasp_nhi: &[r("NHI9"), r("NHI8")],
        owasp_agentic: &[r("ASI08"), r("ASI03")],
        nist_csf: &[r("PR.AA-02"), r("ID.RA-04")],
        nist_800_53: &[r("AC-2(9)"), r("IA-5i")],
    },
];

fn standard_refs(refs: &[Ref]) -> Vec<StandardRef> {
    refs.iter()
        .map(|r| StandardRef {
            id: r.id.to_string(),
            aliases: r.alias.iter().map(|a| (*a).to_string()).collect(),
        })
        .collect()
}

/// Decides the twelve controls of the design's standards table, in its order,
/// each mapped to exactly the standard IDs of its row (legacy labels as
/// aliases: `NHI7` alias `NHI-03` on "short TTL, per-task issuance"; `ASI03`
/// alias `AGENT-04` and `PR.AA-05` alias `PR.AC-4` on "request-time policy
/// evaluation").
///
/// A control passes when:
///
/// 1. `named-owner` — `signals.owner_coverage` is complete.
/// 2. `write-scopes` — `signals.write_ratio` is at most
///    `signals.write_max_ratio` (or there are no live Leash tokens), and
///    `write_justified` and `write_approved` are complete.
/// 3. `exposure-revocation` — every revocable exposure was revoked
///    automatically, and the p95 detection-to-revocation latency is at most
///    `target_ms`; with no p95 measured, only when there were no revocable
///    exposures.
/// 4. `short-ttl` — no live token is above its TTL cap and every live Leash
///    token is bound to a run (`run_bound_live == leash_live`).
/// 5. `workload-binding` — every live Leash token is bound to a workload
///    identity and no `shared_credential` finding is open.
/// 6. `request-time-policy` — at least one request-time decision was made.
/// 7. `usage-log-correlation` — at least one workload log event was
///    correlated, and references to unknown tokens are at most 1 % of them.
/// 8. `removability-test` — at least one removal test reached a verdict
///    (`removable` or `needed`; `unknown` and unrecognised verdicts do not
///    count).
/// 9. `break-glass` — no live break-glass grant is past its TTL.
/// 10. `shadow-ownership` — no `shadow_ownership` finding is open.
/// 11. `reissue-churn` — no chain is over the churn threshold and no
///     `reissue_churn` finding is open.
/// 12. `shared-token-blast-radius` — no `shared_credential` finding is open.
///
/// "Open" is [`FindingCount::open`] summed over the rows of that kind; a kind
/// with no row counts 0. Every evidence string states the numbers behind its
/// verdict.
pub fn evaluate(report: &Report) -> Vec<ControlResult> {
    CONTROLS
        .iter()
        .map(|def| {
            let verdict = (def.check)(report);
            ControlResult {
                id: def.id.to_string(),
                control: def.control.to_string(),
                status: ControlStatus::from_pass(verdict.pass),
                evidence: verdict.evidence,
                owasp_nhi: standard_refs(def.owasp_nhi),
                owasp_agentic: standard_refs(def.owasp_agentic),
                nist_csf: standard_refs(def.nist_csf),
                nist_800_53: standard_refs(def.nist_800_53),
            }
        })
        .collect()
}

/// Findings of one kind, summed over its rows: (open, acknowledged, resolved).
fn findings_of(report: &Report, kind: &str) -> (u64, u64, u64) {
    report
        .findings
        .iter()
        .filter(|f| f.kind == kind)
        .fold((0, 0, 0), |(o, a, r), f| {
            (
                o.saturating_add(f.open),
                a.saturating_add(f.acknowledged),
                r.saturating_add(f.resolved),
            )
        })
}

fn findings_sentence(report: &Report, kind: &str) -> (u64, String) {
    let (open, acknowledged, resolved) = findings_of(report, kind);
    (
        open,
        format!("{open} open {kind} findings ({acknowledged} acknowledged, {resolved} resolved)"),
    )
}

fn check_named_owner(report: &Report) -> Verdict {
    let coverage = &report.signals.owner_coverage;
    Verdict {
        pass: coverage.is_complete(),
        evidence: format!(
            "Live tokens with an active named owner: {}.",
            ratio_text(coverage, Round::Down)
        ),
    }
}

fn check_write_scopes(report: &Report) -> Verdict {
    let s = &report.signals;
    let within = match s.write_ratio.share() {
        None => true,
        Some(share) => share <= s.write_max_ratio,
    };
    let pass = within && s.write_justified.is_complete() && s.write_approved.is_complete();
    Verdict {
        pass,
        evidence: format!(
            "Write-capable: {} of live Leash tokens (limit {} %). Of those, justified {}, approved {}.",
            ratio_text(&s.write_ratio, Round::Up),
            decimal(s.write_max_ratio * 100.0, 2),
            ratio_text(&s.write_justified, Round::Down),
            ratio_text(&s.write_approved, Round::Down),
        ),
    }
}

fn check_exposure_revocation(report: &Report) -> Verdict {
    let x = &report.signals.exposures;
    let automatic = Ratio {
        numerator: x.revoked_automatically,
        denominator: x.revocable,
    };
    let fast = match x.p95_ms {
        Some(p95) => p95 <= x.target_ms,
        None => x.revocable == 0,
    };
    Verdict {
        pass: automatic.is_complete() && fast,
        evidence: format!(
            "Revoked automatically: {} of revocable exposures. Detection to revocation: p95 {}, median {}, target {} ms.",
            ratio_text(&automatic, Round::Down),
            millis(x.p95_ms),
            millis(x.median_ms),
            x.target_ms,
        ),
    }
}

fn check_short_ttl(report: &Report) -> Verdict {
    let t = &report.tokens;
    let run_bound = Ratio {
        numerator: t.run_bound_live,
        denominator: t.leash_live,
    };
    Verdict {
        pass: t.over_ttl_cap_live == 0 && run_bound.is_complete(),
        evidence: format!(
            "Bound to a run: {} of live Leash tokens. Live tokens above their TTL cap: {}.",
            ratio_text(&run_bound, Round::Down),
            t.over_ttl_cap_live,
        ),
    }
}

fn check_workload_binding(report: &Report) -> Verdict {
    let t = &report.tokens;
    let bound = Ratio {
        numerator: t.workload_bound_live,
        denominator: t.leash_live,
    };
    let (open, findings) = findings_sentence(report, SHARED_CREDENTIAL);
    Verdict {
        pass: bound.is_complete() && open == 0,
        evidence: format!(
            "Bound to a workload identity: {} of live Leash tokens; {findings}.",
            ratio_text(&bound, Round::Down),
        ),
    }
}

fn check_request_time_policy(report: &Report) -> Verdict {
    let u = &report.usage;
    Verdict {
        pass: u.decisions > 0,
        evidence: format!(
            "{} request-time decisions recorded, {} of them denied.",
            u.decisions, u.denied
        ),
    }
}

fn check_usage_log_correlation(report: &Report) -> Verdict {
    let u = &report.usage;
    // unknown_refs <= 1 % of log_events, in integers so 1 % exactly passes.
    let within = u128::from(u.unknown_refs) * 100 <= u128::from(u.log_events);
    let unknown = Ratio {
        numerator: u.unknown_refs,
        denominator: u.log_events,
    };
    Verdict {
        pass: u.log_events > 0 && within,
        evidence: format!(
            "{} workload log events correlated with usage; references to unknown tokens: {} (limit 1 %).",
            u.log_events,
            ratio_text(&unknown, Round::Up),
        ),
    }
}

fn check_removability_test(report: &Report) -> Verdict {
    let count = |verdict: &str| {
        report
            .removal_tests
            .iter()
            .filter(|t| t.verdict == verdict)
            .count()
    };
    let removable = count("removable");
    let needed = count("needed");
    let unknown = count("unknown");
    let total = report.removal_tests.len();
    let other = total - removable - needed - unknown;
    let mut evidence =
        format!("{total} removal tests: {removable} removable, {needed} needed, {unknown} unknown");
    if other > 0 {
        // Writing to a String cannot fail.
        let _ = write!(evidence, ", {other} with an unrecognised verdict");
    }
    evidence.push('.');
    Verdict {
        pass: removable + needed > 0,
        evidence,
    }
}

fn check_break_glass(report: &Report) -> Verdict {
    let b = &report.break_glass;
    Verdict {
        pass: b.overdue == 0,
        evidence: format!(
            "{} break-glass grants in total, {} live, {} live past their TTL.",
            b.total, b.live, b.overdue
        ),
    }
}

fn check_shadow_ownership(report: &Report) -> Verdict {
    let (open, findings) = findings_sentence(report, SHADOW_OWNERSHIP);
    Verdict {
        pass: open == 0,
        evidence: format!("{findings}."),
    }
}

fn check_reissue_churn(report: &Report) -> Verdict {
    let c = &report.churn;
    let (open, findings) = findings_sentence(report, REISSUE_CHURN);
    Verdict {
        pass: c.chains_over_threshold == 0 && open == 0,
        evidence: format!(
            "{} reissue chains live longer than {} h in effect; {findings}.",
            c.chains_over_threshold,
            decimal(c.threshold_hours, 2),
        ),
    }
}

fn check_shared_token_blast_radius(report: &Report) -> Verdict {
    let (open, findings) = findings_sentence(report, SHARED_CREDENTIAL);
    Verdict {
        pass: open == 0,
        evidence: format!("{findings}."),
    }
}

// ---------------------------------------------------------------------------
// Number formatting shared by the renderers
// ---------------------------------------------------------------------------

/// Which way a percentage is rounded to one decimal. Shares that should be
/// complete round down (399 / 400 never shows as 100.0 %); shares that should
/// stay under a limit round up (a hair above 20 % never shows as 20.0 %).
#[derive(Clone, Copy)]
enum Round {
    Down,
    Up,
}

/// `97.5 %`, or `None` for 0 / 0.
fn percent(numerator: u64, denominator: u64, round: Round) -> Option<String> {
    if denominator == 0 {
        return None;
    }
    let scaled = u128::from(numerator) * 1000;
    let denominator = u128::from(denominator);
    let mut tenths = scaled / denominator;
    if matches!(round, Round::Up) && scaled % denominator != 0 {
        tenths += 1;
    }
    Some(format!("{}.{} %", tenths / 10, tenths % 10))
}

/// `97.5 % (390 / 400)`, or `n/a (0 / 0)`.
fn ratio_text(ratio: &Ratio, round: Round) -> String {
    let share = percent(ratio.numerator, ratio.denominator, round);
    format!(
        "{} ({} / {})",
        share.as_deref().unwrap_or("n/a"),
        ratio.numerator,
        ratio.denominator
    )
}

/// A float with at most `places` decimals and no trailing zeros (`20`,
/// `12.5`).
fn decimal(value: f64, places: usize) -> String {
    let text = format!("{value:.places$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

fn millis(value: Option<u64>) -> String {
    value.map_or_else(|| "n/a".to_string(), |ms| format!("{ms} ms"))
}

/// The verdicts to show: the report's own, or freshly evaluated ones when the
/// caller has not filled them in.
fn controls_of(report: &Report) -> Cow<'_, [ControlResult]> {
    if report.controls.is_empty() {
        Cow::Owned(evaluate(report))
    } else {
        Cow::Borrowed(&report.controls)
    }
}

fn findings_sorted(report: &Report) -> Vec<&FindingCount> {
    let mut findings: Vec<&FindingCount> = report.findings.iter().collect();
    findings.sort_by(|a, b| a.kind.cmp(&b.kind));
    findings
}

/// The signals as labelled shares, for both renderers.
struct Share<'a> {
    label: &'static str,
    ratio: Ratio,
    round: Round,
    /// A limit to draw on the bar, as a share from 0 to 1.
    limit: Option<f64>,
    /// What the population is, e.g. "live tokens".
    of: &'a str,
}

fn signal_shares(report: &Report) -> Vec<Share<'static>> {
    let s = &report.signals;
    vec![
        Share {
            label: "Named owner",
            ratio: s.owner_coverage.clone(),
            round: Round::Down,
            limit: None,
            of: "live tokens",
        },
        Share {
            label: "Write-capable",
            ratio: s.write_ratio.clone(),
            round: Round::Up,
            limit: Some(s.write_max_ratio),
            of: "live Leash tokens",
        },
        Share {
            label: "Write justified",
            ratio: s.write_justified.clone(),
            round: Round::Down,
            limit: None,
            of: "write-capable live tokens",
        },
        Share {
            label: "Write approved",
            ratio: s.write_approved.clone(),
            round: Round::Down,
            limit: None,
            of: "write-capable live tokens",
        },
        Share {
            label: "Exposures revoked automatically",
            ratio: Ratio {
                numerator: s.exposures.revoked_automatically,
                denominator: s.exposures.revocable,
            },
            round: Round::Down,
            limit: None,
            of: "revocable exposures",
        },
    ]
}

fn question_shares(report: &Report) -> Vec<Share<'static>> {
    let q = &report.questions;
    [
        ("Who owns it?", &q.owner),
        ("What workload does it serve?", &q.workload),
        ("What privileges does it have?", &q.privileges),
        ("What event revokes it?", &q.revocation),
    ]
    .into_iter()
    .map(|(label, ratio)| Share {
        label,
        ratio: ratio.clone(),
        round: Round::Down,
        limit: None,
        of: "live tokens",
    })
    .collect()
}

fn refs_text(refs: &[StandardRef]) -> String {
    refs.iter()
        .map(|r| {
            if r.aliases.is_empty() {
                r.id.clone()
            } else {
                format!("{} (alias {})", r.id, r.aliases.join(", "))
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

// ---------------------------------------------------------------------------
// Markdown
// ---------------------------------------------------------------------------

/// Renders the report as Markdown (GitHub-flavoured tables).
///
/// Sections: summary, tokens, the three signals, the four questions, reissue
/// churn, findings by kind, removal tests, break-glass, usage and the
/// controls-evidence table. Percentages come with their fractions
/// (`97.5 % (390 / 400)`, `n/a (0 / 0)` for an empty population). Text from
/// the data is escaped so that `|`, newlines, `\`, `<` and `>` cannot break a
/// table or inject markup. When `report.controls` is empty, the controls are
/// evaluated on the fly.
pub fn render_markdown(report: &Report) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write_markdown(&mut out, report);
    out
}

/// Escapes text for Markdown, inside or outside a table cell.
fn md(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push_str("\\\\"),
            '|' => out.push_str("\\|"),
            '<' => out.push_str("\\<"),
            '>' => out.push_str("\\>"),
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                out.push_str("<br>");
            }
            '\n' => out.push_str("<br>"),
            c => out.push(c),
        }
    }
    out
}

fn write_markdown(out: &mut String, report: &Report) -> fmt::Result {
    let controls = controls_of(report);
    let passed = controls
        .iter()
        .filter(|c| c.status == ControlStatus::Pass)
        .count();

    writeln!(out, "# Leash controls-evidence report\n")?;
    writeln!(out, "Generated at {}.\n", md(&report.generated_at))?;
    write!(out, "**{passed} of {} controls pass.**", controls.len())?;
    let failing: Vec<String> = controls
        .iter()
        .filter(|c| c.status == ControlStatus::Fail)
        .map(|c| md(&c.control))
        .collect();
    if !failing.is_empty() {
        write!(out, " Failing: {}.", failing.join("; "))?;
    }
    writeln!(out, "\n")?;

    let t = &report.tokens;
    writeln!(out, "## Tokens\n")?;
    writeln!(out, "| tokens | live | total |")?;
    writeln!(out, "|---|---:|---:|")?;
    writeln!(out, "| Leash | {} | {} |", t.leash_live, t.leash_total)?;
    writeln!(
        out,
        "| External (imported) | {} | {} |\n",
        t.external_active, t.external_total
    )?;
    writeln!(
        out,
        "Of the live Leash tokens, {} are bound to a run, {} to a workload identity, and {} are above their TTL cap.\n",
        t.run_bound_live, t.workload_bound_live, t.over_ttl_cap_live
    )?;

    let s = &report.signals;
    let x = &s.exposures;
    writeln!(out, "## Three signals\n")?;
    writeln!(
        out,
        "- **Every token has a named owner:** {} of live tokens.",
        ratio_text(&s.owner_coverage, Round::Down)
    )?;
    writeln!(
        out,
        "- **Write scopes are rare and justified:** {} of live Leash tokens can write (limit {} %); justified {}, approved {}.",
        ratio_text(&s.write_ratio, Round::Up),
        decimal(s.write_max_ratio * 100.0, 2),
        ratio_text(&s.write_justified, Round::Down),
        ratio_text(&s.write_approved, Round::Down),
    )?;
    writeln!(
        out,
        "- **Exposure triggers automated revocation:** {} of revocable exposures revoked automatically; detection to revocation median {}, p95 {} (target {} ms).\n",
        ratio_text(
            &Ratio {
                numerator: x.revoked_automatically,
                denominator: x.revocable
            },
            Round::Down
        ),
        millis(x.median_ms),
        millis(x.p95_ms),
        x.target_ms,
    )?;

    writeln!(out, "## Four questions\n")?;
    writeln!(out, "| question | answered for live tokens |")?;
    writeln!(out, "|---|---|")?;
    for q in question_shares(report) {
        writeln!(out, "| {} | {} |", q.label, ratio_text(&q.ratio, q.round))?;
    }
    writeln!(out)?;

    let c = &report.churn;
    writeln!(out, "## Reissue churn\n")?;
    writeln!(
        out,
        "Chains of reissued tokens that live longer than {} h in effect: {}.\n",
        decimal(c.threshold_hours, 2),
        c.chains_over_threshold
    )?;
    if c.longest.is_empty() {
        writeln!(out, "No reissue chains recorded.\n")?;
    } else {
        writeln!(
            out,
            "| workload | scopes | tokens | effective hours | first issued | last expires |"
        )?;
        writeln!(out, "|---|---|---:|---:|---|---|")?;
        for chain in &c.longest {
            let scopes: Vec<String> = chain.scopes.iter().map(|s| md(s)).collect();
            writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                md(&chain.workload),
                scopes.join(", "),
                chain.tokens,
                decimal(chain.effective_hours, 1),
                md(&chain.first_issued),
                md(&chain.last_expires),
            )?;
        }
        writeln!(out)?;
    }

    writeln!(out, "## Findings by kind\n")?;
    let findings = findings_sorted(report);
    if findings.is_empty() {
        writeln!(out, "No findings.\n")?;
    } else {
        writeln!(out, "| kind | open | acknowledged | resolved |")?;
        writeln!(out, "|---|---:|---:|---:|")?;
        for f in findings {
            writeln!(
                out,
                "| {} | {} | {} | {} |",
                md(&f.kind),
                f.open,
                f.acknowledged,
                f.resolved
            )?;
        }
        writeln!(out)?;
    }

    writeln!(out, "## Removal tests\n")?;
    if report.removal_tests.is_empty() {
        writeln!(out, "No removal tests recorded.\n")?;
    } else {
        writeln!(out, "| id | target | verdict | summary | at |")?;
        writeln!(out, "|---:|---|---|---|---|")?;
        for t in &report.removal_tests {
            writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                t.id,
                md(&t.target),
                md(&t.verdict),
                md(&t.summary),
                md(&t.at)
            )?;
        }
        writeln!(out)?;
    }

    let b = &report.break_glass;
    writeln!(out, "## Break-glass\n")?;
    writeln!(out, "- Grants in total: {}", b.total)?;
    writeln!(out, "- Live: {}", b.live)?;
    writeln!(out, "- Live past their TTL (overdue): {}\n", b.overdue)?;

    let u = &report.usage;
    writeln!(out, "## Usage\n")?;
    writeln!(out, "- Request-time decisions: {}", u.decisions)?;
    writeln!(out, "- Denied: {}", u.denied)?;
    writeln!(out, "- Workload log events correlated: {}", u.log_events)?;
    writeln!(
        out,
        "- Log events referencing unknown tokens: {}\n",
        u.unknown_refs
    )?;

    writeln!(out, "## Controls evidence\n")?;
    writeln!(
        out,
        "| control | status | OWASP NHI | OWASP Agentic | NIST CSF 2.0 | NIST 800-53 r5 | evidence |"
    )?;
    writeln!(out, "|---|---|---|---|---|---|---|")?;
    for c in controls.iter() {
        writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            md(&c.control),
            c.status.label(),
            md(&refs_text(&c.owasp_nhi)),
            md(&refs_text(&c.owasp_agentic)),
            md(&refs_text(&c.nist_csf)),
            md(&refs_text(&c.nist_800_53)),
            md(&c.evidence),
        )?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// HTML
// ---------------------------------------------------------------------------

/// Renders the report as one self-contained HTML document.
///
/// No script, no stylesheet link, no remote font or image and no URL at all:
/// the page works offline, with JavaScript disabled, and prints on a light
/// theme. Charts are inline SVG (`role="img"` with an `aria-label` that
/// states the numbers): a pass/fail summary, a bar per signal and per
/// question (0–100 %), and findings by kind (open, acknowledged, resolved).
///
/// Stable hooks for tests and styling: sections `id="summary"`, `"tokens"`,
/// `"signals"`, `"questions"`, `"churn"`, `"findings"`, `"removal-tests"`,
/// `"break-glass"`, `"usage"` and `"controls"`; in the controls table, one
/// row per control with `id="control-<slug>"` and `class="pass"` or
/// `class="fail"` (no other element carries those two classes).
///
/// Every string from the data is HTML-escaped (`& < > " '`), and the `:` of
/// any `://` is written as a character reference, so a URL in the data shows
/// as text but never appears in the markup. When `report.controls` is empty,
/// the controls are evaluated on the fly.
pub fn render_html(report: &Report) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write_html(&mut out, report);
    out
}

/// Escapes text for HTML content and quoted attribute values.
fn html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, c) in text.char_indices() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            ':' if text.get(i + 1..).is_some_and(|rest| rest.starts_with("//")) => {
                out.push_str("&#58;");
            }
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "\
:root{color-scheme:light}
*{-webkit-print-color-adjust:exact;print-color-adjust:exact;box-sizing:border-box}
body{margin:0;background:#fff;color:#1f2328;font:15px/1.5 system-ui,-apple-system,\"Segoe UI\",Roboto,Helvetica,Arial,sans-serif}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{font-size:1.6em;margin:0 0 4px}
h2{font-size:1.2em;margin:32px 0 8px;padding-bottom:4px;border-bottom:1px solid #d0d7de}
p{margin:6px 0}
.muted{color:#57606a}
table{border-collapse:collapse;width:100%;margin:8px 0;font-size:.92em}
th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa}
.num{text-align:right;font-variant-numeric:tabular-nums}
tr.pass td.status{color:#1a7f37;font-weight:700}
tr.fail td.status{color:#cf222e;font-weight:700}
tr.fail{background:#fff1f0}
.alias{color:#57606a}
ul{margin:6px 0;padding-left:20px}
svg{display:block;max-width:100%;height:auto;margin:8px 0}
svg text{font:12px system-ui,-apple-system,\"Segoe UI\",Roboto,Helvetica,Arial,sans-serif;fill:#1f2328}
@media print{main{max-width:none;padding:0}h2{break-after:avoid}svg,tr{break-inside:avoid}}
";

const BAR_LABEL_W: f64 = 240.0;
const BAR_TRACK_W: f64 = 320.0;
const CHART_W: f64 = 760.0;

fn write_html(out: &mut String, report: &Report) -> fmt::Result {
    let controls = controls_of(report);
    writeln!(out, "<!doctype html>")?;
    writeln!(out, "<html lang=\"en\">")?;
    writeln!(out, "<head>")?;
    writeln!(out, "<meta charset=\"utf-8\">")?;
    writeln!(
        out,
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
    )?;
    writeln!(
        out,
        "<title>Leash controls-evidence report — {}</title>",
        html(&report.generated_at)
    )?;
    writeln!(out, "<style>\n{STYLE}</style>")?;
    writeln!(out, "</head>")?;
    writeln!(out, "<body>")?;
    writeln!(out, "<main>")?;
    writeln!(out, "<header>")?;
    writeln!(out, "<h1>Leash controls-evidence report</h1>")?;
    writeln!(
        out,
        "<p class=\"muted\">Generated at <time datetime=\"{0}\">{0}</time>.</p>",
        html(&report.generated_at)
    )?;
    writeln!(out, "</header>")?;

    html_summary(out, &controls)?;
    html_tokens(out, report)?;

    writeln!(out, "<section id=\"signals\">")?;
    writeln!(out, "<h2>Three signals</h2>")?;
    let signals = signal_shares(report);
    share_chart(out, "signals-chart", "Three signals", &signals)?;
    share_list(out, &signals)?;
    let x = &report.signals.exposures;
    writeln!(
        out,
        "<p>Detection to revocation: median {}, p95 {} (target {} ms).</p>",
        millis(x.median_ms),
        millis(x.p95_ms),
        x.target_ms
    )?;
    writeln!(out, "</section>")?;

    writeln!(out, "<section id=\"questions\">")?;
    writeln!(out, "<h2>Four questions</h2>")?;
    let questions = question_shares(report);
    share_chart(
        out,
        "questions-chart",
        "Four questions answered for live tokens",
        &questions,
    )?;
    writeln!(out, "<table>")?;
    writeln!(
        out,
        "<thead><tr><th>question</th><th class=\"num\">answered</th><th class=\"num\">live tokens</th><th class=\"num\">share</th></tr></thead>"
    )?;
    writeln!(out, "<tbody>")?;
    for q in &questions {
        writeln!(
            out,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            html(q.label),
            q.ratio.numerator,
            q.ratio.denominator,
            percent(q.ratio.numerator, q.ratio.denominator, q.round)
                .as_deref()
                .unwrap_or("n/a"),
        )?;
    }
    writeln!(out, "</tbody>\n</table>")?;
    writeln!(out, "</section>")?;

    html_churn(out, report)?;
    html_findings(out, report)?;
    html_removal_tests(out, report)?;

    let b = &report.break_glass;
    writeln!(out, "<section id=\"break-glass\">")?;
    writeln!(out, "<h2>Break-glass</h2>")?;
    writeln!(
        out,
        "<ul><li>Grants in total: {}</li><li>Live: {}</li><li>Live past their TTL (overdue): {}</li></ul>",
        b.total, b.live, b.overdue
    )?;
    writeln!(out, "</section>")?;

    let u = &report.usage;
    writeln!(out, "<section id=\"usage\">")?;
    writeln!(out, "<h2>Usage</h2>")?;
    writeln!(
        out,
        "<ul><li>Request-time decisions: {}</li><li>Denied: {}</li><li>Workload log events correlated: {}</li><li>Log events referencing unknown tokens: {}</li></ul>",
        u.decisions, u.denied, u.log_events, u.unknown_refs
    )?;
    writeln!(out, "</section>")?;

    html_controls(out, &controls)?;

    writeln!(out, "</main>")?;
    writeln!(out, "</body>")?;
    writeln!(out, "</html>")
}

fn html_summary(out: &mut String, controls: &[ControlResult]) -> fmt::Result {
    let total = controls.len();
    let passed = controls
        .iter()
        .filter(|c| c.status == ControlStatus::Pass)
        .count();
    let failed = total - passed;
    let pass_w = if total == 0 {
        0.0
    } else {
        CHART_W * passed as f64 / total as f64
    };
    writeln!(out, "<section id=\"summary\">")?;
    writeln!(out, "<h2>Summary</h2>")?;
    writeln!(
        out,
        "<svg id=\"summary-chart\" class=\"chart\" role=\"img\" aria-label=\"Controls: {passed} pass, {failed} fail, of {total}\" viewBox=\"0 0 {CHART_W} 52\" width=\"{CHART_W}\" height=\"52\">"
    )?;
    writeln!(
        out,
        "<rect x=\"0\" y=\"4\" width=\"{CHART_W}\" height=\"24\" rx=\"3\" fill=\"#eaeef2\"/>"
    )?;
    writeln!(
        out,
        "<rect class=\"pass-segment\" x=\"0\" y=\"4\" width=\"{pass_w:.1}\" height=\"24\" fill=\"#1a7f37\"/>"
    )?;
    if failed > 0 {
        writeln!(
            out,
            "<rect class=\"fail-segment\" x=\"{pass_w:.1}\" y=\"4\" width=\"{:.1}\" height=\"24\" fill=\"#cf222e\"/>",
            CHART_W - pass_w
        )?;
    }
    writeln!(out, "<text x=\"0\" y=\"46\">{passed} pass</text>")?;
    writeln!(
        out,
        "<text x=\"{CHART_W}\" y=\"46\" text-anchor=\"end\">{failed} fail</text>"
    )?;
    writeln!(out, "</svg>")?;
    write!(
        out,
        "<p><strong>{passed} of {total} controls pass.</strong>"
    )?;
    let failing: Vec<String> = controls
        .iter()
        .filter(|c| c.status == ControlStatus::Fail)
        .map(|c| html(&c.control))
        .collect();
    if !failing.is_empty() {
        write!(out, " Failing: {}.", failing.join("; "))?;
    }
    writeln!(out, "</p>")?;
    writeln!(out, "</section>")
}

fn html_tokens(out: &mut String, report: &Report) -> fmt::Result {
    let t = &report.tokens;
    writeln!(out, "<section id=\"tokens\">")?;
    writeln!(out, "<h2>Tokens</h2>")?;
    writeln!(out, "<table>")?;
    writeln!(
        out,
        "<thead><tr><th>tokens</th><th class=\"num\">live</th><th class=\"num\">total</th></tr></thead>"
    )?;
    writeln!(
        out,
        "<tbody><tr><td>Leash</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
        t.leash_live, t.leash_total
    )?;
    writeln!(
        out,
        "<tr><td>External (imported)</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr></tbody>",
        t.external_active, t.external_total
    )?;
    writeln!(out, "</table>")?;
    writeln!(
        out,
        "<p>Of the live Leash tokens, {} are bound to a run, {} to a workload identity, and {} are above their TTL cap.</p>",
        t.run_bound_live, t.workload_bound_live, t.over_ttl_cap_live
    )?;
    writeln!(out, "</section>")
}

/// A horizontal bar (0–100 %) per share, with an optional limit marker.
fn share_chart(out: &mut String, id: &str, title: &str, shares: &[Share<'_>]) -> fmt::Result {
    const ROW_H: f64 = 30.0;
    let height = ROW_H * shares.len() as f64 + 8.0;
    let label: Vec<String> = shares
        .iter()
        .map(|s| format!("{} {}", s.label, ratio_text(&s.ratio, s.round)))
        .collect();
    writeln!(
        out,
        "<svg id=\"{}\" class=\"chart\" role=\"img\" aria-label=\"{}: {}\" viewBox=\"0 0 {CHART_W} {height}\" width=\"{CHART_W}\" height=\"{height}\">",
        html(id),
        html(title),
        html(&label.join("; ")),
    )?;
    for (i, share) in shares.iter().enumerate() {
        let y = 4.0 + ROW_H * i as f64;
        writeln!(
            out,
            "<text x=\"0\" y=\"{:.1}\">{}</text>",
            y + 17.0,
            html(share.label)
        )?;
        writeln!(
            out,
            "<rect x=\"{BAR_LABEL_W}\" y=\"{:.1}\" width=\"{BAR_TRACK_W}\" height=\"16\" rx=\"2\" fill=\"#eaeef2\"/>",
            y + 4.0
        )?;
        if let Some(value) = share.ratio.share() {
            let width = BAR_TRACK_W * value.clamp(0.0, 1.0);
            writeln!(
                out,
                "<rect class=\"bar\" x=\"{BAR_LABEL_W}\" y=\"{:.1}\" width=\"{width:.1}\" height=\"16\" rx=\"2\" fill=\"#0969da\"/>",
                y + 4.0
            )?;
        }
        if let Some(limit) = share.limit.filter(|l| l.is_finite()) {
            let x = BAR_LABEL_W + BAR_TRACK_W * limit.clamp(0.0, 1.0);
            writeln!(
                out,
                "<line class=\"limit\" x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#cf222e\" stroke-width=\"2\"/>",
                y + 1.0,
                y + 23.0
            )?;
        }
        writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            BAR_LABEL_W + BAR_TRACK_W + 10.0,
            y + 17.0,
            html(&ratio_text(&share.ratio, share.round))
        )?;
    }
    writeln!(out, "</svg>")
}

fn share_list(out: &mut String, shares: &[Share<'_>]) -> fmt::Result {
    writeln!(out, "<ul>")?;
    for s in shares {
        write!(
            out,
            "<li>{}: {} of {}",
            html(s.label),
            html(&ratio_text(&s.ratio, s.round)),
            html(s.of)
        )?;
        if let Some(limit) = s.limit {
            write!(out, " (limit {} %)", decimal(limit * 100.0, 2))?;
        }
        writeln!(out, "</li>")?;
    }
    writeln!(out, "</ul>")
}

fn html_churn(out: &mut String, report: &Report) -> fmt::Result {
    let c = &report.churn;
    writeln!(out, "<section id=\"churn\">")?;
    writeln!(out, "<h2>Reissue churn</h2>")?;
    writeln!(
        out,
        "<p>Chains of reissued tokens that live longer than {} h in effect: {}.</p>",
        decimal(c.threshold_hours, 2),
        c.chains_over_threshold
    )?;
    if c.longest.is_empty() {
        writeln!(out, "<p>No reissue chains recorded.</p>")?;
    } else {
        writeln!(out, "<table>")?;
        writeln!(
            out,
            "<thead><tr><th>workload</th><th>scopes</th><th class=\"num\">tokens</th><th class=\"num\">effective hours</th><th>first issued</th><th>last expires</th></tr></thead>"
        )?;
        writeln!(out, "<tbody>")?;
        for chain in &c.longest {
            let scopes: Vec<String> = chain
                .scopes
                .iter()
                .map(|s| format!("<code>{}</code>", html(s)))
                .collect();
            writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td></tr>",
                html(&chain.workload),
                scopes.join(", "),
                chain.tokens,
                decimal(chain.effective_hours, 1),
                html(&chain.first_issued),
                html(&chain.last_expires),
            )?;
        }
        writeln!(out, "</tbody>\n</table>")?;
    }
    writeln!(out, "</section>")
}

fn html_findings(out: &mut String, report: &Report) -> fmt::Result {
    const GROUP_H: f64 = 44.0;
    const TOP: f64 = 26.0;
    const SERIES: [(&str, &str); 3] = [
        ("open", "#cf222e"),
        ("acknowledged", "#9a6700"),
        ("resolved", "#1a7f37"),
    ];
    let findings = findings_sorted(report);
    writeln!(out, "<section id=\"findings\">")?;
    writeln!(out, "<h2>Findings by kind</h2>")?;

    let label = if findings.is_empty() {
        "none".to_string()
    } else {
        findings
            .iter()
            .map(|f| {
                format!(
                    "{} {} open, {} acknowledged, {} resolved",
                    f.kind, f.open, f.acknowledged, f.resolved
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    let height = TOP + GROUP_H * findings.len().max(1) as f64;
    writeln!(
        out,
        "<svg id=\"findings-chart\" class=\"chart\" role=\"img\" aria-label=\"Findings by kind: {}\" viewBox=\"0 0 {CHART_W} {height}\" width=\"{CHART_W}\" height=\"{height}\">",
        html(&label)
    )?;
    for (i, (name, colour)) in SERIES.iter().enumerate() {
        let x = BAR_LABEL_W + 130.0 * i as f64;
        writeln!(
            out,
            "<rect x=\"{x:.1}\" y=\"4\" width=\"12\" height=\"12\" fill=\"{colour}\"/><text x=\"{:.1}\" y=\"14\">{name}</text>",
            x + 16.0
        )?;
    }
    if findings.is_empty() {
        writeln!(
            out,
            "<text x=\"0\" y=\"{:.1}\">No findings.</text>",
            TOP + 20.0
        )?;
    }
    let max = findings
        .iter()
        .map(|f| f.open.max(f.acknowledged).max(f.resolved))
        .max()
        .unwrap_or(0)
        .max(1);
    let bar_room = CHART_W - BAR_LABEL_W - 60.0;
    for (i, f) in findings.iter().enumerate() {
        let y = TOP + GROUP_H * i as f64;
        writeln!(
            out,
            "<text x=\"0\" y=\"{:.1}\">{}</text>",
            y + 20.0,
            html(&f.kind)
        )?;
        for (j, value) in [f.open, f.acknowledged, f.resolved].into_iter().enumerate() {
            let (_, colour) = SERIES[j];
            let bar_y = y + 12.0 * j as f64;
            let width = bar_room * value as f64 / max as f64;
            writeln!(
                out,
                "<rect x=\"{BAR_LABEL_W}\" y=\"{bar_y:.1}\" width=\"{width:.1}\" height=\"10\" fill=\"{colour}\"/><text x=\"{:.1}\" y=\"{:.1}\">{value}</text>",
                BAR_LABEL_W + width + 6.0,
                bar_y + 9.0
            )?;
        }
    }
    writeln!(out, "</svg>")?;

    if !findings.is_empty() {
        writeln!(out, "<table>")?;
        writeln!(
            out,
            "<thead><tr><th>kind</th><th class=\"num\">open</th><th class=\"num\">acknowledged</th><th class=\"num\">resolved</th></tr></thead>"
        )?;
        writeln!(out, "<tbody>")?;
        for f in &findings {
            writeln!(
                out,
                "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                html(&f.kind),
                f.open,
                f.acknowledged,
                f.resolved
            )?;
        }
        writeln!(out, "</tbody>\n</table>")?;
    }
    writeln!(out, "</section>")
}

fn html_removal_tests(out: &mut String, report: &Report) -> fmt::Result {
    writeln!(out, "<section id=\"removal-tests\">")?;
    writeln!(out, "<h2>Removal tests</h2>")?;
    if report.removal_tests.is_empty() {
        writeln!(out, "<p>No removal tests recorded.</p>")?;
    } else {
        writeln!(out, "<table>")?;
        writeln!(
            out,
            "<thead><tr><th class=\"num\">id</th><th>target</th><th>verdict</th><th>summary</th><th>at</th></tr></thead>"
        )?;
        writeln!(out, "<tbody>")?;
        for t in &report.removal_tests {
            writeln!(
                out,
                "<tr><td class=\"num\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                t.id,
                html(&t.target),
                html(&t.verdict),
                html(&t.summary),
                html(&t.at)
            )?;
        }
        writeln!(out, "</tbody>\n</table>")?;
    }
    writeln!(out, "</section>")
}

fn refs_html(refs: &[StandardRef]) -> String {
    refs.iter()
        .map(|r| {
            if r.aliases.is_empty() {
                html(&r.id)
            } else {
                format!(
                    "{} <span class=\"alias\">(alias {})</span>",
                    html(&r.id),
                    html(&r.aliases.join(", "))
                )
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn html_controls(out: &mut String, controls: &[ControlResult]) -> fmt::Result {
    writeln!(out, "<section id=\"controls\">")?;
    writeln!(out, "<h2>Controls evidence</h2>")?;
    writeln!(out, "<table>")?;
    writeln!(
        out,
        "<thead><tr><th>control</th><th>status</th><th>OWASP NHI Top 10 (2025)</th><th>OWASP Agentic Top 10 (2026)</th><th>NIST CSF 2.0</th><th>NIST SP 800-53 r5</th><th>evidence</th></tr></thead>"
    )?;
    writeln!(out, "<tbody>")?;
    for c in controls {
        writeln!(
            out,
            "<tr id=\"control-{}\" class=\"{}\"><td>{}</td><td class=\"status\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            html(&c.id),
            c.status.class(),
            html(&c.control),
            c.status.label(),
            refs_html(&c.owasp_nhi),
            refs_html(&c.owasp_agentic),
            refs_html(&c.nist_csf),
            refs_html(&c.nist_800_53),
            html(&c.evidence),
        )?;
    }
    writeln!(out, "</tbody>\n</table>")?;
    writeln!(out, "</section>")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An estate where every control passes, with hand-picked numbers that
    /// sit exactly on each boundary where one exists.
    fn fixture() -> Report {
        let mut report = Report {
            generated_at: "2026-11-02T09:00:00Z".to_string(),
            tokens: TokenTotals {
                leash_live: 400,
                leash_total: 1200,
                external_active: 40,
                external_total: 90,
                run_bound_live: 400,
                over_ttl_cap_live: 0,
                workload_bound_live: 400,
            },
            signals: Signals {
                owner_coverage: Ratio {
                    numerator: 440,
                    denominator: 440,
                },
                // Exactly at the 20 % limit.
                write_ratio: Ratio {
                    numerator: 80,
                    denominator: 400,
                },
                write_max_ratio: 0.2,
                write_justified: Ratio {
                    numerator: 80,
                    denominator: 80,
                },
                write_approved: Ratio {
                    numerator: 80,
                    denominator: 80,
                },
                exposures: ExposureSignal {
                    revocable: 5,
                    revoked_automatically: 5,
                    median_ms: Some(120),
                    // Exactly at the target.
                    p95_ms: Some(1000),
                    target_ms: 1000,
                },
            },
            questions: Questions {
                owner: Ratio {
                    numerator: 440,
                    denominator: 440,
                },
                workload: Ratio {
                    numerator: 390,
                    denominator: 400,
                },
                privileges: Ratio {
                    numerator: 440,
                    denominator: 440,
                },
                revocation: Ratio {
                    numerator: 0,
                    denominator: 0,
                },
            },
            churn: Churn {
                threshold_hours: 24.0,
                chains_over_threshold: 0,
                longest: vec![ChurnChain {
                    workload: "triage-bot".to_string(),
                    scopes: vec![
                        "tickets:read".to_string(),
                        "repo:acme/api:write".to_string(),
                    ],
                    tokens: 23,
                    effective_hours: 22.5,
                    first_issued: "2026-11-01T08:00:00Z".to_string(),
                    last_expires: "2026-11-02T06:30:00Z".to_string(),
                }],
            },
            findings: vec![
                FindingCount {
                    kind: "reissue_churn".to_string(),
                    open: 0,
                    acknowledged: 1,
                    resolved: 3,
                },
                FindingCount {
                    kind: "shadow_ownership".to_string(),
                    open: 0,
                    acknowledged: 2,
                    resolved: 5,
                },
                FindingCount {
                    kind: "unused_scope".to_string(),
                    open: 7,
                    acknowledged: 0,
                    resolved: 1,
                },
            ],
            removal_tests: vec![
                RemovalRow {
                    id: 1,
                    target: "tok_01".to_string(),
                    verdict: "unknown".to_string(),
                    summary: "no traffic in the window".to_string(),
                    at: "2026-11-01T10:00:00Z".to_string(),
                },
                RemovalRow {
                    id: 2,
                    target: "tok_02".to_string(),
                    verdict: "needed".to_string(),
                    summary: "3 calls failed without it".to_string(),
                    at: "2026-11-01T11:00:00Z".to_string(),
                },
            ],
            usage: UsageTotals {
                decisions: 1234,
                denied: 56,
                // Exactly 1 % unknown.
                log_events: 1000,
                unknown_refs: 10,
            },
            break_glass: BreakGlass {
                total: 3,
                live: 1,
                overdue: 0,
            },
            controls: Vec::new(),
        };
        report.controls = evaluate(&report);
        report
    }

    fn status(report: &Report, id: &str) -> ControlStatus {
        control(report, id).status
    }

    fn control(report: &Report, id: &str) -> ControlResult {
        let found = evaluate(report).into_iter().find(|c| c.id == id);
        found.unwrap_or_else(|| panic!("no control {id}"))
    }

    fn with_finding(report: &mut Report, kind: &str, open: u64, acknowledged: u64) {
        report.findings.push(FindingCount {
            kind: kind.to_string(),
            open,
            acknowledged,
            resolved: 0,
        });
    }

    use ControlStatus::{Fail, Pass};

    #[test]
    fn fixture_passes_every_control() {
        let report = fixture();
        let failing: Vec<_> = report
            .controls
            .iter()
            .filter(|c| c.status == Fail)
            .map(|c| (c.id.clone(), c.evidence.clone()))
            .collect();
        assert!(failing.is_empty(), "{failing:?}");
        assert_eq!(report.controls.len(), 12);
    }

    #[test]
    fn ratio_share_and_completeness() {
        let r = |numerator, denominator| Ratio {
            numerator,
            denominator,
        };
        assert_eq!(r(0, 0).share(), None);
        assert!(r(0, 0).is_complete());
        assert_eq!(r(1, 4).share(), Some(0.25));
        assert!(!r(399, 400).is_complete());
        assert!(r(400, 400).is_complete());
        assert!(!r(401, 400).is_complete());
    }

    #[test]
    fn named_owner_needs_every_live_token_owned() {
        let mut report = fixture();
        report.signals.owner_coverage = Ratio {
            numerator: 400,
            denominator: 400,
        };
        assert_eq!(status(&report, "named-owner"), Pass);
        report.signals.owner_coverage.numerator = 399;
        let c = control(&report, "named-owner");
        assert_eq!(c.status, Fail);
        // Rounded down: an incomplete share never reads 100 %.
        assert!(c.evidence.contains("99.7 % (399 / 400)"), "{}", c.evidence);
        report.signals.owner_coverage = Ratio {
            numerator: 0,
            denominator: 0,
        };
        assert_eq!(status(&report, "named-owner"), Pass);
    }

    #[test]
    fn write_ratio_at_the_limit_passes_and_above_fails() {
        let mut report = fixture();
        assert_eq!(status(&report, "write-scopes"), Pass);
        report.signals.write_ratio.numerator = 81;
        let c = control(&report, "write-scopes");
        assert_eq!(c.status, Fail);
        assert!(c.evidence.contains("20.3 % (81 / 400)"), "{}", c.evidence);
        assert!(c.evidence.contains("limit 20 %"), "{}", c.evidence);

        // A hair above the limit reads above it (rounded up), not 20.0 %.
        report.signals.write_ratio = Ratio {
            numerator: 2001,
            denominator: 10000,
        };
        let c = control(&report, "write-scopes");
        assert_eq!(c.status, Fail);
        assert!(
            c.evidence.contains("20.1 % (2001 / 10000)"),
            "{}",
            c.evidence
        );

        // No live Leash tokens: nothing is write-capable.
        report.signals.write_ratio = Ratio {
            numerator: 0,
            denominator: 0,
        };
        assert_eq!(status(&report, "write-scopes"), Pass);
    }

    #[test]
    fn write_scopes_need_every_justification_and_approval() {
        let mut report = fixture();
        report.signals.write_justified.numerator = 79;
        assert_eq!(status(&report, "write-scopes"), Fail);
        let mut report = fixture();
        report.signals.write_approved.numerator = 79;
        let c = control(&report, "write-scopes");
        assert_eq!(c.status, Fail);
        assert!(
            c.evidence.contains("approved 98.7 % (79 / 80)"),
            "{}",
            c.evidence
        );
    }

    #[test]
    fn exposure_p95_at_target_passes_and_one_more_fails() {
        let mut report = fixture();
        assert_eq!(status(&report, "exposure-revocation"), Pass);
        report.signals.exposures.p95_ms = Some(1001);
        let c = control(&report, "exposure-revocation");
        assert_eq!(c.status, Fail);
        assert!(c.evidence.contains("p95 1001 ms"), "{}", c.evidence);
        assert!(c.evidence.contains("target 1000 ms"), "{}", c.evidence);
    }

    #[test]
    fn exposure_needs_every_revocation_automatic() {
        let mut report = fixture();
        report.signals.exposures.revoked_automatically = 4;
        let c = control(&report, "exposure-revocation");
        assert_eq!(c.status, Fail);
        assert!(c.evidence.contains("80.0 % (4 / 5)"), "{}", c.evidence);
    }

    #[test]
    fn exposure_without_latency_passes_only_with_no_exposures() {
        let mut report = fixture();
        report.signals.exposures = ExposureSignal {
            revocable: 0,
            revoked_automatically: 0,
            median_ms: None,
            p95_ms: None,
            target_ms: 1000,
        };
        let c = control(&report, "exposure-revocation");
        assert_eq!(c.status, Pass);
        assert!(c.evidence.contains("n/a (0 / 0)"), "{}", c.evidence);
        report.signals.exposures.revocable = 2;
        report.signals.exposures.revoked_automatically = 2;
        assert_eq!(status(&report, "exposure-revocation"), Fail);
    }

    #[test]
    fn short_ttl_needs_every_token_run_bound_and_under_cap() {
        let mut report = fixture();
        assert!(
            control(&report, "short-ttl")
                .evidence
                .contains("100.0 % (400 / 400)")
        );
        report.tokens.run_bound_live = 399;
        let c = control(&report, "short-ttl");
        assert_eq!(c.status, Fail);
        assert!(c.evidence.contains("99.7 % (399 / 400)"), "{}", c.evidence);

        let mut report = fixture();
        report.tokens.over_ttl_cap_live = 1;
        assert_eq!(status(&report, "short-ttl"), Fail);
    }

    #[test]
    fn workload_binding_needs_every_token_bound_and_no_open_shared_credential() {
        let mut report = fixture();
        assert_eq!(status(&report, "workload-binding"), Pass);
        report.tokens.workload_bound_live = 399;
        assert_eq!(status(&report, "workload-binding"), Fail);

        let mut report = fixture();
        with_finding(&mut report, "shared_credential", 0, 2);
        assert_eq!(status(&report, "workload-binding"), Pass);
        assert_eq!(status(&report, "shared-token-blast-radius"), Pass);
        with_finding(&mut report, "shared_credential", 1, 0);
        let c = control(&report, "workload-binding");
        assert_eq!(c.status, Fail);
        assert!(
            c.evidence
                .contains("1 open shared_credential findings (2 acknowledged, 0 resolved)"),
            "{}",
            c.evidence
        );
        assert_eq!(status(&report, "shared-token-blast-radius"), Fail);
    }

    #[test]
    fn request_time_policy_needs_decisions() {
        let mut report = fixture();
        let c = control(&report, "request-time-policy");
        assert_eq!(c.status, Pass);
        assert!(c.evidence.contains("1234 request-time decisions"));
        assert!(c.evidence.contains("56 of them denied"));
        report.usage.decisions = 0;
        report.usage.denied = 0;
        assert_eq!(status(&report, "request-time-policy"), Fail);
        report.usage.decisions = 1;
        assert_eq!(status(&report, "request-time-policy"), Pass);
    }

    #[test]
    fn unknown_refs_at_one_percent_pass_and_above_fail() {
        let mut report = fixture();
        let c = control(&report, "usage-log-correlation");
        assert_eq!(c.status, Pass);
        assert!(c.evidence.contains("1.0 % (10 / 1000)"), "{}", c.evidence);
        report.usage.unknown_refs = 11;
        assert_eq!(status(&report, "usage-log-correlation"), Fail);

        // A hair above 1 % reads above it.
        report.usage.log_events = 100_000;
        report.usage.unknown_refs = 1001;
        let c = control(&report, "usage-log-correlation");
        assert_eq!(c.status, Fail);
        assert!(
            c.evidence.contains("1.1 % (1001 / 100000)"),
            "{}",
            c.evidence
        );

        report.usage.log_events = 0;
        report.usage.unknown_refs = 0;
        assert_eq!(status(&report, "usage-log-correlation"), Fail);
    }

    #[test]
    fn removability_needs_one_conclusive_verdict() {
        let mut report = fixture();
        assert_eq!(status(&report, "removability-test"), Pass);
        report.removal_tests[1].verdict = "unknown".to_string();
        let c = control(&report, "removability-test");
        assert_eq!(c.status, Fail);
        assert!(
            c.evidence
                .contains("2 removal tests: 0 removable, 0 needed, 2 unknown"),
            "{}",
            c.evidence
        );
        report.removal_tests[1].verdict = "maybe".to_string();
        let c = control(&report, "removability-test");
        assert_eq!(c.status, Fail);
        assert!(c.evidence.contains("1 with an unrecognised verdict"));
        report.removal_tests[1].verdict = "removable".to_string();
        assert_eq!(status(&report, "removability-test"), Pass);
        report.removal_tests.clear();
        assert_eq!(status(&report, "removability-test"), Fail);
    }

    #[test]
    fn break_glass_fails_when_a_live_grant_is_overdue() {
        let mut report = fixture();
        assert_eq!(status(&report, "break-glass"), Pass);
        report.break_glass.overdue = 1;
        let c = control(&report, "break-glass");
        assert_eq!(c.status, Fail);
        assert!(
            c.evidence.contains("1 live past their TTL"),
            "{}",
            c.evidence
        );
    }

    #[test]
    fn shadow_ownership_fails_on_an_open_finding() {
        let mut report = fixture();
        assert_eq!(status(&report, "shadow-ownership"), Pass);
        with_finding(&mut report, "shadow_ownership", 1, 0);
        let c = control(&report, "shadow-ownership");
        assert_eq!(c.status, Fail);
        // Rows of one kind are summed.
        assert!(
            c.evidence
                .contains("1 open shadow_ownership findings (2 acknowledged, 5 resolved)"),
            "{}",
            c.evidence
        );
    }

    #[test]
    fn reissue_churn_fails_on_a_long_chain_or_an_open_finding() {
        let mut report = fixture();
        assert_eq!(status(&report, "reissue-churn"), Pass);
        report.churn.chains_over_threshold = 1;
        let c = control(&report, "reissue-churn");
        assert_eq!(c.status, Fail);
        assert!(
            c.evidence
                .contains("1 reissue chains live longer than 24 h")
        );

        let mut report = fixture();
        with_finding(&mut report, "reissue_churn", 1, 0);
        assert_eq!(status(&report, "reissue-churn"), Fail);
    }

    #[test]
    fn a_missing_finding_kind_counts_zero() {
        let mut report = fixture();
        report.findings.clear();
        for id in [
            "workload-binding",
            "shadow-ownership",
            "reissue-churn",
            "shared-token-blast-radius",
        ] {
            assert_eq!(status(&report, id), Pass, "{id}");
        }
    }

    /// The design's table, copied verbatim from DESIGN.md.
    const DESIGN_TABLE: &str = "\
| named owner for every token | NHI1, NHI10 | ASI03 | GV.RR-02, PR.AA-01, ID.AM-02 | AC-2b, AC-2e |
| write scopes rare and justified | NHI5 | ASI02, ASI03 | PR.AA-05 | AC-6, AC-2e |
| automated revocation on exposure | NHI2 | ASI03 | RS.MI-01, PR.AA-01, DE.CM-09 | IA-5d, IA-5f, AC-2(3) |
| short TTL, per-task issuance | NHI7 (alias NHI-03) | ASI03 | PR.AA-01, PR.AA-05 | IA-5f, AC-2(2) |
| workload identity binding | NHI4, NHI6, NHI9 | ASI03, ASI07 | PR.AA-02, PR.AA-03, PR.AA-04 | IA-9, IA-13 |
| request-time policy evaluation | NHI5, NHI6 | ASI03 (alias AGENT-04), ASI02 | PR.AA-05 (alias PR.AC-4) | AC-3, AC-2(6), AC-2(11) |
| usage correlated with workload logs | NHI10, NHI1 | ASI10, ASI03 | DE.CM-03, DE.CM-09, DE.AE-03, PR.PS-04 | AC-2g, AC-2(12), AU-6(3) |
| removability test | NHI1 | ASI08 | ID.AM-08, PR.AA-05 | AC-2(3), AC-2j |
| break-glass time-boxed and logged | NHI10, NHI5 | ASI03 | PR.AA-03, PR.PS-04 | AC-2(2), AC-6(9) |
| shadow ownership detection | NHI1, NHI10 | ASI03, ASI10 | ID.AM-02, GV.RR-02 | AC-2(3), AC-2g |
| reissue-churn detection | NHI7, NHI2 | ASI03 | DE.CM-09, DE.AE-03 | AC-2(12), IA-5f |
| shared-token blast radius | NHI9, NHI8 | ASI08, ASI03 | PR.AA-02, ID.RA-04 | AC-2(9), IA-5i |
";

    #[test]
    fn controls_follow_the_design_table_exactly() {
        let controls = evaluate(&fixture());
        let rows: Vec<&str> = DESIGN_TABLE.lines().collect();
        assert_eq!(controls.len(), rows.len());
        for (c, row) in controls.iter().zip(rows) {
            let rendered = format!(
                "| {} | {} | {} | {} | {} |",
                c.control,
                refs_text(&c.owasp_nhi),
                refs_text(&c.owasp_agentic),
                refs_text(&c.nist_csf),
                refs_text(&c.nist_800_53)
            );
            assert_eq!(rendered, row);
        }
        let ids: Vec<&str> = controls.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "named-owner",
                "write-scopes",
                "exposure-revocation",
                "short-ttl",
                "workload-binding",
                "request-time-policy",
                "usage-log-correlation",
                "removability-test",
                "break-glass",
                "shadow-ownership",
                "reissue-churn",
                "shared-token-blast-radius",
            ]
        );
    }

    #[test]
    fn legacy_labels_are_aliases_of_the_current_ids() {
        let report = fixture();
        let short_ttl = control(&report, "short-ttl");
        assert_eq!(
            short_ttl.owasp_nhi,
            vec![StandardRef {
                id: "NHI7".to_string(),
                aliases: vec!["NHI-03".to_string()],
            }]
        );
        let policy = control(&report, "request-time-policy");
        assert_eq!(policy.owasp_agentic[0].id, "ASI03");
        assert_eq!(
            policy.owasp_agentic[0].aliases,
            vec!["AGENT-04".to_string()]
        );
        assert_eq!(policy.nist_csf[0].id, "PR.AA-05");
        assert_eq!(policy.nist_csf[0].aliases, vec!["PR.AC-4".to_string()]);
        // No legacy label is ever used as a primary id.
        for c in evaluate(&report) {
            for r in c
                .owasp_nhi
                .iter()
                .chain(&c.owasp_agentic)
                .chain(&c.nist_csf)
            {
                assert!(!["NHI-03", "AGENT-04", "PR.AC-4"].contains(&r.id.as_str()));
            }
        }
        let md = render_markdown(&report);
        assert!(md.contains("NHI7 (alias NHI-03)"));
        assert!(md.contains("ASI03 (alias AGENT-04), ASI02"));
        assert!(md.contains("PR.AA-05 (alias PR.AC-4)"));
        let page = render_html(&report);
        assert!(page.contains("NHI7 <span class=\"alias\">(alias NHI-03)</span>"));
    }

    #[test]
    fn json_round_trips_with_lowercase_status() {
        let mut report = fixture();
        report.signals.owner_coverage.numerator = 1;
        report.controls = evaluate(&report);
        let json = serde_json::to_string(&report).unwrap();
        let back: Report = serde_json::from_str(&json).unwrap();
        assert_eq!(back, report);

        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["controls"][0]["status"], "fail");
        assert_eq!(value["controls"][1]["status"], "pass");
        assert_eq!(value["controls"][3]["owasp_nhi"][0]["aliases"][0], "NHI-03");
        assert_eq!(value["signals"]["owner_coverage"]["numerator"], 1);
        assert_eq!(value["signals"]["exposures"]["p95_ms"], 1000);
        assert_eq!(value["tokens"]["over_ttl_cap_live"], 0);
        assert_eq!(value["break_glass"]["overdue"], 0);
        assert!(value["controls"][0].get("nist_800_53").is_some());
        assert_eq!(
            serde_json::to_string(&ControlStatus::Pass).unwrap(),
            "\"pass\""
        );
        assert_eq!(
            serde_json::from_str::<ControlStatus>("\"fail\"").unwrap(),
            ControlStatus::Fail
        );
    }

    #[test]
    fn markdown_shows_the_sections_and_numbers() {
        let mut report = fixture();
        report.signals.owner_coverage = Ratio {
            numerator: 390,
            denominator: 400,
        };
        report.controls = evaluate(&report);
        let md = render_markdown(&report);
        for heading in [
            "# Leash controls-evidence report",
            "## Three signals",
            "## Four questions",
            "## Reissue churn",
            "## Findings by kind",
            "## Removal tests",
            "## Break-glass",
            "## Usage",
            "## Controls evidence",
        ] {
            assert!(md.contains(heading), "missing {heading}");
        }
        assert!(md.contains("2026-11-02T09:00:00Z"));
        assert!(md.contains("97.5 % (390 / 400)"));
        assert!(md.contains("| What event revokes it? | n/a (0 / 0) |"));
        assert!(md.contains("| What workload does it serve? | 97.5 % (390 / 400) |"));
        assert!(md.contains("| triage-bot | tickets:read, repo:acme/api:write | 23 | 22.5 |"));
        assert!(md.contains("| shadow_ownership | 0 | 2 | 5 |"));
        assert!(md.contains("| 2 | tok_02 | needed | 3 calls failed without it |"));
        assert!(md.contains(
            "| control | status | OWASP NHI | OWASP Agentic | NIST CSF 2.0 | NIST 800-53 r5 | evidence |"
        ));
        assert!(md.contains("| named owner for every token | FAIL | NHI1, NHI10 | ASI03 |"));
        assert!(md.contains("| write scopes rare and justified | PASS | NHI5 |"));
        assert!(md.contains("**11 of 12 controls pass.** Failing: named owner for every token."));
    }

    /// Cells of a Markdown table row, split on unescaped pipes.
    fn cells(line: &str) -> usize {
        let mut count = 0;
        let mut escaped = false;
        for c in line.chars() {
            match c {
                '\\' if !escaped => escaped = true,
                '|' if !escaped => count += 1,
                _ => escaped = false,
            }
        }
        count - 1
    }

    #[test]
    fn markdown_escapes_pipes_and_newlines_in_cells() {
        let mut report = fixture();
        report.churn.longest[0].workload = "evil|bot\\".to_string();
        report.churn.longest[0].scopes = vec!["a|b".to_string()];
        report.removal_tests[0].summary = "line one\nline | two\r\nthree <b>".to_string();
        let md = render_markdown(&report);
        assert!(md.contains("| evil\\|bot\\\\ | a\\|b | 23 |"), "{md}");
        assert!(
            md.contains("| line one<br>line \\| two<br>three \\<b\\> |"),
            "{md}"
        );
        let churn_row = md.lines().find(|l| l.starts_with("| evil")).unwrap();
        assert_eq!(cells(churn_row), 6);
        let removal_row = md.lines().find(|l| l.starts_with("| 1 |")).unwrap();
        assert_eq!(cells(removal_row), 5);
        // Every row of the controls table has its seven cells.
        let controls: Vec<&str> = md
            .lines()
            .skip_while(|l| !l.starts_with("| control |"))
            .collect();
        assert_eq!(controls.len(), 14);
        assert!(controls.iter().all(|l| cells(l) == 7));
    }

    #[test]
    fn markdown_evaluates_when_controls_are_missing() {
        let mut report = fixture();
        report.controls.clear();
        let md = render_markdown(&report);
        assert!(md.contains("**12 of 12 controls pass.**"));
        assert!(md.contains("| shared-token blast radius | PASS |"));
    }

    #[test]
    fn zero_over_zero_reads_na() {
        let mut report = fixture();
        report.signals.owner_coverage = Ratio {
            numerator: 0,
            denominator: 0,
        };
        report.signals.exposures.median_ms = None;
        let md = render_markdown(&report);
        assert!(md.contains("**Every token has a named owner:** n/a (0 / 0)"));
        assert!(md.contains("median n/a"));
        let page = render_html(&report);
        assert!(page.contains("Named owner: n/a (0 / 0) of live tokens"));
        assert!(!page.contains("NaN"));
        assert!(!md.contains("NaN"));
    }

    fn hostile() -> Report {
        let mut report = fixture();
        report.churn.longest[0].workload = "<script>alert('x')</script>".to_string();
        report.churn.longest[0].scopes = vec!["repo:\"a&b\":write".to_string()];
        report.removal_tests[0].summary =
            "see https://evil.example/x and http://evil.example <link rel=stylesheet>".to_string();
        report.removal_tests[0].target = "<img src=x onerror=alert(1)>".to_string();
        report.findings.push(FindingCount {
            kind: "<svg onload=alert(1)>".to_string(),
            open: 1,
            acknowledged: 0,
            resolved: 0,
        });
        report.generated_at = "2026-11-02T09:00:00Z\"><script>".to_string();
        report.controls = evaluate(&report);
        report
    }

    #[test]
    fn html_escapes_every_string_from_the_data() {
        let page = render_html(&hostile());
        assert!(page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
        assert!(page.contains("repo:&quot;a&amp;b&quot;:write"));
        assert!(page.contains("&lt;img src=x onerror=alert(1)&gt;"));
        assert!(page.contains("&lt;svg onload=alert(1)&gt;"));
        assert!(!page.contains("<img"));
        assert!(!page.contains("<svg onload"));
        // The URL in the data still reads as one, but is not markup.
        assert!(page.contains("https&#58;//evil.example/x"));
    }

    #[test]
    fn html_is_self_contained() {
        for report in [fixture(), hostile()] {
            let page = render_html(&report);
            let lower = page.to_ascii_lowercase();
            assert!(lower.starts_with("<!doctype html>"));
            assert!(lower.contains("<meta charset=\"utf-8\">"));
            assert!(lower.contains("<style>"));
            for banned in [
                "http://", "https://", "<script", "<link", "<img", "url(", "@import",
            ] {
                assert!(!lower.contains(banned), "found {banned}");
            }
        }
    }

    #[test]
    fn html_has_stable_hooks_and_charts() {
        let mut report = fixture();
        report.break_glass.overdue = 2;
        report.controls = evaluate(&report);
        let page = render_html(&report);
        for id in [
            "summary",
            "tokens",
            "signals",
            "questions",
            "churn",
            "findings",
            "removal-tests",
            "break-glass",
            "usage",
            "controls",
        ] {
            assert!(
                page.contains(&format!("<section id=\"{id}\">")),
                "missing {id}"
            );
        }
        assert_eq!(page.matches("class=\"pass\"").count(), 11);
        assert_eq!(page.matches("class=\"fail\"").count(), 1);
        assert!(page.contains("<tr id=\"control-break-glass\" class=\"fail\">"));
        assert!(page.contains("<tr id=\"control-named-owner\" class=\"pass\">"));

        // Four charts, each an image with a label that states its numbers.
        assert_eq!(page.matches("<svg ").count(), 4);
        assert_eq!(page.matches("role=\"img\"").count(), 4);
        assert_eq!(page.matches("</svg>").count(), 4);
        assert!(page.contains("aria-label=\"Controls: 11 pass, 1 fail, of 12\""));
        assert!(page.contains("aria-label=\"Three signals: Named owner 100.0 % (440 / 440)"));
        assert!(page.contains("aria-label=\"Four questions answered for live tokens: "));
        assert!(page.contains(
            "aria-label=\"Findings by kind: reissue_churn 0 open, 1 acknowledged, 3 resolved"
        ));
        // The 20 % limit is drawn on the write-capable bar, which reaches it.
        assert!(page.contains("class=\"limit\" x1=\"304.0\""));
        assert!(page.contains("class=\"bar\" x=\"240\" y=\"38.0\" width=\"64.0\""));
        // Balanced sections.
        assert_eq!(
            page.matches("<section").count(),
            page.matches("</section>").count()
        );
        assert!(page.trim_end().ends_with("</html>"));
    }

    #[test]
    fn percentages_round_towards_the_failing_side() {
        assert_eq!(percent(1999, 2000, Round::Down).as_deref(), Some("99.9 %"));
        assert_eq!(percent(2000, 2000, Round::Down).as_deref(), Some("100.0 %"));
        assert_eq!(percent(1, 3, Round::Up).as_deref(), Some("33.4 %"));
        assert_eq!(percent(1, 3, Round::Down).as_deref(), Some("33.3 %"));
        assert_eq!(percent(0, 0, Round::Down), None);
        assert_eq!(
            percent(u64::MAX, u64::MAX, Round::Up).as_deref(),
            Some("100.0 %")
        );
        assert_eq!(decimal(0.2 * 100.0, 2), "20");
        assert_eq!(decimal(22.5, 1), "22.5");
    }
}
