//! The late-run marker (reference §5.3): SCHEDULED runs named "Scheduled" become `Late` 15 s
//! after their time, keeping that time; nothing else is touched, and nothing is marked twice.

use serde_json::json;
use sluice_core::domain::StateType;
use sluice_services::{DeploymentInput, FlowRunFromDeployment, late_runs};

use crate::common::{at, env, proposal, scheduled, t0};

#[tokio::test]
async fn a_run_more_than_fifteen_seconds_past_due_becomes_late_with_the_same_time() {
    let env = env();
    let flow = env.flow("etl").await;
    env.pool("pool").await;
    let due = env.run_in(flow, "pool", "default", t0()).await;
    let later = env.run_in(flow, "pool", "default", at(6)).await;

    // 10 s past due (and 4 s for the other): not late yet.
    env.set_now(at(10));
    assert_eq!(late_runs::tick(&env.services).await.expect("tick"), 0);
    assert_eq!(env.run(due.id).await.state_name(), Some("Scheduled"));

    // 16 s past due: late. The other run is 10 s past due and stays.
    env.set_now(at(16));
    assert_eq!(late_runs::tick(&env.services).await.expect("tick"), 1);
    let run = env.run(due.id).await;
    let state = run.state.as_ref().expect("state");
    assert_eq!(state.state_type, StateType::Scheduled);
    assert_eq!(state.name, "Late");
    assert_eq!(state.timestamp, at(16));
    assert_eq!(state.scheduled_time(), Some(t0()));
    assert_eq!(run.next_scheduled_start_time, Some(t0()));
    assert_eq!(run.expected_start_time, Some(t0()));
    let other = env.run(later.id).await;
    assert_eq!(other.state_name(), Some("Scheduled"));
    assert_eq!(env.states(later.id).await.len(), 1);

    // A second pass marks nothing more: the history holds one Late state.
    assert_eq!(late_runs::tick(&env.services).await.expect("tick"), 0);
    let names: Vec<String> = env
        .states(due.id)
        .await
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, vec!["Scheduled", "Late"]);

    // Exactly 15 s past due counts (the bound is inclusive).
    env.set_now(at(21));
    assert_eq!(late_runs::tick(&env.services).await.expect("tick"), 1);
    assert_eq!(env.run(later.id).await.state_name(), Some("Late"));
    assert_eq!(
        env.run(later.id)
            .await
            .state
            .and_then(|s| s.scheduled_time()),
        Some(at(6))
    );
}

#[tokio::test]
async fn a_claimed_run_is_not_touched() {
    let env = env();
    let flow = env.flow("etl").await;
    env.pool("pool").await;
    let run = env.run_in(flow, "pool", "default", t0()).await;
    env.set_now(at(1));
    assert!(
        env.propose(run.id, proposal(StateType::Pending))
            .await
            .committed
    );
    env.set_now(at(120));
    assert_eq!(late_runs::tick(&env.services).await.expect("tick"), 0);
    let read = env.run(run.id).await;
    assert_eq!(read.state_type(), Some(StateType::Pending));
    assert_eq!(read.state_name(), Some("Pending"));
    assert_eq!(env.states(run.id).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overlapping_passes_mark_each_run_once() {
    let env = env();
    let flow = env.flow("etl").await;
    env.pool("pool").await;
    let mut ids = Vec::new();
    for k in 0..5 {
        ids.push(env.run_in(flow, "pool", "default", at(k)).await.id);
    }
    env.set_now(at(60));
    let (a, b) = tokio::join!(
        late_runs::tick(&env.services),
        late_runs::tick(&env.services)
    );
    let spawned = {
        let services = env.services.clone();
        tokio::spawn(async move { late_runs::tick(&services).await })
    };
    let c = spawned.await.expect("task").expect("tick");
    assert_eq!(a.expect("tick") + b.expect("tick") + c, 5);
    for id in ids {
        let names: Vec<String> = env.states(id).await.into_iter().map(|s| s.name).collect();
        assert_eq!(names, vec!["Scheduled", "Late"]);
    }
}

/// Prefect's `EnforceDeploymentConcurrencyOnLate` (#21060): with a full CANCEL_NEW deployment
/// limit a run that is late is cancelled rather than left to pile up; with room it goes Late.
#[tokio::test]
async fn a_late_run_of_a_full_cancel_new_deployment_is_cancelled() {
    let env = env();
    let flow = env.flow("etl").await;
    env.pool("pool").await;
    let d = env
        .deploy_with(DeploymentInput {
            name: "limited".to_owned(),
            flow_id: Some(flow),
            concurrency_limit: Some(1),
            concurrency_options: Some(json!({"collision_strategy": "CANCEL_NEW"})),
            work_pool_name: Some("pool".to_owned()),
            ..Default::default()
        })
        .await;
    let manual = |at| FlowRunFromDeployment {
        state: Some(scheduled(at)),
        ..Default::default()
    };
    let first = env
        .services
        .create_flow_run_from_deployment(d.id, manual(t0()))
        .await
        .expect("run")
        .value;
    let second = env
        .services
        .create_flow_run_from_deployment(d.id, manual(at(2)))
        .await
        .expect("run")
        .value;

    // While the deployment has room, a late run is just Late.
    env.set_now(at(16));
    assert_eq!(late_runs::tick(&env.services).await.expect("tick"), 1);
    assert_eq!(env.run(first.id).await.state_name(), Some("Late"));

    // The first run takes the only slot; the second, now late, is cancelled.
    assert!(
        env.propose(first.id, proposal(StateType::Pending))
            .await
            .committed
    );
    env.set_now(at(17));
    assert_eq!(late_runs::tick(&env.services).await.expect("tick"), 1);
    let run = env.run(second.id).await;
    let state = run.state.as_ref().expect("state");
    assert_eq!(state.state_type, StateType::Cancelled);
    assert_eq!(
        state.message.as_deref(),
        Some("Deployment concurrency limit reached.")
    );
    assert_eq!(
        env.run(first.id).await.state_type(),
        Some(StateType::Pending)
    );
}
