//! Task runs from events: the rules of Prefect's task-run recorder, and the bookkeeping of a
//! state written through the API.
//!
//! Prefect 3's engine creates task runs on the client and reports each state as an event
//! `prefect.task-run.<State name>` whose id is the state's id, whose `occurred` is the state's
//! timestamp, and whose payload carries the task run (`task_run`) and the state
//! (`validated_state`). The recorder keeps, per task run, the state with the newest timestamp,
//! and every state once in its history, so events may arrive late, twice or out of order.

use serde_json::Value;

use crate::domain::{Event, Id, JsonMap, State, StateType, TaskRun, Timestamp};
use crate::time::parse_timestamp;

/// Events the recorder reads start with this.
pub const TASK_RUN_EVENT_PREFIX: &str = "prefect.task-run.";
const TASK_RUN_RESOURCE_PREFIX: &str = "prefect.task-run.";
const FLOW_RUN_RESOURCE_PREFIX: &str = "prefect.flow-run.";

/// Fields of the payload's `task_run` kept in typed fields; the rest go to `TaskRun::fields`.
const TYPED_FIELDS: [&str; 9] = [
    "name",
    "task_key",
    "dynamic_key",
    "tags",
    "run_count",
    "expected_start_time",
    "start_time",
    "end_time",
    "version",
];

/// Fields a server computes or owns: never taken from a client.
const SERVER_FIELDS: [&str; 11] = [
    "id",
    "created",
    "updated",
    "flow_run_id",
    "state",
    "state_id",
    "state_type",
    "state_name",
    "estimated_run_time",
    "estimated_start_time_delta",
    "version",
];

/// The task run (with its state) an event reports, when it is a client's task-run state event;
/// `None` for every other event. `Err` says what a task-run event lacks.
pub fn task_run_from_event(event: &Event) -> Option<Result<TaskRun, String>> {
    if !event.event.starts_with(TASK_RUN_EVENT_PREFIX)
        || event
            .resource
            .get("prefect.orchestration")
            .map(String::as_str)
            != Some("client")
    {
        return None;
    }
    Some(read_event(event))
}

fn read_event(event: &Event) -> Result<TaskRun, String> {
    let id = object_id(event.resource_id(), TASK_RUN_RESOURCE_PREFIX)
        .ok_or_else(|| format!("resource {:?} is not a task run", event.resource_id()))?;
    let flow_run_id = match event.related_in_role("flow-run") {
        Some(r) => Some(
            object_id(
                r.get("prefect.resource.id").map_or("", String::as_str),
                FLOW_RUN_RESOURCE_PREFIX,
            )
            .ok_or("the related flow-run resource has no flow run id")?,
        ),
        None => None,
    };
    let validated = event
        .payload
        .get("validated_state")
        .and_then(Value::as_object)
        .ok_or("payload.validated_state is missing")?;
    let state_type = validated
        .get("type")
        .and_then(Value::as_str)
        .and_then(StateType::parse)
        .ok_or("payload.validated_state.type is not a state type")?;
    let mut state_details = validated
        .get("state_details")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    state_details.insert("task_run_id".to_owned(), Value::String(id.to_string()));
    if let Some(f) = flow_run_id {
        state_details.insert("flow_run_id".to_owned(), Value::String(f.to_string()));
    }
    let state = State {
        id: event.id,
        state_type,
        name: validated
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or(state_type.default_name())
            .to_owned(),
        timestamp: event.occurred,
        message: validated
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_owned),
        data: validated.get("data").cloned().unwrap_or(Value::Null),
        state_details,
    };
    let payload = event
        .payload
        .get("task_run")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut run = task_run_from_fields(id, flow_run_id, &payload, event.received)?;
    run.state = Some(state);
    Ok(run)
}

