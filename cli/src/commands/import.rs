//! `sluice import --from URL`: brings a running Prefect server's objects (2.x or 3.x, read
//! through its REST API) over to Sluice. What becomes which request is
//! `sluice_deploy::import`; this module reads, checks and writes.
//!
//! Nothing half-imported: everything is read from the source and the target first, and every
//! conflict (a pool of another type under the same name, a deployment whose pool exists
//! nowhere) is reported before the first write. Then the writes go in dependency order, each
//! remembered with how to undo it (delete what was created, put back what was changed); if one
//! fails, the ones before it are undone, newest first, and the command says what failed. An
//! object that already matches is not written at all, so a second run changes nothing.

use std::collections::HashMap;

use anyhow::{anyhow, bail};
use base64::Engine;
use clap::Args;
use serde_json::{Map, Value, json};
use sluice_client::{Client, ClientError, encode};
use sluice_deploy::import::{
    Item, Kind, Selector, Skip, Source, block_refs, data_with_references, plan, remap_block_refs,
    select, select_skips,
};

use super::ApiArgs;

#[derive(Args)]
pub struct ImportArgs {
    /// The Prefect server to read from: its API URL (`http://host:4200/api`).
    #[arg(long = "from", value_name = "URL")]
    from: String,
    /// The source's API key (sent as `Authorization: Bearer`).
    #[arg(long, env = "SLUICE_IMPORT_FROM_API_KEY", hide_env_values = true)]
    from_api_key: Option<String>,
    /// The source's auth string (`PREFECT_API_AUTH_STRING`, `user:password`), sent as Basic.
    #[arg(
        long,
        env = "SLUICE_IMPORT_FROM_AUTH_STRING",
        hide_env_values = true,
        conflicts_with = "from_api_key"
    )]
    from_auth_string: Option<String>,
    /// Only these, comma-separated: a kind (blocks, variables, concurrency-limits, work-pools,
    /// flows, deployments) or a kind and a name, `*` matching any run of characters
    /// (`deployments:etl/*`, `work-pools:prod`, `blocks:secret/db-password`).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Read and check everything, say what would be written, write nothing.
    #[arg(long)]
    dry_run: bool,
}

/// A write done, and how to take it back.
enum Undo {
    Delete(String),
    Patch(String, Value),
    Post(String, Value),
}

/// What to do with one item, decided before anything is written.
enum Action {
    Create,
    Update { undo: Undo },
    Unchanged,
}

pub async fn run(api: &ApiArgs, args: ImportArgs) -> anyhow::Result<()> {
    let selectors = args
        .only
        .iter()
        .map(|t| Selector::parse(t))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!(e))?;
    let auth = match (&args.from_api_key, &args.from_auth_string) {
        (Some(key), _) => Some(format!("Bearer {key}")),
        (_, Some(auth)) => Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(auth)
        )),
        _ => None,
    };
    let source = Client::with_authorization(&args.from, auth.as_deref())
        .map_err(|e| anyhow!("--from: {e}"))?;
    let target = api.context()?.client;

    let snapshot = read_source(&source, &args.from).await?;
    let (items, skips) = plan(&snapshot);
    let items = select(items, &selectors).map_err(|e| anyhow!(e))?;
    let skips = select_skips(skips, &selectors);
    let mut documents: HashMap<String, String> = HashMap::new();
    let decisions = decide(&target, &items, &mut documents).await?;

    let mut report = Report::default();
    for s in &skips {
        report.skipped.push(s.clone());
    }
    if args.dry_run {
        for (item, action) in items.iter().zip(&decisions) {
            report.add(item, action);
        }
        report.print(true);
        return Ok(());
    }
    let mut done: Vec<(String, Undo)> = Vec::new();
    let mut ids = Ids {
        documents,
        ..Ids::default()
    };
    for (item, action) in items.iter().zip(decisions) {
        let what = format!("{} {}", item.kind.name(), item.key);
        match write(&target, item, &action, &mut ids).await {
            Ok(created) => {
                report.add(item, &action);
                match action {
                    Action::Create => {
                        if let Some(path) = created {
                            done.push((what, Undo::Delete(path)));
                        }
                    }
                    Action::Update { undo } => done.push((what, undo)),
                    Action::Unchanged => {}
                }
            }
            Err(e) => {
                let undone = undo_all(&target, done).await;
                bail!("importing {what} failed: {e:#}\n{undone}");
            }
        }
    }
    report.print(false);
    Ok(())
}

