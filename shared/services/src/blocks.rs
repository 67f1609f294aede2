//! Blocks: the catalog (block types and their schemas) and block documents tied to them.
//!
//! Prefect's client registers a block's type and schema itself before it saves a document, so
//! any block class works; the server installs the system types on start, protected, as
//! Prefect's does, so the catalog is not empty before the first save.

use serde_json::Value;
use sluice_core::blocks;
use sluice_core::domain::{BlockDocument, BlockSchema, BlockType, Id};
use sluice_store::StoreError;

use crate::Services;
use crate::error::{Result, ServiceError};

/// A new block type (Prefect's `BlockTypeCreate`).
#[derive(Debug, Clone, Default)]
pub struct BlockTypeInput {
    pub name: String,
    pub slug: String,
    pub logo_url: Option<String>,
    pub documentation_url: Option<String>,
    pub description: Option<String>,
    pub code_example: Option<String>,
}

/// Fields of a block type a client may change (`None`: unchanged).
#[derive(Debug, Clone, Default)]
pub struct BlockTypePatch {
    pub logo_url: Option<Option<String>>,
    pub documentation_url: Option<Option<String>>,
    pub description: Option<Option<String>>,
    pub code_example: Option<Option<String>>,
}

/// A new block document of a catalogued type (Prefect's `BlockDocumentCreate`).
#[derive(Debug, Clone)]
pub struct BlockDocumentInput {
    pub name: Option<String>,
    pub data: Value,
    pub block_type_id: Id,
    pub block_schema_id: Id,
    pub is_anonymous: bool,
}

/// A block document with the type and schema it belongs to, when they are catalogued, and
/// the documents its fields refer to (`$ref`), each read the same way.
#[derive(Debug, Clone)]
pub struct FullBlockDocument {
    pub document: BlockDocument,
    pub block_type: Option<BlockType>,
    pub block_schema: Option<BlockSchema>,
    /// (field, the document it points at); a reference to a deleted document is left out.
    pub references: Vec<(String, FullBlockDocument)>,
}

/// How deep references are followed: a cycle (made by updates) ends here, not in a stack
/// overflow.
const MAX_REFERENCE_DEPTH: usize = 8;

impl FullBlockDocument {
    /// The secret paths of the schema and, under each referring field, of the referred
    /// document's schema.
    pub fn secret_paths(&self) -> Vec<String> {
        let mut paths = self
            .block_schema
            .as_ref()
            .map(|s| blocks::secret_paths(&s.fields))
            .unwrap_or_default();
        for (field, child) in &self.references {
            paths.extend(
                child
                    .secret_paths()
                    .into_iter()
                    .map(|p| format!("{field}.{p}")),
            );
        }
        paths.sort();
        paths.dedup();
        paths
    }

    /// The data as a client loads it: each reference replaced by the referred document's
    /// data; references to deleted documents dropped.
    pub fn data(&self) -> Value {
        let mut data = self.document.data.clone();
        if let Some(map) = data.as_object_mut() {
            map.retain(|_, v| v.as_object().is_none_or(|o| !o.contains_key("$ref")));
            for (field, child) in &self.references {
                map.insert(field.clone(), child.data());
            }
        }
        data
    }
}

fn type_not_found() -> ServiceError {
    ServiceError::NotFound("Block type not found".to_owned())
}

fn schema_not_found() -> ServiceError {
    ServiceError::NotFound("Block schema not found".to_owned())
}

fn document_not_found() -> ServiceError {
    ServiceError::NotFound("Block document not found".to_owned())
}

/// The block types Sluice installs on start, protected: (name, slug, description). Prefect 3
/// protects the first three; the last three are Prefect 2's value blocks, kept for 2.x
/// clients. A client registers each one's schema on its first save.
const SYSTEM_TYPES: [(&str, &str, &str); 6] = [
    (
        "Secret",
        "secret",
        "A value kept secret: it reads as ******** unless secrets are asked for.",
    ),
    ("Webhook", "webhook", "An HTTP endpoint a flow calls."),
    (
        "Local File System",
        "local-file-system",
        "A directory on the machine that runs the flow.",
    ),
    ("JSON", "json", "Any value that JSON can hold."),
    ("String", "string", "A string value."),
    ("Date Time", "date-time", "A date and time."),
];

impl Services {
    // ---- block types -------------------------------------------------------------------

