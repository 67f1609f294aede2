//! `/flows/...`: flows are upserted by name.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::Value;
use sluice_core::domain::{Flow, validate_name};

use crate::AppState;
use crate::dto::deployments::{FlowCreate, flow_json};
use crate::dto::filters::{flow_filter, only_keys, paging};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, PathId};

pub async fn create(
    State(app): State<AppState>,
    Body(body): Body<FlowCreate>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    validate_name(&body.name)
        .map_err(|e| ApiError::invalid_field(vec!["body".into(), "name".into()], e.to_string()))?;
    let now = app.services.now();
    let flow = Flow {
        id: uuid::Uuid::new_v4(),
        created: now,
        updated: now,
        name: body.name,
        tags: body.tags,
        labels: body.labels.unwrap_or_default(),
    };
    let out = app.services.store.upsert_flow(&flow).await?;
    let status = if out.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(flow_json(&out.value))))
}

pub async fn read(State(app): State<AppState>, PathId(id): PathId) -> ApiResult<Json<Value>> {
    let flow = app
        .services
        .store
        .read_flow(id)
        .await?
        .ok_or_else(|| ApiError::not_found("Flow not found"))?;
    Ok(Json(flow_json(&flow)))
}

pub async fn read_by_name(
    State(app): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let flow = app
        .services
        .store
        .read_flow_by_name(&name)
        .await?
        .ok_or_else(|| ApiError::not_found("Flow not found"))?;
    Ok(Json(flow_json(&flow)))
}

pub async fn filter(
    State(app): State<AppState>,
    Body(body): Body<Value>,
) -> ApiResult<Json<Vec<Value>>> {
    only_keys(
        &body,
        &[
            "flows",
            "flow_runs",
            "deployments",
            "work_pools",
            "sort",
            "limit",
            "offset",
        ],
    )?;
    reject_joins(&body)?;
    let (limit, offset) = paging(&body)?;
    let filter = flow_filter(body.get("flows"))?;
    let flows = app
        .services
        .store
        .list_flows(&filter, Some(limit), offset)
        .await?;
    Ok(Json(flows.iter().map(flow_json).collect()))
}

pub async fn count(State(app): State<AppState>, Body(body): Body<Value>) -> ApiResult<Json<usize>> {
    only_keys(&body, &["flows", "flow_runs", "deployments", "work_pools"])?;
    reject_joins(&body)?;
    let filter = flow_filter(body.get("flows"))?;
    Ok(Json(app.services.store.count_flows(&filter).await?))
}

/// Filters on related objects are not applied to flows yet; refuse rather than ignore them.
fn reject_joins(body: &Value) -> ApiResult<()> {
    for key in ["flow_runs", "deployments", "work_pools"] {
        if body.get(key).is_some_and(|v| !v.is_null()) {
            return Err(ApiError::invalid_field(
                vec!["body".into(), key.into()],
                format!("filtering flows by {key} is not supported"),
            ));
        }
    }
    Ok(())
}

pub async fn remove(State(app): State<AppState>, PathId(id): PathId) -> ApiResult<StatusCode> {
    if !app.services.store.delete_flow(id).await? {
        return Err(ApiError::not_found("Flow not found"));
    }
    Ok(StatusCode::NO_CONTENT)
}
