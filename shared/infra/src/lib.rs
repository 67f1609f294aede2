//! The push-infrastructure port: what the dispatcher, the reconcile sweep and the pull worker
//! need from a container platform, whichever one it is.
//!
//! The contract (checked by [`conformance`] against every adapter):
//! - [`PushInfrastructure::submit`] starts one task or job for a run. When told the run may have
//!   been submitted before (`Attempt::Resume`), it first looks for the task or job of that run
//!   and attempt and returns it instead of starting another, so a retried or resumed submission
//!   never doubles a run, and a rerun is never mistaken for its earlier attempt. A first attempt
//!   skips the lookup: the store's claim guarantees nobody submitted it before.
//! - Definitions (ECS task definitions, Batch job definitions) are registered only when no ACTIVE
//!   revision carries the same content hash.
//! - [`PushInfrastructure::observe`] reports every id it is given; an id the platform does not
//!   know is `Progress::Missing`, not an error.
//! - [`PushInfrastructure::stop`] on a task or job that already ended (or is unknown) succeeds.
//! - Errors say whether trying again can help ([`InfraError::Transient`]) or not
//!   ([`InfraError::Rejected`], with the platform's own message).

pub mod conformance;

use async_trait::async_trait;
use serde_json::Value;
use sluice_core::domain::Id;
use sluice_core::push::batch::BatchPlan;
use sluice_core::push::ecs::EcsPlan;
use sluice_core::push::observe::Progress;

/// Which platform a pool's runs go to, from its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Ecs,
    Batch,
}

impl Kind {
    /// `ecs`/`ecs:push` → ECS, `batch`/`batch:push` → Batch; anything else has no platform here.
    #[must_use]
    pub fn of_pool_type(pool_type: &str) -> Option<Kind> {
        match pool_type.strip_suffix(":push").unwrap_or(pool_type) {
            "ecs" => Some(Kind::Ecs),
            "batch" => Some(Kind::Batch),
            _ => None,
        }
    }
}

/// The requests for one run.
#[derive(Debug, Clone, PartialEq)]
pub enum Job {
    Ecs(EcsPlan),
    Batch(BatchPlan),
}

impl Job {
    #[must_use]
    pub fn kind(&self) -> Kind {
        match self {
            Job::Ecs(_) => Kind::Ecs,
            Job::Batch(_) => Kind::Batch,
        }
    }
}

/// A job with the run it belongs to and the credentials its pool names (the rendered
/// `aws_credentials` block; `None` or empty means the ambient credential chain).
#[derive(Debug, Clone, PartialEq)]
pub struct Submission {
    pub run_id: Id,
    /// The attempt (the id of the PENDING state that claimed the run): a resumed submission
    /// returns only a task or job of this attempt, never one of an earlier run of it.
    pub attempt_id: Id,
    pub job: Job,
    pub credentials: Option<Value>,
    pub attempt: Attempt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// The run was just claimed from SCHEDULED: nothing can have been submitted for it.
    First,
    /// An earlier attempt may have submitted it (crash, timeout, redelivery): look first.
    Resume,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    /// Prefect's form: `<cluster>::<task ARN>` for ECS, the job id for Batch.
    pub infrastructure_id: String,
    /// An earlier submission was found and returned instead of starting a new one.
    pub found_existing: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum InfraError {
    /// Throttling, capacity, network or service trouble: the same request may succeed later.
    #[error("{0}")]
    Transient(String),
    /// The platform refused the request (bad parameter, missing cluster, queue or role): it
    /// will refuse it again.
    #[error("{0}")]
    Rejected(String),
}

impl InfraError {
    #[must_use]
    pub fn is_transient(&self) -> bool {
        matches!(self, InfraError::Transient(_))
    }
}

#[async_trait]
pub trait PushInfrastructure: Send + Sync {
    /// The region runs with these credentials (or the ambient configuration's, with `None`) go
    /// to, when the platform has regions: log configuration names it. May load configuration on
    /// first use, so callers ask only when a run needs it.
    async fn region(&self, _credentials: Option<&Value>) -> Option<String> {
        None
    }

    /// Starts the run's task or job (or finds the earlier one, see the crate docs).
    async fn submit(&self, submission: &Submission) -> Result<Submitted, InfraError>;

    /// How far each task or job got, in the order given.
    async fn observe(
        &self,
        kind: Kind,
        ids: &[String],
        credentials: Option<&Value>,
    ) -> Result<Vec<Progress>, InfraError>;

    /// Asks the platform to stop a task or job; already ended or unknown is success.
    async fn stop(
        &self,
        kind: Kind,
        id: &str,
        reason: &str,
        credentials: Option<&Value>,
    ) -> Result<(), InfraError>;
}

/// Where due push runs are handed to the dispatcher: SQS on AWS (a message per run, delayed
/// until its time), a timer task in `sluice server`. Delivery is at least once and the
/// dispatcher's claim makes a duplicate harmless, so an adapter may deliver twice but must not
/// lose a run silently (an error says it could not take it; the sweep covers that too).
#[async_trait]
pub trait DispatchQueue: Send + Sync {
    /// Asks for each run to be dispatched at (not before) its time.
    async fn enqueue(
        &self,
        runs: &[(Id, sluice_core::domain::Timestamp)],
        now: sluice_core::domain::Timestamp,
    ) -> Result<(), InfraError>;
}
