//! Workload identity federation: trusted issuers (OIDC providers such as
//! GitHub Actions, Kubernetes service-account issuers, SPIFFE trust domains),
//! identity rules that map their verified claims to workloads, and the
//! verification of their JWTs at the token endpoint (RFC 8693 exchange).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use base64::Engine;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use leash_core::{IdentityRule, Issuer};
use leash_store::NewIssuer;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::ApiJson;
use super::dto::ts;
use super::registry::OPERATOR;
use crate::error::{ApiResult, Problem};
use crate::{App, AppState};

/// Clock skew allowed on `exp`/`nbf`.
pub const LEEWAY_SECS: u64 = 60;
/// By default a JWKS URL is fetched again for an unknown `kid` at most this often.
pub const DEFAULT_MIN_REFRESH: Duration = Duration::from_secs(30);
/// A cached JWKS is re-fetched when older than this.
const MAX_AGE: Duration = Duration::from_secs(3600);
/// Largest JWKS document accepted.
const MAX_JWKS: usize = 512 * 1024;
/// Largest external token accepted.
const MAX_TOKEN: usize = 16 * 1024;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateIssuer {
    pub name: String,
    /// The exact `iss` of its tokens, e.g. `https://token.actions.githubusercontent.com`.
    pub issuer: String,
    /// Where to fetch its JWK Set.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// Or the JWK Set / SPIFFE trust bundle inline.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub jwks: Option<Value>,
    /// The `aud` its tokens must carry for Leash.
    pub audience: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct IssuerView {
    pub name: String,
    pub issuer: String,
    pub jwks_url: Option<String>,
    pub inline_jwks: bool,
    pub audience: String,
    pub created_at: String,
    /// Identity rules: workload and claim globs.
    pub rules: Vec<RuleView>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RuleView {
    pub workload: String,
    pub claims: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRule {
    /// Issuer name.
    pub issuer: String,
    /// Claim name → glob, all of which must match, e.g.
    /// `{"sub": "repo:acme/agents:ref:refs/heads/main", "job_workflow_ref": "acme/agents/.github/workflows/triage.yml@*"}`.
    pub claims: BTreeMap<String, String>,
}

fn issuer_view(i: &Issuer, reg: &leash_store::Registry) -> IssuerView {
    IssuerView {
        name: i.name.clone(),
        issuer: i.issuer.clone(),
        jwks_url: i.jwks_url.clone(),
        inline_jwks: i.jwks.is_some(),
        audience: i.audience.clone(),
        created_at: ts(i.created_at),
        rules: reg
            .rules_of(i.id)
            .map(|r| RuleView {
                workload: reg
                    .workload(r.workload_id)
                    .map(|w| w.name.clone())
                    .unwrap_or_default(),
                claims: r.claims.clone(),
            })
            .collect(),
    }
}

#[utoipa::path(post, path = "/v1/issuers", tag = "federation", request_body = CreateIssuer,
    responses((status = 201, body = IssuerView), (status = 400, body = Problem), (status = 409, body = Problem)))]
pub async fn create_issuer(
    State(app): State<AppState>,
    ApiJson(b): ApiJson<CreateIssuer>,
) -> ApiResult<(StatusCode, Json<IssuerView>)> {
    let jwks = b
        .jwks
        .map(|v| super::clients::public_jwks(&v))
        .transpose()?;
    let i = app
        .store
        .create_issuer(
            NewIssuer {
                name: b.name,
                issuer: b.issuer,
                jwks_url: b.jwks_url,
                jwks,
                audience: b.audience,
            },
            OPERATOR,
        )
        .await?;
    let view = issuer_view(&i, &app.store.registry().read());
    Ok((StatusCode::CREATED, Json(view)))
}

#[utoipa::path(get, path = "/v1/issuers", tag = "federation", responses((status = 200, body = [IssuerView])))]
pub async fn list_issuers(State(app): State<AppState>) -> Json<Vec<IssuerView>> {
    let reg = app.store.registry().read();
    Json(
        reg.issuers()
            .into_iter()
            .map(|i| issuer_view(i, &reg))
            .collect(),
    )
}

#[utoipa::path(post, path = "/v1/workloads/{name}/identity-rules", tag = "federation", request_body = CreateRule,
    responses((status = 201, body = RuleView), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn add_rule(
    State(app): State<AppState>,
    Path(name): Path<String>,
    ApiJson(b): ApiJson<CreateRule>,
) -> ApiResult<(StatusCode, Json<RuleView>)> {
    let r: IdentityRule = app
        .store
        .add_identity_rule(&name, &b.issuer, b.claims, OPERATOR)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(RuleView {
            workload: name,
            claims: r.claims,
        }),
    ))
}

