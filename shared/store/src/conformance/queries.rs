//! Checks for [`RunStore`](crate::RunStore) reads: every [`FlowRunFilter`] field, every
//! [`FlowRunSort`], and paging.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::json;
use sluice_core::domain::{CreatedBy, FlowRun, Id, StateType};

use super::fixtures::{at, flow, id, map, run, state, t0};
use crate::{FlowRunFilter, FlowRunSort, Store};

/// The ids the filter checks need, besides the runs'.
struct World {
    f: Id,
    g: Id,
    d1: Id,
    q1: Id,
    p1: Id,
    parent: Id,
    schedule2: Id,
    runs: Vec<FlowRun>,
}

/// Five runs that differ in every filtered field:
///
/// | name      | flow | deployment | queue     | state              | tags  | auto | runs | expected | next | start | end |
/// |-----------|------|------------|-----------|--------------------|-------|------|------|----------|------|-------|-----|
/// | alpha-run | f    | d1         | q1 q-one  | SCHEDULED/Scheduled| a b   | yes  | 0    | 10       | 10   |       |     |
/// | beta-run  | f    | d1         | q2 q-two  | SCHEDULED/Late     | b     | yes  | 0    | 5        | 5    |       |     |
/// | gamma     | f    | d2         | q1 q-one  | RUNNING/Running    | c     | no   | 1    | 1        |      | 2     |     |
/// | delta     | g    |            |           | COMPLETED/Completed|       | no   | 1    | 3        |      | 4     | 8   |
/// | epsilon   | g    |            |           | (none)             |       | no   | 0    |          |      |       |     |
async fn world<S: Store>(store: &S) -> World {
    let f = store.upsert_flow(&flow("f")).await.expect("flow").value.id;
    let g = store.upsert_flow(&flow("g")).await.expect("flow").value.id;
    let (d1, d2, q1, q2, p1, parent, schedule1, schedule2) =
        (id(), id(), id(), id(), id(), id(), id(), id());
    let base = |flow_id: Id, name: &str| {
        let mut r = run(flow_id);
        r.name = name.to_owned();
        r.state = None;
        r.expected_start_time = None;
        r.next_scheduled_start_time = None;
        r
    };
    let on = |r: &mut FlowRun, d: Id, q: Id, qn: &str| {
        r.deployment_id = Some(d);
        r.work_queue_id = Some(q);
        r.work_queue_name = Some(qn.to_owned());
        r.work_pool_id = Some(p1);
        r.work_pool_name = Some("pool-one".to_owned());
    };
    let tags = |t: &[&str]| t.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let by_schedule = |s: Id| {
        Some(CreatedBy {
            id: Some(s),
            created_by_type: Some("SCHEDULE".to_owned()),
            display_value: None,
        })
    };

    let mut alpha = base(f, "alpha-run");
    on(&mut alpha, d1, q1, "q-one");
    alpha.state = Some(state(StateType::Scheduled, "Scheduled", t0()).scheduled_at(at(10)));
    alpha.tags = tags(&["a", "b"]);
    alpha.auto_scheduled = true;
    alpha.idempotency_key = Some("k1".to_owned());
    alpha.parent_task_run_id = Some(parent);
    alpha.created_by = by_schedule(schedule1);
    alpha.expected_start_time = Some(at(10));
    alpha.next_scheduled_start_time = Some(at(10));

    let mut beta = base(f, "beta-run");
    on(&mut beta, d1, q2, "q-two");
    beta.state = Some(state(StateType::Scheduled, "Late", t0()).scheduled_at(at(5)));
    beta.tags = tags(&["b"]);
    beta.auto_scheduled = true;
    beta.idempotency_key = Some("k2".to_owned());
    beta.empirical_policy = map(json!({"retries": 1, "retry_type": "in_process"}));
    beta.expected_start_time = Some(at(5));
    beta.next_scheduled_start_time = Some(at(5));

    let mut gamma = base(f, "gamma");
    on(&mut gamma, d2, q1, "q-one");
    gamma.state = Some(state(StateType::Running, "Running", at(2)));
    gamma.tags = tags(&["c"]);
    gamma.run_count = 1;
    gamma.created_by = by_schedule(schedule2);
    gamma.empirical_policy = map(json!({"retry_type": "reschedule"}));
    gamma.expected_start_time = Some(at(1));
    gamma.start_time = Some(at(2));

    let mut delta = base(g, "delta");
    delta.state = Some(state(StateType::Completed, "Completed", at(8)));
    delta.run_count = 1;
    delta.expected_start_time = Some(at(3));
    delta.start_time = Some(at(4));
    delta.end_time = Some(at(8));

    let epsilon = base(g, "epsilon");

    let runs = vec![alpha, beta, gamma, delta, epsilon];
    for r in &runs {
        store.create_flow_run(r).await.expect("create");
    }
    World {
        f,
        g,
        d1,
        q1,
        p1,
        parent,
        schedule2,
        runs,
    }
}

