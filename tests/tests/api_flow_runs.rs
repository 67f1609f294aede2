//! `/flow_runs/...` and `/flow_run_states/` over HTTP, checked against Prefect's wire contract
//! (reference §6.1–6.4, §10): creation, the FlowRun body's fields and types, `set_state`'s
//! answers and status codes, state history, PATCH and label merges, filters and sorts, and that
//! refused input stores nothing.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use sluice_tests::{T0, TestApp, assert_detail, assert_invalid, keys, sorted};

/// Fields of Prefect's `FlowRunResponse` (`server/schemas/responses.py`).
const FLOW_RUN_FIELDS: &[&str] = &[
    "id",
    "created",
    "updated",
    "name",
    "flow_id",
    "state_id",
    "deployment_id",
    "deployment_version",
    "work_queue_id",
    "work_queue_name",
    "flow_version",
    "parameters",
    "idempotency_key",
    "context",
    "empirical_policy",
    "tags",
    "labels",
    "parent_task_run_id",
    "state_type",
    "state_name",
    "run_count",
    "expected_start_time",
    "next_scheduled_start_time",
    "start_time",
    "end_time",
    "total_run_time",
    "estimated_run_time",
    "estimated_start_time_delta",
    "auto_scheduled",
    "infrastructure_document_id",
    "infrastructure_pid",
    "created_by",
    "work_pool_id",
    "work_pool_name",
    "state",
    "job_variables",
];

const STATE_FIELDS: &[&str] = &[
    "id",
    "type",
    "name",
    "timestamp",
    "message",
    "data",
    "state_details",
];

async fn flow(app: &TestApp, name: &str) -> Value {
    let (s, f) = app.post("/flows/", json!({"name": name})).await;
    assert!(s.is_success(), "{f}");
    f
}

async fn run_count(app: &TestApp) -> Value {
    let (s, n) = app.post("/flow_runs/count", json!({})).await;
    assert_eq!(s, StatusCode::OK, "{n}");
    n
}

fn id(v: &Value) -> String {
    v["id"].as_str().expect("an id").to_owned()
}

fn at(offset_seconds: i64) -> String {
    (sluice_tests::t0() + chrono::Duration::seconds(offset_seconds)).to_rfc3339()
}

