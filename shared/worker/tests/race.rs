//! Issue 3 acceptance: four workers on one pool and 1,000 due runs; every run is executed
//! exactly once. Counted by the side effect each job leaves (one line with its run id appended
//! to a shared file), not by the states the API reports.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::{Api, spawn_worker};
use serde_json::{Value, json};
use sluice_worker::WorkerOptions;

const RUNS: usize = 1_000;
const WORKERS: usize = 4;
const CREATORS: usize = 8;

impl Api {
    async fn post(&self, path: &str, body: Value) -> Value {
        post(&self.http, &self.url, path, body).await
    }

    async fn count(&self, state_type: &str) -> u64 {
        self.post(
            "/flow_runs/count",
            json!({ "flow_runs": { "state": { "type": { "any_": [state_type] } } } }),
        )
        .await
        .as_u64()
        .unwrap()
    }
}

async fn post(http: &reqwest::Client, base: &str, path: &str, body: Value) -> Value {
    let resp = http
        .post(format!("{base}{path}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert!(status.is_success(), "{path}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_workers_execute_a_thousand_runs_exactly_once() {
    let api = Api::start().await;
    let side_effects = tempfile::tempdir().unwrap();
    let file = side_effects.path().join("executed.txt");

    let pool = "race";
    api.post("/work_pools/", json!({ "name": pool, "type": "process" }))
        .await;
    let flow = api.post("/flows/", json!({ "name": "race-flow" })).await;
    let dep = api
        .post(
            "/deployments/",
            json!({
                "name": "race",
                "flow_id": flow["id"],
                "work_pool_name": pool,
                "job_variables": {
                    "command": common::shell("echo \"$SLUICE_FLOW_RUN_ID\" >> \"$RACE_FILE\""),
                    "env": { "RACE_FILE": file.to_str().unwrap() },
                },
            }),
        )
        .await;
    let dep = dep["id"].as_str().unwrap().to_owned();

    // 1,000 runs due now, created by a few concurrent tasks.
    let started = Instant::now();
    let mut creators = Vec::new();
    for c in 0..CREATORS {
        let http = api.http.clone();
        let base = api.url.clone();
        let dep = dep.clone();
        let n = (c..RUNS).step_by(CREATORS).count();
        creators.push(tokio::spawn(async move {
            let mut ids = Vec::with_capacity(n);
            for _ in 0..n {
                let run = post(
                    &http,
                    &base,
                    &format!("/deployments/{dep}/create_flow_run"),
                    json!({}),
                )
                .await;
                ids.push(run["id"].as_str().unwrap().to_owned());
            }
            ids
        }));
    }
    let mut created = HashSet::new();
    for c in creators {
        created.extend(c.await.unwrap());
    }
    assert_eq!(created.len(), RUNS);
    assert_eq!(api.count("SCHEDULED").await, RUNS as u64);
    eprintln!("created {RUNS} runs in {:?}", started.elapsed());

    // Four workers racing on the pool.
    let started = Instant::now();
    let workers: Vec<_> = (0..WORKERS)
        .map(|i| {
            spawn_worker(WorkerOptions {
                api_url: api.url.clone(),
                pool: pool.to_owned(),
                name: Some(format!("racer-{i}")),
                limit: Some(25),
                heartbeat_seconds: 5,
                grace_seconds: 5,
                poll_interval: Some(Duration::from_millis(100)),
                ..WorkerOptions::default()
            })
        })
        .collect();

    let deadline = Duration::from_secs(240);
    loop {
        let completed = api.count("COMPLETED").await;
        if completed >= RUNS as u64 {
            break;
        }
        assert!(
            started.elapsed() < deadline,
            "only {completed} of {RUNS} runs COMPLETED after {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!(
        "{WORKERS} workers ran {RUNS} runs in {:?}",
        started.elapsed()
    );

    let mut reports = Vec::new();
    for (tx, handle) in workers {
        let _ = tx.send(());
        reports.push(handle.await.unwrap().unwrap());
    }
    eprintln!("reports: {reports:?}");

    // The side effects: one line per run, each a created run, none twice.
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), RUNS, "side-effect lines");
    let distinct: HashSet<&str> = lines.iter().copied().collect();
    assert_eq!(distinct.len(), RUNS, "some run executed twice");
    for id in &distinct {
        assert!(created.contains(*id), "unknown run id {id} executed");
    }

    // The states agree, and the workers claimed exactly 1,000 between them.
    assert_eq!(api.count("COMPLETED").await, RUNS as u64);
    let submitted: usize = reports.iter().map(|r| r.submitted).sum();
    let completed: usize = reports.iter().map(|r| r.completed).sum();
    assert_eq!(submitted, RUNS, "{reports:?}");
    assert_eq!(completed, RUNS, "{reports:?}");
    assert!(
        reports
            .iter()
            .all(|r| r.failed + r.crashed + r.cancelled + r.killed_on_shutdown == 0),
        "{reports:?}"
    );
}
