//! The shapes of text that reaches `POST /v1/exposures`: a generic JSON
//! message, a Slack Events API callback, or a Jira issue/comment webhook;
//! and how each proves where it came from.

use axum::http::HeaderMap;
use leash_core::{ExposureSource, Millis};
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::notify::verify_signature;

/// Most third-party findings one generic report may carry.
pub const MAX_REPORTED: usize = 1000;
/// How far a Slack request timestamp may be from now (replay window).
const SLACK_SKEW_SECS: u64 = 300;

/// A message from any source, to scan.
#[derive(Debug, Clone)]
pub struct Message {
    pub source: ExposureSource,
    pub location: String,
    pub text: String,
}

/// A generic exposure report: text to scan, and/or third-party findings
/// that a scanner elsewhere (`leash scan`) already made, by fingerprint.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GenericReport {
    /// `ticket`, `chat`, `code`, `git`, `log` (or `partner`).
    pub source: String,
    /// Where the text was: a message link, `path:line`, a log stream.
    pub location: String,
    /// Text to scan. Leash tokens in it are revoked at once.
    #[serde(default)]
    pub text: Option<String>,
    /// Third-party secrets already found, by fingerprint (never the secret).
    #[serde(default)]
    pub findings: Vec<ReportedFinding>,
}

/// A third-party secret found elsewhere.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportedFinding {
    /// Scanner rule id, e.g. `github-pat`.
    pub detector: String,
    /// Hex SHA-256 of the secret.
    pub fingerprint: String,
    /// Redacted excerpt.
    pub excerpt: String,
    /// A more precise location than the report's (e.g. `src/app.py:12`).
    #[serde(default)]
    pub location: Option<String>,
}

/// Who sent the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    Operator,
    Slack,
    Jira,
}

impl Caller {
    /// Audit actor.
    pub fn actor(self) -> &'static str {
        match self {
            Caller::Operator => "operator",
            Caller::Slack => "feed:slack",
            Caller::Jira => "feed:jira",
        }
    }
}

/// What a report asks for.
#[derive(Debug)]
pub enum Feed {
    /// Slack's `url_verification` handshake: echo the challenge.
    SlackChallenge(String),
    /// Text to scan, plus findings by fingerprint.
    Scan {
        messages: Vec<Message>,
        reported: Vec<(ExposureSource, String, ReportedFinding)>,
    },
    /// A well-formed event that carries no text to scan.
    Ignored(String),
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Authenticate a report: a Slack request signature, a Jira webhook
/// signature (`X-Hub-Signature`), or the operator bearer credential.
pub fn authenticate(
    app: &crate::App,
    headers: &HeaderMap,
    body: &[u8],
    now: Millis,
) -> Result<Caller, ApiError> {
    let cfg = &app.exposures;
    if let Some(sig) = header(headers, "x-slack-signature") {
        let secret = cfg.slack_secret.as_deref().ok_or_else(|| {
            ApiError::unauthorized_because(
                "a Slack signature was sent but no Slack signing secret is configured (leash serve --slack-signing-secret-file)",
            )
        })?;
        let ts = header(headers, "x-slack-request-timestamp")
            .and_then(|t| t.parse::<i64>().ok())
            .ok_or_else(|| {
                ApiError::unauthorized_because(
                    "X-Slack-Request-Timestamp is missing or not a number",
                )
            })?;
        // abs_diff: a hostile timestamp (i64::MIN) must not overflow
        if (now / 1000).abs_diff(ts) > SLACK_SKEW_SECS {
            return Err(ApiError::unauthorized_because(
                "the Slack request timestamp is more than 5 minutes from now (replayed or clock skew)",
            ));
        }
        let mut base = format!("v0:{ts}:").into_bytes();
        base.extend_from_slice(body);
        let tag = sig.strip_prefix("v0=").unwrap_or("");
        return if verify_signature(secret, &base, tag) {
            Ok(Caller::Slack)
        } else {
            Err(ApiError::unauthorized_because(
                "the Slack signature does not verify",
            ))
        };
    }
    if let Some(sig) = header(headers, "x-hub-signature") {
        let secret = cfg.jira_secret.as_deref().ok_or_else(|| {
            ApiError::unauthorized_because(
                "a webhook signature was sent but no Jira webhook secret is configured (leash serve --jira-webhook-secret-file)",
            )
        })?;
        return if sig.starts_with("sha256=") && verify_signature(secret, body, sig) {
            Ok(Caller::Jira)
        } else {
            Err(ApiError::unauthorized_because(
                "the X-Hub-Signature (sha256=HMAC of the body) does not verify",
            ))
        };
    }
    let bearer = header(headers, "authorization")
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim());
    match bearer {
        Some(t) if app.is_operator(t) => Ok(Caller::Operator),
        _ => Err(ApiError::unauthorized()),
    }
}

