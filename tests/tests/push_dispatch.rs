//! Push pools end to end against the emulator: the dispatcher claims and submits due runs
//! exactly once, the sweep resumes abandoned submissions and settles runs from ECS/Batch,
//! events settle runs idempotently, and cancellation stops the task.
//!
//! Needs an AWS endpoint (see `sluice_tests::aws`); skipped with a notice without one.

use std::sync::Arc;

use chrono::SubsecRound;
use serde_json::{Value, json};
use sluice_aws::{AwsPush, Rates};
use sluice_core::domain::{Id, State, StateType};
use sluice_core::push::observe::{BatchJob, EcsTask};
use sluice_infra::{Attempt, PushInfrastructure};
use sluice_services::ManualClock;
use sluice_services::push::{Dispatched, Dispatcher, PushSettings};
use sluice_tests::TestApp;
use sluice_tests::aws::{PushTarget, aws_available, fixture, push_target};

struct Env {
    app: TestApp,
    clock: Arc<ManualClock>,
    dispatcher: Dispatcher,
    target: PushTarget,
    ecs: aws_sdk_ecs::Client,
}

impl Env {
    async fn new(tag: &str) -> Env {
        // Whole microseconds, as the store keeps them: a clock with finer digits would let a
        // state's stored time fall before "now" by luck and hide a missing clock step.
        let clock = Arc::new(ManualClock::new(chrono::Utc::now().trunc_subsecs(6)));
        let app = TestApp::with_clock(clock.clone());
        let target = push_target(&format!(
            "sluice-{tag}-{}",
            &Id::new_v4().simple().to_string()[..8]
        ));
        let infra = AwsPush::from_env(Rates::default());
        let settings = PushSettings {
            reconcile_after_seconds: 0,
            ..PushSettings::default()
        };
        let dispatcher = Dispatcher::new(app.services.clone(), Arc::new(infra), settings);
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        Env {
            app,
            clock,
            dispatcher,
            target,
            ecs: aws_sdk_ecs::Client::new(&config),
        }
    }

    /// An `ecs:push` pool on the fixture's cluster and subnets (container-level memory: valid on
    /// AWS, needed by the emulator), a flow and a deployment; answers the deployment id.
    async fn ecs_deployment(&self, pool: &str) -> String {
        let mut template =
            sluice_core::pool_types::default_base_job_template("ecs:push").expect("template");
        template["job_configuration"]["task_definition"]["containerDefinitions"][0]["memory"] =
            json!(512);
        let props = &mut template["variables"]["properties"];
        props["cluster"]["default"] = json!(self.target.cluster);
        props["image"]["default"] = json!("busybox:latest");
        props["network_configuration"]["default"] = json!({
            "subnets": self.target.subnets,
            "securityGroups": self.target.security_groups,
            "assignPublicIp": "ENABLED",
        });
        self.deployment(pool, "ecs:push", template).await
    }

    async fn batch_deployment(&self, pool: &str) -> String {
        let mut template =
            sluice_core::pool_types::default_base_job_template("batch:push").expect("template");
        let props = &mut template["variables"]["properties"];
        props["job_queue"]["default"] = json!(self.target.job_queue);
        props["image"]["default"] = json!("busybox:latest");
        self.deployment(pool, "batch:push", template).await
    }

    async fn deployment(&self, pool: &str, pool_type: &str, template: Value) -> String {
        let (s, body) = self
            .app
            .post(
                "/work_pools/",
                json!({"name": pool, "type": pool_type, "base_job_template": template}),
            )
            .await;
        assert!(s.is_success(), "{body}");
        let (s, flow) = self.app.post("/flows/", json!({"name": "etl"})).await;
        assert!(s.is_success(), "{flow}");
        let (s, dep) = self
            .app
            .post(
                "/deployments/",
                json!({"name": format!("{pool}-dep"), "flow_id": flow["id"], "work_pool_name": pool}),
            )
            .await;
        assert!(s.is_success(), "{dep}");
        dep["id"].as_str().expect("id").to_owned()
    }

