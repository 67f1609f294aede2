//! `sluice_deploy::migrate`: infrastructure blocks → pool templates, deployment.yaml → prefect.yaml.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use sluice_deploy::migrate::{
    MigratedPool, apply_patch, expand_dotted, infra_block_to_pool, migrate_deployment, shell_join,
};
use sluice_deploy::{DeployOptions, load, plan};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/migrate")
        .join(name)
}

fn block(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(data(name)).unwrap()).unwrap()
}

fn default_of(pool: &MigratedPool, var: &str) -> Option<Value> {
    pool.base_job_template
        .pointer(&format!("/variables/properties/{var}/default"))
        .cloned()
}

fn skipped_fields(pool: &MigratedPool) -> Vec<&str> {
    pool.skipped.iter().map(|s| s.field.as_str()).collect()
}

#[test]
fn shell_join_quotes_like_shlex() {
    assert_eq!(shell_join(&["python", "-m", "x"]), "python -m x");
    assert_eq!(shell_join(&["echo", "a b", ""]), "echo 'a b' ''");
    assert_eq!(shell_join(&["it's"]), "'it'\"'\"'s'");
    assert_eq!(
        shell_join(&["$HOME", "a=b,c:d@e%f+g"]),
        "'$HOME' a=b,c:d@e%f+g"
    );
}

#[test]
fn process_block_document() {
    let pool = infra_block_to_pool(&block("process-block.json")).unwrap();
    assert_eq!(pool.pool_type, "process");
    assert_eq!(pool.block_type, "process");
    assert_eq!(pool.block_name.as_deref(), Some("local-process"));
    assert_eq!(
        default_of(&pool, "command"),
        Some(json!("python -m prefect.engine --flag 'it'\"'\"'s here'"))
    );
    assert_eq!(
        default_of(&pool, "env"),
        Some(json!({"PREFECT_LOGGING_LEVEL": "DEBUG", "MODE": "prod"}))
    );
    assert_eq!(default_of(&pool, "working_dir"), Some(json!("/srv/flows")));
    // Defaults of the block (stream_output true, empty labels, null name) change nothing.
    assert_eq!(default_of(&pool, "stream_output"), Some(json!(true)));
    assert_eq!(default_of(&pool, "labels"), None);
    assert_eq!(default_of(&pool, "name"), None);
    assert!(pool.skipped.is_empty(), "{:?}", pool.skipped);
    // job_configuration is the default one.
    let default = sluice_core::pool_types::default_base_job_template("process").unwrap();
    assert_eq!(
        pool.base_job_template["job_configuration"],
        default["job_configuration"]
    );
}

#[test]
fn bare_data_with_type_and_unsupported_fields() {
    let input = json!({
        "type": "process",
        "stream_output": false,
        "command": ["run"],
        "priority": 5,
        "_block_document_id": "x",
    });
    let pool = infra_block_to_pool(&input).unwrap();
    assert_eq!(pool.block_name, None);
    assert_eq!(default_of(&pool, "stream_output"), Some(json!(false)));
    assert_eq!(default_of(&pool, "command"), Some(json!("run")));
    assert_eq!(skipped_fields(&pool), vec!["priority"]);
    assert_eq!(
        pool.skipped[0].reason,
        "not supported by the process work pool template"
    );
    assert_eq!(
        pool.request("p"),
        json!({"name": "p", "type": "process", "base_job_template": pool.base_job_template})
    );
}