/// Every page of a source `/filter` route.
async fn read_all(client: &Client, path: &str, extra: &Value) -> Result<Vec<Value>, ClientError> {
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let mut body = extra.clone();
        body["limit"] = json!(200);
        body["offset"] = json!(offset);
        let page = client.post_json(path, &body).await?;
        let page = page.as_array().cloned().unwrap_or_default();
        let n = page.len();
        out.extend(page);
        if n < 200 {
            return Ok(out);
        }
        offset += n;
    }
}

fn source_error(url: &str, what: &str) -> impl FnOnce(ClientError) -> anyhow::Error {
    let (url, what) = (url.to_owned(), what.to_owned());
    move |e| match e.status() {
        None if matches!(e, ClientError::Transport { .. }) => anyhow!(
            "cannot reach the source {url} to read its {what}: is the Prefect server running there?"
        ),
        Some(401 | 403) => anyhow!(
            "the source {url} refused to list its {what} ({}): pass its key with --from-api-key or its auth string with --from-auth-string",
            e.status().unwrap_or_default()
        ),
        _ => anyhow!("cannot read the {what} of {url}: {e}"),
    }
}

async fn read_source(client: &Client, url: &str) -> anyhow::Result<Source> {
    // First a route every Prefect server has, so an unreachable or locked source is said once.
    client
        .get_optional("admin/version")
        .await
        .map_err(source_error(url, "version"))?;
    let empty = json!({});
    let mut source = Source {
        block_types: read_all(client, "block_types/filter", &empty)
            .await
            .map_err(source_error(url, "block types"))?,
        block_schemas: read_all(client, "block_schemas/filter", &empty)
            .await
            .map_err(source_error(url, "block schemas"))?,
        block_documents: read_all(
            client,
            "block_documents/filter",
            &json!({"include_secrets": true}),
        )
        .await
        .map_err(source_error(url, "block documents"))?,
        variables: read_all(client, "variables/filter", &empty)
            .await
            .map_err(source_error(url, "variables"))?,
        tag_limits: read_all(client, "concurrency_limits/filter", &empty)
            .await
            .map_err(source_error(url, "tag concurrency limits"))?,
        work_pools: read_all(client, "work_pools/filter", &empty)
            .await
            .map_err(source_error(url, "work pools"))?,
        flows: read_all(client, "flows/filter", &empty)
            .await
            .map_err(source_error(url, "flows"))?,
        deployments: read_all(client, "deployments/filter", &empty)
            .await
            .map_err(source_error(url, "deployments"))?,
        ..Source::default()
    };
    // Global limits came with Prefect 2.13; an older server has no such route.
    source.global_limits = match read_all(client, "v2/concurrency_limits/filter", &empty).await {
        Ok(limits) => limits,
        Err(e) if e.status() == Some(404) => Vec::new(),
        Err(e) => return Err(source_error(url, "global concurrency limits")(e)),
    };
    // The infrastructure and storage documents of agent-era deployments (often anonymous,
    // so not in the listing above).
    for id in source.agent_era_document_ids() {
        let path = format!("block_documents/{}?include_secrets=true", encode(&id));
        if let Some(doc) = client
            .get_optional(&path)
            .await
            .map_err(source_error(url, "block documents"))?
        {
            source.documents_by_id.insert(id, doc);
        }
    }
    for pool in &source.work_pools {
        let Some(name) = pool.get("name").and_then(Value::as_str) else {
            continue;
        };
        let queues = read_all(
            client,
            &format!("work_pools/{}/queues/filter", encode(name)),
            &empty,
        )
        .await
        .map_err(source_error(url, "work queues"))?;
        source
            .work_queues
            .extend(queues.into_iter().map(|q| (name.to_owned(), q)));
    }
    Ok(source)
}

