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
            job_variables={"env": {"A": "1"}}, concurrency_limit=2, paused=True,
            enforce_parameter_schema=True,
            parameter_openapi_schema={"type": "object", "title": "Parameters",
                                      "properties": {"n": {"type": "integer", "title": "n", "position": 0}}},
            pull_steps=[{"prefect.deployments.steps.set_working_directory": {"directory": "/srv"}}],
            schedules=[
                {"schedule": CronSchedule(cron="0 3 * * *", timezone="UTC"), "active": True},
                {"schedule": IntervalSchedule(interval=timedelta(hours=1)), "active": False},
            ],
        )


async def ref_pool(secret_id):
    from prefect.client.schemas.actions import WorkPoolCreate
    template = {
        "job_configuration": {"command": "{{ command }}", "token": "{{ token }}"},
        "variables": {"type": "object", "properties": {
            "command": {"type": "string"},
            "token": {"type": "object", "default": {"$ref": {"block_document_id": str(secret_id)}}},
        }},
    }
    async with get_client() as c:
        await c.create_work_pool(WorkPoolCreate(name="ref-pool", type="process", base_job_template=template))


secret_id = Secret(value="s3cr3t").save("src-secret", overwrite=True)
Variable.set("src_var", {"a": 1}, overwrite=True)
asyncio.run(main())
asyncio.run(ref_pool(secret_id))
"#;

/// A pool whose template loses a variable after a deployment was saved with it.
const DRIFT: &str = r#"
import asyncio

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate

def template(with_extra):
    props = {"command": {"type": "string"}}
    config = {"command": "{{ command }}"}
    if with_extra:
        props["extra"] = {"type": "string"}
        config["extra"] = "{{ extra }}"
    return {"job_configuration": config, "variables": {"type": "object", "properties": props}}


async def main():
    async with get_client() as c:
        await c.create_work_pool(WorkPoolCreate(name="drift-pool", type="process", base_job_template=template(True)))
        flow_id = await c.create_flow_from_name("src-flow")
        await c.create_deployment(flow_id=flow_id, name="drifted", work_pool_name="drift-pool",
                                  entrypoint="flows.py:etl", job_variables={"extra": "x"})
        await c.update_work_pool("drift-pool", WorkPoolUpdate(base_job_template=template(False)))


asyncio.run(main())
"#;

fn import(server: &Server, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["import"];
    all.extend(args);
    server.sluice(&all)
}

/// An import that must be refused with `needles` in its error, having written nothing.
fn refused(server: &Server, args: &[&str], needles: &[&str]) {
    let (code, out, err) = import(server, args);
    assert_eq!(code, 1, "{out}");
    for needle in needles {
        assert!(err.contains(needle), "{needle}: {err}");
    }
    assert_eq!(
        server.api("POST", "/variables/filter", &json!({})),
        json!([])
    );
}

