//! Cedar policies through the API, and hot reload of the policy directory.
//!
//! The active set is the shipped defaults overlaid with every `*.cedar`
//! file in the policy directory (a file named like a default replaces it).
//! `PUT /v1/policies/{name}` validates the new set against the schema
//! *before* anything changes; only then is the file written (atomically)
//! and the set activated. A refused policy answers 400 with Cedar's
//! diagnostics and the old set stays active. Edits made straight to the
//! directory are picked up by [`watch_policy_dir`]; a broken edit is
//! refused the same way (logged, counted), never leaving the server
//! without policies.

use std::path::{Path as FsPath, PathBuf};
use std::time::SystemTime;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use leash_policy::{PolicyError, PolicySet, PolicySource};
use serde::Serialize;
use utoipa::ToSchema;

use super::registry::OPERATOR;
use crate::error::{ApiError, ApiResult, Problem};
use crate::{App, AppState};

#[derive(Debug, Serialize, ToSchema)]
pub struct PolicySourceView {
    /// File name (`prod-isolation.cedar`, `ops.cedar`, …).
    pub name: String,
    /// `default` (shipped), `file` (in the policy directory) or `override`
    /// (a file replacing a shipped default).
    pub origin: String,
    pub text: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PoliciesView {
    pub directory: String,
    /// Policy ids in force.
    pub policies: Vec<String>,
    pub sources: Vec<PolicySourceView>,
    /// Non-fatal validation warnings.
    pub warnings: Vec<String>,
}

fn view(app: &App, set: &PolicySet) -> PoliciesView {
    let defaults: Vec<&str> = leash_policy::DEFAULT_POLICIES
        .iter()
        .map(|(n, _)| *n)
        .collect();
    let on_disk = |name: &str| app.authz.policy_dir.join(name).is_file();
    PoliciesView {
        directory: app.authz.policy_dir.display().to_string(),
        policies: set.policy_ids().into_iter().map(str::to_owned).collect(),
        sources: set
            .sources()
            .iter()
            .map(|s| PolicySourceView {
                origin: match (defaults.contains(&s.name.as_str()), on_disk(&s.name)) {
                    (true, true) => "override",
                    (true, false) => "default",
                    _ => "file",
                }
                .into(),
                name: s.name.clone(),
                text: s.text.clone(),
            })
            .collect(),
        warnings: set.warnings().iter().map(ToString::to_string).collect(),
    }
}

fn invalid(e: PolicyError) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_policy", e.to_string())
}

/// `NAME` or `NAME.cedar` → the file name, checked.
fn file_name(name: &str) -> ApiResult<String> {
    let stem = name.strip_suffix(".cedar").unwrap_or(name);
    leash_core::validate_name("policy", stem).map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(format!("{stem}.cedar"))
}

#[utoipa::path(get, path = "/v1/policies", tag = "policies", responses((status = 200, body = PoliciesView)))]
pub async fn list(State(app): State<AppState>) -> Json<PoliciesView> {
    let set = app.authz.engine.active();
    Json(view(&app, &set))
}

fn write_atomically(dir: &FsPath, name: &str, text: &str) -> ApiResult<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let done = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, dir.join(name)));
    done.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "storage",
            format!("cannot write the policy to {}: {e}", dir.display()),
        )
    })
}

#[utoipa::path(put, path = "/v1/policies/{name}", tag = "policies",
    request_body(content = String, content_type = "text/plain", description = "Cedar policies"),
    responses((status = 200, body = PoliciesView, description = "Validated and active"),
              (status = 400, body = Problem, description = "Refused with Cedar's diagnostics; the old set stays active")))]
pub async fn put(
    State(app): State<AppState>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Json<PoliciesView>> {
    let name = file_name(&name)?;
    if body.len() > leash_policy::MAX_SOURCE_LEN {
        return Err(ApiError::bad_request(format!(
            "a policy source is at most {} bytes",
            leash_policy::MAX_SOURCE_LEN
        )));
    }
    let text = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::bad_request("send the Cedar text as UTF-8"))?;
    let dir = app.authz.policy_dir.clone();
    let set = app
        .authz
        .engine
        .update(|active| {
            let next = active.with_source(PolicySource::new(name.clone(), text.clone()))?;
            // only a set that validated reaches the disk
            write_atomically(&dir, &name, &text).map_err(|e| PolicyError::Read {
                path: dir.join(&name),
                source: std::io::Error::other(e.detail),
            })?;
            Ok(next)
        })
        .map_err(invalid)?;
    app.store
        .record_event(
            "policy.updated",
            &format!("policy:{name}"),
            serde_json::json!({"policies": set.policy_ids()}),
            OPERATOR,
        )
        .await?;
    Ok(Json(view(&app, &set)))
}

