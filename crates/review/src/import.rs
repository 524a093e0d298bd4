//! `leash import`: exports of third-party credentials, parsed into inventory
//! records.
//!
//! Security teams export the non-human credentials their providers know
//! about (OAuth app grants, static API keys, service-account keys) and hand
//! the file to Leash, which records each one as an *external token*: a token
//! Leash did not mint but must account for. [`parse`] turns the bytes of one
//! such file into [`ImportRecord`]s.
//!
//! The key design choice: **a file is imported whole or not at all.** The
//! whole file is parsed and validated before anything is returned; the first
//! bad record makes [`parse`] answer an [`ImportError`] naming its line and
//! saying what to change, and the caller imports nothing from that file.
//!
//! Formats handled (one format per file, detected from the first record's
//! fields or the CSV header):
//! - **generic JSON** — an array of objects, an object holding the array in
//!   one of `credentials`, `items`, `tokens` or `keys`, or JSON lines (one
//!   object per line, blank lines allowed);
//! - **generic CSV** — RFC 4180: a header row, then one credential per row;
//! - **GitHub organisation credential authorizations** — the JSON array
//!   answered by `GET /orgs/{org}/credential-authorizations`;
//! - **AWS IAM credential report** — the CSV from
//!   `aws iam get-credential-report` (one record per active access key);
//! - **Google Cloud service-account keys** — the JSON array printed by
//!   `gcloud iam service-accounts keys list --iam-account SA --format=json`
//!   (user-managed, enabled keys only).
//!
//! [`Format::Auto`] picks JSON when the first non-whitespace byte is `[` or
//! `{`, CSV otherwise. A UTF-8 byte-order mark is ignored.
//!
//! # Generic fields
//!
//! Field names are matched case-insensitively; `-`, spaces and camelCase
//! word breaks count as `_` (`Owner Email`, `owner-email` and `ownerEmail`
//! are all `owner_email`). When several names for one field are present, the
//! first non-empty one in the order below wins. Unknown fields are ignored.
//!
//! | field | also accepted | |
//! |---|---|---|
//! | `name` | `id`, `credential`, `label`, `title` | required; unique in the file; at most 200 characters |
//! | `kind` | `type`, `credential_type` | required: `oauth_grant`, `api_key`, `service_account_key` (see [`CredentialKind`]) |
//! | `provider` | `source`, `vendor`, `platform` | lowercased; `unknown` when absent |
//! | `owner` | `owner_email`, `owner_name`, `user`, `login`, `created_by` | empty, `-`, `none`, `null` mean nobody |
//! | `scopes` | `scope`, `permissions`, `roles` | a JSON array, or text split on spaces, commas or semicolons |
//! | `created` | `created_at`, `creation_time`, `issued_at` | a timestamp |
//! | `last_used` | `last_used_at`, `last_accessed`, `last_used_date` | a timestamp |
//! | `expires` | `expires_at`, `expiry`, `valid_before` | a timestamp |
//! | `stored_in` | `location`, `stored_at`, `secret_path`, `vault_path` | where the secret lives |
//! | `fingerprint` | `sha256` | the hex SHA-256 of the secret (64 hex characters) |
//! | `key_id` | `access_key_id`, `credential_id`, `key` | the provider's non-secret key identifier |
//! | `workloads` | `workload`, `apps`, `used_by` | like `scopes` |
//!
//! Timestamps are RFC 3339 (`2026-03-01T12:00:00Z`, offsets and fractional
//! seconds allowed), a bare date (`2026-03-01`, midnight UTC), or unix
//! seconds or milliseconds as a JSON number or a string of digits (a number
//! above 10^11 is milliseconds). Empty, `N/A`, `no_information`,
//! `not_supported`, `none`, `null`, `never` and `-` mean "not known"; so do
//! the "zero" sentinels `0` and `0001-01-01T00:00:00Z`, and an expiry in the
//! year 9999 means "never expires".
//!
//! Exports must not carry secrets: a field called `secret`, `token`,
//! `password`, `private_key` or `private_key_data` (or `client_secret`,
//! `secret_access_key`, `secret_key`, `access_token`, `refresh_token`) is
//! refused, whatever its value, and its value is never echoed.
//!
//! # Fingerprints
//!
//! Every record has a fingerprint: the `fingerprint` given in the export, or,
//! when only a `key_id` is known, the hex SHA-256 of
//! `"leash-key-id:" + provider + ":" + key_id`. The derived one is stable
//! across re-imports of the same credential, so an inventory entry keeps its
//! identity, but only a fingerprint of the real secret lets the leak scanner
//! match the secret when it shows up somewhere. The three provider exports
//! never carry one, so their records always use the derived fingerprint.
//!
//! # Example
//!
//! ```
//! use leash_review::import::{parse, CredentialKind, Format};
//!
//! let csv = "name,kind,provider,owner,key_id,scopes\n\
//!            deploy-bot,api_key,GitHub,alice@example.com,12345,repo read:org\n";
//! let records = parse(csv.as_bytes(), Format::Auto)?;
//! assert_eq!(records.len(), 1);
//! assert_eq!(records[0].line, 2);
//! assert_eq!(records[0].kind, CredentialKind::ApiKey);
//! assert_eq!(records[0].provider, "github");
//! assert_eq!(records[0].scopes, ["repo", "read:org"]);
//! assert_eq!(records[0].fingerprint.len(), 64);
//! # Ok::<(), leash_review::import::ImportError>(())
//! ```

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

use aws_lc_rs::digest::{SHA256, digest};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Number;
use time::format_description::well_known::Rfc3339;
use time::{Date, Month, OffsetDateTime};

/// The most records one file may hold. A file with more is refused at the
/// line of the first record over the limit.
pub const MAX_RECORDS: usize = 100_000;

/// The most characters in a record's name.
const MAX_NAME_CHARS: usize = 200;

/// The most distinct scopes (and, likewise, workloads) in one record.
const MAX_LIST_ITEMS: usize = 256;

/// What kind of credential an external token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    /// A grant to an OAuth app (or a GitHub app): a token issued on a user's
    /// or an organisation's behalf.
    OauthGrant,
    /// A static API key or personal access token.
    ApiKey,
    /// A key of a cloud service account.
    ServiceAccountKey,
}

impl CredentialKind {
    /// The canonical name: `oauth_grant`, `api_key` or
    /// `service_account_key`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::OauthGrant => "oauth_grant",
            Self::ApiKey => "api_key",
            Self::ServiceAccountKey => "service_account_key",
        }
    }
}

impl fmt::Display for CredentialKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A credential kind that [`CredentialKind::from_str`] does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown credential kind {given:?}: use `oauth_grant`, `api_key` or `service_account_key`")]
pub struct UnknownCredentialKind {
    /// The text that was given.
    pub given: String,
}

impl FromStr for CredentialKind {
    type Err = UnknownCredentialKind;

    /// Reads a canonical name or a common alias, case-insensitively:
    /// `oauth`, `oauth_app` (OAuth grant); `pat`, `personal_access_token`
    /// (API key); `service_account` (service-account key).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match normalize_name(s).as_str() {
            "oauth_grant" | "oauth" | "oauth_app" => Ok(Self::OauthGrant),
            "api_key" | "pat" | "personal_access_token" => Ok(Self::ApiKey),
            "service_account_key" | "service_account" => Ok(Self::ServiceAccountKey),
            _ => Err(UnknownCredentialKind {
                given: s.to_owned(),
            }),
        }
    }
}

/// How to read the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// JSON when the first non-whitespace byte is `[` or `{`, else CSV.
    Auto,
    /// A JSON array, a wrapper object, or JSON lines.
    Json,
    /// RFC 4180 CSV with a header row.
    Csv,
}

/// One external credential, as read from an export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportRecord {
    /// The 1-based line of the file where this record starts.
    pub line: usize,
    /// A unique, human-readable inventory name (non-empty, at most 200
    /// characters).
    pub name: String,
    /// What kind of credential it is.
    pub kind: CredentialKind,
    /// Who issued it, lowercase (`github`, `aws`, `gcp`, `slack`…);
    /// `unknown` when the export does not say.
    pub provider: String,
    /// The owner's name or email as written in the export; `None` when the
    /// export names nobody.
    pub owner: Option<String>,
    /// Scopes as given: trimmed, deduplicated, in order; at most 256.
    pub scopes: Vec<String>,
    /// When it was created, in unix epoch milliseconds.
    pub created_at: Option<i64>,
    /// When it was last used, in unix epoch milliseconds.
    pub last_used_at: Option<i64>,
    /// When it expires, in unix epoch milliseconds; `None` when it never
    /// does or the export does not say.
    pub expires_at: Option<i64>,
    /// Where the secret lives (a vault path, a CI secret name…).
    pub stored_in: Option<String>,
    /// Lowercase hex SHA-256 (64 characters): of the secret when the export
    /// gives it, else derived from the key id (see the module docs).
    pub fingerprint: String,
    /// The provider's non-secret key identifier, when known.
    pub key_id: Option<String>,
    /// Names of the workloads or apps that use it, when the export says.
    pub workloads: Vec<String>,
}

/// Why a file was refused: the line of the first bad record, what was wrong
/// and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ImportError {
    /// The 1-based line of the file.
    pub line: usize,
    /// What was wrong and what to do.
    pub message: String,
}

impl ImportError {
    fn new(line: usize, message: impl Into<String>) -> Self {
        Self {
            line,
            message: message.into(),
        }
    }
}

