//! Health, version, CSRF, collections metadata, variables and logs.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};
use sluice_core::domain::{LogEntry, Variable, validate_variable_name};

use crate::AppState;
use crate::dto::filters::{VariableQuery, log_filter, only_keys, paging, variable_query};
use crate::dto::misc::{LogCreate, VariableCreate, VariableUpdate, log_json, variable_json};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, PathId};

/// The REST API version Sluice speaks (Prefect's `SERVER_API_VERSION`).
pub const API_VERSION: &str = "0.8.4";

pub async fn health() -> Json<bool> {
    Json(true)
}

pub async fn version() -> Json<&'static str> {
    Json(API_VERSION)
}

/// The Prefect release whose server behaviour Sluice matches. Prefect's flow engine reads
/// `/admin/version`, parses it as a version and refuses a server of another major version, so
/// this must be a Prefect version, not Sluice's own.
pub const PREFECT_COMPATIBLE_VERSION: &str = "3.9.1";

pub async fn admin_version() -> Json<&'static str> {
    Json(PREFECT_COMPATIBLE_VERSION)
}

/// `GET /admin/settings`: the settings the API runs with (no secret among them).
pub async fn admin_settings(State(app): State<AppState>) -> Json<Value> {
    Json((*app.public_settings).clone())
}

/// `GET /admin/storage`: the server's default result storage block. Sluice has no such
/// setting, so it answers what Prefect answers when none is configured; the engine then keeps
/// results where its own settings say.
pub async fn admin_storage() -> Json<Value> {
    Json(json!({ "default_result_storage_block_id": null }))
}

pub async fn hello() -> Json<&'static str> {
    Json("👋")
}

/// CSRF protection is off, as on a default Prefect server; this exact answer tells the stock
/// client to stop asking.
pub async fn csrf_token() -> (StatusCode, Json<Value>) {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(json!({ "detail": "CSRF protection is disabled." })),
    )
}

pub async fn worker_metadata() -> Json<Value> {
    Json(sluice_core::pool_types::aggregate_worker_metadata())
}

// ---- variables ---------------------------------------------------------------------------

fn check_variable_name(name: &str) -> ApiResult<()> {
    validate_variable_name(name)
        .map_err(|e| ApiError::invalid_field(vec!["body".into(), "name".into()], e.to_string()))
}

/// Prefect caps a variable's JSON value at 5000 characters.
fn check_variable_value(value: &Value) -> ApiResult<()> {
    let len = value.to_string().len();
    if len > 5000 {
        return Err(ApiError::invalid_field(
            vec!["body".into(), "value".into()],
            format!("value is {len} characters of JSON; the limit is 5000"),
        ));
    }
    Ok(())
}

pub async fn create_variable(
    State(app): State<AppState>,
    Body(body): Body<VariableCreate>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    check_variable_name(&body.name)?;
    check_variable_value(&body.value)?;
    let now = app.services.now();
    let v = Variable {
        id: uuid::Uuid::new_v4(),
        created: now,
        updated: now,
        name: body.name,
        value: body.value,
        tags: body.tags,
    };
    app.services
        .store
        .create_variable(&v)
        .await
        .map_err(|e| match e {
            sluice_store::StoreError::Conflict(_) => ApiError::Detail(
                StatusCode::CONFLICT,
                format!("A variable with the name {:?} already exists.", v.name),
            ),
            other => other.into(),
        })?;
    Ok((StatusCode::CREATED, Json(variable_json(&v))))
}

async fn variable_by_name(app: &AppState, name: &str) -> ApiResult<Variable> {
    app.services
        .store
        .read_variable_by_name(name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("Variable not found: {name:?}")))
}

async fn variable_by_id(app: &AppState, id: uuid::Uuid) -> ApiResult<Variable> {
    app.services
        .store
        .read_variable(id)
        .await?
        .ok_or_else(|| ApiError::not_found("Variable not found"))
}

pub async fn read_variable(
    State(app): State<AppState>,
    PathId(id): PathId,
) -> ApiResult<Json<Value>> {
    Ok(Json(variable_json(&variable_by_id(&app, id).await?)))
}

