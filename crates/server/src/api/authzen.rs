//! OpenID AuthZEN Authorization API 1.0: `POST /access/v1/evaluation`,
//! `POST /access/v1/evaluations` and `/.well-known/authzen-configuration`.
//!
//! The caller (a policy enforcement point) authenticates with the operator
//! credential or as a resource-server client (`leash client add
//! --introspect`, HTTP Basic). The subject is the workload presenting the
//! token; its token travels in `subject.properties.token`:
//!
//! ```json
//! {"subject": {"type": "workload", "id": "triage-bot", "properties": {"token": "…"}},
//!  "action": {"name": "write"}, "resource": {"type": "repo", "id": "acme/api"},
//!  "context": {"tool": "git-push"}}
//! ```
//!
//! A decision is always HTTP 200 with `{"decision": bool, "context":
//! {"reason": "…", "reasons": [...]}}`. Errors about the whole request are
//! the spec's: 400 / 401 / 500 with an error message string (text/plain).
//! In a batch, an evaluation that is itself malformed is `decision: false`
//! with `context.error: {status: 400, message}`.

use std::borrow::Cow;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use leash_policy::ResourceRef;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::authz::{DpopInput, Evaluation};
use crate::{App, AppState};

/// Most evaluations in one batch.
pub const MAX_EVALUATIONS: usize = 1000;

/// An AuthZEN transport error: status and a message string.
#[derive(Debug)]
pub struct AuthzenError {
    pub status: StatusCode,
    pub message: String,
}

impl AuthzenError {
    fn bad(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }
}

impl IntoResponse for AuthzenError {
    fn into_response(self) -> Response {
        let mut r = (self.status, self.message).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"leash\", Bearer realm=\"leash\""),
            );
        }
        r
    }
}

#[derive(Debug, Clone, Deserialize)]
struct Subject<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    properties: Option<SubjectProps<'a>>,
}

#[derive(Debug, Clone, Deserialize)]
struct SubjectProps<'a> {
    #[serde(borrow, default)]
    token: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    dpop: Option<Dpop<'a>>,
}

#[derive(Debug, Clone, Deserialize)]
struct Dpop<'a> {
    #[serde(borrow)]
    proof: Cow<'a, str>,
    #[serde(borrow)]
    htm: Cow<'a, str>,
    #[serde(borrow)]
    htu: Cow<'a, str>,
}

#[derive(Debug, Clone, Deserialize)]
struct Action<'a> {
    #[serde(borrow)]
    name: Option<Cow<'a, str>>,
}

#[derive(Debug, Clone, Deserialize)]
struct Resource<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    properties: Option<ResourceProps<'a>>,
}

#[derive(Debug, Clone, Deserialize)]
struct ResourceProps<'a> {
    #[serde(borrow, default)]
    environment: Option<Cow<'a, str>>,
}

#[derive(Debug, Clone, Deserialize)]
struct Context<'a> {
    #[serde(borrow, default)]
    tool: Option<Cow<'a, str>>,
}

/// One request (or one item of a batch, or a batch's defaults).
#[derive(Debug, Clone, Default, Deserialize)]
struct Tuple<'a> {
    #[serde(borrow, default)]
    subject: Option<Subject<'a>>,
    #[serde(borrow, default)]
    action: Option<Action<'a>>,
    #[serde(borrow, default)]
    resource: Option<Resource<'a>>,
    #[serde(borrow, default)]
    context: Option<Context<'a>>,
}

#[derive(Debug, Deserialize)]
struct Batch<'a> {
    #[serde(flatten, borrow)]
    defaults: Tuple<'a>,
    #[serde(borrow, default)]
    evaluations: Option<Vec<Tuple<'a>>>,
    #[serde(default)]
    options: Option<Options>,
}

