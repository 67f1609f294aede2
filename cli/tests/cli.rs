//! The real `sluice` binary: template rendering, and the server's lifecycle end to end
//! (listen, serve, resolve references for the renderer, stop cleanly on SIGTERM).

mod common;

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{SLUICE, Server};
use serde_json::{Value, json};

fn write_temp(dir: &tempfile::TempDir, name: &str, value: &Value) -> std::path::PathBuf {
    let path = dir.path().join(name);
    let mut f = std::fs::File::create(&path).expect("create file");
    f.write_all(value.to_string().as_bytes())
        .expect("write file");
    path
}

/// Prefect's published process template (installed `prefect` package or the outside snapshot);
/// `None`, with `test` recorded as skipped, when neither is here.
fn process_template(test: &str) -> Option<Value> {
    sluice_testkit::prefect_template(test, "process").map(|(t, _)| t)
}

fn render(args: &[&str]) -> (bool, Value, String) {
    let out = Command::new(SLUICE)
        .arg("job-template")
        .arg("render")
        .args(args)
        .output()
        .expect("run sluice");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let value = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (
        out.status.success(),
        value,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn renders_prefects_process_template_with_layered_job_variables() {
    let Some(published) =
        process_template("renders_prefects_process_template_with_layered_job_variables")
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let template = write_temp(&dir, "process.json", &published);
    let (ok, out, err) = render(&[
        template.to_str().expect("utf-8 path"),
        "--deployment-variables",
        r#"{"command": "python flow.py", "env": {"A": "1", "B": "deployment"}, "labels": {"team": "data"}}"#,
        "--job-variables",
        r#"{"env": {"B": "run", "C": 3}}"#,
    ]);
    assert!(ok, "{err}");
    assert_eq!(out["command"], "python flow.py");
    // env is merged per key with the run winning; base-field normalisation makes values strings.
    assert_eq!(out["env"], json!({"A": "1", "B": "run", "C": "3"}));
    assert_eq!(out["labels"], json!({"team": "data"}));
    assert_eq!(
        out["stream_output"],
        json!(true),
        "the schema default applies"
    );
    assert_eq!(out["name"], Value::Null);
    assert!(
        out.get("working_dir").is_none(),
        "an unset variable drops its key: {out}"
    );
}

#[test]
fn render_refuses_malformed_input_with_a_clear_message() {
    let Some(published) = process_template("render_refuses_malformed_input_with_a_clear_message")
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let template = write_temp(&dir, "process.json", &published);
    let (ok, _, err) = render(&[
        template.to_str().expect("utf-8 path"),
        "--job-variables",
        "{nope",
    ]);
    assert!(!ok);
    assert!(err.contains("--job-variables is not valid JSON"), "{err}");
    let (ok, _, err) = render(&[
        template.to_str().expect("utf-8 path"),
        "--job-variables",
        "[1]",
    ]);
    assert!(!ok);
    assert!(err.contains("must be a JSON object"), "{err}");
    let (ok, _, err) = render(&["/no/such/template.json"]);
    assert!(!ok);
    assert!(err.contains("cannot read /no/such/template.json"), "{err}");
}

#[tokio::test]
async fn server_serves_resolves_references_and_stops_on_sigterm() {
    let server = Server::start();
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = http.get(format!("{}/health", server.base)).send().await
            && r.status().is_success()
        {
            break;
        }
        assert!(Instant::now() < deadline, "server never became healthy");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = http
        .post(format!("{}/variables/", server.base))
        .json(&json!({"name": "image_tag", "value": "v42"}))
        .send()
        .await
        .expect("create variable");
    assert_eq!(r.status().as_u16(), 201);

    let dir = tempfile::tempdir().expect("tempdir");
    let template = json!({
        "job_configuration": {"image": "{{ image }}", "command": "{{ command }}"},
        "variables": {"type": "object", "properties": {
            "image": {"type": "string", "default": "repo/app:{{ prefect.variables.image_tag }}"},
            "command": {"type": "string"}
        }}
    });
    let path = write_temp(&dir, "t.json", &template);
    let base = server.base.clone();
    let (ok, out, err) = tokio::task::spawn_blocking(move || {
        render(&[path.to_str().expect("utf-8 path"), "--api-url", &base])
    })
    .await
    .expect("render task");
    assert!(ok, "{err}");
    assert_eq!(out["image"], "repo/app:v42");

    let status = server.stop();
    assert!(status.success(), "graceful shutdown exits 0, got {status}");
}
