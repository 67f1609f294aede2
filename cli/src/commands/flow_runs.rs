//! `sluice flow-run ...`

use std::time::Duration;

use clap::Subcommand;
use serde_json::{Value, json};

use super::{Ctx, failed, field, is_terminal, print_json, print_table, show};

/// The API's page size cap for `/logs/filter`.
const LOG_PAGE: usize = 200;

#[derive(Subcommand)]
pub enum FlowRunCommand {
    /// List flow runs, most recent expected start first.
    Ls {
        /// Only runs in this state type (SCHEDULED, RUNNING, COMPLETED, ...); repeatable.
        #[arg(long = "state")]
        states: Vec<String>,
        #[arg(long, default_value_t = 15)]
        limit: usize,
    },
    /// Show one flow run.
    Inspect {
        id: String,
    },
    /// Ask the run to stop (CANCELLING; a run with nothing executing it goes straight to CANCELLED).
    Cancel {
        id: String,
    },
    /// Print the run's logs.
    Logs {
        id: String,
        /// Keep printing new lines until the run is finished.
        #[arg(long)]
        follow: bool,
    },
    Delete {
        id: String,
    },
}

fn flow_run(id: &str) -> String {
    format!("flow run {id:?}")
}

pub async fn run(ctx: &Ctx, command: FlowRunCommand) -> anyhow::Result<()> {
    let c = &ctx.client;
    match command {
        FlowRunCommand::Ls { states, limit } => {
            let mut filter = json!({ "sort": "EXPECTED_START_TIME_DESC", "limit": limit });
            if !states.is_empty() {
                let types: Vec<String> = states.iter().map(|s| s.to_uppercase()).collect();
                filter["flow_runs"] = json!({ "state": { "type": { "any_": types } } });
            }
            let runs = c
                .list_flow_runs(&filter)
                .await
                .map_err(failed("listing flow runs"))?;
            if ctx.json {
                return print_json(&Value::Array(runs));
            }
            let rows: Vec<Vec<String>> = runs
                .iter()
                .map(|r| {
                    vec![
                        field(r, "id"),
                        field(r, "name"),
                        field(r, "state_name"),
                        field(r, "expected_start_time"),
                    ]
                })
                .collect();
            print_table(&["ID", "NAME", "STATE", "EXPECTED START"], &rows);
        }
        FlowRunCommand::Inspect { id } => {
            let r = c.flow_run(&id).await.map_err(failed(flow_run(&id)))?;
            show(ctx, &r)?;
        }
        FlowRunCommand::Cancel { id } => {
            let answer = c
                .propose_flow_run_state(&id, &json!({ "type": "CANCELLING" }))
                .await
                .map_err(failed(flow_run(&id)))?;
            let status = field(&answer, "status");
            let state = answer.get("state").cloned().unwrap_or(Value::Null);
            let state_type = field(&state, "type");
            // Cancelling something already cancelled is what the user wanted: not an error.
            if matches!(status.as_str(), "REJECT" | "ABORT") && state_type != "CANCELLED" {
                let reason = answer
                    .get("details")
                    .map(|d| field(d, "reason"))
                    .unwrap_or_default();
                anyhow::bail!(
                    "cannot cancel {}: the server answered {status} ({reason}); its state is {}",
                    flow_run(&id),
                    field(&state, "name")
                );
            }
            if ctx.json {
                print_json(&state)?;
            } else {
                println!("Flow run {id} is {}.", field(&state, "name"));
            }
        }
        FlowRunCommand::Logs { id, follow } => logs(ctx, &id, follow).await?,
        FlowRunCommand::Delete { id } => {
            c.delete_flow_run(&id)
                .await
                .map_err(failed(flow_run(&id)))?;
            if !ctx.json {
                println!("Deleted flow run {id}.");
            }
        }
    }
    Ok(())
}

/// Pages through the run's logs oldest first; with `follow`, keeps polling once a second and
/// stops after a poll that finds the run terminal and brings no new lines (so the last lines a
/// finishing run writes are not lost). JSON mode prints one log object per line.
async fn logs(ctx: &Ctx, id: &str, follow: bool) -> anyhow::Result<()> {
    let c = &ctx.client;
    // Fail early and clearly on a run that does not exist (the filter would just be empty).
    c.flow_run(id).await.map_err(failed(flow_run(id)))?;
    let mut offset = 0;
    loop {
        // Read the state before the logs: a run terminal now wrote all its lines already.
        let terminal = if follow {
            let run = c.flow_run(id).await.map_err(failed(flow_run(id)))?;
            is_terminal(&field(&run, "state_type"))
        } else {
            true
        };
        let mut fetched_any = false;
        loop {
            let page = c
                .filter_logs(&json!({
                    "logs": { "flow_run_id": { "any_": [id] } },
                    "sort": "TIMESTAMP_ASC",
                    "limit": LOG_PAGE,
                    "offset": offset,
                }))
                .await
                .map_err(failed(format!("logs of {}", flow_run(id))))?;
            offset += page.len();
            fetched_any |= !page.is_empty();
            for log in &page {
                if ctx.json {
                    println!("{}", serde_json::to_string(log)?);
                } else {
                    println!(
                        "{} | {:<8} | {} - {}",
                        field(log, "timestamp"),
                        level_name(log.get("level").and_then(Value::as_i64)),
                        field(log, "name"),
                        field(log, "message")
                    );
                }
            }
            if page.len() < LOG_PAGE {
                break;
            }
        }
        if !follow || (terminal && !fetched_any) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Python's logging level names, as Prefect prints them.
fn level_name(level: Option<i64>) -> String {
    match level {
        Some(50) => "CRITICAL".to_owned(),
        Some(40) => "ERROR".to_owned(),
        Some(30) => "WARNING".to_owned(),
        Some(20) => "INFO".to_owned(),
        Some(10) => "DEBUG".to_owned(),
        Some(n) => format!("Level {n}"),
        None => "-".to_owned(),
    }
}
