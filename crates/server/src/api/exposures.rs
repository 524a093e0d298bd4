//! Exposure detection on the server: feeds that carry text (`POST
//! /v1/exposures`), GitHub's secret scanning partner alerts (`POST
//! /v1/partners/github`), the external-token inventory, and the exposures
//! and findings they produce.
//!
//! A Leash token found anywhere is recognised with certainty (an opaque
//! token by checksum and registry hash, a JWT by `kid` and signature) and
//! revoked with its descendants before the response is sent. A third-party
//! secret is matched by SHA-256 fingerprint against the external inventory:
//! its owner is told and its revocation connector called.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use leash_core::{
    Exposure, ExposureAction, ExposureSource, ExternalStatus, ExternalToken, Finding,
    FindingStatus, Millis,
};
use leash_scan::{FindingKind, ScanContext, Scanner};
use leash_store::{ExposureRecord, NewExposure, NewExternalToken, Registry, StoreError, now_ms};
use leash_token::Presented;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::dto::ts;
use super::feeds::{self, Feed, Message, ReportedFinding};
use super::{ApiJson, ApiQuery, MAX_LIST};
use crate::error::{ApiError, ApiResult, Problem};
use crate::metrics::ExposureLabels;
use crate::notify::{Notification, Notifier, RevocationConnector};
use crate::{App, AppState};

/// Most secrets acted on from one report; the rest are counted, not dropped silently.
const MAX_SECRETS_PER_REPORT: usize = 100;
/// Most matches in one GitHub partner alert.
const MAX_PARTNER_MATCHES: usize = 1000;

/// A public key GitHub signs partner alerts with.
#[derive(Debug, Clone)]
pub struct GithubKey {
    pub identifier: String,
    /// SubjectPublicKeyInfo DER of a P-256 key.
    pub spki: Vec<u8>,
}

/// Exposure settings and the parts that act on them.
pub struct ExposureConfig {
    pub scanner: Scanner,
    pub slack_secret: Option<Vec<u8>>,
    pub jira_secret: Option<Vec<u8>>,
    pub github_keys: Vec<GithubKey>,
    pub notifier: Notifier,
    pub connectors: HashMap<String, Arc<dyn RevocationConnector>>,
}

/// Parse GitHub's key list (`GET /meta/public_keys/secret_scanning`:
/// `{"public_keys": [{"key_identifier", "key": PEM, "is_current"}]}`).
pub fn parse_github_keys(json: &str) -> Result<Vec<GithubKey>, String> {
    #[derive(Deserialize)]
    struct Doc {
        public_keys: Vec<Entry>,
    }
    #[derive(Deserialize)]
    struct Entry {
        key_identifier: String,
        key: String,
    }
    let doc: Doc = serde_json::from_str(json).map_err(|e| {
        format!("not GitHub's public key list ({{\"public_keys\": [{{\"key_identifier\", \"key\"}}]}}): {e}")
    })?;
    doc.public_keys
        .into_iter()
        .map(|e| {
            let b64: String = e
                .key
                .lines()
                .filter(|l| !l.starts_with("-----"))
                .collect::<Vec<_>>()
                .join("");
            let spki = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|_| format!("key `{}` is not a PEM public key", e.key_identifier))?;
            // parse once now so a bad key fails at start-up, not per alert
            aws_lc_rs::signature::ParsedPublicKey::new(
                &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1,
                &spki,
            )
            .map_err(|_| format!("key `{}` is not a P-256 public key", e.key_identifier))?;
            Ok(GithubKey {
                identifier: e.key_identifier,
                spki,
            })
        })
        .collect()
}

