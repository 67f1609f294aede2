//! Global concurrency limits (Prefect's v2 API), tag limits (its v1 API, on the limits named
//! `tag:<tag>`), leases and the tick that takes back the slots of expired leases.
//!
//! Every change of slots reads the limits, decides with `sluice_core::concurrency` and writes
//! conditionally on the versions read; a conflict means another process changed a limit
//! meanwhile, and the decision is made again on fresh values.

use sluice_core::concurrency::{
    self as rules, ConcurrencyLease, ConcurrencyLimit, LeaseHolder, Mode, Taken,
};
use sluice_core::domain::Id;
use sluice_store::{SlotWrite, StoreError};

use crate::Services;
use crate::error::{Result, ServiceError};

/// How often a slot write is retried after losing a race before the client is told to wait.
const MAX_ATTEMPTS: usize = 32;

/// What v1 (tag) slots are held for: Prefect's clients of that API cannot renew.
const V1_LEASE_SECONDS: f64 = 100.0 * 365.0 * 86_400.0;

/// Expired leases handled per tick.
const EXPIRY_BATCH: usize = 100;

/// A new limit (Prefect's `ConcurrencyLimitV2Create`).
#[derive(Debug, Clone)]
pub struct LimitInput {
    pub name: String,
    pub limit: i64,
    pub active: bool,
    pub active_slots: i64,
    pub denied_slots: i64,
    pub slot_decay_per_second: f64,
}

/// Fields to change; `None` leaves one as it is.
#[derive(Debug, Clone, Default)]
pub struct LimitPatch {
    pub name: Option<String>,
    pub limit: Option<i64>,
    pub active: Option<bool>,
    pub active_slots: Option<i64>,
    pub denied_slots: Option<i64>,
    pub slot_decay_per_second: Option<f64>,
}

/// A request for slots.
#[derive(Debug, Clone)]
pub struct SlotRequest {
    pub names: Vec<String>,
    pub slots: i64,
    pub mode: Mode,
    /// With a lease: held until given back or expired (seconds, holder).
    pub lease: Option<(f64, Option<LeaseHolder>)>,
}

/// Slots granted: every limit the request named that exists (inactive ones too, as Prefect
/// answers), and the lease, when one was asked for.
#[derive(Debug, Clone)]
pub struct Granted {
    pub limits: Vec<ConcurrencyLimit>,
    pub lease_id: Option<Id>,
}

fn locked(wait_seconds: f64) -> ServiceError {
    ServiceError::Locked {
        detail: "Locked".to_owned(),
        retry_after: Some(jittered(wait_seconds)),
    }
}

/// The wait spread out, so clients denied together do not all come back at once.
fn jittered(mean: f64) -> f64 {
    if mean <= 0.0 {
        return 0.0;
    }
    mean * rand::random_range(0.75..1.3)
}

/// After losing a race for a limit: a short random pause, so the racers spread out instead of
/// colliding again at once (a hot limit would otherwise exhaust the attempts).
async fn backoff() {
    let micros = rand::random_range(100..2_000);
    tokio::time::sleep(std::time::Duration::from_micros(micros)).await;
}

fn not_found() -> ServiceError {
    ServiceError::NotFound("Concurrency Limit not found".to_owned())
}

fn check_limit_fields(limit: i64, active_slots: i64, denied_slots: i64, decay: f64) -> Result<()> {
    let problems = [
        (limit < 0, "limit must be greater than or equal to 0"),
        (
            active_slots < 0,
            "active_slots must be greater than or equal to 0",
        ),
        (
            denied_slots < 0,
            "denied_slots must be greater than or equal to 0",
        ),
        (
            // NaN counts as negative: it is no rate.
            decay.is_nan() || decay < 0.0,
            "slot_decay_per_second must be greater than or equal to 0",
        ),
    ];
    match problems.iter().find(|(bad, _)| *bad) {
        Some((_, why)) => Err(ServiceError::Invalid((*why).to_owned())),
        None => Ok(()),
    }
}

fn check_limit_name(name: &str) -> Result<()> {
    if name.is_empty() || name.contains(['/', '%', '&', '>', '<']) {
        return Err(ServiceError::Invalid(format!(
            "name {name:?} must be non-empty and may not contain '/', '%', '&', '>' or '<'"
        )));
    }
    Ok(())
}

impl Services {
    // ---- limits ------------------------------------------------------------------------

