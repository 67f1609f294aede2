//! `coldstart`: cold-start time of a Lambda function binary, measured on this machine.
//!
//! It serves the Lambda Runtime API on loopback (the few routes a custom runtime uses), starts
//! the function binary as Lambda would (`AWS_LAMBDA_RUNTIME_API` and the function's environment),
//! hands it one event and times, from the moment the process is spawned:
//! - init: until its first `GET .../invocation/next` (process start, configuration, SDK client,
//!   router: everything before it can take work);
//! - first response: until it posts the answer to that first event.
//!
//! Each run uses a fresh process, which is killed once it has answered. Lambda's own work
//! (downloading the code, starting the micro-VM) is not included: this is the part the function
//! controls.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use clap::{Parser, ValueEnum};
use serde_json::{Value, json};

#[derive(Parser)]
struct Args {
    /// The function binary, e.g. target/release/api or target/lambda/api/bootstrap.
    binary: PathBuf,
    /// Fresh processes per scenario.
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// The first event each process gets: `health` (GET /api/health, no store access) and/or
    /// `filter` (POST /api/work_pools/filter, one DynamoDB query).
    #[arg(long, value_enum, num_args = 1.., default_values_t = vec![Scenario::Health, Scenario::Filter])]
    scenarios: Vec<Scenario>,
    /// Where the HTTP API event fixtures are.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/events"))]
    events: PathBuf,
    /// `SLUICE_TABLE` for the function.
    #[arg(long, default_value = "sluice-coldstart")]
    table: String,
    /// Create the table first when it does not exist (through the SDK's standard environment,
    /// e.g. `AWS_ENDPOINT_URL` for the emulator).
    #[arg(long)]
    ensure_table: bool,
    /// `SLUICE_AUTH` for the function.
    #[arg(long, default_value = "none")]
    auth: String,
    /// Sent as `authorization: Bearer KEY` in place of the fixtures' placeholder.
    #[arg(long)]
    api_key: Option<String>,
    /// Give up on a process that has not answered after this many seconds.
    #[arg(long, default_value_t = 10)]
    timeout_seconds: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Scenario {
    Health,
    Filter,
}

impl Scenario {
    fn fixture(self) -> &'static str {
        match self {
            Scenario::Health => "api-health.json",
            Scenario::Filter => "api-read-work-pools.json",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Scenario::Health => "GET /api/health",
            Scenario::Filter => "POST /api/work_pools/filter",
        }
    }
}

/// What the emulated Runtime API saw of the current process.
#[derive(Default)]
struct Trial {
    /// The event still to hand out, with its request id.
    event: Option<(String, Bytes)>,
    first_next: Option<Instant>,
    response: Option<(Instant, Bytes)>,
    error: Option<String>,
}

#[derive(Clone, Default)]
struct Emulator {
    trial: Arc<Mutex<Trial>>,
    changed: Arc<tokio::sync::Notify>,
}

impl Emulator {
    fn with<T>(&self, f: impl FnOnce(&mut Trial) -> T) -> T {
        let mut trial = self
            .trial
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut trial)
    }
}

async fn next(State(emulator): State<Emulator>) -> axum::response::Response {
    let now = Instant::now();
    let event = emulator.with(|t| {
        t.first_next.get_or_insert(now);
        t.event.take()
    });
    emulator.changed.notify_one();
    let Some((request_id, body)) = event else {
        // One event per process: later polls wait until the process is killed.
        return std::future::pending().await;
    };
    let deadline = SystemTime::now() + Duration::from_secs(30);
    let deadline_ms = deadline
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    let mut headers = HeaderMap::new();
    let mut put = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    };
    put("lambda-runtime-aws-request-id", request_id);
    put("lambda-runtime-deadline-ms", deadline_ms.to_string());
    put(
        "lambda-runtime-invoked-function-arn",
        "arn:aws:lambda:us-east-1:123456789012:function:sluice-api".to_owned(),
    );
    put(
        "lambda-runtime-trace-id",
        "Root=1-69b30e3e-8a1d2b4c6e8f0a1b3c5d7e9f;Parent=53995c3f42cd8ad8;Sampled=0".to_owned(),
    );
    put("content-type", "application/json".to_owned());
    (StatusCode::OK, headers, body).into_response()
}

async fn response(
    State(emulator): State<Emulator>,
    Path(_id): Path<String>,
    body: Bytes,
) -> StatusCode {
    let now = Instant::now();
    emulator.with(|t| t.response = Some((now, body)));
    emulator.changed.notify_one();
    StatusCode::ACCEPTED
}

async fn invocation_error(
    State(emulator): State<Emulator>,
    Path(_id): Path<String>,
    body: Bytes,
) -> StatusCode {
    let text = String::from_utf8_lossy(&body).into_owned();
    emulator.with(|t| t.error = Some(format!("invocation error: {text}")));
    emulator.changed.notify_one();
    StatusCode::ACCEPTED
}

