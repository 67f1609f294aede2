//! Table-driven tests of every rule, plus the policy edits and bookkeeping each transition makes.

use chrono::{TimeDelta, TimeZone, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

use super::*;
use crate::domain::{DeploymentStatus, FlowRun, JsonMap, State, StateType, Timestamp};

use StateType::{
    Cancelled, Cancelling, Completed, Crashed, Failed, Paused, Pending, Running, Scheduled,
};

fn now() -> Timestamp {
    Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0)
        .single()
        .expect("valid date")
}

fn secs(n: i64) -> TimeDelta {
    TimeDelta::seconds(n)
}

/// A current state, written a minute before `now`.
fn st(state_type: StateType, name: &str) -> State {
    State::new(state_type, now() - secs(60)).named(name)
}

/// A current state with its type's default name.
fn cur(state_type: StateType) -> State {
    st(state_type, state_type.default_name())
}

/// A proposal with its type's default name.
fn to(state_type: StateType) -> State {
    named(state_type, state_type.default_name())
}

fn named(state_type: StateType, name: &str) -> State {
    State::new(state_type, now()).named(name)
}

fn detail(mut state: State, key: &str, value: Value) -> State {
    state.state_details.insert(key.to_owned(), value);
    state
}

fn tid(state: State, id: &str) -> State {
    detail(state, "transition_id", json!(id))
}

fn with_data(mut state: State, data: Value) -> State {
    state.data = data;
    state
}

fn persisted() -> Value {
    json!({"storage_key": "s3://bucket/results/abc", "serializer": {"type": "pickle"}})
}

fn sched_in(state: State, seconds: i64) -> State {
    state.scheduled_at(now() + secs(seconds))
}

fn suspended() -> State {
    detail(st(Paused, "Suspended"), "pause_reschedule", json!(true))
}

const TID_A: &str = "0190b2a4-0000-7000-8000-00000000000a";
const TID_B: &str = "0190b2a4-0000-7000-8000-00000000000b";

fn base_run() -> FlowRun {
    let mut run = FlowRun::new(Uuid::now_v7(), now() - secs(3600));
    run.deployment_id = Some(Uuid::now_v7());
    run
}

fn run_in(state: Option<State>) -> FlowRun {
    let mut run = base_run();
    run.state = state;
    run
}

fn limits(limit: Option<i64>, active: i64, strategy: CollisionStrategy) -> DeploymentConcurrency {
    DeploymentConcurrency {
        limit,
        active_slots: active,
        collision_strategy: strategy,
        slot_wait_seconds: DeploymentConcurrency::DEFAULT_SLOT_WAIT_SECONDS,
    }
}

fn orchestrate_on(
    run: &FlowRun,
    proposed: State,
    force: bool,
    concurrency: Option<DeploymentConcurrency>,
) -> OrchestrationOutcome {
    orchestrate_flow_run(OrchestrationInput {
        run,
        proposal: Proposal {
            state: proposed,
            force,
        },
        now: now(),
        deployment_concurrency: concurrency,
    })
}

/// The helper the table is built on: orchestrate `proposed` against a deployed run whose current
/// state is `from`.
fn check(from: Option<State>, proposed: State, force: bool) -> OrchestrationOutcome {
    orchestrate_on(&run_in(from), proposed, force, None)
}

fn no_deployment(run: &mut FlowRun) {
    run.deployment_id = None;
}

fn with_pid(run: &mut FlowRun) {
    run.infrastructure_pid = Some("4242".to_owned());
}

fn empty_pid(run: &mut FlowRun) {
    run.infrastructure_pid = Some(String::new());
}

fn subflow(run: &mut FlowRun) {
    run.parent_task_run_id = Some(Uuid::now_v7());
}

fn retries_2_count_1(run: &mut FlowRun) {
    run.empirical_policy.insert("retries".to_owned(), json!(2));
    run.run_count = 1;
}

fn retries_2_count_2(run: &mut FlowRun) {
    run.empirical_policy.insert("retries".to_owned(), json!(2));
    run.run_count = 2;
}

fn retries_2_count_3(run: &mut FlowRun) {
    run.empirical_policy.insert("retries".to_owned(), json!(2));
    run.run_count = 3;
}

fn retries_0_count_1(run: &mut FlowRun) {
    run.empirical_policy.insert("retries".to_owned(), json!(0));
    run.run_count = 1;
}

fn pause_key_k_fired(run: &mut FlowRun) {
    run.empirical_policy
        .insert("pause_keys".to_owned(), json!(["k"]));
}

fn noop(_: &mut FlowRun) {}

/// One row of the rule table.
struct Case {
    name: &'static str,
    from: Option<State>,
    to: State,
    force: bool,
    setup: fn(&mut FlowRun),
    concurrency: Option<DeploymentConcurrency>,
    status: SetStateStatus,
    /// The written state's type and name; `None` when nothing may be written.
    writes: Option<(StateType, String)>,
    reason: Option<&'static str>,
    delay: Option<i64>,
}

fn case(name: &'static str, from: Option<State>, to: State) -> Case {
    Case {
        name,
        from,
        to,
        force: false,
        setup: noop,
        concurrency: None,
        status: SetStateStatus::Accept,
        writes: None,
        reason: None,
        delay: None,
    }
}

impl Case {
    fn forced(mut self) -> Case {
        self.force = true;
        self
    }
    fn with(mut self, setup: fn(&mut FlowRun)) -> Case {
        self.setup = setup;
        self
    }
    fn limits(mut self, c: DeploymentConcurrency) -> Case {
        self.concurrency = Some(c);
        self
    }
    fn accept(mut self) -> Case {
        self.status = SetStateStatus::Accept;
        self.writes = Some((self.to.state_type, self.to.name.clone()));
        self
    }
    fn reject(mut self, reason: &'static str) -> Case {
        self.status = SetStateStatus::Reject;
        self.reason = Some(reason);
        self
    }
    fn reject_to(mut self, t: StateType, n: &str, reason: &'static str) -> Case {
        self.status = SetStateStatus::Reject;
        self.writes = Some((t, n.to_owned()));
        self.reason = Some(reason);
        self
    }
    fn abort(mut self, reason: &'static str) -> Case {
        self.status = SetStateStatus::Abort;
        self.reason = Some(reason);
        self
    }
    fn wait(mut self, delay: i64) -> Case {
        self.status = SetStateStatus::Wait;
        self.reason = Some("Scheduled time is in the future");
        self.delay = Some(delay);
        self
    }
}

