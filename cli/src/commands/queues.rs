//! `sluice work-queue ...` (queues always live in a pool, so `--pool` is required).

use clap::Subcommand;
use serde_json::{Value, json};

use super::{Ctx, failed, field, print_json, print_table, show};

#[derive(Subcommand)]
pub enum WorkQueueCommand {
    /// Create a queue in a pool.
    Create {
        name: String,
        #[arg(long)]
        pool: String,
        #[arg(long)]
        priority: Option<i64>,
        #[arg(long)]
        concurrency_limit: Option<i64>,
    },
    /// List a pool's queues.
    Ls {
        #[arg(long)]
        pool: String,
    },
    Inspect {
        name: String,
        #[arg(long)]
        pool: String,
    },
    Pause {
        name: String,
        #[arg(long)]
        pool: String,
    },
    Resume {
        name: String,
        #[arg(long)]
        pool: String,
    },
    Delete {
        name: String,
        #[arg(long)]
        pool: String,
    },
}

fn queue(pool: &str, name: &str) -> String {
    format!("work queue {name:?} in work pool {pool:?}")
}

pub async fn run(ctx: &Ctx, command: WorkQueueCommand) -> anyhow::Result<()> {
    let c = &ctx.client;
    match command {
        WorkQueueCommand::Create {
            name,
            pool,
            priority,
            concurrency_limit,
        } => {
            let mut body = json!({ "name": name });
            if let Some(p) = priority {
                body["priority"] = json!(p);
            }
            if let Some(l) = concurrency_limit {
                body["concurrency_limit"] = json!(l);
            }
            let created = c
                .create_work_queue(&pool, &body)
                .await
                .map_err(failed(format!("creating {}", queue(&pool, &name))))?;
            if ctx.json {
                print_json(&created)?;
            } else {
                println!("Created work queue {name:?} in work pool {pool:?}.");
            }
        }
        WorkQueueCommand::Ls { pool } => {
            let queues = c
                .list_work_queues(&pool)
                .await
                .map_err(failed(format!("work pool {pool:?}")))?;
            if ctx.json {
                return print_json(&Value::Array(queues));
            }
            let rows: Vec<Vec<String>> = queues
                .iter()
                .map(|q| {
                    vec![
                        field(q, "name"),
                        field(q, "priority"),
                        field(q, "concurrency_limit"),
                        field(q, "is_paused"),
                        field(q, "status"),
                        field(q, "id"),
                    ]
                })
                .collect();
            print_table(
                &["NAME", "PRIORITY", "CONCURRENCY", "PAUSED", "STATUS", "ID"],
                &rows,
            );
        }
        WorkQueueCommand::Inspect { name, pool } => {
            let q = c
                .work_queue(&pool, &name)
                .await
                .map_err(failed(queue(&pool, &name)))?;
            show(ctx, &q)?;
        }
        WorkQueueCommand::Pause { name, pool } => {
            set_paused(ctx, &pool, &name, true).await?;
        }
        WorkQueueCommand::Resume { name, pool } => {
            set_paused(ctx, &pool, &name, false).await?;
        }
        WorkQueueCommand::Delete { name, pool } => {
            c.delete_work_queue(&pool, &name)
                .await
                .map_err(failed(queue(&pool, &name)))?;
            if !ctx.json {
                println!("Deleted work queue {name:?} in work pool {pool:?}.");
            }
        }
    }
    Ok(())
}

async fn set_paused(ctx: &Ctx, pool: &str, name: &str, paused: bool) -> anyhow::Result<()> {
    ctx.client
        .update_work_queue(pool, name, &json!({ "is_paused": paused }))
        .await
        .map_err(failed(queue(pool, name)))?;
    if ctx.json {
        let q = ctx
            .client
            .work_queue(pool, name)
            .await
            .map_err(failed(queue(pool, name)))?;
        print_json(&q)
    } else {
        let verb = if paused { "Paused" } else { "Resumed" };
        println!("{verb} work queue {name:?} in work pool {pool:?}.");
        Ok(())
    }
}
