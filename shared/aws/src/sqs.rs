//! The dispatch queue on SQS: one message per run, delayed until the run is due (SQS delays at
//! most 15 minutes; a run further out is re-enqueued by the dispatcher when it arrives early).

use async_trait::async_trait;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use serde::{Deserialize, Serialize};
use sluice_core::domain::{Id, Timestamp};
use sluice_infra::{DispatchQueue, InfraError};

use crate::error::classify;

/// SQS's longest per-message delay.
pub const MAX_DELAY_SECONDS: i64 = 900;
/// SQS's largest batch.
const BATCH: usize = 10;

/// The body of a dispatch message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DispatchMessage {
    pub flow_run_id: Id,
    /// When the run is due (RFC 3339).
    pub at: Timestamp,
}

#[derive(Clone, Debug)]
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl SqsQueue {
    #[must_use]
    pub fn new(client: aws_sdk_sqs::Client, url: impl Into<String>) -> SqsQueue {
        SqsQueue {
            client,
            url: url.into(),
        }
    }

    /// A queue client configured the SDK's standard way.
    pub async fn from_env(url: impl Into<String>) -> SqsQueue {
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        SqsQueue::new(aws_sdk_sqs::Client::new(&config), url)
    }

    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// Seconds until `at`, rounded up (a message must not arrive before its run is due), within
/// what SQS allows.
#[must_use]
pub fn delay_seconds(at: Timestamp, now: Timestamp) -> i32 {
    let millis = (at - now).num_milliseconds().max(0);
    let secs = (millis + 999) / 1000;
    i32::try_from(secs.min(MAX_DELAY_SECONDS)).unwrap_or(0)
}

#[async_trait]
impl DispatchQueue for SqsQueue {
    async fn enqueue(&self, runs: &[(Id, Timestamp)], now: Timestamp) -> Result<(), InfraError> {
        for chunk in runs.chunks(BATCH) {
            let mut entries = Vec::with_capacity(chunk.len());
            for (i, (id, at)) in chunk.iter().enumerate() {
                let body = serde_json::to_string(&DispatchMessage {
                    flow_run_id: *id,
                    at: *at,
                })
                .map_err(|e| InfraError::Rejected(e.to_string()))?;
                entries.push(
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(body)
                        .delay_seconds(delay_seconds(*at, now))
                        .build()
                        .map_err(|e| InfraError::Rejected(e.to_string()))?,
                );
            }
            let out = self
                .client
                .send_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| classify("SendMessageBatch", &e))?;
            if let Some(failed) = out.failed().first() {
                return Err(InfraError::Transient(format!(
                    "SendMessageBatch: {} of {} messages refused: {}",
                    out.failed().len(),
                    chunk.len(),
                    failed.message().unwrap_or(failed.code())
                )));
            }
        }
        Ok(())
    }
}
