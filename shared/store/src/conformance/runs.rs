//! Checks for [`RunStore`](crate::RunStore) writes: idempotent creation (also under races),
//! compare-and-set with its history, and the conditional bulk deletion and counting.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use serde_json::json;
use sluice_core::domain::{CreatedBy, FlowRun, Id, StateType};
use tokio::sync::Barrier;

use super::fixtures::{
    assert_conflict, assert_not_found, at, flow, id, keyed_run, map, run, state, t0,
};
use crate::{FlowRunFilter, FlowRunSort, Store};

/// Creates a flow and returns its id.
async fn a_flow<S: Store>(store: &S, name: &str) -> Id {
    store.upsert_flow(&flow(name)).await.expect("flow").value.id
}

pub async fn flow_run_round_trips_every_field<S: Store>(store: Arc<S>) {
    let f = a_flow(&*store, "etl").await;
    let mut full = run(f);
    full.name = "gentle-otter".to_owned();
    full.deployment_id = Some(id());
    full.deployment_version = Some("v3".to_owned());
    full.work_queue_id = Some(id());
    full.work_queue_name = Some("default".to_owned());
    full.work_pool_id = Some(id());
    full.work_pool_name = Some("pool".to_owned());
    full.flow_version = Some("abc123".to_owned());
    full.parameters = map(json!({"n": 1, "nested": {"list": [1, "two", null]}}));
    full.idempotency_key = Some("scheduled x y 2026-03-10 09:00:00-04:00".to_owned());
    full.context = map(json!({"k": "v"}));
    full.empirical_policy = map(json!({"retries": 2, "retry_delay": 10, "retry_type": null}));
    full.tags = vec!["auto-scheduled".to_owned(), "etl".to_owned()];
    full.labels = map(json!({"prefect.flow.id": f.to_string()}));
    full.parent_task_run_id = Some(id());
    let mut s = state(StateType::Running, "Retrying", at(2)).with_message("second try");
    s.data = json!({"type": "unpersisted"});
    s.state_details =
        map(json!({"flow_run_id": full.id, "transition_id": "t-1", "pause_key": null}));
    full.state = Some(s);
    full.run_count = 2;
    full.expected_start_time = Some(at(1));
    full.next_scheduled_start_time = None;
    full.start_time = Some(at(2) + chrono::Duration::microseconds(1));
    full.end_time = Some(at(3));
    full.total_run_time = 12.345_678;
    full.auto_scheduled = true;
    full.infrastructure_document_id = Some(id());
    full.infrastructure_pid = Some("cluster::arn:aws:ecs:task/1".to_owned());
    full.created_by = Some(CreatedBy {
        id: Some(id()),
        created_by_type: Some("SCHEDULE".to_owned()),
        display_value: Some("morning".to_owned()),
    });
    full.job_variables = Some(map(json!({"image": "etl:2"})));

    let created = store.create_flow_run(&full).await.expect("create");
    assert!(created.created);
    assert_eq!(created.value, full, "timestamps keep their microseconds");
    let read = store
        .read_flow_run(full.id)
        .await
        .expect("read")
        .expect("run");
    assert_eq!(read.value, full);
    let states = store.read_flow_run_states(full.id).await.expect("states");
    assert_eq!(states, vec![full.state.clone().expect("state")]);

    // The sparse end: no state, no job variables, a created_by with only a type.
    let mut sparse = FlowRun::new(f, t0());
    sparse.created_by = Some(CreatedBy {
        id: None,
        created_by_type: Some("USER".to_owned()),
        display_value: None,
    });
    store.create_flow_run(&sparse).await.expect("create");
    let read = store
        .read_flow_run(sparse.id)
        .await
        .expect("read")
        .expect("run");
    assert_eq!(read.value, sparse);
    assert!(
        store
            .read_flow_run_states(sparse.id)
            .await
            .expect("states")
            .is_empty()
    );
    assert_eq!(store.read_flow_run(id()).await.expect("read"), None);
}

