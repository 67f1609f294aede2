//! Every real prefect.yaml of the outside corpus (`shared/testdata/prefect-yaml` beside the
//! repository, public files the project does not own) either plans with `--all` or fails with the
//! error Prefect would give (see the comment on each failing case). Without the corpus each test
//! is recorded as skipped.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use serde_json::{Value, json};
use sluice_deploy::{DeployError, DeployOptions, PlannedDeployment, load, plan};

const CORPUS: &str = "prefect-yaml";

fn path(file: &str) -> PathBuf {
    sluice_testkit::repo_root()
        .join("../shared/testdata")
        .join(CORPUS)
        .join(file)
}

/// Whether the corpus is here; records `test` as skipped when it is not.
fn corpus(test: &str) -> bool {
    sluice_testkit::shared_testdata(test, CORPUS).is_some()
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn all() -> DeployOptions {
    DeployOptions {
        all: true,
        ..DeployOptions::default()
    }
}

fn plan_file(file: &str, opts: &DeployOptions) -> Result<Vec<PlannedDeployment>, DeployError> {
    let project = load(&path(file))?;
    plan(&project, opts, &no_env)
}

fn ok(file: &str) -> Vec<PlannedDeployment> {
    plan_file(file, &all()).unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn err(file: &str, opts: &DeployOptions) -> DeployError {
    match plan_file(file, opts) {
        Ok(p) => panic!("{file}: expected an error, planned {} deployments", p.len()),
        Err(e) => e,
    }
}

fn names(planned: &[PlannedDeployment]) -> Vec<&str> {
    planned.iter().map(|p| p.name.as_str()).collect()
}

fn by_name<'a>(planned: &'a [PlannedDeployment], name: &str) -> &'a PlannedDeployment {
    planned.iter().find(|p| p.name == name).unwrap()
}

#[test]
fn every_testdata_file_is_covered() {
    if !corpus("every_testdata_file_is_covered") {
        return;
    }
    let dir = path("");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 25, "{files:?}");
}

#[test]
fn f01_integration_tests_anchors_and_legacy_schedule() {
    if !corpus("f01_integration_tests_anchors_and_legacy_schedule") {
        return;
    }
    let p = ok("01-PrefectHQ-integration-tests.yaml");
    assert_eq!(p.len(), 15);
    assert_eq!(p[0].name, "Automations Tracer");
    assert_eq!(
        p[0].body["schedules"][0]["schedule"]["interval"],
        json!(30.0)
    );
    let helm = by_name(&p, "Hello Tasks - Helm");
    assert_eq!(helm.body["work_queue_name"], "helm");
    assert_eq!(
        helm.body["job_variables"]["namespace"],
        "integration-tests-prd-helm"
    );
    assert_eq!(helm.body["schedules"][0]["schedule"]["cron"], "*/5 * * * *");
    assert_eq!(
        helm.body["description"],
        "Runs a test flow to test integration with our API\n"
    );
    // Top-level git_clone pull with a block reference left for the API.
    assert_eq!(
        helm.body["pull_steps"][0]["prefect.deployments.steps.git_clone"]["access_token"],
        "{{ prefect.blocks.secret.integration-tests-contents-ro-pat }}"
    );
    assert!(
        helm.warnings
            .iter()
            .any(|w| w.contains("prefect.blocks.secret"))
    );
    assert_eq!(helm.flow_name.as_deref(), Some("hello_tasks_entry"));
}

#[test]
fn f02_canary_merge_keys_and_deployment_pull() {
    if !corpus("f02_canary_merge_keys_and_deployment_pull") {
        return;
    }
    let p = ok("02-PrefectHQ-canary-flows.yaml");
    assert_eq!(p.len(), 25);
    let v = by_name(&p, "Deployment Concurrency - Prefect 3.4.10");
    assert_eq!(v.body["work_pool_name"], "integration-tests");
    assert_eq!(v.body["job_variables"]["env"]["PREFECT_VERSION"], "3.4.10");
    let v2 = by_name(&p, "Tag-based Concurrency Limits - Prefect 2.20");
    assert_eq!(v2.body["job_variables"]["env"]["PREFECT_VERSION"], "2.20");
    let db = by_name(&p, "Database Cleanup");
    assert_eq!(db.body["parameters"]["config"]["days_to_keep"], 7);
    assert_eq!(db.body["schedules"][0]["schedule"]["cron"], "0 */3 * * *");
    assert_eq!(db.body["tags"], json!(["maintenance", "expected:success"]));
}

