//! Global concurrency limits (Prefect's v2 limits) and their leases: the arithmetic of slots.
//!
//! A limit holds `active_slots` out of `limit`. A limit with `slot_decay_per_second > 0` is a
//! rate limit: its taken slots drain by themselves over time. Taking slots from several limits is
//! all-or-nothing. A denied request counts in `denied_slots`, which also drains, and sets how long
//! the client is told to wait. Releasing slots with the time they were held feeds a moving
//! average of occupancy that the wait estimate uses.
//!
//! Everything here works on values read from the store and answers the values to write back;
//! the store writes them conditionally on the version it read, so two processes that race
//! retry instead of both taking the last slot.
//!
//! Tag limits (Prefect's v1 API) are the limits named `tag:<tag>`; a deployment's limit is
//! `deployment:<id>`.

use serde::{Deserialize, Serialize};

use crate::domain::{Id, Timestamp};

/// The name prefix of tag limits.
pub const TAG_PREFIX: &str = "tag:";

/// A lease's length when the client does not say (seconds), and its bounds.
pub const DEFAULT_LEASE_SECONDS: f64 = 300.0;
pub const MIN_LEASE_SECONDS: f64 = 60.0;
pub const MAX_LEASE_SECONDS: f64 = 86_400.0;

/// The average occupancy a new limit starts with (seconds per slot).
pub const INITIAL_OCCUPANCY_SECONDS: f64 = 2.0;

/// The longest a client is told to wait: tag limits and other limits (Prefect's
/// `tag_concurrency_slot_wait_seconds` and `maximum_concurrency_slot_wait_seconds`).
pub const TAG_WAIT_CAP_SECONDS: f64 = 10.0;
pub const WAIT_CAP_SECONDS: f64 = 30.0;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConcurrencyLimit {
    pub id: Id,
    pub created: Timestamp,
    /// When the slot counts were last written: decay is measured from here.
    pub updated: Timestamp,
    pub name: String,
    pub limit: i64,
    pub active: bool,
    pub active_slots: i64,
    pub denied_slots: i64,
    pub slot_decay_per_second: f64,
    pub avg_slot_occupancy_seconds: f64,
    /// Bumped by every write; writes are conditional on it.
    pub version: u64,
}

/// Who holds a lease (Prefect's `ConcurrencyLeaseHolder`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseHolder {
    /// `flow_run`, `task_run` or `deployment`.
    #[serde(rename = "type")]
    pub kind: String,
    pub id: Id,
}

/// Slots taken on some limits until `expires`, unless renewed or released before.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConcurrencyLease {
    pub id: Id,
    pub created: Timestamp,
    pub expires: Timestamp,
    /// Every limit the request named that exists (inactive ones too, as Prefect records them).
    pub limit_ids: Vec<Id>,
    pub slots: i64,
    pub holder: Option<LeaseHolder>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Concurrency,
    RateLimit,
}

/// Why a request for slots is refused outright (a 422, not a wait).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlotsError {
    #[error("Slots requested is greater than the limit")]
    MoreThanLimit,
    #[error(
        "Only concurrency limits with slot decay can be used for rate limiting. The following limits do not have a decay configured: '{}'",
        .0.join(",")
    )]
    NoDecay(Vec<String>),
}

/// What a request for slots comes to.
#[derive(Debug, Clone, PartialEq)]
pub enum Taken {
    /// Every active limit had room: these are their new values, to be written.
    Granted(Vec<ConcurrencyLimit>),
    /// At least one had none: the new values (denied slots counted) and the mean number of
    /// seconds to wait before asking again.
    Denied {
        limits: Vec<ConcurrencyLimit>,
        wait_seconds: f64,
    },
}

fn elapsed_seconds(since: Timestamp, now: Timestamp) -> f64 {
    ((now - since).num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6).max(0.0)
}

/// Whole slots drained since the last write at `rate` per second.
fn drained(rate: f64, since: Timestamp, now: Timestamp) -> i64 {
    if rate <= 0.0 {
        return 0;
    }
    (rate * elapsed_seconds(since, now)).floor() as i64
}

fn wait_cap(limit: &ConcurrencyLimit) -> f64 {
    if limit.name.starts_with(TAG_PREFIX) {
        TAG_WAIT_CAP_SECONDS
    } else {
        WAIT_CAP_SECONDS
    }
}

impl ConcurrencyLimit {
    pub fn decays(&self) -> bool {
        self.slot_decay_per_second > 0.0
    }

