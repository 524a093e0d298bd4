//! Write scopes rare and justified: approvals, owner credentials and
//! delegates, the write ratio, and break-glass grants.
//!
//! A write-capable mint answers 202 with a pending approval. The workload's
//! owner (or a delegate they named) approves or denies it with *their own*
//! credential (`leash owner credential NAME`), never the operator's, so the
//! person asking is not the person deciding. The requester then claims the
//! approved request once (`POST /v1/approvals/{id}/token`) and receives the
//! token; nothing secret is stored while it waits.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use leash_core::{Approval, ApprovalKind, ApprovalStatus};
use leash_store::{NewApproval, StoreError, TokenFilter, TokenUsage, now_ms};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::dto::{ApprovalView, MintBody, Minted, Ttl, ts};
use super::registry::OPERATOR;
use super::tokens::{MintExtra, mint_counted};
use super::{ApiJson, ApiQuery, MAX_LIST};
use crate::error::{ApiError, ApiResult, Problem};
use crate::notify::Notification;
use crate::{App, AppState};

/// Prefix of owner credentials (they approve requests).
pub const OWNER_CREDENTIAL_PREFIX: &str = "lsho_";

async fn view(app: &App, a: &Approval) -> ApiResult<ApprovalView> {
    let delegates = app.store.delegates_of(a.owner_id).await?;
    let (workload, owner) = {
        let reg = app.store.registry().read();
        (
            reg.workload(a.workload_id)
                .map(|w| w.name.clone())
                .unwrap_or_default(),
            reg.owner(a.owner_id)
                .map(|o| o.name.clone())
                .unwrap_or_default(),
        )
    };
    let next = match a.status {
        ApprovalStatus::Pending => format!(
            "owner `{owner}` (or a delegate) runs `leash approvals approve {}` or `leash approvals deny {}`",
            a.id, a.id
        ),
        ApprovalStatus::Approved => format!(
            "the requester runs `leash approvals claim {}` to receive the token (once)",
            a.id
        ),
        ApprovalStatus::Denied => "nothing: the request was denied".into(),
        ApprovalStatus::Issued => format!(
            "nothing: token {} was issued",
            a.token_id.as_deref().unwrap_or("?")
        ),
    };
    Ok(ApprovalView {
        id: a.id,
        kind: a.kind.to_string(),
        status: a.status.to_string(),
        workload,
        owner,
        delegates,
        justification: a.justification.clone(),
        request: a.request.clone(),
        requested_by: a.requested_by.clone(),
        requested_at: ts(a.requested_at),
        decided_by: a.decided_by.clone(),
        decided_at: a.decided_at.map(ts),
        decision_note: a.decision_note.clone(),
        token_id: a.token_id.clone(),
        next,
    })
}

/// Queue a request for approval and tell the owner.
pub async fn request(
    app: &App,
    kind: ApprovalKind,
    body: &MintBody,
    justification: String,
    actor: &str,
) -> ApiResult<ApprovalView> {
    if justification.trim().is_empty() {
        return Err(ApiError::refused(
            if kind == ApprovalKind::BreakGlass {
                "break_glass"
            } else {
                "write_justification"
            },
            "a write scope needs a justification: pass --justification with the business reason for it",
        ));
    }
    let request = serde_json::to_value(body)
        .map_err(|e| ApiError::bad_request(format!("the request cannot be kept: {e}")))?;
    let a = app
        .store
        .create_approval(
            NewApproval {
                kind,
                workload: body.workload.clone(),
                request,
                justification,
            },
            actor,
        )
        .await?;
    let v = view(app, &a).await?;
    app.exposures.notifier.send(Notification {
        event: "approval.requested",
        body: serde_json::json!({"event": "approval.requested", "approval": v}),
    });
    Ok(v)
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ApprovalQuery {
    /// `pending`, `approved`, `denied` or `issued`.
    pub status: Option<String>,
    /// Only ids below this one (cursor).
    pub before: Option<i64>,
    /// Page size (default 100, max 1000).
    pub limit: Option<u32>,
}

#[utoipa::path(get, path = "/v1/approvals", tag = "approvals", params(ApprovalQuery),
    responses((status = 200, body = [ApprovalView]), (status = 400, body = Problem)))]
