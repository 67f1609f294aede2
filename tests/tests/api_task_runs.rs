//! Task runs and events through the router: task-run state events (as Prefect 3's engine sends
//! them) recorded as task runs whatever their order and however often they are resent; task
//! runs created through the API unique by natural key; a subflow's parent task run following
//! the subflow's state; events read back by filter and page.

use axum::http::StatusCode;
use serde_json::{Value, json};
use sluice_tests::TestApp;

/// A `prefect.task-run.<name>` event as the engine emits it.
fn task_event(
    task_run: &str,
    flow_run: &str,
    name: &str,
    state_type: &str,
    occurred: &str,
) -> Value {
    json!({
        "id": uuid::Uuid::new_v4(),
        "occurred": occurred,
        "event": format!("prefect.task-run.{name}"),
        "resource": {
            "prefect.resource.id": format!("prefect.task-run.{task_run}"),
            "prefect.resource.name": "add-0",
            "prefect.state-type": state_type,
            "prefect.orchestration": "client"
        },
        "related": [{"prefect.resource.id": format!("prefect.flow-run.{flow_run}"), "prefect.resource.role": "flow-run"}],
        "payload": {
            "intended": {"from": null, "to": state_type},
            "validated_state": {"type": state_type, "name": name, "message": "", "state_details": {}, "data": null},
            "task_run": {"name": "add-0", "task_key": "add-1a2b", "dynamic_key": "0", "tags": ["math"],
                          "run_count": if state_type == "PENDING" { 0 } else { 1 },
                          "empirical_policy": {"retries": 2, "retry_delay": 0}, "task_inputs": {"x": []},
                          "expected_start_time": "2026-12-07T10:00:00Z"}
        }
    })
}

