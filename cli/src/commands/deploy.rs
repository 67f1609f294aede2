//! `sluice deploy`: creates or updates the deployments of a `prefect.yaml` (reference §4.4, §10).
//!
//! Planning (merging, CLI overrides, schedules) is `sluice_deploy::plan`; this module runs the
//! build and push steps, templates the result with their outputs, resolves variables and
//! blocks through the API, and upserts the flow and the deployment.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use clap::Args;
use serde_json::{Map, Value, json};
use sluice_client::{Client, ClientError};
use sluice_core::templating::{self, ApplyOptions, BlockRef, PlaceholderKind, PrefetchedData};
use sluice_deploy::{DeployOptions, PlannedDeployment};

use super::ApiArgs;

const RUN_SHELL_SCRIPT: &str = "prefect.deployments.steps.run_shell_script";
const DOCKER_STEPS: &str = "prefect_docker.deployments.steps.";

#[derive(Args)]
pub struct DeployArgs {
    /// Deployment names or globs (`*`, `?`, `[...]`), matched against `NAME` and `FLOW/NAME`.
    #[arg(value_name = "NAME_GLOBS")]
    pub names: Vec<String>,
    /// Deploy every deployment in the file.
    #[arg(long)]
    pub all: bool,
    /// A deployment name or glob (repeatable).
    #[arg(long = "name", value_name = "GLOB")]
    pub name: Vec<String>,
    /// The project file.
    #[arg(long, value_name = "PATH", default_value = "prefect.yaml")]
    pub prefect_file: PathBuf,
    /// The work pool (overrides `work_pool.name`).
    #[arg(long, value_name = "P")]
    pub pool: Option<String>,
    /// The work queue (overrides `work_pool.work_queue_name`).
    #[arg(long, value_name = "Q")]
    pub work_queue: Option<String>,
    /// `k=v` (the value is parsed as JSON when it parses, else kept as a string) or a JSON
    /// object; merged over `work_pool.job_variables`. Repeatable.
    #[arg(long = "job-variable", value_name = "K=V")]
    pub job_variable: Vec<String>,
    /// A cron schedule to add (repeatable).
    #[arg(long, value_name = "C")]
    pub cron: Vec<String>,
    /// An interval schedule to add, in seconds (repeatable).
    #[arg(long, value_name = "SECONDS")]
    pub interval: Vec<f64>,
    /// An RRule schedule to add (repeatable).
    #[arg(long, value_name = "R")]
    pub rrule: Vec<String>,
    /// The timezone of every schedule.
    #[arg(long, value_name = "TZ")]
    pub timezone: Option<String>,
    /// The anchor date of every interval schedule.
    #[arg(long, value_name = "ISO")]
    pub anchor_date: Option<String>,
    /// A parameter `k=v` (the value is parsed as JSON when it parses). Repeatable.
    #[arg(long = "param", value_name = "K=V")]
    pub param: Vec<String>,
    /// Parameters as a JSON object.
    #[arg(long, value_name = "JSON")]
    pub params: Option<String>,
    /// Print the planned deployments as JSON; contact no server and run no step.
    #[arg(long)]
    pub dry_run: bool,
}

