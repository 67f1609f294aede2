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
