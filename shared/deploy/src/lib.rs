//! `sluice deploy` without a server: turns a `prefect.yaml` into the deployment requests that
//! `prefect deploy` would send (reference §4, §5.1, §7.1, §10).
//!
//! [`load`] reads the file the way PyYAML's `safe_load` does (anchors, aliases, `<<` merge keys,
//! YAML 1.1 scalars) and keeps the line of every key. [`plan`] applies §4.4 as far as it can go
//! without a server or running steps:
//!
//! 1. defaults for missing keys, legacy `schedule` → `schedules`;
//! 2. CLI options ([`DeployOptions`]) over file values;
//! 3. section precedence: a deployment-level `build`/`push`/`pull` replaces the top-level one;
//! 4. templating of `{{ $ENV }}` and plain `{{ NAME }}` from the environment
//!    (`remove_notset=false`, `ctx.` skipped). `{{ prefect.variables.* }}`, `{{ prefect.blocks.* }}`
//!    and step outputs (`{{ step_id.field }}`) are left as they are and reported in
//!    [`PlannedDeployment::warnings`]: resolving them needs the API or running build/push steps,
//!    which the caller does afterwards (steps 7–9 of §4.4);
//! 5. schedules validated with `sluice_core::schedules`, `concurrency_limit` split into
//!    `concurrency_limit` + `concurrency_options`.
//!
//! Build and push steps are returned untemplated: Prefect templates step inputs when it runs them.

pub mod import;
pub mod migrate;
mod yaml;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};
use sluice_core::schedules::{Schedule, parse_interval_seconds};
use sluice_core::templating::{
    ApplyOptions, PlaceholderKind, apply_values, find_placeholders, python_str,
};

pub use yaml::Pos;

/// The command-line options of `sluice deploy` that shape the requests.
#[derive(Debug, Clone, Default)]
pub struct DeployOptions {
    /// `--name`: glob patterns (`*`, `?`, `[...]`, as Python's `fnmatch`) matched against
    /// `deployment` and `flow/deployment`.
    pub names: Vec<String>,
    /// `--all`.
    pub all: bool,
    /// `--pool`.
    pub pool: Option<String>,
    /// `--work-queue`.
    pub work_queue: Option<String>,
    /// `--job-variable k=v`, merged over the file's `job_variables` (top-level keys).
    pub job_variables: Vec<(String, Value)>,
    /// `--cron`, appended as schedules.
    pub cron: Vec<String>,
    /// `--interval` (seconds), appended as schedules.
    pub interval: Vec<f64>,
    /// `--rrule`, appended as schedules.
    pub rrule: Vec<String>,
    /// `--timezone`, applied to every schedule.
    pub timezone: Option<String>,
    /// `--anchor-date`, applied to every interval schedule.
    pub anchor_date: Option<String>,
    /// `--param`/`--params`, merged over the file's `parameters`.
    pub params: Map<String, Value>,
}

/// A parsed `prefect.yaml`.
#[derive(Debug, Clone)]
pub struct ProjectFile {
    /// The file as given to [`load`].
    pub path: PathBuf,
    /// The absolute directory holding the file (the default pull step's working directory).
    pub dir: PathBuf,
    /// The whole document, anchors, aliases and merge keys resolved.
    pub document: Value,
    positions: HashMap<String, Pos>,
}

impl ProjectFile {
    /// The source position of the value at `pointer` (a JSON pointer such as
    /// `/deployments/0/schedules/1`); for a mapping entry, the position of its key. Values
    /// reached through an alias report the position inside the anchored node.
    #[must_use]
    pub fn position(&self, pointer: &str) -> Option<Pos> {
        self.positions.get(pointer).copied()
    }

    /// The line of `pointer`, or of its nearest ancestor that has one.
    #[must_use]
    pub fn line_of(&self, pointer: &str) -> Option<usize> {
        let mut p = pointer;
        loop {
            if let Some(pos) = self.positions.get(p) {
                return Some(pos.line);
            }
            match p.rfind('/') {
                Some(i) => p = &p[..i],
                None => return None,
            }
        }
    }

    /// The `deployments` entries.
    #[must_use]
    pub fn deployments(&self) -> &[Value] {
        self.document
            .get("deployments")
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice)
    }

    /// The positions of the entries without a `name` (missing or null), which `deploy --all`
    /// skips as Prefect does ("Discovered unnamed deployment. Skipping...").
    #[must_use]
    pub fn unnamed_entries(&self) -> Vec<usize> {
        self.deployments()
            .iter()
            .enumerate()
            .filter(|(_, d)| {
                d.as_object()
                    .is_some_and(|m| m.get("name").is_none_or(Value::is_null))
            })
            .map(|(i, _)| i)
            .collect()
    }

    /// The `name` of every deployment entry, in file order (unnamed entries are skipped).
    #[must_use]
    pub fn deployment_names(&self) -> Vec<String> {
        self.deployments()
            .iter()
            .filter_map(|d| d.get("name").and_then(Value::as_str).map(str::to_owned))
            .collect()
    }
}

