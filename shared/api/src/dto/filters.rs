//! Prefect's filter bodies (`{"flow_runs": {"state": {"type": {"any_": [...]}}}, "sort": ...}`)
//! interpreted into store filters. Every criterion Sluice understands is applied; a criterion it
//! does not understand is refused with a 422 naming it, never silently ignored, because an
//! ignored filter answers with the wrong rows.

use serde_json::{Map, Value};
use sluice_core::domain::{Id, StateType, Timestamp, WorkerStatus};
use sluice_store::{
    DeploymentFilter, EventFilter, FlowFilter, FlowRunFilter, FlowRunSort, LogFilter,
    TaskRunFilter, TaskRunSort, WorkPoolFilter, WorkerFilter,
};

use crate::error::ApiError;

pub const DEFAULT_LIMIT: usize = 200;

/// A criterion object being read; records what was consumed so leftovers can be reported.
struct Criteria<'a> {
    path: String,
    map: Option<&'a Map<String, Value>>,
    used: Vec<&'static str>,
}

impl<'a> Criteria<'a> {
    fn new(path: &str, value: Option<&'a Value>) -> Result<Criteria<'a>, ApiError> {
        let map = match value {
            None | Some(Value::Null) => None,
            Some(Value::Object(m)) => Some(m),
            Some(_) => return Err(bad(path, "must be an object")),
        };
        Ok(Criteria {
            path: path.to_owned(),
            map,
            used: vec!["operator"],
        })
    }

    fn get(&mut self, key: &'static str) -> Option<&'a Value> {
        self.used.push(key);
        self.map.and_then(|m| m.get(key)).filter(|v| !v.is_null())
    }

    fn sub(&mut self, key: &'static str) -> Result<Criteria<'a>, ApiError> {
        let path = format!("{}.{key}", self.path);
        Criteria::new(&path, self.get(key))
    }

    fn strings(&mut self, key: &'static str) -> Result<Option<Vec<String>>, ApiError> {
        let path = format!("{}.{key}", self.path);
        self.get(key)
            .map(|v| {
                v.as_array()
                    .ok_or_else(|| bad(&path, "must be a list"))?
                    .iter()
                    .map(|s| {
                        s.as_str()
                            .map(str::to_owned)
                            .ok_or_else(|| bad(&path, "must hold strings"))
                    })
                    .collect()
            })
            .transpose()
    }

    fn ids(&mut self, key: &'static str) -> Result<Option<Vec<Id>>, ApiError> {
        let path = format!("{}.{key}", self.path);
        self.strings(key)?
            .map(|v| {
                v.iter()
                    .map(|s| {
                        s.parse()
                            .map_err(|_| bad(&path, &format!("{s:?} is not a valid UUID")))
                    })
                    .collect()
            })
            .transpose()
    }

    fn bool(&mut self, key: &'static str) -> Result<Option<bool>, ApiError> {
        let path = format!("{}.{key}", self.path);
        self.get(key)
            .map(|v| v.as_bool().ok_or_else(|| bad(&path, "must be a boolean")))
            .transpose()
    }

    fn int(&mut self, key: &'static str) -> Result<Option<i64>, ApiError> {
        let path = format!("{}.{key}", self.path);
        self.get(key)
            .map(|v| v.as_i64().ok_or_else(|| bad(&path, "must be an integer")))
            .transpose()
    }

    fn string(&mut self, key: &'static str) -> Result<Option<String>, ApiError> {
        let path = format!("{}.{key}", self.path);
        self.get(key)
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| bad(&path, "must be a string"))
            })
            .transpose()
    }

    fn time(&mut self, key: &'static str) -> Result<Option<Timestamp>, ApiError> {
        let path = format!("{}.{key}", self.path);
        self.string(key)?
            .map(|s| {
                sluice_core::time::parse_timestamp(&s)
                    .ok_or_else(|| bad(&path, &format!("{s:?} is not a valid datetime")))
            })
            .transpose()
    }

