//! The embedded SQLite adapter: [`SqliteStore`] owns one database file (WAL mode) and implements
//! every store port over it.
//!
//! Concurrency model: SQLite allows one writer at a time, so all writes go through one connection
//! behind a `std::sync::Mutex`, each in an IMMEDIATE transaction (so another process holding the
//! file waits on `busy_timeout` instead of failing half-way). Reads use a small pool of read-only
//! connections, which WAL lets run beside the writer; each read is one deferred transaction, so a
//! multi-query read sees one snapshot, and a read begun after a write's commit sees it. All SQLite
//! work runs on tokio's blocking pool; no lock is ever held across an `.await`.

mod artifacts;
mod block_catalog;
mod codec;
mod concurrency;
mod deployments;
mod events;
mod flows;
mod migrations;
mod misc;
mod pools;
mod run_filter;
mod runs;
mod task_runs;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior};

use crate::StoreError;
use codec::{DbResult, Result};

/// Read connections in the pool; reads beyond this many wait for one to free up.
const READERS: usize = 4;
/// How long a statement waits for another process's lock before reporting `Unavailable`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The SQLite store. Cheap to clone: clones share the connections.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    writer: Mutex<Connection>,
    /// Empty for an in-memory database, whose data only the writer connection can see.
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
    path: Option<PathBuf>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating it and its parent directories if needed) the database at `path` and
    /// brings its schema up to date.
    pub fn open(path: &Path) -> Result<SqliteStore> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| StoreError::Backend(Box::new(e)))?;
        }
        let mut writer = Connection::open(path).db()?;
        configure(&writer, false)?;
        let mode: String = writer
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .db()?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(%mode, "SQLite did not switch to WAL; reads will wait for writes");
        }
        migrations::migrate(&mut writer)?;
        let readers = (0..READERS)
            .map(|_| {
                let conn = Connection::open(path).db()?;
                configure(&conn, true)?;
                Ok(Mutex::new(conn))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(SqliteStore::from_parts(
            writer,
            readers,
            Some(path.to_owned()),
        ))
    }

    /// A private in-memory database, for tests and throwaway use. Reads share the one connection.
    pub fn open_in_memory() -> Result<SqliteStore> {
        let mut writer = Connection::open_in_memory().db()?;
        configure(&writer, false)?;
        migrations::migrate(&mut writer)?;
        Ok(SqliteStore::from_parts(writer, Vec::new(), None))
    }

    /// Where `sluice server` keeps its database by default: the user's data directory
    /// (`~/.local/share/sluice/sluice.db` on Linux), else `~/.sluice/sluice.db`.
    pub fn default_path() -> PathBuf {
        let dir = dirs::data_dir()
            .map(|d| d.join("sluice"))
            .or_else(|| dirs::home_dir().map(|h| h.join(".sluice")))
            .unwrap_or_else(|| PathBuf::from(".sluice"));
        dir.join("sluice.db")
    }

    /// The database file, or `None` when in memory.
    pub fn path(&self) -> Option<&Path> {
        self.inner.path.as_deref()
    }

    /// The schema version recorded in the database.
    pub async fn schema_version(&self) -> Result<usize> {
        self.read(migrations::current_version).await
    }

    fn from_parts(
        writer: Connection,
        readers: Vec<Mutex<Connection>>,
        path: Option<PathBuf>,
    ) -> SqliteStore {
        SqliteStore {
            inner: Arc::new(Inner {
                writer: Mutex::new(writer),
                readers,
                next_reader: AtomicUsize::new(0),
                path,
            }),
        }
    }

    /// Runs `f` in one IMMEDIATE transaction on the writer connection, off the async runtime.
    /// An error from `f` rolls everything back.
    async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        blocking(move || {
            let mut conn = lock(&inner.writer);
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .db()?;
            let out = f(&tx)?;
            tx.commit().db()?;
            Ok(out)
        })
        .await
    }

    /// Runs `f` in one deferred (snapshot) transaction on a read connection.
    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        blocking(move || {
            let mut conn = inner.reader();
            let tx = conn.transaction().db()?;
            let out = f(&tx)?;
            // Nothing was written; ending the transaction just releases the snapshot.
            tx.commit().db()?;
            Ok(out)
        })
        .await
    }
}

impl Inner {
    /// A free read connection if there is one, else waits on the next in turn.
    fn reader(&self) -> MutexGuard<'_, Connection> {
        if self.readers.is_empty() {
            return lock(&self.writer);
        }
        for conn in &self.readers {
            if let Ok(guard) = conn.try_lock() {
                return guard;
            }
        }
        let i = self.next_reader.fetch_add(1, Ordering::Relaxed) % self.readers.len();
        lock(&self.readers[i])
    }
}

/// A poisoned lock only means a closure panicked mid-transaction; the transaction was rolled
/// back when it unwound, so the connection is still good.
fn lock(m: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn configure(conn: &Connection, read_only: bool) -> Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT).db()?;
    conn.pragma_update(None, "foreign_keys", "ON").db()?;
    // NORMAL is durable across application crashes in WAL mode and much faster than FULL.
    conn.pragma_update(None, "synchronous", "NORMAL").db()?;
    if read_only {
        conn.pragma_update(None, "query_only", "ON").db()?;
    }
    Ok(())
}

