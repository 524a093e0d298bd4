//! Minting, listing, explaining and revoking tokens.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use leash_core::duration::parse_duration;
use leash_core::issuance::{MintContext, MintRequest, check_mint};
use leash_core::{Token, TokenFormat, TokenStatus};
use leash_policy::{IssuanceInput, IssuanceKind};
use leash_store::{MintPlan, StoreError, TokenFilter, now_ms};
use leash_token::jwt::{AccessClaims, Audience};
use serde::Deserialize;
use utoipa::IntoParams;

use super::dto::*;
use super::registry::{OPERATOR, parse_scopes};
use super::{ApiJson, ApiQuery, MAX_LIST};
use crate::error::{ApiError, ApiResult, Problem};
use crate::metrics::{FormatLabel, RuleLabel};
use crate::{App, AppState};

#[utoipa::path(post, path = "/v1/tokens", tag = "tokens", request_body = MintBody,
    responses(
        (status = 201, body = Minted, description = "Minted and durably recorded"),
        (status = 202, body = ApprovalView, description = "A write-capable token waits for its owner's approval"),
        (status = 400, body = Problem, description = "Malformed scope, TTL or format"),
        (status = 403, body = Problem, description = "Refused by an issuance rule (see `rule`)"),
        (status = 404, body = Problem, description = "Unknown workload or run")))]
pub async fn mint(
    State(app): State<AppState>,
    ApiJson(b): ApiJson<MintBody>,
) -> ApiResult<axum::response::Response> {
    use axum::response::IntoResponse;
    if needs_approval(&app, &b) {
        // judge it now: a request the rules refuse is refused, not queued
        prepare(&app, b.clone(), &MintExtra::default()).await?;
        let v = super::approvals::request(
            &app,
            leash_core::ApprovalKind::Mint,
            &b,
            b.justification.clone().unwrap_or_default(),
            OPERATOR,
        )
        .await?;
        return Ok((StatusCode::ACCEPTED, Json(v)).into_response());
    }
    let m = mint_counted(&app, b, OPERATOR, MintExtra::default()).await?;
    Ok((StatusCode::CREATED, Json(m)).into_response())
}

/// A write-capable root token waits for its owner's approval when the
/// server requires approvals (delegated tokens only narrow an approved parent).
pub fn needs_approval(app: &App, b: &MintBody) -> bool {
    app.authz_settings.write_approval
        && b.parent.is_none()
        && b.scopes.iter().any(|s| {
            s.parse::<leash_core::scope::Scope>()
                .is_ok_and(|s| s.is_write())
        })
}

/// What only the OAuth flows set on a new token.
#[derive(Debug, Clone, Default)]
pub struct MintExtra {
    /// RFC 8693 actor chain (delegation).
    pub act: Option<leash_core::Actor>,
    /// RFC 9449 key binding (`cnf.jkt`).
    pub cnf_jkt: Option<String>,
    /// A break-glass grant (outside normal policy, at most 1 h).
    pub break_glass: bool,
    /// The approved request this token is issued under.
    pub approval: Option<i64>,
    /// How it is being issued, for issuance policies (default: mint, or
    /// exchange when it has a parent).
    pub kind: Option<IssuanceKind>,
}

/// A token built and judged, not yet signed or recorded.
pub struct Prepared {
    token: Token,
    claims: AccessClaims,
    request: MintRequest,
}

/// Mint on behalf of `actor` (the audit log's actor), counting the mint or
/// the refusal's rule in the metrics.
pub async fn mint_counted(
    app: &App,
    b: MintBody,
    actor: &str,
    extra: MintExtra,
) -> ApiResult<Minted> {
    let result = mint_token(app, b, actor, extra).await;
    match &result {
        Ok(m) => {
            app.metrics
                .mints
                .get_or_create(&FormatLabel {
                    format: m.format.clone(),
                })
                .inc();
        }
        Err(e) => {
            if let Some(rule) = e.rule {
                app.metrics
                    .refusals
                    .get_or_create(&RuleLabel {
                        rule: rule.to_owned(),
                    })
                    .inc();
            }
        }
    }
    result
}

