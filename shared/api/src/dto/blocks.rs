//! Block types, block schemas and block documents on the wire.

use serde::Deserialize;
use serde_json::{Value, json};
use sluice_core::blocks::obfuscate;
use sluice_core::domain::{BlockSchema, BlockType, Id};
use sluice_services::FullBlockDocument;

use super::{nullable, ts};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockTypeCreate {
    pub name: String,
    pub slug: String,
    #[serde(default)]
    pub logo_url: Option<String>,
    #[serde(default)]
    pub documentation_url: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub code_example: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockTypeUpdate {
    #[serde(default, deserialize_with = "nullable")]
    pub logo_url: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub documentation_url: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub description: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub code_example: Option<Option<String>>,
}

fn non_versioned() -> String {
    "non-versioned".to_owned()
}

/// `BlockSchemaCreate`: no checksum (the server computes it).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockSchemaCreate {
    #[serde(default)]
    pub fields: Value,
    pub block_type_id: Id,
    #[serde(default)]
    pub capabilities: Vec<String>,
    #[serde(default = "non_versioned")]
    pub version: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockDocumentCreate {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub data: Value,
    /// Prefect's clients name the type and schema by id. Sluice also takes a type's slug alone
    /// (its own shortcut for documents templates reference); such a document is not tied to a
    /// catalogued schema.
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

pub fn block_type_json(t: &BlockType) -> Value {
    json!({
        "id": t.id,
        "created": ts(t.created),
        "updated": ts(t.updated),
        "name": t.name,
        "slug": t.slug,
        "logo_url": t.logo_url,
        "documentation_url": t.documentation_url,
        "description": t.description,
        "code_example": t.code_example,
        "is_protected": t.is_protected,
    })
}

/// A schema with its type embedded; `fields` always carries `block_schema_references`.
pub fn block_schema_json(s: &BlockSchema, block_type: Option<&BlockType>) -> Value {
    let mut fields = s.fields.clone();
    if let Some(map) = fields.as_object_mut() {
        map.entry("block_schema_references")
            .or_insert_with(|| json!({}));
    }
    json!({
        "id": s.id,
        "created": ts(s.created),
        "updated": ts(s.updated),
        "checksum": s.checksum,
        "fields": fields,
        "block_type_id": s.block_type_id,
        "block_type": block_type.map(block_type_json),
        "capabilities": s.capabilities,
        "version": s.version,
    })
}

/// A document with its schema and type embedded; secret fields masked unless
/// `include_secrets`.
fn document_block_type_json(full: &FullBlockDocument) -> Value {
    let b = &full.document;
    match &full.block_type {
        Some(t) => block_type_json(t),
        None => {
            json!({ "id": b.block_type_id, "slug": b.block_type_slug, "name": b.block_type_slug })
        }
    }
}

/// Prefect's `block_document_references`: per referring field, the referred document's
/// identity and its own references.
fn references_json(full: &FullBlockDocument) -> Value {
    full.references
        .iter()
        .map(|(field, child)| {
            let d = &child.document;
            let summary = json!({"block_document": {
                "id": d.id,
                "name": d.name,
                "block_type": document_block_type_json(child),
                "is_anonymous": d.is_anonymous,
                "block_document_references": references_json(child),
            }});
            (field.clone(), summary)
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

pub fn block_document_json(full: &FullBlockDocument, include_secrets: bool) -> Value {
    let b = &full.document;
    let data = if include_secrets {
        full.data()
    } else {
        obfuscate(&full.data(), &full.secret_paths())
    };
    json!({
        "id": b.id,
        "created": ts(b.created),
        "updated": ts(b.updated),
        "name": b.name,
        "data": data,
        "block_schema_id": b.block_schema_id,
        "block_schema": full
            .block_schema
            .as_ref()
            .map(|s| block_schema_json(s, full.block_type.as_ref())),
        "block_type_id": b.block_type_id,
        "block_type_name": full.block_type.as_ref().map_or(&b.block_type_slug, |t| &t.name),
        "block_type": document_block_type_json(full),
        "block_document_references": references_json(full),
        "is_anonymous": b.is_anonymous,
    })
}
