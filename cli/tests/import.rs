//! `sluice import --from` against a real Prefect 3.9.1 server (`prefect server start` from the
//! test virtualenv, on loopback, stopped at the end), filled through Prefect's own SDK and
//! CLI: every object comes over, a second run changes nothing, a conflict writes nothing, and
//! an unreachable or locked source is said plainly.
//!
//! Needs `SLUICE_PREFECT_VENV` (set by `infra/test.sh`); skipped without it unless
//! `SLUICE_REQUIRE_PREFECT=1`.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{SLUICE, Server, free_port, prefect_command};
use serde_json::{Value, json};

/// A Prefect server, stopped when dropped.
struct Prefect {
    child: Child,
    api: String,
}

impl Drop for Prefect {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_prefect(venv: &Path, home: &Path) -> Prefect {
    let port = free_port();
    let api = format!("http://127.0.0.1:{port}/api");
    let child = prefect_command(&venv.join("bin/prefect"), home, &api)
        .args([
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
        ])
        .env("PREFECT_UI_ENABLED", "false")
        .env("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn prefect server");
    let server = Prefect { child, api };
    let deadline = Instant::now() + Duration::from_secs(120);
    let probe = Server::attach(&server.api);
    loop {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let url = format!("{}/health", probe.base);
        let healthy =
            rt.block_on(async { reqwest::get(&url).await.map(|r| r.status().is_success()) });
        if matches!(healthy, Ok(true)) {
            return server;
        }
        assert!(
            Instant::now() < deadline,
            "prefect server never became healthy"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

const SEED: &str = r#"
import asyncio
from datetime import timedelta

from prefect.blocks.system import Secret
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule
from prefect.variables import Variable


async def main():
    async with get_client() as c:
        await c.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name="src-limit", limit=4))
        await c.create_concurrency_limit(tag="db", concurrency_limit=2)
        flow_id = await c.create_flow_from_name("src-flow")
        await c.create_deployment(
            flow_id=flow_id, name="nightly", work_pool_name="src-pool", work_queue_name="hi",
            entrypoint="flows.py:etl", parameters={"n": 3}, tags=["t"],
            job_variables={"env": {"A": "1"}},
            pull_steps=[{"prefect.deployments.steps.set_working_directory": {"directory": "/srv"}}],
            schedules=[
                {"schedule": CronSchedule(cron="0 3 * * *", timezone="UTC"), "active": True},
                {"schedule": IntervalSchedule(interval=timedelta(hours=1)), "active": False},
            ],
        )


Secret(value="s3cr3t").save("src-secret", overwrite=True)
Variable.set("src_var", {"a": 1}, overwrite=True)
asyncio.run(main())
"#;

fn import(server: &Server, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["import"];
    all.extend(args);
    server.sluice(&all)
}

#[test]
fn a_prefect_server_comes_over_once_whole() {
    let Some(venv) = common::prefect_venv("import") else {
        return;
    };
    let home = tempfile::tempdir().expect("tempdir");
    let prefect = start_prefect(&venv, home.path());
    let run = |args: &[&str]| {
        let out = prefect_command(&venv.join("bin/prefect"), home.path(), &prefect.api)
            .args(args)
            .output()
            .expect("prefect");
        assert!(
            out.status.success(),
            "prefect {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&["work-pool", "create", "src-pool", "--type", "process"]);
    run(&[
        "work-queue",
        "create",
        "hi",
        "--pool",
        "src-pool",
        "--priority",
        "5",
    ]);
    let script = home.path().join("seed.py");
    std::fs::write(&script, SEED).expect("seed");
    let out = prefect_command(&venv.join("bin/python"), home.path(), &prefect.api)
        .arg(&script)
        .output()
        .expect("seed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let sluice = Server::ready();
    let from = ["--from", prefect.api.as_str()];
    // A dry run writes nothing.
    let (code, out, err) = import(&sluice, &[from[0], from[1], "--dry-run"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("would create: deployment src-flow/nightly"),
        "{out}"
    );
    assert!(sluice.api("POST", "/variables/filter", &json!({})) == json!([]));

    let (code, out, err) = import(&sluice, &from);
    assert_eq!(code, 0, "{err}\n{out}");
    for line in [
        "created: block document secret/src-secret",
        "created: variable src_var",
        "created: global concurrency limit src-limit",
        "created: tag concurrency limit db",
        "created: work pool src-pool",
        "created: work queue src-pool/hi",
        "created: flow src-flow",
        "created: deployment src-flow/nightly",
    ] {
        assert!(out.contains(line), "{line}\n{out}");
    }
    // Everything as the source holds it.
    let d = sluice.json(&["deployment", "inspect", "src-flow/nightly"]);
    assert_eq!(d["work_pool_name"], "src-pool");
    assert_eq!(d["work_queue_name"], "hi");
    assert_eq!(d["parameters"], json!({"n": 3}));
    assert_eq!(d["tags"], json!(["t"]));
    assert_eq!(d["job_variables"], json!({"env": {"A": "1"}}));
    assert_eq!(
        d["pull_steps"],
        json!([{"prefect.deployments.steps.set_working_directory": {"directory": "/srv"}}])
    );
    let mut schedules: Vec<(String, bool)> = d["schedules"]
        .as_array()
        .expect("schedules")
        .iter()
        .map(|s| {
            (
                s["schedule"].to_string(),
                s["active"].as_bool().expect("active"),
            )
        })
        .collect();
    schedules.sort();
    assert_eq!(schedules.len(), 2);
    assert!(schedules.iter().any(|(s, a)| s.contains("0 3 * * *") && *a));
    assert!(
        schedules.iter().any(|(s, a)| s.contains("3600") && !*a),
        "{schedules:?}"
    );
    let secret = sluice.api(
        "GET",
        "/block_types/slug/secret/block_documents/name/src-secret?include_secrets=true",
        &Value::Null,
    );
    assert_eq!(secret["data"]["value"], "s3cr3t");
    let var = sluice.api("GET", "/variables/name/src_var", &Value::Null);
    assert_eq!(var["value"], json!({"a": 1}));
    let limit = sluice.api("GET", "/v2/concurrency_limits/src-limit", &Value::Null);
    assert_eq!(limit["limit"], 4);
    let tag = sluice.api("GET", "/concurrency_limits/tag/db", &Value::Null);
    assert_eq!(tag["concurrency_limit"], 2);
    let queue = sluice.api("GET", "/work_pools/src-pool/queues/hi", &Value::Null);
    assert_eq!(queue["priority"], 5);

    // Again: nothing to write.
    let (code, out, err) = import(&sluice, &from);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("0 created, 0 updated,"), "{out}");

    // A target whose pool of that name is of another type: nothing is written at all.
    let other = Server::ready();
    let (code, _, err) = other.sluice(&["work-pool", "create", "src-pool", "--type", "ecs"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = import(&other, &from);
    assert_eq!(code, 1);
    assert!(
        err.contains("nothing was imported") && err.contains("src-pool"),
        "{err}"
    );
    assert_eq!(
        other.api("POST", "/variables/filter", &json!({})),
        json!([])
    );

    // An unreachable source, and one that wants a key.
    let (code, _, err) = import(&other, &["--from", "http://127.0.0.1:9/api"]);
    assert_eq!(code, 1);
    assert!(err.contains("cannot reach the source"), "{err}");
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("locked.db");
    let out = Command::new(SLUICE)
        .args(["api-key", "create", "k", "--db"])
        .arg(&db)
        .output()
        .expect("api-key");
    assert!(out.status.success());
    let locked = Server::ready_with(&[
        "--db".to_owned(),
        db.display().to_string(),
        "--auth".to_owned(),
        "api-key".to_owned(),
    ]);
    let (code, _, err) = import(
        &other,
        &["--from", locked.base.as_str(), "--from-api-key", "wrong"],
    );
    assert_eq!(code, 1);
    assert!(err.contains("--from-api-key"), "{err}");
}
