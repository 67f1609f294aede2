//! The one place AWS errors become the port's: retrying helps (throttling, capacity, service or
//! network trouble) or it does not (the request is wrong or names something missing).

use aws_sdk_ecs::error::{ProvideErrorMetadata, SdkError};
use sluice_infra::InfraError;

const TRANSIENT_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "ServerException",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "InternalFailure",
    "LimitExceededException",
];

/// Messages that mean throttling even under a client-error code (ECS wraps some rate limits in
/// `InvalidParameterException`, and concurrent registrations of one family fail this way).
const TRANSIENT_MESSAGES: &[&str] = &[
    "Rate exceeded",
    "Too many concurrent attempts",
    "capacity is unavailable",
];

pub(crate) fn classify<E, R>(action: &str, e: &SdkError<E, R>) -> InfraError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    match e {
        SdkError::ServiceError(service) => {
            let err = service.err();
            let code = err.code().unwrap_or_default();
            let message = err.message().unwrap_or_default();
            let text = format!("{action}: {code}: {message}");
            let transient = TRANSIENT_CODES.contains(&code)
                || TRANSIENT_MESSAGES.iter().any(|m| message.contains(m))
                || code.is_empty();
            if transient {
                InfraError::Transient(text)
            } else {
                InfraError::Rejected(text)
            }
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            InfraError::Transient(format!("{action}: {}", error_chain(e)))
        }
        _ => InfraError::Rejected(format!("{action}: {}", error_chain(e))),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
