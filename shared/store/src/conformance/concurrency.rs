//! Checks for [`ConcurrencyStore`](crate::ConcurrencyStore): limits, conditional slot writes and
//! leases.

use std::sync::Arc;

use sluice_core::concurrency::{
    self, ConcurrencyLease, ConcurrencyLimit, LeaseHolder, Mode, Taken,
};

use super::fixtures::{assert_conflict, assert_not_found, at, id, t0};
use crate::{SlotWrite, Store, StoreError};

fn limit(name: &str, size: i64) -> ConcurrencyLimit {
    ConcurrencyLimit {
        id: id(),
        created: t0(),
        updated: t0(),
        name: name.to_owned(),
        limit: size,
        active: true,
        active_slots: 0,
        denied_slots: 0,
        slot_decay_per_second: 0.0,
        avg_slot_occupancy_seconds: concurrency::INITIAL_OCCUPANCY_SECONDS,
        version: 0,
    }
}

fn lease(limit_ids: Vec<uuid::Uuid>, expires_in: i64) -> ConcurrencyLease {
    ConcurrencyLease {
        id: id(),
        created: t0(),
        expires: at(expires_in),
        limit_ids,
        slots: 1,
        holder: Some(LeaseHolder {
            kind: "task_run".to_owned(),
            id: id(),
        }),
    }
}

/// What a stored limit looks like after a successful write of `l`.
fn written(l: &ConcurrencyLimit) -> ConcurrencyLimit {
    ConcurrencyLimit {
        version: l.version + 1,
        ..l.clone()
    }
}

pub async fn concurrency_limit_crud<S: Store>(store: Arc<S>) {
    let db = limit("tag:db", 2);
    let api = limit("api_calls%", 10);
    let other = limit("tag:web", 1);
    for l in [&other, &db, &api] {
        store.create_concurrency_limit(l).await.expect("create");
    }
    assert_conflict(
        store.create_concurrency_limit(&limit("tag:db", 5)).await,
        "duplicate name",
    );
    assert_eq!(
        store.read_concurrency_limit(db.id).await.expect("read"),
        Some(db.clone())
    );
    assert_eq!(
        store
            .read_concurrency_limit_by_name("api_calls%")
            .await
            .expect("read"),
        Some(api.clone())
    );
    assert_eq!(
        store.read_concurrency_limit(id()).await.expect("read"),
        None
    );
    let names = ["tag:web".to_owned(), "nope".to_owned(), "tag:db".to_owned()];
    assert_eq!(
        store
            .read_concurrency_limits_by_names(&names)
            .await
            .expect("by names"),
        vec![db.clone(), other.clone()],
        "missing names left out, ordered by name"
    );
    assert_eq!(
        store
            .list_concurrency_limits(None, None, 0)
            .await
            .expect("list"),
        vec![api.clone(), db.clone(), other.clone()]
    );
    assert_eq!(
        store
            .list_concurrency_limits(Some("tag:"), None, 0)
            .await
            .expect("list"),
        vec![db.clone(), other.clone()]
    );
    assert_eq!(
        store
            .list_concurrency_limits(Some("api_"), None, 0)
            .await
            .expect("list"),
        vec![api.clone()],
        "a prefix is plain text"
    );
    assert_eq!(
        store
            .list_concurrency_limits(None, Some(1), 1)
            .await
            .expect("list"),
        vec![db.clone()]
    );

    let mut bigger = db.clone();
    bigger.limit = 4;
    bigger.updated = at(3);
    store
        .update_concurrency_limit(&bigger)
        .await
        .expect("update");
    assert_eq!(
        store.read_concurrency_limit(db.id).await.expect("read"),
        Some(written(&bigger))
    );
    assert_conflict(
        store.update_concurrency_limit(&bigger).await,
        "stale version",
    );
    let mut renamed = written(&bigger);
    renamed.name = "tag:web".to_owned();
    assert_conflict(
        store.update_concurrency_limit(&renamed).await,
        "rename to a taken name",
    );
    assert_not_found(
        store.update_concurrency_limit(&limit("ghost", 1)).await,
        "update of a missing limit",
    );

    assert!(store.delete_concurrency_limit(db.id).await.expect("delete"));
    assert!(!store.delete_concurrency_limit(db.id).await.expect("delete"));
    assert_eq!(
        store.read_concurrency_limit(db.id).await.expect("read"),
        None
    );
}

