//! The test bed: services over a real SQLite file in a temporary directory, driven by a
//! `ManualClock`, plus builders for the objects the tests need.

use std::sync::Arc;

use chrono::{Duration, TimeZone, Utc};
use serde_json::{Value, json};
use sluice_core::domain::{Flow, FlowRun, Id, JsonMap, State, StateType, Timestamp};
use sluice_core::schedules::Schedule;
use sluice_services::{
    DeploymentInput, DeploymentScheduleInput, FlowRunInput, ManualClock, ServiceError, Services,
    Settings, WorkPoolInput,
};
use sluice_store::{FlowRunFilter, FlowRunSort, SqliteStore, Store};

pub struct Env {
    pub services: Services,
    pub clock: Arc<ManualClock>,
    pub store: Arc<dyn Store>,
    _dir: tempfile::TempDir,
}

/// Friday 2026-03-06 12:00:00 UTC (07:00 in New York, two days before DST starts there).
pub fn t0() -> Timestamp {
    Utc.with_ymd_and_hms(2026, 3, 6, 12, 0, 0)
        .single()
        .expect("a valid instant")
}

/// `t0` plus `seconds`.
pub fn at(seconds: i64) -> Timestamp {
    t0() + Duration::seconds(seconds)
}

/// A UTC instant written as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn utc(s: &str) -> Timestamp {
    chrono::DateTime::parse_from_rfc3339(s)
        .expect("an RFC 3339 instant")
        .with_timezone(&Utc)
}

pub fn env() -> Env {
    env_with(Settings::default())
}

pub fn env_with(settings: Settings) -> Env {
    let dir = tempfile::tempdir().expect("temp dir");
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.path().join("sluice.db")).expect("open SQLite store"));
    let clock = Arc::new(ManualClock::new(t0()));
    let services = Services::new(store.clone(), clock.clone(), settings);
    Env {
        services,
        clock,
        store,
        _dir: dir,
    }
}

pub fn map(v: Value) -> JsonMap {
    match v {
        Value::Object(m) => m,
        other => panic!("wanted a JSON object, got {other}"),
    }
}

pub fn cron(expr: &str, timezone: &str) -> Schedule {
    Schedule::from_json(&json!({"cron": expr, "timezone": timezone, "day_or": true}))
        .expect("a valid cron schedule")
}

pub fn interval(seconds: f64, anchor: &str) -> Schedule {
    Schedule::from_json(&json!({"interval": seconds, "anchor_date": anchor, "timezone": "UTC"}))
        .expect("a valid interval schedule")
}

pub fn active(schedule: Schedule) -> DeploymentScheduleInput {
    DeploymentScheduleInput {
        schedule,
        active: true,
        max_scheduled_runs: None,
        parameters: JsonMap::new(),
        slug: None,
    }
}

/// A SCHEDULED state due at `at`, as a client would propose it.
pub fn scheduled(at: Timestamp) -> State {
    State::new(StateType::Scheduled, at).scheduled_at(at)
}

/// A state of `state_type` with its default name (a worker's proposal).
pub fn proposal(state_type: StateType) -> State {
    State::new(state_type, t0())
}

impl Env {
    pub fn set_now(&self, at: Timestamp) {
        self.clock.set(at);
    }

    pub async fn flow(&self, name: &str) -> Id {
        let flow = Flow {
            id: Id::new_v4(),
            created: t0(),
            updated: t0(),
            name: name.to_owned(),
            tags: Vec::new(),
            labels: JsonMap::new(),
        };
        self.store.upsert_flow(&flow).await.expect("flow").value.id
    }

    /// A `process` pool with the type's default template (status NOT_READY, queue `default`).
    pub async fn pool(&self, name: &str) -> sluice_core::domain::WorkPool {
        self.pool_with(WorkPoolInput {
            name: name.to_owned(),
            pool_type: Some("process".to_owned()),
            ..Default::default()
        })
        .await
    }

