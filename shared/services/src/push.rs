//! Push pools: the control plane submits due runs itself and follows their task or job to the end.
//!
//! Exactly once, without a lock service:
//! 1. **Claim.** `dispatch` claims a due SCHEDULED run (SCHEDULED → PENDING, compare-and-set):
//!    of any number of dispatchers (duplicate messages, overlapping ticks) one wins.
//! 2. **Submit.** The winner renders the job, submits it and records the infrastructure id. A
//!    first attempt needs no lookup: nothing can have been submitted before the claim.
//! 3. **Lease.** A run left PENDING without infrastructure (the dispatcher died, timed out or was
//!    throttled) is taken over only after `submit_lease_seconds` since its PENDING state, by a
//!    forced compare-and-set on that state, and the taker first looks for the earlier attempt's
//!    task or job (ECS `startedBy`, Batch job name). The lease outlasts any dispatcher invocation,
//!    so two submitters never overlap.
//! 4. **Settle.** Task/job reports (EventBridge events, or Describe* in the sweep) move the run
//!    to its end through `sluice_core::push::observe::settle`; duplicates and late arrivals
//!    change nothing. The sweep gives every live push run an owner and a deadline.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::Value;
use sluice_core::domain::{FlowRun, Id, JsonMap, State, StateType, Timestamp, WorkPool};
use sluice_core::job_config::{
    build_job_configuration, data_references, finalize_base_fields,
    merge_deployment_and_run_variables,
};
use sluice_core::push::observe::{
    BatchJob, EcsTask, Progress, batch_progress, ecs_progress, settle,
};
use sluice_core::push::{self, RUN_ID_TAG, RunFacts};
use sluice_core::templating::{BlockRef, PrefetchedData};
use sluice_infra::{Attempt, InfraError, Job, Kind, PushInfrastructure, Submission, Submitted};
use sluice_store::{FlowRunFilter, FlowRunSort, WorkPoolFilter};

use crate::Services;
use crate::error::{Result, ServiceError};
use crate::runs::{FlowRunPatch, Guard};

/// Tunables of dispatch and reconciliation.
#[derive(Debug, Clone)]
pub struct PushSettings {
    /// Variables every pushed run's container gets first (e.g. `PREFECT_API_URL`).
    pub base_env: BTreeMap<String, String>,
    /// What `{{ $NAME }}` in a job template reads.
    pub template_env: BTreeMap<String, String>,
    /// Region for log configuration when neither the pool's credentials nor the
    /// infrastructure's configuration name one.
    pub default_region: String,
    /// How long a claimed run may stay PENDING without infrastructure before the sweep takes
    /// its submission over. Must exceed the longest a dispatcher can run.
    pub submit_lease_seconds: i64,
    /// PENDING/RUNNING runs whose state is older than this are checked against AWS by the sweep
    /// (events normally settle them first); 0 checks every live run on every sweep.
    pub reconcile_after_seconds: i64,
    /// A submitted task or job AWS does not know is only declared lost after this long.
    pub missing_grace_seconds: i64,
    /// A CANCELLING run is forced CANCELLED after this long (Prefect's cleanup: 300 s).
    pub cancelling_timeout_seconds: i64,
    /// Runs due within this many seconds are handed to the dispatch queue ahead of time.
    pub dispatch_horizon_seconds: i64,
}

impl Default for PushSettings {
    fn default() -> PushSettings {
        PushSettings {
            base_env: BTreeMap::new(),
            template_env: BTreeMap::new(),
            default_region: "us-east-1".to_owned(),
            submit_lease_seconds: 120,
            reconcile_after_seconds: 300,
            missing_grace_seconds: 120,
            cancelling_timeout_seconds: 300,
            dispatch_horizon_seconds: 120,
        }
    }
}

/// What one dispatch did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dispatched {
    Submitted {
        infrastructure_id: String,
        found_existing: bool,
    },
    /// Not due yet: try again at this time.
    NotYetDue(Timestamp),
    /// Nothing to do (claimed or submitted by someone else, not a push run, gone, ended).
    Skipped(String),
    /// Ended without infrastructure: the request was refused or the configuration is invalid.
    Crashed(String),
    /// Cancelled before it was submitted, or the deployment is gone.
    Cancelled(String),
    /// AWS could not take it now (throttling, capacity, network): left PENDING for the lease.
    RetryLater(String),
}