async fn mint_token(app: &App, b: MintBody, actor: &str, extra: MintExtra) -> ApiResult<Minted> {
    if extra.approval.is_none() && needs_approval(app, &b) && !extra.break_glass {
        return Err(ApiError::refused(
            "write_approval",
            "a write scope needs its owner's approval: ask with `leash mint … --justification TEXT` (answers with an approval id), have the owner run `leash approvals approve ID`, then `leash approvals claim ID`; over OAuth, send `approval=ID` with the request",
        )
        .with_oauth("invalid_scope"));
    }
    let approval = extra.approval;
    let Prepared {
        token,
        claims,
        request,
    } = prepare(app, b, &extra).await?;
    sign_and_record(app, token, claims, request, approval, actor).await
}

/// Judge a mint and build its token and claims (nothing is signed or stored).
pub async fn prepare(app: &App, b: MintBody, extra: &MintExtra) -> ApiResult<Prepared> {
    let format = match b.format.as_deref() {
        None => TokenFormat::Jwt,
        Some(f) => f
            .parse()
            .map_err(|e: leash_core::InvalidInput| ApiError::bad_request(e.to_string()))?,
    };
    let scopes = parse_scopes(&b.scopes, leash_core::issuance::MAX_SCOPES)?;
    if format == TokenFormat::Postgres {
        // refused before anything is judged or queued for approval
        crate::credentials::check_request(app, &scopes)?;
        if extra.cnf_jkt.is_some() {
            return Err(ApiError::bad_request(
                "a `postgres` credential is a connection string: it cannot be bound to a DPoP key",
            ));
        }
    }
    let ttl_secs = match b.ttl {
        Ttl::Seconds(s) => s,
        Ttl::Text(t) => parse_duration(&t).map_err(|e| ApiError::bad_request(e.to_string()))?,
    };
    let parent = match &b.parent {
        Some(p) => Some(resolve(app, p).await?),
        None => None,
    };
    let audience = match (b.audience.is_empty(), &parent) {
        (false, _) => b.audience,
        (true, Some(p)) => p.audience.clone(),
        (true, None) => vec![app.default_audience.clone()],
    };
    let request = MintRequest {
        scopes,
        ttl_secs,
        audience,
        justification: b.justification.filter(|j| !j.trim().is_empty()),
    };

    // pre-check against the registry; the store checks again at commit
    let ended_run = match b.run {
        Some(id) if app.store.registry().read().running_run(id).is_none() => {
            Some(app.store.get_run(id).await?)
        }
        _ => None,
    };
    if let Some(r) = ended_run {
        return Err(
            StoreError::Refused(leash_core::issuance::MintRefusal::RunNotRunning {
                run: r.id,
                state: r.state,
            })
            .into(),
        );
    }
    let now = now_ms();
    let (token, claims) = {
        let reg = app.store.registry().read();
        let workload = reg.workload_by_name(&b.workload).ok_or_else(|| {
            ApiError::not_found(format!(
                "workload `{}` does not exist; create it with `leash workload add`",
                b.workload
            ))
        })?;
        let owner = reg
            .owner(workload.owner_id)
            .ok_or_else(|| ApiError::not_found("the workload's owner does not exist"))?;
        let run = b.run.and_then(|id| reg.running_run(id));
        let workflow = run.and_then(|r| reg.workflow(r.workflow_id));
        let pair = run.zip(workflow);
        // may_act names a workload; the token carries its sub (identity or name)
        let may_act = match &b.may_act {
            None => None,
            Some(name) => Some(
                reg.workload_by_name(name)
                    .map(|w| w.identity.clone().unwrap_or_else(|| w.name.clone()))
                    .ok_or_else(|| {
                        ApiError::not_found(format!("may_act workload `{name}` does not exist"))
                    })?,
            ),
        };
        if extra.break_glass {
            if b.run.is_some() || parent.is_some() {
                return Err(ApiError::bad_request(
                    "a break-glass grant stands alone: give no run and no parent",
                ));
            }
            leash_core::issuance::check_break_glass(owner, workload, &request)
                .map_err(StoreError::from)?;
        } else {
            check_mint(
                MintContext {
                    owner,
                    workload,
                    run: pair,
                },
                &request,
                &app.store.ttl_caps(),
                |id| reg.workload(id).map(|w| w.name.clone()).unwrap_or_default(),
            )
            .map_err(StoreError::from)?;
        }
        let exp_secs = now.div_euclid(1000) + ttl_secs as i64;
        if let Some(p) = &parent {
            leash_core::issuance::check_delegation(
                p,
                &request,
                exp_secs * 1000,
                now,
                app.max_delegation_depth,
            )
            .map_err(StoreError::from)?;
        }
        // the operators' issuance policies, on top of the rules above (a
        // break-glass grant is by definition outside them)
        if !extra.break_glass {
            let kind = extra.kind.unwrap_or(if parent.is_some() {
                IssuanceKind::Exchange
            } else {
                IssuanceKind::Mint
            });
            let above =
                leash_policy::scopes_above_ceiling(&workload.scope_ceiling, &request.scopes);
            let decision = app.authz.engine.decide_issuance(&IssuanceInput {
                owner,
                workload,
                kind,
                scopes: &request.scopes,
                ttl_secs,
                above_ceiling: &above,
                run,
                run_id: b.run,
                parent_environment: parent
                    .as_ref()
                    .and_then(|p| reg.workload(p.workload_id))
                    .map(|w| w.environment),
                actor_environment: None,
                justified: request.justification.is_some(),
                now,
            });
            if !decision.allow {
                let r = decision.reasons.first();
                return Err(ApiError::refused(
                    "issuance_policy",
                    format!(
                        "{} (issuance policy `{}`)",
                        r.map_or("an issuance policy forbids it", |r| r.message.as_str()),
                        r.and_then(|r| r.policy.as_deref()).unwrap_or("?")
                    ),
                )
                .with_oauth("invalid_request"));
            }
        }
        let id = leash_token::new_token_id(now).map_err(|e| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "storage", e.to_string())
        })?;
        let token = Token {
            id: id.clone(),
            format,
            owner_id: owner.id,
            workload_id: workload.id,
            run_id: run.map(|r| r.id),
            workflow_id: workflow.map(|w| w.id),
            scopes: request.scopes.clone(),
            audience: request.audience.clone(),
            issued_at: now,
            expires_at: exp_secs * 1000,
            parent_id: parent.as_ref().map(|p| p.id.clone()),
            justification: request.justification.clone(),
            revocation: None,
            depth: parent.as_ref().map_or(0, |p| p.depth + 1),
            act: extra.act.clone(),
            may_act: may_act.clone(),
            cnf_jkt: extra.cnf_jkt.clone(),
            break_glass: extra.break_glass,
        };
        let claims = AccessClaims {
            iss: app.issuer.clone(),
            sub: workload
                .identity
                .clone()
                .unwrap_or_else(|| workload.name.clone()),
            aud: Audience::from_list(&request.audience),
            exp: exp_secs,
            iat: now.div_euclid(1000),
            nbf: now.div_euclid(1000),
            jti: id,
            client_id: workload.name.clone(),
            scope: request
                .scopes
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" "),
            owner: owner.name.clone(),
            workload: workload.name.clone(),
            workflow: workflow.map(|w| w.name.clone()),
            run: run.map(|r| r.id),
            act: extra.act.clone(),
            cnf: extra
                .cnf_jkt
                .clone()
                .map(|jkt| leash_token::jwt::Confirmation { jkt }),
            may_act: may_act
                .clone()
                .map(|sub| leash_core::Actor { sub, act: None }),
        };
        (token, claims)
    };
    Ok(Prepared {
        token,
        claims,
        request,
    })
}

