//! Flow runs: creation, orchestrated state changes (compare-and-set), updates.

use sluice_core::domain::{FlowRun, Id, JsonMap, State, StateType};
use sluice_core::orchestration::{
    self, DeploymentConcurrency, OrchestrationInput, Proposal, SetStateStatus,
};
use sluice_store::{Created, FlowRunFilter, FlowRunSort, Versioned};

use crate::Services;
use crate::deployment_slots::{LEASE_ID, holds_slot, lease_of};
use crate::error::{Result, ServiceError};

/// Body of a run creation, already parsed.
#[derive(Debug, Clone, Default)]
pub struct FlowRunInput {
    pub flow_id: Option<Id>,
    pub name: Option<String>,
    pub state: Option<State>,
    pub parameters: JsonMap,
    pub context: JsonMap,
    pub tags: Vec<String>,
    pub labels: JsonMap,
    pub idempotency_key: Option<String>,
    pub parent_task_run_id: Option<Id>,
    pub work_pool_name: Option<String>,
    pub work_queue_name: Option<String>,
    pub job_variables: Option<JsonMap>,
    pub empirical_policy: JsonMap,
    pub flow_version: Option<String>,
    pub deployment_id: Option<Id>,
    pub deployment_version: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct FlowRunPatch {
    pub name: Option<String>,
    pub parameters: Option<JsonMap>,
    pub tags: Option<Vec<String>>,
    pub infrastructure_pid: Option<Option<String>>,
    pub job_variables: Option<Option<JsonMap>>,
    pub empirical_policy: Option<JsonMap>,
    pub flow_version: Option<Option<String>>,
    /// Merged into the run's labels (`PATCH /flow_runs/{id}/labels`).
    pub labels_merge: Option<JsonMap>,
}

/// What `set_state` answers: Prefect's `OrchestrationResult` plus whether a state was written.
#[derive(Debug, Clone)]
pub struct SetStateResult {
    pub status: SetStateStatus,
    pub state: Option<State>,
    pub reason: Option<String>,
    pub delay_seconds: Option<i64>,
    /// A new state was committed (HTTP 201 rather than 200).
    pub committed: bool,
}

/// A precondition on the run as read, checked before the rules and held by the compare-and-set
/// on that read's version.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Guard {
    None,
    /// Sluice's claim: only while the run is SCHEDULED.
    OnlyFromScheduled,
    /// Taking over a push submission: the run is PENDING, has no infrastructure yet, and its
    /// PENDING state is older than the lease (so whoever claimed it has given up or died).
    SubmissionLease {
        seconds: i64,
    },
}

impl Guard {
    fn refuses(self, run: &FlowRun, now: sluice_core::domain::Timestamp) -> Option<String> {
        let current = run
            .state_type()
            .map_or("without a state", StateType::as_str);
        match self {
            Guard::None => None,
            Guard::OnlyFromScheduled => {
                (run.state_type() != Some(StateType::Scheduled)).then(|| {
                    format!("The run is no longer SCHEDULED (it is {current}); it is not claimed.")
                })
            }
            Guard::SubmissionLease { seconds } => {
                let pending = run.state_type() == Some(StateType::Pending);
                let unsubmitted = run.infrastructure_pid.is_none();
                let expired = run
                    .state
                    .as_ref()
                    .is_some_and(|s| s.timestamp + chrono::Duration::seconds(seconds) <= now);
                (!(pending && unsubmitted && expired)).then(|| {
                    format!(
                        "The run's submission is not up for takeover (it is {current}, \
                         infrastructure {}).",
                        run.infrastructure_pid.as_deref().unwrap_or("not recorded")
                    )
                })
            }
        }
    }
}

/// How many times a state proposal is re-read and re-orchestrated after losing a race. Each
/// retry sees the winner's state, so the loser's answer is decided by the rules, not by luck.
const CAS_ATTEMPTS: usize = 16;

impl Services {
    pub async fn read_flow_run(&self, id: Id) -> Result<Versioned<FlowRun>> {
        self.store
            .read_flow_run(id)
            .await?
            .ok_or_else(|| ServiceError::NotFound("Flow run not found".to_owned()))
    }

