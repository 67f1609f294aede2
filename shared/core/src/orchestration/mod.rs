//! Flow-run orchestration: what happens when someone proposes a new state for a run
//! (`POST /flow_runs/{id}/set_state`, Prefect's `CoreFlowPolicy`, `MinimalFlowPolicy` and
//! `GlobalFlowPolicy`).
//!
//! [`orchestrate_flow_run`] is a pure function of the run as read, the proposal, the caller's
//! `now` and the deployment's concurrency figures. It answers what to tell the client and, when a
//! state must be written, the run as it should be stored. Callers make the write atomic with the
//! read (row lock or compare-and-set on a version); that plus the PENDING rule is what lets
//! exactly one of several racing workers claim a run (§8.2).
//!
//! # Rules (in order)
//! With `force = false` (Prefect's `CoreFlowPolicy`):
//! 1. keep the current deployment-concurrency lease id when the proposal sends none;
//! 2. PreventDuplicateTransitions: same `transition_id` as the current state → REJECT;
//! 3. HandleFlowTerminalStateTransitions (ABORT to CANCELLING/PAUSED/CRASHED, REJECT leaving a
//!    COMPLETED state with a persisted result, ABORT rescheduling without a deployment, otherwise
//!    reset pause metadata and set `retry_type`);
//! 4. EnforceCancellingToCancelledTransition;
//! 5. BypassCancellingFlowRunsWithNoInfra (REJECT, written as Cancelled);
//! 6. PreventPendingTransitions (the claim lock);
//! 7. the lease-id copy of ValidateDeploymentConcurrencyAtRunning;
//! 8. SecureFlowConcurrencySlots (deployment concurrency at → PENDING);
//! 9. EnsureOnlyScheduledFlowsMarkedLate;
//! 10. HandlePausingFlows and HandleResumingPausedFlows;
//! 11. CopyScheduledTime, WaitForScheduledTime, RetryFailedFlows.
//!
//! With `force = true` only the result-data-loss guard and the no-infrastructure cancel bypass run.
//! Bookkeeping runs on every written state either way.
//!
//! # Left out, on purpose
//! - Leases. Sluice counts a deployment's runs in PENDING, RUNNING or CANCELLING instead of
//!   holding slots, so nothing is acquired, renewed (ValidateDeploymentConcurrencyAtRunning),
//!   revoked for old clients, or released (ReleaseFlowConcurrencySlots): leaving those states
//!   frees the slot by itself. No `deployment_concurrency_lease_id` is minted, so clients never
//!   try to renew one. The caller must count and commit under one lock per deployment if two
//!   different runs may race for the last slot.
//! - "Deployment not found." (ABORT when the run's deployment was deleted): callers pass no
//!   concurrency figures for a missing deployment, which means no limit. Workers check the
//!   deployment themselves before claiming (§8.2 step 1).
//! - Events (InstrumentFlowRunStateTransitions), the parent task run's state
//!   (UpdateSubflowParentTask), and compatibility branches for API versions before 0.8.4 or
//!   workers that manage deployment concurrency themselves.
//! - Prefect lets HandleResumingPausedFlows mark the run `resuming` even when it rejects; here a
//!   transition that writes nothing never changes the run, so `updated_run: None` always means
//!   "nothing to store".
//! - `estimated_run_time` and `estimated_start_time_delta` are not stored: they depend on the
//!   reader's clock, see [`estimated_run_time`] and [`estimated_start_time_delta`].
//!
//! # Deviations
//! - A rule's replacement state (Cancelled, AwaitingRetry, AwaitingConcurrencySlot, ...) keeps the
//!   proposal's `transition_id`, so retrying a request whose answer was lost is idempotent.
//! - A new state is stamped at least 1µs after the current one, keeping each run's history
//!   strictly ordered (Prefect only avoids exact collisions).
//! - Without a `pause_key`, the pause is recorded under the new state's id instead of a random
//!   UUID.
//! - A rule's policy edits are dropped before bookkeeping when its transition does not happen;
//!   Prefect reverts them afterwards, so only the `resuming` flag bookkeeping reads could differ.
//!
//! # Worth knowing
//! - A PENDING proposal for a CANCELLING run is REJECTed (EnforceCancellingToCancelledTransition
//!   fires before PreventPendingTransitions), as in Prefect; workers skip it either way.
//! - Messages that embed a state type in Prefect's f-strings read `StateType.PENDING`, as
//!   Python 3.12 renders them.

mod bookkeeping;
mod fields;
mod rules;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use crate::domain::{Deployment, FlowRun, State, StateType, Timestamp};

/// The orchestration verdict, Prefect's `SetStateStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SetStateStatus {
    /// The proposed state was written.
    Accept,
    /// The proposal was refused. Either nothing was written and the current state is returned, or
    /// a replacement state was written and is returned.
    Reject,
    /// The client should stop trying to move this run.
    Abort,
    /// Nothing was written; the client should propose again after `delay_seconds`.
    Wait,
}

