//! [`VariableStore`], [`BlockStore`], [`LogStore`] and [`ApiKeyStore`].
//!
//! Variables, blocks and API keys are document items with name guards. Logs are partitioned by
//! run (`LOGS#<run>`, sorted by timestamp) and expire by TTL when a retention is configured.
//! An API key is found by its hash through its guard item, which carries the whole key, so
//! authenticating a request is one read.

use async_trait::async_trait;
use sluice_core::domain::{ApiKey, BlockDocument, Id, LogEntry, Variable};
use sluice_store::matching::page;
use sluice_store::{ApiKeyStore, BlockStore, LogFilter, LogStore, StoreError, VariableStore};

use crate::DynamoStore;
use crate::item::{Item, ONLY, Result, doc, encode, expiry, get_id, key, s, ts};
use crate::ops::{Query, tx};
use crate::schema::{GSI1, GSI1_PK, GSI1_SK};

fn variable_key(id: Id) -> Item {
    key(format!("VARIABLE#{id}"), ONLY)
}

fn variable_name_key(name: &str) -> Item {
    key(format!("VARIABLENAME#{name}"), ONLY)
}

fn block_key(id: Id) -> Item {
    key(format!("BLOCK#{id}"), ONLY)
}

fn block_name_key(slug: &str, name: &str) -> Item {
    key(format!("BLOCKNAME#{slug}#{name}"), ONLY)
}

fn api_key_key(id: Id) -> Item {
    key(format!("APIKEY#{id}"), ONLY)
}

fn api_key_name_key(name: &str) -> Item {
    key(format!("APIKEYNAME#{name}"), ONLY)
}

fn api_key_hash_key(hash: &str) -> Item {
    key(format!("APIKEYHASH#{hash}"), ONLY)
}

pub(crate) fn guard(mut key: Item, id: Id) -> Item {
    key.insert("id".to_owned(), s(id.to_string()));
    key
}

pub(crate) fn listed(mut item: Item, kind: &str, partition: &str, sort: String) -> Item {
    item.insert("k".to_owned(), s(kind));
    item.insert(GSI1_PK.to_owned(), s(partition));
    item.insert(GSI1_SK.to_owned(), s(sort));
    item
}

fn variable_item(v: &Variable) -> Result<Item> {
    let mut item = listed(variable_key(v.id), "variable", "VARIABLES", v.name.clone());
    item.insert("d".to_owned(), encode(v)?);
    Ok(item)
}

fn block_item(b: &BlockDocument) -> Result<Item> {
    let sort = format!(
        "{}\u{1}{}\u{1}{}",
        b.block_type_slug,
        b.name.as_deref().unwrap_or_default(),
        b.id
    );
    let mut item = listed(block_key(b.id), "block", "BLOCKS", sort);
    item.insert("d".to_owned(), encode(b)?);
    Ok(item)
}

fn api_key_item(k: &ApiKey) -> Result<Item> {
    let mut item = listed(api_key_key(k.id), "api_key", "APIKEYS", k.name.clone());
    item.insert("d".to_owned(), encode(k)?);
    Ok(item)
}

impl DynamoStore {
    pub(crate) async fn collection<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        partition: &str,
    ) -> Result<Vec<T>> {
        let q = Query::new(Some(GSI1), "#p = :p")
            .name("#p", GSI1_PK)
            .value(":p", s(partition));
        self.query(q).await?.iter().map(|i| doc(what, i)).collect()
    }

    pub(crate) async fn read_doc<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        key: Item,
    ) -> Result<Option<T>> {
        self.get(key)
            .await?
            .as_ref()
            .map(|i| doc(what, i))
            .transpose()
    }

    pub(crate) async fn read_by_guard<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        guard: Item,
        key_of: fn(Id) -> Item,
    ) -> Result<Option<T>> {
        let Some(g) = self.get(guard).await? else {
            return Ok(None);
        };
        self.read_doc(what, key_of(get_id(what, &g, "id")?)).await
    }

    /// Replaces a named document, moving its name guard when the name changed.
    async fn replace_named(
        &self,
        item: Item,
        old_guard: Option<Item>,
        new_guard: Option<Item>,
        conflict: String,
    ) -> Result<()> {
        let t = self.table();
        let mut items = vec![tx::put_existing(t, item)?];
        if let Some(old) = old_guard {
            items.push(tx::delete(t, old)?);
        }
        if let Some(new) = new_guard {
            items.push(tx::put_new(t, new)?);
        }
        self.transact(items).await.map_err(|e| match e {
            StoreError::Conflict(_) => StoreError::Conflict(conflict),
            e => e,
        })
    }
}

