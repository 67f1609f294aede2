//! Checks for [`TaskRunStore`](crate::TaskRunStore) and [`EventStore`](crate::EventStore).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::json;
use sluice_core::domain::{Event, Id, State, StateType, TaskRun};

use super::fixtures::{assert_conflict, assert_not_found, at, id, map};
use crate::{EventFilter, Store, TaskRunFilter, TaskRunSort};

fn task_run(
    flow_run: Option<Id>,
    key: &str,
    dynamic: &str,
    state: StateType,
    second: i64,
) -> TaskRun {
    let run_id = id();
    let mut run = TaskRun {
        id: run_id,
        created: at(0),
        updated: at(0),
        name: format!("{key}-{dynamic}"),
        flow_run_id: flow_run,
        task_key: key.to_owned(),
        dynamic_key: dynamic.to_owned(),
        tags: vec!["db".to_owned()],
        state: None,
        run_count: 0,
        expected_start_time: Some(at(second)),
        start_time: None,
        end_time: None,
        fields: map(json!({"empirical_policy": {"retries": 1}, "cache_key": null})),
        version: 0,
    };
    run.state = Some(state_at(state, second));
    run
}

fn state_at(state_type: StateType, second: i64) -> State {
    let mut s = State::new(state_type, at(second));
    s.id = id();
    s
}

/// The same run reporting a later (or earlier) state.
fn moved(run: &TaskRun, state_type: StateType, second: i64) -> TaskRun {
    TaskRun {
        state: Some(state_at(state_type, second)),
        updated: at(second),
        ..run.clone()
    }
}

fn state_types(states: &[State]) -> Vec<StateType> {
    states.iter().map(|s| s.state_type).collect()
}

pub async fn task_runs_record_the_newest_state_and_every_state_once<S: Store>(store: Arc<S>) {
    let flow_run = id();
    let pending = task_run(Some(flow_run), "add", "0", StateType::Pending, 1);
    let running = moved(&pending, StateType::Running, 2);
    let done = moved(&pending, StateType::Completed, 3);

    // Out of order: Completed first, then Pending and Running (older: history only), then a
    // resend of all three.
    assert_eq!(
        store
            .record_task_runs(std::slice::from_ref(&done))
            .await
            .expect("record"),
        1
    );
    assert_eq!(
        store
            .record_task_runs(&[pending.clone(), running.clone()])
            .await
            .expect("record"),
        0,
        "older states do not replace the run"
    );
    assert_eq!(
        store
            .record_task_runs(&[pending.clone(), running.clone(), done.clone()])
            .await
            .expect("record"),
        0
    );
    let stored = store
        .read_task_run(pending.id)
        .await
        .expect("read")
        .expect("recorded");
    assert_eq!(stored.state, done.state);
    assert_eq!(stored.fields, pending.fields);
    let history = store
        .list_task_run_states(pending.id)
        .await
        .expect("states");
    assert_eq!(
        state_types(&history),
        [StateType::Pending, StateType::Running, StateType::Completed],
        "every state once, oldest first"
    );
    assert_eq!(history[1], running.state.clone().expect("state"));

    // In order, a later state moves the version on and keeps `created`.
    let retry = moved(&pending, StateType::Running, 4);
    let mut later = retry.clone();
    later.created = at(9);
    store.record_task_runs(&[later]).await.expect("record");
    let again = store
        .read_task_run(pending.id)
        .await
        .expect("read")
        .expect("run");
    assert_eq!(again.state, retry.state);
    assert_eq!(again.created, stored.created);
    assert!(again.version > stored.version, "the version moves on");
    assert_eq!(
        store
            .list_task_run_states(pending.id)
            .await
            .expect("states")
            .len(),
        4
    );
}

