//! Task runs and the events a run's engine reports them with.

use std::collections::BTreeMap;

use super::{Id, JsonMap, State, Timestamp};
use serde::{Deserialize, Serialize};

/// A task run: one call of a task inside a flow run (or on its own). Prefect 3's engine creates
/// them on the client and reports their states as events; the recorder turns those into this.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRun {
    pub id: Id,
    pub created: Timestamp,
    pub updated: Timestamp,
    pub name: String,
    pub flow_run_id: Option<Id>,
    /// With `flow_run_id` and `dynamic_key`, the run's natural key: unique when the flow run is
    /// set, so a create sent twice finds the first run.
    pub task_key: String,
    pub dynamic_key: String,
    pub tags: Vec<String>,
    pub state: Option<State>,
    pub run_count: i64,
    pub expected_start_time: Option<Timestamp>,
    pub start_time: Option<Timestamp>,
    pub end_time: Option<Timestamp>,
    /// Every other field of Prefect's task run as the client sent it (`cache_key`,
    /// `empirical_policy`, `task_inputs`, `labels`, `total_run_time`, ...), answered back as is.
    pub fields: JsonMap,
    /// Bumped by every stored change; state changes through the API are conditional on it.
    pub version: i64,
}

impl TaskRun {
    /// The time of the current state: the recorder keeps the newest.
    pub fn state_timestamp(&self) -> Option<Timestamp> {
        self.state.as_ref().map(|s| s.timestamp)
    }
}

/// A resource an event is about: labels, among them `prefect.resource.id`.
pub type Resource = BTreeMap<String, String>;

/// Something that happened, as Prefect's events carry it. `id` is the client's: an event sent
/// twice (a client resends what the server did not confirm) is the same event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: Id,
    pub occurred: Timestamp,
    pub event: String,
    pub resource: Resource,
    #[serde(default)]
    pub related: Vec<Resource>,
    #[serde(default)]
    pub payload: JsonMap,
    #[serde(default)]
    pub follows: Option<Id>,
    /// When the server took it in.
    pub received: Timestamp,
}

impl Event {
    /// The resource's id (`prefect.resource.id`).
    pub fn resource_id(&self) -> &str {
        self.resource
            .get("prefect.resource.id")
            .map_or("", String::as_str)
    }

    /// The first related resource with `role`.
    pub fn related_in_role(&self, role: &str) -> Option<&Resource> {
        self.related
            .iter()
            .find(|r| r.get("prefect.resource.role").is_some_and(|v| v == role))
    }
}
