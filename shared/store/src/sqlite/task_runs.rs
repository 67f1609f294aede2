//! [`TaskRunStore`] on SQLite: `task_run` rows (the run as a JSON document beside the columns
//! its queries and conditions use) and `task_run_state`, the history, keyed by state id.
//! Filters beyond the flow run are the shared in-memory rule.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};
use sluice_core::domain::{Id, State, TaskRun};
use sluice_core::task_runs::recorded;

use super::SqliteStore;
use super::codec::{DbResult, Result, Where, id_text, opt_id, ts};
use crate::matching::sort_task_runs;
use crate::{StoreError, TaskRunFilter, TaskRunSort, TaskRunStore};

fn decode<T: serde::de::DeserializeOwned>(doc: &str) -> Result<T> {
    serde_json::from_str(doc).map_err(|e| StoreError::Corrupt(format!("task run document: {e}")))
}

fn encode<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(format!("task run document: {e}")))
}

fn read(conn: &Connection, id: Id) -> Result<Option<TaskRun>> {
    let doc: Option<String> = conn
        .prepare_cached("SELECT doc FROM task_run WHERE id = ?1")
        .db()?
        .query_row([id_text(id)], |r| r.get(0))
        .optional()
        .db()?;
    doc.as_deref().map(decode).transpose()
}

/// Inserts or replaces the row (no condition: callers decide).
fn put(conn: &Connection, run: &TaskRun) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO task_run (id, flow_run_id, task_key, dynamic_key, state_timestamp, version, doc)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (id) DO UPDATE SET flow_run_id = excluded.flow_run_id,
           task_key = excluded.task_key, dynamic_key = excluded.dynamic_key,
           state_timestamp = excluded.state_timestamp, version = excluded.version,
           doc = excluded.doc",
    )
    .db()?
    .execute(params![
        id_text(run.id),
        opt_id(run.flow_run_id),
        run.task_key,
        run.dynamic_key,
        run.state_timestamp().map(ts),
        run.version,
        encode(run)?,
    ])
    .db()?;
    Ok(())
}

/// Adds the run's state to its history unless a state with that id is there.
fn add_state(conn: &Connection, run: &TaskRun) -> Result<()> {
    if let Some(state) = &run.state {
        conn.prepare_cached(
            "INSERT INTO task_run_state (id, task_run_id, timestamp, doc) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (id) DO NOTHING",
        )
        .db()?
        .execute(params![
            id_text(state.id),
            id_text(run.id),
            ts(state.timestamp),
            encode(state)?
        ])
        .db()?;
    }
    Ok(())
}

fn select(conn: &Connection, filter: &TaskRunFilter) -> Result<Vec<TaskRun>> {
    let mut w = Where::default();
    w.any_of("id", filter.ids.as_deref());
    w.any_of("flow_run_id", filter.flow_run_ids.as_deref());
    let sql = format!("SELECT doc FROM task_run{}", w.sql());
    let mut stmt = conn.prepare_cached(&sql).db()?;
    let docs = stmt
        .query_map(params_from_iter(&w.params), |r| r.get::<_, String>(0))
        .db()?
        .collect::<std::result::Result<Vec<_>, _>>()
        .db()?;
    let mut out = Vec::with_capacity(docs.len());
    for doc in docs {
        let run: TaskRun = decode(&doc)?;
        if filter.matches(&run) {
            out.push(run);
        }
    }
    Ok(out)
}

#[async_trait]
impl TaskRunStore for SqliteStore {
    async fn record_task_runs(&self, runs: &[TaskRun]) -> Result<usize> {
        let runs = runs.to_vec();
        self.write(move |conn| {
            let mut written = 0;
            for incoming in &runs {
                let stored = read(conn, incoming.id)?;
                if let Some(mut next) = recorded(stored.as_ref(), incoming) {
                    if stored.is_some() {
                        next.version += 1;
                    }
                    put(conn, &next)?;
                    written += 1;
                }
                add_state(conn, incoming)?;
            }
            Ok(written)
        })
        .await
    }

    async fn create_task_run(&self, run: &TaskRun) -> Result<(TaskRun, bool)> {
        let run = run.clone();
        self.write(move |conn| {
            if let Some(flow_run_id) = run.flow_run_id {
                let existing: Option<String> = conn
                    .prepare_cached(
                        "SELECT doc FROM task_run
                         WHERE flow_run_id = ?1 AND task_key = ?2 AND dynamic_key = ?3
                         ORDER BY id LIMIT 1",
                    )
                    .db()?
                    .query_row(
                        params![id_text(flow_run_id), run.task_key, run.dynamic_key],
                        |r| r.get(0),
                    )
                    .optional()
                    .db()?;
                if let Some(doc) = existing {
                    return Ok((decode(&doc)?, false));
                }
            }
            if read(conn, run.id)?.is_some() {
                return Err(StoreError::Conflict(format!("task run {} exists", run.id)));
            }
            put(conn, &run)?;
            add_state(conn, &run)?;
            Ok((run, true))
        })
        .await
    }

    async fn read_task_run(&self, id: Id) -> Result<Option<TaskRun>> {
        self.read(move |conn| read(conn, id)).await
    }

    async fn list_task_runs(
        &self,
        filter: &TaskRunFilter,
        sort: TaskRunSort,
        limit: Option<usize>,
        offset: usize,
    ) -> Result<Vec<TaskRun>> {
        let filter = filter.clone();
        self.read(move |conn| {
            let mut runs = select(conn, &filter)?;
            sort_task_runs(&mut runs, sort);
            Ok(runs
                .into_iter()
                .skip(offset)
                .take(limit.unwrap_or(usize::MAX))
                .collect())
        })
        .await
    }

    async fn count_task_runs(&self, filter: &TaskRunFilter) -> Result<usize> {
        let filter = filter.clone();
        self.read(move |conn| Ok(select(conn, &filter)?.len()))
            .await
    }

    async fn update_task_run(&self, run: &TaskRun) -> Result<()> {
        let run = run.clone();
        self.write(move |conn| {
            let stored = read(conn, run.id)?
                .ok_or_else(|| StoreError::NotFound(format!("task run {}", run.id)))?;
            if stored.version != run.version {
                return Err(StoreError::Conflict(format!(
                    "task run {} changed meanwhile",
                    run.id
                )));
            }
            let next = TaskRun {
                version: run.version + 1,
                ..run
            };
            put(conn, &next)?;
            add_state(conn, &next)
        })
        .await
    }

    async fn delete_task_run(&self, id: Id) -> Result<bool> {
        self.write(move |conn| {
            let n = conn
                .execute("DELETE FROM task_run WHERE id = ?1", [id_text(id)])
                .db()?;
            Ok(n == 1)
        })
        .await
    }

    async fn list_task_run_states(&self, task_run_id: Id) -> Result<Vec<State>> {
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT doc FROM task_run_state WHERE task_run_id = ?1 ORDER BY timestamp, id",
                )
                .db()?;
            let docs = stmt
                .query_map([id_text(task_run_id)], |r| r.get::<_, String>(0))
                .db()?
                .collect::<std::result::Result<Vec<_>, _>>()
                .db()?;
            docs.iter().map(|d| decode(d)).collect()
        })
        .await
    }
}
