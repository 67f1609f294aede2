//! The HTTP API: one axum [`Router`] in Prefect's REST dialect, served under `/api`.
//!
//! Architecture invariant: this router is the only HTTP surface. `sluice server` serves it on a
//! socket, the Lambda function serves it through `lambda_http`, and tests call it with `oneshot`.
//! Handlers parse the wire format (`dto`), call the services, and convert the answer back; the
//! rules live in `sluice-services` and `sluice-core`.

pub mod dto;
mod error;
mod extract;
mod routes;

use axum::Router;
use sluice_services::Services;

pub use error::{ApiError, ApiResult};

/// The largest request body accepted, by default. Prefect puts no limit in front of its API;
/// an unbounded body is a memory hazard for a Lambda or a small server, so Sluice refuses
/// bigger bodies with 413.
pub const DEFAULT_BODY_LIMIT: usize = 4 * 1024 * 1024;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub services: Services,
}

/// The whole API, mounted at `/api`.
pub fn router(services: Services) -> Router {
    router_with_limit(services, DEFAULT_BODY_LIMIT)
}

pub fn router_with_limit(services: Services, body_limit: usize) -> Router {
    let api = routes::routes().with_state(AppState { services });
    Router::new()
        .nest("/api", api)
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .layer(tower_http::trace::TraceLayer::new_for_http())
}
