//! Work pools, work queues and workers (Prefect §1).

use serde::{Deserialize, Serialize};

use super::{Id, Timestamp};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PoolStatus {
    Ready,
    NotReady,
    Paused,
}

/// Queues share the pool's three statuses.
pub type QueueStatus = PoolStatus;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WorkerStatus {
    Online,
    Offline,
}

impl PoolStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PoolStatus::Ready => "READY",
            PoolStatus::NotReady => "NOT_READY",
            PoolStatus::Paused => "PAUSED",
        }
    }

    pub fn parse(s: &str) -> Option<PoolStatus> {
        match s {
            "READY" => Some(PoolStatus::Ready),
            "NOT_READY" => Some(PoolStatus::NotReady),
            "PAUSED" => Some(PoolStatus::Paused),
            _ => None,
        }
    }
}

impl WorkerStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerStatus::Online => "ONLINE",
            WorkerStatus::Offline => "OFFLINE",
        }
    }

    pub fn parse(s: &str) -> Option<WorkerStatus> {
        match s {
            "ONLINE" => Some(WorkerStatus::Online),
            "OFFLINE" => Some(WorkerStatus::Offline),
            _ => None,
        }
    }
}

/// Push pools are decided purely by the type's suffix, as Prefect's client does.
pub fn is_push_pool_type(pool_type: &str) -> bool {
    pool_type.ends_with(":push")
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkPool {
    pub id: Id,
    pub created: Timestamp,
    pub updated: Timestamp,
    pub name: String,
    pub description: Option<String>,
    /// `process`, `ecs`, `batch`, `ecs:push`, `batch:push`, ... (`prefect-agent` is legacy).
    pub pool_type: String,
    /// `{"job_configuration": ..., "variables": ...}` or `{}`.
    pub base_job_template: serde_json::Value,
    pub is_paused: bool,
    pub concurrency_limit: Option<i64>,
    /// Null for `prefect-agent` pools, which have no status.
    pub status: Option<PoolStatus>,
    pub default_queue_id: Option<Id>,
    pub storage_configuration: serde_json::Value,
}

impl WorkPool {
    pub fn is_push(&self) -> bool {
        is_push_pool_type(&self.pool_type)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkQueue {
    pub id: Id,
    pub created: Timestamp,
    pub updated: Timestamp,
    pub name: String,
    pub description: String,
    pub is_paused: bool,
    pub concurrency_limit: Option<i64>,
    /// 1 is the highest priority; unique within a pool.
    pub priority: i64,
    pub work_pool_id: Id,
    pub last_polled: Option<Timestamp>,
    pub status: QueueStatus,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Worker {
    pub id: Id,
    pub created: Timestamp,
    pub updated: Timestamp,
    pub name: String,
    pub work_pool_id: Id,
    pub last_heartbeat_time: Timestamp,
    pub heartbeat_interval_seconds: Option<i64>,
    pub status: WorkerStatus,
}
