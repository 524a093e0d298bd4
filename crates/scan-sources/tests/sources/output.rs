//! JSON and SARIF: the documented shapes, and never a raw secret.

use serde_json::Value;

use leash_scan_sources::report::{self, SARIF_FINGERPRINT_KEY, SARIF_SCHEMA};
use leash_scan_sources::{CommitInfo, Report};

use crate::{aws_key, sources, write};

/// Findings from a directory (one in a sub-directory, one on a line after
/// non-ASCII text) plus one git finding.
fn mixed_report() -> (Report, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.env", format!("K={}\n", aws_key(1)));
    write(
        dir.path(),
        "sub dir/b.txt",
        format!("x\nété = {}\n", aws_key(2)),
    );
    let mut report = sources().scan_paths(&[dir.path()], &mut ());
    report.stats.errors.push(leash_scan_sources::ItemError {
        path: "gone.txt".into(),
        reason: "No such file or directory".into(),
    });
    let mut git = sources().scan_reader(format!("id {}\n", aws_key(3)).as_bytes(), &mut ());
    for f in &mut git.findings {
        f.location.source = leash_scan_sources::Source::Git;
        f.location.path = "deploy/ci.env".into();
        f.location.commit = Some(CommitInfo {
            id: "0123456789abcdef0123456789abcdef01234567".into(),
            author_name: "Alice".into(),
            author_email: "alice@example.com".into(),
            time: "2024-01-02T10:00:00+02:00".into(),
            seconds: 1_704_182_400,
        });
    }
    git.stats.commits = Some(7);
    report.merge(git);
    // The directory paths are absolute; make them relative as the CLI would.
    let root = format!("{}/", dir.path().to_string_lossy());
    for f in &mut report.findings {
        if let Some(rel) = f.location.path.strip_prefix(&root) {
            f.location.path = format!("./{rel}");
        }
    }
    (report, (1..=3).map(aws_key).collect())
}

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    k.sort();
    k
}

