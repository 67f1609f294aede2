//! `loadgen`: drives an API in Prefect's dialect with N concurrent clients and reports
//! throughput and latency percentiles. It works against `sluice server` and a Prefect server
//! alike, so the two can be compared in one run.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use serde_json::json;
use sluice_bench::post;

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
enum Scenario {
    /// `POST /deployments/{id}/create_flow_run`, timed per call.
    CreateRun,
    /// Per iteration an untimed run creation, then timed `set_state` PENDING, RUNNING, COMPLETED.
    SetState,
}

#[derive(Parser)]
struct Args {
    /// API base URL, ending in /api.
    #[arg(long, default_value = "http://127.0.0.1:4200/api")]
    api: String,
    #[arg(long, value_enum)]
    scenario: Scenario,
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Seconds to run after a one-second warm-up.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

/// A pool, flow and deployment to run against; unique names per invocation.
async fn setup(http: &reqwest::Client, api: &str) -> anyhow::Result<String> {
    let tag = format!("{}", std::process::id());
    let pool = format!("bench-{tag}");
    post(
        http,
        &format!("{api}/work_pools/"),
        &json!({"name": pool, "type": "process"}),
    )
    .await?;
    let flow = post(
        http,
        &format!("{api}/flows/"),
        &json!({"name": format!("bench-flow-{tag}")}),
    )
    .await?;
    let dep = post(
        http,
        &format!("{api}/deployments/"),
        &json!({"flow_id": flow["id"], "name": "bench", "work_pool_name": pool}),
    )
    .await?;
    dep["id"]
        .as_str()
        .map(str::to_owned)
        .context("deployment id")
}

async fn client_loop(
    http: reqwest::Client,
    api: String,
    deployment: String,
    scenario: Scenario,
    warmup_end: Instant,
    end: Instant,
) -> anyhow::Result<Vec<Duration>> {
    let mut latencies = Vec::new();
    let create = format!("{api}/deployments/{deployment}/create_flow_run");
    while Instant::now() < end {
        match scenario {
            Scenario::CreateRun => {
                let t = Instant::now();
                post(&http, &create, &json!({})).await?;
                if t >= warmup_end {
                    latencies.push(t.elapsed());
                }
            }
            Scenario::SetState => {
                let run = post(&http, &create, &json!({"state": {"type": "SCHEDULED"}})).await?;
                let id = run["id"].as_str().context("run id")?.to_owned();
                let url = format!("{api}/flow_runs/{id}/set_state");
                for state in ["PENDING", "RUNNING", "COMPLETED"] {
                    let t = Instant::now();
                    let out = post(&http, &url, &json!({"state": {"type": state}})).await?;
                    if out["status"] != "ACCEPT" {
                        bail!("{state} was not accepted: {out}");
                    }
                    if t >= warmup_end {
                        latencies.push(t.elapsed());
                    }
                }
            }
        }
    }
    Ok(latencies)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.clients)
        .build()?;
    let api = args.api.trim_end_matches('/').to_owned();
    let deployment = setup(&http, &api).await?;
    let start = Instant::now();
    let warmup_end = start + Duration::from_secs(1);
    let end = warmup_end + Duration::from_secs(args.seconds);
    let mut tasks = Vec::new();
    for _ in 0..args.clients {
        tasks.push(tokio::spawn(client_loop(
            http.clone(),
            api.clone(),
            deployment.clone(),
            args.scenario,
            warmup_end,
            end,
        )));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    all.sort();
    let secs = args.seconds as f64;
    let out = json!({
        "scenario": format!("{:?}", args.scenario),
        "clients": args.clients,
        "seconds": args.seconds,
        "requests": all.len(),
        "throughput_per_s": (all.len() as f64 / secs).round(),
        "p50_ms": percentile(&all, 50.0).as_secs_f64() * 1000.0,
        "p99_ms": percentile(&all, 99.0).as_secs_f64() * 1000.0,
    });
    println!("{out}");
    Ok(())
}