/// An exposure as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ExposureView {
    pub id: i64,
    pub source: String,
    pub location: String,
    pub detector: String,
    /// Redacted: never the secret.
    pub excerpt: String,
    pub fingerprint: String,
    /// `revoked`, `already_inactive`, `matched_external` or `unmatched`.
    pub action: String,
    /// The Leash token it was.
    pub token: Option<String>,
    /// The tracked external token it matched.
    pub external: Option<String>,
    /// Accountable owner, when known.
    pub owner: Option<String>,
    /// Workloads and workflows that use the secret (for external tokens)
    /// or the token's workload (for Leash tokens).
    pub blast_radius: BlastRadius,
    pub revoked_count: u64,
    pub detected_at: String,
    pub revoked_at: Option<String>,
    /// Receipt of the text → revocation durable, in milliseconds.
    pub detection_to_revocation_ms: Option<i64>,
    /// The finding opened for review.
    pub finding: Option<i64>,
    /// The same secret was already reported from here: nothing new happened.
    #[serde(default)]
    pub repeat: bool,
    /// Audit event that recorded it.
    pub event: i64,
}

/// Who uses a leaked secret.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct BlastRadius {
    pub workloads: Vec<String>,
    pub workflows: Vec<String>,
}

fn names(reg: &Registry, workloads: &[i64], workflows: &[i64]) -> BlastRadius {
    BlastRadius {
        workloads: workloads
            .iter()
            .filter_map(|id| reg.workload(*id).map(|w| w.name.clone()))
            .collect(),
        workflows: workflows
            .iter()
            .filter_map(|id| reg.workflow(*id).map(|w| w.name.clone()))
            .collect(),
    }
}

async fn view(
    app: &App,
    e: &Exposure,
    external: Option<&ExternalToken>,
    finding: Option<i64>,
    repeat: bool,
) -> ExposureView {
    let token = match &e.token_id {
        Some(id) => app.store.get_token(id).await.ok(),
        None => None,
    };
    let fetched;
    let external = match (external, e.external_id) {
        (Some(x), _) => Some(x),
        (None, Some(id)) => {
            fetched = app.store.get_external_token(id).await.ok();
            fetched.as_ref()
        }
        (None, None) => None,
    };
    let reg = app.store.registry().read();
    let (owner_id, blast_radius) = match (&token, external) {
        (Some(t), _) => (
            Some(t.owner_id),
            names(
                &reg,
                &[t.workload_id],
                &t.workflow_id.into_iter().collect::<Vec<_>>(),
            ),
        ),
        (None, Some(x)) => (x.owner_id, names(&reg, &x.workloads, &x.workflows)),
        (None, None) => (None, BlastRadius::default()),
    };
    ExposureView {
        id: e.id,
        source: e.source.to_string(),
        location: e.location.clone(),
        detector: e.detector.clone(),
        excerpt: e.excerpt.clone(),
        fingerprint: e.fingerprint.clone(),
        action: e.action.to_string(),
        token: e.token_id.clone(),
        external: external.map(|x| x.name.clone()),
        owner: owner_id.and_then(|id| reg.owner(id).map(|o| o.name.clone())),
        blast_radius,
        revoked_count: e.revoked_count,
        detected_at: ts(e.detected_at),
        revoked_at: e.revoked_at.map(ts),
        detection_to_revocation_ms: e.revocation_latency_ms(),
        finding,
        repeat,
        event: e.event,
    }
}

