//! The foreman (Prefect §1.5): workers go OFFLINE after missing `inactivity_heartbeat_multiple`
//! heartbeats, pools with no ONLINE worker go NOT_READY, queues not polled lately go NOT_READY.
//! Each change is conditional on what was read, so a heartbeat or poll racing the foreman wins.

use chrono::Duration;
use sluice_core::domain::{DeploymentStatus, PoolStatus, QueueStatus, Timestamp, WorkerStatus};
use sluice_store::{DeploymentFilter, WorkPoolFilter, WorkerFilter};

use crate::Services;
use crate::error::Result;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ForemanReport {
    pub workers_offline: usize,
    pub pools_not_ready: usize,
    pub queues_not_ready: usize,
    pub deployments_not_ready: usize,
}

pub async fn tick(services: &Services) -> Result<ForemanReport> {
    let now = services.now();
    let s = &services.settings;
    let mut report = ForemanReport::default();
    let online = WorkerFilter {
        statuses: Some(vec![WorkerStatus::Online]),
        ..Default::default()
    };
    for worker in services.store.list_workers(None, &online, None, 0).await? {
        let interval = worker
            .heartbeat_interval_seconds
            .unwrap_or(s.fallback_heartbeat_interval_seconds);
        let limit = Duration::seconds(interval.saturating_mul(s.inactivity_heartbeat_multiple));
        if now - worker.last_heartbeat_time > limit
            && services
                .store
                .mark_worker_offline(worker.id, worker.last_heartbeat_time)
                .await?
        {
            report.workers_offline += 1;
        }
    }
    let poll_timeout = Duration::seconds(s.queue_last_polled_timeout_seconds);
    for pool in services
        .store
        .list_work_pools(&WorkPoolFilter::default(), None, 0)
        .await?
    {
        if pool.status == Some(PoolStatus::Ready) {
            let any_online = !services
                .store
                .list_workers(Some(pool.id), &online, Some(1), 0)
                .await?
                .is_empty();
            if !any_online
                && services
                    .store
                    .transition_work_pool_status(
                        pool.id,
                        Some(PoolStatus::Ready),
                        PoolStatus::NotReady,
                    )
                    .await?
            {
                report.pools_not_ready += 1;
                services.emit_pool_status(&pool, PoolStatus::NotReady).await;
            }
        }
        for queue in services.store.list_work_queues(pool.id).await? {
            let stale = queue.last_polled.is_none_or(|t| now - t > poll_timeout);
            if queue.status == QueueStatus::Ready
                && stale
                && services
                    .store
                    .transition_work_queue_status(
                        queue.id,
                        QueueStatus::Ready,
                        QueueStatus::NotReady,
                    )
                    .await?
            {
                report.queues_not_ready += 1;
                services
                    .emit_queue_status(&queue, Some(&pool), QueueStatus::NotReady)
                    .await;
            }
        }
    }
    report.deployments_not_ready = mark_idle_deployments(services, now).await?;
    Ok(report)
}

/// READY deployments nobody polled lately (neither through their queue nor by id) go
/// NOT_READY, conditionally on the poll time read.
async fn mark_idle_deployments(services: &Services, now: Timestamp) -> Result<usize> {
    let timeout = Duration::seconds(services.settings.deployment_last_polled_timeout_seconds);
    let stale = |t: Option<Timestamp>| t.is_none_or(|t| now - t > timeout);
    let ready = DeploymentFilter {
        status: Some(DeploymentStatus::Ready),
        ..Default::default()
    };
    let mut marked = 0;
    for d in services.store.list_deployments(&ready, None, 0).await? {
        if !stale(d.last_polled) {
            continue;
        }
        let queue_polled = match d.work_queue_id {
            Some(id) => services
                .store
                .read_work_queue(id)
                .await?
                .and_then(|q| q.last_polled),
            None => None,
        };
        if stale(queue_polled)
            && services
                .store
                .mark_deployment_not_ready(d.id, d.last_polled)
                .await?
        {
            marked += 1;
            services
                .emit_deployment_status(&d, DeploymentStatus::NotReady)
                .await;
        }
    }
    Ok(marked)
}
