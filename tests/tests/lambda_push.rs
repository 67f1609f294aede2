//! Push pools through the Lambda handlers over DynamoDB, SQS, ECS and Batch on the emulator:
//! api → dispatch queue → dispatcher → RunTask/SubmitJob, the scheduler's enqueue and sweep,
//! and the events function settling runs from EventBridge state-change events.
//!
//! Needs an AWS endpoint (see `sluice_tests::aws`); skipped with a notice without one.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::eventbridge::EventBridgeEvent;
use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use axum::http::StatusCode;
use lambda_runtime::LambdaEvent;
use serde_json::{Value, json};
use sluice_aws::SqsQueue;
use sluice_core::domain::{Id, State, StateType};
use sluice_fn_events::Outcome as EventOutcome;
use sluice_infra::DispatchQueue;
use sluice_services::push::{Dispatcher, PushSettings};
use sluice_services::{Services, Settings, SystemClock};
use sluice_tests::aws::{
    PushTarget, TestTable, aws_available, fixture, http_event, invoke_http, lambda_context,
    push_target,
};

struct Stack {
    table: TestTable,
    api: axum::Router,
    services: Services,
    dispatcher: Dispatcher,
    queue: Arc<dyn DispatchQueue>,
    queue_url: String,
    sqs: aws_sdk_sqs::Client,
    ecs: aws_sdk_ecs::Client,
    target: PushTarget,
}

impl Stack {
    async fn new(tag: &str) -> Stack {
        let suffix = &Id::new_v4().simple().to_string()[..8];
        let table = TestTable::create().await;
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let sqs = aws_sdk_sqs::Client::new(&config);
        let queue_url = sqs
            .create_queue()
            .queue_name(format!("sluice-dispatch-{tag}-{suffix}"))
            .send()
            .await
            .expect("CreateQueue")
            .queue_url()
            .expect("a queue URL")
            .to_owned();
        let queue: Arc<dyn DispatchQueue> = Arc::new(SqsQueue::new(sqs.clone(), queue_url.clone()));
        let store = Arc::new(table.store.clone());
        let api = sluice_fn_api::router_with_queue(
            store.clone(),
            sluice_fn_api::Auth::None,
            Some(queue.clone()),
        );
        let services = Services::new(store, Arc::new(SystemClock), Settings::default());
        let infra = sluice_aws::AwsPush::from_env(sluice_aws::Rates::default());
        let settings = PushSettings {
            // Short, so the takeover can be watched without waiting two minutes.
            submit_lease_seconds: 2,
            reconcile_after_seconds: 0,
            ..PushSettings::default()
        };
        let dispatcher = Dispatcher::new(services.clone(), Arc::new(infra), settings);
        Stack {
            table,
            api,
            services,
            dispatcher,
            queue,
            queue_url,
            sqs,
            ecs: aws_sdk_ecs::Client::new(&config),
            target: push_target(&format!("sluice-l{tag}-{suffix}")),
        }
    }

    async fn call(&self, method: &str, path: &str, body: Value) -> (StatusCode, Value) {
        let event = http_event(
            &fixture("api-create-work-pool.json"),
            method,
            path,
            Some(&body),
        );
        let answer = invoke_http(&self.api, event).await;
        (answer.status, answer.body)
    }

