//! Import rules from gitleaks configuration files.
//!
//! Supported: `[[rules]]` with `id`, `description`, `regex`, `secretGroup`,
//! `keywords`, `entropy`, `path`, the old single `[rules.allowlist]` table
//! and the newer `[[rules.allowlists]]` array (`regexes`, `stopwords`,
//! `paths`, `commits`, `regexTarget`, `condition`), and global allowlists
//! (`[allowlist]`, `[[allowlists]]` with `targetRules`). `[extend]
//! useDefault = true` is reported in [`RuleSet::extends_default`] (pair the
//! rules with [`crate::Scanner::builtin_with`]); `extend.path` is refused
//! (this crate reads no files). Unknown fields such as `tags` are ignored.
//!
//! Differences from gitleaks worth knowing:
//! * A rule with keywords runs its regex only around keyword hits (the
//!   enclosing line), not over the whole file; gitleaks' own rules put their
//!   keywords inside the match, so they behave the same.
//! * Go regular expressions are translated where that is mechanical (`\Q…\E`,
//!   octal escapes, literal `{`, `[` and `&&` in classes) and refused with an
//!   error naming the rule and field where it is not (`\C`, backreferences).
//!   `\w`, `\d`, `\s`, `\b` and `(?i)` stay ASCII-only, as in Go.
//! * Commits cannot be matched by a text scanner: a `commits` criterion never
//!   matches (so an `AND` allowlist that lists commits never applies).
//! * Composite rules (`[[rules.required]]`) are refused.

use toml::{Table, Value};

use crate::rule::{Allowlist, Condition, Pattern, RegexTarget, Rule, RuleError};

/// Rules and global allowlists read from one gitleaks file.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    /// The rules, in file order.
    pub rules: Vec<Rule>,
    /// Global allowlists (`[allowlist]` and `[[allowlists]]`).
    pub allowlists: Vec<Allowlist>,
    /// `[extend] useDefault = true`: the file meant to add to the default rules.
    pub extends_default: bool,
}

impl RuleSet {
    /// The rules with each global allowlist attached to the rules it targets.
    pub fn into_rules(self) -> Vec<Rule> {
        let RuleSet {
            rules, allowlists, ..
        } = self;
        rules
            .into_iter()
            .map(|mut rule| {
                for al in &allowlists {
                    if al.target_rules.is_empty() || al.target_rules.iter().any(|t| t == rule.id())
                    {
                        rule.allowlists.push(al.clone());
                    }
                }
                rule
            })
            .collect()
    }
}

/// Parse a gitleaks TOML rule file.
///
/// ```
/// let set = leash_scan::gitleaks::parse_rules(r#"
/// [[rules]]
/// id = "acme-key"
/// regex = '''acme_[a-z0-9]{32}'''
/// keywords = ["acme_"]
/// "#).unwrap();
/// assert_eq!(set.rules[0].id(), "acme-key");
///
/// let err = leash_scan::gitleaks::parse_rules(r#"
/// [[rules]]
/// id = "aws-key"
/// regex = '''AKIA[0-9A-Z{16}'''
/// "#).unwrap_err();
/// assert!(err.to_string().starts_with("rule `aws-key`: field `regex`: "));
/// ```
pub fn parse_rules(toml_text: &str) -> Result<RuleSet, RuleError> {
    let table: Table = toml_text
        .parse()
        .map_err(|e: toml::de::Error| RuleError::Syntax(e.to_string().trim().to_string()))?;
    let mut set = RuleSet::default();

    if let Some(extend) = table.get("extend") {
        let extend = extend
            .as_table()
            .ok_or_else(|| config("extend", "must be a table"))?;
        if extend.contains_key("path") {
            return Err(config(
                "extend.path",
                "extending another file is not supported: merge the files or load both",
            ));
        }
        set.extends_default = match extend.get("useDefault") {
            None => false,
            Some(Value::Boolean(b)) => *b,
            Some(_) => return Err(config("extend.useDefault", "must be true or false")),
        };
    }

    if let Some(al) = table.get("allowlist") {
        let t = al
            .as_table()
            .ok_or_else(|| global(0, "allowlist", "must be a table"))?;
        set.allowlists.push(parse_allowlist(
            t,
            "",
            &|field, msg| global(0, field, msg),
            true,
        )?);
    }
    if let Some(als) = table.get("allowlists") {
        let arr = als
            .as_array()
            .ok_or_else(|| global(0, "allowlists", "must be an array of tables"))?;
        let offset = set.allowlists.len();
        for (i, al) in arr.iter().enumerate() {
            let index = offset + i;
            let t = al
                .as_table()
                .ok_or_else(|| global(index, "allowlists", "must be a table"))?;
            set.allowlists
                .push(parse_allowlist(t, "", &|f, m| global(index, f, m), true)?);
        }
    }

    if let Some(rules) = table.get("rules") {
        let arr = rules
            .as_array()
            .ok_or_else(|| config("rules", "must be an array of tables ([[rules]])"))?;
        for (i, rule) in arr.iter().enumerate() {
            let t = rule.as_table().ok_or_else(|| {
                RuleError::field(&format!("#{}", i + 1), "rules", "must be a table")
            })?;
            set.rules.push(parse_rule(i, t)?);
        }
    }
    Ok(set)
}