    /// Taken slots as of `now`, after decay.
    #[must_use]
    pub fn active_slots_at(&self, now: Timestamp) -> i64 {
        (self.active_slots - drained(self.slot_decay_per_second, self.updated, now)).max(0)
    }

    /// Denied slots as of `now`: they drain at the decay rate, or for a plain limit at one per
    /// average occupancy.
    #[must_use]
    pub fn denied_slots_at(&self, now: Timestamp) -> i64 {
        let rate = if self.decays() {
            self.slot_decay_per_second
        } else {
            1.0 / self.avg_slot_occupancy_seconds.min(wait_cap(self)).max(0.1)
        };
        (self.denied_slots - drained(rate, self.updated, now)).max(0)
    }

    /// The counts brought to `now` and stamped, ready for a change.
    fn settled(&self, now: Timestamp) -> ConcurrencyLimit {
        ConcurrencyLimit {
            active_slots: self.active_slots_at(now),
            denied_slots: self.denied_slots_at(now),
            updated: now,
            ..self.clone()
        }
    }
}

/// Takes `slots` from every active limit in `limits`, or from none. Inactive limits are left
/// out of the answer (nothing changes on them).
pub fn take(
    limits: &[ConcurrencyLimit],
    slots: i64,
    mode: Mode,
    now: Timestamp,
) -> Result<Taken, SlotsError> {
    let active: Vec<&ConcurrencyLimit> = limits.iter().filter(|l| l.active).collect();
    if active.iter().any(|l| l.limit < slots) {
        return Err(SlotsError::MoreThanLimit);
    }
    if mode == Mode::RateLimit {
        let without: Vec<String> = active
            .iter()
            .filter(|l| !l.decays())
            .map(|l| l.name.clone())
            .collect();
        if !without.is_empty() {
            return Err(SlotsError::NoDecay(without));
        }
    }
    let fits = active
        .iter()
        .all(|l| l.active_slots_at(now) + slots <= l.limit);
    if fits {
        let granted = active
            .iter()
            .map(|l| {
                let mut next = l.settled(now);
                next.active_slots += slots;
                next
            })
            .collect();
        return Ok(Taken::Granted(granted));
    }
    // The wait follows the limit with the most demand on it, measured before this request's
    // denial is counted.
    let score = |l: &ConcurrencyLimit| {
        let demand = (slots + l.denied_slots_at(now)) as f64;
        if l.decays() {
            demand
        } else {
            demand / (l.limit.max(1) as f64)
        }
    };
    let blocking = active
        .iter()
        .copied()
        .max_by(|a, b| score(a).total_cmp(&score(b)));
    let wait_seconds = blocking.map_or(0.0, |l| {
        let s = score(l);
        if l.decays() {
            s / l.slot_decay_per_second
        } else {
            let cap = wait_cap(l);
            (l.avg_slot_occupancy_seconds.min(cap) * s).min(cap)
        }
    });
    let limits = active
        .iter()
        .map(|l| {
            let mut next = l.settled(now);
            next.denied_slots += slots;
            next
        })
        .collect();
    Ok(Taken::Denied {
        limits,
        wait_seconds,
    })
}

/// Gives `slots` back to every active limit in `limits`; `occupancy_seconds` (how long they were
/// held) moves the occupancy average, over about `2 × limit` samples.
#[must_use]
pub fn release(
    limits: &[ConcurrencyLimit],
    slots: i64,
    occupancy_seconds: Option<f64>,
    now: Timestamp,
) -> Vec<ConcurrencyLimit> {
    limits
        .iter()
        .filter(|l| l.active)
        .map(|l| {
            let mut next = l.settled(now);
            next.active_slots = (next.active_slots - slots).max(0);
            if let Some(held) = occupancy_seconds.filter(|s| *s > 0.0) {
                let per_slot = (held / slots.max(1) as f64).max(0.1);
                let samples = (l.limit.max(1) * 2) as f64;
                next.avg_slot_occupancy_seconds +=
                    (per_slot - next.avg_slot_occupancy_seconds) / samples;
            }
            next
        })
        .collect()
}