/// The Leash token a secret is, if it is one of ours: `Ok(None)` when it
/// is not (a checksum-valid `lsh_` token another Leash minted, a JWT this
/// key ring did not sign).
async fn leash_token_id(app: &App, secret: &str) -> Result<Option<String>, ApiError> {
    match leash_token::recognise(&app.keys(), secret) {
        Ok(Presented::Opaque(hash)) => match app.store.find_token_by_secret_hash(hash).await {
            Ok(t) => Ok(Some(t.id)),
            Err(StoreError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        },
        Ok(Presented::Jwt(claims)) => match app.store.get_token(&claims.jti).await {
            Ok(t) => Ok(Some(t.id)),
            Err(StoreError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        },
        Err(_) => Ok(None),
    }
}

/// Record one exposure and start what follows it (metrics, owner
/// notification, connector call). The revocation is durable on return.
async fn record(app: &App, new: NewExposure, actor: &str) -> ApiResult<ExposureView> {
    let received = new.detected_at;
    let rec = app.store.record_exposure_and_revoke(new, actor).await?;
    let ExposureRecord {
        exposure,
        revoked,
        finding,
        external,
        repeat,
    } = rec;
    let v = view(
        app,
        &exposure,
        external.as_ref(),
        finding.as_ref().map(|f| f.id),
        repeat,
    )
    .await;
    if repeat {
        return Ok(v);
    }
    app.metrics.revoked(&revoked);
    app.metrics
        .exposures
        .get_or_create(&ExposureLabels {
            source: exposure.source.to_string(),
            action: exposure.action.to_string(),
        })
        .inc();
    if exposure.action == ExposureAction::Revoked {
        let secs = (now_ms() - received).max(0) as f64 / 1000.0;
        app.metrics.exposure_revocation_seconds.observe(secs);
    }
    notify_owner(app, &v, finding.as_ref());
    if let (ExposureAction::MatchedExternal, Some(x)) = (exposure.action, external) {
        call_connector(app, x, exposure);
    }
    Ok(v)
}

fn notify_owner(app: &App, v: &ExposureView, finding: Option<&Finding>) {
    let owner = v.owner.as_ref().and_then(|name| {
        app.store
            .registry()
            .read()
            .owner_by_name(name)
            .map(|o| serde_json::json!({"name": o.name, "email": o.email}))
    });
    app.exposures.notifier.send(Notification {
        event: "exposure",
        body: serde_json::json!({
            "event": "exposure",
            "owner": owner,
            "exposure": v,
            "finding": finding.map(|f| serde_json::json!({
                "id": f.id, "severity": f.severity, "summary": f.summary,
            })),
        }),
    });
}

/// Call the external token's revocation connector in the background and
/// record what it did.
fn call_connector(app: &App, token: ExternalToken, exposure: Exposure) {
    let Some(name) = token.connector.clone() else {
        return;
    };
    let store = app.store.clone();
    let connector = app.exposures.connectors.get(&name).cloned();
    tokio::spawn(async move {
        let (status, detail) = match connector {
            None => (
                ExternalStatus::RevocationFailed,
                format!(
                    "connector `{name}` is not configured on this server (leash serve --connector {name}=URL)"
                ),
            ),
            Some(c) => match c.revoke(&token, &exposure).await {
                Ok(note) => (
                    ExternalStatus::Revoked,
                    format!("connector `{name}`: {note}"),
                ),
                Err(e) => (
                    ExternalStatus::RevocationFailed,
                    format!("connector `{name}`: {e}"),
                ),
            },
        };
        if status == ExternalStatus::RevocationFailed {
            tracing::error!(external = %token.name, %detail, "external token could not be revoked");
        }
        if let Err(e) = store
            .set_external_status(token.id, status, detail, &format!("connector:{name}"))
            .await
        {
            tracing::error!(error = %e, "could not record a connector result");
        }
    });
}

/// Scan one message and act on every secret in it.
async fn scan_message(
    app: &App,
    m: &Message,
    received: Millis,
    actor: &str,
    out: &mut ReportResult,
) -> ApiResult<()> {
    let found = {
        // a JWT is ours when its kid is in our key ring and its signature verifies
        let ring = app.keys();
        let is_ours = |s: &str| {
            leash_token::recognise(&ring, s).is_ok_and(|p| matches!(p, Presented::Jwt(_)))
        };
        let ctx = ScanContext::new().with_leash_jwt_check(&is_ours);
        app.exposures.scanner.scan(m.text.as_bytes(), &ctx)
    };
    out.scanned_bytes += m.text.len();
    for f in found {
        if out.exposures.len() >= MAX_SECRETS_PER_REPORT {
            out.not_acted_on += 1;
            continue;
        }
        let token_id = match f.kind {
            FindingKind::LeashOpaque | FindingKind::LeashJwt => {
                leash_token_id(app, f.secret.expose()).await?
            }
            FindingKind::ThirdParty => None,
        };
        let v = record(
            app,
            NewExposure {
                source: m.source,
                location: m.location.clone(),
                detector: f.rule_id.clone(),
                excerpt: f.redacted.clone(),
                fingerprint: f.fingerprint.clone(),
                token_id,
                detected_at: received,
            },
            actor,
        )
        .await?;
        out.exposures.push(v);
    }
    Ok(())
}

/// What a report did.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct ReportResult {
    pub exposures: Vec<ExposureView>,
    pub scanned_bytes: usize,
    /// Secrets beyond the per-report limit (100), counted but not acted on:
    /// send them again in smaller reports.
    pub not_acted_on: usize,
    /// Why nothing was scanned, for well-formed events without text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ignored: Option<String>,
}

#[utoipa::path(post, path = "/v1/exposures", tag = "exposures",
    request_body(content = feeds::GenericReport, description = "A generic report, a Slack Events API body (signed with X-Slack-Signature) or a Jira webhook body (signed with X-Hub-Signature)"),
    responses((status = 200, body = ReportResult), (status = 400, body = Problem), (status = 401, body = Problem)))]
