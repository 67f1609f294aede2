//! The rest of the router over HTTP: the handshake endpoints the stock client and tools call
//! (reference §10), unknown paths and methods, malformed bodies, variables, block documents
//! and logs; checked against Prefect's wire contract and that refused input stores nothing.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use sluice_tests::{T0, TestApp, assert_detail, assert_invalid, keys, sorted};

// ---- handshake and the router's edges ---------------------------------------------------------

#[tokio::test]
async fn health_version_hello_and_ready() {
    let app = TestApp::new();
    assert_eq!(app.get("/health").await, (StatusCode::OK, json!(true)));
    let (s, _) = app.get("/ready").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(app.get("/version").await, (StatusCode::OK, json!("0.8.4")));
    let (s, v) = app.get("/admin/version").await;
    assert_eq!(s, StatusCode::OK);
    assert!(v.as_str().is_some_and(|v| !v.is_empty()), "{v}");
    let (s, hello) = app.get("/hello").await;
    assert_eq!(s, StatusCode::OK);
    assert!(hello.is_string(), "{hello}");
}

#[tokio::test]
async fn csrf_token_says_protection_is_disabled() {
    let app = TestApp::new();
    // The stock client asks once per instance and turns CSRF off on exactly this answer.
    for path in [
        "/csrf-token?client=6f1c9e2e-0000-4000-8000-000000000000",
        "/csrf-token",
    ] {
        let (s, body) = app.get(path).await;
        let detail = assert_detail(s, &body, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(detail, "CSRF protection is disabled.");
    }
}

#[tokio::test]
async fn worker_metadata_lists_every_pool_type_with_a_default_template() {
    let app = TestApp::new();
    let (s, meta) = app
        .get("/collections/views/aggregate-worker-metadata")
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(meta.is_object(), "{meta}");
    let text = meta.to_string();
    for t in ["process", "ecs", "ecs:push", "batch", "batch:push"] {
        assert!(text.contains(&format!("\"{t}\"")), "{t} missing");
    }
    assert!(text.contains("default_base_job_configuration"), "{text}");
}

#[tokio::test]
async fn unknown_paths_are_404_not_found_and_wrong_methods_405() {
    let app = TestApp::new();
    for (method, path) in [
        (Method::GET, "/nope"),
        (Method::POST, "/automations/"),
        (Method::DELETE, "/automations/owned-by/prefect.deployment.x"),
        (Method::GET, "/work_pools/p/queues/q/extra"),
        (Method::GET, "/flow_runs/a/b/c"),
    ] {
        let (s, body) = app.call(method.clone(), path, None).await;
        assert_eq!(
            (s, body),
            (StatusCode::NOT_FOUND, json!({"detail": "Not Found"})),
            "{method} {path}"
        );
    }
    for (method, path) in [
        (Method::DELETE, "/work_pools/filter"),
        (Method::GET, "/work_pools/"),
        (Method::GET, "/logs/"),
        (Method::PUT, "/variables/name/x"),
        (Method::GET, "/work_pools/p/workers/heartbeat"),
    ] {
        let (s, body) = app.call(method.clone(), path, None).await;
        assert_eq!(
            (s, body),
            (
                StatusCode::METHOD_NOT_ALLOWED,
                json!({"detail": "Method Not Allowed"})
            ),
            "{method} {path}"
        );
    }
}

#[tokio::test]
async fn malformed_bodies_are_422_with_the_body_echoed() {
    let app = TestApp::new();
    let (s, out) = app
        .raw(Method::POST, "/variables/", b"{\"name\": \"x\",".to_vec())
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{out}");
    assert_eq!(out["exception_message"], "Invalid request received.");
    assert_eq!(out["exception_detail"][0]["loc"][0], "body");
    assert_eq!(out["request_body"], "{\"name\": \"x\",");
    let (s, out) = app.post("/variables/", json!(["x"])).await;
    assert_invalid(s, &out, &json!(["body"]));
    assert_eq!(out["request_body"], json!(["x"]));
    let (s, out) = app.post("/work_pools/filter", json!("text")).await;
    assert_invalid(s, &out, &json!(["body"]));
    // An empty body is `{}` for the optional-field bodies.
    let (s, out) = app.call(Method::POST, "/variables/filter", None).await;
    assert_eq!((s, out), (StatusCode::OK, json!([])));
    let (_, n) = app.post("/variables/count", json!({})).await;
    assert_eq!(n, json!(0));
    // Over the body limit: 413.
    let big = vec![b' '; sluice_api::DEFAULT_BODY_LIMIT + 1];
    let (s, out) = app.raw(Method::POST, "/logs/", big).await;
    assert_detail(s, &out, StatusCode::PAYLOAD_TOO_LARGE);
}

// ---- variables ------------------------------------------------------------------------------

async fn variable_count(app: &TestApp) -> Value {
    let (s, n) = app.post("/variables/count", json!({})).await;
    assert_eq!(s, StatusCode::OK, "{n}");
    n
}

#[tokio::test]
async fn variables_create_201_and_read_by_id_and_name() {
    let (app, _clock) = TestApp::at_t0();
    let (s, v) = app
        .post(
            "/variables/",
            json!({"name": "my_var-1", "value": {"a": [1, 2]}, "tags": ["t"]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(
        keys(&v),
        sorted(&["id", "created", "updated", "name", "value", "tags"])
    );
    assert!(
        v["id"]
            .as_str()
            .is_some_and(|i| i.parse::<uuid::Uuid>().is_ok())
    );
    assert_eq!(v["created"], T0);
    assert_eq!(v["value"], json!({"a": [1, 2]}));
    assert_eq!(v["tags"], json!(["t"]));
    let id = v["id"].as_str().expect("id");
    assert_eq!(
        app.get(&format!("/variables/{id}")).await,
        (StatusCode::OK, v.clone())
    );
    assert_eq!(
        app.get("/variables/name/my_var-1").await,
        (StatusCode::OK, v.clone())
    );

    // Every JSON value type is a valid value; tags default to [].
    for (name, value) in [
        ("s", json!("text")),
        ("i", json!(7)),
        ("f", json!(1.5)),
        ("b", json!(false)),
        ("n", Value::Null),
        ("l", json!([1, "a"])),
    ] {
        let (s, out) = app
            .post("/variables", json!({"name": name, "value": value}))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{out}");
        assert_eq!(out["value"], value);
        assert_eq!(out["tags"], json!([]));
    }
    assert_eq!(variable_count(&app).await, json!(7));

    let (s, out) = app.get("/variables/name/missing").await;
    assert_detail(s, &out, StatusCode::NOT_FOUND);
    let (s, out) = app
        .get(&format!("/variables/{}", uuid::Uuid::new_v4()))
        .await;
    assert_detail(s, &out, StatusCode::NOT_FOUND);
    let (s, out) = app.get("/variables/not-a-uuid").await;
    assert_invalid(s, &out, &json!(["path", "id"]));
}

#[tokio::test]
async fn variable_names_follow_prefect_rules_and_duplicates_are_409() {
    let app = TestApp::new();
    let (s, _) = app
        .post("/variables/", json!({"name": "taken", "value": 1}))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, out) = app
        .post("/variables/", json!({"name": "taken", "value": 2}))
        .await;
    let detail = assert_detail(s, &out, StatusCode::CONFLICT);
    assert!(detail.contains("taken"), "{detail}");
    for name in ["MyVar", "my var", "a.b", "a/b", "ünï", "x!"] {
        let (s, out) = app
            .post("/variables/", json!({"name": name, "value": 1}))
            .await;
        assert_invalid(s, &out, &json!(["body", "name"]));
    }
    let long = "a".repeat(256);
    let (s, out) = app
        .post("/variables/", json!({"name": long, "value": 1}))
        .await;
    assert_invalid(s, &out, &json!(["body", "name"]));
    let (s, _) = app
        .post("/variables/", json!({"name": "a".repeat(255), "value": 1}))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    for (body, loc) in [
        (json!({"name": "v"}), json!(["body", "value"])),
        (json!({"value": 1}), json!(["body", "name"])),
        (
            json!({"name": "v", "value": "x".repeat(5001)}),
            json!(["body", "value"]),
        ),
        (
            json!({"name": "v", "value": 1, "bogus": 1}),
            json!(["body", "bogus"]),
        ),
        (
            json!({"name": "v", "value": 1, "tags": "t"}),
            json!(["body", "tags"]),
        ),
    ] {
        let (s, out) = app.post("/variables/", body).await;
        assert_invalid(s, &out, &loc);
    }
    assert_eq!(variable_count(&app).await, json!(2), "nothing else stored");
    let (_, value) = app.get("/variables/name/taken").await;
    assert_eq!(value["value"], 1, "the first one kept");
}

#[tokio::test]
async fn variable_patch_and_delete_by_id_and_by_name() {
    let (app, clock) = TestApp::at_t0();
    let (_, v) = app
        .post(
            "/variables/",
            json!({"name": "v", "value": "a", "tags": ["t"]}),
        )
        .await;
    app.post("/variables/", json!({"name": "other", "value": 0}))
        .await;
    let id = v["id"].as_str().expect("id").to_owned();
    clock.advance(chrono::Duration::seconds(4));

    // By id: only what is sent changes.
    let (s, out) = app
        .patch(&format!("/variables/{id}"), json!({"value": {"n": 2}}))
        .await;
    assert_eq!((s, out), (StatusCode::NO_CONTENT, Value::Null));
    let (_, read) = app.get(&format!("/variables/{id}")).await;
    assert_eq!(read["value"], json!({"n": 2}));
    assert_eq!(read["tags"], json!(["t"]));
    assert_eq!(read["name"], "v");
    assert_eq!(read["updated"], "2026-01-01T12:00:04.000000Z");
    assert_eq!(read["created"], T0);

    // By name; an explicit null value is stored as null.
    let (s, _) = app
        .patch("/variables/name/v", json!({"value": null, "tags": []}))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, read) = app.get("/variables/name/v").await;
    assert_eq!(read["value"], Value::Null);
    assert_eq!(read["tags"], json!([]));

    // Renaming: the rules apply, and a taken name is 409; neither changes anything.
    let (s, out) = app
        .patch("/variables/name/v", json!({"name": "Bad Name"}))
        .await;
    assert_invalid(s, &out, &json!(["body", "name"]));
    let (s, out) = app
        .patch(&format!("/variables/{id}"), json!({"name": "other"}))
        .await;
    assert_detail(s, &out, StatusCode::CONFLICT);
    let (s, out) = app
        .patch(
            &format!("/variables/{id}"),
            json!({"value": "y".repeat(5001)}),
        )
        .await;
    assert_invalid(s, &out, &json!(["body", "value"]));
    let (_, same) = app.get(&format!("/variables/{id}")).await;
    assert_eq!(same, read);
    let (s, _) = app
        .patch(&format!("/variables/{id}"), json!({"name": "renamed"}))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = app.get("/variables/name/v").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, out) = app.patch("/variables/name/v", json!({"value": 1})).await;
    assert_detail(s, &out, StatusCode::NOT_FOUND);
    let (s, out) = app
        .patch(
            &format!("/variables/{}", uuid::Uuid::new_v4()),
            json!({"value": 1}),
        )
        .await;
    assert_detail(s, &out, StatusCode::NOT_FOUND);

    // Deletes: 204, then 404.
    let (s, out) = app.delete(&format!("/variables/{id}")).await;
    assert_eq!((s, out), (StatusCode::NO_CONTENT, Value::Null));
    let (s, out) = app.delete(&format!("/variables/{id}")).await;
    assert_detail(s, &out, StatusCode::NOT_FOUND);
    let (s, _) = app.delete("/variables/name/other").await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, out) = app.delete("/variables/name/other").await;
    assert_detail(s, &out, StatusCode::NOT_FOUND);
    assert_eq!(variable_count(&app).await, json!(0));
}

