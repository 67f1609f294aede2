//! Work pools, queues, workers and the worker poll (`get_scheduled_flow_runs`).

use serde_json::Value;
use sluice_core::domain::{
    DeploymentStatus, FlowRun, Id, JsonMap, PoolStatus, QueueStatus, StateType, Timestamp,
    WorkPool, WorkQueue, Worker, WorkerStatus, validate_name,
};
use sluice_core::{pool_types, schema};
use sluice_store::{DeploymentFilter, FlowRunFilter, FlowRunSort, WorkerFilter};

use crate::Services;
use crate::error::{Result, ServiceError};

/// Body of a pool creation, already parsed.
#[derive(Debug, Clone, Default)]
pub struct WorkPoolInput {
    pub name: String,
    pub description: Option<String>,
    pub pool_type: Option<String>,
    pub base_job_template: Option<Value>,
    pub is_paused: bool,
    pub concurrency_limit: Option<i64>,
    pub storage_configuration: Option<Value>,
}

/// A partial update: `None` leaves a field alone; `Some(None)` clears a nullable one.
#[derive(Debug, Clone, Default)]
pub struct PoolPatch {
    pub description: Option<Option<String>>,
    pub is_paused: Option<bool>,
    pub base_job_template: Option<Value>,
    pub concurrency_limit: Option<Option<i64>>,
    pub storage_configuration: Option<Value>,
}

#[derive(Debug, Clone, Default)]
pub struct WorkQueueInput {
    pub name: String,
    pub description: Option<String>,
    pub is_paused: bool,
    pub concurrency_limit: Option<i64>,
    pub priority: Option<i64>,
}

#[derive(Debug, Clone, Default)]
pub struct QueuePatch {
    pub name: Option<String>,
    pub description: Option<Option<String>>,
    pub is_paused: Option<bool>,
    pub concurrency_limit: Option<Option<i64>>,
    pub priority: Option<i64>,
    pub last_polled: Option<Option<Timestamp>>,
}

#[derive(Debug, Clone, Default)]
pub struct ScheduledRunsQuery {
    pub work_queue_names: Vec<String>,
    pub scheduled_before: Option<Timestamp>,
    pub scheduled_after: Option<Timestamp>,
    pub limit: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct ScheduledRunItem {
    pub work_pool_id: Id,
    pub work_queue_id: Id,
    pub flow_run: FlowRun,
}

const DEFAULT_QUEUE_NAME: &str = "default";
const DEFAULT_QUEUE_DESCRIPTION: &str = "The work pool's default queue.";
/// Prefect's limit on one poll; also the API's maximum list size.
pub(crate) const MAX_LIMIT: usize = 200;

fn is_reserved(name: &str) -> bool {
    name.to_lowercase().starts_with("prefect")
}

fn pool_not_found(name: &str) -> ServiceError {
    ServiceError::NotFound(format!("Work pool \"{name}\" not found."))
}

fn queue_not_found(pool: &str, queue: &str) -> ServiceError {
    ServiceError::NotFound(format!("Work pool queue '{pool}/{queue}' not found."))
}

/// Checks a template and answers the warnings it draws (declared but unused variables).
fn check_template(template: &Value, check_defaults: bool) -> Result<Vec<String>> {
    let report = schema::validate_base_job_template(template, check_defaults)
        .map_err(|e| ServiceError::Invalid(e.to_string()))?;
    Ok(report.warnings)
}

impl Services {
    pub async fn read_work_pool(&self, name: &str) -> Result<WorkPool> {
        self.store
            .read_work_pool_by_name(name)
            .await?
            .ok_or_else(|| pool_not_found(name))
    }