fn run_case(c: &Case) -> Result<OrchestrationOutcome, String> {
    let mut run = run_in(c.from.clone());
    (c.setup)(&mut run);
    let out = orchestrate_on(&run, c.to.clone(), c.force, c.concurrency);
    let mut errors = Vec::new();
    if out.status != c.status {
        errors.push(format!("status {:?}, want {:?}", out.status, c.status));
    }
    if let Some(reason) = c.reason
        && out.details.reason.as_deref() != Some(reason)
    {
        errors.push(format!("reason {:?}, want {reason:?}", out.details.reason));
    }
    if c.status == SetStateStatus::Accept && out.details.reason.is_some() {
        errors.push("accept with a reason".to_owned());
    }
    if out.details.delay_seconds != c.delay {
        errors.push(format!(
            "delay {:?}, want {:?}",
            out.details.delay_seconds, c.delay
        ));
    }
    match (&c.writes, &out.updated_run) {
        (Some((t, n)), Some(updated)) => {
            let written = updated.state.as_ref().ok_or("written run has no state")?;
            if written.state_type != *t || written.name != *n {
                errors.push(format!(
                    "wrote {}/{}, want {t}/{n}",
                    written.state_type, written.name
                ));
            }
            if out.state.as_ref() != Some(written) {
                errors.push("returned state is not the written state".to_owned());
            }
        }
        (None, None) => {
            if out.state != run.state {
                errors.push("returned state is not the current state".to_owned());
            }
        }
        (Some(_), None) => errors.push("nothing written".to_owned()),
        (None, Some(updated)) => errors.push(format!(
            "unexpected write of {:?}",
            updated
                .state
                .as_ref()
                .map(|s| (s.state_type, s.name.clone()))
        )),
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(format!("{}: {}", c.name, errors.join("; ")))
    }
}

