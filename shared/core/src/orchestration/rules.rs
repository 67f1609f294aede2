//! The orchestration rules (Prefect's `core_policy.py`) and the loop that applies a policy.
//!
//! Each rule looks at the current state, the proposal and the run, and either lets the proposal
//! through (possibly after editing it) or replaces it: REJECT (with the current state or a
//! replacement), ABORT or WAIT. Rules run in policy order. As in Prefect, a rule only governs the
//! transition it was built for, so once a rule changes the proposed state's type every later rule
//! stands aside, and earlier rules' policy edits are dropped ("fizzled") unless the transition they
//! approved still happens.

use super::fields::{self, PolicyEdit, RetryTypeEdit};
use super::{DeploymentConcurrency, Details, SetStateStatus};
use crate::domain::{FlowRun, State, StateType, Timestamp};

/// What the rules need to know besides the proposal.
pub(super) struct Ctx<'a> {
    pub run: &'a FlowRun,
    pub initial: Option<&'a State>,
    pub now: Timestamp,
    pub concurrency: Option<DeploymentConcurrency>,
}

impl Ctx<'_> {
    fn initial_type(&self) -> Option<StateType> {
        self.initial.map(|s| s.state_type)
    }

    fn has_deployment(&self) -> bool {
        self.run.deployment_id.is_some()
    }
}

/// A rule's verdict on the proposal it was shown.
pub(super) enum Effect {
    /// The rule does not apply, or lets the proposal through (maybe after editing it in place).
    Pass,
    /// Lets the proposal through; the edit is made before bookkeeping if the transition happens.
    EditBefore(PolicyEdit),
    /// Lets the proposal through; the edit is made after bookkeeping if the transition happens
    /// (Prefect's `after_transition` hooks).
    EditAfter(PolicyEdit),
    /// REJECT. With no replacement nothing is written and the current state is returned. The edit
    /// belongs to the rejecting rule, which never fizzles, so it holds whenever the replacement is
    /// written.
    Reject {
        replacement: Option<Box<State>>,
        reason: String,
        edit: Option<PolicyEdit>,
    },
    Abort(String),
    Wait {
        delay_seconds: i64,
        reason: String,
    },
}

fn reject(replacement: Option<State>, reason: impl Into<String>) -> Effect {
    Effect::Reject {
        replacement: replacement.map(Box::new),
        reason: reason.into(),
        edit: None,
    }
}

