//! [`PoolStore`] on SQLite: the `work_pool`, `work_queue` and `worker` tables and their row
//! mappings.

use async_trait::async_trait;
use rusqlite::types::Value;
use rusqlite::{Connection, params_from_iter};
use sluice_core::domain::{
    Id, PoolStatus, QueueStatus, Timestamp, WorkPool, WorkQueue, Worker, WorkerStatus,
};

use super::SqliteStore;
use super::codec::{
    Cols, Columns, DbResult, Result, Where, count, exists, id_text, id_value, insert_sql, json,
    opt_id, opt_text, opt_ts, page, query_all, query_opt, set_clause, text, ts_value, values_of,
    write_err,
};
use crate::{PoolStore, StoreError, WorkPoolFilter, WorkerFilter};

fn pool_columns(p: &WorkPool) -> Result<Columns> {
    Ok(vec![
        ("id", id_value(p.id)),
        ("created", ts_value(p.created)),
        ("updated", ts_value(p.updated)),
        ("name", text(&p.name)),
        ("description", opt_text(p.description.as_deref())),
        ("type", text(&p.pool_type)),
        ("base_job_template", json(&p.base_job_template)?),
        ("is_paused", Value::from(p.is_paused)),
        ("concurrency_limit", Value::from(p.concurrency_limit)),
        ("status", opt_text(p.status.map(PoolStatus::as_str))),
        ("default_queue_id", opt_id(p.default_queue_id)),
        ("storage_configuration", json(&p.storage_configuration)?),
    ])
}

fn pool_from_row(r: &Cols<'_, '_>) -> Result<WorkPool> {
    Ok(WorkPool {
        id: r.id("id")?,
        created: r.ts("created")?,
        updated: r.ts("updated")?,
        name: r.string("name")?,
        description: r.opt_string("description")?,
        pool_type: r.string("type")?,
        base_job_template: r.json("base_job_template")?,
        is_paused: r.bool("is_paused")?,
        concurrency_limit: r.opt_i64("concurrency_limit")?,
        status: match r.opt_string("status")? {
            Some(_) => Some(r.parsed("status", PoolStatus::parse)?),
            None => None,
        },
        default_queue_id: r.opt_id("default_queue_id")?,
        storage_configuration: r.json("storage_configuration")?,
    })
}

fn queue_columns(q: &WorkQueue) -> Columns {
    vec![
        ("id", id_value(q.id)),
        ("created", ts_value(q.created)),
        ("updated", ts_value(q.updated)),
        ("name", text(&q.name)),
        ("description", text(&q.description)),
        ("is_paused", Value::from(q.is_paused)),
        ("concurrency_limit", Value::from(q.concurrency_limit)),
        ("priority", Value::from(q.priority)),
        ("work_pool_id", id_value(q.work_pool_id)),
        ("last_polled", opt_ts(q.last_polled)),
        ("status", text(q.status.as_str())),
    ]
}

fn queue_from_row(r: &Cols<'_, '_>) -> Result<WorkQueue> {
    Ok(WorkQueue {
        id: r.id("id")?,
        created: r.ts("created")?,
        updated: r.ts("updated")?,
        name: r.string("name")?,
        description: r.string("description")?,
        is_paused: r.bool("is_paused")?,
        concurrency_limit: r.opt_i64("concurrency_limit")?,
        priority: r.i64("priority")?,
        work_pool_id: r.id("work_pool_id")?,
        last_polled: r.opt_ts("last_polled")?,
        status: r.parsed("status", PoolStatus::parse)?,
    })
}

fn worker_from_row(r: &Cols<'_, '_>) -> Result<Worker> {
    Ok(Worker {
        id: r.id("id")?,
        created: r.ts("created")?,
        updated: r.ts("updated")?,
        name: r.string("name")?,
        work_pool_id: r.id("work_pool_id")?,
        last_heartbeat_time: r.ts("last_heartbeat_time")?,
        heartbeat_interval_seconds: r.opt_i64("heartbeat_interval_seconds")?,
        status: r.parsed("status", WorkerStatus::parse)?,
    })
}

fn insert_queue(conn: &Connection, q: &WorkQueue) -> Result<()> {
    let cols = queue_columns(q);
    conn.prepare_cached(&insert_sql("work_queue", &cols, ""))
        .db()?
        .execute(params_from_iter(values_of(&cols)))
        .map_err(|e| {
            write_err(
                e,
                format!("work queue {:?} already exists in its pool", q.name),
                Some(format!("work pool {}", q.work_pool_id)),
            )
        })?;
    Ok(())
}

