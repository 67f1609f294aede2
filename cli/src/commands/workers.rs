//! `sluice worker ls` and `sluice worker start`.

use clap::Subcommand;
use serde_json::Value;

use super::{ApiArgs, failed, field, print_json, print_table};

#[derive(Subcommand)]
pub enum WorkerCommand {
    /// List the workers that have heartbeated to a pool.
    Ls {
        #[arg(long)]
        pool: String,
    },
    /// Run a worker for a pool until SIGINT/SIGTERM.
    Start(super::worker::StartArgs),
}

pub async fn run(api: &ApiArgs, command: WorkerCommand) -> anyhow::Result<()> {
    let pool = match command {
        WorkerCommand::Ls { pool } => pool,
        WorkerCommand::Start(args) => return super::worker::start(api, args).await,
    };
    let ctx = api.context()?;
    let workers = ctx
        .client
        .list_workers(&pool)
        .await
        .map_err(failed(format!("work pool {pool:?}")))?;
    if ctx.json {
        return print_json(&Value::Array(workers));
    }
    let rows: Vec<Vec<String>> = workers
        .iter()
        .map(|w| {
            vec![
                field(w, "name"),
                field(w, "status"),
                field(w, "last_heartbeat_time"),
                field(w, "id"),
            ]
        })
        .collect();
    print_table(&["NAME", "STATUS", "LAST HEARTBEAT", "ID"], &rows);
    Ok(())
}