fn run_table(cases: &[Case]) {
    let failures: Vec<String> = cases.iter().filter_map(|c| run_case(c).err()).collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

const DUPLICATE: &str = "This run has already made this state transition.";
const DATA_LOSS: &str =
    "Cannot overwrite a COMPLETED state that carries persisted result data with one that does not.";
const CANCELLING_ONLY: &str =
    "Cannot transition flows that are cancelling to a state other than Cancelled.";
const NO_INFRA: &str = "Scheduled flow run has no infrastructure to terminate.";
const LIMIT_REACHED: &str = "Deployment concurrency limit reached.";

#[test]
fn duplicate_transitions() {
    run_table(&[
        case(
            "same id",
            Some(tid(cur(Scheduled), TID_A)),
            tid(to(Pending), TID_A),
        )
        .reject(DUPLICATE),
        case(
            "same id, other spelling",
            Some(tid(cur(Running), TID_A)),
            tid(to(Completed), &TID_A.to_uppercase()),
        )
        .reject(DUPLICATE),
        case(
            "other id",
            Some(tid(cur(Scheduled), TID_A)),
            tid(to(Pending), TID_B),
        )
        .accept(),
        case(
            "current has none",
            Some(cur(Scheduled)),
            tid(to(Pending), TID_A),
        )
        .accept(),
        case(
            "proposal has none",
            Some(tid(cur(Scheduled), TID_A)),
            to(Pending),
        )
        .accept(),
        case(
            "forced skips the check",
            Some(tid(cur(Scheduled), TID_A)),
            tid(to(Pending), TID_A),
        )
        .forced()
        .accept(),
    ]);
}

#[test]
fn terminal_state_transitions() {
    run_table(&[
        case(
            "completed to cancelling",
            Some(cur(Completed)),
            to(Cancelling),
        )
        .abort("Run is already in terminal state COMPLETED."),
        case("failed to paused", Some(cur(Failed)), to(Paused))
            .abort("Run is already in terminal state FAILED."),
        case("cancelled to crashed", Some(cur(Cancelled)), to(Crashed))
            .abort("Run is already in terminal state CANCELLED."),
        case("crashed to crashed", Some(cur(Crashed)), to(Crashed))
            .abort("Run is already in terminal state CRASHED."),
        case(
            "persisted result to running",
            Some(with_data(cur(Completed), persisted())),
            to(Running),
        )
        .reject("Run is already COMPLETED."),
        case(
            "persisted result to scheduled",
            Some(with_data(cur(Completed), persisted())),
            to(Scheduled),
        )
        .reject("Run is already COMPLETED."),
        case(
            "unpersisted result to running",
            Some(with_data(cur(Completed), json!({"type": "unpersisted"}))),
            to(Running),
        )
        .accept(),
        case(
            "empty result to running",
            Some(with_data(cur(Completed), json!({}))),
            to(Running),
        )
        .accept(),
        case(
            "scalar result to running",
            Some(with_data(cur(Completed), json!(42))),
            to(Running),
        )
        .accept(),
        case(
            "persisted to completed without data",
            Some(with_data(cur(Completed), persisted())),
            to(Completed),
        )
        .reject(DATA_LOSS),
        case(
            "persisted to completed with data",
            Some(with_data(cur(Completed), persisted())),
            with_data(to(Completed), persisted()),
        )
        .accept(),
        case(
            "persisted to failed",
            Some(with_data(cur(Completed), persisted())),
            to(Failed),
        )
        .accept(),
        case("rerun without deployment", Some(cur(Failed)), to(Scheduled))
            .with(no_deployment)
            .abort("Cannot reschedule a run without an associated deployment."),
        case("rerun with deployment", Some(cur(Failed)), to(Scheduled)).accept(),
        case("ad-hoc rerun", Some(cur(Failed)), to(Running))
            .with(no_deployment)
            .accept(),
        case("completed to pending", Some(cur(Completed)), to(Pending)).accept(),
        case(
            "forced data loss",
            Some(with_data(cur(Completed), persisted())),
            to(Completed),
        )
        .forced()
        .reject(DATA_LOSS),
        case(
            "forced completed to crashed",
            Some(cur(Completed)),
            to(Crashed),
        )
        .forced()
        .accept(),
        case(
            "forced persisted to running",
            Some(with_data(cur(Completed), persisted())),
            to(Running),
        )
        .forced()
        .accept(),
    ]);
}

#[test]
fn cancelling_only_leads_to_cancelled() {
    run_table(&[
        case("to running", Some(cur(Cancelling)), to(Running)).reject(CANCELLING_ONLY),
        case("to completed", Some(cur(Cancelling)), to(Completed)).reject(CANCELLING_ONLY),
        case("to cancelling", Some(cur(Cancelling)), to(Cancelling)).reject(CANCELLING_ONLY),
        // EnforceCancellingToCancelled runs before PreventPendingTransitions, so a claim
        // attempt on a cancelling run is rejected rather than aborted, as in Prefect.
        case("to pending", Some(cur(Cancelling)), to(Pending)).reject(CANCELLING_ONLY),
        case("to cancelled", Some(cur(Cancelling)), to(Cancelled)).accept(),
        case("forced to completed", Some(cur(Cancelling)), to(Completed))
            .forced()
            .accept(),
    ]);
}

#[test]
fn cancelling_runs_without_infrastructure() {
    run_table(&[
        case("scheduled, no pid", Some(cur(Scheduled)), to(Cancelling)).reject_to(
            Cancelled,
            "Cancelled",
            NO_INFRA,
        ),
        case("scheduled, empty pid", Some(cur(Scheduled)), to(Cancelling))
            .with(empty_pid)
            .reject_to(Cancelled, "Cancelled", NO_INFRA),
        case("scheduled with pid", Some(cur(Scheduled)), to(Cancelling))
            .with(with_pid)
            .accept(),
        case(
            "resuming with pid",
            Some(st(Scheduled, "Resuming")),
            to(Cancelling),
        )
        .with(with_pid)
        .reject_to(Cancelled, "Cancelled", NO_INFRA),
        case(
            "awaiting retry with pid",
            Some(st(Scheduled, "AwaitingRetry")),
            to(Cancelling),
        )
        .with(with_pid)
        .accept(),
        case("suspended", Some(suspended()), to(Cancelling)).reject_to(
            Cancelled,
            "Cancelled",
            "Suspended flow run has no infrastructure to terminate.",
        ),
        case("blocking pause", Some(cur(Paused)), to(Cancelling)).reject(
            "This run cannot transition to the StateType.CANCELLING state from the \
             StateType.PAUSED state.",
        ),
        case(
            "forced, scheduled, no pid",
            Some(cur(Scheduled)),
            to(Cancelling),
        )
        .forced()
        .reject_to(Cancelled, "Cancelled", NO_INFRA),
        case("forced, blocking pause", Some(cur(Paused)), to(Cancelling))
            .forced()
            .accept(),
        case("pending", Some(cur(Pending)), to(Cancelling)).accept(),
        case("running", Some(cur(Running)), to(Cancelling)).accept(),
    ]);
}

#[test]
fn pending_transitions_and_claims() {
    run_table(&[
        case("scheduled claim", Some(cur(Scheduled)), to(Pending)).accept(),
        case("late claim", Some(st(Scheduled, "Late")), to(Pending)).accept(),
        case("first state", None, to(Pending)).accept(),
        case("second claim", Some(cur(Pending)), to(Pending))
            .abort("This run is in a PENDING state and cannot transition to a PENDING state."),
        case("claim after start", Some(cur(Running)), to(Pending))
            .abort("This run is in a RUNNING state and cannot transition to a PENDING state."),
        case("claim after cancel", Some(cur(Cancelled)), to(Pending))
            .abort("This run is in a CANCELLED state and cannot transition to a PENDING state."),
        case(
            "submitting",
            Some(cur(Pending)),
            named(Pending, "Submitting"),
        )
        .accept(),
        case(
            "infrastructure pending",
            Some(st(Pending, "Submitting")),
            named(Pending, "InfrastructurePending"),
        )
        .accept(),
        case(
            "back to pending",
            Some(st(Pending, "Submitting")),
            to(Pending),
        )
        .abort("This run is in a PENDING state and cannot transition to a PENDING state."),
        case(
            "same sub-state",
            Some(st(Pending, "Submitting")),
            named(Pending, "Submitting"),
        )
        .abort("This run is in a PENDING state and cannot transition to a PENDING state."),
        case("forced reclaim", Some(cur(Running)), to(Pending))
            .forced()
            .accept(),
        case("failed rerun", Some(cur(Failed)), to(Pending)).accept(),
        case("crashed rerun", Some(cur(Crashed)), to(Pending)).accept(),
        case("paused", Some(cur(Paused)), to(Pending)).reject(
            "This run cannot transition to the StateType.PENDING state from the \
             StateType.PAUSED state.",
        ),
    ]);
}

#[test]
fn deployment_concurrency() {
    use CollisionStrategy::{CancelNew, Enqueue};
    run_table(&[
        case("slot free", Some(cur(Scheduled)), to(Pending))
            .limits(limits(Some(2), 1, Enqueue))
            .accept(),
        case("full, enqueue", Some(cur(Scheduled)), to(Pending))
            .limits(limits(Some(2), 2, Enqueue))
            .reject_to(Scheduled, "AwaitingConcurrencySlot", LIMIT_REACHED),
        case("over full, enqueue", Some(cur(Scheduled)), to(Pending))
            .limits(limits(Some(2), 5, Enqueue))
            .reject_to(Scheduled, "AwaitingConcurrencySlot", LIMIT_REACHED),
        case("full, cancel new", Some(cur(Scheduled)), to(Pending))
            .limits(limits(Some(1), 1, CancelNew))
            .reject_to(Cancelled, "Cancelled", LIMIT_REACHED),
        case("zero limit", Some(cur(Scheduled)), to(Pending))
            .limits(limits(Some(0), 0, Enqueue))
            .abort(
                "The deployment concurrency limit is 0. The flow will deadlock if submitted \
                 again.",
            ),
        case("no limit", Some(cur(Scheduled)), to(Pending))
            .limits(limits(None, 100, CancelNew))
            .accept(),
        case("no deployment", Some(cur(Scheduled)), to(Pending))
            .with(no_deployment)
            .limits(limits(Some(1), 1, CancelNew))
            .accept(),
        case("forced", Some(cur(Scheduled)), to(Pending))
            .forced()
            .limits(limits(Some(1), 1, CancelNew))
            .accept(),
        case(
            "already pending",
            Some(cur(Pending)),
            named(Pending, "Submitting"),
        )
        .limits(limits(Some(1), 1, CancelNew))
        .accept(),
        case("first state", None, to(Pending))
            .limits(limits(Some(1), 1, Enqueue))
            .reject_to(Scheduled, "AwaitingConcurrencySlot", LIMIT_REACHED),
        case("rerun from failed", Some(cur(Failed)), to(Pending))
            .limits(limits(Some(1), 1, Enqueue))
            .reject_to(Scheduled, "AwaitingConcurrencySlot", LIMIT_REACHED),
        case("not a claim", Some(cur(Scheduled)), to(Running))
            .limits(limits(Some(1), 1, CancelNew))
            .accept(),
    ]);
}

#[test]
fn marking_late() {
    run_table(&[
        case("scheduled", Some(cur(Scheduled)), named(Scheduled, "Late")).accept(),
        case(
            "already late",
            Some(st(Scheduled, "Late")),
            named(Scheduled, "Late"),
        )
        .reject("This flow run is already marked late."),
        case("pending", Some(cur(Pending)), named(Scheduled, "Late"))
            .reject("Only scheduled flows can be marked late."),
        case("no state", None, named(Scheduled, "Late")).accept(),
        case(
            "other scheduled names are not late",
            Some(st(Scheduled, "Late")),
            named(Scheduled, "AwaitingRetry"),
        )
        .accept(),
    ]);
}

#[test]
fn pausing() {
    run_table(&[
        case("running", Some(cur(Running)), to(Paused)).accept(),
        case("pending", Some(cur(Pending)), to(Paused))
            .reject("Cannot pause flows that are not currently running."),
        case("paused", Some(cur(Paused)), to(Paused))
            .reject("Cannot pause flows that are not currently running."),
        case("no state", None, to(Paused)).abort("Cannot pause flows with no state."),
        case("suspend, no state", None, named(Paused, "Suspended"))
            .abort("Cannot suspend flows with no state."),
        case(
            "suspend without deployment",
            Some(cur(Running)),
            detail(named(Paused, "Suspended"), "pause_reschedule", json!(true)),
        )
        .with(no_deployment)
        .abort("Cannot suspend flows without a deployment."),
        case(
            "suspend a subflow",
            Some(cur(Running)),
            detail(named(Paused, "Suspended"), "pause_reschedule", json!(true)),
        )
        .with(subflow)
        .abort("Cannot suspend subflows."),
        case(
            "suspend",
            Some(cur(Running)),
            detail(named(Paused, "Suspended"), "pause_reschedule", json!(true)),
        )
        .accept(),
        case(
            "blocking pause without deployment",
            Some(cur(Running)),
            to(Paused),
        )
        .with(no_deployment)
        .accept(),
        case(
            "repeated pause key",
            Some(cur(Running)),
            detail(to(Paused), "pause_key", json!("k")),
        )
        .with(pause_key_k_fired)
        .reject("This pause has already fired."),
        case(
            "new pause key",
            Some(cur(Running)),
            detail(to(Paused), "pause_key", json!("j")),
        )
        .with(pause_key_k_fired)
        .accept(),
    ]);
}

#[test]
fn resuming() {
    let timed_out = || {
        Some(detail(
            cur(Paused),
            "pause_timeout",
            json!(crate::time::format_timestamp(now() - secs(300))),
        ))
    };
    let not_timed_out = Some(detail(
        cur(Paused),
        "pause_timeout",
        json!(crate::time::format_timestamp(now() + secs(300))),
    ));
    run_table(&[
        case("to running", Some(cur(Paused)), to(Running)).accept(),
        case("to scheduled", Some(cur(Paused)), to(Scheduled)).accept(),
        case("to completed", Some(cur(Paused)), to(Completed)).accept(),
        case("to failed", Some(cur(Paused)), to(Failed)).accept(),
        case("to crashed", Some(cur(Paused)), to(Crashed)).accept(),
        case("to cancelled", Some(cur(Paused)), to(Cancelled)).accept(),
        case(
            "suspended, resuming without deployment",
            Some(suspended()),
            named(Scheduled, "Resuming"),
        )
        .with(no_deployment)
        .reject("Cannot reschedule a resuming flow run without a deployment."),
        case(
            "suspended, resuming",
            Some(suspended()),
            named(Scheduled, "Resuming"),
        )
        .accept(),
        case("timed out", timed_out(), to(Running)).reject_to(
            Failed,
            "Failed",
            "The flow run pause has timed out and can no longer resume.",
        ),
        case("not timed out", not_timed_out, to(Running)).accept(),
    ]);
}

#[test]
fn waiting_for_the_scheduled_time() {
    run_table(&[
        case(
            "scheduled early",
            Some(sched_in(cur(Scheduled), 10)),
            to(Running),
        )
        .wait(10),
        case(
            "pending early",
            Some(sched_in(cur(Pending), 90)),
            to(Running),
        )
        .wait(90),
        case(
            "scheduled on time",
            Some(sched_in(cur(Scheduled), -5)),
            to(Running),
        )
        .accept(),
        case("pending without time", Some(cur(Pending)), to(Running)).accept(),
        case("forced", Some(sched_in(cur(Scheduled), 10)), to(Running))
            .forced()
            .accept(),
        case(
            "running again",
            Some(sched_in(cur(Running), 10)),
            to(Running),
        )
        .accept(),
        case(
            "scheduled early to pending",
            Some(sched_in(cur(Scheduled), 10)),
            to(Pending),
        )
        .accept(),
    ]);
}

#[test]
fn retrying_failed_runs() {
    run_table(&[
        case("retries left", Some(cur(Running)), to(Failed))
            .with(retries_2_count_1)
            .reject_to(Scheduled, "AwaitingRetry", "Retrying"),
        case("last retry", Some(cur(Running)), to(Failed))
            .with(retries_2_count_2)
            .reject_to(Scheduled, "AwaitingRetry", "Retrying"),
        case("out of retries", Some(cur(Running)), to(Failed))
            .with(retries_2_count_3)
            .accept(),
        case("zero retries", Some(cur(Running)), to(Failed))
            .with(retries_0_count_1)
            .accept(),
        case("no retries", Some(cur(Running)), to(Failed)).accept(),
        case("forced", Some(cur(Running)), to(Failed))
            .forced()
            .with(retries_2_count_1)
            .accept(),
        case("not running", Some(cur(Pending)), to(Failed))
            .with(retries_2_count_1)
            .accept(),
    ]);
}

#[test]
fn wait_rounding_follows_prefect() {
    let at = |micros: i64| now() + TimeDelta::microseconds(micros);
    assert_eq!(rules::wait_seconds(at(10_000_000), now()), 10);
    assert_eq!(rules::wait_seconds(at(1_600_000), now()), 2);
    assert_eq!(
        rules::wait_seconds(at(1_500_000), now()),
        1,
        "half rounds to even"
    );
    assert_eq!(rules::wait_seconds(at(1_500_001), now()), 2);
    assert_eq!(rules::wait_seconds(at(500_000), now()), 0);
    assert_eq!(rules::wait_seconds(at(400_000), now()), 0);
    assert_eq!(rules::wait_seconds(at(-400_000), now()), 0);
    assert_eq!(rules::wait_seconds(at(-1_600_000), now()), -2);
    assert_eq!(rules::wait_seconds(at(0), now()), 0);

    let out = check(
        Some(cur(Scheduled).scheduled_at(at(1_600_000))),
        to(Running),
        false,
    );
    assert_eq!(out.status, SetStateStatus::Wait);
    assert_eq!(out.details.delay_seconds, Some(2));
    let out = check(
        Some(cur(Scheduled).scheduled_at(at(500_000))),
        to(Running),
        false,
    );
    assert_eq!(
        out.status,
        SetStateStatus::Accept,
        "0.5s rounds down to no wait"
    );
}

fn written(out: &OrchestrationOutcome) -> (&FlowRun, &State) {
    let run = out.updated_run.as_ref().expect("a state was written");
    (run, run.state.as_ref().expect("written run has a state"))
}

fn policy_value<'a>(run: &'a FlowRun, key: &str) -> Option<&'a Value> {
    run.empirical_policy.get(key)
}

