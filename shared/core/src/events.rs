//! The events Sluice's server emits itself, in the form Prefect's server gives them: a flow
//! run's state change (`prefect.flow-run.<State name>`), with the run's flow, deployment, work
//! queue, work pool, parent task run and tags as related resources; and the status changes of
//! work pools, work queues and deployments (`prefect.work-pool.ready`, `...not-ready`, ...).

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::domain::{
    Deployment, DeploymentStatus, Event, FlowRun, Id, JsonMap, PoolStatus, QueueStatus, Resource,
    State, Timestamp, WorkPool, WorkQueue,
};

fn kebab(status: &str) -> String {
    status.to_lowercase().replace('_', "-")
}

fn status_event(name: String, resource: Resource, related: Vec<Resource>, now: Timestamp) -> Event {
    Event {
        id: uuid::Uuid::now_v7(),
        occurred: now,
        event: name,
        resource,
        related,
        payload: JsonMap::new(),
        follows: None,
        received: now,
    }
}

fn named(id: &str, name: &str, role: Option<&str>) -> Resource {
    let mut r = resource(id, role);
    r.insert("prefect.resource.name".to_owned(), name.to_owned());
    r
}

fn pool_resource(pool: &WorkPool, role: Option<&str>) -> Resource {
    let mut r = named(&format!("prefect.work-pool.{}", pool.id), &pool.name, role);
    r.insert("prefect.work-pool.type".to_owned(), pool.pool_type.clone());
    r
}

/// `prefect.work-pool.<status>`: a pool became READY, NOT_READY or PAUSED.
pub fn work_pool_status(pool: &WorkPool, status: PoolStatus, now: Timestamp) -> Event {
    status_event(
        format!("prefect.work-pool.{}", kebab(status.as_str())),
        pool_resource(pool, None),
        Vec::new(),
        now,
    )
}

/// `prefect.work-queue.<status>`, related to the queue's pool.
pub fn work_queue_status(
    queue: &WorkQueue,
    pool: Option<&WorkPool>,
    status: QueueStatus,
    now: Timestamp,
) -> Event {
    status_event(
        format!("prefect.work-queue.{}", kebab(status.as_str())),
        named(
            &format!("prefect.work-queue.{}", queue.id),
            &queue.name,
            Some("work-queue"),
        ),
        pool.map(|p| pool_resource(p, Some("work-pool")))
            .into_iter()
            .collect(),
        now,
    )
}

/// `prefect.deployment.<status>`, related to its flow, work queue and work pool.
pub fn deployment_status(
    deployment: &Deployment,
    flow_name: Option<&str>,
    queue: Option<&WorkQueue>,
    pool: Option<&WorkPool>,
    status: DeploymentStatus,
    now: Timestamp,
) -> Event {
    let mut related = Vec::new();
    if let Some(name) = flow_name {
        related.push(named(
            &format!("prefect.flow.{}", deployment.flow_id),
            name,
            Some("flow"),
        ));
    }
    if let Some(q) = queue {
        related.push(named(
            &format!("prefect.work-queue.{}", q.id),
            &q.name,
            Some("work-queue"),
        ));
    }
    if let Some(p) = pool {
        related.push(pool_resource(p, Some("work-pool")));
    }
    status_event(
        format!("prefect.deployment.{}", kebab(status.as_str())),
        named(
            &format!("prefect.deployment.{}", deployment.id),
            &deployment.name,
            None,
        ),
        related,
        now,
    )
}

/// A related resource of one kind: its id, name and tags, and any extra labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Related {
    pub kind: &'static str,
    pub id: Id,
    pub name: String,
    pub tags: Vec<String>,
    pub labels: Vec<(String, String)>,
}

