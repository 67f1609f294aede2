//! Checks for the queue and worker half of [`PoolStore`](crate::PoolStore): CRUD, atomic batch
//! updates, conditional status changes, heartbeats and the conditional OFFLINE mark.

use std::sync::Arc;

use sluice_core::domain::{PoolStatus, WorkerStatus};

use super::fixtures::{
    assert_conflict, assert_not_found, at, deployment, flow, id, pool, queue, run, t0,
};
use crate::{Store, WorkerFilter};

pub async fn work_queue_crud<S: Store>(store: Arc<S>) {
    let (alpha, default_q) = pool("alpha");
    store
        .create_work_pool(&alpha, &default_q)
        .await
        .expect("create alpha");
    let (beta, beta_q) = pool("beta");
    store
        .create_work_pool(&beta, &beta_q)
        .await
        .expect("create beta");

    let third = queue(alpha.id, "third", 3);
    let second = queue(alpha.id, "second", 2);
    store.create_work_queue(&third).await.expect("third");
    store.create_work_queue(&second).await.expect("second");
    assert_conflict(
        store.create_work_queue(&queue(alpha.id, "second", 4)).await,
        "duplicate queue name in a pool",
    );
    store
        .create_work_queue(&queue(beta.id, "second", 2))
        .await
        .expect("same name, other pool");
    assert!(
        store
            .create_work_queue(&queue(id(), "orphan", 1))
            .await
            .is_err()
    );

    assert_eq!(
        store.read_work_queue(second.id).await.expect("read"),
        Some(second.clone())
    );
    let by_name = store
        .read_work_queue_by_name(alpha.id, "second")
        .await
        .expect("read");
    assert_eq!(by_name, Some(second.clone()));
    assert_eq!(
        store
            .read_work_queue_by_name(beta.id, "third")
            .await
            .expect("read"),
        None
    );
    assert_eq!(store.read_work_queue(id()).await.expect("read"), None);

    // By priority, then name.
    let tie_b = queue(alpha.id, "b-tie", 5);
    let tie_a = queue(alpha.id, "a-tie", 5);
    store.create_work_queue(&tie_b).await.expect("b-tie");
    store.create_work_queue(&tie_a).await.expect("a-tie");
    let names: Vec<String> = store
        .list_work_queues(alpha.id)
        .await
        .expect("list")
        .into_iter()
        .map(|q| q.name)
        .collect();
    assert_eq!(names, ["default", "second", "third", "a-tie", "b-tie"]);
}

pub async fn work_queue_batch_update_is_atomic<S: Store>(store: Arc<S>) {
    let (alpha, default_q) = pool("alpha");
    store
        .create_work_pool(&alpha, &default_q)
        .await
        .expect("create alpha");
    let second = queue(alpha.id, "second", 2);
    let third = queue(alpha.id, "third", 3);
    store.create_work_queue(&second).await.expect("second");
    store.create_work_queue(&third).await.expect("third");

    // A priority swap with a rename and new settings lands as one.
    let mut second2 = second.clone();
    second2.priority = 3;
    second2.name = "renamed".to_owned();
    second2.description = "now third".to_owned();
    second2.is_paused = true;
    second2.concurrency_limit = Some(2);
    second2.last_polled = Some(at(7));
    second2.status = PoolStatus::Paused;
    second2.updated = at(7);
    let mut third2 = third.clone();
    third2.priority = 2;
    store
        .update_work_queues(&[second2.clone(), third2.clone()])
        .await
        .expect("update");
    assert_eq!(
        store.read_work_queue(second.id).await.expect("read"),
        Some(second2.clone())
    );
    assert_eq!(
        store.read_work_queue(third.id).await.expect("read"),
        Some(third2.clone())
    );
    let names: Vec<String> = store
        .list_work_queues(alpha.id)
        .await
        .expect("list")
        .into_iter()
        .map(|q| q.name)
        .collect();
    assert_eq!(names, ["default", "third", "renamed"]);

    // One missing queue: nothing applies.
    let mut second3 = second2.clone();
    second3.description = "must not land".to_owned();
    let ghost = queue(alpha.id, "ghost", 9);
    assert_not_found(
        store.update_work_queues(&[second3, ghost]).await,
        "batch with a missing queue",
    );
    assert_eq!(
        store.read_work_queue(second.id).await.expect("read"),
        Some(second2.clone())
    );

    // A rename onto another queue's name: Conflict, and nothing applies.
    let mut third3 = third2.clone();
    third3.priority = 7;
    let mut clash = second2.clone();
    clash.name = "default".to_owned();
    assert_conflict(
        store.update_work_queues(&[third3, clash]).await,
        "rename onto a taken name",
    );
    assert_eq!(
        store.read_work_queue(second.id).await.expect("read"),
        Some(second2)
    );
    assert_eq!(
        store.read_work_queue(third.id).await.expect("read"),
        Some(third2)
    );
    assert_eq!(
        store.read_work_queue(default_q.id).await.expect("read"),
        Some(default_q)
    );
}

