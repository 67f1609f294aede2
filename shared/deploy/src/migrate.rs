//! `sluice migrate`: Prefect 2.x agent-era configuration → worker-era configuration (reference §9).
//!
//! - [`infra_block_to_pool`] turns an infrastructure block document (`Process`, `ECSTask`, ...)
//!   into a work pool whose template defaults carry the block's settings, the way 2.x
//!   `Infrastructure.publish_as_work_pool` / `generate_work_pool_base_job_template` does.
//! - [`migrate_deployment`] turns an agent-era `deployment.yaml` (`prefect deployment build`
//!   output) into a `prefect.yaml` with one deployment entry.
//!
//! Nothing here talks to a server; the CLI creates the pool.

mod patch;
mod yaml_out;

use serde_json::{Map, Value, json};

pub use patch::apply_patch;
pub use yaml_out::to_yaml;

/// A block field that did not make it into the pool, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub field: String,
    pub reason: String,
}

impl Skipped {
    fn new(field: &str, reason: impl Into<String>) -> Self {
        Skipped {
            field: field.to_owned(),
            reason: reason.into(),
        }
    }

    /// `{"field", "reason"}`.
    #[must_use]
    pub fn to_json(&self) -> Value {
        json!({"field": self.field, "reason": self.reason})
    }
}

/// Why a migration cannot be done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MigrateError(pub String);

fn fail<T>(message: impl Into<String>) -> Result<T, MigrateError> {
    Err(MigrateError(message.into()))
}

/// The work pool made from an infrastructure block.
#[derive(Debug, Clone, PartialEq)]
pub struct MigratedPool {
    /// The block document's name, when the input had one (the default pool name).
    pub block_name: Option<String>,
    /// The block type slug of the input (`process`, `ecs-task`, ...).
    pub block_type: String,
    /// The work pool type (`process`, `ecs`, ...).
    pub pool_type: String,
    pub base_job_template: Value,
    pub skipped: Vec<Skipped>,
}

impl MigratedPool {
    /// The `POST /work_pools/` body; also what `--dry-run` prints, with `skipped` added.
    #[must_use]
    pub fn request(&self, name: &str) -> Value {
        json!({"name": name, "type": self.pool_type, "base_job_template": self.base_job_template})
    }
}

/// Block fields that are bookkeeping, never settings.
const BOOKKEEPING: &[&str] = &[
    "type",
    "block_type_slug",
    "_block_document_id",
    "_block_document_name",
    "_is_anonymous",
    "_block_type_slug",
];

/// The work pool type that replaces an infrastructure block type
/// (`Infrastructure.get_corresponding_worker_type`).
#[must_use]
pub fn pool_type_for_block(block_type: &str) -> Option<&'static str> {
    match block_type {
        "process" => Some("process"),
        "ecs-task" => Some("ecs"),
        "kubernetes-job" => Some("kubernetes"),
        "docker-container" => Some("docker"),
        _ => None,
    }
}

/// Field values equal to the block class's own default: `publish_as_work_pool` only looks at
/// fields set to a non-default value (`exclude_unset=True, exclude_defaults=True`). A saved
/// document carries every field, so we recognise defaults by value.
fn is_block_default(block_type: &str, key: &str, value: &Value) -> bool {
    match value {
        Value::Null => return true,
        Value::Object(m) if m.is_empty() => return true,
        // A nested block left at its own defaults (`ECSTask(aws_credentials=AwsCredentials())`):
        // every setting null or empty, only its bookkeeping set.
        Value::Object(m)
            if m.keys().any(|k| BOOKKEEPING.contains(&k.as_str())) && !has_settings(value) =>
        {
            return true;
        }
        Value::Array(a) if a.is_empty() => return true,
        _ => {}
    }
    // Prefect 2's image default is its own image for the installed version
    // (`prefecthq/prefect:2.x.y-python3.z`); `publish_as_work_pool` leaves it out as a default.
    if key == "image"
        && matches!(block_type, "docker-container" | "kubernetes-job")
        && value
            .as_str()
            .is_some_and(|i| i.starts_with("prefecthq/prefect:2.") && i.contains("-python"))
    {
        return true;
    }
    if block_type == "kubernetes-job" && key == "job" && *value == kubernetes_base_job() {
        return true;
    }
    let default = match (block_type, key) {
        ("process", "stream_output") => json!(true),
        ("docker-container" | "kubernetes-job", "stream_output") => json!(true),
        ("docker-container", "auto_remove" | "privileged") => json!(false),
        ("kubernetes-job", "namespace") => json!("default"),
        ("kubernetes-job", "pod_watch_timeout_seconds") => json!(60),
        ("ecs-task", "launch_type") => json!("FARGATE"),
        ("ecs-task", "auto_deregister_task_definition") => json!(true),
        ("ecs-task", "task_start_timeout_seconds") => json!(120),
        ("ecs-task", "task_watch_poll_interval") => json!(5.0),
        _ => return false,
    };
    match (value.as_f64(), default.as_f64()) {
        (Some(a), Some(b)) => a == b,
        _ => *value == default,
    }
}

