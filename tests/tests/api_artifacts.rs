//! Artifacts through the router: what `create_markdown_artifact` and `create_table_artifact`
//! send, versions of a key and its latest, filters, counts, updates and refusals.

use axum::http::StatusCode;
use serde_json::{Value, json};
use sluice_tests::{TestApp, assert_detail};

const RUN: &str = "01939c6e-0000-7000-8000-000000000001";

async fn create(app: &TestApp, body: Value) -> Value {
    let (s, v) = app.post("/artifacts/", body).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v
}

#[tokio::test]
async fn artifacts_are_created_versioned_by_key_filtered_updated_and_deleted() {
    let (app, clock) = TestApp::at_t0();
    // The stock client's bodies: every field present, nulls included; a table's data is a JSON
    // string.
    let first = create(
        &app,
        json!({"key": "report", "type": "markdown", "description": "d", "data": "## v1",
               "flow_run_id": RUN, "task_run_id": null}),
    )
    .await;
    for key in [
        "id",
        "created",
        "updated",
        "key",
        "type",
        "description",
        "data",
        "metadata_",
        "flow_run_id",
        "task_run_id",
    ] {
        assert!(first.get(key).is_some(), "{key} missing from {first}");
    }
    clock.advance(chrono::Duration::seconds(1));
    let second = create(
        &app,
        json!({"key": "report", "type": "markdown", "description": null, "data": "## v2",
               "flow_run_id": RUN, "task_run_id": null}),
    )
    .await;
    clock.advance(chrono::Duration::seconds(1));
    let table = create(
        &app,
        json!({"key": null, "type": "table", "description": null,
               "data": "[{\"name\": \"John\", \"age\": 30}]", "flow_run_id": null, "task_run_id": null}),
    )
    .await;

    let (s, latest) = app.get("/artifacts/report/latest").await;
    assert_eq!(s, StatusCode::OK, "{latest}");
    assert_eq!(latest["latest_id"], second["id"]);
    assert_eq!(latest["data"], "## v2");
    assert_eq!(
        latest["created"], first["created"],
        "when the key was first used"
    );
    let (s, v) = app.get("/artifacts/nope/latest").await;
    assert_eq!(
        assert_detail(s, &v, StatusCode::NOT_FOUND),
        "Artifact not found."
    );

    let ids = |v: &Value| -> Vec<Value> {
        v.as_array()
            .expect("list")
            .iter()
            .map(|a| a["id"].clone())
            .collect()
    };
    let (_, all) = app
        .post("/artifacts/filter", json!({"sort": "CREATED_DESC"}))
        .await;
    assert_eq!(
        ids(&all),
        [
            table["id"].clone(),
            second["id"].clone(),
            first["id"].clone()
        ]
    );
    let (_, of_run) = app
        .post(
            "/artifacts/filter",
            json!({"flow_runs": {"id": {"any_": [RUN]}}, "sort": "CREATED_DESC"}),
        )
        .await;
    assert_eq!(ids(&of_run), [second["id"].clone(), first["id"].clone()]);
    let (_, tables) = app
        .post(
            "/artifacts/filter",
            json!({"artifacts": {"type": {"any_": ["table"]}}}),
        )
        .await;
    assert_eq!(ids(&tables), [table["id"].clone()]);
    let (_, n) = app
        .post(
            "/artifacts/count",
            json!({"artifacts": {"key": {"exists_": true}}}),
        )
        .await;
    assert_eq!(n, json!(2));
    let (_, collections) = app.post("/artifacts/latest/filter", json!({})).await;
    assert_eq!(collections.as_array().map(Vec::len), Some(1));
    assert_eq!(collections[0]["key"], "report");
    let (_, n) = app.post("/artifacts/latest/count", json!({})).await;
    assert_eq!(n, json!(1));

    let path = format!("/artifacts/{}", second["id"].as_str().expect("id"));
    let (s, _) = app.patch(&path, json!({"data": "## v2, edited"})).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, latest) = app.get("/artifacts/report/latest").await;
    assert_eq!(latest["data"], "## v2, edited");
    let (s, _) = app.delete(&path).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, latest) = app.get("/artifacts/report/latest").await;
    assert_eq!(
        latest["latest_id"], first["id"],
        "the next newest is the latest again"
    );
    let (s, v) = app.delete(&path).await;
    assert_detail(s, &v, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_artifacts_are_refused_and_nothing_is_stored() {
    let app = TestApp::new();
    let (s, v) = app
        .post("/artifacts/", json!({"key": "Not_Valid", "data": 1}))
        .await;
    assert!(assert_detail(s, &v, StatusCode::UNPROCESSABLE_ENTITY).contains("lowercase"));
    let (s, _) = app.post("/artifacts/", json!({"id": RUN, "data": 1})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "ids are the server's");
    let (s, _) = app
        .post("/artifacts/filter", json!({"sort": "NAME_ASC"}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, _) = app
        .post(
            "/artifacts/filter",
            json!({"flows": {"id": {"any_": [RUN]}}}),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::UNPROCESSABLE_ENTITY,
        "an unsupported filter is refused, not ignored"
    );
    let (_, n) = app.post("/artifacts/count", json!({})).await;
    assert_eq!(n, json!(0));
}
