//! API-key authentication through the real router: refusals are 401 with a `detail` saying what
//! is wrong and `WWW-Authenticate: Bearer`, refused requests store nothing, the health probes
//! stay open, and a deleted key stops working (at once without the key cache, after its time to
//! live with it).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use sluice_api::{Auth, Options};
use sluice_services::{ManualClock, Services, Settings};
use sluice_store::SqliteStore;
use sluice_tests::{assert_detail, t0};
use tower::ServiceExt;

struct AuthApp {
    services: Services,
    clock: Arc<ManualClock>,
    router: axum::Router,
    _dir: tempfile::TempDir,
}

impl AuthApp {
    fn new(key_cache_ttl: Duration) -> AuthApp {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = SqliteStore::open(&dir.path().join("sluice.db")).expect("open sqlite");
        let clock = Arc::new(ManualClock::new(t0()));
        let services = Services::new(Arc::new(store), clock.clone(), Settings::default());
        let router = sluice_api::router_with(
            services.clone(),
            Options {
                auth: Auth::ApiKey,
                key_cache_ttl,
                ..Options::default()
            },
        );
        AuthApp {
            services,
            clock,
            router,
            _dir: dir,
        }
    }

    /// Without the key cache: every request asks the store.
    fn uncached() -> AuthApp {
        AuthApp::new(Duration::ZERO)
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        authorization: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Option<String>, Value) {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("/api{path}"))
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(a) = authorization {
            req = req.header(header::AUTHORIZATION, a);
        }
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let resp = self
            .router
            .clone()
            .oneshot(req.body(Body::from(body)).expect("a valid request"))
            .await
            .expect("the router answers");
        let status = resp.status();
        let challenge = resp
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .map(|v| v.to_str().expect("ASCII").to_owned());
        let bytes = resp.into_body().collect().await.expect("a body").to_bytes();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("a JSON body")
        };
        (status, challenge, value)
    }

    async fn create_pool(&self, authorization: Option<&str>, name: &str) -> (StatusCode, Value) {
        let (status, _, body) = self
            .call(
                Method::POST,
                "/work_pools/",
                authorization,
                Some(json!({"name": name, "type": "process"})),
            )
            .await;
        (status, body)
    }

    /// Asserts a 401 with the Bearer challenge; answers the detail.
    async fn refused(&self, method: Method, path: &str, authorization: Option<&str>) -> String {
        let (status, challenge, body) = self
            .call(method, path, authorization, Some(json!({})))
            .await;
        assert_eq!(
            challenge.as_deref(),
            Some("Bearer"),
            "{path} {authorization:?}: {body}"
        );
        assert_detail(status, &body, StatusCode::UNAUTHORIZED)
    }

    async fn pool_names(&self) -> Vec<String> {
        self.services
            .store
            .list_work_pools(&Default::default(), None, 0)
            .await
            .expect("list pools")
            .into_iter()
            .map(|p| p.name)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect()
    }
}

fn bearer(secret: &str) -> String {
    format!("Bearer {secret}")
}

#[tokio::test]
async fn refused_requests_say_why_and_store_nothing() {
    let app = AuthApp::uncached();
    let key = app.services.create_api_key("ci").await.expect("create key");

    let missing = app.refused(Method::POST, "/work_pools/", None).await;
    assert!(
        missing.contains("Authorization header is missing"),
        "{missing}"
    );

    // Prefect's auth string arrives as Basic: it must hold a key.
    let detail = app
        .refused(Method::POST, "/work_pools/", Some("Basic dXNlcjpwYXNz"))
        .await;
    assert!(detail.starts_with("Unknown API key"), "{detail}");

    for malformed in [
        "Basic !!!".to_owned(),
        "Bearer".to_owned(),
        key.secret.clone(),
        format!("Bearer {} extra", key.secret),
    ] {
        let detail = app
            .refused(Method::POST, "/work_pools/", Some(&malformed))
            .await;
        assert!(detail.starts_with("Malformed"), "{malformed}: {detail}");
    }

    // The right shape, but no such key (one hex digit changed).
    let last = if key.secret.ends_with('0') { "1" } else { "0" };
    let unknown = format!("{}{last}", &key.secret[..key.secret.len() - 1]);
    let detail = app
        .refused(Method::POST, "/work_pools/", Some(&bearer(&unknown)))
        .await;
    assert_eq!(detail, "Unknown API key.");
    let detail = app
        .refused(Method::POST, "/work_pools/", Some("Bearer pnu_abc"))
        .await;
    assert!(detail.starts_with("Unknown API key"), "{detail}");

    assert_eq!(
        app.pool_names().await,
        Vec::<String>::new(),
        "nothing stored"
    );

    // Reads, unknown paths and the version probes are guarded too.
    for path in ["/work_pools/x", "/admin/version", "/no/such/route"] {
        app.refused(Method::GET, path, None).await;
    }
}

