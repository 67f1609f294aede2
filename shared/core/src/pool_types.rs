//! Work pool types Sluice knows, their default base job templates, and the
//! `GET /collections/views/aggregate-worker-metadata` document built from them.
//!
//! The templates are JSON files under `shared/core/templates/`, compiled in with `include_str!`:
//!
//! | type | template file | collection |
//! |---|---|---|
//! | `process` | `process.json` | `prefect` |
//! | `ecs`, `ecs:push` | `ecs.json` (the same template for both) | `prefect-aws` |
//! | `batch`, `batch:push` | `batch.json` (the same template for both) | `sluice` |
//! | `docker` | `docker.json` | `prefect-docker` |
//! | `kubernetes` | `kubernetes.json` | `prefect-kubernetes` |
//!
//! Variable names, types, defaults, enum values and the `job_configuration` keys and placeholders
//! of `process`, `ecs`, `docker` (as in prefect 3.9.1, with `container_wait_timeout`) and
//! `kubernetes` follow Prefect's; Sluice serves `docker` and `kubernetes` pools with Prefect's own
//! workers (it has none of its own for them), so a template copied from Prefect works unchanged and
//! ours works with Prefect's own workers. Every `description` is Sluice's own wording, and so is every
//! `title` of `process` and `ecs`; `docker` and `kubernetes` keep Prefect's titles (the variable
//! names in words, which its UI shows as the form's labels).
//!
//! # Collection placement
//!
//! Prefect's client never looks at collection names: `get_available_work_pool_types` and
//! `get_default_base_job_template_for_infrastructure_type` (`src/prefect/workers/utilities.py`)
//! walk every collection, then every entry, and match on the entry's `type` field alone; the
//! interactive type picker of `prefect work-pool create` and the UI's pool wizard flatten the
//! collections the same way. So `prefect work-pool create --type ecs:push` and `--type batch` find
//! their template whichever collection holds it. The collection only says where a worker for the
//! type comes from, so `process` sits under `prefect`, `ecs` and `ecs:push` under `prefect-aws`
//! (Prefect's ECS worker runs these pools and uses this same template), and `batch`/`batch:push`
//! under `sluice`: `prefect-aws` ships no Batch worker, and listing Batch there would advertise
//! `pip install prefect-aws` as a way to serve a pool it cannot serve. Entries are keyed by their
//! type string, as in Prefect's file. Caveat: when a client has a worker for the type installed
//! locally (prefect-aws for `ecs`), it uses that worker's template instead of the server's.
//!
//! # ECS: differences from Prefect's registry snapshot
//!
//! `shared/testdata/base-job-templates/ecs.json` is the registry copy of the ECS template
//! (`aggregate-worker-metadata.json`), which lags the current worker
//! (`prefect_aws/workers/ecs_worker.py`). Sluice follows the current worker; the tests check that
//! these are the only differences in names, types and defaults:
//!
//! - `job_configuration`: `stream_output` is the literal `false` and `task_start_timeout_seconds`
//!   and `task_watch_poll_interval` the literal `0` (deprecated and unused by the current worker;
//!   the snapshot templates them). `prefect_api_key_secret_arn`,
//!   `prefect_api_auth_string_secret_arn` and a top-level `execution_role_arn` are added.
//! - Variables removed: `stream_output`, `task_start_timeout_seconds` (default 300) and
//!   `task_watch_poll_interval` (default 5.0). Added: `prefect_api_key_secret_arn` and
//!   `prefect_api_auth_string_secret_arn` (strings, no default).
//! - Defaults stated where the worker's model has a plain-JSON default and the snapshot has none:
//!   `env` `{}`, `labels` `{}`, `capacity_provider_strategy` `[]`, `cloudwatch_logs_options` `{}`,
//!   `network_configuration` `{}`. Rendering treats these exactly like an absent value (the worker
//!   tests them for truthiness). `aws_credentials` keeps no schema default, so the UI's block
//!   picker starts empty; the worker then builds an empty credentials block (ambient AWS chain).
//! - `env` values are string-or-null (the current `Dict[str, Optional[str]]`; null unsets a
//!   variable), where the snapshot says string.
//! - `aws_credentials` is a direct `$ref` (as current pydantic emits it) instead of the snapshot's
//!   `allOf: [{$ref}]`; both point at the same `AwsCredentials` definition.
//! - The `AwsCredentials` definition keeps the snapshot's six fields; the current block also has
//!   `assume_role_arn` and `assume_role_kwargs`, which we leave out until the AWS adapter honours
//!   them (a block document holding them still validates: definitions allow extra fields).
//!
//! # Batch (Sluice's own design)
//!
//! `batch.json` renders to a configuration with the base fields (`command`, `env`, `labels`,
//! `name`, `aws_credentials`), a `job_definition` shaped like a `RegisterJobDefinition` input and a
//! `submit_job_request` shaped like a `SubmitJob` input. Every variable is referenced by
//! `job_configuration` (a variable that is declared but never referenced is silently ignored,
//! Prefect issue #20131); `job_queue` is listed in `required`, which Prefect-style validation
//! enforces when a flow run is created but not when a pool or deployment is saved. After
//! rendering, the Batch adapter is expected to:
//! - register a definition from `job_definition` (name generated like ECS families, e.g.
//!   `prefect_<pool>_<deployment or flow id>`) only when `jobDefinition` is absent, reusing an
//!   identical active revision;
//! - turn `resourceRequirements` values into strings and drop entries left without a value
//!   (GPU unless set) or asking for 0 GPUs; drop empty objects such as `timeout` or
//!   `arrayProperties`;
//! - fill `jobName` from the configuration's final `name`, shell-split `command`, send the final
//!   `env` as `[{name, value}]` (nulls dropped) and the final `labels` as `tags`;
//! - on Fargate, add the network and platform settings that `RegisterJobDefinition` needs.
//!
//! `vcpus` and `memory` have no pool default: a registered definition gets 1 vCPU and 2048 MiB
//! when they are empty, and with a `job_definition_arn` they are sent as overrides only when set,
//! so an existing definition keeps its own resources (`sluice_core::push::batch`).
//!
//! Nothing here performs I/O.

