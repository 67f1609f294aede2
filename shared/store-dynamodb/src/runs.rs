//! [`RunStore`]: flow runs, their state history, idempotent creation and the run queries.
//!
//! A run is one item `RUN#<id>`: the document without its state (`d`), its states oldest first
//! (`h`, appended in the same write that changes the state; the last is the current one), the
//! version every compare-and-set names (`v`) and the attributes indexes and conditions read.
//! While a run is not final it sits in two sparse indexes: GSI2 (`LIVE#<pool>`, sorted by queue
//! then next scheduled start) for polls, late runs and concurrency counts, and GSI3
//! (`DLIVE#<deployment>`, by next scheduled start) for the scheduler. An idempotency key is a
//! guard item `RUNKEY#<flow>#<key>` naming the run, written before the run.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use futures::StreamExt;
use sluice_core::domain::{FlowRun, Id, State, StateType, Timestamp};
use sluice_store::matching::page;
use sluice_store::{Created, FlowRunFilter, FlowRunSort, RunStore, StoreError, Versioned};

use crate::DynamoStore;
use crate::error::corrupt;
use crate::item::{
    Item, ONLY, Result, decode_value, encode, expiry, get_id, get_n, get_s, key, n, s, ts,
};
use crate::ops::{Query, Update};
use crate::schema::{GSI2, GSI2_PK, GSI2_SK, GSI3, GSI3_PK, GSI3_SK, TTL_ATTRIBUTE};

/// How long a creator may hold an idempotency key without its run appearing before another
/// creator treats it as dead and takes the key over.
const ABANDONED_KEY_SECONDS: i64 = 30;
/// Runs created at once by `create_flow_runs`.
const CREATE_CONCURRENCY: usize = 8;

pub(crate) fn run_key(id: Id) -> Item {
    key(format!("RUN#{id}"), ONLY)
}

fn run_key_guard(flow_id: Id, idempotency_key: &str) -> Item {
    key(format!("RUNKEY#{flow_id}#{idempotency_key}"), ONLY)
}

fn or_dash(id: Option<Id>) -> String {
    id.map_or_else(|| "-".to_owned(), |i| i.to_string())
}

fn ns_text(run: &FlowRun) -> String {
    run.next_scheduled_start_time
        .map_or_else(|| "~".to_owned(), ts)
}

/// GSI2 spreads live runs over this many partitions, a queue's runs all in one, so a poll reads
/// one partition and a system-wide sweep reads them all.
const LIVE_SHARDS: u128 = 16;

fn live_partition(queue: Option<Id>) -> String {
    format!("LIVE#{}", queue.map_or(0, |q| q.as_u128() % LIVE_SHARDS))
}

fn is_live(run: &FlowRun) -> bool {
    !run.state_type().is_some_and(StateType::is_terminal)
}