impl SetStateStatus {
    /// The wire spelling, e.g. `ACCEPT`.
    pub fn as_str(self) -> &'static str {
        match self {
            SetStateStatus::Accept => "ACCEPT",
            SetStateStatus::Reject => "REJECT",
            SetStateStatus::Abort => "ABORT",
            SetStateStatus::Wait => "WAIT",
        }
    }

    /// The `details.type` tag that goes with this status, e.g. `reject_details`.
    pub fn details_type(self) -> &'static str {
        match self {
            SetStateStatus::Accept => "accept_details",
            SetStateStatus::Reject => "reject_details",
            SetStateStatus::Abort => "abort_details",
            SetStateStatus::Wait => "wait_details",
        }
    }
}

/// The `details` of an orchestration result: a reason for anything but ACCEPT, and a delay for
/// WAIT.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Details {
    pub reason: Option<String>,
    pub delay_seconds: Option<i64>,
}

impl Details {
    fn because(reason: String) -> Details {
        Details {
            reason: Some(reason),
            delay_seconds: None,
        }
    }
}

/// What happens to a run that finds its deployment's concurrency limit full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CollisionStrategy {
    /// Put it back in the queue as `AwaitingConcurrencySlot` (Prefect's default).
    #[default]
    Enqueue,
    /// Cancel it.
    CancelNew,
}

impl CollisionStrategy {
    pub fn as_str(self) -> &'static str {
        match self {
            CollisionStrategy::Enqueue => "ENQUEUE",
            CollisionStrategy::CancelNew => "CANCEL_NEW",
        }
    }

    pub fn parse(s: &str) -> Option<CollisionStrategy> {
        match s {
            "ENQUEUE" => Some(CollisionStrategy::Enqueue),
            "CANCEL_NEW" => Some(CollisionStrategy::CancelNew),
            _ => None,
        }
    }
}

/// The deployment-concurrency figures for one orchestration, looked up by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeploymentConcurrency {
    /// The deployment's limit; `None` means unlimited.
    pub limit: Option<i64>,
    /// Runs of the deployment in PENDING, RUNNING or CANCELLING, not counting the run being
    /// orchestrated.
    pub active_slots: i64,
    pub collision_strategy: CollisionStrategy,
    /// How far an ENQUEUE'd run is pushed back (`deployments.concurrency_slot_wait_seconds`).
    pub slot_wait_seconds: i64,
}

impl DeploymentConcurrency {
    /// Prefect's default for `PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS`.
    pub const DEFAULT_SLOT_WAIT_SECONDS: i64 = 30;

    /// The figures for `deployment`, given how many of its runs hold a slot. The strategy comes
    /// from `concurrency_options.collision_strategy` (ENQUEUE when absent or unknown).
    pub fn from_deployment(deployment: &Deployment, active_slots: i64) -> DeploymentConcurrency {
        let collision_strategy = deployment
            .concurrency_options
            .as_ref()
            .and_then(|o| o.get("collision_strategy"))
            .and_then(serde_json::Value::as_str)
            .and_then(CollisionStrategy::parse)
            .unwrap_or_default();
        DeploymentConcurrency {
            limit: deployment.concurrency_limit,
            active_slots,
            collision_strategy,
            slot_wait_seconds: Self::DEFAULT_SLOT_WAIT_SECONDS,
        }
    }

    /// No slot is free. Meaningless without a limit, where it is always false.
    pub fn is_full(&self) -> bool {
        self.limit.is_some_and(|limit| self.active_slots >= limit)
    }
}

/// A proposed state, as received in `set_state`.
#[derive(Debug, Clone, PartialEq)]
pub struct Proposal {
    /// The state as the client sent it. Its timestamp is replaced by `now` and its name and
    /// scheduled time defaulted ([`normalize_proposed_state`]); its id is kept.
    pub state: State,
    /// Skip the guard rules (Prefect's `MinimalFlowPolicy`).
    pub force: bool,
}

impl Proposal {
    pub fn new(state: State) -> Proposal {
        Proposal {
            state,
            force: false,
        }
    }

    pub fn forced(state: State) -> Proposal {
        Proposal { state, force: true }
    }
}

/// Everything one orchestration needs.
#[derive(Debug, Clone)]
pub struct OrchestrationInput<'a> {
    /// The run as read, with its current state. Whether it has a deployment is read from
    /// `run.deployment_id`.
    pub run: &'a FlowRun,
    pub proposal: Proposal,
    pub now: Timestamp,
    /// `None` when the run has no deployment, or its deployment has no limit.
    pub deployment_concurrency: Option<DeploymentConcurrency>,
}

