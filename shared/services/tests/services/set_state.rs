//! `set_flow_run_state` (reference §6.3, §7.3): the claim race, waiting for the scheduled time,
//! and the deployment concurrency limit.

use std::sync::Arc;

use serde_json::json;
use sluice_core::domain::{Id, State, StateType};
use sluice_core::orchestration::SetStateStatus;
use sluice_services::{DeploymentInput, FlowRunFromDeployment, Services, SetStateResult};
use tokio::sync::Barrier;

use crate::common::{at, env, proposal, scheduled, t0};

/// A worker's claim: PENDING with its own transition id.
fn claim() -> State {
    let mut s = proposal(StateType::Pending);
    s.state_details
        .insert("transition_id".to_owned(), json!(Id::new_v4().to_string()));
    s
}

/// One claim per entry of `runs` (ids may repeat), each from its own task, released at once.
async fn race(services: &Services, runs: &[Id]) -> Vec<SetStateResult> {
    let barrier = Arc::new(Barrier::new(runs.len()));
    let handles: Vec<_> = runs
        .iter()
        .map(|&run| {
            let services = services.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                services
                    .set_flow_run_state(run, claim(), false)
                    .await
                    .expect("set state")
            })
        })
        .collect();
    let mut results = Vec::new();
    for h in handles {
        results.push(h.await.expect("claim task"));
    }
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn of_eight_racing_claims_exactly_one_is_accepted() {
    let env = env();
    let flow = env.flow("etl").await;
    env.pool("pool").await;
    for round in 0..5 {
        let run = env.run_in(flow, "pool", "default", t0()).await;
        let results = race(&env.services, &[run.id; 8]).await;
        let accepted: Vec<&SetStateResult> = results
            .iter()
            .filter(|r| r.status == SetStateStatus::Accept)
            .collect();
        assert_eq!(accepted.len(), 1, "round {round}: {results:?}");
        let winner = accepted[0].state.as_ref().expect("the written state");
        assert!(accepted[0].committed);
        assert_eq!(winner.state_type, StateType::Pending);
        let aborted: Vec<&SetStateResult> = results
            .iter()
            .filter(|r| r.status == SetStateStatus::Abort)
            .collect();
        assert_eq!(aborted.len(), 7, "round {round}: {results:?}");
        for r in aborted {
            assert!(!r.committed);
            assert_eq!(
                r.reason.as_deref(),
                Some("This run is in a PENDING state and cannot transition to a PENDING state.")
            );
            assert_eq!(
                r.state.as_ref().map(|s| s.id),
                Some(winner.id),
                "the loser sees the winner's state"
            );
        }
        let history = env.states(run.id).await;
        let types: Vec<StateType> = history.iter().map(|s| s.state_type).collect();
        assert_eq!(types, vec![StateType::Scheduled, StateType::Pending]);
        assert_eq!(history[1].id, winner.id);
        let read = env.run(run.id).await;
        assert_eq!(read.state.as_ref().map(|s| s.id), Some(winner.id));
        assert_eq!(
            read.state.as_ref().and_then(State::scheduled_time),
            Some(t0()),
            "PENDING inherits the scheduled time"
        );
    }
}

#[tokio::test]
async fn running_before_the_scheduled_time_is_told_to_wait() {
    let env = env();
    let flow = env.flow("etl").await;
    env.pool("pool").await;
    let run = env.run_in(flow, "pool", "default", at(120)).await;

    let r = env.propose(run.id, proposal(StateType::Running)).await;
    assert_eq!(r.status, SetStateStatus::Wait);
    assert_eq!(r.delay_seconds, Some(120));
    assert!(!r.committed);
    assert_eq!(
        r.state.as_ref().map(|s| s.state_type),
        Some(StateType::Scheduled)
    );
    assert_eq!(env.states(run.id).await.len(), 1, "nothing written");

    // Claimed early, the PENDING run carries the time and still waits.
    assert!(env.propose(run.id, claim()).await.committed);
    env.set_now(at(110));
    let r = env.propose(run.id, proposal(StateType::Running)).await;
    assert_eq!(r.status, SetStateStatus::Wait);
    assert_eq!(r.delay_seconds, Some(10));
    assert_eq!(env.run(run.id).await.state_type(), Some(StateType::Pending));

    env.set_now(at(120));
    let r = env.propose(run.id, proposal(StateType::Running)).await;
    assert_eq!(r.status, SetStateStatus::Accept);
    assert!(r.committed);
    let read = env.run(run.id).await;
    assert_eq!(read.state_type(), Some(StateType::Running));
    assert_eq!(read.run_count, 1);
    assert_eq!(read.start_time, Some(at(120)));
}

