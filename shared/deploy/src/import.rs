//! `sluice import --from URL`: what a running Prefect server (2.x or 3.x) holds, read through
//! its REST API, turned into the requests that create the same objects on Sluice. Pure: the
//! caller reads the source and the target and sends the requests (`cli/src/commands/import.rs`).
//!
//! Each object is keyed by its natural key (a pool by name, a queue by pool and name, a
//! deployment by flow name and name, a block document by type slug and name), so an import run
//! twice updates what the first made and creates nothing twice.

use serde_json::{Map, Value, json};

/// One object to bring over, in the order the writes must happen.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub kind: Kind,
    /// The natural key, for the report (`pool/queue`, `flow/deployment`, `slug/name`).
    pub key: String,
    /// The body Sluice's create (or upsert) route takes.
    pub body: Value,
    /// What was changed on the way, for the report.
    pub changed: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    BlockType,
    BlockSchema,
    BlockDocument,
    Variable,
    GlobalLimit,
    TagLimit,
    WorkPool,
    WorkQueue,
    Flow,
    Deployment,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::BlockType => "block type",
            Kind::BlockSchema => "block schema",
            Kind::BlockDocument => "block document",
            Kind::Variable => "variable",
            Kind::GlobalLimit => "global concurrency limit",
            Kind::TagLimit => "tag concurrency limit",
            Kind::WorkPool => "work pool",
            Kind::WorkQueue => "work queue",
            Kind::Flow => "flow",
            Kind::Deployment => "deployment",
        }
    }

    /// The names `--only` takes.
    pub fn parse(s: &str) -> Option<Vec<Kind>> {
        Some(match s {
            "blocks" => vec![Kind::BlockType, Kind::BlockSchema, Kind::BlockDocument],
            "variables" => vec![Kind::Variable],
            "concurrency-limits" => vec![Kind::GlobalLimit, Kind::TagLimit],
            "work-pools" => vec![Kind::WorkPool, Kind::WorkQueue],
            "flows" => vec![Kind::Flow],
            "deployments" => vec![Kind::Flow, Kind::Deployment],
            _ => return None,
        })
    }
}

/// Something the source holds that is not brought over, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip {
    pub kind: Kind,
    pub key: String,
    pub reason: String,
}

/// The source server's objects, as its `/filter` routes answer them.
#[derive(Debug, Clone, Default)]
pub struct Source {
    pub block_types: Vec<Value>,
    pub block_schemas: Vec<Value>,
    /// Read with `include_secrets`.
    pub block_documents: Vec<Value>,
    pub variables: Vec<Value>,
    pub global_limits: Vec<Value>,
    pub tag_limits: Vec<Value>,
    pub work_pools: Vec<Value>,
    /// `(pool name, queue)`.
    pub work_queues: Vec<(String, Value)>,
    pub flows: Vec<Value>,
    pub deployments: Vec<Value>,
}

fn s<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// Copies the named fields that are present (nulls included) from `from`.
fn pick(from: &Value, keys: &[&str]) -> Map<String, Value> {
    let mut out = Map::new();
    for k in keys {
        if let Some(v) = from.get(*k) {
            out.insert((*k).to_owned(), v.clone());
        }
    }
    out
}

