//! The few request shapes the adapter uses, with paging, unprocessed-item retries and the
//! request-unit accounting in one place.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeValue, ConsumedCapacity, DeleteRequest, KeysAndAttributes, PutRequest,
    ReturnConsumedCapacity, TransactWriteItem, WriteRequest,
};

use crate::DynamoStore;
use crate::error::classify;
use crate::item::{Item, Result};

/// BatchGetItem takes at most 100 keys, BatchWriteItem 25 requests, TransactWriteItems 100.
const BATCH_GET: usize = 100;
const BATCH_WRITE: usize = 25;

/// Requests made and capacity units DynamoDB reported as consumed (table and indexes), since
/// the store was built or last reset. Units are hundredths, to count half read units exactly.
#[derive(Debug, Default)]
pub(crate) struct Meter {
    reads: AtomicU64,
    writes: AtomicU64,
    read_units_x100: AtomicU64,
    write_units_x100: AtomicU64,
}

/// A snapshot of [`Meter`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    pub read_requests: u64,
    pub write_requests: u64,
    pub read_units: f64,
    pub write_units: f64,
}

fn hundredths(c: Option<&ConsumedCapacity>) -> u64 {
    let units = c.and_then(|c| c.capacity_units()).unwrap_or(0.0);
    // Units are small non-negative multiples of 0.5; the cast cannot truncate meaningfully.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let x = (units * 100.0).round().max(0.0) as u64;
    x
}

impl Meter {
    fn read(&self, c: Option<&ConsumedCapacity>) {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.read_units_x100
            .fetch_add(hundredths(c), Ordering::Relaxed);
    }

    fn write(&self, c: Option<&ConsumedCapacity>) {
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.write_units_x100
            .fetch_add(hundredths(c), Ordering::Relaxed);
    }

    fn writes_of(&self, cs: &[ConsumedCapacity]) {
        self.writes.fetch_add(1, Ordering::Relaxed);
        let total: u64 = cs.iter().map(|c| hundredths(Some(c))).sum();
        self.write_units_x100.fetch_add(total, Ordering::Relaxed);
    }

    fn reads_of(&self, cs: &[ConsumedCapacity]) {
        self.reads.fetch_add(1, Ordering::Relaxed);
        let total: u64 = cs.iter().map(|c| hundredths(Some(c))).sum();
        self.read_units_x100.fetch_add(total, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> Usage {
        #[allow(clippy::cast_precision_loss)]
        let units = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64 / 100.0;
        Usage {
            read_requests: self.reads.load(Ordering::Relaxed),
            write_requests: self.writes.load(Ordering::Relaxed),
            read_units: units(&self.read_units_x100),
            write_units: units(&self.write_units_x100),
        }
    }

    pub(crate) fn reset(&self) {
        for a in [
            &self.reads,
            &self.writes,
            &self.read_units_x100,
            &self.write_units_x100,
        ] {
            a.store(0, Ordering::Relaxed);
        }
    }
}

/// A query on the table or an index: `#`-names and `:`-values are bound by the caller.
#[derive(Debug, Default)]
pub(crate) struct Query {
    pub index: Option<&'static str>,
    pub key_condition: String,
    pub filter: Option<String>,
    pub names: HashMap<String, String>,
    pub values: HashMap<String, AttributeValue>,
    pub descending: bool,
    /// Stop once this many items were returned (after the filter).
    pub limit: Option<usize>,
}

impl Query {
    pub fn new(index: Option<&'static str>, key_condition: impl Into<String>) -> Query {
        Query {
            index,
            key_condition: key_condition.into(),
            ..Query::default()
        }
    }

    pub fn name(mut self, placeholder: &str, attribute: &str) -> Query {
        self.names
            .insert(placeholder.to_owned(), attribute.to_owned());
        self
    }

    pub fn value(mut self, placeholder: &str, value: AttributeValue) -> Query {
        self.values.insert(placeholder.to_owned(), value);
        self
    }

    pub fn filter(mut self, filter: impl Into<String>) -> Query {
        self.filter = Some(filter.into());
        self
    }
}

impl DynamoStore {
    pub(crate) fn meter(&self) -> &Meter {
        &self.inner.meter
    }

    /// A strongly consistent point read.
    pub(crate) async fn get(&self, key: Item) -> Result<Option<Item>> {
        let out = self
            .client()
            .get_item()
            .table_name(self.table())
            .set_key(Some(key))
            .consistent_read(true)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
            .map_err(classify)?;
        self.meter().read(out.consumed_capacity());
        Ok(out.item)
    }

    /// Every page of a query. Reads on the table are strongly consistent; index reads cannot
    /// be (DynamoDB offers only eventual consistency on global indexes).
    pub(crate) async fn query(&self, q: Query) -> Result<Vec<Item>> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client()
                .query()
                .table_name(self.table())
                .set_index_name(q.index.map(str::to_owned))
                .key_condition_expression(&q.key_condition)
                .set_filter_expression(q.filter.clone())
                .set_expression_attribute_names((!q.names.is_empty()).then(|| q.names.clone()))
                .set_expression_attribute_values((!q.values.is_empty()).then(|| q.values.clone()))
                .consistent_read(q.index.is_none())
                .scan_index_forward(!q.descending)
                .set_exclusive_start_key(start.take())
                .return_consumed_capacity(ReturnConsumedCapacity::Total)
                .send()
                .await
                .map_err(classify)?;
            self.meter().read(out.consumed_capacity());
            items.extend(out.items.unwrap_or_default());
            if q.limit.is_some_and(|l| items.len() >= l) {
                break;
            }
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        if let Some(l) = q.limit {
            items.truncate(l);
        }
        Ok(items)
    }

    /// Every item of the table passing `filter` (for rare administrative queries only).
    pub(crate) async fn scan(
        &self,
        filter: &str,
        values: HashMap<String, AttributeValue>,
    ) -> Result<Vec<Item>> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client()
                .scan()
                .table_name(self.table())
                .filter_expression(filter)
                .set_expression_attribute_values(Some(values.clone()))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .return_consumed_capacity(ReturnConsumedCapacity::Total)
                .send()
                .await
                .map_err(classify)?;
            self.meter().read(out.consumed_capacity());
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        Ok(items)
    }