pub async fn flow_run_create_is_idempotent<S: Store>(store: Arc<S>) {
    let f = a_flow(&*store, "etl").await;
    let g = a_flow(&*store, "other").await;
    let first = keyed_run(f, "k1");
    let created = store.create_flow_run(&first).await.expect("create");
    assert!(created.created);

    let second = keyed_run(f, "k1");
    let again = store.create_flow_run(&second).await.expect("create again");
    assert!(!again.created);
    assert_eq!(again.value, first, "the first run is returned");
    assert_eq!(store.read_flow_run(second.id).await.expect("read"), None);
    assert_eq!(
        store
            .read_flow_run_states(first.id)
            .await
            .expect("states")
            .len(),
        1
    );
    let retry = store
        .create_flow_run(&first)
        .await
        .expect("the very same create again");
    assert!(!retry.created);

    assert!(
        store
            .create_flow_run(&keyed_run(g, "k1"))
            .await
            .expect("other flow")
            .created
    );
    assert!(
        store
            .create_flow_run(&run(f))
            .await
            .expect("no key")
            .created
    );
    assert!(
        store
            .create_flow_run(&run(f))
            .await
            .expect("no key")
            .created
    );
    let mut taken = keyed_run(f, "k-new");
    taken.id = first.id;
    assert_conflict(store.create_flow_run(&taken).await, "an id that is taken");
    let of_f = FlowRunFilter {
        flow_ids: Some(vec![f]),
        ..Default::default()
    };
    assert_eq!(store.count_flow_runs(&of_f).await.expect("count"), 3);
}

pub async fn flow_run_create_races_itself<S: Store + 'static>(store: Arc<S>) {
    let f = a_flow(&*store, "etl").await;
    let tasks = 8;
    let barrier = Arc::new(Barrier::new(tasks));
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let (store, barrier) = (Arc::clone(&store), Arc::clone(&barrier));
        handles.push(tokio::spawn(async move {
            let candidate = keyed_run(f, "contended");
            barrier.wait().await;
            store.create_flow_run(&candidate).await.expect("create")
        }));
    }
    let mut results = Vec::new();
    for h in handles {
        results.push(h.await.expect("task"));
    }
    assert_eq!(
        results.iter().filter(|r| r.created).count(),
        1,
        "exactly one creates"
    );
    let ids: BTreeSet<Id> = results.iter().map(|r| r.value.id).collect();
    assert_eq!(ids.len(), 1, "everyone gets the same run");
    let winner = ids.into_iter().next().expect("an id");
    assert_eq!(
        store
            .read_flow_run_states(winner)
            .await
            .expect("states")
            .len(),
        1
    );
}

pub async fn create_flow_runs_skips_existing_keys<S: Store>(store: Arc<S>) {
    let f = a_flow(&*store, "etl").await;
    let existing = keyed_run(f, "k0");
    store.create_flow_run(&existing).await.expect("create");

    let dup_of_existing = keyed_run(f, "k0");
    let b = keyed_run(f, "k1");
    let c = keyed_run(f, "k2");
    let d = run(f);
    let dup_in_batch = keyed_run(f, "k1");
    let batch = [
        dup_of_existing.clone(),
        b.clone(),
        c.clone(),
        d.clone(),
        dup_in_batch.clone(),
    ];
    let created: BTreeSet<Id> = store
        .create_flow_runs(&batch)
        .await
        .expect("batch")
        .into_iter()
        .collect();
    assert_eq!(created, BTreeSet::from([b.id, c.id, d.id]));

    for skipped in [&dup_of_existing, &dup_in_batch] {
        assert_eq!(store.read_flow_run(skipped.id).await.expect("read"), None);
        assert!(
            store
                .read_flow_run_states(skipped.id)
                .await
                .expect("states")
                .is_empty()
        );
    }
    for made in [&b, &c, &d] {
        let read = store
            .read_flow_run(made.id)
            .await
            .expect("read")
            .expect("run");
        assert_eq!(&read.value, made);
        assert_eq!(
            store
                .read_flow_run_states(made.id)
                .await
                .expect("states")
                .len(),
            1
        );
    }
    assert_eq!(
        store
            .read_flow_run_states(existing.id)
            .await
            .expect("states")
            .len(),
        1
    );
    let of_f = FlowRunFilter {
        flow_ids: Some(vec![f]),
        ..Default::default()
    };
    assert_eq!(store.count_flow_runs(&of_f).await.expect("count"), 4);
    assert!(
        store
            .create_flow_runs(&[])
            .await
            .expect("empty batch")
            .is_empty()
    );
}

