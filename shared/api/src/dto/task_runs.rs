//! Task runs and their states on the wire (Prefect's `TaskRun`, `TaskRunCreate`).

use serde_json::{Map, Value, json};
use sluice_core::domain::{Id, TaskRun, Timestamp};

use super::runs::{StateCreate, state_json};
use super::{ts, ts_opt};
use crate::error::ApiError;

/// Prefect's `TaskRunCreate`, read from its JSON: the id, flow run and state apart, every other
/// field as sent (the task key and dynamic key are required, as in Prefect).
pub struct TaskRunCreate {
    pub id: Option<Id>,
    pub flow_run_id: Option<Id>,
    pub fields: Map<String, Value>,
    pub state: Option<StateCreate>,
}

fn field_error(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::invalid_field(vec!["body".into(), field.into()], message)
}

impl TaskRunCreate {
    pub fn parse(body: Value) -> Result<TaskRunCreate, ApiError> {
        let Value::Object(mut fields) = body else {
            return Err(ApiError::invalid_field(
                vec!["body".into()],
                "a task run must be a JSON object",
            ));
        };
        let id = |v: Option<Value>, field: &str| -> Result<Option<Id>, ApiError> {
            match v {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => s
                    .parse()
                    .map(Some)
                    .map_err(|_| field_error(field, format!("{s:?} is not a valid UUID"))),
                Some(other) => Err(field_error(field, format!("{other} is not a valid UUID"))),
            }
        };
        let run_id = id(fields.remove("id"), "id")?;
        let flow_run_id = id(fields.remove("flow_run_id"), "flow_run_id")?;
        let state = match fields.remove("state") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                serde_json::from_value::<StateCreate>(v)
                    .map_err(|e| field_error("state", e.to_string()))?,
            ),
        };
        for required in ["task_key", "dynamic_key"] {
            if !fields.get(required).is_some_and(Value::is_string) {
                return Err(field_error(
                    required,
                    format!("{required} is required (a string)"),
                ));
            }
        }
        Ok(TaskRunCreate {
            id: run_id,
            flow_run_id,
            fields,
            state,
        })
    }
}

/// Prefect's empirical policy of a task run, with every field present.
fn empirical_policy(stored: Option<&Value>) -> Value {
    let mut out = json!({
        "max_retries": 0,
        "retry_delay_seconds": 0.0,
        "retries": 0,
        "retry_delay": 0,
        "retry_jitter_factor": null
    });
    if let (Some(o), Some(Value::Object(s))) = (out.as_object_mut(), stored) {
        for (k, v) in s {
            o.insert(k.clone(), v.clone());
        }
    }
    out
}

/// A task run as Prefect answers it; `now` for the run time of a run still RUNNING.
pub fn task_run_json(run: &TaskRun, now: Timestamp) -> Value {
    let total = run
        .fields
        .get("total_run_time")
        .and_then(Value::as_f64)
        .unwrap_or(0.0);
    let estimated_run_time = sluice_core::task_runs::estimated_run_time(run, now);
    let estimated_start_time_delta = sluice_core::task_runs::estimated_start_time_delta(run, now);
    let mut out = json!({
        "cache_key": null,
        "cache_expiration": null,
        "task_version": null,
        "labels": {},
        "task_inputs": {},
        "flow_run_run_count": 0,
        "next_scheduled_start_time": null,
    });
    let o = out.as_object_mut().expect("an object");
    for (k, v) in &run.fields {
        o.insert(k.clone(), v.clone());
    }
    let own = json!({
        "id": run.id,
        "created": ts(run.created),
        "updated": ts(run.updated),
        "name": run.name,
        "flow_run_id": run.flow_run_id,
        "task_key": run.task_key,
        "dynamic_key": run.dynamic_key,
        "empirical_policy": empirical_policy(run.fields.get("empirical_policy")),
        "tags": run.tags,
        "state_id": run.state.as_ref().map(|s| s.id),
        "state_type": run.state.as_ref().map(|s| s.state_type.as_str()),
        "state_name": run.state.as_ref().map(|s| s.name.clone()),
        "run_count": run.run_count,
        "expected_start_time": ts_opt(run.expected_start_time),
        "start_time": ts_opt(run.start_time),
        "end_time": ts_opt(run.end_time),
        "total_run_time": total,
        "estimated_run_time": estimated_run_time,
        "estimated_start_time_delta": estimated_start_time_delta,
        "state": run.state.as_ref().map(|s| task_run_state_json(s, run)),
    });
    if let Value::Object(own) = own {
        o.extend(own);
    }
    out
}

/// A task run's state: `state_details` name the task run (and its flow run, when it has one).
pub fn task_run_state_json(state: &sluice_core::domain::State, run: &TaskRun) -> Value {
    let mut v = state_json(state, run.flow_run_id.unwrap_or_default());
    if let Some(details) = v.get_mut("state_details").and_then(Value::as_object_mut) {
        details.insert("task_run_id".to_owned(), json!(run.id));
        details.insert("flow_run_id".to_owned(), json!(run.flow_run_id));
    }
    v
}
