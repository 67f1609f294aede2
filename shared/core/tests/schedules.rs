//! Schedules: wire shapes, validation messages, DST behaviour and the scheduler's planning
//! rules, as readable tables. `schedules_prefect_vectors.rs` holds the cases checked against
//! Prefect itself.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, FixedOffset, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use serde_json::{Value, json};
use sluice_core::schedules::{
    CronSchedule, IntervalSchedule, MAX_ITERATIONS, RRuleSchedule, Schedule, ScheduleError,
    ScheduleWindow, SchedulerSettings, dates_in_window, dates_to_schedule, idempotency_key,
    normalize_rrule, parse_interval_seconds, python_datetime_str, schedule_needs_runs,
};
use uuid::Uuid;

fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn schedule(value: &Value) -> Schedule {
    Schedule::from_json(value).unwrap_or_else(|e| panic!("{value}: {e}"))
}

/// Dates as Python prints them, which shows the local time and the offset at once.
fn python(dates: &[DateTime<Tz>]) -> Vec<String> {
    dates.iter().map(python_datetime_str).collect()
}

#[test]
fn invalid_schedules_are_refused_with_a_message_naming_the_field() {
    let too_long = format!("RDATE:{}", vec!["20200101T000000Z"; 400].join(","));
    let cases = [
        (
            json!({"cron": "61 * * * *"}),
            "invalid cron expression '61 * * * *': 61 is out of range for the minute field (0-59)",
        ),
        (
            json!({"cron": "5 4 R * *"}),
            "invalid cron expression '5 4 R * *': random and hashed expressions (R, H) are not supported",
        ),
        (
            json!({"cron": "H * * * *"}),
            "invalid cron expression 'H * * * *': random and hashed expressions (R, H) are not supported",
        ),
        (
            json!({"cron": "1 2 3 4"}),
            "invalid cron expression '1 2 3 4': expected 5, 6 or 7 fields, got 4",
        ),
        (
            json!({"cron": "0 0 15W * *"}),
            "invalid cron expression '0 0 15W * *': '15w' is not a valid day-of-month value",
        ),
        (
            json!({"cron": "0 9 * * *", "timezone": "Mars/Olympus"}),
            "invalid timezone 'Mars/Olympus': not an IANA time zone name (for example America/New_York)",
        ),
        (json!({"cron": 5}), "invalid cron: expected a string"),
        (
            json!({"cron": "* * * * *", "day_or": "yes"}),
            "invalid day_or: expected a boolean",
        ),
        (
            json!({"cron": "* * * * *", "foo": "bar"}),
            "unknown field 'foo' in cron schedule",
        ),
        (
            json!({"interval": 0}),
            "invalid interval: must be greater than 0 seconds",
        ),
        (
            json!({"interval": -60}),
            "invalid interval: must be greater than 0 seconds",
        ),
        (
            json!({"interval": 1e-7}),
            "invalid interval: must be greater than 0 seconds",
        ),
        (
            json!({"interval": "abc"}),
            "invalid interval: 'abc': expected seconds, an ISO-8601 duration or HH:MM:SS",
        ),
        (
            json!({"interval": "P1M"}),
            "invalid interval: 'P1M': calendar years and months are not supported",
        ),
        (
            json!({"interval": true}),
            "invalid interval: expected a number of seconds",
        ),
        (
            json!({"interval": 60, "foo": 1}),
            "unknown field 'foo' in interval schedule",
        ),
        (
            json!({"interval": 60, "anchor_date": "soon"}),
            "invalid anchor_date 'soon': expected an ISO-8601 date-time",
        ),
        (
            json!({"interval": 60, "timezone": "Mars/Olympus"}),
            "invalid timezone 'Mars/Olympus': not an IANA time zone name (for example America/New_York)",
        ),
        (
            json!({"rrule": "FREQ=DAILY", "extra": true}),
            "unknown field 'extra' in rrule schedule",
        ),
        (
            json!({"rrule": "FOO:BAR"}),
            "invalid rrule 'FOO:BAR': unsupported property: FOO",
        ),
        (
            json!({"rrule": "DTSTART:20200101T000000"}),
            "invalid rrule 'DTSTART:20200101T000000': no RRULE or RDATE given",
        ),
        (
            json!({"rrule": "FREQ=DAILY;INTERVAL=2;"}),
            "invalid rrule 'FREQ=DAILY;INTERVAL=2;': '' is not a NAME=VALUE rule part",
        ),
        (
            json!({"rrule": "DTSTART:20200101T000000Z\nRRULE:FREQ=DAILY;UNTIL=20300101T000000"}),
            "invalid rrule 'DTSTART:20200101T000000Z\nRRULE:FREQ=DAILY;UNTIL=20300101T000000': RRULE UNTIL values must be specified in UTC when DTSTART is timezone-aware",
        ),
        (
            json!({"rrule": too_long}),
            "invalid rrule 'RDATE:20200101T000000Z,20200101T000000Z,...': max length is 6500, got 6805",
        ),
        (
            json!({}),
            "schedule must be a JSON object with exactly one of 'interval', 'cron' or 'rrule'",
        ),
        (
            json!({"cron": "* * * * *", "interval": 60}),
            "schedule must be a JSON object with exactly one of 'interval', 'cron' or 'rrule'",
        ),
        (
            json!("0 9 * * *"),
            "schedule must be a JSON object with exactly one of 'interval', 'cron' or 'rrule'",
        ),
    ];
    for (value, message) in cases {
        let label: String = value.to_string().chars().take(80).collect();
        let error = Schedule::from_json(&value).expect_err(&label);
        assert_eq!(error.to_string(), message, "{label}");
    }
    // The crate's own wording follows this prefix.
    let error = Schedule::from_json(&json!({"rrule": "FREQ=DAILYBAD"})).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("invalid rrule 'FREQ=DAILYBAD': "),
        "{error}"
    );
    let error = Schedule::from_json(&json!({"rrule": "FREQ=DAILY;BYDAY=XX"})).unwrap_err();
    assert!(
        matches!(error, ScheduleError::InvalidRRule { .. }),
        "{error}"
    );
}

