//! The SQLite schema, as an ordered list of migrations tracked by `PRAGMA user_version`.
//!
//! Migration `i` (0-based) brings the database from version `i` to `i + 1`. Each runs in its own
//! IMMEDIATE transaction that first re-reads the version, so two processes opening the same file
//! at once apply each migration exactly once. Append new migrations; never edit a released one.
//!
//! Layout conventions: ids are TEXT uuids, timestamps TEXT in the fixed-width UTC form of
//! `codec::ts` (so text order is time order), booleans INTEGER 0/1, nested maps JSON TEXT.
//! Ownership is expressed with `ON DELETE CASCADE` foreign keys; references that must survive
//! their target (a run's queue, a deployment's queue) are plain columns nulled by the adapter.

use rusqlite::{Connection, TransactionBehavior};

use super::codec::{DbResult, Result};
use crate::StoreError;

pub(super) const MIGRATIONS: &[&str] = &[
    V1_INITIAL,
    V2_API_KEYS,
    V3_RUNS_BY_FLOW,
    V4_CONCURRENCY_LIMITS,
    V5_BLOCK_CATALOG,
    V6_ARTIFACTS,
    V7_TASK_RUNS_AND_EVENTS,
];

const V1_INITIAL: &str = r#"
CREATE TABLE work_pool (
    id                    TEXT PRIMARY KEY NOT NULL,
    created               TEXT NOT NULL,
    updated               TEXT NOT NULL,
    name                  TEXT NOT NULL UNIQUE,
    description           TEXT,
    type                  TEXT NOT NULL,
    base_job_template     TEXT NOT NULL,
    is_paused             INTEGER NOT NULL,
    concurrency_limit     INTEGER,
    status                TEXT,
    -- No foreign key: the pool and its default queue reference each other.
    default_queue_id      TEXT,
    storage_configuration TEXT NOT NULL
) STRICT;

CREATE TABLE work_queue (
    id                TEXT PRIMARY KEY NOT NULL,
    created           TEXT NOT NULL,
    updated           TEXT NOT NULL,
    name              TEXT NOT NULL,
    description       TEXT NOT NULL,
    is_paused         INTEGER NOT NULL,
    concurrency_limit INTEGER,
    -- Unique per pool by the services' rule, not by a constraint: a priority reshuffle moves
    -- several queues in one transaction and would collide half-way.
    priority          INTEGER NOT NULL,
    work_pool_id      TEXT NOT NULL REFERENCES work_pool (id) ON DELETE CASCADE,
    last_polled       TEXT,
    status            TEXT NOT NULL,
    UNIQUE (work_pool_id, name)
) STRICT;
CREATE INDEX work_queue_by_priority ON work_queue (work_pool_id, priority, name);

CREATE TABLE worker (
    id                         TEXT PRIMARY KEY NOT NULL,
    created                    TEXT NOT NULL,
    updated                    TEXT NOT NULL,
    name                       TEXT NOT NULL,
    work_pool_id               TEXT NOT NULL REFERENCES work_pool (id) ON DELETE CASCADE,
    last_heartbeat_time        TEXT NOT NULL,
    heartbeat_interval_seconds INTEGER,
    status                     TEXT NOT NULL,
    UNIQUE (work_pool_id, name)
) STRICT;
CREATE INDEX worker_by_heartbeat ON worker (last_heartbeat_time);

CREATE TABLE flow (
    id      TEXT PRIMARY KEY NOT NULL,
    created TEXT NOT NULL,
    updated TEXT NOT NULL,
    name    TEXT NOT NULL UNIQUE,
    tags    TEXT NOT NULL,
    labels  TEXT NOT NULL
) STRICT;

