//! Variables and logs on the wire.

use serde::Deserialize;
use serde_json::{Value, json};
use sluice_core::domain::{Id, LogEntry, Timestamp, Variable};

use super::{nullable, timestamp, ts};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariableCreate {
    pub name: String,
    pub value: Value,
    #[serde(default)]
    pub tags: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariableUpdate {
    #[serde(default)]
    pub name: Option<String>,
    /// `Some(None)` is an explicit null, which Prefect stores (null is a valid value).
    #[serde(default, deserialize_with = "nullable")]
    pub value: Option<Option<Value>>,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
}

pub fn variable_json(v: &Variable) -> Value {
    json!({
        "id": v.id,
        "created": ts(v.created),
        "updated": ts(v.updated),
        "name": v.name,
        "value": v.value,
        "tags": v.tags,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogCreate {
    pub name: String,
    pub level: i64,
    pub message: String,
    #[serde(deserialize_with = "timestamp")]
    pub timestamp: Option<Timestamp>,
    #[serde(default)]
    pub flow_run_id: Option<Id>,
    #[serde(default)]
    pub task_run_id: Option<Id>,
    #[serde(default)]
    pub worker_id: Option<Id>,
}

pub fn log_json(l: &LogEntry) -> Value {
    json!({
        "id": l.id,
        "created": ts(l.created),
        "updated": ts(l.created),
        "name": l.name,
        "level": l.level,
        "message": l.message,
        "timestamp": ts(l.timestamp),
        "flow_run_id": l.flow_run_id,
        "task_run_id": l.task_run_id,
        "worker_id": l.worker_id,
    })
}
