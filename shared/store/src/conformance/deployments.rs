//! Checks for [`FlowStore`](crate::FlowStore) and [`DeploymentStore`](crate::DeploymentStore):
//! CRUD, uniqueness, cascades, schedules and filters.

use std::sync::Arc;

use serde_json::json;
use sluice_core::domain::{Deployment, DeploymentStatus, Id};

use super::fixtures::{
    assert_conflict, assert_not_found, at, cron, deployment, flow, id, map, run, schedule,
};
use crate::{DeploymentFilter, DeploymentSort, FlowFilter, Store};

pub async fn flow_crud<S: Store>(store: Arc<S>) {
    let etl = flow("alpha-etl");
    let created = store.upsert_flow(&etl).await.expect("upsert");
    assert!(created.created);
    assert_eq!(created.value, etl);

    let mut same_name = flow("alpha-etl");
    same_name.tags = vec!["ignored".to_owned()];
    let again = store.upsert_flow(&same_name).await.expect("upsert again");
    assert!(!again.created);
    assert_eq!(again.value, etl, "the stored flow wins");
    assert_eq!(store.read_flow(same_name.id).await.expect("read"), None);

    assert_eq!(
        store.read_flow(etl.id).await.expect("read"),
        Some(etl.clone())
    );
    assert_eq!(
        store.read_flow_by_name("alpha-etl").await.expect("read"),
        Some(etl.clone())
    );
    assert_eq!(store.read_flow_by_name("nope").await.expect("read"), None);

    let mut beta = flow("beta-etl");
    beta.tags = vec!["etl".to_owned(), "nightly".to_owned()];
    beta.labels = map(json!({"team": "data"}));
    let mut gamma = flow("gamma");
    gamma.tags = vec!["etl".to_owned()];
    store.upsert_flow(&gamma).await.expect("gamma");
    store.upsert_flow(&beta).await.expect("beta");
    assert_eq!(
        store.read_flow(beta.id).await.expect("read"),
        Some(beta.clone())
    );

    let names = |flows: Vec<sluice_core::domain::Flow>| {
        flows.into_iter().map(|f| f.name).collect::<Vec<_>>()
    };
    let all = FlowFilter::default();
    assert_eq!(
        names(store.list_flows(&all, None, 0).await.expect("list")),
        ["alpha-etl", "beta-etl", "gamma"]
    );
    assert_eq!(
        names(store.list_flows(&all, Some(1), 2).await.expect("list")),
        ["gamma"]
    );
    let like = FlowFilter {
        name_like: Some("etl".to_owned()),
        ..Default::default()
    };
    assert_eq!(
        names(store.list_flows(&like, None, 0).await.expect("list")),
        ["alpha-etl", "beta-etl"]
    );
    let tagged = FlowFilter {
        tags_all: Some(vec!["etl".to_owned()]),
        ..Default::default()
    };
    assert_eq!(
        names(store.list_flows(&tagged, None, 0).await.expect("list")),
        ["beta-etl", "gamma"]
    );
    let both = FlowFilter {
        tags_all: Some(vec!["etl".to_owned(), "nightly".to_owned()]),
        ..Default::default()
    };
    assert_eq!(
        names(store.list_flows(&both, None, 0).await.expect("list")),
        ["beta-etl"]
    );
    let by_id = FlowFilter {
        ids: Some(vec![gamma.id, etl.id]),
        ..Default::default()
    };
    assert_eq!(
        names(store.list_flows(&by_id, None, 0).await.expect("list")),
        ["alpha-etl", "gamma"]
    );
    let by_name = FlowFilter {
        names: Some(vec!["beta-etl".to_owned()]),
        ..Default::default()
    };
    assert_eq!(store.count_flows(&by_name).await.expect("count"), 1);
    assert_eq!(store.count_flows(&tagged).await.expect("count"), 2);
    assert_eq!(store.count_flows(&all).await.expect("count"), 3);
}