/// The target object an item would write over, and where it lives.
fn target_path(item: &Item) -> String {
    let b = &item.body;
    let text = |k: &str| b.get(k).and_then(Value::as_str).unwrap_or_default();
    match item.kind {
        Kind::BlockType => format!("block_types/slug/{}", encode(text("slug"))),
        // Looked up by the digest Sluice itself gives these fields (the plan put their
        // references in the client's order): the source's own checksum is not always the
        // digest of the fields it serves (the plan reports those).
        Kind::BlockSchema => {
            let checksum = sluice_core::blocks::schema_checksum(&b["fields"]);
            let version = text("version");
            if version.is_empty() {
                format!("block_schemas/checksum/{}", encode(&checksum))
            } else {
                format!(
                    "block_schemas/checksum/{}?version={}",
                    encode(&checksum),
                    encode(version)
                )
            }
        }
        Kind::BlockDocument => format!(
            "block_types/slug/{}/block_documents/name/{}?include_secrets=true",
            encode(text("block_type_slug")),
            encode(text("name"))
        ),
        Kind::Variable => format!("variables/name/{}", encode(text("name"))),
        Kind::GlobalLimit => format!("v2/concurrency_limits/{}", encode(text("name"))),
        Kind::TagLimit => format!("concurrency_limits/tag/{}", encode(text("tag"))),
        Kind::WorkPool => format!("work_pools/{}", encode(text("name"))),
        Kind::WorkQueue => {
            let (pool, queue) = item.key.split_once('/').unwrap_or_default();
            format!("work_pools/{}/queues/{}", encode(pool), encode(queue))
        }
        Kind::Flow => format!("flows/name/{}", encode(text("name"))),
        Kind::Deployment => format!(
            "deployments/name/{}/{}",
            encode(text("flow_name")),
            encode(text("name"))
        ),
    }
}

/// Whether any of `keys` that `desired` has differs in `existing`.
fn differs(desired: &Value, existing: &Value, keys: &[&str]) -> bool {
    keys.iter().any(|k| match desired.get(*k) {
        None => false,
        Some(v) => existing.get(*k).unwrap_or(&Value::Null) != v,
    })
}

/// The fields an update compares (and puts back when undone).
fn compared(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::BlockType | Kind::BlockSchema | Kind::Flow => &[],
        Kind::BlockDocument => &["data"],
        Kind::Variable => &["value", "tags"],
        Kind::GlobalLimit => &["limit", "active", "slot_decay_per_second"],
        Kind::TagLimit => &["concurrency_limit"],
        Kind::WorkPool => &[
            "description",
            "base_job_template",
            "is_paused",
            "concurrency_limit",
        ],
        Kind::WorkQueue => &["description", "is_paused", "concurrency_limit", "priority"],
        Kind::Deployment => &[
            "version",
            "description",
            "parameters",
            "parameter_openapi_schema",
            "enforce_parameter_schema",
            "tags",
            "job_variables",
            "pull_steps",
            "path",
            "entrypoint",
            "work_pool_name",
            "work_queue_name",
            "concurrency_limit",
            "paused",
        ],
    }
}

