//! The scheduler function over DynamoDB, invoked in-process with the EventBridge fixture from
//! `infra/events/`: overlapping invocations create each scheduled run once.
//!
//! Needs an AWS endpoint (see `sluice_tests::aws`); skipped with a notice without one.

use std::collections::BTreeSet;

use aws_lambda_events::eventbridge::EventBridgeEvent;
use axum::http::StatusCode;
use lambda_runtime::LambdaEvent;
use serde_json::{Value, json};
use sluice_fn_scheduler::{Outcome, SchedulerCounts, Summary};
use sluice_store::RunStore;
use sluice_store_dynamodb::Retention;
use sluice_tests::aws::{
    TestTable, aws_available, fixture, http_event, invoke_http, lambda_context,
};

fn tick_event() -> LambdaEvent<EventBridgeEvent> {
    let payload: EventBridgeEvent =
        serde_json::from_value(fixture("scheduler-tick.json")).expect("an EventBridge event");
    assert_eq!(payload.detail_type, "Scheduled Event");
    LambdaEvent::new(payload, lambda_context())
}

fn runs_created(summary: &Summary) -> usize {
    match &summary.scheduler {
        Outcome::Done(SchedulerCounts { runs_created, .. }) => *runs_created,
        other => panic!("the scheduler tick did not finish: {other:?}"),
    }
}

async fn call(router: &axum::Router, path: &str, body: Value) -> (StatusCode, Value) {
    let event = http_event(
        &fixture("api-create-work-pool.json"),
        "POST",
        path,
        Some(&body),
    );
    let answer = invoke_http(router, event).await;
    (answer.status, answer.body)
}

/// The deployment's SCHEDULED runs, as (id, idempotency key).
async fn scheduled_runs(router: &axum::Router, deployment_id: &Value) -> Vec<(String, String)> {
    let (s, runs) = call(
        router,
        "/api/flow_runs/filter",
        json!({"flow_runs": {"deployment_id": {"any_": [deployment_id]},
                             "state": {"type": {"any_": ["SCHEDULED"]}}}}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{runs}");
    runs.as_array()
        .expect("a list")
        .iter()
        .map(|r| {
            (
                r["id"].as_str().expect("an id").to_owned(),
                r["idempotency_key"].as_str().expect("a key").to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn overlapping_invocations_create_each_scheduled_run_once() {
    if !aws_available("overlapping_invocations_create_each_scheduled_run_once") {
        return;
    }
    let table = TestTable::create().await;
    let config = sluice_fn_scheduler::Config {
        table: table.name().to_owned(),
        retention: Retention::default(),
    };
    let api = sluice_fn_api::app(&sluice_fn_api::Config {
        table: table.name().to_owned(),
        auth: sluice_fn_api::Auth::None,
        retention: Retention::default(),
        dispatch_queue_url: None,
    })
    .await;

    // An hourly deployment, through the api function. Creating it schedules its first runs at
    // once (the same code a tick runs), which tells how many runs one tick makes.
    let created = invoke_http(&api, fixture("api-create-work-pool.json")).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.raw);
    let (s, flow) = call(&api, "/api/flows/", json!({"name": "hourly-etl"})).await;
    assert!(s.is_success(), "{flow}");
    let (s, deployment) = call(
        &api,
        "/api/deployments/",
        json!({"flow_id": flow["id"], "name": "hourly", "work_pool_name": "fixture-pool",
               "schedules": [{"schedule": {"interval": 3600}, "active": true}]}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{deployment}");
    let deployment_id = deployment["id"].clone();
    let first = scheduled_runs(&api, &deployment_id).await;
    let per_tick = first.len();
    assert!(
        per_tick >= 3,
        "Prefect keeps at least 3 runs ahead: {first:?}"
    );
    let expected_keys: BTreeSet<String> = first.iter().map(|(_, k)| k.clone()).collect();
    assert_eq!(expected_keys.len(), per_tick);

    // Drop them, so the ticks below have exactly that work to do again.
    let id: uuid::Uuid = deployment_id
        .as_str()
        .expect("an id")
        .parse()
        .expect("a uuid");
    table
        .store
        .delete_unstarted_auto_scheduled_runs(id, None)
        .await
        .expect("delete the runs");
    assert!(scheduled_runs(&api, &deployment_id).await.is_empty());

    // Two execution environments invoked at the same moment by the same schedule event.
    let a = sluice_fn_scheduler::services(&config).await;
    let b = sluice_fn_scheduler::services(&config).await;
    let (ra, rb) = tokio::join!(
        sluice_fn_scheduler::handle(&a, tick_event()),
        sluice_fn_scheduler::handle(&b, tick_event()),
    );
    let (ra, rb) = (ra.expect("invocation a"), rb.expect("invocation b"));
    assert_eq!(
        runs_created(&ra) + runs_created(&rb),
        per_tick,
        "each run is reported created once: {ra:?} {rb:?}"
    );

    let after = scheduled_runs(&api, &deployment_id).await;
    let keys: BTreeSet<String> = after.iter().map(|(_, k)| k.clone()).collect();
    let ids: BTreeSet<&String> = after.iter().map(|(id, _)| id).collect();
    assert_eq!(after.len(), per_tick, "{after:?}");
    assert_eq!(keys.len(), after.len(), "no duplicate keys: {after:?}");
    assert_eq!(ids.len(), after.len());
    assert_eq!(keys, expected_keys, "the same runs a single pass makes");

    // A third invocation finds the schedule stocked.
    let rc = sluice_fn_scheduler::handle(&a, tick_event())
        .await
        .expect("invocation c");
    assert_eq!(runs_created(&rc), 0, "{rc:?}");
    assert!(matches!(rc.late_runs, Outcome::Done(_)), "{rc:?}");
    assert!(matches!(rc.foreman, Outcome::Done(_)), "{rc:?}");
    assert_eq!(scheduled_runs(&api, &deployment_id).await.len(), per_tick);

    table.delete().await;
}
