//! The store contract as executable checks, shared by every adapter.
//!
//! Each check is a public async function over any [`Store`]; [`store_conformance_suite!`]
//! stamps out one test per check, so the SQLite adapter here and the DynamoDB adapter in its own
//! crate run the very same checks. In an adapter's integration test:
//!
//! ```no_run
//! use sluice_store::conformance::TestStore;
//!
//! sluice_store::store_conformance_suite!(async {
//!     let dir = tempfile::tempdir().expect("temp dir");
//!     let store = sluice_store::SqliteStore::open(&dir.path().join("t.db")).expect("open");
//!     TestStore::with_guard(store, dir) // the directory lives as long as the store
//! });
//! # fn main() {}
//! ```
//!
//! The expression is evaluated afresh for every check, so each runs on an empty store. Checks
//! run on a multi-threaded tokio runtime, so the concurrency checks race for real.

mod artifacts;
mod block_catalog;
mod concurrency;
mod deployments;
mod fixtures;
mod misc;
mod pools;
mod queries;
mod queues;
mod runs;
mod task_runs;

pub use artifacts::*;
pub use block_catalog::*;
pub use concurrency::*;
pub use deployments::*;
pub use misc::*;
pub use pools::*;
pub use queries::*;
pub use queues::*;
pub use runs::*;
pub use task_runs::*;

use std::any::Any;
use std::future::Future;
use std::sync::Arc;

use crate::Store;

/// A store under test together with whatever must outlive it (a temporary directory, a table to
/// drop on the way out).
pub struct TestStore<S> {
    store: Arc<S>,
    // Declared after `store`, so it is dropped after it.
    _guard: Option<Box<dyn Any + Send>>,
}

impl<S: Store + 'static> TestStore<S> {
    pub fn new(store: S) -> TestStore<S> {
        TestStore {
            store: Arc::new(store),
            _guard: None,
        }
    }

    pub fn with_guard(store: S, guard: impl Any + Send) -> TestStore<S> {
        TestStore {
            store: Arc::new(store),
            _guard: Some(Box::new(guard)),
        }
    }
}

/// Runs one check on a fresh store, on a multi-threaded runtime of its own (what
/// `#[tokio::test(flavor = "multi_thread")]` would build, without requiring the adapter's crate
/// to enable tokio's macros).
pub fn run<S, M, MF, C, CF>(make: M, check: C)
where
    S: Store + 'static,
    M: FnOnce() -> MF,
    MF: Future<Output = TestStore<S>>,
    C: FnOnce(Arc<S>) -> CF,
    CF: Future<Output = ()>,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("a tokio runtime for the conformance check");
    runtime.block_on(async move {
        let under_test = make().await;
        check(Arc::clone(&under_test.store)).await;
        drop(under_test);
    });
}

/// Stamps out one `#[test]` per conformance check, each on a fresh store from `$make` (an
/// expression yielding a future of [`TestStore`]). See the module docs.
#[macro_export]
macro_rules! store_conformance_suite {
    ($make:expr) => {
        $crate::store_conformance_suite!(available = true, $make);
    };
    // `available` is checked at the start of every test; when false the test returns at once
    // (for adapters whose backend may be absent, which say so themselves when it is).
    (available = $available:expr, $make:expr) => {
        $crate::__conformance_tests! { $available; $make;
            work_pool_crud,
            work_pool_create_is_atomic,
            work_pool_delete_cascades,
            work_pool_status_transitions_are_conditional,
            work_queue_crud,
            work_queue_batch_update_is_atomic,
            work_queue_touch_and_delete,
            work_queue_status_transitions_are_conditional,
            worker_heartbeats_upsert,
            worker_offline_is_conditional,
            flow_crud,
            flow_delete_cascades,
            deployment_crud,
            deployment_schedules_round_trip,
            deployment_filters,
            variable_crud,
            block_document_crud,
            logs_filter_and_order,
            api_key_crud,
            flow_run_round_trips_every_field,
            flow_run_create_is_idempotent,
            flow_run_create_races_itself,
            create_flow_runs_skips_existing_keys,
            create_flow_runs_races_itself,
            flow_run_compare_and_set,
            concurrent_commits_have_one_winner,
            delete_unstarted_auto_scheduled_runs_conditions,
            count_runs_by_queue_counts_states,
            flow_run_filters,
            flow_run_sorts_and_paging,
            concurrency_limit_crud,
            slot_writes_are_conditional_and_all_or_nothing,
            leases_expire_renew_and_revoke,
            racing_takers_never_exceed_a_limit,
            block_catalog_crud,
            artifact_crud_and_filters,
            task_runs_record_the_newest_state_and_every_state_once,
            task_runs_created_through_the_api_are_unique_by_natural_key,
            task_run_filters_sorts_and_counts,
            events_are_stored_once_and_filtered_by_time_name_and_resource,
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_tests {
    ($available:expr; $make:expr; $($check:ident),+ $(,)?) => {
        $(
            #[test]
            fn $check() {
                if !$available {
                    return;
                }
                $crate::conformance::run(|| $make, $crate::conformance::$check);
            }
        )+
    };
}