pub async fn list(
    State(app): State<AppState>,
    ApiQuery(q): ApiQuery<ApprovalQuery>,
) -> ApiResult<Json<Vec<ApprovalView>>> {
    let status = q
        .status
        .as_deref()
        .map(str::parse::<ApprovalStatus>)
        .transpose()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_LIST);
    let rows = app.store.list_approvals(status, q.before, limit).await?;
    let mut out = Vec::with_capacity(rows.len());
    for a in &rows {
        out.push(view(&app, a).await?);
    }
    Ok(Json(out))
}

#[utoipa::path(get, path = "/v1/approvals/{id}", tag = "approvals",
    responses((status = 200, body = ApprovalView), (status = 404, body = Problem)))]
pub async fn get(
    State(app): State<AppState>,
    Path(id): Path<i64>,
) -> ApiResult<Json<ApprovalView>> {
    let a = app.store.get_approval(id).await?;
    Ok(Json(view(&app, &a).await?))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecideBody {
    /// Why (kept with the decision).
    #[serde(default)]
    pub note: Option<String>,
}

/// An optional JSON body `{"note": …}`.
fn decide_body(body: &[u8]) -> ApiResult<DecideBody> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(DecideBody::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "the JSON body is not valid: {e}; send {{\"note\": \"why\"}}"
        ))
    })
}

/// The owner whose credential is presented as the Bearer token.
async fn owner_from_credential(app: &App, headers: &HeaderMap) -> ApiResult<String> {
    let refused = || {
        ApiError::unauthorized_because(
            "approvals are decided with an owner's own credential (`leash owner credential NAME`, then LEASH_OWNER_TOKEN), not the operator's",
        )
    };
    let presented = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(s, _)| s.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
        .filter(|t| t.starts_with(OWNER_CREDENTIAL_PREFIX) && t.len() <= 128)
        .ok_or_else(refused)?;
    match app
        .store
        .owner_by_credential(leash_token::sha256(presented.as_bytes()))
        .await
    {
        Ok(o) if o.status == leash_core::OwnerStatus::Active => Ok(o.name),
        Ok(_) | Err(StoreError::NotFound { .. }) => Err(refused()),
        Err(e) => Err(e.into()),
    }
}

async fn decide(
    app: &App,
    headers: &HeaderMap,
    id: i64,
    approve: bool,
    body: DecideBody,
) -> ApiResult<Json<ApprovalView>> {
    let approver = owner_from_credential(app, headers).await?;
    let a = app
        .store
        .decide_approval(
            id,
            approve,
            &approver,
            body.note.unwrap_or_default(),
            &format!("owner:{approver}"),
        )
        .await?;
    let v = view(app, &a).await?;
    app.exposures.notifier.send(Notification {
        event: "approval.decided",
        body: serde_json::json!({"event": "approval.decided", "approval": v}),
    });
    Ok(Json(v))
}

#[utoipa::path(post, path = "/v1/approvals/{id}/approve", tag = "approvals", request_body = DecideBody,
    responses((status = 200, body = ApprovalView), (status = 401, body = Problem), (status = 409, body = Problem, description = "Not pending, or the caller may not decide it")))]
pub async fn approve(
    State(app): State<AppState>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<Json<ApprovalView>> {
    decide(&app, &headers, id, true, decide_body(&body)?).await
}

#[utoipa::path(post, path = "/v1/approvals/{id}/deny", tag = "approvals", request_body = DecideBody,
    responses((status = 200, body = ApprovalView), (status = 401, body = Problem), (status = 409, body = Problem)))]
pub async fn deny(
    State(app): State<AppState>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<Json<ApprovalView>> {
    decide(&app, &headers, id, false, decide_body(&body)?).await
}

#[utoipa::path(post, path = "/v1/approvals/{id}/token", tag = "approvals",
    responses((status = 201, body = Minted), (status = 409, body = Problem, description = "Not approved, or already issued")))]
