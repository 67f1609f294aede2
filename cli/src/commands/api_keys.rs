//! `sluice api-key ...`: keys for a server started with `--auth api-key`.
//!
//! Unlike the other verbs these act on the store directly, not through the API: the first key
//! has to be made before any key exists to authenticate with, and whoever can open the store
//! holds every key's power anyway.

use std::sync::Arc;

use clap::Subcommand;
use serde_json::{Value, json};
use sluice_core::domain::ApiKey;
use sluice_services::{Services, Settings, SystemClock};

use super::{Output, print_json, print_table};
use crate::store::{Backend, StoreArgs};

#[derive(Subcommand)]
pub enum ApiKeyCommand {
    /// Make a key; its secret is printed once (on stdout, alone, so `KEY=$(...)` works).
    Create { name: String },
    /// List keys (names and the secrets' first characters; secrets are not kept).
    Ls,
    /// Delete a key by name (or id). A running server may accept it for up to a minute more.
    Delete { name: String },
}

/// A key as the CLI shows it: never the hash, which is of no use to anyone but the store.
fn key_json(key: &ApiKey) -> Value {
    json!({
        "id": key.id.to_string(),
        "name": key.name,
        "prefix": key.prefix,
        "created": sluice_core::time::format_timestamp(key.created),
    })
}

pub async fn run(store: &StoreArgs, output: Output, command: ApiKeyCommand) -> anyhow::Result<()> {
    // The first key may come before the first server start, so `create` may make the local
    // database; nothing else here makes a store, and no verb makes a DynamoDB table (that is
    // the stack's, and a new empty one behind a mistyped name would hide every key).
    let opened = match (&command, store.backend) {
        (ApiKeyCommand::Create { .. }, Backend::Sqlite) => store.open().await?,
        _ => store.open_existing().await?,
    };
    let services = Services::new(opened, Arc::new(SystemClock), Settings::default());
    let json = output == Output::Json;
    match command {
        ApiKeyCommand::Create { name } => {
            let made = services
                .create_api_key(&name)
                .await
                .map_err(|e| anyhow::anyhow!("creating API key {name:?}: {e}"))?;
            if json {
                let mut v = key_json(&made.key);
                v["key"] = Value::String(made.secret.clone());
                print_json(&v)?;
            } else {
                println!("{}", made.secret);
            }
            eprintln!(
                "Created API key {name:?} ({}...). Copy the key now: it will not be shown again.",
                made.key.prefix
            );
        }
        ApiKeyCommand::Ls => {
            let keys = services
                .list_api_keys()
                .await
                .map_err(|e| anyhow::anyhow!("listing API keys: {e}"))?;
            if json {
                return print_json(&Value::Array(keys.iter().map(key_json).collect()));
            }
            let rows: Vec<Vec<String>> = keys
                .iter()
                .map(|k| {
                    vec![
                        k.name.clone(),
                        format!("{}...", k.prefix),
                        sluice_core::time::format_timestamp(k.created),
                        k.id.to_string(),
                    ]
                })
                .collect();
            print_table(&["NAME", "PREFIX", "CREATED", "ID"], &rows);
        }
        ApiKeyCommand::Delete { name } => {
            let key = services.delete_api_key(&name).await.map_err(|e| match e {
                sluice_services::ServiceError::NotFound(_) => {
                    anyhow::anyhow!("API key {name:?} not found")
                }
                other => anyhow::anyhow!("deleting API key {name:?}: {other}"),
            })?;
            if json {
                print_json(&key_json(&key))?;
            } else {
                println!("Deleted API key {:?}.", key.name);
            }
        }
    }
    Ok(())
}
