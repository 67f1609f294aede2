//! A deployment's `concurrency_limit` held through the global limit `deployment:<id>` and
//! leases, as Prefect (3.4 and later) holds it: a claim takes a slot with a lease in the store's
//! conditional write, so processes sharing a store (two servers, concurrent Lambda invocations)
//! can never exceed the limit; the slot is given back when the run leaves PENDING, RUNNING and
//! CANCELLING; a holder that dies stops renewing and the lease-expiry tick takes the slot back.

use sluice_core::concurrency::{ConcurrencyLimit, LeaseHolder, Mode};
use sluice_core::domain::{Deployment, FlowRun, Id, State, StateType};
use sluice_store::FlowRunFilter;

use crate::error::{Result, ServiceError};
use crate::{LimitInput, LimitPatch, Services, SlotRequest};

/// Where a run's state keeps the lease of its deployment slot (Prefect's field).
pub(crate) const LEASE_ID: &str = "deployment_concurrency_lease_id";

/// A slot's lease when the deployment names no grace period (Prefect's
/// `initial_deployment_lease_duration`).
const DEFAULT_LEASE_SECONDS: f64 = 300.0;

pub(crate) fn limit_name(deployment_id: Id) -> String {
    format!("deployment:{deployment_id}")
}

/// The lease id a state carries, if any.
pub(crate) fn lease_of(state: Option<&State>) -> Option<Id> {
    state?.state_details.get(LEASE_ID)?.as_str()?.parse().ok()
}

/// States in which a run holds its deployment slot.
pub(crate) fn holds_slot(t: Option<StateType>) -> bool {
    matches!(
        t,
        Some(StateType::Pending | StateType::Running | StateType::Cancelling)
    )
}

fn lease_seconds(deployment: &Deployment) -> f64 {
    deployment
        .concurrency_options
        .as_ref()
        .and_then(|o| o.get("grace_period_seconds"))
        .and_then(serde_json::Value::as_f64)
        .unwrap_or(DEFAULT_LEASE_SECONDS)
}

/// What a claim found: the slots already held by others, and the lease of the slot taken for
/// this run (none when the limit was full).
pub(crate) struct Claim {
    pub held_by_others: i64,
    pub lease_id: Option<Id>,
}

impl Services {
    /// The deployment's limit, made (or brought to the deployment's size) when needed. A limit
    /// made for runs claimed before it existed starts with their count.
    async fn deployment_limit(
        &self,
        deployment: &Deployment,
        size: i64,
    ) -> Result<ConcurrencyLimit> {
        let name = limit_name(deployment.id);
        for _ in 0..4 {
            match self.store.read_concurrency_limit_by_name(&name).await? {
                Some(l) if l.limit == size => return Ok(l),
                Some(_) => {
                    let patch = LimitPatch {
                        limit: Some(size),
                        ..LimitPatch::default()
                    };
                    self.update_concurrency_limit(&name, patch).await?;
                }
                None => {
                    let filter = FlowRunFilter {
                        deployment_ids: Some(vec![deployment.id]),
                        state_types: Some(vec![
                            StateType::Pending,
                            StateType::Running,
                            StateType::Cancelling,
                        ]),
                        ..Default::default()
                    };
                    let active = self.store.count_flow_runs(&filter).await?;
                    let input = LimitInput {
                        name: name.clone(),
                        limit: size,
                        active: true,
                        active_slots: i64::try_from(active).unwrap_or(i64::MAX).min(size),
                        denied_slots: 0,
                        slot_decay_per_second: 0.0,
                    };
                    match self.create_concurrency_limit(input).await {
                        Ok(l) => return Ok(l),
                        Err(ServiceError::Conflict(_)) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Err(ServiceError::Conflict(format!(
            "the concurrency limit of deployment {} kept changing; try again",
            deployment.id
        )))
    }

    /// Takes a slot of `deployment` for `run` with a lease, or finds the limit full.
    pub(crate) async fn claim_deployment_slot(
        &self,
        deployment: &Deployment,
        size: i64,
        run: &FlowRun,
    ) -> Result<Claim> {
        let limit = self.deployment_limit(deployment, size).await?;
        let request = SlotRequest {
            names: vec![limit.name.clone()],
            slots: 1,
            mode: Mode::Concurrency,
            lease: Some((
                lease_seconds(deployment),
                Some(LeaseHolder {
                    kind: "flow_run".to_owned(),
                    id: run.id,
                }),
            )),
        };
        match self.increment_concurrency_slots(&request).await {
            Ok(granted) => Ok(Claim {
                held_by_others: 0,
                lease_id: granted.lease_id,
            }),
            Err(ServiceError::Locked { .. }) => Ok(Claim {
                held_by_others: size,
                lease_id: None,
            }),
            Err(e) => Err(e),
        }
    }

    /// Slots of the deployment held now (for the late-run marker's CANCEL_NEW check).
    pub(crate) async fn deployment_slots_held(&self, deployment_id: Id) -> Result<Option<i64>> {
        Ok(self
            .store
            .read_concurrency_limit_by_name(&limit_name(deployment_id))
            .await?
            .map(|l| l.active_slots_at(self.now())))
    }

    /// Gives a run's slot back: its lease, or (for a run claimed before leases, whose slot was
    /// counted when the limit was made) one slot. Failures are logged: the lease expires anyway.
    pub(crate) async fn release_deployment_slot(&self, deployment_id: Id, lease: Option<Id>) {
        let result = match lease {
            Some(id) => self.decrement_concurrency_slots_with_lease(id).await,
            None => self
                .decrement_concurrency_slots(&[limit_name(deployment_id)], 1, None)
                .await
                .map(|_| ()),
        };
        if let Err(e) = result {
            tracing::warn!(deployment = %deployment_id, error = %e, "could not give a deployment slot back; its lease will expire");
        }
    }

    /// Renews a run's slot lease as it starts running (the engine renews it from then on).
    pub(crate) async fn renew_deployment_slot(&self, deployment: &Deployment, lease: Id) {
        match self
            .renew_concurrency_lease(lease, Some(lease_seconds(deployment)))
            .await
        {
            Ok(()) | Err(ServiceError::Gone(_)) => {}
            Err(e) => tracing::warn!(%lease, error = %e, "could not renew a deployment slot"),
        }
    }

    /// Forgets the limit of a deleted deployment.
    pub(crate) async fn drop_deployment_limit(&self, deployment_id: Id) -> Result<()> {
        if let Some(l) = self
            .store
            .read_concurrency_limit_by_name(&limit_name(deployment_id))
            .await?
        {
            match self.delete_limit_and_leases(&l).await {
                Ok(()) | Err(ServiceError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
