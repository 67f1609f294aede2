//! `/work_pools/...`: pools, their queues, workers and the worker poll.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::Value;
use sluice_core::domain::{StateType, WorkPool, WorkQueue};
use sluice_services::{PoolPatch, QueuePatch, ScheduledRunsQuery, WorkPoolInput, WorkQueueInput};
use sluice_store::FlowRunFilter;

use crate::AppState;
use crate::dto::filters::{
    QueueCriteria, only_keys, paging, queue_filter, work_pool_filter, worker_filter,
};
use crate::dto::pools::{
    GetScheduledFlowRuns, WorkPoolCreate, WorkPoolResponse, WorkPoolUpdate, WorkQueueCreate,
    WorkQueueResponse, WorkQueueUpdate, WorkerFlowRunResponse, WorkerHeartbeat, WorkerResponse,
};
use crate::dto::runs::flow_run_json;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, PathId};

// Prefect checks these in its pydantic action models (`WorkPoolCreate`, `WorkQueueCreate`, ...),
// so a bad value is a request-validation error located at the field, not a `detail` answer
// (reference, "Conventions for every endpoint"). The services check them again.

fn field_error(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::invalid_field(vec!["body".into(), field.into()], message)
}

fn check_name(name: &str) -> ApiResult<()> {
    sluice_core::domain::validate_name(name).map_err(|e| field_error("name", e.to_string()))
}

fn check_non_negative(field: &str, value: Option<i64>) -> ApiResult<()> {
    match value {
        Some(v) if v < 0 => Err(field_error(
            field,
            format!("{field} must be greater than or equal to 0, got {v}"),
        )),
        _ => Ok(()),
    }
}

fn check_priority(value: Option<i64>) -> ApiResult<()> {
    match value {
        Some(v) if v < 1 => Err(field_error(
            "priority",
            format!("priority must be greater than or equal to 1, got {v}"),
        )),
        _ => Ok(()),
    }
}

/// The deprecated 2.x queue `filter`: clients send null; a real one would be silently ignored.
fn check_no_queue_filter(filter: Option<&Value>) -> ApiResult<()> {
    match filter {
        Some(_) => Err(field_error(
            "filter",
            "work queue filters (deprecated in Prefect 2) are not supported",
        )),
        None => Ok(()),
    }
}

/// The structural template check Prefect's `validate_base_job_template` field validator makes;
/// the create-only check of defaults stays in the service (an `HTTPException` in Prefect).
fn check_template(template: Option<&Value>) -> ApiResult<()> {
    match template {
        Some(t) => sluice_core::schema::validate_base_job_template(t, false)
            .map(|_| ())
            .map_err(|e| field_error("base_job_template", e.to_string())),
        None => Ok(()),
    }
}

pub async fn create(
    State(app): State<AppState>,
    Body(body): Body<WorkPoolCreate>,
) -> ApiResult<(StatusCode, Json<WorkPoolResponse>)> {
    check_name(&body.name)?;
    check_non_negative("concurrency_limit", body.concurrency_limit)?;
    check_template(body.base_job_template.as_ref())?;
    let (pool, warnings) = app
        .services
        .create_work_pool(WorkPoolInput {
            name: body.name,
            description: body.description,
            pool_type: body.pool_type,
            base_job_template: body.base_job_template,
            is_paused: body.is_paused,
            concurrency_limit: body.concurrency_limit,
            storage_configuration: body.storage_configuration,
        })
        .await?;
    for w in &warnings {
        tracing::warn!(work_pool = %pool.name, warning = %w, "base job template");
    }
    let mut out = pool_response(&app, pool).await?;
    out.warnings = warnings;
    Ok((StatusCode::CREATED, Json(out)))
}

