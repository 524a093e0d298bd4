//! Owners, workloads, workflows and runs.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use leash_core::scope::Scope;
use leash_core::{Environment, OwnerKind, RunState};
use leash_store::{NewOwner, NewWorkflow, NewWorkload};
use serde::Deserialize;
use utoipa::IntoParams;

use super::dto::*;
use super::{ApiJson, ApiQuery, MAX_LIST};
use crate::AppState;
use crate::error::{ApiError, ApiResult, Problem};

/// Audit actor for operator calls.
pub const OPERATOR: &str = "operator";

fn parse_enum<T: std::str::FromStr<Err = leash_core::InvalidInput>>(s: &str) -> ApiResult<T> {
    s.parse()
        .map_err(|e: leash_core::InvalidInput| ApiError::bad_request(e.to_string()))
}

/// Parse scope strings, naming the first bad one.
pub fn parse_scopes(list: &[String], max: usize) -> ApiResult<Vec<Scope>> {
    if list.len() > max {
        return Err(ApiError::bad_request(format!(
            "too many scopes ({}); at most {max}",
            list.len()
        )));
    }
    list.iter()
        .map(|s| {
            s.parse::<Scope>()
                .map_err(|e| ApiError::bad_request(e.to_string()).with_oauth("invalid_scope"))
        })
        .collect()
}

/// Digest from a definition text or a given hex digest.
fn digest_of(definition: Option<String>, digest: Option<String>) -> ApiResult<String> {
    match (definition, digest) {
        (Some(d), None) => Ok(hex::encode(leash_token::sha256(d.as_bytes()))),
        (None, Some(h)) => Ok(h.to_ascii_lowercase()),
        (Some(_), Some(_)) => Err(ApiError::bad_request(
            "give either `definition` or `digest`, not both",
        )),
        (None, None) => Err(ApiError::bad_request(
            "a workflow needs its definition: give `definition` (the text) or `digest` (hex SHA-256)",
        )),
    }
}

#[utoipa::path(post, path = "/v1/owners", tag = "registry", request_body = CreateOwner,
    responses((status = 201, body = OwnerView), (status = 400, body = Problem), (status = 409, body = Problem)))]
pub async fn create_owner(
    State(app): State<AppState>,
    ApiJson(b): ApiJson<CreateOwner>,
) -> ApiResult<(StatusCode, Json<OwnerView>)> {
    let kind = match b.kind.as_deref() {
        None => OwnerKind::Person,
        Some(k) => parse_enum(k)?,
    };
    let o = app
        .store
        .create_owner(
            NewOwner {
                name: b.name,
                email: b.email,
                kind,
                business_owner: b.business_owner,
            },
            OPERATOR,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(OwnerView::from(&o))))
}

#[utoipa::path(get, path = "/v1/owners", tag = "registry", responses((status = 200, body = [OwnerView])))]
pub async fn list_owners(State(app): State<AppState>) -> Json<Vec<OwnerView>> {
    Json(
        app.store
            .registry()
            .read()
            .owners()
            .into_iter()
            .map(OwnerView::from)
            .collect(),
    )
}