    /// Creates a pool with its `default` queue. A pool created without a template gets its
    /// type's default template at once, so job variables can be checked from the first deploy
    /// (Prefect waits for a worker to patch it in). Returns the pool and template warnings.
    pub async fn create_work_pool(&self, input: WorkPoolInput) -> Result<(WorkPool, Vec<String>)> {
        validate_name(&input.name).map_err(|e| ServiceError::Invalid(e.to_string()))?;
        if is_reserved(&input.name) {
            return Err(ServiceError::Forbidden(
                "Work pools starting with 'Prefect' are reserved for internal use.".to_owned(),
            ));
        }
        if let Some(limit) = input.concurrency_limit {
            check_non_negative("concurrency_limit", limit)?;
        }
        let pool_type = input
            .pool_type
            .unwrap_or_else(|| "prefect-agent".to_owned());
        let given = input.base_job_template.filter(|t| !is_empty_template(t));
        let (template, warnings) = match given {
            Some(t) => {
                let warnings = check_template(&t, true)?;
                (t, warnings)
            }
            // Agent pools (Prefect 2.x) have no template; any other type without one would make
            // a pool no worker can use, so a typo (`proccess`) is refused, not stored.
            None if pool_type == "prefect-agent" => (Value::Object(JsonMap::new()), Vec::new()),
            None => match pool_types::default_base_job_template(&pool_type) {
                Some(template) => (template, Vec::new()),
                None => {
                    let known: Vec<&str> = pool_types::known_pool_types()
                        .iter()
                        .map(|t| t.pool_type)
                        .collect();
                    return Err(ServiceError::Invalid(format!(
                        "unknown work pool type '{pool_type}': the known types are {}; a pool \
                         of another type needs its base_job_template",
                        known.join(", ")
                    )));
                }
            },
        };
        let now = self.now();
        let status = if pool_type == "prefect-agent" {
            None
        } else if input.is_paused {
            Some(PoolStatus::Paused)
        } else {
            Some(PoolStatus::NotReady)
        };
        let pool_id = uuid::Uuid::new_v4();
        let queue = WorkQueue {
            id: uuid::Uuid::new_v4(),
            created: now,
            updated: now,
            name: DEFAULT_QUEUE_NAME.to_owned(),
            description: DEFAULT_QUEUE_DESCRIPTION.to_owned(),
            is_paused: false,
            concurrency_limit: None,
            priority: 1,
            work_pool_id: pool_id,
            last_polled: None,
            status: QueueStatus::NotReady,
        };
        let pool = WorkPool {
            id: pool_id,
            created: now,
            updated: now,
            name: input.name,
            description: input.description,
            pool_type,
            base_job_template: template,
            is_paused: input.is_paused,
            concurrency_limit: input.concurrency_limit,
            status,
            default_queue_id: Some(queue.id),
            storage_configuration: input.storage_configuration.unwrap_or_else(empty_storage),
        };
        self.store
            .create_work_pool(&pool, &queue)
            .await
            .map_err(|e| match e {
                sluice_store::StoreError::Conflict(_) => ServiceError::Conflict(format!(
                    "A work pool with the name {:?} already exists.",
                    pool.name
                )),
                other => other.into(),
            })?;
        Ok((pool, warnings))
    }

    pub async fn update_work_pool(&self, name: &str, patch: PoolPatch) -> Result<Vec<String>> {
        let mut pool = self.read_work_pool(name).await?;
        if is_reserved(name)
            && (patch.description.is_some()
                || patch.base_job_template.is_some()
                || patch.storage_configuration.is_some())
        {
            return Err(ServiceError::Forbidden(
                "Work pools starting with 'Prefect' are reserved for internal use and can only be updated to set concurrency limits or pause.".to_owned(),
            ));
        }
        let mut warnings = Vec::new();
        if let Some(t) = patch.base_job_template {
            if !is_empty_template(&t) {
                warnings = check_template(&t, false)?;
            }
            pool.base_job_template = t;
        }
        if let Some(d) = patch.description {
            pool.description = d;
        }
        if let Some(limit) = patch.concurrency_limit {
            if let Some(l) = limit {
                check_non_negative("concurrency_limit", l)?;
            }
            pool.concurrency_limit = limit;
        }
        if let Some(s) = patch.storage_configuration {
            pool.storage_configuration = s;
        }
        if let Some(paused) = patch.is_paused {
            pool.is_paused = paused;
            if pool.status.is_some() {
                pool.status = Some(if paused {
                    PoolStatus::Paused
                } else if self.pool_has_online_worker(pool.id).await? {
                    PoolStatus::Ready
                } else {
                    PoolStatus::NotReady
                });
            }
        }
        pool.updated = self.now();
        self.store.update_work_pool(&pool).await?;
        Ok(warnings)
    }

