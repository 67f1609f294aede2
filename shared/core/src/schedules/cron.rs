//! `CronSchedule`: croniter expressions, matched on local wall-clock time.
//!
//! Prefect validates and iterates with croniter; Sluice iterates with croner. The two dialects
//! differ (croniter puts seconds last, wraps `fri-mon`, reads `5-5` as every day, spells the last
//! Friday `L5`, has no `W` or `+`), so each field is rewritten from croniter's meaning into
//! values croner reads unambiguously.

use std::collections::{BTreeSet, HashSet};

use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use serde_json::{Value, json};

use super::zone::{self, GapPolicy};
use super::{MAX_ITERATIONS, ScheduleError, wire};

/// Prefect's `CronSchedule`: `{"cron": str, "timezone": str | null, "day_or": bool}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronSchedule {
    /// A croniter expression: 5 fields, or 6/7 with seconds (and year) after the weekday.
    pub cron: String,
    /// IANA zone the expression is read in; UTC when unset.
    pub timezone: Option<String>,
    /// `true` (the default): a day matches if its day of month OR its weekday matches, as in
    /// Vixie cron. `false`: both must match ("the second Friday" is `0 9 8-14 * 5`).
    pub day_or: bool,
}

impl CronSchedule {
    const FIELDS: [&'static str; 3] = ["cron", "timezone", "day_or"];

    pub fn new(cron: impl Into<String>) -> CronSchedule {
        CronSchedule {
            cron: cron.into(),
            timezone: None,
            day_or: true,
        }
    }

    /// Parses and validates `{"cron": …, "timezone": …, "day_or": …}`.
    pub fn from_json(value: &Value) -> Result<CronSchedule, ScheduleError> {
        let map = wire::object(value, "cron", &Self::FIELDS)?;
        let cron = wire::required_string(map, "cron")?;
        let timezone = wire::optional_string(map, "timezone")?;
        let day_or = match map.get("day_or") {
            None => true,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err(ScheduleError::InvalidField {
                    field: "day_or",
                    reason: "expected a boolean".to_owned(),
                });
            }
        };
        let schedule = CronSchedule {
            cron,
            timezone,
            day_or,
        };
        schedule.validate()?;
        Ok(schedule)
    }

    pub fn to_json(&self) -> Value {
        json!({ "cron": self.cron, "timezone": self.timezone, "day_or": self.day_or })
    }

    /// croniter must accept the expression, random and hashed fields (`R`, `H`) are refused as
    /// Prefect refuses them, and the zone must be a known IANA name.
    pub fn validate(&self) -> Result<(), ScheduleError> {
        self.compile()?;
        zone::parse_timezone(self.timezone.as_deref())?;
        Ok(())
    }

