//! Query objects the ports accept. Each field narrows the result; `None` means "any".

use sluice_core::domain::{DeploymentStatus, Id, StateType, Timestamp, WorkerStatus};

#[derive(Debug, Clone, Default)]
pub struct WorkPoolFilter {
    pub ids: Option<Vec<Id>>,
    pub names: Option<Vec<String>>,
    pub types: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default)]
pub struct WorkerFilter {
    pub statuses: Option<Vec<WorkerStatus>>,
    pub not_statuses: Option<Vec<WorkerStatus>>,
    pub last_heartbeat_before: Option<Timestamp>,
    pub last_heartbeat_after: Option<Timestamp>,
}

/// Artifacts: every set field must hold; lists match any of their values.
#[derive(Debug, Clone, Default)]
pub struct ArtifactFilter {
    pub ids: Option<Vec<Id>>,
    pub keys: Option<Vec<String>>,
    /// Case-insensitive substring of the key.
    pub key_like: Option<String>,
    /// `Some(true)`: only keyed artifacts; `Some(false)`: only unkeyed ones.
    pub key_exists: Option<bool>,
    pub flow_run_ids: Option<Vec<Id>>,
    pub task_run_ids: Option<Vec<Id>>,
    pub types: Option<Vec<String>>,
    pub not_types: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default)]
pub struct FlowFilter {
    pub ids: Option<Vec<Id>>,
    pub names: Option<Vec<String>>,
    /// Substring match on the name.
    pub name_like: Option<String>,
    pub tags_all: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default)]
pub struct DeploymentFilter {
    pub ids: Option<Vec<Id>>,
    pub names: Option<Vec<String>>,
    pub name_like: Option<String>,
    pub flow_ids: Option<Vec<Id>>,
    pub paused: Option<bool>,
    pub status: Option<DeploymentStatus>,
    pub tags_all: Option<Vec<String>>,
    pub work_queue_ids: Option<Vec<Id>>,
    pub work_pool_names: Option<Vec<String>>,
    /// Only deployments with at least one active schedule.
    pub has_active_schedule: Option<bool>,
    /// Deployments whose `updated` is at or after this instant.
    pub updated_after: Option<Timestamp>,
    /// Keyset paging by id for batch jobs: only ids strictly greater (and ordered by id).
    pub id_after: Option<Id>,
    pub sort: DeploymentSort,
}

/// Orders of deployments, as Prefect names them; ties are broken by id.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DeploymentSort {
    #[default]
    NameAsc,
    NameDesc,
    CreatedDesc,
    UpdatedDesc,
}

impl DeploymentSort {
    pub fn parse(name: &str) -> Option<DeploymentSort> {
        Some(match name {
            "NAME_ASC" => DeploymentSort::NameAsc,
            "NAME_DESC" => DeploymentSort::NameDesc,
            "CREATED_DESC" => DeploymentSort::CreatedDesc,
            "UPDATED_DESC" => DeploymentSort::UpdatedDesc,
            _ => return None,
        })
    }
}

/// Runs without the sort key come last in either direction; ties are broken by id (in the sort's
/// direction) so paging is stable. The START_TIME sorts fall back to `expected_start_time` for
/// runs that have not started, as Prefect's do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FlowRunSort {
    #[default]
    IdDesc,
    ExpectedStartTimeAsc,
    ExpectedStartTimeDesc,
    NextScheduledStartTimeAsc,
    StartTimeAsc,
    StartTimeDesc,
    EndTimeDesc,
    NameAsc,
    NameDesc,
}

