//! The foundation scenario through the real router and a real SQLite file: a process pool, a
//! cron deployment in a named zone, scheduled runs at the cron's wall-clock times, the worker
//! poll's order, a claim race, job-variable validation, and bad input that stores nothing.

use axum::http::StatusCode;
use chrono::{Timelike, Utc};
use serde_json::{Value, json};
use sluice_tests::TestApp;

async fn pool_flow_deployment(app: &TestApp, pool: &str, cron: &str, tz: &str) -> (Value, Value) {
    let (s, _) = app
        .post("/work_pools/", json!({"name": pool, "type": "process"}))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, flow) = app.post("/flows/", json!({"name": "etl"})).await;
    assert!(s.is_success(), "{flow}");
    let (s, dep) = app
        .post(
            "/deployments/",
            json!({
                "flow_id": flow["id"], "name": "nightly", "work_pool_name": pool,
                "schedules": [{"schedule": {"cron": cron, "timezone": tz}, "active": true}]
            }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{dep}");
    (flow, dep)
}

async fn scheduled(app: &TestApp, pool: &str) -> Vec<Value> {
    let before = (Utc::now() + chrono::Duration::days(30)).to_rfc3339();
    let (s, items) = app
        .post(
            &format!("/work_pools/{pool}/get_scheduled_flow_runs"),
            json!({"scheduled_before": before}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{items}");
    items
        .as_array()
        .expect("a list")
        .iter()
        .map(|i| i["flow_run"].clone())
        .collect()
}

#[tokio::test]
async fn cron_runs_land_on_local_wall_clock_times_in_order() {
    let app = TestApp::new();
    let tz: chrono_tz::Tz = "America/New_York".parse().expect("zone");
    pool_flow_deployment(&app, "p1", "30 9 * * *", "America/New_York").await;
    let runs = scheduled(&app, "p1").await;
    assert!(runs.len() >= 3, "got {} runs", runs.len());
    let times: Vec<chrono::DateTime<Utc>> = runs
        .iter()
        .map(|r| {
            let t = r["next_scheduled_start_time"].as_str().expect("a time");
            chrono::DateTime::parse_from_rfc3339(t)
                .expect("rfc3339")
                .with_timezone(&Utc)
        })
        .collect();
    for t in &times {
        let local = t.with_timezone(&tz);
        assert_eq!(
            (local.hour(), local.minute(), local.second()),
            (9, 30, 0),
            "{local}"
        );
    }
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted);
    for r in &runs {
        assert_eq!(r["state_type"], "SCHEDULED");
        assert_eq!(r["auto_scheduled"], true);
        assert!(
            r["tags"]
                .as_array()
                .expect("tags")
                .contains(&json!("auto-scheduled"))
        );
    }
}

#[tokio::test]
async fn two_concurrent_claims_have_exactly_one_winner() {
    let app = TestApp::new();
    pool_flow_deployment(&app, "p2", "0 * * * *", "UTC").await;
    let runs = scheduled(&app, "p2").await;
    let id = runs[0]["id"].as_str().expect("id").to_owned();
    let path = format!("/flow_runs/{id}/set_state");
    let body = json!({"state": {"type": "PENDING", "name": "Pending"}});
    let (a, b) = tokio::join!(app.post(&path, body.clone()), app.post(&path, body.clone()));
    let mut statuses = vec![
        a.1["status"].as_str().expect("status").to_owned(),
        b.1["status"].as_str().expect("status").to_owned(),
    ];
    statuses.sort();
    assert_eq!(statuses, vec!["ABORT", "ACCEPT"]);
    let (_, run) = app.get(&format!("/flow_runs/{id}")).await;
    assert_eq!(run["state_type"], "PENDING");
}

#[tokio::test]
async fn a_job_variable_outside_the_schema_is_refused_by_name() {
    let app = TestApp::new();
    let (_, dep) = pool_flow_deployment(&app, "p3", "0 * * * *", "UTC").await;
    let id = dep["id"].as_str().expect("id");
    let (s, body) = app
        .post(
            &format!("/deployments/{id}/create_flow_run"),
            json!({"job_variables": {"no_such_variable_xyz": 1}}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body.to_string().contains("no_such_variable_xyz"), "{body}");
    let (s, body) = app
        .post(
            &format!("/deployments/{id}/create_flow_run"),
            json!({"job_variables": {"stream_output": "loud"}}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.to_string().contains("stream_output"), "{body}");
    let (s, run) = app
        .post(
            &format!("/deployments/{id}/create_flow_run"),
            json!({"job_variables": {"env": {"A": "1"}}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{run}");
    assert_eq!(run["job_variables"], json!({"env": {"A": "1"}}));
    assert_eq!(run["state_type"], "SCHEDULED");
}

#[tokio::test]
async fn bad_input_gets_4xx_and_stores_nothing() {
    let app = TestApp::new();
    let (_, flow) = app.post("/flows/", json!({"name": "f"})).await;
    let flow_id = flow["id"].clone();
    let cases = vec![
        json!({"flow_id": "not-a-uuid", "name": "x"}),
        json!({"flow_id": flow_id, "name": "x", "schedules": [{"schedule": {"cron": "61 * * * *"}}]}),
        json!({"flow_id": flow_id, "name": "x", "schedules": [{"schedule": {"cron": "0 9 * * *", "timezone": "Mars/Olympus"}}]}),
        json!({"flow_id": flow_id, "name": "x", "schedules": [{"schedule": {"rrule": "FREQ=SOMETIMES"}}]}),
        json!({"flow_id": flow_id, "name": "x", "schedules": [{"schedule": {"interval": 0}}]}),
        json!({"flow_id": flow_id, "name": "x", "no_such_field": 1}),
        json!({"flow_id": flow_id, "name": "a/b"}),
    ];
    for case in cases {
        let (s, body) = app.post("/deployments/", case.clone()).await;
        assert!(s.is_client_error(), "{case} -> {s} {body}");
    }
    let (s, body) = app
        .raw(
            axum::http::Method::POST,
            "/deployments/",
            b"{not json".to_vec(),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (s, count) = app.post("/deployments/count", json!({})).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(count, json!(0), "nothing may be stored");

    for bad in ["a/b", "", "x%y", "prefect-reserved"] {
        let (s, body) = app
            .post("/work_pools/", json!({"name": bad, "type": "process"}))
            .await;
        assert!(s.is_client_error(), "{bad:?} -> {s} {body}");
    }
    let (_, count) = app.post("/work_pools/count", json!({})).await;
    assert_eq!(count, json!(0));

    let big = vec![b' '; sluice_api::DEFAULT_BODY_LIMIT + 1];
    let (s, _) = app.raw(axum::http::Method::POST, "/work_pools/", big).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn a_pool_without_a_template_gets_its_type_default_at_once() {
    let app = TestApp::new();
    let (s, pool) = app
        .post("/work_pools/", json!({"name": "bare", "type": "process"}))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let props = &pool["base_job_template"]["variables"]["properties"];
    for v in [
        "command",
        "env",
        "labels",
        "name",
        "stream_output",
        "working_dir",
    ] {
        assert!(props.get(v).is_some(), "missing {v} in {props}");
    }
    assert_eq!(pool["status"], "NOT_READY");
    let (s, q) = app.get("/work_pools/bare/queues/default").await;
    assert_eq!(s, StatusCode::OK, "{q}");
    assert_eq!(q["priority"], 1);
}

#[tokio::test]
async fn prefect_handshake_endpoints_answer_like_a_default_server() {
    let app = TestApp::new();
    let (s, body) = app.get("/csrf-token?client=abc").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body.to_string().contains("CSRF protection is disabled."));
    assert_eq!(app.get("/health").await, (StatusCode::OK, json!(true)));
    let (s, meta) = app
        .get("/collections/views/aggregate-worker-metadata")
        .await;
    assert_eq!(s, StatusCode::OK);
    let text = meta.to_string();
    for t in [
        "\"process\"",
        "\"ecs\"",
        "\"ecs:push\"",
        "\"batch\"",
        "\"batch:push\"",
    ] {
        assert!(text.contains(t), "{t} missing");
    }
}

#[tokio::test]
async fn parameters_are_checked_against_an_enforced_schema() {
    let app = TestApp::new();
    app.post("/work_pools/", json!({"name": "p4", "type": "process"}))
        .await;
    let (_, flow) = app.post("/flows/", json!({"name": "typed"})).await;
    let schema = json!({
        "type": "object",
        "properties": {"n": {"type": "integer", "position": 0}},
        "required": ["n"]
    });
    let (s, dep) = app
        .post(
            "/deployments/",
            json!({"flow_id": flow["id"], "name": "d", "work_pool_name": "p4",
                   "parameter_openapi_schema": schema, "parameters": {"n": 1}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{dep}");
    let path = format!(
        "/deployments/{}/create_flow_run",
        dep["id"].as_str().expect("id")
    );
    let (s, body) = app.post(&path, json!({"parameters": {"n": "one"}})).await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .expect("detail")
            .contains("parameter 'n'"),
        "{body}"
    );
    let (s, run) = app.post(&path, json!({"parameters": {"n": 2}})).await;
    assert_eq!(s, StatusCode::CREATED, "{run}");
    assert_eq!(run["parameters"], json!({"n": 2}));
    // The run may opt out, as Prefect's `enforce_parameter_schema: false` does.
    let (s, _) = app
        .post(
            &path,
            json!({"parameters": {"n": "one"}, "enforce_parameter_schema": false}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
}

#[tokio::test]
async fn deployments_survive_the_deletion_of_their_queue_or_pool() {
    let app = TestApp::new();
    app.post("/work_pools/", json!({"name": "p5", "type": "process"}))
        .await;
    let (_, flow) = app.post("/flows/", json!({"name": "f5"})).await;
    let (_, dep) = app
        .post(
            "/deployments/",
            json!({"flow_id": flow["id"], "name": "d", "work_pool_name": "p5", "work_queue_name": "q"}),
        )
        .await;
    let path = format!(
        "/deployments/{}/create_flow_run",
        dep["id"].as_str().expect("id")
    );
    let (s, _) = app
        .call(axum::http::Method::DELETE, "/work_pools/p5/queues/q", None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, run) = app.post(&path, json!({})).await;
    assert_eq!(s, StatusCode::CREATED, "{run}");
    assert_eq!(
        run["work_queue_name"], "q",
        "the queue is recreated by name"
    );
    let (s, _) = app.get("/work_pools/p5/queues/q").await;
    assert_eq!(s, StatusCode::OK);

    let (s, _) = app
        .call(axum::http::Method::DELETE, "/work_pools/p5", None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, d) = app
        .get(&format!("/deployments/{}", dep["id"].as_str().expect("id")))
        .await;
    assert_eq!(d["work_pool_name"], Value::Null);
    let (s, run) = app.post(&path, json!({})).await;
    assert_eq!(
        s,
        StatusCode::CREATED,
        "a deployment without a pool still makes runs: {run}"
    );
    assert_eq!(run["work_pool_name"], Value::Null);
}

#[tokio::test]
async fn active_slots_count_claimed_runs_when_a_limit_is_set() {
    let app = TestApp::new();
    let (_, pool) = app
        .post("/work_pools/", json!({"name": "p6", "type": "process"}))
        .await;
    assert_eq!(pool["active_slots"], Value::Null, "no limit, no count");
    app.call(
        axum::http::Method::PATCH,
        "/work_pools/p6",
        Some(json!({"concurrency_limit": 2})),
    )
    .await;
    app.call(
        axum::http::Method::PATCH,
        "/work_pools/p6/queues/default",
        Some(json!({"concurrency_limit": 5})),
    )
    .await;
    let (_, flow) = app.post("/flows/", json!({"name": "f6"})).await;
    let (_, dep) = app
        .post(
            "/deployments/",
            json!({"flow_id": flow["id"], "name": "d", "work_pool_name": "p6"}),
        )
        .await;
    let path = format!(
        "/deployments/{}/create_flow_run",
        dep["id"].as_str().expect("id")
    );
    let (_, run) = app.post(&path, json!({})).await;
    app.post(&path, json!({})).await;
    let id = run["id"].as_str().expect("id");
    let (_, out) = app
        .post(
            &format!("/flow_runs/{id}/set_state"),
            json!({"state": {"type": "PENDING"}}),
        )
        .await;
    assert_eq!(out["status"], "ACCEPT");
    let (_, pool) = app.get("/work_pools/p6").await;
    assert_eq!(pool["active_slots"], 1);
    let (_, queue) = app.get("/work_pools/p6/queues/default").await;
    assert_eq!(queue["active_slots"], 1);
    let (_, pools) = app.post("/work_pools/filter", json!({})).await;
    assert_eq!(pools[0]["active_slots"], 1);
}

#[tokio::test]
async fn a_deployment_limit_reports_the_slots_its_active_runs_hold() {
    let app = TestApp::new();
    app.post("/work_pools/", json!({"name": "p7", "type": "process"}))
        .await;
    let (_, flow) = app.post("/flows/", json!({"name": "f7"})).await;
    let (_, dep) = app
        .post(
            "/deployments/",
            json!({"flow_id": flow["id"], "name": "d", "work_pool_name": "p7", "concurrency_limit": 2}),
        )
        .await;
    let id = dep["id"].as_str().expect("id");
    assert_eq!(dep["global_concurrency_limit"]["limit"], 2);
    assert_eq!(dep["global_concurrency_limit"]["active_slots"], 0);
    let (_, run) = app
        .post(&format!("/deployments/{id}/create_flow_run"), json!({}))
        .await;
    let run_id = run["id"].as_str().expect("run id");
    let (_, out) = app
        .post(
            &format!("/flow_runs/{run_id}/set_state"),
            json!({"state": {"type": "PENDING"}}),
        )
        .await;
    assert_eq!(out["status"], "ACCEPT");
    let (_, dep) = app.get(&format!("/deployments/{id}")).await;
    assert_eq!(dep["global_concurrency_limit"]["active_slots"], 1);
}
