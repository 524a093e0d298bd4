//! The judgement calls: entropy, placeholders, documented examples, hashes,
//! identifiers, and the per-format validations of built-in rules.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};

use crate::rule::contains_ignore_ascii_case;

/// Shannon entropy of `bytes` in bits per byte (0 for empty input).
pub fn shannon_entropy(bytes: &[u8]) -> f64 {
    if bytes.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in bytes {
        counts[usize::from(b)] += 1;
    }
    let len = bytes.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / len;
            -p * p.log2()
        })
        .sum()
}

/// The redacted form used in every human-readable output: at most the first
/// four characters (fewer for short secrets), `…`, and the length.
pub fn redact(secret: &str) -> String {
    let n = secret.chars().count();
    let shown = (n / 4).min(4);
    let head: String = secret.chars().take(shown).collect();
    format!("{head}…({n} chars)")
}

/// Substrings that mark a value as a stand-in rather than a credential.
const PLACEHOLDER_WORDS: &[&str] = &[
    "example",
    "placeholder",
    "your_",
    "your-",
    "yourkey",
    "yourtoken",
    "yoursecret",
    "yourapi",
    "yourpass",
    "changeme",
    "change_me",
    "change-me",
    "replaceme",
    "replace_me",
    "replace-me",
    "dummy",
    "redacted",
    "notreal",
    "mock",
    "not_real",
    "not-a-real",
    "xxxxx",
    "****",
    "•••",
    "…",
    "...",
    "${",
    "{{",
    "}}",
    "%(",
    "<",
    ">",
    "12345678",
    "abcdefgh",
    "qwerty",
];

/// Documented example credentials that appear in vendor docs and tutorials.
const DOCUMENTED_EXAMPLES: &[&str] = &[
    "AKIAIOSFODNN7EXAMPLE",
    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY",
    // Stripe's documentation test key and jwt.io's sample signature.
    "sk_test_4eC39HqLyjWDarjtT1zdp7dc",
    "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
    // The Azure Storage emulator (Azurite) account key, published by Microsoft.
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==",
];

/// Whole values that are words, not secrets.
const PLACEHOLDER_VALUES: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "null",
    "none",
    "nil",
    "true",
    "false",
    "undefined",
    "empty",
    "string",
    "required",
    "optional",
    "hidden",
    "masked",
];

/// Is `secret` a placeholder, template variable or documented example?
pub fn is_placeholder(secret: &[u8]) -> bool {
    if PLACEHOLDER_WORDS
        .iter()
        .any(|w| contains_ignore_ascii_case(secret, w.as_bytes()))
    {
        return true;
    }
    if DOCUMENTED_EXAMPLES
        .iter()
        .any(|e| contains_ignore_ascii_case(secret, e.as_bytes()))
    {
        return true;
    }
    if PLACEHOLDER_VALUES
        .iter()
        .any(|v| secret.eq_ignore_ascii_case(v.as_bytes()))
    {
        return true;
    }
    // Environment and template references: $VAR, ${VAR}, %VAR%, @VAR@.
    if let Some(&first) = secret.first()
        && matches!(first, b'$' | b'%' | b'@')
    {
        return true;
    }
    // One character repeated for a third of the value: `sk_live_000000…`.
    let run = longest_run(secret);
    run >= 6 && run * 3 >= secret.len()
}

fn longest_run(bytes: &[u8]) -> usize {
    let mut best = 0;
    let mut current = 0;
    let mut prev = None;
    for &b in bytes {
        if Some(b) == prev {
            current += 1;
        } else {
            current = 1;
            prev = Some(b);
        }
        best = best.max(current);
    }
    best
}

fn is_hex(bytes: &[u8]) -> bool {
    !bytes.is_empty() && bytes.iter().all(u8::is_ascii_hexdigit)
}

