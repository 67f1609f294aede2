//! ECS: task definitions reused by content hash, RunTask with the run's id as client token and
//! `startedBy`, DescribeTasks for progress, StopTask.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, CapacityProviderStrategyItem, Compatibility,
    ContainerDefinition, ContainerOverride, CpuArchitecture, DesiredStatus, EphemeralStorage,
    KeyValuePair, LaunchType, LogConfiguration, LogDriver, NetworkConfiguration, NetworkMode,
    OsFamily, PortMapping, PropagateTags, RuntimePlatform, Secret, Tag, TaskDefinitionField,
    TaskField, TaskOverride, TransportProtocol,
};
use governor::DefaultDirectRateLimiter;
use serde_json::{Map, Value};
use sluice_core::push::ecs::{EcsPlan, TaskDefinition, infrastructure_id, parse_infrastructure_id};
use sluice_core::push::observe::{EcsContainer, EcsTask, Progress, ecs_progress};
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
    plan: &EcsPlan,
) -> Result<Submitted, InfraError> {
    let run_id = submission.run_id.to_string();
    let cluster = plan.cluster().map(str::to_owned);
    if submission.attempt == Attempt::Resume
        && let Some(task_arn) = find(
            clients,
            cluster.as_deref(),
            &run_id,
            &submission.attempt_id.to_string(),
        )
        .await?
    {
        return Ok(Submitted {
            infrastructure_id: infrastructure_id(
                cluster.as_deref().unwrap_or("default"),
                &task_arn,
            ),
            found_existing: true,
        });
    }
    let definition = match &plan.task_definition {
        TaskDefinition::Existing(arn) => arn.clone(),
        TaskDefinition::Register { family, body, hash } => {
            ensure_definition(clients, cache, family, body, hash).await?
        }
    };
    let request = run_task_request(clients, &plan.run_task, &definition)?;
    limiter.until_ready().await;
    let out = request.send().await.map_err(|e| classify("RunTask", &e))?;
    if let Some(task) = out.tasks().first()
        && let Some(arn) = task.task_arn()
    {
        let cluster = cluster
            .or_else(|| task.cluster_arn().map(str::to_owned))
            .unwrap_or_else(|| "default".to_owned());
        return Ok(Submitted {
            infrastructure_id: infrastructure_id(&cluster, arn),
            found_existing: false,
        });
    }
    let reasons: Vec<String> = out
        .failures()
        .iter()
        .map(|f| {
            format!(
                "{}{}",
                f.reason().unwrap_or("unknown"),
                f.detail().map(|d| format!(" ({d})")).unwrap_or_default()
            )
        })
        .collect();
    let text = format!("RunTask started no task: {}", reasons.join("; "));
    // Placement failures for lack of resources clear up as capacity frees.
    if reasons
        .iter()
        .any(|r| r.starts_with("RESOURCE") || r.contains("AGENT") || r.contains("capacity"))
    {
        Err(InfraError::Transient(text))
    } else {
        Err(InfraError::Rejected(text))
    }
}

/// The task of this run and attempt, running or stopped: the run's tasks by `startedBy`, then
/// the one tagged with the attempt.
async fn find(
    clients: &Clients,
    cluster: Option<&str>,
    run_id: &str,
    attempt: &str,
) -> Result<Option<String>, InfraError> {
    let mut candidates = Vec::new();
    for status in [DesiredStatus::Running, DesiredStatus::Stopped] {
        let out = clients
            .ecs
            .list_tasks()
            .set_cluster(cluster.map(str::to_owned))
            .started_by(run_id)
            .desired_status(status)
            .send()
            .await
            .map_err(|e| classify("ListTasks", &e))?;
        for arn in out.task_arns() {
            if !candidates.contains(arn) {
                candidates.push(arn.clone());
            }
        }
    }
    for chunk in candidates.chunks(DESCRIBE_BATCH) {
        let out = clients
            .ecs
            .describe_tasks()
            .set_cluster(cluster.map(str::to_owned))
            .set_tasks(Some(chunk.to_vec()))
            .include(TaskField::Tags)
            .send()
            .await
            .map_err(|e| classify("DescribeTasks", &e))?;
        let ours = out.tasks().iter().find(|t| {
            t.tags()
                .iter()
                .any(|tag| tag.key() == Some(ATTEMPT_TAG) && tag.value() == Some(attempt))
        });
        if let Some(arn) = ours.and_then(|t| t.task_arn()) {
            return Ok(Some(arn.to_owned()));
        }
    }
    Ok(None)
}

