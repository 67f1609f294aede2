//! [`EventStore`]: events as document items `EVENT#<id>`, each written once (a put conditional
//! on its id being new), listed on gsi1 under `EVENTS#<UTC day it occurred>` sorted by
//! `<occurred>#<id>`, and expired by TTL when an event retention is configured.
//!
//! A listing bounded on both sides queries the days between its bounds. One open on either side
//! has no days to enumerate and scans the table's events, and so does a purge (it has no lower
//! bound): administrative paths, since Prefect's clients bound every event query in time.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use chrono::NaiveDate;
use futures::StreamExt;
use sluice_core::domain::{Event, Id, Timestamp};
use sluice_store::matching::{page, sort_events};
use sluice_store::{EventFilter, EventStore, StoreError};

use crate::DynamoStore;
use crate::item::{Item, ONLY, Result, doc, encode, expiry, get_s, key, s, ts};
use crate::misc::listed;
use crate::ops::Query;
use crate::schema::{GSI1, GSI1_PK, GSI1_SK, PK, TTL_ATTRIBUTE};

const EVENT_PREFIX: &str = "EVENT#";
/// Requests in flight at once when putting, querying days or deleting.
const CONCURRENCY: usize = 16;
/// A range over more days than this scans rather than querying each day.
const MAX_DAYS: i64 = 366;

fn event_key(id: Id) -> Item {
    key(format!("{EVENT_PREFIX}{id}"), ONLY)
}

fn day_partition(day: NaiveDate) -> String {
    format!("EVENTS#{}", day.format("%Y-%m-%d"))
}

fn event_item(store: &DynamoStore, e: &Event) -> Result<Item> {
    let sort = format!("{}#{}", ts(e.occurred), e.id);
    let mut item = listed(
        event_key(e.id),
        "event",
        &day_partition(e.occurred.date_naive()),
        sort,
    );
    item.insert("d".to_owned(), encode(e)?);
    if let Some(days) = store.inner.retention.events_days {
        item.insert(TTL_ATTRIBUTE.to_owned(), expiry(e.occurred, days));
    }
    Ok(item)
}

/// The UTC days from `since` to `until` when both are set and not too far apart.
fn days_between(since: Timestamp, until: Timestamp) -> Option<Vec<NaiveDate>> {
    if since > until {
        return Some(Vec::new());
    }
    let (first, last) = (since.date_naive(), until.date_naive());
    if (last - first).num_days() > MAX_DAYS {
        return None;
    }
    Some(first.iter_days().take_while(|d| *d <= last).collect())
}

impl DynamoStore {
    /// The events that may match `f`, through the narrowest read the filter allows.
    async fn event_candidates(&self, f: &EventFilter) -> Result<Vec<Item>> {
        if let Some(ids) = &f.ids {
            let mut seen = HashSet::new();
            let keys = ids
                .iter()
                .filter(|i| seen.insert(**i))
                .map(|i| event_key(*i))
                .collect();
            return self.batch_get(keys).await;
        }
        let days = match (f.occurred_since, f.occurred_until) {
            (Some(since), Some(until)) => days_between(since, until).map(|d| (since, until, d)),
            _ => None,
        };
        let Some((since, until, days)) = days else {
            let values = HashMap::from([(":p".to_owned(), s(EVENT_PREFIX))]);
            return self.scan("begins_with(pk, :p)", values).await;
        };
        // Sort keys are `<occurred>#<id>`: from the lower bound to past every id at the upper.
        let (low, high) = (ts(since), format!("{}#~", ts(until)));
        let pages: Vec<Result<Vec<Item>>> = futures::stream::iter(days)
            .map(|day| {
                let q = Query::new(Some(GSI1), "#p = :p AND #s BETWEEN :lo AND :hi")
                    .name("#p", GSI1_PK)
                    .name("#s", GSI1_SK)
                    .value(":p", s(day_partition(day)))
                    .value(":lo", s(low.clone()))
                    .value(":hi", s(high.clone()));
                self.query(q)
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let mut items = Vec::new();
        for p in pages {
            items.extend(p?);
        }
        Ok(items)
    }

    async fn matching_events(&self, f: &EventFilter) -> Result<Vec<Event>> {
        let mut events = Vec::new();
        for item in self.event_candidates(f).await? {
            let e: Event = doc("event", &item)?;
            if f.matches(&e) {
                events.push(e);
            }
        }
        sort_events(&mut events, f.ascending);
        Ok(events)
    }
}

#[async_trait]
impl EventStore for DynamoStore {
    async fn put_events(&self, events: &[Event]) -> Result<Vec<Id>> {
        // BatchWriteItem cannot be conditional: one conditional put per event, several at once.
        let mut seen = HashSet::new();
        let fresh: Vec<Event> = events
            .iter()
            .filter(|e| seen.insert(e.id))
            .cloned()
            .collect();
        let puts: Vec<Result<Option<Id>>> = futures::stream::iter(fresh)
            .map(|e| async move {
                let item = event_item(self, &e)?;
                match self
                    .put(item, Some("attribute_not_exists(pk)"), None, None)
                    .await
                {
                    Ok(()) => Ok(Some(e.id)),
                    // Stored already: a resend.
                    Err(StoreError::Conflict(_)) => Ok(None),
                    Err(err) => Err(err),
                }
            })
            .buffered(CONCURRENCY)
            .collect()
            .await;
        puts.into_iter().filter_map(Result::transpose).collect()
    }

    async fn list_events(
        &self,
        filter: &EventFilter,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<Event>> {
        Ok(page(
            self.matching_events(filter).await?,
            Some(limit),
            offset,
        ))
    }

    async fn count_events(&self, filter: &EventFilter) -> Result<usize> {
        Ok(self.matching_events(filter).await?.len())
    }

    async fn delete_events_before(&self, before: Timestamp, limit: usize) -> Result<usize> {
        // `<occurred>#<id>` sorts below `<before>` exactly when the event occurred before it.
        let values = HashMap::from([
            (":p".to_owned(), s(EVENT_PREFIX)),
            (":b".to_owned(), s(ts(before))),
        ]);
        let found = self
            .scan_up_to("begins_with(pk, :p) AND gsi1sk < :b", values, Some(limit))
            .await?;
        let keys: Vec<Item> = found
            .iter()
            .filter_map(|i| get_s(i, PK))
            .take(limit)
            .map(|pk| key(pk, ONLY))
            .collect();
        // Conditional on existence, so an event expired or purged meanwhile is not counted.
        let deleted: Vec<Result<bool>> = futures::stream::iter(keys)
            .map(|k| self.delete(k, None, None))
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        deleted
            .into_iter()
            .try_fold(0, |n, gone| Ok(n + usize::from(gone?)))
    }
}
