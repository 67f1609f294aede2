//! `/flows/...` and `/deployments/...` over HTTP, checked against Prefect's wire contract
//! (reference §7.1–7.2, §10): the upsert, reads by id and by name, PATCH semantics, pause and
//! resume, filters, `create_flow_run`, the Runner poll, and that refused input stores nothing.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use sluice_tests::{T0, TestApp, assert_detail, assert_invalid};

/// Fields of Prefect's `DeploymentResponse` (`server/schemas/responses.py`).
const DEPLOYMENT_FIELDS: &[&str] = &[
    "id",
    "created",
    "updated",
    "name",
    "version",
    "description",
    "flow_id",
    "paused",
    "schedules",
    "concurrency_limit",
    "global_concurrency_limit",
    "concurrency_options",
    "job_variables",
    "parameters",
    "tags",
    "labels",
    "work_queue_name",
    "work_queue_id",
    "last_polled",
    "parameter_openapi_schema",
    "path",
    "pull_steps",
    "entrypoint",
    "storage_document_id",
    "infrastructure_document_id",
    "created_by",
    "updated_by",
    "work_pool_name",
    "status",
    "enforce_parameter_schema",
];

async fn flow(app: &TestApp, name: &str) -> Value {
    let (s, f) = app.post("/flows/", json!({"name": name})).await;
    assert!(s.is_success(), "{f}");
    f
}