/// Reads what the target holds for every item, decides create / update / unchanged, and
/// refuses the whole import on a conflict.
async fn decide(
    target: &Client,
    items: &[Item],
    documents: &mut HashMap<String, String>,
) -> anyhow::Result<Vec<Action>> {
    let mut actions = Vec::with_capacity(items.len());
    let mut conflicts = Vec::new();
    let imported_documents: Vec<&str> = items
        .iter()
        .filter(|i| i.kind == Kind::BlockDocument)
        .filter_map(|i| i.body.get("source_id").and_then(Value::as_str))
        .collect();
    let pools_imported: Vec<&str> = items
        .iter()
        .filter(|i| i.kind == Kind::WorkPool)
        .map(|i| i.key.as_str())
        .collect();
    for item in items {
        // Templates and job variables name saved blocks by the source's ids: each must be a
        // block document this import brings (then it is renamed to the target's id) or one
        // the target already has under that id.
        if matches!(
            item.kind,
            Kind::WorkPool | Kind::Deployment | Kind::BlockDocument
        ) {
            for id in block_refs(&item.body) {
                let known = imported_documents.contains(&id.as_str())
                    || target
                        .get_optional(&format!("block_documents/{}", encode(&id)))
                        .await
                        .map_err(|e| anyhow!("cannot read block document {id} on the target: {e}"))?
                        .is_some();
                if !known {
                    conflicts.push(format!(
                        "{} {}: it refers to block document {id}, which is neither brought over (anonymous, or not on the source) nor on the target",
                        item.kind.name(),
                        item.key
                    ));
                }
            }
        }
        let mut item = item.clone();
        remap_block_refs(&mut item.body, documents);
        let item = &item;
        let path = target_path(item);
        let mut existing = target.get_optional(&path).await.map_err(|e| {
            anyhow!(
                "cannot read {} {} on the target: {e}",
                item.kind.name(),
                item.key
            )
        })?;
        // Compared (and put back) as stored: a document's references as references, not
        // filled in; a deployment's limit as the number (read, it is in
        // `global_concurrency_limit`).
        if let Some(e) = existing.as_mut() {
            match item.kind {
                Kind::BlockDocument => e["data"] = data_with_references(e).0,
                Kind::Deployment if e["concurrency_limit"].is_null() => {
                    e["concurrency_limit"] = e["global_concurrency_limit"]["limit"].clone();
                }
                _ => {}
            }
        }
        if item.kind == Kind::BlockDocument
            && let (Some(e), Some(src)) = (
                &existing,
                item.body.get("source_id").and_then(Value::as_str),
            )
            && let Some(id) = e.get("id").and_then(Value::as_str)
        {
            documents.insert(src.to_owned(), id.to_owned());
        }
        let action = match existing {
            None => Action::Create,
            Some(existing) => {
                if item.kind == Kind::WorkPool && existing.get("type") != item.body.get("type") {
                    conflicts.push(format!(
                        "work pool {}: the target has one of type {} under that name, the source's is {}",
                        item.key,
                        existing.get("type").unwrap_or(&Value::Null),
                        item.body.get("type").unwrap_or(&Value::Null)
                    ));
                }
                let schedules_differ = item.kind == Kind::Deployment
                    && schedules_of(&existing) != schedules_of(&item.body);
                if differs(&item.body, &existing, compared(item.kind)) || schedules_differ {
                    Action::Update {
                        undo: undo_of(item, &existing),
                    }
                } else {
                    Action::Unchanged
                }
            }
        };
        if item.kind == Kind::Deployment
            && let Some(pool) = item.body.get("work_pool_name").and_then(Value::as_str)
            && !pools_imported.contains(&pool)
            && target
                .read_work_pool(pool)
                .await
                .map_err(|e| anyhow!("cannot read work pool {pool} on the target: {e}"))?
                .is_none()
        {
            conflicts.push(format!(
                "deployment {}: its work pool {pool} is neither on the target nor imported (import work-pools too)",
                item.key
            ));
        }
        actions.push(action);
    }
    if !conflicts.is_empty() {
        bail!(
            "nothing was imported; {} conflict(s):\n  {}",
            conflicts.len(),
            conflicts.join("\n  ")
        );
    }
    Ok(actions)
}

/// A deployment's schedules as compared: each schedule's settings, not its ids, in the form
/// Sluice stores them (an rrule gains Prefect's default DTSTART, a cron its `day_or`).
fn schedules_of(d: &Value) -> Vec<Value> {
    let epoch = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
    d.get("schedules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|s| {
            let raw = s.get("schedule").cloned().unwrap_or(Value::Null);
            let schedule = sluice_core::schedules::Schedule::from_json(&raw)
                .map_or(raw, |parsed| parsed.normalized(epoch).to_json());
            json!({
                "schedule": schedule,
                "active": s.get("active").cloned().unwrap_or(json!(true)),
            })
        })
        .collect()
}

