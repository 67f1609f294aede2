//! What a newcomer meets first, with the real binary: a quiet local start, errors that say
//! what is wrong (a busy port, a server that is not running, a malformed API URL, an unknown
//! pool type, a missing database or table), `flow-run ls` as Prefect's, `deploy` blaming the
//! right place, and runs whose failures are explained in their logs.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{SLUICE, Server, free_port, wait_healthy};
use serde_json::{Value, json};

/// `sluice ARGS` with no AWS configuration at all and a home of its own (no `~/.aws`).
fn without_aws(home: &Path) -> Command {
    let mut cmd = Command::new(SLUICE);
    for var in [
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_CONFIG_FILE",
        "AWS_SHARED_CREDENTIALS_FILE",
        "SLUICE_LOG",
        "SLUICE_NO_PUSH",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("HOME", home);
    cmd
}

#[test]
fn a_local_start_prints_no_warning_and_no_colour_codes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let log = dir.path().join("stderr.log");
    let mut child = without_aws(dir.path())
        .args(["server", "start", "--port", &port.to_string(), "--db"])
        .arg(dir.path().join("sluice.db"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("spawn sluice server");
    wait_healthy(&format!("127.0.0.1:{port}"));
    // Long enough for a region lookup against the instance metadata service to have failed
    // and said so (the SDK gives up within about two seconds off EC2).
    std::thread::sleep(Duration::from_secs(3));
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    let status = child.wait().expect("wait");
    assert!(status.success(), "{status}");
    let stderr = std::fs::read_to_string(&log).expect("read log");
    assert!(stderr.contains("sluice server listening"), "{stderr}");
    for unwanted in ["WARN", "ERROR", "\u{1b}["] {
        assert!(
            !stderr.contains(unwanted),
            "{unwanted:?} in a plain local start:\n{stderr}"
        );
    }
}

#[test]
fn a_busy_port_is_reported_with_the_port_flag_before_the_database_is_made() {
    let busy = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = busy.local_addr().expect("addr").port();
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("new").join("sluice.db");
    let out = without_aws(dir.path())
        .args(["server", "start", "--port", &port.to_string(), "--db"])
        .arg(&db)
        .output()
        .expect("run sluice");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("already in use"), "{stderr}");
    assert!(stderr.contains("--port"), "{stderr}");
    assert!(
        !db.parent().expect("parent").exists(),
        "the database was touched"
    );
}

#[test]
fn api_key_ls_does_not_create_a_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("typo.db");
    let out = without_aws(dir.path())
        .args(["api-key", "ls", "--db"])
        .arg(&db)
        .output()
        .expect("run sluice");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("there is no Sluice database at"),
        "{stderr}"
    );
    assert!(stderr.contains("typo.db"), "{stderr}");
    assert!(!db.exists(), "api-key ls created {}", db.display());
}

#[test]
fn api_key_ls_on_a_missing_table_names_table_and_region_and_creates_nothing() {
    if std::env::var_os("AWS_ENDPOINT_URL").is_none_or(|v| v.is_empty()) {
        sluice_testkit::skip(
            "api_key_ls_on_a_missing_table",
            "AWS_ENDPOINT_URL is not set (start the emulator with infra/moto.sh start)",
        );
        return;
    }
    let table = format!("sluice-missing-{}", std::process::id());
    for attempt in 0..2 {
        // Twice: a first call that created the table would let the second succeed.
        let out = Command::new(SLUICE)
            .args(["api-key", "ls", "--store", "dynamodb", "--table", &table])
            .output()
            .expect("run sluice");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "attempt {attempt}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "the DynamoDB table {table} does not exist in region"
            )),
            "{stderr}"
        );
        let region = std::env::var("AWS_REGION").unwrap_or_default();
        assert!(stderr.contains(&region), "{stderr}");
    }
}

#[test]
fn a_server_that_is_not_running_is_named_as_such() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/api");
    let (code, _, err) = Server::attach(&url).sluice(&["work-pool", "ls"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "connection refused — is `sluice server start` running at {url}?"
        )),
        "{err}"
    );
}