#[test]
fn serde_goes_through_prefect_shapes() {
    let cases = [
        (
            json!({"interval": 3600, "anchor_date": "2026-03-10T09:00:00-04:00"}),
            json!({"interval": 3600.0, "anchor_date": "2026-03-10T09:00:00-04:00", "timezone": "UTC"}),
        ),
        (
            json!({"interval": "PT1H30M", "anchor_date": "2026-03-10T09:00:00.25Z", "timezone": "Europe/Paris"}),
            json!({"interval": 5400.0, "anchor_date": "2026-03-10T09:00:00.250000Z", "timezone": "Europe/Paris"}),
        ),
        (
            // Without an offset the anchor is read in the schedule's zone.
            json!({"interval": 60, "anchor_date": "2026-07-01T09:00:00", "timezone": "America/New_York"}),
            json!({"interval": 60.0, "anchor_date": "2026-07-01T09:00:00-04:00", "timezone": "America/New_York"}),
        ),
        (
            json!({"interval": 60}),
            json!({"interval": 60.0, "timezone": null}),
        ),
        (
            json!({"cron": "0 9 * * *"}),
            json!({"cron": "0 9 * * *", "timezone": null, "day_or": true}),
        ),
        (
            json!({"cron": "0 9 8-14 * 5", "timezone": "America/New_York", "day_or": false}),
            json!({"cron": "0 9 8-14 * 5", "timezone": "America/New_York", "day_or": false}),
        ),
        (
            json!({"rrule": "FREQ=DAILY"}),
            json!({"rrule": "FREQ=DAILY", "timezone": "UTC"}),
        ),
        (
            json!({"rrule": "FREQ=DAILY", "timezone": null}),
            json!({"rrule": "FREQ=DAILY", "timezone": null}),
        ),
    ];
    for (input, output) in cases {
        let parsed: Schedule = serde_json::from_value(input.clone()).unwrap();
        assert_eq!(serde_json::to_value(&parsed).unwrap(), output, "{input}");
        // What Sluice writes it reads back unchanged.
        let again: Schedule = serde_json::from_value(output.clone()).unwrap();
        assert_eq!(again, parsed, "{output}");
    }
    let error = serde_json::from_value::<Schedule>(json!({"cron": "61 * * * *"})).unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid cron expression '61 * * * *': 61 is out of range for the minute field (0-59)"
    );
    let cron: CronSchedule = serde_json::from_value(json!({"cron": "@daily"})).unwrap();
    assert_eq!(cron, CronSchedule::new("@daily"));
    let rrule: RRuleSchedule = serde_json::from_value(json!({"rrule": "FREQ=WEEKLY"})).unwrap();
    assert_eq!(rrule, RRuleSchedule::new("FREQ=WEEKLY"));
    let interval: IntervalSchedule = serde_json::from_value(json!({"interval": 1.5})).unwrap();
    assert_eq!(interval.interval, 1.5);
}

