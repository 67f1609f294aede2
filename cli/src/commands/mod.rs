//! Resource verbs (`work-pool`, `work-queue`, `worker`, `deployment`, `flow-run`, `variable`):
//! each talks to the API through `sluice_client`, prints a table or the API's JSON, and turns
//! failures into one line naming what failed (main prints it as `error: ...`, exit code 1).
//! `api-key` is the exception: it acts on the store (see its module).

pub mod api_keys;
pub mod deploy;
pub mod deployments;
pub mod flow_runs;
pub mod import;
pub mod migrate;
pub mod pools;
pub mod queues;
pub mod serve;
pub mod ui;
pub mod variables;
pub mod worker;
pub mod workers;

use std::fmt::Display;

use clap::{Args, ValueEnum};
use serde_json::Value;
use sluice_client::{Client, ClientError};

const DEFAULT_API_URL: &str = "http://127.0.0.1:4200/api";

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

/// Connection and output options shared by every resource verb (global within each group, so
/// they go anywhere after the group name).
#[derive(Args, Clone)]
pub struct ApiArgs {
    /// The API base URL. Default: $SLUICE_API_URL, else $PREFECT_API_URL, else
    /// http://127.0.0.1:4200/api.
    #[arg(long, global = true, env = "SLUICE_API_URL")]
    pub api_url: Option<String>,
    /// Sent as `Authorization: Bearer KEY`. Default: $SLUICE_API_KEY, else $PREFECT_API_KEY.
    #[arg(long, global = true, env = "SLUICE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Human-readable table, or the API's JSON exactly.
    #[arg(long, global = true, value_enum, default_value = "table")]
    pub output: Output,
}

impl ApiArgs {
    /// The URL to talk to: the flag / $SLUICE_API_URL, then Prefect's own variable so an
    /// environment already pointed at Sluice for Prefect's CLI works unchanged.
    pub fn url(&self) -> String {
        self.api_url
            .clone()
            .or_else(|| std::env::var("PREFECT_API_URL").ok())
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| DEFAULT_API_URL.to_owned())
    }

    /// Fills what the flags and `SLUICE_*` variables left unset from Prefect's own variables
    /// (`PREFECT_API_KEY`), as [`ApiArgs::url`] does for the URL, so an environment set up for
    /// Prefect's CLI works unchanged. Applied once, before any verb reads `api_key`.
    pub fn apply_prefect_fallbacks(&mut self) {
        if self.api_key.as_deref().is_none_or(str::is_empty) {
            self.api_key = std::env::var("PREFECT_API_KEY")
                .ok()
                .filter(|k| !k.is_empty());
        }
    }

    pub fn context(&self) -> anyhow::Result<Ctx> {
        let client = Client::with_api_key(&self.url(), self.api_key.as_deref())
            .map_err(anyhow::Error::msg)?;
        Ok(Ctx {
            client,
            json: self.output == Output::Json,
        })
    }
}

/// What every verb needs: the client and whether to print JSON.
pub struct Ctx {
    pub client: Client,
    pub json: bool,
}

/// Turns a client error into the one-line message scripts and people see: a 404 becomes
/// `WHAT not found`, anything else names WHAT and the server's own explanation.
pub fn failed(what: impl Display) -> impl FnOnce(ClientError) -> anyhow::Error {
    move |e| {
        if e.is_not_found() {
            anyhow::anyhow!("{what} not found")
        } else if let (Some(401), Some(detail)) = (e.status(), e.detail()) {
            anyhow::anyhow!(
                "{what}: the server refused the request (401): {detail} \
                 (pass --api-key or set SLUICE_API_KEY)"
            )
        } else if let (Some(status), Some(detail)) = (e.status(), e.detail()) {
            anyhow::anyhow!("{what}: the server answered {status}: {detail}")
        } else {
            anyhow::anyhow!("{what}: {e}")
        }
    }
}

pub fn print_json(value: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A field as table text: strings bare, null as `-`, anything else as compact JSON.
pub fn text(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "-".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

pub fn field(item: &Value, key: &str) -> String {
    text(item.get(key))
}

/// Left-aligned columns padded to the widest cell, two spaces apart.
pub fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut out = String::new();
        for (i, cell) in cells.enumerate() {
            if i > 0 {
                out.push_str("  ");
            }
            out.push_str(cell);
            if i + 1 < widths.len() {
                let pad = widths[i].saturating_sub(cell.chars().count());
                out.push_str(&" ".repeat(pad));
            }
        }
        println!("{}", out.trim_end());
    };
    line(&mut headers.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
}

/// An object's top-level fields as `key  value` lines (the table form of `inspect`).
pub fn print_fields(value: &Value) {
    let Some(map) = value.as_object() else {
        println!("{}", text(Some(value)));
        return;
    };
    let rows: Vec<Vec<String>> = map
        .iter()
        .map(|(k, v)| vec![k.clone(), text(Some(v))])
        .collect();
    print_table(&["FIELD", "VALUE"], &rows);
}

/// Either the JSON or the table form of an object.
pub fn show(ctx: &Ctx, value: &Value) -> anyhow::Result<()> {
    if ctx.json {
        print_json(value)
    } else {
        print_fields(value);
        Ok(())
    }
}

/// A command-line value: JSON when it parses as JSON, else the literal string (Prefect's rule
/// for `--param` and `variable set`, so `3` is a number and `hello` needs no quotes).
pub fn loose_json(raw: &str) -> Value {
    serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_owned()))
}

/// `k=v` pairs into a JSON object, values by [`loose_json`].
pub fn key_values(flag: &str, pairs: &[String]) -> anyhow::Result<serde_json::Map<String, Value>> {
    let mut out = serde_json::Map::new();
    for pair in pairs {
        let Some((k, v)) = pair.split_once('=') else {
            anyhow::bail!("{flag} {pair:?} is not KEY=VALUE");
        };
        out.insert(k.to_owned(), loose_json(v));
    }
    Ok(out)
}

/// Reads a JSON file given on the command line.
pub fn read_json_file(path: &std::path::Path) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{} is not valid JSON: {e}", path.display()))
}

/// Prefect's terminal state types: a run in one of them will not change again on its own.
pub fn is_terminal(state_type: &str) -> bool {
    matches!(state_type, "COMPLETED" | "FAILED" | "CANCELLED" | "CRASHED")
}
