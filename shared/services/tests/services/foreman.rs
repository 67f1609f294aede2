//! Heartbeats and the foreman (reference §1.4–1.5): workers go OFFLINE after three missed
//! heartbeats, pools without an ONLINE worker go NOT_READY, queues not polled for 60 s go
//! NOT_READY, paused pools stay PAUSED.

use sluice_core::domain::{
    DeploymentStatus, PoolStatus, QueueStatus, WorkPool, Worker, WorkerStatus,
};
use sluice_services::foreman::{self, ForemanReport};
use sluice_services::{ScheduledRunsQuery, WorkPoolInput, WorkQueueInput};
use sluice_store::{EventFilter, WorkerFilter};

use crate::common::{Env, at, env, t0};

async fn worker(env: &Env, pool: &WorkPool, name: &str) -> Worker {
    env.store
        .list_workers(Some(pool.id), &WorkerFilter::default(), None, 0)
        .await
        .expect("workers")
        .into_iter()
        .find(|w| w.name == name)
        .expect("the worker exists")
}

/// The status events emitted so far, oldest first, as `(event, resource name)`.
async fn status_events(env: &Env) -> Vec<(String, String)> {
    let filter = EventFilter {
        ascending: true,
        ..EventFilter::default()
    };
    env.services
        .read_events(&filter, 100, 0)
        .await
        .expect("events")
        .into_iter()
        .filter(|e| !e.event.starts_with("prefect.flow-run."))
        .map(|e| {
            let name = e
                .resource
                .get("prefect.resource.name")
                .cloned()
                .unwrap_or_default();
            (e.event, name)
        })
        .collect()
}

async fn pool_status(env: &Env, name: &str) -> Option<PoolStatus> {
    env.services
        .read_work_pool(name)
        .await
        .expect("pool")
        .status
}

async fn queue_status(env: &Env, pool: &str, queue: &str) -> QueueStatus {
    env.services
        .read_work_queue(pool, queue)
        .await
        .expect("queue")
        .1
        .status
}

#[tokio::test]
async fn a_heartbeat_brings_the_worker_online_and_the_pool_ready() {
    let env = env();
    let pool = env.pool("pool").await;
    assert_eq!(pool.status, Some(PoolStatus::NotReady));

    let w = env
        .services
        .worker_heartbeat("pool", "ProcessWorker 1", Some(30))
        .await
        .expect("heartbeat");
    assert_eq!(w.status, WorkerStatus::Online);
    assert_eq!(w.last_heartbeat_time, t0());
    assert_eq!(w.heartbeat_interval_seconds, Some(30));
    assert_eq!(w.work_pool_id, pool.id);
    assert_eq!(pool_status(&env, "pool").await, Some(PoolStatus::Ready));

    // A second heartbeat updates the same worker.
    env.set_now(at(30));
    env.services
        .worker_heartbeat("pool", "ProcessWorker 1", None)
        .await
        .expect("heartbeat");
    let w = worker(&env, &pool, "ProcessWorker 1").await;
    assert_eq!(w.last_heartbeat_time, at(30));
    assert_eq!(w.heartbeat_interval_seconds, Some(30), "kept when not sent");
    assert_eq!(
        env.store
            .list_workers(Some(pool.id), &WorkerFilter::default(), None, 0)
            .await
            .expect("workers")
            .len(),
        1
    );
}

