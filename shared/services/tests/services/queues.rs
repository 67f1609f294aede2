//! Queue priorities (reference §1.1): the first gap when none is given, the fewest shifts when
//! one is, and a default queue that cannot be deleted.

use sluice_services::{QueuePatch, ServiceError, WorkQueueInput};

use crate::common::{Env, env};

async fn create(env: &Env, name: &str, priority: Option<i64>) -> i64 {
    env.services
        .create_work_queue(
            "pool",
            WorkQueueInput {
                name: name.to_owned(),
                priority,
                ..Default::default()
            },
        )
        .await
        .expect("create queue")
        .priority
}

/// `(name, priority)` of every queue, by priority.
async fn priorities(env: &Env) -> Vec<(String, i64)> {
    let pool = env.services.read_work_pool("pool").await.expect("pool");
    env.store
        .list_work_queues(pool.id)
        .await
        .expect("queues")
        .into_iter()
        .map(|q| (q.name, q.priority))
        .collect()
}

fn expect(pairs: &[(&str, i64)]) -> Vec<(String, i64)> {
    pairs.iter().map(|(n, p)| ((*n).to_owned(), *p)).collect()
}

#[tokio::test]
async fn priorities_take_the_first_gap_or_shift_the_fewest_queues() {
    let env = env();
    env.pool("pool").await;
    assert_eq!(priorities(&env).await, expect(&[("default", 1)]));

    assert_eq!(create(&env, "a", None).await, 2);
    assert_eq!(
        create(&env, "b", Some(5)).await,
        5,
        "a free rank moves nobody"
    );
    assert_eq!(create(&env, "c", None).await, 3, "the first gap");
    assert_eq!(
        priorities(&env).await,
        expect(&[("default", 1), ("a", 2), ("c", 3), ("b", 5)])
    );

    // Rank 2 is taken: a and c (2, 3) move down one; b at 5 has room and stays.
    assert_eq!(create(&env, "d", Some(2)).await, 2);
    assert_eq!(
        priorities(&env).await,
        expect(&[("default", 1), ("d", 2), ("a", 3), ("c", 4), ("b", 5)])
    );

    // Moving b to the top pushes the contiguous 1..4 down; b's old rank absorbs the shift.
    env.services
        .update_work_queue(
            "pool",
            "b",
            QueuePatch {
                priority: Some(1),
                ..Default::default()
            },
        )
        .await
        .expect("reprioritise");
    assert_eq!(
        priorities(&env).await,
        expect(&[("b", 1), ("default", 2), ("d", 3), ("a", 4), ("c", 5)])
    );

    // Moving a queue into a gap moves nobody else.
    assert_eq!(create(&env, "e", Some(9)).await, 9);
    env.services
        .update_work_queue(
            "pool",
            "e",
            QueuePatch {
                priority: Some(7),
                ..Default::default()
            },
        )
        .await
        .expect("reprioritise");
    assert_eq!(create(&env, "f", None).await, 6);
    assert_eq!(
        priorities(&env).await,
        expect(&[
            ("b", 1),
            ("default", 2),
            ("d", 3),
            ("a", 4),
            ("c", 5),
            ("f", 6),
            ("e", 7)
        ])
    );

    // A deleted queue's rank is the next first gap.
    env.services
        .delete_work_queue("pool", "d")
        .await
        .expect("delete");
    assert_eq!(create(&env, "g", None).await, 3);
    assert_eq!(create(&env, "h", None).await, 8);

    let invalid = env
        .services
        .create_work_queue(
            "pool",
            WorkQueueInput {
                name: "zero".to_owned(),
                priority: Some(0),
                ..Default::default()
            },
        )
        .await;
    assert!(
        matches!(invalid, Err(ServiceError::Invalid(_))),
        "{invalid:?}"
    );
    let duplicate = env
        .services
        .create_work_queue(
            "pool",
            WorkQueueInput {
                name: "a".to_owned(),
                priority: Some(1),
                ..Default::default()
            },
        )
        .await;
    assert!(
        matches!(duplicate, Err(ServiceError::Conflict(_))),
        "{duplicate:?}"
    );
    assert_eq!(
        priorities(&env).await,
        expect(&[
            ("b", 1),
            ("default", 2),
            ("g", 3),
            ("a", 4),
            ("c", 5),
            ("f", 6),
            ("e", 7),
            ("h", 8)
        ]),
        "a refused create shifts nothing"
    );
}

#[tokio::test]
async fn the_default_queue_cannot_be_deleted() {
    let env = env();
    let pool = env.pool("pool").await;
    create(&env, "other", None).await;
    match env.services.delete_work_queue("pool", "default").await {
        Err(ServiceError::BadRequest(m)) => assert_eq!(m, "Can't delete a pool's default queue."),
        other => panic!("expected BadRequest, got {other:?}"),
    }
    let (_, default) = env
        .services
        .read_work_queue("pool", "default")
        .await
        .expect("still there");
    assert_eq!(Some(default.id), pool.default_queue_id);

    // Renamed, it is still the default queue.
    env.services
        .update_work_queue(
            "pool",
            "default",
            QueuePatch {
                name: Some("main".to_owned()),
                ..Default::default()
            },
        )
        .await
        .expect("rename");
    assert!(matches!(
        env.services.delete_work_queue("pool", "main").await,
        Err(ServiceError::BadRequest(_))
    ));
    env.services
        .delete_work_queue("pool", "other")
        .await
        .expect("any other queue can go");
    assert!(matches!(
        env.services.delete_work_queue("pool", "other").await,
        Err(ServiceError::NotFound(_))
    ));
}