/// For log lines.
impl std::fmt::Display for Dispatched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dispatched::Submitted {
                infrastructure_id,
                found_existing: false,
            } => write!(f, "submitted as {infrastructure_id}"),
            Dispatched::Submitted {
                infrastructure_id,
                found_existing: true,
            } => write!(f, "already submitted as {infrastructure_id}"),
            Dispatched::NotYetDue(at) => write!(f, "not due until {at}"),
            Dispatched::Skipped(why) => write!(f, "skipped: {why}"),
            Dispatched::Crashed(why) => write!(f, "crashed: {why}"),
            Dispatched::Cancelled(why) => write!(f, "cancelled: {why}"),
            Dispatched::RetryLater(why) => write!(f, "retry later: {why}"),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SweepSummary {
    pub dispatched: usize,
    pub resumed: usize,
    pub observed: usize,
    pub settled: usize,
    pub stops_requested: usize,
    pub cancellations_timed_out: usize,
}

/// The dispatcher and reconciler for push runs, over one infrastructure adapter.
#[derive(Clone)]
pub struct Dispatcher {
    pub services: Services,
    pub infra: Arc<dyn PushInfrastructure>,
    pub settings: Arc<PushSettings>,
}

/// A run's rendered job and what it takes to reach it again.
struct Prepared {
    kind: Kind,
    config: Value,
    credentials: Option<Value>,
}

/// A retry Prefect's engine performs inside the running container (`retry_type: in_process`):
/// submitting it again would run the flow twice.
fn is_in_process_retry(run: &FlowRun) -> bool {
    run.empirical_policy
        .get("retry_type")
        .and_then(Value::as_str)
        == Some("in_process")
}

fn older_than(state: Option<&State>, seconds: i64, now: Timestamp) -> bool {
    state.is_some_and(|s| s.timestamp + chrono::Duration::seconds(seconds) <= now)
}

impl Dispatcher {
    #[must_use]
    pub fn new(
        services: Services,
        infra: Arc<dyn PushInfrastructure>,
        settings: PushSettings,
    ) -> Dispatcher {
        Dispatcher {
            services,
            infra,
            settings: Arc::new(settings),
        }
    }

    fn now(&self) -> Timestamp {
        self.services.now()
    }

    /// Dispatches one run: claim (or take over an expired submission), render, submit, record.
    pub async fn dispatch(&self, run_id: Id) -> Result<Dispatched> {
        let Some(current) = self.services.store.read_flow_run(run_id).await? else {
            return Ok(Dispatched::Skipped("the run no longer exists".to_owned()));
        };
        let run = current.value;
        let Some(pool) = self.pool_of(&run).await? else {
            return Ok(Dispatched::Skipped(
                "the run has no push work pool".to_owned(),
            ));
        };
        let Some(kind) = Kind::of_pool_type(&pool.pool_type).filter(|_| pool.is_push()) else {
            return Ok(Dispatched::Skipped(format!(
                "work pool {:?} is not a push pool",
                pool.name
            )));
        };
        let now = self.now();
        let (attempt, attempt_id) = match run.state_type() {
            Some(StateType::Scheduled) if is_in_process_retry(&run) => {
                return Ok(Dispatched::Skipped(
                    "an in-process retry: the run's own container retries it".to_owned(),
                ));
            }
            Some(StateType::Scheduled) => {
                if let Some(at) = run.next_scheduled_start_time
                    && at > now
                {
                    return Ok(Dispatched::NotYetDue(at));
                }
                let claim = self
                    .services
                    .claim_flow_run(run_id, State::new(StateType::Pending, now))
                    .await?;
                let claimed = claim.status == sluice_core::orchestration::SetStateStatus::Accept
                    && claim.state.as_ref().map(|s| s.state_type) == Some(StateType::Pending);
                if !claimed {
                    return Ok(Dispatched::Skipped(format!(
                        "not claimed: {}",
                        claim
                            .reason
                            .unwrap_or_else(|| claim.status.as_str().to_owned())
                    )));
                }
                let attempt_id = match &claim.state {
                    Some(state) => state.id,
                    None => self.claim_state_id(run_id).await?,
                };
                (Attempt::First, attempt_id)
            }
            Some(StateType::Pending) if run.infrastructure_pid.is_none() => {
                let lease = self.settings.submit_lease_seconds;
                let taken = self
                    .services
                    .orchestrate_and_commit(
                        run_id,
                        State::new(StateType::Pending, now)
                            .named("Submitting")
                            .with_message("Resuming an interrupted submission."),
                        true,
                        false,
                        Guard::SubmissionLease { seconds: lease },
                    )
                    .await?;
                if !taken.committed {
                    return Ok(Dispatched::Skipped(
                        taken
                            .reason
                            .unwrap_or_else(|| "another dispatcher holds it".to_owned()),
                    ));
                }
                (Attempt::Resume, self.claim_state_id(run_id).await?)
            }
            other => {
                return Ok(Dispatched::Skipped(format!(
                    "nothing to submit (the run is {}{})",
                    other.map_or("without a state", StateType::as_str),
                    if run.infrastructure_pid.is_some() {
                        ", already submitted"
                    } else {
                        ""
                    }
                )));
            }
        };
        self.submit_claimed(run_id, &pool, kind, attempt, attempt_id)
            .await
    }

