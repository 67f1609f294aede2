//! The push-infrastructure port on AWS: ECS (`RunTask`) and Batch (`SubmitJob`).
//!
//! Clients come from the standard chain (`AWS_REGION`, credentials, `AWS_ENDPOINT_URL` for an
//! emulator or LocalStack) unless a pool names credentials in its `aws_credentials` block; one
//! set of clients is kept per distinct block. Calls that start things pass a per-process rate
//! governor first (RunTask and SubmitJob have account-wide limits: 20 and 50 per second), and
//! throttling the SDK's own retries could not absorb comes back as `InfraError::Transient`.

mod batch;
mod clients;
mod ecs;
mod error;
mod json;
mod sqs;

use std::num::NonZeroU32;
use std::sync::Arc;

use async_trait::async_trait;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde_json::Value;
use sluice_core::push::observe::Progress;
use sluice_infra::{InfraError, Job, Kind, PushInfrastructure, Submission, Submitted};

pub use clients::Clients;
pub use sqs::{DispatchMessage, MAX_DELAY_SECONDS, SqsQueue, delay_seconds};

/// Calls per second this process allows itself (per API, across all pools).
#[derive(Debug, Clone, Copy)]
pub struct Rates {
    pub run_task_per_second: u32,
    pub submit_job_per_second: u32,
}

impl Default for Rates {
    /// The account-wide limits; several processes sharing an account should split them.
    fn default() -> Rates {
        Rates {
            run_task_per_second: 20,
            submit_job_per_second: 50,
        }
    }
}

/// Content hash → definition ARN, for ECS task and Batch job definitions alike.
#[derive(Default)]
pub(crate) struct DefinitionCache(std::sync::Mutex<std::collections::HashMap<String, String>>);

impl DefinitionCache {
    pub(crate) fn get(&self, key: &str) -> Option<String> {
        self.0.lock().ok()?.get(key).cloned()
    }

    pub(crate) fn put(&self, key: String, arn: String) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(key, arn);
        }
    }
}

#[derive(Clone)]
pub struct AwsPush {
    inner: Arc<Inner>,
}

struct Inner {
    clients: clients::ClientCache,
    run_task: DefaultDirectRateLimiter,
    submit_job: DefaultDirectRateLimiter,
    definitions: DefinitionCache,
}

fn limiter(per_second: u32) -> DefaultDirectRateLimiter {
    let rate = NonZeroU32::new(per_second.max(1)).unwrap_or(NonZeroU32::MIN);
    RateLimiter::direct(Quota::per_second(rate))
}

impl AwsPush {
    /// An adapter whose default clients use the SDK's standard configuration, loaded when a
    /// pool first needs them (not here).
    #[must_use]
    pub fn from_env(rates: Rates) -> AwsPush {
        AwsPush::with_default_clients(None, rates)
    }

    #[must_use]
    pub fn new(default_clients: Clients, rates: Rates) -> AwsPush {
        AwsPush::with_default_clients(Some(default_clients), rates)
    }

    fn with_default_clients(default_clients: Option<Clients>, rates: Rates) -> AwsPush {
        AwsPush {
            inner: Arc::new(Inner {
                clients: clients::ClientCache::new(default_clients),
                run_task: limiter(rates.run_task_per_second),
                submit_job: limiter(rates.submit_job_per_second),
                definitions: DefinitionCache::default(),
            }),
        }
    }
}

#[async_trait]
impl PushInfrastructure for AwsPush {
    async fn region(&self, credentials: Option<&Value>) -> Option<String> {
        self.inner.clients.get(credentials).await.ok()?.region()
    }

    async fn submit(&self, submission: &Submission) -> Result<Submitted, InfraError> {
        let clients = self
            .inner
            .clients
            .get(submission.credentials.as_ref())
            .await?;
        match &submission.job {
            Job::Ecs(plan) => {
                ecs::submit(
                    &clients,
                    &self.inner.definitions,
                    &self.inner.run_task,
                    submission,
                    plan,
                )
                .await
            }
            Job::Batch(plan) => {
                batch::submit(
                    &clients,
                    &self.inner.definitions,
                    &self.inner.submit_job,
                    submission,
                    plan,
                )
                .await
            }
        }
    }

    async fn observe(
        &self,
        kind: Kind,
        ids: &[String],
        credentials: Option<&Value>,
    ) -> Result<Vec<Progress>, InfraError> {
        let clients = self.inner.clients.get(credentials).await?;
        match kind {
            Kind::Ecs => ecs::observe(&clients, ids).await,
            Kind::Batch => batch::observe(&clients, ids).await,
        }
    }

    async fn stop(
        &self,
        kind: Kind,
        id: &str,
        reason: &str,
        credentials: Option<&Value>,
    ) -> Result<(), InfraError> {
        let clients = self.inner.clients.get(credentials).await?;
        match kind {
            Kind::Ecs => ecs::stop(&clients, id, reason).await,
            Kind::Batch => batch::stop(&clients, id, reason).await,
        }
    }
}