CREATE TABLE deployment (
    id                         TEXT PRIMARY KEY NOT NULL,
    created                    TEXT NOT NULL,
    updated                    TEXT NOT NULL,
    name                       TEXT NOT NULL,
    version                    TEXT,
    version_info               TEXT,
    description                TEXT,
    flow_id                    TEXT NOT NULL REFERENCES flow (id) ON DELETE CASCADE,
    paused                     INTEGER NOT NULL,
    concurrency_limit          INTEGER,
    concurrency_options        TEXT,
    job_variables              TEXT NOT NULL,
    parameters                 TEXT NOT NULL,
    parameter_openapi_schema   TEXT,
    enforce_parameter_schema   INTEGER NOT NULL,
    pull_steps                 TEXT,
    path                       TEXT,
    entrypoint                 TEXT,
    tags                       TEXT NOT NULL,
    labels                     TEXT NOT NULL,
    work_queue_name            TEXT,
    work_queue_id              TEXT,
    work_pool_name             TEXT,
    last_polled                TEXT,
    status                     TEXT NOT NULL,
    storage_document_id        TEXT,
    infrastructure_document_id TEXT,
    created_by                 TEXT,
    updated_by                 TEXT,
    UNIQUE (flow_id, name)
) STRICT;
CREATE INDEX deployment_by_name ON deployment (name, id);
CREATE INDEX deployment_by_queue ON deployment (work_queue_id);
CREATE INDEX deployment_by_updated ON deployment (updated);

CREATE TABLE deployment_schedule (
    id                 TEXT PRIMARY KEY NOT NULL,
    created            TEXT NOT NULL,
    updated            TEXT NOT NULL,
    deployment_id      TEXT NOT NULL REFERENCES deployment (id) ON DELETE CASCADE,
    -- The schedule's place in the deployment's list, which is returned in order.
    position           INTEGER NOT NULL,
    schedule           TEXT NOT NULL,
    active             INTEGER NOT NULL,
    max_scheduled_runs INTEGER,
    parameters         TEXT NOT NULL,
    slug               TEXT
) STRICT;
CREATE INDEX deployment_schedule_by_deployment ON deployment_schedule (deployment_id, position);

CREATE TABLE flow_run (
    id                         TEXT PRIMARY KEY NOT NULL,
    created                    TEXT NOT NULL,
    updated                    TEXT NOT NULL,
    name                       TEXT NOT NULL,
    flow_id                    TEXT NOT NULL REFERENCES flow (id) ON DELETE CASCADE,
    -- Kept when the deployment is deleted, as Prefect does.
    deployment_id              TEXT,
    deployment_version         TEXT,
    work_queue_id              TEXT,
    work_queue_name            TEXT,
    work_pool_id               TEXT,
    work_pool_name             TEXT,
    flow_version               TEXT,
    parameters                 TEXT NOT NULL,
    idempotency_key            TEXT,
    context                    TEXT NOT NULL,
    empirical_policy           TEXT NOT NULL,
    tags                       TEXT NOT NULL,
    labels                     TEXT NOT NULL,
    parent_task_run_id         TEXT,
    -- The current state, inlined so reads and filters need no join; all NULL when unset.
    state_id                   TEXT,
    state_type                 TEXT,
    state_name                 TEXT,
    state_timestamp            TEXT,
    state_message              TEXT,
    state_data                 TEXT,
    state_details              TEXT,
    run_count                  INTEGER NOT NULL,
    expected_start_time        TEXT,
    next_scheduled_start_time  TEXT,
    start_time                 TEXT,
    end_time                   TEXT,
    total_run_time             REAL NOT NULL,
    auto_scheduled             INTEGER NOT NULL,
    infrastructure_document_id TEXT,
    infrastructure_pid         TEXT,
    created_by                 TEXT,
    created_by_id              TEXT,
    job_variables              TEXT,
    -- Compare-and-set version, bumped by every write to the row.
    version                    INTEGER NOT NULL,
    -- NULL keys never collide, so runs without a key are unconstrained.
    UNIQUE (flow_id, idempotency_key)
) STRICT;
CREATE INDEX flow_run_by_queue_state ON flow_run (work_queue_id, state_type, next_scheduled_start_time);
CREATE INDEX flow_run_by_deployment_state ON flow_run (deployment_id, state_type);
CREATE INDEX flow_run_by_state_name ON flow_run (state_type, state_name, next_scheduled_start_time);
CREATE INDEX flow_run_by_pool ON flow_run (work_pool_id);
CREATE INDEX flow_run_by_expected_start ON flow_run (expected_start_time);
CREATE INDEX flow_run_by_created_by ON flow_run (created_by_id);

