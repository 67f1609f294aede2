//! [`BlockCatalogStore`]: block types (`BLOCKTYPE#<id>`, unique by slug and by name through
//! guards) and block schemas (`BLOCKSCHEMA#<id>`, unique by checksum and version through a
//! guard). Both are listed on gsi1; the catalog is small and read whole.

use async_trait::async_trait;
use sluice_core::domain::{BlockSchema, BlockType, Id};
use sluice_store::{BlockCatalogStore, StoreError};

use crate::DynamoStore;
use crate::item::{Item, ONLY, Result, encode, key, ts};
use crate::misc::{guard, listed};
use crate::ops::tx;

const TYPES: &str = "BLOCKTYPES";
const SCHEMAS: &str = "BLOCKSCHEMAS";

fn type_key(id: Id) -> Item {
    key(format!("BLOCKTYPE#{id}"), ONLY)
}

fn type_slug_key(slug: &str) -> Item {
    key(format!("BLOCKTYPESLUG#{slug}"), ONLY)
}

fn type_name_key(name: &str) -> Item {
    key(format!("BLOCKTYPENAME#{name}"), ONLY)
}

fn schema_key(id: Id) -> Item {
    key(format!("BLOCKSCHEMA#{id}"), ONLY)
}

fn schema_sum_key(checksum: &str, version: &str) -> Item {
    key(format!("BLOCKSCHEMASUM#{checksum}#{version}"), ONLY)
}

fn type_item(t: &BlockType) -> Result<Item> {
    let mut item = listed(type_key(t.id), "block_type", TYPES, t.name.clone());
    item.insert("d".to_owned(), encode(t)?);
    Ok(item)
}

fn schema_item(s: &BlockSchema) -> Result<Item> {
    let sort = format!("{}#{}", ts(s.created), s.id);
    let mut item = listed(schema_key(s.id), "block_schema", SCHEMAS, sort);
    item.insert("d".to_owned(), encode(s)?);
    Ok(item)
}

#[async_trait]
impl BlockCatalogStore for DynamoStore {
    async fn create_block_type(&self, block_type: &BlockType) -> Result<()> {
        let t = self.table();
        let items = vec![
            tx::put_new(t, guard(type_slug_key(&block_type.slug), block_type.id))?,
            tx::put_new(t, guard(type_name_key(&block_type.name), block_type.id))?,
            tx::put_new(t, type_item(block_type)?)?,
        ];
        self.transact(items).await.map_err(|e| match e {
            StoreError::Conflict(_) => {
                StoreError::Conflict(format!("block type {:?} already exists", block_type.slug))
            }
            e => e,
        })
    }

    async fn read_block_type(&self, id: Id) -> Result<Option<BlockType>> {
        self.read_doc("block type", type_key(id)).await
    }

    async fn read_block_type_by_slug(&self, slug: &str) -> Result<Option<BlockType>> {
        self.read_by_guard("block type", type_slug_key(slug), type_key)
            .await
    }

    async fn list_block_types(&self) -> Result<Vec<BlockType>> {
        let mut all: Vec<BlockType> = self.collection("block type", TYPES).await?;
        all.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(all)
    }

    async fn update_block_type(&self, block_type: &BlockType) -> Result<()> {
        let Some(stored) = self.read_block_type(block_type.id).await? else {
            return Err(StoreError::NotFound(format!(
                "block type {}",
                block_type.id
            )));
        };
        // Slug and name stay as stored (their guards do not move).
        let updated = BlockType {
            name: stored.name,
            slug: stored.slug,
            ..block_type.clone()
        };
        self.transact(vec![tx::put_existing(self.table(), type_item(&updated)?)?])
            .await
    }

    async fn delete_block_type(&self, id: Id) -> Result<bool> {
        let Some(stored) = self.read_block_type(id).await? else {
            return Ok(false);
        };
        for schema in self.list_block_schemas(Some(id)).await? {
            self.delete_block_schema(schema.id).await?;
        }
        let gone = self.delete(type_key(id), None, None).await?;
        self.delete(type_slug_key(&stored.slug), None, None).await?;
        self.delete(type_name_key(&stored.name), None, None).await?;
        Ok(gone)
    }

    async fn create_block_schema(&self, schema: &BlockSchema) -> Result<()> {
        if self.read_block_type(schema.block_type_id).await?.is_none() {
            return Err(StoreError::NotFound(format!(
                "block type {}",
                schema.block_type_id
            )));
        }
        let t = self.table();
        let items = vec![
            tx::put_new(
                t,
                guard(schema_sum_key(&schema.checksum, &schema.version), schema.id),
            )?,
            tx::put_new(t, schema_item(schema)?)?,
        ];
        self.transact(items).await.map_err(|e| match e {
            StoreError::Conflict(_) => {
                StoreError::Conflict(format!("block schema {} already exists", schema.checksum))
            }
            e => e,
        })
    }

    async fn read_block_schema(&self, id: Id) -> Result<Option<BlockSchema>> {
        self.read_doc("block schema", schema_key(id)).await
    }

    async fn read_block_schema_by_checksum(
        &self,
        checksum: &str,
        version: Option<&str>,
    ) -> Result<Option<BlockSchema>> {
        if let Some(v) = version {
            return self
                .read_by_guard("block schema", schema_sum_key(checksum, v), schema_key)
                .await;
        }
        Ok(self
            .list_block_schemas(None)
            .await?
            .into_iter()
            .find(|s| s.checksum == checksum))
    }

    async fn list_block_schemas(&self, block_type_id: Option<Id>) -> Result<Vec<BlockSchema>> {
        let mut all: Vec<BlockSchema> = self.collection("block schema", SCHEMAS).await?;
        if let Some(id) = block_type_id {
            all.retain(|s| s.block_type_id == id);
        }
        all.sort_by(|a, b| b.created.cmp(&a.created).then(a.id.cmp(&b.id)));
        Ok(all)
    }

    async fn delete_block_schema(&self, id: Id) -> Result<bool> {
        let Some(stored) = self.read_block_schema(id).await? else {
            return Ok(false);
        };
        let gone = self.delete(schema_key(id), None, None).await?;
        self.delete(
            schema_sum_key(&stored.checksum, &stored.version),
            None,
            None,
        )
        .await?;
        Ok(gone)
    }
}