/// Runs blocking SQLite work on tokio's blocking pool. A panic inside is re-raised here rather
/// than turned into an error, so bugs stay loud.
async fn blocking<T, F>(f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(out) => out,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(StoreError::Backend(Box::new(e))),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[tokio::test]
    async fn open_creates_parent_dirs_and_reopening_is_a_no_op() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested").join("deeper").join("sluice.db");
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(
            store.schema_version().await.unwrap(),
            migrations::MIGRATIONS.len()
        );
        assert_eq!(store.path(), Some(path.as_path()));
        drop(store);

        let again = SqliteStore::open(&path).unwrap();
        assert_eq!(
            again.schema_version().await.unwrap(),
            migrations::MIGRATIONS.len()
        );
        let mode: String = again
            .read(|c| c.query_row("PRAGMA journal_mode", [], |r| r.get(0)).db())
            .await
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[tokio::test]
    async fn in_memory_store_works() {
        let store = SqliteStore::open_in_memory().unwrap();
        assert_eq!(
            store.schema_version().await.unwrap(),
            migrations::MIGRATIONS.len()
        );
    }

    /// SQLite's plan for a flow-run query: the `detail` column of EXPLAIN QUERY PLAN.
    fn plan_of(
        store: &SqliteStore,
        select: &str,
        filter: &crate::FlowRunFilter,
        tail: &str,
    ) -> String {
        let w = run_filter::run_where(filter);
        let sql = format!("EXPLAIN QUERY PLAN {select} FROM flow_run{}{tail}", w.sql());
        let conn = lock(&store.inner.writer);
        let mut stmt = conn.prepare(&sql).unwrap();
        let rows = stmt
            .query_map(rusqlite::params_from_iter(&w.params), |r| {
                r.get::<_, String>(3)
            })
            .unwrap();
        rows.map(|r| r.unwrap()).collect::<Vec<_>>().join("; ")
    }

    #[test]
    fn run_queries_by_flow_and_by_queue_use_their_indexes() {
        use sluice_core::domain::StateType;
        let store = SqliteStore::open_in_memory().unwrap();
        let id = uuid::Uuid::now_v7();
        let by_flow = crate::FlowRunFilter {
            flow_ids: Some(vec![id]),
            state_types: Some(vec![StateType::Scheduled]),
            ..Default::default()
        };
        let plan = plan_of(&store, "SELECT COUNT(*)", &by_flow, "");
        assert!(plan.contains("flow_run_by_flow_state"), "{plan}");
        // A worker's poll: due runs of its queues, soonest first.
        let poll = crate::FlowRunFilter {
            work_queue_ids: Some(vec![id]),
            state_types: Some(vec![StateType::Scheduled]),
            next_scheduled_start_time_before: Some(chrono::Utc::now()),
            ..Default::default()
        };
        let order = format!(
            " ORDER BY {} LIMIT 10",
            run_filter::run_order(crate::FlowRunSort::NextScheduledStartTimeAsc)
        );
        let plan = plan_of(&store, "SELECT *", &poll, &order);
        assert!(plan.contains("flow_run_by_queue_state"), "{plan}");
        // In index order, so LIMIT stops the walk: no sort of every due run (only runs due at
        // the same instant are put in id order apart).
        assert!(!plan.contains("TEMP B-TREE FOR ORDER BY"), "{plan}");
    }

    fn variable() -> sluice_core::domain::Variable {
        sluice_core::domain::Variable {
            id: uuid::Uuid::now_v7(),
            created: chrono::Utc::now(),
            updated: chrono::Utc::now(),
            name: "v".to_owned(),
            value: serde_json::json!({"a": 1}),
            tags: Vec::new(),
        }
    }

    #[tokio::test]
    async fn a_database_locked_by_another_process_is_unavailable() {
        use crate::VariableStore;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sluice.db");
        let store = SqliteStore::open(&path).unwrap();
        lock(&store.inner.writer)
            .busy_timeout(Duration::from_millis(50))
            .unwrap();
        let other = Connection::open(&path).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();

        let err = store.create_variable(&variable()).await.unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
        other.execute_batch("ROLLBACK").unwrap();
        store.create_variable(&variable()).await.unwrap();
    }

    #[tokio::test]
    async fn undecodable_rows_are_corrupt() {
        use crate::VariableStore;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sluice.db");
        let store = SqliteStore::open(&path).unwrap();
        let v = variable();
        store.create_variable(&v).await.unwrap();
        Connection::open(&path)
            .unwrap()
            .execute("UPDATE variable SET value = 'not json'", [])
            .unwrap();
        let err = store.read_variable(v.id).await.unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    }

    #[test]
    fn default_path_ends_in_sluice_db() {
        let p = SqliteStore::default_path();
        assert!(p.ends_with("sluice.db"), "{}", p.display());
    }
}