/// The attributes derived from the run that indexes and conditions read, and the ones to remove
/// because they no longer apply.
fn derived(
    store: &DynamoStore,
    run: &FlowRun,
) -> (Vec<(&'static str, AttributeValue)>, Vec<&'static str>) {
    let mut set: Vec<(&'static str, AttributeValue)> = vec![
        ("k", s("run")),
        ("fl", s(run.flow_id.to_string())),
        ("rc", n(run.run_count)),
    ];
    let mut remove: Vec<&'static str> = Vec::new();
    match run.state.as_ref() {
        Some(st) => {
            set.push(("st", s(st.state_type.as_str())));
            set.push(("sn", s(st.name.clone())));
        }
        None => remove.extend(["st", "sn"]),
    }
    match run.next_scheduled_start_time {
        Some(t) => set.push(("ns", s(ts(t)))),
        None => remove.push("ns"),
    }
    match run.deployment_id {
        Some(d) => set.push(("dep", s(d.to_string()))),
        None => remove.push("dep"),
    }
    if is_live(run) {
        set.push((GSI2_PK, s(live_partition(run.work_queue_id))));
        set.push((
            GSI2_SK,
            s(format!(
                "{}#{}#{}",
                or_dash(run.work_queue_id),
                ns_text(run),
                run.id
            )),
        ));
        match run.deployment_id {
            Some(d) => {
                set.push((GSI3_PK, s(format!("DLIVE#{d}"))));
                set.push((GSI3_SK, s(format!("{}#{}", ns_text(run), run.id))));
            }
            None => remove.extend([GSI3_PK, GSI3_SK]),
        }
        remove.push(TTL_ATTRIBUTE);
    } else {
        remove.extend([GSI2_PK, GSI2_SK, GSI3_PK, GSI3_SK]);
        match (
            store.inner.retention.runs_days,
            run.end_time.or(Some(run.updated)),
        ) {
            (Some(days), Some(end)) => set.push((TTL_ATTRIBUTE, expiry(end, days))),
            _ => remove.push(TTL_ATTRIBUTE),
        }
    }
    (set, remove)
}

fn without_state(run: &FlowRun) -> FlowRun {
    let mut bare = run.clone();
    bare.state = None;
    bare
}

fn run_item(store: &DynamoStore, run: &FlowRun, version: u64, history: &[State]) -> Result<Item> {
    let mut item = run_key(run.id);
    item.insert("d".to_owned(), encode(&without_state(run))?);
    item.insert("v".to_owned(), n(version));
    item.insert("h".to_owned(), encode(&history)?);
    let (set, _) = derived(store, run);
    for (k, v) in set {
        item.insert(k.to_owned(), v);
    }
    Ok(item)
}

/// The run and its states, oldest first (the last is the run's current state).
fn run_from(item: &Item) -> Result<(Versioned<FlowRun>, Vec<State>)> {
    let mut run: FlowRun = crate::item::doc("flow run", item)?;
    let history: Vec<State> = match item.get("h") {
        Some(h) => decode_value("flow run states", h)?,
        None => Vec::new(),
    };
    run.state = history.last().cloned();
    let version = get_n(item, "v").ok_or_else(|| corrupt("flow run", "no version"))?;
    Ok((
        Versioned {
            value: run,
            version,
        },
        history,
    ))
}

/// The states of runs this process read or wrote last, by version. A state commit appends to
/// the history it names the version of; when that version is here (the services read a run
/// right before committing to it) the commit needs no read. Correct because the write is
/// conditional on that very version.
#[derive(Debug, Default)]
pub(crate) struct Histories {
    entries: HashMap<Id, (u64, Vec<State>)>,
    order: std::collections::VecDeque<Id>,
}

const HISTORIES_KEPT: usize = 4096;

impl Histories {
    fn put(&mut self, id: Id, version: u64, states: Vec<State>) {
        if self.entries.insert(id, (version, states)).is_none() {
            self.order.push_back(id);
            while self.order.len() > HISTORIES_KEPT {
                if let Some(old) = self.order.pop_front() {
                    self.entries.remove(&old);
                }
            }
        }
    }

    fn take(&mut self, id: Id, version: u64) -> Option<Vec<State>> {
        match self.entries.get(&id) {
            Some((v, _)) if *v == version => self.entries.remove(&id).map(|(_, h)| h),
            _ => None,
        }
    }
}

/// `SET a = :a, ... REMOVE b, ...` over `#`-named attributes.
fn set_remove(
    mut u: Update,
    set: Vec<(&'static str, AttributeValue)>,
    remove: &[&'static str],
    extra_set: &[&str],
) -> Update {
    let mut sets: Vec<String> = extra_set.iter().map(|e| (*e).to_owned()).collect();
    for (i, (name, value)) in set.into_iter().enumerate() {
        sets.push(format!("#a{i} = :a{i}"));
        u = u
            .name(&format!("#a{i}"), name)
            .value(&format!(":a{i}"), value);
    }
    let mut expr = format!("SET {}", sets.join(", "));
    if !remove.is_empty() {
        let names: Vec<String> = remove
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let p = format!("#r{i}");
                u.names.insert(p.clone(), (*name).to_owned());
                p
            })
            .collect();
        expr.push_str(&format!(" REMOVE {}", names.join(", ")));
    }
    u.expression = expr;
    u
}

impl DynamoStore {
    async fn read_run_item(&self, id: Id) -> Result<Option<Item>> {
        self.get(run_key(id)).await
    }

    /// Reads a run, remembering its states for a commit that follows.
    async fn read_run(&self, id: Id) -> Result<Option<(Versioned<FlowRun>, Vec<State>)>> {
        let Some(item) = self.read_run_item(id).await? else {
            return Ok(None);
        };
        let (run, history) = run_from(&item)?;
        self.histories().put(id, run.version, history.clone());
        Ok(Some((run, history)))
    }

    fn histories(&self) -> std::sync::MutexGuard<'_, Histories> {
        // A panic while holding this lock cannot leave the map inconsistent; keep going.
        self.inner
            .histories
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Writes a new run; `Conflict` when its id is taken.
    async fn put_new_run(&self, run: &FlowRun) -> Result<()> {
        let history: Vec<State> = run.state.iter().cloned().collect();
        // A run's first version is the creation instant in microseconds rather than 1, so a
        // run deleted and created again under the same id never repeats a version (a cached
        // history, here or in another process, is keyed by it).
        let first = u64::try_from(chrono::Utc::now().timestamp_micros()).unwrap_or(1);
        let item = run_item(self, run, first, &history)?;
        self.put(item, Some("attribute_not_exists(pk)"), None, None)
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => {
                    StoreError::Conflict(format!("flow run id {} is taken", run.id))
                }
                e => e,
            })
    }

    async fn create_keyed(&self, run: &FlowRun, idempotency_key: &str) -> Result<Created<FlowRun>> {
        let guard_key = run_key_guard(run.flow_id, idempotency_key);
        for _ in 0..3 {
            let mut guard = guard_key.clone();
            guard.insert("id".to_owned(), s(run.id.to_string()));
            guard.insert("at".to_owned(), n(run.created.timestamp()));
            match self
                .put(guard, Some("attribute_not_exists(pk)"), None, None)
                .await
            {
                Ok(()) => {
                    if let Err(e) = self.put_new_run(run).await {
                        // Release the key so the failure leaves nothing behind.
                        self.delete(guard_key.clone(), None, None).await?;
                        return Err(e);
                    }
                    return Ok(Created {
                        value: run.clone(),
                        created: true,
                    });
                }
                Err(e) if e.is_conflict() => {}
                Err(e) => return Err(e),
            }
            // The key is held: wait for its run (its creator may be between the two writes).
            let Some(held) = self.get(guard_key.clone()).await? else {
                continue; // released meanwhile: try again
            };
            let holder = get_id("idempotency key", &held, "id")?;
            for attempt in 0..20u64 {
                if let Some(item) = self.read_run_item(holder).await? {
                    return Ok(Created {
                        value: run_from(&item)?.0.value,
                        created: false,
                    });
                }
                tokio::time::sleep(Duration::from_millis(10 + attempt * 10)).await;
            }
            // Its creator died between the two writes: take the key over, conditionally.
            let age = run.created.timestamp() - get_n(&held, "at").map_or(0, |a| a as i64);
            if age >= ABANDONED_KEY_SECONDS || held_is_old(&held) {
                let mut values = HashMap::new();
                values.insert(":id".to_owned(), s(holder.to_string()));
                self.delete(guard_key.clone(), Some("id = :id"), Some(values))
                    .await?;
                continue;
            }
            return Err(StoreError::Unavailable(
                format!("flow run for idempotency key {idempotency_key:?} is being created").into(),
            ));
        }
        Err(StoreError::Unavailable(
            format!("could not settle idempotency key {idempotency_key:?}").into(),
        ))
    }

    /// Live runs' keys from GSI2: one queue's (narrowed by next start), or one whole shard's.
    async fn live_keys(
        &self,
        queue: Option<Id>,
        shard: u128,
        f: &FlowRunFilter,
    ) -> Result<Vec<Item>> {
        let mut q = match queue {
            Some(queue) => {
                let low = match f.next_scheduled_start_time_after {
                    Some(a) => format!("{queue}#{}", ts(a)),
                    None => format!("{queue}#"),
                };
                let high = match f.next_scheduled_start_time_before {
                    Some(b) => format!("{queue}#{}#~", ts(b)),
                    None => format!("{queue}#~~"),
                };
                Query::new(Some(GSI2), "#p = :p AND #s BETWEEN :lo AND :hi")
                    .name("#s", GSI2_SK)
                    .value(":lo", s(low))
                    .value(":hi", s(high))
                    .value(":p", s(live_partition(Some(queue))))
            }
            None => Query::new(Some(GSI2), "#p = :p").value(":p", s(format!("LIVE#{shard}"))),
        }
        .name("#p", GSI2_PK);
        let mut conditions: Vec<String> = Vec::new();
        if let Some(types) = &f.state_types {
            let names: Vec<String> = types
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    let p = format!(":st{i}");
                    q.values.insert(p.clone(), s(t.as_str()));
                    p
                })
                .collect();
            if !names.is_empty() {
                conditions.push(format!("st IN ({})", names.join(", ")));
            }
        }
        if let (None, Some(b)) = (queue, f.next_scheduled_start_time_before) {
            conditions.push("ns <= :nsb".to_owned());
            q.values.insert(":nsb".to_owned(), s(ts(b)));
        }
        if let Some([dep]) = f.deployment_ids.as_deref() {
            conditions.push("dep = :dep".to_owned());
            q.values.insert(":dep".to_owned(), s(dep.to_string()));
        }
        if !conditions.is_empty() {
            q = q.filter(conditions.join(" AND "));
        }
        self.query(q).await
    }

    /// The runs that may match `f`, read through the narrowest index the filter allows; the
    /// caller applies the full filter.
    async fn candidates(&self, f: &FlowRunFilter) -> Result<Vec<Item>> {
        let only_live = f
            .state_types
            .as_ref()
            .is_some_and(|t| t.iter().all(|t| !t.is_terminal()));
        let keys: Vec<Item> = if let Some(ids) = &f.ids {
            ids.iter().map(|id| run_key(*id)).collect()
        } else if only_live && f.work_queue_ids.is_some() {
            let mut keys = Vec::new();
            for qid in f.work_queue_ids.iter().flatten() {
                keys.extend(self.live_keys(Some(*qid), 0, f).await?);
            }
            keys
        } else if only_live && f.deployment_ids.is_some() {
            let mut keys = Vec::new();
            for d in f.deployment_ids.iter().flatten() {
                let mut q = Query::new(Some(GSI3), "#p = :p")
                    .name("#p", GSI3_PK)
                    .value(":p", s(format!("DLIVE#{d}")));
                if let Some(a) = f.next_scheduled_start_time_after {
                    q = Query::new(Some(GSI3), "#p = :p AND #s >= :a")
                        .name("#p", GSI3_PK)
                        .name("#s", GSI3_SK)
                        .value(":p", s(format!("DLIVE#{d}")))
                        .value(":a", s(ts(a)));
                }
                keys.extend(self.query(q).await?);
            }
            keys
        } else if only_live {
            let mut keys = Vec::new();
            for shard in 0..LIVE_SHARDS {
                keys.extend(self.live_keys(None, shard, f).await?);
            }
            keys
        } else {
            // History queries with nothing an index can narrow: read every run.
            let mut values = HashMap::new();
            values.insert(":k".to_owned(), s("run"));
            let mut filter = "k = :k".to_owned();
            if let Some([flow]) = f.flow_ids.as_deref() {
                filter.push_str(" AND fl = :fl");
                values.insert(":fl".to_owned(), s(flow.to_string()));
            }
            return self.scan(&filter, values).await;
        };
        let mut seen = HashSet::new();
        let keys: Vec<Item> = keys
            .into_iter()
            .filter_map(|k| {
                let pk = get_s(&k, "pk")?.to_owned();
                seen.insert(pk.clone()).then(|| key(pk, ONLY))
            })
            .collect();
        self.batch_get(keys).await
    }

    async fn matching_runs(&self, f: &FlowRunFilter) -> Result<Vec<Versioned<FlowRun>>> {
        let mut out = Vec::new();
        for item in self.candidates(f).await? {
            if get_s(&item, "k") != Some("run") {
                continue;
            }
            let run = run_from(&item)?.0;
            if f.matches(&run.value) {
                out.push(run);
            }
        }
        Ok(out)
    }

    /// The poll's shape (one queue's live runs by next scheduled start, a page of them): GSI2
    /// holds that queue's runs in exactly that order, so only as many runs are read as the
    /// page needs rather than every due run. `None` when the query has another shape.
    async fn poll_page(
        &self,
        f: &FlowRunFilter,
        sort: FlowRunSort,
        limit: Option<usize>,
        offset: usize,
    ) -> Result<Option<Vec<FlowRun>>> {
        let (Some(limit), Some([queue]), None) = (limit, f.work_queue_ids.as_deref(), &f.ids)
        else {
            return Ok(None);
        };
        let only_live = f
            .state_types
            .as_ref()
            .is_some_and(|t| t.iter().all(|t| !t.is_terminal()));
        if sort != FlowRunSort::NextScheduledStartTimeAsc || !only_live {
            return Ok(None);
        }
        let want = offset + limit;
        let keys: Vec<Item> = self
            .live_keys(Some(*queue), 0, f)
            .await?
            .into_iter()
            .filter_map(|k| get_s(&k, "pk").map(|pk| key(pk.to_owned(), ONLY)))
            .collect();
        let mut runs = Vec::new();
        for chunk in keys.chunks(want.clamp(1, 100)) {
            for item in self.batch_get(chunk.to_vec()).await? {
                let run = run_from(&item)?.0.value;
                if f.matches(&run) {
                    runs.push(run);
                }
            }
            if runs.len() >= want {
                break;
            }
        }
        runs.sort_by(|a, b| sort.compare(a, b));
        Ok(Some(page(runs, Some(limit), offset)))
    }

    /// Rewrites every run `select` picks with `change` applied (each a compare-and-set,
    /// retried on a lost race). For rare administrative cascades: it reads every run.
    pub(crate) async fn update_runs_where(
        &self,
        select: impl Fn(&FlowRun) -> bool + Send + Sync,
        change: impl Fn(&mut FlowRun) + Send + Sync,
    ) -> Result<()> {
        let all = FlowRunFilter::default();
        for run in self.matching_runs(&all).await? {
            let mut current = run;
            for _ in 0..5 {
                if !select(&current.value) {
                    break;
                }
                let mut next = current.value.clone();
                change(&mut next);
                match self.update_flow_run(&next, current.version).await {
                    Ok(_) => break,
                    Err(StoreError::Conflict(_)) => {
                        match self.read_flow_run(current.value.id).await? {
                            Some(fresh) => current = fresh,
                            None => break,
                        }
                    }
                    Err(StoreError::NotFound(_)) => break,
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    pub(crate) async fn delete_runs_of_flow(&self, flow_id: Id) -> Result<()> {
        let f = FlowRunFilter {
            flow_ids: Some(vec![flow_id]),
            ..FlowRunFilter::default()
        };
        for run in self.matching_runs(&f).await? {
            self.delete_flow_run(run.value.id).await?;
        }
        Ok(())
    }

    /// The CAS write shared by state commits and other updates.
    async fn write_run(
        &self,
        run: &FlowRun,
        expected_version: u64,
        new_state: Option<&State>,
    ) -> Result<u64> {
        let next = expected_version + 1;
        let (mut set, remove) = derived(self, run);
        set.push(("d", encode(&without_state(run))?));
        set.push(("v", n(next)));
        let u = Update::new(run_key(run.id), "")
            .condition("attribute_exists(pk) AND v = :expected")
            .value(":expected", n(expected_version));
        let mut history = None;
        if let Some(st) = new_state {
            let cached = self.histories().take(run.id, expected_version);
            let mut states = match cached {
                Some(states) => states,
                None => match self.read_run(run.id).await? {
                    Some((stored, states)) if stored.version == expected_version => states,
                    Some(_) => {
                        return Err(StoreError::Conflict(format!(
                            "flow run {} changed since version {expected_version}",
                            run.id
                        )));
                    }
                    None => return Err(StoreError::NotFound(format!("flow run {}", run.id))),
                },
            };
            states.push(st.clone());
            set.push(("h", encode(&states)?));
            history = Some(states);
        }
        let u = set_remove(u, set, &remove, &[]);
        match self.update(u).await {
            Ok(_) => {
                if let Some(states) = history {
                    self.histories().put(run.id, next, states);
                }
                Ok(next)
            }
            Err(StoreError::Conflict(_)) => match self.read_run_item(run.id).await? {
                Some(_) => Err(StoreError::Conflict(format!(
                    "flow run {} changed since version {expected_version}",
                    run.id
                ))),
                None => Err(StoreError::NotFound(format!("flow run {}", run.id))),
            },
            Err(e) => Err(e),
        }
    }
}

/// A guard without a readable creation time (not one this code wrote) counts as abandoned.
fn held_is_old(held: &Item) -> bool {
    get_n(held, "at").is_none()
}

#[async_trait]
impl RunStore for DynamoStore {
    async fn create_flow_run(&self, run: &FlowRun) -> Result<Created<FlowRun>> {
        match &run.idempotency_key {
            Some(k) => self.create_keyed(run, k).await,
            None => {
                self.put_new_run(run).await?;
                Ok(Created {
                    value: run.clone(),
                    created: true,
                })
            }
        }
    }

    async fn create_flow_runs(&self, runs: &[FlowRun]) -> Result<Vec<Id>> {
        let store = self.clone();
        let results: Vec<Result<Created<FlowRun>>> = futures::stream::iter(runs.to_vec())
            .map(move |r| {
                let store = store.clone();
                async move { store.create_flow_run(&r).await }
            })
            .buffer_unordered(CREATE_CONCURRENCY)
            .collect()
            .await;
        let mut created = Vec::new();
        for r in results {
            let r = r?;
            if r.created {
                created.push(r.value.id);
            }
        }
        Ok(created)
    }

    async fn read_flow_run(&self, id: Id) -> Result<Option<Versioned<FlowRun>>> {
        Ok(self.read_run(id).await?.map(|(run, _)| run))
    }

    async fn list_flow_runs(
        &self,
        filter: &FlowRunFilter,
        sort: FlowRunSort,
        limit: Option<usize>,
        offset: usize,
    ) -> Result<Vec<FlowRun>> {
        if let Some(runs) = self.poll_page(filter, sort, limit, offset).await? {
            return Ok(runs);
        }
        let mut runs: Vec<FlowRun> = self
            .matching_runs(filter)
            .await?
            .into_iter()
            .map(|r| r.value)
            .collect();
        runs.sort_by(|a, b| sort.compare(a, b));
        Ok(page(runs, limit, offset))
    }

    async fn count_flow_runs(&self, filter: &FlowRunFilter) -> Result<usize> {
        Ok(self.matching_runs(filter).await?.len())
    }

    async fn commit_flow_run_state(&self, run: &FlowRun, expected_version: u64) -> Result<u64> {
        let state = run
            .state
            .as_ref()
            .ok_or_else(|| StoreError::Conflict("a state commit needs a state".to_owned()))?;
        self.write_run(run, expected_version, Some(state)).await
    }

    async fn update_flow_run(&self, run: &FlowRun, expected_version: u64) -> Result<u64> {
        // The state stays as stored: read it, so the indexes follow the stored state too.
        let Some(stored) = self.read_flow_run(run.id).await? else {
            return Err(StoreError::NotFound(format!("flow run {}", run.id)));
        };
        if stored.version != expected_version {
            return Err(StoreError::Conflict(format!(
                "flow run {} changed since version {expected_version}",
                run.id
            )));
        }
        let mut next = run.clone();
        next.state = stored.value.state;
        self.write_run(&next, expected_version, None).await
    }

    async fn read_flow_run_states(&self, run_id: Id) -> Result<Vec<State>> {
        Ok(self
            .read_run(run_id)
            .await?
            .map(|(_, states)| states)
            .unwrap_or_default())
    }

    async fn delete_flow_run(&self, id: Id) -> Result<bool> {
        let Some(item) = self.read_run_item(id).await? else {
            return Ok(false);
        };
        let run = run_from(&item)?.0.value;
        let gone = self.delete(run_key(id), None, None).await?;
        if let Some(k) = &run.idempotency_key {
            let mut values = HashMap::new();
            values.insert(":id".to_owned(), s(id.to_string()));
            self.delete(
                run_key_guard(run.flow_id, k),
                Some("id = :id"),
                Some(values),
            )
            .await?;
        }
        Ok(gone)
    }

    async fn delete_unstarted_auto_scheduled_runs(
        &self,
        deployment_id: Id,
        from: Option<Timestamp>,
    ) -> Result<Vec<Id>> {
        let f = FlowRunFilter {
            deployment_ids: Some(vec![deployment_id]),
            state_types: Some(vec![StateType::Scheduled]),
            auto_scheduled: Some(true),
            run_count: Some(0),
            not_state_names: Some(vec!["AwaitingConcurrencySlot".to_owned()]),
            next_scheduled_start_time_after: from,
            ..FlowRunFilter::default()
        };
        let mut deleted = Vec::new();
        for run in self.matching_runs(&f).await? {
            // Conditional on the version read: if anything changed the run since, it stays.
            let mut values = HashMap::new();
            values.insert(":v".to_owned(), n(run.version));
            if self
                .delete(run_key(run.value.id), Some("v = :v"), Some(values))
                .await?
            {
                if let Some(k) = &run.value.idempotency_key {
                    let mut values = HashMap::new();
                    values.insert(":id".to_owned(), s(run.value.id.to_string()));
                    self.delete(
                        run_key_guard(run.value.flow_id, k),
                        Some("id = :id"),
                        Some(values),
                    )
                    .await?;
                }
                deleted.push(run.value.id);
            }
        }
        Ok(deleted)
    }

    async fn count_runs_by_queue(
        &self,
        queue_ids: &[Id],
        state_types: &[StateType],
    ) -> Result<HashMap<Id, usize>> {
        let f = FlowRunFilter {
            work_queue_ids: Some(queue_ids.to_vec()),
            state_types: Some(state_types.to_vec()),
            ..FlowRunFilter::default()
        };
        let mut counts: HashMap<Id, usize> = queue_ids.iter().map(|q| (*q, 0)).collect();
        for run in self.matching_runs(&f).await? {
            if let Some(q) = run.value.work_queue_id {
                *counts.entry(q).or_default() += 1;
            }
        }
        Ok(counts)
    }
}