/// The ARN of an ACTIVE definition with this content: from the cache, the family's latest
/// revision when its hash tag matches, or a new registration.
async fn ensure_definition(
    clients: &Clients,
    cache: &DefinitionCache,
    family: &str,
    body: &Map<String, Value>,
    hash: &str,
) -> Result<String, InfraError> {
    let key = format!("ecs:{family}:{hash}");
    if let Some(arn) = cache.get(&key) {
        return Ok(arn);
    }
    let described = clients
        .ecs
        .describe_task_definition()
        .task_definition(family)
        .include(TaskDefinitionField::Tags)
        .send()
        .await;
    if let Ok(out) = described {
        let active = out
            .task_definition()
            .is_some_and(|d| d.status().is_some_and(|s| s.as_str() == "ACTIVE"));
        let same = out
            .tags()
            .iter()
            .any(|t| t.key() == Some(CONTENT_HASH_TAG) && t.value() == Some(hash));
        if let (true, true, Some(arn)) = (
            active,
            same,
            out.task_definition().and_then(|d| d.task_definition_arn()),
        ) {
            cache.put(key, arn.to_owned());
            return Ok(arn.to_owned());
        }
    }
    // An unknown family is an error here too; either way, register.
    let arn = register(clients, body, hash).await?;
    tracing::info!(family, arn = %arn, "registered ECS task definition");
    cache.put(key, arn.clone());
    Ok(arn)
}

async fn register(
    clients: &Clients,
    body: &Map<String, Value>,
    hash: &str,
) -> Result<String, InfraError> {
    let o = Obj::of_map("task_definition", body);
    let mut req = clients
        .ecs
        .register_task_definition()
        .set_family(o.str("family")?)
        .set_cpu(o.str("cpu")?)
        .set_memory(o.str("memory")?)
        .set_execution_role_arn(o.str("executionRoleArn")?)
        .set_task_role_arn(o.str("taskRoleArn")?)
        .tags(Tag::builder().key(CONTENT_HASH_TAG).value(hash).build());
    if let Some(mode) = o.str("networkMode")? {
        req = req.network_mode(NetworkMode::from(mode.as_str()));
    }
    for c in o.strs("requiresCompatibilities")?.unwrap_or_default() {
        req = req.requires_compatibilities(Compatibility::from(c.as_str()));
    }
    if let Some(rp) = o.obj("runtimePlatform")? {
        let mut b = RuntimePlatform::builder();
        if let Some(a) = rp.str("cpuArchitecture")? {
            b = b.cpu_architecture(CpuArchitecture::from(a.as_str()));
        }
        if let Some(f) = rp.str("operatingSystemFamily")? {
            b = b.operating_system_family(OsFamily::from(f.as_str()));
        }
        rp.done()?;
        req = req.runtime_platform(b.build());
    }
    if let Some(es) = o.obj("ephemeralStorage")? {
        let size = es
            .int("sizeInGiB")?
            .ok_or_else(|| invalid("task_definition.ephemeralStorage", "needs sizeInGiB"))?;
        es.done()?;
        req = req.ephemeral_storage(EphemeralStorage::builder().size_in_gib(size).build());
    }
    for tag in tags(&o)? {
        req = req.tags(tag);
    }
    for c in o.list("containerDefinitions")? {
        req = req.container_definitions(container_definition(&c)?);
        c.done()?;
    }
    o.done()?;
    let out = req
        .send()
        .await
        .map_err(|e| classify("RegisterTaskDefinition", &e))?;
    out.task_definition()
        .and_then(|d| d.task_definition_arn())
        .map(str::to_owned)
        .ok_or_else(|| InfraError::Transient("RegisterTaskDefinition returned no ARN".to_owned()))
}