#[test]
fn ecs_task_block() {
    let pool = infra_block_to_pool(&block("ecs-task.json")).unwrap();
    assert_eq!(pool.pool_type, "ecs");
    assert_eq!(pool.block_name.as_deref(), Some("prod-ecs"));
    assert_eq!(
        default_of(&pool, "aws_credentials"),
        Some(json!({"$ref": {"block_document_id": "5c0ffee0-1111-4222-8333-444455556666"}}))
    );
    for (var, want) in [
        (
            "image",
            json!("123456789012.dkr.ecr.eu-west-1.amazonaws.com/flows:2024.1"),
        ),
        ("cpu", json!(2048)),
        ("memory", json!(4096)),
        (
            "execution_role_arn",
            json!("arn:aws:iam::123456789012:role/ecsTaskExecutionRole"),
        ),
        (
            "task_role_arn",
            json!("arn:aws:iam::123456789012:role/flow-task"),
        ),
        ("configure_cloudwatch_logs", json!(true)),
        (
            "cloudwatch_logs_options",
            json!({"awslogs-retention-in-days": "7"}),
        ),
        ("launch_type", json!("FARGATE_SPOT")),
        ("vpc_id", json!("vpc-0abc")),
        ("cluster", json!("prod-cluster")),
        ("env", json!({"EXTRA_PIP_PACKAGES": "s3fs"})),
        // The ECSTask default (true) is a default: the pool keeps its own (false).
        ("auto_deregister_task_definition", json!(false)),
    ] {
        assert_eq!(default_of(&pool, var), Some(want), "{var}");
    }
    let jc = &pool.base_job_template["job_configuration"];
    assert_eq!(
        jc["task_definition"]["requiresCompatibilities"],
        json!(["FARGATE"])
    );
    assert_eq!(
        jc["task_definition"]["containerDefinitions"][0]["name"],
        json!("prefect")
    );
    // Network patches are lifted into the variable, the others patch the run request. The
    // variable holds the inner object: Prefect's ECS worker wraps it in awsvpcConfiguration.
    assert_eq!(
        default_of(&pool, "network_configuration"),
        Some(json!({"subnets": ["subnet-1", "subnet-2"], "assignPublicIp": "DISABLED"}))
    );
    let trr = &jc["task_run_request"];
    assert_eq!(
        trr["overrides"]["ephemeralStorage"],
        json!({"sizeInGiB": 50})
    );
    assert_eq!(trr["launchType"], json!("EC2"));
    assert!(trr.get("networkConfiguration").is_none());
    // Deprecated ECSTask fields the current ECS template has no variable for.
    let mut skipped = skipped_fields(&pool);
    skipped.sort_unstable();
    assert_eq!(skipped, vec!["stream_output", "task_start_timeout_seconds"]);
    assert!(
        pool.skipped
            .iter()
            .all(|s| s.reason == "not supported by the ecs work pool template")
    );
}

#[test]
fn ecs_inline_credentials_and_bad_patch_are_reported() {
    let input = json!({
        "type": "ecs-task",
        "aws_credentials": {"aws_access_key_id": "AKIA", "region_name": "us-east-1"},
        "task_customizations": [{"op": "remove", "path": "/nope/deeper"}],
    });
    let pool = infra_block_to_pool(&input).unwrap();
    assert_eq!(default_of(&pool, "aws_credentials"), None);
    assert_eq!(
        skipped_fields(&pool),
        vec!["aws_credentials", "task_customizations"]
    );
    assert!(pool.skipped[0].reason.contains("saved block"));
    assert!(pool.skipped[1].reason.contains("task_run_request"));
    // The request is left as the default template has it.
    let default = sluice_core::pool_types::default_base_job_template("ecs").unwrap();
    assert_eq!(
        pool.base_job_template["job_configuration"]["task_run_request"],
        default["job_configuration"]["task_run_request"]
    );
}

