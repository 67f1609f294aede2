//! Deployments: upsert, update, pause/resume, and runs created from a deployment.

use serde_json::Value;
use sluice_core::domain::{
    Deployment, DeploymentSchedule, DeploymentStatus, FlowRun, Id, JsonMap, State, StateType,
    Timestamp, validate_name,
};
use sluice_core::schedules::Schedule;
use sluice_store::Created;

use crate::Services;
use crate::error::{Result, ServiceError};
use crate::runs::FlowRunInput;

/// One schedule as given by a client.
#[derive(Debug, Clone)]
pub struct DeploymentScheduleInput {
    pub schedule: Schedule,
    pub active: bool,
    pub max_scheduled_runs: Option<i64>,
    pub parameters: JsonMap,
    pub slug: Option<String>,
}

/// Body of `POST /deployments/` (an upsert on `(flow_id, name)`), already parsed.
#[derive(Debug, Clone, Default)]
pub struct DeploymentInput {
    pub name: String,
    pub flow_id: Option<Id>,
    pub version: Option<String>,
    pub version_info: Option<Value>,
    pub description: Option<String>,
    pub paused: bool,
    pub schedules: Vec<DeploymentScheduleInput>,
    pub concurrency_limit: Option<i64>,
    pub concurrency_options: Option<Value>,
    pub job_variables: JsonMap,
    pub parameters: JsonMap,
    pub parameter_openapi_schema: Option<Value>,
    pub enforce_parameter_schema: bool,
    pub pull_steps: Option<Vec<Value>>,
    pub path: Option<String>,
    pub entrypoint: Option<String>,
    pub tags: Vec<String>,
    pub labels: JsonMap,
    pub work_pool_name: Option<String>,
    pub work_queue_name: Option<String>,
    pub storage_document_id: Option<Id>,
    pub infrastructure_document_id: Option<Id>,
}

/// `PATCH /deployments/{id}/schedules/{schedule_id}`: `None` leaves a field alone.
#[derive(Debug, Clone, Default)]
pub struct DeploymentSchedulePatch {
    pub schedule: Option<Schedule>,
    pub active: Option<bool>,
    pub max_scheduled_runs: Option<Option<i64>>,
    pub parameters: Option<JsonMap>,
    pub slug: Option<Option<String>>,
}

/// `PATCH /deployments/{id}`: `None` leaves a field alone.
#[derive(Debug, Clone, Default)]
pub struct DeploymentPatch {
    pub version: Option<Option<String>>,
    pub description: Option<Option<String>>,
    pub paused: Option<bool>,
    pub schedules: Option<Vec<DeploymentScheduleInput>>,
    pub concurrency_limit: Option<Option<i64>>,
    pub concurrency_options: Option<Option<Value>>,
    pub job_variables: Option<JsonMap>,
    pub parameters: Option<JsonMap>,
    pub parameter_openapi_schema: Option<Option<Value>>,
    pub enforce_parameter_schema: Option<bool>,
    pub pull_steps: Option<Option<Vec<Value>>>,
    pub path: Option<Option<String>>,
    pub entrypoint: Option<Option<String>>,
    pub tags: Option<Vec<String>>,
    pub labels: Option<JsonMap>,
    /// `Some(None)` detaches the deployment from its pool.
    pub work_pool_name: Option<Option<String>>,
    pub work_queue_name: Option<Option<String>>,
}

/// `POST /deployments/{id}/create_flow_run`.
#[derive(Debug, Clone, Default)]
pub struct FlowRunFromDeployment {
    pub name: Option<String>,
    pub state: Option<State>,
    pub parameters: JsonMap,
    pub context: JsonMap,
    pub tags: Vec<String>,
    pub labels: JsonMap,
    pub idempotency_key: Option<String>,
    pub parent_task_run_id: Option<Id>,
    pub work_queue_name: Option<String>,
    pub job_variables: Option<JsonMap>,
    pub empirical_policy: JsonMap,
    /// Overrides the deployment's `enforce_parameter_schema` for this run.
    pub enforce_parameter_schema: Option<bool>,
}

struct QueueRef {
    pool_name: Option<String>,
    queue_id: Option<Id>,
    queue_name: Option<String>,
}

impl Services {
    pub async fn read_deployment(&self, id: Id) -> Result<Deployment> {
        self.store
            .read_deployment(id)
            .await?
            .ok_or_else(|| ServiceError::NotFound("Deployment not found".to_owned()))
    }

