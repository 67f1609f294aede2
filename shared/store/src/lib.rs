//! Storage ports and adapters.
//!
//! [`Store`] is the one port the services talk to, split into small traits by aggregate. Its
//! contract, which every adapter must honour and [`conformance`] checks:
//!
//! - **Every write that changes a run's state is a compare-and-set.** A run is read together with
//!   its `version`; [`RunStore::commit_flow_run_state`] and [`RunStore::update_flow_run`] succeed
//!   only when the stored version still equals the one read, and bump it. Otherwise they fail with
//!   [`StoreError::Conflict`] and change nothing. This is what makes a claim race-free: two
//!   claimants may both compute "accept", but only one commit lands.
//! - **Creating a run is idempotent on `(flow_id, idempotency_key)`.** A second create with the
//!   same key returns the first run and `created = false`; scheduled runs carry the key
//!   `scheduled {deployment_id} {schedule_id} {date}`, so a scheduler tick that runs twice, or two
//!   that overlap, create each run once.
//! - **No write is half-applied.** A pool and its default queue, a run and its first state, a
//!   batch of queue priority changes: each lands entirely or not at all.
//! - **Status changes driven by time are conditional** on what the caller saw (a worker goes
//!   OFFLINE only if its heartbeat is still the stale one; a pool or queue moves between statuses
//!   only from the status the caller read), so a heartbeat racing the foreman is never lost.
//! - **Concurrency slots change only by a [`SlotWrite`]** ([`ConcurrencyStore::write_slots`]):
//!   the new values of some limits, each conditional on the `version` it was read at, with a
//!   lease created or revoked (the revoked one must still exist), all or nothing. So two
//!   processes can never both take a limit's last slot, and a lease's slots are given back once.
//! - Reads are read-your-writes consistent for the caller that wrote.
//! - Missing objects on reads are `Ok(None)`; on targeted writes they are
//!   [`StoreError::NotFound`].

mod error;
mod filters;
pub mod matching;
mod ports;
pub mod sqlite;

#[cfg(feature = "testsuite")]
pub mod conformance;

pub use error::StoreError;
pub use filters::{
    ArtifactFilter, DeploymentFilter, DeploymentSort, EventFilter, FlowFilter, FlowRunFilter,
    FlowRunSort, LogFilter, TaskRunFilter, TaskRunSort, WorkPoolFilter, WorkerFilter,
};
pub use ports::{
    ApiKeyStore, ArtifactStore, BlockCatalogStore, BlockStore, ConcurrencyStore, Created,
    DeploymentStore, EventStore, FlowStore, LogStore, PoolStore, RunStore, SlotWrite, Store,
    TaskRunStore, VariableStore, Versioned,
};
pub use sqlite::SqliteStore;
