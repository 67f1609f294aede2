//! Flows and deployments on the wire.

use serde::Deserialize;
use serde_json::{Value, json};
use sluice_core::domain::{Deployment, DeploymentSchedule, Flow, Id, JsonMap};
use sluice_core::schedules::Schedule;
use sluice_services::{
    DeploymentInput, DeploymentPatch, DeploymentScheduleInput, FlowRunFromDeployment,
};

use super::runs::StateCreate;
use super::{nullable, ts, ts_opt};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowCreate {
    pub name: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub labels: Option<JsonMap>,
}

pub fn flow_json(f: &Flow) -> Value {
    json!({
        "id": f.id,
        "created": ts(f.created),
        "updated": ts(f.updated),
        "name": f.name,
        "tags": f.tags,
        "labels": f.labels,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleCreate {
    pub schedule: Value,
    #[serde(default = "yes")]
    pub active: bool,
    #[serde(default)]
    pub max_scheduled_runs: Option<i64>,
    #[serde(default)]
    pub parameters: JsonMap,
    #[serde(default)]
    pub slug: Option<String>,
    #[serde(default)]
    pub replaces: Option<String>,
}

fn yes() -> bool {
    true
}

impl ScheduleCreate {
    /// Parses the schedule; the error names the schedule's index so the client can find it.
    pub fn into_input(self, index: usize) -> Result<DeploymentScheduleInput, (Vec<Value>, String)> {
        let schedule = Schedule::from_json(&self.schedule).map_err(|e| {
            (
                vec![
                    "body".into(),
                    "schedules".into(),
                    index.into(),
                    "schedule".into(),
                ],
                e.to_string(),
            )
        })?;
        Ok(DeploymentScheduleInput {
            schedule,
            active: self.active,
            max_scheduled_runs: self.max_scheduled_runs,
            parameters: self.parameters,
            slug: self.slug,
        })
    }
}

/// Converts every schedule or reports the first bad one.
pub fn schedules_input(
    items: Vec<ScheduleCreate>,
) -> Result<Vec<DeploymentScheduleInput>, (Vec<Value>, String)> {
    items
        .into_iter()
        .enumerate()
        .map(|(i, s)| s.into_input(i))
        .collect()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentCreate {
    pub name: String,
    pub flow_id: Id,
    #[serde(default)]
    pub paused: bool,
    #[serde(default)]
    pub schedules: Vec<ScheduleCreate>,
    #[serde(default)]
    pub concurrency_limit: Option<i64>,
    #[serde(default)]
    pub concurrency_options: Option<Value>,
    #[serde(default = "yes")]
    pub enforce_parameter_schema: bool,
    #[serde(default)]
    pub parameter_openapi_schema: Option<Value>,
    #[serde(default)]
    pub parameters: JsonMap,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub labels: Option<JsonMap>,
    #[serde(default)]
    pub pull_steps: Option<Vec<Value>>,
    #[serde(default)]
    pub work_queue_name: Option<String>,
    #[serde(default)]
    pub work_pool_name: Option<String>,
    #[serde(default)]
    pub storage_document_id: Option<Id>,
    #[serde(default)]
    pub infrastructure_document_id: Option<Id>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub version_info: Option<Value>,
    #[serde(default)]
    pub entrypoint: Option<String>,
    #[serde(default)]
    pub job_variables: Option<JsonMap>,
    /// Deployment-versioning fields newer clients send; accepted and not interpreted.
    #[serde(default)]
    pub branch: Option<Value>,
    #[serde(default)]
    pub base: Option<Value>,
    #[serde(default)]
    pub root: Option<Value>,
}

impl DeploymentCreate {
    pub fn into_input(self) -> Result<DeploymentInput, (Vec<Value>, String)> {
        Ok(DeploymentInput {
            name: self.name,
            flow_id: Some(self.flow_id),
            version: self.version,
            version_info: self.version_info,
            description: self.description,
            paused: self.paused,
            schedules: schedules_input(self.schedules)?,
            concurrency_limit: self.concurrency_limit,
            concurrency_options: self.concurrency_options,
            job_variables: self.job_variables.unwrap_or_default(),
            parameters: self.parameters,
            parameter_openapi_schema: self.parameter_openapi_schema,
            enforce_parameter_schema: self.enforce_parameter_schema,
            pull_steps: self.pull_steps,
            path: self.path,
            entrypoint: self.entrypoint,
            tags: self.tags,
            labels: self.labels.unwrap_or_default(),
            work_pool_name: self.work_pool_name,
            work_queue_name: self.work_queue_name,
            storage_document_id: self.storage_document_id,
            infrastructure_document_id: self.infrastructure_document_id,
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentUpdate {
    #[serde(default, deserialize_with = "nullable")]
    pub version: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub description: Option<Option<String>>,
    #[serde(default)]
    pub paused: Option<bool>,
    #[serde(default)]
    pub schedules: Option<Vec<ScheduleCreate>>,
    #[serde(default, deserialize_with = "nullable")]
    pub concurrency_limit: Option<Option<i64>>,
    #[serde(default, deserialize_with = "nullable")]
    pub concurrency_options: Option<Option<Value>>,
    #[serde(default)]
    pub parameters: Option<JsonMap>,
    #[serde(default, deserialize_with = "nullable")]
    pub parameter_openapi_schema: Option<Option<Value>>,
    #[serde(default)]
    pub enforce_parameter_schema: Option<bool>,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    #[serde(default)]
    pub labels: Option<JsonMap>,
    #[serde(default, deserialize_with = "nullable")]
    pub pull_steps: Option<Option<Vec<Value>>>,
    #[serde(default, deserialize_with = "nullable")]
    pub work_queue_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub work_pool_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub path: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub entrypoint: Option<Option<String>>,
    #[serde(default)]
    pub job_variables: Option<JsonMap>,
    #[serde(default)]
    pub storage_document_id: Option<Id>,
    #[serde(default)]
    pub infrastructure_document_id: Option<Id>,
    #[serde(default)]
    pub version_info: Option<Value>,
}

impl DeploymentUpdate {
    pub fn into_patch(self) -> Result<DeploymentPatch, (Vec<Value>, String)> {
        Ok(DeploymentPatch {
            version: self.version,
            description: self.description,
            paused: self.paused,
            schedules: self.schedules.map(schedules_input).transpose()?,
            concurrency_limit: self.concurrency_limit,
            concurrency_options: self.concurrency_options,
            job_variables: self.job_variables,
            parameters: self.parameters,
            parameter_openapi_schema: self.parameter_openapi_schema,
            enforce_parameter_schema: self.enforce_parameter_schema,
            pull_steps: self.pull_steps,
            path: self.path,
            entrypoint: self.entrypoint,
            tags: self.tags,
            labels: self.labels,
            work_pool_name: self.work_pool_name,
            work_queue_name: self.work_queue_name,
        })
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DeploymentFlowRunCreate {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub state: Option<StateCreate>,
    #[serde(default)]
    pub parameters: JsonMap,
    #[serde(default)]
    pub context: JsonMap,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub labels: Option<JsonMap>,
    #[serde(default)]
    pub idempotency_key: Option<String>,
    #[serde(default)]
    pub parent_task_run_id: Option<Id>,
    #[serde(default)]
    pub work_queue_name: Option<String>,
    #[serde(default)]
    pub job_variables: Option<JsonMap>,
    #[serde(default)]
    pub empirical_policy: Option<JsonMap>,
    #[serde(default)]
    pub infrastructure_document_id: Option<Id>,
    #[serde(default)]
    pub enforce_parameter_schema: Option<bool>,
}

impl DeploymentFlowRunCreate {
    pub fn into_input(self, now: sluice_core::domain::Timestamp) -> FlowRunFromDeployment {
        FlowRunFromDeployment {
            name: self.name,
            state: self.state.map(|s| s.into_state(now)),
            parameters: self.parameters,
            context: self.context,
            tags: self.tags,
            labels: self.labels.unwrap_or_default(),
            idempotency_key: self.idempotency_key,
            parent_task_run_id: self.parent_task_run_id,
            work_queue_name: self.work_queue_name,
            job_variables: self.job_variables,
            empirical_policy: self.empirical_policy.unwrap_or_default(),
            enforce_parameter_schema: self.enforce_parameter_schema,
        }
    }
}

pub fn schedule_json(s: &DeploymentSchedule) -> Value {
    json!({
        "id": s.id,
        "created": ts(s.created),
        "updated": ts(s.updated),
        "deployment_id": s.deployment_id,
        "schedule": s.schedule,
        "active": s.active,
        "max_scheduled_runs": s.max_scheduled_runs,
        "parameters": s.parameters,
        "slug": s.slug,
    })
}

/// `active_slots` is the deployment's PENDING/RUNNING/CANCELLING run count, known only to the
/// caller (it is counted only when a limit is set).
pub fn deployment_json(d: &Deployment, active_slots: Option<usize>) -> Value {
    json!({
        "id": d.id,
        "created": ts(d.created),
        "updated": ts(d.updated),
        "name": d.name,
        "version": d.version,
        "version_id": null,
        "version_info": d.version_info,
        "description": d.description,
        "flow_id": d.flow_id,
        "paused": d.paused,
        "schedules": d.schedules.iter().map(schedule_json).collect::<Vec<_>>(),
        // Deprecated on input; Prefect answers null and reports the limit through
        // `global_concurrency_limit`.
        "concurrency_limit": null,
        "global_concurrency_limit": d.concurrency_limit.map(|limit| json!({
            "id": d.id,
            "name": format!("deployment:{}", d.id),
            "limit": limit,
            "active": true,
            "active_slots": active_slots.unwrap_or(0),
            "slot_decay_per_second": 0.0,
        })),
        "concurrency_options": d.concurrency_options,
        "job_variables": d.job_variables,
        "parameters": d.parameters,
        "parameter_openapi_schema": d.parameter_openapi_schema.clone()
            .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
        "enforce_parameter_schema": d.enforce_parameter_schema,
        "pull_steps": d.pull_steps,
        "path": d.path,
        "entrypoint": d.entrypoint,
        "tags": d.tags,
        "labels": d.labels,
        "work_queue_name": d.work_queue_name,
        "work_queue_id": d.work_queue_id,
        "work_pool_name": d.work_pool_name,
        "last_polled": ts_opt(d.last_polled),
        "status": d.status.as_str(),
        "storage_document_id": d.storage_document_id,
        "infrastructure_document_id": d.infrastructure_document_id,
        "created_by": d.created_by,
        "updated_by": d.updated_by,
    })
}

/// `PATCH /deployments/{id}/schedules/{schedule_id}` (Prefect's `DeploymentScheduleUpdate`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleUpdate {
    #[serde(default)]
    pub schedule: Option<Value>,
    #[serde(default)]
    pub active: Option<bool>,
    #[serde(default, deserialize_with = "nullable")]
    pub max_scheduled_runs: Option<Option<i64>>,
    #[serde(default)]
    pub parameters: Option<JsonMap>,
    #[serde(default, deserialize_with = "nullable")]
    pub slug: Option<Option<String>>,
}

impl ScheduleUpdate {
    pub fn into_patch(self) -> Result<sluice_services::DeploymentSchedulePatch, crate::ApiError> {
        let schedule = self
            .schedule
            .map(|s| {
                Schedule::from_json(&s).map_err(|e| {
                    crate::ApiError::invalid_field(
                        vec!["body".into(), "schedule".into()],
                        e.to_string(),
                    )
                })
            })
            .transpose()?;
        Ok(sluice_services::DeploymentSchedulePatch {
            schedule,
            active: self.active,
            max_scheduled_runs: self.max_scheduled_runs,
            parameters: self.parameters,
            slug: self.slug,
        })
    }
}
