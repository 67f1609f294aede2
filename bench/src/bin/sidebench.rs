//! `sidebench`: the workloads of the side-by-side comparison with a Prefect server that
//! `loadgen` does not cover, against any API in Prefect's dialect. One JSON line per call.
//!
//! - `poll`: seeds `--runs` runs in a fresh pool (untimed), scheduled `--ahead-seconds` from now,
//!   then times `--polls` sequential `get_scheduled_flow_runs {scheduled_before, limit}` calls
//!   whose horizon takes in every one of them, claiming nothing.
//! - `materialise`: creates `--deployments` deployments with one cron schedule each and times how
//!   long it takes until `--deployments × --expect-per-deployment` SCHEDULED runs exist for them.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use serde_json::{Value, json};
use sluice_bench::{Retries, percentile, post_retrying};

#[derive(Parser)]
struct Args {
    /// API base URL, ending in /api.
    #[arg(long, default_value = "http://127.0.0.1:4200/api", global = true)]
    api: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Poll latency of `get_scheduled_flow_runs` with many runs due.
    Poll {
        /// Runs due now to create first (not timed).
        #[arg(long, default_value_t = 10_000)]
        runs: usize,
        /// Concurrent clients creating them.
        #[arg(long, default_value_t = 4)]
        seed_clients: usize,
        /// Timed polls, one after another (after 5 untimed ones).
        #[arg(long, default_value_t = 200)]
        polls: usize,
        /// `limit` of each poll.
        #[arg(long, default_value_t = 10)]
        limit: usize,
        /// Schedule the runs this far ahead (0: due now) and poll with a horizon past them, as
        /// a worker's prefetch does. Runs ahead keep a server's late-run marking out of it.
        #[arg(long, default_value_t = 0)]
        ahead_seconds: i64,
    },
    /// Time until the scheduled runs of many cron deployments exist.
    Materialise {
        #[arg(long, default_value_t = 1_000)]
        deployments: usize,
        #[arg(long, default_value = "* * * * *")]
        cron: String,
        /// SCHEDULED runs each deployment should get (an hour of a minutely cron: 60, as
        /// both servers keep at least an hour and three runs ahead).
        #[arg(long, default_value_t = 60)]
        expect_per_deployment: usize,
        /// Concurrent clients creating the deployments.
        #[arg(long, default_value_t = 4)]
        create_clients: usize,
        /// Interval between counts of the runs.
        #[arg(long, default_value_t = 250)]
        sample_ms: u64,
        /// Give up after this many seconds from the first deployment request.
        #[arg(long, default_value_t = 300)]
        timeout_s: u64,
    },
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0 * 100.0).round() / 100.0
}

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

fn id_of(v: &Value) -> anyhow::Result<String> {
    v["id"].as_str().map(str::to_owned).context("id in answer")
}

async fn count_scheduled(
    http: &reqwest::Client,
    api: &str,
    filter: &Value,
    retries: &Retries,
) -> anyhow::Result<usize> {
    let n = post_retrying(http, &format!("{api}/flow_runs/count"), filter, retries).await?;
    n.as_u64()
        .map(|n| n as usize)
        .with_context(|| format!("count answer {n}"))
}

fn scheduled_filter(key: &str, id: &str) -> Value {
    json!({
        key: {"id": {"any_": [id]}},
        "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}},
    })
}

/// A fresh process pool and a flow, named after `prefix` and this process: the pool's name and
/// the flow as the API answered it.
async fn pool_and_flow(
    http: &reqwest::Client,
    api: &str,
    prefix: &str,
    retries: &Arc<Retries>,
) -> anyhow::Result<(String, Value)> {
    let tag = std::process::id();
    let pool = format!("{prefix}-{tag}");
    post_retrying(
        http,
        &format!("{api}/work_pools/"),
        &json!({"name": pool, "type": "process"}),
        retries,
    )
    .await?;
    let flow = post_retrying(
        http,
        &format!("{api}/flows/"),
        &json!({"name": format!("{prefix}-flow-{tag}")}),
        retries,
    )
    .await?;
    Ok((pool, flow))
}