use std::sync::LazyLock;

use serde_json::{Map, Value, json};

static PROCESS_TEMPLATE: LazyLock<Value> =
    LazyLock::new(|| parse_bundled(include_str!("../templates/process.json")));
static ECS_TEMPLATE: LazyLock<Value> =
    LazyLock::new(|| parse_bundled(include_str!("../templates/ecs.json")));
static BATCH_TEMPLATE: LazyLock<Value> =
    LazyLock::new(|| parse_bundled(include_str!("../templates/batch.json")));
static DOCKER_TEMPLATE: LazyLock<Value> =
    LazyLock::new(|| parse_bundled(include_str!("../templates/docker.json")));
static KUBERNETES_TEMPLATE: LazyLock<Value> =
    LazyLock::new(|| parse_bundled(include_str!("../templates/kubernetes.json")));

fn parse_bundled(text: &str) -> Value {
    serde_json::from_str(text)
        .expect("bundled base job templates are valid JSON (checked by tests)")
}

/// Which bundled template a pool type uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TemplateFile {
    Process,
    Ecs,
    Batch,
    Docker,
    Kubernetes,
}

impl TemplateFile {
    fn template(self) -> &'static Value {
        match self {
            TemplateFile::Process => &PROCESS_TEMPLATE,
            TemplateFile::Ecs => &ECS_TEMPLATE,
            TemplateFile::Batch => &BATCH_TEMPLATE,
            TemplateFile::Docker => &DOCKER_TEMPLATE,
            TemplateFile::Kubernetes => &KUBERNETES_TEMPLATE,
        }
    }
}

/// What Sluice knows about one work pool type; also one entry of the worker metadata document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolTypeInfo {
    /// The pool's `type` string, e.g. `ecs:push`.
    pub pool_type: &'static str,
    /// Top-level key of the worker metadata document the type is listed under.
    pub collection: &'static str,
    pub display_name: &'static str,
    pub description: &'static str,
    pub documentation_url: Option<&'static str>,
    /// How to install a worker that serves the type; `None` when no worker is needed (push
    /// pools) or the worker is the `sluice` binary itself.
    pub install_command: Option<&'static str>,
    /// Push pools (suffix `:push`) are dispatched by the control plane; no worker polls them.
    pub is_push: bool,
    pub is_beta: bool,
    pub logo_url: Option<&'static str>,
    template: TemplateFile,
}

impl PoolTypeInfo {
    /// A fresh copy of the type's default base job template.
    pub fn default_base_job_template(&self) -> Value {
        self.template.template().clone()
    }

    /// This type's entry in the `aggregate-worker-metadata` document (Prefect's key order).
    fn metadata_entry(&self) -> Value {
        json!({
            "default_base_job_configuration": self.default_base_job_template(),
            "description": self.description,
            "display_name": self.display_name,
            "documentation_url": self.documentation_url,
            "install_command": self.install_command,
            "is_beta": self.is_beta,
            "logo_url": self.logo_url,
            "type": self.pool_type,
        })
    }
}

