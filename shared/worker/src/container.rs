//! `ecs` and `batch` pull pools: after the worker's claim, the run is submitted with the same
//! plans and adapter the control plane's push dispatcher uses (`sluice_core::push`,
//! `sluice-aws`), and its task or job is followed with Describe* calls through the same
//! mapping (`sluice_core::push::observe`), since a worker has no EventBridge.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use sluice_core::domain::{FlowRun, Id, State, StateType};
use sluice_core::push::observe::{Progress, settle};
use sluice_core::push::{self, RunFacts};
use sluice_infra::{Attempt, InfraError, Job, Kind, PushInfrastructure, Submission};
use tokio::sync::watch;

use crate::job::{Control, JobContext, Outcome, Prep, Rendered, render};

/// What a container worker adds to the job context.
pub(crate) struct ContainerJob {
    pub kind: Kind,
    pub infra: Arc<dyn PushInfrastructure>,
    /// For log configuration when the pool's credentials name no region.
    pub region: String,
    /// How often a submitted task or job is described.
    pub watch_every: Duration,
}

/// Submission attempts for throttling or capacity errors before the run is reported crashed.
const SUBMIT_ATTEMPTS: u32 = 4;
/// A task or job AWS does not show this long after submission is declared lost.
const MISSING_GRACE: Duration = Duration::from_secs(120);

fn state_json(state: &State) -> Value {
    let mut s = json!({ "type": state.state_type.as_str(), "name": state.name });
    if let Some(m) = &state.message {
        s["message"] = Value::from(m.as_str());
    }
    s
}

fn outcome_of(state_type: StateType) -> Option<Outcome> {
    match state_type {
        StateType::Completed => Some(Outcome::Completed),
        StateType::Failed => Some(Outcome::Failed),
        StateType::Crashed => Some(Outcome::Crashed),
        StateType::Cancelled => Some(Outcome::Cancelled),
        _ => None,
    }
}

async fn current_state(ctx: &JobContext, id: &str) -> Option<StateType> {
    let run = ctx.client.read_flow_run(id).await.ok()??;
    StateType::parse(run.get("state")?.get("type")?.as_str()?)
}

async fn propose(ctx: &JobContext, id: &str, state: &State, force: bool) {
    if let Err(e) = ctx
        .client
        .set_flow_run_state(id, &state_json(state), force)
        .await
    {
        tracing::warn!(run = %id, error = %e, "could not report the run's state");
    }
}

/// Reports a run that could not be submitted (Prefect's wording) as CRASHED.
async fn submission_failed(ctx: &JobContext, id: &str, reason: impl std::fmt::Display) -> Outcome {
    crash(
        ctx,
        id,
        &format!("Failed to submit flow run to infrastructure: {reason}"),
    )
    .await
}

async fn crash(ctx: &JobContext, id: &str, message: &str) -> Outcome {
    tracing::warn!(run = %id, %message, "flow run crashed");
    let state = State::new(StateType::Crashed, chrono::Utc::now()).with_message(message);
    propose(ctx, id, &state, false).await;
    Outcome::Crashed
}