pub async fn task_runs_created_through_the_api_are_unique_by_natural_key<S: Store>(store: Arc<S>) {
    let flow_run = id();
    let first = task_run(Some(flow_run), "parent", "0", StateType::Pending, 1);
    let (made, created) = store.create_task_run(&first).await.expect("create");
    assert!(created);
    assert_eq!(made, first);
    let twin = task_run(Some(flow_run), "parent", "0", StateType::Pending, 2);
    let (found, created) = store.create_task_run(&twin).await.expect("create again");
    assert!(!created, "the natural key exists");
    assert_eq!(found.id, first.id);
    let other_key = task_run(Some(flow_run), "parent", "1", StateType::Pending, 2);
    assert!(store.create_task_run(&other_key).await.expect("create").1);
    // Without a flow run there is no natural key: only the id is unique.
    let loose = task_run(None, "parent", "0", StateType::Pending, 2);
    assert!(store.create_task_run(&loose).await.expect("create").1);
    assert_conflict(store.create_task_run(&loose).await, "the id exists");
    assert_eq!(
        state_types(&store.list_task_run_states(first.id).await.expect("states")),
        [StateType::Pending]
    );

    // Updates are compare-and-set on the version, and add their state to the history.
    let stored = store
        .read_task_run(first.id)
        .await
        .expect("read")
        .expect("run");
    let running = TaskRun {
        run_count: 1,
        ..moved(&stored, StateType::Running, 5)
    };
    store.update_task_run(&running).await.expect("update");
    assert_conflict(store.update_task_run(&running).await, "a stale version");
    let now = store
        .read_task_run(first.id)
        .await
        .expect("read")
        .expect("run");
    assert_eq!((now.version, now.run_count), (stored.version + 1, 1));
    assert_eq!(
        state_types(&store.list_task_run_states(first.id).await.expect("states")),
        [StateType::Pending, StateType::Running]
    );
    let gone = task_run(Some(flow_run), "x", "0", StateType::Pending, 1);
    assert_not_found(store.update_task_run(&gone).await, "an unknown run");

    assert!(store.delete_task_run(first.id).await.expect("delete"));
    assert!(!store.delete_task_run(first.id).await.expect("delete again"));
    assert!(store.read_task_run(first.id).await.expect("read").is_none());
    assert!(
        store
            .list_task_run_states(first.id)
            .await
            .expect("states")
            .is_empty()
    );
}

pub async fn task_run_filters_sorts_and_counts<S: Store>(store: Arc<S>) {
    let (a, b) = (id(), id());
    let mut runs = vec![
        task_run(Some(a), "add", "0", StateType::Completed, 3),
        task_run(Some(a), "add", "1", StateType::Failed, 1),
        task_run(Some(b), "mul", "0", StateType::Running, 2),
        task_run(None, "loose", "0", StateType::Completed, 4),
    ];
    runs[2].tags = vec!["db".to_owned(), "slow".to_owned()];
    runs[0].start_time = Some(at(3));
    store.record_task_runs(&runs).await.expect("record");
    let ids = |filter: TaskRunFilter, sort: TaskRunSort, limit: Option<usize>, offset: usize| {
        let store = Arc::clone(&store);
        async move {
            store
                .list_task_runs(&filter, sort, limit, offset)
                .await
                .expect("list")
                .into_iter()
                .map(|r| r.id)
                .collect::<Vec<_>>()
        }
    };
    let of_a = TaskRunFilter {
        flow_run_ids: Some(vec![a]),
        ..TaskRunFilter::default()
    };
    assert_eq!(
        ids(of_a.clone(), TaskRunSort::ExpectedStartTimeAsc, None, 0).await,
        [runs[1].id, runs[0].id]
    );
    assert_eq!(store.count_task_runs(&of_a).await.expect("count"), 2);
    assert_eq!(
        ids(
            TaskRunFilter::default(),
            TaskRunSort::ExpectedStartTimeDesc,
            Some(2),
            1
        )
        .await,
        [runs[0].id, runs[2].id],
        "paged"
    );
    let completed = TaskRunFilter {
        state_types: Some(vec![StateType::Completed]),
        ..TaskRunFilter::default()
    };
    assert_eq!(store.count_task_runs(&completed).await.expect("count"), 2);
    let tagged = TaskRunFilter {
        tags_all: Some(vec!["db".to_owned(), "slow".to_owned()]),
        ..TaskRunFilter::default()
    };
    assert_eq!(
        ids(tagged, TaskRunSort::IdDesc, None, 0).await,
        [runs[2].id]
    );
    let loose = TaskRunFilter {
        flow_run_is_null: Some(true),
        ..TaskRunFilter::default()
    };
    assert_eq!(ids(loose, TaskRunSort::IdDesc, None, 0).await, [runs[3].id]);
    let started = TaskRunFilter {
        start_time_is_null: Some(false),
        ..TaskRunFilter::default()
    };
    assert_eq!(
        ids(started, TaskRunSort::NameAsc, None, 0).await,
        [runs[0].id]
    );
}