pub async fn report(State(app): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let received = now_ms();
    match report_inner(&app, &headers, &body, received).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn report_inner(
    app: &App,
    headers: &HeaderMap,
    body: &[u8],
    received: Millis,
) -> ApiResult<Response> {
    let caller = feeds::authenticate(app, headers, body, received)?;
    let actor = caller.actor();
    let mut out = ReportResult::default();
    match feeds::parse(caller, body)? {
        Feed::SlackChallenge(c) => {
            return Ok(Json(serde_json::json!({ "challenge": c })).into_response());
        }
        Feed::Ignored(why) => out.ignored = Some(why),
        Feed::Scan { messages, reported } => {
            for m in &messages {
                scan_message(app, m, received, actor, &mut out).await?;
            }
            for (source, location, f) in reported {
                out.exposures
                    .push(record_reported(app, source, location, f, received, actor).await?);
            }
        }
    }
    Ok(Json(out).into_response())
}

async fn record_reported(
    app: &App,
    source: ExposureSource,
    location: String,
    f: ReportedFinding,
    received: Millis,
    actor: &str,
) -> ApiResult<ExposureView> {
    leash_store::validate_fingerprint(&f.fingerprint)
        .map_err(|e| ApiError::bad_request(format!("finding `{}`: {e}", f.detector)))?;
    record(
        app,
        NewExposure {
            source,
            location,
            detector: f.detector,
            excerpt: if feeds::is_redacted(&f.excerpt) {
                f.excerpt
            } else {
                leash_scan::redact(&f.excerpt)
            },
            fingerprint: f.fingerprint,
            token_id: None,
            detected_at: received,
        },
        actor,
    )
    .await
}

/// One match in a GitHub secret scanning partner alert.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PartnerMatch {
    /// The leaked token.
    pub token: String,
    /// The token type GitHub matched.
    #[serde(rename = "type")]
    pub kind: String,
    /// Where it was found.
    #[serde(default)]
    pub url: Option<String>,
    /// `content`, `commit`, `pull_request_description`, `issue_comment`, …
    #[serde(default)]
    pub source: Option<String>,
}

/// Our answer for one match: GitHub's true/false-positive label, keyed by
/// the token's SHA-256 (never echoing the token).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PartnerLabel {
    pub token_hash: String,
    pub token_type: String,
    /// `true_positive` (a token of this Leash; it is revoked) or `false_positive`.
    pub label: String,
}