#[test]
fn claim_race_with_compare_and_set() {
    // Two workers read the same SCHEDULED run and both get ACCEPT from their snapshot.
    let run = run_in(Some(cur(Scheduled)));
    let a = orchestrate_on(&run, tid(to(Pending), TID_A), false, None);
    let b = orchestrate_on(&run, tid(to(Pending), TID_B), false, None);
    assert_eq!(a.status, SetStateStatus::Accept);
    assert_eq!(b.status, SetStateStatus::Accept);
    // A's write lands first; B's compare-and-set fails, so B re-reads and orchestrates again.
    let stored = a.updated_run.expect("A writes");
    let b = orchestrate_on(&stored, tid(to(Pending), TID_B), false, None);
    assert_eq!(b.status, SetStateStatus::Abort);
    assert!(b.updated_run.is_none());
    assert_eq!(b.state, stored.state, "the loser sees the winner's state");
    // A retrying its lost-answer request gets its own state back, idempotently.
    let again = orchestrate_on(&stored, tid(to(Pending), TID_A), false, None);
    assert_eq!(again.status, SetStateStatus::Reject);
    assert_eq!(again.details.reason.as_deref(), Some(DUPLICATE));
    assert!(again.updated_run.is_none());
    assert_eq!(again.state, stored.state);
}