/// Parses and validates a whole export.
///
/// Answers every record of the file, or the first problem found: invalid
/// UTF-8, malformed JSON or CSV, a missing required field, a bad timestamp
/// or fingerprint, a field that would carry a secret, two records with the
/// same name or fingerprint, more than [`MAX_RECORDS`] records, or no
/// records at all. A provider export whose entries are all skipped (for
/// example an AWS credential report without an active access key) is not an
/// error: it answers no records.
pub fn parse(input: &[u8], format: Format) -> Result<Vec<ImportRecord>, ImportError> {
    let text = std::str::from_utf8(input).map_err(|e| {
        ImportError::new(
            line_of(input, e.valid_up_to()),
            "the file is not valid UTF-8: export it again, or save it as UTF-8, and import it again",
        )
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let Some(first) = text.bytes().find(|b| !b.is_ascii_whitespace()) else {
        return Err(ImportError::new(
            1,
            "no records: the file is empty; export at least one credential and import it again",
        ));
    };
    let json = match format {
        Format::Json => true,
        Format::Csv => false,
        Format::Auto => matches!(first, b'[' | b'{'),
    };
    let mut sink = Sink::default();
    if json {
        parse_json(text, &mut sink)?;
    } else {
        parse_csv(text, &mut sink)?;
    }
    Ok(sink.records)
}

/// Collects records, enforcing the limit and uniqueness in one file.
#[derive(Default)]
struct Sink {
    records: Vec<ImportRecord>,
    /// Name → line of the record that has it.
    names: HashMap<String, usize>,
    /// Fingerprint → index in `records`.
    fingerprints: HashMap<String, usize>,
    /// Entries read from the file, including those a provider format skips.
    entries: usize,
}

impl Sink {
    fn push(&mut self, record: ImportRecord) -> Result<(), ImportError> {
        if self.records.len() >= MAX_RECORDS {
            return Err(ImportError::new(
                record.line,
                format!(
                    "more than {MAX_RECORDS} records in one file: split the export into files of at most {MAX_RECORDS} records"
                ),
            ));
        }
        if let Some(first) = self.names.get(&record.name) {
            return Err(ImportError::new(
                record.line,
                format!(
                    "name {} is already used by the record on line {first}: names must be unique in a file; rename one of them",
                    shown(&record.name)
                ),
            ));
        }
        if let Some(first) = self
            .fingerprints
            .get(&record.fingerprint)
            .and_then(|&i| self.records.get(i))
        {
            return Err(ImportError::new(
                record.line,
                format!(
                    "same fingerprint as {} on line {}: a credential must appear once in a file; remove the duplicate or fix its fingerprint or key id",
                    shown(&first.name),
                    first.line
                ),
            ));
        }
        self.names.insert(record.name.clone(), record.line);
        self.fingerprints
            .insert(record.fingerprint.clone(), self.records.len());
        self.records.push(record);
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Field names

const NAME: &[&str] = &["name", "id", "credential", "label", "title"];
const KIND: &[&str] = &["kind", "type", "credential_type"];
const PROVIDER: &[&str] = &["provider", "source", "vendor", "platform"];
const OWNER: &[&str] = &[
    "owner",
    "owner_email",
    "owner_name",
    "user",
    "login",
    "created_by",
];
const SCOPES: &[&str] = &["scopes", "scope", "permissions", "roles"];
const CREATED: &[&str] = &["created", "created_at", "creation_time", "issued_at"];
const LAST_USED: &[&str] = &[
    "last_used",
    "last_used_at",
    "last_accessed",
    "last_used_date",
];
const EXPIRES: &[&str] = &["expires", "expires_at", "expiry", "valid_before"];
const STORED_IN: &[&str] = &[
    "stored_in",
    "location",
    "stored_at",
    "secret_path",
    "vault_path",
];
const FINGERPRINT: &[&str] = &["fingerprint", "sha256"];
const KEY_ID: &[&str] = &["key_id", "access_key_id", "credential_id", "key"];
const WORKLOADS: &[&str] = &["workloads", "workload", "apps", "used_by"];

/// Fields that would carry a secret; refused whatever their value.
const SECRET_FIELDS: &[&str] = &[
    "secret",
    "token",
    "password",
    "private_key",
    "private_key_data",
    "client_secret",
    "secret_access_key",
    "secret_key",
    "access_token",
    "refresh_token",
];

/// Fields of a wrapper object that may hold the array of records.
const WRAPPERS: &[&str] = &["credentials", "items", "tokens", "keys"];

/// Lowercase; `-`, spaces and camelCase word breaks become `_`; runs of
/// separators collapse.
fn normalize_name(name: &str) -> String {
    normalize_key(name).into_owned()
}

/// [`normalize_name`], borrowing a name that is already normal (the usual
/// case: most exports use snake_case).
fn normalize_key(name: &str) -> Cow<'_, str> {
    let normal = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !name.starts_with('_')
        && !name.contains("__");
    if normal {
        return Cow::Borrowed(name);
    }
    let mut out = String::with_capacity(name.len() + 4);
    let mut after_lower = false;
    for c in name.trim().chars() {
        if matches!(c, '-' | ' ' | '_') {
            if !out.is_empty() && !out.ends_with('_') {
                out.push('_');
            }
            after_lower = false;
        } else if c.is_uppercase() {
            if after_lower {
                out.push('_');
            }
            out.extend(c.to_lowercase());
            after_lower = false;
        } else {
            out.push(c);
            after_lower = c.is_lowercase() || c.is_ascii_digit();
        }
    }
    Cow::Owned(out)
}

/// Text from the file, quoted and cut short, for an error message.
fn shown(text: &str) -> String {
    const MAX: usize = 60;
    let mut cut: String = text.chars().take(MAX).collect();
    if text.chars().nth(MAX).is_some() {
        cut.push('…');
    }
    format!("{cut:?}")
}

fn list_names(aliases: &[&str]) -> String {
    let mut out = String::new();
    for (i, alias) in aliases.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push('`');
        out.push_str(alias);
        out.push('`');
    }
    out
}

// ---------------------------------------------------------------------------
// One record's fields, from a JSON object or a CSV row

/// A field's value: a CSV cell is always text, a JSON value any of these.
#[derive(Clone, Copy)]
enum Raw<'a> {
    Text(&'a str),
    Number(&'a Number),
    Bool(bool),
    Null,
    List(&'a [Json<'a>]),
    Object,
}

impl<'a> Raw<'a> {
    fn from_json(value: &'a Json<'a>) -> Self {
        match value {
            Json::Text(s) => Raw::Text(s),
            Json::Number(n) => Raw::Number(n),
            Json::Bool(b) => Raw::Bool(*b),
            Json::Null => Raw::Null,
            Json::List(items) => Raw::List(items),
            Json::Object(_) => Raw::Object,
        }
    }

    /// Whether the value says anything (not null, not blank).
    fn is_present(self) -> bool {
        match self {
            Raw::Text(s) => !s.trim().is_empty(),
            Raw::Null => false,
            Raw::Number(_) | Raw::Bool(_) | Raw::List(_) | Raw::Object => true,
        }
    }
}

struct Entry<'a> {
    /// The normalized field name.
    norm: Cow<'a, str>,
    /// The field name as written.
    key: &'a str,
    raw: Raw<'a>,
}

struct Fields<'a> {
    line: usize,
    entries: Vec<Entry<'a>>,
}

impl<'a> Fields<'a> {
    fn from_json(line: usize, object: &'a [(Cow<'a, str>, Json<'a>)]) -> Self {
        Self {
            line,
            entries: object
                .iter()
                .map(|(key, value)| Entry {
                    norm: normalize_key(key),
                    key,
                    raw: Raw::from_json(value),
                })
                .collect(),
        }
    }

    fn from_csv(line: usize, columns: &'a [Column], values: &'a [Cow<'_, str>]) -> Self {
        Self {
            line,
            entries: columns
                .iter()
                .zip(values)
                .map(|(column, value)| Entry {
                    norm: Cow::Borrowed(column.norm.as_str()),
                    key: &column.name,
                    raw: Raw::Text(value.as_ref()),
                })
                .collect(),
        }
    }

    fn refuse_secrets(&self) -> Result<(), ImportError> {
        match self
            .entries
            .iter()
            .find(|e| SECRET_FIELDS.contains(&e.norm.as_ref()))
        {
            Some(e) => Err(secret_field(self.line, e.key)),
            None => Ok(()),
        }
    }

    /// Whether a field of this normalized name is there, even if empty.
    fn has(&self, norm: &str) -> bool {
        self.entries.iter().any(|e| e.norm == norm)
    }

    /// The first present field among `aliases`, in their order.
    fn find(&self, aliases: &[&str]) -> Option<&Entry<'a>> {
        aliases.iter().find_map(|alias| {
            self.entries
                .iter()
                .find(|e| e.norm == *alias && e.raw.is_present())
        })
    }

    fn text(&self, aliases: &[&str]) -> Result<Option<String>, ImportError> {
        match self.find(aliases) {
            Some(entry) => entry.text(self.line),
            None => Ok(None),
        }
    }

    fn required(&self, aliases: &[&str], what_to_do: &str) -> Result<String, ImportError> {
        self.text(aliases)?.ok_or_else(|| {
            let (first, rest) = aliases
                .split_first()
                .map_or(("", &[][..]), |(f, r)| (*f, r));
            let also = if rest.is_empty() {
                String::new()
            } else {
                format!(" (or {})", list_names(rest))
            };
            ImportError::new(self.line, format!("no `{first}`{also}: {what_to_do}"))
        })
    }

    fn list(&self, label: &str, aliases: &[&str]) -> Result<Vec<String>, ImportError> {
        match self.find(aliases) {
            Some(entry) => entry.list(self.line, label),
            None => Ok(Vec::new()),
        }
    }

    fn time(&self, label: &str, aliases: &[&str]) -> Result<Option<i64>, ImportError> {
        match self.find(aliases) {
            Some(entry) => entry.time(self.line, label),
            None => Ok(None),
        }
    }

    fn flag(&self, norm: &str) -> bool {
        match self.find(&[norm]).map(|e| e.raw) {
            Some(Raw::Bool(b)) => b,
            Some(Raw::Text(s)) => s.trim().eq_ignore_ascii_case("true"),
            _ => false,
        }
    }
}

impl Entry<'_> {
    fn text(&self, line: usize) -> Result<Option<String>, ImportError> {
        match self.raw {
            Raw::Text(s) => Ok(non_empty(s)),
            Raw::Number(n) => Ok(Some(n.to_string())),
            Raw::Bool(b) => Ok(Some(b.to_string())),
            Raw::Null => Ok(None),
            Raw::List(_) | Raw::Object => Err(ImportError::new(
                line,
                format!(
                    "field {} should be text, not a list or an object: give it as a string",
                    shown(self.key)
                ),
            )),
        }
    }

    fn list(&self, line: usize, label: &str) -> Result<Vec<String>, ImportError> {
        let mut list = UniqueList::new(line, label);
        match self.raw {
            Raw::List(items) => {
                for item in items {
                    match item {
                        Json::Text(s) => list.push(s)?,
                        Json::Number(n) => list.push(&n.to_string())?,
                        Json::Null => {}
                        _ => {
                            return Err(ImportError::new(
                                line,
                                format!(
                                    "field {} should list text values: give an array of strings or one string separated by spaces, commas or semicolons",
                                    shown(self.key)
                                ),
                            ));
                        }
                    }
                }
            }
            Raw::Text(s) => {
                for item in s.split(|c: char| c.is_whitespace() || c == ',' || c == ';') {
                    list.push(item)?;
                }
            }
            Raw::Number(n) => list.push(&n.to_string())?,
            Raw::Null => {}
            Raw::Bool(_) | Raw::Object => {
                return Err(ImportError::new(
                    line,
                    format!(
                        "field {} should be a list: give an array of strings or one string separated by spaces, commas or semicolons",
                        shown(self.key)
                    ),
                ));
            }
        }
        Ok(list.items)
    }

    fn time(&self, line: usize, label: &str) -> Result<Option<i64>, ImportError> {
        let parsed = match self.raw {
            Raw::Text(s) => parse_time_text(s),
            Raw::Number(n) => {
                if let Some(n) = n.as_u64() {
                    epoch_number(n)
                } else if n.as_i64().is_some() {
                    Err(TimeProblem::Before1970)
                } else {
                    n.as_f64().map_or(Err(TimeProblem::NotATime), epoch_float)
                }
            }
            Raw::Null => Ok(None),
            Raw::Bool(_) | Raw::List(_) | Raw::Object => Err(TimeProblem::NotATime),
        };
        parsed.map_err(|problem| {
            let value = match self.raw {
                Raw::Text(s) => shown(s.trim()),
                Raw::Number(n) => n.to_string(),
                Raw::List(_) => "a list".to_owned(),
                Raw::Object => "an object".to_owned(),
                Raw::Bool(b) => b.to_string(),
                Raw::Null => "null".to_owned(),
            };
            time_error(line, label, self.key, &value, problem)
        })
    }
}

fn non_empty(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

/// Trimmed, deduplicated, order kept, at most [`MAX_LIST_ITEMS`].
struct UniqueList<'l> {
    line: usize,
    label: &'l str,
    items: Vec<String>,
    seen: HashSet<String>,
}

impl<'l> UniqueList<'l> {
    fn new(line: usize, label: &'l str) -> Self {
        Self {
            line,
            label,
            items: Vec::new(),
            seen: HashSet::new(),
        }
    }

    fn push(&mut self, item: &str) -> Result<(), ImportError> {
        let item = item.trim();
        let seen = if self.items.len() <= 16 {
            self.items.iter().any(|known| known == item)
        } else {
            if self.seen.is_empty() {
                self.seen.extend(self.items.iter().cloned());
            }
            self.seen.contains(item)
        };
        if item.is_empty() || seen {
            return Ok(());
        }
        if self.items.len() >= MAX_LIST_ITEMS {
            return Err(ImportError::new(
                self.line,
                format!(
                    "`{}` lists more than {MAX_LIST_ITEMS} distinct values: list at most {MAX_LIST_ITEMS}",
                    self.label
                ),
            ));
        }
        if !self.seen.is_empty() {
            self.seen.insert(item.to_owned());
        }
        self.items.push(item.to_owned());
        Ok(())
    }
}

fn secret_field(line: usize, key: &str) -> ImportError {
    ImportError::new(
        line,
        format!(
            "field {} would carry a secret, and exports must not: remove it and give `fingerprint` (the hex SHA-256 of the secret) or `key_id` instead",
            shown(key)
        ),
    )
}

