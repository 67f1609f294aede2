//! [`DeploymentStore`] on SQLite: the `deployment` and `deployment_schedule` tables and their row
//! mappings. A deployment's schedules are rows of their own, written with it in one transaction
//! and read back in list order.

use std::collections::HashMap;

use async_trait::async_trait;
use rusqlite::types::Value;
use rusqlite::{Connection, params_from_iter};
use sluice_core::domain::{Deployment, DeploymentSchedule, DeploymentStatus, Id, Timestamp};

use super::SqliteStore;
use super::codec::{
    Cols, Columns, DbResult, Result, Where, count, id_text, id_value, insert_sql, json, opt_id,
    opt_json, opt_text, opt_ts, page, query_all, query_opt, set_clause, text, ts_value, values_of,
    write_err,
};
use crate::{DeploymentFilter, DeploymentSort, DeploymentStore, StoreError};

fn deployment_columns(d: &Deployment) -> Result<Columns> {
    Ok(vec![
        ("id", id_value(d.id)),
        ("created", ts_value(d.created)),
        ("updated", ts_value(d.updated)),
        ("name", text(&d.name)),
        ("version", opt_text(d.version.as_deref())),
        ("version_info", opt_json(d.version_info.as_ref())?),
        ("description", opt_text(d.description.as_deref())),
        ("flow_id", id_value(d.flow_id)),
        ("paused", Value::from(d.paused)),
        ("concurrency_limit", Value::from(d.concurrency_limit)),
        (
            "concurrency_options",
            opt_json(d.concurrency_options.as_ref())?,
        ),
        ("job_variables", json(&d.job_variables)?),
        ("parameters", json(&d.parameters)?),
        (
            "parameter_openapi_schema",
            opt_json(d.parameter_openapi_schema.as_ref())?,
        ),
        (
            "enforce_parameter_schema",
            Value::from(d.enforce_parameter_schema),
        ),
        ("pull_steps", opt_json(d.pull_steps.as_ref())?),
        ("path", opt_text(d.path.as_deref())),
        ("entrypoint", opt_text(d.entrypoint.as_deref())),
        ("tags", json(&d.tags)?),
        ("labels", json(&d.labels)?),
        ("work_queue_name", opt_text(d.work_queue_name.as_deref())),
        ("work_queue_id", opt_id(d.work_queue_id)),
        ("work_pool_name", opt_text(d.work_pool_name.as_deref())),
        ("last_polled", opt_ts(d.last_polled)),
        ("status", text(d.status.as_str())),
        ("storage_document_id", opt_id(d.storage_document_id)),
        (
            "infrastructure_document_id",
            opt_id(d.infrastructure_document_id),
        ),
        ("created_by", opt_json(d.created_by.as_ref())?),
        ("updated_by", opt_json(d.updated_by.as_ref())?),
    ])
}

/// Decodes a deployment row; its schedules are attached by the caller.
fn deployment_from_row(r: &Cols<'_, '_>) -> Result<Deployment> {
    Ok(Deployment {
        id: r.id("id")?,
        created: r.ts("created")?,
        updated: r.ts("updated")?,
        name: r.string("name")?,
        version: r.opt_string("version")?,
        version_info: r.opt_json("version_info")?,
        description: r.opt_string("description")?,
        flow_id: r.id("flow_id")?,
        paused: r.bool("paused")?,
        schedules: Vec::new(),
        concurrency_limit: r.opt_i64("concurrency_limit")?,
        concurrency_options: r.opt_json("concurrency_options")?,
        job_variables: r.map("job_variables")?,
        parameters: r.map("parameters")?,
        parameter_openapi_schema: r.opt_json("parameter_openapi_schema")?,
        enforce_parameter_schema: r.bool("enforce_parameter_schema")?,
        pull_steps: r.opt_json("pull_steps")?,
        path: r.opt_string("path")?,
        entrypoint: r.opt_string("entrypoint")?,
        tags: r.json("tags")?,
        labels: r.map("labels")?,
        work_queue_name: r.opt_string("work_queue_name")?,
        work_queue_id: r.opt_id("work_queue_id")?,
        work_pool_name: r.opt_string("work_pool_name")?,
        last_polled: r.opt_ts("last_polled")?,
        status: r.parsed("status", DeploymentStatus::parse)?,
        storage_document_id: r.opt_id("storage_document_id")?,
        infrastructure_document_id: r.opt_id("infrastructure_document_id")?,
        created_by: r.opt_json("created_by")?,
        updated_by: r.opt_json("updated_by")?,
    })
}

