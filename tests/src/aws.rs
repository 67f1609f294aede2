//! Harness for the tests that run against DynamoDB and drive the Lambda handlers in-process.
//!
//! They need an endpoint: the moto emulator (`infra/moto.sh start`), LocalStack or an account,
//! given by the SDK's standard `AWS_ENDPOINT_URL` with credentials and region in the usual
//! variables. Without one, each test says so and passes, so a plain `cargo test` stays
//! self-contained; `SLUICE_REQUIRE_AWS=1` (set by `infra/test.sh`, so in CI) makes them run
//! always, against the account the credentials reach when no endpoint is set.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use axum::http::StatusCode;
use lambda_http::request::LambdaRequest;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::Value;
use sluice_store_dynamodb::{DynamoStore, Retention};
use tower::ServiceExt;

/// Whether to run: with an endpoint configured, or with `SLUICE_REQUIRE_AWS=1` (then against
/// the environment's account when no endpoint is set). Otherwise prints a notice and answers
/// `false`.
pub fn aws_available(test: &str) -> bool {
    if std::env::var_os("AWS_ENDPOINT_URL").is_some_and(|v| !v.is_empty()) {
        return true;
    }
    if std::env::var("SLUICE_REQUIRE_AWS").as_deref() == Ok("1") {
        // Required with no endpoint: the account the environment's credentials reach.
        return true;
    }
    sluice_testkit::skip(
        test,
        "AWS_ENDPOINT_URL is not set (start the emulator with infra/moto.sh start)",
    )
}

/// A table of its own for one test: `sluice-test-<uuid>`, created with its indexes, deleted by
/// [`TestTable::delete`] at the end of the test (a test that panics leaves it behind, which
/// costs nothing on the emulator).
pub struct TestTable {
    pub store: DynamoStore,
}

impl TestTable {
    pub async fn create() -> TestTable {
        let name = format!("sluice-test-{}", uuid::Uuid::new_v4());
        let store = DynamoStore::connect(name, Retention::default()).await;
        store.ensure_table().await.expect("create the test table");
        TestTable { store }
    }

    pub fn name(&self) -> &str {
        self.store.table()
    }

    pub async fn delete(self) {
        self.store
            .delete_table()
            .await
            .expect("delete the test table");
    }
}

