//! The store conformance suite against [`SqliteStore`], each check on a fresh database file in
//! its own temporary directory (a real file, so WAL and the read-connection pool are exercised).

use sluice_store::SqliteStore;
use sluice_store::conformance::TestStore;

sluice_store::store_conformance_suite!(async {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = SqliteStore::open(&dir.path().join("sluice.db")).expect("open the database");
    TestStore::with_guard(store, dir)
});
