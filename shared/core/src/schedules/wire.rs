//! JSON helpers for the schedule shapes: field checks with Prefect-like messages, and the
//! ISO-8601 date-time forms pydantic reads and writes.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, Offset, TimeZone, Timelike, Utc};
use serde_json::{Map, Value};

use super::ScheduleError;

/// The object behind a schedule, with no field outside `allowed` (Prefect forbids extras).
pub(crate) fn object<'a>(
    value: &'a Value,
    kind: &'static str,
    allowed: &[&str],
) -> Result<&'a Map<String, Value>, ScheduleError> {
    let map = value.as_object().ok_or(ScheduleError::UnknownKind)?;
    if let Some(field) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(ScheduleError::UnknownField {
            kind,
            field: field.clone(),
        });
    }
    Ok(map)
}

/// A string field that may be absent or null.
pub(crate) fn optional_string(
    map: &Map<String, Value>,
    field: &'static str,
) -> Result<Option<String>, ScheduleError> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ScheduleError::InvalidField {
            field,
            reason: "expected a string".to_owned(),
        }),
    }
}

/// A string field that must be present.
pub(crate) fn required_string(
    map: &Map<String, Value>,
    field: &'static str,
) -> Result<String, ScheduleError> {
    optional_string(map, field)?.ok_or(ScheduleError::InvalidField {
        field,
        reason: "a string is required".to_owned(),
    })
}

/// The date-time forms pydantic accepts that Prefect clients send: RFC 3339 with `T`, `t` or a
/// space, with or without fractional seconds and offset, or a bare date. A value without an
/// offset comes back as `Err(naive)` so the caller can place it in the schedule's zone.
pub(crate) fn parse_datetime(text: &str) -> Option<Result<DateTime<FixedOffset>, NaiveDateTime>> {
    let text = text.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(text) {
        return Some(Ok(dt));
    }
    const WITH_OFFSET: [&str; 2] = ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%z"];
    for format in WITH_OFFSET {
        if let Ok(dt) = DateTime::parse_from_str(text, format) {
            return Some(Ok(dt));
        }
    }
    const NAIVE: [&str; 4] = [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ];
    for format in NAIVE {
        if let Ok(naive) = NaiveDateTime::parse_from_str(text, format) {
            return Some(Err(naive));
        }
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(Err)
}

/// A Unix timestamp as pydantic reads one: seconds, or milliseconds when the number is too large
/// to be seconds.
pub(crate) fn datetime_from_number(value: f64) -> Option<DateTime<FixedOffset>> {
    let seconds = if value.abs() > 2e10 {
        value / 1000.0
    } else {
        value
    };
    if !seconds.is_finite() {
        return None;
    }
    let micros = (seconds * 1e6).round();
    if micros.abs() > 9.0e18 {
        return None;
    }
    DateTime::<Utc>::from_timestamp_micros(micros as i64).map(|dt| dt.fixed_offset())
}

/// Pydantic's JSON form of an aware date-time: `2026-03-10T09:00:00-04:00`, six fractional
/// digits only when there are microseconds, and `Z` for a zero offset.
pub(crate) fn format_datetime<Z: TimeZone>(dt: &DateTime<Z>) -> String {
    let mut out = dt.naive_local().format("%Y-%m-%dT%H:%M:%S").to_string();
    let micros = dt.nanosecond() / 1000;
    if micros != 0 {
        out.push_str(&format!(".{micros:06}"));
    }
    let offset = dt.offset().fix().local_minus_utc();
    if offset == 0 {
        out.push('Z');
    } else {
        out.push_str(&format_offset(offset));
    }
    out
}

/// `+HH:MM`, with `:SS` when the offset has seconds, as Python prints offsets.
pub(crate) fn format_offset(seconds: i32) -> String {
    let sign = if seconds < 0 { '-' } else { '+' };
    let abs = seconds.unsigned_abs();
    let (h, m, s) = (abs / 3600, abs % 3600 / 60, abs % 60);
    if s == 0 {
        format!("{sign}{h:02}:{m:02}")
    } else {
        format!("{sign}{h:02}:{m:02}:{s:02}")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn parses_the_forms_clients_send() {
        let aware = [
            ("2026-03-10T09:00:00-04:00", "2026-03-10T09:00:00-04:00"),
            ("2026-03-10T13:00:00Z", "2026-03-10T13:00:00Z"),
            ("2026-03-10 13:00:00.5+00:00", "2026-03-10T13:00:00.500000Z"),
            ("2026-03-10T13:00:00+0530", "2026-03-10T13:00:00+05:30"),
        ];
        for (text, formatted) in aware {
            let dt = parse_datetime(text).unwrap().unwrap();
            assert_eq!(format_datetime(&dt), formatted, "{text}");
        }
        let naive = [
            ("2026-03-10T09:00:00", "2026-03-10 09:00:00"),
            ("2026-03-10", "2026-03-10 00:00:00"),
            ("2026-03-10 09:30", "2026-03-10 09:30:00"),
        ];
        for (text, expected) in naive {
            let n = parse_datetime(text).unwrap().unwrap_err();
            assert_eq!(n.to_string(), expected, "{text}");
        }
        assert!(parse_datetime("yesterday").is_none());
    }

    #[test]
    fn offsets_print_like_python() {
        assert_eq!(format_offset(0), "+00:00");
        assert_eq!(format_offset(-4 * 3600), "-04:00");
        assert_eq!(format_offset(19800), "+05:30");
        assert_eq!(format_offset(-(4 * 3600 + 56 * 60 + 2)), "-04:56:02");
    }

    #[test]
    fn numbers_are_unix_timestamps() {
        let dt = datetime_from_number(1_600_000_000.0).unwrap();
        assert_eq!(format_datetime(&dt), "2020-09-13T12:26:40Z");
        let ms = datetime_from_number(1_600_000_000_000.0).unwrap();
        assert_eq!(ms, dt);
    }
}
