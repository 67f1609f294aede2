//! `/deployments/...`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::Value;
use sluice_core::domain::{Id, StateType};
use sluice_store::{FlowRunFilter, FlowRunSort};

use crate::AppState;
use crate::dto::deployments::{
    DeploymentCreate, DeploymentFlowRunCreate, DeploymentUpdate, deployment_json,
};
use crate::dto::filters::{deployment_filter, flow_filter, only_keys, paging};
use crate::dto::runs::flow_run_json;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, PathId};

fn invalid((location, message): (Vec<Value>, String)) -> ApiError {
    ApiError::invalid_field(location, message)
}

pub async fn create(
    State(app): State<AppState>,
    Body(body): Body<DeploymentCreate>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let input = body.into_input().map_err(invalid)?;
    let out = app.services.upsert_deployment(input).await?;
    let status = if out.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(deployment_json(&out.value))))
}

pub async fn read(State(app): State<AppState>, PathId(id): PathId) -> ApiResult<Json<Value>> {
    Ok(Json(deployment_json(
        &app.services.read_deployment(id).await?,
    )))
}

pub async fn read_by_name(
    State(app): State<AppState>,
    Path((flow, name)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    Ok(Json(deployment_json(
        &app.services.read_deployment_by_name(&flow, &name).await?,
    )))
}

async fn resolve_filter(app: &AppState, body: &Value) -> ApiResult<sluice_store::DeploymentFilter> {
    let mut filter = deployment_filter(body.get("deployments"))?;
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
    if let Some(pools) = body.get("work_pools").filter(|v| !v.is_null()) {
        let names = pools
            .get("name")
            .and_then(|n| n.get("any_"))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            });
        filter.work_pool_names = names;
    }
    Ok(filter)
}

pub async fn filter(
    State(app): State<AppState>,
    Body(body): Body<Value>,
) -> ApiResult<Json<Vec<Value>>> {
    only_keys(
        &body,
        &[
            "deployments",
            "flows",
            "work_pools",
            "flow_runs",
            "work_pool_queues",
            "sort",
            "limit",
            "offset",
        ],
    )?;
    let (limit, offset) = paging(&body)?;
    let filter = resolve_filter(&app, &body).await?;
    let items = app
        .services
        .store
        .list_deployments(&filter, Some(limit), offset)
        .await?;
    Ok(Json(items.iter().map(deployment_json).collect()))
}

pub async fn count(State(app): State<AppState>, Body(body): Body<Value>) -> ApiResult<Json<usize>> {
    only_keys(
        &body,
        &[
            "deployments",
            "flows",
            "work_pools",
            "flow_runs",
            "work_pool_queues",
        ],
    )?;
    let filter = resolve_filter(&app, &body).await?;
    Ok(Json(app.services.store.count_deployments(&filter).await?))
}

pub async fn update(
    State(app): State<AppState>,
    PathId(id): PathId,
    Body(body): Body<DeploymentUpdate>,
) -> ApiResult<StatusCode> {
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
    limit: Option<usize>,
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
    let limit = body.limit.unwrap_or(200).min(200);
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