pub async fn flow_delete_cascades<S: Store>(store: Arc<S>) {
    let doomed = flow("doomed");
    let kept = flow("kept");
    store.upsert_flow(&doomed).await.expect("flow");
    store.upsert_flow(&kept).await.expect("flow");
    let mut d = deployment(doomed.id, "nightly");
    d.schedules = vec![schedule(d.id, cron("0 9 * * *", "UTC"), None)];
    store.create_deployment(&d).await.expect("deployment");
    let kept_d = deployment(kept.id, "nightly");
    store.create_deployment(&kept_d).await.expect("deployment");
    let r = run(doomed.id);
    store.create_flow_run(&r).await.expect("run");
    let kept_r = run(kept.id);
    store.create_flow_run(&kept_r).await.expect("run");

    assert!(store.delete_flow(doomed.id).await.expect("delete"));
    assert_eq!(store.read_flow(doomed.id).await.expect("read"), None);
    assert_eq!(store.read_deployment(d.id).await.expect("read"), None);
    assert_eq!(store.read_flow_run(r.id).await.expect("read"), None);
    assert!(
        store
            .read_flow_run_states(r.id)
            .await
            .expect("states")
            .is_empty()
    );
    assert!(!store.delete_flow(doomed.id).await.expect("delete again"));

    assert_eq!(
        store.read_deployment(kept_d.id).await.expect("read"),
        Some(kept_d)
    );
    assert!(
        store
            .read_flow_run(kept_r.id)
            .await
            .expect("read")
            .is_some()
    );
}

fn full_deployment(flow_id: Id, name: &str) -> Deployment {
    let mut d = deployment(flow_id, name);
    d.version = Some("1.2".to_owned());
    d.version_info = Some(json!({"type": "git", "version": "abc"}));
    d.description = Some("nightly load".to_owned());
    d.concurrency_limit = Some(2);
    d.concurrency_options = Some(json!({"collision_strategy": "ENQUEUE"}));
    d.job_variables = map(json!({"image": "etl:1", "env": {"A": "1"}}));
    d.parameters = map(json!({"day": "today", "n": 3}));
    d.parameter_openapi_schema = Some(json!({"type": "object", "properties": {}}));
    d.enforce_parameter_schema = false;
    d.pull_steps = Some(vec![
        json!({"prefect.deployments.steps.set_working_directory": {"directory": "/app"}}),
    ]);
    d.path = Some("/app".to_owned());
    d.entrypoint = Some("flows.py:etl".to_owned());
    d.tags = vec!["etl".to_owned()];
    d.labels = map(json!({"owner": "data"}));
    d.work_queue_name = Some("default".to_owned());
    d.work_queue_id = Some(id());
    d.work_pool_name = Some("pool".to_owned());
    d.last_polled = Some(at(3));
    d.status = DeploymentStatus::Ready;
    d.storage_document_id = Some(id());
    d.infrastructure_document_id = Some(id());
    d.created_by = Some(json!({"id": null, "type": "USER"}));
    d.updated_by = Some(serde_json::Value::Null);
    d.schedules = vec![
        schedule(d.id, cron("0 9 * * *", "America/New_York"), Some("morning")),
        schedule(d.id, cron("30 17 * * 1-5", "Europe/Paris"), None),
    ];
    d
}