async fn pool(app: &TestApp, name: &str) -> Value {
    let (s, p) = app
        .post("/work_pools/", json!({"name": name, "type": "process"}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    p
}

async fn deploy(app: &TestApp, body: Value) -> Value {
    let (s, d) = app.post("/deployments/", body).await;
    assert_eq!(s, StatusCode::CREATED, "{d}");
    d
}

async fn deployment_count(app: &TestApp) -> Value {
    let (s, n) = app.post("/deployments/count", json!({})).await;
    assert_eq!(s, StatusCode::OK, "{n}");
    n
}

async fn run_count(app: &TestApp) -> Value {
    let (s, n) = app.post("/flow_runs/count", json!({})).await;
    assert_eq!(s, StatusCode::OK, "{n}");
    n
}

async fn queue_names(app: &TestApp, pool: &str) -> Vec<String> {
    let (_, qs) = app
        .post(&format!("/work_pools/{pool}/queues/filter"), json!({}))
        .await;
    qs.as_array()
        .expect("a list")
        .iter()
        .map(|q| q["name"].as_str().expect("name").to_owned())
        .collect()
}

fn id(v: &Value) -> &str {
    v["id"].as_str().expect("an id")
}

/// The body `prefect deploy --no-prompt` sends for a new deployment (reference §10; client
/// `create_deployment`: every `DeploymentCreate` field, `paused` and `pull_steps` when set).
fn stock_deploy_body(flow_id: &Value, pool: &str) -> Value {
    json!({
        "name": "nightly",
        "flow_id": flow_id,
        "version": null,
        "parameters": {"n": 1},
        "tags": ["etl"],
        "labels": {},
        "work_queue_name": null,
        "work_pool_name": pool,
        "description": "the nightly load",
        "storage_document_id": null,
        "path": null,
        "entrypoint": "flows.py:etl",
        "infrastructure_document_id": null,
        "job_variables": {"env": {"A": "1"}},
        "parameter_openapi_schema": {"type": "object", "properties": {"n": {"type": "integer"}}},
        "paused": false,
        "schedules": [],
        "concurrency_limit": null,
        "concurrency_options": null,
        "pull_steps": [{"prefect.deployments.steps.set_working_directory": {"directory": "/app"}}],
        "enforce_parameter_schema": true
    })
}

// ---- flows ----------------------------------------------------------------------------------

#[tokio::test]
async fn flows_upsert_by_name_and_read_by_id_and_name() {
    let (app, _clock) = TestApp::at_t0();
    let (s, f) = app
        .post(
            "/flows/",
            json!({"name": "my flow", "tags": ["a"], "labels": {}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{f}");
    let mut k = sluice_tests::keys(&f);
    k.retain(|k| k != "labels");
    assert_eq!(
        k,
        sluice_tests::sorted(&["id", "created", "updated", "name", "tags"])
    );
    assert_eq!(f["created"], T0);
    assert_eq!(f["tags"], json!(["a"]));
    // Same name: the same flow, 200.
    let (s, again) = app.post("/flows", json!({"name": "my flow"})).await;
    assert_eq!(s, StatusCode::OK, "{again}");
    assert_eq!(again["id"], f["id"]);
    let (s, read) = app.get(&format!("/flows/{}", id(&f))).await;
    assert_eq!(
        (s, read["name"].clone()),
        (StatusCode::OK, json!("my flow"))
    );
    let (s, read) = app.get("/flows/name/my%20flow").await;
    assert_eq!((s, read["id"].clone()), (StatusCode::OK, f["id"].clone()));

    let (s, out) = app.get("/flows/name/nope").await;
    assert_detail(s, &out, StatusCode::NOT_FOUND);
    let (s, out) = app.get(&format!("/flows/{}", uuid::Uuid::new_v4())).await;
    assert_detail(s, &out, StatusCode::NOT_FOUND);
    let (s, out) = app.get("/flows/not-a-uuid").await;
    assert_invalid(s, &out, &json!(["path", "id"]));

    for (body, loc) in [
        (json!({}), json!(["body", "name"])),
        (json!({"name": "a/b"}), json!(["body", "name"])),
        (json!({"name": "x", "bogus": 1}), json!(["body", "bogus"])),
        (json!({"name": "x", "tags": "a"}), json!(["body", "tags"])),
    ] {
        let (s, out) = app.post("/flows/", body).await;
        assert_invalid(s, &out, &loc);
    }
    let (s, n) = app.post("/flows/count", json!({})).await;
    assert_eq!((s, n), (StatusCode::OK, json!(1)), "refusals store nothing");
}

#[tokio::test]
async fn flow_filter_count_and_delete() {
    let app = TestApp::new();
    let a = flow(&app, "a").await;
    flow(&app, "b").await;
    let (_, tagged) = app
        .post("/flows/", json!({"name": "c", "tags": ["x", "y"]}))
        .await;
    let names = |v: &Value| -> Vec<String> {
        v.as_array()
            .expect("a list")
            .iter()
            .map(|f| f["name"].as_str().expect("name").to_owned())
            .collect()
    };
    for (body, want) in [
        (json!({}), vec!["a", "b", "c"]),
        (
            json!({"flows": {"name": {"any_": ["a", "c"]}}}),
            vec!["a", "c"],
        ),
        (
            json!({"flows": {"id": {"any_": [a["id"], tagged["id"]]}}}),
            vec!["a", "c"],
        ),
        (json!({"flows": {"tags": {"all_": ["x", "y"]}}}), vec!["c"]),
        (json!({"limit": 1, "offset": 1}), vec!["b"]),
    ] {
        let (s, out) = app.post("/flows/filter", body.clone()).await;
        assert_eq!(s, StatusCode::OK, "{body} -> {out}");
        assert_eq!(names(&out), want, "{body}");
    }
    let (s, n) = app
        .post("/flows/count", json!({"flows": {"name": {"any_": ["b"]}}}))
        .await;
    assert_eq!((s, n), (StatusCode::OK, json!(1)));
    for (body, loc) in [
        (json!({"limit": 201}), json!(["body", "limit"])),
        (
            json!({"flows": {"bogus": 1}}),
            json!(["body", "flows", "bogus"]),
        ),
        (
            json!({"work_pools": {"name": {"any_": ["p"]}}}),
            json!(["body", "work_pools"]),
        ),
    ] {
        let (s, out) = app.post("/flows/filter", body).await;
        assert_invalid(s, &out, &loc);
    }
    let (s, out) = app.delete(&format!("/flows/{}", id(&a))).await;
    assert_eq!((s, out), (StatusCode::NO_CONTENT, Value::Null));
    let (s, out) = app.delete(&format!("/flows/{}", id(&a))).await;
    assert_detail(s, &out, StatusCode::NOT_FOUND);
    let (_, n) = app.post("/flows/count", json!({})).await;
    assert_eq!(n, json!(2));
}

// ---- deployments: create, upsert, read --------------------------------------------------------

#[tokio::test]
async fn the_stock_deploy_body_creates_201_with_every_deployment_field() {
    let (app, _clock) = TestApp::at_t0();
    let p = pool(&app, "p").await;
    let f = flow(&app, "etl").await;
    let d = deploy(&app, stock_deploy_body(&f["id"], "p")).await;
    for field in DEPLOYMENT_FIELDS {
        assert!(d.get(*field).is_some(), "missing {field} in {d}");
    }
    assert!(id(&d).parse::<uuid::Uuid>().is_ok());
    assert_eq!(d["created"], T0);
    assert_eq!(d["updated"], T0);
    assert_eq!(d["name"], "nightly");
    assert_eq!(d["flow_id"], f["id"]);
    assert_eq!(d["paused"], false);
    assert_eq!(d["schedules"], json!([]));
    assert_eq!(d["concurrency_limit"], Value::Null);
    assert_eq!(d["global_concurrency_limit"], Value::Null);
    assert_eq!(d["parameters"], json!({"n": 1}));
    assert_eq!(d["job_variables"], json!({"env": {"A": "1"}}));
    assert_eq!(
        d["parameter_openapi_schema"],
        json!({"type": "object", "properties": {"n": {"type": "integer"}}})
    );
    assert_eq!(d["enforce_parameter_schema"], true);
    assert_eq!(d["tags"], json!(["etl"]));
    assert_eq!(d["labels"], json!({}));
    assert_eq!(d["description"], "the nightly load");
    assert_eq!(d["entrypoint"], "flows.py:etl");
    assert_eq!(
        d["pull_steps"][0]["prefect.deployments.steps.set_working_directory"]["directory"],
        "/app"
    );
    assert_eq!(d["work_pool_name"], "p");
    assert_eq!(d["work_queue_name"], "default");
    assert_eq!(d["work_queue_id"], p["default_queue_id"]);
    assert_eq!(d["status"], "NOT_READY");
    assert_eq!(d["last_polled"], Value::Null);
    assert_eq!(d["storage_document_id"], Value::Null);

    // The reads answer the same object.
    let (s, by_id) = app.get(&format!("/deployments/{}", id(&d))).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(by_id, d);
    let (s, by_name) = app.get("/deployments/name/etl/nightly").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(by_name, d);
}

#[tokio::test]
async fn deployment_defaults_and_a_concurrency_limit() {
    let app = TestApp::new();
    let f = flow(&app, "f").await;
    let d = deploy(
        &app,
        json!({"flow_id": f["id"], "name": "bare", "concurrency_limit": 2}),
    )
    .await;
    assert_eq!(d["work_pool_name"], Value::Null);
    assert_eq!(d["work_queue_id"], Value::Null);
    assert_eq!(d["enforce_parameter_schema"], true, "Prefect's default");
    assert_eq!(
        d["parameter_openapi_schema"],
        json!({"type": "object", "properties": {}})
    );
    assert_eq!(d["job_variables"], json!({}));
    assert_eq!(d["pull_steps"], Value::Null);
    // The limit is reported through global_concurrency_limit; concurrency_limit is null.
    assert_eq!(d["concurrency_limit"], Value::Null);
    assert_eq!(d["global_concurrency_limit"]["limit"], 2);
}

#[tokio::test]
async fn posting_the_same_flow_and_name_again_is_an_upsert_200_with_the_same_id() {
    let (app, clock) = TestApp::at_t0();
    pool(&app, "p").await;
    let f = flow(&app, "etl").await;
    let first = deploy(&app, stock_deploy_body(&f["id"], "p")).await;
    clock.advance(chrono::Duration::seconds(5));
    let mut body = stock_deploy_body(&f["id"], "p");
    body["description"] = json!("changed");
    body["tags"] = json!(["new"]);
    let (s, second) = app.post("/deployments/", body).await;
    assert_eq!(s, StatusCode::OK, "{second}");
    assert_eq!(second["id"], first["id"]);
    assert_eq!(second["created"], T0);
    assert_eq!(second["updated"], "2026-01-01T12:00:05.000000Z");
    assert_eq!(second["description"], "changed");
    assert_eq!(second["tags"], json!(["new"]));
    assert_eq!(deployment_count(&app).await, json!(1));

    // Another name, or the same name under another flow, is a new deployment.
    let mut other = stock_deploy_body(&f["id"], "p");
    other["name"] = json!("hourly");
    let hourly = deploy(&app, other).await;
    assert_ne!(hourly["id"], first["id"]);
    let g = flow(&app, "other-flow").await;
    let same_name = deploy(&app, stock_deploy_body(&g["id"], "p")).await;
    assert_ne!(same_name["id"], first["id"]);
    assert_eq!(deployment_count(&app).await, json!(3));
    let (_, by_name) = app.get("/deployments/name/other-flow/nightly").await;
    assert_eq!(by_name["id"], same_name["id"]);
}

#[tokio::test]
async fn a_pool_and_a_new_queue_name_creates_the_queue() {
    let app = TestApp::new();
    pool(&app, "p").await;
    let f = flow(&app, "f").await;
    let d = deploy(
        &app,
        json!({"flow_id": f["id"], "name": "d", "work_pool_name": "p", "work_queue_name": "gpu"}),
    )
    .await;
    assert_eq!(d["work_queue_name"], "gpu");
    let (s, q) = app.get("/work_pools/p/queues/gpu").await;
    assert_eq!(s, StatusCode::OK, "{q}");
    assert_eq!(d["work_queue_id"], q["id"]);
}

#[tokio::test]
async fn reads_of_missing_deployments_are_404_and_bad_ids_422() {
    let app = TestApp::new();
    flow(&app, "my flow").await;
    let (s, out) = app
        .get(&format!("/deployments/{}", uuid::Uuid::new_v4()))
        .await;
    assert_detail(s, &out, StatusCode::NOT_FOUND);
    let (s, out) = app.get("/deployments/name/my%20flow/missing").await;
    assert_detail(s, &out, StatusCode::NOT_FOUND);
    let (s, out) = app.get("/deployments/name/no-flow/missing").await;
    assert_detail(s, &out, StatusCode::NOT_FOUND);
    for (method, path) in [
        (Method::GET, "/deployments/nope"),
        (Method::PATCH, "/deployments/nope"),
        (Method::DELETE, "/deployments/nope"),
        (Method::POST, "/deployments/12345/create_flow_run"),
        (Method::POST, "/deployments/xyz/pause_deployment"),
        (Method::POST, "/deployments/xyz/resume_deployment"),
    ] {
        let (s, out) = app.call(method, path, Some(json!({}))).await;
        assert_invalid(s, &out, &json!(["path", "id"]));
    }
    // A name with a space is found through its URL-encoded path.
    let f = flow(&app, "my flow").await;
    let d = deploy(&app, json!({"flow_id": f["id"], "name": "dep one"})).await;
    let (s, read) = app.get("/deployments/name/my%20flow/dep%20one").await;
    assert_eq!(s, StatusCode::OK, "{read}");
    assert_eq!(read["id"], d["id"]);
}

#[tokio::test]
async fn refused_deployments_store_nothing_and_create_no_queue() {
    let app = TestApp::new();
    pool(&app, "p").await;
    let f = flow(&app, "f").await;
    let fid = f["id"].clone();
    let cases = [
        (json!({"flow_id": fid}), json!(["body", "name"])),
        (json!({"name": "x"}), json!(["body", "flow_id"])),
        (
            json!({"name": "x", "flow_id": "nope"}),
            json!(["body", "flow_id"]),
        ),
        (
            json!({"name": "a/b", "flow_id": fid}),
            json!(["body", "name"]),
        ),
        (json!({"name": "", "flow_id": fid}), json!(["body", "name"])),
        (
            json!({"name": "x", "flow_id": fid, "bogus": 1}),
            json!(["body", "bogus"]),
        ),
        (
            json!({"name": "x", "flow_id": fid, "paused": "no"}),
            json!(["body", "paused"]),
        ),
        (
            json!({"name": "x", "flow_id": fid, "concurrency_limit": 0}),
            json!(["body", "concurrency_limit"]),
        ),
        (
            json!({"name": "x", "flow_id": fid, "concurrency_limit": -1}),
            json!(["body", "concurrency_limit"]),
        ),
        (
            json!({"name": "x", "flow_id": fid, "work_pool_name": "p", "work_queue_name": "new-q",
                   "schedules": [{"schedule": {"cron": "61 * * * *"}}]}),
            json!(["body", "schedules", 0, "schedule"]),
        ),
        (
            json!({"name": "x", "flow_id": fid, "schedules": [{"schedule": {"interval": 60}},
                                                             {"schedule": {"nonsense": 1}}]}),
            json!(["body", "schedules", 1, "schedule"]),
        ),
        (
            json!({"name": "x", "flow_id": fid, "tags": [1]}),
            json!(["body", "tags", 0]),
        ),
    ];
    for (body, loc) in cases {
        let (s, out) = app.post("/deployments/", body.clone()).await;
        assert_invalid(s, &out, &loc);
    }
    // Refused by rule rather than by shape: 404 for missing objects, 422 for job variables.
    let (s, out) = app
        .post(
            "/deployments/",
            json!({"name": "x", "flow_id": fid, "work_pool_name": "nope"}),
        )
        .await;
    assert_eq!(
        assert_detail(s, &out, StatusCode::NOT_FOUND),
        "Work pool \"nope\" not found."
    );
    let (s, out) = app
        .post(
            "/deployments/",
            json!({"name": "x", "flow_id": uuid::Uuid::new_v4()}),
        )
        .await;
    assert_detail(s, &out, StatusCode::NOT_FOUND);
    let (s, out) = app
        .post(
            "/deployments/",
            json!({"name": "x", "flow_id": fid, "work_pool_name": "p",
                   "work_queue_name": "new-q", "job_variables": {"not_declared": 1}}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{out}");
    assert!(out.to_string().contains("not_declared"), "{out}");
    let (s, out) = app
        .post(
            "/deployments/",
            json!({"name": "x", "flow_id": fid, "work_pool_name": "p",
                   "work_queue_name": "new-q", "schedules": [{"schedule": {"interval": 0}}]}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{out}");

    assert_eq!(deployment_count(&app).await, json!(0), "nothing stored");
    assert_eq!(run_count(&app).await, json!(0));
    assert_eq!(
        queue_names(&app, "p").await,
        ["default"],
        "no queue created"
    );
}

// ---- PATCH, pause, delete ---------------------------------------------------------------------

#[tokio::test]
async fn deployment_patch_leaves_absent_fields_and_clears_explicit_nulls() {
    let (app, clock) = TestApp::at_t0();
    pool(&app, "p").await;
    let f = flow(&app, "etl").await;
    let mut body = stock_deploy_body(&f["id"], "p");
    body["version"] = json!("v1");
    let d = deploy(&app, body).await;
    let path = format!("/deployments/{}", id(&d));
    clock.advance(chrono::Duration::seconds(3));

    let (s, out) = app.patch(&path, json!({"tags": ["t2"]})).await;
    assert_eq!((s, out), (StatusCode::NO_CONTENT, Value::Null));
    let (_, read) = app.get(&path).await;
    assert_eq!(read["tags"], json!(["t2"]));
    assert_eq!(read["description"], "the nightly load");
    assert_eq!(read["version"], "v1");
    assert_eq!(read["parameters"], json!({"n": 1}));
    assert_eq!(read["job_variables"], json!({"env": {"A": "1"}}));
    assert_eq!(read["work_pool_name"], "p");
    assert_eq!(read["created"], T0);
    assert_eq!(read["updated"], "2026-01-01T12:00:03.000000Z");

    // The client's pause call (reference §7.2), and explicit nulls.
    let (s, _) = app
        .patch(
            &path,
            json!({"paused": true, "description": null, "version": null, "entrypoint": null}),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, read) = app.get(&path).await;
    assert_eq!(read["paused"], true);
    assert_eq!(read["description"], Value::Null);
    assert_eq!(read["version"], Value::Null);
    assert_eq!(read["entrypoint"], Value::Null);
    assert_eq!(read["tags"], json!(["t2"]));

    // A new queue name in the same pool creates it; a null pool detaches the deployment.
    let (s, _) = app.patch(&path, json!({"work_queue_name": "q2"})).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, read) = app.get(&path).await;
    assert_eq!(read["work_queue_name"], "q2");
    assert_eq!(read["work_pool_name"], "p");
    let (s, _) = app.patch(&path, json!({"work_pool_name": null})).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, read) = app.get(&path).await;
    assert_eq!(read["work_pool_name"], Value::Null);
    assert_eq!(read["work_queue_id"], Value::Null);
}

#[tokio::test]
async fn deployment_patch_refusals_change_nothing() {
    let app = TestApp::new();
    pool(&app, "p").await;
    let f = flow(&app, "etl").await;
    let d = deploy(&app, stock_deploy_body(&f["id"], "p")).await;
    let path = format!("/deployments/{}", id(&d));
    let (_, before) = app.get(&path).await;
    for (body, loc) in [
        (json!({"name": "renamed"}), json!(["body", "name"])),
        (json!({"paused": "yes"}), json!(["body", "paused"])),
        (
            json!({"concurrency_limit": 0}),
            json!(["body", "concurrency_limit"]),
        ),
        (
            json!({"schedules": [{"schedule": {"cron": "not cron"}}]}),
            json!(["body", "schedules", 0, "schedule"]),
        ),
    ] {
        let (s, out) = app.patch(&path, body.clone()).await;
        assert_invalid(s, &out, &loc);
    }
    let (s, out) = app
        .patch(&path, json!({"job_variables": {"undeclared": true}}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{out}");
    let (s, out) = app
        .patch(&path, json!({"work_pool_name": "missing-pool"}))
        .await;
    assert_detail(s, &out, StatusCode::NOT_FOUND);
    let (s, out) = app
        .patch(
            &path,
            json!({"work_queue_name": "leak", "job_variables": {"undeclared": true}}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{out}");
    let (s, out) = app
        .patch(
            &path,
            json!({"work_queue_name": "leak", "schedules": [{"schedule": {"interval": 0}}]}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{out}");
    let (_, after) = app.get(&path).await;
    assert_eq!(after, before);
    assert_eq!(
        queue_names(&app, "p").await,
        ["default"],
        "no queue created"
    );
    let (s, out) = app
        .patch(
            &format!("/deployments/{}", uuid::Uuid::new_v4()),
            json!({"paused": true}),
        )
        .await;
    assert_detail(s, &out, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn pause_resume_and_delete() {
    let app = TestApp::new();
    let f = flow(&app, "f").await;
    let d = deploy(&app, json!({"flow_id": f["id"], "name": "d"})).await;
    let path = format!("/deployments/{}", id(&d));
    let (s, out) = app
        .post(&format!("{path}/pause_deployment"), json!({}))
        .await;
    assert_eq!((s, out), (StatusCode::NO_CONTENT, Value::Null));
    assert_eq!(app.get(&path).await.1["paused"], true);
    let (s, _) = app
        .call(Method::POST, &format!("{path}/resume_deployment"), None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(app.get(&path).await.1["paused"], false);
    let missing = format!("/deployments/{}", uuid::Uuid::new_v4());
    for action in ["pause_deployment", "resume_deployment"] {
        let (s, out) = app.post(&format!("{missing}/{action}"), json!({})).await;
        assert_detail(s, &out, StatusCode::NOT_FOUND);
    }

    let (s, out) = app.delete(&path).await;
    assert_eq!((s, out), (StatusCode::NO_CONTENT, Value::Null));
    let (s, out) = app.get(&path).await;
    assert_detail(s, &out, StatusCode::NOT_FOUND);
    let (s, out) = app.delete(&path).await;
    assert_detail(s, &out, StatusCode::NOT_FOUND);
    assert_eq!(deployment_count(&app).await, json!(0));
}

// ---- filter and count -----------------------------------------------------------------------

#[tokio::test]
async fn deployment_filter_by_id_name_flow_and_pool() {
    let app = TestApp::new();
    pool(&app, "proc").await;
    let (s, _) = app
        .post("/work_pools/", json!({"name": "cloud", "type": "ecs"}))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let etl = flow(&app, "etl").await;
    let ml = flow(&app, "ml").await;
    let a = deploy(
        &app,
        json!({"flow_id": etl["id"], "name": "a", "work_pool_name": "proc", "tags": ["x"]}),
    )
    .await;
    let b = deploy(
        &app,
        json!({"flow_id": etl["id"], "name": "b", "work_pool_name": "cloud", "paused": true}),
    )
    .await;
    deploy(&app, json!({"flow_id": ml["id"], "name": "c"})).await;
    let names = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap_or_else(|| panic!("a list: {v}"))
            .iter()
            .map(|d| d["name"].as_str().expect("name").to_owned())
            .collect()
    };
    // What the stock client's `read_deployments` sends with no criteria (reference §10:
    // `prefect deployment ls`): every key, most of them null.
    let stock = json!({"flows": null, "flow_runs": null, "task_runs": null, "deployments": null,
                       "work_pools": null, "work_pool_queues": null, "limit": null, "offset": 0,
                       "sort": null});
    let cases = [
        (stock, vec!["a", "b", "c"]),
        (
            json!({"deployments": {"id": {"any_": [a["id"], b["id"]]}}}),
            vec!["a", "b"],
        ),
        (
            json!({"deployments": {"name": {"any_": ["c", "zz"]}}}),
            vec!["c"],
        ),
        (json!({"deployments": {"name": {"like_": "b"}}}), vec!["b"]),
        (json!({"deployments": {"paused": {"eq_": true}}}), vec!["b"]),
        (json!({"deployments": {"tags": {"all_": ["x"]}}}), vec!["a"]),
        (
            json!({"flows": {"name": {"any_": ["etl"]}}}),
            vec!["a", "b"],
        ),
        (json!({"flows": {"id": {"any_": [ml["id"]]}}}), vec!["c"]),
        (
            json!({"work_pools": {"name": {"any_": ["cloud"]}}}),
            vec!["b"],
        ),
        (
            json!({"work_pools": {"type": {"any_": ["process"]}}}),
            vec!["a"],
        ),
        (
            json!({"flows": {"name": {"any_": ["etl"]}}, "deployments": {"name": {"any_": ["a", "c"]}}}),
            vec!["a"],
        ),
        (
            json!({"sort": "NAME_ASC", "limit": 1, "offset": 1}),
            vec!["b"],
        ),
        (json!({"limit": 0}), vec![]),
    ];
    for (body, want) in cases {
        let (s, out) = app.post("/deployments/filter", body.clone()).await;
        assert_eq!(s, StatusCode::OK, "{body} -> {out}");
        assert_eq!(names(&out), want, "{body}");
    }
    let (s, n) = app
        .post(
            "/deployments/count",
            json!({"flows": {"name": {"any_": ["etl"]}}, "task_runs": null}),
        )
        .await;
    assert_eq!((s, n), (StatusCode::OK, json!(2)));

    for (body, loc) in [
        (json!({"limit": 201}), json!(["body", "limit"])),
        (json!({"offset": -1}), json!(["body", "offset"])),
        (
            json!({"deployments": {"bogus": {"any_": [1]}}}),
            json!(["body", "deployments", "bogus"]),
        ),
        (
            json!({"work_pools": {"status": {"any_": ["READY"]}}}),
            json!(["body", "work_pools", "status"]),
        ),
        (
            json!({"flow_runs": {"state": {"type": {"any_": ["RUNNING"]}}}}),
            json!(["body", "flow_runs"]),
        ),
        (
            json!({"work_pool_queues": {"name": {"any_": ["default"]}}}),
            json!(["body", "work_pool_queues"]),
        ),
        (json!({"sort": "SIDEWAYS"}), json!(["body", "sort"])),
        (json!({"bogus": 1}), json!(["body", "bogus"])),
    ] {
        let (s, out) = app.post("/deployments/filter", body.clone()).await;
        assert_invalid(s, &out, &loc);
    }
}

// ---- create_flow_run --------------------------------------------------------------------------

async fn deployment_for_runs(app: &TestApp) -> Value {
    pool(app, "p").await;
    let f = flow(app, "etl").await;
    deploy(
        app,
        json!({"flow_id": f["id"], "name": "d", "work_pool_name": "p", "version": "7",
               "parameters": {"a": 1, "b": 2}, "tags": ["x", "y"], "labels": {"team": "data"}}),
    )
    .await
}

fn is_two_word_slug(name: &str) -> bool {
    let parts: Vec<&str> = name.split('-').collect();
    parts.len() == 2
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase()))
}

#[tokio::test]
async fn create_flow_run_defaults_to_scheduled_now_with_merged_parameters_and_tags() {
    let (app, _clock) = TestApp::at_t0();
    let d = deployment_for_runs(&app).await;
    let (_, p) = app.get("/work_pools/p").await;
    let path = format!("/deployments/{}/create_flow_run", id(&d));
    let (s, run) = app
        .post(
            &path,
            json!({"parameters": {"b": 3, "c": 4}, "tags": ["y", "z"], "labels": {"run": "1"}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{run}");
    assert!(
        is_two_word_slug(run["name"].as_str().expect("name")),
        "{}",
        run["name"]
    );
    assert_eq!(run["state_type"], "SCHEDULED");
    assert_eq!(run["state_name"], "Scheduled");
    assert_eq!(run["state"]["type"], "SCHEDULED");
    assert_eq!(run["state"]["name"], "Scheduled");
    assert_eq!(run["state"]["timestamp"], T0);
    assert_eq!(run["state"]["state_details"]["scheduled_time"], T0);
    assert_eq!(run["state"]["state_details"]["flow_run_id"], run["id"]);
    assert_eq!(run["state_id"], run["state"]["id"]);
    assert_eq!(run["next_scheduled_start_time"], T0);
    assert_eq!(run["expected_start_time"], T0);
    assert_eq!(run["parameters"], json!({"a": 1, "b": 3, "c": 4}));
    let mut tags: Vec<String> = serde_json::from_value(run["tags"].clone()).expect("tags");
    tags.sort();
    assert_eq!(tags, ["x", "y", "z"], "the union, each tag once");
    assert_eq!(run["labels"]["team"], "data");
    assert_eq!(run["labels"]["run"], "1");
    assert_eq!(run["deployment_id"], d["id"]);
    assert_eq!(run["deployment_version"], "7");
    assert_eq!(run["flow_id"], d["flow_id"]);
    assert_eq!(run["work_pool_name"], "p");
    assert_eq!(run["work_pool_id"], p["id"]);
    assert_eq!(run["work_queue_name"], "default");
    assert_eq!(run["work_queue_id"], p["default_queue_id"]);
    assert_eq!(run["run_count"], 0);
    assert_eq!(run["total_run_time"], json!(0.0));
    assert!(run["total_run_time"].is_f64());
    assert_eq!(run["job_variables"], Value::Null);
    assert_eq!(run["auto_scheduled"], false);
    // The deployment itself is unchanged.
    let (_, again) = app.get(&format!("/deployments/{}", id(&d))).await;
    assert_eq!(again["parameters"], json!({"a": 1, "b": 2}));
    assert_eq!(again["tags"], json!(["x", "y"]));
}

#[tokio::test]
async fn create_flow_run_takes_the_stock_client_body_and_is_idempotent_by_key() {
    let (app, _clock) = TestApp::at_t0();
    let d = deployment_for_runs(&app).await;
    let path = format!("/deployments/{}/create_flow_run", id(&d));
    // `prefect deployment run` (reference §10).
    let body = json!({
        "parameters": {"a": 10}, "context": {},
        "state": {"type": "SCHEDULED", "name": "Scheduled", "message": null, "data": null,
                  "state_details": {"scheduled_time": "2026-01-01T12:30:00+00:00",
                                    "flow_run_id": null, "task_run_id": null,
                                    "pause_reschedule": false, "untrackable_result": false,
                                    "deferred": null, "transition_id": null}},
        "tags": [], "labels": {}, "job_variables": {"env": {"B": "2"}}, "name": null,
        "idempotency_key": "key-1", "parent_task_run_id": null
    });
    let (s, run) = app.post(&path, body.clone()).await;
    assert_eq!(s, StatusCode::CREATED, "{run}");
    assert_eq!(
        run["next_scheduled_start_time"],
        "2026-01-01T12:30:00.000000Z"
    );
    assert_eq!(run["idempotency_key"], "key-1");
    assert_eq!(run["job_variables"], json!({"env": {"B": "2"}}));
    assert_eq!(run["parameters"], json!({"a": 10, "b": 2}));
    assert!(is_two_word_slug(run["name"].as_str().expect("name")));
    let (s, again) = app.post(&path, body).await;
    assert_eq!(s, StatusCode::OK, "{again}");
    assert_eq!(again["id"], run["id"]);
    assert_eq!(run_count(&app).await, json!(1));

    // An explicit name and a queue of the same pool (created when missing).
    let (s, named) = app
        .post(&path, json!({"name": "my-run", "work_queue_name": "adhoc"}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{named}");
    assert_eq!(named["name"], "my-run");
    assert_eq!(named["work_queue_name"], "adhoc");
    let (s, _) = app.get("/work_pools/p/queues/adhoc").await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn create_flow_run_refusals_store_nothing() {
    let app = TestApp::new();
    let d = deployment_for_runs(&app).await;
    let path = format!("/deployments/{}/create_flow_run", id(&d));
    for (body, loc) in [
        (
            json!({"state": {"type": "WAITING"}}),
            json!(["body", "state", "type"]),
        ),
        (
            json!({"state": {"name": "x"}}),
            json!(["body", "state", "type"]),
        ),
        (json!({"parameters": [1]}), json!(["body", "parameters"])),
        (json!({"bogus": 1}), json!(["body", "bogus"])),
        (json!({"tags": "x"}), json!(["body", "tags"])),
    ] {
        let (s, out) = app.post(&path, body.clone()).await;
        assert_invalid(s, &out, &loc);
    }
    let (s, out) = app
        .post(&path, json!({"job_variables": {"undeclared": 1}}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{out}");
    assert!(out.to_string().contains("undeclared"), "{out}");
    let (s, out) = app
        .post(
            &format!("/deployments/{}/create_flow_run", uuid::Uuid::new_v4()),
            json!({}),
        )
        .await;
    assert_detail(s, &out, StatusCode::NOT_FOUND);
    // A queue needs a pool.
    let f = flow(&app, "solo").await;
    let bare = deploy(&app, json!({"flow_id": f["id"], "name": "bare"})).await;
    let (s, out) = app
        .post(
            &format!("/deployments/{}/create_flow_run", id(&bare)),
            json!({"work_queue_name": "q"}),
        )
        .await;
    assert_detail(s, &out, StatusCode::BAD_REQUEST);
    assert_eq!(run_count(&app).await, json!(0), "nothing stored");
}

// ---- the Runner poll -------------------------------------------------------------------------

#[tokio::test]
async fn runner_poll_lists_scheduled_runs_of_the_deployments_by_time() {
    let (app, clock) = TestApp::at_t0();
    let f = flow(&app, "served").await;
    let d = deploy(&app, json!({"flow_id": f["id"], "name": "d"})).await;
    let other = deploy(&app, json!({"flow_id": f["id"], "name": "other"})).await;
    let mut ids = Vec::new();
    for (dep, offset) in [(&d, 60), (&d, 5), (&other, 1), (&d, 3600)] {
        let at = sluice_tests::t0() + chrono::Duration::seconds(offset);
        let (s, run) = app
            .post(
                &format!("/deployments/{}/create_flow_run", id(dep)),
                json!({"state": {"type": "SCHEDULED",
                                 "state_details": {"scheduled_time": at.to_rfc3339()}}}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{run}");
        ids.push(run["id"].clone());
    }
    clock.advance(chrono::Duration::seconds(1));
    let (s, runs) = app
        .post(
            "/deployments/get_scheduled_flow_runs",
            json!({"deployment_ids": [d["id"]],
                   "scheduled_before": "2026-01-01 12:01:00.000000+00:00"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{runs}");
    let got: Vec<Value> = runs
        .as_array()
        .expect("a list")
        .iter()
        .map(|r| r["id"].clone())
        .collect();
    assert_eq!(got, vec![ids[1].clone(), ids[0].clone()]);
    assert_eq!(runs[0]["state"]["type"], "SCHEDULED");
    let (_, read) = app.get(&format!("/deployments/{}", id(&d))).await;
    assert_eq!(read["status"], "READY");
    assert_eq!(read["last_polled"], "2026-01-01T12:00:01.000000Z");
    let (_, untouched) = app.get(&format!("/deployments/{}", id(&other))).await;
    assert_eq!(untouched["status"], "NOT_READY");

    let (_, limited) = app
        .post(
            "/deployments/get_scheduled_flow_runs",
            json!({"deployment_ids": [d["id"], other["id"]], "limit": 2}),
        )
        .await;
    let got: Vec<Value> = limited
        .as_array()
        .expect("a list")
        .iter()
        .map(|r| r["id"].clone())
        .collect();
    assert_eq!(got, vec![ids[2].clone(), ids[1].clone()]);

    for (body, loc) in [
        (json!({}), json!(["body", "deployment_ids"])),
        (
            json!({"deployment_ids": ["x"]}),
            json!(["body", "deployment_ids", 0]),
        ),
        (
            json!({"deployment_ids": [], "limit": 201}),
            json!(["body", "limit"]),
        ),
        (
            json!({"deployment_ids": [], "scheduled_before": "soon"}),
            json!(["body", "scheduled_before"]),
        ),
    ] {
        let (s, out) = app
            .post("/deployments/get_scheduled_flow_runs", body.clone())
            .await;
        assert_invalid(s, &out, &loc);
    }
}
