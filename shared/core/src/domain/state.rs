//! Flow-run states (Prefect's `server/schemas/states.py`).

use serde::{Deserialize, Serialize};

use super::{Id, Timestamp};

/// Prefect's state types. The type drives orchestration; the name is a refinement within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StateType {
    Scheduled,
    Pending,
    Running,
    Completed,
    Failed,
    Cancelled,
    Crashed,
    Paused,
    Cancelling,
}

impl StateType {
    pub const ALL: [StateType; 9] = [
        StateType::Scheduled,
        StateType::Pending,
        StateType::Running,
        StateType::Completed,
        StateType::Failed,
        StateType::Cancelled,
        StateType::Crashed,
        StateType::Paused,
        StateType::Cancelling,
    ];

    /// COMPLETED, FAILED, CANCELLED and CRASHED end a run.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            StateType::Completed | StateType::Failed | StateType::Cancelled | StateType::Crashed
        )
    }

    /// The wire spelling, e.g. `SCHEDULED`.
    pub fn as_str(self) -> &'static str {
        match self {
            StateType::Scheduled => "SCHEDULED",
            StateType::Pending => "PENDING",
            StateType::Running => "RUNNING",
            StateType::Completed => "COMPLETED",
            StateType::Failed => "FAILED",
            StateType::Cancelled => "CANCELLED",
            StateType::Crashed => "CRASHED",
            StateType::Paused => "PAUSED",
            StateType::Cancelling => "CANCELLING",
        }
    }

    /// The default name of a state of this type: the type in title case (`Pending`).
    pub fn default_name(self) -> &'static str {
        match self {
            StateType::Scheduled => "Scheduled",
            StateType::Pending => "Pending",
            StateType::Running => "Running",
            StateType::Completed => "Completed",
            StateType::Failed => "Failed",
            StateType::Cancelled => "Cancelled",
            StateType::Crashed => "Crashed",
            StateType::Paused => "Paused",
            StateType::Cancelling => "Cancelling",
        }
    }

    pub fn parse(s: &str) -> Option<StateType> {
        StateType::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

impl std::fmt::Display for StateType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One state of a flow run. `state_details` is kept as a JSON object because clients put many
/// optional fields there (`scheduled_time`, `transition_id`, `pause_key`, lease ids, ...) and
/// expect them back verbatim; the typed accessors below read the ones the rules need.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub id: Id,
    pub state_type: StateType,
    pub name: String,
    pub timestamp: Timestamp,
    pub message: Option<String>,
    pub data: serde_json::Value,
    pub state_details: super::JsonMap,
}

impl State {
    /// A fresh state of `state_type` with its default name, stamped `now`.
    pub fn new(state_type: StateType, now: Timestamp) -> State {
        State {
            id: uuid::Uuid::now_v7(),
            state_type,
            name: state_type.default_name().to_owned(),
            timestamp: now,
            message: None,
            data: serde_json::Value::Null,
            state_details: super::JsonMap::new(),
        }
    }

    pub fn named(mut self, name: &str) -> State {
        name.clone_into(&mut self.name);
        self
    }

    pub fn with_message(mut self, message: impl Into<String>) -> State {
        self.message = Some(message.into());
        self
    }

    pub fn scheduled_at(mut self, at: Timestamp) -> State {
        self.set_scheduled_time(Some(at));
        self
    }

    /// `state_details.scheduled_time`, when present and parseable.
    pub fn scheduled_time(&self) -> Option<Timestamp> {
        self.state_details
            .get("scheduled_time")
            .and_then(|v| v.as_str())
            .and_then(crate::time::parse_timestamp)
    }

    pub fn set_scheduled_time(&mut self, at: Option<Timestamp>) {
        let value = match at {
            Some(t) => serde_json::Value::String(crate::time::format_timestamp(t)),
            None => serde_json::Value::Null,
        };
        self.state_details
            .insert("scheduled_time".to_owned(), value);
    }

    /// `state_details.transition_id`, the client's idempotency token for one proposal.
    pub fn transition_id(&self) -> Option<&str> {
        self.state_details
            .get("transition_id")
            .and_then(|v| v.as_str())
    }

    pub fn is_terminal(&self) -> bool {
        self.state_type.is_terminal()
    }
}