/// Queues' deployments and runs keep their queue names but lose the ids. Runs' versions move so a
/// compare-and-set computed before the deletion cannot write the stale id back.
fn detach_queues(conn: &Connection, queues_sql: &str, id: Id) -> Result<()> {
    let id = id_text(id);
    conn.execute(
        &format!(
            "UPDATE deployment SET work_queue_id = NULL WHERE work_queue_id IN ({queues_sql})"
        ),
        [&id],
    )
    .db()?;
    conn.execute(
        &format!(
            "UPDATE flow_run SET work_queue_id = NULL, version = version + 1 \
             WHERE work_queue_id IN ({queues_sql})"
        ),
        [&id],
    )
    .db()?;
    Ok(())
}

fn transition(conn: &Connection, table: &str, id: Id, from: &Value, to: &str) -> Result<bool> {
    let changed = conn
        .execute(
            &format!("UPDATE {table} SET status = ?1 WHERE id = ?2 AND status IS ?3"),
            rusqlite::params![to, id_text(id), from],
        )
        .db()?;
    if changed == 1 {
        return Ok(true);
    }
    if exists(conn, table, id)? {
        Ok(false)
    } else {
        Err(StoreError::NotFound(format!(
            "{} {id}",
            table.replace('_', " ")
        )))
    }
}

fn pool_where(filter: &WorkPoolFilter) -> Where {
    let mut w = Where::default();
    w.any_of("id", filter.ids.as_deref());
    w.any_of("name", filter.names.as_deref());
    w.any_of("type", filter.types.as_deref());
    w
}

#[async_trait]
impl PoolStore for SqliteStore {
    async fn create_work_pool(&self, pool: &WorkPool, default_queue: &WorkQueue) -> Result<()> {
        let cols = pool_columns(pool)?;
        let (name, queue) = (pool.name.clone(), default_queue.clone());
        self.write(move |conn| {
            conn.prepare_cached(&insert_sql("work_pool", &cols, ""))
                .db()?
                .execute(params_from_iter(values_of(&cols)))
                .map_err(|e| write_err(e, format!("work pool {name:?} already exists"), None))?;
            insert_queue(conn, &queue)
        })
        .await
    }

    async fn read_work_pool(&self, id: Id) -> Result<Option<WorkPool>> {
        self.read(move |conn| {
            query_opt(
                conn,
                "SELECT * FROM work_pool WHERE id = ?1",
                [id_text(id)],
                pool_from_row,
            )
        })
        .await
    }

    async fn read_work_pool_by_name(&self, name: &str) -> Result<Option<WorkPool>> {
        let name = name.to_owned();
        self.read(move |conn| {
            query_opt(
                conn,
                "SELECT * FROM work_pool WHERE name = ?1",
                [name],
                pool_from_row,
            )
        })
        .await
    }

    async fn list_work_pools(
        &self,
        filter: &WorkPoolFilter,
        limit: Option<usize>,
        offset: usize,
    ) -> Result<Vec<WorkPool>> {
        let w = pool_where(filter);
        self.read(move |conn| {
            let sql = format!(
                "SELECT * FROM work_pool{} ORDER BY name{}",
                w.sql(),
                page(limit, offset)
            );
            query_all(conn, &sql, params_from_iter(&w.params), pool_from_row)
        })
        .await
    }

    async fn count_work_pools(&self, filter: &WorkPoolFilter) -> Result<usize> {
        let w = pool_where(filter);
        self.read(move |conn| count(conn, "work_pool", &w)).await
    }

    async fn update_work_pool(&self, pool: &WorkPool) -> Result<()> {
        let cols = pool_columns(pool)?;
        let id = pool.id;
        self.write(move |conn| {
            let (set, mut values) = set_clause(&cols, &["id", "created", "name"]);
            values.push(id_value(id));
            let sql = format!("UPDATE work_pool {set} WHERE id = ?{}", values.len());
            match conn.execute(&sql, params_from_iter(&values)).db()? {
                0 => Err(StoreError::NotFound(format!("work pool {id}"))),
                _ => Ok(()),
            }
        })
        .await
    }

