//! `sluice work-pool ...`

use std::path::PathBuf;

use clap::Subcommand;
use serde_json::{Value, json};

use super::{Ctx, failed, field, print_json, print_table, read_json_file, show};

#[derive(Subcommand)]
pub enum WorkPoolCommand {
    /// Create a work pool (without a template it gets its type's default).
    Create {
        name: String,
        #[arg(long = "type")]
        pool_type: String,
        /// A base job template JSON file.
        #[arg(long)]
        base_job_template: Option<PathBuf>,
        #[arg(long)]
        paused: bool,
        #[arg(long)]
        concurrency_limit: Option<i64>,
    },
    /// List work pools.
    Ls,
    /// Show one work pool.
    Inspect {
        name: String,
    },
    /// Change a work pool's template, concurrency limit or description.
    Update {
        name: String,
        #[arg(long)]
        base_job_template: Option<PathBuf>,
        #[arg(long)]
        concurrency_limit: Option<i64>,
        #[arg(long)]
        description: Option<String>,
    },
    /// Stop workers from picking up the pool's runs.
    Pause {
        name: String,
    },
    Resume {
        name: String,
    },
    Delete {
        name: String,
    },
    /// Print a pool type's default base job template.
    GetDefaultBaseJobTemplate {
        #[arg(long = "type")]
        pool_type: String,
    },
    /// The pool's runs scheduled within the next --hours.
    Preview {
        name: String,
        #[arg(long, default_value_t = 1)]
        hours: u32,
    },
}

fn pool(name: &str) -> String {
    format!("work pool {name:?}")
}

fn warn_about(created: &Value) {
    // Sluice reports declared-but-unused template variables; a human should see them.
    if let Some(warnings) = created.get("warnings").and_then(Value::as_array) {
        for w in warnings.iter().filter_map(Value::as_str) {
            eprintln!("warning: {w}");
        }
    }
}

pub async fn run(ctx: &Ctx, command: WorkPoolCommand) -> anyhow::Result<()> {
    let c = &ctx.client;
    match command {
        WorkPoolCommand::Create {
            name,
            pool_type,
            base_job_template,
            paused,
            concurrency_limit,
        } => {
            let mut body = json!({ "name": name, "type": pool_type, "is_paused": paused });
            if let Some(path) = base_job_template {
                body["base_job_template"] = read_json_file(&path)?;
            }
            if let Some(limit) = concurrency_limit {
                body["concurrency_limit"] = json!(limit);
            }
            let created = c
                .create_pool(&body)
                .await
                .map_err(failed(format!("creating {}", pool(&name))))?;
            warn_about(&created);
            if ctx.json {
                print_json(&created)?;
            } else {
                println!("Created work pool {name:?} of type {pool_type:?}.");
            }
        }
        WorkPoolCommand::Ls => {
            let pools = c
                .list_work_pools()
                .await
                .map_err(failed("listing work pools"))?;
            if ctx.json {
                return print_json(&Value::Array(pools));
            }
            let rows: Vec<Vec<String>> = pools
                .iter()
                .map(|p| {
                    vec![
                        field(p, "name"),
                        field(p, "type"),
                        field(p, "id"),
                        field(p, "concurrency_limit"),
                        field(p, "is_paused"),
                        field(p, "status"),
                    ]
                })
                .collect();
            print_table(
                &["NAME", "TYPE", "ID", "CONCURRENCY", "PAUSED", "STATUS"],
                &rows,
            );
        }
        WorkPoolCommand::Inspect { name } => {
            let p = c.work_pool(&name).await.map_err(failed(pool(&name)))?;
            show(ctx, &p)?;
        }
        WorkPoolCommand::Update {
            name,
            base_job_template,
            concurrency_limit,
            description,
        } => {
            let mut body = json!({});
            if let Some(path) = base_job_template {
                body["base_job_template"] = read_json_file(&path)?;
            }
            if let Some(limit) = concurrency_limit {
                body["concurrency_limit"] = json!(limit);
            }
            if let Some(d) = description {
                body["description"] = json!(d);
            }
            if body.as_object().is_some_and(serde_json::Map::is_empty) {
                anyhow::bail!(
                    "nothing to update: give --base-job-template, --concurrency-limit or --description"
                );
            }
            change(ctx, &name, &body, "Updated").await?;
        }
        WorkPoolCommand::Pause { name } => {
            change(ctx, &name, &json!({ "is_paused": true }), "Paused").await?;
        }
        WorkPoolCommand::Resume { name } => {
            change(ctx, &name, &json!({ "is_paused": false }), "Resumed").await?;
        }
        WorkPoolCommand::Delete { name } => {
            c.delete_work_pool(&name)
                .await
                .map_err(failed(pool(&name)))?;
            if !ctx.json {
                println!("Deleted work pool {name:?}.");
            }
        }
        WorkPoolCommand::GetDefaultBaseJobTemplate { pool_type } => {
            let metadata = c
                .worker_metadata()
                .await
                .map_err(failed("reading the worker metadata"))?;
            let entry = metadata
                .as_object()
                .into_iter()
                .flat_map(|collections| collections.values())
                .filter_map(Value::as_object)
                .flat_map(|workers| workers.values())
                .find(|w| w.get("type").and_then(Value::as_str) == Some(pool_type.as_str()))
                .ok_or_else(|| anyhow::anyhow!("work pool type {pool_type:?} is not known"))?;
            let template = entry
                .get("default_base_job_configuration")
                .cloned()
                .unwrap_or(Value::Null);
            // A template is JSON by nature; both output modes print it as JSON.
            print_json(&template)?;
        }
        WorkPoolCommand::Preview { name, hours } => {
            let before = chrono::Utc::now() + chrono::Duration::hours(i64::from(hours));
            let runs = c
                .pool_scheduled_runs(&name, &before.to_rfc3339())
                .await
                .map_err(failed(pool(&name)))?;
            if ctx.json {
                return print_json(&Value::Array(runs));
            }
            let rows: Vec<Vec<String>> = runs
                .iter()
                .map(|item| {
                    let run = item.get("flow_run").unwrap_or(&Value::Null);
                    vec![
                        field(run, "next_scheduled_start_time"),
                        field(run, "id"),
                        field(run, "name"),
                        field(run, "deployment_id"),
                        field(item, "work_queue_id"),
                    ]
                })
                .collect();
            print_table(
                &[
                    "SCHEDULED START",
                    "RUN ID",
                    "NAME",
                    "DEPLOYMENT ID",
                    "QUEUE ID",
                ],
                &rows,
            );
        }
    }
    Ok(())
}

/// PATCH the pool, then show what it became (json) or say what happened (table).
async fn change(ctx: &Ctx, name: &str, body: &Value, verb: &str) -> anyhow::Result<()> {
    ctx.client
        .update_work_pool(name, body)
        .await
        .map_err(failed(pool(name)))?;
    if ctx.json {
        let p = ctx
            .client
            .work_pool(name)
            .await
            .map_err(failed(pool(name)))?;
        print_json(&p)
    } else {
        println!("{verb} work pool {name:?}.");
        Ok(())
    }
}