/// Prefect 2's `KubernetesJob.base_job_manifest()`, the `job` a block has unless customized.
fn kubernetes_base_job() -> Value {
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"labels": {}},
        "spec": {"template": {"spec": {
            "parallelism": 1,
            "completions": 1,
            "restartPolicy": "Never",
            "containers": [{"name": "prefect-job", "env": []}]
        }}}
    })
}

/// Prefect 2's image pull policy names (`IF_NOT_PRESENT`) as Kubernetes and Docker workers
/// spell them (`IfNotPresent`); names already in that form pass through.
fn pull_policy(value: &Value) -> Option<Value> {
    let text = value.as_str()?;
    let mapped = match text.to_ascii_uppercase().replace('-', "_").as_str() {
        "IF_NOT_PRESENT" | "IFNOTPRESENT" => "IfNotPresent",
        "ALWAYS" => "Always",
        "NEVER" => "Never",
        "IF_POSSIBLE" | "IFPOSSIBLE" => "IfPossible",
        _ => return None,
    };
    Some(json!(mapped))
}

/// Whether a nested block holds anything but its bookkeeping and nulls (a saved document
/// counts: its name says which).
fn has_settings(value: &Value) -> bool {
    match value {
        Value::Object(m) => {
            (m.get("_block_document_id").is_some_and(|v| !v.is_null())
                || text(m.get("_block_document_name")).is_some())
                && m.get("_is_anonymous").and_then(Value::as_bool) != Some(true)
                || m.iter().any(|(k, v)| {
                    !BOOKKEEPING.contains(&k.as_str())
                        && !v.is_null()
                        && !v.as_object().is_some_and(Map::is_empty)
                })
        }
        Value::Null => false,
        _ => true,
    }
}

/// (block type slug, document name, data).
type BlockParts = (String, Option<String>, Map<String, Value>);

/// Splits the input into (block type slug, document name, data). Accepted shapes:
/// - a block document: `{"name", "block_type_slug" | "block_type": {"slug"}, "data": {...}}`;
/// - the bare data with a `type` (or `block_type_slug`) field, as `Block.dict()` gives it.
fn split_block(input: &Value) -> Result<BlockParts, MigrateError> {
    let Value::Object(top) = input else {
        return fail("an infrastructure block must be a JSON object");
    };
    let slug_of = |m: &Map<String, Value>| -> Option<String> {
        ["block_type_slug", "_block_type_slug", "type"]
            .iter()
            .find_map(|k| m.get(*k).and_then(Value::as_str))
            .or_else(|| {
                m.get("block_type")
                    .and_then(|b| b.get("slug"))
                    .and_then(Value::as_str)
            })
            .map(str::to_owned)
    };
    let (data, name, slug) = match top.get("data") {
        Some(Value::Object(data)) => {
            let name = top
                .get("name")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .or_else(|| {
                    data.get("_block_document_name")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                });
            let mut data = data.clone();
            // Nested block references the API reports beside the data.
            if let Some(Value::Object(refs)) = top.get("block_document_references") {
                for (field, r) in refs {
                    if let Some(id) = r.get("block_document").and_then(|d| d.get("id")) {
                        let entry = data.entry(field.clone()).or_insert_with(|| json!({}));
                        if let Value::Object(m) = entry {
                            m.insert("_block_document_id".to_owned(), id.clone());
                        }
                    }
                }
            }
            let slug = slug_of(top).or_else(|| slug_of(&data));
            (data, name, slug)
        }
        _ => {
            let name = top
                .get("_block_document_name")
                .and_then(Value::as_str)
                .map(str::to_owned);
            (top.clone(), name, slug_of(top))
        }
    };
    let Some(slug) = slug else {
        return fail(
            "cannot tell the block type: expected `block_type_slug` on a block document or `type` in the block data (process, ecs-task, kubernetes-job, docker-container)",
        );
    };
    // Anonymous documents have generated names that make poor pool names.
    let anonymous = input.get("is_anonymous").and_then(Value::as_bool) == Some(true)
        || data.get("_is_anonymous").and_then(Value::as_bool) == Some(true);
    Ok((slug, name.filter(|_| !anonymous), data))
}