pub async fn slot_writes_are_conditional_and_all_or_nothing<S: Store>(store: Arc<S>) {
    let a = limit("a", 2);
    let b = limit("b", 2);
    store.create_concurrency_limit(&a).await.expect("create");
    store.create_concurrency_limit(&b).await.expect("create");

    // Both limits and a lease in one write.
    let mut a1 = a.clone();
    a1.active_slots = 1;
    let mut b1 = b.clone();
    b1.active_slots = 1;
    let held = lease(vec![a.id, b.id], 60);
    store
        .write_slots(&SlotWrite {
            limits: vec![a1.clone(), b1.clone()],
            create_lease: Some(held.clone()),
            revoke_lease: None,
        })
        .await
        .expect("take");
    assert_eq!(
        store.read_lease(held.id).await.expect("read"),
        Some(held.clone())
    );

    // A stale version on one limit: nothing at all is written.
    let mut a2 = written(&a1);
    a2.active_slots = 2;
    let mut stale_b = b1.clone();
    stale_b.active_slots = 2;
    let other = lease(vec![a.id, b.id], 60);
    assert_conflict(
        store
            .write_slots(&SlotWrite {
                limits: vec![a2.clone(), stale_b],
                create_lease: Some(other.clone()),
                revoke_lease: None,
            })
            .await,
        "stale version",
    );
    assert_eq!(
        store.read_concurrency_limit(a.id).await.expect("read"),
        Some(written(&a1)),
        "the limit with a good version was not written either"
    );
    assert_eq!(store.read_lease(other.id).await.expect("read"), None);

    // Giving the lease back with its slots, once.
    let mut a0 = written(&a1);
    a0.active_slots = 0;
    let mut b0 = written(&b1);
    b0.active_slots = 0;
    let release = SlotWrite {
        limits: vec![a0.clone(), b0.clone()],
        create_lease: None,
        revoke_lease: Some(held.id),
    };
    store.write_slots(&release).await.expect("release");
    assert_eq!(store.read_lease(held.id).await.expect("read"), None);
    let mut again = release.clone();
    again.limits = vec![written(&a0), written(&b0)];
    assert_conflict(store.write_slots(&again).await, "a lease given back twice");
    assert_eq!(
        store.read_concurrency_limit(a.id).await.expect("read"),
        Some(written(&a0)),
        "the second release changed nothing"
    );

    // A limit deleted meanwhile is a conflict too.
    store.delete_concurrency_limit(b.id).await.expect("delete");
    assert_conflict(
        store
            .write_slots(&SlotWrite {
                limits: vec![written(&b0)],
                ..SlotWrite::default()
            })
            .await,
        "a deleted limit",
    );
}

pub async fn leases_expire_renew_and_revoke<S: Store>(store: Arc<S>) {
    let l = limit("l", 10);
    store.create_concurrency_limit(&l).await.expect("create");
    let early = lease(vec![l.id], 10);
    let late = lease(vec![l.id], 30);
    let later = lease(vec![], 50);
    for le in [&late, &later, &early] {
        store
            .write_slots(&SlotWrite {
                create_lease: Some(le.clone()),
                ..SlotWrite::default()
            })
            .await
            .expect("lease");
    }
    let ids = |ls: Vec<ConcurrencyLease>| ls.into_iter().map(|l| l.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store
            .list_expired_leases(at(40), 100)
            .await
            .expect("expired")),
        vec![early.id, late.id],
        "expired before now, oldest first"
    );
    assert_eq!(
        ids(store.list_expired_leases(at(40), 1).await.expect("expired")),
        vec![early.id]
    );
    assert_eq!(
        ids(store
            .list_expired_leases(at(10), 100)
            .await
            .expect("expired")),
        Vec::<uuid::Uuid>::new(),
        "expiring exactly now is not expired yet"
    );
    assert!(store.renew_lease(early.id, at(100)).await.expect("renew"));
    assert!(!store.renew_lease(id(), at(100)).await.expect("renew"));
    assert_eq!(
        store
            .read_lease(early.id)
            .await
            .expect("read")
            .map(|l| l.expires),
        Some(at(100))
    );
    assert_eq!(
        ids(store
            .list_expired_leases(at(40), 100)
            .await
            .expect("expired")),
        vec![late.id]
    );
    let mut all = ids(store.list_leases().await.expect("all"));
    all.sort();
    let mut expected = vec![early.id, late.id, later.id];
    expected.sort();
    assert_eq!(all, expected);
    assert!(store.revoke_lease(late.id).await.expect("revoke"));
    assert!(!store.revoke_lease(late.id).await.expect("revoke"));
}

/// Eight takers race for a limit of three, each reading, deciding with the core's rule and
/// writing conditionally, retrying when the write conflicts: exactly three get a slot.
pub async fn racing_takers_never_exceed_a_limit<S: Store + 'static>(store: Arc<S>) {
    let l = limit("tag:race", 3);
    store.create_concurrency_limit(&l).await.expect("create");
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            loop {
                let read = store
                    .read_concurrency_limits_by_names(&["tag:race".to_owned()])
                    .await
                    .expect("read");
                match concurrency::take(&read, 1, Mode::Concurrency, at(1)).expect("take") {
                    Taken::Denied { .. } => return false,
                    Taken::Granted(limits) => {
                        let write = SlotWrite {
                            limits,
                            create_lease: Some(lease(vec![read[0].id], 60)),
                            revoke_lease: None,
                        };
                        match store.write_slots(&write).await {
                            Ok(()) => return true,
                            Err(StoreError::Conflict(_)) => {}
                            Err(e) => panic!("write: {e}"),
                        }
                    }
                }
            }
        }));
    }
    let mut granted = 0;
    for t in tasks {
        if t.await.expect("task") {
            granted += 1;
        }
    }
    assert_eq!(granted, 3);
    let stored = store
        .read_concurrency_limit(l.id)
        .await
        .expect("read")
        .expect("limit");
    assert_eq!(stored.active_slots, 3);
    assert_eq!(store.list_leases().await.expect("leases").len(), 3);
}