#[test]
fn kinds_are_told_apart_by_their_key() {
    let cases = [
        (json!({"interval": 60}), "IntervalSchedule"),
        (json!({"cron": "* * * * *"}), "CronSchedule"),
        (json!({"rrule": "FREQ=DAILY"}), "RRuleSchedule"),
    ];
    for (value, kind) in cases {
        assert_eq!(schedule(&value).kind_name(), kind);
    }
}

#[test]
fn interval_strings_read_like_timedeltas() {
    let cases = [
        ("PT1H", 3600.0),
        ("P1DT30M", 88_200.0),
        ("01:00:00", 3600.0),
        ("1 day, 0:00:00", 86_400.0),
    ];
    for (text, seconds) in cases {
        assert_eq!(parse_interval_seconds(text).unwrap(), seconds, "{text}");
    }
}

#[test]
fn normalize_fills_what_prefect_fills_on_write() {
    let now = at("2026-03-10T14:37:12.5Z");
    let mut interval = schedule(&json!({"interval": 3600}));
    assert_eq!(
        interval.get_dates(1, now, None),
        Err(ScheduleError::MissingAnchorDate)
    );
    interval.normalize(now);
    assert_eq!(
        interval.to_json(),
        json!({"interval": 3600.0, "anchor_date": "2026-03-10T14:37:12.500000Z", "timezone": "UTC"})
    );
    let cron = schedule(&json!({"cron": "0 9 * * *"}));
    assert_eq!(cron.normalized(now), cron);
    let rrule = schedule(&json!({"rrule": "FREQ=MINUTELY;INTERVAL=5", "timezone": "Asia/Kolkata"}));
    assert_eq!(
        rrule.normalized(now).to_json(),
        json!({"rrule": "DTSTART:20260310T200500\nFREQ=MINUTELY;INTERVAL=5", "timezone": "Asia/Kolkata"})
    );
    let daily = schedule(&json!({"rrule": "FREQ=DAILY"}));
    assert_eq!(
        daily.normalized(now).to_json()["rrule"],
        "DTSTART:20200101T000000\nFREQ=DAILY"
    );
    assert_eq!(
        normalize_rrule("DTSTART:20240101T000000\nFREQ=HOURLY", None, now),
        "DTSTART:20240101T000000\nFREQ=HOURLY"
    );
}

