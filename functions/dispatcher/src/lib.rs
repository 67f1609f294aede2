//! The dispatcher function: SQS delivers dispatch messages (one per due push run, delayed until
//! its time); each is claimed and submitted by `sluice_services::push::Dispatcher`.
//!
//! Partial batch responses: a message is reported failed only when trying it again later can
//! help (the store or AWS was unavailable, the submission was throttled). SQS then redelivers it
//! after the queue's visibility timeout, which is longer than the submission lease, so the
//! redelivery may take the submission over. A message that arrives early (SQS delays at most 15
//! minutes) is sent again with the remaining delay.

use std::sync::Arc;

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use lambda_runtime::LambdaEvent;
use serde::Serialize;
use sluice_aws::DispatchMessage;
use sluice_infra::DispatchQueue;
use sluice_services::push::{Dispatched, Dispatcher};

/// What one invocation did, for its log line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub submitted: usize,
    pub skipped: usize,
    pub crashed: usize,
    pub cancelled: usize,
    pub requeued: usize,
    pub retry_later: usize,
    pub unreadable: usize,
}

/// Handles one batch of messages; answers the ones SQS should deliver again.
pub async fn handle(
    dispatcher: &Dispatcher,
    queue: Option<&Arc<dyn DispatchQueue>>,
    event: LambdaEvent<SqsEvent>,
) -> (SqsBatchResponse, Summary) {
    let mut summary = Summary::default();
    let mut failures = Vec::new();
    for record in event.payload.records {
        let id = record.message_id.clone().unwrap_or_default();
        let message: DispatchMessage = match record
            .body
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
        {
            Ok(Some(m)) => m,
            Ok(None) | Err(_) => {
                // Not ours or corrupt: retrying cannot fix it, so let it go (and say so).
                tracing::error!(message_id = %id, body = ?record.body, "unreadable dispatch message dropped");
                summary.unreadable += 1;
                continue;
            }
        };
        let run = message.flow_run_id;
        match dispatcher.dispatch(run).await {
            Ok(Dispatched::Submitted { .. }) => summary.submitted += 1,
            Ok(Dispatched::Skipped(reason)) => {
                tracing::debug!(%run, reason, "nothing to dispatch");
                summary.skipped += 1;
            }
            Ok(Dispatched::Crashed(_)) => summary.crashed += 1,
            Ok(Dispatched::Cancelled(_)) => summary.cancelled += 1,
            Ok(Dispatched::NotYetDue(at)) => {
                let now = dispatcher.services.now();
                let sent = match queue {
                    Some(q) => q.enqueue(&[(run, at)], now).await.is_ok(),
                    None => false,
                };
                if sent {
                    summary.requeued += 1;
                } else {
                    failures.push(id);
                }
            }
            Ok(Dispatched::RetryLater(_)) => {
                summary.retry_later += 1;
                failures.push(id);
            }
            Err(e) => {
                tracing::warn!(%run, error = %e, "dispatch failed; SQS will redeliver");
                summary.retry_later += 1;
                failures.push(id);
            }
        }
    }
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failures
        .into_iter()
        .map(|item_identifier| {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = item_identifier;
            failure
        })
        .collect();
    (response, summary)
}

pub use sluice_lambda::init_tracing;