fn names(runs: Vec<FlowRun>) -> Vec<String> {
    runs.into_iter().map(|r| r.name).collect()
}

pub async fn flow_run_filters<S: Store>(store: Arc<S>) {
    let w = world(&*store).await;
    let id_of = |name: &str| {
        w.runs
            .iter()
            .find(|r| r.name == name)
            .map(|r| r.id)
            .expect("run")
    };
    let check = |filter: FlowRunFilter, want: &'static [&'static str]| {
        let store = Arc::clone(&store);
        async move {
            let listed = store
                .list_flow_runs(&filter, FlowRunSort::NameAsc, None, 0)
                .await
                .expect("list");
            assert_eq!(names(listed), want, "{filter:?}");
            assert_eq!(
                store.count_flow_runs(&filter).await.expect("count"),
                want.len(),
                "{filter:?}"
            );
        }
    };
    let strings = |s: &[&str]| Some(s.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>());
    let any = FlowRunFilter::default;

    check(
        any(),
        &["alpha-run", "beta-run", "delta", "epsilon", "gamma"],
    )
    .await;
    check(
        FlowRunFilter {
            ids: Some(vec![id_of("gamma"), id_of("alpha-run")]),
            ..any()
        },
        &["alpha-run", "gamma"],
    )
    .await;
    check(
        FlowRunFilter {
            ids: Some(Vec::new()),
            ..any()
        },
        &[],
    )
    .await;
    check(
        FlowRunFilter {
            not_ids: Some(vec![id_of("alpha-run")]),
            ..any()
        },
        &["beta-run", "delta", "epsilon", "gamma"],
    )
    .await;
    check(
        FlowRunFilter {
            names: strings(&["delta"]),
            ..any()
        },
        &["delta"],
    )
    .await;
    check(
        FlowRunFilter {
            name_like: Some("run".to_owned()),
            ..any()
        },
        &["alpha-run", "beta-run"],
    )
    .await;
    check(
        FlowRunFilter {
            flow_ids: Some(vec![w.g]),
            ..any()
        },
        &["delta", "epsilon"],
    )
    .await;
    check(
        FlowRunFilter {
            flow_ids: Some(vec![w.f]),
            ..any()
        },
        &["alpha-run", "beta-run", "gamma"],
    )
    .await;
    check(
        FlowRunFilter {
            deployment_ids: Some(vec![w.d1]),
            ..any()
        },
        &["alpha-run", "beta-run"],
    )
    .await;
    check(
        FlowRunFilter {
            deployment_id_is_null: Some(true),
            ..any()
        },
        &["delta", "epsilon"],
    )
    .await;
    check(
        FlowRunFilter {
            deployment_id_is_null: Some(false),
            ..any()
        },
        &["alpha-run", "beta-run", "gamma"],
    )
    .await;
    check(
        FlowRunFilter {
            work_queue_ids: Some(vec![w.q1]),
            ..any()
        },
        &["alpha-run", "gamma"],
    )
    .await;
    check(
        FlowRunFilter {
            work_queue_names: strings(&["q-two"]),
            ..any()
        },
        &["beta-run"],
    )
    .await;
    check(
        FlowRunFilter {
            work_pool_ids: Some(vec![w.p1]),
            ..any()
        },
        &["alpha-run", "beta-run", "gamma"],
    )
    .await;
    check(
        FlowRunFilter {
            work_pool_names: strings(&["pool-one"]),
            ..any()
        },
        &["alpha-run", "beta-run", "gamma"],
    )
    .await;
    check(
        FlowRunFilter {
            state_types: Some(vec![StateType::Scheduled]),
            ..any()
        },
        &["alpha-run", "beta-run"],
    )
    .await;
    // `not_*` filters keep runs where the field is unset (epsilon has no state).
    let not_types = Some(vec![StateType::Scheduled, StateType::Running]);
    check(
        FlowRunFilter {
            not_state_types: not_types,
            ..any()
        },
        &["delta", "epsilon"],
    )
    .await;
    check(
        FlowRunFilter {
            state_names: strings(&["Late"]),
            ..any()
        },
        &["beta-run"],
    )
    .await;
    check(
        FlowRunFilter {
            not_state_names: strings(&["Late"]),
            ..any()
        },
        &["alpha-run", "delta", "epsilon", "gamma"],
    )
    .await;
    check(
        FlowRunFilter {
            tags_all: strings(&["a", "b"]),
            ..any()
        },
        &["alpha-run"],
    )
    .await;
    check(
        FlowRunFilter {
            tags_all: strings(&["b"]),
            ..any()
        },
        &["alpha-run", "beta-run"],
    )
    .await;
    check(
        FlowRunFilter {
            tags_any: strings(&["a", "c"]),
            ..any()
        },
        &["alpha-run", "gamma"],
    )
    .await;
    check(
        FlowRunFilter {
            auto_scheduled: Some(true),
            ..any()
        },
        &["alpha-run", "beta-run"],
    )
    .await;
    check(
        FlowRunFilter {
            auto_scheduled: Some(false),
            ..any()
        },
        &["delta", "epsilon", "gamma"],
    )
    .await;
    check(
        FlowRunFilter {
            run_count: Some(1),
            ..any()
        },
        &["delta", "gamma"],
    )
    .await;
    check(
        FlowRunFilter {
            idempotency_keys: strings(&["k2"]),
            ..any()
        },
        &["beta-run"],
    )
    .await;
    check(
        FlowRunFilter {
            parent_task_run_ids: Some(vec![w.parent]),
            ..any()
        },
        &["alpha-run"],
    )
    .await;
    check(
        FlowRunFilter {
            created_by_ids: Some(vec![w.schedule2]),
            ..any()
        },
        &["gamma"],
    )
    .await;
    // Time bounds are inclusive.
    check(
        FlowRunFilter {
            expected_start_time_before: Some(at(5)),
            ..any()
        },
        &["beta-run", "delta", "gamma"],
    )
    .await;
    check(
        FlowRunFilter {
            expected_start_time_after: Some(at(5)),
            ..any()
        },
        &["alpha-run", "beta-run"],
    )
    .await;
    check(
        FlowRunFilter {
            next_scheduled_start_time_before: Some(at(5)),
            ..any()
        },
        &["beta-run"],
    )
    .await;
    check(
        FlowRunFilter {
            next_scheduled_start_time_after: Some(at(6)),
            ..any()
        },
        &["alpha-run"],
    )
    .await;
    let window = FlowRunFilter {
        next_scheduled_start_time_after: Some(at(5)),
        next_scheduled_start_time_before: Some(at(10)),
        ..any()
    };
    check(window, &["alpha-run", "beta-run"]).await;
    check(
        FlowRunFilter {
            start_time_before: Some(at(2)),
            ..any()
        },
        &["gamma"],
    )
    .await;
    check(
        FlowRunFilter {
            start_time_after: Some(at(3)),
            ..any()
        },
        &["delta"],
    )
    .await;
    check(
        FlowRunFilter {
            start_time_is_null: Some(true),
            ..any()
        },
        &["alpha-run", "beta-run", "epsilon"],
    )
    .await;
    check(
        FlowRunFilter {
            start_time_is_null: Some(false),
            ..any()
        },
        &["delta", "gamma"],
    )
    .await;
    check(
        FlowRunFilter {
            exclude_in_process_retries: true,
            ..any()
        },
        &["alpha-run", "delta", "epsilon", "gamma"],
    )
    .await;
    // What a worker poll asks: SCHEDULED runs of a queue, due by a time, no in-process retries.
    let poll = FlowRunFilter {
        state_types: Some(vec![StateType::Scheduled]),
        work_queue_ids: Some(vec![w.q1]),
        next_scheduled_start_time_before: Some(at(60)),
        exclude_in_process_retries: true,
        ..any()
    };
    check(poll, &["alpha-run"]).await;
}