    pub async fn delete_work_pool(&self, name: &str) -> Result<()> {
        if is_reserved(name) {
            return Err(ServiceError::Forbidden(
                "Work pools starting with 'Prefect' are reserved for internal use.".to_owned(),
            ));
        }
        let pool = self.read_work_pool(name).await?;
        self.store.delete_work_pool(pool.id).await?;
        Ok(())
    }

    async fn pool_has_online_worker(&self, pool_id: Id) -> Result<bool> {
        let filter = WorkerFilter {
            statuses: Some(vec![WorkerStatus::Online]),
            ..Default::default()
        };
        Ok(!self
            .store
            .list_workers(Some(pool_id), &filter, Some(1), 0)
            .await?
            .is_empty())
    }

    // ---- queues -------------------------------------------------------------------------

    pub async fn read_work_queue(
        &self,
        pool_name: &str,
        name: &str,
    ) -> Result<(WorkPool, WorkQueue)> {
        let pool = self.read_work_pool(pool_name).await?;
        let queue = self
            .store
            .read_work_queue_by_name(pool.id, name)
            .await?
            .ok_or_else(|| queue_not_found(pool_name, name))?;
        Ok((pool, queue))
    }

    /// A queue by id, with its pool (Prefect's legacy `GET /work_queues/{id}`, which the engine
    /// reads for its events' related resources).
    pub async fn read_work_queue_by_id(&self, id: Id) -> Result<(WorkPool, WorkQueue)> {
        let gone = || ServiceError::NotFound("Work queue not found".to_owned());
        let queue = self.store.read_work_queue(id).await?.ok_or_else(gone)?;
        let pool = self
            .store
            .read_work_pool(queue.work_pool_id)
            .await?
            .ok_or_else(gone)?;
        Ok((pool, queue))
    }

    pub async fn create_work_queue(
        &self,
        pool_name: &str,
        input: WorkQueueInput,
    ) -> Result<WorkQueue> {
        validate_name(&input.name).map_err(|e| ServiceError::Invalid(e.to_string()))?;
        if let Some(limit) = input.concurrency_limit {
            check_non_negative("concurrency_limit", limit)?;
        }
        if let Some(p) = input.priority
            && p < 1
        {
            return Err(ServiceError::Invalid(
                "priority must be greater than or equal to 1".to_owned(),
            ));
        }
        let pool = self.read_work_pool(pool_name).await?;
        let now = self.now();
        let existing = self.store.list_work_queues(pool.id).await?;
        let mut queue = WorkQueue {
            id: uuid::Uuid::new_v4(),
            created: now,
            updated: now,
            name: input.name,
            description: input.description.unwrap_or_default(),
            is_paused: input.is_paused,
            concurrency_limit: input.concurrency_limit,
            priority: 0,
            work_pool_id: pool.id,
            last_polled: None,
            status: if input.is_paused {
                QueueStatus::Paused
            } else {
                QueueStatus::NotReady
            },
        };
        let (priority, shifted) = place_priority(&existing, None, input.priority, now);
        queue.priority = priority;
        if existing.iter().any(|q| q.name == queue.name) {
            return Err(ServiceError::Conflict(format!(
                "A work queue with the name {:?} already exists in work pool {:?}.",
                queue.name, pool.name
            )));
        }
        self.store
            .create_work_queue(&queue)
            .await
            .map_err(|e| match e {
                sluice_store::StoreError::Conflict(_) => ServiceError::Conflict(format!(
                    "A work queue with the name {:?} already exists in work pool {:?}.",
                    queue.name, pool.name
                )),
                other => other.into(),
            })?;
        if !shifted.is_empty() {
            self.store.update_work_queues(&shifted).await?;
        }
        Ok(queue)
    }