struct CachedSet {
    set: JwkSet,
    fetched: Instant,
    last_attempt: Instant,
}

/// Fetched JWK Sets per issuer, refreshed on an unknown `kid` (rate-limited).
pub struct JwksCache {
    sets: Mutex<HashMap<i64, CachedSet>>,
    min_refresh: Duration,
    /// How many times a JWKS URL was fetched (for tests and metrics).
    pub fetches: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksCache").finish_non_exhaustive()
    }
}

fn pick(set: &JwkSet, kid: Option<&str>) -> Option<Jwk> {
    match kid {
        Some(k) => set.find(k).cloned(),
        None if set.keys.len() == 1 => set.keys.first().cloned(),
        None => None,
    }
}

impl Default for JwksCache {
    fn default() -> Self {
        Self::new(DEFAULT_MIN_REFRESH)
    }
}

impl JwksCache {
    /// A cache that re-fetches a JWKS for an unknown `kid` at most every `min_refresh`.
    pub fn new(min_refresh: Duration) -> Self {
        JwksCache {
            sets: Mutex::default(),
            min_refresh,
            fetches: Default::default(),
        }
    }

    fn cached(&self, issuer: i64, kid: Option<&str>) -> (Option<Jwk>, bool) {
        let sets = self.sets.lock().unwrap_or_else(|e| e.into_inner());
        match sets.get(&issuer) {
            None => (None, true),
            Some(c) => {
                let stale = c.fetched.elapsed() > MAX_AGE;
                let key = if stale { None } else { pick(&c.set, kid) };
                let may_refresh = c.last_attempt.elapsed() >= self.min_refresh || stale;
                (key, may_refresh)
            }
        }
    }

    async fn key_for(
        &self,
        http: &reqwest::Client,
        issuer: &Issuer,
        kid: Option<&str>,
    ) -> Result<Jwk, String> {
        if let Some(inline) = &issuer.jwks {
            let set: JwkSet = serde_json::from_str(inline)
                .map_err(|_| "the issuer's inline JWK Set is unreadable".to_owned())?;
            return pick(&set, kid)
                .ok_or_else(|| format!("no key of issuer `{}` has kid {kid:?}", issuer.name));
        }
        let url = issuer
            .jwks_url
            .as_deref()
            .ok_or("the issuer has no keys configured")?;
        let (key, may_refresh) = self.cached(issuer.id, kid);
        if let Some(k) = key {
            return Ok(k);
        }
        if !may_refresh {
            return Err(format!(
                "no key of issuer `{}` has kid {kid:?} (its JWKS was refreshed less than {} s ago)",
                issuer.name,
                self.min_refresh.as_secs()
            ));
        }
        {
            let mut sets = self.sets.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(c) = sets.get_mut(&issuer.id) {
                c.last_attempt = Instant::now();
            }
        }
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let resp = http
            .get(url)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map_err(|e| format!("cannot fetch the JWKS of issuer `{}`: {e}", issuer.name))?;
        if !resp.status().is_success() {
            return Err(format!(
                "the JWKS of issuer `{}` answered {}",
                issuer.name,
                resp.status()
            ));
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| format!("reading the JWKS of issuer `{}`: {e}", issuer.name))?;
        if body.len() > MAX_JWKS {
            return Err(format!(
                "the JWKS of issuer `{}` is larger than 512 KiB",
                issuer.name
            ));
        }
        let set: JwkSet = serde_json::from_slice(&body)
            .map_err(|e| format!("the JWKS of issuer `{}` is not a JWK Set: {e}", issuer.name))?;
        let key = pick(&set, kid);
        let now = Instant::now();
        self.sets.lock().unwrap_or_else(|e| e.into_inner()).insert(
            issuer.id,
            CachedSet {
                set,
                fetched: now,
                last_attempt: now,
            },
        );
        key.ok_or_else(|| format!("no key of issuer `{}` has kid {kid:?}", issuer.name))
    }
}