pub async fn work_queue_touch_and_delete<S: Store>(store: Arc<S>) {
    let (alpha, default_q) = pool("alpha");
    store
        .create_work_pool(&alpha, &default_q)
        .await
        .expect("create alpha");
    let second = queue(alpha.id, "second", 2);
    let third = queue(alpha.id, "third", 3);
    store.create_work_queue(&second).await.expect("second");
    store.create_work_queue(&third).await.expect("third");

    store
        .touch_work_queues(&[default_q.id, second.id], at(30))
        .await
        .expect("touch");
    let polled = |q: Option<sluice_core::domain::WorkQueue>| q.expect("queue").last_polled;
    assert_eq!(
        polled(store.read_work_queue(default_q.id).await.expect("read")),
        Some(at(30))
    );
    assert_eq!(
        polled(store.read_work_queue(second.id).await.expect("read")),
        Some(at(30))
    );
    assert_eq!(
        polled(store.read_work_queue(third.id).await.expect("read")),
        None
    );

    let f = flow("etl");
    store.upsert_flow(&f).await.expect("flow");
    let mut d = deployment(f.id, "on-third");
    d.work_queue_id = Some(third.id);
    d.work_queue_name = Some("third".to_owned());
    store.create_deployment(&d).await.expect("deployment");
    let mut r = run(f.id);
    r.work_queue_id = Some(third.id);
    r.work_queue_name = Some("third".to_owned());
    r.work_pool_id = Some(alpha.id);
    store.create_flow_run(&r).await.expect("run");

    assert!(store.delete_work_queue(third.id).await.expect("delete"));
    assert_eq!(store.read_work_queue(third.id).await.expect("read"), None);
    let d = store
        .read_deployment(d.id)
        .await
        .expect("read")
        .expect("deployment stays");
    assert_eq!(
        (d.work_queue_id, d.work_queue_name.as_deref()),
        (None, Some("third"))
    );
    let r = store
        .read_flow_run(r.id)
        .await
        .expect("read")
        .expect("run stays")
        .value;
    assert_eq!(
        (r.work_queue_id, r.work_queue_name.as_deref()),
        (None, Some("third"))
    );
    assert_eq!(r.work_pool_id, Some(alpha.id));
    assert!(
        !store
            .delete_work_queue(third.id)
            .await
            .expect("delete again")
    );
    assert_eq!(
        store.list_work_queues(alpha.id).await.expect("list").len(),
        2
    );
}

pub async fn work_queue_status_transitions_are_conditional<S: Store>(store: Arc<S>) {
    let (alpha, q) = pool("alpha");
    store
        .create_work_pool(&alpha, &q)
        .await
        .expect("create alpha");
    let moved = store
        .transition_work_queue_status(q.id, PoolStatus::Ready, PoolStatus::NotReady)
        .await
        .expect("transition");
    assert!(!moved);
    let moved = store
        .transition_work_queue_status(q.id, PoolStatus::NotReady, PoolStatus::Ready)
        .await
        .expect("transition");
    assert!(moved);
    let stale = store
        .transition_work_queue_status(q.id, PoolStatus::NotReady, PoolStatus::Paused)
        .await
        .expect("transition");
    assert!(!stale);
    let status = store
        .read_work_queue(q.id)
        .await
        .expect("read")
        .expect("queue")
        .status;
    assert_eq!(status, PoolStatus::Ready);
    assert_not_found(
        store
            .transition_work_queue_status(id(), PoolStatus::Ready, PoolStatus::Paused)
            .await,
        "transition a missing queue",
    );
}

