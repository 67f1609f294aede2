//! Deployments and their schedules (Prefect §7).

use serde::{Deserialize, Serialize};

use super::{Id, JsonMap, Timestamp};
use crate::schedules::Schedule;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeploymentStatus {
    Ready,
    NotReady,
}

impl DeploymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentStatus::Ready => "READY",
            DeploymentStatus::NotReady => "NOT_READY",
        }
    }

    pub fn parse(s: &str) -> Option<DeploymentStatus> {
        match s {
            "READY" => Some(DeploymentStatus::Ready),
            "NOT_READY" => Some(DeploymentStatus::NotReady),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentSchedule {
    pub id: Id,
    pub created: Timestamp,
    pub updated: Timestamp,
    pub deployment_id: Id,
    pub schedule: Schedule,
    pub active: bool,
    /// Stored and returned; the scheduler ignores it, as Prefect's does.
    pub max_scheduled_runs: Option<i64>,
    pub parameters: JsonMap,
    pub slug: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deployment {
    pub id: Id,
    pub created: Timestamp,
    pub updated: Timestamp,
    pub name: String,
    pub version: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::present"
    )]
    pub version_info: Option<serde_json::Value>,
    pub description: Option<String>,
    pub flow_id: Id,
    pub paused: bool,
    pub schedules: Vec<DeploymentSchedule>,
    /// Deployment-level concurrency; Prefect accepts it on input and answers null on output.
    pub concurrency_limit: Option<i64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::present"
    )]
    pub concurrency_options: Option<serde_json::Value>,
    pub job_variables: JsonMap,
    pub parameters: JsonMap,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::present"
    )]
    pub parameter_openapi_schema: Option<serde_json::Value>,
    pub enforce_parameter_schema: bool,
    pub pull_steps: Option<Vec<serde_json::Value>>,
    pub path: Option<String>,
    pub entrypoint: Option<String>,
    pub tags: Vec<String>,
    pub labels: JsonMap,
    pub work_queue_name: Option<String>,
    pub work_queue_id: Option<Id>,
    /// Derived through the queue; kept here so readers need not join.
    pub work_pool_name: Option<String>,
    pub last_polled: Option<Timestamp>,
    pub status: DeploymentStatus,
    pub storage_document_id: Option<Id>,
    pub infrastructure_document_id: Option<Id>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::present"
    )]
    pub created_by: Option<serde_json::Value>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::present"
    )]
    pub updated_by: Option<serde_json::Value>,
}
