//! Events taken in per second over the `/events/in` WebSocket, spoken as Prefect's events
//! client speaks it: the `prefect` subprotocol and its auth message, one text frame per event,
//! and a checkpoint (a ping; the pong confirms everything sent before it was stored) every
//! `--checkpoint-every` events.
//!
//! Each of `--connections` sockets sends `--events` task-run state events (Pending, Running,
//! Completed for a third as many task runs, in one flow run per connection) as fast as the
//! socket takes them. Prints one JSON line: events, seconds (first send to last pong),
//! events per second, the checkpoint acknowledgement latency (ping to pong) p50/p99/max in
//! milliseconds, and what the API holds afterwards (events and task runs), which must be all
//! of them: the binary exits non-zero if any is missing.
//!
//! `eventbench --api http://127.0.0.1:4340/api --connections 1 --events 30000`

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

#[derive(Parser)]
struct Args {
    /// The API URL (ending in /api).
    #[arg(long)]
    api: String,
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Events per connection (rounded down to whole task runs of three states).
    #[arg(long, default_value_t = 30_000)]
    events: usize,
    #[arg(long, default_value_t = 100)]
    checkpoint_every: usize,
}

/// A task-run state event shaped as Prefect 3.9's engine shapes it.
fn event(
    task_run: uuid::Uuid,
    flow_run: uuid::Uuid,
    i: usize,
    name: &str,
    state_type: &str,
) -> String {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    json!({
        "id": uuid::Uuid::now_v7(),
        "occurred": now,
        "event": format!("prefect.task-run.{name}"),
        "resource": {
            "prefect.orchestration": "client",
            "prefect.resource.id": format!("prefect.task-run.{task_run}"),
            "prefect.resource.name": format!("add-{i:04x}"),
            "prefect.state-name": name,
            "prefect.state-type": state_type,
        },
        "related": [{"prefect.resource.id": format!("prefect.flow-run.{flow_run}"), "prefect.resource.role": "flow-run"}],
        "payload": {
            "validated_state": {"type": state_type, "name": name, "message": "", "state_details": {}, "data": null},
            "task_run": {"name": format!("add-{i:04x}"), "task_key": "add-907a5471", "dynamic_key": i.to_string(),
                          "empirical_policy": {"retries": 0}, "tags": [], "task_inputs": {"a": [], "b": []},
                          "run_count": 1, "expected_start_time": now}
        }
    })
    .to_string()
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(api: &str) -> Result<Socket> {
    let url = format!("{}/events/in", api.replacen("http", "ws", 1));
    let mut request = url.into_client_request()?;
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "prefect".parse()?);
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await?;
    socket
        .send(Message::text(
            json!({"type": "auth", "token": null}).to_string(),
        ))
        .await?;
    match socket.next().await {
        Some(Ok(Message::Text(t))) if t.contains("auth_success") => Ok(socket),
        other => bail!("handshake failed: {other:?}"),
    }
}

async fn checkpoint(socket: &mut Socket) -> Result<Duration> {
    let start = Instant::now();
    socket.send(Message::Ping(Vec::new().into())).await?;
    loop {
        match socket.next().await {
            Some(Ok(Message::Pong(_))) => return Ok(start.elapsed()),
            Some(Ok(_)) => {}
            other => bail!("no pong: {other:?}"),
        }
    }
}

/// One connection's run: the acknowledgement latencies of its checkpoints.
async fn drive(
    api: String,
    flow_run: uuid::Uuid,
    events: usize,
    every: usize,
) -> Result<Vec<Duration>> {
    let mut socket = connect(&api).await?;
    let mut acks = Vec::new();
    let mut sent = 0;
    for i in 0..events / 3 {
        let task_run = uuid::Uuid::now_v7();
        for (name, state_type) in [
            ("Pending", "PENDING"),
            ("Running", "RUNNING"),
            ("Completed", "COMPLETED"),
        ] {
            socket
                .feed(Message::text(event(
                    task_run, flow_run, i, name, state_type,
                )))
                .await?;
            sent += 1;
            if sent % every == 0 {
                acks.push(checkpoint(&mut socket).await?);
            }
        }
    }
    acks.push(checkpoint(&mut socket).await?);
    Ok(acks)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let per = args.events / 3 * 3;
    let flow_runs: Vec<uuid::Uuid> = (0..args.connections)
        .map(|_| uuid::Uuid::now_v7())
        .collect();
    let start = Instant::now();
    let tasks: Vec<_> = flow_runs
        .iter()
        .map(|f| {
            tokio::spawn(drive(
                args.api.clone(),
                *f,
                per,
                args.checkpoint_every.max(1),
            ))
        })
        .collect();
    let mut acks = Vec::new();
    for t in tasks {
        acks.extend(t.await.context("a connection panicked")??);
    }
    let seconds = start.elapsed().as_secs_f64();
    acks.sort();
    let pick = |q: f64| acks[((acks.len() as f64 - 1.0) * q).round() as usize];

    let http = reqwest::Client::new();
    let total = per * args.connections;
    let events: Value = http
        .post(format!("{}/events/filter", args.api))
        .json(&json!({"filter": {"event": {"prefix": ["prefect.task-run."]}}, "limit": 1}))
        .send()
        .await?
        .json()
        .await?;
    let task_runs: Value = http
        .post(format!("{}/task_runs/count", args.api))
        .json(&json!({"task_runs": {"flow_run_id": {"any_": flow_runs}}}))
        .send()
        .await?
        .json()
        .await?;
    let stored = events["total"].as_u64().unwrap_or(0) as usize;
    println!(
        "{}",
        json!({
            "connections": args.connections,
            "events": total,
            "seconds": (seconds * 1000.0).round() / 1000.0,
            "events_per_s": (total as f64 / seconds).round(),
            "ack_ms": {"p50": ms(pick(0.5)), "p99": ms(pick(0.99)), "max": ms(pick(1.0)), "checkpoints": acks.len()},
            "stored_events": stored,
            "stored_task_runs": task_runs,
        })
    );
    if stored < total || task_runs.as_u64() != Some((total / 3) as u64) {
        bail!("events or task runs are missing");
    }
    Ok(())
}