/// What a flow run's events name besides the run: in Prefect's order (flow, deployment, work
/// queue, work pool, parent task run), then every tag of the run and of those, sorted, then
/// who created the run when that was a deployment or an automation.
pub fn flow_run_related(run: &FlowRun, others: &[Related]) -> Vec<Resource> {
    let mut tags: BTreeSet<&str> = run.tags.iter().map(String::as_str).collect();
    let mut out = Vec::new();
    for r in others {
        tags.extend(r.tags.iter().map(String::as_str));
        let mut resource = resource(&format!("prefect.{}.{}", r.kind, r.id), Some(r.kind));
        resource.insert("prefect.resource.name".to_owned(), r.name.clone());
        for (k, v) in &r.labels {
            resource.insert(k.clone(), v.clone());
        }
        out.push(resource);
    }
    out.extend(
        tags.into_iter()
            .map(|t| resource(&format!("prefect.tag.{t}"), Some("tag"))),
    );
    if let Some(creator) = &run.created_by
        && let Some(id) = creator.id
    {
        let kind = match creator.created_by_type.as_deref() {
            Some("DEPLOYMENT") => Some("deployment"),
            Some("AUTOMATION") => Some("automation"),
            _ => None,
        };
        if let Some(kind) = kind {
            let mut r = resource(&format!("prefect.{kind}.{id}"), Some("creator"));
            if let Some(name) = &creator.display_value {
                r.insert("prefect.resource.name".to_owned(), name.clone());
            }
            out.push(r);
        }
    }
    out
}

fn resource(id: &str, role: Option<&str>) -> Resource {
    let mut r = Resource::new();
    r.insert("prefect.resource.id".to_owned(), id.to_owned());
    if let Some(role) = role {
        r.insert("prefect.resource.role".to_owned(), role.to_owned());
    }
    r
}

/// The essential parts of a state for an event's payload.
fn state_payload(state: Option<&State>) -> Value {
    let Some(s) = state else {
        return Value::Null;
    };
    let mut out = JsonMap::new();
    out.insert("type".to_owned(), json!(s.state_type.as_str()));
    if !s.name.is_empty() {
        out.insert("name".to_owned(), json!(s.name));
    }
    if let Some(m) = s.message.as_deref().filter(|m| !m.is_empty()) {
        out.insert("message".to_owned(), json!(m));
    }
    Value::Object(out)
}

/// Prefect links a state-change event to the one before it only when they are close in time.
const TIGHT_SECONDS: i64 = 300;

/// The event of `run` having moved from `initial` to its current state, at `now`. Its id is
/// the new state's id, as in Prefect, so emitting it twice stores it once.
pub fn flow_run_state_change(
    run: &FlowRun,
    initial: Option<&State>,
    related: Vec<Resource>,
    now: Timestamp,
) -> Option<Event> {
    let state = run.state.as_ref()?;
    let mut resource = resource(&format!("prefect.flow-run.{}", run.id), None);
    for (k, v) in [
        ("prefect.resource.name", run.name.clone()),
        ("prefect.run-count", run.run_count.to_string()),
        (
            "prefect.state-message",
            state.message.clone().unwrap_or_default(),
        ),
        ("prefect.state-name", state.name.clone()),
        (
            "prefect.state-timestamp",
            crate::time::format_timestamp(state.timestamp),
        ),
        ("prefect.state-type", state.state_type.as_str().to_owned()),
    ] {
        resource.insert(k.to_owned(), v);
    }
    let follows = initial
        .filter(|i| (now - i.timestamp).num_seconds().abs() < TIGHT_SECONDS)
        .map(|i| i.id);
    let payload = json!({
        "intended": {
            "from": initial.map(|i| i.state_type.as_str()),
            "to": state.state_type.as_str(),
        },
        "initial_state": state_payload(initial),
        "validated_state": state_payload(Some(state)),
    });
    Some(Event {
        id: state.id,
        occurred: state.timestamp,
        event: format!("prefect.flow-run.{}", state.name),
        resource,
        related,
        payload: payload.as_object().cloned().unwrap_or_default(),
        follows,
        received: now,
    })
}

