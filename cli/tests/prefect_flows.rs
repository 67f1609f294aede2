//! Real flows, written with the stock `prefect` SDK (3.x), run against `sluice server` on
//! SQLite and (with the emulator) on DynamoDB: task tags under a tag concurrency limit,
//! `concurrency()` and `rate_limit()`, with the limits made by Prefect's own CLI; blocks saved
//! and loaded (prefect-aws's too, one referring to another); a slot holder killed with SIGKILL.
//!
//! Needs `SLUICE_PREFECT_VENV` (set by `infra/test.sh`); without it the test is skipped, unless
//! `SLUICE_REQUIRE_PREFECT=1`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{SLUICE, Server, dynamodb_store};
use serde_json::Value;

fn venv() -> Option<PathBuf> {
    common::prefect_venv("prefect_flows")
}

/// `GET` on the server's API, which must succeed; the JSON answer.
fn get(server: &Server, path: &str) -> Value {
    server.api("GET", path, &Value::Null)
}

/// `POST` on the server's API, which must succeed; the JSON answer.
fn post(server: &Server, path: &str, body: &Value) -> Value {
    server.api("POST", path, body)
}

/// Runs `program ARGS` in `cwd` with Prefect pointed at `api`; must exit 0 within two minutes.
fn run(program: &Path, args: &[&str], cwd: &Path, api: &str) -> String {
    let mut child = common::prefect_command(program, cwd, api)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start");
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "{} {args:?} did not finish in two minutes",
                program.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "{} {args:?} failed ({}):\n{stdout}\n{stderr}",
        program.display(),
        out.status
    );
    stdout
}

/// Three tasks tagged `db` submitted at once, a `concurrency("gate")` block and two
/// `rate_limit("calls")` calls, both strict (a missing limit would fail the flow). Prints the
/// tasks' [start, end] times as JSON.
const FLOW: &str = r#"
import json
import time

from prefect import flow, task
from prefect.concurrency.sync import concurrency, rate_limit


@task(tags=["db"])
def query(i):
    start = time.time()
    time.sleep(0.4)
    return [start, time.time()]


@flow
def limited():
    futures = [query.submit(i) for i in range(3)]
    spans = [f.result() for f in futures]
    with concurrency("gate", occupy=1, strict=True):
        pass
    for _ in range(2):
        rate_limit("calls", strict=True)
    return spans


if __name__ == "__main__":
    print(json.dumps(limited()))
"#;

