//! Application services: the use cases of the control plane, as plain logic over the store port
//! with an injectable clock.
//!
//! The API handlers, the Lambda functions and `sluice server` all call these; none of them talks
//! to the store directly for anything that has a rule attached. Background services (scheduler,
//! late-run marker, foreman) are single `tick` functions so a loop, a Lambda invocation or a test
//! can drive them; each tick does bounded work and is safe to overlap with another.

mod api_keys;
mod artifacts;
pub mod background;
mod blocks;
mod clock;
mod concurrency;
mod deployment_slots;
mod deployments;
mod error;
mod events;
pub mod foreman;
pub mod late_runs;
mod pools;
pub mod push;
mod runs;
pub mod scheduler;
mod task_runs;
mod templates;

pub use api_keys::ApiKeyCache;
pub use artifacts::{ArtifactInput, ArtifactPatch, ArtifactSort, LatestArtifact};
pub use blocks::{BlockDocumentInput, BlockTypeInput, BlockTypePatch, FullBlockDocument};
pub use clock::{Clock, ManualClock, SystemClock};
pub use concurrency::{Granted, LimitInput, LimitPatch, SlotRequest};
pub use deployments::{
    DeploymentInput, DeploymentPatch, DeploymentScheduleInput, DeploymentSchedulePatch,
    FlowRunFromDeployment,
};
pub use error::ServiceError;
pub use pools::{
    PoolPatch, QueuePatch, ScheduledRunItem, ScheduledRunsQuery, WorkPoolInput, WorkQueueInput,
};
pub use runs::{FlowRunInput, FlowRunPatch, SetStateResult};
pub use task_runs::TaskRunInput;

use std::sync::Arc;

use sluice_store::Store;

/// Tunables with Prefect's defaults (reference, Appendix A).
#[derive(Debug, Clone)]
pub struct Settings {
    pub scheduler: sluice_core::schedules::SchedulerSettings,
    /// A run is Late this long after its scheduled time.
    pub late_after_seconds: i64,
    pub late_batch_size: usize,
    /// Workers go OFFLINE after this many missed heartbeats.
    pub inactivity_heartbeat_multiple: i64,
    pub fallback_heartbeat_interval_seconds: i64,
    pub queue_last_polled_timeout_seconds: i64,
    pub deployment_last_polled_timeout_seconds: i64,
    pub concurrency_slot_wait_seconds: i64,
    /// New push runs due within this many seconds go to the dispatch queue at once (later ones
    /// are enqueued by the scheduler tick as their time approaches).
    pub dispatch_horizon_seconds: i64,
    /// Events older than this many days are deleted by the background tick; `None` keeps them
    /// (or leaves them to the store's own expiry, DynamoDB's TTL).
    pub event_retention_days: Option<i64>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            scheduler: Default::default(),
            late_after_seconds: 15,
            late_batch_size: 400,
            inactivity_heartbeat_multiple: 3,
            fallback_heartbeat_interval_seconds: 30,
            queue_last_polled_timeout_seconds: 60,
            deployment_last_polled_timeout_seconds: 60,
            concurrency_slot_wait_seconds: 30,
            dispatch_horizon_seconds: 120,
            // Prefect's default (`PREFECT_EVENTS_RETENTION_PERIOD`).
            event_retention_days: Some(7),
        }
    }
}

/// The services' shared context: cheap to clone, one per process.
#[derive(Clone)]
pub struct Services {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub settings: Arc<Settings>,
    /// Where new push runs are announced; `None` leaves them to the sweep.
    dispatch_queue: Option<Arc<dyn sluice_infra::DispatchQueue>>,
    /// Events as this process stores them, for live subscribers (`/events/out`).
    live_events: tokio::sync::broadcast::Sender<Arc<sluice_core::domain::Event>>,
    /// What a flow run's events name besides the run, by run (see `events.rs`).
    related_cache: Arc<events::RelatedCache>,
}

impl Services {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, settings: Settings) -> Services {
        Services {
            store,
            clock,
            settings: Arc::new(settings),
            dispatch_queue: None,
            live_events: tokio::sync::broadcast::channel(events::LIVE_BUFFER).0,
            related_cache: Arc::default(),
        }
    }

    /// Announces new push runs to `queue` so they are dispatched at their time.
    #[must_use]
    pub fn with_dispatch_queue(mut self, queue: Arc<dyn sluice_infra::DispatchQueue>) -> Services {
        self.dispatch_queue = Some(queue);
        self
    }

    /// Hands push runs due within the horizon to the dispatch queue. Best effort: a failure is
    /// logged, and the sweep dispatches whatever the queue never got.
    pub(crate) async fn announce_push_runs(
        &self,
        pool_type: Option<&str>,
        runs: &[(sluice_core::domain::Id, sluice_core::domain::Timestamp)],
    ) {
        let Some(queue) = &self.dispatch_queue else {
            return;
        };
        if !pool_type.is_some_and(sluice_core::domain::is_push_pool_type) {
            return;
        }
        let now = self.now();
        let horizon = now + chrono::Duration::seconds(self.settings.dispatch_horizon_seconds);
        let due: Vec<_> = runs
            .iter()
            .filter(|(_, at)| *at <= horizon)
            .copied()
            .collect();
        if due.is_empty() {
            return;
        }
        if let Err(e) = queue.enqueue(&due, now).await {
            tracing::warn!(error = %e, runs = due.len(), "could not enqueue push runs; the sweep will dispatch them");
        }
    }

    pub fn now(&self) -> sluice_core::domain::Timestamp {
        self.clock.now()
    }
}
