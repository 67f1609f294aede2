//! The pull worker: keeps its pool alive with heartbeats, polls for due flow runs, claims them
//! by proposing PENDING, runs each as a local process (`process` pools) and reports the outcome
//! (reference §8.1–8.4).
//!
//! `ecs` and `batch` workers share the claim and report code and submit each run to AWS with the
//! push dispatcher's plans and adapter (`container.rs`), following it with Describe* calls.

mod container;
mod exit;
mod job;
mod steps;

pub use exit::{exit_message, explain as explain_exit_code};
pub use steps::run_pull_steps;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;
use sluice_client::{Client, ClientError};
use sluice_infra::PushInfrastructure as _;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use job::{Control, JobContext, Outcome};

/// How a worker is started (the CLI's `sluice worker start` flags).
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// The API base URL, ending in `/api`.
    pub api_url: String,
    pub api_key: Option<String>,
    pub pool: String,
    /// The worker's type: `process` (local processes), `ecs` or `batch` (AWS, through the
    /// standard SDK configuration: `AWS_REGION`, credentials, `AWS_ENDPOINT_URL`).
    pub pool_type: String,
    /// Defaults to `ProcessWorker <uuid4>`.
    pub name: Option<String>,
    /// Empty: every queue of the pool.
    pub work_queues: Vec<String>,
    /// At most this many runs at once.
    pub limit: Option<usize>,
    pub heartbeat_seconds: u64,
    pub poll_seconds: u64,
    pub prefetch_seconds: u64,
    /// How long a cancelled job gets between SIGTERM and SIGKILL, and how long running jobs
    /// may finish after a shutdown request.
    pub grace_seconds: u64,
    /// One poll, then wait for what it launched, then return.
    pub run_once: bool,
    /// Overrides `poll_seconds` with a finer interval (tests).
    pub poll_interval: Option<Duration>,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            api_url: "http://127.0.0.1:4200/api".to_owned(),
            api_key: None,
            pool: String::new(),
            pool_type: "process".to_owned(),
            name: None,
            work_queues: Vec::new(),
            limit: None,
            heartbeat_seconds: 30,
            poll_seconds: 10,
            prefetch_seconds: 10,
            grace_seconds: 30,
            run_once: false,
            poll_interval: None,
        }
    }
}

/// What a worker did, returned when it stops.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerReport {
    /// Runs this worker claimed.
    pub submitted: usize,
    pub completed: usize,
    pub failed: usize,
    pub crashed: usize,
    pub cancelled: usize,
    /// Runs still going when the shutdown grace period ran out (reported CRASHED).
    pub killed_on_shutdown: usize,
    /// ECS tasks or Batch jobs still going when the worker stopped (left running).
    pub left_running: usize,
}

impl WorkerReport {
    fn tally(&mut self, outcome: Outcome) {
        if outcome != Outcome::Skipped {
            self.submitted += 1;
        }
        match outcome {
            Outcome::Skipped => {}
            Outcome::Completed => self.completed += 1,
            Outcome::Failed => self.failed += 1,
            Outcome::Crashed => self.crashed += 1,
            Outcome::Cancelled => self.cancelled += 1,
            Outcome::KilledOnShutdown => self.killed_on_shutdown += 1,
            Outcome::Detached => self.left_running += 1,
        }
    }
}