#[tokio::test]
async fn variable_filter_and_count() {
    let app = TestApp::new();
    for name in ["c", "a", "b"] {
        app.post("/variables/", json!({"name": name, "value": name}))
            .await;
    }
    let names = |v: &Value| -> Vec<String> {
        v.as_array()
            .expect("a list")
            .iter()
            .map(|x| x["name"].as_str().expect("name").to_owned())
            .collect()
    };
    for (body, want) in [
        (json!({}), vec!["a", "b", "c"]),
        (
            json!({"limit": null, "offset": null, "variables": null}),
            vec!["a", "b", "c"],
        ),
        (
            json!({"variables": {"name": {"any_": ["c", "a"]}}}),
            vec!["a", "c"],
        ),
        (json!({"limit": 1, "offset": 1}), vec!["b"]),
        (json!({"sort": "NAME_ASC"}), vec!["a", "b", "c"]),
    ] {
        let (s, out) = app.post("/variables/filter", body.clone()).await;
        assert_eq!(s, StatusCode::OK, "{body} -> {out}");
        assert_eq!(names(&out), want, "{body}");
    }
    let (s, n) = app
        .post(
            "/variables/count",
            json!({"variables": {"name": {"any_": ["a", "zz"]}}}),
        )
        .await;
    assert_eq!((s, n), (StatusCode::OK, json!(1)));
    for (body, loc) in [
        (json!({"limit": 201}), json!(["body", "limit"])),
        (
            json!({"variables": {"tags": {"any_": ["t"]}}}),
            json!(["body", "variables", "tags", "any_"]),
        ),
        (
            json!({"variables": {"value": {"any_": ["a"]}}}),
            json!(["body", "variables", "value"]),
        ),
        (json!({"sort": "SIDEWAYS"}), json!(["body", "sort"])),
    ] {
        let (s, out) = app.post("/variables/filter", body.clone()).await;
        assert_invalid(s, &out, &loc);
    }
}

