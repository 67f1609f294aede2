//! `sluice deploy` against a real `sluice server start`.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::Server;
use serde_json::{Value, json};

/// An API nobody listens on: commands that must not contact a server still work against it.
const UNREACHABLE: &str = "http://127.0.0.1:9/api";

fn write_project(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("prefect.yaml");
    std::fs::write(&path, text).expect("write prefect.yaml");
    path
}

const PROJECT: &str = r#"
definitions:
  work_pools:
    local: &local
      name: local
      work_queue_name: default
      job_variables: &base_vars
        env:
          MODE: base
          IMAGE: "{{ prefect.variables.image }}"
  schedules:
    hourly: &hourly
      interval: 3600

build:
  - prefect.deployments.steps.run_shell_script:
      id: tag
      script: echo v42

pull:
  - prefect.deployments.steps.set_working_directory:
      directory: "{{ prefect.variables.workdir }}"

deployments:
  - name: alpha
    flow_name: etl
    entrypoint: flows/etl.py:etl
    tags: [a]
    work_pool:
      <<: *local
      job_variables:
        <<: *base_vars
        command: "run --tag {{ tag.stdout }} {{ ctx.flow_run.id }}"
    schedules:
      - *hourly
  - name: beta
    flow_name: etl
    entrypoint: flows/etl.py:etl
    work_pool: *local
    schedules:
      - cron: "0 * * * *"
"#;

fn seed(server: &Server) {
    server.api(
        "POST",
        "work_pools/",
        &json!({"name": "local", "type": "process"}),
    );
    server.api(
        "POST",
        "variables/",
        &json!({"name": "image", "value": "registry/app:1.0"}),
    );
}

fn scheduled_runs(server: &Server, deployment_id: &str) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let runs = server.api(
            "POST",
            "flow_runs/filter",
            &json!({"flow_runs": {"deployment_id": {"any_": [deployment_id]}}}),
        );
        let runs = runs.as_array().cloned().unwrap_or_default();
        if !runs.is_empty() || Instant::now() > deadline {
            return runs;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn deploys_all_then_updates_and_selects_by_name() {
    let server = Server::ready();
    seed(&server);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_project(dir.path(), PROJECT);
    let file = file.to_str().expect("utf-8 path");

    let (code, out, err) = server.sluice(&[
        "deploy",
        "--all",
        "--prefect-file",
        file,
        "--job-variable",
        "stream_output=false",
    ]);
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].starts_with("deployment 'etl/alpha' created (id "),
        "{out}"
    );
    assert!(
        lines[1].starts_with("deployment 'etl/beta' created (id "),
        "{out}"
    );

    let alpha = server.json(&["deployment", "inspect", "etl/alpha"]);
    assert_eq!(alpha["work_pool_name"], "local");
    assert_eq!(alpha["work_queue_name"], "default");
    assert_eq!(alpha["tags"], json!(["a"]));
    // Merge keys, the build step's output, the variable and --job-variable, `ctx.` kept.
    assert_eq!(
        alpha["job_variables"],
        json!({
            "env": {"MODE": "base", "IMAGE": "registry/app:1.0"},
            "command": "run --tag v42 {{ ctx.flow_run.id }}",
            "stream_output": false,
        })
    );
    let schedules = alpha["schedules"].as_array().expect("schedules");
    assert_eq!(schedules.len(), 1, "{schedules:?}");
    assert_eq!(schedules[0]["schedule"]["interval"], json!(3600.0));
    // Pull steps stay templated: variables are resolved at run time.
    assert_eq!(
        alpha["pull_steps"],
        json!([{"prefect.deployments.steps.set_working_directory": {
            "directory": "{{ prefect.variables.workdir }}"
        }}])
    );
    let alpha_id = alpha["id"].as_str().expect("id").to_owned();
    assert!(
        !scheduled_runs(&server, &alpha_id).is_empty(),
        "the scheduler made no runs for etl/alpha"
    );

    let beta = server.json(&["deployment", "inspect", "etl/beta"]);
    assert_eq!(
        beta["job_variables"],
        json!({"env": {"MODE": "base", "IMAGE": "registry/app:1.0"}, "stream_output": false})
    );
    assert_eq!(beta["schedules"][0]["schedule"]["cron"], "0 * * * *");
    let beta_id = beta["id"].as_str().expect("id").to_owned();
    assert!(!scheduled_runs(&server, &beta_id).is_empty());

    // Re-deploy: updated, same ids.
    let (code, out, err) = server.sluice(&["deploy", "--all", "--prefect-file", file]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("deployment 'etl/alpha' updated (id {alpha_id})")),
        "{out}"
    );
    assert!(
        out.contains(&format!("deployment 'etl/beta' updated (id {beta_id})")),
        "{out}"
    );

    // --name glob and positional globs select.
    let (code, out, err) = server.sluice(&["deploy", "--name", "b*", "--prefect-file", file]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.trim(),
        format!("deployment 'etl/beta' updated (id {beta_id})")
    );
    let (code, out, err) = server.sluice(&["deploy", "etl/al*", "--prefect-file", file]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.trim(),
        format!("deployment 'etl/alpha' updated (id {alpha_id})")
    );
}