#[utoipa::path(delete, path = "/v1/policies/{name}", tag = "policies",
    responses((status = 200, body = PoliciesView, description = "Removed (a shipped default comes back)"), (status = 404, body = Problem)))]
pub async fn delete(
    State(app): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<PoliciesView>> {
    let name = file_name(&name)?;
    let path = app.authz.policy_dir.join(&name);
    if !path.is_file() {
        return Err(ApiError::not_found(format!(
            "no policy file `{name}` in {}",
            app.authz.policy_dir.display()
        )));
    }
    let dir = app.authz.policy_dir.clone();
    let set = app
        .authz
        .engine
        .update(|_| {
            // validate the set without the file before removing it
            let mut sources = PolicySet::from_dir(&dir)?.sources().to_vec();
            let default = leash_policy::DEFAULT_POLICIES
                .iter()
                .find(|(n, _)| *n == name);
            match default {
                Some((_, text)) => {
                    if let Some(s) = sources.iter_mut().find(|s| s.name == name) {
                        s.text = (*text).to_owned();
                    }
                }
                None => sources.retain(|s| s.name != name),
            }
            let next = PolicySet::from_sources(sources)?;
            std::fs::remove_file(&path).map_err(|source| PolicyError::Read {
                path: path.clone(),
                source,
            })?;
            Ok(next)
        })
        .map_err(invalid)?;
    app.store
        .record_event(
            "policy.removed",
            &format!("policy:{name}"),
            serde_json::json!({"policies": set.policy_ids()}),
            OPERATOR,
        )
        .await?;
    Ok(Json(view(&app, &set)))
}

#[utoipa::path(post, path = "/v1/policies/reload", tag = "policies",
    responses((status = 200, body = PoliciesView), (status = 400, body = Problem, description = "Refused; the old set stays active")))]
pub async fn reload(State(app): State<AppState>) -> ApiResult<Json<PoliciesView>> {
    match app.authz.engine.reload_from_dir(&app.authz.policy_dir) {
        Ok(set) => Ok(Json(view(&app, &set))),
        Err(e) => {
            app.metrics.policy_reload_failures.inc();
            Err(invalid(e))
        }
    }
}

#[utoipa::path(post, path = "/v1/policies/test", tag = "policies",
    request_body(content = String, description = "Sample requests (the `leash policy test` format)"),
    responses((status = 200, description = "Each sample with its decision and whether it passed"), (status = 400, body = Problem)))]
pub async fn test(State(app): State<AppState>, body: Bytes) -> ApiResult<Json<serde_json::Value>> {
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::bad_request("send the samples as UTF-8 JSON"))?;
    let set = app.authz.engine.active();
    let report = leash_policy::samples::evaluate_samples(&set, text)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(Json(serde_json::to_value(&report).map_err(|e| {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "storage", e.to_string())
    })?))
}

/// What the directory looks like: names, sizes and modification times.
fn fingerprint(dir: &FsPath) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "cedar"))
        .filter_map(|e| {
            let m = e.metadata().ok()?;
            Some((e.path(), m.len(), m.modified().ok()))
        })
        .collect();
    out.sort();
    out
}

/// Reload the policy directory when it changes (polled). A set that does
/// not validate is refused and logged; the active set stays.
pub async fn watch_policy_dir(app: AppState) {
    let dir = app.authz.policy_dir.clone();
    let mut seen = fingerprint(&dir);
    let mut tick = tokio::time::interval(app.authz_settings.policy_poll);
    loop {
        tick.tick().await;
        let now = fingerprint(&dir);
        if now == seen {
            continue;
        }
        seen = now;
        match app.authz.engine.reload_from_dir(&dir) {
            Ok(set) => {
                tracing::info!(policies = set.len(), dir = %dir.display(), "policies reloaded")
            }
            Err(e) => {
                app.metrics.policy_reload_failures.inc();
                tracing::error!(error = %e, dir = %dir.display(), "policy change refused; the previous policies stay active");
            }
        }
    }
}