/// A bare hex digest (MD5, SHA-1, SHA-224, SHA-256, SHA-384, SHA-512).
pub fn is_hex_digest(value: &[u8]) -> bool {
    matches!(value.len(), 32 | 40 | 56 | 64 | 96 | 128) && is_hex(value)
}

/// A UUID in its usual 8-4-4-4-12 form.
pub fn is_uuid(value: &[u8]) -> bool {
    if value.len() != 36 {
        return false;
    }
    value.iter().enumerate().all(|(i, &b)| match i {
        8 | 13 | 18 | 23 => b == b'-',
        _ => b.is_ascii_hexdigit(),
    })
}

/// Words in a key name that say the value is not itself a secret
/// (`token_url`, `password_hash`, `secret_name`, `csrf_token`, …).
const NON_SECRET_KEY_PARTS: &[&str] = &[
    "id",
    "ids",
    "name",
    "names",
    "type",
    "file",
    "path",
    "dir",
    "url",
    "uri",
    "endpoint",
    "field",
    "fields",
    "param",
    "length",
    "len",
    "size",
    "hash",
    "hashed",
    "digest",
    "sha",
    "sha1",
    "sha256",
    "md5",
    "checksum",
    "fingerprint",
    "salt",
    "prefix",
    "suffix",
    "format",
    "header",
    "env",
    "var",
    "policy",
    "version",
    "count",
    "label",
    "min",
    "max",
    "regex",
    "pattern",
    "expiry",
    "expires",
    "expiration",
    "ttl",
    "timeout",
    "enabled",
    "required",
    "mode",
    "ref",
    "arn",
    "kind",
    "hint",
    "reset",
    "prompt",
    "placeholder",
    "template",
    "csrf",
    "xsrf",
    "page",
    "next",
    "continuation",
    "cursor",
    "sync",
    "public",
    "pub",
    "key_id",
    "location",
    "store",
    "manager",
    "provider",
    "rotation",
    "algorithm",
    "alg",
    "usage",
];

/// A string shaped like a checksummed token (GitHub, npm, Leash opaque)
/// whose checksum is wrong: a typo or a made-up example, never a finding.
pub fn is_checksum_invalid_token(value: &[u8]) -> bool {
    const PREFIXES: &[&[u8]] = &[b"ghp_", b"gho_", b"ghu_", b"ghs_", b"ghr_", b"npm_"];
    let shaped = |prefix_len: usize, body_len: usize| {
        value.len() == prefix_len + body_len
            && value[prefix_len..].iter().all(u8::is_ascii_alphanumeric)
    };
    if PREFIXES.iter().any(|p| value.starts_with(p)) && shaped(4, 36) {
        return !crc32_base62_valid(value);
    }
    if value.starts_with(b"lsh_") && shaped(4, 38) {
        return std::str::from_utf8(value).map_or(true, |t| leash_token::opaque::parse(t).is_err());
    }
    false
}

/// A generic `key = value` match and what surrounds it.
#[derive(Debug, Clone, Copy)]
pub struct Assignment<'a> {
    /// The key (`DB_PASSWORD`, `"client_secret"` without quotes, `apiKey`).
    pub key: &'a [u8],
    /// The value: the candidate secret.
    pub value: &'a [u8],
    /// The value sat in quotes.
    pub quoted: bool,
    /// The byte before the key (`\n` at the start of input).
    pub before_key: u8,
    /// The byte after the value (`\n` at the end of input).
    pub after_value: u8,
}

