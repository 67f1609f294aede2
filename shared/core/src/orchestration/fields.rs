//! Typed reads and writes of the loosely typed JSON the rules consult: a state's `state_details`
//! and a run's `empirical_policy`. Both are kept as JSON objects so unknown keys round-trip, so
//! every accessor here tolerates missing keys, nulls and values of the wrong type.

use chrono::TimeDelta;
use serde_json::Value;

use crate::domain::{JsonMap, State, StateType, Timestamp};
use crate::time::parse_timestamp;

pub(super) const SCHEDULED_TIME: &str = "scheduled_time";
pub(super) const TRANSITION_ID: &str = "transition_id";
pub(super) const LEASE_ID: &str = "deployment_concurrency_lease_id";
pub(super) const FLOW_RUN_ID: &str = "flow_run_id";
pub(super) const TASK_RUN_ID: &str = "task_run_id";
const PAUSE_KEY: &str = "pause_key";
const PAUSE_RESCHEDULE: &str = "pause_reschedule";
const PAUSE_TIMEOUT: &str = "pause_timeout";

/// A state detail, treating null like a missing key (an unset pydantic field serialises as null).
pub(super) fn detail<'a>(state: &'a State, key: &str) -> Option<&'a Value> {
    state.state_details.get(key).filter(|v| !v.is_null())
}

/// Overwrites a detail with `value`, or with null when the source had none, as Prefect's
/// attribute assignment does.
pub(super) fn set_detail(state: &mut State, key: &str, value: Option<Value>) {
    state
        .state_details
        .insert(key.to_owned(), value.unwrap_or(Value::Null));
}

/// Copies `key` from `from` onto `to`, nulling it when `from` has none.
pub(super) fn copy_detail(from: &State, to: &mut State, key: &str) {
    set_detail(to, key, detail(from, key).cloned());
}

pub(super) fn pause_reschedule(state: &State) -> bool {
    detail(state, PAUSE_RESCHEDULE)
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

pub(super) fn pause_timeout(state: &State) -> Option<Timestamp> {
    detail(state, PAUSE_TIMEOUT)
        .and_then(Value::as_str)
        .and_then(parse_timestamp)
}

pub(super) fn pause_key(state: &State) -> Option<String> {
    detail(state, PAUSE_KEY).map(|v| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

/// Both states carry a transition id and they are the same. Ids are UUIDs on the wire, so they
/// are compared as UUIDs when they parse (case and hyphenation do not matter), else as text.
pub(super) fn same_transition_id(a: &State, b: &State) -> bool {
    match (a.transition_id(), b.transition_id()) {
        (Some(x), Some(y)) => match (uuid::Uuid::parse_str(x), uuid::Uuid::parse_str(y)) {
            (Ok(x), Ok(y)) => x == y,
            _ => x == y,
        },
        _ => false,
    }
}

/// Prefect's `_has_persisted_result`: any JSON object whose `type` is not `"unpersisted"` is
/// result metadata pointing at stored data (result records carry storage keys, not values).
pub(super) fn has_persisted_result(data: &Value) -> bool {
    match data {
        Value::Object(m) => m.get("type").and_then(Value::as_str) != Some("unpersisted"),
        _ => false,
    }
}

/// The same test on a current state, which Prefect also requires to be truthy: an empty object
/// counts as no data.
pub(super) fn holds_persisted_result(state: &State) -> bool {
    matches!(&state.data, Value::Object(m) if !m.is_empty()) && has_persisted_result(&state.data)
}

/// COMPLETED with persisted data replaced by COMPLETED without: the stored result would be lost.
pub(super) fn loses_result_data(initial: &State, proposed: &State) -> bool {
    initial.state_type == StateType::Completed
        && proposed.state_type == StateType::Completed
        && holds_persisted_result(initial)
        && !has_persisted_result(&proposed.data)
}

/// An integer policy field; pydantic would coerce an integral float, so we accept one too.
fn policy_int(policy: &JsonMap, key: &str) -> Option<i64> {
    let v = policy.get(key)?;
    v.as_i64().or_else(|| {
        v.as_f64()
            .filter(|f| f.is_finite() && f.fract() == 0.0)
            // Saturating cast: absurd values still order correctly against run counts.
            .map(|f| f as i64)
    })
}

pub(super) fn retries(policy: &JsonMap) -> Option<i64> {
    policy_int(policy, "retries")
}

pub(super) fn retry_delay_seconds(policy: &JsonMap) -> f64 {
    policy
        .get("retry_delay")
        .and_then(Value::as_f64)
        .filter(|f| f.is_finite())
        .unwrap_or(0.0)
}

pub(super) fn resuming(policy: &JsonMap) -> bool {
    policy
        .get("resuming")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

pub(super) fn has_pause_key(policy: &JsonMap, key: &str) -> bool {
    policy
        .get("pause_keys")
        .and_then(Value::as_array)
        .is_some_and(|keys| keys.iter().any(|k| k.as_str() == Some(key)))
}

/// What to do with `empirical_policy.retry_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) enum RetryTypeEdit {
    #[default]
    Keep,
    Clear,
    Set(&'static str),
}

/// A change to `empirical_policy` asked for by a rule. Rules describe changes instead of making
/// them so the engine can drop the changes of a rule whose transition did not happen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct PolicyEdit {
    pub resuming: Option<bool>,
    pub clear_pause_keys: bool,
    pub add_pause_key: Option<String>,
    pub retry_type: RetryTypeEdit,
}

impl PolicyEdit {
    pub(super) fn apply(&self, policy: &mut JsonMap) {
        if let Some(resuming) = self.resuming {
            policy.insert("resuming".to_owned(), Value::Bool(resuming));
        }
        if self.clear_pause_keys {
            policy.insert("pause_keys".to_owned(), Value::Array(Vec::new()));
        }
        if let Some(key) = &self.add_pause_key {
            // pause_keys is a set in Prefect; serialised as a list, kept free of duplicates.
            let entry = policy
                .entry("pause_keys")
                .or_insert_with(|| Value::Array(Vec::new()));
            if !entry.is_array() {
                *entry = Value::Array(Vec::new());
            }
            if let Value::Array(keys) = entry
                && !keys.iter().any(|k| k.as_str() == Some(key))
            {
                keys.push(Value::String(key.clone()));
            }
        }
        match self.retry_type {
            RetryTypeEdit::Keep => {}
            RetryTypeEdit::Clear => {
                policy.insert("retry_type".to_owned(), Value::Null);
            }
            RetryTypeEdit::Set(kind) => {
                policy.insert("retry_type".to_owned(), Value::String(kind.to_owned()));
            }
        }
    }
}

/// `t + seconds`, total: out-of-range results saturate at chrono's limits instead of panicking.
pub(super) fn add_seconds(t: Timestamp, seconds: f64) -> Timestamp {
    // `as` saturates (NaN becomes 0), and TimeDelta::microseconds accepts every i64.
    let delta = TimeDelta::microseconds((seconds * 1e6).round() as i64);
    t.checked_add_signed(delta).unwrap_or(if seconds > 0.0 {
        chrono::DateTime::<chrono::Utc>::MAX_UTC
    } else {
        chrono::DateTime::<chrono::Utc>::MIN_UTC
    })
}

/// `later - earlier` in float seconds, as Prefect's interval columns hold durations.
pub(super) fn seconds_between(later: Timestamp, earlier: Timestamp) -> f64 {
    let d = later - earlier;
    d.num_seconds() as f64 + f64::from(d.subsec_nanos()) / 1e9
}