fn config(field: &str, message: &str) -> RuleError {
    RuleError::Config {
        field: field.to_string(),
        message: message.to_string(),
    }
}

fn global(index: usize, field: &str, message: &str) -> RuleError {
    RuleError::Allowlist {
        index,
        field: field.to_string(),
        message: message.to_string(),
    }
}

fn parse_rule(index: usize, t: &Table) -> Result<Rule, RuleError> {
    let id = match t.get("id") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(_) => {
            return Err(RuleError::field(
                &format!("#{}", index + 1),
                "id",
                "must be a non-empty string",
            ));
        }
        None => {
            return Err(RuleError::field(
                &format!("#{}", index + 1),
                "id",
                "missing",
            ));
        }
    };
    let err = |field: &str, message: &str| RuleError::field(&id, field, message);

    if t.contains_key("required") || t.contains_key("skipReport") {
        return Err(err("required", "composite rules are not supported"));
    }
    let regex = match optional_str(t, "regex").map_err(|m| err("regex", &m))? {
        Some(src) => Some(compile_go(src).map_err(|m| err("regex", &m))?),
        None => None,
    };
    let path = match optional_str(t, "path").map_err(|m| err("path", &m))? {
        Some(src) => Some(compile_go(src).map_err(|m| err("path", &m))?),
        None => None,
    };
    if regex.is_none() && path.is_none() {
        return Err(err("regex", "a rule needs `regex`, `path` or both"));
    }
    let mut rule = Rule::from_parts(&id, regex);
    rule.path = path;
    if let Some(d) = optional_str(t, "description").map_err(|m| err("description", &m))? {
        rule.description = d.to_string();
    }
    match t.get("secretGroup") {
        None => {}
        Some(Value::Integer(g)) => {
            let g = usize::try_from(*g).map_err(|_| err("secretGroup", "must not be negative"))?;
            if rule.regex.is_none() {
                return Err(err("secretGroup", "needs a `regex`"));
            }
            rule = rule.with_secret_group(g)?;
        }
        Some(_) => return Err(err("secretGroup", "must be an integer")),
    }
    match t.get("entropy") {
        None => {}
        Some(Value::Float(f)) if f.is_finite() && *f >= 0.0 => rule.entropy = Some(*f),
        #[allow(
            clippy::cast_precision_loss,
            reason = "entropy thresholds are small numbers"
        )]
        Some(Value::Integer(i)) if *i >= 0 => rule.entropy = Some(*i as f64),
        Some(_) => return Err(err("entropy", "must be a non-negative number")),
    }
    if let Some(kw) = t.get("keywords") {
        let words = string_array(kw).map_err(|(i, m)| err(&indexed("keywords", i), &m))?;
        rule = rule.with_keywords(&words);
    }
    if let Some(al) = t.get("allowlist") {
        let at = al
            .as_table()
            .ok_or_else(|| err("allowlist", "must be a table"))?;
        let parsed = parse_allowlist(at, "allowlist.", &|f, m| err(f, m), false)?;
        rule.allowlists.push(parsed);
    }
    if let Some(als) = t.get("allowlists") {
        let arr = als
            .as_array()
            .ok_or_else(|| err("allowlists", "must be an array of tables"))?;
        for (i, al) in arr.iter().enumerate() {
            let prefix = format!("allowlists[{i}].");
            let at = al
                .as_table()
                .ok_or_else(|| err(&format!("allowlists[{i}]"), "must be a table"))?;
            rule.allowlists
                .push(parse_allowlist(at, &prefix, &|f, m| err(f, m), false)?);
        }
    }
    Ok(rule)
}