#[test]
fn dry_run_contacts_no_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_project(dir.path(), PROJECT);
    let nobody = Server::attach(UNREACHABLE);
    let (code, out, err) = nobody.sluice(&[
        "deploy",
        "--all",
        "--dry-run",
        "--prefect-file",
        file.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 0, "{err}");
    let planned: Value = serde_json::from_str(&out).expect("JSON");
    let planned = planned.as_array().expect("array");
    assert_eq!(planned.len(), 2);
    assert_eq!(planned[0]["name"], "alpha");
    assert_eq!(planned[0]["flow_name"], "etl");
    assert_eq!(planned[0]["body"]["work_pool_name"], "local");
    assert_eq!(
        planned[0]["build_steps"][0]["prefect.deployments.steps.run_shell_script"]["id"],
        "tag"
    );
    assert!(planned[0]["warnings"].is_array());
}

/// With the server reachable, a dry run checks each deployment's job variables against its
/// pool's schema as the real request would be checked, and fails as the deploy would.
#[test]
fn dry_run_checks_job_variables_against_the_pool() {
    let server = Server::ready();
    let (code, _, err) = server.sluice(&["work-pool", "create", "local", "--type", "process"]);
    assert_eq!(code, 0, "{err}");
    let dir = tempfile::tempdir().expect("tempdir");
    let project = |vars: &str| {
        format!(
            "deployments:\n  - name: d\n    entrypoint: f.py:f\n    work_pool:\n      name: local\n      job_variables: {vars}\n"
        )
    };
    let file = write_project(dir.path(), &project("{stream_output: false}"));
    let file = file.to_str().expect("utf-8");
    let (code, out, err) = server.sluice(&["deploy", "--all", "--dry-run", "--prefect-file", file]);
    assert_eq!(code, 0, "{err}");
    let planned: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(planned[0]["pool_check"], json!({"checked": true}));

    write_project(
        dir.path(),
        &project("{stream_output: 'not a boolean', cpus: 4}"),
    );
    let (code, out, err) = server.sluice(&["deploy", "--all", "--dry-run", "--prefect-file", file]);
    assert_eq!(code, 1, "{out}");
    assert!(err.contains("the work pool would refuse 1"), "{err}");
    let planned: Value = serde_json::from_str(&out).expect("JSON");
    let refused = planned[0]["pool_check"]["refused"]
        .as_str()
        .expect("refused");
    assert!(refused.contains("cpus"), "{refused}");
    // And the real deploy is refused the same way.
    let (code, _, err) = server.sluice(&["deploy", "--all", "--prefect-file", file]);
    assert_eq!(code, 1);
    assert!(err.contains("cpus"), "{err}");
}

