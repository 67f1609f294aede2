//! The worker poll, `get_scheduled_flow_runs` (reference §1.3).

use std::collections::HashMap;

use sluice_core::domain::{Id, QueueStatus, StateType, Timestamp};
use sluice_services::{
    PoolPatch, QueuePatch, ScheduledRunItem, ScheduledRunsQuery, ServiceError, WorkQueueInput,
    late_runs,
};

use crate::common::{Env, at, env, proposal};

/// A pool with three queues, `high` (1), `default` (2) and `low` (3), and five SCHEDULED runs:
/// H1 at +0 s and H2 at −5 s in `high`, D1 at −10 s and D2 at −20 s in `default`, L1 at −30 s in
/// `low`. The clock stands at `t0`.
struct Bed {
    env: Env,
    labels: HashMap<Id, &'static str>,
    ids: HashMap<&'static str, Id>,
}

async fn bed() -> Bed {
    let env = env();
    let flow = env.flow("etl").await;
    env.pool("pool").await;
    let high = env
        .services
        .create_work_queue(
            "pool",
            WorkQueueInput {
                name: "high".to_owned(),
                priority: Some(1),
                ..Default::default()
            },
        )
        .await
        .expect("queue");
    assert_eq!(high.priority, 1);
    let low = env
        .services
        .create_work_queue(
            "pool",
            WorkQueueInput {
                name: "low".to_owned(),
                ..Default::default()
            },
        )
        .await
        .expect("queue");
    assert_eq!(low.priority, 3);
    let mut labels = HashMap::new();
    let mut ids = HashMap::new();
    for (label, queue, due) in [
        ("L1", "low", at(-30)),
        ("D2", "default", at(-20)),
        ("D1", "default", at(-10)),
        ("H2", "high", at(-5)),
        ("H1", "high", at(0)),
    ] {
        let run = env.run_in(flow, "pool", queue, due).await;
        labels.insert(run.id, label);
        ids.insert(label, run.id);
    }
    Bed { env, labels, ids }
}

impl Bed {
    async fn poll(&self, query: ScheduledRunsQuery) -> Vec<&'static str> {
        let items = self
            .env
            .services
            .get_scheduled_flow_runs("pool", query)
            .await
            .expect("poll");
        self.check_items(&items).await;
        items.iter().map(|i| self.labels[&i.flow_run.id]).collect()
    }

    async fn poll_all(&self) -> Vec<&'static str> {
        self.poll(ScheduledRunsQuery::default()).await
    }

    /// Every item names the pool and the run's own queue, and carries a SCHEDULED run.
    async fn check_items(&self, items: &[ScheduledRunItem]) {
        let pool = self
            .env
            .services
            .read_work_pool("pool")
            .await
            .expect("pool");
        for item in items {
            assert_eq!(item.work_pool_id, pool.id);
            assert_eq!(Some(item.work_queue_id), item.flow_run.work_queue_id);
            assert_eq!(item.flow_run.state_type(), Some(StateType::Scheduled));
        }
    }

    fn id(&self, label: &str) -> Id {
        self.ids[label]
    }

    async fn set_state(&self, label: &str, state_type: StateType) {
        let r = self.env.propose(self.id(label), proposal(state_type)).await;
        assert!(r.committed, "{label} → {state_type}: {r:?}");
    }

    async fn patch_queue(&self, name: &str, patch: QueuePatch) {
        self.env
            .services
            .update_work_queue("pool", name, patch)
            .await
            .expect("patch queue");
    }

    async fn last_polled(&self, queue: &str) -> (QueueStatus, Option<Timestamp>) {
        let (_, q) = self
            .env
            .services
            .read_work_queue("pool", queue)
            .await
            .expect("queue");
        (q.status, q.last_polled)
    }
}

