//! Precision and recall over the labeled corpus in `tests/corpus/`.

use std::collections::BTreeSet;
use std::path::Path;

use leash_scan::{ScanContext, Scanner};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Label {
    file: String,
    line: usize,
    rule: String,
    kind: String,
}

fn kind_name(kind: leash_scan::FindingKind) -> String {
    serde_json::to_value(kind)
        .unwrap()
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn corpus_precision_and_recall_are_at_least_95_percent() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let labels: Vec<Label> =
        serde_json::from_str(&std::fs::read_to_string(root.join("labels.json")).unwrap()).unwrap();
    let expected: BTreeSet<(String, usize, String, String)> = labels
        .iter()
        .map(|l| (l.file.clone(), l.line, l.rule.clone(), l.kind.clone()))
        .collect();
    assert_eq!(expected.len(), labels.len(), "duplicate labels");

    let scanner = Scanner::builtin();
    let check: &dyn Fn(&str) -> bool = &crate::test_leash_jwt;
    let mut files: Vec<String> = labels.iter().map(|l| l.file.clone()).collect();
    collect_files(&root, &root, &mut files);
    files.sort();
    files.dedup();

    let mut found = BTreeSet::new();
    let mut bytes = 0;
    for file in &files {
        let text = std::fs::read(root.join(file)).unwrap();
        bytes += text.len();
        let ctx = ScanContext::new()
            .with_path(file)
            .with_leash_jwt_check(check);
        for f in scanner.scan(&text, &ctx) {
            found.insert((file.clone(), f.line, f.rule_id.clone(), kind_name(f.kind)));
        }
    }

    let true_positives = found.intersection(&expected).count();
    let false_positives: Vec<_> = found.difference(&expected).collect();
    let false_negatives: Vec<_> = expected.difference(&found).collect();
    let precision = true_positives as f64 / found.len().max(1) as f64;
    let recall = true_positives as f64 / expected.len().max(1) as f64;
    println!(
        "corpus: {} files, {bytes} bytes, {} labeled secrets, {} findings",
        files.len(),
        expected.len(),
        found.len()
    );
    println!(
        "corpus: precision {precision:.3}  recall {recall:.3}  (tp {true_positives}, fp {}, fn {})",
        false_positives.len(),
        false_negatives.len()
    );
    for fp in &false_positives {
        println!("  false positive: {fp:?}");
    }
    for fn_ in &false_negatives {
        println!("  missed: {fn_:?}");
    }
    assert!(precision >= 0.95, "precision {precision:.3}");
    assert!(recall >= 0.95, "recall {recall:.3}");
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_files(root, &path, out);
        } else {
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if rel != "labels.json" && rel != "generate.py" {
                out.push(rel);
            }
        }
    }
}