fn container_definition(c: &Obj<'_>) -> Result<ContainerDefinition, InfraError> {
    let mut b = ContainerDefinition::builder()
        .set_name(c.str("name")?)
        .set_image(c.str("image")?)
        .set_command(c.strs("command")?)
        .set_entry_point(c.strs("entryPoint")?)
        .set_essential(c.bool("essential")?)
        .set_cpu(c.int("cpu")?)
        .set_memory(c.int("memory")?)
        .set_memory_reservation(c.int("memoryReservation")?)
        .set_working_directory(c.str("workingDirectory")?)
        .set_user(c.str("user")?);
    for e in c.list("environment")? {
        b = b.environment(key_value(&e)?);
    }
    for s in c.list("secrets")? {
        let secret = Secret::builder()
            .set_name(s.str("name")?)
            .set_value_from(s.str("valueFrom")?)
            .build()
            .map_err(|e| invalid("containerDefinitions.secrets", &e.to_string()))?;
        s.done()?;
        b = b.secrets(secret);
    }
    for p in c.list("portMappings")? {
        let mut pm = PortMapping::builder()
            .set_container_port(p.int("containerPort")?)
            .set_host_port(p.int("hostPort")?);
        if let Some(proto) = p.str("protocol")? {
            pm = pm.protocol(TransportProtocol::from(proto.as_str()));
        }
        p.done()?;
        b = b.port_mappings(pm.build());
    }
    if let Some(lc) = c.obj("logConfiguration")? {
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
                .build()
                .map_err(|e| invalid("logConfiguration", &e.to_string()))?,
        );
    }
    Ok(b.build())
}

/// `[{key, value}]` as ECS tags (task definitions and tasks alike).
fn tags(o: &Obj<'_>) -> Result<Vec<Tag>, InfraError> {
    o.list("tags")?
        .into_iter()
        .map(|t| {
            let tag = Tag::builder()
                .set_key(t.str("key")?)
                .set_value(t.str("value")?)
                .build();
            t.done()?;
            Ok(tag)
        })
        .collect()
}

fn key_value(e: &Obj<'_>) -> Result<KeyValuePair, InfraError> {
    let kv = KeyValuePair::builder()
        .set_name(e.str("name")?)
        .set_value(e.str("value")?)
        .build();
    Ok(kv)
}

fn run_task_request(
    clients: &Clients,
    body: &Map<String, Value>,
    definition: &str,
) -> Result<aws_sdk_ecs::operation::run_task::builders::RunTaskFluentBuilder, InfraError> {
    let o = Obj::of_map("task_run_request", body);
    let mut req = clients
        .ecs
        .run_task()
        .task_definition(definition)
        .set_cluster(o.str("cluster")?)
        .set_started_by(o.str("startedBy")?)
        .set_client_token(o.str("clientToken")?)
        .set_group(o.str("group")?)
        .set_platform_version(o.str("platformVersion")?)
        .set_reference_id(o.str("referenceId")?)
        .set_count(o.int("count")?)
        .set_enable_ecs_managed_tags(o.bool("enableECSManagedTags")?)
        .set_enable_execute_command(o.bool("enableExecuteCommand")?);
    if let Some(lt) = o.str("launchType")? {
        req = req.launch_type(LaunchType::from(lt.as_str()));
    }
    if let Some(p) = o.str("propagateTags")? {
        req = req.propagate_tags(PropagateTags::from(p.as_str()));
    }
    for s in o.list("capacityProviderStrategy")? {
        let item = CapacityProviderStrategyItem::builder()
            .set_capacity_provider(s.str("capacityProvider")?)
            .set_weight(s.int("weight")?)
            .set_base(s.int("base")?)
            .build()
            .map_err(|e| invalid("task_run_request.capacityProviderStrategy", &e.to_string()))?;
        s.done()?;
        req = req.capacity_provider_strategy(item);
    }
    if let Some(nc) = o.obj("networkConfiguration")? {
        if let Some(vpc) = nc.obj("awsvpcConfiguration")? {
            let mut b = AwsVpcConfiguration::builder()
                .set_subnets(vpc.strs("subnets")?)
                .set_security_groups(vpc.strs("securityGroups")?);
            if let Some(ip) = vpc.str("assignPublicIp")? {
                b = b.assign_public_ip(AssignPublicIp::from(ip.as_str()));
            }
            vpc.done()?;
            let vpc = b.build().map_err(|e| {
                invalid(
                    "network_configuration",
                    &format!("{e} (subnets are required)"),
                )
            })?;
            req = req.network_configuration(
                NetworkConfiguration::builder()
                    .awsvpc_configuration(vpc)
                    .build(),
            );
        }
        nc.done()?;
    }
    if let Some(ov) = o.obj("overrides")? {
        let mut b = TaskOverride::builder()
            .set_cpu(ov.str("cpu")?)
            .set_memory(ov.str("memory")?)
            .set_task_role_arn(ov.str("taskRoleArn")?)
            .set_execution_role_arn(ov.str("executionRoleArn")?);
        for c in ov.list("containerOverrides")? {
            let mut co = ContainerOverride::builder()
                .set_name(c.str("name")?)
                .set_command(c.strs("command")?)
                .set_cpu(c.int("cpu")?)
                .set_memory(c.int("memory")?)
                .set_memory_reservation(c.int("memoryReservation")?);
            for e in c.list("environment")? {
                co = co.environment(key_value(&e)?);
                e.done()?;
            }
            c.done()?;
            b = b.container_overrides(co.build());
        }
        ov.done()?;
        req = req.overrides(b.build());
    }
    for tag in tags(&o)? {
        req = req.tags(tag);
    }
    o.done()?;
    Ok(req)
}