/// A task run from a client's fields (an event's `task_run`, or a create body), with no state.
pub fn task_run_from_fields(
    id: Id,
    flow_run_id: Option<Id>,
    payload: &JsonMap,
    now: Timestamp,
) -> Result<TaskRun, String> {
    let text = |k: &str| payload.get(k).and_then(Value::as_str).map(str::to_owned);
    let time = |k: &str| match payload.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => parse_timestamp(s)
            .map(Some)
            .ok_or_else(|| format!("task_run.{k}: {s:?} is not a timestamp")),
        Some(other) => Err(format!("task_run.{k}: {other} is not a timestamp")),
    };
    let tags = match payload.get("tags") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|t| t.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or("task_run.tags must be strings")?,
        Some(_) => return Err("task_run.tags must be a list".to_owned()),
    };
    let task_key = text("task_key").ok_or("task_run.task_key is missing")?;
    let fields = payload
        .iter()
        .filter(|(k, _)| {
            !TYPED_FIELDS.contains(&k.as_str()) && !SERVER_FIELDS.contains(&k.as_str())
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok(TaskRun {
        id,
        created: now,
        updated: now,
        name: text("name").unwrap_or_else(|| task_key.clone()),
        flow_run_id,
        task_key,
        dynamic_key: text("dynamic_key").unwrap_or_default(),
        tags,
        state: None,
        run_count: payload
            .get("run_count")
            .and_then(Value::as_i64)
            .unwrap_or(0),
        expected_start_time: time("expected_start_time")?,
        start_time: time("start_time")?,
        end_time: time("end_time")?,
        fields,
        version: 0,
    })
}

/// `prefect.task-run.<uuid>` → the uuid.
fn object_id(resource_id: &str, prefix: &str) -> Option<Id> {
    resource_id
        .strip_prefix(prefix)
        .and_then(|s| Id::parse_str(s).ok())
}

/// What the recorder stores for an incoming task run given the stored one: the incoming run
/// when it is new or its state is newer than the stored state (keeping the stored `created`),
/// `None` when the stored run is as new or newer (its history still gets the state).
pub fn recorded(stored: Option<&TaskRun>, incoming: &TaskRun) -> Option<TaskRun> {
    let Some(stored) = stored else {
        return Some(incoming.clone());
    };
    match (stored.state_timestamp(), incoming.state_timestamp()) {
        (Some(old), Some(new)) if new <= old => None,
        (_, None) => None,
        _ => Some(TaskRun {
            created: stored.created,
            version: stored.version,
            ..incoming.clone()
        }),
    }
}

/// A state written through the API (a create's first state, `set_state`, a subflow's state
/// copied to its parent task run): stamped `now`, and the run's times and counts kept as
/// Prefect's bookkeeping keeps them.
pub fn with_state(run: &TaskRun, mut state: State, now: Timestamp) -> TaskRun {
    state.timestamp = now;
    if state.name.is_empty() {
        state.state_type.default_name().clone_into(&mut state.name);
    }
    state
        .state_details
        .insert("task_run_id".to_owned(), Value::String(run.id.to_string()));
    if let Some(f) = run.flow_run_id {
        state
            .state_details
            .entry("flow_run_id".to_owned())
            .or_insert_with(|| Value::String(f.to_string()));
    }
    let mut next = run.clone();
    let was_running = run
        .state
        .as_ref()
        .is_some_and(|s| s.state_type == StateType::Running);
    if let Some(current) = &run.state
        && was_running
    {
        let ran = (now - current.timestamp).num_microseconds().unwrap_or(0) as f64 / 1e6;
        let total = next
            .fields
            .get("total_run_time")
            .and_then(Value::as_f64)
            .unwrap_or(0.0);
        next.fields.insert(
            "total_run_time".to_owned(),
            Value::from(total + ran.max(0.0)),
        );
    }
    match state.state_type {
        StateType::Running => {
            next.run_count += 1;
            if next.start_time.is_none() {
                next.start_time = Some(now);
            }
        }
        t if t.is_terminal() && next.end_time.is_none() && next.start_time.is_some() => {
            next.end_time = Some(now);
        }
        StateType::Scheduled if next.expected_start_time.is_none() => {
            next.expected_start_time = state.scheduled_time().or(Some(now));
        }
        _ => {}
    }
    if next.expected_start_time.is_none() {
        next.expected_start_time = Some(now);
    }
    next.state = Some(state);
    next.updated = now;
    next
}

/// Buckets of the UI's task-run dashboard (Prefect's `/ui/task_runs/dashboard/counts`): the
/// window from `start` (to the minute) to `end` cut into `buckets` equal spans; each counts the
/// runs in a final state that started in it, FAILED and CRASHED as failed, the rest as
/// completed. `(completed, failed)` per bucket, oldest first.
pub fn dashboard_counts(
    runs: &[TaskRun],
    start: Timestamp,
    end: Timestamp,
    buckets: usize,
) -> Vec<(usize, usize)> {
    let mut out = vec![(0, 0); buckets];
    let window = (end - start).num_microseconds().unwrap_or(0) as f64;
    if window <= 0.0 || buckets == 0 {
        return out;
    }
    let span = window / buckets as f64;
    for run in runs {
        let (Some(state), Some(started)) = (&run.state, run.start_time) else {
            continue;
        };
        if !state.state_type.is_terminal() || started < start {
            continue;
        }
        let offset = (started - start).num_microseconds().unwrap_or(0) as f64;
        let Some(slot) = out.get_mut((offset / span) as usize) else {
            continue;
        };
        if matches!(state.state_type, StateType::Failed | StateType::Crashed) {
            slot.1 += 1;
        } else {
            slot.0 += 1;
        }
    }
    out
}

/// Seconds a run has spent RUNNING, counting the current visit up to `now`.
pub fn estimated_run_time(run: &TaskRun, now: Timestamp) -> f64 {
    let total = run
        .fields
        .get("total_run_time")
        .and_then(Value::as_f64)
        .unwrap_or(0.0);
    match &run.state {
        Some(s) if s.state_type == StateType::Running => {
            total + ((now - s.timestamp).num_microseconds().unwrap_or(0) as f64 / 1e6).max(0.0)
        }
        _ => total,
    }
}

/// How late the run started (or, not started and not final, how late it is by `now`).
pub fn estimated_start_time_delta(run: &TaskRun, now: Timestamp) -> f64 {
    let seconds =
        |from: Timestamp, to: Timestamp| (to - from).num_microseconds().unwrap_or(0) as f64 / 1e6;
    let finished = run
        .state
        .as_ref()
        .is_some_and(|s| s.state_type.is_terminal());
    match (run.start_time, run.expected_start_time) {
        (Some(start), Some(expected)) if start > expected => seconds(expected, start),
        (None, Some(expected)) if expected < now && !finished => seconds(expected, now),
        _ => 0.0,
    }
}

/// The runs of one state in one interval of a history.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryState {
    pub state_type: StateType,
    pub state_name: String,
    pub count_runs: usize,
    pub sum_estimated_run_time: f64,
    pub sum_estimated_lateness: f64,
}

