//! Property tests: racing claimants against a compare-and-set store, idempotent transition ids,
//! and bookkeeping that stays consistent over arbitrary sequences of proposals.

use chrono::{TimeDelta, TimeZone, Utc};
use proptest::collection::vec;
use proptest::prelude::*;
use serde_json::{Value, json};
use uuid::Uuid;

use super::*;
use crate::domain::{FlowRun, State, StateType, Timestamp};

fn t0() -> Timestamp {
    Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0)
        .single()
        .expect("valid date")
}

fn transition_id(n: usize) -> String {
    Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 + n as u128).to_string()
}

fn names_for(state_type: StateType) -> &'static [&'static str] {
    match state_type {
        StateType::Scheduled => &[
            "Scheduled",
            "Late",
            "AwaitingRetry",
            "AwaitingConcurrencySlot",
            "Resuming",
        ],
        StateType::Pending => &["Pending", "Submitting", "InfrastructurePending"],
        StateType::Running => &["Running", "Retrying"],
        StateType::Paused => &["Paused", "Suspended"],
        StateType::Completed => &["Completed", "Cached"],
        StateType::Failed => &["Failed", "TimedOut"],
        _ => &[""],
    }
}

/// The ingredients of a state, kept plain so proptest can shrink them.
#[derive(Debug, Clone)]
struct StateSpec {
    type_index: usize,
    name_index: usize,
    scheduled_offset: Option<i64>,
    data: u8,
    pause_reschedule: bool,
    pause_key: Option<u8>,
    pause_timeout_offset: Option<i64>,
}

impl StateSpec {
    fn build(&self, at: Timestamp) -> State {
        let state_type = StateType::ALL[self.type_index % StateType::ALL.len()];
        let names = names_for(state_type);
        let mut state = State::new(state_type, at).named(names[self.name_index % names.len()]);
        if let Some(offset) = self.scheduled_offset {
            state.set_scheduled_time(Some(at + TimeDelta::seconds(offset)));
        }
        state.data = match self.data {
            0 => Value::Null,
            1 => json!({"type": "unpersisted"}),
            2 => json!({"storage_key": "s3://b/k", "serializer": {"type": "json"}}),
            _ => json!(7),
        };
        if self.pause_reschedule {
            state
                .state_details
                .insert("pause_reschedule".to_owned(), json!(true));
        }
        if let Some(key) = self.pause_key {
            state
                .state_details
                .insert("pause_key".to_owned(), json!(format!("key-{key}")));
        }
        if let Some(offset) = self.pause_timeout_offset {
            let timeout = crate::time::format_timestamp(at + TimeDelta::seconds(offset));
            state
                .state_details
                .insert("pause_timeout".to_owned(), json!(timeout));
        }
        state
    }
}

fn state_spec() -> impl Strategy<Value = StateSpec> {
    (
        0..StateType::ALL.len(),
        0usize..5,
        proptest::option::of(-600i64..600),
        0u8..4,
        any::<bool>(),
        proptest::option::of(0u8..3),
        proptest::option::weighted(0.2, -600i64..600),
    )
        .prop_map(
            |(
                type_index,
                name_index,
                scheduled_offset,
                data,
                pause_reschedule,
                pause_key,
                pause_timeout_offset,
            )| StateSpec {
                type_index,
                name_index,
                scheduled_offset,
                data,
                pause_reschedule,
                pause_key,
                pause_timeout_offset,
            },
        )
}

#[derive(Debug, Clone)]
struct RunSpec {
    deployment: bool,
    pid: bool,
    subflow: bool,
    retries: Option<i64>,
    retry_delay: i64,
}

impl RunSpec {
    fn build(&self) -> FlowRun {
        let mut run = FlowRun::new(Uuid::now_v7(), t0() - TimeDelta::hours(1));
        if self.deployment {
            run.deployment_id = Some(Uuid::now_v7());
        }
        if self.pid {
            run.infrastructure_pid = Some("1234".to_owned());
        }
        if self.subflow {
            run.parent_task_run_id = Some(Uuid::now_v7());
        }
        if let Some(retries) = self.retries {
            run.empirical_policy
                .insert("retries".to_owned(), json!(retries));
            run.empirical_policy
                .insert("retry_delay".to_owned(), json!(self.retry_delay));
        }
        run
    }
}