CREATE TABLE flow_run_state (
    -- Insertion order is history order (timestamps may tie).
    seq           INTEGER PRIMARY KEY,
    id            TEXT NOT NULL,
    flow_run_id   TEXT NOT NULL REFERENCES flow_run (id) ON DELETE CASCADE,
    type          TEXT NOT NULL,
    name          TEXT NOT NULL,
    timestamp     TEXT NOT NULL,
    message       TEXT,
    data          TEXT NOT NULL,
    state_details TEXT NOT NULL
) STRICT;
CREATE INDEX flow_run_state_by_run ON flow_run_state (flow_run_id, seq);

CREATE TABLE variable (
    id      TEXT PRIMARY KEY NOT NULL,
    created TEXT NOT NULL,
    updated TEXT NOT NULL,
    name    TEXT NOT NULL UNIQUE,
    value   TEXT NOT NULL,
    tags    TEXT NOT NULL
) STRICT;

CREATE TABLE block_document (
    id              TEXT PRIMARY KEY NOT NULL,
    created         TEXT NOT NULL,
    updated         TEXT NOT NULL,
    -- NULL for anonymous documents, which never collide.
    name            TEXT,
    data            TEXT NOT NULL,
    block_type_slug TEXT NOT NULL,
    block_type_id   TEXT,
    block_schema_id TEXT,
    is_anonymous    INTEGER NOT NULL,
    UNIQUE (block_type_slug, name)
) STRICT;

CREATE TABLE log_entry (
    -- Insertion order breaks timestamp ties.
    seq         INTEGER PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,
    created     TEXT NOT NULL,
    name        TEXT NOT NULL,
    level       INTEGER NOT NULL,
    message     TEXT NOT NULL,
    timestamp   TEXT NOT NULL,
    flow_run_id TEXT,
    task_run_id TEXT,
    worker_id   TEXT
) STRICT;
CREATE INDEX log_entry_by_run ON log_entry (flow_run_id, timestamp);
CREATE INDEX log_entry_by_time ON log_entry (timestamp);
"#;

const V2_API_KEYS: &str = r#"
CREATE TABLE api_key (
    id      TEXT PRIMARY KEY NOT NULL,
    created TEXT NOT NULL,
    name    TEXT NOT NULL UNIQUE,
    hash    TEXT NOT NULL UNIQUE,
    prefix  TEXT NOT NULL
) STRICT;
"#;

// Runs of one flow (the UI's flow page, `flow-run ls --flow-name`, counts by flow) were a scan
// of every run; Prefect indexes flow_id too.
const V3_RUNS_BY_FLOW: &str = r#"
CREATE INDEX flow_run_by_flow_state ON flow_run (flow_id, state_type);
"#;

const V4_CONCURRENCY_LIMITS: &str = r#"
CREATE TABLE concurrency_limit (
    id                         TEXT PRIMARY KEY NOT NULL,
    created                    TEXT NOT NULL,
    updated                    TEXT NOT NULL,
    name                       TEXT NOT NULL UNIQUE,
    "limit"                    INTEGER NOT NULL,
    active                     INTEGER NOT NULL,
    active_slots               INTEGER NOT NULL,
    denied_slots               INTEGER NOT NULL,
    slot_decay_per_second      REAL NOT NULL,
    avg_slot_occupancy_seconds REAL NOT NULL,
    version                    INTEGER NOT NULL
) STRICT;

-- A lease names its limits in a JSON list: they are few, and read only with the lease.
CREATE TABLE concurrency_lease (
    id        TEXT PRIMARY KEY NOT NULL,
    created   TEXT NOT NULL,
    expires   TEXT NOT NULL,
    limit_ids TEXT NOT NULL,
    slots     INTEGER NOT NULL,
    holder    TEXT
) STRICT;
CREATE INDEX concurrency_lease_by_expiry ON concurrency_lease (expires);
"#;

const V5_BLOCK_CATALOG: &str = r#"
CREATE TABLE block_type (
    id                TEXT PRIMARY KEY NOT NULL,
    created           TEXT NOT NULL,
    updated           TEXT NOT NULL,
    name              TEXT NOT NULL UNIQUE,
    slug              TEXT NOT NULL UNIQUE,
    logo_url          TEXT,
    documentation_url TEXT,
    description       TEXT,
    code_example      TEXT,
    is_protected      INTEGER NOT NULL
) STRICT;