/// The longest the poll interval grows to after repeated errors.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Runs the worker until `shutdown` resolves (or, with `run_once`, after one poll's runs end).
///
/// # Errors
/// The pool cannot be read or created, is a push pool, or the options are unusable.
pub async fn run(
    opts: WorkerOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<WorkerReport> {
    if opts.pool.is_empty() {
        bail!("a work pool name is required");
    }
    if opts.pool_type.ends_with(":push") {
        bail!(
            "`{}` is a push pool type: the control plane submits its runs, no worker serves it",
            opts.pool_type
        );
    }
    // Before any request: a pool of a type this worker cannot serve must not be created.
    if opts.pool_type != "process" && sluice_infra::Kind::of_pool_type(&opts.pool_type).is_none() {
        match sluice_core::pool_types::pool_type_info(&opts.pool_type)
            .and_then(|info| info.install_command)
        {
            // A type Sluice knows but serves with Prefect's own worker (docker, kubernetes).
            Some(install) => bail!(
                "`sluice worker` does not serve {} pools: run Prefect's worker against Sluice \
                 (`{install}`, then `prefect worker start --pool {} --type {}`)",
                opts.pool_type,
                opts.pool,
                opts.pool_type
            ),
            None => bail!(
                "unknown worker type `{}`: expected process, ecs or batch",
                opts.pool_type
            ),
        }
    }
    let client = Client::with_api_key(&opts.api_url, opts.api_key.as_deref())
        .map_err(|e| anyhow::anyhow!(e))?;
    ensure_pool(&client, &opts).await?;
    let container = match sluice_infra::Kind::of_pool_type(&opts.pool_type) {
        Some(kind) => {
            let infra = sluice_aws::AwsPush::from_env(sluice_aws::Rates::default());
            let region = infra
                .region(None)
                .await
                .unwrap_or_else(|| "us-east-1".to_owned());
            Some(container::ContainerJob {
                kind,
                infra: Arc::new(infra),
                region,
                watch_every: opts
                    .poll_interval
                    .unwrap_or(Duration::from_secs(5))
                    .min(Duration::from_secs(5)),
            })
        }
        // `process`: the types this worker does not serve were refused above.
        None => None,
    };
    let prefix = match opts.pool_type.as_str() {
        "ecs" => "ECSWorker",
        "batch" => "BatchWorker",
        _ => "ProcessWorker",
    };
    let worker_name = opts
        .name
        .clone()
        .unwrap_or_else(|| format!("{prefix} {}", uuid::Uuid::new_v4()));
    if let Err(e) = client
        .worker_heartbeat(&opts.pool, &worker_name, opts.heartbeat_seconds)
        .await
    {
        tracing::warn!(error = %e, "first heartbeat failed");
    }
    tracing::info!(worker = %worker_name, pool = %opts.pool, "worker started");

    let heartbeat = tokio::spawn(heartbeat_loop(
        client.clone(),
        opts.pool.clone(),
        worker_name.clone(),
        opts.heartbeat_seconds.max(1),
    ));
    let ctx = Arc::new(JobContext {
        client: client.clone(),
        api_url: opts.api_url.trim_end_matches('/').to_owned(),
        api_key: opts.api_key.clone(),
        pool: opts.pool.clone(),
        worker_name,
        grace: Duration::from_secs(opts.grace_seconds),
        local: None,
        container,
    });
    let fetch = Fetch::Pool;
    let result = serve(&opts, &ctx, &fetch, shutdown).await;
    heartbeat.abort();
    result
}

/// Reads the pool, creating it when missing (a 409 from a racing worker leads to a re-read).
async fn ensure_pool(client: &Client, opts: &WorkerOptions) -> anyhow::Result<Value> {
    let pool = match client.read_work_pool(&opts.pool).await? {
        Some(pool) => pool,
        None => match client.create_work_pool(&opts.pool, &opts.pool_type).await {
            Ok(pool) => {
                tracing::info!(pool = %opts.pool, "created work pool");
                pool
            }
            Err(ClientError::Status { status: 409, .. }) => client
                .read_work_pool(&opts.pool)
                .await?
                .with_context(|| format!("work pool {} vanished after a create race", opts.pool))?,
            Err(e) => return Err(e).context("cannot create the work pool"),
        },
    };
    let pool_type = pool.get("type").and_then(Value::as_str).unwrap_or_default();
    if pool_type.ends_with(":push") {
        bail!(
            "work pool {} is a push pool ({pool_type}): its runs are submitted by the control plane, not by a worker",
            opts.pool
        );
    }
    if pool_type != opts.pool_type {
        tracing::warn!(
            pool = %opts.pool,
            pool_type,
            worker_type = %opts.pool_type,
            "the pool's type is not this worker's type; its runs may not work here"
        );
    }
    Ok(pool)
}

async fn heartbeat_loop(client: Client, pool: String, name: String, every: u64) {
    loop {
        tokio::time::sleep(jittered(Duration::from_secs(every))).await;
        if let Err(e) = client.worker_heartbeat(&pool, &name, every).await {
            tracing::warn!(error = %e, "heartbeat failed");
        }
    }
}

/// `base` ±30 %, like Prefect's service loops, so workers started together spread out.
fn jittered(base: Duration) -> Duration {
    // A v4 UUID is 122 random bits; 16 of them are plenty for a jitter factor.
    let r = (uuid::Uuid::new_v4().as_u128() & 0xffff) as f64 / f64::from(u16::MAX);
    base.mul_f64(0.7 + 0.6 * r)
}

/// Where the polling loop finds its due runs.
enum Fetch {
    /// The worker: `POST /work_pools/{pool}/get_scheduled_flow_runs`.
    Pool,
    /// The runner: `POST /deployments/get_scheduled_flow_runs` for these deployments.
    Deployments(Vec<String>),
}

/// How the runner (`sluice serve`, Prefect's `flow.serve`, §8.5) is started: it serves
/// deployments that have no work pool by running one local command for each of their runs.
#[derive(Debug, Clone)]
pub struct RunnerOptions {
    /// The API base URL, ending in `/api`.
    pub api_url: String,
    pub api_key: Option<String>,
    /// Defaults to `Runner <uuid4>`; the jobs see it as `PREFECT__WORKER_NAME`.
    pub name: Option<String>,
    /// The deployments whose runs this runner executes.
    pub deployment_ids: Vec<String>,
    /// Run for every flow run: split into words (shlex), not run through a shell.
    pub command: String,
    /// Added to each job's environment (over the process's own and the Prefect variables).
    pub env: std::collections::BTreeMap<String, String>,
    /// `None`: a fresh temporary directory per run.
    pub working_dir: Option<std::path::PathBuf>,
    /// At most this many runs at once.
    pub limit: Option<usize>,
    pub poll_seconds: u64,
    pub prefetch_seconds: u64,
    /// Cancellation kill grace, and how long running jobs may finish after a shutdown request.
    pub grace_seconds: u64,
    /// Overrides `poll_seconds` with a finer interval (tests).
    pub poll_interval: Option<Duration>,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        RunnerOptions {
            api_url: "http://127.0.0.1:4200/api".to_owned(),
            api_key: None,
            name: None,
            deployment_ids: Vec::new(),
            command: String::new(),
            env: std::collections::BTreeMap::new(),
            working_dir: None,
            limit: Some(5),
            poll_seconds: 10,
            prefetch_seconds: 10,
            grace_seconds: 30,
            poll_interval: None,
        }
    }
}