    /// The submission attempt of a claimed run: the first PENDING state after its last
    /// SCHEDULED one (the claim), found in its history so a resumed attempt keeps the id.
    async fn claim_state_id(&self, run_id: Id) -> Result<Id> {
        let states = self.services.store.read_flow_run_states(run_id).await?;
        let after = states
            .iter()
            .rposition(|s| s.state_type == StateType::Scheduled)
            .map_or(0, |i| i + 1);
        states[after..]
            .iter()
            .find(|s| s.state_type == StateType::Pending)
            .map(|s| s.id)
            .ok_or_else(|| {
                ServiceError::Conflict(format!("flow run {run_id} has not been claimed"))
            })
    }

    async fn submit_claimed(
        &self,
        run_id: Id,
        pool: &WorkPool,
        kind: Kind,
        attempt: Attempt,
        attempt_id: Id,
    ) -> Result<Dispatched> {
        let run = self.services.read_flow_run(run_id).await?.value;
        let prepared = match self.prepare(&run, pool, kind).await {
            Ok(p) => p,
            Err(Unprepared::DeploymentGone(message)) => {
                self.force_cancel(run_id, &message).await?;
                return Ok(Dispatched::Cancelled(message));
            }
            Err(Unprepared::Invalid(message)) => {
                return self.submission_failed(run_id, &message).await;
            }
            Err(Unprepared::Service(e)) => return Err(e),
        };
        let job = match self.plan(&prepared, &run, pool, attempt_id).await {
            Ok(job) => job,
            Err(message) => return self.submission_failed(run_id, &message).await,
        };
        // A run cancelled while it was being claimed or rendered is never submitted.
        let latest = self.services.read_flow_run(run_id).await?.value;
        if matches!(
            latest.state_type(),
            Some(StateType::Cancelling | StateType::Cancelled)
        ) {
            let message = "Flow run cancelled before it was submitted.".to_owned();
            if latest.state_type() == Some(StateType::Cancelling) {
                self.force_cancel(run_id, &message).await?;
            }
            return Ok(Dispatched::Cancelled(message));
        }
        let submission = Submission {
            run_id,
            attempt_id,
            job,
            credentials: prepared.credentials.clone(),
            attempt,
        };
        let submitted = match self.infra.submit(&submission).await {
            Ok(s) => s,
            Err(InfraError::Transient(message)) => {
                tracing::warn!(run = %run_id, error = %message, "submission failed for now; the lease will retry it");
                return Ok(Dispatched::RetryLater(message));
            }
            Err(InfraError::Rejected(message)) => {
                return self.submission_failed(run_id, &message).await;
            }
        };
        let Submitted {
            infrastructure_id,
            found_existing,
        } = submitted;
        let platform = match kind {
            Kind::Ecs => "ecs",
            Kind::Batch => "batch",
        };
        // Where the run went stays on the run: its infrastructure id, and labels a person
        // reads in `prefect flow-run inspect` or the API.
        let lag = sluice_core::events::submission_lag(&latest, self.services.now());
        self.services
            .update_flow_run(
                run_id,
                FlowRunPatch {
                    infrastructure_pid: Some(Some(infrastructure_id.clone())),
                    labels_merge: Some(sluice_core::events::push_labels(
                        platform,
                        &infrastructure_id,
                        lag,
                    )),
                    ..Default::default()
                },
            )
            .await?;
        tracing::info!(run = %run_id, infrastructure = %infrastructure_id, found_existing, "submitted flow run");
        self.services
            .emit_push_submitted(&latest, platform, &infrastructure_id, found_existing)
            .await;
        // Cancelled between the check and the submission: stop what just started.
        let after = self.services.read_flow_run(run_id).await?.value;
        if after.state_type() == Some(StateType::Cancelling) {
            self.stop(kind, &infrastructure_id, prepared.credentials.as_ref())
                .await;
        }
        Ok(Dispatched::Submitted {
            infrastructure_id,
            found_existing,
        })
    }

