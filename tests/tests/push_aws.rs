//! The AWS push adapter against the emulator (or LocalStack, or an account): the port's
//! conformance checks for ECS and Batch, and definition reuse across runs and processes.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde_json::{Value, json};
use sluice_aws::{AwsPush, Rates};
use sluice_core::domain::{FlowRun, Id};
use sluice_core::job_config::{build_job_configuration, finalize_base_fields};
use sluice_core::pool_types::default_base_job_template;
use sluice_core::push::{self, RunFacts};
use sluice_core::templating::PrefetchedData;
use sluice_infra::conformance::{Fixture, check_all};
use sluice_infra::{Attempt, Job, Kind, PushInfrastructure, Submission};
use sluice_tests::aws::{PushTarget, aws_available, push_target};

struct AwsFixture {
    target: PushTarget,
    ecs: aws_sdk_ecs::Client,
    batch: aws_sdk_batch::Client,
    /// Every run of this fixture shares one deployment id, so they share one definition.
    deployment: Id,
}

impl AwsFixture {
    async fn new(name: &str) -> AwsFixture {
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        AwsFixture {
            target: push_target(name),
            ecs: aws_sdk_ecs::Client::new(&config),
            batch: aws_sdk_batch::Client::new(&config),
            deployment: Id::new_v4(),
        }
    }

    fn job(&self, kind: Kind, run_id: Id, attempt: Id, cluster: &str, queue: &str) -> Job {
        let mut run = FlowRun::new(
            Id::from_u128(7),
            sluice_core::time::parse_timestamp("2026-11-24T00:00:00Z").expect("ts"),
        );
        run.id = run_id;
        run.name = "conformance".to_owned();
        let pool_type = match kind {
            Kind::Ecs => "ecs:push",
            Kind::Batch => "batch:push",
        };
        let template = default_base_job_template(pool_type).expect("template");
        let vars = match kind {
            Kind::Ecs => json!({
                "cluster": cluster,
                "image": "busybox:latest",
                "command": "echo hello",
                "network_configuration": {
                    "subnets": self.target.subnets,
                    "securityGroups": self.target.security_groups,
                    "assignPublicIp": "ENABLED",
                },
            }),
            Kind::Batch => json!({
                "job_queue": queue,
                "image": "busybox:latest",
                "command": "echo hello",
            }),
        };
        let values = vars.as_object().cloned().unwrap_or_default();
        let no_env: BTreeMap<String, String> = BTreeMap::new();
        let mut config = finalize_base_fields(
            build_job_configuration(&template, &values, &no_env, &PrefetchedData::default())
                .expect("renders"),
        );
        if kind == Kind::Ecs {
            // Container-level memory: valid on AWS, and needed by the emulator's RunTask.
            config["task_definition"]["containerDefinitions"][0]["memory"] = json!(512);
        }
        let facts = RunFacts {
            run: &run,
            flow_name: Some("conformance"),
            deployment: Some((self.deployment, "conformance")),
            pool_name: "push-tests",
            pool_id: Id::from_u128(9),
            base_env: &no_env,
            attempt,
        };
        let config = push::prepare_for_flow_run(&config, &facts);
        match kind {
            Kind::Ecs => Job::Ecs(push::ecs::plan(&config, &facts, "us-east-1").expect("plans")),
            Kind::Batch => Job::Batch(push::batch::plan(&config, &facts).expect("plans")),
        }
    }
}

#[async_trait]
impl Fixture for AwsFixture {
    fn submission(&self, kind: Kind, run_id: Id, attempt_id: Id) -> Submission {
        Submission {
            run_id,
            attempt_id,
            job: self.job(
                kind,
                run_id,
                attempt_id,
                &self.target.cluster,
                &self.target.job_queue,
            ),
            credentials: None,
            attempt: Attempt::First,
        }
    }

    fn refused_submission(&self, kind: Kind, run_id: Id, attempt_id: Id) -> Submission {
        Submission {
            run_id,
            attempt_id,
            job: self.job(kind, run_id, attempt_id, "no-such-cluster", "no-such-queue"),
            credentials: None,
            attempt: Attempt::First,
        }
    }

