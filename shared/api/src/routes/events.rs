//! Events (Prefect's `server/api/events.py`): the `/events/in` WebSocket the engine streams
//! task-run states and custom events into, `POST /events`, reading them back, and the
//! `/events/out` WebSocket that streams them live (`prefect events stream`).
//!
//! On the socket, Prefect's handshake: with the `prefect` subprotocol the first message is
//! `{"type": "auth", "token": ...}`, answered `{"type": "auth_success"}`; with API keys on, the
//! token must be a key (Prefect's client sends `PREFECT_API_AUTH_STRING` there, so a user sets
//! that to the key, optionally as `user:key`). Events are stored before the next message is
//! read, and the client's checkpoint is a ping whose pong goes out with that next read, so
//! every event a client saw confirmed is stored; a resent one is stored once (by id).

use std::collections::HashMap;

use axum::Json;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use base64::Engine;
use futures::FutureExt;
use serde_json::{Value, json};

use crate::AppState;
use crate::dto::events::{EventIn, event_json, parse_event};
use crate::dto::filters::{event_filter, only_keys};
use crate::error::{ApiError, ApiResult};
use crate::extract::Body;

/// Events taken in per store write on the socket, at most.
const SOCKET_BATCH: usize = 500;
/// Prefect's page size for `/events/filter`.
const PAGE_SIZE: usize = 50;

pub async fn create(
    State(app): State<AppState>,
    Body(events): Body<Vec<EventIn>>,
) -> ApiResult<StatusCode> {
    let now = app.services.now();
    let events = events
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            e.received(now)
                .map_err(|why| ApiError::invalid_field(vec!["body".into(), i.into()], why))
        })
        .collect::<ApiResult<Vec<_>>>()?;
    app.services.ingest_events(&events).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Accepts the `prefect` subprotocol when the client offers it; whether it did.
fn negotiate(ws: WebSocketUpgrade) -> (WebSocketUpgrade, bool) {
    let prefect = ws.requested_protocols().any(|p| {
        p.to_str()
            .is_ok_and(|s| s.split(',').any(|x| x.trim() == "prefect"))
    });
    let ws = if prefect {
        ws.protocols(["prefect"])
    } else {
        ws
    };
    (ws, prefect)
}

pub async fn stream_in(State(app): State<AppState>, ws: WebSocketUpgrade) -> Response {
    let (ws, prefect) = negotiate(ws);
    ws.on_upgrade(move |socket| serve_in(app, socket, prefect))
}

pub async fn stream_out(State(app): State<AppState>, ws: WebSocketUpgrade) -> Response {
    let (ws, prefect) = negotiate(ws);
    ws.on_upgrade(move |socket| serve_out(app, socket, prefect))
}

/// How far back a subscriber's backfill reaches, at most (Prefect's default).
const MAX_BACKFILL_MINUTES: i64 = 15;
/// Events read per backfill query.
const BACKFILL_PAGE: usize = 250;

/// The next text message, skipping pings (their pongs go out with the next read).
async fn next_text(socket: &mut WebSocket) -> Option<String> {
    loop {
        match socket.recv().await {
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            Some(Ok(Message::Text(text))) => return Some(text.to_string()),
            _ => return None,
        }
    }
}

