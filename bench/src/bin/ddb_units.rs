//! DynamoDB requests and capacity units one flow run costs, SCHEDULED to COMPLETED.
//!
//! Drives the real router over the DynamoDB store (whatever `AWS_ENDPOINT_URL` and the
//! environment's credentials reach) through the requests a worker and Prefect's engine make
//! for each run, and reads the store's request meter between phases:
//!
//! 1. creation: by the scheduler (a deployment arriving with a schedule every minute) and by
//!    `create_flow_run` (a run due now, as `prefect deployment run` makes);
//! 2. per run, for the runs due now: the worker's poll (`get_scheduled_flow_runs`, one run per poll), its claim
//!    (`set_state` PENDING), then the engine's read of the run and its RUNNING and COMPLETED
//!    proposals (each preceded by a read of the run, as the engine does);
//! 3. per task run: the three state events (Pending, Running, Completed) Prefect 3.9's engine
//!    sends for a task that succeeds at once, shaped as it shapes them, each taken in alone (as
//!    the events socket takes them when they arrive one at a time).
//!
//! `cargo run --release -p sluice-bench --bin ddb_units` (a schedule every minute: the scheduler's
//! defaults make an hour of runs).

use std::sync::Arc;

use anyhow::{Context, Result, bail};
use aws_sdk_dynamodb::types::AttributeValue;
use axum::body::Body;
use axum::http::{Method, Request};
use clap::Parser;
use serde_json::{Value, json};
use sluice_services::{Services, Settings, SystemClock};
use sluice_store_dynamodb::{DynamoStore, Retention, Usage, item_size};
use tower::ServiceExt;

#[derive(Parser)]
struct Args {
    /// Table to create (and delete afterwards); a fresh name by default.
    #[arg(long)]
    table: Option<String>,
}

struct Api {
    router: axum::Router,
}

impl Api {
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value> {
        let req = Request::builder()
            .method(method)
            .uri(format!("/api{path}"))
            .header("content-type", "application/json")
            .body(Body::from(body.map(|b| b.to_string()).unwrap_or_default()))?;
        let resp = self.router.clone().oneshot(req).await?;
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 16 << 20).await?;
        let value: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)?
        };
        if !status.is_success() {
            bail!("{path}: {status} {value}");
        }
        Ok(value)
    }
}

/// Runs a worker's poll hands out at once (Prefect's worker asks for as many as it has room for).
const PREFETCH: usize = 10;

/// The claim, then the engine's read-and-propose for RUNNING and COMPLETED.
async fn drive(api: &Api, id: &str) -> Result<()> {
    for state in ["PENDING", "RUNNING", "COMPLETED"] {
        if state != "PENDING" {
            api.call(Method::GET, &format!("/flow_runs/{id}"), None)
                .await?;
        }
        let answer = api
            .call(
                Method::POST,
                &format!("/flow_runs/{id}/set_state"),
                Some(json!({"state": {"type": state}})),
            )
            .await?;
        if answer["status"] != "ACCEPT" {
            bail!("{state} for {id} was not accepted: {answer}");
        }
    }
    Ok(())
}

