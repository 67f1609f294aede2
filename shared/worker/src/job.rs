//! One flow run's life in the worker: claim, render, pull steps, launch, watch, report.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use sluice_client::Client;
use sluice_core::job_config::{
    DataReferences, build_job_configuration, data_references, finalize_base_fields,
    merge_deployment_and_run_variables,
};
use sluice_core::templating::{find_block_references, find_variable_references};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, watch};

use crate::exit;
use crate::steps::run_pull_steps;

/// What the worker's loop tells a running job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Control {
    Run,
    /// The run was found CANCELLING (or CANCELLED): kill it and report CANCELLED.
    Cancel,
    /// The worker is shutting down and its grace period is over: kill it, report CRASHED.
    Shutdown,
}

/// How a job ended, for the worker's report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Another worker claimed it, or the server would not let this worker have it.
    Skipped,
    Completed,
    Failed,
    Crashed,
    Cancelled,
    KilledOnShutdown,
    /// The worker stopped while the run's remote task or job was still going; it goes on.
    Detached,
}

impl Outcome {
    /// For log lines.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Outcome::Skipped => "skipped",
            Outcome::Completed => "completed",
            Outcome::Failed => "failed",
            Outcome::Crashed => "crashed",
            Outcome::Cancelled => "cancelled",
            Outcome::KilledOnShutdown => "killed on shutdown",
            Outcome::Detached => "left running",
        }
    }
}

/// What every job of one worker shares.
pub(crate) struct JobContext {
    pub client: Client,
    pub api_url: String,
    pub api_key: Option<String>,
    pub pool: String,
    pub worker_name: String,
    pub grace: Duration,
    /// Set for the runner (`sluice serve`): every run executes this command, with no work
    /// pool, job template or pull steps involved.
    pub local: Option<LocalJob>,
    /// Set for `ecs` and `batch` workers: runs go to AWS instead of a local process.
    pub container: Option<crate::container::ContainerJob>,
}

/// The runner's one job definition (`sluice serve --command`).
pub(crate) struct LocalJob {
    pub command: String,
    /// Added over the process environment and the Prefect/Sluice variables.
    pub env: BTreeMap<String, String>,
    /// `None`: a fresh temporary directory per run.
    pub working_dir: Option<PathBuf>,
}

const LOGGER_NAME: &str = "sluice.worker.process";
const LOG_BATCH_LINES: usize = 50;
const LOG_FLUSH_EVERY: Duration = Duration::from_secs(1);
/// After the grace period the worker already waited during shutdown, a short one for SIGTERM.
const SHUTDOWN_KILL_GRACE: Duration = Duration::from_secs(2);

fn state(state_type: &str, name: &str, message: Option<&str>) -> Value {
    let mut s = json!({ "type": state_type, "name": name });
    if let Some(m) = message {
        s["message"] = Value::from(m);
    }
    s
}

fn state_type_of(run: &Value) -> Option<&str> {
    run.get("state")?.get("type")?.as_str()
}

