//! `IntervalSchedule`: runs at `anchor_date + k·interval`.

use std::collections::HashSet;

use chrono::{DateTime, FixedOffset, LocalResult, Offset, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use serde_json::{Map, Value, json};

use super::zone::{self, GapPolicy};
use super::{MAX_ITERATIONS, ScheduleError, wire};

const MICROS_PER_SECOND: i64 = 1_000_000;
const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SECOND;
/// Python's `timedelta` stops at 999,999,999 days.
const MAX_DAYS: f64 = 999_999_999.0;

/// Prefect's `IntervalSchedule`: `{"interval": seconds, "anchor_date": ISO, "timezone": str}`.
#[derive(Debug, Clone, PartialEq)]
pub struct IntervalSchedule {
    /// Seconds between runs, as the JSON carries it (Prefect keeps microsecond precision).
    pub interval: f64,
    /// The instant the series is anchored to. Prefect defaults it to the time of writing;
    /// [`IntervalSchedule::normalize`] does that here.
    pub anchor_date: Option<DateTime<FixedOffset>>,
    /// IANA zone whose calendar days are added; UTC when unset.
    pub timezone: Option<String>,
}

impl IntervalSchedule {
    const FIELDS: [&'static str; 3] = ["interval", "anchor_date", "timezone"];

    /// Parses and validates `{"interval": …, "anchor_date": …, "timezone": …}`. A number is
    /// seconds; a string may be an ISO-8601 duration or `HH:MM:SS` ([`parse_interval_seconds`]).
    /// An anchor without an offset is read in the schedule's zone.
    pub fn from_json(value: &Value) -> Result<IntervalSchedule, ScheduleError> {
        let map = wire::object(value, "interval", &Self::FIELDS)?;
        let interval = match map.get("interval") {
            Some(Value::Number(n)) => n.as_f64().ok_or_else(|| {
                ScheduleError::InvalidInterval(format!("{n} is not a number of seconds"))
            })?,
            Some(Value::String(s)) => parse_interval_seconds(s)?,
            _ => {
                return Err(ScheduleError::InvalidInterval(
                    "expected a number of seconds".to_owned(),
                ));
            }
        };
        let mut timezone = wire::optional_string(map, "timezone")?;
        let tz = zone::parse_timezone(timezone.as_deref())?;
        let anchor_date = parse_anchor(map, tz)?;
        // Prefect always settles the zone; an anchor's fixed offset is no zone, so it is UTC.
        if timezone.is_none() && anchor_date.is_some() {
            timezone = Some("UTC".to_owned());
        }
        let schedule = IntervalSchedule {
            interval: round_to_micros(interval),
            anchor_date,
            timezone,
        };
        schedule.validate()?;
        Ok(schedule)
    }

    /// Prefect's JSON shape; `anchor_date` is left out while it is unset.
    pub fn to_json(&self) -> Value {
        let mut map = Map::new();
        let interval = match self.micros() {
            Ok(us) => us as f64 / MICROS_PER_SECOND as f64,
            Err(_) => self.interval,
        };
        map.insert("interval".to_owned(), json!(interval));
        if let Some(anchor) = &self.anchor_date {
            map.insert(
                "anchor_date".to_owned(),
                Value::String(wire::format_datetime(anchor)),
            );
        }
        map.insert("timezone".to_owned(), json!(self.timezone));
        Value::Object(map)
    }

    /// The interval must be positive (after rounding to microseconds, as Python's `timedelta`
    /// does) and the zone a known IANA name.
    pub fn validate(&self) -> Result<(), ScheduleError> {
        self.micros()?;
        zone::parse_timezone(self.timezone.as_deref())?;
        Ok(())
    }

    /// Fills Prefect's defaults: the anchor is `now` and the zone UTC.
    pub fn normalize(&mut self, now: DateTime<Utc>) {
        if self.anchor_date.is_none() {
            self.anchor_date = Some(now.fixed_offset());
        }
        if self.timezone.is_none() {
            self.timezone = Some("UTC".to_owned());
        }
    }

    fn micros(&self) -> Result<i64, ScheduleError> {
        if !self.interval.is_finite() {
            return Err(ScheduleError::InvalidInterval(
                "must be a finite number of seconds".to_owned(),
            ));
        }
        if self.interval > MAX_DAYS * 86_400.0 {
            return Err(ScheduleError::InvalidInterval(
                "must be at most 999999999 days".to_owned(),
            ));
        }
        let micros = (self.interval * 1e6).round() as i64;
        if micros <= 0 {
            return Err(ScheduleError::InvalidInterval(
                "must be greater than 0 seconds".to_owned(),
            ));
        }
        Ok(micros)
    }

    /// Prefect's `_get_dates_generator`: dates in the order it yields them.
    pub(crate) fn generate(
        &self,
        n: usize,
        start: DateTime<Utc>,
        end: Option<DateTime<Utc>>,
    ) -> Result<Vec<DateTime<Tz>>, ScheduleError> {
        let total_us = self.micros()?;
        let anchor = self.anchor_date.ok_or(ScheduleError::MissingAnchorDate)?;
        let tz = zone::parse_timezone(self.timezone.as_deref())?;
        let steps = Steps {
            tz,
            anchor: anchor.with_timezone(&tz),
            days: total_us / MICROS_PER_DAY,
            rest_us: total_us % MICROS_PER_DAY,
            total_us,
        };
        let start = start.with_timezone(&tz);
        let end = end.map(|e| e.with_timezone(&tz));
        // Prefect compares the name with "UTC" after defaulting an empty zone to it.
        let literal_utc = matches!(self.timezone.as_deref(), None | Some("" | "UTC"));
        Ok(steps.dates(n, start, end, literal_utc).unwrap_or_default())
    }
}

/// Python's `timedelta(seconds=x)` keeps whole microseconds.
fn round_to_micros(seconds: f64) -> f64 {
    if seconds.is_finite() && seconds.abs() < 1e15 {
        (seconds * 1e6).round() / 1e6
    } else {
        seconds
    }
}

fn parse_anchor(
    map: &Map<String, Value>,
    tz: Tz,
) -> Result<Option<DateTime<FixedOffset>>, ScheduleError> {
    let invalid = |value: String, reason: &str| ScheduleError::InvalidAnchorDate {
        value,
        reason: reason.to_owned(),
    };
    match map.get("anchor_date") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => match wire::parse_datetime(text) {
            Some(Ok(dt)) => Ok(Some(dt)),
            // Prefect (on Python 3.13+) reads an offset-less anchor in the schedule's zone.
            Some(Err(naive)) => zone::localize(tz, naive, GapPolicy::Forward)
                .map(|dt| Some(dt.fixed_offset()))
                .ok_or_else(|| invalid(text.clone(), "out of range")),
            None => Err(invalid(text.clone(), "expected an ISO-8601 date-time")),
        },
        Some(Value::Number(n)) => n
            .as_f64()
            .and_then(wire::datetime_from_number)
            .map(Some)
            .ok_or_else(|| invalid(n.to_string(), "not a valid timestamp")),
        Some(other) => Err(invalid(other.to_string(), "expected an ISO-8601 date-time")),
    }
}

/// Reads an interval written as text the way pydantic reads a `timedelta`: an ISO-8601 duration
/// (`PT1H`, `P1DT30M`, `P2W`) or `[D day[s], ]HH:MM:SS[.ffffff]` (Python's `str(timedelta)`).
/// Calendar years and months have no fixed length, so they are refused.
pub fn parse_interval_seconds(text: &str) -> Result<f64, ScheduleError> {
    let text = text.trim();
    let invalid = |reason: &str| ScheduleError::InvalidInterval(format!("'{text}': {reason}"));
    let seconds = if let Some(iso) = text.strip_prefix(['P', 'p']) {
        parse_iso_duration(iso).map_err(|r| invalid(&r))?
    } else {
        parse_clock_duration(text)
            .ok_or_else(|| invalid("expected seconds, an ISO-8601 duration or HH:MM:SS"))?
    };
    Ok(seconds)
}

fn parse_iso_duration(body: &str) -> Result<f64, String> {
    let mut total = 0.0;
    let mut in_time = false;
    let mut number = String::new();
    let mut any = false;
    for c in body.chars() {
        match c.to_ascii_uppercase() {
            'T' if !in_time && number.is_empty() => in_time = true,
            '0'..='9' | '.' | ',' => number.push(if c == ',' { '.' } else { c }),
            unit => {
                let value: f64 = number
                    .parse()
                    .map_err(|_| format!("bad number before '{unit}'"))?;
                number.clear();
                any = true;
                total += value
                    * match (in_time, unit) {
                        (false, 'W') => 7.0 * 86_400.0,
                        (false, 'D') => 86_400.0,
                        (true, 'H') => 3600.0,
                        (true, 'M') => 60.0,
                        (true, 'S') => 1.0,
                        (false, 'Y' | 'M') => {
                            return Err("calendar years and months are not supported".to_owned());
                        }
                        _ => return Err(format!("unexpected '{c}'")),
                    };
            }
        }
    }
    if !number.is_empty() || !any {
        return Err("incomplete ISO-8601 duration".to_owned());
    }
    Ok(total)
}

fn parse_clock_duration(text: &str) -> Option<f64> {
    let (days, clock) = match text.split_once(" day") {
        Some((days, rest)) => {
            let rest = rest.strip_prefix('s').unwrap_or(rest);
            let rest = rest.strip_prefix(',').unwrap_or(rest);
            (days.trim().parse::<f64>().ok()?, rest.trim())
        }
        None => (0.0, text),
    };
    let mut parts = clock.split(':');
    let (h, m, s) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let h: u32 = h.parse().ok()?;
    let m: u32 = m.parse().ok()?;
    let s: f64 = s.parse().ok()?;
    (m < 60 && s < 60.0).then(|| days * 86_400.0 + f64::from(h) * 3600.0 + f64::from(m) * 60.0 + s)
}

/// The arithmetic of one interval schedule in its zone.
struct Steps {
    tz: Tz,
    anchor: DateTime<Tz>,
    /// Whole days of the interval, added on the local calendar.
    days: i64,
    /// The rest of the interval, added as elapsed time.
    rest_us: i64,
    total_us: i64,
}

impl Steps {
    /// Whole days on the local calendar, as `whenever` adds them: a skipped wall time moves
    /// forward; a repeated one keeps the offset `at` has if that is one of its two, else takes
    /// the first occurrence.
    fn add_days(&self, at: &DateTime<Tz>, days: i64) -> Option<DateTime<Tz>> {
        if days == 0 {
            return Some(*at);
        }
        let wall = at
            .naive_local()
            .checked_add_signed(TimeDelta::try_days(days)?)?;
        match self.tz.from_local_datetime(&wall) {
            LocalResult::Ambiguous(earlier, later) => {
                let keep_later = later.offset().fix() == at.offset().fix();
                Some(if keep_later { later } else { earlier })
            }
            _ => zone::localize(self.tz, wall, GapPolicy::Forward),
        }
    }

    fn add_micros(at: &DateTime<Tz>, micros: i64) -> Option<DateTime<Tz>> {
        at.checked_add_signed(TimeDelta::microseconds(micros))
    }

    /// One step after `at`: the days, then the rest.
    fn advance(&self, at: &DateTime<Tz>) -> Option<DateTime<Tz>> {
        Self::add_micros(&self.add_days(at, self.days)?, self.rest_us)
    }

    /// The `k`-th date counted straight from the anchor. Exact for intervals that are all days
    /// or all elapsed time; a mixed interval jumps by elapsed time, as Prefect does.
    fn jump(&self, k: i64) -> Option<DateTime<Tz>> {
        if self.days == 0 || self.rest_us == 0 {
            let shifted = self.add_days(&self.anchor, self.days.checked_mul(k)?)?;
            Self::add_micros(&shifted, self.rest_us.checked_mul(k)?)
        } else {
            Self::add_micros(&self.anchor, self.total_us.checked_mul(k)?)
        }
    }

    /// Prefect's loop. `None` when the dates run out of chrono's range; the caller then returns
    /// what it has (nothing), which Prefect would fail on.
    fn dates(
        &self,
        n: usize,
        start: DateTime<Tz>,
        end: Option<DateTime<Tz>>,
        zone_is_utc_literal: bool,
    ) -> Option<Vec<DateTime<Tz>>> {
        let whole_days = self.days != 0 && self.rest_us == 0;
        // Before the anchor, day intervals count back from it, since stepping forward from a
        // date a skipped hour moved could never land on the anchor again.
        let before_anchor_days = start < self.anchor && whole_days;
        let mut offset: i64 = 0;
        let mut next = if start >= self.anchor && whole_days && !zone_is_utc_literal {
            // Calendar days step one at a time from the anchor so that a time a spring-forward
            // skipped stays moved for every later date, as in Prefect's sequential seek.
            let mut at = self.anchor;
            while at < start {
                at = self.advance(&at)?;
            }
            at
        } else {
            let approx = self.days as f64 * 86_400.0
                + (self.total_us as f64 / 1e6 - (self.days * 86_400) as f64);
            let elapsed = (start - self.anchor).num_microseconds()? as f64 / 1e6;
            // Python's int() truncates toward zero; `as` does too and saturates.
            offset = (elapsed / approx) as i64;
            let mut at = self.jump(offset)?;
            // Across a DST change the elapsed-time estimate can overshoot the start.
            while at > start {
                offset -= 1;
                at = self.jump(offset)?;
            }
            at
        };
        let step = |offset: &mut i64, at: &DateTime<Tz>| {
            if before_anchor_days && *offset < 0 {
                *offset += 1;
                self.jump(*offset)
            } else {
                self.advance(at)
            }
        };
        while next < start {
            next = step(&mut offset, &next)?;
        }

        let mut dates = Vec::new();
        let mut seen = HashSet::new();
        let mut counter = 0;
        loop {
            if end.is_some_and(|end| next > end) {
                break;
            }
            if seen.insert(next.with_timezone(&Utc)) {
                dates.push(next);
            }
            if dates.len() >= n || counter > MAX_ITERATIONS {
                break;
            }
            counter += 1;
            match step(&mut offset, &next) {
                Some(at) => next = at,
                None => break,
            }
        }
        Some(dates)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn interval_strings() {
        let ok = [
            ("PT1H", 3600.0),
            ("P1D", 86_400.0),
            ("P1DT1H30M", 91_800.0),
            ("PT0.5S", 0.5),
            ("P2W", 1_209_600.0),
            ("01:00:00", 3600.0),
            ("1 day, 01:00:00", 90_000.0),
            ("2 days, 0:00:30.5", 172_830.5),
        ];
        for (text, seconds) in ok {
            assert_eq!(parse_interval_seconds(text).unwrap(), seconds, "{text}");
        }
        for bad in [
            "", "P", "PT", "P1M", "P1Y", "3600", "1:61:00", "abc", "PT1X",
        ] {
            assert!(parse_interval_seconds(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rounds_to_microseconds_like_timedelta() {
        assert_eq!(round_to_micros(0.0000015), 0.000002);
        assert_eq!(round_to_micros(1.0000004), 1.0);
        assert_eq!(round_to_micros(86_400.5), 86_400.5);
    }
}