/// A JSON value if `text` parses as one, else the text as a string.
fn json_or_string(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

/// `k=v` pairs or JSON objects, in order.
fn parse_pairs(flag: &str, items: &[String]) -> anyhow::Result<Vec<(String, Value)>> {
    let mut out = Vec::new();
    for item in items {
        if item.trim_start().starts_with('{') {
            match serde_json::from_str::<Value>(item) {
                Ok(Value::Object(map)) => {
                    out.extend(map);
                    continue;
                }
                Ok(_) | Err(_) => bail!("{flag} {item:?}: not a JSON object"),
            }
        }
        let Some((key, value)) = item.split_once('=') else {
            bail!("{flag} {item:?}: expected KEY=VALUE or a JSON object");
        };
        if key.is_empty() {
            bail!("{flag} {item:?}: the key is empty");
        }
        out.push((key.to_owned(), json_or_string(value)));
    }
    Ok(out)
}

fn options(args: &DeployArgs) -> anyhow::Result<DeployOptions> {
    let mut params = Map::new();
    if let Some(text) = &args.params {
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => params.extend(map),
            Ok(_) => bail!("--params: not a JSON object"),
            Err(e) => bail!("--params: not JSON: {e}"),
        }
    }
    params.extend(parse_pairs("--param", &args.param)?);
    let mut names = args.names.clone();
    names.extend(args.name.iter().cloned());
    Ok(DeployOptions {
        names,
        all: args.all,
        pool: args.pool.clone(),
        work_queue: args.work_queue.clone(),
        job_variables: parse_pairs("--job-variable", &args.job_variable)?,
        cron: args.cron.clone(),
        interval: args.interval.clone(),
        rrule: args.rrule.clone(),
        timezone: args.timezone.clone(),
        anchor_date: args.anchor_date.clone(),
        params,
    })
}

fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