#[test]
fn dst_rules() {
    let ny = "America/New_York";
    let cases = [
        (
            "daily 09:00 interval stays 09:00 local across the March change",
            json!({"interval": 86400, "anchor_date": "2026-01-05T09:00:00-05:00", "timezone": ny}),
            "2026-03-06T00:00:00Z",
            "2026-03-10T23:00:00Z",
            vec![
                "2026-03-06 09:00:00-05:00",
                "2026-03-07 09:00:00-05:00",
                "2026-03-08 09:00:00-04:00",
                "2026-03-09 09:00:00-04:00",
                "2026-03-10 09:00:00-04:00",
            ],
        ),
        (
            "daily 09:00 interval stays 09:00 local across the November change",
            json!({"interval": 86400, "anchor_date": "2026-01-05T09:00:00-05:00", "timezone": ny}),
            "2026-10-30T00:00:00Z",
            "2026-11-03T23:00:00Z",
            vec![
                "2026-10-30 09:00:00-04:00",
                "2026-10-31 09:00:00-04:00",
                "2026-11-01 09:00:00-05:00",
                "2026-11-02 09:00:00-05:00",
                "2026-11-03 09:00:00-05:00",
            ],
        ),
        (
            // Every UTC hour; 01:00 shows twice. Sorted as Python sorts one zone's datetimes.
            "hourly interval fires every UTC hour across fall-back",
            json!({"interval": 3600, "anchor_date": "2026-01-01T00:00:00Z", "timezone": ny}),
            "2026-11-01T04:00:00Z",
            "2026-11-01T08:00:00Z",
            vec![
                "2026-11-01 00:00:00-04:00",
                "2026-11-01 01:00:00-04:00",
                "2026-11-01 01:00:00-05:00",
                "2026-11-01 02:00:00-05:00",
                "2026-11-01 03:00:00-05:00",
            ],
        ),
        (
            "cron 09:30 is 09:30 local every day",
            json!({"cron": "30 9 * * *", "timezone": ny}),
            "2026-03-06T00:00:00Z",
            "2026-03-10T23:00:00Z",
            vec![
                "2026-03-06 09:30:00-05:00",
                "2026-03-07 09:30:00-05:00",
                "2026-03-08 09:30:00-04:00",
                "2026-03-09 09:30:00-04:00",
                "2026-03-10 09:30:00-04:00",
            ],
        ),
        (
            "cron hourly pauses two hours when clocks go back",
            json!({"cron": "0 * * * *", "timezone": ny}),
            "2026-11-01T04:00:00Z",
            "2026-11-01T08:00:00Z",
            vec![
                "2026-11-01 00:00:00-04:00",
                "2026-11-01 01:00:00-04:00",
                "2026-11-01 02:00:00-05:00",
                "2026-11-01 03:00:00-05:00",
            ],
        ),
        (
            "cron time skipped by spring-forward runs an hour later",
            json!({"cron": "30 2 * * *", "timezone": ny}),
            "2026-03-07T00:00:00Z",
            "2026-03-09T23:00:00Z",
            vec![
                "2026-03-07 02:30:00-05:00",
                "2026-03-08 03:30:00-04:00",
                "2026-03-09 02:30:00-04:00",
            ],
        ),
        (
            "cron 'second Friday' with day_or false",
            json!({"cron": "0 9 8-14 * 5", "timezone": ny, "day_or": false}),
            "2026-01-01T00:00:00Z",
            "2026-04-30T00:00:00Z",
            vec![
                "2026-01-09 09:00:00-05:00",
                "2026-02-13 09:00:00-05:00",
                "2026-03-13 09:00:00-04:00",
                "2026-04-10 09:00:00-04:00",
            ],
        ),
        (
            "rrule DTSTART is floating local time",
            json!({"rrule": "DTSTART:20260306T090000\nRRULE:FREQ=DAILY", "timezone": ny}),
            "2026-03-06T00:00:00Z",
            "2026-03-09T23:00:00Z",
            vec![
                "2026-03-06 09:00:00-05:00",
                "2026-03-07 09:00:00-05:00",
                "2026-03-08 09:00:00-04:00",
                "2026-03-09 09:00:00-04:00",
            ],
        ),
        (
            "rrule time skipped by spring-forward moves back (dateutil)",
            json!({"rrule": "DTSTART:20260307T023000\nRRULE:FREQ=DAILY", "timezone": ny}),
            "2026-03-07T00:00:00Z",
            "2026-03-09T23:00:00Z",
            vec![
                "2026-03-07 02:30:00-05:00",
                "2026-03-08 01:30:00-05:00",
                "2026-03-09 02:30:00-04:00",
            ],
        ),
    ];
    for (name, value, start, end, expected) in cases {
        let dates = schedule(&value)
            .get_dates(MAX_ITERATIONS, at(start), Some(at(end)))
            .unwrap();
        assert_eq!(python(&dates), expected, "{name}");
    }
}

