//! `/flow_runs/...` and `/flow_run_states/`.

use std::collections::HashMap;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde_json::{Value, json};
use sluice_core::domain::{Id, JsonMap};
use sluice_core::orchestration::SetStateStatus;
use sluice_services::{FlowRunInput, FlowRunPatch};

use crate::AppState;
use crate::dto::filters::{RunQuery, only_keys, run_query};
use crate::dto::runs::{
    FlowRunCreate, FlowRunUpdate, OrchestrationResultResponse, SetStateBody, flow_run_json,
    state_json,
};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, PathId};

pub async fn create(
    State(app): State<AppState>,
    Body(body): Body<FlowRunCreate>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let now = app.services.now();
    let out = app
        .services
        .create_flow_run(FlowRunInput {
            flow_id: Some(body.flow_id),
            name: body.name,
            state: body.state.map(|s| s.into_state(now)),
            parameters: body.parameters,
            context: body.context,
            tags: body.tags,
            labels: body.labels.unwrap_or_default(),
            idempotency_key: body.idempotency_key,
            parent_task_run_id: body.parent_task_run_id,
            work_pool_name: body.work_pool_name,
            work_queue_name: body.work_queue_name,
            job_variables: body.job_variables,
            empirical_policy: body.empirical_policy.unwrap_or_default(),
            flow_version: body.flow_version,
            deployment_id: body.deployment_id,
            deployment_version: body.deployment_version,
        })
        .await?;
    let status = if out.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(flow_run_json(&out.value))))
}

pub async fn read(State(app): State<AppState>, PathId(id): PathId) -> ApiResult<Json<Value>> {
    Ok(Json(flow_run_json(
        &app.services.read_flow_run(id).await?.value,
    )))
}

/// Turns flow and deployment criteria into id lists the run filter understands.
async fn resolve(app: &AppState, mut q: RunQuery) -> ApiResult<RunQuery> {
    let f = &q.flows;
    if f.ids.is_some() || f.names.is_some() || f.name_like.is_some() || f.tags_all.is_some() {
        let ids: Vec<Id> = app
            .services
            .store
            .list_flows(f, None, 0)
            .await?
            .into_iter()
            .map(|f| f.id)
            .collect();
        q.filter.flow_ids = Some(intersect(q.filter.flow_ids.take(), ids));
    }
    let d = &q.deployments;
    if d.ids.is_some()
        || d.names.is_some()
        || d.name_like.is_some()
        || d.tags_all.is_some()
        || d.paused.is_some()
        || d.work_queue_ids.is_some()
    {
        let ids: Vec<Id> = app
            .services
            .store
            .list_deployments(d, None, 0)
            .await?
            .into_iter()
            .map(|d| d.id)
            .collect();
        q.filter.deployment_ids = Some(intersect(q.filter.deployment_ids.take(), ids));
    }
    Ok(q)
}

fn intersect(existing: Option<Vec<Id>>, more: Vec<Id>) -> Vec<Id> {
    match existing {
        Some(e) => e.into_iter().filter(|id| more.contains(id)).collect(),
        None => more,
    }
}

const FILTER_KEYS: &[&str] = &[
    "flows",
    "flow_runs",
    "task_runs",
    "deployments",
    "work_pools",
    "work_pool_queues",
    "sort",
    "limit",
    "offset",
];

pub async fn filter(
    State(app): State<AppState>,
    Body(body): Body<Value>,
) -> ApiResult<Json<Vec<Value>>> {
    only_keys(&body, FILTER_KEYS)?;
    reject_task_runs(&body)?;
    let q = resolve(&app, run_query(&body)?).await?;
    let runs = app
        .services
        .list_flow_runs(&q.filter, q.sort, q.limit, q.offset)
        .await?;
    Ok(Json(runs.iter().map(flow_run_json).collect()))
}

pub async fn count(State(app): State<AppState>, Body(body): Body<Value>) -> ApiResult<Json<usize>> {
    only_keys(&body, FILTER_KEYS)?;
    reject_task_runs(&body)?;
    let q = resolve(&app, run_query(&body)?).await?;
    Ok(Json(app.services.store.count_flow_runs(&q.filter).await?))
}

fn reject_task_runs(body: &Value) -> ApiResult<()> {
    if body.get("task_runs").is_some_and(|v| !v.is_null()) {
        return Err(ApiError::invalid_field(
            vec!["body".into(), "task_runs".into()],
            "filtering flow runs by task runs is not supported",
        ));
    }
    Ok(())
}

pub async fn update(
    State(app): State<AppState>,
    PathId(id): PathId,
    Body(body): Body<FlowRunUpdate>,
) -> ApiResult<StatusCode> {
    app.services
        .update_flow_run(
            id,
            FlowRunPatch {
                name: body.name,
                parameters: body.parameters,
                tags: body.tags,
                infrastructure_pid: body.infrastructure_pid,
                job_variables: body.job_variables,
                empirical_policy: body.empirical_policy,
                flow_version: body.flow_version.map(Some),
                labels_merge: None,
            },
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn update_labels(
    State(app): State<AppState>,
    PathId(id): PathId,
    Body(labels): Body<JsonMap>,
) -> ApiResult<StatusCode> {
    app.services
        .update_flow_run(
            id,
            FlowRunPatch {
                labels_merge: Some(labels),
                ..Default::default()
            },
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn remove(State(app): State<AppState>, PathId(id): PathId) -> ApiResult<StatusCode> {
    app.services.delete_flow_run(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn set_state(
    State(app): State<AppState>,
    PathId(id): PathId,
    Body(body): Body<SetStateBody>,
) -> ApiResult<(StatusCode, Json<OrchestrationResultResponse>)> {
    let state = body.state.into_state(app.services.now());
    let result = if body.claim && !body.force {
        app.services.claim_flow_run(id, state).await?
    } else {
        app.services
            .set_flow_run_state(id, state, body.force)
            .await?
    };
    let (status, details) = match result.status {
        SetStateStatus::Accept => ("ACCEPT", json!({ "type": "accept_details" })),
        SetStateStatus::Reject => (
            "REJECT",
            json!({ "type": "reject_details", "reason": result.reason }),
        ),
        SetStateStatus::Abort => (
            "ABORT",
            json!({ "type": "abort_details", "reason": result.reason }),
        ),
        SetStateStatus::Wait => (
            "WAIT",
            json!({ "type": "wait_details", "delay_seconds": result.delay_seconds.unwrap_or(0), "reason": result.reason }),
        ),
    };
    let code = if result.committed {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        code,
        Json(OrchestrationResultResponse {
            state: result.state.as_ref().map(|s| state_json(s, id)),
            status,
            details,
        }),
    ))
}

/// `GET /flow_run_states/?flow_run_id=...`: a required UUID query parameter. A missing or
/// malformed one is FastAPI's 422 located at `["query", "flow_run_id"]`.
pub async fn states(
    State(app): State<AppState>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> ApiResult<Json<Vec<Value>>> {
    let location = || vec![Value::from("query"), Value::from("flow_run_id")];
    let raw = query
        .ok()
        .and_then(|Query(mut q)| q.remove("flow_run_id"))
        .ok_or_else(|| ApiError::invalid_field(location(), "Field required: flow_run_id"))?;
    let id: Id = raw.parse().map_err(|_| {
        ApiError::invalid_field(
            location(),
            format!("Input should be a valid UUID, got {raw:?}"),
        )
    })?;
    let states = app.services.store.read_flow_run_states(id).await?;
    Ok(Json(states.iter().map(|s| state_json(s, id)).collect()))
}