    /// Creates a run (Prefect's `POST /flow_runs/`). With no state it starts PENDING; the
    /// initial state is written without guards. A repeated idempotency key returns the first
    /// run with `created = false`.
    pub async fn create_flow_run(&self, input: FlowRunInput) -> Result<Created<FlowRun>> {
        let flow_id = input
            .flow_id
            .ok_or_else(|| ServiceError::Invalid("flow_id is required".to_owned()))?;
        let Some(flow) = self.store.read_flow(flow_id).await? else {
            return Err(ServiceError::NotFound(format!("Flow {flow_id} not found")));
        };
        let mut pool_read = None;
        let now = self.now();
        let mut run = FlowRun::new(flow_id, now);
        if let Some(name) = input.name {
            run.name = name;
        }
        run.parameters = input.parameters;
        run.context = input.context;
        run.tags = input.tags;
        run.labels = input.labels;
        run.idempotency_key = input.idempotency_key;
        run.parent_task_run_id = input.parent_task_run_id;
        run.job_variables = input.job_variables;
        run.empirical_policy = input.empirical_policy;
        run.flow_version = input.flow_version;
        run.deployment_id = input.deployment_id;
        run.deployment_version = input.deployment_version;
        if let Some(pool_name) = &input.work_pool_name {
            let pool = self.read_work_pool(pool_name).await?;
            pool_read = Some(pool.clone());
            let queue = match &input.work_queue_name {
                Some(q) => self.read_work_queue(pool_name, q).await?.1,
                None => {
                    let id = pool.default_queue_id.ok_or_else(|| {
                        ServiceError::Conflict(format!(
                            "work pool {pool_name:?} has no default queue"
                        ))
                    })?;
                    self.store.read_work_queue(id).await?.ok_or_else(|| {
                        ServiceError::Conflict(format!(
                            "work pool {pool_name:?} has no default queue"
                        ))
                    })?
                }
            };
            run.work_pool_id = Some(pool.id);
            run.work_pool_name = Some(pool.name);
            run.work_queue_id = Some(queue.id);
            run.work_queue_name = Some(queue.name);
        } else {
            run.work_queue_name = input.work_queue_name;
        }
        let state = input
            .state
            .unwrap_or_else(|| State::new(StateType::Pending, now));
        let run = orchestration::set_initial_state(run, state, now);
        let created = self.store.create_flow_run(&run).await?;
        if created.created {
            // The flow and the pool were just read: the event's related resources need not
            // read them again.
            self.remember_related(&created.value, flow, pool_read).await;
            self.emit_flow_run_state_change(&created.value, None).await;
        }
        if created.created && created.value.parent_task_run_id.is_some() {
            Box::pin(self.mirror_to_parent_task_run(&created.value)).await;
        }
        if created.created
            && created.value.state_type() == Some(StateType::Scheduled)
            && let Some(at) = created.value.next_scheduled_start_time
        {
            let pool_type = match created.value.work_pool_id {
                Some(id) => self.store.read_work_pool(id).await?.map(|p| p.pool_type),
                None => None,
            };
            self.announce_push_runs(pool_type.as_deref(), &[(created.value.id, at)])
                .await;
        }
        Ok(created)
    }

    /// Proposes a state (Prefect's `POST /flow_runs/{id}/set_state`). The rules decide in
    /// `sluice_core::orchestration`; the commit is a compare-and-set on the version read, so of
    /// two racing claimants exactly one is accepted and the other, re-reading, is aborted.
    pub async fn set_flow_run_state(
        &self,
        run_id: Id,
        state: State,
        force: bool,
    ) -> Result<SetStateResult> {
        Box::pin(self.orchestrate_and_commit(run_id, state, force, false, Guard::None)).await
    }

    /// A claim that holds only while the run is still SCHEDULED: `set_state` with a
    /// precondition checked against the version the commit names. Prefect's rules accept
    /// PENDING from a COMPLETED or FAILED run (a manual rerun), so a worker acting on a stale
    /// poll could otherwise start a run that another worker already finished; with this, that
    /// late claim is aborted instead.
    pub async fn claim_flow_run(&self, run_id: Id, state: State) -> Result<SetStateResult> {
        Box::pin(self.orchestrate_and_commit(run_id, state, false, false, Guard::OnlyFromScheduled))
            .await
    }

