//! Property tests: nothing input can reach panics.

use leash_scan::{ScanContext, Scanner, gitleaks};
use proptest::prelude::*;

fn scanner() -> &'static Scanner {
    static S: std::sync::OnceLock<Scanner> = std::sync::OnceLock::new();
    S.get_or_init(Scanner::builtin)
}

/// Fragments that reach deep into rules: prefixes, assignments, key armour.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,40}",
        any::<Vec<u8>>().prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        Just("ghp_".to_string()),
        Just("npm_".to_string()),
        Just("lsh_".to_string()),
        Just("password = ".to_string()),
        Just("api_key: \"".to_string()),
        Just("eyJhbGciOiJIUzI1NiJ9.".to_string()),
        Just("-----BEGIN RSA PRIVATE KEY-----\n".to_string()),
        Just("-----END RSA PRIVATE KEY-----".to_string()),
        Just("postgres://u:".to_string()),
        Just("Authorization: Basic ".to_string()),
        Just("\n".to_string()),
        "[A-Za-z0-9+/=_-]{0,80}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn scan_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let report = scanner().scan_report(&bytes, &ScanContext::new().with_path("x.env"));
        for f in &report.findings {
            prop_assert!(f.byte_range.end <= bytes.len());
        }
    }

    #[test]
    fn scan_never_panics_on_secret_shaped_text(parts in proptest::collection::vec(fragment(), 0..40)) {
        let text = parts.concat();
        let check: &dyn Fn(&str) -> bool = &|t: &str| t.len().is_multiple_of(2);
        let found = scanner().scan(text.as_bytes(), &ScanContext::new().with_leash_jwt_check(check));
        for f in &found {
            prop_assert!(f.byte_range.end <= text.len());
            prop_assert!(f.line >= 1 && f.column >= 1);
            prop_assert!(!f.redacted.is_empty());
        }
    }

    #[test]
    fn gitleaks_parser_never_panics_on_arbitrary_text(text in "\\PC{0,400}") {
        let _ = gitleaks::parse_rules(&text);
    }

    #[test]
    fn gitleaks_parser_never_panics_on_rule_shaped_text(
        id in "[a-z-]{0,12}",
        regex in "[ -~]{0,40}",
        group in -2i64..4,
        entropy in "[0-9a-z.\"-]{1,5}",
        allow in "[ -~]{0,20}",
    ) {
        let text = format!(
            "[[rules]]\nid = \"{id}\"\nregex = '''{regex}'''\nsecretGroup = {group}\nentropy = {entropy}\n\
             [[rules.allowlists]]\nregexes = ['''{allow}''']\ncondition = \"AND\"\n"
        );
        if let Ok(set) = gitleaks::parse_rules(&text) {
            let scanner = Scanner::new(set.into_rules());
            let _ = scanner.scan(regex.as_bytes(), &ScanContext::new());
        }
    }
}