/// One deployment `sluice deploy` would create or update.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedDeployment {
    pub name: String,
    /// `flow_name` from the file, or else the function name after `:` in `entrypoint` (or after
    /// the last `.` of `module.func`). Prefect imports the flow to read its real name (the
    /// `@flow(name=...)` argument); Sluice does not import Python, so a flow whose decorator
    /// renames it needs `flow_name` in prefect.yaml.
    pub flow_name: Option<String>,
    pub entrypoint: Option<String>,
    /// The `POST /deployments/` body (§10), without `flow_id` (filled in once the flow exists).
    pub body: Value,
    /// The build steps that apply to this deployment (untemplated).
    pub build_steps: Vec<Value>,
    /// The push steps that apply to this deployment (untemplated).
    pub push_steps: Vec<Value>,
    /// `triggers`, as written (Prefect templates them later, `parameters` untouched).
    pub triggers: Vec<Value>,
    /// What a dry run could not do or chose to ignore (unresolved references, ignored keys...).
    pub warnings: Vec<String>,
}

/// Why a file cannot be planned. Every message names the file; most name the line and key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DeployError {
    #[error("{path}: cannot read: {message}")]
    Io { path: String, message: String },
    #[error("{path}:{line}:{col}: YAML syntax error: {message}")]
    Syntax {
        path: String,
        line: usize,
        col: usize,
        message: String,
    },
    #[error("{path}: not a prefect.yaml: {reason}")]
    NotAProjectFile { path: String, reason: String },
    #[error("{path}:{}: `{key}`: {message}", line.map_or_else(|| "?".to_owned(), |l| l.to_string()))]
    Invalid {
        path: String,
        line: Option<usize>,
        key: String,
        message: String,
    },
    #[error(
        "{path}:{}: deployment '{deployment}', schedule #{index}: {message}",
        line.map_or_else(|| "?".to_owned(), |l| l.to_string())
    )]
    Schedule {
        path: String,
        line: Option<usize>,
        deployment: String,
        /// 0-based index in the deployment's schedule list.
        index: usize,
        message: String,
    },
    #[error("{path}: no deployment matches {patterns:?}; available: {available:?}")]
    NoMatch {
        path: String,
        patterns: Vec<String>,
        available: Vec<String>,
    },
    #[error(
        "{path}: {} deployments found ({available:?}); choose with --name or pass --all",
        available.len()
    )]
    Ambiguous {
        path: String,
        available: Vec<String>,
    },
    /// A schedule given on the command line is wrong: the file is not to blame.
    #[error("{flag} {value:?}: {message}")]
    CommandLine {
        flag: &'static str,
        value: String,
        message: String,
    },
    /// More than one deployment is wrong: every one is reported, one per line.
    #[error("{} deployments have errors:\n{}", errors.len(), errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Several { errors: Vec<DeployError> },
}