#[test]
fn replacement_states_keep_the_transition_id() {
    let run = run_in(Some(cur(Scheduled)));
    let full = Some(limits(Some(1), 1, CollisionStrategy::Enqueue));
    let first = orchestrate_on(&run, tid(to(Pending), TID_A), false, full);
    let (stored, state) = written(&first);
    assert_eq!(state.transition_id(), Some(TID_A));
    let retry = orchestrate_on(stored, tid(to(Pending), TID_A), false, full);
    assert_eq!(retry.status, SetStateStatus::Reject);
    assert!(
        retry.updated_run.is_none(),
        "a retried request writes nothing new"
    );
    assert_eq!(retry.state, stored.state);
}

#[test]
fn leaving_a_terminal_state_resets_pause_metadata() {
    let mut run = run_in(Some(cur(Failed)));
    run.empirical_policy = json_map(json!({
        "retries": 1, "resuming": true, "pause_keys": ["a"], "retry_type": "in_process"
    }));
    let out = orchestrate_on(&run, to(Scheduled), false, None);
    let (updated, _) = written(&out);
    assert_eq!(policy_value(updated, "resuming"), Some(&json!(false)));
    assert_eq!(policy_value(updated, "pause_keys"), Some(&json!([])));
    assert_eq!(
        policy_value(updated, "retry_type"),
        Some(&json!("reschedule"))
    );
    assert_eq!(
        policy_value(updated, "retries"),
        Some(&json!(1)),
        "other keys kept"
    );

    let out = orchestrate_on(&run, to(Running), false, None);
    let (updated, _) = written(&out);
    assert_eq!(policy_value(updated, "retry_type"), Some(&Value::Null));

    // Terminal to terminal keeps pause metadata; only bookkeeping clears the resuming flag.
    let out = orchestrate_on(&run, to(Cancelled), false, None);
    let (updated, _) = written(&out);
    assert_eq!(policy_value(updated, "pause_keys"), Some(&json!(["a"])));
    assert_eq!(
        policy_value(updated, "retry_type"),
        Some(&json!("in_process"))
    );
    assert_eq!(policy_value(updated, "resuming"), Some(&json!(false)));
}