    pub async fn update_work_queue(
        &self,
        pool_name: &str,
        name: &str,
        patch: QueuePatch,
    ) -> Result<()> {
        let (pool, mut queue) = self.read_work_queue(pool_name, name).await?;
        let now = self.now();
        let mut changed = Vec::new();
        if let Some(new_name) = patch.name {
            validate_name(&new_name).map_err(|e| ServiceError::Invalid(e.to_string()))?;
            queue.name = new_name;
        }
        if let Some(d) = patch.description {
            queue.description = d.unwrap_or_default();
        }
        if let Some(limit) = patch.concurrency_limit {
            if let Some(l) = limit {
                check_non_negative("concurrency_limit", l)?;
            }
            queue.concurrency_limit = limit;
        }
        if let Some(lp) = patch.last_polled {
            queue.last_polled = lp;
        }
        if let Some(paused) = patch.is_paused {
            if paused && queue.status != QueueStatus::Paused {
                queue.status = QueueStatus::Paused;
            } else if !paused && queue.status == QueueStatus::Paused {
                let recent = queue.last_polled.is_some_and(|t| {
                    now - t
                        <= chrono::Duration::seconds(
                            self.settings.queue_last_polled_timeout_seconds,
                        )
                });
                queue.status = if recent {
                    QueueStatus::Ready
                } else {
                    QueueStatus::NotReady
                };
            }
            queue.is_paused = paused;
        }
        if let Some(p) = patch.priority {
            if p < 1 {
                return Err(ServiceError::Invalid(
                    "priority must be greater than or equal to 1".to_owned(),
                ));
            }
            let existing = self.store.list_work_queues(pool.id).await?;
            let (priority, shifted) = place_priority(&existing, Some(queue.id), Some(p), now);
            queue.priority = priority;
            changed.extend(shifted);
        }
        queue.updated = now;
        changed.push(queue);
        self.store.update_work_queues(&changed).await?;
        Ok(())
    }

    pub async fn delete_work_queue(&self, pool_name: &str, name: &str) -> Result<()> {
        let (pool, queue) = self.read_work_queue(pool_name, name).await?;
        if pool.default_queue_id == Some(queue.id) {
            return Err(ServiceError::BadRequest(
                "Can't delete a pool's default queue.".to_owned(),
            ));
        }
        self.store.delete_work_queue(queue.id).await?;
        Ok(())
    }

    // ---- workers ------------------------------------------------------------------------

    pub async fn worker_heartbeat(
        &self,
        pool_name: &str,
        worker_name: &str,
        heartbeat_interval_seconds: Option<i64>,
    ) -> Result<Worker> {
        if worker_name.is_empty() || worker_name.contains(['/', '%']) {
            return Err(ServiceError::Invalid(format!(
                "worker name {worker_name:?} must be non-empty and must not contain / or %"
            )));
        }
        let pool = self.read_work_pool(pool_name).await?;
        let worker = self
            .store
            .record_worker_heartbeat(pool.id, worker_name, heartbeat_interval_seconds, self.now())
            .await?;
        if pool.status == Some(PoolStatus::NotReady)
            && self
                .store
                .transition_work_pool_status(pool.id, Some(PoolStatus::NotReady), PoolStatus::Ready)
                .await?
        {
            self.emit_pool_status(&pool, PoolStatus::Ready).await;
        }
        Ok(worker)
    }