/// Reads and parses a prefect.yaml.
pub fn load(path: &Path) -> Result<ProjectFile, DeployError> {
    let text = std::fs::read_to_string(path).map_err(|e| DeployError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    parse(path, &text)
}

/// Parses prefect.yaml text; `path` is used for messages and the default working directory.
pub fn parse(path: &Path, text: &str) -> Result<ProjectFile, DeployError> {
    let shown = path.display().to_string();
    let docs = yaml::load_all(text).map_err(|e| DeployError::Syntax {
        path: shown.clone(),
        line: e.pos.line,
        col: e.pos.col,
        message: e.message,
    })?;
    let not_project = |reason: String| DeployError::NotAProjectFile {
        path: shown.clone(),
        reason,
    };
    let mut docs = docs.into_iter();
    let Some((first, _)) = docs.next() else {
        return Err(not_project("the file is empty".to_owned()));
    };
    let hint = kubernetes_hint(&first.value);
    match &first.value {
        Value::Object(map) => match map.get("deployments") {
            Some(Value::Array(_)) => {}
            Some(other) => {
                return Err(not_project(format!(
                    "`deployments` must be a list of deployment entries, found {}{hint}",
                    type_name(other)
                )));
            }
            None => {
                return Err(not_project(format!("it has no `deployments` list{hint}")));
            }
        },
        other => {
            return Err(not_project(format!(
                "the top level must be a mapping with a `deployments` list, found {}",
                type_name(other)
            )));
        }
    }
    if let Some((_, start)) = docs.next() {
        // PyYAML's safe_load refuses multi-document streams.
        return Err(DeployError::Syntax {
            path: shown,
            line: start.line,
            col: start.col,
            message: "expected a single document in the stream, but found another document"
                .to_owned(),
        });
    }
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let dir = std::path::absolute(&dir).unwrap_or(dir);
    Ok(ProjectFile {
        path: path.to_path_buf(),
        dir,
        document: first.value,
        positions: first.positions,
    })
}

fn kubernetes_hint(doc: &Value) -> String {
    match (doc.get("apiVersion"), doc.get("kind")) {
        (Some(api), Some(Value::String(kind))) => format!(
            " (it looks like a Kubernetes manifest: apiVersion {}, kind {kind})",
            python_str(api)
        ),
        _ => String::new(),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Python's `fnmatch.fnmatchcase`: `*`, `?`, `[seq]`, `[!seq]`.
#[must_use]
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    glob_at(&p, &t)
}

fn glob_at(p: &[char], t: &[char]) -> bool {
    match p.first() {
        None => t.is_empty(),
        Some('*') => (0..=t.len()).any(|i| glob_at(&p[1..], &t[i..])),
        Some('?') => !t.is_empty() && glob_at(&p[1..], &t[1..]),
        Some('[') => {
            let Some(close) = p.iter().skip(2).position(|&c| c == ']').map(|i| i + 2) else {
                return t.first() == Some(&'[') && glob_at(&p[1..], &t[1..]);
            };
            let Some(&c) = t.first() else { return false };
            let (negate, set) = match p[1] {
                '!' => (true, &p[2..close]),
                _ => (false, &p[1..close]),
            };
            let mut hit = false;
            let mut i = 0;
            while i < set.len() {
                if i + 2 < set.len() && set[i + 1] == '-' {
                    hit |= set[i] <= c && c <= set[i + 2];
                    i += 3;
                } else {
                    hit |= set[i] == c;
                    i += 1;
                }
            }
            hit != negate && glob_at(&p[close + 1..], &t[1..])
        }
        Some(&c) => t.first() == Some(&c) && glob_at(&p[1..], &t[1..]),
    }
}

/// The flow name Sluice assumes for an entrypoint: the function after `:` in
/// `path/file.py:func`, or after the last `.` in `module.func`.
#[must_use]
pub fn flow_name_from_entrypoint(entrypoint: &str) -> Option<String> {
    let name = match entrypoint.rsplit_once(':') {
        Some((_, func)) => func,
        None => entrypoint.rsplit_once('.').map_or(entrypoint, |(_, f)| f),
    };
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

struct Ctx<'a> {
    file: &'a ProjectFile,
    path: String,
}

impl Ctx<'_> {
    fn invalid(&self, pointer: &str, key: &str, message: impl Into<String>) -> DeployError {
        DeployError::Invalid {
            path: self.path.clone(),
            line: self.file.line_of(pointer),
            key: key.to_owned(),
            message: message.into(),
        }
    }

    /// A top-level or deployment-level `build`/`push`/`pull`: `None` when missing or null, a
    /// single mapping wrapped into a list, an empty mapping meaning no steps.
    fn steps(
        &self,
        holder: &Value,
        pointer: &str,
        key: &str,
    ) -> Result<Option<Vec<Value>>, DeployError> {
        let here = format!("{pointer}/{key}");
        match holder.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    if !item.is_object() {
                        return Err(self.invalid(
                            &format!("{here}/{i}"),
                            key,
                            format!(
                                "step #{i} must be a mapping {{function: {{inputs}}}}, found {}",
                                type_name(item)
                            ),
                        ));
                    }
                }
                Ok(Some(items.clone()))
            }
            Some(Value::Object(map)) if map.is_empty() => Ok(Some(Vec::new())),
            Some(v @ Value::Object(_)) => Ok(Some(vec![v.clone()])),
            Some(other) => Err(self.invalid(
                &here,
                key,
                format!("must be a list of steps, found {}", type_name(other)),
            )),
        }
    }
}

/// Steps whose shape Prefect would refuse when running them (not one key, or inputs that are
/// not a mapping). Prefect stores them at deploy time and fails at run time; we warn.
fn step_shape_warnings(section: &str, steps: &[Value], warnings: &mut Vec<String>) {
    for (i, step) in steps.iter().enumerate() {
        if let Some(map) = step.as_object() {
            let ok = map.len() == 1 && map.values().all(|v| v.is_object() || v.is_null());
            if !ok {
                warnings.push(format!(
                    "{section} step #{i} is not of the form {{fully.qualified.function: {{inputs}}}}; Prefect stores it but fails when it runs"
                ));
            }
        }
    }
}