    pub(crate) fn compile(&self) -> Result<Cron, ScheduleError> {
        let invalid = |reason: String| ScheduleError::InvalidCron {
            cron: self.cron.clone(),
            reason,
        };
        let pattern = translate(&self.cron, self.day_or).map_err(|p| match p {
            Problem::Invalid(reason) => invalid(reason),
            Problem::Unsupported => {
                invalid("random and hashed expressions (R, H) are not supported".to_owned())
            }
        })?;
        CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Optional)
            .dom_and_dow(!self.day_or)
            .build()
            .parse(&pattern)
            .map_err(|e| invalid(e.to_string()))
    }

    /// Prefect's `_get_dates_whenever`: dates in the order it yields them.
    pub(crate) fn generate(
        &self,
        n: usize,
        start: DateTime<Utc>,
        end: Option<DateTime<Utc>>,
    ) -> Result<Vec<DateTime<Tz>>, ScheduleError> {
        let cron = self.compile()?;
        let tz = zone::parse_timezone(self.timezone.as_deref())?;
        let place = |wall: NaiveDateTime| zone::localize(tz, wall, GapPolicy::Forward);

        // Search strictly after one second before the start, so the start itself can match;
        // fractions of a second round the start up (Python's `microsecond > 0`).
        let second = TimeDelta::seconds(1);
        let wall_start = start.with_timezone(&tz).naive_local();
        let after = if start.timestamp_subsec_micros() > 0 {
            Some(wall_start)
        } else {
            wall_start.checked_sub_signed(second)
        };
        // Only at the very ends of chrono's range.
        let Some(mut after) = after else {
            return Ok(Vec::new());
        };
        let mut lookback = Vec::new();
        if let Some(t) = zone::last_transition(tz, start) {
            let gap = TimeDelta::seconds(i64::from(t.after) - i64::from(t.before));
            let since = start - t.at;
            let new_wall = t.at.with_timezone(&tz).naive_local();
            if gap < TimeDelta::zero() && since < -gap {
                // Inside the repeated hour after clocks go back: its wall times all resolve to
                // their first occurrence, which is past, so resume where the repeat ends.
                after = new_wall - gap - second;
            } else if gap > TimeDelta::zero() && since < gap {
                // Just after clocks go forward: times in the skipped hour run an hour late and
                // may still lie ahead, so look at the wall times one gap earlier too.
                let mut wall = after - gap;
                while lookback.len() <= MAX_ITERATIONS {
                    match next_wall(&cron, wall) {
                        Some(w) if w < new_wall => {
                            lookback.extend(place(w));
                            wall = w;
                        }
                        _ => break,
                    }
                }
            }
        }

        let mut lookback = lookback.into_iter().peekable();
        let mut main = next_wall(&cron, after).and_then(|w| place(w).map(|at| (w, at)));
        let mut dates = Vec::new();
        let mut seen = HashSet::new();
        for _ in 0..MAX_ITERATIONS + 2 {
            // Merge both streams by instant; on a tie the looked-back one comes first.
            let candidate = match (lookback.peek(), main) {
                (Some(back), Some((_, at))) if *back <= at => lookback.next(),
                (Some(_), None) => lookback.next(),
                (_, Some((wall, at))) => {
                    main = next_wall(&cron, wall).and_then(|w| place(w).map(|at| (w, at)));
                    Some(at)
                }
                (None, None) => None,
            };
            let Some(candidate) = candidate else { break };
            if end.is_some_and(|end| candidate > end) {
                break;
            }
            if candidate >= start && seen.insert(candidate.with_timezone(&Utc)) {
                dates.push(candidate);
            }
            if dates.len() >= n {
                break;
            }
        }
        Ok(dates)
    }
}

/// The next wall-clock match strictly after `after` (whole seconds). `None` once croner's search
/// horizon is passed; Prefect would raise there, Sluice returns the dates found so far.
fn next_wall(cron: &Cron, after: NaiveDateTime) -> Option<NaiveDateTime> {
    cron.find_next_occurrence(&after, false).ok()
}

enum Problem {
    Invalid(String),
    Unsupported,
}

