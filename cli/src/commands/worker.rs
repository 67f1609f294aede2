//! `sluice worker start`: runs the pull worker (crate `sluice-worker`) until SIGINT/SIGTERM.

use clap::Args;

use super::ApiArgs;

#[derive(Args)]
pub struct StartArgs {
    /// The work pool to serve.
    #[arg(long)]
    pool: String,
    /// The worker's type: `process` runs flows as local processes; `ecs` and `batch` submit
    /// them to AWS (the SDK's standard configuration: AWS_REGION, credentials,
    /// AWS_ENDPOINT_URL) and follow the task or job. Also the type of a pool it creates.
    #[arg(long = "type", default_value = "process")]
    pool_type: String,
    /// The worker's name (default: generated).
    #[arg(long)]
    name: Option<String>,
    /// Only these queues of the pool (default: all); repeatable.
    #[arg(long = "work-queue")]
    work_queues: Vec<String>,
    /// At most this many runs at once.
    #[arg(long)]
    limit: Option<usize>,
    #[arg(long, default_value_t = 30)]
    heartbeat_seconds: u64,
    #[arg(long, default_value_t = 10)]
    poll_seconds: u64,
    /// Claim runs scheduled up to this far ahead, so they start on time.
    #[arg(long, default_value_t = 10)]
    prefetch_seconds: u64,
    /// Poll once, run what was claimed to the end, and exit.
    #[arg(long)]
    run_once: bool,
}

pub async fn start(api: &ApiArgs, args: StartArgs) -> anyhow::Result<()> {
    let opts = sluice_worker::WorkerOptions {
        api_url: api.url(),
        api_key: api.api_key.clone(),
        pool: args.pool,
        pool_type: args.pool_type,
        name: args.name,
        work_queues: args.work_queues,
        limit: args.limit,
        heartbeat_seconds: args.heartbeat_seconds,
        poll_seconds: args.poll_seconds,
        prefetch_seconds: args.prefetch_seconds,
        run_once: args.run_once,
        ..Default::default()
    };
    // The worker logs its own report when it stops; nothing more to print here.
    sluice_worker::run(opts, crate::signals::shutdown_signal()).await?;
    Ok(())
}