fn check_name(line: usize, name: String) -> Result<String, ImportError> {
    let chars = name.chars().count();
    if chars > MAX_NAME_CHARS {
        return Err(ImportError::new(
            line,
            format!(
                "the name is {chars} characters long: keep names to at most {MAX_NAME_CHARS} characters"
            ),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(ImportError::new(
            line,
            format!(
                "name {} contains a control character (a line break or a tab): use one line of printable text",
                shown(&name)
            ),
        ));
    }
    Ok(name)
}

/// A given fingerprint: 64 hex characters, lowercased. The value is never
/// echoed: a secret pasted in its place must not reach a log.
fn check_fingerprint(line: usize, fingerprint: &str) -> Result<String, ImportError> {
    if is_sha256_hex(fingerprint) {
        return Ok(fingerprint.to_ascii_lowercase());
    }
    let chars = fingerprint.chars().count();
    let hex = if fingerprint.chars().all(|c| c.is_ascii_hexdigit()) {
        ""
    } else {
        " and not all hex digits"
    };
    Err(ImportError::new(
        line,
        format!(
            "the fingerprint is {chars} characters long{hex}: give the hex SHA-256 of the secret (64 hex characters, as `sha256sum` prints for the secret without a trailing newline), or leave it empty and give `key_id`"
        ),
    ))
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The fingerprint of a credential known only by its key id: hex SHA-256 of
/// `"leash-key-id:" + provider + ":" + key_id`.
fn key_id_fingerprint(provider: &str, key_id: &str) -> String {
    let input = format!("leash-key-id:{provider}:{key_id}");
    lower_hex(digest(&SHA256, input.as_bytes()).as_ref())
}

/// Lowercase hex (a table beats `hex::encode`'s per-character iterator,
/// which shows in a profile of 100,000 records).
fn lower_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

// ---------------------------------------------------------------------------
// Timestamps

/// 10^11: a larger epoch number is milliseconds, a smaller one seconds.
const MILLIS_ABOVE: u64 = 100_000_000_000;
/// 9999-12-31T23:59:59.999Z.
const MAX_MILLIS: i64 = 253_402_300_799_999;
/// 9999-01-01T00:00:00Z: an expiry from here on means "never".
const NEVER_EXPIRES_FROM: i64 = 253_370_764_800_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimeProblem {
    NotATime,
    Before1970,
    After9999,
}

fn time_error(
    line: usize,
    label: &str,
    key: &str,
    value: &str,
    problem: TimeProblem,
) -> ImportError {
    let why = match problem {
        TimeProblem::NotATime => "is not a timestamp",
        TimeProblem::Before1970 => "is before 1970",
        TimeProblem::After9999 => "is after the year 9999",
    };
    let field = if normalize_name(key) == label {
        format!("`{label}`")
    } else {
        format!("`{label}` ({})", shown(key))
    };
    ImportError::new(
        line,
        format!(
            "{field} value {value} {why}: give RFC 3339 (2026-03-01T12:00:00Z), a date (2026-03-01), unix seconds or milliseconds, or leave it empty"
        ),
    )
}

/// Text that means "no time known".
fn is_no_time(s: &str) -> bool {
    [
        "n/a",
        "no_information",
        "not_supported",
        "none",
        "null",
        "never",
        "-",
    ]
    .iter()
    .any(|word| s.eq_ignore_ascii_case(word))
}

fn parse_time_text(s: &str) -> Result<Option<i64>, TimeProblem> {
    let s = s.trim();
    if s.is_empty() || is_no_time(s) {
        return Ok(None);
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse::<u64>()
            .map_err(|_| TimeProblem::After9999)
            .and_then(epoch_number);
    }
    // Go's zero time, written by exports that do not know.
    if s.starts_with("0001-01-01") {
        return Ok(None);
    }
    let at = match parse_date(s) {
        Some(date) => date.midnight().assume_utc(),
        None => {
            // RFC 3339 allows a space for the `T`.
            let fixed: Cow<'_, str> = if s.as_bytes().get(10) == Some(&b' ') {
                Cow::Owned(format!(
                    "{}T{}",
                    s.get(..10).unwrap_or(""),
                    s.get(11..).unwrap_or("")
                ))
            } else {
                Cow::Borrowed(s)
            };
            OffsetDateTime::parse(&fixed, &Rfc3339).map_err(|_| TimeProblem::NotATime)?
        }
    };
    let millis = i64::try_from(at.unix_timestamp_nanos().div_euclid(1_000_000))
        .map_err(|_| TimeProblem::After9999)?;
    check_millis(millis).map(Some)
}

/// `YYYY-MM-DD`, exactly.
fn parse_date(s: &str) -> Option<Date> {
    let b = s.as_bytes();
    let shape = b.len() == 10
        && b.iter().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        });
    if !shape {
        return None;
    }
    let year: i32 = s.get(0..4)?.parse().ok()?;
    let month: u8 = s.get(5..7)?.parse().ok()?;
    let day: u8 = s.get(8..10)?.parse().ok()?;
    Date::from_calendar_date(year, Month::try_from(month).ok()?, day).ok()
}

fn epoch_number(n: u64) -> Result<Option<i64>, TimeProblem> {
    if n == 0 {
        return Ok(None);
    }
    let millis = if n > MILLIS_ABOVE {
        n
    } else {
        n.checked_mul(1000).ok_or(TimeProblem::After9999)?
    };
    let millis = i64::try_from(millis).map_err(|_| TimeProblem::After9999)?;
    check_millis(millis).map(Some)
}

#[allow(
    clippy::cast_possible_truncation,
    reason = "the value is range-checked against MAX_MILLIS first"
)]
fn epoch_float(f: f64) -> Result<Option<i64>, TimeProblem> {
    if !f.is_finite() {
        return Err(TimeProblem::NotATime);
    }
    if f < 0.0 {
        return Err(TimeProblem::Before1970);
    }
    if f == 0.0 {
        return Ok(None);
    }
    let millis = if f > MILLIS_ABOVE as f64 {
        f.round()
    } else {
        (f * 1000.0).round()
    };
    if millis > MAX_MILLIS as f64 {
        return Err(TimeProblem::After9999);
    }
    check_millis(millis as i64).map(Some)
}

fn check_millis(millis: i64) -> Result<i64, TimeProblem> {
    if millis < 0 {
        Err(TimeProblem::Before1970)
    } else if millis > MAX_MILLIS {
        Err(TimeProblem::After9999)
    } else {
        Ok(millis)
    }
}

/// An expiry in the year 9999 is the "never expires" sentinel.
fn real_expiry(millis: Option<i64>) -> Option<i64> {
    millis.filter(|&m| m < NEVER_EXPIRES_FROM)
}

// ---------------------------------------------------------------------------
// Record builders

/// Which exporter wrote the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Generic,
    GitHub,
    Gcp,
}

fn detect_json_shape(fields: &Fields<'_>) -> Shape {
    if fields.has("credential_id") && fields.has("credential_authorized_at") {
        return Shape::GitHub;
    }
    let gcp_fields =
        fields.has("key_type") || fields.has("key_algorithm") || fields.has("valid_after_time");
    let gcp_name = matches!(
        fields.find(&["name"]).map(|e| e.raw),
        Some(Raw::Text(s)) if gcp_key_name(s).is_some()
    );
    if gcp_fields && gcp_name {
        Shape::Gcp
    } else {
        Shape::Generic
    }
}

fn generic_record(f: &Fields<'_>) -> Result<ImportRecord, ImportError> {
    let line = f.line;
    let name = f.required(NAME, "give each credential a unique, human-readable name")?;
    let name = check_name(line, name)?;
    let kind_text = f.required(
        KIND,
        "say what the credential is: `oauth_grant`, `api_key` or `service_account_key`",
    )?;
    let kind = kind_text.parse::<CredentialKind>().map_err(|_| {
        ImportError::new(
            line,
            format!(
                "kind {} is not a credential kind: use `oauth_grant`, `api_key` or `service_account_key`",
                shown(&kind_text)
            ),
        )
    })?;
    let provider = f
        .text(PROVIDER)?
        .map_or_else(|| "unknown".to_owned(), |p| p.to_lowercase());
    let owner = f.text(OWNER)?.filter(|o| !is_nobody(o));
    let scopes = f.list("scopes", SCOPES)?;
    let created_at = f.time("created", CREATED)?;
    let last_used_at = f.time("last_used", LAST_USED)?;
    let expires_at = real_expiry(f.time("expires", EXPIRES)?);
    let stored_in = f.text(STORED_IN)?;
    let key_id = f.text(KEY_ID)?;
    let fingerprint = match (f.text(FINGERPRINT)?, &key_id) {
        (Some(given), _) => check_fingerprint(line, &given)?,
        (None, Some(key_id)) => key_id_fingerprint(&provider, key_id),
        (None, None) => {
            return Err(ImportError::new(
                line,
                "no fingerprint and no key id: give `fingerprint` (the hex SHA-256 of the secret) or `key_id` (the provider's key identifier)",
            ));
        }
    };
    let workloads = f.list("workloads", WORKLOADS)?;
    Ok(ImportRecord {
        line,
        name,
        kind,
        provider,
        owner,
        scopes,
        created_at,
        last_used_at,
        expires_at,
        stored_in,
        fingerprint,
        key_id,
        workloads,
    })
}

fn is_nobody(owner: &str) -> bool {
    ["-", "none", "null", "n/a"]
        .iter()
        .any(|word| owner.eq_ignore_ascii_case(word))
}

/// An entry of GitHub's `GET /orgs/{org}/credential-authorizations`.
fn github_record(f: &Fields<'_>) -> Result<ImportRecord, ImportError> {
    const AGAIN: &str = "export the organisation's credential authorizations again (`GET /orgs/{org}/credential-authorizations`) without editing them";
    let line = f.line;
    let login = f.required(&["login"], AGAIN)?;
    let credential_id = f.required(&["credential_id"], AGAIN)?;
    let credential_type = f.required(&["credential_type"], AGAIN)?;
    let lower = credential_type.to_lowercase();
    let kind = if lower.contains("oauth") || lower.contains("github app") {
        CredentialKind::OauthGrant
    } else {
        CredentialKind::ApiKey
    };
    let provider = "github".to_owned();
    // GitHub's `fingerprint` is an SSH key fingerprint, not a SHA-256 of a
    // secret in hex; it is only used when it happens to be one.
    let fingerprint = match f.text(&["fingerprint"])? {
        Some(given) if is_sha256_hex(&given) => given.to_ascii_lowercase(),
        _ => key_id_fingerprint(&provider, &credential_id),
    };
    Ok(ImportRecord {
        line,
        name: check_name(line, format!("github:{login}:{credential_id}"))?,
        kind,
        provider,
        owner: Some(login),
        scopes: f.list("scopes", &["scopes"])?,
        created_at: f.time("credential_authorized_at", &["credential_authorized_at"])?,
        last_used_at: f.time("credential_accessed_at", &["credential_accessed_at"])?,
        expires_at: real_expiry(f.time(
            "authorized_credential_expires_at",
            &["authorized_credential_expires_at"],
        )?),
        stored_in: None,
        fingerprint,
        key_id: Some(credential_id),
        workloads: Vec::new(),
    })
}

/// `projects/P/serviceAccounts/SA_EMAIL/keys/KEY_ID` → (SA_EMAIL, KEY_ID).
fn gcp_key_name(path: &str) -> Option<(&str, &str)> {
    let mut parts = path.trim().split('/');
    let parts = [
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ];
    match parts {
        [
            Some("projects"),
            Some(project),
            Some("serviceAccounts"),
            Some(account),
            Some("keys"),
            Some(key),
            None,
        ] if !project.is_empty() && !account.is_empty() && !key.is_empty() => Some((account, key)),
        _ => None,
    }
}

/// An entry of `gcloud iam service-accounts keys list --format=json`;
/// `None` for a system-managed or disabled key (Google holds those, or
/// nobody can use them).
fn gcp_record(f: &Fields<'_>) -> Result<Option<ImportRecord>, ImportError> {
    let line = f.line;
    let path = f.required(
        &["name"],
        "list the keys again with `gcloud iam service-accounts keys list --iam-account SA --format=json`",
    )?;
    let Some((account, key)) = gcp_key_name(&path) else {
        return Err(ImportError::new(
            line,
            format!(
                "key name {} is not of the form `projects/PROJECT/serviceAccounts/EMAIL/keys/KEY_ID`: list the keys again with `gcloud iam service-accounts keys list --iam-account SA --format=json`",
                shown(&path)
            ),
        ));
    };
    let system_managed = f
        .text(&["key_type"])?
        .is_some_and(|t| t.eq_ignore_ascii_case("SYSTEM_MANAGED"));
    if system_managed || f.flag("disabled") {
        return Ok(None);
    }
    let provider = "gcp".to_owned();
    Ok(Some(ImportRecord {
        line,
        name: check_name(line, format!("gcp:{account}:{key}"))?,
        kind: CredentialKind::ServiceAccountKey,
        fingerprint: key_id_fingerprint(&provider, key),
        provider,
        owner: None,
        scopes: Vec::new(),
        created_at: f.time("valid_after_time", &["valid_after_time"])?,
        last_used_at: None,
        expires_at: real_expiry(f.time("valid_before_time", &["valid_before_time"])?),
        stored_in: None,
        key_id: Some(key.to_owned()),
        workloads: Vec::new(),
    }))
}

// ---------------------------------------------------------------------------
// JSON

/// Reads JSON records one at a time, so the first bad record is the one
/// reported, and knows each record's line.
struct JsonRecords<'a> {
    text: &'a str,
    lines: LineCounter<'a>,
    shape: Option<Shape>,
}

fn parse_json(text: &str, sink: &mut Sink) -> Result<(), ImportError> {
    let bytes = text.as_bytes();
    let start = skip_ws(bytes, 0);
    let mut records = JsonRecords {
        text,
        lines: LineCounter::new(bytes),
        shape: None,
    };
    if bytes.get(start) == Some(&b'[') {
        let end = records.array(start, sink)?;
        let rest = skip_ws(bytes, end);
        if rest < bytes.len() {
            return Err(ImportError::new(
                line_of(bytes, rest),
                "text after the end of the JSON array: give one array of credentials",
            ));
        }
    } else {
        records.stream(sink)?;
    }
    if sink.entries == 0 {
        return Err(ImportError::new(
            line_of(bytes, start),
            "no records: the list of credentials is empty; export at least one credential and import it again",
        ));
    }
    Ok(())
}

