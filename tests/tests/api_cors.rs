//! CORS as Prefect's server answers it, for Prefect's UI served from another origin: a
//! preflight from an allowed origin is answered (even when API keys are required, since
//! preflights carry no key), and answers carry `access-control-allow-origin`; with no origins
//! configured (the router's default) there are no CORS headers.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use sluice_api::{Auth, Options};
use sluice_services::{Services, Settings, SystemClock};
use sluice_store::SqliteStore;
use tower::ServiceExt;

fn router(origins: &[&str], auth: Auth) -> (axum::Router, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("s.db")).expect("open");
    let services = Services::new(Arc::new(store), Arc::new(SystemClock), Settings::default());
    let router = sluice_api::router_with(
        services,
        Options {
            auth,
            cors_allowed_origins: origins.iter().map(|o| (*o).to_owned()).collect(),
            ..Options::default()
        },
    );
    (router, dir)
}

async fn preflight(router: &axum::Router, origin: &str) -> axum::response::Response {
    router
        .clone()
        .oneshot(
            Request::builder()
                .method("OPTIONS")
                .uri("/api/flow_runs/filter")
                .header(header::ORIGIN, origin)
                .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
                .header(
                    header::ACCESS_CONTROL_REQUEST_HEADERS,
                    "content-type,x-prefect-ui",
                )
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("answer")
}

fn allowed(r: &axum::response::Response) -> Option<&str> {
    r.headers()
        .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
        .and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn preflights_and_answers_carry_cors_headers_for_allowed_origins() {
    let (any, _d1) = router(&["*"], Auth::ApiKey);
    let r = preflight(&any, "http://localhost:4200").await;
    assert_eq!(r.status(), StatusCode::OK, "a preflight needs no key");
    assert_eq!(allowed(&r), Some("*"));
    let methods = r
        .headers()
        .get(header::ACCESS_CONTROL_ALLOW_METHODS)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        methods.contains('*') || methods.contains("POST"),
        "{methods}"
    );
    // The real request is still refused without a key, with the CORS header so the UI can
    // read why.
    let refused = any
        .clone()
        .oneshot(
            Request::builder()
                .method("POST")
                .uri("/api/flow_runs/filter")
                .header(header::ORIGIN, "http://localhost:4200")
                .body(Body::from("{}"))
                .expect("request"),
        )
        .await
        .expect("answer");
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(allowed(&refused), Some("*"));

    let (listed, _d2) = router(&["https://ui.example.com"], Auth::None);
    let r = preflight(&listed, "https://ui.example.com").await;
    assert_eq!(allowed(&r), Some("https://ui.example.com"));
    let r = preflight(&listed, "https://elsewhere.example.com").await;
    assert_eq!(
        allowed(&r),
        None,
        "an origin not listed gets no CORS header"
    );

    let (none, _d3) = router(&[], Auth::None);
    let r = preflight(&none, "http://localhost:4200").await;
    assert_eq!(allowed(&r), None);
}
