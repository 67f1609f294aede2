//! Request and response bodies in Prefect's wire format, converted explicitly to and from the
//! domain types. Request bodies reject unknown fields, as Prefect's action models do.

pub mod artifacts;
pub mod blocks;
pub mod concurrency;
pub mod deployments;
pub mod events;
pub mod filters;
pub mod misc;
pub mod pools;
pub mod runs;
pub mod task_runs;

use serde::{Deserialize, Deserializer};
use sluice_core::domain::Timestamp;

/// For PATCH bodies: distinguishes an absent field (`None`) from an explicit null
/// (`Some(None)`), because Prefect clears a field on null and leaves it alone when absent.
pub fn nullable<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// An optional integer that also accepts an integral float (`30.0`), as pydantic's lax `int`
/// does: Python clients send floats where settings are floats (e.g. the worker's
/// `heartbeat_interval_seconds` from `PREFECT_WORKER_HEARTBEAT_SECONDS`).
pub fn lax_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let raw = Option::<serde_json::Number>::deserialize(d)?;
    match raw {
        None => Ok(None),
        Some(n) => n
            .as_i64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                    .map(|f| f as i64)
            })
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom(format!("{n} is not a valid integer"))),
    }
}

/// Timestamps in the forms Prefect's clients send (ISO-8601 or Python's space-separated str).
pub fn timestamp<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
    let raw = Option::<String>::deserialize(d)?;
    match raw {
        None => Ok(None),
        Some(s) => sluice_core::time::parse_timestamp(&s)
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom(format!("invalid datetime {s:?}"))),
    }
}

pub fn nullable_timestamp<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<Timestamp>>, D::Error> {
    timestamp(d).map(Some)
}

pub fn ts(t: Timestamp) -> String {
    sluice_core::time::format_timestamp(t)
}

pub fn ts_opt(t: Option<Timestamp>) -> Option<String> {
    t.map(ts)
}
