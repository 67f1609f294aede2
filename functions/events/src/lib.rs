//! The events function: EventBridge delivers "ECS Task State Change" and "Batch Job State
//! Change" events (the rules in `template.yaml` pass only final states); each one settles its
//! run through the same mapping the reconcile sweep uses. Duplicate and out-of-order events are
//! harmless: a run that is already final, or whose recorded task is another, is left alone.

use aws_lambda_events::eventbridge::EventBridgeEvent;
use lambda_runtime::LambdaEvent;
use serde::Serialize;
use serde_json::Value;
use sluice_core::push::observe::{BatchJob, EcsTask};
use sluice_services::ServiceError;
use sluice_services::push::Dispatcher;

pub const ECS_TASK_STATE_CHANGE: &str = "ECS Task State Change";
pub const BATCH_JOB_STATE_CHANGE: &str = "Batch Job State Change";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The run's state changed.
    Settled,
    /// Not a Sluice run, not final yet, already settled, or about another task.
    Unchanged,
    /// A detail type this function does not handle (a misconfigured rule).
    Ignored,
}

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("the event's detail is not a {kind}: {source}")]
    Unreadable {
        kind: &'static str,
        source: serde_json::Error,
    },
    /// The store was unavailable: EventBridge retries the invocation.
    #[error(transparent)]
    Service(#[from] ServiceError),
}

pub async fn handle(
    dispatcher: &Dispatcher,
    event: LambdaEvent<EventBridgeEvent<Value>>,
) -> Result<Outcome, EventError> {
    let payload = event.payload;
    let changed = match payload.detail_type.as_str() {
        ECS_TASK_STATE_CHANGE => {
            let task: EcsTask = serde_json::from_value(payload.detail).map_err(|source| {
                EventError::Unreadable {
                    kind: "ECS task",
                    source,
                }
            })?;
            dispatcher.apply_ecs_task(&task).await?
        }
        BATCH_JOB_STATE_CHANGE => {
            let job: BatchJob = serde_json::from_value(payload.detail).map_err(|source| {
                EventError::Unreadable {
                    kind: "Batch job",
                    source,
                }
            })?;
            dispatcher.apply_batch_job(&job).await?
        }
        other => {
            tracing::warn!(
                detail_type = other,
                "event of a type this function does not handle"
            );
            return Ok(Outcome::Ignored);
        }
    };
    Ok(if changed {
        Outcome::Settled
    } else {
        Outcome::Unchanged
    })
}

pub use sluice_lambda::init_tracing;
