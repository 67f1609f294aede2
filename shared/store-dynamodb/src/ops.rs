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

/// Requests made and capacity units used, since the store was built or last reset, counted two
/// ways: as DynamoDB reported them (`ReturnConsumedCapacity`, table and indexes; exact on AWS,
/// placeholders on some emulators) and as estimated here from the sizes of the items sent and
/// received under DynamoDB's published rules (base table only). Hundredths, so halves add up.
#[derive(Debug, Default)]
pub(crate) struct Meter {
    reads: AtomicU64,
    writes: AtomicU64,
    reported_read_x100: AtomicU64,
    reported_write_x100: AtomicU64,
    estimated_read_x100: AtomicU64,
    estimated_write_x100: AtomicU64,
}

/// A snapshot of [`Meter`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    pub read_requests: u64,
    pub write_requests: u64,
    /// Units DynamoDB reported consumed (table and indexes).
    pub reported_read_units: f64,
    pub reported_write_units: f64,
    /// Units the item sizes imply for the base table: 1 write unit per KiB written, 1 read unit
    /// per 4 KiB read strongly consistently (half for index queries, which are eventual).
    pub estimated_read_units: f64,
    pub estimated_write_units: f64,
}

fn hundredths(units: f64) -> u64 {
    // Units are small non-negative multiples of 0.5; nothing meaningful is truncated.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let x = (units * 100.0).round().max(0.0) as u64;
    x
}

fn reported(cs: &[&ConsumedCapacity]) -> f64 {
    cs.iter().filter_map(|c| c.capacity_units()).sum()
}

/// An item's size as DynamoDB bills it: attribute names plus values.
pub fn item_size(item: &Item) -> usize {
    item.iter().map(|(k, v)| k.len() + value_size(v)).sum()
}

fn value_size(v: &AttributeValue) -> usize {
    match v {
        AttributeValue::S(s) => s.len(),
        // Numbers: about one byte per two significant digits, plus one.
        AttributeValue::N(n) => n.len().div_ceil(2) + 1,
        AttributeValue::B(b) => b.as_ref().len(),
        AttributeValue::L(l) => 3 + l.iter().map(|v| 1 + value_size(v)).sum::<usize>(),
        AttributeValue::M(m) => {
            3 + m
                .iter()
                .map(|(k, v)| 1 + k.len() + value_size(v))
                .sum::<usize>()
        }
        AttributeValue::Ss(v) => v.iter().map(String::len).sum(),
        _ => 1,
    }
}

fn write_units(size: usize) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let units = size.div_ceil(1024).max(1) as f64;
    units
}

fn read_units(size: usize, consistent: bool) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let units = size.div_ceil(4096).max(1) as f64;
    if consistent { units } else { units / 2.0 }
}

impl Meter {
    fn read(&self, reported_units: f64, estimated_units: f64) {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.reported_read_x100
            .fetch_add(hundredths(reported_units), Ordering::Relaxed);
        self.estimated_read_x100
            .fetch_add(hundredths(estimated_units), Ordering::Relaxed);
    }

