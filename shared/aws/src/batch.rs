//! AWS Batch: job definitions reused by content hash, SubmitJob (after a lookup by job name when
//! resuming, since Batch has no client token), DescribeJobs for progress, TerminateJob.

use std::collections::HashMap;

use aws_sdk_batch::types::{
    ArrayProperties, AssignPublicIp, ContainerOverrides, ContainerProperties,
    FargatePlatformConfiguration, JobDefinitionType, JobTimeout, KeyValuePair, KeyValuesPair,
    LogConfiguration, LogDriver, NetworkConfiguration, PlatformCapability, ResourceRequirement,
    ResourceType, RetryStrategy, RuntimePlatform,
};
use governor::DefaultDirectRateLimiter;
use serde_json::{Map, Value};
use sluice_core::push::batch::{BatchPlan, JobDefinition};
use sluice_core::push::observe::{BatchContainer, BatchJob, Progress, batch_progress};
use sluice_core::push::{ATTEMPT_TAG, CONTENT_HASH_TAG};
use sluice_infra::{Attempt, InfraError, Submission, Submitted};

use crate::DefinitionCache;
use crate::clients::Clients;
use crate::error::classify;
use crate::json::{Obj, invalid};

const DESCRIBE_BATCH: usize = 100;

pub(crate) async fn submit(
    clients: &Clients,
    cache: &DefinitionCache,
    limiter: &DefaultDirectRateLimiter,
    submission: &Submission,
    plan: &BatchPlan,
) -> Result<Submitted, InfraError> {
    if submission.attempt == Attempt::Resume
        && let Some(job_id) = find(
            clients,
            plan.job_queue(),
            plan.job_name(),
            &submission.attempt_id.to_string(),
        )
        .await?
    {
        return Ok(Submitted {
            infrastructure_id: job_id,
            found_existing: true,
        });
    }
    let definition = match &plan.job_definition {
        JobDefinition::Existing(arn) => arn.clone(),
        JobDefinition::Register { name, body, hash } => {
            ensure_definition(clients, cache, name, body, hash).await?
        }
    };
    let request = submit_request(clients, &plan.submit_job, &definition)?;
    limiter.until_ready().await;
    let out = request
        .send()
        .await
        .map_err(|e| classify("SubmitJob", &e))?;
    Ok(Submitted {
        infrastructure_id: out
            .job_id()
            .map(str::to_owned)
            .ok_or_else(|| InfraError::Transient("SubmitJob returned no job id".to_owned()))?,
        found_existing: false,
    })
}