fn run_spec() -> impl Strategy<Value = RunSpec> {
    (
        proptest::bool::weighted(0.8),
        any::<bool>(),
        proptest::bool::weighted(0.2),
        proptest::option::of(0i64..3),
        0i64..60,
    )
        .prop_map(|(deployment, pid, subflow, retries, retry_delay)| RunSpec {
            deployment,
            pid,
            subflow,
            retries,
            retry_delay,
        })
}

fn concurrency() -> impl Strategy<Value = Option<DeploymentConcurrency>> {
    proptest::option::of(
        (
            proptest::option::of(0i64..3),
            0i64..4,
            prop_oneof![
                Just(CollisionStrategy::Enqueue),
                Just(CollisionStrategy::CancelNew)
            ],
        )
            .prop_map(
                |(limit, active_slots, collision_strategy)| DeploymentConcurrency {
                    limit,
                    active_slots,
                    collision_strategy,
                    slot_wait_seconds: DeploymentConcurrency::DEFAULT_SLOT_WAIT_SECONDS,
                },
            ),
    )
}

/// States a worker may find a run in when it polls (or a rerun starts from).
fn claimable_state() -> impl Strategy<Value = Option<State>> {
    (0usize..9, -600i64..600).prop_map(|(kind, offset)| {
        let at = t0() - TimeDelta::seconds(30);
        let scheduled = |name: &str| {
            Some(
                State::new(StateType::Scheduled, at)
                    .named(name)
                    .scheduled_at(t0() + TimeDelta::seconds(offset)),
            )
        };
        match kind {
            0 => scheduled("Scheduled"),
            1 => scheduled("Late"),
            2 => scheduled("AwaitingRetry"),
            3 => scheduled("AwaitingConcurrencySlot"),
            4 => scheduled("Resuming"),
            5 => Some(State::new(StateType::Failed, at)),
            6 => Some(State::new(StateType::Crashed, at)),
            7 => Some(State::new(StateType::Completed, at)),
            _ => None,
        }
    })
}

/// The store: one run and a version that every successful write bumps.
struct Store {
    run: FlowRun,
    version: u64,
    writes: usize,
}

/// Where one claimant (a worker proposing PENDING) is in its claim.
#[derive(Debug)]
enum Phase {
    Read,
    Commit {
        seen: u64,
        next: Box<FlowRun>,
        status: SetStateStatus,
    },
    Done {
        status: SetStateStatus,
        wrote: bool,
    },
}

fn claim_step(
    store: &mut Store,
    phase: &mut Phase,
    me: usize,
    now: Timestamp,
    limits: Option<DeploymentConcurrency>,
) {
    match phase {
        Phase::Read => {
            let snapshot = store.run.clone();
            let seen = store.version;
            let mut proposal = State::new(StateType::Pending, now);
            proposal
                .state_details
                .insert("transition_id".to_owned(), json!(transition_id(me)));
            let out = orchestrate_flow_run(OrchestrationInput {
                run: &snapshot,
                proposal: Proposal::new(proposal),
                now,
                deployment_concurrency: limits,
            });
            *phase = match out.updated_run {
                Some(next) => Phase::Commit {
                    seen,
                    next: Box::new(next),
                    status: out.status,
                },
                None => Phase::Done {
                    status: out.status,
                    wrote: false,
                },
            };
        }
        Phase::Commit { seen, next, status } => {
            if *seen == store.version {
                store.run = (**next).clone();
                store.version += 1;
                store.writes += 1;
                *phase = Phase::Done {
                    status: *status,
                    wrote: true,
                };
            } else {
                // Compare-and-set failed: someone wrote first. Re-read and orchestrate again.
                *phase = Phase::Read;
            }
        }
        Phase::Done { .. } => {}
    }
}

/// Runs claimants in the order `schedule` gives, then round-robin long enough for all to finish
/// (each round settles at least one claimant every two rounds).
fn race(
    start: Option<State>,
    deployed: bool,
    claimants: usize,
    schedule: &[usize],
    limits: Option<DeploymentConcurrency>,
) -> (Store, Vec<Phase>) {
    let mut run = FlowRun::new(Uuid::now_v7(), t0() - TimeDelta::hours(1));
    if deployed {
        run.deployment_id = Some(Uuid::now_v7());
    }
    run.state = start;
    let mut store = Store {
        run,
        version: 0,
        writes: 0,
    };
    let mut phases: Vec<Phase> = (0..claimants).map(|_| Phase::Read).collect();
    let mut tick = 0i64;
    let order = schedule
        .iter()
        .map(|i| i % claimants)
        .chain((0..claimants * (2 * claimants + 4)).map(|i| i % claimants));
    for me in order {
        tick += 1;
        let now = t0() + TimeDelta::milliseconds(tick);
        claim_step(&mut store, &mut phases[me], me, now, limits);
    }
    (store, phases)
}