    /// The submission the dispatcher makes for a run, without claiming it (for inspection and
    /// for tests that play a dispatcher interrupted half-way).
    pub async fn submission_for(&self, run_id: Id, attempt: Attempt) -> Result<Submission> {
        let run = self.services.read_flow_run(run_id).await?.value;
        let pool = self
            .pool_of(&run)
            .await?
            .ok_or_else(|| ServiceError::Invalid("the run has no work pool".to_owned()))?;
        let kind = Kind::of_pool_type(&pool.pool_type).ok_or_else(|| {
            ServiceError::Invalid(format!(
                "{:?} pools have no push infrastructure",
                pool.pool_type
            ))
        })?;
        let prepared = match self.prepare(&run, &pool, kind).await {
            Ok(p) => p,
            Err(Unprepared::Service(e)) => return Err(e),
            Err(Unprepared::DeploymentGone(m) | Unprepared::Invalid(m)) => {
                return Err(ServiceError::Invalid(m));
            }
        };
        let attempt_id = self.claim_state_id(run_id).await?;
        let job = self
            .plan(&prepared, &run, &pool, attempt_id)
            .await
            .map_err(ServiceError::Invalid)?;
        Ok(Submission {
            run_id,
            attempt_id,
            job,
            credentials: prepared.credentials,
            attempt,
        })
    }