#[async_trait]
impl VariableStore for DynamoStore {
    async fn create_variable(&self, variable: &Variable) -> Result<()> {
        let t = self.table();
        let items = vec![
            tx::put_new(t, guard(variable_name_key(&variable.name), variable.id))?,
            tx::put_new(t, variable_item(variable)?)?,
        ];
        self.transact(items).await.map_err(|e| match e {
            StoreError::Conflict(_) => {
                StoreError::Conflict(format!("variable {:?} already exists", variable.name))
            }
            e => e,
        })
    }

    async fn read_variable(&self, id: Id) -> Result<Option<Variable>> {
        self.read_doc("variable", variable_key(id)).await
    }

    async fn read_variable_by_name(&self, name: &str) -> Result<Option<Variable>> {
        self.read_by_guard("variable", variable_name_key(name), variable_key)
            .await
    }

    async fn list_variables(
        &self,
        names: Option<&[String]>,
        limit: Option<usize>,
        offset: usize,
    ) -> Result<Vec<Variable>> {
        let mut all: Vec<Variable> = self.collection("variable", "VARIABLES").await?;
        if let Some(names) = names {
            all.retain(|v| names.contains(&v.name));
        }
        all.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(page(all, limit, offset))
    }

    async fn update_variable(&self, variable: &Variable) -> Result<()> {
        let Some(stored) = self.read_variable(variable.id).await? else {
            return Err(StoreError::NotFound(format!("variable {}", variable.id)));
        };
        let renamed = stored.name != variable.name;
        self.replace_named(
            variable_item(variable)?,
            renamed.then(|| variable_name_key(&stored.name)),
            renamed.then(|| guard(variable_name_key(&variable.name), variable.id)),
            format!("variable {:?} already exists", variable.name),
        )
        .await
    }

    async fn delete_variable(&self, id: Id) -> Result<bool> {
        let Some(v) = self.read_variable(id).await? else {
            return Ok(false);
        };
        let gone = self.delete(variable_key(id), None, None).await?;
        self.delete(variable_name_key(&v.name), None, None).await?;
        Ok(gone)
    }
}

fn block_conflict(b: &BlockDocument) -> String {
    format!(
        "block document {:?} of type {:?} already exists",
        b.name.as_deref().unwrap_or_default(),
        b.block_type_slug
    )
}

#[async_trait]
impl BlockStore for DynamoStore {
    async fn create_block_document(&self, block: &BlockDocument) -> Result<()> {
        let t = self.table();
        let mut items = vec![tx::put_new(t, block_item(block)?)?];
        if let Some(name) = &block.name {
            items.push(tx::put_new(
                t,
                guard(block_name_key(&block.block_type_slug, name), block.id),
            )?);
        }
        self.transact(items).await.map_err(|e| match e {
            StoreError::Conflict(_) => StoreError::Conflict(block_conflict(block)),
            e => e,
        })
    }

    async fn read_block_document(&self, id: Id) -> Result<Option<BlockDocument>> {
        self.read_doc("block document", block_key(id)).await
    }

    async fn read_block_document_by_name(
        &self,
        block_type_slug: &str,
        name: &str,
    ) -> Result<Option<BlockDocument>> {
        self.read_by_guard(
            "block document",
            block_name_key(block_type_slug, name),
            block_key,
        )
        .await
    }

    async fn list_block_documents(
        &self,
        block_type_slug: Option<&str>,
        limit: Option<usize>,
        offset: usize,
    ) -> Result<Vec<BlockDocument>> {
        let mut all: Vec<BlockDocument> = self.collection("block document", "BLOCKS").await?;
        if let Some(slug) = block_type_slug {
            all.retain(|b| b.block_type_slug == slug);
        }
        all.sort_by(|a, b| {
            (&a.block_type_slug, &a.name, a.id).cmp(&(&b.block_type_slug, &b.name, b.id))
        });
        Ok(page(all, limit, offset))
    }

