//! Prefect's own UI (the v2 and v1 bundles of the installed `prefect` package) on Sluice, in
//! Chromium: `sluice server start` finds and serves it, and every page a user opens shows the
//! data the stock SDK made, with no API call answered >= 400 and no page error. Then the same
//! UI through `sluice ui --api-url`, against a server that wants an API key.
//!
//! Needs `SLUICE_PREFECT_VENV` (Prefect, for the SDK and the UI bundles) and
//! `SLUICE_CHROMIUM` + `SLUICE_PLAYWRIGHT_MODULES` (set by `infra/test.sh` from
//! `infra/browser.sh`); skipped without them unless `SLUICE_REQUIRE_PREFECT=1` /
//! `SLUICE_REQUIRE_BROWSER=1`. Screenshots go to `target/ui-screenshots/`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{SLUICE, Server, free_port, prefect_command, wait_healthy};
use serde_json::{Value, json};

struct Browser {
    chromium: String,
    node_modules: String,
}

fn browser(test: &str) -> Option<Browser> {
    let get = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    match (get("SLUICE_CHROMIUM"), get("SLUICE_PLAYWRIGHT_MODULES")) {
        (Some(chromium), Some(node_modules)) => Some(Browser {
            chromium,
            node_modules,
        }),
        _ => {
            assert!(
                std::env::var("SLUICE_REQUIRE_BROWSER").as_deref() != Ok("1"),
                "SLUICE_REQUIRE_BROWSER=1 but SLUICE_CHROMIUM / SLUICE_PLAYWRIGHT_MODULES are not set"
            );
            sluice_testkit::skip(
                test,
                "SLUICE_CHROMIUM and SLUICE_PLAYWRIGHT_MODULES are not set (infra/test.sh sets them from infra/browser.sh)",
            );
            None
        }
    }
}

/// A child process killed when the test ends, however it ends.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn here() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

fn screenshots(run: &str) -> PathBuf {
    // CARGO_TARGET_DIR when set (CI shares one), else the workspace's target/.
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("ui-screenshots").join(run)
}