/// Parse a report. A signed Slack or Jira request must have its own shape.
pub fn parse(caller: Caller, body: &[u8]) -> Result<Feed, ApiError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))?;
    let is_slack = matches!(
        v.get("type").and_then(Value::as_str),
        Some("url_verification" | "event_callback")
    );
    let is_jira = v.get("webhookEvent").is_some();
    match caller {
        Caller::Slack if !is_slack => {
            return Err(ApiError::bad_request(
                "a Slack-signed request must be a Slack Events API body (`type`: url_verification or event_callback)",
            ));
        }
        Caller::Jira if !is_jira => {
            return Err(ApiError::bad_request(
                "a Jira-signed request must be a Jira webhook body (with `webhookEvent`)",
            ));
        }
        _ => {}
    }
    if is_slack {
        slack(&v)
    } else if is_jira {
        jira(&v)
    } else {
        generic(v)
    }
}

fn generic(v: Value) -> Result<Feed, ApiError> {
    let r: GenericReport = serde_json::from_value(v).map_err(|e| {
        ApiError::bad_request(format!(
            "not a generic exposure report ({e}); send {{\"source\", \"location\", \"text\"}}, a Slack Events API body, or a Jira webhook body"
        ))
    })?;
    let source: ExposureSource = r
        .source
        .parse()
        .map_err(|e: leash_core::InvalidInput| ApiError::bad_request(e.to_string()))?;
    if r.location.trim().is_empty() {
        return Err(ApiError::bad_request(
            "`location` is empty: say where the text was (a link, path:line, a log stream)",
        ));
    }
    if r.text.is_none() && r.findings.is_empty() {
        return Err(ApiError::bad_request(
            "give `text` to scan or `findings` (by fingerprint), or both",
        ));
    }
    if r.findings.len() > MAX_REPORTED {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_REPORTED} findings per report; split it"
        )));
    }
    let reported = r
        .findings
        .into_iter()
        .map(|f| {
            let loc = f.location.clone().unwrap_or_else(|| r.location.clone());
            (source, loc, f)
        })
        .collect();
    let messages = r
        .text
        .map(|text| Message {
            source,
            location: r.location,
            text,
        })
        .into_iter()
        .collect();
    Ok(Feed::Scan { messages, reported })
}