/// KubernetesJob and DockerContainer blocks become kubernetes and docker pools (served by
/// Prefect's workers): their settings are the template's defaults, Prefect 2's pull policy
/// names are mapped, the Job customizations patch the job manifest, a saved cluster config is
/// referred to, and Prefect 2's own image (its default) is left out.
#[test]
fn kubernetes_and_docker_blocks_become_pools() {
    let pool = infra_block_to_pool(&block("kubernetes-job.json")).unwrap();
    assert_eq!(pool.pool_type, "kubernetes");
    for (var, want) in [
        ("namespace", json!("flows")),
        ("image", json!("registry.acme.io/flows:1.4")),
        ("image_pull_policy", json!("Always")),
        ("service_account_name", json!("prefect-runner")),
        ("finished_job_ttl", json!(300)),
        ("env", json!({"MODE": "prod"})),
        ("labels", json!({"team": "data"})),
        ("command", json!("python -m prefect.engine")),
        (
            "cluster_config",
            json!({"$ref": {"block_document_id": "7d4e3f9a-1c2b-4d5e-8f60-718293a4b5c6"}}),
        ),
    ] {
        assert_eq!(default_of(&pool, var), Some(want), "{var}");
    }
    let manifest = &pool.base_job_template["job_configuration"]["job_manifest"];
    assert_eq!(
        manifest["spec"]["template"]["spec"]["nodeSelector"],
        json!({"pool": "batch"})
    );
    assert_eq!(manifest["spec"]["activeDeadlineSeconds"], json!(3600));
    assert!(pool.skipped.is_empty(), "{:?}", pool.skipped);

    let docker = json!({"type": "docker-container", "image": "prefecthq/prefect:2.20.3-python3.11",
                        "image_pull_policy": "IF_NOT_PRESENT", "networks": ["flows"],
                        "volumes": ["/data:/data"], "auto_remove": true,
                        "image_registry": {"_block_document_id": "x", "block_type_slug": "docker-registry"}});
    let pool = infra_block_to_pool(&docker).unwrap();
    assert_eq!(pool.pool_type, "docker");
    assert_eq!(
        default_of(&pool, "image_pull_policy"),
        Some(json!("IfNotPresent"))
    );
    assert_eq!(default_of(&pool, "networks"), Some(json!(["flows"])));
    assert_eq!(default_of(&pool, "auto_remove"), Some(json!(true)));
    assert_eq!(
        default_of(&pool, "image"),
        None,
        "Prefect 2's default image is left out"
    );
    assert_eq!(skipped_fields(&pool), vec!["image_registry"]);

    let err = infra_block_to_pool(&json!({"type": "s3"})).unwrap_err();
    assert!(err.0.contains("not an infrastructure block"), "{err}");
    let err = infra_block_to_pool(&json!({"env": {}})).unwrap_err();
    assert!(err.0.contains("block type"), "{err}");
}

#[test]
fn json_patch_ops() {
    let mut doc = json!({"a": [1, 2], "b": {"c": 1}});
    apply_patch(
        &mut doc,
        &[
            json!({"op": "add", "path": "/a/-", "value": 3}),
            json!({"op": "add", "path": "/a/0", "value": 0}),
            json!({"op": "replace", "path": "/b/c", "value": 2}),
            json!({"op": "remove", "path": "/a/1"}),
            json!({"op": "add", "path": "/d~1e", "value": true}),
            json!({"op": "test", "path": "/b/c", "value": 2}),
            json!({"op": "copy", "from": "/b", "path": "/f"}),
            json!({"op": "move", "from": "/f/c", "path": "/g"}),
        ],
    )
    .unwrap();
    assert_eq!(
        doc,
        json!({"a": [0, 2, 3], "b": {"c": 2}, "d/e": true, "f": {}, "g": 2})
    );
    assert!(
        apply_patch(
            &mut doc,
            &[json!({"op": "replace", "path": "/zz", "value": 1})]
        )
        .is_err()
    );
    assert!(
        apply_patch(
            &mut doc,
            &[json!({"op": "add", "path": "/x/y", "value": 1})]
        )
        .is_err()
    );
    assert!(apply_patch(&mut doc, &[json!({"op": "frob", "path": "/a"})]).is_err());
}

#[test]
fn dotted_overrides_expand() {
    let m = json!({"env.A": "1", "env": {"B": "2"}, "a.b.c": 3, "cpu": 1})
        .as_object()
        .cloned()
        .unwrap();
    assert_eq!(
        Value::Object(expand_dotted(&m)),
        json!({"env": {"A": "1", "B": "2"}, "a": {"b": {"c": 3}}, "cpu": 1})
    );
}

/// Converts, writes next to a temp dir, then loads and plans with the deploy planner.
fn convert_and_plan(name: &str, pool: Option<&str>) -> (Value, Vec<String>, String) {
    let text = std::fs::read_to_string(data(name)).unwrap();
    let migrated = migrate_deployment(&text, pool).unwrap();
    let dir = tempfile_dir(name);
    let path = dir.join("prefect.yaml");
    std::fs::write(&path, &migrated.yaml).unwrap();
    let file = load(&path).unwrap();
    // What was written reads back as the document we meant.
    assert_eq!(file.document, migrated.document, "{}", migrated.yaml);
    let opts = DeployOptions {
        all: true,
        ..DeployOptions::default()
    };
    let planned = plan(&file, &opts, &|_: &str| None).unwrap();
    assert_eq!(planned.len(), 1);
    (planned[0].body.clone(), migrated.not_carried, migrated.yaml)
}