pub async fn deployment_crud<S: Store>(store: Arc<S>) {
    let f = flow("etl");
    let g = flow("other");
    store.upsert_flow(&f).await.expect("flow");
    store.upsert_flow(&g).await.expect("flow");
    let d = full_deployment(f.id, "nightly");
    store.create_deployment(&d).await.expect("create");
    assert_eq!(
        store.read_deployment(d.id).await.expect("read"),
        Some(d.clone())
    );
    assert_eq!(
        store
            .read_deployment_by_name(f.id, "nightly")
            .await
            .expect("read"),
        Some(d.clone())
    );
    assert_eq!(
        store
            .read_deployment_by_name(g.id, "nightly")
            .await
            .expect("read"),
        None
    );
    assert_eq!(store.read_deployment(id()).await.expect("read"), None);

    let dup = deployment(f.id, "nightly");
    assert_conflict(
        store.create_deployment(&dup).await,
        "duplicate (flow, name)",
    );
    assert_eq!(store.read_deployment(dup.id).await.expect("read"), None);
    store
        .create_deployment(&deployment(g.id, "nightly"))
        .await
        .expect("same name, other flow");

    let mut changed = d.clone();
    changed.updated = at(9);
    changed.paused = true;
    changed.description = None;
    changed.parameters = map(json!({"day": "yesterday"}));
    changed.work_queue_id = None;
    let mut replaced = schedule(d.id, cron("0 0 * * *", "UTC"), Some("midnight"));
    replaced.active = false;
    replaced.max_scheduled_runs = Some(5);
    replaced.parameters = map(json!({"day": "midnight"}));
    changed.schedules = vec![replaced];
    store.update_deployment(&changed).await.expect("update");
    assert_eq!(
        store.read_deployment(d.id).await.expect("read"),
        Some(changed.clone())
    );
    assert_not_found(
        store.update_deployment(&deployment(f.id, "ghost")).await,
        "update a missing deployment",
    );

    // A poll marks READY and stamps last_polled, leaving `updated` alone.
    let mut polled = deployment(f.id, "polled");
    polled.last_polled = None;
    store.create_deployment(&polled).await.expect("create");
    store
        .mark_deployments_polled(&[polled.id, changed.id], at(50))
        .await
        .expect("poll");
    let read = store
        .read_deployment(polled.id)
        .await
        .expect("read")
        .expect("deployment");
    assert_eq!(
        (read.status, read.last_polled, read.updated),
        (DeploymentStatus::Ready, Some(at(50)), polled.updated)
    );
    let read = store
        .read_deployment(changed.id)
        .await
        .expect("read")
        .expect("deployment");
    assert_eq!((read.last_polled, read.updated), (Some(at(50)), at(9)));

    // The foreman's NOT_READY is conditional on the poll it saw: a stale view changes nothing.
    assert!(
        !store
            .mark_deployment_not_ready(polled.id, Some(at(49)))
            .await
            .expect("stale mark"),
        "a poll newer than the foreman's view wins"
    );
    assert!(
        store
            .mark_deployment_not_ready(polled.id, Some(at(50)))
            .await
            .expect("mark")
    );
    let read = store
        .read_deployment(polled.id)
        .await
        .expect("read")
        .expect("deployment");
    assert_eq!(read.status, DeploymentStatus::NotReady);
    let ready = DeploymentFilter {
        status: Some(DeploymentStatus::Ready),
        ..Default::default()
    };
    let ready_ids: Vec<_> = store
        .list_deployments(&ready, None, 0)
        .await
        .expect("list ready")
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert!(ready_ids.contains(&changed.id) && !ready_ids.contains(&polled.id));
    assert!(
        !store
            .mark_deployment_not_ready(polled.id, Some(at(50)))
            .await
            .expect("mark again"),
        "only a READY deployment moves"
    );

    // Deleting a deployment keeps its runs, deployment id and all.
    let mut r = run(f.id);
    r.deployment_id = Some(d.id);
    store.create_flow_run(&r).await.expect("run");
    assert!(store.delete_deployment(d.id).await.expect("delete"));
    assert_eq!(store.read_deployment(d.id).await.expect("read"), None);
    let r = store
        .read_flow_run(r.id)
        .await
        .expect("read")
        .expect("run stays")
        .value;
    assert_eq!(r.deployment_id, Some(d.id));
    assert!(!store.delete_deployment(d.id).await.expect("delete again"));
}

pub async fn deployment_schedules_round_trip<S: Store>(store: Arc<S>) {
    let f = flow("etl");
    store.upsert_flow(&f).await.expect("flow");
    let mut d = deployment(f.id, "scheduled");
    let raw = json!({"cron": "0 9 * * *", "timezone": "America/New_York", "day_or": true});
    let parsed: sluice_core::schedules::Schedule =
        serde_json::from_value(raw).expect("Prefect's cron JSON");
    let mut s = schedule(d.id, parsed, Some("morning"));
    s.parameters = map(json!({"region": "us"}));
    s.max_scheduled_runs = Some(10);
    let mut off = schedule(d.id, cron("*/5 * * * *", "UTC"), None);
    off.active = false;
    d.schedules = vec![s, off];
    store.create_deployment(&d).await.expect("create");

    let read = store
        .read_deployment(d.id)
        .await
        .expect("read")
        .expect("deployment");
    assert_eq!(
        read.schedules, d.schedules,
        "schedules come back whole and in order"
    );
    let listed = store
        .list_deployments(&DeploymentFilter::default(), None, 0)
        .await
        .expect("list");
    assert_eq!(listed, vec![d]);
}

