//! Blocks: block types (`/block_types`), block schemas (`/block_schemas`), capabilities and
//! block documents (`/block_documents`), as Prefect's `server/api/block_*.py` serve them.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde_json::{Value, json};
use sluice_core::domain::{BlockDocument, validate_name};
use sluice_services::{BlockDocumentInput, BlockTypeInput, BlockTypePatch};

use crate::AppState;
use crate::dto::blocks::{
    BlockDocumentCreate, BlockDocumentUpdate, BlockSchemaCreate, BlockTypeCreate, BlockTypeUpdate,
    block_document_json, block_schema_json, block_type_json,
};
use crate::dto::filters::{block_document_query, only_keys, paging};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, PathId};

/// `?include_secrets=true` (anything else, or absent, is false).
fn include_secrets(q: &HashMap<String, String>) -> bool {
    q.get("include_secrets").is_some_and(|v| v == "true")
}

// ---- block types -------------------------------------------------------------------------

pub async fn create_type(
    State(app): State<AppState>,
    Body(body): Body<BlockTypeCreate>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let t = app
        .services
        .create_block_type(BlockTypeInput {
            name: body.name,
            slug: body.slug,
            logo_url: body.logo_url,
            documentation_url: body.documentation_url,
            description: body.description,
            code_example: body.code_example,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(block_type_json(&t))))
}

pub async fn filter_types(
    State(app): State<AppState>,
    Body(body): Body<Value>,
) -> ApiResult<Json<Vec<Value>>> {
    only_keys(&body, &["block_types", "block_schemas", "limit", "offset"])?;
    let (limit, offset) = paging(&body)?;
    let slugs: Option<Vec<String>> = body
        .pointer("/block_types/slug/any_")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        });
    let like = body
        .pointer("/block_types/name/like_")
        .and_then(Value::as_str)
        .map(str::to_lowercase);
    let types = app.services.store.list_block_types().await?;
    let out: Vec<Value> = types
        .iter()
        .filter(|t| slugs.as_ref().is_none_or(|s| s.contains(&t.slug)))
        .filter(|t| {
            like.as_ref()
                .is_none_or(|l| t.name.to_lowercase().contains(l))
        })
        .skip(offset)
        .take(limit)
        .map(block_type_json)
        .collect();
    Ok(Json(out))
}

pub async fn read_type(State(app): State<AppState>, PathId(id): PathId) -> ApiResult<Json<Value>> {
    Ok(Json(block_type_json(
        &app.services.read_block_type(id).await?,
    )))
}

pub async fn read_type_by_slug(
    State(app): State<AppState>,
    Path(slug): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(block_type_json(
        &app.services.read_block_type_by_slug(&slug).await?,
    )))
}