#[test]
fn canary_flows_file_plans_25_deployments() {
    // A public prefect.yaml of PrefectHQ's, from the outside corpus.
    let Some(canary) = sluice_testkit::shared_testdata(
        "canary_flows_file_plans_25_deployments",
        "prefect-yaml/02-PrefectHQ-canary-flows.yaml",
    ) else {
        return;
    };
    let nobody = Server::attach(UNREACHABLE);
    let canary = canary.to_str().expect("utf-8 path");
    let (code, out, err) =
        nobody.sluice(&["deploy", "--dry-run", "--all", "--prefect-file", canary]);
    assert_eq!(code, 0, "{err}");
    let planned: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(planned.as_array().map(Vec::len), Some(25));
}

#[test]
fn missing_pool_fails_naming_it() {
    let server = Server::ready();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_project(
        dir.path(),
        "deployments:\n  - name: d\n    entrypoint: f.py:f\n    work_pool:\n      name: nowhere\n",
    );
    let (code, out, err) = server.sluice(&[
        "deploy",
        "--all",
        "--prefect-file",
        file.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(err.contains("deployment 'f/d'"), "{err}");
    assert!(err.contains("work pool 'nowhere' does not exist"), "{err}");
}

#[test]
fn malformed_yaml_names_file_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_project(
        dir.path(),
        "deployments:\n  - name: d\n    tags: [a, b\n    entrypoint: f.py:f\n",
    );
    let nobody = Server::attach(UNREACHABLE);
    let shown = file.to_str().expect("utf-8");
    let (code, _, err) = nobody.sluice(&["deploy", "--all", "--prefect-file", shown]);
    assert_eq!(code, 1);
    assert!(err.contains(&format!("{shown}:")), "{err}");
    assert!(err.contains("YAML syntax error"), "{err}");
    let line: usize = err
        .split(&format!("{shown}:"))
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no line number in {err}"));
    assert!((3..=5).contains(&line), "{err}");
}

#[test]
fn docker_and_unknown_steps_are_refused() {
    let server = Server::ready();
    server.api(
        "POST",
        "work_pools/",
        &json!({"name": "local", "type": "process"}),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_project(
        dir.path(),
        r#"
deployments:
  - name: docker
    entrypoint: f.py:f
    work_pool: {name: local}
    build:
      - prefect_docker.deployments.steps.build_docker_image:
          image_name: x
          tag: y
  - name: odd
    entrypoint: f.py:f
    work_pool: {name: local}
    push:
      - my_company.steps.upload: {}
  - name: fine
    entrypoint: f.py:f
    work_pool: {name: local}
"#,
    );
    let (code, out, err) = server.sluice(&[
        "deploy",
        "--all",
        "--prefect-file",
        file.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(
        err.contains("prefect_docker.deployments.steps.build_docker_image")
            && err.contains("not supported"),
        "{err}"
    );
    assert!(
        err.contains("unknown step `my_company.steps.upload`"),
        "{err}"
    );
    // The others still deploy.
    assert!(out.contains("deployment 'f/fine' created"), "{out}");
}

#[test]
fn api_refusal_names_the_deployment_and_detail() {
    let server = Server::ready();
    server.api(
        "POST",
        "work_pools/",
        &json!({"name": "local", "type": "process"}),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    // The process template types `env` as an object of strings.
    let file = write_project(
        dir.path(),
        "deployments:\n  - name: bad\n    entrypoint: f.py:f\n    work_pool:\n      name: local\n      job_variables:\n        env: 5\n",
    );
    let (code, out, err) = server.sluice(&[
        "deploy",
        "--all",
        "--prefect-file",
        file.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(err.contains("deployment 'f/bad'"), "{err}");
    assert!(err.contains("the API answered 4"), "{err}");
}