/// The answer to one proposal.
#[derive(Debug, Clone, PartialEq)]
pub struct OrchestrationOutcome {
    pub status: SetStateStatus,
    /// The state for the client: the written state when one was written (on ACCEPT, or REJECT with
    /// a replacement), otherwise the run's current state (`None` only for a run with no state).
    pub state: Option<State>,
    pub details: Details,
    /// The run to store when a state was written: new state, policy changes and bookkeeping
    /// applied, `updated = now`. `None` means nothing changes.
    pub updated_run: Option<FlowRun>,
}

impl OrchestrationOutcome {
    /// A state was written, so the API answers 201 rather than 200.
    pub fn wrote_state(&self) -> bool {
        self.updated_run.is_some()
    }
}

/// Orchestrates a proposed state for a flow run, with `CoreFlowPolicy` (or `MinimalFlowPolicy`
/// when the proposal is forced) and the global bookkeeping.
pub fn orchestrate_flow_run(input: OrchestrationInput<'_>) -> OrchestrationOutcome {
    let policy = if input.proposal.force {
        rules::MINIMAL_POLICY
    } else {
        rules::CORE_POLICY
    };
    orchestrate(input, policy)
}

/// Orchestrates the late-runs service's proposal of `Late` (Prefect's `MarkLateRunsPolicy`):
/// only an un-late SCHEDULED run is marked, and with a full CANCEL_NEW deployment limit the run is
/// cancelled instead. `force` is ignored.
pub fn orchestrate_mark_late(input: OrchestrationInput<'_>) -> OrchestrationOutcome {
    orchestrate(input, rules::MARK_LATE_POLICY)
}

/// Writes a new run's first state, as `POST /flow_runs/` does (forced, so no guard rules), with
/// bookkeeping applied. Meant for a run with no state; given one that has a state it behaves as a
/// forced `set_state` and returns the run unchanged if even that is refused.
pub fn set_initial_state(run: FlowRun, state: State, now: Timestamp) -> FlowRun {
    let outcome = orchestrate_flow_run(OrchestrationInput {
        run: &run,
        proposal: Proposal::forced(state),
        now,
        deployment_concurrency: None,
    });
    outcome.updated_run.unwrap_or(run)
}

/// What the server does to a received state before orchestration: stamp it `now`, default an
/// empty name to the type's title-case name, and give a SCHEDULED state without a (readable)
/// `scheduled_time` the time `now`. An empty name stands for "not given" because the domain
/// type's name is not optional.
pub fn normalize_proposed_state(mut state: State, now: Timestamp) -> State {
    state.timestamp = now;
    if state.name.is_empty() {
        state.state_type.default_name().clone_into(&mut state.name);
    }
    if state.state_type == StateType::Scheduled && state.scheduled_time().is_none() {
        state.set_scheduled_time(Some(now));
    }
    state
}

fn orchestrate(input: OrchestrationInput<'_>, policy: &[rules::Rule]) -> OrchestrationOutcome {
    let OrchestrationInput {
        run,
        proposal,
        now,
        deployment_concurrency,
    } = input;
    let ctx = rules::Ctx {
        run,
        initial: run.state.as_ref(),
        now,
        concurrency: deployment_concurrency,
    };
    let decision = rules::govern(&ctx, policy, normalize_proposed_state(proposal.state, now));
    match decision.proposed {
        Some(state) => {
            let updated =
                bookkeeping::commit(&ctx, state, &decision.edits_before, &decision.edits_after);
            OrchestrationOutcome {
                status: decision.status,
                state: updated.state.clone(),
                details: decision.details,
                updated_run: Some(updated),
            }
        }
        None => OrchestrationOutcome {
            status: decision.status,
            state: run.state.clone(),
            details: decision.details,
            updated_run: None,
        },
    }
}

/// Seconds the run has spent RUNNING, counting the current visit up to `now` (Prefect computes
/// this when a run is read).
pub fn estimated_run_time(run: &FlowRun, now: Timestamp) -> f64 {
    match &run.state {
        Some(state) if state.state_type == StateType::Running => {
            run.total_run_time + fields::seconds_between(now, state.timestamp).max(0.0)
        }
        _ => run.total_run_time,
    }
}

/// How late the run started (or, if it has not started and is not finished, how late it is by
/// `now`), in seconds; never negative.
pub fn estimated_start_time_delta(run: &FlowRun, now: Timestamp) -> f64 {
    let Some(expected) = run.expected_start_time else {
        return 0.0;
    };
    match run.start_time {
        Some(start) if start > expected => fields::seconds_between(start, expected),
        Some(_) => 0.0,
        None if expected < now && !run.state.as_ref().is_some_and(State::is_terminal) => {
            fields::seconds_between(now, expected)
        }
        None => 0.0,
    }
}