#[test]
fn edits_of_a_transition_that_did_not_happen_are_dropped() {
    let mut run = run_in(Some(cur(Failed)));
    run.empirical_policy =
        json_map(json!({"pause_keys": ["a"], "retry_type": "in_process", "resuming": false}));
    // The terminal rule approves FAILED → PENDING and asks for a reset, but the concurrency
    // rule replaces PENDING with AwaitingConcurrencySlot: the reset fizzles.
    let full = Some(limits(Some(1), 1, CollisionStrategy::Enqueue));
    let out = orchestrate_on(&run, to(Pending), false, full);
    let (updated, state) = written(&out);
    assert_eq!(state.name, "AwaitingConcurrencySlot");
    assert_eq!(updated.empirical_policy, run.empirical_policy);
}

fn json_map(v: Value) -> JsonMap {
    match v {
        Value::Object(m) => m,
        _ => JsonMap::new(),
    }
}

#[test]
fn claim_sub_states_carry_schedule_and_lease() {
    let lease = "0190b2a4-0000-7000-8000-0000000000ee";
    let current = detail(
        sched_in(cur(Pending), -30),
        "deployment_concurrency_lease_id",
        json!(lease),
    );
    let proposal = detail(
        named(Pending, "Submitting").scheduled_at(now() + secs(999)),
        "deployment_concurrency_lease_id",
        Value::Null,
    );
    let out = check(Some(current.clone()), proposal, false);
    let (_, state) = written(&out);
    assert_eq!(state.scheduled_time(), current.scheduled_time());
    assert_eq!(
        state.state_details["deployment_concurrency_lease_id"],
        json!(lease)
    );
}

#[test]
fn lease_ids_are_preserved() {
    let lease = json!("0190b2a4-0000-7000-8000-0000000000ee");
    let other = json!("0190b2a4-0000-7000-8000-0000000000ff");
    let current = detail(
        cur(Pending),
        "deployment_concurrency_lease_id",
        lease.clone(),
    );
    // Null in the proposal: the current lease id is kept.
    let out = check(
        Some(current.clone()),
        detail(
            to(Cancelling),
            "deployment_concurrency_lease_id",
            Value::Null,
        ),
        false,
    );
    assert_eq!(
        written(&out).1.state_details["deployment_concurrency_lease_id"],
        lease
    );
    // A proposal's own lease id wins, except PENDING → RUNNING, which carries the current one.
    let out = check(
        Some(current.clone()),
        detail(
            to(Cancelling),
            "deployment_concurrency_lease_id",
            other.clone(),
        ),
        false,
    );
    assert_eq!(
        written(&out).1.state_details["deployment_concurrency_lease_id"],
        other
    );
    let out = check(
        Some(current),
        detail(to(Running), "deployment_concurrency_lease_id", other),
        false,
    );
    assert_eq!(
        written(&out).1.state_details["deployment_concurrency_lease_id"],
        lease
    );
}

#[test]
fn concurrency_replacements() {
    let run = run_in(Some(sched_in(cur(Scheduled), -100)));
    let out = orchestrate_on(
        &run,
        to(Pending),
        false,
        Some(limits(Some(3), 3, CollisionStrategy::Enqueue)),
    );
    let (updated, state) = written(&out);
    assert_eq!(state.scheduled_time(), Some(now() + secs(30)));
    assert_eq!(updated.next_scheduled_start_time, Some(now() + secs(30)));
    assert_eq!(updated.end_time, None);

    let out = orchestrate_on(
        &run,
        to(Pending),
        false,
        Some(limits(Some(3), 3, CollisionStrategy::CancelNew)),
    );
    let (updated, state) = written(&out);
    assert_eq!(state.message.as_deref(), Some(LIMIT_REACHED));
    assert_eq!(updated.next_scheduled_start_time, None);
    assert!(updated.end_time.is_some());
    assert_eq!(
        updated.start_time, updated.end_time,
        "ended without running"
    );
}

#[test]
fn mark_late_policy() {
    let late = || named(Scheduled, "Late");
    let mark = |from: State, c: Option<DeploymentConcurrency>| {
        orchestrate_mark_late(OrchestrationInput {
            run: &run_in(Some(from)),
            proposal: Proposal::new(late()),
            now: now(),
            deployment_concurrency: c,
        })
    };
    let out = mark(cur(Scheduled), None);
    assert_eq!(out.status, SetStateStatus::Accept);
    let out = mark(st(Scheduled, "Late"), None);
    assert_eq!(out.status, SetStateStatus::Reject);
    assert!(out.updated_run.is_none());
    let out = mark(cur(Running), None);
    assert_eq!(
        out.details.reason.as_deref(),
        Some("Only scheduled flows can be marked late.")
    );
    let out = mark(
        cur(Scheduled),
        Some(limits(Some(1), 1, CollisionStrategy::CancelNew)),
    );
    assert_eq!(out.status, SetStateStatus::Reject);
    assert_eq!(
        out.details.reason.as_deref(),
        Some("Deployment concurrency limit is full and uses the CANCEL_NEW strategy.")
    );
    let (_, state) = written(&out);
    assert_eq!(state.state_type, Cancelled);
    assert_eq!(state.message.as_deref(), Some(LIMIT_REACHED));
    let out = mark(
        cur(Scheduled),
        Some(limits(Some(1), 1, CollisionStrategy::Enqueue)),
    );
    assert_eq!(
        out.status,
        SetStateStatus::Accept,
        "enqueue leaves late runs late"
    );
    let out = mark(
        cur(Scheduled),
        Some(limits(Some(2), 1, CollisionStrategy::CancelNew)),
    );
    assert_eq!(out.status, SetStateStatus::Accept, "a slot is free");
    // The core policy does not cancel late runs.
    let out = orchestrate_on(
        &run_in(Some(cur(Scheduled))),
        late(),
        false,
        Some(limits(Some(1), 1, CollisionStrategy::CancelNew)),
    );
    assert_eq!(out.status, SetStateStatus::Accept);
}

