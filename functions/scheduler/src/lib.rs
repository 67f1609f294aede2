//! The scheduler function: on each EventBridge schedule event, one pass each of the scheduler,
//! the late-run marker and the foreman (the ticks `sluice server` runs on timers), then a small
//! JSON summary.
//!
//! Every tick does bounded work and is safe to overlap with another invocation doing the same
//! (runs are created idempotently, state changes are compare-and-set), so an invocation that
//! runs late, is retried, or overlaps the next one is harmless. What the handler adds is a time
//! budget: a tick is not started when the invocation is about to run out of time, and a running
//! tick is cut off before Lambda's own deadline, so the summary is always returned and logged.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use aws_lambda_events::eventbridge::EventBridgeEvent;
use lambda_runtime::{Context, LambdaEvent};
use serde::Serialize;
use sluice_infra::DispatchQueue;
use sluice_services::push::{Dispatcher, SweepSummary};
use sluice_services::{
    ServiceError, Services, Settings, SystemClock, foreman, late_runs, scheduler,
};
use sluice_store_dynamodb::{DynamoStore, Retention};

/// Time kept back at the end of an invocation: no tick starts with less than this left, and a
/// running tick is stopped this long before the deadline, leaving room to answer.
pub const RESERVE: Duration = Duration::from_secs(2);

/// The function's configuration, from its environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `SLUICE_TABLE`: the DynamoDB table holding everything.
    pub table: String,
    /// `SLUICE_LOG_RETENTION_DAYS` / `SLUICE_RUN_RETENTION_DAYS`.
    pub retention: Retention,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("SLUICE_TABLE is not set: it must name the DynamoDB table Sluice stores its data in")]
    MissingTable,
    #[error("{0}")]
    Retention(String),
}

impl Config {
    pub fn from_env() -> Result<Config, ConfigError> {
        let table = std::env::var("SLUICE_TABLE")
            .map(|t| t.trim().to_owned())
            .ok()
            .filter(|t| !t.is_empty())
            .ok_or(ConfigError::MissingTable)?;
        let retention = Retention::from_env().map_err(ConfigError::Retention)?;
        Ok(Config { table, retention })
    }
}

/// The services over the DynamoDB table, with an SDK client configured the standard way
/// (region, credentials and `AWS_ENDPOINT_URL` from the environment).
pub async fn services(config: &Config) -> Services {
    let store = DynamoStore::connect(config.table.clone(), config.retention).await;
    Services::new(Arc::new(store), Arc::new(SystemClock), Settings::default())
}

/// What one invocation did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub scheduler: Outcome<SchedulerCounts>,
    pub late_runs: Outcome<LateRunCounts>,
    pub foreman: Outcome<ForemanCounts>,
    /// Expired concurrency leases whose slots were given back.
    pub leases: Outcome<LeaseCounts>,
    /// The push step, when the function dispatches push runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub push: Option<Outcome<PushCounts>>,
    pub elapsed_ms: u64,
}

impl Summary {
    /// The ticks that failed, by name.
    pub fn failed(&self) -> Vec<&'static str> {
        let mut failed = Vec::new();
        if matches!(self.scheduler, Outcome::Failed { .. }) {
            failed.push("scheduler");
        }
        if matches!(self.late_runs, Outcome::Failed { .. }) {
            failed.push("late_runs");
        }
        if matches!(self.foreman, Outcome::Failed { .. }) {
            failed.push("foreman");
        }
        if matches!(self.leases, Outcome::Failed { .. }) {
            failed.push("leases");
        }
        if matches!(self.push, Some(Outcome::Failed { .. })) {
            failed.push("push");
        }
        failed
    }
}