pub async fn flow_run_sorts_and_paging<S: Store>(store: Arc<S>) {
    let w = world(&*store).await;
    let all = FlowRunFilter::default();
    let sorted = |sort: FlowRunSort, limit: Option<usize>, offset: usize| {
        let (store, all) = (Arc::clone(&store), all.clone());
        async move {
            names(
                store
                    .list_flow_runs(&all, sort, limit, offset)
                    .await
                    .expect("list"),
            )
        }
    };

    let mut by_id: Vec<&FlowRun> = w.runs.iter().collect();
    by_id.sort_by_key(|r| std::cmp::Reverse(r.id));
    let want: Vec<String> = by_id.iter().map(|r| r.name.clone()).collect();
    assert_eq!(sorted(FlowRunSort::IdDesc, None, 0).await, want);

    // Runs without the sort key come last, whatever the direction.
    assert_eq!(
        sorted(FlowRunSort::ExpectedStartTimeAsc, None, 0).await,
        ["gamma", "delta", "beta-run", "alpha-run", "epsilon"]
    );
    assert_eq!(
        sorted(FlowRunSort::ExpectedStartTimeDesc, None, 0).await,
        ["alpha-run", "beta-run", "delta", "gamma", "epsilon"]
    );
    let next = sorted(FlowRunSort::NextScheduledStartTimeAsc, None, 0).await;
    assert_eq!(next[..2], ["beta-run", "alpha-run"]);
    let unscheduled: BTreeSet<&str> = next[2..].iter().map(String::as_str).collect();
    assert_eq!(unscheduled, BTreeSet::from(["delta", "epsilon", "gamma"]));
    // START_TIME sorts fall back to the expected start for runs that have not started.
    assert_eq!(
        sorted(FlowRunSort::StartTimeAsc, None, 0).await,
        ["gamma", "delta", "beta-run", "alpha-run", "epsilon"]
    );
    assert_eq!(
        sorted(FlowRunSort::StartTimeDesc, None, 0).await,
        ["alpha-run", "beta-run", "delta", "gamma", "epsilon"]
    );
    let ended = sorted(FlowRunSort::EndTimeDesc, None, 0).await;
    assert_eq!(ended[0], "delta");
    assert_eq!(ended.len(), 5);
    assert_eq!(
        sorted(FlowRunSort::NameAsc, None, 0).await,
        ["alpha-run", "beta-run", "delta", "epsilon", "gamma"]
    );
    assert_eq!(
        sorted(FlowRunSort::NameDesc, None, 0).await,
        ["gamma", "epsilon", "delta", "beta-run", "alpha-run"]
    );

    assert_eq!(
        sorted(FlowRunSort::NameAsc, Some(2), 1).await,
        ["beta-run", "delta"]
    );
    assert_eq!(
        sorted(FlowRunSort::NameAsc, None, 3).await,
        ["epsilon", "gamma"]
    );
    assert!(sorted(FlowRunSort::NameAsc, Some(10), 5).await.is_empty());
    assert!(sorted(FlowRunSort::NameAsc, Some(0), 0).await.is_empty());
}
