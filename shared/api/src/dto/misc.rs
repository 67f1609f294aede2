//! Variables, block documents and logs on the wire.

use serde::Deserialize;
use serde_json::{Value, json};
use sluice_core::domain::{BlockDocument, Id, LogEntry, Timestamp, Variable};

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
pub struct BlockDocumentCreate {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub data: Value,
    /// Prefect identifies the type by id; Sluice keys documents by the type's slug, which
    /// clients may send directly. One of the two is needed.
    #[serde(default)]
    pub block_type_slug: Option<String>,
    #[serde(default)]
    pub block_type_id: Option<Id>,
    #[serde(default)]
    pub block_schema_id: Option<Id>,
    #[serde(default)]
    pub is_anonymous: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockDocumentUpdate {
    #[serde(default)]
    pub data: Option<Value>,
    #[serde(default)]
    pub merge_existing_data: Option<bool>,
    #[serde(default)]
    pub block_schema_id: Option<Id>,
}

pub fn block_json(b: &BlockDocument) -> Value {
    json!({
        "id": b.id,
        "created": ts(b.created),
        "updated": ts(b.updated),
        "name": b.name,
        "data": b.data,
        "block_schema_id": b.block_schema_id,
        "block_type_id": b.block_type_id,
        "block_type_name": b.block_type_slug,
        "block_type": { "id": b.block_type_id, "slug": b.block_type_slug, "name": b.block_type_slug },
        "block_document_references": {},
        "is_anonymous": b.is_anonymous,
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
