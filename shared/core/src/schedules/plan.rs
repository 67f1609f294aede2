//! The scheduler's pure rules (reference §5.2): which schedules need runs, which dates to create
//! runs for, and the idempotency key that makes creating them safe to repeat.

use std::fmt::Display;
use std::time::Duration;

use chrono::{DateTime, Offset, TimeDelta, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

use super::{Schedule, ScheduleError, wire};

/// Prefect's scheduler settings (`PREFECT_SERVER_SERVICES_SCHEDULER_*`), with its defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SchedulerSettings {
    /// How often the main loop runs (`loop_seconds`, 60).
    pub loop_seconds: f64,
    /// Deployments read per page (`deployment_batch_size`, 100).
    pub deployment_batch_size: usize,
    /// At most this many runs per schedule and pass (`max_runs`, 100).
    pub max_runs: usize,
    /// Keep at least this many future runs per schedule (`min_runs`, 3).
    pub min_runs: usize,
    /// Never schedule further ahead than this (`max_scheduled_time`, 100 days).
    pub max_scheduled_time: TimeDelta,
    /// Keep runs scheduled at least this far ahead (`min_scheduled_time`, 1 hour).
    pub min_scheduled_time: TimeDelta,
    /// Runs inserted per batch (`insert_batch_size`, 500).
    pub insert_batch_size: usize,
    /// How often recently updated deployments are scheduled (`recent_deployments_loop_seconds`, 5).
    pub recent_deployments_loop_seconds: f64,
}

impl Default for SchedulerSettings {
    fn default() -> SchedulerSettings {
        SchedulerSettings {
            loop_seconds: 60.0,
            deployment_batch_size: 100,
            max_runs: 100,
            min_runs: 3,
            max_scheduled_time: TimeDelta::days(100),
            min_scheduled_time: TimeDelta::hours(1),
            insert_batch_size: 500,
            recent_deployments_loop_seconds: 5.0,
        }
    }
}

impl SchedulerSettings {
    /// The main loop's period.
    pub fn loop_interval(&self) -> Duration {
        Duration::try_from_secs_f64(self.loop_seconds).unwrap_or(Duration::from_secs(60))
    }

    /// The recent-deployments loop's period.
    pub fn recent_deployments_loop_interval(&self) -> Duration {
        Duration::try_from_secs_f64(self.recent_deployments_loop_seconds)
            .unwrap_or(Duration::from_secs(5))
    }

    /// How far back the recent-deployments loop looks at `updated`: its period plus one second,
    /// to catch deployments written while the previous pass ran.
    pub fn recent_deployments_window(&self) -> TimeDelta {
        TimeDelta::milliseconds(((self.recent_deployments_loop_seconds + 1.0) * 1000.0) as i64)
    }
}

/// Whether an active schedule needs more runs: it has fewer than `min_runs` future
/// auto-scheduled runs in state SCHEDULED, or the latest of them is less than
/// `min_scheduled_time` away. (As in Prefect's SQL, no runs and `min_runs == 0` is "no".)
pub fn schedule_needs_runs(
    existing_future_runs: usize,
    latest: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    settings: &SchedulerSettings,
) -> bool {
    existing_future_runs < settings.min_runs
        || latest.is_some_and(|latest| latest < later(now, settings.min_scheduled_time))
}

/// `at + by`, saturating at the end of chrono's range instead of panicking.
fn later(at: DateTime<Utc>, by: TimeDelta) -> DateTime<Utc> {
    at.checked_add_signed(by)
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The bounds of one scheduling pass (also `POST /deployments/{id}/schedule`'s body).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduleWindow {
    /// Dates at or after this.
    pub start: DateTime<Utc>,
    /// Dates at or before this.
    pub end: DateTime<Utc>,
    /// Keep going until a date at least this far past `start` …
    pub min_time: TimeDelta,
    /// … and at least this many dates …
    pub min_runs: usize,
    /// … but never more than this many.
    pub max_runs: usize,
}

impl ScheduleWindow {
    /// The window of the scheduler service at `now`: `now` to `now + max_scheduled_time`.
    pub fn scheduler(now: DateTime<Utc>, settings: &SchedulerSettings) -> ScheduleWindow {
        ScheduleWindow {
            start: now,
            end: later(now, settings.max_scheduled_time),
            min_time: settings.min_scheduled_time,
            min_runs: settings.min_runs,
            max_runs: settings.max_runs,
        }
    }
}

/// The dates to create runs for in `window`: up to `max_runs` dates from `start` to `end`,
/// stopping early once there are `min_runs` of them and the last is `min_time` past `start`.
pub fn dates_in_window(
    schedule: &Schedule,
    window: &ScheduleWindow,
) -> Result<Vec<DateTime<Tz>>, ScheduleError> {
    let candidates = schedule.generate(window.max_runs, window.start, Some(window.end))?;
    let enough_time = later(window.start, window.min_time);
    let mut dates = Vec::new();
    for date in candidates {
        let far_enough = date >= enough_time;
        dates.push(date);
        if dates.len() >= window.min_runs && far_enough {
            break;
        }
    }
    Ok(dates)
}

/// The dates the scheduler service creates runs for at `now` (Prefect's
/// `_generate_scheduled_flow_runs` with the service's settings).
pub fn dates_to_schedule(
    schedule: &Schedule,
    now: DateTime<Utc>,
    settings: &SchedulerSettings,
) -> Result<Vec<DateTime<Tz>>, ScheduleError> {
    dates_in_window(schedule, &ScheduleWindow::scheduler(now, settings))
}

/// A scheduled run's idempotency key: `scheduled {deployment_id} {schedule_id} {date}`, the date
/// written as Python's `str()` of it in the schedule's zone. Runs are inserted with
/// `ON CONFLICT DO NOTHING` on this key, so repeated or overlapping passes create each run once.
pub fn idempotency_key<Z: TimeZone>(
    deployment_id: impl Display,
    schedule_id: impl Display,
    date: &DateTime<Z>,
) -> String {
    format!(
        "scheduled {deployment_id} {schedule_id} {}",
        python_datetime_str(date)
    )
}

/// Python's `str()` of an aware datetime: `2026-03-10 09:00:00-04:00`, with `.ffffff` only when
/// there are microseconds, `+00:00` for UTC and `:SS` on offsets with seconds.
pub fn python_datetime_str<Z: TimeZone>(date: &DateTime<Z>) -> String {
    let mut out = date.naive_local().format("%Y-%m-%d %H:%M:%S").to_string();
    let micros = date.nanosecond() / 1000;
    if micros != 0 {
        out.push_str(&format!(".{micros:06}"));
    }
    out.push_str(&wire::format_offset(date.offset().fix().local_minus_utc()));
    out
}
