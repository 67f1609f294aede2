//! `RRuleSchedule`: RFC 5545 recurrence rules, expanded on wall-clock time.
//!
//! Prefect parses the text with `dateutil.rrule.rrulestr` and then relabels every date in it
//! (`DTSTART`, `UNTIL`, `RDATE`, `EXDATE`) with the schedule's zone, keeping the digits. So the
//! rule is really expanded on floating wall-clock time. Sluice does the same: the rrule crate
//! expands the rule on wall-clock digits held as UTC (a zone without clock changes), and each
//! occurrence is then placed in the schedule's zone the way `dateutil.tz` places it.

use std::collections::HashSet;

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeDelta, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use rrule::{Frequency, RRule, RRuleSet, RRuleSetIter, Unvalidated};
use serde_json::{Value, json};

use super::zone::{self, GapPolicy};
use super::{MAX_ITERATIONS, ScheduleError, wire};

/// Prefect refuses longer rrule strings ("about a year of RDATEs").
pub const MAX_RRULE_LENGTH: usize = 6500;

/// Occurrences before the requested start that are skipped before giving up; only reachable by
/// rules with `COUNT` (others are fast-forwarded), which dateutil would also crawl through.
const MAX_SKIPPED: usize = 1_000_000;

/// Prefect's `RRuleSchedule`: `{"rrule": str, "timezone": str}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RRuleSchedule {
    /// An RFC 5545 rule, optionally with `DTSTART`, `RDATE`, `EXRULE` and `EXDATE` lines.
    pub rrule: String,
    /// IANA zone the rule's floating times are read in; Prefect defaults it to "UTC".
    pub timezone: Option<String>,
}