    pub async fn read_deployment_by_name(&self, flow_name: &str, name: &str) -> Result<Deployment> {
        let not_found = || ServiceError::NotFound("Deployment not found".to_owned());
        let flow = self
            .store
            .read_flow_by_name(flow_name)
            .await?
            .ok_or_else(not_found)?;
        self.store
            .read_deployment_by_name(flow.id, name)
            .await?
            .ok_or_else(not_found)
    }

    /// Resolves where a deployment's runs go. Pool + queue name picks that queue, creating it
    /// when missing (Prefect does the same); pool alone picks the default queue.
    async fn resolve_queue(
        &self,
        pool_name: Option<&str>,
        queue_name: Option<&str>,
    ) -> Result<(QueueRef, Option<Value>)> {
        let Some(pool_name) = pool_name else {
            return Ok((
                QueueRef {
                    pool_name: None,
                    queue_id: None,
                    queue_name: queue_name.map(str::to_owned),
                },
                None,
            ));
        };
        let pool = self.read_work_pool(pool_name).await?;
        let queue = match queue_name {
            Some(q) => match self.store.read_work_queue_by_name(pool.id, q).await? {
                Some(found) => found,
                None => {
                    let created = self
                        .create_work_queue(
                            pool_name,
                            crate::pools::WorkQueueInput {
                                name: q.to_owned(),
                                ..Default::default()
                            },
                        )
                        .await;
                    match created {
                        Ok(queue) => queue,
                        // A concurrent deploy made it first.
                        Err(ServiceError::Conflict(_)) => {
                            self.read_work_queue(pool_name, q).await?.1
                        }
                        Err(e) => return Err(e),
                    }
                }
            },
            None => {
                let id = pool.default_queue_id.ok_or_else(|| {
                    ServiceError::Conflict(format!("work pool {pool_name:?} has no default queue"))
                })?;
                self.store.read_work_queue(id).await?.ok_or_else(|| {
                    ServiceError::Conflict(format!("work pool {pool_name:?} has no default queue"))
                })?
            }
        };
        Ok((
            QueueRef {
                pool_name: Some(pool.name.clone()),
                queue_id: Some(queue.id),
                queue_name: Some(queue.name),
            },
            Some(pool.base_job_template),
        ))
    }

    fn build_schedules(
        &self,
        deployment_id: Id,
        inputs: Vec<DeploymentScheduleInput>,
        now: Timestamp,
    ) -> Result<Vec<DeploymentSchedule>> {
        inputs
            .into_iter()
            .map(|s| {
                let schedule = s.schedule.normalized(now);
                schedule
                    .validate()
                    .map_err(|e| ServiceError::Invalid(e.to_string()))?;
                Ok(DeploymentSchedule {
                    id: uuid::Uuid::new_v4(),
                    created: now,
                    updated: now,
                    deployment_id,
                    schedule,
                    active: s.active,
                    max_scheduled_runs: s.max_scheduled_runs,
                    parameters: s.parameters,
                    slug: s.slug,
                })
            })
            .collect()
    }

