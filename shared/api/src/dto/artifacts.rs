//! Artifacts on the wire, and Prefect's artifact filter.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};
use sluice_core::domain::{Artifact, Id};
use sluice_services::{ArtifactSort, LatestArtifact};
use sluice_store::ArtifactFilter;

use super::{nullable, ts};
use crate::error::ApiError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactCreate {
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub data: Value,
    #[serde(default)]
    pub metadata_: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub flow_run_id: Option<Id>,
    #[serde(default)]
    pub task_run_id: Option<Id>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactUpdate {
    #[serde(default)]
    pub data: Option<Value>,
    #[serde(default, deserialize_with = "nullable")]
    pub description: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub metadata_: Option<Option<BTreeMap<String, String>>>,
}

pub fn artifact_json(a: &Artifact) -> Value {
    json!({
        "id": a.id,
        "created": ts(a.created),
        "updated": ts(a.updated),
        "key": a.key,
        "type": a.kind,
        "description": a.description,
        "data": a.data,
        "metadata_": a.metadata,
        "flow_run_id": a.flow_run_id,
        "task_run_id": a.task_run_id,
    })
}

/// Prefect's `ArtifactCollection`: the key's id and first use, the latest artifact's content.
pub fn latest_json(l: &LatestArtifact) -> Value {
    let mut v = artifact_json(&l.latest);
    v["id"] = json!(l.id);
    v["created"] = json!(ts(l.first_created));
    v["latest_id"] = json!(l.latest.id);
    v
}

fn bad(path: &str, message: &str) -> ApiError {
    let mut location: Vec<Value> = vec!["body".into()];
    location.extend(path.split('.').map(|p| Value::from(p.to_owned())));
    ApiError::invalid_field(location, message)
}

fn strings(body: &Value, pointer: &str, path: &str) -> Result<Option<Vec<String>>, ApiError> {
    match body.pointer(pointer) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| bad(path, "must be a list of strings"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(bad(path, "must be a list")),
    }
}

fn ids(body: &Value, pointer: &str, path: &str) -> Result<Option<Vec<Id>>, ApiError> {
    strings(body, pointer, path)?
        .map(|list| {
            list.iter()
                .map(|s| {
                    s.parse()
                        .map_err(|_| bad(path, &format!("{s:?} is not a UUID")))
                })
                .collect()
        })
        .transpose()
}

/// The keys of `body[section]` that Sluice does not read are refused, not ignored.
fn only(body: &Value, section: &str, allowed: &[&str]) -> Result<(), ApiError> {
    if let Some(map) = body.get(section).and_then(Value::as_object) {
        for (k, v) in map {
            if !v.is_null() && !allowed.contains(&k.as_str()) {
                return Err(bad(
                    &format!("{section}.{k}"),
                    "this artifact filter is not supported",
                ));
            }
        }
    }
    Ok(())
}

/// `{artifacts, flow_runs, task_runs}` of an artifact query; `latest_id.any_` (collections only)
/// comes back separately.
pub fn artifact_filter(body: &Value) -> Result<(ArtifactFilter, Option<Vec<Id>>), ApiError> {
    only(
        body,
        "artifacts",
        &[
            "id",
            "latest_id",
            "key",
            "flow_run_id",
            "task_run_id",
            "type",
            "operator",
        ],
    )?;
    only(body, "flow_runs", &["id", "operator"])?;
    only(body, "task_runs", &["id", "operator"])?;
    for section in ["flows", "deployments"] {
        if body.get(section).is_some_and(|v| !v.is_null()) {
            return Err(bad(section, "filtering artifacts by this is not supported"));
        }
    }
    if let Some(op) = body.pointer("/artifacts/operator").and_then(Value::as_str)
        && op != "and_"
    {
        return Err(bad("artifacts.operator", "only and_ is supported"));
    }
    let mut filter = ArtifactFilter {
        ids: ids(body, "/artifacts/id/any_", "artifacts.id.any_")?,
        keys: strings(body, "/artifacts/key/any_", "artifacts.key.any_")?,
        key_like: body
            .pointer("/artifacts/key/like_")
            .and_then(Value::as_str)
            .map(str::to_owned),
        key_exists: body
            .pointer("/artifacts/key/exists_")
            .and_then(Value::as_bool),
        flow_run_ids: ids(
            body,
            "/artifacts/flow_run_id/any_",
            "artifacts.flow_run_id.any_",
        )?,
        task_run_ids: ids(
            body,
            "/artifacts/task_run_id/any_",
            "artifacts.task_run_id.any_",
        )?,
        types: strings(body, "/artifacts/type/any_", "artifacts.type.any_")?,
        not_types: strings(body, "/artifacts/type/not_any_", "artifacts.type.not_any_")?,
    };
    // A run filter narrows the artifacts' own run ids (both must hold).
    let intersect = |own: Option<Vec<Id>>, other: Option<Vec<Id>>| match (own, other) {
        (Some(a), Some(b)) => Some(a.into_iter().filter(|i| b.contains(i)).collect()),
        (a, None) => a,
        (None, b) => b,
    };
    filter.flow_run_ids = intersect(
        filter.flow_run_ids,
        ids(body, "/flow_runs/id/any_", "flow_runs.id.any_")?,
    );
    filter.task_run_ids = intersect(
        filter.task_run_ids,
        ids(body, "/task_runs/id/any_", "task_runs.id.any_")?,
    );
    let latest_ids = ids(
        body,
        "/artifacts/latest_id/any_",
        "artifacts.latest_id.any_",
    )?;
    Ok((filter, latest_ids))
}

pub fn artifact_sort(body: &Value) -> Result<ArtifactSort, ApiError> {
    match body.get("sort") {
        None | Some(Value::Null) => Ok(ArtifactSort::default()),
        Some(Value::String(s)) => ArtifactSort::parse(s).ok_or_else(|| {
            bad(
                "sort",
                "must be one of CREATED_DESC, UPDATED_DESC, ID_DESC, KEY_DESC, KEY_ASC",
            )
        }),
        Some(_) => Err(bad("sort", "must be a string")),
    }
}