    pub async fn delete_worker(&self, pool_name: &str, worker_name: &str) -> Result<()> {
        let pool = self.read_work_pool(pool_name).await?;
        if !self.store.delete_worker(pool.id, worker_name).await? {
            return Err(ServiceError::NotFound(format!(
                "Worker \"{worker_name}\" not found."
            )));
        }
        Ok(())
    }

    // ---- the poll -----------------------------------------------------------------------

    /// Prefect's selection (§1.3): SCHEDULED runs (any name) of the pool's unpaused queues,
    /// within each queue's and the pool's free capacity, by queue priority then scheduled
    /// time. No run changes state here; polled queues and their deployments are marked ready
    /// (also when the pool is paused, as in Prefect).
    pub async fn get_scheduled_flow_runs(
        &self,
        pool_name: &str,
        query: ScheduledRunsQuery,
    ) -> Result<Vec<ScheduledRunItem>> {
        let pool = self.read_work_pool(pool_name).await?;
        let limit = query.limit.unwrap_or(MAX_LIMIT).min(MAX_LIMIT);
        let all_queues = self.store.list_work_queues(pool.id).await?;
        let queues: Vec<WorkQueue> = if query.work_queue_names.is_empty() {
            all_queues.clone()
        } else {
            let mut picked = Vec::new();
            for name in &query.work_queue_names {
                let q = all_queues
                    .iter()
                    .find(|q| &q.name == name)
                    .ok_or_else(|| queue_not_found(pool_name, name))?;
                picked.push(q.clone());
            }
            picked.sort_by_key(|q| q.priority);
            picked
        };
        let now = self.now();
        self.mark_polled(&queues, now).await?;
        if pool.is_paused {
            return Ok(Vec::new());
        }
        let active_types = [StateType::Pending, StateType::Running];
        let ids: Vec<Id> = all_queues.iter().map(|q| q.id).collect();
        let active = self.store.count_runs_by_queue(&ids, &active_types).await?;
        let mut pool_room = match pool.concurrency_limit {
            Some(l) => {
                let used: usize = active.values().sum();
                usize::try_from(l).unwrap_or(0).saturating_sub(used)
            }
            None => usize::MAX,
        };
        let mut items = Vec::new();
        for queue in queues.iter().filter(|q| !q.is_paused) {
            let room = match queue.concurrency_limit {
                Some(l) => usize::try_from(l)
                    .unwrap_or(0)
                    .saturating_sub(active.get(&queue.id).copied().unwrap_or(0)),
                None => usize::MAX,
            };
            let take = room.min(pool_room).min(limit - items.len());
            if take == 0 {
                continue;
            }
            let filter = FlowRunFilter {
                work_queue_ids: Some(vec![queue.id]),
                state_types: Some(vec![StateType::Scheduled]),
                next_scheduled_start_time_before: query.scheduled_before,
                next_scheduled_start_time_after: query.scheduled_after,
                exclude_in_process_retries: true,
                ..Default::default()
            };
            let runs = self
                .store
                .list_flow_runs(
                    &filter,
                    FlowRunSort::NextScheduledStartTimeAsc,
                    Some(take),
                    0,
                )
                .await?;
            pool_room = pool_room.saturating_sub(runs.len());
            items.extend(runs.into_iter().map(|flow_run| ScheduledRunItem {
                work_pool_id: pool.id,
                work_queue_id: queue.id,
                flow_run,
            }));
            if items.len() >= limit {
                break;
            }
        }
        Ok(items)
    }