async fn poll(
    http: &reqwest::Client,
    api: &str,
    runs: usize,
    seed_clients: usize,
    polls: usize,
    limit: usize,
    ahead_seconds: i64,
) -> anyhow::Result<Value> {
    let retries = Arc::new(Retries::default());
    let (pool, flow) = pool_and_flow(http, api, "poll", &retries).await?;
    let ahead = chrono::Duration::seconds(ahead_seconds.max(0));
    // Every run lands before the horizon the polls use.
    let horizon = if ahead.is_zero() {
        chrono::Duration::zero()
    } else {
        ahead + chrono::Duration::seconds(600)
    };
    let dep = post_retrying(
        http,
        &format!("{api}/deployments/"),
        &json!({"flow_id": flow["id"], "name": "poll", "work_pool_name": pool}),
        &retries,
    )
    .await?;
    let dep = id_of(&dep)?;

    let seed_start = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..seed_clients.max(1) {
        let (http, next, retries) = (http.clone(), next.clone(), retries.clone());
        let url = format!("{api}/deployments/{dep}/create_flow_run");
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < runs {
                let body = if ahead.is_zero() {
                    json!({"state": {"type": "SCHEDULED"}})
                } else {
                    let at = (chrono::Utc::now() + ahead).to_rfc3339();
                    json!({"state": {"type": "SCHEDULED", "state_details": {"scheduled_time": at}}})
                };
                post_retrying(&http, &url, &body, &retries).await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let seed_seconds = seed_start.elapsed();
    let seed_retries = retries.count();
    let present =
        count_scheduled(http, api, &scheduled_filter("deployments", &dep), &retries).await?;
    // More only if a retried creation had been applied before its connection was lost.
    if present < runs {
        bail!("{present} SCHEDULED runs after seeding {runs}");
    }

    let url = format!("{api}/work_pools/{pool}/get_scheduled_flow_runs");
    let mut latencies = Vec::with_capacity(polls);
    let mut short = 0usize;
    for i in 0..polls + 5 {
        let body = json!({
            "scheduled_before": (chrono::Utc::now() + horizon).to_rfc3339(),
            "limit": limit,
        });
        let t = Instant::now();
        let out = post_retrying(http, &url, &body, &retries).await?;
        let took = t.elapsed();
        let got = out.as_array().map_or(0, Vec::len);
        if i >= 5 {
            latencies.push(took);
            if got < limit.min(runs) {
                short += 1;
            }
        }
    }
    let still =
        count_scheduled(http, api, &scheduled_filter("deployments", &dep), &retries).await?;
    let mean = latencies.iter().sum::<Duration>() / latencies.len().max(1) as u32;
    latencies.sort();
    Ok(json!({
        "workload": "poll",
        "runs": runs,
        "ahead_seconds": ahead_seconds,
        "runs_present": present,
        "seed_clients": seed_clients,
        "seed_seconds": secs(seed_seconds),
        "seed_runs_per_s": (runs as f64 / seed_seconds.as_secs_f64()).round(),
        "seed_busy_retries": seed_retries,
        "polls": polls,
        "limit": limit,
        "p50_ms": ms(percentile(&latencies, 50.0)),
        "p99_ms": ms(percentile(&latencies, 99.0)),
        "mean_ms": ms(mean),
        "max_ms": ms(latencies.last().copied().unwrap_or_default()),
        "short_answers": short,
        "scheduled_after": still,
        "busy_retries": retries.count(),
    }))
}

#[allow(clippy::too_many_arguments)]
async fn materialise(
    http: &reqwest::Client,
    api: &str,
    deployments: usize,
    cron: &str,
    expect_per_deployment: usize,
    create_clients: usize,
    sample: Duration,
    timeout: Duration,
) -> anyhow::Result<Value> {
    let retries = Arc::new(Retries::default());
    let (pool, flow) = pool_and_flow(http, api, "mat", &retries).await?;
    let flow = id_of(&flow)?;
    let filter = scheduled_filter("flows", &flow);
    let expected = deployments * expect_per_deployment;

    let start = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..create_clients.max(1) {
        let (http, next, retries) = (http.clone(), next.clone(), retries.clone());
        let (url, flow, pool, cron) = (
            format!("{api}/deployments/"),
            flow.clone(),
            pool.clone(),
            cron.to_owned(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= deployments {
                    break;
                }
                let body = json!({
                    "flow_id": flow,
                    "name": format!("cron-{i:05}"),
                    "work_pool_name": pool,
                    "schedules": [{"schedule": {"cron": cron, "timezone": "UTC"}, "active": true}],
                });
                post_retrying(&http, &url, &body, &retries).await?;
            }
            anyhow::Ok(start.elapsed())
        }));
    }

    // Count while the deployments are being created, and after, until the runs are all there.
    let mut samples = 0usize;
    let mut count_time = Duration::ZERO;
    let mut first_run = None;
    let mut done = None;
    let mut last = 0usize;
    while start.elapsed() < timeout {
        let t = Instant::now();
        last = count_scheduled(http, api, &filter, &retries).await?;
        count_time += t.elapsed();
        samples += 1;
        let at = start.elapsed();
        if last > 0 && first_run.is_none() {
            first_run = Some(at);
        }
        if last >= expected {
            done = Some(at);
            break;
        }
        tokio::time::sleep(sample.saturating_sub(t.elapsed())).await;
    }
    let mut created = Duration::ZERO;
    for t in tasks {
        created = created.max(t.await??);
    }
    // What is there once things have settled (the scheduler may add a run at a minute boundary).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let settled = count_scheduled(http, api, &filter, &retries).await?;
    Ok(json!({
        "workload": "materialise",
        "deployments": deployments,
        "cron": cron,
        "expected_runs": expected,
        "create_clients": create_clients,
        "create_seconds": secs(created),
        "first_run_seconds": first_run.map(secs),
        "materialised_seconds": done.map(secs),
        "runs_at_end": last,
        "runs_settled": settled,
        "runs_per_s": done.map(|d| (expected as f64 / d.as_secs_f64()).round()),
        "count_samples": samples,
        "count_mean_ms": ms(count_time / samples.max(1) as u32),
        "timeout_s": timeout.as_secs(),
        "busy_retries": retries.count(),
    }))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(16)
        .build()?;
    let api = args.api.trim_end_matches('/').to_owned();
    let out = match args.command {
        Command::Poll {
            runs,
            seed_clients,
            polls,
            limit,
            ahead_seconds,
        } => poll(&http, &api, runs, seed_clients, polls, limit, ahead_seconds).await?,
        Command::Materialise {
            deployments,
            cron,
            expect_per_deployment,
            create_clients,
            sample_ms,
            timeout_s,
        } => {
            materialise(
                &http,
                &api,
                deployments,
                &cron,
                expect_per_deployment,
                create_clients,
                Duration::from_millis(sample_ms),
                Duration::from_secs(timeout_s),
            )
            .await?
        }
    };
    println!("{out}");
    Ok(())
}
