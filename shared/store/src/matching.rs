//! The filters and sorts evaluated in memory, for adapters whose backend cannot express them
//! (DynamoDB reads a narrow index and finishes the query here). Each rule is the one the SQLite
//! adapter's SQL states; the conformance suite holds both to the same answers.

use std::cmp::Ordering;

use sluice_core::domain::{
    Artifact, Deployment, Event, Flow, FlowRun, LogEntry, StateType, TaskRun, Timestamp, WorkPool,
    Worker,
};

use crate::{
    ArtifactFilter, DeploymentFilter, DeploymentSort, EventFilter, FlowFilter, FlowRunFilter,
    FlowRunSort, LogFilter, TaskRunFilter, TaskRunSort, WorkPoolFilter, WorkerFilter,
};

/// `value` is one of `wanted` (an empty list matches nothing); a missing value matches nothing.
fn any_of<T: PartialEq>(wanted: Option<&Vec<T>>, value: Option<&T>) -> bool {
    match wanted {
        None => true,
        Some(w) => value.is_some_and(|v| w.contains(v)),
    }
}

/// `value` is none of `unwanted`; a missing value is "none of them".
fn none_of<T: PartialEq>(unwanted: Option<&Vec<T>>, value: Option<&T>) -> bool {
    match (unwanted, value) {
        (Some(u), Some(v)) => !u.contains(v),
        _ => true,
    }
}

/// Case-insensitive (ASCII) substring, as SQLite's LIKE and Prefect's ILIKE.
fn like(needle: Option<&String>, value: &str) -> bool {
    needle.is_none_or(|n| value.to_ascii_lowercase().contains(&n.to_ascii_lowercase()))
}

fn all_tags(wanted: Option<&Vec<String>>, tags: &[String]) -> bool {
    wanted.is_none_or(|w| w.iter().all(|t| tags.contains(t)))
}

fn any_tag(wanted: Option<&Vec<String>>, tags: &[String]) -> bool {
    wanted.is_none_or(|w| w.iter().any(|t| tags.contains(t)))
}

/// Inclusive bounds; a missing value is outside any bound.
fn within(before: Option<Timestamp>, after: Option<Timestamp>, value: Option<Timestamp>) -> bool {
    let below = before.is_none_or(|b| value.is_some_and(|v| v <= b));
    let above = after.is_none_or(|a| value.is_some_and(|v| v >= a));
    below && above
}

fn is_null_matches<T>(want_null: Option<bool>, value: Option<&T>) -> bool {
    want_null.is_none_or(|n| n == value.is_none())
}

impl FlowRunFilter {
    pub fn matches(&self, run: &FlowRun) -> bool {
        let state_type: Option<StateType> = run.state_type();
        let state_name = run.state_name().map(str::to_owned);
        let retry_type = run
            .empirical_policy
            .get("retry_type")
            .and_then(|v| v.as_str());
        any_of(self.ids.as_ref(), Some(&run.id))
            && none_of(self.not_ids.as_ref(), Some(&run.id))
            && any_of(self.names.as_ref(), Some(&run.name))
            && like(self.name_like.as_ref(), &run.name)
            && any_of(self.flow_ids.as_ref(), Some(&run.flow_id))
            && any_of(self.deployment_ids.as_ref(), run.deployment_id.as_ref())
            && is_null_matches(self.deployment_id_is_null, run.deployment_id.as_ref())
            && any_of(self.work_queue_ids.as_ref(), run.work_queue_id.as_ref())
            && any_of(self.work_queue_names.as_ref(), run.work_queue_name.as_ref())
            && any_of(self.work_pool_ids.as_ref(), run.work_pool_id.as_ref())
            && any_of(self.work_pool_names.as_ref(), run.work_pool_name.as_ref())
            && any_of(self.state_types.as_ref(), state_type.as_ref())
            && none_of(self.not_state_types.as_ref(), state_type.as_ref())
            && any_of(self.state_names.as_ref(), state_name.as_ref())
            && none_of(self.not_state_names.as_ref(), state_name.as_ref())
            && all_tags(self.tags_all.as_ref(), &run.tags)
            && any_tag(self.tags_any.as_ref(), &run.tags)
            && self.auto_scheduled.is_none_or(|a| a == run.auto_scheduled)
            && self.run_count.is_none_or(|c| c == run.run_count)
            && any_of(self.idempotency_keys.as_ref(), run.idempotency_key.as_ref())
            && any_of(
                self.parent_task_run_ids.as_ref(),
                run.parent_task_run_id.as_ref(),
            )
            && any_of(
                self.created_by_ids.as_ref(),
                run.created_by.as_ref().and_then(|c| c.id.as_ref()),
            )
            && within(
                self.expected_start_time_before,
                self.expected_start_time_after,
                run.expected_start_time,
            )
            && within(
                self.next_scheduled_start_time_before,
                self.next_scheduled_start_time_after,
                run.next_scheduled_start_time,
            )
            && within(
                self.start_time_before,
                self.start_time_after,
                run.start_time,
            )
            && is_null_matches(self.start_time_is_null, run.start_time.as_ref())
            && !(self.exclude_in_process_retries && retry_type == Some("in_process"))
    }
}