async fn sign_and_record(
    app: &App,
    token: Token,
    claims: AccessClaims,
    request: MintRequest,
    approval: Option<i64>,
    actor: &str,
) -> ApiResult<Minted> {
    let now = token.issued_at;
    let (secret, secret_hash) = match token.format {
        TokenFormat::Jwt => (
            leash_token::jwt::sign(&app.keys(), &claims).map_err(|e| {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "storage", e.to_string())
            })?,
            None,
        ),
        TokenFormat::Opaque => {
            let (t, h) = leash_token::opaque::generate().map_err(|e| {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "storage", e.to_string())
            })?;
            (t, Some(h))
        }
        // the role is created, then recorded, below
        TokenFormat::Postgres => (String::new(), None),
    };
    let mut minted = Minted {
        id: token.id.clone(),
        token: secret,
        token_type: if token.cnf_jkt.is_some() {
            "DPoP"
        } else {
            "Bearer"
        }
        .into(),
        format: token.format.to_string(),
        expires_at: ts(token.expires_at),
        expires_in: (token.expires_at - now + 999).div_euclid(1000),
        scopes: token.scopes.iter().map(ToString::to_string).collect(),
        audience: token.audience.clone(),
        owner: claims.owner,
        workload: claims.workload,
        run: token.run_id,
        credential: None,
    };
    let format = token.format;
    let plan = MintPlan {
        token,
        secret_hash,
        request,
        approval,
        write_budget: app.authz_settings.write_budget,
        credential: None,
    };
    if format == TokenFormat::Postgres {
        let role = leash_pgcred::role_name(&minted.id);
        minted.token = crate::credentials::create_and_record(app, plan, actor).await?;
        minted.token_type = "postgres".into();
        if let Some(c) = &app.credentials {
            let (host, port) = c.db.host_port();
            minted.credential = Some(CredentialBrief {
                role,
                database: c.db.database().to_owned(),
                host: Some(host.to_owned()),
                port: Some(port),
                status: leash_core::CredentialStatus::Active.to_string(),
                attempts: 0,
                last_error: None,
                dropped_at: None,
                finding: None,
            });
        }
        return Ok(minted);
    }
    // the first decision about a new token (an agent uses it at once)
    // needs neither its signature checked nor its record read
    let known = Arc::new(plan.token.clone());
    app.store.record_mint(plan, actor).await?;
    app.authz
        .cache
        .insert(leash_token::sha256(minted.token.as_bytes()), known, now);
    Ok(minted)
}