#[tokio::test]
async fn runs_come_by_queue_priority_then_time() {
    let bed = bed().await;
    assert_eq!(bed.poll_all().await, vec!["H2", "H1", "D2", "D1", "L1"]);
    let limited = ScheduledRunsQuery {
        limit: Some(3),
        ..Default::default()
    };
    assert_eq!(bed.poll(limited).await, vec!["H2", "H1", "D2"]);
    // Named queues, given in any order, still come by priority.
    let named = ScheduledRunsQuery {
        work_queue_names: vec!["low".to_owned(), "high".to_owned()],
        ..Default::default()
    };
    assert_eq!(bed.poll(named).await, vec!["H2", "H1", "L1"]);
    // Nothing changed state: the poll only reads.
    for label in ["H1", "H2", "D1", "D2", "L1"] {
        assert_eq!(bed.env.states(bed.id(label)).await.len(), 1);
    }
}

#[tokio::test]
async fn a_paused_queue_is_skipped_and_a_paused_pool_returns_nothing() {
    let bed = bed().await;
    bed.patch_queue(
        "default",
        QueuePatch {
            is_paused: Some(true),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(bed.poll_all().await, vec!["H2", "H1", "L1"]);
    let named = ScheduledRunsQuery {
        work_queue_names: vec!["default".to_owned()],
        ..Default::default()
    };
    assert!(bed.poll(named).await.is_empty());
    assert_eq!(bed.last_polled("default").await.0, QueueStatus::Paused);

    bed.env
        .services
        .update_work_pool(
            "pool",
            PoolPatch {
                is_paused: Some(true),
                ..Default::default()
            },
        )
        .await
        .expect("pause pool");
    assert!(bed.poll_all().await.is_empty());
}

#[tokio::test]
async fn queue_concurrency_limits_count_pending_and_running_runs() {
    let bed = bed().await;
    bed.patch_queue(
        "high",
        QueuePatch {
            concurrency_limit: Some(Some(1)),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        bed.poll_all().await,
        vec!["H2", "D2", "D1", "L1"],
        "one slot: the earliest"
    );
    bed.set_state("H2", StateType::Pending).await;
    assert_eq!(bed.poll_all().await, vec!["D2", "D1", "L1"]);
    bed.set_state("H2", StateType::Running).await;
    assert_eq!(bed.poll_all().await, vec!["D2", "D1", "L1"]);
    bed.patch_queue(
        "high",
        QueuePatch {
            concurrency_limit: Some(Some(2)),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(bed.poll_all().await, vec!["H1", "D2", "D1", "L1"]);
    bed.set_state("H2", StateType::Completed).await;
    bed.patch_queue(
        "high",
        QueuePatch {
            concurrency_limit: Some(Some(1)),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        bed.poll_all().await,
        vec!["H1", "D2", "D1", "L1"],
        "a finished run frees its slot"
    );
    bed.patch_queue(
        "high",
        QueuePatch {
            concurrency_limit: Some(Some(0)),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(bed.poll_all().await, vec!["D2", "D1", "L1"]);
}

#[tokio::test]
async fn the_pool_concurrency_limit_counts_every_queue() {
    let bed = bed().await;
    bed.env
        .services
        .update_work_pool(
            "pool",
            PoolPatch {
                concurrency_limit: Some(Some(3)),
                ..Default::default()
            },
        )
        .await
        .expect("limit");
    assert_eq!(bed.poll_all().await, vec!["H2", "H1", "D2"]);
    bed.set_state("L1", StateType::Pending).await;
    assert_eq!(bed.poll_all().await, vec!["H2", "H1"]);
    bed.set_state("L1", StateType::Running).await;
    bed.set_state("D2", StateType::Pending).await;
    assert_eq!(bed.poll_all().await, vec!["H2"]);
    bed.set_state("H2", StateType::Pending).await;
    assert!(bed.poll_all().await.is_empty(), "3 of 3 slots taken");
    bed.set_state("L1", StateType::Completed).await;
    assert_eq!(bed.poll_all().await, vec!["H1"]);
}

#[tokio::test]
async fn an_unknown_queue_name_is_not_found() {
    let bed = bed().await;
    let r = bed
        .env
        .services
        .get_scheduled_flow_runs(
            "pool",
            ScheduledRunsQuery {
                work_queue_names: vec!["high".to_owned(), "nope".to_owned()],
                ..Default::default()
            },
        )
        .await;
    match r {
        Err(ServiceError::NotFound(m)) => {
            assert_eq!(m, "Work pool queue 'pool/nope' not found.");
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
    match bed
        .env
        .services
        .get_scheduled_flow_runs("nowhere", ScheduledRunsQuery::default())
        .await
    {
        Err(ServiceError::NotFound(m)) => assert_eq!(m, "Work pool \"nowhere\" not found."),
        other => panic!("expected NotFound, got {other:?}"),
    }
    // No queue was created by the failed poll.
    assert!(
        bed.env
            .services
            .read_work_queue("pool", "nope")
            .await
            .is_err()
    );
}

#[tokio::test]
async fn scheduled_before_and_after_are_inclusive() {
    let bed = bed().await;
    let before = ScheduledRunsQuery {
        scheduled_before: Some(at(-10)),
        ..Default::default()
    };
    assert_eq!(bed.poll(before).await, vec!["D2", "D1", "L1"]);
    let after = ScheduledRunsQuery {
        scheduled_after: Some(at(-10)),
        ..Default::default()
    };
    assert_eq!(bed.poll(after).await, vec!["H2", "H1", "D1"]);
    let both = ScheduledRunsQuery {
        scheduled_before: Some(at(-10)),
        scheduled_after: Some(at(-10)),
        ..Default::default()
    };
    assert_eq!(bed.poll(both).await, vec!["D1"]);
    let just_missed = ScheduledRunsQuery {
        scheduled_before: Some(at(-10) - chrono::Duration::microseconds(1)),
        scheduled_after: Some(at(-20) + chrono::Duration::microseconds(1)),
        ..Default::default()
    };
    assert!(bed.poll(just_missed).await.is_empty());
}

#[tokio::test]
async fn polled_queues_become_ready_and_record_the_poll() {
    let bed = bed().await;
    for q in ["high", "default", "low"] {
        assert_eq!(bed.last_polled(q).await, (QueueStatus::NotReady, None));
    }
    bed.env.set_now(at(7));
    let named = ScheduledRunsQuery {
        work_queue_names: vec!["high".to_owned()],
        ..Default::default()
    };
    assert_eq!(bed.poll(named).await, vec!["H2", "H1"]);
    assert_eq!(
        bed.last_polled("high").await,
        (QueueStatus::Ready, Some(at(7)))
    );
    assert_eq!(
        bed.last_polled("default").await,
        (QueueStatus::NotReady, None)
    );

    bed.patch_queue(
        "low",
        QueuePatch {
            is_paused: Some(true),
            ..Default::default()
        },
    )
    .await;
    bed.env.set_now(at(9));
    bed.poll_all().await;
    assert_eq!(
        bed.last_polled("high").await,
        (QueueStatus::Ready, Some(at(9)))
    );
    assert_eq!(
        bed.last_polled("default").await,
        (QueueStatus::Ready, Some(at(9)))
    );
    assert_eq!(
        bed.last_polled("low").await,
        (QueueStatus::Paused, Some(at(9))),
        "a paused queue records the poll and stays PAUSED"
    );
}

#[tokio::test]
async fn late_runs_are_handed_out_too() {
    let bed = bed().await;
    // At t0 + 14 s, L1 (44 s past due), D2 (34 s), D1 (24 s) and H2 (19 s) are late; H1 (14 s)
    // is not yet.
    bed.env.set_now(at(14));
    assert_eq!(late_runs::tick(&bed.env.services).await.expect("tick"), 4);
    let items = bed
        .env
        .services
        .get_scheduled_flow_runs("pool", ScheduledRunsQuery::default())
        .await
        .expect("poll");
    let got: Vec<(&str, Option<&str>)> = items
        .iter()
        .map(|i| (bed.labels[&i.flow_run.id], i.flow_run.state_name()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("H2", Some("Late")),
            ("H1", Some("Scheduled")),
            ("D2", Some("Late")),
            ("D1", Some("Late")),
            ("L1", Some("Late")),
        ]
    );
}