pub async fn run(api: &ApiArgs, args: DeployArgs) -> anyhow::Result<()> {
    let opts = options(&args)?;
    let file = sluice_deploy::load(&args.prefect_file)?;
    let planned = sluice_deploy::plan(&file, &opts, &process_env)?;
    if opts.all {
        for i in file.unnamed_entries() {
            eprintln!(
                "{}: discovered unnamed deployment (entry #{i}). Skipping...",
                args.prefect_file.display()
            );
        }
    }

    if args.dry_run {
        // Each deployment's job variables are checked against its pool's schema by the rule
        // the server applies to the real request, when the pool can be read.
        let client = api.context().ok().map(|c| c.client);
        let mut out = Vec::with_capacity(planned.len());
        let mut refused = Vec::new();
        for p in &planned {
            let check = pool_check(client.as_ref(), p).await;
            if let Some(reason) = check.get("refused").and_then(Value::as_str) {
                refused.push(format!("{}: {reason}", p.name));
            }
            out.push(json!({
                "name": p.name,
                "flow_name": p.flow_name,
                "entrypoint": p.entrypoint,
                "body": p.body,
                "build_steps": p.build_steps,
                "push_steps": p.push_steps,
                "triggers": p.triggers,
                "warnings": p.warnings,
                "pool_check": check,
            }));
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
        if !refused.is_empty() {
            bail!(
                "the work pool would refuse {} of these deployments:\n  {}",
                refused.len(),
                refused.join("\n  ")
            );
        }
        return Ok(());
    }

    let ctx = api.context()?;
    let mut failed = 0usize;
    for p in &planned {
        let label = format!(
            "{}/{}",
            p.flow_name.as_deref().unwrap_or("<unknown flow>"),
            p.name
        );
        // Placeholders the planner left are resolved below; what stays unresolved is reported
        // by deploy_one.
        for w in p.warnings.iter().filter(|w| !w.contains(" left as is: ")) {
            eprintln!("warning: deployment '{label}': {w}");
        }
        match deploy_one(&ctx.client, &file.dir, p, &opts).await {
            Ok(done) => {
                for w in &done.warnings {
                    eprintln!("warning: deployment '{label}': {w}");
                }
                println!(
                    "deployment '{label}' {} (id {})",
                    if done.created { "created" } else { "updated" },
                    done.id
                );
            }
            Err(e) => {
                failed += 1;
                eprintln!("error: deployment '{label}': {e:#}");
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} deployments failed", planned.len());
    }
    Ok(())
}

struct Deployed {
    id: String,
    created: bool,
    warnings: Vec<String>,
}

/// `--dry-run`'s check of a deployment's job variables against its pool: `{"checked": true}`,
/// `{"refused": reason}`, or `{"checked": false, "why": ...}` when the pool cannot be read
/// (no server, no pool yet) or the values wait for build/push step outputs.
async fn pool_check(client: Option<&Client>, p: &PlannedDeployment) -> Value {
    let Some(pool) = p.body.get("work_pool_name").and_then(Value::as_str) else {
        return json!({"checked": false, "why": "no work pool"});
    };
    let Some(client) = client else {
        return json!({"checked": false, "why": "no API to read the pool from"});
    };
    let found = match client.read_work_pool(pool).await {
        Ok(Some(found)) => found,
        Ok(None) => {
            return json!({"checked": false, "why": format!("work pool '{pool}' does not exist yet")});
        }
        Err(e) => {
            return json!({"checked": false, "why": format!("cannot read work pool '{pool}': {e}")});
        }
    };
    let variables = p
        .body
        .get("job_variables")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if variables.values().any(|v| v.to_string().contains("{{")) {
        return json!({"checked": false, "why": "the job variables use build or push step outputs"});
    }
    let schema = found
        .pointer("/base_job_template/variables")
        .cloned()
        .unwrap_or(Value::Null);
    if schema.is_null() {
        return json!({"checked": true});
    }
    match sluice_core::schema::validate_job_variables(&schema, &variables, false) {
        Ok(()) => json!({"checked": true}),
        Err(e) => json!({"refused": format!("Error creating deployment: {e}")}),
    }
}

/// An API error in words: the status and the server's own explanation.
fn api_error(what: &str, e: &ClientError) -> anyhow::Error {
    match (e.status(), e.detail()) {
        (Some(status), Some(detail)) => anyhow!("{what}: the API answered {status}: {detail}"),
        _ => anyhow!("{what}: {e}"),
    }
}

async fn deploy_one(
    client: &Client,
    dir: &Path,
    p: &PlannedDeployment,
    opts: &DeployOptions,
) -> anyhow::Result<Deployed> {
    let mut warnings = Vec::new();
    let flow_name = p
        .flow_name
        .clone()
        .context("no flow name: set `flow_name` or `entrypoint` in prefect.yaml")?;
    let Value::Object(mut body) = p.body.clone() else {
        bail!("the planned body is not an object");
    };

    // §4.4 step 6: the work pool must exist.
    let pool = body
        .get("work_pool_name")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .context("no work pool: set `work_pool.name` in prefect.yaml or pass --pool")?;
    match client.read_work_pool(&pool).await {
        Ok(Some(found)) if found.get("type").and_then(Value::as_str) == Some("prefect-agent") => {
            bail!("work pool '{pool}' is a prefect-agent pool, which deployments cannot use")
        }
        Ok(Some(_)) => {}
        Ok(None) => bail!(
            "work pool '{pool}' does not exist; create it with `sluice work-pool create {pool} \
             --type TYPE` (process, ecs, batch, ecs:push, batch:push, ...), or from the Prefect 2 \
             infrastructure block it replaces with `sluice migrate infra-block`"
        ),
        Err(e) => return Err(api_error(&format!("reading work pool '{pool}'"), &e)),
    }

    // §4.4 step 7: build, then push steps; their outputs plus the --job-variable overrides.
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let mut outputs = Map::new();
    for (section, steps) in [("build", &p.build_steps), ("push", &p.push_steps)] {
        run_steps(client, section, steps, dir, &env, &mut outputs).await?;
    }
    for (k, v) in &opts.job_variables {
        outputs.insert(k.clone(), v.clone());
    }

    // Step 8/9: the body with the step outputs (`ctx.` kept for the worker); pull steps keep
    // missing values, blocks and variables for run time.
    let pull_steps = body.shift_remove("pull_steps");
    let body_opts = ApplyOptions {
        skip_prefixes: vec!["ctx.".to_owned()],
        ..ApplyOptions::with_env(&env)
    };
    let body = Value::Object(body);
    for p in templating::find_placeholders(&body) {
        if p.kind == PlaceholderKind::Standard
            && !p.name.starts_with("ctx.")
            && templating::lookup_in_map(&outputs, &p.name).is_none()
        {
            warnings.push(format!(
                "{} has no value (no build/push step output of that name); removed",
                p.full_match
            ));
        }
    }
    let templated = templating::apply_values(&body, &outputs, &body_opts);
    let templated = resolve_api_references(client, &templated, &mut warnings).await?;
    let Value::Object(mut body) = templated else {
        bail!("the templated body is not an object");
    };
    if let Some(pull) = pull_steps {
        let pull_opts = ApplyOptions {
            remove_notset: false,
            ..ApplyOptions::default()
        };
        body.insert(
            "pull_steps".to_owned(),
            templating::apply_values(&pull, &outputs, &pull_opts),
        );
    }
    if !p.triggers.is_empty() {
        warnings.push(format!(
            "{} trigger(s) not created: automations are not supported yet",
            p.triggers.len()
        ));
    }

    let flow = client
        .upsert_flow(&flow_name)
        .await
        .map_err(|e| api_error(&format!("creating flow '{flow_name}'"), &e))?;
    let flow_id = flow
        .id()
        .with_context(|| format!("the API answered no id for flow '{flow_name}'"))?
        .to_owned();
    body.insert("flow_id".to_owned(), Value::String(flow_id));
    let deployment = client
        .upsert_deployment(&Value::Object(body))
        .await
        .map_err(|e| api_error("the API refused the deployment", &e))?;
    let id = deployment
        .id()
        .context("the API answered no deployment id")?
        .to_owned();
    Ok(Deployed {
        id,
        created: deployment.created,
        warnings,
    })
}

/// Resolves `{{ prefect.blocks.* }}`, `$ref` blocks and `{{ prefect.variables.* }}` through the
/// API (blocks first, then variables, as Prefect does).
async fn resolve_api_references(
    client: &Client,
    template: &Value,
    warnings: &mut Vec<String>,
) -> anyhow::Result<Value> {
    let mut data = PrefetchedData::default();
    for block in templating::find_block_references(template) {
        match block {
            BlockRef::ById(id) => {
                if let Some(found) = client
                    .block_by_id(&id)
                    .await
                    .map_err(|e| api_error(&format!("reading block document {id}"), &e))?
                {
                    data = data.with_block_id(id, found);
                }
            }
            BlockRef::ByName { slug, name } => {
                if let Some(found) = client
                    .block_by_name(&slug, &name)
                    .await
                    .map_err(|e| api_error(&format!("reading block {slug}/{name}"), &e))?
                {
                    data = data.with_block(slug, name, found);
                }
            }
        }
    }
    let resolved = templating::resolve_block_document_references(template, &data)?;
    for name in templating::find_variable_references(&resolved) {
        match client
            .variable(&name)
            .await
            .map_err(|e| api_error(&format!("reading variable '{name}'"), &e))?
        {
            Some(value) => data = data.with_variable(name, value),
            None => warnings.push(format!(
                "variable '{name}' does not exist; its placeholder became an empty string"
            )),
        }
    }
    Ok(templating::resolve_variables(&resolved, &data))
}

/// Runs build or push steps (§4.3), adding each output under its `id` and flattened.
async fn run_steps(
    client: &Client,
    section: &str,
    steps: &[Value],
    dir: &Path,
    env: &BTreeMap<String, String>,
    outputs: &mut Map<String, Value>,
) -> anyhow::Result<()> {
    let env_values: Map<String, Value> = env
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    for (index, step) in steps.iter().enumerate() {
        let (name, inputs) = match step.as_object() {
            Some(map) if map.len() == 1 => {
                map.iter()
                    .next()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .with_context(|| format!("{section} step #{index} is empty"))?
            }
            _ => bail!("{section} step #{index} must be a mapping with exactly one key"),
        };
        let mut inputs = match inputs {
            Value::Object(map) => map,
            Value::Null => Map::new(),
            _ => bail!("{section} step {name}: its inputs must be a mapping"),
        };
        let id = inputs
            .shift_remove("id")
            .and_then(|v| v.as_str().map(str::to_owned));
        inputs.shift_remove("requires");
        // Step outputs, then blocks and variables, then the environment (Prefect's order).
        let inputs =
            templating::apply_values(&Value::Object(inputs), outputs, &ApplyOptions::default());
        let mut ignored = Vec::new();
        let inputs = resolve_api_references(client, &inputs, &mut ignored).await?;
        let inputs = templating::apply_values(&inputs, &env_values, &ApplyOptions::with_env(env));
        let output = run_step(&name, &inputs, dir, env)
            .await
            .with_context(|| format!("{section} step {name} failed"))?;
        if let Value::Object(out) = output {
            if let Some(id) = id {
                outputs.insert(id, Value::Object(out.clone()));
            }
            outputs.extend(out);
        }
    }
    Ok(())
}

async fn run_step(
    name: &str,
    inputs: &Value,
    dir: &Path,
    env: &BTreeMap<String, String>,
) -> anyhow::Result<Value> {
    if name == RUN_SHELL_SCRIPT {
        return run_shell_script(inputs, dir, env).await;
    }
    if name.starts_with(DOCKER_STEPS) {
        let engine = tokio::process::Command::new("docker")
            .arg("info")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .await
            .is_ok_and(|s| s.success());
        if engine {
            bail!(
                "`{name}` is not supported yet by sluice deploy (build and push the image yourself and set `image` in job_variables)"
            );
        }
        bail!("`{name}` is not supported here: no Docker engine (`docker info` failed)");
    }
    bail!("unknown step `{name}`; sluice deploy runs {RUN_SHELL_SCRIPT} in build and push sections")
}

/// `$NAME` and `${NAME}` replaced from `env`; unknown names are left as written (as Python's
/// `os.path.expandvars`).
fn expand_env_vars(script: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(script.len());
    let mut rest = script;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, consumed) = if let Some(braced) = after.strip_prefix('{') {
            match braced.find('}') {
                Some(end) => (&braced[..end], end + 2),
                None => ("", 0),
            }
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], end)
        };
        match env.get(name) {
            Some(value) if !name.is_empty() => out.push_str(value),
            _ => out.push_str(&rest[at..at + 1 + consumed]),
        }
        rest = &after[consumed..];
    }
    out.push_str(rest);
    out
}