/// `PATH` with the virtualenv's `bin` first, so `python3` is the one with prefect.
fn path_with(venv: &Path) -> String {
    format!(
        "{}:{}",
        venv.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// `sluice server start` on a free port with the venv's python on PATH (so it finds the UI
/// itself); its log in `dir/server.log`.
fn start_server(venv: &Path, dir: &Path, extra: &[&str]) -> (Proc, String) {
    let port = free_port();
    let log = std::fs::File::create(dir.join("server.log")).expect("log");
    let child = Command::new(SLUICE)
        .args(["server", "start", "--no-push", "--port", &port.to_string()])
        .arg("--db")
        .arg(dir.join("sluice.db"))
        .args(extra)
        .env("PATH", path_with(venv))
        .env_remove("SLUICE_UI_DIR")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn sluice server");
    let addr = format!("127.0.0.1:{port}");
    let proc = Proc(child);
    wait_healthy(&addr);
    (proc, addr)
}

fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Runs the Chromium driver over `pages`; panics with every problem it found.
fn drive(browser: &Browser, base: &str, run: &str, pages: &[Value], dir: &Path) {
    let spec = json!({
        "base": base,
        "chromium": browser.chromium,
        "node_modules": browser.node_modules,
        "shots": screenshots(run),
        "login": null,
        "pages": pages,
    });
    let spec_path = dir.join(format!("{run}.json"));
    std::fs::write(&spec_path, spec.to_string()).expect("spec");
    let out = Command::new("node")
        .arg(here().join("drive.mjs"))
        .arg(&spec_path)
        .output()
        .expect("run node (infra/browser.sh installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut failures = Vec::new();
    let mut seen = 0;
    for line in stdout.lines() {
        let Ok(result) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        seen += 1;
        for problem in result["problems"].as_array().into_iter().flatten() {
            failures.push(format!("{}: {}", result["page"], problem));
        }
    }
    assert!(
        out.status.success() && failures.is_empty() && seen == pages_len(&spec),
        "the UI check failed ({} of {} pages reported):\n{}\nstderr: {}",
        seen,
        pages_len(&spec),
        failures.join("\n"),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn pages_len(spec: &Value) -> usize {
    spec["pages"].as_array().map_or(0, Vec::len)
}

fn page(name: &str, path: &str, expect: &[&str]) -> Value {
    json!({ "name": name, "path": path, "expect": expect })
}

#[test]
fn prefect_ui_v2_and_v1_show_what_the_sdk_made() {
    let Some(venv) = common::prefect_venv("ui") else {
        return;
    };
    let Some(browser) = browser("ui") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (_server, addr) = start_server(&venv, dir.path(), &[]);
    let log = std::fs::read_to_string(dir.path().join("server.log")).expect("log");
    assert!(
        log.contains("Prefect's UI at"),
        "the server found no UI in the prefect package:\n{log}"
    );
    let api = format!("http://{addr}/api");
    let server = Server::attach(&api);
    let (code, _, err) = server.sluice(&["work-pool", "create", "ui-pool", "--type", "process"]);
    assert_eq!(code, 0, "{err}");

    // The data: everything through Prefect's own SDK.
    let seeded = prefect_command(&venv.join("bin/python"), dir.path(), &api)
        .arg(here().join("seed.py"))
        .arg("ui-pool")
        .output()
        .expect("run the seed");
    let out = String::from_utf8_lossy(&seeded.stdout);
    let made: Value = out
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| {
            panic!(
                "the seed printed no JSON:\n{out}\n{}",
                String::from_utf8_lossy(&seeded.stderr)
            )
        });
    let seeded_at = std::time::SystemTime::now();
    let text = |key: &str| made[key].as_str().expect("seeded id").to_owned();
    let (completed, failed, flow, deployment) = (
        text("completed_run"),
        text("failed_run"),
        text("flow"),
        text("deployment"),
    );

    // A live worker, and the deployment's upcoming runs from the scheduler.
    let worker = Proc(
        Command::new(SLUICE)
            .args(["worker", "start", "--pool", "ui-pool", "--api-url", &api])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sluice worker"),
    );
    wait_for("the worker to be online", Duration::from_secs(30), || {
        server
            .api("POST", "/work_pools/ui-pool/workers/filter", &json!({}))
            .as_array()
            .is_some_and(|w| w.iter().any(|w| w["status"] == "ONLINE"))
    });
    wait_for(
        "the deployment's scheduled runs",
        Duration::from_secs(60),
        || {
            let body = json!({
                "deployments": {"id": {"any_": [deployment]}},
                "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}},
            });
            server.api("POST", "/flow_runs/count", &body).as_u64() > Some(0)
        },
    );

    // The dashboards ask for runs that started before the current minute (the UI rounds its
    // window down to it), so the seeded runs show once a minute has turned.
    let minute = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() / 60)
            .unwrap_or_default()
    };
    wait_for("the next minute", Duration::from_secs(70), || {
        minute(std::time::SystemTime::now()) > minute(seeded_at)
    });
    let mut pages = Vec::new();
    for (ui, prefix) in [("v2", "/v2"), ("v1", "")] {
        let p = |name: &str, path: &str, expect: &[&str]| {
            page(&format!("{ui}-{name}"), &format!("{prefix}{path}"), expect)
        };
        pages.push(p("dashboard", "/dashboard", &["ui-broken", "ui-pool"]));
        pages.push(p("runs", "/runs", &["ui-etl", "ui-broken"]));
        let mut run = p(
            "flow-run",
            &format!("/runs/flow-run/{completed}"),
            &["ui-etl", "etl starting with n=3"],
        );
        run["calls"] = json!(["/graph-v2", "/logs/filter"]);
        run["steps"] = json!([{"click": "Task Runs"}, {"expect": "shout"}]);
        pages.push(run);
        pages.push(p(
            "failed-run",
            &format!("/runs/flow-run/{failed}"),
            &["ui-broken", "boom from the UI test"],
        ));
        pages.push(p("flows", "/flows", &["ui-etl", "ui-sub"]));
        pages.push(p("flow", &format!("/flows/flow/{flow}"), &["ui-etl"]));
        pages.push(p("deployments", "/deployments", &["ui-nightly"]));
        let mut dep = p(
            "deployment",
            &format!("/deployments/deployment/{deployment}"),
            &["ui-nightly", "ui-pool"],
        );
        dep["steps"] = json!([{"click": "Upcoming"}, {"expect": "Scheduled"}]);
        pages.push(dep);
        pages.push(p("work-pools", "/work-pools", &["ui-pool"]));
        let mut pool = p("work-pool", "/work-pools/work-pool/ui-pool", &["ui-pool"]);
        pool["steps"] = json!([
            {"click": "Workers"}, {"expect": "ProcessWorker"},
            {"click": "Work Queues"}, {"expect": "default"},
        ]);
        pages.push(pool);
        pages.push(p("blocks", "/blocks", &["ui-secret"]));
        pages.push(p("variables", "/variables", &["ui_variable"]));
        pages.push(p("concurrency", "/concurrency-limits", &["ui-limit"]));
        pages.push(p("artifacts", "/artifacts", &["ui-report"]));
        pages.push(p("events", "/events", &["Flow run"]));
    }
    drive(
        &browser,
        &format!("http://{addr}"),
        "server",
        &pages,
        dir.path(),
    );

    // What a user does from the pages: a custom run (the form is checked first), a quick run,
    // and the schedule switched off. After the pages above, since they change what those show;
    // without the worker, so the new runs stay as the UI made them.
    drop(worker);
    let mut pages = Vec::new();
    let dep_path = format!("/deployments/deployment/{deployment}");
    for (ui, prefix) in [("v2", "/v2"), ("v1", "")] {
        let mut custom = page(
            &format!("{ui}-custom-run"),
            &format!("{prefix}{dep_path}/run"),
            &["ui-nightly"],
        );
        custom["steps"] = json!([{"click": "Submit"}, {"expect": "ui-etl"}]);
        custom["calls"] = json!(["/ui/schemas/validate", "/create_flow_run"]);
        pages.push(custom);
        let mut quick = page(
            &format!("{ui}-quick-run"),
            &format!("{prefix}{dep_path}"),
            &["ui-nightly"],
        );
        quick["steps"] = json!([{"click": "Run"}, {"click": "Quick run"}, {"expect": "ui-etl"}]);
        quick["calls"] = json!(["/create_flow_run"]);
        pages.push(quick);
    }
    let mut toggle = page(
        "v2-schedule-off",
        &format!("/v2{dep_path}"),
        &["At 03:00 AM"],
    );
    toggle["steps"] = json!([{"click_role": "switch"}]);
    toggle["calls"] = json!([format!("/deployments/{deployment}/schedules/")]);
    pages.push(toggle);
    drive(
        &browser,
        &format!("http://{addr}"),
        "actions",
        &pages,
        dir.path(),
    );
    let schedules = server.api(
        "GET",
        &format!("/deployments/{deployment}/schedules"),
        &Value::Null,
    );
    assert_eq!(schedules[0]["active"], false, "{schedules}");
    let by_ui = json!({
        "deployments": {"id": {"any_": [deployment]}},
        "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}},
        "sort": "EXPECTED_START_TIME_ASC",
    });
    // Two custom and two quick runs; the schedule's own runs went with it.
    let runs = server.api("POST", "/flow_runs/filter", &by_ui);
    assert_eq!(runs.as_array().map(Vec::len), Some(4), "{runs}");
}

/// `sluice ui --api-url` against a server with `--auth api-key`: the UI is served on loopback,
/// its `/api` proxied with the key added, so the browser holds no key and still sees the data.
/// A wrong key is refused at start.
#[test]
fn sluice_ui_proxies_a_remote_api_with_its_key() {
    let Some(venv) = common::prefect_venv("ui_proxy") else {
        return;
    };
    let Some(browser) = browser("ui_proxy") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("sluice.db");
    let key = {
        let out = Command::new(SLUICE)
            .args(["api-key", "create", "ui", "--output", "json", "--db"])
            .arg(&db)
            .output()
            .expect("sluice api-key create");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let created: Value = serde_json::from_slice(&out.stdout).expect("key JSON");
        created["key"].as_str().expect("the key").to_owned()
    };
    // No UI on this server: the point is the one `sluice ui` serves.
    let (_server, addr) = start_server(&venv, dir.path(), &["--auth", "api-key", "--no-ui"]);
    let api = format!("http://{addr}/api");
    let authed = |args: &[&str]| {
        Command::new(SLUICE)
            .args(args)
            .args(["--api-url", &api, "--api-key", &key])
            .output()
            .expect("run sluice")
    };
    let out = authed(&["work-pool", "create", "proxied-pool", "--type", "process"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = authed(&["variable", "set", "proxied_variable", "through-the-proxy"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let wrong = Command::new(SLUICE)
        .args(["ui", "--api-url", &api, "--api-key", "not-a-key", "--port"])
        .arg(free_port().to_string())
        .env("PATH", path_with(&venv))
        .output()
        .expect("sluice ui");
    let err = String::from_utf8_lossy(&wrong.stderr);
    assert!(!wrong.status.success(), "a wrong key must stop sluice ui");
    assert!(err.contains("401"), "the refusal says why: {err}");

    let port = free_port();
    let _ui = Proc(
        Command::new(SLUICE)
            .args(["ui", "--api-url", &api, "--api-key", &key, "--port"])
            .arg(port.to_string())
            .env("PATH", path_with(&venv))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sluice ui"),
    );
    let ui_addr = format!("127.0.0.1:{port}");
    wait_healthy(&ui_addr);
    let settings = get_json(&format!("http://{ui_addr}/ui-settings"));
    assert_eq!(
        settings["auth"],
        Value::Null,
        "the browser is asked for no key"
    );
    assert_eq!(settings["api_url"], format!("http://{ui_addr}/api"));
    let pages = vec![
        page("proxy-v2-work-pools", "/v2/work-pools", &["proxied-pool"]),
        page("proxy-v2-variables", "/v2/variables", &["proxied_variable"]),
        page("proxy-v1-work-pools", "/work-pools", &["proxied-pool"]),
        page("proxy-v1-variables", "/variables", &["proxied_variable"]),
    ];
    drive(
        &browser,
        &format!("http://{ui_addr}"),
        "proxy",
        &pages,
        dir.path(),
    );
}

/// A GET answered with JSON, on a runtime of its own.
fn get_json(url: &str) -> Value {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        reqwest::get(url)
            .await
            .expect("GET")
            .json()
            .await
            .expect("JSON")
    })
}