/// `/events/out`: after the handshake the client sends `{"type": "filter", "filter": ...,
/// "backfill": true}`; it gets the stored events of the last 15 minutes that match (oldest
/// first), then every matching event this process stores, each as `{"type": "event", ...}`.
async fn serve_out(app: AppState, mut socket: WebSocket, prefect: bool) {
    if let Err((code, reason)) = handshake(&app, &mut socket, prefect).await {
        return close(socket, code, reason).await;
    }
    let Some(message) = next_text(&mut socket)
        .await
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .filter(|m| m["type"] == "filter")
    else {
        return close(socket, close_code::PROTOCOL, "Expected 'filter' message").await;
    };
    let mut filter = match event_filter(message.get("filter")) {
        Ok(f) => f,
        Err(e) => {
            let reason = format!("Invalid filter: {e}");
            return close(socket, close_code::PROTOCOL, &reason).await;
        }
    };
    let earliest = app.services.now() - chrono::Duration::minutes(MAX_BACKFILL_MINUTES);
    filter.occurred_since = Some(filter.occurred_since.map_or(earliest, |s| s.max(earliest)));
    filter.ascending = true;
    // Subscribed before the backfill is read, so nothing falls between the two.
    let mut live = app.services.subscribe_events();
    let mut sent = std::collections::HashSet::new();
    if message.get("backfill") != Some(&Value::Bool(false)) {
        // Prefect's subscriber asks until a year from now; stored events end about now (a
        // minute's leeway for clocks), and a narrow range keeps the store's query narrow.
        let mut past = filter.clone();
        let soon = app.services.now() + chrono::Duration::minutes(1);
        past.occurred_until = Some(past.occurred_until.map_or(soon, |u| u.min(soon)));
        let mut offset = 0;
        loop {
            let Ok(page) = app.services.read_events(&past, BACKFILL_PAGE, offset).await else {
                return close(socket, close_code::ERROR, "events could not be read").await;
            };
            for event in &page {
                sent.insert(event.id);
                if send_event(&mut socket, event).await.is_err() {
                    return;
                }
            }
            if page.len() < BACKFILL_PAGE {
                break;
            }
            offset += page.len();
        }
    }
    loop {
        tokio::select! {
            received = live.recv() => match received {
                Ok(event) => {
                    if sent.remove(&event.id) || !filter.matches(&event) {
                        continue;
                    }
                    if send_event(&mut socket, &event).await.is_err() {
                        return;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "an events subscriber fell behind");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

async fn send_event(
    socket: &mut WebSocket,
    event: &sluice_core::domain::Event,
) -> Result<(), axum::Error> {
    let message = json!({"type": "event", "event": event_json(event)}).to_string();
    socket.send(Message::Text(message.into())).await
}

async fn close(mut socket: WebSocket, code: u16, reason: &str) {
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        })))
        .await;
}

/// The handshake: `true` when the socket may go on.
async fn handshake(
    app: &AppState,
    socket: &mut WebSocket,
    prefect: bool,
) -> Result<(), (u16, &'static str)> {
    if !prefect {
        // Prefect's legacy mode: no handshake, allowed only when nobody is asked for a key.
        return match app.key_check {
            None => Ok(()),
            Some(_) => Err((
                close_code::PROTOCOL,
                "'prefect' subprotocol required when auth is configured",
            )),
        };
    }
    // The client pings before it authenticates.
    let first = next_text(socket)
        .await
        .and_then(|t| serde_json::from_str::<Value>(&t).ok());
    let Some(first) = first.filter(|m| m["type"] == "auth") else {
        return Err((close_code::POLICY, "Expected 'auth' message"));
    };
    if let Some(check) = &app.key_check {
        let token = first["token"].as_str().unwrap_or_default();
        let Some(key) = crate::auth::key_from_auth_string(token) else {
            return Err((close_code::POLICY, "Auth required but no token provided"));
        };
        match check.authenticate(&key).await {
            Ok(true) => {}
            _ => return Err((close_code::POLICY, "Invalid token")),
        }
    }
    let ok = json!({"type": "auth_success"}).to_string();
    socket
        .send(Message::Text(ok.into()))
        .await
        .map_err(|_| (close_code::ERROR, "send failed"))
}

async fn serve_in(app: AppState, mut socket: WebSocket, prefect: bool) {
    if let Err((code, reason)) = handshake(&app, &mut socket, prefect).await {
        tracing::debug!(reason, "events socket refused");
        return close(socket, code, reason).await;
    }
    let mut batch = Vec::new();
    loop {
        // Wait for one message, then take what else has already arrived, up to a batch; a
        // ping ends the batch so its pong (sent by the next read) follows the stored events.
        let Some(Ok(first)) = socket.recv().await else {
            break;
        };
        let mut next = Some(first);
        let mut open = true;
        while let Some(message) = next.take() {
            match message {
                Message::Text(text) => match parse_event(&text, app.services.now()) {
                    Ok(event) => batch.push(event),
                    Err(why) => tracing::warn!(%why, "an event that is not one was dropped"),
                },
                Message::Close(_) => open = false,
                Message::Ping(_) => break,
                Message::Binary(_) | Message::Pong(_) => {}
            }
            if !open || batch.len() >= SOCKET_BATCH {
                break;
            }
            next = match socket.recv().now_or_never() {
                Some(Some(Ok(m))) => Some(m),
                Some(_) => {
                    open = false;
                    None
                }
                None => None,
            };
        }
        if !batch.is_empty() {
            if let Err(e) = app.services.ingest_events(&batch).await {
                // Unconfirmed events are resent by the client after it reconnects.
                tracing::warn!(error = %e, events = batch.len(), "events not stored; closing the socket");
                return close(socket, close_code::AGAIN, "events not stored; resend").await;
            }
            batch.clear();
        }
        if !open {
            break;
        }
    }
}

/// `POST /events/filter`: the first page, and a link to the next.
pub async fn filter(
    State(app): State<AppState>,
    headers: HeaderMap,
    Body(body): Body<Value>,
) -> ApiResult<Json<Value>> {
    only_keys(&body, &["filter", "limit"])?;
    let limit = match body.get("limit") {
        None | Some(Value::Null) => PAGE_SIZE,
        Some(v) => v
            .as_u64()
            .filter(|n| *n <= PAGE_SIZE as u64)
            .ok_or_else(|| {
                ApiError::invalid_field(
                    vec!["body".into(), "limit".into()],
                    format!("must be an integer between 0 and {PAGE_SIZE}"),
                )
            })? as usize,
    };
    page(
        &app,
        &headers,
        body.get("filter").cloned().unwrap_or(Value::Null),
        limit,
        0,
    )
    .await
}

/// `GET /events/filter/next?page-token=...`: the token carries the filter and the position.
pub async fn next_page(
    State(app): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let forbidden = || ApiError::Detail(StatusCode::FORBIDDEN, "Forbidden".to_owned());
    let token = q.get("page-token").ok_or_else(forbidden)?;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| forbidden())?;
    let state: Value = serde_json::from_slice(&raw).map_err(|_| forbidden())?;
    let limit = state["limit"].as_u64().ok_or_else(forbidden)? as usize;
    let offset = state["offset"].as_u64().ok_or_else(forbidden)? as usize;
    page(&app, &headers, state["filter"].clone(), limit, offset).await
}