/// Plans every selected deployment of `file`. `env` answers `{{ $NAME }}` and `{{ NAME }}`.
pub fn plan(
    file: &ProjectFile,
    opts: &DeployOptions,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<PlannedDeployment>, DeployError> {
    let ctx = Ctx {
        file,
        path: file.path.display().to_string(),
    };
    let doc = &file.document;
    let top_build = ctx.steps(doc, "", "build")?;
    let top_push = ctx.steps(doc, "", "push")?;
    let top_pull = ctx.steps(doc, "", "pull")?;

    let entries = file.deployments();
    let mut selected = Vec::new();
    let available = file.deployment_names();
    for (i, entry) in entries.iter().enumerate() {
        let pointer = format!("/deployments/{i}");
        let Value::Object(map) = entry else {
            return Err(ctx.invalid(
                &pointer,
                "deployments",
                format!("entry #{i} must be a mapping, found {}", type_name(entry)),
            ));
        };
        let name = match map.get("name") {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            None | Some(Value::Null) => None,
            Some(Value::String(_)) => None,
            Some(other) => {
                return Err(ctx.invalid(
                    &format!("{pointer}/name"),
                    "name",
                    format!("must be a string, found {}", type_name(other)),
                ));
            }
        };
        let flow = flow_name_of(map);
        // Prefect's `deploy --all` skips an entry without a name (with a notice, which the CLI
        // prints from `unnamed_entries`) rather than failing the file.
        if opts.all && map.get("name").is_none_or(Value::is_null) {
            continue;
        }
        let chosen = if !opts.names.is_empty() && !opts.all {
            name.as_ref().is_some_and(|n| {
                opts.names.iter().any(|p| {
                    glob_match(p, n)
                        || flow
                            .as_ref()
                            .is_some_and(|f| glob_match(p, &format!("{f}/{n}")))
                })
            })
        } else {
            true
        };
        if chosen {
            selected.push((i, name));
        }
    }
    if !opts.names.is_empty() && !opts.all && selected.is_empty() {
        return Err(DeployError::NoMatch {
            path: ctx.path.clone(),
            patterns: opts.names.clone(),
            available,
        });
    }
    if opts.names.is_empty() && !opts.all && selected.len() > 1 {
        return Err(DeployError::Ambiguous {
            path: ctx.path.clone(),
            available,
        });
    }
    if selected.is_empty() {
        return Err(ctx.invalid("/deployments", "deployments", "the list is empty"));
    }

    check_command_line_schedules(&ctx, opts)?;

    // Every selected entry is planned, so one run of `deploy --all` reports every bad entry.
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (i, name) in selected {
        let pointer = format!("/deployments/{i}");
        let Some(name) = name else {
            // Prefect prompts for a name; with --no-prompt it stops with
            // "A deployment name must be provided."
            errors.push(ctx.invalid(
                &pointer,
                "name",
                format!(
                    "deployment #{i} has no name (Prefect: 'A deployment name must be provided.')"
                ),
            ));
            continue;
        };
        match plan_one(
            &ctx,
            &entries[i],
            &pointer,
            &name,
            opts,
            env,
            (&top_build, &top_push, &top_pull),
        ) {
            Ok(planned) => out.push(planned),
            Err(e) => errors.push(e),
        }
    }
    match errors.len() {
        0 => Ok(out),
        1 => Err(errors.remove(0)),
        _ => Err(DeployError::Several { errors }),
    }
}

/// `--cron`, `--interval` and `--rrule` (with `--timezone` / `--anchor-date`) are checked once,
/// before any entry: a bad one is the command line's fault, not a line of the file's, and
/// would otherwise be reported once per deployment.
fn check_command_line_schedules(ctx: &Ctx<'_>, opts: &DeployOptions) -> Result<(), DeployError> {
    let with_timezone = |mut item: Value| {
        if let Some(tz) = &opts.timezone {
            item["timezone"] = Value::String(tz.clone());
        }
        item
    };
    let mut given: Vec<(&'static str, String, Value)> = Vec::new();
    for c in &opts.cron {
        given.push(("--cron", c.clone(), with_timezone(json!({"cron": c}))));
    }
    for s in &opts.interval {
        let mut item = with_timezone(json!({"interval": s}));
        if let Some(anchor) = &opts.anchor_date {
            item["anchor_date"] = Value::String(anchor.clone());
        }
        given.push(("--interval", s.to_string(), item));
    }
    for r in &opts.rrule {
        given.push(("--rrule", r.clone(), with_timezone(json!({"rrule": r}))));
    }
    for (flag, value, item) in given {
        schedule_body(ctx, "", 0, &item, "", &mut Vec::new()).map_err(|e| match e {
            DeployError::Schedule { message, .. } => DeployError::CommandLine {
                flag,
                value: value.clone(),
                message,
            },
            other => other,
        })?;
    }
    Ok(())
}

fn flow_name_of(map: &Map<String, Value>) -> Option<String> {
    match map.get("flow_name") {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => map
            .get("entrypoint")
            .and_then(Value::as_str)
            .and_then(flow_name_from_entrypoint),
    }
}

const KNOWN_KEYS: [&str; 21] = [
    "name",
    "version",
    "version_type",
    "tags",
    "description",
    "schedule",
    "schedules",
    "paused",
    "concurrency_limit",
    "flow_name",
    "entrypoint",
    "parameters",
    "enforce_parameter_schema",
    "build",
    "push",
    "pull",
    "work_pool",
    "triggers",
    "sla",
    "parameter_openapi_schema",
    "_sla",
];

type TopSteps<'a> = (
    &'a Option<Vec<Value>>,
    &'a Option<Vec<Value>>,
    &'a Option<Vec<Value>>,
);

/// The values `apply_values(config, os.environ)` sees for plain `{{ NAME }}` placeholders.
fn env_values(config: &Value, env: &dyn Fn(&str) -> Option<String>) -> Map<String, Value> {
    let mut values = Map::new();
    for p in find_placeholders(config) {
        if p.kind == PlaceholderKind::Standard
            && !p.name.contains(['.', '['])
            && let Some(v) = env(&p.name)
        {
            values.insert(p.name, Value::String(v));
        }
    }
    values
}

fn unresolved_warnings(value: &Value, warnings: &mut Vec<String>) {
    let mut seen = Vec::new();
    for p in find_placeholders(value) {
        if seen.contains(&p.name) {
            continue;
        }
        seen.push(p.name.clone());
        let why = match p.kind {
            PlaceholderKind::BlockDocument => "block reference, resolved by the API at deploy time",
            PlaceholderKind::Variable => "variable reference, resolved by the API at deploy time",
            PlaceholderKind::EnvVar => "environment variable not set",
            PlaceholderKind::Standard if p.name.starts_with("ctx.") => continue,
            PlaceholderKind::Standard => {
                "not in the environment; a build/push step output or a run-time value"
            }
        };
        warnings.push(format!("{{{{ {} }}}} left as is: {why}", p.name));
    }
}

#[allow(clippy::too_many_lines)]
fn plan_one(
    ctx: &Ctx<'_>,
    entry: &Value,
    pointer: &str,
    name: &str,
    opts: &DeployOptions,
    env: &dyn Fn(&str) -> Option<String>,
    (top_build, top_push, top_pull): TopSteps<'_>,
) -> Result<PlannedDeployment, DeployError> {
    let mut warnings = Vec::new();
    let Value::Object(original) = entry else {
        return Err(ctx.invalid(pointer, "deployments", "entry must be a mapping"));
    };
    for key in original.keys() {
        if !KNOWN_KEYS.contains(&key.as_str()) {
            warnings.push(format!(
                "key `{key}` is not a deployment setting; ignored (as Prefect does)"
            ));
        }
    }
    let at = |key: &str| format!("{pointer}/{key}");

    // 1. Legacy `schedule`: truthy together with `schedules` (present, even null) is an error.
    let mut config = original.clone();
    let legacy = config.get("schedule").cloned().unwrap_or(Value::Null);
    let legacy_truthy = match &legacy {
        Value::Null => false,
        Value::Object(m) => !m.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::String(s) => !s.is_empty(),
        Value::Bool(b) => *b,
        Value::Number(_) => true,
    };
    if legacy_truthy && config.contains_key("schedules") {
        return Err(ctx.invalid(
            &at("schedule"),
            "schedule",
            "both 'schedule' and 'schedules' are set; use only 'schedules' (Prefect refuses this too)",
        ));
    }
    if legacy_truthy {
        if !legacy.is_object() {
            return Err(ctx.invalid(
                &at("schedule"),
                "schedule",
                format!("must be a mapping, found {}", type_name(&legacy)),
            ));
        }
        config.insert("schedules".to_owned(), Value::Array(vec![legacy]));
    }
    config.remove("schedule");
    // Positions of schedule items: under `schedules`, or the legacy `schedule` key.
    let schedule_pointer = |i: usize| {
        if legacy_truthy {
            at("schedule")
        } else {
            format!("{}/{i}", at("schedules"))
        }
    };

    // Section precedence: deployment-level steps replace the top-level ones.
    let build = ctx
        .steps(entry, pointer, "build")?
        .or_else(|| top_build.clone());
    let push = ctx
        .steps(entry, pointer, "push")?
        .or_else(|| top_push.clone());
    let pull = ctx
        .steps(entry, pointer, "pull")?
        .or_else(|| top_pull.clone());
    config.remove("build");
    config.remove("push");
    let build = build.unwrap_or_default();
    let push = push.unwrap_or_default();
    let pull = match pull {
        Some(steps) => steps,
        None => {
            // Prefect's default: the cwd, or /opt/prefect/<dir> when a Docker image is built.
            let docker = build.iter().any(|s| {
                s.as_object()
                    .is_some_and(|m| m.keys().any(|k| k.ends_with("build_docker_image")))
            });
            let dir = if docker {
                let base = ctx
                    .file
                    .dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                format!("/opt/prefect/{base}")
            } else {
                ctx.file.dir.display().to_string()
            };
            vec![json!({"prefect.deployments.steps.set_working_directory": {"directory": dir}})]
        }
    };
    step_shape_warnings("pull", &pull, &mut warnings);
    config.insert("pull".to_owned(), Value::Array(pull));

    // Defaults of the work pool, then CLI overrides.
    let mut work_pool = match config.get("work_pool") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(other) => {
            return Err(ctx.invalid(
                &at("work_pool"),
                "work_pool",
                format!(
                    "must be a mapping {{name, work_queue_name, job_variables}}, found {}",
                    type_name(other)
                ),
            ));
        }
    };
    for key in work_pool.keys() {
        if !matches!(key.as_str(), "name" | "work_queue_name" | "job_variables") {
            warnings.push(format!(
                "key `work_pool.{key}` is not a work pool setting; ignored"
            ));
        }
    }
    if let Some(pool) = &opts.pool {
        work_pool.insert("name".to_owned(), Value::String(pool.clone()));
    }
    if let Some(queue) = &opts.work_queue {
        work_pool.insert("work_queue_name".to_owned(), Value::String(queue.clone()));
    }
    let mut job_variables = match work_pool.get("job_variables") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(other) => {
            return Err(ctx.invalid(
                &format!("{}/job_variables", at("work_pool")),
                "work_pool.job_variables",
                format!("must be a mapping, found {}", type_name(other)),
            ));
        }
    };
    for (k, v) in &opts.job_variables {
        job_variables.insert(k.clone(), v.clone());
    }
    work_pool.insert("job_variables".to_owned(), Value::Object(job_variables));
    config.insert("work_pool".to_owned(), Value::Object(work_pool));

    // Parameters, then --param.
    let mut parameters = match config.get("parameters") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(other) => {
            return Err(ctx.invalid(
                &at("parameters"),
                "parameters",
                format!("must be a mapping, found {}", type_name(other)),
            ));
        }
    };
    for (k, v) in &opts.params {
        parameters.insert(k.clone(), v.clone());
    }
    config.insert("parameters".to_owned(), Value::Object(parameters));

    // Schedules from the file, then --cron/--interval/--rrule appended.
    let mut schedules = match config.get("schedules") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(other) => {
            return Err(ctx.invalid(
                &at("schedules"),
                "schedules",
                format!("must be a list of schedules, found {}", type_name(other)),
            ));
        }
    };
    let from_file = schedules.len();
    schedules.extend(opts.cron.iter().map(|c| json!({"cron": c})));
    schedules.extend(opts.interval.iter().map(|s| json!({"interval": s})));
    schedules.extend(opts.rrule.iter().map(|r| json!({"rrule": r})));
    for item in &mut schedules {
        if let Value::Object(m) = item {
            if let Some(tz) = &opts.timezone {
                m.insert("timezone".to_owned(), Value::String(tz.clone()));
            }
            if let Some(anchor) = &opts.anchor_date
                && m.get("interval").is_some_and(|v| !v.is_null())
            {
                m.insert("anchor_date".to_owned(), Value::String(anchor.clone()));
            }
        }
    }
    config.insert("schedules".to_owned(), Value::Array(schedules));

    // 4. Templating from the environment (remove_notset=false, ctx.* preserved). Triggers keep
    // their `parameters` untemplated, so they are taken out first.
    let triggers = match config.remove("triggers") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a,
        Some(other) => vec![other],
    };
    let config_value = Value::Object(config);
    let values = env_values(&config_value, env);
    let env_source = |n: &str| env(n);
    let apply = ApplyOptions {
        remove_notset: false,
        skip_prefixes: vec!["ctx.".into()],
        env: &env_source,
    };
    let templated = apply_values(&config_value, &values, &apply);
    unresolved_warnings(&templated, &mut warnings);
    let Value::Object(config) = templated else {
        return Err(ctx.invalid(pointer, "deployments", "entry must be a mapping"));
    };

    // Body fields. The name may itself be templated (`name: "{{ $ENV }}"`); selection used
    // the name as written, as Prefect matches --name against the file.
    let name = match config.get("name") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => name.to_owned(),
    };
    let name = name.as_str();
    let text_field = |key: &str| -> Result<Value, DeployError> {
        match config.get(key) {
            None | Some(Value::Null) => Ok(Value::Null),
            Some(Value::String(s)) => Ok(Value::String(s.clone())),
            Some(v @ (Value::Number(_) | Value::Bool(_))) => Ok(Value::String(python_str(v))),
            Some(other) => Err(ctx.invalid(
                &at(key),
                key,
                format!("must be a string, found {}", type_name(other)),
            )),
        }
    };
    let version = text_field("version")?;
    let description = text_field("description")?;
    let entrypoint = match text_field("entrypoint")? {
        Value::String(s) if !s.is_empty() => s,
        _ => {
            return Err(ctx.invalid(
                &at("entrypoint"),
                "entrypoint",
                format!("deployment '{name}' has no entrypoint (path/file.py:function or module.function)"),
            ));
        }
    };
    let flow_name = match text_field("flow_name")? {
        Value::String(s) if !s.is_empty() => s,
        _ => {
            let derived = flow_name_from_entrypoint(&entrypoint).ok_or_else(|| {
                ctx.invalid(
                    &at("entrypoint"),
                    "entrypoint",
                    "no function name in the entrypoint",
                )
            })?;
            warnings.push(format!(
                "flow name '{derived}' taken from the entrypoint's function name; set `flow_name` if the flow is renamed with @flow(name=...)"
            ));
            derived
        }
    };

    let tags = match config.get("tags") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|t| match t {
                Value::String(s) => Value::String(s.clone()),
                other => Value::String(python_str(other)),
            })
            .collect(),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Array(items)) => items,
            _ if s.contains("{{") => vec![Value::String(s.clone())],
            _ => {
                return Err(ctx.invalid(
                    &at("tags"),
                    "tags",
                    "a string must template into a list of tags",
                ));
            }
        },
        Some(other) => {
            return Err(ctx.invalid(
                &at("tags"),
                "tags",
                format!("must be a list, found {}", type_name(other)),
            ));
        }
    };

    let bool_field = |key: &str, default: bool| -> Result<bool, DeployError> {
        match config.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(ctx.invalid(
                &at(key),
                key,
                format!("must be true or false, found {}", type_name(other)),
            )),
        }
    };
    let paused = bool_field("paused", false)?;
    let enforce = bool_field("enforce_parameter_schema", true)?;

    let (concurrency_limit, concurrency_options) =
        concurrency(ctx, &config, &at("concurrency_limit"))?;

    let work_pool = config.get("work_pool").cloned().unwrap_or(Value::Null);
    let pool_name = match work_pool.get("name") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => {
            // Prefect: "A work pool is required to deploy this flow. Please specify a work pool
            // name via the '--pool' flag or in your prefect.yaml file."
            return Err(ctx.invalid(
                &format!("{}/name", at("work_pool")),
                "work_pool.name",
                format!("deployment '{name}' has no work pool; give work_pool.name or --pool"),
            ));
        }
    };
    let queue = work_pool
        .get("work_queue_name")
        .cloned()
        .unwrap_or(Value::Null);
    let job_variables = work_pool
        .get("job_variables")
        .cloned()
        .unwrap_or_else(|| json!({}));

    let mut schedule_bodies = Vec::new();
    if let Some(Value::Array(items)) = config.get("schedules") {
        for (index, item) in items.iter().enumerate() {
            let ptr = if index < from_file {
                schedule_pointer(index)
            } else {
                at("schedules")
            };
            schedule_bodies.push(schedule_body(ctx, name, index, item, &ptr, &mut warnings)?);
        }
    }

    let pull_steps = config.get("pull").cloned().unwrap_or_else(|| json!([]));
    let body = json!({
        "name": name,
        "work_pool_name": pool_name,
        "work_queue_name": queue,
        "job_variables": job_variables,
        "version": version,
        "paused": paused,
        "schedules": schedule_bodies,
        "concurrency_limit": concurrency_limit,
        "concurrency_options": concurrency_options,
        "parameters": config.get("parameters").cloned().unwrap_or_else(|| json!({})),
        "description": description,
        "tags": tags,
        "path": null,
        "entrypoint": entrypoint,
        "pull_steps": pull_steps,
        "storage_document_id": null,
        "infrastructure_document_id": null,
        "parameter_openapi_schema": {"type": "object", "properties": {}},
        "enforce_parameter_schema": enforce,
    });
    Ok(PlannedDeployment {
        name: name.to_owned(),
        flow_name: Some(flow_name),
        entrypoint: Some(entrypoint),
        body,
        build_steps: build,
        push_steps: push,
        triggers,
        warnings,
    })
}