    /// `POST /deployments/`: creates, or updates the deployment of the same flow and name.
    /// Future unstarted auto-scheduled runs are dropped and the schedules applied at once.
    pub async fn upsert_deployment(&self, input: DeploymentInput) -> Result<Created<Deployment>> {
        validate_name(&input.name).map_err(|e| ServiceError::Invalid(e.to_string()))?;
        let flow_id = input
            .flow_id
            .ok_or_else(|| ServiceError::Invalid("flow_id is required".to_owned()))?;
        if self.store.read_flow(flow_id).await?.is_none() {
            return Err(ServiceError::NotFound(format!("Flow {flow_id} not found")));
        }
        if let Some(pool_name) = input.work_pool_name.as_deref() {
            let pool = self.read_work_pool(pool_name).await?;
            self.validate_deployment_job_variables(&pool.base_job_template, &input.job_variables)?;
        }
        let now = self.now();
        let existing = self
            .store
            .read_deployment_by_name(flow_id, &input.name)
            .await?;
        let id = existing.as_ref().map_or_else(uuid::Uuid::new_v4, |d| d.id);
        let schedules = self.build_schedules(id, input.schedules, now)?;
        // Only checked input may create the missing queue it names.
        let (queue, _) = self
            .resolve_queue(
                input.work_pool_name.as_deref(),
                input.work_queue_name.as_deref(),
            )
            .await?;
        let deployment = Deployment {
            id,
            created: existing.as_ref().map_or(now, |d| d.created),
            updated: now,
            name: input.name,
            version: input.version,
            version_info: input.version_info,
            description: input.description,
            flow_id,
            paused: input.paused,
            schedules,
            concurrency_limit: input.concurrency_limit,
            concurrency_options: input.concurrency_options,
            job_variables: input.job_variables,
            parameters: input.parameters,
            parameter_openapi_schema: input.parameter_openapi_schema,
            enforce_parameter_schema: input.enforce_parameter_schema,
            pull_steps: input.pull_steps,
            path: input.path,
            entrypoint: input.entrypoint,
            tags: input.tags,
            labels: input.labels,
            work_queue_name: queue.queue_name,
            work_queue_id: queue.queue_id,
            work_pool_name: queue.pool_name,
            last_polled: existing.as_ref().and_then(|d| d.last_polled),
            status: existing
                .as_ref()
                .map_or(DeploymentStatus::NotReady, |d| d.status),
            storage_document_id: input.storage_document_id,
            infrastructure_document_id: input.infrastructure_document_id,
            created_by: None,
            updated_by: None,
        };
        let created = if existing.is_some() {
            self.store.update_deployment(&deployment).await?;
            false
        } else {
            match self.store.create_deployment(&deployment).await {
                Ok(()) => true,
                Err(e) if e.is_conflict() => {
                    // Another writer created it between our read and write: this is an update.
                    let winner = self
                        .store
                        .read_deployment_by_name(flow_id, &deployment.name)
                        .await?
                        .ok_or_else(|| {
                            ServiceError::Conflict("deployment changed concurrently".to_owned())
                        })?;
                    let mut d = deployment;
                    d.id = winner.id;
                    d.created = winner.created;
                    for s in &mut d.schedules {
                        s.deployment_id = winner.id;
                    }
                    self.store.update_deployment(&d).await?;
                    return self.after_deployment_change(d, false).await;
                }
                Err(e) => return Err(e.into()),
            }
        };
        self.after_deployment_change(deployment, created).await
    }

    async fn after_deployment_change(
        &self,
        d: Deployment,
        created: bool,
    ) -> Result<Created<Deployment>> {
        self.store
            .delete_unstarted_auto_scheduled_runs(d.id, Some(self.now()))
            .await?;
        if !d.paused {
            crate::scheduler::schedule_deployment(self, &d).await?;
        }
        Ok(Created { value: d, created })
    }

    pub async fn update_deployment(&self, id: Id, mut patch: DeploymentPatch) -> Result<()> {
        let mut d = self.read_deployment(id).await?;
        if let Some(parameters) = &patch.parameters {
            patch.parameters = Some(
                self.hydrate_parameters(parameters, "Error hydrating deployment parameters")
                    .await?,
            );
        }
        let now = self.now();
        let target = if patch.work_pool_name.is_some() || patch.work_queue_name.is_some() {
            let pool = match &patch.work_pool_name {
                Some(p) => p.clone(),
                None => d.work_pool_name.clone(),
            };
            let queue_name = match &patch.work_queue_name {
                Some(q) => q.clone(),
                None if patch.work_pool_name.is_some() => None,
                None => d.work_queue_name.clone(),
            };
            Some((pool, queue_name))
        } else {
            None
        };
        macro_rules! set {
            ($($field:ident),*) => { $( if let Some(v) = patch.$field { d.$field = v; } )* };
        }
        set!(
            version,
            description,
            paused,
            concurrency_limit,
            concurrency_options,
            job_variables,
            parameters,
            parameter_openapi_schema,
            enforce_parameter_schema,
            pull_steps,
            path,
            entrypoint,
            tags,
            labels
        );
        if let Some(schedules) = patch.schedules {
            d.schedules = self.build_schedules(d.id, schedules, now)?;
        }
        let pool_name = match &target {
            Some((pool, _)) => pool.clone(),
            None => d.work_pool_name.clone(),
        };
        if let Some(pool_name) = &pool_name {
            let pool = self.read_work_pool(pool_name).await?;
            self.validate_deployment_job_variables(&pool.base_job_template, &d.job_variables)?;
        }
        // Only a checked patch may create the missing queue it names.
        if let Some((pool, queue_name)) = target {
            let (queue, _) = self
                .resolve_queue(pool.as_deref(), queue_name.as_deref())
                .await?;
            d.work_pool_name = queue.pool_name;
            d.work_queue_id = queue.queue_id;
            d.work_queue_name = queue.queue_name;
        }
        d.updated = now;
        self.store.update_deployment(&d).await?;
        self.after_deployment_change(d, false).await?;
        Ok(())
    }

