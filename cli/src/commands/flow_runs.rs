//! `sluice flow-run ...`

use std::time::Duration;

use clap::Subcommand;
use serde_json::{Value, json};

use super::{Ctx, failed, field, is_terminal, print_json, print_table, show};

/// The API's page size cap for `/logs/filter`.
const LOG_PAGE: usize = 200;

#[derive(Subcommand)]
pub enum FlowRunCommand {
    /// List flow runs, newest first (as Prefect's `flow-run ls`).
    Ls {
        /// Only runs whose state has this name (Late, Completed, AwaitingRetry, ...; any case);
        /// repeatable.
        #[arg(long = "state")]
        states: Vec<String>,
        /// Only runs whose state has this type (SCHEDULED, RUNNING, COMPLETED, ...); repeatable.
        #[arg(long = "state-type")]
        state_types: Vec<String>,
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
        FlowRunCommand::Ls {
            states,
            state_types,
            limit,
        } => ls(ctx, &states, &state_types, limit).await?,
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

/// Prefect's state names, found by any capitalisation (`late`, `LATE` → `Late`).
const STATE_NAMES: [&str; 13] = [
    "Scheduled",
    "Pending",
    "Running",
    "Completed",
    "Failed",
    "Cancelled",
    "Crashed",
    "Paused",
    "Cancelling",
    "Suspended",
    "AwaitingRetry",
    "Retrying",
    "Late",
];

const STATE_TYPES: [&str; 9] = [
    "SCHEDULED",
    "PENDING",
    "RUNNING",
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "CRASHED",
    "PAUSED",
    "CANCELLING",
];

/// The runs' filter for `--state` names and `--state-type` types, as Prefect's CLI builds it:
/// a known name in its canonical spelling (an unknown one is passed on with a warning, since a
/// flow may set states of its own name), a type only from Prefect's list.
fn state_filter(states: &[String], state_types: &[String]) -> anyhow::Result<Option<Value>> {
    let mut filter = serde_json::Map::new();
    if !states.is_empty() {
        let names: Vec<String> = states
            .iter()
            .map(
                |s| match STATE_NAMES.iter().find(|n| n.eq_ignore_ascii_case(s)) {
                    Some(known) => (*known).to_owned(),
                    None => {
                        eprintln!(
                            "warning: {s:?} is not one of Prefect's state names ({}); \
                         matching it exactly",
                            STATE_NAMES.join(", ")
                        );
                        s.clone()
                    }
                },
            )
            .collect();
        filter.insert("name".to_owned(), json!({ "any_": names }));
    }
    if !state_types.is_empty() {
        let mut types = Vec::new();
        for t in state_types {
            let upper = t.to_uppercase();
            if !STATE_TYPES.contains(&upper.as_str()) {
                anyhow::bail!(
                    "--state-type {t:?} is not a state type; the types are {} (for a state \
                     name such as Late, use --state)",
                    STATE_TYPES.join(", ")
                );
            }
            types.push(upper);
        }
        filter.insert("type".to_owned(), json!({ "any_": types }));
    }
    Ok((!filter.is_empty()).then_some(Value::Object(filter)))
}

async fn ls(
    ctx: &Ctx,
    states: &[String],
    state_types: &[String],
    limit: usize,
) -> anyhow::Result<()> {
    let c = &ctx.client;
    let mut filter = json!({ "sort": "EXPECTED_START_TIME_DESC", "limit": limit });
    if let Some(state) = state_filter(states, state_types)? {
        filter["flow_runs"] = json!({ "state": state });
    }
    let mut runs = c
        .list_flow_runs(&filter)
        .await
        .map_err(failed("listing flow runs"))?;
    // The page is chosen by expected start; it is shown newest first, as Prefect's CLI does.
    runs.sort_by_key(|r| std::cmp::Reverse(field(r, "created")));
    if ctx.json {
        return print_json(&Value::Array(runs));
    }
    let ids = |key: &str| -> Vec<String> {
        let mut ids: Vec<String> = runs
            .iter()
            .filter_map(|r| r.get(key).and_then(Value::as_str).map(str::to_owned))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    };
    let names_of = |items: Vec<Value>| -> std::collections::HashMap<String, String> {
        items
            .iter()
            .map(|i| (field(i, "id"), field(i, "name")))
            .collect()
    };
    let (flow_ids, deployment_ids) = (ids("flow_id"), ids("deployment_id"));
    let flows = if flow_ids.is_empty() {
        Default::default()
    } else {
        let body = json!({ "flows": { "id": { "any_": flow_ids } } });
        names_of(c.list_flows(&body).await.map_err(failed("listing flows"))?)
    };
    let deployments = if deployment_ids.is_empty() {
        Default::default()
    } else {
        let body = json!({ "deployments": { "id": { "any_": deployment_ids } } });
        names_of(
            c.list_deployments(&body)
                .await
                .map_err(failed("listing deployments"))?,
        )
    };
    let name_in = |names: &std::collections::HashMap<String, String>, r: &Value, key: &str| {
        names
            .get(&field(r, key))
            .cloned()
            .unwrap_or_else(|| "-".to_owned())
    };
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            vec![
                field(r, "id"),
                name_in(&flows, r, "flow_id"),
                name_in(&deployments, r, "deployment_id"),
                field(r, "name"),
                field(r, "state_name"),
                field(r, "expected_start_time"),
            ]
        })
        .collect();
    print_table(
        &[
            "ID",
            "FLOW",
            "DEPLOYMENT",
            "NAME",
            "STATE",
            "EXPECTED START",
        ],
        &rows,
    );
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