type ErrFn<'a> = &'a dyn Fn(&str, &str) -> RuleError;

fn parse_allowlist(
    t: &Table,
    prefix: &str,
    err: ErrFn<'_>,
    global: bool,
) -> Result<Allowlist, RuleError> {
    let field = |name: &str| format!("{prefix}{name}");
    let mut al = Allowlist::default();
    if let Some(d) = optional_str(t, "description").map_err(|m| err(&field("description"), &m))? {
        al.description = d.to_string();
    }
    let patterns = |name: &str| -> Result<Vec<Pattern>, RuleError> {
        let Some(v) = t.get(name) else {
            return Ok(Vec::new());
        };
        let items = string_array(v).map_err(|(i, m)| err(&indexed(&field(name), i), &m))?;
        items
            .iter()
            .enumerate()
            .map(|(i, src)| compile_go(src).map_err(|m| err(&indexed(&field(name), Some(i)), &m)))
            .collect()
    };
    al.regexes = patterns("regexes")?;
    al.paths = patterns("paths")?;
    let strings = |name: &str| -> Result<Vec<String>, RuleError> {
        match t.get(name) {
            None => Ok(Vec::new()),
            Some(v) => string_array(v).map_err(|(i, m)| err(&indexed(&field(name), i), &m)),
        }
    };
    al.stopwords = strings("stopwords")?;
    al.commits = strings("commits")?;
    if global {
        al.target_rules = strings("targetRules")?;
    }
    al.regex_target =
        match optional_str(t, "regexTarget").map_err(|m| err(&field("regexTarget"), &m))? {
            None => RegexTarget::Secret,
            Some(s) if s.eq_ignore_ascii_case("secret") => RegexTarget::Secret,
            Some(s) if s.eq_ignore_ascii_case("match") => RegexTarget::Match,
            Some(s) if s.eq_ignore_ascii_case("line") => RegexTarget::Line,
            Some(s) => {
                return Err(err(
                    &field("regexTarget"),
                    &format!("`{s}` is not one of `secret`, `match`, `line`"),
                ));
            }
        };
    al.condition = match optional_str(t, "condition").map_err(|m| err(&field("condition"), &m))? {
        None => Condition::Or,
        Some(s) if s.eq_ignore_ascii_case("or") => Condition::Or,
        Some(s) if s.eq_ignore_ascii_case("and") => Condition::And,
        Some(s) => {
            return Err(err(
                &field("condition"),
                &format!("`{s}` is not `OR` or `AND`"),
            ));
        }
    };
    Ok(al)
}

fn indexed(field: &str, i: Option<usize>) -> String {
    match i {
        Some(i) => format!("{field}[{i}]"),
        None => field.to_string(),
    }
}

fn optional_str<'t>(t: &'t Table, key: &str) -> Result<Option<&'t str>, String> {
    match t.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(other) => Err(format!("must be a string, not {}", other.type_str())),
    }
}

/// An array of strings; on error, the offending index (if any) and why.
fn string_array(v: &Value) -> Result<Vec<String>, (Option<usize>, String)> {
    let arr = v.as_array().ok_or_else(|| {
        (
            None,
            format!("must be an array of strings, not {}", v.type_str()),
        )
    })?;
    arr.iter()
        .enumerate()
        .map(|(i, item)| {
            item.as_str().map(str::to_string).ok_or_else(|| {
                (
                    Some(i),
                    format!("must be a string, not {}", item.type_str()),
                )
            })
        })
        .collect()
}

fn compile_go(src: &str) -> Result<Pattern, String> {
    let translated = translate_go_regex(src)?;
    Pattern::new(&translated)
}

