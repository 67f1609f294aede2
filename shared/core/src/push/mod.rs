//! Push submission, as pure functions: a rendered job configuration becomes the AWS requests that
//! start one flow run (`ecs`, `batch`), and what AWS reports about that task or job becomes the
//! run's next state (`observe`). The adapter in `sluice-aws` makes the calls; the dispatcher in
//! `sluice-services` and the pull worker decide when.

pub mod batch;
pub mod ecs;
pub mod observe;

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::domain::{FlowRun, Id};

/// Tag (ECS) / tag key (Batch) carrying the flow run's id on every task and job Sluice starts.
pub const RUN_ID_TAG: &str = "sluice.io/flow-run-id";
/// Tag carrying the submission attempt (the id of the PENDING state that claimed the run), so a
/// resumed submission finds this attempt's task or job and not an earlier attempt's.
pub const ATTEMPT_TAG: &str = "sluice.io/attempt";
/// Tag on task and job definitions Sluice registers: the hash of the definition's content, so an
/// identical definition is found and reused instead of registering a revision per run.
pub const CONTENT_HASH_TAG: &str = "sluice.io/content-hash";
/// Prefect's command for a flow run in a container (`BaseJobConfiguration`).
pub const DEFAULT_COMMAND: &str = "prefect flow-run execute";
/// Image for registered definitions that name none.
pub const DEFAULT_IMAGE: &str = "prefecthq/prefect:3-latest";

/// A job configuration that cannot become a valid request; `path` says where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("job configuration {path}: {message}")]
pub struct PlanError {
    pub path: String,
    pub message: String,
}

pub(crate) fn plan_error(path: impl Into<String>, message: impl Into<String>) -> PlanError {
    PlanError {
        path: path.into(),
        message: message.into(),
    }
}

/// What the submission needs to know about the run besides its job configuration.
#[derive(Debug, Clone, Copy)]
pub struct RunFacts<'a> {
    pub run: &'a FlowRun,
    pub flow_name: Option<&'a str>,
    pub deployment: Option<(Id, &'a str)>,
    pub pool_name: &'a str,
    pub pool_id: Id,
    /// Variables every job gets below its own `env`, e.g. `PREFECT_API_URL`.
    pub base_env: &'a BTreeMap<String, String>,
    /// The submission attempt: the id of the PENDING state that claimed the run. A rerun of
    /// the same run is another attempt, with its own ECS client token.
    pub attempt: Id,
}

impl RunFacts<'_> {
    /// Deployment id, else flow id: what Prefect names per-deployment AWS objects after.
    pub(crate) fn owner_id(&self) -> Id {
        self.deployment.map_or(self.run.flow_id, |(id, _)| id)
    }
}

/// Prefect's `prepare_for_flow_run` on a finalised job configuration: the environment becomes
/// base variables < run attribution < the configuration's `env` (a null value removes a
/// variable); labels get the run, flow, deployment and pool below the configured ones; `name`
/// defaults to the run's name and `command` to Prefect's flow-run command.
#[must_use]
pub fn prepare_for_flow_run(config: &Value, facts: &RunFacts<'_>) -> Value {
    let mut out = config.as_object().cloned().unwrap_or_default();
    let run = facts.run;

    let mut env: Map<String, Value> = facts
        .base_env
        .iter()
        .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
        .collect();
    let mut attribution = vec![
        ("PREFECT__FLOW_RUN_ID", run.id.to_string()),
        ("PREFECT__FLOW_ID", run.flow_id.to_string()),
    ];
    if let Some(name) = facts.flow_name {
        attribution.push(("PREFECT__FLOW_NAME", name.to_owned()));
    }
    if let Some((id, name)) = facts.deployment {
        attribution.push(("PREFECT__DEPLOYMENT_ID", id.to_string()));
        attribution.push(("PREFECT__DEPLOYMENT_NAME", name.to_owned()));
    }
    for (k, v) in attribution {
        env.insert(k.to_owned(), Value::from(v));
    }
    if let Some(Value::Object(configured)) = out.get("env") {
        for (k, v) in configured {
            env.insert(k.clone(), v.clone());
        }
    }
    env.retain(|_, v| !v.is_null());
    out.insert("env".to_owned(), Value::Object(env));

    let mut labels = Map::new();
    let mut put = |k: &str, v: String| {
        labels.insert(k.to_owned(), Value::from(v));
    };
    put("prefect.io/flow-run-id", run.id.to_string());
    put("prefect.io/flow-run-name", run.name.clone());
    put("prefect.io/work-pool-name", facts.pool_name.to_owned());
    put("prefect.io/work-pool-id", facts.pool_id.to_string());
    put("prefect.io/flow-id", run.flow_id.to_string());
    if let Some(name) = facts.flow_name {
        put("prefect.io/flow-name", name.to_owned());
    }
    if let Some((id, name)) = facts.deployment {
        put("prefect.io/deployment-id", id.to_string());
        put("prefect.io/deployment-name", name.to_owned());
    }
    if let Some(Value::Object(configured)) = out.get("labels") {
        for (k, v) in configured {
            labels.insert(k.clone(), v.clone());
        }
    }
    labels.retain(|_, v| !v.is_null());
    out.insert("labels".to_owned(), Value::Object(labels));

    if non_empty_str(out.get("name")).is_none() {
        out.insert("name".to_owned(), Value::from(run.name.as_str()));
    }
    if non_empty_str(out.get("command")).is_none() {
        out.insert("command".to_owned(), Value::from(DEFAULT_COMMAND));
    }
    Value::Object(out)
}