    async fn stop(&self, kind: Kind, id: &str, credentials: Option<&Value>) -> bool {
        match self
            .infra
            .stop(kind, id, "Flow run cancelled in Sluice", credentials)
            .await
        {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(infrastructure = %id, error = %e, "stop request failed; the sweep will retry");
                false
            }
        }
    }

    async fn pool_of(&self, run: &FlowRun) -> Result<Option<WorkPool>> {
        Ok(match (run.work_pool_id, &run.work_pool_name) {
            (Some(id), _) => self.services.store.read_work_pool(id).await?,
            (None, Some(name)) => self.services.store.read_work_pool_by_name(name).await?,
            (None, None) => None,
        })
    }

    /// Renders the run's job configuration from its pool, deployment and own job variables,
    /// with blocks and variables read from the store, as a worker would.
    async fn prepare(
        &self,
        run: &FlowRun,
        pool: &WorkPool,
        kind: Kind,
    ) -> std::result::Result<Prepared, Unprepared> {
        let store = &self.services.store;
        let deployment = match run.deployment_id {
            Some(id) => Some(store.read_deployment(id).await?.ok_or_else(|| {
                Unprepared::DeploymentGone(format!("Deployment {id} no longer exists."))
            })?),
            None => None,
        };
        let empty = JsonMap::new();
        let variables = merge_deployment_and_run_variables(
            deployment.as_ref().map_or(&empty, |d| &d.job_variables),
            run.job_variables.as_ref().unwrap_or(&empty),
        );
        let data = self
            .template_data(&data_references(&pool.base_job_template, &variables))
            .await?;
        let config = build_job_configuration(
            &pool.base_job_template,
            &variables,
            &self.settings.template_env,
            &data,
        )
        .map_err(|e| Unprepared::Invalid(e.to_string()))?;
        let config = finalize_base_fields(config);
        let credentials = config
            .get("aws_credentials")
            .filter(|c| c.as_object().is_some_and(|m| !m.is_empty()))
            .cloned();
        Ok(Prepared {
            kind,
            config,
            credentials,
        })
    }

    /// Where an ECS run's logs live: the pool credentials' region, else the region the
    /// infrastructure's own configuration resolves, else the configured default.
    async fn region(&self, credentials: Option<&Value>) -> String {
        let named = credentials
            .and_then(|c| c.get("region_name"))
            .and_then(Value::as_str)
            .filter(|r| !r.is_empty());
        if let Some(region) = named {
            return region.to_owned();
        }
        match self.infra.region(credentials).await {
            Some(region) => region,
            None => self.settings.default_region.clone(),
        }
    }

    async fn plan(
        &self,
        prepared: &Prepared,
        run: &FlowRun,
        pool: &WorkPool,
        attempt: Id,
    ) -> std::result::Result<Job, String> {
        let store = &self.services.store;
        let flow = store
            .read_flow(run.flow_id)
            .await
            .map_err(|e| e.to_string())?;
        let deployment = match run.deployment_id {
            Some(id) => store.read_deployment(id).await.map_err(|e| e.to_string())?,
            None => None,
        };
        let facts = RunFacts {
            run,
            flow_name: flow.as_ref().map(|f| f.name.as_str()),
            deployment: deployment.as_ref().map(|d| (d.id, d.name.as_str())),
            pool_name: &pool.name,
            pool_id: pool.id,
            base_env: &self.settings.base_env,
            attempt,
        };
        let config = push::prepare_for_flow_run(&prepared.config, &facts);
        match prepared.kind {
            Kind::Ecs => {
                let region = self.region(prepared.credentials.as_ref()).await;
                push::ecs::plan(&config, &facts, &region)
                    .map(Job::Ecs)
                    .map_err(|e| e.to_string())
            }
            Kind::Batch => push::batch::plan(&config, &facts)
                .map(Job::Batch)
                .map_err(|e| e.to_string()),
        }
    }

    async fn template_data(
        &self,
        refs: &sluice_core::job_config::DataReferences,
    ) -> std::result::Result<PrefetchedData, Unprepared> {
        let store = &self.services.store;
        let mut data = PrefetchedData::default();
        for block in &refs.blocks {
            data = match block {
                BlockRef::ById(id) => match Id::parse_str(id) {
                    Ok(parsed) => match self.services.read_block_document(parsed).await {
                        Ok(full) => data.with_block_id(id.clone(), full.data()),
                        Err(ServiceError::NotFound(_)) => data,
                        Err(e) => return Err(Unprepared::Service(e)),
                    },
                    Err(_) => data,
                },
                BlockRef::ByName { slug, name } => {
                    match self.services.read_block_document_by_name(slug, name).await {
                        Ok(full) => data.with_block(slug.clone(), name.clone(), full.data()),
                        Err(ServiceError::NotFound(_)) => data,
                        Err(e) => return Err(Unprepared::Service(e)),
                    }
                }
            };
        }
        for name in &refs.variables {
            if let Some(v) = store.read_variable_by_name(name).await? {
                data = data.with_variable(name.clone(), v.value);
            }
        }
        Ok(data)
    }

    /// Applies an "ECS Task State Change" event's task (or a described task) to its run: the
    /// run id is the task's `startedBy`. Returns whether the run's state changed.
    pub async fn apply_ecs_task(&self, task: &EcsTask) -> Result<bool> {
        let Some(run_id) = task
            .started_by
            .as_deref()
            .and_then(|s| Id::parse_str(s).ok())
        else {
            return Ok(false);
        };
        let arn = task.task_arn.as_deref().unwrap_or_default();
        self.apply(run_id, Some(arn), &ecs_progress(task, None))
            .await
    }

    /// Applies a "Batch Job State Change" event's job (or a described job) to its run: the run
    /// id is the job's `sluice.io/flow-run-id` tag, else the end of its name.
    pub async fn apply_batch_job(&self, job: &BatchJob) -> Result<bool> {
        let from_tag = job.tags.get(RUN_ID_TAG).cloned();
        let from_name = job
            .job_name
            .as_deref()
            .and_then(|n| n.rsplit_once('_'))
            .map(|(_, id)| id.to_owned());
        let Some(run_id) = from_tag.or(from_name).and_then(|s| Id::parse_str(&s).ok()) else {
            return Ok(false);
        };
        let job_id = job.job_id.as_deref().unwrap_or_default();
        self.apply(run_id, Some(job_id), &batch_progress(job)).await
    }

    /// Settles a run on a report about `infrastructure` (a task ARN or job id). A report about
    /// another task than the one recorded (an abandoned earlier attempt) is ignored.
    async fn apply(
        &self,
        run_id: Id,
        infrastructure: Option<&str>,
        progress: &Progress,
    ) -> Result<bool> {
        let Some(current) = self.services.store.read_flow_run(run_id).await? else {
            return Ok(false);
        };
        let run = current.value;
        if let (Some(recorded), Some(reported)) =
            (run.infrastructure_pid.as_deref(), infrastructure)
            && !reported.is_empty()
            && !recorded.ends_with(reported)
        {
            tracing::info!(run = %run_id, recorded, reported, "report about another task or job; ignored");
            return Ok(false);
        }
        let Some((state, force)) = settle(run.state_type(), progress, self.now()) else {
            return Ok(false);
        };
        let result = self
            .services
            .set_flow_run_state(run_id, state, force)
            .await?;
        if result.committed {
            tracing::info!(run = %run_id, %progress, "settled flow run from its infrastructure");
        }
        Ok(result.committed)
    }

    /// Push runs due by `until` that are still SCHEDULED, for the dispatch queue.
    pub async fn due_runs(&self, until: Timestamp) -> Result<Vec<(Id, Timestamp)>> {
        let mut out = Vec::new();
        for (_, queues) in self.container_pools(false).await? {
            let filter = FlowRunFilter {
                work_queue_ids: Some(queues),
                state_types: Some(vec![StateType::Scheduled]),
                next_scheduled_start_time_before: Some(until),
                exclude_in_process_retries: true,
                ..Default::default()
            };
            let runs = self
                .services
                .store
                .list_flow_runs(&filter, FlowRunSort::NextScheduledStartTimeAsc, None, 0)
                .await?;
            out.extend(
                runs.into_iter()
                    .filter_map(|r| r.next_scheduled_start_time.map(|t| (r.id, t))),
            );
        }
        Ok(out)
    }

    /// Pools whose runs go to ECS or Batch, with their queues: push pools only, or with
    /// `include_pull` the `ecs`/`batch` pools workers serve too (the sweep follows their
    /// submitted runs, so a run outlives the worker that submitted it).
    async fn container_pools(&self, include_pull: bool) -> Result<Vec<(WorkPool, Vec<Id>)>> {
        let mut types = vec!["ecs:push".to_owned(), "batch:push".to_owned()];
        if include_pull {
            types.extend(["ecs".to_owned(), "batch".to_owned()]);
        }
        let filter = WorkPoolFilter {
            types: Some(types),
            ..Default::default()
        };
        let pools = self
            .services
            .store
            .list_work_pools(&filter, None, 0)
            .await?;
        let mut out = Vec::new();
        for pool in pools {
            let queues: Vec<Id> = self
                .services
                .store
                .list_work_queues(pool.id)
                .await?
                .into_iter()
                .map(|q| q.id)
                .collect();
            if !queues.is_empty() {
                out.push((pool, queues));
            }
        }
        Ok(out)
    }

    /// The reconcile sweep: dispatches due push runs nobody dispatched, resumes abandoned
    /// submissions, settles live runs from AWS (those of `ecs`/`batch` pull pools too),
    /// carries cancellations through, and ends CANCELLING runs that outlive their timeout.
    /// Stops early after `deadline`.
    pub async fn sweep(&self, deadline: Option<Timestamp>) -> Result<SweepSummary> {
        let mut summary = SweepSummary::default();
        let past = |d: Option<Timestamp>, now: Timestamp| d.is_some_and(|d| now >= d);
        for (pool, queues) in self.container_pools(true).await? {
            let Some(kind) = Kind::of_pool_type(&pool.pool_type) else {
                continue;
            };
            let filter = FlowRunFilter {
                work_queue_ids: Some(queues),
                state_types: Some(vec![
                    StateType::Scheduled,
                    StateType::Pending,
                    StateType::Running,
                    StateType::Cancelling,
                ]),
                ..Default::default()
            };
            let runs = self
                .services
                .store
                .list_flow_runs(&filter, FlowRunSort::NextScheduledStartTimeAsc, None, 0)
                .await?;
            let mut to_observe: HashMap<Option<String>, Vec<(FlowRun, String)>> = HashMap::new();
            for run in runs {
                let now = self.now();
                if past(deadline, now) {
                    return Ok(summary);
                }
                let state = run.state.as_ref();
                let lease = self.settings.submit_lease_seconds;
                // Claiming and submitting belong to the workers of pull pools.
                let push = pool.is_push();
                match (run.state_type(), run.infrastructure_pid.clone()) {
                    (Some(StateType::Scheduled), _)
                        if push
                            && !is_in_process_retry(&run)
                            && run.next_scheduled_start_time.is_some_and(|t| t <= now) =>
                    {
                        if let Dispatched::Submitted { .. } =
                            Box::pin(self.dispatch(run.id)).await?
                        {
                            summary.dispatched += 1;
                        }
                    }
                    (Some(StateType::Pending), None) if push && older_than(state, lease, now) => {
                        if let Dispatched::Submitted { .. } =
                            Box::pin(self.dispatch(run.id)).await?
                        {
                            summary.resumed += 1;
                        }
                    }
                    // Claimed, never submitted: nothing to stop once the lease is over.
                    (Some(StateType::Cancelling), None)
                        if push && older_than(state, lease, now) =>
                    {
                        self.force_cancel(run.id, "Flow run cancelled before it was submitted.")
                            .await?;
                        summary.settled += 1;
                    }
                    (Some(StateType::Cancelling), Some(_))
                        if older_than(state, self.settings.cancelling_timeout_seconds, now) =>
                    {
                        self.force_cancel(
                            run.id,
                            "Flow run cancellation timed out; its infrastructure may need \
                             checking.",
                        )
                        .await?;
                        summary.cancellations_timed_out += 1;
                    }
                    (Some(StateType::Cancelling), Some(pid)) => {
                        let credentials = self.credentials_of(&run, &pool, kind).await;
                        if self.stop(kind, &pid, credentials.as_ref()).await {
                            summary.stops_requested += 1;
                        }
                        to_observe
                            .entry(credentials.map(|c| c.to_string()))
                            .or_default()
                            .push((run, pid));
                    }
                    (Some(StateType::Pending | StateType::Running), Some(pid))
                        if older_than(state, self.settings.reconcile_after_seconds, now) =>
                    {
                        let credentials = self.credentials_of(&run, &pool, kind).await;
                        to_observe
                            .entry(credentials.map(|c| c.to_string()))
                            .or_default()
                            .push((run, pid));
                    }
                    _ => {}
                }
            }
            for (credentials, runs) in to_observe {
                let credentials: Option<Value> =
                    credentials.and_then(|c| serde_json::from_str(&c).ok());
                let ids: Vec<String> = runs.iter().map(|(_, pid)| pid.clone()).collect();
                let seen = match self.infra.observe(kind, &ids, credentials.as_ref()).await {
                    Ok(seen) => seen,
                    Err(e) => {
                        tracing::warn!(pool = %pool.name, error = %e, "describe failed; next sweep retries");
                        continue;
                    }
                };
                summary.observed += seen.len();
                for ((run, _), progress) in runs.iter().zip(seen) {
                    let now = self.now();
                    // A task not visible yet right after submission is not lost.
                    if progress == Progress::Missing
                        && !older_than(run.state.as_ref(), self.settings.missing_grace_seconds, now)
                    {
                        continue;
                    }
                    if self.apply(run.id, None, &progress).await? {
                        summary.settled += 1;
                    }
                }
            }
        }
        Ok(summary)
    }

    /// Ends a run that cannot be submitted CRASHED, in Prefect's words.
    async fn submission_failed(&self, run_id: Id, reason: &str) -> Result<Dispatched> {
        let message = format!("Failed to submit flow run to infrastructure: {reason}");
        self.services
            .set_flow_run_state(
                run_id,
                State::new(StateType::Crashed, self.now()).with_message(message.as_str()),
                false,
            )
            .await?;
        Ok(Dispatched::Crashed(message))
    }

    async fn force_cancel(&self, run_id: Id, message: &str) -> Result<()> {
        self.services
            .set_flow_run_state(
                run_id,
                State::new(StateType::Cancelled, self.now()).with_message(message),
                true,
            )
            .await?;
        Ok(())
    }

    /// The credentials a run was submitted with (its rendered `aws_credentials`); `None` for the
    /// ambient chain, or when the configuration no longer renders.
    async fn credentials_of(&self, run: &FlowRun, pool: &WorkPool, kind: Kind) -> Option<Value> {
        match self.prepare(run, pool, kind).await {
            Ok(p) => p.credentials,
            Err(_) => None,
        }
    }
}

