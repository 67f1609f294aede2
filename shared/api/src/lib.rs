//! The HTTP API: one axum [`Router`] in Prefect's REST dialect, served under `/api`.
//!
//! Architecture invariant: this router is the only HTTP surface. `sluice server` serves it on a
//! socket, the Lambda function serves it through `lambda_http`, and tests call it with `oneshot`.
//! Handlers parse the wire format (`dto`), call the services, and convert the answer back; the
//! rules live in `sluice-services` and `sluice-core`.

mod auth;
pub mod dto;
mod error;
mod extract;
mod routes;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use sluice_services::{ApiKeyCache, Services};

pub use auth::{Auth, key_from_auth_string, key_from_authorization};
pub use error::{ApiError, ApiResult};

/// The largest request body accepted, by default. Prefect puts no limit in front of its API;
/// an unbounded body is a memory hazard for a Lambda or a small server, so Sluice refuses
/// bigger bodies with 413.
pub const DEFAULT_BODY_LIMIT: usize = 4 * 1024 * 1024;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub services: Services,
    /// Set when API keys are required: WebSocket handshakes check their token with it.
    pub(crate) key_check: Option<auth::KeyCheck>,
    /// What `GET /admin/settings` answers: the settings this API was built with.
    pub(crate) public_settings: Arc<serde_json::Value>,
}

/// The settings `GET /admin/settings` shows, in Prefect's layout where Prefect has the same
/// setting, and none of them secret: an auth string is only said to exist.
fn public_settings(services: &Services, options: &Options) -> serde_json::Value {
    let settings = &services.settings;
    serde_json::json!({
        "server": {
            "api": {
                "auth_string": (options.auth == Auth::ApiKey).then_some("**********"),
                "cors_allowed_origins": options.cors_allowed_origins.join(","),
                "cors_allowed_methods": "*",
                "cors_allowed_headers": "*",
                "csrf_protection_enabled": false,
                "default_limit": dto::filters::DEFAULT_LIMIT,
            },
            "events": {
                "retention_period": settings
                    .event_retention_days
                    .map(|days| format!("P{days}D")),
            },
            "services": {
                "late_runs": { "after_seconds": settings.late_after_seconds },
            },
        },
        "sluice": {
            "version": env!("CARGO_PKG_VERSION"),
            "auth": options.auth.to_string(),
            "body_limit_bytes": options.body_limit,
        },
    })
}

/// How the router is built. Start from `Options::default()` (no authentication, the default
/// body limit and key cache, no CORS) and set what differs.
#[derive(Debug, Clone)]
pub struct Options {
    pub auth: Auth,
    /// With [`Auth::ApiKey`]: how long a successful key lookup is reused before the store is
    /// asked again, so a deleted key may keep working in a running process for this long. Zero
    /// asks the store on every request.
    pub key_cache_ttl: Duration,
    /// The largest request body accepted; bigger ones are answered 413.
    pub body_limit: usize,
    /// Origins a browser may call the API from (`*` for any, as Prefect's server allows by
    /// default); empty answers no CORS headers, so browsers refuse other origins.
    pub cors_allowed_origins: Vec<String>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            auth: Auth::None,
            key_cache_ttl: ApiKeyCache::DEFAULT_TTL,
            body_limit: DEFAULT_BODY_LIMIT,
            cors_allowed_origins: Vec::new(),
        }
    }
}

/// The origins of a comma-separated setting (`SLUICE_CORS_ALLOWED_ORIGINS`), blanks left out.
pub fn origins(setting: &str) -> Vec<String> {
    setting
        .split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Prefect's CORS: any method and header from the allowed origins, preflights cached ten
/// minutes. Outside the key check, so a browser's preflight (which carries no key) is answered.
fn cors(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use tower_http::cors::{AllowOrigin, Any, CorsLayer};
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| o.parse().ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods(Any)
            .allow_headers(Any)
            .max_age(Duration::from_secs(600)),
    )
}

/// The whole API, mounted at `/api`, without authentication.
pub fn router(services: Services) -> Router {
    router_with(services, Options::default())
}

pub fn router_with_limit(services: Services, body_limit: usize) -> Router {
    router_with(
        services,
        Options {
            body_limit,
            ..Options::default()
        },
    )
}

/// The whole API, mounted at `/api`, built as `options` say.
pub fn router_with(services: Services, options: Options) -> Router {
    let public_settings = Arc::new(public_settings(&services, &options));
    let Options {
        auth,
        key_cache_ttl,
        body_limit,
        cors_allowed_origins,
    } = options;
    let key_check = (auth == Auth::ApiKey).then(|| auth::KeyCheck {
        services: services.clone(),
        cache: Arc::new(ApiKeyCache::new(
            key_cache_ttl,
            ApiKeyCache::DEFAULT_CAPACITY,
        )),
    });
    let mut api = routes::routes().with_state(AppState {
        services,
        key_check: key_check.clone(),
        public_settings,
    });
    if let Some(check) = key_check {
        // Layered on the `/api` router itself, so it wraps every route and the fallback, and
        // runs before any handler reads the request.
        api = api.layer(axum::middleware::from_fn_with_state(
            check,
            auth::require_api_key,
        ));
    }
    let router = Router::new()
        .nest("/api", api)
        .layer(axum::extract::DefaultBodyLimit::max(body_limit));
    let router = match cors(&cors_allowed_origins) {
        Some(layer) => router.layer(layer),
        None => router,
    };
    router.layer(tower_http::trace::TraceLayer::new_for_http())
}
