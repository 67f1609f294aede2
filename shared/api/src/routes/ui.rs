//! The routes Prefect's UI calls for task runs (Prefect's `server/api/ui/task_runs.py` and
//! `ui/flow_runs.py`): task-run counts per flow run, by state, and per time bucket for the
//! dashboard, and a task run with its flow run's name.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};
use sluice_core::domain::{Id, StateType};
use sluice_core::task_runs::dashboard_counts;
use sluice_store::TaskRunSort;

use crate::AppState;
use crate::dto::filters::{only_keys, task_run_query};
use crate::dto::task_runs::task_run_json;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, PathId};

/// Prefect's limit on one request's flow runs.
const MAX_FLOW_RUN_IDS: usize = 200;
/// The dashboard's buckets.
const DASHBOARD_BUCKETS: usize = 20;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountTaskRunsBody {
    flow_run_ids: Vec<Id>,
}

pub async fn count_task_runs_by_flow_run(
    State(app): State<AppState>,
    Body(body): Body<CountTaskRunsBody>,
) -> ApiResult<Json<BTreeMap<String, usize>>> {
    if body.flow_run_ids.len() > MAX_FLOW_RUN_IDS {
        return Err(ApiError::invalid_field(
            vec!["body".into(), "flow_run_ids".into()],
            format!("at most {MAX_FLOW_RUN_IDS} flow runs"),
        ));
    }
    let counts = app
        .services
        .count_task_runs_by_flow_run(&body.flow_run_ids)
        .await?;
    Ok(Json(
        counts
            .into_iter()
            .map(|(id, n)| (id.to_string(), n))
            .collect(),
    ))
}

/// Criteria of the related objects the UI may send; Sluice answers them only when empty.
fn refuse_related(body: &Value, keys: &[&str]) -> ApiResult<()> {
    for key in keys {
        if body.get(*key).is_some_and(|v| !v.is_null()) {
            return Err(ApiError::invalid_field(
                vec!["body".into(), (*key).into()],
                format!("counting task runs by {key} is not supported"),
            ));
        }
    }
    Ok(())
}

pub async fn dashboard_counts_route(
    State(app): State<AppState>,
    Body(body): Body<Value>,
) -> ApiResult<Json<Vec<Value>>> {
    const RELATED: [&str; 5] = [
        "flows",
        "flow_runs",
        "deployments",
        "work_pools",
        "work_queues",
    ];
    let mut allowed = vec!["task_runs"];
    allowed.extend(RELATED);
    only_keys(&body, &allowed)?;
    refuse_related(&body, &["work_pools", "work_queues"])?;
    let q = task_run_query(&body)?;
    let mut filter = crate::routes::task_runs::resolve(&app, &q).await?;
    let Some(after) = filter.start_time_after else {
        return Err(ApiError::unprocessable(
            "task_runs.start_time.after_ is required",
        ));
    };
    let start = after
        - chrono::Duration::nanoseconds(i64::from(chrono::Timelike::nanosecond(&after)))
        - chrono::Duration::seconds(i64::from(chrono::Timelike::second(&after)));
    let end = filter
        .start_time_before
        .unwrap_or_else(|| app.services.now());
    filter.state_types = Some(
        StateType::ALL
            .into_iter()
            .filter(|t| t.is_terminal())
            .collect(),
    );
    let runs = app
        .services
        .list_task_runs(&filter, TaskRunSort::IdDesc, None, 0)
        .await?;
    Ok(Json(
        dashboard_counts(&runs, start, end, DASHBOARD_BUCKETS)
            .into_iter()
            .map(|(completed, failed)| json!({"completed": completed, "failed": failed}))
            .collect(),
    ))
}

pub async fn count_by_state(
    State(app): State<AppState>,
    Body(body): Body<Value>,
) -> ApiResult<Json<BTreeMap<&'static str, usize>>> {
    only_keys(&body, &["task_runs", "flows", "flow_runs", "deployments"])?;
    let q = task_run_query(&body)?;
    let filter = crate::routes::task_runs::resolve(&app, &q).await?;
    let runs = app
        .services
        .list_task_runs(&filter, TaskRunSort::IdDesc, None, 0)
        .await?;
    let mut counts: BTreeMap<&'static str, usize> =
        StateType::ALL.iter().map(|t| (t.as_str(), 0)).collect();
    for run in &runs {
        if let Some(s) = &run.state {
            *counts.entry(s.state_type.as_str()).or_default() += 1;
        }
    }
    Ok(Json(counts))
}