fn verify_github(app: &App, headers: &HeaderMap, body: &[u8]) -> ApiResult<()> {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    if app.exposures.github_keys.is_empty() {
        return Err(ApiError::unauthorized_because(
            "no GitHub public keys are configured (leash serve --github-keys FILE); nothing was acted on",
        ));
    }
    let (Some(id), Some(sig)) = (
        h("github-public-key-identifier"),
        h("github-public-key-signature"),
    ) else {
        return Err(ApiError::unauthorized_because(
            "Github-Public-Key-Identifier and Github-Public-Key-Signature are required",
        ));
    };
    let key = app
        .exposures
        .github_keys
        .iter()
        .find(|k| k.identifier == id)
        .ok_or_else(|| {
            ApiError::unauthorized_because(
                "unknown Github-Public-Key-Identifier; refresh the configured GitHub keys",
            )
        })?;
    let sig = base64::engine::general_purpose::STANDARD
        .decode(sig.trim())
        .map_err(|_| ApiError::unauthorized_because("Github-Public-Key-Signature is not base64"))?;
    aws_lc_rs::signature::UnparsedPublicKey::new(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1,
        &key.spki,
    )
    .verify(body, &sig)
    .map_err(|_| ApiError::unauthorized_because("the GitHub signature does not verify"))
}

#[utoipa::path(post, path = "/v1/partners/github", tag = "exposures",
    description = "GitHub secret scanning partner endpoint: a JSON array of {token, type, url, source}, signed with ECDSA P-256 SHA-256 (Github-Public-Key-Identifier / Github-Public-Key-Signature).",
    request_body = [PartnerMatch],
    responses((status = 200, body = [PartnerLabel]), (status = 400, body = Problem), (status = 401, body = Problem)), security(()))]
pub async fn github_partner(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Vec<PartnerLabel>>> {
    let received = now_ms();
    verify_github(&app, &headers, &body)?;
    let matches: Vec<PartnerMatch> = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "expected a JSON array of {{\"token\", \"type\", \"url\", \"source\"}}: {e}"
        ))
    })?;
    if matches.len() > MAX_PARTNER_MATCHES {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_PARTNER_MATCHES} matches per alert"
        )));
    }
    let mut labels = Vec::with_capacity(matches.len());
    for m in matches {
        let fingerprint = hex::encode(leash_token::sha256(m.token.as_bytes()));
        let token_id = leash_token_id(&app, &m.token).await?;
        let label = match token_id {
            Some(id) => {
                let location = m.url.clone().unwrap_or_else(|| {
                    format!("github:{}", m.source.as_deref().unwrap_or("unknown"))
                });
                record(
                    &app,
                    NewExposure {
                        source: ExposureSource::Partner,
                        location: location.chars().take(1000).collect(),
                        detector: format!("github:{}", m.kind.chars().take(80).collect::<String>()),
                        excerpt: leash_scan::redact(&m.token),
                        fingerprint: fingerprint.clone(),
                        token_id: Some(id),
                        detected_at: received,
                    },
                    "partner:github",
                )
                .await?;
                "true_positive"
            }
            None => "false_positive",
        };
        labels.push(PartnerLabel {
            token_hash: fingerprint,
            token_type: m.kind,
            label: label.into(),
        });
    }
    Ok(Json(labels))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// Ids below this one (cursor: the last id of the previous page).
    pub before: Option<i64>,
    /// Page size (default 100, max 1000).
    pub limit: Option<u32>,
    /// Findings only: `open`, `acknowledged` or `resolved`.
    pub status: Option<String>,
}

fn limit(q: Option<u32>) -> u32 {
    q.unwrap_or(100).clamp(1, MAX_LIST)
}

#[utoipa::path(get, path = "/v1/exposures", tag = "exposures", params(PageQuery),
    responses((status = 200, body = [ExposureView])))]
pub async fn list(
    State(app): State<AppState>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<Vec<ExposureView>>> {
    let list = app.store.list_exposures(q.before, limit(q.limit)).await?;
    let mut out = Vec::with_capacity(list.len());
    for e in &list {
        out.push(view(&app, e, None, None, false).await);
    }
    Ok(Json(out))
}

#[utoipa::path(get, path = "/v1/exposures/{id}", tag = "exposures",
    responses((status = 200, body = ExposureView), (status = 404, body = Problem)))]
pub async fn get(
    State(app): State<AppState>,
    Path(id): Path<i64>,
) -> ApiResult<Json<ExposureView>> {
    let e = app.store.get_exposure(id).await?;
    Ok(Json(view(&app, &e, None, None, false).await))
}