enum Unprepared {
    DeploymentGone(String),
    Invalid(String),
    Service(ServiceError),
}

impl From<sluice_store::StoreError> for Unprepared {
    fn from(e: sluice_store::StoreError) -> Unprepared {
        Unprepared::Service(e.into())
    }
}

/// The dispatch queue of `sluice server`: runs go to [`run_local`] over a channel, which sleeps
/// until each one's time.
#[derive(Clone)]
pub struct LocalQueue {
    tx: tokio::sync::mpsc::UnboundedSender<(Id, Timestamp)>,
}

/// A local queue and the receiver [`run_local`] reads.
#[must_use]
pub fn local_queue() -> (
    LocalQueue,
    tokio::sync::mpsc::UnboundedReceiver<(Id, Timestamp)>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    (LocalQueue { tx }, rx)
}

#[async_trait::async_trait]
impl sluice_infra::DispatchQueue for LocalQueue {
    async fn enqueue(
        &self,
        runs: &[(Id, Timestamp)],
        _now: Timestamp,
    ) -> std::result::Result<(), InfraError> {
        for run in runs {
            self.tx.send(*run).map_err(|_| {
                InfraError::Transient("the local dispatcher has stopped".to_owned())
            })?;
        }
        Ok(())
    }
}

/// `sluice server`'s dispatcher: a timer per due run (so a run is submitted at its second, not
/// at the next poll), and every `sweep_every` a look for due runs plus the reconcile sweep,
/// which, with no EventBridge locally, is what follows tasks and jobs to their end.
pub async fn run_local(
    dispatcher: Dispatcher,
    mut announced: tokio::sync::mpsc::UnboundedReceiver<(Id, Timestamp)>,
    sweep_every: std::time::Duration,
    shutdown: impl Future<Output = ()>,
) {
    let timers: Arc<std::sync::Mutex<std::collections::HashSet<Id>>> = Arc::default();
    let arm = |id: Id, at: Timestamp| {
        let fresh = timers.lock().is_ok_and(|mut t| t.insert(id));
        if !fresh {
            return;
        }
        let d = dispatcher.clone();
        let timers = timers.clone();
        tokio::spawn(async move {
            let mut at = at;
            loop {
                let wait = (at - d.now()).to_std().unwrap_or_default();
                tokio::time::sleep(wait).await;
                match d.dispatch(id).await {
                    Ok(Dispatched::NotYetDue(next)) if next > at => at = next,
                    Ok(Dispatched::NotYetDue(_)) => {
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    }
                    Ok(outcome) => {
                        tracing::debug!(run = %id, outcome = %outcome, "dispatched");
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(run = %id, error = %e, "dispatch failed; the sweep retries");
                        break;
                    }
                }
            }
            if let Ok(mut t) = timers.lock() {
                t.remove(&id);
            }
        });
    };
    let mut sweep = tokio::time::interval(sweep_every);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some((id, at)) = announced.recv() => arm(id, at),
            _ = sweep.tick() => {
                let horizon = dispatcher.now()
                    + chrono::Duration::seconds(dispatcher.settings.dispatch_horizon_seconds);
                match dispatcher.due_runs(horizon).await {
                    Ok(due) => for (id, at) in due { arm(id, at) },
                    Err(e) => tracing::warn!(error = %e, "listing due push runs failed"),
                }
                match dispatcher.sweep(None).await {
                    Ok(s) if s != SweepSummary::default() => tracing::info!(
                        dispatched = s.dispatched,
                        resumed = s.resumed,
                        observed = s.observed,
                        settled = s.settled,
                        stops_requested = s.stops_requested,
                        cancellations_timed_out = s.cancellations_timed_out,
                        "push sweep"
                    ),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "push sweep failed"),
                }
            }
        }
    }
}