/// A task run with the name of its flow run.
pub async fn read_task_run(
    State(app): State<AppState>,
    PathId(id): PathId,
) -> ApiResult<Json<Value>> {
    let run = app
        .services
        .read_task_run(id)
        .await
        .map_err(|_| ApiError::not_found("Task not found"))?;
    let flow_run_name = match run.flow_run_id {
        Some(f) => app
            .services
            .read_flow_run(f)
            .await
            .ok()
            .map(|v| v.value.name),
        None => None,
    };
    let mut out = task_run_json(&run, app.services.now());
    out["flow_run_name"] = json!(flow_run_name);
    Ok(Json(out))
}

/// A body of at most 200 flow ids, as Prefect's `/ui/flows/...` routes take.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowIdsBody {
    flow_ids: Vec<Id>,
}

impl FlowIdsBody {
    fn ids(&self) -> ApiResult<&[Id]> {
        if self.flow_ids.len() > MAX_FLOW_RUN_IDS {
            return Err(ApiError::invalid_field(
                vec!["body".into(), "flow_ids".into()],
                format!("at most {MAX_FLOW_RUN_IDS} flows"),
            ));
        }
        Ok(&self.flow_ids)
    }
}

/// `POST /ui/flows/count-deployments`: each flow's number of deployments.
pub async fn count_deployments_by_flow(
    State(app): State<AppState>,
    Body(body): Body<FlowIdsBody>,
) -> ApiResult<Json<BTreeMap<String, usize>>> {
    let mut out = BTreeMap::new();
    for id in body.ids()? {
        let filter = sluice_store::DeploymentFilter {
            flow_ids: Some(vec![*id]),
            ..Default::default()
        };
        out.insert(
            id.to_string(),
            app.services.store.count_deployments(&filter).await?,
        );
    }
    Ok(Json(out))
}

/// `POST /ui/flows/next-runs`: each flow's next scheduled run (null when none).
pub async fn next_runs_by_flow(
    State(app): State<AppState>,
    Body(body): Body<FlowIdsBody>,
) -> ApiResult<Json<BTreeMap<String, Value>>> {
    let mut out = BTreeMap::new();
    for id in body.ids()? {
        let filter = sluice_store::FlowRunFilter {
            flow_ids: Some(vec![*id]),
            state_types: Some(vec![StateType::Scheduled]),
            ..Default::default()
        };
        let next = app
            .services
            .store
            .list_flow_runs(
                &filter,
                sluice_store::FlowRunSort::NextScheduledStartTimeAsc,
                Some(1),
                0,
            )
            .await?;
        let answer = next.first().map_or(Value::Null, |r| {
            json!({
                "id": r.id,
                "flow_id": r.flow_id,
                "name": r.name,
                "state_name": r.state_name(),
                "state_type": r.state_type().map(StateType::as_str),
                "next_scheduled_start_time": crate::dto::ts_opt(r.next_scheduled_start_time),
            })
        });
        out.insert(id.to_string(), answer);
    }
    Ok(Json(out))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidateBody {
    schema: serde_json::Map<String, Value>,
    values: serde_json::Map<String, Value>,
}

/// `POST /ui/schemas/validate`: a form's values (hydrated: `__prefect_kind` objects become
/// values, workspace variables are read) checked against its schema, answered as Prefect's
/// nested error list. An invalid schema is a 422.
pub async fn validate_schema_values(
    State(app): State<AppState>,
    Body(body): Body<ValidateBody>,
) -> ApiResult<Json<Value>> {
    let names = sluice_core::hydration::variable_names(&Value::Object(body.values.clone()));
    let variables = app.services.variables_named(&names).await?;
    let hydrated =
        sluice_core::hydration::hydrate(&body.values, &|name| variables.get(name).cloned());
    let answer = sluice_core::schema::validate_form(&Value::Object(body.schema), &hydrated)
        .map_err(ApiError::unprocessable)?;
    Ok(Json(answer))
}