fn invalid<T>(reason: impl Into<String>) -> Result<T, Problem> {
    Err(Problem::Invalid(reason.into()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Minute,
    Hour,
    DayOfMonth,
    Month,
    DayOfWeek,
    Second,
    Year,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// croniter's shorthands (it matches them exactly, after lower-casing).
const ALIASES: [(&str, &str); 7] = [
    ("@midnight", "0 0 * * *"),
    ("@hourly", "0 * * * *"),
    ("@daily", "0 0 * * *"),
    ("@weekly", "0 0 * * 0"),
    ("@monthly", "0 0 1 * *"),
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
];

impl Field {
    /// croniter's order: minute hour day month weekday [second [year]].
    const CRONITER_ORDER: [Field; 7] = [
        Field::Minute,
        Field::Hour,
        Field::DayOfMonth,
        Field::Month,
        Field::DayOfWeek,
        Field::Second,
        Field::Year,
    ];

    fn bounds(self) -> (u32, u32) {
        match self {
            Field::Minute | Field::Second => (0, 59),
            Field::Hour => (0, 23),
            Field::DayOfMonth => (1, 31),
            Field::Month => (1, 12),
            Field::DayOfWeek => (0, 6),
            Field::Year => (1970, 2099),
        }
    }

    fn label(self) -> &'static str {
        match self {
            Field::Minute => "minute",
            Field::Hour => "hour",
            Field::DayOfMonth => "day-of-month",
            Field::Month => "month",
            Field::DayOfWeek => "day-of-week",
            Field::Second => "second",
            Field::Year => "year",
        }
    }

    /// A number or (month and weekday fields only) a three-letter name, with croniter's
    /// aliases: weekday 7 is Sunday in five-field expressions, day 0 is day 1 in six-field ones.
    fn value(self, text: &str, fields: usize) -> Result<u32, Problem> {
        let value = if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            match text.parse::<u32>() {
                Ok(v) => v,
                Err(_) => return invalid(format!("'{text}' is out of range")),
            }
        } else {
            let position = match self {
                Field::Month => MONTHS.iter().position(|m| *m == text).map(|i| i + 1),
                Field::DayOfWeek => WEEKDAYS.iter().position(|d| *d == text),
                _ => None,
            };
            match position.and_then(|p| u32::try_from(p).ok()) {
                Some(v) => v,
                None => return invalid(format!("'{text}' is not a valid {} value", self.label())),
            }
        };
        Ok(match (self, value, fields) {
            (Field::DayOfWeek, 7, 5) => 0,
            (Field::DayOfMonth, 0, 6) => 1,
            _ => value,
        })
    }
}

/// What one comma-separated item of a field means.
enum Item {
    Star,
    Values(Vec<u32>),
    /// The last day of the month (`L` in the day-of-month field).
    Last,
    /// Weekdays with an occurrence in the month, in croner's `d#n` / `d#L` syntax.
    Nth {
        text: String,
        weekdays: Vec<u32>,
    },
}

/// One field rewritten for croner, with what croniter's "all values" folding needs to know.
#[derive(Default)]
struct FieldOut {
    text: String,
    values: BTreeSet<u32>,
    last: bool,
    nth: bool,
}

/// Rewrites a croniter expression as a croner pattern (seconds first, explicit value lists).
fn translate(expression: &str, day_or: bool) -> Result<String, Problem> {
    let lower = expression.to_lowercase();
    let body = ALIASES
        .iter()
        .find(|(alias, _)| *alias == lower)
        .map_or(lower.as_str(), |a| a.1);
    let raw: Vec<&str> = body.split_whitespace().collect();
    if !(5..=7).contains(&raw.len()) {
        return invalid(format!("expected 5, 6 or 7 fields, got {}", raw.len()));
    }
    if raw
        .iter()
        .flat_map(|f| f.split(','))
        .any(is_random_or_hashed)
    {
        return Err(Problem::Unsupported);
    }
    let mut out = Vec::with_capacity(raw.len());
    for (field, text) in Field::CRONITER_ORDER.iter().zip(&raw) {
        out.push(translate_field(*field, text, raw.len())?);
    }
    // croniter treats a day-of-month (weekday) list that names every day as `*` when the other
    // day field contains a `*`, which turns off the OR between the two.
    if out[2].values.len() + usize::from(out[2].last) == 31 && raw[4].contains('*') {
        out[2].text = "*".to_owned();
    }
    if !out[4].nth && out[4].values.len() == 7 && raw[2].contains('*') {
        out[4].text = "*".to_owned();
    }
    // With `#`/`L` weekdays croniter applies the weekday rule to both halves of its OR, so the
    // day of month never widens the match: only the nth weekdays fire.
    if day_or && out[4].nth {
        out[2].text = "*".to_owned();
    }
    let mut pattern = Vec::with_capacity(raw.len());
    if raw.len() >= 6 {
        pattern.push(out[5].text.as_str());
    }
    pattern.extend(out[..5].iter().map(|f| f.text.as_str()));
    if raw.len() == 7 {
        pattern.push(out[6].text.as_str());
    }
    Ok(pattern.join(" "))
}

/// croniter's `H`, `H(0-5)`, `R/10` and the like.
fn is_random_or_hashed(item: &str) -> bool {
    let Some(rest) = item.strip_prefix(['h', 'r']) else {
        return false;
    };
    let rest = match rest.strip_prefix('(') {
        Some(inner) => match inner.split_once(')') {
            Some((range, after)) if is_digit_range(range) => after,
            _ => return false,
        },
        None => rest,
    };
    rest.is_empty() || rest.strip_prefix('/').is_some_and(is_digits)
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn is_digit_range(s: &str) -> bool {
    s.split_once('-')
        .is_some_and(|(a, b)| is_digits(a) && is_digits(b))
}

fn translate_field(field: Field, text: &str, fields: usize) -> Result<FieldOut, Problem> {
    if text.contains('?') {
        if text != "?" {
            return invalid("'?' cannot be combined with other values");
        }
        if !matches!(field, Field::DayOfMonth | Field::DayOfWeek) {
            return invalid("'?' is only allowed in the day-of-month and day-of-week fields");
        }
        return Ok(FieldOut {
            text: "*".to_owned(),
            ..FieldOut::default()
        });
    }
    let mut out = FieldOut::default();
    let mut star = false;
    let mut pieces: Vec<String> = Vec::new();
    let mut nth_weekdays = BTreeSet::new();
    for item in text.split(',') {
        match translate_item(field, item, fields)? {
            Item::Star => star = true,
            Item::Values(values) => {
                pieces.extend(values.iter().map(u32::to_string));
                out.values.extend(values);
            }
            Item::Last => {
                pieces.push("L".to_owned());
                out.last = true;
            }
            Item::Nth { text, weekdays } => {
                pieces.push(text);
                nth_weekdays.extend(weekdays);
                out.nth = true;
            }
        }
    }
    if out.nth && out.values.iter().any(|v| !nth_weekdays.contains(v)) {
        let distinct: BTreeSet<u32> = out.values.union(&nth_weekdays).copied().collect();
        if distinct.len() != 7 {
            return invalid("the day-of-week field cannot mix plain weekdays with '#' or 'L' ones");
        }
    }
    out.text = if star {
        "*".to_owned()
    } else {
        pieces.join(",")
    };
    Ok(out)
}

fn translate_item(field: Field, item: &str, fields: usize) -> Result<Item, Problem> {
    if item.is_empty() {
        return invalid(format!("empty value in the {} field", field.label()));
    }
    if field == Field::DayOfWeek {
        if let Some((base, nth)) = item.split_once('#') {
            let n = match nth.parse::<u32>() {
                Ok(n) if is_digits(nth) && (1..=5).contains(&n) => n,
                _ => return invalid(format!("'{item}': the occurrence after '#' must be 1 to 5")),
            };
            let weekdays = match base.split_once('-') {
                // croniter takes ranges before '#' only as weekday names (`mon-fri#2`).
                Some((a, b)) if !is_digits(a) && !is_digits(b) => {
                    expand_range(field, field.value(a, fields)?, field.value(b, fields)?, 1)?
                }
                Some(_) => return invalid(format!("'{item}' is not a valid day-of-week value")),
                None => vec![checked(field, field.value(base, fields)?)?],
            };
            let text = weekdays
                .iter()
                .map(|d| format!("{d}#{n}"))
                .collect::<Vec<_>>()
                .join(",");
            return Ok(Item::Nth { text, weekdays });
        }
        // `L5`: the last Friday of the month.
        if let Some(day) = item.strip_prefix('l').filter(|d| is_digits(d)) {
            let day = checked(field, field.value(day, fields)?)?;
            return Ok(Item::Nth {
                text: format!("{day}#L"),
                weekdays: vec![day],
            });
        }
    }
    let (body, step) = match item.split_once('/') {
        Some((body, step)) => match step.parse::<u32>() {
            Ok(s) if is_digits(step) && s > 0 => (body, Some(s)),
            _ => return invalid(format!("'{item}': the step must be a whole number above 0")),
        },
        None => (item, None),
    };
    let (min, max) = field.bounds();
    if body == "*" {
        return Ok(match step {
            Some(step) => Item::Values(expand_range(field, min, max, step)?),
            None => Item::Star,
        });
    }
    if let Some((low, high)) = body.split_once('-') {
        if low.is_empty() {
            return invalid(format!("'{item}': negative numbers are not allowed"));
        }
        let low = field.value(low, fields)?;
        let high = match (field, high) {
            (Field::DayOfMonth, "l") => 31,
            _ => field.value(high, fields)?,
        };
        return Ok(Item::Values(expand_range(
            field,
            low,
            high,
            step.unwrap_or(1),
        )?));
    }
    if field == Field::DayOfMonth && body == "l" {
        if step.is_some() {
            return invalid(format!("'{item}' is not a valid day-of-month value"));
        }
        return Ok(Item::Last);
    }
    let value = field.value(body, fields)?;
    match step {
        // croniter reads `a/s` as `a-max/s`.
        Some(step) => Ok(Item::Values(expand_range(field, value, max, step)?)),
        None => Ok(Item::Values(vec![checked(field, value)?])),
    }
}

fn checked(field: Field, value: u32) -> Result<u32, Problem> {
    let (min, max) = field.bounds();
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        invalid(format!(
            "{value} is out of range for the {} field ({min}-{max})",
            field.label()
        ))
    }
}

/// The values croniter gives `low-high/step`: `low == high` means the whole cycle, and
/// `low > high` wraps past the end (with croniter's own rule for where the step resumes).
fn expand_range(field: Field, low: u32, high: u32, step: u32) -> Result<Vec<u32>, Problem> {
    let (min, max) = field.bounds();
    if low.max(high) > max {
        return invalid(format!(
            "{low}-{high} is out of range for the {} field ({min}-{max})",
            field.label()
        ));
    }
    let step_by = usize::try_from(step).unwrap_or(usize::MAX);
    let values: Vec<u32> = match low.cmp(&high) {
        std::cmp::Ordering::Equal => (min..=max).step_by(step_by).collect(),
        std::cmp::Ordering::Less => (low..=high).step_by(step_by).collect(),
        std::cmp::Ordering::Greater => {
            let mut values: Vec<u32> = (low..=max).step_by(step_by).collect();
            let mut skip = 0;
            if let Some(&last) = values.last() {
                let already_skipped = max - last;
                if (last - min) + step > max - min + 1 && already_skipped < step {
                    skip = step - already_skipped;
                }
            }
            values.extend((min + skip..=high).step_by(step_by));
            values
        }
    };
    // croniter checks each value of a range again on its own, so `0-5` fails for days.
    if let Some(low) = values.iter().find(|v| **v < min) {
        return invalid(format!(
            "{low} is out of range for the {} field ({min}-{max})",
            field.label()
        ));
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn pattern(expr: &str) -> String {
        match translate(expr, true) {
            Ok(p) => p,
            Err(Problem::Invalid(r)) => format!("invalid: {r}"),
            Err(Problem::Unsupported) => "unsupported".to_owned(),
        }
    }

    #[test]
    fn translates_croniter_dialect() {
        let cases = [
            ("0 9 * * *", "0 9 * * *"),
            ("*/20 * * * *", "0,20,40 * * * *"),
            ("@daily", "0 0 * * *"),
            ("@midnight", "0 0 * * *"),
            ("@WEEKLY", "0 0 * * 0"),
            ("30 8 * * sat-sun", "30 8 * * 6,0"),
            ("0 0 * * fri-mon", "0 0 * * 5,6,0,1"),
            ("0 22-2 * * *", "0 22,23,0,1,2 * * *"),
            (
                "0 0 5-5 * 1",
                &format!(
                    "0 0 {} * 1",
                    (1..=31)
                        .map(|d| d.to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                ),
            ),
            ("0 0 1-31 * *", "0 0 * * *"),
            ("0 0 1-31 * */2", "0 0 * * 0,2,4,6"),
            (
                "0 0 */2 * 0-6",
                "0 0 1,3,5,7,9,11,13,15,17,19,21,23,25,27,29,31 * *",
            ),
            ("0 0 * * 5#2", "0 0 * * 5#2"),
            ("0 0 * * mon-wed#2", "0 0 * * 1#2,2#2,3#2"),
            ("0 0 * * L5", "0 0 * * 5#L"),
            ("0 0 L * *", "0 0 L * *"),
            ("0 0 1-L/10 * *", "0 0 1,11,21,31 * *"),
            ("0 0 ? * *", "0 0 * * *"),
            ("0 0 * * 7", "0 0 * * 0"),
            ("0 9 * * 1 30", "30 0 9 * * 1"),
            ("0 9 * * 1 30 2030", "30 0 9 * * 1 2030"),
            ("5/20 * * * *", "5,25,45 * * * *"),
            ("0 0 * jan-mar mon", "0 0 * 1,2,3 1"),
        ];
        for (expr, expected) in cases {
            assert_eq!(pattern(expr), expected, "{expr}");
        }
    }

    #[test]
    fn refuses_what_croniter_refuses() {
        for expr in [
            "61 * * * *",
            "* * * * * * * *",
            "1 2 3 4",
            "",
            "0 0 15W * *",
            "0 0 * * 5#L",
            "0 0 * * +5",
            "/10 * * * *",
            "@every",
            "0 0 1,? * *",
            "0 0 0 * *",
            "0 0 * 0 *",
            "jan * * * *",
            "*/0 * * * *",
            "0 0 * * 1,2#3",
            "0 0 * * 1-5#2",
            "0 9 * * 1 30 2100",
            "0 0 * * 8",
            "0 24 * * *",
            "0 0 32 * *",
            "0 0 * 13 *",
            "a b c d e",
            "1,,2 * * * *",
            "0 0 0-5 * *",
        ] {
            assert!(
                pattern(expr).starts_with("invalid"),
                "{expr}: {}",
                pattern(expr)
            );
        }
        for expr in [
            "5 4 R * *",
            "5 4 H * *",
            "H(0-5) * * * *",
            "r/5 * * * *",
            "0 r(1-5) * * *",
        ] {
            assert_eq!(pattern(expr), "unsupported", "{expr}");
        }
    }
}
