//! A prepared ECS job configuration (Prefect's ECS template, §2.7 of the reference) → the task
//! definition to register or reuse and the RunTask request, following the ECS worker's rules.

use serde_json::{Map, Value, json};

use super::{
    ATTEMPT_TAG, DEFAULT_IMAGE, PlanError, RUN_ID_TAG, RunFacts, env_list, keep_chars,
    non_empty_str, plan_error, prune, split_command,
};

pub const DEFAULT_CONTAINER_NAME: &str = "prefect";
pub const DEFAULT_CPU: i64 = 1024;
pub const DEFAULT_MEMORY: i64 = 2048;
const MAX_TAGS: usize = 50;
/// Variables a task can take from Secrets Manager instead of its environment, and the
/// configuration keys naming their secrets.
const SECRET_VARIABLES: [(&str, &str); 2] = [
    ("PREFECT_API_KEY", "prefect_api_key_secret_arn"),
    (
        "PREFECT_API_AUTH_STRING",
        "prefect_api_auth_string_secret_arn",
    ),
];

/// Where the task definition comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskDefinition {
    /// An ARN or `family[:revision]` given by the configuration: used as it is.
    Existing(String),
    /// A definition to register (RegisterTaskDefinition's body, without tags), unless an
    /// ACTIVE revision of `family` tagged with the same `hash` exists.
    Register {
        family: String,
        body: Map<String, Value>,
        hash: String,
    },
}

/// Everything the adapter sends for one run.
#[derive(Debug, Clone, PartialEq)]
pub struct EcsPlan {
    pub task_definition: TaskDefinition,
    /// RunTask's body in the ECS API's JSON shape, except `taskDefinition`, which the adapter
    /// fills with the registered or reused ARN. Carries `clientToken` (the attempt) and
    /// `startedBy` (the run id), so a repeated call starts no second task and the task can be
    /// found again.
    pub run_task: Map<String, Value>,
    /// The container that runs the flow (its exit code decides the run's end).
    pub container_name: String,
}

impl EcsPlan {
    #[must_use]
    pub fn cluster(&self) -> Option<&str> {
        self.run_task.get("cluster").and_then(Value::as_str)
    }
}

/// Prefect's infrastructure id for an ECS task: `<cluster>::<task ARN>`.
#[must_use]
pub fn infrastructure_id(cluster: &str, task_arn: &str) -> String {
    format!("{cluster}::{task_arn}")
}

/// Splits an infrastructure id back into cluster and task ARN.
#[must_use]
pub fn parse_infrastructure_id(id: &str) -> Option<(&str, &str)> {
    let (cluster, task) = id.split_once("::")?;
    (!task.is_empty()).then_some((cluster, task))
}