static POOL_TYPES: [PoolTypeInfo; 7] = [
    PoolTypeInfo {
        pool_type: "process",
        collection: "prefect",
        display_name: "Process",
        description: "Runs each flow run as a child process on the machine that hosts the worker. \
                      The easiest way to try deployments locally.",
        documentation_url: Some(
            "https://docs.prefect.io/v3/how-to-guides/deployment_infra/run-flows-in-local-processes",
        ),
        install_command: Some("pip install prefect"),
        is_push: false,
        is_beta: false,
        logo_url: None,
        template: TemplateFile::Process,
    },
    PoolTypeInfo {
        pool_type: "ecs",
        collection: "prefect-aws",
        display_name: "AWS Elastic Container Service",
        description: "Runs each flow run as an AWS ECS task on Fargate or on EC2 capacity. A worker \
                      polls the pool and starts the tasks with its own AWS access.",
        documentation_url: Some("https://docs.prefect.io/integrations/prefect-aws/ecs-worker"),
        install_command: Some("pip install prefect-aws"),
        is_push: false,
        is_beta: false,
        logo_url: None,
        template: TemplateFile::Ecs,
    },
    PoolTypeInfo {
        pool_type: "ecs:push",
        collection: "prefect-aws",
        display_name: "AWS Elastic Container Service (push)",
        description: "The control plane starts each flow run as an AWS ECS task itself, so there \
                      is no worker to host; cluster, network and credentials come from the pool's \
                      template.",
        documentation_url: Some(
            "https://docs.prefect.io/v3/how-to-guides/deployment_infra/serverless",
        ),
        install_command: None,
        is_push: true,
        is_beta: false,
        logo_url: None,
        template: TemplateFile::Ecs,
    },
    PoolTypeInfo {
        pool_type: "batch",
        collection: "sluice",
        display_name: "AWS Batch",
        description: "Submits each flow run as an AWS Batch job to a job queue backed by Fargate \
                      or EC2 compute environments. A Sluice worker polls the pool and submits \
                      the jobs.",
        documentation_url: None,
        install_command: None,
        is_push: false,
        is_beta: true,
        logo_url: None,
        template: TemplateFile::Batch,
    },
    PoolTypeInfo {
        pool_type: "batch:push",
        collection: "sluice",
        display_name: "AWS Batch (push)",
        description: "The control plane submits each flow run as an AWS Batch job itself, so there \
                      is no worker to host; the job queue and AWS settings come from the pool's \
                      template.",
        documentation_url: None,
        install_command: None,
        is_push: true,
        is_beta: true,
        logo_url: None,
        template: TemplateFile::Batch,
    },
    PoolTypeInfo {
        pool_type: "docker",
        collection: "prefect-docker",
        display_name: "Docker",
        description: "Runs each flow run as a Docker container. Served by Prefect's Docker \
                      worker, which needs a Docker daemon.",
        documentation_url: Some("https://docs.prefect.io/integrations/prefect-docker"),
        install_command: Some("pip install prefect-docker"),
        is_push: false,
        is_beta: false,
        logo_url: None,
        template: TemplateFile::Docker,
    },
    PoolTypeInfo {
        pool_type: "kubernetes",
        collection: "prefect-kubernetes",
        display_name: "Kubernetes",
        description: "Runs each flow run as a Kubernetes Job. Served by Prefect's Kubernetes \
                      worker, which needs access to a cluster.",
        documentation_url: Some("https://docs.prefect.io/integrations/prefect-kubernetes"),
        install_command: Some("pip install prefect-kubernetes"),
        is_push: false,
        is_beta: false,
        logo_url: None,
        template: TemplateFile::Kubernetes,
    },
];

/// Every pool type Sluice has a default template for, in display order.
pub fn known_pool_types() -> &'static [PoolTypeInfo] {
    &POOL_TYPES
}

/// The entry for an exact pool type string, if Sluice knows it.
pub fn pool_type_info(pool_type: &str) -> Option<&'static PoolTypeInfo> {
    POOL_TYPES.iter().find(|info| info.pool_type == pool_type)
}

/// The default base job template (`{"job_configuration", "variables"}`) for a pool type, or `None`
/// for a type Sluice has no template for.
pub fn default_base_job_template(pool_type: &str) -> Option<Value> {
    pool_type_info(pool_type).map(PoolTypeInfo::default_base_job_template)
}

