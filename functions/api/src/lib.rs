//! The api function: Sluice's one router (`sluice_api::router_with`) over the DynamoDB store,
//! served to API Gateway's HTTP API (payload v2) by `lambda_http`.
//!
//! Everything here runs once per execution environment (cold start); the router it builds then
//! serves every invocation that environment receives, so the SDK client and its connection pool
//! are reused across requests.

use std::sync::Arc;

use sluice_services::{Services, Settings, SystemClock};
use sluice_store::Store;
use sluice_store_dynamodb::{DynamoStore, Retention};

pub use sluice_api::Auth;

/// The function's configuration, from its environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `SLUICE_TABLE`: the DynamoDB table holding everything.
    pub table: String,
    /// `SLUICE_AUTH`: `api-key` (the default: an HTTP API is reachable from the internet) or
    /// `none` (a private network or an emulator only).
    pub auth: Auth,
    /// `SLUICE_LOG_RETENTION_DAYS` / `SLUICE_RUN_RETENTION_DAYS`.
    pub retention: Retention,
    /// `SLUICE_DISPATCH_QUEUE_URL`: where new push runs are announced.
    pub dispatch_queue_url: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("SLUICE_TABLE is not set: it must name the DynamoDB table the API stores its data in")]
    MissingTable,
    #[error("SLUICE_AUTH: {0}")]
    Auth(String),
    #[error("{0}")]
    Retention(String),
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        let retention = Retention::from_env().map_err(ConfigError::Retention)?;
        Config::from_vars(|name| std::env::var(name).ok(), retention)
    }

    /// The same rules over any source of variables, so they can be checked without touching
    /// the process environment.
    pub fn from_vars(
        var: impl Fn(&str) -> Option<String>,
        retention: Retention,
    ) -> Result<Config, ConfigError> {
        let table = var("SLUICE_TABLE")
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .ok_or(ConfigError::MissingTable)?;
        let auth = match var("SLUICE_AUTH") {
            Some(v) if !v.trim().is_empty() => v.parse().map_err(ConfigError::Auth)?,
            _ => Auth::ApiKey,
        };
        let dispatch_queue_url = var("SLUICE_DISPATCH_QUEUE_URL")
            .map(|u| u.trim().to_owned())
            .filter(|u| !u.is_empty());
        Ok(Config {
            table,
            auth,
            retention,
            dispatch_queue_url,
        })
    }
}

/// The router over a DynamoDB table, with an SDK client configured the standard way (region,
/// credentials and `AWS_ENDPOINT_URL` from the environment).
pub async fn app(config: &Config) -> axum::Router {
    let store = DynamoStore::connect(config.table.clone(), config.retention).await;
    let queue = match &config.dispatch_queue_url {
        Some(url) => Some(Arc::new(sluice_aws::SqsQueue::from_env(url.clone()).await)
            as Arc<dyn sluice_infra::DispatchQueue>),
        None => None,
    };
    let store: Arc<dyn Store> = Arc::new(store);
    // As a Prefect server does on start: the system block types exist before the first save.
    // A failure here only costs the catalog entry (clients register types themselves).
    let services = Services::new(store.clone(), Arc::new(SystemClock), Settings::default());
    if let Err(e) = services.install_system_block_types().await {
        tracing::warn!(error = %e, "could not install the system block types");
    }
    router_with_queue(store, config.auth, queue)
}

/// The router over any store, with the system clock and Prefect's default settings. With
/// [`Auth::ApiKey`], key lookups are cached for the API's default time, per execution
/// environment.
pub fn router(store: Arc<dyn Store>, auth: Auth) -> axum::Router {
    router_with_queue(store, auth, None)
}

/// The router whose new push runs are announced to `queue` (the dispatcher's SQS queue), so a
/// run created due is submitted at once rather than at the next schedule tick.
pub fn router_with_queue(
    store: Arc<dyn Store>,
    auth: Auth,
    queue: Option<Arc<dyn sluice_infra::DispatchQueue>>,
) -> axum::Router {
    let mut services = Services::new(store, Arc::new(SystemClock), Settings::default());
    if let Some(queue) = queue {
        services = services.with_dispatch_queue(queue);
    }
    sluice_api::router_with(
        services,
        sluice_api::Options {
            auth,
            // None unless the stack's owner names origins: the deployed API is not a browser's.
            cors_allowed_origins: sluice_api::origins(
                &std::env::var("SLUICE_CORS_ALLOWED_ORIGINS").unwrap_or_default(),
            ),
            ..sluice_api::Options::default()
        },
    )
}

pub use sluice_lambda::init_tracing;

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn the_table_is_required_and_auth_defaults_to_api_keys() {
        assert_eq!(
            Config::from_vars(vars(&[]), Retention::default()),
            Err(ConfigError::MissingTable)
        );
        assert_eq!(
            Config::from_vars(vars(&[("SLUICE_TABLE", "  ")]), Retention::default()),
            Err(ConfigError::MissingTable)
        );
        let c = Config::from_vars(vars(&[("SLUICE_TABLE", "sluice")]), Retention::default())
            .expect("valid");
        assert_eq!(c.table, "sluice");
        assert_eq!(c.auth, Auth::ApiKey);
    }

    #[test]
    fn auth_can_be_switched_off_but_not_misspelt() {
        let c = Config::from_vars(
            vars(&[("SLUICE_TABLE", "t"), ("SLUICE_AUTH", "none")]),
            Retention::default(),
        )
        .expect("valid");
        assert_eq!(c.auth, Auth::None);
        assert_eq!(
            Config::from_vars(
                vars(&[("SLUICE_TABLE", "t"), ("SLUICE_AUTH", "off")]),
                Retention::default()
            ),
            Err(ConfigError::Auth(
                "unknown auth mode \"off\": expected \"none\" or \"api-key\"".to_owned()
            ))
        );
    }
}
