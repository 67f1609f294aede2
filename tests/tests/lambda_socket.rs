//! The deployed stack's events WebSocket, its functions invoked in-process with API Gateway and
//! SQS fixture events over DynamoDB (the emulator): `$connect` wants a key in `Authorization`
//! (Prefect's auth string as Basic) and selects the `prefect` subprotocol; the `auth` route
//! answers Prefect's handshake; queued events become stored events and task runs, once each
//! however often SQS delivers them.

use std::sync::Arc;

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use aws_lambda_events::encodings::Body;
use aws_lambda_events::sqs::SqsEvent;
use serde_json::{Value, json};
use sluice_services::{ApiKeyCache, Services, Settings, SystemClock};
use sluice_store::{EventFilter, TaskRunFilter, TaskRunSort};
use sluice_tests::aws::{TestTable, aws_available, fixture};

fn request(
    mut event: Value,
    key: Option<&str>,
    token: Option<&str>,
) -> ApiGatewayWebsocketProxyRequest {
    use base64::Engine;
    match key {
        Some(k) => {
            let basic = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("sluice:{k}"))
            );
            event["headers"]["Authorization"] = json!(basic);
            event["multiValueHeaders"]["Authorization"] = json!([basic]);
        }
        None => {
            if let Some(h) = event["headers"].as_object_mut() {
                h.remove("Authorization");
            }
            if let Some(h) = event["multiValueHeaders"].as_object_mut() {
                h.remove("Authorization");
            }
        }
    }
    if let Some(t) = token {
        event["body"] = json!(json!({"type": "auth", "token": t}).to_string());
    }
    serde_json::from_value(event).expect("a WebSocket API event")
}

fn body_of(r: &aws_lambda_events::apigw::ApiGatewayProxyResponse) -> Value {
    match &r.body {
        Some(Body::Text(t)) => serde_json::from_str(t).expect("JSON"),
        _ => Value::Null,
    }
}

#[tokio::test]
async fn connect_and_auth_want_a_key_and_speak_prefects_handshake() {
    if !aws_available("lambda_socket") {
        return;
    }
    let table = TestTable::create().await;
    let services = Services::new(
        Arc::new(table.store.clone()),
        Arc::new(SystemClock),
        Settings::default(),
    );
    let key = services.create_api_key("engine").await.expect("key");
    let cache = ApiKeyCache::new(ApiKeyCache::DEFAULT_TTL, ApiKeyCache::DEFAULT_CAPACITY);

    let ok = sluice_fn_socket::handle_socket(
        &services,
        &cache,
        request(fixture("ws-connect.json"), Some(&key.secret), None),
    )
    .await;
    assert_eq!(ok.status_code, 200);
    assert_eq!(
        ok.headers
            .get("sec-websocket-protocol")
            .map(|v| v.to_str().ok()),
        Some(Some("prefect"))
    );
    for missing in [None, Some("sluice_0000")] {
        let refused = sluice_fn_socket::handle_socket(
            &services,
            &cache,
            request(fixture("ws-connect.json"), missing, None),
        )
        .await;
        assert_eq!(refused.status_code, 401, "{missing:?}");
    }

    let token = format!("sluice:{}", key.secret);
    let answer = sluice_fn_socket::handle_socket(
        &services,
        &cache,
        request(fixture("ws-auth.json"), None, Some(&token)),
    )
    .await;
    assert_eq!(body_of(&answer), json!({"type": "auth_success"}));
    let answer = sluice_fn_socket::handle_socket(
        &services,
        &cache,
        request(fixture("ws-auth.json"), None, Some("sluice:sluice_0000")),
    )
    .await;
    assert_eq!(body_of(&answer)["type"], "auth_failure");
    table.delete().await;
}

