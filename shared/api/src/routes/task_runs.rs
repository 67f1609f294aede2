//! Task runs (`/task_runs`, `/task_run_states`, Prefect's `server/api/task_runs.py` and
//! `task_run_states.py`): create (the parent task run of a subflow, older clients' task runs),
//! read, filter, count, paginate, rename, set a state, delete; and a run's state history.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use sluice_core::domain::Id;
use sluice_services::TaskRunInput;
use sluice_store::{FlowRunFilter, FlowRunSort, TaskRunSort};

use crate::AppState;
use crate::dto::filters::{TaskRunQuery, only_keys, page, run_query, task_run_query};
use crate::dto::runs::SetStateBody;
use crate::dto::task_runs::{TaskRunCreate, task_run_json, task_run_state_json};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, PathId};

const FILTER_KEYS: [&str; 8] = [
    "task_runs",
    "flow_runs",
    "flows",
    "deployments",
    "sort",
    "limit",
    "offset",
    "page",
];

/// The store filter of a task-run query, its flow-run and subflow criteria resolved to ids.
pub(crate) async fn resolve(
    app: &AppState,
    q: &TaskRunQuery,
) -> ApiResult<sluice_store::TaskRunFilter> {
    let mut filter = q.filter.clone();
    if let Some(criteria) = &q.run_criteria {
        let runs = crate::routes::flow_runs::resolve(app, run_query(criteria)?).await?;
        let ids: Vec<Id> = app
            .services
            .store
            .list_flow_runs(&runs.filter, FlowRunSort::IdDesc, None, 0)
            .await?
            .into_iter()
            .map(|r| r.id)
            .collect();
        filter.flow_run_ids = Some(match filter.flow_run_ids.take() {
            Some(mine) => mine.into_iter().filter(|i| ids.contains(i)).collect(),
            None => ids,
        });
    }
    if let Some(exists) = q.subflow_runs {
        // The task runs that stand for a subflow: some flow run names them as its parent.
        let candidates: Vec<Id> = app
            .services
            .list_task_runs(&filter, TaskRunSort::IdDesc, None, 0)
            .await?
            .into_iter()
            .map(|t| t.id)
            .collect();
        let parents: Vec<Id> = if candidates.is_empty() {
            Vec::new()
        } else {
            let subflows = FlowRunFilter {
                parent_task_run_ids: Some(candidates.clone()),
                ..Default::default()
            };
            app.services
                .store
                .list_flow_runs(&subflows, FlowRunSort::IdDesc, None, 0)
                .await?
                .into_iter()
                .filter_map(|r| r.parent_task_run_id)
                .collect()
        };
        filter.ids = Some(
            candidates
                .into_iter()
                .filter(|id| parents.contains(id) == exists)
                .collect(),
        );
    }
    Ok(filter)
}

pub async fn create(
    State(app): State<AppState>,
    Body(body): Body<Value>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let create = TaskRunCreate::parse(body)?;
    let now = app.services.now();
    let (run, created) = app
        .services
        .create_task_run(TaskRunInput {
            id: create.id,
            flow_run_id: create.flow_run_id,
            fields: create.fields,
            state: create.state.map(|s| s.into_state(now)),
        })
        .await?;
    let code = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((code, Json(task_run_json(&run, now))))
}

