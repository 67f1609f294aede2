//! `/work_pools/...` over HTTP: pools, their queues, workers and the worker poll, checked against
//! Prefect's wire contract (reference §1.2–1.5 and the endpoint conventions): status codes,
//! field names and types, PATCH semantics, filters and paging, error bodies, and that refused
//! input stores nothing.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use sluice_tests::{T0, TestApp, assert_detail, assert_invalid, keys, sorted};

const POOL_FIELDS: &[&str] = &[
    "active_slots",
    "id",
    "created",
    "updated",
    "name",
    "description",
    "type",
    "base_job_template",
    "is_paused",
    "concurrency_limit",
    "status",
    "default_queue_id",
    "storage_configuration",
];

const QUEUE_FIELDS: &[&str] = &[
    "active_slots",
    "id",
    "created",
    "updated",
    "name",
    "description",
    "is_paused",
    "concurrency_limit",
    "priority",
    "work_pool_id",
    "work_pool_name",
    "filter",
    "last_polled",
    "status",
];

const WORKER_FIELDS: &[&str] = &[
    "id",
    "created",
    "updated",
    "name",
    "work_pool_id",
    "last_heartbeat_time",
    "heartbeat_interval_seconds",
    "status",
];

async fn create_pool(app: &TestApp, body: Value) -> Value {
    let (s, pool) = app.post("/work_pools/", body).await;
    assert_eq!(s, StatusCode::CREATED, "{pool}");
    pool
}

async fn pool_count(app: &TestApp) -> Value {
    let (s, n) = app.post("/work_pools/count", json!({})).await;
    assert_eq!(s, StatusCode::OK, "{n}");
    n
}