#[test]
fn f03_test_flows_needs_a_pool_for_the_first_entry() {
    if !corpus("f03_test_flows_needs_a_pool_for_the_first_entry") {
        return;
    }
    // `artifacts` has no work_pool: Prefect's `deploy --all --no-prompt` stops with "A work pool
    // is required to deploy this flow...". With --pool every entry plans.
    let e = err("03-PrefectHQ-test_flows.yaml", &all());
    let msg = e.to_string();
    assert!(
        msg.contains(":18:") && msg.contains("work_pool.name"),
        "{msg}"
    );
    let opts = DeployOptions {
        pool: Some("override".into()),
        ..all()
    };
    let p = plan_file("03-PrefectHQ-test_flows.yaml", &opts).unwrap();
    assert_eq!(p.len(), 7);
    assert_eq!(p[0].body["work_pool_name"], "override");
    assert!(
        p[0].body["schedules"][0]["schedule"]["rrule"]
            .as_str()
            .unwrap()
            .contains("FREQ=WEEKLY")
    );
    assert_eq!(
        p[3].body["schedules"][0]["schedule"]["timezone"],
        "America/Chicago"
    );
    assert_eq!(
        p[1].body["job_variables"]["image"],
        "prefecthq/prefect-dev:main-python3.10"
    );
}

#[test]
fn f04_qa_wolf_folded_descriptions() {
    if !corpus("f04_qa_wolf_folded_descriptions") {
        return;
    }
    let p = ok("04-PrefectHQ-qa-wolf-flows.yaml");
    assert!(p.len() > 10);
    assert_eq!(p[0].name, "oneTask");
    let d = p[0].body["description"].as_str().unwrap();
    assert!(
        d.starts_with("### Basic hello world flow\n```python\n"),
        "{d}"
    );
    assert!(d.contains("print(\"hello again\", name)"));
    // No pull section anywhere: the generated set_working_directory.
    let dir =
        p[0].body["pull_steps"][0]["prefect.deployments.steps.set_working_directory"]["directory"]
            .as_str()
            .unwrap();
    assert!(dir.ends_with("prefect-yaml"), "{dir}");
}