    /// Refuses any key that carries a value but was never read.
    fn finish(self) -> Result<(), ApiError> {
        if let Some(map) = self.map {
            for (k, v) in map {
                if !v.is_null() && !self.used.contains(&k.as_str()) {
                    return Err(bad(
                        &format!("{}.{k}", self.path),
                        "is not a filter Sluice supports",
                    ));
                }
            }
        }
        Ok(())
    }
}

fn bad(path: &str, what: &str) -> ApiError {
    let location: Vec<Value> = std::iter::once("body".into())
        .chain(path.split('.').map(Value::from))
        .collect();
    ApiError::invalid_field(location, format!("{path} {what}"))
}

/// `limit` and `offset`: default 200, at most 200, as Prefect's `LimitBody`.
pub fn paging(body: &Value) -> Result<(usize, usize), ApiError> {
    let limit = match body.get("limit") {
        None | Some(Value::Null) => DEFAULT_LIMIT,
        Some(v) => match v.as_i64() {
            Some(n) if (0..=DEFAULT_LIMIT as i64).contains(&n) => n as usize,
            _ => {
                return Err(bad(
                    "limit",
                    &format!("must be an integer between 0 and {DEFAULT_LIMIT}"),
                ));
            }
        },
    };
    let offset = match body.get("offset") {
        None | Some(Value::Null) => 0,
        Some(v) => match v.as_u64() {
            Some(n) => n as usize,
            None => return Err(bad("offset", "must be a non-negative integer")),
        },
    };
    Ok((limit, offset))
}

/// Refuses top-level keys an endpoint does not know. A null value is "not given" (clients
/// send every optional filter, most as null) and passes whatever its key.
pub fn only_keys(body: &Value, allowed: &[&str]) -> Result<(), ApiError> {
    if let Some(m) = body.as_object() {
        for (k, v) in m {
            if !v.is_null() && !allowed.contains(&k.as_str()) {
                return Err(bad(k, "is not a field of this request"));
            }
        }
    } else if !body.is_null() {
        return Err(ApiError::invalid_field(
            vec!["body".into()],
            "the body must be a JSON object",
        ));
    }
    Ok(())
}

pub fn work_pool_filter(body: &Value) -> Result<WorkPoolFilter, ApiError> {
    let mut c = Criteria::new("work_pools", body.get("work_pools"))?;
    let f = WorkPoolFilter {
        ids: c.sub("id")?.any_ids()?,
        names: c.sub("name")?.any_strings()?,
        types: c.sub("type")?.any_strings()?,
    };
    c.finish()?;
    Ok(f)
}

impl Criteria<'_> {
    fn any_ids(mut self) -> Result<Option<Vec<Id>>, ApiError> {
        let v = self.ids("any_")?;
        self.finish()?;
        Ok(v)
    }

    fn any_strings(mut self) -> Result<Option<Vec<String>>, ApiError> {
        let v = self.strings("any_")?;
        self.finish()?;
        Ok(v)
    }
}

/// A pool's queue filter: names (`any_`), name prefixes (`startswith_`) and ids.
pub struct QueueCriteria {
    pub names: Option<Vec<String>>,
    pub prefixes: Option<Vec<String>>,
    pub ids: Option<Vec<Id>>,
}

pub fn queue_filter(body: &Value) -> Result<QueueCriteria, ApiError> {
    let mut c = Criteria::new("work_queues", body.get("work_queues"))?;
    let mut name = c.sub("name")?;
    let names = name.strings("any_")?;
    let prefixes = name.strings("startswith_")?;
    name.finish()?;
    let ids = c.sub("id")?.any_ids()?;
    c.finish()?;
    Ok(QueueCriteria {
        names,
        prefixes,
        ids,
    })
}

/// Variable names to match (`variables.name.any_`).
pub fn variable_names(body: &Value) -> Result<Option<Vec<String>>, ApiError> {
    let mut c = Criteria::new("variables", body.get("variables"))?;
    let names = c.sub("name")?.any_strings()?;
    c.finish()?;
    Ok(names)
}

