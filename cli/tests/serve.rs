//! `sluice serve` end to end: a real server, a real `sluice serve` process, real jobs.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{SLUICE, Server};
use serde_json::{Value, json};

/// `sh -c 'SCRIPT'`: the command is split into words, not run by a shell.
fn shell(script: &str) -> String {
    format!("sh -c '{}'", script.replace('\'', r"'\''"))
}

/// `sluice serve --name NAME --command 'sh -c SCRIPT' --poll-seconds 1 EXTRA...` against `s`.
fn serve(s: &Server, name: &str, command: &str, extra: &[&str]) -> Child {
    Command::new(SLUICE)
        .args(["serve", "--name", name, "--command", &shell(command)])
        .args(["--poll-seconds", "1"])
        .args(extra)
        .env("SLUICE_API_URL", &s.base)
        .env("SLUICE_LOG", "warn")
        .env_remove("PREFECT_API_URL")
        .env_remove("SLUICE_API_KEY")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sluice serve")
}

fn wait_for<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The served deployment, once `sluice serve` has upserted it.
fn deployment(s: &Server, name: &str) -> Value {
    wait_for("the deployment", 15, || {
        s.api("POST", "deployments/filter", &json!({}))
            .as_array()
            .and_then(|all| all.iter().find(|d| d["name"] == name).cloned())
    })
}

fn create_run(s: &Server, deployment_id: &str) -> String {
    let run = s.api(
        "POST",
        &format!("deployments/{deployment_id}/create_flow_run"),
        &json!({}),
    );
    run["id"].as_str().expect("run id").to_owned()
}

fn final_state(s: &Server, run_id: &str) -> String {
    wait_for("a final state", 20, || {
        let run = s.api("GET", &format!("flow_runs/{run_id}"), &Value::Null);
        let t = run["state"]["type"].as_str().unwrap_or_default().to_owned();
        matches!(t.as_str(), "COMPLETED" | "FAILED" | "CRASHED" | "CANCELLED").then_some(t)
    })
}

