//! The long-running form of the background services for `sluice server`: each tick function on
//! its own interval until shutdown. (On AWS the same ticks run from a scheduled Lambda.)

use std::future::Future;
use std::time::Duration;

use crate::Services;

#[derive(Debug, Clone)]
pub struct Intervals {
    pub scheduler: Duration,
    pub late_runs: Duration,
    pub foreman: Duration,
    /// Expired concurrency leases give their slots back.
    pub leases: Duration,
    /// Events older than the retention are deleted.
    pub events: Duration,
}

impl Default for Intervals {
    /// Prefect's loop intervals: scheduler 60 s, late runs 5 s, foreman 15 s, lease
    /// repossession 15 s. The scheduler also runs inline whenever a deployment changes, so
    /// 60 s only tops up the horizon.
    fn default() -> Intervals {
        Intervals {
            scheduler: Duration::from_secs(60),
            late_runs: Duration::from_secs(5),
            foreman: Duration::from_secs(15),
            leases: Duration::from_secs(15),
            events: Duration::from_secs(3600),
        }
    }
}

/// Runs the loops until `shutdown` resolves. A failing tick is logged and retried on the
/// next interval; it never stops the loop.
pub async fn run(services: Services, intervals: Intervals, shutdown: impl Future<Output = ()>) {
    let mut scheduler = tokio::time::interval(intervals.scheduler);
    let mut late = tokio::time::interval(intervals.late_runs);
    let mut foreman = tokio::time::interval(intervals.foreman);
    let mut leases = tokio::time::interval(intervals.leases);
    let mut events = tokio::time::interval(intervals.events);
    for i in [
        &mut scheduler,
        &mut late,
        &mut foreman,
        &mut leases,
        &mut events,
    ] {
        i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    }
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            _ = scheduler.tick() => match crate::scheduler::tick(&services).await {
                Ok(r) if r.runs_created > 0 => tracing::info!(deployments = r.deployments, runs_created = r.runs_created, "scheduler tick"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "scheduler tick failed"),
            },
            _ = late.tick() => match crate::late_runs::tick(&services).await {
                Ok(n) if n > 0 => tracing::info!(marked = n, "late runs marked"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "late-run tick failed"),
            },
            _ = foreman.tick() => match crate::foreman::tick(&services).await {
                Ok(r) => if r != Default::default() {
                    tracing::info!(
                        workers_offline = r.workers_offline,
                        pools_not_ready = r.pools_not_ready,
                        queues_not_ready = r.queues_not_ready,
                        deployments_not_ready = r.deployments_not_ready,
                        "foreman tick"
                    )
                },
                Err(e) => tracing::warn!(error = %e, "foreman tick failed"),
            },
            _ = leases.tick() => match services.expire_concurrency_leases().await {
                Ok(n) if n > 0 => tracing::info!(released = n, "expired concurrency leases released"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "lease expiry tick failed"),
            },
            _ = events.tick() => if let Some(days) = services.settings.event_retention_days {
                let before = services.now() - chrono::Duration::days(days);
                match services.purge_events(before).await {
                    Ok(n) if n > 0 => tracing::info!(deleted = n, "old events deleted"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "event purge tick failed"),
                }
            },
        }
    }
}
