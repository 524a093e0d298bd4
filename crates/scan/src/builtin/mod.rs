//! The built-in rules, each defined next to a positive and a negative example.
//!
//! Every example is synthetic. Where a format carries a checksum (GitHub,
//! npm, Leash opaque tokens), the examples write `%CRC%` in its place and
//! the tests compute a valid one; a negative example keeps a wrong checksum.

use crate::FindingKind;
use crate::rule::{Check, Pattern, Reach, Rule, Tier};

mod ai;
mod chat;
mod cloud;
mod databases;
mod generic;
mod keys;
mod leash;
mod payments;
mod saas;
mod vcs;

/// A built-in rule and its examples.
pub(crate) struct Spec {
    pub id: &'static str,
    pub description: &'static str,
    pub regex: &'static str,
    pub keywords: &'static [&'static str],
    /// Minimum Shannon entropy of the secret, bits per byte.
    pub entropy: Option<f64>,
    pub check: Check,
    pub tier: Tier,
    pub reach: Reach,
    pub kind: FindingKind,
    /// Lines this rule must find.
    #[cfg_attr(not(test), allow(dead_code, reason = "read by the table-driven test"))]
    pub positives: &'static [&'static str],
    /// Lines this rule must not find.
    #[cfg_attr(not(test), allow(dead_code, reason = "read by the table-driven test"))]
    pub negatives: &'static [&'static str],
}

impl Spec {
    /// Defaults for a third-party format rule.
    pub const fn new(id: &'static str, description: &'static str, regex: &'static str) -> Spec {
        Spec {
            id,
            description,
            regex,
            keywords: &[],
            entropy: Some(3.0),
            check: Check::None,
            tier: Tier::Specific,
            reach: Reach::Line,
            kind: FindingKind::ThirdParty,
            positives: &[],
            negatives: &[],
        }
    }
}

/// Every built-in spec, grouped by domain.
pub(crate) fn specs() -> Vec<&'static Spec> {
    [
        leash::SPECS,
        cloud::SPECS,
        vcs::SPECS,
        chat::SPECS,
        payments::SPECS,
        ai::SPECS,
        keys::SPECS,
        databases::SPECS,
        saas::SPECS,
        generic::SPECS,
    ]
    .into_iter()
    .flatten()
    .collect()
}

fn compile(spec: &Spec) -> Result<Rule, String> {
    let pattern = Pattern::new(spec.regex).map_err(|e| format!("{}: {e}", spec.id))?;
    let mut rule = Rule::from_parts(spec.id, Some(pattern))
        .with_description(spec.description)
        .with_keywords(spec.keywords);
    rule.entropy = spec.entropy;
    rule.check = spec.check;
    rule.tier = spec.tier;
    rule.reach = spec.reach;
    rule.kind = spec.kind;
    rule.builtin_filters = true;
    Ok(rule)
}

/// The built-in rules: Leash's own tokens first, then third-party formats.
pub fn rules() -> Vec<Rule> {
    specs()
        .into_iter()
        .filter_map(|s| compile(s).ok())
        .collect()
}

/// Ids of the built-in rules, in order.
pub fn rule_ids() -> Vec<&'static str> {
    specs().into_iter().map(|s| s.id).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::{ScanContext, Scanner};
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use std::sync::OnceLock;

    /// Replace each `%CRC%` with the base62 CRC32 of the characters between
    /// the preceding `_` and the marker (the GitHub/npm/Leash scheme), and
    /// each `%BAD%` with that checksum off by one in its last character.
    pub(crate) fn with_checksums(example: &str) -> String {
        let mut out = example.to_string();
        loop {
            let Some((at, bad)) = [("%CRC%", false), ("%BAD%", true)]
                .iter()
                .filter_map(|(m, bad)| out.find(m).map(|at| (at, *bad)))
                .min()
            else {
                return out;
            };
            let start = out[..at].rfind('_').map_or(0, |i| i + 1);
            let crc = crc32fast::hash(&out.as_bytes()[start..at]);
            let mut sum = leash_token::base62::encode_u32(crc, 6).into_bytes();
            if bad {
                let last = &mut sum[5];
                *last = if *last == b'z' {
                    b'0'
                } else if *last == b'9' {
                    b'A'
                } else if *last == b'Z' {
                    b'a'
                } else {
                    *last + 1
                };
            }
            out.replace_range(at..at + 5, &String::from_utf8_lossy(&sum));
        }
    }

    /// The test key ring: a JWT is "Leash" when its header names our test kid.
    pub(crate) fn test_leash_jwt(token: &str) -> bool {
        let header = token.split('.').next().unwrap_or_default();
        URL_SAFE_NO_PAD
            .decode(header)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| {
                v.get("kid")
                    .and_then(|k| k.as_str())
                    .map(|k| k == "leash-test-kid")
            })
            .unwrap_or(false)
    }

    fn scanner() -> &'static Scanner {
        static SCANNER: OnceLock<Scanner> = OnceLock::new();
        SCANNER.get_or_init(Scanner::builtin)
    }

    #[test]
    fn every_spec_compiles_and_ids_are_unique() {
        let specs = specs();
        for s in &specs {
            if let Err(e) = compile(s) {
                panic!("{e}");
            }
        }
        let mut ids: Vec<&str> = specs.iter().map(|s| s.id).collect();
        ids.sort_unstable();
        let before = ids.len();
        ids.dedup();
        assert_eq!(before, ids.len(), "duplicate rule ids");
        assert_eq!(rules().len(), specs.len());
        let third_party = specs
            .iter()
            .filter(|s| s.kind == FindingKind::ThirdParty)
            .count();
        assert!(third_party >= 100, "only {third_party} third-party rules");
    }

    /// The one table-driven test: every rule finds each of its positives and
    /// none of its negatives, scanned by the full built-in scanner (so other
    /// rules compete for the same bytes as they would in real use).
    #[test]
    fn every_rule_finds_its_positives_and_not_its_negatives() {
        let scanner = scanner();
        let check: &dyn Fn(&str) -> bool = &test_leash_jwt;
        let ctx = ScanContext::new().with_leash_jwt_check(check);
        let mut failures = Vec::new();
        let (mut positives, mut negatives) = (0, 0);
        for spec in specs() {
            positives += spec.positives.len();
            negatives += spec.negatives.len();
            if spec.positives.is_empty() || spec.negatives.is_empty() {
                failures.push(format!(
                    "{}: needs a positive and a negative example",
                    spec.id
                ));
            }
            for example in spec.positives {
                let text = with_checksums(example);
                let found = scanner.scan(text.as_bytes(), &ctx);
                if !found.iter().any(|f| f.rule_id == spec.id) {
                    let got: Vec<&str> = found.iter().map(|f| f.rule_id.as_str()).collect();
                    failures.push(format!(
                        "{}: missed positive {text:?} (found {got:?})",
                        spec.id
                    ));
                }
            }
            for example in spec.negatives {
                let text = with_checksums(example);
                let found = scanner.scan(text.as_bytes(), &ctx);
                if found.iter().any(|f| f.rule_id == spec.id) {
                    failures.push(format!("{}: matched negative {text:?}", spec.id));
                }
            }
        }
        println!(
            "{} rules: {positives} positive and {negatives} negative examples checked",
            specs().len()
        );
        assert!(
            failures.is_empty(),
            "{} failures:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
}