/// Runs one flow run from claim to final state.
pub(crate) async fn execute(
    ctx: Arc<JobContext>,
    run: Value,
    mut control: watch::Receiver<Control>,
) -> Outcome {
    let Some(id) = run.get("id").and_then(Value::as_str).map(str::to_owned) else {
        return Outcome::Skipped;
    };
    let client = &ctx.client;

    // The claim: the server accepts exactly one PENDING proposal per run. Its state's id names
    // this attempt (container jobs tag their task with it).
    let claim_state_id = match client
        .claim_flow_run(&id, &state("PENDING", "Pending", None))
        .await
    {
        Ok(r) if r.accepted() && r.state_type() == Some("PENDING") => r
            .state
            .as_ref()
            .and_then(|s| s.get("id"))
            .and_then(Value::as_str)
            .and_then(|id| sluice_core::domain::Id::parse_str(id).ok()),
        Ok(r) => {
            tracing::debug!(run = %id, status = %r.status, "claim not granted; skipping");
            return Outcome::Skipped;
        }
        Err(e) => {
            tracing::warn!(run = %id, error = %e, "claim failed; skipping");
            return Outcome::Skipped;
        }
    };
    tracing::info!(run = %id, "claimed flow run");
    // Prefect's "Submitting" marker; informative only, so its answer does not matter.
    let _ = client
        .set_flow_run_state(&id, &state("PENDING", "Submitting", None), false)
        .await;

    if let Some(container) = &ctx.container {
        let attempt = claim_state_id.unwrap_or_else(sluice_core::domain::Id::new_v4);
        return crate::container::run(&ctx, container, &id, &run, attempt, &mut control).await;
    }
    let prepared = match prepare(&ctx, &id, &run).await {
        Ok(p) => p,
        Err(Prep::DeploymentGone(message)) => {
            let _ = client
                .set_flow_run_state(&id, &state("CANCELLED", "Cancelled", Some(&message)), true)
                .await;
            return Outcome::Cancelled;
        }
        Err(Prep::Failed(message)) => {
            report_crash(client, &id, &message).await;
            return Outcome::Crashed;
        }
    };

    // Never launch a run that was cancelled while it was being claimed or prepared.
    match client.read_flow_run(&id).await {
        Ok(Some(current))
            if matches!(state_type_of(&current), Some("CANCELLING" | "CANCELLED")) =>
        {
            propose_cancelled(
                client,
                &id,
                "Flow run cancelled by worker before it started.",
            )
            .await;
            return Outcome::Cancelled;
        }
        _ => {}
    }
    let current = *control.borrow();
    match current {
        Control::Cancel => {
            propose_cancelled(
                client,
                &id,
                "Flow run cancelled by worker before it started.",
            )
            .await;
            return Outcome::Cancelled;
        }
        Control::Shutdown => {
            report_crash(client, &id, "worker shut down").await;
            return Outcome::KilledOnShutdown;
        }
        Control::Run => {}
    }

    launch_and_watch(&ctx, &id, prepared, &mut control).await
}

struct Prepared {
    command: String,
    env: BTreeMap<String, String>,
    removed_env: Vec<String>,
    working_dir: PathBuf,
    stream_output: bool,
    /// Kept alive for the job's lifetime; removed when the job ends.
    _temp_dir: Option<tempfile::TempDir>,
}

pub(crate) enum Prep {
    DeploymentGone(String),
    Failed(String),
}

/// A run's job configuration, rendered as Prefect's workers do (§2.5), and its deployment.
pub(crate) struct Rendered {
    pub config: Value,
    pub deployment: Value,
    pub pool: Value,
}

/// Reads the pool and the run's deployment, merges the job variables, fetches the blocks and
/// variables they name and renders the pool's base job template.
pub(crate) async fn render(ctx: &JobContext, run: &Value) -> Result<Rendered, Prep> {
    let failed =
        |e: String| Prep::Failed(format!("Failed to submit flow run to infrastructure: {e}"));
    let client = &ctx.client;
    let pool = client
        .read_work_pool(&ctx.pool)
        .await
        .map_err(|e| failed(e.to_string()))?
        .ok_or_else(|| failed(format!("work pool {} no longer exists", ctx.pool)))?;
    let template = pool
        .get("base_job_template")
        .cloned()
        .unwrap_or(Value::Null);

    let mut deployment = Value::Null;
    if let Some(dep_id) = run.get("deployment_id").and_then(Value::as_str) {
        deployment = client
            .read_deployment(dep_id)
            .await
            .map_err(|e| failed(e.to_string()))?
            .ok_or_else(|| {
                Prep::DeploymentGone(format!("Deployment {dep_id} no longer exists."))
            })?;
    }
    let as_map = |v: Option<&Value>| v.and_then(Value::as_object).cloned().unwrap_or_default();
    let variables = merge_deployment_and_run_variables(
        &as_map(deployment.get("job_variables")),
        &as_map(run.get("job_variables")),
    );
    let worker_env: BTreeMap<String, String> = std::env::vars().collect();
    // `{{ prefect.variables.* }}` and `{{ prefect.blocks.* }}` in the template or the job
    // variables are resolved from the API, as Prefect's workers do.
    let data = client
        .template_data(&data_references(&template, &variables))
        .await
        .map_err(|e| failed(e.to_string()))?;
    let config = build_job_configuration(&template, &variables, &worker_env, &data)
        .map_err(|e| failed(e.to_string()))?;
    Ok(Rendered {
        config: finalize_base_fields(config),
        deployment,
        pool,
    })
}

