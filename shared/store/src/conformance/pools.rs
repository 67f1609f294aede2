//! Checks for the pool half of [`PoolStore`](crate::PoolStore): CRUD, atomic creation with the
//! default queue, cascading deletion and conditional status changes.

use std::sync::Arc;

use serde_json::json;
use sluice_core::domain::PoolStatus;

use super::fixtures::{
    assert_conflict, assert_not_found, at, deployment, flow, id, pool, queue, run, t0,
};
use crate::{Store, WorkPoolFilter, WorkerFilter};

pub async fn work_pool_crud<S: Store>(store: Arc<S>) {
    let (alpha, alpha_q) = pool("alpha");
    store
        .create_work_pool(&alpha, &alpha_q)
        .await
        .expect("create alpha");
    assert_eq!(
        store.read_work_pool(alpha.id).await.expect("read"),
        Some(alpha.clone())
    );
    assert_eq!(
        store.read_work_pool_by_name("alpha").await.expect("read"),
        Some(alpha.clone())
    );
    assert_eq!(
        store.read_work_queue(alpha_q.id).await.expect("read q"),
        Some(alpha_q.clone())
    );
    assert_eq!(store.read_work_pool(id()).await.expect("read"), None);
    assert_eq!(
        store.read_work_pool_by_name("nope").await.expect("read"),
        None
    );

    let (dup, dup_q) = pool("alpha");
    assert_conflict(
        store.create_work_pool(&dup, &dup_q).await,
        "duplicate pool name",
    );
    assert_eq!(store.read_work_pool(dup.id).await.expect("read"), None);
    assert_eq!(store.read_work_queue(dup_q.id).await.expect("read"), None);

    let (mut beta, beta_q) = pool("beta");
    beta.pool_type = "ecs:push".to_owned();
    store
        .create_work_pool(&beta, &beta_q)
        .await
        .expect("create beta");
    let (gamma, gamma_q) = pool("gamma");
    store
        .create_work_pool(&gamma, &gamma_q)
        .await
        .expect("create gamma");

    let names = |pools: Vec<sluice_core::domain::WorkPool>| {
        pools.into_iter().map(|p| p.name).collect::<Vec<_>>()
    };
    let all = WorkPoolFilter::default();
    let listed = store.list_work_pools(&all, None, 0).await.expect("list");
    assert_eq!(names(listed), ["alpha", "beta", "gamma"]);
    let paged = store.list_work_pools(&all, Some(2), 1).await.expect("list");
    assert_eq!(names(paged), ["beta", "gamma"]);
    let by_name = WorkPoolFilter {
        names: Some(vec!["gamma".to_owned(), "alpha".to_owned()]),
        ..Default::default()
    };
    let listed = store
        .list_work_pools(&by_name, None, 0)
        .await
        .expect("list");
    assert_eq!(names(listed), ["alpha", "gamma"]);
    let by_id = WorkPoolFilter {
        ids: Some(vec![beta.id]),
        ..Default::default()
    };
    assert_eq!(
        names(store.list_work_pools(&by_id, None, 0).await.expect("list")),
        ["beta"]
    );
    let by_type = WorkPoolFilter {
        types: Some(vec!["process".to_owned()]),
        ..Default::default()
    };
    assert_eq!(store.count_work_pools(&by_type).await.expect("count"), 2);
    assert_eq!(store.count_work_pools(&all).await.expect("count"), 3);
    let none = WorkPoolFilter {
        names: Some(Vec::new()),
        ..Default::default()
    };
    assert_eq!(store.count_work_pools(&none).await.expect("count"), 0);

    let mut changed = alpha.clone();
    changed.updated = at(5);
    changed.description = Some("described".to_owned());
    changed.is_paused = true;
    changed.concurrency_limit = Some(3);
    changed.status = Some(PoolStatus::Paused);
    changed.base_job_template =
        json!({"job_configuration": {"command": "{{ command }}"}, "variables": {}});
    changed.storage_configuration = json!({"bundle_upload_step": {"a": 1}});
    store.update_work_pool(&changed).await.expect("update");
    assert_eq!(
        store.read_work_pool(alpha.id).await.expect("read"),
        Some(changed.clone())
    );

    // The name never changes through an update.
    let mut renamed = changed.clone();
    renamed.name = "renamed".to_owned();
    store.update_work_pool(&renamed).await.expect("update");
    assert_eq!(
        store.read_work_pool(alpha.id).await.expect("read"),
        Some(changed)
    );

    let (ghost, _) = pool("ghost");
    assert_not_found(
        store.update_work_pool(&ghost).await,
        "update a missing pool",
    );
}

pub async fn work_pool_create_is_atomic<S: Store>(store: Arc<S>) {
    let (alpha, alpha_q) = pool("alpha");
    store
        .create_work_pool(&alpha, &alpha_q)
        .await
        .expect("create alpha");

    // The second pool's default queue collides with an existing queue id, so the pool must not
    // land either.
    let (beta, mut beta_q) = pool("beta");
    beta_q.id = alpha_q.id;
    assert!(store.create_work_pool(&beta, &beta_q).await.is_err());
    assert_eq!(store.read_work_pool(beta.id).await.expect("read"), None);
    assert_eq!(
        store.read_work_pool_by_name("beta").await.expect("read"),
        None
    );
    assert_eq!(
        store.read_work_queue(alpha_q.id).await.expect("read"),
        Some(alpha_q)
    );
}

