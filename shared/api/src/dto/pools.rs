//! Work pools, queues and workers on the wire.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sluice_core::domain::{Id, Timestamp, WorkPool, WorkQueue, Worker};

use super::{lax_int, nullable, nullable_timestamp, timestamp, ts, ts_opt};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkPoolCreate {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default, rename = "type")]
    pub pool_type: Option<String>,
    #[serde(default)]
    pub base_job_template: Option<Value>,
    #[serde(default)]
    pub is_paused: bool,
    #[serde(default)]
    pub concurrency_limit: Option<i64>,
    #[serde(default)]
    pub storage_configuration: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkPoolUpdate {
    #[serde(default, deserialize_with = "nullable")]
    pub description: Option<Option<String>>,
    #[serde(default)]
    pub is_paused: Option<bool>,
    #[serde(default)]
    pub base_job_template: Option<Value>,
    #[serde(default, deserialize_with = "nullable")]
    pub concurrency_limit: Option<Option<i64>>,
    #[serde(default)]
    pub storage_configuration: Option<Value>,
}

#[derive(Debug, Serialize)]
pub struct WorkPoolResponse {
    pub id: Id,
    pub created: String,
    pub updated: String,
    pub name: String,
    pub description: Option<String>,
    #[serde(rename = "type")]
    pub pool_type: String,
    pub base_job_template: Value,
    pub is_paused: bool,
    pub concurrency_limit: Option<i64>,
    pub status: Option<&'static str>,
    pub default_queue_id: Option<Id>,
    pub storage_configuration: Value,
    /// Runs in PENDING or RUNNING when the pool has a concurrency limit, else null.
    pub active_slots: Option<usize>,
    /// Sluice extra: template warnings (declared variables the job configuration never uses),
    /// present only on create/update answers.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl From<WorkPool> for WorkPoolResponse {
    fn from(p: WorkPool) -> WorkPoolResponse {
        WorkPoolResponse {
            id: p.id,
            created: ts(p.created),
            updated: ts(p.updated),
            name: p.name,
            description: p.description,
            pool_type: p.pool_type,
            base_job_template: p.base_job_template,
            is_paused: p.is_paused,
            concurrency_limit: p.concurrency_limit,
            status: p.status.map(|s| s.as_str()),
            default_queue_id: p.default_queue_id,
            storage_configuration: p.storage_configuration,
            active_slots: None,
            warnings: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkQueueCreate {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub is_paused: bool,
    #[serde(default)]
    pub concurrency_limit: Option<i64>,
    #[serde(default)]
    pub priority: Option<i64>,
    /// Prefect's deprecated 2.x queue filter. The stock client's `create_work_queue` always
    /// sends it (as null); a non-null filter is refused, since Sluice does not apply it.
    #[serde(default)]
    pub filter: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkQueueUpdate {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub description: Option<Option<String>>,
    #[serde(default)]
    pub is_paused: Option<bool>,
    #[serde(default, deserialize_with = "nullable")]
    pub concurrency_limit: Option<Option<i64>>,
    #[serde(default)]
    pub priority: Option<i64>,
    #[serde(default, deserialize_with = "nullable_timestamp")]
    pub last_polled: Option<Option<Timestamp>>,
    /// As on create: accepted when null, refused otherwise.
    #[serde(default)]
    pub filter: Option<Value>,
}

#[derive(Debug, Serialize)]
pub struct WorkQueueResponse {
    pub id: Id,
    pub created: String,
    pub updated: String,
    pub name: String,
    pub description: String,
    pub is_paused: bool,
    pub concurrency_limit: Option<i64>,
    pub priority: i64,
    pub work_pool_id: Id,
    pub work_pool_name: Option<String>,
    pub filter: Option<Value>,
    pub last_polled: Option<String>,
    pub status: &'static str,
    /// Runs in PENDING, RUNNING or CANCELLING when the queue has a concurrency limit.
    pub active_slots: Option<usize>,
}

impl WorkQueueResponse {
    pub fn new(q: WorkQueue, pool_name: Option<String>) -> WorkQueueResponse {
        WorkQueueResponse {
            id: q.id,
            created: ts(q.created),
            updated: ts(q.updated),
            name: q.name,
            description: q.description,
            is_paused: q.is_paused,
            concurrency_limit: q.concurrency_limit,
            priority: q.priority,
            work_pool_id: q.work_pool_id,
            work_pool_name: pool_name,
            filter: None,
            last_polled: ts_opt(q.last_polled),
            status: q.status.as_str(),
            active_slots: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerHeartbeat {
    pub name: String,
    #[serde(default, deserialize_with = "lax_int")]
    pub heartbeat_interval_seconds: Option<i64>,
    /// Sent by newer clients (Cloud); accepted and ignored.
    #[serde(default)]
    pub metadata: Option<Value>,
    #[serde(default)]
    pub return_id: Option<bool>,
}

#[derive(Debug, Serialize)]
pub struct WorkerResponse {
    pub id: Id,
    pub created: String,
    pub updated: String,
    pub name: String,
    pub work_pool_id: Id,
    pub last_heartbeat_time: String,
    pub heartbeat_interval_seconds: Option<i64>,
    pub status: &'static str,
}

impl From<Worker> for WorkerResponse {
    fn from(w: Worker) -> WorkerResponse {
        WorkerResponse {
            id: w.id,
            created: ts(w.created),
            updated: ts(w.updated),
            name: w.name,
            work_pool_id: w.work_pool_id,
            last_heartbeat_time: ts(w.last_heartbeat_time),
            heartbeat_interval_seconds: w.heartbeat_interval_seconds,
            status: w.status.as_str(),
        }
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct GetScheduledFlowRuns {
    #[serde(default)]
    pub work_queue_names: Option<Vec<String>>,
    #[serde(default, deserialize_with = "timestamp")]
    pub scheduled_before: Option<Timestamp>,
    #[serde(default, deserialize_with = "timestamp")]
    pub scheduled_after: Option<Timestamp>,
    #[serde(default)]
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize)]
pub struct WorkerFlowRunResponse {
    pub work_pool_id: Id,
    pub work_queue_id: Id,
    pub flow_run: Value,
}
