//! The scheduler (reference §5.2): how many runs, at which times, under which keys, and that
//! repeated or overlapping ticks and deployment changes never duplicate or lose a run.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::json;
use sluice_core::domain::{Deployment, Id, StateType, Timestamp};
use sluice_services::scheduler::{self, TickReport};
use sluice_services::{DeploymentPatch, FlowRunFromDeployment, Services, Settings};
use tokio::sync::Barrier;

use crate::common::{
    Env, active, at, cron, env, env_with, interval, map, proposal, scheduled, t0, utc,
};

fn key(d: &Deployment, date: &str) -> String {
    format!("scheduled {} {} {date}", d.id, d.schedules[0].id)
}

/// The idempotency keys of the deployment's runs, which must all differ.
async fn keys(env: &Env, deployment_id: Id) -> Vec<String> {
    let keys: Vec<String> = env
        .runs_of(deployment_id)
        .await
        .into_iter()
        .filter_map(|r| r.idempotency_key)
        .collect();
    let unique: BTreeSet<&String> = keys.iter().collect();
    assert_eq!(unique.len(), keys.len(), "duplicate keys: {keys:?}");
    keys
}

/// New York 09:00 from a Friday 07:00 EST: three runs (the minimum), the third across the DST
/// change, each keyed with Python's `str()` of the date in the schedule's zone.
#[tokio::test]
async fn cron_deployment_gets_three_runs_at_nine_new_york_time() {
    let env = env();
    let flow = env.flow("etl").await;
    env.pool("pool").await;
    let d = env
        .deploy_with(sluice_services::DeploymentInput {
            name: "daily".to_owned(),
            flow_id: Some(flow),
            schedules: vec![sluice_services::DeploymentScheduleInput {
                parameters: map(json!({"region": "us"})),
                ..active(cron("0 9 * * *", "America/New_York"))
            }],
            parameters: map(json!({"region": "eu", "n": 1})),
            tags: vec!["nightly".to_owned()],
            version: Some("v7".to_owned()),
            work_pool_name: Some("pool".to_owned()),
            ..Default::default()
        })
        .await;

    // The upsert scheduled them at once.
    assert_eq!(
        env.scheduled_times(d.id).await,
        vec![
            utc("2026-03-06T14:00:00Z"),
            utc("2026-03-07T14:00:00Z"),
            utc("2026-03-08T13:00:00Z"),
        ]
    );
    let runs = env.scheduled_runs_of(d.id).await;
    let keys: Vec<String> = runs
        .iter()
        .map(|r| r.idempotency_key.clone().expect("key"))
        .collect();
    assert_eq!(
        keys,
        vec![
            key(&d, "2026-03-06 09:00:00-05:00"),
            key(&d, "2026-03-07 09:00:00-05:00"),
            key(&d, "2026-03-08 09:00:00-04:00"),
        ]
    );
    let pool = env.services.read_work_pool("pool").await.expect("pool");
    for r in &runs {
        let state = r.state.as_ref().expect("state");
        assert_eq!(state.state_type, StateType::Scheduled);
        assert_eq!(state.name, "Scheduled");
        assert_eq!(state.message.as_deref(), Some("Flow run scheduled"));
        assert_eq!(state.scheduled_time(), r.next_scheduled_start_time);
        assert_eq!(r.expected_start_time, r.next_scheduled_start_time);
        assert!(r.auto_scheduled);
        assert_eq!(r.run_count, 0);
        assert_eq!(r.deployment_version.as_deref(), Some("v7"));
        assert_eq!(r.tags, vec!["auto-scheduled", "nightly"]);
        assert_eq!(r.parameters, map(json!({"region": "us", "n": 1})));
        assert_eq!(r.work_pool_name.as_deref(), Some("pool"));
        assert_eq!(r.work_pool_id, Some(pool.id));
        assert_eq!(r.work_queue_name.as_deref(), Some("default"));
        assert_eq!(r.work_queue_id, pool.default_queue_id);
        let by = r.created_by.as_ref().expect("created_by");
        assert_eq!(by.id, Some(d.schedules[0].id));
        assert_eq!(by.created_by_type.as_deref(), Some("SCHEDULE"));
        assert_eq!(by.display_value.as_deref(), Some("CronSchedule"));
        assert_eq!(env.states(r.id).await.len(), 1, "one initial state");
    }

    // A tick with nothing missing creates nothing.
    let report = scheduler::tick(&env.services).await.expect("tick");
    assert_eq!(
        report,
        TickReport {
            deployments: 1,
            runs_created: 0
        }
    );
    assert_eq!(env.runs_of(d.id).await.len(), 3);
}