/// A task-run state event as Prefect 3.9's engine sends it (the fields and sizes of one it sent
/// for a task `add(a, b)` that completed at once).
fn task_run_event(
    task_run: uuid::Uuid,
    flow_run: &str,
    i: usize,
    name: &str,
    state_type: &str,
    previous: Option<&str>,
) -> Value {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let state = |t: Option<&str>| {
        t.map(|t| json!({"type": t, "name": t[..1].to_owned() + &t[1..].to_lowercase(), "message": "", "state_details": {}}))
    };
    json!({
        "id": uuid::Uuid::now_v7(),
        "occurred": now,
        "event": format!("prefect.task-run.{name}"),
        "resource": {
            "prefect.orchestration": "client",
            "prefect.resource.id": format!("prefect.task-run.{task_run}"),
            "prefect.resource.name": format!("add-{i:03x}"),
            "prefect.run-count": if state_type == "PENDING" { "0" } else { "1" },
            "prefect.state-message": "",
            "prefect.state-name": name,
            "prefect.state-timestamp": now,
            "prefect.state-type": state_type,
        },
        "related": [
            {"prefect.resource.id": format!("prefect.flow-run.{flow_run}"), "prefect.resource.name": "curious-crane", "prefect.resource.role": "flow-run"},
            {"prefect.resource.id": format!("prefect.flow.{}", uuid::Uuid::new_v4()), "prefect.resource.name": "parent", "prefect.resource.role": "flow"},
        ],
        "payload": {
            "intended": {"from": previous, "to": state_type},
            "initial_state": state(previous),
            "validated_state": {"type": state_type, "name": name, "message": "", "state_details": {}, "data": null},
            "task_run": {
                "name": format!("add-{i:03x}"), "task_key": "add-907a5471",
                "dynamic_key": uuid::Uuid::new_v4(),
                "empirical_policy": {"max_retries": 0, "retry_delay_seconds": 0.0, "retries": 0, "retry_delay": 0},
                "tags": [], "labels": {}, "task_inputs": {"a": [], "b": []},
                "run_count": if state_type == "PENDING" { 0 } else { 1 }, "flow_run_run_count": 1,
                "expected_start_time": now, "start_time": now, "total_run_time": 0.004
            }
        },
    })
}

fn per_run(label: &str, u: Usage, runs: usize) {
    #[allow(clippy::cast_precision_loss)]
    let n = runs as f64;
    #[allow(clippy::cast_precision_loss)]
    let (r, w) = (u.read_requests as f64 / n, u.write_requests as f64 / n);
    println!(
        "{label:<28} reads {r:>5.2} req  {:>5.2} RCU   writes {w:>5.2} req  {:>5.2} WCU   (reported by the endpoint: {:.2} RCU, {:.2} WCU)",
        u.estimated_read_units / n,
        u.estimated_write_units / n,
        u.reported_read_units / n,
        u.reported_write_units / n,
    );
}

