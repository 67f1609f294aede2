//! The scheduler service (Prefect §5.2): keeps each active schedule of each unpaused deployment
//! stocked with upcoming runs. Runs carry the idempotency key
//! `scheduled {deployment_id} {schedule_id} {date}`, so overlapping ticks create each run once.

use sluice_core::domain::{
    CreatedBy, Deployment, DeploymentSchedule, FlowRun, Id, State, StateType, Timestamp,
};
use sluice_core::{orchestration, schedules};
use sluice_store::{DeploymentFilter, FlowRunFilter, FlowRunSort};

use crate::Services;
use crate::error::Result;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TickReport {
    pub deployments: usize,
    pub runs_created: usize,
}

/// One pass over every schedulable deployment, in pages of `deployment_batch_size` by id.
pub async fn tick(services: &Services) -> Result<TickReport> {
    let mut report = TickReport::default();
    let batch = services.settings.scheduler.deployment_batch_size;
    // Always set, even for the first page: only with `id_after` does the store order by id, and
    // keyset paging by id needs every page in that order.
    let mut after = Id::nil();
    loop {
        let filter = DeploymentFilter {
            paused: Some(false),
            has_active_schedule: Some(true),
            id_after: Some(after),
            ..Default::default()
        };
        let page = services
            .store
            .list_deployments(&filter, Some(batch), 0)
            .await?;
        for d in &page {
            report.runs_created += schedule_deployment(services, d).await?;
            report.deployments += 1;
        }
        match page.last() {
            Some(last) if page.len() == batch => after = last.id,
            _ => break,
        }
    }
    Ok(report)
}

/// Tops up every active schedule of `deployment`. Returns how many runs were created.
pub async fn schedule_deployment(services: &Services, deployment: &Deployment) -> Result<usize> {
    if deployment.paused {
        return Ok(0);
    }
    let now = services.now();
    let settings = &services.settings.scheduler;
    let pool_id = match &deployment.work_pool_name {
        Some(name) => services
            .store
            .read_work_pool_by_name(name)
            .await?
            .map(|p| (p.id, p.pool_type)),
        None => None,
    };
    let (pool_id, pool_type) = match pool_id {
        Some((id, t)) => (Some(id), Some(t)),
        None => (None, None),
    };
    let mut runs = Vec::new();
    for schedule in deployment.schedules.iter().filter(|s| s.active) {
        let filter = FlowRunFilter {
            deployment_ids: Some(vec![deployment.id]),
            created_by_ids: Some(vec![schedule.id]),
            auto_scheduled: Some(true),
            state_types: Some(vec![StateType::Scheduled]),
            next_scheduled_start_time_after: Some(now),
            ..Default::default()
        };
        let existing = services
            .store
            .list_flow_runs(&filter, FlowRunSort::NextScheduledStartTimeAsc, None, 0)
            .await?;
        let latest = existing
            .iter()
            .filter_map(|r| r.next_scheduled_start_time)
            .max();
        if !schedules::schedule_needs_runs(existing.len(), latest, now, settings) {
            continue;
        }
        let dates = match schedules::dates_to_schedule(&schedule.schedule, now, settings) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(deployment_id = %deployment.id, schedule_id = %schedule.id, error = %e, "schedule cannot produce dates");
                continue;
            }
        };
        for date in dates {
            let key = schedules::idempotency_key(deployment.id, schedule.id, &date);
            runs.push(scheduled_run(
                deployment,
                schedule,
                pool_id,
                date.with_timezone(&chrono::Utc),
                key,
                now,
            ));
        }
    }
    if runs.is_empty() {
        return Ok(0);
    }
    let mut created = 0;
    for chunk in runs.chunks(settings.insert_batch_size.max(1)) {
        let ids = services.store.create_flow_runs(chunk).await?;
        created += ids.len();
        let new: Vec<_> = chunk
            .iter()
            .filter(|r| ids.contains(&r.id))
            .filter_map(|r| r.next_scheduled_start_time.map(|t| (r.id, t)))
            .collect();
        services
            .announce_push_runs(pool_type.as_deref(), &new)
            .await;
    }
    Ok(created)
}

fn scheduled_run(
    d: &Deployment,
    schedule: &DeploymentSchedule,
    pool_id: Option<Id>,
    date: Timestamp,
    key: String,
    now: Timestamp,
) -> FlowRun {
    let mut run = FlowRun::new(d.flow_id, now);
    run.deployment_id = Some(d.id);
    run.deployment_version = d.version.clone();
    run.work_queue_id = d.work_queue_id;
    run.work_queue_name = d.work_queue_name.clone();
    run.work_pool_id = pool_id;
    run.work_pool_name = d.work_pool_name.clone();
    let mut parameters = d.parameters.clone();
    for (k, v) in &schedule.parameters {
        parameters.insert(k.clone(), v.clone());
    }
    run.parameters = parameters;
    let mut tags = vec!["auto-scheduled".to_owned()];
    tags.extend(d.tags.iter().filter(|t| *t != "auto-scheduled").cloned());
    run.tags = tags;
    run.labels = d.labels.clone();
    run.auto_scheduled = true;
    run.idempotency_key = Some(key);
    run.created_by = Some(CreatedBy {
        id: Some(schedule.id),
        created_by_type: Some("SCHEDULE".to_owned()),
        display_value: Some(
            schedule
                .slug
                .clone()
                .unwrap_or_else(|| schedule.schedule.kind_name().to_owned()),
        ),
    });
    let state = State::new(StateType::Scheduled, now)
        .scheduled_at(date)
        .with_message("Flow run scheduled");
    orchestration::set_initial_state(run, state, now)
}