/// Prefect's `run_shell_script`: `{stdout, stderr}`, stripped. The script runs under `sh -c`
/// (Prefect's default `shell: false` splits lines with shlex; for ordinary commands the result
/// is the same).
async fn run_shell_script(
    inputs: &Value,
    dir: &Path,
    env: &BTreeMap<String, String>,
) -> anyhow::Result<Value> {
    let script = inputs
        .get("script")
        .and_then(Value::as_str)
        .context("`script` is required")?;
    let mut step_env = env.clone();
    if let Some(Value::Object(extra)) = inputs.get("env") {
        for (k, v) in extra {
            step_env.insert(k.clone(), templating::python_str(v));
        }
    }
    let expand = inputs
        .get("expand_env_vars")
        .is_some_and(templating::python_truthy);
    let script = if expand {
        expand_env_vars(script, &step_env)
    } else {
        script.to_owned()
    };
    let cwd = match inputs.get("directory").and_then(Value::as_str) {
        Some(d) => dir.join(d),
        None => dir.to_path_buf(),
    };
    let out = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(&script)
        .current_dir(&cwd)
        .env_clear()
        .envs(&step_env)
        .output()
        .await
        .with_context(|| format!("cannot run the script in {}", cwd.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    if !out.status.success() {
        bail!("script exited with {}: {stderr}", out.status);
    }
    Ok(json!({ "stdout": stdout, "stderr": stderr }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_parse_json_values_and_objects() {
        let got = parse_pairs(
            "--job-variable",
            &[
                "a=1".to_owned(),
                "b=text".to_owned(),
                r#"{"c": [1]}"#.to_owned(),
            ],
        )
        .expect("parse");
        assert_eq!(
            got,
            vec![
                ("a".to_owned(), json!(1)),
                ("b".to_owned(), json!("text")),
                ("c".to_owned(), json!([1])),
            ]
        );
        assert!(parse_pairs("--param", &["novalue".to_owned()]).is_err());
    }

    #[test]
    fn env_vars_expand_like_expandvars() {
        let env: BTreeMap<String, String> = [("A".to_owned(), "x".to_owned())].into();
        assert_eq!(expand_env_vars("$A-${A}-$B-$", &env), "x-x-$B-$");
    }
}