/// One interval of a history.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryInterval {
    pub start: Timestamp,
    pub end: Timestamp,
    pub states: Vec<HistoryState>,
}

/// Prefect's most intervals in one history.
const MAX_HISTORY_INTERVALS: i64 = 500;

/// Prefect's run history (`/task_runs/history`): `[start, end)` cut into `interval_seconds`
/// spans (at most 500), each with its runs, by when they were expected to start, counted per
/// state with their run time and lateness summed.
pub fn run_history(
    runs: &[TaskRun],
    start: Timestamp,
    end: Timestamp,
    interval_seconds: f64,
    now: Timestamp,
) -> Result<Vec<HistoryInterval>, String> {
    if interval_seconds < 1.0 {
        return Err("History interval must not be less than 1 second.".to_owned());
    }
    let span_us = (interval_seconds * 1e6) as i64;
    let elapsed = (end - start).num_microseconds().unwrap_or(0);
    if elapsed <= 0 {
        return Ok(Vec::new());
    }
    let count = ((elapsed + span_us - 1) / span_us).min(MAX_HISTORY_INTERVALS);
    let span = chrono::Duration::microseconds(span_us);
    let mut out: Vec<HistoryInterval> = (0..count)
        .map(|i| {
            let at = start + span * i32::try_from(i).unwrap_or(0);
            HistoryInterval {
                start: at,
                end: at + span,
                states: Vec::new(),
            }
        })
        .collect();
    for run in runs {
        let (Some(expected), Some(state)) = (run.expected_start_time, &run.state) else {
            continue;
        };
        let offset = (expected - start).num_microseconds().unwrap_or(-1);
        if offset < 0 {
            continue;
        }
        let Some(interval) = usize::try_from(offset / span_us)
            .ok()
            .and_then(|i| out.get_mut(i))
        else {
            continue;
        };
        let slot = match interval
            .states
            .iter()
            .position(|h| h.state_type == state.state_type && h.state_name == state.name)
        {
            Some(i) => &mut interval.states[i],
            None => {
                interval.states.push(HistoryState {
                    state_type: state.state_type,
                    state_name: state.name.clone(),
                    count_runs: 0,
                    sum_estimated_run_time: 0.0,
                    sum_estimated_lateness: 0.0,
                });
                interval.states.last_mut().expect("just pushed")
            }
        };
        slot.count_runs += 1;
        slot.sum_estimated_run_time += estimated_run_time(run, now).max(0.0);
        slot.sum_estimated_lateness += estimated_start_time_delta(run, now).max(0.0);
    }
    for interval in &mut out {
        interval.states.sort_by(|a, b| {
            a.state_type
                .as_str()
                .cmp(b.state_type.as_str())
                .then_with(|| a.state_name.cmp(&b.state_name))
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use serde_json::json;

    fn at(seconds: i64) -> Timestamp {
        Utc.timestamp_opt(1_700_000_000 + seconds, 0)
            .single()
            .expect("time")
    }

    fn event(task_run: Id, flow_run: Id, name: &str, state_type: &str, second: i64) -> Event {
        let resource = [
            (
                "prefect.resource.id",
                format!("prefect.task-run.{task_run}"),
            ),
            ("prefect.resource.name", "add-0".to_owned()),
            ("prefect.orchestration", "client".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let related = vec![
            [
                (
                    "prefect.resource.id",
                    format!("prefect.flow-run.{flow_run}"),
                ),
                ("prefect.resource.role", "flow-run".to_owned()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
        ];
        let payload = json!({
            "validated_state": {"type": state_type, "name": name, "message": "", "state_details": {"retriable": false}, "data": null},
            "task_run": {"name": "add-0", "task_key": "add-abc", "dynamic_key": "0", "tags": ["db"],
                          "run_count": 1, "empirical_policy": {"retries": 2}, "cache_key": null,
                          "start_time": "2023-11-14T22:13:21Z"},
        });
        Event {
            id: Id::new_v4(),
            occurred: at(second),
            event: format!("prefect.task-run.{name}"),
            resource,
            related,
            payload: payload.as_object().cloned().expect("object"),
            follows: None,
            received: at(100),
        }
    }

    #[test]
    fn a_client_state_event_becomes_its_task_run_with_that_state() {
        let (t, f) = (Id::new_v4(), Id::new_v4());
        let e = event(t, f, "Running", "RUNNING", 1);
        let run = task_run_from_event(&e)
            .expect("a task-run event")
            .expect("valid");
        assert_eq!((run.id, run.flow_run_id), (t, Some(f)));
        assert_eq!(run.task_key, "add-abc");
        assert_eq!(run.dynamic_key, "0");
        assert_eq!(run.tags, ["db"]);
        assert_eq!(run.fields["empirical_policy"], json!({"retries": 2}));
        assert!(!run.fields.contains_key("name"));
        assert_eq!(run.start_time, Some(at(1)));
        let state = run.state.expect("state");
        assert_eq!(state.id, e.id, "the state's id is the event's");
        assert_eq!(state.timestamp, at(1));
        assert_eq!(state.state_type, StateType::Running);
        assert_eq!(state.state_details["task_run_id"], json!(t.to_string()));
        assert_eq!(state.state_details["retriable"], json!(false));
    }

    #[test]
    fn other_events_and_server_side_ones_are_not_recorded() {
        let mut e = event(Id::new_v4(), Id::new_v4(), "Running", "RUNNING", 1);
        e.resource
            .insert("prefect.orchestration".to_owned(), "server".to_owned());
        assert!(task_run_from_event(&e).is_none());
        let mut e = event(Id::new_v4(), Id::new_v4(), "Running", "RUNNING", 1);
        e.event = "prefect.flow-run.Running".to_owned();
        assert!(task_run_from_event(&e).is_none());
        let mut e = event(Id::new_v4(), Id::new_v4(), "Running", "RUNNING", 1);
        e.payload.remove("validated_state");
        let err = task_run_from_event(&e)
            .expect("a task-run event")
            .expect_err("no state");
        assert!(err.contains("validated_state"), "{err}");
    }

    #[test]
    fn the_newest_state_wins_whatever_order_events_come_in() {
        let (t, f) = (Id::new_v4(), Id::new_v4());
        let running = task_run_from_event(&event(t, f, "Running", "RUNNING", 2))
            .expect("event")
            .expect("valid");
        let mut done = task_run_from_event(&event(t, f, "Completed", "COMPLETED", 3))
            .expect("event")
            .expect("valid");
        done.created = at(50);
        let first = recorded(None, &done).expect("new");
        assert!(
            recorded(Some(&first), &running).is_none(),
            "older: history only"
        );
        let mut stored = running.clone();
        stored.version = 4;
        let next = recorded(Some(&stored), &done).expect("newer");
        assert_eq!(
            next.state.as_ref().map(|s| s.state_type),
            Some(StateType::Completed)
        );
        assert_eq!((next.created, next.version), (stored.created, 4));
        assert!(
            recorded(Some(&next), &done).is_none(),
            "the same state again"
        );
    }

    #[test]
    fn the_history_counts_runs_per_interval_by_expected_start_and_state() {
        let run = |expected: i64, t: StateType, ran: f64| {
            let mut r = task_run_from_fields(
                Id::new_v4(),
                None,
                json!({"task_key": "k", "total_run_time": ran})
                    .as_object()
                    .expect("object"),
                at(0),
            )
            .expect("valid");
            r.expected_start_time = Some(at(expected));
            r.start_time = Some(at(expected + 2));
            r.state = Some(State::new(t, at(expected + 5)));
            r
        };
        let runs = [
            run(0, StateType::Completed, 1.5),
            run(5, StateType::Completed, 2.0),
            run(15, StateType::Failed, 1.0),
            run(30, StateType::Completed, 1.0),
        ];
        let h = run_history(&runs, at(0), at(25), 10.0, at(100)).expect("valid");
        assert_eq!(h.len(), 3, "ceil(25 / 10)");
        assert_eq!((h[0].start, h[0].end), (at(0), at(10)));
        assert_eq!(h[0].states.len(), 1);
        assert_eq!(h[0].states[0].count_runs, 2);
        assert!((h[0].states[0].sum_estimated_run_time - 3.5).abs() < 1e-9);
        assert!((h[0].states[0].sum_estimated_lateness - 4.0).abs() < 1e-9);
        assert_eq!(h[1].states[0].state_type, StateType::Failed);
        assert!(h[2].states.is_empty(), "the run at 30 s is past the end");
        assert!(run_history(&runs, at(0), at(25), 0.5, at(100)).is_err());
        assert!(
            run_history(&runs, at(25), at(0), 10.0, at(100))
                .expect("empty")
                .is_empty()
        );
    }

    #[test]
    fn the_dashboard_counts_final_runs_by_when_they_started() {
        let finished = |second: i64, t: StateType| {
            let mut run = task_run_from_fields(
                Id::new_v4(),
                None,
                json!({"task_key": "k"}).as_object().expect("object"),
                at(0),
            )
            .expect("valid");
            run.start_time = Some(at(second));
            run.state = Some(State::new(t, at(second + 1)));
            run
        };
        let runs = [
            finished(0, StateType::Completed),
            finished(5, StateType::Failed),
            finished(15, StateType::Crashed),
            finished(19, StateType::Cancelled),
            finished(12, StateType::Running),
            finished(25, StateType::Completed),
        ];
        let counts = dashboard_counts(&runs, at(0), at(20), 2);
        assert_eq!(counts, [(1, 1), (1, 1)]);
    }

    #[test]
    fn states_written_through_the_api_keep_times_and_counts() {
        let run = task_run_from_fields(
            Id::new_v4(),
            None,
            json!({"task_key": "k"}).as_object().expect("object"),
            at(0),
        )
        .expect("valid");
        assert_eq!(run.name, "k");
        let pending = with_state(&run, State::new(StateType::Pending, at(0)), at(1));
        assert_eq!(pending.expected_start_time, Some(at(1)));
        let running = with_state(&pending, State::new(StateType::Running, at(0)), at(2));
        assert_eq!((running.run_count, running.start_time), (1, Some(at(2))));
        let done = with_state(&running, State::new(StateType::Completed, at(0)), at(5));
        assert_eq!(done.end_time, Some(at(5)));
        assert_eq!(done.fields["total_run_time"], json!(3.0));
        assert_eq!(
            done.state.expect("state").state_details["task_run_id"],
            json!(run.id.to_string())
        );
    }
}