fn add(a: Usage, b: Usage) -> Usage {
    Usage {
        read_requests: a.read_requests + b.read_requests,
        write_requests: a.write_requests + b.write_requests,
        reported_read_units: a.reported_read_units + b.reported_read_units,
        reported_write_units: a.reported_write_units + b.reported_write_units,
        estimated_read_units: a.estimated_read_units + b.estimated_read_units,
        estimated_write_units: a.estimated_write_units + b.estimated_write_units,
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let table = args
        .table
        .unwrap_or_else(|| format!("sluice-units-{}", uuid::Uuid::new_v4().simple()));
    let store = DynamoStore::connect(table, Retention::default()).await;
    store.ensure_table().await.context("creating the table")?;
    let result = measure(&store).await;
    store.delete_table().await.context("deleting the table")?;
    result
}

async fn measure(store: &DynamoStore) -> Result<()> {
    let services = Services::new(
        Arc::new(store.clone()),
        Arc::new(SystemClock),
        Settings::default(),
    );
    let api = Api {
        router: sluice_api::router(services),
    };
    api.call(
        Method::POST,
        "/work_pools/",
        Some(json!({"name": "units", "type": "process"})),
    )
    .await?;
    let flow = api
        .call(Method::POST, "/flows/", Some(json!({"name": "units"})))
        .await?;
    // Creation: the deployment arrives with a schedule every minute and the scheduler materialises
    // its runs inline; the deployment's own write is part of the cost, spread over its runs.
    store.reset_usage();
    let deployment = api
        .call(
            Method::POST,
            "/deployments/",
            Some(json!({
                "name": "units",
                "flow_id": flow["id"],
                "work_pool_name": "units",
                "schedules": [{
                    "schedule": {"interval": 60, "anchor_date": "2026-01-01T00:00:00Z"},
                    "active": true,
                }],
            })),
        )
        .await?;
    let deployment_id = deployment["id"]
        .as_str()
        .context("deployment id")?
        .to_owned();
    let created_usage = store.usage();
    let scheduled = api
        .call(
            Method::POST,
            "/flow_runs/count",
            Some(json!({"deployments": {"id": {"any_": [deployment_id]}}})),
        )
        .await?
        .as_u64()
        .context("count")?;
    let scheduled = usize::try_from(scheduled)?;
    if scheduled == 0 {
        bail!("the scheduler created no runs");
    }

    // Runs due now (the scheduler's are in the future, and the engine may not start those).
    let count = 50;
    store.reset_usage();
    for _ in 0..count {
        api.call(
            Method::POST,
            &format!("/deployments/{deployment_id}/create_flow_run"),
            Some(json!({})),
        )
        .await?;
    }
    let api_created_usage = store.usage();

    // The lifecycle, run by run.
    store.reset_usage();
    let far = "2100-01-01T00:00:00Z";
    let mut last_id = String::new();
    let mut done = 0;
    while done < count {
        // A worker's poll hands out up to `PREFETCH` runs, which it then claims one by one.
        let polled = api
            .call(
                Method::POST,
                "/work_pools/units/get_scheduled_flow_runs",
                Some(json!({"scheduled_before": far, "limit": PREFETCH.min(count - done)})),
            )
            .await?;
        let ids: Vec<String> = polled
            .as_array()
            .context("a list of runs")?
            .iter()
            .filter_map(|r| r["flow_run"]["id"].as_str().map(str::to_owned))
            .collect();
        if ids.is_empty() {
            bail!("the poll returned no run");
        }
        for id in ids {
            drive(&api, &id).await?;
            done += 1;
            last_id = id;
        }
    }
    let lifecycle_usage = store.usage();

    // Task runs inside the last run, as the engine reports them.
    store.reset_usage();
    for i in 0..count {
        let task_run = uuid::Uuid::now_v7();
        let mut previous: Option<&str> = None;
        for (name, state_type) in [
            ("Pending", "PENDING"),
            ("Running", "RUNNING"),
            ("Completed", "COMPLETED"),
        ] {
            let event = task_run_event(task_run, &last_id, i, name, state_type, previous);
            api.call(Method::POST, "/events", Some(json!([event])))
                .await?;
            previous = Some(state_type);
        }
    }
    let task_usage = store.usage();
    let item = store
        .client()
        .get_item()
        .table_name(store.table())
        .key("pk", AttributeValue::S(format!("RUN#{last_id}")))
        .key("sk", AttributeValue::S("#".to_owned()))
        .send()
        .await?
        .item
        .context("the run's item")?;
    let run_item_bytes = item_size(&item);

    println!(
        "DynamoDB cost per flow run, base table, by item size (a finished run's item: {run_item_bytes} bytes; polls of up to {PREFETCH}):"
    );
    per_run(
        &format!("created by the scheduler ({scheduled})"),
        created_usage,
        scheduled,
    );
    per_run(
        &format!("created by create_flow_run ({count})"),
        api_created_usage,
        count,
    );
    per_run(
        &format!("poll, claim, run, complete ({count})"),
        lifecycle_usage,
        count,
    );
    per_run(
        &format!("task run, 3 state events ({count})"),
        task_usage,
        count,
    );
    #[allow(clippy::cast_precision_loss)]
    let scheduled_share = |u: Usage| Usage {
        read_requests: u.read_requests * count as u64 / scheduled as u64,
        write_requests: u.write_requests * count as u64 / scheduled as u64,
        reported_read_units: u.reported_read_units * count as f64 / scheduled as f64,
        reported_write_units: u.reported_write_units * count as f64 / scheduled as f64,
        estimated_read_units: u.estimated_read_units * count as f64 / scheduled as f64,
        estimated_write_units: u.estimated_write_units * count as f64 / scheduled as f64,
    };
    per_run(
        "scheduled run, end to end",
        add(scheduled_share(created_usage), lifecycle_usage),
        count,
    );
    println!(
        "index writes per run (by the layout, not counted above): gsi2 4 (put on create, st \
         changes at PENDING and RUNNING, removal when final), gsi3 2 (put, removal) = 6 WCU"
    );
    Ok(())
}
