//! Flows, variables, block documents and logs.

use super::{Id, JsonMap, Timestamp};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Flow {
    pub id: Id,
    pub created: Timestamp,
    pub updated: Timestamp,
    pub name: String,
    pub tags: Vec<String>,
    pub labels: JsonMap,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Variable {
    pub id: Id,
    pub created: Timestamp,
    pub updated: Timestamp,
    pub name: String,
    pub value: serde_json::Value,
    pub tags: Vec<String>,
}

/// A kind of block (`secret`, `json`, `aws-credentials`): Prefect's `BlockType`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockType {
    pub id: Id,
    pub created: Timestamp,
    pub updated: Timestamp,
    pub name: String,
    pub slug: String,
    pub logo_url: Option<String>,
    pub documentation_url: Option<String>,
    pub description: Option<String>,
    pub code_example: Option<String>,
    /// Installed by the server itself: clients may not change or delete it.
    pub is_protected: bool,
}

/// One version of a block type's fields, as a JSON schema, identified by its checksum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockSchema {
    pub id: Id,
    pub created: Timestamp,
    pub updated: Timestamp,
    /// `sha256:<hex>` of the schema (Prefect's client computes it; the server keeps it).
    pub checksum: String,
    pub fields: serde_json::Value,
    pub block_type_id: Id,
    pub capabilities: Vec<String>,
    pub version: String,
}

/// A block document: enough of Prefect's block model for template resolution
/// (`{{ prefect.blocks.<slug>.<name> }}` and `{"$ref": {"block_document_id": ...}}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockDocument {
    pub id: Id,
    pub created: Timestamp,
    pub updated: Timestamp,
    pub name: Option<String>,
    pub data: serde_json::Value,
    pub block_type_slug: String,
    pub block_type_id: Option<Id>,
    pub block_schema_id: Option<Id>,
    pub is_anonymous: bool,
}

/// Something a run made for people to read: markdown, a table, a link, progress. Artifacts
/// with the same `key` are versions of one thing; the newest is its latest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Artifact {
    pub id: Id,
    pub created: Timestamp,
    pub updated: Timestamp,
    pub key: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub description: Option<String>,
    pub data: serde_json::Value,
    pub metadata: Option<std::collections::BTreeMap<String, String>>,
    pub flow_run_id: Option<Id>,
    pub task_run_id: Option<Id>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    pub id: Id,
    pub created: Timestamp,
    pub name: String,
    pub level: i64,
    pub message: String,
    pub timestamp: Timestamp,
    pub flow_run_id: Option<Id>,
    pub task_run_id: Option<Id>,
    pub worker_id: Option<Id>,
}

/// An API key as stored: only the SHA-256 of the secret is kept, so a leaked table does not leak
/// working keys. `prefix` (the secret's first characters) lets a user tell keys apart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKey {
    pub id: Id,
    pub created: Timestamp,
    pub name: String,
    /// Lower-case hex SHA-256 of the whole secret.
    pub hash: String,
    pub prefix: String,
}