fn tempfile_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "sluice-migrate-test-{}-{}",
        std::process::id(),
        tag.replace('.', "-")
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn github_storage_and_cron() {
    let (body, not_carried, yaml) = convert_and_plan("github-cron.yaml", None);
    assert_eq!(body["name"], json!("nightly-etl"));
    assert_eq!(body["entrypoint"], json!("pipelines/etl/main.py:etl"));
    assert_eq!(body["work_pool_name"], json!("local-process"));
    assert_eq!(body["work_queue_name"], json!("nightly"));
    assert_eq!(body["version"], json!("7d1f0a3b9c"));
    assert_eq!(
        body["description"],
        json!("Loads the warehouse every night.")
    );
    assert_eq!(body["tags"], json!(["etl", "prod"]));
    assert_eq!(body["parameters"], json!({"region": "eu", "limit": 100}));
    assert_eq!(
        body["job_variables"],
        json!({"env": {"EXTRA": "1", "MODE": "prod"}, "working_dir": "/srv/flows", "stream_output": false})
    );
    assert_eq!(
        body["pull_steps"],
        json!([{"prefect.deployments.steps.git_clone": {"repository": "https://github.com/acme/flows.git", "branch": "release"}}])
    );
    let s = &body["schedules"][0];
    assert_eq!(s["active"], json!(true));
    assert_eq!(s["schedule"]["cron"], json!("0 2 * * *"));
    assert_eq!(s["schedule"]["timezone"], json!("Europe/Paris"));
    assert!(
        not_carried
            .iter()
            .any(|n| n.contains("sluice migrate infra-block")
                && n.contains("local-process")
                && n.contains("it makes a 'process' work pool")),
        "{not_carried:?}"
    );
    assert!(yaml.starts_with("# "));
    assert!(yaml.contains("# Not carried over:\n#   - the process infrastructure block"));
}

#[test]
fn s3_storage_and_interval() {
    let (body, not_carried, _) = convert_and_plan("s3-interval.yaml", None);
    assert_eq!(body["work_pool_name"], json!("ecs-pool"));
    assert_eq!(body["entrypoint"], json!("sync.py:sync"));
    assert_eq!(
        body["job_variables"],
        json!({"cpu": 512, "env": {"LOG_LEVEL": "INFO", "OTHER": "x"}})
    );
    assert_eq!(
        body["pull_steps"],
        json!([{"prefect_aws.deployments.steps.pull_from_s3": {"requires": "prefect-aws", "bucket": "acme-flows", "folder": "prod/sync"}}])
    );
    let s = &body["schedules"][0];
    assert_eq!(s["active"], json!(false));
    assert_eq!(s["schedule"]["interval"], json!(3600.0));
    assert!(not_carried.iter().any(|n| n.contains("AWS keys")));
}

#[test]
fn local_storage_with_pool_option() {
    let (body, _, _) = convert_and_plan("local.yaml", Some("local"));
    assert_eq!(body["work_pool_name"], json!("local"));
    assert_eq!(body["entrypoint"], json!("flows/hello.py:hello"));
    assert_eq!(
        body["pull_steps"],
        json!([{"prefect.deployments.steps.set_working_directory": {"directory": "/home/me/project"}}])
    );
    assert_eq!(
        body["schedules"][0]["schedule"]["rrule"],
        json!("FREQ=WEEKLY;BYDAY=MO")
    );
    assert_eq!(body["version"], json!("1.0"));
}

#[test]
fn local_without_pool_is_an_error() {
    let text = std::fs::read_to_string(data("local.yaml")).unwrap();
    let err = migrate_deployment(&text, None).unwrap_err();
    assert!(err.0.contains("--pool"), "{err}");
}

#[test]
fn yaml_quotes_ambiguous_strings() {
    let text = "name: 'yes'\nentrypoint: 'a.py:f'\nwork_pool_name: '007'\ntags: ['on', 'null', '1.5', 'x: y', '#c', '- d']\nparameters: {'true': 'null', k: ''}\n";
    let migrated = migrate_deployment(text, None).unwrap();
    let file = sluice_deploy::parse(Path::new("/p/prefect.yaml"), &migrated.yaml).unwrap();
    assert_eq!(file.document, migrated.document, "{}", migrated.yaml);
    assert_eq!(file.document["deployments"][0]["name"], json!("yes"));
    assert_eq!(
        file.document["deployments"][0]["work_pool"]["name"],
        json!("007")
    );
}