#[test]
fn retry_bookkeeping() {
    let mut run = run_in(Some(cur(Running)));
    run.empirical_policy = json_map(json!({
        "retries": 3, "retry_delay": 15, "pause_keys": ["p"], "resuming": false
    }));
    run.run_count = 1;
    run.start_time = Some(now() - secs(60));
    let proposal = with_data(
        to(Failed).with_message("boom"),
        json!({"type": "unpersisted"}),
    );
    let out = orchestrate_on(&run, proposal, false, None);
    assert_eq!(out.status, SetStateStatus::Reject);
    let (updated, state) = written(&out);
    assert_eq!(state.scheduled_time(), Some(now() + secs(15)));
    assert_eq!(state.message.as_deref(), Some("boom"));
    assert_eq!(state.data, json!({"type": "unpersisted"}));
    assert_eq!(
        policy_value(updated, "retry_type"),
        Some(&json!("in_process"))
    );
    assert_eq!(policy_value(updated, "pause_keys"), Some(&json!([])));
    assert_eq!(updated.total_run_time, 60.0);
    assert_eq!(updated.end_time, None);
    assert_eq!(updated.run_count, 1);
    assert_eq!(updated.next_scheduled_start_time, Some(now() + secs(15)));

    // Out of retries: FAILED is written and the retry marker cleared.
    run.run_count = 4;
    run.empirical_policy
        .insert("retry_type".to_owned(), json!("in_process"));
    let out = orchestrate_on(&run, to(Failed), false, None);
    let (updated, _) = written(&out);
    assert_eq!(out.status, SetStateStatus::Accept);
    assert_eq!(policy_value(updated, "retry_type"), Some(&Value::Null));
    assert_eq!(updated.end_time, Some(now()));
}

#[test]
fn pause_keys_are_recorded() {
    let run = run_in(Some(cur(Running)));
    let out = orchestrate_on(
        &run,
        detail(to(Paused), "pause_key", json!("k")),
        false,
        None,
    );
    let (updated, _) = written(&out);
    assert_eq!(policy_value(updated, "pause_keys"), Some(&json!(["k"])));

    // Without a key the new state's id stands in for one.
    let proposal = to(Paused);
    let id = proposal.id;
    let out = orchestrate_on(&run, proposal, false, None);
    let (updated, _) = written(&out);
    assert_eq!(
        policy_value(updated, "pause_keys"),
        Some(&json!([id.to_string()]))
    );
}

/// Walks a run through `steps`, each proposal made `gap` seconds after the run's last update;
/// every step must be accepted.
fn walk(mut run: FlowRun, steps: &[State], gap: i64) -> (FlowRun, Timestamp) {
    let mut t = run.updated;
    for step in steps {
        t += secs(gap);
        let out = orchestrate_flow_run(OrchestrationInput {
            run: &run,
            proposal: Proposal::new(step.clone()),
            now: t,
            deployment_concurrency: None,
        });
        assert_eq!(
            out.status,
            SetStateStatus::Accept,
            "{} → {}: {:?}",
            run.state_name().unwrap_or("none"),
            step.name,
            out.details
        );
        run = out.updated_run.expect("accepted steps write");
    }
    (run, t)
}

#[test]
fn suspend_and_resume_keeps_the_run_count() {
    let run = set_initial_state(base_run(), to(Running), now());
    assert_eq!(run.run_count, 1);
    let suspend = detail(named(Paused, "Suspended"), "pause_reschedule", json!(true));
    let (run, _) = walk(run, &[suspend, named(Scheduled, "Resuming")], 10);
    assert_eq!(policy_value(&run, "resuming"), Some(&json!(true)));
    let (run, _) = walk(run, &[to(Pending), to(Running)], 10);
    assert_eq!(run.run_count, 1, "resuming is not a new attempt");
    assert_eq!(policy_value(&run, "resuming"), Some(&json!(false)));
}

#[test]
fn blocking_pause_and_resume() {
    let run = set_initial_state(base_run(), to(Running), now());
    let (run, _) = walk(run, &[to(Paused), to(Running)], 10);
    // As in Prefect, the run count is bumped before the resume rule marks the run resuming.
    assert_eq!(run.run_count, 2);
    assert_eq!(policy_value(&run, "resuming"), Some(&json!(true)));
    assert_eq!(run.total_run_time, 10.0, "paused time is not run time");
    let (run, _) = walk(run, &[to(Completed)], 10);
    assert_eq!(policy_value(&run, "resuming"), Some(&json!(false)));
    assert_eq!(run.total_run_time, 20.0);
}

#[test]
fn lifecycle_bookkeeping() {
    let scheduled_for = now() + secs(3600);
    let run = set_initial_state(base_run(), to(Scheduled).scheduled_at(scheduled_for), now());
    let first = run.state.clone().expect("initial state");
    assert_eq!(
        first.state_details["flow_run_id"],
        json!(run.id.to_string())
    );
    assert_eq!(run.expected_start_time, Some(scheduled_for));
    assert_eq!(run.next_scheduled_start_time, Some(scheduled_for));
    assert_eq!(
        (run.start_time, run.end_time, run.run_count),
        (None, None, 0)
    );
    assert_eq!(run.updated, now());

    let (run, t) = walk(run, &[to(Pending)], 3600);
    assert_eq!(run.next_scheduled_start_time, None);
    assert_eq!(
        run.state.as_ref().and_then(State::scheduled_time),
        Some(scheduled_for),
        "PENDING copies the schedule"
    );
    assert_eq!(run.updated, t);

    let (run, t) = walk(run, &[to(Running)], 5);
    assert_eq!(run.run_count, 1);
    assert_eq!(run.start_time, Some(t));
    let started = t;

    let (run, t) = walk(run, &[to(Completed)], 100);
    assert_eq!(run.end_time, Some(t));
    assert_eq!(run.total_run_time, 100.0);

    // A manual rerun through the deployment.
    let (run, _) = walk(run, &[to(Scheduled)], 1);
    assert_eq!(run.end_time, None);
    assert!(run.next_scheduled_start_time.is_some());
    assert_eq!(policy_value(&run, "retry_type"), Some(&json!("reschedule")));
    let (run, t) = walk(run, &[to(Pending), to(Running), to(Failed)], 7);
    assert_eq!(run.run_count, 2);
    assert_eq!(
        run.start_time,
        Some(started),
        "start time is the first start"
    );
    assert_eq!(run.end_time, Some(t));
    assert_eq!(run.total_run_time, 107.0);
    assert_eq!(
        run.expected_start_time,
        Some(scheduled_for),
        "fixed by the first state"
    );
}

