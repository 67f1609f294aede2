//! Flow runs and states on the wire.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sluice_core::domain::{FlowRun, Id, JsonMap, State, StateType, Timestamp};

use super::{nullable, ts, ts_opt};

/// Prefect's `StateCreate`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateCreate {
    #[serde(rename = "type")]
    pub state_type: StateType,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub data: Option<Value>,
    #[serde(default, deserialize_with = "checked_state_details")]
    pub state_details: Option<JsonMap>,
    /// Older clients send the client-side timestamp; the server stamps its own time.
    #[serde(default)]
    pub timestamp: Option<Value>,
    #[serde(default)]
    pub id: Option<Value>,
}

/// The datetime fields of Prefect's `StateDetails`.
const STATE_DETAIL_TIMES: &[&str] = &["scheduled_time", "cache_expiration", "pause_timeout"];

/// `state_details` with its datetime fields parsed (in any form clients send) and rewritten in
/// the API's one form, so a state reads back the way every other timestamp does; a value that
/// is not a datetime is refused, as Prefect's `StateDetails` model refuses it, rather than
/// echoed to clients that cannot parse it.
fn checked_state_details<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<JsonMap>, D::Error> {
    let Some(mut details) = Option::<JsonMap>::deserialize(d)? else {
        return Ok(None);
    };
    for key in STATE_DETAIL_TIMES {
        if let Some(Value::String(raw)) = details.get(*key) {
            let t = sluice_core::time::parse_timestamp(raw).ok_or_else(|| {
                serde::de::Error::custom(format!("state_details.{key}: invalid datetime {raw:?}"))
            })?;
            details.insert((*key).to_owned(), Value::String(ts(t)));
        } else if details.get(*key).is_some_and(|v| !v.is_null()) {
            return Err(serde::de::Error::custom(format!(
                "state_details.{key} must be a datetime"
            )));
        }
    }
    Ok(Some(details))
}