/// SIGTERM; the exit code (within ten seconds).
fn terminate(mut child: Child) -> i32 {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill -TERM");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status.code().unwrap_or(-1);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("sluice serve did not stop within 10 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn serve_runs_a_run_once_ships_its_logs_and_pauses_on_sigterm() {
    let s = Server::ready();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("ran.txt");
    let cmd = format!(
        "echo \"hello from $SLUICE_FLOW_RUN_ID x=$X\"; echo $SLUICE_FLOW_RUN_ID >> {}",
        file.display()
    );
    let child = serve(
        &s,
        "served",
        &cmd,
        &[
            "--env",
            "X=42",
            "--param",
            "n=3",
            "--interval",
            "3600",
            "--timezone",
            "UTC",
            "--grace-seconds",
            "5",
        ],
    );
    let dep = deployment(&s, "served");
    assert_eq!(dep["work_pool_name"], Value::Null);
    assert_eq!(dep["paused"], false);
    assert_eq!(dep["parameters"]["n"], 3);
    let schedules = dep["schedules"].as_array().expect("schedules");
    assert_eq!(schedules.len(), 1, "{dep}");
    assert_eq!(schedules[0]["schedule"]["interval"], 3600.0, "{dep}");
    let dep_id = dep["id"].as_str().expect("id").to_owned();

    let run_id = create_run(&s, &dep_id);
    assert_eq!(final_state(&s, &run_id), "COMPLETED");
    let ran = std::fs::read_to_string(&file).expect("side effect");
    assert_eq!(ran.lines().filter(|l| *l == run_id).count(), 1, "{ran}");

    let logs = wait_for("the run's logs", 10, || {
        let logs = s.api(
            "POST",
            "logs/filter",
            &json!({ "logs": { "flow_run_id": { "any_": [run_id] } } }),
        );
        let text: Vec<String> = logs
            .as_array()?
            .iter()
            .filter_map(|l| l["message"].as_str().map(str::to_owned))
            .collect();
        text.iter()
            .any(|m| m.contains(&format!("hello from {run_id} x=42")))
            .then_some(text)
    });
    assert!(!logs.is_empty());

    let started = Instant::now();
    assert_eq!(terminate(child), 0);
    assert!(started.elapsed() < Duration::from_secs(10));
    let dep = s.api("GET", &format!("deployments/{dep_id}"), &Value::Null);
    assert_eq!(dep["paused"], true, "{dep}");
    // Still exactly once after shutdown.
    let ran = std::fs::read_to_string(&file).expect("side effect");
    assert_eq!(ran.lines().filter(|l| *l == run_id).count(), 1, "{ran}");
}

#[test]
fn serve_limit_one_never_overlaps_and_a_failing_command_ends_failed() {
    let s = Server::ready();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("spans.txt");
    let cmd = format!(
        "echo \"$SLUICE_FLOW_RUN_ID start $(date +%s%N)\" >> {f}; sleep 1; \
         echo \"$SLUICE_FLOW_RUN_ID end $(date +%s%N)\" >> {f};",
        f = file.display()
    );
    let child = serve(
        &s,
        "limited",
        &cmd,
        &["--limit", "1", "--grace-seconds", "5"],
    );
    let dep_id = deployment(&s, "limited")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let a = create_run(&s, &dep_id);
    let b = create_run(&s, &dep_id);
    assert_eq!(final_state(&s, &a), "COMPLETED");
    assert_eq!(final_state(&s, &b), "COMPLETED");

    let spans = std::fs::read_to_string(&file).expect("spans");
    let time = |id: &str, what: &str| -> u128 {
        spans
            .lines()
            .find_map(|l| {
                let mut parts = l.split(' ');
                (parts.next() == Some(id) && parts.next() == Some(what))
                    .then(|| parts.next().and_then(|t| t.parse().ok()))
                    .flatten()
            })
            .unwrap_or_else(|| panic!("no {what} for {id}: {spans}"))
    };
    let (a0, a1, b0, b1) = (
        time(&a, "start"),
        time(&a, "end"),
        time(&b, "start"),
        time(&b, "end"),
    );
    assert!(
        a1 <= b0 || b1 <= a0,
        "runs overlapped with --limit 1: {spans}"
    );
    assert_eq!(terminate(child), 0);

    // A failing command: FAILED with its exit code explained.
    let child = serve(
        &s,
        "failing",
        "echo oops >&2; exit 3",
        &["--grace-seconds", "5"],
    );
    let dep_id = deployment(&s, "failing")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let run_id = create_run(&s, &dep_id);
    assert_eq!(final_state(&s, &run_id), "FAILED");
    let run = s.api("GET", &format!("flow_runs/{run_id}"), &Value::Null);
    assert!(
        run["state"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("code 3"),
        "{run}"
    );
    assert_eq!(terminate(child), 0);
}

fn wait_running(s: &Server, run_id: &str) {
    wait_for("RUNNING", 20, || {
        let run = s.api("GET", &format!("flow_runs/{run_id}"), &Value::Null);
        (run["state"]["type"] == "RUNNING").then_some(())
    });
}

#[test]
fn serve_cancels_a_cancelling_run_and_kills_what_outlives_the_shutdown_grace() {
    let s = Server::ready();
    let child = serve(&s, "sleepy", "sleep 30", &["--grace-seconds", "1"]);
    let dep_id = deployment(&s, "sleepy")["id"]
        .as_str()
        .expect("id")
        .to_owned();

    // Cancellation: the process is killed and the run ends CANCELLED.
    let run_id = create_run(&s, &dep_id);
    wait_running(&s, &run_id);
    let (code, _, err) = s.sluice(&["flow-run", "cancel", &run_id]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(final_state(&s, &run_id), "CANCELLED");

    // Shutdown with a run still going: it is killed after the grace period and CRASHED.
    let run_id = create_run(&s, &dep_id);
    wait_running(&s, &run_id);
    let started = Instant::now();
    assert_eq!(terminate(child), 0);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(final_state(&s, &run_id), "CRASHED");
    let dep = s.api("GET", &format!("deployments/{dep_id}"), &Value::Null);
    assert_eq!(dep["paused"], true, "{dep}");
}
