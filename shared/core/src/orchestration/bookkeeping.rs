//! What every written state does to its run (Prefect's `global_policy.py`), whatever the rules
//! decided. It runs on the state actually written: the proposal, or a rule's replacement.

use chrono::TimeDelta;

use super::fields::{self, PolicyEdit};
use super::rules::Ctx;
use crate::domain::{FlowRun, State, StateType};

/// Writes `state` onto a copy of the run, with the policy edits and the bookkeeping applied.
/// Returns the updated run; its `state` is the state as written.
pub(super) fn commit(
    ctx: &Ctx<'_>,
    mut state: State,
    edits_before: &[PolicyEdit],
    edits_after: &[PolicyEdit],
) -> FlowRun {
    let mut run = ctx.run.clone();
    let initial = ctx.initial;
    for edit in edits_before {
        edit.apply(&mut run.empirical_policy);
    }

    // Prefect only avoids exact timestamp collisions with stored states. We go a little further
    // and keep a run's history strictly ordered, so a coarse or stepped-back clock cannot put a
    // new state before the one it replaces.
    if let Some(initial) = initial
        && state.timestamp <= initial.timestamp
    {
        state.timestamp = initial
            .timestamp
            .checked_add_signed(TimeDelta::microseconds(1))
            .unwrap_or(initial.timestamp);
    }
    let ts = state.timestamp;
    let is_terminal = state.is_terminal();

    // SetStartTime: the first time the run enters RUNNING.
    if state.state_type == StateType::Running && run.start_time.is_none() {
        run.start_time = Some(ts);
    }

    // SetEndTime: cleared when a run leaves a terminal state (a manual rerun); set on entering
    // one, along with start_time for runs that ended without ever running.
    if initial.is_some_and(State::is_terminal) && !is_terminal {
        run.end_time = None;
    }
    if is_terminal && run.end_time.is_none() {
        if run.start_time.is_none() {
            run.start_time = Some(ts);
        }
        run.end_time = Some(ts);
    }

    // IncrementRunTime: time spent in the RUNNING state being left. Never negative, so a clock
    // that steps back cannot shrink the total.
    if let Some(initial) = initial
        && initial.state_type == StateType::Running
    {
        run.total_run_time += fields::seconds_between(ts, initial.timestamp).max(0.0);
    }

    // SetExpectedStartTime: fixed by the first state (its schedule, or when it was written).
    if run.expected_start_time.is_none() {
        run.expected_start_time = if state.state_type == StateType::Scheduled {
            state.scheduled_time()
        } else {
            Some(ts)
        };
    }

    // SetNextScheduledStartTime: what workers poll on, so it tracks the SCHEDULED state only.
    if initial.is_some_and(|s| s.state_type == StateType::Scheduled) {
        run.next_scheduled_start_time = None;
    }
    if state.state_type == StateType::Scheduled {
        run.next_scheduled_start_time = state.scheduled_time();
    }

    // UpdateStateDetails and UpdateSubflowStateDetails: states point back at their run, and a
    // subflow's states at the parent task run that tracks it.
    fields::set_detail(
        &mut state,
        fields::FLOW_RUN_ID,
        Some(serde_json::Value::String(run.id.to_string())),
    );
    if let Some(parent) = run.parent_task_run_id {
        fields::set_detail(
            &mut state,
            fields::TASK_RUN_ID,
            Some(serde_json::Value::String(parent.to_string())),
        );
    }

    if state.state_type == StateType::Running {
        // IncrementFlowRunCount: each attempt counts once; resuming a pause is not an attempt.
        if !fields::resuming(&run.empirical_policy) {
            run.run_count = run.run_count.saturating_add(1);
        }
    }
    // RemoveResumingIndicator: the resumed attempt has started or ended.
    if (state.state_type == StateType::Running || is_terminal)
        && fields::resuming(&run.empirical_policy)
    {
        PolicyEdit {
            resuming: Some(false),
            ..PolicyEdit::default()
        }
        .apply(&mut run.empirical_policy);
    }

    for edit in edits_after {
        edit.apply(&mut run.empirical_policy);
    }
    run.updated = ctx.now;
    run.state = Some(state);
    run
}