pub(super) type Rule = fn(&Ctx<'_>, &mut State) -> Effect;

/// Prefect's `CoreFlowPolicy`, minus rules that only manage leases, events or task runs.
pub(super) const CORE_POLICY: &[Rule] = &[
    preserve_deployment_concurrency_lease_id,
    prevent_duplicate_transitions,
    handle_flow_terminal_state_transitions,
    enforce_cancelling_to_cancelled_transition,
    bypass_cancelling_flow_runs_with_no_infra,
    prevent_pending_transitions,
    carry_lease_id_into_running,
    secure_flow_concurrency_slots,
    ensure_only_scheduled_flows_marked_late,
    handle_pausing_flows,
    handle_resuming_paused_flows,
    copy_scheduled_time,
    wait_for_scheduled_time,
    retry_failed_flows,
];

/// Prefect's `MinimalFlowPolicy`, used for `force=true`.
pub(super) const MINIMAL_POLICY: &[Rule] = &[
    prevent_result_data_loss,
    bypass_cancelling_flow_runs_with_no_infra,
];

/// Prefect's `MarkLateRunsPolicy`, used by the late-runs service.
pub(super) const MARK_LATE_POLICY: &[Rule] = &[
    ensure_only_scheduled_flows_marked_late,
    enforce_deployment_concurrency_on_late,
];

/// The result of running a policy over one proposal.
pub(super) struct Decision {
    /// The state to write, if any: the proposal or a replacement.
    pub proposed: Option<State>,
    pub status: SetStateStatus,
    pub details: Details,
    /// Policy edits to make before bookkeeping, in rule order.
    pub edits_before: Vec<PolicyEdit>,
    /// Policy edits to make after bookkeeping, in rule order.
    pub edits_after: Vec<PolicyEdit>,
}

/// A policy edit waiting for the verdict.
struct QueuedEdit {
    edit: PolicyEdit,
    /// Made after bookkeeping rather than before.
    after: bool,
    /// Dropped unless the intended transition happens (the rule would fizzle otherwise).
    conditional: bool,
}

pub(super) fn govern(ctx: &Ctx<'_>, policy: &[Rule], proposal: State) -> Decision {
    let intended = proposal.state_type;
    let transition_id = fields::detail(&proposal, fields::TRANSITION_ID).cloned();
    let mut proposed = Some(proposal);
    let mut status = SetStateStatus::Accept;
    let mut details = Details::default();
    let mut edits: Vec<QueuedEdit> = Vec::new();

    for rule in policy {
        let Some(current) = proposed.as_mut() else {
            break;
        };
        if current.state_type != intended {
            break;
        }
        match rule(ctx, current) {
            Effect::Pass => {}
            Effect::EditBefore(edit) => edits.push(QueuedEdit {
                edit,
                after: false,
                conditional: true,
            }),
            Effect::EditAfter(edit) => edits.push(QueuedEdit {
                edit,
                after: true,
                conditional: true,
            }),
            Effect::Reject {
                replacement,
                reason,
                edit,
            } => {
                status = SetStateStatus::Reject;
                details = Details::because(reason);
                if let Some(edit) = edit {
                    edits.push(QueuedEdit {
                        edit,
                        after: false,
                        conditional: false,
                    });
                }
                proposed = replacement.map(|state| {
                    let mut state = *state;
                    // Deviation from Prefect: a replacement keeps the proposal's transition id,
                    // so a client retrying a request whose answer it lost gets the same
                    // replacement back instead of causing a second transition.
                    if let Some(id) = &transition_id
                        && fields::detail(&state, fields::TRANSITION_ID).is_none()
                    {
                        fields::set_detail(&mut state, fields::TRANSITION_ID, Some(id.clone()));
                    }
                    state
                });
            }
            Effect::Abort(reason) => {
                status = SetStateStatus::Abort;
                details = Details::because(reason);
                proposed = None;
            }
            Effect::Wait {
                delay_seconds,
                reason,
            } => {
                status = SetStateStatus::Wait;
                details = Details {
                    reason: Some(reason),
                    delay_seconds: Some(delay_seconds),
                };
                proposed = None;
            }
        }
    }

    let happened = proposed.as_ref().is_some_and(|s| s.state_type == intended);
    let mut edits_before = Vec::new();
    let mut edits_after = Vec::new();
    for queued in edits {
        if queued.conditional && !happened {
            continue;
        }
        if queued.after {
            edits_after.push(queued.edit);
        } else {
            edits_before.push(queued.edit);
        }
    }
    Decision {
        proposed,
        status,
        details,
        edits_before,
        edits_after,
    }
}

/// Workers echo `deployment_concurrency_lease_id: null` on later proposals; keep the lease id
/// the current state holds (PreserveDeploymentConcurrencyLeaseId).
fn preserve_deployment_concurrency_lease_id(ctx: &Ctx<'_>, proposed: &mut State) -> Effect {
    if let Some(initial) = ctx.initial
        && fields::detail(initial, fields::LEASE_ID).is_some()
        && fields::detail(proposed, fields::LEASE_ID).is_none()
    {
        fields::copy_detail(initial, proposed, fields::LEASE_ID);
    }
    Effect::Pass
}

/// A repeated proposal (same transition id as the current state) is answered with the current
/// state, which makes client retries idempotent.
fn prevent_duplicate_transitions(ctx: &Ctx<'_>, proposed: &mut State) -> Effect {
    match ctx.initial {
        Some(initial) if fields::same_transition_id(initial, proposed) => {
            reject(None, "This run has already made this state transition.")
        }
        _ => Effect::Pass,
    }
}

fn handle_flow_terminal_state_transitions(ctx: &Ctx<'_>, proposed: &mut State) -> Effect {
    let Some(initial) = ctx.initial.filter(|s| s.is_terminal()) else {
        return Effect::Pass;
    };
    if matches!(
        proposed.state_type,
        StateType::Cancelling | StateType::Paused | StateType::Crashed
    ) {
        return Effect::Abort(format!(
            "Run is already in terminal state {}.",
            initial.state_type.as_str()
        ));
    }
    // A completed run whose result is stored may only be rerun if it is not persisted.
    if initial.state_type == StateType::Completed
        && !proposed.is_terminal()
        && fields::holds_persisted_result(initial)
    {
        return reject(None, "Run is already COMPLETED.");
    }
    if fields::loses_result_data(initial, proposed) {
        return reject(None, DATA_LOSS_REASON);
    }
    if proposed.state_type == StateType::Scheduled && !ctx.has_deployment() {
        return Effect::Abort(
            "Cannot reschedule a run without an associated deployment.".to_owned(),
        );
    }
    if proposed.is_terminal() {
        return Effect::Pass;
    }
    // A manual rerun starts afresh: earlier pauses must not block new ones.
    Effect::EditBefore(PolicyEdit {
        resuming: Some(false),
        clear_pause_keys: true,
        add_pause_key: None,
        retry_type: if proposed.state_type == StateType::Scheduled {
            RetryTypeEdit::Set("reschedule")
        } else {
            RetryTypeEdit::Clear
        },
    })
}

const DATA_LOSS_REASON: &str =
    "Cannot overwrite a COMPLETED state that carries persisted result data with one that does not.";

/// The part of the terminal-state rule that also guards forced transitions.
fn prevent_result_data_loss(ctx: &Ctx<'_>, proposed: &mut State) -> Effect {
    match ctx.initial {
        Some(initial) if fields::loses_result_data(initial, proposed) => {
            reject(None, DATA_LOSS_REASON)
        }
        _ => Effect::Pass,
    }
}

fn enforce_cancelling_to_cancelled_transition(ctx: &Ctx<'_>, proposed: &mut State) -> Effect {
    if ctx.initial_type() == Some(StateType::Cancelling)
        && proposed.state_type != StateType::Cancelled
    {
        return reject(
            None,
            "Cannot transition flows that are cancelling to a state other than Cancelled.",
        );
    }
    Effect::Pass
}

/// CANCELLING exists so something tears infrastructure down. A run that has none goes straight to
/// Cancelled.
fn bypass_cancelling_flow_runs_with_no_infra(ctx: &Ctx<'_>, proposed: &mut State) -> Effect {
    let Some(initial) = ctx.initial else {
        return Effect::Pass;
    };
    if proposed.state_type != StateType::Cancelling
        || !matches!(initial.state_type, StateType::Scheduled | StateType::Paused)
    {
        return Effect::Pass;
    }
    let no_infra = ctx
        .run
        .infrastructure_pid
        .as_deref()
        .is_none_or(str::is_empty);
    // Resuming runs were suspended, so their infrastructure is gone even if a pid is recorded.
    if (initial.state_type == StateType::Scheduled && no_infra) || initial.name == "Resuming" {
        return reject(
            Some(State::new(StateType::Cancelled, ctx.now)),
            "Scheduled flow run has no infrastructure to terminate.",
        );
    }
    if initial.state_type == StateType::Paused && fields::pause_reschedule(initial) {
        return reject(
            Some(State::new(StateType::Cancelled, ctx.now)),
            "Suspended flow run has no infrastructure to terminate.",
        );
    }
    Effect::Pass
}

/// The claim lock: of several workers proposing PENDING for one run, only the first succeeds;
/// the others find the run PENDING (or further along) and are told to abort.
fn prevent_pending_transitions(ctx: &Ctx<'_>, proposed: &mut State) -> Effect {
    let Some(initial) = ctx.initial else {
        return Effect::Pass;
    };
    if proposed.state_type != StateType::Pending
        || !matches!(
            initial.state_type,
            StateType::Pending | StateType::Cancelling | StateType::Running | StateType::Cancelled
        )
    {
        return Effect::Pass;
    }
    // The claimant moving through named sub-states (Pending → Submitting → InfrastructurePending)
    // is not a second claim; a plain "Pending" is.
    if initial.state_type == StateType::Pending
        && initial.name != proposed.name
        && proposed.name != "Pending"
    {
        fields::copy_detail(initial, proposed, fields::SCHEDULED_TIME);
        fields::copy_detail(initial, proposed, fields::LEASE_ID);
        return Effect::Pass;
    }
    Effect::Abort(format!(
        "This run is in a {} state and cannot transition to a PENDING state.",
        initial.state_type.as_str()
    ))
}

/// The lease-id half of ValidateDeploymentConcurrencyAtRunning. Sluice counts slots instead of
/// leasing them, so there is no lease to renew here.
fn carry_lease_id_into_running(ctx: &Ctx<'_>, proposed: &mut State) -> Effect {
    if let Some(initial) = ctx.initial
        && initial.state_type == StateType::Pending
        && proposed.state_type == StateType::Running
    {
        fields::copy_detail(initial, proposed, fields::LEASE_ID);
    }
    Effect::Pass
}

/// Deployment concurrency is checked at the claim (→ PENDING) so a worker learns there is no slot
/// before it provisions infrastructure.
fn secure_flow_concurrency_slots(ctx: &Ctx<'_>, proposed: &mut State) -> Effect {
    if proposed.state_type != StateType::Pending
        || matches!(
            ctx.initial_type(),
            Some(StateType::Pending | StateType::Running | StateType::Cancelling)
        )
        || !ctx.has_deployment()
    {
        return Effect::Pass;
    }
    let Some(limits) = ctx.concurrency else {
        return Effect::Pass;
    };
    let Some(limit) = limits.limit else {
        return Effect::Pass;
    };
    if limit == 0 {
        return Effect::Abort(
            "The deployment concurrency limit is 0. The flow will deadlock if submitted again."
                .to_owned(),
        );
    }
    if !limits.is_full() {
        return Effect::Pass;
    }
    let replacement = match limits.collision_strategy {
        super::CollisionStrategy::Enqueue => State::new(StateType::Scheduled, ctx.now)
            .named("AwaitingConcurrencySlot")
            .scheduled_at(fields::add_seconds(
                ctx.now,
                limits.slot_wait_seconds as f64,
            )),
        super::CollisionStrategy::CancelNew => {
            State::new(StateType::Cancelled, ctx.now).with_message(CONCURRENCY_REACHED)
        }
    };
    reject(Some(replacement), CONCURRENCY_REACHED)
}

const CONCURRENCY_REACHED: &str = "Deployment concurrency limit reached.";

fn ensure_only_scheduled_flows_marked_late(ctx: &Ctx<'_>, proposed: &mut State) -> Effect {
    let Some(initial) = ctx.initial else {
        return Effect::Pass;
    };
    if proposed.state_type != StateType::Scheduled || proposed.name != "Late" {
        return Effect::Pass;
    }
    if initial.state_type != StateType::Scheduled {
        return reject(None, "Only scheduled flows can be marked late.");
    }
    if initial.name == "Late" {
        return reject(None, "This flow run is already marked late.");
    }
    Effect::Pass
}

/// With CANCEL_NEW, a run that could not get a slot in time is cancelled rather than left Late.
fn enforce_deployment_concurrency_on_late(ctx: &Ctx<'_>, proposed: &mut State) -> Effect {
    if ctx.initial_type() != Some(StateType::Scheduled)
        || proposed.state_type != StateType::Scheduled
        || proposed.name != "Late"
        || !ctx.has_deployment()
    {
        return Effect::Pass;
    }
    match ctx.concurrency {
        Some(limits)
            if limits.collision_strategy == super::CollisionStrategy::CancelNew
                && limits.limit.is_some()
                && limits.is_full() =>
        {
            reject(
                Some(State::new(StateType::Cancelled, ctx.now).with_message(CONCURRENCY_REACHED)),
                "Deployment concurrency limit is full and uses the CANCEL_NEW strategy.",
            )
        }
        _ => Effect::Pass,
    }
}

fn pause_verb(proposed: &State) -> &'static str {
    if proposed.name == "Suspended" {
        "suspend"
    } else {
        "pause"
    }
}