/// Heuristics for a generic assignment: is the value plausibly a secret
/// assigned to the key? Rejects code (`tokens[0]`, `get(key)`, type
/// annotations, dotted names), templates, wildcards, hashes, UUIDs, paths,
/// file names, placeholders and low-entropy values.
pub fn plausible_assignment(a: &Assignment<'_>, password_like: bool) -> bool {
    let Assignment { key, value, .. } = *a;
    if value.len() > 300 || a.before_key == b':' {
        // `arn:aws:…:secret:name`, `AWS::IAM::AccessKey`: a namespace, not a key.
        return false;
    }
    if !a.quoted && value.iter().any(|b| b"(){}[]<>".contains(b)) {
        return false;
    }
    if value.iter().any(|b| b"{}".contains(b))
        || value.first() == Some(&b'*')
        || value.last() == Some(&b'*')
    {
        // Templates, f-strings and globs (`*.acme.dev`, `Profile*`).
        return false;
    }
    if !a.quoted
        && matches!(a.after_value, b',' | b')')
        && value
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_')
    {
        // `private_key: PKCS7PrivateKeyTypes,`: a type in a signature.
        return false;
    }
    if password_like && contains_ignore_ascii_case(value, b"password") {
        return false;
    }
    let key_lower = key.to_ascii_lowercase();
    let key_text = String::from_utf8_lossy(&key_lower);
    if key_text
        .split(['_', '-', '.'])
        .any(|part| NON_SECRET_KEY_PARTS.contains(&part))
    {
        return false;
    }
    // CamelCase keys (`tokenUrl`, `passwordHash`) split on case changes.
    if camel_parts(key)
        .iter()
        .any(|part| NON_SECRET_KEY_PARTS.contains(&part.as_str()))
    {
        return false;
    }
    if is_hex_digest(value) || is_uuid(value) || is_placeholder(value) {
        return false;
    }
    if value.starts_with(b"AAAAB3NzaC1")
        || value.starts_with(b"AAAAC3NzaC1")
        || value.starts_with(b"AAAAE2VjZHNh")
        || is_der_public_key(value)
    {
        // SSH public keys, and DER `SubjectPublicKeyInfo` in base64
        // (`MFkwEwYHKoZIzj0CAQY…`): verification keys, not secrets.
        return false;
    }
    if value.starts_with(b"/") || value.starts_with(b"./") || value.starts_with(b"~/") {
        return false;
    }
    if is_dotted_identifier(value) || looks_like_file_name(value) {
        return false;
    }
    let has_digit = value.iter().any(u8::is_ascii_digit);
    let has_lower = value.iter().any(u8::is_ascii_lowercase);
    let has_upper = value.iter().any(u8::is_ascii_uppercase);
    let has_symbol = value.iter().any(|b| b.is_ascii_punctuation());
    let classes = [has_digit, has_lower, has_upper, has_symbol]
        .iter()
        .filter(|&&x| x)
        .count();
    let entropy = shannon_entropy(value);
    if password_like {
        value.len() >= 8
            && entropy >= 2.8
            && ((has_digit && (has_lower || has_upper)) || classes >= 3)
    } else {
        value.len() >= 16 && entropy >= 3.5 && has_digit && (has_lower || has_upper)
    }
}

fn camel_parts(key: &[u8]) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    for &b in key {
        if b.is_ascii_uppercase() && !current.is_empty() {
            parts.push(std::mem::take(&mut current));
        }
        if b.is_ascii_alphanumeric() {
            current.push(char::from(b.to_ascii_lowercase()));
        } else if !current.is_empty() {
            parts.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        parts.push(current);
    }
    parts
}

