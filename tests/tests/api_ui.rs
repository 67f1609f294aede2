//! The routes Prefect's UI calls, through the router: paginated lists, the flow-run graph,
//! lateness and run history, next runs and deployment counts per flow, the related-object
//! filters the pages send, admin settings, and the features Sluice answers as empty.

use axum::http::StatusCode;
use serde_json::{Value, json};
use sluice_tests::{TestApp, assert_invalid};

async fn flow(app: &TestApp, name: &str) -> Value {
    let (s, f) = app.post("/flows/", json!({ "name": name })).await;
    assert_eq!(s, StatusCode::CREATED, "{f}");
    f
}

async fn ok(app: &TestApp, path: &str, body: Value) -> Value {
    let (s, v) = app.post(path, body).await;
    assert_eq!(s, StatusCode::OK, "{path}: {v}");
    v
}

fn names(items: &Value) -> Vec<&str> {
    items
        .as_array()
        .expect("a list")
        .iter()
        .map(|i| i["name"].as_str().expect("a name"))
        .collect()
}

#[tokio::test]
async fn paginate_answers_pages_and_counts_ignore_order_and_paging() {
    let (app, clock) = TestApp::at_t0();
    for name in ["alpha", "bravo", "charlie"] {
        flow(&app, name).await;
        clock.advance(chrono::Duration::seconds(1));
    }
    let page = ok(
        &app,
        "/flows/paginate",
        json!({"page": 2, "limit": 2, "sort": "NAME_ASC"}),
    )
    .await;
    assert_eq!(names(&page["results"]), vec!["charlie"]);
    assert_eq!(
        (
            &page["count"],
            &page["pages"],
            &page["page"],
            &page["limit"]
        ),
        (&json!(3), &json!(2), &json!(2), &json!(2))
    );
    let newest = ok(&app, "/flows/filter", json!({"sort": "CREATED_DESC"})).await;
    assert_eq!(names(&newest), vec!["charlie", "bravo", "alpha"]);
    // The UI sends its list body to the count route too.
    assert_eq!(
        ok(
            &app,
            "/flows/count",
            json!({"offset": 0, "sort": "NAME_ASC", "limit": 10})
        )
        .await,
        json!(3)
    );
    let (s, v) = app.post("/flows/paginate", json!({"page": 0})).await;
    assert_invalid(s, &v, &json!(["body", "page"]));
    let (s, v) = app.post("/flows/filter", json!({"sort": "SIDEWAYS"})).await;
    assert_invalid(s, &v, &json!(["body", "sort"]));

    let f = flow(&app, "etl").await;
    for name in ["nightly", "hourly"] {
        let (s, d) = app
            .post("/deployments/", json!({"name": name, "flow_id": f["id"]}))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{d}");
        clock.advance(chrono::Duration::seconds(1));
    }
    let page = ok(
        &app,
        "/deployments/paginate",
        json!({"page": 1, "limit": 1, "sort": "CREATED_DESC"}),
    )
    .await;
    assert_eq!(names(&page["results"]), vec!["hourly"]);
    assert_eq!(page["pages"], 2);
    // The search box: a deployment's own name or its flow's.
    let by_flow = ok(
        &app,
        "/deployments/filter",
        json!({"deployments": {"flow_or_deployment_name": {"like_": "ET"}}}),
    )
    .await;
    assert_eq!(names(&by_flow), vec!["hourly", "nightly"]);
    let by_name = ok(
        &app,
        "/deployments/count",
        json!({"deployments": {"flow_or_deployment_name": {"like_": "night"}}, "offset": 0}),
    )
    .await;
    assert_eq!(by_name, json!(1));
    // Only the deployment routes can resolve it; elsewhere it is refused, not ignored.
    let (s, v) = app
        .post(
            "/flow_runs/filter",
            json!({"deployments": {"flow_or_deployment_name": {"like_": "x"}}}),
        )
        .await;
    assert_invalid(
        s,
        &v,
        &json!(["body", "deployments", "flow_or_deployment_name"]),
    );
    let counts = ok(
        &app,
        "/ui/flows/count-deployments",
        json!({"flow_ids": [f["id"], uuid::Uuid::new_v4()]}),
    )
    .await;
    assert_eq!(counts[f["id"].as_str().expect("id")], 2);
    assert_eq!(counts.as_object().expect("map").len(), 2);
}