impl RRuleSchedule {
    const FIELDS: [&'static str; 2] = ["rrule", "timezone"];

    pub fn new(rrule: impl Into<String>) -> RRuleSchedule {
        RRuleSchedule {
            rrule: rrule.into(),
            timezone: Some("UTC".to_owned()),
        }
    }

    /// Parses and validates `{"rrule": …, "timezone": …}`; a missing zone is "UTC".
    pub fn from_json(value: &Value) -> Result<RRuleSchedule, ScheduleError> {
        let map = wire::object(value, "rrule", &Self::FIELDS)?;
        let rrule = wire::required_string(map, "rrule")?;
        let timezone = match map.get("timezone") {
            None => Some("UTC".to_owned()),
            Some(_) => wire::optional_string(map, "timezone")?,
        };
        let schedule = RRuleSchedule { rrule, timezone };
        schedule.validate()?;
        Ok(schedule)
    }

    pub fn to_json(&self) -> Value {
        json!({ "rrule": self.rrule, "timezone": self.timezone })
    }

    /// The string must be at most [`MAX_RRULE_LENGTH`] characters, parse as dateutil parses it
    /// and pass the rrule crate's RFC checks; the zone must be a known IANA name.
    pub fn validate(&self) -> Result<(), ScheduleError> {
        let length = self.rrule.chars().count();
        if length > MAX_RRULE_LENGTH {
            let head: String = self.rrule.chars().take(40).collect();
            return Err(ScheduleError::InvalidRRule {
                rrule: format!("{head}..."),
                reason: format!("max length is {MAX_RRULE_LENGTH}, got {length}"),
            });
        }
        let parsed = parse(&self.rrule).map_err(|r| self.invalid(r))?;
        whole_set(&parsed).map_err(|r| self.invalid(r))?;
        zone::parse_timezone(self.timezone.as_deref())?;
        Ok(())
    }

    /// Gives a rule without `DTSTART` one, as Prefect does on API writes ([`normalize_rrule`]).
    pub fn normalize(&mut self, now: DateTime<Utc>) {
        self.rrule = normalize_rrule(&self.rrule, self.timezone.as_deref(), now);
    }

    fn invalid(&self, reason: String) -> ScheduleError {
        ScheduleError::InvalidRRule {
            rrule: self.rrule.clone(),
            reason,
        }
    }

    /// Prefect's `_get_dates_generator`: dates in the order it yields them.
    pub(crate) fn generate(
        &self,
        n: usize,
        start: DateTime<Utc>,
        end: Option<DateTime<Utc>>,
    ) -> Result<Vec<DateTime<Tz>>, ScheduleError> {
        let tz = zone::parse_timezone(self.timezone.as_deref())?;
        let parsed = parse(&self.rrule).map_err(|r| self.invalid(r))?;
        let streams = streams(&parsed, start.with_timezone(&tz).naive_local())
            .map_err(|r| self.invalid(r))?;
        let mut iters: Vec<_> = streams
            .iter()
            .map(|s| ((&s.set).into_iter(), s.filter.as_ref()))
            .collect();
        let mut skipped = 0;
        let mut heads: Vec<_> = iters
            .iter_mut()
            .map(|(it, filter)| next_kept(it, *filter, &mut skipped))
            .collect();

        let mut dates = Vec::new();
        let mut seen = HashSet::new();
        let mut counter = 0;
        let mut last_wall = None;
        // Merge the streams in wall-clock order, as dateutil's rruleset does.
        while let Some((index, wall)) = heads
            .iter()
            .enumerate()
            .filter_map(|(i, head)| head.map(|w| (i, w)))
            .min_by_key(|(_, wall)| *wall)
        {
            let (it, filter) = &mut iters[index];
            heads[index] = next_kept(it, *filter, &mut skipped);
            if skipped > MAX_SKIPPED {
                break;
            }
            // Two rules giving the same time give one occurrence.
            if last_wall.replace(wall) == Some(wall) {
                continue;
            }
            let Some(at) = zone::localize(tz, wall, GapPolicy::Backward) else {
                break;
            };
            // dateutil's `xafter(start, inc=True)` filters by instant and does not count these.
            if at < start {
                skipped += 1;
                continue;
            }
            if end.is_some_and(|end| at > end) {
                break;
            }
            if seen.insert(at.with_timezone(&Utc)) {
                dates.push(at);
            }
            if dates.len() >= n || counter > MAX_ITERATIONS {
                break;
            }
            counter += 1;
        }
        Ok(dates)
    }
}

/// Prefect's `normalize_rrule_string`: a rule without `DTSTART` gets one so that evaluating it
/// does not replay every occurrence since the implicit 2020-01-01 anchor.
///
/// - A single `FREQ=SECONDLY` or `FREQ=MINUTELY` rule without `COUNT` is anchored at the latest
///   `2020-01-01T00:00:00 + k·INTERVAL` (in its unit) not after `now`, read on the wall clock of
///   `timezone` (UTC when unset or unknown). That keeps every future occurrence.
/// - Anything else gets the implicit anchor spelled out: `DTSTART:20200101T000000`.
/// - Text that already has a `DTSTART`, or does not parse, is returned unchanged.
pub fn normalize_rrule(rrule: &str, timezone: Option<&str>, now: DateTime<Utc>) -> String {
    if rrule.to_uppercase().contains("DTSTART") {
        return rrule.to_owned();
    }
    let Ok(parsed) = parse(rrule) else {
        return rrule.to_owned();
    };
    let anchor = default_anchor();
    let prepend =
        |dtstart: NaiveDateTime| format!("DTSTART:{}\n{rrule}", dtstart.format("%Y%m%dT%H%M%S"));
    if parsed.is_set {
        return prepend(anchor);
    }
    let Some(part) = parsed.rrules.first() else {
        return rrule.to_owned();
    };
    // dateutil refuses a zoned UNTIL next to the floating anchor, so Prefect leaves it alone.
    if part.until.is_some_and(|u| u.aware) {
        return rrule.to_owned();
    }
    let Ok(rule) = part.text.parse::<RRule<Unvalidated>>() else {
        return rrule.to_owned();
    };
    let unit = match rule.get_freq() {
        Frequency::Secondly => 1,
        Frequency::Minutely => 60,
        _ => return prepend(anchor),
    };
    let period = unit * i64::from(rule.get_interval());
    if rule.get_count().is_some() || period <= 0 {
        return prepend(anchor);
    }
    let tz = timezone
        .and_then(|t| t.parse::<Tz>().ok())
        .unwrap_or(Tz::UTC);
    let elapsed = now.with_timezone(&tz).naive_local() - anchor;
    if elapsed <= TimeDelta::zero() {
        return prepend(anchor);
    }
    let periods = elapsed.num_seconds() / period;
    match periods
        .checked_mul(period)
        .and_then(TimeDelta::try_seconds)
        .and_then(|d| anchor.checked_add_signed(d))
    {
        Some(dtstart) => prepend(dtstart),
        None => prepend(anchor),
    }
}

/// dateutil's implicit anchor for a rule without `DTSTART` (Prefect passes it explicitly).
fn default_anchor() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2020, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .unwrap_or_default()
}

