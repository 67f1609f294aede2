//! `sluice worker start` end to end: a deployment run taken to COMPLETED by a `--run-once`
//! worker, its output visible through `sluice flow-run logs`.

mod common;

use common::Server;
use serde_json::json;

#[test]
fn worker_start_runs_a_deployment_run_and_its_output_reaches_flow_run_logs() {
    let s = Server::ready();
    s.json(&["work-pool", "create", "local", "--type", "process"]);
    let flow = s.api("POST", "flows/", &json!({ "name": "job" }));
    s.api(
        "POST",
        "deployments/",
        &json!({ "name": "echo", "flow_id": flow["id"], "work_pool_name": "local" }),
    );
    let run = s.json(&[
        "deployment",
        "run",
        "job/echo",
        "--job-variable",
        "command=echo hello-from-the-job",
    ]);
    let id = run["id"].as_str().expect("run id");

    let (code, _, err) = s.sluice(&[
        "worker",
        "start",
        "--pool",
        "local",
        "--name",
        "w1",
        "--run-once",
        "--poll-seconds",
        "1",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        s.json(&["flow-run", "inspect", id])["state_type"],
        "COMPLETED"
    );
    let (code, out, err) = s.sluice(&["flow-run", "logs", id]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("hello-from-the-job"), "{out}");
    let workers = s.json(&["worker", "ls", "--pool", "local"]);
    assert_eq!(workers[0]["name"], "w1", "{workers}");
}