/// A schedule switched off in Prefect 2 stays off: `is_schedule_active` does not override
/// each schedule's own flag (it only switches every schedule off when false).
#[test]
fn each_schedule_keeps_its_own_active_flag() {
    let source = r#"
name: two-schedules
flow_name: etl
entrypoint: flows.py:etl
work_pool_name: local
is_schedule_active: true
schedules:
  - schedule: {cron: "0 1 * * *", timezone: UTC}
    active: true
  - schedule: {interval: 600}
    active: false
"#;
    let migrated = migrate_deployment(source, None).unwrap();
    let schedules = &migrated.document["deployments"][0]["schedules"];
    assert_eq!(schedules[0]["active"], json!(true));
    assert_eq!(schedules[1]["active"], json!(false), "{schedules}");
    let off = source.replace("is_schedule_active: true", "is_schedule_active: false");
    let migrated = migrate_deployment(&off, None).unwrap();
    let schedules = &migrated.document["deployments"][0]["schedules"];
    assert_eq!(schedules[0]["active"], json!(false));
    assert_eq!(schedules[1]["active"], json!(false));
}

/// prefect-aws's S3Bucket storage (`s3-bucket`) becomes a pull_from_s3 step, its saved
/// credentials block referred to by name; deploy then keeps that step, not a local directory.
#[test]
fn s3_bucket_storage_becomes_a_pull_step() {
    let source = r#"
name: from-bucket
flow_name: etl
entrypoint: flows.py:etl
path: etl
work_pool_name: local
storage:
  bucket_name: acme-flows
  bucket_folder: prod/
  credentials:
    aws_access_key_id: null
    _block_document_id: 6a7e0c0e-2c11-4f9a-8b7e-4d1f3a5b6c7d
    _block_document_name: prod-aws
    _is_anonymous: false
    block_type_slug: aws-credentials
  _block_document_id: 0f0e0d0c-0b0a-4909-8807-060504030201
  _block_document_name: flows-bucket
  _is_anonymous: false
  block_type_slug: s3-bucket
  _block_type_slug: s3-bucket
"#;
    let migrated = migrate_deployment(source, None).unwrap();
    let entry = &migrated.document["deployments"][0];
    assert_eq!(
        entry["pull"],
        json!([{"prefect_aws.deployments.steps.pull_from_s3": {
            "requires": "prefect-aws", "bucket": "acme-flows", "folder": "prod",
            "credentials": "{{ prefect.blocks.aws-credentials.prod-aws }}"}}])
    );
    assert_eq!(entry["entrypoint"], json!("etl/flows.py:etl"));
    assert!(
        !migrated.not_carried.iter().any(|n| n.contains("storage")),
        "{:?}",
        migrated.not_carried
    );
}

/// Prefect 2's CLI wrote overrides as strings, and agent-era keys with them: the migrated
/// job variables fit the ECS pool's schema (so deploy accepts them), the agent-only keys are
/// named and left out, and a value that cannot fit stops the migration with its name.
#[test]
fn overrides_fit_the_pool_they_go_to() {
    let source = r#"
name: typed
flow_name: etl
entrypoint: flows.py:etl
work_pool_name: ecs-pool
infrastructure:
  type: ecs-task
  _block_document_name: prod-ecs
infra_overrides:
  cpu: '512'
  memory: "1024"
  env.LOG_LEVEL: DEBUG
  task_customizations: '[{"op": "add", "path": "/overrides/ephemeralStorage", "value": {"sizeInGiB": 50}}]'
  customizations: []
"#;
    let migrated = migrate_deployment(source, None).unwrap();
    let vars = &migrated.document["deployments"][0]["work_pool"]["job_variables"];
    assert_eq!(
        vars,
        &json!({"cpu": 512, "memory": 1024, "env": {"LOG_LEVEL": "DEBUG"}})
    );
    for key in ["task_customizations", "customizations"] {
        assert!(
            migrated
                .not_carried
                .iter()
                .any(|n| n.starts_with(&format!("infra_overrides.{key}:"))),
            "{:?}",
            migrated.not_carried
        );
    }
    let template = sluice_core::pool_types::default_base_job_template("ecs").unwrap();
    let variables = vars.as_object().unwrap();
    sluice_core::schema::validate_job_variables(&template["variables"], variables, false)
        .expect("what migrate writes, the ECS pool accepts");

    let bad = source.replace("cpu: '512'", "cpu: lots");
    let err = migrate_deployment(&bad, None).unwrap_err().to_string();
    assert!(err.contains("infra_overrides.cpu"), "{err}");
}