/// A Lambda event fixture from `infra/events/`, as JSON.
pub fn fixture(name: &str) -> Value {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "..", "infra", "events", name]
        .iter()
        .collect();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("read the fixture {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

/// An HTTP API (payload v2) event made from a fixture with another method, path (with an
/// optional `?query`) and body: the rest (headers, request context) is the fixture's.
pub fn http_event(base: &Value, method: &str, path_and_query: &str, body: Option<&Value>) -> Value {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let mut event = base.clone();
    event["rawPath"] = Value::from(path);
    event["rawQueryString"] = Value::from(query);
    if let Some(obj) = event.as_object_mut() {
        if query.is_empty() {
            obj.remove("queryStringParameters");
        } else {
            // API Gateway also sends the decoded pairs; lambda_http reads the raw string.
            let pairs: serde_json::Map<String, Value> = query
                .split('&')
                .filter_map(|pair| pair.split_once('='))
                .map(|(k, v)| (k.to_owned(), Value::from(v)))
                .collect();
            obj.insert("queryStringParameters".to_owned(), Value::Object(pairs));
        }
    }
    event["requestContext"]["http"]["method"] = Value::from(method);
    event["requestContext"]["http"]["path"] = Value::from(path);
    event["isBase64Encoded"] = Value::Bool(false);
    let headers = event["headers"]
        .as_object_mut()
        .expect("the fixture has headers");
    match body {
        Some(body) => {
            let text = body.to_string();
            headers.insert("content-length".to_owned(), text.len().to_string().into());
            headers.insert("content-type".to_owned(), "application/json".into());
            event["body"] = Value::from(text);
        }
        None => {
            headers.remove("content-length");
            if let Some(obj) = event.as_object_mut() {
                obj.remove("body");
            }
        }
    }
    event
}

/// Sets (or, with `None`, removes) the event's `authorization` header.
pub fn with_authorization(mut event: Value, value: Option<&str>) -> Value {
    let headers = event["headers"]
        .as_object_mut()
        .expect("the event has headers");
    match value {
        Some(v) => {
            headers.insert("authorization".to_owned(), v.into());
        }
        None => {
            headers.remove("authorization");
        }
    }
    event
}

/// A Lambda context as the runtime builds it for one invocation with a minute left.
pub fn lambda_context() -> Context {
    let mut context = Context::default();
    context.request_id = uuid::Uuid::new_v4().to_string();
    let deadline = SystemTime::now() + Duration::from_secs(60);
    context.deadline = u64::try_from(
        deadline
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("after the epoch")
            .as_millis(),
    )
    .expect("fits in u64");
    context.invoked_function_arn =
        "arn:aws:lambda:us-east-1:123456789012:function:sluice-api".to_owned();
    context
}

/// What the api function answered, as API Gateway receives it.
#[derive(Debug, Clone)]
pub struct HttpAnswer {
    pub status: StatusCode,
    /// The body parsed as JSON (`Null` when empty, a string when not JSON).
    pub body: Value,
    /// The whole response document the function returned to the runtime.
    pub raw: Value,
}

/// Invokes the api function's router exactly as `lambda_http::run` does: the event JSON is
/// deserialised into `lambda_http`'s request type, passed through its adapter with a Lambda
/// context, and the response document it returns to the runtime is serialised back to JSON.
pub async fn invoke_http(router: &axum::Router, event: Value) -> HttpAnswer {
    let request: LambdaRequest =
        serde_json::from_value(event).expect("an event lambda_http accepts");
    let adapter = lambda_http::Adapter::from(router.clone());
    let response = adapter
        .oneshot(LambdaEvent::new(request, lambda_context()))
        .await
        .unwrap_or_else(|e: std::convert::Infallible| match e {});
    let raw = serde_json::to_value(&response).expect("the response serialises");
    let status = raw["statusCode"]
        .as_u64()
        .and_then(|s| u16::try_from(s).ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or_else(|| panic!("a status code in {raw}"));
    assert_eq!(
        raw["isBase64Encoded"], false,
        "JSON answers go out as text: {raw}"
    );
    let body = match raw["body"].as_str() {
        None | Some("") => Value::Null,
        Some(text) => serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned())),
    };
    HttpAnswer { status, body, raw }
}

/// What `infra/aws_fixture.py` provisioned: an ECS cluster and a Batch job queue in the default
/// VPC, for the push tests.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct PushTarget {
    pub cluster: String,
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
    pub job_queue: String,
}

/// Runs `infra/aws_fixture.py NAME` with the tools' Python (boto3 comes with moto there;
/// `SLUICE_TOOLS` moves it as it moves the tools) against the same endpoint as the tests.
pub fn push_target(name: &str) -> PushTarget {
    let repo: PathBuf = [env!("CARGO_MANIFEST_DIR"), ".."].iter().collect();
    // Where infra/tools.sh puts them: $SLUICE_TOOLS, else tools/ in the cargo target directory.
    let tools = std::env::var_os("SLUICE_TOOLS")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR")
                .filter(|v| !v.is_empty())
                .map(|t| PathBuf::from(t).join("tools"))
        })
        .unwrap_or_else(|| repo.join("target").join("tools"));
    let python = tools.join("bin").join("python");
    let out = std::process::Command::new(&python)
        .arg(repo.join("infra").join("aws_fixture.py"))
        .arg(name)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "run {} (install it with infra/tools.sh moto): {e}",
                python.display()
            )
        });
    assert!(
        out.status.success(),
        "infra/aws_fixture.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the fixture prints JSON")
}
