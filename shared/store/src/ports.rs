//! The port traits. See the crate docs for the contract every adapter honours.

use async_trait::async_trait;
use std::collections::HashMap;

use sluice_core::domain::{
    ApiKey, Artifact, BlockDocument, BlockSchema, BlockType, Deployment, Event, Flow, FlowRun, Id,
    LogEntry, PoolStatus, QueueStatus, State, StateType, TaskRun, Timestamp, Variable, WorkPool,
    WorkQueue, Worker,
};

use sluice_core::concurrency::{ConcurrencyLease, ConcurrencyLimit};

use crate::{
    ArtifactFilter, DeploymentFilter, EventFilter, FlowFilter, FlowRunFilter, FlowRunSort,
    LogFilter, StoreError, TaskRunFilter, TaskRunSort, WorkPoolFilter, WorkerFilter,
};

pub type Result<T> = std::result::Result<T, StoreError>;

/// A value together with the version a compare-and-set must name to replace it.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    pub value: T,
    pub version: u64,
}

/// The answer of an idempotent create: the stored object and whether this call created it.
#[derive(Debug, Clone, PartialEq)]
pub struct Created<T> {
    pub value: T,
    pub created: bool,
}

/// Work pools, their queues and their workers.
#[async_trait]
pub trait PoolStore: Send + Sync {
    /// Creates the pool and its default queue atomically. `Conflict` if the name is taken.
    async fn create_work_pool(&self, pool: &WorkPool, default_queue: &WorkQueue) -> Result<()>;
    async fn read_work_pool(&self, id: Id) -> Result<Option<WorkPool>>;
    async fn read_work_pool_by_name(&self, name: &str) -> Result<Option<WorkPool>>;
    /// Ordered by name.
    async fn list_work_pools(
        &self,
        filter: &WorkPoolFilter,
        limit: Option<usize>,
        offset: usize,
    ) -> Result<Vec<WorkPool>>;
    async fn count_work_pools(&self, filter: &WorkPoolFilter) -> Result<usize>;
    /// Replaces every mutable field of the pool with `id` (the name never changes). `NotFound`.
    async fn update_work_pool(&self, pool: &WorkPool) -> Result<()>;
    /// Moves the pool's status from `from` to `to`; `Ok(false)` (and no change) when the stored
    /// status is not `from`; `NotFound` when there is no such pool.
    async fn transition_work_pool_status(
        &self,
        id: Id,
        from: Option<PoolStatus>,
        to: PoolStatus,
    ) -> Result<bool>;
    /// Deletes the pool with its queues and workers. Deployments and runs that pointed at its
    /// queues keep their queue names and lose the ids; deployments also lose the pool name
    /// (they no longer have a pool), runs keep it as history. `Ok(false)` when there was no
    /// such pool.
    async fn delete_work_pool(&self, id: Id) -> Result<bool>;

    /// `Conflict` if the pool already has a queue of that name.
    async fn create_work_queue(&self, queue: &WorkQueue) -> Result<()>;
    async fn read_work_queue(&self, id: Id) -> Result<Option<WorkQueue>>;
    async fn read_work_queue_by_name(&self, pool_id: Id, name: &str) -> Result<Option<WorkQueue>>;
    /// A pool's queues by priority (1 first), then name.
    async fn list_work_queues(&self, pool_id: Id) -> Result<Vec<WorkQueue>>;
    /// Replaces the given queues atomically (used for renames, settings and priority reshuffles,
    /// which touch several queues at once). `NotFound` if any is missing; `Conflict` if a rename
    /// collides with another queue's name.
    async fn update_work_queues(&self, queues: &[WorkQueue]) -> Result<()>;
    /// Conditional status move, as for pools.
    async fn transition_work_queue_status(
        &self,
        id: Id,
        from: QueueStatus,
        to: QueueStatus,
    ) -> Result<bool>;
    /// Sets `last_polled` on the queues (a poll happened).
    async fn touch_work_queues(&self, ids: &[Id], at: Timestamp) -> Result<()>;
    async fn delete_work_queue(&self, id: Id) -> Result<bool>;