/// Sluice's own event for a push run handed to its infrastructure: `sluice.push.submitted`,
/// about the flow run, related to the ECS task or Batch job (role `infrastructure`) and to what
/// the run belongs to. `lag_seconds` is how long after its scheduled time it was submitted.
pub struct PushSubmitted<'a> {
    pub run: &'a FlowRun,
    pub related: Vec<Resource>,
    /// `ecs` or `batch`.
    pub platform: &'a str,
    pub infrastructure_id: &'a str,
    /// The task or job of this attempt was already there (a resumed submission).
    pub found_existing: bool,
    pub lag_seconds: Option<f64>,
}

/// The labels a submitted push run carries, so its ECS task or Batch job, and how late it was
/// submitted, stay on the run itself (`prefect flow-run inspect`, the API) after the event
/// feed has moved on.
pub fn push_labels(platform: &str, infrastructure_id: &str, lag_seconds: Option<f64>) -> JsonMap {
    let mut labels = JsonMap::new();
    labels.insert("sluice.push.platform".into(), platform.into());
    labels.insert(
        "sluice.push.infrastructure-id".into(),
        infrastructure_id.into(),
    );
    if let Some(lag) = lag_seconds {
        // Milliseconds are what a person can use.
        let rounded = (lag * 1000.0).round() / 1000.0;
        labels.insert(
            "sluice.push.submission-lag-seconds".into(),
            serde_json::json!(rounded),
        );
    }
    labels
}

/// How long after its scheduled time a run was submitted, in seconds.
pub fn submission_lag(run: &FlowRun, now: Timestamp) -> Option<f64> {
    run.expected_start_time
        .map(|t| (now - t).num_milliseconds() as f64 / 1000.0)
}

pub fn push_submitted(p: PushSubmitted<'_>, now: Timestamp) -> Event {
    let kind = if p.platform == "ecs" {
        "ecs.task"
    } else {
        "batch.job"
    };
    let mut related = vec![named(
        &format!("aws.{kind}.{}", p.infrastructure_id),
        p.infrastructure_id,
        Some("infrastructure"),
    )];
    related.extend(p.related);
    let payload = json!({
        "platform": p.platform,
        "infrastructure_id": p.infrastructure_id,
        "found_existing": p.found_existing,
        "lag_seconds": p.lag_seconds,
    });
    Event {
        id: uuid::Uuid::now_v7(),
        occurred: now,
        event: "sluice.push.submitted".to_owned(),
        resource: named(&format!("prefect.flow-run.{}", p.run.id), &p.run.name, None),
        related,
        payload: payload.as_object().cloned().unwrap_or_default(),
        follows: None,
        received: now,
    }
}

/// What `/events/count-by/{countable}` groups events by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Countable {
    /// Days (a `time` count by one day).
    Day,
    /// Spans of `time_interval` `time_unit`s.
    Time,
    /// The event's name.
    Event,
    /// The event's resource.
    Resource,
}

impl Countable {
    pub fn parse(s: &str) -> Option<Countable> {
        Some(match s {
            "day" => Countable::Day,
            "time" => Countable::Time,
            "event" => Countable::Event,
            "resource" => Countable::Resource,
            _ => return None,
        })
    }
}

/// The unit of a time count's spans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeUnit {
    Week,
    Day,
    Hour,
    Minute,
    Second,
}

impl TimeUnit {
    pub fn parse(s: &str) -> Option<TimeUnit> {
        Some(match s {
            "week" => TimeUnit::Week,
            "day" => TimeUnit::Day,
            "hour" => TimeUnit::Hour,
            "minute" => TimeUnit::Minute,
            "second" => TimeUnit::Second,
            _ => return None,
        })
    }

    fn seconds(self) -> i64 {
        match self {
            TimeUnit::Week => 7 * 86_400,
            TimeUnit::Day => 86_400,
            TimeUnit::Hour => 3_600,
            TimeUnit::Minute => 60,
            TimeUnit::Second => 1,
        }
    }