    pub async fn create_concurrency_limit(&self, input: LimitInput) -> Result<ConcurrencyLimit> {
        check_limit_name(&input.name)?;
        check_limit_fields(
            input.limit,
            input.active_slots,
            input.denied_slots,
            input.slot_decay_per_second,
        )?;
        let now = self.now();
        let limit = ConcurrencyLimit {
            id: uuid::Uuid::new_v4(),
            created: now,
            updated: now,
            name: input.name,
            limit: input.limit,
            active: input.active,
            active_slots: input.active_slots,
            denied_slots: input.denied_slots,
            slot_decay_per_second: input.slot_decay_per_second,
            avg_slot_occupancy_seconds: rules::INITIAL_OCCUPANCY_SECONDS,
            version: 0,
        };
        self.store
            .create_concurrency_limit(&limit)
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => ServiceError::Conflict(format!(
                    "A concurrency limit named {:?} already exists.",
                    limit.name
                )),
                other => other.into(),
            })?;
        Ok(limit)
    }

    /// By id when `id_or_name` is a UUID, else by name.
    pub async fn read_concurrency_limit(&self, id_or_name: &str) -> Result<ConcurrencyLimit> {
        let found = match id_or_name.parse::<Id>() {
            Ok(id) => self.store.read_concurrency_limit(id).await?,
            Err(_) => {
                self.store
                    .read_concurrency_limit_by_name(id_or_name)
                    .await?
            }
        };
        found.ok_or_else(not_found)
    }

    pub async fn list_concurrency_limits(
        &self,
        prefix: Option<&str>,
        limit: Option<usize>,
        offset: usize,
    ) -> Result<Vec<ConcurrencyLimit>> {
        Ok(self
            .store
            .list_concurrency_limits(prefix, limit, offset)
            .await?)
    }

    pub async fn update_concurrency_limit(
        &self,
        id_or_name: &str,
        patch: LimitPatch,
    ) -> Result<()> {
        if let Some(name) = &patch.name {
            check_limit_name(name)?;
        }
        for _ in 0..MAX_ATTEMPTS {
            let current = self.read_concurrency_limit(id_or_name).await?;
            let now = self.now();
            // Counts are brought to now first, so a changed decay applies from here on.
            let mut next = ConcurrencyLimit {
                active_slots: current.active_slots_at(now),
                denied_slots: current.denied_slots_at(now),
                updated: now,
                ..current.clone()
            };
            if let Some(name) = &patch.name {
                next.name.clone_from(name);
            }
            next.limit = patch.limit.unwrap_or(next.limit);
            next.active = patch.active.unwrap_or(next.active);
            next.active_slots = patch.active_slots.unwrap_or(next.active_slots);
            next.denied_slots = patch.denied_slots.unwrap_or(next.denied_slots);
            next.slot_decay_per_second = patch
                .slot_decay_per_second
                .unwrap_or(next.slot_decay_per_second);
            check_limit_fields(
                next.limit,
                next.active_slots,
                next.denied_slots,
                next.slot_decay_per_second,
            )?;
            match self.store.update_concurrency_limit(&next).await {
                Ok(()) => return Ok(()),
                // A taken name is final; a moved version is tried again.
                Err(StoreError::Conflict(_)) if next.name != current.name => {
                    if let Some(other) = self
                        .store
                        .read_concurrency_limit_by_name(&next.name)
                        .await?
                        && other.id != current.id
                    {
                        return Err(ServiceError::Conflict(format!(
                            "A concurrency limit named {:?} already exists.",
                            next.name
                        )));
                    }
                }
                Err(StoreError::Conflict(_)) => {}
                Err(StoreError::NotFound(_)) => return Err(not_found()),
                Err(e) => return Err(e.into()),
            }
        }
        Err(busy())
    }

    pub async fn delete_concurrency_limit(&self, id_or_name: &str) -> Result<()> {
        let limit = self.read_concurrency_limit(id_or_name).await?;
        if !self.store.delete_concurrency_limit(limit.id).await? {
            return Err(not_found());
        }
        Ok(())
    }

    // ---- slots -------------------------------------------------------------------------

    /// Takes slots on every named limit that exists and is active, or on none (then a
    /// `Locked` error says how long to wait). Names that do not exist cost nothing.
    pub async fn increment_concurrency_slots(&self, request: &SlotRequest) -> Result<Granted> {
        if request.slots <= 0 {
            return Err(ServiceError::Invalid(
                "slots must be greater than 0".to_owned(),
            ));
        }
        let lease_seconds = match &request.lease {
            Some((seconds, _)) => {
                Some(rules::lease_seconds(Some(*seconds)).map_err(ServiceError::Invalid)?)
            }
            None => None,
        };
        for _ in 0..MAX_ATTEMPTS {
            let found = self
                .store
                .read_concurrency_limits_by_names(&request.names)
                .await?;
            let now = self.now();
            let taken = rules::take(&found, request.slots, request.mode, now)
                .map_err(|e| ServiceError::Invalid(e.to_string()))?;
            match taken {
                Taken::Denied {
                    limits,
                    wait_seconds,
                } => {
                    // Counting the denial is advice for later waits: losing that race is fine.
                    let write = SlotWrite {
                        limits,
                        ..SlotWrite::default()
                    };
                    match self.store.write_slots(&write).await {
                        Ok(()) | Err(StoreError::Conflict(_)) => {}
                        Err(e) => return Err(e.into()),
                    }
                    return Err(locked(wait_seconds));
                }
                Taken::Granted(limits) => {
                    // A lease on no limit holds nothing: Prefect stores one anyway, only to reap
                    // it later. An id is still answered, and giving it back is a no-op.
                    let lease = match (lease_seconds, found.is_empty()) {
                        (Some(seconds), false) => Some(ConcurrencyLease {
                            id: uuid::Uuid::new_v4(),
                            created: now,
                            expires: rules::expiry(now, seconds),
                            limit_ids: found.iter().map(|l| l.id).collect(),
                            slots: request.slots,
                            holder: request.lease.as_ref().and_then(|(_, h)| h.clone()),
                        }),
                        _ => None,
                    };
                    let lease_id = match (&lease, lease_seconds) {
                        (Some(l), _) => Some(l.id),
                        (None, Some(_)) => Some(uuid::Uuid::new_v4()),
                        (None, None) => None,
                    };
                    let write = SlotWrite {
                        limits,
                        create_lease: lease,
                        revoke_lease: None,
                    };
                    match self.store.write_slots(&write).await {
                        Ok(()) => {
                            return Ok(Granted {
                                limits: found,
                                lease_id,
                            });
                        }
                        Err(StoreError::Conflict(_)) => backoff().await,
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        // Lost every race: the limit is hot, so waiting a moment is the right answer.
        Err(locked(0.5))
    }

    /// Gives slots back to every named limit that exists; `occupancy_seconds` (how long they
    /// were held) feeds the limits' occupancy average. Giving back slots a limit without decay
    /// never gave out is refused and changes nothing (Prefect clamps at 0 and hides the bug).
    pub async fn decrement_concurrency_slots(
        &self,
        names: &[String],
        slots: i64,
        occupancy_seconds: Option<f64>,
    ) -> Result<Vec<ConcurrencyLimit>> {
        if slots <= 0 {
            return Err(ServiceError::Invalid(
                "slots must be greater than 0".to_owned(),
            ));
        }
        for _ in 0..MAX_ATTEMPTS {
            let found = self.store.read_concurrency_limits_by_names(names).await?;
            if let Some(detail) = rules::overdrawn(&found, slots, self.now()) {
                return Err(ServiceError::Conflict(detail));
            }
            let write = SlotWrite {
                limits: rules::release(&found, slots, occupancy_seconds, self.now()),
                ..SlotWrite::default()
            };
            match self.store.write_slots(&write).await {
                Ok(()) => return Ok(found),
                Err(StoreError::Conflict(_)) => backoff().await,
                Err(e) => return Err(e.into()),
            }
        }
        Err(busy())
    }

    /// Gives back a lease's slots, once. An unknown (or already given back) lease is a no-op,
    /// as in Prefect. With `only_if_expired`, a lease renewed meanwhile is left alone (the
    /// expiry tick). Answers whether this call gave it back.
    async fn release_lease(&self, id: Id, only_if_expired: bool) -> Result<bool> {
        for _ in 0..MAX_ATTEMPTS {
            let Some(lease) = self.store.read_lease(id).await? else {
                return Ok(false);
            };
            let now = self.now();
            if only_if_expired && lease.expires >= now {
                return Ok(false);
            }
            let mut limits = Vec::new();
            for limit_id in &lease.limit_ids {
                // A limit deleted meanwhile has nothing to give back to.
                if let Some(l) = self.store.read_concurrency_limit(*limit_id).await? {
                    limits.push(l);
                }
            }
            let write = SlotWrite {
                limits: rules::release(
                    &limits,
                    lease.slots,
                    Some(rules::held_seconds(&lease, now)),
                    now,
                ),
                create_lease: None,
                revoke_lease: Some(id),
            };
            match self.store.write_slots(&write).await {
                Ok(()) => return Ok(true),
                Err(StoreError::Conflict(_)) => backoff().await,
                Err(e) => return Err(e.into()),
            }
        }
        Err(busy())
    }

    pub async fn decrement_concurrency_slots_with_lease(&self, lease_id: Id) -> Result<()> {
        self.release_lease(lease_id, false).await.map(|_| ())
    }

    /// `Gone` when the lease is not (or no longer) held.
    pub async fn renew_concurrency_lease(&self, lease_id: Id, seconds: Option<f64>) -> Result<()> {
        let seconds = rules::lease_seconds(seconds).map_err(ServiceError::Invalid)?;
        let expires = rules::expiry(self.now(), seconds);
        if self.store.renew_lease(lease_id, expires).await? {
            Ok(())
        } else {
            Err(ServiceError::Gone(
                "Lease not found - it may have expired or been revoked".to_owned(),
            ))
        }
    }

    /// The expiry tick: gives back the slots of leases whose holders stopped renewing them
    /// (a crashed task or flow). Safe to run in several processes at once: each lease is
    /// given back by exactly one. Returns how many it gave back.
    pub async fn expire_concurrency_leases(&self) -> Result<usize> {
        let expired = self
            .store
            .list_expired_leases(self.now(), EXPIRY_BATCH)
            .await?;
        let mut released = 0;
        for lease in expired {
            if self.release_lease(lease.id, true).await? {
                released += 1;
            }
        }
        Ok(released)
    }

    // ---- tag limits (v1) ----------------------------------------------------------------

    /// Creates `tag:<tag>` with `limit`, or sets the limit of the existing one: `true` when
    /// created.
    pub async fn upsert_tag_limit(
        &self,
        tag: &str,
        limit: i64,
    ) -> Result<(ConcurrencyLimit, bool)> {
        let name = rules::tag_limit_name(tag);
        for _ in 0..MAX_ATTEMPTS {
            if self
                .store
                .read_concurrency_limit_by_name(&name)
                .await?
                .is_some()
            {
                let patch = LimitPatch {
                    limit: Some(limit),
                    ..LimitPatch::default()
                };
                self.update_concurrency_limit(&name, patch).await?;
                return Ok((self.read_concurrency_limit(&name).await?, false));
            }
            let input = LimitInput {
                name: name.clone(),
                limit,
                active: true,
                active_slots: 0,
                denied_slots: 0,
                slot_decay_per_second: 0.0,
            };
            match self.create_concurrency_limit(input).await {
                Ok(created) => return Ok((created, true)),
                // Created by someone else meanwhile: update it instead.
                Err(ServiceError::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Err(busy())
    }

    /// The tag limit with this id (a limit not named `tag:...` is not one).
    pub async fn read_tag_limit_by_id(&self, id: Id) -> Result<ConcurrencyLimit> {
        self.store
            .read_concurrency_limit(id)
            .await?
            .filter(|l| rules::tag_of(&l.name).is_some())
            .ok_or_else(tag_not_found)
    }

    pub async fn read_tag_limit(&self, tag: &str) -> Result<ConcurrencyLimit> {
        self.store
            .read_concurrency_limit_by_name(&rules::tag_limit_name(tag))
            .await?
            .ok_or_else(tag_not_found)
    }

    /// The task runs holding slots of `limit`: holders of its unexpired leases.
    pub async fn tag_limit_holders(&self, limit: &ConcurrencyLimit) -> Result<Vec<Id>> {
        let now = self.now();
        Ok(self
            .store
            .list_leases()
            .await?
            .into_iter()
            .filter(|l| l.expires >= now && l.limit_ids.contains(&limit.id))
            .filter_map(|l| l.holder.filter(|h| h.kind == "task_run").map(|h| h.id))
            .collect())
    }

    /// Deletes a limit (by id, any limit, as Prefect's v1 route does) with its leases.
    pub async fn delete_limit_and_leases(&self, limit: &ConcurrencyLimit) -> Result<()> {
        for lease in self.store.list_leases().await? {
            if lease.limit_ids.contains(&limit.id) {
                self.store.revoke_lease(lease.id).await?;
            }
        }
        if !self.store.delete_concurrency_limit(limit.id).await? {
            return Err(tag_not_found());
        }
        Ok(())
    }

    /// Empties a tag limit: its leases are revoked and its slots set to those of
    /// `slot_override` (task run ids that keep a slot each, under new leases).
    pub async fn reset_tag_limit(&self, tag: &str, slot_override: &[Id]) -> Result<()> {
        let limit = self.read_tag_limit(tag).await?;
        for lease in self.store.list_leases().await? {
            if lease.limit_ids.contains(&limit.id) {
                self.store.revoke_lease(lease.id).await?;
            }
        }
        for _ in 0..MAX_ATTEMPTS {
            let current = self.read_tag_limit(tag).await?;
            let now = self.now();
            let mut next = current.clone();
            next.active_slots = i64::try_from(slot_override.len()).unwrap_or(i64::MAX);
            next.updated = now;
            match self.store.update_concurrency_limit(&next).await {
                Ok(()) => break,
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        let now = self.now();
        for holder in slot_override {
            let lease = ConcurrencyLease {
                id: uuid::Uuid::new_v4(),
                created: now,
                expires: rules::expiry(now, V1_LEASE_SECONDS),
                limit_ids: vec![limit.id],
                slots: 1,
                holder: Some(LeaseHolder {
                    kind: "task_run".to_owned(),
                    id: *holder,
                }),
            };
            self.store
                .write_slots(&SlotWrite {
                    create_lease: Some(lease),
                    ..SlotWrite::default()
                })
                .await?;
        }
        Ok(())
    }

    /// The limit names of `tags` and the limits among them that exist.
    async fn tag_limits(&self, tags: &[String]) -> Result<(Vec<String>, Vec<ConcurrencyLimit>)> {
        let names: Vec<String> = tags.iter().map(|t| rules::tag_limit_name(t)).collect();
        let found = self.store.read_concurrency_limits_by_names(&names).await?;
        Ok((names, found))
    }

    /// Prefect's v1 increment: one slot on each tag's limit for `task_run_id`, held until
    /// [`Services::release_tag_slots`]. A tag whose limit is 0 would never run: refused.
    pub async fn take_tag_slots(
        &self,
        tags: &[String],
        task_run_id: Id,
    ) -> Result<Vec<ConcurrencyLimit>> {
        let (names, found) = self.tag_limits(tags).await?;
        if let Some(zero) = found.iter().find(|l| l.limit == 0) {
            return Err(ServiceError::Locked {
                detail: format!(
                    "The concurrency limit on tag \"{}\" is 0 and will deadlock if the task tries to run again.",
                    rules::tag_of(&zero.name).unwrap_or_default()
                ),
                retry_after: None,
            });
        }
        let request = SlotRequest {
            names,
            slots: 1,
            mode: Mode::Concurrency,
            lease: Some((
                rules::MAX_LEASE_SECONDS,
                Some(LeaseHolder {
                    kind: "task_run".to_owned(),
                    id: task_run_id,
                }),
            )),
        };
        match self
            .take_with_lease_seconds(&request, V1_LEASE_SECONDS)
            .await
        {
            Ok(granted) => Ok(granted.limits),
            Err(ServiceError::Locked { .. }) => {
                let first = found
                    .first()
                    .and_then(|l| rules::tag_of(&l.name))
                    .unwrap_or_default();
                Err(ServiceError::Locked {
                    detail: format!("Concurrency limit for the {first} tag has been reached"),
                    retry_after: Some(rules::TAG_WAIT_CAP_SECONDS),
                })
            }
            Err(e) => Err(e),
        }
    }

    /// A v1 lease outlives the bounds of the v2 API (its clients cannot renew), so it is made
    /// with a bounded request and then stretched.
    async fn take_with_lease_seconds(
        &self,
        request: &SlotRequest,
        seconds: f64,
    ) -> Result<Granted> {
        let granted = self.increment_concurrency_slots(request).await?;
        if let Some(id) = granted.lease_id {
            self.store
                .renew_lease(id, rules::expiry(self.now(), seconds))
                .await?;
        }
        Ok(granted)
    }

    /// Prefect's v1 decrement: gives back the slots `task_run_id` holds on these tags' limits.
    pub async fn release_tag_slots(
        &self,
        tags: &[String],
        task_run_id: Id,
    ) -> Result<Vec<ConcurrencyLimit>> {
        let (_, found) = self.tag_limits(tags).await?;
        for lease in self.store.list_leases().await? {
            let held = lease.holder.as_ref().is_some_and(|h| h.id == task_run_id)
                && lease
                    .limit_ids
                    .iter()
                    .any(|id| found.iter().any(|l| l.id == *id));
            if held {
                self.release_lease(lease.id, false).await?;
            }
        }
        Ok(found)
    }
}

fn tag_not_found() -> ServiceError {
    ServiceError::NotFound("Concurrency limit not found".to_owned())
}

fn busy() -> ServiceError {
    ServiceError::Conflict(
        "the concurrency limit kept changing under this request; try again".to_owned(),
    )
}