pub async fn read(State(app): State<AppState>, PathId(id): PathId) -> ApiResult<Json<Value>> {
    let run = app.services.read_task_run(id).await?;
    Ok(Json(task_run_json(&run, app.services.now())))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskRunUpdate {
    #[serde(default)]
    name: Option<String>,
}

pub async fn update(
    State(app): State<AppState>,
    PathId(id): PathId,
    Body(body): Body<TaskRunUpdate>,
) -> ApiResult<StatusCode> {
    match body.name {
        Some(name) => app.services.rename_task_run(id, name).await?,
        None => {
            app.services.read_task_run(id).await?;
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

pub async fn remove(State(app): State<AppState>, PathId(id): PathId) -> ApiResult<StatusCode> {
    app.services.delete_task_run(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn filter(
    State(app): State<AppState>,
    Body(body): Body<Value>,
) -> ApiResult<Json<Vec<Value>>> {
    only_keys(&body, &FILTER_KEYS)?;
    let q = task_run_query(&body)?;
    let filter = resolve(&app, &q).await?;
    let runs = app
        .services
        .list_task_runs(&filter, q.sort, Some(q.limit), q.offset)
        .await?;
    let now = app.services.now();
    Ok(Json(runs.iter().map(|r| task_run_json(r, now)).collect()))
}

pub async fn count(State(app): State<AppState>, Body(body): Body<Value>) -> ApiResult<Json<usize>> {
    only_keys(&body, &FILTER_KEYS)?;
    let q = task_run_query(&body)?;
    let filter = resolve(&app, &q).await?;
    Ok(Json(app.services.count_task_runs(&filter).await?))
}

/// `POST /task_runs/paginate`: `page` (from 1) and `limit` instead of an offset.
pub async fn paginate(
    State(app): State<AppState>,
    Body(body): Body<Value>,
) -> ApiResult<Json<Value>> {
    only_keys(&body, &FILTER_KEYS)?;
    let paged = page(&body)?;
    let q = task_run_query(&body)?;
    let filter = resolve(&app, &q).await?;
    let total = app.services.count_task_runs(&filter).await?;
    let runs = app
        .services
        .list_task_runs(&filter, q.sort, Some(paged.limit), paged.offset)
        .await?;
    let now = app.services.now();
    Ok(Json(paged.answer(
        runs.iter().map(|r| task_run_json(r, now)).collect(),
        total,
    )))
}

/// Accepted as proposed (Prefect 3's engine reports task-run states as events; this serves
/// older clients), answered in Prefect's orchestration-result shape.
pub async fn set_state(
    State(app): State<AppState>,
    PathId(id): PathId,
    Body(body): Body<SetStateBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let state = body.state.into_state(app.services.now());
    let run = app.services.set_task_run_state(id, state).await?;
    let state = run.state.as_ref().map(|s| task_run_state_json(s, &run));
    Ok((
        StatusCode::CREATED,
        Json(json!({"status": "ACCEPT", "state": state, "details": {"type": "accept_details"}})),
    ))
}

/// `GET /task_run_states/?task_run_id=...`: the run's states, oldest first.
pub async fn states(
    State(app): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Vec<Value>>> {
    let location = || vec![Value::from("query"), Value::from("task_run_id")];
    let raw = q
        .get("task_run_id")
        .ok_or_else(|| ApiError::invalid_field(location(), "Field required: task_run_id"))?;
    let id = raw.parse().map_err(|_| {
        ApiError::invalid_field(
            location(),
            format!("Input should be a valid UUID, got {raw:?}"),
        )
    })?;
    let run = app.services.read_task_run(id).await;
    let states = app.services.task_run_states(id).await?;
    Ok(Json(match run {
        Ok(run) => states
            .iter()
            .map(|s| task_run_state_json(s, &run))
            .collect(),
        Err(_) => Vec::new(),
    }))
}

/// `POST /task_runs/history`: runs per interval and state, by when they were expected to start.
pub async fn history(
    State(app): State<AppState>,
    Body(body): Body<Value>,
) -> ApiResult<Json<Vec<Value>>> {
    only_keys(
        &body,
        &[
            "history_start",
            "history_end",
            "history_interval_seconds",
            "task_runs",
            "flow_runs",
            "flows",
            "deployments",
        ],
    )?;
    let time = |key: &str| -> ApiResult<sluice_core::domain::Timestamp> {
        body.get(key)
            .and_then(Value::as_str)
            .and_then(sluice_core::time::parse_timestamp)
            .ok_or_else(|| {
                ApiError::invalid_field(vec!["body".into(), key.into()], "a datetime is required")
            })
    };
    let (start, end) = (time("history_start")?, time("history_end")?);
    let interval = body
        .get("history_interval_seconds")
        .and_then(Value::as_f64)
        .ok_or_else(|| {
            ApiError::invalid_field(
                vec!["body".into(), "history_interval_seconds".into()],
                "a number of seconds is required",
            )
        })?;
    let q = task_run_query(&json!({
        "task_runs": body.get("task_runs"),
        "flow_runs": body.get("flow_runs"),
        "flows": body.get("flows"),
        "deployments": body.get("deployments"),
    }))?;
    let mut filter = resolve(&app, &q).await?;
    filter.expected_start_time_after = Some(start);
    let runs = app
        .services
        .list_task_runs(&filter, TaskRunSort::IdDesc, None, 0)
        .await?;
    let now = app.services.now();
    let history = sluice_core::task_runs::run_history(&runs, start, end, interval, now)
        .map_err(ApiError::unprocessable)?;
    Ok(Json(
        history
            .iter()
            .map(|h| {
                json!({
                    "interval_start": crate::dto::ts(h.start),
                    "interval_end": crate::dto::ts(h.end),
                    "states": h.states.iter().map(|s| json!({
                        "state_type": s.state_type.as_str(),
                        "state_name": s.state_name,
                        "count_runs": s.count_runs,
                        "sum_estimated_run_time": s.sum_estimated_run_time,
                        "sum_estimated_lateness": s.sum_estimated_lateness,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect(),
    ))
}