CREATE TABLE block_schema (
    id            TEXT PRIMARY KEY NOT NULL,
    created       TEXT NOT NULL,
    updated       TEXT NOT NULL,
    checksum      TEXT NOT NULL,
    fields        TEXT NOT NULL,
    block_type_id TEXT NOT NULL REFERENCES block_type (id) ON DELETE CASCADE,
    capabilities  TEXT NOT NULL,
    version       TEXT NOT NULL,
    UNIQUE (checksum, version)
) STRICT;
CREATE INDEX block_schema_by_type ON block_schema (block_type_id, created);
"#;

const V6_ARTIFACTS: &str = r#"
CREATE TABLE artifact (
    id          TEXT PRIMARY KEY NOT NULL,
    created     TEXT NOT NULL,
    updated     TEXT NOT NULL,
    key         TEXT,
    type        TEXT,
    description TEXT,
    data        TEXT NOT NULL,
    metadata    TEXT,
    -- No foreign keys: an artifact outlives its run, as in Prefect.
    flow_run_id TEXT,
    task_run_id TEXT
) STRICT;
CREATE INDEX artifact_by_key ON artifact (key, created);
CREATE INDEX artifact_by_flow_run ON artifact (flow_run_id);
"#;

// Task runs and events are stored as documents (`doc`, the domain type's JSON) with the
// columns their queries narrow on beside them.
const V7_TASK_RUNS_AND_EVENTS: &str = r#"
CREATE TABLE task_run (
    id              TEXT PRIMARY KEY NOT NULL,
    -- No foreign key: the recorder may hear of a task run before (or without) its flow run.
    flow_run_id     TEXT,
    task_key        TEXT NOT NULL,
    dynamic_key     TEXT NOT NULL,
    state_timestamp TEXT,
    version         INTEGER NOT NULL,
    doc             TEXT NOT NULL
) STRICT;
CREATE INDEX task_run_by_flow_run ON task_run (flow_run_id, task_key, dynamic_key);
CREATE TABLE task_run_state (
    id          TEXT PRIMARY KEY NOT NULL,
    task_run_id TEXT NOT NULL REFERENCES task_run (id) ON DELETE CASCADE,
    timestamp   TEXT NOT NULL,
    doc         TEXT NOT NULL
) STRICT;
CREATE INDEX task_run_state_by_run ON task_run_state (task_run_id, timestamp);
CREATE TABLE event (
    id       TEXT PRIMARY KEY NOT NULL,
    occurred TEXT NOT NULL,
    doc      TEXT NOT NULL
) STRICT;
CREATE INDEX event_by_occurred ON event (occurred, id);
"#;

/// The schema version recorded in the database file.
pub(super) fn current_version(conn: &Connection) -> Result<usize> {
    let v: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .db()?;
    usize::try_from(v).map_err(|e| StoreError::Corrupt(format!("schema version {v}: {e}")))
}

/// Applies the migrations the database has not seen yet. Returns how many were applied.
pub(super) fn migrate(conn: &mut Connection) -> Result<usize> {
    let mut applied = 0;
    loop {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .db()?;
        let version = current_version(&tx)?;
        if version > MIGRATIONS.len() {
            return Err(StoreError::Corrupt(format!(
                "database schema version {version} is newer than this build knows ({})",
                MIGRATIONS.len()
            )));
        }
        let Some(sql) = MIGRATIONS.get(version) else {
            return Ok(applied);
        };
        tx.execute_batch(sql).db()?;
        tx.pragma_update(None, "user_version", version + 1).db()?;
        tx.commit().db()?;
        tracing::info!(version = version + 1, "applied SQLite schema migration");
        applied += 1;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[test]
    fn migrating_twice_is_a_no_op_and_records_the_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.db");
        let mut conn = Connection::open(&path).unwrap();
        assert_eq!(current_version(&conn).unwrap(), 0);
        assert_eq!(migrate(&mut conn).unwrap(), MIGRATIONS.len());
        assert_eq!(current_version(&conn).unwrap(), MIGRATIONS.len());
        drop(conn);

        let mut again = Connection::open(&path).unwrap();
        assert_eq!(migrate(&mut again).unwrap(), 0);
        assert_eq!(current_version(&again).unwrap(), MIGRATIONS.len());
    }

    #[test]
    fn a_newer_database_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", MIGRATIONS.len() + 1)
            .unwrap();
        assert!(matches!(migrate(&mut conn), Err(StoreError::Corrupt(_))));
    }
}