impl JsonRecords<'_> {
    /// The elements of the array whose `[` is at `open`; answers the offset
    /// after its `]`.
    fn array(&mut self, open: usize, sink: &mut Sink) -> Result<usize, ImportError> {
        let bytes = self.text.as_bytes();
        let mut i = skip_ws(bytes, open + 1);
        if bytes.get(i) == Some(&b']') {
            return Ok(i + 1);
        }
        loop {
            let line = self.lines.at(i);
            match bytes.get(i) {
                Some(b'{') => {}
                Some(_) => {
                    return Err(ImportError::new(
                        line,
                        "expected an object with the credential's fields: give each credential as a JSON object",
                    ));
                }
                None => return Err(unclosed_array(line)),
            }
            let mut one = serde_json::Deserializer::from_str(self.text.get(i..).unwrap_or(""))
                .into_iter::<Json<'_>>();
            let object = match one.next() {
                Some(Ok(Json::Object(object))) => object,
                Some(Ok(_)) => return Err(scan_failed()),
                Some(Err(e)) => return Err(json_error(&e, bytes, i)),
                None => return Err(unclosed_array(line)),
            };
            let end = i + one.byte_offset();
            self.record(line, object, sink)?;
            i = skip_ws(bytes, end);
            match bytes.get(i) {
                Some(b',') => i = skip_ws(bytes, i + 1),
                Some(b']') => return Ok(i + 1),
                Some(_) => {
                    return Err(ImportError::new(
                        self.lines.at(i),
                        format!(
                            "expected `,` or `]` after the record that starts on line {line}: separate the records with commas"
                        ),
                    ));
                }
                None => return Err(unclosed_array(self.lines.at(i))),
            }
        }
    }

    /// JSON lines, or one object: a record, or a wrapper holding the array
    /// of records in one of [`WRAPPERS`].
    fn stream(&mut self, sink: &mut Sink) -> Result<(), ImportError> {
        let bytes = self.text.as_bytes();
        let mut values = serde_json::Deserializer::from_str(self.text).into_iter::<Json<'_>>();
        let mut previous_end = 0;
        let mut first = true;
        while let Some(value) = values.next() {
            let value = value.map_err(|e| json_error(&e, bytes, 0))?;
            let begin = skip_ws(bytes, previous_end);
            previous_end = values.byte_offset();
            let Json::Object(mut object) = value else {
                return Err(ImportError::new(
                    self.lines.at(begin),
                    "expected an object with the credential's fields: give each credential as a JSON object, one per line",
                ));
            };
            if first && let Some(at) = wrapper_field(&object, self.lines.at(begin))? {
                // A wrapper must be the whole file; a first JSON line may
                // have such a field too, but then a syntax error after it
                // is the problem to report, not the wrapper's missing name.
                let rest = self.text.get(previous_end..).unwrap_or("");
                if rest.trim_start().is_empty() {
                    let (key, items) = match object.swap_remove(at) {
                        (key, Json::List(items)) => (key, items),
                        _ => return Err(scan_failed()),
                    };
                    return self.wrapped(begin, &key, items, sink);
                }
                let mut after = serde_json::Deserializer::from_str(rest).into_iter::<IgnoredAny>();
                if let Some(e) = after.find_map(Result::err) {
                    return Err(json_error(&e, bytes, previous_end));
                }
            }
            first = false;
            let line = self.lines.at(begin);
            self.record(line, object, sink)?;
        }
        Ok(())
    }

    /// The records of a wrapper object (already parsed), with the lines the
    /// scanner finds for them.
    fn wrapped(
        &mut self,
        open: usize,
        key: &str,
        items: Vec<Json<'_>>,
        sink: &mut Sink,
    ) -> Result<(), ImportError> {
        let bytes = self.text.as_bytes();
        // Duplicate keys: serde_json keeps the last, and so does this.
        let array = object_members(self.text, open)
            .and_then(|members| members.into_iter().rev().find(|(k, _)| k == key))
            .map(|(_, at)| at)
            .ok_or_else(scan_failed)?;
        let starts = array_elements(bytes, array).ok_or_else(scan_failed)?;
        if starts.len() != items.len() {
            return Err(scan_failed());
        }
        for ((begin, _), item) in starts.into_iter().zip(items) {
            let line = self.lines.at(begin);
            let Json::Object(object) = item else {
                return Err(ImportError::new(
                    line,
                    "expected an object with the credential's fields: give each credential as a JSON object",
                ));
            };
            self.record(line, object, sink)?;
        }
        Ok(())
    }

    fn record(
        &mut self,
        line: usize,
        object: JsonObject<'_>,
        sink: &mut Sink,
    ) -> Result<(), ImportError> {
        let fields = Fields::from_json(line, &object);
        fields.refuse_secrets()?;
        let shape = *self.shape.get_or_insert_with(|| detect_json_shape(&fields));
        sink.entries += 1;
        let record = match shape {
            Shape::Generic => Some(generic_record(&fields)?),
            Shape::GitHub => Some(github_record(&fields)?),
            Shape::Gcp => gcp_record(&fields)?,
        };
        match record {
            Some(record) => sink.push(record),
            None => Ok(()),
        }
    }
}

/// A serde_json error in the text parsed from byte `from`, with the line
/// and column in the whole file. serde_json's message has no input in it.
fn json_error(e: &serde_json::Error, bytes: &[u8], from: usize) -> ImportError {
    let text = e.to_string();
    let position = format!(" at line {} column {}", e.line(), e.column());
    let what = text.strip_suffix(&position).unwrap_or(&text);
    let before = bytes.get(..from).unwrap_or(bytes);
    let first_line = 1 + before.iter().filter(|&&b| b == b'\n').count();
    let line = first_line + e.line().saturating_sub(1);
    let column = if e.line() <= 1 {
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |n| n + 1);
        from - line_start + e.column()
    } else {
        e.column()
    };
    ImportError::new(
        line.max(1),
        format!(
            "not valid JSON: {what} at column {column}: fix the syntax and import the file again"
        ),
    )
}

fn unclosed_array(line: usize) -> ImportError {
    ImportError::new(
        line,
        "the JSON array is never closed: add the closing `]` (is the file cut short?)",
    )
}

fn scan_failed() -> ImportError {
    ImportError::new(
        1,
        "could not find where the records start: export the file again as a JSON array of objects",
    )
}

/// Where the object holds its array of records, if it is a wrapper: the
/// index of the (last) field among [`WRAPPERS`] whose value is an array.
fn wrapper_field(object: &JsonObject<'_>, line: usize) -> Result<Option<usize>, ImportError> {
    let mut found: Option<usize> = None;
    for (at, (key, value)) in object.iter().enumerate() {
        if !matches!(value, Json::List(_)) || !WRAPPERS.iter().any(|w| key.eq_ignore_ascii_case(w))
        {
            continue;
        }
        if let Some((other, _)) = found.and_then(|i| object.get(i))
            && other != key
        {
            return Err(ImportError::new(
                line,
                format!(
                    "the object holds two lists of records, {} and {}: give one array of credentials",
                    shown(other),
                    shown(key)
                ),
            ));
        }
        found = Some(at);
    }
    Ok(found)
}

/// A JSON value that borrows its strings from the input when they have no
/// escapes. Objects keep their fields in order, duplicates included. This
/// is what keeps a 100,000-record file fast: no map and few allocations
/// per record.
#[derive(Debug)]
enum Json<'a> {
    Text(Cow<'a, str>),
    Number(Number),
    Bool(bool),
    Null,
    List(Vec<Json<'a>>),
    Object(JsonObject<'a>),
}

type JsonObject<'a> = Vec<(Cow<'a, str>, Json<'a>)>;

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Json::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Json::Number(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Json::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Number::from_f64(v)
            .map(Json::Number)
            .ok_or_else(|| E::custom("a number that is not finite"))
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Json::Text(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Json::Text(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Json::Text(Cow::Owned(v)))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Json::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Json::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::List(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = Vec::new();
        while let Some(key) = map.next_key::<Json<'de>>()? {
            let Json::Text(key) = key else {
                return Err(de::Error::custom("an object key that is not a string"));
            };
            fields.push((key, map.next_value()?));
        }
        Ok(Json::Object(fields))
    }
}

fn skip_ws(bytes: &[u8], mut i: usize) -> usize {
    while matches!(bytes.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// The end of the string whose opening quote is at `i`.
fn string_end(bytes: &[u8], i: usize) -> Option<usize> {
    let mut j = i.checked_add(1)?;
    loop {
        match *bytes.get(j)? {
            b'\\' => j = j.checked_add(2)?,
            b'"' => return j.checked_add(1),
            _ => j += 1,
        }
    }
}

/// The end of the value starting at `i`, in JSON already known to be valid.
fn value_end(bytes: &[u8], mut i: usize) -> Option<usize> {
    let mut depth = 0usize;
    loop {
        match *bytes.get(i)? {
            b'"' => {
                i = string_end(bytes, i)?;
                if depth == 0 {
                    return Some(i);
                }
            }
            b'{' | b'[' => {
                depth += 1;
                i += 1;
            }
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                i += 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ if depth == 0 => {
                while let Some(c) = bytes.get(i) {
                    if matches!(c, b',' | b']' | b'}' | b' ' | b'\t' | b'\n' | b'\r') {
                        break;
                    }
                    i += 1;
                }
                return Some(i);
            }
            _ => i += 1,
        }
    }
}

/// The spans of the elements of the array whose `[` is at `open`.
fn array_elements(bytes: &[u8], open: usize) -> Option<Vec<(usize, usize)>> {
    let mut spans = Vec::new();
    let mut i = skip_ws(bytes, open.checked_add(1)?);
    if bytes.get(i) == Some(&b']') {
        return Some(spans);
    }
    loop {
        let end = value_end(bytes, i)?;
        spans.push((i, end));
        i = skip_ws(bytes, end);
        match bytes.get(i)? {
            b',' => i = skip_ws(bytes, i + 1),
            b']' => return Some(spans),
            _ => return None,
        }
    }
}

/// The keys and value offsets of the object whose `{` is at `open`.
fn object_members(text: &str, open: usize) -> Option<Vec<(String, usize)>> {
    let bytes = text.as_bytes();
    let mut members = Vec::new();
    let mut i = skip_ws(bytes, open.checked_add(1)?);
    if bytes.get(i) == Some(&b'}') {
        return Some(members);
    }
    loop {
        if bytes.get(i) != Some(&b'"') {
            return None;
        }
        let key_end = string_end(bytes, i)?;
        let key: String = serde_json::from_str(text.get(i..key_end)?).ok()?;
        i = skip_ws(bytes, key_end);
        if bytes.get(i) != Some(&b':') {
            return None;
        }
        i = skip_ws(bytes, i + 1);
        let end = value_end(bytes, i)?;
        members.push((key, i));
        i = skip_ws(bytes, end);
        match bytes.get(i)? {
            b',' => i = skip_ws(bytes, i + 1),
            b'}' => return Some(members),
            _ => return None,
        }
    }
}

/// 1-based line of a byte offset.
fn line_of(bytes: &[u8], offset: usize) -> usize {
    let upto = bytes.get(..offset).unwrap_or(bytes);
    1 + upto.iter().filter(|&&b| b == b'\n').count()
}

/// Line numbers of increasing offsets, in one pass over the text.
struct LineCounter<'a> {
    bytes: &'a [u8],
    offset: usize,
    line: usize,
}

impl<'a> LineCounter<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            offset: 0,
            line: 1,
        }
    }

    fn at(&mut self, offset: usize) -> usize {
        if offset < self.offset {
            self.offset = 0;
            self.line = 1;
        }
        let chunk = self.bytes.get(self.offset..offset).unwrap_or(&[]);
        self.line += chunk.iter().filter(|&&b| b == b'\n').count();
        self.offset = offset;
        self.line
    }
}

// ---------------------------------------------------------------------------
// CSV

/// A header cell.
struct Column {
    norm: String,
    name: String,
}

struct CsvRow<'a> {
    line: usize,
    /// Cells borrow from the text unless they hold a doubled quote.
    fields: Vec<Cow<'a, str>>,
}

/// An RFC 4180 reader: `,` separates fields, rows end with LF or CRLF, a
/// field in double quotes may hold commas, line breaks and doubled quotes.
/// Rows that are blank are skipped.
struct CsvReader<'a> {
    text: &'a str,
    pos: usize,
    line: usize,
}

