//! Translation of [`FlowRunFilter`] and [`FlowRunSort`] into SQL over the `flow_run` table.

use sluice_core::domain::StateType;

use super::codec::Where;
use crate::{FlowRunFilter, FlowRunSort};

fn state_names(types: Option<&Vec<StateType>>) -> Option<Vec<&'static str>> {
    types.map(|t| t.iter().map(|t| t.as_str()).collect())
}

/// Every field of the filter, ANDed.
pub(super) fn run_where(f: &FlowRunFilter) -> Where {
    let mut w = Where::default();
    w.any_of("id", f.ids.as_deref());
    w.none_of("id", f.not_ids.as_deref());
    w.any_of("name", f.names.as_deref());
    w.like("name", f.name_like.as_deref());
    w.any_of("flow_id", f.flow_ids.as_deref());
    w.any_of("deployment_id", f.deployment_ids.as_deref());
    w.is_null("deployment_id", f.deployment_id_is_null);
    w.any_of("work_queue_id", f.work_queue_ids.as_deref());
    w.any_of("work_queue_name", f.work_queue_names.as_deref());
    w.any_of("work_pool_id", f.work_pool_ids.as_deref());
    w.any_of("work_pool_name", f.work_pool_names.as_deref());
    w.any_of("state_type", state_names(f.state_types.as_ref()).as_deref());
    w.none_of(
        "state_type",
        state_names(f.not_state_types.as_ref()).as_deref(),
    );
    w.any_of("state_name", f.state_names.as_deref());
    w.none_of("state_name", f.not_state_names.as_deref());
    w.tags_all("flow_run.tags", f.tags_all.as_deref());
    w.tags_any("flow_run.tags", f.tags_any.as_deref());
    w.eq("auto_scheduled", f.auto_scheduled.map(Into::into));
    w.eq("run_count", f.run_count.map(Into::into));
    w.any_of("idempotency_key", f.idempotency_keys.as_deref());
    w.any_of("parent_task_run_id", f.parent_task_run_ids.as_deref());
    w.any_of("created_by_id", f.created_by_ids.as_deref());
    w.cmp_ts("expected_start_time", "<=", f.expected_start_time_before);
    w.cmp_ts("expected_start_time", ">=", f.expected_start_time_after);
    w.cmp_ts(
        "next_scheduled_start_time",
        "<=",
        f.next_scheduled_start_time_before,
    );
    w.cmp_ts(
        "next_scheduled_start_time",
        ">=",
        f.next_scheduled_start_time_after,
    );
    w.cmp_ts("start_time", "<=", f.start_time_before);
    w.cmp_ts("start_time", ">=", f.start_time_after);
    w.is_null("start_time", f.start_time_is_null);
    if f.exclude_in_process_retries {
        w.push(
            "coalesce(json_extract(empirical_policy, '$.retry_type'), '') <> 'in_process'",
            [],
        );
    }
    w
}

/// ORDER BY for a sort: NULLs last either way, ties broken by id in the sort's direction, so
/// paging is stable. START_TIME sorts fall back to the expected start, as Prefect's do.
pub(super) fn run_order(sort: FlowRunSort) -> &'static str {
    match sort {
        FlowRunSort::IdDesc => "id DESC",
        FlowRunSort::ExpectedStartTimeAsc => "expected_start_time ASC NULLS LAST, id ASC",
        FlowRunSort::ExpectedStartTimeDesc => "expected_start_time DESC NULLS LAST, id DESC",
        FlowRunSort::NextScheduledStartTimeAsc => {
            "next_scheduled_start_time ASC NULLS LAST, id ASC"
        }
        FlowRunSort::StartTimeAsc => {
            "coalesce(start_time, expected_start_time) ASC NULLS LAST, id ASC"
        }
        FlowRunSort::StartTimeDesc => {
            "coalesce(start_time, expected_start_time) DESC NULLS LAST, id DESC"
        }
        FlowRunSort::EndTimeDesc => "end_time DESC NULLS LAST, id DESC",
        FlowRunSort::NameAsc => "name ASC, id ASC",
        FlowRunSort::NameDesc => "name DESC, id DESC",
    }
}