/// Find a token from a credential string or an id.
pub async fn resolve(app: &App, given: &str) -> ApiResult<Token> {
    let s = given.trim();
    let unknown =
        || ApiError::not_found("no token of this Leash matches; check that you copied all of it");
    if s.starts_with(leash_token::opaque::PREFIX) {
        let o = leash_token::opaque::parse(s).map_err(|e| ApiError::bad_request(e.to_string()))?;
        return app
            .store
            .find_token_by_secret_hash(o.hash)
            .await
            .map_err(|e| match e {
                StoreError::NotFound { .. } => unknown(),
                other => other.into(),
            });
    }
    if leash_token::jwt::looks_like_jwt(s) {
        let claims = leash_token::jwt::verify(&app.keys(), s).map_err(|e| {
            ApiError::bad_request(format!(
                "{e}; only tokens minted by this Leash can be looked up"
            ))
        })?;
        return app.store.get_token(&claims.jti).await.map_err(|e| match e {
            StoreError::NotFound { .. } => unknown(),
            other => other.into(),
        });
    }
    if s.starts_with("tok_")
        && s.len() <= 64
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Ok(app.store.get_token(s).await?);
    }
    Err(ApiError::bad_request(
        "give a token (`lsh_…` or a JWT) or a token id (`tok_…`)",
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct TokenQuery {
    /// Owner name.
    pub owner: Option<String>,
    /// Workload name.
    pub workload: Option<String>,
    /// Run id.
    pub run: Option<i64>,
    /// `active`, `revoked` or `expired`.
    pub status: Option<String>,
    /// Ids after this one (cursor from the previous page's last id).
    pub after: Option<String>,
    /// Page size (default 100, max 1000).
    pub limit: Option<u32>,
}

#[utoipa::path(get, path = "/v1/tokens", tag = "tokens", params(TokenQuery), responses((status = 200, body = [TokenView]), (status = 404, body = Problem)))]
pub async fn list(
    State(app): State<AppState>,
    ApiQuery(q): ApiQuery<TokenQuery>,
) -> ApiResult<Json<Vec<TokenView>>> {
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(
            s.parse::<TokenStatus>()
                .map_err(|e| ApiError::bad_request(e.to_string()))?,
        ),
    };
    let (owner_id, workload_id) =
        {
            let reg = app.store.registry().read();
            let o =
                match &q.owner {
                    None => None,
                    Some(n) => Some(reg.owner_by_name(n).map(|o| o.id).ok_or_else(|| {
                        ApiError::not_found(format!("owner `{n}` does not exist"))
                    })?),
                };
            let w = match &q.workload {
                None => None,
                Some(n) => Some(reg.workload_by_name(n).map(|w| w.id).ok_or_else(|| {
                    ApiError::not_found(format!("workload `{n}` does not exist"))
                })?),
            };
            (o, w)
        };
    let now = now_ms();
    let filter = TokenFilter {
        owner_id,
        workload_id,
        run_id: q.run,
        status,
        break_glass: None,
        after: q.after,
        limit: q.limit.unwrap_or(100).clamp(1, MAX_LIST),
    };
    let tokens = app.store.list_tokens(filter, now).await?;
    let reg = app.store.registry().read();
    Ok(Json(
        tokens
            .iter()
            .map(|t| TokenView::new(t, &reg, now))
            .collect(),
    ))
}

#[utoipa::path(get, path = "/v1/tokens/{id}", tag = "tokens", responses((status = 200, body = TokenView), (status = 404, body = Problem)))]
pub async fn get(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<TokenView>> {
    let t = app.store.get_token(&id).await?;
    Ok(Json(TokenView::new(
        &t,
        &app.store.registry().read(),
        now_ms(),
    )))
}

#[utoipa::path(post, path = "/v1/explain", tag = "tokens", request_body = ExplainBody,
    responses((status = 200, body = Explanation, description = "The four questions: owner, workload, privileges, revocation (an `external:NAME` answers ExternalExplanation)"), (status = 400, body = Problem), (status = 404, body = Problem)))]
