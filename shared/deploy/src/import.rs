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
    #[must_use]
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

/// One `--only` entry: a kind (`deployments`), or a kind and a name pattern
/// (`deployments:etl/*`, `work-pools:prod`), `*` standing for any run of characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    text: String,
    kinds: Vec<Kind>,
    pattern: Option<String>,
}

const KIND_NAMES: &str = "blocks, variables, concurrency-limits, work-pools, flows or deployments";

impl Selector {
    /// Parses one `--only` entry.
    pub fn parse(text: &str) -> Result<Selector, String> {
        let text = text.trim();
        let (kind, pattern) = match text.split_once(':') {
            Some((k, p)) if !p.is_empty() => (k, Some(p.to_owned())),
            Some(_) => {
                return Err(format!(
                    "--only {text:?}: a name is missing after the colon"
                ));
            }
            None => (text, None),
        };
        let kinds = Kind::parse(kind).ok_or_else(|| {
            format!("--only {text:?}: {kind:?} is not a kind; expected {KIND_NAMES}")
        })?;
        Ok(Selector {
            text: text.to_owned(),
            kinds,
            pattern,
        })
    }

    /// The name an item is matched by: a document's `slug/name`, a queue's pool, a
    /// deployment's `flow/name`; catalog entries and flows go with what they serve.
    fn matches(&self, item: &Item) -> bool {
        self.covers(item.kind, &item.key)
    }

    fn covers(&self, kind: Kind, key: &str) -> bool {
        if !self.kinds.contains(&kind) {
            return false;
        }
        let Some(pattern) = &self.pattern else {
            return true;
        };
        let name = match kind {
            Kind::WorkQueue => key.split_once('/').map_or(key, |(p, _)| p),
            _ => key,
        };
        glob_match(pattern, name)
    }
}

/// `pattern` against `text`, `*` matching any run of characters (none included). Only `*`:
/// names hold `/`, `[` and `?` literally, so a full glob syntax would get in the way.
fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, rest) = parts.split_first().expect("split yields one part at least");
    let Some(mut tail) = text.strip_prefix(first) else {
        return false;
    };
    let Some((last, middle)) = rest.split_last() else {
        return tail.is_empty();
    };
    for part in middle {
        match tail.find(part) {
            Some(at) => tail = &tail[at + part.len()..],
            None => return false,
        }
    }
    tail.ends_with(last)
}

/// The items `--only` selects. What a named selection needs comes along: the block type and
/// schemas of a selected document, the flow of a selected deployment. A named selector that
/// matches nothing on the source is an error, so a typo is not a silent no-op.
pub fn select(items: Vec<Item>, selectors: &[Selector]) -> Result<Vec<Item>, String> {
    if selectors.is_empty() {
        return Ok(items);
    }
    let mut keep: Vec<bool> = items
        .iter()
        .map(|i| selectors.iter().any(|sel| sel.matches(i)))
        .collect();
    for sel in selectors.iter().filter(|sel| sel.pattern.is_some()) {
        // Catalog entries and a deployment's flow are not what such a name is meant for.
        let primary = |kind: Kind| match kind {
            Kind::BlockType | Kind::BlockSchema => false,
            Kind::Flow => sel.kinds == [Kind::Flow],
            _ => true,
        };
        if !items.iter().any(|i| primary(i.kind) && sel.matches(i)) {
            return Err(format!(
                "--only {}: the source has nothing of that name (block documents are named type-slug/name, deployments flow/name, queues by their pool's name)",
                sel.text
            ));
        }
    }
    // What selected documents and deployments need.
    let mut slugs = Vec::new();
    let mut flows = Vec::new();
    for (item, _) in items.iter().zip(&keep).filter(|(_, k)| **k) {
        match item.kind {
            Kind::BlockDocument => slugs.push(
                s(&item.body, "block_type_slug")
                    .unwrap_or_default()
                    .to_owned(),
            ),
            Kind::Deployment => {
                flows.push(s(&item.body, "flow_name").unwrap_or_default().to_owned())
            }
            _ => {}
        }
    }
    for (item, k) in items.iter().zip(keep.iter_mut()) {
        let needed = match item.kind {
            Kind::BlockType => slugs.contains(&item.key),
            Kind::BlockSchema => slugs
                .iter()
                .any(|slug| s(&item.body, "block_type_slug") == Some(slug.as_str())),
            Kind::Flow => flows.contains(&item.key),
            _ => false,
        };
        *k = *k || needed;
    }
    Ok(items
        .into_iter()
        .zip(keep)
        .filter_map(|(i, k)| k.then_some(i))
        .collect())
}

