//! Dispatch lag of push runs in `sluice server`'s dispatcher: from a run's scheduled time to
//! the start of its submission and to the answer of its ECS RunTask call (the call itself lies
//! between; above the RunTask rate governor's 20 per second, the wait for the governor too).
//!
//! Runs the local dispatcher (`sluice_services::push::run_local`, the timer per due run) over a
//! SQLite store, with the real AWS adapter against whatever `AWS_ENDPOINT_URL` reaches (the
//! emulator: `eval "$(infra/moto.sh start)"` with test credentials). The adapter is wrapped to
//! record when each submission starts and returns. Runs are created through the services with
//! their scheduled times spread over a window, announced as the API would announce them.
//!
//! `cargo run --release -p sluice-bench --bin pushlag -- --runs 100 --spread-seconds 10`

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use async_trait::async_trait;
use clap::Parser;
use serde_json::{Value, json};
use sluice_aws::{AwsPush, Rates};
use sluice_core::domain::{Flow, Id, State, StateType, Timestamp};
use sluice_core::push::observe::Progress;
use sluice_infra::{InfraError, Kind, PushInfrastructure, Submission, Submitted};
use sluice_services::push::{self, Dispatcher, PushSettings};
use sluice_services::{
    DeploymentInput, FlowRunFromDeployment, Services, Settings, SystemClock, WorkPoolInput,
};
use sluice_store::SqliteStore;

#[derive(Parser)]
struct Args {
    /// Runs to dispatch.
    #[arg(long, default_value_t = 100)]
    runs: usize,
    /// Their scheduled times are spread evenly over this window, starting 3 s from now.
    #[arg(long, default_value_t = 10)]
    spread_seconds: u64,
}

/// Records, per run, when the submission started and when AWS answered.
struct Recording {
    inner: AwsPush,
    calls: Mutex<Vec<(Id, Timestamp, Timestamp)>>,
}

#[async_trait]
impl PushInfrastructure for Recording {
    async fn submit(&self, submission: &Submission) -> Result<Submitted, InfraError> {
        let started = chrono::Utc::now();
        let out = self.inner.submit(submission).await;
        let answered = chrono::Utc::now();
        if let Ok(mut calls) = self.calls.lock() {
            calls.push((submission.run_id, started, answered));
        }
        out
    }

    async fn observe(
        &self,
        kind: Kind,
        ids: &[String],
        credentials: Option<&Value>,
    ) -> Result<Vec<Progress>, InfraError> {
        self.inner.observe(kind, ids, credentials).await
    }

    async fn stop(
        &self,
        kind: Kind,
        id: &str,
        reason: &str,
        credentials: Option<&Value>,
    ) -> Result<(), InfraError> {
        self.inner.stop(kind, id, reason, credentials).await
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if std::env::var_os("AWS_ENDPOINT_URL").is_none() {
        bail!("set AWS_ENDPOINT_URL (and test credentials) to the emulator: see the file's docs");
    }
    let target = sluice_tests::aws::push_target(&format!(
        "sluice-lag-{}",
        &Id::new_v4().simple().to_string()[..8]
    ));
    let dir = tempfile::tempdir()?;
    let store = SqliteStore::open(&dir.path().join("lag.db")).context("open sqlite")?;
    let (queue, announced) = push::local_queue();
    let services = Services::new(Arc::new(store), Arc::new(SystemClock), Settings::default())
        .with_dispatch_queue(Arc::new(queue));
    let recording = Arc::new(Recording {
        inner: AwsPush::from_env(Rates::default()),
        calls: Mutex::new(Vec::new()),
    });
    let dispatcher = Dispatcher::new(services.clone(), recording.clone(), PushSettings::default());

    let mut template = sluice_core::pool_types::default_base_job_template("ecs:push")
        .context("the ecs:push template")?;
    let props = &mut template["variables"]["properties"];
    props["cluster"]["default"] = json!(target.cluster);
    props["image"]["default"] = json!("busybox:latest");
    props["network_configuration"]["default"] = json!({
        "subnets": target.subnets, "securityGroups": target.security_groups,
        "assignPublicIp": "ENABLED",
    });
    template["job_configuration"]["task_definition"]["containerDefinitions"][0]["memory"] =
        json!(512);
    services
        .create_work_pool(WorkPoolInput {
            name: "lag".to_owned(),
            pool_type: Some("ecs:push".to_owned()),
            base_job_template: Some(template),
            ..Default::default()
        })
        .await?;
    let now = chrono::Utc::now();
    let flow = Flow {
        id: Id::new_v4(),
        created: now,
        updated: now,
        name: "lag".to_owned(),
        tags: Vec::new(),
        labels: Default::default(),
    };
    let flow = services.store.upsert_flow(&flow).await?.value;
    let deployment = services
        .upsert_deployment(DeploymentInput {
            name: "lag".to_owned(),
            flow_id: Some(flow.id),
            work_pool_name: Some("lag".to_owned()),
            ..Default::default()
        })
        .await?
        .value;

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let runner = tokio::spawn(push::run_local(
        dispatcher,
        announced,
        Duration::from_secs(1),
        async {
            let _ = stop_rx.await;
        },
    ));

    let start = chrono::Utc::now() + chrono::Duration::seconds(3);
    let step_ms = (args.spread_seconds * 1000) / args.runs.max(1) as u64;
    let mut scheduled = std::collections::HashMap::new();
    for i in 0..args.runs {
        let at = start + chrono::Duration::milliseconds((i as u64 * step_ms) as i64);
        let run = services
            .create_flow_run_from_deployment(
                deployment.id,
                FlowRunFromDeployment {
                    state: Some(
                        State::new(StateType::Scheduled, chrono::Utc::now()).scheduled_at(at),
                    ),
                    ..Default::default()
                },
            )
            .await?;
        scheduled.insert(run.value.id, at);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.spread_seconds + 60);
    loop {
        let done = recording.calls.lock().map(|c| c.len()).unwrap_or(0);
        if done >= args.runs || tokio::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop_tx.send(());
    let _ = runner.await;

    let calls = recording
        .calls
        .lock()
        .map(|c| c.clone())
        .unwrap_or_default();
    let mut to_call = Vec::new();
    let mut to_answer = Vec::new();
    for (id, started, answered) in &calls {
        if let Some(at) = scheduled.get(id) {
            to_call.push((*started - *at).num_microseconds().unwrap_or(0) as f64 / 1000.0);
            to_answer.push((*answered - *at).num_microseconds().unwrap_or(0) as f64 / 1000.0);
        }
    }
    for v in [&mut to_call, &mut to_answer] {
        v.sort_by(f64::total_cmp);
    }
    let report = json!({
        "runs": args.runs,
        "submitted": calls.len(),
        "spread_seconds": args.spread_seconds,
        "lag_to_submission_start_ms": {
            "min": to_call.first(), "p50": percentile(&to_call, 50.0),
            "p99": percentile(&to_call, 99.0), "max": to_call.last(),
        },
        "lag_to_runtask_answered_ms": {
            "p50": percentile(&to_answer, 50.0), "p99": percentile(&to_answer, 99.0),
            "max": to_answer.last(),
        },
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    if calls.len() != args.runs {
        bail!("only {} of {} runs were submitted", calls.len(), args.runs);
    }
    Ok(())
}