#[tokio::test]
async fn queued_events_are_stored_and_recorded_once_however_often_delivered() {
    if !aws_available("lambda_socket") {
        return;
    }
    let table = TestTable::create().await;
    let services = Services::new(
        Arc::new(table.store.clone()),
        Arc::new(SystemClock),
        Settings::default(),
    );
    let mut batch = fixture("sqs-queued-event.json");
    // A second message in the batch that is not an event: dropped, not retried.
    let mut junk = batch["Records"][0].clone();
    junk["messageId"] = json!("junk");
    junk["body"] = json!("{\"type\": \"something else\"}");
    batch["Records"].as_array_mut().expect("records").push(junk);
    let event: SqsEvent = serde_json::from_value(batch).expect("an SQS event");

    for delivery in 0..2 {
        let (response, summary) = sluice_fn_socket::ingest(&services, event.clone()).await;
        assert!(response.batch_item_failures.is_empty(), "{summary:?}");
        assert_eq!((summary.events, summary.unreadable), (1, 1));
        assert_eq!(
            summary.new,
            usize::from(delivery == 0),
            "delivery {delivery}"
        );
    }
    let events = services
        .read_events(&EventFilter::default(), 10, 0)
        .await
        .expect("events");
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0].received.timestamp_millis(),
        1_796_637_600_500,
        "received when SQS took it"
    );
    let runs = services
        .list_task_runs(&TaskRunFilter::default(), TaskRunSort::IdDesc, None, 0)
        .await
        .expect("task runs");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].name, "add-8ff");
    assert_eq!(
        runs[0].state.as_ref().map(|s| s.name.as_str()),
        Some("Completed")
    );
    table.delete().await;
}

/// The 59 task-run events Prefect 3.9.1's engine sent for the twenty-task flow of
/// `cli/tests/task_runs.rs` (recorded from a run against `sluice server`), queued in batches of
/// ten, in reverse order and each batch delivered twice: the same task runs, final states and
/// histories as the flow's own run recorded.
#[tokio::test]
async fn the_engines_events_through_the_queue_record_the_flows_task_runs() {
    if !aws_available("lambda_socket") {
        return;
    }
    let table = TestTable::create().await;
    let services = Services::new(
        Arc::new(table.store.clone()),
        Arc::new(SystemClock),
        Settings::default(),
    );
    let events = fixture("task-run-events.json");
    let mut events: Vec<Value> = events.as_array().expect("events").clone();
    assert_eq!(events.len(), 59);
    events.reverse();
    let template = fixture("sqs-queued-event.json")["Records"][0].clone();
    for (b, batch) in events.chunks(10).enumerate() {
        let records: Vec<Value> = batch
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let mut r = template.clone();
                r["messageId"] = json!(format!("m-{b}-{i}"));
                r["body"] = json!(e.to_string());
                r
            })
            .collect();
        let sqs: SqsEvent =
            serde_json::from_value(json!({ "Records": records })).expect("an SQS event");
        for _ in 0..2 {
            let (response, summary) = sluice_fn_socket::ingest(&services, sqs.clone()).await;
            assert!(response.batch_item_failures.is_empty(), "{summary:?}");
            assert_eq!(summary.unreadable, 0);
        }
    }
    let runs = services
        .list_task_runs(&TaskRunFilter::default(), TaskRunSort::IdDesc, None, 0)
        .await
        .expect("task runs");
    assert_eq!(
        runs.len(),
        19,
        "the subflow's parent task run is made through the API"
    );
    let mut seen = Vec::new();
    for run in &runs {
        let history: Vec<String> = services
            .task_run_states(run.id)
            .await
            .expect("states")
            .into_iter()
            .map(|s| s.name)
            .collect();
        let task = run
            .name
            .rsplit_once('-')
            .map_or(run.name.as_str(), |(t, _)| t);
        let state = run
            .state
            .as_ref()
            .map(|s| s.name.clone())
            .unwrap_or_default();
        seen.push((task.to_owned(), state, history.join(",")));
    }
    seen.sort();
    seen.dedup();
    assert_eq!(
        seen,
        [
            ("add", "Completed", "Pending,Running,Completed"),
            ("fails", "Failed", "Pending,Running,Failed"),
            (
                "flaky",
                "Completed",
                "Pending,Running,Retrying,Retrying,Completed"
            ),
            ("square", "Completed", "Pending,Running,Completed"),
        ]
        .map(|(a, b, c)| (a.to_owned(), b.to_owned(), c.to_owned()))
    );
    let stored = services
        .count_events(&EventFilter::default())
        .await
        .expect("count");
    assert_eq!(stored, 59, "each event once");
    table.delete().await;
}