#[derive(Debug, Deserialize)]
struct Options {
    #[serde(default)]
    evaluations_semantic: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Semantic {
    ExecuteAll,
    DenyOnFirstDeny,
    PermitOnFirstPermit,
}

fn non_empty<'b>(v: &'b Option<Cow<'_, str>>) -> Option<&'b str> {
    v.as_deref().filter(|s| !s.is_empty())
}

/// Check a tuple's shape and borrow it as an [`Evaluation`].
fn evaluation<'b>(t: &'b Tuple<'_>) -> Result<Evaluation<'b>, String> {
    let subject = t
        .subject
        .as_ref()
        .ok_or("`subject` is required: {\"type\": \"workload\", \"id\": …, \"properties\": {\"token\": …}}")?;
    let kind = non_empty(&subject.kind).ok_or("`subject.type` is required (\"workload\")")?;
    if kind != "workload" {
        return Err(format!(
            "`subject.type` is `{kind}`; Leash decides for workloads: send \"workload\""
        ));
    }
    let id = non_empty(&subject.id)
        .ok_or("`subject.id` is required: the presenting workload's identity or name")?;
    let props = subject.properties.as_ref();
    let action = t
        .action
        .as_ref()
        .and_then(|a| non_empty(&a.name))
        .ok_or("`action.name` is required, e.g. {\"name\": \"write\"}")?;
    let resource = t
        .resource
        .as_ref()
        .ok_or("`resource` is required: {\"type\": …, \"id\": …}")?;
    let rtype = non_empty(&resource.kind).ok_or("`resource.type` is required")?;
    let rid = non_empty(&resource.id).ok_or("`resource.id` is required")?;
    for (what, v) in [
        ("subject.id", id),
        ("action.name", action),
        ("resource.type", rtype),
    ] {
        if v.len() > 256 {
            return Err(format!("`{what}` is longer than 256 characters"));
        }
    }
    if rid.len() > 1024 {
        return Err("`resource.id` is longer than 1024 characters".into());
    }
    let tool = t.context.as_ref().and_then(|c| non_empty(&c.tool));
    Ok(Evaluation {
        subject: id,
        token: props.and_then(|p| p.token.as_deref()),
        dpop: props.and_then(|p| p.dpop.as_ref()).map(|d| DpopInput {
            proof: &d.proof,
            htm: &d.htm,
            htu: &d.htu,
        }),
        action,
        resource: ResourceRef {
            resource_type: rtype,
            id: rid,
            environment: resource
                .properties
                .as_ref()
                .and_then(|p| p.environment.as_deref()),
        },
        tool,
    })
}

/// The caller must be the operator or a resource-server client.
fn authenticate_pep(app: &App, headers: &HeaderMap) -> Result<(), AuthzenError> {
    let unauthorized = |m: &str| AuthzenError {
        status: StatusCode::UNAUTHORIZED,
        message: m.to_owned(),
    };
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| unauthorized("authenticate: send the operator credential as a Bearer token, or a resource-server client's id and secret with HTTP Basic (`leash client add --introspect`)"))?;
    if let Some((scheme, rest)) = value.split_once(' ')
        && scheme.eq_ignore_ascii_case("bearer")
    {
        return if app.is_operator(rest.trim()) {
            Ok(())
        } else {
            Err(unauthorized(
                "the Bearer credential is not the operator credential",
            ))
        };
    }
    let presented = super::clients::Presented {
        client_id: None,
        client_secret: None,
        client_assertion_type: None,
        client_assertion: None,
    };
    let endpoint = format!("{}/access/v1/evaluation", app.issuer);
    match super::clients::authenticate(app, headers, &presented, &endpoint) {
        Ok((client, _)) if client.can_introspect => Ok(()),
        Ok(_) => Err(unauthorized(
            "this client is not a resource server; register one with `leash client add --introspect`",
        )),
        Err(e) => Err(unauthorized(&e.description)),
    }
}

fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, AuthzenError> {
    serde_json::from_slice(body).map_err(|e| {
        AuthzenError::bad(format!(
            "the body is not a valid AuthZEN request: {e}; send JSON like {{\"subject\": {{\"type\": \"workload\", \"id\": …, \"properties\": {{\"token\": …}}}}, \"action\": {{\"name\": …}}, \"resource\": {{\"type\": …, \"id\": …}}}}"
        ))
    })
}

fn json_response(headers: &HeaderMap, body: &impl serde::Serialize) -> Response {
    let mut r = axum::Json(body).into_response();
    echo_request_id(headers, &mut r);
    r
}

/// `{"decision": bool, "context": {"reason": "…", "reasons": [...]}}`, or
/// for a malformed batch item `{"decision": false, "context": {"error": {status, message}}}`.
#[derive(Debug, Serialize)]
struct DecisionOut {
    decision: bool,
    context: ContextOut,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
enum ContextOut {
    /// Written straight from the decision, which a remembered decision
    /// shares with the policy set's memo: nothing is copied per answer.
    Reasons(#[serde(serialize_with = "reasons")] Arc<leash_policy::Decision>),
    Error {
        error: ItemError,
    },
}

fn reasons<S: serde::Serializer>(d: &Arc<leash_policy::Decision>, s: S) -> Result<S::Ok, S::Error> {
    d.authzen_context().serialize(s)
}

#[derive(Debug, Serialize)]
struct ItemError {
    status: u16,
    message: String,
}

impl DecisionOut {
    fn from_decision(d: Arc<leash_policy::Decision>) -> Self {
        Self {
            decision: d.allow,
            context: ContextOut::Reasons(d),
        }
    }