/// Runs the runner until `shutdown` resolves: the worker's loop (claim by PENDING, launch,
/// log shipping, exit classification, cancellation, graceful shutdown) with the runs found
/// by deployment instead of by pool, and `command` instead of a rendered job template.
///
/// # Errors
/// No deployment or no command was given, or the HTTP client cannot be built.
pub async fn run_runner(
    opts: RunnerOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<WorkerReport> {
    if opts.deployment_ids.is_empty() {
        bail!("the runner needs at least one deployment");
    }
    if opts.command.trim().is_empty() {
        bail!("the runner needs a command");
    }
    let client = Client::with_api_key(&opts.api_url, opts.api_key.as_deref())
        .map_err(|e| anyhow::anyhow!(e))?;
    let name = opts
        .name
        .clone()
        .unwrap_or_else(|| format!("Runner {}", uuid::Uuid::new_v4()));
    let loop_opts = WorkerOptions {
        api_url: opts.api_url.clone(),
        api_key: opts.api_key.clone(),
        name: Some(name.clone()),
        limit: opts.limit,
        poll_seconds: opts.poll_seconds,
        prefetch_seconds: opts.prefetch_seconds,
        grace_seconds: opts.grace_seconds,
        poll_interval: opts.poll_interval,
        ..WorkerOptions::default()
    };
    let ctx = Arc::new(JobContext {
        client,
        api_url: opts.api_url.trim_end_matches('/').to_owned(),
        api_key: opts.api_key.clone(),
        pool: String::new(),
        worker_name: name.clone(),
        grace: Duration::from_secs(opts.grace_seconds),
        local: Some(job::LocalJob {
            command: opts.command.clone(),
            env: opts.env.clone(),
            working_dir: opts.working_dir.clone(),
        }),
        container: None,
    });
    tracing::info!(runner = %name, deployments = opts.deployment_ids.join(","), "runner started");
    let fetch = Fetch::Deployments(opts.deployment_ids.clone());
    serve(&loop_opts, &ctx, &fetch, shutdown).await
}

/// State of the polling loop.
struct Loop {
    in_flight: HashMap<String, watch::Sender<Control>>,
    jobs: JoinSet<(String, Outcome)>,
    report: WorkerReport,
    capacity: Arc<Semaphore>,
}

impl Loop {
    fn reaped(&mut self, joined: Result<(String, Outcome), tokio::task::JoinError>) {
        match joined {
            Ok((id, outcome)) => {
                self.in_flight.remove(&id);
                self.report.tally(outcome);
            }
            Err(e) => {
                // A panicked job: its run id is lost with it; the server's rules clean up.
                tracing::error!(error = %e, "a job task failed");
                self.in_flight.retain(|_, tx| !tx.is_closed());
            }
        }
    }
}

async fn serve(
    opts: &WorkerOptions,
    ctx: &Arc<JobContext>,
    fetch: &Fetch,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<WorkerReport> {
    let base = opts
        .poll_interval
        .unwrap_or(Duration::from_secs(opts.poll_seconds.max(1)));
    let mut state = Loop {
        in_flight: HashMap::new(),
        jobs: JoinSet::new(),
        report: WorkerReport::default(),
        capacity: Arc::new(Semaphore::new(
            opts.limit.unwrap_or(Semaphore::MAX_PERMITS).max(1),
        )),
    };
    let mut failures: u32 = 0;
    let mut polled = false;
    let mut next_poll = Instant::now();
    let mut shutdown = std::pin::pin!(shutdown);

    let stopped_by_shutdown = loop {
        if opts.run_once && polled && state.jobs.is_empty() {
            break false;
        }
        tokio::select! {
            () = &mut shutdown => break true,
            Some(joined) = state.jobs.join_next(), if !state.jobs.is_empty() => state.reaped(joined),
            () = tokio::time::sleep_until(next_poll) => {
                check_cancellations(&ctx.client, &state.in_flight).await;
                if !(opts.run_once && polled) {
                    match poll(opts, ctx, fetch, &mut state).await {
                        Ok(()) => failures = 0,
                        Err(e) => {
                            failures = failures.saturating_add(1);
                            tracing::warn!(error = %e, failures, "poll failed; backing off");
                        }
                    }
                    polled = true;
                }
                let wait = base
                    .saturating_mul(2u32.saturating_pow(failures.min(16)))
                    .min(MAX_BACKOFF);
                next_poll = Instant::now() + jittered(wait);
            }
        }
    };

    if stopped_by_shutdown {
        tracing::info!(
            running = state.jobs.len(),
            grace_seconds = opts.grace_seconds,
            "shutting down: no new claims; waiting for running jobs"
        );
        let deadline = Instant::now() + Duration::from_secs(opts.grace_seconds);
        while !state.jobs.is_empty() {
            tokio::select! {
                Some(joined) = state.jobs.join_next() => state.reaped(joined),
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
        for tx in state.in_flight.values() {
            let _ = tx.send(Control::Shutdown);
        }
    }
    while let Some(joined) = state.jobs.join_next().await {
        state.reaped(joined);
    }
    let r = &state.report;
    tracing::info!(
        submitted = r.submitted,
        completed = r.completed,
        failed = r.failed,
        crashed = r.crashed,
        cancelled = r.cancelled,
        killed_on_shutdown = r.killed_on_shutdown,
        left_running = r.left_running,
        "worker stopped"
    );
    Ok(state.report)
}

/// One `get_scheduled_flow_runs` call; launches a job per new run while capacity lasts.
async fn poll(
    opts: &WorkerOptions,
    ctx: &Arc<JobContext>,
    fetch: &Fetch,
    state: &mut Loop,
) -> anyhow::Result<()> {
    let before = chrono::Utc::now()
        + chrono::Duration::seconds(i64::try_from(opts.prefetch_seconds).unwrap_or(i64::MAX / 4));
    let before = before.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let runs = match fetch {
        Fetch::Pool => {
            ctx.client
                .get_scheduled_flow_runs(&opts.pool, &opts.work_queues, &before)
                .await?
        }
        Fetch::Deployments(ids) => {
            ctx.client
                .get_scheduled_flow_runs_for_deployments(ids, &before)
                .await?
        }
    };
    for run in runs {
        let Some(id) = run.get("id").and_then(Value::as_str).map(str::to_owned) else {
            continue;
        };
        if state.in_flight.contains_key(&id) {
            continue;
        }
        // Full: claim nothing more until a job ends (the permit is held for the job's life).
        let Ok(permit) = state.capacity.clone().try_acquire_owned() else {
            break;
        };
        let (tx, rx) = watch::channel(Control::Run);
        state.in_flight.insert(id.clone(), tx);
        let ctx = Arc::clone(ctx);
        state.jobs.spawn(async move {
            let outcome = job::execute(ctx, run, rx).await;
            drop(permit);
            (id, outcome)
        });
    }
    Ok(())
}

/// Tells the jobs of runs now CANCELLING (or CANCELLED) to stop: one filter call per 200
/// runs rather than a read per run.
async fn check_cancellations(client: &Client, in_flight: &HashMap<String, watch::Sender<Control>>) {
    let ids: Vec<&String> = in_flight
        .iter()
        .filter(|(_, tx)| *tx.borrow() == Control::Run)
        .map(|(id, _)| id)
        .collect();
    for chunk in ids.chunks(200) {
        let body = serde_json::json!({
            "flow_runs": {
                "id": { "any_": chunk },
                "state": { "type": { "any_": ["CANCELLING", "CANCELLED"] } },
            },
            "limit": 200,
        });
        let runs = match client.filter_flow_runs(&body).await {
            Ok(runs) => runs,
            Err(e) => {
                tracing::warn!(error = %e, "cannot check for cancellations");
                return;
            }
        };
        for run in runs {
            let Some(tx) = run
                .get("id")
                .and_then(Value::as_str)
                .and_then(|id| in_flight.get(id))
            else {
                continue;
            };
            let id = run.get("id").and_then(Value::as_str).unwrap_or_default();
            tracing::info!(run = id, "flow run is being cancelled; stopping it");
            let _ = tx.send(Control::Cancel);
        }
    }
}
