//! `/flows/...`: flows are upserted by name.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::Value;
use sluice_core::domain::{Flow, Id, validate_name};
use sluice_store::{FlowFilter, FlowRunSort};

use crate::AppState;
use crate::dto::deployments::{FlowCreate, flow_json};
use crate::dto::filters::{deployment_filter, flow_filter, only_keys, page, paging, run_query};
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

/// What a flow list (and its count, which ignores the order and page) may carry.
const LIST_KEYS: [&str; 7] = [
    "flows",
    "flow_runs",
    "deployments",
    "work_pools",
    "sort",
    "limit",
    "offset",
];

pub async fn filter(
    State(app): State<AppState>,
    Body(body): Body<Value>,
) -> ApiResult<Json<Vec<Value>>> {
    only_keys(&body, &LIST_KEYS)?;
    let (limit, offset) = paging(&body)?;
    let sort = flow_sort(&body)?;
    let filter = resolve_filter(&app, &body).await?;
    let flows = match sort {
        // The store's own order: no need to read them all.
        FlowSort::NameAsc => {
            app.services
                .store
                .list_flows(&filter, Some(limit), offset)
                .await?
        }
        _ => sorted(app.services.store.list_flows(&filter, None, 0).await?, sort)
            .into_iter()
            .skip(offset)
            .take(limit)
            .collect(),
    };
    Ok(Json(flows.iter().map(flow_json).collect()))
}

/// `POST /flows/paginate`: `page` (from 1) and `limit`, answered with the page count.
pub async fn paginate(
    State(app): State<AppState>,
    Body(body): Body<Value>,
) -> ApiResult<Json<Value>> {
    only_keys(
        &body,
        &[
            "flows",
            "flow_runs",
            "deployments",
            "work_pools",
            "sort",
            "limit",
            "page",
        ],
    )?;
    let paged = page(&body)?;
    let sort = flow_sort(&body)?;
    let filter = resolve_filter(&app, &body).await?;
    let total = app.services.store.count_flows(&filter).await?;
    let flows = app.services.store.list_flows(&filter, None, 0).await?;
    let results = sorted(flows, sort)
        .iter()
        .skip(paged.offset)
        .take(paged.limit)
        .map(flow_json)
        .collect();
    Ok(Json(paged.answer(results, total)))
}

/// Prefect's flow orders.
#[derive(Clone, Copy)]
enum FlowSort {
    NameAsc,
    NameDesc,
    CreatedDesc,
    UpdatedDesc,
}

fn flow_sort(body: &Value) -> ApiResult<FlowSort> {
    Ok(match body.get("sort").and_then(Value::as_str) {
        None if body.get("sort").is_none_or(Value::is_null) => FlowSort::NameAsc,
        Some("NAME_ASC") => FlowSort::NameAsc,
        Some("NAME_DESC") => FlowSort::NameDesc,
        Some("CREATED_DESC") => FlowSort::CreatedDesc,
        Some("UPDATED_DESC") => FlowSort::UpdatedDesc,
        _ => {
            return Err(ApiError::invalid_field(
                vec!["body".into(), "sort".into()],
                "sort must be one of NAME_ASC, NAME_DESC, CREATED_DESC, UPDATED_DESC",
            ));
        }
    })
}

/// Flows are few (one per flow function), so the page is cut after sorting all of them.
fn sorted(mut flows: Vec<Flow>, sort: FlowSort) -> Vec<Flow> {
    flows.sort_by(|a, b| match sort {
        FlowSort::NameAsc => a.name.cmp(&b.name),
        FlowSort::NameDesc => b.name.cmp(&a.name),
        FlowSort::CreatedDesc => b.created.cmp(&a.created).then(b.id.cmp(&a.id)),
        FlowSort::UpdatedDesc => b.updated.cmp(&a.updated).then(b.id.cmp(&a.id)),
    });
    flows
}

/// A count ignores the order and page a list request would carry (the UI sends the same body
/// to both).
pub async fn count(State(app): State<AppState>, Body(body): Body<Value>) -> ApiResult<Json<usize>> {
    only_keys(&body, &LIST_KEYS)?;
    flow_sort(&body)?;
    paging(&body)?;
    let filter = resolve_filter(&app, &body).await?;
    Ok(Json(app.services.store.count_flows(&filter).await?))
}

/// The flow filter with its related criteria resolved: `flow_runs` keeps the flows with a
/// matching run, `deployments` those with a matching deployment. `work_pools` is refused
/// rather than ignored (an ignored filter answers with the wrong rows).
async fn resolve_filter(app: &AppState, body: &Value) -> ApiResult<FlowFilter> {
    if body.get("work_pools").is_some_and(|v| !v.is_null()) {
        return Err(ApiError::invalid_field(
            vec!["body".into(), "work_pools".into()],
            "filtering flows by work_pools is not supported",
        ));
    }
    let mut filter = flow_filter(body.get("flows"))?;
    let keep = |filter: &mut FlowFilter, mut ids: Vec<Id>| {
        ids.sort();
        ids.dedup();
        filter.ids = Some(match filter.ids.take() {
            Some(mine) => mine.into_iter().filter(|i| ids.contains(i)).collect(),
            None => ids,
        });
    };
    if let Some(runs) = body.get("flow_runs").filter(|v| !v.is_null()) {
        let q = crate::routes::flow_runs::resolve(
            app,
            run_query(&serde_json::json!({ "flow_runs": runs }))?,
        )
        .await?;
        let ids: Vec<Id> = app
            .services
            .store
            .list_flow_runs(&q.filter, FlowRunSort::IdDesc, None, 0)
            .await?
            .into_iter()
            .map(|r| r.flow_id)
            .collect();
        keep(&mut filter, ids);
    }
    if let Some(deployments) = body.get("deployments").filter(|v| !v.is_null()) {
        let f = deployment_filter(Some(deployments))?;
        let ids: Vec<Id> = app
            .services
            .store
            .list_deployments(&f, None, 0)
            .await?
            .into_iter()
            .map(|d| d.flow_id)
            .collect();
        keep(&mut filter, ids);
    }
    Ok(filter)
}

pub async fn remove(State(app): State<AppState>, PathId(id): PathId) -> ApiResult<StatusCode> {
    if !app.services.store.delete_flow(id).await? {
        return Err(ApiError::not_found("Flow not found"));
    }
    Ok(StatusCode::NO_CONTENT)
}
