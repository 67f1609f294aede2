//! The store conformance suite on DynamoDB, against whatever `AWS_ENDPOINT_URL` names (the
//! emulator started by `infra/test.sh`, LocalStack) or, with it unset, the account the
//! environment's credentials reach. Each check gets its own table, deleted afterwards.
//!
//! Without `AWS_ENDPOINT_URL` and without `SLUICE_REQUIRE_AWS=1` the checks are skipped (with a
//! notice), so a plain `cargo test` works offline; CI sets `SLUICE_REQUIRE_AWS=1`.

use sluice_store::conformance::TestStore;
use sluice_store_dynamodb::{DynamoStore, Retention};

fn available() -> bool {
    if std::env::var_os("AWS_ENDPOINT_URL").is_some() {
        return true;
    }
    if std::env::var("SLUICE_REQUIRE_AWS").is_ok_and(|v| v == "1") {
        // Required but not pointed anywhere: run against the environment's account.
        return true;
    }
    sluice_testkit::skip(
        "dynamodb_conformance",
        "AWS_ENDPOINT_URL is not set (see infra/test.sh)",
    )
}

/// Deletes the check's table when the check is done (on a thread of its own: drops cannot
/// await, and the check's runtime is shutting down).
struct DropTable(DynamoStore);

impl Drop for DropTable {
    fn drop(&mut self) {
        let store = self.0.clone();
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(store.delete_table())
        })
        .join();
        if let Ok(Err(e)) = done {
            eprintln!("could not delete test table {}: {e}", self.0.table());
        }
    }
}

async fn fresh_store() -> TestStore<DynamoStore> {
    let table = format!("sluice-test-{}", uuid::Uuid::new_v4().simple());
    let store = DynamoStore::connect(table, Retention::default()).await;
    store.ensure_table().await.expect("create the test table");
    TestStore::with_guard(store.clone(), DropTable(store))
}

sluice_store::store_conformance_suite!(available = available(), fresh_store());