pub async fn explain(
    State(app): State<AppState>,
    ApiJson(b): ApiJson<ExplainBody>,
) -> ApiResult<Response> {
    if let Some(name) = b.token_or_id.strip_prefix("external:") {
        let x = app.store.external_token_by_name(name).await?;
        return Ok(Json(external_explanation(&app, &x)).into_response());
    }
    Ok(Json(explain_token(&app, &b.token_or_id).await?).into_response())
}

/// The four questions about a third-party credential from the inventory.
fn external_explanation(app: &App, x: &leash_core::ExternalToken) -> ExternalExplanation {
    let view = super::exposures::external_view(app, x);
    let reg = app.store.registry().read();
    let now = now_ms();
    let expires = x.imported.as_ref().and_then(|i| i.expires_at);
    let status = match (x.status, expires) {
        (leash_core::ExternalStatus::Active, Some(e)) if e <= now => "expired".to_owned(),
        (s, _) => s.to_string(),
    };
    let mut triggers = vec!["exposure".to_owned()];
    if expires.is_some() {
        triggers.push("expiry".into());
    }
    if x.connector.is_none() {
        triggers[0] = "exposure (owner told; no revocation connector)".into();
    }
    ExternalExplanation {
        id: format!("external:{}", x.name),
        status,
        format: "external".into(),
        owner: x.owner_id.and_then(|id| reg.owner(id)).map(|o| OwnerBrief {
            name: o.name.clone(),
            email: o.email.clone(),
            kind: o.kind.to_string(),
            status: o.status.to_string(),
            business_owner: o.business_owner,
        }),
        workload: view.blast_radius.workloads.clone(),
        privileges: ExternalPrivileges {
            scopes: x.scopes.clone(),
            issued_at: x.imported.as_ref().and_then(|i| i.issued_at).map(ts),
            expires_at: expires.map(ts),
            last_used_at: x.last_used_at.map(ts),
        },
        revocation_triggers: triggers,
        revoked: x.revoked_at.map(ts),
        external: view,
    }
}