pub async fn read(
    State(app): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<WorkPoolResponse>> {
    let pool = app.services.read_work_pool(&name).await?;
    Ok(Json(pool_response(&app, pool).await?))
}

/// A pool's answer with `active_slots`, which needs a count only when a limit is set.
async fn pool_response(app: &AppState, pool: WorkPool) -> ApiResult<WorkPoolResponse> {
    let slots = match pool.concurrency_limit {
        Some(_) => {
            let filter = FlowRunFilter {
                work_pool_ids: Some(vec![pool.id]),
                state_types: Some(vec![StateType::Pending, StateType::Running]),
                ..Default::default()
            };
            Some(app.services.store.count_flow_runs(&filter).await?)
        }
        None => None,
    };
    let mut out = WorkPoolResponse::from(pool);
    out.active_slots = slots;
    Ok(out)
}

/// A queue's answer with `active_slots` (Prefect counts CANCELLING here too).
async fn queue_response(
    app: &AppState,
    queue: WorkQueue,
    pool_name: String,
) -> ApiResult<WorkQueueResponse> {
    let slots = match queue.concurrency_limit {
        Some(_) => {
            let filter = FlowRunFilter {
                work_queue_ids: Some(vec![queue.id]),
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
    let mut out = WorkQueueResponse::new(queue, Some(pool_name));
    out.active_slots = slots;
    Ok(out)
}

pub async fn filter(
    State(app): State<AppState>,
    Body(body): Body<Value>,
) -> ApiResult<Json<Vec<WorkPoolResponse>>> {
    only_keys(&body, &["work_pools", "limit", "offset"])?;
    let (limit, offset) = paging(&body)?;
    let filter = work_pool_filter(&body)?;
    let pools = app
        .services
        .store
        .list_work_pools(&filter, Some(limit), offset)
        .await?;
    let mut out = Vec::with_capacity(pools.len());
    for pool in pools {
        out.push(pool_response(&app, pool).await?);
    }
    Ok(Json(out))
}

pub async fn count(State(app): State<AppState>, Body(body): Body<Value>) -> ApiResult<Json<usize>> {
    only_keys(&body, &["work_pools"])?;
    let filter = work_pool_filter(&body)?;
    Ok(Json(app.services.store.count_work_pools(&filter).await?))
}

pub async fn update(
    State(app): State<AppState>,
    Path(name): Path<String>,
    Body(body): Body<WorkPoolUpdate>,
) -> ApiResult<StatusCode> {
    check_non_negative("concurrency_limit", body.concurrency_limit.flatten())?;
    check_template(body.base_job_template.as_ref())?;
    let warnings = app
        .services
        .update_work_pool(
            &name,
            PoolPatch {
                description: body.description,
                is_paused: body.is_paused,
                base_job_template: body.base_job_template,
                concurrency_limit: body.concurrency_limit,
                storage_configuration: body.storage_configuration,
            },
        )
        .await?;
    for w in &warnings {
        tracing::warn!(work_pool = %name, warning = %w, "base job template");
    }
    Ok(StatusCode::NO_CONTENT)
}

pub async fn remove(
    State(app): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    app.services.delete_work_pool(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn scheduled_runs(
    State(app): State<AppState>,
    Path(name): Path<String>,
    Body(body): Body<GetScheduledFlowRuns>,
) -> ApiResult<Json<Vec<WorkerFlowRunResponse>>> {
    let limit = match body.limit {
        None => None,
        Some(l) if (0..=200).contains(&l) => Some(l as usize),
        Some(l) => {
            return Err(ApiError::invalid_field(
                vec!["body".into(), "limit".into()],
                format!("limit must be between 0 and 200, got {l}"),
            ));
        }
    };
    let items = app
        .services
        .get_scheduled_flow_runs(
            &name,
            ScheduledRunsQuery {
                work_queue_names: body.work_queue_names.unwrap_or_default(),
                scheduled_before: body.scheduled_before,
                scheduled_after: body.scheduled_after,
                limit,
            },
        )
        .await?;
    Ok(Json(
        items
            .into_iter()
            .map(|i| {
                let mut run = flow_run_json(&i.flow_run);
                // Prefect does not load the state relationship here: `state` is null while
                // `state_type`/`state_name` are filled. Clients rely on neither; match it.
                run["state"] = Value::Null;
                WorkerFlowRunResponse {
                    work_pool_id: i.work_pool_id,
                    work_queue_id: i.work_queue_id,
                    flow_run: run,
                }
            })
            .collect(),
    ))
}

pub async fn create_queue(
    State(app): State<AppState>,
    Path(pool): Path<String>,
    Body(body): Body<WorkQueueCreate>,
) -> ApiResult<(StatusCode, Json<WorkQueueResponse>)> {
    check_name(&body.name)?;
    check_non_negative("concurrency_limit", body.concurrency_limit)?;
    check_priority(body.priority)?;
    check_no_queue_filter(body.filter.as_ref())?;
    let queue = app
        .services
        .create_work_queue(
            &pool,
            WorkQueueInput {
                name: body.name,
                description: body.description,
                is_paused: body.is_paused,
                concurrency_limit: body.concurrency_limit,
                priority: body.priority,
            },
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(queue_response(&app, queue, pool).await?),
    ))
}

pub async fn read_queue(
    State(app): State<AppState>,
    Path((pool, queue)): Path<(String, String)>,
) -> ApiResult<Json<WorkQueueResponse>> {
    let (pool, queue) = app.services.read_work_queue(&pool, &queue).await?;
    Ok(Json(queue_response(&app, queue, pool.name).await?))
}

/// `GET /work_queues/{id}`: a queue by id, as Prefect's legacy route answers it.
pub async fn read_queue_by_id(
    State(app): State<AppState>,
    PathId(id): PathId,
) -> ApiResult<Json<WorkQueueResponse>> {
    let (pool, queue) = app.services.read_work_queue_by_id(id).await?;
    Ok(Json(queue_response(&app, queue, pool.name).await?))
}

pub async fn filter_queues(
    State(app): State<AppState>,
    Path(pool): Path<String>,
    Body(body): Body<Value>,
) -> ApiResult<Json<Vec<WorkQueueResponse>>> {
    only_keys(&body, &["work_queues", "limit", "offset"])?;
    let pool = app.services.read_work_pool(&pool).await?;
    let queues = app.services.store.list_work_queues(pool.id).await?;
    let queues = queues.into_iter().map(|q| (q, pool.name.clone())).collect();
    filtered_queues(&app, &body, queues).await.map(Json)
}

/// `POST /work_queues/filter`: the queues of every pool (Prefect's pool-less queue route,
/// which the UI's event filters list).
pub async fn filter_all_queues(
    State(app): State<AppState>,
    Body(body): Body<Value>,
) -> ApiResult<Json<Vec<WorkQueueResponse>>> {
    only_keys(&body, &["work_queues", "limit", "offset"])?;
    let mut queues = Vec::new();
    for pool in app
        .services
        .store
        .list_work_pools(&Default::default(), None, 0)
        .await?
    {
        for q in app.services.store.list_work_queues(pool.id).await? {
            queues.push((q, pool.name.clone()));
        }
    }
    filtered_queues(&app, &body, queues).await.map(Json)
}

async fn filtered_queues(
    app: &AppState,
    body: &Value,
    queues: Vec<(WorkQueue, String)>,
) -> ApiResult<Vec<WorkQueueResponse>> {
    let (limit, offset) = paging(body)?;
    let QueueCriteria {
        names,
        prefixes,
        ids,
    } = queue_filter(body)?;
    let picked: Vec<(WorkQueue, String)> = queues
        .into_iter()
        .filter(|(q, _)| names.as_ref().is_none_or(|n| n.contains(&q.name)))
        .filter(|(q, _)| {
            prefixes
                .as_ref()
                .is_none_or(|p| p.iter().any(|p| q.name.starts_with(p.as_str())))
        })
        .filter(|(q, _)| ids.as_ref().is_none_or(|i| i.contains(&q.id)))
        .skip(offset)
        .take(limit)
        .collect();
    let mut out = Vec::with_capacity(picked.len());
    for (q, pool_name) in picked {
        out.push(queue_response(app, q, pool_name).await?);
    }
    Ok(out)
}

pub async fn update_queue(
    State(app): State<AppState>,
    Path((pool, queue)): Path<(String, String)>,
    Body(body): Body<WorkQueueUpdate>,
) -> ApiResult<StatusCode> {
    if let Some(name) = &body.name {
        check_name(name)?;
    }
    check_non_negative("concurrency_limit", body.concurrency_limit.flatten())?;
    check_priority(body.priority)?;
    check_no_queue_filter(body.filter.as_ref())?;
    app.services
        .update_work_queue(
            &pool,
            &queue,
            QueuePatch {
                name: body.name,
                description: body.description,
                is_paused: body.is_paused,
                concurrency_limit: body.concurrency_limit,
                priority: body.priority,
                last_polled: body.last_polled,
            },
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn remove_queue(
    State(app): State<AppState>,
    Path((pool, queue)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    app.services.delete_work_queue(&pool, &queue).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn heartbeat(
    State(app): State<AppState>,
    Path(pool): Path<String>,
    Body(body): Body<WorkerHeartbeat>,
) -> ApiResult<axum::response::Response> {
    use axum::response::IntoResponse;
    let worker = app
        .services
        .worker_heartbeat(&pool, &body.name, body.heartbeat_interval_seconds)
        .await?;
    if body.return_id == Some(true) {
        return Ok((StatusCode::OK, Json(worker.id)).into_response());
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn filter_workers(
    State(app): State<AppState>,
    Path(pool): Path<String>,
    Body(body): Body<Value>,
) -> ApiResult<Json<Vec<WorkerResponse>>> {
    only_keys(&body, &["workers", "limit", "offset"])?;
    let (limit, offset) = paging(&body)?;
    let filter = worker_filter(&body)?;
    let pool = app.services.read_work_pool(&pool).await?;
    let workers = app
        .services
        .store
        .list_workers(Some(pool.id), &filter, Some(limit), offset)
        .await?;
    Ok(Json(
        workers.into_iter().map(WorkerResponse::from).collect(),
    ))
}

pub async fn remove_worker(
    State(app): State<AppState>,
    Path((pool, worker)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    app.services.delete_worker(&pool, &worker).await?;
    Ok(StatusCode::NO_CONTENT)
}
