//! `sluice worker start --type ecs|batch`: the pull worker claims runs through the API and
//! submits them with the push dispatcher's code, then follows them with Describe* calls, against
//! the emulator and a real HTTP server on loopback.
//!
//! Needs an AWS endpoint (see `sluice_tests::aws`); skipped with a notice without one.

use std::time::Duration;

use serde_json::json;
use sluice_core::domain::Id;
use sluice_tests::TestApp;
use sluice_tests::aws::{PushTarget, aws_available, push_target};
use sluice_worker::WorkerOptions;

/// Serves the app's router on a loopback port until the returned sender is dropped.
async fn serve(app: &TestApp) -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("an address");
    let router = sluice_api::router(app.services.clone());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await;
    });
    (format!("http://{addr}/api"), tx)
}

async fn pool(app: &TestApp, target: &PushTarget, name: &str, pool_type: &str) {
    let mut template =
        sluice_core::pool_types::default_base_job_template(pool_type).expect("template");
    let props = &mut template["variables"]["properties"];
    props["image"]["default"] = json!("busybox:latest");
    if pool_type == "ecs" {
        props["cluster"]["default"] = json!(target.cluster);
        props["network_configuration"]["default"] = json!({
            "subnets": target.subnets,
            "securityGroups": target.security_groups,
            "assignPublicIp": "ENABLED",
        });
        template["job_configuration"]["task_definition"]["containerDefinitions"][0]["memory"] =
            json!(512);
    } else {
        props["job_queue"]["default"] = json!(target.job_queue);
    }
    let (s, body) = app
        .post(
            "/work_pools/",
            json!({"name": name, "type": pool_type, "base_job_template": template}),
        )
        .await;
    assert!(s.is_success(), "{body}");
}

async fn due_run(app: &TestApp, pool: &str) -> String {
    let (_, flow) = app.post("/flows/", json!({"name": "etl"})).await;
    let (s, dep) = app
        .post(
            "/deployments/",
            json!({"name": format!("{pool}-dep"), "flow_id": flow["id"], "work_pool_name": pool}),
        )
        .await;
    assert!(s.is_success(), "{dep}");
    let (s, run) = app
        .post(
            &format!(
                "/deployments/{}/create_flow_run",
                dep["id"].as_str().expect("id")
            ),
            json!({}),
        )
        .await;
    assert!(s.is_success(), "{run}");
    run["id"].as_str().expect("id").to_owned()
}

async fn run_once(api_url: &str, pool: &str, pool_type: &str) -> sluice_worker::WorkerReport {
    let opts = WorkerOptions {
        api_url: api_url.to_owned(),
        pool: pool.to_owned(),
        pool_type: pool_type.to_owned(),
        run_once: true,
        poll_interval: Some(Duration::from_millis(200)),
        ..WorkerOptions::default()
    };
    tokio::time::timeout(
        Duration::from_secs(60),
        sluice_worker::run(opts, std::future::pending()),
    )
    .await
    .expect("the worker finishes its run")
    .expect("the worker runs")
}

#[tokio::test]
async fn ecs_and_batch_workers_submit_claimed_runs_and_follow_them_to_the_end() {
    if !aws_available("ecs_and_batch_workers_submit_claimed_runs") {
        return;
    }
    let app = TestApp::new();
    let target = push_target(&format!(
        "sluice-pull-{}",
        &Id::new_v4().simple().to_string()[..8]
    ));
    let (api_url, _stop) = serve(&app).await;
    for (name, pool_type) in [("ecs-pull", "ecs"), ("batch-pull", "batch")] {
        pool(&app, &target, name, pool_type).await;
        let run = due_run(&app, name).await;
        let report = run_once(&api_url, name, pool_type).await;
        assert_eq!(
            (report.submitted, report.completed),
            (1, 1),
            "{pool_type}: {report:?}"
        );
        let (_, body) = app.get(&format!("/flow_runs/{run}")).await;
        assert_eq!(body["state"]["type"], "COMPLETED", "{pool_type}: {body}");
        let pid = body["infrastructure_pid"].as_str().unwrap_or_default();
        match pool_type {
            "ecs" => assert!(
                pid.starts_with(&format!("{}::arn:aws:ecs:", target.cluster)),
                "{pid}"
            ),
            _ => assert!(Id::parse_str(pid).is_ok(), "a Batch job id: {pid}"),
        }
    }
}