    /// `POST /deployments/{id}/schedules`: adds schedules, keeping the others and their ids.
    /// Slugs stay unique within the deployment (409 otherwise).
    pub async fn add_deployment_schedules(
        &self,
        id: Id,
        inputs: Vec<DeploymentScheduleInput>,
    ) -> Result<Vec<DeploymentSchedule>> {
        let mut d = self.read_deployment(id).await?;
        let now = self.now();
        let added = self.build_schedules(d.id, inputs, now)?;
        d.schedules.extend(added.iter().cloned());
        check_unique_slugs(&d.schedules)?;
        d.updated = now;
        self.store.update_deployment(&d).await?;
        self.after_deployment_change(d, false).await?;
        Ok(added)
    }

    /// `PATCH /deployments/{id}/schedules/{schedule_id}`: changes one schedule in place; the
    /// deployment's future auto-scheduled runs are made again from the new schedules.
    pub async fn update_deployment_schedule(
        &self,
        id: Id,
        schedule_id: Id,
        patch: DeploymentSchedulePatch,
    ) -> Result<()> {
        let mut d = self.read_deployment(id).await?;
        let now = self.now();
        let s = d
            .schedules
            .iter_mut()
            .find(|s| s.id == schedule_id)
            .ok_or_else(|| ServiceError::NotFound("Schedule not found.".to_owned()))?;
        if let Some(schedule) = patch.schedule {
            let schedule = schedule.normalized(now);
            schedule
                .validate()
                .map_err(|e| ServiceError::Invalid(e.to_string()))?;
            s.schedule = schedule;
        }
        if let Some(active) = patch.active {
            s.active = active;
        }
        if let Some(max) = patch.max_scheduled_runs {
            s.max_scheduled_runs = max;
        }
        if let Some(parameters) = patch.parameters {
            s.parameters = parameters;
        }
        if let Some(slug) = patch.slug {
            s.slug = slug;
        }
        s.updated = now;
        check_unique_slugs(&d.schedules)?;
        d.updated = now;
        self.store.update_deployment(&d).await?;
        self.after_deployment_change(d, false).await?;
        Ok(())
    }

    /// `DELETE /deployments/{id}/schedules/{schedule_id}`.
    pub async fn delete_deployment_schedule(&self, id: Id, schedule_id: Id) -> Result<()> {
        let mut d = self.read_deployment(id).await?;
        let before = d.schedules.len();
        d.schedules.retain(|s| s.id != schedule_id);
        if d.schedules.len() == before {
            return Err(ServiceError::NotFound("Schedule not found.".to_owned()));
        }
        d.updated = self.now();
        self.store.update_deployment(&d).await?;
        self.after_deployment_change(d, false).await?;
        Ok(())
    }

    pub async fn set_deployment_paused(&self, id: Id, paused: bool) -> Result<()> {
        let mut d = self.read_deployment(id).await?;
        d.paused = paused;
        d.updated = self.now();
        self.store.update_deployment(&d).await?;
        if paused {
            self.store
                .delete_unstarted_auto_scheduled_runs(d.id, None)
                .await?;
        } else {
            crate::scheduler::schedule_deployment(self, &d).await?;
        }
        Ok(())
    }

    pub async fn delete_deployment(&self, id: Id) -> Result<()> {
        if !self.store.delete_deployment(id).await? {
            return Err(ServiceError::NotFound("Deployment not found".to_owned()));
        }
        self.store
            .delete_unstarted_auto_scheduled_runs(id, None)
            .await?;
        self.drop_deployment_limit(id).await?;
        Ok(())
    }

    /// Parameters as the UI may send them (`{"__prefect_kind": ...}`) turned into values, as
    /// Prefect's server does before a run gets them (rules in `sluice_core::hydration`). A
    /// failure is a 400 with Prefect's wording; a Jinja template is refused (Sluice does not
    /// render them).
    pub async fn hydrate_parameters(&self, parameters: &JsonMap, context: &str) -> Result<JsonMap> {
        let names = sluice_core::hydration::variable_names(&Value::Object(parameters.clone()));
        if names.is_empty() && !parameters.values().any(has_kind) {
            return Ok(parameters.clone());
        }
        let variables = self.variables_named(&names).await?;
        let hydrated =
            sluice_core::hydration::hydrate(parameters, &|name| variables.get(name).cloned());
        if let Some(message) = hydrated.first_error() {
            return Err(ServiceError::BadRequest(format!("{context}: {message}")));
        }
        if hydrated.has_template() {
            return Err(ServiceError::BadRequest(format!(
                "{context}: Jinja templates (__prefect_kind \"jinja\") are not rendered by Sluice"
            )));
        }
        match hydrated.value {
            Value::Object(map) => Ok(map),
            _ => Ok(JsonMap::new()),
        }
    }