/// Every 10 minutes from an anchor at 00:00:07: runs until one is at least an hour ahead.
#[tokio::test]
async fn interval_deployment_is_stocked_an_hour_ahead() {
    let env = env();
    let flow = env.flow("etl").await;
    env.pool("pool").await;
    let d = env
        .deploy(
            flow,
            "every-10m",
            "pool",
            vec![active(interval(600.0, "2026-03-06T00:00:07+00:00"))],
        )
        .await;
    let expected: Vec<Timestamp> = (0..7).map(|k| at(7 + 600 * k)).collect();
    assert_eq!(env.scheduled_times(d.id).await, expected);
    assert_eq!(expected.last().copied(), Some(utc("2026-03-06T13:00:07Z")));
    let got = keys(&env, d.id).await;
    assert!(
        got.contains(&key(&d, "2026-03-06 12:00:07+00:00")),
        "{got:?}"
    );
    assert!(
        got.contains(&key(&d, "2026-03-06 13:00:07+00:00")),
        "{got:?}"
    );

    // Half an hour later four runs are still ahead but the last is < 1 h away: three more.
    env.set_now(at(30 * 60));
    let report = scheduler::tick(&env.services).await.expect("tick");
    assert_eq!(report.runs_created, 3);
    let expected: Vec<Timestamp> = (0..10).map(|k| at(7 + 600 * k)).collect();
    assert_eq!(env.scheduled_times(d.id).await, expected);
    assert_eq!(keys(&env, d.id).await.len(), 10);

    // Ticking again at the same instant tops up nothing.
    assert_eq!(
        scheduler::tick(&env.services)
            .await
            .expect("tick")
            .runs_created,
        0
    );
    assert_eq!(env.runs_of(d.id).await.len(), 10);
}

/// A 10 s interval would need 361 runs to reach an hour; one pass stops at 100 (`max_runs`), and
/// as every pass starts from now, later passes at the same instant add nothing.
#[tokio::test]
async fn a_pass_never_creates_more_than_one_hundred_runs() {
    let env = env();
    let flow = env.flow("etl").await;
    env.pool("pool").await;
    let d = env
        .deploy(
            flow,
            "every-10s",
            "pool",
            vec![active(interval(10.0, "2026-03-06T00:00:00+00:00"))],
        )
        .await;
    let times = env.scheduled_times(d.id).await;
    assert_eq!(times.len(), 100);
    assert_eq!(times.first().copied(), Some(t0()));
    assert_eq!(times.last().copied(), Some(at(990)));
    let report = scheduler::tick(&env.services).await.expect("tick");
    assert_eq!(report.runs_created, 0);
    assert_eq!(env.runs_of(d.id).await.len(), 100);

    // A minute later the pass again covers at most 100 dates from now: six new ones.
    env.set_now(at(60));
    let report = scheduler::tick(&env.services).await.expect("tick");
    assert_eq!(report.runs_created, 6);
    let times = env.scheduled_times(d.id).await;
    assert_eq!(times.len(), 106);
    assert_eq!(times.last().copied(), Some(at(1050)));
}

