//! `claimbench`: claim throughput of a work pool. Creates a pool, a deployment and M runs due
//! now, then lets N concurrent claimers race for them the way pull workers do: read
//! `get_scheduled_flow_runs`, propose PENDING on each run, keep the ACCEPTs (claims) and count
//! the ABORTs (races lost to another claimer). Runs nothing; it measures the claim path only.
//! Prints one JSON line per worker count and fails unless every run was claimed exactly once.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Parser;
use serde_json::json;
use sluice_bench::post;

#[derive(Parser)]
struct Args {
    /// API base URL, ending in /api.
    #[arg(long, default_value = "http://127.0.0.1:4200/api")]
    api: String,
    /// Runs created (due now) for each worker count.
    #[arg(long, default_value_t = 2000)]
    runs: usize,
    /// Concurrent claimers; repeat for several measurements (each on a fresh pool).
    #[arg(long, num_args = 1.., default_values_t = vec![1, 4, 8])]
    workers: Vec<usize>,
    /// `limit` of each `get_scheduled_flow_runs` call.
    #[arg(long, default_value_t = 10)]
    batch: usize,
}

/// A fresh pool and a deployment on it, with `runs` runs due now; (pool, deployment id).
async fn setup(
    http: &reqwest::Client,
    api: &str,
    workers: usize,
    runs: usize,
) -> anyhow::Result<(String, String)> {
    let tag = format!("{}-{workers}-{}", std::process::id(), uuid_ish());
    let pool = format!("claimbench-{tag}");
    post(
        http,
        &format!("{api}/work_pools/"),
        &json!({"name": pool, "type": "process"}),
    )
    .await?;
    let flow = post(
        http,
        &format!("{api}/flows/"),
        &json!({"name": format!("claimbench-flow-{tag}")}),
    )
    .await?;
    let dep = post(
        http,
        &format!("{api}/deployments/"),
        &json!({"flow_id": flow["id"], "name": "claimbench", "work_pool_name": pool}),
    )
    .await?;
    let dep = dep["id"]
        .as_str()
        .map(str::to_owned)
        .context("deployment id")?;

    const CREATORS: usize = 8;
    let mut tasks = Vec::new();
    for c in 0..CREATORS {
        let n = runs / CREATORS + usize::from(c < runs % CREATORS);
        let http = http.clone();
        let url = format!("{api}/deployments/{dep}/create_flow_run");
        tasks.push(tokio::spawn(async move {
            for _ in 0..n {
                post(&http, &url, &json!({})).await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok((pool, dep))
}

/// Distinguishes pools across invocations within one process id.
fn uuid_ish() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

#[derive(Default)]
struct Tally {
    claims: usize,
    lost_races: usize,
    /// Answers other than ACCEPT and ABORT (REJECT, WAIT); should stay 0.
    other: usize,
    polls: usize,
}

async fn claimer(
    http: reqwest::Client,
    api: String,
    pool: String,
    batch: usize,
    claimed: Arc<Mutex<HashSet<String>>>,
) -> anyhow::Result<Tally> {
    let mut tally = Tally::default();
    let poll = format!("{api}/work_pools/{pool}/get_scheduled_flow_runs");
    loop {
        let now = chrono::Utc::now().to_rfc3339();
        let answer = post(
            &http,
            &poll,
            &json!({"scheduled_before": now, "limit": batch}),
        )
        .await?;
        tally.polls += 1;
        let items = answer
            .as_array()
            .context("get_scheduled_flow_runs answer")?;
        if items.is_empty() {
            // Every run is due, so an empty answer means no SCHEDULED run is left.
            return Ok(tally);
        }
        for item in items {
            let id = item["flow_run"]["id"].as_str().context("flow run id")?;
            let out = post(
                &http,
                &format!("{api}/flow_runs/{id}/set_state"),
                &json!({"state": {"type": "PENDING"}}),
            )
            .await?;
            match out["status"].as_str() {
                Some("ACCEPT") => {
                    tally.claims += 1;
                    let fresh = claimed
                        .lock()
                        .map_err(|_| anyhow::anyhow!("poisoned"))?
                        .insert(id.to_owned());
                    if !fresh {
                        bail!("run {id} was claimed twice");
                    }
                }
                Some("ABORT") => tally.lost_races += 1,
                _ => tally.other += 1,
            }
        }
    }
}

async fn count(
    http: &reqwest::Client,
    api: &str,
    deployment: &str,
    state: &str,
) -> anyhow::Result<u64> {
    let n = post(
        http,
        &format!("{api}/flow_runs/count"),
        &json!({
            "deployments": {"id": {"any_": [deployment]}},
            "flow_runs": {"state": {"type": {"any_": [state]}}},
        }),
    )
    .await?;
    n.as_u64().context("count answer")
}

async fn measure(
    http: &reqwest::Client,
    api: &str,
    workers: usize,
    args: &Args,
) -> anyhow::Result<bool> {
    let (pool, dep) = setup(http, api, workers, args.runs).await?;
    let claimed = Arc::new(Mutex::new(HashSet::new()));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..workers {
        tasks.push(tokio::spawn(claimer(
            http.clone(),
            api.to_owned(),
            pool.clone(),
            args.batch,
            claimed.clone(),
        )));
    }
    let mut total = Tally::default();
    for t in tasks {
        let t = t.await??;
        total.claims += t.claims;
        total.lost_races += t.lost_races;
        total.other += t.other;
        total.polls += t.polls;
    }
    let seconds = start.elapsed().as_secs_f64();
    let pending = count(http, api, &dep, "PENDING").await?;
    let scheduled = count(http, api, &dep, "SCHEDULED").await?;
    let out = json!({
        "workers": workers,
        "runs": args.runs,
        "claims": total.claims,
        "lost_races": total.lost_races,
        "other_answers": total.other,
        "polls": total.polls,
        "seconds": (seconds * 1000.0).round() / 1000.0,
        "claims_per_s": (total.claims as f64 / seconds).round(),
        "pending_after": pending,
        "scheduled_after": scheduled,
    });
    println!("{out}");
    let ok = total.claims == args.runs && pending == args.runs as u64 && scheduled == 0;
    if !ok {
        eprintln!(
            "claimbench: {workers} workers: {} claims for {} runs ({pending} PENDING, {scheduled} \
             SCHEDULED): not exactly once",
            total.claims, args.runs
        );
    }
    Ok(ok)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let max = args.workers.iter().copied().max().unwrap_or(1).max(8);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(max)
        .build()?;
    let api = args.api.trim_end_matches('/').to_owned();
    let mut ok = true;
    for &w in &args.workers {
        if w == 0 {
            bail!("--workers must be at least 1");
        }
        ok &= measure(&http, &api, w, &args).await?;
    }
    if !ok {
        std::process::exit(1);
    }
    Ok(())
}
