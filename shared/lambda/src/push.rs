//! The push dispatcher's configuration, read the same way by every function that dispatches,
//! enqueues or settles push runs.

use std::collections::BTreeMap;
use std::sync::Arc;

use sluice_aws::{AwsPush, Rates, SqsQueue};
use sluice_services::push::{Dispatcher, PushSettings};
use sluice_services::{Services, Settings, SystemClock};
use sluice_store_dynamodb::{DynamoStore, Retention};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushConfig {
    /// `SLUICE_DISPATCH_QUEUE_URL`: the SQS queue due push runs are sent to. Unset: nothing is
    /// enqueued and the scheduler's sweep dispatches due runs itself, once a minute.
    pub queue_url: Option<String>,
    /// `SLUICE_PUSH_API_URL`: the API URL pushed containers get as `PREFECT_API_URL`.
    pub api_url: Option<String>,
    /// `AWS_REGION`: for log configuration when a pool's credentials name no region.
    pub region: Option<String>,
    /// `SLUICE_RUN_TASK_PER_SECOND` / `SLUICE_SUBMIT_JOB_PER_SECOND`: this environment's share
    /// of the account's limits (20 and 50 per second); set them so that the dispatcher's
    /// maximum concurrency times the rate stays within the limit.
    pub rates: (u32, u32),
    /// `SLUICE_RECONCILE_AFTER_SECONDS`: live runs older than this are described by the sweep.
    pub reconcile_after_seconds: i64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{name}: {message}")]
pub struct PushConfigError {
    pub name: &'static str,
    pub message: String,
}

fn number<T: std::str::FromStr>(
    var: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: T,
) -> Result<T, PushConfigError> {
    match var(name).filter(|v| !v.trim().is_empty()) {
        None => Ok(default),
        Some(v) => v.trim().parse().map_err(|_| PushConfigError {
            name,
            message: format!("{v:?} is not a whole number"),
        }),
    }
}

impl PushConfig {
    pub fn from_env() -> Result<PushConfig, PushConfigError> {
        PushConfig::from_vars(|name| std::env::var(name).ok())
    }

    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<PushConfig, PushConfigError> {
        let text = |name: &str| {
            var(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let defaults = Rates::default();
        let rates = (
            number(
                &var,
                "SLUICE_RUN_TASK_PER_SECOND",
                defaults.run_task_per_second,
            )?,
            number(
                &var,
                "SLUICE_SUBMIT_JOB_PER_SECOND",
                defaults.submit_job_per_second,
            )?,
        );
        if rates.0 == 0 || rates.1 == 0 {
            return Err(PushConfigError {
                name: "SLUICE_RUN_TASK_PER_SECOND",
                message: "rates must be at least 1 per second".to_owned(),
            });
        }
        Ok(PushConfig {
            queue_url: text("SLUICE_DISPATCH_QUEUE_URL"),
            api_url: text("SLUICE_PUSH_API_URL"),
            region: text("AWS_REGION").or_else(|| text("AWS_DEFAULT_REGION")),
            rates,
            reconcile_after_seconds: number(
                &var,
                "SLUICE_RECONCILE_AFTER_SECONDS",
                PushSettings::default().reconcile_after_seconds,
            )?,
        })
    }

    #[must_use]
    pub fn settings(&self) -> PushSettings {
        let mut base_env = BTreeMap::new();
        if let Some(url) = &self.api_url {
            base_env.insert("PREFECT_API_URL".to_owned(), url.clone());
        }
        let mut settings = PushSettings {
            base_env,
            reconcile_after_seconds: self.reconcile_after_seconds,
            ..PushSettings::default()
        };
        if let Some(region) = &self.region {
            settings.default_region = region.clone();
        }
        settings
    }

    /// The dispatcher over ECS and Batch with the SDK's standard configuration.
    pub async fn dispatcher(&self, services: Services) -> Dispatcher {
        let infra = AwsPush::from_env(Rates {
            run_task_per_second: self.rates.0,
            submit_job_per_second: self.rates.1,
        });
        Dispatcher::new(services, Arc::new(infra), self.settings())
    }

    /// The dispatch queue, when one is configured.
    pub async fn queue(&self) -> Option<Arc<SqsQueue>> {
        match &self.queue_url {
            Some(url) => Some(Arc::new(SqsQueue::from_env(url.clone()).await)),
            None => None,
        }
    }
}

/// The services over the table `SLUICE_TABLE` names and the dispatcher over them, with the
/// push configuration they came from: what the dispatcher and events functions start with.
pub async fn dispatcher_from_env()
-> Result<(Dispatcher, PushConfig), Box<dyn std::error::Error + Send + Sync>> {
    let services = services_from_env().await?;
    let push = PushConfig::from_env()?;
    Ok((push.dispatcher(services).await, push))
}

/// The services over the table `SLUICE_TABLE` names, with the retention the environment sets.
pub async fn services_from_env() -> Result<Services, Box<dyn std::error::Error + Send + Sync>> {
    let table = std::env::var("SLUICE_TABLE")
        .ok()
        .filter(|t| !t.trim().is_empty())
        .ok_or(
            "SLUICE_TABLE is not set: it must name the DynamoDB table Sluice stores its data in",
        )?;
    let retention = Retention::from_env()?;
    let store = DynamoStore::connect(table, retention).await;
    // DynamoDB expires events itself (TTL): no purge.
    let settings = Settings {
        event_retention_days: None,
        ..Settings::default()
    };
    Ok(Services::new(
        Arc::new(store),
        Arc::new(SystemClock),
        settings,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn defaults_and_overrides() {
        let c = PushConfig::from_vars(vars(&[])).expect("valid");
        assert_eq!(c.queue_url, None);
        assert_eq!(c.rates, (20, 50));
        let c = PushConfig::from_vars(vars(&[
            ("SLUICE_DISPATCH_QUEUE_URL", " https://sqs/q "),
            ("SLUICE_PUSH_API_URL", "https://api.example/api"),
            ("SLUICE_RUN_TASK_PER_SECOND", "10"),
            ("AWS_REGION", "eu-west-1"),
        ]))
        .expect("valid");
        assert_eq!(c.queue_url.as_deref(), Some("https://sqs/q"));
        assert_eq!(c.rates, (10, 50));
        let s = c.settings();
        assert_eq!(s.base_env["PREFECT_API_URL"], "https://api.example/api");
        assert_eq!(s.default_region, "eu-west-1");
    }

    #[test]
    fn bad_numbers_name_the_variable() {
        let e = PushConfig::from_vars(vars(&[("SLUICE_SUBMIT_JOB_PER_SECOND", "fast")]))
            .expect_err("invalid");
        assert_eq!(e.name, "SLUICE_SUBMIT_JOB_PER_SECOND");
        assert!(PushConfig::from_vars(vars(&[("SLUICE_RUN_TASK_PER_SECOND", "0")])).is_err());
    }
}