pub async fn work_pool_delete_cascades<S: Store>(store: Arc<S>) {
    let (alpha, alpha_q) = pool("alpha");
    store
        .create_work_pool(&alpha, &alpha_q)
        .await
        .expect("create alpha");
    let extra = queue(alpha.id, "extra", 2);
    store.create_work_queue(&extra).await.expect("create queue");
    let (beta, beta_q) = pool("beta");
    store
        .create_work_pool(&beta, &beta_q)
        .await
        .expect("create beta");
    store
        .record_worker_heartbeat(alpha.id, "w-alpha", None, t0())
        .await
        .expect("heartbeat");
    let beta_worker = store
        .record_worker_heartbeat(beta.id, "w-beta", None, t0())
        .await
        .expect("heartbeat");

    let f = flow("etl");
    store.upsert_flow(&f).await.expect("flow");
    let mut d = deployment(f.id, "nightly");
    d.work_queue_id = Some(extra.id);
    d.work_queue_name = Some("extra".to_owned());
    d.work_pool_name = Some("alpha".to_owned());
    store.create_deployment(&d).await.expect("deployment");
    let mut r = run(f.id);
    r.work_queue_id = Some(extra.id);
    r.work_queue_name = Some("extra".to_owned());
    r.work_pool_id = Some(alpha.id);
    r.work_pool_name = Some("alpha".to_owned());
    store.create_flow_run(&r).await.expect("run");
    let mut on_beta = run(f.id);
    on_beta.work_queue_id = Some(beta_q.id);
    on_beta.work_pool_id = Some(beta.id);
    store.create_flow_run(&on_beta).await.expect("run");

    assert!(store.delete_work_pool(alpha.id).await.expect("delete"));
    assert_eq!(store.read_work_pool(alpha.id).await.expect("read"), None);
    assert_eq!(store.read_work_queue(alpha_q.id).await.expect("read"), None);
    assert_eq!(store.read_work_queue(extra.id).await.expect("read"), None);
    assert!(
        store
            .list_work_queues(alpha.id)
            .await
            .expect("list")
            .is_empty()
    );
    let workers = store
        .list_workers(None, &WorkerFilter::default(), None, 0)
        .await
        .expect("workers");
    assert_eq!(workers, vec![beta_worker]);

    let d = store
        .read_deployment(d.id)
        .await
        .expect("read")
        .expect("deployment stays");
    assert_eq!(d.work_queue_id, None);
    assert_eq!(d.work_queue_name.as_deref(), Some("extra"));
    assert_eq!(
        d.work_pool_name, None,
        "a deployment whose pool is gone has no pool"
    );
    let r = store
        .read_flow_run(r.id)
        .await
        .expect("read")
        .expect("run stays")
        .value;
    assert_eq!((r.work_queue_id, r.work_pool_id), (None, None));
    assert_eq!(r.work_queue_name.as_deref(), Some("extra"));
    assert_eq!(r.work_pool_name.as_deref(), Some("alpha"));

    let on_beta = store
        .read_flow_run(on_beta.id)
        .await
        .expect("read")
        .expect("run")
        .value;
    assert_eq!(
        (on_beta.work_queue_id, on_beta.work_pool_id),
        (Some(beta_q.id), Some(beta.id))
    );
    assert_eq!(
        store.read_work_queue(beta_q.id).await.expect("read"),
        Some(beta_q)
    );
    assert!(
        !store
            .delete_work_pool(alpha.id)
            .await
            .expect("delete again")
    );
}

pub async fn work_pool_status_transitions_are_conditional<S: Store>(store: Arc<S>) {
    let (p, q) = pool("alpha");
    store.create_work_pool(&p, &q).await.expect("create");
    let status = |s: &Arc<S>| {
        let s = Arc::clone(s);
        async move {
            s.read_work_pool(p.id)
                .await
                .expect("read")
                .expect("pool")
                .status
        }
    };

    let moved = store
        .transition_work_pool_status(p.id, Some(PoolStatus::Ready), PoolStatus::Paused)
        .await
        .expect("transition");
    assert!(!moved, "stored status is NOT_READY, not READY");
    assert_eq!(status(&store).await, Some(PoolStatus::NotReady));

    let moved = store
        .transition_work_pool_status(p.id, Some(PoolStatus::NotReady), PoolStatus::Ready)
        .await
        .expect("transition");
    assert!(moved);
    assert_eq!(status(&store).await, Some(PoolStatus::Ready));
    let stale = store
        .transition_work_pool_status(p.id, Some(PoolStatus::NotReady), PoolStatus::Paused)
        .await
        .expect("transition");
    assert!(!stale);
    assert_eq!(status(&store).await, Some(PoolStatus::Ready));

    // A prefect-agent pool has no status; `from = None` matches exactly that.
    let (mut agent, agent_q) = pool("agent");
    agent.pool_type = "prefect-agent".to_owned();
    agent.status = None;
    store
        .create_work_pool(&agent, &agent_q)
        .await
        .expect("create");
    let from_some = store
        .transition_work_pool_status(agent.id, Some(PoolStatus::NotReady), PoolStatus::Ready)
        .await
        .expect("transition");
    assert!(!from_some);
    let from_none = store
        .transition_work_pool_status(agent.id, None, PoolStatus::Ready)
        .await
        .expect("transition");
    assert!(from_none);

    assert_not_found(
        store
            .transition_work_pool_status(id(), None, PoolStatus::Ready)
            .await,
        "transition a missing pool",
    );
}