    fn malformed(message: String) -> Self {
        Self {
            decision: false,
            context: ContextOut::Error {
                error: ItemError {
                    status: 400,
                    message,
                },
            },
        }
    }
}

#[derive(Debug, Serialize)]
struct BatchOut {
    evaluations: Vec<DecisionOut>,
}

/// The spec: a request's `X-Request-ID` comes back on its response.
fn echo_request_id(headers: &HeaderMap, r: &mut Response) {
    if let Some(id) = headers.get("x-request-id") {
        r.headers_mut().insert("x-request-id", id.clone());
    }
}

fn with_request_id(headers: &HeaderMap, e: AuthzenError) -> Response {
    let mut r = e.into_response();
    echo_request_id(headers, &mut r);
    r
}

/// `POST /access/v1/evaluation`
#[utoipa::path(post, path = "/access/v1/evaluation", tag = "authzen",
    request_body(content = Object, description = "AuthZEN 1.0 evaluation: subject (the workload, token in properties.token), action, resource, context"),
    responses((status = 200, description = "`{decision, context: {reason, reasons}}`"),
              (status = 400, description = "Malformed request (text/plain message)"),
              (status = 401, description = "The caller did not authenticate (text/plain message)")))]
pub async fn evaluation_endpoint(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(e) = authenticate_pep(&app, &headers) {
        return with_request_id(&headers, e);
    }
    match parse::<Tuple<'_>>(&body) {
        Ok(t) => single(&app, &headers, &t).await,
        Err(e) => with_request_id(&headers, e),
    }
}

/// Answer one evaluation (also a batch request without `evaluations`).
async fn single(app: &App, headers: &HeaderMap, t: &Tuple<'_>) -> Response {
    match evaluation(t) {
        Ok(e) => {
            let d = crate::authz::evaluate(app, &e, None).await;
            json_response(headers, &DecisionOut::from_decision(d))
        }
        Err(m) => with_request_id(headers, AuthzenError::bad(m)),
    }
}

/// Fill an item's missing keys from the batch defaults (per key, whole value).
fn merged<'a>(defaults: &Tuple<'a>, item: Tuple<'a>) -> Tuple<'a> {
    Tuple {
        subject: item.subject.or_else(|| defaults.subject.clone()),
        action: item.action.or_else(|| defaults.action.clone()),
        resource: item.resource.or_else(|| defaults.resource.clone()),
        context: item.context.or_else(|| defaults.context.clone()),
    }
}

/// `POST /access/v1/evaluations`
#[utoipa::path(post, path = "/access/v1/evaluations", tag = "authzen",
    request_body(content = Object, description = "Defaults (subject, action, resource, context), `evaluations` (at most 1000) and `options.evaluations_semantic`"),
    responses((status = 200, description = "`{evaluations: [{decision, context}]}`"),
              (status = 400, description = "Malformed request (text/plain message)"),
              (status = 401, description = "The caller did not authenticate")))]
pub async fn evaluations_endpoint(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(e) = authenticate_pep(&app, &headers) {
        return with_request_id(&headers, e);
    }
    let batch: Batch<'_> = match parse(&body) {
        Ok(b) => b,
        Err(e) => return with_request_id(&headers, e),
    };
    let semantic = match batch
        .options
        .as_ref()
        .and_then(|o| o.evaluations_semantic.as_deref())
    {
        None | Some("execute_all") => Semantic::ExecuteAll,
        Some("deny_on_first_deny") => Semantic::DenyOnFirstDeny,
        Some("permit_on_first_permit") => Semantic::PermitOnFirstPermit,
        Some(other) => {
            return with_request_id(
                &headers,
                AuthzenError::bad(format!(
                    "`options.evaluations_semantic` `{other}` is not one of execute_all, deny_on_first_deny, permit_on_first_permit"
                )),
            );
        }
    };
    let items = match batch.evaluations {
        // no array: behaves like a single evaluation
        None => return single(&app, &headers, &batch.defaults).await,
        Some(items) => items,
    };
    if items.len() > MAX_EVALUATIONS {
        return with_request_id(
            &headers,
            AuthzenError::bad(format!(
                "{} evaluations in one request; send at most {MAX_EVALUATIONS}",
                items.len()
            )),
        );
    }
    // execute_all may run in parallel (the spec leaves it to the PDP): a
    // large batch is split over two tasks, each parsing its own copy of the
    // (borrowed) body, so both cores share one caller's batch
    if semantic == Semantic::ExecuteAll && items.len() >= PARALLEL_FROM {
        let n = items.len();
        drop(items);
        drop(batch.defaults);
        let half = n / 2;
        let second = {
            let (app, body) = (app.clone(), body.clone());
            tokio::spawn(async move { evaluate_range(&app, &body, half..n).await })
        };
        let mut out = evaluate_range(&app, &body, 0..half).await;
        match second.await {
            Ok(rest) => out.extend(rest),
            Err(e) => tracing::error!(error = %e, "a batch half failed"),
        }
        // never a short answer: every item is decided, or the call fails
        if out.len() != n {
            return with_request_id(
                &headers,
                AuthzenError {
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    message: "the batch could not be evaluated; retry".into(),
                },
            );
        }
        return json_response(&headers, &BatchOut { evaluations: out });
    }
    let mut out = Vec::with_capacity(items.len());
    let mut memo = crate::authz::KeyMemo::default();
    for item in items {
        let t = merged(&batch.defaults, item);
        let (allow, value) = evaluate_item(&app, &t, &mut memo).await;
        out.push(value);
        let stop = match semantic {
            Semantic::ExecuteAll => false,
            Semantic::DenyOnFirstDeny => !allow,
            Semantic::PermitOnFirstPermit => allow,
        };
        if stop {
            break;
        }
    }
    json_response(&headers, &BatchOut { evaluations: out })
}

