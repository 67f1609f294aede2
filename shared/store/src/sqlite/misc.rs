//! [`VariableStore`], [`BlockStore`] and [`LogStore`] on SQLite: the `variable`,
//! `block_document` and `log_entry` tables and their row mappings.

use async_trait::async_trait;
use rusqlite::params_from_iter;
use rusqlite::types::Value;
use sluice_core::domain::{ApiKey, BlockDocument, Id, LogEntry, Variable};

use super::SqliteStore;
use super::codec::{
    Cols, Columns, DbResult, Result, Where, id_text, id_value, insert_sql, json, opt_id, opt_text,
    page, query_all, query_opt, set_clause, text, ts_value, values_of, write_err,
};
use crate::{ApiKeyStore, BlockStore, LogFilter, LogStore, StoreError, VariableStore};

fn variable_columns(v: &Variable) -> Result<Columns> {
    Ok(vec![
        ("id", id_value(v.id)),
        ("created", ts_value(v.created)),
        ("updated", ts_value(v.updated)),
        ("name", text(&v.name)),
        ("value", json(&v.value)?),
        ("tags", json(&v.tags)?),
    ])
}

fn variable_from_row(r: &Cols<'_, '_>) -> Result<Variable> {
    Ok(Variable {
        id: r.id("id")?,
        created: r.ts("created")?,
        updated: r.ts("updated")?,
        name: r.string("name")?,
        value: r.json("value")?,
        tags: r.json("tags")?,
    })
}

fn block_columns(b: &BlockDocument) -> Result<Columns> {
    Ok(vec![
        ("id", id_value(b.id)),
        ("created", ts_value(b.created)),
        ("updated", ts_value(b.updated)),
        ("name", opt_text(b.name.as_deref())),
        ("data", json(&b.data)?),
        ("block_type_slug", text(&b.block_type_slug)),
        ("block_type_id", opt_id(b.block_type_id)),
        ("block_schema_id", opt_id(b.block_schema_id)),
        ("is_anonymous", Value::from(b.is_anonymous)),
    ])
}

fn block_from_row(r: &Cols<'_, '_>) -> Result<BlockDocument> {
    Ok(BlockDocument {
        id: r.id("id")?,
        created: r.ts("created")?,
        updated: r.ts("updated")?,
        name: r.opt_string("name")?,
        data: r.json("data")?,
        block_type_slug: r.string("block_type_slug")?,
        block_type_id: r.opt_id("block_type_id")?,
        block_schema_id: r.opt_id("block_schema_id")?,
        is_anonymous: r.bool("is_anonymous")?,
    })
}

fn block_conflict(b: &BlockDocument) -> String {
    format!(
        "block document {:?} of type {:?} already exists",
        b.name.as_deref().unwrap_or_default(),
        b.block_type_slug
    )
}

fn log_columns(l: &LogEntry) -> Columns {
    vec![
        ("id", id_value(l.id)),
        ("created", ts_value(l.created)),
        ("name", text(&l.name)),
        ("level", Value::from(l.level)),
        ("message", text(&l.message)),
        ("timestamp", ts_value(l.timestamp)),
        ("flow_run_id", opt_id(l.flow_run_id)),
        ("task_run_id", opt_id(l.task_run_id)),
        ("worker_id", opt_id(l.worker_id)),
    ]
}

fn log_from_row(r: &Cols<'_, '_>) -> Result<LogEntry> {
    Ok(LogEntry {
        id: r.id("id")?,
        created: r.ts("created")?,
        name: r.string("name")?,
        level: r.i64("level")?,
        message: r.string("message")?,
        timestamp: r.ts("timestamp")?,
        flow_run_id: r.opt_id("flow_run_id")?,
        task_run_id: r.opt_id("task_run_id")?,
        worker_id: r.opt_id("worker_id")?,
    })
}

/// `UPDATE table SET <all but id/created> WHERE id`; `NotFound` when no row has the id.
pub(super) fn replace_row(
    conn: &rusqlite::Connection,
    table: &str,
    what: &str,
    id: Id,
    cols: &Columns,
    conflict: String,
) -> Result<()> {
    let (set, mut values) = set_clause(cols, &["id", "created"]);
    values.push(id_value(id));
    let sql = format!("UPDATE {table} {set} WHERE id = ?{}", values.len());
    let n = conn
        .prepare_cached(&sql)
        .db()?
        .execute(params_from_iter(&values))
        .map_err(|e| write_err(e, conflict, None))?;
    if n == 0 {
        return Err(StoreError::NotFound(format!("{what} {id}")));
    }
    Ok(())
}