/// Renders the job configuration (§2.5), prepares env and directory, runs the pull steps.
async fn prepare(ctx: &JobContext, id: &str, run: &Value) -> Result<Prepared, Prep> {
    let failed =
        |e: String| Prep::Failed(format!("Failed to submit flow run to infrastructure: {e}"));
    let client = &ctx.client;
    if let Some(local) = &ctx.local {
        return prepare_local(ctx, id, run, local).await;
    }
    let Rendered {
        config, deployment, ..
    } = render(ctx, run).await?;
    let as_map = |v: Option<&Value>| v.and_then(Value::as_object).cloned().unwrap_or_default();
    let worker_env: BTreeMap<String, String> = std::env::vars().collect();

    // Worker environment < Prefect/Sluice variables < configured env (which wins; null unsets).
    let mut env = worker_env;
    for (k, v) in attribution(ctx, id, run, &deployment) {
        env.insert(k.to_owned(), v);
    }
    let mut removed_env = Vec::new();
    for (k, v) in as_map(config.get("env")) {
        match v {
            Value::Null => {
                env.remove(&k);
                removed_env.push(k);
            }
            Value::String(s) => {
                env.insert(k, s);
            }
            other => {
                env.insert(k, sluice_core::templating::python_str(&other));
            }
        }
    }

    let (mut working_dir, temp_dir) = match config.get("working_dir").and_then(Value::as_str) {
        Some(dir) if !dir.is_empty() => (PathBuf::from(dir), None),
        _ => {
            let tmp = tempfile::Builder::new()
                .prefix("sluice-run-")
                .tempdir()
                .map_err(|e| failed(format!("cannot create a working directory: {e}")))?;
            (tmp.path().to_path_buf(), Some(tmp))
        }
    };
    if let Some(steps) = deployment.get("pull_steps").and_then(Value::as_array)
        && !steps.is_empty()
    {
        // Deploy keeps block and variable references in pull steps; they resolve at run time.
        let all_steps = Value::Array(steps.clone());
        let refs = DataReferences {
            blocks: find_block_references(&all_steps),
            variables: find_variable_references(&all_steps),
        };
        let data = client
            .template_data(&refs)
            .await
            .map_err(|e| failed(e.to_string()))?;
        working_dir = run_pull_steps(steps, &working_dir, &env, &data)
            .await
            .map_err(failed)?;
    }

    // No command runs Prefect's engine on the run, as Prefect's process worker does, so a
    // deployment made by `prefect deploy` runs unchanged.
    let command = match config.get("command") {
        Some(Value::String(c)) if !c.trim().is_empty() => c.clone(),
        _ => sluice_core::push::DEFAULT_COMMAND.to_owned(),
    };
    let stream_output = config
        .get("stream_output")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    Ok(Prepared {
        command,
        env,
        removed_env,
        working_dir,
        stream_output,
        _temp_dir: temp_dir,
    })
}

/// The variables every job gets: API URL (and key), run, flow and deployment ids.
fn attribution(
    ctx: &JobContext,
    id: &str,
    run: &Value,
    deployment: &Value,
) -> Vec<(&'static str, String)> {
    let flow_id = run
        .get("flow_id")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut attribution = vec![
        ("PREFECT_API_URL", ctx.api_url.clone()),
        ("SLUICE_API_URL", ctx.api_url.clone()),
        ("PREFECT__FLOW_RUN_ID", id.to_owned()),
        ("SLUICE_FLOW_RUN_ID", id.to_owned()),
        // Plain commands (not Prefect's engine) get the run's parameters as one JSON object.
        (
            "SLUICE_PARAMETERS",
            run.get("parameters")
                .map_or_else(|| "{}".to_owned(), Value::to_string),
        ),
        ("PREFECT__WORKER_NAME", ctx.worker_name.clone()),
        ("PREFECT__FLOW_ID", flow_id.to_owned()),
    ];
    if let Some(key) = &ctx.api_key {
        attribution.push(("PREFECT_API_KEY", key.clone()));
    }
    if let Some(dep_id) = deployment.get("id").and_then(Value::as_str) {
        attribution.push(("PREFECT__DEPLOYMENT_ID", dep_id.to_owned()));
    }
    if let Some(name) = deployment.get("name").and_then(Value::as_str) {
        attribution.push(("PREFECT__DEPLOYMENT_NAME", name.to_owned()));
    }
    attribution
}

