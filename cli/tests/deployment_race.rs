//! A deployment's concurrency limit across processes: two `sluice server`s on one SQLite file,
//! and two on one DynamoDB table (with the emulator), each claim every run of a deployment
//! limited to 2 at once. The limit's slots are taken in the store's conditional write, so never
//! more than two runs hold one, and all slots come back when the runs end.

mod common;

use common::{Server, dynamodb_store};
use serde_json::{Value, json};

async fn post(http: &reqwest::Client, url: String, body: Value) -> Value {
    let resp = http.post(&url).json(&body).send().await.expect("request");
    let status = resp.status();
    let text = resp.text().await.expect("body");
    assert!(status.is_success(), "{url}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

async fn get(http: &reqwest::Client, url: String) -> Value {
    http.get(&url)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("JSON")
}

/// Claims every still-SCHEDULED run through both servers at once; the runs that got PENDING.
async fn claim_round(http: &reqwest::Client, servers: &[&str], runs: &[String]) -> Vec<String> {
    let mut tasks = Vec::new();
    for run in runs {
        for api in servers {
            let (http, url, run) = (
                http.clone(),
                format!("{api}/flow_runs/{run}/set_state"),
                run.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let out = post(&http, url, json!({"state": {"type": "PENDING"}})).await;
                (run, out["status"] == "ACCEPT")
            }));
        }
    }
    let mut won = Vec::new();
    for t in tasks {
        let (run, accepted) = t.await.expect("task");
        if accepted && !won.contains(&run) {
            won.push(run);
        }
    }
    won
}

async fn race(store_args: Vec<String>) {
    let a = Server::ready_with(&store_args);
    let b = Server::ready_with(&store_args);
    let http = reqwest::Client::new();
    let flow = post(
        &http,
        format!("{}/flows/", a.base),
        json!({"name": "racing"}),
    )
    .await;
    let dep = post(
        &http,
        format!("{}/deployments/", a.base),
        json!({"flow_id": flow["id"], "name": "two-at-once", "concurrency_limit": 2}),
    )
    .await;
    let dep_id = dep["id"].as_str().expect("id").to_owned();
    let mut waiting = Vec::new();
    for _ in 0..8 {
        let run = post(
            &http,
            format!("{}/deployments/{dep_id}/create_flow_run", b.base),
            json!({}),
        )
        .await;
        waiting.push(run["id"].as_str().expect("id").to_owned());
    }
    let servers = [a.base.as_str(), b.base.as_str()];
    let mut finished = 0;
    while !waiting.is_empty() {
        let won = claim_round(&http, &servers, &waiting).await;
        assert!(
            won.len() <= 2,
            "{} runs claimed under a limit of 2: {won:?}",
            won.len()
        );
        assert!(!won.is_empty(), "free slots but no claim won");
        let holding = post(
            &http,
            format!("{}/flow_runs/count", a.base),
            json!({"flow_runs": {"deployment_id": {"any_": [dep_id]},
                   "state": {"type": {"any_": ["PENDING", "RUNNING", "CANCELLING"]}}}}),
        )
        .await;
        assert!(
            holding.as_u64().is_some_and(|n| n <= 2),
            "{holding} runs hold slots"
        );
        // The winners run and end through the other server.
        for run in &won {
            // Forced: a run first rejected (AwaitingConcurrencySlot, 30 s ahead) and then won
            // by the other claimant keeps that time, and RUNNING would be told to wait for it.
            for state in ["RUNNING", "COMPLETED"] {
                let out = post(
                    &http,
                    format!("{}/flow_runs/{run}/set_state", b.base),
                    json!({"state": {"type": state}, "force": true}),
                )
                .await;
                assert_eq!(out["status"], "ACCEPT", "{out}");
            }
        }
        finished += won.len();
        waiting.retain(|r| !won.contains(r));
        // The rejected runs wait (AwaitingConcurrencySlot, 30 s ahead); a worker would claim
        // them when due. Make them due now instead of waiting.
        for run in &waiting {
            let out = post(
                &http,
                format!("{}/flow_runs/{run}/set_state", a.base),
                json!({"state": {"type": "SCHEDULED"}, "force": true}),
            )
            .await;
            assert_eq!(out["status"], "ACCEPT", "{out}");
        }
    }
    assert_eq!(finished, 8);
    let limit = get(
        &http,
        format!("{}/v2/concurrency_limits/deployment:{dep_id}", b.base),
    )
    .await;
    assert_eq!(limit["active_slots"], 0, "every slot given back: {limit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_servers_on_one_sqlite_file_never_exceed_a_deployment_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("shared.db").display().to_string();
    race(vec!["--db".to_owned(), db]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_servers_on_one_dynamodb_table_never_exceed_a_deployment_limit() {
    let Some(store) = dynamodb_store("deployment_race_on_dynamodb") else {
        return;
    };
    race(store).await;
}