fn handle_pausing_flows(ctx: &Ctx<'_>, proposed: &mut State) -> Effect {
    if proposed.state_type != StateType::Paused {
        return Effect::Pass;
    }
    let verb = pause_verb(proposed);
    let Some(initial) = ctx.initial else {
        return Effect::Abort(format!("Cannot {verb} flows with no state."));
    };
    if initial.state_type != StateType::Running {
        return reject(
            None,
            format!("Cannot {verb} flows that are not currently running."),
        );
    }
    // Prefect invents a random key when none is given; the new state's id is just as unique and
    // keeps this function deterministic.
    let key = fields::pause_key(proposed).unwrap_or_else(|| proposed.id.to_string());
    if fields::has_pause_key(&ctx.run.empirical_policy, &key) {
        return reject(None, format!("This {verb} has already fired."));
    }
    if fields::pause_reschedule(proposed) {
        // A suspended run is torn down and later rescheduled, which needs a deployment and a
        // run of its own.
        if ctx.run.parent_task_run_id.is_some() {
            return Effect::Abort(format!("Cannot {verb} subflows."));
        }
        if !ctx.has_deployment() {
            return Effect::Abort(format!("Cannot {verb} flows without a deployment."));
        }
    }
    Effect::EditAfter(PolicyEdit {
        add_pause_key: Some(key),
        ..PolicyEdit::default()
    })
}

