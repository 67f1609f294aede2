//! [`TaskRunStore`]: task runs and their state history.
//!
//! A task run is one item `TASKRUN#<id>`: the run with its current state (`d`), its version
//! (`v`, every document write is conditional on it), its state's time (`ts`) and its history:
//! `h`, every state once (each deflated), and `hs`, the set of their ids, so a state is appended
//! on condition `NOT contains(hs, :sid)` and a resent one changes nothing. Runs are listed on
//! gsi1 under `TASKRUNS#<flow run or NONE>` by expected start, so a flow run's task runs are one
//! query. A run in a flow run is named by the guard item `TASKRUNKEY#<flow run>#<natural key>`,
//! so creating it through the API twice finds the first run.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use futures::StreamExt;
use sluice_core::domain::{Id, State, TaskRun};
use sluice_core::task_runs::recorded;
use sluice_store::matching::{page, sort_task_runs};
use sluice_store::{StoreError, TaskRunFilter, TaskRunSort, TaskRunStore};

use crate::DynamoStore;
use crate::error::corrupt;
use crate::item::{Item, ONLY, Result, decode_value, doc, encode, get_id, key, n, s, ts};
use crate::misc::{guard, listed};
use crate::ops::{Update, backoff, tx};
use crate::schema::{PK, SK};

/// Tries at recording one run while other writers keep moving its version.
const RECORD_ATTEMPTS: u32 = 8;
/// Distinct runs recorded at once (each run's reports stay in order).
const RECORD_CONCURRENCY: usize = 8;

fn task_run_key(id: Id) -> Item {
    key(format!("TASKRUN#{id}"), ONLY)
}

/// U+0001 between the task key and the dynamic key: a `#` in either cannot make two keys meet.
fn natural_key(flow_run: Id, run: &TaskRun) -> Item {
    key(
        format!(
            "TASKRUNKEY#{flow_run}#{}\u{1}{}",
            run.task_key, run.dynamic_key
        ),
        ONLY,
    )
}

fn partition(flow_run: Option<Id>) -> String {
    format!(
        "TASKRUNS#{}",
        flow_run.map_or_else(|| "NONE".to_owned(), |f| f.to_string())
    )
}

/// The run's item without its history.
fn run_item(run: &TaskRun) -> Result<Item> {
    let sort = format!(
        "{}#{}",
        ts(run.expected_start_time.unwrap_or(run.created)),
        run.id
    );
    let mut item = listed(
        task_run_key(run.id),
        "task_run",
        &partition(run.flow_run_id),
        sort,
    );
    item.insert("d".to_owned(), encode(run)?);
    item.insert("v".to_owned(), n(run.version));
    if let Some(t) = run.state_timestamp() {
        item.insert("ts".to_owned(), s(ts(t)));
    }
    Ok(item)
}

fn history(item: &Item) -> Result<Vec<State>> {
    match item.get("h") {
        Some(AttributeValue::L(states)) => states
            .iter()
            .map(|st| decode_value("task run state", st))
            .collect(),
        Some(_) => Err(corrupt("task run", "history is not a list")),
        None => Ok(Vec::new()),
    }
}

fn has_state(item: &Item, id: Id) -> bool {
    matches!(item.get("hs"), Some(AttributeValue::Ss(ids)) if ids.contains(&id.to_string()))
}

/// What a write requires of the stored item.
#[derive(Clone, Copy)]
enum Expect {
    New,
    Version(i64),
    Exists,
}

/// One UpdateItem on a run: its attributes from `doc` when the document changes, and `state`
/// appended to the history when given (on condition it is not there yet).
fn run_update(id: Id, doc: Option<Item>, state: Option<&State>, expect: Expect) -> Result<Update> {
    let mut u = Update::new(task_run_key(id), "");
    let mut conditions = vec![match expect {
        Expect::New => "attribute_not_exists(pk)",
        Expect::Version(v) => {
            u = u.name("#v", "v").value(":expected", n(v));
            "#v = :expected"
        }
        Expect::Exists => "attribute_exists(pk)",
    }];
    let mut set = Vec::new();
    let mut tail = String::new();
    if let Some(doc) = doc {
        // A run without a state has no state time any more.
        if !doc.contains_key("ts") {
            tail.push_str(" REMOVE #ts");
            u = u.name("#ts", "ts");
        }
        let attributes = doc.into_iter().filter(|(k, _)| k != PK && k != SK);
        for (i, (name, value)) in attributes.enumerate() {
            set.push(format!("#a{i} = :a{i}"));
            u = u
                .name(&format!("#a{i}"), &name)
                .value(&format!(":a{i}"), value);
        }
    }
    if let Some(st) = state {
        set.push("#h = list_append(if_not_exists(#h, :none), :st)".to_owned());
        tail = format!(" ADD #hs :sids{tail}");
        conditions.push("NOT contains(#hs, :sid)");
        u = u
            .name("#h", "h")
            .name("#hs", "hs")
            .value(":none", AttributeValue::L(Vec::new()))
            .value(":st", AttributeValue::L(vec![encode(st)?]))
            .value(":sids", AttributeValue::Ss(vec![st.id.to_string()]))
            .value(":sid", s(st.id.to_string()));
    }
    u.expression = format!("SET {}{tail}", set.join(", "));
    Ok(u.condition(conditions.join(" AND ")))
}