/// Every set field must hold. A list matches any of its values (an empty list matches nothing);
/// `not_*` lists also keep runs where the field is unset; `*_before`/`*_after` are inclusive.
#[derive(Debug, Clone, Default)]
pub struct FlowRunFilter {
    pub ids: Option<Vec<Id>>,
    pub not_ids: Option<Vec<Id>>,
    pub names: Option<Vec<String>>,
    pub name_like: Option<String>,
    pub flow_ids: Option<Vec<Id>>,
    pub deployment_ids: Option<Vec<Id>>,
    /// `Some(true)`: only runs without a deployment; `Some(false)`: only runs with one.
    pub deployment_id_is_null: Option<bool>,
    pub work_queue_ids: Option<Vec<Id>>,
    pub work_queue_names: Option<Vec<String>>,
    pub work_pool_ids: Option<Vec<Id>>,
    pub work_pool_names: Option<Vec<String>>,
    pub state_types: Option<Vec<StateType>>,
    pub not_state_types: Option<Vec<StateType>>,
    pub state_names: Option<Vec<String>>,
    pub not_state_names: Option<Vec<String>>,
    pub tags_all: Option<Vec<String>>,
    pub tags_any: Option<Vec<String>>,
    pub auto_scheduled: Option<bool>,
    pub run_count: Option<i64>,
    pub idempotency_keys: Option<Vec<String>>,
    pub parent_task_run_ids: Option<Vec<Id>>,
    pub created_by_ids: Option<Vec<Id>>,
    pub expected_start_time_before: Option<Timestamp>,
    pub expected_start_time_after: Option<Timestamp>,
    /// Inclusive bounds on `next_scheduled_start_time`.
    pub next_scheduled_start_time_before: Option<Timestamp>,
    pub next_scheduled_start_time_after: Option<Timestamp>,
    pub start_time_before: Option<Timestamp>,
    pub start_time_after: Option<Timestamp>,
    pub start_time_is_null: Option<bool>,
    /// Excludes runs whose `empirical_policy.retry_type` is `in_process` (their own process
    /// retries them; no worker may pick them up).
    pub exclude_in_process_retries: bool,
}

#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    pub flow_run_ids: Option<Vec<Id>>,
    pub task_run_ids: Option<Vec<Id>>,
    pub level_ge: Option<i64>,
    pub level_le: Option<i64>,
    pub timestamp_before: Option<Timestamp>,
    pub timestamp_after: Option<Timestamp>,
    /// Newest first when true; oldest first otherwise.
    pub newest_first: bool,
}

/// Task runs: every set field must hold; lists match any of their values, `tags_all` all.
#[derive(Debug, Clone, Default)]
pub struct TaskRunFilter {
    pub ids: Option<Vec<Id>>,
    pub not_ids: Option<Vec<Id>>,
    pub names: Option<Vec<String>>,
    /// Case-insensitive substring of the name.
    pub name_like: Option<String>,
    pub flow_run_ids: Option<Vec<Id>>,
    /// `Some(true)`: only runs outside any flow run; `Some(false)`: only runs inside one.
    pub flow_run_is_null: Option<bool>,
    pub tags_all: Option<Vec<String>>,
    pub state_types: Option<Vec<StateType>>,
    pub state_names: Option<Vec<String>>,
    pub start_time_before: Option<Timestamp>,
    pub start_time_after: Option<Timestamp>,
    /// `Some(true)`: only runs that never started.
    pub start_time_is_null: Option<bool>,
    pub expected_start_time_before: Option<Timestamp>,
    pub expected_start_time_after: Option<Timestamp>,
}

/// Orders of task runs, as Prefect names them; ties are broken by id.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TaskRunSort {
    #[default]
    IdDesc,
    ExpectedStartTimeAsc,
    ExpectedStartTimeDesc,
    NameAsc,
    NameDesc,
    EndTimeDesc,
}

/// Events: every set field must hold. `occurred_*` bound the time (inclusive).
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub occurred_since: Option<Timestamp>,
    pub occurred_until: Option<Timestamp>,
    pub ids: Option<Vec<Id>>,
    /// Event names (`prefect.flow-run.Completed`); `event_prefixes`: names starting with one.
    pub names: Option<Vec<String>>,
    pub prefixes: Option<Vec<String>>,
    pub exclude_names: Option<Vec<String>>,
    pub exclude_prefixes: Option<Vec<String>>,
    /// The resource's `prefect.resource.id` is one of these / starts with one of these.
    pub resource_ids: Option<Vec<String>>,
    pub resource_id_prefixes: Option<Vec<String>>,
    /// Some related resource's id is one of these.
    pub related_ids: Option<Vec<String>>,
    /// The resource or a related one has one of these ids / an id starting with one of these.
    pub any_resource_ids: Option<Vec<String>>,
    pub any_resource_id_prefixes: Option<Vec<String>>,
    /// Newest first (the default) or oldest first.
    pub ascending: bool,
}