pub async fn deployment_filters<S: Store>(store: Arc<S>) {
    let f = flow("f");
    let g = flow("g");
    store.upsert_flow(&f).await.expect("flow");
    store.upsert_flow(&g).await.expect("flow");
    let (q1, q2) = (id(), id());
    let mut a = deployment(f.id, "alpha");
    a.tags = vec!["x".to_owned(), "y".to_owned()];
    a.work_queue_id = Some(q1);
    a.work_pool_name = Some("p1".to_owned());
    a.schedules = vec![schedule(a.id, cron("0 9 * * *", "UTC"), None)];
    let mut b = deployment(f.id, "beta");
    b.tags = vec!["x".to_owned()];
    b.paused = true;
    b.work_queue_id = Some(q2);
    b.work_pool_name = Some("p2".to_owned());
    b.updated = at(10);
    let mut inactive = schedule(b.id, cron("0 9 * * *", "UTC"), None);
    inactive.active = false;
    b.schedules = vec![inactive];
    let mut c = deployment(g.id, "gamma-beta");
    c.updated = at(20);
    // Created newest first in name order, for the CREATED_DESC check below.
    (a.created, b.created, c.created) = (at(3), at(2), at(1));
    for d in [&c, &a, &b] {
        store.create_deployment(d).await.expect("create");
    }

    let names = |ds: Vec<Deployment>| ds.into_iter().map(|d| d.name).collect::<Vec<_>>();
    let check = |filter: DeploymentFilter, want: &'static [&'static str]| {
        let store = Arc::clone(&store);
        async move {
            let listed = store
                .list_deployments(&filter, None, 0)
                .await
                .expect("list");
            assert_eq!(names(listed), want, "{filter:?}");
            assert_eq!(
                store.count_deployments(&filter).await.expect("count"),
                want.len(),
                "{filter:?}"
            );
        }
    };
    check(
        DeploymentFilter::default(),
        &["alpha", "beta", "gamma-beta"],
    )
    .await;
    // The orders Prefect's UI asks for.
    let orders: [(DeploymentSort, &'static [&'static str]); 3] = [
        (DeploymentSort::NameDesc, &["gamma-beta", "beta", "alpha"]),
        (
            DeploymentSort::CreatedDesc,
            &["alpha", "beta", "gamma-beta"],
        ),
        (
            DeploymentSort::UpdatedDesc,
            &["gamma-beta", "beta", "alpha"],
        ),
    ];
    for (sort, want) in orders {
        check(
            DeploymentFilter {
                sort,
                ..Default::default()
            },
            want,
        )
        .await;
    }
    check(
        DeploymentFilter {
            ids: Some(vec![c.id, a.id]),
            ..Default::default()
        },
        &["alpha", "gamma-beta"],
    )
    .await;
    check(
        DeploymentFilter {
            names: Some(vec!["beta".to_owned()]),
            ..Default::default()
        },
        &["beta"],
    )
    .await;
    check(
        DeploymentFilter {
            name_like: Some("beta".to_owned()),
            ..Default::default()
        },
        &["beta", "gamma-beta"],
    )
    .await;
    check(
        DeploymentFilter {
            flow_ids: Some(vec![g.id]),
            ..Default::default()
        },
        &["gamma-beta"],
    )
    .await;
    check(
        DeploymentFilter {
            paused: Some(true),
            ..Default::default()
        },
        &["beta"],
    )
    .await;
    check(
        DeploymentFilter {
            paused: Some(false),
            ..Default::default()
        },
        &["alpha", "gamma-beta"],
    )
    .await;
    let xy = Some(vec!["x".to_owned(), "y".to_owned()]);
    check(
        DeploymentFilter {
            tags_all: xy,
            ..Default::default()
        },
        &["alpha"],
    )
    .await;
    check(
        DeploymentFilter {
            work_queue_ids: Some(vec![q1]),
            ..Default::default()
        },
        &["alpha"],
    )
    .await;
    check(
        DeploymentFilter {
            work_pool_names: Some(vec!["p2".to_owned()]),
            ..Default::default()
        },
        &["beta"],
    )
    .await;
    check(
        DeploymentFilter {
            has_active_schedule: Some(true),
            ..Default::default()
        },
        &["alpha"],
    )
    .await;
    check(
        DeploymentFilter {
            has_active_schedule: Some(false),
            ..Default::default()
        },
        &["beta", "gamma-beta"],
    )
    .await;
    check(
        DeploymentFilter {
            updated_after: Some(at(10)),
            ..Default::default()
        },
        &["beta", "gamma-beta"],
    )
    .await;
    check(
        DeploymentFilter {
            ids: Some(Vec::new()),
            ..Default::default()
        },
        &[],
    )
    .await;

    // Keyset paging by id, for batch jobs.
    let mut ids = [a.id, b.id, c.id];
    ids.sort();
    let after_first = DeploymentFilter {
        id_after: Some(ids[0]),
        ..Default::default()
    };
    let page: Vec<Id> = store
        .list_deployments(&after_first, None, 0)
        .await
        .expect("list")
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(page, ids[1..]);
    let one = store
        .list_deployments(&after_first, Some(1), 0)
        .await
        .expect("list");
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].id, ids[1]);
    let last = DeploymentFilter {
        id_after: Some(ids[2]),
        ..Default::default()
    };
    assert!(
        store
            .list_deployments(&last, None, 0)
            .await
            .expect("list")
            .is_empty()
    );
}