/// POSIX shell quoting of one word (Python's `shlex.quote`).
#[must_use]
pub fn shell_quote(word: &str) -> String {
    if word.is_empty() {
        return "''".to_owned();
    }
    let safe = word
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "@%+=:,./-_".contains(c));
    if safe {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\"'\"'"))
    }
}

/// Python's `shlex.join`.
#[must_use]
pub fn shell_join<S: AsRef<str>>(words: &[S]) -> String {
    words
        .iter()
        .map(|w| shell_quote(w.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The id of a saved nested block: `{"_block_document_id": id, ...}` or `{"$ref": ...}`.
fn saved_block_id(value: &Value) -> Option<Value> {
    if let Some(id) = value.get("_block_document_id").filter(|v| !v.is_null()) {
        return Some(id.clone());
    }
    match value.get("$ref") {
        Some(Value::Object(r)) => r.get("block_document_id").cloned(),
        Some(v @ Value::String(_)) => Some(v.clone()),
        _ => None,
    }
}

/// An infrastructure block (see [`split_block`] for the accepted shapes) → a work pool.
pub fn infra_block_to_pool(input: &Value) -> Result<MigratedPool, MigrateError> {
    let (block_type, block_name, data) = split_block(input)?;
    let Some(pool_type) = pool_type_for_block(&block_type) else {
        return fail(format!(
            "block type '{block_type}' is not an infrastructure block Sluice can migrate (process, ecs-task, kubernetes-job, docker-container)"
        ));
    };
    let Some(mut template) = sluice_core::pool_types::default_base_job_template(pool_type) else {
        return fail(format!(
            "a '{block_type}' block becomes a '{pool_type}' work pool, but Sluice has no default base job template for '{pool_type}' pools"
        ));
    };
    let mut skipped = Vec::new();
    let unsupported = format!("not supported by the {pool_type} work pool template");
    let mut customizations: Option<Value> = None;
    for (key, value) in &data {
        if BOOKKEEPING.contains(&key.as_str()) || is_block_default(&block_type, key, value) {
            continue;
        }
        let has_variable = template
            .pointer(&format!("/variables/properties/{}", patch::escape(key)))
            .is_some();
        match key.as_str() {
            "command" => {
                let joined = match value {
                    Value::Array(words) => {
                        let words: Vec<String> = words
                            .iter()
                            .map(|w| match w {
                                Value::String(s) => s.clone(),
                                other => other.to_string(),
                            })
                            .collect();
                        shell_join(&words)
                    }
                    Value::String(s) => s.clone(),
                    _ => {
                        skipped.push(Skipped::new(key, "`command` must be a list of strings"));
                        continue;
                    }
                };
                set_default(&mut template, "command", Value::String(joined));
            }
            "task_customizations" if block_type == "ecs-task" => {
                customizations = Some(value.clone());
            }
            "aws_credentials" if block_type == "ecs-task" => set_block_reference(
                &mut template,
                key,
                value,
                &mut skipped,
                "the credentials are inline, not a saved block document; save them as an aws-credentials block and set the pool's aws_credentials default to {\"$ref\": {\"block_document_id\": ...}}",
            ),
            "image_pull_policy" if has_variable => match pull_policy(value) {
                Some(v) => set_default(&mut template, key, v),
                None => skipped.push(Skipped::new(
                    key,
                    format!("{value} is not an image pull policy the {pool_type} template knows"),
                )),
            },
            "customizations" if block_type == "kubernetes-job" => {
                apply_job_customizations(&mut template, value, &mut skipped);
            }
            "job" if block_type == "kubernetes-job" => skipped.push(Skipped::new(
                key,
                "a customized Job manifest: carry its changes into the pool's job_manifest by hand",
            )),
            "cluster_config" if block_type == "kubernetes-job" => set_block_reference(
                &mut template,
                key,
                value,
                &mut skipped,
                "the cluster config is inline, not a saved block document; save it as a kubernetes-cluster-config block and set the pool's cluster_config default to it",
            ),
            "image_registry" if block_type == "docker-container" => skipped.push(Skipped::new(
                key,
                "a Prefect 2 docker-registry block: save the login as a docker-registry-credentials block (prefect-docker) and set the pool's registry_credentials default to it",
            )),
            "task_definition" if block_type == "ecs-task" => {
                if let Some(jc) = template
                    .get_mut("job_configuration")
                    .and_then(Value::as_object_mut)
                {
                    jc.insert("task_definition".to_owned(), value.clone());
                }
            }
            _ if has_variable => set_default(&mut template, key, value.clone()),
            _ => skipped.push(Skipped::new(key, unsupported.clone())),
        }
    }
    if let Some(c) = customizations {
        apply_customizations(&mut template, &c, &mut skipped);
    }
    Ok(MigratedPool {
        block_name,
        block_type,
        pool_type: pool_type.to_owned(),
        base_job_template: template,
        skipped,
    })
}

/// A nested block field becomes its variable's default as a reference to the saved document;
/// an inline (unsaved) block cannot be referred to, so it is skipped with `inline`.
fn set_block_reference(
    template: &mut Value,
    variable: &str,
    value: &Value,
    skipped: &mut Vec<Skipped>,
    inline: &str,
) {
    match saved_block_id(value) {
        Some(id) => {
            let id = match id {
                Value::String(s) => s,
                other => other.to_string(),
            };
            set_default(
                template,
                variable,
                json!({"$ref": {"block_document_id": id}}),
            );
        }
        None => skipped.push(Skipped::new(variable, inline)),
    }
}

/// A JSON Patch list, as blocks held it (a list, or a JSON string of one).
fn patch_list(value: &Value, field: &str, skipped: &mut Vec<Skipped>) -> Option<Vec<Value>> {
    let list = match value {
        Value::Array(p) => Some(p.clone()),
        Value::String(s) => match serde_json::from_str(s) {
            Ok(Value::Array(p)) => Some(p),
            _ => None,
        },
        _ => None,
    };
    if list.is_none() {
        skipped.push(Skipped::new(field, "not a JSON Patch list"));
    }
    list
}

fn set_default(template: &mut Value, variable: &str, value: Value) {
    if let Some(Value::Object(prop)) = template
        .get_mut("variables")
        .and_then(|v| v.get_mut("properties"))
        .and_then(|p| p.get_mut(variable))
    {
        prop.insert("default".to_owned(), value);
    }
}

/// A KubernetesJob's `customizations` (a JSON Patch list on the Job manifest) applied to the
/// template's `job_manifest`, the same document the Kubernetes worker renders.
fn apply_job_customizations(template: &mut Value, value: &Value, skipped: &mut Vec<Skipped>) {
    let field = "customizations";
    let Some(patches) = patch_list(value, field, skipped) else {
        return;
    };
    let Some(manifest) = template.pointer_mut("/job_configuration/job_manifest") else {
        return;
    };
    let mut patched = manifest.clone();
    match apply_patch(&mut patched, &patches) {
        Ok(()) => *manifest = patched,
        Err(e) => skipped.push(Skipped::new(
            field,
            format!("cannot apply to job_configuration.job_manifest ({e}); edit the pool's template by hand"),
        )),
    }
}

/// `task_customizations` (a JSON Patch list): patches on `/networkConfiguration...` become the
/// `network_configuration` default (applied to a minimal document that has their paths); the
/// others are applied to `job_configuration.task_run_request`.
///
/// Prefect applies the whole list, network patches included, to the request and gives up on
/// all of them when one does not apply; the template's request has no `networkConfiguration`,
/// so network patches never apply there. Sluice applies only the other patches, so the
/// network settings come from the variable the worker reads.
fn apply_customizations(template: &mut Value, value: &Value, skipped: &mut Vec<Skipped>) {
    let field = "task_customizations";
    let Some(patches) = patch_list(value, field, skipped) else {
        return;
    };
    let is_network = |p: &Value| {
        p.get("path")
            .and_then(Value::as_str)
            .is_some_and(|s| s.contains("networkConfiguration"))
    };
    let (network, rest): (Vec<Value>, Vec<Value>) = patches.into_iter().partition(is_network);
    if !network.is_empty() {
        let mut doc = patch::assemble_document(&network);
        match apply_patch(&mut doc, &network) {
            Ok(()) => {
                // The variable is the inner `awsvpcConfiguration` object: Prefect's ECS
                // worker (and Sluice's) wraps it again when it builds the request.
                if let Some(cfg) = doc.get("networkConfiguration") {
                    let inner = cfg.get("awsvpcConfiguration").unwrap_or(cfg);
                    set_default(template, "network_configuration", inner.clone());
                }
            }
            Err(e) => skipped.push(Skipped::new(
                field,
                format!("the networkConfiguration patches do not apply: {e}; set network_configuration by hand"),
            )),
        }
    }
    if rest.is_empty() {
        return;
    }
    let Some(request) = template.pointer_mut("/job_configuration/task_run_request") else {
        return;
    };
    let mut patched = request.clone();
    match apply_patch(&mut patched, &rest) {
        Ok(()) => *request = patched,
        Err(e) => skipped.push(Skipped::new(
            field,
            format!("cannot apply to job_configuration.task_run_request ({e}); edit the pool's template by hand"),
        )),
    }
}

/// The `prefect.yaml` made from an agent-era `deployment.yaml`.
#[derive(Debug, Clone, PartialEq)]
pub struct MigratedDeployment {
    /// The file text: a comment header, then the document.
    pub yaml: String,
    /// The document itself.
    pub document: Value,
    /// What was not carried over (also in the header).
    pub not_carried: Vec<String>,
}

/// Expands dotted keys (`env.FOO: bar` → `env: {FOO: bar}`), plain keys merged over them.
#[must_use]
pub fn expand_dotted(overrides: &Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    let mut plain = Vec::new();
    for (key, value) in overrides {
        if !key.contains('.') {
            plain.push((key, value));
            continue;
        }
        let parts: Vec<&str> = key.split('.').collect();
        let mut cur = &mut out;
        for part in &parts[..parts.len() - 1] {
            cur = patch::descend(cur, part);
        }
        if let Some(last) = parts.last() {
            cur.insert((*last).to_owned(), value.clone());
        }
    }
    for (key, value) in plain {
        match (out.get_mut(key), value) {
            (Some(existing @ Value::Object(_)), Value::Object(_)) => deep_merge(existing, value),
            _ => {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    out
}

fn deep_merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => {
                        deep_merge(existing, v)
                    }
                    _ => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

fn text(v: Option<&Value>) -> Option<String> {
    match v {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

/// The settings of an inline (unsaved) infrastructure block as job variables: what
/// `publish_as_work_pool` would make pool defaults, kept only where they differ from the
/// pool type's own defaults. What only a pool's template can hold is reported.
fn inline_settings(
    infra: &Value,
    not_carried: &mut Vec<String>,
) -> Result<Map<String, Value>, MigrateError> {
    let migrated = infra_block_to_pool(infra)
        .map_err(|e| MigrateError(format!("the inline infrastructure block: {}", e.0)))?;
    let base = sluice_core::pool_types::default_base_job_template(&migrated.pool_type)
        .unwrap_or(Value::Null);
    let mut vars = Map::new();
    let properties = |t: &Value| {
        t.pointer("/variables/properties")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    };
    let base_props = properties(&base);
    for (name, prop) in properties(&migrated.base_job_template) {
        let Some(default) = prop.get("default") else {
            continue;
        };
        if base_props.get(&name).and_then(|p| p.get("default")) != Some(default) {
            vars.insert(name, default.clone());
        }
    }
    if migrated.base_job_template.get("job_configuration") != base.get("job_configuration") {
        not_carried.push(format!(
            "the inline {} block's changes to the job itself (task definition or customizations): a deployment cannot carry them; put them in the '{}' pool's template",
            migrated.block_type, migrated.pool_type
        ));
    }
    for s in &migrated.skipped {
        not_carried.push(format!("infrastructure.{}: {}", s.field, s.reason));
    }
    Ok(vars)
}

/// An agent-era `deployment.yaml` → a `prefect.yaml` with one deployment entry.
///
/// `pool` names the work pool (`--pool`); without it the file's `work_pool_name` is used, then
/// the name of the infrastructure block document (the pool `sluice migrate infra-block` makes
/// from it by default).
pub fn migrate_deployment(
    source: &str,
    pool: Option<&str>,
) -> Result<MigratedDeployment, MigrateError> {
    let docs = crate::yaml::load_all(source).map_err(|e| {
        MigrateError(format!(
            "line {}: YAML syntax error: {}",
            e.pos.line, e.message
        ))
    })?;
    let Some((doc, _)) = docs.into_iter().next() else {
        return fail("the deployment.yaml is empty");
    };
    let Value::Object(d) = doc.value else {
        return fail("a deployment.yaml must be a mapping");
    };
    let Some(name) = text(d.get("name")) else {
        return fail("the deployment.yaml has no `name`");
    };
    let mut not_carried = Vec::new();
    let mut entry = Map::new();
    entry.insert("name".to_owned(), json!(name));
    for key in ["version", "description"] {
        if let Some(v) = d.get(key).filter(|v| !v.is_null()) {
            entry.insert(key.to_owned(), v.clone());
        }
    }
    if let Some(flow) = text(d.get("flow_name")) {
        entry.insert("flow_name".to_owned(), json!(flow));
    }
    entry.insert(
        "tags".to_owned(),
        d.get("tags")
            .filter(|v| v.is_array())
            .cloned()
            .unwrap_or_else(|| json!([])),
    );

    // Storage → pull steps; `path` is the flow's directory inside the storage (remote) or the
    // working directory (local).
    let storage = d.get("storage").filter(|v| v.is_object());
    let path = text(d.get("path"));
    let slug = storage.and_then(|s| {
        text(s.get("_block_type_slug"))
            .or_else(|| text(s.get("block_type_slug")))
            .or_else(|| text(s.get("type")))
    });
    let mut remote = true;
    let pull: Vec<Value> = match (storage, slug.as_deref()) {
        (None, _) | (Some(_), Some("local-file-system")) => {
            remote = false;
            let dir = path
                .clone()
                .or_else(|| storage.and_then(|s| text(s.get("basepath"))))
                .unwrap_or_else(|| ".".to_owned());
            vec![json!({"prefect.deployments.steps.set_working_directory": {"directory": dir}})]
        }
        (Some(s), Some("github")) => {
            let Some(repository) = text(s.get("repository")) else {
                return fail("github storage without a `repository`");
            };
            let mut inputs = json!({"repository": repository});
            if let Some(branch) = text(s.get("reference")) {
                inputs["branch"] = json!(branch);
            }
            if s.get("access_token").is_some_and(|v| !v.is_null()) {
                not_carried.push("storage.access_token: put the token in a Secret block and add `access_token: \"{{ prefect.blocks.secret.NAME }}\"` to the git_clone step".to_owned());
            }
            vec![json!({"prefect.deployments.steps.git_clone": inputs})]
        }
        (Some(s), Some("s3")) => {
            let Some(bucket_path) = text(s.get("bucket_path")) else {
                return fail("s3 storage without a `bucket_path`");
            };
            let (bucket, folder) = bucket_path
                .trim_start_matches("s3://")
                .split_once('/')
                .map_or((bucket_path.clone(), String::new()), |(b, f)| {
                    (b.to_owned(), f.trim_end_matches('/').to_owned())
                });
            if s.get("aws_access_key_id").is_some_and(|v| !v.is_null())
                || s.get("aws_secret_access_key").is_some_and(|v| !v.is_null())
            {
                not_carried.push("storage AWS keys: save an aws-credentials block and add `credentials: \"{{ prefect.blocks.aws-credentials.NAME }}\"` to the pull_from_s3 step".to_owned());
            }
            vec![
                json!({"prefect_aws.deployments.steps.pull_from_s3": {"requires": "prefect-aws", "bucket": bucket, "folder": folder}}),
            ]
        }
        (Some(s), Some("s3-bucket")) => {
            // prefect-aws's S3Bucket: the flow's files under `bucket_folder` (then `path`).
            let Some(bucket) = text(s.get("bucket_name")) else {
                return fail("s3-bucket storage without a `bucket_name`");
            };
            let folder = text(s.get("bucket_folder"))
                .map(|f| f.trim_matches('/').to_owned())
                .unwrap_or_default();
            let mut inputs = json!({"requires": "prefect-aws", "bucket": bucket, "folder": folder});
            if let Some(c) = s.get("credentials").filter(|c| has_settings(c)) {
                let saved = text(c.get("_block_document_name"))
                    .filter(|_| c.get("_is_anonymous").and_then(Value::as_bool) != Some(true));
                match saved {
                    Some(name) => {
                        inputs["credentials"] =
                            json!(format!("{{{{ prefect.blocks.aws-credentials.{name} }}}}"));
                    }
                    None => not_carried.push("storage.credentials (inline AWS credentials): save an aws-credentials block and add `credentials: \"{{ prefect.blocks.aws-credentials.NAME }}\"` to the pull_from_s3 step".to_owned()),
                }
            }
            vec![json!({"prefect_aws.deployments.steps.pull_from_s3": inputs})]
        }
        (Some(s), Some("gcs-bucket")) => {
            // prefect-gcp's GcsBucket: `bucket` and `bucket_folder`.
            let Some(bucket) = text(s.get("bucket")) else {
                return fail("gcs-bucket storage without a `bucket`");
            };
            let folder = text(s.get("bucket_folder"))
                .map(|f| f.trim_matches('/').to_owned())
                .unwrap_or_default();
            if s.get("gcp_credentials").is_some_and(|c| !c.is_null()) {
                not_carried.push("storage.gcp_credentials: add `credentials: \"{{ prefect.blocks.gcp-credentials.NAME }}\"` to the pull_from_gcs step".to_owned());
            }
            vec![
                json!({"prefect_gcp.deployments.steps.pull_from_gcs": {"requires": "prefect-gcp", "bucket": bucket, "folder": folder}}),
            ]
        }
        (Some(s), Some("remote-file-system")) => {
            let Some(url) = text(s.get("basepath")) else {
                return fail("remote-file-system storage without a `basepath`");
            };
            if s.get("settings")
                .is_some_and(|v| v.as_object().is_some_and(|m| !m.is_empty()))
            {
                not_carried.push("storage.settings (fsspec options, possibly secrets): add them to the pull_from_remote_storage step".to_owned());
            }
            vec![json!({"prefect.deployments.steps.pull_from_remote_storage": {"url": url}})]
        }
        (Some(_), other) => {
            let what = other.unwrap_or("unknown");
            not_carried.push(format!(
                "storage block of type '{what}': no pull step generated; write one (see prefect.deployments.steps)"
            ));
            Vec::new()
        }
    };
    let Some(entrypoint) = text(d.get("entrypoint")) else {
        return fail("the deployment.yaml has no `entrypoint`");
    };
    let entrypoint = match (&path, remote) {
        (Some(p), true) if !p.is_empty() && p != "." => {
            format!("{}/{}", p.trim_end_matches('/'), entrypoint)
        }
        _ => entrypoint,
    };
    entry.insert("entrypoint".to_owned(), json!(entrypoint));
    entry.insert(
        "parameters".to_owned(),
        d.get("parameters")
            .filter(|v| v.is_object())
            .cloned()
            .unwrap_or_else(|| json!({})),
    );

    // A saved (named, not anonymous) infrastructure block becomes a pool of its own name; an
    // inline one has no pool to become, so its settings travel with the deployment.
    let infra_name = d
        .get("infrastructure")
        .filter(|i| i.get("_is_anonymous").and_then(Value::as_bool) != Some(true))
        .and_then(|i| text(i.get("_block_document_name")));
    let inline_infra = d
        .get("infrastructure")
        .filter(|i| i.is_object() && infra_name.is_none());
    let pool_name = pool
        .map(str::to_owned)
        .or_else(|| text(d.get("work_pool_name")))
        .or_else(|| infra_name.clone());
    let Some(pool_name) = pool_name else {
        return fail(
            "no work pool: the deployment.yaml has no `work_pool_name` and its infrastructure block is not a saved document; pass --pool (the pool made with `sluice migrate infra-block`)",
        );
    };
    let mut work_pool = Map::new();
    work_pool.insert("name".to_owned(), json!(pool_name));
    if let Some(q) = text(d.get("work_queue_name")) {
        work_pool.insert("work_queue_name".to_owned(), json!(q));
    }
    let mut raw_overrides = match d.get("infra_overrides") {
        Some(Value::Object(m)) => m.clone(),
        _ => Map::new(),
    };
    // Prefect 2 named pull policies `IF_NOT_PRESENT`; the workers read `IfNotPresent`.
    if let Some(policy) = raw_overrides.get_mut("image_pull_policy")
        && let Some(mapped) = pull_policy(policy)
    {
        *policy = mapped;
    }
    // With the infrastructure block's type known, the overrides are made to fit the template
    // of the pool it becomes (the 2.x CLI wrote `cpu: '512'`); agent-only keys are left out
    // and named, and a value that cannot fit stops the migration with its variable's name.
    let infra_kind = d.get("infrastructure").and_then(|i| {
        text(i.get("type"))
            .or_else(|| text(i.get("block_type_slug")))
            .or_else(|| text(i.get("_block_type_slug")))
    });
    let target = infra_kind.as_deref().and_then(|k| {
        let pool_type = pool_type_for_block(k)?;
        Some((
            pool_type,
            sluice_core::pool_types::default_base_job_template(pool_type)?,
        ))
    });
    let overrides = match &target {
        Some((pool_type, template)) => {
            let schema = template.get("variables").cloned().unwrap_or(Value::Null);
            let coerced = sluice_core::schema::coerce_job_variables(&schema, &raw_overrides);
            if let Some(bad) = coerced.invalid.first() {
                return fail(format!(
                    "infra_overrides.{}: {} (the '{pool_type}' work pool's variable)",
                    bad.path, bad.message
                ));
            }
            for key in &coerced.undeclared {
                let why = match key.split('.').next().unwrap_or(key) {
                    "customizations" | "task_customizations" | "job_customizations" => {
                        "a per-deployment JSON patch of the job, which work pools have no place for: put it in the pool's base job template (`sluice migrate infra-block` applies the block's own)"
                    }
                    _ => "not a variable of the pool's template",
                };
                not_carried.push(format!(
                    "infra_overrides.{key}: {why} ('{pool_type}' work pool); left out"
                ));
            }
            expand_dotted(&coerced.values)
        }
        None => expand_dotted(&raw_overrides),
    };
    let overrides = match inline_infra {
        Some(infra) => {
            // The deployment's overrides are laid over its block's settings, nested keys
            // merged, as the agent applied `infra_overrides` to the block.
            let mut vars = Value::Object(inline_settings(infra, &mut not_carried)?);
            deep_merge(&mut vars, &Value::Object(overrides));
            match vars {
                Value::Object(m) => m,
                _ => Map::new(),
            }
        }
        // A saved block: an override of part of a mapping (`env.MODE`) was merged into the
        // block's mapping by the agent, while a worker lays job variables over the pool's
        // defaults whole; so the mapping is written out merged, keeping the block's other keys.
        None => {
            let mut overrides = overrides;
            if let Some(Value::Object(block)) = d.get("infrastructure") {
                for (key, value) in &mut overrides {
                    if let (Some(base @ Value::Object(_)), Value::Object(_)) =
                        (block.get(key), &*value)
                    {
                        let mut merged = base.clone();
                        deep_merge(&mut merged, value);
                        *value = merged;
                    }
                }
            }
            overrides
        }
    };
    work_pool.insert("job_variables".to_owned(), Value::Object(overrides));
    entry.insert("work_pool".to_owned(), Value::Object(work_pool));

    // A schedule runs only if it is active itself and the deployment's schedule is active: a
    // schedule switched off stays off whatever `is_schedule_active` says.
    let deployment_active = d
        .get("is_schedule_active")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let mut schedules = Vec::new();
    let legacy: Vec<(Value, bool)> = match (d.get("schedules"), d.get("schedule")) {
        (Some(Value::Array(items)), _) if !items.is_empty() => items
            .iter()
            .map(|i| match i.get("schedule") {
                Some(inner) => (
                    inner.clone(),
                    i.get("active").and_then(Value::as_bool).unwrap_or(true),
                ),
                None => (i.clone(), true),
            })
            .collect(),
        (_, Some(s @ Value::Object(_))) => vec![(s.clone(), true)],
        _ => Vec::new(),
    };
    for (s, own_active) in legacy {
        let Value::Object(mut m) = s else { continue };
        m.retain(|_, v| !v.is_null());
        m.insert("active".to_owned(), json!(own_active && deployment_active));
        schedules.push(Value::Object(m));
    }
    if !schedules.is_empty() {
        entry.insert("schedules".to_owned(), Value::Array(schedules));
    }
    if !pull.is_empty() {
        entry.insert("pull".to_owned(), Value::Array(pull));
    }

    if let Some(infra) = d
        .get("infrastructure")
        .filter(|v| v.is_object() && inline_infra.is_none())
    {
        let kind = text(infra.get("type"))
            .or_else(|| text(infra.get("block_type_slug")))
            .or_else(|| text(infra.get("_block_type_slug")))
            .unwrap_or_else(|| "unknown".to_owned());
        let named = infra_name.map_or_else(String::new, |n| format!(" '{n}'"));
        let makes = pool_type_for_block(&kind)
            .map_or_else(String::new, |t| format!(" (it makes a '{t}' work pool)"));
        not_carried.push(format!(
            "the {kind} infrastructure block{named}: its settings belong in the work pool; migrate it with `sluice migrate infra-block`{makes}"
        ));
    }
    for key in ["manifest_path", "parameter_openapi_schema", "timestamp"] {
        if d.get(key).is_some_and(|v| !v.is_null()) {
            not_carried.push(format!(
                "{key}: not a prefect.yaml setting (the deploy step produces it again)"
            ));
        }
    }
    let known = [
        "name",
        "description",
        "version",
        "tags",
        "parameters",
        "schedule",
        "schedules",
        "is_schedule_active",
        "infra_overrides",
        "flow_name",
        "manifest_path",
        "work_queue_name",
        "work_pool_name",
        "storage",
        "path",
        "entrypoint",
        "parameter_openapi_schema",
        "infrastructure",
        "timestamp",
        "triggers",
        "enforce_parameter_schema",
    ];
    if let Some(Value::Array(t)) = d
        .get("triggers")
        .filter(|t| t.as_array().is_some_and(|a| !a.is_empty()))
    {
        entry.insert("triggers".to_owned(), Value::Array(t.clone()));
    }
    if let Some(Value::Bool(b)) = d.get("enforce_parameter_schema") {
        entry.insert("enforce_parameter_schema".to_owned(), json!(b));
    }
    for key in d.keys() {
        if !known.contains(&key.as_str()) {
            not_carried.push(format!("{key}: not a deployment setting Sluice knows"));
        }
    }

    let document = json!({"deployments": [Value::Object(entry)]});
    let mut out = String::from(
        "# prefect.yaml generated by `sluice migrate deployment` from an agent-era deployment.yaml.\n",
    );
    if not_carried.is_empty() {
        out.push_str("# Everything was carried over.\n");
    } else {
        out.push_str("# Not carried over:\n");
        for n in &not_carried {
            out.push_str("#   - ");
            out.push_str(n);
            out.push('\n');
        }
    }
    out.push_str(&to_yaml(&document));
    Ok(MigratedDeployment {
        yaml: out,
        document,
        not_carried,
    })
}