/// A parent run with three task runs (one feeding another, one standing for a subflow) and an
/// artifact: the graph, the subflow filters and the per-run counts the run page reads.
#[tokio::test]
async fn a_flow_run_graph_draws_tasks_edges_subflows_and_artifacts() {
    let app = TestApp::new();
    let parent_flow = flow(&app, "parent").await;
    let child_flow = flow(&app, "child").await;
    let (_, parent) = app
        .post(
            "/flow_runs/",
            json!({"flow_id": parent_flow["id"], "state": {"type": "RUNNING"}}),
        )
        .await;
    let task = |key: &str, inputs: Value| {
        json!({"flow_run_id": parent["id"], "task_key": key, "dynamic_key": "0",
               "name": format!("{key}-0"), "task_inputs": inputs,
               "state": {"type": "RUNNING"}})
    };
    let (s, first) = app.post("/task_runs/", task("first", json!({}))).await;
    assert_eq!(s, StatusCode::CREATED, "{first}");
    let (_, second) = app
        .post(
            "/task_runs/",
            task(
                "second",
                json!({"x": [{"input_type": "task_run", "id": first["id"]}]}),
            ),
        )
        .await;
    let (_, tracker) = app.post("/task_runs/", task("child", json!({}))).await;
    let (s, child) = app
        .post(
            "/flow_runs/",
            json!({"flow_id": child_flow["id"], "name": "small-run",
                   "parent_task_run_id": tracker["id"], "state": {"type": "RUNNING"}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{child}");
    let (s, artifact) = app
        .post(
            "/artifacts/",
            json!({"key": "report", "type": "markdown", "data": "# hi",
                   "flow_run_id": parent["id"], "task_run_id": second["id"]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{artifact}");

    let id = parent["id"].as_str().expect("id");
    let (s, graph) = app.get(&format!("/flow_runs/{id}/graph-v2")).await;
    assert_eq!(s, StatusCode::OK, "{graph}");
    let nodes = graph["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 3, "{graph}");
    let node = |node_id: &Value| {
        nodes
            .iter()
            .find(|pair| pair[0] == *node_id)
            .map(|pair| pair[1].clone())
            .unwrap_or_else(|| panic!("no node {node_id} in {graph}"))
    };
    let sub = node(&child["id"]);
    assert_eq!(sub["kind"], "flow-run");
    assert_eq!(sub["label"], "child / small-run");
    assert_eq!(node(&second["id"])["parents"], json!([{"id": first["id"]}]));
    assert_eq!(
        node(&first["id"])["children"],
        json!([{"id": second["id"]}])
    );
    assert_eq!(node(&second["id"])["artifacts"][0]["key"], "report");
    assert_eq!(node(&second["id"])["artifacts"][0]["is_latest"], true);
    assert!(
        graph["root_node_ids"]
            .as_array()
            .expect("roots")
            .contains(&first["id"])
    );
    assert_eq!(graph["states"][0]["type"], "RUNNING");
    let (s, _) = app
        .get(&format!("/flow_runs/{}/graph-v2", uuid::Uuid::new_v4()))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, v) = app
        .get(&format!("/flow_runs/{id}/graph-v2?since=yesterday"))
        .await;
    assert_invalid(s, &v, &json!(["query", "since"]));

    // The run page's subflow list and task-run counts.
    let subflows = ok(
        &app,
        "/flow_runs/filter",
        json!({"flow_runs": {"parent_flow_run_id": {"any_": [id]}}}),
    )
    .await;
    assert_eq!(subflows.as_array().map(Vec::len), Some(1));
    assert_eq!(subflows[0]["id"], child["id"]);
    let not_subflows = json!({"flow_runs": {"id": {"any_": [id]}},
                              "task_runs": {"subflow_runs": {"exists_": false}}});
    assert_eq!(ok(&app, "/task_runs/count", not_subflows).await, json!(2));
    let only_subflows = json!({"flow_runs": {"id": {"any_": [id]}},
                               "task_runs": {"subflow_runs": {"exists_": true}}});
    let found = ok(&app, "/task_runs/filter", only_subflows).await;
    assert_eq!(found[0]["id"], tracker["id"]);
    // Task runs by their flow, through the flow's runs.
    let by_flow = json!({"flows": {"id": {"any_": [parent_flow["id"]]}}});
    assert_eq!(ok(&app, "/task_runs/count", by_flow).await, json!(3));
    let by_other = json!({"flows": {"id": {"any_": [child_flow["id"]]}}});
    assert_eq!(ok(&app, "/task_runs/count", by_other).await, json!(0));
}

#[tokio::test]
async fn lateness_history_and_next_runs_come_from_the_runs_times() {
    let (app, clock) = TestApp::at_t0();
    let f = flow(&app, "timed").await;
    let at = |secs: i64| {
        (sluice_tests::t0() + chrono::Duration::seconds(secs))
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    };
    let scheduled = |secs: i64| {
        json!({"flow_id": f["id"],
               "state": {"type": "SCHEDULED", "state_details": {"scheduled_time": at(secs)}}})
    };
    let (_, soon) = app.post("/flow_runs/", scheduled(60)).await;
    app.post("/flow_runs/", scheduled(600)).await;
    let (_, late) = app.post("/flow_runs/", scheduled(-30)).await;
    // Nothing has started: one run is 30 s past its time.
    let avg = ok(&app, "/flow_runs/lateness", json!({})).await;
    assert!(
        (avg.as_f64().expect("seconds") - 10.0).abs() < 1e-3,
        "{avg}"
    );
    let none = json!({"flow_runs": {"id": {"any_": [uuid::Uuid::new_v4()]}}});
    assert_eq!(ok(&app, "/flow_runs/lateness", none).await, Value::Null);

    let next = ok(&app, "/ui/flows/next-runs", json!({"flow_ids": [f["id"]]})).await;
    let next = &next[f["id"].as_str().expect("id")];
    // The earliest scheduled run, late or not.
    assert_eq!(next["id"], late["id"], "{next}");
    assert_eq!(next["state_type"], "SCHEDULED");

    let late_id = late["id"].as_str().expect("id");
    let (s, v) = app
        .post(
            &format!("/flow_runs/{late_id}/set_state"),
            json!({"state": {"type": "RUNNING"}, "force": true}),
        )
        .await;
    assert!(s.is_success(), "{v}");
    clock.advance(chrono::Duration::seconds(5));
    let history = ok(
        &app,
        "/ui/flow_runs/history",
        json!({"sort": "EXPECTED_START_TIME_ASC"}),
    )
    .await;
    let history = history.as_array().expect("runs");
    assert_eq!(history.len(), 3);
    assert_eq!(history[0]["id"], late["id"]);
    assert_eq!(history[0]["state_type"], "RUNNING");
    assert!(
        (history[0]["duration"].as_f64().expect("s") - 5.0).abs() < 1e-3,
        "{history:?}"
    );
    assert!((history[0]["lateness"].as_f64().expect("s") - 30.0).abs() < 1e-3);
    assert_eq!(history[1]["id"], soon["id"]);
    assert_eq!(history[1]["lateness"], 0.0);
    let (s, v) = app
        .post("/ui/flow_runs/history", json!({"limit": 1001}))
        .await;
    assert_invalid(s, &v, &json!(["body", "limit"]));
    // Flows that have a run matching a run criterion.
    let with_running = ok(
        &app,
        "/flows/filter",
        json!({"flow_runs": {"state": {"type": {"any_": ["RUNNING"]}}}}),
    )
    .await;
    assert_eq!(names(&with_running), vec!["timed"]);
    let with_failed = json!({"flow_runs": {"state": {"type": {"any_": ["FAILED"]}}}});
    assert_eq!(ok(&app, "/flows/count", with_failed).await, json!(0));
}

#[tokio::test]
async fn variables_and_block_documents_are_filtered_and_sorted_as_the_ui_asks() {
    let (app, clock) = TestApp::at_t0();
    for (name, tags) in [
        ("b_var", json!(["x"])),
        ("a_var", json!([])),
        ("c_var", json!(["x"])),
    ] {
        let (s, v) = app
            .post(
                "/variables/",
                json!({"name": name, "value": 1, "tags": tags}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        clock.advance(chrono::Duration::seconds(1));
    }
    let newest = ok(
        &app,
        "/variables/filter",
        json!({"sort": "CREATED_DESC", "limit": 2}),
    )
    .await;
    assert_eq!(names(&newest), vec!["c_var", "a_var"]);
    let tagged = ok(
        &app,
        "/variables/filter",
        json!({"variables": {"tags": {"all_": ["x"]}, "name": {"like_": "B_"}}}),
    )
    .await;
    assert_eq!(names(&tagged), vec!["b_var"]);
    assert_eq!(
        ok(
            &app,
            "/variables/count",
            json!({"offset": 0, "sort": "CREATED_DESC"})
        )
        .await,
        json!(3)
    );

    let (s, block_type) = app
        .post("/block_types/", json!({"name": "Note", "slug": "note"}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{block_type}");
    let fields = json!({"title": "Note", "type": "object",
                        "properties": {"text": {"title": "Text", "type": "string"}}});
    let (s, schema) = app
        .post(
            "/block_schemas/",
            json!({"fields": fields, "block_type_id": block_type["id"], "capabilities": ["read"]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{schema}");
    for (name, anonymous) in [("zeta", false), ("alpha", false), ("anon", true)] {
        let body = json!({"name": name, "data": {"text": "s"}, "is_anonymous": anonymous,
                          "block_type_id": block_type["id"], "block_schema_id": schema["id"]});
        let (s, d) = app.post("/block_documents/", body).await;
        assert_eq!(s, StatusCode::CREATED, "{d}");
    }
    // The blocks page: named documents (Prefect's default once `block_documents` is given).
    let page = json!({"block_documents": {"name": {"like_": ""}, "operator": "and_"},
                      "block_types": {"slug": {}}, "sort": "NAME_DESC", "offset": 0});
    assert_eq!(
        names(&ok(&app, "/block_documents/filter", page.clone()).await),
        vec!["zeta", "alpha"]
    );
    assert_eq!(ok(&app, "/block_documents/count", page).await, json!(2));
    let capable = json!({"block_schemas": {"block_capabilities": {"all_": ["read"]}}});
    assert_eq!(ok(&app, "/block_documents/count", capable).await, json!(3));
    let incapable = json!({"block_schemas": {"block_capabilities": {"all_": ["read", "write"]}}});
    assert_eq!(
        ok(&app, "/block_documents/count", incapable).await,
        json!(0)
    );
}

#[tokio::test]
async fn settings_queues_and_the_absent_features_answer_as_prefect_does() {
    let app = TestApp::new();
    let (s, settings) = app.get("/admin/settings").await;
    assert_eq!(s, StatusCode::OK, "{settings}");
    assert_eq!(settings["server"]["api"]["auth_string"], Value::Null);
    assert_eq!(settings["server"]["api"]["default_limit"], 200);

    for pool in ["first", "second"] {
        let (s, p) = app
            .post("/work_pools/", json!({"name": pool, "type": "process"}))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{p}");
    }
    let queues = ok(&app, "/work_queues/filter", json!({"offset": 0})).await;
    let pools: Vec<&str> = queues
        .as_array()
        .expect("queues")
        .iter()
        .map(|q| q["work_pool_name"].as_str().expect("pool"))
        .collect();
    assert_eq!(pools, vec!["first", "second"]);

    assert_eq!(
        ok(&app, "/saved_searches/filter", json!({})).await,
        json!([])
    );
    assert_eq!(
        ok(
            &app,
            "/automations/filter",
            json!({"sort": "CREATED_DESC", "offset": 0})
        )
        .await,
        json!([])
    );
    let (s, related) = app
        .get(&format!(
            "/automations/related-to/prefect.deployment.{}",
            uuid::Uuid::new_v4()
        ))
        .await;
    assert_eq!((s, related), (StatusCode::OK, json!([])));
    // Nothing can be stored in them.
    let (s, _) = app.post("/automations/", json!({"name": "x"})).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn events_match_an_id_prefix_on_any_resource() {
    let app = TestApp::new();
    let run = uuid::Uuid::new_v4();
    let event = json!({
        "id": uuid::Uuid::new_v4(), "occurred": "2026-12-07T10:00:00Z", "event": "custom.thing",
        "resource": {"prefect.resource.id": "my.resource"},
        "related": [{"prefect.resource.id": format!("prefect.flow-run.{run}"), "prefect.resource.role": "flow-run"}],
        "payload": {}
    });
    let (s, v) = app.post("/events", json!([event])).await;
    assert!(s.is_success(), "{v}");
    let by_prefix = |prefix: &str| {
        json!({"filter": {"any_resource": {"id_prefix": [prefix]},
                          "occurred": {"since": "2026-12-07T00:00:00Z", "until": "2026-12-08T00:00:00Z"}}})
    };
    let found = ok(&app, "/events/filter", by_prefix("prefect.flow-run.")).await;
    assert_eq!(found["total"], 1, "{found}");
    let found = ok(&app, "/events/filter", by_prefix("prefect.deployment.")).await;
    assert_eq!(found["total"], 0, "{found}");
}

/// The custom-run form: values checked against the deployment's schema after hydration, and
/// the run then made from the same hydrated values.
#[tokio::test]
async fn a_form_is_validated_and_its_run_gets_hydrated_parameters() {
    let app = TestApp::new();
    let schema = json!({"type": "object", "required": ["n"],
                        "properties": {"n": {"type": "integer"}, "cfg": {"type": "object"},
                                       "region": {"type": "string"}}});
    let (s, v) = app
        .post(
            "/variables/",
            json!({"name": "region", "value": "eu-west-1"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let check = |values: Value| json!({"schema": schema, "values": values});
    let answer = ok(
        &app,
        "/ui/schemas/validate",
        check(json!({"n": 1, "region": {"__prefect_kind": "workspace_variable", "variable_name": "region"}})),
    )
    .await;
    assert_eq!(answer, json!({"errors": [], "valid": true}));
    let answer = ok(
        &app,
        "/ui/schemas/validate",
        check(json!({"cfg": {"__prefect_kind": "json", "value": "{oops"}})),
    )
    .await;
    assert_eq!(answer["valid"], false);
    let props: Vec<&str> = answer["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["property"].as_str().expect("property"))
        .collect();
    assert_eq!(props, vec!["n", "cfg"], "{answer}");
    let (s, v) = app
        .post(
            "/ui/schemas/validate",
            json!({"schema": {"type": 7}, "values": {}}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");

    let f = flow(&app, "form").await;
    let (s, d) = app
        .post(
            "/deployments/",
            json!({"name": "d", "flow_id": f["id"], "parameter_openapi_schema": schema,
                   "parameters": {"n": 1}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{d}");
    let id = d["id"].as_str().expect("id");
    let (s, run) = app
        .post(
            &format!("/deployments/{id}/create_flow_run"),
            json!({"parameters": {
                "cfg": {"__prefect_kind": "json", "value": "{\"retries\": 2}"},
                "region": {"__prefect_kind": "workspace_variable", "variable_name": "region"}
            }}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{run}");
    assert_eq!(
        run["parameters"],
        json!({"n": 1, "cfg": {"retries": 2}, "region": "eu-west-1"})
    );
    let (s, v) = app
        .post(
            &format!("/deployments/{id}/create_flow_run"),
            json!({"parameters": {"region": {"__prefect_kind": "workspace_variable", "variable_name": "nope"}}}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(
        v["detail"],
        "Error hydrating flow run parameters: Variable 'nope' not found in workspace."
    );
    // The deployment's own parameters, edited in the UI, are hydrated too.
    let (s, v) = app
        .patch(
            &format!("/deployments/{id}"),
            json!({"parameters": {"n": {"__prefect_kind": "json", "value": "7"}}}),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    let (_, d) = app.get(&format!("/deployments/{id}")).await;
    assert_eq!(d["parameters"], json!({"n": 7}));
}

#[tokio::test]
async fn a_deployments_schedules_are_added_switched_and_removed_one_by_one() {
    let app = TestApp::new();
    let f = flow(&app, "scheduled").await;
    let (s, d) = app
        .post(
            "/deployments/",
            json!({"name": "d", "flow_id": f["id"],
                   "schedules": [{"schedule": {"interval": 3600}, "slug": "hourly"}]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{d}");
    let id = d["id"].as_str().expect("id");
    let first = d["schedules"][0]["id"].clone();
    let (s, added) = app
        .post(
            &format!("/deployments/{id}/schedules"),
            json!([{"schedule": {"cron": "0 3 * * *"}, "active": false, "slug": "nightly"}]),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{added}");
    let second = added[0]["id"].clone();
    let (_, listed) = app.get(&format!("/deployments/{id}/schedules")).await;
    let ids: Vec<&Value> = listed
        .as_array()
        .expect("schedules")
        .iter()
        .map(|s| &s["id"])
        .collect();
    assert_eq!(ids, vec![&first, &second], "the first keeps its id");
    let (s, v) = app
        .post(
            &format!("/deployments/{id}/schedules"),
            json!([{"schedule": {"interval": 60}, "slug": "hourly"}]),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");

    let sid = first.as_str().expect("id");
    // The active hourly schedule has runs waiting before it is switched off.
    let scheduled = json!({"deployments": {"id": {"any_": [id]}}});
    let before = ok(&app, "/flow_runs/count", scheduled.clone()).await;
    assert!(before.as_u64().is_some_and(|n| n > 0), "{before}");
    let (s, v) = app
        .patch(
            &format!("/deployments/{id}/schedules/{sid}"),
            json!({"active": false}),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    let (_, listed) = app.get(&format!("/deployments/{id}/schedules")).await;
    assert_eq!(listed[0]["active"], false);
    assert_eq!(listed[0]["schedule"]["interval"], 3600.0);
    // Every schedule off: no auto-scheduled run is left.
    assert_eq!(ok(&app, "/flow_runs/count", scheduled).await, json!(0));
    let (s, v) = app
        .patch(
            &format!("/deployments/{id}/schedules/{sid}"),
            json!({"schedule": {"cron": "not cron"}}),
        )
        .await;
    assert_invalid(s, &v, &json!(["body", "schedule"]));

    let (s, _) = app
        .delete(&format!("/deployments/{id}/schedules/{sid}"))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = app
        .delete(&format!("/deployments/{id}/schedules/{sid}"))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (_, listed) = app.get(&format!("/deployments/{id}/schedules")).await;
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
    let (s, _) = app
        .get(&format!("/deployments/{}/schedules", uuid::Uuid::new_v4()))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}