/// Rewrite a Go (RE2) regular expression into `regex` crate syntax, or say
/// why it cannot be.
pub fn translate_go_regex(src: &str) -> Result<String, String> {
    let chars: Vec<char> = src.chars().collect();
    let n = chars.len();
    let mut out = String::with_capacity(src.len() + 8);
    let mut i = 0;
    let mut in_class = false;
    // Index of the first character inside the current class (after `^`).
    let mut class_body_start = 0;
    while i < n {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '\\' {
            let Some(d) = next else {
                return Err("invalid regular expression: trailing backslash".to_string());
            };
            match d {
                'Q' if !in_class => {
                    let body_start = i + 2;
                    let mut j = body_start;
                    while j < n && !(chars[j] == '\\' && chars.get(j + 1) == Some(&'E')) {
                        j += 1;
                    }
                    for &lit in &chars[body_start..j] {
                        push_escaped(&mut out, lit);
                    }
                    i = if j < n { j + 2 } else { n };
                    continue;
                }
                'C' => {
                    return Err(
                        "Go's `\\C` (any single byte) is not supported; use `.` or `[\\x00-\\xFF]`"
                            .to_string(),
                    );
                }
                '0'..='7' => {
                    let followed_by_octal = matches!(chars.get(i + 2), Some('0'..='7'));
                    if d != '0' && !followed_by_octal {
                        return Err(format!(
                            "backreference `\\{d}` is not supported (RE2 has none either)"
                        ));
                    }
                    let mut j = i + 1;
                    let mut value = 0u32;
                    while j < n && j < i + 4 && matches!(chars[j], '0'..='7') {
                        value = value * 8 + chars[j].to_digit(8).unwrap_or(0);
                        j += 1;
                    }
                    out.push_str(&format!("\\x{{{value:X}}}"));
                    i = j;
                    continue;
                }
                '8' | '9' => {
                    return Err(format!(
                        "backreference `\\{d}` is not supported (RE2 has none either)"
                    ));
                }
                'p' | 'P' | 'x' if chars.get(i + 2) == Some(&'{') => {
                    // `\p{Greek}`, `\x{10FFFF}`: copy through the closing brace.
                    let close = chars[i + 2..].iter().position(|&c| c == '}');
                    let end = close.map_or(n, |j| i + 2 + j + 1);
                    out.extend(&chars[i..end]);
                    i = end;
                    continue;
                }
                _ => {
                    out.push(c);
                    out.push(d);
                    i += 2;
                    continue;
                }
            }
        }
        if in_class {
            match c {
                '[' if next == Some(':') => {
                    // POSIX class `[:alpha:]`: copy through `:]`.
                    let mut j = i + 2;
                    while j + 1 < n && !(chars[j] == ':' && chars[j + 1] == ']') {
                        j += 1;
                    }
                    if j + 1 < n {
                        out.extend(&chars[i..j + 2]);
                        i = j + 2;
                    } else {
                        out.push_str("\\[");
                        i += 1;
                    }
                    continue;
                }
                '[' => out.push_str("\\["),
                ']' if i == class_body_start => out.push_str("\\]"),
                ']' => {
                    in_class = false;
                    out.push(']');
                }
                '&' | '~' | '-' if next == Some(c) => {
                    // Rust reads `&&`, `~~`, `--` as set operations; Go as literals.
                    out.push(c);
                    out.push('\\');
                    out.push(c);
                    i += 2;
                    continue;
                }
                _ => out.push(c),
            }
            i += 1;
            continue;
        }
        match c {
            '[' => {
                in_class = true;
                out.push('[');
                i += 1;
                if chars.get(i) == Some(&'^') {
                    out.push('^');
                    i += 1;
                }
                class_body_start = i;
                continue;
            }
            '{' => {
                if let Some(len) = repetition_len(&chars[i..]) {
                    out.extend(&chars[i..i + len]);
                    i += len;
                    continue;
                }
                out.push_str("\\{");
            }
            '}' => out.push_str("\\}"),
            _ => out.push(c),
        }
        i += 1;
    }
    Ok(out)
}

/// Length of a counted repetition `{n}`, `{n,}` or `{n,m}` at the start of `s`.
fn repetition_len(s: &[char]) -> Option<usize> {
    let mut j = 1;
    let digits = |j: &mut usize| {
        let start = *j;
        while *j < s.len() && s[*j].is_ascii_digit() {
            *j += 1;
        }
        *j > start
    };
    if !digits(&mut j) {
        return None;
    }
    if s.get(j) == Some(&',') {
        j += 1;
        digits(&mut j);
    }
    (s.get(j) == Some(&'}')).then_some(j + 1)
}