/// Refuses a release of more slots than a limit gave out. Limits with decay are exempt: their
/// slots drain on their own, so a holder may find fewer than it took. `None` when the release is
/// sound.
#[must_use]
pub fn overdrawn(limits: &[ConcurrencyLimit], slots: i64, now: Timestamp) -> Option<String> {
    limits
        .iter()
        .filter(|l| l.active && l.slot_decay_per_second <= 0.0)
        .find(|l| l.active_slots_at(now) < slots)
        .map(|l| {
            format!(
                "Concurrency limit '{}' holds {} active slot(s): {} cannot be released (they were never taken)",
                l.name,
                l.active_slots_at(now),
                slots
            )
        })
}

/// The occupancy of a lease released at `now`.
#[must_use]
pub fn held_seconds(lease: &ConcurrencyLease, now: Timestamp) -> f64 {
    elapsed_seconds(lease.created, now)
}

/// Checks a lease length from a client: seconds within Prefect's bounds.
pub fn lease_seconds(requested: Option<f64>) -> Result<f64, String> {
    let seconds = requested.unwrap_or(DEFAULT_LEASE_SECONDS);
    if !(MIN_LEASE_SECONDS..=MAX_LEASE_SECONDS).contains(&seconds) {
        return Err(format!(
            "lease_duration must be between {MIN_LEASE_SECONDS} and {MAX_LEASE_SECONDS} seconds, got {seconds}"
        ));
    }
    Ok(seconds)
}

/// `now + seconds`, to the microsecond.
#[must_use]
pub fn expiry(now: Timestamp, seconds: f64) -> Timestamp {
    now + chrono::Duration::microseconds((seconds * 1e6) as i64)
}

/// The name of the limit of `tag`.
#[must_use]
pub fn tag_limit_name(tag: &str) -> String {
    format!("{TAG_PREFIX}{tag}")
}