pub(crate) async fn observe(
    clients: &Clients,
    ids: &[String],
) -> Result<Vec<Progress>, InfraError> {
    // Group by cluster; DescribeTasks takes up to 100 tasks of one cluster.
    let mut by_cluster: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for id in ids {
        if let Some((cluster, task)) = parse_infrastructure_id(id) {
            by_cluster.entry(cluster).or_default().push(task);
        }
    }
    let mut found: HashMap<String, EcsTask> = HashMap::new();
    for (cluster, tasks) in by_cluster {
        for chunk in tasks.chunks(DESCRIBE_BATCH) {
            let out = clients
                .ecs
                .describe_tasks()
                .cluster(cluster)
                .set_tasks(Some(chunk.iter().map(|t| (*t).to_owned()).collect()))
                .include(TaskField::Tags)
                .send()
                .await;
            let out = match out {
                Ok(out) => out,
                // A cluster that is gone holds none of its tasks any more.
                Err(e) if is_cluster_not_found(&e) => continue,
                Err(e) => return Err(classify("DescribeTasks", &e)),
            };
            for t in out.tasks() {
                if let Some(arn) = t.task_arn() {
                    found.insert(arn.to_owned(), task_facts(t));
                }
            }
        }
    }
    Ok(ids
        .iter()
        .map(|id| {
            parse_infrastructure_id(id)
                .and_then(|(_, task)| found.get(task))
                .map_or(Progress::Missing, |t| ecs_progress(t, None))
        })
        .collect())
}

fn is_cluster_not_found<R>(
    e: &aws_sdk_ecs::error::SdkError<aws_sdk_ecs::operation::describe_tasks::DescribeTasksError, R>,
) -> bool {
    matches!(e.as_service_error(), Some(s) if s.is_cluster_not_found_exception())
}

/// The SDK's task in the shape events carry, so both go through one mapping.
fn task_facts(t: &aws_sdk_ecs::types::Task) -> EcsTask {
    EcsTask {
        task_arn: t.task_arn().map(str::to_owned),
        cluster_arn: t.cluster_arn().map(str::to_owned),
        last_status: t.last_status().map(str::to_owned),
        desired_status: t.desired_status().map(str::to_owned),
        stop_code: t.stop_code().map(|c| c.as_str().to_owned()),
        stopped_reason: t.stopped_reason().map(str::to_owned),
        started_by: t.started_by().map(str::to_owned),
        containers: t
            .containers()
            .iter()
            .map(|c| EcsContainer {
                name: c.name().map(str::to_owned),
                exit_code: c.exit_code().map(i64::from),
                reason: c.reason().map(str::to_owned),
                last_status: c.last_status().map(str::to_owned),
            })
            .collect(),
    }
}

pub(crate) async fn stop(clients: &Clients, id: &str, reason: &str) -> Result<(), InfraError> {
    let Some((cluster, task)) = parse_infrastructure_id(id) else {
        return Err(InfraError::Rejected(format!(
            "{id:?} is not an ECS infrastructure id (cluster::task ARN)"
        )));
    };
    // Only a task that is still there and not stopped needs the call (StopTask on an unknown
    // task is an error on AWS and a server fault on some emulators).
    let seen = observe(clients, &[id.to_owned()]).await?;
    if seen.first().is_none_or(Progress::is_final) {
        return Ok(());
    }
    match clients
        .ecs
        .stop_task()
        .cluster(cluster)
        .task(task)
        .reason(reason)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e) => {
            let err = classify("StopTask", &e);
            if err.to_string().contains("not found") {
                Ok(())
            } else {
                Err(err)
            }
        }
    }
}
