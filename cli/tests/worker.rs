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

/// A pool type served by Prefect's own worker is refused before any request: the pool is not
/// created on the way, and the message names the worker to run instead.
#[test]
fn worker_start_refuses_docker_and_kubernetes_pools_without_creating_them() {
    let s = Server::ready();
    for kind in ["docker", "kubernetes"] {
        let pool = format!("{kind}-pool");
        let (code, _, err) = s.sluice(&["worker", "start", "--pool", &pool, "--type", kind]);
        assert_eq!(code, 1, "{err}");
        assert!(
            err.contains(&format!("prefect worker start --pool {pool} --type {kind}")),
            "{err}"
        );
        let (code, _, _) = s.sluice(&["work-pool", "inspect", &pool]);
        assert_ne!(code, 0, "{pool} was created");
    }
}