pub async fn create_flow_runs_races_itself<S: Store + 'static>(store: Arc<S>) {
    let f = a_flow(&*store, "etl").await;
    let keys: Vec<String> = (0..20).map(|i| format!("scheduled d s {i}")).collect();
    let tasks = 8;
    let barrier = Arc::new(Barrier::new(tasks));
    let mut handles = Vec::new();
    for t in 0..tasks {
        let (store, barrier) = (Arc::clone(&store), Arc::clone(&barrier));
        // Each overlapping "scheduler tick" builds its own runs (own ids) for the same keys, in
        // a different order.
        let mut batch: Vec<FlowRun> = keys.iter().map(|k| keyed_run(f, k)).collect();
        batch.rotate_left(t * 3 % keys.len());
        handles.push(tokio::spawn(async move {
            barrier.wait().await;
            store.create_flow_runs(&batch).await.expect("batch")
        }));
    }
    let mut created = Vec::new();
    for h in handles {
        created.extend(h.await.expect("task"));
    }
    assert_eq!(
        created.len(),
        keys.len(),
        "each key is created exactly once"
    );
    let created: BTreeSet<Id> = created.into_iter().collect();
    assert_eq!(created.len(), keys.len());

    let of_f = FlowRunFilter {
        flow_ids: Some(vec![f]),
        ..Default::default()
    };
    let stored = store
        .list_flow_runs(&of_f, FlowRunSort::IdDesc, None, 0)
        .await
        .expect("list");
    assert_eq!(stored.len(), keys.len());
    let mut per_key: HashMap<String, usize> = HashMap::new();
    for r in &stored {
        assert!(created.contains(&r.id), "a stored run was reported created");
        *per_key
            .entry(r.idempotency_key.clone().expect("key"))
            .or_default() += 1;
        assert_eq!(
            store
                .read_flow_run_states(r.id)
                .await
                .expect("states")
                .len(),
            1
        );
    }
    assert!(per_key.values().all(|n| *n == 1));
}