/// The body of `GET /collections/views/aggregate-worker-metadata`:
/// `{collection: {type: {type, display_name, description, documentation_url, install_command,
/// is_beta, logo_url, default_base_job_configuration}}}`.
pub fn aggregate_worker_metadata() -> Value {
    let mut collections = Map::new();
    for info in &POOL_TYPES {
        let slot = collections
            .entry(info.collection)
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(workers) = slot {
            workers.insert(info.pool_type.to_owned(), info.metadata_entry());
        }
    }
    Value::Object(collections)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::domain::is_push_pool_type;

    // ---- helpers -------------------------------------------------------------------------

    /// Placeholder names (`{{ name }}`) in every string of a JSON tree; keys are never templated.
    fn placeholders(value: &Value, out: &mut BTreeSet<String>) {
        match value {
            Value::String(s) => scan_placeholders(s, out),
            Value::Array(items) => items.iter().for_each(|v| placeholders(v, out)),
            Value::Object(map) => map.values().for_each(|v| placeholders(v, out)),
            _ => {}
        }
    }

    fn scan_placeholders(s: &str, out: &mut BTreeSet<String>) {
        let mut rest = s;
        while let Some(open) = rest.find("{{") {
            let after = &rest[open + 2..];
            let Some(close) = after.find("}}") else { break };
            let name = after[..close].trim();
            let valid = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_alphanumeric() || "_.-[]$".contains(c));
            if valid {
                out.insert(name.to_owned());
                rest = &after[close + 2..];
            } else {
                rest = after;
            }
        }
    }

    fn used_placeholders(template: &Value) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        placeholders(&template["job_configuration"], &mut out);
        out
    }

    fn properties(template: &Value) -> &Map<String, Value> {
        template["variables"]["properties"]
            .as_object()
            .expect("variables.properties is an object")
    }

    fn declared(template: &Value) -> BTreeSet<String> {
        properties(template).keys().cloned().collect()
    }

    fn template_of(pool_type: &str) -> Value {
        default_base_job_template(pool_type)
            .unwrap_or_else(|| panic!("no default template for {pool_type}"))
    }

    /// `{name: default}` for every variable that declares a default.
    fn defaults_of(template: &Value) -> Value {
        let defaults: Map<String, Value> = properties(template)
            .iter()
            .filter_map(|(k, v)| v.get("default").map(|d| (k.clone(), d.clone())))
            .collect();
        Value::Object(defaults)
    }

    /// The `$ref` of a property, written directly or as `allOf: [{$ref}]`.
    fn ref_of(prop: &Value) -> Option<&str> {
        prop.get("$ref")
            .or_else(|| {
                prop.get("allOf")
                    .and_then(|a| a.get(0))
                    .and_then(|r| r.get("$ref"))
            })
            .and_then(Value::as_str)
    }

    /// Prefect's published template for `pool_type` (from the installed `prefect` package or
    /// the outside snapshot); `None`, with the test recorded as skipped, when neither is here.
    fn prefect_snapshot(test: &str, pool_type: &str) -> Option<Value> {
        sluice_testkit::prefect_template(test, pool_type).map(|(t, _)| t)
    }

    fn validator(schema: &Value) -> jsonschema::Validator {
        jsonschema::validator_for(schema).unwrap_or_else(|e| panic!("invalid JSON Schema: {e}"))
    }

    /// The schema as Prefect checks pool defaults: `required` is not enforced there.
    fn without_required(schema: &Value) -> Value {
        let mut schema = schema.clone();
        if let Value::Object(map) = &mut schema {
            map.remove("required");
        }
        schema
    }

    fn collect_prose(value: &Value, out: &mut BTreeSet<String>) {
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("title" | "description", Value::String(s)) => {
                            out.insert(s.trim().to_lowercase());
                        }
                        _ => collect_prose(v, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| collect_prose(v, out)),
            _ => {}
        }
    }

    // ---- every template ------------------------------------------------------------------

    #[test]
    fn every_default_template_parses_with_job_configuration_and_variables() {
        for info in known_pool_types() {
            let t = info.default_base_job_template();
            let jc = t["job_configuration"].as_object();
            assert!(
                jc.is_some_and(|m| !m.is_empty()),
                "{}: job_configuration",
                info.pool_type
            );
            assert_eq!(t["variables"]["type"], "object", "{}", info.pool_type);
            assert!(
                !properties(&t).is_empty(),
                "{}: no variables",
                info.pool_type
            );
            assert_eq!(
                t.as_object().map(|m| m.len()),
                Some(2),
                "{}: only job_configuration and variables",
                info.pool_type
            );
        }
    }

    #[test]
    fn unknown_pool_types_have_no_template() {
        for t in [
            "",
            "kubernetes:push",
            "cloud-run",
            "Docker",
            "ECS",
            "ecs:managed",
            "prefect:managed",
            "batch:",
        ] {
            assert!(default_base_job_template(t).is_none(), "{t}");
            assert!(pool_type_info(t).is_none(), "{t}");
        }
    }

    #[test]
    fn every_placeholder_in_job_configuration_is_a_declared_variable() {
        for info in known_pool_types() {
            let t = info.default_base_job_template();
            let undeclared: Vec<_> = used_placeholders(&t)
                .difference(&declared(&t))
                .cloned()
                .collect();
            assert!(
                undeclared.is_empty(),
                "{}: undeclared {undeclared:?}",
                info.pool_type
            );
        }
    }

    #[test]
    fn every_declared_variable_is_referenced_by_job_configuration() {
        // Required for Sluice's own Batch template; Prefect's process and ECS templates happen to
        // satisfy it too, so check them all (an unreferenced variable is silently ignored).
        for info in known_pool_types() {
            let t = info.default_base_job_template();
            let unused: Vec<_> = declared(&t)
                .difference(&used_placeholders(&t))
                .cloned()
                .collect();
            assert!(
                unused.is_empty(),
                "{}: unreferenced {unused:?}",
                info.pool_type
            );
        }
    }

    #[test]
    fn every_ref_and_required_name_resolves() {
        fn refs(value: &Value, out: &mut BTreeSet<String>) {
            match value {
                Value::Object(map) => {
                    if let Some(Value::String(r)) = map.get("$ref") {
                        out.insert(r.clone());
                    }
                    map.values().for_each(|v| refs(v, out));
                }
                Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
                _ => {}
            }
        }
        for info in known_pool_types() {
            let t = info.default_base_job_template();
            let mut found = BTreeSet::new();
            refs(&t["variables"], &mut found);
            for r in found {
                let name = r
                    .strip_prefix("#/definitions/")
                    .unwrap_or_else(|| panic!("{}: unexpected $ref {r}", info.pool_type));
                assert!(
                    t["variables"]["definitions"].get(name).is_some(),
                    "{}: {r} has no definition",
                    info.pool_type
                );
            }
            if let Some(required) = t["variables"].get("required") {
                for name in required.as_array().expect("required is a list") {
                    let name = name.as_str().expect("required names are strings");
                    assert!(
                        properties(&t).contains_key(name),
                        "{}: {name}",
                        info.pool_type
                    );
                }
            }
        }
    }

    #[test]
    fn defaults_satisfy_the_variables_schema() {
        for info in known_pool_types() {
            let t = info.default_base_job_template();
            let v = validator(&without_required(&t["variables"]));
            let defaults = defaults_of(&t);
            if let Err(e) = v.validate(&defaults) {
                panic!(
                    "{}: defaults {defaults} fail the schema: {e}",
                    info.pool_type
                );
            }
        }
    }

    #[test]
    fn ecs_variables_accept_prefect_style_job_variables_and_reject_bad_ones() {
        let t = template_of("ecs");
        let v = validator(&t["variables"]);
        let good = json!({
            "cpu": 512, "memory": 1024, "launch_type": "FARGATE_SPOT",
            "env": {"KEEP": "1", "DROP": null},
            "capacity_provider_strategy": [{"capacityProvider": "FARGATE", "weight": 1, "base": 0}],
            "aws_credentials": {"region_name": "eu-west-1", "aws_client_parameters": {"verify": false}},
        });
        assert!(v.is_valid(&good), "{:?}", v.validate(&good).err());
        for bad in [
            json!({"launch_type": "LAMBDA"}),
            json!({"cpu": "1024"}),
            json!({"capacity_provider_strategy": [{"capacityProvider": "FARGATE"}]}),
            json!({"labels": {"team": 1}}),
        ] {
            assert!(!v.is_valid(&bad), "{bad} should be rejected");
        }
    }

    // ---- Batch -----------------------------------------------------------------------------

    #[test]
    fn batch_template_requires_a_job_queue_and_enforces_aws_limits() {
        let t = template_of("batch");
        let v = validator(&t["variables"]);
        let mut ok = defaults_of(&t);
        assert!(!v.is_valid(&ok), "defaults alone lack job_queue");
        ok["job_queue"] = json!("flows");
        assert!(v.is_valid(&ok), "{:?}", v.validate(&ok).err());
        for (key, bad) in [
            ("retry_attempts", json!(0)),
            ("retry_attempts", json!(11)),
            ("timeout_seconds", json!(59)),
            ("array_size", json!(1)),
            ("array_size", json!(10_001)),
            ("platform_capabilities", json!("LAMBDA")),
            ("scheduling_priority", json!(10_000)),
            ("vcpus", json!(0)),
            ("memory", json!(1.5)),
        ] {
            let mut vars = ok.clone();
            vars[key] = bad.clone();
            assert!(!v.is_valid(&vars), "{key}={bad} should be rejected");
        }
        for (key, good) in [
            ("vcpus", json!(0.25)),
            ("retry_attempts", json!(10)),
            ("timeout_seconds", json!(60)),
            ("array_size", json!(10_000)),
            ("platform_capabilities", json!("EC2")),
            (
                "env",
                json!({"PREFECT_LOGGING_LEVEL": "DEBUG", "UNSET_ME": null}),
            ),
        ] {
            let mut vars = ok.clone();
            vars[key] = good.clone();
            assert!(
                v.is_valid(&vars),
                "{key}={good}: {:?}",
                v.validate(&vars).err()
            );
        }
    }

    #[test]
    fn batch_template_has_the_documented_defaults_and_submit_job_shape() {
        let t = template_of("batch");
        assert_eq!(
            defaults_of(&t),
            json!({
                "env": {}, "labels": {}, "retry_attempts": 1,
                "platform_capabilities": "FARGATE", "propagate_tags": false,
            })
        );
        let jc = &t["job_configuration"];
        let keys: Vec<&str> = jc
            .as_object()
            .expect("job_configuration is an object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "command",
                "env",
                "labels",
                "name",
                "aws_credentials",
                "job_definition",
                "submit_job_request"
            ]
        );
        let submit = &jc["submit_job_request"];
        assert_eq!(submit["jobName"], "{{ name }}");
        assert_eq!(submit["jobQueue"], "{{ job_queue }}");
        assert_eq!(submit["jobDefinition"], "{{ job_definition_arn }}");
        assert_eq!(submit["containerOverrides"]["command"], "{{ command }}");
        assert_eq!(submit["containerOverrides"]["environment"], "{{ env }}");
        assert_eq!(submit["retryStrategy"]["attempts"], "{{ retry_attempts }}");
        assert_eq!(
            submit["timeout"]["attemptDurationSeconds"],
            "{{ timeout_seconds }}"
        );
        assert_eq!(submit["arrayProperties"]["size"], "{{ array_size }}");
        assert_eq!(submit["tags"], "{{ labels }}");
        assert_eq!(jc["job_definition"]["type"], "container");
        assert_eq!(
            jc["job_definition"]["containerProperties"]["resourceRequirements"],
            submit["containerOverrides"]["resourceRequirements"]
        );
    }

    // ---- the pool type table and the metadata document --------------------------------------

    #[test]
    fn pool_type_table_is_consistent() {
        let types: Vec<&str> = known_pool_types().iter().map(|i| i.pool_type).collect();
        assert_eq!(
            types,
            [
                "process",
                "ecs",
                "ecs:push",
                "batch",
                "batch:push",
                "docker",
                "kubernetes"
            ]
        );
        for info in known_pool_types() {
            assert_eq!(
                info.is_push,
                is_push_pool_type(info.pool_type),
                "{}",
                info.pool_type
            );
            assert!(info.logo_url.is_none());
            assert!(!info.display_name.is_empty() && !info.description.is_empty());
            assert!(
                info.documentation_url
                    .is_none_or(|u| u.starts_with("https://docs.prefect.io/"))
            );
            if info.is_push {
                assert!(
                    info.install_command.is_none(),
                    "{}: push pools need no worker",
                    info.pool_type
                );
                let pull = info.pool_type.trim_end_matches(":push");
                assert_eq!(
                    default_base_job_template(pull),
                    Some(info.default_base_job_template()),
                    "{} shares the template of {pull}",
                    info.pool_type
                );
                assert_eq!(
                    pool_type_info(pull).map(|p| p.collection),
                    Some(info.collection)
                );
            }
        }
    }

    #[test]
    fn aggregate_metadata_lets_the_prefect_client_find_every_type_and_template() {
        let meta = aggregate_worker_metadata();
        // What `get_available_work_pool_types` does: every collection, every entry, its `type`.
        let mut seen = BTreeSet::new();
        for collection in meta.as_object().expect("collections object").values() {
            for worker in collection.as_object().expect("workers object").values() {
                seen.insert(
                    worker["type"]
                        .as_str()
                        .expect("type is a string")
                        .to_owned(),
                );
            }
        }
        // What `get_default_base_job_template_for_infrastructure_type` does.
        let find = |infra_type: &str| {
            meta.as_object()?
                .values()
                .filter_map(Value::as_object)
                .flat_map(|c| c.values())
                .find(|w| w["type"] == infra_type)
                .map(|w| w["default_base_job_configuration"].clone())
        };
        for info in known_pool_types() {
            assert!(
                seen.contains(info.pool_type),
                "{} not listed",
                info.pool_type
            );
            assert_eq!(find(info.pool_type), Some(info.default_base_job_template()));
            let entry = &meta[info.collection][info.pool_type];
            let mut keys: Vec<&str> = entry
                .as_object()
                .expect("entry is an object")
                .keys()
                .map(String::as_str)
                .collect();
            keys.sort_unstable();
            assert_eq!(
                keys,
                [
                    "default_base_job_configuration",
                    "description",
                    "display_name",
                    "documentation_url",
                    "install_command",
                    "is_beta",
                    "logo_url",
                    "type"
                ]
            );
            assert!(entry["display_name"].is_string() && entry["description"].is_string());
            assert!(entry["is_beta"].is_boolean());
        }
        assert_eq!(seen.len(), known_pool_types().len());
        let placement: Vec<(&str, Vec<&str>)> = meta
            .as_object()
            .expect("collections object")
            .iter()
            .map(|(c, w)| {
                let workers = w.as_object().expect("workers object");
                (c.as_str(), workers.keys().map(String::as_str).collect())
            })
            .collect();
        assert_eq!(
            placement,
            [
                ("prefect", vec!["process"]),
                ("prefect-aws", vec!["ecs", "ecs:push"]),
                ("sluice", vec!["batch", "batch:push"]),
                ("prefect-docker", vec!["docker"]),
                ("prefect-kubernetes", vec!["kubernetes"]),
            ]
        );
        assert!(find("cloud-run").is_none());
    }

    // ---- comparison with Prefect's published templates --------------------------------------

    #[test]
    fn process_template_matches_prefects_published_one() {
        let ours = template_of("process");
        let Some(theirs) =
            prefect_snapshot("process_template_matches_prefects_published_one", "process")
        else {
            return;
        };
        assert_eq!(ours["job_configuration"], theirs["job_configuration"]);
        let names = |t: &Value| properties(t).keys().cloned().collect::<Vec<_>>();
        assert_eq!(
            names(&ours),
            names(&theirs),
            "same variables in the same order"
        );
        for (name, theirs_prop) in properties(&theirs) {
            let ours_prop = &properties(&ours)[name];
            for key in ["type", "default", "format", "additionalProperties", "enum"] {
                assert_eq!(
                    ours_prop.get(key),
                    theirs_prop.get(key),
                    "process {name}.{key}"
                );
            }
        }
    }

    /// `pool_type`'s template against Prefect's published one: the same `job_configuration`
    /// and variables (names, order, and each one's type, default, enum, format and items),
    /// except the variables named in `added` when the reference lacks them (newer in prefect
    /// 3.9.1 than the registry snapshot).
    fn matches_prefect(test: &str, pool_type: &str, added: &[&str]) {
        let ours = template_of(pool_type);
        let Some(theirs) = prefect_snapshot(test, pool_type) else {
            return;
        };
        let mut jc = ours["job_configuration"].clone();
        let mut ours_names: Vec<String> = properties(&ours).keys().cloned().collect();
        // Only where the reference read is the older snapshot (the installed prefect 3.9.1
        // package, when the tests name it, has them).
        for name in added
            .iter()
            .filter(|n| !properties(&theirs).contains_key(**n))
        {
            if let Some(m) = jc.as_object_mut() {
                m.shift_remove(*name);
            }
            ours_names.retain(|n| n != name);
        }
        assert_eq!(
            jc, theirs["job_configuration"],
            "{pool_type} job_configuration"
        );
        let theirs_names: Vec<String> = properties(&theirs).keys().cloned().collect();
        assert_eq!(
            ours_names, theirs_names,
            "{pool_type}: same variables, same order"
        );
        for (name, theirs_prop) in properties(&theirs) {
            let ours_prop = &properties(&ours)[name];
            for key in [
                "type",
                "default",
                "format",
                "additionalProperties",
                "enum",
                "items",
                "allOf",
            ] {
                assert_eq!(
                    ours_prop.get(key),
                    theirs_prop.get(key),
                    "{pool_type} {name}.{key}"
                );
            }
        }
        for (name, def) in theirs["variables"]["definitions"]
            .as_object()
            .into_iter()
            .flatten()
        {
            let mine = &ours["variables"]["definitions"][name];
            for key in ["type", "required", "block_type_slug", "secret_fields"] {
                assert_eq!(mine.get(key), def.get(key), "{pool_type} {name}.{key}");
            }
            let fields = |d: &Value| -> Vec<(String, Option<Value>)> {
                d["properties"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), v.get("type").cloned()))
                    .collect()
            };
            assert_eq!(fields(mine), fields(def), "{pool_type} {name} fields");
        }
    }

    #[test]
    fn kubernetes_template_matches_prefects_published_one() {
        matches_prefect(
            "kubernetes_template_matches_prefects_published_one",
            "kubernetes",
            &[],
        );
    }

    #[test]
    fn docker_template_matches_prefects_published_one() {
        // prefect 3.9.1's Docker template adds `container_wait_timeout` to the snapshot's.
        matches_prefect(
            "docker_template_matches_prefects_published_one",
            "docker",
            &["container_wait_timeout"],
        );
    }

    /// Variables of Prefect's registry snapshot that the current ECS worker dropped.
    const ECS_VARIABLES_REMOVED: [&str; 3] = [
        "stream_output",
        "task_start_timeout_seconds",
        "task_watch_poll_interval",
    ];
    /// Variables the current ECS worker added.
    const ECS_VARIABLES_ADDED: [&str; 2] = [
        "prefect_api_key_secret_arn",
        "prefect_api_auth_string_secret_arn",
    ];
    /// `job_configuration` keys the current worker added, each templated with its own name.
    const ECS_JOB_CONFIGURATION_ADDED: [&str; 3] = [
        "prefect_api_key_secret_arn",
        "prefect_api_auth_string_secret_arn",
        "execution_role_arn",
    ];

    /// Defaults we state where the snapshot states none.
    fn ecs_defaults_added() -> Vec<(&'static str, Value)> {
        vec![
            ("env", json!({})),
            ("labels", json!({})),
            ("capacity_provider_strategy", json!([])),
            ("cloudwatch_logs_options", json!({})),
            ("network_configuration", json!({})),
        ]
    }

    #[test]
    fn ecs_template_matches_prefects_published_one_except_documented_differences() {
        let ours = template_of("ecs");
        let Some(theirs) = prefect_snapshot("ecs_template_matches_prefects_published_one", "ecs")
        else {
            return;
        };

        // Variable names.
        let mut expected_names = declared(&theirs);
        for name in ECS_VARIABLES_REMOVED {
            assert!(expected_names.remove(name), "snapshot lacks {name}");
        }
        expected_names.extend(ECS_VARIABLES_ADDED.map(str::to_owned));
        assert_eq!(declared(&ours), expected_names);

        // Defaults, types, enums, formats and refs of the shared variables.
        let added_defaults = ecs_defaults_added();
        for (name, theirs_prop) in properties(&theirs) {
            let Some(ours_prop) = properties(&ours).get(name) else {
                continue;
            };
            let expected_default = match added_defaults.iter().find(|(n, _)| n == name) {
                Some((_, d)) => {
                    assert!(
                        theirs_prop.get("default").is_none(),
                        "snapshot has a default for {name}"
                    );
                    Some(d)
                }
                None => theirs_prop.get("default"),
            };
            assert_eq!(
                ours_prop.get("default"),
                expected_default,
                "default of {name}"
            );
            for key in ["type", "enum", "format"] {
                assert_eq!(ours_prop.get(key), theirs_prop.get(key), "ecs {name}.{key}");
            }
            assert_eq!(ref_of(ours_prop), ref_of(theirs_prop), "$ref of {name}");
            assert_eq!(
                ours_prop.get("items").and_then(ref_of),
                theirs_prop.get("items").and_then(ref_of),
                "items of {name}"
            );
        }
        for name in ECS_VARIABLES_ADDED {
            assert_eq!(properties(&ours)[name]["type"], "string");
            assert!(properties(&ours)[name].get("default").is_none());
        }
        assert_eq!(properties(&ours)["launch_type"]["default"], "FARGATE");
        assert_eq!(
            properties(&ours)["env"]["additionalProperties"],
            json!({"anyOf": [{"type": "string"}, {"type": "null"}]}),
            "env values may be null in the current worker"
        );

        // job_configuration: the snapshot with the current worker's literals and added keys.
        let mut expected_jc = theirs["job_configuration"].clone();
        expected_jc["stream_output"] = json!(false);
        expected_jc["task_start_timeout_seconds"] = json!(0);
        expected_jc["task_watch_poll_interval"] = json!(0);
        for key in ECS_JOB_CONFIGURATION_ADDED {
            assert!(expected_jc.get(key).is_none());
            expected_jc[key] = json!(format!("{{{{ {key} }}}}"));
        }
        assert_eq!(ours["job_configuration"], expected_jc);

        // Definitions: same fields, types, defaults and block metadata.
        let defs = |t: &Value, name: &str| t["variables"]["definitions"][name].clone();
        for def in ["AwsCredentials", "AwsClientParameters", "CapacityProvider"] {
            let (o, t) = (defs(&ours, def), defs(&theirs, def));
            for key in ["type", "required", "block_type_slug", "secret_fields"] {
                assert_eq!(o.get(key), t.get(key), "{def}.{key}");
            }
            let fields = |d: &Value| {
                d["properties"]
                    .as_object()
                    .expect("definition properties")
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
            };
            assert_eq!(fields(&o), fields(&t), "{def} fields");
            for (field, tp) in t["properties"].as_object().expect("definition properties") {
                let op = &o["properties"][field];
                for key in ["type", "default", "format", "writeOnly", "anyOf"] {
                    assert_eq!(op.get(key), tp.get(key), "{def}.{field}.{key}");
                }
                assert_eq!(ref_of(op), ref_of(tp), "{def}.{field} $ref");
            }
        }
    }

    #[test]
    fn titles_and_descriptions_are_not_copied_from_prefect() {
        let mut theirs = BTreeSet::new();
        for pool_type in ["process", "ecs"] {
            let Some(template) = prefect_snapshot(
                "titles_and_descriptions_are_not_copied_from_prefect",
                pool_type,
            ) else {
                return;
            };
            collect_prose(&template, &mut theirs);
        }
        for template in [
            template_of("process"),
            template_of("ecs"),
            template_of("batch"),
        ] {
            let mut ours = BTreeSet::new();
            collect_prose(&template, &mut ours);
            let copied: Vec<_> = ours.intersection(&theirs).collect();
            assert!(copied.is_empty(), "wording taken from Prefect: {copied:?}");
        }
    }
}