/// Builds the plan from a configuration already passed through
/// [`super::prepare_for_flow_run`]. `region` names the CloudWatch log group's region.
///
/// # Errors
/// A configuration that cannot make a valid request, with the offending path.
pub fn plan(config: &Value, facts: &RunFacts<'_>, region: &str) -> Result<EcsPlan, PlanError> {
    let cfg = config
        .as_object()
        .ok_or_else(|| plan_error("", "the job configuration is not an object"))?;
    let mut request = match cfg.get("task_run_request") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err(plan_error("task_run_request", "must be an object")),
    };
    let launch_type = non_empty_str(request.get("launchType")).map(str::to_owned);
    let existing = non_empty_str(request.get("taskDefinition")).map(str::to_owned);
    request.remove("taskDefinition");

    let mut definition_container = None;
    let (task_definition, network_mode, requires_ec2) = match existing {
        Some(arn) => (TaskDefinition::Existing(arn), None, false),
        None => {
            let (body, container) = task_definition(cfg, facts, region, launch_type.as_deref())?;
            definition_container = Some(container);
            let network_mode = body
                .get("networkMode")
                .and_then(Value::as_str)
                .map(str::to_owned);
            let requires_ec2 = body
                .get("requiresCompatibilities")
                .and_then(Value::as_array)
                .is_some_and(|c| c.iter().any(|v| v == "EC2"));
            let family = body
                .get("family")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let hash = super::content_hash(&Value::Object(body.clone()));
            (
                TaskDefinition::Register { family, body, hash },
                network_mode,
                requires_ec2,
            )
        }
    };
    let container_name = non_empty_str(cfg.get("container_name"))
        .map(str::to_owned)
        .or(definition_container)
        .unwrap_or_else(|| DEFAULT_CONTAINER_NAME.to_owned());

    if non_empty_str(request.get("cluster")).is_none()
        && let Some(cluster) = non_empty_str(cfg.get("cluster"))
    {
        request.insert("cluster".to_owned(), Value::from(cluster));
    }

    // Launch type and capacity providers are exclusive; FARGATE_SPOT is a capacity provider.
    let strategy_given = request
        .get("capacityProviderStrategy")
        .and_then(Value::as_array)
        .is_some_and(|s| !s.is_empty());
    if strategy_given {
        request.remove("launchType");
    } else {
        request.remove("capacityProviderStrategy");
        match launch_type.as_deref() {
            Some("FARGATE_SPOT") => {
                request.remove("launchType");
                request.insert(
                    "capacityProviderStrategy".to_owned(),
                    json!([{ "capacityProvider": "FARGATE_SPOT", "weight": 1 }]),
                );
            }
            Some(_) => {}
            None if requires_ec2 => {}
            None => {
                request.insert("launchType".to_owned(), Value::from("FARGATE"));
            }
        }
    }

    let fargate = matches!(
        launch_type.as_deref(),
        None | Some("FARGATE" | "FARGATE_SPOT")
    ) && !requires_ec2;
    if request
        .get("networkConfiguration")
        .is_none_or(Value::is_null)
    {
        match cfg.get("network_configuration") {
            Some(Value::Object(nc)) if !nc.is_empty() => {
                let nc = if nc.contains_key("awsvpcConfiguration") {
                    Value::Object(nc.clone())
                } else {
                    json!({ "awsvpcConfiguration": nc })
                };
                request.insert("networkConfiguration".to_owned(), nc);
            }
            _ if network_mode.as_deref() == Some("awsvpc")
                || (network_mode.is_none() && fargate) =>
            {
                return Err(plan_error(
                    "network_configuration",
                    "an awsvpc (Fargate) task needs subnets: set the network_configuration job \
                     variable to {\"subnets\": [...], \"securityGroups\": [...], \
                     \"assignPublicIp\": \"ENABLED\"}; Sluice does not guess them from the \
                     default VPC",
                ));
            }
            _ => {}
        }
    }

    container_overrides(cfg, &mut request, &container_name)?;

    let mut tags = tag_list(request.get("tags"), cfg.get("labels"))?;
    tags.retain(|t| {
        let key = t.get("key").and_then(Value::as_str);
        key != Some(RUN_ID_TAG) && key != Some(ATTEMPT_TAG)
    });
    tags.push(json!({ "key": RUN_ID_TAG, "value": facts.run.id.to_string() }));
    tags.push(json!({ "key": ATTEMPT_TAG, "value": facts.attempt.to_string() }));
    if tags.len() > MAX_TAGS {
        return Err(plan_error(
            "labels",
            format!(
                "ECS allows {MAX_TAGS} tags on a task; these labels make {}",
                tags.len()
            ),
        ));
    }
    request.insert("tags".to_owned(), Value::Array(tags));

    // startedBy (at most 36 characters) names the run, for events and lookups; the client
    // token names the attempt, so a rerun within ECS's 24 h token window starts a new task.
    request.insert(
        "startedBy".to_owned(),
        Value::from(facts.run.id.to_string()),
    );
    request.insert(
        "clientToken".to_owned(),
        Value::from(facts.attempt.to_string()),
    );
    let mut request = Value::Object(request);
    prune(&mut request);
    let Value::Object(run_task) = request else {
        unreachable!("pruning keeps an object an object")
    };
    Ok(EcsPlan {
        task_definition,
        run_task,
        container_name,
    })
}

