use sluice_store::StoreError;
use thiserror::Error;

/// The services layer's one error type. Each variant maps to one HTTP status in the API crate.
#[derive(Debug, Error)]
pub enum ServiceError {
    /// 404: the named object does not exist.
    #[error("{0}")]
    NotFound(String),
    /// 409: the object exists already, or a concurrent change won.
    #[error("{0}")]
    Conflict(String),
    /// 422: the input is well-formed but breaks a rule (bad template, job variable, schedule).
    #[error("{0}")]
    Invalid(String),
    /// 400: the request cannot be served as asked.
    #[error("{0}")]
    BadRequest(String),
    /// 403: the object is reserved.
    #[error("{0}")]
    Forbidden(String),
    /// 423: a concurrency limit has no room now; `retry_after` (seconds) says when to ask
    /// again, when there is any point in asking.
    #[error("{detail}")]
    Locked {
        detail: String,
        retry_after: Option<f64>,
    },
    /// 410: the object existed and is gone for good (an expired or revoked lease).
    #[error("{0}")]
    Gone(String),
    /// 503 for a busy backend, 500 otherwise.
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> ServiceError {
        match e {
            StoreError::NotFound(what) => ServiceError::NotFound(format!("{what} not found.")),
            StoreError::Conflict(what) => ServiceError::Conflict(what),
            other => ServiceError::Store(other),
        }
    }
}

pub type Result<T> = std::result::Result<T, ServiceError>;