pub async fn worker_heartbeats_upsert<S: Store>(store: Arc<S>) {
    let (alpha, alpha_q) = pool("alpha");
    store
        .create_work_pool(&alpha, &alpha_q)
        .await
        .expect("create alpha");
    let (beta, beta_q) = pool("beta");
    store
        .create_work_pool(&beta, &beta_q)
        .await
        .expect("create beta");

    let first = store
        .record_worker_heartbeat(alpha.id, "w1", Some(30), t0())
        .await
        .expect("hb");
    assert_eq!(first.name, "w1");
    assert_eq!(first.work_pool_id, alpha.id);
    assert_eq!(first.last_heartbeat_time, t0());
    assert_eq!(first.heartbeat_interval_seconds, Some(30));
    assert_eq!(first.status, WorkerStatus::Online);

    let again = store
        .record_worker_heartbeat(alpha.id, "w1", None, at(10))
        .await
        .expect("hb");
    assert_eq!(again.id, first.id);
    assert_eq!(again.last_heartbeat_time, at(10));
    assert_eq!(
        again.heartbeat_interval_seconds,
        Some(30),
        "kept when not sent"
    );
    let w1 = store
        .record_worker_heartbeat(alpha.id, "w1", Some(60), at(20))
        .await
        .expect("hb");
    assert_eq!((w1.id, w1.heartbeat_interval_seconds), (first.id, Some(60)));

    let w2 = store
        .record_worker_heartbeat(alpha.id, "w2", None, at(5))
        .await
        .expect("hb");
    assert_eq!(w2.heartbeat_interval_seconds, None);
    let other = store
        .record_worker_heartbeat(beta.id, "w1", None, at(1))
        .await
        .expect("hb");
    assert_ne!(other.id, first.id, "names are unique per pool only");

    let all = WorkerFilter::default();
    let in_alpha = store
        .list_workers(Some(alpha.id), &all, None, 0)
        .await
        .expect("list");
    assert_eq!(
        in_alpha,
        vec![w1.clone(), w2.clone()],
        "newest heartbeat first"
    );
    let every = store.list_workers(None, &all, None, 0).await.expect("list");
    assert_eq!(every, vec![w1.clone(), w2.clone(), other.clone()]);
    let paged = store
        .list_workers(None, &all, Some(1), 1)
        .await
        .expect("list");
    assert_eq!(paged, vec![w2.clone()]);

    let before = WorkerFilter {
        last_heartbeat_before: Some(at(10)),
        ..Default::default()
    };
    let listed = store
        .list_workers(Some(alpha.id), &before, None, 0)
        .await
        .expect("list");
    assert_eq!(listed, vec![w2.clone()]);
    let after = WorkerFilter {
        last_heartbeat_after: Some(at(5)),
        ..Default::default()
    };
    let listed = store
        .list_workers(None, &after, None, 0)
        .await
        .expect("list");
    assert_eq!(listed, vec![w1, w2], "bounds are inclusive");

    assert!(
        store
            .record_worker_heartbeat(id(), "w1", None, t0())
            .await
            .is_err()
    );
}

pub async fn worker_offline_is_conditional<S: Store>(store: Arc<S>) {
    let (alpha, alpha_q) = pool("alpha");
    store
        .create_work_pool(&alpha, &alpha_q)
        .await
        .expect("create alpha");
    let w = store
        .record_worker_heartbeat(alpha.id, "w1", None, t0())
        .await
        .expect("hb");

    // The foreman saw the t0 heartbeat; a fresh one lands before it acts, so it must lose.
    store
        .record_worker_heartbeat(alpha.id, "w1", None, at(30))
        .await
        .expect("hb");
    assert!(!store.mark_worker_offline(w.id, t0()).await.expect("mark"));
    let online = WorkerFilter {
        statuses: Some(vec![WorkerStatus::Online]),
        ..Default::default()
    };
    assert_eq!(
        store
            .list_workers(None, &online, None, 0)
            .await
            .expect("list")
            .len(),
        1
    );

    assert!(store.mark_worker_offline(w.id, at(30)).await.expect("mark"));
    let offline = WorkerFilter {
        statuses: Some(vec![WorkerStatus::Offline]),
        ..Default::default()
    };
    let listed = store
        .list_workers(Some(alpha.id), &offline, None, 0)
        .await
        .expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].id, listed[0].last_heartbeat_time),
        (w.id, at(30))
    );
    let not_offline = WorkerFilter {
        not_statuses: Some(vec![WorkerStatus::Offline]),
        ..Default::default()
    };
    assert!(
        store
            .list_workers(None, &not_offline, None, 0)
            .await
            .expect("list")
            .is_empty()
    );

    let back = store
        .record_worker_heartbeat(alpha.id, "w1", None, at(40))
        .await
        .expect("hb");
    assert_eq!((back.id, back.status), (w.id, WorkerStatus::Online));
    assert_not_found(
        store.mark_worker_offline(id(), t0()).await,
        "mark a missing worker",
    );

    assert!(store.delete_worker(alpha.id, "w1").await.expect("delete"));
    assert!(
        !store
            .delete_worker(alpha.id, "w1")
            .await
            .expect("delete again")
    );
    let all = WorkerFilter::default();
    assert!(
        store
            .list_workers(None, &all, None, 0)
            .await
            .expect("list")
            .is_empty()
    );
}