    /// The values of the variables with these names (missing ones left out).
    pub async fn variables_named(
        &self,
        names: &[String],
    ) -> Result<std::collections::HashMap<String, Value>> {
        if names.is_empty() {
            return Ok(std::collections::HashMap::new());
        }
        Ok(self
            .store
            .list_variables(Some(names), None, 0)
            .await?
            .into_iter()
            .map(|v| (v.name, v.value))
            .collect())
    }

    /// `POST /deployments/{id}/create_flow_run`: a run of the deployment, Scheduled for now
    /// unless a state is given, with job variables checked over the deployment's.
    pub async fn create_flow_run_from_deployment(
        &self,
        id: Id,
        input: FlowRunFromDeployment,
    ) -> Result<Created<FlowRun>> {
        let d = self.read_deployment(id).await?;
        if let Some(vars) = &input.job_variables {
            self.validate_run_job_variables(d.id, vars).await?;
        }
        let mut parameters = d.parameters.clone();
        for (k, v) in input.parameters {
            parameters.insert(k, v);
        }
        let parameters = self
            .hydrate_parameters(&parameters, "Error hydrating flow run parameters")
            .await?;
        let enforce = input
            .enforce_parameter_schema
            .unwrap_or(d.enforce_parameter_schema);
        if enforce && let Some(schema) = &d.parameter_openapi_schema {
            // Prefect answers 409 here, not 422: the parameters conflict with the deployment.
            sluice_core::schema::validate_parameters(schema, &parameters)
                .map_err(|e| ServiceError::Conflict(format!("Error creating flow run: {e}")))?;
        }
        let mut tags = input.tags;
        for t in &d.tags {
            if !tags.contains(t) {
                tags.push(t.clone());
            }
        }
        let work_queue_name = match input.work_queue_name {
            Some(q) => {
                let Some(pool) = &d.work_pool_name else {
                    return Err(ServiceError::BadRequest(
                        "A work queue can only be set for a deployment with a work pool."
                            .to_owned(),
                    ));
                };
                self.resolve_queue(Some(pool), Some(&q)).await?;
                Some(q)
            }
            None => {
                // The deployment's queue may have been deleted since; like a deploy, a run
                // recreates it by name rather than failing or silently changing its route.
                if let (Some(pool), Some(q)) = (&d.work_pool_name, &d.work_queue_name) {
                    self.resolve_queue(Some(pool), Some(q)).await?;
                }
                d.work_queue_name.clone()
            }
        };
        let now = self.now();
        let state = input
            .state
            .unwrap_or_else(|| State::new(StateType::Scheduled, now).scheduled_at(now));
        let mut labels = d.labels.clone();
        for (k, v) in input.labels {
            labels.insert(k, v);
        }
        self.create_flow_run(FlowRunInput {
            flow_id: Some(d.flow_id),
            name: input.name,
            state: Some(state),
            parameters,
            context: input.context,
            tags,
            labels,
            idempotency_key: input.idempotency_key,
            parent_task_run_id: input.parent_task_run_id,
            work_pool_name: d.work_pool_name.clone(),
            work_queue_name,
            job_variables: input.job_variables,
            empirical_policy: input.empirical_policy,
            flow_version: None,
            deployment_id: Some(d.id),
            deployment_version: d.version.clone(),
        })
        .await
    }
}

/// Whether `value` holds a `__prefect_kind` object anywhere.
fn has_kind(value: &Value) -> bool {
    match value {
        Value::Object(map) => map.contains_key("__prefect_kind") || map.values().any(has_kind),
        Value::Array(items) => items.iter().any(has_kind),
        _ => false,
    }
}

/// Prefect keeps schedule slugs unique within a deployment.
fn check_unique_slugs(schedules: &[DeploymentSchedule]) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for slug in schedules.iter().filter_map(|s| s.slug.as_deref()) {
        if !seen.insert(slug) {
            return Err(ServiceError::Conflict(
                "Schedule slugs must be unique within a deployment.".to_owned(),
            ));
        }
    }
    Ok(())
}