#[tokio::test]
async fn a_valid_key_is_served() {
    let app = AuthApp::uncached();
    let key = app.services.create_api_key("ci").await.expect("create key");
    let auth = bearer(&key.secret);

    let (status, body) = app.create_pool(Some(&auth), "local").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, _, body) = app
        .call(Method::GET, "/work_pools/local", Some(&auth), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["name"], "local");
    // The scheme is case-insensitive.
    let (status, _, _) = app
        .call(
            Method::GET,
            "/admin/version",
            Some(&format!("bearer {}", key.secret)),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // Prefect's auth string (`PREFECT_API_AUTH_STRING`), `user:key` or the key alone, as Basic.
    for auth_string in [format!("sluice:{}", key.secret), key.secret.clone()] {
        use base64::Engine;
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(auth_string)
        );
        let (status, _, _) = app
            .call(Method::GET, "/admin/version", Some(&basic), None)
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    // A handler's own errors come through unchanged once authenticated.
    let (status, _, _) = app
        .call(Method::GET, "/work_pools/nope", Some(&auth), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(app.pool_names().await, ["local"]);
}

#[tokio::test]
async fn health_probes_need_no_key() {
    let app = AuthApp::uncached();
    for path in ["/health", "/ready"] {
        let (status, _, body) = app.call(Method::GET, path, None, None).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(body, json!(true), "{path}");
    }
    // Only reads of them.
    app.refused(Method::POST, "/health", None).await;
}

#[tokio::test]
async fn a_deleted_key_stops_working() {
    let app = AuthApp::uncached();
    let key = app.services.create_api_key("ci").await.expect("create key");
    let auth = bearer(&key.secret);
    assert_eq!(
        app.create_pool(Some(&auth), "one").await.0,
        StatusCode::CREATED
    );

    app.services.delete_api_key("ci").await.expect("delete");
    let detail = app.refused(Method::POST, "/work_pools/", Some(&auth)).await;
    assert_eq!(detail, "Unknown API key.");
    assert_eq!(app.pool_names().await, ["one"]);
}

#[tokio::test]
async fn with_the_cache_a_deleted_key_works_until_its_ttl_ends() {
    let app = AuthApp::new(Duration::from_secs(60));
    let key = app.services.create_api_key("ci").await.expect("create key");
    let auth = bearer(&key.secret);
    assert_eq!(
        app.create_pool(Some(&auth), "one").await.0,
        StatusCode::CREATED
    );

    app.services.delete_api_key("ci").await.expect("delete");
    app.clock.advance(chrono::Duration::seconds(59));
    assert_eq!(
        app.create_pool(Some(&auth), "two").await.0,
        StatusCode::CREATED,
        "still cached"
    );
    app.clock.advance(chrono::Duration::seconds(1));
    let detail = app.refused(Method::POST, "/work_pools/", Some(&auth)).await;
    assert_eq!(detail, "Unknown API key.");

    // A key created after the router was built works at once: misses are not cached.
    let late = app.services.create_api_key("late").await.expect("create");
    assert_eq!(
        app.create_pool(Some(&bearer(&late.secret)), "three")
            .await
            .0,
        StatusCode::CREATED
    );
    assert_eq!(app.pool_names().await, ["one", "three", "two"]);
}

#[tokio::test]
async fn without_auth_nothing_is_asked() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = SqliteStore::open(&dir.path().join("sluice.db")).expect("open sqlite");
    let services = Services::new(
        Arc::new(store),
        Arc::new(ManualClock::new(t0())),
        Settings::default(),
    );
    for router in [
        sluice_api::router(services.clone()),
        sluice_api::router_with(services, Options::default()),
    ] {
        let req = Request::builder()
            .method(Method::GET)
            .uri("/api/work_pools/nope")
            .body(Body::empty())
            .expect("a request");
        let resp = router.oneshot(req).await.expect("an answer");
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    }
}
