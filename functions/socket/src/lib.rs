//! The events WebSocket of the deployed stack. API Gateway's HTTP API has no WebSockets, so
//! `/api/events/in` is an API Gateway WebSocket API (behind the same CloudFront distribution as
//! the HTTP API, so one `PREFECT_API_URL` serves both; see docs/aws.md):
//!
//! - `$connect` ([`connect`]): the upgrade must carry the stack's API key in `Authorization`:
//!   Prefect's client sends its auth string there as `Basic` when `PREFECT_API_AUTH_STRING` is
//!   set (to the key, or `user:key`). The `prefect` subprotocol is selected when offered.
//! - the `auth` route ([`auth`], selected by the message's `type`): Prefect's handshake message,
//!   answered `{"type": "auth_success"}` when its token is a key (the route's response is the
//!   socket's answer).
//! - `$default`: every other message, an event, goes straight from API Gateway to an SQS queue
//!   (no function in between), so an event API Gateway accepted is kept even if the ingestion
//!   fails for a while; [`ingest`] takes the queued events in by batches: task runs recorded
//!   and events stored, both idempotent by id, so SQS's redeliveries change nothing.
//!
//! A checkpoint (the client's ping) is answered by API Gateway itself once the frames before it
//! were received: on this path "confirmed" means queued, not yet stored.

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::encodings::Body;
use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use serde::Serialize;
use serde_json::{Value, json};
use sluice_services::{ApiKeyCache, Services};

fn response(status: i64, body: Option<Value>) -> ApiGatewayProxyResponse {
    let mut r = ApiGatewayProxyResponse::default();
    r.status_code = status;
    r.body = body.map(|b| Body::Text(b.to_string()));
    r
}

async fn is_key(services: &Services, cache: &ApiKeyCache, key: &str) -> bool {
    sluice_core::api_keys::is_well_formed(key)
        && matches!(services.authenticate_cached(key, cache).await, Ok(Some(_)))
}

/// `$connect`: 200 (with the `prefect` subprotocol when offered) for an upgrade that carries a
/// key, 401 otherwise.
pub async fn connect(
    services: &Services,
    cache: &ApiKeyCache,
    request: &ApiGatewayWebsocketProxyRequest,
) -> ApiGatewayProxyResponse {
    let key = request
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(sluice_api::key_from_authorization);
    let Some(key) = key else {
        tracing::info!("events socket refused: no key in Authorization");
        return response(401, None);
    };
    if !is_key(services, cache, &key).await {
        tracing::info!("events socket refused: unknown key");
        return response(401, None);
    }
    let mut ok = response(200, None);
    let offered = request
        .headers
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.split(',').any(|x| x.trim() == "prefect"));
    if offered && let Ok(v) = "prefect".parse() {
        ok.headers.insert("sec-websocket-protocol", v);
    }
    ok
}

/// The `auth` route: Prefect's handshake message. Its answer is sent back on the socket.
pub async fn auth(
    services: &Services,
    cache: &ApiKeyCache,
    request: &ApiGatewayWebsocketProxyRequest,
) -> ApiGatewayProxyResponse {
    let message: Value = request
        .body
        .as_deref()
        .and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    let token = message["token"].as_str().unwrap_or_default();
    let valid = match sluice_api::key_from_auth_string(token) {
        Some(key) => is_key(services, cache, &key).await,
        None => false,
    };
    let answer = if valid {
        json!({"type": "auth_success"})
    } else {
        json!({"type": "auth_failure", "reason": "Invalid token"})
    };
    response(200, Some(answer))
}

/// Routes a WebSocket API request by its route key.
pub async fn handle_socket(
    services: &Services,
    cache: &ApiKeyCache,
    request: ApiGatewayWebsocketProxyRequest,
) -> ApiGatewayProxyResponse {
    match request.request_context.route_key.as_deref() {
        Some("$connect") => connect(services, cache, &request).await,
        Some("$disconnect") => response(200, None),
        Some("auth") => auth(services, cache, &request).await,
        other => {
            tracing::warn!(route = ?other, "a route this function does not serve");
            response(400, None)
        }
    }
}

/// What one ingestion batch did, for its log line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Ingested {
    pub events: usize,
    pub new: usize,
    pub unreadable: usize,
}

/// Takes in a batch of queued events (each message's body is one event as the client sent it,
/// received when SQS took it). Unreadable messages are dropped and logged (a retry cannot fix
/// them); a store failure fails the whole batch, which SQS delivers again.
pub async fn ingest(services: &Services, event: SqsEvent) -> (SqsBatchResponse, Ingested) {
    let mut summary = Ingested::default();
    let mut events = Vec::new();
    let mut ids = Vec::new();
    for record in event.records {
        let received = record
            .attributes
            .get("SentTimestamp")
            .and_then(|ms| ms.parse::<i64>().ok())
            .and_then(chrono::DateTime::from_timestamp_millis)
            .unwrap_or_else(|| services.now());
        let body = record.body.as_deref().unwrap_or_default();
        match sluice_api::dto::events::parse_event(body, received) {
            Ok(e) => {
                events.push(e);
                ids.push(record.message_id.unwrap_or_default());
            }
            Err(why) => {
                tracing::error!(message_id = ?record.message_id, %why, "a queued message that is not an event was dropped");
                summary.unreadable += 1;
            }
        }
    }
    summary.events = events.len();
    let mut response = SqsBatchResponse::default();
    match services.ingest_events(&events).await {
        Ok(n) => summary.new = n,
        Err(e) => {
            tracing::warn!(error = %e, events = events.len(), "events not stored; SQS will deliver them again");
            response.batch_item_failures = ids
                .into_iter()
                .map(|id| {
                    let mut failure = BatchItemFailure::default();
                    failure.item_identifier = id;
                    failure
                })
                .collect();
        }
    }
    (response, summary)
}