/// The runner's preparation: the served command in the process environment plus the
/// attribution variables and `--env` pairs; no template, no pull steps.
async fn prepare_local(
    ctx: &JobContext,
    id: &str,
    run: &Value,
    local: &LocalJob,
) -> Result<Prepared, Prep> {
    let failed =
        |e: String| Prep::Failed(format!("Failed to submit flow run to infrastructure: {e}"));
    let mut deployment = Value::Null;
    if let Some(dep_id) = run.get("deployment_id").and_then(Value::as_str) {
        deployment = ctx
            .client
            .read_deployment(dep_id)
            .await
            .map_err(|e| failed(e.to_string()))?
            .ok_or_else(|| {
                Prep::DeploymentGone(format!("Deployment {dep_id} no longer exists."))
            })?;
    }
    let mut env: BTreeMap<String, String> = std::env::vars().collect();
    for (k, v) in attribution(ctx, id, run, &deployment) {
        env.insert(k.to_owned(), v);
    }
    env.extend(local.env.clone());
    let (working_dir, temp_dir) = match &local.working_dir {
        Some(dir) => (dir.clone(), None),
        None => {
            let tmp = tempfile::Builder::new()
                .prefix("sluice-run-")
                .tempdir()
                .map_err(|e| failed(format!("cannot create a working directory: {e}")))?;
            (tmp.path().to_path_buf(), Some(tmp))
        }
    };
    Ok(Prepared {
        command: local.command.clone(),
        env,
        removed_env: Vec::new(),
        working_dir,
        stream_output: true,
        _temp_dir: temp_dir,
    })
}

/// Why the worker itself stopped the process, if it did.
#[derive(Clone, Copy, PartialEq, Eq)]
enum KilledBy {
    Cancel,
    Shutdown,
    Abort,
}

async fn launch_and_watch(
    ctx: &JobContext,
    id: &str,
    prepared: Prepared,
    control: &mut watch::Receiver<Control>,
) -> Outcome {
    let client = &ctx.client;
    // Split into words as Prefect's process worker does (shlex, POSIX rules), never through a
    // shell: the same `command` must behave the same on Sluice and on Prefect. A command that
    // wants a shell says `sh -c '...'`.
    let argv = match shlex::split(&prepared.command) {
        Some(argv) if !argv.is_empty() => argv,
        _ => {
            report_crash(
                client,
                id,
                &format!(
                    "Failed to submit flow run to infrastructure: the command {:?} cannot be \
                     split into words (an unclosed quote?)",
                    prepared.command
                ),
            )
            .await;
            return Outcome::Crashed;
        }
    };
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .current_dir(&prepared.working_dir)
        .env_clear()
        .envs(&prepared.env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so cancellation reaches everything the command starts.
        .process_group(0);
    for k in &prepared.removed_env {
        cmd.env_remove(k);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            report_crash(
                client,
                id,
                &format!(
                    "Failed to submit flow run to infrastructure: cannot start {:?} in {}: {e}",
                    argv[0],
                    prepared.working_dir.display()
                ),
            )
            .await;
            return Outcome::Crashed;
        }
    };
    let pid = child.id().unwrap_or_default();
    tracing::info!(run = %id, pid, "launched flow run process");

    let (log_tx, log_rx) = mpsc::unbounded_channel::<(i64, String)>();
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        readers.push(tokio::spawn(read_lines(out, 20, log_tx.clone())));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(tokio::spawn(read_lines(err, 40, log_tx.clone())));
    }
    drop(log_tx);
    let shipper = tokio::spawn(ship_logs(
        client.clone(),
        id.to_owned(),
        log_rx,
        prepared.stream_output,
    ));

    let _ = client
        .update_flow_run(
            id,
            &json!({ "infrastructure_pid": format!("{}:{pid}", hostname()) }),
        )
        .await;

    let mut killed_by = None;
    let mut renewer = None;
    if propose_running(client, id).await {
        renewer = Some(tokio::spawn(keep_deployment_slot(
            client.clone(),
            id.to_owned(),
        )));
    } else {
        killed_by = Some(KilledBy::Abort);
        terminate(&mut child, pid, ctx.grace).await;
    }

    let status = if killed_by.is_some() {
        child.wait().await
    } else {
        watch_child(&mut child, pid, control, ctx.grace, &mut killed_by).await
    };
    if let Some(renewer) = renewer {
        renewer.abort();
    }

    // Let the readers reach EOF (bounded: a detached grandchild may hold the pipes open).
    for reader in readers {
        let _ = tokio::time::timeout(Duration::from_secs(2), reader).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), shipper).await;

    finish(client, id, status, killed_by).await
}

/// How often the worker renews the run's deployment slot, and for how long each time.
const SLOT_RENEW_EVERY: Duration = Duration::from_secs(30);
const SLOT_LEASE_SECONDS: f64 = 300.0;

