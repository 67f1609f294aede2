//! [`EventStore`] on SQLite: `event` rows (the event as a JSON document), indexed by when they
//! occurred; the time bounds narrow the query, the rest of the filter is the shared rule.

use async_trait::async_trait;
use rusqlite::{params, params_from_iter};
use sluice_core::domain::{Event, Id, Timestamp};

use super::SqliteStore;
use super::codec::{DbResult, Result, Where, id_text, ts};
use crate::matching::sort_events;
use crate::{EventFilter, EventStore, StoreError};

fn select(conn: &rusqlite::Connection, filter: &EventFilter) -> Result<Vec<Event>> {
    let mut w = Where::default();
    w.cmp_ts("occurred", ">=", filter.occurred_since);
    w.cmp_ts("occurred", "<=", filter.occurred_until);
    w.any_of("id", filter.ids.as_deref());
    let sql = format!("SELECT doc FROM event{}", w.sql());
    let mut stmt = conn.prepare_cached(&sql).db()?;
    let docs = stmt
        .query_map(params_from_iter(&w.params), |r| r.get::<_, String>(0))
        .db()?
        .collect::<std::result::Result<Vec<_>, _>>()
        .db()?;
    let mut out = Vec::new();
    for doc in docs {
        let event: Event = serde_json::from_str(&doc)
            .map_err(|e| StoreError::Corrupt(format!("event document: {e}")))?;
        if filter.matches(&event) {
            out.push(event);
        }
    }
    sort_events(&mut out, filter.ascending);
    Ok(out)
}

#[async_trait]
impl EventStore for SqliteStore {
    async fn put_events(&self, events: &[Event]) -> Result<Vec<Id>> {
        let events = events.to_vec();
        self.write(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "INSERT INTO event (id, occurred, doc) VALUES (?1, ?2, ?3)
                     ON CONFLICT (id) DO NOTHING",
                )
                .db()?;
            let mut new = Vec::new();
            for e in &events {
                let doc = serde_json::to_string(e)
                    .map_err(|err| StoreError::Corrupt(format!("event document: {err}")))?;
                if stmt
                    .execute(params![id_text(e.id), ts(e.occurred), doc])
                    .db()?
                    == 1
                {
                    new.push(e.id);
                }
            }
            Ok(new)
        })
        .await
    }

    async fn list_events(
        &self,
        filter: &EventFilter,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<Event>> {
        let filter = filter.clone();
        self.read(move |conn| {
            Ok(select(conn, &filter)?
                .into_iter()
                .skip(offset)
                .take(limit)
                .collect())
        })
        .await
    }

    async fn count_events(&self, filter: &EventFilter) -> Result<usize> {
        let filter = filter.clone();
        self.read(move |conn| Ok(select(conn, &filter)?.len()))
            .await
    }

    async fn delete_events_before(&self, before: Timestamp, limit: usize) -> Result<usize> {
        self.write(move |conn| {
            let n = conn
                .execute(
                    "DELETE FROM event WHERE id IN
                       (SELECT id FROM event WHERE occurred < ?1 ORDER BY occurred LIMIT ?2)",
                    params![ts(before), limit as i64],
                )
                .db()?;
            Ok(n)
        })
        .await
    }
}