/// Missing keys last in either direction.
fn nulls_last<T: Ord>(a: Option<T>, b: Option<T>, descending: bool) -> Ordering {
    match (a, b) {
        (Some(a), Some(b)) if descending => b.cmp(&a),
        (Some(a), Some(b)) => a.cmp(&b),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

impl FlowRunSort {
    /// The order of the sort: missing keys last, ties broken by id in the sort's direction.
    pub fn compare(self, a: &FlowRun, b: &FlowRun) -> Ordering {
        let started = |r: &FlowRun| r.start_time.or(r.expected_start_time);
        let (key, descending) = match self {
            FlowRunSort::IdDesc => (Ordering::Equal, true),
            FlowRunSort::ExpectedStartTimeAsc => (
                nulls_last(a.expected_start_time, b.expected_start_time, false),
                false,
            ),
            FlowRunSort::ExpectedStartTimeDesc => (
                nulls_last(a.expected_start_time, b.expected_start_time, true),
                true,
            ),
            FlowRunSort::NextScheduledStartTimeAsc => (
                nulls_last(
                    a.next_scheduled_start_time,
                    b.next_scheduled_start_time,
                    false,
                ),
                false,
            ),
            FlowRunSort::StartTimeAsc => (nulls_last(started(a), started(b), false), false),
            FlowRunSort::StartTimeDesc => (nulls_last(started(a), started(b), true), true),
            FlowRunSort::EndTimeDesc => (nulls_last(a.end_time, b.end_time, true), true),
            FlowRunSort::NameAsc => (a.name.cmp(&b.name), false),
            FlowRunSort::NameDesc => (b.name.cmp(&a.name), true),
        };
        key.then_with(|| {
            if descending {
                b.id.cmp(&a.id)
            } else {
                a.id.cmp(&b.id)
            }
        })
    }
}

impl DeploymentFilter {
    pub fn matches(&self, d: &Deployment) -> bool {
        any_of(self.ids.as_ref(), Some(&d.id))
            && any_of(self.names.as_ref(), Some(&d.name))
            && like(self.name_like.as_ref(), &d.name)
            && any_of(self.flow_ids.as_ref(), Some(&d.flow_id))
            && self.paused.is_none_or(|p| p == d.paused)
            && self.status.is_none_or(|s| s == d.status)
            && all_tags(self.tags_all.as_ref(), &d.tags)
            && any_of(self.work_queue_ids.as_ref(), d.work_queue_id.as_ref())
            && any_of(self.work_pool_names.as_ref(), d.work_pool_name.as_ref())
            && self
                .has_active_schedule
                .is_none_or(|h| h == d.schedules.iter().any(|s| s.active))
            && self.updated_after.is_none_or(|t| d.updated >= t)
            && self.id_after.is_none_or(|after| d.id > after)
    }

    /// By name then id, or by id alone when paging by `id_after`.
    pub fn compare(&self, a: &Deployment, b: &Deployment) -> Ordering {
        if self.id_after.is_some() {
            return a.id.cmp(&b.id);
        }
        match self.sort {
            DeploymentSort::NameAsc => a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)),
            DeploymentSort::NameDesc => b.name.cmp(&a.name).then_with(|| b.id.cmp(&a.id)),
            DeploymentSort::CreatedDesc => b.created.cmp(&a.created).then_with(|| b.id.cmp(&a.id)),
            DeploymentSort::UpdatedDesc => b.updated.cmp(&a.updated).then_with(|| b.id.cmp(&a.id)),
        }
    }
}

