//! Time-zone helpers shared by the three schedule kinds: zone lookup, turning a wall-clock time
//! into an instant the way each of Prefect's date libraries does, and finding the last offset
//! change before an instant.

use chrono::{DateTime, LocalResult, NaiveDateTime, Offset, TimeDelta, TimeZone, Utc};
use chrono_tz::{GapInfo, Tz};

use super::ScheduleError;

/// Looks up an IANA zone name. An empty name means UTC, as Prefect's `timezone or "UTC"` does.
pub(crate) fn parse_timezone(name: Option<&str>) -> Result<Tz, ScheduleError> {
    match name {
        None | Some("") => Ok(Tz::UTC),
        Some(name) => name
            .parse::<Tz>()
            .map_err(|_| ScheduleError::InvalidTimezone(name.to_owned())),
    }
}

/// What to do with a wall-clock time that a clock change skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GapPolicy {
    /// Read it with the offset in force before the gap, which moves it forward by the gap
    /// (02:30 becomes 03:30). This is zoneinfo's `fold=0` and `whenever`'s "compatible" rule,
    /// used by Prefect's interval and cron schedules.
    Forward,
    /// Read it with the offset in force after the gap, which moves it back (02:30 becomes
    /// 01:30 standard time). This is what `dateutil.tz` does, so Prefect's rrule schedules do it.
    Backward,
}

/// Places a wall-clock time in `tz`. A repeated time resolves to its first occurrence; a skipped
/// one follows `gap`. `None` only when the result is outside chrono's range.
pub(crate) fn localize(tz: Tz, wall: NaiveDateTime, gap: GapPolicy) -> Option<DateTime<Tz>> {
    match tz.from_local_datetime(&wall) {
        LocalResult::Single(dt) => Some(dt),
        LocalResult::Ambiguous(earliest, _) => Some(earliest),
        LocalResult::None => {
            let info = GapInfo::new(&wall, &tz)?;
            let offset = match gap {
                GapPolicy::Forward => info.begin.map(|(_, offset)| offset.fix()),
                GapPolicy::Backward => info.end.map(|end| end.offset().fix()),
            }?;
            let utc =
                wall.checked_sub_signed(TimeDelta::seconds(i64::from(offset.local_minus_utc())))?;
            Some(tz.from_utc_datetime(&utc))
        }
    }
}

/// The UTC offset of `tz` at `at`, in seconds.
fn offset_seconds(tz: Tz, at: i64) -> Option<i32> {
    let utc = DateTime::<Utc>::from_timestamp(at, 0)?;
    Some(
        tz.offset_from_utc_datetime(&utc.naive_utc())
            .fix()
            .local_minus_utc(),
    )
}

/// An offset change of a zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Transition {
    pub at: DateTime<Utc>,
    pub before: i32,
    pub after: i32,
}

/// How far back [`last_transition`] looks. Prefect only cares about a transition less than one
/// gap or fold ago, and no zone has moved its clocks by more than a day at once.
const TRANSITION_WINDOW_HOURS: i64 = 48;

/// The last offset change at or before `at`, if there was one in the last two days.
///
/// chrono-tz does not expose its transition table, so this scans back hour by hour and then
/// bisects to the second (transitions fall on whole seconds). Two changes within one hour do
/// not occur in the tz database.
pub(crate) fn last_transition(tz: Tz, at: DateTime<Utc>) -> Option<Transition> {
    let now = at.timestamp();
    let current = offset_seconds(tz, now)?;
    for hours in 1..=TRANSITION_WINDOW_HOURS {
        let probe = now - hours * 3600;
        if offset_seconds(tz, probe)? == current {
            continue;
        }
        // `lo` has the old offset and `hi` the current one; close in on the first second of `hi`.
        let (mut lo, mut hi) = (probe, probe + 3600);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if offset_seconds(tz, mid)? == current {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        return Some(Transition {
            at: DateTime::<Utc>::from_timestamp(hi, 0)?,
            before: offset_seconds(tz, lo)?,
            after: current,
        });
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use chrono::NaiveDate;

    fn wall(y: i32, m: u32, d: u32, h: u32, min: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, m, d)
            .unwrap()
            .and_hms_opt(h, min, 0)
            .unwrap()
    }

    #[test]
    fn localize_follows_each_library() {
        let ny: Tz = "America/New_York".parse().unwrap();
        let cases = [
            // (wall time, policy, expected RFC 3339)
            (
                wall(2018, 3, 11, 2, 30),
                GapPolicy::Forward,
                "2018-03-11T03:30:00-04:00",
            ),
            (
                wall(2018, 3, 11, 2, 30),
                GapPolicy::Backward,
                "2018-03-11T01:30:00-05:00",
            ),
            (
                wall(2018, 11, 4, 1, 30),
                GapPolicy::Forward,
                "2018-11-04T01:30:00-04:00",
            ),
            (
                wall(2018, 11, 4, 1, 30),
                GapPolicy::Backward,
                "2018-11-04T01:30:00-04:00",
            ),
            (
                wall(2018, 7, 1, 9, 0),
                GapPolicy::Forward,
                "2018-07-01T09:00:00-04:00",
            ),
        ];
        for (w, policy, expected) in cases {
            assert_eq!(
                localize(ny, w, policy).unwrap().to_rfc3339(),
                expected,
                "{w} {policy:?}"
            );
        }
    }

    #[test]
    fn finds_the_last_transition() {
        let ny: Tz = "America/New_York".parse().unwrap();
        let at = "2018-03-11T07:10:00Z".parse::<DateTime<Utc>>().unwrap();
        let t = last_transition(ny, at).unwrap();
        assert_eq!(t.at.to_rfc3339(), "2018-03-11T07:00:00+00:00");
        assert_eq!((t.before, t.after), (-5 * 3600, -4 * 3600));
        let quiet = "2018-06-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap();
        assert_eq!(last_transition(ny, quiet), None);
        assert_eq!(last_transition(Tz::UTC, at), None);
    }

    #[test]
    fn zone_names() {
        assert_eq!(parse_timezone(None).unwrap(), Tz::UTC);
        assert_eq!(parse_timezone(Some("")).unwrap(), Tz::UTC);
        assert_eq!(
            parse_timezone(Some("Europe/Paris")).unwrap(),
            chrono_tz::Europe::Paris
        );
        assert_eq!(
            parse_timezone(Some("Mars/Olympus")).unwrap_err(),
            ScheduleError::InvalidTimezone("Mars/Olympus".to_owned())
        );
    }
}