    /// Strongly consistent reads of many keys; missing keys are simply absent from the answer.
    pub(crate) async fn batch_get(&self, keys: Vec<Item>) -> Result<Vec<Item>> {
        let mut found = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(BATCH_GET) {
            let mut pending: Vec<Item> = chunk.to_vec();
            let mut attempt = 0u32;
            while !pending.is_empty() {
                let request = KeysAndAttributes::builder()
                    .set_keys(Some(std::mem::take(&mut pending)))
                    .consistent_read(true)
                    .build()
                    .map_err(|e| sluice_store::StoreError::Backend(Box::new(e)))?;
                let out = self
                    .client()
                    .batch_get_item()
                    .request_items(self.table(), request)
                    .return_consumed_capacity(ReturnConsumedCapacity::Total)
                    .send()
                    .await
                    .map_err(classify)?;
                self.meter().reads_of(out.consumed_capacity());
                if let Some(mut responses) = out.responses {
                    found.extend(responses.remove(self.table()).unwrap_or_default());
                }
                if let Some(mut left) = out.unprocessed_keys {
                    if let Some(k) = left.remove(self.table()) {
                        pending = k.keys;
                    }
                }
                if !pending.is_empty() {
                    attempt += 1;
                    backoff(attempt).await;
                }
            }
        }
        Ok(found)
    }

    /// Unconditional puts and deletes, 25 at a time, retrying what DynamoDB left unprocessed.
    pub(crate) async fn batch_write(&self, puts: Vec<Item>, deletes: Vec<Item>) -> Result<()> {
        let mut requests: Vec<WriteRequest> = Vec::with_capacity(puts.len() + deletes.len());
        for item in puts {
            let put = PutRequest::builder()
                .set_item(Some(item))
                .build()
                .map_err(|e| sluice_store::StoreError::Backend(Box::new(e)))?;
            requests.push(WriteRequest::builder().put_request(put).build());
        }
        for key in deletes {
            let delete = DeleteRequest::builder()
                .set_key(Some(key))
                .build()
                .map_err(|e| sluice_store::StoreError::Backend(Box::new(e)))?;
            requests.push(WriteRequest::builder().delete_request(delete).build());
        }
        for chunk in requests.chunks(BATCH_WRITE) {
            let mut pending = chunk.to_vec();
            let mut attempt = 0u32;
            while !pending.is_empty() {
                let out = self
                    .client()
                    .batch_write_item()
                    .request_items(self.table(), std::mem::take(&mut pending))
                    .return_consumed_capacity(ReturnConsumedCapacity::Total)
                    .send()
                    .await
                    .map_err(classify)?;
                self.meter().writes_of(out.consumed_capacity());
                if let Some(mut left) = out.unprocessed_items {
                    pending = left.remove(self.table()).unwrap_or_default();
                }
                if !pending.is_empty() {
                    attempt += 1;
                    backoff(attempt).await;
                }
            }
        }
        Ok(())
    }

