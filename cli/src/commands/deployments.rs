//! `sluice deployment ...`; deployments are named `FLOW/DEPLOYMENT` as in Prefect.

use std::collections::HashMap;
use std::time::Duration;

use clap::Subcommand;
use serde_json::{Value, json};

use super::{Ctx, failed, field, is_terminal, key_values, print_json, print_table, show};

#[derive(Subcommand)]
pub enum DeploymentCommand {
    /// List deployments.
    Ls,
    /// Show one deployment.
    Inspect {
        name: String,
    },
    /// Create a flow run of a deployment.
    Run {
        /// FLOW/DEPLOYMENT
        name: String,
        /// A parameter as KEY=VALUE (VALUE is JSON when it parses, else a string); repeatable.
        #[arg(long = "param")]
        params: Vec<String>,
        /// All parameters as one JSON object (--param entries win over it).
        #[arg(long = "params")]
        params_json: Option<String>,
        /// A job variable as KEY=VALUE (VALUE is JSON when it parses, else a string); repeatable.
        #[arg(long = "job-variable")]
        job_variables: Vec<String>,
        /// Wait for the run to finish: exit 0 if it COMPLETED, 1 otherwise.
        #[arg(long)]
        watch: bool,
    },
    /// Stop scheduling new runs.
    Pause {
        name: String,
    },
    Resume {
        name: String,
    },
    Delete {
        name: String,
    },
}

fn deployment(name: &str) -> String {
    format!("deployment {name:?}")
}

/// Looks a `FLOW/DEPLOYMENT` name up.
async fn find(ctx: &Ctx, name: &str) -> anyhow::Result<Value> {
    let Some((flow, dep)) = name.split_once('/') else {
        anyhow::bail!("deployment {name:?} must be given as FLOW/DEPLOYMENT");
    };
    ctx.client
        .deployment_by_name(flow, dep)
        .await
        .map_err(failed(deployment(name)))
}

fn id_of(d: &Value) -> anyhow::Result<String> {
    d.get("id")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("the server answered a deployment without an id"))
}

pub async fn run(ctx: &Ctx, command: DeploymentCommand) -> anyhow::Result<()> {
    let c = &ctx.client;
    match command {
        DeploymentCommand::Ls => {
            let deployments = c
                .list_deployments(&json!({}))
                .await
                .map_err(failed("listing deployments"))?;
            if ctx.json {
                return print_json(&Value::Array(deployments));
            }
            // Deployments carry flow ids; people know flows by name.
            let flows: HashMap<String, String> = c
                .list_flows(&json!({}))
                .await
                .map_err(failed("listing flows"))?
                .iter()
                .map(|f| (field(f, "id"), field(f, "name")))
                .collect();
            let mut rows: Vec<Vec<String>> = deployments
                .iter()
                .map(|d| {
                    let flow = flows
                        .get(&field(d, "flow_id"))
                        .cloned()
                        .unwrap_or_else(|| field(d, "flow_id"));
                    vec![
                        format!("{flow}/{}", field(d, "name")),
                        field(d, "id"),
                        field(d, "work_pool_name"),
                        field(d, "paused"),
                    ]
                })
                .collect();
            rows.sort();
            print_table(&["NAME", "ID", "WORK POOL", "PAUSED"], &rows);
        }
        DeploymentCommand::Inspect { name } => {
            let d = find(ctx, &name).await?;
            show(ctx, &d)?;
        }
        DeploymentCommand::Run {
            name,
            params,
            params_json,
            job_variables,
            watch,
        } => {
            let mut parameters = match params_json {
                None => serde_json::Map::new(),
                Some(text) => match serde_json::from_str(&text) {
                    Ok(Value::Object(m)) => m,
                    Ok(_) => anyhow::bail!("--params must be a JSON object"),
                    Err(e) => anyhow::bail!("--params is not valid JSON: {e}"),
                },
            };
            parameters.extend(key_values("--param", &params)?);
            let job_variables = key_values("--job-variable", &job_variables)?;
            let d = find(ctx, &name).await?;
            let id = id_of(&d)?;
            let body = json!({
                "parameters": parameters,
                "job_variables": job_variables,
                "state": {"type": "SCHEDULED"},
            });
            let run = c
                .create_deployment_run(&id, &body)
                .await
                .map_err(failed(format!("creating a run of {}", deployment(&name))))?;
            if ctx.json {
                print_json(&run)?;
            } else {
                println!(
                    "Created flow run {} ({}) of deployment {name:?}.",
                    field(&run, "name"),
                    field(&run, "id")
                );
            }
            if watch {
                return watch_run(ctx, &field(&run, "id")).await;
            }
        }
        DeploymentCommand::Pause { name } => {
            let id = id_of(&find(ctx, &name).await?)?;
            c.pause_deployment(&id)
                .await
                .map_err(failed(deployment(&name)))?;
            if !ctx.json {
                println!("Paused deployment {name:?}.");
            }
        }
        DeploymentCommand::Resume { name } => {
            let id = id_of(&find(ctx, &name).await?)?;
            c.resume_deployment(&id)
                .await
                .map_err(failed(deployment(&name)))?;
            if !ctx.json {
                println!("Resumed deployment {name:?}.");
            }
        }
        DeploymentCommand::Delete { name } => {
            let id = id_of(&find(ctx, &name).await?)?;
            c.delete_deployment(&id)
                .await
                .map_err(failed(deployment(&name)))?;
            if !ctx.json {
                println!("Deleted deployment {name:?}.");
            }
        }
    }
    Ok(())
}