/// Renews the lease of the run's deployment concurrency slot while its process runs. Prefect's
/// engine renews it too, but a command that is not the engine would otherwise lose its slot
/// when the lease ran out, and the deployment's limit would let another run in. Stops when the
/// lease is gone; if the worker dies, renewals stop and the server takes the slot back when
/// the lease expires.
async fn keep_deployment_slot(client: Client, id: String) {
    let lease = match client.read_flow_run(&id).await {
        Ok(Some(run)) => run
            .pointer("/state/state_details/deployment_concurrency_lease_id")
            .and_then(Value::as_str)
            .map(str::to_owned),
        _ => None,
    };
    let Some(lease) = lease else {
        return;
    };
    loop {
        match client
            .renew_concurrency_lease(&lease, SLOT_LEASE_SECONDS)
            .await
        {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => tracing::warn!(run = %id, error = %e, "could not renew the deployment slot"),
        }
        tokio::time::sleep(SLOT_RENEW_EVERY).await;
    }
}

/// Waits for the process, killing it when the loop says so.
async fn watch_child(
    child: &mut Child,
    pid: u32,
    control: &mut watch::Receiver<Control>,
    grace: Duration,
    killed_by: &mut Option<KilledBy>,
) -> std::io::Result<ExitStatus> {
    let mut listening = true;
    loop {
        tokio::select! {
            status = child.wait() => return status,
            changed = control.changed(), if listening => {
                if changed.is_err() {
                    // The loop is gone; nobody can ask for a kill any more.
                    listening = false;
                    continue;
                }
                let current = *control.borrow_and_update();
                match current {
                    Control::Run => {}
                    Control::Cancel => {
                        *killed_by = Some(KilledBy::Cancel);
                        terminate(child, pid, grace).await;
                        return child.wait().await;
                    }
                    Control::Shutdown => {
                        *killed_by = Some(KilledBy::Shutdown);
                        terminate(child, pid, SHUTDOWN_KILL_GRACE).await;
                        return child.wait().await;
                    }
                }
            }
        }
    }
}

/// Proposes RUNNING, waiting out WAIT answers. `false` when the server will not have it.
async fn propose_running(client: &Client, id: &str) -> bool {
    for _ in 0..20 {
        match client
            .set_flow_run_state(id, &state("RUNNING", "Running", None), false)
            .await
        {
            Ok(r) if r.accepted() => return true,
            Ok(r) if r.status == "WAIT" => {
                let delay = r.delay_seconds.clamp(0.1, 60.0);
                tokio::time::sleep(Duration::from_secs_f64(delay)).await;
            }
            Ok(r) => {
                tracing::warn!(run = %id, status = %r.status, reason = r.reason.as_deref().unwrap_or(""), "RUNNING refused; stopping the process");
                return false;
            }
            Err(e) => {
                // A transient API error should not kill a process that is already running.
                tracing::warn!(run = %id, error = %e, "could not propose RUNNING");
                return true;
            }
        }
    }
    false
}

/// SIGTERM to the process group, SIGKILL after `grace` if it is still there.
async fn terminate(child: &mut Child, pid: u32, grace: Duration) {
    signal_group(pid, "TERM");
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        signal_group(pid, "KILL");
    }
}