fn limits_and_tags_serialise_tasks(store_args: &[String], venv: &Path) {
    let server = Server::ready_with(store_args);
    let project = tempfile::tempdir().expect("tempdir");
    let prefect = venv.join("bin").join("prefect");
    let api = server.base.as_str();
    run(
        &prefect,
        &["concurrency-limit", "create", "db", "1"],
        project.path(),
        api,
    );
    run(
        &prefect,
        &["global-concurrency-limit", "create", "gate", "--limit", "1"],
        project.path(),
        api,
    );
    run(
        &prefect,
        &[
            "global-concurrency-limit",
            "create",
            "calls",
            "--limit",
            "5",
            "--slot-decay-per-second",
            "1",
        ],
        project.path(),
        api,
    );
    let shown = run(
        &prefect,
        &["concurrency-limit", "inspect", "db"],
        project.path(),
        api,
    );
    assert!(shown.contains("db"), "{shown}");

    std::fs::write(project.path().join("flow.py"), FLOW).expect("flow file");
    let python = venv.join("bin").join("python");
    let out = run(&python, &["flow.py"], project.path(), api);
    let spans: Vec<(f64, f64)> =
        serde_json::from_str::<Vec<Vec<f64>>>(out.lines().last().expect("the spans line"))
            .expect("spans JSON")
            .into_iter()
            .map(|s| (s[0], s[1]))
            .collect();
    assert_eq!(spans.len(), 3);
    let mut sorted = spans.clone();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    for pair in sorted.windows(2) {
        assert!(
            pair[1].0 >= pair[0].1,
            "tasks tagged db overlapped under a limit of 1: {sorted:?}"
        );
    }

    let runs = post(&server, "flow_runs/filter", &serde_json::json!({}));
    let states: Vec<&str> = runs
        .as_array()
        .expect("runs")
        .iter()
        .map(|r| r["state"]["type"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(states, ["COMPLETED"]);
    for name in ["tag:db", "gate"] {
        let limit = get(&server, &format!("v2/concurrency_limits/{name}"));
        assert_eq!(limit["active_slots"], 0, "{name} released: {limit}");
    }
}

/// Blocks saved and loaded by a flow: `Secret` with a string (saved twice, the second time
/// with `overwrite=True`) and with a dict value, and a block class of the flow's own with a
/// secret field; a variable set and read; a markdown and a table artifact. Prints what was
/// loaded and the client's checksum of Secret's schema.
const BLOCKS_FLOW: &str = r###"
import json
from pydantic import SecretStr
from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.blocks.core import Block
from prefect.blocks.system import Secret
from prefect.filesystems import LocalFileSystem
from prefect.variables import Variable
from prefect_aws import AwsCredentials, S3Bucket


class Endpoint(Block):
    url: str
    token: SecretStr


@flow
def uses_blocks():
    Secret(value="s3cr3t").save("db-password")
    Secret(value="rotated").save("db-password", overwrite=True)
    Secret(value={"user": "u", "password": "p"}).save("db-login", overwrite=True)
    Endpoint(url="https://api.example.com", token="t0k3n").save("api")
    LocalFileSystem(basepath="/srv/flows").save("scratch", overwrite=True)
    creds = AwsCredentials(aws_access_key_id="AKIAEXAMPLE", aws_secret_access_key="w1ld", region_name="eu-west-1")
    creds.save("prod", overwrite=True)
    S3Bucket(bucket_name="lake", credentials=creds).save("lake", overwrite=True)
    lake = S3Bucket.load("lake")
    Variable.set("region", "eu-west-1", overwrite=True)
    create_markdown_artifact(markdown="## Rows loaded", key="report", description="summary")
    create_table_artifact(table=[{"name": "John", "age": 30}], key="rows")
    return {
        "region": Variable.get("region"),
        "password": Secret.load("db-password").get(),
        "login": Secret.load("db-login").get(),
        "endpoint": [Endpoint.load("api").url, Endpoint.load("api").token.get_secret_value()],
        "checksum": Secret._calculate_schema_checksum(),
        "s3_bucket_checksum": S3Bucket._calculate_schema_checksum(),
        "basepath": LocalFileSystem.load("scratch").basepath,
        "lake": [lake.bucket_name, lake.credentials.aws_access_key_id,
                 lake.credentials.aws_secret_access_key.get_secret_value()],
    }


if __name__ == "__main__":
    print(json.dumps(uses_blocks()))
"###;

fn blocks_save_and_load(store_args: &[String], venv: &Path) {
    let server = Server::ready_with(store_args);
    let project = tempfile::tempdir().expect("tempdir");
    let registered = run(
        &venv.join("bin").join("prefect"),
        &["block", "register", "-m", "prefect_aws"],
        project.path(),
        &server.base,
    );
    assert!(registered.contains("S3 Bucket"), "{registered}");
    std::fs::write(project.path().join("blocks.py"), BLOCKS_FLOW).expect("flow file");
    let out = run(
        &venv.join("bin").join("python"),
        &["blocks.py"],
        project.path(),
        &server.base,
    );
    let loaded: Value =
        serde_json::from_str(out.lines().last().expect("a result line")).expect("JSON");
    assert_eq!(loaded["password"], "rotated", "{loaded}");
    assert_eq!(loaded["region"], "eu-west-1");
    assert_eq!(
        loaded["login"],
        serde_json::json!({"user": "u", "password": "p"})
    );
    assert_eq!(
        loaded["endpoint"],
        serde_json::json!(["https://api.example.com", "t0k3n"])
    );
    assert_eq!(loaded["basepath"], "/srv/flows");
    // The bucket's credentials were saved first: the bucket refers to them, and loads with them.
    assert_eq!(
        loaded["lake"],
        serde_json::json!(["lake", "AKIAEXAMPLE", "w1ld"])
    );
    let lake = get(
        &server,
        "block_types/slug/s3-bucket/block_documents/name/lake",
    );
    assert_eq!(
        lake["block_document_references"]["credentials"]["block_document"]["name"],
        "prod"
    );
    assert_eq!(
        lake["data"]["credentials"]["aws_secret_access_key"],
        "********"
    );
    // The server computes schema checksums as the client does, so the client finds its schema.
    let checksum = loaded["checksum"].as_str().expect("checksum");
    let schema = get(&server, &format!("block_schemas/checksum/{checksum}"));
    assert_eq!(schema["block_type"]["slug"], "secret");
    assert_eq!(
        schema["block_type"]["is_protected"], true,
        "installed on start"
    );
    // So does a schema with nested blocks: S3Bucket's credentials are one of two block types,
    // and AwsCredentials refers to a model of its own.
    let s3 = get(
        &server,
        "block_types/slug/s3-bucket/block_documents/name/lake",
    );
    assert_eq!(s3["block_schema"]["checksum"], loaded["s3_bucket_checksum"]);
    // Read without include_secrets, secret fields are masked.
    let password = get(
        &server,
        "block_types/slug/secret/block_documents/name/db-password",
    );
    assert_eq!(password["data"]["value"], "********");
    let endpoint = get(
        &server,
        "block_types/slug/endpoint/block_documents/name/api",
    );
    assert_eq!(
        endpoint["data"],
        serde_json::json!({"url": "https://api.example.com", "token": "********"})
    );

    // The flow completed, and its artifacts are readable and linked to its run.
    let runs = post(&server, "flow_runs/filter", &serde_json::json!({}));
    assert_eq!(runs[0]["state"]["type"], "COMPLETED", "{runs}");
    let run_id = runs[0]["id"].clone();
    let report = get(&server, "artifacts/report/latest");
    assert_eq!(report["type"], "markdown");
    assert_eq!(report["data"], "## Rows loaded");
    assert_eq!(report["flow_run_id"], run_id);
    let rows = get(&server, "artifacts/rows/latest");
    assert_eq!(rows["type"], "table");
    let table: Value =
        serde_json::from_str(rows["data"].as_str().expect("a table is sent as JSON text"))
            .expect("table JSON");
    assert_eq!(table, serde_json::json!([{"name": "John", "age": 30}]));
    let of_run = post(
        &server,
        "artifacts/count",
        &serde_json::json!({"flow_runs": {"id": {"any_": [run_id]}}}),
    );
    assert_eq!(of_run, 2);
}

#[test]
fn blocks_save_and_load_from_real_flows_on_sqlite() {
    let Some(venv) = venv() else {
        return;
    };
    blocks_save_and_load(&[], &venv);
}

#[test]
fn blocks_save_and_load_from_real_flows_on_dynamodb() {
    let Some(store) = dynamodb_store("blocks_on_dynamodb") else {
        return;
    };
    let Some(venv) = venv() else {
        return;
    };
    blocks_save_and_load(&store, &venv);
}

#[test]
fn tag_limits_concurrency_and_rate_limits_hold_for_real_flows_on_sqlite() {
    let Some(venv) = venv() else {
        return;
    };
    limits_and_tags_serialise_tasks(&[], &venv);
}

#[test]
fn tag_limits_concurrency_and_rate_limits_hold_for_real_flows_on_dynamodb() {
    let Some(store) = dynamodb_store("prefect_flows_on_dynamodb") else {
        return;
    };
    let Some(venv) = venv() else {
        return;
    };
    limits_and_tags_serialise_tasks(&store, &venv);
}

/// Holds a slot of `held` under a one-minute lease (the shortest Prefect allows) and sleeps;
/// the test kills it with SIGKILL while it holds the slot.
const HOLDER: &str = r#"
import time
from prefect.concurrency.sync import concurrency

with concurrency("held", occupy=1, lease_duration=60, strict=True):
    print("holding", flush=True)
    time.sleep(600)
"#;

fn killed_holder_frees_its_slot(store_args: &[String], venv: &Path) {
    use std::io::BufRead;
    let server = Server::ready_with(store_args);
    let project = tempfile::tempdir().expect("tempdir");
    post(
        &server,
        "v2/concurrency_limits/",
        &serde_json::json!({"name": "held", "limit": 1}),
    );
    std::fs::write(project.path().join("holder.py"), HOLDER).expect("holder file");
    let mut holder = common::prefect_command(
        &venv.join("bin").join("python"),
        project.path(),
        &server.base,
    )
    .arg("holder.py")
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .expect("start the holder");
    let mut line = String::new();
    std::io::BufReader::new(holder.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read");
    assert_eq!(line.trim(), "holding");
    let slots = || get(&server, "v2/concurrency_limits/held")["active_slots"].clone();
    assert_eq!(slots(), 1);

    holder.kill().expect("SIGKILL");
    holder.wait().expect("reaped");
    let killed = Instant::now();
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        slots(),
        1,
        "the lease still holds the slot a moment after the kill"
    );
    // Free within the lease (60 s from its last renewal) plus one expiry tick (15 s).
    while slots() != 0 {
        assert!(
            killed.elapsed() < Duration::from_secs(60 + 15 + 10),
            "the killed holder's slot was not given back within its lease"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    let leases = get(&server, "v2/concurrency_limits/held");
    assert_eq!(leases["active_slots"], 0, "{leases}");
}

#[test]
fn a_holder_killed_with_sigkill_frees_its_slot_within_its_lease_on_sqlite() {
    let Some(venv) = venv() else {
        return;
    };
    killed_holder_frees_its_slot(&[], &venv);
}

#[test]
fn a_holder_killed_with_sigkill_frees_its_slot_within_its_lease_on_dynamodb() {
    let Some(store) = dynamodb_store("killed_holder_on_dynamodb") else {
        return;
    };
    let Some(venv) = venv() else {
        return;
    };
    killed_holder_frees_its_slot(&store, &venv);
}

/// The tagged-task flow as a deployment, writing its tasks' spans to the file its `out`
/// parameter names; it also takes a `concurrency()` slot and two `rate_limit()` slots, loads a
/// Secret and a variable, and makes a markdown artifact keyed by its `key` parameter.
const DEPLOYED_FLOW: &str = r#"
import json
import time

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.blocks.system import Secret
from prefect.concurrency.sync import concurrency, rate_limit
from prefect.variables import Variable


@task(tags=["db"])
def query(i):
    start = time.time()
    time.sleep(0.4)
    return [start, time.time()]


@flow
def limited(out: str, key: str):
    spans = [f.result() for f in [query.submit(i) for i in range(3)]]
    with concurrency("gate", occupy=1, strict=True):
        secret = Secret.load("token").get()
    for _ in range(2):
        rate_limit("calls", strict=True)
    create_markdown_artifact(markdown=f"ran with {Variable.get('region')}", key=key)
    assert secret == "t0k3n"
    with open(out, "w") as f:
        json.dump(spans, f)
"#;

/// Saves what the deployed flow loads.
const DEPLOYED_SETUP: &str = r#"
from prefect.blocks.system import Secret
from prefect.variables import Variable

Secret(value="t0k3n").save("token", overwrite=True)
Variable.set("region", "eu-west-1", overwrite=True)
"#;

fn assert_serialised(spans_file: &Path) {
    let text = std::fs::read_to_string(spans_file).expect("the flow wrote its spans");
    let mut spans: Vec<Vec<f64>> = serde_json::from_str(&text).expect("spans JSON");
    assert_eq!(spans.len(), 3);
    spans.sort_by(|a, b| a[0].total_cmp(&b[0]));
    for pair in spans.windows(2) {
        assert!(
            pair[1][0] >= pair[0][1],
            "overlap under a limit of 1: {spans:?}"
        );
    }
}

/// The same flow run by Sluice's worker and by Prefect's: tasks tagged `db` serialise under
/// the tag limit either way, the limits, the Secret, the variable and the artifact work, and
/// the runs complete.
#[test]
fn tagged_tasks_serialise_in_runs_of_sluice_and_prefect_workers() {
    let Some(venv) = venv() else {
        return;
    };
    let server = Server::ready_with(&[]);
    let project = tempfile::tempdir().expect("tempdir");
    let api = server.base.as_str();
    let prefect = venv.join("bin").join("prefect");
    std::fs::write(project.path().join("flow.py"), DEPLOYED_FLOW).expect("flow file");
    std::fs::write(
        project.path().join("prefect.yaml"),
        format!(
            "name: limits\nprefect-version: 3.9.1\npull:\n\
             - prefect.deployments.steps.set_working_directory:\n    directory: {}\n\
             deployments:\n- name: tagged\n  entrypoint: flow.py:limited\n  \
             work_pool:\n    name: local\n",
            project.path().display()
        ),
    )
    .expect("prefect.yaml");
    run(
        &prefect,
        &["concurrency-limit", "create", "db", "1"],
        project.path(),
        api,
    );
    for args in [
        &["gate", "--limit", "1"][..],
        &["calls", "--limit", "5", "--slot-decay-per-second", "1"],
    ] {
        let mut all = vec!["global-concurrency-limit", "create"];
        all.extend_from_slice(args);
        run(&prefect, &all, project.path(), api);
    }
    std::fs::write(project.path().join("setup.py"), DEPLOYED_SETUP).expect("setup file");
    run(
        &venv.join("bin").join("python"),
        &["setup.py"],
        project.path(),
        api,
    );
    run(
        &prefect,
        &["work-pool", "create", "local", "--type", "process"],
        project.path(),
        api,
    );
    run(
        &prefect,
        &["--no-prompt", "deploy", "--all"],
        project.path(),
        api,
    );

    // Sluice's worker runs Prefect's engine (`prefect flow-run execute`) from the PATH.
    let path = format!(
        "{}:{}",
        venv.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for (i, worker) in ["sluice", "prefect"].into_iter().enumerate() {
        let out = project.path().join(format!("spans-{i}.json"));
        let param = format!("out={}", out.display());
        let key = format!("key=ran-by-{worker}");
        run(
            &prefect,
            &[
                "deployment",
                "run",
                "limited/tagged",
                "--param",
                &param,
                "--param",
                &key,
            ],
            project.path(),
            api,
        );
        let status = match worker {
            "sluice" => Command::new(SLUICE)
                .args(["worker", "start", "--pool", "local", "--run-once"])
                .env("SLUICE_API_URL", api)
                .env("PATH", &path)
                .env("PREFECT_HOME", project.path().join(".prefect"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("sluice worker"),
            _ => Command::new(&prefect)
                .args([
                    "worker",
                    "start",
                    "--pool",
                    "local",
                    "--type",
                    "process",
                    "--run-once",
                ])
                .current_dir(project.path())
                .env("PREFECT_API_URL", api)
                .env("PREFECT_HOME", project.path().join(".prefect"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("prefect worker"),
        };
        assert!(status.success(), "{worker} worker: {status}");
        assert_serialised(&out);
    }
    let runs = post(&server, "flow_runs/filter", &serde_json::json!({}));
    let states: Vec<&str> = runs
        .as_array()
        .expect("runs")
        .iter()
        .map(|r| r["state"]["type"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(states, ["COMPLETED", "COMPLETED"], "{runs}");
    for name in ["tag:db", "gate"] {
        let limit = get(&server, &format!("v2/concurrency_limits/{name}"));
        assert_eq!(limit["active_slots"], 0, "{limit}");
    }
    for worker in ["sluice", "prefect"] {
        let artifact = get(&server, &format!("artifacts/ran-by-{worker}/latest"));
        assert_eq!(artifact["data"], "ran with eu-west-1", "{artifact}");
        assert!(
            runs.as_array()
                .expect("runs")
                .iter()
                .any(|r| r["id"] == artifact["flow_run_id"]),
            "linked to its run: {artifact}"
        );
    }
}
