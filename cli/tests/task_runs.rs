//! A real flow, written with the stock `prefect` SDK, run against `sluice server` (SQLite, and
//! DynamoDB on the emulator): its task runs reach Sluice as events over the `/events/in`
//! WebSocket and are recorded with the final state and state history Prefect's own server
//! records for the same flow. `prefect events stream` shows a flow's own event and the
//! server's flow-run events live.
//!
//! The expectation below was produced by running this flow against `prefect server start`
//! (3.9.1) and reading `/api/task_runs/filter` and `/api/task_run_states/` back.
//!
//! Needs `SLUICE_PREFECT_VENV` (set by `infra/test.sh`); skipped without it unless
//! `SLUICE_REQUIRE_PREFECT=1`.

mod common;

use std::path::{Path, PathBuf};

use common::{Server, dynamodb_store};
use serde_json::{Value, json};

fn venv() -> Option<PathBuf> {
    common::prefect_venv("task_runs")
}

/// Twenty task runs: a task retried twice, a failing task the flow catches, `.map()` over ten
/// inputs, six `.submit()` futures, and a subflow (its parent task run, and one task inside).
const FLOW: &str = r#"
import json

from prefect import flow, task

attempts = {"n": 0}


@task(retries=2, retry_delay_seconds=0)
def flaky():
    attempts["n"] += 1
    if attempts["n"] < 3:
        raise ValueError("not yet")
    return "ok"


@task
def fails():
    raise RuntimeError("boom")


@task
def square(x):
    return x * x


@task
def add(a, b):
    return a + b


@flow
def child(n: int):
    return add(n, 1)


@flow
def parent():
    flaky()
    try:
        fails()
    except RuntimeError:
        pass
    squares = square.map(range(10))
    total = sum(f.result() for f in squares)
    futures = [add.submit(total, i) for i in range(6)]
    [f.result() for f in futures]
    child(3)
    return total


if __name__ == "__main__":
    print(json.dumps(parent()))
"#;

/// What Prefect 3.9.1's server recorded for the flow: per task (its name without the key
/// suffix), how many runs, the final state type, the state names in order, the run count.
const EXPECTED: &[(&str, usize, &str, &[&str], i64)] = &[
    (
        "add",
        7,
        "COMPLETED",
        &["Pending", "Running", "Completed"],
        1,
    ),
    (
        "child",
        1,
        "COMPLETED",
        &["Pending", "Pending", "Running", "Completed"],
        1,
    ),
    ("fails", 1, "FAILED", &["Pending", "Running", "Failed"], 1),
    (
        "flaky",
        1,
        "COMPLETED",
        &["Pending", "Running", "Retrying", "Retrying", "Completed"],
        3,
    ),
    (
        "square",
        10,
        "COMPLETED",
        &["Pending", "Running", "Completed"],
        1,
    ),
];

fn run_flow(server: &Server, venv: &Path) {
    let project = tempfile::tempdir().expect("tempdir");
    std::fs::write(project.path().join("flow.py"), FLOW).expect("flow file");
    let out = common::prefect_command(
        &venv.join("bin").join("python"),
        project.path(),
        &server.base,
    )
    .arg("flow.py")
    .output()
    .expect("run the flow");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the flow failed:\n{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "285");
    assert!(
        !stderr.contains("Unable to connect") && !stderr.contains("EventsWorker"),
        "the engine could not stream its events:\n{stderr}"
    );
}

