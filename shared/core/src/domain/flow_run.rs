//! Flow runs (Prefect §6.2).

use super::{Id, JsonMap, State, StateType, Timestamp};
use serde::{Deserialize, Serialize};

/// Who made a run: for scheduled runs, the schedule (`type: "SCHEDULE"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreatedBy {
    pub id: Option<Id>,
    pub created_by_type: Option<String>,
    pub display_value: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowRun {
    pub id: Id,
    pub created: Timestamp,
    pub updated: Timestamp,
    pub name: String,
    pub flow_id: Id,
    pub deployment_id: Option<Id>,
    pub deployment_version: Option<String>,
    pub work_queue_id: Option<Id>,
    pub work_queue_name: Option<String>,
    pub work_pool_id: Option<Id>,
    pub work_pool_name: Option<String>,
    pub flow_version: Option<String>,
    pub parameters: JsonMap,
    /// Unique together with `flow_id`: a second create with the same key returns the first run.
    pub idempotency_key: Option<String>,
    pub context: JsonMap,
    /// `{retries, retry_delay, pause_keys, resuming, retry_type}`, kept verbatim.
    pub empirical_policy: JsonMap,
    pub tags: Vec<String>,
    pub labels: JsonMap,
    pub parent_task_run_id: Option<Id>,
    pub state: Option<State>,
    pub run_count: i64,
    pub expected_start_time: Option<Timestamp>,
    pub next_scheduled_start_time: Option<Timestamp>,
    pub start_time: Option<Timestamp>,
    pub end_time: Option<Timestamp>,
    /// Seconds spent in RUNNING, summed over every visit.
    pub total_run_time: f64,
    pub auto_scheduled: bool,
    pub infrastructure_document_id: Option<Id>,
    pub infrastructure_pid: Option<String>,
    pub created_by: Option<CreatedBy>,
    /// Run-level job variable overrides (null when none were given).
    pub job_variables: Option<JsonMap>,
}

impl FlowRun {
    pub fn state_type(&self) -> Option<StateType> {
        self.state.as_ref().map(|s| s.state_type)
    }

    pub fn state_name(&self) -> Option<&str> {
        self.state.as_ref().map(|s| s.name.as_str())
    }

    /// Seconds run so far: the time summed in RUNNING, plus the current visit if it is
    /// running now (Prefect's `estimated_run_time`).
    pub fn estimated_run_time(&self, now: Timestamp) -> f64 {
        match &self.state {
            Some(s) if s.state_type == StateType::Running && now > s.timestamp => {
                self.total_run_time + seconds(now - s.timestamp)
            }
            _ => self.total_run_time,
        }
    }

    /// Seconds late: how much later than expected it started, or, for a run that has not
    /// started and is not finished, how long past its expected start it is now (Prefect's
    /// `estimated_start_time_delta`).
    pub fn estimated_start_time_delta(&self, now: Timestamp) -> f64 {
        match (self.start_time, self.expected_start_time) {
            (Some(start), Some(expected)) if start > expected => seconds(start - expected),
            (Some(_), _) => 0.0,
            (None, Some(expected))
                if expected < now && !self.state_type().is_some_and(StateType::is_terminal) =>
            {
                seconds(now - expected)
            }
            (None, _) => 0.0,
        }
    }

    /// A run with no state yet; callers set the initial state through orchestration.
    pub fn new(flow_id: Id, now: Timestamp) -> FlowRun {
        FlowRun {
            id: uuid::Uuid::now_v7(),
            created: now,
            updated: now,
            name: super::random_run_name(),
            flow_id,
            deployment_id: None,
            deployment_version: None,
            work_queue_id: None,
            work_queue_name: None,
            work_pool_id: None,
            work_pool_name: None,
            flow_version: None,
            parameters: JsonMap::new(),
            idempotency_key: None,
            context: JsonMap::new(),
            empirical_policy: JsonMap::new(),
            tags: Vec::new(),
            labels: JsonMap::new(),
            parent_task_run_id: None,
            state: None,
            run_count: 0,
            expected_start_time: None,
            next_scheduled_start_time: None,
            start_time: None,
            end_time: None,
            total_run_time: 0.0,
            auto_scheduled: false,
            infrastructure_document_id: None,
            infrastructure_pid: None,
            created_by: None,
            job_variables: None,
        }
    }
}

fn seconds(d: chrono::Duration) -> f64 {
    d.num_microseconds()
        .map_or(d.num_seconds() as f64, |us| us as f64 / 1e6)
}