    /// The last instant of the unit-long period `t` falls in (weeks start on Monday).
    fn end_of_period(self, t: Timestamp) -> Timestamp {
        let secs = t.timestamp();
        let start = match self {
            // 1970-01-01 was a Thursday: Mondays are 4 days later than multiples of a week.
            TimeUnit::Week => {
                (secs - 4 * 86_400).div_euclid(self.seconds()) * self.seconds() + 4 * 86_400
            }
            _ => secs.div_euclid(self.seconds()) * self.seconds(),
        };
        chrono::DateTime::from_timestamp(start + self.seconds(), 0).unwrap_or(t)
            - chrono::Duration::microseconds(1)
    }
}

/// One group of a count: Prefect's `EventCount`.
#[derive(Debug, Clone, PartialEq)]
pub struct EventCount {
    pub value: String,
    pub label: String,
    pub count: usize,
    pub start_time: Timestamp,
    pub end_time: Timestamp,
}

/// Time spans are counted from this instant (Prefect's pivot, a Monday), so the same span has
/// the same bounds in every count.
fn pivot() -> Timestamp {
    chrono::DateTime::from_timestamp(1_711_929_600, 0).unwrap_or_default()
}

/// Prefect's most spans in one time count.
const MAX_BUCKETS: i64 = 1000;

