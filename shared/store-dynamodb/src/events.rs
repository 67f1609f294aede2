//! [`EventStore`]: each event is one item in the base table, written once and listed through its
//! own key, so it costs one write and no index copy:
//!
//! - `pk = EVENTS#<UTC day it occurred (YYYY-MM-DD)>#<shard>`, the shard being the id's last
//!   byte mod 8 (stable for an id, and it spreads one day's events over several partitions);
//! - `sk = <occurred>#<id>`, so a partition's events sort by time;
//! - the document in `d`, and the TTL attribute when an event retention is configured.
//!
//! A put is conditional on the key being new. A resent event carries the same id and the same
//! occurrence time, hence the same key: a failed condition is a resend, not an error.
//!
//! A listing bounded on both sides, at most 366 days apart, queries every day × shard
//! partition between its bounds on the sort-key range (strongly consistent, so an event just
//! written is found). One open on either side, or a longer span, has no partitions to enumerate
//! and scans the table's events; so does a lookup by ids alone (there is no key by id), and so
//! does a purge (it has no lower bound): administrative paths, since Prefect's clients bound
//! every event query in time.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use chrono::NaiveDate;
use futures::StreamExt;
use sluice_core::domain::{Event, Id, Timestamp};
use sluice_store::matching::{page, sort_events};
use sluice_store::{EventFilter, EventStore, StoreError};

use crate::DynamoStore;
use crate::item::{Item, Result, doc, encode, expiry, get_s, key, s, ts};
use crate::ops::Query;
use crate::schema::{PK, SK, TTL_ATTRIBUTE};

/// Every event partition key begins with this (and no other item's does).
const EVENTS_PREFIX: &str = "EVENTS#";
/// Partitions per day.
const SHARDS: u8 = 8;
/// Requests in flight at once when putting, querying partitions or deleting.
const CONCURRENCY: usize = 16;
/// A range over more days than this scans rather than querying each day.
const MAX_DAYS: i64 = 366;

/// The shard of an event: a stable function of its id.
fn shard(id: Id) -> u8 {
    id.as_bytes()[15] % SHARDS
}

fn partition(day: NaiveDate, shard: u8) -> String {
    format!("{EVENTS_PREFIX}{}#{shard}", day.format("%Y-%m-%d"))
}

fn event_key(e: &Event) -> Item {
    key(
        partition(e.occurred.date_naive(), shard(e.id)),
        format!("{}#{}", ts(e.occurred), e.id),
    )
}

fn event_item(store: &DynamoStore, e: &Event) -> Result<Item> {
    let mut item = event_key(e);
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

/// Sort-key bounds, both inclusive: sort keys are `<occurred>#<id>` with fixed-width times, so
/// from the lower bound's time to past every id at the upper's (`~` sorts after `#`, digits,
/// hex letters and `-`).
fn sort_bounds(since: Timestamp, until: Timestamp) -> (String, String) {
    (ts(since), format!("{}#~", ts(until)))
}

impl DynamoStore {
    /// The events that may match `f`, through the narrowest read the filter allows.
    async fn event_candidates(&self, f: &EventFilter) -> Result<Vec<Item>> {
        let days = match (f.occurred_since, f.occurred_until) {
            (Some(since), Some(until)) => days_between(since, until).map(|d| (since, until, d)),
            _ => None,
        };
        let Some((since, until, days)) = days else {
            return self.scan_events(f).await;
        };
        let (low, high) = sort_bounds(since, until);
        let partitions = days
            .into_iter()
            .flat_map(|day| (0..SHARDS).map(move |shard| partition(day, shard)));
        let pages: Vec<Result<Vec<Item>>> = futures::stream::iter(partitions)
            .map(|p| {
                let q = Query::new(None, "pk = :p AND sk BETWEEN :lo AND :hi")
                    .value(":p", s(p))
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

    /// Every stored event, narrowed by whichever time bound `f` has (administrative: a scan
    /// reads, and is billed for, the whole table). Also the only way to find events by id.
    async fn scan_events(&self, f: &EventFilter) -> Result<Vec<Item>> {
        let mut filter = "begins_with(pk, :p)".to_owned();
        let mut values = HashMap::from([(":p".to_owned(), s(EVENTS_PREFIX))]);
        if let Some(since) = f.occurred_since {
            filter.push_str(" AND sk >= :lo");
            values.insert(":lo".to_owned(), s(ts(since)));
        }
        if let Some(until) = f.occurred_until {
            filter.push_str(" AND sk <= :hi");
            values.insert(":hi".to_owned(), s(format!("{}#~", ts(until))));
        }
        self.scan(&filter, values).await
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
                    // Stored already (same id, same time, same key): a resend.
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
        // No lower bound, so no partitions to enumerate: a scan (TTL does the routine expiry).
        // `<occurred>#<id>` sorts below `<before>` exactly when the event occurred before it.
        let values = HashMap::from([
            (":p".to_owned(), s(EVENTS_PREFIX)),
            (":b".to_owned(), s(ts(before))),
        ]);
        let found = self
            .scan_up_to("begins_with(pk, :p) AND sk < :b", values, Some(limit))
            .await?;
        let keys: Vec<Item> = found
            .iter()
            .filter_map(|i| Some(key(get_s(i, PK)?, get_s(i, SK)?)))
            .take(limit)
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

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;

    fn sort_key(t: Timestamp, id: Id) -> String {
        format!("{}#{id}", ts(t))
    }

    #[test]
    fn bounds_are_inclusive_on_both_ends() {
        let since = Utc
            .with_ymd_and_hms(2026, 3, 1, 23, 59, 59)
            .single()
            .expect("valid");
        let until = Utc
            .with_ymd_and_hms(2026, 3, 2, 0, 0, 1)
            .single()
            .expect("valid");
        let (low, high) = sort_bounds(since, until);
        for id in [Id::nil(), Id::max(), Id::new_v4()] {
            assert!(sort_key(since, id) >= low);
            assert!(sort_key(until, id) <= high);
            assert!(sort_key(since - chrono::Duration::microseconds(1), id) < low);
            assert!(sort_key(until + chrono::Duration::microseconds(1), id) > high);
        }
        assert_eq!(
            days_between(since, until).expect("valid"),
            [since.date_naive(), until.date_naive()]
        );
        assert_eq!(days_between(until, since).expect("valid"), []);
        assert!(days_between(since, since + chrono::Duration::days(400)).is_none());
    }

    #[test]
    fn shards_are_stable_and_in_range() {
        let id = Id::new_v4();
        assert_eq!(shard(id), shard(id));
        assert!((0..200).all(|_| shard(Id::new_v4()) < SHARDS));
        let day = NaiveDate::from_ymd_opt(2026, 3, 1).expect("valid");
        assert_eq!(partition(day, 7), "EVENTS#2026-03-01#7");
    }
}
