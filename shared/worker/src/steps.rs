//! A deployment's pull steps, run by the worker before it launches the job (§4.3).
//!
//! Prefect runs them inside the flow-run process; a `process` job here is an arbitrary shell
//! command, so the worker runs them and launches the command in the directory they leave.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use sluice_core::templating::{self, ApplyOptions, TemplateData};

const SET_WORKING_DIRECTORY: &str = "prefect.deployments.steps.set_working_directory";
const GIT_CLONE: &str = "prefect.deployments.steps.git_clone";
const RUN_SHELL_SCRIPT: &str = "prefect.deployments.steps.run_shell_script";

/// Runs `steps` starting in `cwd`; returns the directory the job should start in.
///
/// # Errors
/// A malformed or unknown step, or one that fails; the message names the step.
pub async fn run_pull_steps(
    steps: &[Value],
    cwd: &Path,
    env: &BTreeMap<String, String>,
    data: &(dyn TemplateData + Sync),
) -> Result<PathBuf, String> {
    let mut cwd = cwd.to_path_buf();
    // Outputs so far: under each step's `id` and flattened, as Prefect stores them.
    let mut upstream = Map::new();
    for (index, step) in steps.iter().enumerate() {
        let (name, inputs) = match step.as_object() {
            Some(map) if map.len() == 1 => map
                .iter()
                .next()
                .map(|(k, v)| (k.clone(), v.clone()))
                .ok_or_else(|| format!("pull step {index} is empty"))?,
            _ => return Err(format!("pull step {index} must be a mapping with one key")),
        };
        let mut inputs = match inputs {
            Value::Object(map) => map,
            Value::Null => Map::new(),
            _ => return Err(format!("pull step {name}: its inputs must be a mapping")),
        };
        let id = inputs
            .shift_remove("id")
            .and_then(|v| v.as_str().map(str::to_owned));
        inputs.shift_remove("requires");
        // Step outputs, then blocks, then variables, then `{{ $ENV }}`: Prefect's order.
        let with_outputs =
            templating::apply_values(&Value::Object(inputs), &upstream, &ApplyOptions::default());
        let with_blocks = templating::resolve_block_document_references(&with_outputs, data)
            .map_err(|e| format!("pull step {name}: {e}"))?;
        let with_variables = templating::resolve_variables(&with_blocks, data);
        let inputs =
            templating::apply_values(&with_variables, &Map::new(), &ApplyOptions::with_env(env));
        let output = run_step(&name, &inputs, &mut cwd, env)
            .await
            .map_err(|e| format!("pull step {name} failed: {e}"))?;
        if let Value::Object(out) = output {
            if let Some(id) = id {
                upstream.insert(id, Value::Object(out.clone()));
            }
            upstream.extend(out);
        }
    }
    Ok(cwd)
}

fn input_str<'a>(inputs: &'a Value, key: &str) -> Option<&'a str> {
    inputs.get(key).and_then(Value::as_str)
}

async fn run_step(
    name: &str,
    inputs: &Value,
    cwd: &mut PathBuf,
    env: &BTreeMap<String, String>,
) -> Result<Value, String> {
    match name {
        SET_WORKING_DIRECTORY => {
            let dir = input_str(inputs, "directory").ok_or("`directory` is required")?;
            let target = cwd.join(dir);
            let target =
                std::fs::canonicalize(&target).map_err(|e| format!("{}: {e}", target.display()))?;
            if !target.is_dir() {
                return Err(format!("{} is not a directory", target.display()));
            }
            *cwd = target.clone();
            Ok(serde_json::json!({ "directory": target.to_string_lossy() }))
        }
        GIT_CLONE => git_clone(inputs, cwd).await,
        RUN_SHELL_SCRIPT => run_shell_script(inputs, cwd, env).await,
        other => Err(format!(
            "unknown step `{other}`; this worker runs {SET_WORKING_DIRECTORY}, {GIT_CLONE} and {RUN_SHELL_SCRIPT}"
        )),
    }
}

async fn git_clone(inputs: &Value, cwd: &mut PathBuf) -> Result<Value, String> {
    let repository = input_str(inputs, "repository").ok_or("`repository` is required")?;
    let dir_name = match input_str(inputs, "clone_directory_name") {
        Some(name) => name.to_owned(),
        None => {
            // Prefect's default: the repository's last path segment without `.git`, plus the branch.
            let base = repository
                .trim_end_matches('/')
                .rsplit('/')
                .next()
                .unwrap_or("repository")
                .trim_end_matches(".git")
                .to_owned();
            match input_str(inputs, "branch") {
                Some(branch) => format!("{base}-{branch}"),
                None => base,
            }
        }
    };
    let mut cmd = tokio::process::Command::new("git");
    cmd.arg("clone").arg("--depth").arg("1");
    if let Some(branch) = input_str(inputs, "branch") {
        cmd.arg("--branch").arg(branch);
    }
    cmd.arg(repository).arg(&dir_name).current_dir(&*cwd);
    let out = cmd
        .output()
        .await
        .map_err(|e| format!("cannot run git: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "git clone {repository} exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    // Prefect's output is relative; the directory itself is not entered (a later
    // set_working_directory does that).
    Ok(serde_json::json!({ "directory": dir_name }))
}

async fn run_shell_script(
    inputs: &Value,
    cwd: &Path,
    env: &BTreeMap<String, String>,
) -> Result<Value, String> {
    let script = input_str(inputs, "script").ok_or("`script` is required")?;
    let dir = match input_str(inputs, "directory") {
        Some(d) => cwd.join(d),
        None => cwd.to_path_buf(),
    };
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c").arg(script).current_dir(&dir).envs(env);
    if let Some(Value::Object(extra)) = inputs.get("env") {
        for (k, v) in extra {
            match v {
                Value::String(s) => cmd.env(k, s),
                other => cmd.env(k, templating::python_str(other)),
            };
        }
    }
    let out = cmd
        .output()
        .await
        .map_err(|e| format!("cannot run the script: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    if !out.status.success() {
        return Err(format!("script exited with {}: {stderr}", out.status));
    }
    Ok(serde_json::json!({ "stdout": stdout, "stderr": stderr }))
}