async fn page(
    app: &AppState,
    headers: &HeaderMap,
    filter_body: Value,
    limit: usize,
    offset: usize,
) -> ApiResult<Json<Value>> {
    let filter = event_filter(Some(&filter_body))?;
    let total = app.services.count_events(&filter).await?;
    let events = app.services.read_events(&filter, limit, offset).await?;
    let next = offset + events.len();
    let next_page = if next < total && !events.is_empty() {
        let token = json!({"filter": filter_body, "limit": limit, "offset": next}).to_string();
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token);
        let header_text = |name| {
            headers
                .get(name)
                .and_then(|h: &axum::http::HeaderValue| h.to_str().ok())
        };
        let host = header_text(header::HOST.as_str()).unwrap_or("localhost");
        // Behind a TLS-terminating proxy (API Gateway, CloudFront) the link keeps its scheme.
        let scheme = header_text("x-forwarded-proto").unwrap_or("http");
        Some(format!(
            "{scheme}://{host}/api/events/filter/next?page-token={token}"
        ))
    } else {
        None
    };
    Ok(Json(json!({
        "events": events.iter().map(event_json).collect::<Vec<_>>(),
        "total": total,
        "next_page": next_page,
    })))
}

/// `POST /events/count-by/{countable}` (`day`, `time`, `event`, `resource`): Prefect's
/// `EventCount`s for the events the filter selects.
pub async fn count_by(
    State(app): State<AppState>,
    axum::extract::Path(countable): axum::extract::Path<String>,
    Body(body): Body<Value>,
) -> ApiResult<Json<Vec<Value>>> {
    use sluice_core::events::{Countable, TimeUnit};
    only_keys(&body, &["filter", "time_unit", "time_interval"])?;
    let countable = Countable::parse(&countable).ok_or_else(|| {
        ApiError::invalid_field(
            vec!["path".into(), "countable".into()],
            "Input should be 'day', 'time', 'event' or 'resource'",
        )
    })?;
    let unit = match body.get("time_unit").and_then(Value::as_str) {
        None => TimeUnit::Day,
        Some(u) => TimeUnit::parse(u).ok_or_else(|| {
            ApiError::invalid_field(
                vec!["body".into(), "time_unit".into()],
                "Input should be 'week', 'day', 'hour', 'minute' or 'second'",
            )
        })?,
    };
    let interval = match body.get("time_interval") {
        None | Some(Value::Null) => 1.0,
        Some(v) => v.as_f64().ok_or_else(|| {
            ApiError::invalid_field(
                vec!["body".into(), "time_interval".into()],
                "must be a number",
            )
        })?,
    };
    let filter = event_filter(body.get("filter"))?;
    let counts = app
        .services
        .count_events_by(&filter, countable, unit, interval)
        .await?;
    Ok(Json(
        counts
            .iter()
            .map(|c| {
                json!({
                    "value": c.value,
                    "label": c.label,
                    "count": c.count,
                    "start_time": crate::dto::ts(c.start_time),
                    "end_time": crate::dto::ts(c.end_time),
                })
            })
            .collect(),
    ))
}