#[test]
fn an_api_url_without_scheme_or_api_path_is_explained() {
    let (code, _, err) = Server::attach("127.0.0.1:4200/api").sluice(&["work-pool", "ls"]);
    assert_eq!(code, 1);
    assert!(err.contains("has no scheme"), "{err}");
    assert!(err.contains("http://127.0.0.1:4200/api"), "{err}");
    let (code, _, err) = Server::attach("http://127.0.0.1:4200").sluice(&["work-pool", "ls"]);
    assert_eq!(code, 1);
    assert!(err.contains("does not name the API"), "{err}");
    assert!(err.contains("http://127.0.0.1:4200/api"), "{err}");
}

#[test]
fn an_unknown_pool_type_is_refused_listing_the_known_types() {
    let s = Server::ready();
    let (code, _, err) = s.sluice(&["work-pool", "create", "p", "--type", "proccess"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("unknown work pool type 'proccess'"), "{err}");
    for known in ["process", "ecs", "ecs:push", "batch", "batch:push"] {
        assert!(err.contains(known), "{known} missing from: {err}");
    }
    let pools = s.json(&["work-pool", "ls"]);
    assert_eq!(pools, json!([]), "nothing stored");
}

fn seed_run(s: &Server, flow: &Value, deployment: Option<&Value>, state: &Value) -> String {
    let mut body = json!({ "flow_id": flow["id"], "state": state });
    if let Some(d) = deployment {
        body["deployment_id"] = d["id"].clone();
    }
    let run = s.api("POST", "flow_runs/", &body);
    run["id"].as_str().expect("id").to_owned()
}

#[test]
fn flow_run_ls_is_newest_first_with_flow_and_deployment_and_filters_by_state_name() {
    let s = Server::ready();
    s.json(&["work-pool", "create", "local", "--type", "process"]);
    let flow = s.api("POST", "flows/", &json!({ "name": "etl" }));
    let deployment = s.api(
        "POST",
        "deployments/",
        &json!({ "name": "nightly", "flow_id": flow["id"], "work_pool_name": "local" }),
    );
    let late = seed_run(
        &s,
        &flow,
        Some(&deployment),
        &json!({"type": "SCHEDULED", "name": "Late"}),
    );
    std::thread::sleep(Duration::from_millis(20));
    let completed = seed_run(
        &s,
        &flow,
        None,
        &json!({"type": "COMPLETED", "name": "Completed"}),
    );

    let (code, out, err) = s.sluice(&["flow-run", "ls"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].contains("FLOW") && lines[0].contains("DEPLOYMENT"),
        "{out}"
    );
    assert!(lines[1].starts_with(&completed), "newest first: {out}");
    assert!(lines[2].starts_with(&late), "{out}");
    assert!(
        lines[2].contains("etl") && lines[2].contains("nightly"),
        "{out}"
    );

    let ids = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["flow-run", "ls"];
        all.extend(args);
        s.json(&all)
            .as_array()
            .expect("list")
            .iter()
            .map(|r| r["id"].as_str().expect("id").to_owned())
            .collect()
    };
    assert_eq!(ids(&["--state", "late"]), vec![late.clone()]);
    assert_eq!(ids(&["--state", "Completed"]), vec![completed.clone()]);
    assert_eq!(ids(&["--state-type", "scheduled"]), vec![late]);
    let (code, _, err) = s.sluice(&["flow-run", "ls", "--state-type", "Late"]);
    assert_eq!(code, 1);
    assert!(err.contains("use --state"), "{err}");
}

const TWO_BAD_ENTRIES: &str = r#"
deployments:
  - name: first
    entrypoint: flows.py:etl
    work_pool: { name: local }
    schedules:
      - cron: "not a cron"
  - name: fine
    entrypoint: flows.py:etl
    work_pool: { name: local }
  - name: third
    entrypoint: flows.py:etl
    work_pool: { name: local }
    parameters: [1, 2]
"#;

#[test]
fn deploy_all_reports_every_bad_entry_and_blames_the_command_line_for_its_own_flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("prefect.yaml");
    std::fs::write(&file, TWO_BAD_ENTRIES).expect("write");
    let file = file.to_str().expect("utf-8");
    let nobody = Server::attach("http://127.0.0.1:9/api");
    let (code, _, err) = nobody.sluice(&["deploy", "--all", "--dry-run", "--prefect-file", file]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("2 deployments have errors"), "{err}");
    assert!(err.contains("deployment 'first', schedule #0"), "{err}");
    assert!(
        err.contains("prefect.yaml:7:"),
        "the bad cron's line: {err}"
    );
    assert!(err.contains("`parameters`"), "{err}");
    assert!(
        err.contains("prefect.yaml:14:"),
        "the bad parameters' line: {err}"
    );

    let good = dir.path().join("good.yaml");
    std::fs::write(
        &good,
        "deployments:\n  - name: fine\n    entrypoint: flows.py:etl\n    work_pool: { name: local }\n",
    )
    .expect("write");
    let (code, _, err) = nobody.sluice(&[
        "deploy",
        "--all",
        "--dry-run",
        "--prefect-file",
        good.to_str().expect("utf-8"),
        "--cron",
        "61 * * * *",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.starts_with("error: --cron \"61 * * * *\": "), "{err}");
    assert!(
        !err.contains("good.yaml"),
        "the file is not to blame: {err}"
    );
}

