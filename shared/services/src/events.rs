//! Events in: stored once each by id, and the task-run events among them recorded as task runs.
//! Events out: read back through filters. Old events are dropped by a tick.

use sluice_core::domain::{Event, Timestamp};
use sluice_core::task_runs::task_run_from_event;
use sluice_store::EventFilter;

use crate::Services;
use crate::error::Result;

/// Events deleted per purge round.
const PURGE_BATCH: usize = 500;

impl Services {
    /// Takes in a batch of events. Task runs are recorded before the events are stored, so a
    /// batch that fails halfway and is resent records everything on the second try (both steps
    /// are idempotent: task-run states and events are keyed by their ids). Returns how many
    /// events were new.
    pub async fn ingest_events(&self, events: &[Event]) -> Result<usize> {
        let mut runs = Vec::new();
        for event in events {
            match task_run_from_event(event) {
                Some(Ok(run)) => runs.push(run),
                Some(Err(why)) => {
                    tracing::warn!(event = %event.id, name = %event.event, %why, "task-run event not recorded");
                }
                None => {}
            }
        }
        if !runs.is_empty() {
            self.store.record_task_runs(&runs).await?;
        }
        Ok(self.store.put_events(events).await?.len())
    }

    pub async fn read_events(
        &self,
        filter: &EventFilter,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<Event>> {
        Ok(self.store.list_events(filter, limit, offset).await?)
    }

    pub async fn count_events(&self, filter: &EventFilter) -> Result<usize> {
        Ok(self.store.count_events(filter).await?)
    }

    /// Deletes the events that occurred before `before`; how many went.
    pub async fn purge_events(&self, before: Timestamp) -> Result<usize> {
        let mut total = 0;
        loop {
            let n = self.store.delete_events_before(before, PURGE_BATCH).await?;
            total += n;
            if n < PURGE_BATCH {
                return Ok(total);
            }
        }
    }
}
