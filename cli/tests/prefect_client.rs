//! Prefect's own CLI and worker (PyPI `prefect`, 3.x) against `sluice server`.
//!
//! Needs a virtualenv with Prefect installed, named by `SLUICE_PREFECT_VENV`; `infra/test.sh`
//! makes one (`infra/tools.sh prefect`). Without it the test says so and passes, unless
//! `SLUICE_REQUIRE_PREFECT=1` (set by `infra/test.sh`, so in CI), which makes it fail.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::Server;
use serde_json::{Value, json};

fn venv() -> Option<PathBuf> {
    common::prefect_venv("prefect_client")
}

struct Prefect {
    bin: PathBuf,
    home: tempfile::TempDir,
    api: String,
}

impl Prefect {
    /// `prefect ARGS` in `cwd`, which must exit 0 within `limit`; its output.
    fn run_in(&self, cwd: &Path, args: &[&str], limit: Duration) -> String {
        let mut child = Command::new(&self.bin)
            .args(args)
            .current_dir(cwd)
            .env("PREFECT_API_URL", &self.api)
            .env("PREFECT_HOME", self.home.path())
            .env("PREFECT_CLI_COLORS", "false")
            .env("PREFECT_CLI_WRAP_LINES", "false")
            .env("COLUMNS", "250")
            .env_remove("PREFECT_API_KEY")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start prefect");
        let deadline = std::time::Instant::now() + limit;
        while child.try_wait().expect("wait").is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("prefect {args:?} did not finish within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let Output {
            status,
            stdout,
            stderr,
        } = child.wait_with_output().expect("output");
        let out = String::from_utf8_lossy(&stdout).into_owned();
        let err = String::from_utf8_lossy(&stderr).into_owned();
        assert!(
            status.success(),
            "prefect {args:?} failed ({status}):\n{out}\n{err}"
        );
        format!("{out}{err}")
    }

    fn run(&self, args: &[&str]) -> String {
        self.run_in(self.home.path(), args, Duration::from_secs(120))
    }
}

fn run_state(server: &Server, id: &str) -> String {
    let run = server.api("GET", &format!("/flow_runs/{id}"), &Value::Null);
    run["state"]["type"].as_str().unwrap_or_default().to_owned()
}

/// The flow-run id `prefect deployment run` prints (`UUID: ...`).
fn printed_run_id(out: &str) -> String {
    out.lines()
        .find_map(|l| l.split_once("UUID:").map(|(_, id)| id))
        .map(|id| id.trim().to_owned())
        .unwrap_or_else(|| panic!("no run id in: {out}"))
}

#[test]
fn stock_prefect_cli_and_worker_drive_sluice() {
    let Some(venv) = venv() else {
        return;
    };
    let server = Server::ready();
    let prefect = Prefect {
        bin: venv.join("bin").join("prefect"),
        home: tempfile::tempdir().expect("tempdir"),
        api: server.base.clone(),
    };

    // Work pools: create, list, inspect, pause, resume, delete.
    prefect.run(&["work-pool", "create", "compat", "--type", "process"]);
    prefect.run(&["work-pool", "create", "compat-push", "--type", "ecs:push"]);
    let listed = prefect.run(&["work-pool", "ls"]);
    assert!(
        listed.contains("compat") && listed.contains("ecs:push"),
        "{listed}"
    );
    let inspected = prefect.run(&["work-pool", "inspect", "compat"]);
    assert!(inspected.contains("process"), "{inspected}");
    prefect.run(&["work-pool", "pause", "compat"]);
    let pool = server.api("GET", "/work_pools/compat", &Value::Null);
    assert_eq!(pool["is_paused"], json!(true));
    assert_eq!(pool["status"], json!("PAUSED"));
    prefect.run(&["work-pool", "resume", "compat"]);
    let pool = server.api("GET", "/work_pools/compat", &Value::Null);
    assert_eq!(pool["is_paused"], json!(false));
    prefect.run(&["work-pool", "delete", "compat-push"]);

    // A project with a real flow, deployed by `prefect deploy`.
    let project = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        project.path().join("flows.py"),
        "from prefect import flow, get_run_logger\n\n\n\
         @flow\ndef greet(name: str = \"world\") -> int:\n    \
         get_run_logger().info(\"hello %s from sluice\", name)\n    return 42\n",
    )
    .expect("flow file");
    std::fs::write(
        project.path().join("prefect.yaml"),
        format!(
            "name: compat\nprefect-version: 3.9.1\npull:\n\
             - prefect.deployments.steps.set_working_directory:\n    directory: {}\n\
             deployments:\n- name: nightly\n  entrypoint: flows.py:greet\n  \
             parameters:\n    name: prefect\n  work_pool:\n    name: compat\n",
            project.path().display()
        ),
    )
    .expect("prefect.yaml");
    let deployed = prefect.run_in(
        project.path(),
        &["--no-prompt", "deploy", "--all"],
        Duration::from_secs(120),
    );
    assert!(deployed.contains("greet/nightly"), "{deployed}");

    // Run it, and let Prefect's own worker pick it up and run the flow.
    let run_id = printed_run_id(&prefect.run(&["deployment", "run", "greet/nightly"]));
    assert_eq!(run_state(&server, &run_id), "SCHEDULED");
    prefect.run_in(
        project.path(),
        &[
            "worker",
            "start",
            "--pool",
            "compat",
            "--type",
            "process",
            "--run-once",
        ],
        Duration::from_secs(240),
    );
    assert_eq!(run_state(&server, &run_id), "COMPLETED");
    let logs = server.api(
        "POST",
        "/logs/filter",
        &json!({"logs": {"flow_run_id": {"any_": [run_id]}}}),
    );
    let messages: Vec<&str> = logs
        .as_array()
        .expect("logs")
        .iter()
        .filter_map(|l| l["message"].as_str())
        .collect();
    assert!(
        messages
            .iter()
            .any(|m| m.contains("hello prefect from sluice")),
        "the flow's log line reached sluice: {messages:?}"
    );
    let runs = prefect.run(&["flow-run", "ls"]);
    assert!(
        runs.contains(&run_id) && runs.contains("COMPLETED"),
        "{runs}"
    );

    // Cancel a run nobody picked up.
    let waiting = printed_run_id(&prefect.run(&["deployment", "run", "greet/nightly"]));
    prefect.run(&["flow-run", "cancel", &waiting]);
    assert_eq!(run_state(&server, &waiting), "CANCELLED");

    prefect.run(&["work-pool", "delete", "compat"]);
    let pools = server.api("POST", "/work_pools/filter", &json!({}));
    assert_eq!(pools, json!([]));
}
