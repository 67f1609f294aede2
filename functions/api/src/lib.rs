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
        Ok(Config {
            table,
            auth,
            retention,
        })
    }
}

/// The router over a DynamoDB table, with an SDK client configured the standard way (region,
/// credentials and `AWS_ENDPOINT_URL` from the environment).
pub async fn app(config: &Config) -> axum::Router {
    let store = DynamoStore::connect(config.table.clone(), config.retention).await;
    router(Arc::new(store), config.auth)
}

/// The router over any store, with the system clock and Prefect's default settings. With
/// [`Auth::ApiKey`], key lookups are cached for the API's default time, per execution
/// environment.
pub fn router(store: Arc<dyn Store>, auth: Auth) -> axum::Router {
    let services = Services::new(store, Arc::new(SystemClock), Settings::default());
    sluice_api::router_with(
        services,
        sluice_api::Options {
            auth,
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