    async fn update_block_document(&self, block: &BlockDocument) -> Result<()> {
        let Some(stored) = self.read_block_document(block.id).await? else {
            return Err(StoreError::NotFound(format!("block document {}", block.id)));
        };
        let moved =
            (&stored.block_type_slug, &stored.name) != (&block.block_type_slug, &block.name);
        let old = match (&stored.name, moved) {
            (Some(n), true) => Some(block_name_key(&stored.block_type_slug, n)),
            _ => None,
        };
        let new = match (&block.name, moved) {
            (Some(n), true) => Some(guard(block_name_key(&block.block_type_slug, n), block.id)),
            _ => None,
        };
        self.replace_named(block_item(block)?, old, new, block_conflict(block))
            .await
    }

    async fn delete_block_document(&self, id: Id) -> Result<bool> {
        let Some(b) = self.read_block_document(id).await? else {
            return Ok(false);
        };
        let gone = self.delete(block_key(id), None, None).await?;
        if let Some(name) = &b.name {
            self.delete(block_name_key(&b.block_type_slug, name), None, None)
                .await?;
        }
        Ok(gone)
    }
}

fn log_partition(run: Option<Id>) -> String {
    format!(
        "LOGS#{}",
        run.map_or_else(|| "-".to_owned(), |r| r.to_string())
    )
}

#[async_trait]
impl LogStore for DynamoStore {
    async fn create_logs(&self, logs: &[LogEntry]) -> Result<()> {
        let mut puts = Vec::with_capacity(logs.len());
        for l in logs {
            // The id in the sort key makes a resent batch overwrite itself: idempotent.
            let mut item = key(
                log_partition(l.flow_run_id),
                format!("{}#{}", ts(l.timestamp), l.id),
            );
            item.insert("k".to_owned(), s("log"));
            item.insert("d".to_owned(), encode(l)?);
            if let Some(days) = self.inner.retention.logs_days {
                item.insert(
                    crate::schema::TTL_ATTRIBUTE.to_owned(),
                    expiry(l.timestamp, days),
                );
            }
            puts.push(item);
        }
        self.batch_write(puts, Vec::new()).await
    }

    async fn list_logs(
        &self,
        filter: &LogFilter,
        limit: Option<usize>,
        offset: usize,
    ) -> Result<Vec<LogEntry>> {
        let items = match &filter.flow_run_ids {
            Some(runs) => {
                let mut items = Vec::new();
                for run in runs {
                    let q = Query::new(None, "pk = :p").value(":p", s(log_partition(Some(*run))));
                    items.extend(self.query(q).await?);
                }
                items
            }
            None => {
                let mut values = std::collections::HashMap::new();
                values.insert(":k".to_owned(), s("log"));
                self.scan("k = :k", values).await?
            }
        };
        let mut logs: Vec<LogEntry> = items
            .iter()
            .map(|i| doc("log", i))
            .collect::<Result<Vec<LogEntry>>>()?
            .into_iter()
            .filter(|l| filter.matches(l))
            .collect();
        logs.sort_by_key(|l| (l.timestamp, l.created, l.id));
        if filter.newest_first {
            logs.reverse();
        }
        Ok(page(logs, limit, offset))
    }
}

#[async_trait]
impl ApiKeyStore for DynamoStore {
    async fn create_api_key(&self, api_key: &ApiKey) -> Result<()> {
        let t = self.table();
        let mut by_hash = api_key_hash_key(&api_key.hash);
        by_hash.insert("d".to_owned(), encode(api_key)?);
        let items = vec![
            tx::put_new(t, guard(api_key_name_key(&api_key.name), api_key.id))?,
            tx::put_new(t, by_hash)?,
            tx::put_new(t, api_key_item(api_key)?)?,
        ];
        self.transact(items).await.map_err(|e| match e {
            StoreError::Conflict(_) => {
                StoreError::Conflict(format!("API key {:?} already exists", api_key.name))
            }
            e => e,
        })
    }

    async fn read_api_key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>> {
        self.read_doc("API key", api_key_hash_key(hash)).await
    }

    async fn list_api_keys(&self) -> Result<Vec<ApiKey>> {
        let mut keys: Vec<ApiKey> = self.collection("API key", "APIKEYS").await?;
        keys.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(keys)
    }

    async fn delete_api_key(&self, id: Id) -> Result<bool> {
        let Some(k) = self.read_doc::<ApiKey>("API key", api_key_key(id)).await? else {
            return Ok(false);
        };
        let t = self.table();
        let items = vec![
            tx::delete(t, api_key_hash_key(&k.hash))?,
            tx::delete(t, api_key_name_key(&k.name))?,
            tx::delete(t, api_key_key(id))?,
        ];
        self.transact(items).await?;
        Ok(true)
    }
}