/// The skips of what `--only` selects: a selection reports only its own.
#[must_use]
pub fn select_skips(skips: Vec<Skip>, selectors: &[Selector]) -> Vec<Skip> {
    if selectors.is_empty() {
        return skips;
    }
    skips
        .into_iter()
        .filter(|s| selectors.iter().any(|sel| sel.covers(s.kind, &s.key)))
        .collect()
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
    /// The infrastructure and storage block documents agent-era deployments name, by id, as
    /// `GET /block_documents/{id}?include_secrets=true` answers them.
    pub documents_by_id: std::collections::HashMap<String, Value>,
}

impl Source {
    /// The block document ids agent-era deployments refer to, for the caller to read.
    #[must_use]
    pub fn agent_era_document_ids(&self) -> Vec<String> {
        let mut ids = Vec::new();
        for d in &self.deployments {
            for key in ["infrastructure_document_id", "storage_document_id"] {
                if let Some(id) = s(d, key)
                    && !ids.iter().any(|i| i == id)
                {
                    ids.push(id.to_owned());
                }
            }
        }
        ids
    }
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
    // A source schema's id to its checksum and version on the target, for the documents.
    let mut schema_keys: std::collections::HashMap<&str, (String, Value)> =
        std::collections::HashMap::new();
    for sc in &source.block_schemas {
        let Some(slug) = sc
            .get("block_type")
            .and_then(|t| s(t, "slug"))
            .or_else(|| s(sc, "block_type_id").and_then(|id| slug_of_type.get(id).copied()))
        else {
            continue;
        };
        let mut body = pick(sc, &["fields", "capabilities", "version"]);
        let mut changed = Vec::new();
        if let Some(fields) = body.get_mut("fields") {
            client_reference_order(fields);
            // The target computes the checksum itself from the fields. A schema the source's
            // own catalog registered may carry one no client computes from its fields.
            let ours = sluice_core::blocks::schema_checksum(fields);
            if let Some(id) = s(sc, "id") {
                schema_keys.insert(
                    id,
                    (
                        ours.clone(),
                        sc.get("version").cloned().unwrap_or(Value::Null),
                    ),
                );
            }
            if let Some(theirs) = s(sc, "checksum")
                && theirs != ours
            {
                changed.push(format!(
                    "its checksum here is {ours}: the source's {theirs} is not the digest of the fields it serves"
                ));
            }
        }
        // The target's id of the type is filled in by the caller.
        body.insert("block_type_slug".to_owned(), json!(slug));
        items.push(Item {
            kind: Kind::BlockSchema,
            key: format!("{slug}/{}", s(sc, "checksum").unwrap_or("?")),
            body: Value::Object(body),
            changed,
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
        let mut body = pick(d, &["name"]);
        let (data, inlined) = data_with_references(d);
        body.insert("data".to_owned(), data);
        // Its schema, found on the target by checksum and version (ids differ there).
        if let Some((checksum, version)) =
            s(d, "block_schema_id").and_then(|id| schema_keys.get(id))
        {
            body.insert("schema_checksum".to_owned(), json!(checksum));
            body.insert("schema_version".to_owned(), version.clone());
        }
        body.insert("block_type_slug".to_owned(), json!(slug));
        // Not sent: the id templates and nested blocks on the source refer to it by.
        body.insert(
            "source_id".to_owned(),
            d.get("id").cloned().unwrap_or(Value::Null),
        );
        let changed = inlined
            .iter()
            .map(|field| {
                format!("{field}: an anonymous nested block, stored inline (its data as read)")
            })
            .collect();
        items.push(Item {
            kind: Kind::BlockDocument,
            key: format!("{slug}/{name}"),
            body: Value::Object(body),
            changed,
        });
    }
    order_documents(&mut items);
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
        if is_agent_era(d, &agent_pools) {
            match agent_era(d, flow, &source.documents_by_id) {
                Ok((deployment, pool)) => {
                    if let Some(pool) = pool
                        && !items
                            .iter()
                            .any(|i| i.kind == Kind::WorkPool && i.key == pool.key)
                    {
                        // Before the flows and deployments, which come after every pool.
                        let at = items
                            .iter()
                            .position(|i| i.kind == Kind::Flow || i.kind == Kind::Deployment)
                            .unwrap_or(items.len());
                        items.insert(at, pool);
                    }
                    items.push(deployment);
                }
                Err(reason) => skips.push(Skip {
                    kind: Kind::Deployment,
                    key,
                    reason,
                }),
            }
            continue;
        }
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

/// The block document ids `value` refers to (`{"$ref": {"block_document_id": ID}}`, as
/// templates' defaults and job variables name saved blocks).
#[must_use]
pub fn block_refs(value: &Value) -> Vec<String> {
    sluice_core::templating::find_block_references(value)
        .into_iter()
        .filter_map(|r| match r {
            sluice_core::templating::BlockRef::ById(id) => Some(id),
            sluice_core::templating::BlockRef::ByName { .. } => None,
        })
        .collect()
}

/// `value` with every referred block document id that `map` knows (source → target) replaced.
pub fn remap_block_refs(value: &mut Value, map: &std::collections::HashMap<String, String>) {
    match value {
        Value::Object(m) => {
            if let Some(Value::Object(r)) = m.get_mut("$ref")
                && let Some(Value::String(id)) = r.get_mut("block_document_id")
                && let Some(target) = map.get(id.as_str())
            {
                *id = target.clone();
            }
            m.values_mut().for_each(|v| remap_block_refs(v, map));
        }
        Value::Array(items) => items.iter_mut().for_each(|v| remap_block_refs(v, map)),
        _ => {}
    }
}

/// A block document's data as its owner saved it: each field that refers to another named
/// document back as `{"$ref": {"block_document_id": <id>}}` (a read answers it filled in
/// with that document's data, and `block_document_references` says which). A reference to
/// an anonymous document (a nested block saved only as part of this one) stays inline.
/// Returns the data and the fields kept inline.
#[must_use]
pub fn data_with_references(document: &Value) -> (Value, Vec<String>) {
    let mut data = document.get("data").cloned().unwrap_or_else(|| json!({}));
    let mut inlined = Vec::new();
    let references = document
        .get("block_document_references")
        .and_then(Value::as_object);
    for (field, reference) in references.into_iter().flatten() {
        let referred = reference.get("block_document").unwrap_or(&Value::Null);
        if referred.get("is_anonymous").and_then(Value::as_bool) == Some(true) {
            inlined.push(field.clone());
            continue;
        }
        if let (Some(id), Some(map)) = (s(referred, "id"), data.as_object_mut()) {
            map.insert(field.clone(), json!({"$ref": {"block_document_id": id}}));
        }
    }
    inlined.sort();
    (data, inlined)
}

/// The block document items reordered so a document comes after those it refers to (they
/// must exist when it is written); otherwise in source order. A cycle keeps its order (the
/// target refuses it, and the import is undone).
fn order_documents(items: &mut [Item]) {
    let Some(start) = items.iter().position(|i| i.kind == Kind::BlockDocument) else {
        return;
    };
    let end = start
        + items[start..]
            .iter()
            .take_while(|i| i.kind == Kind::BlockDocument)
            .count();
    let mut pending: Vec<Item> = items[start..end].to_vec();
    let mut placed: Vec<Item> = Vec::with_capacity(pending.len());
    while !pending.is_empty() {
        let waits_for_pending = |item: &Item| {
            block_refs(&item.body["data"]).iter().any(|id| {
                pending.iter().any(|p| {
                    !std::ptr::eq(p, item)
                        && p.body.get("source_id").and_then(Value::as_str) == Some(id)
                })
            })
        };
        let ready = pending
            .iter()
            .position(|item| !waits_for_pending(item))
            .unwrap_or(0);
        placed.push(pending.remove(ready));
    }
    items[start..end].clone_from_slice(&placed);
}

/// A schema's `block_schema_references` lists (one per field that takes one of several block
/// types) in the order the field's `anyOf` names those types, which is the order Prefect's
/// client writes them and so digests them. Prefect's server answers them in its own order,
/// which would give the target another checksum than the one every client computes.
pub fn client_reference_order(fields: &mut Value) {
    let definitions = fields.get("definitions").cloned().unwrap_or(Value::Null);
    let properties = fields.get("properties").cloned().unwrap_or(Value::Null);
    let Some(Value::Object(references)) = fields.get_mut("block_schema_references") else {
        return;
    };
    for (field, list) in references.iter_mut() {
        let Value::Array(list) = list else { continue };
        let mut names = Vec::new();
        sluice_core::blocks::definition_refs(
            properties.get(field).unwrap_or(&Value::Null),
            &mut names,
        );
        let slugs: Vec<&str> = names
            .iter()
            .filter_map(|n| {
                definitions
                    .get(n.as_str())
                    .and_then(|d| s(d, "block_type_slug"))
            })
            .collect();
        list.sort_by_key(|r| {
            s(r, "block_type_slug")
                .and_then(|slug| slugs.iter().position(|x| *x == slug))
                .unwrap_or(usize::MAX)
        });
    }
}

/// A deployment of Prefect 2's agents: infrastructure and storage blocks, and no work pool
/// or a `prefect-agent` one (Prefect 2.10+ puts agent deployments in `default-agent-pool`).
fn is_agent_era(d: &Value, agent_pools: &[&str]) -> bool {
    let pool = s(d, "work_pool_name");
    pool.is_none_or(|p| agent_pools.contains(&p))
        && (d
            .get("infrastructure_document_id")
            .is_some_and(|v| !v.is_null())
            || d.get("storage_document_id").is_some_and(|v| !v.is_null()))
}

/// A block document as the agent-era `deployment.yaml` embedded it: its data with its type
/// and document name beside it.
fn embedded_block(doc: &Value) -> Value {
    let mut data = doc
        .get("data")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let slug = doc
        .get("block_type")
        .and_then(|t| s(t, "slug"))
        .or_else(|| s(doc, "block_type_slug"))
        .unwrap_or_default();
    data.insert("type".to_owned(), json!(slug));
    data.insert("block_type_slug".to_owned(), json!(slug));
    data.insert("_block_type_slug".to_owned(), json!(slug));
    data.insert(
        "_block_document_name".to_owned(),
        doc.get("name").cloned().unwrap_or(Value::Null),
    );
    data.insert(
        "_is_anonymous".to_owned(),
        doc.get("is_anonymous").cloned().unwrap_or(json!(false)),
    );
    Value::Object(data)
}

/// An agent-era deployment converted by `sluice migrate`'s rules: the infrastructure block
/// becomes a pool (named after a saved block; `migrated-<type>` for an inline one, whose
/// settings become the deployment's job variables), the overrides typed job variables, the
/// storage pull steps. Returns the deployment and the pool to make.
fn agent_era(
    d: &Value,
    flow: &str,
    documents: &std::collections::HashMap<String, Value>,
) -> Result<(Item, Option<Item>), String> {
    let doc = |key: &str| -> Result<Option<&Value>, String> {
        match s(d, key) {
            None => Ok(None),
            Some(id) => documents
                .get(id)
                .map(Some)
                .ok_or_else(|| format!("its {key} {id} is not on the source server")),
        }
    };
    let infra = doc("infrastructure_document_id")?;
    let storage = doc("storage_document_id")?;
    let mut legacy = pick(
        d,
        &[
            "name",
            "description",
            "version",
            "tags",
            "parameters",
            "schedule",
            "schedules",
            "is_schedule_active",
            "infra_overrides",
            "work_queue_name",
            "path",
            "entrypoint",
            "enforce_parameter_schema",
        ],
    );
    legacy.retain(|_, v| !v.is_null());
    legacy.insert("flow_name".to_owned(), json!(flow));
    if let Some(st) = storage {
        legacy.insert("storage".to_owned(), embedded_block(st));
    }
    let mut pool = None;
    let mut pool_name = None;
    if let Some(infra) = infra {
        let anonymous = infra.get("is_anonymous").and_then(Value::as_bool) == Some(true);
        let migrated = crate::migrate::infra_block_to_pool(infra).map_err(|e| e.0)?;
        let (name, template) = if anonymous {
            let template = sluice_core::pool_types::default_base_job_template(&migrated.pool_type)
                .unwrap_or(Value::Null);
            (format!("migrated-{}", migrated.pool_type), template)
        } else {
            let name = s(infra, "name").unwrap_or_default().to_owned();
            (name, migrated.base_job_template.clone())
        };
        let mut changed = vec![format!("made from the {} block", migrated.block_type)];
        changed.extend(
            migrated
                .skipped
                .iter()
                .map(|s| format!("{} skipped: {}", s.field, s.reason)),
        );
        pool = Some(Item {
            kind: Kind::WorkPool,
            key: name.clone(),
            body: json!({"name": name, "type": migrated.pool_type, "base_job_template": template}),
            changed,
        });
        pool_name = Some(name);
        legacy.insert("infrastructure".to_owned(), embedded_block(infra));
    }
    let text = serde_json::to_string(&Value::Object(legacy)).map_err(|e| e.to_string())?;
    let migrated =
        crate::migrate::migrate_deployment(&text, pool_name.as_deref()).map_err(|e| e.0)?;
    let file = crate::parse(std::path::Path::new("prefect.yaml"), &migrated.yaml)
        .map_err(|e| e.to_string())?;
    let planned = crate::plan(
        &file,
        &crate::DeployOptions {
            all: true,
            ..Default::default()
        },
        &|_| None,
    )
    .map_err(|e| e.to_string())?;
    let Some(p) = planned.into_iter().next() else {
        return Err("the converted deployment planned to nothing".to_owned());
    };
    let mut body = p.body;
    body["flow_name"] = json!(flow);
    let mut changed =
        vec!["an agent-era deployment, converted by `sluice migrate`'s rules".to_owned()];
    // The pool is made by this import, so `migrate`'s advice to make it is left out.
    changed.extend(
        migrated
            .not_carried
            .iter()
            .filter(|n| !n.contains("sluice migrate infra-block"))
            .map(|n| format!("not carried: {n}")),
    );
    Ok((
        Item {
            kind: Kind::Deployment,
            key: format!("{flow}/{}", s(d, "name").unwrap_or_default()),
            body,
            changed,
        },
        pool,
    ))
}

/// A work-pool deployment of the source as `POST /deployments/` takes it (`flow_name` stands
/// for the flow id, which the caller fills in). Prefect 2's single `schedule` with
/// `is_schedule_active` becomes one schedule with that flag; each schedule of a list keeps its
/// own `active`.
fn deployment_body(d: &Value, flow: &str) -> Result<(Value, Vec<String>), String> {
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

    fn item(kind: Kind, key: &str, body: Value) -> Item {
        Item {
            kind,
            key: key.to_owned(),
            body,
            changed: Vec::new(),
        }
    }

    #[test]
    fn only_selects_by_kind_and_name_and_brings_what_the_selection_needs() {
        let items = vec![
            item(Kind::BlockType, "secret", json!({"slug": "secret"})),
            item(Kind::BlockType, "s3-bucket", json!({"slug": "s3-bucket"})),
            item(
                Kind::BlockSchema,
                "secret/sha256:a",
                json!({"block_type_slug": "secret"}),
            ),
            item(
                Kind::BlockSchema,
                "s3-bucket/sha256:b",
                json!({"block_type_slug": "s3-bucket"}),
            ),
            item(
                Kind::BlockDocument,
                "secret/token",
                json!({"block_type_slug": "secret"}),
            ),
            item(
                Kind::BlockDocument,
                "s3-bucket/flows",
                json!({"block_type_slug": "s3-bucket"}),
            ),
            item(Kind::Variable, "region", json!({})),
            item(Kind::WorkPool, "prod", json!({})),
            item(Kind::WorkQueue, "prod/high", json!({})),
            item(Kind::WorkPool, "dev", json!({})),
            item(Kind::Flow, "etl", json!({})),
            item(Kind::Flow, "report", json!({})),
            item(Kind::Deployment, "etl/nightly", json!({"flow_name": "etl"})),
            item(
                Kind::Deployment,
                "report/weekly",
                json!({"flow_name": "report"}),
            ),
        ];
        let keys = |selectors: &[&str]| -> Vec<String> {
            let selectors: Vec<Selector> = selectors
                .iter()
                .map(|t| Selector::parse(t).expect("selector"))
                .collect();
            select(items.clone(), &selectors)
                .expect("selection")
                .into_iter()
                .map(|i| i.key)
                .collect()
        };
        assert_eq!(keys(&[]).len(), items.len());
        assert_eq!(keys(&["variables"]), ["region"]);
        assert_eq!(keys(&["work-pools:prod"]), ["prod", "prod/high"]);
        assert_eq!(
            keys(&["blocks:secret/*"]),
            ["secret", "secret/sha256:a", "secret/token"]
        );
        assert_eq!(keys(&["deployments:*/week*"]), ["report", "report/weekly"]);
        assert_eq!(keys(&["flows:etl", "variables"]), ["region", "etl"]);
        let err = select(
            items.clone(),
            &[Selector::parse("deployments:etl/daily").expect("ok")],
        )
        .expect_err("nothing of that name");
        assert!(err.contains("deployments:etl/daily"), "{err}");
        assert!(
            Selector::parse("pools")
                .expect_err("not a kind")
                .contains("work-pools")
        );
        assert!(Selector::parse("flows:").is_err());
        let skips = vec![
            Skip {
                kind: Kind::WorkPool,
                key: "agents".to_owned(),
                reason: String::new(),
            },
            Skip {
                kind: Kind::Deployment,
                key: "etl/old".to_owned(),
                reason: String::new(),
            },
        ];
        let only = |t: &str| select_skips(skips.clone(), &[Selector::parse(t).expect("ok")]);
        assert!(only("variables").is_empty());
        assert_eq!(only("deployments:etl/*").len(), 1);
        assert_eq!(select_skips(skips.clone(), &[]).len(), 2);
    }

    #[test]
    fn star_matches_any_run_of_characters() {
        for (pattern, text, hit) in [
            ("etl/*", "etl/nightly", true),
            ("etl/*", "etl/", true),
            ("*", "", true),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXbY", false),
            ("nightly", "nightly-2", false),
            ("*ly", "nightly", true),
            ("a*a", "a", false),
        ] {
            assert_eq!(glob_match(pattern, text), hit, "{pattern} ~ {text}");
        }
    }

    /// Prefect 2.20.27's read of an S3Bucket saved with a saved AwsCredentials block and of one
    /// whose credentials were saved with it (anonymous).
    #[test]
    fn named_nested_blocks_stay_references_and_are_written_first() {
        let named = json!({
            "id": "b2", "name": "bucket2",
            "data": {"bucket_name": "acme2", "credentials": {"region_name": "eu-west-1"}},
            "block_document_references": {"credentials": {"block_document": {
                "id": "c1", "name": "creds", "is_anonymous": false}}}
        });
        let (data, inlined) = data_with_references(&named);
        assert_eq!(
            data,
            json!({"bucket_name": "acme2", "credentials": {"$ref": {"block_document_id": "c1"}}})
        );
        assert!(inlined.is_empty());
        let anonymous = json!({
            "id": "b1", "name": "bucket",
            "data": {"bucket_name": "acme", "credentials": {"region_name": null}},
            "block_document_references": {"credentials": {"block_document": {
                "id": "anon", "name": "anonymous-x", "is_anonymous": true}}}
        });
        let (data, inlined) = data_with_references(&anonymous);
        assert_eq!(data["credentials"], json!({"region_name": null}));
        assert_eq!(inlined, ["credentials"]);

        let doc = |id: &str, name: &str, slug: &str, refs: Value| {
            json!({"id": id, "name": name, "block_type": {"slug": slug}, "data": {},
                   "block_document_references": refs})
        };
        let source = Source {
            block_documents: vec![
                doc(
                    "b2",
                    "bucket2",
                    "s3-bucket",
                    json!({"credentials": {"block_document": {"id": "c1", "is_anonymous": false}}}),
                ),
                doc("c1", "creds", "aws-credentials", json!({})),
            ],
            ..Source::default()
        };
        let (items, _) = plan(&source);
        let keys: Vec<&str> = items.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(keys, ["aws-credentials/creds", "s3-bucket/bucket2"]);
    }

    /// Prefect's server answers a schema's `block_schema_references` in its own order; the
    /// client digests them in its field's `anyOf` order (S3Bucket.credentials: MinIO first).
    #[test]
    fn schema_references_are_put_in_the_order_the_client_digests() {
        let mut fields = json!({
            "properties": {"credentials": {"anyOf": [
                {"$ref": "#/definitions/MinIOCredentials"},
                {"$ref": "#/definitions/AwsCredentials"}
            ]}},
            "block_schema_references": {"credentials": [
                {"block_schema_checksum": "sha256:aws", "block_type_slug": "aws-credentials"},
                {"block_schema_checksum": "sha256:minio", "block_type_slug": "minio-credentials"}
            ]},
            "definitions": {
                "AwsCredentials": {"block_type_slug": "aws-credentials"},
                "MinIOCredentials": {"block_type_slug": "minio-credentials"}
            }
        });
        client_reference_order(&mut fields);
        let slugs: Vec<&str> = fields["block_schema_references"]["credentials"]
            .as_array()
            .expect("list")
            .iter()
            .filter_map(|r| r["block_type_slug"].as_str())
            .collect();
        assert_eq!(slugs, ["minio-credentials", "aws-credentials"]);
    }

    #[test]
    fn block_references_are_found_and_remapped() {
        let mut template = json!({"variables": {"properties": {
            "aws_credentials": {"default": {"$ref": {"block_document_id": "src-1"}}},
            "other": {"default": [{"$ref": {"block_document_id": "src-2"}}]}
        }}});
        assert_eq!(block_refs(&template), ["src-1", "src-2"]);
        let map = std::collections::HashMap::from([("src-1".to_owned(), "tgt-1".to_owned())]);
        remap_block_refs(&mut template, &map);
        assert_eq!(block_refs(&template), ["tgt-1", "src-2"]);
    }

    /// A Prefect 2 deployment of the agent era, as its API answers it, with the documents it
    /// names: it becomes a deployment on a pool made from its infrastructure block.
    #[test]
    fn agent_era_deployments_are_converted() {
        let mut documents = std::collections::HashMap::new();
        documents.insert(
            "infra-1".to_owned(),
            json!({"id": "infra-1", "name": "local-process", "is_anonymous": false,
                   "block_type": {"slug": "process"},
                   "data": {"env": {"MODE": "batch", "REGION": "eu"}, "working_dir": "/srv", "stream_output": true}}),
        );
        documents.insert(
            "store-1".to_owned(),
            json!({"id": "store-1", "name": "flows-bucket", "is_anonymous": false,
                   "block_type": {"slug": "s3-bucket"},
                   "data": {"bucket_name": "acme", "bucket_folder": "prod"}}),
        );
        let source = Source {
            flows: vec![json!({"id": "f1", "name": "etl"})],
            deployments: vec![json!({
                "name": "legacy", "flow_id": "f1", "entrypoint": "flows.py:etl", "path": "etl",
                "parameters": {"n": 1}, "tags": ["old"], "work_queue_name": "default",
                "schedule": {"cron": "0 4 * * *", "timezone": "UTC"}, "is_schedule_active": false,
                "infra_overrides": {"env.MODE": "interactive"},
                "infrastructure_document_id": "infra-1", "storage_document_id": "store-1",
                "work_pool_name": null
            })],
            documents_by_id: documents,
            ..Source::default()
        };
        assert_eq!(source.agent_era_document_ids(), ["infra-1", "store-1"]);
        let (items, skips) = plan(&source);
        assert!(skips.is_empty(), "{skips:?}");
        let pool = items
            .iter()
            .find(|i| i.kind == Kind::WorkPool)
            .expect("a pool");
        assert_eq!(pool.key, "local-process");
        assert_eq!(pool.body["type"], "process");
        assert_eq!(
            pool.body["base_job_template"]["variables"]["properties"]["working_dir"]["default"],
            "/srv"
        );
        let d = items
            .iter()
            .find(|i| i.kind == Kind::Deployment)
            .expect("the deployment");
        assert_eq!(d.body["work_pool_name"], "local-process");
        assert_eq!(d.body["entrypoint"], "etl/flows.py:etl");
        assert_eq!(
            d.body["job_variables"],
            json!({"env": {"MODE": "interactive", "REGION": "eu"}})
        );
        assert_eq!(d.body["schedules"][0]["active"], false);
        assert_eq!(
            d.body["pull_steps"][0]["prefect_aws.deployments.steps.pull_from_s3"]["bucket"],
            "acme"
        );
        let pool_at = items.iter().position(|i| i.kind == Kind::WorkPool);
        let dep_at = items.iter().position(|i| i.kind == Kind::Deployment);
        assert!(pool_at < dep_at, "the pool is made first");
    }

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