async fn explain_token(app: &App, token_or_id: &str) -> ApiResult<Explanation> {
    let t = resolve(app, token_or_id).await?;
    let run = match t.run_id {
        Some(id) => Some(app.store.get_run(id).await?),
        None => None,
    };
    let revoked = match &t.revocation {
        None => None,
        Some(r) => {
            let ev = app.store.get_event(r.event).await.ok();
            Some(RevocationView {
                at: ts(r.at),
                trigger: r.trigger.to_string(),
                reason: r.reason.clone(),
                event: EventRef {
                    seq: r.event,
                    kind: ev.as_ref().map(|e| e.kind.clone()),
                    subject: ev.as_ref().map(|e| e.subject.clone()),
                    actor: ev.as_ref().map(|e| e.actor.clone()),
                    time: ev.as_ref().map(|e| ts(e.time)),
                },
            })
        }
    };
    let now = now_ms();
    let mut ancestors = Vec::new();
    let mut next = t.parent_id.clone();
    while let Some(pid) = next {
        if ancestors.len() > 32 {
            break;
        }
        let p = app.store.get_token(&pid).await?;
        next = p.parent_id.clone();
        ancestors.push(p);
    }
    let credential =
        match t.format {
            TokenFormat::Postgres => app.store.get_credential(&t.id).await?.map(|c| {
                CredentialBrief::new(&c, app.credentials.as_ref().map(|x| x.db.host_port()))
            }),
            _ => None,
        };
    let reg = app.store.registry().read();
    let lineage = ancestors
        .iter()
        .map(|p| LineageHop {
            id: p.id.clone(),
            workload: reg
                .workload(p.workload_id)
                .map(|w| w.name.clone())
                .unwrap_or_default(),
            status: p.status(now).to_string(),
            depth: p.depth,
        })
        .collect();
    let owner = reg
        .owner(t.owner_id)
        .ok_or_else(|| ApiError::not_found("the token's owner is missing from the registry"))?;
    let workload = reg
        .workload(t.workload_id)
        .ok_or_else(|| ApiError::not_found("the token's workload is missing from the registry"))?;
    Ok(Explanation {
        id: t.id.clone(),
        status: t.status(now).to_string(),
        format: t.format.to_string(),
        owner: OwnerBrief {
            name: owner.name.clone(),
            email: owner.email.clone(),
            kind: owner.kind.to_string(),
            status: owner.status.to_string(),
            business_owner: owner.business_owner,
        },
        workload: WorkloadBrief {
            name: workload.name.clone(),
            identity: workload.identity.clone(),
            environment: workload.environment.to_string(),
            scope_ceiling: workload
                .scope_ceiling
                .iter()
                .map(ToString::to_string)
                .collect(),
        },
        workflow: t
            .workflow_id
            .and_then(|id| reg.workflow(id))
            .map(|w| WorkflowBrief {
                name: w.name.clone(),
                digest: w.digest.clone(),
                tools: w.tools.clone(),
            }),
        run: run.map(|r| RunBrief {
            id: r.id,
            state: r.state.to_string(),
            digest: r.digest,
        }),
        privileges: Privileges {
            scopes: t.scopes.iter().map(ToString::to_string).collect(),
            write_scopes: t
                .scopes
                .iter()
                .filter(|s| s.is_write())
                .map(ToString::to_string)
                .collect(),
            audience: t.audience.clone(),
            issued_at: ts(t.issued_at),
            expires_at: ts(t.expires_at),
            expires_in: (t.expires_at - now).max(0).div_euclid(1000),
            justification: t.justification.clone(),
        },
        revocation_triggers: t
            .revocation_triggers()
            .iter()
            .map(ToString::to_string)
            .collect(),
        revoked,
        parent: t.parent_id.clone(),
        depth: t.depth,
        act: t.act.clone(),
        lineage,
        may_act: t.may_act.clone(),
        cnf_jkt: t.cnf_jkt.clone(),
        break_glass: t.break_glass,
        justification: t.justification.clone(),
        credential,
    })
}

#[utoipa::path(post, path = "/v1/revocations", tag = "tokens", request_body = RevokeBody,
    responses((status = 200, body = RevokedView, description = "Revoked with all descendants (count 0 if it was already revoked or expired)"), (status = 400, body = Problem), (status = 404, body = Problem)))]
pub async fn revoke(
    State(app): State<AppState>,
    ApiJson(b): ApiJson<RevokeBody>,
) -> ApiResult<Json<RevokedView>> {
    if b.reason.trim().is_empty() {
        return Err(ApiError::bad_request(
            "a revocation needs a reason: pass --reason TEXT",
        ));
    }
    let t = resolve(&app, &b.token_or_id).await?;
    let revoked = app.store.revoke_token(&t.id, b.reason, OPERATOR).await?;
    app.metrics.revoked(&revoked);
    Ok(Json(revoked.into()))
}