#[tokio::test]
async fn a_deployment_limit_of_one_sends_a_second_claim_back_to_wait_for_a_slot() {
    let env = env();
    let flow = env.flow("etl").await;
    env.pool("pool").await;
    let d = env
        .deploy_with(DeploymentInput {
            name: "limited".to_owned(),
            flow_id: Some(flow),
            concurrency_limit: Some(1),
            work_pool_name: Some("pool".to_owned()),
            ..Default::default()
        })
        .await;
    let mut runs = Vec::new();
    for _ in 0..3 {
        let run = env
            .services
            .create_flow_run_from_deployment(
                d.id,
                FlowRunFromDeployment {
                    state: Some(scheduled(t0())),
                    ..Default::default()
                },
            )
            .await
            .expect("run")
            .value;
        runs.push(run.id);
    }
    let (first, second, third) = (runs[0], runs[1], runs[2]);

    let r = env.propose(first, claim()).await;
    assert_eq!(r.status, SetStateStatus::Accept);

    // While the first is PENDING, then RUNNING, the slot is taken.
    env.set_now(at(5));
    let r = env.propose(second, claim()).await;
    assert_eq!(r.status, SetStateStatus::Reject);
    assert!(r.committed, "the replacement state is written");
    assert_eq!(
        r.reason.as_deref(),
        Some("Deployment concurrency limit reached.")
    );
    let s = r.state.as_ref().expect("replacement");
    assert_eq!(s.state_type, StateType::Scheduled);
    assert_eq!(s.name, "AwaitingConcurrencySlot");
    assert_eq!(s.scheduled_time(), Some(at(35)));

    assert_eq!(
        env.propose(first, proposal(StateType::Running))
            .await
            .status,
        SetStateStatus::Accept
    );
    env.set_now(at(10));
    let r = env.propose(third, claim()).await;
    assert_eq!(r.status, SetStateStatus::Reject);
    let read = env.run(third).await;
    assert_eq!(read.state_type(), Some(StateType::Scheduled));
    assert_eq!(read.state_name(), Some("AwaitingConcurrencySlot"));
    assert_eq!(read.next_scheduled_start_time, Some(at(40)));
    let names: Vec<String> = env
        .states(third)
        .await
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, vec!["Scheduled", "AwaitingConcurrencySlot"]);

    // The first finishes; the slot is free again.
    assert_eq!(
        env.propose(first, proposal(StateType::Completed))
            .await
            .status,
        SetStateStatus::Accept
    );
    env.set_now(at(40));
    let r = env.propose(second, claim()).await;
    assert_eq!(r.status, SetStateStatus::Accept);
    assert_eq!(env.run(second).await.state_type(), Some(StateType::Pending));
    assert_eq!(
        env.propose(third, claim()).await.status,
        SetStateStatus::Reject
    );
}

/// Eight workers claim eight different runs of a deployment at once: only `limit` of them get a
/// slot; the others go back to wait for one. Claiming counts the deployment's active runs, so the
/// count and the commit must not interleave with another claim's.
#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn racing_claims_of_different_runs_never_exceed_the_deployment_limit() {
    let env = env();
    let flow = env.flow("etl").await;
    env.pool("pool").await;
    for limit in [1_usize, 3] {
        let d = env
            .deploy_with(DeploymentInput {
                name: format!("limit-{limit}"),
                flow_id: Some(flow),
                concurrency_limit: Some(limit as i64),
                work_pool_name: Some("pool".to_owned()),
                ..Default::default()
            })
            .await;
        for round in 0..5 {
            let mut runs = Vec::new();
            for _ in 0..8 {
                let run = env
                    .services
                    .create_flow_run_from_deployment(
                        d.id,
                        FlowRunFromDeployment {
                            state: Some(scheduled(t0())),
                            ..Default::default()
                        },
                    )
                    .await
                    .expect("run")
                    .value;
                runs.push(run.id);
            }
            let results = race(&env.services, &runs).await;
            let mut winners = Vec::new();
            for (r, &id) in results.iter().zip(&runs) {
                match r.status {
                    SetStateStatus::Accept => winners.push(id),
                    SetStateStatus::Reject => {
                        assert_eq!(
                            env.run(id).await.state_name(),
                            Some("AwaitingConcurrencySlot")
                        );
                    }
                    other => panic!("limit {limit}, round {round}: unexpected {other:?}"),
                }
            }
            assert_eq!(
                winners.len(),
                limit,
                "limit {limit}, round {round}: {results:?}"
            );
            // The winners finish, freeing their slots for the next round.
            for id in winners {
                for next in [StateType::Running, StateType::Completed] {
                    assert_eq!(
                        env.propose(id, proposal(next)).await.status,
                        SetStateStatus::Accept
                    );
                }
            }
        }
    }
}