    async fn transition_work_pool_status(
        &self,
        id: Id,
        from: Option<PoolStatus>,
        to: PoolStatus,
    ) -> Result<bool> {
        let from = opt_text(from.map(PoolStatus::as_str));
        self.write(move |conn| transition(conn, "work_pool", id, &from, to.as_str()))
            .await
    }

    async fn delete_work_pool(&self, id: Id) -> Result<bool> {
        self.write(move |conn| {
            detach_queues(
                conn,
                "SELECT id FROM work_queue WHERE work_pool_id = ?1",
                id,
            )?;
            conn.execute(
                "UPDATE flow_run SET work_pool_id = NULL, version = version + 1 \
                 WHERE work_pool_id = ?1",
                [id_text(id)],
            )
            .db()?;
            // A deployment reaches its pool through its queue; with both gone it has no pool
            // (Prefect's derived `work_pool_name` becomes null the same way).
            conn.execute(
                "UPDATE deployment SET work_pool_name = NULL \
                 WHERE work_pool_name = (SELECT name FROM work_pool WHERE id = ?1)",
                [id_text(id)],
            )
            .db()?;
            // Queues and workers go with the pool (ON DELETE CASCADE).
            let n = conn
                .execute("DELETE FROM work_pool WHERE id = ?1", [id_text(id)])
                .db()?;
            Ok(n == 1)
        })
        .await
    }

    async fn create_work_queue(&self, queue: &WorkQueue) -> Result<()> {
        let queue = queue.clone();
        self.write(move |conn| insert_queue(conn, &queue)).await
    }

    async fn read_work_queue(&self, id: Id) -> Result<Option<WorkQueue>> {
        self.read(move |conn| {
            query_opt(
                conn,
                "SELECT * FROM work_queue WHERE id = ?1",
                [id_text(id)],
                queue_from_row,
            )
        })
        .await
    }

    async fn read_work_queue_by_name(&self, pool_id: Id, name: &str) -> Result<Option<WorkQueue>> {
        let name = name.to_owned();
        self.read(move |conn| {
            query_opt(
                conn,
                "SELECT * FROM work_queue WHERE work_pool_id = ?1 AND name = ?2",
                [id_text(pool_id), name],
                queue_from_row,
            )
        })
        .await
    }

    async fn list_work_queues(&self, pool_id: Id) -> Result<Vec<WorkQueue>> {
        self.read(move |conn| {
            query_all(
                conn,
                "SELECT * FROM work_queue WHERE work_pool_id = ?1 ORDER BY priority, name",
                [id_text(pool_id)],
                queue_from_row,
            )
        })
        .await
    }

    async fn update_work_queues(&self, queues: &[WorkQueue]) -> Result<()> {
        let queues = queues.to_vec();
        self.write(move |conn| {
            // Park every name first so renames within the batch (a <-> b) cannot collide with
            // each other; a collision with a queue outside the batch still fails below.
            for q in &queues {
                let n = conn
                    .prepare_cached("UPDATE work_queue SET name = '~renaming~' || id WHERE id = ?1")
                    .db()?
                    .execute([id_text(q.id)])
                    .db()?;
                if n == 0 {
                    return Err(StoreError::NotFound(format!("work queue {}", q.id)));
                }
            }
            for q in &queues {
                let cols = queue_columns(q);
                let (set, mut values) = set_clause(&cols, &["id", "created", "work_pool_id"]);
                values.push(id_value(q.id));
                let sql = format!("UPDATE work_queue {set} WHERE id = ?{}", values.len());
                conn.prepare_cached(&sql)
                    .db()?
                    .execute(params_from_iter(&values))
                    .map_err(|e| {
                        write_err(
                            e,
                            format!("work queue {:?} already exists in its pool", q.name),
                            None,
                        )
                    })?;
            }
            Ok(())
        })
        .await
    }

    async fn transition_work_queue_status(
        &self,
        id: Id,
        from: QueueStatus,
        to: QueueStatus,
    ) -> Result<bool> {
        self.write(move |conn| {
            transition(conn, "work_queue", id, &text(from.as_str()), to.as_str())
        })
        .await
    }

    async fn touch_work_queues(&self, ids: &[Id], at: Timestamp) -> Result<()> {
        let mut w = Where::default();
        w.any_of("id", Some(ids));
        self.write(move |conn| {
            let sql = format!("UPDATE work_queue SET last_polled = ?{}", w.sql());
            let mut params = vec![ts_value(at)];
            params.extend(w.params);
            conn.execute(&sql, params_from_iter(&params)).db()?;
            Ok(())
        })
        .await
    }