/// The definition to register, and the name of its flow-running container.
fn task_definition(
    cfg: &Map<String, Value>,
    facts: &RunFacts<'_>,
    region: &str,
    launch_type: Option<&str>,
) -> Result<(Map<String, Value>, String), PlanError> {
    let mut td = match cfg.get("task_definition") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err(plan_error("task_definition", "must be an object")),
    };
    let mut containers: Vec<Value> = match td.remove("containerDefinitions") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(plan_error(
                "task_definition.containerDefinitions",
                "must be a list",
            ));
        }
    };
    containers.retain(|c| c.as_object().is_none_or(|m| !m.is_empty()));
    for (i, c) in containers.iter().enumerate() {
        if !c.is_object() {
            return Err(plan_error(
                format!("task_definition.containerDefinitions[{i}]"),
                "must be an object",
            ));
        }
    }
    let named = |c: &Value, name: &str| c.get("name").and_then(Value::as_str) == Some(name);
    let container_name = match non_empty_str(cfg.get("container_name")) {
        Some(n) => n.to_owned(),
        None if containers.iter().any(|c| named(c, DEFAULT_CONTAINER_NAME)) => {
            DEFAULT_CONTAINER_NAME.to_owned()
        }
        None => containers
            .first()
            .and_then(|c| non_empty_str(c.get("name")))
            .unwrap_or(DEFAULT_CONTAINER_NAME)
            .to_owned(),
    };
    let index = match containers.iter().position(|c| named(c, &container_name)) {
        Some(i) => i,
        None if container_name != DEFAULT_CONTAINER_NAME => {
            return Err(plan_error(
                "container_name",
                format!("no container named {container_name:?} in task_definition"),
            ));
        }
        None => match containers.iter().position(|c| c.get("name").is_none()) {
            Some(i) => {
                containers[i]["name"] = Value::from(container_name.as_str());
                i
            }
            None => {
                containers.push(json!({ "name": container_name }));
                containers.len() - 1
            }
        },
    };
    let owner = facts.owner_id();
    {
        let container = containers[index]
            .as_object_mut()
            .ok_or_else(|| plan_error("task_definition.containerDefinitions", "not an object"))?;
        if non_empty_str(container.get("image")).is_none() {
            container.insert("image".to_owned(), Value::from(DEFAULT_IMAGE));
        }
        if cfg.get("configure_cloudwatch_logs") == Some(&Value::Bool(true)) {
            let prefix = non_empty_str(cfg.get("cloudwatch_logs_prefix"))
                .map(str::to_owned)
                .unwrap_or_else(|| format!("prefect-logs_{}_{owner}", facts.pool_name));
            let mut options = json!({
                "awslogs-create-group": "true",
                "awslogs-group": "prefect",
                "awslogs-region": region,
                "awslogs-stream-prefix": prefix,
            });
            if let Some(Value::Object(extra)) = cfg.get("cloudwatch_logs_options") {
                for (k, v) in extra {
                    options[k] = v.clone();
                }
            }
            container.insert(
                "logConfiguration".to_owned(),
                json!({ "logDriver": "awslogs", "options": options }),
            );
        }
        let secrets: Vec<(&str, &str)> = [
            ("PREFECT_API_KEY", "prefect_api_key_secret_arn"),
            (
                "PREFECT_API_AUTH_STRING",
                "prefect_api_auth_string_secret_arn",
            ),
        ]
        .into_iter()
        .filter_map(|(var, key)| non_empty_str(cfg.get(key)).map(|arn| (var, arn)))
        .collect();
        if !secrets.is_empty() {
            if let Some(Value::Array(env)) = container.get_mut("environment") {
                env.retain(|e| {
                    let name = e.get("name").and_then(Value::as_str);
                    !secrets.iter().any(|(var, _)| Some(*var) == name)
                });
            }
            let mut list: Vec<Value> = container
                .get("secrets")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for (var, arn) in secrets {
                match list
                    .iter_mut()
                    .find(|s| s.get("name").and_then(Value::as_str) == Some(var))
                {
                    Some(existing) => existing["valueFrom"] = Value::from(arn),
                    None => list.push(json!({ "name": var, "valueFrom": arn })),
                }
            }
            container.insert("secrets".to_owned(), Value::Array(list));
        }
    }

    let family = non_empty_str(td.get("family"))
        .map(str::to_owned)
        .unwrap_or_else(|| format!("prefect_{}_{owner}", facts.pool_name));
    let family = keep_chars(
        &family,
        |c| c.is_ascii_alphanumeric() || c == '-' || c == '_',
        255,
    );
    if family.is_empty() {
        return Err(plan_error(
            "task_definition.family",
            "no valid characters left",
        ));
    }
    td.insert("family".to_owned(), Value::from(family));

    let cpu = scalar_or(td.get("cpu"), DEFAULT_CPU);
    let memory = scalar_or(td.get("memory"), DEFAULT_MEMORY);
    if matches!(launch_type, None | Some("FARGATE" | "FARGATE_SPOT")) {
        td.insert("cpu".to_owned(), Value::from(cpu));
        td.insert("memory".to_owned(), Value::from(memory));
        let mut compat: Vec<Value> = td
            .get("requiresCompatibilities")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if !compat.iter().any(|c| c == "FARGATE") {
            compat.push(Value::from("FARGATE"));
        }
        td.insert("requiresCompatibilities".to_owned(), Value::Array(compat));
        if non_empty_str(td.get("networkMode")).is_none() {
            td.insert("networkMode".to_owned(), Value::from("awsvpc"));
        }
    } else {
        let container = &mut containers[index];
        for (key, value) in [("cpu", &cpu), ("memory", &memory)] {
            if container.get(key).is_none_or(Value::is_null) {
                let n: i64 = value.parse().map_err(|_| {
                    plan_error(format!("task_definition.{key}"), "must be a whole number")
                })?;
                container[key] = Value::from(n);
            }
        }
        for key in ["cpu", "memory"] {
            if let Some(v) = td.get(key).filter(|v| !v.is_null()) {
                let s = scalar_string(v);
                td.insert(key.to_owned(), Value::from(s));
            }
        }
    }
    td.insert("containerDefinitions".to_owned(), Value::Array(containers));
    let mut td = Value::Object(td);
    prune(&mut td);
    let Value::Object(td) = td else {
        unreachable!("pruning keeps an object an object")
    };
    Ok((td, container_name))
}

