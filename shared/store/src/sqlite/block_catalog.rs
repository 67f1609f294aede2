//! [`BlockCatalogStore`] on SQLite: the `block_type` and `block_schema` tables.

use async_trait::async_trait;
use rusqlite::params_from_iter;
use rusqlite::types::Value;
use sluice_core::domain::{BlockSchema, BlockType, Id};

use super::SqliteStore;
use super::codec::{
    Cols, Columns, DbResult, Result, id_text, id_value, insert_sql, json, opt_text, query_all,
    query_opt, set_clause, text, ts_value, values_of, write_err,
};
use super::misc::delete_row;
use crate::{BlockCatalogStore, StoreError};

fn type_columns(t: &BlockType) -> Columns {
    vec![
        ("id", id_value(t.id)),
        ("created", ts_value(t.created)),
        ("updated", ts_value(t.updated)),
        ("name", text(&t.name)),
        ("slug", text(&t.slug)),
        ("logo_url", opt_text(t.logo_url.as_deref())),
        (
            "documentation_url",
            opt_text(t.documentation_url.as_deref()),
        ),
        ("description", opt_text(t.description.as_deref())),
        ("code_example", opt_text(t.code_example.as_deref())),
        ("is_protected", Value::from(t.is_protected)),
    ]
}

fn type_from_row(r: &Cols<'_, '_>) -> Result<BlockType> {
    Ok(BlockType {
        id: r.id("id")?,
        created: r.ts("created")?,
        updated: r.ts("updated")?,
        name: r.string("name")?,
        slug: r.string("slug")?,
        logo_url: r.opt_string("logo_url")?,
        documentation_url: r.opt_string("documentation_url")?,
        description: r.opt_string("description")?,
        code_example: r.opt_string("code_example")?,
        is_protected: r.bool("is_protected")?,
    })
}

fn schema_columns(s: &BlockSchema) -> Result<Columns> {
    Ok(vec![
        ("id", id_value(s.id)),
        ("created", ts_value(s.created)),
        ("updated", ts_value(s.updated)),
        ("checksum", text(&s.checksum)),
        ("fields", json(&s.fields)?),
        ("block_type_id", id_value(s.block_type_id)),
        ("capabilities", json(&s.capabilities)?),
        ("version", text(&s.version)),
    ])
}

fn schema_from_row(r: &Cols<'_, '_>) -> Result<BlockSchema> {
    Ok(BlockSchema {
        id: r.id("id")?,
        created: r.ts("created")?,
        updated: r.ts("updated")?,
        checksum: r.string("checksum")?,
        fields: r.json("fields")?,
        block_type_id: r.id("block_type_id")?,
        capabilities: r.json("capabilities")?,
        version: r.string("version")?,
    })
}

#[async_trait]
impl BlockCatalogStore for SqliteStore {
    async fn create_block_type(&self, block_type: &BlockType) -> Result<()> {
        let cols = type_columns(block_type);
        let slug = block_type.slug.clone();
        self.write(move |conn| {
            conn.prepare_cached(&insert_sql("block_type", &cols, ""))
                .db()?
                .execute(params_from_iter(values_of(&cols)))
                .map_err(|e| write_err(e, format!("block type {slug:?} already exists"), None))?;
            Ok(())
        })
        .await
    }

    async fn read_block_type(&self, id: Id) -> Result<Option<BlockType>> {
        self.read(move |conn| {
            query_opt(
                conn,
                "SELECT * FROM block_type WHERE id = ?1",
                [id_text(id)],
                type_from_row,
            )
        })
        .await
    }

    async fn read_block_type_by_slug(&self, slug: &str) -> Result<Option<BlockType>> {
        let slug = slug.to_owned();
        self.read(move |conn| {
            query_opt(
                conn,
                "SELECT * FROM block_type WHERE slug = ?1",
                [slug],
                type_from_row,
            )
        })
        .await
    }

    async fn list_block_types(&self) -> Result<Vec<BlockType>> {
        self.read(move |conn| {
            query_all(
                conn,
                "SELECT * FROM block_type ORDER BY name",
                [],
                type_from_row,
            )
        })
        .await
    }

    async fn update_block_type(&self, block_type: &BlockType) -> Result<()> {
        let cols = type_columns(block_type);
        let id = block_type.id;
        self.write(move |conn| {
            let (set, mut values) = set_clause(&cols, &["id", "created", "name", "slug"]);
            values.push(id_value(id));
            let sql = format!("UPDATE block_type {set} WHERE id = ?{}", values.len());
            let n = conn
                .prepare_cached(&sql)
                .db()?
                .execute(params_from_iter(&values))
                .db()?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("block type {id}")));
            }
            Ok(())
        })
        .await
    }

    async fn delete_block_type(&self, id: Id) -> Result<bool> {
        self.write(move |conn| delete_row(conn, "block_type", id))
            .await
    }

    async fn create_block_schema(&self, schema: &BlockSchema) -> Result<()> {
        let cols = schema_columns(schema)?;
        let (checksum, type_id) = (schema.checksum.clone(), schema.block_type_id);
        self.write(move |conn| {
            conn.prepare_cached(&insert_sql("block_schema", &cols, ""))
                .db()?
                .execute(params_from_iter(values_of(&cols)))
                .map_err(|e| {
                    write_err(
                        e,
                        format!("block schema {checksum} already exists"),
                        Some(format!("block type {type_id}")),
                    )
                })?;
            Ok(())
        })
        .await
    }

    async fn read_block_schema(&self, id: Id) -> Result<Option<BlockSchema>> {
        self.read(move |conn| {
            query_opt(
                conn,
                "SELECT * FROM block_schema WHERE id = ?1",
                [id_text(id)],
                schema_from_row,
            )
        })
        .await
    }

    async fn read_block_schema_by_checksum(
        &self,
        checksum: &str,
        version: Option<&str>,
    ) -> Result<Option<BlockSchema>> {
        let checksum = checksum.to_owned();
        let version = version.map(str::to_owned);
        self.read(move |conn| match version {
            Some(v) => query_opt(
                conn,
                "SELECT * FROM block_schema WHERE checksum = ?1 AND version = ?2",
                [checksum, v],
                schema_from_row,
            ),
            None => query_opt(
                conn,
                "SELECT * FROM block_schema WHERE checksum = ?1 ORDER BY created DESC, id LIMIT 1",
                [checksum],
                schema_from_row,
            ),
        })
        .await
    }

    async fn list_block_schemas(&self, block_type_id: Option<Id>) -> Result<Vec<BlockSchema>> {
        self.read(move |conn| match block_type_id {
            Some(id) => query_all(
                conn,
                "SELECT * FROM block_schema WHERE block_type_id = ?1 ORDER BY created DESC, id",
                [id_text(id)],
                schema_from_row,
            ),
            None => query_all(
                conn,
                "SELECT * FROM block_schema ORDER BY created DESC, id",
                [],
                schema_from_row,
            ),
        })
        .await
    }

    async fn delete_block_schema(&self, id: Id) -> Result<bool> {
        self.write(move |conn| delete_row(conn, "block_schema", id))
            .await
    }
}
