//! `create_flow_run_from_deployment` (reference §7.2): job variables checked against the pool's
//! schema, parameters merged, tags united, idempotency keys honoured.

use serde_json::json;
use sluice_core::domain::{Deployment, StateType};
use sluice_services::{DeploymentInput, FlowRunFromDeployment, ServiceError, WorkPoolInput};
use sluice_store::FlowRunFilter;

use crate::common::{Env, env, invalid_message, map, t0};

/// A pool whose template declares `image` (required), `cpu` (default 256) and `env`, and a
/// deployment on it with parameters, tags, labels and an image.
async fn bed() -> (Env, Deployment) {
    let env = env();
    let flow = env.flow("etl").await;
    env.pool_with(WorkPoolInput {
        name: "pool".to_owned(),
        pool_type: Some("process".to_owned()),
        base_job_template: Some(json!({
            "job_configuration": {
                "image": "{{ image }}",
                "cpu": "{{ cpu }}",
                "env": "{{ env }}"
            },
            "variables": {
                "type": "object",
                "properties": {
                    "image": {"type": "string"},
                    "cpu": {"type": "integer", "default": 256},
                    "env": {"type": "object", "additionalProperties": {"type": "string"}}
                },
                "required": ["image"]
            }
        })),
        ..Default::default()
    })
    .await;
    let d = env
        .deploy_with(DeploymentInput {
            name: "etl-prod".to_owned(),
            flow_id: Some(flow),
            parameters: map(json!({"a": 1, "b": 2})),
            tags: vec!["etl".to_owned(), "prod".to_owned()],
            labels: map(json!({"team": "data"})),
            job_variables: map(json!({"image": "etl:1"})),
            version: Some("v3".to_owned()),
            work_pool_name: Some("pool".to_owned()),
            ..Default::default()
        })
        .await;
    (env, d)
}

fn with_vars(vars: serde_json::Value) -> FlowRunFromDeployment {
    FlowRunFromDeployment {
        job_variables: Some(map(vars)),
        ..Default::default()
    }
}

#[tokio::test]
async fn undeclared_or_ill_typed_job_variables_are_refused() {
    let (env, d) = bed().await;
    let create = |input| env.services.create_flow_run_from_deployment(d.id, input);

    let m = invalid_message(create(with_vars(json!({"memory": 512}))).await);
    assert!(m.contains("'memory'"), "{m}");
    let m = invalid_message(create(with_vars(json!({"cpu": 1, "gpu.count": 2}))).await);
    assert!(m.contains("gpu.count"), "{m}");
    assert!(!m.contains("cpu"), "only the undeclared one is named: {m}");
    let m = invalid_message(create(with_vars(json!({"cpu": "lots"}))).await);
    assert!(m.contains("cpu"), "{m}");
    let m = invalid_message(create(with_vars(json!({"env": {"A": 1}}))).await);
    assert!(m.contains("env"), "{m}");
    let everything = env
        .store
        .count_flow_runs(&FlowRunFilter::default())
        .await
        .expect("count");
    assert_eq!(everything, 0, "no run was created");
}

#[tokio::test]
async fn required_job_variables_are_enforced_over_the_deployment_ones() {
    let (env, d) = bed().await;
    // The deployment provides the image, so the run need not.
    env.services
        .create_flow_run_from_deployment(d.id, with_vars(json!({"cpu": 1024})))
        .await
        .expect("image comes from the deployment");

    let mut bare = d.clone();
    bare.id = uuid::Uuid::new_v4();
    bare.name = "bare".to_owned();
    bare.job_variables = serde_json::Map::new();
    bare.schedules.clear();
    env.store.create_deployment(&bare).await.expect("create");
    let m = invalid_message(
        env.services
            .create_flow_run_from_deployment(bare.id, with_vars(json!({"cpu": 1024})))
            .await,
    );
    assert!(m.contains("image"), "{m}");
}