fn distinct(ids: &[Id]) -> Vec<Id> {
    let mut seen = HashSet::new();
    ids.iter().copied().filter(|i| seen.insert(*i)).collect()
}

impl DynamoStore {
    /// Records one reported run; whether its document was written.
    async fn record_one(&self, incoming: &TaskRun) -> Result<bool> {
        for attempt in 0..RECORD_ATTEMPTS {
            if attempt > 0 {
                backoff(attempt).await;
            }
            let item = self.get(task_run_key(incoming.id)).await?;
            let stored: Option<TaskRun> = item.as_ref().map(|i| doc("task run", i)).transpose()?;
            let state = incoming
                .state
                .as_ref()
                .filter(|st| !item.as_ref().is_some_and(|i| has_state(i, st.id)));
            let Some(mut next) = recorded(stored.as_ref(), incoming) else {
                let Some(st) = state else {
                    return Ok(false);
                };
                let u = run_update(incoming.id, None, Some(st), Expect::Exists)?;
                return match self.update(u).await {
                    // A failed condition: the state was appended meanwhile (a resend).
                    Ok(_) | Err(StoreError::Conflict(_)) => Ok(false),
                    Err(e) => Err(e),
                };
            };
            let expect = match &stored {
                Some(old) => {
                    next.version += 1;
                    Expect::Version(old.version)
                }
                None => Expect::New,
            };
            let created = matches!(expect, Expect::New);
            match self
                .update(run_update(next.id, Some(run_item(&next)?), state, expect)?)
                .await
            {
                Ok(_) => {
                    if let (true, Some(flow_run)) = (created, next.flow_run_id) {
                        self.claim_natural_key(flow_run, &next).await?;
                    }
                    return Ok(true);
                }
                Err(StoreError::Conflict(_)) => {} // another writer got there first: read again
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Unavailable(
            format!(
                "task run {} kept changing while it was recorded",
                incoming.id
            )
            .into(),
        ))
    }

    /// Names a recorded run by its natural key unless another run holds it already (the
    /// recorder, like the SQLite adapter, keeps both), so an API create finds it.
    async fn claim_natural_key(&self, flow_run: Id, run: &TaskRun) -> Result<()> {
        let g = guard(natural_key(flow_run, run), run.id);
        match self
            .put(g, Some("attribute_not_exists(pk)"), None, None)
            .await
        {
            Ok(()) | Err(StoreError::Conflict(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Releases a natural key if it still names `id`.
    async fn release_natural_key(&self, natural: Item, id: Id) -> Result<()> {
        let values = HashMap::from([(":id".to_owned(), s(id.to_string()))]);
        self.delete(natural, Some("id = :id"), Some(values)).await?;
        Ok(())
    }

    /// The runs that may match `f`, through the narrowest read the filter allows; the caller
    /// applies the whole filter.
    async fn task_run_candidates(&self, f: &TaskRunFilter) -> Result<Vec<TaskRun>> {
        if let Some(ids) = &f.ids {
            let keys = distinct(ids).into_iter().map(task_run_key).collect();
            return self
                .batch_get(keys)
                .await?
                .iter()
                .map(|i| doc("task run", i))
                .collect();
        }
        if let Some(flow_runs) = &f.flow_run_ids {
            let mut runs = Vec::new();
            for flow_run in distinct(flow_runs) {
                runs.extend(
                    self.collection::<TaskRun>("task run", &partition(Some(flow_run)))
                        .await?,
                );
            }
            return Ok(runs);
        }
        if f.flow_run_is_null == Some(true) {
            return self.collection("task run", &partition(None)).await;
        }
        // Across flow runs: an administrative listing that reads every task run.
        let values = HashMap::from([(":p".to_owned(), s("TASKRUN#"))]);
        self.scan("begins_with(pk, :p)", values)
            .await?
            .iter()
            .map(|i| doc("task run", i))
            .collect()
    }

    async fn matching_task_runs(&self, f: &TaskRunFilter) -> Result<Vec<TaskRun>> {
        let mut runs = self.task_run_candidates(f).await?;
        runs.retain(|r| f.matches(r));
        Ok(runs)
    }
}

#[async_trait]
impl TaskRunStore for DynamoStore {
    async fn record_task_runs(&self, runs: &[TaskRun]) -> Result<usize> {
        // Reports of different runs are independent: each run's in order, several runs at once.
        let mut groups: Vec<Vec<TaskRun>> = Vec::new();
        let mut group_of: HashMap<Id, usize> = HashMap::new();
        for run in runs {
            let g = *group_of.entry(run.id).or_insert_with(|| {
                groups.push(Vec::new());
                groups.len() - 1
            });
            groups[g].push(run.clone());
        }
        let written: Vec<Result<usize>> = futures::stream::iter(groups)
            .map(|group| async move {
                let mut written = 0;
                for run in &group {
                    if self.record_one(run).await? {
                        written += 1;
                    }
                }
                Ok(written)
            })
            .buffer_unordered(RECORD_CONCURRENCY)
            .collect()
            .await;
        written.into_iter().sum()
    }

    async fn create_task_run(&self, run: &TaskRun) -> Result<(TaskRun, bool)> {
        let mut item = run_item(run)?;
        if let Some(st) = &run.state {
            item.insert("h".to_owned(), AttributeValue::L(vec![encode(st)?]));
            item.insert("hs".to_owned(), AttributeValue::Ss(vec![st.id.to_string()]));
        }
        let taken = || StoreError::Conflict(format!("task run {} exists", run.id));
        let Some(flow_run) = run.flow_run_id else {
            return match self
                .put(item, Some("attribute_not_exists(pk)"), None, None)
                .await
            {
                Ok(()) => Ok((run.clone(), true)),
                Err(StoreError::Conflict(_)) => Err(taken()),
                Err(e) => Err(e),
            };
        };
        let natural = natural_key(flow_run, run);
        let t = self.table();
        for _ in 0..3 {
            let items = vec![
                tx::put_new(t, guard(natural.clone(), run.id))?,
                tx::put_new(t, item.clone())?,
            ];
            match self.transact(items).await {
                Ok(()) => return Ok((run.clone(), true)),
                Err(StoreError::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
            match self.get(natural.clone()).await? {
                Some(held) => {
                    let holder = get_id("task run key", &held, "id")?;
                    if let Some(found) = self.read_task_run(holder).await? {
                        return Ok((found, false));
                    }
                    // Its run was deleted and the key left behind: release it, try again.
                    self.release_natural_key(natural.clone(), holder).await?;
                }
                None => {
                    if self.get(task_run_key(run.id)).await?.is_some() {
                        return Err(taken());
                    }
                }
            }
        }
        Err(StoreError::Unavailable(
            format!("the natural key of task run {} kept changing", run.id).into(),
        ))
    }

    async fn read_task_run(&self, id: Id) -> Result<Option<TaskRun>> {
        self.read_doc("task run", task_run_key(id)).await
    }

    async fn list_task_runs(
        &self,
        filter: &TaskRunFilter,
        sort: TaskRunSort,
        limit: Option<usize>,
        offset: usize,
    ) -> Result<Vec<TaskRun>> {
        let mut runs = self.matching_task_runs(filter).await?;
        sort_task_runs(&mut runs, sort);
        Ok(page(runs, limit, offset))
    }

    async fn count_task_runs(&self, filter: &TaskRunFilter) -> Result<usize> {
        Ok(self.matching_task_runs(filter).await?.len())
    }

    async fn update_task_run(&self, run: &TaskRun) -> Result<()> {
        let not_found = || StoreError::NotFound(format!("task run {}", run.id));
        let moved = || StoreError::Conflict(format!("task run {} changed meanwhile", run.id));
        let Some(item) = self.get(task_run_key(run.id)).await? else {
            return Err(not_found());
        };
        if doc::<TaskRun>("task run", &item)?.version != run.version {
            return Err(moved());
        }
        let next = TaskRun {
            version: run.version + 1,
            ..run.clone()
        };
        let state = next.state.as_ref().filter(|st| !has_state(&item, st.id));
        let u = run_update(
            next.id,
            Some(run_item(&next)?),
            state,
            Expect::Version(run.version),
        )?;
        match self.update(u).await {
            Ok(_) => Ok(()),
            Err(StoreError::Conflict(_)) => match self.get(task_run_key(run.id)).await? {
                Some(_) => Err(moved()),
                None => Err(not_found()),
            },
            Err(e) => Err(e),
        }
    }

    async fn delete_task_run(&self, id: Id) -> Result<bool> {
        let Some(run) = self.read_task_run(id).await? else {
            return Ok(false);
        };
        let gone = self.delete(task_run_key(id), None, None).await?;
        if let Some(flow_run) = run.flow_run_id {
            self.release_natural_key(natural_key(flow_run, &run), id)
                .await?;
        }
        Ok(gone)
    }

    async fn list_task_run_states(&self, task_run_id: Id) -> Result<Vec<State>> {
        let Some(item) = self.get(task_run_key(task_run_id)).await? else {
            return Ok(Vec::new());
        };
        let mut states = history(&item)?;
        states.sort_by_key(|st| (st.timestamp, st.id));
        Ok(states)
    }
}
