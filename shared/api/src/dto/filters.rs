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
/// A `/paginate` request's page: `page` counts from 1, `limit` as [`paging`].
pub struct Paged {
    pub page: usize,
    pub limit: usize,
    pub offset: usize,
}

impl Paged {
    /// Prefect's paginated answer.
    pub fn answer(&self, results: Vec<Value>, total: usize) -> Value {
        let pages = if self.limit == 0 {
            0
        } else {
            total.div_ceil(self.limit)
        };
        serde_json::json!({
            "results": Value::Array(results),
            "count": total,
            "limit": self.limit,
            "pages": pages,
            "page": self.page,
        })
    }
}

pub fn page(body: &Value) -> Result<Paged, ApiError> {
    let page = match body.get("page") {
        None | Some(Value::Null) => 1,
        Some(v) => usize::try_from(
            v.as_u64()
                .filter(|p| *p >= 1)
                .ok_or_else(|| bad("page", "must be an integer ≥ 1"))?,
        )
        .map_err(|_| bad("page", "is too large"))?,
    };
    let (limit, _) = paging(&serde_json::json!({ "limit": body.get("limit") }))?;
    let offset = (page - 1)
        .checked_mul(limit)
        .ok_or_else(|| bad("page", "is too large"))?;
    Ok(Paged {
        page,
        limit,
        offset,
    })
}

/// Takes `deployments.flow_or_deployment_name` out of `body` and returns its `like_` text:
/// deployments whose own name or whose flow's name holds it. Only the deployment routes can
/// resolve it (they read the flows); elsewhere [`deployment_filter`] refuses it.
pub fn take_flow_or_deployment_name(body: &mut Value) -> Result<Option<String>, ApiError> {
    let taken = body
        .get_mut("deployments")
        .and_then(Value::as_object_mut)
        .and_then(|d| d.remove("flow_or_deployment_name"));
    let mut c = Criteria::new("deployments.flow_or_deployment_name", taken.as_ref())?;
    let like = c.string("like_")?;
    c.finish()?;
    Ok(like.filter(|s| !s.is_empty()))
}

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
/// A variables query. The store narrows by name; the rest is applied to what it returns
/// (variables are a few hundred at most).
pub struct VariableQuery {
    pub names: Option<Vec<String>>,
    pub name_like: Option<String>,
    pub tags_all: Option<Vec<String>>,
    pub sort: VariableSort,
}

/// Prefect's variable orders.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum VariableSort {
    NameAsc,
    NameDesc,
    CreatedDesc,
    UpdatedDesc,
}

impl VariableQuery {
    pub fn keep(&self, v: &sluice_core::domain::Variable) -> bool {
        self.name_like.as_ref().is_none_or(|like| {
            v.name
                .to_ascii_lowercase()
                .contains(&like.to_ascii_lowercase())
        }) && self
            .tags_all
            .as_ref()
            .is_none_or(|tags| tags.iter().all(|t| v.tags.contains(t)))
    }

    pub fn order(&self, vars: &mut [sluice_core::domain::Variable]) {
        vars.sort_by(|a, b| match self.sort {
            VariableSort::NameAsc => a.name.cmp(&b.name),
            VariableSort::NameDesc => b.name.cmp(&a.name),
            VariableSort::CreatedDesc => b.created.cmp(&a.created).then(b.id.cmp(&a.id)),
            VariableSort::UpdatedDesc => b.updated.cmp(&a.updated).then(b.id.cmp(&a.id)),
        });
    }
}