#[tokio::test]
async fn a_run_merges_parameters_unites_tags_and_stores_its_job_variables() {
    let (env, d) = bed().await;
    let pool = env.services.read_work_pool("pool").await.expect("pool");
    let run = env
        .services
        .create_flow_run_from_deployment(
            d.id,
            FlowRunFromDeployment {
                name: Some("manual-run".to_owned()),
                parameters: map(json!({"b": 3, "c": {"deep": true}})),
                tags: vec!["adhoc".to_owned(), "etl".to_owned()],
                labels: map(json!({"who": "me"})),
                job_variables: Some(map(json!({"cpu": 512, "env": {"MODE": "fast"}}))),
                ..Default::default()
            },
        )
        .await
        .expect("create");
    assert!(run.created);
    let stored = env.run(run.value.id).await;
    assert_eq!(stored, run.value);
    assert_eq!(stored.name, "manual-run");
    assert_eq!(
        stored.parameters,
        map(json!({"a": 1, "b": 3, "c": {"deep": true}}))
    );
    assert_eq!(stored.tags, vec!["adhoc", "etl", "prod"]);
    assert_eq!(stored.labels, map(json!({"team": "data", "who": "me"})));
    assert_eq!(
        stored.job_variables,
        Some(map(json!({"cpu": 512, "env": {"MODE": "fast"}})))
    );
    assert_eq!(stored.deployment_id, Some(d.id));
    assert_eq!(stored.deployment_version.as_deref(), Some("v3"));
    assert_eq!(stored.flow_id, d.flow_id);
    assert_eq!(stored.work_pool_name.as_deref(), Some("pool"));
    assert_eq!(stored.work_pool_id, Some(pool.id));
    assert_eq!(stored.work_queue_name.as_deref(), Some("default"));
    assert_eq!(stored.work_queue_id, pool.default_queue_id);
    assert!(!stored.auto_scheduled);
    let state = stored.state.as_ref().expect("state");
    assert_eq!(state.state_type, StateType::Scheduled);
    assert_eq!(state.name, "Scheduled");
    assert_eq!(state.scheduled_time(), Some(t0()), "Scheduled for now");
    assert_eq!(stored.next_scheduled_start_time, Some(t0()));

    // Without job variables the run keeps none of its own (the deployment's apply at render).
    let plain = env
        .services
        .create_flow_run_from_deployment(d.id, FlowRunFromDeployment::default())
        .await
        .expect("create")
        .value;
    assert_eq!(plain.job_variables, None);
    assert_eq!(plain.parameters, map(json!({"a": 1, "b": 2})));
    assert_eq!(plain.tags, vec!["etl", "prod"]);

    // A named queue of the pool is created when missing.
    let queued = env
        .services
        .create_flow_run_from_deployment(
            d.id,
            FlowRunFromDeployment {
                work_queue_name: Some("adhoc".to_owned()),
                ..Default::default()
            },
        )
        .await
        .expect("create")
        .value;
    let (_, adhoc) = env
        .services
        .read_work_queue("pool", "adhoc")
        .await
        .expect("created queue");
    assert_eq!(queued.work_queue_id, Some(adhoc.id));
    assert_eq!(queued.work_queue_name.as_deref(), Some("adhoc"));
}

#[tokio::test]
async fn an_idempotency_key_returns_the_first_run() {
    let (env, d) = bed().await;
    let keyed = |b: i64| FlowRunFromDeployment {
        idempotency_key: Some("nightly-2026-03-06".to_owned()),
        parameters: map(json!({ "b": b })),
        ..Default::default()
    };
    let first = env
        .services
        .create_flow_run_from_deployment(d.id, keyed(10))
        .await
        .expect("create");
    assert!(first.created);
    let second = env
        .services
        .create_flow_run_from_deployment(d.id, keyed(20))
        .await
        .expect("create");
    assert!(!second.created);
    assert_eq!(second.value.id, first.value.id);
    assert_eq!(second.value.parameters, map(json!({"a": 1, "b": 10})));
    let runs = env.runs_of(d.id).await;
    assert_eq!(runs.len(), 1);
    assert_eq!(
        runs[0].idempotency_key.as_deref(),
        Some("nightly-2026-03-06")
    );

    // Another key is another run.
    let mut other = keyed(30);
    other.idempotency_key = Some("nightly-2026-03-07".to_owned());
    let third = env
        .services
        .create_flow_run_from_deployment(d.id, other)
        .await
        .expect("create");
    assert!(third.created);
    assert_ne!(third.value.id, first.value.id);
    assert_eq!(env.runs_of(d.id).await.len(), 2);

    match env
        .services
        .create_flow_run_from_deployment(uuid::Uuid::new_v4(), FlowRunFromDeployment::default())
        .await
    {
        Err(ServiceError::NotFound(m)) => assert_eq!(m, "Deployment not found"),
        other => panic!("expected NotFound, got {other:?}"),
    }
}