pub async fn claim(State(app): State<AppState>, Path(id): Path<i64>) -> ApiResult<Response> {
    let a = app.store.get_approval(id).await?;
    if a.status != ApprovalStatus::Approved {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!(
                "approval {id} is {}; only an approved request is issued, once",
                a.status
            ),
        ));
    }
    let body: MintBody = serde_json::from_value(a.request.clone())
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "storage", e.to_string()))?;
    let break_glass = a.kind == ApprovalKind::BreakGlass;
    let m = mint_counted(
        &app,
        body,
        OPERATOR,
        MintExtra {
            approval: Some(id),
            break_glass,
            ..MintExtra::default()
        },
    )
    .await?;
    if break_glass {
        announce_break_glass(&app, &m, &a.justification, Some(&a));
    }
    Ok((StatusCode::CREATED, Json(m)).into_response())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OwnerCredential {
    pub owner: String,
    /// Shown once; Leash keeps only its SHA-256.
    pub credential: String,
}

#[utoipa::path(post, path = "/v1/owners/{name}/credentials", tag = "approvals",
    responses((status = 201, body = OwnerCredential), (status = 404, body = Problem)))]
pub async fn create_owner_credential(
    State(app): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<(StatusCode, Json<OwnerCredential>)> {
    let secret = format!(
        "{OWNER_CREDENTIAL_PREFIX}{}",
        super::clients::random_base62(43)?
    );
    let o = app
        .store
        .create_owner_credential(&name, leash_token::sha256(secret.as_bytes()), OPERATOR)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(OwnerCredential {
            owner: o.name,
            credential: secret,
        }),
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DelegateBody {
    /// The owner (a person) who may approve for this one.
    pub delegate: String,
}

#[utoipa::path(post, path = "/v1/owners/{name}/delegates", tag = "approvals", request_body = DelegateBody,
    responses((status = 200, description = "`{owner, delegate}`"), (status = 404, body = Problem)))]