#[tokio::test]
async fn three_missed_heartbeats_take_the_worker_offline_and_the_pool_not_ready() {
    let env = env();
    let pool = env.pool("pool").await;
    env.services
        .worker_heartbeat("pool", "w", Some(30))
        .await
        .expect("heartbeat");

    // 3 × 30 s exactly is not yet too long.
    env.set_now(at(90));
    assert_eq!(
        foreman::tick(&env.services).await.expect("tick"),
        ForemanReport::default()
    );
    assert_eq!(worker(&env, &pool, "w").await.status, WorkerStatus::Online);
    assert_eq!(pool_status(&env, "pool").await, Some(PoolStatus::Ready));

    env.set_now(at(91));
    let report = foreman::tick(&env.services).await.expect("tick");
    assert_eq!(report.workers_offline, 1);
    assert_eq!(report.pools_not_ready, 1);
    let w = worker(&env, &pool, "w").await;
    assert_eq!(w.status, WorkerStatus::Offline);
    assert_eq!(w.last_heartbeat_time, t0());
    assert_eq!(pool_status(&env, "pool").await, Some(PoolStatus::NotReady));

    // Nothing left to do on the next pass; a heartbeat brings both back.
    assert_eq!(
        foreman::tick(&env.services).await.expect("tick"),
        ForemanReport::default()
    );
    env.services
        .worker_heartbeat("pool", "w", Some(30))
        .await
        .expect("heartbeat");
    assert_eq!(worker(&env, &pool, "w").await.status, WorkerStatus::Online);
    assert_eq!(pool_status(&env, "pool").await, Some(PoolStatus::Ready));

    // Each change of the pool's status is an event, as Prefect's server emits them.
    let pool_events: Vec<String> = status_events(&env)
        .await
        .into_iter()
        .map(|(e, _)| e)
        .collect();
    assert_eq!(
        pool_events,
        [
            "prefect.work-pool.ready",
            "prefect.work-pool.not-ready",
            "prefect.work-pool.ready"
        ]
    );
}

#[tokio::test]
async fn the_limit_follows_the_worker_interval_or_the_thirty_second_fallback() {
    let env = env();
    let pool = env.pool("pool").await;
    env.services
        .worker_heartbeat("pool", "fast", Some(10))
        .await
        .expect("heartbeat");
    env.services
        .worker_heartbeat("pool", "silent", None)
        .await
        .expect("heartbeat");

    env.set_now(at(30));
    foreman::tick(&env.services).await.expect("tick");
    assert_eq!(
        worker(&env, &pool, "fast").await.status,
        WorkerStatus::Online
    );

    env.set_now(at(31));
    let report = foreman::tick(&env.services).await.expect("tick");
    assert_eq!(report.workers_offline, 1);
    assert_eq!(
        report.pools_not_ready, 0,
        "the other worker is still online"
    );
    assert_eq!(
        worker(&env, &pool, "fast").await.status,
        WorkerStatus::Offline
    );
    assert_eq!(
        worker(&env, &pool, "silent").await.status,
        WorkerStatus::Online
    );
    assert_eq!(pool_status(&env, "pool").await, Some(PoolStatus::Ready));

    env.set_now(at(91));
    let report = foreman::tick(&env.services).await.expect("tick");
    assert_eq!(report.workers_offline, 1);
    assert_eq!(report.pools_not_ready, 1);
    assert_eq!(
        worker(&env, &pool, "silent").await.status,
        WorkerStatus::Offline
    );
}

#[tokio::test]
async fn a_fresh_heartbeat_just_before_the_tick_keeps_the_worker_online() {
    let env = env();
    let pool = env.pool("pool").await;
    env.services
        .worker_heartbeat("pool", "w", Some(30))
        .await
        .expect("heartbeat");
    env.set_now(at(91));
    env.services
        .worker_heartbeat("pool", "w", Some(30))
        .await
        .expect("heartbeat");
    assert_eq!(
        foreman::tick(&env.services).await.expect("tick"),
        ForemanReport::default()
    );
    let w = worker(&env, &pool, "w").await;
    assert_eq!(w.status, WorkerStatus::Online);
    assert_eq!(w.last_heartbeat_time, at(91));
    assert_eq!(pool_status(&env, "pool").await, Some(PoolStatus::Ready));

    // Three intervals after that heartbeat it does go.
    env.set_now(at(182));
    assert_eq!(
        foreman::tick(&env.services)
            .await
            .expect("tick")
            .workers_offline,
        1
    );
}

