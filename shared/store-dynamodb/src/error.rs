//! The one place DynamoDB's errors become the store's.
//!
//! Throttling and transient failures are retried by the SDK's standard retry strategy (with
//! exponential backoff and jitter, configured in [`crate::DynamoStore::connect`]); what is still
//! failing afterwards is `Unavailable`, which the API answers with 503. A failed condition is a
//! lost race or a taken name: `Conflict`, never a 500.

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use sluice_store::StoreError;

/// Error codes that mean "try again later".
const TRANSIENT: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
    "LimitExceededException",
    "TransactionInProgressException",
];

pub(crate) fn classify<E, R>(e: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match &e {
        SdkError::ServiceError(service) => {
            let err = service.err();
            let code = err.code().unwrap_or_default();
            let message = err.message().unwrap_or_default().to_owned();
            if code == "ConditionalCheckFailedException" {
                return StoreError::Conflict(message);
            }
            if code == "TransactionCanceledException" {
                // Reasons name the failed item; a condition among them is a conflict, a
                // concurrent transaction on the same item is transient.
                if message.contains("ConditionalCheckFailed") {
                    return StoreError::Conflict(message);
                }
                if message.contains("TransactionConflict") || message.contains("ThrottlingError") {
                    return StoreError::Unavailable(message.into());
                }
            }
            if TRANSIENT.contains(&code) {
                return StoreError::Unavailable(Box::new(e));
            }
            StoreError::Backend(Box::new(e))
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            StoreError::Unavailable(Box::new(e))
        }
        _ => StoreError::Backend(Box::new(e)),
    }
}

pub(crate) fn corrupt(what: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {detail}"))
}