pub async fn read_variable_by_name(
    State(app): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(variable_json(&variable_by_name(&app, &name).await?)))
}

async fn apply_variable_update(
    app: &AppState,
    mut v: Variable,
    body: VariableUpdate,
) -> ApiResult<StatusCode> {
    if let Some(name) = body.name {
        check_variable_name(&name)?;
        v.name = name;
    }
    if let Some(value) = body.value {
        let value = value.unwrap_or(Value::Null);
        check_variable_value(&value)?;
        v.value = value;
    }
    if let Some(tags) = body.tags {
        v.tags = tags;
    }
    v.updated = app.services.now();
    app.services.store.update_variable(&v).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn update_variable(
    State(app): State<AppState>,
    PathId(id): PathId,
    Body(body): Body<VariableUpdate>,
) -> ApiResult<StatusCode> {
    let v = variable_by_id(&app, id).await?;
    apply_variable_update(&app, v, body).await
}

pub async fn update_variable_by_name(
    State(app): State<AppState>,
    Path(name): Path<String>,
    Body(body): Body<VariableUpdate>,
) -> ApiResult<StatusCode> {
    let v = variable_by_name(&app, &name).await?;
    apply_variable_update(&app, v, body).await
}

pub async fn delete_variable(
    State(app): State<AppState>,
    PathId(id): PathId,
) -> ApiResult<StatusCode> {
    if !app.services.store.delete_variable(id).await? {
        return Err(ApiError::not_found("Variable not found"));
    }
    Ok(StatusCode::NO_CONTENT)
}

pub async fn delete_variable_by_name(
    State(app): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    let v = variable_by_name(&app, &name).await?;
    app.services.store.delete_variable(v.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn filter_variables(
    State(app): State<AppState>,
    Body(body): Body<Value>,
) -> ApiResult<Json<Vec<Value>>> {
    only_keys(&body, &["variables", "sort", "limit", "offset"])?;
    let (limit, offset) = paging(&body)?;
    let q = variable_query(&body)?;
    let vars = matching_variables(&app, &q).await?;
    Ok(Json(
        vars.iter()
            .skip(offset)
            .take(limit)
            .map(variable_json)
            .collect(),
    ))
}

async fn matching_variables(app: &AppState, q: &VariableQuery) -> ApiResult<Vec<Variable>> {
    let mut vars = app
        .services
        .store
        .list_variables(q.names.as_deref(), None, 0)
        .await?;
    vars.retain(|v| q.keep(v));
    q.order(&mut vars);
    Ok(vars)
}

/// A count ignores the order and page a list request would carry (the UI sends the same body
/// to both).
pub async fn count_variables(
    State(app): State<AppState>,
    Body(body): Body<Value>,
) -> ApiResult<Json<usize>> {
    only_keys(&body, &["variables", "sort", "limit", "offset"])?;
    paging(&body)?;
    let q = variable_query(&body)?;
    Ok(Json(matching_variables(&app, &q).await?.len()))
}

// ---- logs --------------------------------------------------------------------------------

pub async fn create_logs(
    State(app): State<AppState>,
    Body(body): Body<Vec<LogCreate>>,
) -> ApiResult<StatusCode> {
    let now = app.services.now();
    let logs: Vec<LogEntry> = body
        .into_iter()
        .map(|l| LogEntry {
            id: uuid::Uuid::now_v7(),
            created: now,
            name: l.name,
            level: l.level,
            message: l.message,
            timestamp: l.timestamp.unwrap_or(now),
            flow_run_id: l.flow_run_id,
            task_run_id: l.task_run_id,
            worker_id: l.worker_id,
        })
        .collect();
    app.services.store.create_logs(&logs).await?;
    Ok(StatusCode::CREATED)
}

pub async fn filter_logs(
    State(app): State<AppState>,
    Body(body): Body<Value>,
) -> ApiResult<Json<Vec<Value>>> {
    only_keys(&body, &["logs", "sort", "limit", "offset"])?;
    let (limit, offset) = paging(&body)?;
    let filter = log_filter(&body)?;
    let logs = app
        .services
        .store
        .list_logs(&filter, Some(limit), offset)
        .await?;
    Ok(Json(logs.iter().map(log_json).collect()))
}