/// The one block type slug a block-document query may name (`block_types.slug.any_`); the
/// store keys documents by slug and filters on one.
pub fn block_type_slug(body: &Value) -> Result<Option<String>, ApiError> {
    let mut c = Criteria::new("block_types", body.get("block_types"))?;
    let slugs = c.sub("slug")?.any_strings()?;
    c.finish()?;
    match slugs.as_deref() {
        None => Ok(None),
        Some([one]) => Ok(Some(one.clone())),
        Some(_) => Err(bad(
            "block_types.slug.any_",
            "must name exactly one block type slug",
        )),
    }
}

pub fn worker_filter(body: &Value) -> Result<WorkerFilter, ApiError> {
    let mut c = Criteria::new("workers", body.get("workers"))?;
    let mut hb = c.sub("last_heartbeat_time")?;
    let before = hb.time("before_")?;
    let after = hb.time("after_")?;
    hb.finish()?;
    let mut st = c.sub("status")?;
    let parse = |v: Option<Vec<String>>| -> Result<Option<Vec<WorkerStatus>>, ApiError> {
        v.map(|v| {
            v.iter()
                .map(|s| {
                    WorkerStatus::parse(s).ok_or_else(|| {
                        bad("workers.status", &format!("{s:?} is not ONLINE or OFFLINE"))
                    })
                })
                .collect()
        })
        .transpose()
    };
    let statuses = parse(st.strings("any_")?)?;
    let not_statuses = parse(st.strings("not_any_")?)?;
    st.finish()?;
    c.finish()?;
    Ok(WorkerFilter {
        statuses,
        not_statuses,
        last_heartbeat_before: before,
        last_heartbeat_after: after,
    })
}

pub fn flow_filter(value: Option<&Value>) -> Result<FlowFilter, ApiError> {
    let mut c = Criteria::new("flows", value)?;
    let mut name = c.sub("name")?;
    let names = name.strings("any_")?;
    let name_like = name.string("like_")?;
    name.finish()?;
    let mut tags = c.sub("tags")?;
    let tags_all = tags.strings("all_")?;
    tags.finish()?;
    let f = FlowFilter {
        ids: c.sub("id")?.any_ids()?,
        names,
        name_like,
        tags_all,
    };
    c.finish()?;
    Ok(f)
}

pub fn deployment_filter(value: Option<&Value>) -> Result<DeploymentFilter, ApiError> {
    let mut c = Criteria::new("deployments", value)?;
    let mut name = c.sub("name")?;
    let names = name.strings("any_")?;
    let name_like = name.string("like_")?;
    name.finish()?;
    let mut tags = c.sub("tags")?;
    let tags_all = tags.strings("all_")?;
    tags.finish()?;
    let mut paused = c.sub("paused")?;
    let paused_eq = paused.bool("eq_")?;
    paused.finish()?;
    let mut wq = c.sub("work_queue_id")?;
    let work_queue_ids = wq.ids("any_")?;
    wq.finish()?;
    let f = DeploymentFilter {
        ids: c.sub("id")?.any_ids()?,
        names,
        name_like,
        paused: paused_eq,
        tags_all,
        work_queue_ids,
        ..Default::default()
    };
    c.finish()?;
    Ok(f)
}

/// A flow-run query: the store filter plus the flow criteria that must be resolved to ids.
pub struct RunQuery {
    pub filter: FlowRunFilter,
    pub flows: FlowFilter,
    pub deployments: DeploymentFilter,
    pub sort: FlowRunSort,
    pub limit: usize,
    pub offset: usize,
}