/// Is `excerpt` already in the redacted form `leash_scan::redact` makes
/// (at most four characters, `…`, and `(N chars)`)? Anything else is
/// redacted again before it is stored, in case a client sent a secret.
pub fn is_redacted(excerpt: &str) -> bool {
    let Some((head, tail)) = excerpt.split_once('…') else {
        return false;
    };
    head.chars().count() <= 4
        && tail
            .strip_prefix('(')
            .and_then(|t| t.strip_suffix(" chars)"))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

/// Slack Events API: `url_verification`, and `event_callback` with a
/// `message` event (including `message_changed`, whose text is in
/// `event.message`, and attachment texts).
fn slack(v: &Value) -> Result<Feed, ApiError> {
    if str_at(v, &["type"]) == Some("url_verification") {
        let c = str_at(v, &["challenge"])
            .ok_or_else(|| ApiError::bad_request("url_verification without `challenge`"))?;
        return Ok(Feed::SlackChallenge(c.to_owned()));
    }
    let event = v
        .get("event")
        .ok_or_else(|| ApiError::bad_request("event_callback without `event`"))?;
    let kind = str_at(event, &["type"]).unwrap_or_default();
    if kind != "message" {
        return Ok(Feed::Ignored(format!(
            "Slack event type `{kind}` carries no message"
        )));
    }
    let team = str_at(v, &["team_id"]).unwrap_or("-");
    let channel = str_at(event, &["channel"]).unwrap_or("-");
    let ts = str_at(event, &["message", "ts"])
        .or_else(|| str_at(event, &["ts"]))
        .unwrap_or("-");
    let mut texts: Vec<&str> = Vec::new();
    for m in [Some(event), event.get("message")].into_iter().flatten() {
        texts.extend(str_at(m, &["text"]));
        if let Some(atts) = m.get("attachments").and_then(Value::as_array) {
            for a in atts {
                texts.extend(
                    ["text", "fallback", "pretext"]
                        .iter()
                        .filter_map(|k| str_at(a, &[k])),
                );
            }
        }
    }
    if texts.is_empty() {
        return Ok(Feed::Ignored("the Slack message has no text".into()));
    }
    Ok(Feed::Scan {
        messages: vec![Message {
            source: ExposureSource::Chat,
            location: format!("slack:{team}/{channel}/{ts}"),
            text: texts.join("\n"),
        }],
        reported: Vec::new(),
    })
}

/// Text of a Jira field: a plain string (API v2) or an Atlassian Document
/// Format tree (API v3), whose `text` leaves are joined.
fn jira_text(v: &Value, out: &mut String) {
    match v {
        Value::String(s) => {
            out.push_str(s);
            out.push('\n');
        }
        Value::Object(o) => {
            if let Some(Value::String(t)) = o.get("text") {
                out.push_str(t);
            }
            if let Some(Value::Array(items)) = o.get("content") {
                for i in items {
                    jira_text(i, out);
                }
                out.push('\n');
            }
        }
        _ => {}
    }
}

/// Jira webhooks: `jira:issue_created` / `jira:issue_updated` (summary and
/// description) and `comment_created` / `comment_updated` (the comment).
fn jira(v: &Value) -> Result<Feed, ApiError> {
    let event = str_at(v, &["webhookEvent"]).unwrap_or_default();
    let key = str_at(v, &["issue", "key"]).unwrap_or("-");
    let mut text = String::new();
    let location = match event {
        "jira:issue_created" | "jira:issue_updated" => {
            if let Some(f) = v.get("issue").and_then(|i| i.get("fields")) {
                for field in ["summary", "description", "environment"] {
                    if let Some(x) = f.get(field) {
                        jira_text(x, &mut text);
                    }
                }
            }
            // an update may also carry a comment
            if let Some(c) = v.get("comment").and_then(|c| c.get("body")) {
                jira_text(c, &mut text);
            }
            format!("jira:{key}")
        }
        "comment_created" | "comment_updated" => {
            let id = v
                .get("comment")
                .and_then(|c| c.get("id"))
                .map(|i| {
                    i.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| i.to_string())
                })
                .unwrap_or_else(|| "-".into());
            if let Some(c) = v.get("comment").and_then(|c| c.get("body")) {
                jira_text(c, &mut text);
            }
            format!("jira:{key}#comment-{id}")
        }
        other => {
            return Ok(Feed::Ignored(format!(
                "Jira event `{other}` carries no issue or comment text"
            )));
        }
    };
    if text.trim().is_empty() {
        return Ok(Feed::Ignored("the Jira event has no text".into()));
    }
    Ok(Feed::Scan {
        messages: vec![Message {
            source: ExposureSource::Ticket,
            location,
            text,
        }],
        reported: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(f: Feed) -> Vec<Message> {
        match f {
            Feed::Scan { messages, .. } => messages,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn slack_message_changed_and_attachments_are_scanned() {
        let body = serde_json::json!({
            "type": "event_callback", "team_id": "T1",
            "event": {"type": "message", "subtype": "message_changed", "channel": "C9",
                      "message": {"text": "new text", "ts": "17.5",
                                  "attachments": [{"fallback": "att text"}]}}
        });
        let m = messages(parse(Caller::Slack, body.to_string().as_bytes()).unwrap());
        assert_eq!(m[0].location, "slack:T1/C9/17.5");
        assert!(m[0].text.contains("new text") && m[0].text.contains("att text"));
    }

    #[test]
    fn jira_adf_comment_text_is_joined() {
        let body = serde_json::json!({
            "webhookEvent": "comment_created", "issue": {"key": "SUP-7"},
            "comment": {"id": "10001", "body": {"type": "doc", "content": [
                {"type": "paragraph", "content": [{"type": "text", "text": "token is "},
                                                   {"type": "text", "text": "abc"}]}]}}
        });
        let m = messages(parse(Caller::Jira, body.to_string().as_bytes()).unwrap());
        assert_eq!(m[0].location, "jira:SUP-7#comment-10001");
        assert!(m[0].text.contains("token is abc"), "{}", m[0].text);
    }

    #[test]
    fn redacted_excerpts_are_recognised() {
        assert!(is_redacted("ghp_…(40 chars)"));
        assert!(is_redacted("…(3 chars)"));
        assert!(!is_redacted("ghp_abcdefghijklmnopqrstuvwxyz0123456789"));
        assert!(!is_redacted("ghp_…(40 chars) plus more"));
    }

    #[test]
    fn signed_requests_must_have_their_own_shape() {
        let generic = br#"{"source":"chat","location":"x","text":"t"}"#;
        assert!(parse(Caller::Slack, generic).is_err());
        assert!(parse(Caller::Jira, generic).is_err());
        assert!(parse(Caller::Operator, generic).is_ok());
        let err = parse(
            Caller::Operator,
            br#"{"source":"email","location":"x","text":"t"}"#,
        )
        .unwrap_err();
        assert!(
            err.detail.contains("ticket chat code git log partner"),
            "{}",
            err.detail
        );
    }
}