    /// Upserts the worker `(pool_id, name)`: `last_heartbeat_time = at`, status ONLINE, and the
    /// interval when given. Returns the stored worker.
    async fn record_worker_heartbeat(
        &self,
        pool_id: Id,
        name: &str,
        heartbeat_interval_seconds: Option<i64>,
        at: Timestamp,
    ) -> Result<Worker>;
    /// Newest heartbeat first. `pool_id = None` lists the workers of every pool.
    async fn list_workers(
        &self,
        pool_id: Option<Id>,
        filter: &WorkerFilter,
        limit: Option<usize>,
        offset: usize,
    ) -> Result<Vec<Worker>>;
    /// Marks the worker OFFLINE only if its `last_heartbeat_time` still equals `seen_heartbeat`
    /// (a fresh heartbeat wins the race). `Ok(true)` when it was marked; `NotFound` when there is
    /// no such worker.
    async fn mark_worker_offline(&self, id: Id, seen_heartbeat: Timestamp) -> Result<bool>;
    async fn delete_worker(&self, pool_id: Id, name: &str) -> Result<bool>;
}

#[async_trait]
pub trait FlowStore: Send + Sync {
    /// Inserts the flow unless one with its name exists; returns the stored one either way.
    async fn upsert_flow(&self, flow: &Flow) -> Result<Created<Flow>>;
    async fn read_flow(&self, id: Id) -> Result<Option<Flow>>;
    async fn read_flow_by_name(&self, name: &str) -> Result<Option<Flow>>;
    /// Ordered by name.
    async fn list_flows(
        &self,
        filter: &FlowFilter,
        limit: Option<usize>,
        offset: usize,
    ) -> Result<Vec<Flow>>;
    async fn count_flows(&self, filter: &FlowFilter) -> Result<usize>;
    /// Deletes the flow with its deployments and runs.
    async fn delete_flow(&self, id: Id) -> Result<bool>;
}

#[async_trait]
pub trait DeploymentStore: Send + Sync {
    /// `Conflict` if the flow already has a deployment of that name.
    async fn create_deployment(&self, deployment: &Deployment) -> Result<()>;
    async fn read_deployment(&self, id: Id) -> Result<Option<Deployment>>;
    async fn read_deployment_by_name(&self, flow_id: Id, name: &str) -> Result<Option<Deployment>>;
    /// Ordered by name unless `filter.id_after` is set, then by id (keyset paging).
    async fn list_deployments(
        &self,
        filter: &DeploymentFilter,
        limit: Option<usize>,
        offset: usize,
    ) -> Result<Vec<Deployment>>;
    async fn count_deployments(&self, filter: &DeploymentFilter) -> Result<usize>;
    /// Replaces the deployment with `id`, schedules included. `NotFound`.
    async fn update_deployment(&self, deployment: &Deployment) -> Result<()>;
    /// Sets `last_polled` and status READY on the deployments (a poll happened); leaves
    /// `updated` alone so the scheduler is not retriggered.
    async fn mark_deployments_polled(&self, ids: &[Id], at: Timestamp) -> Result<()>;
    /// Sets the deployment NOT_READY only if it is READY and its `last_polled` still equals
    /// `seen_last_polled` (a poll racing the foreman wins). `Ok(true)` when it was changed.
    async fn mark_deployment_not_ready(
        &self,
        id: Id,
        seen_last_polled: Option<Timestamp>,
    ) -> Result<bool>;
    /// Deletes the deployment; its runs stay (with `deployment_id` kept, as Prefect does).
    async fn delete_deployment(&self, id: Id) -> Result<bool>;
}