fn parse_sort(body: &Value) -> Result<FlowRunSort, ApiError> {
    let Some(v) = body.get("sort").filter(|v| !v.is_null()) else {
        return Ok(FlowRunSort::IdDesc);
    };
    Ok(match v.as_str().unwrap_or_default() {
        "ID_DESC" => FlowRunSort::IdDesc,
        "START_TIME_ASC" => FlowRunSort::StartTimeAsc,
        "START_TIME_DESC" => FlowRunSort::StartTimeDesc,
        "EXPECTED_START_TIME_ASC" => FlowRunSort::ExpectedStartTimeAsc,
        "EXPECTED_START_TIME_DESC" => FlowRunSort::ExpectedStartTimeDesc,
        "NEXT_SCHEDULED_START_TIME_ASC" => FlowRunSort::NextScheduledStartTimeAsc,
        "END_TIME_DESC" => FlowRunSort::EndTimeDesc,
        "NAME_ASC" => FlowRunSort::NameAsc,
        "NAME_DESC" => FlowRunSort::NameDesc,
        other => return Err(bad("sort", &format!("{other:?} is not a supported sort"))),
    })
}

fn state_types(v: Option<Vec<String>>) -> Result<Option<Vec<StateType>>, ApiError> {
    v.map(|v| {
        v.iter()
            .map(|s| {
                StateType::parse(s).ok_or_else(|| {
                    bad(
                        "flow_runs.state.type",
                        &format!("{s:?} is not a state type"),
                    )
                })
            })
            .collect()
    })
    .transpose()
}

pub fn run_query(body: &Value) -> Result<RunQuery, ApiError> {
    let (limit, offset) = paging(body)?;
    let mut c = Criteria::new("flow_runs", body.get("flow_runs"))?;
    let mut f = FlowRunFilter::default();
    {
        let mut id = c.sub("id")?;
        f.ids = id.ids("any_")?;
        f.not_ids = id.ids("not_any_")?;
        id.finish()?;
        let mut name = c.sub("name")?;
        f.names = name.strings("any_")?;
        f.name_like = name.string("like_")?;
        name.finish()?;
        let mut tags = c.sub("tags")?;
        f.tags_all = tags.strings("all_")?;
        f.tags_any = tags.strings("any_")?;
        tags.finish()?;
        let mut dep = c.sub("deployment_id")?;
        f.deployment_ids = dep.ids("any_")?;
        f.deployment_id_is_null = dep.bool("is_null_")?;
        dep.finish()?;
        let mut wq = c.sub("work_queue_name")?;
        f.work_queue_names = wq.strings("any_")?;
        wq.finish()?;
        let mut state = c.sub("state")?;
        let mut st = state.sub("type")?;
        f.state_types = state_types(st.strings("any_")?)?;
        f.not_state_types = state_types(st.strings("not_any_")?)?;
        st.finish()?;
        let mut sn = state.sub("name")?;
        f.state_names = sn.strings("any_")?;
        f.not_state_names = sn.strings("not_any_")?;
        sn.finish()?;
        state.finish()?;
        let mut start = c.sub("start_time")?;
        f.start_time_before = start.time("before_")?;
        f.start_time_after = start.time("after_")?;
        f.start_time_is_null = start.bool("is_null_")?;
        start.finish()?;
        let mut exp = c.sub("expected_start_time")?;
        f.expected_start_time_before = exp.time("before_")?;
        f.expected_start_time_after = exp.time("after_")?;
        exp.finish()?;
        let mut next = c.sub("next_scheduled_start_time")?;
        f.next_scheduled_start_time_before = next.time("before_")?;
        f.next_scheduled_start_time_after = next.time("after_")?;
        next.finish()?;
        let mut parent = c.sub("parent_task_run_id")?;
        f.parent_task_run_ids = parent.ids("any_")?;
        parent.finish()?;
        let mut key = c.sub("idempotency_key")?;
        f.idempotency_keys = key.strings("any_")?;
        key.finish()?;
    }
    c.finish()?;
    let mut pools = Criteria::new("work_pools", body.get("work_pools"))?;
    f.work_pool_ids = pools.sub("id")?.any_ids()?;
    f.work_pool_names = pools.sub("name")?.any_strings()?;
    pools.finish()?;
    let mut queues = Criteria::new("work_pool_queues", body.get("work_pool_queues"))?;
    f.work_queue_ids = queues.sub("id")?.any_ids()?;
    if let Some(names) = queues.sub("name")?.any_strings()? {
        f.work_queue_names = Some(names);
    }
    queues.finish()?;
    Ok(RunQuery {
        filter: f,
        flows: flow_filter(body.get("flows"))?,
        deployments: deployment_filter(body.get("deployments"))?,
        sort: parse_sort(body)?,
        limit,
        offset,
    })
}