/// Advancing past the first run: the cron schedule is topped back up to three future runs, the
/// past run stays as it is, and no date gets a second run.
#[tokio::test]
async fn advancing_the_clock_tops_up_without_duplicates() {
    let env = env();
    let flow = env.flow("etl").await;
    env.pool("pool").await;
    let d = env
        .deploy(
            flow,
            "daily",
            "pool",
            vec![active(cron("0 9 * * *", "America/New_York"))],
        )
        .await;
    assert_eq!(env.runs_of(d.id).await.len(), 3);

    env.set_now(utc("2026-03-06T14:30:00Z"));
    let report = scheduler::tick(&env.services).await.expect("tick");
    assert_eq!(report.runs_created, 1);
    assert_eq!(
        env.scheduled_times(d.id).await,
        vec![
            utc("2026-03-06T14:00:00Z"),
            utc("2026-03-07T14:00:00Z"),
            utc("2026-03-08T13:00:00Z"),
            utc("2026-03-09T13:00:00Z"),
        ]
    );
    assert!(
        keys(&env, d.id)
            .await
            .contains(&key(&d, "2026-03-09 09:00:00-04:00"))
    );
    for _ in 0..2 {
        let report = scheduler::tick(&env.services).await.expect("tick");
        assert_eq!(report.runs_created, 0);
    }
    assert_eq!(env.runs_of(d.id).await.len(), 4);

    // Two days on: the 8th and 9th are left, so the 10th is added.
    env.set_now(utc("2026-03-08T12:00:00Z"));
    let report = scheduler::tick(&env.services).await.expect("tick");
    assert_eq!(report.runs_created, 1);
    assert_eq!(
        env.scheduled_times(d.id).await.last().copied(),
        Some(utc("2026-03-10T13:00:00Z"))
    );
    assert_eq!(keys(&env, d.id).await.len(), 5);
}