impl FlowFilter {
    pub fn matches(&self, f: &Flow) -> bool {
        any_of(self.ids.as_ref(), Some(&f.id))
            && any_of(self.names.as_ref(), Some(&f.name))
            && like(self.name_like.as_ref(), &f.name)
            && all_tags(self.tags_all.as_ref(), &f.tags)
    }
}

impl WorkPoolFilter {
    pub fn matches(&self, p: &WorkPool) -> bool {
        any_of(self.ids.as_ref(), Some(&p.id))
            && any_of(self.names.as_ref(), Some(&p.name))
            && any_of(self.types.as_ref(), Some(&p.pool_type))
    }
}

impl WorkerFilter {
    pub fn matches(&self, w: &Worker) -> bool {
        any_of(self.statuses.as_ref(), Some(&w.status))
            && none_of(self.not_statuses.as_ref(), Some(&w.status))
            && within(
                self.last_heartbeat_before,
                self.last_heartbeat_after,
                Some(w.last_heartbeat_time),
            )
    }

    /// Newest heartbeat first, then name, then id.
    pub fn compare(a: &Worker, b: &Worker) -> Ordering {
        b.last_heartbeat_time
            .cmp(&a.last_heartbeat_time)
            .then_with(|| a.name.cmp(&b.name))
            .then_with(|| a.id.cmp(&b.id))
    }
}

impl ArtifactFilter {
    pub fn matches(&self, a: &Artifact) -> bool {
        let like = self.key_like.as_ref().is_none_or(|l| {
            a.key
                .as_ref()
                .is_some_and(|k| k.to_lowercase().contains(&l.to_lowercase()))
        });
        any_of(self.ids.as_ref(), Some(&a.id))
            && any_of(self.keys.as_ref(), a.key.as_ref())
            && like
            && self.key_exists.is_none_or(|e| a.key.is_some() == e)
            && any_of(self.flow_run_ids.as_ref(), a.flow_run_id.as_ref())
            && any_of(self.task_run_ids.as_ref(), a.task_run_id.as_ref())
            && any_of(self.types.as_ref(), a.kind.as_ref())
            && self
                .not_types
                .as_ref()
                .is_none_or(|n| a.kind.as_ref().is_none_or(|k| !n.contains(k)))
    }
}

impl LogFilter {
    pub fn matches(&self, l: &LogEntry) -> bool {
        any_of(self.flow_run_ids.as_ref(), l.flow_run_id.as_ref())
            && any_of(self.task_run_ids.as_ref(), l.task_run_id.as_ref())
            && self.level_ge.is_none_or(|g| l.level >= g)
            && self.level_le.is_none_or(|g| l.level <= g)
            && within(
                self.timestamp_before,
                self.timestamp_after,
                Some(l.timestamp),
            )
    }
}

/// `offset` then `limit` over an already sorted list.
pub fn page<T>(items: Vec<T>, limit: Option<usize>, offset: usize) -> Vec<T> {
    items
        .into_iter()
        .skip(offset)
        .take(limit.unwrap_or(usize::MAX))
        .collect()
}

impl TaskRunFilter {
    pub fn matches(&self, t: &TaskRun) -> bool {
        let state_type = t.state.as_ref().map(|s| s.state_type);
        let state_name = t.state.as_ref().map(|s| s.name.clone());
        let like = self
            .name_like
            .as_ref()
            .is_none_or(|l| t.name.to_lowercase().contains(&l.to_lowercase()));
        let before = |bound: Option<Timestamp>, v: Option<Timestamp>| {
            bound.is_none_or(|b| v.is_some_and(|v| v <= b))
        };
        let after = |bound: Option<Timestamp>, v: Option<Timestamp>| {
            bound.is_none_or(|b| v.is_some_and(|v| v >= b))
        };
        any_of(self.ids.as_ref(), Some(&t.id))
            && none_of(self.not_ids.as_ref(), Some(&t.id))
            && any_of(self.names.as_ref(), Some(&t.name))
            && like
            && any_of(self.flow_run_ids.as_ref(), t.flow_run_id.as_ref())
            && self
                .flow_run_is_null
                .is_none_or(|n| t.flow_run_id.is_none() == n)
            && self
                .tags_all
                .as_ref()
                .is_none_or(|tags| tags.iter().all(|tag| t.tags.contains(tag)))
            && any_of(self.state_types.as_ref(), state_type.as_ref())
            && any_of(self.state_names.as_ref(), state_name.as_ref())
            && before(self.start_time_before, t.start_time)
            && after(self.start_time_after, t.start_time)
            && self
                .start_time_is_null
                .is_none_or(|n| t.start_time.is_none() == n)
            && before(self.expected_start_time_before, t.expected_start_time)
            && after(self.expected_start_time_after, t.expected_start_time)
    }
}

