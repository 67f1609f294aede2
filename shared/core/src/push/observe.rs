//! What AWS says about a task or job → how far it got → the run's next state.
//!
//! The same code reads an EventBridge "ECS Task State Change" / "Batch Job State Change" event
//! (whose `detail` is the task or job in the API's JSON shape) and a DescribeTasks /
//! DescribeJobs answer converted to that shape, so events, the reconcile sweep and the pull
//! worker cannot disagree.

use serde::Deserialize;

use crate::domain::{State, StateType, Timestamp};

/// An ECS task, as in DescribeTasks and in the task-state-change event's `detail`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EcsTask {
    pub task_arn: Option<String>,
    pub cluster_arn: Option<String>,
    pub last_status: Option<String>,
    pub desired_status: Option<String>,
    pub stop_code: Option<String>,
    pub stopped_reason: Option<String>,
    pub started_by: Option<String>,
    #[serde(default)]
    pub containers: Vec<EcsContainer>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EcsContainer {
    pub name: Option<String>,
    pub exit_code: Option<i64>,
    pub reason: Option<String>,
    pub last_status: Option<String>,
}

/// A Batch job, as in DescribeJobs and in the job-state-change event's `detail`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchJob {
    pub job_id: Option<String>,
    pub job_name: Option<String>,
    pub job_queue: Option<String>,
    pub status: Option<String>,
    pub status_reason: Option<String>,
    pub container: Option<BatchContainer>,
    #[serde(default)]
    pub tags: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchContainer {
    pub exit_code: Option<i64>,
    pub reason: Option<String>,
}

/// How far a task or job got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Accepted, waiting for capacity, pulling, starting.
    Pending,
    Running,
    /// Stopped with the flow container's exit code.
    Exited {
        code: i64,
        reason: Option<String>,
    },
    /// Ended without an exit code: failed to start, lost its host, stopped before it ran.
    Crashed {
        reason: String,
    },
    /// AWS does not know it (never started, or forgotten: ECS keeps stopped tasks about an hour).
    Missing,
}

/// For log lines: what a person reads, not Rust's debug form.
impl std::fmt::Display for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Progress::Pending => f.write_str("pending"),
            Progress::Running => f.write_str("running"),
            Progress::Exited { code, reason: None } => write!(f, "exited with code {code}"),
            Progress::Exited {
                code,
                reason: Some(reason),
            } => write!(f, "exited with code {code} ({reason})"),
            Progress::Crashed { reason } => write!(f, "crashed: {reason}"),
            Progress::Missing => f.write_str("unknown to AWS"),
        }
    }
}

impl Progress {
    #[must_use]
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            Progress::Exited { .. } | Progress::Crashed { .. } | Progress::Missing
        )
    }
}

/// Reads an ECS task. `container` names the flow's container when known; otherwise a single
/// container, or the first one with a non-zero exit code, decides.
#[must_use]
pub fn ecs_progress(task: &EcsTask, container: Option<&str>) -> Progress {
    match task.last_status.as_deref() {
        Some("STOPPED") => {}
        Some("RUNNING" | "DEACTIVATING" | "STOPPING" | "DEPROVISIONING") => {
            return Progress::Running;
        }
        _ => return Progress::Pending,
    }
    let reason = task
        .stopped_reason
        .clone()
        .filter(|r| !r.is_empty())
        .or_else(|| task.stop_code.clone())
        .unwrap_or_else(|| "the task stopped".to_owned());
    if task.stop_code.as_deref() == Some("TaskFailedToStart") || task.containers.is_empty() {
        return Progress::Crashed {
            reason: format!("ECS task failed to start: {reason}"),
        };
    }
    let named = container.and_then(|n| {
        task.containers
            .iter()
            .find(|c| c.name.as_deref() == Some(n))
    });
    let deciding = named
        .or_else(|| (task.containers.len() == 1).then(|| &task.containers[0]))
        .or_else(|| {
            task.containers
                .iter()
                .find(|c| c.exit_code.is_some_and(|code| code != 0))
        })
        .or_else(|| task.containers.iter().find(|c| c.exit_code.is_some()));
    match deciding.and_then(|c| c.exit_code.map(|code| (code, c))) {
        Some((code, c)) => Progress::Exited {
            code,
            reason: c
                .reason
                .clone()
                .filter(|r| !r.is_empty())
                .or_else(|| (code != 0).then(|| reason.clone())),
        },
        None => Progress::Crashed {
            reason: format!(
                "ECS task stopped without an exit code: {}",
                deciding
                    .and_then(|c| c.reason.clone())
                    .filter(|r| !r.is_empty())
                    .unwrap_or(reason)
            ),
        },
    }
}

/// Reads a Batch job.
#[must_use]
pub fn batch_progress(job: &BatchJob) -> Progress {
    match job.status.as_deref() {
        Some("RUNNING") => Progress::Running,
        Some("SUCCEEDED") => Progress::Exited {
            code: job
                .container
                .as_ref()
                .and_then(|c| c.exit_code)
                .unwrap_or(0),
            reason: None,
        },
        Some("FAILED") => {
            let reason = job
                .status_reason
                .clone()
                .filter(|r| !r.is_empty())
                .or_else(|| job.container.as_ref().and_then(|c| c.reason.clone()))
                .unwrap_or_else(|| "the job failed".to_owned());
            match job.container.as_ref().and_then(|c| c.exit_code) {
                Some(code) => Progress::Exited {
                    code,
                    reason: Some(reason),
                },
                None => Progress::Crashed {
                    reason: format!("Batch job failed before its container exited: {reason}"),
                },
            }
        }
        _ => Progress::Pending,
    }
}

/// The state a run in state `current` moves to on `progress`, and whether it is forced; `None`
/// leaves it alone.
///
/// Final runs, and runs not yet (or no longer) submitted, are never touched, so duplicate and
/// out-of-order reports change nothing. Progress short of the end changes nothing either: a
/// Prefect engine in the container reports RUNNING itself, and proposing it first would make
/// the engine's own proposal abort. A CANCELLING run whose infrastructure has ended becomes
/// CANCELLED (forced, as Prefect's workers do once the kill is confirmed).
#[must_use]
pub fn settle(
    current: Option<StateType>,
    progress: &Progress,
    now: Timestamp,
) -> Option<(State, bool)> {
    match current? {
        StateType::Cancelling if progress.is_final() => Some((
            State::new(StateType::Cancelled, now).with_message(match progress {
                Progress::Missing => "The run's infrastructure is gone; cancellation complete.",
                _ => "The run's infrastructure stopped; cancellation complete.",
            }),
            true,
        )),
        StateType::Pending | StateType::Running => match progress {
            Progress::Pending | Progress::Running => None,
            Progress::Exited { code: 0, .. } => Some((
                State::new(StateType::Completed, now)
                    .with_message("The flow run's container exited with code 0."),
                false,
            )),
            Progress::Exited { code, reason } => {
                let mut message =
                    format!("Flow run infrastructure exited with non-zero status code {code}.");
                if let Some(r) = reason {
                    message.push(' ');
                    message.push_str(r);
                }
                Some((
                    State::new(StateType::Failed, now).with_message(message),
                    false,
                ))
            }
            Progress::Crashed { reason } => Some((
                State::new(StateType::Crashed, now).with_message(reason.clone()),
                false,
            )),
            Progress::Missing => Some((
                State::new(StateType::Crashed, now).with_message(
                    "The run's task or job cannot be found in AWS: it never started or ended \
                     unobserved.",
                ),
                false,
            )),
        },
        _ => None,
    }
}
