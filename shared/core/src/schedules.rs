//! Deployment schedules: Prefect's interval, cron and rrule schedules (reference §5.1) and the
//! scheduler's planning rules (§5.2).
//!
//! The JSON shapes are Prefect's, unknown fields included (they are rejected). Dates follow
//! Prefect 3.9's `prefect.server.schemas.schedules` on its `whenever` code path (the one every
//! Python from 3.13 runs), DST rules included:
//!
//! - **interval**: `anchor + k·interval`, with whole days added on the local calendar (a daily
//!   09:00 stays 09:00 across DST) and the remainder as elapsed time (an hourly schedule fires
//!   every UTC hour). Day-multiple intervals in a zone other than UTC step day by day from the
//!   anchor, so a time that a spring-forward skips moves forward once and stays moved.
//! - **cron**: matched on local wall-clock time; a repeated time fires at its first occurrence
//!   and a skipped one an hour later (02:30 → 03:30 on spring-forward day).
//! - **rrule**: expanded on wall-clock time with `DTSTART` (and `UNTIL`, `RDATE`, `EXDATE`) read
//!   as floating times in the schedule's zone; a skipped time moves back (dateutil's rule).
//!
//! Nothing here reads a clock: [`Schedule::normalize`] and the planning functions take `now`.
//!
//! Known differences, all where Prefect's libraries misbehave:
//! - croniter skips some month starts after a short month when a day list runs past the month's
//!   end (`30 3 */3 * *` misses 1 March 2024), and raises on `#`/`L` weekdays OR-ed with a day
//!   of month that can never coincide; croner fires on those days.
//! - dateutil has no DST rules after 2037 and reads skipped or repeated times wrongly in zones
//!   with negative DST (Europe/Dublin, Africa/Casablanca); Sluice uses the real rules.
//! - Validation is stricter where Prefect accepts schedules that never run or run at random:
//!   croniter's `R`/`H` in any form, and rrule parts the RFC forbids (`BYMONTH=13`, `INTERVAL=-1`,
//!   `BYMONTHDAY` with `FREQ=WEEKLY`, repeated parts, `BYEASTER`).

mod cron;
mod interval;
mod plan;
mod rrule_schedule;
mod wire;
mod zone;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

pub use cron::CronSchedule;
pub use interval::{IntervalSchedule, parse_interval_seconds};
pub use plan::{
    ScheduleWindow, SchedulerSettings, dates_in_window, dates_to_schedule, idempotency_key,
    python_datetime_str, schedule_needs_runs,
};
pub use rrule_schedule::{MAX_RRULE_LENGTH, RRuleSchedule, normalize_rrule};

/// At most this many candidate dates are examined per call (Prefect's `MAX_ITERATIONS`); pass it
/// as `n` to get every date up to `end`, as Prefect does when `n` is omitted.
pub const MAX_ITERATIONS: usize = 1000;

/// Why a schedule is rejected or cannot produce dates. Messages name the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("schedule must be a JSON object with exactly one of 'interval', 'cron' or 'rrule'")]
    UnknownKind,
    #[error("unknown field '{field}' in {kind} schedule")]
    UnknownField { kind: &'static str, field: String },
    #[error("invalid {field}: {reason}")]
    InvalidField { field: &'static str, reason: String },
    #[error("invalid interval: {0}")]
    InvalidInterval(String),
    #[error("invalid anchor_date '{value}': {reason}")]
    InvalidAnchorDate { value: String, reason: String },
    #[error("invalid timezone '{0}': not an IANA time zone name (for example America/New_York)")]
    InvalidTimezone(String),
    #[error("invalid cron expression '{cron}': {reason}")]
    InvalidCron { cron: String, reason: String },
    #[error("invalid rrule '{rrule}': {reason}")]
    InvalidRRule { rrule: String, reason: String },
    #[error("interval schedule has no anchor_date; normalize it with the current time first")]
    MissingAnchorDate,
}

/// One of Prefect's three schedule kinds, told apart by which of `interval`, `cron` or `rrule`
/// its JSON object has.
#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    Interval(IntervalSchedule),
    Cron(CronSchedule),
    RRule(RRuleSchedule),
}

impl Schedule {
    /// Parses and validates Prefect's JSON shape of a schedule.
    pub fn from_json(value: &Value) -> Result<Schedule, ScheduleError> {
        let map = value.as_object().ok_or(ScheduleError::UnknownKind)?;
        let kinds = ["interval", "cron", "rrule"].map(|k| map.contains_key(k));
        match kinds {
            [true, false, false] => IntervalSchedule::from_json(value).map(Schedule::Interval),
            [false, true, false] => CronSchedule::from_json(value).map(Schedule::Cron),
            [false, false, true] => RRuleSchedule::from_json(value).map(Schedule::RRule),
            _ => Err(ScheduleError::UnknownKind),
        }
    }