#[test]
fn f05_kubernetes_manifest_is_not_a_prefect_yaml() {
    if !corpus("f05_kubernetes_manifest_is_not_a_prefect_yaml") {
        return;
    }
    let e = err("05-PrefectHQ-prefect-recipes.yaml", &all());
    assert!(matches!(e, DeployError::NotAProjectFile { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("not a prefect.yaml") && msg.contains("Kubernetes"),
        "{msg}"
    );
}

#[test]
fn f06_docker_steps_and_step_outputs_left_as_is() {
    if !corpus("f06_docker_steps_and_step_outputs_left_as_is") {
        return;
    }
    let p = ok("06-RJ-SMTR-pipelines_v3.yaml");
    assert_eq!(
        names(&p),
        ["rj-capture--gtfs--staging", "rj-capture--gtfs--prod"]
    );
    assert_eq!(p[0].body["version"], "{{ build-image.tag }}");
    assert_eq!(p[0].build_steps.len(), 2);
    assert_eq!(p[0].push_steps.len(), 1);
    assert_eq!(p[0].body["concurrency_limit"], 1);
    assert_eq!(p[1].body["concurrency_limit"], 1);
    assert_eq!(
        p[1].body["concurrency_options"],
        json!({"collision_strategy": "CANCEL_NEW"})
    );
    assert_eq!(
        p[1].body["schedules"][0]["schedule"]["timezone"],
        "America/Sao_Paulo"
    );
    assert!(
        p[1].warnings
            .iter()
            .any(|w| w.contains("get-commit-hash.stdout"))
    );
}

#[test]
fn f07_env_templates_and_deployment_pull() {
    if !corpus("f07_env_templates_and_deployment_pull") {
        return;
    }
    let env = |k: &str| (k == "FLOWS_DOCKER_IMAGE").then(|| "repo/flows:1".to_owned());
    let project = load(&path("07-SwissOpenEM-ScopeMArchiver.yaml")).unwrap();
    let p = plan(&project, &all(), &env).unwrap();
    assert_eq!(
        names(&p),
        [
            "dataset_creation",
            "datasets_archival",
            "datasets_retrieval"
        ]
    );
    assert_eq!(p[0].body["job_variables"]["image"], "repo/flows:1");
    // Unset env vars stay verbatim (remove_notset=False).
    assert_eq!(
        p[0].body["job_variables"]["networks"][0],
        "{{ $PREFECT_NETWORK }}"
    );
    assert_eq!(p[0].body["description"], Value::Null);
    assert_eq!(
        p[0].body["pull_steps"],
        json!([{"prefect.deployments.steps.set_working_directory": {"directory": "/home/dev"}}])
    );
    assert!(
        p[2].warnings
            .iter()
            .any(|w| w.contains("work_pool.concurrency_limit"))
    );
}

#[test]
fn f08_flow_name_given() {
    if !corpus("f08_flow_name_given") {
        return;
    }
    let p = ok("08-chiplusplus-access-iq-platform.yaml");
    assert_eq!(names(&p), ["dev"]);
    assert_eq!(p[0].flow_name.as_deref(), Some("daily-ingest"));
    assert_eq!(p[0].body["job_variables"]["cpu"], 1024);
    assert_eq!(
        p[0].body["schedules"][0]["schedule"]["timezone"],
        "Europe/London"
    );
    assert_eq!(p[0].body["parameters"], json!({"env": "dev"}));
}

#[test]
fn f09_interval_with_anchor() {
    if !corpus("f09_interval_with_anchor") {
        return;
    }
    let p = ok("09-Moortiii-prefect-pants.yaml");
    assert_eq!(names(&p), ["example-deployment"]);
    let s = &p[0].body["schedules"][0]["schedule"];
    assert_eq!(s["interval"], json!(3600.0));
    assert!(
        s["anchor_date"]
            .as_str()
            .unwrap()
            .starts_with("2023-10-30T15:41:44")
    );
    assert_eq!(p[0].body["work_queue_name"], Value::Null);
}

#[test]
fn f10_s3_push_pull_and_extra_schedule_keys() {
    if !corpus("f10_s3_push_pull_and_extra_schedule_keys") {
        return;
    }
    let p = ok("10-3commacapital-prefect-flows.yaml");
    assert_eq!(p.len(), 4);
    assert_eq!(p[0].name, "01 Deploy Wallet Valuations");
    assert_eq!(p[0].push_steps.len(), 1);
    assert_eq!(p[0].body["pull_steps"].as_array().unwrap().len(), 2);
    assert_eq!(p[0].body["schedules"][0]["schedule"]["cron"], "0 16 * * *");
    assert!(p[0].warnings.iter().any(|w| w.contains("max_active_runs")));
}

#[test]
fn f11_genomehubs_anchor_on_own_line_and_triggers() {
    if !corpus("f11_genomehubs_anchor_on_own_line_and_triggers") {
        return;
    }
    let p = ok("11-genomehubs-data.yaml");
    assert_eq!(p[0].name, "update-ncbi-datasets");
    assert_eq!(p[0].body["work_pool_name"], "goat-data");
    assert_eq!(p[0].body["schedules"][0]["schedule"]["cron"], "5 0 * * 1-6");
    let fpv = by_name(&p, "fetch-parse-validate-ncbi-datasets");
    assert_eq!(fpv.triggers.len(), 1);
    assert_eq!(fpv.body["schedules"], json!([]));
    assert!(
        fpv.body["parameters"]["work_dir"]
            .as_str()
            .unwrap()
            .contains("{{ prefect.variables.date }}")
    );
}

#[test]
fn f12_pull_null_gets_default() {
    if !corpus("f12_pull_null_gets_default") {
        return;
    }
    let p = ok("12-9MRTAE-ingest-aws-s3.yaml");
    assert_eq!(p.len(), 3);
    assert_eq!(
        p[0].body["job_variables"]["image_pull_secrets"],
        json!(["gitlab-registry"])
    );
    assert_eq!(
        p[0].body["parameters"],
        json!({"year": null, "month": null})
    );
    assert!(
        p[0].body["pull_steps"][0]
            .get("prefect.deployments.steps.set_working_directory")
            .is_some()
    );
    assert_eq!(
        p[0].body["schedules"][0]["schedule"]["timezone"],
        "Asia/Bangkok"
    );
}

#[test]
fn f13_shell_pull_steps_kept_with_step_refs() {
    if !corpus("f13_shell_pull_steps_kept_with_step_refs") {
        return;
    }
    let p = ok("13-Artoss-labour_market_AU.yaml");
    assert_eq!(
        names(&p),
        ["labour-daily-monitor", "labour-warehouse-mirror"]
    );
    assert_eq!(p[0].body["pull_steps"].as_array().unwrap().len(), 3);
    assert_eq!(
        p[0].body["pull_steps"][1]["prefect.deployments.steps.run_shell_script"]["directory"],
        "{{ clone.directory }}"
    );
    // `job_variables` outside `work_pool` is not a Prefect setting: ignored, with a warning.
    assert_eq!(p[0].body["job_variables"], json!({}));
    assert!(p[0].warnings.iter().any(|w| w.contains("`job_variables`")));
}

#[test]
fn f14_schedule_and_schedules_together_is_an_error() {
    if !corpus("f14_schedule_and_schedules_together_is_an_error") {
        return;
    }
    // Prefect 3: "Both 'schedule' and 'schedules' keys are present in the deployment
    // configuration. Please use only use `schedules`."
    let e = err("14-mitbal-harvest.yaml", &all());
    let msg = e.to_string();
    assert!(
        msg.contains("14-mitbal-harvest.yaml:8:") && msg.contains("schedule"),
        "{msg}"
    );
}

#[test]
fn f15_null_schedule_with_empty_schedules_is_fine() {
    if !corpus("f15_null_schedule_with_empty_schedules_is_fine") {
        return;
    }
    let p = ok("15-bennettoxford-openprescribing-hospitals.yaml");
    assert_eq!(
        names(&p),
        ["scmd-full-pipeline", "scmd-import", "scmd-load-only"]
    );
    assert_eq!(p[1].body["parameters"]["run_load_flows"], false);
    assert_eq!(p[0].body["pull_steps"].as_array().unwrap().len(), 2);
}

#[test]
fn f16_no_work_pool_needs_pool_option() {
    if !corpus("f16_no_work_pool_needs_pool_option") {
        return;
    }
    let e = err("16-limaofeng-quantx.yaml", &all());
    assert!(e.to_string().contains("--pool"), "{e}");
    let opts = DeployOptions {
        pool: Some("local".into()),
        ..all()
    };
    let p = plan_file("16-limaofeng-quantx.yaml", &opts).unwrap();
    assert_eq!(p.len(), 11);
    let ps = by_name(&p, "position-sync");
    assert_eq!(ps.body["schedules"].as_array().unwrap().len(), 2);
    assert_eq!(
        ps.body["schedules"][0]["parameters"],
        json!({"sync_market_data": false})
    );
    assert_eq!(by_name(&p, "instrument-sync").body["schedules"], json!([]));
    assert_eq!(
        by_name(&p, "daily-trading-sync").body["schedules"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
}

#[test]
fn f17_docker_build_and_unknown_keys() {
    if !corpus("f17_docker_build_and_unknown_keys") {
        return;
    }
    let p = ok("17-mediacloud-sous-chef.yaml");
    assert_eq!(names(&p), ["sous-chef-s3"]);
    assert_eq!(
        p[0].body["job_variables"]["image"],
        "{{ build_image.image }}"
    );
    assert_eq!(p[0].build_steps.len(), 1);
    assert!(
        p[0].warnings
            .iter()
            .any(|w| w.contains("is_schedule_active"))
    );
}

#[test]
fn f18_pwd_from_environment() {
    if !corpus("f18_pwd_from_environment") {
        return;
    }
    let env = |k: &str| (k == "PWD").then(|| "/srv/project".to_owned());
    let project = load(&path("18-uclh-criu-crdm-tools.yaml")).unwrap();
    let p = plan(&project, &all(), &env).unwrap();
    assert_eq!(
        p[0].body["pull_steps"][0]["prefect.deployments.steps.set_working_directory"]["directory"],
        "/srv/project"
    );
    assert_eq!(
        p[0].body["schedules"][0]["schedule"]["timezone"],
        Value::Null
    );
    assert_eq!(p[0].body["concurrency_limit"], 1);
}

#[test]
fn f19_empty_pull_means_no_pull_steps() {
    if !corpus("f19_empty_pull_means_no_pull_steps") {
        return;
    }
    let p = ok("19-yeongseon-polymap-korea.yaml");
    assert_eq!(names(&p), ["curated-publish"]);
    assert_eq!(p[0].body["pull_steps"], json!([]));
    assert_eq!(p[0].body["version"], "0.1.0");
}

#[test]
fn f20_unnamed_template_entry() {
    if !corpus("f20_unnamed_template_entry") {
        return;
    }
    // The first entry is Prefect's empty template (no name, no entrypoint, no pool); Prefect's
    // `deploy --all --no-prompt` skips it ("Discovered unnamed deployment. Skipping...") and
    // deploys the other. --name picks the other too.
    let p = ok("20-Autonomous-Finance-dataos-pipeline.yaml");
    assert_eq!(names(&p), ["my-git-deployment"]);
    let project = load(&path("20-Autonomous-Finance-dataos-pipeline.yaml")).unwrap();
    assert_eq!(project.unnamed_entries(), [0]);
    let opts = DeployOptions {
        names: vec!["my-git-*".into()],
        ..DeployOptions::default()
    };
    let p = plan_file("20-Autonomous-Finance-dataos-pipeline.yaml", &opts).unwrap();
    assert_eq!(names(&p), ["my-git-deployment"]);
    assert_eq!(p[0].flow_name.as_deref(), Some("fetch_files_from_arweave"));
}

#[test]
fn f21_odd_keys_ignored_pull_mapping_wrapped() {
    if !corpus("f21_odd_keys_ignored_pull_mapping_wrapped") {
        return;
    }
    let p = ok("21-MarcoTulioGT-iac_gcp_prefect.yaml");
    assert_eq!(names(&p), ["local-deployment"]);
    assert_eq!(p[0].body["pull_steps"], json!([{"type": "local"}]));
    assert_eq!(p[0].body["path"], Value::Null);
    assert!(p[0].warnings.iter().any(|w| w.contains("infrastructure")));
    assert!(p[0].warnings.iter().any(|w| w.contains("pull step #0")));
}

#[test]
fn f22_bad_indentation_is_a_syntax_error_with_line() {
    if !corpus("f22_bad_indentation_is_a_syntax_error_with_line") {
        return;
    }
    // `- name: ecs` followed by more-indented `version:` is invalid YAML; PyYAML says
    // "mapping values are not allowed here" at line 24.
    let e = err("22-earthref-FIESTA.yaml", &all());
    assert!(matches!(e, DeployError::Syntax { line: 24, .. }), "{e:?}");
}

#[test]
fn f23_interval_and_cron_legacy_schedules() {
    if !corpus("f23_interval_and_cron_legacy_schedules") {
        return;
    }
    let p = ok("23-billybjork-heaters.yaml");
    assert_eq!(p.len(), 4);
    assert_eq!(
        p[0].body["schedules"][0]["schedule"]["interval"],
        json!(60.0)
    );
    assert_eq!(p[1].body["schedules"][0]["schedule"]["cron"], "0 0 * * 0");
    assert_eq!(p[2].flow_name.as_deref(), Some("process-clip-post-review"));
    assert_eq!(p[3].body["tags"][1], "on\u{2010}demand");
}

#[test]
fn f24_float_version_becomes_text() {
    if !corpus("f24_float_version_becomes_text") {
        return;
    }
    let p = ok("24-levyvix-scraper-filmes.yaml");
    assert_eq!(p[0].body["version"], "1.0");
    assert_eq!(p[0].body["concurrency_limit"], 1);
    assert_eq!(
        p[0].body["pull_steps"][0]["prefect.deployments.steps.git_clone"]["branch"],
        "main"
    );
}

#[test]
fn f25_docker_build_default_pull_dir_and_run_time_placeholders() {
    if !corpus("f25_docker_build_default_pull_dir_and_run_time_placeholders") {
        return;
    }
    let p = ok("25-Brennan-Chesley-FLP-en_banc.yaml");
    assert_eq!(
        names(&p),
        ["hello-flow", "scraper-run", "sqlmesh-transforms"]
    );
    assert_eq!(
        p[0].body["pull_steps"],
        json!([{"prefect.deployments.steps.set_working_directory": {"directory": "/opt/prefect/prefect-yaml"}}])
    );
    assert_eq!(
        p[0].body["job_variables"]["env"]["TS_HOSTNAME"],
        "{{ flow_run.name }}"
    );
}