    pub async fn create_block_type(&self, input: BlockTypeInput) -> Result<BlockType> {
        sluice_core::domain::validate_name(&input.name)
            .map_err(|e| ServiceError::Invalid(e.to_string()))?;
        if input.name.to_lowercase().starts_with("prefect") {
            return Err(ServiceError::Forbidden(
                "Block type names beginning with 'Prefect' are reserved.".to_owned(),
            ));
        }
        if input.slug.is_empty() || !blocks::is_slug(&input.slug) {
            return Err(ServiceError::Invalid(
                "Block type slug must only contain lowercase letters, numbers, and dashes."
                    .to_owned(),
            ));
        }
        let now = self.now();
        let block_type = BlockType {
            id: uuid::Uuid::new_v4(),
            created: now,
            updated: now,
            name: input.name,
            slug: input.slug,
            logo_url: input.logo_url,
            documentation_url: input.documentation_url,
            description: input.description,
            code_example: input.code_example,
            is_protected: false,
        };
        self.store
            .create_block_type(&block_type)
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => ServiceError::Conflict(format!(
                    "Block type with name \"{}\" already exists",
                    block_type.name
                )),
                other => other.into(),
            })?;
        Ok(block_type)
    }

    pub async fn read_block_type(&self, id: Id) -> Result<BlockType> {
        self.store
            .read_block_type(id)
            .await?
            .ok_or_else(type_not_found)
    }

    pub async fn read_block_type_by_slug(&self, slug: &str) -> Result<BlockType> {
        self.store
            .read_block_type_by_slug(slug)
            .await?
            .ok_or_else(type_not_found)
    }

    pub async fn update_block_type(&self, id: Id, patch: BlockTypePatch) -> Result<()> {
        let mut t = self.read_block_type(id).await?;
        if let Some(v) = patch.logo_url {
            t.logo_url = v;
        }
        if let Some(v) = patch.documentation_url {
            t.documentation_url = v;
        }
        if let Some(v) = patch.description {
            t.description = v;
        }
        if let Some(v) = patch.code_example {
            t.code_example = v;
        }
        t.updated = self.now();
        self.store.update_block_type(&t).await?;
        Ok(())
    }

    /// Deletes a type with its schemas and documents; a protected type is refused.
    pub async fn delete_block_type(&self, id: Id) -> Result<()> {
        let t = self.read_block_type(id).await?;
        if t.is_protected {
            return Err(ServiceError::Forbidden(
                "protected block types cannot be deleted.".to_owned(),
            ));
        }
        for doc in self
            .store
            .list_block_documents(Some(&t.slug), None, 0)
            .await?
        {
            self.store.delete_block_document(doc.id).await?;
        }
        self.store.delete_block_type(id).await?;
        Ok(())
    }

    /// Installs (or marks protected) the system block types. Safe to run again and at once
    /// from several processes.
    pub async fn install_system_block_types(&self) -> Result<()> {
        for (name, slug, description) in SYSTEM_TYPES {
            match self.store.read_block_type_by_slug(slug).await? {
                Some(t) if t.is_protected => {}
                Some(mut t) => {
                    t.is_protected = true;
                    t.updated = self.now();
                    self.store.update_block_type(&t).await?;
                }
                None => {
                    let now = self.now();
                    let t = BlockType {
                        id: uuid::Uuid::new_v4(),
                        created: now,
                        updated: now,
                        name: name.to_owned(),
                        slug: slug.to_owned(),
                        logo_url: None,
                        documentation_url: None,
                        description: Some(description.to_owned()),
                        code_example: None,
                        is_protected: true,
                    };
                    match self.store.create_block_type(&t).await {
                        Ok(()) | Err(StoreError::Conflict(_)) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        Ok(())
    }

    // ---- block schemas -----------------------------------------------------------------

    /// Registers a schema; the checksum is computed here, never taken from the client. An
    /// existing schema with that checksum and version is answered instead (`false`).
    pub async fn create_block_schema(
        &self,
        fields: Value,
        block_type_id: Id,
        capabilities: Vec<String>,
        version: String,
    ) -> Result<(BlockSchema, bool)> {
        if self.store.read_block_type(block_type_id).await?.is_none() {
            return Err(ServiceError::NotFound(format!(
                "Block type {block_type_id} not found."
            )));
        }
        if !fields.is_object() {
            return Err(ServiceError::Invalid(
                "fields must be a JSON schema object".to_owned(),
            ));
        }
        let checksum = blocks::schema_checksum(&fields);
        for _ in 0..2 {
            if let Some(existing) = self
                .store
                .read_block_schema_by_checksum(&checksum, Some(&version))
                .await?
            {
                return Ok((existing, false));
            }
            let now = self.now();
            let schema = BlockSchema {
                id: uuid::Uuid::new_v4(),
                created: now,
                updated: now,
                checksum: checksum.clone(),
                fields: fields.clone(),
                block_type_id,
                capabilities: capabilities.clone(),
                version: version.clone(),
            };
            match self.store.create_block_schema(&schema).await {
                Ok(()) => return Ok((schema, true)),
                // Registered by someone else meanwhile: answer theirs.
                Err(StoreError::Conflict(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Err(ServiceError::Conflict(format!(
            "block schema {checksum} kept changing; try again"
        )))
    }

    pub async fn read_block_schema(&self, id: Id) -> Result<BlockSchema> {
        self.store
            .read_block_schema(id)
            .await?
            .ok_or_else(schema_not_found)
    }

    pub async fn read_block_schema_by_checksum(
        &self,
        checksum: &str,
        version: Option<&str>,
    ) -> Result<BlockSchema> {
        self.store
            .read_block_schema_by_checksum(checksum, version)
            .await?
            .ok_or_else(schema_not_found)
    }

    pub async fn delete_block_schema(&self, id: Id) -> Result<()> {
        let schema = self.read_block_schema(id).await?;
        if let Some(t) = self.store.read_block_type(schema.block_type_id).await?
            && t.is_protected
        {
            return Err(ServiceError::Forbidden(
                "Block schemas for protected block types cannot be deleted.".to_owned(),
            ));
        }
        self.store.delete_block_schema(id).await?;
        Ok(())
    }

    /// Every capability some schema declares, sorted.
    pub async fn block_capabilities(&self) -> Result<Vec<String>> {
        let mut all: Vec<String> = self
            .store
            .list_block_schemas(None)
            .await?
            .into_iter()
            .flat_map(|s| s.capabilities)
            .collect();
        all.sort();
        all.dedup();
        Ok(all)
    }

    // ---- block documents ---------------------------------------------------------------

    /// A document of a catalogued type, with its schema's required fields present.
    pub async fn create_block_document(
        &self,
        input: BlockDocumentInput,
    ) -> Result<FullBlockDocument> {
        let block_type = self.read_block_type(input.block_type_id).await?;
        let schema = self
            .store
            .read_block_schema(input.block_schema_id)
            .await?
            .ok_or_else(|| {
                ServiceError::NotFound(format!("Block schema {} not found.", input.block_schema_id))
            })?;
        if schema.block_type_id != block_type.id {
            return Err(ServiceError::Invalid(format!(
                "block schema {} is not a schema of block type {:?}",
                schema.id, block_type.slug
            )));
        }
        check_data(&input.data, &schema)?;
        self.check_references(&input.data).await?;
        let name = match (input.name, input.is_anonymous) {
            (Some(n), _) => {
                check_document_name(&n)?;
                Some(n)
            }
            (None, true) => Some(format!("anonymous-{}", uuid::Uuid::new_v4())),
            (None, false) => {
                return Err(ServiceError::Invalid(
                    "Names must be provided for block documents.".to_owned(),
                ));
            }
        };
        let now = self.now();
        let document = BlockDocument {
            id: uuid::Uuid::new_v4(),
            created: now,
            updated: now,
            name,
            data: input.data,
            block_type_slug: block_type.slug.clone(),
            block_type_id: Some(block_type.id),
            block_schema_id: Some(schema.id),
            is_anonymous: input.is_anonymous,
        };
        self.store
            .create_block_document(&document)
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => {
                    ServiceError::Conflict("Block already exists".to_owned())
                }
                other => other.into(),
            })?;
        self.full_block_document(document).await
    }

    /// A stored document with its type and schema, and the documents it refers to.
    pub async fn full_block_document(&self, document: BlockDocument) -> Result<FullBlockDocument> {
        self.full_block_document_at(document, 0).await
    }

    async fn full_block_document_at(
        &self,
        document: BlockDocument,
        depth: usize,
    ) -> Result<FullBlockDocument> {
        let mut references = Vec::new();
        if depth < MAX_REFERENCE_DEPTH {
            // Stored references were checked when written; one that no longer parses is skipped.
            for (field, id) in blocks::references(&document.data).unwrap_or_default() {
                if let Some(child) = self.store.read_block_document(id).await? {
                    let child = Box::pin(self.full_block_document_at(child, depth + 1)).await?;
                    references.push((field, child));
                }
            }
        }
        let block_type = match document.block_type_id {
            Some(id) => self.store.read_block_type(id).await?,
            None => {
                self.store
                    .read_block_type_by_slug(&document.block_type_slug)
                    .await?
            }
        };
        let block_schema = match document.block_schema_id {
            Some(id) => self.store.read_block_schema(id).await?,
            None => None,
        };
        Ok(FullBlockDocument {
            document,
            block_type,
            block_schema,
            references,
        })
    }

    /// Every reference in `data` must name a document that exists.
    async fn check_references(&self, data: &Value) -> Result<()> {
        for (field, id) in blocks::references(data).map_err(ServiceError::Invalid)? {
            if self.store.read_block_document(id).await?.is_none() {
                return Err(ServiceError::Invalid(format!(
                    "data.{field} refers to block document {id}, which does not exist"
                )));
            }
        }
        Ok(())
    }

    pub async fn read_block_document(&self, id: Id) -> Result<FullBlockDocument> {
        let doc = self
            .store
            .read_block_document(id)
            .await?
            .ok_or_else(document_not_found)?;
        self.full_block_document(doc).await
    }

    pub async fn read_block_document_by_name(
        &self,
        slug: &str,
        name: &str,
    ) -> Result<FullBlockDocument> {
        let doc = self
            .store
            .read_block_document_by_name(slug, name)
            .await?
            .ok_or_else(document_not_found)?;
        self.full_block_document(doc).await
    }

    /// Changes a document's data (merged over the old by default) and schema. Secret values
    /// sent back masked keep their stored value.
    pub async fn update_block_document(
        &self,
        id: Id,
        data: Option<Value>,
        merge_existing_data: bool,
        block_schema_id: Option<Id>,
    ) -> Result<()> {
        let full = self.read_block_document(id).await?;
        let mut doc = full.document.clone();
        let mut schema = full.block_schema.clone();
        if let Some(schema_id) = block_schema_id {
            let next = self.read_block_schema(schema_id).await?;
            if doc.block_type_id.is_some_and(|t| t != next.block_type_id) {
                return Err(ServiceError::BadRequest(
                    "Must migrate block document to a block schema of the same block type."
                        .to_owned(),
                ));
            }
            doc.block_schema_id = Some(next.id);
            schema = Some(next);
        }
        if let Some(new) = data {
            let merged = match (merge_existing_data, doc.data.as_object(), new) {
                (true, Some(existing), Value::Object(new)) => {
                    let mut out = existing.clone();
                    out.extend(new);
                    Value::Object(out)
                }
                (_, _, new) => new,
            };
            let paths = schema
                .as_ref()
                .map(|s| blocks::secret_paths(&s.fields))
                .unwrap_or_default();
            doc.data = blocks::keep_secrets(&merged, &doc.data, &paths);
            if let Some(s) = &schema {
                check_data(&doc.data, s)?;
            }
            self.check_references(&doc.data).await?;
        }
        doc.updated = self.now();
        self.store.update_block_document(&doc).await?;
        Ok(())
    }
}

/// Names of block documents: Prefect's name rule and lowercase letters, digits and dashes.
fn check_document_name(name: &str) -> Result<()> {
    sluice_core::domain::validate_name(name).map_err(|e| ServiceError::Invalid(e.to_string()))?;
    if !blocks::is_slug(name) {
        return Err(ServiceError::Invalid(
            "Block document name must only contain lowercase letters, numbers, and dashes."
                .to_owned(),
        ));
    }
    Ok(())
}

/// The data must be an object holding every field the schema requires: a document without
/// them could be saved but never loaded.
fn check_data(data: &Value, schema: &BlockSchema) -> Result<()> {
    let Some(map) = data.as_object() else {
        return Err(ServiceError::Invalid(
            "block document data must be a JSON object".to_owned(),
        ));
    };
    let missing: Vec<&str> = schema
        .fields
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter(|f| map.get(*f).is_none_or(Value::is_null))
        .collect();
    if !missing.is_empty() {
        return Err(ServiceError::Invalid(format!(
            "block document data lacks the field(s) its schema requires: {}",
            missing.join(", ")
        )));
    }
    Ok(())
}