    /// All-or-nothing writes; a failed condition is `Conflict`.
    pub(crate) async fn transact(&self, items: Vec<TransactWriteItem>) -> Result<()> {
        let out = self
            .client()
            .transact_write_items()
            .set_transact_items(Some(items))
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
            .map_err(classify)?;
        self.meter().writes_of(out.consumed_capacity());
        Ok(())
    }

    /// A put, conditional when `condition` is given (`Conflict` when it fails).
    pub(crate) async fn put(
        &self,
        item: Item,
        condition: Option<&str>,
        names: Option<HashMap<String, String>>,
        values: Option<HashMap<String, AttributeValue>>,
    ) -> Result<()> {
        let out = self
            .client()
            .put_item()
            .table_name(self.table())
            .set_item(Some(item))
            .set_condition_expression(condition.map(str::to_owned))
            .set_expression_attribute_names(names)
            .set_expression_attribute_values(values)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
            .map_err(classify)?;
        self.meter().write(out.consumed_capacity());
        Ok(())
    }

    /// An update; returns the item as it is afterwards.
    pub(crate) async fn update(&self, u: Update) -> Result<Item> {
        let out = self
            .client()
            .update_item()
            .table_name(self.table())
            .set_key(Some(u.key))
            .update_expression(u.expression)
            .set_condition_expression(u.condition)
            .set_expression_attribute_names((!u.names.is_empty()).then_some(u.names))
            .set_expression_attribute_values((!u.values.is_empty()).then_some(u.values))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
            .map_err(classify)?;
        self.meter().write(out.consumed_capacity());
        Ok(out.attributes.unwrap_or_default())
    }

    /// A delete, conditional when `condition` is given; `Ok(false)` when the item was absent
    /// (or, with a condition, when the condition failed).
    pub(crate) async fn delete(
        &self,
        key: Item,
        condition: Option<&str>,
        values: Option<HashMap<String, AttributeValue>>,
    ) -> Result<bool> {
        let result = self
            .client()
            .delete_item()
            .table_name(self.table())
            .set_key(Some(key))
            .set_condition_expression(Some(condition.unwrap_or("attribute_exists(pk)").to_owned()))
            .set_expression_attribute_values(values)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
            .map_err(classify);
        match result {
            Ok(out) => {
                self.meter().write(out.consumed_capacity());
                Ok(true)
            }
            Err(e) if e.is_conflict() => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// An UpdateItem request.
#[derive(Debug, Default)]
pub(crate) struct Update {
    pub key: Item,
    pub expression: String,
    pub condition: Option<String>,
    pub names: HashMap<String, String>,
    pub values: HashMap<String, AttributeValue>,
}

impl Update {
    pub fn new(key: Item, expression: impl Into<String>) -> Update {
        Update {
            key,
            expression: expression.into(),
            ..Update::default()
        }
    }

    pub fn condition(mut self, condition: impl Into<String>) -> Update {
        self.condition = Some(condition.into());
        self
    }

    pub fn name(mut self, placeholder: &str, attribute: &str) -> Update {
        self.names
            .insert(placeholder.to_owned(), attribute.to_owned());
        self
    }

    pub fn value(mut self, placeholder: &str, value: AttributeValue) -> Update {
        self.values.insert(placeholder.to_owned(), value);
        self
    }
}

/// Exponential backoff with full jitter for items DynamoDB left unprocessed.
async fn backoff(attempt: u32) {
    let cap = 25u64.saturating_mul(1 << attempt.min(6));
    let jitter = u64::from(uuid::Uuid::new_v4().as_u128() as u16) % cap.max(1);
    tokio::time::sleep(Duration::from_millis(jitter)).await;
}

/// Transaction members.
pub(crate) mod tx {
    use aws_sdk_dynamodb::types::{Delete, Put, TransactWriteItem};

    use crate::item::{Item, Result};

    fn backend(e: impl std::error::Error + Send + Sync + 'static) -> sluice_store::StoreError {
        sluice_store::StoreError::Backend(Box::new(e))
    }

    /// A put that requires the key to be new.
    pub fn put_new(table: &str, item: Item) -> Result<TransactWriteItem> {
        let put = Put::builder()
            .table_name(table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(backend)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// A put that requires the key to exist already.
    pub fn put_existing(table: &str, item: Item) -> Result<TransactWriteItem> {
        let put = Put::builder()
            .table_name(table)
            .set_item(Some(item))
            .condition_expression("attribute_exists(pk)")
            .build()
            .map_err(backend)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    pub fn delete(table: &str, key: Item) -> Result<TransactWriteItem> {
        let delete = Delete::builder()
            .table_name(table)
            .set_key(Some(key))
            .build()
            .map_err(backend)?;
        Ok(TransactWriteItem::builder().delete(delete).build())
    }
}