pub fn log_filter(body: &Value) -> Result<LogFilter, ApiError> {
    let mut c = Criteria::new("logs", body.get("logs"))?;
    let mut f = LogFilter::default();
    let mut run = c.sub("flow_run_id")?;
    f.flow_run_ids = run.ids("any_")?;
    run.finish()?;
    let mut task = c.sub("task_run_id")?;
    f.task_run_ids = task.ids("any_")?;
    task.finish()?;
    let mut level = c.sub("level")?;
    f.level_ge = level.int("ge_")?;
    f.level_le = level.int("le_")?;
    level.finish()?;
    let mut time = c.sub("timestamp")?;
    f.timestamp_before = time.time("before_")?;
    f.timestamp_after = time.time("after_")?;
    time.finish()?;
    c.finish()?;
    f.newest_first = match body.get("sort") {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) if s == "TIMESTAMP_ASC" => false,
        Some(Value::String(s)) if s == "TIMESTAMP_DESC" => true,
        Some(other) => {
            return Err(bad(
                "sort",
                &format!("{other} is not TIMESTAMP_ASC or TIMESTAMP_DESC"),
            ));
        }
    };
    Ok(f)
}

/// A task-run query: `task_runs` criteria, a flow-run id criterion from `flow_runs`, sort, page.
pub struct TaskRunQuery {
    pub filter: TaskRunFilter,
    pub sort: TaskRunSort,
    pub limit: usize,
    pub offset: usize,
}

pub fn task_run_query(body: &Value) -> Result<TaskRunQuery, ApiError> {
    let (limit, offset) = paging(body)?;
    let mut c = Criteria::new("task_runs", body.get("task_runs"))?;
    let mut f = TaskRunFilter::default();
    {
        let mut id = c.sub("id")?;
        f.ids = id.ids("any_")?;
        f.not_ids = id.ids("not_any_")?;
        id.finish()?;
        let mut name = c.sub("name")?;
        f.names = name.strings("any_")?;
        f.name_like = name.string("like_")?;
        name.finish()?;
        let mut tags = c.sub("tags")?;
        f.tags_all = tags.strings("all_")?;
        tags.finish()?;
        let mut state = c.sub("state")?;
        let mut st = state.sub("type")?;
        f.state_types = state_types(st.strings("any_")?)?;
        st.finish()?;
        let mut sn = state.sub("name")?;
        f.state_names = sn.strings("any_")?;
        sn.finish()?;
        state.finish()?;
        let mut start = c.sub("start_time")?;
        f.start_time_before = start.time("before_")?;
        f.start_time_after = start.time("after_")?;
        f.start_time_is_null = start.bool("is_null_")?;
        start.finish()?;
        let mut exp = c.sub("expected_start_time")?;
        f.expected_start_time_before = exp.time("before_")?;
        f.expected_start_time_after = exp.time("after_")?;
        exp.finish()?;
        let mut run = c.sub("flow_run_id")?;
        f.flow_run_ids = run.ids("any_")?;
        f.flow_run_is_null = run.bool("is_null_")?;
        run.finish()?;
    }
    c.finish()?;
    // The client's `read_task_runs(flow_run_filter=...)` names flow runs by id.
    let mut runs = Criteria::new("flow_runs", body.get("flow_runs"))?;
    if let Some(ids) = runs.sub("id")?.any_ids()? {
        f.flow_run_ids = Some(match f.flow_run_ids.take() {
            Some(mine) => mine.into_iter().filter(|i| ids.contains(i)).collect(),
            None => ids,
        });
    }
    runs.finish()?;
    let sort = match body.get("sort").filter(|v| !v.is_null()) {
        None => TaskRunSort::IdDesc,
        Some(v) => match v.as_str().unwrap_or_default() {
            "ID_DESC" => TaskRunSort::IdDesc,
            "EXPECTED_START_TIME_ASC" | "NEXT_SCHEDULED_START_TIME_ASC" => {
                TaskRunSort::ExpectedStartTimeAsc
            }
            "EXPECTED_START_TIME_DESC" => TaskRunSort::ExpectedStartTimeDesc,
            "NAME_ASC" => TaskRunSort::NameAsc,
            "NAME_DESC" => TaskRunSort::NameDesc,
            "END_TIME_DESC" => TaskRunSort::EndTimeDesc,
            other => return Err(bad("sort", &format!("{other:?} is not a supported sort"))),
        },
    };
    Ok(TaskRunQuery {
        filter: f,
        sort,
        limit,
        offset,
    })
}

