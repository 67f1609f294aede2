//! The `/events/in` WebSocket over a real socket, spoken as Prefect's events client speaks it:
//! the `prefect` subprotocol and its auth message, events as text frames, a ping as the
//! checkpoint. A client that drops mid-stream and resends everything after reconnecting stores
//! nothing twice and loses no task-run state; with API keys on, only a key authenticates.

use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use sluice_api::{Auth, Options};
use sluice_services::{Services, Settings, SystemClock};
use sluice_store::{EventFilter, SqliteStore, TaskRunFilter, TaskRunSort};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The API on a loopback port, over a fresh SQLite file; (services, address, directory).
async fn serve(auth: Auth) -> (Services, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("s.db")).expect("open");
    let services = Services::new(Arc::new(store), Arc::new(SystemClock), Settings::default());
    let router = sluice_api::router_with(
        services.clone(),
        Options {
            auth,
            ..Options::default()
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (services, addr, dir)
}

async fn connect(addr: &str, prefect: bool) -> Socket {
    let mut request = format!("ws://{addr}/api/events/in")
        .into_client_request()
        .expect("request");
    if prefect {
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", "prefect".parse().expect("header"));
    }
    tokio_tungstenite::connect_async(request)
        .await
        .expect("connect")
        .0
}

/// Prefect's handshake; the server's answer.
async fn authenticate(socket: &mut Socket, token: Option<&str>) -> Value {
    socket
        .send(Message::text(
            json!({"type": "auth", "token": token}).to_string(),
        ))
        .await
        .expect("send auth");
    match socket.next().await {
        Some(Ok(Message::Text(t))) => serde_json::from_str(&t).expect("JSON"),
        Some(Ok(Message::Close(frame))) => {
            json!({"closed": frame.map(|f| (u16::from(f.code), f.reason.to_string()))})
        }
        other => panic!("no answer to auth: {other:?}"),
    }
}

/// A checkpoint as the client takes one: a ping, answered once everything before it is read.
async fn checkpoint(socket: &mut Socket) {
    socket
        .send(Message::Ping(b"checkpoint".to_vec().into()))
        .await
        .expect("ping");
    loop {
        match socket.next().await {
            Some(Ok(Message::Pong(_))) => return,
            Some(Ok(_)) => {}
            other => panic!("no pong: {other:?}"),
        }
    }
}

fn state_event(task: &str, flow: &str, name: &str, state_type: &str, micros: u32) -> String {
    json!({
        "id": uuid::Uuid::new_v4(),
        "occurred": format!("2026-12-07T10:00:00.{micros:06}Z"),
        "event": format!("prefect.task-run.{name}"),
        "resource": {"prefect.resource.id": format!("prefect.task-run.{task}"), "prefect.orchestration": "client"},
        "related": [{"prefect.resource.id": format!("prefect.flow-run.{flow}"), "prefect.resource.role": "flow-run"}],
        "payload": {"validated_state": {"type": state_type, "name": name},
                    "task_run": {"name": "t-0", "task_key": "t", "dynamic_key": "0"}}
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_drops_and_resends_stores_each_event_once_and_loses_no_state() {
    let (services, addr, _dir) = serve(Auth::None).await;
    let (task, flow) = (
        uuid::Uuid::new_v4().to_string(),
        uuid::Uuid::new_v4().to_string(),
    );
    let events = [
        state_event(&task, &flow, "Pending", "PENDING", 1),
        state_event(&task, &flow, "Running", "RUNNING", 2),
        state_event(&task, &flow, "Completed", "COMPLETED", 3),
    ];

    let mut first = connect(&addr, true).await;
    assert_eq!(
        authenticate(&mut first, None).await,
        json!({"type": "auth_success"})
    );
    for e in &events[..2] {
        first.send(Message::text(e.clone())).await.expect("send");
    }
    // Gone without a close frame or a checkpoint: the client cannot know what arrived.
    drop(first);

    let mut second = connect(&addr, true).await;
    assert_eq!(
        authenticate(&mut second, None).await,
        json!({"type": "auth_success"})
    );
    for e in &events {
        second.send(Message::text(e.clone())).await.expect("resend");
    }
    checkpoint(&mut second).await;

    let stored = services
        .read_events(&EventFilter::default(), 100, 0)
        .await
        .expect("events");
    assert_eq!(stored.len(), 3, "each event once");
    let runs = services
        .list_task_runs(&TaskRunFilter::default(), TaskRunSort::IdDesc, None, 0)
        .await
        .expect("task runs");
    assert_eq!(runs.len(), 1);
    assert_eq!(
        runs[0].state.as_ref().map(|s| s.name.as_str()),
        Some("Completed")
    );
    let history = services.task_run_states(runs[0].id).await.expect("states");
    let names: Vec<&str> = history.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["Pending", "Running", "Completed"]);

    // A frame that is not an event is dropped; the stream goes on.
    second.send(Message::text("not json")).await.expect("send");
    let late =
        json!({"id": uuid::Uuid::new_v4(), "occurred": "2026-12-07T10:00:05Z", "event": "my.event",
                      "resource": {"prefect.resource.id": "my.thing"}})
        .to_string();
    second.send(Message::text(late)).await.expect("send");
    checkpoint(&mut second).await;
    assert_eq!(
        services
            .count_events(&EventFilter::default())
            .await
            .expect("count"),
        4
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn with_api_keys_only_a_key_opens_the_socket() {
    let (services, addr, _dir) = serve(Auth::ApiKey).await;
    let key = services.create_api_key("engine").await.expect("key");

    let mut no_token = connect(&addr, true).await;
    let answer = authenticate(&mut no_token, None).await;
    assert_eq!(answer["closed"][0], 1008, "{answer}");
    let mut wrong = connect(&addr, true).await;
    let answer = authenticate(&mut wrong, Some("sluice:sluice_0000")).await;
    assert_eq!(answer["closed"], json!([1008, "Invalid token"]), "{answer}");
    // Without the `prefect` subprotocol there is no handshake: refused when keys are on.
    let mut legacy = connect(&addr, false).await;
    match legacy.next().await {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(u16::from(frame.code), 1002),
        other => panic!("expected a close: {other:?}"),
    }

    // Prefect's client sends its auth string as the token: `user:key`, or the key alone.
    for token in [format!("sluice:{}", key.secret), key.secret.clone()] {
        let mut ok = connect(&addr, true).await;
        assert_eq!(
            authenticate(&mut ok, Some(&token)).await,
            json!({"type": "auth_success"})
        );
    }
}