/// The schedule row; `deployment_id` is always the owning deployment's.
fn schedule_columns(s: &DeploymentSchedule, deployment_id: Id, position: usize) -> Result<Columns> {
    let position = i64::try_from(position).map_err(|e| StoreError::Backend(Box::new(e)))?;
    Ok(vec![
        ("id", id_value(s.id)),
        ("created", ts_value(s.created)),
        ("updated", ts_value(s.updated)),
        ("deployment_id", id_value(deployment_id)),
        ("position", Value::from(position)),
        ("schedule", json(&s.schedule)?),
        ("active", Value::from(s.active)),
        ("max_scheduled_runs", Value::from(s.max_scheduled_runs)),
        ("parameters", json(&s.parameters)?),
        ("slug", opt_text(s.slug.as_deref())),
    ])
}

fn schedule_from_row(r: &Cols<'_, '_>) -> Result<DeploymentSchedule> {
    Ok(DeploymentSchedule {
        id: r.id("id")?,
        created: r.ts("created")?,
        updated: r.ts("updated")?,
        deployment_id: r.id("deployment_id")?,
        schedule: r.json("schedule")?,
        active: r.bool("active")?,
        max_scheduled_runs: r.opt_i64("max_scheduled_runs")?,
        parameters: r.map("parameters")?,
        slug: r.opt_string("slug")?,
    })
}

fn insert_schedules(conn: &Connection, d: &Deployment) -> Result<()> {
    for (i, s) in d.schedules.iter().enumerate() {
        let cols = schedule_columns(s, d.id, i)?;
        conn.prepare_cached(&insert_sql("deployment_schedule", &cols, ""))
            .db()?
            .execute(params_from_iter(values_of(&cols)))
            .map_err(|e| write_err(e, format!("deployment schedule id {} is taken", s.id), None))?;
    }
    Ok(())
}

/// Attaches each deployment's schedules, with one query for the lot.
fn with_schedules(conn: &Connection, mut deployments: Vec<Deployment>) -> Result<Vec<Deployment>> {
    if deployments.is_empty() {
        return Ok(deployments);
    }
    let mut w = Where::default();
    let ids: Vec<Id> = deployments.iter().map(|d| d.id).collect();
    w.any_of("deployment_id", Some(&ids));
    let sql = format!(
        "SELECT * FROM deployment_schedule{} ORDER BY deployment_id, position",
        w.sql()
    );
    let mut by_deployment: HashMap<Id, Vec<DeploymentSchedule>> = HashMap::new();
    for s in query_all(conn, &sql, params_from_iter(&w.params), schedule_from_row)? {
        by_deployment.entry(s.deployment_id).or_default().push(s);
    }
    for d in &mut deployments {
        d.schedules = by_deployment.remove(&d.id).unwrap_or_default();
    }
    Ok(deployments)
}

