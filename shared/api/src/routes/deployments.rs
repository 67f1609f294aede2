//! `/deployments/...`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::Value;
use sluice_core::domain::{Id, StateType};
use sluice_store::{DeploymentSort, FlowFilter, FlowRunFilter, FlowRunSort};

use crate::AppState;
use crate::dto::deployments::{
    DeploymentCreate, DeploymentFlowRunCreate, DeploymentUpdate, ScheduleCreate, ScheduleUpdate,
    deployment_json, schedule_json, schedules_input,
};
use crate::dto::filters::{
    deployment_filter, flow_filter, only_keys, page, paging, take_flow_or_deployment_name,
    work_pool_filter,
};
use crate::dto::runs::flow_run_json;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, PathId};

fn invalid((location, message): (Vec<Value>, String)) -> ApiError {
    ApiError::invalid_field(location, message)
}

/// Checks Prefect makes in its pydantic models, so the answer is a request-validation error
/// located at the field: names without `/ % & > <` (`Name`), `concurrency_limit` a
/// `PositiveInteger` (reference, "Conventions for every endpoint"; §7.1).
fn check_name(name: &str) -> ApiResult<()> {
    sluice_core::domain::validate_name(name)
        .map_err(|e| ApiError::invalid_field(vec!["body".into(), "name".into()], e.to_string()))
}

fn check_concurrency_limit(limit: Option<i64>) -> ApiResult<()> {
    match limit {
        Some(l) if l < 1 => Err(ApiError::invalid_field(
            vec!["body".into(), "concurrency_limit".into()],
            format!("concurrency_limit must be greater than 0, got {l}"),
        )),
        _ => Ok(()),
    }
}

pub async fn create(
    State(app): State<AppState>,
    Body(body): Body<DeploymentCreate>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    check_name(&body.name)?;
    check_concurrency_limit(body.concurrency_limit)?;
    let input = body.into_input().map_err(invalid)?;
    let out = app.services.upsert_deployment(input).await?;
    let status = if out.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(with_slots(&app, &out.value).await?)))
}

pub async fn read(State(app): State<AppState>, PathId(id): PathId) -> ApiResult<Json<Value>> {
    let d = app.services.read_deployment(id).await?;
    Ok(Json(with_slots(&app, &d).await?))
}

