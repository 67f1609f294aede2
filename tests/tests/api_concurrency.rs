//! Global concurrency limits (`/v2/concurrency_limits`) and tag limits (`/concurrency_limits`)
//! through the router, against Prefect's wire contract: slots, leases, rate limits, expiry,
//! and bad input refused with nothing stored.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use sluice_tests::{TestApp, assert_detail};

async fn create(app: &TestApp, body: Value) -> Value {
    let (s, v) = app.post("/v2/concurrency_limits/", body).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v
}

async fn increment(app: &TestApp, path: &str, body: Value) -> (StatusCode, Option<f64>, Value) {
    let (s, headers, v) = app
        .with_headers(Method::POST, path, body.to_string().into_bytes())
        .await;
    let retry_after = headers
        .get("retry-after")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.parse().ok());
    (s, retry_after, v)
}

async fn active_slots(app: &TestApp, name: &str) -> i64 {
    let (s, v) = app.get(&format!("/v2/concurrency_limits/{name}")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["active_slots"].as_i64().expect("active_slots")
}

#[tokio::test]
async fn limits_are_created_read_listed_updated_and_deleted() {
    let app = TestApp::new();
    let made = create(&app, json!({"name": "db", "limit": 2})).await;
    for key in [
        "id",
        "created",
        "updated",
        "active",
        "name",
        "limit",
        "active_slots",
        "denied_slots",
        "slot_decay_per_second",
        "avg_slot_occupancy_seconds",
    ] {
        assert!(made.get(key).is_some(), "{key} missing from {made}");
    }
    assert_eq!(made["active"], true);
    assert_eq!(made["avg_slot_occupancy_seconds"], 2.0);
    let id = made["id"].as_str().expect("id").to_owned();

    let (s, by_id) = app.get(&format!("/v2/concurrency_limits/{id}")).await;
    assert_eq!(s, StatusCode::OK);
    let (_, by_name) = app.get("/v2/concurrency_limits/db").await;
    assert_eq!(by_id, by_name);
    assert!(by_id.get("denied_slots").is_none(), "not in the read model");

    create(
        &app,
        json!({"name": "api", "limit": 5, "slot_decay_per_second": 1.0}),
    )
    .await;
    let (s, listed) = app
        .post("/v2/concurrency_limits/filter", json!({"limit": 10}))
        .await;
    assert_eq!(s, StatusCode::OK);
    let names: Vec<&str> = listed
        .as_array()
        .expect("list")
        .iter()
        .map(|l| l["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["api", "db"]);

    let (s, _) = app
        .patch(
            "/v2/concurrency_limits/db",
            json!({"limit": 3, "active": false}),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, after) = app.get(&format!("/v2/concurrency_limits/{id}")).await;
    assert_eq!(
        (after["limit"].clone(), after["active"].clone()),
        (json!(3), json!(false))
    );

    let (s, v) = app
        .patch("/v2/concurrency_limits/db", json!({"name": "api"}))
        .await;
    assert_detail(s, &v, StatusCode::CONFLICT);

    let (s, _) = app.delete("/v2/concurrency_limits/db").await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, v) = app.get("/v2/concurrency_limits/db").await;
    assert_eq!(
        assert_detail(s, &v, StatusCode::NOT_FOUND),
        "Concurrency Limit not found"
    );
    let (s, v) = app.delete("/v2/concurrency_limits/db").await;
    assert_detail(s, &v, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_limits_are_refused_and_nothing_is_stored() {
    let app = TestApp::new();
    create(&app, json!({"name": "db", "limit": 1})).await;
    let (s, v) = app
        .post("/v2/concurrency_limits/", json!({"name": "db", "limit": 4}))
        .await;
    assert!(assert_detail(s, &v, StatusCode::CONFLICT).contains("already exists"));
    for (body, why) in [
        (json!({"name": "neg", "limit": -1}), "limit"),
        (json!({"name": "a/b", "limit": 1}), "may not contain"),
        (
            json!({"name": "d", "limit": 1, "slot_decay_per_second": -0.5}),
            "slot_decay",
        ),
        (
            json!({"name": "s", "limit": 1, "active_slots": -2}),
            "active_slots",
        ),
    ] {
        let (s, v) = app.post("/v2/concurrency_limits/", body.clone()).await;
        let detail = assert_detail(s, &v, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(detail.contains(why), "{body}: {detail}");
    }
    let (s, v) = app
        .post(
            "/v2/concurrency_limits/",
            json!({"name": "x", "limit": 1, "bogus": 1}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let (_, listed) = app.post("/v2/concurrency_limits/filter", json!({})).await;
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
}

#[tokio::test]
async fn slots_are_taken_all_or_nothing_and_a_full_limit_answers_423_with_retry_after() {
    let app = TestApp::new();
    create(&app, json!({"name": "a", "limit": 1})).await;
    create(&app, json!({"name": "b", "limit": 2})).await;
    let body = json!({"names": ["a", "b", "missing"], "slots": 1, "mode": "concurrency"});
    let (s, _, v) = increment(&app, "/v2/concurrency_limits/increment", body.clone()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let mut names: Vec<&str> = v
        .as_array()
        .expect("list")
        .iter()
        .map(|l| l["name"].as_str().expect("name"))
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["a", "b"], "names that do not exist cost nothing");

    let (s, retry, v) = increment(&app, "/v2/concurrency_limits/increment", body).await;
    assert_eq!(s, StatusCode::LOCKED, "{v}");
    assert_eq!(v, json!({"detail": "Locked"}));
    let retry = retry.expect("a Retry-After header");
    assert!(retry > 0.0 && retry <= 30.0 * 1.3, "{retry}");
    assert_eq!(active_slots(&app, "a").await, 1);
    assert_eq!(
        active_slots(&app, "b").await,
        1,
        "b was not taken when a was full"
    );

    let (s, v) = app
        .post(
            "/v2/concurrency_limits/decrement",
            json!({"names": ["a", "b"], "slots": 1, "occupancy_seconds": 3.0}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(active_slots(&app, "a").await, 0);
    assert_eq!(active_slots(&app, "b").await, 0);

    // Giving back what was never taken is a caller's bug: refused, nothing changed.
    let (s, _) = app
        .post(
            "/v2/concurrency_limits/increment",
            json!({"names": ["b"], "slots": 1}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = app
        .post(
            "/v2/concurrency_limits/decrement",
            json!({"names": ["a", "b"], "slots": 1}),
        )
        .await;
    let detail = assert_detail(s, &v, StatusCode::CONFLICT);
    assert!(detail.contains("'a' holds 0 active slot(s)"), "{detail}");
    assert_eq!(active_slots(&app, "b").await, 1, "b kept its slot");
    let (s, _) = app
        .post(
            "/v2/concurrency_limits/decrement",
            json!({"names": ["b"], "slots": 1}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);

    let (s, v) = app
        .post(
            "/v2/concurrency_limits/increment",
            json!({"names": ["a"], "slots": 2}),
        )
        .await;
    assert_eq!(
        assert_detail(s, &v, StatusCode::UNPROCESSABLE_ENTITY),
        "Slots requested is greater than the limit"
    );
    let (s, _) = app
        .post(
            "/v2/concurrency_limits/increment",
            json!({"names": [], "slots": 1}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn leases_hold_slots_until_given_back_once_and_renewals_of_unknown_leases_are_gone() {
    let app = TestApp::new();
    create(&app, json!({"name": "tag:db", "limit": 1})).await;
    let take = json!({
        "names": ["tag:db"], "slots": 1, "mode": "concurrency", "lease_duration": 60,
        "holder": {"type": "task_run", "id": "6f1c9e2e-0000-4000-8000-000000000001"}
    });
    let (s, _, granted) = increment(
        &app,
        "/v2/concurrency_limits/increment-with-lease",
        take.clone(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{granted}");
    let lease = granted["lease_id"].as_str().expect("lease id").to_owned();
    assert_eq!(granted["limits"][0]["name"], "tag:db");

    let (s, retry, _) = increment(&app, "/v2/concurrency_limits/increment-with-lease", take).await;
    assert_eq!(s, StatusCode::LOCKED);
    assert!(
        retry.expect("Retry-After") <= 10.0 * 1.3,
        "tag limits wait at most ~10 s"
    );

    // The tag's v1 view lists the task run holding the slot.
    let (s, v1) = app.get("/concurrency_limits/tag/db").await;
    assert_eq!(s, StatusCode::OK, "{v1}");
    assert_eq!(v1["tag"], "db");
    assert_eq!(v1["concurrency_limit"], 1);
    assert_eq!(
        v1["active_slots"],
        json!(["6f1c9e2e-0000-4000-8000-000000000001"])
    );

    let (s, _) = app
        .post(
            &format!("/v2/concurrency_limits/leases/{lease}/renew"),
            json!({"lease_duration": 120}),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, v) = app
        .post(
            &format!("/v2/concurrency_limits/leases/{lease}/renew"),
            json!({"lease_duration": 5}),
        )
        .await;
    assert_detail(s, &v, StatusCode::UNPROCESSABLE_ENTITY);

    for _ in 0..2 {
        // Twice: the second is a no-op, never a second slot given back.
        let (s, v) = app
            .post(
                "/v2/concurrency_limits/decrement-with-lease",
                json!({"lease_id": lease}),
            )
            .await;
        assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
        assert_eq!(active_slots(&app, "tag:db").await, 0);
    }
    let (s, v) = app
        .post(
            &format!("/v2/concurrency_limits/leases/{lease}/renew"),
            json!({}),
        )
        .await;
    assert_eq!(
        assert_detail(s, &v, StatusCode::GONE),
        "Lease not found - it may have expired or been revoked"
    );

    // A request naming no existing limit still gets a lease id, and giving it back is harmless.
    let (s, _, none) = increment(
        &app,
        "/v2/concurrency_limits/increment-with-lease",
        json!({"names": ["tag:nolimit"], "slots": 1, "lease_duration": 60}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(none["limits"], json!([]));
    let (s, _) = app
        .post(
            "/v2/concurrency_limits/decrement-with-lease",
            json!({"lease_id": none["lease_id"]}),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn an_expired_lease_gives_its_slots_back_once_on_the_expiry_tick() {
    let (app, clock) = TestApp::at_t0();
    create(&app, json!({"name": "db", "limit": 1})).await;
    let (s, _, granted) = increment(
        &app,
        "/v2/concurrency_limits/increment-with-lease",
        json!({"names": ["db"], "slots": 1, "lease_duration": 60}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    clock.advance(chrono::Duration::seconds(59));
    assert_eq!(
        app.services
            .expire_concurrency_leases()
            .await
            .expect("tick"),
        0
    );
    assert_eq!(active_slots(&app, "db").await, 1, "not expired yet");
    clock.advance(chrono::Duration::seconds(2));
    let (a, b) = tokio::join!(
        app.services.expire_concurrency_leases(),
        app.services.expire_concurrency_leases()
    );
    assert_eq!(
        a.expect("tick") + b.expect("tick"),
        1,
        "given back by one tick"
    );
    assert_eq!(active_slots(&app, "db").await, 0);
    let (s, _) = app
        .post(
            &format!(
                "/v2/concurrency_limits/leases/{}/renew",
                granted["lease_id"].as_str().expect("id")
            ),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::GONE);
}

#[tokio::test]
async fn a_rate_limit_refills_with_time_and_plain_limits_cannot_rate_limit() {
    let (app, clock) = TestApp::at_t0();
    create(
        &app,
        json!({"name": "api", "limit": 2, "slot_decay_per_second": 1.0}),
    )
    .await;
    create(&app, json!({"name": "plain", "limit": 2})).await;
    let body = json!({"names": ["api"], "slots": 1, "mode": "rate_limit"});
    for _ in 0..2 {
        let (s, _, _) = increment(&app, "/v2/concurrency_limits/increment", body.clone()).await;
        assert_eq!(s, StatusCode::OK);
    }
    let (s, retry, _) = increment(&app, "/v2/concurrency_limits/increment", body.clone()).await;
    assert_eq!(s, StatusCode::LOCKED);
    assert!(retry.expect("Retry-After") > 0.0);
    clock.advance(chrono::Duration::seconds(1));
    let (s, _, _) = increment(&app, "/v2/concurrency_limits/increment", body).await;
    assert_eq!(s, StatusCode::OK, "one slot drained in a second");

    let (s, v) = app
        .post(
            "/v2/concurrency_limits/increment",
            json!({"names": ["plain"], "slots": 1, "mode": "rate_limit"}),
        )
        .await;
    assert_eq!(
        assert_detail(s, &v, StatusCode::UNPROCESSABLE_ENTITY),
        "Only concurrency limits with slot decay can be used for rate limiting. The following limits do not have a decay configured: 'plain'"
    );
}

#[tokio::test]
async fn tag_limits_through_the_v1_api_share_the_v2_slots() {
    let app = TestApp::new();
    let (s, made) = app
        .post(
            "/concurrency_limits/",
            json!({"tag": "db", "concurrency_limit": 2}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{made}");
    assert_eq!(made["active_slots"], json!([]));
    let (s, again) = app
        .post(
            "/concurrency_limits/",
            json!({"tag": "db", "concurrency_limit": 1}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "an upsert");
    assert_eq!(again["id"], made["id"]);
    let (_, v2) = app.get("/v2/concurrency_limits/tag:db").await;
    assert_eq!(v2["limit"], 1);

    let run = "6f1c9e2e-0000-4000-8000-0000000000aa";
    let (s, v) = app
        .post(
            "/concurrency_limits/increment",
            json!({"names": ["db", "untagged"], "task_run_id": run}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v[0]["name"], "db");
    let (s, headers, v) = app
        .with_headers(
            Method::POST,
            "/concurrency_limits/increment",
            json!({"names": ["db"], "task_run_id": "6f1c9e2e-0000-4000-8000-0000000000bb"})
                .to_string()
                .into_bytes(),
        )
        .await;
    assert_eq!(s, StatusCode::LOCKED);
    assert_eq!(
        v["detail"],
        "Concurrency limit for the db tag has been reached"
    );
    assert!(headers.get("retry-after").is_some());

    let (_, listed) = app.post("/concurrency_limits/filter", json!({})).await;
    assert_eq!(listed[0]["active_slots"], json!([run]));
    let (s, v) = app
        .post(
            "/concurrency_limits/decrement",
            json!({"names": ["db"], "task_run_id": run}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(active_slots(&app, "tag:db").await, 0);

    let (s, _) = app
        .post(
            "/concurrency_limits/tag/db/reset",
            json!({"slot_override": [run]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(active_slots(&app, "tag:db").await, 1);
    let (_, by_id) = app
        .get(&format!(
            "/concurrency_limits/{}",
            made["id"].as_str().expect("id")
        ))
        .await;
    assert_eq!(by_id["active_slots"], json!([run]));

    app.post(
        "/concurrency_limits/",
        json!({"tag": "zero", "concurrency_limit": 0}),
    )
    .await;
    let (s, v) = app
        .post(
            "/concurrency_limits/increment",
            json!({"names": ["zero"], "task_run_id": run}),
        )
        .await;
    assert_eq!(
        assert_detail(s, &v, StatusCode::LOCKED),
        "The concurrency limit on tag \"zero\" is 0 and will deadlock if the task tries to run again."
    );

    let (s, v) = app.delete("/concurrency_limits/tag/db").await;
    assert_eq!((s, v), (StatusCode::OK, Value::Null));
    let (s, v) = app.get("/concurrency_limits/tag/db").await;
    assert_eq!(
        assert_detail(s, &v, StatusCode::NOT_FOUND),
        "Concurrency limit not found"
    );
    // A limit that is not a tag limit is not visible through v1.
    let plain = create(&app, json!({"name": "plain", "limit": 1})).await;
    let (s, _) = app
        .get(&format!(
            "/concurrency_limits/{}",
            plain["id"].as_str().expect("id")
        ))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn admin_storage_has_no_default_result_storage() {
    let app = TestApp::new();
    assert_eq!(
        app.get("/admin/storage").await,
        (
            StatusCode::OK,
            json!({"default_result_storage_block_id": null})
        )
    );
}

/// A deployment's limit is held through `deployment:<id>` and leases: the claim's lease rides in
/// the run's state, a holder that stops renewing loses the slot when the lease expires (and
/// the run waiting for it gets in), and the slot is given back once when a run ends.
#[tokio::test]
async fn a_deployment_slot_is_leased_reclaimed_from_a_dead_holder_and_given_back_once() {
    let (app, clock) = TestApp::at_t0();
    let (_, flow) = app.post("/flows/", json!({"name": "f"})).await;
    let (s, dep) = app
        .post(
            "/deployments/",
            json!({"flow_id": flow["id"], "name": "one-at-a-time", "concurrency_limit": 1,
                   "concurrency_options": {"collision_strategy": "ENQUEUE", "grace_period_seconds": 60}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{dep}");
    let dep_id = dep["id"].as_str().expect("id").to_owned();
    let mut runs = Vec::new();
    for _ in 0..2 {
        let (_, run) = app
            .post(&format!("/deployments/{dep_id}/create_flow_run"), json!({}))
            .await;
        runs.push(run["id"].as_str().expect("id").to_owned());
    }
    let claim = |run: String| {
        let app = &app;
        async move {
            let (_, out) = app
                .post(
                    &format!("/flow_runs/{run}/set_state"),
                    json!({"state": {"type": "PENDING"}}),
                )
                .await;
            out
        }
    };
    let first = claim(runs[0].clone()).await;
    assert_eq!(first["status"], "ACCEPT", "{first}");
    let lease = first["state"]["state_details"]["deployment_concurrency_lease_id"].clone();
    assert!(lease.is_string(), "the lease rides in the state: {first}");
    let limit_path = format!("/v2/concurrency_limits/deployment:{dep_id}");
    let (_, limit) = app.get(&limit_path).await;
    assert_eq!(
        (limit["limit"].clone(), limit["active_slots"].clone()),
        (json!(1), json!(1))
    );

    let second = claim(runs[1].clone()).await;
    assert_eq!(second["status"], "REJECT");
    assert_eq!(second["state"]["name"], "AwaitingConcurrencySlot");

    // The first run's holder dies: nobody renews, and after the lease the slot comes back.
    clock.advance(chrono::Duration::seconds(61));
    assert_eq!(
        app.services
            .expire_concurrency_leases()
            .await
            .expect("tick"),
        1
    );
    let second = claim(runs[1].clone()).await;
    assert_eq!(second["status"], "ACCEPT", "{second}");

    // The dead holder's run is ended later: its lease is gone, so nothing is given back twice.
    let (_, ended) = app
        .post(
            &format!("/flow_runs/{}/set_state", runs[0]),
            json!({"state": {"type": "CRASHED"}, "force": true}),
        )
        .await;
    assert_eq!(ended["status"], "ACCEPT", "{ended}");
    let (_, limit) = app.get(&limit_path).await;
    assert_eq!(
        limit["active_slots"], 1,
        "the second run still holds its slot"
    );

    // RUNNING keeps the slot (and its lease); COMPLETED gives it back.
    for state in ["RUNNING", "COMPLETED"] {
        let (_, out) = app
            .post(
                &format!("/flow_runs/{}/set_state", runs[1]),
                json!({"state": {"type": state}}),
            )
            .await;
        assert_eq!(out["status"], "ACCEPT", "{out}");
        if state == "RUNNING" {
            assert!(out["state"]["state_details"]["deployment_concurrency_lease_id"].is_string());
        }
    }
    let (_, limit) = app.get(&limit_path).await;
    assert_eq!(limit["active_slots"], 0);
}