    pub async fn pool_with(&self, input: WorkPoolInput) -> sluice_core::domain::WorkPool {
        self.services
            .create_work_pool(input)
            .await
            .expect("create pool")
            .0
    }

    /// A deployment of `flow_id` on pool `pool`'s default queue; returns it as stored.
    pub async fn deploy(
        &self,
        flow_id: Id,
        name: &str,
        pool: &str,
        schedules: Vec<DeploymentScheduleInput>,
    ) -> sluice_core::domain::Deployment {
        self.deploy_with(DeploymentInput {
            name: name.to_owned(),
            flow_id: Some(flow_id),
            schedules,
            work_pool_name: Some(pool.to_owned()),
            ..Default::default()
        })
        .await
    }

    pub async fn deploy_with(&self, input: DeploymentInput) -> sluice_core::domain::Deployment {
        self.services
            .upsert_deployment(input)
            .await
            .expect("upsert deployment")
            .value
    }

    /// A run of `flow_id` in `pool`/`queue`, SCHEDULED at `due`.
    pub async fn run_in(&self, flow_id: Id, pool: &str, queue: &str, due: Timestamp) -> FlowRun {
        self.services
            .create_flow_run(FlowRunInput {
                flow_id: Some(flow_id),
                state: Some(scheduled(due)),
                work_pool_name: Some(pool.to_owned()),
                work_queue_name: Some(queue.to_owned()),
                ..Default::default()
            })
            .await
            .expect("create run")
            .value
    }

    pub async fn run(&self, id: Id) -> FlowRun {
        self.services
            .read_flow_run(id)
            .await
            .expect("read run")
            .value
    }

    pub async fn states(&self, id: Id) -> Vec<State> {
        self.store.read_flow_run_states(id).await.expect("states")
    }

    /// Every run of the deployment, by scheduled time then id.
    pub async fn runs_of(&self, deployment_id: Id) -> Vec<FlowRun> {
        let filter = FlowRunFilter {
            deployment_ids: Some(vec![deployment_id]),
            ..Default::default()
        };
        self.store
            .list_flow_runs(&filter, FlowRunSort::NextScheduledStartTimeAsc, None, 0)
            .await
            .expect("list runs")
    }

    /// The deployment's auto-scheduled runs that are still SCHEDULED, by scheduled time.
    pub async fn scheduled_runs_of(&self, deployment_id: Id) -> Vec<FlowRun> {
        let filter = FlowRunFilter {
            deployment_ids: Some(vec![deployment_id]),
            auto_scheduled: Some(true),
            state_types: Some(vec![StateType::Scheduled]),
            ..Default::default()
        };
        self.store
            .list_flow_runs(&filter, FlowRunSort::NextScheduledStartTimeAsc, None, 0)
            .await
            .expect("list runs")
    }

    /// The scheduled times of the deployment's SCHEDULED auto-scheduled runs.
    pub async fn scheduled_times(&self, deployment_id: Id) -> Vec<Timestamp> {
        self.scheduled_runs_of(deployment_id)
            .await
            .iter()
            .map(|r| {
                r.next_scheduled_start_time
                    .expect("a SCHEDULED run has a time")
            })
            .collect()
    }

    /// Removes every unstarted auto-scheduled run of the deployment (a clean slate for a tick).
    pub async fn clear_scheduled(&self, deployment_id: Id) -> usize {
        self.store
            .delete_unstarted_auto_scheduled_runs(deployment_id, None)
            .await
            .expect("delete runs")
            .len()
    }

    /// Proposes a state (not forced) and answers the result.
    pub async fn propose(&self, run: Id, state: State) -> sluice_services::SetStateResult {
        self.services
            .set_flow_run_state(run, state, false)
            .await
            .expect("set state")
    }
}

/// Unwraps the `Invalid` message, failing on anything else.
pub fn invalid_message<T: std::fmt::Debug>(r: Result<T, ServiceError>) -> String {
    match r {
        Err(ServiceError::Invalid(m)) => m,
        other => panic!("expected ServiceError::Invalid, got {other:?}"),
    }
}
