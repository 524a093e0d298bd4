//! Inputs that must neither panic nor go quadratic: binary, invalid UTF-8,
//! one enormous line, many keyword hits, unterminated key blocks.

use std::time::Instant;

use leash_scan::{FindingKind, ScanContext, Scanner};

use crate::checksummed;

fn scanner() -> &'static Scanner {
    static S: std::sync::OnceLock<Scanner> = std::sync::OnceLock::new();
    S.get_or_init(Scanner::builtin)
}

#[test]
fn binary_input_is_skipped_and_reported() {
    let token = checksummed("ghp_", "Q7rT2mVx9KpL4nZc8WbY1sHd6FjA3e", true);
    let mut bytes = b"\x7fELF\x02\x01\x01\x00\x00".to_vec();
    bytes.extend_from_slice(token.as_bytes());
    let report = scanner().scan_report(&bytes, &ScanContext::new());
    assert!(report.stats.skipped_binary);
    assert!(report.findings.is_empty());
    // A NUL after the first 8 KiB does not make it binary.
    let mut late = vec![b'a'; 9000];
    late.push(0);
    late.extend_from_slice(format!("\n{token}\n").as_bytes());
    let report = scanner().scan_report(&late, &ScanContext::new());
    assert!(!report.stats.skipped_binary);
    assert_eq!(report.findings.len(), 1);
}

#[test]
fn invalid_utf8_around_a_secret_is_fine() {
    let token = checksummed("ghp_", "Q7rT2mVx9KpL4nZc8WbY1sHd6FjA3e", true);
    let mut bytes = vec![0xff, 0xfe, b'\n', 0xc3, b' '];
    bytes.extend_from_slice(token.as_bytes());
    bytes.extend_from_slice(&[b' ', 0xe2, 0x82]);
    let found = scanner().scan(&bytes, &ScanContext::new());
    assert_eq!(found.len(), 1);
    assert_eq!((found[0].line, found[0].column), (2, 3));
    assert_eq!(found[0].byte_range, 5..5 + token.len());
}

#[test]
fn a_ten_megabyte_line_with_keywords_everywhere_is_linear() {
    let token = checksummed("npm_", "Q7rT2mVx9KpL4nZc8WbY1sHd6FjA3e", true);
    // Dense keyword hits that never complete a match, then a real token at the end.
    let unit = "token= password: sk-proj- ghp_ -----BEGIN RSA PRIVATE KEY----- eyJ ";
    let mut line = unit.repeat(10 * 1024 * 1024 / unit.len());
    line.push_str(&token);
    let start = Instant::now();
    let report = scanner().scan_report(line.as_bytes(), &ScanContext::new());
    let elapsed = start.elapsed();
    println!(
        "10 MiB adversarial line: {elapsed:?}, {} keyword hits, {} windows",
        report.stats.keyword_hits, report.stats.windows
    );
    let ids: Vec<&str> = report.findings.iter().map(|f| f.rule_id.as_str()).collect();
    assert_eq!(ids, vec!["npm-access-token"]);
    assert_eq!(report.findings[0].line, 1);
}

#[test]
fn many_real_secrets_on_one_line_are_all_found() {
    let mut line = String::new();
    for i in 0..20_000 {
        let body = format!("Q7rT2mVx9KpL4nZc8WbY1sHd{i:06}");
        line.push_str(&checksummed("ghp_", &body, true));
        line.push(' ');
    }
    let found = scanner().scan(line.as_bytes(), &ScanContext::new());
    assert_eq!(found.len(), 20_000);
    assert!(
        found
            .windows(2)
            .all(|w| w[0].byte_range.end < w[1].byte_range.start)
    );
}

#[test]
fn unterminated_key_blocks_do_not_blow_up() {
    let block = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n";
    let text = block.repeat(20_000);
    let start = Instant::now();
    let found = scanner().scan(text.as_bytes(), &ScanContext::new());
    println!(
        "{} bytes of unterminated key blocks: {:?}",
        text.len(),
        start.elapsed()
    );
    assert!(found.is_empty());
}