#[async_trait]
pub trait RunStore: Send + Sync {
    /// Creates the run with its current `state` as the first history entry, idempotently on
    /// `(flow_id, idempotency_key)` when the key is set: a duplicate returns the existing run.
    async fn create_flow_run(&self, run: &FlowRun) -> Result<Created<FlowRun>>;
    /// Creates many runs at once, skipping those whose idempotency key exists. Returns the ids
    /// actually created. Safe to race with itself.
    async fn create_flow_runs(&self, runs: &[FlowRun]) -> Result<Vec<Id>>;
    async fn read_flow_run(&self, id: Id) -> Result<Option<Versioned<FlowRun>>>;
    async fn list_flow_runs(
        &self,
        filter: &FlowRunFilter,
        sort: FlowRunSort,
        limit: Option<usize>,
        offset: usize,
    ) -> Result<Vec<FlowRun>>;
    async fn count_flow_runs(&self, filter: &FlowRunFilter) -> Result<usize>;
    /// Compare-and-set of a run whose state changed: stores `run` (state and bookkeeping) and
    /// appends `run.state` to the history, only if the stored version is `expected_version`.
    /// Returns the new version. `Conflict` when the version moved; `NotFound` when gone.
    async fn commit_flow_run_state(&self, run: &FlowRun, expected_version: u64) -> Result<u64>;
    /// Compare-and-set of a run's other fields (name, parameters, labels, job variables,
    /// infrastructure pid, ...); the state is left as stored. Same answers as above.
    async fn update_flow_run(&self, run: &FlowRun, expected_version: u64) -> Result<u64>;
    /// The run's states, oldest first.
    async fn read_flow_run_states(&self, run_id: Id) -> Result<Vec<State>>;
    async fn delete_flow_run(&self, id: Id) -> Result<bool>;
    /// Deletes the deployment's auto-scheduled runs that are still SCHEDULED, have never run
    /// and are not `AwaitingConcurrencySlot`, optionally only those due at or after `from`.
    /// Each deletion is conditional on those facts still holding. Returns the deleted ids.
    async fn delete_unstarted_auto_scheduled_runs(
        &self,
        deployment_id: Id,
        from: Option<Timestamp>,
    ) -> Result<Vec<Id>>;
    /// Counts runs per queue whose state type is in `state_types`.
    async fn count_runs_by_queue(
        &self,
        queue_ids: &[Id],
        state_types: &[StateType],
    ) -> Result<HashMap<Id, usize>>;
}

#[async_trait]
pub trait VariableStore: Send + Sync {
    /// `Conflict` if the name is taken.
    async fn create_variable(&self, variable: &Variable) -> Result<()>;
    async fn read_variable(&self, id: Id) -> Result<Option<Variable>>;
    async fn read_variable_by_name(&self, name: &str) -> Result<Option<Variable>>;
    /// Ordered by name.
    async fn list_variables(
        &self,
        names: Option<&[String]>,
        limit: Option<usize>,
        offset: usize,
    ) -> Result<Vec<Variable>>;
    /// `NotFound`; `Conflict` on a rename to a taken name.
    async fn update_variable(&self, variable: &Variable) -> Result<()>;
    async fn delete_variable(&self, id: Id) -> Result<bool>;
}

#[async_trait]
pub trait BlockStore: Send + Sync {
    /// `Conflict` if a document of that type already has that name.
    async fn create_block_document(&self, block: &BlockDocument) -> Result<()>;
    async fn read_block_document(&self, id: Id) -> Result<Option<BlockDocument>>;
    async fn read_block_document_by_name(
        &self,
        block_type_slug: &str,
        name: &str,
    ) -> Result<Option<BlockDocument>>;
    async fn list_block_documents(
        &self,
        block_type_slug: Option<&str>,
        limit: Option<usize>,
        offset: usize,
    ) -> Result<Vec<BlockDocument>>;
    /// `NotFound`.
    async fn update_block_document(&self, block: &BlockDocument) -> Result<()>;
    async fn delete_block_document(&self, id: Id) -> Result<bool>;
}

/// The block catalog: block types and their schemas (block documents are [`BlockStore`]'s).
#[async_trait]
pub trait BlockCatalogStore: Send + Sync {
    /// `Conflict` if a type with that slug or name exists.
    async fn create_block_type(&self, block_type: &BlockType) -> Result<()>;
    async fn read_block_type(&self, id: Id) -> Result<Option<BlockType>>;
    async fn read_block_type_by_slug(&self, slug: &str) -> Result<Option<BlockType>>;
    /// Ordered by name.
    async fn list_block_types(&self) -> Result<Vec<BlockType>>;
    /// `NotFound`. The slug and name do not change.
    async fn update_block_type(&self, block_type: &BlockType) -> Result<()>;
    /// Deletes the type with its schemas.
    async fn delete_block_type(&self, id: Id) -> Result<bool>;
    /// `Conflict` if a schema with that checksum and version exists.
    async fn create_block_schema(&self, schema: &BlockSchema) -> Result<()>;
    async fn read_block_schema(&self, id: Id) -> Result<Option<BlockSchema>>;
    /// With `version`, that version; else the newest schema with the checksum.
    async fn read_block_schema_by_checksum(
        &self,
        checksum: &str,
        version: Option<&str>,
    ) -> Result<Option<BlockSchema>>;
    /// Newest first; only a type's schemas with `block_type_id`.
    async fn list_block_schemas(&self, block_type_id: Option<Id>) -> Result<Vec<BlockSchema>>;
    async fn delete_block_schema(&self, id: Id) -> Result<bool>;
}

