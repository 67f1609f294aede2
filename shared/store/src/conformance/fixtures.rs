//! Builders for the domain objects the checks store, with every timestamp at microsecond
//! precision (what every adapter must round-trip exactly).

use chrono::TimeZone;
use serde_json::json;
use sluice_core::domain::{
    BlockDocument, Deployment, DeploymentSchedule, DeploymentStatus, Flow, FlowRun, Id, JsonMap,
    PoolStatus, State, StateType, Timestamp, Variable, WorkPool, WorkQueue,
};
use sluice_core::schedules::Schedule;

use crate::StoreError;

/// A fixed instant with a microsecond fraction; `at(s)` is `s` seconds later.
pub(super) fn t0() -> Timestamp {
    chrono::Utc
        .with_ymd_and_hms(2026, 3, 1, 12, 0, 0)
        .single()
        .expect("a valid instant")
        + chrono::Duration::microseconds(123_456)
}

pub(super) fn at(seconds: i64) -> Timestamp {
    t0() + chrono::Duration::seconds(seconds)
}

pub(super) fn id() -> Id {
    Id::now_v7()
}

pub(super) fn map(v: serde_json::Value) -> JsonMap {
    match v {
        serde_json::Value::Object(m) => m,
        other => panic!("fixture wants a JSON object, got {other}"),
    }
}

pub(super) fn assert_conflict<T: std::fmt::Debug>(r: Result<T, StoreError>, what: &str) {
    match r {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("{what}: expected Conflict, got {other:?}"),
    }
}

pub(super) fn assert_not_found<T: std::fmt::Debug>(r: Result<T, StoreError>, what: &str) {
    match r {
        Err(StoreError::NotFound(_)) => {}
        other => panic!("{what}: expected NotFound, got {other:?}"),
    }
}

/// A `process` pool (NOT_READY) and its default queue.
pub(super) fn pool(name: &str) -> (WorkPool, WorkQueue) {
    let pool_id = id();
    let queue = WorkQueue {
        id: id(),
        created: t0(),
        updated: t0(),
        name: "default".to_owned(),
        description: "The work pool's default queue.".to_owned(),
        is_paused: false,
        concurrency_limit: None,
        priority: 1,
        work_pool_id: pool_id,
        last_polled: None,
        status: PoolStatus::NotReady,
    };
    let pool = WorkPool {
        id: pool_id,
        created: t0(),
        updated: t0(),
        name: name.to_owned(),
        description: None,
        pool_type: "process".to_owned(),
        base_job_template: json!({}),
        is_paused: false,
        concurrency_limit: None,
        status: Some(PoolStatus::NotReady),
        default_queue_id: Some(queue.id),
        storage_configuration: json!({"bundle_upload_step": null}),
    };
    (pool, queue)
}

pub(super) fn queue(pool_id: Id, name: &str, priority: i64) -> WorkQueue {
    WorkQueue {
        id: id(),
        created: t0(),
        updated: t0(),
        name: name.to_owned(),
        description: String::new(),
        is_paused: false,
        concurrency_limit: None,
        priority,
        work_pool_id: pool_id,
        last_polled: None,
        status: PoolStatus::NotReady,
    }
}

pub(super) fn flow(name: &str) -> Flow {
    Flow {
        id: id(),
        created: t0(),
        updated: t0(),
        name: name.to_owned(),
        tags: Vec::new(),
        labels: JsonMap::new(),
    }
}

/// Prefect's cron schedule JSON, parsed by the domain's own deserializer.
pub(super) fn cron(expr: &str, timezone: &str) -> Schedule {
    serde_json::from_value(json!({"cron": expr, "timezone": timezone, "day_or": true}))
        .expect("a cron schedule in Prefect's JSON shape")
}

pub(super) fn schedule(
    deployment_id: Id,
    schedule: Schedule,
    slug: Option<&str>,
) -> DeploymentSchedule {
    DeploymentSchedule {
        id: id(),
        created: t0(),
        updated: t0(),
        deployment_id,
        schedule,
        active: true,
        max_scheduled_runs: None,
        parameters: JsonMap::new(),
        slug: slug.map(str::to_owned),
    }
}

pub(super) fn deployment(flow_id: Id, name: &str) -> Deployment {
    Deployment {
        id: id(),
        created: t0(),
        updated: t0(),
        name: name.to_owned(),
        version: None,
        version_info: None,
        description: None,
        flow_id,
        paused: false,
        schedules: Vec::new(),
        concurrency_limit: None,
        concurrency_options: None,
        job_variables: JsonMap::new(),
        parameters: JsonMap::new(),
        parameter_openapi_schema: None,
        enforce_parameter_schema: true,
        pull_steps: None,
        path: None,
        entrypoint: None,
        tags: Vec::new(),
        labels: JsonMap::new(),
        work_queue_name: None,
        work_queue_id: None,
        work_pool_name: None,
        last_polled: None,
        status: DeploymentStatus::NotReady,
        storage_document_id: None,
        infrastructure_document_id: None,
        created_by: None,
        updated_by: None,
    }
}

pub(super) fn state(state_type: StateType, name: &str, when: Timestamp) -> State {
    State::new(state_type, when).named(name)
}

/// A run of `flow_id`, SCHEDULED at `at(60)`.
pub(super) fn run(flow_id: Id) -> FlowRun {
    let mut r = FlowRun::new(flow_id, t0());
    r.state = Some(state(StateType::Scheduled, "Scheduled", t0()).scheduled_at(at(60)));
    r.expected_start_time = Some(at(60));
    r.next_scheduled_start_time = Some(at(60));
    r
}

pub(super) fn keyed_run(flow_id: Id, key: &str) -> FlowRun {
    let mut r = run(flow_id);
    r.idempotency_key = Some(key.to_owned());
    r
}

pub(super) fn variable(name: &str, value: serde_json::Value) -> Variable {
    Variable {
        id: id(),
        created: t0(),
        updated: t0(),
        name: name.to_owned(),
        value,
        tags: vec!["env".to_owned()],
    }
}

pub(super) fn block(slug: &str, name: Option<&str>) -> BlockDocument {
    BlockDocument {
        id: id(),
        created: t0(),
        updated: t0(),
        name: name.map(str::to_owned),
        data: json!({"value": name}),
        block_type_slug: slug.to_owned(),
        block_type_id: Some(id()),
        block_schema_id: None,
        is_anonymous: name.is_none(),
    }
}
