//! The resource verbs (`work-pool`, `work-queue`, `worker`, `deployment`, `flow-run`,
//! `variable`) run as the real `sluice` binary against a real `sluice server start`.

mod common;

use common::Server;
use serde_json::{Value, json};

/// Asserts a failed command: exit code 1 and exactly one `error: ...` line containing `needle`.
fn assert_error(server: &Server, args: &[&str], needle: &str) {
    let (code, out, err) = server.sluice(args);
    assert_eq!(code, 1, "sluice {args:?}: stdout {out} stderr {err}");
    let line = err.trim();
    assert!(
        line.starts_with("error: ") && line.contains(needle) && !line.contains('\n'),
        "sluice {args:?} said: {err}"
    );
}

fn first_line(text: &str) -> String {
    text.lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// A flow and a deployment of it on `pool`, seeded through the API (deploying is not a verb here).
fn seed_deployment(server: &Server, flow: &str, name: &str, pool: &str) -> String {
    let f = server.api("POST", "flows/", &json!({ "name": flow }));
    let d = server.api(
        "POST",
        "deployments/",
        &json!({ "name": name, "flow_id": f["id"], "work_pool_name": pool }),
    );
    d["id"].as_str().expect("deployment id").to_owned()
}

#[test]
fn work_pool_verbs() {
    let s = Server::ready();
    let (code, out, err) = s.sluice(&["work-pool", "create", "local", "--type", "process"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Created work pool \"local\""), "{out}");

    let dir = tempfile::tempdir().expect("tempdir");
    let template = json!({
        "job_configuration": {"command": "{{ command }}"},
        "variables": {"type": "object", "properties": {"command": {"type": "string"}}}
    });
    let path = dir.path().join("t.json");
    std::fs::write(&path, template.to_string()).expect("write template");
    let created = s.json(&[
        "work-pool",
        "create",
        "templated",
        "--type",
        "process",
        "--base-job-template",
        path.to_str().expect("utf-8 path"),
        "--paused",
        "--concurrency-limit",
        "3",
    ]);
    assert_eq!(created["name"], "templated");
    assert_eq!(created["is_paused"], true);
    assert_eq!(created["concurrency_limit"], 3);
    assert_eq!(created["base_job_template"], template);

    let pools = s.json(&["work-pool", "ls"]);
    let names: Vec<&str> = pools
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert!(
        names.contains(&"local") && names.contains(&"templated"),
        "{pools}"
    );
    let (code, out, _) = s.sluice(&["work-pool", "ls"]);
    assert_eq!(code, 0);
    assert_eq!(
        first_line(&out),
        "NAME TYPE ID CONCURRENCY PAUSED STATUS",
        "{out}"
    );
    assert!(out.contains("local"), "{out}");

    s.sluice(&[
        "work-pool",
        "update",
        "local",
        "--concurrency-limit",
        "7",
        "--description",
        "box",
    ]);
    let pool = s.json(&["work-pool", "inspect", "local"]);
    assert_eq!(pool["concurrency_limit"], 7);
    assert_eq!(pool["description"], "box");
    assert_eq!(s.json(&["work-pool", "pause", "local"])["is_paused"], true);
    assert_eq!(
        s.json(&["work-pool", "resume", "local"])["is_paused"],
        false
    );
    let (_, out, _) = s.sluice(&["work-pool", "inspect", "local"]);
    assert_eq!(first_line(&out), "FIELD VALUE", "{out}");

    let default = s.json(&[
        "work-pool",
        "get-default-base-job-template",
        "--type",
        "process",
    ]);
    assert!(default["job_configuration"].is_object(), "{default}");
    assert!(
        default["variables"]["properties"]["command"].is_object(),
        "{default}"
    );
    assert_error(
        &s,
        &[
            "work-pool",
            "get-default-base-job-template",
            "--type",
            "nope",
        ],
        "work pool type \"nope\" is not known",
    );

    // A due run of a deployment on the pool shows up in the preview.
    let id = seed_deployment(&s, "etl", "nightly", "local");
    let run = s.api(
        "POST",
        &format!("deployments/{id}/create_flow_run"),
        &json!({}),
    );
    let preview = s.json(&["work-pool", "preview", "local", "--hours", "2"]);
    assert!(
        preview
            .as_array()
            .expect("array")
            .iter()
            .any(|item| item["flow_run"]["id"] == run["id"]),
        "{preview}"
    );

    assert_error(
        &s,
        &["work-pool", "inspect", "nope"],
        "work pool \"nope\" not found",
    );
    let (code, _, err) = s.sluice(&["work-pool", "delete", "templated"]);
    assert_eq!(code, 0, "{err}");
    assert_error(
        &s,
        &["work-pool", "delete", "templated"],
        "work pool \"templated\" not found",
    );
    // Usage errors exit 1 too.
    assert_eq!(s.sluice(&["work-pool", "create", "x"]).0, 1);
}

#[test]
fn work_queue_and_worker_verbs() {
    let s = Server::ready();
    s.json(&["work-pool", "create", "local", "--type", "process"]);
    let q = s.json(&[
        "work-queue",
        "create",
        "fast",
        "--pool",
        "local",
        "--priority",
        "5",
        "--concurrency-limit",
        "2",
    ]);
    assert_eq!(q["name"], "fast");
    assert_eq!(q["priority"], 5);
    assert_eq!(q["concurrency_limit"], 2);
    let queues = s.json(&["work-queue", "ls", "--pool", "local"]);
    let mut names: Vec<&str> = queues
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|q| q["name"].as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["default", "fast"]);
    let (_, out, _) = s.sluice(&["work-queue", "ls", "--pool", "local"]);
    assert_eq!(
        first_line(&out),
        "NAME PRIORITY CONCURRENCY PAUSED STATUS ID"
    );
    assert_eq!(
        s.json(&["work-queue", "inspect", "fast", "--pool", "local"])["priority"],
        5
    );
    assert_eq!(
        s.json(&["work-queue", "pause", "fast", "--pool", "local"])["is_paused"],
        true
    );
    assert_eq!(
        s.json(&["work-queue", "resume", "fast", "--pool", "local"])["is_paused"],
        false
    );
    let (code, _, err) = s.sluice(&["work-queue", "delete", "fast", "--pool", "local"]);
    assert_eq!(code, 0, "{err}");
    assert_error(
        &s,
        &["work-queue", "inspect", "fast", "--pool", "local"],
        "work queue \"fast\" in work pool \"local\" not found",
    );
    assert_error(
        &s,
        &["work-queue", "ls", "--pool", "nope"],
        "work pool \"nope\" not found",
    );

    assert_eq!(s.json(&["worker", "ls", "--pool", "local"]), json!([]));
    s.api(
        "POST",
        "work_pools/local/workers/heartbeat",
        &json!({"name": "w1", "heartbeat_interval_seconds": 30}),
    );
    let workers = s.json(&["worker", "ls", "--pool", "local"]);
    assert_eq!(workers[0]["name"], "w1", "{workers}");
    let (_, out, _) = s.sluice(&["worker", "ls", "--pool", "local"]);
    assert_eq!(first_line(&out), "NAME STATUS LAST HEARTBEAT ID");
    assert!(out.contains("w1"), "{out}");
    assert_error(
        &s,
        &["worker", "ls", "--pool", "nope"],
        "work pool \"nope\" not found",
    );
}