/// `settings.SECRET_KEY`, `os.environ`, `antlr4.BufferedTokenStream`: code,
/// not a value. (A JWT made of identifier-like segments is the JWT rule's.)
fn is_dotted_identifier(value: &[u8]) -> bool {
    let text = String::from_utf8_lossy(value);
    text.contains('.')
        && text.split('.').all(|p| {
            let mut chars = p.chars();
            matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
}

fn looks_like_file_name(value: &[u8]) -> bool {
    const EXTENSIONS: &[&str] = &[
        ".pem", ".key", ".json", ".txt", ".yaml", ".yml", ".p12", ".pfx", ".crt", ".env", ".cfg",
        ".conf", ".ini", ".toml", ".gpg", ".asc", ".jks",
    ];
    let lower = value.to_ascii_lowercase();
    EXTENSIONS.iter().any(|e| lower.ends_with(e.as_bytes()))
}

/// Passwords in URLs and connection strings: defaults, references and the
/// user name repeated are not findings.
pub fn plausible_url_password(user: &[u8], password: &[u8]) -> bool {
    const DEFAULTS: &[&str] = &[
        "password", "pass", "passwd", "pwd", "secret", "changeme", "root", "admin", "postgres",
        "mysql", "guest", "test", "user", "username", "example", "redis", "rabbitmq", "mongo",
        "sa", "x",
    ];
    if password.is_empty() || password == user {
        return false;
    }
    if DEFAULTS
        .iter()
        .any(|d| password.eq_ignore_ascii_case(d.as_bytes()))
    {
        return false;
    }
    if is_placeholder(password) || password.starts_with(b"{") || password.starts_with(b"[") {
        return false;
    }
    password.len() >= 6 && shannon_entropy(password) >= 2.5
}

/// A private key block needs a real base64 body, not `...` or `XXXX`.
pub fn plausible_private_key(block: &[u8]) -> bool {
    let body: Vec<u8> = block
        .split(|&b| b == b'\n')
        .flat_map(|line| line.split(|&b| b == b'\\'))
        .filter(|line| !line.starts_with(b"-----") && !line.contains(&b':'))
        .flat_map(|line| line.iter().copied())
        .filter(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
        .collect();
    body.len() >= 64 && shannon_entropy(&body) >= 4.5 && longest_run(&body) < 8
}

/// `Authorization: Basic` credentials: base64 of `user:password` with a
/// plausible password.
pub fn plausible_basic_auth(value: &[u8]) -> bool {
    let Ok(decoded) = STANDARD.decode(value) else {
        return false;
    };
    let Some(colon) = decoded.iter().position(|&b| b == b':') else {
        return false;
    };
    let (user, password) = (&decoded[..colon], &decoded[colon + 1..]);
    plausible_url_password(user, password)
}

/// Standard base64 (padded or not) of a DER `SubjectPublicKeyInfo`: a
/// SEQUENCE that opens with an AlgorithmIdentifier (a SEQUENCE opening with
/// an OID) followed by a BIT STRING. A PKCS#8 private key opens with an
/// INTEGER instead, so it is never taken for one.
pub fn is_der_public_key(value: &[u8]) -> bool {
    let trimmed = value
        .strip_suffix(b"==")
        .or_else(|| value.strip_suffix(b"="))
        .unwrap_or(value);
    let Ok(der) = STANDARD_NO_PAD.decode(trimmed) else {
        return false;
    };
    // (tag, offset of the content, offset past the element)
    let element = |at: usize| -> Option<(u8, usize, usize)> {
        let tag = *der.get(at)?;
        let first = *der.get(at + 1)?;
        let (len, content) = if first < 0x80 {
            (usize::from(first), at + 2)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 3 {
                return None;
            }
            let len = der
                .get(at + 2..at + 2 + n)?
                .iter()
                .fold(0usize, |acc, &b| acc << 8 | usize::from(b));
            (len, at + 2 + n)
        };
        Some((tag, content, content.checked_add(len)?))
    };
    let spki = || -> Option<bool> {
        let (outer, body, _) = element(0)?;
        let (algorithm, oid_at, key_at) = element(body)?;
        let (oid, _, _) = element(oid_at)?;
        let (key, _, _) = element(key_at)?;
        Some(outer == 0x30 && algorithm == 0x30 && oid == 0x06 && key == 0x03)
    };
    spki().unwrap_or(false)
}

/// `value` is standard base64 decoding to exactly `len` bytes.
pub fn is_base64_of_len(value: &[u8], len: usize) -> bool {
    STANDARD.decode(value).is_ok_and(|d| d.len() == len)
}

fn decode_json_segment(segment: &[u8]) -> Option<serde_json::Value> {
    let trimmed: &[u8] = match segment.iter().position(|&b| b == b'=') {
        Some(i) => &segment[..i],
        None => segment,
    };
    let bytes = URL_SAFE_NO_PAD.decode(trimmed).ok()?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    value.is_object().then_some(value)
}

/// The `alg` of a JWT-shaped string whose header decodes to a JSON object.
pub fn jwt_alg(token: &[u8]) -> Option<String> {
    let header = token.split(|&b| b == b'.').next()?;
    let value = decode_json_segment(header)?;
    value.get("alg")?.as_str().map(str::to_string)
}

/// A JWT worth reporting without the caller's say-so: JSON header with a
/// real `alg`, JSON payload, a signature of plausible length.
pub fn plausible_jwt(token: &[u8]) -> bool {
    let mut parts = token.split(|&b| b == b'.');
    let (Some(_), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let Some(alg) = jwt_alg(token) else {
        return false;
    };
    !alg.eq_ignore_ascii_case("none")
        && decode_json_segment(payload).is_some()
        && signature.len() >= 16
}

/// GitHub/npm token checksum: `pfx_` + 30 base62 + base62(CRC32(those 30)).
pub fn crc32_base62_valid(token: &[u8]) -> bool {
    let Some(underscore) = token.iter().rposition(|&b| b == b'_') else {
        return false;
    };
    let body = &token[underscore + 1..];
    if body.len() != 36 || !body.iter().all(u8::is_ascii_alphanumeric) {
        return false;
    }
    let (random, sum) = body.split_at(30);
    let expected = leash_token::base62::encode_u32(crc32fast::hash(random), 6);
    expected.as_bytes() == sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entropy_of_simple_strings() {
        assert_eq!(shannon_entropy(b""), 0.0);
        assert_eq!(shannon_entropy(b"aaaa"), 0.0);
        assert!((shannon_entropy(b"ab") - 1.0).abs() < 1e-9);
        assert!(shannon_entropy(b"q8Xr2LmZ7vTp4KwN9bYc") > 4.0);
    }

    #[test]
    fn redaction_shows_at_most_four_characters() {
        assert_eq!(redact("lsh_0123456789abcdef"), "lsh_…(20 chars)");
        assert_eq!(redact("hunter22"), "hu…(8 chars)");
        assert_eq!(redact("abc"), "…(3 chars)");
        assert_eq!(redact("ключ-ключ-ключ-ключ"), "ключ…(19 chars)");
    }

    #[test]
    fn placeholders_and_examples() {
        for p in [
            "AKIAIOSFODNN7EXAMPLE",
            "your_api_key_here",
            "changeme",
            "<token>",
            "${GITHUB_TOKEN}",
            "{{ secrets.KEY }}",
            "sk_live_000000000000000000000000",
            "********",
            "$DB_PASSWORD",
        ] {
            assert!(is_placeholder(p.as_bytes()), "{p}");
        }
        for s in ["q8Xr2LmZ7vTp4KwN9bYc", "Tr0ub4dor&3-horse"] {
            assert!(!is_placeholder(s.as_bytes()), "{s}");
        }
    }

    #[test]
    fn hashes_and_uuids() {
        assert!(is_hex_digest(b"d41d8cd98f00b204e9800998ecf8427e"));
        assert!(!is_hex_digest(b"d41d8cd98f00b204e9800998ecf8427"));
        assert!(is_uuid(b"123e4567-e89b-12d3-a456-426614174000"));
        assert!(!is_uuid(b"123e4567e89b12d3a456426614174000xxxx"));
    }

    #[test]
    fn assignments() {
        let a = |key: &'static str, value: &'static str, quoted: bool| Assignment {
            key: key.as_bytes(),
            value: value.as_bytes(),
            quoted,
            before_key: b' ',
            after_value: b'\n',
        };
        assert!(plausible_assignment(
            &a("DB_PASSWORD", "Wq7!mZ2#rT9x", false),
            true
        ));
        assert!(!plausible_assignment(
            &a("password_hash", "Wq7!mZ2#rT9x", true),
            true
        ));
        assert!(!plausible_assignment(
            &a("tokenUrl", "Wq7mZ2rT9xQ4pL8nB3vK", true),
            false
        ));
        assert!(!plausible_assignment(
            &a("SECRET_KEY", "settings.secret_key", false),
            false
        ));
        let digest = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert!(!plausible_assignment(&a("api_token", digest, true), false));
        assert!(plausible_assignment(
            &a("api_token", "Wq7mZ2rT9xQ4pL8nB3vK", false),
            false
        ));
        assert!(!plausible_assignment(
            &a("token", "tokens[0123456789abcdefXYZ]", false),
            false
        ));
        assert!(plausible_assignment(
            &a("SECRET_KEY", "x7#kQ(2mZ)9^vLp&4tW=-R8n", true),
            false
        ));
        assert!(!plausible_assignment(
            &a("password", "Password123!", true),
            true
        ));
        let mut ns = a("secret", "A4BNetworkProfile9x", true);
        ns.before_key = b':';
        assert!(!plausible_assignment(&ns, false));
    }

    #[test]
    fn der_public_keys_are_recognised_and_private_keys_are_not() {
        // P-256, Ed25519 and RSA SubjectPublicKeyInfo (random key material).
        let p256 = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEf3xXpJAUqI9frI7gGjYJaLvw7oh+wadasUyNiUjPT5sgH2f0Aque3tz1lVQRB7hBv1Jt0VhiaIfxwl/O8MabHA==";
        let ed25519 = "MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=";
        let rsa = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxKLxoS2tFczGkPLPgizskuemMghRniWaoLcyehkd3qqGElvW/VDL5AaWTg0nLVkjRo9z+40RQzuVaE8AkAFmxZzow3x+VJYKdjykkJ0iT9wCS0DRTXu269V264Vf/3jvredZiKRkgwlL9xNAwxXFg0x/XFw005UWVRIkdgcKWTjpBP2dPwVZ4WWC+9aGVd+Gyn1o0CLelf4rEjGoXbAAEgAqeGUxrcIlbjXfbcmwIDAQAB";
        for key in [p256, ed25519, rsa] {
            assert!(is_der_public_key(key.as_bytes()), "{key}");
        }
        // PKCS#8 private key header (version INTEGER first), and plain tokens.
        let pkcs8 = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgevZzL1gdAFr88hb2OF/2NxApJCzGCEDdfSp6VQO30hyhRANCAAQRWz+jn65BtOMvdyHKcvjBeBSDZH2r1RTwjmYSi9R/zpBnuQ4EiMnCqfMPWiZqB4QdbAd0E7oH50VpuZ1P087G";
        for value in [pkcs8, "Wq7mZ2rT9xQ4pL8nB3vK", "MIIB", ""] {
            assert!(!is_der_public_key(value.as_bytes()), "{value}");
        }
    }

    #[test]
    fn crc32_checksum_matches_githubs_published_scheme() {
        // The worked example from the scheme's public description.
        assert!(crc32_base62_valid(
            b"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"
        ));
        assert!(!crc32_base62_valid(
            b"ghp_zQWBuTSOoRi4A9spHcVY5ncnsDkxkJ0mLq18"
        ));
        assert!(!crc32_base62_valid(b"ghp_short"));
    }

    #[test]
    fn jwt_shapes() {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(br#"{"sub":"42"}"#);
        let token = format!("{header}.{payload}.c2lnbmF0dXJlLW9mLXNvbWUtbGVuZ3Ro");
        assert!(plausible_jwt(token.as_bytes()));
        let none = URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#);
        assert!(!plausible_jwt(format!("{none}.{payload}.").as_bytes()));
        assert!(!plausible_jwt(b"eyJub3QganNvbg.eyJ4.abc"));
    }
}