pub(super) fn delete_row(conn: &rusqlite::Connection, table: &str, id: Id) -> Result<bool> {
    let n = conn
        .execute(&format!("DELETE FROM {table} WHERE id = ?1"), [id_text(id)])
        .db()?;
    Ok(n == 1)
}

#[async_trait]
impl VariableStore for SqliteStore {
    async fn create_variable(&self, variable: &Variable) -> Result<()> {
        let cols = variable_columns(variable)?;
        let name = variable.name.clone();
        self.write(move |conn| {
            conn.prepare_cached(&insert_sql("variable", &cols, ""))
                .db()?
                .execute(params_from_iter(values_of(&cols)))
                .map_err(|e| write_err(e, format!("variable {name:?} already exists"), None))?;
            Ok(())
        })
        .await
    }

    async fn read_variable(&self, id: Id) -> Result<Option<Variable>> {
        self.read(move |conn| {
            query_opt(
                conn,
                "SELECT * FROM variable WHERE id = ?1",
                [id_text(id)],
                variable_from_row,
            )
        })
        .await
    }

    async fn read_variable_by_name(&self, name: &str) -> Result<Option<Variable>> {
        let name = name.to_owned();
        self.read(move |conn| {
            query_opt(
                conn,
                "SELECT * FROM variable WHERE name = ?1",
                [name],
                variable_from_row,
            )
        })
        .await
    }

    async fn list_variables(
        &self,
        names: Option<&[String]>,
        limit: Option<usize>,
        offset: usize,
    ) -> Result<Vec<Variable>> {
        let mut w = Where::default();
        w.any_of("name", names);
        self.read(move |conn| {
            let sql = format!(
                "SELECT * FROM variable{} ORDER BY name{}",
                w.sql(),
                page(limit, offset)
            );
            query_all(conn, &sql, params_from_iter(&w.params), variable_from_row)
        })
        .await
    }

    async fn update_variable(&self, variable: &Variable) -> Result<()> {
        let cols = variable_columns(variable)?;
        let (id, name) = (variable.id, variable.name.clone());
        self.write(move |conn| {
            replace_row(
                conn,
                "variable",
                "variable",
                id,
                &cols,
                format!("variable {name:?} already exists"),
            )
        })
        .await
    }

    async fn delete_variable(&self, id: Id) -> Result<bool> {
        self.write(move |conn| delete_row(conn, "variable", id))
            .await
    }
}

#[async_trait]
impl BlockStore for SqliteStore {
    async fn create_block_document(&self, block: &BlockDocument) -> Result<()> {
        let cols = block_columns(block)?;
        let conflict = block_conflict(block);
        self.write(move |conn| {
            conn.prepare_cached(&insert_sql("block_document", &cols, ""))
                .db()?
                .execute(params_from_iter(values_of(&cols)))
                .map_err(|e| write_err(e, conflict, None))?;
            Ok(())
        })
        .await
    }

    async fn read_block_document(&self, id: Id) -> Result<Option<BlockDocument>> {
        self.read(move |conn| {
            query_opt(
                conn,
                "SELECT * FROM block_document WHERE id = ?1",
                [id_text(id)],
                block_from_row,
            )
        })
        .await
    }

    async fn read_block_document_by_name(
        &self,
        block_type_slug: &str,
        name: &str,
    ) -> Result<Option<BlockDocument>> {
        let (slug, name) = (block_type_slug.to_owned(), name.to_owned());
        self.read(move |conn| {
            query_opt(
                conn,
                "SELECT * FROM block_document WHERE block_type_slug = ?1 AND name = ?2",
                [slug, name],
                block_from_row,
            )
        })
        .await
    }

    async fn list_block_documents(
        &self,
        block_type_slug: Option<&str>,
        limit: Option<usize>,
        offset: usize,
    ) -> Result<Vec<BlockDocument>> {
        let mut w = Where::default();
        w.eq("block_type_slug", block_type_slug.map(text));
        self.read(move |conn| {
            let sql = format!(
                "SELECT * FROM block_document{} ORDER BY block_type_slug, name, id{}",
                w.sql(),
                page(limit, offset)
            );
            query_all(conn, &sql, params_from_iter(&w.params), block_from_row)
        })
        .await
    }