fn finished(phase: &Phase) -> Option<(SetStateStatus, bool)> {
    match phase {
        Phase::Done { status, wrote } => Some((*status, *wrote)),
        _ => None,
    }
}

proptest! {
    /// Of N workers racing to claim one run, exactly one holds it (ACCEPT, and its write landed);
    /// every other worker is told to ABORT, whatever the interleaving.
    #[test]
    fn exactly_one_claimant_wins(
        claimants in 2usize..7,
        schedule in vec(0usize..64, 0..80),
        start in claimable_state(),
        deployed in any::<bool>(),
        limit in proptest::option::of(1i64..4),
        strategy in prop_oneof![Just(CollisionStrategy::Enqueue), Just(CollisionStrategy::CancelNew)],
    ) {
        // A slot is free (or there is no limit), so the claim itself can succeed.
        let limits = limit.map(|l| DeploymentConcurrency {
            limit: Some(l),
            active_slots: l - 1,
            collision_strategy: strategy,
            slot_wait_seconds: 30,
        });
        let (store, phases) = race(start, deployed, claimants, &schedule, limits);
        let outcomes: Vec<_> = phases.iter().map(finished).collect();
        prop_assert!(outcomes.iter().all(Option::is_some), "unfinished: {phases:?}");
        let winners: Vec<usize> = outcomes
            .iter()
            .enumerate()
            .filter(|(_, o)| *o == &Some((SetStateStatus::Accept, true)))
            .map(|(i, _)| i)
            .collect();
        prop_assert_eq!(winners.len(), 1, "outcomes: {:?}", outcomes);
        for (i, o) in outcomes.iter().enumerate() {
            if i != winners[0] {
                prop_assert_eq!(*o, Some((SetStateStatus::Abort, false)), "claimant {}", i);
            }
        }
        prop_assert_eq!(store.writes, 1);
        let state = store.run.state.as_ref().expect("claimed run has a state");
        prop_assert_eq!(state.state_type, StateType::Pending);
        let winner_id = transition_id(winners[0]);
        prop_assert_eq!(state.transition_id(), Some(winner_id.as_str()));
    }

    /// With the deployment's limit full, nobody holds the run, however the claims interleave.
    #[test]
    fn a_full_limit_lets_nobody_claim(
        claimants in 2usize..6,
        schedule in vec(0usize..64, 0..60),
        start in claimable_state(),
        limit in 1i64..4,
        extra in 0i64..2,
        strategy in prop_oneof![Just(CollisionStrategy::Enqueue), Just(CollisionStrategy::CancelNew)],
    ) {
        let limits = Some(DeploymentConcurrency {
            limit: Some(limit),
            active_slots: limit + extra,
            collision_strategy: strategy,
            slot_wait_seconds: 30,
        });
        let (store, phases) = race(start, true, claimants, &schedule, limits);
        for phase in &phases {
            let (status, _) = finished(phase).expect("every claimant finishes");
            prop_assert_ne!(status, SetStateStatus::Accept);
        }
        prop_assert_ne!(store.run.state_type(), Some(StateType::Pending));
    }

    /// Sending the same proposal (same transition id) again and again writes at most one state,
    /// and once it is written every repeat is answered with it.
    #[test]
    fn a_transition_id_is_written_at_most_once(
        run in run_spec(),
        current in proptest::option::weighted(0.9, state_spec()),
        run_count in 0i64..4,
        proposal in state_spec(),
        limits in concurrency(),
        gaps in vec(0i64..120, 3),
    ) {
        let mut run = run.build();
        run.run_count = run_count;
        run.state = current.map(|s| s.build(t0() - TimeDelta::seconds(60)));
        let mut proposed = proposal.build(t0());
        proposed
            .state_details
            .insert("transition_id".to_owned(), json!(transition_id(99)));
        let mut now = t0();
        let mut written: Option<State> = None;
        for gap in gaps {
            now += TimeDelta::seconds(gap);
            let out = orchestrate_flow_run(OrchestrationInput {
                run: &run,
                proposal: Proposal::new(proposed.clone()),
                now,
                deployment_concurrency: limits,
            });
            if let Some(first) = &written {
                prop_assert!(out.updated_run.is_none(), "second write for one transition id");
                prop_assert_eq!(out.status, SetStateStatus::Reject);
                prop_assert_eq!(out.state.as_ref(), Some(first));
            }
            if let Some(next) = out.updated_run {
                written = next.state.clone();
                run = next;
            }
        }
    }

    /// Over any sequence of proposals (forced or not), the verdicts are well formed and the run's
    /// bookkeeping stays consistent.
    #[test]
    fn bookkeeping_stays_consistent(
        run in run_spec(),
        first in state_spec(),
        steps in vec((state_spec(), proptest::bool::weighted(0.2), concurrency(), 0i64..120), 1..25),
    ) {
        let mut run = set_initial_state(run.build(), first.build(t0()), t0());
        let mut now = t0();
        check_invariants(&run, now)?;
        for (spec, force, limits, gap) in steps {
            now += TimeDelta::seconds(gap);
            let proposal = spec.build(now);
            let expected_name = normalize_proposed_state(proposal.clone(), now).name;
            let out = orchestrate_flow_run(OrchestrationInput {
                run: &run,
                proposal: Proposal { state: proposal.clone(), force },
                now,
                deployment_concurrency: limits,
            });
            match out.status {
                SetStateStatus::Accept => {
                    let state = out.state.as_ref().expect("accepted state is returned");
                    prop_assert_eq!(state.state_type, proposal.state_type);
                    prop_assert_eq!(&state.name, &expected_name);
                    prop_assert!(out.updated_run.is_some());
                    prop_assert!(out.details.reason.is_none());
                }
                SetStateStatus::Wait => {
                    prop_assert!(out.details.delay_seconds.is_some_and(|d| d > 0));
                    prop_assert!(out.updated_run.is_none());
                }
                SetStateStatus::Abort => prop_assert!(out.updated_run.is_none()),
                SetStateStatus::Reject => prop_assert!(out.details.reason.is_some()),
            }
            let Some(next) = out.updated_run else {
                prop_assert_eq!(&out.state, &run.state, "nothing written: current state returned");
                continue;
            };
            prop_assert_eq!(&out.state, &next.state);
            let before = run.state.as_ref().expect("runs keep a state");
            let after = next.state.as_ref().expect("written state");
            prop_assert!(after.timestamp > before.timestamp, "history stays ordered");
            prop_assert_ne!(after.id, before.id);
            prop_assert!(next.run_count >= run.run_count);
            prop_assert!(next.run_count <= run.run_count + 1);
            prop_assert!(next.total_run_time >= run.total_run_time);
            if run.start_time.is_some() {
                prop_assert_eq!(next.start_time, run.start_time, "start time is set once");
            }
            prop_assert_eq!(next.expected_start_time, run.expected_start_time);
            prop_assert_eq!(next.updated, now);
            check_invariants(&next, now)?;
            run = next;
        }
    }
}

fn check_invariants(run: &FlowRun, now: Timestamp) -> Result<(), TestCaseError> {
    let state = run.state.as_ref().expect("run has a state");
    prop_assert_eq!(
        run.end_time.is_some(),
        state.is_terminal(),
        "end_time iff terminal"
    );
    prop_assert_eq!(
        run.next_scheduled_start_time.is_some(),
        state.state_type == StateType::Scheduled,
        "next_scheduled_start_time iff SCHEDULED"
    );
    if state.state_type == StateType::Scheduled {
        prop_assert_eq!(run.next_scheduled_start_time, state.scheduled_time());
    }
    if state.state_type == StateType::Running || state.is_terminal() {
        prop_assert!(run.start_time.is_some());
    }
    prop_assert!(run.expected_start_time.is_some());
    prop_assert_eq!(
        state.state_details.get("flow_run_id"),
        Some(&json!(run.id.to_string()))
    );
    prop_assert!(run.total_run_time >= 0.0);
    prop_assert!(estimated_run_time(run, now) >= run.total_run_time);
    prop_assert!(estimated_start_time_delta(run, now) >= 0.0);
    Ok(())
}