#[test]
fn variable_verbs() {
    let s = Server::ready();
    // An API key is sent as a bearer token; Sluice does not check it yet, so it must not hurt.
    let (code, _, err) = s.sluice(&["variable", "set", "tag", "v1", "--api-key", "secret"]);
    assert_eq!(code, 0, "{err}");
    let (code, out, _) = s.sluice(&["variable", "get", "tag"]);
    assert_eq!((code, out.as_str()), (0, "v1\n"));
    assert_error(
        &s,
        &["variable", "set", "tag", "v2"],
        "variable \"tag\" already exists; pass --overwrite",
    );
    let v = s.json(&["variable", "set", "tag", r#"{"n": 2}"#, "--overwrite"]);
    assert_eq!(v["value"], json!({"n": 2}), "JSON values stay JSON: {v}");
    assert_eq!(
        s.json(&["variable", "get", "tag"])["value"],
        json!({"n": 2})
    );
    s.json(&["variable", "set", "count", "3"]);
    assert_eq!(s.json(&["variable", "get", "count"])["value"], json!(3));
    let all = s.json(&["variable", "ls"]);
    assert_eq!(all.as_array().map(Vec::len), Some(2), "{all}");
    let (_, out, _) = s.sluice(&["variable", "ls"]);
    assert_eq!(first_line(&out), "NAME VALUE TAGS");
    let (code, _, err) = s.sluice(&["variable", "unset", "tag"]);
    assert_eq!(code, 0, "{err}");
    assert_error(
        &s,
        &["variable", "get", "tag"],
        "variable \"tag\" not found",
    );
    assert_error(
        &s,
        &["variable", "unset", "tag"],
        "variable \"tag\" not found",
    );
}

#[test]
fn deployment_verbs() {
    let s = Server::ready();
    s.json(&["work-pool", "create", "local", "--type", "process"]);
    let id = seed_deployment(&s, "etl", "nightly", "local");

    let listed = s.json(&["deployment", "ls"]);
    assert_eq!(listed[0]["id"], id.as_str(), "{listed}");
    let (_, out, _) = s.sluice(&["deployment", "ls"]);
    assert_eq!(first_line(&out), "NAME ID WORK POOL PAUSED");
    assert!(out.contains("etl/nightly"), "{out}");
    assert_eq!(
        s.json(&["deployment", "inspect", "etl/nightly"])["id"],
        id.as_str()
    );

    let run = s.json(&[
        "deployment",
        "run",
        "etl/nightly",
        "--params",
        r#"{"n": 1, "keep": true}"#,
        "--param",
        "n=3",
        "--param",
        "who=bob",
        "--job-variable",
        "command=echo hi",
        "--job-variable",
        r#"env={"A": "1"}"#,
    ]);
    assert_eq!(
        run["parameters"],
        json!({"n": 3, "keep": true, "who": "bob"})
    );
    assert_eq!(
        run["job_variables"],
        json!({"command": "echo hi", "env": {"A": "1"}})
    );
    // What the CLI printed is what the server stored.
    let stored = s.api(
        "GET",
        &format!("flow_runs/{}", run["id"].as_str().expect("id")),
        &Value::Null,
    );
    assert_eq!(stored["parameters"], run["parameters"]);
    assert_eq!(stored["job_variables"], run["job_variables"]);
    assert_eq!(stored["deployment_id"], id.as_str());

    let (code, _, err) = s.sluice(&["deployment", "pause", "etl/nightly"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        s.json(&["deployment", "inspect", "etl/nightly"])["paused"],
        true
    );
    s.sluice(&["deployment", "resume", "etl/nightly"]);
    assert_eq!(
        s.json(&["deployment", "inspect", "etl/nightly"])["paused"],
        false
    );

    assert_error(
        &s,
        &["deployment", "inspect", "etl/nope"],
        "deployment \"etl/nope\" not found",
    );
    assert_error(
        &s,
        &["deployment", "run", "etl/nope"],
        "deployment \"etl/nope\" not found",
    );
    assert_error(
        &s,
        &["deployment", "inspect", "nightly"],
        "must be given as FLOW/DEPLOYMENT",
    );
    let (code, _, err) = s.sluice(&["deployment", "delete", "etl/nightly"]);
    assert_eq!(code, 0, "{err}");
    assert_error(&s, &["deployment", "delete", "etl/nightly"], "not found");
}

/// `deployment run --watch` while a helper thread plays the worker, taking the run to `last`:
/// (exit code, stderr).
fn watch_to(last: &'static str) -> (i32, String) {
    let s = Server::ready();
    s.json(&["work-pool", "create", "local", "--type", "process"]);
    seed_deployment(&s, "etl", "nightly", "local");
    let base = s.base.clone();
    let player = std::thread::spawn(move || {
        let s = Server::attach(&base);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let runs = s.json(&["flow-run", "ls"]);
            if let Some(id) = runs[0]["id"].as_str() {
                for state in ["PENDING", "RUNNING", last] {
                    s.api(
                        "POST",
                        &format!("flow_runs/{id}/set_state"),
                        &json!({"state": {"type": state}}),
                    );
                }
                return;
            }
            assert!(std::time::Instant::now() < deadline, "no run appeared");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    });
    let (code, _, err) = s.sluice(&["deployment", "run", "etl/nightly", "--watch"]);
    player.join().expect("player thread");
    (code, err)
}

#[test]
fn deployment_run_watch_exits_0_for_completed() {
    let (code, err) = watch_to("COMPLETED");
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("Completed"), "{err}");
}

#[test]
fn deployment_run_watch_exits_1_for_failed() {
    let (code, err) = watch_to("FAILED");
    assert_eq!(code, 1, "{err}");
    assert!(err.trim_end().ends_with("ended Failed"), "{err}");
}

#[test]
fn flow_run_verbs() {
    let s = Server::ready();
    s.json(&["work-pool", "create", "local", "--type", "process"]);
    let dep = seed_deployment(&s, "etl", "nightly", "local");
    let run = s.api(
        "POST",
        &format!("deployments/{dep}/create_flow_run"),
        &json!({}),
    );
    let id = run["id"].as_str().expect("id").to_owned();
    assert_eq!(run["state_type"], "SCHEDULED");

    let listed = s.json(&[
        "flow-run",
        "ls",
        "--state-type",
        "SCHEDULED",
        "--limit",
        "5",
    ]);
    assert_eq!(listed[0]["id"], id.as_str(), "{listed}");
    assert_eq!(s.json(&["flow-run", "ls", "--state", "Scheduled"]), listed);
    assert_eq!(
        s.json(&["flow-run", "ls", "--state-type", "RUNNING"]),
        json!([])
    );
    let (_, out, _) = s.sluice(&["flow-run", "ls"]);
    assert_eq!(
        first_line(&out),
        "ID FLOW DEPLOYMENT NAME STATE EXPECTED START"
    );
    assert_eq!(s.json(&["flow-run", "inspect", &id])["id"], id.as_str());

    s.api(
        "POST",
        "logs/",
        &json!([
            {"name": "prefect.flow_runs", "level": 20, "message": "first line",
             "timestamp": "2026-01-01T00:00:01Z", "flow_run_id": id},
            {"name": "prefect.flow_runs", "level": 40, "message": "second line",
             "timestamp": "2026-01-01T00:00:02Z", "flow_run_id": id},
        ]),
    );
    let (code, out, err) = s.sluice(&["flow-run", "logs", &id]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].contains("INFO") && lines[0].ends_with("first line"),
        "{out}"
    );
    assert!(
        lines[1].contains("ERROR") && lines[1].ends_with("second line"),
        "{out}"
    );

    let cancelled = s.json(&["flow-run", "cancel", &id]);
    assert_eq!(cancelled["type"], "CANCELLED", "{cancelled}");
    assert_eq!(
        s.json(&["flow-run", "inspect", &id])["state_type"],
        "CANCELLED"
    );
    // Cancelling again is not an error: the run is where the user wants it.
    assert_eq!(s.sluice(&["flow-run", "cancel", &id]).0, 0);
    // A terminal run with no new lines: --follow prints what there is and returns.
    let (code, out, _) = s.sluice(&["flow-run", "logs", &id, "--follow"]);
    assert_eq!((code, out.lines().count()), (0, 2), "{out}");

    let missing = "00000000-0000-0000-0000-000000000000";
    assert_error(&s, &["flow-run", "inspect", missing], "not found");
    assert_error(&s, &["flow-run", "logs", missing], "not found");
    assert_error(
        &s,
        &["flow-run", "ls", "--state-type", "BOGUS"],
        "is not a state type",
    );
    let (code, _, err) = s.sluice(&["flow-run", "delete", &id]);
    assert_eq!(code, 0, "{err}");
    assert_error(&s, &["flow-run", "delete", &id], "not found");
}

#[test]
fn an_unreachable_api_is_one_clear_error() {
    let s = Server::attach("http://127.0.0.1:9/api");
    let (code, _, err) = s.sluice(&["work-pool", "ls"]);
    assert_eq!(code, 1);
    assert_eq!(
        err.trim_end(),
        "error: listing work pools: connection refused — is `sluice server start` running at \
         http://127.0.0.1:9/api?"
    );
}