/// Orders task runs by `sort`, ties broken by id; runs missing the sort's time go last.
pub fn sort_task_runs(runs: &mut [TaskRun], sort: TaskRunSort) {
    fn time_asc(a: Option<Timestamp>, b: Option<Timestamp>) -> Ordering {
        match (a, b) {
            (Some(a), Some(b)) => a.cmp(&b),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        }
    }
    fn time_desc(a: Option<Timestamp>, b: Option<Timestamp>) -> Ordering {
        match (a, b) {
            (Some(a), Some(b)) => b.cmp(&a),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        }
    }
    runs.sort_by(|a, b| {
        let primary = match sort {
            TaskRunSort::IdDesc => Ordering::Equal,
            TaskRunSort::ExpectedStartTimeAsc => {
                time_asc(a.expected_start_time, b.expected_start_time)
            }
            TaskRunSort::ExpectedStartTimeDesc => {
                time_desc(a.expected_start_time, b.expected_start_time)
            }
            TaskRunSort::NameAsc => a.name.cmp(&b.name),
            TaskRunSort::NameDesc => b.name.cmp(&a.name),
            TaskRunSort::EndTimeDesc => time_desc(a.end_time, b.end_time),
        };
        primary.then_with(|| b.id.cmp(&a.id))
    });
}

impl EventFilter {
    pub fn matches(&self, e: &Event) -> bool {
        let resource_id = e.resource_id().to_owned();
        let related: Vec<&str> = e
            .related
            .iter()
            .filter_map(|r| r.get("prefect.resource.id").map(String::as_str))
            .collect();
        let starts = |prefixes: &Option<Vec<String>>, s: &str| {
            prefixes
                .as_ref()
                .is_none_or(|ps| ps.iter().any(|p| s.starts_with(p.as_str())))
        };
        self.occurred_since.is_none_or(|t| e.occurred >= t)
            && self.occurred_until.is_none_or(|t| e.occurred <= t)
            && any_of(self.ids.as_ref(), Some(&e.id))
            && any_of(self.names.as_ref(), Some(&e.event))
            && starts(&self.prefixes, &e.event)
            && none_of(self.exclude_names.as_ref(), Some(&e.event))
            && self
                .exclude_prefixes
                .as_ref()
                .is_none_or(|ps| !ps.iter().any(|p| e.event.starts_with(p.as_str())))
            && any_of(self.resource_ids.as_ref(), Some(&resource_id))
            && starts(&self.resource_id_prefixes, &resource_id)
            && self
                .related_ids
                .as_ref()
                .is_none_or(|ids| related.iter().any(|r| ids.iter().any(|i| i == r)))
            && self.any_resource_ids.as_ref().is_none_or(|ids| {
                ids.contains(&resource_id) || related.iter().any(|r| ids.iter().any(|i| i == r))
            })
            && self.any_resource_id_prefixes.as_ref().is_none_or(|ps| {
                std::iter::once(resource_id.as_str())
                    .chain(related.iter().copied())
                    .any(|id| ps.iter().any(|p| id.starts_with(p.as_str())))
            })
    }
}

/// Orders events by when they occurred (then id), oldest or newest first.
pub fn sort_events(events: &mut [Event], ascending: bool) {
    events.sort_by(|a, b| {
        let o = a.occurred.cmp(&b.occurred).then(a.id.cmp(&b.id));
        if ascending { o } else { o.reverse() }
    });
}