/// Artifacts. The latest of a key is its newest artifact, found by listing the key.
#[async_trait]
pub trait ArtifactStore: Send + Sync {
    async fn create_artifact(&self, artifact: &Artifact) -> Result<()>;
    async fn read_artifact(&self, id: Id) -> Result<Option<Artifact>>;
    /// Every artifact the filter selects, newest first (by `created`, then id).
    async fn list_artifacts(&self, filter: &ArtifactFilter) -> Result<Vec<Artifact>>;
    /// `NotFound`.
    async fn update_artifact(&self, artifact: &Artifact) -> Result<()>;
    async fn delete_artifact(&self, id: Id) -> Result<bool>;
}

#[async_trait]
pub trait LogStore: Send + Sync {
    async fn create_logs(&self, logs: &[LogEntry]) -> Result<()>;
    async fn list_logs(
        &self,
        filter: &LogFilter,
        limit: Option<usize>,
        offset: usize,
    ) -> Result<Vec<LogEntry>>;
}

/// API keys (hashed) for the API's authentication.
#[async_trait]
pub trait ApiKeyStore: Send + Sync {
    /// `Conflict` if a key with that name or hash exists.
    async fn create_api_key(&self, key: &ApiKey) -> Result<()>;
    /// The key whose secret hashes to `hash`, if any.
    async fn read_api_key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>>;
    /// Ordered by name.
    async fn list_api_keys(&self) -> Result<Vec<ApiKey>>;
    async fn delete_api_key(&self, id: Id) -> Result<bool>;
}

/// One all-or-nothing change to slot counts: new values of limits (each carrying the `version`
/// it was read at), and a lease taken or given back with them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SlotWrite {
    /// Written only if each stored version still equals the one carried; stored as version + 1.
    pub limits: Vec<ConcurrencyLimit>,
    /// Stored with the slots it holds.
    pub create_lease: Option<ConcurrencyLease>,
    /// Deleted with the slots it held; it must still exist.
    pub revoke_lease: Option<Id>,
}

