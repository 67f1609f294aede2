//! [`RunStore`] on SQLite: the `flow_run` table (with its current state inlined and a `version`
//! for compare-and-set) and the `flow_run_state` history, with their row mappings.

use std::collections::HashMap;

use async_trait::async_trait;
use rusqlite::types::Value;
use rusqlite::{Connection, params_from_iter};
use serde_json::json;
use sluice_core::domain::{CreatedBy, FlowRun, Id, State, StateType, Timestamp};

use super::SqliteStore;
use super::codec::{
    Cols, Columns, DbResult, Result, Where, count, exists, id_text, id_value, insert_sql, json,
    opt_id, opt_json, opt_text, opt_ts, page, query_all, query_opt, set_clause, text, ts_value,
    values_of, write_err,
};
use super::run_filter::{run_order, run_where};
use crate::{Created, FlowRunFilter, FlowRunSort, RunStore, StoreError, Versioned};

/// Columns a compare-and-set never rewrites: identity and the idempotency key.
const IMMUTABLE: &[&str] = &["id", "created", "flow_id", "idempotency_key"];
/// The inlined current state, left alone by `update_flow_run`.
const STATE_COLUMNS: &[&str] = &[
    "state_id",
    "state_type",
    "state_name",
    "state_timestamp",
    "state_message",
    "state_data",
    "state_details",
];

fn created_by_json(c: &CreatedBy) -> serde_json::Value {
    json!({ "id": c.id, "type": c.created_by_type, "display_value": c.display_value })
}

fn created_by_from_json(v: &serde_json::Value) -> Result<CreatedBy> {
    let field = |k: &str| {
        v.get(k)
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
    };
    let id = match field("id") {
        Some(s) => Some(
            Id::parse_str(&s).map_err(|e| StoreError::Corrupt(format!("created_by.id: {e}")))?,
        ),
        None => None,
    };
    Ok(CreatedBy {
        id,
        created_by_type: field("type"),
        display_value: field("display_value"),
    })
}

fn run_columns(r: &FlowRun) -> Result<Columns> {
    let s = r.state.as_ref();
    Ok(vec![
        ("id", id_value(r.id)),
        ("created", ts_value(r.created)),
        ("updated", ts_value(r.updated)),
        ("name", text(&r.name)),
        ("flow_id", id_value(r.flow_id)),
        ("deployment_id", opt_id(r.deployment_id)),
        (
            "deployment_version",
            opt_text(r.deployment_version.as_deref()),
        ),
        ("work_queue_id", opt_id(r.work_queue_id)),
        ("work_queue_name", opt_text(r.work_queue_name.as_deref())),
        ("work_pool_id", opt_id(r.work_pool_id)),
        ("work_pool_name", opt_text(r.work_pool_name.as_deref())),
        ("flow_version", opt_text(r.flow_version.as_deref())),
        ("parameters", json(&r.parameters)?),
        ("idempotency_key", opt_text(r.idempotency_key.as_deref())),
        ("context", json(&r.context)?),
        ("empirical_policy", json(&r.empirical_policy)?),
        ("tags", json(&r.tags)?),
        ("labels", json(&r.labels)?),
        ("parent_task_run_id", opt_id(r.parent_task_run_id)),
        ("state_id", opt_id(s.map(|s| s.id))),
        ("state_type", opt_text(s.map(|s| s.state_type.as_str()))),
        ("state_name", opt_text(s.map(|s| s.name.as_str()))),
        ("state_timestamp", opt_ts(s.map(|s| s.timestamp))),
        (
            "state_message",
            opt_text(s.and_then(|s| s.message.as_deref())),
        ),
        ("state_data", opt_json(s.map(|s| &s.data))?),
        ("state_details", opt_json(s.map(|s| &s.state_details))?),
        ("run_count", Value::from(r.run_count)),
        ("expected_start_time", opt_ts(r.expected_start_time)),
        (
            "next_scheduled_start_time",
            opt_ts(r.next_scheduled_start_time),
        ),
        ("start_time", opt_ts(r.start_time)),
        ("end_time", opt_ts(r.end_time)),
        ("total_run_time", Value::from(r.total_run_time)),
        ("auto_scheduled", Value::from(r.auto_scheduled)),
        (
            "infrastructure_document_id",
            opt_id(r.infrastructure_document_id),
        ),
        (
            "infrastructure_pid",
            opt_text(r.infrastructure_pid.as_deref()),
        ),
        (
            "created_by",
            opt_json(r.created_by.as_ref().map(created_by_json).as_ref())?,
        ),
        (
            "created_by_id",
            opt_id(r.created_by.as_ref().and_then(|c| c.id)),
        ),
        ("job_variables", opt_json(r.job_variables.as_ref())?),
    ])
}