async fn init_error(State(emulator): State<Emulator>, body: Bytes) -> StatusCode {
    let text = String::from_utf8_lossy(&body).into_owned();
    emulator.with(|t| t.error = Some(format!("init error: {text}")));
    emulator.changed.notify_one();
    StatusCode::ACCEPTED
}

struct Sample {
    init: Duration,
    first_response: Duration,
}

/// Kills the function process however the measurement ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn one_run(
    args: &Args,
    emulator: &Emulator,
    runtime_api: &str,
    event: &Bytes,
    request_id: String,
) -> anyhow::Result<Sample> {
    emulator.with(|t| {
        *t = Trial {
            event: Some((request_id, event.clone())),
            ..Trial::default()
        }
    });
    let mut command = Command::new(&args.binary);
    command
        .env("AWS_LAMBDA_RUNTIME_API", runtime_api)
        .env("AWS_LAMBDA_FUNCTION_NAME", "sluice-api")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/sluice-api")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "coldstart")
        .env("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand")
        .env("SLUICE_TABLE", &args.table)
        .env("SLUICE_AUTH", &args.auth)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let started = Instant::now();
    let mut child = Running(
        command
            .spawn()
            .with_context(|| format!("start {}", args.binary.display()))?,
    );
    let give_up = started + Duration::from_secs(args.timeout_seconds);
    loop {
        let notified = emulator.changed.notified();
        let (first_next, response, error) =
            emulator.with(|t| (t.first_next, t.response.clone(), t.error.clone()));
        if let Some(e) = error {
            bail!("the function reported an {e}");
        }
        if let (Some(first_next), Some((answered, body))) = (first_next, response) {
            let answer: Value = serde_json::from_slice(&body).context("a JSON response")?;
            if answer["statusCode"] != json!(200) {
                bail!("the function answered {answer}");
            }
            return Ok(Sample {
                init: first_next - started,
                first_response: answered - started,
            });
        }
        if let Some(status) = child.0.try_wait()? {
            bail!("the function exited before answering: {status}");
        }
        if Instant::now() > give_up {
            bail!("no answer within {} s", args.timeout_seconds);
        }
        // Woken by the emulator, or after a short while to look at the process again.
        let _ = tokio::time::timeout(Duration::from_millis(50), notified).await;
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Median, 90th percentile (nearest rank) and maximum, in milliseconds.
fn stats(mut values: Vec<Duration>) -> (f64, f64, f64) {
    values.sort();
    let rank = |p: f64| {
        let n = values.len();
        let i = ((p * n as f64).ceil() as usize).clamp(1, n) - 1;
        ms(values[i])
    };
    (rank(0.5), rank(0.9), ms(values[values.len() - 1]))
}

fn event_for(args: &Args, scenario: Scenario) -> anyhow::Result<Bytes> {
    let path = args.events.join(scenario.fixture());
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
    let mut event: Value = serde_json::from_str(&text)?;
    if let Some(key) = &args.api_key {
        event["headers"]["authorization"] = Value::from(format!("Bearer {key}"));
    }
    Ok(Bytes::from(serde_json::to_vec(&event)?))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    if args.ensure_table {
        let store = sluice_store_dynamodb::DynamoStore::connect(
            args.table.clone(),
            sluice_store_dynamodb::Retention::default(),
        )
        .await;
        store
            .ensure_table()
            .await
            .with_context(|| format!("create table {}", args.table))?;
    }

    let emulator = Emulator::default();
    let app = axum::Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(response),
        )
        .route(
            "/2018-06-01/runtime/invocation/{id}/error",
            post(invocation_error),
        )
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .with_state(emulator.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let runtime_api = listener.local_addr()?.to_string();
    tokio::spawn(async move { axum::serve(listener, app).await });

    for scenario in args.scenarios.clone() {
        let event = event_for(&args, scenario)?;
        let mut samples = Vec::with_capacity(args.runs);
        for i in 0..args.runs {
            let request_id = format!("coldstart-{scenario:?}-{i}").to_lowercase();
            samples.push(one_run(&args, &emulator, &runtime_api, &event, request_id).await?);
        }
        let init = stats(samples.iter().map(|s| s.init).collect());
        let first = stats(samples.iter().map(|s| s.first_response).collect());
        println!(
            "{} ({} fresh processes)\n  {:<36} median {:>7.1} ms  p90 {:>7.1} ms  max {:>7.1} ms\n  {:<36} median {:>7.1} ms  p90 {:>7.1} ms  max {:>7.1} ms",
            scenario.name(),
            args.runs,
            "init (spawn -> first /next)",
            init.0,
            init.1,
            init.2,
            "first response (spawn -> response)",
            first.0,
            first.1,
            first.2,
        );
        println!(
            "{}",
            json!({
                "scenario": scenario.name(), "runs": args.runs,
                "init_ms": {"median": init.0, "p90": init.1, "max": init.2},
                "first_response_ms": {"median": first.0, "p90": first.1, "max": first.2},
            })
        );
    }
    Ok(())
}