#[test]
fn initial_state_bookkeeping() {
    let run = set_initial_state(base_run(), to(Pending), now());
    assert_eq!(run.expected_start_time, Some(now()));
    assert_eq!(run.next_scheduled_start_time, None);
    assert_eq!(run.state_type(), Some(Pending));

    // Forced, so even a guarded first state is written.
    let run = set_initial_state(base_run(), to(Paused), now());
    assert_eq!(run.state_type(), Some(Paused));

    let run = set_initial_state(base_run(), to(Crashed), now());
    assert_eq!((run.start_time, run.end_time), (Some(now()), Some(now())));
}

#[test]
fn subflow_states_point_at_the_parent_task() {
    let mut run = base_run();
    subflow(&mut run);
    let parent = run.parent_task_run_id.expect("subflow");
    let run = set_initial_state(run, to(Running), now());
    let state = run.state.expect("state");
    assert_eq!(
        state.state_details["task_run_id"],
        json!(parent.to_string())
    );
    assert_eq!(
        state.state_details["flow_run_id"],
        json!(run.id.to_string())
    );
}

#[test]
fn new_states_are_stamped_after_the_current_one() {
    let run = run_in(Some(State::new(Scheduled, now())));
    let out = check(run.state.clone(), to(Pending), false);
    assert_eq!(
        written(&out).1.timestamp,
        now() + TimeDelta::microseconds(1)
    );

    let out = orchestrate_on(
        &run_in(Some(State::new(Running, now() + secs(5)))),
        to(Completed),
        false,
        None,
    );
    let (updated, state) = written(&out);
    assert_eq!(
        state.timestamp,
        now() + secs(5) + TimeDelta::microseconds(1)
    );
    assert!(updated.total_run_time >= 0.0);

    let out = check(Some(cur(Scheduled)), to(Pending), false);
    assert_eq!(
        written(&out).1.timestamp,
        now(),
        "normally the server's now"
    );
}

#[test]
fn proposals_are_normalised() {
    let mut raw = State::new(Scheduled, now() - secs(999));
    raw.name = String::new();
    raw.state_details
        .insert("scheduled_time".to_owned(), Value::Null);
    let id = raw.id;
    let state = normalize_proposed_state(raw, now());
    assert_eq!(state.name, "Scheduled");
    assert_eq!(state.timestamp, now());
    assert_eq!(state.scheduled_time(), Some(now()));
    assert_eq!(state.id, id);

    let kept = normalize_proposed_state(sched_in(named(Scheduled, "Custom"), 60), now());
    assert_eq!(kept.name, "Custom");
    assert_eq!(kept.scheduled_time(), Some(now() + secs(60)));

    let pending = normalize_proposed_state(named(Pending, ""), now());
    assert_eq!(pending.name, "Pending");
    assert!(pending.scheduled_time().is_none());
}

#[test]
fn estimates() {
    let mut run = run_in(Some(cur(Running)));
    run.total_run_time = 5.0;
    assert_eq!(estimated_run_time(&run, now()), 65.0);
    run.state = Some(cur(Completed));
    assert_eq!(estimated_run_time(&run, now()), 5.0);

    let mut run = run_in(Some(cur(Scheduled)));
    assert_eq!(estimated_start_time_delta(&run, now()), 0.0);
    run.expected_start_time = Some(now() - secs(20));
    assert_eq!(
        estimated_start_time_delta(&run, now()),
        20.0,
        "late and not started"
    );
    run.start_time = Some(now() - secs(5));
    assert_eq!(estimated_start_time_delta(&run, now()), 15.0);
    run.start_time = Some(now() - secs(25));
    assert_eq!(
        estimated_start_time_delta(&run, now()),
        0.0,
        "started early"
    );
    run.start_time = None;
    run.state = Some(cur(Cancelled));
    assert_eq!(estimated_start_time_delta(&run, now()), 0.0, "finished");
}

#[test]
fn concurrency_from_a_deployment() {
    let mut deployment = Deployment {
        id: Uuid::now_v7(),
        created: now(),
        updated: now(),
        name: "d".to_owned(),
        version: None,
        version_info: None,
        description: None,
        flow_id: Uuid::now_v7(),
        paused: false,
        schedules: Vec::new(),
        concurrency_limit: Some(2),
        concurrency_options: Some(json!({"collision_strategy": "CANCEL_NEW"})),
        job_variables: JsonMap::new(),
        parameters: JsonMap::new(),
        parameter_openapi_schema: None,
        enforce_parameter_schema: true,
        pull_steps: None,
        path: None,
        entrypoint: None,
        tags: Vec::new(),
        labels: JsonMap::new(),
        work_queue_name: None,
        work_queue_id: None,
        work_pool_name: None,
        last_polled: None,
        status: DeploymentStatus::NotReady,
        storage_document_id: None,
        infrastructure_document_id: None,
        created_by: None,
        updated_by: None,
    };
    let c = DeploymentConcurrency::from_deployment(&deployment, 2);
    assert_eq!(c.limit, Some(2));
    assert_eq!(c.collision_strategy, CollisionStrategy::CancelNew);
    assert_eq!(c.slot_wait_seconds, 30);
    assert!(c.is_full());
    deployment.concurrency_options = None;
    deployment.concurrency_limit = None;
    let c = DeploymentConcurrency::from_deployment(&deployment, 7);
    assert_eq!(c.collision_strategy, CollisionStrategy::Enqueue);
    assert!(!c.is_full());
}

#[test]
fn wire_spellings() {
    let all = [
        (SetStateStatus::Accept, "ACCEPT", "accept_details"),
        (SetStateStatus::Reject, "REJECT", "reject_details"),
        (SetStateStatus::Abort, "ABORT", "abort_details"),
        (SetStateStatus::Wait, "WAIT", "wait_details"),
    ];
    for (status, name, details) in all {
        assert_eq!((status.as_str(), status.details_type()), (name, details));
    }
    for s in [CollisionStrategy::Enqueue, CollisionStrategy::CancelNew] {
        assert_eq!(CollisionStrategy::parse(s.as_str()), Some(s));
    }
}
