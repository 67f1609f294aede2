use thiserror::Error;

/// The store layer's one error type. Adapters classify their native errors into these kinds, so
/// services can tell a lost race (`Conflict`) from an outage (`Unavailable`).
#[derive(Debug, Error)]
pub enum StoreError {
    /// A targeted write found no such object.
    #[error("{0} not found")]
    NotFound(String),
    /// A uniqueness rule or a compare-and-set condition failed; nothing was written.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The backend throttled the request or could not be reached; safe to retry.
    #[error("store unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Stored data could not be decoded into domain types.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// Anything else the backend reported.
    #[error("store error: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl StoreError {
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Conflict(_))
    }
}