fn scalar_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn scalar_or(v: Option<&Value>, default: i64) -> String {
    match v {
        None | Some(Value::Null) => default.to_string(),
        Some(Value::String(s)) if s.is_empty() => default.to_string(),
        Some(other) => scalar_string(other),
    }
}

/// Command, environment and cpu/memory overrides, in the shapes RunTask wants.
fn container_overrides(
    cfg: &Map<String, Value>,
    request: &mut Map<String, Value>,
    container_name: &str,
) -> Result<(), PlanError> {
    let mut overrides = match request.remove("overrides") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => {
            return Err(plan_error(
                "task_run_request.overrides",
                "must be an object",
            ));
        }
    };
    let mut list: Vec<Value> = match overrides.remove("containerOverrides") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(plan_error(
                "task_run_request.overrides.containerOverrides",
                "must be a list",
            ));
        }
    };
    if let Some(first) = list.first_mut()
        && first.is_object()
        && non_empty_str(first.get("name")).is_none()
    {
        first["name"] = Value::from(container_name);
    }
    if !list
        .iter()
        .any(|c| c.get("name").and_then(Value::as_str) == Some(container_name))
    {
        list.push(json!({ "name": container_name }));
    }
    for (i, c) in list.iter_mut().enumerate() {
        let path = format!("task_run_request.overrides.containerOverrides[{i}]");
        let Some(c) = c.as_object_mut() else {
            return Err(plan_error(path, "must be an object"));
        };
        let is_main = c.get("name").and_then(Value::as_str) == Some(container_name);
        if is_main {
            // The configuration's command and env win over what the template put here.
            if let Some(cmd) = cfg.get("command").filter(|v| !v.is_null()) {
                c.insert("command".to_owned(), cmd.clone());
            }
            if let Some(env) = cfg.get("env") {
                c.insert("environment".to_owned(), env.clone());
            }
        }
        match split_command(
            &format!("{path}.command"),
            c.get("command").unwrap_or(&Value::Null),
        )? {
            Some(parts) => c.insert("command".to_owned(), Value::Array(parts)),
            None => c.remove("command"),
        };
        let mut env = env_list(
            &format!("{path}.environment"),
            c.get("environment").unwrap_or(&Value::Null),
        )?;
        if is_main {
            // A variable the definition takes from Secrets Manager must not also travel in
            // plain text (and would clash with the secret).
            for (var, key) in SECRET_VARIABLES {
                if non_empty_str(cfg.get(key)).is_some() {
                    env.retain(|e| e.get("name").and_then(Value::as_str) != Some(var));
                }
            }
        }
        c.insert("environment".to_owned(), Value::Array(env));
        for key in ["cpu", "memory", "memoryReservation"] {
            if let Some(v) = c.get(key).filter(|v| !v.is_null()) {
                let n = match v {
                    Value::Number(n) => n.as_i64(),
                    Value::String(s) => s.trim().parse().ok(),
                    _ => None,
                }
                .ok_or_else(|| plan_error(format!("{path}.{key}"), "must be a whole number"))?;
                c.insert(key.to_owned(), Value::from(n));
            }
        }
    }
    overrides.insert("containerOverrides".to_owned(), Value::Array(list));
    for key in ["cpu", "memory"] {
        if let Some(v) = overrides.get(key).filter(|v| !v.is_null()) {
            let s = scalar_string(v);
            overrides.insert(key.to_owned(), Value::from(s));
        }
    }
    request.insert("overrides".to_owned(), Value::Object(overrides));
    Ok(())
}