    /// The late-run marker's proposal, under Prefect's `MarkLateRunsPolicy` (which also cancels
    /// the run when its deployment's CANCEL_NEW limit is full), with the same compare-and-set.
    pub(crate) async fn mark_flow_run_late(
        &self,
        run_id: Id,
        late: State,
    ) -> Result<SetStateResult> {
        Box::pin(self.orchestrate_and_commit(run_id, late, false, true, Guard::None)).await
    }

    pub(crate) async fn orchestrate_and_commit(
        &self,
        run_id: Id,
        state: State,
        force: bool,
        mark_late: bool,
        guard: Guard,
    ) -> Result<SetStateResult> {
        for _ in 0..CAS_ATTEMPTS {
            let Versioned {
                value: run,
                version,
            } = self.read_flow_run(run_id).await?;
            if let Some(reason) = guard.refuses(&run, self.now()) {
                return Ok(SetStateResult {
                    status: SetStateStatus::Abort,
                    reason: Some(reason),
                    state: run.state,
                    delay_seconds: None,
                    committed: false,
                });
            }
            let now = self.now();
            // A claim from outside PENDING/RUNNING/CANCELLING takes a deployment slot first
            // (with a lease, in the store's conditional write); the rules then see the limit
            // free or full. The slot is given back if this proposal does not commit.
            let deployment = match run.deployment_id {
                Some(d) if mark_late || state.state_type == StateType::Pending => {
                    self.store.read_deployment(d).await?
                }
                _ => None,
            };
            let mut slot_lease = None;
            let deployment_concurrency = match deployment
                .as_ref()
                .and_then(|d| d.concurrency_limit.map(|size| (d, size)))
            {
                None => None,
                Some((d, size)) => {
                    let claiming = !force
                        && !mark_late
                        && state.state_type == StateType::Pending
                        && !holds_slot(run.state_type());
                    let held = if claiming && size > 0 {
                        let claim = Box::pin(self.claim_deployment_slot(d, size, &run)).await?;
                        slot_lease = claim.lease_id;
                        claim.held_by_others
                    } else {
                        self.deployment_slots_held(d.id).await?.unwrap_or(0)
                    };
                    let mut facts = DeploymentConcurrency::from_deployment(d, held);
                    facts.slot_wait_seconds = self.settings.concurrency_slot_wait_seconds;
                    Some(facts)
                }
            };
            let give_back = |lease: Option<Id>| async move {
                if let (Some(lease), Some(d)) = (lease, run.deployment_id) {
                    Box::pin(self.release_deployment_slot(d, Some(lease))).await;
                }
            };
            let input = OrchestrationInput {
                run: &run,
                proposal: Proposal {
                    state: state.clone(),
                    force,
                },
                now,
                deployment_concurrency,
            };
            let outcome = if mark_late {
                orchestration::orchestrate_mark_late(input)
            } else {
                orchestration::orchestrate_flow_run(input)
            };
            let Some(mut updated) = outcome.updated_run else {
                give_back(slot_lease).await;
                return Ok(SetStateResult {
                    status: outcome.status,
                    state: outcome.state,
                    reason: outcome.details.reason,
                    delay_seconds: outcome.details.delay_seconds,
                    committed: false,
                });
            };
            // A claimed run starts a new attempt: an infrastructure id left from an earlier
            // one (a retry) must not be mistaken for this attempt's.
            if matches!(guard, Guard::OnlyFromScheduled)
                && updated.state_type() == Some(StateType::Pending)
            {
                updated.infrastructure_pid = None;
            }
            // The slot's lease goes with the run's state while it holds the slot (clients send
            // states without it, as Prefect's keep it for them).
            let held_lease = slot_lease.or_else(|| lease_of(run.state.as_ref()));
            let keeps_slot = holds_slot(updated.state_type());
            let mut answered = outcome.state;
            if let (Some(lease), true) = (held_lease, keeps_slot) {
                let new_id = updated.state.as_ref().map(|s| s.id);
                for s in [
                    updated.state.as_mut(),
                    answered.as_mut().filter(|s| Some(s.id) == new_id),
                ]
                .into_iter()
                .flatten()
                {
                    let slot = s
                        .state_details
                        .entry(LEASE_ID)
                        .or_insert(serde_json::Value::Null);
                    if slot.is_null() {
                        *slot = serde_json::Value::String(lease.to_string());
                    }
                }
            }
            match self.store.commit_flow_run_state(&updated, version).await {
                Ok(_) => {
                    self.emit_flow_run_state_change(&updated, run.state.as_ref())
                        .await;
                    if updated.parent_task_run_id.is_some() {
                        Box::pin(self.mirror_to_parent_task_run(&updated)).await;
                    }
                    if let Some(d) = run.deployment_id {
                        let from = run.state_type();
                        let to = updated.state_type();
                        let retrying_in_process = to == Some(StateType::Scheduled)
                            && updated
                                .state
                                .as_ref()
                                .is_some_and(|s| s.name == "AwaitingRetry");
                        if holds_slot(from) && !keeps_slot && !retrying_in_process {
                            Box::pin(self.release_deployment_slot(d, lease_of(run.state.as_ref())))
                                .await;
                        }
                        if from == Some(StateType::Pending)
                            && to == Some(StateType::Running)
                            && let (Some(lease), Some(dep)) = (held_lease, deployment.as_ref())
                        {
                            Box::pin(self.renew_deployment_slot(dep, lease)).await;
                        }
                    }
                    return Ok(SetStateResult {
                        status: outcome.status,
                        state: answered,
                        reason: outcome.details.reason,
                        delay_seconds: outcome.details.delay_seconds,
                        committed: true,
                    });
                }
                Err(e) if e.is_conflict() => {
                    give_back(slot_lease).await;
                    continue;
                }
                Err(e) => {
                    give_back(slot_lease).await;
                    return Err(e.into());
                }
            }
        }
        Err(ServiceError::Conflict(format!(
            "flow run {run_id} kept changing; state proposal not applied, try again"
        )))
    }