/// How long a run may wait for its worker before the watcher looks at the pool.
const WAITING_BEFORE_CHECK: Duration = Duration::from_secs(5);

/// Why a waiting run of this pull pool may never start, if the pool says: paused, or no worker
/// online (none has polled it recently). `None` for push pools, which need no worker.
async fn why_not_started(ctx: &Ctx, pool_name: &str) -> Option<String> {
    let pool = ctx.client.work_pool(pool_name).await.ok()?;
    if field(&pool, "type").ends_with(":push") {
        return None;
    }
    if pool.get("is_paused").and_then(Value::as_bool) == Some(true) {
        return Some(format!(
            "work pool {pool_name:?} is paused: its runs wait until `sluice work-pool resume {pool_name}`"
        ));
    }
    let workers = ctx.client.list_workers(pool_name).await.ok()?;
    let online = workers.iter().any(|w| field(w, "status") == "ONLINE");
    (!online).then(|| {
        format!(
            "no worker has polled work pool {pool_name:?} recently: start one with \
             `sluice worker start --pool {pool_name}`"
        )
    })
}

/// Polls the run every second until it is terminal; an error (exit 1) unless it COMPLETED.
/// The final state's message is printed either way.
async fn watch_run(ctx: &Ctx, id: &str) -> anyhow::Result<()> {
    let mut last = String::new();
    let started = std::time::Instant::now();
    let mut pool_checked = false;
    loop {
        let run = ctx
            .client
            .flow_run(id)
            .await
            .map_err(failed(format!("flow run {id}")))?;
        let state_type = field(&run, "state_type");
        let state_name = field(&run, "state_name");
        if state_name != last {
            // Progress goes to stderr so `--output json` stdout stays parseable.
            eprintln!("flow run {id}: {state_name}");
            last = state_name;
        }
        if is_terminal(&state_type) {
            let message = run
                .get("state")
                .and_then(|s| s.get("message"))
                .and_then(Value::as_str)
                .filter(|m| !m.is_empty());
            if state_type == "COMPLETED" {
                if let Some(message) = message {
                    eprintln!("flow run {id}: {message}");
                }
                return Ok(());
            }
            match message {
                Some(message) => anyhow::bail!("flow run {id} ended {last}: {message}"),
                None => anyhow::bail!("flow run {id} ended {last}"),
            }
        }
        if !pool_checked && state_type == "SCHEDULED" && started.elapsed() >= WAITING_BEFORE_CHECK {
            pool_checked = true;
            let pool = field(&run, "work_pool_name");
            if pool != "-"
                && let Some(why) = why_not_started(ctx, &pool).await
            {
                eprintln!("warning: flow run {id} is waiting: {why}");
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