    async fn started_for(&self, kind: Kind, run_id: Id) -> usize {
        match kind {
            Kind::Ecs => {
                let mut arns = std::collections::BTreeSet::new();
                for status in [
                    aws_sdk_ecs::types::DesiredStatus::Running,
                    aws_sdk_ecs::types::DesiredStatus::Stopped,
                ] {
                    let out = self
                        .ecs
                        .list_tasks()
                        .cluster(&self.target.cluster)
                        .started_by(run_id.to_string())
                        .desired_status(status)
                        .send()
                        .await
                        .expect("ListTasks");
                    arns.extend(out.task_arns().iter().cloned());
                }
                arns.len()
            }
            Kind::Batch => {
                let out = self
                    .batch
                    .list_jobs()
                    .job_queue(&self.target.job_queue)
                    .filters(
                        aws_sdk_batch::types::KeyValuesPair::builder()
                            .name("JOB_NAME")
                            .values(push::batch::job_name("conformance", &run_id.to_string()))
                            .build(),
                    )
                    .send()
                    .await
                    .expect("ListJobs");
                out.job_summary_list()
                    .iter()
                    .filter(|j| {
                        j.job_name()
                            .is_some_and(|n| n.ends_with(&run_id.to_string()))
                    })
                    .count()
            }
        }
    }
}

#[tokio::test]
async fn the_aws_adapter_keeps_the_push_infrastructure_contract() {
    if !aws_available("the_aws_adapter_keeps_the_push_infrastructure_contract") {
        return;
    }
    let fixture = AwsFixture::new(&format!(
        "sluice-conf-{}",
        &Id::new_v4().simple().to_string()[..8]
    ))
    .await;
    let infra = AwsPush::from_env(Rates::default());
    check_all(&infra, &fixture).await;
}

#[tokio::test]
async fn definitions_are_registered_once_per_content_across_runs_and_processes() {
    if !aws_available("definitions_are_registered_once_per_content_across_runs_and_processes") {
        return;
    }
    let fixture = AwsFixture::new(&format!(
        "sluice-defs-{}",
        &Id::new_v4().simple().to_string()[..8]
    ))
    .await;
    for kind in [Kind::Ecs, Kind::Batch] {
        // Two processes (fresh caches), three runs each.
        for _ in 0..2 {
            let infra = AwsPush::from_env(Rates::default());
            for _ in 0..3 {
                infra
                    .submit(&fixture.submission(kind, Id::new_v4(), Id::new_v4()))
                    .await
                    .expect("submits");
            }
        }
        let family = format!("prefect_push-tests_{}", fixture.deployment);
        let revisions = match kind {
            Kind::Ecs => fixture
                .ecs
                .list_task_definitions()
                .family_prefix(&family)
                .send()
                .await
                .expect("ListTaskDefinitions")
                .task_definition_arns()
                .len(),
            Kind::Batch => fixture
                .batch
                .describe_job_definitions()
                .job_definition_name(&family)
                .status("ACTIVE")
                .send()
                .await
                .expect("DescribeJobDefinitions")
                .job_definitions()
                .len(),
        };
        assert_eq!(revisions, 1, "{kind:?}: one definition for six runs");
    }
}

#[tokio::test]
async fn an_unknown_template_field_is_refused_with_its_path_before_any_call() {
    if !aws_available("an_unknown_template_field_is_refused_with_its_path_before_any_call") {
        return;
    }
    let fixture = AwsFixture::new(&format!(
        "sluice-bad-{}",
        &Id::new_v4().simple().to_string()[..8]
    ))
    .await;
    let run_id = Id::new_v4();
    let mut submission = fixture.submission(Kind::Ecs, run_id, Id::new_v4());
    if let Job::Ecs(plan) = &mut submission.job {
        plan.run_task
            .insert("placementWishes".to_owned(), Value::from("near the window"));
    }
    let infra = AwsPush::from_env(Rates::default());
    let err = infra.submit(&submission).await.expect_err("refused");
    assert!(!err.is_transient());
    assert!(
        err.to_string().contains("task_run_request.placementWishes"),
        "{err}"
    );
    assert_eq!(fixture.started_for(Kind::Ecs, run_id).await, 0);
}