/// How Python 3.12 renders a `StateType` inside an f-string, which Prefect's messages use.
fn python_enum(state_type: StateType) -> String {
    format!("StateType.{}", state_type.as_str())
}

fn handle_resuming_paused_flows(ctx: &Ctx<'_>, proposed: &mut State) -> Effect {
    let Some(initial) = ctx.initial.filter(|s| s.state_type == StateType::Paused) else {
        return Effect::Pass;
    };
    if !(matches!(
        proposed.state_type,
        StateType::Running | StateType::Scheduled
    ) || proposed.is_terminal())
    {
        return reject(
            None,
            format!(
                "This run cannot transition to the {} state from the {} state.",
                python_enum(proposed.state_type),
                python_enum(initial.state_type)
            ),
        );
    }
    let verb = pause_verb(proposed);
    let display = if proposed.name.is_empty() {
        proposed.state_type.as_str().to_lowercase()
    } else {
        proposed.name.to_lowercase()
    };
    if fields::pause_reschedule(initial) && !ctx.has_deployment() {
        return reject(
            None,
            format!("Cannot reschedule a {display} flow run without a deployment."),
        );
    }
    if let Some(timeout) = fields::pause_timeout(initial)
        && timeout < ctx.now
    {
        return reject(
            Some(
                State::new(StateType::Failed, ctx.now)
                    .with_message(format!("The flow was {display} and never resumed.")),
            ),
            format!("The flow run {verb} has timed out and can no longer resume."),
        );
    }
    // Tells run-count bookkeeping that the next RUNNING continues the same attempt.
    Effect::EditAfter(PolicyEdit {
        resuming: Some(true),
        ..PolicyEdit::default()
    })
}