pub async fn add_delegate(
    State(app): State<AppState>,
    Path(name): Path<String>,
    ApiJson(b): ApiJson<DelegateBody>,
) -> ApiResult<Json<serde_json::Value>> {
    app.store.add_delegate(&name, &b.delegate, OPERATOR).await?;
    Ok(Json(
        serde_json::json!({"owner": name, "delegate": b.delegate}),
    ))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WriteRatio {
    /// Live tokens.
    pub active: u64,
    /// Live tokens holding a write or admin scope.
    pub active_write: u64,
    /// `active_write / active` (0 when nothing is live).
    pub ratio: f64,
    /// Pending approval requests.
    pub pending_approvals: usize,
}

#[utoipa::path(get, path = "/v1/write-ratio", tag = "approvals", responses((status = 200, body = WriteRatio)))]
pub async fn write_ratio(State(app): State<AppState>) -> ApiResult<Json<WriteRatio>> {
    let c = app.store.token_counts(now_ms()).await?;
    let pending = app
        .store
        .list_approvals(Some(ApprovalStatus::Pending), None, MAX_LIST)
        .await?
        .len();
    Ok(Json(WriteRatio {
        active: c.active,
        active_write: c.active_write,
        ratio: if c.active == 0 {
            0.0
        } else {
            c.active_write as f64 / c.active as f64
        },
        pending_approvals: pending,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BreakGlassBody {
    pub workload: String,
    pub scopes: Vec<String>,
    /// What the emergency is (required).
    pub reason: String,
    /// At most 1 h.
    #[schema(value_type = String, example = "30m")]
    pub ttl: Ttl,
    /// `jwt` (default) or `opaque`.
    #[serde(default)]
    pub format: Option<String>,
}

fn announce_break_glass(app: &App, m: &Minted, reason: &str, approval: Option<&Approval>) {
    tracing::warn!(token = %m.id, workload = %m.workload, scopes = ?m.scopes, "break-glass grant issued");
    app.exposures.notifier.send(Notification {
        event: "break_glass",
        body: serde_json::json!({
            "event": "break_glass",
            "token": m.id,
            "workload": m.workload,
            "owner": m.owner,
            "scopes": m.scopes,
            "expires_at": m.expires_at,
            "reason": reason,
            "approved_by": approval.and_then(|a| a.decided_by.clone()),
        }),
    });
}

#[utoipa::path(post, path = "/v1/break-glass", tag = "approvals", request_body = BreakGlassBody,
    responses((status = 201, body = Minted, description = "Issued: loud, time-boxed, revoked at its TTL"),
              (status = 202, body = ApprovalView, description = "A second person must approve it first"),
              (status = 403, body = Problem)))]
pub async fn break_glass(
    State(app): State<AppState>,
    ApiJson(b): ApiJson<BreakGlassBody>,
) -> ApiResult<Response> {
    let body = MintBody {
        workload: b.workload,
        run: None,
        scopes: b.scopes,
        ttl: b.ttl,
        audience: vec![],
        justification: Some(b.reason.clone()),
        format: b.format,
        parent: None,
        may_act: None,
    };
    let extra = MintExtra {
        break_glass: true,
        ..MintExtra::default()
    };
    if app.authz_settings.break_glass_approval {
        super::tokens::prepare(&app, body.clone(), &extra).await?;
        let v = request(&app, ApprovalKind::BreakGlass, &body, b.reason, OPERATOR).await?;
        return Ok((StatusCode::ACCEPTED, Json(v)).into_response());
    }
    let m = mint_counted(&app, body, OPERATOR, extra).await?;
    announce_break_glass(&app, &m, &b.reason, None);
    Ok((StatusCode::CREATED, Json(m)).into_response())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BreakGlassView {
    pub id: String,
    pub workload: String,
    pub scopes: Vec<String>,
    pub reason: String,
    pub issued_at: String,
    pub expires_at: String,
    /// `active`, `revoked` (at its TTL or by hand) or `expired`.
    pub status: String,
    /// Every use: decisions aggregated by action, resource and tool.
    #[schema(value_type = Object)]
    pub uses: TokenUsage,
}

#[utoipa::path(get, path = "/v1/break-glass", tag = "approvals", responses((status = 200, body = [BreakGlassView])))]
pub async fn list_break_glass(State(app): State<AppState>) -> ApiResult<Json<Vec<BreakGlassView>>> {
    let now = now_ms();
    let tokens = app
        .store
        .list_tokens(
            TokenFilter {
                break_glass: Some(true),
                limit: MAX_LIST,
                ..TokenFilter::default()
            },
            now,
        )
        .await?;
    let mut out = Vec::with_capacity(tokens.len());
    for t in tokens.iter().rev() {
        let uses = app.store.token_usage(&t.id, 100).await?;
        let workload = app
            .store
            .registry()
            .read()
            .workload(t.workload_id)
            .map(|w| w.name.clone())
            .unwrap_or_default();
        out.push(BreakGlassView {
            id: t.id.clone(),
            workload,
            scopes: t.scopes.iter().map(ToString::to_string).collect(),
            reason: t.justification.clone().unwrap_or_default(),
            issued_at: ts(t.issued_at),
            expires_at: ts(t.expires_at),
            status: t.status(now).to_string(),
            uses,
        });
    }
    Ok(Json(out))
}

/// Revoke break-glass grants as their TTL ends (checked every 250 ms,
/// revoked up to half a second early so none is ever live past its TTL).
pub async fn expire_break_glass(app: AppState) {
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(250));
    loop {
        tick.tick().await;
        match app.store.revoke_due_break_glass(now_ms() + 500).await {
            Ok(r) if r.count > 0 => {
                app.metrics.revoked(&r);
                tracing::warn!(count = r.count, "break-glass grants revoked at their TTL");
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "could not revoke expired break-glass grants"),
        }
    }
}

/// A token's usage, for `explain` and reviews.
#[utoipa::path(get, path = "/v1/tokens/{id}/usage", tag = "tokens",
    responses((status = 200, description = "Aggregates and the newest raw records"), (status = 404, body = Problem)))]
pub async fn token_usage(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<TokenUsage>> {
    let t = app.store.get_token(&id).await?;
    Ok(Json(app.store.token_usage(&t.id, 100).await?))
}
