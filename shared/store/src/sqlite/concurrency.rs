//! [`ConcurrencyStore`] on SQLite: the `concurrency_limit` and `concurrency_lease` tables. A
//! [`SlotWrite`] is one IMMEDIATE transaction whose limit updates name the version they read.

use async_trait::async_trait;
use rusqlite::params_from_iter;
use rusqlite::types::Value;
use sluice_core::concurrency::{ConcurrencyLease, ConcurrencyLimit};
use sluice_core::domain::{Id, Timestamp};

use super::SqliteStore;
use super::codec::{
    Cols, Columns, DbResult, Result, id_text, id_value, insert_sql, json, opt_json, page,
    query_all, query_opt, set_clause, text, ts, ts_value, values_of, write_err,
};
use crate::{ConcurrencyStore, SlotWrite, StoreError};

fn limit_columns(l: &ConcurrencyLimit) -> Columns {
    vec![
        ("id", id_value(l.id)),
        ("created", ts_value(l.created)),
        ("updated", ts_value(l.updated)),
        ("name", text(&l.name)),
        ("\"limit\"", Value::from(l.limit)),
        ("active", Value::from(l.active)),
        ("active_slots", Value::from(l.active_slots)),
        ("denied_slots", Value::from(l.denied_slots)),
        (
            "slot_decay_per_second",
            Value::from(l.slot_decay_per_second),
        ),
        (
            "avg_slot_occupancy_seconds",
            Value::from(l.avg_slot_occupancy_seconds),
        ),
        (
            "version",
            Value::from(i64::try_from(l.version).unwrap_or(i64::MAX)),
        ),
    ]
}

fn limit_from_row(r: &Cols<'_, '_>) -> Result<ConcurrencyLimit> {
    Ok(ConcurrencyLimit {
        id: r.id("id")?,
        created: r.ts("created")?,
        updated: r.ts("updated")?,
        name: r.string("name")?,
        limit: r.i64("limit")?,
        active: r.bool("active")?,
        active_slots: r.i64("active_slots")?,
        denied_slots: r.i64("denied_slots")?,
        slot_decay_per_second: r.f64("slot_decay_per_second")?,
        avg_slot_occupancy_seconds: r.f64("avg_slot_occupancy_seconds")?,
        version: u64::try_from(r.i64("version")?).unwrap_or_default(),
    })
}

fn lease_columns(l: &ConcurrencyLease) -> Result<Columns> {
    Ok(vec![
        ("id", id_value(l.id)),
        ("created", ts_value(l.created)),
        ("expires", ts_value(l.expires)),
        ("limit_ids", json(&l.limit_ids)?),
        ("slots", Value::from(l.slots)),
        ("holder", opt_json(l.holder.as_ref())?),
    ])
}

fn lease_from_row(r: &Cols<'_, '_>) -> Result<ConcurrencyLease> {
    Ok(ConcurrencyLease {
        id: r.id("id")?,
        created: r.ts("created")?,
        expires: r.ts("expires")?,
        limit_ids: r.json("limit_ids")?,
        slots: r.i64("slots")?,
        holder: r.opt_json("holder")?,
    })
}

fn conflict_name(name: &str) -> String {
    format!("concurrency limit {name:?} already exists")
}

/// `UPDATE concurrency_limit SET ... , version = version + 1 WHERE id AND version`: the number
/// of rows changed (0 when the version moved or the limit is gone).
fn compare_and_set(conn: &rusqlite::Connection, l: &ConcurrencyLimit) -> Result<usize> {
    let cols = limit_columns(l);
    let (set, mut values) = set_clause(&cols, &["id", "created", "version"]);
    values.push(id_value(l.id));
    values.push(Value::from(i64::try_from(l.version).unwrap_or(i64::MAX)));
    let sql = format!(
        "UPDATE concurrency_limit {set}, version = version + 1 WHERE id = ?{} AND version = ?{}",
        values.len() - 1,
        values.len()
    );
    conn.prepare_cached(&sql)
        .db()?
        .execute(params_from_iter(&values))
        .map_err(|e| write_err(e, conflict_name(&l.name), None))
}

#[async_trait]
impl ConcurrencyStore for SqliteStore {
    async fn create_concurrency_limit(&self, limit: &ConcurrencyLimit) -> Result<()> {
        let cols = limit_columns(limit);
        let name = limit.name.clone();
        self.write(move |conn| {
            conn.prepare_cached(&insert_sql("concurrency_limit", &cols, ""))
                .db()?
                .execute(params_from_iter(values_of(&cols)))
                .map_err(|e| write_err(e, conflict_name(&name), None))?;
            Ok(())
        })
        .await
    }

    async fn read_concurrency_limit(&self, id: Id) -> Result<Option<ConcurrencyLimit>> {
        self.read(move |conn| {
            query_opt(
                conn,
                "SELECT * FROM concurrency_limit WHERE id = ?1",
                [id_text(id)],
                limit_from_row,
            )
        })
        .await
    }

    async fn read_concurrency_limit_by_name(&self, name: &str) -> Result<Option<ConcurrencyLimit>> {
        let name = name.to_owned();
        self.read(move |conn| {
            query_opt(
                conn,
                "SELECT * FROM concurrency_limit WHERE name = ?1",
                [name],
                limit_from_row,
            )
        })
        .await
    }