    /// Prefect's JSON shape: `interval` as float seconds, `anchor_date` ISO-8601 with offset.
    pub fn to_json(&self) -> Value {
        match self {
            Schedule::Interval(s) => s.to_json(),
            Schedule::Cron(s) => s.to_json(),
            Schedule::RRule(s) => s.to_json(),
        }
    }

    /// Prefect's class name, which it shows as a scheduled run's `created_by.display_value`
    /// when the schedule has no slug.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Schedule::Interval(_) => "IntervalSchedule",
            Schedule::Cron(_) => "CronSchedule",
            Schedule::RRule(_) => "RRuleSchedule",
        }
    }

    /// The zone dates are computed and returned in (UTC when none is set).
    pub fn timezone(&self) -> Result<Tz, ScheduleError> {
        let name = match self {
            Schedule::Interval(s) => s.timezone.as_deref(),
            Schedule::Cron(s) => s.timezone.as_deref(),
            Schedule::RRule(s) => s.timezone.as_deref(),
        };
        zone::parse_timezone(name)
    }

    /// Checks what Prefect's validators check (and what the crates underneath need).
    pub fn validate(&self) -> Result<(), ScheduleError> {
        match self {
            Schedule::Interval(s) => s.validate(),
            Schedule::Cron(s) => s.validate(),
            Schedule::RRule(s) => s.validate(),
        }
    }

    /// Fills in what Prefect fills in when a schedule is written through the API: an interval's
    /// missing `anchor_date` becomes `now` and its missing `timezone` UTC, and an rrule without
    /// `DTSTART` gets one ([`normalize_rrule`]).
    pub fn normalize(&mut self, now: DateTime<Utc>) {
        match self {
            Schedule::Interval(s) => s.normalize(now),
            Schedule::Cron(_) => {}
            Schedule::RRule(s) => s.normalize(now),
        }
    }

    /// [`Schedule::normalize`] on a copy.
    #[must_use]
    pub fn normalized(&self, now: DateTime<Utc>) -> Schedule {
        let mut copy = self.clone();
        copy.normalize(now);
        copy
    }

    /// Up to `n` dates at or after `start` and not after `end` (both inclusive), in the
    /// schedule's zone, examining at most about [`MAX_ITERATIONS`] candidates. As in Prefect, `n`
    /// of 0 still allows one date.
    ///
    /// They are sorted as Python sorts datetimes of one zone: by wall-clock time, so in the hour
    /// repeated when clocks go back the two passes interleave (01:30 EDT, 01:30 EST, 01:40 EDT…).
    pub fn get_dates(
        &self,
        n: usize,
        start: DateTime<Utc>,
        end: Option<DateTime<Utc>>,
    ) -> Result<Vec<DateTime<Tz>>, ScheduleError> {
        let mut dates = self.generate(n, start, end)?;
        // Stable, so equal wall times keep the generator's (chronological) order, as in Python.
        dates.sort_by_key(DateTime::naive_local);
        Ok(dates)
    }

    /// The dates in the order Prefect's generator yields them (what the scheduler consumes).
    pub(crate) fn generate(
        &self,
        n: usize,
        start: DateTime<Utc>,
        end: Option<DateTime<Utc>>,
    ) -> Result<Vec<DateTime<Tz>>, ScheduleError> {
        match self {
            Schedule::Interval(s) => s.generate(n, start, end),
            Schedule::Cron(s) => s.generate(n, start, end),
            Schedule::RRule(s) => s.generate(n, start, end),
        }
    }
}

impl From<IntervalSchedule> for Schedule {
    fn from(s: IntervalSchedule) -> Schedule {
        Schedule::Interval(s)
    }
}

impl From<CronSchedule> for Schedule {
    fn from(s: CronSchedule) -> Schedule {
        Schedule::Cron(s)
    }
}

impl From<RRuleSchedule> for Schedule {
    fn from(s: RRuleSchedule) -> Schedule {
        Schedule::RRule(s)
    }
}

/// Serde goes through the JSON value so that parsing validates and errors read like Prefect's
/// rather than serde's "data did not match any variant".
macro_rules! serde_via_json {
    ($($ty:ty),*) => {$(
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                self.to_json().serialize(serializer)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<$ty, D::Error> {
                let value = Value::deserialize(deserializer)?;
                <$ty>::from_json(&value).map_err(serde::de::Error::custom)
            }
        }
    )*};
}

serde_via_json!(Schedule, IntervalSchedule, CronSchedule, RRuleSchedule);
