//! Domain types: the objects of Prefect's model, with Prefect's field names.
//!
//! These are neither API bodies nor stored items. The API crate has its own DTOs and each store
//! adapter its own row/item layout; both convert to and from these types explicitly, so the wire
//! contract and the storage layout can change independently of the rules.

mod deployment;
mod flow_run;
mod misc;
mod names;
mod state;
mod task_run;
mod work_pool;

pub use deployment::{Deployment, DeploymentSchedule, DeploymentStatus};
pub use flow_run::{CreatedBy, FlowRun};
pub use misc::{ApiKey, Artifact, BlockDocument, BlockSchema, BlockType, Flow, LogEntry, Variable};
pub use names::{NameError, random_run_name, validate_name, validate_variable_name};
pub use state::{State, StateType};
pub use task_run::{Event, Resource, TaskRun};
pub use work_pool::{
    PoolStatus, QueueStatus, WorkPool, WorkQueue, Worker, WorkerStatus, is_push_pool_type,
};

/// Every object's id. Runs and states use UUIDv7 (time ordered), as Prefect does.
pub type Id = uuid::Uuid;
/// Every timestamp is UTC internally; zones matter only for schedules.
pub type Timestamp = chrono::DateTime<chrono::Utc>;
/// A JSON object, the shape of parameters, job variables, labels and the like.
pub type JsonMap = serde_json::Map<String, serde_json::Value>;

/// For `Option<Value>` fields where JSON null is a value: a present field (null included) is
/// `Some`, an absent one `None` (with `skip_serializing_if = "Option::is_none"` on the way out).
pub(crate) fn present<'de, D>(deserializer: D) -> Result<Option<serde_json::Value>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    serde::Deserialize::deserialize(deserializer).map(Some)
}