#[test]
fn multi_line_private_key_is_found_on_its_first_line() {
    let body: String = (0..20)
        .map(|i| {
            format!(
                "{}\n",
                "MIIEpAIBAAKCAQEAq8Xr2LmZ7vTp4KwN9bYc3Dhf6GjS5uA1oQ9eR7tW2yU4iP0l"
                    .replace('q', &i.to_string())
            )
        })
        .collect();
    let text = format!(
        "# deploy key\n\n-----BEGIN RSA PRIVATE KEY-----\n{body}-----END RSA PRIVATE KEY-----\n"
    );
    let found = scanner().scan(text.as_bytes(), &ScanContext::new());
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].rule_id, "private-key");
    assert_eq!((found[0].line, found[0].column), (3, 1));
    assert!(
        found[0]
            .secret
            .expose()
            .ends_with("-----END RSA PRIVATE KEY-----")
    );
}

#[test]
fn leash_jwts_need_the_callbacks_say_so() {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    let header = B64.encode(br#"{"alg":"EdDSA","typ":"at+jwt","kid":"leash-test-kid"}"#);
    let payload = B64.encode(br#"{"iss":"https://leash.test","sub":"wl_1"}"#);
    let token = format!("{header}.{payload}.{}", "Zm9vYmFyYmF6".repeat(7));
    let text = format!("Authorization: Bearer {token}\n");
    let check: &dyn Fn(&str) -> bool = &crate::test_leash_jwt;
    let with = scanner().scan(
        text.as_bytes(),
        &ScanContext::new().with_leash_jwt_check(check),
    );
    assert_eq!(with.len(), 1);
    assert_eq!(with[0].kind, FindingKind::LeashJwt);
    assert_eq!(with[0].rule_id, "leash-jwt");
    // Without the callback it is just a JWT.
    let without = scanner().scan(text.as_bytes(), &ScanContext::new());
    assert_eq!(without.len(), 1);
    assert_eq!(without[0].rule_id, "jwt");
    assert_eq!(without[0].kind, FindingKind::ThirdParty);
}

#[test]
fn every_output_is_redacted() {
    let token = checksummed("lsh_", "Q7rT2mVx9KpL4nZc8WbY1sHd6FjA3eKs", true);
    let found = scanner().scan(
        format!("LEASH_TOKEN={token}").as_bytes(),
        &ScanContext::new(),
    );
    assert_eq!(found.len(), 1);
    let f = &found[0];
    assert_eq!(f.kind, FindingKind::LeashOpaque);
    assert_eq!(f.redacted, "lsh_…(42 chars)");
    let debug = format!("{f:?}");
    let json = serde_json::to_string(f).unwrap();
    for text in [&debug, &json, &f.secret.to_string()] {
        assert!(!text.contains(&token[4..]), "leaked in {text}");
        assert!(text.contains("lsh_…(42 chars)"));
    }
    assert_eq!(f.secret.expose(), token);
    assert_eq!(f.fingerprint.len(), 64);
    assert_eq!(
        f.fingerprint,
        hex::encode(leash_token::sha256(token.as_bytes()))
    );
}

#[test]
fn custom_rules_and_overrides() {
    let rule = leash_scan::Rule::new("acme-key", r"\bacme_[a-z0-9]{32}\b")
        .unwrap()
        .with_keywords(&["acme_"])
        .with_entropy(3.0);
    let scanner = Scanner::builtin_with(vec![rule]);
    let found = scanner.scan(
        b"ACME=acme_q8xr2lmz7vtp4kwn9byc3dhf6gjs5ua1",
        &ScanContext::new(),
    );
    assert_eq!(
        found.iter().map(|f| f.rule_id.as_str()).collect::<Vec<_>>(),
        vec!["acme-key"]
    );
    // Same id as a built-in replaces it.
    let off = leash_scan::Rule::new("github-pat", "never-matches-anything-here").unwrap();
    let scanner = Scanner::builtin_with(vec![off]);
    let token = checksummed("ghp_", "Q7rT2mVx9KpL4nZc8WbY1sHd6FjA3e", true);
    assert!(
        scanner
            .scan(token.as_bytes(), &ScanContext::new())
            .is_empty()
    );
}

#[test]
fn a_scanner_is_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Scanner>();
    let token = checksummed("ghp_", "Q7rT2mVx9KpL4nZc8WbY1sHd6FjA3e", true);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                assert_eq!(
                    scanner().scan(token.as_bytes(), &ScanContext::new()).len(),
                    1
                )
            });
        }
    });
}