    async fn pool(&self, name: &str, pool_type: &str) {
        let mut template =
            sluice_core::pool_types::default_base_job_template(pool_type).expect("template");
        let props = &mut template["variables"]["properties"];
        props["image"]["default"] = json!("busybox:latest");
        if pool_type == "ecs:push" {
            props["cluster"]["default"] = json!(self.target.cluster);
            props["network_configuration"]["default"] = json!({
                "subnets": self.target.subnets,
                "securityGroups": self.target.security_groups,
                "assignPublicIp": "ENABLED",
            });
            // Container-level memory: valid on AWS, needed by the emulator's RunTask.
            template["job_configuration"]["task_definition"]["containerDefinitions"][0]["memory"] =
                json!(512);
        } else {
            props["job_queue"]["default"] = json!(self.target.job_queue);
        }
        let (s, body) = self
            .call(
                "POST",
                "/api/work_pools/",
                json!({"name": name, "type": pool_type, "base_job_template": template}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
    }

    async fn deployment(&self, pool: &str, schedules: Value) -> Value {
        let (s, flow) = self
            .call("POST", "/api/flows/", json!({"name": "etl"}))
            .await;
        assert!(s.is_success(), "{flow}");
        let (s, dep) = self
            .call(
                "POST",
                "/api/deployments/",
                json!({"name": format!("{pool}-dep"), "flow_id": flow["id"],
                       "work_pool_name": pool, "schedules": schedules}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{dep}");
        dep
    }

    async fn runs_of(&self, deployment: &Value) -> Vec<Value> {
        let (s, runs) = self
            .call(
                "POST",
                "/api/flow_runs/filter",
                json!({"flow_runs": {"deployment_id": {"any_": [deployment["id"]]}},
                       "sort": "EXPECTED_START_TIME_ASC"}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{runs}");
        runs.as_array().expect("a list").clone()
    }

    async fn run(&self, id: Id) -> Value {
        let (s, run) = self
            .call("GET", &format!("/api/flow_runs/{id}"), Value::Null)
            .await;
        assert_eq!(s, StatusCode::OK, "{run}");
        run
    }

    /// Receives every message that becomes visible within `window`.
    async fn receive(&self, window: Duration) -> Vec<SqsMessage> {
        let until = tokio::time::Instant::now() + window;
        let mut out = Vec::new();
        while tokio::time::Instant::now() < until {
            let got = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await
                .expect("ReceiveMessage");
            let arrived = chrono::Utc::now();
            for m in got.messages() {
                // SQS's delay holds a message until its run is due (to its rounded-up second).
                let body: sluice_aws::DispatchMessage =
                    serde_json::from_str(m.body().unwrap_or_default()).expect("a dispatch message");
                assert!(
                    body.at <= arrived,
                    "a message for a run due at {} arrived early, at {arrived}",
                    body.at
                );
                let mut message = SqsMessage::default();
                message.message_id = m.message_id().map(str::to_owned);
                message.receipt_handle = m.receipt_handle().map(str::to_owned);
                message.body = m.body().map(str::to_owned);
                out.push(message);
            }
        }
        out
    }

    async fn dispatch(&self, messages: &[SqsMessage]) -> sluice_fn_dispatcher::Summary {
        let mut event = SqsEvent::default();
        event.records = messages.to_vec();
        let (response, summary) = sluice_fn_dispatcher::handle(
            &self.dispatcher,
            Some(&self.queue),
            LambdaEvent::new(event, lambda_context()),
        )
        .await;
        assert!(response.batch_item_failures.is_empty(), "{summary:?}");
        summary
    }

    async fn tick(&self) -> sluice_fn_scheduler::PushCounts {
        let payload: EventBridgeEvent =
            serde_json::from_value(fixture("scheduler-tick.json")).expect("an event");
        let push = sluice_fn_scheduler::Push {
            dispatcher: self.dispatcher.clone(),
            queue: Some(self.queue.clone()),
        };
        let summary = sluice_fn_scheduler::handle_with_push(
            &self.services,
            Some(&push),
            LambdaEvent::new(payload, lambda_context()),
        )
        .await
        .expect("the tick succeeds");
        match summary.push {
            Some(sluice_fn_scheduler::Outcome::Done(counts)) => counts,
            other => panic!("the push step did not finish: {other:?}"),
        }
    }

    async fn event(&self, mut event: Value) -> EventOutcome {
        event["time"] = json!(chrono::Utc::now().to_rfc3339());
        let payload: EventBridgeEvent<Value> = serde_json::from_value(event).expect("an event");
        sluice_fn_events::handle(
            &self.dispatcher,
            LambdaEvent::new(payload, lambda_context()),
        )
        .await
        .expect("handled")
    }

    async fn tasks_of(&self, run: Id) -> Vec<String> {
        let mut arns = Vec::new();
        for status in [
            aws_sdk_ecs::types::DesiredStatus::Running,
            aws_sdk_ecs::types::DesiredStatus::Stopped,
        ] {
            let out = self
                .ecs
                .list_tasks()
                .cluster(&self.target.cluster)
                .started_by(run.to_string())
                .desired_status(status)
                .send()
                .await
                .expect("ListTasks");
            for arn in out.task_arns() {
                if !arns.contains(arn) {
                    arns.push(arn.clone());
                }
            }
        }
        arns
    }
}

fn id_of(run: &Value) -> Id {
    Id::parse_str(run["id"].as_str().expect("an id")).expect("a uuid")
}

#[tokio::test]
async fn a_scheduled_ecs_push_run_gets_exactly_one_task_through_queue_ticks_and_dispatcher() {
    if !aws_available("a_scheduled_ecs_push_run_gets_exactly_one_task") {
        return;
    }
    let stack = Stack::new("ecs").await;
    stack.pool("ecs-push", "ecs:push").await;
    // Hourly, anchored a few seconds from now: one run inside the dispatch horizon.
    // (Far enough ahead that a slow machine still ticks twice before it is due.)
    let anchor = chrono::Utc::now() + chrono::Duration::seconds(8);
    let dep = stack
        .deployment(
            "ecs-push",
            json!([{"schedule": {"interval": 3600, "anchor_date": anchor.to_rfc3339()}, "active": true}]),
        )
        .await;
    let runs = stack.runs_of(&dep).await;
    assert!(runs.len() >= 3, "{runs:?}");
    let first = id_of(&runs[0]);

    // The tick runs twice: each enqueues the due run again. (On a slow machine a tick may
    // find the run already due and dispatch it itself: still one submission in all.)
    let mut by_ticks = 0;
    for _ in 0..2 {
        let counts = stack.tick().await;
        assert_eq!(counts.enqueued, 1, "{counts:?}");
        by_ticks += counts.sweep.dispatched;
    }
    // Three messages for one run (the api's at creation, one per tick), each held back by SQS
    // until the run is due: `receive` checks every arrival against the run's time.
    let until_due = (anchor - chrono::Utc::now()).to_std().unwrap_or_default();
    let messages = stack.receive(until_due + Duration::from_secs(5)).await;
    assert_eq!(messages.len(), 3, "{messages:?}");
    // Delivered, and then delivered again.
    let once = stack.dispatch(&messages).await;
    let again = stack.dispatch(&messages).await;
    assert_eq!(
        by_ticks + once.submitted + again.submitted,
        1,
        "{once:?} {again:?}"
    );
    assert_eq!(
        once.submitted + once.skipped + again.submitted + again.skipped,
        6
    );

    let tasks = stack.tasks_of(first).await;
    assert_eq!(tasks.len(), 1, "exactly one RunTask for the run");
    let run = stack.run(first).await;
    assert_eq!(run["state"]["type"], "PENDING");
    assert_eq!(
        run["infrastructure_pid"],
        json!(format!("{}::{}", stack.target.cluster, tasks[0]))
    );
    // The other runs are not due: nothing was submitted for them.
    for later in &runs[1..] {
        assert!(stack.tasks_of(id_of(later)).await.is_empty());
    }

    // EventBridge reports the task stopped with exit code 0.
    let mut event = fixture("ecs-task-stopped.json");
    event["detail"]["startedBy"] = json!(first.to_string());
    event["detail"]["taskArn"] = json!(tasks[0]);
    assert_eq!(stack.event(event.clone()).await, EventOutcome::Settled);
    assert_eq!(
        stack.event(event).await,
        EventOutcome::Unchanged,
        "a duplicate changes nothing"
    );
    let run = stack.run(first).await;
    assert_eq!(run["state"]["type"], "COMPLETED", "{run}");
    assert_eq!(stack.tasks_of(first).await.len(), 1);
    stack.table.delete().await;
}

#[tokio::test]
async fn events_end_runs_failed_and_crashed_and_the_sweep_takes_over_an_abandoned_claim() {
    if !aws_available("events_end_runs_failed_and_crashed") {
        return;
    }
    let stack = Stack::new("evt").await;
    stack.pool("ecs-events", "ecs:push").await;
    let dep = stack.deployment("ecs-events", json!([])).await;
    let create = format!(
        "/api/deployments/{}/create_flow_run",
        dep["id"].as_str().expect("id")
    );

    for (fixture_name, exit_code, expected) in [
        ("ecs-task-stopped.json", Some(1), "FAILED"),
        ("ecs-task-failed-to-start.json", None, "CRASHED"),
    ] {
        let (s, run) = stack.call("POST", &create, json!({})).await;
        assert_eq!(s, StatusCode::CREATED, "{run}");
        let id = id_of(&run);
        // Created due: the api enqueued it at once, with no delay.
        let messages = stack.receive(Duration::from_secs(2)).await;
        assert_eq!(messages.len(), 1, "{messages:?}");
        assert_eq!(stack.dispatch(&messages).await.submitted, 1);
        let task = stack.tasks_of(id).await.remove(0);
        let mut event = fixture(fixture_name);
        event["detail"]["startedBy"] = json!(id.to_string());
        event["detail"]["taskArn"] = json!(task);
        if let Some(code) = exit_code {
            event["detail"]["containers"][0]["exitCode"] = json!(code);
        }
        assert_eq!(stack.event(event).await, EventOutcome::Settled);
        let run = stack.run(id).await;
        assert_eq!(run["state"]["type"], expected, "{run}");
    }

    // A dispatcher that died right after its claim: the run is PENDING with no task.
    let (_, run) = stack.call("POST", &create, json!({})).await;
    let id = id_of(&run);
    let _ = stack.receive(Duration::from_secs(2)).await;
    let claim = stack
        .services
        .claim_flow_run(id, State::new(StateType::Pending, stack.services.now()))
        .await
        .expect("claims");
    assert!(claim.committed);
    assert_eq!(
        stack.tick().await.sweep.resumed,
        0,
        "not before the lease ends"
    );
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let counts = stack.tick().await;
    assert_eq!(counts.sweep.resumed, 1, "{counts:?}");
    assert_eq!(
        stack.tasks_of(id).await.len(),
        1,
        "one task after the takeover"
    );
    assert_eq!(stack.tick().await.sweep.resumed, 0);
    assert_eq!(stack.tasks_of(id).await.len(), 1);
    stack.table.delete().await;
}

#[tokio::test]
async fn a_batch_push_run_is_submitted_once_and_a_job_state_event_ends_it() {
    if !aws_available("a_batch_push_run_is_submitted_once") {
        return;
    }
    let stack = Stack::new("batch").await;
    stack.pool("batch-push", "batch:push").await;
    let dep = stack.deployment("batch-push", json!([])).await;
    let create = format!(
        "/api/deployments/{}/create_flow_run",
        dep["id"].as_str().expect("id")
    );
    let (s, run) = stack.call("POST", &create, json!({})).await;
    assert_eq!(s, StatusCode::CREATED, "{run}");
    let id = id_of(&run);
    let messages = stack.receive(Duration::from_secs(2)).await;
    assert_eq!(messages.len(), 1);
    let once = stack.dispatch(&messages).await;
    let again = stack.dispatch(&messages).await;
    assert_eq!((once.submitted, again.submitted, again.skipped), (1, 0, 1));
    // A second tick's sweep would see the emulator's instant SUCCEEDED; feed the event first.
    let run = stack.run(id).await;
    let job_id = run["infrastructure_pid"]
        .as_str()
        .expect("the job id")
        .to_owned();
    let mut event = fixture("batch-job-failed.json");
    event["detail"]["jobId"] = json!(job_id);
    event["detail"]["jobName"] = json!(format!("{}_{id}", run["name"].as_str().unwrap_or("run")));
    event["detail"]["tags"]["sluice.io/flow-run-id"] = json!(id.to_string());
    assert_eq!(stack.event(event.clone()).await, EventOutcome::Settled);
    assert_eq!(stack.event(event).await, EventOutcome::Unchanged);
    let run = stack.run(id).await;
    assert_eq!(run["state"]["type"], "FAILED", "{run}");
    stack.table.delete().await;
}
