//! Item encoding: keys, the compressed document attribute, and top-level attributes that
//! conditions and indexes need.
//!
//! Every object is stored as its domain type's JSON, deflated, in the binary attribute `d`
//! (documents compress 3-5x, and write units are charged per KiB). Fields that a condition,
//! an index or a partial update must see live beside it as plain attributes.

use std::collections::HashMap;
use std::io::{Read, Write};

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use flate2::Compression;
use flate2::read::DeflateDecoder;
use flate2::write::DeflateEncoder;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sluice_core::domain::{Id, Timestamp};
use sluice_store::StoreError;

use crate::error::corrupt;
use crate::schema::{PK, SK};

pub(crate) type Item = HashMap<String, AttributeValue>;
pub(crate) type Result<T> = std::result::Result<T, StoreError>;

/// The sort key of single-item objects.
pub(crate) const ONLY: &str = "#";

pub(crate) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(crate) fn n(v: impl std::fmt::Display) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// Fixed-width UTC text, so string order is time order (index sort keys rely on it).
pub(crate) fn ts(t: Timestamp) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

pub(crate) fn key(pk: impl Into<String>, sk: impl Into<String>) -> Item {
    HashMap::from([(PK.to_owned(), s(pk)), (SK.to_owned(), s(sk))])
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Result<AttributeValue> {
    let json = serde_json::to_vec(value).map_err(|e| corrupt("encoding", e))?;
    let mut enc = DeflateEncoder::new(Vec::with_capacity(json.len() / 3), Compression::fast());
    enc.write_all(&json)
        .and_then(|()| enc.finish())
        .map(|bytes| AttributeValue::B(Blob::new(bytes)))
        .map_err(|e| corrupt("compressing", e))
}

pub(crate) fn decode_value<T: DeserializeOwned>(what: &str, v: &AttributeValue) -> Result<T> {
    let AttributeValue::B(blob) = v else {
        return Err(corrupt(what, "document attribute is not binary"));
    };
    let mut json = Vec::new();
    DeflateDecoder::new(blob.as_ref())
        .read_to_end(&mut json)
        .map_err(|e| corrupt(what, e))?;
    serde_json::from_slice(&json).map_err(|e| corrupt(what, e))
}

/// The document in `d`.
pub(crate) fn doc<T: DeserializeOwned>(what: &str, item: &Item) -> Result<T> {
    let v = item
        .get("d")
        .ok_or_else(|| corrupt(what, "item has no document"))?;
    decode_value(what, v)
}

pub(crate) fn get_s<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Some(v),
        _ => None,
    }
}

pub(crate) fn get_n(item: &Item, name: &str) -> Option<u64> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => v.parse().ok(),
        _ => None,
    }
}

pub(crate) fn get_id(what: &str, item: &Item, name: &str) -> Result<Id> {
    get_s(item, name)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| corrupt(what, format!("attribute {name} is missing or not an id")))
}

pub(crate) fn parse_ts(what: &str, v: &str) -> Result<Timestamp> {
    chrono::DateTime::parse_from_rfc3339(v)
        .map(|t| t.to_utc())
        .map_err(|e| corrupt(what, e))
}

/// Epoch seconds `days` after `from`, for the TTL attribute.
pub(crate) fn expiry(from: Timestamp, days: u32) -> AttributeValue {
    n((from + chrono::Duration::days(i64::from(days))).timestamp())
}
