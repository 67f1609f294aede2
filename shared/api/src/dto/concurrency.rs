//! Concurrency limits (v2 and the v1 tag view), slot requests and leases on the wire.

use serde::Deserialize;
use serde_json::{Value, json};
use sluice_core::concurrency::{ConcurrencyLimit, LeaseHolder, Mode, tag_of};
use sluice_core::domain::{Id, Timestamp};

use super::ts;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitCreate {
    pub name: String,
    pub limit: i64,
    #[serde(default = "yes")]
    pub active: bool,
    #[serde(default)]
    pub active_slots: i64,
    #[serde(default)]
    pub denied_slots: i64,
    #[serde(default)]
    pub slot_decay_per_second: f64,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitUpdate {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub limit: Option<i64>,
    #[serde(default)]
    pub active: Option<bool>,
    #[serde(default)]
    pub active_slots: Option<i64>,
    #[serde(default)]
    pub denied_slots: Option<i64>,
    #[serde(default)]
    pub slot_decay_per_second: Option<f64>,
}

#[derive(Debug, Clone, Copy, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ModeBody {
    #[default]
    Concurrency,
    RateLimit,
}

impl From<ModeBody> for Mode {
    fn from(m: ModeBody) -> Mode {
        match m {
            ModeBody::Concurrency => Mode::Concurrency,
            ModeBody::RateLimit => Mode::RateLimit,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HolderKind {
    FlowRun,
    TaskRun,
    Deployment,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HolderBody {
    #[serde(rename = "type")]
    pub kind: HolderKind,
    pub id: Id,
}

impl From<HolderBody> for LeaseHolder {
    fn from(h: HolderBody) -> LeaseHolder {
        let kind = match h.kind {
            HolderKind::FlowRun => "flow_run",
            HolderKind::TaskRun => "task_run",
            HolderKind::Deployment => "deployment",
        };
        LeaseHolder {
            kind: kind.to_owned(),
            id: h.id,
        }
    }
}

/// `increment` and `increment-with-lease` (extra keys are ignored, as Prefect's embedded body
/// parameters are; `create_if_missing` is accepted and, as in Prefect 3, has no effect).
#[derive(Debug, Deserialize)]
pub struct IncrementBody {
    pub names: Vec<String>,
    pub slots: i64,
    #[serde(default)]
    pub mode: ModeBody,
    #[serde(default)]
    pub lease_duration: Option<f64>,
    #[serde(default)]
    pub holder: Option<HolderBody>,
}

#[derive(Debug, Deserialize)]
pub struct DecrementBody {
    pub names: Vec<String>,
    pub slots: i64,
    #[serde(default)]
    pub occupancy_seconds: Option<f64>,
}

#[derive(Debug, Deserialize)]
pub struct LeaseBody {
    pub lease_id: Id,
}

#[derive(Debug, Deserialize, Default)]
pub struct RenewBody {
    #[serde(default)]
    pub lease_duration: Option<f64>,
}

/// v1: `{tag, concurrency_limit}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagLimitCreate {
    pub tag: String,
    pub concurrency_limit: i64,
}

/// v1 increment and decrement: tags and the task run taking or giving back the slots.
#[derive(Debug, Deserialize)]
pub struct TagSlotsBody {
    pub names: Vec<String>,
    pub task_run_id: Id,
}

#[derive(Debug, Deserialize, Default)]
pub struct ResetBody {
    #[serde(default)]
    pub slot_override: Option<Vec<Id>>,
}

/// The whole stored limit: what `POST /v2/concurrency_limits/` answers.
pub fn limit_full_json(l: &ConcurrencyLimit) -> Value {
    json!({
        "id": l.id,
        "created": ts(l.created),
        "updated": ts(l.updated),
        "active": l.active,
        "name": l.name,
        "limit": l.limit,
        "active_slots": l.active_slots,
        "denied_slots": l.denied_slots,
        "slot_decay_per_second": l.slot_decay_per_second,
        "avg_slot_occupancy_seconds": l.avg_slot_occupancy_seconds,
    })
}

/// Prefect's `GlobalConcurrencyLimitResponse`: slots as of `now` (decay applied).
pub fn limit_json(l: &ConcurrencyLimit, now: Timestamp) -> Value {
    json!({
        "id": l.id,
        "created": ts(l.created),
        "updated": ts(l.updated),
        "active": l.active,
        "name": l.name,
        "limit": l.limit,
        "active_slots": l.active_slots_at(now),
        "slot_decay_per_second": l.slot_decay_per_second,
    })
}

/// `MinimalConcurrencyLimitResponse`.
pub fn minimal_json(l: &ConcurrencyLimit) -> Value {
    json!({ "id": l.id, "name": l.name, "limit": l.limit })
}

/// The v1 view of a tag limit: the slots are the task runs holding them.
pub fn tag_limit_json(l: &ConcurrencyLimit, holders: &[Id]) -> Value {
    json!({
        "id": l.id,
        "created": ts(l.created),
        "updated": ts(l.updated),
        "tag": tag_of(&l.name).unwrap_or(&l.name),
        "concurrency_limit": l.limit,
        "active_slots": holders,
    })
}