/// Every object of `source` as Sluice requests, with what is left out and why.
#[must_use]
pub fn plan(source: &Source) -> (Vec<Item>, Vec<Skip>) {
    let mut items = Vec::new();
    let mut skips = Vec::new();

    for t in &source.block_types {
        let Some(slug) = s(t, "slug") else { continue };
        items.push(Item {
            kind: Kind::BlockType,
            key: slug.to_owned(),
            body: Value::Object(pick(
                t,
                &[
                    "name",
                    "slug",
                    "logo_url",
                    "documentation_url",
                    "description",
                    "code_example",
                ],
            )),
            changed: Vec::new(),
        });
    }
    let slug_of_type: std::collections::HashMap<&str, &str> = source
        .block_types
        .iter()
        .filter_map(|t| Some((s(t, "id")?, s(t, "slug")?)))
        .collect();
    for sc in &source.block_schemas {
        let Some(slug) = sc
            .get("block_type")
            .and_then(|t| s(t, "slug"))
            .or_else(|| s(sc, "block_type_id").and_then(|id| slug_of_type.get(id).copied()))
        else {
            continue;
        };
        let mut body = pick(sc, &["fields", "capabilities", "version"]);
        // The target's id of the type is filled in by the caller; the target computes the
        // checksum itself (the same digest), so it is only the key here.
        body.insert("block_type_slug".to_owned(), json!(slug));
        items.push(Item {
            kind: Kind::BlockSchema,
            key: format!("{slug}/{}", s(sc, "checksum").unwrap_or("?")),
            body: Value::Object(body),
            changed: Vec::new(),
        });
    }
    for d in &source.block_documents {
        let slug = d
            .get("block_type")
            .and_then(|t| s(t, "slug"))
            .or_else(|| s(d, "block_type_id").and_then(|id| slug_of_type.get(id).copied()));
        let (Some(slug), Some(name)) = (slug, s(d, "name")) else {
            continue;
        };
        if d.get("is_anonymous").and_then(Value::as_bool) == Some(true) {
            skips.push(Skip {
                kind: Kind::BlockDocument,
                key: format!("{slug}/{name}"),
                reason: "anonymous (saved for one deployment, not by a person); it comes over with that deployment".to_owned(),
            });
            continue;
        }
        let mut body = pick(d, &["name", "data", "block_schema_id"]);
        body.insert("block_type_slug".to_owned(), json!(slug));
        let mut changed = Vec::new();
        if d.get("block_document_references")
            .and_then(Value::as_object)
            .is_some_and(|r| !r.is_empty())
        {
            changed.push(
                "nested blocks are stored inline (their data as read), not as references"
                    .to_owned(),
            );
        }
        items.push(Item {
            kind: Kind::BlockDocument,
            key: format!("{slug}/{name}"),
            body: Value::Object(body),
            changed,
        });
    }
    for v in &source.variables {
        let Some(name) = s(v, "name") else { continue };
        items.push(Item {
            kind: Kind::Variable,
            key: name.to_owned(),
            body: Value::Object(pick(v, &["name", "value", "tags"])),
            changed: Vec::new(),
        });
    }
    for l in &source.global_limits {
        let Some(name) = s(l, "name") else { continue };
        // A tag limit of Prefect 3 is also listed here as `tag:<tag>`; it comes over as a
        // tag limit.
        if name.starts_with("tag:") {
            continue;
        }
        items.push(Item {
            kind: Kind::GlobalLimit,
            key: name.to_owned(),
            body: Value::Object(pick(
                l,
                &["name", "limit", "active", "slot_decay_per_second"],
            )),
            changed: Vec::new(),
        });
    }
    for l in &source.tag_limits {
        let Some(tag) = s(l, "tag") else { continue };
        items.push(Item {
            kind: Kind::TagLimit,
            key: tag.to_owned(),
            body: json!({"tag": tag, "concurrency_limit": l.get("concurrency_limit")}),
            changed: Vec::new(),
        });
    }
    for p in &source.work_pools {
        let Some(name) = s(p, "name") else { continue };
        if s(p, "type") == Some("prefect-agent") {
            skips.push(Skip {
                kind: Kind::WorkPool,
                key: name.to_owned(),
                reason: "a prefect-agent pool: agents do not exist on Sluice; its deployments come over on pools made from their infrastructure blocks".to_owned(),
            });
            continue;
        }
        items.push(Item {
            kind: Kind::WorkPool,
            key: name.to_owned(),
            body: Value::Object(pick(
                p,
                &[
                    "name",
                    "type",
                    "description",
                    "base_job_template",
                    "is_paused",
                    "concurrency_limit",
                ],
            )),
            changed: Vec::new(),
        });
    }
    let agent_pools: Vec<&str> = source
        .work_pools
        .iter()
        .filter(|p| s(p, "type") == Some("prefect-agent"))
        .filter_map(|p| s(p, "name"))
        .collect();
    for (pool, q) in &source.work_queues {
        let Some(name) = s(q, "name") else { continue };
        if agent_pools.contains(&pool.as_str()) {
            continue;
        }
        items.push(Item {
            kind: Kind::WorkQueue,
            key: format!("{pool}/{name}"),
            body: Value::Object(pick(
                q,
                &[
                    "name",
                    "description",
                    "is_paused",
                    "concurrency_limit",
                    "priority",
                ],
            )),
            changed: Vec::new(),
        });
    }
    let flow_name: std::collections::HashMap<&str, &str> = source
        .flows
        .iter()
        .filter_map(|f| Some((s(f, "id")?, s(f, "name")?)))
        .collect();
    for f in &source.flows {
        let Some(name) = s(f, "name") else { continue };
        items.push(Item {
            kind: Kind::Flow,
            key: name.to_owned(),
            body: Value::Object(pick(f, &["name", "tags", "labels"])),
            changed: Vec::new(),
        });
    }
    for d in &source.deployments {
        let (Some(name), Some(flow)) = (
            s(d, "name"),
            s(d, "flow_id").and_then(|id| flow_name.get(id).copied()),
        ) else {
            continue;
        };
        let key = format!("{flow}/{name}");
        match deployment_body(d, flow) {
            Ok((body, changed)) => items.push(Item {
                kind: Kind::Deployment,
                key,
                body,
                changed,
            }),
            Err(reason) => skips.push(Skip {
                kind: Kind::Deployment,
                key,
                reason,
            }),
        }
    }
    (items, skips)
}