fn event(name: &str, resource: &str, related: &[&str], second: i64) -> Event {
    let labels = |id: &str, role: Option<&str>| {
        let mut m = BTreeMap::new();
        m.insert("prefect.resource.id".to_owned(), id.to_owned());
        if let Some(r) = role {
            m.insert("prefect.resource.role".to_owned(), r.to_owned());
        }
        m
    };
    Event {
        id: id(),
        occurred: at(second),
        event: name.to_owned(),
        resource: labels(resource, None),
        related: related
            .iter()
            .map(|r| labels(r, Some("flow-run")))
            .collect(),
        payload: map(json!({"n": second})),
        follows: None,
        received: at(second + 1),
    }
}

pub async fn events_are_stored_once_and_filtered_by_time_name_and_resource<S: Store>(
    store: Arc<S>,
) {
    let run = "prefect.flow-run.1";
    let events = vec![
        event("prefect.task-run.Running", "prefect.task-run.a", &[run], 1),
        event(
            "prefect.task-run.Completed",
            "prefect.task-run.a",
            &[run],
            2,
        ),
        event("prefect.flow-run.Completed", run, &[], 3),
        event("custom.thing", "my.resource", &[], 10),
    ];
    let new = store.put_events(&events).await.expect("put");
    assert_eq!(new, events.iter().map(|e| e.id).collect::<Vec<_>>());
    // A resend (after a reconnect) stores nothing twice.
    let again = store.put_events(&events[1..3]).await.expect("put again");
    assert!(again.is_empty(), "{again:?}");
    assert_eq!(
        store
            .count_events(&EventFilter::default())
            .await
            .expect("count"),
        4
    );
    let names = |filter: EventFilter| {
        let store = Arc::clone(&store);
        async move {
            store
                .list_events(&filter, 100, 0)
                .await
                .expect("list")
                .into_iter()
                .map(|e| e.event)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        names(EventFilter {
            occurred_since: Some(at(2)),
            occurred_until: Some(at(3)),
            ..EventFilter::default()
        })
        .await,
        ["prefect.flow-run.Completed", "prefect.task-run.Completed"],
        "newest first, bounds inclusive"
    );
    assert_eq!(
        names(EventFilter {
            prefixes: Some(vec!["prefect.task-run.".to_owned()]),
            ascending: true,
            ..EventFilter::default()
        })
        .await,
        ["prefect.task-run.Running", "prefect.task-run.Completed"]
    );
    assert_eq!(
        names(EventFilter {
            any_resource_ids: Some(vec![run.to_owned()]),
            ascending: true,
            ..EventFilter::default()
        })
        .await
        .len(),
        3
    );
    assert_eq!(
        names(EventFilter {
            related_ids: Some(vec![run.to_owned()]),
            exclude_names: Some(vec!["prefect.task-run.Running".to_owned()]),
            ..EventFilter::default()
        })
        .await,
        ["prefect.task-run.Completed"]
    );
    let stored = store
        .list_events(
            &EventFilter {
                ids: Some(vec![events[3].id]),
                ..EventFilter::default()
            },
            10,
            0,
        )
        .await
        .expect("list");
    assert_eq!(stored, [events[3].clone()], "stored exactly");
    let page = store
        .list_events(&EventFilter::default(), 2, 1)
        .await
        .expect("page");
    assert_eq!(page.len(), 2);
    assert_eq!(page[0].event, "prefect.flow-run.Completed");

    assert_eq!(
        store.delete_events_before(at(3), 100).await.expect("purge"),
        2
    );
    assert_eq!(
        store
            .count_events(&EventFilter::default())
            .await
            .expect("count"),
        2
    );
}