/// Counts `events` (already filtered) as `/events/count-by/{countable}` does. Names and
/// resources: one group per value, labelled by the newest event's (for resources, its name
/// or id), most counted first. Times: every span of `interval` `unit`s from the one holding
/// `since` to the one holding `until` (or the end of the current period, when `until` is
/// later than `now`), empty ones included, oldest first, valued by their position.
pub fn count_events(
    events: &[Event],
    countable: Countable,
    unit: TimeUnit,
    interval: f64,
    (since, until): (Timestamp, Timestamp),
    now: Timestamp,
) -> Result<Vec<EventCount>, String> {
    let (unit, interval) = match countable {
        Countable::Day => (TimeUnit::Day, 1.0),
        _ => (unit, interval),
    };
    match countable {
        Countable::Event | Countable::Resource => {
            let mut groups: Vec<EventCount> = Vec::new();
            let mut newest: Vec<Timestamp> = Vec::new();
            for e in events {
                let (value, label) = match countable {
                    Countable::Event => (e.event.clone(), e.event.clone()),
                    _ => {
                        let id = e.resource_id().to_owned();
                        let name = e
                            .resource
                            .get("prefect.resource.name")
                            .cloned()
                            .unwrap_or_else(|| id.clone());
                        (id, name)
                    }
                };
                match groups.iter().position(|g| g.value == value) {
                    Some(i) => {
                        let g = &mut groups[i];
                        g.count += 1;
                        g.start_time = g.start_time.min(e.occurred);
                        g.end_time = g.end_time.max(e.occurred);
                        if e.occurred >= newest[i] {
                            newest[i] = e.occurred;
                            g.label = label;
                        }
                    }
                    None => {
                        groups.push(EventCount {
                            value,
                            label,
                            count: 1,
                            start_time: e.occurred,
                            end_time: e.occurred,
                        });
                        newest.push(e.occurred);
                    }
                }
            }
            groups.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.label.cmp(&b.label)));
            Ok(groups)
        }
        Countable::Day | Countable::Time => {
            if interval < 0.01 {
                return Err("The minimum interval is 0.01".to_owned());
            }
            let span_us = (unit.seconds() as f64 * interval * 1e6) as i64;
            let span = chrono::Duration::microseconds(span_us);
            let buckets = ((until - since).num_microseconds().unwrap_or(i64::MAX) as f64
                / span_us as f64)
                .ceil() as i64;
            if buckets > MAX_BUCKETS {
                return Err(format!(
                    "The given interval would create {buckets} buckets, which is too many. Please increase the interval or reduce the time range to produce {MAX_BUCKETS} buckets or fewer."
                ));
            }
            let end = if until > now {
                unit.end_of_period(now)
            } else {
                until
            };
            let index_of = |t: Timestamp| {
                (t - pivot())
                    .num_microseconds()
                    .unwrap_or(0)
                    .div_euclid(span_us)
            };
            let first = index_of(since);
            let mut out = Vec::new();
            let mut start = pivot() + span * i32::try_from(first).unwrap_or(0);
            while start < end {
                let label = start.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false);
                out.push(EventCount {
                    value: out.len().to_string(),
                    label,
                    count: 0,
                    start_time: start,
                    end_time: start + span - chrono::Duration::microseconds(1),
                });
                start += span;
            }
            for e in events {
                let i = index_of(e.occurred) - first;
                if let Some(slot) = usize::try_from(i).ok().and_then(|i| out.get_mut(i)) {
                    slot.count += 1;
                }
            }
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{CreatedBy, StateType};
    use chrono::{TimeZone, Utc};

    fn at(seconds: i64) -> Timestamp {
        Utc.timestamp_opt(1_700_000_000 + seconds, 0)
            .single()
            .expect("time")
    }

    #[test]
    fn a_state_change_names_the_run_its_states_and_what_it_belongs_to() {
        let flow_id = Id::new_v4();
        let mut run = FlowRun::new(flow_id, at(0));
        run.name = "brave-otter".to_owned();
        run.tags = vec!["nightly".to_owned()];
        let deployment = Id::new_v4();
        run.created_by = Some(CreatedBy {
            id: Some(deployment),
            created_by_type: Some("DEPLOYMENT".to_owned()),
            display_value: Some("etl".to_owned()),
        });
        let pending = State::new(StateType::Pending, at(1));
        let mut running = State::new(StateType::Running, at(2));
        running.message = Some("go".to_owned());
        run.state = Some(running.clone());
        let related = flow_run_related(
            &run,
            &[
                Related {
                    kind: "flow",
                    id: flow_id,
                    name: "etl".to_owned(),
                    tags: vec!["data".to_owned()],
                    labels: vec![],
                },
                Related {
                    kind: "work-pool",
                    id: Id::new_v4(),
                    name: "ecs".to_owned(),
                    tags: vec![],
                    labels: vec![("prefect.work-pool.type".to_owned(), "ecs:push".to_owned())],
                },
            ],
        );
        let roles: Vec<&str> = related
            .iter()
            .map(|r| r["prefect.resource.role"].as_str())
            .collect();
        assert_eq!(roles, ["flow", "work-pool", "tag", "tag", "creator"]);
        assert_eq!(related[1]["prefect.work-pool.type"], "ecs:push");
        assert_eq!(related[2]["prefect.resource.id"], "prefect.tag.data");

        let event = flow_run_state_change(&run, Some(&pending), related, at(3)).expect("a state");
        assert_eq!(event.id, running.id, "the state's id");
        assert_eq!(event.event, "prefect.flow-run.Running");
        assert_eq!(event.occurred, at(2));
        assert_eq!(event.follows, Some(pending.id));
        assert_eq!(event.resource_id(), format!("prefect.flow-run.{}", run.id));
        assert_eq!(event.resource["prefect.state-type"], "RUNNING");
        assert_eq!(event.resource["prefect.state-message"], "go");
        assert_eq!(
            Value::Object(event.payload),
            json!({"intended": {"from": "PENDING", "to": "RUNNING"},
                   "initial_state": {"type": "PENDING", "name": "Pending"},
                   "validated_state": {"type": "RUNNING", "name": "Running", "message": "go"}})
        );
        let later = flow_run_state_change(&run, Some(&pending), vec![], at(1000)).expect("state");
        assert_eq!(later.follows, None, "too far apart to be linked");
    }

    #[test]
    fn counts_group_by_name_or_resource_and_by_spans_from_the_pivot() {
        let event = |name: &str, resource: &str, second: i64| {
            let mut r = resource_fixture(resource);
            r.insert(
                "prefect.resource.name".to_owned(),
                format!("{resource}-name"),
            );
            Event {
                id: Id::new_v4(),
                occurred: at(second),
                event: name.to_owned(),
                resource: r,
                related: vec![],
                payload: JsonMap::new(),
                follows: None,
                received: at(second),
            }
        };
        let events = [
            event("a.done", "x", 0),
            event("b.done", "y", 10),
            event("a.done", "y", 3_700),
        ];
        let range = (at(0), at(7_000));
        let by_name = count_events(
            &events,
            Countable::Event,
            TimeUnit::Day,
            1.0,
            range,
            at(8_000),
        )
        .expect("ok");
        assert_eq!(
            by_name
                .iter()
                .map(|c| (c.value.as_str(), c.count))
                .collect::<Vec<_>>(),
            [("a.done", 2), ("b.done", 1)]
        );
        assert_eq!(
            (by_name[0].start_time, by_name[0].end_time),
            (at(0), at(3_700))
        );
        let by_resource = count_events(
            &events,
            Countable::Resource,
            TimeUnit::Day,
            1.0,
            range,
            at(8_000),
        )
        .expect("ok");
        assert_eq!(by_resource[0].label, "y-name");

        // Hour spans: at(0) is 22:13:20 UTC, so the spans start at 22:00, 23:00, 00:00.
        let hourly = count_events(
            &events,
            Countable::Time,
            TimeUnit::Hour,
            1.0,
            range,
            at(8_000),
        )
        .expect("ok");
        assert_eq!(hourly.len(), 3);
        assert_eq!(
            hourly.iter().map(|c| c.count).collect::<Vec<_>>(),
            [2, 1, 0]
        );
        assert_eq!(hourly[0].value, "0");
        assert_eq!(hourly[0].label, "2023-11-14T22:00:00+00:00");
        assert_eq!(
            hourly[0].end_time,
            hourly[1].start_time - chrono::Duration::microseconds(1)
        );
        let too_many = count_events(
            &events,
            Countable::Time,
            TimeUnit::Second,
            1.0,
            range,
            at(8_000),
        );
        assert!(too_many.expect_err("7000 spans").contains("too many"));
    }

    fn resource_fixture(id: &str) -> Resource {
        resource(id, None)
    }

    #[test]
    fn status_changes_are_named_in_kebab_case_with_their_pool() {
        let pool = WorkPool {
            id: Id::new_v4(),
            created: at(0),
            updated: at(0),
            name: "ecs-pool".to_owned(),
            description: None,
            pool_type: "ecs:push".to_owned(),
            base_job_template: json!({}),
            is_paused: false,
            concurrency_limit: None,
            status: Some(PoolStatus::Ready),
            default_queue_id: None,
            storage_configuration: json!({}),
        };
        let queue = WorkQueue {
            id: Id::new_v4(),
            created: at(0),
            updated: at(0),
            name: "default".to_owned(),
            description: String::new(),
            is_paused: false,
            concurrency_limit: None,
            priority: 1,
            work_pool_id: pool.id,
            last_polled: None,
            status: PoolStatus::NotReady,
        };
        let e = work_pool_status(&pool, PoolStatus::NotReady, at(1));
        assert_eq!(e.event, "prefect.work-pool.not-ready");
        assert_eq!(e.resource["prefect.work-pool.type"], "ecs:push");
        let e = work_queue_status(&queue, Some(&pool), PoolStatus::Ready, at(1));
        assert_eq!(e.event, "prefect.work-queue.ready");
        assert_eq!(e.resource["prefect.resource.role"], "work-queue");
        assert_eq!(e.related[0]["prefect.resource.role"], "work-pool");
        assert_ne!(
            work_pool_status(&pool, PoolStatus::Ready, at(1)).id,
            work_pool_status(&pool, PoolStatus::Ready, at(1)).id,
            "each change is its own event"
        );
    }
}