/// A date in the rrule text: its wall-clock digits and whether it named a zone (`Z`, an offset
/// or a `TZID` dateutil knows).
#[derive(Debug, Clone, Copy)]
struct DateValue {
    wall: NaiveDateTime,
    aware: bool,
}

/// An `RRULE`/`EXRULE` value with `UNTIL` taken out: the rrule crate would read a floating
/// `UNTIL` in the machine's local zone.
#[derive(Debug, Clone)]
struct RulePart {
    text: String,
    until: Option<DateValue>,
}

#[derive(Debug, Default)]
struct Parsed {
    dtstart: Option<DateValue>,
    rrules: Vec<RulePart>,
    exrules: Vec<RulePart>,
    rdates: Vec<NaiveDateTime>,
    exdates: Vec<NaiveDateTime>,
    /// dateutil would build an `rruleset` rather than a single `rrule`.
    is_set: bool,
}

/// Splits the text the way `dateutil.rrule.rrulestr` does: upper-cased, one property per
/// whitespace-separated token, a token without `:` being an `RRULE` value.
fn parse(text: &str) -> Result<Parsed, String> {
    let upper = text.to_uppercase();
    let lines: Vec<&str> = upper.split_whitespace().collect();
    let mut parsed = Parsed::default();
    match lines.as_slice() {
        [] => return Err("empty string".to_owned()),
        [line] if !line.contains(':') || line.starts_with("RRULE:") => {
            let value = line.strip_prefix("RRULE:").unwrap_or(line);
            parsed.rrules.push(rule_part(value)?);
            return Ok(parsed);
        }
        _ => {}
    }
    for line in lines {
        let (head, value) = line.split_once(':').unwrap_or(("RRULE", line));
        let mut params = head.split(';');
        let name = params.next().unwrap_or_default();
        let params: Vec<&str> = params.collect();
        match name {
            "RRULE" | "EXRULE" => {
                if let Some(param) = params.first() {
                    return Err(format!("unsupported {name} parm: {param}"));
                }
                let part = rule_part(value)?;
                if name == "RRULE" {
                    parsed.rrules.push(part)
                } else {
                    parsed.exrules.push(part)
                }
            }
            "RDATE" => {
                if let Some(param) = params.iter().find(|p| **p != "VALUE=DATE-TIME") {
                    return Err(format!("unsupported RDATE parm: {param}"));
                }
                for date in value.split(',') {
                    parsed.rdates.push(parse_date(date)?.wall);
                }
            }
            "EXDATE" => {
                date_params(&params)?;
                for date in value.split(',') {
                    parsed.exdates.push(parse_date(date)?.wall);
                }
            }
            "DTSTART" => {
                let zoned = date_params(&params)?;
                let [date] = value.split(',').collect::<Vec<_>>()[..] else {
                    return Err(format!("multiple DTSTART values specified: {value}"));
                };
                let mut date = parse_date(date)?;
                if zoned {
                    if date.aware {
                        return Err("DTSTART specifies multiple timezones".to_owned());
                    }
                    date.aware = true;
                }
                parsed.dtstart = Some(date);
            }
            other => return Err(format!("unsupported property: {other}")),
        }
    }
    parsed.is_set = parsed.rrules.len() > 1
        || !parsed.rdates.is_empty()
        || !parsed.exrules.is_empty()
        || !parsed.exdates.is_empty();
    if !parsed.is_set && parsed.rrules.is_empty() {
        return Err("no RRULE or RDATE given".to_owned());
    }
    Ok(parsed)
}