async fn queue_names(app: &TestApp, pool: &str) -> Vec<(String, i64)> {
    let (s, qs) = app
        .post(&format!("/work_pools/{pool}/queues/filter"), json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{qs}");
    qs.as_array()
        .expect("a list")
        .iter()
        .map(|q| {
            (
                q["name"].as_str().expect("name").to_owned(),
                q["priority"].as_i64().expect("priority"),
            )
        })
        .collect()
}

fn is_uuid(v: &Value) -> bool {
    v.as_str().is_some_and(|s| s.parse::<uuid::Uuid>().is_ok())
}

// ---- pools ----------------------------------------------------------------------------------

#[tokio::test]
async fn creating_a_pool_answers_201_with_every_work_pool_field() {
    let (app, _clock) = TestApp::at_t0();
    let pool = create_pool(
        &app,
        json!({"name": "local", "type": "process", "description": "d", "concurrency_limit": 3}),
    )
    .await;
    assert_eq!(keys(&pool), sorted(POOL_FIELDS), "{pool}");
    assert!(is_uuid(&pool["id"]), "{pool}");
    assert_eq!(pool["created"], T0);
    assert_eq!(pool["updated"], T0);
    assert_eq!(pool["name"], "local");
    assert_eq!(pool["description"], "d");
    assert_eq!(pool["type"], "process");
    assert_eq!(pool["is_paused"], false);
    assert_eq!(pool["concurrency_limit"], 3);
    assert_eq!(pool["status"], "NOT_READY");
    assert!(is_uuid(&pool["default_queue_id"]), "{pool}");
    assert_eq!(
        pool["storage_configuration"],
        json!({"bundle_upload_step": null, "bundle_execution_step": null,
               "default_result_storage_block_id": null})
    );
    assert!(pool["base_job_template"]["job_configuration"].is_object());
    assert!(pool["base_job_template"]["variables"]["properties"].is_object());

    // The read answers the same object.
    let (s, read) = app.get("/work_pools/local").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(read, pool);

    // The default queue exists, is the pool's default_queue_id, and is described.
    let (s, q) = app.get("/work_pools/local/queues/default").await;
    assert_eq!(s, StatusCode::OK, "{q}");
    assert_eq!(keys(&q), sorted(QUEUE_FIELDS), "{q}");
    assert_eq!(q["id"], pool["default_queue_id"]);
    assert_eq!(q["description"], "The work pool's default queue.");
    assert_eq!(q["priority"], 1);
    assert_eq!(q["work_pool_id"], pool["id"]);
    assert_eq!(q["work_pool_name"], "local");
    assert_eq!(q["status"], "NOT_READY");
    assert_eq!(q["is_paused"], false);
    assert_eq!(q["last_polled"], Value::Null);
    assert_eq!(q["concurrency_limit"], Value::Null);
}

#[tokio::test]
async fn pool_defaults_paused_status_and_the_legacy_agent_type() {
    let app = TestApp::new();
    // No type: Prefect's legacy default, which has no status.
    let agent = create_pool(&app, json!({"name": "legacy"})).await;
    assert_eq!(agent["type"], "prefect-agent");
    assert_eq!(agent["status"], Value::Null);
    assert_eq!(agent["description"], Value::Null);
    assert_eq!(agent["concurrency_limit"], Value::Null);
    assert_eq!(agent["is_paused"], false);
    // Created paused: PAUSED.
    let paused = create_pool(
        &app,
        json!({"name": "held", "type": "process", "is_paused": true}),
    )
    .await;
    assert_eq!(paused["status"], "PAUSED");
    assert_eq!(paused["is_paused"], true);
    // The path without the trailing slash is the same route.
    let (s, bare) = app
        .post(
            "/work_pools",
            json!({"name": "no-slash", "type": "process"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{bare}");
    // `{}` means "no template": the type's default is filled in.
    let empty = create_pool(
        &app,
        json!({"name": "blank", "type": "process", "base_job_template": {}}),
    )
    .await;
    assert!(
        empty["base_job_template"]["variables"].is_object(),
        "{empty}"
    );
    // The body the stock CLI sends (`prefect work-pool create`, reference §10).
    let template = empty["base_job_template"].clone();
    let (s, cli) = app
        .post(
            "/work_pools/",
            json!({"name": "from-cli", "type": "process", "base_job_template": template,
                   "is_paused": false}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{cli}");
    assert_eq!(cli["base_job_template"], template);
}

#[tokio::test]
async fn reading_a_missing_pool_is_404_with_prefect_detail() {
    let app = TestApp::new();
    let (s, body) = app.get("/work_pools/nope").await;
    let detail = assert_detail(s, &body, StatusCode::NOT_FOUND);
    assert_eq!(detail, "Work pool \"nope\" not found.");
    // Names in paths are URL-encoded.
    create_pool(&app, json!({"name": "my pool", "type": "process"})).await;
    let (s, body) = app.get("/work_pools/my%20pool").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["name"], "my pool");
}

#[tokio::test]
async fn duplicate_pool_is_409_and_keeps_the_first() {
    let app = TestApp::new();
    let first = create_pool(&app, json!({"name": "dup", "type": "process"})).await;
    let (s, body) = app
        .post(
            "/work_pools/",
            json!({"name": "dup", "type": "ecs", "description": "second"}),
        )
        .await;
    let detail = assert_detail(s, &body, StatusCode::CONFLICT);
    assert!(detail.contains("dup"), "{detail}");
    let (_, read) = app.get("/work_pools/dup").await;
    assert_eq!(read["id"], first["id"]);
    assert_eq!(read["type"], "process");
    assert_eq!(pool_count(&app).await, json!(1));
}

#[tokio::test]
async fn reserved_prefect_pool_names_are_403_on_create_and_delete() {
    let app = TestApp::new();
    for name in ["prefect", "prefect-managed", "Prefect Push", "PREFECTX"] {
        let (s, body) = app
            .post("/work_pools/", json!({"name": name, "type": "process"}))
            .await;
        assert_detail(s, &body, StatusCode::FORBIDDEN);
        let (s, body) = app
            .delete(&format!("/work_pools/{}", name.replace(' ', "%20")))
            .await;
        assert_detail(s, &body, StatusCode::FORBIDDEN);
    }
    assert_eq!(pool_count(&app).await, json!(0), "nothing stored");
}

#[tokio::test]
async fn a_reserved_pool_may_only_change_its_pause_and_limit() {
    let app = TestApp::new();
    // Only Prefect itself makes such pools; put one in the store directly.
    let now = app.services.now();
    let pool_id = uuid::Uuid::new_v4();
    let queue = sluice_core::domain::WorkQueue {
        id: uuid::Uuid::new_v4(),
        created: now,
        updated: now,
        name: "default".to_owned(),
        description: String::new(),
        is_paused: false,
        concurrency_limit: None,
        priority: 1,
        work_pool_id: pool_id,
        last_polled: None,
        status: sluice_core::domain::QueueStatus::NotReady,
    };
    let pool = sluice_core::domain::WorkPool {
        id: pool_id,
        created: now,
        updated: now,
        name: "prefect-managed".to_owned(),
        description: None,
        pool_type: "prefect:managed".to_owned(),
        base_job_template: json!({}),
        is_paused: false,
        concurrency_limit: None,
        status: Some(sluice_core::domain::PoolStatus::NotReady),
        default_queue_id: Some(queue.id),
        storage_configuration: json!({}),
    };
    app.services
        .store
        .create_work_pool(&pool, &queue)
        .await
        .expect("stored");
    for body in [
        json!({"description": "mine"}),
        json!({"base_job_template": {}}),
        json!({"storage_configuration": {"bundle_upload_step": null}}),
    ] {
        let (s, out) = app.patch("/work_pools/prefect-managed", body).await;
        assert_detail(s, &out, StatusCode::FORBIDDEN);
    }
    let (s, out) = app
        .patch(
            "/work_pools/prefect-managed",
            json!({"is_paused": true, "concurrency_limit": 2}),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{out}");
    let (_, read) = app.get("/work_pools/prefect-managed").await;
    assert_eq!(read["is_paused"], true);
    assert_eq!(read["concurrency_limit"], 2);
    assert_eq!(read["description"], Value::Null);
    let (s, out) = app.delete("/work_pools/prefect-managed").await;
    assert_detail(s, &out, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn invalid_pool_bodies_are_422_at_the_bad_field_and_store_nothing() {
    let app = TestApp::new();
    let template_with_undeclared = json!({
        "job_configuration": {"command": "{{ nope }}"},
        "variables": {"properties": {"command": {"type": "string"}}}
    });
    let cases = [
        (json!({"type": "process"}), json!(["body", "name"])),
        (json!({"name": "a", "bogus": 1}), json!(["body", "bogus"])),
        (
            json!({"name": "a/b", "type": "process"}),
            json!(["body", "name"]),
        ),
        (json!({"name": "x%y"}), json!(["body", "name"])),
        (json!({"name": "  "}), json!(["body", "name"])),
        (json!({"name": "\"\""}), json!(["body", "name"])),
        (json!({"name": 7}), json!(["body", "name"])),
        (
            json!({"name": "a", "is_paused": "yes"}),
            json!(["body", "is_paused"]),
        ),
        (
            json!({"name": "a", "concurrency_limit": -1}),
            json!(["body", "concurrency_limit"]),
        ),
        (
            json!({"name": "a", "concurrency_limit": "many"}),
            json!(["body", "concurrency_limit"]),
        ),
        (
            json!({"name": "a", "type": "process", "base_job_template": template_with_undeclared}),
            json!(["body", "base_job_template"]),
        ),
        (
            json!({"name": "a", "type": "process", "base_job_template": {"job_configuration": {}}}),
            json!(["body", "base_job_template"]),
        ),
    ];
    for (body, loc) in cases {
        let (s, out) = app.post("/work_pools/", body.clone()).await;
        assert_invalid(s, &out, &loc);
    }
    let (s, out) = app
        .raw(Method::POST, "/work_pools/", b"{\"name\": ".to_vec())
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{out}");
    assert_eq!(out["exception_message"], "Invalid request received.");
    assert_eq!(pool_count(&app).await, json!(0), "nothing stored");
    let (_, all) = app.post("/work_pools/filter", json!({})).await;
    assert_eq!(all, json!([]));
}

#[tokio::test]
async fn pool_patch_leaves_absent_fields_and_clears_explicit_nulls() {
    let (app, clock) = TestApp::at_t0();
    let created = create_pool(
        &app,
        json!({"name": "p", "type": "process", "description": "keep me", "concurrency_limit": 5}),
    )
    .await;
    clock.advance(chrono::Duration::seconds(5));

    // Only what is sent changes; 204 with an empty body.
    let (s, out) = app.patch("/work_pools/p", json!({"is_paused": true})).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(out, Value::Null);
    let (_, read) = app.get("/work_pools/p").await;
    assert_eq!(read["is_paused"], true);
    assert_eq!(read["status"], "PAUSED");
    assert_eq!(read["description"], "keep me");
    assert_eq!(read["concurrency_limit"], 5);
    assert_eq!(read["base_job_template"], created["base_job_template"]);
    assert_eq!(read["created"], T0);
    assert_eq!(read["updated"], "2026-01-01T12:00:05.000000Z");

    // An empty body changes nothing.
    let (s, _) = app.patch("/work_pools/p", json!({})).await;
    assert_eq!(s, StatusCode::NO_CONTENT);

    // Explicit nulls clear nullable fields.
    let (s, _) = app
        .patch(
            "/work_pools/p",
            json!({"description": null, "concurrency_limit": null}),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, read) = app.get("/work_pools/p").await;
    assert_eq!(read["description"], Value::Null);
    assert_eq!(read["concurrency_limit"], Value::Null);
    assert_eq!(read["is_paused"], true);

    // Unpausing with nobody online: NOT_READY.
    let (s, _) = app
        .patch("/work_pools/p", json!({"is_paused": false}))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, read) = app.get("/work_pools/p").await;
    assert_eq!(read["status"], "NOT_READY");

    // A new template replaces the old one.
    let template = json!({
        "job_configuration": {"command": "{{ command }}"},
        "variables": {"type": "object", "properties": {"command": {"type": "string"}}}
    });
    let (s, out) = app
        .patch("/work_pools/p", json!({"base_job_template": template}))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{out}");
    let (_, read) = app.get("/work_pools/p").await;
    assert_eq!(read["base_job_template"], template);
    assert_eq!(read["description"], Value::Null);
}

#[tokio::test]
async fn pool_patch_refusals_change_nothing() {
    let app = TestApp::new();
    create_pool(
        &app,
        json!({"name": "p", "type": "process", "concurrency_limit": 1}),
    )
    .await;
    let (_, before) = app.get("/work_pools/p").await;
    let (s, out) = app.patch("/work_pools/p", json!({"name": "renamed"})).await;
    assert_invalid(s, &out, &json!(["body", "name"]));
    let (s, out) = app
        .patch("/work_pools/p", json!({"concurrency_limit": -3}))
        .await;
    assert_invalid(s, &out, &json!(["body", "concurrency_limit"]));
    let (s, out) = app
        .patch(
            "/work_pools/p",
            json!({"base_job_template": {"job_configuration": {"a": "{{ x }}"},
                                         "variables": {"properties": {"y": {}}}}}),
        )
        .await;
    assert_invalid(s, &out, &json!(["body", "base_job_template"]));
    let (s, out) = app.patch("/work_pools/p", json!({"is_paused": 1})).await;
    assert_invalid(s, &out, &json!(["body", "is_paused"]));
    let (_, after) = app.get("/work_pools/p").await;
    assert_eq!(after, before);
    let (s, out) = app.patch("/work_pools/nope", json!({})).await;
    assert_eq!(
        assert_detail(s, &out, StatusCode::NOT_FOUND),
        "Work pool \"nope\" not found."
    );
}

#[tokio::test]
async fn deleting_a_pool_is_204_then_404_and_takes_its_queues() {
    let app = TestApp::new();
    create_pool(&app, json!({"name": "gone", "type": "process"})).await;
    let (s, _) = app
        .post("/work_pools/gone/queues", json!({"name": "extra"}))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, out) = app.delete("/work_pools/gone").await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(out, Value::Null);
    let (s, out) = app.get("/work_pools/gone").await;
    assert_detail(s, &out, StatusCode::NOT_FOUND);
    let (s, out) = app.delete("/work_pools/gone").await;
    assert_detail(s, &out, StatusCode::NOT_FOUND);
    let (s, out) = app.get("/work_pools/gone/queues/extra").await;
    assert_detail(s, &out, StatusCode::NOT_FOUND);
    // The name is free again.
    create_pool(&app, json!({"name": "gone", "type": "process"})).await;
    assert_eq!(
        queue_names(&app, "gone").await,
        vec![("default".to_owned(), 1)]
    );
}

#[tokio::test]
async fn pool_filter_and_count_apply_every_criterion_and_paging() {
    let app = TestApp::new();
    let a = create_pool(&app, json!({"name": "a", "type": "process"})).await;
    let b = create_pool(&app, json!({"name": "b", "type": "ecs"})).await;
    create_pool(&app, json!({"name": "c", "type": "process"})).await;
    let names = |v: &Value| -> Vec<String> {
        v.as_array()
            .expect("a list")
            .iter()
            .map(|p| p["name"].as_str().expect("name").to_owned())
            .collect()
    };
    // What `prefect work-pool ls` sends.
    let (s, all) = app
        .post(
            "/work_pools/filter",
            json!({"limit": null, "offset": 0, "work_pools": null}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{all}");
    assert_eq!(names(&all), ["a", "b", "c"]);
    for p in all.as_array().expect("a list") {
        assert_eq!(keys(p), sorted(POOL_FIELDS));
    }
    // An empty body is allowed too.
    let (s, all) = app.call(Method::POST, "/work_pools/filter", None).await;
    assert_eq!(s, StatusCode::OK, "{all}");
    assert_eq!(names(&all).len(), 3);

    let cases = [
        (
            json!({"work_pools": {"name": {"any_": ["a", "c", "zz"]}}}),
            vec!["a", "c"],
        ),
        (
            json!({"work_pools": {"type": {"any_": ["ecs"]}}}),
            vec!["b"],
        ),
        (
            json!({"work_pools": {"id": {"any_": [a["id"], b["id"]]}}}),
            vec!["a", "b"],
        ),
        (
            json!({"work_pools": {"operator": "and_", "name": {"any_": ["a", "b"]},
                                  "type": {"any_": ["process"]}, "id": null}}),
            vec!["a"],
        ),
        (json!({"work_pools": {"name": {"any_": []}}}), vec![]),
        (json!({"limit": 2}), vec!["a", "b"]),
        (json!({"limit": 2, "offset": 2}), vec!["c"]),
        (json!({"offset": 5}), vec![]),
        (json!({"limit": 0}), vec![]),
        (json!({"limit": 200}), vec!["a", "b", "c"]),
    ];
    for (body, want) in cases {
        let (s, out) = app.post("/work_pools/filter", body.clone()).await;
        assert_eq!(s, StatusCode::OK, "{body} -> {out}");
        assert_eq!(names(&out), want, "{body}");
    }
    let (s, n) = app
        .post(
            "/work_pools/count",
            json!({"work_pools": {"type": {"any_": ["process"]}}}),
        )
        .await;
    assert_eq!((s, n), (StatusCode::OK, json!(2)));
    assert_eq!(pool_count(&app).await, json!(3));

    // Paging outside 0..200 and criteria Sluice does not know are refused, naming them.
    for (body, loc) in [
        (json!({"limit": 201}), json!(["body", "limit"])),
        (json!({"limit": -1}), json!(["body", "limit"])),
        (json!({"limit": "ten"}), json!(["body", "limit"])),
        (json!({"offset": -1}), json!(["body", "offset"])),
        (
            json!({"work_pools": {"status": {"any_": ["READY"]}}}),
            json!(["body", "work_pools", "status"]),
        ),
        (
            json!({"work_pools": {"name": {"like_": "a"}}}),
            json!(["body", "work_pools", "name", "like_"]),
        ),
        (json!({"sort": "NAME_ASC"}), json!(["body", "sort"])),
        (
            json!({"work_pools": {"id": {"any_": ["not-a-uuid"]}}}),
            json!(["body", "work_pools", "id", "any_"]),
        ),
    ] {
        let (s, out) = app.post("/work_pools/filter", body.clone()).await;
        assert_invalid(s, &out, &loc);
        // The message names the refused key.
        let msg = out["exception_detail"][0]["msg"].as_str().expect("msg");
        let last = loc
            .as_array()
            .and_then(|l| l.last())
            .and_then(Value::as_str);
        assert!(last.is_some_and(|k| msg.contains(k)), "{msg}");
    }
    let (s, out) = app.post("/work_pools/count", json!({"limit": 1})).await;
    assert_invalid(s, &out, &json!(["body", "limit"]));
}

// ---- queues ---------------------------------------------------------------------------------

#[tokio::test]
async fn queue_create_read_and_priority_placement() {
    let (app, _clock) = TestApp::at_t0();
    let pool = create_pool(&app, json!({"name": "p", "type": "process"})).await;
    // No priority: the first gap (2).
    let (s, q) = app
        .post(
            "/work_pools/p/queues",
            json!({"name": "low", "description": "slow lane", "concurrency_limit": 4}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{q}");
    assert_eq!(keys(&q), sorted(QUEUE_FIELDS), "{q}");
    assert!(is_uuid(&q["id"]));
    assert_eq!(q["created"], T0);
    assert_eq!(q["name"], "low");
    assert_eq!(q["description"], "slow lane");
    assert_eq!(q["concurrency_limit"], 4);
    assert_eq!(q["priority"], 2);
    assert_eq!(q["work_pool_id"], pool["id"]);
    assert_eq!(q["work_pool_name"], "p");
    assert_eq!(q["status"], "NOT_READY");
    assert_eq!(q["is_paused"], false);
    assert_eq!(q["filter"], Value::Null);
    let (s, read) = app.get("/work_pools/p/queues/low").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(read, q);
    // By id, on Prefect's legacy path (the engine reads it for its events' related resources).
    let (s, by_id) = app
        .get(&format!("/work_queues/{}", q["id"].as_str().expect("id")))
        .await;
    assert_eq!((s, by_id), (StatusCode::OK, q.clone()));
    let (s, _) = app
        .get(&format!("/work_queues/{}", uuid::Uuid::new_v4()))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // The trailing-slash path works too; an explicit priority takes the rank and shifts others.
    let (s, top) = app
        .post(
            "/work_pools/p/queues/",
            json!({"name": "top", "priority": 1}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{top}");
    assert_eq!(top["priority"], 1);
    assert_eq!(top["description"], "");
    assert_eq!(
        queue_names(&app, "p").await,
        vec![
            ("top".to_owned(), 1),
            ("default".to_owned(), 2),
            ("low".to_owned(), 3)
        ]
    );

    // The body the stock client's `create_work_queue` sends: every field, `filter` null.
    let (s, stock) = app
        .post(
            "/work_pools/p/queues",
            json!({"name": "stock", "description": "", "is_paused": false,
                   "concurrency_limit": null, "priority": null, "filter": null}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{stock}");
    assert_eq!(stock["priority"], 4);
    assert_eq!(stock["filter"], Value::Null);

    // A paused queue starts PAUSED.
    let (_, held) = app
        .post(
            "/work_pools/p/queues",
            json!({"name": "held", "is_paused": true}),
        )
        .await;
    assert_eq!(held["status"], "PAUSED");
    assert_eq!(held["priority"], 5);
}

#[tokio::test]
async fn queue_errors_duplicate_missing_and_invalid_store_nothing() {
    let app = TestApp::new();
    create_pool(&app, json!({"name": "p", "type": "process"})).await;
    let (s, _) = app.post("/work_pools/p/queues", json!({"name": "q"})).await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, out) = app.post("/work_pools/p/queues", json!({"name": "q"})).await;
    assert_detail(s, &out, StatusCode::CONFLICT);
    let (s, out) = app
        .post("/work_pools/nope/queues", json!({"name": "q"}))
        .await;
    assert_eq!(
        assert_detail(s, &out, StatusCode::NOT_FOUND),
        "Work pool \"nope\" not found."
    );
    let (s, out) = app.get("/work_pools/p/queues/missing").await;
    assert_eq!(
        assert_detail(s, &out, StatusCode::NOT_FOUND),
        "Work pool queue 'p/missing' not found."
    );
    for (body, loc) in [
        (json!({"name": "a/b"}), json!(["body", "name"])),
        (json!({"name": ""}), json!(["body", "name"])),
        (json!({}), json!(["body", "name"])),
        (
            json!({"name": "x", "priority": 0}),
            json!(["body", "priority"]),
        ),
        (
            json!({"name": "x", "priority": -2}),
            json!(["body", "priority"]),
        ),
        (
            json!({"name": "x", "concurrency_limit": -1}),
            json!(["body", "concurrency_limit"]),
        ),
        (
            json!({"name": "x", "filter": {"tags": ["a"]}}),
            json!(["body", "filter"]),
        ),
    ] {
        let (s, out) = app.post("/work_pools/p/queues", body.clone()).await;
        assert_invalid(s, &out, &loc);
    }
    assert_eq!(
        queue_names(&app, "p").await,
        vec![("default".to_owned(), 1), ("q".to_owned(), 2)],
        "nothing stored"
    );
}

#[tokio::test]
async fn queue_filter_by_name_prefix_and_id_in_priority_order() {
    let app = TestApp::new();
    create_pool(&app, json!({"name": "p", "type": "process"})).await;
    let mut ids = Vec::new();
    for name in ["etl-a", "etl-b", "ml"] {
        let (_, q) = app
            .post("/work_pools/p/queues", json!({"name": name}))
            .await;
        ids.push(q["id"].clone());
    }
    let names = |v: &Value| -> Vec<String> {
        v.as_array()
            .expect("a list")
            .iter()
            .map(|q| q["name"].as_str().expect("name").to_owned())
            .collect()
    };
    for (body, want) in [
        (json!({}), vec!["default", "etl-a", "etl-b", "ml"]),
        (
            json!({"work_queues": null}),
            vec!["default", "etl-a", "etl-b", "ml"],
        ),
        (
            json!({"work_queues": {"name": {"any_": ["ml", "default"]}}}),
            vec!["default", "ml"],
        ),
        (
            json!({"work_queues": {"name": {"startswith_": ["etl"]}}}),
            vec!["etl-a", "etl-b"],
        ),
        (
            json!({"work_queues": {"id": {"any_": [ids[2]]}}}),
            vec!["ml"],
        ),
        (json!({"limit": 2, "offset": 1}), vec!["etl-a", "etl-b"]),
    ] {
        let (s, out) = app.post("/work_pools/p/queues/filter", body.clone()).await;
        assert_eq!(s, StatusCode::OK, "{body} -> {out}");
        assert_eq!(names(&out), want, "{body}");
    }
    for (body, loc) in [
        (json!({"limit": 201}), json!(["body", "limit"])),
        (
            json!({"work_queues": {"priority": {"any_": [1]}}}),
            json!(["body", "work_queues", "priority"]),
        ),
        (json!({"work_pools": {}}), json!(["body", "work_pools"])),
    ] {
        let (s, out) = app.post("/work_pools/p/queues/filter", body.clone()).await;
        assert_invalid(s, &out, &loc);
    }
    let (s, out) = app.post("/work_pools/nope/queues/filter", json!({})).await;
    assert_detail(s, &out, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn queue_patch_renames_pauses_clears_and_reprioritises() {
    let (app, clock) = TestApp::at_t0();
    create_pool(&app, json!({"name": "p", "type": "process"})).await;
    app.post(
        "/work_pools/p/queues",
        json!({"name": "q", "description": "d", "concurrency_limit": 2}),
    )
    .await;
    clock.advance(chrono::Duration::seconds(1));

    // Absent fields stay; 204 with no body.
    let (s, out) = app
        .patch("/work_pools/p/queues/q", json!({"is_paused": true}))
        .await;
    assert_eq!((s, out), (StatusCode::NO_CONTENT, Value::Null));
    let (_, q) = app.get("/work_pools/p/queues/q").await;
    assert_eq!(q["is_paused"], true);
    assert_eq!(q["status"], "PAUSED");
    assert_eq!(q["description"], "d");
    assert_eq!(q["concurrency_limit"], 2);
    assert_eq!(q["updated"], "2026-01-01T12:00:01.000000Z");

    // Unpausing a never-polled queue: NOT_READY. Nulls clear.
    let (s, _) = app
        .patch(
            "/work_pools/p/queues/q",
            json!({"is_paused": false, "concurrency_limit": null, "description": null}),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, q) = app.get("/work_pools/p/queues/q").await;
    assert_eq!(q["status"], "NOT_READY");
    assert_eq!(q["concurrency_limit"], Value::Null);
    assert_eq!(q["description"], "");

    // Rename, then the old name is gone.
    let (s, _) = app
        .patch("/work_pools/p/queues/q", json!({"name": "q2"}))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, out) = app.get("/work_pools/p/queues/q").await;
    assert_detail(s, &out, StatusCode::NOT_FOUND);
    let (s, _) = app.get("/work_pools/p/queues/q2").await;
    assert_eq!(s, StatusCode::OK);

    // Moving to priority 1 shifts the default queue down.
    let (s, _) = app
        .patch("/work_pools/p/queues/q2", json!({"priority": 1}))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(
        queue_names(&app, "p").await,
        vec![("q2".to_owned(), 1), ("default".to_owned(), 2)]
    );

    // Refusals change nothing.
    let (_, before) = app.get("/work_pools/p/queues/q2").await;
    for (body, loc) in [
        (json!({"priority": 0}), json!(["body", "priority"])),
        (
            json!({"concurrency_limit": -1}),
            json!(["body", "concurrency_limit"]),
        ),
        (json!({"name": "a/b"}), json!(["body", "name"])),
        (json!({"bogus": true}), json!(["body", "bogus"])),
        (
            json!({"filter": {"tags": ["x"]}}),
            json!(["body", "filter"]),
        ),
    ] {
        let (s, out) = app.patch("/work_pools/p/queues/q2", body.clone()).await;
        assert_invalid(s, &out, &loc);
    }
    let (_, after) = app.get("/work_pools/p/queues/q2").await;
    assert_eq!(after, before);
    let (s, out) = app
        .patch("/work_pools/p/queues/missing", json!({"is_paused": true}))
        .await;
    assert_detail(s, &out, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn queue_delete_is_204_but_the_default_queue_stays() {
    let app = TestApp::new();
    create_pool(&app, json!({"name": "p", "type": "process"})).await;
    app.post("/work_pools/p/queues", json!({"name": "a"})).await;
    app.post("/work_pools/p/queues", json!({"name": "b"})).await;
    let (s, out) = app.delete("/work_pools/p/queues/a").await;
    assert_eq!((s, out), (StatusCode::NO_CONTENT, Value::Null));
    let (s, out) = app.delete("/work_pools/p/queues/a").await;
    assert_detail(s, &out, StatusCode::NOT_FOUND);
    let (s, out) = app.delete("/work_pools/p/queues/default").await;
    assert_detail(s, &out, StatusCode::BAD_REQUEST);
    let names: Vec<String> = queue_names(&app, "p")
        .await
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, ["default", "b"]);
}

// ---- workers --------------------------------------------------------------------------------

#[tokio::test]
async fn heartbeat_is_204_and_the_worker_is_listed_online() {
    let (app, _clock) = TestApp::at_t0();
    let pool = create_pool(&app, json!({"name": "p", "type": "process"})).await;
    assert_eq!(pool["status"], "NOT_READY");
    let (s, out) = app
        .post(
            "/work_pools/p/workers/heartbeat",
            json!({"name": "ProcessWorker 1a2b", "heartbeat_interval_seconds": 30}),
        )
        .await;
    assert_eq!((s, out), (StatusCode::NO_CONTENT, Value::Null));
    // A heartbeat makes a NOT_READY pool READY.
    let (_, read) = app.get("/work_pools/p").await;
    assert_eq!(read["status"], "READY");

    // What `prefect deploy` sends for its "start a worker" hint (reference §10).
    let (s, workers) = app
        .post(
            "/work_pools/p/workers/filter",
            json!({"workers": {"status": {"any_": ["ONLINE"]}}, "offset": null, "limit": null}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{workers}");
    let list = workers.as_array().expect("a list");
    assert_eq!(list.len(), 1, "{workers}");
    let w = &list[0];
    assert_eq!(keys(w), sorted(WORKER_FIELDS), "{w}");
    assert!(is_uuid(&w["id"]));
    assert_eq!(w["name"], "ProcessWorker 1a2b");
    assert_eq!(w["work_pool_id"], pool["id"]);
    assert_eq!(w["status"], "ONLINE");
    assert_eq!(w["last_heartbeat_time"], T0);
    assert_eq!(w["heartbeat_interval_seconds"], 30);
    let (_, offline) = app
        .post(
            "/work_pools/p/workers/filter",
            json!({"workers": {"status": {"any_": ["OFFLINE"]}}}),
        )
        .await;
    assert_eq!(offline, json!([]));
    let (_, not_online) = app
        .post(
            "/work_pools/p/workers/filter",
            json!({"workers": {"status": {"not_any_": ["ONLINE"]}}}),
        )
        .await;
    assert_eq!(not_online, json!([]));
}

#[tokio::test]
async fn heartbeats_upsert_by_name_and_list_newest_first() {
    let (app, clock) = TestApp::at_t0();
    create_pool(&app, json!({"name": "p", "type": "process"})).await;
    // The stock worker may send its interval as a float (PREFECT_WORKER_HEARTBEAT_SECONDS is a
    // float setting); Prefect's `Optional[int]` body accepts an integral float.
    for (name, interval) in [("w1", json!(30.0)), ("w2", json!(null))] {
        let (s, out) = app
            .post(
                "/work_pools/p/workers/heartbeat",
                json!({"name": name, "heartbeat_interval_seconds": interval}),
            )
            .await;
        assert_eq!(s, StatusCode::NO_CONTENT, "{out}");
        clock.advance(chrono::Duration::seconds(10));
    }
    // Only `name` is required.
    let (s, _) = app
        .post("/work_pools/p/workers/heartbeat", json!({"name": "w1"}))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, workers) = app.post("/work_pools/p/workers/filter", json!({})).await;
    let got: Vec<(String, Value)> = workers
        .as_array()
        .expect("a list")
        .iter()
        .map(|w| {
            (
                w["name"].as_str().expect("name").to_owned(),
                w["last_heartbeat_time"].clone(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("w1".to_owned(), json!("2026-01-01T12:00:20.000000Z")),
            ("w2".to_owned(), json!("2026-01-01T12:00:10.000000Z")),
        ],
        "one row per name, newest heartbeat first"
    );
    let w1 = &workers[0];
    assert_eq!(w1["heartbeat_interval_seconds"], 30);
    assert_eq!(w1["created"], T0);

    let (_, after) = app
        .post(
            "/work_pools/p/workers/filter",
            json!({"workers": {"last_heartbeat_time": {"after_": "2026-01-01 12:00:15+00:00"}}}),
        )
        .await;
    assert_eq!(after.as_array().map(Vec::len), Some(1), "{after}");
    assert_eq!(after[0]["name"], "w1");
    let (_, before) = app
        .post(
            "/work_pools/p/workers/filter",
            json!({"workers": {"last_heartbeat_time": {"before_": "2026-01-01T12:00:15Z"}}}),
        )
        .await;
    assert_eq!(before.as_array().map(Vec::len), Some(1), "{before}");
    assert_eq!(before[0]["name"], "w2");
    let (_, paged) = app
        .post(
            "/work_pools/p/workers/filter",
            json!({"limit": 1, "offset": 1}),
        )
        .await;
    assert_eq!(paged[0]["name"], "w2");
}

#[tokio::test]
async fn worker_errors_and_delete() {
    let app = TestApp::new();
    create_pool(&app, json!({"name": "p", "type": "process"})).await;
    let (s, out) = app
        .post("/work_pools/nope/workers/heartbeat", json!({"name": "w"}))
        .await;
    assert_eq!(
        assert_detail(s, &out, StatusCode::NOT_FOUND),
        "Work pool \"nope\" not found."
    );
    let (s, out) = app.post("/work_pools/p/workers/heartbeat", json!({})).await;
    assert_invalid(s, &out, &json!(["body", "name"]));
    let (s, out) = app
        .post(
            "/work_pools/p/workers/heartbeat",
            json!({"name": "w", "heartbeat_interval_seconds": "often"}),
        )
        .await;
    assert_invalid(s, &out, &json!(["body", "heartbeat_interval_seconds"]));
    let (s, out) = app
        .post(
            "/work_pools/p/workers/heartbeat",
            json!({"name": "w", "heartbeat_interval_seconds": 1.5}),
        )
        .await;
    assert_invalid(s, &out, &json!(["body", "heartbeat_interval_seconds"]));
    let (_, none) = app.post("/work_pools/p/workers/filter", json!({})).await;
    assert_eq!(none, json!([]), "refused heartbeats store nothing");

    for (body, loc) in [
        (
            json!({"workers": {"status": {"any_": ["BUSY"]}}}),
            json!(["body", "workers", "status"]),
        ),
        (
            json!({"workers": {"name": {"any_": ["w"]}}}),
            json!(["body", "workers", "name"]),
        ),
        (
            json!({"workers": {"last_heartbeat_time": {"after_": "yesterday"}}}),
            json!(["body", "workers", "last_heartbeat_time", "after_"]),
        ),
        (json!({"limit": 201}), json!(["body", "limit"])),
    ] {
        let (s, out) = app.post("/work_pools/p/workers/filter", body.clone()).await;
        assert_invalid(s, &out, &loc);
    }
    let (s, out) = app.post("/work_pools/nope/workers/filter", json!({})).await;
    assert_detail(s, &out, StatusCode::NOT_FOUND);

    app.post("/work_pools/p/workers/heartbeat", json!({"name": "w"}))
        .await;
    let (s, out) = app.delete("/work_pools/p/workers/w").await;
    assert_eq!((s, out), (StatusCode::NO_CONTENT, Value::Null));
    let (s, out) = app.delete("/work_pools/p/workers/w").await;
    assert_detail(s, &out, StatusCode::NOT_FOUND);
    let (_, none) = app.post("/work_pools/p/workers/filter", json!({})).await;
    assert_eq!(none, json!([]));
}

// ---- the worker poll ------------------------------------------------------------------------

/// A pool `p` with queues `high` (priority 1) and `default` (2), a deployment on it, and runs
/// scheduled at the given offsets from t0 on the given queues. Answers the run ids in order.
async fn pool_with_runs(app: &TestApp, runs: &[(&str, i64)]) -> (Value, Vec<String>) {
    create_pool(app, json!({"name": "p", "type": "process"})).await;
    let (s, _) = app
        .post(
            "/work_pools/p/queues",
            json!({"name": "high", "priority": 1}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (_, flow) = app.post("/flows/", json!({"name": "f"})).await;
    let (s, dep) = app
        .post(
            "/deployments/",
            json!({"flow_id": flow["id"], "name": "d", "work_pool_name": "p"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{dep}");
    let mut ids = Vec::new();
    for (queue, offset) in runs {
        let at = sluice_tests::t0() + chrono::Duration::seconds(*offset);
        let (s, run) = app
            .post(
                &format!(
                    "/deployments/{}/create_flow_run",
                    dep["id"].as_str().expect("id")
                ),
                json!({"work_queue_name": queue,
                       "state": {"type": "SCHEDULED", "name": "Scheduled",
                                 "state_details": {"scheduled_time": at.to_rfc3339()}}}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{run}");
        ids.push(run["id"].as_str().expect("id").to_owned());
    }
    (dep, ids)
}

fn run_ids(items: &Value) -> Vec<String> {
    items
        .as_array()
        .expect("a list")
        .iter()
        .map(|i| i["flow_run"]["id"].as_str().expect("id").to_owned())
        .collect()
}

#[tokio::test]
async fn the_poll_accepts_python_timestamps_and_orders_by_priority_then_time() {
    let (app, _clock) = TestApp::at_t0();
    let (dep, ids) = pool_with_runs(
        &app,
        &[
            ("default", 5),
            ("high", 10),
            ("default", 3600),
            ("high", 7200),
        ],
    )
    .await;
    // The stock client sends `str(datetime)`: space-separated with microseconds.
    let (s, items) = app
        .post(
            "/work_pools/p/get_scheduled_flow_runs",
            json!({"scheduled_before": "2026-01-01 12:00:10.123456+00:00"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{items}");
    assert_eq!(run_ids(&items), vec![ids[1].clone(), ids[0].clone()]);
    let (_, pool) = app.get("/work_pools/p").await;
    let (_, high) = app.get("/work_pools/p/queues/high").await;
    let item = &items[0];
    assert_eq!(
        keys(item),
        sorted(&["work_pool_id", "work_queue_id", "flow_run"])
    );
    assert_eq!(item["work_pool_id"], pool["id"]);
    assert_eq!(item["work_queue_id"], high["id"]);
    let run = &item["flow_run"];
    assert_eq!(
        run["state"],
        Value::Null,
        "Prefect does not load the state here"
    );
    assert_eq!(run["state_type"], "SCHEDULED");
    assert_eq!(run["state_name"], "Scheduled");
    assert_eq!(run["deployment_id"], dep["id"]);
    assert_eq!(run["work_queue_name"], "high");
    assert_eq!(run["work_pool_name"], "p");
    assert_eq!(
        run["next_scheduled_start_time"],
        "2026-01-01T12:00:10.000000Z"
    );

    // No bounds: every queue, all runs, priority then time. The poll changes no state.
    let (_, all) = app
        .post("/work_pools/p/get_scheduled_flow_runs", json!({}))
        .await;
    assert_eq!(
        run_ids(&all),
        vec![
            ids[1].clone(),
            ids[3].clone(),
            ids[0].clone(),
            ids[2].clone()
        ]
    );
    for id in &ids {
        let (_, run) = app.get(&format!("/flow_runs/{id}")).await;
        assert_eq!(run["state_type"], "SCHEDULED");
    }
    // scheduled_after (inclusive), work_queue_names, limit.
    let (_, later) = app
        .post(
            "/work_pools/p/get_scheduled_flow_runs",
            json!({"scheduled_after": "2026-01-01T13:00:00Z", "work_queue_names": ["default"]}),
        )
        .await;
    assert_eq!(run_ids(&later), vec![ids[2].clone()]);
    let (_, one) = app
        .post("/work_pools/p/get_scheduled_flow_runs", json!({"limit": 1}))
        .await;
    assert_eq!(run_ids(&one), vec![ids[1].clone()]);
    let (_, empty_names) = app
        .post(
            "/work_pools/p/get_scheduled_flow_runs",
            json!({"work_queue_names": [], "limit": 0}),
        )
        .await;
    assert_eq!(empty_names, json!([]));
}

#[tokio::test]
async fn the_poll_marks_queues_and_deployments_ready() {
    let (app, clock) = TestApp::at_t0();
    let (dep, _) = pool_with_runs(&app, &[("default", 5)]).await;
    assert_eq!(dep["status"], "NOT_READY");
    clock.advance(chrono::Duration::seconds(2));
    let (s, _) = app
        .post(
            "/work_pools/p/get_scheduled_flow_runs",
            json!({"work_queue_names": ["default"]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (_, q) = app.get("/work_pools/p/queues/default").await;
    assert_eq!(q["status"], "READY");
    assert_eq!(q["last_polled"], "2026-01-01T12:00:02.000000Z");
    let (_, high) = app.get("/work_pools/p/queues/high").await;
    assert_eq!(high["status"], "NOT_READY", "not polled");
    let (_, d) = app
        .get(&format!("/deployments/{}", dep["id"].as_str().expect("id")))
        .await;
    assert_eq!(d["status"], "READY");
    assert_eq!(d["last_polled"], "2026-01-01T12:00:02.000000Z");
}

#[tokio::test]
async fn the_poll_respects_pause_and_limits() {
    let (app, _clock) = TestApp::at_t0();
    let (_, ids) = pool_with_runs(&app, &[("default", 5), ("high", 6)]).await;
    let poll = || app.post("/work_pools/p/get_scheduled_flow_runs", json!({}));
    app.patch("/work_pools/p/queues/high", json!({"is_paused": true}))
        .await;
    assert_eq!(run_ids(&poll().await.1), vec![ids[0].clone()]);
    app.patch("/work_pools/p/queues/high", json!({"is_paused": false}))
        .await;
    app.patch("/work_pools/p", json!({"is_paused": true})).await;
    assert_eq!(poll().await.1, json!([]), "a paused pool hands out nothing");
    app.patch(
        "/work_pools/p",
        json!({"is_paused": false, "concurrency_limit": 0}),
    )
    .await;
    assert_eq!(poll().await.1, json!([]), "a full pool hands out nothing");
    app.patch("/work_pools/p", json!({"concurrency_limit": null}))
        .await;
    app.patch("/work_pools/p/queues/high", json!({"concurrency_limit": 0}))
        .await;
    assert_eq!(run_ids(&poll().await.1), vec![ids[0].clone()]);
}

#[tokio::test]
async fn the_poll_refuses_bad_bodies_and_unknown_queues() {
    let app = TestApp::new();
    create_pool(&app, json!({"name": "p", "type": "process"})).await;
    for (body, loc) in [
        (json!({"limit": 201}), json!(["body", "limit"])),
        (json!({"limit": -1}), json!(["body", "limit"])),
        (
            json!({"scheduled_before": "next tuesday"}),
            json!(["body", "scheduled_before"]),
        ),
        (
            json!({"scheduled_after": 12}),
            json!(["body", "scheduled_after"]),
        ),
        (
            json!({"work_queue_names": "default"}),
            json!(["body", "work_queue_names"]),
        ),
        (json!({"bogus": 1}), json!(["body", "bogus"])),
    ] {
        let (s, out) = app
            .post("/work_pools/p/get_scheduled_flow_runs", body.clone())
            .await;
        assert_invalid(s, &out, &loc);
    }
    let (s, out) = app
        .post(
            "/work_pools/p/get_scheduled_flow_runs",
            json!({"work_queue_names": ["default", "ghost"]}),
        )
        .await;
    assert_eq!(
        assert_detail(s, &out, StatusCode::NOT_FOUND),
        "Work pool queue 'p/ghost' not found."
    );
    // Queues are not created by the poll (reference §1.3, Appendix B).
    assert_eq!(
        queue_names(&app, "p").await,
        vec![("default".to_owned(), 1)]
    );
    let (s, out) = app
        .post("/work_pools/nope/get_scheduled_flow_runs", json!({}))
        .await;
    assert_detail(s, &out, StatusCode::NOT_FOUND);
}