fn concurrency(
    ctx: &Ctx<'_>,
    config: &Map<String, Value>,
    pointer: &str,
) -> Result<(Value, Value), DeployError> {
    let key = "concurrency_limit";
    match config.get(key) {
        None | Some(Value::Null) => Ok((Value::Null, Value::Null)),
        Some(Value::Number(n)) if n.as_u64().is_some() => Ok((Value::Number(n.clone()), Value::Null)),
        Some(Value::Object(m)) => {
            let limit = match m.get("limit") {
                Some(Value::Number(n)) if n.as_u64().is_some() => Value::Number(n.clone()),
                other => {
                    return Err(ctx.invalid(
                        &format!("{pointer}/limit"),
                        "concurrency_limit.limit",
                        format!(
                            "must be a non-negative integer, found {}",
                            other.map_or("nothing", type_name)
                        ),
                    ));
                }
            };
            let strategy = match m.get("collision_strategy") {
                None | Some(Value::Null) => "ENQUEUE".to_owned(),
                Some(Value::String(s)) if matches!(s.as_str(), "ENQUEUE" | "CANCEL_NEW") => s.clone(),
                Some(other) => {
                    return Err(ctx.invalid(
                        &format!("{pointer}/collision_strategy"),
                        "concurrency_limit.collision_strategy",
                        format!("must be ENQUEUE or CANCEL_NEW, found {}", python_str(other)),
                    ));
                }
            };
            let mut options = json!({"collision_strategy": strategy});
            match m.get("grace_period_seconds") {
                None | Some(Value::Null) => {}
                Some(Value::Number(n)) if n.as_u64().is_some_and(|s| (60..=86_400).contains(&s)) => {
                    options["grace_period_seconds"] = Value::Number(n.clone());
                }
                Some(other) => {
                    return Err(ctx.invalid(
                        &format!("{pointer}/grace_period_seconds"),
                        "concurrency_limit.grace_period_seconds",
                        format!("must be an integer from 60 to 86400, found {}", python_str(other)),
                    ));
                }
            }
            Ok((limit, options))
        }
        Some(other) => Err(ctx.invalid(
            pointer,
            key,
            format!(
                "must be an integer or {{limit, collision_strategy, grace_period_seconds}}, found {}",
                python_str(other)
            ),
        )),
    }
}