impl<'a> CsvReader<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            text,
            pos: 0,
            line: 1,
        }
    }

    fn next_row(&mut self) -> Result<Option<CsvRow<'a>>, ImportError> {
        while self.pos < self.text.len() {
            let row = self.read_row()?;
            let blank = matches!(row.fields.as_slice(), [only] if only.trim().is_empty());
            if !blank {
                return Ok(Some(row));
            }
        }
        Ok(None)
    }

    fn read_row(&mut self) -> Result<CsvRow<'a>, ImportError> {
        let bytes = self.text.as_bytes();
        let line = self.line;
        let mut fields = Vec::new();
        loop {
            let field = if bytes.get(self.pos) == Some(&b'"') {
                self.quoted_field()?
            } else {
                self.plain_field()?
            };
            fields.push(field);
            match bytes.get(self.pos) {
                None => break,
                Some(b',') => self.pos += 1,
                Some(b'\n') => {
                    self.pos += 1;
                    self.line += 1;
                    break;
                }
                Some(b'\r') if bytes.get(self.pos + 1) == Some(&b'\n') => {
                    self.pos += 2;
                    self.line += 1;
                    break;
                }
                Some(_) => {
                    return Err(ImportError::new(
                        self.line,
                        "text after the closing quote of a field: put the whole field in double quotes, and double any quote inside it (\"\")",
                    ));
                }
            }
        }
        Ok(CsvRow { line, fields })
    }

    fn plain_field(&mut self) -> Result<Cow<'a, str>, ImportError> {
        let bytes = self.text.as_bytes();
        let start = self.pos;
        while let Some(&c) = bytes.get(self.pos) {
            match c {
                b',' | b'\n' => break,
                b'\r' if bytes.get(self.pos + 1) == Some(&b'\n') => break,
                b'"' => {
                    return Err(ImportError::new(
                        self.line,
                        "a double quote inside a field that does not start with one: put the whole field in double quotes, and double the quote inside it (\"\")",
                    ));
                }
                _ => self.pos += 1,
            }
        }
        Ok(Cow::Borrowed(self.text.get(start..self.pos).unwrap_or("")))
    }

    fn quoted_field(&mut self) -> Result<Cow<'a, str>, ImportError> {
        let bytes = self.text.as_bytes();
        let opened = self.line;
        self.pos += 1;
        let mut field: Cow<'a, str> = Cow::Borrowed("");
        let mut piece = self.pos;
        loop {
            match bytes.get(self.pos) {
                None => {
                    return Err(ImportError::new(
                        opened,
                        "a quoted field is never closed: add the closing double quote, and double any quote inside the field (\"\")",
                    ));
                }
                Some(b'"') if bytes.get(self.pos + 1) == Some(&b'"') => {
                    field
                        .to_mut()
                        .push_str(self.text.get(piece..=self.pos).unwrap_or(""));
                    self.pos += 2;
                    piece = self.pos;
                }
                Some(b'"') => {
                    let last = self.text.get(piece..self.pos).unwrap_or("");
                    self.pos += 1;
                    return Ok(match field {
                        Cow::Borrowed(_) => Cow::Borrowed(last),
                        Cow::Owned(mut field) => {
                            field.push_str(last);
                            Cow::Owned(field)
                        }
                    });
                }
                Some(b'\n') => {
                    self.line += 1;
                    self.pos += 1;
                }
                Some(_) => self.pos += 1,
            }
        }
    }
}

fn parse_csv(text: &str, sink: &mut Sink) -> Result<(), ImportError> {
    let mut reader = CsvReader::new(text);
    let Some(header) = reader.next_row()? else {
        return Err(ImportError::new(
            1,
            "no records: the file is empty; export at least one credential and import it again",
        ));
    };
    let columns: Vec<Column> = header
        .fields
        .iter()
        .map(|name| Column {
            norm: normalize_name(name),
            name: name.trim().to_owned(),
        })
        .collect();
    if let Some(column) = columns
        .iter()
        .find(|c| SECRET_FIELDS.contains(&c.norm.as_str()))
    {
        return Err(secret_field(header.line, &column.name));
    }
    let has = |norm: &str| columns.iter().any(|c| c.norm == norm);
    if has("user") && has("arn") && has("access_key_1_active") {
        aws_rows(&mut reader, &columns, sink)?;
    } else {
        check_generic_header(header.line, &columns)?;
        while let Some(row) = reader.next_row()? {
            check_width(&row, &columns)?;
            sink.entries += 1;
            let fields = Fields::from_csv(row.line, &columns, &row.fields);
            sink.push(generic_record(&fields)?)?;
        }
    }
    if sink.entries == 0 {
        return Err(ImportError::new(
            header.line,
            "no records: the file has a header row but no credential rows; export at least one credential and import it again",
        ));
    }
    Ok(())
}

/// A generic CSV must have columns for the required fields.
fn check_generic_header(line: usize, columns: &[Column]) -> Result<(), ImportError> {
    let has_any = |aliases: &[&str]| columns.iter().any(|c| aliases.contains(&c.norm.as_str()));
    if !has_any(NAME) {
        return Err(ImportError::new(
            line,
            format!(
                "the header has no `name` column (or {}): add one with a unique, human-readable name for each credential",
                list_names(NAME.get(1..).unwrap_or(&[]))
            ),
        ));
    }
    if !has_any(KIND) {
        return Err(ImportError::new(
            line,
            format!(
                "the header has no `kind` column (or {}): add one saying `oauth_grant`, `api_key` or `service_account_key`",
                list_names(KIND.get(1..).unwrap_or(&[]))
            ),
        ));
    }
    if !has_any(FINGERPRINT) && !has_any(KEY_ID) {
        return Err(ImportError::new(
            line,
            "the header has neither a `fingerprint` nor a `key_id` column: add `fingerprint` (the hex SHA-256 of each secret) or `key_id` (the provider's key identifier)",
        ));
    }
    Ok(())
}

fn check_width(row: &CsvRow, columns: &[Column]) -> Result<(), ImportError> {
    if row.fields.len() == columns.len() {
        return Ok(());
    }
    Err(ImportError::new(
        row.line,
        format!(
            "this row has {} fields but the header has {}: put fields that hold commas in double quotes, and check for a missing or extra comma",
            row.fields.len(),
            columns.len()
        ),
    ))
}

