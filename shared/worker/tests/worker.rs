//! The worker against the real API served on a loopback port.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Api, shell, spawn_worker};
use serde_json::{Value, json};
use sluice_worker::{WorkerOptions, WorkerReport, run};

impl Api {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        assert!(status.is_success(), "{path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> Value {
        self.call(reqwest::Method::GET, path, None).await
    }

    /// A process pool, a flow and a deployment on it; the deployment's id.
    async fn deployment(&self, pool: &str, pull_steps: Option<Value>) -> String {
        self.post("/work_pools/", json!({ "name": pool, "type": "process" }))
            .await;
        let flow = self
            .post("/flows/", json!({ "name": format!("flow-{pool}") }))
            .await;
        let mut body = json!({
            "name": format!("dep-{pool}"),
            "flow_id": flow["id"],
            "work_pool_name": pool,
        });
        if let Some(steps) = pull_steps {
            body["pull_steps"] = steps;
        }
        let dep = self.post("/deployments/", body).await;
        dep["id"].as_str().unwrap().to_owned()
    }

    async fn create_run(&self, deployment: &str, job_variables: Value) -> String {
        let run = self
            .post(
                &format!("/deployments/{deployment}/create_flow_run"),
                json!({ "job_variables": job_variables }),
            )
            .await;
        run["id"].as_str().unwrap().to_owned()
    }

    /// A run whose command is `sh -c SCRIPT`: the worker runs no shell of its own.
    async fn run_with_command(&self, deployment: &str, script: &str) -> String {
        self.create_run(deployment, json!({ "command": shell(script) }))
            .await
    }