/// A work-pool deployment of the source as `POST /deployments/` takes it (`flow_name` stands
/// for the flow id, which the caller fills in). Prefect 2's single `schedule` with
/// `is_schedule_active` becomes one schedule with that flag; each schedule of a list keeps its
/// own `active`.
fn deployment_body(d: &Value, flow: &str) -> Result<(Value, Vec<String>), String> {
    let agent_era = d.get("work_pool_name").is_none_or(Value::is_null)
        && (d
            .get("infrastructure_document_id")
            .is_some_and(|v| !v.is_null())
            || d.get("storage_document_id").is_some_and(|v| !v.is_null()));
    if agent_era {
        return Err(
            "an agent-era deployment (infrastructure and storage blocks, no work pool): convert it with `sluice migrate deployment` from its deployment.yaml; `import` does not convert it yet"
                .to_owned(),
        );
    }
    let mut changed = Vec::new();
    let mut body = pick(
        d,
        &[
            "name",
            "version",
            "description",
            "parameters",
            "parameter_openapi_schema",
            "enforce_parameter_schema",
            "tags",
            "labels",
            "job_variables",
            "pull_steps",
            "path",
            "entrypoint",
            "work_pool_name",
            "work_queue_name",
            "concurrency_limit",
            "concurrency_options",
            "paused",
        ],
    );
    body.insert("flow_name".to_owned(), json!(flow));
    // Prefect 2 names the job variables `infra_overrides`.
    if !body.contains_key("job_variables")
        && let Some(o) = d.get("infra_overrides").filter(|v| v.is_object())
    {
        body.insert("job_variables".to_owned(), o.clone());
        changed.push("infra_overrides became job_variables".to_owned());
    }
    // Prefect 2.x before `paused`: a deployment whose schedule was off.
    let schedule_active = d.get("is_schedule_active").and_then(Value::as_bool);
    if !body.contains_key("paused")
        && let Some(active) = schedule_active
    {
        body.insert("paused".to_owned(), json!(!active));
    }
    // A 3.x deployment's global concurrency limit object carries the number.
    if let Some(limit) = d
        .get("global_concurrency_limit")
        .and_then(|g| g.get("limit"))
        .filter(|v| !v.is_null())
        && body.get("concurrency_limit").is_none_or(Value::is_null)
    {
        body.insert("concurrency_limit".to_owned(), limit.clone());
    }
    let schedules: Vec<Value> = match (d.get("schedules"), d.get("schedule")) {
        (Some(Value::Array(list)), _) if !list.is_empty() => list
            .iter()
            .map(|s| {
                Value::Object(pick(
                    s,
                    &[
                        "schedule",
                        "active",
                        "max_scheduled_runs",
                        "parameters",
                        "slug",
                    ],
                ))
            })
            .collect(),
        (_, Some(one @ Value::Object(_))) => {
            changed.push("the single `schedule` became a schedule of the list".to_owned());
            vec![json!({"schedule": one, "active": schedule_active.unwrap_or(true)})]
        }
        _ => Vec::new(),
    };
    // Null fields Sluice's strict parser would refuse where Prefect means "unset".
    let schedules: Vec<Value> = schedules
        .into_iter()
        .map(|mut s| {
            if let Some(m) = s.as_object_mut() {
                m.retain(|_, v| !v.is_null());
            }
            s
        })
        .collect();
    body.insert("schedules".to_owned(), Value::Array(schedules));
    Ok((Value::Object(body), changed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefect_2_single_schedules_keep_their_flag_and_agent_era_is_named() {
        let source = Source {
            flows: vec![json!({"id": "f1", "name": "etl"})],
            deployments: vec![
                json!({"name": "old", "flow_id": "f1", "schedule": {"cron": "0 1 * * *"},
                       "is_schedule_active": false, "work_pool_name": "p",
                       "infra_overrides": {"cpu": 512}}),
                json!({"name": "new", "flow_id": "f1", "work_pool_name": "p",
                       "schedules": [{"schedule": {"interval": 60}, "active": false, "max_scheduled_runs": null}]}),
                json!({"name": "agent", "flow_id": "f1", "infrastructure_document_id": "i1"}),
            ],
            work_pools: vec![json!({"name": "agents", "type": "prefect-agent"})],
            ..Source::default()
        };
        let (items, skips) = plan(&source);
        let old = items.iter().find(|i| i.key == "etl/old").expect("old");
        assert_eq!(old.body["schedules"][0]["active"], false);
        assert_eq!(old.body["paused"], true);
        assert_eq!(old.body["job_variables"], json!({"cpu": 512}));
        let new = items.iter().find(|i| i.key == "etl/new").expect("new");
        assert_eq!(
            new.body["schedules"],
            json!([{"schedule": {"interval": 60}, "active": false}])
        );
        let keys: Vec<&str> = skips.iter().map(|s| s.key.as_str()).collect();
        assert_eq!(keys, ["agents", "etl/agent"]);
    }
}
