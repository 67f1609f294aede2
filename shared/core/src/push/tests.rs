use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::batch::{self, JobDefinition};
use super::ecs::{self, TaskDefinition};
use super::observe::{BatchJob, EcsTask, Progress, batch_progress, ecs_progress, settle};
use super::{RUN_ID_TAG, RunFacts, content_hash, prepare_for_flow_run};
use crate::domain::{FlowRun, Id, State, StateType};
use crate::job_config::{build_job_configuration, finalize_base_fields};
use crate::pool_types::default_base_job_template;
use crate::templating::PrefetchedData;
use crate::time::parse_timestamp;

fn now() -> crate::domain::Timestamp {
    parse_timestamp("2026-11-24T12:00:00Z").expect("timestamp")
}

fn run() -> FlowRun {
    let mut run = FlowRun::new(Id::from_u128(0x1111), now());
    run.id = Id::from_u128(0xabcd);
    run.name = "gentle fox".to_owned();
    run
}

fn render(
    pool_type: &str,
    vars: Value,
    run: &FlowRun,
    base_env: &BTreeMap<String, String>,
) -> Value {
    let template = default_base_job_template(pool_type).expect("template");
    let values: Map<String, Value> = match vars {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    let env: BTreeMap<String, String> = BTreeMap::new();
    let config = build_job_configuration(&template, &values, &env, &PrefetchedData::default())
        .expect("renders");
    let facts = facts(run, base_env);
    prepare_for_flow_run(&finalize_base_fields(config), &facts)
}

fn facts<'a>(run: &'a FlowRun, base_env: &'a BTreeMap<String, String>) -> RunFacts<'a> {
    RunFacts {
        run,
        flow_name: Some("etl"),
        deployment: Some((Id::from_u128(0xde), "nightly")),
        pool_name: "aws",
        pool_id: Id::from_u128(0x900),
        base_env,
        attempt: Id::from_u128(0xa77e),
    }
}

fn network() -> Value {
    json!({ "subnets": ["subnet-1"], "securityGroups": [], "assignPublicIp": "ENABLED" })
}

fn ecs_plan(vars: Value) -> Result<ecs::EcsPlan, super::PlanError> {
    let run = run();
    let base = BTreeMap::from([("PREFECT_API_URL".to_owned(), "https://api/api".to_owned())]);
    let config = render("ecs:push", vars, &run, &base);
    ecs::plan(&config, &facts(&run, &base), "eu-west-1")
}

fn env_of(overrides: &Value) -> BTreeMap<String, String> {
    overrides["environment"]
        .as_array()
        .expect("environment list")
        .iter()
        .map(|e| {
            (
                e["name"].as_str().expect("name").to_owned(),
                e["value"].as_str().expect("value").to_owned(),
            )
        })
        .collect()
}

#[test]
fn prefect_ecs_template_with_defaults_plans_a_fargate_task() {
    let plan = ecs_plan(json!({
        "cluster": "prod", "image": "repo/flows:1", "network_configuration": network(),
        "env": {"A": "1", "PREFECT_API_URL": "https://override/api"},
        "labels": {"team": "data science"},
    }))
    .expect("plans");
    let TaskDefinition::Register { family, body, hash } = &plan.task_definition else {
        panic!("expected a definition to register");
    };
    let owner = Id::from_u128(0xde);
    assert_eq!(family, &format!("prefect_aws_{owner}"));
    assert_eq!(body["cpu"], "1024");
    assert_eq!(body["memory"], "2048");
    assert_eq!(body["networkMode"], "awsvpc");
    assert_eq!(body["requiresCompatibilities"], json!(["FARGATE"]));
    assert_eq!(
        body["containerDefinitions"],
        json!([{ "image": "repo/flows:1", "name": "prefect" }])
    );
    assert_eq!(hash, &content_hash(&Value::Object(body.clone())));
    assert_eq!(plan.container_name, "prefect");

    let rt = Value::Object(plan.run_task.clone());
    assert_eq!(rt["cluster"], "prod");
    assert_eq!(rt["launchType"], "FARGATE");
    assert!(rt.get("taskDefinition").is_none());
    assert!(rt.get("capacityProviderStrategy").is_none());
    assert_eq!(
        rt["networkConfiguration"],
        json!({ "awsvpcConfiguration": network() })
    );
    let run_id = Id::from_u128(0xabcd).to_string();
    assert_eq!(
        rt["clientToken"],
        Id::from_u128(0xa77e).to_string().as_str()
    );
    assert_eq!(rt["startedBy"], run_id.as_str());
    let overrides = &rt["overrides"]["containerOverrides"][0];
    assert_eq!(overrides["name"], "prefect");
    assert_eq!(
        overrides["command"],
        json!(["prefect", "flow-run", "execute"])
    );
    let env = env_of(overrides);
    assert_eq!(env["A"], "1");
    assert_eq!(env["PREFECT_API_URL"], "https://override/api");
    assert_eq!(env["PREFECT__FLOW_RUN_ID"], run_id);
    assert_eq!(env["PREFECT__DEPLOYMENT_NAME"], "nightly");
    let tags: BTreeMap<&str, &str> = rt["tags"]
        .as_array()
        .expect("tags")
        .iter()
        .map(|t| {
            (
                t["key"].as_str().expect("key"),
                t["value"].as_str().expect("value"),
            )
        })
        .collect();
    assert_eq!(tags[RUN_ID_TAG], run_id);
    assert_eq!(tags[super::ATTEMPT_TAG], Id::from_u128(0xa77e).to_string());
    assert_eq!(tags["team"], "data-science", "slugified like Prefect");
    assert_eq!(tags["prefect.io/flow-run-name"], "gentle-fox");
    assert_eq!(tags["prefect.io/deployment-name"], "nightly");
}

#[test]
fn the_definition_hash_ignores_the_run_and_follows_the_content() {
    let vars = json!({ "image": "repo/flows:1", "network_configuration": network() });
    let hash = |p: ecs::EcsPlan| match p.task_definition {
        TaskDefinition::Register { hash, .. } => hash,
        TaskDefinition::Existing(_) => panic!("expected registration"),
    };
    let a = hash(ecs_plan(vars.clone()).expect("plans"));
    let mut other_run = run();
    other_run.id = Id::from_u128(0xffff);
    other_run.name = "other".to_owned();
    let base = BTreeMap::new();
    let config = render("ecs:push", vars.clone(), &other_run, &base);
    let b = hash(ecs::plan(&config, &facts(&other_run, &base), "eu-west-1").expect("plans"));
    assert_eq!(a, b, "a second run reuses the definition");
    let mut changed = vars;
    changed["image"] = json!("repo/flows:2");
    assert_ne!(a, hash(ecs_plan(changed).expect("plans")));
}

#[test]
fn an_existing_task_definition_is_used_as_given() {
    let plan = ecs_plan(json!({
        "task_definition_arn": "arn:aws:ecs:eu-west-1:1:task-definition/etl:7",
        "network_configuration": network(),
    }))
    .expect("plans");
    assert_eq!(
        plan.task_definition,
        TaskDefinition::Existing("arn:aws:ecs:eu-west-1:1:task-definition/etl:7".to_owned())
    );
}

#[test]
fn fargate_without_subnets_is_refused_with_the_variable_to_set() {
    let err = ecs_plan(json!({ "image": "x" })).expect_err("needs subnets");
    assert_eq!(err.path, "network_configuration");
    assert!(err.message.contains("subnets"), "{err}");
}

#[test]
fn fargate_spot_and_capacity_providers_replace_the_launch_type() {
    let spot =
        ecs_plan(json!({ "launch_type": "FARGATE_SPOT", "network_configuration": network() }))
            .expect("plans");
    assert!(spot.run_task.get("launchType").is_none());
    assert_eq!(
        spot.run_task["capacityProviderStrategy"],
        json!([{ "capacityProvider": "FARGATE_SPOT", "weight": 1 }])
    );
    let cp = ecs_plan(json!({
        "capacity_provider_strategy": [{"capacityProvider": "warm", "weight": 1, "base": 0}],
        "network_configuration": network(),
    }))
    .expect("plans");
    assert!(cp.run_task.get("launchType").is_none());
    assert_eq!(
        cp.run_task["capacityProviderStrategy"][0]["capacityProvider"],
        "warm"
    );
}

#[test]
fn ec2_puts_cpu_and_memory_on_the_container_and_needs_no_subnets() {
    let plan =
        ecs_plan(json!({ "launch_type": "EC2", "cpu": 512, "memory": 1024 })).expect("plans");
    let TaskDefinition::Register { body, .. } = &plan.task_definition else {
        panic!("expected registration");
    };
    assert_eq!(body["containerDefinitions"][0]["cpu"], 512);
    assert_eq!(body["containerDefinitions"][0]["memory"], 1024);
    assert!(body.get("requiresCompatibilities").is_none());
    assert_eq!(plan.run_task["launchType"], "EC2");
    assert!(plan.run_task.get("networkConfiguration").is_none());
}

#[test]
fn secret_arns_replace_the_api_key_variable_and_logs_get_awslogs() {
    let plan = ecs_plan(json!({
        "env": {"PREFECT_API_KEY": "plain-text-key"},
        "prefect_api_key_secret_arn": "arn:aws:secretsmanager:eu-west-1:1:secret:key",
        "configure_cloudwatch_logs": true,
        "execution_role_arn": "arn:aws:iam::1:role/exec",
        "network_configuration": network(),
    }))
    .expect("plans");
    let TaskDefinition::Register { body, .. } = &plan.task_definition else {
        panic!("expected registration");
    };
    let c = &body["containerDefinitions"][0];
    assert_eq!(
        c["secrets"],
        json!([{ "name": "PREFECT_API_KEY", "valueFrom": "arn:aws:secretsmanager:eu-west-1:1:secret:key" }])
    );
    assert_eq!(c["logConfiguration"]["logDriver"], "awslogs");
    assert_eq!(
        c["logConfiguration"]["options"]["awslogs-region"],
        "eu-west-1"
    );
    assert_eq!(body["executionRoleArn"], "arn:aws:iam::1:role/exec");
    let env = env_of(&plan.run_task["overrides"]["containerOverrides"][0]);
    assert!(
        !env.contains_key("PREFECT_API_KEY"),
        "the key travels only as a secret"
    );
}

#[test]
fn a_named_container_must_exist_in_the_definition() {
    // Prefect's template names its one container after `container_name`; a pool whose template
    // lists its own containers must include the named one.
    let run = run();
    let base = BTreeMap::new();
    let config = prepare_for_flow_run(
        &json!({
            "container_name": "app",
            "task_definition": {"containerDefinitions": [{"name": "main", "image": "x"}]},
            "network_configuration": network(),
        }),
        &facts(&run, &base),
    );
    let err = ecs::plan(&config, &facts(&run, &base), "eu-west-1").expect_err("no such container");
    assert_eq!(err.path, "container_name");
    let named = ecs_plan(json!({ "container_name": "app", "network_configuration": network() }))
        .expect("the template's container takes the name");
    assert_eq!(named.container_name, "app");
}

#[test]
fn an_unbalanced_command_is_refused_where_it_is() {
    let err = ecs_plan(json!({ "command": "echo 'oops", "network_configuration": network() }))
        .expect_err("bad quote");
    assert!(err.path.ends_with(".command"), "{err}");
}

fn batch_plan(vars: Value) -> Result<batch::BatchPlan, super::PlanError> {
    let run = run();
    let base = BTreeMap::new();
    let config = render("batch:push", vars, &run, &base);
    batch::plan(&config, &facts(&run, &base))
}

#[test]
fn batch_registers_a_definition_and_submits_with_the_run_in_name_and_tags() {
    let plan = batch_plan(json!({
        "job_queue": "q", "image": "repo/flows:1", "retry_attempts": 2, "timeout_seconds": 600,
        "labels": {"team": "data"},
    }))
    .expect("plans");
    let JobDefinition::Register { name, body, .. } = &plan.job_definition else {
        panic!("expected registration");
    };
    assert_eq!(name, &format!("prefect_aws_{}", Id::from_u128(0xde)));
    assert_eq!(body["type"], "container");
    assert_eq!(body["platformCapabilities"], json!(["FARGATE"]));
    assert_eq!(
        body["containerProperties"]["resourceRequirements"],
        json!([{ "type": "VCPU", "value": "1" }, { "type": "MEMORY", "value": "2048" }])
    );
    let run_id = Id::from_u128(0xabcd).to_string();
    assert_eq!(plan.job_name(), format!("gentle-fox_{run_id}"));
    assert_eq!(plan.job_queue(), "q");
    let sj = Value::Object(plan.submit_job.clone());
    assert_eq!(sj["retryStrategy"], json!({ "attempts": 2 }));
    assert_eq!(sj["timeout"], json!({ "attemptDurationSeconds": 600 }));
    assert!(sj.get("arrayProperties").is_none());
    assert!(
        sj["containerOverrides"]
            .get("resourceRequirements")
            .is_none()
    );
    assert_eq!(
        sj["containerOverrides"]["command"],
        json!(["prefect", "flow-run", "execute"])
    );
    assert_eq!(sj["tags"][RUN_ID_TAG], run_id.as_str());
    assert_eq!(sj["tags"]["team"], "data");
}

#[test]
fn batch_with_an_existing_definition_overrides_only_resources_that_are_set() {
    let plain =
        batch_plan(json!({ "job_queue": "q", "job_definition_arn": "etl:3" })).expect("plans");
    assert_eq!(
        plain.job_definition,
        JobDefinition::Existing("etl:3".to_owned())
    );
    assert!(
        plain.submit_job["containerOverrides"]
            .get("resourceRequirements")
            .is_none()
    );
    let sized =
        batch_plan(json!({ "job_queue": "q", "job_definition_arn": "etl:3", "memory": 4096 }))
            .expect("plans");
    assert_eq!(
        sized.submit_job["containerOverrides"]["resourceRequirements"],
        json!([{ "type": "MEMORY", "value": "4096" }])
    );
}

#[test]
fn batch_without_a_queue_is_refused() {
    let err = batch_plan(json!({})).expect_err("no queue");
    assert_eq!(err.path, "submit_job_request.jobQueue");
}

#[test]
fn batch_job_names_are_valid_and_end_with_the_run_id() {
    let id = "6f1c5a3e-0000-4000-8000-000000000001";
    assert_eq!(
        batch::job_name("my flow/run!", id),
        format!("my-flow-run-_{id}")
    );
    assert_eq!(batch::job_name("--x", id), format!("x_{id}"));
    assert_eq!(batch::job_name("", id), format!("flow-run_{id}"));
    let long = "a".repeat(300);
    assert_eq!(batch::job_name(&long, id).len(), 128);
}

fn task(v: Value) -> EcsTask {
    serde_json::from_value(v).expect("task")
}

#[test]
fn ecs_progress_reads_every_stage_and_stop() {
    let cases = [
        (json!({"lastStatus": "PROVISIONING"}), Progress::Pending),
        (json!({"lastStatus": "PENDING"}), Progress::Pending),
        (json!({"lastStatus": "RUNNING"}), Progress::Running),
        (json!({"lastStatus": "DEPROVISIONING"}), Progress::Running),
        (
            json!({"lastStatus": "STOPPED", "stopCode": "EssentialContainerExited",
                   "containers": [{"name": "prefect", "exitCode": 0}]}),
            Progress::Exited {
                code: 0,
                reason: None,
            },
        ),
        (
            json!({"lastStatus": "STOPPED", "stoppedReason": "Essential container in task exited",
                   "containers": [{"name": "prefect", "exitCode": 1}]}),
            Progress::Exited {
                code: 1,
                reason: Some("Essential container in task exited".to_owned()),
            },
        ),
        (
            json!({"lastStatus": "STOPPED", "stopCode": "TaskFailedToStart",
                   "stoppedReason": "Timeout waiting for capacity", "containers": []}),
            Progress::Crashed {
                reason: "ECS task failed to start: Timeout waiting for capacity".to_owned(),
            },
        ),
        (
            json!({"lastStatus": "STOPPED", "stoppedReason": "Host EC2 terminated",
                   "containers": [{"name": "prefect", "reason": "lost"}]}),
            Progress::Crashed {
                reason: "ECS task stopped without an exit code: lost".to_owned(),
            },
        ),
    ];
    for (input, expected) in cases {
        assert_eq!(
            ecs_progress(&task(input.clone()), Some("prefect")),
            expected,
            "{input}"
        );
    }
    let sidecar = task(json!({"lastStatus": "STOPPED", "containers": [
        {"name": "envoy", "exitCode": 0}, {"name": "app", "exitCode": 3}]}));
    assert_eq!(
        ecs_progress(&sidecar, None),
        Progress::Exited {
            code: 3,
            reason: Some("the task stopped".to_owned())
        }
    );
}

#[test]
fn batch_progress_reads_statuses_and_failures() {
    let job = |v: Value| -> BatchJob { serde_json::from_value(v).expect("job") };
    assert_eq!(
        batch_progress(&job(json!({"status": "RUNNABLE"}))),
        Progress::Pending
    );
    assert_eq!(
        batch_progress(&job(json!({"status": "RUNNING"}))),
        Progress::Running
    );
    assert_eq!(
        batch_progress(&job(
            json!({"status": "SUCCEEDED", "container": {"exitCode": 0}})
        )),
        Progress::Exited {
            code: 0,
            reason: None
        }
    );
    assert_eq!(
        batch_progress(&job(
            json!({"status": "FAILED", "statusReason": "Essential container in task exited", "container": {"exitCode": 2}})
        )),
        Progress::Exited {
            code: 2,
            reason: Some("Essential container in task exited".to_owned())
        }
    );
    assert_eq!(
        batch_progress(&job(
            json!({"status": "FAILED", "statusReason": "CannotPullContainerError"})
        )),
        Progress::Crashed {
            reason: "Batch job failed before its container exited: CannotPullContainerError"
                .to_owned()
        }
    );
}

fn in_state(t: StateType) -> FlowRun {
    let mut r = run();
    r.state = Some(State::new(t, now()));
    r
}

#[test]
fn settle_moves_live_runs_to_their_end_and_leaves_everything_else() {
    let exited = |code| Progress::Exited { code, reason: None };
    let to = |t, p: &Progress| settle(Some(t), p, now()).map(|(s, f)| (s.state_type, f));
    assert_eq!(
        to(StateType::Pending, &exited(0)),
        Some((StateType::Completed, false))
    );
    assert_eq!(
        to(StateType::Running, &exited(0)),
        Some((StateType::Completed, false))
    );
    assert_eq!(
        to(StateType::Running, &exited(1)),
        Some((StateType::Failed, false))
    );
    assert_eq!(
        to(
            StateType::Pending,
            &Progress::Crashed {
                reason: "x".to_owned()
            }
        ),
        Some((StateType::Crashed, false))
    );
    assert_eq!(
        to(StateType::Running, &Progress::Missing),
        Some((StateType::Crashed, false))
    );
    assert_eq!(
        to(StateType::Cancelling, &exited(137)),
        Some((StateType::Cancelled, true))
    );
    assert_eq!(to(StateType::Cancelling, &Progress::Running), None);
    // Duplicates and late arrivals change nothing.
    for terminal in [
        StateType::Completed,
        StateType::Failed,
        StateType::Crashed,
        StateType::Cancelled,
    ] {
        assert_eq!(to(terminal, &exited(1)), None);
        assert_eq!(to(terminal, &Progress::Running), None);
    }
    assert_eq!(to(StateType::Pending, &Progress::Running), None);
    assert_eq!(to(StateType::Scheduled, &exited(0)), None);
    let failed = settle(
        Some(StateType::Running),
        &Progress::Exited {
            code: 137,
            reason: Some("OOM".to_owned()),
        },
        now(),
    )
    .expect("settles");
    assert_eq!(
        failed.0.message.as_deref(),
        Some("Flow run infrastructure exited with non-zero status code 137. OOM")
    );
}

#[test]
fn the_orchestration_rules_accept_every_settlement() {
    use crate::orchestration::{
        OrchestrationInput, Proposal, SetStateStatus, orchestrate_flow_run,
    };
    for (from, progress) in [
        (
            StateType::Pending,
            Progress::Exited {
                code: 0,
                reason: None,
            },
        ),
        (
            StateType::Pending,
            Progress::Exited {
                code: 1,
                reason: None,
            },
        ),
        (
            StateType::Running,
            Progress::Crashed {
                reason: "x".to_owned(),
            },
        ),
        (StateType::Cancelling, Progress::Missing),
    ] {
        let run = in_state(from);
        let (state, force) = settle(run.state_type(), &progress, now()).expect("settles");
        let out = orchestrate_flow_run(OrchestrationInput {
            run: &run,
            proposal: Proposal {
                state: state.clone(),
                force,
            },
            now: now(),
            deployment_concurrency: None,
        });
        assert_eq!(
            out.status,
            SetStateStatus::Accept,
            "{from:?} → {:?}",
            state.state_type
        );
    }
}