impl StateCreate {
    /// The domain state: name defaults to the type's, SCHEDULED defaults to "now".
    pub fn into_state(self, now: Timestamp) -> State {
        let mut state = State::new(self.state_type, now);
        if let Some(name) = self.name {
            state.name = name;
        }
        state.message = self.message;
        state.data = self.data.unwrap_or(Value::Null);
        state.state_details = self.state_details.unwrap_or_default();
        // Clients send explicit nulls for unset details; keep only what carries information.
        state.state_details.retain(|_, v| !v.is_null());
        if state.state_type == StateType::Scheduled && state.scheduled_time().is_none() {
            state.set_scheduled_time(Some(now));
        }
        state
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetStateBody {
    pub state: StateCreate,
    #[serde(default)]
    pub force: bool,
    /// Sluice's own field (Prefect's clients never send it): accept only while the run is
    /// SCHEDULED. Sluice's worker claims with it.
    #[serde(default)]
    pub claim: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowRunCreate {
    #[serde(default)]
    pub name: Option<String>,
    pub flow_id: Id,
    #[serde(default)]
    pub deployment_id: Option<Id>,
    #[serde(default)]
    pub deployment_version: Option<String>,
    #[serde(default)]
    pub flow_version: Option<String>,
    #[serde(default)]
    pub parameters: JsonMap,
    #[serde(default)]
    pub context: JsonMap,
    #[serde(default)]
    pub parent_task_run_id: Option<Id>,
    #[serde(default)]
    pub infrastructure_document_id: Option<Id>,
    #[serde(default)]
    pub empirical_policy: Option<JsonMap>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub labels: Option<JsonMap>,
    #[serde(default)]
    pub idempotency_key: Option<String>,
    #[serde(default)]
    pub state: Option<StateCreate>,
    #[serde(default)]
    pub work_pool_name: Option<String>,
    #[serde(default)]
    pub work_queue_name: Option<String>,
    #[serde(default)]
    pub job_variables: Option<JsonMap>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowRunUpdate {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub flow_version: Option<String>,
    #[serde(default)]
    pub parameters: Option<JsonMap>,
    #[serde(default)]
    pub empirical_policy: Option<JsonMap>,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub infrastructure_pid: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub job_variables: Option<Option<JsonMap>>,
}

/// Prefect's default `empirical_policy`, overlaid with what the run stores.
fn empirical_policy(stored: &JsonMap) -> Value {
    let mut out = json!({
        "max_retries": 0,
        "retry_delay_seconds": 0.0,
        "retries": null,
        "retry_delay": null,
        "pause_keys": [],
        "resuming": false,
        "retry_type": null
    });
    if let Some(o) = out.as_object_mut() {
        for (k, v) in stored {
            o.insert(k.clone(), v.clone());
        }
    }
    out
}

/// Prefect's `state_details` with every field present, overlaid with what the state stores.
fn state_details(state: &State, run_id: Id) -> Value {
    let mut out = json!({
        "flow_run_id": run_id,
        "task_run_id": null,
        "child_flow_run_id": null,
        "scheduled_time": null,
        "cache_key": null,
        "cache_expiration": null,
        "deferred": false,
        "untrackable_result": false,
        "pause_timeout": null,
        "pause_reschedule": false,
        "pause_key": null,
        "run_input_keyset": null,
        "refresh_cache": null,
        "retriable": null,
        "transition_id": null,
        "task_parameters_id": null,
        "traceparent": null,
        "deployment_concurrency_lease_id": null
    });
    if let Some(o) = out.as_object_mut() {
        for (k, v) in &state.state_details {
            o.insert(k.clone(), v.clone());
        }
    }
    out
}

pub fn state_json(state: &State, run_id: Id) -> Value {
    json!({
        "id": state.id,
        "type": state.state_type.as_str(),
        "name": state.name,
        "timestamp": ts(state.timestamp),
        "message": state.message,
        "data": state.data,
        "state_details": state_details(state, run_id),
    })
}

pub fn flow_run_json(run: &FlowRun) -> Value {
    let created_by = run.created_by.as_ref().map(
        |c| json!({ "id": c.id, "type": c.created_by_type, "display_value": c.display_value }),
    );
    // How late the run started; runs that have not started report 0.
    let estimated_start_time_delta = match (run.start_time, run.expected_start_time) {
        (Some(start), Some(expected)) if start > expected => {
            (start - expected).num_microseconds().unwrap_or(0) as f64 / 1e6
        }
        _ => 0.0,
    };
    json!({
        "id": run.id,
        "created": ts(run.created),
        "updated": ts(run.updated),
        "name": run.name,
        "flow_id": run.flow_id,
        "state_id": run.state.as_ref().map(|s| s.id),
        "deployment_id": run.deployment_id,
        "deployment_version": run.deployment_version,
        "work_queue_id": run.work_queue_id,
        "work_queue_name": run.work_queue_name,
        "flow_version": run.flow_version,
        "parameters": run.parameters,
        "idempotency_key": run.idempotency_key,
        "context": run.context,
        "empirical_policy": empirical_policy(&run.empirical_policy),
        "tags": run.tags,
        "labels": run.labels,
        "parent_task_run_id": run.parent_task_run_id,
        "state_type": run.state_type().map(StateType::as_str),
        "state_name": run.state_name(),
        "run_count": run.run_count,
        "expected_start_time": ts_opt(run.expected_start_time),
        "next_scheduled_start_time": ts_opt(run.next_scheduled_start_time),
        "start_time": ts_opt(run.start_time),
        "end_time": ts_opt(run.end_time),
        "total_run_time": run.total_run_time,
        "estimated_run_time": run.total_run_time,
        "estimated_start_time_delta": estimated_start_time_delta,
        "auto_scheduled": run.auto_scheduled,
        "infrastructure_document_id": run.infrastructure_document_id,
        "infrastructure_pid": run.infrastructure_pid,
        "created_by": created_by,
        "work_pool_id": run.work_pool_id,
        "work_pool_name": run.work_pool_name,
        "state": run.state.as_ref().map(|s| state_json(s, run.id)),
        "job_variables": run.job_variables,
    })
}

#[derive(Debug, Serialize)]
pub struct OrchestrationResultResponse {
    pub state: Option<Value>,
    pub status: &'static str,
    pub details: Value,
}

fn graph_artifact_json(a: &sluice_core::graph::GraphArtifact) -> Value {
    json!({
        "id": a.id,
        "created": ts(a.created),
        "key": a.key,
        "type": a.artifact_type,
        "is_latest": a.is_latest,
        "data": a.data,
    })
}

/// Prefect's `Graph`: nodes as `[id, node]` pairs, the run's own artifacts and its states.
pub fn graph_json(graph: &sluice_core::graph::Graph, states: &[State]) -> Value {
    let edges = |ids: &[Id]| ids.iter().map(|id| json!({ "id": id })).collect::<Vec<_>>();
    json!({
        "start_time": ts_opt(graph.start_time),
        "end_time": ts_opt(graph.end_time),
        "root_node_ids": graph.root_node_ids,
        "nodes": graph.nodes.iter().map(|n| json!([n.id, {
            "kind": n.kind.as_str(),
            "id": n.id,
            "label": n.label,
            "state_type": n.state_type.map(StateType::as_str),
            "start_time": ts(n.start_time),
            "end_time": ts_opt(n.end_time),
            "parents": edges(&n.parents),
            "children": edges(&n.children),
            "encapsulating": edges(&n.encapsulating),
            "artifacts": n.artifacts.iter().map(graph_artifact_json).collect::<Vec<_>>(),
        }])).collect::<Vec<_>>(),
        "artifacts": graph.artifacts.iter().map(graph_artifact_json).collect::<Vec<_>>(),
        "states": states.iter().map(|s| json!({
            "id": s.id,
            "timestamp": ts(s.timestamp),
            "type": s.state_type.as_str(),
            "name": s.name,
        })).collect::<Vec<_>>(),
    })
}
