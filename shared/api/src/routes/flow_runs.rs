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
use crate::dto::filters::{RunQuery, only_keys, page, run_query};
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

/// Turns flow, deployment and parent-run criteria into id lists the run filter understands.
pub(crate) async fn resolve(app: &AppState, mut q: RunQuery) -> ApiResult<RunQuery> {
    if let Some(parents) = q.parent_flow_run_ids.take() {
        // A subflow run points at the task run that stands for it inside its parent run.
        let tasks = sluice_store::TaskRunFilter {
            flow_run_ids: Some(parents),
            ..Default::default()
        };
        let ids: Vec<Id> = app
            .services
            .list_task_runs(&tasks, sluice_store::TaskRunSort::IdDesc, None, 0)
            .await?
            .into_iter()
            .map(|t| t.id)
            .collect();
        q.filter.parent_task_run_ids = Some(intersect(q.filter.parent_task_run_ids.take(), ids));
    }
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

/// `POST /flow_runs/paginate`: `page` (from 1) and `limit`, answered with the page count.
pub async fn paginate(
    State(app): State<AppState>,
    Body(body): Body<Value>,
) -> ApiResult<Json<Value>> {
    let mut keys = FILTER_KEYS.to_vec();
    keys.retain(|k| *k != "offset");
    keys.push("page");
    only_keys(&body, &keys)?;
    reject_task_runs(&body)?;
    let paged = page(&body)?;
    let mut q = resolve(&app, run_query(&body)?).await?;
    q.offset = paged.offset;
    let total = app.services.store.count_flow_runs(&q.filter).await?;
    let runs = app
        .services
        .list_flow_runs(&q.filter, q.sort, paged.limit, paged.offset)
        .await?;
    Ok(Json(
        paged.answer(runs.iter().map(flow_run_json).collect(), total),
    ))
}

/// A count ignores the order and page a list request would carry.
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

/// `GET /flow_runs/{id}/graph-v2[?since=...]`: the run's task runs and subflows as the UI's
/// graph draws them (rules in `sluice_core::graph`).
pub async fn graph(
    State(app): State<AppState>,
    PathId(id): PathId,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let since = match query.get("since") {
        None => None,
        Some(raw) => Some(sluice_core::time::parse_timestamp(raw).ok_or_else(|| {
            ApiError::invalid_field(
                vec!["query".into(), "since".into()],
                format!("Input should be a valid datetime, got {raw:?}"),
            )
        })?),
    };
    let run = app.services.read_flow_run(id).await?.value;
    let tasks = app
        .services
        .list_task_runs(
            &sluice_store::TaskRunFilter {
                flow_run_ids: Some(vec![id]),
                ..Default::default()
            },
            sluice_store::TaskRunSort::IdDesc,
            None,
            0,
        )
        .await?;
    let subflow_runs = if tasks.is_empty() {
        Vec::new()
    } else {
        app.services
            .store
            .list_flow_runs(
                &sluice_store::FlowRunFilter {
                    parent_task_run_ids: Some(tasks.iter().map(|t| t.id).collect()),
                    ..Default::default()
                },
                sluice_store::FlowRunSort::IdDesc,
                None,
                0,
            )
            .await?
    };
    let mut flow_names: HashMap<Id, String> = HashMap::new();
    let mut subflows = Vec::with_capacity(subflow_runs.len());
    for sub in subflow_runs {
        let name = match flow_names.get(&sub.flow_id) {
            Some(name) => name.clone(),
            None => {
                let name = app
                    .services
                    .store
                    .read_flow(sub.flow_id)
                    .await?
                    .map(|f| f.name)
                    .unwrap_or_default();
                flow_names.insert(sub.flow_id, name.clone());
                name
            }
        };
        subflows.push((sub, name));
    }
    let artifacts = app
        .services
        .store
        .list_artifacts(&sluice_store::ArtifactFilter {
            flow_run_ids: Some(vec![id]),
            ..Default::default()
        })
        .await?;
    let mut latest_of_key = HashMap::new();
    for key in artifacts.iter().filter_map(|a| a.key.clone()) {
        if latest_of_key.contains_key(&key) {
            continue;
        }
        let newest = app
            .services
            .store
            .list_artifacts(&sluice_store::ArtifactFilter {
                keys: Some(vec![key.clone()]),
                ..Default::default()
            })
            .await?;
        if let Some(first) = newest.first() {
            latest_of_key.insert(key, first.id);
        }
    }
    let graph = sluice_core::graph::build(&sluice_core::graph::GraphInput {
        run: &run,
        task_runs: &tasks,
        subflows: &subflows,
        artifacts: &artifacts,
        latest_of_key: &latest_of_key,
        since,
        max_nodes: sluice_core::graph::MAX_NODES,
    })
    .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let states = app.services.store.read_flow_run_states(id).await?;
    Ok(Json(crate::dto::runs::graph_json(&graph, &states)))
}

/// `POST /flow_runs/lateness`: the average lateness, in seconds, of the runs the filter
/// selects (null when it selects none).
pub async fn lateness(
    State(app): State<AppState>,
    Body(body): Body<Value>,
) -> ApiResult<Json<Value>> {
    only_keys(&body, FILTER_KEYS)?;
    reject_task_runs(&body)?;
    let q = resolve(&app, run_query(&body)?).await?;
    let runs = app
        .services
        .store
        .list_flow_runs(&q.filter, q.sort, None, 0)
        .await?;
    if runs.is_empty() {
        return Ok(Json(Value::Null));
    }
    let now = app.services.now();
    let total: f64 = runs.iter().map(|r| r.estimated_start_time_delta(now)).sum();
    Ok(Json(json!(total / runs.len() as f64)))
}

/// `POST /ui/flow_runs/history`: the runs the filter selects, each as its state, time,
/// duration and lateness (Prefect's `SimpleFlowRun`), for the UI's run charts.
pub async fn history(
    State(app): State<AppState>,
    Body(body): Body<Value>,
) -> ApiResult<Json<Value>> {
    only_keys(&body, FILTER_KEYS)?;
    reject_task_runs(&body)?;
    let mut body = body;
    // Prefect's defaults for this route: newest expected first, up to 1000.
    if body.get("sort").is_none_or(Value::is_null) {
        body["sort"] = json!("EXPECTED_START_TIME_DESC");
    }
    let limit = match body.get("limit") {
        None | Some(Value::Null) => 1000,
        Some(v) => match v.as_u64() {
            Some(n) if n <= 1000 => n as usize,
            _ => {
                return Err(ApiError::invalid_field(
                    vec!["body".into(), "limit".into()],
                    "limit must be an integer from 0 to 1000",
                ));
            }
        },
    };
    if let Some(obj) = body.as_object_mut() {
        obj.remove("limit");
    }
    let q = resolve(&app, run_query(&body)?).await?;
    let runs = app
        .services
        .list_flow_runs(&q.filter, q.sort, limit, q.offset)
        .await?;
    let now = app.services.now();
    Ok(Json(Value::Array(
        runs.iter()
            .map(|r| {
                json!({
                    "id": r.id,
                    "state_type": r.state_type().map(sluice_core::domain::StateType::as_str),
                    "timestamp": crate::dto::ts_opt(r.start_time.or(r.expected_start_time)),
                    "duration": r.estimated_run_time(now),
                    "lateness": r.estimated_start_time_delta(now),
                })
            })
            .collect(),
    )))
}