/// How to put `existing` back after an update of it.
fn undo_of(item: &Item, existing: &Value) -> Undo {
    let keep = |keys: &[&str]| -> Value {
        Value::Object(
            keys.iter()
                .filter_map(|k| existing.get(*k).map(|v| ((*k).to_owned(), v.clone())))
                .collect::<Map<String, Value>>(),
        )
    };
    let id = existing
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default();
    match item.kind {
        Kind::Deployment => {
            let mut body = keep(compared(Kind::Deployment));
            body["name"] = existing["name"].clone();
            body["flow_id"] = existing["flow_id"].clone();
            body["schedules"] = Value::Array(schedules_of(existing));
            Undo::Post("deployments/".to_owned(), body)
        }
        Kind::TagLimit => Undo::Post(
            "concurrency_limits/".to_owned(),
            json!({"tag": existing["tag"], "concurrency_limit": existing["concurrency_limit"]}),
        ),
        Kind::BlockDocument => Undo::Patch(
            format!("block_documents/{}", encode(id)),
            json!({"data": existing["data"], "merge_existing_data": false}),
        ),
        kind => {
            let path = target_path(item);
            let path = path.split('?').next().unwrap_or(&path).to_owned();
            Undo::Patch(path, keep(compared(kind)))
        }
    }
}

/// Ids on the target that later items refer to.
#[derive(Default)]
struct Ids {
    block_types: HashMap<String, String>,
    flows: HashMap<String, String>,
    /// Block document ids, the source's to the target's.
    documents: HashMap<String, String>,
}

async fn id_of(target: &Client, path: &str) -> anyhow::Result<String> {
    target
        .get_optional(path)
        .await?
        .and_then(|v| v.get("id").and_then(Value::as_str).map(str::to_owned))
        .ok_or_else(|| anyhow!("{path} is missing on the target"))
}

