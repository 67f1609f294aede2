//! A prepared AWS Batch job configuration (Sluice's `batch` template) → the job definition to
//! register or reuse and the SubmitJob request.

use serde_json::{Map, Value, json};

use super::{
    ATTEMPT_TAG, DEFAULT_IMAGE, PlanError, RUN_ID_TAG, RunFacts, env_list, keep_chars,
    non_empty_str, plan_error, prune, split_command,
};

pub const DEFAULT_VCPUS: &str = "1";
pub const DEFAULT_MEMORY: &str = "2048";
const MAX_TAGS: usize = 50;
/// Batch job names are at most 128 characters; the run id and a separator take 37.
const NAME_PREFIX_MAX: usize = 91;

/// Where the job definition comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum JobDefinition {
    /// An ARN or `name[:revision]` given by the configuration.
    Existing(String),
    /// RegisterJobDefinition's body (without tags), unless an ACTIVE revision of `name` tagged
    /// with the same `hash` exists.
    Register {
        name: String,
        body: Map<String, Value>,
        hash: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct BatchPlan {
    pub job_definition: JobDefinition,
    /// SubmitJob's body in the Batch API's JSON shape, except `jobDefinition`. Batch has no
    /// client token: `jobName` ends with the run id and the tags carry it, so an earlier
    /// submission can be found (ListJobs by name) before a second one is made.
    pub submit_job: Map<String, Value>,
}

impl BatchPlan {
    #[must_use]
    pub fn job_name(&self) -> &str {
        self.submit_job
            .get("jobName")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    #[must_use]
    pub fn job_queue(&self) -> &str {
        self.submit_job
            .get("jobQueue")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }
}

/// The job name Sluice gives a run's job: the configured name made valid for Batch (letters,
/// digits, `-` and `_`, starting with a letter or digit), then `_<run id>`.
#[must_use]
pub fn job_name(name: &str, run_id: &str) -> String {
    let mut prefix = String::new();
    for c in name.chars() {
        let ok = c.is_ascii_alphanumeric() || c == '-' || c == '_';
        if prefix.is_empty() && !c.is_ascii_alphanumeric() {
            continue;
        }
        prefix.push(if ok { c } else { '-' });
    }
    let prefix: String = prefix.chars().take(NAME_PREFIX_MAX).collect();
    let prefix = if prefix.is_empty() {
        "flow-run"
    } else {
        &prefix
    };
    format!("{prefix}_{run_id}")
}

/// Builds the plan from a configuration already passed through
/// [`super::prepare_for_flow_run`].
///
/// # Errors
/// A configuration that cannot make a valid request, with the offending path.
pub fn plan(config: &Value, facts: &RunFacts<'_>) -> Result<BatchPlan, PlanError> {
    let cfg = config
        .as_object()
        .ok_or_else(|| plan_error("", "the job configuration is not an object"))?;
    let mut request = match cfg.get("submit_job_request") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err(plan_error("submit_job_request", "must be an object")),
    };
    if non_empty_str(request.get("jobQueue")).is_none() {
        return Err(plan_error(
            "submit_job_request.jobQueue",
            "no job queue: set the job_queue job variable (a Batch job queue name or ARN)",
        ));
    }
    let existing = non_empty_str(request.get("jobDefinition")).map(str::to_owned);
    request.remove("jobDefinition");
    let job_definition = match existing {
        Some(arn) => JobDefinition::Existing(arn),
        None => {
            let (name, body) = job_definition(cfg, facts)?;
            let hash = super::content_hash(&Value::Object(body.clone()));
            JobDefinition::Register { name, body, hash }
        }
    };

    let run_id = facts.run.id.to_string();
    let base_name = non_empty_str(request.get("jobName"))
        .or_else(|| non_empty_str(cfg.get("name")))
        .unwrap_or(&facts.run.name)
        .to_owned();
    request.insert(
        "jobName".to_owned(),
        Value::from(job_name(&base_name, &run_id)),
    );

    let mut overrides = match request.remove("containerOverrides") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => {
            return Err(plan_error(
                "submit_job_request.containerOverrides",
                "must be an object",
            ));
        }
    };
    if let Some(cmd) = cfg.get("command").filter(|v| !v.is_null()) {
        overrides.insert("command".to_owned(), cmd.clone());
    }
    if let Some(env) = cfg.get("env") {
        overrides.insert("environment".to_owned(), env.clone());
    }
    let path = "submit_job_request.containerOverrides";
    match split_command(
        &format!("{path}.command"),
        overrides.get("command").unwrap_or(&Value::Null),
    )? {
        Some(parts) => overrides.insert("command".to_owned(), Value::Array(parts)),
        None => overrides.remove("command"),
    };
    let env = env_list(
        &format!("{path}.environment"),
        overrides.get("environment").unwrap_or(&Value::Null),
    )?;
    overrides.insert("environment".to_owned(), Value::Array(env));
    if matches!(job_definition, JobDefinition::Register { .. }) {
        // The registered definition already holds exactly these values.
        overrides.remove("resourceRequirements");
    } else {
        let reqs = resource_requirements(
            &format!("{path}.resourceRequirements"),
            overrides.get("resourceRequirements"),
        )?;
        if reqs.is_empty() {
            overrides.remove("resourceRequirements");
        } else {
            overrides.insert("resourceRequirements".to_owned(), Value::Array(reqs));
        }
    }
    request.insert("containerOverrides".to_owned(), Value::Object(overrides));

    for (outer, inner) in [
        ("retryStrategy", "attempts"),
        ("timeout", "attemptDurationSeconds"),
        ("arrayProperties", "size"),
    ] {
        if let Some(v) = request
            .get(outer)
            .and_then(|o| o.get(inner))
            .filter(|v| !v.is_null())
        {
            let n = whole_number(v).ok_or_else(|| {
                plan_error(
                    format!("submit_job_request.{outer}.{inner}"),
                    "must be a whole number",
                )
            })?;
            request.insert(outer.to_owned(), json!({ inner: n }));
        } else {
            request.remove(outer);
        }
    }
    if let Some(v) = request
        .get("schedulingPriorityOverride")
        .filter(|v| !v.is_null())
    {
        let n = whole_number(v).ok_or_else(|| {
            plan_error(
                "submit_job_request.schedulingPriorityOverride",
                "must be a whole number",
            )
        })?;
        request.insert("schedulingPriorityOverride".to_owned(), Value::from(n));
    }

    let mut tags = Map::new();
    let mut add = |k: &str, v: &Value| {
        if !v.is_null() {
            let v = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            tags.insert(tag_part(k, 128), Value::from(tag_part(&v, 256)));
        }
    };
    if let Some(Value::Object(given)) = request.get("tags") {
        for (k, v) in given {
            add(k, v);
        }
    }
    if let Some(Value::Object(labels)) = cfg.get("labels") {
        for (k, v) in labels {
            add(k, v);
        }
    }
    tags.insert(RUN_ID_TAG.to_owned(), Value::from(run_id));
    tags.insert(
        ATTEMPT_TAG.to_owned(),
        Value::from(facts.attempt.to_string()),
    );
    tags.retain(|k, _| !k.is_empty());
    if tags.len() > MAX_TAGS {
        return Err(plan_error(
            "labels",
            format!(
                "Batch allows {MAX_TAGS} tags on a job; these labels make {}",
                tags.len()
            ),
        ));
    }
    request.insert("tags".to_owned(), Value::Object(tags));

    let mut request = Value::Object(request);
    prune(&mut request);
    let Value::Object(submit_job) = request else {
        unreachable!("pruning keeps an object an object")
    };
    Ok(BatchPlan {
        job_definition,
        submit_job,
    })
}