pub fn variable_query(body: &Value) -> Result<VariableQuery, ApiError> {
    let mut c = Criteria::new("variables", body.get("variables"))?;
    let mut name = c.sub("name")?;
    let names = name.strings("any_")?;
    let name_like = name.string("like_")?.filter(|s| !s.is_empty());
    name.finish()?;
    let mut tags = c.sub("tags")?;
    let tags_all = tags.strings("all_")?;
    tags.finish()?;
    c.finish()?;
    let sort = match body.get("sort") {
        None | Some(Value::Null) => VariableSort::NameAsc,
        Some(v) => match v.as_str() {
            Some("NAME_ASC") => VariableSort::NameAsc,
            Some("NAME_DESC") => VariableSort::NameDesc,
            Some("CREATED_DESC") => VariableSort::CreatedDesc,
            Some("UPDATED_DESC") => VariableSort::UpdatedDesc,
            _ => {
                return Err(bad(
                    "sort",
                    &format!("{v} is not one of NAME_ASC, NAME_DESC, CREATED_DESC, UPDATED_DESC"),
                ));
            }
        },
    };
    Ok(VariableQuery {
        names,
        name_like,
        tags_all,
        sort,
    })
}

/// A block-document query: the store narrows by one block type slug; the rest is applied to
/// what it returns.
pub struct BlockDocumentQuery {
    pub slug: Option<String>,
    /// Several slugs (`block_types.slug.any_` with more than one).
    pub slugs: Option<Vec<String>>,
    pub ids: Option<Vec<Id>>,
    pub names: Option<Vec<String>>,
    pub name_like: Option<String>,
    /// Prefect lists only named documents unless asked (`is_anonymous.eq_`).
    pub is_anonymous: Option<bool>,
    /// The document's schema has every one of these capabilities.
    pub capabilities_all: Option<Vec<String>>,
    pub sort: BlockDocumentSort,
}

/// Prefect's block-document orders.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum BlockDocumentSort {
    NameAsc,
    NameDesc,
    BlockTypeAndNameAsc,
}

impl BlockDocumentQuery {
    pub fn keep(&self, d: &sluice_core::domain::BlockDocument) -> bool {
        let name = d.name.as_deref().unwrap_or_default();
        self.slugs
            .as_ref()
            .is_none_or(|s| s.contains(&d.block_type_slug))
            && self.ids.as_ref().is_none_or(|ids| ids.contains(&d.id))
            && self
                .names
                .as_ref()
                .is_none_or(|n| n.iter().any(|n| n == name))
            && self.name_like.as_ref().is_none_or(|like| {
                name.to_ascii_lowercase()
                    .contains(&like.to_ascii_lowercase())
            })
            && self.is_anonymous.is_none_or(|a| a == d.is_anonymous)
    }

    pub fn order(&self, docs: &mut [sluice_core::domain::BlockDocument]) {
        docs.sort_by(|a, b| match self.sort {
            BlockDocumentSort::NameAsc => a.name.cmp(&b.name),
            BlockDocumentSort::NameDesc => b.name.cmp(&a.name),
            BlockDocumentSort::BlockTypeAndNameAsc => a
                .block_type_slug
                .cmp(&b.block_type_slug)
                .then_with(|| a.name.cmp(&b.name)),
        });
    }
}