/// Performs one item's write; `Some(path)` to delete to undo a create.
async fn write(
    target: &Client,
    item: &Item,
    action: &Action,
    ids: &mut Ids,
) -> anyhow::Result<Option<String>> {
    let mut remapped = item.body.clone();
    remap_block_refs(&mut remapped, &ids.documents);
    let b = &remapped;
    let text = |k: &str| {
        b.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    if let Action::Unchanged = action {
        if item.kind == Kind::Flow {
            let id = id_of(target, &target_path(item)).await?;
            ids.flows.insert(text("name"), id);
        }
        if item.kind == Kind::BlockType {
            let id = id_of(target, &target_path(item)).await?;
            ids.block_types.insert(text("slug"), id);
        }
        return Ok(None);
    }
    let created = matches!(action, Action::Create);
    match item.kind {
        Kind::BlockType => {
            let made = target.post_json("block_types/", b).await?;
            let id = made["id"].as_str().unwrap_or_default().to_owned();
            ids.block_types.insert(text("slug"), id.clone());
            Ok(created.then(|| format!("block_types/{id}")))
        }
        Kind::BlockSchema => {
            let slug = text("block_type_slug");
            let type_id = match ids.block_types.get(&slug) {
                Some(id) => id.clone(),
                None => id_of(target, &format!("block_types/slug/{}", encode(&slug))).await?,
            };
            let mut body = b.clone();
            body["block_type_id"] = json!(type_id);
            if let Some(m) = body.as_object_mut() {
                m.remove("block_type_slug");
            }
            let made = target.post_json("block_schemas/", &body).await?;
            Ok(created
                .then(|| format!("block_schemas/{}", made["id"].as_str().unwrap_or_default())))
        }
        Kind::BlockDocument => {
            let slug = text("block_type_slug");
            if let Action::Update { .. } = action {
                let existing = target
                    .get_optional(&target_path(item))
                    .await?
                    .ok_or_else(|| anyhow!("block document {} vanished", item.key))?;
                let id = existing["id"].as_str().unwrap_or_default();
                target
                    .patch_json(
                        &format!("block_documents/{}", encode(id)),
                        &json!({"data": b["data"], "merge_existing_data": false}),
                    )
                    .await?;
                return Ok(None);
            }
            let schema_id = document_schema(target, b, &slug).await?;
            let type_id = id_of(target, &format!("block_types/slug/{}", encode(&slug))).await?;
            let made = target
                .post_json(
                    "block_documents/",
                    &json!({"name": b["name"], "data": b["data"], "block_type_id": type_id, "block_schema_id": schema_id}),
                )
                .await?;
            let id = made["id"].as_str().unwrap_or_default().to_owned();
            if let Some(src) = b.get("source_id").and_then(Value::as_str) {
                ids.documents.insert(src.to_owned(), id.clone());
            }
            Ok(Some(format!("block_documents/{id}")))
        }
        Kind::Variable => {
            if created {
                target.post_json("variables/", b).await?;
                Ok(Some(target_path(item)))
            } else {
                target.patch_json(&target_path(item), b).await?;
                Ok(None)
            }
        }
        Kind::GlobalLimit => {
            if created {
                target.post_json("v2/concurrency_limits/", b).await?;
                Ok(Some(target_path(item)))
            } else {
                target.patch_json(&target_path(item), b).await?;
                Ok(None)
            }
        }
        Kind::TagLimit => {
            target.post_json("concurrency_limits/", b).await?;
            Ok(created.then(|| target_path(item)))
        }
        Kind::WorkPool => {
            if created {
                target.post_json("work_pools/", b).await?;
                Ok(Some(target_path(item)))
            } else {
                let mut patch = b.clone();
                if let Some(m) = patch.as_object_mut() {
                    m.remove("name");
                    m.remove("type");
                }
                target.patch_json(&target_path(item), &patch).await?;
                Ok(None)
            }
        }
        Kind::WorkQueue => {
            let (pool, _) = item.key.split_once('/').unwrap_or_default();
            if created {
                match target
                    .post_json(&format!("work_pools/{}/queues/", encode(pool)), b)
                    .await
                {
                    Ok(_) => return Ok(Some(target_path(item))),
                    // The pool, created by this import, came with its `default` queue: set it
                    // as the source's (it goes when the pool goes).
                    Err(ClientError::Status { status: 409, .. }) => {}
                    Err(e) => return Err(e.into()),
                }
                let mut patch = b.clone();
                if let Some(m) = patch.as_object_mut() {
                    m.remove("name");
                }
                target.patch_json(&target_path(item), &patch).await?;
                Ok(None)
            } else {
                let mut patch = b.clone();
                if let Some(m) = patch.as_object_mut() {
                    m.remove("name");
                }
                target.patch_json(&target_path(item), &patch).await?;
                Ok(None)
            }
        }
        Kind::Flow => {
            let made = target.post_json("flows/", b).await?;
            let id = made["id"].as_str().unwrap_or_default().to_owned();
            ids.flows.insert(text("name"), id.clone());
            Ok(created.then(|| format!("flows/{id}")))
        }
        Kind::Deployment => {
            let flow = text("flow_name");
            let flow_id = match ids.flows.get(&flow) {
                Some(id) => id.clone(),
                None => id_of(target, &format!("flows/name/{}", encode(&flow))).await?,
            };
            let mut body = b.clone();
            if let Some(m) = body.as_object_mut() {
                m.remove("flow_name");
                m.insert("flow_id".to_owned(), json!(flow_id));
            }
            let made = target.post_json("deployments/", &body).await?;
            Ok(created.then(|| format!("deployments/{}", made["id"].as_str().unwrap_or_default())))
        }
    }
}

/// The target's id of a document's schema: the one imported for it (by checksum and
/// version), else the type's newest.
async fn document_schema(target: &Client, body: &Value, slug: &str) -> anyhow::Result<Value> {
    if let Some(checksum) = body.get("schema_checksum").and_then(Value::as_str) {
        let mut path = format!("block_schemas/checksum/{}", encode(checksum));
        if let Some(version) = body.get("schema_version").and_then(Value::as_str) {
            path.push_str(&format!("?version={}", encode(version)));
        }
        if let Some(schema) = target.get_optional(&path).await?
            && let Some(id) = schema.get("id")
        {
            return Ok(id.clone());
        }
    }
    let type_id = id_of(target, &format!("block_types/slug/{}", encode(slug))).await?;
    let schemas = target
        .post_json(
            "block_schemas/filter",
            &json!({"block_schemas": {"block_type_id": {"any_": [type_id]}}}),
        )
        .await?;
    schemas
        .get(0)
        .and_then(|s| s.get("id"))
        .cloned()
        .ok_or_else(|| anyhow!("the target has no schema for block type {slug}"))
}

/// Undoes `done`, newest first; says what could not be undone.
async fn undo_all(target: &Client, done: Vec<(String, Undo)>) -> String {
    let total = done.len();
    let mut failed = Vec::new();
    for (what, undo) in done.into_iter().rev() {
        let result = match &undo {
            // A schema of a protected type (secret, webhook, ...) cannot be deleted; it is a
            // harmless catalog entry.
            Undo::Delete(path) if path.starts_with("block_schemas/") => {
                match target.delete_path(path).await {
                    Err(ClientError::Status { status: 403, .. }) => Ok(()),
                    other => other,
                }
            }
            Undo::Delete(path) => target.delete_path(path).await,
            Undo::Patch(path, body) => target.patch_json(path, body).await.map(|_| ()),
            Undo::Post(path, body) => target.post_json(path, body).await.map(|_| ()),
        };
        if let Err(e) = result {
            failed.push(format!("{what}: {e}"));
        }
    }
    if failed.is_empty() {
        format!(
            "the {total} write(s) before it were undone; nothing of this import is left on the target"
        )
    } else {
        format!(
            "undoing the {total} write(s) before it failed for {}: {}",
            failed.len(),
            failed.join("; ")
        )
    }
}

#[derive(Default)]
struct Report {
    created: Vec<String>,
    updated: Vec<String>,
    unchanged: Vec<String>,
    changed: Vec<String>,
    skipped: Vec<Skip>,
}

impl Report {
    fn add(&mut self, item: &Item, action: &Action) {
        let what = format!("{} {}", item.kind.name(), item.key);
        if !matches!(action, Action::Unchanged) {
            for c in &item.changed {
                self.changed.push(format!("{what}: {c}"));
            }
        }
        match action {
            Action::Create => self.created.push(what),
            Action::Update { .. } => self.updated.push(what),
            Action::Unchanged => self.unchanged.push(what),
        }
    }

    fn print(&self, dry_run: bool) {
        let (create, update) = if dry_run {
            ("would create", "would update")
        } else {
            ("created", "updated")
        };
        println!(
            "{} {create}, {} {update}, {} unchanged, {} skipped",
            self.created.len(),
            self.updated.len(),
            self.unchanged.len(),
            self.skipped.len()
        );
        for (label, list) in [(create, &self.created), (update, &self.updated)] {
            // Block types and schemas come by the dozen (every collection a server registered):
            // counted, not listed.
            let catalog =
                |w: &&String| w.starts_with("block type ") || w.starts_with("block schema ");
            let types = list.iter().filter(|w| w.starts_with("block type ")).count();
            let schemas = list
                .iter()
                .filter(|w| w.starts_with("block schema "))
                .count();
            if types + schemas > 0 {
                println!("  {label}: {types} block type(s), {schemas} block schema(s)");
            }
            for w in list.iter().filter(|w| !catalog(w)) {
                println!("  {label}: {w}");
            }
        }
        for c in &self.changed {
            println!("  changed on the way: {c}");
        }
        for s in &self.skipped {
            println!("  skipped: {} {}: {}", s.kind.name(), s.key, s.reason);
        }
    }
}