/// Batches at least this large are evaluated on two tasks.
const PARALLEL_FROM: usize = 16;

async fn evaluate_item(
    app: &App,
    t: &Tuple<'_>,
    memo: &mut crate::authz::KeyMemo,
) -> (bool, DecisionOut) {
    match evaluation(t) {
        Ok(e) => {
            let d = crate::authz::evaluate(app, &e, Some(memo)).await;
            (d.allow, DecisionOut::from_decision(d))
        }
        Err(m) => (false, DecisionOut::malformed(m)),
    }
}

/// Evaluate items `range` of an (already validated) batch body.
async fn evaluate_range(app: &App, body: &[u8], range: std::ops::Range<usize>) -> Vec<DecisionOut> {
    let Ok(batch) = serde_json::from_slice::<Batch<'_>>(body) else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(range.len());
    let mut memo = crate::authz::KeyMemo::default();
    let items = batch.evaluations.unwrap_or_default();
    for item in items.into_iter().skip(range.start).take(range.len()) {
        let t = merged(&batch.defaults, item);
        out.push(evaluate_item(app, &t, &mut memo).await.1);
    }
    out
}

/// `GET /.well-known/authzen-configuration`
#[utoipa::path(get, path = "/.well-known/authzen-configuration", tag = "authzen",
    responses((status = 200, description = "AuthZEN PDP metadata")))]
pub async fn configuration(State(app): State<AppState>) -> impl IntoResponse {
    axum::Json(json!({
        "issuer": app.issuer,
        "access_evaluation_endpoint": format!("{}/access/v1/evaluation", app.issuer),
        "access_evaluations_endpoint": format!("{}/access/v1/evaluations", app.issuer),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_defaults_example_fills_each_item() {
        // AuthZEN 1.0 §7.1.1: defaults for subject/context/action, the third item overrides the action
        let body = br#"{
          "subject": {"type": "workload", "id": "alice@acmecorp.com"},
          "context": {"time": "2024-05-31T15:22-07:00"},
          "action": {"name": "can_read"},
          "evaluations": [
            {"resource": {"type": "document", "id": "boxcarring.md"}},
            {"resource": {"type": "document", "id": "subject-search.md"}},
            {"action": {"name": "can_edit"}, "resource": {"type": "document", "id": "resource-search.md"}}
          ]
        }"#;
        let b: Batch<'_> = parse(body).unwrap();
        let items: Vec<Tuple<'_>> = b
            .evaluations
            .clone()
            .unwrap()
            .into_iter()
            .map(|i| merged(&b.defaults, i))
            .collect();
        let evs: Vec<Evaluation<'_>> = items.iter().map(|t| evaluation(t).unwrap()).collect();
        assert_eq!(evs[0].action, "can_read");
        assert_eq!(evs[2].action, "can_edit");
        assert_eq!(evs[1].resource.id, "subject-search.md");
        assert!(evs.iter().all(|e| e.subject == "alice@acmecorp.com"));
    }

    #[test]
    fn malformed_tuples_say_what_is_missing() {
        let t: Tuple<'_> =
            parse(br#"{"subject": {"type": "workload", "id": "w"}, "action": {"name": "read"}}"#)
                .unwrap();
        assert!(
            evaluation(&t)
                .unwrap_err()
                .contains("`resource` is required")
        );
        let t: Tuple<'_> = parse(br#"{"subject": {"type": "user", "id": "w"}, "action": {"name": "read"}, "resource": {"type": "r", "id": "1"}}"#).unwrap();
        assert!(evaluation(&t).unwrap_err().contains("send \"workload\""));
        assert!(parse::<Tuple<'_>>(b"{not json").is_err());
    }
}