/// Runs `program args` in `cwd` against `api`; it must succeed.
fn prefect_cmd(program: &Path, args: &[&str], cwd: &Path, api: &str) {
    let out = common::prefect_command(program, cwd, api)
        .args(args)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{} {args:?}: {}\n{}",
        program.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The same flow as a deployment on a process pool, run by Prefect's own worker.
fn run_deployed_by_prefects_worker(server: &Server, venv: &Path) {
    let project = tempfile::tempdir().expect("tempdir");
    let dir = project.path();
    std::fs::write(dir.join("flow.py"), FLOW).expect("flow file");
    std::fs::write(
        dir.join("prefect.yaml"),
        format!(
            "name: twenty\nprefect-version: 3.9.1\npull:\n\
             - prefect.deployments.steps.set_working_directory:\n    directory: {}\n\
             deployments:\n- name: twenty\n  entrypoint: flow.py:parent\n  \
             work_pool:\n    name: local\n",
            dir.display()
        ),
    )
    .expect("prefect.yaml");
    let prefect = venv.join("bin").join("prefect");
    let api = server.base.as_str();
    prefect_cmd(
        &prefect,
        &["work-pool", "create", "local", "--type", "process"],
        dir,
        api,
    );
    prefect_cmd(&prefect, &["--no-prompt", "deploy", "--all"], dir, api);
    prefect_cmd(&prefect, &["deployment", "run", "parent/twenty"], dir, api);
    prefect_cmd(
        &prefect,
        &[
            "worker",
            "start",
            "--pool",
            "local",
            "--type",
            "process",
            "--run-once",
        ],
        dir,
        api,
    );
}

fn task_runs_are_recorded_as_prefect_records_them(store_args: &[String], venv: &Path) {
    let server = Server::ready_with(store_args);
    run_flow(&server, venv);
    assert_recorded_as_prefect_records_them(&server);
}

#[test]
fn a_deployed_flow_run_by_prefects_worker_has_its_twenty_task_runs_recorded() {
    let Some(venv) = venv() else {
        return;
    };
    let server = Server::ready_with(&[]);
    run_deployed_by_prefects_worker(&server, &venv);
    assert_recorded_as_prefect_records_them(&server);
}

fn assert_recorded_as_prefect_records_them(server: &Server) {
    let runs = server.api("POST", "task_runs/filter", &json!({}));
    let runs = runs.as_array().expect("task runs");
    assert_eq!(runs.len(), 20, "{runs:?}");
    let mut seen: Vec<(String, String, Vec<String>, i64)> = runs
        .iter()
        .map(|r| {
            let id = r["id"].as_str().expect("id");
            let states = server.api(
                "GET",
                &format!("task_run_states/?task_run_id={id}"),
                &Value::Null,
            );
            let names = states
                .as_array()
                .expect("states")
                .iter()
                .map(|s| s["name"].as_str().unwrap_or_default().to_owned())
                .collect();
            let name = r["name"].as_str().expect("name");
            let task = name.rsplit_once('-').map_or(name, |(t, _)| t).to_owned();
            (
                task,
                r["state_type"].as_str().unwrap_or_default().to_owned(),
                names,
                r["run_count"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    seen.sort();
    for (task, count, state, names, run_count) in EXPECTED {
        let mine: Vec<_> = seen.iter().filter(|s| s.0 == *task).collect();
        assert_eq!(mine.len(), *count, "{task}: {seen:?}");
        for (_, got_state, got_names, got_count) in mine {
            assert_eq!(got_state, state, "{task}");
            assert_eq!(got_names, names, "{task}");
            assert_eq!(got_count, run_count, "{task}");
        }
    }
    // The flow runs: the parent and the subflow, whose parent task run is `child`'s.
    let flows = server.api("POST", "flow_runs/filter", &json!({}));
    let flows = flows.as_array().expect("flow runs");
    assert_eq!(flows.len(), 2);
    assert!(
        flows.iter().all(|f| f["state_type"] == "COMPLETED"),
        "{flows:?}"
    );
    let parent = flows
        .iter()
        .find(|f| f["parent_task_run_id"].is_null())
        .expect("the parent");
    let in_parent = server.api(
        "POST",
        "task_runs/count",
        &json!({"task_runs": {"flow_run_id": {"any_": [parent["id"]]}}}),
    );
    assert_eq!(in_parent, 19, "the subflow's own task is in the subflow");
    // Every event was stored once: one per state of the 19 task runs the engine reports (the
    // subflow's parent task run takes its states from the server), 59 on Prefect's server too.
    let events = server.api(
        "POST",
        "events/filter",
        &json!({"filter": {"event": {"prefix": ["prefect.task-run."]}}}),
    );
    assert_eq!(events["total"], 59, "{}", events["total"]);
}

#[test]
fn a_flow_with_twenty_task_runs_is_recorded_on_sqlite() {
    let Some(venv) = venv() else {
        return;
    };
    task_runs_are_recorded_as_prefect_records_them(&[], &venv);
}

#[test]
fn a_flow_with_twenty_task_runs_is_recorded_on_dynamodb() {
    let Some(store) = dynamodb_store("task_runs_on_dynamodb") else {
        return;
    };
    let Some(venv) = venv() else {
        return;
    };
    task_runs_are_recorded_as_prefect_records_them(&store, &venv);
}

/// Emits an event of its own.
const EMITTING_FLOW: &str = r#"
from prefect import flow
from prefect.events import emit_event


@flow
def announce():
    emit_event(event="sluice.test.announced", resource={"prefect.resource.id": "sluice.test.1"}, payload={"n": 1})


if __name__ == "__main__":
    announce()
"#;

#[test]
fn emitted_events_are_stored_and_streamed_live_by_prefect_events_stream_on_sqlite() {
    let Some(venv) = venv() else {
        return;
    };
    emitted_events_are_stored_and_streamed(&[], &venv);
}

#[test]
fn emitted_events_are_stored_and_streamed_live_by_prefect_events_stream_on_dynamodb() {
    let Some(store) = dynamodb_store("events_stream_on_dynamodb") else {
        return;
    };
    let Some(venv) = venv() else {
        return;
    };
    emitted_events_are_stored_and_streamed(&store, &venv);
}

fn emitted_events_are_stored_and_streamed(store_args: &[String], venv: &Path) {
    use std::io::BufRead;
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    let server = Server::ready_with(store_args);
    let project = tempfile::tempdir().expect("tempdir");
    let mut stream = common::prefect_command(
        &venv.join("bin").join("prefect"),
        project.path(),
        &server.base,
    )
    .args(["events", "stream", "--format", "text"])
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .expect("prefect events stream");
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = stream.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                return;
            }
        }
    });

    std::fs::write(project.path().join("flow.py"), EMITTING_FLOW).expect("flow file");
    let out = common::prefect_command(
        &venv.join("bin").join("python"),
        project.path(),
        &server.base,
    )
    .arg("flow.py")
    .output()
    .expect("run the flow");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The stream shows the flow's event and the server's own flow-run events (backfilled or
    // live, as the subscriber happened to connect).
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let wanted = [
        "sluice.test.announced",
        "prefect.flow-run.Running",
        "prefect.flow-run.Completed",
    ];
    while !wanted
        .iter()
        .all(|w| seen.iter().any(|l: &String| l.contains(w)))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => {
                let _ = stream.kill();
                panic!("prefect events stream showed only {seen:?}");
            }
        }
    }
    let _ = stream.kill();
    let _ = stream.wait();

    let found = server.api(
        "POST",
        "events/filter",
        &json!({"filter": {"event": {"name": ["sluice.test.announced"]}}}),
    );
    assert_eq!(found["total"], 1, "{found}");
    let event = &found["events"][0];
    assert_eq!(event["resource"]["prefect.resource.id"], "sluice.test.1");
    assert_eq!(event["payload"], json!({"n": 1}));
    // The engine relates its event to the flow run it came from.
    let related: Vec<&str> = event["related"]
        .as_array()
        .expect("related")
        .iter()
        .filter_map(|r| r["prefect.resource.role"].as_str())
        .collect();
    assert!(related.contains(&"flow-run"), "{related:?}");
    let states = server.api(
        "POST",
        "events/filter",
        &json!({"filter": {
            "event": {"prefix": ["prefect.flow-run."], "exclude_name": ["prefect.flow-run.heartbeat"]},
            "order": "ASC"
        }}),
    );
    let names: Vec<&str> = states["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["event"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "prefect.flow-run.Pending",
            "prefect.flow-run.Running",
            "prefect.flow-run.Completed"
        ]
    );
}
