//! `sluice api-key` on a database file, then `sluice server start --auth api-key` over it: verbs
//! without the key are refused with a clear error, with it (flag or Prefect's variable) served.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::SLUICE;
use serde_json::Value;

/// Runs `sluice ARGS` with no API settings from the environment but `extra_env`: (exit code,
/// stdout, stderr).
fn sluice(args: &[&str], extra_env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(SLUICE);
    cmd.args(args);
    for var in [
        "SLUICE_API_URL",
        "SLUICE_API_KEY",
        "PREFECT_API_URL",
        "PREFECT_API_KEY",
        "SLUICE_STORE",
        "SLUICE_DB",
        "SLUICE_AUTH",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run sluice");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A server this test started; killed on drop.
struct AuthServer {
    child: Child,
    base: String,
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `sluice server start --auth api-key` over `db`, once `/api/health` answers 200 (which needs
/// no key).
fn start_with_auth(db: &Path) -> AuthServer {
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let child = Command::new(SLUICE)
        .args([
            "server",
            "start",
            "--port",
            &port.to_string(),
            "--auth",
            "api-key",
            "--db",
        ])
        .arg(db)
        .env_remove("SLUICE_STORE")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sluice server");
    let server = AuthServer {
        child,
        base: format!("http://127.0.0.1:{port}/api"),
    };
    common::wait_healthy(&format!("127.0.0.1:{port}"));
    server
}

#[test]
fn keys_are_made_on_the_store_and_required_by_the_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("sluice.db");
    let db = db.to_str().expect("a UTF-8 path");

    let (code, out, err) = sluice(
        &["api-key", "create", "ci", "--db", db, "--output", "json"],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("will not be shown again"), "{err}");
    let created: Value = serde_json::from_str(&out).expect("JSON");
    let secret = created["key"].as_str().expect("the secret").to_owned();
    assert!(secret.starts_with("sluice_"), "{secret}");
    assert!(secret.starts_with(created["prefix"].as_str().expect("prefix")));
    assert_eq!(created["name"], "ci");
    assert!(created.get("hash").is_none(), "the hash is not shown");

    // Table form: the secret alone on stdout, for `KEY=$(sluice api-key create ...)`.
    let (code, out, err) = sluice(&["api-key", "create", "bot", "--db", db], &[]);
    assert_eq!(code, 0, "{err}");
    let bot = out.trim();
    assert!(
        bot.starts_with("sluice_") && !bot.contains(char::is_whitespace),
        "{out}"
    );
    assert!(err.contains("will not be shown again"), "{err}");

    let (code, _, err) = sluice(&["api-key", "create", "ci", "--db", db], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("already exists"), "{err}");
    let (code, _, err) = sluice(&["api-key", "create", "no spaces", "--db", db], &[]);
    assert_eq!(code, 1);
    assert!(err.starts_with("error: "), "{err}");

    let (code, out, err) = sluice(&["api-key", "ls", "--db", db], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("NAME"), "{out}");
    assert!(out.contains("bot") && out.contains("ci"), "{out}");
    assert!(!out.contains(&secret), "{out}");

    let server = start_with_auth(Path::new(db));
    let url = [("SLUICE_API_URL", server.base.as_str())];

    let (code, out, err) = sluice(&["work-pool", "ls"], &url);
    assert_eq!(code, 1, "{out}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains("401"), "{err}");
    assert!(err.contains("Authorization header is missing"), "{err}");
    assert!(err.contains("--api-key"), "{err}");

    let wrong = format!("sluice_{}", "0".repeat(64));
    let (code, _, err) = sluice(&["work-pool", "ls", "--api-key", &wrong], &url);
    assert_eq!(code, 1);
    assert!(err.contains("Unknown API key"), "{err}");

    let (code, out, err) = sluice(&["work-pool", "ls", "--api-key", &secret], &url);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("NAME"), "{out}");
    let (code, _, err) = sluice(
        &["work-pool", "create", "local", "--type", "process"],
        &[url[0], ("SLUICE_API_KEY", secret.as_str())],
    );
    assert_eq!(code, 0, "{err}");
    // Prefect's variables work as they do for Prefect's CLI.
    let (code, out, err) = sluice(
        &["work-pool", "ls"],
        &[
            ("PREFECT_API_URL", server.base.as_str()),
            ("PREFECT_API_KEY", bot),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("local"), "{out}");

    let (code, out, err) = sluice(&["api-key", "delete", "ci", "--db", db], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Deleted API key \"ci\""), "{out}");
    let (code, _, err) = sluice(&["api-key", "delete", "ci", "--db", db], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("not found"), "{err}");
    let (code, out, err) = sluice(&["api-key", "ls", "--db", db, "--output", "json"], &[]);
    assert_eq!(code, 0, "{err}");
    let left: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(left.as_array().map(Vec::len), Some(1), "{left}");
    assert_eq!(left[0]["name"], "bot");
    drop(server);
}
