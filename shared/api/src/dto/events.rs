//! Events on the wire (Prefect's `Event` in, `ReceivedEvent` out).

use serde::Deserialize;
use serde_json::{Value, json};
use sluice_core::domain::{Event, Id, JsonMap, Resource, Timestamp};

use super::ts;

/// Prefect's `Event` as a client sends it.
#[derive(Debug, Deserialize)]
pub struct EventIn {
    #[serde(deserialize_with = "super::timestamp")]
    pub occurred: Option<Timestamp>,
    pub event: String,
    pub resource: Resource,
    #[serde(default)]
    pub related: Vec<Resource>,
    #[serde(default)]
    pub payload: JsonMap,
    pub id: Id,
    #[serde(default)]
    pub follows: Option<Id>,
}

impl EventIn {
    /// The event as received `now`; `Err` says what is wrong with it.
    pub fn received(self, now: Timestamp) -> Result<Event, String> {
        if self.event.is_empty() || self.event.len() > 1024 {
            return Err("event must be a name of 1 to 1024 characters".to_owned());
        }
        if !self.resource.contains_key("prefect.resource.id") {
            return Err("resource must have a prefect.resource.id".to_owned());
        }
        if let Some(i) = self.related.iter().position(|r| {
            !r.contains_key("prefect.resource.id") || !r.contains_key("prefect.resource.role")
        }) {
            return Err(format!(
                "related[{i}] must have a prefect.resource.id and a prefect.resource.role"
            ));
        }
        Ok(Event {
            id: self.id,
            occurred: self.occurred.ok_or("occurred is required")?,
            event: self.event,
            resource: self.resource,
            related: self.related,
            payload: self.payload,
            follows: self.follows,
            received: now,
        })
    }
}

/// Parses one event from JSON text (a WebSocket message).
pub fn parse_event(text: &str, now: Timestamp) -> Result<Event, String> {
    serde_json::from_str::<EventIn>(text)
        .map_err(|e| e.to_string())?
        .received(now)
}

/// A stored event as Prefect answers it (`ReceivedEvent`).
pub fn event_json(e: &Event) -> Value {
    json!({
        "occurred": ts(e.occurred),
        "event": e.event,
        "resource": e.resource,
        "related": e.related,
        "payload": e.payload,
        "id": e.id,
        "follows": e.follows,
        "received": ts(e.received),
    })
}