    async fn delete_work_queue(&self, id: Id) -> Result<bool> {
        self.write(move |conn| {
            detach_queues(conn, "SELECT ?1", id)?;
            let n = conn
                .execute("DELETE FROM work_queue WHERE id = ?1", [id_text(id)])
                .db()?;
            Ok(n == 1)
        })
        .await
    }

    async fn record_worker_heartbeat(
        &self,
        pool_id: Id,
        name: &str,
        heartbeat_interval_seconds: Option<i64>,
        at: Timestamp,
    ) -> Result<Worker> {
        let name = name.to_owned();
        self.write(move |conn| {
            let at = ts_value(at);
            let params = rusqlite::params![
                id_text(Id::now_v7()),
                at,
                name,
                id_text(pool_id),
                heartbeat_interval_seconds,
                WorkerStatus::Online.as_str(),
            ];
            let mut stmt = conn
                .prepare_cached(
                    "INSERT INTO worker (id, created, updated, name, work_pool_id, \
                     last_heartbeat_time, heartbeat_interval_seconds, status) \
                     VALUES (?1, ?2, ?2, ?3, ?4, ?2, ?5, ?6) \
                     ON CONFLICT (work_pool_id, name) DO UPDATE SET \
                     updated = excluded.updated, \
                     last_heartbeat_time = excluded.last_heartbeat_time, \
                     heartbeat_interval_seconds = \
                       coalesce(excluded.heartbeat_interval_seconds, heartbeat_interval_seconds), \
                     status = excluded.status \
                     RETURNING *",
                )
                .db()?;
            let mut rows = stmt
                .query(params)
                .map_err(|e| write_err(e, String::new(), Some(format!("work pool {pool_id}"))))?;
            let row = rows
                .next()
                .map_err(|e| write_err(e, String::new(), Some(format!("work pool {pool_id}"))))?
                .ok_or_else(|| StoreError::Corrupt("heartbeat upsert returned no row".into()))?;
            worker_from_row(&Cols(row))
        })
        .await
    }

    async fn list_workers(
        &self,
        pool_id: Option<Id>,
        filter: &WorkerFilter,
        limit: Option<usize>,
        offset: usize,
    ) -> Result<Vec<Worker>> {
        let mut w = Where::default();
        w.eq("work_pool_id", pool_id.map(id_value));
        let statuses = |s: &Option<Vec<WorkerStatus>>| {
            s.as_ref()
                .map(|s| s.iter().map(|s| s.as_str()).collect::<Vec<_>>())
        };
        w.any_of("status", statuses(&filter.statuses).as_deref());
        w.none_of("status", statuses(&filter.not_statuses).as_deref());
        w.cmp_ts("last_heartbeat_time", "<=", filter.last_heartbeat_before);
        w.cmp_ts("last_heartbeat_time", ">=", filter.last_heartbeat_after);
        self.read(move |conn| {
            let sql = format!(
                "SELECT * FROM worker{} ORDER BY last_heartbeat_time DESC, name, id{}",
                w.sql(),
                page(limit, offset)
            );
            query_all(conn, &sql, params_from_iter(&w.params), worker_from_row)
        })
        .await
    }

    async fn mark_worker_offline(&self, id: Id, seen_heartbeat: Timestamp) -> Result<bool> {
        self.write(move |conn| {
            let n = conn
                .execute(
                    "UPDATE worker SET status = ?1 \
                     WHERE id = ?2 AND last_heartbeat_time = ?3 AND status <> ?1",
                    rusqlite::params![
                        WorkerStatus::Offline.as_str(),
                        id_text(id),
                        ts_value(seen_heartbeat)
                    ],
                )
                .db()?;
            if n == 1 {
                Ok(true)
            } else if exists(conn, "worker", id)? {
                Ok(false)
            } else {
                Err(StoreError::NotFound(format!("worker {id}")))
            }
        })
        .await
    }

    async fn delete_worker(&self, pool_id: Id, name: &str) -> Result<bool> {
        let name = name.to_owned();
        self.write(move |conn| {
            let n = conn
                .execute(
                    "DELETE FROM worker WHERE work_pool_id = ?1 AND name = ?2",
                    rusqlite::params![id_text(pool_id), name],
                )
                .db()?;
            Ok(n == 1)
        })
        .await
    }
}