/// Runs `source` as `name` in `home` with the virtualenv's Python against `api`; its stdout.
fn python(venv: &Path, home: &Path, api: &str, name: &str, source: &str) -> String {
    std::fs::write(home.join(name), source).expect("script");
    let out = prefect_command(&venv.join("bin/python"), home, api)
        .arg(name)
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "{name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The run id `sluice deployment run` printed.
fn run_id_in(out: &str) -> String {
    out.split_whitespace()
        .map(|w| w.trim_matches(|c| c == '(' || c == ')'))
        .find(|w| w.len() == 36 && w.chars().filter(|c| *c == '-').count() == 4)
        .unwrap_or_else(|| panic!("no run id in {out}"))
        .to_owned()
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
    python(&venv, home.path(), &prefect.api, "seed.py", SEED);

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
    assert_eq!(d["paused"], true);
    assert_eq!(d["enforce_parameter_schema"], true);
    assert_eq!(
        d["parameter_openapi_schema"]["properties"]["n"]["type"],
        "integer"
    );
    let concurrency = d["global_concurrency_limit"]["limit"]
        .as_i64()
        .or_else(|| d["concurrency_limit"].as_i64());
    assert_eq!(concurrency, Some(2), "{d}");
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
    // A template default that names a saved block names the target's copy of it.
    let ref_pool = sluice.api("GET", "/work_pools/ref-pool", &Value::Null);
    let referred = &ref_pool["base_job_template"]["variables"]["properties"]["token"]["default"]["$ref"]
        ["block_document_id"];
    assert_eq!(referred, &secret["id"], "{ref_pool}");

    // Again: nothing to write.
    let (code, out, err) = import(&sluice, &from);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("0 created, 0 updated,"), "{out}");

    // A change on the source is an update here, and only that.
    run(&["variable", "set", "src_var", r#"{"a": 2}"#, "--overwrite"]);
    let (code, out, err) = import(&sluice, &from);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("0 created, 1 updated,"), "{out}");
    assert!(out.contains("updated: variable src_var"), "{out}");
    let var = sluice.api("GET", "/variables/name/src_var", &Value::Null);
    assert_eq!(var["value"], json!({"a": 2}));

    // A selection by kind and by name brings that and what it needs, nothing else.
    let picked = Server::ready();
    let (code, out, err) = import(
        &picked,
        &[
            from[0],
            from[1],
            "--only",
            "variables,work-pools:src-*,deployments:src-flow/nightly",
        ],
    );
    assert_eq!(code, 0, "{err}\n{out}");
    for line in [
        "created: variable src_var",
        "created: work pool src-pool",
        "created: work queue src-pool/hi",
        "created: flow src-flow",
        "created: deployment src-flow/nightly",
    ] {
        assert!(out.contains(line), "{line}\n{out}");
    }
    assert!(out.starts_with("6 created, 0 updated,"), "{out}");
    let pools = picked.api("POST", "/work_pools/filter", &json!({}));
    assert_eq!(pools.as_array().map(Vec::len), Some(1), "{pools}");
    assert_eq!(
        picked.api("POST", "/v2/concurrency_limits/filter", &json!({})),
        json!([])
    );
    // A name the source does not have is an error, and nothing is written.
    let empty = Server::ready();
    refused(
        &empty,
        &[
            from[0],
            from[1],
            "--only",
            "variables,deployments:src-flow/daily",
        ],
        &["deployments:src-flow/daily", "nothing of that name"],
    );

    // A target whose pool of that name is of another type: nothing is written at all.
    let other = Server::ready();
    let (code, _, err) = other.sluice(&["work-pool", "create", "src-pool", "--type", "ecs"]);
    assert_eq!(code, 0, "{err}");
    refused(&other, &from, &["nothing was imported", "src-pool"]);

    // A source that drifted: a deployment whose job variable its pool no longer declares
    // (Prefect checks job variables when a deployment is saved, not when its pool changes
    // later). Sluice refuses that deployment at the end, and every write before it is undone.
    python(&venv, home.path(), &prefect.api, "drift.py", DRIFT);
    let third = Server::ready();
    let (code, out, err) = import(&third, &from);
    assert_eq!(code, 1, "{out}");
    assert!(
        err.contains("importing deployment src-flow/drifted failed")
            && err.contains("were undone")
            && err.contains("nothing of this import is left"),
        "{err}"
    );
    for (path, body) in [
        ("/variables/filter", json!({})),
        ("/work_pools/filter", json!({})),
        ("/flows/filter", json!({})),
        ("/deployments/filter", json!({})),
        ("/v2/concurrency_limits/filter", json!({})),
    ] {
        assert_eq!(
            third.api("POST", path, &body),
            json!([]),
            "{path} after the undo"
        );
    }
    let docs = third.api("POST", "/block_documents/filter", &json!({}));
    assert!(
        !docs.to_string().contains("src-secret"),
        "the secret was undone too: {docs}"
    );

    // An unreachable source, and one that wants a key.
    refused(
        &other,
        &["--from", "http://127.0.0.1:9/api"],
        &["cannot reach the source"],
    );
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
    refused(
        &other,
        &["--from", locked.base.as_str(), "--from-api-key", "wrong"],
        &["--from-api-key"],
    );
}

/// The flow the Prefect 2 deployments run: plain enough for Prefect 3's engine too.
const FLOWS: &str = r#"
from prefect import flow


@flow
def etl(n: int = 1):
    print(f"etl ran with n={n}")
    return n
"#;

/// Agent-era objects made with Prefect 2's own SDK: Process, ECSTask, KubernetesJob and
/// DockerContainer blocks; GitHub, S3Bucket, RemoteFileSystem and LocalFileSystem storage;
/// cron, interval (inactive) and rrule schedules; overrides as the 2.x CLI writes them.
const SEED2: &str = r#"
import os
import sys
from datetime import timedelta

sys.path.insert(0, os.getcwd())
from flows import etl

from prefect.deployments import Deployment
from prefect.filesystems import GitHub, LocalFileSystem, RemoteFileSystem
from prefect.infrastructure import DockerContainer, KubernetesJob, Process
from prefect.server.schemas.schedules import CronSchedule, IntervalSchedule, RRuleSchedule
from prefect_aws.credentials import AwsCredentials
from prefect_aws.ecs import ECSTask
from prefect_aws.s3 import S3Bucket

Process(env={"MODE": "batch", "REGION": "eu"}).save("local-process", overwrite=True)
ECSTask(cluster="prod", cpu=1024, memory=2048, image="acme/flows:1").save("prod-ecs", overwrite=True)
KubernetesJob(namespace="flows", image="acme/flows:1", image_pull_policy="Always").save("k8s", overwrite=True)
DockerContainer(image="acme/flows:1", image_pull_policy="IF_NOT_PRESENT").save("docker", overwrite=True)
GitHub(repository="https://github.com/acme/flows.git", reference="main").save("gh", overwrite=True)
S3Bucket(bucket_name="acme", bucket_folder="prod").save("bucket", overwrite=True)
AwsCredentials(region_name="eu-west-1").save("creds", overwrite=True)
S3Bucket(bucket_name="acme2", credentials=AwsCredentials.load("creds")).save("bucket2", overwrite=True)
print("s3-bucket checksum", S3Bucket._calculate_schema_checksum())
RemoteFileSystem(basepath="s3://acme/flows").save("remote", overwrite=True)
LocalFileSystem(basepath=os.getcwd()).save("here", overwrite=True)

common = dict(flow=etl, skip_upload=True, apply=True, work_queue_name="default")
Deployment.build_from_flow(name="process-cron", infrastructure=Process.load("local-process"),
    storage=GitHub.load("gh"), schedule=CronSchedule(cron="0 2 * * *", timezone="UTC"),
    infra_overrides={"env.EXTRA": "1"}, parameters={"n": 2}, **common)
Deployment.build_from_flow(name="ecs-interval", infrastructure=ECSTask.load("prod-ecs"),
    storage=S3Bucket.load("bucket"), schedule=IntervalSchedule(interval=timedelta(hours=1)),
    is_schedule_active=False, infra_overrides={"cpu": "512"}, **common)
Deployment.build_from_flow(name="k8s-rrule", infrastructure=KubernetesJob.load("k8s"),
    storage=RemoteFileSystem.load("remote"), schedule=RRuleSchedule(rrule="FREQ=DAILY;BYHOUR=5"),
    infra_overrides={"image_pull_policy": "IF_NOT_PRESENT"}, **common)
Deployment.build_from_flow(name="docker-image", infrastructure=DockerContainer.load("docker"), **common)
Deployment.build_from_flow(name="local-run", infrastructure=Process.load("local-process"),
    storage=LocalFileSystem.load("here"), parameters={"n": 7}, **common)
print("seeded")
"#;

/// The job configuration Prefect's stock Docker and Kubernetes workers build for a run of a
/// migrated deployment, by the workers' own code (`resolve_for_flow_run`, what a worker calls
/// before it submits), from the pool and deployment as Sluice serves them.
const STOCK_CONFIG: &str = r#"
import asyncio, json, os

from prefect.client.orchestration import get_client
from prefect_docker.worker import DockerWorker
from prefect_kubernetes.worker import KubernetesWorker
from prefect_aws.workers.ecs_worker import ECSWorker


async def configuration(worker, pool_name, deployment, then=None):
    async with get_client() as c:
        pool = await c.read_work_pool(pool_name)
        d = await c.read_deployment_by_name(deployment)
        run = await c.create_flow_run_from_deployment(d.id)
        config = await worker.job_configuration.resolve_for_flow_run(
            run, client=c, work_pool=pool, worker_name="check")
        made = then(config, run) if then else config
        await c.delete_flow_run(run.id)
        return made


def ecs_request(config, run):
    # What Prefect's ECS worker registers and sends to RunTask, by its own code.
    worker = ECSWorker(work_pool_name="prod-ecs")
    definition = worker._prepare_task_definition(config, region="us-east-1", flow_run=run)
    arn = "arn:aws:ecs:us-east-1:123456789012:task-definition/prefect:1"
    request = worker._prepare_task_run_request(config, definition, arn, True)
    return {"definition": definition, "request": request}


async def main():
    docker = await configuration(DockerWorker, "docker", "etl/docker-image")
    k8s = await configuration(KubernetesWorker, "k8s", "etl/k8s-rrule")
    # The ECS worker reads the default VPC's subnets (from the AWS emulator in the tests).
    ecs = None
    if os.environ.get("AWS_ENDPOINT_URL"):
        ecs = await configuration(ECSWorker, "prod-ecs", "etl/ecs-interval", ecs_request)
    container = k8s.job_manifest["spec"]["template"]["spec"]["containers"][0]
    shape = lambda t: {"variables": sorted(t["variables"]["properties"]),
                       "job_configuration": sorted(t["job_configuration"])}
    # What Prefect's own server gives `work-pool create --type docker|kubernetes`.
    import prefect
    registry = json.load(open(os.path.join(os.path.dirname(prefect.__file__), "server", "api",
                                           "collections_data", "views",
                                           "aggregate-worker-metadata.json")))
    server = lambda collection, kind: shape(registry[collection][kind]["default_base_job_configuration"])
    print(json.dumps({
        "ecs": ecs,
        "templates": {"docker": server("prefect-docker", "docker"),
                      "kubernetes": server("prefect-kubernetes", "kubernetes")},
        "worker_templates": {"docker": shape(DockerWorker.get_default_base_job_template()),
                             "kubernetes": shape(KubernetesWorker.get_default_base_job_template())},
        "docker": {"image": docker.image, "image_pull_policy": docker.image_pull_policy,
                   "command": docker.command, "flow_run_env": "PREFECT__FLOW_RUN_ID" in docker.env},
        "k8s": {"namespace": k8s.namespace, "image": container["image"],
                "pull": container.get("imagePullPolicy"),
                "flow_run_env": any(e["name"] == "PREFECT__FLOW_RUN_ID" for e in container["env"])},
    }))


asyncio.run(main())
"#;

#[test]
fn an_agent_era_prefect_2_server_comes_over_as_work_pool_deployments() {
    let Some(venv3) = common::prefect_venv("import_prefect2") else {
        return;
    };
    let Some(venv2) = std::env::var_os("SLUICE_PREFECT2_VENV").map(std::path::PathBuf::from) else {
        assert!(
            std::env::var("SLUICE_REQUIRE_PREFECT").as_deref() != Ok("1"),
            "SLUICE_REQUIRE_PREFECT=1 but SLUICE_PREFECT2_VENV is not set"
        );
        sluice_testkit::skip(
            "import_prefect2",
            "SLUICE_PREFECT2_VENV is not set (infra/test.sh sets it)",
        );
        return;
    };
    let home = tempfile::tempdir().expect("tempdir");
    let prefect = start_prefect(&venv2, home.path());
    std::fs::write(home.path().join("flows.py"), FLOWS).expect("flows");
    let seeded = python(&venv2, home.path(), &prefect.api, "seed2.py", SEED2);
    let client_checksum = seeded
        .lines()
        .find_map(|l| l.strip_prefix("s3-bucket checksum "))
        .unwrap_or_else(|| panic!("no checksum in {seeded}"))
        .to_owned();

    let sluice = Server::ready();
    let (code, out, err) = import(&sluice, &["--from", prefect.api.as_str()]);
    assert_eq!(code, 0, "{err}\n{out}");
    // A nested block saved on its own stays a reference to the imported copy of it, so a
    // change to the credentials reaches the bucket, as on the source.
    let bucket = sluice.api(
        "GET",
        "/block_types/slug/s3-bucket/block_documents/name/bucket2?include_secrets=true",
        &Value::Null,
    );
    assert_eq!(
        bucket["data"]["credentials"]["region_name"], "eu-west-1",
        "{bucket}"
    );
    assert_eq!(
        bucket["block_document_references"]["credentials"]["block_document"]["name"], "creds",
        "{bucket}"
    );
    // The bucket's schema has the checksum Prefect's client computes for S3Bucket, though
    // the source answers its references in another order.
    let schema = sluice.api(
        "GET",
        &format!("/block_schemas/checksum/{client_checksum}"),
        &Value::Null,
    );
    assert_eq!(schema["block_type"]["slug"], "s3-bucket", "{schema}");
    assert_eq!(bucket["block_schema"]["checksum"], client_checksum.as_str());
    for line in [
        "created: work pool local-process",
        "created: work pool prod-ecs",
        "created: work pool k8s",
        "created: work pool docker",
        "skipped: work pool default-agent-pool",
    ] {
        assert!(out.contains(line), "{line}\n{out}");
    }
    let inspect = |name: &str| sluice.json(&["deployment", "inspect", &format!("etl/{name}")]);
    let pool_type = |name: &str| sluice.json(&["work-pool", "inspect", name])["type"].clone();
    assert_eq!(pool_type("prod-ecs"), "ecs");
    assert_eq!(pool_type("k8s"), "kubernetes");
    assert_eq!(pool_type("docker"), "docker");

    let d = inspect("process-cron");
    assert_eq!(d["work_pool_name"], "local-process");
    assert_eq!(
        d["pull_steps"],
        json!([{"prefect.deployments.steps.git_clone": {"repository": "https://github.com/acme/flows.git", "branch": "main"}}])
    );
    // The partial override kept the block's other variables, as the agent applied it.
    assert_eq!(
        d["job_variables"],
        json!({"env": {"MODE": "batch", "REGION": "eu", "EXTRA": "1"}})
    );
    assert_eq!(d["parameters"], json!({"n": 2}));
    assert_eq!(d["schedules"][0]["active"], true);

    let d = inspect("ecs-interval");
    assert_eq!(d["work_pool_name"], "prod-ecs");
    assert_eq!(
        d["job_variables"],
        json!({"cpu": 512}),
        "the 2.x string typed"
    );
    assert_eq!(
        d["schedules"][0]["active"], false,
        "the inactive schedule stays off"
    );
    assert_eq!(
        d["pull_steps"][0]["prefect_aws.deployments.steps.pull_from_s3"]["bucket"],
        "acme"
    );
    let d = inspect("k8s-rrule");
    assert_eq!(
        d["job_variables"],
        json!({"image_pull_policy": "IfNotPresent"})
    );
    assert!(
        d["schedules"][0]["schedule"]["rrule"]
            .as_str()
            .is_some_and(|r| r.contains("FREQ=DAILY;BYHOUR=5"))
    );
    assert_eq!(
        d["pull_steps"],
        json!([{"prefect.deployments.steps.pull_from_remote_storage": {"url": "s3://acme/flows"}}])
    );
    // The ECS pool and deployment render the job configuration Prefect's ECS worker builds
    // its RunTask request from: the block's cluster, the 2.x override's cpu, the block's
    // memory and image.
    let ecs_pool = sluice.json(&["work-pool", "inspect", "prod-ecs"]);
    let template = home.path().join("ecs-template.json");
    std::fs::write(&template, ecs_pool["base_job_template"].to_string()).expect("template");
    let (code, rendered, err) = sluice.sluice(&[
        "job-template",
        "render",
        template.to_str().expect("utf-8"),
        "--deployment-variables",
        &inspect("ecs-interval")["job_variables"].to_string(),
    ]);
    assert_eq!(code, 0, "{err}");
    let rendered: Value = serde_json::from_str(&rendered).expect("JSON");
    let request = &rendered["task_run_request"];
    assert_eq!(request["cluster"], "prod", "{rendered}");
    assert_eq!(request["overrides"]["cpu"], 512);
    assert_eq!(request["overrides"]["memory"], 2048);
    assert_eq!(
        rendered["task_definition"]["containerDefinitions"][0]["image"],
        "acme/flows:1"
    );
    let pool = sluice.json(&["work-pool", "inspect", "k8s"]);
    let props = &pool["base_job_template"]["variables"]["properties"];
    assert_eq!(props["namespace"]["default"], "flows");
    assert_eq!(props["image_pull_policy"]["default"], "Always");

    // Again: nothing to write.
    let (code, out, err) = import(&sluice, &["--from", prefect.api.as_str()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("0 created, 0 updated,"), "{out}");

    // The migrated process deployment runs on `sluice worker` to COMPLETED.
    let (code, out, err) = sluice.sluice(&["deployment", "run", "etl/local-run"]);
    assert_eq!(code, 0, "{err}");
    let run_id = run_id_in(&out);
    let worker = Command::new(SLUICE)
        .args([
            "worker",
            "start",
            "--pool",
            "local-process",
            "--run-once",
            "--api-url",
            &sluice.base,
        ])
        .env(
            "PATH",
            format!(
                "{}:{}",
                venv3.join("bin").display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .current_dir(home.path())
        .output()
        .expect("sluice worker");
    assert!(
        worker.status.success(),
        "{}",
        String::from_utf8_lossy(&worker.stderr)
    );
    let run = sluice.api("GET", &format!("/flow_runs/{run_id}"), &Value::Null);
    assert_eq!(run["state_type"], "COMPLETED", "{run}");
    assert_eq!(run["parameters"], json!({"n": 7}));

    stock_workers_serve_the_migrated_pools(&sluice, &venv3, home.path());
}

/// Prefect's own Docker and Kubernetes workers (prefect-docker, prefect-kubernetes) against
/// the pools migrated from DockerContainer and KubernetesJob blocks: they build the job the
/// blocks described, come ONLINE, claim a run and report it as Prefect does when the
/// infrastructure is out of reach (this machine has no Docker engine and no cluster).
fn stock_workers_serve_the_migrated_pools(sluice: &Server, venv: &Path, home: &Path) {
    let out = python(venv, home, &sluice.base, "stock_config.py", STOCK_CONFIG);
    let mut config: Value = serde_json::from_str(&out).expect("JSON");
    // The pools' templates declare what the installed workers' own defaults declare.
    let mut take = |key: &str| {
        config
            .as_object_mut()
            .and_then(|c| c.remove(key))
            .unwrap_or_else(|| panic!("{key}"))
    };
    let templates = take("templates");
    let worker_templates = take("worker_templates");
    let ecs = take("ecs");
    if std::env::var_os("AWS_ENDPOINT_URL").is_some() {
        // The task definition and RunTask request Prefect's ECS worker makes for the
        // migrated ECS deployment: the block's cluster, image and memory, the 2.x override's
        // cpu, the run's identity, subnets of the default VPC (FARGATE's awsvpc).
        let definition = &ecs["definition"];
        assert_eq!(
            definition["containerDefinitions"][0]["image"], "acme/flows:1",
            "{ecs}"
        );
        assert_eq!(
            (&definition["cpu"], &definition["memory"]),
            (&json!("512"), &json!("2048"))
        );
        let request = &ecs["request"];
        assert_eq!(request["cluster"], "prod", "{ecs}");
        assert_eq!(request["launchType"], "FARGATE");
        let container = &request["overrides"]["containerOverrides"][0];
        assert_eq!(
            (&container["cpu"], &container["memory"]),
            (&json!(512), &json!(2048))
        );
        assert!(
            container["environment"]
                .as_array()
                .is_some_and(|e| e.iter().any(|v| v["name"] == "PREFECT__FLOW_RUN_ID")),
            "{ecs}"
        );
        assert!(
            request["networkConfiguration"]["awsvpcConfiguration"]["subnets"]
                .as_array()
                .is_some_and(|s| !s.is_empty()),
            "{ecs}"
        );
    } else {
        eprintln!(
            "import: the ECS worker's request is not built: AWS_ENDPOINT_URL is not set (infra/test.sh sets it)"
        );
    }
    for (pool, kind) in [("docker", "docker"), ("k8s", "kubernetes")] {
        let template = &sluice.json(&["work-pool", "inspect", pool])["base_job_template"];
        let mut variables: Vec<&String> = template["variables"]["properties"]
            .as_object()
            .expect("properties")
            .keys()
            .collect();
        variables.sort();
        let mut job: Vec<&String> = template["job_configuration"]
            .as_object()
            .expect("job_configuration")
            .keys()
            .collect();
        job.sort();
        assert_eq!(
            json!({"variables": variables, "job_configuration": job}),
            templates[kind],
            "{kind}"
        );
    }
    // The worker packages' own defaults are newer than the registry Prefect 3.9.1's server
    // ships, which Sluice follows (docs/prefect-compatibility.md). This pins the difference,
    // so the test says when they meet: (only the server's, only the worker's).
    let names = |t: &Value| -> Vec<String> {
        t["variables"]
            .as_array()
            .expect("names")
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()
    };
    for (kind, only_server, only_worker) in [
        (
            "docker",
            vec!["container_wait_timeout"],
            vec!["container_create_kwargs"],
        ),
        ("kubernetes", vec![], vec!["annotations", "backoff_limit"]),
    ] {
        let (server, worker) = (names(&templates[kind]), names(&worker_templates[kind]));
        let server_only: Vec<&str> = server
            .iter()
            .filter(|n| !worker.contains(n))
            .map(String::as_str)
            .collect();
        let worker_only: Vec<&str> = worker
            .iter()
            .filter(|n| !server.contains(n))
            .map(String::as_str)
            .collect();
        assert_eq!(
            (server_only, worker_only),
            (only_server, only_worker),
            "{kind}"
        );
    }
    assert_eq!(
        config,
        json!({
            "docker": {"image": "acme/flows:1", "image_pull_policy": "IfNotPresent",
                       "command": "prefect flow-run execute", "flow_run_env": true},
            "k8s": {"namespace": "flows", "image": "acme/flows:1", "pull": "IfNotPresent",
                    "flow_run_env": true},
        })
    );

    for (pool, kind, deployment, failure) in [
        (
            "docker",
            "docker",
            "etl/docker-image",
            "Could not connect to Docker",
        ),
        (
            "k8s",
            "kubernetes",
            "etl/k8s-rrule",
            "Failed to submit flow run to infrastructure",
        ),
    ] {
        let (code, out, err) = sluice.sluice(&["deployment", "run", deployment]);
        assert_eq!(code, 0, "{err}");
        let run_id = run_id_in(&out);
        let worker = prefect_command(&venv.join("bin/prefect"), home, &sluice.base)
            .args([
                "worker",
                "start",
                "--pool",
                pool,
                "--type",
                kind,
                "--run-once",
            ])
            .args(["--name", &format!("stock-{kind}")])
            .env("PREFECT_INTEGRATIONS_KUBERNETES_OBSERVER_ENABLED", "false")
            .output()
            .expect("prefect worker");
        let log = String::from_utf8_lossy(&worker.stderr).to_string()
            + &String::from_utf8_lossy(&worker.stdout);
        assert!(worker.status.success(), "{log}");
        // The pool was read, not made: the worker kept Sluice's template.
        assert!(
            !log.contains(&format!("Work pool '{pool}' created")),
            "{log}"
        );
        let workers = sluice.api(
            "POST",
            &format!("/work_pools/{pool}/workers/filter"),
            &json!({}),
        );
        assert_eq!(workers[0]["name"], format!("stock-{kind}"), "{workers}");
        assert_eq!(workers[0]["status"], "ONLINE", "{workers}");
        let run = sluice.api("GET", &format!("/flow_runs/{run_id}"), &Value::Null);
        assert_eq!(run["state_type"], "CRASHED", "{run}\n{log}");
        let message = run["state"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(failure), "{message}");
    }
}