fn run_from_row(r: &Cols<'_, '_>) -> Result<FlowRun> {
    let state = match r.opt_id("state_id")? {
        Some(id) => Some(State {
            id,
            state_type: r.parsed("state_type", StateType::parse)?,
            name: r.string("state_name")?,
            timestamp: r.ts("state_timestamp")?,
            message: r.opt_string("state_message")?,
            data: r.json("state_data")?,
            state_details: r.map("state_details")?,
        }),
        None => None,
    };
    let created_by = match r.opt_json::<serde_json::Value>("created_by")? {
        Some(v) => Some(created_by_from_json(&v)?),
        None => None,
    };
    Ok(FlowRun {
        id: r.id("id")?,
        created: r.ts("created")?,
        updated: r.ts("updated")?,
        name: r.string("name")?,
        flow_id: r.id("flow_id")?,
        deployment_id: r.opt_id("deployment_id")?,
        deployment_version: r.opt_string("deployment_version")?,
        work_queue_id: r.opt_id("work_queue_id")?,
        work_queue_name: r.opt_string("work_queue_name")?,
        work_pool_id: r.opt_id("work_pool_id")?,
        work_pool_name: r.opt_string("work_pool_name")?,
        flow_version: r.opt_string("flow_version")?,
        parameters: r.map("parameters")?,
        idempotency_key: r.opt_string("idempotency_key")?,
        context: r.map("context")?,
        empirical_policy: r.map("empirical_policy")?,
        tags: r.json("tags")?,
        labels: r.map("labels")?,
        parent_task_run_id: r.opt_id("parent_task_run_id")?,
        state,
        run_count: r.i64("run_count")?,
        expected_start_time: r.opt_ts("expected_start_time")?,
        next_scheduled_start_time: r.opt_ts("next_scheduled_start_time")?,
        start_time: r.opt_ts("start_time")?,
        end_time: r.opt_ts("end_time")?,
        total_run_time: r.f64("total_run_time")?,
        auto_scheduled: r.bool("auto_scheduled")?,
        infrastructure_document_id: r.opt_id("infrastructure_document_id")?,
        infrastructure_pid: r.opt_string("infrastructure_pid")?,
        created_by,
        job_variables: r.opt_json("job_variables")?,
    })
}

fn versioned_from_row(r: &Cols<'_, '_>) -> Result<Versioned<FlowRun>> {
    let version = r.i64("version")?;
    Ok(Versioned {
        value: run_from_row(r)?,
        version: u64::try_from(version)
            .map_err(|e| StoreError::Corrupt(format!("version {version}: {e}")))?,
    })
}

fn state_from_row(r: &Cols<'_, '_>) -> Result<State> {
    Ok(State {
        id: r.id("id")?,
        state_type: r.parsed("type", StateType::parse)?,
        name: r.string("name")?,
        timestamp: r.ts("timestamp")?,
        message: r.opt_string("message")?,
        data: r.json("data")?,
        state_details: r.map("state_details")?,
    })
}

fn append_state(conn: &Connection, run_id: Id, s: &State) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO flow_run_state \
         (id, flow_run_id, type, name, timestamp, message, data, state_details) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )
    .db()?
    .execute(params_from_iter([
        id_value(s.id),
        id_value(run_id),
        text(s.state_type.as_str()),
        text(&s.name),
        ts_value(s.timestamp),
        opt_text(s.message.as_deref()),
        json(&s.data)?,
        json(&s.state_details)?,
    ]))
    .db()?;
    Ok(())
}