/// Checks `DTSTART`/`EXDATE` parameters; true when a `TZID` names a zone. dateutil looks the
/// upper-cased name up, so only names that are upper case already (UTC, EST…) count.
fn date_params(params: &[&str]) -> Result<bool, String> {
    let mut zoned = false;
    let mut value_seen = false;
    for param in params {
        if let Some(name) = param.strip_prefix("TZID=") {
            zoned |= name.parse::<Tz>().is_ok();
        } else if matches!(*param, "VALUE=DATE-TIME" | "VALUE=DATE") {
            if value_seen {
                return Err(format!("duplicate value parameter: {param}"));
            }
            value_seen = true;
        } else {
            return Err(format!("unsupported DTSTART parm: {param}"));
        }
    }
    Ok(zoned)
}

fn rule_part(value: &str) -> Result<RulePart, String> {
    let mut kept = Vec::new();
    let mut until = None;
    for part in value.split(';') {
        match part.split_once('=') {
            Some(("UNTIL", date)) => until = Some(parse_date(date)?),
            Some(_) => kept.push(part),
            None => return Err(format!("'{part}' is not a NAME=VALUE rule part")),
        }
    }
    Ok(RulePart {
        text: kept.join(";"),
        until,
    })
}

/// The date forms dateutil's parser meets in rrules: `20200101`, `20200101T0930`,
/// `20200101T093000` with an optional `Z`, or ISO-8601 with dashes and colons.
fn parse_date(text: &str) -> Result<DateValue, String> {
    let (digits, zulu) = match text.strip_suffix('Z') {
        Some(rest) => (rest, true),
        None => (text, false),
    };
    for format in ["%Y%m%dT%H%M%S", "%Y%m%dT%H%M"] {
        if let Ok(wall) = NaiveDateTime::parse_from_str(digits, format) {
            return Ok(DateValue { wall, aware: zulu });
        }
    }
    if let Some(wall) = NaiveDate::parse_from_str(digits, "%Y%m%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
    {
        return Ok(DateValue { wall, aware: zulu });
    }
    match wire::parse_datetime(text) {
        Some(Ok(dt)) => Ok(DateValue {
            wall: dt.naive_local(),
            aware: true,
        }),
        Some(Err(wall)) => Ok(DateValue { wall, aware: false }),
        None => Err(format!("'{text}' is not a date-time")),
    }
}

/// Wall-clock digits held as UTC for the rrule crate.
fn floating(wall: NaiveDateTime) -> DateTime<rrule::Tz> {
    rrule::Tz::UTC.from_utc_datetime(&wall)
}

/// The whole rule set, as dateutil would build it (what validation checks).
fn whole_set(parsed: &Parsed) -> Result<RRuleSet, String> {
    let rules: Vec<&RulePart> = parsed.rrules.iter().collect();
    build_set(parsed, &rules, true, None)
}

/// One stream of occurrences: a rule set and the time filter to apply to what it yields.
struct Stream {
    set: RRuleSet,
    filter: Option<TimeFilter>,
}

/// The rule set split for iteration: one stream per RRULE (each with every exclusion) and one
/// for the RDATEs, so that each rule can carry its own [`TimeFilter`] and fast-forward.
fn streams(parsed: &Parsed, start_wall: NaiveDateTime) -> Result<Vec<Stream>, String> {
    let mut streams = Vec::with_capacity(parsed.rrules.len() + 1);
    for part in &parsed.rrules {
        let (dtstart, part) = match fast_forward(parsed, part, start_wall) {
            Some((dtstart, moved)) => (Some(dtstart), moved),
            None => (None, part.clone()),
        };
        let (rule, filter) = match TimeFilter::split(&part) {
            Some((stripped, filter)) => (stripped, Some(filter)),
            None => (part, None),
        };
        let set = build_set(parsed, &[&rule], false, dtstart)?;
        streams.push(Stream { set, filter });
    }
    if !parsed.rdates.is_empty() {
        let set = build_set(parsed, &[], true, None)?;
        streams.push(Stream { set, filter: None });
    }
    Ok(streams)
}

/// A rule set over `rules` (and the RDATEs when `rdates`), with every EXRULE and EXDATE, starting
/// at `DTSTART` (or 2020-01-01, or `dtstart`).
fn build_set(
    parsed: &Parsed,
    rules: &[&RulePart],
    rdates: bool,
    dtstart: Option<NaiveDateTime>,
) -> Result<RRuleSet, String> {
    let start = floating(
        dtstart
            .or(parsed.dtstart.map(|d| d.wall))
            .unwrap_or_else(default_anchor),
    );
    // `limit` makes the crate give up on rules that stop matching instead of looping forever.
    let mut set = RRuleSet::new(start).limit();
    for part in rules {
        if let Some(rule) = compile_rule(part, parsed.dtstart, start)? {
            set = set.rrule(rule);
        }
    }
    for part in &parsed.exrules {
        if let Some(rule) = compile_rule(part, parsed.dtstart, start)? {
            set = set.exrule(rule);
        }
    }
    if rdates {
        for date in &parsed.rdates {
            set = set.rdate(floating(*date));
        }
    }
    for date in &parsed.exdates {
        set = set.exdate(floating(*date));
    }
    Ok(set)
}

/// The next wall time of a stream that its filter keeps; the ones dropped count as skipped.
fn next_kept(
    it: &mut RRuleSetIter,
    filter: Option<&TimeFilter>,
    skipped: &mut usize,
) -> Option<NaiveDateTime> {
    loop {
        let wall = it.next()?.naive_utc();
        if filter.is_none_or(|f| f.keeps(wall)) {
            return Some(wall);
        }
        *skipped += 1;
        if *skipped > MAX_SKIPPED {
            return None;
        }
    }
}

/// BYHOUR (and, for SECONDLY, BYMINUTE) of a MINUTELY or SECONDLY rule. The rrule crate skips
/// non-matching hours an hour at a time, which loses the rule's phase when its interval does
/// not divide the hour (`FREQ=MINUTELY;INTERVAL=45;BYHOUR=0,1`); dateutil keeps the phase. The
/// crate therefore steps without them and these filter its output.
#[derive(Debug)]
struct TimeFilter {
    hours: Vec<u32>,
    minutes: Vec<u32>,
}

impl TimeFilter {
    fn split(part: &RulePart) -> Option<(RulePart, TimeFilter)> {
        let pieces: Vec<&str> = part.text.split(';').collect();
        let names: &[&str] = match pieces.iter().find_map(|p| p.strip_prefix("FREQ=")) {
            Some("MINUTELY") => &["BYHOUR"],
            Some("SECONDLY") => &["BYHOUR", "BYMINUTE"],
            _ => return None,
        };
        let mut filter = TimeFilter {
            hours: Vec::new(),
            minutes: Vec::new(),
        };
        let mut kept = Vec::new();
        for piece in pieces {
            match piece.split_once('=') {
                Some((name, values)) if names.contains(&name) => {
                    let values: Vec<u32> = values
                        .split(',')
                        .map(str::parse)
                        .collect::<Result<_, _>>()
                        .ok()?;
                    if name == "BYHOUR" {
                        filter.hours = values;
                    } else {
                        filter.minutes = values;
                    }
                }
                _ => kept.push(piece),
            }
        }
        if filter.hours.is_empty() && filter.minutes.is_empty() {
            return None;
        }
        Some((
            RulePart {
                text: kept.join(";"),
                until: part.until,
            },
            filter,
        ))
    }

    fn keeps(&self, wall: NaiveDateTime) -> bool {
        (self.hours.is_empty() || self.hours.contains(&wall.hour()))
            && (self.minutes.is_empty() || self.minutes.contains(&wall.minute()))
    }
}

/// `None` when the rule's `UNTIL` is before the start (dateutil yields nothing; the crate would
/// refuse the rule).
fn compile_rule(
    part: &RulePart,
    dtstart: Option<DateValue>,
    start: DateTime<rrule::Tz>,
) -> Result<Option<RRule>, String> {
    let mut rule: RRule<Unvalidated> = part
        .text
        .parse()
        .map_err(|e: rrule::RRuleError| e.to_string())?;
    if let Some(until) = part.until {
        if dtstart.is_some_and(|d| d.aware != until.aware) {
            return Err(
                "RRULE UNTIL values must be specified in UTC when DTSTART is timezone-aware"
                    .to_owned(),
            );
        }
        let until = floating(until.wall);
        if until < start {
            return Ok(None);
        }
        rule = rule.until(until);
    }
    rule.validate(start).map(Some).map_err(|e| e.to_string())
}

/// A later `DTSTART` with the same phase, for a `SECONDLY`/`MINUTELY`/`HOURLY` rule: stepping
/// the start by whole periods keeps every occurrence from then on, and spares replaying years
/// of them (the reason for Prefect's `normalize_rrule_string`). A `COUNT` is lowered by the
/// periods skipped, which is exact only when each period yields one occurrence (no `BY…`
/// parts), so other counted rules are not moved. Returns the new start and the rule to use.
fn fast_forward(
    parsed: &Parsed,
    part: &RulePart,
    start_wall: NaiveDateTime,
) -> Option<(NaiveDateTime, RulePart)> {
    if !parsed.exrules.is_empty() {
        // An EXRULE takes its time of day from DTSTART, so its phase would change.
        return None;
    }
    let rule = part.text.parse::<RRule<Unvalidated>>().ok()?;
    let unit = match rule.get_freq() {
        Frequency::Secondly => 1,
        Frequency::Minutely => 60,
        Frequency::Hourly => 3600,
        _ => return None,
    };
    let period = unit * i64::from(rule.get_interval());
    let plain = part.text.split(';').all(|piece| {
        matches!(
            piece.split_once('='),
            Some(("FREQ" | "INTERVAL" | "COUNT" | "WKST", _))
        )
    });
    if period <= 0 || (rule.get_count().is_some() && !plain) {
        return None;
    }
    let dtstart = parsed.dtstart.map_or_else(default_anchor, |d| d.wall);
    // Two days of margin cover any zone offset between the wall clock and the start instant.
    let target = start_wall.checked_sub_signed(TimeDelta::days(2))?;
    let mut periods = (target - dtstart).num_seconds() / period;
    let mut moved = part.clone();
    if let Some(count) = rule.get_count() {
        // Keep at least the last occurrence so the rule stays valid; it lies before the start.
        periods = periods.min(i64::from(count) - 1);
        let left = i64::from(count) - periods;
        moved.text = part
            .text
            .split(';')
            .map(|piece| match piece.split_once('=') {
                Some(("COUNT", _)) => format!("COUNT={left}"),
                _ => piece.to_owned(),
            })
            .collect::<Vec<_>>()
            .join(";");
    }
    if periods <= 0 {
        return None;
    }
    let start =
        dtstart.checked_add_signed(TimeDelta::try_seconds(periods.checked_mul(period)?)?)?;
    Some((start, moved))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn normalizes_like_prefect() {
        let now = at("2026-03-10T14:37:12Z");
        let cases = [
            // (rrule, timezone, expected), as Prefect 3.9.1 normalizes them
            (
                "FREQ=DAILY",
                Some("UTC"),
                "DTSTART:20200101T000000\nFREQ=DAILY",
            ),
            (
                "FREQ=HOURLY;INTERVAL=2",
                None,
                "DTSTART:20200101T000000\nFREQ=HOURLY;INTERVAL=2",
            ),
            (
                "FREQ=MINUTELY",
                Some("UTC"),
                "DTSTART:20260310T143700\nFREQ=MINUTELY",
            ),
            (
                "FREQ=MINUTELY;INTERVAL=7",
                Some("UTC"),
                "DTSTART:20260310T143300\nFREQ=MINUTELY;INTERVAL=7",
            ),
            (
                "FREQ=MINUTELY;INTERVAL=7",
                Some("Asia/Kolkata"),
                "DTSTART:20260310T200200\nFREQ=MINUTELY;INTERVAL=7",
            ),
            (
                "FREQ=SECONDLY;INTERVAL=3600",
                Some("Europe/Paris"),
                "DTSTART:20260310T150000\nFREQ=SECONDLY;INTERVAL=3600",
            ),
            (
                "FREQ=SECONDLY;INTERVAL=10",
                Some("UTC"),
                "DTSTART:20260310T143710\nFREQ=SECONDLY;INTERVAL=10",
            ),
            (
                "FREQ=MINUTELY",
                Some("America/New_York"),
                "DTSTART:20260310T103700\nFREQ=MINUTELY",
            ),
            (
                "FREQ=MINUTELY;COUNT=5",
                Some("UTC"),
                "DTSTART:20200101T000000\nFREQ=MINUTELY;COUNT=5",
            ),
            (
                "RRULE:FREQ=MINUTELY\nRDATE:20260101T000000",
                Some("UTC"),
                "DTSTART:20200101T000000\nRRULE:FREQ=MINUTELY\nRDATE:20260101T000000",
            ),
            (
                "DTSTART:20230101T000000\nFREQ=MINUTELY",
                Some("UTC"),
                "DTSTART:20230101T000000\nFREQ=MINUTELY",
            ),
            (
                "FREQ=MINUTELY;UNTIL=20300101T000000Z",
                Some("UTC"),
                "FREQ=MINUTELY;UNTIL=20300101T000000Z",
            ),
            ("not an rrule", Some("UTC"), "not an rrule"),
        ];
        for (rrule, tz, expected) in cases {
            assert_eq!(normalize_rrule(rrule, tz, now), expected, "{rrule} {tz:?}");
        }
        // Before the anchor there is nothing to advance to.
        assert_eq!(
            normalize_rrule("FREQ=MINUTELY", None, at("2019-06-01T00:00:00Z")),
            "DTSTART:20200101T000000\nFREQ=MINUTELY"
        );
    }

    #[test]
    fn parses_like_dateutil() {
        let ok = [
            "FREQ=DAILY",
            "freq=daily",
            "RRULE:FREQ=DAILY",
            " FREQ=DAILY ",
            "DTSTART:20230608T130000\nFREQ=WEEKLY;INTERVAL=1;BYDAY=FR",
            "DTSTART;TZID=Europe/Paris:20200101T090000\nRRULE:FREQ=DAILY",
            "DTSTART;VALUE=DATE:20200101\nRRULE:FREQ=DAILY",
            "RDATE:20221012T134000Z,20221013T120000Z",
            "RDATE:2022-10-12T13:40:00Z",
            "EXDATE:20221012T134000Z",
            "EXRULE:FREQ=DAILY\nRRULE:FREQ=HOURLY",
            "FREQ=DAILY;UNTIL=20300101T000000Z",
            "FREQ=DAILY;UNTIL=20200101",
            "DTSTART:20200101T000000Z\nRRULE:FREQ=DAILY;UNTIL=20300101T000000Z",
            "FREQ=MONTHLY;BYDAY=+1MO",
            "FREQ=YEARLY;BYWEEKNO=7,16;BYDAY=WE",
        ];
        for text in ok {
            let parsed = parse(text).unwrap();
            whole_set(&parsed).unwrap_or_else(|e| panic!("{text}: {e}"));
        }
        let bad = [
            "",
            "bad rrule string",
            "FREQ=DAILYBAD",
            "DTSTART:20200101T000000",
            "RRULE;X=1:FREQ=DAILY",
            "FOO:BAR",
            "FREQ=DAILY;BYDAY=XX",
            "FREQ=DAILY;FOO=1",
            "RDATE;VALUE=DATE:20200101",
            "FREQ=DAILY;;INTERVAL=2",
            "FREQ=DAILY;INTERVAL=2;",
            "DTSTART:20200101T000000Z\nRRULE:FREQ=DAILY;UNTIL=20300101T000000",
            "DTSTART:20200101T000000\nRRULE:FREQ=DAILY;UNTIL=20300101T000000Z",
        ];
        for text in bad {
            let result = parse(text).and_then(|p| whole_set(&p).map(|_| ()));
            assert!(result.is_err(), "{text}");
        }
    }
}