pub fn block_document_query(body: &Value) -> Result<BlockDocumentQuery, ApiError> {
    let mut types = Criteria::new("block_types", body.get("block_types"))?;
    let mut slug = types.sub("slug")?;
    let slugs = slug.strings("any_")?;
    slug.finish()?;
    types.finish()?;
    let mut c = Criteria::new("block_documents", body.get("block_documents"))?;
    let ids = c.sub("id")?.any_ids()?;
    let mut name = c.sub("name")?;
    let names = name.strings("any_")?;
    let name_like = name.string("like_")?.filter(|s| !s.is_empty());
    name.finish()?;
    // Prefect's default, once `block_documents` is given: named documents only.
    let default_named = c.map.is_some()
        && c.map
            .and_then(|m| m.get("is_anonymous"))
            .is_none_or(Value::is_null);
    let mut anonymous = c.sub("is_anonymous")?;
    let is_anonymous = anonymous.bool("eq_")?.or(default_named.then_some(false));
    anonymous.finish()?;
    c.finish()?;
    let mut schemas = Criteria::new("block_schemas", body.get("block_schemas"))?;
    let mut caps = schemas.sub("block_capabilities")?;
    let capabilities_all = caps.strings("all_")?;
    caps.finish()?;
    schemas.finish()?;
    let sort = match body.get("sort") {
        None | Some(Value::Null) => BlockDocumentSort::NameAsc,
        Some(v) => match v.as_str() {
            Some("NAME_ASC") => BlockDocumentSort::NameAsc,
            Some("NAME_DESC") => BlockDocumentSort::NameDesc,
            Some("BLOCK_TYPE_AND_NAME_ASC") => BlockDocumentSort::BlockTypeAndNameAsc,
            _ => {
                return Err(bad(
                    "sort",
                    &format!("{v} is not one of NAME_ASC, NAME_DESC, BLOCK_TYPE_AND_NAME_ASC"),
                ));
            }
        },
    };
    let (slug, slugs) = match slugs {
        Some(one) if one.len() == 1 => (one.first().cloned(), None),
        other => (None, other),
    };
    Ok(BlockDocumentQuery {
        slug,
        slugs,
        ids,
        names,
        name_like,
        is_anonymous,
        capabilities_all,
        sort,
    })
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
    /// `flow_runs.parent_flow_run_id.any_`: subflow runs of these runs, resolved through
    /// their parent task runs.
    pub parent_flow_run_ids: Option<Vec<Id>>,
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
    let parent_flow_run_ids;
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
        let mut parent_run = c.sub("parent_flow_run_id")?;
        parent_flow_run_ids = parent_run.ids("any_")?;
        parent_run.finish()?;
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
        parent_flow_run_ids,
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
    /// `task_runs.subflow_runs.exists_`: only the task runs that stand for a subflow run
    /// (`true`) or only the others (`false`).
    pub subflow_runs: Option<bool>,
    /// Flow-run criteria beyond ids (`flow_runs`, `flows`, `deployments`): the runs they
    /// select must be resolved to ids (see [`TaskRunQuery::run_criteria`]).
    pub run_criteria: Option<Value>,
    pub sort: TaskRunSort,
    pub limit: usize,
    pub offset: usize,
}

pub fn task_run_query(body: &Value) -> Result<TaskRunQuery, ApiError> {
    let (limit, offset) = paging(body)?;
    let mut c = Criteria::new("task_runs", body.get("task_runs"))?;
    let mut f = TaskRunFilter::default();
    let subflow_runs;
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
        let mut sub = c.sub("subflow_runs")?;
        subflow_runs = sub.bool("exists_")?;
        sub.finish()?;
    }
    c.finish()?;
    // The client's `read_task_runs(flow_run_filter=...)` names flow runs by id: applied here.
    // Anything more (the UI's time windows, flows, deployments) selects flow runs to resolve.
    let only_ids = body
        .get("flow_runs")
        .and_then(Value::as_object)
        .is_some_and(|m| {
            m.iter()
                .all(|(k, v)| k == "id" || k == "operator" || v.is_null())
        });
    let mut run_criteria = None;
    if only_ids {
        let mut runs = Criteria::new("flow_runs", body.get("flow_runs"))?;
        if let Some(ids) = runs.sub("id")?.any_ids()? {
            f.flow_run_ids = Some(match f.flow_run_ids.take() {
                Some(mine) => mine.into_iter().filter(|i| ids.contains(i)).collect(),
                None => ids,
            });
        }
        runs.finish()?;
    }
    let mut related = Map::new();
    for key in ["flow_runs", "flows", "deployments"] {
        if key == "flow_runs" && only_ids {
            continue;
        }
        if let Some(v) = body.get(key).filter(|v| !v.is_null()) {
            related.insert(key.to_owned(), v.clone());
        }
    }
    if !related.is_empty() {
        // Checked now, so a bad criterion is a 422 before anything is read.
        run_query(&Value::Object(related.clone()))?;
        run_criteria = Some(Value::Object(related));
    }
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
        subflow_runs,
        run_criteria,
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
        &mut f.any_resource_id_prefixes,
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
    f.any_resource_id_prefixes = any.strings("id_prefix")?;
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