pub async fn read_by_name(
    State(app): State<AppState>,
    Path((flow, name)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let d = app.services.read_deployment_by_name(&flow, &name).await?;
    Ok(Json(with_slots(&app, &d).await?))
}

/// A deployment's answer; with a concurrency limit, the slots its active runs hold.
async fn with_slots(app: &AppState, d: &sluice_core::domain::Deployment) -> ApiResult<Value> {
    let slots = match d.concurrency_limit {
        Some(_) => {
            let filter = FlowRunFilter {
                deployment_ids: Some(vec![d.id]),
                state_types: Some(vec![
                    StateType::Pending,
                    StateType::Running,
                    StateType::Cancelling,
                ]),
                ..Default::default()
            };
            Some(app.services.store.count_flow_runs(&filter).await?)
        }
        None => None,
    };
    Ok(deployment_json(d, slots))
}

async fn resolve_filter(app: &AppState, body: &Value) -> ApiResult<sluice_store::DeploymentFilter> {
    // Filters on related objects Sluice does not apply to deployments are refused, not ignored
    // (an ignored filter answers with the wrong rows). The stock client sends them as null.
    for key in ["flow_runs", "task_runs", "work_pool_queues"] {
        if body.get(key).is_some_and(|v| !v.is_null()) {
            return Err(ApiError::invalid_field(
                vec!["body".into(), key.into()],
                format!("filtering deployments by {key} is not supported"),
            ));
        }
    }
    let mut body = body.clone();
    let searched = take_flow_or_deployment_name(&mut body)?;
    let body = &body;
    let mut filter = deployment_filter(body.get("deployments"))?;
    if let Some(text) = searched {
        // Prefect's search box: the deployment's name or its flow's name holds the text.
        let by_flow = FlowFilter {
            name_like: Some(text.clone()),
            ..FlowFilter::default()
        };
        let flow_ids: Vec<Id> = app
            .services
            .store
            .list_flows(&by_flow, None, 0)
            .await?
            .into_iter()
            .map(|f| f.id)
            .collect();
        let mut ids: Vec<Id> = Vec::new();
        for f in [
            sluice_store::DeploymentFilter {
                name_like: Some(text),
                ..Default::default()
            },
            sluice_store::DeploymentFilter {
                flow_ids: Some(flow_ids),
                ..Default::default()
            },
        ] {
            for d in app.services.store.list_deployments(&f, None, 0).await? {
                if !ids.contains(&d.id) {
                    ids.push(d.id);
                }
            }
        }
        filter.ids = Some(match filter.ids.take() {
            Some(mine) => mine.into_iter().filter(|i| ids.contains(i)).collect(),
            None => ids,
        });
    }
    let flows = flow_filter(body.get("flows"))?;
    if flows.ids.is_some()
        || flows.names.is_some()
        || flows.name_like.is_some()
        || flows.tags_all.is_some()
    {
        let ids: Vec<Id> = app
            .services
            .store
            .list_flows(&flows, None, 0)
            .await?
            .into_iter()
            .map(|f| f.id)
            .collect();
        filter.flow_ids = Some(ids);
    }
    let pools = work_pool_filter(body)?;
    if pools.ids.is_some() || pools.types.is_some() {
        let names = app
            .services
            .store
            .list_work_pools(&pools, None, 0)
            .await?
            .into_iter()
            .map(|p| p.name)
            .collect();
        filter.work_pool_names = Some(names);
    } else {
        filter.work_pool_names = pools.names;
    }
    Ok(filter)
}

const FILTER_KEYS: [&str; 6] = [
    "deployments",
    "flows",
    "work_pools",
    "flow_runs",
    "task_runs",
    "work_pool_queues",
];

/// The filter keys, plus the given extras (paging, sort).
fn keys(extra: &[&'static str]) -> Vec<&'static str> {
    FILTER_KEYS.iter().chain(extra).copied().collect()
}

fn sort(body: &Value) -> ApiResult<DeploymentSort> {
    match body.get("sort") {
        None | Some(Value::Null) => Ok(DeploymentSort::NameAsc),
        Some(v) => v.as_str().and_then(DeploymentSort::parse).ok_or_else(|| {
            ApiError::invalid_field(
                vec!["body".into(), "sort".into()],
                format!("sort {v} is not one of NAME_ASC, NAME_DESC, CREATED_DESC, UPDATED_DESC"),
            )
        }),
    }
}

async fn listed(
    app: &AppState,
    filter: &sluice_store::DeploymentFilter,
    limit: usize,
    offset: usize,
) -> ApiResult<Vec<Value>> {
    let items = app
        .services
        .store
        .list_deployments(filter, Some(limit), offset)
        .await?;
    let mut out = Vec::with_capacity(items.len());
    for d in &items {
        out.push(with_slots(app, d).await?);
    }
    Ok(out)
}

pub async fn filter(
    State(app): State<AppState>,
    Body(body): Body<Value>,
) -> ApiResult<Json<Vec<Value>>> {
    only_keys(&body, &keys(&["sort", "limit", "offset"]))?;
    let (limit, offset) = paging(&body)?;
    let mut filter = resolve_filter(&app, &body).await?;
    filter.sort = sort(&body)?;
    Ok(Json(listed(&app, &filter, limit, offset).await?))
}

/// `POST /deployments/paginate`: `page` (from 1) and `limit`, answered with the page count.
pub async fn paginate(
    State(app): State<AppState>,
    Body(body): Body<Value>,
) -> ApiResult<Json<Value>> {
    only_keys(&body, &keys(&["sort", "limit", "page"]))?;
    let paged = page(&body)?;
    let mut filter = resolve_filter(&app, &body).await?;
    filter.sort = sort(&body)?;
    let total = app.services.store.count_deployments(&filter).await?;
    let results = listed(&app, &filter, paged.limit, paged.offset).await?;
    Ok(Json(paged.answer(results, total)))
}

/// A count ignores the order and page a list request would carry (the UI sends the same body
/// to both).
pub async fn count(State(app): State<AppState>, Body(body): Body<Value>) -> ApiResult<Json<usize>> {
    only_keys(&body, &keys(&["sort", "limit", "offset"]))?;
    sort(&body)?;
    paging(&body)?;
    let filter = resolve_filter(&app, &body).await?;
    Ok(Json(app.services.store.count_deployments(&filter).await?))
}

pub async fn update(
    State(app): State<AppState>,
    PathId(id): PathId,
    Body(body): Body<DeploymentUpdate>,
) -> ApiResult<StatusCode> {
    check_concurrency_limit(body.concurrency_limit.flatten())?;
    let patch = body.into_patch().map_err(invalid)?;
    app.services.update_deployment(id, patch).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn remove(State(app): State<AppState>, PathId(id): PathId) -> ApiResult<StatusCode> {
    app.services.delete_deployment(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn pause(State(app): State<AppState>, PathId(id): PathId) -> ApiResult<StatusCode> {
    app.services.set_deployment_paused(id, true).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn resume(State(app): State<AppState>, PathId(id): PathId) -> ApiResult<StatusCode> {
    app.services.set_deployment_paused(id, false).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn create_flow_run(
    State(app): State<AppState>,
    PathId(id): PathId,
    Body(body): Body<DeploymentFlowRunCreate>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let input = body.into_input(app.services.now());
    let out = app
        .services
        .create_flow_run_from_deployment(id, input)
        .await?;
    let status = if out.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(flow_run_json(&out.value))))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunnerPoll {
    deployment_ids: Vec<Id>,
    #[serde(default, deserialize_with = "crate::dto::timestamp")]
    scheduled_before: Option<sluice_core::domain::Timestamp>,
    #[serde(default)]
    limit: Option<i64>,
}

/// The Runner's poll (`flow.serve`): SCHEDULED runs of the given deployments by time; marks
/// the deployments ready.
pub async fn scheduled_runs(
    State(app): State<AppState>,
    Body(body): Body<RunnerPoll>,
) -> ApiResult<Json<Vec<Value>>> {
    let filter = FlowRunFilter {
        deployment_ids: Some(body.deployment_ids.clone()),
        state_types: Some(vec![StateType::Scheduled]),
        next_scheduled_start_time_before: body.scheduled_before,
        exclude_in_process_retries: true,
        ..Default::default()
    };
    // Prefect's `LimitBody`: at most 200; anything outside 0..200 is a 422.
    let limit = match body.limit {
        None => 200,
        Some(l) if (0..=200).contains(&l) => l as usize,
        Some(l) => {
            return Err(ApiError::invalid_field(
                vec!["body".into(), "limit".into()],
                format!("limit must be between 0 and 200, got {l}"),
            ));
        }
    };
    let runs = app
        .services
        .store
        .list_flow_runs(
            &filter,
            FlowRunSort::NextScheduledStartTimeAsc,
            Some(limit),
            0,
        )
        .await?;
    app.services
        .store
        .mark_deployments_polled(&body.deployment_ids, app.services.now())
        .await?;
    Ok(Json(runs.iter().map(flow_run_json).collect()))
}

// ---- a deployment's schedules ------------------------------------------------------------

/// `{id}` and `{schedule_id}`; a path that is not two UUIDs names no route (404), as in Prefect.
fn schedule_path(id: &str, schedule_id: &str) -> ApiResult<(Id, Id)> {
    match (id.parse(), schedule_id.parse()) {
        (Ok(id), Ok(schedule_id)) => Ok((id, schedule_id)),
        _ => Err(ApiError::not_found("Not Found")),
    }
}

/// `GET /deployments/{id}/schedules`.
pub async fn read_schedules(
    State(app): State<AppState>,
    PathId(id): PathId,
) -> ApiResult<Json<Vec<Value>>> {
    let d = app.services.read_deployment(id).await?;
    Ok(Json(d.schedules.iter().map(schedule_json).collect()))
}

/// `POST /deployments/{id}/schedules`: a list of schedules to add; 201 with the new ones.
pub async fn create_schedules(
    State(app): State<AppState>,
    PathId(id): PathId,
    Body(body): Body<Vec<ScheduleCreate>>,
) -> ApiResult<(StatusCode, Json<Vec<Value>>)> {
    let inputs = schedules_input(body).map_err(|(mut location, message)| {
        // The body is the list itself, not a `schedules` field.
        location.remove(1);
        ApiError::invalid_field(location, message)
    })?;
    let added = app.services.add_deployment_schedules(id, inputs).await?;
    Ok((
        StatusCode::CREATED,
        Json(added.iter().map(schedule_json).collect()),
    ))
}

/// `PATCH /deployments/{id}/schedules/{schedule_id}`.
pub async fn update_schedule(
    State(app): State<AppState>,
    Path((id, schedule_id)): Path<(String, String)>,
    Body(body): Body<ScheduleUpdate>,
) -> ApiResult<StatusCode> {
    let (id, schedule_id) = schedule_path(&id, &schedule_id)?;
    let patch = body.into_patch()?;
    app.services
        .update_deployment_schedule(id, schedule_id, patch)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /deployments/{id}/schedules/{schedule_id}`.
pub async fn delete_schedule(
    State(app): State<AppState>,
    Path((id, schedule_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let (id, schedule_id) = schedule_path(&id, &schedule_id)?;
    app.services
        .delete_deployment_schedule(id, schedule_id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