    /// Applies a partial update with compare-and-set, retrying on lost races.
    pub async fn update_flow_run(&self, run_id: Id, patch: FlowRunPatch) -> Result<()> {
        for _ in 0..CAS_ATTEMPTS {
            let Versioned {
                value: mut run,
                version,
            } = self.read_flow_run(run_id).await?;
            if let Some(jv) = &patch.job_variables {
                if run.state_type() != Some(StateType::Scheduled) {
                    return Err(ServiceError::BadRequest(
                        "Job variables for a flow run can only be updated when the flow run is in a SCHEDULED state.".to_owned(),
                    ));
                }
                if let (Some(vars), Some(deployment_id)) = (jv, run.deployment_id) {
                    self.validate_run_job_variables(deployment_id, vars).await?;
                }
            }
            apply_patch(&mut run, patch.clone());
            run.updated = self.now();
            match self.store.update_flow_run(&run, version).await {
                Ok(_) => return Ok(()),
                Err(e) if e.is_conflict() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ServiceError::Conflict(format!(
            "flow run {run_id} kept changing; update not applied"
        )))
    }

    pub async fn delete_flow_run(&self, run_id: Id) -> Result<()> {
        if !self.store.delete_flow_run(run_id).await? {
            return Err(ServiceError::NotFound("Flow run not found".to_owned()));
        }
        Ok(())
    }

    pub async fn list_flow_runs(
        &self,
        filter: &FlowRunFilter,
        sort: FlowRunSort,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<FlowRun>> {
        Ok(self
            .store
            .list_flow_runs(filter, sort, Some(limit), offset)
            .await?)
    }
}

fn apply_patch(run: &mut FlowRun, patch: FlowRunPatch) {
    if let Some(name) = patch.name {
        run.name = name;
    }
    if let Some(p) = patch.parameters {
        run.parameters = p;
    }
    if let Some(t) = patch.tags {
        run.tags = t;
    }
    if let Some(pid) = patch.infrastructure_pid {
        run.infrastructure_pid = pid;
    }
    if let Some(jv) = patch.job_variables {
        run.job_variables = jv;
    }
    if let Some(ep) = patch.empirical_policy {
        run.empirical_policy = ep;
    }
    if let Some(v) = patch.flow_version {
        run.flow_version = v;
    }
    if let Some(labels) = patch.labels_merge {
        for (k, v) in labels {
            run.labels.insert(k, v);
        }
    }
}