#[tokio::test]
async fn queues_not_polled_for_a_minute_go_not_ready() {
    let env = env();
    env.pool("pool").await;
    env.services
        .create_work_queue(
            "pool",
            WorkQueueInput {
                name: "other".to_owned(),
                ..Default::default()
            },
        )
        .await
        .expect("queue");
    env.services
        .get_scheduled_flow_runs(
            "pool",
            ScheduledRunsQuery {
                work_queue_names: vec!["default".to_owned()],
                ..Default::default()
            },
        )
        .await
        .expect("poll");
    assert_eq!(
        queue_status(&env, "pool", "default").await,
        QueueStatus::Ready
    );
    assert_eq!(
        queue_status(&env, "pool", "other").await,
        QueueStatus::NotReady
    );

    env.set_now(at(60));
    assert_eq!(
        foreman::tick(&env.services)
            .await
            .expect("tick")
            .queues_not_ready,
        0
    );
    assert_eq!(
        queue_status(&env, "pool", "default").await,
        QueueStatus::Ready
    );

    env.set_now(at(61));
    assert_eq!(
        foreman::tick(&env.services)
            .await
            .expect("tick")
            .queues_not_ready,
        1
    );
    let (_, q) = env
        .services
        .read_work_queue("pool", "default")
        .await
        .expect("queue");
    assert_eq!(q.status, QueueStatus::NotReady);
    assert_eq!(q.last_polled, Some(t0()), "the poll time is kept");
    assert_eq!(
        queue_status(&env, "pool", "other").await,
        QueueStatus::NotReady
    );
}

#[tokio::test]
async fn a_paused_pool_stays_paused() {
    let env = env();
    let pool = env
        .pool_with(WorkPoolInput {
            name: "paused".to_owned(),
            pool_type: Some("process".to_owned()),
            is_paused: true,
            ..Default::default()
        })
        .await;
    assert_eq!(pool.status, Some(PoolStatus::Paused));
    env.services
        .worker_heartbeat("paused", "w", Some(30))
        .await
        .expect("heartbeat");
    assert_eq!(worker(&env, &pool, "w").await.status, WorkerStatus::Online);
    assert_eq!(pool_status(&env, "paused").await, Some(PoolStatus::Paused));

    env.set_now(at(100));
    let report = foreman::tick(&env.services).await.expect("tick");
    assert_eq!(report.workers_offline, 1);
    assert_eq!(report.pools_not_ready, 0);
    assert_eq!(pool_status(&env, "paused").await, Some(PoolStatus::Paused));
    assert_eq!(worker(&env, &pool, "w").await.status, WorkerStatus::Offline);
}

/// A deployment becomes READY when its queue is polled, even with no run to hand out, and the
/// foreman turns it NOT_READY once neither it nor its queue has been polled for a minute.
#[tokio::test]
async fn deployments_follow_the_polls_of_their_queue() {
    let env = env();
    let flow = env.flow("etl").await;
    env.pool("pool").await;
    let d = env.deploy(flow, "on-demand", "pool", Vec::new()).await;
    assert_eq!(d.status, DeploymentStatus::NotReady);
    env.set_now(at(5));
    let items = env
        .services
        .get_scheduled_flow_runs("pool", ScheduledRunsQuery::default())
        .await
        .expect("poll");
    assert!(items.is_empty());
    let read = env.services.read_deployment(d.id).await.expect("read");
    assert_eq!(read.status, DeploymentStatus::Ready);
    assert_eq!(read.last_polled, Some(at(5)));

    env.set_now(at(65));
    assert_eq!(
        foreman::tick(&env.services)
            .await
            .expect("tick")
            .deployments_not_ready,
        0
    );
    env.set_now(at(66));
    let report = foreman::tick(&env.services).await.expect("tick");
    assert_eq!(report.deployments_not_ready, 1);
    assert_eq!(report.queues_not_ready, 1);
    assert_eq!(
        env.services
            .read_deployment(d.id)
            .await
            .expect("read")
            .status,
        DeploymentStatus::NotReady
    );
    assert_eq!(
        status_events(&env).await,
        [
            ("prefect.work-queue.ready".to_owned(), "default".to_owned()),
            (
                "prefect.deployment.ready".to_owned(),
                "on-demand".to_owned()
            ),
            (
                "prefect.work-queue.not-ready".to_owned(),
                "default".to_owned()
            ),
            (
                "prefect.deployment.not-ready".to_owned(),
                "on-demand".to_owned()
            ),
        ]
    );
}