/// A finding as the API shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FindingView {
    pub id: i64,
    pub kind: String,
    /// `low`, `medium`, `high` or `critical`.
    pub severity: String,
    pub subject: String,
    pub owner: Option<String>,
    pub summary: String,
    pub evidence: serde_json::Value,
    /// `open`, `acknowledged` or `resolved`.
    pub status: String,
    pub created_at: String,
}

fn finding_view(app: &App, f: &Finding) -> FindingView {
    FindingView {
        id: f.id,
        kind: f.kind.clone(),
        severity: f.severity.to_string(),
        subject: f.subject.clone(),
        owner: f.owner_id.and_then(|id| {
            app.store
                .registry()
                .read()
                .owner(id)
                .map(|o| o.name.clone())
        }),
        summary: f.summary.clone(),
        evidence: f.evidence.clone(),
        status: f.status.to_string(),
        created_at: ts(f.created_at),
    }
}

fn parse_choice<T: std::str::FromStr<Err = leash_core::InvalidInput>>(s: &str) -> ApiResult<T> {
    s.parse()
        .map_err(|e: leash_core::InvalidInput| ApiError::bad_request(e.to_string()))
}

#[utoipa::path(get, path = "/v1/findings", tag = "exposures", params(PageQuery),
    responses((status = 200, body = [FindingView]), (status = 400, body = Problem)))]
pub async fn list_findings(
    State(app): State<AppState>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<Vec<FindingView>>> {
    let status: Option<FindingStatus> = q.status.as_deref().map(parse_choice).transpose()?;
    let list = app
        .store
        .list_findings(status, q.before, limit(q.limit))
        .await?;
    Ok(Json(list.iter().map(|f| finding_view(&app, f)).collect()))
}

#[utoipa::path(get, path = "/v1/findings/{id}", tag = "exposures",
    responses((status = 200, body = FindingView), (status = 404, body = Problem)))]