#[test]
fn json_has_the_documented_shape_and_no_raw_secret() {
    let (report, raw) = mixed_report();
    let json = report::to_json(&report);
    let text = json.to_string();
    for secret in &raw {
        assert!(!text.contains(secret.as_str()), "raw secret in JSON");
    }
    assert_eq!(keys(&json), ["findings", "secrets_found", "stats"]);
    assert_eq!(json["secrets_found"], 3);
    let stats = &json["stats"];
    assert_eq!(
        keys(stats),
        ["bytes", "commits", "errors", "items", "skipped_binary"]
    );
    assert_eq!(stats["commits"], 7);
    assert_eq!(stats["items"], 3);
    assert_eq!(stats["errors"][0]["path"], "gone.txt");

    let findings = json["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 3);
    for f in findings {
        assert_eq!(
            keys(f),
            [
                "description",
                "entropy",
                "fingerprint",
                "kind",
                "location",
                "redacted",
                "rule_id"
            ]
        );
        assert_eq!(f["kind"], "third_party");
        assert_eq!(f["fingerprint"].as_str().unwrap().len(), 64);
        assert!(f["redacted"].as_str().unwrap().starts_with("AKIA…"));
    }
    let file = &findings[0]["location"];
    assert_eq!(keys(file), ["column", "line", "path", "source"]);
    assert_eq!(file["source"], "file");
    let git = &findings[2]["location"];
    assert_eq!(
        keys(git),
        [
            "author", "column", "commit", "line", "path", "source", "time"
        ]
    );
    assert_eq!(git["source"], "git");
    assert_eq!(git["author"]["email"], "alice@example.com");
    assert_eq!(git["time"], "2024-01-02T10:00:00+02:00");
}

/// The parts of the SARIF 2.1.0 schema this output uses, checked by hand.
fn assert_valid_sarif(log: &Value) {
    assert_eq!(log["$schema"], SARIF_SCHEMA);
    assert_eq!(log["version"], "2.1.0");
    let runs = log["runs"].as_array().expect("runs is an array");
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    let driver = &run["tool"]["driver"];
    assert_eq!(driver["name"], "leash-scan");
    assert!(driver["version"].is_string());
    let rules = driver["rules"].as_array().expect("rules is an array");
    let ids: Vec<&str> = rules.iter().map(|r| r["id"].as_str().unwrap()).collect();
    for rule in rules {
        assert!(!rule["id"].as_str().unwrap().is_empty());
        assert!(rule["shortDescription"]["text"].is_string());
    }
    assert!(["utf16CodeUnits", "unicodeCodePoints"].contains(&run["columnKind"].as_str().unwrap()));
    for result in run["results"].as_array().expect("results is an array") {
        // message is required and must have text.
        assert!(!result["message"]["text"].as_str().unwrap().is_empty());
        let rule_id = result["ruleId"].as_str().unwrap();
        let index = result["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(ids[index], rule_id, "ruleIndex points at ruleId");
        assert!(["none", "note", "warning", "error"].contains(&result["level"].as_str().unwrap()));
        for location in result["locations"].as_array().unwrap() {
            let physical = &location["physicalLocation"];
            let uri = physical["artifactLocation"]["uri"].as_str().unwrap();
            assert!(!uri.is_empty() && !uri.contains('\\') && !uri.starts_with("./"));
            assert!(!uri.contains(' '), "URI is percent-encoded: {uri}");
            let region = &physical["region"];
            assert!(region["startLine"].as_u64().unwrap() >= 1);
            assert!(region["startColumn"].as_u64().unwrap() >= 1);
        }
        let fingerprints = result["partialFingerprints"].as_object().unwrap();
        assert!(fingerprints.values().all(Value::is_string));
        assert!(result["properties"].is_object());
    }
}

#[test]
fn sarif_has_the_required_structure_and_no_raw_secret() {
    let (report, raw) = mixed_report();
    let sarif = report::to_sarif(&report);
    let text = sarif.to_string();
    for secret in &raw {
        assert!(!text.contains(secret.as_str()), "raw secret in SARIF");
    }
    assert_valid_sarif(&sarif);

    let run = &sarif["runs"][0];
    assert_eq!(run["tool"]["driver"]["rules"].as_array().unwrap().len(), 1);
    assert_eq!(run["tool"]["driver"]["rules"][0]["id"], "aws-access-key-id");
    let results = run["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    for (result, finding) in results.iter().zip(&report.findings) {
        assert_eq!(result["level"], "error");
        assert_eq!(
            result["partialFingerprints"][SARIF_FINGERPRINT_KEY],
            finding.finding.fingerprint
        );
        assert!(
            result["message"]["text"]
                .as_str()
                .unwrap()
                .contains("AKIA…(20 chars)")
        );
    }
    let uri = |i: usize| {
        results[i]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"].clone()
    };
    assert_eq!(uri(0), "a.env");
    assert_eq!(uri(1), "sub%20dir/b.txt");
    assert_eq!(uri(2), "deploy/ci.env");
    // "été = " is 6 code points, 8 bytes: SARIF columns count code points.
    let region = &results[1]["locations"][0]["physicalLocation"]["region"];
    assert_eq!(
        (region["startLine"].as_u64(), region["startColumn"].as_u64()),
        (Some(2), Some(7))
    );
    assert_eq!(report.findings[1].location.column, 9);
    assert_eq!(
        results[2]["properties"]["commit"],
        "0123456789abcdef0123456789abcdef01234567"
    );
    assert_eq!(
        results[2]["properties"]["time"],
        "2024-01-02T10:00:00+02:00"
    );
    assert!(results[0]["properties"].get("commit").is_none());
}

#[test]
fn an_empty_report_is_valid_sarif() {
    let sarif = report::to_sarif(&Report::default());
    assert_valid_sarif(&sarif);
    assert_eq!(sarif["runs"][0]["results"].as_array().unwrap().len(), 0);
    let json = report::to_json(&Report::default());
    assert_eq!(json["secrets_found"], 0);
    assert!(json["stats"].get("commits").is_none());
}
