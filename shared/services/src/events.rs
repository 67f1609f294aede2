//! Events in: stored once each by id, and the task-run events among them recorded as task runs.
//! Events out: read back through filters. Old events are dropped by a tick.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sluice_core::domain::{
    Deployment, DeploymentStatus, Event, FlowRun, Id, PoolStatus, QueueStatus, State, Timestamp,
    WorkPool, WorkQueue,
};
use sluice_core::events::{
    Countable, EventCount, PushSubmitted, Related, TimeUnit, count_events, deployment_status,
    flow_run_related, flow_run_state_change, push_submitted, work_pool_status, work_queue_status,
};
use sluice_core::task_runs::task_run_from_event;
use sluice_store::EventFilter;
use tokio::sync::broadcast;

use crate::Services;
use crate::error::Result;

/// Events deleted per purge round.
const PURGE_BATCH: usize = 500;
/// Events a slow live subscriber may fall behind by before it misses some.
pub(crate) const LIVE_BUFFER: usize = 4096;
/// Flow runs whose related resources are remembered (as Prefect's server caches them).
const RELATED_CACHE_SIZE: usize = 1000;

/// A flow run's related resources, by run: its flow, deployment, queue and pool do not change
/// while it runs, so each state change need not read them again.
#[derive(Default)]
pub(crate) struct RelatedCache(Mutex<HashMap<Id, Arc<Vec<Related>>>>);

impl RelatedCache {
    fn get(&self, run: Id) -> Option<Arc<Vec<Related>>> {
        self.0.lock().ok()?.get(&run).cloned()
    }

