//! Test harness: an API over a fresh SQLite file, called in-process through the one router.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use sluice_services::{Services, Settings, SystemClock};
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
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = SqliteStore::open(&dir.path().join("sluice.db")).expect("open sqlite");
        let services = Services::new(Arc::new(store), Arc::new(SystemClock), Settings::default());
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
        let bytes = resp.into_body().collect().await.expect("a body").to_bytes();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        (status, value)
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None).await
    }
}

impl Default for TestApp {
    fn default() -> TestApp {
        TestApp::new()
    }
}