/// The job of this run and attempt: the queue's jobs with this exact name, whatever their
/// status, then the one tagged with the attempt.
async fn find(
    clients: &Clients,
    queue: &str,
    name: &str,
    attempt: &str,
) -> Result<Option<String>, InfraError> {
    let out = clients
        .batch
        .list_jobs()
        .job_queue(queue)
        .filters(
            KeyValuesPair::builder()
                .name("JOB_NAME")
                .values(name)
                .build(),
        )
        .send()
        .await
        .map_err(|e| classify("ListJobs", &e))?;
    let ids: Vec<String> = out
        .job_summary_list()
        .iter()
        .filter(|j| j.job_name() == Some(name))
        .filter_map(|j| j.job_id().map(str::to_owned))
        .collect();
    for chunk in ids.chunks(DESCRIBE_BATCH) {
        let described = clients
            .batch
            .describe_jobs()
            .set_jobs(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(|e| classify("DescribeJobs", &e))?;
        let ours = described.jobs().iter().find(|j| {
            j.tags()
                .and_then(|t| t.get(ATTEMPT_TAG))
                .is_some_and(|v| v == attempt)
        });
        if let Some(id) = ours.and_then(|j| j.job_id()) {
            return Ok(Some(id.to_owned()));
        }
    }
    Ok(None)
}

async fn ensure_definition(
    clients: &Clients,
    cache: &DefinitionCache,
    name: &str,
    body: &Map<String, Value>,
    hash: &str,
) -> Result<String, InfraError> {
    let key = format!("batch:{name}:{hash}");
    if let Some(arn) = cache.get(&key) {
        return Ok(arn);
    }
    let out = clients
        .batch
        .describe_job_definitions()
        .job_definition_name(name)
        .status("ACTIVE")
        .send()
        .await
        .map_err(|e| classify("DescribeJobDefinitions", &e))?;
    let existing = out.job_definitions().iter().find(|d| {
        d.tags()
            .is_some_and(|t| t.get(CONTENT_HASH_TAG).map(String::as_str) == Some(hash))
    });
    let arn = match existing {
        Some(d) => d.job_definition_arn().unwrap_or_default().to_owned(),
        None => {
            let arn = register(clients, body, hash).await?;
            tracing::info!(name, arn = %arn, "registered Batch job definition");
            arn
        }
    };
    cache.put(key, arn.clone());
    Ok(arn)
}

fn resource_requirements(o: &Obj<'_>) -> Result<Vec<ResourceRequirement>, InfraError> {
    o.list("resourceRequirements")?
        .into_iter()
        .map(|r| {
            let kind = r
                .str("type")?
                .ok_or_else(|| invalid("resourceRequirements", "needs a type"))?;
            let req = ResourceRequirement::builder()
                .r#type(ResourceType::from(kind.as_str()))
                .set_value(r.str("value")?)
                .build();
            r.done()?;
            Ok(req)
        })
        .collect()
}

/// `retryStrategy` and `timeout` read the same in a job definition and in a submission.
fn retry_strategy(o: &Obj<'_>) -> Result<Option<RetryStrategy>, InfraError> {
    let Some(r) = o.obj("retryStrategy")? else {
        return Ok(None);
    };
    let strategy = RetryStrategy::builder()
        .set_attempts(r.int("attempts")?)
        .build();
    r.done()?;
    Ok(Some(strategy))
}

fn timeout(o: &Obj<'_>) -> Result<Option<JobTimeout>, InfraError> {
    let Some(t) = o.obj("timeout")? else {
        return Ok(None);
    };
    let timeout = JobTimeout::builder()
        .set_attempt_duration_seconds(t.int("attemptDurationSeconds")?)
        .build();
    t.done()?;
    Ok(Some(timeout))
}

fn environment(o: &Obj<'_>) -> Result<Vec<KeyValuePair>, InfraError> {
    o.list("environment")?
        .into_iter()
        .map(|e| {
            let kv = KeyValuePair::builder()
                .set_name(e.str("name")?)
                .set_value(e.str("value")?)
                .build();
            e.done()?;
            Ok(kv)
        })
        .collect()
}

async fn register(
    clients: &Clients,
    body: &Map<String, Value>,
    hash: &str,
) -> Result<String, InfraError> {
    let o = Obj::of_map("job_definition", body);
    let kind = o.str("type")?.unwrap_or_else(|| "container".to_owned());
    let mut req = clients
        .batch
        .register_job_definition()
        .set_job_definition_name(o.str("jobDefinitionName")?)
        .r#type(JobDefinitionType::from(kind.as_str()))
        .set_propagate_tags(o.bool("propagateTags")?)
        .tags(CONTENT_HASH_TAG, hash);
    for cap in o.strs("platformCapabilities")?.unwrap_or_default() {
        req = req.platform_capabilities(PlatformCapability::from(cap.as_str()));
    }
    req = req
        .set_retry_strategy(retry_strategy(&o)?)
        .set_timeout(timeout(&o)?);
    if let Some(p) = o.obj("containerProperties")? {
        let mut b = ContainerProperties::builder()
            .set_image(p.str("image")?)
            .set_command(p.strs("command")?)
            .set_job_role_arn(p.str("jobRoleArn")?)
            .set_execution_role_arn(p.str("executionRoleArn")?)
            .set_resource_requirements(Some(resource_requirements(&p)?))
            .set_environment(Some(environment(&p)?));
        if let Some(n) = p.obj("networkConfiguration")? {
            if let Some(ip) = n.str("assignPublicIp")? {
                b = b.network_configuration(
                    NetworkConfiguration::builder()
                        .assign_public_ip(AssignPublicIp::from(ip.as_str()))
                        .build(),
                );
            }
            n.done()?;
        }
        if let Some(f) = p.obj("fargatePlatformConfiguration")? {
            b = b.fargate_platform_configuration(
                FargatePlatformConfiguration::builder()
                    .set_platform_version(f.str("platformVersion")?)
                    .build(),
            );
            f.done()?;
        }
        if let Some(rp) = p.obj("runtimePlatform")? {
            b = b.runtime_platform(
                RuntimePlatform::builder()
                    .set_cpu_architecture(rp.str("cpuArchitecture")?)
                    .set_operating_system_family(rp.str("operatingSystemFamily")?)
                    .build(),
            );
            rp.done()?;
        }
        if let Some(lc) = p.obj("logConfiguration")? {
            let driver = lc
                .str("logDriver")?
                .ok_or_else(|| invalid("logConfiguration", "needs logDriver"))?;
            let options: Option<HashMap<String, String>> = lc
                .string_map("options")?
                .map(|pairs| pairs.into_iter().collect());
            lc.done()?;
            b = b.log_configuration(
                LogConfiguration::builder()
                    .log_driver(LogDriver::from(driver.as_str()))
                    .set_options(options)
                    .build(),
            );
        }
        p.done()?;
        req = req.container_properties(b.build());
    }
    o.done()?;
    let out = req
        .send()
        .await
        .map_err(|e| classify("RegisterJobDefinition", &e))?;
    out.job_definition_arn()
        .map(str::to_owned)
        .ok_or_else(|| InfraError::Transient("RegisterJobDefinition returned no ARN".to_owned()))
}

fn submit_request(
    clients: &Clients,
    body: &Map<String, Value>,
    definition: &str,
) -> Result<aws_sdk_batch::operation::submit_job::builders::SubmitJobFluentBuilder, InfraError> {
    let o = Obj::of_map("submit_job_request", body);
    let mut req = clients
        .batch
        .submit_job()
        .job_definition(definition)
        .set_job_name(o.str("jobName")?)
        .set_job_queue(o.str("jobQueue")?)
        .set_propagate_tags(o.bool("propagateTags")?)
        .set_scheduling_priority_override(o.int("schedulingPriorityOverride")?)
        .set_share_identifier(o.str("shareIdentifier")?);
    if let Some(c) = o.obj("containerOverrides")? {
        let reqs = resource_requirements(&c)?;
        let env = environment(&c)?;
        req = req.container_overrides(
            ContainerOverrides::builder()
                .set_command(c.strs("command")?)
                .set_environment(Some(env))
                .set_resource_requirements((!reqs.is_empty()).then_some(reqs))
                .build(),
        );
        c.done()?;
    }
    req = req
        .set_retry_strategy(retry_strategy(&o)?)
        .set_timeout(timeout(&o)?);
    if let Some(a) = o.obj("arrayProperties")? {
        req = req.array_properties(ArrayProperties::builder().set_size(a.int("size")?).build());
        a.done()?;
    }
    if let Some(tags) = o.string_map("tags")? {
        for (k, v) in tags {
            req = req.tags(k, v);
        }
    }
    if let Some(params) = o.string_map("parameters")? {
        for (k, v) in params {
            req = req.parameters(k, v);
        }
    }
    o.done()?;
    Ok(req)
}

pub(crate) async fn observe(
    clients: &Clients,
    ids: &[String],
) -> Result<Vec<Progress>, InfraError> {
    let mut found: HashMap<String, BatchJob> = HashMap::new();
    for chunk in ids.chunks(DESCRIBE_BATCH) {
        let out = clients
            .batch
            .describe_jobs()
            .set_jobs(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(|e| classify("DescribeJobs", &e))?;
        for j in out.jobs() {
            let Some(id) = j.job_id() else { continue };
            found.insert(
                id.to_owned(),
                BatchJob {
                    job_id: Some(id.to_owned()),
                    job_name: j.job_name().map(str::to_owned),
                    job_queue: j.job_queue().map(str::to_owned),
                    status: j.status().map(|s| s.as_str().to_owned()),
                    status_reason: j.status_reason().map(str::to_owned),
                    container: j.container().map(|c| BatchContainer {
                        exit_code: c.exit_code().map(i64::from),
                        reason: c.reason().map(str::to_owned),
                    }),
                    tags: j
                        .tags()
                        .map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                        .unwrap_or_default(),
                },
            );
        }
    }
    Ok(ids
        .iter()
        .map(|id| found.get(id).map_or(Progress::Missing, batch_progress))
        .collect())
}

pub(crate) async fn stop(clients: &Clients, id: &str, reason: &str) -> Result<(), InfraError> {
    let seen = observe(clients, &[id.to_owned()]).await?;
    if seen.first().is_none_or(Progress::is_final) {
        return Ok(());
    }
    // TerminateJob also cancels a job that has not started yet.
    clients
        .batch
        .terminate_job()
        .job_id(id)
        .reason(reason)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| classify("TerminateJob", &e))
}