    async fn update_block_document(&self, block: &BlockDocument) -> Result<()> {
        let cols = block_columns(block)?;
        let (id, conflict) = (block.id, block_conflict(block));
        self.write(move |conn| {
            replace_row(
                conn,
                "block_document",
                "block document",
                id,
                &cols,
                conflict,
            )
        })
        .await
    }

    async fn delete_block_document(&self, id: Id) -> Result<bool> {
        self.write(move |conn| delete_row(conn, "block_document", id))
            .await
    }
}

#[async_trait]
impl LogStore for SqliteStore {
    async fn create_logs(&self, logs: &[LogEntry]) -> Result<()> {
        let rows: Vec<Columns> = logs.iter().map(log_columns).collect();
        self.write(move |conn| {
            for cols in &rows {
                // A client retrying a batch resends the same ids; keeping the first is idempotent.
                conn.prepare_cached(&insert_sql(
                    "log_entry",
                    cols,
                    "ON CONFLICT (id) DO NOTHING",
                ))
                .db()?
                .execute(params_from_iter(values_of(cols)))
                .db()?;
            }
            Ok(())
        })
        .await
    }

    async fn list_logs(
        &self,
        filter: &LogFilter,
        limit: Option<usize>,
        offset: usize,
    ) -> Result<Vec<LogEntry>> {
        let mut w = Where::default();
        w.any_of("flow_run_id", filter.flow_run_ids.as_deref());
        w.any_of("task_run_id", filter.task_run_ids.as_deref());
        if let Some(level) = filter.level_ge {
            w.push("level >= ?", [Value::from(level)]);
        }
        if let Some(level) = filter.level_le {
            w.push("level <= ?", [Value::from(level)]);
        }
        w.cmp_ts("timestamp", "<=", filter.timestamp_before);
        w.cmp_ts("timestamp", ">=", filter.timestamp_after);
        let order = if filter.newest_first {
            "timestamp DESC, seq DESC"
        } else {
            "timestamp, seq"
        };
        self.read(move |conn| {
            let sql = format!(
                "SELECT * FROM log_entry{} ORDER BY {order}{}",
                w.sql(),
                page(limit, offset)
            );
            query_all(conn, &sql, params_from_iter(&w.params), log_from_row)
        })
        .await
    }
}

fn api_key_columns(k: &ApiKey) -> Columns {
    vec![
        ("id", id_value(k.id)),
        ("created", ts_value(k.created)),
        ("name", text(&k.name)),
        ("hash", text(&k.hash)),
        ("prefix", text(&k.prefix)),
    ]
}

fn api_key_from_row(r: &Cols<'_, '_>) -> Result<ApiKey> {
    Ok(ApiKey {
        id: r.id("id")?,
        created: r.ts("created")?,
        name: r.string("name")?,
        hash: r.string("hash")?,
        prefix: r.string("prefix")?,
    })
}

#[async_trait]
impl ApiKeyStore for SqliteStore {
    async fn create_api_key(&self, key: &ApiKey) -> Result<()> {
        let cols = api_key_columns(key);
        let name = key.name.clone();
        self.write(move |conn| {
            conn.prepare_cached(&insert_sql("api_key", &cols, ""))
                .db()?
                .execute(params_from_iter(values_of(&cols)))
                .map_err(|e| write_err(e, format!("API key {name:?} already exists"), None))?;
            Ok(())
        })
        .await
    }

    async fn read_api_key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>> {
        let hash = hash.to_owned();
        self.read(move |conn| {
            query_opt(
                conn,
                "SELECT * FROM api_key WHERE hash = ?1",
                [hash],
                api_key_from_row,
            )
        })
        .await
    }

    async fn list_api_keys(&self) -> Result<Vec<ApiKey>> {
        self.read(move |conn| {
            query_all(
                conn,
                "SELECT * FROM api_key ORDER BY name",
                [],
                api_key_from_row,
            )
        })
        .await
    }

    async fn delete_api_key(&self, id: Id) -> Result<bool> {
        self.write(move |conn| delete_row(conn, "api_key", id))
            .await
    }
}
