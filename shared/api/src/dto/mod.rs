//! Request and response bodies in Prefect's wire format, converted explicitly to and from the
//! domain types. Request bodies reject unknown fields, as Prefect's action models do.

pub mod deployments;
pub mod filters;
pub mod misc;
pub mod pools;
pub mod runs;

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