fn whole_number(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Batch tag keys and values: letters, digits, spaces and `+-=._:/@`; others become `_`.
fn tag_part(s: &str, max: usize) -> String {
    s.chars()
        .map(|c| {
            if c.is_alphanumeric() || " +-=._:/@".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(max)
        .collect()
}

/// `[{type, value}]` with unset values dropped and the rest as strings.
fn resource_requirements(path: &str, given: Option<&Value>) -> Result<Vec<Value>, PlanError> {
    let items = match given {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(plan_error(path, "must be a list")),
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let Some(kind) = item.get("type").and_then(Value::as_str) else {
            return Err(plan_error(format!("{path}[{i}]"), "needs a type"));
        };
        let value = match item.get("value") {
            None | Some(Value::Null) => continue,
            Some(Value::String(s)) if s.is_empty() => continue,
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            Some(_) => return Err(plan_error(format!("{path}[{i}].value"), "must be a number")),
        };
        out.push(json!({ "type": kind, "value": value }));
    }
    Ok(out)
}

/// The definition to register: named per pool and deployment as Prefect names ECS families.
fn job_definition(
    cfg: &Map<String, Value>,
    facts: &RunFacts<'_>,
) -> Result<(String, Map<String, Value>), PlanError> {
    let mut jd = match cfg.get("job_definition") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err(plan_error("job_definition", "must be an object")),
    };
    let name = non_empty_str(jd.get("jobDefinitionName"))
        .map(str::to_owned)
        .unwrap_or_else(|| format!("prefect_{}_{}", facts.pool_name, facts.owner_id()));
    let name = keep_chars(
        &name,
        |c| c.is_ascii_alphanumeric() || c == '-' || c == '_',
        128,
    );
    if name.is_empty() {
        return Err(plan_error(
            "job_definition.jobDefinitionName",
            "no valid characters left",
        ));
    }
    jd.insert("jobDefinitionName".to_owned(), Value::from(name.as_str()));
    if non_empty_str(jd.get("type")).is_none() {
        jd.insert("type".to_owned(), Value::from("container"));
    }
    let mut props = match jd.remove("containerProperties") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => {
            return Err(plan_error(
                "job_definition.containerProperties",
                "must be an object",
            ));
        }
    };
    if non_empty_str(props.get("image")).is_none() {
        props.insert("image".to_owned(), Value::from(DEFAULT_IMAGE));
    }
    let mut reqs = resource_requirements(
        "job_definition.containerProperties.resourceRequirements",
        props.get("resourceRequirements"),
    )?;
    for (kind, default) in [("VCPU", DEFAULT_VCPUS), ("MEMORY", DEFAULT_MEMORY)] {
        if !reqs.iter().any(|r| r["type"] == kind) {
            reqs.push(json!({ "type": kind, "value": default }));
        }
    }
    props.insert("resourceRequirements".to_owned(), Value::Array(reqs));
    jd.insert("containerProperties".to_owned(), Value::Object(props));
    let mut jd = Value::Object(jd);
    prune(&mut jd);
    if let Some(caps) = jd
        .get_mut("platformCapabilities")
        .and_then(Value::as_array_mut)
    {
        caps.retain(|c| c.as_str().is_some_and(|s| !s.is_empty()));
    }
    let Value::Object(jd) = jd else {
        unreachable!("pruning keeps an object an object")
    };
    Ok((name, jd))
}
