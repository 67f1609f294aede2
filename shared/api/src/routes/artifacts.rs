//! Artifacts (`/artifacts`, Prefect's `server/api/artifacts.py`): create, read, the latest of a
//! key, filter and count (of artifacts and of keys' latest versions), update, delete.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::Value;
use sluice_services::{ArtifactInput, ArtifactPatch};

use crate::AppState;
use crate::dto::artifacts::{
    ArtifactCreate, ArtifactUpdate, artifact_filter, artifact_json, artifact_sort, latest_json,
};
use crate::dto::filters::{only_keys, paging};
use crate::error::ApiResult;
use crate::extract::{Body, PathId};

const FILTER_KEYS: [&str; 8] = [
    "artifacts",
    "flow_runs",
    "task_runs",
    "flows",
    "deployments",
    "sort",
    "limit",
    "offset",
];

pub async fn create(
    State(app): State<AppState>,
    Body(body): Body<ArtifactCreate>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let a = app
        .services
        .create_artifact(ArtifactInput {
            key: body.key,
            kind: body.kind,
            description: body.description,
            data: body.data,
            metadata: body.metadata_,
            flow_run_id: body.flow_run_id,
            task_run_id: body.task_run_id,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(artifact_json(&a))))
}

pub async fn read(State(app): State<AppState>, PathId(id): PathId) -> ApiResult<Json<Value>> {
    Ok(Json(artifact_json(&app.services.read_artifact(id).await?)))
}

pub async fn read_latest(
    State(app): State<AppState>,
    Path(key): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(latest_json(
        &app.services.read_latest_artifact(&key).await?,
    )))
}

pub async fn filter(
    State(app): State<AppState>,
    Body(body): Body<Value>,
) -> ApiResult<Json<Vec<Value>>> {
    only_keys(&body, &FILTER_KEYS)?;
    let (limit, offset) = paging(&body)?;
    let (filter, _) = artifact_filter(&body)?;
    let sort = artifact_sort(&body)?;
    let found = app
        .services
        .list_artifacts(&filter, sort, limit, offset)
        .await?;
    Ok(Json(found.iter().map(artifact_json).collect()))
}

pub async fn count(State(app): State<AppState>, Body(body): Body<Value>) -> ApiResult<Json<usize>> {
    only_keys(&body, &FILTER_KEYS)?;
    let (filter, _) = artifact_filter(&body)?;
    Ok(Json(app.services.count_artifacts(&filter).await?))
}

pub async fn filter_latest(
    State(app): State<AppState>,
    Body(body): Body<Value>,
) -> ApiResult<Json<Vec<Value>>> {
    only_keys(&body, &FILTER_KEYS)?;
    let (limit, offset) = paging(&body)?;
    let (filter, latest_ids) = artifact_filter(&body)?;
    let sort = artifact_sort(&body)?;
    let latest = app
        .services
        .list_latest_artifacts(&filter, latest_ids.as_deref(), sort)
        .await?;
    Ok(Json(
        latest
            .iter()
            .skip(offset)
            .take(limit)
            .map(latest_json)
            .collect(),
    ))
}

pub async fn count_latest(
    State(app): State<AppState>,
    Body(body): Body<Value>,
) -> ApiResult<Json<usize>> {
    only_keys(&body, &FILTER_KEYS)?;
    let (filter, latest_ids) = artifact_filter(&body)?;
    let sort = artifact_sort(&body)?;
    Ok(Json(
        app.services
            .list_latest_artifacts(&filter, latest_ids.as_deref(), sort)
            .await?
            .len(),
    ))
}

pub async fn update(
    State(app): State<AppState>,
    PathId(id): PathId,
    Body(body): Body<ArtifactUpdate>,
) -> ApiResult<StatusCode> {
    app.services
        .update_artifact(
            id,
            ArtifactPatch {
                data: body.data,
                description: body.description,
                metadata: body.metadata_,
            },
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn remove(State(app): State<AppState>, PathId(id): PathId) -> ApiResult<StatusCode> {
    app.services.delete_artifact(id).await?;
    Ok(StatusCode::NO_CONTENT)
}
