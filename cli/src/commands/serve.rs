//! `sluice serve`: Prefect's `flow.serve` (reference §8.5). Upserts a flow and a deployment
//! with no work pool, runs that deployment's scheduled runs as local processes with the pull
//! worker's job machinery (crate `sluice-worker`, [`sluice_worker::run_runner`]) and pauses the
//! deployment on SIGINT/SIGTERM.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use serde_json::{Map, Value, json};
use sluice_client::Client;

use super::{ApiArgs, failed, key_values};

#[derive(Args)]
pub struct ServeArgs {
    /// The deployment's name.
    #[arg(long, value_name = "D")]
    name: String,
    /// The command run for every flow run, split into words as a POSIX shell would but run
    /// without one (as Prefect does); for pipes or `&&`, say `sh -c '...'`.
    #[arg(long)]
    command: String,
    /// A cron schedule.
    #[arg(long, value_name = "C", conflicts_with_all = ["interval", "rrule"])]
    cron: Option<String>,
    /// An interval schedule, in seconds.
    #[arg(long, value_name = "SECONDS", conflicts_with = "rrule")]
    interval: Option<f64>,
    /// An RRule schedule.
    #[arg(long, value_name = "R")]
    rrule: Option<String>,
    /// The schedule's timezone.
    #[arg(long, value_name = "TZ")]
    timezone: Option<String>,
    /// A default parameter `k=v` (the value is parsed as JSON when it parses). Repeatable.
    #[arg(long = "param", value_name = "K=V")]
    param: Vec<String>,
    /// An environment variable `K=V` for the command. Repeatable.
    #[arg(long = "env", value_name = "K=V")]
    env: Vec<String>,
    /// The command's working directory (default: a fresh temporary directory per run).
    #[arg(long, value_name = "DIR")]
    working_dir: Option<PathBuf>,
    /// The flow's name (default: the deployment's name).
    #[arg(long, value_name = "F")]
    flow_name: Option<String>,
    /// At most this many runs at once.
    #[arg(long, default_value_t = 5)]
    limit: usize,
    #[arg(long, default_value_t = 10)]
    poll_seconds: u64,
    /// Claim runs scheduled up to this far ahead, so they start on time.
    #[arg(long, default_value_t = 10)]
    prefetch_seconds: u64,
    /// How long running jobs may finish after SIGINT/SIGTERM before they are killed
    /// (and reported CRASHED); also the SIGTERM-to-SIGKILL grace of a cancelled run.
    #[arg(long, default_value_t = 30)]
    grace_seconds: u64,
}

/// The deployment's `schedules` list (API form) from the schedule flags.
fn schedules(args: &ServeArgs) -> Vec<Value> {
    let mut schedule = Map::new();
    if let Some(cron) = &args.cron {
        schedule.insert("cron".to_owned(), Value::from(cron.as_str()));
    } else if let Some(seconds) = args.interval {
        schedule.insert("interval".to_owned(), Value::from(seconds));
    } else if let Some(rrule) = &args.rrule {
        schedule.insert("rrule".to_owned(), Value::from(rrule.as_str()));
    } else {
        return Vec::new();
    }
    if let Some(tz) = &args.timezone {
        schedule.insert("timezone".to_owned(), Value::from(tz.as_str()));
    }
    vec![json!({ "schedule": Value::Object(schedule), "active": true })]
}

/// Upserts the flow and the deployment (no work pool, not paused); the deployment's id.
async fn upsert(client: &Client, args: &ServeArgs) -> anyhow::Result<String> {
    let flow_name = args.flow_name.as_deref().unwrap_or(&args.name);
    let flow = client
        .upsert_flow(flow_name)
        .await
        .map_err(failed(format!("flow {flow_name}")))?;
    let flow_id = flow
        .id()
        .with_context(|| format!("the server's answer for flow {flow_name} has no id"))?
        .to_owned();
    let body = json!({
        "flow_id": flow_id,
        "name": args.name,
        "schedules": schedules(args),
        "parameters": Value::Object(key_values("--param", &args.param)?),
        "paused": false,
    });
    let deployment = client
        .upsert_deployment(&body)
        .await
        .map_err(failed(format!("deployment {flow_name}/{}", args.name)))?;
    let id = deployment
        .id()
        .with_context(|| format!("the server's answer for deployment {} has no id", args.name))?
        .to_owned();
    println!(
        "Serving deployment '{flow_name}/{}' ({id}); press Ctrl+C to stop.",
        args.name
    );
    Ok(id)
}

pub async fn run(api: &ApiArgs, args: ServeArgs) -> anyhow::Result<()> {
    let mut env = BTreeMap::new();
    for pair in &args.env {
        let Some((k, v)) = pair.split_once('=') else {
            anyhow::bail!("--env {pair:?} is not KEY=VALUE");
        };
        env.insert(k.to_owned(), v.to_owned());
    }
    let client = Client::with_api_key(&api.url(), api.api_key.as_deref())
        .map_err(|e| anyhow::anyhow!("cannot build the HTTP client: {e}"))?;
    let deployment_id = upsert(&client, &args).await?;
    let opts = sluice_worker::RunnerOptions {
        api_url: api.url(),
        api_key: api.api_key.clone(),
        deployment_ids: vec![deployment_id.clone()],
        command: args.command.clone(),
        env,
        working_dir: args.working_dir.clone(),
        limit: Some(args.limit.max(1)),
        poll_seconds: args.poll_seconds,
        prefetch_seconds: args.prefetch_seconds,
        grace_seconds: args.grace_seconds,
        ..Default::default()
    };
    let report = sluice_worker::run_runner(opts, crate::signals::shutdown_signal()).await;
    // Paused whatever happened, so the scheduler stops making runs nobody will execute.
    let paused = client.set_deployment_paused(&deployment_id, true).await;
    let report = report?;
    paused.map_err(failed(format!("pausing deployment {deployment_id}")))?;
    println!(
        "Stopped serving '{}': {} run(s) submitted, {} completed, {} failed, {} crashed, {} cancelled, {} killed on shutdown; deployment paused.",
        args.name,
        report.submitted,
        report.completed,
        report.failed,
        report.crashed,
        report.cancelled,
        report.killed_on_shutdown
    );
    Ok(())
}