    async fn read_concurrency_limits_by_names(
        &self,
        names: &[String],
    ) -> Result<Vec<ConcurrencyLimit>> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let names = names.to_vec();
        self.read(move |conn| {
            let marks = vec!["?"; names.len()].join(", ");
            let sql =
                format!("SELECT * FROM concurrency_limit WHERE name IN ({marks}) ORDER BY name");
            query_all(conn, &sql, params_from_iter(&names), limit_from_row)
        })
        .await
    }

    async fn list_concurrency_limits(
        &self,
        prefix: Option<&str>,
        limit: Option<usize>,
        offset: usize,
    ) -> Result<Vec<ConcurrencyLimit>> {
        // A prefix is matched with substr, not LIKE, so `_` and `%` in it are plain text.
        let prefix = prefix.map(str::to_owned);
        self.read(move |conn| {
            let (filter, params) = match &prefix {
                Some(p) => (
                    " WHERE substr(name, 1, length(?1)) = ?1",
                    vec![Value::from(p.clone())],
                ),
                None => ("", Vec::new()),
            };
            let sql = format!(
                "SELECT * FROM concurrency_limit{filter} ORDER BY name{}",
                page(limit, offset)
            );
            query_all(conn, &sql, params_from_iter(&params), limit_from_row)
        })
        .await
    }

    async fn update_concurrency_limit(&self, limit: &ConcurrencyLimit) -> Result<()> {
        let limit = limit.clone();
        self.write(move |conn| {
            if compare_and_set(conn, &limit)? == 1 {
                return Ok(());
            }
            let exists = query_opt(
                conn,
                "SELECT id FROM concurrency_limit WHERE id = ?1",
                [id_text(limit.id)],
                |r| r.id("id"),
            )?;
            Err(match exists {
                Some(_) => StoreError::Conflict(format!(
                    "concurrency limit {:?} changed meanwhile",
                    limit.name
                )),
                None => StoreError::NotFound(format!("concurrency limit {}", limit.id)),
            })
        })
        .await
    }

    async fn delete_concurrency_limit(&self, id: Id) -> Result<bool> {
        self.write(move |conn| {
            let n = conn
                .execute("DELETE FROM concurrency_limit WHERE id = ?1", [id_text(id)])
                .db()?;
            Ok(n == 1)
        })
        .await
    }

    async fn write_slots(&self, write: &SlotWrite) -> Result<()> {
        let write = write.clone();
        self.write(move |conn| {
            for l in &write.limits {
                if compare_and_set(conn, l)? != 1 {
                    return Err(StoreError::Conflict(format!(
                        "concurrency limit {:?} changed meanwhile",
                        l.name
                    )));
                }
            }
            if let Some(id) = write.revoke_lease {
                let n = conn
                    .execute("DELETE FROM concurrency_lease WHERE id = ?1", [id_text(id)])
                    .db()?;
                if n != 1 {
                    return Err(StoreError::Conflict(format!(
                        "lease {id} was given back already"
                    )));
                }
            }
            if let Some(lease) = &write.create_lease {
                let cols = lease_columns(lease)?;
                conn.prepare_cached(&insert_sql("concurrency_lease", &cols, ""))
                    .db()?
                    .execute(params_from_iter(values_of(&cols)))
                    .map_err(|e| write_err(e, format!("lease {} exists", lease.id), None))?;
            }
            Ok(())
        })
        .await
    }

    async fn read_lease(&self, id: Id) -> Result<Option<ConcurrencyLease>> {
        self.read(move |conn| {
            query_opt(
                conn,
                "SELECT * FROM concurrency_lease WHERE id = ?1",
                [id_text(id)],
                lease_from_row,
            )
        })
        .await
    }

    async fn renew_lease(&self, id: Id, expires: Timestamp) -> Result<bool> {
        self.write(move |conn| {
            let n = conn
                .execute(
                    "UPDATE concurrency_lease SET expires = ?1 WHERE id = ?2",
                    [ts(expires), id_text(id)],
                )
                .db()?;
            Ok(n == 1)
        })
        .await
    }

    async fn list_expired_leases(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<ConcurrencyLease>> {
        self.read(move |conn| {
            let sql = format!(
                "SELECT * FROM concurrency_lease WHERE expires < ?1 ORDER BY expires{}",
                page(Some(limit), 0)
            );
            query_all(conn, &sql, [ts(now)], lease_from_row)
        })
        .await
    }

    async fn list_leases(&self) -> Result<Vec<ConcurrencyLease>> {
        self.read(move |conn| {
            query_all(
                conn,
                "SELECT * FROM concurrency_lease ORDER BY expires",
                [],
                lease_from_row,
            )
        })
        .await
    }

    async fn revoke_lease(&self, id: Id) -> Result<bool> {
        self.write(move |conn| {
            let n = conn
                .execute("DELETE FROM concurrency_lease WHERE id = ?1", [id_text(id)])
                .db()?;
            Ok(n == 1)
        })
        .await
    }
}