/// A kubernetes deployment's overrides, as the 2.x CLI wrote them, fit the kubernetes pool.
#[test]
fn kubernetes_overrides_map_pull_policy_and_types() {
    let source = r#"
name: k8s-etl
flow_name: etl
entrypoint: flows.py:etl
infrastructure:
  type: kubernetes-job
  _block_document_name: k8s
infra_overrides:
  image_pull_policy: IF_NOT_PRESENT
  finished_job_ttl: '600'
  stream_output: 'false'
  customizations: []
"#;
    let migrated = migrate_deployment(source, None).unwrap();
    let entry = &migrated.document["deployments"][0];
    assert_eq!(entry["work_pool"]["name"], json!("k8s"));
    assert_eq!(
        entry["work_pool"]["job_variables"],
        json!({"image_pull_policy": "IfNotPresent", "finished_job_ttl": 600, "stream_output": false})
    );
    let template = sluice_core::pool_types::default_base_job_template("kubernetes").unwrap();
    sluice_core::schema::validate_job_variables(
        &template["variables"],
        entry["work_pool"]["job_variables"].as_object().unwrap(),
        false,
    )
    .expect("the kubernetes pool accepts what migrate writes");
}

/// An inline (unsaved) infrastructure block has no pool to become: its settings travel with
/// the deployment as job variables, under the deployment's own overrides.
#[test]
fn inline_infrastructure_settings_become_job_variables() {
    let source = r#"
name: inline
flow_name: etl
entrypoint: flows.py:etl
work_pool_name: local
infrastructure:
  type: process
  env: {MODE: batch, REGION: eu}
  working_dir: /srv/flows
  stream_output: true
  _is_anonymous: true
  _block_document_name: anonymous-9f2c
infra_overrides:
  env.MODE: interactive
"#;
    let migrated = migrate_deployment(source, None).unwrap();
    let vars = &migrated.document["deployments"][0]["work_pool"]["job_variables"];
    assert_eq!(
        vars,
        &json!({"env": {"MODE": "interactive", "REGION": "eu"}, "working_dir": "/srv/flows"}),
        "the override lands inside the block's env, as the agent applied it"
    );
    assert!(
        !migrated
            .not_carried
            .iter()
            .any(|n| n.contains("infrastructure block")),
        "{:?}",
        migrated.not_carried
    );
    let ecs = r#"
name: inline-ecs
flow_name: etl
entrypoint: flows.py:etl
work_pool_name: ecs-pool
infrastructure:
  type: ecs-task
  cpu: 1024
  cluster: prod
  task_customizations: [{"op": "add", "path": "/overrides/ephemeralStorage", "value": {"sizeInGiB": 50}}]
"#;
    let migrated = migrate_deployment(ecs, None).unwrap();
    let vars = &migrated.document["deployments"][0]["work_pool"]["job_variables"];
    assert_eq!(vars, &json!({"cpu": 1024, "cluster": "prod"}));
    assert!(
        migrated
            .not_carried
            .iter()
            .any(|n| n.contains("changes to the job itself")),
        "{:?}",
        migrated.not_carried
    );
}

/// With a saved block, an override of one key of a mapping keeps the block's other keys: the
/// agent merged `env.MODE` into the block's env, and a worker replaces the pool's env whole.
#[test]
fn partial_mapping_overrides_keep_the_blocks_other_keys() {
    let source = r#"
name: saved
flow_name: etl
entrypoint: flows.py:etl
infrastructure:
  type: process
  env: {MODE: batch, REGION: eu}
  _block_document_name: local-process
  _is_anonymous: false
infra_overrides:
  env.MODE: interactive
"#;
    let migrated = migrate_deployment(source, None).unwrap();
    let entry = &migrated.document["deployments"][0];
    assert_eq!(entry["work_pool"]["name"], json!("local-process"));
    assert_eq!(
        entry["work_pool"]["job_variables"],
        json!({"env": {"MODE": "interactive", "REGION": "eu"}})
    );
}
