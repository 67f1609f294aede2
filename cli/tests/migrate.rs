//! `sluice migrate` as the real binary; `infra-block` against a real `sluice server start`.

mod common;

use std::path::PathBuf;

use common::{SLUICE, Server};
use serde_json::{Value, json};

fn data(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/deploy/tests/data/migrate")
        .join(name)
        .display()
        .to_string()
}

/// Saves an aws-credentials block document on `server`; its id.
fn save_aws_credentials(server: &Server) -> String {
    let t = server.api(
        "POST",
        "/block_types/",
        &json!({"name": "AWS Credentials", "slug": "aws-credentials"}),
    );
    let fields = json!({"title": "AwsCredentials", "type": "object",
                        "properties": {"region_name": {"type": "string"}}});
    let schema = server.api(
        "POST",
        "/block_schemas/",
        &json!({"fields": fields, "block_type_id": t["id"], "capabilities": []}),
    );
    let doc = server.api(
        "POST",
        "/block_documents/",
        &json!({"name": "prod-aws", "data": {"region_name": "eu-west-1"},
                "block_type_id": t["id"], "block_schema_id": schema["id"]}),
    );
    doc["id"].as_str().expect("id").to_owned()
}

#[test]
fn infra_block_creates_the_pool_with_the_block_defaults() {
    let server = Server::ready();
    // The block's credentials are a saved document this server does not have: refused.
    let (code, out, err) = server.sluice(&["migrate", "infra-block", &data("ecs-task.json")]);
    assert_eq!(code, 1, "{out}");
    assert!(
        err.contains("block document 5c0ffee0-1111-4222-8333-444455556666")
            && err.contains("does not have"),
        "{err}"
    );
    // With the credentials saved here, the same block (naming the new id) migrates.
    let id = save_aws_credentials(&server);
    let dir = tempfile::tempdir().expect("tempdir");
    let block = dir.path().join("ecs-task.json");
    let text = std::fs::read_to_string(data("ecs-task.json"))
        .expect("read")
        .replace("5c0ffee0-1111-4222-8333-444455556666", &id);
    std::fs::write(&block, text).expect("write");
    let block = block.display().to_string();
    let (code, out, err) = server.sluice(&["migrate", "infra-block", &block]);
    assert_eq!(code, 0, "stdout {out} stderr {err}");
    assert!(out.contains("Created work pool \"prod-ecs\""), "{out}");
    assert!(
        err.contains(
            "skipped task_start_timeout_seconds: not supported by the ecs work pool template"
        ),
        "{err}"
    );
    let pool = server.json(&["work-pool", "inspect", "prod-ecs"]);
    assert_eq!(pool["type"], json!("ecs"));
    let props = &pool["base_job_template"]["variables"]["properties"];
    assert_eq!(props["cluster"]["default"], json!("prod-cluster"));
    assert_eq!(props["cpu"]["default"], json!(2048));
    assert_eq!(
        props["aws_credentials"]["default"],
        json!({"$ref": {"block_document_id": id}})
    );
    // The inner awsvpc object, which the ECS worker wraps again.
    assert_eq!(
        props["network_configuration"]["default"]["assignPublicIp"],
        json!("DISABLED")
    );

    // --pool names it; a second time the pool exists.
    let process = data("process-block.json");
    let args = [
        "migrate",
        "infra-block",
        process.as_str(),
        "--pool",
        "local",
    ];
    let (code, _, err) = server.sluice(&args);
    assert_eq!(code, 0, "{err}");
    let pool = server.json(&["work-pool", "inspect", "local"]);
    assert_eq!(pool["type"], json!("process"));
    let props = &pool["base_job_template"]["variables"]["properties"];
    assert_eq!(props["working_dir"]["default"], json!("/srv/flows"));
    assert_eq!(props["env"]["default"]["MODE"], json!("prod"));
    let (code, _, err) = server.sluice(&args);
    assert_eq!(code, 1);
    assert!(err.contains("pool exists"), "{err}");
}

#[test]
fn infra_block_dry_run_contacts_nothing() {
    // Nothing listens on port 9 (discard); a dry run must not try.
    let out = std::process::Command::new(SLUICE)
        .args([
            "migrate",
            "infra-block",
            &data("process-block.json"),
            "--dry-run",
        ])
        .env("SLUICE_API_URL", "http://127.0.0.1:9/api")
        .output()
        .unwrap_or_else(|e| panic!("run sluice: {e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(printed["name"], json!("local-process"));
    assert_eq!(printed["type"], json!("process"));
    assert_eq!(printed["skipped"], json!([]));
    assert_eq!(
        printed["base_job_template"]["variables"]["properties"]["working_dir"]["default"],
        json!("/srv/flows")
    );

    let out = std::process::Command::new(SLUICE)
        .args([
            "migrate",
            "infra-block",
            &data("kubernetes-job.json"),
            "--dry-run",
        ])
        .output()
        .unwrap_or_else(|e| panic!("run sluice: {e}"));
    // A kubernetes pool now (served by Prefect's Kubernetes worker).
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(printed["type"], json!("kubernetes"));
    assert_eq!(
        printed["base_job_template"]["variables"]["properties"]["namespace"]["default"],
        json!("flows")
    );
}

#[test]
fn deployment_writes_a_prefect_yaml_that_deploys() {
    let server = Server::ready();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let target = dir.path().join("prefect.yaml").display().to_string();
    let (code, out, err) = server.sluice(&[
        "migrate",
        "deployment",
        &data("github-cron.yaml"),
        "--out",
        &target,
    ]);
    assert_eq!(code, 0, "stdout {out} stderr {err}");
    assert!(err.contains("sluice migrate infra-block"), "{err}");
    let written = std::fs::read_to_string(&target).unwrap_or_else(|e| panic!("{e}"));
    // Without --out the same text goes to stdout.
    let (code, out, _) = server.sluice(&["migrate", "deployment", &data("github-cron.yaml")]);
    assert_eq!(code, 0);
    assert_eq!(out, written);
    assert!(out.starts_with("# prefect.yaml generated by `sluice migrate deployment`"));
    // The pool the deployment names comes from its infrastructure block.
    let (code, _, err) = server.sluice(&["migrate", "infra-block", &data("process-block.json")]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = server.sluice(&["deploy", "--all", "--prefect-file", &target]);
    assert_eq!(code, 0, "stdout {out} stderr {err}");
    let deployments = server.api("POST", "deployments/filter", &json!({}));
    let d = &deployments[0];
    assert_eq!(d["name"], json!("nightly-etl"));
    assert_eq!(d["work_pool_name"], json!("local-process"));
    assert_eq!(d["job_variables"]["env"]["MODE"], json!("prod"));
}