// ---- block documents -------------------------------------------------------------------------

const BLOCK_FIELDS: &[&str] = &[
    "id",
    "created",
    "updated",
    "name",
    "data",
    "block_schema",
    "block_schema_id",
    "block_type_id",
    "block_type_name",
    "block_type",
    "block_document_references",
    "is_anonymous",
];

async fn block_count(app: &TestApp) -> usize {
    let (s, out) = app.post("/block_documents/filter", json!({})).await;
    assert_eq!(s, StatusCode::OK, "{out}");
    out.as_array().expect("a list").len()
}

#[tokio::test]
async fn block_documents_create_by_slug_and_read_by_id_and_by_name() {
    let (app, _clock) = TestApp::at_t0();
    let (s, b) = app
        .post(
            "/block_documents/",
            json!({"name": "prod-creds", "block_type_slug": "aws-credentials",
                   "data": {"region_name": "eu-west-1", "aws_access_key_id": "AKIA"}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(keys(&b), sorted(BLOCK_FIELDS), "{b}");
    assert_eq!(b["created"], T0);
    assert_eq!(b["name"], "prod-creds");
    assert_eq!(b["is_anonymous"], false);
    assert_eq!(b["block_type"]["slug"], "aws-credentials");
    assert_eq!(b["data"]["region_name"], "eu-west-1");
    let id = b["id"].as_str().expect("id");
    assert_eq!(
        app.get(&format!("/block_documents/{id}?include_secrets=true"))
            .await,
        (StatusCode::OK, b.clone())
    );
    assert_eq!(
        app.get(
            "/block_types/slug/aws-credentials/block_documents/name/prod-creds?include_secrets=true"
        )
        .await,
        (StatusCode::OK, b.clone())
    );
    for path in [
        "/block_types/slug/aws-credentials/block_documents/name/nope".to_owned(),
        "/block_types/slug/other/block_documents/name/prod-creds".to_owned(),
        format!("/block_documents/{}", uuid::Uuid::new_v4()),
    ] {
        let (s, out) = app.get(&path).await;
        assert_eq!(
            assert_detail(s, &out, StatusCode::NOT_FOUND),
            "Block document not found"
        );
    }
    let (s, out) = app.get("/block_documents/nope").await;
    assert_invalid(s, &out, &json!(["path", "id"]));

    // An anonymous block needs no name.
    let (s, anon) = app
        .post(
            "/block_documents",
            json!({"block_type_slug": "secret", "data": {"value": "x"}, "is_anonymous": true}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{anon}");
    assert_eq!(anon["name"], Value::Null);
    assert_eq!(anon["is_anonymous"], true);
}

#[tokio::test]
async fn block_document_refusals_store_nothing() {
    let app = TestApp::new();
    let (s, _) = app
        .post(
            "/block_documents/",
            json!({"name": "b", "block_type_slug": "secret", "data": {"value": 1}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, out) = app
        .post(
            "/block_documents/",
            json!({"name": "b", "block_type_slug": "secret", "data": {"value": 2}}),
        )
        .await;
    assert_eq!(
        assert_detail(s, &out, StatusCode::CONFLICT),
        "Block already exists"
    );
    for (body, loc) in [
        (
            json!({"name": "x", "data": {}}),
            json!(["body", "block_type_slug"]),
        ),
        (
            json!({"block_type_slug": "secret", "data": {}}),
            json!(["body", "name"]),
        ),
        (
            json!({"name": "a/b", "block_type_slug": "secret", "data": {}}),
            json!(["body", "name"]),
        ),
        (
            json!({"name": "x", "block_type_slug": "secret", "bogus": 1}),
            json!(["body", "bogus"]),
        ),
        (
            json!({"name": "x", "block_type_slug": "secret", "block_type_id": "nope"}),
            json!(["body", "block_type_id"]),
        ),
    ] {
        let (s, out) = app.post("/block_documents/", body).await;
        assert_invalid(s, &out, &loc);
    }
    assert_eq!(block_count(&app).await, 1, "nothing else stored");
}

#[tokio::test]
async fn block_document_patch_merges_or_replaces_data_and_delete() {
    let (app, clock) = TestApp::at_t0();
    let (_, b) = app
        .post(
            "/block_documents/",
            json!({"name": "b", "block_type_slug": "json", "data": {"a": 1, "b": 2}}),
        )
        .await;
    let path = format!("/block_documents/{}", b["id"].as_str().expect("id"));
    clock.advance(chrono::Duration::seconds(1));
    let (s, out) = app.patch(&path, json!({"data": {"b": 3, "c": 4}})).await;
    assert_eq!((s, out), (StatusCode::NO_CONTENT, Value::Null));
    let (_, read) = app.get(&path).await;
    assert_eq!(
        read["data"],
        json!({"a": 1, "b": 3, "c": 4}),
        "merged by default"
    );
    assert_eq!(read["updated"], "2026-01-01T12:00:01.000000Z");
    let (s, _) = app
        .patch(
            &path,
            json!({"data": {"only": true}, "merge_existing_data": false}),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, read) = app.get(&path).await;
    assert_eq!(read["data"], json!({"only": true}));
    let (s, out) = app.patch(&path, json!({"name": "renamed"})).await;
    assert_invalid(s, &out, &json!(["body", "name"]));
    let (s, out) = app
        .patch(
            &format!("/block_documents/{}", uuid::Uuid::new_v4()),
            json!({"data": {}}),
        )
        .await;
    assert_detail(s, &out, StatusCode::NOT_FOUND);

    let (s, out) = app.delete(&path).await;
    assert_eq!((s, out), (StatusCode::NO_CONTENT, Value::Null));
    let (s, out) = app.delete(&path).await;
    assert_detail(s, &out, StatusCode::NOT_FOUND);
    let (s, out) = app.get(&path).await;
    assert_detail(s, &out, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn block_document_filter_by_type_slug() {
    let app = TestApp::new();
    for (name, slug) in [("a", "secret"), ("b", "json"), ("c", "secret")] {
        let (s, _) = app
            .post(
                "/block_documents/",
                json!({"name": name, "block_type_slug": slug, "data": {}}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED);
    }
    let names = |v: &Value| -> Vec<String> {
        let mut n: Vec<String> = v
            .as_array()
            .unwrap_or_else(|| panic!("a list: {v}"))
            .iter()
            .map(|x| x["name"].as_str().expect("name").to_owned())
            .collect();
        n.sort();
        n
    };
    // What the stock client's `read_block_documents` sends (`prefect block ls`).
    let stock = json!({"block_schema_type": null, "offset": null, "limit": null,
                       "include_secrets": true});
    for (body, want) in [
        (stock, vec!["a", "b", "c"]),
        (
            json!({"block_types": {"slug": {"any_": ["secret"]}}}),
            vec!["a", "c"],
        ),
        (
            json!({"block_types": {"slug": {"any_": ["json"]}}, "limit": 5}),
            vec!["b"],
        ),
        // Prefect's default order is by name.
        (json!({"limit": 1}), vec!["a"]),
        (
            json!({"block_types": {"slug": {"any_": ["secret", "json"]}}}),
            vec!["a", "b", "c"],
        ),
        (
            json!({"block_documents": {"name": {"any_": ["a", "b"]}}}),
            vec!["a", "b"],
        ),
    ] {
        let (s, out) = app.post("/block_documents/filter", body.clone()).await;
        assert_eq!(s, StatusCode::OK, "{body} -> {out}");
        assert_eq!(names(&out), want, "{body}");
    }
    for (body, loc) in [
        (json!({"limit": 201}), json!(["body", "limit"])),
        (
            json!({"block_documents": {"bogus": {"any_": ["a"]}}}),
            json!(["body", "block_documents", "bogus"]),
        ),
        (
            json!({"block_schemas": {"version": {"any_": ["x"]}}}),
            json!(["body", "block_schemas", "version"]),
        ),
        (json!({"sort": "SIDEWAYS"}), json!(["body", "sort"])),
        (
            json!({"block_types": {"name": {"like_": "S"}}}),
            json!(["body", "block_types", "name"]),
        ),
        (json!({"bogus": 1}), json!(["body", "bogus"])),
    ] {
        let (s, out) = app.post("/block_documents/filter", body.clone()).await;
        assert_invalid(s, &out, &loc);
    }
}

// ---- logs ---------------------------------------------------------------------------------------

#[tokio::test]
async fn logs_are_created_201_and_filtered_by_run_level_and_time() {
    let (app, _clock) = TestApp::at_t0();
    let (_, f) = app.post("/flows/", json!({"name": "f"})).await;
    let (_, run) = app.post("/flow_runs/", json!({"flow_id": f["id"]})).await;
    let run_id = run["id"].clone();
    let other = uuid::Uuid::new_v4();
    // What the client's log handler sends: `LogCreate.model_dump(mode="json")` items.
    let (s, out) = app
        .post(
            "/logs/",
            json!([
                {"name": "prefect.flow_runs", "level": 20, "message": "first",
                 "timestamp": "2026-01-01T12:00:01.000000Z", "flow_run_id": run_id,
                 "task_run_id": null, "worker_id": null},
                {"name": "prefect.flow_runs", "level": 40, "message": "second",
                 "timestamp": "2026-01-01 12:00:02.500000+00:00", "flow_run_id": run_id},
                {"name": "other", "level": 10, "message": "elsewhere",
                 "timestamp": "2026-01-01T12:00:03Z", "flow_run_id": other}
            ]),
        )
        .await;
    assert_eq!((s, out), (StatusCode::CREATED, Value::Null));
    let (s, out) = app.post("/logs", json!([])).await;
    assert_eq!(s, StatusCode::CREATED, "{out}");

    let (s, logs) = app
        .post(
            "/logs/filter",
            json!({"logs": {"flow_run_id": {"any_": [run_id]}}, "limit": null, "offset": 0}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{logs}");
    let list = logs.as_array().expect("a list");
    assert_eq!(list.len(), 2, "{logs}");
    for k in [
        "id",
        "created",
        "name",
        "level",
        "message",
        "timestamp",
        "flow_run_id",
        "task_run_id",
    ] {
        assert!(list[0].get(k).is_some(), "{k} missing in {}", list[0]);
    }
    assert_eq!(list[0]["message"], "first", "oldest first by default");
    assert_eq!(list[0]["timestamp"], "2026-01-01T12:00:01.000000Z");
    assert_eq!(list[0]["level"], 20);
    assert_eq!(list[0]["flow_run_id"], run_id);
    assert_eq!(list[1]["timestamp"], "2026-01-01T12:00:02.500000Z");

    let messages = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap_or_else(|| panic!("a list: {v}"))
            .iter()
            .map(|l| l["message"].as_str().expect("message").to_owned())
            .collect()
    };
    for (body, want) in [
        (json!({}), vec!["first", "second", "elsewhere"]),
        (
            json!({"sort": "TIMESTAMP_DESC"}),
            vec!["elsewhere", "second", "first"],
        ),
        (
            json!({"sort": "TIMESTAMP_ASC", "limit": 1, "offset": 1}),
            vec!["second"],
        ),
        (
            json!({"logs": {"level": {"ge_": 20}}}),
            vec!["first", "second"],
        ),
        (
            json!({"logs": {"level": {"le_": 20}}}),
            vec!["first", "elsewhere"],
        ),
        (
            json!({"logs": {"timestamp": {"after_": "2026-01-01 12:00:02+00:00"}}}),
            vec!["second", "elsewhere"],
        ),
        (
            json!({"logs": {"timestamp": {"before_": "2026-01-01T12:00:02Z"}}}),
            vec!["first"],
        ),
    ] {
        let (s, out) = app.post("/logs/filter", body.clone()).await;
        assert_eq!(s, StatusCode::OK, "{body} -> {out}");
        assert_eq!(messages(&out), want, "{body}");
    }
}

#[tokio::test]
async fn log_refusals_store_nothing() {
    let app = TestApp::new();
    for (body, loc) in [
        (json!({"name": "x"}), json!(["body"])),
        (
            json!([{"name": "x", "level": 20, "timestamp": "2026-01-01T00:00:00Z"}]),
            json!(["body", 0, "message"]),
        ),
        (
            json!([{"name": "x", "level": 20, "message": "m"}]),
            json!(["body", 0, "timestamp"]),
        ),
        (
            json!([{"name": "x", "level": 20, "message": "m", "timestamp": "2026-01-01T00:00:00Z"},
                   {"name": "y", "level": "INFO", "message": "m",
                    "timestamp": "2026-01-01T00:00:00Z"}]),
            json!(["body", 1, "level"]),
        ),
        (
            json!([{"name": "x", "level": 20, "message": "m", "timestamp": "noon"}]),
            json!(["body", 0, "timestamp"]),
        ),
        (
            json!([{"name": "x", "level": 20, "message": "m",
                    "timestamp": "2026-01-01T00:00:00Z", "flow_run_id": "nope"}]),
            json!(["body", 0, "flow_run_id"]),
        ),
    ] {
        let (s, out) = app.post("/logs/", body.clone()).await;
        assert_invalid(s, &out, &loc);
    }
    let (_, logs) = app.post("/logs/filter", json!({})).await;
    assert_eq!(logs, json!([]), "nothing stored");
    for (body, loc) in [
        (json!({"limit": 201}), json!(["body", "limit"])),
        (json!({"sort": "LEVEL_DESC"}), json!(["body", "sort"])),
        (
            json!({"logs": {"level": {"ge_": "INFO"}}}),
            json!(["body", "logs", "level", "ge_"]),
        ),
        (
            json!({"logs": {"flow_run_id": {"any_": ["x"]}}}),
            json!(["body", "logs", "flow_run_id", "any_"]),
        ),
        (
            json!({"logs": {"message": {"like_": "x"}}}),
            json!(["body", "logs", "message"]),
        ),
    ] {
        let (s, out) = app.post("/logs/filter", body.clone()).await;
        assert_invalid(s, &out, &loc);
    }
}