/// Prefect's `EventFilter` (the `filter` of `/events/filter`, or of an `/events/out`
/// subscription). Without `occurred`, every stored event is in range (Prefect's default
/// reaches back 180 days; Sluice keeps events for its retention).
pub fn event_filter(value: Option<&Value>) -> Result<EventFilter, ApiError> {
    let mut f = event_criteria(value)?;
    // Prefect's client sends empty lists for criteria it does not set (`"id": {"id": []}`):
    // an empty list is no criterion.
    for list in [
        &mut f.names,
        &mut f.prefixes,
        &mut f.exclude_names,
        &mut f.exclude_prefixes,
        &mut f.resource_ids,
        &mut f.resource_id_prefixes,
        &mut f.related_ids,
        &mut f.any_resource_ids,
    ] {
        if list.as_ref().is_some_and(Vec::is_empty) {
            *list = None;
        }
    }
    if f.ids.as_ref().is_some_and(Vec::is_empty) {
        f.ids = None;
    }
    Ok(f)
}

fn event_criteria(value: Option<&Value>) -> Result<EventFilter, ApiError> {
    let mut c = Criteria::new("filter", value)?;
    let mut f = EventFilter::default();
    let mut occurred = c.sub("occurred")?;
    f.occurred_since = occurred.time("since")?;
    f.occurred_until = occurred.time("until")?;
    occurred.finish()?;
    let mut event = c.sub("event")?;
    f.prefixes = event.strings("prefix")?;
    f.exclude_prefixes = event.strings("exclude_prefix")?;
    f.names = event.strings("name")?;
    f.exclude_names = event.strings("exclude_name")?;
    event.finish()?;
    let mut resource = c.sub("resource")?;
    f.resource_ids = resource.strings("id")?;
    f.resource_id_prefixes = resource.strings("id_prefix")?;
    if resource.bool("distinct")? == Some(true) {
        return Err(bad(
            "filter.resource.distinct",
            "is not a filter Sluice supports",
        ));
    }
    resource.finish()?;
    let mut related = c.sub("related")?;
    f.related_ids = related.strings("id")?;
    related.finish()?;
    let mut any = c.sub("any_resource")?;
    f.any_resource_ids = any.strings("id")?;
    any.finish()?;
    let mut id = c.sub("id")?;
    f.ids = id.ids("id")?;
    id.finish()?;
    f.ascending = match c.string("order")?.as_deref() {
        None | Some("DESC") => false,
        Some("ASC") => true,
        Some(other) => {
            return Err(bad(
                "filter.order",
                &format!("{other:?} is not ASC or DESC"),
            ));
        }
    };
    c.finish()?;
    Ok(f)
}