    /// (state type, state message)
    async fn state(&self, run: &str) -> (String, String) {
        let run = self.get(&format!("/flow_runs/{run}")).await;
        (
            run["state"]["type"].as_str().unwrap_or_default().to_owned(),
            run["state"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        )
    }

    async fn wait_for_state(&self, run: &str, wanted: &str, within: Duration) -> (String, String) {
        let start = Instant::now();
        loop {
            let state = self.state(run).await;
            if state.0 == wanted || start.elapsed() > within {
                return state;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn wait_all_terminal(&self, runs: &[String], within: Duration) {
        let start = Instant::now();
        loop {
            let mut done = true;
            for r in runs {
                let (t, _) = self.state(r).await;
                if !matches!(t.as_str(), "COMPLETED" | "FAILED" | "CRASHED" | "CANCELLED") {
                    done = false;
                    break;
                }
            }
            if done {
                return;
            }
            assert!(start.elapsed() < within, "runs did not finish in time");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn log_messages(&self, run: &str) -> Vec<(i64, String)> {
        let logs = self
            .post(
                "/logs/filter",
                json!({ "logs": { "flow_run_id": { "any_": [run] } } }),
            )
            .await;
        logs.as_array()
            .unwrap()
            .iter()
            .map(|l| {
                (
                    l["level"].as_i64().unwrap(),
                    l["message"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    fn opts(&self, pool: &str) -> WorkerOptions {
        WorkerOptions {
            api_url: self.url.clone(),
            pool: pool.to_owned(),
            heartbeat_seconds: 5,
            grace_seconds: 2,
            poll_interval: Some(Duration::from_millis(200)),
            ..WorkerOptions::default()
        }
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[tokio::test]
async fn success_completes_and_ships_its_output_as_logs() {
    let api = Api::start().await;
    let dep = api.deployment("ok", None).await;
    let run_id = api
        .run_with_command(
            &dep,
            "echo hello-from-job; echo to-stderr >&2; echo \"id=$SLUICE_FLOW_RUN_ID\"",
        )
        .await;
    let report = run(
        WorkerOptions {
            run_once: true,
            ..api.opts("ok")
        },
        std::future::pending(),
    )
    .await
    .unwrap();
    assert_eq!(report.completed, 1);
    assert_eq!(report.submitted, 1);
    assert_eq!(api.state(&run_id).await.0, "COMPLETED");
    let logs = api.log_messages(&run_id).await;
    assert!(
        logs.contains(&(20, "hello-from-job".to_owned())),
        "{logs:?}"
    );
    assert!(logs.contains(&(40, "to-stderr".to_owned())), "{logs:?}");
    assert!(logs.contains(&(20, format!("id={run_id}"))), "{logs:?}");
    let run = api.get(&format!("/flow_runs/{run_id}")).await;
    assert!(run["infrastructure_pid"].as_str().unwrap().contains(':'));
    // The worker registered itself.
    let workers = api.post("/work_pools/ok/workers/filter", json!({})).await;
    assert_eq!(workers.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn non_zero_exit_fails_with_the_code() {
    let api = Api::start().await;
    let dep = api.deployment("fail", None).await;
    let run_id = api.run_with_command(&dep, "exit 3").await;
    let report = run(
        WorkerOptions {
            run_once: true,
            ..api.opts("fail")
        },
        std::future::pending(),
    )
    .await
    .unwrap();
    assert_eq!(report.failed, 1);
    let (t, message) = api.state(&run_id).await;
    assert_eq!(t, "FAILED");
    assert!(message.contains("exited with code 3"), "{message}");
}

#[tokio::test]
async fn killed_job_crashes_and_a_missing_engine_crashes_naming_it() {
    let api = Api::start().await;
    let dep = api.deployment("crash", None).await;
    let killed = api.run_with_command(&dep, "kill -9 $$").await;
    // No command: Prefect's engine (`prefect flow-run execute`), which this PATH lacks.
    let no_command = api
        .create_run(&dep, json!({"env": {"PATH": "/nonexistent"}}))
        .await;
    let report = run(
        WorkerOptions {
            run_once: true,
            ..api.opts("crash")
        },
        std::future::pending(),
    )
    .await
    .unwrap();
    assert_eq!(report.crashed, 2);
    let (t, message) = api.state(&killed).await;
    assert_eq!(t, "CRASHED");
    assert!(message.contains("signal 9"), "{message}");
    let (t, message) = api.state(&no_command).await;
    assert_eq!(t, "CRASHED");
    assert!(message.contains("cannot start \"prefect\""), "{message}");
}

#[tokio::test]
async fn cancelling_a_running_job_kills_it() {
    let api = Api::start().await;
    let dep = api.deployment("cancel", None).await;
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("after-sleep");
    let run_id = api
        .run_with_command(&dep, &format!("sleep 30; touch {}", marker.display()))
        .await;
    let (stop, worker) = spawn_worker(api.opts("cancel"));
    let (t, _) = api
        .wait_for_state(&run_id, "RUNNING", Duration::from_secs(10))
        .await;
    assert_eq!(t, "RUNNING");
    let asked = Instant::now();
    api.post(
        &format!("/flow_runs/{run_id}/set_state"),
        json!({ "state": { "type": "CANCELLING", "name": "Cancelling" } }),
    )
    .await;
    let (t, _) = api
        .wait_for_state(&run_id, "CANCELLED", Duration::from_secs(10))
        .await;
    assert_eq!(t, "CANCELLED");
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );
    let _ = stop.send(());
    let report = worker.await.unwrap().unwrap();
    assert_eq!(report.cancelled, 1);
    assert!(!marker.exists());
}

#[tokio::test]
async fn a_run_cancelled_before_launch_is_never_launched() {
    let api = Api::start().await;
    let dep = api.deployment("early", None).await;
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let run_id = api
        .run_with_command(&dep, &format!("touch {}", marker.display()))
        .await;
    api.post(
        &format!("/flow_runs/{run_id}/set_state"),
        json!({ "state": { "type": "CANCELLING", "name": "Cancelling" } }),
    )
    .await;
    let report = run(
        WorkerOptions {
            run_once: true,
            ..api.opts("early")
        },
        std::future::pending(),
    )
    .await
    .unwrap();
    assert_eq!(report.submitted, 0);
    assert_eq!(api.state(&run_id).await.0, "CANCELLED");
    assert!(!marker.exists());
}

#[tokio::test]
async fn limit_one_never_runs_two_at_once() {
    let api = Api::start().await;
    let dep = api.deployment("limited", None).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("spans");
    let command = format!(
        "echo \"start $SLUICE_FLOW_RUN_ID $(date +%s%N)\" >> {f}; sleep 0.3; echo \"end $SLUICE_FLOW_RUN_ID $(date +%s%N)\" >> {f}",
        f = file.display()
    );
    let mut runs = Vec::new();
    for _ in 0..3 {
        runs.push(api.run_with_command(&dep, &command).await);
    }
    let (stop, worker) = spawn_worker(WorkerOptions {
        limit: Some(1),
        ..api.opts("limited")
    });
    api.wait_all_terminal(&runs, Duration::from_secs(20)).await;
    let _ = stop.send(());
    let report = worker.await.unwrap().unwrap();
    assert_eq!(report.completed, 3);

    let mut spans: HashMap<String, (u128, u128)> = HashMap::new();
    for line in read(&file).lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let t: u128 = parts[2].parse().unwrap();
        let e = spans.entry(parts[1].to_owned()).or_default();
        if parts[0] == "start" {
            e.0 = t
        } else {
            e.1 = t
        }
    }
    assert_eq!(spans.len(), 3);
    let mut sorted: Vec<(u128, u128)> = spans.into_values().collect();
    sorted.sort();
    for pair in sorted.windows(2) {
        assert!(pair[1].0 >= pair[0].1, "overlap: {sorted:?}");
    }
}

#[tokio::test]
async fn two_workers_run_each_of_twenty_runs_exactly_once() {
    let api = Api::start().await;
    let dep = api.deployment("race", None).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("effects");
    let command = format!("echo $SLUICE_FLOW_RUN_ID >> {}", file.display());
    let mut runs = Vec::new();
    for _ in 0..20 {
        runs.push(api.run_with_command(&dep, &command).await);
    }
    let (stop_a, worker_a) = spawn_worker(api.opts("race"));
    let (stop_b, worker_b) = spawn_worker(api.opts("race"));
    api.wait_all_terminal(&runs, Duration::from_secs(30)).await;
    let _ = stop_a.send(());
    let _ = stop_b.send(());
    let a = worker_a.await.unwrap().unwrap();
    let b = worker_b.await.unwrap().unwrap();
    assert_eq!(a.submitted + b.submitted, 20, "{a:?} {b:?}");
    assert_eq!(a.completed + b.completed, 20);

    let mut counts: HashMap<String, usize> = HashMap::new();
    for line in read(&file).lines() {
        *counts.entry(line.to_owned()).or_default() += 1;
    }
    for r in &runs {
        assert_eq!(counts.get(r), Some(&1), "{r}");
    }
    assert_eq!(counts.len(), 20);
}

#[tokio::test]
async fn pull_step_outputs_are_templated_into_later_steps() {
    let api = Api::start().await;
    let steps = json!([
        { "prefect.deployments.steps.run_shell_script": { "id": "gen", "script": "echo generated-value" } },
        { "prefect.deployments.steps.run_shell_script": {
            "script": "mkdir -p sub && echo {{ gen.stdout }} > sub/out.txt"
        } },
        { "prefect.deployments.steps.set_working_directory": { "directory": "sub" } },
    ]);
    let dep = api.deployment("steps", Some(steps)).await;
    let dir = tempfile::tempdir().unwrap();
    let run_id = api
        .create_run(
            &dep,
            json!({ "command": shell("cat out.txt; pwd"), "working_dir": dir.path().to_string_lossy() }),
        )
        .await;
    let report = run(
        WorkerOptions {
            run_once: true,
            ..api.opts("steps")
        },
        std::future::pending(),
    )
    .await
    .unwrap();
    assert_eq!(report.completed, 1, "{:?}", api.state(&run_id).await);
    assert_eq!(
        read(&dir.path().join("sub/out.txt")).trim(),
        "generated-value"
    );
    let logs = api.log_messages(&run_id).await;
    assert!(
        logs.contains(&(20, "generated-value".to_owned())),
        "{logs:?}"
    );
}

#[tokio::test]
async fn an_unknown_pull_step_crashes_the_run_naming_it() {
    let api = Api::start().await;
    let steps =
        json!([{ "prefect.deployments.steps.pull_from_remote_storage": { "url": "s3://x" } }]);
    let dep = api.deployment("unknown-step", Some(steps)).await;
    let run_id = api.run_with_command(&dep, "true").await;
    let report = run(
        WorkerOptions {
            run_once: true,
            ..api.opts("unknown-step")
        },
        std::future::pending(),
    )
    .await
    .unwrap();
    assert_eq!(report.crashed, 1);
    let (t, message) = api.state(&run_id).await;
    assert_eq!(t, "CRASHED");
    assert!(message.contains("pull_from_remote_storage"), "{message}");
}

#[tokio::test]
async fn shutdown_kills_what_outlives_the_grace_period() {
    let api = Api::start().await;
    let dep = api.deployment("shutdown", None).await;
    let run_id = api.run_with_command(&dep, "sleep 30").await;
    let (stop, worker) = spawn_worker(WorkerOptions {
        grace_seconds: 1,
        ..api.opts("shutdown")
    });
    let (t, _) = api
        .wait_for_state(&run_id, "RUNNING", Duration::from_secs(10))
        .await;
    assert_eq!(t, "RUNNING");
    let asked = Instant::now();
    let _ = stop.send(());
    let report = worker.await.unwrap().unwrap();
    assert!(asked.elapsed() < Duration::from_secs(6));
    assert_eq!(report.killed_on_shutdown, 1);
    let (t, message) = api.state(&run_id).await;
    assert_eq!(t, "CRASHED");
    assert_eq!(message, "worker shut down");
}

#[tokio::test]
async fn a_missing_pool_is_created_and_push_types_are_refused() {
    let api = Api::start().await;
    let report = run(
        WorkerOptions {
            run_once: true,
            ..api.opts("fresh")
        },
        std::future::pending(),
    )
    .await
    .unwrap();
    assert_eq!(report, WorkerReport::default());
    let pool = api.get("/work_pools/fresh").await;
    assert_eq!(pool["type"], "process");

    let err = run(
        WorkerOptions {
            pool_type: "ecs:push".to_owned(),
            run_once: true,
            ..api.opts("pushy")
        },
        std::future::pending(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("push"), "{err}");
}

#[tokio::test]
async fn git_clone_then_set_working_directory_into_the_clone() {
    let origin = tempfile::tempdir().unwrap();
    let git = |args: &[&str], dir: &Path| {
        let status = std::process::Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(status.status.success(), "{status:?}");
    };
    git(&["init", "-q", "-b", "main"], origin.path());
    std::fs::write(origin.path().join("flow.txt"), "from-git").unwrap();
    git(&["add", "."], origin.path());
    git(&["commit", "-q", "-m", "init"], origin.path());

    let work = tempfile::tempdir().unwrap();
    let repo_url = format!("file://{}", origin.path().display());
    let steps = json!([
        { "prefect.deployments.steps.git_clone": { "id": "clone", "repository": repo_url, "branch": "{{ prefect.variables.branch }}" } },
        { "prefect.deployments.steps.set_working_directory": { "directory": "{{ clone.directory }}" } },
    ]);
    // Variable references in pull steps resolve at run time from the data the worker fetched.
    let data =
        sluice_core::templating::PrefetchedData::default().with_variable("branch", json!("main"));
    let dir = sluice_worker::run_pull_steps(
        steps.as_array().unwrap(),
        work.path(),
        &std::env::vars().collect(),
        &data,
    )
    .await
    .unwrap();
    assert_eq!(read(&dir.join("flow.txt")), "from-git");
    assert!(dir.starts_with(std::fs::canonicalize(work.path()).unwrap()));
}

#[tokio::test]
async fn a_run_cancelled_while_its_pull_steps_run_is_never_launched() {
    let api = Api::start().await;
    let steps = json!([{ "prefect.deployments.steps.run_shell_script": { "script": "sleep 1" } }]);
    let dep = api.deployment("mid", Some(steps)).await;
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let run_id = api
        .run_with_command(&dep, &format!("touch {}", marker.display()))
        .await;
    let (stop, worker) = spawn_worker(api.opts("mid"));
    let (t, _) = api
        .wait_for_state(&run_id, "PENDING", Duration::from_secs(10))
        .await;
    assert_eq!(t, "PENDING");
    api.post(
        &format!("/flow_runs/{run_id}/set_state"),
        json!({ "state": { "type": "CANCELLING", "name": "Cancelling" } }),
    )
    .await;
    let (t, _) = api
        .wait_for_state(&run_id, "CANCELLED", Duration::from_secs(10))
        .await;
    assert_eq!(t, "CANCELLED");
    let _ = stop.send(());
    let report = worker.await.unwrap().unwrap();
    assert_eq!(report.cancelled, 1, "{report:?}");
    assert!(!marker.exists());
}

#[tokio::test]
async fn template_references_to_variables_and_parameters_reach_the_job() {
    let api = Api::start().await;
    let dep = api.deployment("refs", None).await;
    api.post(
        "/variables/",
        json!({ "name": "greeting", "value": "bonjour" }),
    )
    .await;
    // A job variable naming a Prefect variable is resolved by the worker from the API.
    let run_id = api
        .create_run(
            &dep,
            json!({
                "command": shell("echo \"$GREETING\"; echo \"$SLUICE_PARAMETERS\""),
                "env": { "GREETING": "{{ prefect.variables.greeting }}" }
            }),
        )
        .await;
    let report = run(
        WorkerOptions {
            run_once: true,
            ..api.opts("refs")
        },
        std::future::pending(),
    )
    .await
    .unwrap();
    assert_eq!(report.completed, 1);
    let logs = api.log_messages(&run_id).await;
    assert!(logs.contains(&(20, "bonjour".to_owned())), "{logs:?}");
    assert!(logs.contains(&(20, "{}".to_owned())), "{logs:?}");
}