pub async fn get_finding(
    State(app): State<AppState>,
    Path(id): Path<i64>,
) -> ApiResult<Json<FindingView>> {
    Ok(Json(finding_view(&app, &app.store.get_finding(id).await?)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FindingStatusBody {
    /// `open`, `acknowledged` or `resolved`.
    pub status: String,
    /// Why (kept in the audit log).
    #[serde(default)]
    pub note: String,
}

#[utoipa::path(post, path = "/v1/findings/{id}/status", tag = "exposures", request_body = FindingStatusBody,
    responses((status = 200, body = FindingView), (status = 400, body = Problem), (status = 404, body = Problem)))]
pub async fn set_finding_status(
    State(app): State<AppState>,
    Path(id): Path<i64>,
    ApiJson(b): ApiJson<FindingStatusBody>,
) -> ApiResult<Json<FindingView>> {
    let status: FindingStatus = parse_choice(&b.status)?;
    let f = app
        .store
        .set_finding_status(id, status, b.note, "operator")
        .await?;
    Ok(Json(finding_view(&app, &f)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateExternal {
    pub name: String,
    /// Provider and type, e.g. `github-pat` (a scanner rule id matches best).
    pub kind: String,
    /// Owner name; omit for a credential nobody owns yet (it shows as such).
    #[serde(default)]
    pub owner: Option<String>,
    /// Hex SHA-256 of the secret. Give this or `secret`.
    #[serde(default)]
    pub fingerprint: Option<String>,
    /// The secret itself: hashed on arrival, never stored or logged.
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default)]
    pub workloads: Vec<String>,
    #[serde(default)]
    pub workflows: Vec<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Where it is kept (vault path, CI secret name…).
    #[serde(default)]
    pub stored_in: Option<String>,
    /// Revocation connector to call when it leaks (configured with `leash serve --connector NAME=URL`).
    #[serde(default)]
    pub connector: Option<String>,
}

/// A tracked third-party credential.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ExternalView {
    pub id: i64,
    pub name: String,
    pub kind: String,
    pub owner: Option<String>,
    pub fingerprint: String,
    pub blast_radius: BlastRadius,
    pub scopes: Vec<String>,
    pub stored_in: Option<String>,
    pub connector: Option<String>,
    /// `active`, `revoked` or `revocation_failed`.
    pub status: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
    /// Last seen used (from its export or from ingested usage).
    pub last_used_at: Option<String>,
    /// What its inventory export said (None when added by hand).
    #[schema(value_type = Option<Object>)]
    pub imported: Option<leash_core::ImportedFacts>,
}

pub(crate) fn external_view(app: &App, x: &ExternalToken) -> ExternalView {
    let reg = app.store.registry().read();
    ExternalView {
        id: x.id,
        name: x.name.clone(),
        kind: x.kind.clone(),
        owner: x
            .owner_id
            .and_then(|id| reg.owner(id).map(|o| o.name.clone())),
        fingerprint: x.fingerprint.clone(),
        blast_radius: names(&reg, &x.workloads, &x.workflows),
        scopes: x.scopes.clone(),
        stored_in: x.stored_in.clone(),
        connector: x.connector.clone(),
        status: x.status.to_string(),
        created_at: ts(x.created_at),
        revoked_at: x.revoked_at.map(ts),
        last_used_at: x.last_used_at.map(ts),
        imported: x.imported.clone(),
    }
}

#[utoipa::path(post, path = "/v1/external-tokens", tag = "exposures", request_body = CreateExternal,
    responses((status = 201, body = ExternalView), (status = 400, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn create_external(
    State(app): State<AppState>,
    ApiJson(b): ApiJson<CreateExternal>,
) -> ApiResult<(StatusCode, Json<ExternalView>)> {
    let fingerprint = match (b.fingerprint, b.secret) {
        (Some(f), None) => f.to_ascii_lowercase(),
        (None, Some(s)) => hex::encode(leash_token::sha256(s.as_bytes())),
        _ => {
            return Err(ApiError::bad_request(
                "give exactly one of `fingerprint` (hex SHA-256 of the secret) or `secret`",
            ));
        }
    };
    if let Some(c) = &b.connector
        && !app.exposures.connectors.contains_key(c)
    {
        let mut known: Vec<&str> = app
            .exposures
            .connectors
            .keys()
            .map(String::as_str)
            .collect();
        known.sort_unstable();
        return Err(ApiError::bad_request(format!(
            "connector `{c}` is not configured (configured: {}); start the server with --connector {c}=URL",
            if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            }
        )));
    }
    let x = app
        .store
        .create_external_token(
            NewExternalToken {
                name: b.name,
                kind: b.kind,
                owner: b.owner,
                fingerprint,
                workloads: b.workloads,
                workflows: b.workflows,
                scopes: b.scopes,
                stored_in: b.stored_in,
                connector: b.connector,
            },
            "operator",
        )
        .await?;
    Ok((StatusCode::CREATED, Json(external_view(&app, &x))))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AfterQuery {
    /// Ids above this one (cursor: the last id of the previous page).
    pub after: Option<i64>,
    /// Page size (default 100, max 1000).
    pub limit: Option<u32>,
}

#[utoipa::path(get, path = "/v1/external-tokens", tag = "exposures", params(AfterQuery),
    responses((status = 200, body = [ExternalView])))]
pub async fn list_external(
    State(app): State<AppState>,
    ApiQuery(q): ApiQuery<AfterQuery>,
) -> ApiResult<Json<Vec<ExternalView>>> {
    let list = app
        .store
        .list_external_tokens(q.after.unwrap_or(0), limit(q.limit))
        .await?;
    Ok(Json(list.iter().map(|x| external_view(&app, x)).collect()))
}

#[utoipa::path(get, path = "/v1/external-tokens/{id}", tag = "exposures",
    responses((status = 200, body = ExternalView), (status = 404, body = Problem)))]
pub async fn get_external(
    State(app): State<AppState>,
    Path(id): Path<i64>,
) -> ApiResult<Json<ExternalView>> {
    Ok(Json(external_view(
        &app,
        &app.store.get_external_token(id).await?,
    )))
}