#[test]
fn get_dates_bounds() {
    let hourly = schedule(&json!({"interval": 3600, "anchor_date": "2026-01-01T00:00:00Z"}));
    let start = at("2026-03-10T12:00:00Z");
    let cases = [
        // (n, start, end, expected count, first, last)
        (
            5,
            start,
            None,
            5,
            "2026-03-10 12:00:00+00:00",
            "2026-03-10 16:00:00+00:00",
        ),
        (
            100,
            start,
            Some(at("2026-03-10T15:00:00Z")),
            4,
            "2026-03-10 12:00:00+00:00",
            "2026-03-10 15:00:00+00:00",
        ),
        (
            0,
            start,
            None,
            1,
            "2026-03-10 12:00:00+00:00",
            "2026-03-10 12:00:00+00:00",
        ),
        (
            5,
            at("2026-03-10T12:00:00.000001Z"),
            None,
            5,
            "2026-03-10 13:00:00+00:00",
            "2026-03-10 17:00:00+00:00",
        ),
        (
            5000,
            start,
            Some(at("2027-03-10T12:00:00Z")),
            1002,
            "2026-03-10 12:00:00+00:00",
            "2026-04-21 05:00:00+00:00",
        ),
    ];
    for (n, start, end, count, first, last) in cases {
        let dates = python(&hourly.get_dates(n, start, end).unwrap());
        assert_eq!(dates.len(), count, "n={n} start={start} end={end:?}");
        assert_eq!(
            (dates[0].as_str(), dates[count - 1].as_str()),
            (first, last),
            "n={n}"
        );
    }
    assert!(
        hourly
            .get_dates(5, start, Some(start - TimeDelta::seconds(1)))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn python_datetime_str_matches_python() {
    let ny: Tz = "America/New_York".parse().unwrap();
    let kolkata: Tz = "Asia/Kolkata".parse().unwrap();
    let utc = Tz::UTC;
    let cases = [
        (
            python_datetime_str(&ny.with_ymd_and_hms(2026, 3, 10, 9, 0, 0).unwrap()),
            "2026-03-10 09:00:00-04:00",
        ),
        (
            python_datetime_str(&utc.with_ymd_and_hms(2026, 3, 10, 13, 0, 0).unwrap()),
            "2026-03-10 13:00:00+00:00",
        ),
        (
            python_datetime_str(
                &(utc.with_ymd_and_hms(2026, 3, 10, 13, 0, 0).unwrap()
                    + TimeDelta::microseconds(250)),
            ),
            "2026-03-10 13:00:00.000250+00:00",
        ),
        (
            python_datetime_str(&kolkata.with_ymd_and_hms(2026, 3, 10, 9, 0, 0).unwrap()),
            "2026-03-10 09:00:00+05:30",
        ),
        // Local mean time before 1883 has seconds in its offset.
        (
            python_datetime_str(&ny.with_ymd_and_hms(1880, 1, 1, 0, 0, 0).unwrap()),
            "1880-01-01 00:00:00-04:56:02",
        ),
        (
            python_datetime_str(
                &FixedOffset::west_opt(3 * 3600)
                    .unwrap()
                    .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
                    .unwrap(),
            ),
            "2026-01-01 00:00:00-03:00",
        ),
        (
            python_datetime_str(&at("2026-03-10T13:00:00Z")),
            "2026-03-10 13:00:00+00:00",
        ),
    ];
    for (got, expected) in cases {
        assert_eq!(got, expected);
    }
}

#[test]
fn idempotency_key_format() {
    let deployment = Uuid::parse_str("0d5f6c9a-3f6e-4e55-9b1a-2a4c1f0e8b7d").unwrap();
    let schedule_id = Uuid::parse_str("6b1e2f3a-8c4d-4e9f-a0b1-c2d3e4f5a6b7").unwrap();
    let ny: Tz = "America/New_York".parse().unwrap();
    let date = ny.with_ymd_and_hms(2026, 3, 10, 9, 0, 0).unwrap();
    assert_eq!(
        idempotency_key(deployment, schedule_id, &date),
        "scheduled 0d5f6c9a-3f6e-4e55-9b1a-2a4c1f0e8b7d 6b1e2f3a-8c4d-4e9f-a0b1-c2d3e4f5a6b7 2026-03-10 09:00:00-04:00"
    );
    // The same instant in another zone is another key: the zone is the schedule's.
    assert_ne!(
        idempotency_key(deployment, schedule_id, &date.with_timezone(&Utc)),
        idempotency_key(deployment, schedule_id, &date)
    );
}

#[test]
fn scheduler_settings_have_prefects_defaults() {
    let s = SchedulerSettings::default();
    assert_eq!(s.loop_seconds, 60.0);
    assert_eq!(s.deployment_batch_size, 100);
    assert_eq!(s.max_runs, 100);
    assert_eq!(s.min_runs, 3);
    assert_eq!(s.max_scheduled_time, TimeDelta::days(100));
    assert_eq!(s.min_scheduled_time, TimeDelta::hours(1));
    assert_eq!(s.insert_batch_size, 500);
    assert_eq!(s.recent_deployments_loop_seconds, 5.0);
    assert_eq!(s.loop_interval(), std::time::Duration::from_secs(60));
    assert_eq!(s.recent_deployments_window(), TimeDelta::seconds(6));
}

#[test]
fn which_schedules_need_runs() {
    let now = at("2026-03-10T12:00:00Z");
    let settings = SchedulerSettings::default();
    let cases = [
        // (future runs, latest, needs runs)
        (0, None, true),
        (2, Some("2026-03-12T12:00:00Z"), true),
        (3, Some("2026-03-10T12:59:59Z"), true),
        (3, Some("2026-03-10T13:00:00Z"), false),
        (10, Some("2026-03-11T00:00:00Z"), false),
    ];
    for (count, latest, needs) in cases {
        assert_eq!(
            schedule_needs_runs(count, latest.map(at), now, &settings),
            needs,
            "{count} {latest:?}"
        );
    }
    let no_minimum = SchedulerSettings {
        min_runs: 0,
        ..SchedulerSettings::default()
    };
    assert!(!schedule_needs_runs(0, None, now, &no_minimum));
}

#[test]
fn planning_stops_at_both_minimums_or_a_maximum() {
    let now = at("2026-03-10T12:00:00Z");
    let settings = SchedulerSettings::default();
    let cases = [
        // (schedule, runs created by the scheduler at `now`)
        (
            json!({"interval": 60, "anchor_date": "2026-01-01T00:00:00Z"}),
            61,
        ), // until one is an hour out
        (
            json!({"interval": 3600, "anchor_date": "2026-01-01T00:00:00Z"}),
            3,
        ), // three, the last 2 h out
        (
            json!({"interval": 5, "anchor_date": "2026-01-01T00:00:00Z"}),
            100,
        ), // max_runs
        (json!({"cron": "0 9 1 * *"}), 3), // monthly: 3 within 100 days
        (json!({"cron": "0 0 1 1 *"}), 0), // yearly: none within 100 days
        (
            json!({"rrule": "DTSTART:20260301T000000\nRRULE:FREQ=DAILY;COUNT=11"}),
            1, // only 11 March is left
        ),
    ];
    for (value, count) in cases {
        let dates = dates_to_schedule(&schedule(&value), now, &settings).unwrap();
        assert_eq!(dates.len(), count, "{value}");
        assert!(dates.windows(2).all(|w| w[0] < w[1]), "{value}");
        assert!(
            dates
                .iter()
                .all(|d| *d >= now && *d <= now + TimeDelta::days(100)),
            "{value}"
        );
    }

    // A backfill window, as `POST /deployments/{id}/schedule` passes it.
    let daily = schedule(&json!({"cron": "0 6 * * *", "timezone": "Europe/Paris"}));
    let window = ScheduleWindow {
        start: at("2026-01-01T00:00:00Z"),
        end: at("2026-01-10T23:59:59Z"),
        min_time: TimeDelta::days(30),
        min_runs: 0,
        max_runs: 100,
    };
    let dates = python(&dates_in_window(&daily, &window).unwrap());
    assert_eq!(dates.len(), 10);
    assert_eq!(dates[0], "2026-01-01 06:00:00+01:00");
    assert_eq!(dates[9], "2026-01-10 06:00:00+01:00");
}