/// A process pool, a deployment whose runs execute `command`, and one run of it.
fn deployment_with_command(s: &Server, command: &str) -> String {
    s.json(&["work-pool", "create", "local", "--type", "process"]);
    let flow = s.api("POST", "flows/", &json!({ "name": "job" }));
    s.api(
        "POST",
        "deployments/",
        &json!({
            "name": "d", "flow_id": flow["id"], "work_pool_name": "local",
            "job_variables": { "command": command },
        }),
    );
    "job/d".to_owned()
}

/// A `--run-once` worker on the pool; its stderr (its log).
fn worker_once(s: &Server) -> String {
    let (code, _, err) = s.sluice(&[
        "worker",
        "start",
        "--pool",
        "local",
        "--run-once",
        "--poll-seconds",
        "1",
    ]);
    assert_eq!(code, 0, "{err}");
    err
}

#[test]
fn a_process_command_is_split_into_words_without_a_shell() {
    let s = Server::ready();
    let name = deployment_with_command(&s, "echo 'two  spaces' $HOME && echo not-a-shell");
    let run = s.json(&["deployment", "run", &name]);
    let id = run["id"].as_str().expect("id");
    let log = worker_once(&s);
    assert_eq!(
        s.json(&["flow-run", "inspect", id])["state_type"],
        "COMPLETED"
    );
    // Log fields are values, not Rust's debug text of the structs behind them.
    assert!(log.contains("submitted=1 completed=1"), "{log}");
    for debug_text in ["WorkerReport", "Some(", "String("] {
        assert!(!log.contains(debug_text), "{debug_text:?} in:\n{log}");
    }
    let (code, out, err) = s.sluice(&["flow-run", "logs", id]);
    assert_eq!(code, 0, "{err}");
    // One echo got every word, quotes removed and nothing expanded, as Prefect runs it.
    assert!(
        out.contains("two  spaces $HOME && echo not-a-shell"),
        "{out}"
    );
}

#[test]
fn a_failed_run_says_why_in_its_logs_and_watch_prints_the_message() {
    let s = Server::ready();
    let name = deployment_with_command(&s, "sh -c 'exit 3'");
    let mut watch = Command::new(SLUICE)
        .args(["deployment", "run", &name, "--watch", "--output", "json"])
        .env("SLUICE_API_URL", &s.base)
        .env_remove("PREFECT_API_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn watch");
    // No worker yet: after a few seconds the watcher says why nothing happens.
    let mut stderr = watch.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        use std::io::Read;
        let mut buf = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            let _ = tx.send(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    });
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !seen.contains("no worker has polled") {
        assert!(Instant::now() < deadline, "no waiting notice: {seen}");
        if let Ok(chunk) = rx.recv_timeout(Duration::from_millis(200)) {
            seen.push_str(&chunk);
        }
    }
    assert!(seen.contains("sluice worker start --pool local"), "{seen}");

    let _ = worker_once(&s);
    let status = watch.wait().expect("wait");
    while let Ok(chunk) = rx.recv_timeout(Duration::from_secs(2)) {
        seen.push_str(&chunk);
    }
    assert_eq!(status.code(), Some(1), "{seen}");
    assert!(
        seen.contains("ended Failed: Flow run process exited with code 3."),
        "{seen}"
    );

    let mut out = String::new();
    use std::io::Read;
    watch
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("read");
    let run: Value = serde_json::from_str(&out).expect("the created run as JSON");
    let id = run["id"].as_str().expect("id");
    let (code, logs, err) = s.sluice(&["flow-run", "logs", id]);
    assert_eq!(code, 0, "{err}");
    assert!(
        logs.contains("Flow run process exited with code 3."),
        "{logs}"
    );
}