/// How one tick ended. Serialised with a `status` field: `{"status": "done", ...counts}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome<T> {
    Done(T),
    /// Not started: too little time was left.
    Skipped,
    /// Stopped at the time budget; the next invocation carries on where it left off.
    TimedOut,
    Failed {
        error: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SchedulerCounts {
    pub deployments: usize,
    pub runs_created: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LeaseCounts {
    pub released: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LateRunCounts {
    pub marked: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ForemanCounts {
    pub workers_offline: usize,
    pub pools_not_ready: usize,
    pub queues_not_ready: usize,
    pub deployments_not_ready: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PushCounts {
    /// Runs due within the horizon handed to the dispatch queue (delayed to their time).
    pub enqueued: usize,
    /// What the reconcile sweep did (dispatched, resumed, observed, settled, ...).
    #[serde(flatten)]
    pub sweep: SweepSummary,
}

/// The push step's dependencies: the dispatcher and, when configured, the dispatch queue.
pub struct Push {
    pub dispatcher: Dispatcher,
    pub queue: Option<Arc<dyn DispatchQueue>>,
}

/// Hands runs due within the horizon to the queue, then runs the reconcile sweep.
async fn push_tick(push: &Push) -> Result<PushCounts, ServiceError> {
    let d = &push.dispatcher;
    let now = d.services.now();
    let mut enqueued = 0;
    if let Some(queue) = &push.queue {
        let horizon = now + chrono::Duration::seconds(d.settings.dispatch_horizon_seconds);
        let due = d.due_runs(horizon).await?;
        match queue.enqueue(&due, now).await {
            Ok(()) => enqueued = due.len(),
            // The sweep below still dispatches whatever is already due.
            Err(e) => {
                tracing::warn!(error = %e, runs = due.len(), "enqueueing due push runs failed")
            }
        }
    }
    let sweep = Box::pin(d.sweep(None)).await?;
    Ok(PushCounts { enqueued, sweep })
}

/// At least one tick failed. The invocation is reported as failed so the function's error
/// metric shows it; the other ticks still ran, and the summary says what each did.
#[derive(Debug, thiserror::Error)]
#[error("tick failed: {}", .0.failed().join(", "))]
pub struct TicksFailed(pub Summary);

/// Runs the four ticks (scheduler, late runs, foreman, lease expiry) once each, in order, within the invocation's remaining time.
pub async fn handle(
    services: &Services,
    event: LambdaEvent<EventBridgeEvent>,
) -> Result<Summary, TicksFailed> {
    Box::pin(handle_with_push(services, None, event)).await
}

/// The four ticks, then the push step (enqueue and reconcile) when `push` is given.
pub async fn handle_with_push(
    services: &Services,
    push: Option<&Push>,
    event: LambdaEvent<EventBridgeEvent>,
) -> Result<Summary, TicksFailed> {
    let started = Instant::now();
    let deadline = deadline(&event.context);
    tracing::debug!(
        event_id = event.payload.id.as_deref().unwrap_or_default(),
        event_time = ?event.payload.time,
        "schedule event"
    );

    let scheduler = within(deadline, scheduler::tick(services))
        .await
        .map(|r| SchedulerCounts {
            deployments: r.deployments,
            runs_created: r.runs_created,
        });
    let late_runs = within(deadline, late_runs::tick(services))
        .await
        .map(|marked| LateRunCounts { marked });
    let foreman = within(deadline, foreman::tick(services))
        .await
        .map(|r| ForemanCounts {
            workers_offline: r.workers_offline,
            pools_not_ready: r.pools_not_ready,
            queues_not_ready: r.queues_not_ready,
            deployments_not_ready: r.deployments_not_ready,
        });
    let leases = within(deadline, services.expire_concurrency_leases())
        .await
        .map(|released| LeaseCounts { released });

    let push = match push {
        Some(p) => Some(Box::pin(within(deadline, push_tick(p))).await),
        None => None,
    };
    let summary = Summary {
        scheduler,
        late_runs,
        foreman,
        leases,
        push,
        elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    };
    let json = serde_json::to_string(&summary).unwrap_or_default();
    if summary.failed().is_empty() {
        tracing::info!(summary = %json, "ticks done");
        Ok(summary)
    } else {
        tracing::error!(summary = %json, "ticks failed");
        Err(TicksFailed(summary))
    }
}

/// The invocation's deadline on the monotonic clock. `None` when the context carries none (a
/// zero deadline: a hand-built context, as in a local invocation).
fn deadline(context: &Context) -> Option<Instant> {
    if context.deadline == 0 {
        return None;
    }
    let left = context
        .deadline()
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO);
    Some(Instant::now() + left)
}

/// Runs `tick` if more than [`RESERVE`] is left before `deadline`, cut off [`RESERVE`] before it.
/// Dropping a tick mid-way is safe: each of its writes is conditional or idempotent on its own,
/// so an interrupted tick leaves the same state as one that crashed, which the next completes.
async fn within<T>(
    deadline: Option<Instant>,
    tick: impl Future<Output = Result<T, ServiceError>>,
) -> Outcome<T> {
    let result = match deadline {
        None => tick.await,
        Some(deadline) => {
            let budget = deadline
                .saturating_duration_since(Instant::now())
                .saturating_sub(RESERVE);
            if budget.is_zero() {
                return Outcome::Skipped;
            }
            match tokio::time::timeout(budget, tick).await {
                Ok(result) => result,
                Err(_) => return Outcome::TimedOut,
            }
        }
    };
    match result {
        Ok(v) => Outcome::Done(v),
        Err(e) => Outcome::Failed {
            error: e.to_string(),
        },
    }
}

impl<T> Outcome<T> {
    fn map<U>(self, f: impl FnOnce(T) -> U) -> Outcome<U> {
        match self {
            Outcome::Done(v) => Outcome::Done(f(v)),
            Outcome::Skipped => Outcome::Skipped,
            Outcome::TimedOut => Outcome::TimedOut,
            Outcome::Failed { error } => Outcome::Failed { error },
        }
    }
}

pub use sluice_lambda::init_tracing;

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_store::SqliteStore;

    fn services(dir: &tempfile::TempDir) -> Services {
        let store = SqliteStore::open(&dir.path().join("s.db")).expect("open sqlite");
        Services::new(Arc::new(store), Arc::new(SystemClock), Settings::default())
    }

    fn event(deadline_in: Option<Duration>) -> LambdaEvent<EventBridgeEvent> {
        let mut context = Context::default();
        if let Some(d) = deadline_in {
            let at = SystemTime::now() + d;
            context.deadline = u64::try_from(
                at.duration_since(SystemTime::UNIX_EPOCH)
                    .expect("after the epoch")
                    .as_millis(),
            )
            .expect("fits");
        }
        let payload: EventBridgeEvent = serde_json::from_value(serde_json::json!({
            "detail-type": "Scheduled Event", "source": "aws.events", "detail": {}
        }))
        .expect("an event");
        LambdaEvent::new(payload, context)
    }

    #[tokio::test]
    async fn with_time_left_every_tick_runs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let services = services(&dir);
        for deadline in [None, Some(Duration::from_secs(60))] {
            let s = handle(&services, event(deadline))
                .await
                .expect("no failure");
            assert_eq!(
                s.scheduler,
                Outcome::Done(SchedulerCounts {
                    deployments: 0,
                    runs_created: 0
                })
            );
            assert_eq!(s.late_runs, Outcome::Done(LateRunCounts { marked: 0 }));
            assert!(matches!(s.foreman, Outcome::Done(_)), "{s:?}");
        }
    }

    #[tokio::test]
    async fn near_the_deadline_no_tick_starts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let services = services(&dir);
        // Inside the reserve, and a deadline already passed.
        for left in [RESERVE / 2, Duration::ZERO] {
            let s = handle(&services, event(Some(left)))
                .await
                .expect("no failure");
            assert_eq!(s.scheduler, Outcome::Skipped);
            assert_eq!(s.late_runs, Outcome::Skipped);
            assert_eq!(s.foreman, Outcome::Skipped);
        }
    }

    #[tokio::test]
    async fn a_tick_is_cut_off_before_the_deadline() {
        let slow = async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok::<_, ServiceError>(())
        };
        let started = Instant::now();
        let out = within(
            Some(Instant::now() + RESERVE + Duration::from_millis(50)),
            slow,
        )
        .await;
        assert_eq!(out, Outcome::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn the_summary_serialises_with_a_status_per_tick() {
        let s = Summary {
            scheduler: Outcome::Done(SchedulerCounts {
                deployments: 2,
                runs_created: 5,
            }),
            late_runs: Outcome::TimedOut,
            foreman: Outcome::Failed {
                error: "busy".to_owned(),
            },
            leases: Outcome::Done(LeaseCounts { released: 1 }),
            push: None,
            elapsed_ms: 7,
        };
        assert_eq!(
            serde_json::to_value(&s).expect("serialises"),
            serde_json::json!({
                "scheduler": {"status": "done", "deployments": 2, "runs_created": 5},
                "late_runs": {"status": "timed_out"},
                "foreman": {"status": "failed", "error": "busy"},
                "leases": {"status": "done", "released": 1},
                "elapsed_ms": 7
            })
        );
        assert_eq!(s.failed(), vec!["foreman"]);
        assert_eq!(TicksFailed(s).to_string(), "tick failed: foreman");
    }
}