    /// A run of the deployment, SCHEDULED for now.
    async fn run(&self, deployment: &str) -> Id {
        let (s, run) = self
            .app
            .post(
                &format!("/deployments/{deployment}/create_flow_run"),
                json!({}),
            )
            .await;
        assert!(s.is_success(), "{run}");
        assert_eq!(run["state"]["type"], "SCHEDULED");
        Id::parse_str(run["id"].as_str().expect("id")).expect("uuid")
    }

    async fn state(&self, run: Id) -> (StateType, Option<String>, Option<String>) {
        let r = self
            .app
            .services
            .read_flow_run(run)
            .await
            .expect("run")
            .value;
        let state = r.state.expect("a state");
        (state.state_type, state.message, r.infrastructure_pid)
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

fn ecs_event(name: &str, run: Id, task_arn: &str) -> EcsTask {
    let mut event = fixture(name);
    assert_eq!(event["source"], "aws.ecs");
    event["detail"]["startedBy"] = json!(run.to_string());
    event["detail"]["taskArn"] = json!(task_arn);
    serde_json::from_value(event["detail"].clone()).expect("an ECS task")
}

#[tokio::test]
async fn a_due_ecs_run_is_submitted_once_even_when_dispatched_twice_and_then_completes() {
    if !aws_available("a_due_ecs_run_is_submitted_once") {
        return;
    }
    let env = Env::new("once").await;
    let dep = env.ecs_deployment("ecs-once").await;
    let run = env.run(&dep).await;

    // A duplicated message: two dispatchers at once.
    let (a, b) = tokio::join!(env.dispatcher.dispatch(run), env.dispatcher.dispatch(run));
    let outcomes = [a.expect("dispatch"), b.expect("dispatch")];
    let submitted: Vec<_> = outcomes
        .iter()
        .filter(|o| matches!(o, Dispatched::Submitted { .. }))
        .collect();
    assert_eq!(submitted.len(), 1, "{outcomes:?}");
    // And a third, late one.
    assert!(matches!(
        env.dispatcher.dispatch(run).await.expect("dispatch"),
        Dispatched::Skipped(_)
    ));
    let tasks = env.tasks_of(run).await;
    assert_eq!(tasks.len(), 1, "exactly one RunTask for the run");
    let (state, _, pid) = env.state(run).await;
    assert_eq!(state, StateType::Pending);
    assert_eq!(pid, Some(format!("{}::{}", env.target.cluster, tasks[0])));
    // Where it went, on the run itself.
    let (_, read) = env.app.get(&format!("/flow_runs/{run}")).await;
    assert_eq!(read["labels"]["sluice.push.platform"], "ecs", "{read}");
    assert_eq!(
        read["labels"]["sluice.push.infrastructure-id"],
        json!(pid),
        "{read}"
    );
    assert!(
        read["labels"]["sluice.push.submission-lag-seconds"].is_number(),
        "{read}"
    );

    // The task carries the run's tags and command.
    let described = env
        .ecs
        .describe_tasks()
        .cluster(&env.target.cluster)
        .tasks(&tasks[0])
        .include(aws_sdk_ecs::types::TaskField::Tags)
        .send()
        .await
        .expect("DescribeTasks");
    let task = &described.tasks()[0];
    assert!(
        task.tags().iter().any(
            |t| t.key() == Some("sluice.io/flow-run-id") && t.value() == Some(&run.to_string())
        ),
        "{:?}",
        task.tags()
    );
    // The attempt tag names the claim, as the run's history records it (a resumed submission
    // looks the task up by that).
    let states = env
        .app
        .services
        .store
        .read_flow_run_states(run)
        .await
        .expect("history");
    let claim = states
        .iter()
        .find(|s| s.state_type == StateType::Pending)
        .expect("the claim");
    assert!(
        task.tags()
            .iter()
            .any(|t| t.key() == Some("sluice.io/attempt")
                && t.value() == Some(&claim.id.to_string())),
        "{:?}",
        task.tags()
    );
    let run_env: Vec<_> = task.overrides().expect("overrides").container_overrides()[0]
        .environment()
        .iter()
        .map(|kv| {
            (
                kv.name().unwrap_or_default().to_owned(),
                kv.value().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert!(run_env.contains(&("PREFECT__FLOW_RUN_ID".to_owned(), run.to_string())));

    // The submission is in the event feed, once, naming the task it started.
    let submitted = env
        .app
        .services
        .read_events(
            &sluice_store::EventFilter {
                names: Some(vec!["sluice.push.submitted".to_owned()]),
                ..Default::default()
            },
            10,
            0,
        )
        .await
        .expect("events");
    assert_eq!(submitted.len(), 1, "{submitted:?}");
    assert_eq!(
        submitted[0].resource_id(),
        format!("prefect.flow-run.{run}")
    );
    let infrastructure = submitted[0]
        .related_in_role("infrastructure")
        .expect("the task");
    assert_eq!(
        infrastructure["prefect.resource.id"],
        format!("aws.ecs.task.{}::{}", env.target.cluster, tasks[0])
    );
    assert_eq!(submitted[0].payload["platform"], "ecs");
    assert!(submitted[0].related_in_role("work-pool").is_some());

    // No events here: the sweep follows the task (the emulator moves it on each describe).
    // Sweeps are seconds apart; the claim is only reconciled once it is in the past.
    for _ in 0..8 {
        env.clock.advance(chrono::Duration::seconds(1));
        env.dispatcher.sweep(None).await.expect("sweep");
        if env.state(run).await.0.is_terminal() {
            break;
        }
    }
    let (state, message, _) = env.state(run).await;
    assert_eq!(state, StateType::Completed, "{message:?}");
    assert_eq!(env.tasks_of(run).await.len(), 1);
}

#[tokio::test]
async fn task_state_events_settle_runs_once_whatever_the_order_or_repetition() {
    if !aws_available("task_state_events_settle_runs_once") {
        return;
    }
    let env = Env::new("events").await;
    let dep = env.ecs_deployment("ecs-events").await;
    let cases = [
        ("ecs-task-stopped.json", Some(0), StateType::Completed),
        ("ecs-task-stopped.json", Some(1), StateType::Failed),
        ("ecs-task-failed-to-start.json", None, StateType::Crashed),
    ];
    for (fixture_name, exit_code, expected) in cases {
        let run = env.run(&dep).await;
        assert!(matches!(
            env.dispatcher.dispatch(run).await.expect("dispatch"),
            Dispatched::Submitted { .. }
        ));
        let task_arn = env.tasks_of(run).await.remove(0);
        let mut task = ecs_event(fixture_name, run, &task_arn);
        if let Some(code) = exit_code {
            task.containers[0].exit_code = Some(code);
        }
        // A RUNNING report first, then the stop, then the stop again and a stale RUNNING.
        let mut running = task.clone();
        running.last_status = Some("RUNNING".to_owned());
        running
            .containers
            .iter_mut()
            .for_each(|c| c.exit_code = None);
        assert!(
            !env.dispatcher
                .apply_ecs_task(&running)
                .await
                .expect("applies")
        );
        assert!(env.dispatcher.apply_ecs_task(&task).await.expect("applies"));
        assert!(!env.dispatcher.apply_ecs_task(&task).await.expect("applies"));
        assert!(
            !env.dispatcher
                .apply_ecs_task(&running)
                .await
                .expect("applies")
        );
        let (state, message, _) = env.state(run).await;
        assert_eq!(
            state, expected,
            "{fixture_name} exit {exit_code:?}: {message:?}"
        );
        if expected == StateType::Crashed {
            assert!(
                message
                    .as_deref()
                    .is_some_and(|m| m.contains("network interface")),
                "{message:?}"
            );
        }
    }
    // A report about a task that is not the run's recorded one changes nothing.
    let run = env.run(&dep).await;
    env.dispatcher.dispatch(run).await.expect("dispatch");
    let stray = ecs_event(
        "ecs-task-stopped.json",
        run,
        "arn:aws:ecs:us-east-1:111122223333:task/sluice/0000",
    );
    assert!(
        !env.dispatcher
            .apply_ecs_task(&stray)
            .await
            .expect("applies")
    );
    assert_eq!(env.state(run).await.0, StateType::Pending);
}

#[tokio::test]
async fn a_dispatcher_dying_after_the_claim_is_taken_over_by_the_sweep_with_one_task() {
    if !aws_available("a_dispatcher_dying_after_the_claim") {
        return;
    }
    let env = Env::new("crash").await;
    let dep = env.ecs_deployment("ecs-crash").await;

    // Died right after the claim: nothing was submitted.
    let claimed_only = env.run(&dep).await;
    let claim = env
        .app
        .services
        .claim_flow_run(
            claimed_only,
            State::new(StateType::Pending, env.app.services.now()),
        )
        .await
        .expect("claims");
    assert!(claim.committed);

    // Died after RunTask, before recording the task: the task exists, the run does not know it.
    let submitted_unrecorded = env.run(&dep).await;
    env.app
        .services
        .claim_flow_run(
            submitted_unrecorded,
            State::new(StateType::Pending, env.app.services.now()),
        )
        .await
        .expect("claims");
    // The request the dispatcher would have made, sent without recording its answer.
    let infra = AwsPush::from_env(Rates::default());
    let job_env = Env::job_for(&env, submitted_unrecorded).await;
    let first = infra.submit(&job_env).await.expect("submits");
    assert!(!first.found_existing);

    // Within the lease the sweep leaves both alone.
    let s = env.dispatcher.sweep(None).await.expect("sweep");
    assert_eq!((s.resumed, s.dispatched), (0, 0), "{s:?}");
    assert!(env.tasks_of(claimed_only).await.is_empty());

    env.clock.advance(chrono::Duration::seconds(121));
    let s = env.dispatcher.sweep(None).await.expect("sweep");
    assert_eq!(s.resumed, 2, "{s:?}");
    for run in [claimed_only, submitted_unrecorded] {
        let tasks = env.tasks_of(run).await;
        assert_eq!(tasks.len(), 1, "one task for {run}");
        let (state, _, pid) = env.state(run).await;
        assert!(
            matches!(state, StateType::Pending | StateType::Completed),
            "{state:?}"
        );
        assert_eq!(pid, Some(format!("{}::{}", env.target.cluster, tasks[0])));
    }
    // The emulator's task finishes; the sweep settles both within a few passes.
    for _ in 0..8 {
        env.dispatcher.sweep(None).await.expect("sweep");
    }
    assert_eq!(env.state(claimed_only).await.0, StateType::Completed);
    assert_eq!(
        env.state(submitted_unrecorded).await.0,
        StateType::Completed
    );
}

impl Env {
    /// The submission the dispatcher would make for `run` (as a first attempt).
    async fn job_for(env: &Env, run: Id) -> sluice_infra::Submission {
        env.dispatcher
            .submission_for(run, Attempt::First)
            .await
            .expect("renders")
    }
}

#[tokio::test]
async fn cancelling_a_running_push_run_stops_its_task_and_ends_cancelled() {
    if !aws_available("cancelling_a_running_push_run") {
        return;
    }
    let env = Env::new("cancel").await;
    let dep = env.ecs_deployment("ecs-cancel").await;
    let run = env.run(&dep).await;
    env.dispatcher.dispatch(run).await.expect("dispatch");
    // The flow engine in the container reports RUNNING.
    let now = env.app.services.now();
    env.app
        .services
        .set_flow_run_state(run, State::new(StateType::Running, now), false)
        .await
        .expect("running");
    let (s, body) = env
        .app
        .post(
            &format!("/flow_runs/{run}/set_state"),
            json!({"state": {"type": "CANCELLING", "name": "Cancelling"}}),
        )
        .await;
    assert!(s.is_success(), "{body}");
    assert_eq!(env.state(run).await.0, StateType::Cancelling);

    let s = env.dispatcher.sweep(None).await.expect("sweep");
    assert_eq!(s.stops_requested, 1, "{s:?}");
    let (state, message, _) = env.state(run).await;
    assert_eq!(state, StateType::Cancelled, "{message:?}");
    let task = env.tasks_of(run).await.remove(0);
    let described = env
        .ecs
        .describe_tasks()
        .cluster(&env.target.cluster)
        .tasks(&task)
        .send()
        .await
        .expect("DescribeTasks");
    assert_eq!(described.tasks()[0].last_status(), Some("STOPPED"));
    assert_eq!(
        described.tasks()[0].stopped_reason(),
        Some("Flow run cancelled in Sluice")
    );
}

#[tokio::test]
async fn a_run_cancelled_before_dispatch_is_never_submitted() {
    if !aws_available("a_run_cancelled_before_dispatch") {
        return;
    }
    let env = Env::new("precancel").await;
    let dep = env.ecs_deployment("ecs-precancel").await;
    let run = env.run(&dep).await;
    let (s, body) = env
        .app
        .post(
            &format!("/flow_runs/{run}/set_state"),
            json!({"state": {"type": "CANCELLING", "name": "Cancelling"}}),
        )
        .await;
    assert!(s.is_success(), "{body}");
    assert_eq!(env.state(run).await.0, StateType::Cancelled);
    assert!(matches!(
        env.dispatcher.dispatch(run).await.expect("dispatch"),
        Dispatched::Skipped(_)
    ));
    env.dispatcher.sweep(None).await.expect("sweep");
    assert!(env.tasks_of(run).await.is_empty());

    // Claimed, then cancelled before the dispatcher got to submit: the lease ends it.
    let run = env.run(&dep).await;
    env.app
        .services
        .claim_flow_run(run, State::new(StateType::Pending, env.app.services.now()))
        .await
        .expect("claims");
    let (s, body) = env
        .app
        .post(
            &format!("/flow_runs/{run}/set_state"),
            json!({"state": {"type": "CANCELLING", "name": "Cancelling"}}),
        )
        .await;
    assert!(s.is_success(), "{body}");
    env.clock.advance(chrono::Duration::seconds(121));
    env.dispatcher.sweep(None).await.expect("sweep");
    assert_eq!(env.state(run).await.0, StateType::Cancelled);
    assert!(env.tasks_of(run).await.is_empty());
}

#[tokio::test]
async fn batch_push_runs_are_submitted_once_and_settle_from_describe_and_events() {
    if !aws_available("batch_push_runs") {
        return;
    }
    let env = Env::new("batch").await;
    let dep = env.batch_deployment("batch-once").await;
    let run = env.run(&dep).await;
    let (a, b) = tokio::join!(env.dispatcher.dispatch(run), env.dispatcher.dispatch(run));
    let outcomes = [a.expect("dispatch"), b.expect("dispatch")];
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| matches!(o, Dispatched::Submitted { .. }))
            .count(),
        1,
        "{outcomes:?}"
    );
    let (_, _, pid) = env.state(run).await;
    let job_id = pid.expect("the job id is recorded");
    let (_, read) = env.app.get(&format!("/flow_runs/{run}")).await;
    assert_eq!(read["labels"]["sluice.push.platform"], "batch", "{read}");
    assert_eq!(
        read["labels"]["sluice.push.infrastructure-id"],
        json!(job_id)
    );
    // The emulator finishes Batch jobs at once; the next sweep sees SUCCEEDED.
    env.clock.advance(chrono::Duration::seconds(1));
    env.dispatcher.sweep(None).await.expect("sweep");
    assert_eq!(env.state(run).await.0, StateType::Completed);

    // A FAILED event with the container's exit code.
    let run = env.run(&dep).await;
    env.dispatcher.dispatch(run).await.expect("dispatch");
    let job_id_2 = env.state(run).await.2.expect("recorded");
    assert_ne!(job_id, job_id_2);
    let mut event = fixture("batch-job-failed.json");
    assert_eq!(event["detail-type"], "Batch Job State Change");
    event["detail"]["jobId"] = json!(job_id_2);
    event["detail"]["tags"]["sluice.io/flow-run-id"] = json!(run.to_string());
    let job: BatchJob = serde_json::from_value(event["detail"].clone()).expect("a job");
    assert!(env.dispatcher.apply_batch_job(&job).await.expect("applies"));
    assert!(!env.dispatcher.apply_batch_job(&job).await.expect("applies"));
    let (state, message, _) = env.state(run).await;
    assert_eq!(state, StateType::Failed);
    assert!(
        message
            .as_deref()
            .is_some_and(|m| m.contains("status code 1")),
        "{message:?}"
    );
}

#[tokio::test]
async fn prefects_published_ecs_template_makes_an_ecs_push_pool_whose_runs_submit() {
    if !aws_available("prefects_published_ecs_template") {
        return;
    }
    let Some((published, _)) =
        sluice_testkit::prefect_template("prefects_published_ecs_template", "ecs")
    else {
        return;
    };
    let env = Env::new("prefect-template").await;
    let template = published
        .get("base_job_template")
        .cloned()
        .unwrap_or(published);
    // A task definition registered outside Sluice, as many Prefect users run: the template's
    // `task_definition_arn` variable points at it.
    let registered = env
        .ecs
        .register_task_definition()
        .family("prefect-published")
        .container_definitions(
            aws_sdk_ecs::types::ContainerDefinition::builder()
                .name("prefect")
                .image("prefecthq/prefect:3-latest")
                .memory(512)
                .build(),
        )
        .requires_compatibilities(aws_sdk_ecs::types::Compatibility::Fargate)
        .network_mode(aws_sdk_ecs::types::NetworkMode::Awsvpc)
        .cpu("256")
        .memory("512")
        .send()
        .await
        .expect("RegisterTaskDefinition");
    let arn = registered
        .task_definition()
        .and_then(|d| d.task_definition_arn())
        .expect("an ARN")
        .to_owned();
    let (s, body) = env
        .app
        .post(
            "/work_pools/",
            json!({"name": "published-ecs", "type": "ecs:push", "base_job_template": template}),
        )
        .await;
    assert!(s.is_success(), "{body}");
    let (_, flow) = env.app.post("/flows/", json!({"name": "etl"})).await;
    let (s, dep) = env
        .app
        .post(
            "/deployments/",
            json!({
                "name": "published", "flow_id": flow["id"], "work_pool_name": "published-ecs",
                "job_variables": {
                    "cluster": env.target.cluster,
                    "task_definition_arn": arn,
                    "network_configuration": {
                        "subnets": env.target.subnets,
                        "securityGroups": env.target.security_groups,
                        "assignPublicIp": "ENABLED",
                    },
                },
            }),
        )
        .await;
    assert!(s.is_success(), "{dep}");
    let run = env.run(dep["id"].as_str().expect("id")).await;
    let outcome = env.dispatcher.dispatch(run).await.expect("dispatch");
    assert!(
        matches!(outcome, Dispatched::Submitted { .. }),
        "{outcome:?}"
    );
    assert_eq!(env.tasks_of(run).await.len(), 1);
}

#[tokio::test]
async fn a_refused_submission_crashes_the_run_with_the_aws_message() {
    if !aws_available("a_refused_submission_crashes_the_run") {
        return;
    }
    let env = Env::new("refused").await;
    let dep = env.ecs_deployment("ecs-refused").await;
    let (s, body) = env
        .app
        .patch(
            &format!("/deployments/{dep}"),
            json!({"job_variables": {"cluster": "no-such-cluster"}}),
        )
        .await;
    assert!(s.is_success(), "{body}");
    let run = env.run(&dep).await;
    let outcome = env.dispatcher.dispatch(run).await.expect("dispatch");
    assert!(matches!(outcome, Dispatched::Crashed(_)), "{outcome:?}");
    let (state, message, pid) = env.state(run).await;
    assert_eq!(state, StateType::Crashed);
    assert!(
        message
            .as_deref()
            .is_some_and(|m| m.contains("ClusterNotFound")),
        "{message:?}"
    );
    assert_eq!(pid, None);
}

#[tokio::test]
async fn a_rerun_gets_a_new_task_and_the_old_tasks_reports_no_longer_count() {
    if !aws_available("a_rerun_gets_a_new_task") {
        return;
    }
    let env = Env::new("rerun").await;
    let dep = env.ecs_deployment("ecs-rerun").await;
    let run = env.run(&dep).await;
    env.dispatcher.dispatch(run).await.expect("dispatch");
    let first_task = env.tasks_of(run).await.remove(0);
    let first_event = ecs_event("ecs-task-stopped.json", run, &first_task);
    assert!(
        env.dispatcher
            .apply_ecs_task(&first_event)
            .await
            .expect("applies")
    );
    assert_eq!(env.state(run).await.0, StateType::Completed);

    // Scheduled again (a manual rerun): the claim drops the old task's id with the new attempt.
    let now = env.app.services.now();
    env.app
        .services
        .set_flow_run_state(
            run,
            State::new(StateType::Scheduled, now).scheduled_at(now),
            true,
        )
        .await
        .expect("rescheduled");
    // A claim (here one whose dispatcher then dies) starts the attempt with no task id, so the
    // sweep cannot mistake the first task's exit for this attempt's.
    let claim = env
        .app
        .services
        .claim_flow_run(run, State::new(StateType::Pending, now))
        .await
        .expect("claims");
    assert!(claim.committed);
    assert_eq!(
        env.state(run).await.2,
        None,
        "the old task id is dropped with the claim"
    );
    env.dispatcher.sweep(None).await.expect("sweep");
    assert_eq!(
        env.state(run).await.0,
        StateType::Pending,
        "not settled by the old task"
    );
    env.clock.advance(chrono::Duration::seconds(121));
    let s = env.dispatcher.sweep(None).await.expect("sweep");
    assert_eq!(s.resumed, 1, "{s:?}");
    let tasks = env.tasks_of(run).await;
    assert_eq!(tasks.len(), 2, "{tasks:?}");
    let (state, _, pid) = env.state(run).await;
    assert_eq!(state, StateType::Pending);
    let pid = pid.expect("recorded");
    assert!(!pid.ends_with(&first_task), "the new attempt's task: {pid}");
    // A late duplicate about the first task changes nothing.
    assert!(
        !env.dispatcher
            .apply_ecs_task(&first_event)
            .await
            .expect("applies")
    );
    assert_eq!(env.state(run).await.0, StateType::Pending);
}

#[tokio::test]
async fn an_in_process_retry_is_never_submitted_again() {
    if !aws_available("an_in_process_retry_is_never_submitted_again") {
        return;
    }
    let env = Env::new("retry").await;
    let dep = env.ecs_deployment("ecs-retry").await;
    let run = env.run(&dep).await;
    env.dispatcher.dispatch(run).await.expect("dispatch");
    // Prefect's engine retries the flow inside the running container: AwaitingRetry, in process.
    let mut policy = serde_json::Map::new();
    policy.insert("retry_type".to_owned(), json!("in_process"));
    env.app
        .services
        .update_flow_run(
            run,
            sluice_services::FlowRunPatch {
                empirical_policy: Some(policy),
                ..Default::default()
            },
        )
        .await
        .expect("policy");
    let now = env.app.services.now();
    env.app
        .services
        .set_flow_run_state(
            run,
            State::new(StateType::Scheduled, now)
                .named("AwaitingRetry")
                .scheduled_at(now),
            true,
        )
        .await
        .expect("awaiting retry");
    assert!(matches!(
        env.dispatcher.dispatch(run).await.expect("dispatch"),
        Dispatched::Skipped(_)
    ));
    env.dispatcher.sweep(None).await.expect("sweep");
    assert_eq!(env.tasks_of(run).await.len(), 1, "still the one task");
    assert_eq!(env.state(run).await.0, StateType::Scheduled);
}