fn push_escaped(out: &mut String, c: char) {
    if "\\.+*?()|[]{}^$#&-~".contains(c) {
        out.push('\\');
    }
    out.push(c);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ScanContext, Scanner};

    #[test]
    fn translates_what_is_mechanical() {
        assert_eq!(translate_go_regex(r"a\Q.*\Eb").unwrap(), r"a\.\*b");
        assert_eq!(translate_go_regex(r"\101").unwrap(), r"\x{41}");
        assert_eq!(translate_go_regex(r"x{abc").unwrap(), r"x\{abc");
        assert_eq!(translate_go_regex(r"x{2,3}").unwrap(), r"x{2,3}");
        assert_eq!(translate_go_regex(r"x{,3}").unwrap(), r"x\{,3\}");
        assert_eq!(translate_go_regex(r"[a[b]").unwrap(), r"[a\[b]");
        assert_eq!(translate_go_regex(r"[]a]").unwrap(), r"[\]a]");
        assert_eq!(translate_go_regex(r"[a&&b]").unwrap(), r"[a&\&b]");
        assert_eq!(
            translate_go_regex(r"[[:alpha:]_]").unwrap(),
            r"[[:alpha:]_]"
        );
        assert_eq!(
            translate_go_regex(r"\p{Greek}\x{41}").unwrap(),
            r"\p{Greek}\x{41}"
        );
        assert!(translate_go_regex(r"\C").unwrap_err().contains("\\C"));
        assert!(
            translate_go_regex(r"(a)\1")
                .unwrap_err()
                .contains("backreference")
        );
    }

    #[test]
    fn parses_rules_with_both_allowlist_styles_and_a_global_allowlist() {
        let set = parse_rules(
            r#"
title = "acme"
[extend]
useDefault = true

[allowlist]
description = "global"
paths = ['''(?i)\.md$''']
regexes = ['''^acme_0+$''']

[[rules]]
id = "acme-key"
description = "Acme API key"
regex = '''(?i)acme[_-]?key\s*=\s*["']?(acme_[a-z0-9]{32})'''
secretGroup = 1
entropy = 3
keywords = ["acme_"]
tags = ["acme"]
[rules.allowlist]
stopwords = ["deadbeef"]

[[rules]]
id = "acme-token"
regex = '''tok_[A-Za-z0-9]{20}'''
keywords = ["tok_"]
[[rules.allowlists]]
regexTarget = "line"
regexes = ['''# test fixture''']
[[rules.allowlists]]
condition = "AND"
paths = ['''^fixtures/''']
stopwords = ["tok_fixture"]

[[rules]]
id = "p12-file"
path = '''(?i)\.p12$'''
"#,
        )
        .unwrap();
        assert!(set.extends_default);
        assert_eq!(set.rules.len(), 3);
        assert_eq!(set.allowlists.len(), 1);
        let scanner = Scanner::new(set.into_rules());
        let ctx = ScanContext::new().with_path("src/config.py");

        let key = "acme_q8xr2lmz7vtp4kwn9byc3dhf6gjs5ua1";
        let found = scanner.scan(format!("ACME_KEY = \"{key}\"").as_bytes(), &ctx);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].rule_id, "acme-key");
        assert_eq!(found[0].secret.expose(), key);

        // Rule allowlist (old style): stopword.
        let stop = "acme_q8xr2lmz7vtpdeadbeef9byc3dhf6gjs";
        assert!(
            scanner
                .scan(format!("acme_key={stop}").as_bytes(), &ctx)
                .is_empty()
        );
        // Global allowlist: path.
        let md = ScanContext::new().with_path("docs/README.md");
        assert!(
            scanner
                .scan(format!("acme_key={key}").as_bytes(), &md)
                .is_empty()
        );

        // New-style allowlists: line target, and AND of path + stopword.
        let tok = "tok_Q8xR2LmZ7vTp4KwN9bYc";
        assert_eq!(scanner.scan(tok.as_bytes(), &ctx).len(), 1);
        assert!(
            scanner
                .scan(format!("{tok} # test fixture").as_bytes(), &ctx)
                .is_empty()
        );
        let fixture = "tok_fixtureQ8xR2LmZ7vTp4";
        assert_eq!(scanner.scan(fixture.as_bytes(), &ctx).len(), 1);
        let in_fixtures = ScanContext::new().with_path("fixtures/a.txt");
        assert!(scanner.scan(fixture.as_bytes(), &in_fixtures).is_empty());

        // Path-only rule.
        let p12 = ScanContext::new().with_path("certs/client.p12");
        let found = scanner.scan(b"binary-ish but not NUL", &p12);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].rule_id, "p12-file");
    }

    #[test]
    fn errors_name_the_rule_and_the_field() {
        let cases = [
            (
                "[[rules]]\nid = \"aws-key\"\nregex = '''AKIA[A-Z'''",
                "rule `aws-key`: field `regex`: invalid regular expression",
            ),
            (
                "[[rules]]\nid = \"x\"\nregex = '''a\\C'''",
                "rule `x`: field `regex`: Go's `\\C`",
            ),
            ("[[rules]]\nregex = 'a'", "rule `#1`: field `id`: missing"),
            (
                "[[rules]]\nid = \"x\"",
                "rule `x`: field `regex`: a rule needs",
            ),
            (
                "[[rules]]\nid = \"x\"\nregex = '(a)'\nsecretGroup = 3",
                "rule `x`: field `secretGroup`: group 3 does not exist",
            ),
            (
                "[[rules]]\nid = \"x\"\nregex = 'a'\nentropy = \"high\"",
                "rule `x`: field `entropy`",
            ),
            (
                "[[rules]]\nid = \"x\"\nregex = 'a'\nkeywords = [\"a\", 3]",
                "rule `x`: field `keywords[1]`: must be a string",
            ),
            (
                "[[rules]]\nid = \"x\"\nregex = 'a'\n[[rules.allowlists]]\nregexes = ['ok', '(']",
                "rule `x`: field `allowlists[0].regexes[1]`: invalid regular expression",
            ),
            (
                "[[rules]]\nid = \"x\"\nregex = 'a'\n[rules.allowlist]\nregexTarget = \"commit\"",
                "rule `x`: field `allowlist.regexTarget`",
            ),
            (
                "[allowlist]\npaths = ['[']",
                "global allowlist 0: field `paths[0]`",
            ),
            ("[extend]\npath = \"base.toml\"", "field `extend.path`"),
            ("[[rules]\nid = 1", "not valid TOML"),
        ];
        for (text, expected) in cases {
            let err = parse_rules(text).unwrap_err().to_string();
            assert!(
                err.starts_with(expected),
                "{text:?}\n  gave {err:?}\n  expected {expected:?}"
            );
        }
    }

    #[test]
    fn re2_syntax_seen_in_rule_files_compiles() {
        // Constructs rule files use: scoped flags, dot-all groups, named
        // groups, hex escapes, lazy and counted repetition, `\z`, POSIX classes.
        for src in [
            r"(?i)[\w.-]{0,50}?(?:acme)(?:[ \t\w.-]{0,20})[\s'\x22]{0,3}(?:=|:{1,3}=|\|\||=>)",
            r"(?-i:ACME|[Aa]cme)_(?P<kind>live|test)_[a-z0-9]{24}",
            r"\bkind:[ \t]*secret(?s:.){0,200}?\bdata:",
            r"\bcurl\b(?:.*?|.*?(?:[\r\n]{1,2}.*?){1,5})[ \t\n\r](?:-H|--header)",
            r"(?:[^\w-]|\z)",
            r"[[:alnum:]]{8}\x60",
            r"\p{Greek}+",
        ] {
            if let Err(e) = compile_go(src) {
                panic!("{src}: {e}");
            }
        }
    }

    #[test]
    fn gitleaks_style_generic_rule_compiles_and_works() {
        // The shape of gitleaks' own context rules: lazy prefixes, nested
        // case-insensitivity, `\x60`, a first non-empty group as the secret.
        let set = parse_rules(
            r#"
[[rules]]
id = "acme-api-token"
regex = '''(?i)[\w.-]{0,50}?(?:acme)(?:[ \t\w.-]{0,20})[\s'"]{0,3}(?:=|>|:{1,3}=|\|\||:|=>|\?=|,)[\x60'"\s=]{0,5}([a-z0-9]{32})(?:[\x60'"\s;]|\\[nr]|$)'''
keywords = ["acme"]
"#,
        )
        .unwrap();
        let scanner = Scanner::new(set.into_rules());
        let found = scanner.scan(
            b"ACME_TOKEN = 'q8xr2lmz7vtp4kwn9byc3dhf6gjs5ua1'\n",
            &ScanContext::new(),
        );
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].secret.expose(), "q8xr2lmz7vtp4kwn9byc3dhf6gjs5ua1");
    }
}