/// The tag a limit limits, when it is a tag limit.
#[must_use]
pub fn tag_of(name: &str) -> Option<&str> {
    name.strip_prefix(TAG_PREFIX)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone, Utc};

    fn at(seconds: i64) -> Timestamp {
        Utc.timestamp_opt(1_700_000_000 + seconds, 0)
            .single()
            .expect("time")
    }

    fn limit(name: &str, limit: i64, active_slots: i64) -> ConcurrencyLimit {
        ConcurrencyLimit {
            id: Id::new_v4(),
            created: at(0),
            updated: at(0),
            name: name.to_owned(),
            limit,
            active: true,
            active_slots,
            denied_slots: 0,
            slot_decay_per_second: 0.0,
            avg_slot_occupancy_seconds: INITIAL_OCCUPANCY_SECONDS,
            version: 0,
        }
    }

    #[test]
    fn releasing_slots_never_taken_is_refused_except_where_slots_decay() {
        let limits = [limit("a", 2, 1), limit("b", 2, 0)];
        assert_eq!(overdrawn(&limits[..1], 1, at(1)), None);
        let refused = overdrawn(&limits, 1, at(1)).expect("b gave nothing out");
        assert!(refused.contains("'b' holds 0 active slot(s)"), "{refused}");
        let mut decaying = limit("r", 2, 0);
        decaying.slot_decay_per_second = 1.0;
        assert_eq!(overdrawn(&[decaying], 1, at(1)), None);
        let mut off = limit("off", 2, 0);
        off.active = false;
        assert_eq!(overdrawn(&[off], 1, at(1)), None);
    }

    #[test]
    fn slots_are_taken_from_every_limit_or_from_none() {
        let limits = [limit("a", 2, 1), limit("b", 3, 0)];
        let Ok(Taken::Granted(next)) = take(&limits, 1, Mode::Concurrency, at(1)) else {
            panic!("room on both")
        };
        assert_eq!(
            next.iter().map(|l| l.active_slots).collect::<Vec<_>>(),
            [2, 1]
        );
        assert!(next.iter().all(|l| l.updated == at(1)));

        let full = [limit("a", 2, 2), limit("b", 3, 0)];
        let Ok(Taken::Denied { limits, .. }) = take(&full, 1, Mode::Concurrency, at(1)) else {
            panic!("a is full")
        };
        assert_eq!(
            limits.iter().map(|l| l.active_slots).collect::<Vec<_>>(),
            [2, 0],
            "nothing taken"
        );
        assert_eq!(
            limits.iter().map(|l| l.denied_slots).collect::<Vec<_>>(),
            [1, 1],
            "the denial is counted on every active limit"
        );
    }

    #[test]
    fn inactive_limits_are_neither_checked_nor_changed() {
        let mut off = limit("off", 1, 1);
        off.active = false;
        let Ok(Taken::Granted(next)) = take(&[off], 1, Mode::Concurrency, at(1)) else {
            panic!("an inactive limit never blocks")
        };
        assert!(next.is_empty());
    }

    #[test]
    fn refusals_that_no_wait_can_cure() {
        assert_eq!(
            take(&[limit("a", 1, 0)], 2, Mode::Concurrency, at(0)),
            Err(SlotsError::MoreThanLimit)
        );
        assert_eq!(
            take(&[limit("zero", 0, 0)], 1, Mode::Concurrency, at(0)),
            Err(SlotsError::MoreThanLimit)
        );
        let err = take(
            &[limit("a", 5, 0), limit("b", 5, 0)],
            1,
            Mode::RateLimit,
            at(0),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Only concurrency limits with slot decay can be used for rate limiting. The following limits do not have a decay configured: 'a,b'"
        );
    }

    #[test]
    fn a_rate_limit_drains_its_slots_over_time() {
        let mut rate = limit("api", 2, 2);
        rate.slot_decay_per_second = 0.5;
        assert_eq!(
            rate.active_slots_at(at(1)),
            2,
            "half a slot drained: none whole"
        );
        assert_eq!(rate.active_slots_at(at(2)), 1);
        assert_eq!(rate.active_slots_at(at(100)), 0, "never below zero");
        let Ok(Taken::Denied { wait_seconds, .. }) =
            take(&[rate.clone()], 1, Mode::RateLimit, at(1))
        else {
            panic!("still full after one second")
        };
        assert!(
            (wait_seconds - 2.0).abs() < 1e-9,
            "one slot at 0.5/s: {wait_seconds}"
        );
        let Ok(Taken::Granted(next)) = take(&[rate], 1, Mode::RateLimit, at(2)) else {
            panic!("a slot drained after two seconds")
        };
        assert_eq!(next[0].active_slots, 2);
        assert_eq!(next[0].updated, at(2));
    }

    #[test]
    fn the_wait_grows_with_demand_and_is_capped() {
        let mut busy = limit("db", 1, 1);
        busy.avg_slot_occupancy_seconds = 4.0;
        let wait =
            |l: &ConcurrencyLimit| match take(std::slice::from_ref(l), 1, Mode::Concurrency, at(0))
            {
                Ok(Taken::Denied { wait_seconds, .. }) => wait_seconds,
                other => panic!("{other:?}"),
            };
        assert!((wait(&busy) - 4.0).abs() < 1e-9);
        busy.denied_slots = 3;
        assert!((wait(&busy) - 16.0).abs() < 1e-9, "four waiting");
        busy.name = "tag:db".to_owned();
        assert!((wait(&busy) - TAG_WAIT_CAP_SECONDS).abs() < 1e-9, "tag cap");
        busy.name = "db".to_owned();
        busy.denied_slots = 100;
        assert!((wait(&busy) - WAIT_CAP_SECONDS).abs() < 1e-9, "global cap");
    }

    #[test]
    fn release_frees_slots_and_learns_occupancy() {
        let l = limit("db", 2, 2);
        let next = release(std::slice::from_ref(&l), 1, Some(6.0), at(10));
        assert_eq!(next[0].active_slots, 1);
        // 2.0 + (6.0 - 2.0) / (2 × 2)
        assert!((next[0].avg_slot_occupancy_seconds - 3.0).abs() < 1e-9);
        let next = release(&[l], 5, None, at(10));
        assert_eq!(next[0].active_slots, 0, "never below zero");
        assert!((next[0].avg_slot_occupancy_seconds - 2.0).abs() < 1e-9);
    }

    #[test]
    fn denied_slots_drain_by_occupancy_on_a_plain_limit() {
        let mut l = limit("db", 1, 1);
        l.denied_slots = 5;
        l.avg_slot_occupancy_seconds = 2.0;
        assert_eq!(l.denied_slots_at(at(4)), 3, "one every two seconds");
    }

    #[test]
    fn lease_lengths_are_bounded() {
        assert_eq!(lease_seconds(None), Ok(300.0));
        assert_eq!(lease_seconds(Some(60.0)), Ok(60.0));
        assert!(lease_seconds(Some(59.9)).is_err());
        assert!(lease_seconds(Some(86_401.0)).is_err());
        assert_eq!(expiry(at(0), 1.5), at(0) + Duration::milliseconds(1500));
        assert_eq!(tag_of("tag:db"), Some("db"));
        assert_eq!(tag_of("db"), None);
    }
}