/// Two deployments (cron: 3 runs, interval: 7 runs) with their runs removed, then ticks that
/// overlap: the runs are created once, and the reports add up to exactly that.
async fn overlapping_ticks_create_each_run_once(env: &Env, deployments: [Id; 2], ticks: usize) {
    for d in deployments {
        env.clear_scheduled(d).await;
        assert!(env.runs_of(d).await.is_empty());
    }
    let barrier = Arc::new(Barrier::new(ticks));
    let handles: Vec<_> = (0..ticks)
        .map(|_| {
            let services: Services = env.services.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                scheduler::tick(&services).await.expect("tick")
            })
        })
        .collect();
    let mut created = 0;
    for h in handles {
        let report = h.await.expect("tick task");
        assert_eq!(report.deployments, 2);
        created += report.runs_created;
    }
    assert_eq!(
        created, 10,
        "the overlapping ticks created 10 runs between them"
    );
    assert_eq!(keys(env, deployments[0]).await.len(), 3);
    assert_eq!(keys(env, deployments[1]).await.len(), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_ticks_create_each_run_exactly_once() {
    let env = env();
    let flow = env.flow("etl").await;
    env.pool("pool").await;
    let a = env
        .deploy(
            flow,
            "daily",
            "pool",
            vec![active(cron("0 9 * * *", "America/New_York"))],
        )
        .await;
    let b = env
        .deploy(
            flow,
            "every-10m",
            "pool",
            vec![active(interval(600.0, "2026-03-06T00:00:07+00:00"))],
        )
        .await;

    // Two ticks in one task, interleaved at every await.
    for d in [a.id, b.id] {
        env.clear_scheduled(d).await;
    }
    let (r1, r2) = tokio::join!(
        scheduler::tick(&env.services),
        scheduler::tick(&env.services)
    );
    let (r1, r2) = (r1.expect("tick"), r2.expect("tick"));
    assert_eq!(r1.runs_created + r2.runs_created, 10);
    assert_eq!(keys(&env, a.id).await.len(), 3);
    assert_eq!(keys(&env, b.id).await.len(), 7);

    // Two, then eight, ticks on separate worker threads, released together.
    overlapping_ticks_create_each_run_once(&env, [a.id, b.id], 2).await;
    overlapping_ticks_create_each_run_once(&env, [a.id, b.id], 8).await;
}

#[tokio::test]
async fn a_paused_deployment_gets_no_runs() {
    let env = env();
    let flow = env.flow("etl").await;
    env.pool("pool").await;
    let d = env
        .deploy_with(sluice_services::DeploymentInput {
            name: "daily".to_owned(),
            flow_id: Some(flow),
            paused: true,
            schedules: vec![active(cron("0 9 * * *", "America/New_York"))],
            work_pool_name: Some("pool".to_owned()),
            ..Default::default()
        })
        .await;
    assert!(env.runs_of(d.id).await.is_empty());
    let report = scheduler::tick(&env.services).await.expect("tick");
    assert_eq!(report, TickReport::default());
    assert_eq!(
        scheduler::schedule_deployment(&env.services, &d)
            .await
            .expect("schedule"),
        0
    );
    assert!(env.runs_of(d.id).await.is_empty());

    // An inactive schedule is not scheduled either.
    let inactive = env
        .deploy(
            flow,
            "inactive",
            "pool",
            vec![sluice_services::DeploymentScheduleInput {
                active: false,
                ..active(cron("0 9 * * *", "UTC"))
            }],
        )
        .await;
    assert_eq!(
        scheduler::tick(&env.services).await.expect("tick"),
        TickReport::default()
    );
    assert!(env.runs_of(inactive.id).await.is_empty());
}

/// A cron deployment with its first run claimed (PENDING) and a manual run, whose schedule is
/// then replaced by an interval one.
#[tokio::test]
async fn changing_the_schedule_replaces_unstarted_runs_and_keeps_claimed_and_manual_ones() {
    let env = env();
    let flow = env.flow("etl").await;
    env.pool("pool").await;
    let d = env
        .deploy(
            flow,
            "daily",
            "pool",
            vec![active(cron("0 9 * * *", "America/New_York"))],
        )
        .await;
    let old = env.scheduled_runs_of(d.id).await;
    assert_eq!(old.len(), 3);
    let claimed = old[0].id;
    let claim = env.propose(claimed, proposal(StateType::Pending)).await;
    assert!(claim.committed);
    let manual = env
        .services
        .create_flow_run_from_deployment(
            d.id,
            FlowRunFromDeployment {
                state: Some(scheduled(utc("2026-03-06T15:00:00Z"))),
                ..Default::default()
            },
        )
        .await
        .expect("manual run")
        .value;
    assert!(!manual.auto_scheduled);

    env.set_now(at(60));
    env.services
        .update_deployment(
            d.id,
            DeploymentPatch {
                schedules: Some(vec![active(interval(600.0, "2026-03-06T00:00:07+00:00"))]),
                ..Default::default()
            },
        )
        .await
        .expect("update");
    let updated = env.services.read_deployment(d.id).await.expect("read");
    assert_eq!(updated.schedules.len(), 1);
    let new_schedule = updated.schedules[0].id;
    assert_ne!(new_schedule, d.schedules[0].id);

    for gone in &old[1..] {
        assert!(
            env.store
                .read_flow_run(gone.id)
                .await
                .expect("read")
                .is_none(),
            "the unstarted run at {:?} was deleted",
            gone.next_scheduled_start_time
        );
    }
    let claimed_run = env.run(claimed).await;
    assert_eq!(claimed_run.state_type(), Some(StateType::Pending));
    assert_eq!(
        env.run(manual.id).await.state_type(),
        Some(StateType::Scheduled)
    );

    // Interval runs from now (12:01:00): 12:10:07 … 13:10:07.
    let fresh = env.scheduled_runs_of(d.id).await;
    let times: Vec<Timestamp> = fresh
        .iter()
        .map(|r| r.next_scheduled_start_time.expect("time"))
        .collect();
    assert_eq!(times, (1..8).map(|k| at(7 + 600 * k)).collect::<Vec<_>>());
    for r in &fresh {
        assert_eq!(
            r.created_by.as_ref().and_then(|c| c.id),
            Some(new_schedule),
            "only the new schedule's runs are SCHEDULED and auto-scheduled"
        );
    }
    let all: BTreeSet<Id> = env.runs_of(d.id).await.iter().map(|r| r.id).collect();
    let mut expected: BTreeSet<Id> = fresh.iter().map(|r| r.id).collect();
    expected.extend([claimed, manual.id]);
    assert_eq!(all, expected);

    // Re-deploying under the same name (the upsert) is an update that does the same.
    let again = env
        .services
        .upsert_deployment(sluice_services::DeploymentInput {
            name: "daily".to_owned(),
            flow_id: Some(flow),
            schedules: vec![active(cron("0 9 * * *", "America/New_York"))],
            work_pool_name: Some("pool".to_owned()),
            ..Default::default()
        })
        .await
        .expect("upsert");
    assert!(!again.created);
    assert_eq!(again.value.id, d.id);
    assert_eq!(env.scheduled_runs_of(d.id).await.len(), 3);
    assert_eq!(env.runs_of(d.id).await.len(), 5, "3 new + claimed + manual");
    keys(&env, d.id).await;
}

#[tokio::test]
async fn pausing_deletes_unstarted_auto_scheduled_runs_and_resuming_restocks() {
    let env = env();
    let flow = env.flow("etl").await;
    env.pool("pool").await;
    let d = env
        .deploy(
            flow,
            "daily",
            "pool",
            vec![active(cron("0 9 * * *", "America/New_York"))],
        )
        .await;
    let runs = env.scheduled_runs_of(d.id).await;
    assert_eq!(runs.len(), 3);
    let claimed = runs[0].id;
    assert!(
        env.propose(claimed, proposal(StateType::Pending))
            .await
            .committed
    );
    let manual = env
        .services
        .create_flow_run_from_deployment(d.id, FlowRunFromDeployment::default())
        .await
        .expect("manual run")
        .value;

    env.services
        .set_deployment_paused(d.id, true)
        .await
        .expect("pause");
    assert!(env.services.read_deployment(d.id).await.expect("d").paused);
    assert!(env.scheduled_runs_of(d.id).await.is_empty());
    let left: BTreeSet<Id> = env.runs_of(d.id).await.iter().map(|r| r.id).collect();
    assert_eq!(left, BTreeSet::from([claimed, manual.id]));
    env.set_now(at(3600));
    assert_eq!(
        scheduler::tick(&env.services).await.expect("tick"),
        TickReport::default()
    );
    assert!(env.scheduled_runs_of(d.id).await.is_empty());

    // Resuming restocks; the claimed run keeps its date, so that date is not scheduled twice.
    env.set_now(t0());
    env.services
        .set_deployment_paused(d.id, false)
        .await
        .expect("resume");
    assert_eq!(
        env.scheduled_times(d.id).await,
        vec![utc("2026-03-07T14:00:00Z"), utc("2026-03-08T13:00:00Z")]
    );
    assert_eq!(env.runs_of(d.id).await.len(), 4);
    keys(&env, d.id).await;

    // Pausing through PATCH (what the client sends) also drops the future runs.
    env.services
        .update_deployment(
            d.id,
            DeploymentPatch {
                paused: Some(true),
                ..Default::default()
            },
        )
        .await
        .expect("patch");
    assert!(env.scheduled_runs_of(d.id).await.is_empty());
    assert_eq!(env.runs_of(d.id).await.len(), 2);
}

/// More deployments than one page: the tick pages through them by id and schedules every one,
/// whatever the order of their names.
#[tokio::test]
async fn the_tick_pages_through_every_deployment() {
    let mut settings = Settings::default();
    settings.scheduler.deployment_batch_size = 2;
    let env = env_with(settings);
    let flow = env.flow("etl").await;
    env.pool("pool").await;
    let template = env
        .deploy(
            flow,
            "template",
            "pool",
            vec![active(cron("0 9 * * *", "UTC"))],
        )
        .await;
    env.services
        .delete_deployment(template.id)
        .await
        .expect("delete");
    // Names in the opposite order of ids: "a" has the largest id.
    let mut ids = Vec::new();
    for (i, name) in ["a", "b", "c", "d", "e"].into_iter().enumerate() {
        let id = Id::from_u128(0x1000 - i as u128);
        let mut d = template.clone();
        d.id = id;
        d.name = name.to_owned();
        for s in &mut d.schedules {
            s.id = Id::new_v4();
            s.deployment_id = id;
        }
        env.store.create_deployment(&d).await.expect("create");
        ids.push(id);
    }
    let report = scheduler::tick(&env.services).await.expect("tick");
    assert_eq!(
        report,
        TickReport {
            deployments: 5,
            runs_created: 15
        }
    );
    for id in ids {
        assert_eq!(
            env.scheduled_times(id).await,
            vec![
                utc("2026-03-07T09:00:00Z"),
                utc("2026-03-08T09:00:00Z"),
                utc("2026-03-09T09:00:00Z"),
            ]
        );
    }
    // A second pass over all the pages adds nothing.
    let report = scheduler::tick(&env.services).await.expect("tick");
    assert_eq!(
        report,
        TickReport {
            deployments: 5,
            runs_created: 0
        }
    );
}