/// Global concurrency limits (tag limits are those named `tag:...`) and the leases on them.
/// Every change of slot counts is one [`SlotWrite`], conditional on what the caller read, so
/// two processes can never both take a limit's last slot, and a lease is given back once.
#[async_trait]
pub trait ConcurrencyStore: Send + Sync {
    /// `Conflict` if the name is taken. The version is stored as given.
    async fn create_concurrency_limit(&self, limit: &ConcurrencyLimit) -> Result<()>;
    async fn read_concurrency_limit(&self, id: Id) -> Result<Option<ConcurrencyLimit>>;
    async fn read_concurrency_limit_by_name(&self, name: &str) -> Result<Option<ConcurrencyLimit>>;
    /// The limits with these names, ordered by name; names that do not exist are left out.
    async fn read_concurrency_limits_by_names(
        &self,
        names: &[String],
    ) -> Result<Vec<ConcurrencyLimit>>;
    /// Ordered by name; with `prefix`, only names that start with it.
    async fn list_concurrency_limits(
        &self,
        prefix: Option<&str>,
        limit: Option<usize>,
        offset: usize,
    ) -> Result<Vec<ConcurrencyLimit>>;
    /// Replaces a limit if its stored version is `limit.version` (stored as version + 1).
    /// `NotFound` when gone; `Conflict` when the version moved or the new name is taken.
    async fn update_concurrency_limit(&self, limit: &ConcurrencyLimit) -> Result<()>;
    async fn delete_concurrency_limit(&self, id: Id) -> Result<bool>;
    /// `Conflict` (nothing written) when a limit's version moved or it is gone, or when the
    /// lease to revoke is gone.
    async fn write_slots(&self, write: &SlotWrite) -> Result<()>;
    async fn read_lease(&self, id: Id) -> Result<Option<ConcurrencyLease>>;
    /// Moves the lease's expiry; `false` when there is no such lease.
    async fn renew_lease(&self, id: Id, expires: Timestamp) -> Result<bool>;
    /// Leases that expired before `now`, oldest expiry first, at most `limit`.
    async fn list_expired_leases(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<ConcurrencyLease>>;
    /// Every lease, expired or not (for tag limits' holders, reset and delete).
    async fn list_leases(&self) -> Result<Vec<ConcurrencyLease>>;
    /// Deletes the lease without touching slots; `false` when there was none.
    async fn revoke_lease(&self, id: Id) -> Result<bool>;
}

/// Task runs and their state history. Runs reported by events are keyed by id; runs created
/// through the API also by their natural key (flow run, task key, dynamic key).
#[async_trait]
pub trait TaskRunStore: Send + Sync {
    /// Records runs reported by events, in order. A run is written when it is new or its state
    /// is newer (by timestamp) than the stored one, which keeps its `created` and moves its
    /// `version` on; its state joins the run's history unless a state with that id is there
    /// already (so a resent event changes nothing). Returns how many runs were written.
    async fn record_task_runs(&self, runs: &[TaskRun]) -> Result<usize>;
    /// Creates a run unless one with its natural key exists (when `flow_run_id` is set): the
    /// stored run and whether it was created. A created run's state joins its history.
    async fn create_task_run(&self, run: &TaskRun) -> Result<(TaskRun, bool)>;
    async fn read_task_run(&self, id: Id) -> Result<Option<TaskRun>>;
    /// The runs the filter selects, sorted, paged.
    async fn list_task_runs(
        &self,
        filter: &TaskRunFilter,
        sort: TaskRunSort,
        limit: Option<usize>,
        offset: usize,
    ) -> Result<Vec<TaskRun>>;
    async fn count_task_runs(&self, filter: &TaskRunFilter) -> Result<usize>;
    /// Replaces a run if its stored version is `run.version` (stored as version + 1); a new
    /// state joins the history. `NotFound` when gone, `Conflict` when the version moved.
    async fn update_task_run(&self, run: &TaskRun) -> Result<()>;
    /// Deletes a run with its history.
    async fn delete_task_run(&self, id: Id) -> Result<bool>;
    /// A run's states, oldest first (by timestamp, then id).
    async fn list_task_run_states(&self, task_run_id: Id) -> Result<Vec<State>>;
}

/// Events, stored once each by id, kept until they are older than the retention.
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Stores the events not stored yet; returns the ids of those that were new, in order.
    async fn put_events(&self, events: &[Event]) -> Result<Vec<Id>>;
    /// The events the filter selects, ordered by `occurred` (then id) as the filter asks.
    async fn list_events(
        &self,
        filter: &EventFilter,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<Event>>;
    async fn count_events(&self, filter: &EventFilter) -> Result<usize>;
    /// Deletes up to `limit` events that occurred before `before`; how many went.
    async fn delete_events_before(&self, before: Timestamp, limit: usize) -> Result<usize>;
}

/// Everything the services need, as one object they can share (`Arc<dyn Store>`).
pub trait Store:
    PoolStore
    + FlowStore
    + DeploymentStore
    + RunStore
    + VariableStore
    + BlockStore
    + BlockCatalogStore
    + ArtifactStore
    + LogStore
    + ApiKeyStore
    + ConcurrencyStore
    + TaskRunStore
    + EventStore
{
}

impl<T> Store for T where
    T: PoolStore
        + FlowStore
        + DeploymentStore
        + RunStore
        + VariableStore
        + BlockStore
        + BlockCatalogStore
        + ArtifactStore
        + LogStore
        + ApiKeyStore
        + ConcurrencyStore
        + TaskRunStore
        + EventStore
{
}