/// Prefect's tag slugification: each run of characters outside `[a-zA-Z0-9_./=+:@-]` becomes
/// one `-`, with none at the ends; then cut to ECS's length limit.
fn slug_tag(s: &str, max: usize) -> String {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "_./=+:@-".contains(c);
    let mut out = String::new();
    let mut pending_dash = false;
    for c in s.chars() {
        if allowed(c) {
            if pending_dash && !out.is_empty() {
                out.push('-');
            }
            pending_dash = false;
            out.push(c);
        } else {
            pending_dash = true;
        }
    }
    out.chars().take(max).collect()
}

/// The request's tags (list or map) with the labels laid over them, slugified as Prefect does.
fn tag_list(given: Option<&Value>, labels: Option<&Value>) -> Result<Vec<Value>, PlanError> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    match given {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for (i, t) in items.iter().enumerate() {
                let key = t.get("key").and_then(Value::as_str);
                let value = t.get("value");
                match (key, value) {
                    (Some(k), Some(v)) if !v.is_null() => {
                        pairs.push((k.to_owned(), scalar_string(v)));
                    }
                    (Some(_), _) => {}
                    _ => {
                        return Err(plan_error(
                            format!("task_run_request.tags[{i}]"),
                            "a tag is {\"key\": ..., \"value\": ...}",
                        ));
                    }
                }
            }
        }
        Some(Value::Object(map)) => {
            for (k, v) in map {
                if !v.is_null() {
                    pairs.push((k.clone(), scalar_string(v)));
                }
            }
        }
        Some(_) => return Err(plan_error("task_run_request.tags", "must be a list")),
    }
    if let Some(Value::Object(labels)) = labels {
        pairs.retain(|(k, _)| !labels.contains_key(k));
        for (k, v) in labels {
            if !v.is_null() {
                pairs.push((k.clone(), scalar_string(v)));
            }
        }
    }
    Ok(pairs
        .into_iter()
        .map(|(k, v)| json!({ "key": slug_tag(&k, 128), "value": slug_tag(&v, 256) }))
        .filter(|t| t["key"].as_str().is_some_and(|k| !k.is_empty()))
        .collect())
}
