//! The api function over DynamoDB, invoked in-process exactly as the Lambda runtime invokes it,
//! with the HTTP API (payload v2) event fixtures from `infra/events/`.
//!
//! Needs an AWS endpoint (see `sluice_tests::aws`); skipped with a notice without one.

use axum::http::StatusCode;
use serde_json::{Value, json};
use sluice_fn_api::{Auth, Config};
use sluice_store_dynamodb::Retention;
use sluice_tests::aws::{
    TestTable, aws_available, fixture, http_event, invoke_http, with_authorization,
};

fn config(table: &TestTable, auth: Auth) -> Config {
    Config {
        table: table.name().to_owned(),
        auth,
        retention: Retention::default(),
        dispatch_queue_url: None,
    }
}

/// Sends `body` to `path` with `method`, on the create-work-pool fixture's headers and context.
async fn call(
    router: &axum::Router,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let event = http_event(
        &fixture("api-create-work-pool.json"),
        method,
        path,
        body.as_ref(),
    );
    let answer = invoke_http(router, event).await;
    (answer.status, answer.body)
}

fn id(v: &Value) -> &str {
    v["id"].as_str().unwrap_or_else(|| panic!("an id in {v}"))
}

#[tokio::test]
async fn pools_flows_deployments_and_runs_through_the_function() {
    if !aws_available("pools_flows_deployments_and_runs_through_the_function") {
        return;
    }
    let table = TestTable::create().await;
    let router = sluice_fn_api::app(&config(&table, Auth::None)).await;

    let health = invoke_http(&router, fixture("api-health.json")).await;
    assert_eq!(health.status, StatusCode::OK, "{}", health.raw);

    // The fixture as it is: Prefect's client creating a process pool.
    let created = invoke_http(&router, fixture("api-create-work-pool.json")).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.raw);
    let pool = &created.body;
    assert_eq!(pool["name"], "fixture-pool");
    assert_eq!(pool["type"], "process");
    assert!(
        pool["base_job_template"]["job_configuration"].is_object(),
        "the type's default template: {pool}"
    );
    assert!(
        pool["id"].is_string() && pool["created"].is_string(),
        "{pool}"
    );
    assert!(
        created.raw["headers"]["content-type"]
            .as_str()
            .is_some_and(|t| t.starts_with("application/json")),
        "{}",
        created.raw
    );

    let read = invoke_http(&router, fixture("api-read-work-pools.json")).await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.raw);
    let names: Vec<&str> = read
        .body
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert!(names.contains(&"fixture-pool"), "{names:?}");

    let (s, flow) = call(&router, "POST", "/api/flows/", Some(json!({"name": "etl"}))).await;
    assert!(s.is_success(), "{s} {flow}");
    let (s, deployment) = call(
        &router,
        "POST",
        "/api/deployments/",
        Some(json!({"flow_id": flow["id"], "name": "nightly", "work_pool_name": "fixture-pool"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{deployment}");
    assert_eq!(deployment["work_pool_name"], "fixture-pool");

    let create_run = format!("/api/deployments/{}/create_flow_run", id(&deployment));
    let mut run_ids = Vec::new();
    for _ in 0..2 {
        let (s, run) = call(&router, "POST", &create_run, Some(json!({}))).await;
        assert_eq!(s, StatusCode::CREATED, "{run}");
        assert_eq!(run["deployment_id"], deployment["id"]);
        assert_eq!(run["state_type"], "SCHEDULED", "{run}");
        run_ids.push(id(&run).to_owned());
    }

    let (s, runs) = call(
        &router,
        "POST",
        "/api/flow_runs/filter",
        Some(json!({"flow_runs": {"deployment_id": {"any_": [deployment["id"]]}}})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{runs}");
    let mut found: Vec<String> = runs
        .as_array()
        .expect("a list")
        .iter()
        .map(|r| id(r).to_owned())
        .collect();
    found.sort();
    run_ids.sort();
    assert_eq!(found, run_ids);

    // A path the router does not know answers Prefect's 404, through the same adapter.
    let (s, _) = call(&router, "GET", "/api/no_such_route", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    table.delete().await;
}

#[tokio::test]
async fn two_claims_of_one_run_through_two_function_instances_have_one_winner() {
    if !aws_available("two_claims_of_one_run_through_two_function_instances_have_one_winner") {
        return;
    }
    let table = TestTable::create().await;
    // Two execution environments: nothing in-process (no lock, no cache) is shared between
    // them, so only the store's compare-and-set can decide.
    let a = sluice_fn_api::app(&config(&table, Auth::None)).await;
    let b = sluice_fn_api::app(&config(&table, Auth::None)).await;

    let created = invoke_http(&a, fixture("api-create-work-pool.json")).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.raw);
    let (s, flow) = call(&a, "POST", "/api/flows/", Some(json!({"name": "etl"}))).await;
    assert!(s.is_success(), "{flow}");
    let (s, deployment) = call(
        &a,
        "POST",
        "/api/deployments/",
        Some(json!({"flow_id": flow["id"], "name": "claimed", "work_pool_name": "fixture-pool"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{deployment}");
    let (s, run) = call(
        &a,
        "POST",
        &format!("/api/deployments/{}/create_flow_run", id(&deployment)),
        Some(json!({})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{run}");
    assert_eq!(run["state_type"], "SCHEDULED");

    let path = format!("/api/flow_runs/{}/set_state", id(&run));
    let body = json!({"state": {"type": "PENDING"}});
    let (first, second) = tokio::join!(
        call(&a, "POST", &path, Some(body.clone())),
        call(&b, "POST", &path, Some(body.clone())),
    );
    let statuses: Vec<&str> = [&first.1, &second.1]
        .iter()
        .map(|out| {
            out["status"]
                .as_str()
                .unwrap_or_else(|| panic!("a status in {out}"))
        })
        .collect();
    let accepted = statuses.iter().filter(|s| **s == "ACCEPT").count();
    let refused = statuses
        .iter()
        .filter(|s| matches!(**s, "ABORT" | "REJECT"))
        .count();
    assert_eq!(
        (accepted, refused),
        (1, 1),
        "exactly one ACCEPT: {first:?} {second:?}"
    );

    let (s, read) = call(&b, "GET", &format!("/api/flow_runs/{}", id(&run)), None).await;
    assert_eq!(s, StatusCode::OK, "{read}");
    assert_eq!(read["state_type"], "PENDING");
    let (s, history) = call(
        &b,
        "GET",
        &format!("/api/flow_run_states/?flow_run_id={}", id(&run)),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{history}");
    let pending = history
        .as_array()
        .expect("a list")
        .iter()
        .filter(|st| st["type"] == "PENDING")
        .count();
    assert_eq!(pending, 1, "one PENDING written: {history}");

    table.delete().await;
}

#[tokio::test]
async fn with_api_keys_an_anonymous_write_is_refused_and_writes_nothing() {
    if !aws_available("with_api_keys_an_anonymous_write_is_refused_and_writes_nothing") {
        return;
    }
    let table = TestTable::create().await;
    let router = sluice_fn_api::app(&config(&table, Auth::ApiKey)).await;
    let services = sluice_services::Services::new(
        std::sync::Arc::new(table.store.clone()),
        std::sync::Arc::new(sluice_services::SystemClock),
        sluice_services::Settings::default(),
    );
    let key = services.create_api_key("ci").await.expect("a key");

    // The load balancer's probe needs no key, even with the fixture's placeholder token.
    let health = invoke_http(&router, fixture("api-health.json")).await;
    assert_eq!(health.status, StatusCode::OK, "{}", health.raw);

    // The fixture's placeholder token, then no token at all: 401, Prefect's error body.
    let create = fixture("api-create-work-pool.json");
    for event in [create.clone(), with_authorization(create.clone(), None)] {
        let refused = invoke_http(&router, event).await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.raw);
        assert!(refused.body["detail"].is_string(), "{}", refused.raw);
    }

    // With the key, the same request creates the pool: the refused ones wrote nothing (else
    // this would be a 409 for the taken name).
    let bearer = format!("Bearer {}", key.secret);
    let created = invoke_http(&router, with_authorization(create, Some(&bearer))).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.raw);
    let read = invoke_http(
        &router,
        with_authorization(fixture("api-read-work-pools.json"), Some(&bearer)),
    )
    .await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.raw);
    assert_eq!(read.body.as_array().map(Vec::len), Some(1), "{}", read.raw);

    table.delete().await;
}
