//! [`ArtifactStore`] on SQLite: the `artifact` table. Keys and runs narrow the query in SQL
//! (both indexed); the rest of the filter is the shared in-memory rule.

use async_trait::async_trait;
use rusqlite::params_from_iter;
use sluice_core::domain::{Artifact, Id};

use super::SqliteStore;
use super::codec::{
    Cols, Columns, DbResult, Result, Where, id_text, id_value, insert_sql, json, opt_id, opt_json,
    opt_text, query_all, query_opt, ts_value, values_of, write_err,
};
use super::misc::{delete_row, replace_row};
use crate::{ArtifactFilter, ArtifactStore};

fn columns(a: &Artifact) -> Result<Columns> {
    Ok(vec![
        ("id", id_value(a.id)),
        ("created", ts_value(a.created)),
        ("updated", ts_value(a.updated)),
        ("key", opt_text(a.key.as_deref())),
        ("type", opt_text(a.kind.as_deref())),
        ("description", opt_text(a.description.as_deref())),
        ("data", json(&a.data)?),
        ("metadata", opt_json(a.metadata.as_ref())?),
        ("flow_run_id", opt_id(a.flow_run_id)),
        ("task_run_id", opt_id(a.task_run_id)),
    ])
}

fn from_row(r: &Cols<'_, '_>) -> Result<Artifact> {
    Ok(Artifact {
        id: r.id("id")?,
        created: r.ts("created")?,
        updated: r.ts("updated")?,
        key: r.opt_string("key")?,
        kind: r.opt_string("type")?,
        description: r.opt_string("description")?,
        data: r.json("data")?,
        metadata: r.opt_json("metadata")?,
        flow_run_id: r.opt_id("flow_run_id")?,
        task_run_id: r.opt_id("task_run_id")?,
    })
}

#[async_trait]
impl ArtifactStore for SqliteStore {
    async fn create_artifact(&self, artifact: &Artifact) -> Result<()> {
        let cols = columns(artifact)?;
        let id = artifact.id;
        self.write(move |conn| {
            conn.prepare_cached(&insert_sql("artifact", &cols, ""))
                .db()?
                .execute(params_from_iter(values_of(&cols)))
                .map_err(|e| write_err(e, format!("artifact {id} exists"), None))?;
            Ok(())
        })
        .await
    }

    async fn read_artifact(&self, id: Id) -> Result<Option<Artifact>> {
        self.read(move |conn| {
            query_opt(
                conn,
                "SELECT * FROM artifact WHERE id = ?1",
                [id_text(id)],
                from_row,
            )
        })
        .await
    }

    async fn list_artifacts(&self, filter: &ArtifactFilter) -> Result<Vec<Artifact>> {
        let filter = filter.clone();
        self.read(move |conn| {
            let mut w = Where::default();
            w.any_of("key", filter.keys.as_deref());
            w.any_of("flow_run_id", filter.flow_run_ids.as_deref());
            let sql = format!(
                "SELECT * FROM artifact{} ORDER BY created DESC, id DESC",
                w.sql()
            );
            let all = query_all(conn, &sql, params_from_iter(&w.params), from_row)?;
            Ok(all.into_iter().filter(|a| filter.matches(a)).collect())
        })
        .await
    }

    async fn update_artifact(&self, artifact: &Artifact) -> Result<()> {
        let cols = columns(artifact)?;
        let id = artifact.id;
        self.write(move |conn| {
            replace_row(
                conn,
                "artifact",
                "artifact",
                id,
                &cols,
                format!("artifact {id}"),
            )
        })
        .await
    }

    async fn delete_artifact(&self, id: Id) -> Result<bool> {
        self.write(move |conn| delete_row(conn, "artifact", id))
            .await
    }
}