/// `kill -SIG -- -PGID` (no libc: unsafe code is forbidden in this workspace).
fn signal_group(pgid: u32, signal: &str) {
    if pgid == 0 {
        return;
    }
    let result = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg("--")
        .arg(format!("-{pgid}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if let Err(e) = result {
        tracing::warn!(pgid, error = %e, "cannot run kill");
    }
}

async fn finish(
    client: &Client,
    id: &str,
    status: std::io::Result<ExitStatus>,
    killed_by: Option<KilledBy>,
) -> Outcome {
    match killed_by {
        Some(KilledBy::Cancel) => {
            propose_cancelled(
                client,
                id,
                "Flow run was cancelled; the worker stopped its process.",
            )
            .await;
            return Outcome::Cancelled;
        }
        Some(KilledBy::Shutdown) => {
            report_crash(client, id, "worker shut down").await;
            return Outcome::KilledOnShutdown;
        }
        Some(KilledBy::Abort) => {
            // The server refused RUNNING: it is cancelling or someone else owns the run.
            if let Ok(Some(run)) = client.read_flow_run(id).await
                && state_type_of(&run) == Some("CANCELLING")
            {
                propose_cancelled(client, id, "Flow run was cancelled before it started.").await;
                return Outcome::Cancelled;
            }
            return Outcome::Skipped;
        }
        None => {}
    }
    let status = match status {
        Ok(s) => s,
        Err(e) => {
            report_crash(
                client,
                id,
                &format!("Lost track of the flow run process: {e}"),
            )
            .await;
            return Outcome::Crashed;
        }
    };
    let (state_value, outcome) = if let Some(code) = status.code() {
        if code == 0 {
            (state("COMPLETED", "Completed", None), Outcome::Completed)
        } else {
            let message = exit::exit_message(code);
            log_to_run(client, id, LEVEL_ERROR, &message).await;
            (state("FAILED", "Failed", Some(&message)), Outcome::Failed)
        }
    } else {
        let signal = status.signal().unwrap_or_default();
        let mut message = format!("Flow run process was killed by signal {signal}.");
        if let Some(why) = exit::explain(-signal) {
            message.push(' ');
            message.push_str(why);
        }
        log_to_run(client, id, LEVEL_ERROR, &message).await;
        (
            state("CRASHED", "Crashed", Some(&message)),
            Outcome::Crashed,
        )
    };
    // ABORT means the run is already terminal (e.g. cancelled meanwhile): nothing to add.
    if let Err(e) = client.set_flow_run_state(id, &state_value, false).await {
        tracing::warn!(run = %id, error = %e, "could not report the final state");
    }
    tracing::info!(run = %id, outcome = outcome.as_str(), "flow run process ended");
    outcome
}

const LEVEL_WARNING: i64 = 30;
const LEVEL_ERROR: i64 = 40;

/// One line in the run's own logs, from the worker: why the run ended the way it did is read
/// in `flow-run logs` (and Prefect's UI), not only in the state message.
async fn log_to_run(client: &Client, id: &str, level: i64, message: &str) {
    if let Err(e) = client.create_logs(&[log_line(id, level, message)]).await {
        tracing::warn!(run = %id, error = %e, "could not send the log line");
    }
}

async fn propose_cancelled(client: &Client, id: &str, message: &str) {
    log_to_run(client, id, LEVEL_WARNING, message).await;
    // Forced: from CANCELLING only CANCELLED is accepted anyway, and a PENDING run we
    // hold must not be left behind.
    if let Err(e) = client
        .set_flow_run_state(id, &state("CANCELLED", "Cancelled", Some(message)), true)
        .await
    {
        tracing::warn!(run = %id, error = %e, "could not report CANCELLED");
    }
}

async fn report_crash(client: &Client, id: &str, message: &str) {
    tracing::warn!(run = %id, %message, "flow run crashed");
    log_to_run(client, id, LEVEL_ERROR, message).await;
    if let Err(e) = client
        .set_flow_run_state(id, &state("CRASHED", "Crashed", Some(message)), false)
        .await
    {
        tracing::warn!(run = %id, error = %e, "could not report CRASHED");
    }
}

async fn read_lines<R>(stream: R, level: i64, tx: mpsc::UnboundedSender<(i64, String)>)
where
    R: tokio::io::AsyncRead + Unpin,
{
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if tx.send((level, line)).is_err() {
            break;
        }
    }
}

/// Batches output lines into `POST /logs/` calls (every second or 50 lines).
/// A log record as `POST /logs/` takes it, stamped now.
fn log_line(id: &str, level: i64, message: &str) -> Value {
    json!({
        "name": LOGGER_NAME,
        "level": level,
        "message": message,
        "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "flow_run_id": id,
    })
}

async fn ship_logs(
    client: Client,
    id: String,
    mut rx: mpsc::UnboundedReceiver<(i64, String)>,
    echo: bool,
) {
    let mut batch: Vec<Value> = Vec::new();
    let mut ticker = tokio::time::interval(LOG_FLUSH_EVERY);
    loop {
        // (still open, flush now)
        let (open, flush) = tokio::select! {
            item = rx.recv() => match item {
                Some((level, line)) => {
                    if echo {
                        println!("{line}");
                    }
                    batch.push(log_line(&id, level, &line));
                    (true, batch.len() >= LOG_BATCH_LINES)
                }
                None => (false, true),
            },
            _ = ticker.tick() => (true, true),
        };
        if flush && !batch.is_empty() {
            if let Err(e) = client.create_logs(&batch).await {
                tracing::warn!(run = %id, error = %e, "could not send logs");
            }
            batch.clear();
        }
        if !open {
            break;
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_owned())
}