pub async fn update_type(
    State(app): State<AppState>,
    PathId(id): PathId,
    Body(body): Body<BlockTypeUpdate>,
) -> ApiResult<StatusCode> {
    let patch = BlockTypePatch {
        logo_url: body.logo_url,
        documentation_url: body.documentation_url,
        description: body.description,
        code_example: body.code_example,
    };
    app.services.update_block_type(id, patch).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn delete_type(State(app): State<AppState>, PathId(id): PathId) -> ApiResult<StatusCode> {
    app.services.delete_block_type(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn install_system_types(State(app): State<AppState>) -> ApiResult<Json<Value>> {
    app.services.install_system_block_types().await?;
    Ok(Json(Value::Null))
}

/// The named documents of a type, by name (anonymous ones left out).
pub async fn type_documents(
    State(app): State<AppState>,
    Path(slug): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Vec<Value>>> {
    app.services.read_block_type_by_slug(&slug).await?;
    let mut docs = app
        .services
        .store
        .list_block_documents(Some(&slug), None, 0)
        .await?;
    docs.retain(|d| !d.is_anonymous);
    docs.sort_by(|a, b| a.name.cmp(&b.name));
    full_list(&app, docs, include_secrets(&q)).await.map(Json)
}

pub async fn read_document_by_name(
    State(app): State<AppState>,
    Path((slug, name)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let full = app
        .services
        .read_block_document_by_name(&slug, &name)
        .await?;
    Ok(Json(block_document_json(&full, include_secrets(&q))))
}

// ---- block schemas -----------------------------------------------------------------------

pub async fn create_schema(
    State(app): State<AppState>,
    Body(body): Body<BlockSchemaCreate>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let (schema, created) = app
        .services
        .create_block_schema(
            body.fields,
            body.block_type_id,
            body.capabilities,
            body.version,
        )
        .await?;
    let block_type = app
        .services
        .store
        .read_block_type(schema.block_type_id)
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(block_schema_json(&schema, block_type.as_ref())),
    ))
}

pub async fn filter_schemas(
    State(app): State<AppState>,
    Body(body): Body<Value>,
) -> ApiResult<Json<Vec<Value>>> {
    only_keys(&body, &["block_schemas", "limit", "offset"])?;
    let (limit, offset) = paging(&body)?;
    let strings = |pointer: &str| -> Option<Vec<String>> {
        body.pointer(pointer).and_then(Value::as_array).map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
    };
    let type_ids = strings("/block_schemas/block_type_id/any_");
    let capabilities = strings("/block_schemas/block_capabilities/all_");
    let versions = strings("/block_schemas/version/any_");
    let ids = strings("/block_schemas/id/any_");
    let schemas = app.services.store.list_block_schemas(None).await?;
    let types = app.services.store.list_block_types().await?;
    let out: Vec<Value> = schemas
        .iter()
        .filter(|s| {
            type_ids
                .as_ref()
                .is_none_or(|t| t.contains(&s.block_type_id.to_string()))
        })
        .filter(|s| ids.as_ref().is_none_or(|t| t.contains(&s.id.to_string())))
        .filter(|s| versions.as_ref().is_none_or(|v| v.contains(&s.version)))
        .filter(|s| {
            capabilities
                .as_ref()
                .is_none_or(|c| c.iter().all(|c| s.capabilities.contains(c)))
        })
        .skip(offset)
        .take(limit)
        .map(|s| block_schema_json(s, types.iter().find(|t| t.id == s.block_type_id)))
        .collect();
    Ok(Json(out))
}

pub async fn read_schema(
    State(app): State<AppState>,
    PathId(id): PathId,
) -> ApiResult<Json<Value>> {
    let schema = app.services.read_block_schema(id).await?;
    let block_type = app
        .services
        .store
        .read_block_type(schema.block_type_id)
        .await?;
    Ok(Json(block_schema_json(&schema, block_type.as_ref())))
}

pub async fn read_schema_by_checksum(
    State(app): State<AppState>,
    Path(checksum): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let schema = app
        .services
        .read_block_schema_by_checksum(&checksum, q.get("version").map(String::as_str))
        .await?;
    let block_type = app
        .services
        .store
        .read_block_type(schema.block_type_id)
        .await?;
    Ok(Json(block_schema_json(&schema, block_type.as_ref())))
}

pub async fn delete_schema(
    State(app): State<AppState>,
    PathId(id): PathId,
) -> ApiResult<StatusCode> {
    app.services.delete_block_schema(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn capabilities(State(app): State<AppState>) -> ApiResult<Json<Vec<String>>> {
    Ok(Json(app.services.block_capabilities().await?))
}

// ---- block documents ---------------------------------------------------------------------

async fn full_list(
    app: &AppState,
    docs: Vec<BlockDocument>,
    include_secrets: bool,
) -> ApiResult<Vec<Value>> {
    let mut out = Vec::with_capacity(docs.len());
    for d in docs {
        let full = app.services.full_block_document(d).await?;
        out.push(block_document_json(&full, include_secrets));
    }
    Ok(out)
}

pub async fn create_document(
    State(app): State<AppState>,
    Body(body): Body<BlockDocumentCreate>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    if let (Some(block_type_id), Some(block_schema_id)) = (body.block_type_id, body.block_schema_id)
    {
        let full = app
            .services
            .create_block_document(BlockDocumentInput {
                name: body.name,
                data: if body.data.is_null() {
                    json!({})
                } else {
                    body.data
                },
                block_type_id,
                block_schema_id,
                is_anonymous: body.is_anonymous,
            })
            .await?;
        return Ok((StatusCode::CREATED, Json(block_document_json(&full, false))));
    }
    // Sluice's shortcut: a document named by its type's slug alone.
    let slug = match (body.block_type_slug, body.block_type_id) {
        (Some(slug), _) => slug,
        (None, Some(id)) => app.services.read_block_type(id).await?.slug,
        (None, None) => {
            return Err(ApiError::invalid_field(
                vec!["body".into(), "block_type_slug".into()],
                "block_type_id and block_schema_id (or Sluice's block_type_slug) are required",
            ));
        }
    };
    if body.name.is_none() && !body.is_anonymous {
        return Err(ApiError::invalid_field(
            vec!["body".into(), "name".into()],
            "a block document needs a name unless it is anonymous",
        ));
    }
    if let Some(name) = &body.name {
        validate_name(name).map_err(|e| {
            ApiError::invalid_field(vec!["body".into(), "name".into()], e.to_string())
        })?;
    }
    let now = app.services.now();
    let block_type = app.services.store.read_block_type_by_slug(&slug).await?;
    let block = BlockDocument {
        id: uuid::Uuid::new_v4(),
        created: now,
        updated: now,
        name: body.name,
        data: body.data,
        block_type_slug: slug,
        block_type_id: block_type.as_ref().map(|t| t.id),
        block_schema_id: body.block_schema_id,
        is_anonymous: body.is_anonymous,
    };
    app.services
        .store
        .create_block_document(&block)
        .await
        .map_err(|e| match e {
            sluice_store::StoreError::Conflict(_) => {
                ApiError::Detail(StatusCode::CONFLICT, "Block already exists".to_owned())
            }
            other => other.into(),
        })?;
    let full = app.services.full_block_document(block).await?;
    Ok((StatusCode::CREATED, Json(block_document_json(&full, false))))
}

pub async fn read_document(
    State(app): State<AppState>,
    PathId(id): PathId,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let full = app.services.read_block_document(id).await?;
    Ok(Json(block_document_json(&full, include_secrets(&q))))
}

pub async fn update_document(
    State(app): State<AppState>,
    PathId(id): PathId,
    Body(body): Body<BlockDocumentUpdate>,
) -> ApiResult<StatusCode> {
    app.services
        .update_block_document(
            id,
            body.data,
            body.merge_existing_data.unwrap_or(true),
            body.block_schema_id,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn delete_document(
    State(app): State<AppState>,
    PathId(id): PathId,
) -> ApiResult<StatusCode> {
    if !app.services.store.delete_block_document(id).await? {
        return Err(ApiError::not_found("Block document not found"));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The documents a filter selects: by one type slug, paged; anonymous ones only when asked.
async fn filtered_documents(app: &AppState, body: &Value) -> ApiResult<Vec<BlockDocument>> {
    // `block_schema_type` is what the stock client's `read_block_documents` sends; Prefect's
    // server has no such parameter and ignores it, and so does Sluice.
    only_keys(
        body,
        &[
            "block_documents",
            "block_types",
            "block_schemas",
            "block_schema_type",
            "include_secrets",
            "sort",
            "limit",
            "offset",
        ],
    )?;
    let q = block_document_query(body)?;
    let mut docs = app
        .services
        .store
        .list_block_documents(q.slug.as_deref(), None, 0)
        .await?;
    docs.retain(|d| q.keep(d));
    if let Some(wanted) = &q.capabilities_all {
        let mut capable = HashMap::new();
        let mut kept = Vec::with_capacity(docs.len());
        for d in docs {
            let Some(schema_id) = d.block_schema_id else {
                continue;
            };
            let keep = match capable.get(&schema_id) {
                Some(known) => *known,
                None => {
                    let caps = app
                        .services
                        .store
                        .read_block_schema(schema_id)
                        .await?
                        .map(|s| s.capabilities)
                        .unwrap_or_default();
                    let all = wanted.iter().all(|w| caps.contains(w));
                    capable.insert(schema_id, all);
                    all
                }
            };
            if keep {
                kept.push(d);
            }
        }
        docs = kept;
    }
    q.order(&mut docs);
    Ok(docs)
}

pub async fn filter_documents(
    State(app): State<AppState>,
    Body(body): Body<Value>,
) -> ApiResult<Json<Vec<Value>>> {
    let (limit, offset) = paging(&body)?;
    let docs: Vec<BlockDocument> = filtered_documents(&app, &body)
        .await?
        .into_iter()
        .skip(offset)
        .take(limit)
        .collect();
    let secrets = body.get("include_secrets").and_then(Value::as_bool) == Some(true);
    full_list(&app, docs, secrets).await.map(Json)
}

pub async fn count_documents(
    State(app): State<AppState>,
    Body(body): Body<Value>,
) -> ApiResult<Json<usize>> {
    Ok(Json(filtered_documents(&app, &body).await?.len()))
}