    /// Prefect's `mark_work_queues_ready` and `mark_deployments_ready`: the polled queues and
    /// every deployment on them record the poll, whether or not a run was handed out.
    async fn mark_polled(&self, queues: &[WorkQueue], now: Timestamp) -> Result<()> {
        let ids: Vec<Id> = queues.iter().map(|q| q.id).collect();
        self.store.touch_work_queues(&ids, now).await?;
        for q in queues.iter().filter(|q| q.status == QueueStatus::NotReady) {
            if self
                .store
                .transition_work_queue_status(q.id, QueueStatus::NotReady, QueueStatus::Ready)
                .await?
            {
                self.emit_queue_status(q, None, QueueStatus::Ready).await;
            }
        }
        if ids.is_empty() {
            return Ok(());
        }
        let filter = DeploymentFilter {
            work_queue_ids: Some(ids),
            ..Default::default()
        };
        let deployments = self.store.list_deployments(&filter, None, 0).await?;
        let deployment_ids: Vec<Id> = deployments.iter().map(|d| d.id).collect();
        if !deployment_ids.is_empty() {
            self.store
                .mark_deployments_polled(&deployment_ids, now)
                .await?;
        }
        // Those that were not ready are now (as read before the poll was recorded).
        for d in deployments
            .iter()
            .filter(|d| d.status == DeploymentStatus::NotReady)
        {
            self.emit_deployment_status(d, DeploymentStatus::Ready)
                .await;
        }
        Ok(())
    }
}

fn is_empty_template(t: &Value) -> bool {
    t.as_object().is_some_and(|o| o.is_empty())
}

fn empty_storage() -> Value {
    serde_json::json!({
        "bundle_upload_step": null,
        "bundle_execution_step": null,
        "default_result_storage_block_id": null
    })
}

fn check_non_negative(field: &str, value: i64) -> Result<()> {
    if value < 0 {
        return Err(ServiceError::Invalid(format!(
            "{field} must be greater than or equal to 0, got {value}"
        )));
    }
    Ok(())
}

/// Places a queue at `wanted` priority (or the first free one) and returns the priority with
/// the other queues that must move: the contiguous run of queues at and after the wanted rank is
/// pushed down by one, which is the fewest changes that keep priorities unique and ordered.
fn place_priority(
    existing: &[WorkQueue],
    moving: Option<Id>,
    wanted: Option<i64>,
    now: Timestamp,
) -> (i64, Vec<WorkQueue>) {
    let mut others: Vec<&WorkQueue> = existing.iter().filter(|q| Some(q.id) != moving).collect();
    others.sort_by_key(|q| q.priority);
    let taken = |p: i64, qs: &[&WorkQueue]| qs.iter().any(|q| q.priority == p);
    let Some(wanted) = wanted else {
        let mut p = 1;
        while taken(p, &others) {
            p += 1;
        }
        return (p, Vec::new());
    };
    let mut shifted = Vec::new();
    for (next, q) in (wanted..).zip(others.iter().filter(|q| q.priority >= wanted)) {
        if q.priority != next {
            break;
        }
        let mut moved = (*q).clone();
        moved.priority += 1;
        moved.updated = now;
        shifted.push(moved);
    }
    (wanted, shifted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(name: &str, priority: i64) -> WorkQueue {
        let now = chrono::Utc::now();
        WorkQueue {
            id: uuid::Uuid::new_v4(),
            created: now,
            updated: now,
            name: name.to_owned(),
            description: String::new(),
            is_paused: false,
            concurrency_limit: None,
            priority,
            work_pool_id: uuid::Uuid::nil(),
            last_polled: None,
            status: QueueStatus::NotReady,
        }
    }

    #[test]
    fn priority_takes_the_first_gap_or_shifts_the_fewest_queues() {
        let now = chrono::Utc::now();
        let qs = vec![queue("a", 1), queue("b", 2), queue("c", 4)];
        assert_eq!(place_priority(&qs, None, None, now).0, 3);
        let (p, moved) = place_priority(&qs, None, Some(2), now);
        assert_eq!(p, 2);
        let moved: Vec<(String, i64)> = moved.into_iter().map(|q| (q.name, q.priority)).collect();
        assert_eq!(moved, vec![("b".to_owned(), 3)]);
        let (_, moved) = place_priority(&qs, None, Some(1), now);
        assert_eq!(moved.len(), 2, "a and b shift, c keeps 4");
        let (_, moved) = place_priority(&qs, None, Some(3), now);
        assert!(moved.is_empty());
    }
}
