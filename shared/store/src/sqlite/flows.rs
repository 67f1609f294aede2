//! [`FlowStore`] on SQLite: the `flow` table and its row mapping.

use async_trait::async_trait;
use rusqlite::params_from_iter;
use sluice_core::domain::{Flow, Id};

use super::SqliteStore;
use super::codec::{
    Cols, Columns, DbResult, Result, Where, count, id_text, id_value, insert_sql, json, page,
    query_all, query_opt, text, ts_value, values_of, write_err,
};
use crate::{Created, FlowFilter, FlowStore};

fn flow_columns(f: &Flow) -> Result<Columns> {
    Ok(vec![
        ("id", id_value(f.id)),
        ("created", ts_value(f.created)),
        ("updated", ts_value(f.updated)),
        ("name", text(&f.name)),
        ("tags", json(&f.tags)?),
        ("labels", json(&f.labels)?),
    ])
}

fn flow_from_row(r: &Cols<'_, '_>) -> Result<Flow> {
    Ok(Flow {
        id: r.id("id")?,
        created: r.ts("created")?,
        updated: r.ts("updated")?,
        name: r.string("name")?,
        tags: r.json("tags")?,
        labels: r.map("labels")?,
    })
}

fn flow_where(filter: &FlowFilter) -> Where {
    let mut w = Where::default();
    w.any_of("id", filter.ids.as_deref());
    w.any_of("name", filter.names.as_deref());
    w.like("name", filter.name_like.as_deref());
    w.tags_all("flow.tags", filter.tags_all.as_deref());
    w
}

#[async_trait]
impl FlowStore for SqliteStore {
    async fn upsert_flow(&self, flow: &Flow) -> Result<Created<Flow>> {
        let cols = flow_columns(flow)?;
        let (id, name) = (flow.id, flow.name.clone());
        self.write(move |conn| {
            // Only a name clash is "already there"; an id clash with another name is an error.
            let inserted = conn
                .prepare_cached(&insert_sql("flow", &cols, "ON CONFLICT (name) DO NOTHING"))
                .db()?
                .execute(params_from_iter(values_of(&cols)))
                .map_err(|e| write_err(e, format!("flow id {id} is taken"), None))?;
            let value = query_opt(
                conn,
                "SELECT * FROM flow WHERE name = ?1",
                [&name],
                flow_from_row,
            )?
            .ok_or_else(|| crate::StoreError::Corrupt(format!("flow {name:?} vanished")))?;
            Ok(Created {
                value,
                created: inserted == 1,
            })
        })
        .await
    }

    async fn read_flow(&self, id: Id) -> Result<Option<Flow>> {
        self.read(move |conn| {
            query_opt(
                conn,
                "SELECT * FROM flow WHERE id = ?1",
                [id_text(id)],
                flow_from_row,
            )
        })
        .await
    }

    async fn read_flow_by_name(&self, name: &str) -> Result<Option<Flow>> {
        let name = name.to_owned();
        self.read(move |conn| {
            query_opt(
                conn,
                "SELECT * FROM flow WHERE name = ?1",
                [name],
                flow_from_row,
            )
        })
        .await
    }

    async fn list_flows(
        &self,
        filter: &FlowFilter,
        limit: Option<usize>,
        offset: usize,
    ) -> Result<Vec<Flow>> {
        let w = flow_where(filter);
        self.read(move |conn| {
            let sql = format!(
                "SELECT * FROM flow{} ORDER BY name{}",
                w.sql(),
                page(limit, offset)
            );
            query_all(conn, &sql, params_from_iter(&w.params), flow_from_row)
        })
        .await
    }

    async fn count_flows(&self, filter: &FlowFilter) -> Result<usize> {
        let w = flow_where(filter);
        self.read(move |conn| count(conn, "flow", &w)).await
    }

    async fn delete_flow(&self, id: Id) -> Result<bool> {
        self.write(move |conn| {
            // Deployments (with schedules) and runs (with states) go too: ON DELETE CASCADE.
            let n = conn
                .execute("DELETE FROM flow WHERE id = ?1", [id_text(id)])
                .db()?;
            Ok(n == 1)
        })
        .await
    }
}
