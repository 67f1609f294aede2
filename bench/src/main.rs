//! `loadgen`: drives an API in Prefect's dialect with N concurrent clients and reports
//! throughput and latency percentiles. It works against `sluice server` and a Prefect server
//! alike, so the two can be compared in one run.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, ValueEnum};
use serde_json::json;
use sluice_bench::{Retries, percentile, post_retrying};

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
enum Scenario {
    /// `POST /deployments/{id}/create_flow_run`, timed per call.
    CreateRun,
    /// Per iteration an untimed run creation, then timed `set_state` PENDING, RUNNING, COMPLETED.
    SetState,
    /// `increment-with-lease` then `decrement-with-lease` on one global concurrency limit (as
    /// large as the number of clients, so no request waits), the pair timed as one.
    Slots,
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

/// What every client shares besides the HTTP client.
struct Shared {
    retries: Retries,
    /// Calls that still failed after every retry (not timed, not counted as requests).
    failed: AtomicU64,
    /// The first such failure, for the report.
    first_failure: std::sync::Mutex<Option<String>>,
}

impl Shared {
    fn fail(&self, e: &anyhow::Error) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_failure.lock().expect("lock");
        if first.is_none() {
            *first = Some(format!("{e:#}"));
        }
    }
}

/// The global concurrency limit the `slots` scenario uses: one slot per client.
async fn setup_limit(
    http: &reqwest::Client,
    api: &str,
    clients: usize,
    shared: &Shared,
) -> anyhow::Result<String> {
    let name = format!("bench-slots-{}", std::process::id());
    post_retrying(
        http,
        &format!("{api}/v2/concurrency_limits/"),
        &json!({"name": name, "limit": clients}),
        &shared.retries,
    )
    .await?;
    Ok(name)
}

/// A pool, flow and deployment to run against; unique names per invocation.
async fn setup(http: &reqwest::Client, api: &str, shared: &Shared) -> anyhow::Result<String> {
    let tag = format!("{}", std::process::id());
    let pool = format!("bench-{tag}");
    post_retrying(
        http,
        &format!("{api}/work_pools/"),
        &json!({"name": pool, "type": "process"}),
        &shared.retries,
    )
    .await?;
    let flow = post_retrying(
        http,
        &format!("{api}/flows/"),
        &json!({"name": format!("bench-flow-{tag}")}),
        &shared.retries,
    )
    .await?;
    let dep = post_retrying(
        http,
        &format!("{api}/deployments/"),
        &json!({"flow_id": flow["id"], "name": "bench", "work_pool_name": pool}),
        &shared.retries,
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
    shared: Arc<Shared>,
) -> Vec<Duration> {
    let mut latencies = Vec::new();
    let create = format!("{api}/deployments/{deployment}/create_flow_run");
    let take = format!("{api}/v2/concurrency_limits/increment-with-lease");
    let give_back = format!("{api}/v2/concurrency_limits/decrement-with-lease");
    while Instant::now() < end {
        match scenario {
            Scenario::CreateRun => {
                let t = Instant::now();
                match post_retrying(&http, &create, &json!({}), &shared.retries).await {
                    Ok(_) if t >= warmup_end => latencies.push(t.elapsed()),
                    Ok(_) => {}
                    Err(e) => shared.fail(&e),
                }
            }
            Scenario::Slots => {
                // `deployment` holds the limit's name in this scenario.
                let t = Instant::now();
                let body = json!({"names": [deployment], "slots": 1, "lease_duration": 60});
                let lease = match post_retrying(&http, &take, &body, &shared.retries).await {
                    Ok(out) if out["limits"].as_array().is_some_and(|l| l.len() == 1) => {
                        out["lease_id"].clone()
                    }
                    Ok(out) => {
                        shared.fail(&anyhow::anyhow!("no slot taken: {out}"));
                        continue;
                    }
                    Err(e) => {
                        shared.fail(&e);
                        continue;
                    }
                };
                let body = json!({"lease_id": lease});
                match post_retrying(&http, &give_back, &body, &shared.retries).await {
                    Ok(_) if t >= warmup_end => latencies.push(t.elapsed()),
                    Ok(_) => {}
                    Err(e) => shared.fail(&e),
                }
            }
            Scenario::SetState => {
                let body = json!({"state": {"type": "SCHEDULED"}});
                let id = match post_retrying(&http, &create, &body, &shared.retries).await {
                    Ok(run) => match run["id"].as_str() {
                        Some(id) => id.to_owned(),
                        None => {
                            shared.fail(&anyhow::anyhow!("no run id in {run}"));
                            continue;
                        }
                    },
                    Err(e) => {
                        shared.fail(&e);
                        continue;
                    }
                };
                let url = format!("{api}/flow_runs/{id}/set_state");
                for state in ["PENDING", "RUNNING", "COMPLETED"] {
                    let t = Instant::now();
                    let body = json!({"state": {"type": state}});
                    match post_retrying(&http, &url, &body, &shared.retries).await {
                        Ok(out) if out["status"] == "ACCEPT" => {
                            if t >= warmup_end {
                                latencies.push(t.elapsed());
                            }
                        }
                        Ok(out) => {
                            shared.fail(&anyhow::anyhow!("{state} was not accepted: {out}"));
                            break;
                        }
                        Err(e) => {
                            shared.fail(&e);
                            break;
                        }
                    }
                }
            }
        }
    }
    latencies
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.clients)
        .build()?;
    let api = args.api.trim_end_matches('/').to_owned();
    let shared = Arc::new(Shared {
        retries: Retries::default(),
        failed: AtomicU64::new(0),
        first_failure: std::sync::Mutex::new(None),
    });
    let deployment = match args.scenario {
        Scenario::Slots => setup_limit(&http, &api, args.clients, &shared).await?,
        _ => setup(&http, &api, &shared).await?,
    };
    let setup_retries = shared.retries.count();
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
            shared.clone(),
        )));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await?);
    }
    all.sort();
    let secs = args.seconds as f64;
    let failed = shared.failed.load(Ordering::Relaxed);
    let out = json!({
        "scenario": format!("{:?}", args.scenario),
        "clients": args.clients,
        "seconds": args.seconds,
        "requests": all.len(),
        "throughput_per_s": (all.len() as f64 / secs).round(),
        "p50_ms": percentile(&all, 50.0).as_secs_f64() * 1000.0,
        "p99_ms": percentile(&all, 99.0).as_secs_f64() * 1000.0,
        "busy_retries": shared.retries.count() - setup_retries,
        "failed": failed,
        "first_failure": *shared.first_failure.lock().expect("lock"),
    });
    println!("{out}");
    Ok(())
}
