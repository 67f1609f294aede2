//! The late-run marker (Prefect §5.3): SCHEDULED runs named "Scheduled" whose time passed more
//! than `late_after_seconds` ago are proposed `Late`. The proposal goes through orchestration
//! under `MarkLateRunsPolicy`, which accepts it only for a run still SCHEDULED and not already
//! Late (so a worker claiming the run at the same moment always wins cleanly) and cancels it
//! instead when its deployment's CANCEL_NEW concurrency limit is full.

use chrono::Duration;
use sluice_core::domain::{State, StateType};
use sluice_store::{FlowRunFilter, FlowRunSort};

use crate::Services;
use crate::error::Result;

/// Marks one batch; returns how many runs became Late.
pub async fn tick(services: &Services) -> Result<usize> {
    let now = services.now();
    let filter = FlowRunFilter {
        state_types: Some(vec![StateType::Scheduled]),
        state_names: Some(vec!["Scheduled".to_owned()]),
        next_scheduled_start_time_before: Some(
            now - Duration::seconds(services.settings.late_after_seconds),
        ),
        ..Default::default()
    };
    let runs = services
        .store
        .list_flow_runs(
            &filter,
            FlowRunSort::NextScheduledStartTimeAsc,
            Some(services.settings.late_batch_size),
            0,
        )
        .await?;
    let mut marked = 0;
    for run in runs {
        let mut late = State::new(StateType::Scheduled, now).named("Late");
        late.set_scheduled_time(run.next_scheduled_start_time);
        let result = services.mark_flow_run_late(run.id, late).await;
        match result {
            Ok(r) if r.committed => marked += 1,
            Ok(_) => {}
            // The run vanished or kept changing: the next pass looks again.
            Err(e) => tracing::debug!(flow_run_id = %run.id, error = %e, "late marking skipped"),
        }
    }
    Ok(marked)
}