/// PENDING inherits the schedule it was claimed for, unless the claimant proposed its own.
fn copy_scheduled_time(ctx: &Ctx<'_>, proposed: &mut State) -> Effect {
    if let Some(initial) = ctx.initial
        && initial.state_type == StateType::Scheduled
        && proposed.state_type == StateType::Pending
        && fields::detail(proposed, fields::SCHEDULED_TIME).is_none()
    {
        fields::copy_detail(initial, proposed, fields::SCHEDULED_TIME);
    }
    Effect::Pass
}

/// Whole seconds until `target`, rounded as Prefect does: floor of the seconds plus the
/// microsecond fraction rounded half-to-even (so exactly .5 rounds down).
pub(super) fn wait_seconds(target: Timestamp, now: Timestamp) -> i64 {
    let delta = target - now;
    let secs = delta.num_seconds();
    // Same sign as `secs`; Python datetimes hold microseconds, so finer parts are dropped.
    let micros = i64::from(delta.subsec_nanos() / 1000);
    let (floor_secs, fraction) = if micros < 0 {
        (secs - 1, micros + 1_000_000)
    } else {
        (secs, micros)
    };
    floor_secs + i64::from(fraction > 500_000)
}

/// The server's clock decides when a run may start; an early RUNNING is told to wait.
fn wait_for_scheduled_time(ctx: &Ctx<'_>, proposed: &mut State) -> Effect {
    let Some(initial) = ctx.initial else {
        return Effect::Pass;
    };
    if proposed.state_type != StateType::Running
        || !matches!(
            initial.state_type,
            StateType::Scheduled | StateType::Pending
        )
    {
        return Effect::Pass;
    }
    let Some(scheduled) = initial.scheduled_time() else {
        return Effect::Pass;
    };
    let delay_seconds = wait_seconds(scheduled, ctx.now);
    if delay_seconds > 0 {
        return Effect::Wait {
            delay_seconds,
            reason: "Scheduled time is in the future".to_owned(),
        };
    }
    Effect::Pass
}

fn retry_failed_flows(ctx: &Ctx<'_>, proposed: &mut State) -> Effect {
    if ctx.initial_type() != Some(StateType::Running) || proposed.state_type != StateType::Failed {
        return Effect::Pass;
    }
    let policy = &ctx.run.empirical_policy;
    match fields::retries(policy) {
        Some(retries) if ctx.run.run_count <= retries => {
            let at = fields::add_seconds(ctx.now, fields::retry_delay_seconds(policy));
            let mut retry = State::new(StateType::Scheduled, ctx.now)
                .named("AwaitingRetry")
                .scheduled_at(at);
            retry.message.clone_from(&proposed.message);
            retry.data = proposed.data.clone();
            Effect::Reject {
                replacement: Some(Box::new(retry)),
                reason: "Retrying".to_owned(),
                // The retry runs in the same process: pauses start over, and workers skip the run.
                edit: Some(PolicyEdit {
                    resuming: Some(false),
                    clear_pause_keys: true,
                    add_pause_key: None,
                    retry_type: RetryTypeEdit::Set("in_process"),
                }),
            }
        }
        // Out of retries: clear the marker so a later manual retry is not mistaken for one.
        _ => Effect::EditBefore(PolicyEdit {
            retry_type: RetryTypeEdit::Clear,
            ..PolicyEdit::default()
        }),
    }
}