/// SHA-256 (hex) of the value's canonical JSON: object keys sorted at every level, so two
/// definitions that differ only in key order hash alike.
#[must_use]
pub fn content_hash(value: &Value) -> String {
    let digest = Sha256::digest(canonical(value).to_string().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn canonical(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let sorted: BTreeMap<&String, Value> =
                map.iter().map(|(k, v)| (k, canonical(v))).collect();
            Value::Object(sorted.into_iter().map(|(k, v)| (k.clone(), v)).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

/// Removes nulls and empty strings at every level, then objects left empty by that: AWS rejects
/// an empty string where it wants a value, and an unset template variable leaves nothing to send.
/// Arrays are kept even when empty (`securityGroups: []` means "none", which is different from
/// leaving the key out for some APIs and emulators).
pub(crate) fn prune(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for v in map.values_mut() {
                prune(v);
            }
            map.retain(|_, v| match v {
                Value::Null => false,
                Value::String(s) => !s.is_empty(),
                Value::Object(m) => !m.is_empty(),
                _ => true,
            });
        }
        Value::Array(items) => {
            for v in items.iter_mut() {
                prune(v);
            }
            items.retain(|v| !v.is_null());
        }
        _ => {}
    }
}

pub(crate) fn non_empty_str(value: Option<&Value>) -> Option<&str> {
    value
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
}

/// A command string split as a POSIX shell would (Prefect uses `shlex.split`).
pub(crate) fn split_command(path: &str, command: &Value) -> Result<Option<Vec<Value>>, PlanError> {
    match command {
        Value::Null => Ok(None),
        Value::String(s) if s.trim().is_empty() => Ok(None),
        Value::String(s) => shlex::split(s)
            .map(|parts| Some(parts.into_iter().map(Value::from).collect()))
            .ok_or_else(|| plan_error(path, "the command has an unbalanced quote")),
        Value::Array(parts) => {
            if parts.iter().all(Value::is_string) {
                Ok(Some(parts.clone()))
            } else {
                Err(plan_error(path, "a command list must hold only strings"))
            }
        }
        _ => Err(plan_error(
            path,
            "a command is a string or a list of strings",
        )),
    }
}

/// `{"K": "v"}` → `[{"name": "K", "value": "v"}]`, nulls dropped, other scalars stringified.
pub(crate) fn env_list(path: &str, env: &Value) -> Result<Vec<Value>, PlanError> {
    match env {
        Value::Null => Ok(Vec::new()),
        Value::Object(map) => Ok(map
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| {
                let value = match v {
                    Value::String(s) => s.clone(),
                    other => crate::templating::python_str(other),
                };
                serde_json::json!({ "name": k, "value": value })
            })
            .collect()),
        Value::Array(items) => {
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let ok = item.get("name").is_some_and(Value::is_string);
                if !ok {
                    return Err(plan_error(
                        format!("{path}[{i}]"),
                        "an environment entry is {\"name\": ..., \"value\": ...}",
                    ));
                }
                if item.get("value").is_some_and(|v| !v.is_null()) {
                    out.push(item.clone());
                }
            }
            Ok(out)
        }
        _ => Err(plan_error(
            path,
            "the environment is an object of name → value",
        )),
    }
}

/// Replaces each character outside `allowed` with nothing, as Prefect's tag slugification does,
/// and cuts to `max` characters.
pub(crate) fn keep_chars(s: &str, allowed: impl Fn(char) -> bool, max: usize) -> String {
    s.chars().filter(|c| allowed(*c)).take(max).collect()
}

#[cfg(test)]
mod tests;