fn ts(offset_seconds: i64) -> String {
    (sluice_tests::t0() + chrono::Duration::seconds(offset_seconds))
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

/// A run of flow `f` in state Scheduled at `offset` seconds after t0.
async fn scheduled_run(app: &TestApp, flow: &Value, offset: i64) -> Value {
    let (s, run) = app
        .post(
            "/flow_runs/",
            json!({"flow_id": flow["id"],
                   "state": {"type": "SCHEDULED", "state_details": {"scheduled_time": at(offset)}}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{run}");
    run
}

async fn set_state(app: &TestApp, run: &Value, state: Value) -> (StatusCode, Value) {
    app.post(
        &format!("/flow_runs/{}/set_state", id(run)),
        json!({ "state": state }),
    )
    .await
}

// ---- create and read --------------------------------------------------------------------------

#[tokio::test]
async fn creating_a_run_answers_201_pending_with_every_flow_run_field() {
    let (app, _clock) = TestApp::at_t0();
    let f = flow(&app, "f").await;
    let (s, run) = app
        .post(
            "/flow_runs/",
            json!({"flow_id": f["id"], "parameters": {"x": 1}, "tags": ["t"],
                   "labels": {"k": "v"}, "context": {"c": true}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{run}");
    assert_eq!(keys(&run), sorted(FLOW_RUN_FIELDS), "{run}");
    assert!(id(&run).parse::<uuid::Uuid>().is_ok());
    assert_eq!(run["created"], T0);
    assert_eq!(run["flow_id"], f["id"]);
    let name = run["name"].as_str().expect("a name");
    assert_eq!(name.split('-').count(), 2, "a two-word slug: {name}");
    // No state given: PENDING (reference §6.4).
    assert_eq!(run["state_type"], "PENDING");
    assert_eq!(run["state_name"], "Pending");
    assert_eq!(keys(&run["state"]), sorted(STATE_FIELDS));
    assert_eq!(run["state"]["type"], "PENDING");
    assert_eq!(run["state"]["name"], "Pending");
    assert_eq!(run["state"]["timestamp"], T0);
    assert_eq!(run["state"]["state_details"]["flow_run_id"], run["id"]);
    for k in [
        "scheduled_time",
        "pause_timeout",
        "pause_reschedule",
        "transition_id",
        "deployment_concurrency_lease_id",
        "task_run_id",
    ] {
        assert!(
            run["state"]["state_details"].get(k).is_some(),
            "state_details.{k} missing"
        );
    }
    assert_eq!(run["state_id"], run["state"]["id"]);
    assert_eq!(run["parameters"], json!({"x": 1}));
    assert_eq!(run["tags"], json!(["t"]));
    assert_eq!(run["labels"], json!({"k": "v"}));
    assert_eq!(run["context"], json!({"c": true}));
    assert_eq!(run["run_count"], 0);
    assert!(run["run_count"].is_i64());
    for k in [
        "total_run_time",
        "estimated_run_time",
        "estimated_start_time_delta",
    ] {
        assert!(run[k].is_f64(), "{k} is float seconds: {}", run[k]);
    }
    assert_eq!(run["expected_start_time"], T0);
    assert_eq!(run["next_scheduled_start_time"], Value::Null);
    assert_eq!(run["start_time"], Value::Null);
    assert_eq!(run["end_time"], Value::Null);
    assert_eq!(run["deployment_id"], Value::Null);
    assert_eq!(run["work_pool_name"], Value::Null);
    assert_eq!(run["infrastructure_pid"], Value::Null);
    assert_eq!(run["auto_scheduled"], false);
    let policy = &run["empirical_policy"];
    for k in [
        "retries",
        "retry_delay",
        "pause_keys",
        "resuming",
        "retry_type",
    ] {
        assert!(
            policy.get(k).is_some(),
            "empirical_policy.{k} missing: {policy}"
        );
    }

    let (s, read) = app.get(&format!("/flow_runs/{}", id(&run))).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(read, run);
}

#[tokio::test]
async fn the_stock_client_body_and_idempotency_keys() {
    let (app, _clock) = TestApp::at_t0();
    let f = flow(&app, "f").await;
    let (s, p) = app
        .post("/work_pools/", json!({"name": "p", "type": "process"}))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    // The client's `create_flow_run`: a Pending state and every field it sets.
    let body = json!({
        "name": "given-name", "flow_id": f["id"], "flow_version": "abc", "parameters": {},
        "context": {}, "tags": [], "labels": {}, "parent_task_run_id": null,
        "idempotency_key": "k1", "work_pool_name": "p", "work_queue_name": null,
        "job_variables": null,
        "empirical_policy": {"max_retries": 0, "retry_delay_seconds": 0.0, "retries": 2,
                             "retry_delay": 10, "pause_keys": [], "resuming": false,
                             "retry_type": null},
        "state": {"type": "PENDING", "name": "Pending", "message": null, "data": null,
                  "state_details": {"flow_run_id": null, "task_run_id": null,
                                    "scheduled_time": null, "pause_reschedule": false,
                                    "untrackable_result": false, "transition_id": null}}
    });
    let (s, run) = app.post("/flow_runs/", body.clone()).await;
    assert_eq!(s, StatusCode::CREATED, "{run}");
    assert_eq!(run["name"], "given-name");
    assert_eq!(run["flow_version"], "abc");
    assert_eq!(run["idempotency_key"], "k1");
    assert_eq!(run["empirical_policy"]["retries"], 2);
    assert_eq!(run["empirical_policy"]["retry_delay"], 10);
    assert_eq!(run["work_pool_name"], "p");
    assert_eq!(run["work_pool_id"], p["id"]);
    assert_eq!(run["work_queue_name"], "default");
    assert_eq!(run["work_queue_id"], p["default_queue_id"]);
    // The same key for the same flow: the first run, 200.
    let (s, again) = app.post("/flow_runs", body).await;
    assert_eq!(s, StatusCode::OK, "{again}");
    assert_eq!(again["id"], run["id"]);
    assert_eq!(run_count(&app).await, json!(1));
}

#[tokio::test]
async fn refused_runs_store_nothing() {
    let app = TestApp::new();
    let f = flow(&app, "f").await;
    let fid = f["id"].clone();
    for (body, loc) in [
        (json!({}), json!(["body", "flow_id"])),
        (json!({"flow_id": "x"}), json!(["body", "flow_id"])),
        (
            json!({"flow_id": fid, "bogus": 1}),
            json!(["body", "bogus"]),
        ),
        (
            json!({"flow_id": fid, "tags": "t"}),
            json!(["body", "tags"]),
        ),
        (
            json!({"flow_id": fid, "parameters": 3}),
            json!(["body", "parameters"]),
        ),
        (
            json!({"flow_id": fid, "state": {"type": "DONE"}}),
            json!(["body", "state", "type"]),
        ),
        (
            json!({"flow_id": fid, "state": {"type": "PENDING", "extra": 1}}),
            json!(["body", "state", "extra"]),
        ),
    ] {
        let (s, out) = app.post("/flow_runs/", body.clone()).await;
        assert_invalid(s, &out, &loc);
    }
    let (s, out) = app
        .post("/flow_runs/", json!({"flow_id": uuid::Uuid::new_v4()}))
        .await;
    assert_detail(s, &out, StatusCode::NOT_FOUND);
    let (s, out) = app
        .post(
            "/flow_runs/",
            json!({"flow_id": fid, "work_pool_name": "no-such-pool"}),
        )
        .await;
    assert_detail(s, &out, StatusCode::NOT_FOUND);
    assert_eq!(run_count(&app).await, json!(0), "nothing stored");
}

#[tokio::test]
async fn reads_of_missing_runs_are_404_and_bad_ids_422() {
    let app = TestApp::new();
    let (s, out) = app
        .get(&format!("/flow_runs/{}", uuid::Uuid::new_v4()))
        .await;
    assert_eq!(
        assert_detail(s, &out, StatusCode::NOT_FOUND),
        "Flow run not found"
    );
    for (method, path) in [
        (Method::GET, "/flow_runs/not-a-uuid"),
        (Method::PATCH, "/flow_runs/not-a-uuid"),
        (Method::DELETE, "/flow_runs/not-a-uuid"),
        (Method::PATCH, "/flow_runs/1234/labels"),
        (Method::POST, "/flow_runs/zz/set_state"),
    ] {
        let (s, out) = app.call(method, path, Some(json!({}))).await;
        assert_invalid(s, &out, &json!(["path", "id"]));
    }
    let missing = uuid::Uuid::new_v4();
    for (method, path, body) in [
        (
            Method::PATCH,
            format!("/flow_runs/{missing}"),
            json!({"name": "x"}),
        ),
        (
            Method::PATCH,
            format!("/flow_runs/{missing}/labels"),
            json!({"a": "b"}),
        ),
        (
            Method::POST,
            format!("/flow_runs/{missing}/set_state"),
            json!({"state": {"type": "RUNNING"}}),
        ),
        (Method::DELETE, format!("/flow_runs/{missing}"), json!({})),
    ] {
        let (s, out) = app.call(method, &path, Some(body)).await;
        assert_detail(s, &out, StatusCode::NOT_FOUND);
    }
}

// ---- set_state --------------------------------------------------------------------------------

#[tokio::test]
async fn set_state_walks_a_run_through_its_life_with_201_for_each_written_state() {
    let (app, clock) = TestApp::at_t0();
    let f = flow(&app, "f").await;
    let run = scheduled_run(&app, &f, 0).await;
    assert_eq!(run["next_scheduled_start_time"], T0);
    assert_eq!(run["expected_start_time"], T0);

    // Claim: ACCEPT, 201. What the stock client sends: a fresh transition_id and the run id.
    clock.advance(chrono::Duration::seconds(1));
    let (s, out) = app
        .post(
            &format!("/flow_runs/{}/set_state", id(&run)),
            json!({"state": {"type": "PENDING", "name": "Pending", "message": null, "data": null,
                             "state_details": {"flow_run_id": run["id"],
                                               "transition_id": uuid::Uuid::new_v4(),
                                               "scheduled_time": null, "pause_reschedule": false,
                                               "untrackable_result": false, "deferred": null}},
                   "force": false}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{out}");
    assert_eq!(keys(&out), sorted(&["state", "status", "details"]));
    assert_eq!(out["status"], "ACCEPT");
    assert_eq!(out["details"], json!({"type": "accept_details"}));
    assert_eq!(keys(&out["state"]), sorted(STATE_FIELDS));
    assert_eq!(out["state"]["type"], "PENDING");
    assert_eq!(out["state"]["timestamp"], ts(1));
    assert_eq!(
        out["state"]["state_details"]["scheduled_time"], T0,
        "Pending inherits the scheduled time"
    );
    let (_, read) = app.get(&format!("/flow_runs/{}", id(&run))).await;
    assert_eq!(read["state_type"], "PENDING");
    assert_eq!(read["state"]["id"], out["state"]["id"]);
    assert_eq!(read["next_scheduled_start_time"], Value::Null, "cleared");

    // A second claim: ABORT, 200, the current state answered.
    let (s, out) = set_state(&app, &run, json!({"type": "PENDING"})).await;
    assert_eq!(s, StatusCode::OK, "{out}");
    assert_eq!(out["status"], "ABORT");
    assert_eq!(out["details"]["type"], "abort_details");
    assert!(out["details"]["reason"].is_string(), "{out}");
    assert_eq!(out["state"]["type"], "PENDING");

    clock.advance(chrono::Duration::seconds(9));
    let (s, out) = set_state(&app, &run, json!({"type": "RUNNING"})).await;
    assert_eq!(
        (s, out["status"].clone()),
        (StatusCode::CREATED, json!("ACCEPT"))
    );
    assert_eq!(out["state"]["name"], "Running");
    clock.advance(chrono::Duration::milliseconds(2500));
    let (s, out) = set_state(
        &app,
        &run,
        json!({"type": "COMPLETED", "message": "done", "data": {"k": 1}}),
    )
    .await;
    assert_eq!(
        (s, out["status"].clone()),
        (StatusCode::CREATED, json!("ACCEPT"))
    );
    assert_eq!(out["state"]["message"], "done");
    let (_, read) = app.get(&format!("/flow_runs/{}", id(&run))).await;
    assert_eq!(read["state_type"], "COMPLETED");
    assert_eq!(read["state_name"], "Completed");
    assert_eq!(read["run_count"], 1);
    assert_eq!(read["start_time"], ts(10));
    assert_eq!(read["end_time"], "2026-01-01T12:00:12.500000Z");
    assert_eq!(read["total_run_time"], json!(2.5));
    assert_eq!(read["expected_start_time"], T0);

    // A terminal run cannot be cancelled: ABORT, 200.
    let (s, out) = set_state(&app, &run, json!({"type": "CANCELLING"})).await;
    assert_eq!(s, StatusCode::OK, "{out}");
    assert_eq!(out["status"], "ABORT");
    assert_eq!(out["state"]["type"], "COMPLETED");

    // force=true skips the guards and writes the state: 201.
    let (s, out) = app
        .post(
            &format!("/flow_runs/{}/set_state", id(&run)),
            json!({"state": {"type": "FAILED"}, "force": true}),
        )
        .await;
    assert_eq!(
        (s, out["status"].clone()),
        (StatusCode::CREATED, json!("ACCEPT"))
    );
    assert_eq!(out["state"]["type"], "FAILED");
    assert_eq!(out["state"]["name"], "Failed");

    // The history, oldest first.
    let (s, states) = app
        .get(&format!("/flow_run_states/?flow_run_id={}", id(&run)))
        .await;
    assert_eq!(s, StatusCode::OK, "{states}");
    let types: Vec<&str> = states
        .as_array()
        .expect("a list")
        .iter()
        .map(|s| s["type"].as_str().expect("type"))
        .collect();
    assert_eq!(
        types,
        ["SCHEDULED", "PENDING", "RUNNING", "COMPLETED", "FAILED"]
    );
    for st in states.as_array().expect("a list") {
        assert_eq!(keys(st), sorted(STATE_FIELDS));
        assert_eq!(st["state_details"]["flow_run_id"], run["id"]);
    }
    assert_eq!(states[3]["data"], json!({"k": 1}));
    let (s, same) = app
        .get(&format!("/flow_run_states?flow_run_id={}", id(&run)))
        .await;
    assert_eq!((s, same), (StatusCode::OK, states));
}

#[tokio::test]
async fn set_state_wait_reject_and_duplicate_transitions() {
    let (app, _clock) = TestApp::at_t0();
    let f = flow(&app, "f").await;

    // RUNNING before the scheduled time: WAIT, 200, whole seconds to wait.
    let early = scheduled_run(&app, &f, 3600).await;
    let (s, _) = set_state(&app, &early, json!({"type": "PENDING"})).await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, out) = set_state(&app, &early, json!({"type": "RUNNING"})).await;
    assert_eq!(s, StatusCode::OK, "{out}");
    assert_eq!(out["status"], "WAIT");
    assert_eq!(out["details"]["type"], "wait_details");
    assert_eq!(out["details"]["delay_seconds"], 3600);
    assert!(out["details"]["delay_seconds"].is_i64());
    assert!(out["details"]["reason"].is_string());
    assert_eq!(out["state"]["type"], "PENDING", "the current state");

    // Cancelling a Scheduled run with no infrastructure: REJECT replaced by Cancelled, which
    // is written (201).
    let waiting = scheduled_run(&app, &f, 60).await;
    let (s, out) = set_state(&app, &waiting, json!({"type": "CANCELLING"})).await;
    assert_eq!(s, StatusCode::CREATED, "{out}");
    assert_eq!(out["status"], "REJECT");
    assert_eq!(out["details"]["type"], "reject_details");
    assert_eq!(out["state"]["type"], "CANCELLED");
    let (_, read) = app.get(&format!("/flow_runs/{}", id(&waiting))).await;
    assert_eq!(read["state_type"], "CANCELLED");

    // CANCELLING only goes to CANCELLED: REJECT keeping the current state, 200.
    let busy = scheduled_run(&app, &f, 0).await;
    set_state(&app, &busy, json!({"type": "PENDING"})).await;
    set_state(&app, &busy, json!({"type": "RUNNING"})).await;
    let (s, out) = set_state(&app, &busy, json!({"type": "CANCELLING"})).await;
    assert_eq!(
        (s, out["status"].clone()),
        (StatusCode::CREATED, json!("ACCEPT"))
    );
    let (s, out) = set_state(&app, &busy, json!({"type": "RUNNING"})).await;
    assert_eq!(s, StatusCode::OK, "{out}");
    assert_eq!(out["status"], "REJECT");
    assert_eq!(out["state"]["type"], "CANCELLING");

    // A retried proposal with the same transition_id: REJECT with the current state, 200.
    let t = uuid::Uuid::new_v4();
    let again = scheduled_run(&app, &f, 0).await;
    let body = json!({"type": "PENDING", "state_details": {"transition_id": t}});
    let (s, first) = set_state(&app, &again, body.clone()).await;
    assert_eq!(s, StatusCode::CREATED, "{first}");
    let (s, out) = set_state(&app, &again, body).await;
    assert_eq!(s, StatusCode::OK, "{out}");
    assert_eq!(out["status"], "REJECT");
    assert_eq!(out["state"]["id"], first["state"]["id"]);
    let (_, states) = app
        .get(&format!("/flow_run_states/?flow_run_id={}", id(&again)))
        .await;
    assert_eq!(states.as_array().map(Vec::len), Some(2), "nothing written");
}

#[tokio::test]
async fn a_full_deployment_limit_rejects_a_claim_into_awaiting_concurrency_slot() {
    let (app, _clock) = TestApp::at_t0();
    let f = flow(&app, "f").await;
    let (s, dep) = app
        .post(
            "/deployments",
            json!({"flow_id": f["id"], "name": "limited", "concurrency_limit": 1}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{dep}");
    let mut runs = Vec::new();
    for _ in 0..2 {
        let (s, run) = app
            .post(
                &format!("/deployments/{}/create_flow_run", id(&dep)),
                json!({}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{run}");
        runs.push(run);
    }
    let (s, out) = set_state(&app, &runs[0], json!({"type": "PENDING"})).await;
    assert_eq!(
        (s, out["status"].clone()),
        (StatusCode::CREATED, json!("ACCEPT"))
    );
    // ENQUEUE (the default): REJECT replaced by AwaitingConcurrencySlot 30 s later, written.
    let (s, out) = set_state(&app, &runs[1], json!({"type": "PENDING"})).await;
    assert_eq!(s, StatusCode::CREATED, "{out}");
    assert_eq!(out["status"], "REJECT");
    assert_eq!(out["details"]["type"], "reject_details");
    assert_eq!(out["state"]["type"], "SCHEDULED");
    assert_eq!(out["state"]["name"], "AwaitingConcurrencySlot");
    assert_eq!(out["state"]["state_details"]["scheduled_time"], ts(30));
    let (_, read) = app.get(&format!("/flow_runs/{}", id(&runs[1]))).await;
    assert_eq!(read["state_name"], "AwaitingConcurrencySlot");
    assert_eq!(read["next_scheduled_start_time"], ts(30));
}

#[tokio::test]
async fn set_state_refuses_bad_bodies_and_writes_nothing() {
    let app = TestApp::new();
    let f = flow(&app, "f").await;
    let run = scheduled_run(&app, &f, 0).await;
    let path = format!("/flow_runs/{}/set_state", id(&run));
    for (body, loc) in [
        (json!({}), json!(["body", "state"])),
        (json!({"state": {}}), json!(["body", "state", "type"])),
        (
            json!({"state": {"type": "running"}}),
            json!(["body", "state", "type"]),
        ),
        (
            json!({"state": {"type": "RUNNING"}, "force": "yes"}),
            json!(["body", "force"]),
        ),
        (
            json!({"state": {"type": "RUNNING"}, "bogus": 1}),
            json!(["body", "bogus"]),
        ),
        (
            json!({"state": {"type": "RUNNING", "state_details": []}}),
            json!(["body", "state", "state_details"]),
        ),
        (
            json!({"state": {"type": "PENDING", "state_details": {"scheduled_time": "later"}}}),
            json!(["body", "state", "state_details"]),
        ),
        (
            json!({"state": {"type": "PAUSED", "state_details": {"pause_timeout": 5}}}),
            json!(["body", "state", "state_details"]),
        ),
    ] {
        let (s, out) = app.post(&path, body.clone()).await;
        assert_invalid(s, &out, &loc);
    }
    let (_, states) = app
        .get(&format!("/flow_run_states/?flow_run_id={}", id(&run)))
        .await;
    assert_eq!(states.as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn flow_run_states_needs_a_valid_flow_run_id() {
    let app = TestApp::new();
    let (s, out) = app.get("/flow_run_states/").await;
    assert_invalid(s, &out, &json!(["query", "flow_run_id"]));
    let (s, out) = app.get("/flow_run_states/?flow_run_id=abc").await;
    assert_invalid(s, &out, &json!(["query", "flow_run_id"]));
    let (s, out) = app
        .get(&format!(
            "/flow_run_states/?flow_run_id={}",
            uuid::Uuid::new_v4()
        ))
        .await;
    assert_eq!((s, out), (StatusCode::OK, json!([])));
}

// ---- PATCH, labels, delete --------------------------------------------------------------------

#[tokio::test]
async fn run_patch_leaves_absent_fields_and_clears_explicit_nulls() {
    let (app, clock) = TestApp::at_t0();
    let f = flow(&app, "f").await;
    let (_, run) = app
        .post(
            "/flow_runs/",
            json!({"flow_id": f["id"], "name": "n1", "parameters": {"a": 1}, "tags": ["t"]}),
        )
        .await;
    let path = format!("/flow_runs/{}", id(&run));
    clock.advance(chrono::Duration::seconds(2));
    // What a worker sends after starting the infrastructure.
    let (s, out) = app
        .patch(&path, json!({"infrastructure_pid": "host:1234"}))
        .await;
    assert_eq!((s, out), (StatusCode::NO_CONTENT, Value::Null));
    let (_, read) = app.get(&path).await;
    assert_eq!(read["infrastructure_pid"], "host:1234");
    assert_eq!(read["name"], "n1");
    assert_eq!(read["parameters"], json!({"a": 1}));
    assert_eq!(read["tags"], json!(["t"]));
    assert_eq!(read["updated"], ts(2));
    assert_eq!(read["state"], run["state"], "a PATCH changes no state");

    let (s, _) = app
        .patch(
            &path,
            json!({"name": "n2", "parameters": {"b": 2}, "tags": [], "flow_version": "v9",
                   "empirical_policy": {"retries": 3, "retry_delay": 5}}),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, read) = app.get(&path).await;
    assert_eq!(read["name"], "n2");
    assert_eq!(read["parameters"], json!({"b": 2}));
    assert_eq!(read["tags"], json!([]));
    assert_eq!(read["flow_version"], "v9");
    assert_eq!(read["empirical_policy"]["retries"], 3);
    assert_eq!(read["infrastructure_pid"], "host:1234");
    let (s, _) = app.patch(&path, json!({"infrastructure_pid": null})).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, read) = app.get(&path).await;
    assert_eq!(read["infrastructure_pid"], Value::Null);

    // job_variables can change only while SCHEDULED (this run is PENDING).
    let (s, out) = app
        .patch(&path, json!({"job_variables": {"env": {}}}))
        .await;
    assert_detail(s, &out, StatusCode::BAD_REQUEST);
    let (_, before) = app.get(&path).await;
    for (body, loc) in [
        (
            json!({"state": {"type": "RUNNING"}}),
            json!(["body", "state"]),
        ),
        (json!({"labels": {"a": "b"}}), json!(["body", "labels"])),
        (json!({"tags": "x"}), json!(["body", "tags"])),
        (json!({"name": 5}), json!(["body", "name"])),
    ] {
        let (s, out) = app.patch(&path, body.clone()).await;
        assert_invalid(s, &out, &loc);
    }
    let (_, after) = app.get(&path).await;
    assert_eq!(after, before);
}

#[tokio::test]
async fn run_job_variables_patch_while_scheduled() {
    let app = TestApp::new();
    let f = flow(&app, "f").await;
    app.post("/work_pools/", json!({"name": "p", "type": "process"}))
        .await;
    let (_, dep) = app
        .post(
            "/deployments/",
            json!({"flow_id": f["id"], "name": "d", "work_pool_name": "p"}),
        )
        .await;
    let (_, run) = app
        .post(
            &format!("/deployments/{}/create_flow_run", id(&dep)),
            json!({}),
        )
        .await;
    let path = format!("/flow_runs/{}", id(&run));
    let (s, out) = app
        .patch(&path, json!({"job_variables": {"env": {"X": "1"}}}))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{out}");
    assert_eq!(
        app.get(&path).await.1["job_variables"],
        json!({"env": {"X": "1"}})
    );
    let (s, out) = app
        .patch(&path, json!({"job_variables": {"undeclared": 1}}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{out}");
    assert_eq!(
        app.get(&path).await.1["job_variables"],
        json!({"env": {"X": "1"}})
    );
    let (s, _) = app.patch(&path, json!({"job_variables": null})).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(app.get(&path).await.1["job_variables"], Value::Null);
}

#[tokio::test]
async fn labels_patch_merges_into_the_existing_labels() {
    let app = TestApp::new();
    let f = flow(&app, "f").await;
    let (_, run) = app
        .post(
            "/flow_runs/",
            json!({"flow_id": f["id"], "labels": {"a": "1", "keep": "yes"}}),
        )
        .await;
    let path = format!("/flow_runs/{}/labels", id(&run));
    let (s, out) = app
        .patch(
            &path,
            json!({"a": "2", "prefect.worker.name": "w1", "n": 3}),
        )
        .await;
    assert_eq!((s, out), (StatusCode::NO_CONTENT, Value::Null));
    let (_, read) = app.get(&format!("/flow_runs/{}", id(&run))).await;
    assert_eq!(
        read["labels"],
        json!({"a": "2", "keep": "yes", "prefect.worker.name": "w1", "n": 3})
    );
    let (s, out) = app.patch(&path, json!(["not", "an", "object"])).await;
    assert_invalid(s, &out, &json!(["body"]));
    let (s, _) = app.patch(&path, json!({})).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, again) = app.get(&format!("/flow_runs/{}", id(&run))).await;
    assert_eq!(again["labels"], read["labels"]);
}

#[tokio::test]
async fn deleting_a_run_is_204_then_404() {
    let app = TestApp::new();
    let f = flow(&app, "f").await;
    let run = scheduled_run(&app, &f, 0).await;
    let path = format!("/flow_runs/{}", id(&run));
    let (s, out) = app.delete(&path).await;
    assert_eq!((s, out), (StatusCode::NO_CONTENT, Value::Null));
    let (s, out) = app.get(&path).await;
    assert_detail(s, &out, StatusCode::NOT_FOUND);
    let (s, out) = app.delete(&path).await;
    assert_detail(s, &out, StatusCode::NOT_FOUND);
    let (_, states) = app
        .get(&format!("/flow_run_states/?flow_run_id={}", id(&run)))
        .await;
    assert_eq!(states, json!([]));
    assert_eq!(run_count(&app).await, json!(0));
}

// ---- filter, sort, count ----------------------------------------------------------------------

struct Fixture {
    /// Runs named r1..r5 (in creation order).
    runs: Vec<Value>,
    dep: Value,
}

/// Two flows; runs r1..r5 with scheduled times t0+50, +10, +40, +20, +30; r1 and r2 of the
/// deployment `d` (pool `p`); r3 is claimed (PENDING), r4 is RUNNING, r5 is Late.
async fn fixture(app: &TestApp) -> Fixture {
    let etl = flow(app, "etl").await;
    let ml = flow(app, "ml").await;
    app.post("/work_pools/", json!({"name": "p", "type": "process"}))
        .await;
    let (_, dep) = app
        .post(
            "/deployments/",
            json!({"flow_id": etl["id"], "name": "d", "work_pool_name": "p"}),
        )
        .await;
    let mut runs = Vec::new();
    for (i, offset) in [50, 10, 40, 20, 30].into_iter().enumerate() {
        let name = format!("r{}", i + 1);
        let state = json!({"type": "SCHEDULED", "state_details": {"scheduled_time": at(offset)}});
        let (s, run) = if i < 2 {
            app.post(
                &format!("/deployments/{}/create_flow_run", id(&dep)),
                json!({"name": name, "state": state, "tags": [format!("tag{i}")]}),
            )
            .await
        } else {
            let f = if i == 2 { &etl } else { &ml };
            app.post(
                "/flow_runs/",
                json!({"flow_id": f["id"], "name": name, "state": state, "tags": ["shared"]}),
            )
            .await
        };
        assert_eq!(s, StatusCode::CREATED, "{run}");
        runs.push(run);
    }
    set_state(app, &runs[2], json!({"type": "PENDING"})).await;
    let (s, _) = app
        .post(
            &format!("/flow_runs/{}/set_state", id(&runs[3])),
            json!({"state": {"type": "RUNNING"}, "force": true}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    set_state(
        app,
        &runs[4],
        json!({"type": "SCHEDULED", "name": "Late", "state_details": {"scheduled_time": at(30)}}),
    )
    .await;
    Fixture { runs, dep }
}

fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("a list: {v}"))
        .iter()
        .map(|r| r["name"].as_str().expect("name").to_owned())
        .collect()
}

#[tokio::test]
async fn flow_run_filter_applies_state_deployment_flow_and_pool_criteria() {
    let (app, _clock) = TestApp::at_t0();
    let Fixture { runs, dep } = fixture(&app).await;
    let sorted_names = |v: &Value| {
        let mut n = names(v);
        n.sort();
        n
    };
    // What the stock client's `read_flow_runs` sends with no criteria.
    let stock = json!({"flows": null, "flow_runs": null, "task_runs": null, "deployments": null,
                       "work_pools": null, "work_pool_queues": null, "sort": null,
                       "limit": null, "offset": 0});
    let cases = [
        (stock, vec!["r1", "r2", "r3", "r4", "r5"]),
        (
            json!({"flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}}}),
            vec!["r1", "r2", "r5"],
        ),
        (
            json!({"flow_runs": {"state": {"type": {"any_": ["PENDING", "RUNNING"]}}}}),
            vec!["r3", "r4"],
        ),
        (
            json!({"flow_runs": {"state": {"type": {"not_any_": ["SCHEDULED"]}}}}),
            vec!["r3", "r4"],
        ),
        (
            json!({"flow_runs": {"state": {"name": {"any_": ["Late"]}}}}),
            vec!["r5"],
        ),
        (
            json!({"flow_runs": {"operator": "and_",
                                 "state": {"operator": "and_", "type": {"any_": ["SCHEDULED"]},
                                           "name": {"not_any_": ["Late"]}}}}),
            vec!["r1", "r2"],
        ),
        (
            json!({"deployments": {"id": {"any_": [dep["id"]]}}}),
            vec!["r1", "r2"],
        ),
        (
            json!({"flow_runs": {"deployment_id": {"any_": [dep["id"]]}}}),
            vec!["r1", "r2"],
        ),
        (
            json!({"flow_runs": {"deployment_id": {"is_null_": true}}}),
            vec!["r3", "r4", "r5"],
        ),
        (
            json!({"flows": {"name": {"any_": ["ml"]}}}),
            vec!["r4", "r5"],
        ),
        (
            json!({"flows": {"name": {"any_": ["etl"]}}}),
            vec!["r1", "r2", "r3"],
        ),
        (
            json!({"work_pools": {"name": {"any_": ["p"]}}}),
            vec!["r1", "r2"],
        ),
        (
            json!({"work_pool_queues": {"name": {"any_": ["default"]}}}),
            vec!["r1", "r2"],
        ),
        (
            json!({"flow_runs": {"id": {"any_": [runs[0]["id"], runs[3]["id"]]}}}),
            vec!["r1", "r4"],
        ),
        (
            json!({"flow_runs": {"name": {"any_": ["r2", "zz"]}}}),
            vec!["r2"],
        ),
        (
            json!({"flow_runs": {"tags": {"all_": ["shared"]}}}),
            vec!["r3", "r4", "r5"],
        ),
        (
            json!({"flow_runs": {"tags": {"any_": ["tag0", "tag1"]}}}),
            vec!["r1", "r2"],
        ),
        (
            json!({"flow_runs": {"start_time": {"is_null_": false}}}),
            vec!["r4"],
        ),
        (
            json!({"flow_runs": {"expected_start_time": {"before_": "2026-01-01 12:00:20+00:00"}}}),
            vec!["r2", "r4"],
        ),
        (
            json!({"flow_runs": {"next_scheduled_start_time": {"after_": at(30)}}}),
            vec!["r1", "r5"],
        ),
        (
            json!({"flows": {"name": {"any_": ["etl"]}},
                   "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}}}),
            vec!["r1", "r2"],
        ),
    ];
    for (body, want) in cases {
        let (s, out) = app.post("/flow_runs/filter", body.clone()).await;
        assert_eq!(s, StatusCode::OK, "{body} -> {out}");
        assert_eq!(sorted_names(&out), want, "{body}");
    }
    let (s, n) = app
        .post(
            "/flow_runs/count",
            json!({"flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}}}),
        )
        .await;
    assert_eq!((s, n), (StatusCode::OK, json!(3)));
    let (_, all) = app.post("/flow_runs/filter", json!({})).await;
    for r in all.as_array().expect("a list") {
        assert_eq!(keys(r), sorted(FLOW_RUN_FIELDS));
    }
}

#[tokio::test]
async fn flow_run_filter_sorts_and_pages() {
    let (app, _clock) = TestApp::at_t0();
    let Fixture { runs, .. } = fixture(&app).await;
    // Default ID_DESC: ids in descending order.
    let mut ids: Vec<String> = runs.iter().map(id).collect();
    ids.sort();
    ids.reverse();
    let (_, out) = app.post("/flow_runs/filter", json!({})).await;
    let got: Vec<String> = out.as_array().expect("a list").iter().map(id).collect();
    assert_eq!(got, ids);
    let (_, out) = app
        .post("/flow_runs/filter", json!({"sort": "ID_DESC"}))
        .await;
    let got: Vec<String> = out.as_array().expect("a list").iter().map(id).collect();
    assert_eq!(got, ids);

    for (sort, want) in [
        ("NAME_ASC", vec!["r1", "r2", "r3", "r4", "r5"]),
        ("NAME_DESC", vec!["r5", "r4", "r3", "r2", "r1"]),
        (
            "EXPECTED_START_TIME_ASC",
            vec!["r2", "r4", "r5", "r3", "r1"],
        ),
        (
            "EXPECTED_START_TIME_DESC",
            vec!["r1", "r3", "r5", "r4", "r2"],
        ),
        // Only SCHEDULED runs have a next scheduled time; the rest come last (by id).
        ("NEXT_SCHEDULED_START_TIME_ASC", vec!["r2", "r5", "r1"]),
    ] {
        let (s, out) = app.post("/flow_runs/filter", json!({"sort": sort})).await;
        assert_eq!(s, StatusCode::OK, "{sort} -> {out}");
        let got = names(&out);
        assert_eq!(&got[..want.len()], want.as_slice(), "{sort}: {got:?}");
    }
    for sort in ["START_TIME_ASC", "START_TIME_DESC", "END_TIME_DESC"] {
        let (s, out) = app.post("/flow_runs/filter", json!({"sort": sort})).await;
        assert_eq!(s, StatusCode::OK, "{sort} -> {out}");
        assert_eq!(names(&out).len(), 5);
    }
    let (_, page) = app
        .post(
            "/flow_runs/filter",
            json!({"sort": "NAME_ASC", "limit": 2, "offset": 1}),
        )
        .await;
    assert_eq!(names(&page), ["r2", "r3"]);
    let (_, none) = app.post("/flow_runs/filter", json!({"limit": 0})).await;
    assert_eq!(none, json!([]));
    let (s, all) = app.post("/flow_runs/filter", json!({"limit": 200})).await;
    assert_eq!((s, names(&all).len()), (StatusCode::OK, 5));
}

#[tokio::test]
async fn flow_run_filter_refuses_what_it_cannot_apply() {
    let app = TestApp::new();
    let f = flow(&app, "f").await;
    scheduled_run(&app, &f, 0).await;
    for (body, loc) in [
        (json!({"limit": 201}), json!(["body", "limit"])),
        (json!({"limit": -1}), json!(["body", "limit"])),
        (json!({"offset": -5}), json!(["body", "offset"])),
        (json!({"sort": "BOGUS_ASC"}), json!(["body", "sort"])),
        (json!({"sort": 3}), json!(["body", "sort"])),
        (
            json!({"flow_runs": {"bogus": {"any_": [1]}}}),
            json!(["body", "flow_runs", "bogus"]),
        ),
        (
            json!({"flow_runs": {"state": {"type": {"any_": ["WAITING"]}}}}),
            json!(["body", "flow_runs", "state", "type"]),
        ),
        (
            json!({"flow_runs": {"state": {"type": {"all_": ["RUNNING"]}}}}),
            json!(["body", "flow_runs", "state", "type", "all_"]),
        ),
        (
            json!({"flow_runs": {"id": {"any_": ["nope"]}}}),
            json!(["body", "flow_runs", "id", "any_"]),
        ),
        (
            json!({"flow_runs": {"start_time": {"before_": "soon"}}}),
            json!(["body", "flow_runs", "start_time", "before_"]),
        ),
        (
            json!({"deployments": {"bogus": 1}}),
            json!(["body", "deployments", "bogus"]),
        ),
        (
            json!({"flows": {"bogus": 1}}),
            json!(["body", "flows", "bogus"]),
        ),
        (
            json!({"task_runs": {"id": {"any_": []}}}),
            json!(["body", "task_runs"]),
        ),
        (json!({"flow_runs": 1}), json!(["body", "flow_runs"])),
        (json!({"bogus": {}}), json!(["body", "bogus"])),
    ] {
        let (s, out) = app.post("/flow_runs/filter", body.clone()).await;
        assert_invalid(s, &out, &loc);
        let (s, out) = app.post("/flow_runs/count", body.clone()).await;
        if loc != json!(["body", "limit"]) && loc != json!(["body", "offset"]) {
            assert_invalid(s, &out, &loc);
        } else {
            assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{out}");
        }
    }
}

/// Prefect's rules let PENDING follow COMPLETED (a manual rerun); a worker's claim (Sluice's
/// `claim` field) holds only while the run is SCHEDULED, so a claim made on a stale poll after
/// another worker finished the run is aborted and nothing is written.
#[tokio::test]
async fn a_claim_holds_only_while_the_run_is_scheduled() {
    let app = TestApp::new();
    let f = flow(&app, "claims").await;
    let run = scheduled_run(&app, &f, -5).await;
    let path = format!("/flow_runs/{}/set_state", id(&run));
    let (status, first) = app
        .post(&path, json!({"state": {"type": "PENDING"}, "claim": true}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert_eq!(first["status"], "ACCEPT");
    for next in ["RUNNING", "COMPLETED"] {
        let (_, answer) = set_state(&app, &run, json!({"type": next})).await;
        assert_eq!(answer["status"], "ACCEPT", "{next}: {answer}");
    }
    let (status, late) = app
        .post(&path, json!({"state": {"type": "PENDING"}, "claim": true}))
        .await;
    assert_eq!(status, StatusCode::OK, "{late}");
    assert_eq!(late["status"], "ABORT", "{late}");
    assert_eq!(late["state"]["type"], "COMPLETED");
    let (_, stored) = app.get(&format!("/flow_runs/{}", id(&run))).await;
    assert_eq!(stored["state"]["type"], "COMPLETED");
    // Without the field, Prefect's own semantics: the rerun is accepted.
    let (_, rerun) = set_state(&app, &run, json!({"type": "PENDING"})).await;
    assert_eq!(rerun["status"], "ACCEPT", "{rerun}");
}