    fn put(&self, run: Id, related: Arc<Vec<Related>>) {
        if let Ok(mut map) = self.0.lock() {
            if map.len() >= RELATED_CACHE_SIZE {
                map.clear();
            }
            map.insert(run, related);
        }
    }
}

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
        let new = self.store.put_events(events).await?;
        if self.live_events.receiver_count() > 0 {
            for event in events.iter().filter(|e| new.contains(&e.id)) {
                // No subscriber left is not an error.
                let _ = self.live_events.send(Arc::new(event.clone()));
            }
        }
        Ok(new.len())
    }

    /// Events as this process stores them from now on.
    pub fn subscribe_events(&self) -> broadcast::Receiver<Arc<Event>> {
        self.live_events.subscribe()
    }

    /// Emits `sluice.push.submitted` for a run its ECS task or Batch job was started for.
    pub(crate) async fn emit_push_submitted(
        &self,
        run: &FlowRun,
        platform: &str,
        infrastructure_id: &str,
        found_existing: bool,
    ) {
        let related = match self.related_of(run).await {
            Some(r) => flow_run_related(run, &r),
            None => Vec::new(),
        };
        let now = self.now();
        let lag_seconds = sluice_core::events::submission_lag(run, now);
        let submitted = PushSubmitted {
            run,
            related,
            platform,
            infrastructure_id,
            found_existing,
            lag_seconds,
        };
        self.emit(push_submitted(submitted, now)).await;
    }

    /// A run's related resources, cached per run; `None` (logged) when they cannot be read.
    async fn related_of(&self, run: &FlowRun) -> Option<Arc<Vec<Related>>> {
        if let Some(r) = self.related_cache.get(run.id) {
            return Some(r);
        }
        match self.flow_run_related(run).await {
            Ok(r) => {
                let r = Arc::new(r);
                self.related_cache.put(run.id, Arc::clone(&r));
                Some(r)
            }
            Err(e) => {
                tracing::warn!(run = %run.id, error = %e, "a flow run's related resources could not be read");
                None
            }
        }
    }

    /// Emits `prefect.flow-run.<State>` for a state `run` just took (from `initial`), as
    /// Prefect's server does. Best effort: a failure is logged, the state change stands.
    pub(crate) async fn emit_flow_run_state_change(&self, run: &FlowRun, initial: Option<&State>) {
        let Some(related) = self.related_of(run).await else {
            return;
        };
        let Some(event) =
            flow_run_state_change(run, initial, flow_run_related(run, &related), self.now())
        else {
            return;
        };
        if let Err(e) = self.ingest_events(std::slice::from_ref(&event)).await {
            tracing::warn!(run = %run.id, error = %e, "flow-run event not stored");
        }
    }

    /// Stores an event the server itself emits. Best effort: a failure is logged, the change
    /// the event tells of stands.
    async fn emit(&self, event: Event) {
        if let Err(e) = self.ingest_events(std::slice::from_ref(&event)).await {
            tracing::warn!(event = %event.event, error = %e, "event not stored");
        }
    }

    pub(crate) async fn emit_pool_status(&self, pool: &WorkPool, status: PoolStatus) {
        self.emit(work_pool_status(pool, status, self.now())).await;
    }

    /// With the queue's pool when the caller has it (else it is read).
    pub(crate) async fn emit_queue_status(
        &self,
        queue: &WorkQueue,
        pool: Option<&WorkPool>,
        status: QueueStatus,
    ) {
        let read;
        let pool = match pool {
            Some(p) => Some(p),
            None => {
                read = self
                    .store
                    .read_work_pool(queue.work_pool_id)
                    .await
                    .ok()
                    .flatten();
                read.as_ref()
            }
        };
        self.emit(work_queue_status(queue, pool, status, self.now()))
            .await;
    }

    pub(crate) async fn emit_deployment_status(&self, d: &Deployment, status: DeploymentStatus) {
        let flow = self.store.read_flow(d.flow_id).await.ok().flatten();
        let queue = match d.work_queue_id {
            Some(id) => self.store.read_work_queue(id).await.ok().flatten(),
            None => None,
        };
        let pool = match &queue {
            Some(q) => self
                .store
                .read_work_pool(q.work_pool_id)
                .await
                .ok()
                .flatten(),
            None => None,
        };
        let event = deployment_status(
            d,
            flow.as_ref().map(|f| f.name.as_str()),
            queue.as_ref(),
            pool.as_ref(),
            status,
            self.now(),
        );
        self.emit(event).await;
    }

    /// Caches a new run's related resources from the flow and pool its creation read, reading
    /// only the rest; best effort (a failure leaves it to the first event to read them all).
    pub(crate) async fn remember_related(
        &self,
        run: &FlowRun,
        flow: sluice_core::domain::Flow,
        pool: Option<WorkPool>,
    ) {
        match self.related_from(run, Some(flow), pool).await {
            Ok(r) => self.related_cache.put(run.id, Arc::new(r)),
            Err(e) => tracing::debug!(run = %run.id, error = %e, "related resources not cached"),
        }
    }

    async fn flow_run_related(&self, run: &FlowRun) -> Result<Vec<Related>> {
        self.related_from(run, None, None).await
    }

    /// What a run's events name besides the run; `flow` and `pool` when the caller has them.
    async fn related_from(
        &self,
        run: &FlowRun,
        flow: Option<sluice_core::domain::Flow>,
        pool: Option<WorkPool>,
    ) -> Result<Vec<Related>> {
        let mut out = Vec::new();
        let flow = match flow {
            Some(f) => Some(f),
            None => self.store.read_flow(run.flow_id).await?,
        };
        if let Some(flow) = flow {
            out.push(Related {
                kind: "flow",
                id: flow.id,
                name: flow.name,
                tags: flow.tags,
                labels: vec![],
            });
        }
        if let Some(id) = run.deployment_id
            && let Some(d) = self.store.read_deployment(id).await?
        {
            out.push(Related {
                kind: "deployment",
                id: d.id,
                name: d.name,
                tags: d.tags,
                labels: vec![],
            });
        }
        if let (Some(id), Some(name)) = (run.work_queue_id, &run.work_queue_name) {
            out.push(Related {
                kind: "work-queue",
                id,
                name: name.clone(),
                tags: vec![],
                labels: vec![],
            });
        }
        let pool = match (pool, run.work_pool_id) {
            (Some(p), Some(id)) if p.id == id => Some(p),
            (_, Some(id)) => self.store.read_work_pool(id).await?,
            (_, None) => None,
        };
        if let Some(pool) = pool {
            out.push(Related {
                kind: "work-pool",
                id: pool.id,
                name: pool.name,
                tags: vec![],
                labels: vec![("prefect.work-pool.type".to_owned(), pool.pool_type)],
            });
        }
        if let Some(id) = run.parent_task_run_id
            && let Some(t) = self.store.read_task_run(id).await?
        {
            out.push(Related {
                kind: "task-run",
                id: t.id,
                name: t.name,
                tags: t.tags,
                labels: vec![],
            });
        }
        Ok(out)
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

    /// `/events/count-by/{countable}`: the events the filter selects, grouped. Without bounds
    /// the range is Prefect's default: from the start of the day 180 days ago until now.
    pub async fn count_events_by(
        &self,
        filter: &EventFilter,
        countable: Countable,
        unit: TimeUnit,
        interval: f64,
    ) -> Result<Vec<EventCount>> {
        let now = self.now();
        let today = now
            .date_naive()
            .and_hms_opt(0, 0, 0)
            .map_or(now, |t| t.and_utc());
        let since = filter
            .occurred_since
            .unwrap_or(today - chrono::Duration::days(180));
        let until = filter.occurred_until.unwrap_or(now);
        let bounded = EventFilter {
            occurred_since: Some(since),
            occurred_until: Some(until),
            ..filter.clone()
        };
        let events = self.store.list_events(&bounded, usize::MAX, 0).await?;
        count_events(&events, countable, unit, interval, (since, until), now)
            .map_err(crate::error::ServiceError::Invalid)
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