/// Submits a claimed run and follows it to its end.
pub(crate) async fn run(
    ctx: &JobContext,
    job: &ContainerJob,
    id: &str,
    run: &Value,
    attempt: Id,
    control: &mut watch::Receiver<Control>,
) -> Outcome {
    let Rendered {
        config,
        deployment,
        pool,
    } = match render(ctx, run).await {
        Ok(r) => r,
        Err(Prep::DeploymentGone(message)) => {
            let state = State::new(StateType::Cancelled, chrono::Utc::now()).with_message(message);
            propose(ctx, id, &state, true).await;
            return Outcome::Cancelled;
        }
        Err(Prep::Failed(message)) => return crash(ctx, id, &message).await,
    };
    let flow_name = match run.get("flow_id").and_then(Value::as_str) {
        Some(flow_id) => ctx
            .client
            .get_optional(&format!("flows/{flow_id}"))
            .await
            .ok()
            .flatten()
            .and_then(|f| f.get("name").and_then(Value::as_str).map(str::to_owned)),
        None => None,
    };
    let known = Known {
        deployment: &deployment,
        pool: &pool,
        flow_name: flow_name.as_deref(),
    };
    let submission = match submission(ctx, job, id, run, attempt, &config, &known) {
        Ok(s) => s,
        Err(message) => return submission_failed(ctx, id, message).await,
    };
    if matches!(
        current_state(ctx, id).await,
        Some(StateType::Cancelling | StateType::Cancelled)
    ) || *control.borrow() == Control::Cancel
    {
        let state = State::new(StateType::Cancelled, chrono::Utc::now())
            .with_message("Flow run cancelled by worker before it was submitted.");
        propose(ctx, id, &state, true).await;
        return Outcome::Cancelled;
    }

    let mut delay = Duration::from_secs(2);
    let mut attempt = 1;
    let submitted = loop {
        match job.infra.submit(&submission).await {
            Ok(s) => break s,
            Err(InfraError::Transient(message)) if attempt < SUBMIT_ATTEMPTS => {
                tracing::warn!(run = %id, error = %message, "submission failed for now; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
            Err(e) => {
                return submission_failed(ctx, id, e).await;
            }
        }
    };
    let infra_id = submitted.infrastructure_id;
    if let Err(e) = ctx
        .client
        .update_flow_run(id, &json!({ "infrastructure_pid": infra_id }))
        .await
    {
        tracing::warn!(run = %id, error = %e, "could not record the infrastructure id");
    }
    tracing::info!(run = %id, infrastructure = %infra_id, "submitted flow run");
    watch_to_end(
        ctx,
        job,
        id,
        &infra_id,
        submission.credentials.as_ref(),
        control,
    )
    .await
}

/// What the worker read about the run before submitting it.
struct Known<'a> {
    deployment: &'a Value,
    pool: &'a Value,
    flow_name: Option<&'a str>,
}

fn submission(
    ctx: &JobContext,
    job: &ContainerJob,
    id: &str,
    run: &Value,
    attempt: Id,
    config: &Value,
    known: &Known<'_>,
) -> Result<Submission, String> {
    let deployment = known.deployment;
    let parse = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .and_then(|s| Id::parse_str(s).ok())
    };
    let run_id = parse(Some(&Value::from(id))).ok_or("the run has no valid id")?;
    let flow_id = parse(run.get("flow_id")).ok_or("the run has no flow id")?;
    let mut flow_run = FlowRun::new(flow_id, chrono::Utc::now());
    flow_run.id = run_id;
    flow_run.name = run
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let deployment_facts = parse(deployment.get("id")).map(|d| {
        (
            d,
            deployment
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default(),
        )
    });
    // The container reaches the API the way this worker does (Prefect's workers pass their
    // own settings on); a configured `env` still wins.
    let mut base_env = BTreeMap::new();
    base_env.insert("PREFECT_API_URL".to_owned(), ctx.api_url.clone());
    if let Some(key) = &ctx.api_key {
        base_env.insert("PREFECT_API_KEY".to_owned(), key.clone());
    }
    let pool_id = parse(known.pool.get("id")).ok_or("the work pool has no valid id")?;
    let facts = RunFacts {
        run: &flow_run,
        flow_name: known.flow_name,
        deployment: deployment_facts,
        pool_name: &ctx.pool,
        pool_id,
        base_env: &base_env,
        attempt,
    };
    let credentials = config
        .get("aws_credentials")
        .filter(|c| c.as_object().is_some_and(|m| !m.is_empty()))
        .cloned();
    let region = credentials
        .as_ref()
        .and_then(|c| c.get("region_name"))
        .and_then(Value::as_str)
        .filter(|r| !r.is_empty())
        .unwrap_or(&job.region)
        .to_owned();
    let config = push::prepare_for_flow_run(config, &facts);
    let planned = match job.kind {
        Kind::Ecs => push::ecs::plan(&config, &facts, &region).map(Job::Ecs),
        Kind::Batch => push::batch::plan(&config, &facts).map(Job::Batch),
    };
    Ok(Submission {
        run_id,
        attempt_id: attempt,
        job: planned.map_err(|e| e.to_string())?,
        credentials,
        attempt: Attempt::First,
    })
}

/// Describes the task or job until it ends, settling the run through the API; stops it when
/// the run is cancelled. On worker shutdown the task keeps running and the run is left as it
/// is (the control plane's sweep and events follow it).
async fn watch_to_end(
    ctx: &JobContext,
    job: &ContainerJob,
    id: &str,
    infra_id: &str,
    credentials: Option<&Value>,
    control: &mut watch::Receiver<Control>,
) -> Outcome {
    let submitted_at = tokio::time::Instant::now();
    let mut stop_sent = false;
    loop {
        let signal = *control.borrow();
        match signal {
            Control::Shutdown => {
                tracing::info!(run = %id, infrastructure = %infra_id, "worker stopping; the task keeps running");
                return Outcome::Detached;
            }
            Control::Cancel if !stop_sent => {
                match job
                    .infra
                    .stop(
                        job.kind,
                        infra_id,
                        "Flow run cancelled in Sluice",
                        credentials,
                    )
                    .await
                {
                    Ok(()) => stop_sent = true,
                    Err(e) => {
                        tracing::warn!(run = %id, error = %e, "stop request failed; retrying")
                    }
                }
            }
            _ => {}
        }
        let progress = match job
            .infra
            .observe(job.kind, &[infra_id.to_owned()], credentials)
            .await
        {
            Ok(mut seen) => seen.pop().unwrap_or(Progress::Missing),
            Err(e) => {
                tracing::warn!(run = %id, error = %e, "describe failed; retrying");
                Progress::Pending
            }
        };
        let current = current_state(ctx, id).await;
        if let Some(outcome) = current.and_then(outcome_of) {
            return outcome;
        }
        let lost_too_early =
            progress == Progress::Missing && submitted_at.elapsed() < MISSING_GRACE;
        if !lost_too_early
            && let Some((state, force)) = settle(current, &progress, chrono::Utc::now())
        {
            propose(ctx, id, &state, force).await;
            if let Some(outcome) = current_state(ctx, id).await.and_then(outcome_of) {
                return outcome;
            }
        }
        tokio::select! {
            () = tokio::time::sleep(job.watch_every) => {}
            _ = control.changed() => {}
        }
    }
}