/// A schedule item (`RawScheduleConfig`) → `{schedule, active, parameters, slug}`.
fn schedule_body(
    ctx: &Ctx<'_>,
    deployment: &str,
    index: usize,
    item: &Value,
    pointer: &str,
    warnings: &mut Vec<String>,
) -> Result<Value, DeployError> {
    let fail = |message: String| DeployError::Schedule {
        path: ctx.path.clone(),
        line: ctx.file.line_of(pointer),
        deployment: deployment.to_owned(),
        index,
        message,
    };
    let Value::Object(m) = item else {
        return Err(fail(format!(
            "must be a mapping, found {}",
            type_name(item)
        )));
    };
    let given = |k: &str| m.get(k).filter(|v| !v.is_null());
    let kinds: Vec<&str> = ["cron", "interval", "rrule"]
        .into_iter()
        .filter(|k| given(k).is_some())
        .collect();
    let kind = match kinds.as_slice() {
        [one] => *one,
        [] => {
            return Err(fail(
                "needs one of 'cron', 'interval' or 'rrule'".to_owned(),
            ));
        }
        _ => {
            return Err(fail(format!(
                "has more than one of {kinds:?}; give exactly one"
            )));
        }
    };
    for key in m.keys() {
        if !matches!(
            key.as_str(),
            "cron"
                | "interval"
                | "rrule"
                | "timezone"
                | "anchor_date"
                | "day_or"
                | "active"
                | "parameters"
                | "slug"
                | "replaces"
                | "max_scheduled_runs"
        ) {
            warnings.push(format!(
                "schedule #{index}: key `{key}` is not a schedule setting; ignored"
            ));
        }
    }
    let mut schedule = Map::new();
    let copy = |k: &str, schedule: &mut Map<String, Value>| {
        if let Some(v) = given(k) {
            schedule.insert(k.to_owned(), v.clone());
        }
    };
    match kind {
        "cron" => {
            copy("cron", &mut schedule);
            copy("timezone", &mut schedule);
            copy("day_or", &mut schedule);
        }
        "interval" => {
            let seconds = match given("interval") {
                Some(Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
                Some(Value::String(s)) => {
                    parse_interval_seconds(s).map_err(|e| fail(e.to_string()))?
                }
                Some(other) => {
                    return Err(fail(format!(
                        "interval must be seconds, found {}",
                        type_name(other)
                    )));
                }
                None => f64::NAN,
            };
            schedule.insert("interval".to_owned(), json!(seconds));
            copy("anchor_date", &mut schedule);
            copy("timezone", &mut schedule);
        }
        _ => {
            // An rrule may be a JSON string of {rrule, timezone}.
            let parsed = given("rrule")
                .and_then(Value::as_str)
                .and_then(|s| serde_json::from_str::<Value>(s).ok())
                .and_then(|v| v.as_object().cloned())
                .filter(|o| o.contains_key("rrule"));
            match parsed {
                Some(obj) => schedule.extend(obj),
                None => {
                    copy("rrule", &mut schedule);
                    copy("timezone", &mut schedule);
                }
            }
        }
    }
    let schedule = Value::Object(schedule);
    let parsed = Schedule::from_json(&schedule).map_err(|e| fail(e.to_string()))?;
    parsed.validate().map_err(|e| fail(e.to_string()))?;
    let active = match m.get("active") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(fail(format!(
                "active must be true or false, found {}",
                type_name(other)
            )));
        }
    };
    let parameters = match m.get("parameters") {
        None | Some(Value::Null) => json!({}),
        Some(v @ Value::Object(_)) => v.clone(),
        Some(other) => {
            return Err(fail(format!(
                "parameters must be a mapping, found {}",
                type_name(other)
            )));
        }
    };
    let mut body = json!({
        "schedule": parsed.to_json(),
        "active": active,
        "parameters": parameters,
        "slug": m.get("slug").cloned().unwrap_or(Value::Null),
    });
    if let Some(replaces) = given("replaces") {
        body["replaces"] = replaces.clone();
    }
    Ok(body)
}
