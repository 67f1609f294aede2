//! The API layer's one error type and its mapping to Prefect's error bodies:
//! `{"detail": ...}` for refused operations, and FastAPI's request-validation shape for bodies
//! that cannot be parsed.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sluice_services::ServiceError;
use sluice_store::StoreError;

/// Where and why a request does not fit its endpoint's schema.
#[derive(Debug)]
pub struct Invalid {
    pub location: Vec<Value>,
    pub message: String,
    pub kind: &'static str,
    pub body: Value,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body or a path/query parameter does not fit the endpoint's schema (422). Boxed so
    /// the common `Result<_, ApiError>` stays small.
    #[error("invalid request: {}", .0.message)]
    Validation(Box<Invalid>),
    /// A status with a `detail` message.
    #[error("{1}")]
    Detail(StatusCode, String),
    /// 423 with a `detail`, and the `Retry-After` header (fractional seconds, as Prefect sends
    /// it and its client reads it) when waiting can help.
    #[error("{detail}")]
    Locked {
        detail: String,
        retry_after: Option<f64>,
    },
    /// A failure the client cannot fix; logged here, answered as "internal error".
    #[error("internal error: {0}")]
    Internal(String),
    /// The backend is busy; clients retry on 503.
    #[error("service unavailable: {0}")]
    Unavailable(String),
}

impl ApiError {
    pub fn not_found(what: impl Into<String>) -> ApiError {
        ApiError::Detail(StatusCode::NOT_FOUND, what.into())
    }

    pub fn unprocessable(what: impl Into<String>) -> ApiError {
        ApiError::Detail(StatusCode::UNPROCESSABLE_ENTITY, what.into())
    }

    pub fn bad_request(what: impl Into<String>) -> ApiError {
        ApiError::Detail(StatusCode::BAD_REQUEST, what.into())
    }

    /// A request-validation error at `location` (e.g. `["body", "schedules", 0, "cron"]`).
    pub fn invalid_field(location: Vec<Value>, message: impl Into<String>) -> ApiError {
        ApiError::Validation(Box::new(Invalid {
            location,
            message: message.into(),
            kind: "value_error",
            body: Value::Null,
        }))
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> ApiError {
        match e {
            ServiceError::NotFound(m) => ApiError::Detail(StatusCode::NOT_FOUND, m),
            ServiceError::Conflict(m) => ApiError::Detail(StatusCode::CONFLICT, m),
            ServiceError::Invalid(m) => ApiError::Detail(StatusCode::UNPROCESSABLE_ENTITY, m),
            ServiceError::BadRequest(m) => ApiError::Detail(StatusCode::BAD_REQUEST, m),
            ServiceError::Forbidden(m) => ApiError::Detail(StatusCode::FORBIDDEN, m),
            ServiceError::Gone(m) => ApiError::Detail(StatusCode::GONE, m),
            ServiceError::Locked {
                detail,
                retry_after,
            } => ApiError::Locked {
                detail,
                retry_after,
            },
            ServiceError::Store(StoreError::Unavailable(e)) => ApiError::Unavailable(e.to_string()),
            ServiceError::Store(other) => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        ApiError::from(ServiceError::from(e))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Validation(invalid) => {
                let Invalid {
                    location,
                    message,
                    kind,
                    body,
                } = *invalid;
                let detail = json!([{ "loc": location, "msg": message, "type": kind }]);
                let out = json!({
                    "exception_message": "Invalid request received.",
                    "exception_detail": detail,
                    "request_body": body,
                });
                (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(out)).into_response()
            }
            ApiError::Detail(status, detail) => {
                (status, axum::Json(json!({ "detail": detail }))).into_response()
            }
            ApiError::Locked {
                detail,
                retry_after,
            } => {
                let mut response =
                    (StatusCode::LOCKED, axum::Json(json!({ "detail": detail }))).into_response();
                if let Some(seconds) = retry_after
                    && let Ok(value) = axum::http::HeaderValue::from_str(&format!("{seconds:.3}"))
                {
                    response
                        .headers_mut()
                        .insert(axum::http::header::RETRY_AFTER, value);
                }
                response
            }
            ApiError::Internal(cause) => {
                tracing::error!(%cause, "request failed");
                let body = json!({ "exception_message": "Internal Server Error" });
                (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(body)).into_response()
            }
            ApiError::Unavailable(cause) => {
                tracing::warn!(%cause, "backend unavailable");
                let body = json!({ "exception_message": "Service Unavailable" });
                (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
            }
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
