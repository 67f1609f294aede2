//! Test harness: an API over a fresh SQLite file, called in-process through the one router;
//! [`aws`] for the tests over DynamoDB and the Lambda handlers.

pub mod aws;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use sluice_services::{Clock, Services, Settings, SystemClock};
use sluice_store::SqliteStore;
use tower::ServiceExt;

pub struct TestApp {
    pub services: Services,
    router: axum::Router,
    _dir: tempfile::TempDir,
}

impl TestApp {
    /// A fresh database file in a temporary directory, with the system clock.
    pub fn new() -> TestApp {
        TestApp::with_clock(Arc::new(SystemClock))
    }

    /// A fresh database file with the given clock (a `ManualClock` makes every timestamp the
    /// API writes predictable).
    pub fn with_clock(clock: Arc<dyn Clock>) -> TestApp {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = SqliteStore::open(&dir.path().join("sluice.db")).expect("open sqlite");
        let services = Services::new(Arc::new(store), clock, Settings::default());
        let router = sluice_api::router(services.clone());
        TestApp {
            services,
            router,
            _dir: dir,
        }
    }

    /// Sends one request through the router; answers the status and the JSON body (Null when
    /// the body is empty, a string when it is not JSON).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let bytes = body.map(|b| b.to_string()).unwrap_or_default();
        self.raw(method, path, bytes.into_bytes()).await
    }

    pub async fn raw(&self, method: Method, path: &str, body: Vec<u8>) -> (StatusCode, Value) {
        let (status, _, value) = self.with_headers(method, path, body).await;
        (status, value)
    }

    /// As [`TestApp::raw`], with the response's headers.
    pub async fn with_headers(
        &self,
        method: Method,
        path: &str,
        body: Vec<u8>,
    ) -> (StatusCode, axum::http::HeaderMap, Value) {
        let req = Request::builder()
            .method(method)
            .uri(format!("/api{path}"))
            .header("content-type", "application/json")
            .body(Body::from(body))
            .expect("a valid request");
        let resp = self
            .router
            .clone()
            .oneshot(req)
            .await
            .expect("the router answers");
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.expect("a body").to_bytes();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        (status, headers, value)
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PATCH, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::DELETE, path, None).await
    }
}

/// The instant tests built on [`TestApp::at_t0`] start at: 2026-01-01T12:00:00Z.
pub fn t0() -> chrono::DateTime<chrono::Utc> {
    use chrono::TimeZone;
    chrono::Utc
        .with_ymd_and_hms(2026, 1, 1, 12, 0, 0)
        .single()
        .expect("a valid instant")
}

/// [`t0`] as the API writes it.
pub const T0: &str = "2026-01-01T12:00:00.000000Z";

impl TestApp {
    /// A fresh app whose clock stands still at [`t0`] until the test moves it.
    pub fn at_t0() -> (TestApp, Arc<sluice_services::ManualClock>) {
        let clock = Arc::new(sluice_services::ManualClock::new(t0()));
        (TestApp::with_clock(clock.clone()), clock)
    }
}

/// Asserts Prefect's request-validation answer: 422 with `exception_message` "Invalid request
/// received." and the first `exception_detail` entry located at `loc` (e.g.
/// `["body", "name"]`).
#[track_caller]
pub fn assert_invalid(status: StatusCode, body: &Value, loc: &Value) {
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(
        body["exception_message"], "Invalid request received.",
        "{body}"
    );
    let detail = &body["exception_detail"][0];
    assert_eq!(&detail["loc"], loc, "{body}");
    assert!(detail["msg"].is_string(), "{body}");
    assert!(detail["type"].is_string(), "{body}");
    assert!(body.get("request_body").is_some(), "{body}");
}

/// Asserts an `HTTPException`-style answer: the status and a body that is exactly
/// `{"detail": <string>}`; answers the detail.
#[track_caller]
pub fn assert_detail(status: StatusCode, body: &Value, want: StatusCode) -> String {
    assert_eq!(status, want, "{body}");
    let obj = body
        .as_object()
        .unwrap_or_else(|| panic!("an object: {body}"));
    assert_eq!(obj.len(), 1, "only `detail`: {body}");
    obj["detail"]
        .as_str()
        .unwrap_or_else(|| panic!("a string detail: {body}"))
        .to_owned()
}

/// The keys of a JSON object, sorted.
#[track_caller]
pub fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .unwrap_or_else(|| panic!("an object: {v}"))
        .keys()
        .cloned()
        .collect();
    k.sort();
    k
}

/// A sorted list of owned strings, for comparing key sets.
pub fn sorted(items: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = items.iter().map(|s| (*s).to_owned()).collect();
    v.sort();
    v
}

impl Default for TestApp {
    fn default() -> TestApp {
        TestApp::new()
    }
}