    fn write(&self, reported_units: f64, estimated_units: f64) {
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.reported_write_x100
            .fetch_add(hundredths(reported_units), Ordering::Relaxed);
        self.estimated_write_x100
            .fetch_add(hundredths(estimated_units), Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> Usage {
        #[allow(clippy::cast_precision_loss)]
        let units = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64 / 100.0;
        Usage {
            read_requests: self.reads.load(Ordering::Relaxed),
            write_requests: self.writes.load(Ordering::Relaxed),
            reported_read_units: units(&self.reported_read_x100),
            reported_write_units: units(&self.reported_write_x100),
            estimated_read_units: units(&self.estimated_read_x100),
            estimated_write_units: units(&self.estimated_write_x100),
        }
    }

    pub(crate) fn reset(&self) {
        for a in [
            &self.reads,
            &self.writes,
            &self.reported_read_x100,
            &self.reported_write_x100,
            &self.estimated_read_x100,
            &self.estimated_write_x100,
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
        let size = out.item.as_ref().map_or(0, item_size);
        self.meter().read(
            reported(&out.consumed_capacity().into_iter().collect::<Vec<_>>()),
            read_units(size, true),
        );
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
            let page = out.items.unwrap_or_default();
            self.meter().read(
                reported(&out.consumed_capacity.iter().collect::<Vec<_>>()),
                read_units(page.iter().map(item_size).sum(), q.index.is_none()),
            );
            items.extend(page);
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
        self.scan_up_to(filter, values, None).await
    }

    /// Like [`scan`](DynamoStore::scan), but stops at the page where `limit` items passed.
    pub(crate) async fn scan_up_to(
        &self,
        filter: &str,
        values: HashMap<String, AttributeValue>,
        limit: Option<usize>,
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
            let page = out.items.unwrap_or_default();
            self.meter().read(
                reported(&out.consumed_capacity.iter().collect::<Vec<_>>()),
                read_units(page.iter().map(item_size).sum(), true),
            );
            items.extend(page);
            if limit.is_some_and(|l| items.len() >= l) {
                break;
            }
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
                let got = out
                    .responses
                    .and_then(|mut r| r.remove(self.table()))
                    .unwrap_or_default();
                self.meter().read(
                    reported(&out.consumed_capacity.iter().flatten().collect::<Vec<_>>()),
                    got.iter().map(|i| read_units(item_size(i), true)).sum(),
                );
                found.extend(got);
                if let Some(k) = out
                    .unprocessed_keys
                    .and_then(|mut left| left.remove(self.table()))
                {
                    pending = k.keys;
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
                let pending_sizes: Vec<usize> = pending
                    .iter()
                    .map(|r| r.put_request().map_or(0, |p| item_size(p.item())))
                    .collect();
                let out = self
                    .client()
                    .batch_write_item()
                    .request_items(self.table(), std::mem::take(&mut pending))
                    .return_consumed_capacity(ReturnConsumedCapacity::Total)
                    .send()
                    .await
                    .map_err(classify)?;
                let sent: f64 = pending_sizes.iter().map(|n| write_units(*n)).sum();
                self.meter().write(
                    reported(&out.consumed_capacity.iter().flatten().collect::<Vec<_>>()),
                    sent,
                );
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
        // Transactional writes cost twice the units of plain ones.
        let estimated: f64 = items
            .iter()
            .map(|t| 2.0 * write_units(t.put().map_or(0, |p| item_size(p.item()))))
            .sum();
        let out = self
            .client()
            .transact_write_items()
            .set_transact_items(Some(items))
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
            .map_err(classify)?;
        self.meter().write(
            reported(&out.consumed_capacity.iter().flatten().collect::<Vec<_>>()),
            estimated,
        );
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
        let size = item_size(&item);
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
        self.meter().write(
            reported(&out.consumed_capacity().into_iter().collect::<Vec<_>>()),
            write_units(size),
        );
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
        let after = out.attributes.unwrap_or_default();
        // Billed on the larger of the item before and after; after is what we can see.
        self.meter().write(
            reported(&out.consumed_capacity.iter().collect::<Vec<_>>()),
            write_units(item_size(&after)),
        );
        Ok(after)
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
                self.meter().write(
                    reported(&out.consumed_capacity().into_iter().collect::<Vec<_>>()),
                    1.0,
                );
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

/// Exponential backoff with full jitter, for items DynamoDB left unprocessed and for writes
/// that lost a race.
pub(crate) async fn backoff(attempt: u32) {
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

    fn conditional_put(table: &str, item: Item, condition: &str) -> Result<TransactWriteItem> {
        let put = Put::builder()
            .table_name(table)
            .set_item(Some(item))
            .condition_expression(condition)
            .build()
            .map_err(backend)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// A put that requires the key to be new.
    pub fn put_new(table: &str, item: Item) -> Result<TransactWriteItem> {
        conditional_put(table, item, "attribute_not_exists(pk)")
    }

    /// A put that requires the key to exist already.
    pub fn put_existing(table: &str, item: Item) -> Result<TransactWriteItem> {
        conditional_put(table, item, "attribute_exists(pk)")
    }

    /// A put whose condition names the stored version attribute `v`: it must equal `version`.
    pub fn put_if_version(table: &str, item: Item, version: u64) -> Result<TransactWriteItem> {
        let put = Put::builder()
            .table_name(table)
            .set_item(Some(item))
            .condition_expression("#v = :v")
            .expression_attribute_names("#v", "v")
            .expression_attribute_values(":v", crate::item::n(version))
            .build()
            .map_err(backend)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// A delete that requires the item to exist.
    pub fn delete_existing(table: &str, key: Item) -> Result<TransactWriteItem> {
        let delete = Delete::builder()
            .table_name(table)
            .set_key(Some(key))
            .condition_expression("attribute_exists(pk)")
            .build()
            .map_err(backend)?;
        Ok(TransactWriteItem::builder().delete(delete).build())
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