#[tokio::test]
async fn task_run_events_become_task_runs_whatever_their_order_and_however_often_sent() {
    let app = TestApp::new();
    let (task, flow) = (
        uuid::Uuid::new_v4().to_string(),
        uuid::Uuid::new_v4().to_string(),
    );
    let pending = task_event(
        &task,
        &flow,
        "Pending",
        "PENDING",
        "2026-12-07T10:00:00.000001Z",
    );
    let running = task_event(
        &task,
        &flow,
        "Running",
        "RUNNING",
        "2026-12-07T10:00:00.000002Z",
    );
    let done = task_event(
        &task,
        &flow,
        "Completed",
        "COMPLETED",
        "2026-12-07T10:00:01Z",
    );
    let custom = json!({"id": uuid::Uuid::new_v4(), "occurred": "2026-12-07T10:00:02Z", "event": "my.thing.happened",
                        "resource": {"prefect.resource.id": "my.resource.1"}, "payload": {"rows": 3}});

    // Completed arrives first; the batch is then sent again whole, as after a reconnect.
    for batch in [
        json!([done.clone()]),
        json!([
            pending.clone(),
            running.clone(),
            done.clone(),
            custom.clone()
        ]),
        json!([pending, running, done, custom]),
    ] {
        let (s, v) = app.post("/events", batch).await;
        assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    }
    let (s, runs) = app
        .post(
            "/task_runs/filter",
            json!({"flow_runs": {"id": {"any_": [flow]}}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{runs}");
    assert_eq!(runs.as_array().map(Vec::len), Some(1), "{runs}");
    let run = &runs[0];
    assert_eq!(run["id"], json!(task));
    assert_eq!(run["flow_run_id"], json!(flow));
    assert_eq!(run["state_type"], "COMPLETED");
    assert_eq!(run["state"]["state_details"]["task_run_id"], json!(task));
    assert_eq!(run["tags"], json!(["math"]));
    assert_eq!(run["empirical_policy"]["retries"], 2);
    assert_eq!(run["task_inputs"], json!({"x": []}));
    let (_, history) = app
        .get(&format!("/task_run_states/?task_run_id={task}"))
        .await;
    let names: Vec<&str> = history
        .as_array()
        .expect("states")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(
        names,
        ["Pending", "Running", "Completed"],
        "each state once"
    );
    let (_, count) = app
        .post(
            "/task_runs/count",
            json!({"task_runs": {"state": {"type": {"any_": ["COMPLETED"]}}}}),
        )
        .await;
    assert_eq!(count, json!(1));

    // Every event is stored once and can be read back, newest first, a page at a time.
    let (_, page) = app.post("/events/filter", json!({"limit": 2})).await;
    assert_eq!(page["total"], 4, "{page}");
    assert_eq!(page["events"][0]["event"], "my.thing.happened");
    assert_eq!(page["events"][0]["payload"], json!({"rows": 3}));
    let next = page["next_page"].as_str().expect("a next page");
    let path = &next[next
        .find("/events/filter/next")
        .expect("the next page's path")..];
    let (s, second) = app.get(path).await;
    assert_eq!(s, StatusCode::OK, "{second}");
    assert_eq!(second["events"].as_array().map(Vec::len), Some(2));
    assert_eq!(second["next_page"], Value::Null);
    let (_, only) = app
        .post(
            "/events/filter",
            json!({"filter": {"event": {"prefix": ["prefect.task-run."]}, "order": "ASC"}}),
        )
        .await;
    assert_eq!(only["events"][0]["event"], "prefect.task-run.Pending");
    let (s, _) = app.get("/events/filter/next?page-token=nonsense").await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // A malformed event is refused with where it is, and nothing of the batch is stored.
    let (s, v) = app
        .post("/events", json!([custom_event("ok"), {"id": uuid::Uuid::new_v4(), "occurred": "2026-12-07T10:00:02Z", "event": "x", "resource": {}}]))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["exception_detail"][0]["loc"], json!(["body", 1]));
    assert!(v.to_string().contains("prefect.resource.id"), "{v}");
    let (_, page) = app.post("/events/filter", json!({})).await;
    assert_eq!(page["total"], 4);
}

fn custom_event(name: &str) -> Value {
    json!({"id": uuid::Uuid::new_v4(), "occurred": "2026-12-07T10:00:03Z", "event": name,
           "resource": {"prefect.resource.id": "my.resource.2"}})
}

#[tokio::test]
async fn a_subflow_parent_task_run_is_created_once_and_follows_the_subflow() {
    let app = TestApp::new();
    let (_, flow) = app.post("/flows/", json!({"name": "parent"})).await;
    let (_, parent_run) = app
        .post(
            "/flow_runs/",
            json!({"flow_id": flow["id"], "state": {"type": "RUNNING"}}),
        )
        .await;
    let body = json!({"name": "child-0", "flow_run_id": parent_run["id"], "task_key": "child-abc",
                      "dynamic_key": "0", "empirical_policy": {"retries": 0}, "tags": [],
                      "task_inputs": {}, "state": {"type": "PENDING"}});
    let (s, task) = app.post("/task_runs/", body.clone()).await;
    assert_eq!(s, StatusCode::CREATED, "{task}");
    assert_eq!(task["state_type"], "PENDING");
    let (s, again) = app.post("/task_runs/", body).await;
    assert_eq!(
        (s, again["id"].clone()),
        (StatusCode::OK, task["id"].clone()),
        "the same run"
    );

    let (_, child) = app
        .post(
            "/flow_runs/",
            json!({"flow_id": flow["id"], "parent_task_run_id": task["id"], "state": {"type": "PENDING"}}),
        )
        .await;
    let child_id = child["id"].as_str().expect("id");
    for state in ["RUNNING", "COMPLETED"] {
        let (s, v) = app
            .post(
                &format!("/flow_runs/{child_id}/set_state"),
                json!({"state": {"type": state}}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
    let (_, parent_task) = app
        .get(&format!("/task_runs/{}", task["id"].as_str().expect("id")))
        .await;
    assert_eq!(parent_task["state_type"], "COMPLETED", "{parent_task}");
    assert_eq!(
        parent_task["state"]["state_details"]["child_flow_run_id"],
        json!(child_id)
    );
    assert_eq!(parent_task["run_count"], 1);
    assert!(parent_task["end_time"].is_string());

    // Bad creates say what is wrong.
    let (s, v) = app
        .post("/task_runs/", json!({"name": "x", "dynamic_key": "0"}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["exception_detail"][0]["loc"], json!(["body", "task_key"]));
    let (s, _) = app
        .post(
            "/task_runs/filter",
            json!({"task_runs": {"bogus": {"any_": [1]}}}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (_, paged) = app
        .post("/task_runs/paginate", json!({"page": 1, "limit": 10}))
        .await;
    assert_eq!(
        (paged["count"].clone(), paged["pages"].clone()),
        (json!(1), json!(1))
    );
}

#[tokio::test]
async fn the_ui_counts_task_runs_per_flow_run_by_state_and_over_time() {
    let app = TestApp::new();
    let (_, flow) = app.post("/flows/", json!({"name": "counted"})).await;
    let (_, run) = app
        .post(
            "/flow_runs/",
            json!({"flow_id": flow["id"], "state": {"type": "RUNNING"}}),
        )
        .await;
    let run_id = run["id"].as_str().expect("id").to_owned();
    let mut events = Vec::new();
    for (i, (name, state_type)) in [
        ("Completed", "COMPLETED"),
        ("Failed", "FAILED"),
        ("Running", "RUNNING"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut e = task_event(
            &uuid::Uuid::new_v4().to_string(),
            &run_id,
            name,
            state_type,
            &format!("2026-12-07T10:0{i}:30Z"),
        );
        e["payload"]["task_run"]["start_time"] = json!(format!("2026-12-07T10:0{i}:10Z"));
        e["payload"]["task_run"]["dynamic_key"] = json!(i.to_string());
        events.push(e);
    }
    app.post("/events", Value::Array(events)).await;
    // A subflow's parent task run is the subflow, not a task, to the UI.
    let (_, tracker) = app
        .post(
            "/task_runs/",
            json!({"flow_run_id": run_id, "task_key": "child", "dynamic_key": "0", "name": "child-0"}),
        )
        .await;
    app.post(
        "/flow_runs/",
        json!({"flow_id": flow["id"], "parent_task_run_id": tracker["id"]}),
    )
    .await;

    let other = uuid::Uuid::new_v4().to_string();
    let (s, counts) = app
        .post(
            "/ui/flow_runs/count-task-runs",
            json!({"flow_run_ids": [run_id, other]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{counts}");
    assert_eq!(counts, json!({run_id.clone(): 3, other: 0}));

    let (_, by_state) = app
        .post(
            "/ui/task_runs/count",
            json!({"task_runs": {"flow_run_id": {"any_": [run_id]}}}),
        )
        .await;
    assert_eq!(by_state["COMPLETED"], 1);
    assert_eq!(by_state["FAILED"], 1);
    assert_eq!(by_state["RUNNING"], 1);
    assert_eq!(by_state["PENDING"], 1, "the subflow's parent task run");
    assert_eq!(by_state["SCHEDULED"], 0);

    let (s, buckets) = app
        .post(
            "/ui/task_runs/dashboard/counts",
            json!({"task_runs": {"start_time": {"after_": "2026-12-07T10:00:00Z", "before_": "2026-12-07T10:20:00Z"}}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{buckets}");
    let buckets = buckets.as_array().expect("buckets");
    assert_eq!(buckets.len(), 20);
    assert_eq!(
        buckets[0],
        json!({"completed": 1, "failed": 0}),
        "10:00-10:01"
    );
    assert_eq!(
        buckets[1],
        json!({"completed": 0, "failed": 1}),
        "10:01-10:02"
    );
    let total: u64 = buckets
        .iter()
        .map(|b| b["completed"].as_u64().unwrap_or(0) + b["failed"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(total, 2, "only runs in a final state");
    let (s, _) = app
        .post("/ui/task_runs/dashboard/counts", json!({"task_runs": {}}))
        .await;
    assert_eq!(
        s,
        StatusCode::UNPROCESSABLE_ENTITY,
        "the window's start is required"
    );

    let (_, named) = app
        .get(&format!(
            "/ui/task_runs/{}",
            tracker["id"].as_str().expect("id")
        ))
        .await;
    assert_eq!(named["flow_run_name"], run["name"]);
}

#[tokio::test]
async fn events_are_counted_by_name_resource_and_time() {
    let app = TestApp::new();
    let event = |name: &str, resource: &str, occurred: &str| {
        json!({"id": uuid::Uuid::new_v4(), "occurred": occurred, "event": name,
               "resource": {"prefect.resource.id": resource, "prefect.resource.name": format!("{resource}!")}})
    };
    let (s, _) = app
        .post(
            "/events",
            json!([
                event("a.done", "r.1", "2026-12-01T10:00:00Z"),
                event("a.done", "r.2", "2026-12-02T11:00:00Z"),
                event("b.done", "r.2", "2026-12-02T12:00:00Z"),
            ]),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let range =
        json!({"occurred": {"since": "2026-12-01T00:00:00Z", "until": "2026-12-03T23:59:59Z"}});
    let (s, by_event) = app
        .post("/events/count-by/event", json!({"filter": range}))
        .await;
    assert_eq!(s, StatusCode::OK, "{by_event}");
    assert_eq!(by_event[0]["value"], "a.done");
    assert_eq!(by_event[0]["count"], 2);
    assert_eq!(by_event[1]["value"], "b.done");
    let (_, by_resource) = app
        .post("/events/count-by/resource", json!({"filter": range}))
        .await;
    assert_eq!(by_resource[0]["value"], "r.2");
    assert_eq!(by_resource[0]["label"], "r.2!");
    let (_, by_day) = app
        .post("/events/count-by/day", json!({"filter": range}))
        .await;
    let counts: Vec<u64> = by_day
        .as_array()
        .expect("days")
        .iter()
        .map(|d| d["count"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(counts, [1, 2, 0]);
    assert_eq!(by_day[1]["label"], "2026-12-02T00:00:00+00:00");
    let (s, _) = app
        .post(
            "/events/count-by/time",
            json!({"filter": range, "time_unit": "second", "time_interval": 1}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "too many spans");
    let (s, _) = app.post("/events/count-by/nonsense", json!({})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn the_task_run_history_counts_runs_per_interval_and_state() {
    let app = TestApp::new();
    let flow = uuid::Uuid::new_v4().to_string();
    let mut failed = task_event(
        &uuid::Uuid::new_v4().to_string(),
        &flow,
        "Failed",
        "FAILED",
        "2026-12-07T10:01:40Z",
    );
    failed["payload"]["task_run"]["expected_start_time"] = json!("2026-12-07T10:01:30Z");
    failed["payload"]["task_run"]["dynamic_key"] = json!("1");
    let events = json!([
        task_event(
            &uuid::Uuid::new_v4().to_string(),
            &flow,
            "Completed",
            "COMPLETED",
            "2026-12-07T10:00:05Z"
        ),
        failed,
    ]);
    app.post("/events", events).await;
    let (s, history) = app
        .post(
            "/task_runs/history",
            json!({"history_start": "2026-12-07T10:00:00Z", "history_end": "2026-12-07T10:03:00Z",
                   "history_interval_seconds": 60}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{history}");
    let history = history.as_array().expect("intervals");
    assert_eq!(history.len(), 3);
    assert_eq!(history[0]["interval_start"], "2026-12-07T10:00:00.000000Z");
    assert_eq!(history[0]["states"][0]["state_type"], "COMPLETED");
    assert_eq!(history[0]["states"][0]["count_runs"], 1);
    assert_eq!(history[1]["states"][0]["state_name"], "Failed");
    assert_eq!(history[2]["states"], json!([]));
    let (s, _) = app
        .post(
            "/task_runs/history",
            json!({"history_start": "2026-12-07T10:00:00Z", "history_end": "2026-12-07T10:03:00Z",
                   "history_interval_seconds": 0.5}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
}