#[utoipa::path(get, path = "/v1/owners/{name}", tag = "registry", responses((status = 200, body = OwnerView), (status = 404, body = Problem)))]
pub async fn get_owner(
    State(app): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<OwnerView>> {
    let reg = app.store.registry().read();
    reg.owner_by_name(&name)
        .map(|o| Json(OwnerView::from(o)))
        .ok_or_else(|| ApiError::not_found(format!("owner `{name}` does not exist")))
}

#[utoipa::path(post, path = "/v1/owners/{name}/offboard", tag = "registry",
    responses((status = 200, body = OwnerOffboarded), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn offboard_owner(
    State(app): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<OwnerOffboarded>> {
    let (o, revoked) = app.store.offboard_owner_and_revoke(&name, OPERATOR).await?;
    app.metrics.revoked(&revoked);
    Ok(Json(OwnerOffboarded {
        owner: OwnerView::from(&o),
        revoked: revoked.into(),
    }))
}

#[utoipa::path(post, path = "/v1/workloads", tag = "registry", request_body = CreateWorkload,
    responses((status = 201, body = WorkloadView), (status = 400, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn create_workload(
    State(app): State<AppState>,
    ApiJson(b): ApiJson<CreateWorkload>,
) -> ApiResult<(StatusCode, Json<WorkloadView>)> {
    let environment: Environment = parse_enum(&b.environment)?;
    let scope_ceiling = parse_scopes(&b.scope_ceiling, 64)?;
    let w = app
        .store
        .create_workload(
            NewWorkload {
                name: b.name,
                owner: b.owner,
                identity: b.identity,
                environment,
                scope_ceiling,
            },
            OPERATOR,
        )
        .await?;
    let view = WorkloadView::new(&w, &app.store.registry().read());
    Ok((StatusCode::CREATED, Json(view)))
}

#[utoipa::path(get, path = "/v1/workloads", tag = "registry", responses((status = 200, body = [WorkloadView])))]
pub async fn list_workloads(State(app): State<AppState>) -> Json<Vec<WorkloadView>> {
    let reg = app.store.registry().read();
    Json(
        reg.workloads()
            .into_iter()
            .map(|w| WorkloadView::new(w, &reg))
            .collect(),
    )
}

#[utoipa::path(get, path = "/v1/workloads/{name}", tag = "registry", responses((status = 200, body = WorkloadView), (status = 404, body = Problem)))]
pub async fn get_workload(
    State(app): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<WorkloadView>> {
    let reg = app.store.registry().read();
    reg.workload_by_name(&name)
        .map(|w| Json(WorkloadView::new(w, &reg)))
        .ok_or_else(|| ApiError::not_found(format!("workload `{name}` does not exist")))
}

#[utoipa::path(post, path = "/v1/workflows", tag = "registry", request_body = CreateWorkflow,
    responses((status = 201, body = WorkflowView), (status = 400, body = Problem), (status = 409, body = Problem)))]
pub async fn create_workflow(
    State(app): State<AppState>,
    ApiJson(b): ApiJson<CreateWorkflow>,
) -> ApiResult<(StatusCode, Json<WorkflowView>)> {
    let digest = digest_of(b.definition, b.digest)?;
    let w = app
        .store
        .create_workflow(
            NewWorkflow {
                name: b.name,
                owner: b.owner,
                digest,
                tools: b.tools,
            },
            OPERATOR,
        )
        .await?;
    let view = WorkflowView::new(&w, &app.store.registry().read());
    Ok((StatusCode::CREATED, Json(view)))
}

#[utoipa::path(put, path = "/v1/workflows/{name}", tag = "registry", request_body = UpdateWorkflow,
    responses((status = 200, body = WorkflowUpdated, description = "Updated; tokens of runs on the old definition were revoked"), (status = 404, body = Problem)))]
pub async fn update_workflow(
    State(app): State<AppState>,
    Path(name): Path<String>,
    ApiJson(b): ApiJson<UpdateWorkflow>,
) -> ApiResult<Json<WorkflowUpdated>> {
    let digest = digest_of(b.definition, b.digest)?;
    let (w, revoked) = app
        .store
        .update_workflow_and_revoke(&name, digest, b.tools, OPERATOR)
        .await?;
    app.metrics.revoked(&revoked);
    // removability verdicts were computed against the old definition
    crate::api::review::rerun_for_workflow(&app, w.id).await;
    app.review.forget().await; // cached declared tools may have changed
    let view = WorkflowView::new(&w, &app.store.registry().read());
    Ok(Json(WorkflowUpdated {
        workflow: view,
        revoked: revoked.into(),
    }))
}

#[utoipa::path(get, path = "/v1/workflows", tag = "registry", responses((status = 200, body = [WorkflowView])))]
pub async fn list_workflows(State(app): State<AppState>) -> Json<Vec<WorkflowView>> {
    let reg = app.store.registry().read();
    Json(
        reg.workflows()
            .into_iter()
            .map(|w| WorkflowView::new(w, &reg))
            .collect(),
    )
}

#[utoipa::path(get, path = "/v1/workflows/{name}", tag = "registry", responses((status = 200, body = WorkflowView), (status = 404, body = Problem)))]
pub async fn get_workflow(
    State(app): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<WorkflowView>> {
    let reg = app.store.registry().read();
    reg.workflow_by_name(&name)
        .map(|w| Json(WorkflowView::new(w, &reg)))
        .ok_or_else(|| ApiError::not_found(format!("workflow `{name}` does not exist")))
}

#[utoipa::path(post, path = "/v1/runs", tag = "runs", request_body = StartRun,
    responses((status = 201, body = RunView), (status = 404, body = Problem)))]
pub async fn start_run(
    State(app): State<AppState>,
    ApiJson(b): ApiJson<StartRun>,
) -> ApiResult<(StatusCode, Json<RunView>)> {
    let r = app
        .store
        .start_run(&b.workflow, &b.workload, OPERATOR)
        .await?;
    crate::api::review::arm_canary(&app, &r).await?;
    let view = RunView::new(&r, &app.store.registry().read());
    Ok((StatusCode::CREATED, Json(view)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RunQuery {
    /// Only runs of this workflow.
    pub workflow: Option<String>,
    /// At most this many (default 100, max 1000).
    pub limit: Option<u32>,
}

#[utoipa::path(get, path = "/v1/runs", tag = "runs", params(RunQuery), responses((status = 200, body = [RunView])))]
pub async fn list_runs(
    State(app): State<AppState>,
    ApiQuery(q): ApiQuery<RunQuery>,
) -> ApiResult<Json<Vec<RunView>>> {
    let wf = match &q.workflow {
        None => None,
        Some(name) => Some(
            app.store
                .registry()
                .read()
                .workflow_by_name(name)
                .map(|w| w.id)
                .ok_or_else(|| ApiError::not_found(format!("workflow `{name}` does not exist")))?,
        ),
    };
    let runs = app
        .store
        .list_runs(wf, q.limit.unwrap_or(100).min(MAX_LIST))
        .await?;
    let reg = app.store.registry().read();
    Ok(Json(runs.iter().map(|r| RunView::new(r, &reg)).collect()))
}

#[utoipa::path(get, path = "/v1/runs/{id}", tag = "runs", responses((status = 200, body = RunView), (status = 404, body = Problem)))]
pub async fn get_run(State(app): State<AppState>, Path(id): Path<i64>) -> ApiResult<Json<RunView>> {
    let r = app.store.get_run(id).await?;
    Ok(Json(RunView::new(&r, &app.store.registry().read())))
}

#[utoipa::path(post, path = "/v1/runs/{id}/end", tag = "runs", request_body = EndRun,
    responses((status = 200, body = RunEnded, description = "Ended; every live token of the run and its descendants revoked in the same transaction"), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn end_run(
    State(app): State<AppState>,
    Path(id): Path<i64>,
    ApiJson(b): ApiJson<EndRun>,
) -> ApiResult<Json<RunEnded>> {
    let state: RunState = parse_enum(&b.status)?;
    if state == RunState::Running {
        return Err(ApiError::bad_request(
            "a run ends as `succeeded`, `failed` or `cancelled`",
        ));
    }
    let (r, revoked) = app.store.end_run_and_revoke(id, state, OPERATOR).await?;
    app.metrics.revoked(&revoked);
    crate::api::review::finish_canary(&app, &r).await?;
    let view = RunView::new(&r, &app.store.registry().read());
    Ok(Json(RunEnded {
        run: view,
        revoked: revoked.into(),
    }))
}