fn read_one(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Option<Deployment>> {
    match query_opt(conn, sql, params, deployment_from_row)? {
        Some(d) => Ok(with_schedules(conn, vec![d])?.pop()),
        None => Ok(None),
    }
}

fn deployment_where(filter: &DeploymentFilter) -> Where {
    let mut w = Where::default();
    w.any_of("id", filter.ids.as_deref());
    w.any_of("name", filter.names.as_deref());
    w.like("name", filter.name_like.as_deref());
    w.any_of("flow_id", filter.flow_ids.as_deref());
    w.eq("paused", filter.paused.map(Value::from));
    w.eq(
        "status",
        filter.status.map(|st| Value::from(st.as_str().to_owned())),
    );
    w.tags_all("deployment.tags", filter.tags_all.as_deref());
    w.any_of("work_queue_id", filter.work_queue_ids.as_deref());
    w.any_of("work_pool_name", filter.work_pool_names.as_deref());
    if let Some(has) = filter.has_active_schedule {
        let exists = "EXISTS (SELECT 1 FROM deployment_schedule s \
                      WHERE s.deployment_id = deployment.id AND s.active = 1)";
        if has {
            w.push(exists, []);
        } else {
            w.push(format!("NOT {exists}"), []);
        }
    }
    w.cmp_ts("updated", ">=", filter.updated_after);
    if let Some(after) = filter.id_after {
        w.push("id > ?", [id_value(after)]);
    }
    w
}

#[async_trait]
impl DeploymentStore for SqliteStore {
    async fn create_deployment(&self, deployment: &Deployment) -> Result<()> {
        let cols = deployment_columns(deployment)?;
        let d = deployment.clone();
        self.write(move |conn| {
            conn.prepare_cached(&insert_sql("deployment", &cols, ""))
                .db()?
                .execute(params_from_iter(values_of(&cols)))
                .map_err(|e| {
                    write_err(
                        e,
                        format!(
                            "deployment {:?} of flow {} already exists",
                            d.name, d.flow_id
                        ),
                        Some(format!("flow {}", d.flow_id)),
                    )
                })?;
            insert_schedules(conn, &d)
        })
        .await
    }

    async fn read_deployment(&self, id: Id) -> Result<Option<Deployment>> {
        self.read(move |conn| {
            read_one(
                conn,
                "SELECT * FROM deployment WHERE id = ?1",
                [id_text(id)],
            )
        })
        .await
    }

    async fn read_deployment_by_name(&self, flow_id: Id, name: &str) -> Result<Option<Deployment>> {
        let name = name.to_owned();
        self.read(move |conn| {
            read_one(
                conn,
                "SELECT * FROM deployment WHERE flow_id = ?1 AND name = ?2",
                [id_text(flow_id), name],
            )
        })
        .await
    }

    async fn list_deployments(
        &self,
        filter: &DeploymentFilter,
        limit: Option<usize>,
        offset: usize,
    ) -> Result<Vec<Deployment>> {
        let w = deployment_where(filter);
        // The same orders as `DeploymentFilter::compare`.
        let order = match filter.sort {
            _ if filter.id_after.is_some() => "id",
            DeploymentSort::NameAsc => "name, id",
            DeploymentSort::NameDesc => "name DESC, id DESC",
            DeploymentSort::CreatedDesc => "created DESC, id DESC",
            DeploymentSort::UpdatedDesc => "updated DESC, id DESC",
        };
        self.read(move |conn| {
            let sql = format!(
                "SELECT * FROM deployment{} ORDER BY {order}{}",
                w.sql(),
                page(limit, offset)
            );
            let rows = query_all(conn, &sql, params_from_iter(&w.params), deployment_from_row)?;
            with_schedules(conn, rows)
        })
        .await
    }

    async fn count_deployments(&self, filter: &DeploymentFilter) -> Result<usize> {
        let w = deployment_where(filter);
        self.read(move |conn| count(conn, "deployment", &w)).await
    }

    async fn update_deployment(&self, deployment: &Deployment) -> Result<()> {
        let cols = deployment_columns(deployment)?;
        let d = deployment.clone();
        self.write(move |conn| {
            let (set, mut values) = set_clause(&cols, &["id", "created", "flow_id"]);
            values.push(id_value(d.id));
            let sql = format!("UPDATE deployment {set} WHERE id = ?{}", values.len());
            let n = conn
                .prepare_cached(&sql)
                .db()?
                .execute(params_from_iter(&values))
                .map_err(|e| {
                    write_err(
                        e,
                        format!(
                            "deployment {:?} of flow {} already exists",
                            d.name, d.flow_id
                        ),
                        None,
                    )
                })?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("deployment {}", d.id)));
            }
            conn.execute(
                "DELETE FROM deployment_schedule WHERE deployment_id = ?1",
                [id_text(d.id)],
            )
            .db()?;
            insert_schedules(conn, &d)
        })
        .await
    }

    async fn mark_deployments_polled(&self, ids: &[Id], at: Timestamp) -> Result<()> {
        let mut w = Where::default();
        w.any_of("id", Some(ids));
        self.write(move |conn| {
            let sql = format!(
                "UPDATE deployment SET last_polled = ?, status = ?{}",
                w.sql()
            );
            let mut params = vec![ts_value(at), text(DeploymentStatus::Ready.as_str())];
            params.extend(w.params);
            conn.execute(&sql, params_from_iter(&params)).db()?;
            Ok(())
        })
        .await
    }

    async fn mark_deployment_not_ready(
        &self,
        id: Id,
        seen_last_polled: Option<Timestamp>,
    ) -> Result<bool> {
        self.write(move |conn| {
            // `IS` compares NULLs as equal, so "never polled" is a condition like any other.
            let n = conn
                .execute(
                    "UPDATE deployment SET status = ?1 \
                     WHERE id = ?2 AND status = ?3 AND last_polled IS ?4",
                    params_from_iter([
                        text(DeploymentStatus::NotReady.as_str()),
                        text(&id_text(id)),
                        text(DeploymentStatus::Ready.as_str()),
                        seen_last_polled.map_or(Value::Null, ts_value),
                    ]),
                )
                .db()?;
            Ok(n == 1)
        })
        .await
    }

    async fn delete_deployment(&self, id: Id) -> Result<bool> {
        self.write(move |conn| {
            // Schedules cascade; runs keep their deployment_id (no foreign key on purpose).
            let n = conn
                .execute("DELETE FROM deployment WHERE id = ?1", [id_text(id)])
                .db()?;
            Ok(n == 1)
        })
        .await
    }
}
