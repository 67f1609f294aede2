//! Shared by the CLI test crates: a real `sluice server start` on a free loopback port with a
//! temporary database, and a way to run the `sluice` binary against it.

// Each test crate uses a different part of this module; what one leaves unused is not dead.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const SLUICE: &str = env!("CARGO_BIN_EXE_sluice");

pub struct Server {
    /// `None` for an API this test did not start.
    child: Option<Child>,
    pub base: String,
    _dir: tempfile::TempDir,
}

/// `program` (from Prefect's virtualenv) run in `cwd` against the API at `api`: Prefect's home
/// in `cwd`, no colours, and no API key from the caller's environment.
pub fn prefect_command(program: &std::path::Path, cwd: &std::path::Path, api: &str) -> Command {
    let mut c = Command::new(program);
    c.current_dir(cwd)
        .env("PREFECT_API_URL", api)
        .env("PREFECT_HOME", cwd.join(".prefect"))
        .env("PREFECT_CLI_COLORS", "false")
        .env_remove("PREFECT_API_KEY");
    c
}

/// The virtualenv with Prefect that `infra/test.sh` names in `SLUICE_PREFECT_VENV`; without it
/// `None`, with `test` recorded as skipped, unless `SLUICE_REQUIRE_PREFECT=1` demands it.
pub fn prefect_venv(test: &str) -> Option<std::path::PathBuf> {
    match std::env::var_os("SLUICE_PREFECT_VENV").filter(|v| !v.is_empty()) {
        Some(v) => Some(std::path::PathBuf::from(v)),
        None => {
            assert!(
                std::env::var("SLUICE_REQUIRE_PREFECT").as_deref() != Ok("1"),
                "SLUICE_REQUIRE_PREFECT=1 but SLUICE_PREFECT_VENV is not set"
            );
            sluice_testkit::skip(
                test,
                "SLUICE_PREFECT_VENV is not set (infra/test.sh sets it to a virtualenv with prefect)",
            );
            None
        }
    }
}

/// `--store dynamodb --table <a new name>` when an emulator (or account) is configured; else
/// `None`, with `test` recorded as skipped.
pub fn dynamodb_store(test: &str) -> Option<Vec<String>> {
    if std::env::var_os("AWS_ENDPOINT_URL").is_none_or(|v| v.is_empty()) {
        sluice_testkit::skip(
            test,
            "AWS_ENDPOINT_URL is not set (start the emulator with infra/moto.sh start)",
        );
        return None;
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let table = format!("sluice-test-{}-{nanos}", std::process::id());
    Some(vec![
        "--store".to_owned(),
        "dynamodb".to_owned(),
        "--table".to_owned(),
        table,
    ])
}

impl Server {
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    /// A server with store arguments (`--store dynamodb --table T`, or `--db` of a file
    /// another server shares); without any, a database of its own. Push submission is off.
    pub fn start_with(args: &[String]) -> Server {
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store_args: Vec<String> = args.to_vec();
        if store_args.is_empty() {
            store_args = vec![
                "--db".to_owned(),
                dir.path().join("sluice.db").display().to_string(),
            ];
        }
        let child = Command::new(SLUICE)
            .args(["server", "start", "--no-push", "--port", &port.to_string()])
            .args(&store_args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sluice server");
        Server {
            child: Some(child),
            base: format!("http://127.0.0.1:{port}/api"),
            _dir: dir,
        }
    }

    /// SIGTERM, then the exit status (within ten seconds).
    pub fn stop(mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("a server this test started");
        let pid = child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill -TERM");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "server did not stop within 10 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Waits (up to twenty seconds) until the server at `addr` (`host:port`) answers `/api/health`.
pub fn wait_healthy(addr: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(mut s) = TcpStream::connect(addr) {
            let _ = s.write_all(b"GET /api/health HTTP/1.0\r\n\r\n");
            let mut answer = String::new();
            let _ = s.read_to_string(&mut answer);
            if answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200") {
                return;
            }
        }
        assert!(Instant::now() < deadline, "server never became healthy");
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
        }
    }
}

impl Server {
    /// Started and answering `/health` (within twenty seconds).
    pub fn ready() -> Server {
        Server::ready_with(&[])
    }

    /// [`Server::start_with`], answering `/health` (within twenty seconds).
    pub fn ready_with(args: &[String]) -> Server {
        let server = Server::start_with(args);
        let addr = server
            .base
            .trim_start_matches("http://")
            .trim_end_matches("/api")
            .to_owned();
        wait_healthy(&addr);
        server
    }

    /// A handle on an API someone else runs (nothing to stop on drop).
    pub fn attach(base: &str) -> Server {
        Server {
            child: None,
            base: base.to_owned(),
            _dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// Runs `sluice ARGS` against this server: (exit code, stdout, stderr).
    pub fn sluice(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(SLUICE)
            .args(args)
            .env("SLUICE_API_URL", &self.base)
            .env_remove("PREFECT_API_URL")
            .env_remove("SLUICE_API_KEY")
            .output()
            .expect("run sluice");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `sluice ARGS --output json`, which must succeed; its stdout as JSON.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["--output", "json"]);
        let (code, out, err) = self.sluice(&all);
        assert_eq!(code, 0, "sluice {args:?} failed: {err}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("sluice {args:?}: {e}: {out}"))
    }

    /// A direct API call (for seeding what the CLI does not create): the JSON answer.
    pub fn api(&self, method: &str, path: &str, body: &Value) -> Value {
        let url = format!("{}/{}", self.base, path.trim_start_matches('/'));
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let body = body.clone();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let resp = reqwest::Client::new()
                .request(method, &url)
                .json(&body)
                .send()
                .await
                .expect("request");
            let status = resp.status();
            let text = resp.text().await.expect("body");
            assert!(status.is_success(), "{url} answered {status}: {text}");
            serde_json::from_str(&text).unwrap_or(Value::Null)
        })
    }
}
