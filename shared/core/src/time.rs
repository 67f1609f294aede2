//! Timestamp parsing and formatting in the forms Prefect's clients send and expect.

use chrono::{DateTime, NaiveDateTime, Utc};

use crate::domain::Timestamp;

/// Parses ISO-8601 timestamps, including the space-separated form Python's `str(datetime)`
/// produces (`2026-01-01 12:00:10.123456+00:00`), which the stock client sends. A timestamp
/// without an offset is taken as UTC, as Prefect's server does.
pub fn parse_timestamp(s: &str) -> Option<Timestamp> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    let t_form = s.replacen(' ', "T", 1);
    if let Ok(t) = DateTime::parse_from_rfc3339(&t_form) {
        return Some(t.with_timezone(&Utc));
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f%z",
        "%Y-%m-%dT%H:%M:%S%.f%:z",
        "%Y-%m-%dT%H:%M%:z",
    ] {
        if let Ok(t) = DateTime::parse_from_str(&t_form, fmt) {
            return Some(t.with_timezone(&Utc));
        }
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(&t_form, fmt) {
            return Some(t.and_utc());
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return d.and_hms_opt(0, 0, 0).map(|t| t.and_utc());
    }
    None
}

/// RFC 3339 in UTC with microseconds and a `Z`, which Python's `fromisoformat` and pydantic read.
pub fn format_timestamp(t: Timestamp) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_clients_send() {
        let want = parse_timestamp("2026-01-01T12:00:10.123456Z").expect("rfc3339");
        for s in [
            "2026-01-01 12:00:10.123456+00:00",
            "2026-01-01T12:00:10.123456+00:00",
            "2026-01-01T07:00:10.123456-05:00",
            "2026-01-01T12:00:10.123456",
        ] {
            assert_eq!(parse_timestamp(s), Some(want), "{s}");
        }
        assert!(parse_timestamp("yesterday").is_none());
        assert_eq!(format_timestamp(want), "2026-01-01T12:00:10.123456Z");
    }
}