/// A verified external token: who issued it, its claims, and the workload
/// the identity rules map it to.
pub struct Federated {
    pub issuer: Issuer,
    pub claims: Value,
    pub workload_id: i64,
}

/// Verify an external JWT from a trusted issuer and map it to a workload.
/// Every failure is a reason a person can act on.
pub async fn verify_external(app: &App, token: &str) -> Result<Federated, String> {
    if token.len() > MAX_TOKEN {
        return Err("the subject_token is larger than 16 KiB".into());
    }
    let header = jsonwebtoken::decode_header(token)
        .map_err(|e| format!("the subject_token is not a JWT: {e}"))?;
    if !super::ASYMMETRIC_ALGS.contains(&header.alg) {
        return Err(format!(
            "alg {:?} is not accepted; external tokens must be signed with RS*, PS*, ES256/384 or EdDSA",
            header.alg
        ));
    }
    let payload = token.split('.').nth(1).unwrap_or_default();
    let unverified: Value = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or("the subject_token's payload is not base64url JSON")?;
    let iss = unverified
        .get("iss")
        .and_then(Value::as_str)
        .ok_or("the subject_token has no iss")?;
    let issuer = app
        .store
        .registry()
        .read()
        .issuer_by_iss(iss)
        .cloned()
        .ok_or_else(|| {
            format!(
                "issuer `{}` is not trusted; add it with `leash issuer add`",
                iss.chars().take(200).collect::<String>()
            )
        })?;
    let spiffe = unverified
        .get("sub")
        .and_then(Value::as_str)
        .is_some_and(|s| s.starts_with("spiffe://"));
    if spiffe && header.alg == jsonwebtoken::Algorithm::EdDSA {
        return Err("a JWT-SVID must be signed with RS*, ES* or PS* (SPIFFE JWT-SVID spec)".into());
    }
    let jwk = app
        .jwks_cache
        .key_for(&app.http, &issuer, header.kid.as_deref())
        .await?;
    let key = jsonwebtoken::DecodingKey::from_jwk(&jwk)
        .map_err(|e| format!("the issuer's key is unusable: {e}"))?;
    let mut v = jsonwebtoken::Validation::new(header.alg);
    v.set_issuer(&[issuer.issuer.as_str()]);
    v.set_audience(&[issuer.audience.as_str()]);
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    v.leeway = LEEWAY_SECS;
    v.validate_nbf = true;
    let data = jsonwebtoken::decode::<Value>(token, &key, &v)
        .map_err(|e| format!("the subject_token was rejected: {e}"))?;
    let claims = data.claims;
    let reg = app.store.registry().read();
    let mut workloads: Vec<i64> = reg
        .rules_of(issuer.id)
        .filter(|r| r.matches(&claims))
        .map(|r| r.workload_id)
        .collect();
    workloads.sort_unstable();
    workloads.dedup();
    match workloads.as_slice() {
        [one] => Ok(Federated {
            workload_id: *one,
            issuer,
            claims,
        }),
        [] => Err(format!(
            "no identity rule of issuer `{}` matches sub `{}`; add one with `leash workload identity-rule`",
            issuer.name,
            claims
                .get("sub")
                .and_then(Value::as_str)
                .unwrap_or("?")
                .chars()
                .take(200)
                .collect::<String>()
        )),
        many => Err(format!(
            "the token matches identity rules of {} workloads; make the rules disjoint",
            many.len()
        )),
    }
}