pub async fn flow_run_compare_and_set<S: Store>(store: Arc<S>) {
    let f = a_flow(&*store, "etl").await;
    let r = run(f);
    store.create_flow_run(&r).await.expect("create");
    let v0 = store
        .read_flow_run(r.id)
        .await
        .expect("read")
        .expect("run")
        .version;

    let mut pending = r.clone();
    pending.state = Some(state(StateType::Pending, "Pending", at(1)));
    pending.next_scheduled_start_time = None;
    pending.updated = at(1);
    let v1 = store
        .commit_flow_run_state(&pending, v0)
        .await
        .expect("commit");
    assert_ne!(v1, v0, "the version moves");
    let read = store.read_flow_run(r.id).await.expect("read").expect("run");
    assert_eq!((read.value.clone(), read.version), (pending.clone(), v1));
    let history = |s: &Arc<S>| {
        let s = Arc::clone(s);
        let rid = r.id;
        async move {
            s.read_flow_run_states(rid)
                .await
                .expect("states")
                .into_iter()
                .map(|s| s.name)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(history(&store).await, ["Scheduled", "Pending"]);

    // A stale version: Conflict, nothing written, history untouched.
    let mut running = r.clone();
    running.state = Some(state(StateType::Running, "Running", at(2)));
    assert_conflict(
        store.commit_flow_run_state(&running, v0).await,
        "stale commit",
    );
    let read = store.read_flow_run(r.id).await.expect("read").expect("run");
    assert_eq!((read.value, read.version), (pending.clone(), v1));
    assert_eq!(history(&store).await, ["Scheduled", "Pending"]);

    // update_flow_run changes the other fields and leaves the state as stored.
    let mut patched = pending.clone();
    patched.name = "renamed".to_owned();
    patched.infrastructure_pid = Some("1234".to_owned());
    patched.labels = map(json!({"x": "y"}));
    patched.state = Some(state(StateType::Crashed, "Crashed", at(3)));
    let v2 = store.update_flow_run(&patched, v1).await.expect("update");
    assert_ne!(v2, v1);
    let read = store.read_flow_run(r.id).await.expect("read").expect("run");
    assert_eq!(read.version, v2);
    assert_eq!(read.value.name, "renamed");
    assert_eq!(read.value.infrastructure_pid.as_deref(), Some("1234"));
    assert_eq!(read.value.labels, patched.labels);
    assert_eq!(read.value.state, pending.state, "the state is not touched");
    assert_eq!(history(&store).await, ["Scheduled", "Pending"]);
    assert_conflict(store.update_flow_run(&patched, v1).await, "stale update");
    assert_conflict(
        store.commit_flow_run_state(&running, v1).await,
        "stale after update",
    );

    assert!(store.delete_flow_run(r.id).await.expect("delete"));
    assert!(!store.delete_flow_run(r.id).await.expect("delete again"));
    assert_not_found(
        store.commit_flow_run_state(&running, v2).await,
        "commit to a deleted run",
    );
    assert_not_found(
        store.update_flow_run(&patched, v2).await,
        "update a deleted run",
    );
    assert!(
        store
            .read_flow_run_states(r.id)
            .await
            .expect("states")
            .is_empty()
    );
}

pub async fn concurrent_commits_have_one_winner<S: Store + 'static>(store: Arc<S>) {
    let f = a_flow(&*store, "etl").await;
    let r = run(f);
    store.create_flow_run(&r).await.expect("create");
    let seen = store.read_flow_run(r.id).await.expect("read").expect("run");

    let claimants = 8;
    let barrier = Arc::new(Barrier::new(claimants));
    let mut handles = Vec::new();
    for i in 0..claimants {
        let (store, barrier) = (Arc::clone(&store), Arc::clone(&barrier));
        let mut claim = seen.value.clone();
        let pending =
            state(StateType::Pending, "Pending", at(1)).with_message(format!("claimant {i}"));
        claim.state = Some(pending);
        let version = seen.version;
        handles.push(tokio::spawn(async move {
            barrier.wait().await;
            let outcome = store.commit_flow_run_state(&claim, version).await;
            (claim.state, outcome)
        }));
    }
    let mut winners = Vec::new();
    for h in handles {
        let (proposed, outcome) = h.await.expect("task");
        match outcome {
            Ok(_) => winners.push(proposed),
            Err(e) => assert!(e.is_conflict(), "losers get Conflict, got {e:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one claim lands");
    let stored = store.read_flow_run(r.id).await.expect("read").expect("run");
    assert_eq!(stored.value.state, winners[0]);
    let states = store.read_flow_run_states(r.id).await.expect("states");
    assert_eq!(states.len(), 2, "one history entry per landed commit");
}

pub async fn delete_unstarted_auto_scheduled_runs_conditions<S: Store>(store: Arc<S>) {
    let f = a_flow(&*store, "etl").await;
    let (dep, other_dep) = (id(), id());
    let scheduled = |name: &str, next: i64| {
        let mut r = run(f);
        r.deployment_id = Some(dep);
        r.auto_scheduled = true;
        r.state = Some(state(StateType::Scheduled, name, t0()).scheduled_at(at(next)));
        r.next_scheduled_start_time = Some(at(next));
        r.expected_start_time = Some(at(next));
        r
    };
    let due_late = scheduled("Scheduled", 100);
    let due_soon = scheduled("Late", 10);
    let awaiting_slot = scheduled("AwaitingConcurrencySlot", 100);
    let mut ran_before = scheduled("AwaitingRetry", 100);
    ran_before.run_count = 1;
    let mut running = scheduled("Scheduled", 100);
    running.state = Some(state(StateType::Running, "Running", at(1)));
    running.run_count = 1;
    running.start_time = Some(at(1));
    let mut manual = scheduled("Scheduled", 100);
    manual.auto_scheduled = false;
    let mut pending = scheduled("Scheduled", 100);
    pending.state = Some(state(StateType::Pending, "Pending", at(1)));
    let mut elsewhere = scheduled("Scheduled", 100);
    elsewhere.deployment_id = Some(other_dep);
    let all = [
        &due_late,
        &due_soon,
        &awaiting_slot,
        &ran_before,
        &running,
        &manual,
        &pending,
        &elsewhere,
    ];
    for r in all {
        store.create_flow_run(r).await.expect("create");
    }

    let deleted = store
        .delete_unstarted_auto_scheduled_runs(dep, Some(at(50)))
        .await
        .expect("delete");
    assert_eq!(
        deleted,
        vec![due_late.id],
        "only runs due at or after `from`"
    );
    let deleted = store
        .delete_unstarted_auto_scheduled_runs(dep, None)
        .await
        .expect("delete");
    assert_eq!(deleted, vec![due_soon.id]);
    assert!(
        store
            .delete_unstarted_auto_scheduled_runs(dep, None)
            .await
            .expect("delete")
            .is_empty()
    );

    for gone in [&due_late, &due_soon] {
        assert_eq!(store.read_flow_run(gone.id).await.expect("read"), None);
        assert!(
            store
                .read_flow_run_states(gone.id)
                .await
                .expect("states")
                .is_empty()
        );
    }
    for kept in [
        &awaiting_slot,
        &ran_before,
        &running,
        &manual,
        &pending,
        &elsewhere,
    ] {
        assert!(
            store.read_flow_run(kept.id).await.expect("read").is_some(),
            "{:?} kept",
            kept.state
        );
    }
}

pub async fn count_runs_by_queue_counts_states<S: Store>(store: Arc<S>) {
    let f = a_flow(&*store, "etl").await;
    let (q1, q2, q3) = (id(), id(), id());
    let in_state = |queue: Option<Id>, t: StateType| {
        let mut r = run(f);
        r.work_queue_id = queue;
        r.state = Some(state(t, t.default_name(), t0()));
        r
    };
    for r in [
        in_state(Some(q1), StateType::Pending),
        in_state(Some(q1), StateType::Running),
        in_state(Some(q1), StateType::Scheduled),
        in_state(Some(q2), StateType::Running),
        in_state(None, StateType::Running),
        in_state(Some(q3), StateType::Completed),
    ] {
        store.create_flow_run(&r).await.expect("create");
    }
    let active = [StateType::Pending, StateType::Running];
    let counts = store
        .count_runs_by_queue(&[q1, q2, q3], &active)
        .await
        .expect("count");
    let n = |q: Id| counts.get(&q).copied().unwrap_or(0);
    assert_eq!((n(q1), n(q2), n(q3)), (2, 1, 0));
    assert!(
        counts.keys().all(|q| [q1, q2, q3].contains(q)),
        "only the asked-for queues"
    );
    let scheduled = store
        .count_runs_by_queue(&[q1], &[StateType::Scheduled])
        .await
        .expect("count");
    assert_eq!(scheduled.get(&q1).copied(), Some(1));
}