/// Inserts the run (version 1) and its first state unless a run with its id or its
/// `(flow_id, idempotency_key)` exists. Returns whether it was inserted.
fn insert_run(conn: &Connection, run: &FlowRun) -> Result<bool> {
    let mut cols = run_columns(run)?;
    cols.push(("version", Value::from(1_i64)));
    let n = conn
        .prepare_cached(&insert_sql("flow_run", &cols, "ON CONFLICT DO NOTHING"))
        .db()?
        .execute(params_from_iter(values_of(&cols)))
        .map_err(|e| {
            write_err(
                e,
                format!("flow run {}", run.id),
                Some(format!("flow {}", run.flow_id)),
            )
        })?;
    if let (1, Some(state)) = (n, &run.state) {
        append_state(conn, run.id, state)?;
    }
    Ok(n == 1)
}

fn read_run(conn: &Connection, id: Id) -> Result<Option<Versioned<FlowRun>>> {
    query_opt(
        conn,
        "SELECT * FROM flow_run WHERE id = ?1",
        [id_text(id)],
        versioned_from_row,
    )
}

/// `UPDATE flow_run SET <columns not in skip>, version = version + 1 WHERE id AND version`;
/// tells a lost race (`Conflict`) from a missing run (`NotFound`).
fn compare_and_set(conn: &Connection, run: &FlowRun, expected: u64, skip: &[&str]) -> Result<u64> {
    let cols = run_columns(run)?;
    let (set, mut values) = set_clause(&cols, skip);
    let expected_i = i64::try_from(expected).map_err(|e| StoreError::Conflict(e.to_string()))?;
    values.push(id_value(run.id));
    values.push(Value::from(expected_i));
    let sql = format!(
        "UPDATE flow_run {set}, version = version + 1 WHERE id = ?{} AND version = ?{}",
        values.len() - 1,
        values.len()
    );
    let n = conn
        .prepare_cached(&sql)
        .db()?
        .execute(params_from_iter(&values))
        .db()?;
    if n == 1 {
        Ok(expected + 1)
    } else if exists(conn, "flow_run", run.id)? {
        Err(StoreError::Conflict(format!(
            "flow run {} is no longer at version {expected}",
            run.id
        )))
    } else {
        Err(StoreError::NotFound(format!("flow run {}", run.id)))
    }
}

#[async_trait]
impl RunStore for SqliteStore {
    async fn create_flow_run(&self, run: &FlowRun) -> Result<Created<FlowRun>> {
        let run = run.clone();
        self.write(move |conn| {
            if insert_run(conn, &run)? {
                let stored = read_run(conn, run.id)?
                    .ok_or_else(|| StoreError::Corrupt(format!("flow run {} vanished", run.id)))?;
                return Ok(Created {
                    value: stored.value,
                    created: true,
                });
            }
            let existing = match &run.idempotency_key {
                Some(key) => query_opt(
                    conn,
                    "SELECT * FROM flow_run WHERE flow_id = ?1 AND idempotency_key = ?2",
                    [id_text(run.flow_id), key.clone()],
                    run_from_row,
                )?,
                None => None,
            };
            // Not inserted and no run under the key: the id itself was taken.
            existing
                .map(|value| Created {
                    value,
                    created: false,
                })
                .ok_or_else(|| StoreError::Conflict(format!("flow run id {} is taken", run.id)))
        })
        .await
    }

    async fn create_flow_runs(&self, runs: &[FlowRun]) -> Result<Vec<Id>> {
        let runs = runs.to_vec();
        self.write(move |conn| {
            let mut created = Vec::new();
            for run in &runs {
                if insert_run(conn, run)? {
                    created.push(run.id);
                }
            }
            Ok(created)
        })
        .await
    }

    async fn read_flow_run(&self, id: Id) -> Result<Option<Versioned<FlowRun>>> {
        self.read(move |conn| read_run(conn, id)).await
    }