/// Rows of an AWS IAM credential report: one record per active access key.
fn aws_rows(
    reader: &mut CsvReader<'_>,
    columns: &[Column],
    sink: &mut Sink,
) -> Result<(), ImportError> {
    let index = |norm: &str| columns.iter().position(|c| c.norm == norm);
    let user = index("user");
    let arn = index("arn");
    let slots: Vec<_> = (1..=2)
        .filter_map(|n| {
            Some((
                n,
                index(&format!("access_key_{n}_active"))?,
                index(&format!("access_key_{n}_last_rotated")),
                index(&format!("access_key_{n}_last_used_date")),
            ))
        })
        .collect();
    while let Some(row) = reader.next_row()? {
        check_width(&row, columns)?;
        sink.entries += 1;
        let line = row.line;
        let cell = |i: Option<usize>| i.and_then(|i| row.fields.get(i)).map_or("", |s| s.trim());
        let again = "download the credential report again (`aws iam generate-credential-report`, then `aws iam get-credential-report`) without editing it";
        let user = cell(user);
        if user.is_empty() {
            return Err(ImportError::new(line, format!("no `user`: {again}")));
        }
        let arn = cell(arn);
        if arn.is_empty() {
            return Err(ImportError::new(line, format!("no `arn`: {again}")));
        }
        for &(n, active, rotated, used) in &slots {
            let active_value = cell(Some(active));
            if active_value.eq_ignore_ascii_case("false") {
                continue;
            }
            if !active_value.eq_ignore_ascii_case("true") {
                return Err(ImportError::new(
                    line,
                    format!(
                        "`access_key_{n}_active` is {} where the report says `true` or `false`: {again}",
                        shown(active_value)
                    ),
                ));
            }
            let time = |label: &str, i: Option<usize>| {
                parse_time_text(cell(i))
                    .map_err(|problem| time_error(line, label, label, &shown(cell(i)), problem))
            };
            let provider = "aws".to_owned();
            let key_id = format!("{arn}#key{n}");
            sink.push(ImportRecord {
                line,
                name: check_name(line, format!("aws:{user}:key{n}"))?,
                kind: CredentialKind::ApiKey,
                fingerprint: key_id_fingerprint(&provider, &key_id),
                provider,
                owner: None,
                scopes: Vec::new(),
                created_at: time(&format!("access_key_{n}_last_rotated"), rotated)?,
                last_used_at: time(&format!("access_key_{n}_last_used_date"), used)?,
                expires_at: None,
                stored_in: None,
                key_id: Some(key_id),
                workloads: Vec::new(),
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ok(input: &str) -> Vec<ImportRecord> {
        match parse(input.as_bytes(), Format::Auto) {
            Ok(records) => records,
            Err(e) => panic!("expected records, got {e}"),
        }
    }

    fn refused(input: &str) -> ImportError {
        match parse(input.as_bytes(), Format::Auto) {
            Ok(records) => panic!("expected an error, got {records:?}"),
            Err(e) => e,
        }
    }

    fn ms(rfc3339: &str) -> i64 {
        let at = OffsetDateTime::parse(rfc3339, &Rfc3339).unwrap();
        i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap()
    }

    fn sha256_hex(s: &str) -> String {
        hex::encode(digest(&SHA256, s.as_bytes()).as_ref())
    }

    const FP_A: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    const FP_B: &str = "60303AE22B998861BCE3B28F33EEC1BE758A213C86C93C076DBE9F558C11C752";

    // --- generic JSON ---------------------------------------------------

    #[test]
    fn generic_json_array_maps_every_field_and_line() {
        let input = format!(
            r#"[
  {{
    "name": "deploy-bot PAT",
    "kind": "pat",
    "provider": "GitHub",
    "owner_email": "alice@example.com",
    "scopes": ["repo", "read:org", "repo"],
    "created_at": "2026-03-01T12:00:00Z",
    "last_used_at": "2026-03-02T13:00:00.250+01:00",
    "expires_at": "2026-06-01",
    "vault_path": "secret/ci/deploy-bot",
    "fingerprint": "{FP_B}",
    "key_id": "ghp_…c3fc11",
    "used_by": "deploy-bot, release-bot; deploy-bot",
    "notes": {{"ignored": true}}
  }},
  {{"id": 42, "type": "oauth_app", "source": "slack", "owner": "none",
    "scope": "chat:write channels:read", "issued_at": 1709294400,
    "last_accessed": "1709294400123", "expiry": "N/A", "credential_id": "A0123"}}
]"#
        );
        let records = ok(&input);
        assert_eq!(records.len(), 2);
        let first = &records[0];
        assert_eq!(first.line, 2);
        assert_eq!(first.name, "deploy-bot PAT");
        assert_eq!(first.kind, CredentialKind::ApiKey);
        assert_eq!(first.provider, "github");
        assert_eq!(first.owner.as_deref(), Some("alice@example.com"));
        assert_eq!(first.scopes, ["repo", "read:org"]);
        assert_eq!(first.created_at, Some(ms("2026-03-01T12:00:00Z")));
        assert_eq!(first.last_used_at, Some(ms("2026-03-02T12:00:00.250Z")));
        assert_eq!(first.expires_at, Some(ms("2026-06-01T00:00:00Z")));
        assert_eq!(first.stored_in.as_deref(), Some("secret/ci/deploy-bot"));
        assert_eq!(first.fingerprint, FP_B.to_ascii_lowercase());
        assert_eq!(first.key_id.as_deref(), Some("ghp_…c3fc11"));
        assert_eq!(first.workloads, ["deploy-bot", "release-bot"]);

        let second = &records[1];
        assert_eq!(second.line, 17);
        assert_eq!(second.name, "42");
        assert_eq!(second.kind, CredentialKind::OauthGrant);
        assert_eq!(second.provider, "slack");
        assert_eq!(second.owner, None);
        assert_eq!(second.scopes, ["chat:write", "channels:read"]);
        assert_eq!(second.created_at, Some(1_709_294_400_000));
        assert_eq!(second.last_used_at, Some(1_709_294_400_123));
        assert_eq!(second.expires_at, None);
        assert_eq!(second.key_id.as_deref(), Some("A0123"));
        assert_eq!(second.fingerprint, sha256_hex("leash-key-id:slack:A0123"));
    }

    #[test]
    fn wrapper_object_with_camel_case_fields() {
        let input = r#"{
  "exported_at": "2026-11-29T10:00:00Z",
  "credentials": [
    {"name": "stripe-live", "type": "API Key", "vendor": "Stripe",
     "ownerEmail": "payments@example.com", "keyId": "rk_live_51Hx…",
     "storedIn": "github-actions:STRIPE_KEY", "lastUsedAt": "2026-11-28"},
    {"name": "sa-reporting", "type": "service_account", "vendor": "gcp",
     "keyId": "a1b2c3", "createdBy": "-"}
  ],
  "total": 2
}"#;
        let records = ok(input);
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].line, 4);
        assert_eq!(records[0].provider, "stripe");
        assert_eq!(records[0].owner.as_deref(), Some("payments@example.com"));
        assert_eq!(records[0].key_id.as_deref(), Some("rk_live_51Hx…"));
        assert_eq!(
            records[0].stored_in.as_deref(),
            Some("github-actions:STRIPE_KEY")
        );
        assert_eq!(records[0].last_used_at, Some(ms("2026-11-28T00:00:00Z")));
        assert_eq!(records[1].line, 7);
        assert_eq!(records[1].kind, CredentialKind::ServiceAccountKey);
        assert_eq!(records[1].owner, None);
    }

    #[test]
    fn text_after_a_wrapper_is_a_syntax_error() {
        let input =
            "{\"items\": [\n  {\"name\": \"a\", \"kind\": \"api_key\", \"key_id\": \"1\"}\n]}\n}\n";
        let e = refused(input);
        assert_eq!(e.line, 4);
        assert!(e.message.starts_with("not valid JSON"), "{e}");
        let e = refused("[{\"name\": \"a\", \"kind\": \"api_key\", \"key_id\": \"1\"}]\n\n]");
        assert_eq!(e.line, 3);
        assert!(e.message.contains("after the end of the JSON array"), "{e}");
    }

    #[test]
    fn two_wrapper_arrays_are_ambiguous() {
        let e = refused(r#"{"items": [], "keys": []}"#);
        assert_eq!(e.line, 1);
        assert!(e.message.contains("two lists"), "{e}");
    }

    #[test]
    fn json_lines_with_blank_lines() {
        let input = format!(
            "{{\"name\":\"a\",\"kind\":\"api_key\",\"fingerprint\":\"{FP_A}\"}}\n\
             \n\
             \r\n\
             {{\"name\":\"b\",\"kind\":\"oauth\",\"key\":\"k-1\",\"provider\":\"slack\"}}\n\
             {{\"name\":\"c\",\"kind\":\"service_account_key\",\"key_id\":\"k-2\"}}\n"
        );
        let records = ok(&input);
        let lines: Vec<_> = records.iter().map(|r| (r.name.as_str(), r.line)).collect();
        assert_eq!(lines, [("a", 1), ("b", 4), ("c", 5)]);
        assert_eq!(records[2].provider, "unknown");
    }

    #[test]
    fn json_lines_with_a_non_object_is_refused_at_its_line() {
        let e = refused("{\"name\":\"a\",\"kind\":\"api_key\",\"key_id\":\"1\"}\n[1, 2]\n");
        assert_eq!(e.line, 2);
        assert!(e.message.contains("object"), "{e}");
    }

    #[test]
    fn json_syntax_error_reports_serde_json_line() {
        let input = "[\n  {\"name\": \"a\", \"kind\": \"api_key\", \"key_id\": \"1\"},\n  {\"name\": \"b\" \"kind\": \"api_key\"}\n]";
        let e = refused(input);
        assert_eq!(e.line, 3);
        assert!(e.message.contains("not valid JSON"), "{e}");
        let e = refused("{\"name\":\"a\",\"kind\":\"api_key\",\"key_id\":\"1\"}\n{\"name\":\n");
        assert_eq!(e.line, 3);
    }

    // --- generic CSV ----------------------------------------------------

    #[test]
    fn generic_csv_with_aliases_and_crlf() {
        let input = format!(
            "Credential,Credential Type,Platform,Owner Email,Permissions,Creation Time,Last Used Date,Valid Before,Location,SHA256,Apps\r\n\
             datadog-api,api_key,Datadog,sre@example.com,\"metrics_read,logs_read\",2025-12-01T08:00:00Z,N/A,,vault:kv/datadog,{FP_A},\"dashboards, alerts\"\r\n\
             notion-int,oauth_grant,notion,null,,1733040000,no_information,9999-12-31T23:59:59Z,,{FP_B},\r\n"
        );
        let records = ok(&input);
        assert_eq!(records.len(), 2);
        let d = &records[0];
        assert_eq!((d.line, d.name.as_str()), (2, "datadog-api"));
        assert_eq!(d.provider, "datadog");
        assert_eq!(d.scopes, ["metrics_read", "logs_read"]);
        assert_eq!(d.created_at, Some(ms("2025-12-01T08:00:00Z")));
        assert_eq!(d.last_used_at, None);
        assert_eq!(d.expires_at, None);
        assert_eq!(d.stored_in.as_deref(), Some("vault:kv/datadog"));
        assert_eq!(d.workloads, ["dashboards", "alerts"]);
        assert_eq!(d.key_id, None);
        let n = &records[1];
        assert_eq!(n.line, 3);
        assert_eq!(n.owner, None);
        assert_eq!(n.created_at, Some(1_733_040_000_000));
        assert_eq!(n.expires_at, None, "the year-9999 expiry means never");
        assert_eq!(n.fingerprint, FP_B.to_ascii_lowercase());
    }

    #[test]
    fn quoted_csv_fields_keep_later_line_numbers() {
        let input = "name,kind,key_id,stored_in\n\
                     \"ci, deploy\",api_key,k1,\"vault\nsecret/ci\n(moved \"\"2026\"\")\"\n\
                     plain,api_key,k2,\n\
                     \"multi\"\"quoted\",api_key,\"k\n3\",x\n\
                     last,api_key,k4,\n";
        let records = ok(input);
        let lines: Vec<_> = records.iter().map(|r| (r.name.as_str(), r.line)).collect();
        assert_eq!(
            lines,
            [
                ("ci, deploy", 2),
                ("plain", 5),
                ("multi\"quoted", 6),
                ("last", 8)
            ]
        );
        assert_eq!(
            records[0].stored_in.as_deref(),
            Some("vault\nsecret/ci\n(moved \"2026\")")
        );
        assert_eq!(records[2].key_id.as_deref(), Some("k\n3"));
    }

    #[test]
    fn malformed_csv_row_in_the_middle_reports_its_line() {
        let good = "name,kind,key_id\na,api_key,1\nb,api_key,2\n";
        let wrong_width = format!("{good}c,api_key\nd,api_key,4\n");
        let e = parse(wrong_width.as_bytes(), Format::Csv).unwrap_err();
        assert_eq!(e.line, 4);
        assert!(e.message.contains("2 fields but the header has 3"), "{e}");

        let stray_quote = format!("{good}c\"x,api_key,3\nd,api_key,4\n");
        let e = parse(stray_quote.as_bytes(), Format::Csv).unwrap_err();
        assert_eq!(e.line, 4);
        assert!(e.message.contains("double quote"), "{e}");

        let after_quote = format!("{good}\"c\"x,api_key,3\nd,api_key,4\n");
        assert_eq!(
            parse(after_quote.as_bytes(), Format::Csv).unwrap_err().line,
            4
        );

        let unclosed = format!("{good}c,api_key,\"3\nd,api_key,4\n");
        let e = parse(unclosed.as_bytes(), Format::Csv).unwrap_err();
        assert_eq!(e.line, 4);
        assert!(e.message.contains("never closed"), "{e}");
    }

    #[test]
    fn csv_header_must_name_required_columns() {
        let e = refused("label_x,kind,key_id\na,api_key,1\n");
        assert_eq!(e.line, 1);
        assert!(e.message.contains("no `name` column"), "{e}");
        let e = refused("name,provider,key_id\na,github,1\n");
        assert!(e.message.contains("no `kind` column"), "{e}");
        let e = refused("name,kind,owner\na,api_key,bob\n");
        assert!(e.message.contains("`fingerprint`"), "{e}");
    }

    // --- validation -----------------------------------------------------

    #[test]
    fn bad_timestamp_is_refused_with_its_line() {
        let input = "name,kind,key_id,created_at\na,api_key,1,2026-03-01\nb,api_key,2,yesterday\n";
        let e = refused(input);
        assert_eq!(e.line, 3);
        assert!(e.message.contains("`created` (\"created_at\")"), "{e}");
        assert!(
            e.message.contains("\"yesterday\" is not a timestamp"),
            "{e}"
        );
        assert!(e.message.contains("RFC 3339"), "{e}");

        let e = refused(r#"[{"name":"a","kind":"api_key","key_id":"1","expires":-5}]"#);
        assert!(e.message.contains("before 1970"), "{e}");
        let e = refused(r#"[{"name":"a","kind":"api_key","key_id":"1","expires":"2026-02-30"}]"#);
        assert!(e.message.contains("not a timestamp"), "{e}");
    }

    #[test]
    fn timestamp_forms() {
        let t = |s: &str| parse_time_text(s);
        assert_eq!(
            t("2026-03-01T12:00:00Z"),
            Ok(Some(ms("2026-03-01T12:00:00Z")))
        );
        assert_eq!(
            t("2026-03-01 12:00:00Z"),
            Ok(Some(ms("2026-03-01T12:00:00Z")))
        );
        assert_eq!(
            t("2026-03-01T14:00:00.5+02:00"),
            Ok(Some(ms("2026-03-01T12:00:00.5Z")))
        );
        assert_eq!(t("2026-03-01"), Ok(Some(ms("2026-03-01T00:00:00Z"))));
        assert_eq!(t("1772366400"), Ok(Some(1_772_366_400_000)));
        assert_eq!(t("1772366400000"), Ok(Some(1_772_366_400_000)));
        assert_eq!(t("100000000000"), Ok(Some(100_000_000_000_000)));
        assert_eq!(t("100000000001"), Ok(Some(100_000_000_001)));
        for none in [
            "",
            " ",
            "N/A",
            "no_information",
            "not_supported",
            "0",
            "0001-01-01T00:00:00Z",
        ] {
            assert_eq!(t(none), Ok(None), "{none:?}");
        }
        assert_eq!(t("1969-12-31T23:59:59Z"), Err(TimeProblem::Before1970));
        assert_eq!(t("99999999999999999999"), Err(TimeProblem::After9999));
        assert_eq!(t("2026-13-01"), Err(TimeProblem::NotATime));
        assert_eq!(epoch_float(1_772_366_400.25), Ok(Some(1_772_366_400_250)));
        assert_eq!(epoch_float(-1.0), Err(TimeProblem::Before1970));
        assert_eq!(epoch_float(1e300), Err(TimeProblem::After9999));
        let far = time::macros::datetime!(9999-01-01 0:00 UTC).unix_timestamp() * 1000;
        assert_eq!(far, NEVER_EXPIRES_FROM);
        let max =
            time::macros::datetime!(9999-12-31 23:59:59.999 UTC).unix_timestamp_nanos() / 1_000_000;
        assert_eq!(i128::from(MAX_MILLIS), max);
    }

    #[test]
    fn fingerprint_of_wrong_length_is_refused_without_echo() {
        let short = &FP_A[..63];
        let input = format!("name,kind,fingerprint\na,api_key,{FP_A}\nb,api_key,{short}\n");
        let e = refused(&input);
        assert_eq!(e.line, 3);
        assert!(e.message.contains("63 characters"), "{e}");
        assert!(e.message.contains("hex SHA-256 of the secret"), "{e}");
        assert!(!e.message.contains(short), "{e}");

        let pasted_secret = "ghp_16C7e42F292c6912E7710c838347Ae178B4a";
        let input = format!("name,kind,fingerprint\na,api_key,{pasted_secret}\n");
        let e = refused(&input);
        assert!(e.message.contains("not all hex"), "{e}");
        assert!(!e.to_string().contains(pasted_secret), "{e}");
    }

    #[test]
    fn duplicate_name_is_refused_at_the_second_line() {
        let input = "name,kind,key_id\nci-bot,api_key,1\nother,api_key,2\nci-bot,api_key,3\n";
        let e = refused(input);
        assert_eq!(e.line, 4);
        assert!(
            e.message
                .contains("\"ci-bot\" is already used by the record on line 2"),
            "{e}"
        );
    }

    #[test]
    fn duplicate_fingerprint_is_refused() {
        let input = format!(
            "name,kind,sha256\na,api_key,{FP_A}\nb,api_key,{}\n",
            FP_A.to_uppercase()
        );
        let e = refused(&input);
        assert_eq!(e.line, 3);
        assert!(
            e.message.contains("same fingerprint as \"a\" on line 2"),
            "{e}"
        );
        // The same key id at the same provider is the same credential.
        let e = refused("name,kind,provider,key_id\na,api_key,aws,AKIA1\nb,api_key,AWS,AKIA1\n");
        assert_eq!(e.line, 3);
    }

    #[test]
    fn secret_column_is_refused_without_echoing_the_value() {
        let secret = "xoxb-2222222222-3333333333333-AbCdEfGhIjKlMnOpQrStUvWx";
        let csv = format!("name,kind,key_id,Token\nslack-bot,api_key,B01,{secret}\n");
        let e = refused(&csv);
        assert_eq!(e.line, 1);
        assert!(e.message.contains("\"Token\" would carry a secret"), "{e}");
        assert!(e.message.contains("`fingerprint`"), "{e}");
        assert!(!e.to_string().contains(secret));

        let json = format!(
            "[\n{{\"name\":\"a\",\"kind\":\"api_key\",\"key_id\":\"1\"}},\n{{\"name\":\"b\",\"kind\":\"api_key\",\"key_id\":\"2\",\"client-secret\":\"{secret}\"}}\n]"
        );
        let e = refused(&json);
        assert_eq!(e.line, 3);
        assert!(!e.to_string().contains(secret));
        for field in [
            "secret",
            "password",
            "private_key",
            "privateKeyData",
            "PRIVATE KEY",
        ] {
            let json =
                format!(r#"[{{"name":"a","kind":"api_key","key_id":"1","{field}":"{secret}"}}]"#);
            let e = refused(&json);
            assert!(e.message.contains("would carry a secret"), "{field}: {e}");
            assert!(!e.to_string().contains(secret));
        }
    }

    #[test]
    fn owner_none_and_friends_mean_nobody() {
        let input = "name,kind,key_id,owner\na,api_key,1,none\nb,api_key,2,-\nc,api_key,3,NULL\nd,api_key,4,\ne,api_key,5,bob@example.com\n";
        let owners: Vec<_> = ok(input).into_iter().map(|r| r.owner).collect();
        assert_eq!(
            owners,
            [None, None, None, None, Some("bob@example.com".to_owned())]
        );
        let json = r#"[{"name":"a","kind":"api_key","key_id":"1","owner":null,"login":"octocat"}]"#;
        assert_eq!(ok(json)[0].owner.as_deref(), Some("octocat"));
    }

    #[test]
    fn key_id_fingerprint_is_deterministic() {
        let input = "name,kind,provider,key_id\nci,api_key,GitHub,12345\n";
        let first = ok(input);
        let again = ok(input);
        assert_eq!(first[0].fingerprint, again[0].fingerprint);
        assert_eq!(
            first[0].fingerprint,
            sha256_hex("leash-key-id:github:12345")
        );
        assert_eq!(first[0].fingerprint.len(), 64);
        let e = refused("name,kind,provider,key_id\nci,api_key,GitHub,\n");
        assert_eq!(e.line, 2);
        assert!(e.message.contains("give `fingerprint`"), "{e}");
        assert!(e.message.contains("or `key_id`"), "{e}");
    }

    #[test]
    fn missing_required_fields_say_what_to_give() {
        let e = refused(r#"[{"kind":"api_key","key_id":"1"}]"#);
        assert!(
            e.message
                .starts_with("no `name` (or `id`, `credential`, `label`, `title`)"),
            "{e}"
        );
        let e = refused(r#"[{"name":"a","key_id":"1"}]"#);
        assert!(e.message.contains("no `kind`"), "{e}");
        let e = refused(r#"[{"name":"a","kind":"password","key_id":"1"}]"#);
        assert!(
            e.message.contains("\"password\" is not a credential kind"),
            "{e}"
        );
    }

    #[test]
    fn names_are_bounded_and_single_line() {
        let long = "n".repeat(201);
        let e = refused(&format!("name,kind,key_id\n{long},api_key,1\n"));
        assert!(e.message.contains("201 characters"), "{e}");
        assert_eq!(
            ok(&format!(
                "name,kind,key_id\n{},api_key,1\n",
                "é".repeat(200)
            ))[0]
                .name
                .chars()
                .count(),
            200
        );
        let e = refused("name,kind,key_id\n\"two\nlines\",api_key,1\n");
        assert!(e.message.contains("control character"), "{e}");
    }

    #[test]
    fn scopes_are_capped() {
        let many: Vec<String> = (0..257).map(|i| format!("s{i}")).collect();
        let input = format!("name,kind,key_id,scopes\na,api_key,1,{}\n", many.join(" "));
        let e = refused(&input);
        assert!(e.message.contains("more than 256"), "{e}");
        let input = format!(
            "name,kind,key_id,scopes\na,api_key,1,{}\n",
            many[..256].join(";")
        );
        assert_eq!(ok(&input)[0].scopes.len(), 256);
    }

    #[test]
    fn credential_kind_names() {
        for (text, kind) in [
            ("oauth_grant", CredentialKind::OauthGrant),
            ("OAuth", CredentialKind::OauthGrant),
            ("oauth-app", CredentialKind::OauthGrant),
            ("api_key", CredentialKind::ApiKey),
            ("PAT", CredentialKind::ApiKey),
            ("Personal Access Token", CredentialKind::ApiKey),
            ("service_account_key", CredentialKind::ServiceAccountKey),
            ("service account", CredentialKind::ServiceAccountKey),
        ] {
            assert_eq!(text.parse::<CredentialKind>(), Ok(kind), "{text}");
        }
        for kind in [
            CredentialKind::OauthGrant,
            CredentialKind::ApiKey,
            CredentialKind::ServiceAccountKey,
        ] {
            assert_eq!(kind.as_str().parse::<CredentialKind>(), Ok(kind));
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
        assert!("ssh".parse::<CredentialKind>().is_err());
    }

    #[test]
    fn empty_inputs_have_no_records() {
        for input in ["", "  \n\r\n", "\u{feff}"] {
            let e = refused(input);
            assert_eq!(e.line, 1, "{input:?}");
            assert!(e.message.starts_with("no records"), "{e}");
        }
        for input in [
            "[]",
            "[\n]",
            "{\"items\": []}",
            "name,kind,key_id\n",
            "name,kind,key_id\n\n\n",
        ] {
            let e = refused(input);
            assert!(e.message.starts_with("no records"), "{input:?}: {e}");
        }
        let e = parse(b"\n\n", Format::Json).unwrap_err();
        assert!(e.message.starts_with("no records"), "{e}");
    }

    #[test]
    fn invalid_utf8_names_its_line() {
        let mut input = b"name,kind,key_id\na,api_key,1\nb,api_key,".to_vec();
        input.extend_from_slice(&[0xff, 0xfe, b'\n']);
        let e = parse(&input, Format::Auto).unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.message.contains("UTF-8"), "{e}");
    }

    #[test]
    fn auto_detection_skips_whitespace_and_bom() {
        let json = "\u{feff}\n  [{\"name\":\"a\",\"kind\":\"api_key\",\"key_id\":\"1\"}]";
        assert_eq!(ok(json)[0].line, 2);
        let csv = "\u{feff}name,kind,key_id\na,api_key,1\n";
        assert_eq!(ok(csv)[0].name, "a");
    }

    #[test]
    fn too_many_records_is_refused_at_the_first_over_the_limit() {
        let mut input = String::from("name,kind,key_id\n");
        for i in 0..MAX_RECORDS {
            input.push_str(&format!("cred-{i},api_key,k{i}\n"));
        }
        let records = parse(input.as_bytes(), Format::Csv).unwrap();
        assert_eq!(records.len(), MAX_RECORDS);
        assert_eq!(records.last().map(|r| r.line), Some(MAX_RECORDS + 1));
        input.push_str("one-more,api_key,extra\n");
        let e = parse(input.as_bytes(), Format::Csv).unwrap_err();
        assert_eq!(e.line, MAX_RECORDS + 2);
        assert!(e.message.contains("split"), "{e}");
    }

    // --- provider exports -----------------------------------------------

    const GITHUB: &str = r#"[
  {
    "login": "octocat",
    "credential_id": 161195,
    "credential_type": "personal access token",
    "token_last_eight": "71c3fc11",
    "credential_authorized_at": "2011-01-26T19:06:43Z",
    "credential_accessed_at": "2011-01-26T19:06:43Z",
    "authorized_credential_expires_at": "2011-02-25T19:06:43Z",
    "scopes": [
      "user",
      "repo"
    ],
    "authorized_credential_note": "deploy script",
    "authorized_credential_title": null
  },
  {
    "login": "octocat",
    "credential_id": 161196,
    "credential_type": "SSH key",
    "credential_authorized_at": "2011-01-26T19:06:43Z",
    "credential_accessed_at": null,
    "authorized_credential_expires_at": null,
    "scopes": [],
    "fingerprint": "SHA256:+Tb8cFQhY2LbUoM4Xx2nS6Wq7eVK0yRLjYq2k0QzXWs",
    "authorized_credential_title": "laptop"
  },
  {
    "login": "hubot",
    "credential_id": 3141592,
    "credential_type": "OAuth app token",
    "token_last_eight": "a1b2c3d4",
    "credential_authorized_at": "2024-05-02T08:15:00Z",
    "credential_accessed_at": null,
    "authorized_credential_expires_at": null,
    "scopes": ["read:org", "repo:status"]
  },
  {
    "login": "release-bot",
    "credential_id": 2718281,
    "credential_type": "GitHub app token",
    "credential_authorized_at": "2025-09-30T11:00:00Z",
    "credential_accessed_at": "2026-11-28T07:45:12Z",
    "authorized_credential_expires_at": "2026-12-01T00:00:00Z",
    "scopes": []
  }
]"#;

    #[test]
    fn github_credential_authorizations() {
        let records = ok(GITHUB);
        assert_eq!(records.len(), 4);
        let pat = &records[0];
        assert_eq!(pat.line, 2);
        assert_eq!(pat.name, "github:octocat:161195");
        assert_eq!(pat.kind, CredentialKind::ApiKey);
        assert_eq!(pat.provider, "github");
        assert_eq!(pat.owner.as_deref(), Some("octocat"));
        assert_eq!(pat.key_id.as_deref(), Some("161195"));
        assert_eq!(pat.scopes, ["user", "repo"]);
        assert_eq!(pat.created_at, Some(ms("2011-01-26T19:06:43Z")));
        assert_eq!(pat.last_used_at, Some(ms("2011-01-26T19:06:43Z")));
        assert_eq!(pat.expires_at, Some(ms("2011-02-25T19:06:43Z")));
        assert_eq!(pat.fingerprint, sha256_hex("leash-key-id:github:161195"));

        let ssh = &records[1];
        assert_eq!(ssh.line, 17);
        assert_eq!(ssh.kind, CredentialKind::ApiKey);
        assert_eq!(ssh.last_used_at, None);
        assert_eq!(ssh.fingerprint, sha256_hex("leash-key-id:github:161196"));

        let oauth = &records[2];
        assert_eq!(oauth.line, 28);
        assert_eq!(oauth.kind, CredentialKind::OauthGrant);
        assert_eq!(oauth.name, "github:hubot:3141592");
        assert_eq!(oauth.last_used_at, None);

        let app = &records[3];
        assert_eq!(app.kind, CredentialKind::OauthGrant);
        assert_eq!(app.last_used_at, Some(ms("2026-11-28T07:45:12Z")));
        assert!(
            records
                .iter()
                .all(|r| r.stored_in.is_none() && r.workloads.is_empty())
        );
    }

    #[test]
    fn github_sha256_hex_fingerprint_is_kept_and_missing_login_refused() {
        let input = format!(
            r#"[{{"login":"octocat","credential_id":1,"credential_type":"SSH key","credential_authorized_at":"2020-01-01T00:00:00Z","fingerprint":"{FP_B}"}}]"#
        );
        assert_eq!(ok(&input)[0].fingerprint, FP_B.to_ascii_lowercase());
        let input = "[\n{\"login\":\"a\",\"credential_id\":1,\"credential_type\":\"SSH key\",\"credential_authorized_at\":null},\n{\"credential_id\":2,\"credential_type\":\"SSH key\",\"credential_authorized_at\":null}\n]";
        let e = refused(input);
        assert_eq!(e.line, 3);
        assert!(e.message.contains("no `login`"), "{e}");
        assert!(e.message.contains("credential-authorizations"), "{e}");
    }

    const AWS: &str = "user,arn,user_creation_time,password_enabled,password_last_used,password_last_changed,password_next_rotation,mfa_active,access_key_1_active,access_key_1_last_rotated,access_key_1_last_used_date,access_key_1_last_used_region,access_key_1_last_used_service,access_key_2_active,access_key_2_last_rotated,access_key_2_last_used_date,access_key_2_last_used_region,access_key_2_last_used_service,cert_1_active,cert_1_last_rotated,cert_2_active,cert_2_last_rotated
<root_account>,arn:aws:iam::123456789012:root,2019-03-05T14:21:07+00:00,not_supported,2026-10-01T08:12:44+00:00,not_supported,not_supported,true,true,2019-03-05T14:30:00+00:00,2023-07-14T10:00:00+00:00,us-east-1,iam,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A
ci-deployer,arn:aws:iam::123456789012:user/ci/ci-deployer,2021-06-10T09:00:00+00:00,false,N/A,N/A,N/A,false,true,2024-02-01T10:30:00+00:00,2026-11-28T23:59:02+00:00,eu-west-1,s3,true,2025-08-15T12:00:00+00:00,N/A,N/A,N/A,false,N/A,false,N/A
alice,arn:aws:iam::123456789012:user/alice,2020-01-20T16:45:31+00:00,true,2026-11-27T09:14:00+00:00,2026-05-02T10:00:00+00:00,N/A,true,false,2022-01-01T00:00:00+00:00,2022-06-01T00:00:00+00:00,us-east-1,ec2,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A
backup-job,arn:aws:iam::123456789012:user/backup-job,2022-11-03T07:10:00+00:00,false,N/A,N/A,N/A,false,false,N/A,N/A,N/A,N/A,true,2023-04-04T04:04:04+00:00,no_information,N/A,N/A,false,N/A,false,N/A
";

    #[test]
    fn aws_credential_report() {
        let records = ok(AWS);
        let names: Vec<_> = records.iter().map(|r| (r.name.as_str(), r.line)).collect();
        assert_eq!(
            names,
            [
                ("aws:<root_account>:key1", 2),
                ("aws:ci-deployer:key1", 3),
                ("aws:ci-deployer:key2", 3),
                ("aws:backup-job:key2", 5),
            ]
        );
        let root = &records[0];
        assert_eq!(root.owner, None);
        assert_eq!(root.kind, CredentialKind::ApiKey);
        assert_eq!(root.provider, "aws");
        assert_eq!(
            root.key_id.as_deref(),
            Some("arn:aws:iam::123456789012:root#key1")
        );
        let ci = &records[1];
        assert_eq!(ci.created_at, Some(ms("2024-02-01T10:30:00Z")));
        assert_eq!(ci.last_used_at, Some(ms("2026-11-28T23:59:02Z")));
        assert_eq!(ci.expires_at, None);
        assert_eq!(
            ci.fingerprint,
            sha256_hex("leash-key-id:aws:arn:aws:iam::123456789012:user/ci/ci-deployer#key1")
        );
        assert_eq!(records[2].last_used_at, None);
        assert_eq!(records[3].last_used_at, None);
        assert_eq!(records[3].created_at, Some(ms("2023-04-04T04:04:04Z")));
        assert!(
            records
                .iter()
                .all(|r| r.owner.is_none() && r.workloads.is_empty())
        );
    }

    #[test]
    fn aws_report_errors_and_no_active_keys() {
        let header = AWS.lines().next().unwrap_or_default();
        let bad = AWS.replace(
            "2024-02-01T10:30:00+00:00,2026-11-28T23:59:02+00:00",
            "2024-02-01T10:30:00+00:00,last tuesday",
        );
        let e = refused(&bad);
        assert_eq!(e.line, 3);
        assert!(
            e.message
                .contains("`access_key_1_last_used_date` value \"last tuesday\""),
            "{e}"
        );
        let bad = AWS.replace("false,true,2024-02-01", "false,yes,2024-02-01");
        let e = refused(&bad);
        assert_eq!(e.line, 3);
        assert!(e.message.contains("`true` or `false`"), "{e}");
        let quiet = format!(
            "{header}\nalice,arn:aws:iam::1:user/alice,2020-01-20T16:45:31+00:00,true,N/A,N/A,N/A,true,false,N/A,N/A,N/A,N/A,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A\n"
        );
        assert_eq!(ok(&quiet), []);
    }

    const GCP: &str = r#"[
  {
    "keyAlgorithm": "KEY_ALG_RSA_2048",
    "keyOrigin": "GOOGLE_PROVIDED",
    "keyType": "USER_MANAGED",
    "name": "projects/acme-prod/serviceAccounts/deployer@acme-prod.iam.gserviceaccount.com/keys/1f2e3d4c5b6a79880011223344556677889900aa",
    "validAfterTime": "2025-01-14T09:32:10Z",
    "validBeforeTime": "9999-12-31T23:59:59Z"
  },
  {
    "keyAlgorithm": "KEY_ALG_RSA_2048",
    "keyOrigin": "GOOGLE_PROVIDED",
    "keyType": "SYSTEM_MANAGED",
    "name": "projects/acme-prod/serviceAccounts/deployer@acme-prod.iam.gserviceaccount.com/keys/8d7c6b5a4f3e2d1c0b9a88776655443322110099",
    "validAfterTime": "2026-11-20T04:11:02Z",
    "validBeforeTime": "2026-12-07T04:11:02Z"
  },
  {
    "disabled": true,
    "keyAlgorithm": "KEY_ALG_RSA_2048",
    "keyOrigin": "GOOGLE_PROVIDED",
    "keyType": "USER_MANAGED",
    "name": "projects/acme-prod/serviceAccounts/deployer@acme-prod.iam.gserviceaccount.com/keys/0000aaaa1111bbbb2222cccc3333dddd4444eeee",
    "validAfterTime": "2023-02-01T00:00:00Z",
    "validBeforeTime": "9999-12-31T23:59:59Z"
  },
  {
    "keyAlgorithm": "KEY_ALG_RSA_2048",
    "keyOrigin": "USER_PROVIDED",
    "keyType": "USER_MANAGED",
    "name": "projects/acme-prod/serviceAccounts/deployer@acme-prod.iam.gserviceaccount.com/keys/ffffeeeeddddccccbbbbaaaa9999888877776666",
    "validAfterTime": "2026-01-15T00:00:00Z",
    "validBeforeTime": "2027-01-15T00:00:00Z"
  }
]"#;

    #[test]
    fn gcp_service_account_keys() {
        let records = ok(GCP);
        assert_eq!(records.len(), 2);
        let first = &records[0];
        assert_eq!(first.line, 2);
        assert_eq!(
            first.name,
            "gcp:deployer@acme-prod.iam.gserviceaccount.com:1f2e3d4c5b6a79880011223344556677889900aa"
        );
        assert_eq!(first.kind, CredentialKind::ServiceAccountKey);
        assert_eq!(first.provider, "gcp");
        assert_eq!(first.owner, None);
        assert_eq!(
            first.key_id.as_deref(),
            Some("1f2e3d4c5b6a79880011223344556677889900aa")
        );
        assert_eq!(first.created_at, Some(ms("2025-01-14T09:32:10Z")));
        assert_eq!(first.expires_at, None);
        assert_eq!(
            first.fingerprint,
            sha256_hex("leash-key-id:gcp:1f2e3d4c5b6a79880011223344556677889900aa")
        );
        let last = &records[1];
        assert_eq!(last.line, 27);
        assert_eq!(last.expires_at, Some(ms("2027-01-15T00:00:00Z")));
    }

    #[test]
    fn gcp_key_create_output_with_private_key_is_refused() {
        let input = r#"{
  "name": "projects/p/serviceAccounts/sa@p.iam.gserviceaccount.com/keys/abc",
  "keyType": "USER_MANAGED",
  "privateKeyData": "ewogICJ0eXBlIjogInNlcnZpY2VfYWNjb3VudCIs",
  "validAfterTime": "2026-01-01T00:00:00Z"
}"#;
        let e = refused(input);
        assert_eq!(e.line, 1);
        assert!(
            e.message
                .contains("\"privateKeyData\" would carry a secret"),
            "{e}"
        );
        assert!(!e.to_string().contains("ewogICJ0"));
    }

    #[test]
    fn gcp_bad_key_name_is_refused() {
        let input = GCP.replace(
            "projects/acme-prod/serviceAccounts/deployer@acme-prod.iam.gserviceaccount.com/keys/ffffeeee",
            "projects/acme-prod/keys/ffffeeee",
        );
        let e = refused(&input);
        assert_eq!(e.line, 27);
        assert!(
            e.message
                .contains("projects/PROJECT/serviceAccounts/EMAIL/keys/KEY_ID"),
            "{e}"
        );
    }

    #[test]
    fn scanner_finds_element_starts() {
        let text = r#"[ {"a":"x]},\"{"}, [1,[2]], "s\\", 3.5e2 ,null,{}]"#;
        let spans = array_elements(text.as_bytes(), 0).unwrap();
        let parts: Vec<_> = spans.iter().map(|&(s, e)| &text[s..e]).collect();
        assert_eq!(
            parts,
            [
                r#"{"a":"x]},\"{"}"#,
                "[1,[2]]",
                r#""s\\""#,
                "3.5e2",
                "null",
                "{}"
            ]
        );
    }

    #[test]
    fn field_names_are_normalized() {
        for (given, normal) in [
            ("name", "name"),
            ("Owner Email", "owner_email"),
            ("owner-email", "owner_email"),
            ("ownerEmail", "owner_email"),
            ("OwnerEMAIL", "owner_email"),
            ("KeyID", "key_id"),
            ("validAfterTime", "valid_after_time"),
            ("  Last  Used - At ", "last_used_at"),
            ("__x__y", "x_y"),
            ("access_key_1_active", "access_key_1_active"),
        ] {
            assert_eq!(normalize_name(given), normal, "{given:?}");
            assert_eq!(normalize_key(given), normal, "{given:?}");
        }
    }

    // --- robustness -----------------------------------------------------

    proptest! {
        #[test]
        fn parse_never_panics_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            for format in [Format::Auto, Format::Json, Format::Csv] {
                let _ = parse(&bytes, format);
            }
        }

        /// Whatever the names hold (quotes, commas, brackets, escapes) and
        /// however many lines a record takes, every layout reads back the
        /// same records at the lines they were written on.
        #[test]
        fn records_round_trip_with_their_lines(
            rows in proptest::collection::vec(
                (r#"[a-zA-Z0-9 ,;"'\[\]{}:\\é-]{0,12}"#, r#"[a-z ,"\n\r]{0,12}"#),
                1..12,
            )
        ) {
            let records: Vec<serde_json::Value> = rows
                .iter()
                .enumerate()
                .map(|(i, (name, stored))| serde_json::json!({
                    "name": format!("n{i}{name}x"),
                    "kind": "api_key",
                    "key_id": format!("k{i}"),
                    "stored_in": stored,
                }))
                .collect();
            let names: Vec<String> = records.iter().map(|r| r["name"].as_str().unwrap().to_owned()).collect();

            // A pretty array, and the same inside a wrapper object.
            let mut array = String::from("[\n");
            let mut lines = Vec::new();
            let mut line = 2;
            for (i, record) in records.iter().enumerate() {
                let text = serde_json::to_string_pretty(record).unwrap();
                lines.push(line);
                line += text.matches('\n').count() + 1;
                array.push_str(&text);
                array.push_str(if i + 1 < records.len() { ",\n" } else { "\n" });
            }
            array.push(']');
            let wrapped = format!("{{\"exported\": [1, {{\"items\": 2}}], \"items\":\n{array}}}");
            let wrapped_lines: Vec<usize> = lines.iter().map(|l| l + 1).collect();

            // JSON lines.
            let jsonl: String = records.iter().map(|r| format!("{r}\n")).collect();
            let jsonl_lines: Vec<usize> = (1..=records.len()).collect();

            // CSV with every field quoted; `stored_in` may hold line breaks.
            let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
            let mut csv = String::from("name,kind,key_id,stored_in\r\n");
            let mut csv_lines = Vec::new();
            let mut line = 2;
            for (i, (_, stored)) in rows.iter().enumerate() {
                csv_lines.push(line);
                line += stored.matches('\n').count() + 1;
                csv.push_str(&format!("{},api_key,k{i},{}\r\n", quote(&names[i]), quote(stored)));
            }

            for (input, expected) in [
                (array, lines.clone()),
                (wrapped, wrapped_lines),
                (jsonl, jsonl_lines),
                (csv, csv_lines),
            ] {
                let parsed = parse(input.as_bytes(), Format::Auto);
                prop_assert!(parsed.is_ok(), "{parsed:?}\n{input}");
                let parsed = parsed.unwrap();
                let got_names: Vec<&str> = parsed.iter().map(|r| r.name.as_str()).collect();
                let got_lines: Vec<usize> = parsed.iter().map(|r| r.line).collect();
                prop_assert_eq!(&got_names, &names, "{}", input);
                prop_assert_eq!(&got_lines, &expected, "{}", input);
            }
        }

        #[test]
        fn parse_never_panics_on_near_json(text in r#"[\[\]{}",:\n\r \\a-z0-9_.\-]{0,200}"#) {
            for format in [Format::Auto, Format::Json, Format::Csv] {
                let _ = parse(text.as_bytes(), format);
            }
        }

        #[test]
        fn parse_never_panics_on_near_records(
            rows in proptest::collection::vec(
                r#"(name|kind|key_id|scopes|created|"a,b"|"x""y"|api_key|oauth|1700000000|2026-01-01|N/A|,|;| |\r|\n|"){0,12}"#,
                0..20,
            )
        ) {
            let csv = format!("name,kind,key_id,scopes,created\n{}", rows.join("\n"));
            let json: String = rows
                .iter()
                .map(|r| format!("{{\"name\":{r:?},\"kind\":\"api_key\",\"key_id\":{r:?},\"created\":{r:?}}}\n"))
                .collect();
            for input in [csv, json] {
                for format in [Format::Auto, Format::Json, Format::Csv] {
                    let _ = parse(input.as_bytes(), format);
                }
            }
        }
    }
}