    async fn list_flow_runs(
        &self,
        filter: &FlowRunFilter,
        sort: FlowRunSort,
        limit: Option<usize>,
        offset: usize,
    ) -> Result<Vec<FlowRun>> {
        let w = run_where(filter);
        self.read(move |conn| {
            let sql = format!(
                "SELECT * FROM flow_run{} ORDER BY {}{}",
                w.sql(),
                run_order(sort),
                page(limit, offset)
            );
            query_all(conn, &sql, params_from_iter(&w.params), run_from_row)
        })
        .await
    }

    async fn count_flow_runs(&self, filter: &FlowRunFilter) -> Result<usize> {
        let w = run_where(filter);
        self.read(move |conn| count(conn, "flow_run", &w)).await
    }

    async fn commit_flow_run_state(&self, run: &FlowRun, expected_version: u64) -> Result<u64> {
        let run = run.clone();
        self.write(move |conn| {
            let version = compare_and_set(conn, &run, expected_version, IMMUTABLE)?;
            // Only a landed write reaches here, so history grows only on success.
            if let Some(state) = &run.state {
                append_state(conn, run.id, state)?;
            }
            Ok(version)
        })
        .await
    }

    async fn update_flow_run(&self, run: &FlowRun, expected_version: u64) -> Result<u64> {
        let run = run.clone();
        self.write(move |conn| {
            let skip: Vec<&str> = IMMUTABLE.iter().chain(STATE_COLUMNS).copied().collect();
            compare_and_set(conn, &run, expected_version, &skip)
        })
        .await
    }

    async fn read_flow_run_states(&self, run_id: Id) -> Result<Vec<State>> {
        self.read(move |conn| {
            query_all(
                conn,
                "SELECT * FROM flow_run_state WHERE flow_run_id = ?1 ORDER BY seq",
                [id_text(run_id)],
                state_from_row,
            )
        })
        .await
    }

    async fn delete_flow_run(&self, id: Id) -> Result<bool> {
        self.write(move |conn| {
            let n = conn
                .execute("DELETE FROM flow_run WHERE id = ?1", [id_text(id)])
                .db()?;
            Ok(n == 1)
        })
        .await
    }

    async fn delete_unstarted_auto_scheduled_runs(
        &self,
        deployment_id: Id,
        from: Option<Timestamp>,
    ) -> Result<Vec<Id>> {
        self.write(move |conn| {
            // One statement, so every condition is checked at the moment of deletion.
            let mut w = Where::default();
            w.eq("deployment_id", Some(id_value(deployment_id)));
            w.push("auto_scheduled = 1", []);
            w.push("state_type = ?", [text(StateType::Scheduled.as_str())]);
            w.push("run_count = 0", []);
            w.push("coalesce(state_name, '') <> 'AwaitingConcurrencySlot'", []);
            w.cmp_ts("next_scheduled_start_time", ">=", from);
            let sql = format!("DELETE FROM flow_run{} RETURNING id", w.sql());
            query_all(conn, &sql, params_from_iter(&w.params), |r| r.id("id"))
        })
        .await
    }

    async fn count_runs_by_queue(
        &self,
        queue_ids: &[Id],
        state_types: &[StateType],
    ) -> Result<HashMap<Id, usize>> {
        let mut w = Where::default();
        w.any_of("work_queue_id", Some(queue_ids));
        let types: Vec<&str> = state_types.iter().map(|t| t.as_str()).collect();
        w.any_of("state_type", Some(&types));
        let queue_ids = queue_ids.to_vec();
        self.read(move |conn| {
            let sql = format!(
                "SELECT work_queue_id, COUNT(*) AS n FROM flow_run{} GROUP BY work_queue_id",
                w.sql()
            );
            // Every asked-for queue gets an entry, zero when it has no such runs.
            let mut counts: HashMap<Id, usize> = queue_ids.into_iter().map(|q| (q, 0)).collect();
            for (queue, n) in query_all(conn, &sql, params_from_iter(&w.params), |r| {
                Ok((r.id("work_queue_id")?, r.i64("n")?))
            })? {
                let n = usize::try_from(n).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                counts.insert(queue, n);
            }
            Ok(counts)
        })
        .await
    }
}
